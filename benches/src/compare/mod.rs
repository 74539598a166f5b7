//! The engines of the `compare` binary (issue 8): one contact workload ([`workload`]) run on
//! cardlog, automerge and loro, each engine's whole run in one child process.
//!
//! Every engine run goes through the same phases, timed with [`Instant`]:
//!
//! 1. create `contacts` contacts of eight fields, one save each;
//! 2. `edits` single-field saves of uniformly chosen contacts;
//! 3. size of what is kept (cardlog: the store directory; the documents: their saved bytes)
//!    and, for the documents, the time to save;
//! 4. open (cardlog: `Replica::open` of the closed store; the documents: loading the saved
//!    bytes), then the first read of one contact;
//! 5. a full sync of everything to an empty peer;
//! 6. both sides make `diverge` single-field saves, then an incremental sync both ways.
//!
//! The run prints `FIG name value` lines ([`crate::figures::fig`]); the names are the `FIG_*`
//! constants. Saves are generated in chunks of [`Options::chunk`] outside the timed regions,
//! so only the engine's own work is timed and the generator holds at most one chunk.

use std::path::Path;
use std::time::{Duration, Instant};

use crate::figures::{self, fig};
use crate::Error;

pub mod on_automerge;
pub mod on_cardlog;
pub mod on_loro;
pub mod workload;

use workload::{Save, Workload, WorkloadConfig};

/// The engines, as named on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    /// cardlog, every save durable before it returns (the default save path).
    CardlogDurable,
    /// cardlog in bulk mode: saves grouped, durable at the end of each chunk.
    CardlogBulk,
    /// automerge 0.12: one `AutoCommit` document, one commit per save, in memory.
    Automerge,
    /// loro 1.17: one `LoroDoc`, one commit per save, in memory.
    Loro,
}

impl Engine {
    /// Every engine, in the order of the table.
    pub const ALL: [Engine; 4] = [
        Engine::CardlogDurable,
        Engine::CardlogBulk,
        Engine::Automerge,
        Engine::Loro,
    ];

    /// The command-line name.
    pub fn name(self) -> &'static str {
        match self {
            Engine::CardlogDurable => "cardlog-durable",
            Engine::CardlogBulk => "cardlog-bulk",
            Engine::Automerge => "automerge",
            Engine::Loro => "loro",
        }
    }

    /// The engine named `name`.
    pub fn parse(name: &str) -> Result<Self, Error> {
        Self::ALL
            .into_iter()
            .find(|e| e.name() == name)
            .ok_or_else(|| format!("unknown engine {name}").into())
    }
}

/// How to run one engine.
#[derive(Debug, Clone)]
pub struct Options {
    /// The workload.
    pub workload: WorkloadConfig,
    /// Saves generated (untimed) and then made (timed) at a time; for cardlog's bulk mode, the
    /// saves made durable together.
    pub chunk: usize,
}

/// Saves per second of phase 1 (contact creates).
pub const FIG_CREATE_SAVES_PER_S: &str = "create_saves_per_s";
/// Saves per second of phase 2 (single-field saves).
pub const FIG_EDIT_SAVES_PER_S: &str = "edit_saves_per_s";
/// Bytes kept after phase 2 (cardlog: store directory, apparent size; documents: saved bytes).
pub const FIG_BYTES: &str = "bytes";
/// Milliseconds to produce the saved bytes (documents only).
pub const FIG_SAVE_MS: &str = "save_ms";
/// Milliseconds to open or load the phase-2 state.
pub const FIG_OPEN_MS: &str = "open_ms";
/// Milliseconds to open or load it a second time. For cardlog the first open after the
/// writing session includes sled's recovery of everything it logged in that session (sled
/// 0.34.7 snapshots only while opening); the second starts from that snapshot. The peers load
/// the same bytes twice.
pub const FIG_REOPEN_MS: &str = "reopen_ms";
/// Milliseconds to read one whole contact right after opening.
pub const FIG_FIRST_READ_MS: &str = "first_read_ms";
/// Bytes on the wire of the full sync to an empty peer, both directions.
pub const FIG_FULL_SYNC_BYTES: &str = "full_sync_bytes";
/// Milliseconds of the full sync.
pub const FIG_FULL_SYNC_MS: &str = "full_sync_ms";
/// Bytes on the wire of the incremental sync, both directions.
pub const FIG_INC_SYNC_BYTES: &str = "inc_sync_bytes";
/// Milliseconds of the incremental sync.
pub const FIG_INC_SYNC_MS: &str = "inc_sync_ms";
/// Messages of the incremental sync (both directions).
pub const FIG_INC_SYNC_MESSAGES: &str = "inc_sync_messages";
/// Peak RSS in MB after phases 1–4 (the 110k-op state built, saved and opened).
pub const FIG_PEAK_MB_BEFORE_SYNC: &str = "peak_mb_before_sync";
/// Peak RSS in MB over the whole run (VmHWM at the end).
pub const FIG_PEAK_MB: &str = "peak_mb";

/// Runs `engine`'s whole workload in this process, printing its figures. `scratch` is an
/// empty directory for the engines that write files.
pub fn run(engine: Engine, options: &Options, scratch: &Path) -> Result<(), Error> {
    match engine {
        Engine::CardlogDurable => on_cardlog::run(options, scratch, false),
        Engine::CardlogBulk => on_cardlog::run(options, scratch, true),
        Engine::Automerge => on_automerge::run(options),
        Engine::Loro => on_loro::run(options),
    }
}

/// Runs one phase: generates `count` saves in chunks of `chunk` (untimed) and hands each chunk
/// to `apply` (timed). Returns the time spent in `apply`.
fn timed_phase(
    workload: &mut Workload,
    count: usize,
    contacts: usize,
    chunk: usize,
    mut apply: impl FnMut(Vec<Save>) -> Result<(), Error>,
) -> Result<Duration, Error> {
    let mut left = count;
    let mut took = Duration::ZERO;
    while left > 0 {
        let n = left.min(chunk.max(1));
        let saves = workload.next_saves(n, contacts);
        if saves.len() != n {
            return Err(format!("the workload gave {} saves, not {n}", saves.len()).into());
        }
        let start = Instant::now();
        apply(saves)?;
        took += start.elapsed();
        left -= n;
    }
    Ok(took)
}

/// Runs both save phases of the workload (the contacts' creation, then the single-field edits)
/// through `apply`, printing each phase's saves per second. Returns the workload (it knows the
/// contacts created).
pub fn save_phases(
    options: &Options,
    mut apply: impl FnMut(Vec<Save>) -> Result<(), Error>,
) -> Result<Workload, Error> {
    let config = options.workload;
    let mut w = Workload::new(config.seed);
    let took = timed_phase(
        &mut w,
        config.contacts,
        config.contacts,
        options.chunk,
        &mut apply,
    )?;
    fig_rate(FIG_CREATE_SAVES_PER_S, config.contacts, took);
    let took = timed_phase(&mut w, config.edits, config.contacts, options.chunk, apply)?;
    fig_rate(FIG_EDIT_SAVES_PER_S, config.edits, took);
    Ok(w)
}

/// Prints a rate figure: `count` per `took`.
pub fn fig_rate(name: &str, count: usize, took: Duration) {
    fig(name, count as f64 / took.as_secs_f64().max(1e-9));
}

/// Prints a duration figure in milliseconds.
pub fn fig_ms(name: &str, took: Duration) {
    fig(name, took.as_secs_f64() * 1e3);
}

/// Prints the peak RSS so far under `name`.
pub fn fig_peak(name: &str) {
    fig(name, figures::peak_rss_mb());
}

/// The generator of the two divergent replicas: seeded apart from the main workload, it
/// knows the same contacts and picks contacts and values on its own.
pub fn divergence(workload: &Workload, side: u64) -> Workload {
    let mut w = workload.clone();
    w.reseed(0xd1ce_0000 + side);
    w
}

//! What encrypted sessions cost (issue "Trust II"; docs/PERFORMANCE.md, "Encrypted sessions"):
//! the handshake (time and bytes), then the same sessions carried in the clear and sealed,
//! alternately, in one process: the incremental sync of two replicas sharing the 110,000-op
//! history after 100 saves on each side, and a full sync of that history into an empty
//! replica. The clear carriage is the session exactly as it ran before encryption (the
//! session layer is the same code), so the ratios are "encrypted over unencrypted".
//!
//! `cargo run --release -p cardlog-benches --bin secure_figures [-- --quick]`
//!
//! `--quick` (or `CARDLOG_BENCH_QUICK=1`): an 11,000-op history, fewer rounds.
//! Sessions run over the in-process channel transport, the responder on a second thread.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use cardlog::sync_layer::secure::{Handshake, Identity};
use cardlog::{BookId, Field, Options, Replica, CACHE_BYTES_DEFAULT};
use cardlog_benches::figures::{self, median, ops_label, pass};
use cardlog_benches::stores;
use cardlog_benches::sync::{diverge, sync_pair_with, Carry, PairSync};
use cardlog_benches::{Error, FieldEdits, FieldEditsConfig, XorShift};
use cardlog_core::{DeviceKey, FakeClock};

/// Saves each side makes before every incremental session.
const SAVES: usize = 100;
const SAVE_STEP_MS: i64 = 30_000;
/// Handshakes timed.
const HANDSHAKES: usize = 400;

fn main() -> Result<(), Error> {
    let quick = std::env::args().any(|a| a == "--quick")
        || std::env::var("CARDLOG_BENCH_QUICK").is_ok_and(|v| !v.is_empty() && v != "0");
    let (contacts, ops, rounds, full_repeats) = if quick {
        (1_000, 11_000, 3, 1)
    } else {
        (10_000, 110_000, 21, 3)
    };
    let config = FieldEditsConfig {
        create_fields: 8,
        ..FieldEditsConfig::new(contacts, ops)
    };
    eprintln!("secure figures: {}", figures::machine());
    let name = format!(
        "sync-shared-c{}-f{}-ops-{}",
        config.contacts, config.create_fields, config.ops
    );
    let (template, built) = stores::cached_as(&name, &config)?;
    if built {
        eprintln!("  built the {} template", ops_label(ops));
    }

    let (handshake_ms, handshake_bytes) = handshakes();
    let inc = incremental(&template, &config, rounds)?;
    let full = full_sync(&template, &config, full_repeats)?;

    let label = ops_label(ops);
    println!();
    println!("cardlog encrypted session figures — {}", figures::machine());
    println!();
    println!("| Figure | Clear | Encrypted | Ratio | Target | Result |");
    println!("|--------|-------|-----------|-------|--------|--------|");
    println!(
        "| Handshake (Noise XX, both sides' CPU, median of {HANDSHAKES}) | — | {handshake_ms:.3} ms, \
         {handshake_bytes} bytes in 3 messages | — | — | — |"
    );
    let row = |what: &str, clear: f64, sealed: f64, unit: &str, target: f64| {
        let ratio = sealed / clear;
        println!(
            "| {what} | {clear:.1} {unit} | {sealed:.1} {unit} | {ratio:.3} | ≤ {target} | {} |",
            pass(ratio <= target)
        );
    };
    row(
        &format!("Incremental sync, {SAVES} + {SAVES} saves on a shared {label} history: time (median of {rounds})"),
        inc.clear_ms,
        inc.sealed_ms,
        "ms",
        1.2,
    );
    println!(
        "| The same: median over rounds of (encrypted − clear) within a round | — | {:+.2} ms | — | — | — |",
        inc.paired_diff_ms
    );
    row(
        "The same: bytes both ways",
        inc.clear_bytes,
        inc.sealed_bytes,
        "B",
        1.2,
    );
    row(
        &format!("Full sync of {label} ops into an empty replica: time (median of {full_repeats})"),
        full.clear_ms,
        full.sealed_ms,
        "ms",
        1.1,
    );
    row(
        "The same: bytes both ways",
        full.clear_bytes,
        full.sealed_bytes,
        "B",
        1.1,
    );
    Ok(())
}

/// The median time of a whole handshake (both sides, in process) and its bytes.
fn handshakes() -> (f64, usize) {
    let book = BookId([7; 16]);
    let a = Identity::new(book, &DeviceKey::from_seed(&[1; 32]));
    let b = Identity::new(book, &DeviceKey::from_seed(&[2; 32]));
    let mut times = Vec::with_capacity(HANDSHAKES);
    let mut bytes = 0;
    for _ in 0..HANDSHAKES {
        let start = Instant::now();
        let (mut hi, m1) = Handshake::initiate(&a).unwrap();
        let (hr, m2) = Handshake::answer(&b, &m1).unwrap();
        hi.read_reply(&m2).unwrap();
        let (m3, _) = hi.finish(&a).unwrap();
        hr.read_final(&m3).unwrap();
        times.push(ms(start.elapsed()));
        bytes = m1.len() + m2.len() + m3.len();
    }
    (median(&mut times), bytes)
}

struct Compared {
    /// The median over rounds of (sealed − clear) time within a round, ms.
    paired_diff_ms: f64,
    clear_ms: f64,
    sealed_ms: f64,
    clear_bytes: f64,
    sealed_bytes: f64,
}

impl Compared {
    /// The medians of each carriage's samples.
    fn of(
        paired_diff_ms: f64,
        mut clear: Vec<f64>,
        mut sealed: Vec<f64>,
        mut clear_b: Vec<f64>,
        mut sealed_b: Vec<f64>,
    ) -> Self {
        Self {
            paired_diff_ms,
            clear_ms: median(&mut clear),
            sealed_ms: median(&mut sealed),
            clear_bytes: median(&mut clear_b),
            sealed_bytes: median(&mut sealed_b),
        }
    }
}

fn options(clock: &FakeClock) -> Options {
    Options {
        cache_bytes: CACHE_BYTES_DEFAULT,
        wall: Arc::new(clock.clone()),
        ..Options::default()
    }
}

fn open_copy(template: &Path, to: &Path, clock: &FakeClock) -> Result<Replica, Error> {
    stores::copy_dir(template, to)?;
    let (replica, _, _) = stores::open_timed(to, &options(clock))?;
    Ok(replica)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn bytes(s: &PairSync) -> f64 {
    (s.initiator.bytes_sent + s.initiator.bytes_received) as f64
}

/// Two copies of the shared history; rounds of 100 + 100 saves, each synced in the clear and
/// sealed in turn (the order alternating between rounds).
fn incremental(
    template: &Path,
    config: &FieldEditsConfig,
    rounds: usize,
) -> Result<Compared, Error> {
    let scratch = stores::scratch()?;
    let clock = FakeClock::new(FieldEdits::end_ms(config));
    let mut a = open_copy(template, &scratch.path().join("a"), &clock)?;
    let mut b = open_copy(template, &scratch.path().join("b"), &clock)?;
    stores::admit_copies(template, &mut [&mut a, &mut b])?;
    sync_pair_with(&mut a, &mut b, Carry::Sealed)?;
    let mut rng = XorShift::new(0x5eed_0020);
    let (mut clear, mut sealed) = (Vec::new(), Vec::new());
    let (mut clear_b, mut sealed_b) = (Vec::new(), Vec::new());
    for round in 0..rounds {
        let order = if round % 2 == 0 {
            [Carry::Clear, Carry::Sealed]
        } else {
            [Carry::Sealed, Carry::Clear]
        };
        for carry in order {
            diverge(
                &mut a,
                config,
                &clock,
                &mut rng,
                SAVES,
                Field::Note,
                SAVE_STEP_MS,
            )?;
            diverge(
                &mut b,
                config,
                &clock,
                &mut rng,
                SAVES,
                Field::Title,
                SAVE_STEP_MS,
            )?;
            let s = sync_pair_with(&mut a, &mut b, carry)?;
            if !(s.initiator.converged
                && s.initiator.stored == SAVES
                && s.responder.stored == SAVES)
            {
                return Err(format!("round {round}: {:?}", s.initiator).into());
            }
            let (times, sizes) = match carry {
                Carry::Clear => (&mut clear, &mut clear_b),
                Carry::Sealed => (&mut sealed, &mut sealed_b),
            };
            times.push(ms(s.elapsed));
            sizes.push(bytes(&s));
        }
        let last = |v: &Vec<f64>| v.last().copied().unwrap_or(f64::NAN);
        eprintln!(
            "  round {round}: clear {:.1} ms {:.0} B, sealed {:.1} ms {:.0} B",
            last(&clear),
            last(&clear_b),
            last(&sealed),
            last(&sealed_b)
        );
    }
    let mut diffs: Vec<f64> = sealed.iter().zip(&clear).map(|(s, c)| s - c).collect();
    Ok(Compared::of(
        median(&mut diffs),
        clear,
        sealed,
        clear_b,
        sealed_b,
    ))
}

/// The shared history into an empty replica (a member paired with the source), in the clear
/// and sealed in turn, a fresh target each time.
fn full_sync(
    template: &Path,
    config: &FieldEditsConfig,
    repeats: usize,
) -> Result<Compared, Error> {
    let scratch = stores::scratch()?;
    let clock = FakeClock::new(FieldEdits::end_ms(config));
    let mut source = open_copy(template, &scratch.path().join("source"), &clock)?;
    let (mut clear, mut sealed) = (Vec::new(), Vec::new());
    let (mut clear_b, mut sealed_b) = (Vec::new(), Vec::new());
    let mut next = 0;
    let mut make_target = |source: &mut Replica| -> Result<Replica, Error> {
        next += 1;
        let mut target = Replica::join_with(
            &scratch.path().join(format!("target{next}")),
            source.book(),
            options(&clock),
        )?;
        target.pair(source.id(), None)?;
        Ok(target)
    };
    // Admit the source and every target at once, as the template's founder.
    let mut made = Vec::new();
    for _ in 0..2 * repeats {
        made.push(make_target(&mut source)?);
    }
    let ids: Vec<cardlog::DeviceId> = made.iter().map(Replica::id).collect();
    stores::admit(template, &mut [&mut source], &ids)?;
    for (i, mut target) in made.into_iter().enumerate() {
        let carry = if (i / 2 + i) % 2 == 0 {
            Carry::Clear
        } else {
            Carry::Sealed
        };
        let s = sync_pair_with(&mut target, &mut source, carry)?;
        if !s.initiator.converged {
            return Err(format!("full sync {i}: {:?}", s.initiator).into());
        }
        eprintln!(
            "  full sync {i} ({carry:?}): {:.0} ms, {} ops, {:.0} B",
            ms(s.elapsed),
            s.initiator.stored,
            bytes(&s)
        );
        let (times, sizes) = match carry {
            Carry::Clear => (&mut clear, &mut clear_b),
            Carry::Sealed => (&mut sealed, &mut sealed_b),
        };
        times.push(ms(s.elapsed));
        sizes.push(bytes(&s));
        drop(target);
    }
    Ok(Compared::of(f64::NAN, clear, sealed, clear_b, sealed_b))
}

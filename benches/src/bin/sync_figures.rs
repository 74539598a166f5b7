//! The sync layer's headline figures in one table (issue 5; docs/PERFORMANCE.md, "sync"): bytes
//! on the wire per exchanged op and summary bytes per author when two replicas sharing a
//! 110,000-op history each made 100 saves, the messages and turns of that session, the time of
//! the same 100 + 100 sync over a million-op history against a 10,000-op one, and a full
//! bootstrap of the 110,000 ops into an empty replica (bytes per op, ops applied per second,
//! and how the time splits between decoding/verifying and the store).
//!
//! `cargo run --release -p cardlog-benches --bin sync_figures [-- --quick]`
//!
//! `--quick` (or `CARDLOG_BENCH_QUICK=1`) shrinks everything for a smoke run: an 11,000-op
//! shared history, 10,000 against 100,000 ops, three timed rounds, one bootstrap of each kind.
//!
//! The parent finds (or builds, then caches: see `cardlog_benches::stores`) one template store
//! per history, then runs each scenario in a fresh child process (this binary re-executed with
//! `--scenario`), which prints `FIG name value` lines that the parent collects into the table.
//! Each scenario copies the templates it needs: a copied store notices the copy and takes a
//! fresh device id, so two copies are two devices sharing one history, as after a past sync.
//! Sessions run over the in-process channel transport, the responder on a second thread; the
//! divergence saves before each session are not timed.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cardlog::sync_layer::wire::message::{self, Message};
use cardlog::sync_layer::wire::segment::compress;
use cardlog::sync_layer::{decode_segments, decode_signed_segments, encode_segments};
use cardlog::{Field, Options, Replica, Role, Summary, Value, CACHE_BYTES_DEFAULT};
use cardlog_benches::figures::{self, fig, fmt_value, get, median, ops_label, pass, Args, Figures};
use cardlog_benches::stores;
use cardlog_benches::sync::{diverge, sync_pair, PairSync, StoreOps};
use cardlog_benches::{Error, FieldEdits, FieldEditsConfig, XorShift};
use cardlog_core::FakeClock;

/// Fields set by each create of the shared history (given, family, org, department, title,
/// nickname, birthday, note).
const SHARED_CREATE_FIELDS: usize = 8;
/// Saves each side makes before every session.
const SAVES: usize = 100;
/// Wall time between two divergence saves: a person going through contacts one by one.
const SAVE_STEP_MS: i64 = 30_000;
/// Timed sessions on the shared history; the figures are those of the last one, when both
/// sides' summaries name all three authors.
const WIRE_ROUNDS: usize = 3;
/// Reruns of each codec step measured outside a session (the median is kept).
const CODEC_REPEATS: usize = 5;

/// What a run measures: the full figures or a quick smoke run.
struct Plan {
    shared: FieldEditsConfig,
    small_ops: usize,
    big_ops: usize,
    time_rounds: usize,
    time_warmup: usize,
    boot_repeats: usize,
}

impl Plan {
    fn new(quick: bool) -> Self {
        let (contacts, ops, small_ops, big_ops) = if quick {
            (1_000, 11_000, 10_000, 100_000)
        } else {
            (10_000, 110_000, 10_000, 1_000_000)
        };
        let (time_rounds, time_warmup, boot_repeats) = if quick { (3, 1, 1) } else { (21, 6, 3) };
        Self {
            shared: shared_config(contacts, ops),
            small_ops,
            big_ops,
            time_rounds,
            time_warmup,
            boot_repeats,
        }
    }
}

/// The shared history: `contacts` contacts created with eight fields each, then single-field
/// edits up to `ops` ops.
fn shared_config(contacts: usize, ops: usize) -> FieldEditsConfig {
    FieldEditsConfig {
        create_fields: SHARED_CREATE_FIELDS,
        ..FieldEditsConfig::new(contacts, ops)
    }
}

/// The cache name of the shared history's template store.
fn shared_name(config: &FieldEditsConfig) -> String {
    format!(
        "sync-shared-c{}-f{}-ops-{}",
        config.contacts, config.create_fields, config.ops
    )
}

fn main() -> Result<(), Error> {
    let args = Args::from_env();
    let value_of = |flag: &str| args.value(flag).map(str::to_owned);
    let number = |flag: &str| -> Result<usize, Error> {
        Ok(value_of(flag)
            .ok_or_else(|| format!("{flag} is missing"))?
            .parse()?)
    };
    let path = |flag: &str| -> Result<PathBuf, Error> {
        Ok(PathBuf::from(
            value_of(flag).ok_or_else(|| format!("{flag} is missing"))?,
        ))
    };
    if let Some(scenario) = value_of("--scenario") {
        match scenario.as_str() {
            "wire" => wire(
                &path("--dir")?,
                &shared_config(number("--contacts")?, number("--ops")?),
            )?,
            "time" => time(
                &path("--small-dir")?,
                number("--small-ops")?,
                &path("--big-dir")?,
                number("--big-ops")?,
                number("--rounds")?,
                number("--warmup")?,
            )?,
            "bootstrap" => bootstrap(
                &path("--dir")?,
                &shared_config(number("--contacts")?, number("--ops")?),
                &value_of("--part").unwrap_or_default(),
            )?,
            other => return Err(format!("unknown scenario {other}").into()),
        }
        fig("vm_hwm_mb", figures::peak_rss_mb());
        return Ok(());
    }
    let quick = args.has("--quick")
        || std::env::var("CARDLOG_BENCH_QUICK").is_ok_and(|v| !v.is_empty() && v != "0");
    parent(&Plan::new(quick), quick)
}

// ---- the parent --------------------------------------------------------------------------

/// Finds or builds a cached template, saying how long a build took.
fn template(
    label: &str,
    find: impl FnOnce() -> Result<(PathBuf, bool), Error>,
) -> Result<PathBuf, Error> {
    let started = Instant::now();
    let (dir, built) = find()?;
    if built {
        eprintln!(
            "  built the {label} template in {:.1} s",
            started.elapsed().as_secs_f64()
        );
    }
    Ok(dir)
}

fn parent(plan: &Plan, quick: bool) -> Result<(), Error> {
    eprintln!("sync figures: {}", figures::machine());
    eprintln!("stores cached under {}", stores::cache_root().display());
    if quick {
        eprintln!("quick run: small histories, few rounds (not the reported figures)");
    }
    let shared = &plan.shared;
    let shared_dir = template(&ops_label(shared.ops), || {
        stores::cached_as(&shared_name(shared), shared)
    })?;
    let small_dir = template(&ops_label(plan.small_ops), || {
        stores::cached(plan.small_ops)
    })?;
    let big_dir = template(&ops_label(plan.big_ops), || stores::cached(plan.big_ops))?;

    let s = |p: &Path| p.to_string_lossy().into_owned();
    let (contacts, ops) = (shared.contacts.to_string(), shared.ops.to_string());
    let wire = figures::child(
        "wire",
        &[
            "--scenario",
            "wire",
            "--dir",
            &s(&shared_dir),
            "--contacts",
            &contacts,
            "--ops",
            &ops,
        ],
    )?;
    let time = figures::child(
        "time",
        &[
            "--scenario",
            "time",
            "--small-dir",
            &s(&small_dir),
            "--small-ops",
            &plan.small_ops.to_string(),
            "--big-dir",
            &s(&big_dir),
            "--big-ops",
            &plan.big_ops.to_string(),
            "--rounds",
            &plan.time_rounds.to_string(),
            "--warmup",
            &plan.time_warmup.to_string(),
        ],
    )?;
    // Each bootstrap part in its own process, the import and its halves in turn.
    let boot_args = |part: &'static str| -> [String; 10] {
        [
            "--scenario".into(),
            "bootstrap".into(),
            "--part".into(),
            part.into(),
            "--dir".into(),
            s(&shared_dir),
            "--contacts".into(),
            contacts.clone(),
            "--ops".into(),
            ops.clone(),
        ]
    };
    let run = |part: &'static str| -> Result<Figures, Error> {
        let args = boot_args(part);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        figures::child(&format!("bootstrap {part}"), &args)
    };
    let mut runs: Vec<Figures> = Vec::new();
    for _ in 0..plan.boot_repeats {
        runs.push(run("import")?);
        runs.push(run("halves")?);
    }
    // Medians over the repeats; figures every run has (the bundle's size) are the same in all.
    let mut boot = figures::medians(&runs);
    boot.extend(run("session")?);
    let shared_l = ops_label(shared.ops);
    let (small_l, big_l) = (ops_label(plan.small_ops), ops_label(plan.big_ops));
    let per_op = get(&wire, "wire_bytes_per_op")?;
    let entry = get(&wire, "summary_entry_bytes")?;
    let flights = get(&wire, "flights")?;
    let messages = get(&wire, "messages")?;
    let ops_msgs = get(&wire, "ops_messages")?;
    let ratio = get(&time, "ratio")?;
    let first_ratio = get(&time, "first_ratio")?;
    let boot_per_op = get(&boot, "bundle_bytes_per_op")?;
    let boot_rate = get(&boot, "import_ops_per_s")?;

    println!();
    println!("cardlog sync figures — {}", figures::machine());
    println!(
        "shared history: {} contacts created with {} fields, then single-field edits, {} ops \
         in all; time histories: {} contacts, {} and {} ops; {} saves on each side before \
         every session, {} s apart",
        shared.contacts,
        shared.create_fields,
        shared.ops,
        stores::CONTACTS,
        plan.small_ops,
        plan.big_ops,
        SAVES,
        SAVE_STEP_MS / 1000
    );
    println!();
    println!("| # | Figure | Measured | Target | Result |");
    println!("|---|--------|----------|--------|--------|");
    println!(
        "| 1 | Bytes on the wire per exchanged op, {SAVES} + {SAVES} saves over a {shared_l} \
         shared history | {per_op:.1} ({:.0} bytes for {:.0} ops; ops messages alone {:.1}/op) \
         | ≤ 40 | {} |",
        get(&wire, "wire_bytes")?,
        get(&wire, "exchanged_ops")?,
        get(&wire, "ops_message_bytes_per_op")?,
        pass(per_op <= 40.0)
    );
    println!(
        "| 2 | Summary bytes per author, per summary message | {entry:.1} per entry ({:.0} \
         authors; + {:.1} bytes of framing per message; all 4 summary messages {:.0} bytes, \
         {:.1} per author each) | ≤ 64 | {} |",
        get(&wire, "authors")?,
        get(&wire, "summary_framing_bytes")?,
        get(&wire, "summary_bytes")?,
        get(&wire, "summary_bytes_per_author_message")?,
        pass(entry <= 64.0)
    );
    println!(
        "| 3 | Messages of that session | {messages:.0} messages in {flights:.0} one-way turns \
         ({}), {ops_msgs:.0} ops messages | one round trip each way: Hello→, ←Hello+Ops, \
         Ops+Ack→, ←Ack | {} |",
        shape(&wire),
        pass(flights == 4.0 && messages == 6.0 && ops_msgs == 2.0)
    );
    println!(
        "| 4 | {SAVES} + {SAVES} sync, {big_l}-op history / {small_l}-op history, repeated \
         (median of sessions {}–{}) | {ratio:.2} ({:.1} ms vs {:.1} ms) | ≤ 1.5 | {} |",
        plan.time_warmup + 1,
        plan.time_rounds,
        get(&time, "big_ms")?,
        get(&time, "small_ms")?,
        pass(ratio <= 1.5)
    );
    println!(
        "| 4b | The same, first session after opening (sled cache cold, one sample) \
         | {first_ratio:.2} ({:.1} ms vs {:.1} ms) | ≤ 1.5 | {} |",
        get(&time, "big_first_ms")?,
        get(&time, "small_first_ms")?,
        pass(first_ratio <= 1.5)
    );
    println!(
        "| 5 | Bootstrap of {shared_l} ops into an empty replica (bundle): bytes per op \
         | {boot_per_op:.1} ({:.2} MB) | ≤ 60 | {} |",
        get(&boot, "bundle_bytes")? / 1e6,
        pass(boot_per_op <= 60.0)
    );
    println!(
        "| 6 | Bootstrap of {shared_l} ops (bundle import): ops applied per second \
         | {boot_rate:.0} ({:.2} s: decode + verify {:.2} s, store apply {:.2} s) \
         | ≥ 100,000 | {} |",
        get(&boot, "import_s")?,
        get(&boot, "decode_s")?,
        get(&boot, "apply_s")?,
        pass(boot_rate >= 100_000.0)
    );

    println!();
    println!("Details:");
    println!(
        "  bundle import of {shared_l} ops: peak RSS {:.0} MB; decode + verify alone {:.0} ops/s \
         (of which sealing: re-encoding and hashing {:.2} s); store apply alone {:.0} ops/s",
        get(&boot, "import_vm_hwm_mb")?,
        get(&boot, "decode_ops_per_s")?,
        get(&boot, "seal_s")?,
        get(&boot, "apply_ops_per_s")?
    );
    let b = |name: &str| boot.get(name).copied().unwrap_or(0.0);
    println!(
        "  bootstrap over a session (channel): {:.0} ops/s ({:.2} s), {:.1} bytes/op, {:.0} \
         ops messages; sender: places_since {:.2} s, ops_at_places {:.2} s, op_by_id {:.2} s \
         ({:.0} calls); receiver: \
         op_at {:.2} s ({:.0} calls), apply {:.2} s; codec and hand-offs {:.2} s",
        b("session_ops_per_s"),
        b("session_s"),
        b("session_bytes_per_op"),
        b("session_ops_messages"),
        b("session_sender_places_since_s"),
        b("session_sender_ops_at_places_s"),
        b("session_sender_op_by_id_s"),
        b("session_sender_op_by_id_calls"),
        b("session_receiver_op_at_s"),
        b("session_receiver_op_at_calls"),
        b("session_receiver_apply_s"),
        b("session_other_s"),
    );
    for (label, prefix) in [(&small_l, "small"), (&big_l, "big")] {
        println!(
            "  {label}-op history, ms per session (median; store calls of both sides): {}",
            breakdown(&time, prefix)
        );
    }
    for (name, figures) in [("wire", &wire), ("time", &time), ("bootstrap", &boot)] {
        let line: Vec<String> = figures
            .iter()
            .map(|(k, v)| format!("{k}={}", fmt_value(*v)))
            .collect();
        println!("  {name}: {}", line.join(" "));
    }
    Ok(())
}

/// The wire scenario's message sequence, from its `seq_*` figures (1 = initiator hello, …).
fn shape(wire: &Figures) -> String {
    let mut turns: Vec<String> = Vec::new();
    let mut last_side = None;
    for i in 0.. {
        let Some(code) = wire.get(&format!("seq_{i}")).copied() else {
            break;
        };
        let side = if code >= 10.0 { "←" } else { "→" };
        let kind = match code as u64 % 10 {
            1 => "Hello",
            2 => "Ops",
            3 => "Ack",
            _ => "?",
        };
        match (last_side == Some(side), turns.last_mut()) {
            (true, Some(turn)) => {
                turn.push('+');
                turn.push_str(kind);
            }
            _ => turns.push(format!("{side}{kind}")),
        }
        last_side = Some(side);
    }
    turns.join(" ")
}

/// `ops_since 0.4, op_by_id 1.2, …, other 3.0` for the time scenario's pair `prefix`.
fn breakdown(time: &Figures, prefix: &str) -> String {
    let start = format!("{prefix}_call_");
    let mut parts: Vec<String> = time
        .iter()
        .filter_map(|(k, v)| {
            let name = k.strip_prefix(&start)?.strip_suffix("_ms")?;
            Some(format!("{name} {v:.2}"))
        })
        .collect();
    for (name, label) in [
        ("_other_ms", "codec and hand-offs"),
        ("_decode_ms", "decode alone"),
        ("_encode_ms", "encode alone"),
    ] {
        if let Some(v) = time.get(&format!("{prefix}{name}")) {
            parts.push(format!("{label} {v:.2}"));
        }
    }
    parts.join(", ")
}

// ---- the scenarios (children) ------------------------------------------------------------

/// Options for a replica of `config`'s history reading the shared fake `clock`.
fn options(clock: &FakeClock) -> Options {
    Options {
        cache_bytes: CACHE_BYTES_DEFAULT,
        wall: Arc::new(clock.clone()),
        ..Options::default()
    }
}

/// The clock of a pair of replicas of `config`'s history: the time of its last op.
fn clock_for(config: &FieldEditsConfig) -> FakeClock {
    FakeClock::new(FieldEdits::end_ms(config))
}

/// Copies `template` (holding `ops` ops) to `to` and opens the copy, which must notice it is
/// a copy and write as a fresh device.
fn open_copy(template: &Path, to: &Path, ops: usize, clock: &FakeClock) -> Result<Replica, Error> {
    stores::copy_dir(template, to)?;
    let (replica, _, _) = stores::open_timed(to, &options(clock))?;
    if replica.previous_id().is_none() {
        return Err(format!("{} did not notice it is a copy", to.display()).into());
    }
    let expected = ops as u64 + stores::MEMBERSHIP_OPS;
    if replica.op_count() != expected {
        return Err(format!(
            "{} ops in the copy, expected {expected}",
            replica.op_count()
        )
        .into());
    }
    Ok(replica)
}

/// Checks that a divergence session exchanged `saves` ops each way and converged.
fn check(s: &PairSync, saves: usize) -> Result<(), Error> {
    let ok = s.initiator.converged
        && s.responder.converged
        && s.initiator.sent_ops == saves
        && s.responder.sent_ops == saves
        && s.initiator.stored == saves
        && s.responder.stored == saves;
    if !ok {
        return Err(format!(
            "the session did not exchange {saves} ops each way and converge: {:?} / {:?}",
            s.initiator, s.responder
        )
        .into());
    }
    Ok(())
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// Figures 1–3: two copies of the shared history, an initial session with nothing to
/// exchange, then [`WIRE_ROUNDS`] sessions after [`SAVES`] saves on each side.
fn wire(template: &Path, config: &FieldEditsConfig) -> Result<(), Error> {
    let scratch = stores::scratch()?;
    let clock = clock_for(config);
    let mut a = open_copy(template, &scratch.path().join("a"), config.ops, &clock)?;
    let mut b = open_copy(template, &scratch.path().join("b"), config.ops, &clock)?;
    if a.id() == b.id() {
        return Err("the two copies write as the same device".into());
    }
    stores::admit_copies(template, &mut [&mut a, &mut b])?;
    let first = sync_pair(&mut a, &mut b)?;
    eprintln!("    in sync already: {}", first.sequence());
    fig("in_sync_wire_bytes", first.wire_bytes() as f64);
    fig("in_sync_ms", ms(first.elapsed));

    let mut rng = XorShift::new(0x5eed_0005);
    let mut last = None;
    for round in 0..WIRE_ROUNDS {
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
        let s = sync_pair(&mut a, &mut b)?;
        check(&s, SAVES)?;
        eprintln!("    round {round}: {}", s.sequence());
        fig(
            &format!("round{round}_wire_bytes_per_op"),
            s.wire_bytes() as f64 / s.exchanged_ops() as f64,
        );
        last = Some(s);
    }
    let s = last.ok_or("no rounds")?;
    if a.state_bytes()? != b.state_bytes()? {
        return Err("the two replicas converged on summaries but not on state".into());
    }

    // What the exchanged ops are: their full encoded size (as stored, and as a bundle of the
    // plain ops would carry them) and the text of their values alone.
    let (mut op_bytes, mut text_bytes, mut decoded) = (0usize, 0usize, 0usize);
    for m in s.messages.iter().filter(|m| m.kind == "ops") {
        let Message::Ops { segments, .. } = message::decode(&m.payload)? else {
            return Err("not an ops message".into());
        };
        for op in decode_segments(&segments, &StoreOps(&a))? {
            decoded += 1;
            op_bytes += op.bytes().len();
            for w in &op.op().writes {
                if let Some(Value::Text(t)) = &w.value {
                    text_bytes += t.len();
                }
            }
        }
    }
    fig("op_bytes_mean", op_bytes as f64 / decoded.max(1) as f64);
    fig(
        "value_text_bytes_mean",
        text_bytes as f64 / decoded.max(1) as f64,
    );

    let exchanged = s.exchanged_ops() as f64;
    fig("exchanged_ops", exchanged);
    fig("wire_bytes", s.wire_bytes() as f64);
    fig("wire_bytes_per_op", s.wire_bytes() as f64 / exchanged);
    fig("ops_message_bytes", s.bytes_of("ops") as f64);
    fig(
        "ops_message_bytes_per_op",
        s.bytes_of("ops") as f64 / exchanged,
    );
    fig("summary_bytes", s.initiator.summary_bytes as f64);
    fig("messages", s.count(None, None) as f64);
    fig("ops_messages", s.count(Some("ops"), None) as f64);
    fig("flights", s.flights() as f64);
    fig("session_ms", ms(s.elapsed));
    for (i, m) in s.messages.iter().enumerate() {
        let side = if m.from == Role::Initiator { 0.0 } else { 10.0 };
        let kind = match m.kind {
            "hello" => 1.0,
            "ops" => 2.0,
            "ack" => 3.0,
            _ => 9.0,
        };
        fig(&format!("seq_{i}"), side + kind);
    }

    // Per author: each summary message against the same message with an empty summary.
    let (mut entries, mut framing, mut authors_seen) = (Vec::new(), Vec::new(), 0usize);
    for m in s
        .messages
        .iter()
        .filter(|m| m.kind == "hello" || m.kind == "ack")
    {
        let (summary, empty) = match message::decode(&m.payload)? {
            Message::Hello {
                replica,
                wall_ms,
                summary,
            } => {
                let empty = message::encode(&Message::Hello {
                    replica,
                    wall_ms,
                    summary: Summary::new(),
                });
                (summary, empty.len())
            }
            Message::Ack { summary } => {
                let empty = message::encode(&Message::Ack {
                    summary: Summary::new(),
                });
                (summary, empty.len())
            }
            other => return Err(format!("a {} message counted as summary", other.kind()).into()),
        };
        let n = summary.len().max(1);
        authors_seen = authors_seen.max(summary.len());
        entries.push((m.bytes - empty) as f64 / n as f64);
        framing.push(empty as f64);
        fig(
            &format!("summary_{}_{}_bytes", side_name(m.from), m.kind),
            m.bytes as f64,
        );
    }
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len().max(1) as f64;
    fig("authors", authors_seen as f64);
    fig("summary_entry_bytes", mean(&entries));
    fig("summary_framing_bytes", mean(&framing));
    fig(
        "summary_bytes_per_author_message",
        s.initiator.summary_bytes as f64 / (entries.len().max(1) * authors_seen.max(1)) as f64,
    );
    Ok(())
}

fn side_name(role: Role) -> &'static str {
    match role {
        Role::Initiator => "initiator",
        Role::Responder => "responder",
    }
}

/// One pair of replicas sharing a history, for the time scenario.
struct Pair {
    label: &'static str,
    config: FieldEditsConfig,
    clock: FakeClock,
    a: Replica,
    b: Replica,
    sessions: Vec<PairSync>,
}

/// Figure 4: the same divergence sync over two histories, the pairs taking turns, round after
/// round; then the sender's and receiver's codec work of the last round again, alone.
fn time(
    small_dir: &Path,
    small_ops: usize,
    big_dir: &Path,
    big_ops: usize,
    rounds: usize,
    warmup: usize,
) -> Result<(), Error> {
    let scratch = stores::scratch()?;
    let mut pairs = Vec::new();
    for (label, dir, ops) in [("small", small_dir, small_ops), ("big", big_dir, big_ops)] {
        let config = stores::config(ops);
        let clock = clock_for(&config);
        let started = Instant::now();
        let mut a = open_copy(dir, &scratch.path().join(format!("{label}-a")), ops, &clock)?;
        let mut b = open_copy(dir, &scratch.path().join(format!("{label}-b")), ops, &clock)?;
        stores::admit_copies(dir, &mut [&mut a, &mut b])?;
        eprintln!(
            "    copied and opened the {ops}-op pair in {:.1} s",
            started.elapsed().as_secs_f64()
        );
        pairs.push(Pair {
            label,
            config,
            clock,
            a,
            b,
            sessions: Vec::new(),
        });
    }
    for pair in &mut pairs {
        let first = sync_pair(&mut pair.a, &mut pair.b)?;
        fig(&format!("{}_in_sync_ms", pair.label), ms(first.elapsed));
    }
    let mut rng = XorShift::new(0x5eed_0004);
    for round in 0..rounds {
        // The pairs take turns going first, so neither always follows the other.
        let order: [usize; 2] = if round % 2 == 0 { [0, 1] } else { [1, 0] };
        for i in order {
            let pair = pairs.get_mut(i).ok_or("pair index")?;
            let (config, clock) = (&pair.config, &pair.clock);
            diverge(
                &mut pair.a,
                config,
                clock,
                &mut rng,
                SAVES,
                Field::Note,
                SAVE_STEP_MS,
            )?;
            diverge(
                &mut pair.b,
                config,
                clock,
                &mut rng,
                SAVES,
                Field::Title,
                SAVE_STEP_MS,
            )?;
            let s = sync_pair(&mut pair.a, &mut pair.b)?;
            check(&s, SAVES)?;
            pair.sessions.push(s);
        }
    }

    let (mut medians, mut firsts) = (Vec::new(), Vec::new());
    for pair in &pairs {
        let label = pair.label;
        let times: Vec<f64> = pair.sessions.iter().map(|s| ms(s.elapsed)).collect();
        eprintln!(
            "    {label} ({} ops at the start) ms per session, in run order: {}",
            pair.config.ops,
            times
                .iter()
                .map(|t| format!("{t:.1}"))
                .collect::<Vec<_>>()
                .join(" ")
        );
        let first = times.first().copied().unwrap_or(f64::NAN);
        fig(&format!("{label}_first_ms"), first);
        firsts.push(first);
        // The first sessions after opening find sled's cache cold and run slower; the figure
        // is the median of the sessions after them.
        let warm = pair.sessions.get(warmup..).unwrap_or_default();
        let m = median(&mut times.get(warmup..).unwrap_or_default().to_vec());
        fig(&format!("{label}_ms"), m);
        fig(&format!("{label}_warm_sessions"), warm.len() as f64);
        medians.push(m);

        // Where the time went: each store call summed over both sides, median over the same
        // sessions.
        let mut names: Vec<&'static str> = Vec::new();
        for s in warm {
            for calls in [&s.initiator_calls, &s.responder_calls] {
                names.extend(calls.0.keys().copied());
            }
        }
        names.sort_unstable();
        names.dedup();
        for name in names {
            let mut v: Vec<f64> = warm
                .iter()
                .map(|s| ms(s.initiator_calls.time(name) + s.responder_calls.time(name)))
                .collect();
            fig(&format!("{label}_call_{name}_ms"), median(&mut v));
            if let Some(s) = pair.sessions.last() {
                let calls = s.initiator_calls.calls(name) + s.responder_calls.calls(name);
                fig(&format!("{label}_calls_{name}"), calls as f64);
            }
        }
        let mut other: Vec<f64> = warm
            .iter()
            .map(|s| {
                ms(s.elapsed
                    .saturating_sub(s.initiator_calls.total() + s.responder_calls.total()))
            })
            .collect();
        fig(&format!("{label}_other_ms"), median(&mut other));
        codec_alone(pair)?;
    }
    let ratio =
        |v: &[f64]| v.get(1).copied().unwrap_or(f64::NAN) / v.first().copied().unwrap_or(f64::NAN);
    fig("ratio", ratio(&medians));
    fig("first_ratio", ratio(&firsts));
    Ok(())
}

/// The responder's side of the last session's responder → initiator ops, again and alone:
/// `ops_since` of the initiator's hello summary and encoding them against the responder's
/// store; then decoding (with verification) the message against the initiator's store, as it
/// did on arrival. Medians of [`CODEC_REPEATS`] runs.
fn codec_alone(pair: &Pair) -> Result<(), Error> {
    let s = pair.sessions.last().ok_or("no sessions")?;
    let hello = s
        .messages
        .iter()
        .find(|m| m.from == Role::Initiator && m.kind == "hello")
        .ok_or("no initiator hello")?;
    let Message::Hello { summary, .. } = message::decode(&hello.payload)? else {
        return Err("the initiator's first message is not a hello".into());
    };
    let ops_msg = s
        .messages
        .iter()
        .find(|m| m.from == Role::Responder && m.kind == "ops")
        .ok_or("no responder ops message")?;
    let Message::Ops { segments, .. } = message::decode(&ops_msg.payload)? else {
        return Err("not an ops message".into());
    };
    let (mut since, mut encode, mut decode) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..CODEC_REPEATS {
        let start = Instant::now();
        let ops = pair.b.ops_since(&summary)?;
        since.push(ms(start.elapsed()));
        let start = Instant::now();
        // As a session encodes them: compressed when that is shorter.
        let encoded = compress(encode_segments(&ops, &StoreOps(&pair.b))?);
        encode.push(ms(start.elapsed()));
        if encoded != segments {
            return Err("encoding the same ops again gave other bytes".into());
        }
        let start = Instant::now();
        let decoded = decode_segments(&segments, &StoreOps(&pair.a))?;
        decode.push(ms(start.elapsed()));
        if decoded.len() != SAVES {
            return Err(format!("decoded {} ops, expected {SAVES}", decoded.len()).into());
        }
    }
    let label = pair.label;
    fig(&format!("{label}_ops_since_ms"), median(&mut since));
    fig(&format!("{label}_encode_ms"), median(&mut encode));
    fig(&format!("{label}_decode_ms"), median(&mut decode));
    Ok(())
}

/// Figures 5 and 6, one `part` per process: the whole shared history to an empty replica as
/// a bundle (`import`), the import's two halves alone (`halves`: decoding and verifying every
/// segment, then storing the decoded ops in one call as the import does), or over a session
/// (`session`).
fn bootstrap(template: &Path, config: &FieldEditsConfig, part: &str) -> Result<(), Error> {
    let scratch = stores::scratch()?;
    let clock = clock_for(config);
    let mut source = open_copy(template, &scratch.path().join("source"), config.ops, &clock)?;
    // Every op the source holds travels: the stream's and the two membership ops.
    let total = usize::try_from(source.op_count())?;
    let n = total as f64;
    let start = Instant::now();
    let bundle = source.export_bundle(None)?;
    fig("export_s", start.elapsed().as_secs_f64());
    fig("bundle_bytes", bundle.len() as f64);
    fig("bundle_bytes_per_op", bundle.len() as f64 / n);
    let mut target = Replica::join_with(
        &scratch.path().join("target"),
        source.book(),
        options(&clock),
    )?;
    match part {
        "import" => {
            let start = Instant::now();
            let imported = target.import_bundle(&bundle)?;
            let import_s = start.elapsed().as_secs_f64();
            if imported.received.applied.stored != total {
                return Err(format!("imported {:?}", imported.received).into());
            }
            fig("import_s", import_s);
            fig("import_ops_per_s", n / import_s);
            fig("import_vm_hwm_mb", figures::peak_rss_mb());
            if target.state_bytes()? != source.state_bytes()? {
                return Err("the imported replica's state differs from the source's".into());
            }
        }
        "halves" => {
            let start = Instant::now();
            let Message::Bundle { segments, .. } = message::decode(&bundle)? else {
                return Err("the export is not a bundle".into());
            };
            let frame_s = start.elapsed().as_secs_f64();
            let start = Instant::now();
            let decoded = decode_signed_segments(&segments, &StoreOps(&target))?;
            let decode_s = frame_s + start.elapsed().as_secs_f64();
            let ops = decoded.ops;
            if ops.len() != total {
                return Err(format!("decoded {} ops, expected {total}", ops.len()).into());
            }
            fig("frame_s", frame_s);
            fig("decode_s", decode_s);
            fig("decode_ops_per_s", n / decode_s);
            // Of the decoding: sealing alone (re-encoding each rebuilt op and hashing it).
            let start = Instant::now();
            for op in &ops {
                op.op().clone().seal()?;
            }
            fig("seal_s", start.elapsed().as_secs_f64());
            fig("decode_vm_hwm_mb", figures::peak_rss_mb());
            let start = Instant::now();
            // Admission (membership, one signature) and the store's apply.
            let applied = target.apply(&ops, &decoded.tips)?;
            let apply_s = start.elapsed().as_secs_f64();
            if applied.stored != total {
                return Err(format!("applied {} ops, expected {}", applied.stored, n).into());
            }
            fig("apply_s", apply_s);
            fig("apply_ops_per_s", n / apply_s);
        }
        "session" => {
            // The empty replica opens the session, the full one answers.
            let s = sync_pair(&mut target, &mut source)?;
            if s.initiator.stored != total || !s.initiator.converged {
                return Err(format!("the session bootstrap stored {:?}", s.initiator).into());
            }
            fig("session_s", s.elapsed.as_secs_f64());
            fig("session_ops_per_s", n / s.elapsed.as_secs_f64());
            fig("session_bytes_per_op", s.wire_bytes() as f64 / n);
            fig("session_ops_messages", s.count(Some("ops"), None) as f64);
            for (side, calls) in [
                ("receiver", &s.initiator_calls),
                ("sender", &s.responder_calls),
            ] {
                for (name, (count, took)) in &calls.0 {
                    fig(&format!("session_{side}_{name}_s"), took.as_secs_f64());
                    fig(&format!("session_{side}_{name}_calls"), *count as f64);
                }
            }
            let calls = s.initiator_calls.total() + s.responder_calls.total();
            fig(
                "session_other_s",
                s.elapsed.saturating_sub(calls).as_secs_f64(),
            );
        }
        other => return Err(format!("unknown bootstrap part {other}").into()),
    }
    Ok(())
}

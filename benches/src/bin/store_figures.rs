//! The durable store's headline figures in one table: durable saves against a bare sled loop,
//! bulk apply rate, open time of a million-op store against a 10,000-op one, rebuild rate and
//! peak memory with a million ops, each next to its target (docs/PERFORMANCE.md).
//!
//! `cargo run --release -p cardlog-benches --bin store_figures [-- --big-ops N]`
//!
//! The parent builds (or finds cached, see `cardlog_benches::stores`) the stores, then runs
//! every scenario in a fresh child process (this binary re-executed with `--scenario`), so one
//! scenario's caches and allocations do not colour the next, and each child's peak resident
//! memory (`VmHWM`) is its own. Children print `FIG name value` lines; the parent collects them
//! and prints the table. Timed sections exclude setup; where two things are compared they are
//! measured alternately in the same run (saves: in one process; opens: one process each), and
//! medians are what is reported.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use cardlog::{Field, Replica, SealedOp, CACHE_BYTES_DEFAULT};
use cardlog_benches::figures::{
    self, child_quiet, fig, fmt_value, get, machine, median, pass, rss_mb, Args, Figures,
};
use cardlog_benches::stores::{self, CONTACTS};
use cardlog_benches::{Error, FieldEdits};

/// Ops in the small store of the open-time comparison.
const SMALL_OPS: usize = 10_000;
/// Ops in the big store (open time, rebuild, memory), unless `--big-ops` says otherwise.
const BIG_OPS_DEFAULT: usize = 1_000_000;
/// Ops applied by the bulk-apply scenario (into a fresh replica each time).
const APPLY_OPS: usize = 100_000;
/// Rounds of the alternating save scenario, and saves per round and contender.
const SAVE_ROUNDS: usize = 7;
const SAVES_PER_ROUND: usize = 300;
/// Opens of each store (each in a fresh process, the two stores alternating).
const OPEN_ROUNDS: usize = 7;
/// Saves made in the memory scenario.
const MEMORY_SAVES: usize = 200;

fn main() -> Result<(), Error> {
    let args = Args::from_env();
    let value_of = |flag: &str| args.value(flag).map(str::to_owned);
    if let Some(scenario) = value_of("--scenario") {
        let dir = value_of("--dir").map(PathBuf::from);
        let ops = value_of("--ops").map(|s| s.parse()).transpose()?;
        let variant = value_of("--variant");
        return run_scenario(&scenario, dir.as_deref(), ops, variant.as_deref());
    }
    let big_ops = value_of("--big-ops")
        .map(|s| s.parse())
        .transpose()?
        .unwrap_or(BIG_OPS_DEFAULT);
    parent(big_ops)
}

// ---- the parent --------------------------------------------------------------------------

/// Runs this binary as a child with `args` (see [`figures::child`]), labelled by its scenario
/// and variant.
fn child(args: &[&str]) -> Result<Figures, Error> {
    let variant = args
        .iter()
        .position(|a| *a == "--variant")
        .and_then(|i| args.get(i + 1))
        .map_or(String::new(), |v| format!(" {v}"));
    let label = format!("{}{variant}", args.get(1).copied().unwrap_or("?"));
    figures::child(&label, args)
}

fn parent(big_ops: usize) -> Result<(), Error> {
    eprintln!("store figures: {}", machine());
    eprintln!("stores cached under {}", stores::cache_root().display());
    let small_s = SMALL_OPS.to_string();
    let big_s = big_ops.to_string();
    let small = child(&["--scenario", "build", "--ops", &small_s])?;
    let big = child(&["--scenario", "build", "--ops", &big_s])?;
    let small_dir = stores::cached(SMALL_OPS)?.0;
    let big_dir = stores::cached(big_ops)?.0;

    let save = child(&["--scenario", "save"])?;
    // Each apply variant runs in its own process, so each peak memory rise is its own.
    let mut apply = BTreeMap::new();
    for variant in [
        "chunk1000_durable",
        "chunk10000_durable",
        "bulk_chunk10000",
        "replay_in_memory",
    ] {
        for (name, value) in child(&["--scenario", "apply", "--variant", variant])? {
            apply.insert(format!("{variant}_{name}"), value);
        }
    }
    // Each open is a fresh process (as when an app starts): nothing is cached in it, and sled's
    // lock is surely released between two opens. The two stores alternate.
    let (mut open_small, mut open_big) = (Vec::new(), Vec::new());
    let mut close_big = Vec::new();
    for _ in 0..OPEN_ROUNDS {
        for (dir, ops, times) in [
            (&small_dir, &small_s, &mut open_small),
            (&big_dir, &big_s, &mut open_big),
        ] {
            let figures = child_quiet(&[
                "--scenario",
                "open",
                "--dir",
                &dir.to_string_lossy(),
                "--ops",
                ops,
            ])?;
            times.push(get(&figures, "open_ms")?);
            if ops == &big_s {
                close_big.push(get(&figures, "close_ms")?);
            }
        }
    }
    eprintln!("  {OPEN_ROUNDS} opens of each store done");
    // Rebuild and memory each work on their own copy: both write to the store.
    let scratch = stores::scratch()?;
    let copy = scratch.path().join("rebuild");
    stores::copy_dir(&big_dir, &copy)?;
    let rebuild = child(&[
        "--scenario",
        "rebuild",
        "--dir",
        &copy.to_string_lossy(),
        "--ops",
        &big_s,
    ])?;
    std::fs::remove_dir_all(&copy)?;
    let copy = scratch.path().join("memory");
    stores::copy_dir(&big_dir, &copy)?;
    let memory = child(&[
        "--scenario",
        "memory",
        "--dir",
        &copy.to_string_lossy(),
        "--ops",
        &big_s,
    ])?;
    let sled_only = child(&["--scenario", "sled_open", "--dir", &copy.to_string_lossy()])?;
    drop(scratch);

    let save_ratio = get(&save, "save_ratio")?;
    let apply_10k = get(&apply, "chunk10000_durable_ops_per_s")?;
    let open_small_ms = median(&mut open_small.clone());
    let open_big_ms = median(&mut open_big.clone());
    let open_ratio = open_big_ms / open_small_ms;
    let rebuild_rate = get(&rebuild, "rebuild_ops_per_s")?;
    let peak_mb = get(&memory, "vm_hwm_mb")?;
    let m = |n: usize| {
        if n.is_multiple_of(1_000_000) {
            format!("{}M", n / 1_000_000)
        } else {
            format!("{}k", n / 1_000)
        }
    };

    println!();
    println!("cardlog store figures — {}", machine());
    println!(
        "stores: {} contacts, single-field edits; {} store {:.0} MiB on disk, {} store {:.0} MiB",
        CONTACTS,
        m(SMALL_OPS),
        get(&small, "store_mib")?,
        m(big_ops),
        get(&big, "store_mib")?
    );
    println!();
    println!("| # | Figure | Measured | Target | Result |");
    println!("|---|--------|----------|--------|--------|");
    println!(
        "| 1 | Durable single-field saves / bare sled insert+flush | {:.2} ({:.0} vs {:.0} per s) | ≥ 0.7 | {} |",
        save_ratio,
        get(&save, "replica_saves_per_s")?,
        get(&save, "sled_inserts_per_s")?,
        pass(save_ratio >= 0.7)
    );
    println!(
        "| 2 | Apply {} single-field ops, 10,000 per durable call | {:.0} ops/s | ≥ 50,000 | {} |",
        m(APPLY_OPS),
        apply_10k,
        pass(apply_10k >= 50_000.0)
    );
    println!(
        "| 3 | Open {} store / open {} store | {:.2} ({:.1} ms vs {:.1} ms) | ≤ 2 and < 100 ms | {} |",
        m(big_ops),
        m(SMALL_OPS),
        open_ratio,
        open_big_ms,
        open_small_ms,
        pass(open_ratio <= 2.0 && open_big_ms < 100.0)
    );
    println!(
        "| 4 | Rebuild of the {} store | {:.0} ops/s ({:.1} s) | ≥ 500,000 ops/s | {} |",
        m(big_ops),
        rebuild_rate,
        get(&rebuild, "rebuild_s")?,
        pass(rebuild_rate >= 500_000.0)
    );
    println!(
        "| 5 | Peak RSS: open {} store, read, {} saves | {:.1} MB | ≤ 100 MB | {} |",
        m(big_ops),
        MEMORY_SAVES,
        peak_mb,
        pass(peak_mb <= 100.0)
    );
    let list = |v: &[f64]| {
        v.iter()
            .map(|ms| format!("{ms:.1}"))
            .collect::<Vec<_>>()
            .join(" ")
    };
    println!();
    println!("Details:");
    println!(
        "  open {} store, ms, in run order: {}",
        m(SMALL_OPS),
        list(&open_small)
    );
    println!(
        "  open {} store, ms, in run order: {}",
        m(big_ops),
        list(&open_big)
    );
    println!("  close {} store, ms: {}", m(big_ops), list(&close_big));
    for (name, figures) in [
        ("build small", &small),
        ("build big", &big),
        ("save", &save),
        ("apply", &apply),
        ("rebuild", &rebuild),
        ("memory", &memory),
        ("sled alone", &sled_only),
    ] {
        let line: Vec<String> = figures
            .iter()
            .map(|(k, v)| format!("{k}={}", fmt_value(*v)))
            .collect();
        println!("  {name}: {}", line.join(" "));
    }
    Ok(())
}

/// The memory of sled alone: opens the sled database of a store (`dir/db`) with the same cache
/// size and reads nothing.
fn sled_open(dir: &Path) -> Result<(), Error> {
    let start = Instant::now();
    let db = sled::Config::new()
        .path(dir.join("db"))
        .cache_capacity(CACHE_BYTES_DEFAULT)
        .open()?;
    fig("sled_open_ms", start.elapsed().as_secs_f64() * 1e3);
    fig("sled_rss_after_open_mb", rss_mb().1);
    drop(db);
    Ok(())
}

// ---- the scenarios (children) ------------------------------------------------------------

/// Resets this process's peak resident memory (`VmHWM`) to its current size, so a later
/// [`rss_mb`] gives the peak of what ran in between (Linux 4.0 and later; ignored elsewhere).
fn reset_peak() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

fn run_scenario(
    name: &str,
    dir: Option<&Path>,
    ops: Option<usize>,
    variant: Option<&str>,
) -> Result<(), Error> {
    match name {
        "build" => build(ops.ok_or("--ops")?),
        "save" => save(),
        "apply" => apply(variant.ok_or("--variant")?),
        "open" => open(dir.ok_or("--dir")?, ops.ok_or("--ops")?),
        "rebuild" => rebuild(dir.ok_or("--dir")?, ops.ok_or("--ops")?),
        "memory" => memory(dir.ok_or("--dir")?, ops.ok_or("--ops")?),
        "sled_open" => sled_open(dir.ok_or("--dir")?),
        other => Err(format!("unknown scenario {other}").into()),
    }?;
    let (peak, _) = rss_mb();
    fig("vm_hwm_mb", peak);
    Ok(())
}

/// Finds or builds the cached `ops`-op store.
fn build(ops: usize) -> Result<(), Error> {
    let started = Instant::now();
    let (dir, built) = stores::cached(ops)?;
    if built {
        let s = started.elapsed().as_secs_f64();
        eprintln!("  built the {ops}-op store in {s:.1} s");
        fig("build_s", s);
        fig("build_ops_per_s", ops as f64 / s);
    }
    fig(
        "store_mib",
        stores::dir_bytes(&dir)? as f64 / (1 << 20) as f64,
    );
    Ok(())
}

/// Target 1: durable single-field edits against a bare sled insert + flush loop, alternating.
fn save() -> Result<(), Error> {
    let config = stores::config(CONTACTS);
    let scratch = stores::scratch()?;
    let mut replica = stores::build(
        &scratch.path().join("replica"),
        &config,
        stores::default_options(&config),
        stores::BUILD_CHUNK,
    )?;
    let edit = FieldEdits::new(&stores::config(CONTACTS + 1))
        .last()
        .ok_or("no op")??;
    let value = vec![0x5a_u8; edit.bytes().len() + 8];
    let db = sled::Config::new()
        .path(scratch.path().join("sled"))
        .cache_capacity(CACHE_BYTES_DEFAULT)
        .open()?;
    for n in 0..CONTACTS as u64 {
        db.insert(n.to_be_bytes(), value.as_slice())?;
    }
    db.flush()?;
    // The same eight keys a single-field save writes (log, index, order, author head, two
    // history entries, two registers), as one sled batch: where the store's cost would be if
    // cardlog itself cost nothing.
    let batch_values: [usize; 8] = [value.len(), 36, 24, 60, 120, 120, 110, 110];

    let (mut replica_rates, mut sled_rates, mut batch_rates, mut ratios) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut n = 0usize;
    let mut key = CONTACTS as u64;
    for _ in 0..SAVE_ROUNDS {
        let start = Instant::now();
        for _ in 0..SAVES_PER_ROUND {
            n += 1;
            let id = FieldEdits::contact(&config, n % CONTACTS);
            replica
                .edit(id, |c| {
                    c.set(Field::Note, format!("note {n}"));
                })?
                .ok_or("the note did not change")?;
        }
        let replica_rate = SAVES_PER_ROUND as f64 / start.elapsed().as_secs_f64();

        let start = Instant::now();
        for _ in 0..SAVES_PER_ROUND {
            key += 1;
            db.insert(key.to_be_bytes(), value.as_slice())?;
            db.flush()?;
        }
        let sled_rate = SAVES_PER_ROUND as f64 / start.elapsed().as_secs_f64();

        let start = Instant::now();
        for _ in 0..SAVES_PER_ROUND {
            let mut batch = sled::Batch::default();
            for (i, len) in batch_values.iter().enumerate() {
                key += 1;
                let mut k = vec![b'b', i as u8];
                k.extend_from_slice(&key.to_be_bytes());
                batch.insert(k, vec![0xa5_u8; *len]);
            }
            db.apply_batch(batch)?;
            db.flush()?;
        }
        let batch_rate = SAVES_PER_ROUND as f64 / start.elapsed().as_secs_f64();

        replica_rates.push(replica_rate);
        sled_rates.push(sled_rate);
        batch_rates.push(batch_rate);
        ratios.push(replica_rate / sled_rate);
    }
    fig("replica_saves_per_s", median(&mut replica_rates));
    fig("sled_inserts_per_s", median(&mut sled_rates));
    fig("sled_batch8_flushes_per_s", median(&mut batch_rates));
    fig("save_ratio", median(&mut ratios));
    fig("op_bytes", edit.bytes().len() as f64);
    Ok(())
}

/// Target 2: applying ops made elsewhere, into a fresh replica each time.
fn apply(variant: &str) -> Result<(), Error> {
    let config = stores::config(APPLY_OPS);
    let ops: Vec<SealedOp> = FieldEdits::new(&config).collect::<Result<_, _>>()?;
    let scratch = stores::scratch()?;
    let dir = scratch.path().join(variant);
    // What the process holds before (the ops above) is not part of the rise.
    reset_peak();
    let before = rss_mb().1;
    if variant == "replay_in_memory" {
        // The same ops through the core's in-memory replay: the cost of the replay rules with
        // no storage at all, for scale.
        let start = Instant::now();
        let mut replay = cardlog_core::Replay::new();
        for op in ops.iter().cloned() {
            replay.insert(op)?;
        }
        let s = start.elapsed().as_secs_f64();
        if replay.len() != ops.len() {
            return Err("the in-memory replay did not apply every op".into());
        }
        fig("ops_per_s", ops.len() as f64 / s);
        fig("peak_rise_mb", rss_mb().0 - before);
        return Ok(());
    }
    let (chunk, bulk) = match variant {
        "chunk1000_durable" => (1_000, false),
        "chunk10000_durable" => (10_000, false),
        "bulk_chunk10000" => (10_000, true),
        other => return Err(format!("unknown apply variant {other}").into()),
    };
    let mut replica = Replica::create_with(&dir, stores::default_options(&config))?;
    replica.add_member(
        cardlog_benches::device_id(config.author),
        cardlog::MemberRole::Write,
        "generated",
    )?;
    let book = replica.book();
    // Signing is the sender's work, done before the clock starts; verifying is the receiver's.
    let parts: Vec<(&[SealedOp], Vec<cardlog::SignedTip>)> = ops
        .chunks(chunk)
        .map(|part| (part, cardlog_benches::sign_generated(book, part)))
        .collect();
    let start = Instant::now();
    let mut stored = 0;
    if bulk {
        let mut bulk = replica.bulk();
        for (part, tips) in &parts {
            stored += bulk.apply(part, tips)?.stored;
        }
        bulk.finish()?;
    } else {
        for (part, tips) in &parts {
            stored += replica.apply(part, tips)?.stored;
        }
    }
    let s = start.elapsed().as_secs_f64();
    if stored != ops.len() {
        return Err(format!("{variant}: stored {stored} of {}", ops.len()).into());
    }
    fig("ops_per_s", ops.len() as f64 / s);
    fig("peak_rise_mb", rss_mb().0 - before);
    Ok(())
}

/// Target 3: one open of a cached store, in a fresh process; the close is timed separately.
fn open(dir: &Path, ops: usize) -> Result<(), Error> {
    let options = stores::default_options(&stores::config(ops));
    let (replica, took, _) = stores::open_timed(dir, &options)?;
    let expected = ops as u64 + stores::MEMBERSHIP_OPS;
    if replica.op_count() != expected {
        return Err(format!(
            "{} ops in the store, expected {expected}",
            replica.op_count()
        )
        .into());
    }
    fig("open_ms", took.as_secs_f64() * 1e3);
    fig("rss_after_open_mb", rss_mb().1);
    let start = Instant::now();
    drop(replica);
    fig("close_ms", start.elapsed().as_secs_f64() * 1e3);
    Ok(())
}

/// Target 4: rebuilding the state of a (copied) store from its log.
fn rebuild(dir: &Path, ops: usize) -> Result<(), Error> {
    let options = stores::default_options(&stores::config(ops));
    let (mut replica, _, _) = stores::open_timed(dir, &options)?;
    let before = replica.state_bytes()?;
    let start = Instant::now();
    let replayed = replica.rebuild()?;
    let s = start.elapsed().as_secs_f64();
    // The store also holds the book's founding op and the op adding its device.
    if replayed != ops as u64 + stores::MEMBERSHIP_OPS {
        return Err(format!("rebuilt {replayed} ops, expected {ops}").into());
    }
    if replica.state_bytes()? != before {
        return Err("the rebuilt state differs".into());
    }
    fig("rebuild_s", s);
    fig("rebuild_ops_per_s", ops as f64 / s);
    Ok(())
}

/// Target 5: peak memory of an app session on a (copied) big store: open, list every contact,
/// read some histories, make some durable saves.
fn memory(dir: &Path, ops: usize) -> Result<(), Error> {
    let config = stores::config(ops);
    // The copy is a new device, so the founder (whose key file the
    // copy still holds before it opens) admits it, as sync_figures does; setup, not timed.
    let founder = tempfile::tempdir()?;
    std::fs::copy(
        dir.join(cardlog_store::KEY_FILE),
        founder.path().join(cardlog_store::KEY_FILE),
    )?;
    let (mut replica, took, _) = stores::open_timed(dir, &stores::default_options(&config))?;
    fig("open_ms", took.as_secs_f64() * 1e3);
    fig("rss_after_open_mb", rss_mb().1);
    stores::admit_copies(founder.path(), &mut [&mut replica])?;
    let contacts = replica.contacts()?;
    if contacts.len() != config.contacts {
        return Err(format!("{} contacts, expected {}", contacts.len(), config.contacts).into());
    }
    let mut versions = 0;
    for view in contacts.iter().take(20) {
        for (_, history) in replica.contact_history(&view.contact.id)? {
            versions += history.len();
        }
    }
    fig("history_versions_read", versions as f64);
    fig("rss_after_reads_mb", rss_mb().1);
    let start = Instant::now();
    for n in 0..MEMORY_SAVES {
        let id = FieldEdits::contact(&config, n % config.contacts);
        replica.edit(id, |c| {
            c.set(Field::Note, format!("session note {n}"));
        })?;
    }
    fig(
        "saves_per_s",
        MEMORY_SAVES as f64 / start.elapsed().as_secs_f64(),
    );
    fig("rss_after_saves_mb", rss_mb().1);
    // A lookup by id needs the log index (built from one read of the log): what it costs to
    // build and hold, as the first sync or history read after an app starts would.
    let start = Instant::now();
    let found = replica.ops_matching(&cardlog::IdPrefix::parse("00")?, 1)?;
    fig("index_build_ms", start.elapsed().as_secs_f64() * 1e3);
    if found.is_empty() && ops > 1_000 {
        return Err("no op id starts with 00".into());
    }
    fig("rss_after_index_mb", rss_mb().1);
    Ok(())
}

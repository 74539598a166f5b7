//! A store as it grows to a million contacts, beside SQLite holding the same contacts
//! (issue 23): bytes kept, before and after `compact`, and an open in a fresh process (time,
//! bytes written, peak memory).
//!
//! `cargo run --release -p cardlog-benches --bin growth_figures [-- OPTIONS]`
//!
//! - `--sizes N,N,...`: the store sizes, in contacts (default 10000,100000,1000000).
//! - `--quick`: sizes 500 and 5,000, for CI.
//! - `--opens N`: fresh-process opens per store; the table shows the median (default 3).
//! - `--scratch DIR` (or `CARDLOG_COMPARE_DIR`): where the stores are written (a fresh
//!   temporary directory inside it, removed at the end); a million contacts take about 2 GB.
//!
//! Each size is a new store: the compare workload's contacts (eight fields, the e-mail address
//! and the phone number as items with ids) created in bulk mode, 1,000 per chunk, then closed.
//! Each open is this binary re-executed with `--open DIR` (`Replica::open` as an app starts,
//! timed in the child; what it wrote from /proc/self/io; its VmHWM), and beside it the same
//! store's two sled databases opened by sled alone (`--open-sled DIR`: `sled::Config` as
//! `SledKv::open` sets it, no cardlog code), the floor under the store's open on sled 0.34.
//! The SQLite anchor is
//! `python3`'s `sqlite3` module (WAL, `synchronous=FULL`, one `WITHOUT ROWID` row per contact
//! with the same ids, item ids and values), its bytes after a checkpoint, and its open (a
//! connect and a first row read in a fresh `python3`, timed inside it). Without `python3`
//! the anchor is left out and said so.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use cardlog::{Options as ReplicaOptions, Replica};
use cardlog_benches::compare::on_cardlog::save_chunk;
use cardlog_benches::compare::workload::{Save, Workload, WorkloadConfig};
use cardlog_benches::figures::{self, fig, Args, Figures};
use cardlog_benches::{stores, Error};
use cardlog_store::keys::meta;

/// Contacts created per bulk chunk.
const CHUNK: usize = 1_000;

/// Pause between a close and the next open: sled 0.34 releases its lock from a background
/// thread after the close ([`stores::open_timed`]).
const REOPEN_PAUSE: Duration = Duration::from_millis(300);

/// Creates the table and loads tab-separated rows from stdin; `argv[1]` is the database.
const SQLITE_LOAD: &str = r#"
import sqlite3, sys
con = sqlite3.connect(sys.argv[1])
con.execute("PRAGMA journal_mode=WAL")
con.execute("PRAGMA synchronous=FULL")
con.execute("CREATE TABLE contacts (id BLOB PRIMARY KEY, email_id BLOB, phone_id BLOB, "
            "given TEXT, family TEXT, nickname TEXT, email TEXT, phone TEXT, org TEXT, "
            "title TEXT, note TEXT) WITHOUT ROWID")
def rows():
    for line in sys.stdin:
        r = line.rstrip("\n").split("\t")
        yield (bytes.fromhex(r[0]), bytes.fromhex(r[1]), bytes.fromhex(r[2]), *r[3:])
con.executemany("INSERT INTO contacts VALUES (?,?,?,?,?,?,?,?,?,?,?)", rows())
con.commit()
con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
con.close()
"#;

/// Opens the database `argv[1]` and reads a first row, timed; prints `FIG sqlite_open_ms`.
const SQLITE_OPEN: &str = r#"
import sqlite3, sys, time
start = time.perf_counter()
con = sqlite3.connect(sys.argv[1])
row = con.execute("SELECT given FROM contacts LIMIT 1").fetchone()
ms = (time.perf_counter() - start) * 1000
assert row is not None
print("FIG sqlite_open_ms", ms)
"#;

fn main() -> Result<(), Error> {
    let args = Args::from_env();
    if args.has("--help") || args.has("-h") {
        println!(
            "growth_figures [--sizes N,N,...] [--quick] [--opens N] [--scratch DIR]\n\
             A store at 10k, 100k and 1M contacts beside SQLite (see the source's docs)."
        );
        return Ok(());
    }
    if let Some(dir) = args.value("--open") {
        return open_child(Path::new(dir));
    }
    if let Some(dir) = args.value("--open-sled") {
        return open_sled_child(Path::new(dir));
    }
    let sizes: Vec<usize> = if args.has("--quick") {
        vec![500, 5_000]
    } else {
        args.value("--sizes")
            .unwrap_or("10000,100000,1000000")
            .split(',')
            .map(|n| n.trim().parse::<usize>())
            .collect::<Result<_, _>>()?
    };
    if sizes.contains(&0) {
        return Err("--sizes: every size must be at least 1".into());
    }
    let opens = args.number("--opens", 3)?.max(1);
    let scratch_root = args
        .value("--scratch")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("CARDLOG_COMPARE_DIR").map(PathBuf::from))
        .unwrap_or_else(std::env::temp_dir);
    std::fs::create_dir_all(&scratch_root)?;
    let scratch = tempfile::tempdir_in(&scratch_root)?;
    println!("# growth_figures on {}", figures::machine());
    let sqlite = python_has_sqlite();
    if !sqlite {
        println!("(python3 with its sqlite3 module not found: the SQLite anchor is left out)");
    }
    let mut rows = Vec::new();
    for &n in &sizes {
        let dir = scratch.path().join(format!("store-{n}"));
        let row = one_size(
            n,
            &dir,
            opens,
            sqlite.then(|| scratch.path().join(format!("{n}.db"))),
        )?;
        println!("{}", row.line(n));
        rows.push((n, row));
        std::fs::remove_dir_all(&dir)?;
    }
    report(&rows);
    Ok(())
}

/// What one size measured.
struct Row {
    /// What a contact's database value is made of.
    breakdown: Breakdown,
    /// The store's bytes after the saves, closed.
    bytes: u64,
    /// Its database's and op log's parts of them.
    db: u64,
    log: u64,
    /// The store's bytes after `compact`.
    compacted: u64,
    /// Medians over the fresh-process opens, before and after `compact`: of the store, and
    /// of its databases by sled alone.
    open: Figures,
    open_compacted: Figures,
    sled_open: Figures,
    sled_open_compacted: Figures,
    /// SQLite's bytes and open time, when measured.
    sqlite: Option<(u64, f64)>,
    create_s: f64,
}

impl Row {
    fn line(&self, n: usize) -> String {
        let per = |b: u64| b as f64 / n as f64;
        let fig = |f: &Figures, name: &str| f.get(name).copied().unwrap_or(f64::NAN);
        let sqlite = self.sqlite.map_or_else(
            || "SQLite not measured".to_owned(),
            |(bytes, ms)| {
                format!(
                    "SQLite {:.1} MB ({:.0} B/contact; cardlog compacted {:.2}x), open {ms:.2} ms",
                    bytes as f64 / 1e6,
                    per(bytes),
                    self.compacted as f64 / bytes as f64
                )
            },
        );
        format!(
            "{n} contacts (created in {:.1} s): {}; {:.1} MB kept ({:.0} B/contact: database {:.1} MB, \
             op log {:.1} MB), {:.1} MB after compact; open {:.2} ms writing {:.0} KiB, peak \
             {:.1} MB (sled alone {:.2} ms writing {:.0} KiB); compacted open {:.2} ms writing \
             {:.0} KiB (sled alone {:.2} ms writing {:.0} KiB); {sqlite}",
            self.create_s,
            self.breakdown,
            self.bytes as f64 / 1e6,
            per(self.bytes),
            self.db as f64 / 1e6,
            self.log as f64 / 1e6,
            self.compacted as f64 / 1e6,
            fig(&self.open, "open_ms"),
            fig(&self.open, "open_write_bytes") / 1024.0,
            fig(&self.open, "open_peak_mb"),
            fig(&self.sled_open, "open_ms"),
            fig(&self.sled_open, "open_write_bytes") / 1024.0,
            fig(&self.open_compacted, "open_ms"),
            fig(&self.open_compacted, "open_write_bytes") / 1024.0,
            fig(&self.sled_open_compacted, "open_ms"),
            fig(&self.sled_open_compacted, "open_write_bytes") / 1024.0,
        )
    }
}

/// Builds a store of `n` contacts at `dir`, measures it, compacts it, measures again, and
/// (with `sqlite`) builds the SQLite anchor there.
fn one_size(n: usize, dir: &Path, opens: usize, sqlite: Option<PathBuf>) -> Result<Row, Error> {
    let mut workload = Workload::new(WorkloadConfig::full().seed);
    let mut replica = Replica::create(dir)?;
    let mut sqlite_rows = String::new();
    let mut made = 0;
    let mut loader = match &sqlite {
        Some(db) => Some(
            Command::new("python3")
                .args(["-c", SQLITE_LOAD])
                .arg(db)
                .stdin(Stdio::piped())
                .spawn()?,
        ),
        None => None,
    };
    let mut create_s = 0.0;
    while made < n {
        let count = CHUNK.min(n - made);
        let contacts: Vec<_> = (0..count).map(|_| workload.create()).collect();
        if loader.is_some() {
            sqlite_rows.clear();
            for c in &contacts {
                let hex = |b: &[u8; 16]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
                sqlite_rows.push_str(&format!(
                    "{}\t{}\t{}\t{}\n",
                    hex(&c.id),
                    hex(&c.item_ids[0]),
                    hex(&c.item_ids[1]),
                    c.values.join("\t")
                ));
            }
        }
        let chunk_start = Instant::now();
        save_chunk(
            &mut replica,
            contacts.into_iter().map(Save::Create).collect(),
            true,
        )?;
        create_s += chunk_start.elapsed().as_secs_f64();
        if let Some(loader) = loader.as_mut() {
            let sent = loader
                .stdin
                .as_mut()
                .map(|stdin| stdin.write_all(sqlite_rows.as_bytes()));
            if let Some(Err(e)) = sent {
                // It stopped reading: its exit status says more than the broken pipe.
                let status = loader.wait()?;
                return Err(format!("python3 loading the SQLite anchor: {status} ({e})").into());
            }
        }
        made += count;
    }
    let breakdown = value_breakdown(&replica, &workload, n.min(BREAKDOWN_CONTACTS))?;
    if replica.op_count() != n as u64 + 1 {
        return Err(format!(
            "the store holds {} ops for {n} contacts",
            replica.op_count()
        )
        .into());
    }
    drop(replica);
    let sqlite_bytes = match (loader, &sqlite) {
        (Some(mut loader), Some(db)) => {
            drop(loader.stdin.take());
            if !loader.wait()?.success() {
                return Err("python3 failed to load the SQLite anchor".into());
            }
            Some(sqlite_files(db)?)
        }
        _ => None,
    };
    let bytes = stores::dir_bytes(dir)?;
    let db = stores::dir_bytes(&dir.join("db"))?;
    let log = std::fs::metadata(dir.join("ops.log"))?.len();
    std::thread::sleep(REOPEN_PAUSE);
    let open = opens_of(dir, opens, "--open")?;
    let sled_open = opens_of(dir, opens, "--open-sled")?;
    Replica::compact(dir, ReplicaOptions::default())?;
    let compacted = stores::dir_bytes(dir)?;
    let open_compacted = opens_of(dir, opens, "--open")?;
    let sled_open_compacted = opens_of(dir, opens, "--open-sled")?;
    let sqlite = match (sqlite_bytes, &sqlite) {
        (Some(bytes), Some(db)) => {
            let mut ms = Vec::new();
            for _ in 0..opens {
                let out = Command::new("python3")
                    .args(["-c", SQLITE_OPEN])
                    .arg(db)
                    .output()?;
                let text = String::from_utf8_lossy(&out.stdout);
                let value = text
                    .split_whitespace()
                    .nth(2)
                    .ok_or("python3 printed no open time")?;
                ms.push(value.parse::<f64>()?);
            }
            for file in sqlite_paths(db) {
                let _ = std::fs::remove_file(file);
            }
            Some((bytes, figures::median(&mut ms)))
        }
        _ => None,
    };
    Ok(Row {
        breakdown,
        bytes,
        db,
        log,
        compacted,
        open,
        open_compacted,
        sled_open,
        sled_open_compacted,
        sqlite,
        create_s,
    })
}

/// Contacts whose database values [`value_breakdown`] adds up.
const BREAKDOWN_CONTACTS: usize = 10_000;

/// The bytes of contacts' database values (`keys::contact_value`), and of the same registers
/// in store format 5's encoding (the registers' map as bincode encodes it), summed over the
/// registers' parts as each encodes on its own.
#[derive(Default)]
struct Breakdown {
    contacts: u64,
    registers: u64,
    value: u64,
    /// The same registers in format 5's encoding, and its parts below.
    map: u64,
    paths: u64,
    /// Of the write keys (timestamp, author, op): the author's and the op's ids.
    write_keys: u64,
    ids: u64,
    values: u64,
    replaces: u64,
    /// Write counts, seqs, first timestamps and length prefixes.
    rest: u64,
}

impl std::fmt::Display for Breakdown {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let per = |b: u64| b as f64 / self.contacts.max(1) as f64;
        write!(
            f,
            "a contact's value {:.0} B for {:.1} registers (format 5's {:.0} B: paths {:.0}, \
             write keys {:.0} of which ids {:.0}, values {:.0}, replaced ids {:.0}, the rest {:.0})",
            per(self.value),
            per(self.registers),
            per(self.map),
            per(self.paths),
            per(self.write_keys),
            per(self.ids),
            per(self.values),
            per(self.replaces),
            per(self.rest)
        )
    }
}

/// Adds up the database values of the first `count` contacts `workload` made.
fn value_breakdown(
    replica: &Replica,
    workload: &Workload,
    count: usize,
) -> Result<Breakdown, Error> {
    use cardlog_core::codec::encode_to_vec as enc;
    let mut b = Breakdown::default();
    for i in 0..count {
        let id = workload
            .id(i)
            .ok_or("a contact the workload did not make")?;
        let registers = replica.store().contact_registers(&cardlog::ContactId(id))?;
        b.contacts += 1;
        b.value += cardlog_store::keys::contact_value(&registers).len() as u64;
        b.map += enc(&registers).len() as u64;
        for (path, (_, heads)) in &registers {
            b.registers += 1;
            b.paths += enc(path).len() as u64;
            for w in heads.iter() {
                b.write_keys += enc(&w.key).len() as u64;
                b.ids += (enc(&w.key.author).len() + enc(&w.key.op).len()) as u64;
                b.values += enc(&w.value).len() as u64;
                // The ids alone (their length prefix is among the rest).
                b.replaces += w
                    .replaces
                    .iter()
                    .map(|id| enc(id).len() as u64)
                    .sum::<u64>();
            }
        }
    }
    b.rest = b
        .map
        .saturating_sub(b.paths + b.write_keys + b.values + b.replaces);
    Ok(b)
}

/// The median figures of `count` fresh-process opens of the store at `dir`.
fn opens_of(dir: &Path, count: usize, mode: &str) -> Result<Figures, Error> {
    let arg = dir.to_string_lossy().into_owned();
    let mut runs = Vec::new();
    for _ in 0..count {
        runs.push(figures::child_quiet(&[mode, &arg])?);
        std::thread::sleep(REOPEN_PAUSE);
    }
    Ok(figures::medians(&runs))
}

/// The child: opens the store at `dir` as an app starts and prints what the open took.
fn open_child(dir: &Path) -> Result<(), Error> {
    let written = figures::io_written();
    let (replica, took, _) = stores::open_timed(dir, &ReplicaOptions::default())?;
    figures::fig_written("open", written);
    fig("open_ms", took.as_secs_f64() * 1000.0);
    fig("open_peak_mb", figures::peak_rss_mb());
    drop(replica);
    Ok(())
}

/// The child of `--open-sled`: opens the two sled databases of the store at `dir` with sled
/// alone, configured as `SledKv::open` configures them (cache, segment sizes, side by side),
/// reads one key of each, and prints what that took: what the store's open cannot go below
/// while it keeps its state in sled 0.34.
fn open_sled_child(dir: &Path) -> Result<(), Error> {
    let main_dir = dir.join("db");
    let written = figures::io_written();
    let start = Instant::now();
    let (main, names) = stores::open_sled_pair(&main_dir, ReplicaOptions::default().cache_bytes)?;
    if main.get(meta::FORMAT)?.is_none() {
        return Err(format!("{} holds no store format", main_dir.display()).into());
    }
    names.first()?;
    let took = start.elapsed();
    figures::fig_written("open", written);
    fig("open_ms", took.as_secs_f64() * 1000.0);
    drop((main, names));
    Ok(())
}

/// Whether `python3` runs and has its `sqlite3` module.
fn python_has_sqlite() -> bool {
    Command::new("python3")
        .args(["-c", "import sqlite3"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// The files of the SQLite database `db` (the database, its WAL and shared-memory files).
fn sqlite_paths(db: &Path) -> [PathBuf; 3] {
    let with = |suffix: &str| {
        let mut name = db.as_os_str().to_owned();
        name.push(suffix);
        PathBuf::from(name)
    };
    [db.to_path_buf(), with("-wal"), with("-shm")]
}

/// The bytes of the SQLite database `db`'s files.
fn sqlite_files(db: &Path) -> Result<u64, Error> {
    let mut total = 0;
    for file in sqlite_paths(db) {
        total += std::fs::metadata(&file).map_or(0, |m| m.len());
    }
    Ok(total)
}

/// The issue's targets over the sizes measured: bytes at the largest size against SQLite's,
/// the largest store's open against 10 ms and the smallest's, and bytes written per open.
fn report(rows: &[(usize, Row)]) {
    let (Some((small, first)), Some((large, last))) = (rows.first(), rows.last()) else {
        return;
    };
    let open = |r: &Row| r.open.get("open_ms").copied().unwrap_or(f64::NAN);
    let open_c = |r: &Row| r.open_compacted.get("open_ms").copied().unwrap_or(f64::NAN);
    let sled = |f: &Figures, name: &str| f.get(name).copied().unwrap_or(f64::NAN);
    println!("\ntargets (issue 23), at {large} contacts:");
    if let Some((bytes, _)) = last.sqlite {
        let ratio = last.compacted as f64 / bytes as f64;
        println!(
            "  bytes <= SQLite's: {:.2}x compacted, {:.2}x as saved: {}",
            ratio,
            last.bytes as f64 / bytes as f64,
            figures::pass(ratio <= 1.0)
        );
    }
    println!(
        "  open <= 10 ms: {:.2} ms ({:.2} ms compacted): {}",
        open(last),
        open_c(last),
        figures::pass(open(last) <= 10.0)
    );
    println!(
        "  open <= 1.5x the {small}-contact store's: {:.2}x ({:.2}x compacted): {}",
        open(last) / open(first),
        open_c(last) / open_c(first),
        figures::pass(open(last) / open(first) <= 1.5)
    );
    println!(
        "    its databases opened by sled alone: {:.2} ms ({:.2} ms compacted), {:.2}x the \
         {small}-contact store's",
        sled(&last.sled_open, "open_ms"),
        sled(&last.sled_open_compacted, "open_ms"),
        sled(&last.sled_open, "open_ms") / sled(&first.sled_open, "open_ms"),
    );
    match last.open.get("open_write_bytes") {
        Some(written) => println!(
            "  written by an open <= 64 KiB: {:.0} KiB (sled alone {:.0} KiB): {}",
            written / 1024.0,
            sled(&last.sled_open, "open_write_bytes") / 1024.0,
            figures::pass(*written <= 64.0 * 1024.0)
        ),
        None => println!("  written by an open <= 64 KiB: not measured (no /proc/self/io)"),
    }
}

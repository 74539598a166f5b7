//! Would another key-value engine meet issue 23's open and bytes targets where sled 0.34
//! cannot? The pairs of a real store's two sled databases (`--store DIR`: its `db/` and
//! `db/names/`, read from a copy, since sled writes as it opens) are written into each engine
//! with the store's write pattern, and each is measured the same way:
//!
//! 1. **load**: every pair, in batches of 1,000, each batch made durable (a bulk import);
//! 2. **rewrite**: `--rounds` batches (default 110) of 1,000 contact values (`c` keys) picked
//!    at random and written again as they are: what a full sync's settles do (a 1,024-op
//!    message rewrites about 950 contacts), with the live data unchanged, so whatever the
//!    bytes grow by is the engine's. One batch in `--durable-every` (default 16; and the last)
//!    is made durable, the others are written as the store writes held register changes
//!    (redb `Durability::None`, fjall without a journal sync, sled without a flush);
//! 3. **kept**: the bytes the engine's files take on disk (allocated blocks, so a file
//!    preallocated sparse counts what it holds) against the live keys and values;
//! 4. **compaction**, as each engine would be compacted: sled's pairs read from it and copied
//!    in key order into a fresh database (what `cardlog compact` does), redb's `compact` until
//!    it has nothing left to do, fjall's memtable flushed and a major compaction; then kept
//!    again;
//! 5. **open** of the compacted database, in a fresh process, three times: open and read one
//!    key (time, bytes written from `/proc/self/io`), then 1,000 random contact values read
//!    (the process's first reads; the files are in the OS's page cache), and the process's
//!    peak memory after both.
//!
//! Engines: `sled` (0.34.7, configured and opened as `SledKv::open` does: 512 KiB segments for
//! the main database, 64 KiB for the names, the default cache split 4:1, both opened side by
//! side), `redb` (a copy-on-write B-tree in one file) and `fjall` (an LSM tree). redb and
//! fjall are dependencies of this benchmark only: the store does not use them.
//!
//! `cargo run --release -p cardlog-benches --bin kv_figures -- [--store DIR] [--ops N]
//! [--rounds N] [--durable-every N] [--engines sled,redb,fjall] [--scale N] [--quick]`
//!
//! Without `--store`, the benchmarks' cached store of `--ops` ops (default 20,000: 1,000
//! contacts, then single-field edits; `stores::cached`). `--quick` (CI): 2,000 ops, 5 rounds.
//!
//! `--scale N`: the store's pairs and N - 1 copies of each under other keys (each copy's key
//! ends in its number): an address book N times as large with the same values, without
//! building one (values repeated N times over compress far better than a real book's).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::path::{Path, PathBuf};
use std::time::Instant;

use cardlog::Options as ReplicaOptions;
use cardlog_benches::figures::{self, fig, Args};
use cardlog_benches::{stores, Error, XorShift};
use redb::{ReadableDatabase as _, ReadableTable as _};

/// Pairs per batch, as the store's bulk chunks and sync messages write them.
const BATCH: usize = 1_000;
/// Rewrite batches made durable one in this many (and the last) unless `--durable-every`
/// says otherwise: the store writes its held register changes without a flush, and flushes
/// when a save or a session asks for it.
const DURABLE_EVERY: usize = 16;
/// The contact values' key tag (docs/FORMAT.md, "The database").
const CONTACT_TAG: u8 = b'c';
/// redb's one table.
const TABLE: redb::TableDefinition<&[u8], &[u8]> = redb::TableDefinition::new("kv");

/// Which database of the store a pair comes from.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Db {
    Main,
    Names,
}

type Pairs = Vec<(Db, Vec<u8>, Vec<u8>)>;

fn main() -> Result<(), Error> {
    let args = Args::from_env();
    if args.has("--help") || args.has("-h") {
        println!(
            "kv_figures [--store DIR] [--ops N] [--rounds N] [--durable-every N] \
             [--engines sled,redb,fjall] [--scale N] [--quick] (see the source)"
        );
        return Ok(());
    }
    if let (Some(engine), Some(dir), Some(keys)) = (
        args.value("--open"),
        args.value("--dir"),
        args.value("--keys"),
    ) {
        return open_child(engine, Path::new(dir), Path::new(keys));
    }
    let quick = args.has("--quick");
    let store = match args.value("--store") {
        Some(dir) => PathBuf::from(dir),
        None => stores::cached(args.number("--ops", if quick { 2_000 } else { 20_000 })?)?.0,
    };
    let rounds = args.number("--rounds", if quick { 5 } else { 110 })?;
    let durable_every = args.number("--durable-every", DURABLE_EVERY)?.max(1);
    let engines: Vec<String> = args
        .value("--engines")
        .unwrap_or("sled,redb,fjall")
        .split(',')
        .map(str::to_owned)
        .collect();
    let scratch = stores::scratch()?;
    println!("# kv_figures on {}", figures::machine());
    let pairs = scaled(
        read_store(&store, scratch.path())?,
        args.number("--scale", 1)?.max(1),
    );
    let live: u64 = pairs
        .iter()
        .map(|(_, k, v)| (k.len() + v.len()) as u64)
        .sum();
    let contacts: Vec<usize> = (0..pairs.len())
        .filter(|i| pairs[*i].0 == Db::Main && pairs[*i].1.first() == Some(&CONTACT_TAG))
        .collect();
    println!(
        "{}: {} pairs ({} contact values), {:.2} MB of live keys and values",
        store.display(),
        pairs.len(),
        contacts.len(),
        live as f64 / 1e6
    );
    println!(
        "| engine | load s | rewrite ms per batch | kept MB | kept / live | compacted MB (s) \
         | open ms (3 fresh processes) | written by an open, KiB | 1,000 first reads ms \
         | peak MB |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|");
    // The contact keys for the opens' reads, beside the engines' directories (not in them).
    let keys = scratch.path().join("contact.keys");
    std::fs::write(&keys, contact_keys(&pairs, &contacts))?;
    let keys_arg = keys.display().to_string();
    for engine in &engines {
        let dir = scratch.path().join(engine);
        std::fs::create_dir_all(&dir)?;
        let (load, rewrite) = write_all(engine, &dir, &pairs, &contacts, rounds, durable_every)?;
        let kept = allocated(&dir)?;
        let (compacted, compact_s) = compact(engine, &dir)?;
        let mut opens = Vec::new();
        for _ in 0..3 {
            let dir_arg = dir.display().to_string();
            opens.push(figures::child_quiet(&[
                "--open", engine, "--dir", &dir_arg, "--keys", &keys_arg,
            ])?);
        }
        let cell = |name: &str, scale: f64| -> String {
            let values: Vec<String> = opens
                .iter()
                .map(|f| figures::get(f, name).map_or("-".into(), |v| format!("{:.1}", v * scale)))
                .collect();
            values.join(" / ")
        };
        println!(
            "| {engine} | {:.2} | {:.2} | {:.2} | {:.2}× | {:.2} ({:.2}×, {:.2} s) \
             | {} | {} | {} | {} |",
            load,
            rewrite * 1000.0,
            kept as f64 / 1e6,
            kept as f64 / live as f64,
            compacted as f64 / 1e6,
            compacted as f64 / live as f64,
            compact_s,
            cell("open_ms", 1.0),
            cell("open_write_bytes", 1.0 / 1024.0),
            cell("reads_ms", 1.0),
            cell("peak_mb", 1.0),
        );
    }
    Ok(())
}

/// Every pair of the store at `store`, read with sled from a copy in `scratch`.
fn read_store(store: &Path, scratch: &Path) -> Result<Pairs, Error> {
    let copy = scratch.join("source");
    stores::copy_dir(&store.join("db"), &copy)?;
    let mut pairs = Pairs::new();
    let (main, names) = stores::open_sled_pair(&copy, 64 << 20)?;
    for (db, tree) in [(Db::Main, main), (Db::Names, names)] {
        for pair in tree.iter() {
            let (k, v) = pair?;
            pairs.push((db, k.to_vec(), v.to_vec()));
        }
    }
    std::fs::remove_dir_all(&copy)?;
    if pairs.is_empty() {
        return Err(format!("{} holds no pairs", store.display()).into());
    }
    Ok(pairs)
}

/// `pairs` and `times - 1` copies of each, every copy's key followed by its number (4 bytes):
/// an address book `times` as large with the same values.
fn scaled(pairs: Pairs, times: usize) -> Pairs {
    let mut out = Pairs::with_capacity(pairs.len() * times);
    for copy in 1..times {
        for (db, k, v) in &pairs {
            let mut key = k.clone();
            key.extend_from_slice(&u32::try_from(copy).unwrap_or(u32::MAX).to_be_bytes());
            out.push((*db, key, v.clone()));
        }
    }
    out.extend(pairs);
    out
}

/// One engine's database, open for writing.
enum Engine {
    Sled {
        main: sled::Db,
        names: sled::Db,
    },
    Redb(redb::Database),
    Fjall {
        db: fjall::Database,
        keyspace: fjall::Keyspace,
    },
}

impl Engine {
    fn open(engine: &str, dir: &Path) -> Result<Self, Error> {
        let cache = ReplicaOptions::default().cache_bytes;
        Ok(match engine {
            "sled" => {
                let (main, names) = stores::open_sled_pair(&dir.join("db"), cache)?;
                Engine::Sled { main, names }
            }
            "redb" => {
                let mut builder = redb::Database::builder();
                builder.set_cache_size(usize::try_from(cache).unwrap_or(usize::MAX));
                Engine::Redb(builder.create(dir.join("db.redb"))?)
            }
            "fjall" => {
                let db = fjall::Database::builder(dir.join("db"))
                    .cache_size(cache)
                    .open()?;
                let keyspace = db.keyspace("kv", fjall::KeyspaceCreateOptions::default)?;
                Engine::Fjall { db, keyspace }
            }
            other => return Err(format!("unknown engine {other}").into()),
        })
    }

    /// Writes `batch`, made durable when `durable` (else as the store's held-back register
    /// changes are written: durable with a later flush).
    fn write(&self, batch: &[&(Db, Vec<u8>, Vec<u8>)], durable: bool) -> Result<(), Error> {
        match self {
            Engine::Sled { main, names } => {
                let (mut m, mut n) = (sled::Batch::default(), sled::Batch::default());
                for (db, k, v) in batch {
                    match db {
                        Db::Main => m.insert(k.as_slice(), v.as_slice()),
                        Db::Names => n.insert(k.as_slice(), v.as_slice()),
                    }
                }
                main.apply_batch(m)?;
                names.apply_batch(n)?;
                if durable {
                    main.flush()?;
                    names.flush()?;
                }
            }
            Engine::Redb(db) => {
                let mut tx = db.begin_write()?;
                tx.set_durability(if durable {
                    redb::Durability::Immediate
                } else {
                    redb::Durability::None
                })?;
                {
                    let mut table = tx.open_table(TABLE)?;
                    for (db, k, v) in batch {
                        table.insert(keyed(*db, k).as_slice(), v.as_slice())?;
                    }
                }
                tx.commit()?;
            }
            Engine::Fjall { db, keyspace } => {
                let mut b = db.batch();
                for (d, k, v) in batch {
                    b.insert(keyspace, keyed(*d, k), v.as_slice());
                }
                b.commit()?;
                if durable {
                    db.persist(fjall::PersistMode::SyncAll)?;
                }
            }
        }
        Ok(())
    }

    fn get(&self, db: Db, key: &[u8]) -> Result<Option<Vec<u8>>, Error> {
        Ok(match self {
            Engine::Sled { main, names } => match db {
                Db::Main => main.get(key)?.map(|v| v.to_vec()),
                Db::Names => names.get(key)?.map(|v| v.to_vec()),
            },
            Engine::Redb(d) => {
                let tx = d.begin_read()?;
                let table = tx.open_table(TABLE)?;
                let got = table.get(keyed(db, key).as_slice())?;
                got.map(|v| v.value().to_vec())
            }
            Engine::Fjall { keyspace, .. } => keyspace.get(keyed(db, key))?.map(|v| v.to_vec()),
        })
    }
}

/// Compacts `engine`'s database in `dir` as each would be: sled's pairs read from it and
/// copied in key order into a fresh database (what `cardlog compact` does), redb's `compact`
/// (packing partly filled pages) until it has nothing left to do, fjall's memtable flushed
/// into a table and a major compaction. The bytes kept after it (the database the opens then
/// measure), and the seconds it took.
fn compact(engine: &str, dir: &Path) -> Result<(u64, f64), Error> {
    let started = Instant::now();
    match engine {
        "sled" => {
            let fresh = dir.join("fresh");
            std::fs::create_dir_all(&fresh)?;
            {
                let (old, new) = (Engine::open(engine, dir)?, Engine::open(engine, &fresh)?);
                if let (Engine::Sled { main, names }, Engine::Sled { .. }) = (&old, &new) {
                    for (db, tree) in [(Db::Main, main), (Db::Names, names)] {
                        let mut batch = Vec::with_capacity(BATCH);
                        for pair in tree.iter() {
                            let (k, v) = pair?;
                            batch.push((db, k.to_vec(), v.to_vec()));
                            if batch.len() == BATCH {
                                new.write(&batch.iter().collect::<Vec<_>>(), false)?;
                                batch.clear();
                            }
                        }
                        new.write(&batch.iter().collect::<Vec<_>>(), false)?;
                    }
                }
                new.write(&[], true)?;
            }
            std::fs::remove_dir_all(dir.join("db"))?;
            std::fs::rename(fresh.join("db"), dir.join("db"))?;
            std::fs::remove_dir_all(&fresh)?;
        }
        "redb" => {
            let mut db = redb::Database::create(dir.join("db.redb"))?;
            while db.compact(redb::CompactionMode::Maximum)? {}
        }
        "fjall" => {
            if let Engine::Fjall { db, keyspace } = Engine::open(engine, dir)? {
                keyspace.rotate_memtable_and_wait()?;
                keyspace.major_compact()?;
                db.persist(fjall::PersistMode::SyncAll)?;
            }
        }
        other => return Err(format!("unknown engine {other}").into()),
    }
    let took = started.elapsed().as_secs_f64();
    Ok((allocated(dir)?, took))
}

/// The key a single-table engine keeps `key` of `db` under (the names' keys prefixed).
fn keyed(db: Db, key: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(key.len() + 1);
    k.push(if db == Db::Main { 0 } else { 1 });
    k.extend_from_slice(key);
    k
}

/// Loads `pairs` into a new database of `engine` in `dir`, then rewrites `rounds` batches of
/// random contact values; the seconds of the load and per rewrite batch.
fn write_all(
    engine: &str,
    dir: &Path,
    pairs: &Pairs,
    contacts: &[usize],
    rounds: usize,
    durable_every: usize,
) -> Result<(f64, f64), Error> {
    let db = Engine::open(engine, dir)?;
    let started = Instant::now();
    let all: Vec<_> = pairs.iter().collect();
    for batch in all.chunks(BATCH) {
        db.write(batch, true)?;
    }
    let load = started.elapsed().as_secs_f64();
    let mut rng = XorShift::new(0x6b76);
    let started = Instant::now();
    for round in 1..=rounds {
        let batch: Vec<_> = (0..BATCH.min(contacts.len()))
            .map(|_| &pairs[contacts[rng.below(contacts.len())]])
            .collect();
        db.write(&batch, round % durable_every == 0 || round == rounds)?;
    }
    let rewrite = started.elapsed().as_secs_f64() / rounds.max(1) as f64;
    // Everything read back before the database is closed: what was written is what is kept.
    for (d, k, v) in pairs.iter().step_by(97) {
        if db.get(*d, k)?.as_deref() != Some(v.as_slice()) {
            return Err(format!("{engine}: a pair did not read back").into());
        }
    }
    drop(db);
    Ok((load, rewrite))
}

/// The contact keys, one after another with their lengths, for the open child's reads.
fn contact_keys(pairs: &Pairs, contacts: &[usize]) -> Vec<u8> {
    let mut out = Vec::new();
    for i in contacts {
        let k = &pairs[*i].1;
        out.push(u8::try_from(k.len()).unwrap_or(u8::MAX));
        out.extend_from_slice(k);
    }
    out
}

/// The bytes `dir`'s files take on disk: their allocated blocks (a sparse file counts what
/// it holds; the length where the file system says nothing of blocks).
fn allocated(dir: &Path) -> Result<u64, Error> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt as _;
        stores::dir_total(dir, &|m| m.blocks() * 512)
    }
    #[cfg(not(unix))]
    {
        stores::dir_bytes(dir)
    }
}

/// In a fresh process: opens `engine`'s database in `dir`, reads one key, then 1,000 random
/// contact values of those listed in `keys`.
fn open_child(engine: &str, dir: &Path, keys: &Path) -> Result<(), Error> {
    let listed = std::fs::read(keys)?;
    let mut keys = Vec::new();
    let mut at = 0;
    while let Some(&len) = listed.get(at) {
        keys.push(listed[at + 1..at + 1 + usize::from(len)].to_vec());
        at += 1 + usize::from(len);
    }
    let written = figures::io_written();
    let start = Instant::now();
    let db = Engine::open(engine, dir)?;
    let first = keys.first().ok_or("no contact keys")?;
    db.get(Db::Main, first)?
        .ok_or("the first contact is missing")?;
    let took = start.elapsed();
    figures::fig_written("open", written);
    fig("open_ms", took.as_secs_f64() * 1000.0);
    let mut rng = XorShift::new(0x0be7);
    let start = Instant::now();
    for _ in 0..1_000 {
        let k = &keys[rng.below(keys.len())];
        db.get(Db::Main, k)?.ok_or("a contact is missing")?;
    }
    fig("reads_ms", start.elapsed().as_secs_f64() * 1000.0);
    fig("peak_mb", figures::peak_rss_mb());
    Ok(())
}

//! Why the name index doubled the store's bytes (issue 23): sled 0.34.7 alone, with the
//! compare workload's write pattern and nothing of cardlog. 10,000 keys of 1,100 bytes (a
//! contact's registers) are written in batches of 1,000, one flush per batch (a bulk save's
//! durable point): 10 batches of creates, then 100 of updates to random keys. Beside each
//! batch go `small` writes of 20-byte values to random keys of another range (a name index's
//! entries), placed three ways: in the same tree, in another tree of the same database, in a
//! database of their own. Prints the bytes sled keeps (`size_on_disk`) and the time.
//!
//! `cargo run --release -p cardlog-benches --bin sled_space [-- --small 0,200,1000] [--copy]`
//!
//! `--copy`: each database is also copied into a fresh one in key order (what `cardlog
//! compact` does), and the live bytes and the copy's bytes printed.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::time::Instant;

use cardlog_benches::figures::{machine, Args};
use cardlog_benches::{Error, XorShift};

const KEYS: u64 = 10_000;
const VALUE_BYTES: usize = 1_100;
const BATCH: u64 = 1_000;
const BATCHES: u64 = 110;

/// Where the small writes go.
#[derive(Clone, Copy, Debug)]
enum Place {
    SameTree,
    OtherTree,
    OtherDb,
}

fn key(prefix: u8, k: u64, len: usize) -> Vec<u8> {
    let mut key = vec![prefix];
    key.extend_from_slice(&blake3::hash(&k.to_be_bytes()).as_bytes()[..len]);
    key
}

fn run(dir: &std::path::Path, small: u64, place: Place) -> Result<(u64, u64, f64), Error> {
    let config = |p: &std::path::Path| sled::Config::new().path(p).cache_capacity(32 << 20);
    let db = config(&dir.join("db")).open()?;
    let other_db = match place {
        Place::OtherDb => Some(config(&dir.join("names")).open()?),
        _ => None,
    };
    let other_tree = match place {
        Place::OtherTree => Some(db.open_tree("names")?),
        _ => None,
    };
    let mut rng = XorShift::new(0x5eed);
    let started = Instant::now();
    for round in 0..BATCHES {
        let mut big = sled::Batch::default();
        let mut names = sled::Batch::default();
        for i in 0..BATCH {
            let k = if round < KEYS / BATCH {
                round * BATCH + i
            } else {
                rng.below(KEYS as usize) as u64
            };
            big.insert(key(b'c', k, 16), vec![(i & 0xff) as u8; VALUE_BYTES]);
        }
        for _ in 0..small {
            let k = key(b'n', rng.below(KEYS as usize) as u64 + (1 << 40), 32);
            match place {
                Place::SameTree => big.insert(k, vec![1u8; 20]),
                _ => names.insert(k, vec![1u8; 20]),
            }
        }
        db.apply_batch(big)?;
        if let Some(tree) = &other_tree {
            tree.apply_batch(names)?;
        } else if let Some(other) = &other_db {
            other.apply_batch(names)?;
            other.flush()?;
        }
        db.flush()?;
    }
    let secs = started.elapsed().as_secs_f64();
    let other = match &other_db {
        Some(other) => other.size_on_disk()?,
        None => 0,
    };
    if COPY.load(std::sync::atomic::Ordering::Relaxed) {
        copy(dir, &db)?;
    }
    Ok((db.size_on_disk()?, other, secs))
}

/// `--copy`: whether each run's database is also copied into a fresh one.
static COPY: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Copies every pair of `db` into a fresh database in key order, 1,000 pairs per batch, and
/// prints the live bytes and what the copy keeps.
fn copy(dir: &std::path::Path, db: &sled::Db) -> Result<(), Error> {
    let started = Instant::now();
    let fresh = sled::Config::new()
        .path(dir.join("copy"))
        .cache_capacity(32 << 20)
        .open()?;
    let mut live = 0u64;
    let mut batch = sled::Batch::default();
    let mut n = 0;
    for pair in db.iter() {
        let (k, v) = pair?;
        live += (k.len() + v.len()) as u64;
        batch.insert(k, v);
        n += 1;
        if n % 1_000 == 0 {
            fresh.apply_batch(std::mem::take(&mut batch))?;
        }
    }
    fresh.apply_batch(batch)?;
    fresh.flush()?;
    println!(
        "  copy: {live} live bytes; the copy keeps {} ({:.2} s)",
        fresh.size_on_disk()?,
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

fn main() -> Result<(), Error> {
    let args = Args::from_env();
    let smalls: Vec<u64> = match args.value("--small") {
        None => vec![0, 200, 1000],
        Some(list) => list
            .split(',')
            .map(str::parse)
            .collect::<Result<_, _>>()
            .map_err(|e| format!("--small: {e}"))?,
    };
    COPY.store(args.has("--copy"), std::sync::atomic::Ordering::Relaxed);
    println!("{}", machine());
    println!(
        "{KEYS} keys of {VALUE_BYTES} B, {BATCHES} batches of {BATCH} writes (one flush each), \
         plus N small writes per batch"
    );
    println!("| small writes per batch | placed | db bytes | other db bytes | seconds |");
    println!("|---|---|--:|--:|--:|");
    for small in smalls {
        for place in [Place::SameTree, Place::OtherTree, Place::OtherDb] {
            if small == 0 && !matches!(place, Place::SameTree) {
                continue;
            }
            let tmp = tempfile::tempdir()?;
            let (db, other, secs) = run(tmp.path(), small, place)?;
            println!("| {small} | {place:?} | {db} | {other} | {secs:.2} |");
        }
    }
    Ok(())
}

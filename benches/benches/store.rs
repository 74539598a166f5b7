//! Durable store benchmarks through the public `Replica` API, on small stores so that one pass
//! (`cargo bench -- --test`, run by CI) stays quick. The million-op figures (open time against
//! history length, rebuild rate, peak memory) are made by the `store_figures` binary instead;
//! docs/PERFORMANCE.md describes both.
//!
//! Groups:
//! - `store/save`: one durable single-field edit (`Replica::edit`, flushed before it returns)
//!   next to a bare sled insert + flush with the same cache size, the baseline of the
//!   save-rate target.
//! - `store/apply`: 10,000 single-field ops made by another device, applied to a fresh replica
//!   in chunks of 1,000 or 10,000 per `Replica::apply` (each call durable) or in bulk mode.
//! - `store/open`: opening a 10,000-op replica; `store/rebuild`: rebuilding its state.
//! - `store/contact_value`: the database values of a 20,000-op store's 1,000 contacts decoded
//!   into registers, and those registers encoded again (what every apply does per contact).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use cardlog::{Field, Replica, SealedOp, CACHE_BYTES_DEFAULT};
use cardlog_benches::stores::{self, CONTACTS};
use cardlog_benches::{FieldEdits, FieldEditsConfig};
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use tempfile::TempDir;

/// Ops applied by each `store/apply` iteration, and in the opened store.
const APPLY_OPS: usize = 10_000;

/// Untimed pause after closing a replica, before it is opened again.
const CLOSE_PAUSE: Duration = Duration::from_millis(20);

/// A fresh, empty replica in its own temporary directory.
fn empty_replica(config: &FieldEditsConfig) -> (TempDir, Replica) {
    let dir = tempfile::tempdir().expect("temp dir");
    let replica =
        Replica::create_with(&dir.path().join("replica"), stores::default_options(config))
            .expect("create replica");
    (dir, replica)
}

fn save(c: &mut Criterion) {
    let config = stores::config(CONTACTS);
    let dir = tempfile::tempdir().expect("temp dir");
    let mut replica = stores::build(
        &dir.path().join("replica"),
        &config,
        stores::default_options(&config),
        stores::BUILD_CHUNK,
    )
    .expect("replica with contacts");

    // The baseline writes one value the size of a single-field edit op's log entry, under a
    // new key each time, into a database holding as many keys as the replica has contacts.
    let edit = FieldEdits::new(&stores::config(CONTACTS + 1))
        .last()
        .expect("an op")
        .expect("a valid op");
    let value = vec![0x5a_u8; edit.bytes().len() + 8];
    let db = sled::Config::new()
        .path(dir.path().join("sled"))
        .cache_capacity(CACHE_BYTES_DEFAULT)
        .open()
        .expect("sled");
    for n in 0..CONTACTS as u64 {
        db.insert(n.to_be_bytes(), value.as_slice())
            .expect("insert");
    }
    db.flush().expect("flush");
    println!(
        "save: a single-field edit op is {} bytes; the sled baseline writes {} byte values",
        edit.bytes().len(),
        value.len()
    );

    let mut group = c.benchmark_group("store/save");
    group
        .sample_size(20)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(4))
        .throughput(Throughput::Elements(1));
    let mut n = 0usize;
    group.bench_function("replica_edit_flushed", |b| {
        b.iter(|| {
            n += 1;
            let id = FieldEdits::contact(&config, n % CONTACTS);
            replica
                .edit(id, |c| {
                    c.set(Field::Note, format!("note {n}"));
                })
                .expect("save")
                .expect("the note changed")
        })
    });
    let mut key = CONTACTS as u64;
    group.bench_function("sled_insert_flush", |b| {
        b.iter(|| {
            key += 1;
            db.insert(key.to_be_bytes(), value.as_slice())
                .expect("insert");
            db.flush().expect("flush")
        })
    });
    group.finish();
}

/// Applies `ops` to `replica` `chunk` at a time, each call durable (or all at the end in bulk
/// mode), checking that every op was stored.
fn apply_chunks(
    replica: &mut Replica,
    parts: &[(&[SealedOp], Vec<cardlog::SignedTip>)],
    ops: &[SealedOp],
    bulk: bool,
) {
    let mut stored = 0;
    if bulk {
        let mut bulk = replica.bulk();
        for (part, tips) in parts {
            stored += bulk.apply(part, tips).expect("apply").stored;
        }
        bulk.finish().expect("finish");
    } else {
        for (part, tips) in parts {
            stored += replica.apply(part, tips).expect("apply").stored;
        }
    }
    assert_eq!(stored, ops.len());
}

fn apply(c: &mut Criterion) {
    let config = stores::config(APPLY_OPS);
    let ops: Vec<SealedOp> = FieldEdits::new(&config)
        .collect::<Result<_, _>>()
        .expect("ops");

    let mut group = c.benchmark_group("store/apply");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(6))
        .throughput(Throughput::Elements(ops.len() as u64));
    for (name, chunk, bulk) in [
        ("chunk_1000_durable", 1_000, false),
        ("chunk_10000_durable", 10_000, false),
        ("bulk_chunk_1000", 1_000, true),
    ] {
        group.bench_function(name, |b| {
            b.iter_batched(
                || {
                    // The stream's author admitted, and each chunk signed (the sender's work).
                    let (dir, mut replica) = empty_replica(&config);
                    replica
                        .add_member(
                            cardlog_benches::device_id(config.author),
                            cardlog::MemberRole::Write,
                            "generated",
                        )
                        .expect("admit");
                    let book = replica.book();
                    let parts: Vec<(&[SealedOp], Vec<cardlog::SignedTip>)> = ops
                        .chunks(chunk)
                        .map(|part| (part, cardlog_benches::sign_generated(book, part)))
                        .collect();
                    (dir, replica, parts)
                },
                |(dir, mut replica, parts)| {
                    apply_chunks(&mut replica, &parts, &ops, bulk);
                    (dir, replica)
                },
                BatchSize::PerIteration,
            )
        });
    }
    group.finish();
}

fn open_and_rebuild(c: &mut Criterion) {
    let config = stores::config(APPLY_OPS);
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("replica");
    let options = stores::default_options(&config);
    drop(stores::build(&path, &config, options.clone(), stores::BUILD_CHUNK).expect("store"));

    let mut group = c.benchmark_group("store/open");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_millis(200))
        .measurement_time(Duration::from_secs(1));
    group.bench_function("ops_10k", |b| {
        // Only the open is timed. Closing (sled's final flush) is not, nor the pause after it:
        // sled releases its file lock from a background thread a moment after the close, and
        // an open that found it still held would wait inside the store (SledKv::open retries).
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let (replica, took, _) = stores::open_timed(&path, &options).expect("open");
                total += took;
                assert_eq!(
                    replica.op_count(),
                    APPLY_OPS as u64 + stores::MEMBERSHIP_OPS
                );
                drop(replica);
                std::thread::sleep(CLOSE_PAUSE);
            }
            total
        })
    });
    group.finish();

    std::thread::sleep(CLOSE_PAUSE);
    let (mut replica, _, _) = stores::open_timed(&path, &options).expect("open");
    let mut group = c.benchmark_group("store/rebuild");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(4))
        .throughput(Throughput::Elements(APPLY_OPS as u64));
    group.bench_function("ops_10k", |b| {
        b.iter(|| {
            assert_eq!(
                replica.rebuild().expect("rebuild"),
                APPLY_OPS as u64 + stores::MEMBERSHIP_OPS
            )
        })
    });
    group.finish();
}

/// The contact values (`c` keys) of the cached 20,000-op store, read with sled from a copy.
fn stored_contact_values() -> Vec<Vec<u8>> {
    let (store, _) = stores::cached(20_000).expect("cached store");
    let tmp = tempfile::tempdir().expect("temp dir");
    stores::copy_dir(&store.join("db"), tmp.path()).expect("copy");
    let (db, _) = stores::open_sled_pair(tmp.path(), 16 << 20).expect("sled");
    db.scan_prefix(b"c")
        .map(|pair| pair.expect("pair").1.to_vec())
        .collect()
}

fn contact_values(c: &mut Criterion) {
    use cardlog_store::state::contact_value::{decode, encode};
    let values = stored_contact_values();
    let registers: Vec<_> = values.iter().map(|v| decode(v).expect("decodes")).collect();
    let mut group = c.benchmark_group("store/contact_value");
    group.throughput(Throughput::Elements(values.len() as u64));
    group.bench_function("decode", |b| {
        b.iter(|| {
            values
                .iter()
                .map(|v| decode(v).map_or(0, |r| r.len()))
                .sum::<usize>()
        })
    });
    group.bench_function("encode", |b| {
        b.iter(|| registers.iter().map(|r| encode(r).len()).sum::<usize>())
    });
    group.finish();
}

criterion_group!(benches, save, apply, open_and_rebuild, contact_values);
criterion_main!(benches);

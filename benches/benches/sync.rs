//! Sync benchmarks on small inputs, so that one pass (`cargo bench -- --test`, run by CI) stays
//! quick. The headline figures (bytes per op over a 110,000-op history, a million-op history
//! against a 10,000-op one, a full bootstrap) are made by the `sync_figures` binary instead;
//! docs/PERFORMANCE.md describes both.
//!
//! Groups:
//! - `sync/segment`: encoding 1,000 single-field ops as one segment message, the sender
//!   holding everything in memory (`encode`); decoding and verifying that message (rebuilding,
//!   sealing and chain-checking every op) against a receiver holding the 9,000 ops before them
//!   (`decode_verify`).
//! - `sync/session`: one session over the in-process channel transport between two replicas
//!   of a 2,000-op history after each made 100 saves (the saves are not timed).
//! - `sync/summary_diff`: the ops a peer lacks, given its summary (`Replica::ops_since`: the
//!   same offsets and reads a session makes, through `places_since` and `ops_at_places`, a
//!   message at a time, after the peer's hello), on a replica holding a 10,000-op history: a peer
//!   100 ops behind (`ops_since_100_of_10k`) and a peer in sync (`ops_since_0_of_10k`). The
//!   store's log index is built before timing (by the first call, in the warm-up).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use cardlog::sync_layer::{decode_segments, encode_segments};
use cardlog::{ChainTip, Field, Replica, SealedOp, Summary};
use cardlog_benches::stores;
use cardlog_benches::sync::{diverge, sync_pair, MemoryOps};
use cardlog_benches::{FieldEdits, XorShift};
use cardlog_core::FakeClock;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

/// Ops in the segment message of `sync/segment`, and ops the receiver holds before them.
const SEGMENT_OPS: usize = 1_000;
const HELD_OPS: usize = 9_000;
/// Ops of the history both replicas of `sync/session` share, and saves each makes per session.
const SESSION_HISTORY_OPS: usize = 2_000;
const SESSION_SAVES: usize = 100;
/// Ops held by the replica of `sync/summary_diff`, and ops its peer lacks.
const DIFF_HISTORY_OPS: usize = 10_000;
const DIFF_MISSING_OPS: usize = 100;

fn segment(c: &mut Criterion) {
    let config = stores::config(HELD_OPS + SEGMENT_OPS);
    let ops: Vec<SealedOp> = FieldEdits::new(&config)
        .collect::<Result<_, _>>()
        .expect("ops");
    let (held, sent) = ops.split_at(HELD_OPS);
    let sender = MemoryOps::new(&ops);
    let receiver = MemoryOps::new(held);
    let message = encode_segments(sent, &sender).expect("encode");
    let op_bytes: usize = sent.iter().map(|op| op.bytes().len()).sum();
    println!(
        "segment: {} ops of {:.1} bytes each travel in {:.1} bytes each",
        sent.len(),
        op_bytes as f64 / sent.len() as f64,
        message.len() as f64 / sent.len() as f64
    );

    let mut group = c.benchmark_group("sync/segment");
    group
        .sample_size(20)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3))
        .throughput(Throughput::Elements(sent.len() as u64));
    group.bench_function("encode", |b| {
        b.iter(|| encode_segments(sent, &sender).expect("encode"))
    });
    group.bench_function("decode_verify", |b| {
        b.iter(|| {
            let decoded = decode_segments(&message, &receiver).expect("decode");
            assert_eq!(decoded.len(), sent.len());
            decoded
        })
    });
    group.finish();
}

fn session(c: &mut Criterion) {
    let config = stores::config(SESSION_HISTORY_OPS);
    let dir = tempfile::tempdir().expect("temp dir");
    let template = dir.path().join("template");
    drop(
        stores::build(
            &template,
            &config,
            stores::default_options(&config),
            stores::BUILD_CHUNK,
        )
        .expect("template store"),
    );
    // Two copies of one store: each notices the copy and writes as a new device.
    let clock = FakeClock::new(FieldEdits::end_ms(&config));
    let options = cardlog::Options {
        wall: std::sync::Arc::new(clock.clone()),
        ..stores::default_options(&config)
    };
    let open_copy = |name: &str| -> Replica {
        let to = dir.path().join(name);
        stores::copy_dir(&template, &to).expect("copy");
        stores::open_timed(&to, &options).expect("open copy").0
    };
    let mut a = open_copy("a");
    let mut b = open_copy("b");
    assert_ne!(a.id(), b.id());
    stores::admit_copies(&template, &mut [&mut a, &mut b]).expect("admit the copies");
    sync_pair(&mut a, &mut b).expect("first sync");
    let mut rng = XorShift::new(5);

    let mut group = c.benchmark_group("sync/session");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3))
        .throughput(Throughput::Elements(2 * SESSION_SAVES as u64));
    let mut shown = false;
    group.bench_function("channel_100_100", |bench| {
        bench.iter_custom(|iters| {
            let mut took = Duration::ZERO;
            for _ in 0..iters {
                for (replica, field) in [(&mut a, Field::Note), (&mut b, Field::Title)] {
                    diverge(
                        replica,
                        &config,
                        &clock,
                        &mut rng,
                        SESSION_SAVES,
                        field,
                        30_000,
                    )
                    .expect("saves");
                }
                let start = Instant::now();
                let s = sync_pair(&mut a, &mut b).expect("sync");
                took += start.elapsed();
                assert!(s.initiator.converged && s.exchanged_ops() == 2 * SESSION_SAVES);
                if !shown {
                    shown = true;
                    println!(
                        "session: {} bytes on the wire for {} ops ({:.1} per op): {}",
                        s.wire_bytes(),
                        s.exchanged_ops(),
                        s.wire_bytes() as f64 / s.exchanged_ops() as f64,
                        s.sequence()
                    );
                }
            }
            took
        })
    });
    group.finish();
}

fn summary_diff(c: &mut Criterion) {
    let config = stores::config(DIFF_HISTORY_OPS);
    let dir = tempfile::tempdir().expect("temp dir");
    let replica = stores::build(
        &dir.path().join("replica"),
        &config,
        stores::default_options(&config),
        stores::BUILD_CHUNK,
    )
    .expect("store");
    let in_sync: Summary = replica.summary().clone();
    // The same summary with the generated author's head moved back DIFF_MISSING_OPS ops (the
    // book's founder wrote only its two membership ops).
    let mut behind = in_sync.clone();
    let (author, head) = in_sync
        .iter()
        .max_by_key(|(_, h)| h.seq)
        .expect("an author");
    let seq = head.seq - DIFF_MISSING_OPS as u64;
    let op = replica
        .store()
        .op_by_seq(author, seq)
        .expect("lookup")
        .expect("op");
    behind.insert(
        *author,
        ChainTip {
            seq,
            op: op.id(),
            hlc: op.op().hlc,
        },
    );
    assert_eq!(
        replica.ops_since(&behind).expect("diff").len(),
        DIFF_MISSING_OPS
    );
    assert!(replica.ops_since(&in_sync).expect("diff").is_empty());

    let mut group = c.benchmark_group("sync/summary_diff");
    group
        .sample_size(20)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    // Nothing to send: time per call only (no throughput set yet).
    group.bench_function("ops_since_0_of_10k", |b| {
        b.iter(|| replica.ops_since(&in_sync).expect("diff"))
    });
    group.throughput(Throughput::Elements(DIFF_MISSING_OPS as u64));
    group.bench_function("ops_since_100_of_10k", |b| {
        b.iter(|| replica.ops_since(&behind).expect("diff"))
    });
    group.finish();
}

criterion_group!(benches, segment, session, summary_diff);
criterion_main!(benches);

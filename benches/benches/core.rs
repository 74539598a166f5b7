//! Core benchmarks: op encoding, strict decoding (with id hashing), replay of a generated
//! multi-device history (in dependency order and shuffled), materializing every contact, and
//! one save on a device that holds that history. The workloads come from `cardlog_benches`.
//!
//! Groups: `codec/{encode,decode,hash}`, `replay/{apply,apply_shuffled,contacts}`,
//! `device/save`. The setup checks the workloads once, outside any timed loop.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;
use std::time::Duration;

use cardlog_benches::{shuffle, typical_op, History, HistoryConfig};
use cardlog_core::{decode_op, encode_op, Field, InsertOutcome, OpId, Replay, SealedOp};
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};

/// Seed of the shuffled delivery order.
const SHUFFLE_SEED: u64 = 0x0005_eed0_0f5f_1e5d;

fn codec(c: &mut Criterion) {
    let op = typical_op().expect("typical op");
    let bytes = op.bytes().to_vec();
    println!(
        "typical op: {} writes, {} bytes encoded",
        op.op().writes.len(),
        bytes.len()
    );
    assert_eq!(encode_op(op.op()).expect("encode"), bytes);
    assert_eq!(decode_op(&bytes).expect("decode"), op);

    let mut group = c.benchmark_group("codec");
    group
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .throughput(Throughput::Bytes(bytes.len() as u64));
    group.bench_function("encode", |b| {
        b.iter(|| encode_op(black_box(op.op())).expect("encode"))
    });
    group.bench_function("decode", |b| {
        b.iter(|| decode_op(black_box(&bytes)).expect("decode"))
    });
    group.bench_function("hash", |b| b.iter(|| OpId::of_bytes(black_box(&bytes))));
    group.finish();
}

/// Inserts every op into a fresh replay, in the given order.
fn replay_all(ops: Vec<SealedOp>) -> Replay {
    let mut replay = Replay::new();
    for op in ops {
        replay.insert(op).expect("valid op");
    }
    replay
}

fn history(c: &mut Criterion) {
    let mut history = History::build(&HistoryConfig::default()).expect("history");
    let stats = history.stats().expect("stats");
    println!("history: {stats}");
    let reference = history.replay().expect("replay");
    let ops = history.ops().expect("ops");
    let mut shuffled = ops.clone();
    shuffle(&mut shuffled, SHUFFLE_SEED);

    // The workloads do what they claim: both orders give the reference state, nothing left
    // pending, nothing rejected.
    for order in [&ops, &shuffled] {
        let mut replay = Replay::new();
        for op in order.iter().cloned() {
            if let InsertOutcome::Applied { rejected, .. } = replay.insert(op).expect("valid op") {
                assert!(rejected.is_empty());
            }
        }
        assert_eq!(replay.waiting().count(), 0);
        assert_eq!(replay.state_digest(), reference.state_digest());
    }

    let mut group = c.benchmark_group("replay");
    group
        .sample_size(20)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4))
        .throughput(Throughput::Elements(ops.len() as u64));
    group.bench_function("apply", |b| {
        b.iter_batched(|| ops.clone(), replay_all, BatchSize::PerIteration)
    });
    group.bench_function("apply_shuffled", |b| {
        b.iter_batched(|| shuffled.clone(), replay_all, BatchSize::PerIteration)
    });
    group.throughput(Throughput::Elements(stats.visible as u64));
    group.bench_function("contacts", |b| {
        b.iter(|| reference.contacts(black_box(false)))
    });
    group.finish();

    // One save on a device holding the whole history: the hottest contact's note flips
    // between two values, so every iteration writes `exists` and `note`. Each save appends an
    // op, so the device grows by the number of iterations measured.
    let contact = *history.contacts.first().expect("a contact");
    let device = history.devices.first_mut().expect("a device");
    let mut monday = false;
    let mut group = c.benchmark_group("device");
    group
        .sample_size(50)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .throughput(Throughput::Elements(1));
    group.bench_function("save", |b| {
        b.iter(|| {
            monday = !monday;
            let note = if monday {
                "Call back on Monday."
            } else {
                "Call back on Tuesday."
            };
            device
                .edit(contact, |c| {
                    c.set(Field::Note, note);
                })
                .expect("save")
                .expect("the note changed")
        })
    });
    group.finish();
}

criterion_group!(benches, codec, history);
criterion_main!(benches);

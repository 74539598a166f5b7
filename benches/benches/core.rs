//! Core benchmarks: op encoding, strict decoding (with id hashing), and replay of a history.
//! Filled in with the replay workload generator in benches/src.
use criterion::{criterion_group, criterion_main, Criterion};

fn placeholder(c: &mut Criterion) {
    c.bench_function("noop", |b| b.iter(|| 1 + 1));
}

criterion_group!(benches, placeholder);
criterion_main!(benches);

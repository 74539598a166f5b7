//! Shared workload generators for the benchmarks (see benches/).

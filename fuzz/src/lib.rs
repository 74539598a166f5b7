//! Shared code of cardlog's fuzz targets: the checks each target runs on its input, in
//! [`checks`]. The targets in fuzz_targets/ are thin wrappers around them, and the stable test
//! crates/cardlog-core/tests/fuzz_corpus.rs includes the same file, so CI judges the seed corpus
//! and crash artifacts exactly as libFuzzer does.

pub mod checks;

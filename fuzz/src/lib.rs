//! Shared code of cardlog's fuzz targets. The checks each target runs on its input live in
//! [`checks`] (cardlog-core: `decode_op`, `replay_ops`), [`sync_checks`] (cardlog-sync:
//! `decode_segments`, `decode_message`, `sync_session`) and [`vcard_checks`] (cardlog-vcard:
//! `vcard_import`); the generated seeds of the newer targets in [`sync_seeds`] and
//! [`vcard_checks::vcard_seeds`]. The targets in fuzz_targets/ are thin wrappers around the
//! checks, and the stable tests crates/*/tests/fuzz_corpus.rs include the same files, so CI
//! judges the seed corpus and crash artifacts exactly as libFuzzer does.
//!
//! The rest serves fuzzing without nightly: [`targets`] names every target with a function
//! running its check, [`scratch`] makes the throwaway replicas `vcard_import` imports into, and
//! [`mutate`] is the input mutator of the stable driver (src/bin/stable_fuzz.rs).

pub mod checks;
pub mod corpus;
pub mod mutate;
pub mod scratch;
pub mod sync_checks;
pub mod sync_seeds;
pub mod targets;
pub mod vcard_checks;

//! The harness's properties, each a test, on random schedules of 3–5 replicas with crashes,
//! clock skew and every sync mode. `CARDLOG_SIM_CASES` sets the number of schedules (a long
//! run: `CARDLOG_SIM_CASES=5000 cargo test --release -p cardlog-sim`); failures print the
//! seed and proptest's minimal schedule, and are kept in `proptest-regressions/`.
#![allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    clippy::panic,
    clippy::expect_used
)]

use cardlog_sim::strategy::schedule;
use cardlog_sim::{Sim, Storage};
use proptest::prelude::*;

fn cases(default: u32) -> u32 {
    std::env::var("CARDLOG_SIM_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(256), ..ProptestConfig::default() })]

    /// On real stores: convergence (identical state bytes and summaries after a final full
    /// sync), equality with the reference model at every replica before and after it, no
    /// lost save, order independence, incremental = rebuilt, crash recovery, idempotent
    /// import (the `Duplicated` sync mode).
    #[test]
    fn disk_schedules_keep_every_property(s in schedule(3..=5, 12..48, Storage::Disk)) {
        if let Err(v) = Sim::run(&s) {
            prop_assert!(false, "{v}");
        }
    }

    /// The same on in-memory devices: faster, so longer schedules.
    #[test]
    fn memory_schedules_keep_every_property(s in schedule(3..=5, 20..80, Storage::Memory)) {
        if let Err(v) = Sim::run(&s) {
            prop_assert!(false, "{v}");
        }
    }
}

//! The canary: a deliberately broken merge rule ("last save wins": what writes replaced is
//! ignored and the newest timestamp wins, no conflicts) must be caught by the harness. If this
//! test fails, the properties have gone blind. It also shows the random schedules exercise
//! what they should: conflicts, deletes, crashes, syncs, strangers' refused pushes, devices
//! admitted during the schedule and devices leaving the book.
#![allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    clippy::panic,
    clippy::expect_used
)]

use cardlog_sim::strategy::schedule;
use cardlog_sim::{Rule, Sim, Stats, Storage};
use proptest::strategy::{Strategy, ValueTree};
use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};

fn runner() -> TestRunner {
    TestRunner::new_with_rng(
        Config::default(),
        TestRng::from_seed(RngAlgorithm::ChaCha, &[7; 32]),
    )
}

#[test]
fn last_save_wins_is_caught_by_the_reference_model() {
    let mut runner = runner();
    let strategy = schedule(3..=4, 20..60, Storage::Memory);
    let mut caught = None;
    for case in 0..200 {
        let s = strategy.new_tree(&mut runner).unwrap().current();
        // The engine is right: the harness passes it.
        Sim::run(&s).unwrap();
        let mut sim = Sim::new(&s).unwrap().with_rule(Rule::LastWriteWins);
        sim.play(&s).unwrap();
        if let Err(v) = sim.check() {
            assert_eq!(v.property, "reference model", "{v}");
            caught = Some(case);
            break;
        }
    }
    assert!(
        caught.is_some(),
        "200 schedules never told last-save-wins from cardlog"
    );
}

#[test]
fn schedules_exercise_conflicts_deletes_crashes_syncs_membership_and_restores() {
    let mut runner = runner();
    let strategy = schedule(3..=5, 12..48, Storage::Disk);
    let mut total = Stats::default();
    let mut clocks_set = 0;
    for _ in 0..24 {
        let s = strategy.new_tree(&mut runner).unwrap().current();
        clocks_set += s
            .actions
            .iter()
            .filter(|a| matches!(a, cardlog_sim::Action::SetClock { .. }))
            .count();
        let st = Sim::run(&s).unwrap();
        total.saves += st.saves;
        total.syncs += st.syncs;
        total.crashes += st.crashes;
        total.conflicts += st.conflicts;
        total.deleted += st.deleted;
        total.ops += st.ops;
        total.refused += st.refused;
        total.removed += st.removed;
        total.admitted += st.admitted;
        total.void_saves += st.void_saves;
        total.void_kept += st.void_kept;
        total.relay_sessions += st.relay_sessions;
        total.relay_saves_refused += st.relay_saves_refused;
        total.right_saves += st.right_saves;
        total.right_pairs += st.right_pairs;
        total.backups += st.backups;
        total.restores += st.restores;
        total.lost_with_disk += st.lost_with_disk;
    }
    eprintln!("24 disk schedules: {total:?}");
    assert!(total.saves > 60, "{total:?}");
    // Clocks were set right and wrong (a day either way, decades ahead) during schedules.
    assert!(clocks_set > 10, "{clocks_set}");
    // Edits were made on right clocks (tests/properties.rs checks they compete).
    assert!(total.right_saves > 30, "{total:?}");
    assert!(total.syncs > 50, "{total:?}");
    assert!(total.crashes > 5, "{total:?}");
    assert!(total.conflicts > 0, "{total:?}");
    assert!(total.deleted > 0, "{total:?}");
    // Hostile devices pushed ops that were refused, and devices left the book.
    assert!(total.refused > 5, "{total:?}");
    assert!(total.removed > 5, "{total:?}");
    assert!(total.admitted > 0, "{total:?}");
    // Ops went through the relay, which stores and forwards but saves nothing.
    assert!(total.relay_sessions > 10, "{total:?}");
    assert!(total.relay_saves_refused > 0, "{total:?}");
    // Removed devices saved before they learnt of it (tests/removal.rs scripts what others
    // build on such saves).
    assert!(total.void_saves > 0, "{total:?}");
    // Stores were backed up and restored in place from their backups, and some saves went
    // with the disk (nothing else held them).
    assert!(total.backups > 5, "{total:?}");
    assert!(total.restores > 3, "{total:?}");
    assert!(total.lost_with_disk > 0, "{total:?}");
}

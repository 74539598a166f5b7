//! A removed device's concurrent saves, scripted: the removed device saves before it learns
//! of its removal, another device builds on that save, and every property still holds after
//! the final sync (same state everywhere, the model's state, nothing lost, any order). The
//! random schedules reach this rarely; here it happens in every delivery mode.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use cardlog_core::{Contact, ContactId, Field};
use cardlog_sim::{Action, Edit, Schedule, Sim, Storage, SyncMode};

fn script(mode: SyncMode) -> Schedule {
    let mut ada = Contact::new(ContactId([1; 16]));
    ada.set(Field::Given, "Ada");
    let save = |replica: usize, value: &str| Action::Save {
        replica,
        edit: Edit::SetField {
            pick: 0,
            field: 0,
            value: value.into(),
        },
    };
    let sync = |from: usize, to: usize, mode: SyncMode| Action::Sync { from, to, mode };
    Schedule {
        storage: Storage::Disk,
        skews_ms: vec![0; 4],
        actions: vec![
            Action::Save {
                replica: 0,
                edit: Edit::Add(ada),
            },
            sync(0, 1, SyncMode::Full),
            sync(0, 2, SyncMode::Full),
            // The founder removes replica 1, which does not know yet and saves.
            Action::Leave { replica: 1 },
            save(1, "Eve"),
            // Replica 2 takes the void save in and edits on top of it.
            sync(1, 2, SyncMode::Full),
            save(2, "Eva"),
            // Replica 3 hears of the removal first, then gets both, as `mode` delivers.
            sync(0, 3, SyncMode::Full),
            sync(2, 3, mode),
            sync(2, 0, mode),
            // The removed device learns of it: its next save is refused.
            sync(0, 1, SyncMode::Full),
            save(1, "Mallory"),
        ],
    }
}

#[test]
fn a_removed_devices_concurrent_save_never_takes_effect_and_what_was_built_on_it_survives() {
    for mode in [
        SyncMode::Full,
        SyncMode::Interrupted(1),
        SyncMode::Reordered(7),
        SyncMode::Bundle,
        SyncMode::Partial(50),
    ] {
        let schedule = script(mode);
        let mut sim = Sim::new(&schedule).unwrap();
        sim.play(&schedule)
            .unwrap_or_else(|v| panic!("{mode:?}: {v}"));
        sim.check().unwrap_or_else(|v| panic!("{mode:?}: {v}"));
        let stats = sim.stats();
        assert_eq!(
            (stats.removed, stats.void_saves),
            (1, 1),
            "{mode:?}: {stats:?}"
        );
        assert_eq!(stats.void_kept, 1, "{mode:?}: {stats:?}");
    }
}

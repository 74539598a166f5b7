//! The harness's properties, each a test, on random schedules of 3–5 replicas with crashes,
//! clock skew and every sync mode, drawn by [`explore`]: `CARDLOG_SIM_CASES` sets the number
//! of schedules and `CARDLOG_SIM_BASE` where their seeds start (a long run:
//! `CARDLOG_SIM_CASES=5000 CARDLOG_SIM_BASE=$RANDOM cargo test --release -p cardlog-sim`); a
//! failure prints what the devices did, the shrunk schedule and the command that replays it.
#![allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    clippy::panic,
    clippy::expect_used
)]

use cardlog_core::{Contact, ContactId, Field};
use cardlog_sim::strategy::schedule;
use cardlog_sim::{explore, Action, Edit, Schedule, Sim, Storage, SyncMode, Violation};

/// On real stores: convergence (identical state bytes and summaries after a final full
/// sync), equality with the reference model at every replica before and after it, no lost
/// save, a completed session delivers, order independence, incremental = rebuilt, crash
/// recovery, idempotent import (the `Duplicated` sync mode).
#[test]
fn disk_schedules_keep_every_property() {
    explore(schedule(3..=5, 12..48, Storage::Disk), 256, |s| {
        Sim::run(s).map(|_| ())
    })
    .unwrap();
}

/// The same on in-memory devices: faster, so longer schedules.
#[test]
fn memory_schedules_keep_every_property() {
    explore(schedule(3..=5, 20..80, Storage::Memory), 256, |s| {
        Sim::run(s).map(|_| ())
    })
    .unwrap();
}

/// A played schedule, fully synced, and `check` run on it; a violation tells the run.
fn synced(
    s: &Schedule,
    check: impl FnOnce(&mut Sim) -> Result<(), Violation>,
) -> Result<(), Violation> {
    let mut sim = Sim::new(s)?;
    let result = sim
        .play(s)
        .and_then(|()| sim.sync_all())
        .and_then(|()| check(&mut sim));
    result.map_err(|v| sim.told(v))
}

// Each property on its own, so a failure names it in the test list too.

#[test]
fn convergence() {
    explore(schedule(3..=5, 12..48, Storage::Disk), 64, |s| {
        synced(s, Sim::check_convergence)
    })
    .unwrap();
}

#[test]
fn equality_with_the_reference_model() {
    explore(schedule(3..=5, 20..80, Storage::Memory), 64, |s| {
        let mut sim = Sim::new(s)?;
        let result = sim
            .play(s)
            .and_then(|()| sim.check_model_everywhere())
            .and_then(|()| sim.sync_all())
            .and_then(|()| sim.check_model_everywhere());
        result.map_err(|v| sim.told(v))
    })
    .unwrap();
}

#[test]
fn no_lost_save() {
    explore(schedule(3..=5, 12..48, Storage::Disk), 64, |s| {
        synced(s, Sim::check_no_lost_save)
    })
    .unwrap();
}

#[test]
fn incremental_equals_rebuilt() {
    explore(schedule(3..=5, 12..48, Storage::Disk), 64, |s| {
        synced(s, Sim::check_rebuild)
    })
    .unwrap();
}

#[test]
fn import_is_idempotent() {
    explore(schedule(3..=5, 12..48, Storage::Disk), 64, |s| {
        synced(s, Sim::check_import_idempotent)
    })
    .unwrap();
}

#[test]
fn a_right_clocks_later_edit_wins() {
    let pairs = std::cell::Cell::new(0);
    for storage in [Storage::Disk, Storage::Memory] {
        explore(schedule(3..=5, 20..60, storage), 64, |s| {
            synced(s, |sim| {
                sim.check_right_clock_wins()?;
                pairs.set(pairs.get() + sim.stats().right_pairs);
                Ok(())
            })
        })
        .unwrap();
    }
    // Edits on right clocks did compete at one path, so the property compared something.
    assert!(
        pairs.get() > 0,
        "no two edits on right clocks ever competed"
    );
}

/// The phone's clock is a day ahead when it writes, then set right; a minute later it edits a
/// field, and a minute after that the laptop, not having seen it, edits the same field. Both
/// edits were made on right clocks: the laptop's, later in real time, is shown everywhere
/// (the old rule, a chain's times never going back, stamped the phone's a day ahead).
#[test]
fn a_right_clocks_later_edit_wins_after_a_clock_was_set_right() {
    let ada = {
        let mut c = Contact::new(ContactId([1; 16]));
        c.set(Field::Given, "Ada");
        c
    };
    let set = |replica: usize, value: &str| Action::Save {
        replica,
        edit: Edit::SetField {
            pick: 0,
            field: 1,
            value: value.into(),
        },
    };
    let sync = Action::Sync {
        from: 1,
        to: 0,
        mode: SyncMode::Full,
    };
    let day: i64 = 86_400_000;
    let schedule = Schedule {
        storage: Storage::Disk,
        skews_ms: vec![0, 0, 0],
        actions: vec![
            Action::Save {
                replica: 0,
                edit: Edit::Add(ada),
            },
            sync.clone(),
            Action::SetClock {
                replica: 1,
                off_by_ms: day,
            },
            set(1, "a day ahead"),
            sync,
            Action::SetClock {
                replica: 1,
                off_by_ms: 0,
            },
            set(1, "phone"),
            set(0, "laptop"),
        ],
    };
    let stats = Sim::new(&schedule)
        .unwrap()
        .execute_with(&schedule, |sim| {
            let r = sim.replica(2).unwrap();
            let shown = r.contacts().unwrap()[0].clone();
            assert_eq!(shown.contact.get(Field::Org), Some("laptop"), "{shown:?}");
            assert_eq!(shown.conflicts.len(), 1);
            Ok(())
        })
        .unwrap();
    assert_eq!(stats.right_pairs, 1, "{stats:?}");
    assert_eq!(stats.right_saves, 3, "{stats:?}");
}

/// A new contact with this given name (the simulator numbers it).
fn named(given: &str) -> Edit {
    let mut c = Contact::new(ContactId([9; 16]));
    c.set(Field::Given, given);
    Edit::Add(c)
}

/// A device renames the first contact it knows.
fn rename(replica: usize, value: &str) -> Action {
    Action::Save {
        replica,
        edit: Edit::SetField {
            pick: 0,
            field: 0,
            value: value.into(),
        },
    }
}

/// A full sync session of two replicas.
/// The phone backed up, its contact "one" synced to the relay, its store restored in place
/// from before it, and a contact "three" written since, which the tablet gets: how the
/// restore schedules here start.
fn restored_phone() -> Vec<Action> {
    vec![
        Action::Backup { replica: 0 },
        Action::Save {
            replica: 0,
            edit: named("one"),
        },
        sync(0, 3),
        Action::Restore { replica: 0 },
        Action::Save {
            replica: 0,
            edit: named("three"),
        },
        sync(0, 1),
    ]
}

/// Seed 0xc9038's schedule after [`restored_phone`], `last` the laptop's edit before its
/// restore: the laptop tags the tablet's rename of the phone's post-restore contact, is backed
/// up, adds a phone number to that contact (only the phone gets it), is left in the book (the
/// harness does not remove the tablet: its edits wait), writes `last` (only the tablet gets it,
/// by a bundle) and is restored in place from before the number.
fn laptop_restored_after(last: Edit) -> Vec<Action> {
    let laptop = |edit: Edit| Action::Save { replica: 2, edit };
    vec![
        rename(1, "three, renamed"),
        sync(1, 2),
        laptop(Edit::Custom {
            pick: 0,
            name: 0,
            value: Some("a".into()),
        }),
        Action::Backup { replica: 2 },
        laptop(Edit::AddItem {
            pick: 0,
            kind: 0,
            text: "a".into(),
        }),
        sync(2, 0),
        sync(3, 1),
        Action::Leave { replica: 1 },
        laptop(last),
        Action::Sync {
            from: 2,
            to: 1,
            mode: SyncMode::Duplicated,
        },
        Action::Restore { replica: 2 },
    ]
}

fn sync(from: usize, to: usize) -> Action {
    Action::Sync {
        from,
        to,
        mode: SyncMode::Full,
    }
}

/// The phone's store is restored in place from a backup taken before it added two contacts;
/// the laptop had synced the first (and edits it), no one the second. After the restore the
/// phone adds a third and syncs it to the tablet before meeting the laptop. The final sync
/// brings everything together: the first contact and the laptop's edit come back to the
/// phone, the third (re-issued by the phone after what it took back) replaces the tablet's
/// copy of the branch the phone gave up, and every property holds. Only the second contact,
/// which nothing but the lost disk held, is gone.
#[test]
fn a_store_restored_in_place_loses_only_what_no_one_else_held() {
    let schedule = Schedule {
        storage: Storage::Disk,
        skews_ms: vec![0, 0, 0, 0],
        actions: vec![
            Action::Backup { replica: 0 },
            Action::Save {
                replica: 0,
                edit: named("one"),
            },
            sync(0, 2),
            Action::Save {
                replica: 0,
                edit: named("two"),
            },
            Action::Restore { replica: 0 },
            Action::Save {
                replica: 0,
                edit: named("three"),
            },
            sync(0, 1),
            Action::Save {
                replica: 2,
                edit: Edit::SetField {
                    pick: 0,
                    field: 1,
                    value: "edited".into(),
                },
            },
        ],
    };
    let stats = Sim::new(&schedule)
        .unwrap()
        .execute_with(&schedule, |sim| {
            for i in 0..4 {
                let names: Vec<(String, Option<String>)> = sim
                    .replica(i)
                    .unwrap()
                    .contacts()
                    .unwrap()
                    .iter()
                    .map(|v| {
                        (
                            v.contact.get(Field::Given).unwrap_or_default().to_owned(),
                            v.contact.get(Field::Org).map(str::to_owned),
                        )
                    })
                    .collect();
                assert_eq!(
                    names,
                    [
                        ("one".into(), Some("edited".into())),
                        ("three".into(), None)
                    ],
                    "replica {i}"
                );
            }
            Ok(())
        })
        .unwrap();
    assert_eq!(
        (stats.backups, stats.restores, stats.lost_with_disk),
        (1, 1, 1),
        "{stats:?}"
    );
}

#[test]
fn edits_made_on_a_branch_given_up_survive_its_settling() {
    // Replica 0 is restored and adds "three" on its new branch; replica 1 takes it and
    // renames it, replica 2 takes both and renames it again, before replica 0 meets the relay,
    // which holds what its backup lost. The branch is given up, and both renames, made on top
    // of it, come back through their authors' re-issues.
    let schedule = Schedule {
        storage: Storage::Disk,
        skews_ms: vec![0, 0, 0, 0],
        actions: [
            restored_phone(),
            vec![
                rename(1, "three, renamed"),
                sync(1, 2),
                rename(2, "three, renamed again"),
                sync(2, 0),
            ],
        ]
        .concat(),
    };
    let stats = Sim::new(&schedule)
        .unwrap()
        .execute_with(&schedule, |sim| {
            let given = |i: usize| -> Vec<String> {
                sim.replica(i)
                    .unwrap()
                    .contacts()
                    .unwrap()
                    .iter()
                    .map(|v| v.contact.get(Field::Given).unwrap_or_default().to_owned())
                    .collect()
            };
            for i in 0..4 {
                let r = sim.replica(i).unwrap();
                let first = sim.replica(0).unwrap();
                assert_eq!(
                    r.summary().unwrap(),
                    first.summary().unwrap(),
                    "replica {i}"
                );
                assert_eq!(r.conflicts().unwrap(), first.conflicts().unwrap());
                assert_eq!(given(i), given(0), "replica {i}");
            }
            // The last rename stands, superseding the first, as it did where it was made.
            assert_eq!(given(0), ["one", "three, renamed again"]);
            assert!(sim.replica(0).unwrap().conflicts().unwrap().is_empty());
            Ok(())
        })
        .unwrap();
    assert_eq!((stats.backups, stats.restores), (1, 1), "{stats:?}");
}

/// Every property on random schedules that start with a restored replica whose post-restore
/// branch two others edited on top of (as in the test above) before it meets the relay, which
/// holds what its backup lost: whatever comes after, the branch is given up and every edit
/// made on it survives its settling.
#[test]
fn schedules_after_edits_on_a_restored_branch_keep_every_property() {
    use proptest::strategy::Strategy;
    let mut prefix = restored_phone();
    prefix.extend([rename(1, "three, renamed"), sync(1, 2)]);
    let strategy = schedule(4..=5, 8..32, Storage::Disk).prop_map(move |mut s| {
        s.actions.splice(0..0, prefix.clone());
        s
    });
    explore(strategy, 48, |s| Sim::run(s).map(|_| ())).unwrap();
}

/// The schedules the test above found faults on (shrunk), each kept as it was found: every
/// property holds on them. Each starts as the phone (restored in place) gives its post-restore
/// contact to the tablet, while the relay holds the contact its backup lost.
#[test]
fn restore_schedules_found_by_the_random_test_keep_every_property() {
    let save = |replica: usize, given: &str| Action::Save {
        replica,
        edit: named(given),
    };
    let mode = |from: usize, to: usize, mode: SyncMode| Action::Sync { from, to, mode };
    let set = |replica: usize, pick: u8, value: &str| Action::Save {
        replica,
        edit: Edit::SetField {
            pick,
            field: 0,
            value: value.into(),
        },
    };
    // A device tags the first contact it knows "friends".
    let tag = |replica: usize| Action::Save {
        replica,
        edit: Edit::Tag {
            pick: 0,
            name: 0,
            on: true,
        },
    };
    let found: Vec<(usize, Vec<Action>)> = vec![
        // Settling the phone's branch withdraws the tablet's rename the laptop holds, so the
        // tablet's re-issued rename no longer forks there: it goes in as any op.
        (
            4,
            vec![
                rename(1, "r"),
                sync(1, 2),
                sync(3, 0),
                mode(0, 1, SyncMode::Relay(208)),
            ],
        ),
        // The laptop's own contact, below its rename on the branch: the phone cannot prove it
        // (the signature it holds was of the rename) until the laptop re-issues.
        (
            5,
            vec![rename(1, "r"), sync(1, 2), save(2, "a"), rename(2, "b")],
        ),
        // The relay keeps the branch the watch brings; the phone holds that branch and has
        // lost the relay's: both go to it, and it takes back the one it lacks.
        (
            5,
            vec![
                Action::Leave { replica: 4 },
                sync(4, 3),
                save(0, "a"),
                mode(0, 3, SyncMode::Relay(225)),
            ],
        ),
        // The tablet keeps the relay's branch and sends it; the phone takes it back with the
        // branch's own signature, not that of the chain it holds.
        (4, vec![sync(1, 3), save(0, "a")]),
        // The laptop's rename on the branch waits for the tablet's copy; its contact after it
        // waits its turn instead of landing below its own seq.
        (
            4,
            vec![rename(1, "r"), sync(1, 2), rename(2, "b"), save(2, "a")],
        ),
        // A restored phone's hello leaves its chain out: the watch takes ops naming it as in
        // doubt; a bundle sends a chain forking from the receiver's whole.
        (5, vec![rename(1, "r"), save(0, "a")]),
        (5, vec![rename(1, "r"), mode(1, 3, SyncMode::Bundle)]),
        // The phone's rename on the tablet's waits; its contact after it is copied at its own
        // seq, which settling accepts.
        (
            5,
            vec![
                rename(1, "r"),
                sync(1, 2),
                sync(0, 1),
                rename(0, "b"),
                save(0, "a"),
            ],
        ),
        // The tablet, restored too, takes back its re-issued rename once the settling that
        // session brought stored the copy it names.
        (
            4,
            vec![
                rename(1, "r"),
                Action::Backup { replica: 1 },
                mode(3, 1, SyncMode::Relay(252)),
                Action::Restore { replica: 1 },
            ],
        ),
        // Raw ops do not cross a fork.
        (
            4,
            vec![
                rename(1, "r"),
                mode(1, 3, SyncMode::Reordered(17_692_101_269_383_135_757)),
            ],
        ),
        (
            5,
            vec![
                rename(1, "r"),
                sync(1, 2),
                save(0, "a"),
                save(0, "b"),
                mode(0, 3, SyncMode::Partial(25)),
            ],
        ),
        // Restored twice: the branch the tablet keeps comes back to the phone, with the fork
        // reported so references past it wait.
        (
            4,
            vec![rename(1, "r"), sync(3, 1), Action::Restore { replica: 0 }],
        ),
        (
            4,
            vec![rename(1, "r"), sync(3, 0), mode(1, 3, SyncMode::Bundle)],
        ),
        // The watch takes the laptop's rename on the tablet's, both waiting on the phone's
        // chain its hello left out.
        (
            5,
            vec![
                rename(1, "r"),
                sync(1, 2),
                save(0, "a"),
                rename(2, "b"),
                Action::Crash { replica: 0 },
            ],
        ),
        // A device whose ops wait on the restored chain is not removed yet.
        (
            5,
            vec![
                rename(1, "r"),
                sync(1, 2),
                sync(2, 3),
                rename(2, "b"),
                Action::Leave { replica: 2 },
            ],
        ),
        // The tablet's re-issued rename comes to the phone signed only through its next edit,
        // which waits for the laptop's contact: the phone stores neither (it could not prove
        // the rename to the laptop), and takes both once the laptop's contact is there.
        (
            4,
            vec![
                rename(1, "r"),
                sync(1, 2),
                save(2, "a"),
                set(2, 158, "a"),
                sync(1, 2),
                set(1, 13, "b"),
                sync(0, 3),
            ],
        ),
        // The laptop, removed, edits on the branch given up and the tablet builds on that:
        // the laptop's copy never comes, so the tablet's re-issued edit names what the
        // laptop's replaced instead of waiting for it.
        (
            4,
            vec![
                rename(1, "r"),
                sync(1, 2),
                Action::Leave { replica: 2 },
                set(2, 0, "a"),
                sync(1, 2),
                set(1, 0, "b"),
                save(0, "a"),
                save(0, "a"),
                save(0, "a"),
                set(0, 13, "c"),
            ],
        ),
        // The tablet's edit of the laptop's contact waits with the laptop's contact (its
        // signature was of the laptop's withdrawn delete), and the tablet's next contact
        // after it in its chain waits too.
        (
            5,
            vec![
                rename(1, "r"),
                sync(1, 2),
                save(1, "a"),
                save(2, "a"),
                Action::Save {
                    replica: 2,
                    edit: Edit::Delete { pick: 216 },
                },
                sync(2, 1),
                set(1, 191, "b"),
                save(1, "a"),
                Action::Crash { replica: 0 },
                set(0, 1, "c"),
            ],
        ),
        // The phone holds the laptop's tag, whose signature was of the laptop's edit on the
        // branch given up: it sends the laptop's contact under its own signature and leaves
        // the tag out, rather than send both unsigned (refused whole).
        (
            4,
            vec![
                save(2, "a"),
                sync(2, 0),
                Action::Save {
                    replica: 2,
                    edit: Edit::Tag {
                        pick: 155,
                        name: 0,
                        on: true,
                    },
                },
                Action::Save {
                    replica: 2,
                    edit: Edit::AddItem {
                        pick: 0,
                        kind: 0,
                        text: "a".into(),
                    },
                },
            ],
        ),
        // Restored a second time, the phone asks for all of its chain; the laptop holds both
        // lost branches (the relay's by a bundle) and sends both, rather than the one it
        // keeps aside only, which left the other lost for good.
        (
            4,
            vec![
                rename(1, "r"),
                sync(1, 2),
                Action::Restore { replica: 0 },
                mode(3, 2, SyncMode::Duplicated),
                save(0, "a"),
                save(0, "a"),
                save(0, "a"),
                Action::Save {
                    replica: 0,
                    edit: Edit::Custom {
                        pick: 111,
                        name: 1,
                        value: Some("c".into()),
                    },
                },
                save(0, "b"),
                Action::Stranger {
                    target: 0,
                    forge: true,
                },
            ],
        ),
        // The phone's two edits on the tablet's rename wait for its copy; the tablet holds
        // the phone's branch given up further than the phone's chain goes and takes itself
        // to be ahead: the phone sends it all of its chain, so it settles and re-issues.
        (
            4,
            vec![rename(1, "r"), sync(0, 1), set(0, 0, "a"), set(0, 108, "b")],
        ),
        // The phone's new contact after two edits that wait for the tablet's copy waits with
        // them; the tablet settles without its copy (the phone re-issues it after them).
        (
            4,
            vec![
                rename(1, "r"),
                sync(0, 1),
                Action::Save {
                    replica: 0,
                    edit: Edit::AddItem {
                        pick: 0,
                        kind: 0,
                        text: "a".into(),
                    },
                },
                save(0, "a"),
                save(0, "a"),
                Action::Save {
                    replica: 0,
                    edit: Edit::Custom {
                        pick: 15,
                        name: 0,
                        value: Some("a".into()),
                    },
                },
                save(0, "a"),
            ],
        ),
        // The relay, holding the phone's lost branch, takes the tablet's rename as in doubt
        // (it names the phone's chain where the two differ), and the tablet's contact after
        // it and the laptop's phone number on that contact too, instead of refusing the
        // message for a head that cannot match.
        (
            4,
            vec![
                rename(1, "r"),
                sync(1, 2),
                save(1, "a"),
                sync(1, 2),
                Action::Save {
                    replica: 2,
                    edit: Edit::AddItem {
                        pick: 1,
                        kind: 0,
                        text: "a".into(),
                    },
                },
                save(0, "a"),
                save(0, "a"),
                save(0, "a"),
                Action::Crash { replica: 0 },
            ],
        ),
        // Restored a second time, the phone has lost both branches of its chain: the tablet
        // holds one and keeps the relay's aside, the relay the other way round. Each sends
        // both; the phone takes back the first set apart under that branch's signature alone
        // (the other branch's signature at the same seq left it unsigned, so nothing was ever
        // taken back and the phone's chain stayed a third branch for good).
        (
            4,
            vec![
                Action::Restore { replica: 0 },
                sync(1, 3),
                save(0, "a"),
                save(0, "a"),
            ],
        ),
        // Seed 0xbe402 of `CARDLOG_SIM_BASE=779000`: the laptop renames the contact the
        // tablet renamed on the phone's branch. Its session with the founder before its
        // removal settles that branch and withdraws its rename, which waits for the tablet's
        // copy and which only the laptop can re-issue; a removed device's copies are refused,
        // so the harness no longer removes a device with edits waiting to be re-issued
        // (docs/SEMANTICS.md, "What is left").
        (
            4,
            vec![
                rename(1, "three, renamed"),
                sync(1, 2),
                mode(3, 0, SyncMode::Relay(0)),
                set(2, 0, "a"),
                Action::Leave { replica: 2 },
            ],
        ),
        // Seed 0xbeba8 of `CARDLOG_SIM_BASE=781000`: the phone, restored a second time,
        // admits the watch on a branch the tablet cannot take yet (it holds the first
        // restore's branch there); the watch's ops wait on the tablet with that admission,
        // and the harness expects them only once it goes in.
        (
            5,
            vec![
                rename(1, "three, renamed"),
                sync(1, 2),
                Action::Restore { replica: 0 },
                Action::Leave { replica: 4 },
                save(4, "a"),
                sync(4, 1),
            ],
        ),
        // Seed 0xc488e of `CARDLOG_SIM_BASE=805000`: the phone admits the watch on its branch
        // after the restore; the tablet, holding the other branch, cannot take that admission
        // in raw ops, so the harness leaves the watch's ops out too (it expected them stored).
        (
            5,
            vec![
                rename(1, "three, renamed"),
                sync(1, 2),
                Action::Admit { replica: 4 },
                sync(0, 3),
                sync(0, 4),
                save(4, "a"),
                save(0, "a"),
                save(0, "a"),
                mode(4, 1, SyncMode::Reordered(0)),
            ],
        ),
        // Seed 0xc492c of `CARDLOG_SIM_BASE=805000`: restored again, the phone re-issues after
        // its chain its item on a contact the tablet renamed; the rename was lost with the
        // disk, so the copy names none for it (it wrote the copy naming it, which the store
        // refused as naming an op it lacks: "store damaged").
        (
            4,
            vec![
                rename(1, "three, renamed"),
                sync(1, 0),
                Action::Save {
                    replica: 0,
                    edit: Edit::AddItem {
                        pick: 0,
                        kind: 0,
                        text: "a".into(),
                    },
                },
                mode(0, 1, SyncMode::Duplicated),
                Action::Restore { replica: 0 },
                sync(3, 0),
            ],
        ),
        // Seed 0xc55cc of `CARDLOG_SIM_BASE=807000`: the tablet renames the phone's contact
        // on the branch the phone gives up, adds a contact that only the laptop gets, and is
        // restored in place from a backup of before it. The laptop withdraws the tablet's
        // contact with the branch when it settles the phone's fork, and the tablet, which
        // lost it, could not re-issue it: it was lost everywhere ("no lost save"). Now the
        // laptop gives it back: to the tablet itself (here), or through the phone, which
        // keeps it for the tablet (next).
        (
            5,
            vec![
                rename(1, "three, renamed"),
                Action::Backup { replica: 1 },
                save(1, "a"),
                sync(1, 2),
                Action::Restore { replica: 1 },
            ],
        ),
        (
            4,
            vec![
                rename(1, "three, renamed"),
                Action::Backup { replica: 1 },
                sync(3, 0),
                save(1, "a"),
                sync(1, 2),
                Action::Restore { replica: 1 },
            ],
        ),
        // The same, the tablet writing again after it settled the phone's fork and before
        // the laptop gives its contact back: the laptop gets the new op at the seq of the
        // contact it withdrew, and still gives the contact back.
        (
            5,
            vec![
                rename(1, "three, renamed"),
                Action::Backup { replica: 1 },
                save(1, "a"),
                sync(1, 2),
                Action::Restore { replica: 1 },
                sync(3, 0),
                sync(1, 0),
                save(1, "b"),
                sync(1, 0),
                sync(0, 2),
            ],
        ),
        // Seed 0xc6d50 of `CARDLOG_SIM_BASE=814000`: the tablet renames the phone's contact,
        // sets its name again (only the laptop gets that), and is restored in place from
        // between the two. When the fork settles, the tablet re-issues its rename and the
        // laptop owes the second edit back. The phone, holding the tablet's re-issued rename
        // at the place the edit names, resolved that reference to it, and the edit never
        // hashed to its segment's head: left out in every session ("no lost save"). Branches
        // now travel as their ops' exact bytes.
        (
            4,
            vec![
                rename(1, "three, renamed"),
                sync(1, 2),
                Action::Backup { replica: 1 },
                rename(1, "a"),
                sync(1, 2),
                Action::Restore { replica: 1 },
                rename(0, "a"),
                sync(3, 2),
                sync(0, 1),
                sync(3, 0),
            ],
        ),
        // Seed 0xc5d8c of `CARDLOG_SIM_BASE=809000`: the laptop adds two contacts and renames
        // the phone's post-restore contact (the tablet's rename of it), the phone gets all
        // three, and the laptop is restored in place from before them. The phone settles its
        // fork and withdraws the rename (it built on the branch given up); the two contacts
        // below it were proved only by the rename's signature, so nobody could pass them on
        // and the replicas never converged. Now the phone sends the laptop, whose hello shows
        // none of its chain, the contacts and the rename as exact ops under that signature;
        // the laptop stores the contacts and re-issues the rename (it names an op it has
        // withdrawn since) after its chain, and its own later rename after that.
        (
            4,
            vec![
                rename(1, "three, renamed"),
                sync(1, 2),
                Action::Backup { replica: 2 },
                save(2, "a"),
                save(2, "a"),
                set(2, 24, "a"),
                sync(2, 0),
                Action::Restore { replica: 2 },
                mode(3, 0, SyncMode::Interrupted(3)),
                set(2, 0, "a"),
            ],
        ),
        // Seed 0xc7774 of `CARDLOG_SIM_BASE=817000`: the laptop renames the tablet's rename of
        // the phone's contact (its only op), only the tablet gets it, and the laptop is
        // restored in place from before it. The tablet withdraws it with the phone's branch
        // and owes it back, but the laptop meets only the phone, which holds none of its
        // chain: lost ("no lost save"). Now the tablet gives it to the phone (a branch that
        // continues nothing, neither side holding the laptop's chain), the phone, which
        // never held the rename it names, hands it on, and the laptop takes it back and
        // re-issues it.
        (
            4,
            vec![
                rename(1, "three, renamed"),
                sync(1, 2),
                Action::Backup { replica: 2 },
                sync(3, 0),
                rename(2, "a"),
                sync(1, 2),
                Action::Restore { replica: 2 },
            ],
        ),
        // Seed 0xc79f5 of `CARDLOG_SIM_BASE=817000`: the phone deletes its post-restore
        // contact after the tablet renamed it; only the laptop gets the delete. The phone takes
        // its lost contact back from the tablet (re-issuing the contact, the delete waiting for
        // the tablet's copy of the rename) and is restored again from the same backup. The
        // laptop, holding the phone's old branch with the delete alone, sent it to the phone
        // by reference: the delete names the rename, the phone holds the tablet's copy at that
        // place, so the segment never hashed to its head and was left out in every session,
        // while the phone sent none of its chain (it took itself to be restored): the two
        // never converged. A chain sent whole for a fork in the hello now goes as exact ops.
        (
            4,
            vec![
                rename(1, "three, renamed"),
                mode(1, 0, SyncMode::Duplicated),
                Action::Save {
                    replica: 0,
                    edit: Edit::Delete { pick: 224 },
                },
                mode(2, 0, SyncMode::Interrupted(2)),
                mode(2, 1, SyncMode::Relay(3)),
                sync(1, 0),
                Action::Restore { replica: 0 },
                tag(1),
            ],
        ),
        // Seed 0xc7faa of `CARDLOG_SIM_BASE=819000`: the tablet renames the phone's
        // post-restore contact, the laptop takes the rename, and the tablet is removed and tags
        // the contact (void), which the laptop takes too. The phone settles its fork, and the
        // tablet, meeting the phone, re-issues its rename at its seq. In the final sync the
        // phone, holding only that re-issued rename of the tablet's chain, took the laptop
        // (its hello two ops along that chain) to be ahead and sent none of it, though the
        // laptop reported the fork: the laptop never got the rename ("a completed session
        // delivers"). Now a fork the peer's messages show of a chain its hello has further
        // than this side sends that chain whole.
        (
            4,
            vec![
                rename(1, "three, renamed"),
                sync(1, 2),
                Action::Leave { replica: 1 },
                tag(1),
                mode(1, 2, SyncMode::Interrupted(2)),
                mode(0, 3, SyncMode::Interrupted(2)),
                sync(1, 0),
            ],
        ),
        // Seed 0xc6242 of `CARDLOG_SIM_BASE=811000`: the tablet renames the phone's
        // post-restore contact, the laptop takes the rename and is removed, and writes on
        // (void): two contacts, then a phone on the renamed contact. The tablet takes those and
        // renames the laptop's first contact, naming its void op. When the phone's fork
        // settles, the laptop's phone goes with the branch, and the laptop's two contacts are
        // covered only by that withdrawn op's signature: no replica can prove them to the
        // relay. The tablet's re-issued rename named the void contact, so it could never go in
        // there, nor anything the tablet wrote after it ("a completed session delivers"). Now
        // a copy names what a void op replaced instead of it (it takes no effect).
        (
            5,
            vec![
                rename(1, "three, renamed"),
                sync(1, 2),
                Action::Leave { replica: 2 },
                save(2, "a"),
                save(2, "a"),
                Action::Save {
                    replica: 2,
                    edit: Edit::AddItem {
                        pick: 198,
                        kind: 0,
                        text: "a".into(),
                    },
                },
                sync(2, 1),
                set(1, 13, "b"),
                save(0, "a"),
                Action::Save {
                    replica: 0,
                    edit: Edit::Delete { pick: 28 },
                },
            ],
        ),
        // Seed 0xc8f3a of `CARDLOG_SIM_BASE=823000`: the phone takes its lost contact back
        // through the tablet (its chain: the lost contact, then "three" re-issued), the tablet
        // settles, and the phone is restored a second time from the same backup. Its clock set
        // a day back, it adds two contacts, gets "three" back from the laptop in a session cut
        // short and edits it, and only then meets the lost contact again: its chain now holds
        // "three" re-issued before "one". The tablet's branch ("one", "three") had a copy of
        // each op on that chain, but not in its order, so it never settled, and its rename
        // (re-issued on its "three") never reached anyone ("convergence"). Now a branch is
        // given up when each op has its own copy at its seq or later, in any order.
        (
            5,
            vec![
                rename(1, "three, renamed"),
                sync(1, 2),
                mode(3, 0, SyncMode::Relay(1)),
                mode(0, 1, SyncMode::Relay(0)),
                Action::Restore { replica: 0 },
                Action::SetClock {
                    replica: 0,
                    off_by_ms: -1440 * 60_000,
                },
                save(0, "a"),
                save(0, "a"),
                mode(0, 2, SyncMode::Interrupted(2)),
                set(0, 0, "dé"),
            ],
        ),
        // Seed 0xc9038 of `CARDLOG_SIM_BASE=823000`: the laptop tags the phone's
        // post-restore contact (on the tablet's rename), is backed up, adds a phone to that
        // contact (only the phone gets it) and a contact (only the tablet gets it, by a
        // bundle), and is restored in place from before both. When the fork settles, the
        // laptop re-issues its tag, takes the phone number back from the phone and re-issues
        // it, keeping only the id of the original it gave up. The tablet, which withdrew the
        // contact with the branch, gives it back (through the phone, which hands it on), but
        // it continues that given-up phone number, which the laptop no longer holds: it was
        // never taken back, and the contact was lost ("no lost save"). Now an own op that
        // continues one this device gave up comes back re-issued after the chain.
        (4, laptop_restored_after(named("a"))),
        // Seed 0xca327 of `CARDLOG_SIM_BASE=828000`: the watch relays the relay's branch of
        // the phone's chain to the tablet, the phone edits the tablet's rename twice, then
        // admits the watch and meets it before removing it. The watch hands the phone its lost
        // contact; the take back withdraws the edits and the admission after them, and the
        // edits wait for the tablet's copy of the rename, the admission behind them: the
        // watch is no member at the founder for now, and the harness, removing it, failed
        // ("removal"). It no longer removes a device while the founder's edits wait.
        (
            5,
            vec![
                rename(1, "three, renamed"),
                sync(1, 2),
                mode(3, 1, SyncMode::Relay(4)),
                mode(1, 0, SyncMode::Duplicated),
                set(0, 0, "a"),
                Action::Save {
                    replica: 0,
                    edit: Edit::SetField {
                        pick: 0,
                        field: 1,
                        value: "a".into(),
                    },
                },
                Action::Leave { replica: 4 },
            ],
        ),
        // Seed 0xcb82c of `CARDLOG_SIM_BASE=833000`: the phone edits the tablet's rename,
        // admits and removes the watch, which writes two void ops. The final sync's take back
        // withdraws the admission and removal behind the edits waiting for the tablet's copy,
        // so the phone refused the watch's ops for now, and the harness called the session
        // with the watch undelivered; it no longer asks a replica for the ops of a device
        // whose admission waits there to be re-issued (0xca327's kind).
        (
            5,
            vec![
                rename(1, "three, renamed"),
                sync(1, 2),
                sync(1, 0),
                Action::Save {
                    replica: 0,
                    edit: Edit::AddItem {
                        pick: 0,
                        kind: 0,
                        text: "a".into(),
                    },
                },
                set(0, 0, "a"),
                Action::Leave { replica: 4 },
                save(4, "a"),
                save(0, "a"),
                Action::Save {
                    replica: 0,
                    edit: Edit::RemoveItem { pick: 0, nth: 1 },
                },
                Action::Save {
                    replica: 4,
                    edit: Edit::AddItem {
                        pick: 155,
                        kind: 0,
                        text: "a".into(),
                    },
                },
            ],
        ),
        // Seed 0xcd172 of `CARDLOG_SIM_BASE=840000` (session 45): the laptop renames the
        // tablet's rename of the phone's post-restore contact and adds a contact; a cut
        // session with the relay settles the phone's fork there, withdrawing both to wait
        // (the contact for its turn); its next contact makes room, and a stranger's bundle,
        // refused whole, then re-issued them ("stranger refused": the store changed). Now only
        // a bundle that brings ops retries waiting edits.
        (
            4,
            vec![
                rename(1, "three, renamed"),
                sync(1, 2),
                set(2, 0, "a"),
                sync(0, 3),
                mode(0, 3, SyncMode::Interrupted(2)),
                save(2, "a"),
                mode(3, 2, SyncMode::Interrupted(2)),
                save(2, "a"),
                Action::Stranger {
                    target: 2,
                    forge: false,
                },
            ],
        ),
    ];
    for (n, (devices, rest)) in found.into_iter().enumerate() {
        let mut actions = restored_phone();
        actions.extend(rest);
        let schedule = Schedule {
            storage: Storage::Disk,
            skews_ms: vec![0; devices],
            actions,
        };
        if let Err(v) = Sim::run(&schedule) {
            panic!("schedule {n}: {v}");
        }
    }
}

/// Seed 0xc3552 of `CARDLOG_SIM_BASE=800000`, shrunk: the phone's first contact reaches only
/// the relay before its disk is restored; its next one reaches the tablet and the laptop. A
/// take back with the relay makes the chain the lost contact and the next one re-issued after
/// it; then the disk is restored again from the same backup. In the final sync the phone got
/// the first contact back from the tablet (which kept the relay's branch) and then met the
/// laptop holding the second where it held the first: it took that back and re-issued the
/// first after it, the same two contacts in the other order than the relay's chain, and the
/// two never settled. Now the chain keeps the earlier-stamped op and re-issues the other after
/// it, which is the relay's chain byte for byte (fails "convergence" before the change).
#[test]
fn a_device_restored_twice_rebuilds_its_chain_in_the_order_the_relay_kept() {
    let schedule = Schedule {
        storage: Storage::Disk,
        skews_ms: vec![0; 4],
        actions: [
            restored_phone(),
            vec![
                sync(1, 2),
                sync(3, 1),
                sync(3, 0),
                Action::Restore { replica: 0 },
            ],
        ]
        .concat(),
    };
    let stats = Sim::run(&schedule).unwrap_or_else(|v| panic!("{v}"));
    assert_eq!((stats.backups, stats.restores), (1, 2), "{stats:?}");
}

/// Seed 0xcbfcf of `CARDLOG_SIM_BASE=835000` (session 44), shrunk to 12 steps: the phone is
/// restored twice from two different backups. Its first contact ("one") reaches only the
/// desktop before the first restore; after it, the phone adds "three", is backed up, tags
/// "three" (only the laptop gets the tag), is restored from that second backup, adds "a" and
/// tags "three" again; the laptop syncs with the desktop, which keeps the laptop's branch of
/// the phone's chain ("three", the lost tag) aside. In the final sync the desktop sends the
/// phone its chain ("one" at seq 5) and that branch; set apart by seq they make one list,
/// "one" then the tag, which do not link, so the take back refused it every session and the
/// replicas never converged (as on session 43's final engine, `89e3d8c`). Now a take back
/// takes the ops that link from where the chains part, and the rest comes again after.
#[test]
fn a_device_restored_twice_from_two_backups_takes_back_what_both_peers_hold() {
    let tag = Action::Save {
        replica: 0,
        edit: Edit::Tag {
            pick: 0,
            name: 0,
            on: true,
        },
    };
    let phone = |given: &str| Action::Save {
        replica: 0,
        edit: named(given),
    };
    let schedule = Schedule {
        storage: Storage::Disk,
        skews_ms: vec![0; 4],
        actions: vec![
            Action::Backup { replica: 0 },
            phone("one"),
            sync(0, 3),
            Action::Restore { replica: 0 },
            phone("three"),
            Action::Backup { replica: 0 },
            tag.clone(),
            sync(2, 0),
            Action::Restore { replica: 0 },
            phone("a"),
            tag,
            sync(3, 2),
        ],
    };
    Sim::run(&schedule).unwrap_or_else(|v| panic!("{v}"));
}

/// Seed 0xcc15e of `CARDLOG_SIM_BASE=835000` (session 44), shrunk to 14 steps: the laptop
/// adds a phone number to the tablet's rename of the phone's post-restore contact, a valid
/// edit, and is then removed from the book. Meeting the phone, which had settled its fork, it
/// withdrew the number with the branch (its chain went back to before it) to re-issue once the
/// tablet's copy of the rename came, and its next save took the number's seq, below its
/// cutoff: the save, made after the removal, counted as valid, and the number's copy landed
/// past the cutoff, void, and was lost everywhere ("no lost save"). Now a device that knows
/// it was removed saves nothing new, and the copy takes its op's seq.
#[test]
fn a_removed_devices_edit_on_a_branch_given_up_is_not_lost() {
    let schedule = Schedule {
        storage: Storage::Disk,
        skews_ms: vec![0; 4],
        actions: [
            restored_phone(),
            vec![
                rename(1, "three, renamed"),
                sync(1, 2),
                Action::Sync {
                    from: 3,
                    to: 1,
                    mode: SyncMode::Interrupted(2),
                },
                Action::Save {
                    replica: 2,
                    edit: Edit::AddItem {
                        pick: 0,
                        kind: 0,
                        text: "a".into(),
                    },
                },
                Action::Leave { replica: 2 },
                sync(0, 1),
                sync(0, 2),
                Action::Save {
                    replica: 2,
                    edit: named("a"),
                },
            ],
        ]
        .concat(),
    };
    Sim::run(&schedule).unwrap_or_else(|v| panic!("{v}"));
}

/// Seed 0xc3ddb of `CARDLOG_SIM_BASE=802000`, shrunk: after the first restore the phone writes
/// a contact, deletes it and adds two more; only the watch gets them all. The second restore
/// from the same backup loses them. In the final sync the relay gives the phone its lost first
/// contact and it re-issues the next after it; then the watch shows the branch that began with
/// the op just given up, and the three ops after it. Before, a branch holding an op given up
/// was an ordinary fork with nothing to take back: the delete and the two contacts never came
/// back, and the watch never converged. Now the ops the phone neither holds nor gave up come
/// back re-issued after its chain (fails "convergence" before the change).
#[test]
fn ops_after_a_branch_given_up_come_back_when_a_second_restore_lost_them() {
    let save = |replica: usize, given: &str| Action::Save {
        replica,
        edit: named(given),
    };
    let schedule = Schedule {
        storage: Storage::Disk,
        skews_ms: vec![0; 5],
        actions: [
            restored_phone(),
            vec![
                rename(1, "three, renamed"),
                sync(1, 2),
                Action::Save {
                    replica: 0,
                    edit: Edit::Delete { pick: 0 },
                },
                save(0, "a"),
                save(0, "a"),
                sync(0, 4),
                Action::Restore { replica: 0 },
            ],
        ]
        .concat(),
    };
    let stats = Sim::run(&schedule).unwrap_or_else(|v| panic!("{v}"));
    assert_eq!((stats.backups, stats.restores), (1, 2), "{stats:?}");
    assert_eq!(stats.lost_with_disk, 0, "the watch holds them: {stats:?}");
}

/// Seed 0xc9038's schedule with the laptop's last op an edit of its phone number instead of a
/// new contact: the phone gives the number back first, and the laptop re-issues it and gives
/// the original up (only its id kept); the tablet then gives the edit back, which continues
/// and replaces the given-up number. Its copy names the number's copy, so the number shows
/// the edit alone (before, it named none: the two copies stood side by side, a conflict).
#[test]
fn an_edit_given_back_after_what_it_replaced_was_re_issued_replaces_its_copy() {
    let schedule = Schedule {
        storage: Storage::Disk,
        skews_ms: vec![0; 4],
        actions: [
            restored_phone(),
            laptop_restored_after(Edit::EditItem {
                pick: 0,
                nth: 0,
                text: "b".into(),
            }),
        ]
        .concat(),
    };
    let stats = Sim::run(&schedule).unwrap_or_else(|v| panic!("{v}"));
    assert_eq!((stats.backups, stats.restores), (2, 2), "{stats:?}");
    assert_eq!(stats.conflicts, 0, "{stats:?}");
}

/// Seed 0xc393f of `CARDLOG_SIM_BASE=801000`, shrunk: the phone's edit reaches only the relay
/// before its disk is restored; its next contact reaches the laptop through the tablet, and
/// the laptop, holding the lost edit too, adds a phone number to that contact. When the
/// laptop syncs with the phone, the phone takes its edit back and withdraws the contact it
/// wrote after the restore, and with it the laptop's op built on it: the laptop's chain on the
/// phone now ends at its first op, whose signature the phone never had (the one it had was of
/// the op withdrawn). That is the state docs/SEMANTICS.md describes ("cannot be proved ...
/// until the author re-issues"), and `verify` must not call it a fault: the kept signature of
/// the withdrawn op still proves the ops below it. Before, the withdraw dropped that signature
/// and the crash's `verify` reported the laptop's chain as not covered.
#[test]
fn an_op_below_another_devices_withdrawn_edit_stays_covered_by_its_signature() {
    let save = |replica: usize, given: &str| Action::Save {
        replica,
        edit: named(given),
    };
    let schedule = Schedule {
        storage: Storage::Disk,
        skews_ms: vec![0; 4],
        actions: [
            restored_phone(),
            vec![
                rename(1, "three, renamed"),
                sync(1, 2),
                sync(3, 2),
                sync(1, 0),
                save(2, "a"),
                Action::Save {
                    replica: 2,
                    edit: Edit::AddItem {
                        pick: 2,
                        kind: 0,
                        text: "a".into(),
                    },
                },
                sync(0, 2),
                Action::Crash { replica: 0 },
            ],
        ]
        .concat(),
    };
    let mut story = String::new();
    let stats = Sim::new(&schedule)
        .and_then(|sim| {
            sim.execute_with(&schedule, |sim| {
                story = sim.story().join("\n");
                Ok(())
            })
        })
        .unwrap_or_else(|v| panic!("{v}"));
    // The schedule's shape: the laptop's item is on the phone's contact written after the
    // restore, and the crash's verify passed.
    assert!(
        story.contains("(#2): contact 2, saved") && story.contains("reopened, verify ok"),
        "{story}"
    );
    assert_eq!((stats.restores, stats.crashes), (1, 1), "{stats:?}");
}

/// Seed 0xc3988 of `CARDLOG_SIM_BASE=801000`, shrunk: the phone's edit reaches only the
/// laptop (in the session before the laptop's removal), and the removal and the edit are lost
/// with the phone's disk. After the restore the phone writes on. In the final sync the
/// laptop's hello shows the lost edit (the phone is marked restored), and the relay, which by
/// then holds the chain as the phone does, meets the phone before the laptop does again: it
/// must not clear the mark. When it did, the laptop marked the phone again at every meeting,
/// the edit never came back and the replicas never converged (fails on `eaccd98^`).
#[test]
fn a_lost_edit_held_by_one_peer_comes_back_though_the_relay_holds_the_chain_as_here() {
    let save = |replica: usize, given: &str| Action::Save {
        replica,
        edit: named(given),
    };
    let schedule = Schedule {
        storage: Storage::Disk,
        skews_ms: vec![0; 5],
        actions: vec![
            save(0, "a"),
            Action::Backup { replica: 0 },
            save(0, "a"),
            sync(3, 0),
            rename(0, "b"),
            Action::Leave { replica: 2 },
            Action::Restore { replica: 0 },
            save(0, "c"),
            Action::Sync {
                from: 4,
                to: 3,
                mode: SyncMode::Reordered(1_557_583_436_687_714_258),
            },
            save(0, "d"),
            rename(0, "e"),
            save(1, "b"),
        ],
    };
    let stats = Sim::run(&schedule).unwrap_or_else(|v| panic!("{v}"));
    assert_eq!((stats.backups, stats.restores), (1, 1), "{stats:?}");
    assert_eq!(
        stats.lost_with_disk, 0,
        "the laptop holds the edit: {stats:?}"
    );
}

/// Seed 0xbdbc4 of `CARDLOG_SIM_BASE=777000`: after the laptop's restore, the phone's item on
/// the laptop's lost contact waits for it (the chain forks between the two and is left out of
/// the reordered batch), and the phone's op below it waits too: the batch's signature of the
/// phone's chain is of the waiting op, and the receiver stores another device's ops only up
/// to one it can prove (docs/SYNC.md, "Signatures"). The reordered mode expects exactly that.
#[test]
fn a_reordered_sync_after_a_restore_stores_only_what_it_can_prove() {
    let schedule = Schedule {
        storage: Storage::Disk,
        skews_ms: vec![0; 4],
        actions: vec![
            Action::Backup { replica: 2 },
            Action::Save {
                replica: 2,
                edit: named("a"),
            },
            sync(2, 0),
            Action::Restore { replica: 2 },
            Action::Save {
                replica: 2,
                edit: named("a"),
            },
            Action::Save {
                replica: 0,
                edit: Edit::AddItem {
                    pick: 0,
                    kind: 0,
                    text: "a".into(),
                },
            },
            Action::Sync {
                from: 0,
                to: 2,
                mode: SyncMode::Reordered(0),
            },
        ],
    };
    if let Err(v) = Sim::run(&schedule) {
        panic!("{v}");
    }
}

#[test]
fn state_is_independent_of_sync_order() {
    explore(schedule(3..=5, 20..80, Storage::Memory), 64, |s| {
        synced(s, |sim| sim.check_order_independence())
    })
    .unwrap();
}

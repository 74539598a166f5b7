//! Withdrawing a branch of another device's chain takes what builds on it (docs/SEMANTICS.md,
//! "Edits made on a branch given up"): all of it, and nothing else.
#![allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    clippy::panic,
    clippy::expect_used
)]

mod common;

use cardlog_core::{DeviceId, Field};
use common::{new_store, sample, World, MIN_MS};

/// Device 1 adds a contact; device 2 renames it (building on it) and then saves `more` edits
/// of its own; device 3 edits another contact, building on nothing of theirs. The store holds
/// all of it.
fn built_on(more: usize) -> (tempfile::TempDir, cardlog_store::Store) {
    let mut w = World::new(3);
    let a = sample(1);
    let b = sample(2);
    w.devices[0].create(&a).unwrap();
    w.devices[2].create(&b).unwrap();
    w.sync(0, 1);
    w.advance(MIN_MS);
    w.devices[1]
        .edit(a.id, |c| {
            c.set(Field::Given, "renamed");
        })
        .unwrap();
    for n in 0..more {
        w.devices[1]
            .edit(a.id, |c| {
                c.set(Field::Note, format!("note {n}"));
            })
            .unwrap();
    }
    w.devices[2]
        .edit(b.id, |c| {
            c.set(Field::Note, "unrelated");
        })
        .unwrap();
    let (tmp, _, mut store) = new_store();
    store.apply_all(&w.all_ops()).unwrap();
    (tmp, store)
}

#[test]
fn a_withdraw_takes_what_builds_on_the_branch_and_nothing_else() {
    let (_tmp, mut store) = built_on(3);
    let (one, two, three) = (DeviceId([1; 16]), DeviceId([2; 16]), DeviceId([3; 16]));
    assert_eq!(store.built_on(&one, 1).unwrap().len(), 4);
    let before = store.summary().clone();
    let withdrawal = store.withdraw_from(&one, 1).unwrap();
    assert_eq!(
        withdrawal.ops.len(),
        5,
        "the branch and the rename with the rest"
    );
    assert_eq!(
        withdrawal.authors.into_iter().collect::<Vec<_>>(),
        [(two, 1)]
    );
    let after = store.summary();
    assert!(after.get(&one).is_none() && after.get(&two).is_none());
    assert_eq!(
        after.get(&three),
        before.get(&three),
        "device 3 built on nothing"
    );
    assert!(store.verify().unwrap().is_ok());
}

#[test]
fn a_withdraw_takes_however_much_others_built_on_it() {
    // No bound: what builds on a branch differs from one replica to the next, and every
    // replica must decide alike whether to withdraw it.
    let (_tmp, mut store) = built_on(1_100);
    let one = DeviceId([1; 16]);
    let withdrawal = store.withdraw_from(&one, 1).unwrap();
    assert_eq!(withdrawal.ops.len(), 1_102);
    assert!(store.verify().unwrap().is_ok());
}

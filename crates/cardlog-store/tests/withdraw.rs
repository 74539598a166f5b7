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
use cardlog_store::OpOutcome;
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

/// A withdrawn op whose record a cut log lost: once a rebuild accepts the shorter log, the op
/// appended where that record was is an op like any other, not one read as withdrawn (left out
/// of the index, of `ops` and of every later rebuild).
#[test]
fn an_op_appended_where_a_lost_withdrawn_record_was_is_kept() {
    let mut w = World::new(3);
    let (a, b) = (sample(1), sample(2));
    w.devices[0].create(&a).unwrap();
    w.sync(0, 1);
    w.advance(MIN_MS);
    w.devices[1]
        .edit(a.id, |c| {
            c.set(Field::Given, "renamed");
        })
        .unwrap();
    let (one, two) = (DeviceId([1; 16]), DeviceId([2; 16]));
    let (_tmp, dir, mut store) = new_store();
    let ops = w.all_ops();
    let (first, second): (Vec<_>, Vec<_>) = ops.into_iter().partition(|op| op.op().author == one);
    store.apply_all(&first).unwrap();
    let cut_at = store.log_len();
    store.apply_all(&second).unwrap();
    store.withdraw_from(&two, 1).unwrap();
    drop(store);
    // The log loses the withdrawn record: the registers cover more than it holds.
    let log = dir.join(cardlog_store::log::LOG_FILE);
    std::fs::OpenOptions::new()
        .write(true)
        .open(&log)
        .unwrap()
        .set_len(cut_at)
        .unwrap();
    let mut store = common::reopen(&dir);
    store.rebuild().unwrap();
    assert_eq!(store.log_len(), cut_at);
    // Device 3's contact goes where the withdrawn record was.
    let three = DeviceId([3; 16]);
    w.devices[2].create(&b).unwrap();
    let theirs: Vec<_> = w
        .all_ops()
        .into_iter()
        .filter(|op| op.op().author == three)
        .collect();
    store.apply_all(&theirs).unwrap();
    drop(store);
    let store = common::reopen(&dir);
    assert!(store.summary().contains_key(&three));
    let held: Vec<_> = store.ops().map(|op| op.unwrap().op().author).collect();
    assert!(
        held.contains(&three),
        "device 3's op is read back: {held:?}"
    );
    assert!(store.contact(&b.id).unwrap().is_some());
    assert!(store.verify().unwrap().is_ok());
}

/// Device 2's new contact and its edit of device 1's contact, signed once (at the edit), to a
/// store that lacks device 1's contact: the edit waits, and the contact with it, though the
/// batch brings the edit that proves it (a cover: docs/SYNC.md, "Signatures"). Only a removed
/// device's void ops go in with a cover (it never writes the signed op again; a member's next
/// ops prove its ops), so nothing is kept as a cover here; with device 1's contact both go in.
#[test]
fn a_members_ops_below_a_signed_op_that_waits_wait_with_it_beside_their_cover() {
    let mut w = World::new(2);
    let theirs = sample(1);
    let first = w.devices[0].create(&theirs).unwrap();
    w.sync(0, 1);
    let contact = w.devices[1].create(&sample(2)).unwrap();
    w.advance(MIN_MS);
    let edit = w.devices[1]
        .edit(theirs.id, |c| {
            c.set(Field::Note, "met at the conference");
        })
        .unwrap()
        .unwrap();
    let key = cardlog_core::DeviceKey::from_seed(&[2; 32]);
    let book = cardlog_core::BookId([0xb0; 16]);
    let tip = cardlog_core::SignedTip {
        author: edit.op().author,
        key: key.public(),
        seq: edit.op().seq,
        op: edit.id(),
        signature: key.sign_tip(&book, &edit.id()),
    };
    let two = DeviceId([2; 16]);
    let (_tmp, _dir, mut store) = new_store();
    let outcomes = store
        .apply_signed_strict(&[contact.clone(), edit.clone()], &[tip])
        .unwrap();
    assert!(
        outcomes.iter().all(|o| matches!(o, OpOutcome::Missing(_))),
        "{outcomes:?}"
    );
    assert!(store.summary().get(&two).is_none());
    assert!(store.cover(&two, 1, contact.id()).unwrap().is_none());
    assert_eq!(store.meta(cardlog_store::keys::meta::COVERS).unwrap(), None);
    let outcomes = store
        .apply_signed_strict(&[first, contact, edit.clone()], &[tip])
        .unwrap();
    assert!(
        outcomes.iter().all(|o| *o == OpOutcome::Stored),
        "{outcomes:?}"
    );
    assert_eq!(store.summary()[&two].op, edit.id());
}

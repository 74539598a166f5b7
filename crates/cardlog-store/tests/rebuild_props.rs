//! Property test of the store against core replay: random histories of 2–3 devices (create,
//! edit fields, items and tags, delete, restore, full and interrupted syncs, clock jumps) are
//! stored in shuffled random-sized `apply_all` chunks, with a rebuild midway; the store's state
//! bytes equal a `Replay`'s, survive `rebuild` byte for byte (twice), verify clean and survive a
//! reopen.
#![allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    clippy::panic,
    clippy::expect_used
)]

mod common;

use cardlog_core::seeded::shuffle;
use cardlog_core::{Contact, ContactId, Field, Item, ItemBody, ItemId, ItemKind, SealedOp};
use cardlog_store::OpOutcome;
use common::{apply_in_chunks, assert_same_as_replay, new_store, reopen, replay_of, World};
use proptest::prelude::*;

#[derive(Clone, Debug)]
enum Action {
    Edit {
        device: usize,
        contact: u8,
        edit: Edit,
    },
    Sync {
        a: usize,
        b: usize,
    },
    /// One-way push of only the first `n` missing ops (an interrupted sync).
    Partial {
        from: usize,
        to: usize,
        n: usize,
    },
    Tick {
        device: usize,
        ms: i64,
    },
}

#[derive(Clone, Debug)]
enum Edit {
    Set(usize, u8),
    Clear(usize),
    AddPhone(u8),
    RelabelFirstPhone(u8),
    RemoveFirstPhone,
    Tag(u8),
    Custom(u8),
    Delete,
    Restore,
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        4 => (0..4usize, 0..4u8).prop_map(|(f, v)| Edit::Set(f, v)),
        1 => (0..4usize).prop_map(Edit::Clear),
        2 => (0..4u8).prop_map(Edit::AddPhone),
        2 => (0..4u8).prop_map(Edit::RelabelFirstPhone),
        1 => Just(Edit::RemoveFirstPhone),
        1 => (0..3u8).prop_map(Edit::Tag),
        1 => (0..3u8).prop_map(Edit::Custom),
        2 => Just(Edit::Delete),
        2 => Just(Edit::Restore),
    ]
}

fn action() -> impl Strategy<Value = Action> {
    prop_oneof![
        6 => (0..3usize, 0..3u8, edit())
            .prop_map(|(device, contact, edit)| Action::Edit { device, contact, edit }),
        2 => (0..3usize, 0..3usize).prop_map(|(a, b)| Action::Sync { a, b }),
        1 => (0..3usize, 0..3usize, 0..4usize)
            .prop_map(|(from, to, n)| Action::Partial { from, to, n }),
        2 => (0..3usize, -120_000..600_000i64).prop_map(|(device, ms)| Action::Tick { device, ms }),
    ]
}

/// Runs `actions` on `devices` devices (actions naming a device beyond them act on
/// `device % devices`) and returns every op made, dependencies first.
fn history(devices: u8, actions: &[Action]) -> Vec<SealedOp> {
    let n = usize::from(devices);
    let mut w = World::new(devices);
    let mut next_item = 0u64;
    for action in actions {
        match action {
            Action::Edit {
                device,
                contact,
                edit,
            } => {
                next_item += 1;
                run_edit(
                    &mut w,
                    device % n,
                    ContactId([*contact; 16]),
                    edit,
                    ItemId(u128::from(next_item).to_le_bytes()),
                );
            }
            Action::Sync { a, b } => {
                if a % n != b % n {
                    w.sync(a % n, b % n);
                }
            }
            Action::Partial { from, to, n: k } => {
                if from % n != to % n {
                    w.push_some(from % n, to % n, *k);
                }
            }
            Action::Tick { device, ms } => w.clocks[device % n].advance_ms(*ms),
        }
    }
    w.all_ops()
}

fn run_edit(w: &mut World, device: usize, id: ContactId, edit: &Edit, item: ItemId) {
    let d = &mut w.devices[device];
    let Some(view) = d.contact(&id) else {
        let mut c = Contact::new(id);
        c.set(Field::Given, format!("c{}", id.0[0]));
        d.create(&c).unwrap();
        return;
    };
    // Deleting a deleted contact or restoring a visible one is refused; that is fine here.
    let _ = match edit {
        Edit::Delete => d.delete(id).map(Some),
        Edit::Restore => d.restore(id).map(Some),
        _ if view.deleted => return,
        other => d.edit(id, |c| match other {
            Edit::Set(f, v) => {
                c.set(Field::ALL[*f], format!("v{v}"));
            }
            Edit::Clear(f) => {
                c.set(Field::ALL[*f], "");
            }
            Edit::AddPhone(v) => c.phones.push(Item {
                id: item,
                label: String::new(),
                body: ItemBody::Text(format!("+{v}")),
            }),
            Edit::RelabelFirstPhone(v) => {
                if let Some(p) = c.phones.first_mut() {
                    p.label = format!("l{v}");
                }
            }
            Edit::RemoveFirstPhone => {
                if let Some(p) = c.phones.first().map(|p| p.id) {
                    c.remove_item(ItemKind::Phone, p);
                }
            }
            Edit::Tag(t) => {
                let t = format!("t{t}");
                if !c.tags.remove(&t) {
                    c.tags.insert(t);
                }
            }
            Edit::Custom(v) => {
                c.custom.insert("X-N".into(), format!("{v}"));
            }
            Edit::Delete | Edit::Restore => {}
        }),
    };
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]

    #[test]
    fn store_matches_replay_and_rebuild_changes_no_byte(
        devices in 2..4u8,
        actions in proptest::collection::vec(action(), 1..30),
        seed in any::<u64>(),
        sizes in proptest::collection::vec(1..8usize, 1..6),
        split_per_mille in 0..1000usize,
    ) {
        let ops = history(devices, &actions);
        let reference = replay_of(&ops);
        let mut shuffled = ops.clone();
        shuffle(&mut shuffled, seed);
        let (_tmp, dir, mut store) = new_store();

        // A first part, offered once (ops whose dependencies are later stay out), then a
        // rebuild in the middle of the history.
        let split = shuffled.len() * split_per_mille / 1000;
        let outcomes = store.apply_all(&shuffled[..split]).unwrap();
        prop_assert!(outcomes.iter().all(|o| !matches!(o, OpOutcome::Refused(_))));
        let partial = store.state_bytes().unwrap();
        prop_assert_eq!(store.rebuild().unwrap(), store.op_count());
        prop_assert_eq!(store.state_bytes().unwrap(), partial);
        prop_assert!(store.verify().unwrap().is_ok());

        // Then everything, in random-sized chunks.
        apply_in_chunks(&mut store, &shuffled, &sizes);
        prop_assert_eq!(store.op_count(), ops.len() as u64);
        let before = store.state_bytes().unwrap();
        prop_assert_eq!(&before, &reference.state_bytes());

        prop_assert_eq!(store.rebuild().unwrap(), ops.len() as u64);
        prop_assert_eq!(&store.state_bytes().unwrap(), &before);
        let report = store.verify().unwrap();
        prop_assert!(report.is_ok(), "{:?}", report.problems);
        prop_assert_eq!(report.ops, ops.len() as u64);

        prop_assert_eq!(store.rebuild().unwrap(), ops.len() as u64);
        prop_assert_eq!(&store.state_bytes().unwrap(), &before);
        assert_same_as_replay(&store, &reference);

        drop(store);
        prop_assert_eq!(reopen(&dir).state_bytes().unwrap(), before);
    }
}

#[test]
fn state_bytes_see_one_more_edit() {
    // The witness compared above is not blind: one more op changes the store's state bytes.
    let actions = [
        Action::Edit {
            device: 0,
            contact: 1,
            edit: Edit::Set(0, 0),
        },
        Action::Edit {
            device: 0,
            contact: 1,
            edit: Edit::Set(1, 1),
        },
    ];
    let ops = history(2, &actions);
    assert_eq!(ops.len(), 2);
    let (_tmp, _dir, mut store) = new_store();
    store.apply(&ops[0]).unwrap();
    let before = store.state_bytes().unwrap();
    store.rebuild().unwrap();
    assert_eq!(store.state_bytes().unwrap(), before);
    store.apply(&ops[1]).unwrap();
    assert_ne!(store.state_bytes().unwrap(), before);
}

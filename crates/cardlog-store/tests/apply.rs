//! Applying ops to a store: a multi-device history stored one op at a time or all at once in
//! shuffled order reads exactly like a core `Replay` of the same ops (state bytes, contacts,
//! conflicts, history, paths, summary, ops), also after a reopen; `apply_all` reports
//! duplicates, missing dependencies and forks per op and stores the rest; `ops_since` returns
//! exactly what a peer lacks, dependencies first.
#![allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    clippy::panic,
    clippy::expect_used
)]

mod common;

use std::collections::{BTreeMap, HashSet, VecDeque};

use cardlog_core::replay::{ChainTip, Readiness};
use cardlog_core::seeded::shuffle;
use cardlog_core::{
    ContactId, Device, DeviceId, Field, InsertOutcome, Missing, OpId, Path, Replay, ReplayError,
    SealedOp,
};
use cardlog_store::{Database, Keeps, OpOutcome, Store, StoreError, StoreOptions};
use common::{
    assert_same_as_replay, has_backdated_replace, new_store, reopen, replay_of, sample,
    scripted_world, World, MIN_MS,
};

/// The scripted history's ops (dependencies first) and their replay.
fn scripted() -> (Vec<SealedOp>, Replay) {
    let ops = scripted_world().all_ops();
    let replay = replay_of(&ops);
    (ops, replay)
}

#[test]
fn scripted_history_exercises_conflicts_deletes_and_backdated_replaces() {
    // Guards the equivalence tests below against comparing trivial states.
    let (ops, replay) = scripted();
    assert!(ops.len() >= 15, "{} ops", ops.len());
    assert_eq!(replay.summary().len(), 3);
    let conflicted: HashSet<Path> = replay
        .conflicts()
        .into_iter()
        .map(|(_, c)| c.path)
        .collect();
    assert!(conflicted.contains(&Path::Field(Field::Title)));
    assert!(conflicted.contains(&Path::Custom("X-SHOE-SIZE".into())));
    let all = replay.contacts(true);
    let visible = replay.contacts(false);
    assert_eq!(all.len(), 4);
    assert!(visible.len() < all.len(), "no contact is deleted");
    let restored = replay.contact(&sample(3).id).unwrap();
    assert!(!restored.deleted);
    assert_eq!(restored.contact.get(Field::Note), Some("restored"));
    assert!(replay.history(&sample(3).id, &Path::Exists).len() >= 3);
    assert!(has_backdated_replace(&ops));
}

#[test]
fn ops_applied_one_by_one_read_like_replay_also_after_reopen() {
    let (ops, replay) = scripted();
    let (_tmp, dir, mut store) = new_store();
    for op in &ops {
        assert_eq!(store.apply(op).unwrap(), Readiness::Ready);
    }
    assert_same_as_replay(&store, &replay);
    store.flush().unwrap();
    drop(store);
    assert_same_as_replay(&reopen(&dir), &replay);
}

#[test]
fn history_read_midway_stays_whole_as_more_ops_arrive() {
    // The first history builds the by-contact index from the log; every apply after it
    // keeps it up to date, so later histories hold the later writes too.
    let (ops, replay) = scripted();
    let (_tmp, _dir, mut store) = new_store();
    let (first, rest) = ops.split_at(ops.len() / 2);
    store.apply_all(first).unwrap();
    let contact = first
        .iter()
        .find_map(|op| op.op().writes.first().map(|w| w.contact))
        .unwrap();
    assert!(!store.history(&contact, &Path::Exists).unwrap().is_empty());
    for op in rest {
        assert_eq!(store.apply(op).unwrap(), Readiness::Ready);
    }
    assert_same_as_replay(&store, &replay);
}

#[test]
fn ops_applied_one_by_one_in_shuffled_order_read_like_replay() {
    // Each op is offered alone; one that misses a dependency is offered again later.
    let (ops, replay) = scripted();
    for seed in [1u64, 7, 0xdead_beef] {
        let (_tmp, _dir, mut store) = new_store();
        let mut queue: VecDeque<SealedOp> = {
            let mut v = ops.clone();
            shuffle(&mut v, seed);
            v.into()
        };
        let mut offers = 0;
        let mut missed = 0;
        while let Some(op) = queue.pop_front() {
            offers += 1;
            assert!(offers < ops.len() * ops.len(), "no progress");
            match store.apply(&op).unwrap() {
                Readiness::Ready => {}
                Readiness::Missing(_) => {
                    assert_eq!(store.op(&op.id()).unwrap(), None);
                    missed += 1;
                    queue.push_back(op);
                }
                Readiness::Duplicate => panic!("op {} offered once yet duplicate", op.id()),
            }
        }
        assert!(missed > 0, "seed {seed}: the shuffle delivered in order");
        assert_same_as_replay(&store, &replay);
    }
}

#[test]
fn shuffled_ops_in_one_apply_all_are_all_stored_and_read_like_replay() {
    let (ops, replay) = scripted();
    for seed in [3u64, 11, 0x1234_5678_9abc] {
        let mut shuffled = ops.clone();
        shuffle(&mut shuffled, seed);
        let (_tmp, dir, mut store) = new_store();
        let outcomes = store.apply_all(&shuffled).unwrap();
        assert_eq!(outcomes, vec![OpOutcome::Stored; ops.len()]);
        assert_same_as_replay(&store, &replay);
        store.flush().unwrap();
        drop(store);
        assert_same_as_replay(&reopen(&dir), &replay);
    }
}

#[test]
fn ops_applied_in_small_chunks_read_like_replay() {
    let (mut ops, replay) = scripted();
    shuffle(&mut ops, 99);
    for chunk in [1, 2, 5] {
        let (_tmp, _dir, mut store) = new_store();
        common::apply_in_chunks(&mut store, &ops, &[chunk]);
        assert_same_as_replay(&store, &replay);
    }
}

#[test]
fn a_contact_never_written_reads_as_absent() {
    let (ops, _) = scripted();
    let (_tmp, _dir, mut store) = new_store();
    store.apply_all(&ops).unwrap();
    let never = ContactId([0xee; 16]);
    assert_eq!(store.contact(&never).unwrap(), None);
    assert!(store.paths(&never).unwrap().is_empty());
    assert!(store.history(&never, &Path::Exists).unwrap().is_empty());
    assert_eq!(store.op(&OpId([0xee; 32])).unwrap(), None);
}

#[test]
fn duplicates_are_reported_and_change_nothing() {
    let (ops, replay) = scripted();
    let (_tmp, _dir, mut store) = new_store();
    let half = ops.len() / 2;
    assert_eq!(
        store.apply_all(&ops[..half]).unwrap(),
        vec![OpOutcome::Stored; half]
    );
    let before = store.state_bytes().unwrap();
    assert_eq!(store.apply(&ops[0]).unwrap(), Readiness::Duplicate);
    assert_eq!(
        store.apply_all(&ops[..half]).unwrap(),
        vec![OpOutcome::Duplicate; half]
    );
    assert_eq!(store.state_bytes().unwrap(), before);
    assert_eq!(store.op_count(), half as u64);

    // Everything, with the second half given twice in the same call.
    let mut again: Vec<SealedOp> = ops.clone();
    again.extend_from_slice(&ops[half..]);
    let outcomes = store.apply_all(&again).unwrap();
    for (i, outcome) in outcomes.iter().enumerate() {
        let first_copy_of_new = (half..ops.len()).contains(&i);
        let expected = if first_copy_of_new {
            OpOutcome::Stored
        } else {
            OpOutcome::Duplicate
        };
        assert_eq!(outcome, &expected, "op {i}");
    }
    assert_same_as_replay(&store, &replay);
}

#[test]
fn an_op_without_its_chain_predecessor_is_missing_and_not_stored() {
    let mut w = World::new(2);
    let c = sample(1);
    let first = w.devices[0].create(&c).unwrap();
    w.clocks[0].advance_ms(MIN_MS);
    let second = w.devices[0]
        .edit(c.id, |c| {
            c.set(Field::Org, "Org");
        })
        .unwrap()
        .unwrap();
    let third = w.devices[0].delete(c.id).unwrap();
    let other = w.devices[1].create(&sample(2)).unwrap();

    let (_tmp, _dir, mut store) = new_store();
    let outcomes = store.apply_all(&[third.clone(), other.clone()]).unwrap();
    let author = w.devices[0].id();
    assert_eq!(
        outcomes,
        vec![
            OpOutcome::Missing(Missing::Chain { author, seq: 2 }),
            OpOutcome::Stored
        ]
    );
    assert_eq!(store.op(&third.id()).unwrap(), None);
    assert_eq!(store.contact(&c.id).unwrap(), None);
    assert!(!store.summary().contains_key(&author));
    assert_eq!(store.op_count(), 1);
    assert_eq!(
        store.apply(&second).unwrap(),
        Readiness::Missing(Missing::Chain { author, seq: 1 })
    );
    assert!(store.verify().unwrap().is_ok());

    // Once the predecessors come, the chain is stored.
    assert_eq!(
        store.apply_all(&[third.clone(), second, first]).unwrap(),
        vec![OpOutcome::Stored; 3]
    );
    assert_eq!(store.summary()[&author].op, third.id());
    assert!(store.contact(&c.id).unwrap().unwrap().deleted);
}

/// Device 1 creates a contact of its own and edits one device 0 created: the world, that
/// contact, its creation, device 1's creation and the edit.
fn edit_of_anothers_contact() -> (World, cardlog_core::Contact, SealedOp, SealedOp, SealedOp) {
    let mut w = World::new(2);
    let c = sample(1);
    let created = w.devices[0].create(&c).unwrap();
    let own = w.devices[1].create(&sample(2)).unwrap();
    w.sync(0, 1);
    w.advance(MIN_MS);
    let edit = w.devices[1]
        .edit(c.id, |c| {
            c.set(Field::Given, "Changed");
        })
        .unwrap()
        .unwrap();
    (w, c, created, own, edit)
}

#[test]
fn an_op_without_the_write_it_replaces_is_missing_and_not_stored() {
    // Device 1 edits a contact it got from device 0; the store has device 1's chain but not
    // device 0's creation.
    let (w, c, created, own, edit) = edit_of_anothers_contact();

    let (_tmp, _dir, mut store) = new_store();
    let outcomes = store.apply_all(&[edit.clone(), own.clone()]).unwrap();
    assert_eq!(
        outcomes,
        vec![
            OpOutcome::Missing(Missing::Op(created.id())),
            OpOutcome::Stored
        ]
    );
    assert_eq!(store.op(&edit.id()).unwrap(), None);
    assert_eq!(store.contact(&c.id).unwrap(), None);
    assert_eq!(store.summary()[&w.devices[1].id()].seq, 1);
    assert_eq!(store.apply(&created).unwrap(), Readiness::Ready);
    assert_eq!(store.apply(&edit).unwrap(), Readiness::Ready);
    assert_eq!(
        store
            .contact(&c.id)
            .unwrap()
            .unwrap()
            .contact
            .get(Field::Given),
        Some("Changed")
    );
}

#[test]
fn a_fork_is_refused_whole_and_the_other_ops_of_the_call_are_stored() {
    // Two devices that (wrongly) share one replica id both write seq 1 and 2.
    let clock = std::sync::Arc::new(cardlog_core::FakeClock::new(common::NINE_MS));
    let twin = DeviceId([9; 16]);
    let mut left = Device::new(twin, clock.clone());
    let mut right = Device::new(twin, clock.clone());
    let mut bystander = Device::new(DeviceId([3; 16]), clock.clone());
    let left_1 = left.create(&sample(1)).unwrap();
    clock.advance_ms(MIN_MS);
    let right_1 = right.create(&sample(2)).unwrap();
    clock.advance_ms(MIN_MS);
    let right_2 = right.create(&sample(4)).unwrap();
    let other = bystander.create(&sample(3)).unwrap();
    assert_ne!(left_1.id(), right_1.id());

    let (_tmp, _dir, mut store) = new_store();
    let outcomes = store
        .apply_all(&[
            right_1.clone(),
            other.clone(),
            left_1.clone(),
            right_2.clone(),
        ])
        .unwrap();
    // The earlier timestamp (left's) takes seq 1; right's seq 1 is a fork and its seq 2 names a
    // predecessor the store does not have.
    assert_eq!(outcomes[1], OpOutcome::Stored);
    assert_eq!(outcomes[2], OpOutcome::Stored);
    match &outcomes[0] {
        OpOutcome::Refused(e) => assert_eq!(
            **e,
            ReplayError::Fork {
                author: twin,
                seq: 1,
                existing: left_1.id(),
                incoming: right_1.id(),
            }
        ),
        o => panic!("{o:?}"),
    }
    assert!(
        matches!(&outcomes[3], OpOutcome::Refused(e) if matches!(**e, ReplayError::ChainMismatch { seq: 2, .. })),
        "{:?}",
        outcomes[3]
    );
    for refused in [&right_1, &right_2] {
        assert_eq!(store.op(&refused.id()).unwrap(), None);
    }
    for contact in [sample(2).id, sample(4).id] {
        assert_eq!(store.contact(&contact).unwrap(), None);
        assert!(store.paths(&contact).unwrap().is_empty());
    }
    assert!(store.contact(&sample(1).id).unwrap().is_some());
    assert!(store.contact(&sample(3).id).unwrap().is_some());
    assert_eq!(store.op_count(), 2);
    assert_eq!(store.summary()[&twin].op, left_1.id());
    assert_same_as_replay(&store, &replay_of(&[left_1, other]));

    // Alone, the fork is an error of `apply`, and still nothing is stored.
    let before = store.state_bytes().unwrap();
    let err = store.apply(&right_1).unwrap_err();
    assert!(
        matches!(&err, StoreError::Refused(e) if matches!(**e, ReplayError::Fork { seq: 1, .. })),
        "{err:?}"
    );
    assert_eq!(store.state_bytes().unwrap(), before);
    assert_eq!(store.op_count(), 2);
}

#[test]
fn apply_all_strict_stores_nothing_when_one_op_is_refused() {
    let clock = std::sync::Arc::new(cardlog_core::FakeClock::new(common::NINE_MS));
    let twin = DeviceId([9; 16]);
    let mut left = Device::new(twin, clock.clone());
    let mut right = Device::new(twin, clock.clone());
    let mut bystander = Device::new(DeviceId([3; 16]), clock.clone());
    let left_1 = left.create(&sample(1)).unwrap();
    clock.advance_ms(MIN_MS);
    let right_1 = right.create(&sample(2)).unwrap();
    let other = bystander.create(&sample(3)).unwrap();
    let waiting = {
        clock.advance_ms(MIN_MS);
        bystander.create(&sample(4)).unwrap();
        clock.advance_ms(MIN_MS);
        bystander.create(&sample(5)).unwrap()
    };

    let (_tmp, _dir, mut store) = new_store();
    let err = store
        .apply_all_strict(&[other.clone(), left_1.clone(), right_1.clone()])
        .unwrap_err();
    assert!(
        matches!(&err, StoreError::Refused(e) if matches!(**e, ReplayError::Fork { seq: 1, .. })),
        "{err:?}"
    );
    assert_eq!(store.op_count(), 0);
    assert!(store.summary().is_empty());
    assert!(store.contacts(true).unwrap().is_empty());
    for op in [&other, &left_1, &right_1] {
        assert_eq!(store.op(&op.id()).unwrap(), None);
    }
    assert!(store.verify().unwrap().is_ok());

    // Without a refusal it stores what it can and reports the rest, like apply_all.
    let outcomes = store
        .apply_all_strict(&[left_1.clone(), waiting.clone(), other.clone()])
        .unwrap();
    assert_eq!(outcomes[0], OpOutcome::Stored);
    assert_eq!(
        outcomes[1],
        OpOutcome::Missing(Missing::Chain {
            author: DeviceId([3; 16]),
            seq: 2
        })
    );
    assert_eq!(outcomes[2], OpOutcome::Stored);
    assert_eq!(
        store
            .apply_all_strict(std::slice::from_ref(&other))
            .unwrap(),
        vec![OpOutcome::Duplicate]
    );
    assert_same_as_replay(&store, &replay_of(&[left_1, other]));
}

/// A device whose clock was a day ahead and was set right stamps its next edit earlier than
/// the last: the chain orders an author's ops, not their timestamps (docs/SEMANTICS.md,
/// "Time"), so the store takes it like any op and gives replay's state.
#[test]
fn an_op_stamped_before_its_predecessor_is_stored() {
    let mut w = World::new(1);
    let c = sample(1);
    w.advance(86_400_000);
    let first = w.devices[0].create(&c).unwrap();
    w.advance(-86_400_000 + MIN_MS);
    let second = w.devices[0]
        .edit(c.id, |c| {
            c.set(Field::Org, "Org");
        })
        .unwrap()
        .unwrap();
    assert!(second.op().hlc < first.op().hlc);

    let (_tmp, _dir, mut store) = new_store();
    store.apply(&first).unwrap();
    assert_eq!(store.apply(&second).unwrap(), Readiness::Ready);
    assert_same_as_replay(&store, &replay_of(&[first, second]));
}

#[test]
fn a_reversed_chain_in_one_call_is_stored_completely() {
    let mut w = World::new(1);
    let c = sample(1);
    let mut chain = vec![w.devices[0].create(&c).unwrap()];
    for i in 0..7 {
        w.advance(MIN_MS);
        chain.push(
            w.devices[0]
                .edit(c.id, |c| {
                    c.set(Field::Note, format!("note {i}"));
                })
                .unwrap()
                .unwrap(),
        );
    }
    let mut reversed = chain.clone();
    reversed.reverse();
    let (_tmp, _dir, mut store) = new_store();
    assert_eq!(
        store.apply_all(&reversed).unwrap(),
        vec![OpOutcome::Stored; chain.len()]
    );
    let head = store.summary()[&w.devices[0].id()];
    assert_eq!(
        head,
        ChainTip {
            seq: 8,
            op: chain[7].id(),
            hlc: chain[7].op().hlc
        }
    );
    assert_same_as_replay(&store, w.devices[0].replay());
}

/// A peer's summary, read from a replay (the one summary shape).
fn chain_tips(replay: &Replay) -> BTreeMap<DeviceId, ChainTip> {
    replay.summary()
}

/// Applies `sent` to `peer` in order: every op must apply at once, none may wait.
fn receive_in_order(peer: &mut Replay, sent: &[SealedOp]) {
    for op in sent {
        match peer.insert(op.clone()).unwrap() {
            InsertOutcome::Applied { applied, rejected } => {
                assert_eq!(applied, vec![op.id()], "op {} unblocked others", op.id());
                assert!(rejected.is_empty());
            }
            other => panic!("op {} not applied at once: {other:?}", op.id()),
        }
    }
    assert_eq!(peer.waiting().count(), 0);
}

#[test]
fn ops_since_returns_exactly_what_a_peer_lacks_in_dependency_order() {
    let (ops, replay) = scripted();
    let mut shuffled = ops.clone();
    shuffle(&mut shuffled, 5);
    let (_tmp, _dir, mut store) = new_store();
    store.apply_all(&shuffled).unwrap();

    // Peers that hold a prefix of the history: nothing, some, all of it.
    for known in [0, 1, ops.len() / 3, ops.len() / 2, ops.len() - 1, ops.len()] {
        let mut peer = replay_of(&ops[..known]);
        let sent = store.ops_since(&chain_tips(&peer)).unwrap();
        let sent_ids: HashSet<OpId> = sent.iter().map(SealedOp::id).collect();
        let expected: HashSet<OpId> = ops[known..].iter().map(SealedOp::id).collect();
        assert_eq!(sent.len(), ops.len() - known, "peer knows {known}");
        assert_eq!(sent_ids, expected, "peer knows {known}");
        receive_in_order(&mut peer, &sent);
        assert_eq!(peer.state_bytes(), replay.state_bytes());
    }
}

/// `offsets_since` lists where `ops_since`'s ops are, in the same order, and `ops_at_offsets`
/// reads them back in any grouping; an offset where none of the store's ops starts is an
/// error, never a misread op.
#[test]
fn offsets_since_reads_back_as_ops_since_and_refuses_other_offsets() {
    let (ops, _replay) = scripted();
    let (_tmp, _dir, mut store) = new_store();
    store.apply_all(&ops).unwrap();
    for known in [0, ops.len() / 2, ops.len()] {
        let peer = chain_tips(&replay_of(&ops[..known]));
        let offsets = store.offsets_since(&peer).unwrap();
        let whole = store.ops_since(&peer).unwrap();
        assert_eq!(offsets.len(), whole.len());
        for size in [1, 3, offsets.len().max(1)] {
            let mut paged = Vec::new();
            for group in offsets.chunks(size) {
                paged.extend(store.ops_at_offsets(group).unwrap());
            }
            assert_eq!(paged, whole, "peer knows {known}, groups of {size}");
        }
    }
    let all = store.offsets_since(&BTreeMap::new()).unwrap();
    let end = store.log_len();
    for bad in [all[1] + 1, all[1] - 1, end, end + 100, u64::MAX] {
        assert!(
            store.ops_at_offsets(&[all[0], bad]).is_err(),
            "offset {bad}"
        );
    }
}

#[test]
fn ops_since_serves_each_device_of_the_history() {
    // The devices' own partial views (each missed some ops of the others).
    let w = scripted_world();
    let ops = w.all_ops();
    let replay = replay_of(&ops);
    let (_tmp, _dir, mut store) = new_store();
    store.apply_all(&ops).unwrap();
    let mut lacking = 0;
    for d in &w.devices {
        let mut peer = d.replay().clone();
        let sent = store.ops_since(&chain_tips(&peer)).unwrap();
        let expected: HashSet<OpId> = ops
            .iter()
            .map(SealedOp::id)
            .filter(|id| !peer.contains(id))
            .collect();
        assert_eq!(
            sent.iter().map(SealedOp::id).collect::<HashSet<_>>(),
            expected
        );
        assert_eq!(sent.len(), expected.len());
        lacking += sent.len();
        receive_in_order(&mut peer, &sent);
        assert_eq!(peer.state_bytes(), replay.state_bytes());
    }
    assert!(lacking > 0, "every device already had everything");
}

#[test]
fn ops_since_ignores_authors_the_store_does_not_know_and_peers_ahead() {
    let (ops, replay) = scripted();
    let (_tmp, _dir, mut store) = new_store();
    store.apply_all(&ops).unwrap();
    let mut summary = chain_tips(&replay);
    assert!(store.ops_since(&summary).unwrap().is_empty());
    summary.insert(
        DeviceId([0x77; 16]),
        ChainTip {
            seq: 5,
            op: OpId([0x77; 32]),
            hlc: cardlog_core::Hlc::default(),
        },
    );
    assert!(store.ops_since(&summary).unwrap().is_empty());
    // A peer that has more of an author than the store gets nothing of that author.
    let author = DeviceId([1; 16]);
    summary.get_mut(&author).unwrap().seq += 10;
    assert!(store.ops_since(&summary).unwrap().is_empty());
}

#[test]
fn an_empty_store_has_nothing_to_send_and_an_empty_state() {
    let (_tmp, _dir, store) = new_store();
    assert!(store.ops_since(&BTreeMap::new()).unwrap().is_empty());
    assert_eq!(store.state_bytes().unwrap(), Replay::new().state_bytes());
    assert!(store.conflicts().unwrap().is_empty());
    assert_eq!(store.ops().count(), 0);
}

/// The store holds register changes back from sled (up to 1,024 ops, then one batch): reads in
/// between see every applied op, state after each batch boundary and after the flush equals a
/// replay's, and a store dropped without a flush (its drop writes them) reopens with
/// everything. The reopen that has to replay them is in faults.rs.
#[test]
fn held_back_registers_read_like_written_ones_across_batches() {
    let mut w = common::World::new(2);
    let a = common::sample(1);
    let b = common::sample(2);
    w.devices[0].create(&a).unwrap();
    w.devices[1].create(&b).unwrap();
    w.sync(0, 1);
    for i in 0..1_300u32 {
        let (dev, id) = if i % 3 == 0 { (1, b.id) } else { (0, a.id) };
        let field = if i % 2 == 0 {
            Field::Title
        } else {
            Field::Note
        };
        w.devices[dev]
            .edit(id, |c| {
                c.set(field, format!("v{i}"));
            })
            .unwrap();
    }
    w.sync(0, 1);
    let ops: Vec<SealedOp> = w.devices[0].replay().ops_in_order().cloned().collect();
    assert!(ops.len() > 1_300);

    let (_tmp, dir, mut store) = common::new_store();
    let mut replay = Replay::new();
    for (n, op) in ops.iter().enumerate() {
        assert_eq!(store.apply(op).unwrap(), Readiness::Ready);
        replay.insert(op.clone()).unwrap();
        // Before, at and after the first batch boundary, and at the end.
        if [1, 500, 1_023, 1_024, 1_025, 1_200, ops.len() - 1].contains(&n) {
            assert_eq!(
                store.state_bytes().unwrap(),
                replay.state_bytes(),
                "after {n}"
            );
            assert_eq!(store.contacts(true).unwrap(), replay.contacts(true));
        }
    }
    // Not flushed nor settled: verify reads the held-back registers too.
    let report = store.verify().unwrap();
    assert!(report.is_ok(), "{:?}", report.problems);
    drop(store);
    let mut store = common::reopen(&dir);
    // The drop wrote them: nothing was left for the reopen to replay.
    assert_eq!(store.recovery().tail_ops, 0);
    common::assert_same_as_replay(&store, &replay);

    // All in one call, rebuilt while still held back (rebuild writes them first), flushed,
    // then settled: the same.
    let (_tmp2, dir2, mut other) = common::new_store();
    other.apply_all(&ops).unwrap();
    assert_eq!(other.rebuild().unwrap(), ops.len() as u64);
    common::assert_same_as_replay(&other, &replay);
    other.flush().unwrap();
    other.settle().unwrap();
    common::assert_same_as_replay(&other, &replay);
    drop(other);
    common::assert_same_as_replay(&common::reopen(&dir2), &replay);
    assert_eq!(store.rebuild().unwrap(), ops.len() as u64);
    common::assert_same_as_replay(&store, &replay);
}

#[test]
fn a_store_keeping_ops_only_checks_and_passes_on_every_op_and_keeps_no_contact_state() {
    let (ops, replay) = scripted();
    assert!(has_backdated_replace(&ops));
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("relay-book");
    let options = StoreOptions {
        database: Database::Journal,
        keeps: Keeps::OpsOnly,
        ..common::options()
    };
    let mut store = Store::create(&dir, &options).unwrap();
    assert_eq!(store.keeps(), Keeps::OpsOnly);
    // Checked as a device checks them: an edit whose replaced write is absent waits for it.
    // (In a store of its own: these devices' chains are not the scripted world's.)
    let (_, _, created, own, edit) = edit_of_anothers_contact();
    let other = tempfile::tempdir().unwrap();
    let mut check = Store::create(&other.path().join("book"), &options).unwrap();
    assert_eq!(
        check.apply_all(&[edit, own]).unwrap(),
        vec![
            OpOutcome::Missing(Missing::Op(created.id())),
            OpOutcome::Stored
        ]
    );
    drop(check);
    let mut shuffled = ops.clone();
    shuffle(&mut shuffled, 7);
    common::apply_in_chunks(&mut store, &shuffled, &[3, 1, 5]);
    assert_eq!(common::summary_of(&store), replay.summary().clone());
    // No contact is read from it, and it holds no register, name index entry or width.
    assert!(matches!(
        store.contact(&ContactId([1; 16])),
        Err(StoreError::OpsOnly)
    ));
    assert!(matches!(store.contacts(true), Err(StoreError::OpsOnly)));
    assert!(matches!(store.state_digest(), Err(StoreError::OpsOnly)));
    assert!(matches!(
        store.contacts_page(&cardlog_core::ContactQuery::default()),
        Err(StoreError::OpsOnly)
    ));
    assert_eq!(store.verify().unwrap().problems, Vec::<String>::new());
    assert_eq!(store.rebuild().unwrap(), ops.len() as u64);
    drop(store);
    let pairs = cardlog_store::state::JournalKv::read_dir(&dir.join("db"))
        .unwrap()
        .pairs;
    for k in pairs.keys() {
        assert!(
            ![b'c', b'n', b'N', b'w'].contains(&k[0]),
            "contact state kept: {k:?}"
        );
    }
    assert!(pairs.keys().any(|k| k[0] == b'a'));
    // Reopened, it passes every op on: a device given them reads as the replay does.
    let store = Store::open(&dir, &common::options()).unwrap();
    assert_eq!(store.keeps(), Keeps::OpsOnly);
    assert_eq!(store.verify().unwrap().problems, Vec::<String>::new());
    let passed = store.ops_since(&Default::default()).unwrap();
    assert_eq!(passed.len(), ops.len());
    drop(store);
    let (_tmp2, _dir2, mut device) = new_store();
    assert!(device
        .apply_all(&passed)
        .unwrap()
        .iter()
        .all(|o| *o == OpOutcome::Stored));
    assert_same_as_replay(&device, &replay);
    // Read from its log alone, writing nothing, its contacts are there.
    assert_same_as_replay(&Store::open_read_only(&dir).unwrap(), &replay);
}

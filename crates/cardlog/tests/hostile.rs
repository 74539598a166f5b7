//! Hostile peers, beyond what tests/sync.rs covers (damaged bytes, forged content, huge
//! lengths, trickling and silent peers): an earlier session's messages and old bundles replayed
//! after more edits and a resolve, alone or mixed with new ops, store nothing new and lose
//! nothing; a segment relabelled to another author fails its head; chains forged in another
//! author's name or the receiver's own are refused (no signature of that author covers them)
//! without touching its ops, and are not recorded as that author's forks; and
//! forged content with a recomputed id but a broken chain is refused naming author and seq.
//! Every case compares the whole store (state bytes, summary, op count, records) before and
//! after.
#![allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    clippy::panic,
    clippy::expect_used
)]

mod common;

use std::collections::HashMap;
use std::sync::Arc;

use cardlog::sync_layer::session::Session;
use cardlog::sync_layer::transport::{channel_pair, run, run_session, ChannelEnd, Transport};
use cardlog::sync_layer::wire::message::{self, Message};
use cardlog::sync_layer::{encode_segments, Locate, SyncStore, WireError};
use cardlog::SignedTip;
use cardlog::TransportError;
use cardlog::{
    ContactId, DeviceId, Error, Field, Fork, Hlc, OpId, Path, Replica, Role, SealedOp, Summary,
    SyncError, SyncReport, Value,
};
use cardlog_core::{Device, DeviceKey, FakeClock};
use common::{member_of, person, replica, reseal_segments, session, NINE_MS, TIMEOUT};

/// Everything about a store that a replayed or forged message could change.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Snapshot {
    state: Vec<u8>,
    summary: Summary,
    ops: u64,
    every_op: Vec<OpId>,
    forks: Vec<Fork>,
    acked: Vec<(DeviceId, Summary)>,
}

fn snapshot(r: &Replica) -> Snapshot {
    Snapshot {
        state: r.state_bytes().unwrap(),
        summary: r.summary().clone(),
        ops: r.op_count(),
        every_op: r.ops().map(|o| o.unwrap().id()).collect(),
        forks: r.forks().unwrap(),
        acked: r
            .peers()
            .unwrap()
            .into_iter()
            .map(|p| (p.id, p.acked))
            .collect(),
    }
}

fn op_at(r: &Replica, author: DeviceId, seq: u64) -> SealedOp {
    SyncStore::op_at(r, &author, seq).unwrap().unwrap()
}

/// The key of the third device of the forgery tests: a member whose innocent ops travel in
/// the forger's messages.
fn third_key() -> DeviceKey {
    DeviceKey::from_seed(&[0x33; 32])
}

/// The ops a forger knows, to describe in a segment message, and the signatures it holds:
/// the replicas' own, and the third device's (its ops are innocent, properly signed).
struct Known {
    ops: HashMap<OpId, SealedOp>,
    tips: HashMap<(DeviceId, u64), SignedTip>,
}

impl Known {
    fn of(replicas: &[&Replica], extra: &[SealedOp]) -> Self {
        let mut ops = HashMap::new();
        let mut tips = HashMap::new();
        for r in replicas {
            for op in r.ops() {
                let op = op.unwrap();
                for tip in r.signatures_for(std::slice::from_ref(&op)).unwrap() {
                    tips.insert((tip.author, tip.seq), tip);
                }
                ops.insert(op.id(), op);
            }
        }
        let book = replicas.first().map(|r| r.book());
        let third = third_key();
        for op in extra {
            if let Some(book) = book.filter(|_| op.op().author == third.device()) {
                let tip = SignedTip {
                    author: op.op().author,
                    key: third.public(),
                    seq: op.op().seq,
                    op: op.id(),
                    signature: third.sign_tip(&book, &op.id()),
                };
                tips.insert((tip.author, tip.seq), tip);
            }
            ops.insert(op.id(), op.clone());
        }
        Self { ops, tips }
    }
}

impl Locate for Known {
    fn locate(&self, id: &OpId) -> Result<Option<SealedOp>, WireError> {
        Ok(self.ops.get(id).cloned())
    }

    fn tip_signature(&self, author: &DeviceId, seq: u64) -> Result<Option<SignedTip>, WireError> {
        Ok(self.tips.get(&(*author, seq)).copied())
    }
}

fn bundle_of(from: DeviceId, segments: Vec<u8>) -> Vec<u8> {
    message::encode(&Message::Bundle {
        replica: from,
        created_ms: NINE_MS,
        segments,
    })
}

fn segments_of(bundle: &[u8]) -> Vec<u8> {
    match message::decode(bundle).unwrap() {
        Message::Bundle { segments, .. } => segments,
        other => panic!("not a bundle: {other:?}"),
    }
}

/// A transport that keeps a copy of every message it receives.
struct Recording {
    inner: ChannelEnd,
    received: Vec<Vec<u8>>,
}

impl Transport for Recording {
    fn send(&mut self, bytes: Vec<u8>) -> Result<(), TransportError> {
        self.inner.send(bytes)
    }
    fn recv(&mut self) -> Result<Vec<u8>, TransportError> {
        let bytes = self.inner.recv()?;
        self.received.push(bytes.clone());
        Ok(bytes)
    }
}

/// A session in which `a` sends its ops one per message; returns the messages `b` received
/// (a's hello, its `Ops` messages, its ack) exactly as they crossed the wire.
fn recorded_session(a: &mut Replica, b: &mut Replica) -> Vec<Vec<u8>> {
    let (ea, eb) = channel_pair(TIMEOUT);
    std::thread::scope(|s| {
        let h = s.spawn(|| {
            let mut rec = Recording {
                inner: eb,
                received: Vec::new(),
            };
            // The session layer in the clear: what these tests replay is its messages (the
            // encrypted layer refuses replays outright: tests/secure.rs).
            run(Role::Responder, b, &mut rec).unwrap();
            rec.received
        });
        let mut ea = ea;
        run_session(Session::new(Role::Initiator).with_chunk_ops(1), a, &mut ea).unwrap();
        h.join().unwrap()
    })
}

/// Plays the initiator from recorded bytes: sends `messages[0]` (a hello), lets `b` answer
/// with its hello and ops (ignored), then sends the rest (`Ops` messages and an ack) and
/// returns how `b`'s side of the session ended.
fn replay_to(b: &mut Replica, messages: &[Vec<u8>]) -> Result<SyncReport, SyncError> {
    let (mut ea, mut eb) = channel_pair(TIMEOUT);
    std::thread::scope(|s| {
        let h = s.spawn(|| run(Role::Responder, b, &mut eb));
        ea.send(messages[0].clone()).unwrap();
        loop {
            match message::decode(&ea.recv().unwrap()).unwrap() {
                Message::Hello { .. } | Message::Ops { last: false, .. } => {}
                Message::Ops { last: true, .. } => break,
                other => panic!("the responder sent {other:?} before its ops"),
            }
        }
        for m in &messages[1..] {
            ea.send(m.clone()).unwrap();
        }
        let result = h.join().unwrap();
        if result.is_ok() {
            let ack = message::decode(&ea.recv().unwrap()).unwrap();
            assert!(matches!(ack, Message::Ack { .. }), "{ack:?}");
        }
        result
    })
}

/// `a` and `b` share Dana (created, then edited by `a`), then move on: `b` renames her,
/// both set her Org concurrently, `b` settles the conflict, and they sync. Returns the
/// messages `b` received in the first session and the ops `a` had sent then.
fn moved_on(a: &mut Replica, b: &mut Replica, clock: &FakeClock) -> (Vec<Vec<u8>>, usize) {
    let dana = person(1, "Dana");
    a.add_contact(&dana).unwrap();
    a.add_contact(&person(2, "Eli")).unwrap();
    a.edit(dana.id, |c| {
        c.set(Field::Org, "Initech");
    })
    .unwrap();
    let recorded = recorded_session(a, b);
    clock.advance_ms(60_000);
    b.edit(dana.id, |c| {
        c.set(Field::Given, "Dana B.");
    })
    .unwrap();
    a.edit(dana.id, |c| {
        c.set(Field::Org, "Globex");
    })
    .unwrap();
    b.edit(dana.id, |c| {
        c.set(Field::Org, "Initrode");
    })
    .unwrap();
    session(a, b);
    assert_eq!(b.conflicts().unwrap().len(), 1, "a real conflict to settle");
    clock.advance_ms(1_000);
    b.resolve(
        dana.id,
        Path::Field(Field::Org),
        Some(Value::Text("Initech Globex".into())),
    )
    .unwrap();
    let (x, _) = session(a, b);
    assert!(x.converged);
    (recorded, 3)
}

/// What `b` must still show after any replay: its rename, its resolution, no conflict.
fn assert_nothing_lost(b: &Replica) {
    let view = b.contact(&ContactId([1; 16])).unwrap().unwrap();
    assert_eq!(view.contact.get(Field::Given), Some("Dana B."));
    assert_eq!(view.contact.get(Field::Org), Some("Initech Globex"));
    assert!(view.conflicts.is_empty(), "{:?}", view.conflicts);
    assert!(b.conflicts().unwrap().is_empty());
    assert!(b.verify().unwrap().is_ok());
}

#[test]
fn an_earlier_sessions_messages_replayed_after_edits_and_a_resolve_change_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let clock = Arc::new(FakeClock::new(NINE_MS));
    let mut a = replica(&tmp.path().join("a"), &clock);
    let mut b = member_of(&mut a, &tmp.path().join("b"), &clock);
    let (recorded, sent) = moved_on(&mut a, &mut b, &clock);
    // hello, one Ops message per op, ack.
    assert_eq!(recorded.len(), sent + 2, "{} messages", recorded.len());
    let before = snapshot(&b);
    // The session as it was, then with an `Ops` message sent twice in a row.
    let mut doubled = recorded.clone();
    doubled.insert(1, recorded[1].clone());
    for (messages, duplicates) in [(&recorded, sent), (&doubled, sent + 1)] {
        let report = replay_to(&mut b, messages).unwrap();
        assert_eq!(
            (report.stored, report.duplicates, report.missing),
            (0, duplicates, 0)
        );
        assert!(report.forks.is_empty(), "{:?}", report.forks);
        assert_eq!(report.peer, Some(a.id()));
        // The replayed ack says the peer holds less than b: not converged, and b's record of
        // what a acknowledged does not go back.
        assert!(!report.converged);
        assert_eq!(snapshot(&b), before);
        assert_nothing_lost(&b);
    }
    // The two real replicas still agree and have nothing to exchange.
    let (x, y) = session(&mut a, &mut b);
    assert!(x.converged && y.converged);
    assert_eq!((x.stored, y.stored, x.sent_ops, y.sent_ops), (0, 0, 0, 0));
}

#[test]
fn old_bundles_imported_again_after_edits_and_a_resolve_change_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let clock = Arc::new(FakeClock::new(NINE_MS));
    let mut a = replica(&tmp.path().join("a"), &clock);
    let mut b = member_of(&mut a, &tmp.path().join("b"), &clock);
    // A whole-history bundle, and a later one anchored after what b then held.
    a.add_contact(&person(5, "Fay")).unwrap();
    let whole = a.export_bundle(None).unwrap();
    assert_eq!(b.import_bundle(&whole).unwrap().received.applied.stored, 1);
    a.edit(ContactId([5; 16]), |c| {
        c.set(Field::Note, "first note");
    })
    .unwrap();
    let since = b.summary().clone();
    let anchored = a.export_bundle(Some(&since)).unwrap();
    assert_eq!(
        b.import_bundle(&anchored).unwrap().received.applied.stored,
        1
    );
    moved_on(&mut a, &mut b, &clock);
    b.edit(ContactId([5; 16]), |c| {
        c.set(Field::Note, "b's note");
    })
    .unwrap();
    session(&mut a, &mut b);
    for r in [&mut b, &mut a] {
        let before = snapshot(r);
        // The whole bundle also carries the founding op and the op adding b.
        for (bundle, ops) in [(&whole, 3), (&anchored, 1)] {
            let imported = r.import_bundle(bundle).unwrap();
            assert_eq!(imported.received.ops, ops);
            assert_eq!(imported.received.applied.stored, 0);
            assert_eq!(imported.received.applied.duplicates, ops);
            assert!(imported.received.forks.is_empty());
            assert_eq!(snapshot(r), before, "{}", r.id());
        }
        let fay = r.contact(&ContactId([5; 16])).unwrap().unwrap().contact;
        assert_eq!(fay.get(Field::Note), Some("b's note"));
    }
    assert_nothing_lost(&b);
}

#[test]
fn old_and_new_ops_in_one_message_store_only_the_new_ones() {
    let tmp = tempfile::tempdir().unwrap();
    let clock = Arc::new(FakeClock::new(NINE_MS));
    let mut a = replica(&tmp.path().join("a"), &clock);
    let mut b = member_of(&mut a, &tmp.path().join("b"), &clock);
    let mut c = member_of(&mut a, &tmp.path().join("c"), &clock);
    a.add_contact(&person(1, "Ada")).unwrap();
    a.add_contact(&person(2, "Bo")).unwrap();
    c.add_contact(&person(3, "Cy")).unwrap();
    session(&mut a, &mut c);
    session(&mut a, &mut b);
    let old_hello = message::encode(&Message::Hello {
        replica: a.id(),
        wall_ms: NINE_MS,
        summary: a.summary().clone(),
    });
    clock.advance_ms(10_000);
    a.edit(ContactId([1; 16]), |x| {
        x.set(Field::Family, "Lovelace");
    })
    .unwrap();
    a.add_contact(&person(4, "Di")).unwrap();
    c.edit(ContactId([3; 16]), |x| {
        x.set(Field::Org, "Cyberdyne");
    })
    .unwrap();
    session(&mut a, &mut c);
    // Every op a holds (those b has, and 3 new), in one message: segments from seq 1.
    let all: Vec<SealedOp> = a.ops().map(|o| o.unwrap()).collect();
    let old = b.op_count() as usize;
    assert_eq!(all.len(), old + 3);
    let segments = encode_segments(&all, &Known::of(&[&a], &[])).unwrap();
    let mixed = bundle_of(a.id(), segments.clone());

    // As a bundle.
    let tmp2 = tempfile::tempdir().unwrap();
    let mut b2 = Replica::join_with(&tmp2.path().join("b2"), a.book(), Default::default()).unwrap();
    b2.import_bundle(&b.export_bundle(None).unwrap()).unwrap();
    let imported = b2.import_bundle(&mixed).unwrap();
    assert_eq!(imported.received.ops, all.len());
    assert_eq!(
        (
            imported.received.applied.stored,
            imported.received.applied.duplicates
        ),
        (3, old)
    );
    assert!(imported.received.forks.is_empty());
    assert_eq!(b2.state_bytes().unwrap(), a.state_bytes().unwrap());
    assert_eq!(b2.summary(), a.summary());
    assert_eq!(b2.op_count(), all.len() as u64);

    // As an `Ops` message in a session whose hello is an old one.
    let ops = message::encode(&Message::Ops {
        last: true,
        forks: vec![],
        segments,
    });
    let ack = message::encode(&Message::Ack {
        summary: a.summary().clone(),
    });
    let report = replay_to(&mut b, &[old_hello, ops.clone(), ack.clone()]).unwrap();
    assert_eq!((report.stored, report.duplicates), (3, old));
    assert!(report.converged, "b now holds exactly what a does");
    assert_eq!(snapshot(&b).state, a.state_bytes().unwrap());
    assert_eq!(b.summary(), a.summary());
    assert!(b.verify().unwrap().is_ok());
    // Once more: all old now.
    let hello = message::encode(&Message::Hello {
        replica: a.id(),
        wall_ms: NINE_MS,
        summary: a.summary().clone(),
    });
    let before = snapshot(&b);
    let report = replay_to(&mut b, &[hello, ops, ack]).unwrap();
    assert_eq!((report.stored, report.duplicates), (0, all.len()));
    assert_eq!(snapshot(&b), before);
}

#[test]
fn a_segment_relabelled_to_another_author_fails_its_head_naming_that_author() {
    let tmp = tempfile::tempdir().unwrap();
    let clock = Arc::new(FakeClock::new(NINE_MS));
    let mut a = replica(&tmp.path().join("a"), &clock);
    let mut b = member_of(&mut a, &tmp.path().join("b"), &clock);
    let mut r = replica(&tmp.path().join("r"), &clock);
    a.add_contact(&person(1, "Ada")).unwrap();
    r.import_bundle(&a.export_bundle(None).unwrap()).unwrap();
    // b's two ops (a create and an edit replacing its writes), relabelled as a's: the author
    // table's one entry is rewritten and the checksum recomputed.
    b.add_contact(&person(2, "Bo")).unwrap();
    b.edit(ContactId([2; 16]), |c| {
        c.set(Field::Given, "Bob");
    })
    .unwrap();
    // Only b's ops: with a's own in the message too, the relabelled segment would overlap
    // a's and be refused for that before any op is rebuilt.
    let mut segments = segments_of(&b.export_bundle(Some(a.summary())).unwrap());
    let at = segments
        .windows(16)
        .position(|w| w == b.id().0)
        .expect("b in the author table");
    assert_eq!((at - 6) % 16, 0, "an entry of the author table");
    let victim = a.id();
    segments[at..at + 16].copy_from_slice(&victim.0);
    reseal_segments(&mut segments);
    for target in [&mut r, &mut a] {
        let before = snapshot(target);
        let err = target
            .import_bundle(&bundle_of(b.id(), segments.clone()))
            .unwrap_err();
        match &err {
            SyncError::Wire(WireError::HeadMismatch {
                author,
                first,
                last,
            }) => assert_eq!((*author, *first, *last), (victim, 1, 2)),
            other => panic!("expected a head mismatch, got {other:?}"),
        }
        let text = err.to_string();
        assert!(
            text.contains(&victim.to_string()) && text.contains("do not hash"),
            "{text}"
        );
        assert_eq!(snapshot(target), before);
    }
}

/// `r` holds its own ops and `a`'s; a forger holds copies of both. A third device's innocent
/// ops travel in the forger's messages too.
struct Forgery {
    _tmp: tempfile::TempDir,
    clock: Arc<FakeClock>,
    a: Replica,
    r: Replica,
    third: Device,
    innocents: u8,
    /// Signatures the forger adds to its next bundle (claimed for another author).
    claimed: Vec<SignedTip>,
}

fn forgery() -> Forgery {
    let tmp = tempfile::tempdir().unwrap();
    let clock = Arc::new(FakeClock::new(NINE_MS));
    let mut a = replica(&tmp.path().join("a"), &clock);
    let mut r = member_of(&mut a, &tmp.path().join("r"), &clock);
    a.add_member(third_key().device(), cardlog::MemberRole::Write, "third")
        .unwrap();
    a.add_contact(&person(1, "Ada")).unwrap();
    a.edit(ContactId([1; 16]), |c| {
        c.set(Field::Note, "a's second op");
    })
    .unwrap();
    r.add_contact(&person(10, "Rae")).unwrap();
    r.edit(ContactId([10; 16]), |c| {
        c.set(Field::Note, "r's second op");
    })
    .unwrap();
    session(&mut a, &mut r);
    clock.advance_ms(1_000);
    let third = Device::new(third_key().device(), clock.clone());
    Forgery {
        _tmp: tmp,
        clock,
        a,
        r,
        third,
        innocents: 0,
        claimed: Vec::new(),
    }
}

/// A new op claiming `author`'s `seq`, naming `prev`, creating contact `n`.
fn forged_op(author: DeviceId, seq: u64, prev: Option<&SealedOp>, n: u8) -> SealedOp {
    let mut op = Device::new(author, Arc::new(FakeClock::new(NINE_MS + 500_000)))
        .create(&person(n, "Forged"))
        .unwrap()
        .op()
        .clone();
    op.seq = seq;
    op.prev = prev.map(SealedOp::id);
    op.hlc = Hlc {
        wall_ms: prev.map_or(NINE_MS, |p| p.op().hlc.wall_ms) + 1,
        counter: 0,
    };
    op.seal().unwrap()
}

/// Imports a bundle of `forged` and an innocent op into `r`: the forged author's ops must be
/// refused (they meet `r`'s chain of that author at `seq` as a fork, but no signature of the
/// author covers them, so no fork is recorded), the innocent op applied and nothing else of
/// `r` changed.
fn assert_refused(
    f: &mut Forgery,
    author: DeviceId,
    forged: &[SealedOp],
    seq: u64,
) -> cardlog::Refusal {
    f.innocents += 1;
    let innocent = f
        .third
        .create(&person(0x80 + f.innocents, "Innocent"))
        .unwrap();
    let mut ops = forged.to_vec();
    ops.push(innocent.clone());
    let mut known = Known::of(&[&f.a, &f.r], &ops);
    for tip in std::mem::take(&mut f.claimed) {
        known.tips.insert((tip.author, tip.seq), tip);
    }
    let segments = encode_segments(&ops, &known).unwrap();
    let before = snapshot(&f.r);
    let chain: Vec<SealedOp> = (1..=before.summary[&author].seq)
        .map(|s| op_at(&f.r, author, s))
        .collect();
    assert!(
        forged.iter().any(|o| o.op().seq == seq),
        "a forged op at the fork"
    );
    let imported = f.r.import_bundle(&bundle_of(author, segments)).unwrap();
    assert_eq!(imported.received.forks, vec![], "not the author's fork");
    let refused = &imported.received.applied.refused;
    assert_eq!(refused.len(), 1, "{refused:?}");
    assert_eq!(refused[0].author(), author);
    assert!(
        matches!(
            refused[0],
            cardlog::Refusal::Unsigned { .. } | cardlog::Refusal::BadSignature { .. }
        ),
        "{}",
        refused[0]
    );
    assert_eq!(imported.received.applied.stored, 1, "only the innocent op");
    assert_eq!(f.r.forks().unwrap(), vec![], "no fork recorded");
    let after = snapshot(&f.r);
    assert_eq!(after.summary.get(&author), before.summary.get(&author));
    for (s, op) in (1..).zip(&chain) {
        assert_eq!(op_at(&f.r, author, s), *op, "seq {s}");
    }
    assert_eq!(after.ops, before.ops + 1);
    assert!(f.r.op(&innocent.id()).unwrap().is_some());
    for op in forged.iter().filter(|o| o.op().seq >= seq) {
        assert!(f.r.op(&op.id()).unwrap().is_none(), "forged op stored");
        let contact = op.op().writes[0].contact;
        assert!(f.r.contact(&contact).unwrap().is_none(), "forged contact");
    }
    assert!(f.r.verify().unwrap().is_ok());
    refused[0].clone()
}

#[test]
fn a_chain_forged_in_another_authors_name_is_refused_and_recorded_as_no_fork() {
    let mut f = forgery();
    let author = f.a.id();
    // From seq 1: a whole other history under a's id, ids and chain recomputed by the forger.
    let one = forged_op(author, 1, None, 50);
    let two = forged_op(author, 2, Some(&one), 51);
    assert_refused(&mut f, author, &[one, two], 1);
    // Continuing an op of a's that r never held (the shape of an edit owed back to its
    // author, docs/SYNC.md, "Edits owed back"): not kept, not handed on for a, and a's next
    // session with r brings a nothing of it.
    let a_first = op_at(&f.r, author, 1);
    let unseen = forged_op(author, 2, Some(&a_first), 53);
    let owed = forged_op(author, 3, Some(&unseen), 54);
    assert_refused(&mut f, author, std::slice::from_ref(&owed), 3);
    // The same with a signature of it by another member's key, claimed for a.
    let third = third_key();
    f.claimed.push(SignedTip {
        author,
        key: third.public(),
        seq: 3,
        op: owed.id(),
        signature: third.sign_tip(&f.r.book(), &owed.id()),
    });
    let refusal = assert_refused(&mut f, author, std::slice::from_ref(&owed), 3);
    assert!(
        matches!(refusal, cardlog::Refusal::BadSignature { seq: 3, .. }),
        "{refusal}"
    );
    let a_before = snapshot(&f.a);
    let (to_a, to_r) = session(&mut f.a, &mut f.r);
    for report in [&to_a, &to_r] {
        assert_eq!(report.refused, vec![], "nothing forged sent");
        assert_eq!((report.forks.len(), report.missing), (0, 0));
        assert!(report.converged);
    }
    assert!(f.a.op(&owed.id()).unwrap().is_none());
    assert_eq!(
        snapshot(&f.a).summary.get(&author),
        a_before.summary.get(&author)
    );
    assert!(f.a.verify().unwrap().is_ok());
    // Anchored on another author's op (r's seq 1) instead of a's.
    let rs_first = op_at(&f.r, f.r.id(), 1);
    let three = forged_op(author, 3, Some(&rs_first), 52);
    let before = snapshot(&f.r);
    // Handed straight to apply, it is refused by the book's rules (r holds another op of a's
    // at that seq, and no signature of a's covers it) before any chain check.
    let err = f.r.apply(std::slice::from_ref(&three), &[]).unwrap_err();
    assert!(
        matches!(&err, Error::Refused(cardlog::Refusal::Forked { author: x, seq: 3, .. }) if *x == author),
        "{err}"
    );
    assert_eq!(snapshot(&f.r), before);
}

#[test]
fn ops_forged_in_the_receivers_own_name_are_refused_and_never_touch_its_chain() {
    let mut f = forgery();
    let me = f.r.id();
    let mine_before: Vec<SealedOp> = (1..=2).map(|s| op_at(&f.r, me, s)).collect();
    // A different seq 1.
    let one = forged_op(me, 1, None, 60);
    assert_refused(&mut f, me, std::slice::from_ref(&one), 1);
    // A chain sharing r's real first op, then diverging at seq 2 (a copy of r's history,
    // as a whole-history bundle would carry it).
    let two = forged_op(me, 2, Some(&mine_before[0]), 61);
    let three = forged_op(me, 3, Some(&two), 62);
    assert_refused(&mut f, me, &[mine_before[0].clone(), two.clone(), three], 2);
    // Handed straight to apply, a forged seq 2 is refused as a fork.
    let before = snapshot(&f.r);
    let err = f.r.apply(std::slice::from_ref(&two), &[]).unwrap_err();
    match &err {
        Error::Refused(cardlog::Refusal::Forked {
            author,
            seq,
            ours,
            theirs,
        }) => assert_eq!(
            (*author, *seq, *ours, *theirs),
            (me, 2, mine_before[1].id(), two.id())
        ),
        other => panic!("expected a fork, got {other:?}"),
    }
    assert_eq!(snapshot(&f.r), before);
    // r's own chain is untouched and its next save continues it.
    for (s, op) in (1..).zip(&mine_before) {
        assert_eq!(op_at(&f.r, me, s), *op);
    }
    f.clock.advance_ms(1_000);
    let next = f.r.add_contact(&person(11, "After")).unwrap();
    let next = f.r.op(&next).unwrap().unwrap();
    assert_eq!(next.op().seq, 3);
    assert_eq!(next.op().prev, Some(mine_before[1].id()));
    assert!(f.r.verify().unwrap().is_ok());
}

#[test]
fn forged_content_with_a_recomputed_id_but_a_broken_chain_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let clock = Arc::new(FakeClock::new(NINE_MS));
    let mut a = replica(&tmp.path().join("a"), &clock);
    let mut r = member_of(&mut a, &tmp.path().join("r"), &clock);
    let ada = person(1, "Ada");
    a.add_contact(&ada).unwrap();
    r.import_bundle(&a.export_bundle(None).unwrap()).unwrap();
    for note in ["second", "third"] {
        a.edit(ada.id, |c| {
            c.set(Field::Note, note);
        })
        .unwrap();
    }
    // a's ops: the founding op, the op adding r, the create, then these two edits.
    let (two, three) = (op_at(&a, a.id(), 4), op_at(&a, a.id(), 5));
    // Op 2's note changed and its id recomputed; op 3 still names the real op 2.
    let mut content = two.op().clone();
    let write = content
        .writes
        .iter_mut()
        .find(|w| w.value == Some(Value::Text("second".into())))
        .unwrap();
    write.value = Some(Value::Text("forged".into()));
    let forged = content.seal().unwrap();
    assert_ne!(forged.id(), two.id());
    assert_eq!(three.op().prev, Some(two.id()));
    let before = snapshot(&r);

    // In a segment, op 3 is rebuilt on the forged op 2 and no longer hashes to the head.
    let ops = [forged.clone(), three.clone()];
    let segments = encode_segments(&ops, &Known::of(&[&a], &ops)).unwrap();
    let err = r.import_bundle(&bundle_of(a.id(), segments)).unwrap_err();
    match &err {
        SyncError::Wire(WireError::HeadMismatch {
            author,
            first,
            last,
        }) => assert_eq!((*author, *first, *last), (a.id(), 4, 5)),
        other => panic!("expected a head mismatch, got {other:?}"),
    }
    assert_eq!(snapshot(&r), before);

    // As ops handed to apply, op 3's link to the real op 2 is a chain mismatch; nothing of
    // the batch is stored, not even the forged op 2 that fits the chain by itself.
    // As ops handed to apply without a signature of a's, nothing of the batch is stored; with
    // a's real signature of op 3 (which names the real op 2), op 2 is not the op it signed.
    let err = r.apply(&ops, &[]).unwrap_err();
    assert!(
        matches!(
            err,
            Error::Refused(cardlog::Refusal::Unsigned { seq: 4, .. })
        ),
        "{err}"
    );
    let tips = a.signatures_for(std::slice::from_ref(&three)).unwrap();
    let err = r.apply(&ops, &tips).unwrap_err();
    assert!(
        matches!(
            err,
            Error::Refused(cardlog::Refusal::Unsigned { seq: 4, .. })
        ),
        "{err}"
    );
    assert_eq!(snapshot(&r), before);

    // The real ops still apply.
    let imported = r.import_bundle(&a.export_bundle(None).unwrap()).unwrap();
    assert_eq!(imported.received.applied.stored, 2);
    assert_eq!(r.state_bytes().unwrap(), a.state_bytes().unwrap());
}

/// An author id no replica has: `i` in its first bytes.
fn stranger(i: u32) -> DeviceId {
    let mut id = [0x5a; 16];
    id[..4].copy_from_slice(&i.to_be_bytes());
    DeviceId(id)
}

#[test]
fn a_peers_claims_about_authors_and_forks_stay_bounded_and_break_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let clock = Arc::new(FakeClock::new(NINE_MS));
    let mut r = replica(&tmp.path().join("r"), &clock);
    let mut honest = member_of(&mut r, &tmp.path().join("honest"), &clock);
    r.add_contact(&person(1, "Ada")).unwrap();
    let mine = op_at(&r, r.id(), 1); // the founding op
    let liar = DeviceId([0x1e; 16]);
    // A hello naming 20,000 authors nobody has (besides r's own head), forks claimed at r's
    // op (20,000 of them, each with another "other op") and at ops r does not hold, and an
    // ack as large as the hello. Far more than one op's decode limit if all were recorded.
    let mut summary = r.summary().clone();
    for i in 0..20_000 {
        summary.insert(
            stranger(i),
            cardlog::ChainTip {
                seq: 1,
                op: OpId([0x77; 32]),
                hlc: Hlc {
                    wall_ms: NINE_MS,
                    counter: 0,
                },
            },
        );
    }
    let hello = message::encode(&Message::Hello {
        replica: liar,
        wall_ms: NINE_MS,
        summary: summary.clone(),
    });
    let fake = |i: u32| {
        let mut id = [0x66; 32];
        id[..4].copy_from_slice(&i.to_be_bytes());
        OpId(id)
    };
    let mut forks: Vec<Fork> = (0..20_000)
        .map(|i| Fork {
            author: r.id(),
            seq: 1,
            ours: fake(i),
            theirs: mine.id(),
        })
        .collect();
    forks.extend((0..100).map(|i| Fork {
        author: stranger(i),
        seq: 1,
        ours: fake(i),
        theirs: OpId([0x77; 32]),
    }));
    let ops = message::encode(&Message::Ops {
        last: true,
        forks,
        segments: encode_segments(&[], &Known::of(&[], &[])).unwrap(),
    });
    let ack = message::encode(&Message::Ack { summary });
    let report = replay_to(&mut r, &[hello, ops, ack]).unwrap();
    // The claims at r's own op are forks as far as this session goes; the others are not.
    assert_eq!(report.forks.len(), 20_000);
    assert!(report.forks.iter().all(|f| f.author == r.id()));
    // Stored: one fork for the one place, and of the peer's summary only the author r holds.
    assert_eq!(
        r.forks().unwrap(),
        vec![Fork {
            author: r.id(),
            seq: 1,
            ours: mine.id(),
            theirs: fake(0),
        }]
    );
    let peers = r.peers().unwrap();
    assert_eq!(peers.len(), 1);
    assert_eq!(peers[0].id, liar);
    assert_eq!(
        peers[0].acked.keys().copied().collect::<Vec<_>>(),
        vec![r.id()]
    );
    // And r still syncs with everyone else.
    honest.add_contact(&person(2, "Bo")).unwrap();
    let (x, y) = session(&mut honest, &mut r);
    assert!(x.converged && y.converged);
    assert_eq!(r.peers().unwrap().len(), 2);
    assert!(r.verify().unwrap().is_ok());
}

#[test]
fn an_op_at_the_writes_limit_from_a_peer_is_stored_and_reads_back() {
    let tmp = tempfile::tempdir().unwrap();
    let clock = Arc::new(FakeClock::new(NINE_MS));
    let mut r = replica(&tmp.path().join("r"), &clock);
    r.add_member(third_key().device(), cardlog::MemberRole::Write, "peer")
        .unwrap();
    // One contact with 4,095 tags: its `exists` write and a write per tag, 4,096 in all, the
    // most one op may have. Well under the op's byte limit, but bincode reserves ~260 bytes
    // of memory per write before reading them.
    let mut big = person(9, "Tagged");
    big.fields.clear();
    for i in 0..4_095 {
        big.tags.insert(format!("t{i:05}"));
    }
    let op = Device::new(third_key().device(), clock.clone())
        .create(&big)
        .unwrap();
    assert_eq!(
        op.op().writes.len(),
        cardlog_core::codec::limits::WRITES_PER_OP_MAX
    );
    let segments = encode_segments(
        std::slice::from_ref(&op),
        &Known::of(&[&r], std::slice::from_ref(&op)),
    )
    .unwrap();
    let imported = r
        .import_bundle(&bundle_of(op.op().author, segments))
        .unwrap();
    assert_eq!(imported.received.applied.stored, 1);
    assert_eq!(r.op(&op.id()).unwrap().unwrap(), op);
    assert_eq!(
        r.contact(&big.id).unwrap().unwrap().contact.tags.len(),
        4_095
    );
    assert!(r.verify().unwrap().is_ok());
    let again = r.export_bundle(None).unwrap();
    let tmp2 = tempfile::tempdir().unwrap();
    let mut other =
        Replica::join_with(&tmp2.path().join("other"), r.book(), Default::default()).unwrap();
    other.import_bundle(&again).unwrap();
    assert_eq!(other.state_bytes().unwrap(), r.state_bytes().unwrap());
}

/// A member's hello claims a made-up op at this device's last seq, as if it held the device's
/// chain otherwise (what a restore looks like). The device marks itself restored and asks the
/// claimant for its whole chain; the claimant has nothing of it that differs, so the claim was
/// stale and the mark goes in the same session. Nothing is withdrawn or re-issued, and the
/// device's later ops reach an honest peer.
#[test]
fn a_made_up_op_claimed_at_this_devices_seq_withdraws_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let clock = Arc::new(FakeClock::new(NINE_MS));
    let mut r = replica(&tmp.path().join("r"), &clock);
    let mut honest = member_of(&mut r, &tmp.path().join("honest"), &clock);
    r.add_contact(&person(1, "Ada")).unwrap();
    session(&mut honest, &mut r);
    let before = snapshot(&r);
    let tip = *r.summary().get(&r.id()).unwrap();
    let mut summary = r.summary().clone();
    summary.insert(
        r.id(),
        cardlog::ChainTip {
            op: OpId([0x55; 32]),
            ..tip
        },
    );
    let liar = honest.id();
    let hello = message::encode(&Message::Hello {
        replica: liar,
        wall_ms: NINE_MS,
        summary: summary.clone(),
    });
    let ops = message::encode(&Message::Ops {
        last: true,
        forks: Vec::new(),
        segments: encode_segments(&[], &Known::of(&[], &[])).unwrap(),
    });
    let ack = message::encode(&Message::Ack { summary });
    let report = replay_to(&mut r, &[hello, ops, ack]).unwrap();
    assert!(report.taken_back.is_none(), "{report:?}");
    assert!(
        !r.is_restored().unwrap(),
        "the claimant held nothing that differs"
    );
    let after = snapshot(&r);
    assert_eq!(
        (&after.state, &after.summary, after.ops, &after.every_op),
        (&before.state, &before.summary, before.ops, &before.every_op)
    );
    // The device writes on, and an honest peer gets it.
    r.add_contact(&person(2, "Bo")).unwrap();
    let (x, y) = session(&mut honest, &mut r);
    assert!(x.converged && y.converged, "{x:?} {y:?}");
    assert_eq!(honest.contacts().unwrap().len(), 2);
    assert!(r.verify().unwrap().is_ok());
}

//! The address book's rules at the facade, one hostile case per test (issue "Trust I"): a
//! device that is not a member, a read-only member, a writer changing members, a removed
//! device, a forged or unsigned chain, a replayed removal. Each is refused by `apply` (all or
//! nothing, naming the author and the reason), by a bundle and by a session (per author: the
//! other authors' ops are stored), and a message made only of such ops leaves the store as it
//! was. Joining: a device that joined is no member and cannot save until an admin's op admits
//! it. `verify` audits the rules over the log.
#![allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    clippy::panic,
    clippy::expect_used
)]

mod common;

use std::sync::Arc;

use cardlog::sync_layer::encode_segments;
use cardlog::sync_layer::wire::message::{self, Message};
use cardlog::sync_layer::wire::segment::Locate;
use cardlog::sync_layer::WireError;
use cardlog::{
    AuthError, ContactId, DeviceId, Error, HandshakeError, MemberError, MemberRole, OpId, Refusal,
    Replica, SealedOp, SignedTip, SyncError,
};
use cardlog_core::{BookId, Device, DeviceKey, FakeClock, Field, MemberChange, Path};
use common::{copy_dir, failed_session, member_of, person, replica, session, NINE_MS};

/// A device outside any replica, holding its own key: it writes ops and signs them itself.
struct Outsider {
    key: DeviceKey,
    device: Device,
}

impl Outsider {
    fn new(seed: u8, clock: &Arc<FakeClock>) -> Self {
        let key = DeviceKey::from_seed(&[seed; 32]);
        let device = Device::new(key.device(), clock.clone());
        Self { key, device }
    }

    fn id(&self) -> DeviceId {
        self.key.device()
    }

    /// A new contact `n`, as its next op.
    fn create(&mut self, n: u8) -> SealedOp {
        self.device.create(&person(n, "Outsider")).unwrap()
    }

    /// Its signature of `op` in `book`.
    fn sign(&self, book: BookId, op: &SealedOp) -> SignedTip {
        SignedTip {
            author: self.id(),
            key: self.key.public(),
            seq: op.op().seq,
            op: op.id(),
            signature: self.key.sign_tip(&book, &op.id()),
        }
    }

    /// A membership op in place of `template` (one of its ops, same seq and predecessor),
    /// built by hand as a hostile device would.
    fn members(&self, changes: Vec<MemberChange>, template: &SealedOp) -> SealedOp {
        let mut op = template.op().clone();
        op.writes.clear();
        op.members = changes;
        op.seal().unwrap()
    }
}

/// What a message could change in a store.
fn snapshot(r: &Replica) -> (Vec<u8>, cardlog::Summary, u64) {
    (r.state_bytes().unwrap(), r.summary().clone(), r.op_count())
}

/// A segment message of `ops` whose segments carry the signatures in `tips`.
struct Signed<'a> {
    ops: &'a [SealedOp],
    tips: &'a [SignedTip],
}

impl Locate for Signed<'_> {
    fn locate(&self, id: &OpId) -> Result<Option<SealedOp>, WireError> {
        Ok(self.ops.iter().find(|o| o.id() == *id).cloned())
    }

    fn tip_signature(&self, author: &DeviceId, seq: u64) -> Result<Option<SignedTip>, WireError> {
        Ok(self
            .tips
            .iter()
            .find(|t| t.author == *author && t.seq == seq)
            .copied())
    }
}

fn bundle(from: DeviceId, ops: &[SealedOp], tips: &[SignedTip]) -> Vec<u8> {
    message::encode(&Message::Bundle {
        replica: from,
        created_ms: NINE_MS,
        segments: encode_segments(ops, &Signed { ops, tips }).unwrap(),
    })
}

/// Refused by `apply` as `expected` says, with nothing stored; and by a bundle carrying the
/// same ops plus an honest member's op: that author refused the same way, the honest op
/// stored.
fn refused_everywhere(
    r: &mut Replica,
    honest: &mut Replica,
    ops: &[SealedOp],
    tips: &[SignedTip],
    expected: impl Fn(&Refusal) -> bool,
) {
    let before = snapshot(r);
    match r.apply(ops, tips) {
        Err(Error::Refused(refusal)) => assert!(expected(&refusal), "{refusal}"),
        other => panic!("expected a refusal, got {other:?}"),
    }
    assert_eq!(snapshot(r), before, "apply stored nothing");
    // The same ops alone in a bundle: refused, nothing changes.
    let alone = r.import_bundle(&bundle(honest.id(), ops, tips)).unwrap();
    assert_eq!(alone.received.applied.refused.len(), 1);
    assert!(expected(&alone.received.applied.refused[0]));
    assert_eq!(
        snapshot(r),
        before,
        "a bundle of refused ops stored nothing"
    );
    // Mixed with an honest member's new op: that op is stored.
    let n = 0x40 + u8::try_from(r.op_count() % 64).unwrap();
    honest.add_contact(&person(n, "Honest")).unwrap();
    let mut mixed = ops.to_vec();
    let theirs = honest.ops_since(r.summary()).unwrap();
    let mut all_tips = tips.to_vec();
    all_tips.extend(honest.signatures_for(&theirs).unwrap());
    mixed.extend(theirs);
    let imported = r
        .import_bundle(&bundle(honest.id(), &mixed, &all_tips))
        .unwrap();
    let refused = &imported.received.applied.refused;
    assert_eq!(refused.len(), 1, "{refused:?}");
    assert!(expected(&refused[0]), "{}", refused[0]);
    assert!(r.contact(&ContactId([n; 16])).unwrap().is_some());
    for op in ops {
        assert!(r.op(&op.id()).unwrap().is_none(), "refused op stored");
    }
    assert!(r.verify().unwrap().is_ok());
}

struct Book {
    _tmp: tempfile::TempDir,
    clock: Arc<FakeClock>,
    admin: Replica,
    writer: Replica,
}

fn book() -> Book {
    let tmp = tempfile::tempdir().unwrap();
    let clock = Arc::new(FakeClock::new(NINE_MS));
    let mut admin = replica(&tmp.path().join("admin"), &clock);
    let writer = member_of(&mut admin, &tmp.path().join("writer"), &clock);
    Book {
        _tmp: tmp,
        clock,
        admin,
        writer,
    }
}

#[test]
fn a_device_that_is_not_a_member_is_refused_on_every_path() {
    let mut b = book();
    let mut stranger = Outsider::new(0x51, &b.clock);
    let op = stranger.create(1);
    let tip = stranger.sign(b.admin.book(), &op);
    let stranger_id = stranger.id();
    refused_everywhere(
        &mut b.writer,
        &mut b.admin,
        &[op],
        &[tip],
        |r| matches!(r, Refusal::NotMember { author } if *author == stranger_id),
    );
}

#[test]
fn a_read_only_member_cannot_save_and_its_ops_are_refused() {
    let mut b = book();
    let mut reader = Outsider::new(0x52, &b.clock);
    b.admin
        .add_member(reader.id(), MemberRole::Read, "reader")
        .unwrap();
    b.writer.pull_from(&b.admin).unwrap();
    let op = reader.create(2);
    let tip = reader.sign(b.admin.book(), &op);
    let reader_id = reader.id();
    refused_everywhere(
        &mut b.writer,
        &mut b.admin,
        &[op],
        &[tip],
        |r| matches!(r, Refusal::CannotWrite { author, role: MemberRole::Read } if *author == reader_id),
    );
    // A read-only replica refuses its own saves, naming why.
    let dir = b._tmp.path().join("read");
    let mut read = Replica::join_with(
        &dir,
        b.admin.book(),
        cardlog::Options {
            wall: b.clock.clone(),
            ..cardlog::Options::default()
        },
    )
    .unwrap();
    b.admin
        .add_member(read.id(), MemberRole::Read, "read")
        .unwrap();
    read.pull_from(&b.admin).unwrap();
    let before = snapshot(&read);
    let err = read.add_contact(&person(3, "Nope")).unwrap_err();
    assert!(
        matches!(err, Error::Refused(Refusal::CannotWrite { .. })),
        "{err}"
    );
    assert_eq!(snapshot(&read), before);
}

#[test]
fn a_writer_cannot_change_members() {
    let mut b = book();
    let mut rogue = Outsider::new(0x53, &b.clock);
    b.admin
        .add_member(rogue.id(), MemberRole::Write, "rogue writer")
        .unwrap();
    b.writer.pull_from(&b.admin).unwrap();
    let template = rogue.create(4);
    let accomplice = DeviceKey::from_seed(&[0x54; 32]).device();
    let add = rogue.members(
        vec![MemberChange::Add {
            device: accomplice,
            role: MemberRole::Admin,
            name: "accomplice".into(),
        }],
        &template,
    );
    let tip = rogue.sign(b.admin.book(), &add);
    let rogue_id = rogue.id();
    refused_everywhere(
        &mut b.writer,
        &mut b.admin,
        &[add],
        &[tip],
        |r| matches!(r, Refusal::NotAdmin { author, .. } if *author == rogue_id),
    );
    // Through the library, a writer's attempt is refused before anything is saved.
    let before = snapshot(&b.writer);
    let err = b
        .writer
        .add_member(accomplice, MemberRole::Write, "x")
        .unwrap_err();
    assert!(
        matches!(err, Error::Refused(Refusal::NotAdmin { .. })),
        "{err}"
    );
    assert_eq!(snapshot(&b.writer), before);
}

#[test]
fn an_unsigned_or_forged_chain_is_refused() {
    let mut b = book();
    let tmp = b._tmp.path().to_owned();
    let mut third = member_of(&mut b.admin, &tmp.join("third"), &b.clock);
    let writer_id = b.writer.id();
    let book_id = b.admin.book();
    // Ops in the writer's name made by someone holding another key.
    let forger = Outsider::new(0x55, &b.clock);
    let mut fake = Device::new(writer_id, b.clock.clone());
    let op = fake.create(&person(5, "Forged")).unwrap();
    // No signature at all.
    refused_everywhere(
        &mut b.admin,
        &mut third,
        std::slice::from_ref(&op),
        &[],
        |r| matches!(r, Refusal::Unsigned { author, .. } if *author == writer_id),
    );
    // Signed with the forger's key, claimed for the writer.
    let mut tip = forger.sign(book_id, &op);
    tip.author = writer_id;
    let before = snapshot(&b.admin);
    let err = b
        .admin
        .apply(std::slice::from_ref(&op), &[tip])
        .unwrap_err();
    assert!(
        matches!(&err, Error::Refused(r) if r.author() == writer_id),
        "{err}"
    );
    assert_eq!(snapshot(&b.admin), before);
}

#[test]
fn a_removed_device_is_refused_after_its_cutoff_and_a_replayed_removal_changes_nothing() {
    let mut b = book();
    let tmp = b._tmp.path().to_owned();
    let mut third = member_of(&mut b.admin, &tmp.join("third"), &b.clock);
    b.writer.pull_from(&b.admin).unwrap();
    // The writer's first save reaches the admin; then the admin removes it.
    b.writer.add_contact(&person(7, "Before")).unwrap();
    b.admin.pull_from(&b.writer).unwrap();
    let cutoff = b.admin.summary()[&b.writer.id()].seq;
    b.admin.remove_member(b.writer.id()).unwrap();
    // The removed device does not know yet and saves again.
    b.writer.add_contact(&person(8, "After")).unwrap();
    let after: Vec<SealedOp> = b
        .writer
        .ops_since(b.admin.summary())
        .unwrap()
        .into_iter()
        .filter(|o| o.op().author == b.writer.id())
        .collect();
    assert_eq!(after.len(), 1);
    let tips = b.writer.signatures_for(&after).unwrap();
    let writer_id = b.writer.id();
    refused_everywhere(
        &mut b.admin,
        &mut third,
        &after,
        &tips,
        |r| matches!(r, Refusal::Removed { author, after, .. } if *author == writer_id && *after == cutoff),
    );
    assert!(b.admin.contact(&ContactId([7; 16])).unwrap().is_some());
    // The removal reaches the third device; the removed one's later op is refused there too.
    let report = session(&mut third, &mut b.admin).0;
    assert!(report.refused.is_empty(), "{report:?}");
    let before = snapshot(&third);
    let err = third.apply(&after, &tips).unwrap_err();
    assert!(
        matches!(err, Error::Refused(Refusal::Removed { .. })),
        "{err}"
    );
    // Replaying the removal (and everything else) stores nothing new.
    let all: Vec<SealedOp> = b.admin.ops().map(Result::unwrap).collect();
    let all_tips = b.admin.signatures_for(&all).unwrap();
    let replayed = third.apply(&all, &all_tips).unwrap();
    assert_eq!(replayed.stored, 0);
    assert_eq!(snapshot(&third), before);
    // A removed device is never admitted again.
    let err = b
        .admin
        .add_member(writer_id, MemberRole::Write, "again")
        .unwrap_err();
    assert!(
        matches!(err, Error::Member(MemberError::Removed { .. })),
        "{err}"
    );
    assert!(third.verify().unwrap().is_ok());
    // Once the removed device learns of its removal it saves nothing more: refused, its
    // chain unchanged.
    b.writer.pull_from(&b.admin).unwrap();
    let chain = b.writer.summary()[&writer_id];
    let admin_id = b.admin.id();
    let err = b.writer.add_contact(&person(9, "Later")).unwrap_err();
    assert!(
        matches!(err, Error::Refused(Refusal::NoLongerMember { author, after, by })
            if author == writer_id && after == cutoff && by == admin_id),
        "{err}"
    );
    assert_eq!(b.writer.summary()[&writer_id], chain);
}

#[test]
fn a_joined_device_saves_only_once_an_admin_has_admitted_it() {
    let b = book();
    let tmp = b._tmp.path().to_owned();
    let mut admin = b.admin;
    let mut ipad = Replica::join_with(
        &tmp.join("ipad"),
        admin.book(),
        cardlog::Options {
            wall: b.clock.clone(),
            ..cardlog::Options::default()
        },
    )
    .unwrap();
    assert_eq!(ipad.book(), admin.book());
    assert!(ipad.members().is_empty());
    let err = ipad.add_contact(&person(9, "Early")).unwrap_err();
    assert!(matches!(err, Error::Refused(_)), "{err}");
    assert_eq!(ipad.op_count(), 0);
    // Another book's device cannot even complete a handshake with it.
    let mut other = replica(&tmp.join("other"), &b.clock);
    other.add_contact(&person(10, "Elsewhere")).unwrap();
    let (to_ipad, to_other) = failed_session(&mut ipad, &mut other);
    assert!(
        matches!(&to_ipad, SyncError::PeerAborted(why) if why.contains("another address book")),
        "{to_ipad:?}"
    );
    assert!(
        matches!(to_other, SyncError::Handshake(HandshakeError::Decrypt(1))),
        "{to_other:?}"
    );
    assert_eq!(ipad.op_count(), 0);
    // Admitted by the admin's op. The iPad knows no members yet, so it admits no peer until
    // it is paired with one.
    admin
        .add_member(ipad.id(), MemberRole::Write, "Ada's iPad")
        .unwrap();
    let (to_ipad, _) = failed_session(&mut ipad, &mut admin);
    assert!(
        matches!(to_ipad, SyncError::Auth(AuthError::MembersUnknown(d)) if d == admin.id()),
        "{to_ipad:?}"
    );
    ipad.pair(admin.id(), None).unwrap();
    let (report, _) = session(&mut ipad, &mut admin);
    assert!(report.refused.is_empty(), "{report:?}");
    let me = ipad.members().into_iter().find(|(d, _)| *d == ipad.id());
    assert_eq!(
        me.map(|(_, m)| (m.role, m.name)),
        Some((MemberRole::Write, "Ada's iPad".into()))
    );
    ipad.add_contact(&person(9, "Now")).unwrap();
    session(&mut admin, &mut ipad);
    assert!(admin.contact(&ContactId([9; 16])).unwrap().is_some());
    assert!(ipad.verify().unwrap().is_ok() && admin.verify().unwrap().is_ok());
}

#[test]
fn a_removal_retracts_the_ops_it_voids_and_every_order_reaches_the_same_state() {
    let mut b = book();
    let tmp = b._tmp.path().to_owned();
    let mut third = member_of(&mut b.admin, &tmp.join("third"), &b.clock);
    let mut fourth = member_of(&mut b.admin, &tmp.join("fourth"), &b.clock);
    let ada = ContactId([9; 16]);
    b.admin.add_contact(&person(9, "Ada")).unwrap();
    b.writer.pull_from(&b.admin).unwrap();
    third.pull_from(&b.admin).unwrap();
    b.admin.remove_member(b.writer.id()).unwrap();
    fourth.pull_from(&b.admin).unwrap();
    // The removed writer does not know yet: it adds a contact and renames Ada.
    b.writer.add_contact(&person(11, "Concurrent")).unwrap();
    b.writer
        .edit(ada, |c| {
            c.set(Field::Given, "Eve");
        })
        .unwrap()
        .unwrap();
    // The third device takes that in before the removal, and builds on the rename.
    third.pull_from(&b.writer).unwrap();
    // So does a copy keeping ops only (a relay's way, its membership read from its log).
    let ops_only = || cardlog::Options {
        wall: b.clock.clone(),
        keeps: cardlog::Keeps::OpsOnly,
        database: cardlog::Database::Journal,
        ..cardlog::Options::default()
    };
    let mut copy = Replica::join_with(&tmp.join("copy"), b.admin.book(), ops_only()).unwrap();
    copy.pull_from(&third).unwrap();
    assert_eq!(copy.summary(), third.summary());
    assert!(third.contact(&ContactId([11; 16])).unwrap().is_some());
    third
        .edit(ada, |c| {
            c.set(Field::Given, "Eva");
        })
        .unwrap()
        .unwrap();
    // The removal reaches it: the writer's ops are retracted, its own edit stays, and the
    // value the writer replaced is back beside it (a conflict, visible, nothing lost).
    third.pull_from(&b.admin).unwrap();
    assert!(third.contact(&ContactId([11; 16])).unwrap().is_none());
    let given = Path::Field(Field::Given);
    let heads: Vec<Option<String>> = third
        .heads(&ada, &given)
        .unwrap()
        .iter()
        .map(|h| h.value.as_ref().map(|v| v.to_string()))
        .collect();
    assert_eq!(heads.len(), 2, "{heads:?}");
    assert!(third.verify().unwrap().is_ok());
    // Read from its op log alone (the removal comes after the ops it voids there), the third
    // device shows the same state.
    let alone = Replica::open_read_only(
        &tmp.join("third"),
        cardlog::Options {
            wall: b.clock.clone(),
            ..cardlog::Options::default()
        },
    )
    .unwrap();
    assert_eq!(alone.state_digest().unwrap(), third.state_digest().unwrap());
    drop(alone);
    // The admin takes the third's ops: the writer's void ones come with them (the third's
    // edit replaces one of their writes) and are kept without effect.
    let report = b.admin.pull_from(&third).unwrap();
    assert!(report.stored >= 3, "{report:?}");
    assert_eq!(
        b.admin.state_digest().unwrap(),
        third.state_digest().unwrap()
    );
    assert!(b.admin.contact(&ContactId([11; 16])).unwrap().is_none());
    assert!(b.admin.verify().unwrap().is_ok());
    // The copy takes the removal (its void ops retracted without registers to rebuild) and
    // the rest; reopened, it passes on what a new device then reads as the others do.
    copy.pull_from(&b.admin).unwrap();
    copy.pull_from(&third).unwrap();
    assert!(copy.verify().unwrap().is_ok());
    drop(copy);
    let copy = Replica::open_with(&tmp.join("copy"), ops_only()).unwrap();
    assert_eq!(copy.summary(), b.admin.summary());
    assert!(copy.verify().unwrap().is_ok());
    // Its membership and cutoffs are the admin's (the writer's removal included).
    assert_eq!(copy.membership().cutoffs(), b.admin.membership().cutoffs());
    assert!(copy.membership().cutoff(&b.writer.id()).is_some());
    assert_eq!(
        copy.membership().members().count(),
        b.admin.membership().members().count()
    );
    let mut fresh = Replica::join_with(
        &tmp.join("fresh"),
        b.admin.book(),
        cardlog::Options {
            wall: b.clock.clone(),
            ..cardlog::Options::default()
        },
    )
    .unwrap();
    fresh.pull_from(&copy).unwrap();
    assert_eq!(
        fresh.state_digest().unwrap(),
        b.admin.state_digest().unwrap()
    );
    drop(copy);
    // A fourth device that held the removal first refuses the void ops alone, and gets the
    // same state over a session with the third.
    let before = fourth.summary().clone();
    fourth
        .pull_from(&b.writer)
        .expect_err("the writer's void ops alone are refused");
    assert_eq!(fourth.summary(), &before);
    let (_, received) = session(&mut third, &mut fourth);
    assert!(received.refused.is_empty(), "{received:?}");
    assert_eq!(
        fourth.state_digest().unwrap(),
        third.state_digest().unwrap()
    );
    // The writer saves once more, still unaware. A removed device is no longer let into a
    // session: the fourth refuses it after the handshake, before sending or taking anything,
    // and tells it why.
    b.writer.add_contact(&person(12, "Unaware")).unwrap();
    let before = fourth.summary().clone();
    let (to_writer, to_fourth) = failed_session(&mut b.writer, &mut fourth);
    assert!(
        matches!(to_fourth, SyncError::Auth(AuthError::Removed(d)) if d == b.writer.id()),
        "{to_fourth:?}"
    );
    assert!(
        matches!(&to_writer, SyncError::PeerAborted(why) if why.contains("was removed")),
        "{to_writer:?}"
    );
    assert_eq!(fourth.summary(), &before);
    // Taken by other means (in process here), the removal stops the writer's saves.
    b.writer.pull_from(&fourth).unwrap();
    assert!(b.writer.add_contact(&person(13, "Informed")).is_err());
    assert_eq!(
        fourth.state_digest().unwrap(),
        third.state_digest().unwrap()
    );
    // Reopened, each keeps the retraction; verify and rebuild agree.
    let dir = tmp.join("third");
    drop(third);
    let mut third = cardlog::Replica::open(&dir).unwrap();
    assert!(third.verify().unwrap().is_ok());
    let digest = third.state_digest().unwrap();
    third.rebuild().unwrap();
    assert_eq!(third.state_digest().unwrap(), digest);
    assert_eq!(digest, b.admin.state_digest().unwrap());
}

#[test]
fn a_retraction_cut_off_by_a_failing_database_is_finished_when_the_store_opens() {
    use cardlog::{Options, Store};
    use cardlog_store::log::{FileLog, LOG_FILE};
    use cardlog_store::state::kv::FaultyKv;
    use cardlog_store::state::sled_kv::SledKv;

    let mut b = book();
    let dir = b._tmp.path().join("third");
    let mut third = member_of(&mut b.admin, &dir, &b.clock);
    b.writer.pull_from(&b.admin).unwrap();
    b.admin.remove_member(b.writer.id()).unwrap();
    // The writer's concurrent save reaches the third device before the removal.
    b.writer.add_contact(&person(11, "Concurrent")).unwrap();
    third.pull_from(&b.writer).unwrap();
    let removal = b.admin.ops_since(third.summary()).unwrap();
    let tips = b.admin.signatures_for(&removal).unwrap();
    drop(third);
    let pristine = b._tmp.path().join("pristine");
    copy_dir(&dir, &pristine);
    let voided = ContactId([11; 16]);
    let options = || Options {
        wall: b.clock.clone(),
        ..Options::default()
    };
    // Database writes fail after `budget` of them, at every point of taking the removal in.
    for budget in 0..40 {
        std::fs::remove_dir_all(&dir).unwrap();
        copy_dir(&pristine, &dir);
        let writes = Arc::new(std::sync::atomic::AtomicU64::new(u64::MAX));
        let kv = SledKv::open(&dir.join("db"), 1 << 20).unwrap();
        let log = FileLog::open(&dir.join(LOG_FILE), false).unwrap();
        let store = Store::open_parts(
            Box::new(FaultyKv::sharing(kv, writes.clone())),
            Box::new(log),
            &dir,
        )
        .unwrap();
        let mut third = Replica::from_store(store, options()).unwrap();
        writes.store(budget, std::sync::atomic::Ordering::SeqCst);
        let done = third.apply(&removal, &tips).is_ok();
        drop(third);
        let third = Replica::open_with(&dir, options()).unwrap();
        let report = third.verify().unwrap();
        assert!(report.is_ok(), "budget {budget}: {:?}", report.problems);
        let removed = third
            .membership()
            .member(&b.writer.id())
            .is_some_and(|m| m.removed.is_some());
        assert_eq!(
            third.contact(&voided).unwrap().is_some(),
            !removed,
            "budget {budget}: the voided save is visible exactly while the removal is not held"
        );
        if done {
            assert!(removed);
            return;
        }
    }
    panic!("the removal was never taken in");
}

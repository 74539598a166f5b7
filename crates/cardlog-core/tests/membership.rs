//! Membership: the rules of docs/SECURITY.md ("Membership") case by case, and the property
//! that makes them safe to replicate: the members follow from the *set* of membership ops,
//! whatever order they are taken in or folded one by one.
#![allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::panic)]

use std::collections::BTreeMap;

use cardlog_core::codec::OpFormat;
use cardlog_core::{
    BookId, ContactId, DeviceId, DeviceKey, Hlc, MemberChange, MemberRole, Membership, Op, OpId,
    Path, Refusal, SealedOp, SignedTip, Standing, Value, Write, VOID_WINDOW,
};
use proptest::prelude::*;

const NONCE: [u8; 16] = [0x33; 16];

/// Devices 0..n with fixed keys; device 0 founds the book. Each device's chain is tracked so
/// the ops it writes are valid ops of its chain.
struct Book {
    keys: Vec<DeviceKey>,
    tips: BTreeMap<DeviceId, (u64, OpId)>,
    clock: u64,
    ops: Vec<SealedOp>,
}

impl Book {
    fn new(devices: u8) -> Self {
        let keys: Vec<DeviceKey> = (1..=devices)
            .map(|n| DeviceKey::from_seed(&[n; 32]))
            .collect();
        let mut book = Self {
            keys,
            tips: BTreeMap::new(),
            clock: 1_000,
            ops: Vec::new(),
        };
        let key = book.keys[0].public();
        book.write(
            0,
            vec![],
            vec![MemberChange::Found {
                nonce: NONCE,
                key,
                name: "founder".into(),
            }],
        );
        book
    }

    fn id(&self) -> BookId {
        BookId::founded_by(&self.keys[0].public(), &NONCE)
    }

    fn device(&self, n: usize) -> DeviceId {
        self.keys[n].device()
    }

    /// The next op of device `n`, not yet recorded as written.
    fn next(&mut self, n: usize, writes: Vec<Write>, members: Vec<MemberChange>) -> SealedOp {
        let author = self.device(n);
        let tip = self.tips.get(&author).copied();
        self.clock += 1;
        Op {
            author,
            seq: tip.map_or(0, |t| t.0) + 1,
            prev: tip.map(|t| t.1),
            hlc: Hlc {
                wall_ms: self.clock,
                counter: 0,
            },
            writes,
            members,
        }
        .seal()
        .unwrap()
    }

    /// Device `n` writes an op (recorded in `ops` if it changes members).
    fn write(&mut self, n: usize, writes: Vec<Write>, members: Vec<MemberChange>) -> SealedOp {
        let op = self.next(n, writes, members);
        self.tips.insert(op.op().author, (op.op().seq, op.id()));
        if op.op().is_membership() {
            self.ops.push(op.clone());
        }
        op
    }

    fn add(&mut self, by: usize, who: usize, role: MemberRole) -> SealedOp {
        let device = self.device(who);
        self.write(
            by,
            vec![],
            vec![MemberChange::Add {
                device,
                role,
                name: format!("device {who}"),
            }],
        )
    }

    /// `by` removes `who`, keeping `who`'s ops up to `after`.
    fn remove(&mut self, by: usize, who: usize, after: u64) -> SealedOp {
        let device = self.device(who);
        self.write(by, vec![], vec![MemberChange::Remove { device, after }])
    }

    fn save(&mut self, n: usize) -> SealedOp {
        let contact = ContactId([n as u8; 16]);
        self.write(
            n,
            vec![Write {
                contact,
                path: Path::Exists,
                value: Some(Value::Bool(true)),
                replaces: vec![],
            }],
            vec![],
        )
    }

    fn seq(&self, n: usize) -> u64 {
        self.tips.get(&self.device(n)).map_or(0, |t| t.0)
    }

    fn membership(&self) -> Membership {
        Membership::compute(self.id(), self.ops.clone())
    }
}

#[test]
fn members_write_what_their_roles_allow() {
    let mut book = Book::new(4);
    let before = Membership::new(book.id());
    let save = book.save(1);
    assert_eq!(
        before.check(&save),
        Err(Refusal::NotFounded {
            author: book.device(1),
            seq: 1
        })
    );
    assert_eq!(before.check(&book.ops[0]), Ok(()));
    book.add(0, 1, MemberRole::Write);
    book.add(0, 2, MemberRole::Read);
    let m = book.membership();
    assert_eq!(m.founder(), Some(book.device(0)));
    assert_eq!(m.member(&book.device(1)).unwrap().role, MemberRole::Write);
    assert_eq!(
        m.member(&book.device(1)).unwrap().added_by,
        Some(book.device(0))
    );
    // The writer saves; the reader cannot save nor change members; a stranger cannot do
    // anything.
    assert_eq!(m.check(&save), Ok(()));
    let read_save = book.next(2, book_write(2), vec![]);
    assert_eq!(
        m.check(&read_save),
        Err(Refusal::CannotWrite {
            author: book.device(2),
            role: MemberRole::Read
        })
    );
    let device = book.device(3);
    let read_add = book.next(
        2,
        vec![],
        vec![MemberChange::Add {
            device,
            role: MemberRole::Admin,
            name: "x".into(),
        }],
    );
    assert_eq!(
        m.check(&read_add),
        Err(Refusal::NotAdmin {
            author: book.device(2),
            role: MemberRole::Read
        })
    );
    let stranger = book.next(3, book_write(3), vec![]);
    assert_eq!(
        m.check(&stranger),
        Err(Refusal::NotMember {
            author: book.device(3)
        })
    );
    // A writer's member change is not an admin's.
    let writer_add = book.next(
        1,
        vec![],
        vec![MemberChange::Add {
            device,
            role: MemberRole::Write,
            name: "x".into(),
        }],
    );
    assert!(matches!(
        m.check(&writer_add),
        Err(Refusal::NotAdmin { .. })
    ));
    // And its Add, if it were stored anyway, admits nobody.
    assert!(m.with(&writer_add).member(&book.device(3)).is_none());
}

fn book_write(n: u8) -> Vec<Write> {
    vec![Write {
        contact: ContactId([n; 16]),
        path: Path::Exists,
        value: Some(Value::Bool(true)),
        replaces: vec![],
    }]
}

#[test]
fn another_books_founding_op_is_refused() {
    let book = Book::new(2);
    let other = {
        let key = DeviceKey::from_seed(&[9; 32]);
        Op {
            author: key.device(),
            seq: 1,
            prev: None,
            hlc: Hlc::default(),
            writes: vec![],
            members: vec![MemberChange::Found {
                nonce: NONCE,
                key: key.public(),
                name: "x".into(),
            }],
        }
        .seal()
        .unwrap()
    };
    for m in [Membership::new(book.id()), book.membership()] {
        assert!(matches!(m.check(&other), Err(Refusal::OtherBook { .. })));
        // Its founding op among the ops founds nothing here.
        assert_eq!(
            Membership::compute(book.id(), [other.clone()]).founder(),
            None
        );
    }
}

#[test]
fn a_removed_device_keeps_its_ops_up_to_the_cutoff_only() {
    let mut book = Book::new(3);
    book.add(0, 1, MemberRole::Write);
    let kept = book.save(1);
    let seen = book.seq(1);
    let concurrent = book.save(1); // written before the removal reached it
    book.remove(0, 1, seen);
    let m = book.membership();
    assert_eq!(m.check(&kept), Ok(()));
    assert_eq!(
        m.check(&concurrent),
        Err(Refusal::Removed {
            author: book.device(1),
            seq: seen + 1,
            after: seen,
            by: book.device(0)
        })
    );
    assert_eq!(m.cutoff(&book.device(1)), Some(seen));
    // Received, the concurrent op is kept void; one past the window is refused.
    assert_eq!(m.standing(&kept), Ok(Standing::Valid));
    assert_eq!(m.standing(&concurrent), Ok(Standing::Void));
    let cutoffs = m.cutoffs();
    assert!(!cutoffs.voids(&book.device(1), seen) && cutoffs.voids(&book.device(1), seen + 1));
    assert_eq!(
        cutoffs.changed_from(&Membership::new(book.id()).cutoffs()),
        vec![(book.device(1), seen)]
    );
    let last_void = seen + VOID_WINDOW;
    let tip = book.tips[&book.device(1)].1;
    book.tips.insert(book.device(1), (last_void - 1, tip));
    assert_eq!(m.standing(&book.save(1)), Ok(Standing::Void));
    let beyond = book.save(1);
    assert!(matches!(
        m.standing(&beyond),
        Err(Refusal::Removed { seq, .. }) if seq == last_void + 1
    ));
    // Adding it again does not lift the cutoff.
    book.add(0, 1, MemberRole::Admin);
    assert_eq!(book.membership().cutoff(&book.device(1)), Some(seen));
}

#[test]
fn a_removed_admins_later_changes_are_void() {
    let mut book = Book::new(4);
    book.add(0, 1, MemberRole::Admin);
    book.add(1, 2, MemberRole::Write); // before its removal: stays
    let seen = book.seq(1);
    book.add(1, 3, MemberRole::Admin); // after the cutoff: void
    book.remove(1, 2, 0); // after the cutoff: void
    book.remove(0, 1, seen);
    let m = book.membership();
    assert!(m.member(&book.device(2)).is_some());
    assert_eq!(m.cutoff(&book.device(2)), None);
    assert!(m.member(&book.device(3)).is_none());
    assert_eq!(m.cutoff(&book.device(1)), Some(seen));
    // The device only the void change added writes: its ops are void, not valid, and kept
    // (where needed) like the removed admin's own.
    let by_void_admin = book.save(3);
    assert_eq!(m.standing(&by_void_admin), Ok(Standing::Void));
    assert!(m.cutoffs().voids(&book.device(3), 1));
    assert_eq!(
        m.check(&by_void_admin),
        Err(Refusal::NotMember {
            author: book.device(3)
        })
    );
}

#[test]
fn admins_removing_each_other_the_senior_one_counts() {
    let mut book = Book::new(3);
    book.add(0, 1, MemberRole::Admin);
    let founder_seen = book.seq(0);
    let admin_seen = book.seq(1);
    // Concurrently: neither has seen the other's removal.
    book.remove(1, 0, founder_seen);
    book.remove(0, 1, admin_seen);
    let m = book.membership();
    assert_eq!(m.cutoff(&book.device(1)), Some(admin_seen));
    assert_eq!(m.cutoff(&book.device(0)), None);
}

#[test]
fn a_junior_admin_removes_a_lost_senior_one() {
    // The founder's phone is lost; an admin removes it. Whatever the phone writes after the
    // cutoff (here, removing a writer) is void.
    let mut book = Book::new(3);
    book.add(0, 1, MemberRole::Admin);
    book.add(0, 2, MemberRole::Write);
    let seen = book.seq(0);
    book.remove(1, 0, seen);
    book.remove(0, 2, 0);
    let m = book.membership();
    assert_eq!(m.cutoff(&book.device(0)), Some(seen));
    assert_eq!(m.cutoff(&book.device(2)), None);
}

#[test]
fn roles_only_grow() {
    let mut book = Book::new(3);
    book.add(0, 1, MemberRole::Admin);
    book.add(1, 2, MemberRole::Write);
    book.add(0, 2, MemberRole::Read);
    let m = book.membership();
    assert_eq!(m.member(&book.device(2)).unwrap().role, MemberRole::Write);
    assert_eq!(m.member(&book.device(2)).unwrap().name, "device 2");
}

#[test]
fn adopted_format_1_chains_are_accepted_up_to_their_tip() {
    let mut book = Book::new(1);
    let legacy = DeviceId([0x77; 16]);
    let chain: Vec<SealedOp> = (1..=3u64)
        .scan(None, |prev: &mut Option<OpId>, seq| {
            let op = Op {
                author: legacy,
                seq,
                prev: *prev,
                hlc: Hlc {
                    wall_ms: seq,
                    counter: 0,
                },
                writes: book_write(7),
                members: vec![],
            }
            .seal_in(OpFormat::V1)
            .unwrap();
            *prev = Some(op.id());
            Some(op)
        })
        .collect();
    book.write(
        0,
        vec![],
        vec![MemberChange::Adopt {
            author: legacy,
            seq: 2,
            tip: chain[1].id(),
        }],
    );
    let m = book.membership();
    assert_eq!(m.check(&chain[0]), Ok(()));
    assert_eq!(m.check(&chain[1]), Ok(()));
    assert_eq!(
        m.check(&chain[2]),
        Err(Refusal::NotAdopted {
            author: legacy,
            seq: 3
        })
    );
    // Another op at the adopted seq is refused; a format-2 op of the legacy author too.
    let other = Op {
        writes: book_write(8),
        ..chain[1].op().clone()
    }
    .seal_in(OpFormat::V1)
    .unwrap();
    assert!(matches!(
        m.check(&other),
        Err(Refusal::AdoptedTipMismatch { seq: 2, .. })
    ));
    let v2 = chain[0].op().clone().seal().unwrap();
    assert_eq!(
        m.check(&v2),
        Err(Refusal::NoKey {
            author: legacy,
            seq: 1
        })
    );
}

// ---- the property --------------------------------------------------------------------------

/// One step of a generated history: who does what to whom.
#[derive(Debug, Clone)]
enum Step {
    Add { by: usize, who: usize, role: u8 },
    Remove { by: usize, who: usize, lag: u64 },
    Save { by: usize },
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        (0..5usize, 1..5usize, 0..4u8).prop_map(|(by, who, role)| Step::Add { by, who, role }),
        (0..5usize, 0..5usize, 0..3u64).prop_map(|(by, who, lag)| Step::Remove { by, who, lag }),
        (0..5usize).prop_map(|by| Step::Save { by }),
    ]
}

/// Writes the steps (whoever the generator picks: members or not, admins or not), returning
/// the book; every membership op ends up in `book.ops`.
fn play(steps: &[Step]) -> Book {
    let mut book = Book::new(5);
    for step in steps {
        match *step {
            Step::Add { by, who, role } => {
                book.add(by, who, MemberRole::ALL[usize::from(role) % 4]);
            }
            Step::Remove { by, who, lag } => {
                let after = book.seq(who).saturating_sub(lag);
                book.remove(by, who, after);
            }
            Step::Save { by } => {
                book.save(by);
            }
        }
    }
    book
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn members_follow_from_the_set_of_ops(
        steps in prop::collection::vec(step(), 0..24),
        seed in any::<u64>(),
    ) {
        let book = play(&steps);
        let expected = book.membership();
        // Any order of the same ops.
        let mut shuffled = book.ops.clone();
        cardlog_core::seeded::shuffle(&mut shuffled, seed);
        let m = Membership::compute(book.id(), shuffled.clone());
        prop_assert_eq!(&m, &expected);
        // Folded one op at a time, in that order.
        let folded = shuffled
            .iter()
            .fold(Membership::new(book.id()), |m, op| m.with(op));
        prop_assert_eq!(&folded, &expected);
        // Every member other than the founder was admitted by a member that is an admin.
        for (device, member) in expected.members() {
            match member.added_by {
                None => prop_assert_eq!(Some(*device), expected.founder()),
                Some(by) => prop_assert_eq!(
                    expected.member(&by).map(|m| m.role),
                    Some(MemberRole::Admin)
                ),
            }
        }
    }
}

// ---- admitting received batches ----------------------------------------------------------

impl Book {
    fn tip(&self, n: usize, op: &SealedOp) -> SignedTip {
        SignedTip {
            author: op.op().author,
            key: self.keys[n].public(),
            seq: op.op().seq,
            op: op.id(),
            signature: self.keys[n].sign_tip(&self.id(), &op.id()),
        }
    }
}

#[test]
fn a_joining_replica_admits_the_founding_ops_and_the_writers_they_admit() {
    // One batch: the founder's two ops (signed at the second), then the new writer's two saves
    // (signed at the second). The writer's signature can only be checked once the Add is in.
    let mut book = Book::new(2);
    let add = book.add(0, 1, MemberRole::Write);
    let s1 = book.save(1);
    let s2 = book.save(1);
    let ops = vec![book.ops[0].clone(), add.clone(), s1, s2.clone()];
    let tips = [book.tip(0, &add), book.tip(1, &s2)];
    let (admitted, after) = Membership::new(book.id()).admit(&ops, &tips, |_, _| None);
    assert_eq!(admitted.ops, ops);
    assert_eq!(admitted.refused, []);
    assert_eq!(admitted.tips.len(), 2);
    assert_eq!(after, book.membership());
    // In any order: a message's segments come in author order, so the writer's saves can
    // come before the ops that found the book and admit it.
    for seed in 0..24 {
        let mut shuffled = ops.clone();
        cardlog_core::seeded::shuffle(&mut shuffled, seed);
        let (admitted, after) = Membership::new(book.id()).admit(&shuffled, &tips, |_, _| None);
        assert_eq!(admitted.refused, [], "seed {seed}");
        assert_eq!(admitted.ops.len(), ops.len(), "seed {seed}");
        assert_eq!(after, book.membership(), "seed {seed}");
    }
}

#[test]
fn forged_unsigned_and_unknown_ops_are_refused_by_author_and_the_rest_admitted() {
    let mut book = Book::new(4);
    let add = book.add(0, 1, MemberRole::Write);
    let m = book.membership();
    let good = book.save(1);
    let stranger = book.save(3);
    // Device 2 (not a member) signs its own op; device 1's op is "signed" by device 2, with
    // device 1's key named, or with its own.
    let forged_sig = SignedTip {
        signature: book.keys[2].sign_tip(&book.id(), &good.id()),
        ..book.tip(1, &good)
    };
    let wrong_key = SignedTip {
        key: book.keys[2].public(),
        ..forged_sig
    };
    let (admitted, _) = m.admit(std::slice::from_ref(&good), &[wrong_key], |_, _| None);
    assert!(matches!(
        admitted.refused[..],
        [Refusal::BadSignature { .. }]
    ));
    let (admitted, _) = m.admit(
        &[good.clone(), stranger.clone()],
        &[forged_sig, book.tip(3, &stranger)],
        |a, s| (*a == book.device(0) && s <= 2).then_some(add.id()),
    );
    assert_eq!(admitted.ops, []);
    assert_eq!(
        admitted.refused,
        [
            Refusal::BadSignature {
                author: book.device(1),
                seq: 1
            },
            Refusal::NotMember {
                author: book.device(3)
            }
        ]
        .into_iter()
        .collect::<Vec<_>>()
    );
    // Without any signature: unsigned. With the right one: admitted, beside a refused stranger.
    let (admitted, _) = m.admit(std::slice::from_ref(&good), &[], |_, _| None);
    assert_eq!(
        admitted.refused,
        [Refusal::Unsigned {
            author: book.device(1),
            seq: 1
        }]
    );
    let (admitted, _) = m.admit(
        &[good.clone(), stranger.clone()],
        &[book.tip(1, &good), book.tip(3, &stranger)],
        |_, _| None,
    );
    assert_eq!(admitted.ops, std::slice::from_ref(&good));
    assert_eq!(
        admitted.refused,
        [Refusal::NotMember {
            author: book.device(3)
        }]
    );
    // A signature of a later op covers an op only through the chain between them: not when
    // the op in between is missing, nor when another op (a forgery) stands in its place.
    let one = book.save(1);
    let two = book.save(1);
    let three = book.save(1);
    let forged_two = book.next(1, book_write(7), vec![]);
    let held = |_: &DeviceId, _: u64| None;
    let (admitted, _) = m.admit(
        &[one.clone(), two.clone(), three.clone()],
        &[book.tip(1, &three)],
        held,
    );
    assert_eq!(admitted.refused, []);
    let (admitted, _) = m.admit(&[one.clone(), three.clone()], &[book.tip(1, &three)], held);
    assert!(matches!(admitted.refused[..], [Refusal::Unsigned { .. }]));
    let mut forged = forged_two.op().clone();
    forged.seq = two.op().seq;
    forged.prev = two.op().prev;
    let forged = forged.seal().unwrap();
    let (admitted, _) = m.admit(&[one, forged, three.clone()], &[book.tip(1, &three)], held);
    assert!(matches!(admitted.refused[..], [Refusal::Unsigned { .. }]));
    // A signature of another op at the same seq covers nothing.
    let other = book.next(1, book_write(9), vec![]);
    let (admitted, _) = m.admit(&[good], &[book.tip(1, &other)], |_, _| None);
    assert!(matches!(admitted.refused[..], [Refusal::Unsigned { .. }]));
}

#[test]
fn a_batch_settles_void_ops_against_its_final_membership_and_keeps_only_needed_ones() {
    let mut book = Book::new(3);
    let found = book.ops[0].clone();
    let add1 = book.add(0, 1, MemberRole::Write);
    let add2 = book.add(0, 2, MemberRole::Write);
    let kept = book.save(1);
    let m = book.membership();
    let concurrent = book.save(1); // device 1 has not heard of its removal yet
    let removal = book.remove(0, 1, kept.op().seq);
    // Device 2 edits on top of the concurrent save.
    let built = book.write(
        2,
        vec![Write {
            contact: ContactId([1; 16]),
            path: Path::Exists,
            value: Some(Value::Bool(false)),
            replaces: vec![concurrent.id()],
        }],
        vec![],
    );
    let held: BTreeMap<(DeviceId, u64), OpId> = [&found, &add1, &add2, &kept]
        .into_iter()
        .map(|op| ((op.op().author, op.op().seq), op.id()))
        .collect();
    let lookup = |a: &DeviceId, s: u64| held.get(&(*a, s)).copied();
    let tips = [
        book.tip(1, &concurrent),
        book.tip(0, &removal),
        book.tip(2, &built),
    ];
    // The removal comes in the same batch as the op it voids, in either order: nothing
    // needs the void op, so it is refused, whichever author the batch met first.
    for batch in [
        vec![concurrent.clone(), removal.clone()],
        vec![removal.clone(), concurrent.clone()],
    ] {
        let (admitted, after) = m.admit(&batch, &tips, lookup);
        assert_eq!(admitted.ops, std::slice::from_ref(&removal));
        assert_eq!(admitted.void, 0);
        assert!(matches!(
            admitted.refused[..],
            [Refusal::Removed { author, .. }] if author == book.device(1)
        ));
        assert_eq!(after.cutoff(&book.device(1)), Some(kept.op().seq));
    }
    // With device 2's edit on top of it, the void op is kept (without effect) so that the
    // edit applies.
    let batch = [concurrent.clone(), removal.clone(), built.clone()];
    let (admitted, _) = m.admit(&batch, &tips, lookup);
    assert_eq!(admitted.ops, batch);
    assert_eq!(admitted.void, 1);
    assert!(admitted.refused.is_empty(), "{:?}", admitted.refused);
}

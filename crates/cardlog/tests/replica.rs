//! Every `Replica` call through the public API, on real stores in temporary directories with
//! fake wall clocks: saving, reading, history, conflicts, ops from elsewhere, durability across
//! reopen, bulk mode, refusal of bad input, poisoning after a failed write, copy detection,
//! verify and rebuild.
#![allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    clippy::panic,
    clippy::expect_used
)]

use std::path::{Path as FsPath, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use cardlog::{
    Batch, Contact, ContactId, EditError, Error, Field, ItemBody, ItemId, OpenError, Options, Path,
    Replica, Summary, Value,
};
use cardlog_core::{Device, FakeClock, WallClock};
use cardlog_store::state::{FaultyKv, SledKv};
use cardlog_store::{Store, StoreError};

mod common;

/// 2026-11-22T09:00:00Z.
const NINE_MS: u64 = 1_795_338_000_000;
const MIN_MS: i64 = 60_000;

struct Node {
    dir: PathBuf,
    clock: Arc<FakeClock>,
    replica: Option<Replica>,
}

impl Node {
    fn create(root: &FsPath, name: &str) -> Self {
        let clock = Arc::new(FakeClock::new(NINE_MS));
        let dir = root.join(name);
        let replica = Replica::create_with(&dir, options(&clock)).unwrap();
        Self {
            dir,
            clock,
            replica: Some(replica),
        }
    }

    /// A new node in `admin`'s book, added by it as a writer, holding what it holds.
    fn member(root: &FsPath, name: &str, admin: &mut Node) -> Self {
        let clock = Arc::new(FakeClock::new(NINE_MS));
        let dir = root.join(name);
        let mut replica = Replica::join_with(&dir, admin.r().book(), options(&clock)).unwrap();
        admin
            .r()
            .add_member(replica.id(), cardlog::MemberRole::Write, name)
            .unwrap();
        replica.pull_from(admin.r()).unwrap();
        Self {
            dir,
            clock,
            replica: Some(replica),
        }
    }

    fn r(&mut self) -> &mut Replica {
        self.replica.as_mut().unwrap()
    }

    fn reopen(&mut self) {
        drop(self.replica.take());
        self.replica = Some(Replica::open_with(&self.dir, options(&self.clock)).unwrap());
    }
}

fn options(clock: &Arc<FakeClock>) -> Options {
    Options {
        wall: clock.clone(),
        ..Options::default()
    }
}

/// Sends `from`'s ops that `to` lacks, the way the sync layer does.
fn push(from: &mut Node, to: &mut Node) -> usize {
    let summary: Summary = to.r().summary().clone();
    let ops = from.r().ops_since(&summary).unwrap();
    let tips = from.r().signatures_for(&ops).unwrap();
    let report = to.r().apply(&ops, &tips).unwrap();
    assert!(report.missing.is_empty(), "{:?}", report.missing);
    report.stored
}

fn sync(a: &mut Node, b: &mut Node) {
    push(a, b);
    push(b, a);
    assert_eq!(a.r().summary(), b.r().summary());
    assert_eq!(a.r().state_bytes().unwrap(), b.r().state_bytes().unwrap());
}

fn sample(n: u8) -> Contact {
    let mut c = Contact::new(ContactId([n; 16]));
    c.set(Field::Given, "Grace").set(Field::Family, "Hopper");
    c.phones.push(cardlog::Item {
        id: ItemId([0xa0 + n; 16]),
        label: "mobile".into(),
        body: ItemBody::Text("+1 555 0100".into()),
    });
    c.tags.insert("navy".into());
    c.custom.insert("X-RANK".into(), "Rear Admiral".into());
    c
}

fn text(s: &str) -> Option<Value> {
    Some(Value::Text(s.into()))
}

fn listing(dir: &FsPath) -> Vec<(String, Vec<u8>)> {
    let mut out: Vec<(String, Vec<u8>)> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let p = e.unwrap().path();
            let bytes = if p.is_file() {
                std::fs::read(&p).unwrap()
            } else {
                Vec::new()
            };
            (p.display().to_string(), bytes)
        })
        .collect();
    out.sort();
    out
}

#[test]
fn add_read_list_and_reopen() {
    let tmp = tempfile::tempdir().unwrap();
    let mut n = Node::create(tmp.path(), "a");
    let c = sample(1);
    n.r().add_contact(&c).unwrap();
    assert_eq!(
        n.r().add_contact(&c).unwrap_err(),
        Error::Edit(EditError::Exists(c.id)),
        "adding the same contact twice"
    );
    let got = n.r().contact(&c.id).unwrap().unwrap();
    assert_eq!(got.contact, c);
    assert!(!got.deleted);
    assert_eq!(n.r().contacts().unwrap().len(), 1);
    assert_eq!(n.r().contact(&ContactId([9; 16])).unwrap(), None);

    let before = n.r().state_bytes().unwrap();
    n.reopen();
    assert_eq!(n.r().contact(&c.id).unwrap().unwrap().contact, c);
    assert_eq!(n.r().state_bytes().unwrap(), before);
    assert!(n.r().verify().unwrap().is_ok());
}

#[test]
fn a_cache_of_zero_or_one_byte_opens_with_the_smallest_cache() {
    // sled panics on a cache under 256 bytes: the store raises it to CACHE_BYTES_MIN.
    let tmp = tempfile::tempdir().unwrap();
    let clock = Arc::new(FakeClock::new(NINE_MS));
    for (i, cache_bytes) in [0, 1, 255].into_iter().enumerate() {
        let dir = tmp.path().join(format!("r{i}"));
        let o = Options {
            cache_bytes,
            ..options(&clock)
        };
        let mut r = Replica::create_with(&dir, o.clone()).unwrap();
        let c = sample(1);
        r.add_contact(&c).unwrap();
        drop(r);
        let r = Replica::open_with(&dir, o).unwrap();
        assert_eq!(r.contact(&c.id).unwrap().unwrap().contact, c);
    }
}

#[test]
fn edit_saves_only_the_changed_fields() {
    let tmp = tempfile::tempdir().unwrap();
    let mut n = Node::create(tmp.path(), "a");
    let c = sample(1);
    n.r().add_contact(&c).unwrap();
    let ops = n.r().op_count();

    assert_eq!(n.r().edit(c.id, |_| {}).unwrap(), None, "nothing changed");
    assert_eq!(n.r().op_count(), ops, "a no-op edit saves nothing");

    let id = n
        .r()
        .edit(c.id, |c| {
            c.set(Field::Title, "Commodore");
        })
        .unwrap()
        .unwrap();
    let op = n.r().op(&id).unwrap().unwrap();
    let paths: Vec<String> = op.op().writes.iter().map(|w| w.path.to_string()).collect();
    assert_eq!(paths, ["exists", "title"], "only the title (and existence)");
    assert_eq!(
        n.r()
            .contact(&c.id)
            .unwrap()
            .unwrap()
            .contact
            .get(Field::Title),
        Some("Commodore")
    );
    assert_eq!(
        n.r().edit(ContactId([7; 16]), |_| {}).unwrap_err(),
        Error::Edit(EditError::NotFound(ContactId([7; 16])))
    );
}

#[test]
fn delete_and_restore_keep_the_contact_and_its_history() {
    let tmp = tempfile::tempdir().unwrap();
    let mut n = Node::create(tmp.path(), "a");
    let c = sample(1);
    n.r().add_contact(&c).unwrap();
    assert_eq!(
        n.r().restore(c.id).unwrap_err(),
        Error::Edit(EditError::NotDeleted(c.id))
    );
    n.r().delete(c.id).unwrap();

    assert!(n.r().contacts().unwrap().is_empty());
    let all = n.r().contacts_with_deleted().unwrap();
    assert_eq!(all.len(), 1);
    assert!(all[0].deleted);
    assert_eq!(all[0].contact.get(Field::Given), Some("Grace"));
    assert_eq!(
        n.r()
            .edit(c.id, |c| {
                c.set(Field::Note, "x");
            })
            .unwrap_err(),
        Error::Edit(EditError::Deleted(c.id))
    );
    assert_eq!(
        n.r().delete(c.id).unwrap_err(),
        Error::Edit(EditError::Deleted(c.id))
    );

    n.r().restore(c.id).unwrap();
    let back = n.r().contact(&c.id).unwrap().unwrap();
    assert!(!back.deleted);
    assert_eq!(back.contact, c);
    let exists = n.r().history(&c.id, &Path::Exists).unwrap();
    let values: Vec<Option<Value>> = exists.iter().map(|v| v.value.clone()).collect();
    assert_eq!(
        values,
        [
            Some(Value::Bool(true)),
            Some(Value::Bool(false)),
            Some(Value::Bool(true))
        ]
    );
}

#[test]
fn history_names_value_device_time_and_op() {
    let tmp = tempfile::tempdir().unwrap();
    let mut a = Node::create(tmp.path(), "a");
    let mut b = Node::member(tmp.path(), "b", &mut a);
    let c = sample(1);
    let first = a.r().add_contact(&c).unwrap();
    sync(&mut a, &mut b);
    b.clock.advance_ms(5 * MIN_MS);
    let second = b
        .r()
        .edit(c.id, |c| {
            c.set(Field::Given, "Amazing Grace");
        })
        .unwrap()
        .unwrap();
    sync(&mut a, &mut b);

    let path = Path::Field(Field::Given);
    let history = a.r().history(&c.id, &path).unwrap();
    assert_eq!(history.len(), 2);
    assert_eq!(history[0].op, first);
    assert_eq!(history[0].author, a.r().id());
    assert_eq!(history[0].value, text("Grace"));
    assert!(!history[0].head);
    assert_eq!(history[1].op, second);
    assert_eq!(history[1].author, b.r().id());
    assert_eq!(history[1].value, text("Amazing Grace"));
    assert_eq!(history[1].hlc.wall_ms, NINE_MS + 5 * 60_000);
    assert_eq!(history[1].replaces, [first]);
    assert!(history[1].head);

    let per_contact = a.r().contact_history(&c.id).unwrap();
    let given = per_contact.iter().find(|(p, _)| *p == path).unwrap();
    assert_eq!(given.1, history);
    assert!(per_contact.iter().any(|(p, _)| *p == Path::Exists));
}

#[test]
fn concurrent_edits_conflict_until_resolved_everywhere() {
    let tmp = tempfile::tempdir().unwrap();
    let mut a = Node::create(tmp.path(), "a");
    let mut b = Node::member(tmp.path(), "b", &mut a);
    let c = sample(1);
    a.r().add_contact(&c).unwrap();
    sync(&mut a, &mut b);
    a.clock.advance_ms(MIN_MS);
    a.r()
        .edit(c.id, |c| {
            c.set(Field::Org, "US Navy");
        })
        .unwrap();
    b.clock.advance_ms(2 * MIN_MS);
    b.r()
        .edit(c.id, |c| {
            c.set(Field::Org, "Remington Rand");
        })
        .unwrap();
    sync(&mut a, &mut b);

    let path = Path::Field(Field::Org);
    for n in [&mut a, &mut b] {
        let conflicts = n.r().conflicts().unwrap();
        assert_eq!(conflicts.len(), 1, "one conflicted path");
        assert_eq!(conflicts[0].0, c.id);
        assert_eq!(conflicts[0].1.path, path);
        assert_eq!(conflicts[0].1.winner.value, text("Remington Rand"));
        assert_eq!(conflicts[0].1.alternatives[0].value, text("US Navy"));
        let view = n.r().contact(&c.id).unwrap().unwrap();
        assert_eq!(view.contact.get(Field::Org), Some("Remington Rand"));
        assert_eq!(view.conflicts.len(), 1);
        assert_eq!(n.r().heads(&c.id, &path).unwrap().head_ops().len(), 2);
    }

    // The losing value is kept by resolving to it.
    a.r().resolve(c.id, path.clone(), text("US Navy")).unwrap();
    sync(&mut a, &mut b);
    for n in [&mut a, &mut b] {
        assert!(n.r().conflicts().unwrap().is_empty());
        let view = n.r().contact(&c.id).unwrap().unwrap();
        assert_eq!(view.contact.get(Field::Org), Some("US Navy"));
    }
    assert_eq!(
        a.r()
            .resolve(ContactId([3; 16]), path, text("x"))
            .unwrap_err(),
        Error::Edit(EditError::NotFound(ContactId([3; 16])))
    );
}

#[test]
fn one_save_can_touch_several_contacts() {
    let tmp = tempfile::tempdir().unwrap();
    let mut a = Node::create(tmp.path(), "a");
    let (c1, c2) = (sample(1), sample(2));
    let mut batch = Batch::new();
    batch.create(&c1).unwrap().create(&c2).unwrap();
    let op = a.r().save(&batch).unwrap();
    // The book's founding op, then the save.
    assert_eq!(a.r().op_count(), 2);
    let contacts: std::collections::BTreeSet<ContactId> =
        op.op().writes.iter().map(|w| w.contact).collect();
    assert_eq!(contacts.len(), 2);
    assert_eq!(a.r().contacts().unwrap().len(), 2);
    assert!(matches!(
        a.r().save(&Batch::new()).unwrap_err(),
        Error::Edit(EditError::Plan(_))
    ));
}

#[test]
fn ops_since_sends_exactly_what_the_peer_lacks() {
    let tmp = tempfile::tempdir().unwrap();
    let mut a = Node::create(tmp.path(), "a");
    let mut b = Node::member(tmp.path(), "b", &mut a);
    for n in 1..=3 {
        a.r().add_contact(&sample(n)).unwrap();
    }
    // The founding op, the op adding b, three creates.
    assert_eq!(a.r().ops_since(&Summary::new()).unwrap().len(), 5);
    assert_eq!(push(&mut a, &mut b), 3);
    assert!(a.r().ops_since(b.r().summary()).unwrap().is_empty());
    a.r()
        .edit(ContactId([2; 16]), |c| {
            c.set(Field::Note, "second");
        })
        .unwrap();
    let missing = a.r().ops_since(b.r().summary()).unwrap();
    assert_eq!(missing.len(), 1);
    assert_eq!(missing[0].op().seq, 6);

    // Applying twice stores nothing new.
    let tips = a.r().signatures_for(&missing).unwrap();
    let report = b.r().apply(&missing, &tips).unwrap();
    assert_eq!(report.stored, 1);
    let again = b.r().apply(&missing, &tips).unwrap();
    assert_eq!((again.stored, again.duplicates), (0, 1));
    assert_eq!(a.r().state_bytes().unwrap(), b.r().state_bytes().unwrap());
}

#[test]
fn apply_takes_ops_in_any_order_and_reports_gaps() {
    let tmp = tempfile::tempdir().unwrap();
    let mut a = Node::create(tmp.path(), "a");
    let mut b = Node::member(tmp.path(), "b", &mut a);
    let c = sample(1);
    a.r().add_contact(&c).unwrap();
    for note in ["one", "two", "three", "four"] {
        a.clock.advance_ms(MIN_MS);
        a.r()
            .edit(c.id, |c| {
                c.set(Field::Note, note);
            })
            .unwrap();
    }
    let mut ops = a.r().ops_since(b.r().summary()).unwrap();
    let tips = a.r().signatures_for(&ops).unwrap();
    ops.reverse();
    let held = b.r().op_count();

    // Without the first op nothing can be stored; the gap is named.
    let report = b.r().apply(&ops[..4], &tips).unwrap();
    assert_eq!(report.stored, 0);
    assert_eq!(report.missing.len(), 4);
    assert_eq!(b.r().op_count(), held);

    // Reversed, but complete: everything is stored in one call.
    let report = b.r().apply(&ops, &tips).unwrap();
    assert_eq!(report.stored, 5);
    assert!(report.missing.is_empty());
    assert_eq!(a.r().state_bytes().unwrap(), b.r().state_bytes().unwrap());
}

/// A replica stores another device's ops only up to one it holds that device's signature of,
/// so it can pass on whatever it holds: the tablet's new contact and its edit of the laptop's
/// contact come signed once (at the edit); a phone lacking the laptop's contact stores
/// neither (before, it stored the first unsigned, and every peer it gave it to refused it).
#[test]
fn ops_below_a_signed_op_that_waits_wait_with_it() {
    let tmp = tempfile::tempdir().unwrap();
    let mut a = Node::create(tmp.path(), "a");
    let mut tablet = Node::member(tmp.path(), "tablet", &mut a);
    let mut laptop = Node::member(tmp.path(), "laptop", &mut a);
    let mut phone = Node::member(tmp.path(), "phone", &mut a);
    let mut desktop = Node::member(tmp.path(), "desktop", &mut a);
    for n in [&mut tablet, &mut laptop, &mut phone, &mut desktop] {
        push(&mut a, n);
    }
    laptop.r().add_contact(&sample(1)).unwrap();
    push(&mut laptop, &mut tablet);
    tablet.r().add_contact(&sample(2)).unwrap();
    tablet.clock.advance_ms(MIN_MS);
    tablet
        .r()
        .edit(ContactId([1; 16]), |c| {
            c.set(Field::Note, "met at the conference");
        })
        .unwrap();
    let tablet_id = tablet.r().id();
    let theirs: Vec<_> = tablet
        .r()
        .ops_since(phone.r().summary())
        .unwrap()
        .into_iter()
        .filter(|o| o.op().author == tablet_id)
        .collect();
    assert_eq!(theirs.len(), 2);
    let tips = tablet.r().signatures_for(&theirs).unwrap();
    assert!(tips.iter().all(|t| t.seq == theirs[1].op().seq));
    let held = phone.r().op_count();
    let report = phone.r().apply(&theirs, &tips).unwrap();
    assert_eq!(report.stored, 0);
    assert_eq!(report.missing.len(), 2, "{report:?}");
    assert_eq!(phone.r().op_count(), held);
    // Everything it holds, it can pass on.
    push(&mut phone, &mut desktop);
    // With the laptop's contact both go in, and travel on.
    push(&mut laptop, &mut phone);
    assert_eq!(phone.r().apply(&theirs, &tips).unwrap().stored, 2);
    assert_eq!(push(&mut phone, &mut desktop), 3);
    assert_eq!(
        tablet.r().state_bytes().unwrap(),
        desktop.r().state_bytes().unwrap()
    );
}

#[test]
fn a_forked_chain_is_refused_whole_and_nothing_is_stored() {
    let tmp = tempfile::tempdir().unwrap();
    let mut a = Node::create(tmp.path(), "a");
    let clock = Arc::new(FakeClock::new(NINE_MS));
    // A member's key used by two devices (a copy that was not noticed): the second chain
    // forks the first at seq 1. Both are signed with the member's key.
    let key = cardlog_core::DeviceKey::from_seed(&[0x42; 32]);
    let id = key.device();
    a.r()
        .add_member(id, cardlog::MemberRole::Write, "twin")
        .unwrap();
    let book = a.r().book();
    let sign = |op: &cardlog::SealedOp| cardlog::SignedTip {
        author: id,
        key: key.public(),
        seq: op.op().seq,
        op: op.id(),
        signature: key.sign_tip(&book, &op.id()),
    };
    let mut d1 = Device::new(id, clock.clone());
    let mut d2 = Device::new(id, clock);
    let op1 = d1.create(&sample(1)).unwrap();
    let fork = d2.create(&sample(2)).unwrap();
    let good = d1
        .edit(ContactId([1; 16]), |c| {
            c.set(Field::Note, "fine");
        })
        .unwrap()
        .unwrap();
    a.r()
        .apply(std::slice::from_ref(&op1), &[sign(&op1)])
        .unwrap();
    let before = a.r().state_bytes().unwrap();
    let count = a.r().op_count();

    let err = a
        .r()
        .apply(&[good.clone(), fork.clone()], &[sign(&good), sign(&fork)])
        .unwrap_err();
    match err {
        Error::Refused(cardlog::Refusal::Forked { ours, theirs, .. }) => {
            assert_eq!(ours, op1.id());
            assert_eq!(theirs, fork.id());
        }
        other => panic!("expected a fork, got {other}"),
    }
    assert_eq!(
        a.r().op_count(),
        count,
        "the good op of the bundle is not kept"
    );
    assert_eq!(a.r().state_bytes().unwrap(), before);
    assert!(a.r().verify().unwrap().is_ok());
}

#[test]
fn after_the_wall_clock_went_back_a_save_is_stamped_with_it() {
    // The clock was set back an hour (it was wrong): the next edit carries the real time at
    // the edit, earlier than the last op's (docs/SEMANTICS.md, "Time").
    let tmp = tempfile::tempdir().unwrap();
    let mut a = Node::create(tmp.path(), "a");
    let c = sample(1);
    a.r().add_contact(&c).unwrap();
    let me = a.r().id();
    let last = a.r().summary()[&me].hlc;
    a.clock.advance_ms(-60 * MIN_MS);
    a.reopen();
    let id = a
        .r()
        .edit(c.id, |c| {
            c.set(Field::Note, "after");
        })
        .unwrap()
        .unwrap();
    let hlc = a.r().op(&id).unwrap().unwrap().op().hlc;
    assert_eq!(hlc.wall_ms, a.clock.now_ms());
    assert!(hlc < last, "{hlc} before {last}");
    assert!(a.r().verify().unwrap().is_ok());
    // The edit replaced what the device saw, whatever the timestamps: it is visible.
    assert_eq!(
        a.r()
            .contact(&c.id)
            .unwrap()
            .unwrap()
            .contact
            .get(Field::Note),
        Some("after")
    );
}

#[test]
fn received_timestamps_never_move_the_clock_not_even_on_reopen() {
    let tmp = tempfile::tempdir().unwrap();
    let mut a = Node::create(tmp.path(), "a");
    let mut b = Node::member(tmp.path(), "b", &mut a);
    b.clock.advance_ms(3 * MIN_MS);
    let c = sample(1);
    let remote = b.r().add_contact(&c).unwrap();
    push(&mut b, &mut a);
    a.reopen();
    // a's wall clock is 3 minutes behind b's: its edit carries a's time, and still replaces
    // b's write (S2: causality, not timestamps).
    let local = a
        .r()
        .edit(c.id, |c| {
            c.set(Field::Given, "G.");
        })
        .unwrap()
        .unwrap();
    let r = a.r().op(&remote).unwrap().unwrap().op().hlc;
    let l = a.r().op(&local).unwrap().unwrap().op().hlc;
    assert!(l < r);
    assert_eq!(l.wall_ms, a.clock.now_ms());
    assert_eq!(
        a.r()
            .contact(&c.id)
            .unwrap()
            .unwrap()
            .contact
            .get(Field::Given),
        Some("G.")
    );
}

#[test]
fn bulk_mode_groups_flushes_and_everything_lands() {
    let tmp = tempfile::tempdir().unwrap();
    let mut a = Node::create(tmp.path(), "a");
    {
        let mut bulk = a.r().bulk();
        assert!(bulk.is_bulk());
        for n in 1..=50 {
            bulk.add_contact(&sample(n)).unwrap();
        }
        bulk.finish().unwrap();
    }
    assert!(!a.r().is_bulk());
    a.reopen();
    assert_eq!(a.r().contacts().unwrap().len(), 50);
    assert!(a.r().verify().unwrap().is_ok());
}

#[test]
fn not_a_store_and_unknown_format_are_refused_untouched() {
    let tmp = tempfile::tempdir().unwrap();
    let plain = tmp.path().join("plain");
    std::fs::create_dir(&plain).unwrap();
    std::fs::write(plain.join("notes.txt"), b"my notes").unwrap();
    let before = listing(&plain);
    assert!(matches!(
        Replica::open(&plain).unwrap_err(),
        OpenError::NotAStore(_)
    ));
    assert!(matches!(
        Replica::create(&plain).unwrap_err(),
        OpenError::NotEmpty(_)
    ));
    assert_eq!(listing(&plain), before);

    let future = tmp.path().join("future");
    std::fs::create_dir(&future).unwrap();
    std::fs::write(future.join("CARDLOG"), b"cardlog store 9\n").unwrap();
    let before = listing(&future);
    let err = Replica::open(&future).unwrap_err();
    assert!(matches!(err, OpenError::UnknownFormat { .. }), "{err}");
    assert!(err.to_string().contains("cardlog store 9"), "{err}");
    assert_eq!(listing(&future), before);

    assert!(matches!(
        Replica::open(&tmp.path().join("absent")).unwrap_err(),
        OpenError::NotAStore(_)
    ));
}

fn copy_dir(from: &FsPath, to: &FsPath) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let p = e.unwrap().path();
        let target = to.join(p.file_name().unwrap());
        if p.is_dir() {
            copy_dir(&p, &target);
        } else {
            std::fs::copy(&p, &target).unwrap();
        }
    }
}

#[test]
fn a_copied_store_writes_as_a_new_device_and_never_forks() {
    let tmp = tempfile::tempdir().unwrap();
    let mut a = Node::create(tmp.path(), "a");
    let c = sample(1);
    a.r().add_contact(&c).unwrap();
    let original = a.r().id();
    drop(a.replica.take());
    copy_dir(&a.dir, &tmp.path().join("copy"));

    let mut copy = Node {
        dir: tmp.path().join("copy"),
        clock: a.clock.clone(),
        replica: None,
    };
    copy.reopen();
    a.reopen();
    assert_eq!(a.r().id(), original);
    assert_eq!(a.r().previous_id(), None);
    assert_ne!(copy.r().id(), original);
    assert_eq!(copy.r().previous_id(), Some(original));
    // The chain written before the copy still travels from the copy, signed: the copy signed
    // its tip with the old key before it took a new one (a device signs its own chain only
    // when it sends it).
    let mut third = Replica::join_with(
        &tmp.path().join("third"),
        a.r().book(),
        Options {
            wall: a.clock.clone(),
            ..Options::default()
        },
    )
    .unwrap();
    let pulled = third.pull_from(copy.r()).unwrap();
    assert_eq!(pulled.stored as u64, copy.r().op_count());
    assert_eq!(
        third.contact(&c.id).unwrap().map(|v| v.contact),
        Some(c.clone())
    );

    // The copy is a new device of the book: it writes once an admin has added it.
    assert!(matches!(
        copy.r().edit(c.id, |c| {
            c.set(Field::Title, "too early");
        }),
        Err(Error::Refused(cardlog::Refusal::NotMember { .. }))
    ));
    let copy_id = copy.r().id();
    a.r()
        .add_member(copy_id, cardlog::MemberRole::Write, "the copy")
        .unwrap();
    push(&mut a, &mut copy);

    // Both go on saving; their ops meet without a fork.
    a.r()
        .edit(c.id, |c| {
            c.set(Field::Note, "from the original");
        })
        .unwrap();
    copy.r()
        .edit(c.id, |c| {
            c.set(Field::Title, "from the copy");
        })
        .unwrap();
    sync(&mut a, &mut copy);
    let view = a.r().contact(&c.id).unwrap().unwrap().contact;
    assert_eq!(view.get(Field::Note), Some("from the original"));
    assert_eq!(view.get(Field::Title), Some("from the copy"));

    // The copy keeps its new id from then on.
    let id = copy.r().id();
    copy.reopen();
    assert_eq!(copy.r().id(), id);
    assert_eq!(copy.r().previous_id(), None);
    assert_eq!(
        copy.r().former_ids().unwrap(),
        [original],
        "kept across opens"
    );
    assert!(a.r().former_ids().unwrap().is_empty());
}

#[test]
fn a_failed_write_poisons_the_replica_until_reopened() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("a");
    let clock = Arc::new(FakeClock::new(NINE_MS));
    drop(Replica::create_with(&dir, options(&clock)).unwrap());

    // Writes get through while the budget lasts: one save, then the disk fails. A save writes
    // only the op log (the database gets register changes in batches), so the log fails.
    let budget = Arc::new(AtomicU64::new(u64::MAX));
    let mut r = common::on_failing_disk(&dir, options(&clock), &budget);
    r.add_contact(&sample(1)).unwrap();
    budget.store(0, Ordering::SeqCst);
    let err = r.add_contact(&sample(2)).unwrap_err();
    assert!(matches!(err, Error::Store(StoreError::Log(_))), "{err}");
    let err = r.add_contact(&sample(3)).unwrap_err();
    assert!(
        matches!(err, Error::Store(StoreError::Poisoned(_))),
        "{err}"
    );
    assert!(err.to_string().contains("reopen"), "{err}");
    // Reads still work.
    assert!(r.contact(&ContactId([1; 16])).unwrap().is_some());
    drop(r);

    let mut r = Replica::open_with(&dir, options(&clock)).unwrap();
    assert!(r.verify().unwrap().is_ok());
    assert_eq!(r.op_count(), 2, "the founding op and the first save");
    r.add_contact(&sample(4)).unwrap();
}

#[test]
fn a_poisoned_replica_reopens_in_place_once_the_disk_writes_again() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("a");
    let clock = Arc::new(FakeClock::new(NINE_MS));
    drop(Replica::create_with(&dir, options(&clock)).unwrap());
    let budget = Arc::new(AtomicU64::new(u64::MAX));
    let mut r = common::on_failing_disk(&dir, options(&clock), &budget);
    let changes = r.subscribe();
    assert!(!r.reopen_if_poisoned().unwrap(), "nothing failed yet");
    r.add_contact(&sample(1)).unwrap();
    // The disk fills: the save fails and the replica refuses writes from then on.
    budget.store(0, Ordering::SeqCst);
    r.add_contact(&sample(2)).unwrap_err();
    let err = r.add_contact(&sample(3)).unwrap_err();
    assert!(
        matches!(err, Error::Store(StoreError::Poisoned(_))),
        "{err}"
    );
    // Space is freed (the reopened store writes through the real files): the same handle
    // goes on, no restart.
    assert!(r.reopen_if_poisoned().unwrap());
    assert!(!r.reopen_if_poisoned().unwrap());
    r.add_contact(&sample(4)).unwrap();
    assert!(r.verify().unwrap().is_ok());
    assert!(r.contact(&ContactId([1; 16])).unwrap().is_some());
    assert!(r.contact(&ContactId([2; 16])).unwrap().is_none());
    assert!(r.contact(&ContactId([4; 16])).unwrap().is_some());
    assert_eq!(
        r.op_count(),
        3,
        "the founding op and the two saves that returned"
    );
    // Subscribers are still told.
    let told: Vec<ContactId> = changes
        .try_iter()
        .flat_map(|c| c.contacts.into_iter().map(|c| c.contact))
        .collect();
    assert_eq!(told, [ContactId([1; 16]), ContactId([4; 16])]);
    drop(r);
    let r = Replica::open_with(&dir, options(&clock)).unwrap();
    assert!(r.verify().unwrap().is_ok());
    assert_eq!(r.op_count(), 3);
}

/// Cuts the last `bytes` off the op log of the store in `dir` (its last record is then
/// lost); returns the log's length before.
fn cut_log(dir: &std::path::Path, bytes: u64) -> u64 {
    let log = dir.join(cardlog_store::log::LOG_FILE);
    let len = std::fs::metadata(&log).unwrap().len();
    let f = std::fs::OpenOptions::new().write(true).open(&log).unwrap();
    f.set_len(len - bytes).unwrap();
    len
}

#[test]
fn a_store_found_damaged_at_open_is_not_reopened_but_left_to_rebuild() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("a");
    let clock = Arc::new(FakeClock::new(NINE_MS));
    let mut r = Replica::create_with(&dir, options(&clock)).unwrap();
    for n in 1..=3 {
        r.add_contact(&sample(n)).unwrap();
    }
    drop(r);
    // The log loses its last record: the registers cover more than it holds.
    cut_log(&dir, 10);
    let mut r = Replica::open_with(&dir, options(&clock)).unwrap();
    let err = r.add_contact(&sample(9)).unwrap_err();
    assert!(
        matches!(err, Error::Store(StoreError::Poisoned(_))),
        "{err}"
    );
    // Opening again would find the same damage: nothing to gain, and a server calling this
    // after every failed session must not reopen each time.
    assert!(!r.reopen_if_poisoned().unwrap());
    assert!(r.add_contact(&sample(9)).is_err());
    drop(r);
    let mut store = Store::open(&dir, &cardlog_store::StoreOptions::default()).unwrap();
    assert!(store.is_poisoned());
    assert!(!store.reopen_if_poisoned().unwrap(), "not reopened");
}

/// Peer records name places in the op log (docs/FORMAT.md, "Store"): after a rebuild that
/// accepts a log cut shorter than the registers covered, they are forgotten, since the ops
/// written there next would read as acknowledged.
#[test]
fn a_rebuild_of_a_log_cut_shorter_forgets_what_peers_acknowledged() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("a");
    let clock = Arc::new(FakeClock::new(NINE_MS));
    let mut r = Replica::create_with(&dir, options(&clock)).unwrap();
    for n in 1..=3 {
        r.add_contact(&sample(n)).unwrap();
    }
    let peer = cardlog::DeviceId([0xa1; 16]);
    let held = r.summary().clone();
    r.record_summary(peer, &held).unwrap();
    assert!(r.needs_sync(&peer).unwrap().is_empty());
    drop(r);
    let len = cut_log(&dir, 10);
    let mut r = Replica::open_with(&dir, options(&clock)).unwrap();
    r.rebuild().unwrap();
    assert!(r.peers().unwrap().is_empty(), "forgotten");
    // The contacts written where the lost one was, and past where it ended, are ones the
    // peer lacks.
    for n in 9..=12 {
        r.add_contact(&sample(n)).unwrap();
    }
    assert!(
        r.store().log_len() > len,
        "the log grew back past where it was"
    );
    let lacking = r.needs_sync(&peer).unwrap();
    assert!(
        (9..=12).all(|n| lacking.contains(&sample(n).id)),
        "{lacking:?}"
    );
}

/// Saves write the op log; the registers go to the database in batches of about 1,024 ops.
/// A database that fails then fails the save that triggered the batch, which stores nothing,
/// and poisons the replica; a reopen replays every save that returned.
#[test]
fn a_failed_register_batch_fails_that_save_and_loses_none_before_it() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("a");
    let clock = Arc::new(FakeClock::new(NINE_MS));
    drop(Replica::create_with(&dir, options(&clock)).unwrap());
    let kv = FaultyKv::new(
        SledKv::open(&dir.join("db"), cardlog::CACHE_BYTES_DEFAULT).unwrap(),
        0,
    );
    let log =
        cardlog_store::log::FileLog::open(&dir.join(cardlog_store::log::LOG_FILE), false).unwrap();
    let store = Store::open_parts(Box::new(kv), Box::new(log), &dir).unwrap();
    let mut r = Replica::from_store(store, options(&clock)).unwrap();
    let mut saved = 0u32;
    let err = loop {
        let mut c = Contact::new(ContactId::random().unwrap());
        c.set(Field::Given, format!("P{saved}"));
        match r.add_contact(&c) {
            Ok(_) => saved += 1,
            Err(e) => break e,
        }
        assert!(saved <= 1_024, "no register batch was written");
    };
    assert_eq!(saved, 1_024);
    assert!(matches!(err, Error::Store(StoreError::Engine(_))), "{err}");
    let again = r.add_contact(&sample(1)).unwrap_err();
    assert!(
        matches!(again, Error::Store(StoreError::Poisoned(_))),
        "{again}"
    );
    assert_eq!(r.op_count(), 1_024 + 1, "the founding op and the saves");
    assert_eq!(
        r.contacts().unwrap().len(),
        1_024,
        "held-back registers still read"
    );
    drop(r);

    let r = Replica::open_with(&dir, options(&clock)).unwrap();
    assert_eq!(r.op_count(), 1_024 + 1);
    assert_eq!(r.contacts().unwrap().len(), 1_024);
    assert!(r.verify().unwrap().is_ok());
}

#[test]
fn rebuild_reproduces_the_state_byte_for_byte() {
    let tmp = tempfile::tempdir().unwrap();
    let mut a = Node::create(tmp.path(), "a");
    let mut b = Node::member(tmp.path(), "b", &mut a);
    for n in 1..=5 {
        a.r().add_contact(&sample(n)).unwrap();
    }
    sync(&mut a, &mut b);
    a.r()
        .edit(ContactId([1; 16]), |c| {
            c.set(Field::Org, "A");
        })
        .unwrap();
    b.r()
        .edit(ContactId([1; 16]), |c| {
            c.set(Field::Org, "B");
        })
        .unwrap();
    b.r().delete(ContactId([2; 16])).unwrap();
    sync(&mut a, &mut b);
    let before = a.r().state_bytes().unwrap();
    assert_eq!(a.r().rebuild().unwrap(), a.r().op_count());
    assert_eq!(a.r().state_bytes().unwrap(), before);
    let report = a.r().verify().unwrap();
    assert!(report.is_ok(), "{:?}", report.problems);
    assert_eq!(report.ops, a.r().op_count());
}

#[test]
fn every_op_is_listed_in_application_order() {
    let tmp = tempfile::tempdir().unwrap();
    let mut a = Node::create(tmp.path(), "a");
    let ids: Vec<_> = (1..=4)
        .map(|n| a.r().add_contact(&sample(n)).unwrap())
        .collect();
    let listed: Vec<_> = a.r().ops().map(|op| op.unwrap().id()).collect();
    // The book's founding op comes first.
    assert_eq!(listed[1..], ids);
}

#[test]
fn ids_are_found_by_unique_prefix() {
    let tmp = tempfile::tempdir().unwrap();
    let mut a = Node::create(tmp.path(), "a");
    let mut c1 = sample(1);
    c1.id = ContactId([0x12; 16]);
    let mut c2 = sample(2);
    c2.id = ContactId([0x13; 16]);
    let mut c3 = sample(3);
    c3.id = ContactId([0x34; 16]);
    let op = a.r().add_contact(&c1).unwrap();
    a.r().add_contact(&c2).unwrap();
    a.r().add_contact(&c3).unwrap();
    a.r().delete(c3.id).unwrap();
    let find = |r: &mut Replica, p: &str| {
        r.contacts_matching(&cardlog::IdPrefix::parse(p).unwrap(), 10)
            .unwrap()
    };
    assert_eq!(find(a.r(), "1"), [c1.id, c2.id], "ambiguous");
    assert_eq!(find(a.r(), "12"), [c1.id]);
    assert_eq!(find(a.r(), "131"), [c2.id]);
    assert_eq!(find(a.r(), "3"), [c3.id], "deleted contacts are found");
    assert!(find(a.r(), "5").is_empty());
    let hex = op.to_string();
    let found = a
        .r()
        .ops_matching(&cardlog::IdPrefix::parse(&hex[..7]).unwrap(), 10)
        .unwrap();
    assert_eq!(found, [op]);
}

#[test]
fn rebuild_reports_progress_up_to_the_total() {
    let tmp = tempfile::tempdir().unwrap();
    let mut a = Node::create(tmp.path(), "a");
    for n in 1..=3 {
        a.r().add_contact(&sample(n)).unwrap();
    }
    let mut seen = Vec::new();
    let replayed = a.r().rebuild_with(&mut |p| seen.push(p)).unwrap();
    assert_eq!(replayed, 4, "the founding op and three saves");
    let last = seen.last().copied().unwrap();
    assert_eq!(
        (last.done, last.total),
        (4, 4),
        "one checked pass over the log"
    );
    assert!(seen.windows(2).all(|w| w[0].done <= w[1].done));
}

//! Replicas read from their op log alone and repaired after losing their database: the book's
//! rules hold afterwards (the membership is read back from the log, and the signatures that
//! cannot be made again come back from the signature log).
#![allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    clippy::panic,
    clippy::expect_used
)]

mod common;

use std::path::Path as FsPath;
use std::sync::Arc;

use cardlog::{ContactId, Replica, StoreError};
use cardlog_core::FakeClock;
use common::{copy_dir, member_of, options, person, reopen, replica, NINE_MS};

/// Overwrites the start of every file of the database in `dir` with zeros.
fn zero_database(dir: &FsPath) {
    for entry in std::fs::read_dir(dir.join("db")).unwrap() {
        let path = entry.unwrap().path();
        if path.is_file() {
            let len = std::fs::metadata(&path).unwrap().len().min(8192) as usize;
            let mut bytes = std::fs::read(&path).unwrap();
            bytes[..len].fill(0);
            std::fs::write(&path, bytes).unwrap();
        }
    }
}

#[test]
fn a_replica_read_from_its_log_alone_knows_its_book_and_refuses_writes() {
    let tmp = tempfile::tempdir().unwrap();
    let clock = Arc::new(FakeClock::new(NINE_MS));
    let mut admin = replica(&tmp.path().join("admin"), &clock);
    let mut phone = member_of(&mut admin, &tmp.path().join("phone"), &clock);
    phone.add_contact(&person(1, "Ada")).unwrap();
    admin.pull_from(&phone).unwrap();
    let (digest, members, book) = (admin.state_digest().unwrap(), admin.members(), admin.book());
    drop(admin);
    let mut alone = Replica::open_read_only(&tmp.path().join("admin"), options(&clock)).unwrap();
    assert_eq!(alone.book(), book);
    assert_eq!(alone.members(), members);
    assert_eq!(alone.state_digest().unwrap(), digest);
    let refused = alone.add_contact(&person(2, "Bob")).unwrap_err();
    assert!(
        matches!(refused, cardlog::Error::Store(StoreError::ReadOnly)),
        "{refused:?}"
    );
}

#[test]
fn a_copied_replica_repaired_after_losing_its_database_still_verifies() {
    // A copy takes a new device id and keeps its old chain's tip signed with the old key, a
    // signature nothing can make again: it must survive the database.
    let tmp = tempfile::tempdir().unwrap();
    let clock = Arc::new(FakeClock::new(NINE_MS));
    let original = tmp.path().join("original");
    let mut admin = replica(&original, &clock);
    let mut phone = member_of(&mut admin, &tmp.path().join("phone"), &clock);
    phone.add_contact(&person(1, "Ada")).unwrap();
    admin.pull_from(&phone).unwrap();
    admin.add_contact(&person(3, "Cy")).unwrap();
    drop(admin);
    let copy = tmp.path().join("copy");
    copy_dir(&original, &copy);
    let moved = reopen(&copy, &clock);
    let (digest, old) = (moved.state_digest().unwrap(), moved.previous_id());
    assert!(old.is_some(), "the copy took a new id");
    assert!(moved.verify().unwrap().is_ok());
    let device = moved.id();
    drop(moved);

    zero_database(&copy);
    let report = Replica::repair(&copy, options(&clock)).unwrap();
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    // The database could not be read: the signatures came from the signature log.
    assert!(
        report
            .lost
            .iter()
            .any(|l| l.contains("could not be opened")),
        "{:?}",
        report.lost
    );
    assert!(
        report.kept.iter().any(|k| k.contains("from sigs.log")),
        "{:?}",
        report.kept
    );
    let repaired = reopen(&copy, &clock);
    assert_eq!(repaired.id(), device);
    assert_eq!(repaired.state_digest().unwrap(), digest);
    assert!(repaired.contact(&ContactId([1; 16])).unwrap().is_some());
    assert!(repaired.verify().unwrap().is_ok());
}

#[test]
fn repair_leaves_withdrawn_ops_withdrawn() {
    // Ops this device took back (after a restore) stay in the log, marked withdrawn in the
    // database: a repair that reads the marks replays the log without them.
    let tmp = tempfile::tempdir().unwrap();
    let clock = Arc::new(FakeClock::new(NINE_MS));
    let dir = tmp.path().join("phone");
    let mut phone = replica(&dir, &clock);
    for n in 1..=4 {
        phone.add_contact(&person(n, "Someone")).unwrap();
    }
    let seq = phone.summary()[&phone.id()].seq;
    drop(phone);
    {
        let mut store =
            cardlog::Store::open(&dir, &cardlog_store::StoreOptions::default()).unwrap();
        let withdrawn = store.withdraw_own_from(seq - 1).unwrap();
        assert_eq!(withdrawn.ops.len(), 2);
        store.flush().unwrap();
    }
    let phone = reopen(&dir, &clock);
    let (digest, ops) = (phone.state_digest().unwrap(), phone.op_count());
    assert!(phone.contact(&ContactId([4; 16])).unwrap().is_none());
    drop(phone);
    let report = Replica::repair(&dir, options(&clock)).unwrap();
    assert_eq!(report.ops, ops);
    let phone = reopen(&dir, &clock);
    assert_eq!(phone.state_digest().unwrap(), digest);
    assert!(phone.contact(&ContactId([4; 16])).unwrap().is_none());
    assert!(report.problems.is_empty(), "{:?}", report.problems);
}

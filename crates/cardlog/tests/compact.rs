//! `Replica::compact`: the database rewritten in key order into a fresh one. Everything the
//! replica reads comes back the same (contacts, peers, device id, membership), the database
//! keeps fewer bytes, a compaction cut off at any step leaves a store the next open reads as
//! before, and a copied store stays a copy.
#![allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    clippy::panic,
    clippy::expect_used
)]

mod common;

use std::path::Path as FsPath;
use std::sync::Arc;

use cardlog::{dir_bytes, Field, OpenError, Replica};
use cardlog_core::FakeClock;
use common::{copy_dir, member_of, options, person, reopen, replica, session, NINE_MS};

/// What a replica reads, for comparing before and after.
#[derive(Debug, PartialEq, Eq)]
struct Seen {
    id: cardlog::DeviceId,
    former: Vec<cardlog::DeviceId>,
    digest: [u8; 32],
    ops: u64,
    peers: String,
    members: String,
}

fn seen(r: &Replica) -> Seen {
    Seen {
        id: r.id(),
        former: r.former_ids().unwrap(),
        digest: r.state_digest().unwrap(),
        ops: r.op_count(),
        peers: format!("{:?}", r.peers().unwrap()),
        members: format!("{:?}", r.members()),
    }
}

/// A replica in `dir` with a member it synced with, `contacts` contacts, each edited `rounds`
/// times: a database whose contacts were rewritten many times.
fn edited_replica(dir: &FsPath, clock: &Arc<FakeClock>, contacts: u8, rounds: u32) -> Seen {
    let mut r = replica(dir, clock);
    let mut phone = member_of(&mut r, &dir.with_extension("phone"), clock);
    phone.add_contact(&person(200, "Phone")).unwrap();
    session(&mut r, &mut phone);
    let mut ids = Vec::new();
    {
        let mut bulk = r.bulk();
        for n in 0..contacts {
            let c = person(n, &format!("Person {n}"));
            bulk.add_contact(&c).unwrap();
            ids.push(c.id);
        }
        for round in 0..rounds {
            for id in &ids {
                bulk.edit(*id, |c| {
                    c.set(Field::Note, format!("note {round} {}", "x".repeat(200)));
                })
                .unwrap();
            }
        }
        bulk.finish().unwrap();
    }
    let seen = seen(&r);
    drop(r);
    seen
}

#[test]
fn a_compacted_replica_reads_the_same_and_keeps_fewer_bytes() {
    let tmp = tempfile::tempdir().unwrap();
    let clock = Arc::new(FakeClock::new(NINE_MS));
    let dir = tmp.path().join("a");
    let before = edited_replica(&dir, &clock, 150, 40);
    assert!(before.peers.contains("acked"), "{}", before.peers);
    let db_before = dir_bytes(&dir.join("db"));
    let log_before = std::fs::read(dir.join("ops.log")).unwrap();

    let done = Replica::compact(&dir, options(&clock)).unwrap();
    assert!(!done.journal && !done.kept, "{done:?}");
    assert_eq!(done.before, db_before);
    assert!(done.copy_bytes > 0, "{done:?}");
    assert!(done.pairs > 150, "{done:?}");
    assert!(
        done.after * 3 < done.before * 2,
        "the copy keeps under two thirds of the bytes: {done:?}"
    );
    assert_eq!(std::fs::read(dir.join("ops.log")).unwrap(), log_before);
    for leftover in ["db.compacting", "db.compacted"] {
        assert!(!dir.join(leftover).exists(), "{leftover}");
    }

    let r = reopen(&dir, &clock);
    // The same device (it was not copied), contents, peers and membership.
    assert_eq!(seen(&r), before);
    assert!(r.verify().unwrap().is_ok());
    drop(r);
    // A second open after the one that recorded the new home: still the same device.
    assert_eq!(seen(&reopen(&dir, &clock)), before);
}

#[cfg(unix)]
#[test]
fn a_database_a_copy_would_not_shrink_is_kept_as_it_is() {
    // Compacted twice: the second copy is about the first's size, so it is set aside and the
    // database stays where it is, the same directory (a backup taken in between, restored in
    // place, is still the same store).
    let tmp = tempfile::tempdir().unwrap();
    let clock = Arc::new(FakeClock::new(NINE_MS));
    let dir = tmp.path().join("a");
    let before = edited_replica(&dir, &clock, 150, 40);
    let first = Replica::compact(&dir, options(&clock)).unwrap();
    assert!(!first.kept, "{first:?}");
    let inode = |p: &FsPath| std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(p).unwrap());
    let db_inode = inode(&dir.join("db"));
    let db_bytes = dir_bytes(&dir.join("db"));
    let second = Replica::compact(&dir, options(&clock)).unwrap();
    assert!(second.kept, "{second:?}");
    assert!(second.copy_bytes > 0 && second.copy_bytes * 16 >= second.after * 15);
    assert_eq!(inode(&dir.join("db")), db_inode);
    assert_eq!(second.after, dir_bytes(&dir.join("db")));
    assert!(
        second.after <= db_bytes + (1 << 20),
        "{second:?} {db_bytes}"
    );
    for leftover in ["db.compacting", "db.compacted"] {
        assert!(!dir.join(leftover).exists(), "{leftover}");
    }
    let r = reopen(&dir, &clock);
    assert_eq!(seen(&r), before);
    assert!(r.verify().unwrap().is_ok());
}

#[test]
fn a_compaction_cut_off_at_any_step_leaves_the_replica_as_it_was() {
    let tmp = tempfile::tempdir().unwrap();
    let clock = Arc::new(FakeClock::new(NINE_MS));
    let dir = tmp.path().join("a");
    let before = edited_replica(&dir, &clock, 20, 3);
    let db = dir.join("db");
    let building = dir.join("db.compacting");
    let old = dir.join("db.compacted");

    // Step 1 cut off: a copy half built beside the database.
    copy_dir(&db, &building);
    std::fs::remove_file(building.join("conf")).unwrap();
    assert_eq!(seen(&reopen(&dir, &clock)), before);
    assert!(!building.exists());

    // Cut off between the renames: no database, the old one aside, the copy whole.
    copy_dir(&db, &building);
    std::fs::rename(&db, &old).unwrap();
    assert_eq!(seen(&reopen(&dir, &clock)), before);
    assert!(!old.exists() && !building.exists());

    // Cut off before the old one was removed.
    Replica::compact(&dir, options(&clock)).unwrap();
    copy_dir(&db, &old);
    assert_eq!(seen(&reopen(&dir, &clock)), before);
    assert!(!old.exists());
}

#[test]
fn a_replica_open_elsewhere_is_not_compacted() {
    let tmp = tempfile::tempdir().unwrap();
    let clock = Arc::new(FakeClock::new(NINE_MS));
    let dir = tmp.path().join("a");
    let mut r = replica(&dir, &clock);
    r.add_contact(&person(1, "Ada")).unwrap();
    let refused = Replica::compact(&dir, options(&clock)).unwrap_err();
    assert!(
        matches!(refused, cardlog::Error::Open(OpenError::Locked(_))),
        "{refused:?}"
    );
    assert!(!dir.join("db.compacting").exists());
    r.add_contact(&person(2, "Bob")).unwrap();
    assert_eq!(r.contacts().unwrap().len(), 2);
}

#[test]
fn a_copied_replica_compacted_is_still_a_copy() {
    let tmp = tempfile::tempdir().unwrap();
    let clock = Arc::new(FakeClock::new(NINE_MS));
    let original = tmp.path().join("original");
    let before = edited_replica(&original, &clock, 150, 40);
    let copy = tmp.path().join("copy");
    copy_dir(&original, &copy);
    // Compacted before its first open: the compaction's own first open finds it moved and
    // gives it a new device id, and the copy it builds records its new home, so the open
    // after finds it where it is.
    let done = Replica::compact(&copy, options(&clock)).unwrap();
    assert!(!done.kept, "the copy took the database's place: {done:?}");
    let moved = reopen(&copy, &clock);
    assert_eq!(moved.former_ids().unwrap(), vec![before.id]);
    assert_ne!(moved.id(), before.id);
    assert_eq!(moved.state_digest().unwrap(), before.digest);
    let id = moved.id();
    drop(moved);
    assert_eq!(reopen(&copy, &clock).id(), id);
    assert_eq!(seen(&reopen(&original, &clock)), before);
}

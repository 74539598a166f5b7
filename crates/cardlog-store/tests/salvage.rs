//! A store its database cannot serve: a read-only open from the op log alone writes nothing
//! and reads what a normal open reads; `repair` gives back every op of a store whose sled
//! files are truncated, zeroed, bit-flipped or gone, keeps its device id and what the old
//! database still gives, and salvages what follows damage in the middle of the op log.
#![allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    clippy::panic,
    clippy::expect_used
)]

mod common;

use std::collections::BTreeMap;
use std::path::{Path as FsPath, PathBuf};

use cardlog_core::DeviceId;
use cardlog_store::{Database, OpenError, Store, StoreError, StoreOptions};
use common::{
    apply_in_chunks, edit_log, log_records, new_store, new_store_in, options, reopen, replay_of,
    sample, scripted_world, World,
};

/// Every file under `dir` with its bytes and modification time.
fn snapshot(dir: &FsPath) -> BTreeMap<PathBuf, (Vec<u8>, std::time::SystemTime)> {
    let mut out = BTreeMap::new();
    let mut todo = vec![dir.to_owned()];
    while let Some(d) = todo.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            let meta = std::fs::metadata(&path).unwrap();
            if meta.is_dir() {
                todo.push(path);
            } else {
                out.insert(
                    path.clone(),
                    (std::fs::read(&path).unwrap(), meta.modified().unwrap()),
                );
            }
        }
    }
    out
}

/// A closed store holding the scripted world's ops, applied a few at a time (so the log has
/// many committed calls); returns its directory, state bytes and op count.
fn closed_store() -> (tempfile::TempDir, PathBuf, Vec<u8>, u64, DeviceId) {
    closed_store_in(Database::Sled)
}

/// [`closed_store`], its state kept in `database`.
fn closed_store_in(database: Database) -> (tempfile::TempDir, PathBuf, Vec<u8>, u64, DeviceId) {
    let ops = scripted_world().all_ops();
    let (tmp, dir, mut store) = new_store_in(database);
    apply_in_chunks(&mut store, &ops, &[1, 2, 3]);
    store.flush().unwrap();
    let state = store.state_bytes().unwrap();
    assert_eq!(state, replay_of(&ops).state_bytes());
    let (count, device) = (store.op_count(), store.device_id());
    drop(store);
    (tmp, dir, state, count, device)
}

#[test]
fn a_read_only_open_writes_nothing_and_reads_what_an_open_reads() {
    let (_tmp, dir, state, count, device) = closed_store();
    let before = snapshot(&dir);
    let mut store = Store::open_read_only(&dir).unwrap();
    assert!(store.recovery().read_only);
    assert_eq!(store.state_bytes().unwrap(), state);
    assert_eq!(store.op_count(), count);
    assert_eq!(store.device_id(), device);
    assert!(store
        .verify()
        .unwrap()
        .problems
        .iter()
        .all(|p| !p.contains("register")));
    // Every write is refused, by name.
    let ops: Vec<_> = store.ops().map(Result::unwrap).collect();
    assert_eq!(ops.len() as u64, count);
    assert_eq!(
        store.apply_all(&ops[..1]).unwrap_err(),
        StoreError::ReadOnly
    );
    assert_eq!(store.flush().unwrap_err(), StoreError::ReadOnly);
    drop(store);
    assert_eq!(snapshot(&dir), before, "a read-only open changed a file");
}

#[test]
fn a_read_only_open_reads_past_a_database_sled_cannot_open() {
    let (_tmp, dir, state, count, _) = closed_store();
    std::fs::remove_dir_all(dir.join("db")).unwrap();
    std::fs::create_dir(dir.join("db")).unwrap();
    std::fs::write(dir.join("db").join("conf"), b"not sled's").unwrap();
    assert!(Store::open(&dir, &options()).is_err());
    let store = Store::open_read_only(&dir).unwrap();
    assert_eq!(store.state_bytes().unwrap(), state);
    assert_eq!(store.op_count(), count);
}

/// Ways sled's files get damaged.
#[derive(Debug, Clone, Copy)]
enum Damage {
    Truncated,
    Zeroed,
    Flipped,
    Removed,
}

fn damage(dir: &FsPath, how: Damage) {
    let db = dir.join("db");
    let files: Vec<PathBuf> = std::fs::read_dir(&db)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .collect();
    for file in files {
        let mut bytes = std::fs::read(&file).unwrap();
        match how {
            Damage::Truncated => bytes.truncate(bytes.len() / 3),
            Damage::Zeroed => bytes.iter_mut().for_each(|b| *b = 0),
            Damage::Flipped => {
                for at in (0..bytes.len()).step_by(97) {
                    bytes[at] ^= 0x5a;
                }
            }
            Damage::Removed => {}
        }
        std::fs::write(&file, bytes).unwrap();
    }
    if let Damage::Removed = how {
        std::fs::remove_dir_all(&db).unwrap();
    }
}

#[test]
fn repair_gives_back_every_op_of_a_store_whose_database_is_damaged() {
    for (database, how) in [Database::Sled, Database::Journal]
        .into_iter()
        .flat_map(|d| {
            [
                Damage::Truncated,
                Damage::Zeroed,
                Damage::Flipped,
                Damage::Removed,
            ]
            .map(|how| (d, how))
        })
    {
        let (_tmp, dir, state, count, device) = closed_store_in(database);
        damage(&dir, how);
        let options = StoreOptions {
            database,
            ..options()
        };
        if database == Database::Journal {
            // A journal cut short opens as it was a few batches before (the log's tail past
            // them replayed); one zeroed or flipped is damage, named as such.
            match Store::open(&dir, &options) {
                Ok(store) => {
                    assert!(matches!(how, Damage::Truncated), "{how:?} opened");
                    assert_eq!(store.state_bytes().unwrap(), state, "{how:?}");
                }
                Err(e) if e.is_database_damage() => {
                    assert!(!matches!(how, Damage::Truncated), "{how:?}: {e}");
                    let removed = matches!(how, Damage::Removed);
                    assert!(removed || e.to_string().contains("journal"), "{e}");
                }
                Err(e) => panic!("{how:?}: {e}"),
            }
        }
        let report = Store::repair(&dir, &options).unwrap();
        let how = (database, how);
        assert_eq!(report.ops, count, "{how:?}");
        assert!(report.problems.is_empty(), "{how:?}: {:?}", report.problems);
        assert!(report.log_damage.is_none());
        match how.1 {
            Damage::Removed => assert!(report.set_aside.is_none()),
            _ => assert!(report.set_aside.as_ref().unwrap().is_dir(), "{how:?}"),
        }
        let store = reopen(&dir);
        assert_eq!(store.state_bytes().unwrap(), state, "{how:?}");
        assert_eq!(store.device_id(), device, "{how:?}: the device id changed");
        assert!(store.verify().unwrap().is_ok(), "{how:?}");
        assert!(!store.is_poisoned());
        // A repaired store keeps the database it had.
        assert_eq!(
            dir.join("db").join("journal").is_file(),
            database == Database::Journal,
            "{how:?}"
        );
    }
}

#[test]
fn repair_carries_over_what_the_old_database_still_gives() {
    let (_tmp, dir, state, _, device) = closed_store();
    let peer = DeviceId([9; 16]);
    {
        let mut store = reopen(&dir);
        store
            .put_peer_records(vec![(peer, b"mark".to_vec())])
            .unwrap();
        store.put_meta(b"mcalibration", b"kept".to_vec()).unwrap();
        store.flush().unwrap();
    }
    let cursor = reopen(&dir).change_cursor().unwrap();
    let report = Store::repair(&dir, &options()).unwrap();
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    assert!(
        report.kept.iter().any(|k| k == "calibration"),
        "{:?}",
        report.kept
    );
    let store = reopen(&dir);
    // A new database is a new rebuild epoch: a cursor of before asks for everything.
    assert!(!store.holds_cursor(&cursor));
    assert_eq!(store.peer_record(&peer).unwrap(), Some(b"mark".to_vec()));
    assert_eq!(store.meta(b"mcalibration").unwrap(), Some(b"kept".to_vec()));
    assert_eq!(store.state_bytes().unwrap(), state);
    assert_eq!(store.device_id(), device);
}

#[test]
fn repair_of_a_log_damaged_in_the_middle_salvages_what_follows_and_a_peer_gives_back_the_rest() {
    let ops = scripted_world().all_ops();
    let (_tmp, dir, mut store) = new_store();
    // One op per call, each signed: every record is committed, and each op is provable.
    apply_signed_one_by_one(&mut store, &ops);
    let full = store.state_bytes().unwrap();
    let peer = DeviceId([9; 16]);
    store
        .put_peer_records(vec![(peer, b"mark".to_vec())])
        .unwrap();
    store.flush().unwrap();
    drop(store);
    let records = log_records(&dir);
    let (hit, salvageable) = hit_with_salvage(&ops);
    let (at, _) = records[hit];
    // A byte of the op in the middle record flipped: it no longer hashes to its id.
    edit_log(&dir, |bytes| bytes[at + 37 + 3] ^= 0x40);
    let damaged = std::fs::read(dir.join("ops.log")).unwrap();
    // The normal open finds damage with data after it past nothing (the watermark covers the
    // log), so it opens; the repair is what cuts and salvages.
    let report = Store::repair(&dir, &options()).unwrap();
    let damage = report.log_damage.clone().expect("damage found");
    assert_eq!(damage.at, at as u64);
    assert_eq!(damage.records_after, (records.len() - hit - 1) as u64);
    assert_eq!(damage.salvaged + damage.waiting, damage.records_after);
    assert_eq!(damage.salvaged, salvageable, "{damage:?}");
    assert!(!damage.search_stopped);
    assert_eq!(std::fs::read(&damage.set_aside).unwrap(), damaged);
    assert_eq!(report.ops, hit as u64 + damage.salvaged);
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    assert!(
        report.lost.iter().any(|l| l.contains("peer records")),
        "the log was cut, so peer marks go: {:?}",
        report.lost
    );
    let mut store = reopen(&dir);
    assert_eq!(store.peer_record(&peer).unwrap(), None);
    assert!(store.verify().unwrap().is_ok());
    // A peer that holds everything gives back the rest.
    apply_in_chunks(&mut store, &ops, &[ops.len()]);
    assert_eq!(store.op_count(), ops.len() as u64);
    assert_eq!(store.state_bytes().unwrap(), full);
    assert!(store.verify().unwrap().is_ok());
}

#[test]
fn a_repair_cut_off_after_it_cut_the_log_finishes_from_its_note() {
    let ops = scripted_world().all_ops();
    let (_tmp, dir, mut store) = new_store();
    apply_signed_one_by_one(&mut store, &ops);
    let full = store.state_bytes().unwrap();
    drop(store);
    let records = log_records(&dir);
    let (hit, salvageable) = hit_with_salvage(&ops);
    let (at, _) = records[hit];
    edit_log(&dir, |bytes| bytes[at + 37 + 3] ^= 0x40);
    // What a repair had done when it was killed: the copy, its note, the cut.
    let damaged = std::fs::read(dir.join("ops.log")).unwrap();
    std::fs::write(dir.join("ops.log.damaged-1"), &damaged).unwrap();
    std::fs::write(
        dir.join("ops.log.repairing"),
        format!("cardlog repair v1\nops.log.damaged-1\n{at}\nflipped\n"),
    )
    .unwrap();
    edit_log(&dir, |bytes| bytes.truncate(at));
    let report = Store::repair(&dir, &options()).unwrap();
    let damage = report.log_damage.expect("the note names the damage");
    assert_eq!(damage.at, at as u64);
    assert_eq!(damage.records_after, (records.len() - hit - 1) as u64);
    assert_eq!(damage.salvaged, salvageable, "{damage:?}");
    assert_eq!(report.ops, hit as u64 + damage.salvaged);
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    assert!(
        !dir.join("ops.log.repairing").exists(),
        "the note goes once done"
    );
    let mut store = reopen(&dir);
    apply_in_chunks(&mut store, &ops, &[ops.len()]);
    assert_eq!(store.state_bytes().unwrap(), full);
}

#[test]
fn repair_is_refused_while_the_store_is_open() {
    for database in [Database::Sled, Database::Journal] {
        let (_tmp, dir, store) = new_store_in(database);
        let err = Store::repair(&dir, &options()).unwrap_err();
        assert!(matches!(err, OpenError::Locked(_)), "{database:?}: {err}");
        assert!(dir.join("db").is_dir());
        // A second open is refused as well.
        let err = Store::open(&dir, &options()).unwrap_err();
        assert!(matches!(err, OpenError::Locked(_)), "{database:?}: {err}");
        drop(store);
    }
}

/// A record in the second half of a log of `ops` (one record each, in order) whose loss leaves
/// some later ops whole (they build on nothing lost), and how many.
fn hit_with_salvage(ops: &[cardlog_core::SealedOp]) -> (usize, u64) {
    (ops.len() / 2..ops.len() - 1)
        .find_map(|hit| {
            let mut replay = cardlog_core::replay::Replay::new();
            for (i, op) in ops.iter().enumerate() {
                if i != hit {
                    replay.insert(op.clone()).unwrap();
                }
            }
            let waiting = replay.waiting().count();
            let after = ops.len() - hit - 1;
            (waiting < after).then_some((hit, (after - waiting) as u64))
        })
        .expect("a record whose loss leaves later ops whole")
}

/// Applies `ops` (in an order where dependencies come first) one call each, each with its
/// signature as its author's tip, and flushes.
fn apply_signed_one_by_one(store: &mut Store, ops: &[cardlog_core::SealedOp]) {
    for op in ops {
        let outcomes = store
            .apply_signed(std::slice::from_ref(op), &[signed(op)])
            .unwrap();
        assert_eq!(outcomes, [cardlog_store::OpOutcome::Stored]);
    }
    store.flush().unwrap();
}

/// A signature of `op` as its author's chain tip (not a valid ed25519 signature: the store
/// keeps what its caller verified).
fn signed(op: &cardlog_core::SealedOp) -> cardlog_core::SignedTip {
    cardlog_core::SignedTip {
        author: op.op().author,
        key: cardlog_core::PublicKey([7; 32]),
        seq: op.op().seq,
        op: op.id(),
        signature: cardlog_core::Signature([op.op().seq as u8; 64]),
    }
}

/// Applies `ops` in one call with each author's last op signed, as a sync would pass them,
/// and flushes. Returns the signatures.
fn apply_with_tips(
    store: &mut Store,
    ops: &[cardlog_core::SealedOp],
) -> Vec<cardlog_core::SignedTip> {
    let mut tips: BTreeMap<DeviceId, cardlog_core::SignedTip> = BTreeMap::new();
    for op in ops {
        tips.insert(op.op().author, signed(op));
    }
    let tips: Vec<_> = tips.into_values().collect();
    store.apply_signed(ops, &tips).unwrap();
    store.flush().unwrap();
    tips
}

#[test]
fn received_signatures_outlive_their_database_through_the_signature_log() {
    let ops = scripted_world().all_ops();
    let (_tmp, dir, mut store) = new_store();
    let tips = apply_with_tips(&mut store, &ops);
    drop(store);
    let kept = |store: &Store| -> Vec<_> {
        tips.iter()
            .map(|t| store.signature(&t.author, t.seq).unwrap())
            .collect()
    };
    let all: Vec<_> = tips.iter().cloned().map(Some).collect();

    // A store from before the signature log gets one, from its database, at its next open.
    std::fs::remove_file(dir.join("sigs.log")).unwrap();
    drop(reopen(&dir));
    assert_eq!(
        std::fs::metadata(dir.join("sigs.log")).unwrap().len(),
        (tips.len() * cardlog_store::log::SIG_RECORD_BYTES) as u64
    );

    // The database lost: repair reads the signatures back from the log.
    damage(&dir, Damage::Zeroed);
    let report = Store::repair(&dir, &options()).unwrap();
    assert!(
        report
            .kept
            .iter()
            .any(|k| k.contains("signatures from sigs.log")),
        "{:?}",
        report.kept
    );
    assert_eq!(kept(&reopen(&dir)), all);

    // Without the signature log they would be gone: the test can fail.
    damage(&dir, Damage::Zeroed);
    std::fs::remove_file(dir.join("sigs.log")).unwrap();
    Store::repair(&dir, &options()).unwrap();
    assert!(kept(&reopen(&dir)).iter().all(Option::is_none));
}

#[test]
fn a_journal_store_keeps_received_signatures_in_its_journal_alone_and_repair_finds_them_past_damage(
) {
    let ops = scripted_world().all_ops();
    let (_tmp, dir, mut store) = new_store_in(Database::Journal);
    let tips = apply_with_tips(&mut store, &ops);
    drop(store);
    assert!(!dir.join("sigs.log").exists());
    let options = StoreOptions {
        database: Database::Journal,
        ..options()
    };
    let kept = |store: &Store, tips: &[cardlog_core::SignedTip]| -> Vec<_> {
        tips.iter()
            .map(|t| store.signature(&t.author, t.seq).unwrap())
            .collect()
    };
    let all: Vec<_> = tips.iter().cloned().map(Some).collect();
    assert_eq!(kept(&Store::open(&dir, &options).unwrap(), &tips), all);

    // A signature log left by a build before (session 36) is read into the journal, which
    // may lack its last records, and removed.
    let earlier: Vec<cardlog_core::SignedTip> = ops
        .iter()
        .filter(|op| {
            op.op().seq == 1 && tips.iter().any(|t| t.author == op.op().author && t.seq > 1)
        })
        .map(signed)
        .collect();
    assert!(!earlier.is_empty());
    let bytes: Vec<u8> = earlier
        .iter()
        .flat_map(cardlog_store::log::encode_sig)
        .collect();
    std::fs::write(dir.join("sigs.log"), bytes).unwrap();
    let store = Store::open(&dir, &options).unwrap();
    assert!(!dir.join("sigs.log").exists());
    assert_eq!(
        kept(&store, &earlier),
        earlier.iter().cloned().map(Some).collect::<Vec<_>>()
    );
    drop(store);

    // The journal damaged in its first record: repair finds the signatures in the whole
    // records past the damage.
    let journal = dir.join("db").join("journal");
    let mut bytes = std::fs::read(&journal).unwrap();
    bytes[16 + 12 + 2] ^= 0x40;
    std::fs::write(&journal, bytes).unwrap();
    assert!(Store::open(&dir, &options)
        .unwrap_err()
        .is_database_damage());
    let report = Store::repair(&dir, &options).unwrap();
    assert_eq!(report.ops, ops.len() as u64);
    let store = Store::open(&dir, &options).unwrap();
    assert_eq!(kept(&store, &tips), all);
    assert_eq!(
        kept(&store, &earlier),
        earlier.iter().cloned().map(Some).collect::<Vec<_>>()
    );
    assert!(!dir.join("sigs.log").exists());
}

#[test]
fn a_tail_longer_than_a_chunk_replays_to_the_same_state() {
    // A read-only open replays the whole log as its tail, a chunk of ops at a time: across
    // chunk boundaries it must build what the store built op by op.
    let clock = std::sync::Arc::new(cardlog_core::FakeClock::new(common::NINE_MS));
    let mut device = cardlog_core::Device::new(DeviceId([5; 16]), clock.clone());
    let n = cardlog_store::log::TAIL_CHUNK_OPS + 1_000;
    let mut ops = Vec::with_capacity(n);
    for i in 0..n {
        // 250 contacts, edited again and again: later ops replace writes of earlier chunks.
        let id = (i % 250) as u8;
        let op = if i < 250 {
            device.create(&common::sample(id)).unwrap()
        } else {
            device
                .edit(cardlog_core::ContactId([id; 16]), |c| {
                    c.set(cardlog_core::Field::Note, format!("note {i}"));
                })
                .unwrap()
                .expect("the note changed")
        };
        clock.advance_ms(1);
        ops.push(op);
    }
    let (_tmp, dir, mut store) = new_store();
    // Calls of 1,000 ops: a commit every 1,000, so the replay hands over two chunks.
    apply_in_chunks(&mut store, &ops, &[1_000]);
    store.flush().unwrap();
    let state = store.state_bytes().unwrap();
    drop(store);
    let alone = Store::open_read_only(&dir).unwrap();
    assert_eq!(alone.op_count(), n as u64);
    assert_eq!(alone.state_bytes().unwrap(), state);
}

#[test]
fn a_store_keeps_of_another_devices_chain_only_the_signatures_a_cut_message_needs() {
    // One device's chain of 1,500 ops, received as a relay gets it from a device that syncs
    // again and again: in steps, each with its tip signed.
    let mut w = World::new(2);
    let contact = sample(1);
    w.devices[0].create(&contact).unwrap();
    for i in 0..1_499u32 {
        w.devices[0]
            .edit(contact.id, |c| {
                c.set(cardlog_core::Field::Title, format!("title {i}"));
            })
            .unwrap();
    }
    let ops = w.all_ops();
    assert_eq!(ops.len(), 1_500);
    let author = ops[0].op().author;
    for database in [Database::Sled, Database::Journal] {
        let (_tmp, dir, mut store) = new_store_in(database);
        let steps = [1usize, 3, 300, 600, 1_000, 1_200, 1_500];
        let mut from = 0;
        for to in steps {
            store
                .apply_signed(&ops[from..to], &[signed(&ops[to - 1])])
                .unwrap();
            from = to;
        }
        // A tip sent again for ops held (a peer that holds less) is kept, then let go of at
        // once as well.
        store.apply_signed(&ops[..2], &[signed(&ops[1])]).unwrap();
        let kept = |store: &Store| -> Vec<u64> {
            (1..=1_500)
                .filter(|seq| store.signature(&author, *seq).unwrap().is_some())
                .collect()
        };
        // Kept: the highest, and 1,000 (1,500 − 0 would leave a message cut at seq 1 to grow
        // by more than the spacing); 1,200 goes (1,500 − 1,000 is within it).
        assert_eq!(
            cardlog_store::SIGNATURE_SPACING,
            1_024,
            "the steps are chosen for this spacing"
        );
        assert_eq!(kept(&store), [1_000, 1_500], "{database:?}");
        store.flush().unwrap();
        drop(store);
        let options = StoreOptions {
            database,
            ..options()
        };
        let store = Store::open(&dir, &options).unwrap();
        assert_eq!(kept(&store), [1_000, 1_500], "{database:?} after reopening");
        assert!(store.verify().unwrap().is_ok(), "{database:?}");
    }
}

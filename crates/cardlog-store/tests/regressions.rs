//! Regressions for store bugs the integration tests found: opening a marker without a database
//! must not create one, `verify` must check what history entries contain, and `rebuild` over a
//! damaged log must leave the state as it was and the store openable.
#![allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    clippy::panic,
    clippy::expect_used
)]

mod common;

use cardlog_store::keys;
use cardlog_store::kv::{Kv, KvBatch, SledKv};
use cardlog_store::{OpenError, Store, StoreError, StoreOptions};
use common::{new_store, reopen, replay_of, retry_lock, scripted_world};

fn raw_pairs(dir: &std::path::Path, prefix: u8) -> Vec<(Vec<u8>, Vec<u8>)> {
    let kv = retry_lock(|| SledKv::open(&dir.join("db"), 1 << 20)).unwrap();
    let out = kv.scan_prefix(&[prefix]).map(Result::unwrap).collect();
    out
}

fn put_raw(dir: &std::path::Path, key: Vec<u8>, value: Vec<u8>) {
    let kv = retry_lock(|| SledKv::open(&dir.join("db"), 1 << 20)).unwrap();
    let mut batch = KvBatch::default();
    batch.insert(key, value);
    kv.apply(batch).unwrap();
    kv.flush().unwrap();
}

#[test]
fn open_of_a_marker_without_database_changes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("CARDLOG"), b"cardlog store 1\n").unwrap();
    let err = Store::open(tmp.path(), &StoreOptions::default()).unwrap_err();
    assert!(matches!(err, OpenError::Corrupt(_)), "{err}");
    assert!(err.to_string().contains("no db/"), "{err}");
    let names: Vec<String> = std::fs::read_dir(tmp.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, vec!["CARDLOG".to_owned()]);
}

#[test]
fn verify_reports_a_history_entry_whose_value_changed() {
    let ops = scripted_world().all_ops();
    let replay = replay_of(&ops);
    let (_tmp, dir, mut store) = new_store();
    store.apply_all(&ops).unwrap();
    store.flush().unwrap();
    drop(store);
    let history = raw_pairs(&dir, keys::WRITE);
    let (key, _) = history[0].clone();
    let other = history
        .iter()
        .find(|(_, v)| *v != history[0].1)
        .unwrap()
        .1
        .clone();
    put_raw(&dir, key, other);
    let mut store = reopen(&dir);
    let c = replay.contact_ids().next().unwrap();
    let differs = replay
        .paths(&c)
        .iter()
        .any(|p| store.history(&c, p).unwrap() != replay.history(&c, p));
    assert!(differs, "the damage is visible to history()");
    let report = store.verify().unwrap();
    assert!(!report.is_ok(), "verify found nothing: {report:?}");
    assert!(
        report.problems.iter().any(|p| p.contains("history entry")),
        "{:?}",
        report.problems
    );
    store.rebuild().unwrap();
    assert!(store.verify().unwrap().is_ok());
}

#[test]
fn verify_reports_a_history_entry_that_no_longer_decodes() {
    let ops = scripted_world().all_ops();
    let (_tmp, dir, mut store) = new_store();
    store.apply_all(&ops).unwrap();
    store.flush().unwrap();
    drop(store);
    let history = raw_pairs(&dir, keys::WRITE);
    put_raw(&dir, history[0].0.clone(), vec![0xff; 4]);
    let store = reopen(&dir);
    let c = cardlog_core::ContactId(history[0].0[1..17].try_into().unwrap());
    let broken = replay_of(&ops)
        .paths(&c)
        .iter()
        .any(|p| store.history(&c, p).is_err());
    assert!(broken, "history() fails on the damaged entry");
    let report = store.verify().unwrap();
    assert!(!report.is_ok(), "verify found nothing: {report:?}");
}

#[test]
fn a_rebuild_over_a_damaged_log_entry_keeps_the_store_readable() {
    let ops = scripted_world().all_ops();
    let (_tmp, dir, mut store) = new_store();
    store.apply_all(&ops).unwrap();
    store.flush().unwrap();
    let before = store.state_bytes().unwrap();
    drop(store);
    let log = raw_pairs(&dir, keys::LOG);
    let (key, mut value) = log[log.len() - 1].clone();
    value.pop();
    put_raw(&dir, key, value);

    let mut store = reopen(&dir);
    let err = store.rebuild().unwrap_err();
    assert!(matches!(err, StoreError::Corrupt(_)), "{err}");
    assert!(err.to_string().contains("truncated"), "{err}");
    assert_eq!(store.state_bytes().unwrap(), before, "state left as it was");
    assert!(!store.verify().unwrap().is_ok());
    drop(store);
    let store = reopen(&dir);
    assert_eq!(store.state_bytes().unwrap(), before);
}

#[test]
fn an_interrupted_rebuild_over_a_damaged_log_still_opens_read_only() {
    let ops = scripted_world().all_ops();
    let (_tmp, dir, mut store) = new_store();
    store.apply_all(&ops).unwrap();
    store.flush().unwrap();
    drop(store);
    let log = raw_pairs(&dir, keys::LOG);
    let (key, mut value) = log[0].clone();
    value.pop();
    put_raw(&dir, key, value);
    put_raw(&dir, keys::meta::REBUILDING.to_vec(), vec![1]);

    let mut store = reopen(&dir);
    let report = store.verify().unwrap();
    assert!(
        report.problems.iter().any(|p| p.contains("interrupted")),
        "{:?}",
        report.problems
    );
    let err = store.flush().unwrap_err();
    assert!(matches!(err, StoreError::Poisoned(_)), "{err}");
}

#[test]
fn create_builds_beside_the_target_and_leaves_nothing_else() {
    // The store is built in a hidden sibling and renamed into place (a killed create leaves no
    // half-made store); afterwards the parent holds only the store, which opens with the id it
    // was created with.
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("cards");
    let store = Store::create(&dir, &StoreOptions::default()).unwrap();
    let id = store.replica_id();
    assert_eq!(store.previous_replica_id(), None);
    drop(store);
    let names: Vec<String> = std::fs::read_dir(tmp.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, ["cards"]);
    let store = reopen(&dir);
    assert_eq!(store.replica_id(), id, "the rename is not taken for a copy");
    assert_eq!(store.previous_replica_id(), None);
}

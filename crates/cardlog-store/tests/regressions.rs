//! Regressions for store bugs the integration tests found: opening a marker without a database
//! must not create one, `verify` must check the id written with each log record, and `rebuild`
//! over a damaged log must leave the state as it was and the store openable.
#![allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    clippy::panic,
    clippy::expect_used
)]

mod common;

use cardlog_store::keys;
use cardlog_store::state::{Kv, KvBatch, SledKv};
use cardlog_store::{OpenError, Store, StoreError, StoreOptions, STORE_FORMAT_VERSION};
use common::{edit_log, log_records, new_store, reopen, retry_lock, scripted_world};

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
    std::fs::write(
        tmp.path().join("CARDLOG"),
        format!("cardlog store {STORE_FORMAT_VERSION}\n"),
    )
    .unwrap();
    let err = Store::open(tmp.path(), &StoreOptions::default()).unwrap_err();
    assert!(matches!(err, OpenError::Damaged { .. }), "{err}");
    assert!(err.to_string().contains("no db/"), "{err}");
    let names: Vec<String> = std::fs::read_dir(tmp.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, vec!["CARDLOG".to_owned()]);
}

#[test]
fn verify_reports_a_log_record_whose_id_was_changed() {
    // The id written with a record is what lookups trust; verify recomputes it.
    let ops = scripted_world().all_ops();
    let (_tmp, dir, mut store) = new_store();
    store.apply_all(&ops).unwrap();
    store.flush().unwrap();
    drop(store);
    let (at, _) = log_records(&dir)[3];
    let mut id = None;
    edit_log(&dir, |bytes| {
        id = Some(cardlog_core::OpId(
            bytes[at + 5..at + 37].try_into().unwrap(),
        ));
        bytes[at + 5 + 7] ^= 1;
    });
    let store = reopen(&dir);
    assert_eq!(
        store.op(&id.unwrap()).unwrap(),
        None,
        "no longer found by its id"
    );
    let report = store.verify().unwrap();
    assert!(
        report
            .problems
            .iter()
            .any(|p| p.contains(&format!("record at byte {at}"))),
        "{:?}",
        report.problems
    );
}

#[test]
fn a_rebuild_over_a_damaged_log_record_keeps_the_store_readable() {
    let ops = scripted_world().all_ops();
    let (_tmp, dir, mut store) = new_store();
    store.apply_all(&ops).unwrap();
    store.flush().unwrap();
    let before = store.state_bytes().unwrap();
    drop(store);
    let records = log_records(&dir);
    let (at, len) = records[records.len() - 1];
    edit_log(&dir, |bytes| bytes[at + 37 + len / 2] ^= 0x20);

    let mut store = reopen(&dir);
    let err = store.rebuild().unwrap_err();
    assert!(matches!(err, StoreError::Damaged { .. }), "{err}");
    assert!(err.to_string().contains(&format!("byte {at}")), "{err}");
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
    let (at, len) = log_records(&dir)[0];
    edit_log(&dir, |bytes| bytes[at + 37 + len - 1] ^= 0xff);
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
    let id = store.device_id();
    assert_eq!(store.previous_device_id(), None);
    drop(store);
    let names: Vec<String> = std::fs::read_dir(tmp.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, ["cards"]);
    let store = reopen(&dir);
    assert_eq!(store.device_id(), id, "the rename is not taken for a copy");
    assert_eq!(store.previous_device_id(), None);
}

//! Failure handling: an injected engine or log failure (`FaultyKv`, `FaultyLog`) poisons the
//! store for every later write while reads keep working, a reopened store holds each op whole
//! or not at all, and an interrupted rebuild is finished by the next open; damage made behind
//! the store's back (registers, heads, log bytes, a torn or uncommitted log tail) is reported by
//! `verify` or repaired by the next open, and `rebuild` repairs the registers from an intact
//! log.
#![allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    clippy::panic,
    clippy::expect_used
)]

mod common;

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use cardlog_core::replay::Readiness;
use cardlog_core::{Replay, SealedOp};
use cardlog_store::keys;
use cardlog_store::log::{FaultyLog, FileLog, LogError, LOG_FILE};
use cardlog_store::state::{FaultyKv, Kv, KvBatch, KvError, SledKv};
use cardlog_store::{Store, StoreError};
use common::{
    assert_same_as_replay, edit_log, log_records, new_store, reopen, replay_of, retry_lock,
    scripted_world,
};

const CACHE_BYTES: u64 = 1 << 20;

/// Opens the store at `dir` on a sled engine and a log file that together let `writes_ok`
/// writes through.
fn open_faulty(dir: &Path, writes_ok: u64) -> Store {
    open_with_budget(dir, Arc::new(AtomicU64::new(writes_ok)))
}

/// [`open_faulty`] with a budget the caller keeps (to fail writes from a chosen moment).
fn open_with_budget(dir: &Path, budget: Arc<AtomicU64>) -> Store {
    let kv = retry_lock(|| SledKv::open(&dir.join("db"), CACHE_BYTES)).unwrap();
    let log = FileLog::open(&dir.join(LOG_FILE), false).unwrap();
    Store::open_parts(
        Box::new(FaultyKv::sharing(kv, budget.clone())),
        Box::new(FaultyLog::sharing(log, budget)),
        dir,
    )
    .unwrap()
}

fn is_injected(e: &StoreError) -> bool {
    matches!(
        e,
        StoreError::Engine(KvError::Injected) | StoreError::Log(LogError::Injected)
    )
}

fn is_poisoned<T: std::fmt::Debug>(r: Result<T, StoreError>) -> bool {
    matches!(r, Err(StoreError::Poisoned(ref why)) if why.contains("injected write failure"))
}

/// A closed store at `dir` holding `ops`.
fn stored(ops: &[SealedOp]) -> (tempfile::TempDir, std::path::PathBuf) {
    let (tmp, dir, mut store) = new_store();
    common::apply_in_chunks(&mut store, ops, &[ops.len().max(1)]);
    store.flush().unwrap();
    (tmp, dir)
}

#[test]
fn a_failed_write_poisons_every_later_write_but_not_reads() {
    let ops = scripted_world().all_ops();
    let half = ops.len() / 2;
    let (_tmp, dir) = stored(&ops[..half]);
    let before = replay_of(&ops[..half]);

    let mut store = open_faulty(&dir, 0);
    assert!(is_injected(&store.apply(&ops[half]).unwrap_err()));
    assert!(is_poisoned(store.apply(&ops[half])));
    assert!(is_poisoned(store.apply(&ops[half + 1])));
    assert!(is_poisoned(store.apply_all(&ops[half..])));
    assert!(is_poisoned(store.flush()));
    assert!(is_poisoned(store.put_meta(b"mclock", vec![1])));
    assert!(is_poisoned(store.rebuild()));
    // Even an op already stored is refused rather than reported as a duplicate.
    assert!(is_poisoned(store.apply(&ops[0])));

    // Reads still work and show nothing of the failed op.
    assert_eq!(store.op(&ops[half].id()).unwrap(), None);
    assert_eq!(store.meta(b"mclock").unwrap(), None);
    assert_same_as_replay(&store, &before);
    drop(store);

    // Reopened, the store is sound, without the op, and writable again.
    let mut store = reopen(&dir);
    assert_same_as_replay(&store, &before);
    assert_eq!(store.apply(&ops[half]).unwrap(), Readiness::Ready);
    store.flush().unwrap();
}

#[test]
fn after_a_failure_at_any_write_each_op_is_whole_or_absent_on_reopen() {
    // Two saves: apply (log append), flush (log sync), twice; then the held-back register
    // changes are written (log sync, register batch). The n-th write fails; every call after
    // it is refused.
    let ops = scripted_world().all_ops();
    let base = ops.len() - 2;
    let (first, second) = (&ops[base], &ops[base + 1]);
    let mut failures = 0;
    for writes_ok in 0..8u64 {
        let (_tmp, dir) = stored(&ops[..base]);
        let mut store = open_faulty(&dir, writes_ok);
        let mut durable = 0usize;
        let mut failed = false;
        for step in 0..5u64 {
            let r = match step {
                0 => store.apply(first).map(|_| ()),
                2 => store.apply(second).map(|_| ()),
                4 => store.settle(),
                _ => store.flush(),
            };
            match r {
                Ok(()) => {
                    assert!(!failed, "a call after a failure succeeded");
                    if step == 1 || step == 3 {
                        durable = (step / 2 + 1) as usize;
                    }
                }
                Err(e) if failed => assert!(is_poisoned(Err::<(), _>(e)), "step {step}"),
                Err(e) => {
                    assert!(is_injected(&e), "{e}");
                    failed = true;
                    failures += 1;
                }
            }
        }
        drop(store);

        let store = reopen(&dir);
        let present: Vec<SealedOp> = ops[..base + 2]
            .iter()
            .filter(|op| store.op(&op.id()).unwrap().is_some())
            .cloned()
            .collect();
        assert!(present.len() >= base + durable, "flushed ops lost");
        // Whatever is present is whole: log, heads and registers agree with a replay.
        assert_same_as_replay(&store, &replay_of(&present));
        assert!(store.verify().unwrap().is_ok());
    }
    // 2 + 1 + 1 + 1 + 2 writes: each one failed once.
    assert_eq!(failures, 7, "only {failures} writes were failed");
}

#[test]
fn a_rebuild_cut_off_at_any_write_is_finished_by_the_next_open() {
    let ops = scripted_world().all_ops();
    let replay = replay_of(&ops);
    let mut failed_runs = 0;
    let mut marked_runs = 0;
    // Enough allowances to let the rebuild through at the end.
    for writes_ok in 0..12u64 {
        let (_tmp, dir) = stored(&ops);
        let mut store = open_faulty(&dir, writes_ok);
        match store.rebuild() {
            Ok(replayed) => {
                assert_eq!(replayed, ops.len() as u64);
                assert_same_as_replay(&store, &replay);
                break;
            }
            Err(e) => {
                failed_runs += 1;
                assert!(is_injected(&e), "allowance {writes_ok}: {e}");
                assert!(is_poisoned(store.apply(&ops[0])));
                // While the rebuilding mark is down, verify does not trust the registers.
                let marked = store.meta(keys::meta::REBUILDING).unwrap().is_some();
                let report = store.verify().unwrap();
                let flagged = report
                    .problems
                    .iter()
                    .any(|p| p.contains("rebuild was interrupted"));
                assert_eq!(
                    flagged, marked,
                    "allowance {writes_ok}: {:?}",
                    report.problems
                );
                if marked {
                    marked_runs += 1;
                    assert!(!report.is_ok());
                }
            }
        }
        drop(store);
        let store = reopen(&dir);
        assert_same_as_replay(&store, &replay);
        assert_eq!(store.meta(keys::meta::REBUILDING).unwrap(), None);
    }
    assert!(failed_runs >= 4, "rebuild made only {failed_runs} writes");
    assert!(
        marked_runs >= 2,
        "the mark was seen in {marked_runs} runs only"
    );
}

/// Changes the closed store at `dir` through its key space, behind the store's back.
fn tamper(dir: &Path, f: impl FnOnce(&SledKv)) {
    let kv = retry_lock(|| SledKv::open(&dir.join("db"), CACHE_BYTES)).unwrap();
    f(&kv);
    kv.flush().unwrap();
}

fn pairs(kv: &SledKv, prefix: u8) -> Vec<(Vec<u8>, Vec<u8>)> {
    kv.scan_prefix(&[prefix]).map(Result::unwrap).collect()
}

fn remove(kv: &SledKv, key: Vec<u8>) {
    let mut batch = KvBatch::default();
    batch.remove(key);
    kv.apply(batch).unwrap();
}

fn put(kv: &SledKv, key: Vec<u8>, value: Vec<u8>) {
    let mut batch = KvBatch::default();
    batch.insert(key, value);
    kv.apply(batch).unwrap();
}

/// A closed store with the scripted history, and its replay.
fn sound() -> (tempfile::TempDir, std::path::PathBuf, Replay) {
    let ops = scripted_world().all_ops();
    let (tmp, dir) = stored(&ops);
    (tmp, dir, replay_of(&ops))
}

/// Reopens a damaged store: verify must report `expected`, and rebuild must repair it.
fn assert_reported_then_repaired(dir: &Path, replay: &Replay, expected: &str) {
    let mut store = reopen(dir);
    let report = store.verify().unwrap();
    assert!(
        report.problems.iter().any(|p| p.contains(expected)),
        "expected a problem containing {expected:?}, got {:?}",
        report.problems
    );
    assert_eq!(store.rebuild().unwrap(), replay.len() as u64);
    assert_same_as_replay(&store, replay);
    drop(store);
    assert_same_as_replay(&reopen(dir), replay);
}

#[test]
fn a_deleted_register_is_reported_and_rebuilt() {
    let (_tmp, dir, replay) = sound();
    tamper(&dir, |kv| {
        let registers = pairs(kv, keys::CONTACT);
        assert!(registers.len() > 3);
        remove(kv, registers[3].0.clone());
    });
    assert_ne!(reopen(&dir).state_bytes().unwrap(), replay.state_bytes());
    assert_reported_then_repaired(&dir, &replay, "differs from the log");
}

#[test]
fn a_register_overwritten_with_another_ones_heads_is_reported_and_rebuilt() {
    let (_tmp, dir, replay) = sound();
    tamper(&dir, |kv| {
        let registers = pairs(kv, keys::CONTACT);
        let other = registers
            .iter()
            .find(|(_, v)| *v != registers[1].1)
            .unwrap()
            .1
            .clone();
        put(kv, registers[1].0.clone(), other);
    });
    assert_ne!(reopen(&dir).state_bytes().unwrap(), replay.state_bytes());
    assert_reported_then_repaired(&dir, &replay, "differs from the log");
}

#[test]
fn a_register_that_no_longer_decodes_is_rebuilt() {
    let (_tmp, dir, replay) = sound();
    tamper(&dir, |kv| {
        let registers = pairs(kv, keys::CONTACT);
        put(kv, registers[0].0.clone(), vec![0xff, 0xff, 0xff]);
    });
    let mut store = reopen(&dir);
    assert!(matches!(
        store.state_bytes(),
        Err(StoreError::Damaged { .. })
    ));
    match store.verify() {
        Err(StoreError::Damaged { .. }) => {}
        Ok(report) => assert!(!report.is_ok()),
        Err(e) => panic!("{e:?}"),
    }
    store.rebuild().unwrap();
    assert_same_as_replay(&store, &replay);
}

#[test]
fn a_register_with_no_write_in_the_log_is_reported_and_removed() {
    let (_tmp, dir, replay) = sound();
    tamper(&dir, |kv| {
        let (key, value) = pairs(kv, keys::CONTACT).swap_remove(0);
        let mut stray = key.clone();
        stray[1..17].copy_from_slice(&[0xee; 16]);
        put(kv, stray, value);
    });
    assert_eq!(
        reopen(&dir).contacts(true).unwrap().len(),
        replay.contacts(true).len() + 1
    );
    assert_reported_then_repaired(&dir, &replay, "has no write in the log");
}

#[test]
fn a_torn_write_at_the_end_of_the_log_is_cut_away_on_open() {
    // What a crash in the middle of an append leaves: part of a record, or whole records
    // without the commit flag that ends every apply call.
    let (_tmp, dir, replay) = sound();
    let records = log_records(&dir);
    let (at, len) = records[records.len() - 1];
    let last: Vec<u8> = std::fs::read(dir.join(LOG_FILE)).unwrap()[at..].to_vec();
    assert_eq!(last.len(), 37 + len);
    for torn in [
        last[..10].to_vec(),
        last[..last.len() - 1].to_vec(),
        vec![0u8; 300],
        {
            // A whole record without the commit flag.
            let mut uncommitted = last.clone();
            assert_eq!(uncommitted[4], cardlog_store::log::COMMIT);
            uncommitted[4] = 0;
            uncommitted
        },
    ] {
        let before = std::fs::metadata(dir.join(LOG_FILE)).unwrap().len();
        edit_log(&dir, |bytes| bytes.extend_from_slice(&torn));
        let store = reopen(&dir);
        assert_eq!(store.recovery().torn_bytes, torn.len() as u64);
        assert_same_as_replay(&store, &replay);
        assert!(store.verify().unwrap().is_ok());
        drop(store);
        assert_eq!(std::fs::metadata(dir.join(LOG_FILE)).unwrap().len(), before);
    }
}

#[test]
fn damage_in_the_log_tail_with_data_after_it_leaves_the_store_read_only() {
    // Records past the registers' watermark are replayed at open. If one of them is damaged
    // and more follows, cutting the log there could lose saves: the store opens read-only and
    // says why.
    let ops = scripted_world().all_ops();
    let (_tmp, dir) = stored(&ops[..ops.len() - 3]);
    // Three more ops reach the log but not the registers (as if the process died before its
    // database caught up): written through a second store, then its registers put back.
    let kv_before: Vec<(Vec<u8>, Vec<u8>)> = {
        let kv = retry_lock(|| SledKv::open(&dir.join("db"), CACHE_BYTES)).unwrap();
        kv.scan_prefix(&[]).map(Result::unwrap).collect()
    };
    {
        let mut store = reopen(&dir);
        for op in &ops[ops.len() - 3..] {
            store.apply(op).unwrap();
        }
        store.flush().unwrap();
    }
    tamper(&dir, |kv| {
        for (k, _) in kv.scan_prefix(&[]).map(Result::unwrap).collect::<Vec<_>>() {
            remove(kv, k);
        }
        for (k, v) in &kv_before {
            put(kv, k.clone(), v.clone());
        }
    });
    let records = log_records(&dir);
    let (at, _) = records[records.len() - 2];
    edit_log(&dir, |bytes| bytes[at + 40] ^= 0x55);
    let mut store = reopen(&dir);
    assert!(store.recovery().damaged_tail.is_some());
    let err = store.apply(&ops[0]).unwrap_err();
    assert!(
        matches!(err, StoreError::Poisoned(ref why) if why.contains("op log is damaged")),
        "{err}"
    );
    let report = store.verify().unwrap();
    assert!(!report.is_ok());
    drop(store);
    // Nothing was cut.
    assert_eq!(log_records(&dir).len(), records.len());
}

#[test]
fn a_missing_author_head_is_reported() {
    let (_tmp, dir, replay) = sound();
    tamper(&dir, |kv| {
        let authors = pairs(kv, keys::AUTHOR);
        assert_eq!(authors.len(), 3);
        remove(kv, authors[1].0.clone());
    });
    let store = reopen(&dir);
    assert_eq!(store.summary().len(), replay.summary().len() - 1);
    let report = store.verify().unwrap();
    assert!(
        report.problems.iter().any(|p| p.contains("summary")),
        "{:?}",
        report.problems
    );
}

#[test]
fn a_log_record_whose_op_bytes_changed_is_reported() {
    // One op's text changes (it still decodes, but its hash no longer matches its id), another
    // op's length is cut (the framing breaks).
    let (_tmp, dir, replay) = sound();
    let first = replay.ops_in_order().next().unwrap().clone();
    edit_log(&dir, |bytes| {
        // The sample contact's given name ("Given1") is in the first op; change one letter.
        let at = bytes
            .windows(6)
            .position(|w| w == b"Given1")
            .expect("first op names the sample contact");
        bytes[at] = b'g';
    });
    let store = reopen(&dir);
    let report = store.verify().unwrap();
    assert!(
        report
            .problems
            .iter()
            .any(|p| p.contains("the op hashes to")),
        "{:?}",
        report.problems
    );
    // The damaged op is reported, never served as the op its id names.
    assert!(
        matches!(store.op(&first.id()), Err(StoreError::Damaged { .. })),
        "{:?}",
        store.op(&first.id())
    );
    assert!(store.ops().any(|r| r.is_err()));
    assert_eq!(store.op_count(), replay.len() as u64);
    drop(store);

    let records = log_records(&dir);
    let (at, len) = records[records.len() / 2];
    edit_log(&dir, |bytes| {
        bytes[at..at + 4].copy_from_slice(&(len as u32 + 1000).to_le_bytes());
    });
    let mut store = reopen(&dir);
    let report = store.verify().unwrap();
    assert!(
        report
            .problems
            .iter()
            .any(|p| p.contains(&format!("record at byte {at}"))),
        "{:?}",
        report.problems
    );
    let before = store.state_bytes().unwrap();
    assert!(matches!(store.rebuild(), Err(StoreError::Damaged { .. })));
    assert_eq!(store.state_bytes().unwrap(), before, "state left as it was");
}

/// Held-back register changes: a failure to write them poisons the store but they stay read
/// (state still equals every applied op), and a reopen replays the log into exactly that
/// state. Writing them early (`settle`) and applying more loses or doubles nothing.
#[test]
fn held_back_register_changes_survive_a_failed_write_and_an_early_settle() {
    let ops = scripted_world().all_ops();
    let all = replay_of(&ops);
    let (_tmp, dir, store) = new_store();
    drop(store);

    let budget = Arc::new(AtomicU64::new(u64::MAX));
    let mut store = open_with_budget(&dir, budget.clone());
    common::apply_in_chunks(&mut store, &ops, &[1]);
    budget.store(0, Ordering::SeqCst);
    assert!(is_injected(&store.settle().unwrap_err()));
    assert!(is_poisoned(store.flush()));
    assert_same_as_replay(&store, &all);
    drop(store);
    // Nothing of the held-back changes reached sled; the log's records replay into them.
    let store = reopen(&dir);
    assert_eq!(store.recovery().tail_ops, ops.len() as u64);
    assert_same_as_replay(&store, &all);
    drop(store);

    // Bulk mode ended without a flush, then ordinary applies: nothing is lost or doubled.
    let (_tmp2, dir2, mut store) = new_store();
    let half = ops.len() / 2;
    common::apply_in_chunks(&mut store, &ops[..half], &[1]);
    store.settle().unwrap();
    common::apply_in_chunks(&mut store, &ops[half..], &[1]);
    assert_same_as_replay(&store, &all);
    store.flush().unwrap();
    drop(store);
    assert_same_as_replay(&reopen(&dir2), &all);
}

#[test]
fn a_contact_key_holding_no_registers_is_reported_and_removed() {
    // A contact exists once a register does: an empty map under a contact key is damage that
    // verify names (with the contact) and rebuild removes; reads refuse it rather than show an
    // empty contact.
    let (_tmp, dir, replay) = sound();
    tamper(&dir, |kv| {
        let mut key = pairs(kv, keys::CONTACT).swap_remove(0).0;
        key[1..17].copy_from_slice(&[0xee; 16]);
        let empty = keys::encode(&keys::ContactRegisters::new());
        put(kv, key, empty);
    });
    assert!(matches!(
        reopen(&dir).contacts(true),
        Err(StoreError::Damaged { .. })
    ));
    assert_reported_then_repaired(
        &dir,
        &replay,
        &format!("registers of contact {}", "ee".repeat(16)),
    );
}

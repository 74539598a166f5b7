//! Golden fixtures of store format 3 (docs/FORMAT.md, "Store (version 3)" and "Golden
//! fixtures"): `ops.log` as written, and a dump of the sled database's key/value pairs. The
//! committed files in `tests/fixtures/golden/` were written by the build of commit 155f9e4,
//! before the refactor that followed it; these tests prove that the store still reads them
//! (the log's records, the meta entries, the `a` author heads, the `c` contact registers, and
//! a whole store assembled from them), that it still writes exactly those bytes for the same
//! history, and that a damaged log record or a cut register value is refused.
//!
//! The history is six ops of two authors, built here as literal ops with fixed ids and
//! timestamps: a create with fields and phone, e-mail, address, tag and custom writes; a
//! second contact; an edit; two concurrent edits of one field (a conflict); a delete.
//!
//! The dump (`store-v3-kv.bin`) is every pair in sled's key order except `mhome`, which holds
//! the store's path and inode, each pair as a 4-byte little-endian key length, the key, a
//! 4-byte little-endian value length, the value. `CARDLOG_WRITE_GOLDEN=1` writes fixture files
//! that are missing (never overwriting one); a plain run only reads and asserts.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::collections::BTreeMap;
use std::path::{Path as FsPath, PathBuf};

use cardlog_core::replay::{ChainTip, Heads, RegisterWrite};
use cardlog_core::{
    ContactId, DeviceId, Field, Hlc, ItemBody, ItemId, ItemKind, ItemValue, Op, OpId, Path,
    PostalAddress, SealedOp, Value, Write,
};
use cardlog_store::keys::{self, meta, ContactRegisters};
use cardlog_store::log::{FileLog, OpLog, Read, COMMIT, LOG_FILE};
use cardlog_store::state::{Kv, KvBatch, SledKv};
use cardlog_store::{OpOutcome, Recovery, Store, StoreOptions};

// ---- the history ---------------------------------------------------------------------------

const A: DeviceId = DeviceId([0xa1; 16]);
const B: DeviceId = DeviceId([0xb2; 16]);
/// The store's own device id (`mreplica`; `create` draws a random one, the test sets this).
const LOCAL: DeviceId = DeviceId([0x5e; 16]);
const ADA: ContactId = ContactId([0x0c; 16]);
const CHARLES: ContactId = ContactId([0x0d; 16]);
const PHONE: ItemId = ItemId([0x11; 16]);
const EMAIL: ItemId = ItemId([0x12; 16]);
const HOME: ItemId = ItemId([0x13; 16]);
const URL: ItemId = ItemId([0x14; 16]);
/// 2026-11-22T09:00:00Z.
const NINE_MS: u64 = 1_795_338_000_000;

/// The ids of the history's ops, in application order (A1, B1, A2, B2, B3, A3).
const OP_IDS: [&str; 6] = [
    "2402867b2ddc0eaa229a2c3af9232061516cb97ad37550ac31e1e14cbca65d55",
    "347cd291e5a1159d4353fe3fcfbf2fbffc5f0da863462d0bd86cbc7174a58916",
    "14d81fefd126193478505b501d77ac9241f7b27c5296e7f47d9e75267a1166f8",
    "e8b12315185e69754eb38cfc50470a5dac3ba2def913e4f292bf64be506d11ef",
    "1b46655076c9a52aa033238ece632797c0593499b8810831113a0e10ba830697",
    "4b1d1d0909d4a3ca1d2887fc40dc270b99e254c189bd441ba9783b356dd05078",
];

/// The apply calls, as indices into the history: the last record of each carries `COMMIT`.
const CALLS: [&[usize]; 4] = [&[0, 1], &[2], &[3, 4], &[5]];

fn at(after_ms: u64, counter: u32) -> Hlc {
    Hlc {
        wall_ms: NINE_MS + after_ms,
        counter,
    }
}

fn write(contact: ContactId, path: Path, value: Option<Value>, replaces: &[OpId]) -> Write {
    Write {
        contact,
        path,
        value,
        replaces: replaces.to_vec(),
    }
}

fn text(s: &str) -> Option<Value> {
    Some(Value::Text(s.into()))
}

fn item(label: &str, body: &str) -> Option<Value> {
    Some(Value::Item(ItemValue {
        label: label.into(),
        body: ItemBody::Text(body.into()),
    }))
}

const EXISTS: Option<Value> = Some(Value::Bool(true));

/// The six ops, in application order: A1 creates Ada (every kind of write); B1 creates Charles;
/// A2 edits Ada's phone, adds a URL and removes her tag; B2 (having A1, not A2) sets her
/// organisation; A3 (not having B2) sets it too, so the organisation has two heads; B3 deletes
/// Charles in the same millisecond as B2 (HLC counter 1).
fn history() -> Vec<SealedOp> {
    let a1 = Op {
        author: A,
        seq: 1,
        prev: None,
        hlc: at(0, 0),
        writes: vec![
            write(ADA, Path::Exists, EXISTS, &[]),
            write(ADA, Path::Field(Field::Given), text("Ada"), &[]),
            write(ADA, Path::Field(Field::Family), text("Lovelace"), &[]),
            write(
                ADA,
                Path::Field(Field::Org),
                text("Analytical Engines"),
                &[],
            ),
            write(
                ADA,
                Path::Item(ItemKind::Phone, PHONE),
                item("mobile", "+44 20 7946 0001"),
                &[],
            ),
            write(
                ADA,
                Path::Item(ItemKind::Email, EMAIL),
                item("work", "ada@example.org"),
                &[],
            ),
            write(
                ADA,
                Path::Item(ItemKind::Address, HOME),
                Some(Value::Item(ItemValue {
                    label: "home".into(),
                    body: ItemBody::Address(Box::new(PostalAddress {
                        street: "12 St James's Square".into(),
                        locality: "London".into(),
                        code: "SW1Y 4JH".into(),
                        country: "UK".into(),
                        ..Default::default()
                    })),
                })),
                &[],
            ),
            write(ADA, Path::Tag("friends".into()), Some(Value::Present), &[]),
            write(ADA, Path::Custom("X-SHOE-SIZE".into()), text("38"), &[]),
        ],
    }
    .seal()
    .unwrap();
    let b1 = Op {
        author: B,
        seq: 1,
        prev: None,
        hlc: at(1_000, 0),
        writes: vec![
            write(CHARLES, Path::Exists, EXISTS, &[]),
            write(CHARLES, Path::Field(Field::Given), text("Charles"), &[]),
            write(CHARLES, Path::Field(Field::Family), text("Babbage"), &[]),
        ],
    }
    .seal()
    .unwrap();
    let a2 = Op {
        author: A,
        seq: 2,
        prev: Some(a1.id()),
        hlc: at(60_000, 0),
        writes: vec![
            write(ADA, Path::Exists, EXISTS, &[a1.id()]),
            write(
                ADA,
                Path::Item(ItemKind::Phone, PHONE),
                item("mobile", "+44 20 7946 0002"),
                &[a1.id()],
            ),
            write(
                ADA,
                Path::Item(ItemKind::Url, URL),
                item("", "https://example.org/ada"),
                &[],
            ),
            write(ADA, Path::Tag("friends".into()), None, &[a1.id()]),
        ],
    }
    .seal()
    .unwrap();
    let b2 = Op {
        author: B,
        seq: 2,
        prev: Some(b1.id()),
        hlc: at(90_000, 0),
        writes: vec![
            write(ADA, Path::Exists, EXISTS, &[a1.id()]),
            write(
                ADA,
                Path::Field(Field::Org),
                text("Babbage & Co"),
                &[a1.id()],
            ),
        ],
    }
    .seal()
    .unwrap();
    let b3 = Op {
        author: B,
        seq: 3,
        prev: Some(b2.id()),
        hlc: at(90_000, 1),
        writes: vec![write(
            CHARLES,
            Path::Exists,
            Some(Value::Bool(false)),
            &[b1.id()],
        )],
    }
    .seal()
    .unwrap();
    let a3 = Op {
        author: A,
        seq: 3,
        prev: Some(a2.id()),
        hlc: at(120_000, 0),
        writes: vec![
            write(ADA, Path::Exists, EXISTS, &[a2.id()]),
            write(
                ADA,
                Path::Field(Field::Org),
                text("Engines Ltd"),
                &[a1.id()],
            ),
        ],
    }
    .seal()
    .unwrap();
    vec![a1, b1, a2, b2, b3, a3]
}

/// Per author, the last op of the history.
fn expected_summary(ops: &[SealedOp]) -> BTreeMap<DeviceId, ChainTip> {
    let mut summary = BTreeMap::new();
    for op in ops {
        summary.insert(
            op.op().author,
            ChainTip {
                seq: op.op().seq,
                op: op.id(),
                hlc: op.op().hlc,
            },
        );
    }
    summary
}

/// Every contact's registers after the history: per path, the number of writes and the heads
/// (the replay rule, applied write by write in application order).
fn expected_registers(ops: &[SealedOp]) -> BTreeMap<ContactId, ContactRegisters> {
    let mut contacts: BTreeMap<ContactId, ContactRegisters> = BTreeMap::new();
    for op in ops {
        for w in &op.op().writes {
            let register = contacts
                .entry(w.contact)
                .or_default()
                .entry(w.path.clone())
                .or_insert_with(|| (0, Heads::default()));
            register.0 += 1;
            register.1.apply(RegisterWrite::of(op.op(), op.id(), w));
        }
    }
    contacts
}

/// The flags of record `i`: `COMMIT` on the last record of each apply call.
fn expected_flags() -> Vec<u8> {
    CALLS
        .iter()
        .flat_map(|call| (0..call.len()).map(|i| if i + 1 == call.len() { COMMIT } else { 0 }))
        .collect()
}

// ---- fixture files -------------------------------------------------------------------------

const LOG_FIXTURE: &str = "store-v3-ops.log.bin";
const KV_FIXTURE: &str = "store-v3-kv.bin";

fn fixture_path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/golden")
        .join(name)
}

fn read_fixture(name: &str) -> Vec<u8> {
    let path = fixture_path(name);
    std::fs::read(&path).unwrap_or_else(|e| {
        panic!(
            "golden fixture {}: {e} (docs/FORMAT.md, \"Golden fixtures\")",
            path.display()
        )
    })
}

/// With `CARDLOG_WRITE_GOLDEN=1`, writes `bytes` as fixture `name` unless it exists: fixtures
/// are never overwritten (a new format version gets new files).
fn write_fixture_if_asked(name: &str, bytes: &[u8]) {
    if std::env::var("CARDLOG_WRITE_GOLDEN").as_deref() != Ok("1") {
        return;
    }
    let path = fixture_path(name);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&path)
    {
        Ok(mut file) => std::io::Write::write_all(&mut file, bytes).unwrap(),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => panic!("{}: {e}", path.display()),
    }
}

/// Asserts `made` is byte for byte the fixture `name`, naming the first differing offset.
fn assert_same_bytes(name: &str, made: &[u8], golden: &[u8]) {
    let first_diff = made.iter().zip(golden).position(|(a, b)| a != b);
    assert!(
        first_diff.is_none() && made.len() == golden.len(),
        "{name}: today's build writes {} bytes, the fixture holds {}; first difference at byte \
         {first_diff:?}",
        made.len(),
        golden.len()
    );
}

/// A database key and its value.
type Pair = (Vec<u8>, Vec<u8>);

/// The dump format: each pair as u32 LE key length, key, u32 LE value length, value.
fn dump_pairs(pairs: &[Pair]) -> Vec<u8> {
    let mut out = Vec::new();
    for (k, v) in pairs {
        out.extend_from_slice(&u32::try_from(k.len()).unwrap().to_le_bytes());
        out.extend_from_slice(k);
        out.extend_from_slice(&u32::try_from(v.len()).unwrap().to_le_bytes());
        out.extend_from_slice(v);
    }
    out
}

fn parse_pairs(mut bytes: &[u8]) -> Vec<Pair> {
    let take = |bytes: &mut &[u8]| -> Vec<u8> {
        let (len, rest) = bytes.split_at(4);
        let len = u32::from_le_bytes(len.try_into().unwrap()) as usize;
        let (part, rest) = rest.split_at(len);
        *bytes = rest;
        part.to_vec()
    };
    let mut pairs = Vec::new();
    while !bytes.is_empty() {
        let k = take(&mut bytes);
        let v = take(&mut bytes);
        pairs.push((k, v));
    }
    pairs
}

/// Every pair of the database in key order, less `mhome` (it names the store's path).
fn database_pairs(kv: &dyn Kv) -> Vec<Pair> {
    kv.scan_prefix(&[])
        .map(Result::unwrap)
        .filter(|(k, _)| k.as_slice() != meta::HOME)
        .collect()
}

fn options() -> StoreOptions {
    StoreOptions {
        cache_bytes: 1 << 20,
    }
}

/// Today's store given the history: created in `dir`, its device id set to `LOCAL`, the ops
/// applied in `CALLS`, settled, flushed and closed. Returns the log file and the pairs.
fn build_store(dir: &FsPath) -> (Vec<u8>, Vec<Pair>) {
    let ops = history();
    let mut store = Store::create(dir, &options()).unwrap();
    store.put_meta(meta::REPLICA, LOCAL.0.to_vec()).unwrap();
    for call in CALLS {
        let batch: Vec<SealedOp> = call.iter().map(|&i| ops[i].clone()).collect();
        let outcomes = store.apply_all_strict(&batch).unwrap();
        assert!(
            outcomes.iter().all(|o| *o == OpOutcome::Stored),
            "{outcomes:?}"
        );
    }
    store.settle().unwrap();
    store.flush().unwrap();
    drop(store);
    let log = std::fs::read(dir.join(LOG_FILE)).unwrap();
    let kv = SledKv::open(&dir.join("db"), 1 << 20).unwrap();
    (log, database_pairs(&kv))
}

/// The log's records read back through the store's own reader.
fn read_log(bytes: &[u8]) -> Vec<Result<(u8, OpId, SealedOp), String>> {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join(LOG_FILE);
    std::fs::write(&path, bytes).unwrap();
    let log = OpLog::new(
        Box::new(FileLog::open(&path, false).unwrap()),
        bytes.len() as u64,
    );
    let mut scan = log.scan(0, bytes.len() as u64);
    let mut out = Vec::new();
    loop {
        match scan.next_read().unwrap() {
            Read::Record(r) => out.push(
                r.seal()
                    .map(|op| (r.flags, r.id, op))
                    .map_err(|e| e.to_string()),
            ),
            Read::End => return out,
            Read::Bad { why, .. } => {
                out.push(Err(why));
                return out;
            }
        }
    }
}

// ---- tests ---------------------------------------------------------------------------------

#[test]
fn the_history_has_the_recorded_op_ids() {
    // The literal ops still seal to the ids the fixtures were written with (the op format).
    let ids: Vec<String> = history().iter().map(|op| op.id().to_string()).collect();
    assert_eq!(ids, OP_IDS);
}

#[test]
fn the_log_fixture_decodes_to_the_history() {
    // The committed ops.log reads back, hash-checked, as the history with COMMIT per call.
    let ops = history();
    let records = read_log(&read_fixture(LOG_FIXTURE));
    assert_eq!(records.len(), ops.len());
    for ((record, op), flags) in records.into_iter().zip(&ops).zip(expected_flags()) {
        let (read_flags, id, sealed) = record.unwrap();
        assert_eq!(read_flags, flags, "flags of {}", op.id());
        assert_eq!(id, op.id());
        assert_eq!(sealed.op(), op.op());
    }
}

#[test]
fn a_changed_byte_anywhere_in_the_log_fixture_is_refused() {
    // Any one byte of the log flipped (length, flags, id or op) makes the reader refuse it.
    let golden = read_fixture(LOG_FIXTURE);
    for at in 0..golden.len() {
        let mut bad = golden.clone();
        bad[at] ^= 0x80;
        let records = read_log(&bad);
        assert!(
            records.iter().any(Result::is_err),
            "byte {at} flipped, every record still reads"
        );
    }
}

#[test]
fn the_database_fixture_decodes_to_the_expected_entries() {
    // The dump holds exactly the meta, `a` and `c` keys, each parsing to what the history gives.
    let ops = history();
    let log_len = read_fixture(LOG_FIXTURE).len() as u64;
    let pairs = parse_pairs(&read_fixture(KV_FIXTURE));
    let summary = expected_summary(&ops);
    let registers = expected_registers(&ops);

    let mut expected_keys: Vec<Vec<u8>> = summary.keys().map(keys::author).collect();
    expected_keys.extend(registers.keys().map(keys::contact));
    expected_keys.extend([meta::APPLIED, meta::FORMAT, meta::REPLICA].map(<[u8]>::to_vec));
    let found_keys: Vec<Vec<u8>> = pairs.iter().map(|(k, _)| k.clone()).collect();
    assert_eq!(found_keys, expected_keys);

    let value = |key: &[u8]| -> &[u8] { &pairs.iter().find(|(k, _)| k == key).unwrap().1 };
    assert_eq!(value(meta::FORMAT), [3]);
    assert_eq!(value(meta::REPLICA), LOCAL.0);
    let applied: (u64, u64) = keys::decode(value(meta::APPLIED), "applied").unwrap();
    assert_eq!(applied, (ops.len() as u64, log_len));
    for (author, head) in &summary {
        let key = keys::author(author);
        assert_eq!(
            keys::parse_author(&key, value(&key)).unwrap(),
            (*author, *head)
        );
    }
    for (contact, expected) in &registers {
        let key = keys::contact(contact);
        assert_eq!(keys::parse_contact(&key).unwrap(), *contact);
        assert_eq!(&keys::parse_contact_value(value(&key)).unwrap(), expected);
    }

    // What the history was built to contain: a conflict and a delete.
    let org = &registers[&ADA][&Path::Field(Field::Org)];
    assert_eq!(org.0, 3);
    assert!(org.1.conflicted());
    assert_eq!(org.1.value(), text("Engines Ltd").as_ref());
    let exists = &registers[&CHARLES][&Path::Exists].1;
    assert_eq!(exists.value(), Some(&Value::Bool(false)));
}

#[test]
fn a_cut_register_or_head_value_is_refused() {
    // No checksum here, but values decode exactly: every cut `a` or `c` value is refused.
    let pairs = parse_pairs(&read_fixture(KV_FIXTURE));
    let mut checked = 0;
    for (k, v) in &pairs {
        for cut in 0..v.len() {
            let prefix = &v[..cut];
            match k[0] {
                keys::AUTHOR => assert!(keys::parse_author(k, prefix).is_err(), "cut at {cut}"),
                keys::CONTACT => {
                    assert!(keys::parse_contact_value(prefix).is_err(), "cut at {cut}");
                }
                _ => continue,
            }
            checked += 1;
        }
    }
    assert!(checked > 100, "only {checked} prefixes checked");
}

#[test]
fn todays_store_writes_the_fixture_bytes() {
    // Today's store, given the same ops in the same calls, writes the fixtures byte for byte.
    let tmp = tempfile::tempdir().unwrap();
    let (log, pairs) = build_store(&tmp.path().join("store"));
    let kv = dump_pairs(&pairs);
    write_fixture_if_asked(LOG_FIXTURE, &log);
    write_fixture_if_asked(KV_FIXTURE, &kv);
    assert_same_bytes(LOG_FIXTURE, &log, &read_fixture(LOG_FIXTURE));
    assert_same_bytes(KV_FIXTURE, &kv, &read_fixture(KV_FIXTURE));
}

#[test]
fn todays_store_opens_a_store_assembled_from_the_fixtures() {
    // A store made of the fixtures (its own `mhome` kept) opens, verifies and reads the history.
    let ops = history();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("store");
    drop(Store::create(&dir, &options()).unwrap());
    std::fs::write(dir.join(LOG_FILE), read_fixture(LOG_FIXTURE)).unwrap();
    {
        let kv = SledKv::open(&dir.join("db"), 1 << 20).unwrap();
        let mut batch = KvBatch::default();
        for (k, v) in parse_pairs(&read_fixture(KV_FIXTURE)) {
            batch.insert(k, v);
        }
        kv.apply(batch).unwrap();
        kv.flush().unwrap();
    }
    let store = Store::open(&dir, &options()).unwrap();
    assert_eq!(*store.recovery(), Recovery::default());
    let report = store.verify().unwrap();
    assert!(report.is_ok(), "{report:?}");
    assert_eq!(store.device_id(), LOCAL);
    assert_eq!(store.op_count(), ops.len() as u64);
    assert_eq!(*store.summary(), expected_summary(&ops));
    for (contact, registers) in expected_registers(&ops) {
        assert_eq!(store.contact_registers(&contact).unwrap(), registers);
    }
    let ada = store.contact(&ADA).unwrap().unwrap();
    assert!(!ada.deleted);
    assert_eq!(ada.contact.get(Field::Given), Some("Ada"));
    assert_eq!(ada.contact.get(Field::Org), Some("Engines Ltd"));
    assert_eq!(ada.contact.phones[0].body.to_string(), "+44 20 7946 0002");
    assert!(ada.contact.tags.is_empty());
    assert_eq!(ada.contact.custom["X-SHOE-SIZE"], "38");
    let conflicts = store.conflicts().unwrap();
    assert_eq!(conflicts.len(), 1, "{conflicts:?}");
    assert_eq!(conflicts[0].0, ADA);
    assert_eq!(conflicts[0].1.path, Path::Field(Field::Org));
    assert!(store.contact(&CHARLES).unwrap().unwrap().deleted);
    for (op, stored) in ops.iter().zip(store.ops()) {
        assert_eq!(stored.unwrap(), *op);
    }
}

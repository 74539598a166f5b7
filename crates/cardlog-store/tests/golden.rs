//! Golden fixtures of store formats 3 and 4 (docs/FORMAT.md, "Store (version 4)" and "Golden
//! fixtures"): `ops.log` as written, and a dump of the sled database's key/value pairs. The
//! format-3 files were written by the build of commit 155f9e4, before the refactor that
//! followed it; these tests prove that the store still reads them (the log's records, the meta
//! entries, the `a` author heads, the `c` contact registers), that a format-3 store assembled
//! from them is upgraded on open, and that a damaged log record or a cut register value is
//! refused. The format-4 files (the history in op format 2, with a book and chain-tip
//! signatures) are what today's store writes, byte for byte.
//!
//! The history (`cardlog-core/tests/golden_history`, shared with the wire's fixtures) is six
//! ops of two authors, literal ops with fixed ids and timestamps: a create with fields and phone, e-mail, address, tag and custom writes; a
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
use std::path::Path as FsPath;

use cardlog_core::codec::OpFormat;
use cardlog_core::replay::{Heads, RegisterWrite};
use cardlog_core::{
    BookId, ContactId, DeviceId, DeviceKey, Field, OpId, Path, SealedOp, SignedTip, Value,
};
use cardlog_store::keys::{self, meta, ContactRegisters};
use cardlog_store::log::{FileLog, OpLog, Read, COMMIT, LOG_FILE};
use cardlog_store::state::{contact_value, Kv, KvBatch, SledKv};
use cardlog_store::{OpOutcome, Recovery, Store, StoreOptions};

#[path = "../../cardlog-core/tests/golden_history/mod.rs"]
mod golden_history;
use golden_history::*;

// ---- the history (core's tests/golden_history: ops, summary, fixture files) ------------

/// The store's own device id (`mreplica`; `create` draws a random one, the test sets this).
const LOCAL: DeviceId = DeviceId([0x5e; 16]);

/// The apply calls, as indices into the history: the last record of each carries `COMMIT`.
const CALLS: [&[usize]; 4] = [&[0, 1], &[2], &[3, 4], &[5]];

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
const LOG_FIXTURE_V4: &str = "store-v4-ops.log.bin";
const KV_FIXTURE_V4: &str = "store-v4-kv.bin";
/// Format 5 adds the name index to the database; its log is format 4's, byte for byte.
const KV_FIXTURE_V5: &str = "store-v5-kv.bin";
/// Name index version 2 (same store format): each `n` entry holds its contact's row.
const KV_FIXTURE_V5_ROWS: &str = "store-v5-rows-kv.bin";
/// Name index version 3 (same store format): no `N` keys.
const KV_FIXTURE_V5_NAMES3: &str = "store-v5-names3-kv.bin";
/// Name index version 4 (same store format): the column widths' counts (`w` keys).
const KV_FIXTURE_V5_NAMES4: &str = "store-v5-names4-kv.bin";
/// Signatures a later one covers let go of (same store format, session 38).
const KV_FIXTURE_V5_SIGS: &str = "store-v5-sigs-kv.bin";
/// Format 6: each contact's value keeps every write key once (session 40). What today's
/// store writes.
const KV_FIXTURE_V6: &str = "store-v6-kv.bin";

/// The format-4 fixture's device key (seed 5e…5e), its book, and the keys its authors'
/// signatures are made with (seed = the author's id byte repeated; the store keeps signatures,
/// the facade checks them).
fn local_key() -> DeviceKey {
    DeviceKey::from_seed(&[0x5e; 32])
}
const BOOK: BookId = BookId([0xb0; 16]);
fn author_key(author: &DeviceId) -> DeviceKey {
    DeviceKey::from_seed(&[author.0[0]; 32])
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

/// Every pair of the database in key order, less `mhome` (it names the store's path) and
/// `mnames` (it names the Unicode version of the toolchain that built the store).
fn database_pairs(kv: &dyn Kv) -> Vec<Pair> {
    kv.scan_prefix(&[])
        .map(Result::unwrap)
        .filter(|(k, _)| k.as_slice() != meta::HOME && k.as_slice() != meta::NAMES)
        .collect()
}

fn options() -> StoreOptions {
    StoreOptions {
        cache_bytes: 1 << 20,
        ..StoreOptions::default()
    }
}

/// Today's store given the history in op format 2: created in `dir`, its key replaced by
/// [`local_key`], in book [`BOOK`], the ops applied in `CALLS` with a signature of each call's
/// last op of each author, settled, flushed and closed. Returns the log file and the pairs.
fn build_store(dir: &FsPath) -> (Vec<u8>, Vec<Pair>) {
    let ops = history_in(OpFormat::V2);
    drop(Store::create(dir, &options()).unwrap());
    set_key(dir, &local_key());
    let mut store = Store::open(dir, &options()).unwrap();
    store.set_book(BOOK).unwrap();
    for call in CALLS {
        let batch: Vec<SealedOp> = call.iter().map(|&i| ops[i].clone()).collect();
        let mut tips = BTreeMap::new();
        for op in &batch {
            let author = op.op().author;
            tips.insert(
                author,
                SignedTip {
                    author,
                    key: author_key(&author).public(),
                    seq: op.op().seq,
                    op: op.id(),
                    signature: author_key(&author).sign_tip(&BOOK, &op.id()),
                },
            );
        }
        let tips: Vec<SignedTip> = tips.into_values().collect();
        let outcomes = store.apply_signed_strict(&batch, &tips).unwrap();
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

/// Makes the closed store in `dir` write as `key`'s device.
fn set_key(dir: &FsPath, key: &DeviceKey) {
    std::fs::write(dir.join(cardlog_store::KEY_FILE), key.seed()).unwrap();
    let kv = SledKv::open(&dir.join("db"), 1 << 20).unwrap();
    let mut batch = KvBatch::default();
    batch.insert(meta::REPLICA.to_vec(), key.device().0.to_vec());
    kv.apply(batch).unwrap();
    kv.flush().unwrap();
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
    let summary = summary_of(&ops);
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
    write_fixture_if_asked(KV_FIXTURE_V6, &kv);
    assert_same_bytes(LOG_FIXTURE_V4, &log, &read_fixture(LOG_FIXTURE_V4));
    assert_same_bytes(KV_FIXTURE_V6, &kv, &read_fixture(KV_FIXTURE_V6));
}

#[test]
fn the_format_6_fixture_is_the_format_5_fixture_with_each_contact_value_packed() {
    // Every `c` value holds the same registers, now each write key once (and a mark first);
    // the format entry says 6; nothing else differs. Packed, the contacts take under two
    // thirds of their format-5 bytes.
    let v5 = parse_pairs(&read_fixture(KV_FIXTURE_V5_SIGS));
    let v6 = parse_pairs(&read_fixture(KV_FIXTURE_V6));
    assert_eq!(
        v5.iter().map(|(k, _)| k).collect::<Vec<_>>(),
        v6.iter().map(|(k, _)| k).collect::<Vec<_>>()
    );
    let (mut bytes5, mut bytes6, mut contacts) = (0, 0, 0);
    for ((k, old), (_, new)) in v5.iter().zip(&v6) {
        if k.as_slice() == meta::FORMAT {
            assert_eq!((old.as_slice(), new.as_slice()), (&[5][..], &[6][..]));
        } else if k[0] == keys::CONTACT {
            let registers = keys::parse_contact_value(old).unwrap();
            assert_ne!(old[0], contact_value::MARK);
            assert_eq!(new[0], contact_value::MARK);
            assert_eq!(keys::parse_contact_value(new).unwrap(), registers);
            assert_eq!(*new, keys::contact_value(&registers));
            (bytes5, bytes6, contacts) = (bytes5 + old.len(), bytes6 + new.len(), contacts + 1);
        } else {
            assert_eq!(old, new, "{k:?}");
        }
    }
    assert!(contacts >= 2, "{contacts} contacts");
    assert!(bytes6 * 3 < bytes5 * 2, "{bytes6} of {bytes5}");
}

#[test]
fn the_signatures_fixture_is_the_version_4_fixture_without_the_covered_signatures() {
    // Calls [A1 B1] [A2] [B2 B3] [A3] kept signatures of A at 1, 2, 3 and of B at 1, 3; each
    // chain is held whole, so only its highest is needed. Nothing else differs.
    let names4 = parse_pairs(&read_fixture(KV_FIXTURE_V5_NAMES4));
    let sigs = parse_pairs(&read_fixture(KV_FIXTURE_V5_SIGS));
    let seqs = |pairs: &[Pair]| -> Vec<u64> {
        pairs
            .iter()
            .filter(|(k, _)| k[0] == keys::SIGNATURE)
            .map(|(k, _)| keys::parse_signature(k).unwrap().1)
            .collect()
    };
    assert_eq!(seqs(&names4), [1, 2, 3, 1, 3]);
    assert_eq!(seqs(&sigs), [3, 3]);
    let covered =
        |(k, _): &Pair| k[0] == keys::SIGNATURE && keys::parse_signature(k).unwrap().1 < 3;
    let kept: Vec<Pair> = names4.into_iter().filter(|p| !covered(p)).collect();
    assert_eq!(kept, sigs);
}

#[test]
fn the_version_4_fixture_is_the_version_3_fixture_and_its_width_counts() {
    // Name index version 4 adds a count per column, deleted flag and width: `w`, column,
    // deleted, width (u32 BE) → rows (u64 BE). Nothing else differs.
    let names3 = parse_pairs(&read_fixture(KV_FIXTURE_V5_NAMES3));
    let names4 = parse_pairs(&read_fixture(KV_FIXTURE_V5_NAMES4));
    let (widths, rest): (Vec<Pair>, Vec<Pair>) =
        names4.into_iter().partition(|(k, _)| k[0] == keys::WIDTH);
    assert_eq!(rest, names3);
    let mut want: BTreeMap<Vec<u8>, u64> = BTreeMap::new();
    for (k, v) in names3.iter().filter(|(k, _)| k[0] == keys::NAME) {
        let row = keys::parse_row(k, v).unwrap();
        let (name, first) = row.widths();
        for (column, width) in [(keys::WIDTH_NAME, name), (keys::WIDTH_FIRST, first)] {
            let mut key = vec![keys::WIDTH, column, u8::from(row.deleted)];
            key.extend_from_slice(&(width as u32).to_be_bytes());
            *want.entry(key).or_default() += 1;
        }
    }
    let want: Vec<Pair> = want
        .into_iter()
        .map(|(k, n)| (k, n.to_be_bytes().to_vec()))
        .collect();
    assert!(!want.is_empty());
    assert_eq!(widths, want);
}

#[test]
fn the_rows_fixture_is_the_format_5_fixture_with_a_row_in_each_name_entry() {
    // Name index version 1 left each `n` value empty; version 2 holds the contact's row there.
    // Nothing else differs.
    let v5 = parse_pairs(&read_fixture(KV_FIXTURE_V5));
    let rows = parse_pairs(&read_fixture(KV_FIXTURE_V5_ROWS));
    let contacts = expected_registers(&history_in(OpFormat::V2));
    assert_eq!(rows.len(), v5.len());
    let mut named = 0;
    for ((k, old), (k2, new)) in v5.iter().zip(&rows) {
        assert_eq!(k, k2);
        if k[0] != keys::NAME {
            assert_eq!(old, new, "{k:?}");
            continue;
        }
        named += 1;
        assert!(old.is_empty(), "{k:?}");
        let contact = cardlog_core::listing_key_contact(&k[1..]).unwrap();
        let view = cardlog_core::replay::view_of(contact, &contacts[&contact]);
        let row = cardlog_core::ContactRow::of(&view);
        assert_eq!(*new, keys::row_value(&row), "{k:?}");
        assert_eq!(keys::parse_row(k, new).unwrap(), row);
    }
    assert_eq!(named, contacts.len());
}

#[test]
fn the_version_3_fixture_is_the_rows_fixture_without_its_n_of_keys() {
    // Name index version 3 derives where a contact was listed from its registers: the `N`
    // keys are gone, nothing else differs.
    let rows = parse_pairs(&read_fixture(KV_FIXTURE_V5_ROWS));
    let names3 = parse_pairs(&read_fixture(KV_FIXTURE_V5_NAMES3));
    let contacts = expected_registers(&history_in(OpFormat::V2));
    let kept: Vec<Pair> = rows
        .iter()
        .filter(|(k, _)| k[0] != keys::NAME_OF)
        .cloned()
        .collect();
    assert_eq!(rows.len(), kept.len() + contacts.len());
    assert_eq!(names3, kept);
}

#[test]
fn the_format_5_database_fixture_is_format_4_and_the_name_index() {
    // Every format-4 entry (less the format) with the same value, and beside them the name
    // index: one `n` key per contact in listing order and one `N` key naming it.
    let v4 = parse_pairs(&read_fixture(KV_FIXTURE_V4));
    let v5 = parse_pairs(&read_fixture(KV_FIXTURE_V5));
    let value = |pairs: &[Pair], key: &[u8]| -> Option<Vec<u8>> {
        pairs.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone())
    };
    assert_eq!(value(&v5, meta::FORMAT), Some(vec![5]));
    // `mnames` is not in the dump (`database_pairs`): a store assembled from it builds its
    // index at open (`todays_store_opens_stores_assembled_from_the_fixtures`).
    assert_eq!(value(&v5, meta::NAMES), None);
    for (k, v) in &v4 {
        if k.as_slice() != meta::FORMAT {
            assert_eq!(value(&v5, k).as_ref(), Some(v), "{k:?}");
        }
    }
    let contacts = expected_registers(&history_in(OpFormat::V2));
    let names: Vec<&Pair> = v5.iter().filter(|(k, _)| k[0] == keys::NAME).collect();
    let name_of: Vec<&Pair> = v5.iter().filter(|(k, _)| k[0] == keys::NAME_OF).collect();
    assert_eq!(names.len(), contacts.len());
    assert_eq!(name_of.len(), contacts.len());
    assert_eq!(v5.len(), v4.len() + 2 * contacts.len());
    for (k, listed) in name_of {
        assert!(names.iter().any(|(n, _)| n[1..] == listed[..]));
        let contact = ContactId(k[1..17].try_into().unwrap());
        let view = cardlog_core::replay::view_of(contact, &contacts[&contact]);
        assert_eq!(*listed, cardlog_core::listing_key(&view.contact));
    }
}

#[test]
fn the_format_4_database_fixture_holds_the_book_and_the_signatures() {
    // Beside format 3's entries: the book, and per author the signature of the last op of
    // each apply call, as (op id, public key, signature).
    let ops = history_in(OpFormat::V2);
    let pairs = parse_pairs(&read_fixture(KV_FIXTURE_V4));
    let value = |key: &[u8]| -> Option<&[u8]> {
        pairs
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_slice())
    };
    assert_eq!(value(meta::FORMAT), Some(&[4][..]));
    assert_eq!(value(meta::REPLICA), Some(&local_key().device().0[..]));
    assert_eq!(value(meta::BOOK), Some(&BOOK.0[..]));
    let signed: Vec<&Pair> = pairs
        .iter()
        .filter(|(k, _)| k[0] == keys::SIGNATURE)
        .collect();
    // Calls [A1 B1] [A2] [B2 B3] [A3]: A at 1, 2, 3 and B at 1, 3.
    assert_eq!(signed.len(), 5);
    for (k, v) in signed {
        let author = DeviceId(k[1..17].try_into().unwrap());
        let seq = u64::from_be_bytes(k[17..25].try_into().unwrap());
        let op = ops
            .iter()
            .find(|o| o.op().author == author && o.op().seq == seq)
            .unwrap();
        assert_eq!(&v[..32], &op.id().0);
        assert_eq!(&v[32..64], &author_key(&author).public().0);
        let signature = cardlog_core::Signature(v[64..128].try_into().unwrap());
        author_key(&author)
            .public()
            .verify_tip(&BOOK, &op.id(), &signature)
            .unwrap();
    }
}

/// A store assembled in `dir` from a log and a database dump, with `marker` and without a key
/// file (format 3 has none) or with `key`.
fn assemble(dir: &FsPath, log: &str, kv: &str, marker: &str, key: Option<&DeviceKey>) {
    drop(Store::create(dir, &options()).unwrap());
    std::fs::write(dir.join(LOG_FILE), read_fixture(log)).unwrap();
    std::fs::write(dir.join("CARDLOG"), marker).unwrap();
    match key {
        Some(key) => std::fs::write(dir.join(cardlog_store::KEY_FILE), key.seed()).unwrap(),
        None => std::fs::remove_file(dir.join(cardlog_store::KEY_FILE)).unwrap(),
    }
    let kv_store = SledKv::open(&dir.join("db"), 1 << 20).unwrap();
    let mut batch = KvBatch::default();
    for pair in kv_store.scan_prefix(&[]) {
        let (k, _) = pair.unwrap();
        if k.as_slice() != meta::HOME {
            batch.remove(k);
        }
    }
    for (k, v) in parse_pairs(&read_fixture(kv)) {
        batch.insert(k, v);
    }
    kv_store.apply(batch).unwrap();
    kv_store.flush().unwrap();
}

#[test]
fn a_format_5_store_upgrades_without_writing_its_values_and_compact_packs_them() {
    // The upgrade sets the database's format, then replaces the marker, and writes no contact
    // value: format 6 reads format 5's, and a rebuild leaves them too. Whatever the database holds (every value in format
    // 5's encoding, or some packed since), cut before the format batch or after it, the open
    // finishes the upgrade, leaves every value as it was and verifies; `compact` then writes
    // what the format-6 fixture holds.
    let v5: Vec<_> = parse_pairs(&read_fixture(KV_FIXTURE_V5_SIGS))
        .into_iter()
        .filter(|(k, _)| k[0] == keys::CONTACT)
        .collect();
    let v6 = parse_pairs(&read_fixture(KV_FIXTURE_V6));
    let contacts = v5.len();
    assert!(contacts > 1);
    for (packed, format) in [(0, 5u8), (0, 6), (1, 6), (1, 5), (contacts, 6)] {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("store");
        let key = local_key();
        assemble(
            &dir,
            LOG_FIXTURE_V4,
            KV_FIXTURE_V5_SIGS,
            "cardlog store 5\n",
            Some(&key),
        );
        let mut before = v5.clone();
        {
            let kv = SledKv::open(&dir.join("db"), 1 << 20).unwrap();
            let mut batch = KvBatch::default();
            for (k, v) in v6
                .iter()
                .filter(|(k, _)| k[0] == keys::CONTACT)
                .take(packed)
            {
                batch.insert(k.clone(), v.clone());
                let at = before.iter().position(|(b, _)| b == k).unwrap();
                before[at].1 = v.clone();
            }
            batch.insert(meta::FORMAT.to_vec(), vec![format]);
            kv.apply(batch).unwrap();
            kv.flush().unwrap();
        }
        let mut store = Store::open(&dir, &options()).unwrap();
        assert!(store.verify().unwrap().is_ok());
        // A rebuild takes a format-5 value holding what the log gives as unchanged: it writes
        // nothing and reports no change.
        store.track_changes(true);
        store.rebuild().unwrap();
        assert_eq!(store.take_changes(), vec![], "{packed} packed");
        drop(store);
        assert_eq!(
            std::fs::read(dir.join("CARDLOG")).unwrap(),
            b"cardlog store 6\n"
        );
        let holds = |at: &std::path::Path| {
            let kv = SledKv::open(&at.join("db"), 1 << 20).unwrap();
            let pairs: Vec<_> = kv
                .scan_prefix(&[keys::CONTACT])
                .map(Result::unwrap)
                .collect();
            (kv.get(meta::FORMAT).unwrap(), pairs)
        };
        assert_eq!(holds(&dir), (Some(vec![6]), before), "{packed} packed");
        let done = Store::compact(&dir, &options()).unwrap();
        assert_eq!(done.packed, (contacts - packed) as u64, "{done:?}");
        // A copy that packs values takes the database's place, whatever its size.
        assert!(done.packed == 0 || !done.kept, "{done:?}");
        let want: Vec<_> = v6
            .iter()
            .filter(|(k, _)| k[0] == keys::CONTACT)
            .cloned()
            .collect();
        assert_eq!(holds(&dir), (Some(vec![6]), want), "{packed} packed");
        let store = Store::open(&dir, &options()).unwrap();
        assert!(store.verify().unwrap().is_ok());
    }
}

#[test]
fn a_format_5_store_is_read_as_it_is_by_a_read_only_open() {
    // A store this build cannot upgrade (a full disk, a read-only mount) still lists: a
    // read-only open replays the log and reads no contact value, the one thing format 6
    // changed. Nothing is written: the marker and the database stay format 5's.
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("store");
    assemble(
        &dir,
        LOG_FIXTURE_V4,
        KV_FIXTURE_V5_SIGS,
        "cardlog store 5\n",
        Some(&local_key()),
    );
    let store = Store::open_read_only(&dir).unwrap();
    let ops = history_in(OpFormat::V2);
    assert_eq!(store.op_count(), ops.len() as u64);
    for (contact, registers) in expected_registers(&ops) {
        assert_eq!(store.contact_registers(&contact).unwrap(), registers);
    }
    drop(store);
    assert_eq!(
        std::fs::read(dir.join("CARDLOG")).unwrap(),
        b"cardlog store 5\n"
    );
    let kv = SledKv::open(&dir.join("db"), 1 << 20).unwrap();
    assert_eq!(kv.get(meta::FORMAT).unwrap(), Some(vec![5]));
    // An older format is still refused, with what to do.
    drop(kv);
    std::fs::write(dir.join("CARDLOG"), "cardlog store 4\n").unwrap();
    let err = Store::open_read_only(&dir).err().unwrap();
    assert!(
        err.to_string().contains("open the store for writing once"),
        "{err}"
    );
}

#[test]
fn a_relay_book_of_format_5_is_upgraded_to_6() {
    // A journal store keeping ops only has no contact values: its format changes, and it
    // opens and verifies as it was.
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("book");
    let options = StoreOptions {
        database: cardlog_store::Database::Journal,
        keeps: cardlog_store::Keeps::OpsOnly,
        ..options()
    };
    let mut store = Store::create(&dir, &options).unwrap();
    let ops = history_in(OpFormat::V2);
    store.apply_all(&ops).unwrap();
    drop(store);
    {
        let kv = cardlog_store::state::JournalKv::open(&dir.join("db")).unwrap();
        let mut batch = KvBatch::default();
        batch.insert(meta::FORMAT.to_vec(), vec![5]);
        kv.apply(batch).unwrap();
        kv.flush().unwrap();
    }
    std::fs::write(dir.join("CARDLOG"), "cardlog store 5\n").unwrap();
    let store = Store::open(&dir, &options).unwrap();
    assert_eq!(store.op_count(), ops.len() as u64);
    assert!(store.verify().unwrap().is_ok());
    drop(store);
    assert_eq!(
        std::fs::read(dir.join("CARDLOG")).unwrap(),
        b"cardlog store 6\n"
    );
    let kv = cardlog_store::state::JournalKv::open(&dir.join("db")).unwrap();
    assert_eq!(kv.get(meta::FORMAT).unwrap(), Some(vec![6]));
}

#[test]
fn todays_store_opens_stores_assembled_from_the_fixtures() {
    // A format-3 store made of its fixtures (its own `mhome` kept) is upgraded on open: a key,
    // a new device id (the old one among the former ids), nothing else changed. A format-4
    // store is upgraded to format 5 (its name index built), and a format-5 store opens as it
    // is, its name index of version 1, 2 or 3 built again (version 2's `N` keys removed: `verify`
    // would name one left). Each verifies, reads the history and lists its contacts by name.
    for (format, kv5) in [
        (3u8, KV_FIXTURE_V5),
        (4, KV_FIXTURE_V5),
        (5, KV_FIXTURE_V5),
        (5, KV_FIXTURE_V5_ROWS),
        (5, KV_FIXTURE_V5_NAMES3),
        (5, KV_FIXTURE_V5_SIGS),
        (6, KV_FIXTURE_V6),
    ] {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("store");
        let (ops, local) = if format == 3 {
            assemble(&dir, LOG_FIXTURE, KV_FIXTURE, "cardlog store 3\n", None);
            (history(), None)
        } else {
            let key = local_key();
            let (kv, marker) = if format == 4 {
                (KV_FIXTURE_V4, "cardlog store 4\n")
            } else {
                (
                    kv5,
                    if format == 5 {
                        "cardlog store 5\n"
                    } else {
                        "cardlog store 6\n"
                    },
                )
            };
            assemble(&dir, LOG_FIXTURE_V4, kv, marker, Some(&key));
            (history_in(OpFormat::V2), Some(key.device()))
        };
        let store = Store::open(&dir, &options()).unwrap();
        assert_eq!(*store.recovery(), Recovery::default());
        let report = store.verify().unwrap();
        assert!(report.is_ok(), "{report:?}");
        match local {
            Some(device) => {
                assert_eq!(store.device_id(), device);
                assert_eq!(store.book(), Some(BOOK));
            }
            None => {
                assert_ne!(store.device_id(), LOCAL);
                assert_eq!(store.device_id(), store.device_key().device());
                assert_eq!(store.former_device_ids().unwrap(), [LOCAL]);
                assert_eq!(store.book(), None);
            }
        }
        assert_eq!(store.op_count(), ops.len() as u64);
        assert_eq!(*store.summary(), summary_of(&ops));
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
        let page = store
            .contacts_page(&cardlog_core::ContactQuery {
                include_deleted: true,
                ..Default::default()
            })
            .unwrap();
        let mut want = store.contacts(true).unwrap();
        want.sort_by_key(|v| cardlog_core::listing_key(&v.contact));
        assert_eq!(page.contacts, want, "format {format}");
        for (op, stored) in ops.iter().zip(store.ops()) {
            assert_eq!(stored.unwrap(), *op);
        }
        drop(store);
        assert_eq!(
            std::fs::read(dir.join("CARDLOG")).unwrap(),
            b"cardlog store 6\n"
        );
        // Every contact value packed once compacted (the upgrade from 5 leaves them as they
        // are; `compact` packs them).
        Store::compact(&dir, &options()).unwrap();
        let kv = SledKv::open(&dir.join("db"), 1 << 20).unwrap();
        for pair in kv.scan_prefix(&[keys::CONTACT]) {
            assert_eq!(pair.unwrap().1[0], contact_value::MARK, "format {format}");
        }
    }
}

//! Golden fixtures of segment v1, sync message v1 (every kind) and the bundle and heads files
//! (docs/FORMAT.md, "Segments (version 1)", "Sync messages and files (version 1)" and "Golden
//! fixtures"). The committed files in `tests/fixtures/golden/` were written by the build of
//! commit 155f9e4, before the refactor that followed it; for each, these tests prove that
//! today's decoder reads it as the values built here, that today's encoder writes exactly its
//! bytes from those values, and that a change of any one byte is refused (every format here
//! is checksummed).
//!
//! The ops are the history of `cardlog-store/tests/golden.rs` (the same literal ops, repeated
//! here so that each crate's fixtures stand alone): six ops of two authors with a create of
//! every kind of write, an edit, a conflict and a delete. `CARDLOG_WRITE_GOLDEN=1` writes
//! fixture files that are missing (never overwriting one); a plain run only reads and asserts.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use cardlog_core::replay::ChainTip;
use cardlog_core::{
    ContactId, Device, DeviceId, FakeClock, Field, Hlc, ItemBody, ItemId, ItemKind, ItemValue, Op,
    OpId, Path, PostalAddress, SealedOp, Value, Write,
};
use cardlog_sync::bundle::{self, Imported};
use cardlog_sync::memory::MemoryReplica;
use cardlog_sync::wire::message::{self, Fork, Message, Summary};
use cardlog_sync::{decode_segments, encode_segments, Locate, Resolve, WireError};
use cardlog_sync::{Applied, Received, SyncStore};

// ---- the history (as in cardlog-store/tests/golden.rs) -------------------------------------

const A: DeviceId = DeviceId([0xa1; 16]);
const B: DeviceId = DeviceId([0xb2; 16]);
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

/// Per author, the last op among `ops`.
fn summary_of(ops: &[SealedOp]) -> Summary {
    let mut summary = Summary::new();
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

/// Ops sorted by author and seq (decoding returns them in a dependency order).
fn by_author_and_seq(mut ops: Vec<SealedOp>) -> Vec<SealedOp> {
    ops.sort_by_key(|op| (op.op().author, op.op().seq));
    ops
}

/// Some ops, as the sender (by id) and the receiver (by author and seq) look them up.
struct Held(Vec<SealedOp>);

impl Locate for Held {
    fn locate(&self, id: &OpId) -> Result<Option<SealedOp>, WireError> {
        Ok(self.0.iter().find(|op| op.id() == *id).cloned())
    }
}

impl Resolve for Held {
    fn op_at(&self, author: &DeviceId, seq: u64) -> Result<Option<SealedOp>, WireError> {
        Ok(self
            .0
            .iter()
            .find(|op| op.op().author == *author && op.op().seq == seq)
            .cloned())
    }
}

/// The first op of each author (A1, B1): what the bundle's reader already holds.
fn firsts() -> Vec<SealedOp> {
    let ops = history();
    vec![ops[0].clone(), ops[1].clone()]
}

/// When B's replica writes the bundle: 09:03:20.
const BUNDLE_MS: u64 = NINE_MS + 200_000;

/// B's in-memory replica after the whole history, its clock at `BUNDLE_MS`.
fn replica_b() -> MemoryReplica {
    let mut replica = MemoryReplica::new(Device::new(B, Arc::new(FakeClock::new(BUNDLE_MS))));
    let applied = replica.apply(&history()).unwrap();
    assert_eq!(applied.stored, 6);
    replica
}

// ---- fixture files -------------------------------------------------------------------------

const SEGMENT_FIXTURE: &str = "segment-v1.bin";
const BUNDLE_FIXTURE: &str = "bundle-v1.bin";
const HEADS_FIXTURE: &str = "heads-v1.bin";

fn message_fixture(kind: &str) -> String {
    format!("message-v1-{kind}.bin")
}

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

/// Asserts `decode` refuses `golden` with the top bit of any one byte flipped.
fn assert_every_flip_refused<T: std::fmt::Debug, E>(
    name: &str,
    golden: &[u8],
    decode: impl Fn(&[u8]) -> Result<T, E>,
) {
    for at in 0..golden.len() {
        let mut bad = golden.to_vec();
        bad[at] ^= 0x80;
        if let Ok(value) = decode(&bad) {
            panic!("{name}: byte {at} flipped, still decodes as {value:?}");
        }
    }
}

/// Each message kind with the values its fixture holds; `segments` is the segment message the
/// `ops` message carries.
fn messages(segments: &[u8]) -> Vec<(&'static str, Message)> {
    let ops = history();
    let empty_segments = encode_segments(&[], &Held(Vec::new())).unwrap();
    vec![
        (
            "hello",
            Message::Hello {
                replica: A,
                wall_ms: NINE_MS + 300_000,
                summary: summary_of(&ops),
            },
        ),
        (
            "ops",
            Message::Ops {
                last: true,
                forks: vec![Fork {
                    author: B,
                    seq: 3,
                    ours: ops[4].id(),
                    theirs: OpId([0xee; 32]),
                }],
                segments: segments.to_vec(),
            },
        ),
        (
            "ack",
            Message::Ack {
                summary: summary_of(&ops),
            },
        ),
        (
            "abort",
            Message::Abort {
                reason: "the peer's clock is 2 h ahead — réessayez plus tard".into(),
            },
        ),
        (
            "bundle",
            Message::Bundle {
                replica: A,
                created_ms: NINE_MS + 400_000,
                segments: empty_segments,
            },
        ),
        (
            "heads",
            Message::SummaryFile {
                replica: A,
                summary: summary_of(&ops[..1]),
            },
        ),
    ]
}

// ---- tests ---------------------------------------------------------------------------------

#[test]
fn the_history_has_the_recorded_op_ids() {
    // The literal ops still seal to the ids the fixtures were written with (the op format).
    let ids: Vec<String> = history().iter().map(|op| op.id().to_string()).collect();
    assert_eq!(ids, OP_IDS);
}

#[test]
fn the_segment_fixture_decodes_to_the_history() {
    // The committed segment message rebuilds the six ops exactly on a receiver holding none.
    let decoded = decode_segments(&read_fixture(SEGMENT_FIXTURE), &Held(Vec::new())).unwrap();
    assert_eq!(by_author_and_seq(decoded), by_author_and_seq(history()));
}

#[test]
fn todays_encoder_writes_the_segment_fixture() {
    // Encoding the history gives the committed segment message byte for byte.
    let made = encode_segments(&history(), &Held(Vec::new())).unwrap();
    write_fixture_if_asked(SEGMENT_FIXTURE, &made);
    assert_same_bytes(SEGMENT_FIXTURE, &made, &read_fixture(SEGMENT_FIXTURE));
}

#[test]
fn a_changed_byte_in_the_segment_fixture_is_refused() {
    // Any one byte of the segment message flipped fails decoding.
    assert_every_flip_refused(SEGMENT_FIXTURE, &read_fixture(SEGMENT_FIXTURE), |b| {
        decode_segments(b, &Held(Vec::new()))
    });
}

#[test]
fn the_message_fixtures_decode_to_the_expected_messages() {
    // Each kind's committed message decodes to the message built here.
    let segments = read_fixture(SEGMENT_FIXTURE);
    for (kind, expected) in messages(&segments) {
        let decoded = message::decode(&read_fixture(&message_fixture(kind))).unwrap();
        assert_eq!(decoded.kind(), kind);
        assert_eq!(decoded, expected, "{kind}");
        if let Message::Bundle { segments, .. } = &decoded {
            assert_eq!(decode_segments(segments, &Held(Vec::new())).unwrap(), []);
        }
    }
}

#[test]
fn todays_encoder_writes_the_message_fixtures() {
    // Encoding each message built here gives its committed bytes.
    let segments = encode_segments(&history(), &Held(Vec::new())).unwrap();
    for (kind, message) in messages(&segments) {
        let name = message_fixture(kind);
        let made = message::encode(&message);
        write_fixture_if_asked(&name, &made);
        assert_same_bytes(&name, &made, &read_fixture(&name));
    }
}

#[test]
fn a_changed_byte_in_any_message_fixture_is_refused() {
    // Any one byte of any kind's message flipped fails decoding.
    for (kind, _) in messages(&[]) {
        let name = message_fixture(kind);
        assert_every_flip_refused(&name, &read_fixture(&name), message::decode);
    }
}

#[test]
fn the_bundle_fixture_decodes_and_imports_as_written() {
    // The committed bundle is B's for a reader holding A1 and B1, and importing it completes it.
    let golden = read_fixture(BUNDLE_FIXTURE);
    let Message::Bundle {
        replica,
        created_ms,
        segments,
    } = message::decode(&golden).unwrap()
    else {
        panic!("the bundle fixture is not a bundle message");
    };
    assert_eq!((replica, created_ms), (B, BUNDLE_MS));
    let rest: Vec<SealedOp> = history()[2..].to_vec();
    let decoded = decode_segments(&segments, &Held(firsts())).unwrap();
    assert_eq!(by_author_and_seq(decoded), by_author_and_seq(rest));
    // Without A1 and B1 the anchored segments cannot be rebuilt.
    assert!(decode_segments(&segments, &Held(Vec::new())).is_err());

    let mut reader = MemoryReplica::new(Device::new(A, Arc::new(FakeClock::new(BUNDLE_MS))));
    reader.apply(&firsts()).unwrap();
    let imported = bundle::import(&mut reader, &golden).unwrap();
    assert_eq!(
        imported,
        Imported {
            from: B,
            created_ms: BUNDLE_MS,
            received: Received {
                ops: 4,
                applied: Applied {
                    stored: 4,
                    duplicates: 0,
                    missing: 0,
                },
                forks: Vec::new(),
            },
        }
    );
    assert_eq!(reader.summary(), summary_of(&history()));
}

#[test]
fn the_heads_fixture_reads_as_b_and_its_summary() {
    // The committed heads file is B's summary after the whole history.
    let (replica, summary) = bundle::read_summary_file(&read_fixture(HEADS_FIXTURE)).unwrap();
    assert_eq!(replica, B);
    assert_eq!(summary, summary_of(&history()));
    let expected: BTreeMap<DeviceId, u64> = [(A, 3), (B, 3)].into();
    let seqs: BTreeMap<DeviceId, u64> = summary.iter().map(|(a, h)| (*a, h.seq)).collect();
    assert_eq!(seqs, expected);
}

#[test]
fn todays_export_writes_the_bundle_and_heads_fixtures() {
    // B's replica exports the same bundle (for a reader holding A1 and B1) and heads file.
    let replica = replica_b();
    let since = summary_of(&firsts());
    let made = bundle::export(&replica, Some(&since)).unwrap();
    write_fixture_if_asked(BUNDLE_FIXTURE, &made);
    assert_same_bytes(BUNDLE_FIXTURE, &made, &read_fixture(BUNDLE_FIXTURE));
    let made = bundle::summary_file(&replica);
    write_fixture_if_asked(HEADS_FIXTURE, &made);
    assert_same_bytes(HEADS_FIXTURE, &made, &read_fixture(HEADS_FIXTURE));
}

#[test]
fn a_changed_byte_in_the_bundle_or_heads_fixture_is_refused() {
    // Any one byte of either file flipped fails reading it.
    assert_every_flip_refused(
        HEADS_FIXTURE,
        &read_fixture(HEADS_FIXTURE),
        bundle::read_summary_file,
    );
    let mut reader = MemoryReplica::new(Device::new(A, Arc::new(FakeClock::new(BUNDLE_MS))));
    reader.apply(&firsts()).unwrap();
    assert_every_flip_refused(BUNDLE_FIXTURE, &read_fixture(BUNDLE_FIXTURE), |b| {
        bundle::import(&mut reader.clone(), b).map_err(|e| e.to_string())
    });
}

//! Golden fixtures of segment v1, sync message v1 (every kind) and the bundle and heads files
//! (docs/FORMAT.md, "Segments (version 1)", "Sync messages and files (version 1)" and "Golden
//! fixtures"). The committed files in `tests/fixtures/golden/` were written by the build of
//! commit 155f9e4, before the refactor that followed it; for each, these tests prove that
//! today's decoder reads it as the values built here, that today's encoder writes exactly its
//! bytes from those values, and that a change of any one byte is refused (every format here
//! is checksummed).
//!
//! The ops are the golden history the store's fixtures are built from too
//! (`cardlog-core/tests/golden_history`, included here): six ops of two authors with a create of
//! every kind of write, an edit, a conflict and a delete. `CARDLOG_WRITE_GOLDEN=1` writes
//! fixture files that are missing (never overwriting one); a plain run only reads and asserts.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::collections::BTreeMap;
use std::sync::Arc;

use cardlog_core::{Device, DeviceId, FakeClock, OpId, SealedOp};
use cardlog_sync::bundle::{self, Imported};
use cardlog_sync::memory::MemoryReplica;
use cardlog_sync::wire::message::{self, Fork, Message};
use cardlog_sync::{decode_segments, encode_segments, Locate, Resolve, WireError};
use cardlog_sync::{Applied, Received, SyncStore};

#[path = "../../cardlog-core/tests/golden_history/mod.rs"]
mod golden_history;
use golden_history::*;

// ---- the history (core's tests/golden_history: ops, summary, fixture files) ------------

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

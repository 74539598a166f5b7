//! Golden fixtures of segments, sync message v1 (every kind) and the bundle and heads files
//! (docs/FORMAT.md, "Segments", "Sync messages and files (version 1)" and "Golden fixtures"),
//! in two eras: `tests/fixtures/golden/` holds op format 1 in segment version 1, written by the
//! build of commit 155f9e4; `tests/fixtures/golden/op-format-2/` holds op format 2 in segment
//! version 2. For each file, these tests prove that today's decoder reads it as the values built
//! here and that a change of any one byte is refused (every format here is checksummed); for
//! the files of today's era, that today's encoder writes exactly their bytes.
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

use cardlog_core::codec::OpFormat;
use cardlog_core::{Device, DeviceId, FakeClock, OpId, SealedOp};
use cardlog_sync::bundle::{self, Imported};
use cardlog_sync::memory::MemoryReplica;
use cardlog_sync::wire::message::{self, Fork, Message};
use cardlog_sync::{
    decode_segments, encode_exact_segments, encode_segments, Locate, Resolve, WireError,
};
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

/// Which op format a set of fixtures holds, and where they are.
#[derive(Clone, Copy, Debug)]
struct Era {
    format: OpFormat,
    dir: &'static str,
}

const ERA_1: Era = Era {
    format: OpFormat::V1,
    dir: "",
};
/// What today's encoder writes.
const TODAY: Era = Era {
    format: OpFormat::V2,
    dir: "op-format-2/",
};
const ERAS: [Era; 2] = [ERA_1, TODAY];

impl Era {
    fn history(self) -> Vec<SealedOp> {
        history_in(self.format)
    }

    fn name(self, file: &str) -> String {
        format!("{}{file}", self.dir)
    }

    fn read(self, file: &str) -> Vec<u8> {
        read_fixture(&self.name(file))
    }

    /// The segment message fixture of this era.
    fn segment_file(self) -> &'static str {
        match self.format {
            OpFormat::V1 => "segment-v1.bin",
            OpFormat::V2 => "segment-v2.bin",
        }
    }
}

/// The first op of each author (A1, B1): what the bundle's reader already holds.
fn firsts(era: Era) -> Vec<SealedOp> {
    let ops = era.history();
    vec![ops[0].clone(), ops[1].clone()]
}

/// When B's replica writes the bundle: 09:03:20.
const BUNDLE_MS: u64 = NINE_MS + 200_000;

/// B's in-memory replica after the whole history, its clock at `BUNDLE_MS`.
fn replica_b(era: Era) -> MemoryReplica {
    let mut replica = MemoryReplica::new(Device::new(B, Arc::new(FakeClock::new(BUNDLE_MS))));
    let applied = replica.apply(&era.history(), &[]).unwrap();
    assert_eq!(applied.stored, 6);
    replica
}

// ---- fixture files -------------------------------------------------------------------------

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
fn messages(era: Era, segments: &[u8]) -> Vec<(&'static str, Message)> {
    let ops = era.history();
    let empty_segments = match era.format {
        // What the encoder of segment version 1 wrote for no ops (today's writes version 2).
        OpFormat::V1 => vec![
            67, 76, 83, 71, 1, 0, 0, 96, 84, 231, 53, 65, 205, 154, 177, 74, 150, 85, 51, 38, 49,
            128, 176,
        ],
        OpFormat::V2 => encode_segments(&[], &Held(Vec::new())).unwrap(),
    };
    let mut all = vec![
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
    ];
    // Busy came with the relay (issue 24), after op format 1's fixtures were written; it
    // carries no ops, so today's era holds its one fixture.
    if matches!(era.format, OpFormat::V2) {
        all.push((
            "busy",
            Message::Busy {
                retry_after_ms: 2_500,
            },
        ));
    }
    all
}

// ---- tests ---------------------------------------------------------------------------------

#[test]
fn the_history_has_the_recorded_op_ids() {
    // The literal ops still seal to the ids the fixtures were written with (the op format).
    for (era, expected) in [(ERA_1, OP_IDS), (TODAY, OP_IDS_V2)] {
        let ids: Vec<String> = era.history().iter().map(|op| op.id().to_string()).collect();
        assert_eq!(ids, expected, "{era:?}");
    }
}

#[test]
fn the_segment_fixture_decodes_to_the_history() {
    // The committed segment message rebuilds the six ops exactly on a receiver holding none.
    for era in ERAS {
        let decoded = decode_segments(&era.read(era.segment_file()), &Held(Vec::new())).unwrap();
        assert_eq!(by_author_and_seq(decoded), by_author_and_seq(era.history()));
    }
}

#[test]
fn todays_encoder_writes_the_segment_fixture() {
    // Encoding the history gives the committed segment message byte for byte.
    let made = encode_segments(&TODAY.history(), &Held(Vec::new())).unwrap();
    let name = TODAY.name(TODAY.segment_file());
    write_fixture_if_asked(&name, &made);
    assert_same_bytes(&name, &made, &read_fixture(&name));
}

/// The segment message of today's era with every op as its exact bytes (flag bit 3: how a
/// branch of a forked chain travels).
const EXACT_SEGMENT_FIXTURE: &str = "segment-v2-exact.bin";

#[test]
fn todays_encoder_writes_the_exact_segment_fixture_and_it_decodes_to_the_history() {
    let made = encode_exact_segments(&TODAY.history(), &Held(Vec::new())).unwrap();
    let name = TODAY.name(EXACT_SEGMENT_FIXTURE);
    write_fixture_if_asked(&name, &made);
    let golden = read_fixture(&name);
    assert_same_bytes(&name, &made, &golden);
    // Exact indeed: each op's bytes are in the file as they are (and not in the compact one).
    let compact = TODAY.read(TODAY.segment_file());
    let plain = cardlog_sync::wire::segment::plain(&compact).unwrap();
    for op in TODAY.history() {
        let found = |file: &[u8]| file.windows(op.bytes().len()).any(|w| w == op.bytes());
        assert!(found(&golden), "{name}: op {} not verbatim", op.id());
        assert!(
            !found(&plain),
            "the compact fixture holds op {} verbatim",
            op.id()
        );
    }
    let decoded = decode_segments(&golden, &Held(Vec::new())).unwrap();
    assert_eq!(
        by_author_and_seq(decoded),
        by_author_and_seq(TODAY.history())
    );
    assert_every_flip_refused(&name, &golden, |b| decode_segments(b, &Held(Vec::new())));
}

#[test]
fn a_changed_byte_in_the_segment_fixture_is_refused() {
    // Any one byte of the segment message flipped fails decoding.
    for era in ERAS {
        assert_every_flip_refused(
            &era.name(era.segment_file()),
            &era.read(era.segment_file()),
            |b| decode_segments(b, &Held(Vec::new())),
        );
    }
}

#[test]
fn the_message_fixtures_decode_to_the_expected_messages() {
    // Each kind's committed message decodes to the message built here.
    for era in ERAS {
        let segments = era.read(era.segment_file());
        for (kind, expected) in messages(era, &segments) {
            let decoded = message::decode(&era.read(&message_fixture(kind))).unwrap();
            assert_eq!(decoded.kind(), kind);
            assert_eq!(decoded, expected, "{era:?} {kind}");
            if let Message::Bundle { segments, .. } = &decoded {
                assert_eq!(decode_segments(segments, &Held(Vec::new())).unwrap(), []);
            }
        }
    }
}

#[test]
fn todays_encoder_writes_the_message_fixtures() {
    // Encoding each message built here gives its committed bytes.
    let segments = encode_segments(&TODAY.history(), &Held(Vec::new())).unwrap();
    for (kind, message) in messages(TODAY, &segments) {
        let name = TODAY.name(&message_fixture(kind));
        let made = message::encode(&message);
        write_fixture_if_asked(&name, &made);
        assert_same_bytes(&name, &made, &read_fixture(&name));
    }
}

#[test]
fn a_changed_byte_in_any_message_fixture_is_refused() {
    // Any one byte of any kind's message flipped fails decoding.
    for era in ERAS {
        for (kind, _) in messages(era, &[]) {
            let name = era.name(&message_fixture(kind));
            assert_every_flip_refused(&name, &read_fixture(&name), message::decode);
        }
    }
}

#[test]
fn the_bundle_fixture_decodes_and_imports_as_written() {
    // The committed bundle is B's for a reader holding A1 and B1, and importing it completes it.
    for era in ERAS {
        let golden = era.read(BUNDLE_FIXTURE);
        let Message::Bundle {
            replica,
            created_ms,
            segments,
        } = message::decode(&golden).unwrap()
        else {
            panic!("the bundle fixture is not a bundle message");
        };
        assert_eq!((replica, created_ms), (B, BUNDLE_MS));
        let rest: Vec<SealedOp> = era.history()[2..].to_vec();
        let decoded = decode_segments(&segments, &Held(firsts(era))).unwrap();
        assert_eq!(by_author_and_seq(decoded), by_author_and_seq(rest));
        // Without A1 and B1 the anchored segments cannot be rebuilt.
        assert!(decode_segments(&segments, &Held(Vec::new())).is_err());

        let mut reader = MemoryReplica::new(Device::new(A, Arc::new(FakeClock::new(BUNDLE_MS))));
        reader.apply(&firsts(era), &[]).unwrap();
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
                        refused: Vec::new(),
                        void: 0,
                    },
                    forks: Vec::new(),
                    taken_back: None,
                    settled: Vec::new(),
                },
            }
        );
        assert_eq!(reader.summary(), summary_of(&era.history()));
    }
}

#[test]
fn the_heads_fixture_reads_as_b_and_its_summary() {
    // The committed heads file is B's summary after the whole history.
    for era in ERAS {
        let (replica, summary) = bundle::read_summary_file(&era.read(HEADS_FIXTURE)).unwrap();
        assert_eq!(replica, B);
        assert_eq!(summary, summary_of(&era.history()));
        let expected: BTreeMap<DeviceId, u64> = [(A, 3), (B, 3)].into();
        let seqs: BTreeMap<DeviceId, u64> = summary.iter().map(|(a, h)| (*a, h.seq)).collect();
        assert_eq!(seqs, expected);
    }
}

#[test]
fn todays_export_writes_the_bundle_and_heads_fixtures() {
    // B's replica exports the same bundle (for a reader holding A1 and B1) and heads file.
    let replica = replica_b(TODAY);
    let since = summary_of(&firsts(TODAY));
    let made = bundle::export(&replica, Some(&since)).unwrap();
    let name = TODAY.name(BUNDLE_FIXTURE);
    write_fixture_if_asked(&name, &made);
    assert_same_bytes(&name, &made, &read_fixture(&name));
    let made = bundle::summary_file(&replica);
    let name = TODAY.name(HEADS_FIXTURE);
    write_fixture_if_asked(&name, &made);
    assert_same_bytes(&name, &made, &read_fixture(&name));
}

#[test]
fn a_changed_byte_in_the_bundle_or_heads_fixture_is_refused() {
    // Any one byte of either file flipped fails reading it.
    for era in ERAS {
        assert_every_flip_refused(
            &era.name(HEADS_FIXTURE),
            &era.read(HEADS_FIXTURE),
            bundle::read_summary_file,
        );
        let mut reader = MemoryReplica::new(Device::new(A, Arc::new(FakeClock::new(BUNDLE_MS))));
        reader.apply(&firsts(era), &[]).unwrap();
        assert_every_flip_refused(&era.name(BUNDLE_FIXTURE), &era.read(BUNDLE_FIXTURE), |b| {
            bundle::import(&mut reader.clone(), b).map_err(|e| e.to_string())
        });
    }
}

//! The seed inputs of the sync-layer fuzz targets, generated from the fixed ops of
//! [`crate::sync_checks::Universe`]. The files in fuzz/seeds/{decode_segments,decode_message,
//! sync_session,handshake}/ are exactly what [`sync_seeds`] returns: the stable test
//! crates/cardlog-sync/tests/fuzz_corpus.rs (which includes this file with `#[path]`) checks
//! that they match, and rewrites them when run with `CARDLOG_WRITE_SEEDS=1`.
//!
//! Names say what the target's checks must make of each seed: `valid-*` inputs are accepted,
//! `invalid-*` ones refused (for `sync_session`: every chunk accepted, or at least one
//! refused).

use cardlog_core::{OpId, SealedOp};
use cardlog_sync::encode_segments;
use cardlog_sync::wire::message::{self, Message, Summary};
use cardlog_sync::wire::varint;

use crate::sync_checks::{
    chunk, seal_message, summary_from, universe, unsealed, UniverseOps, MODE_AS_IS, MODE_SEAL,
    PEER, T0_MS,
};

/// One seed file: its target, its name, its bytes.
pub type Seed = (&'static str, &'static str, Vec<u8>);

fn segments(names: &[&str]) -> Vec<u8> {
    let ops: Vec<SealedOp> = universe().ops_named(names);
    encode_segments(&ops, &UniverseOps).unwrap_or_else(|e| panic!("seed segments: {e}"))
}

fn with_mode(mode: u8, bytes: &[u8]) -> Vec<u8> {
    let mut out = vec![mode];
    out.extend_from_slice(bytes);
    out
}

fn flipped(bytes: &[u8], at: usize) -> Vec<u8> {
    let mut out = bytes.to_vec();
    if let Some(b) = out.get_mut(at) {
        *b ^= 0x41;
    }
    out
}

fn replaced(bytes: &[u8], at: usize, value: u8) -> Vec<u8> {
    let mut out = bytes.to_vec();
    if let Some(b) = out.get_mut(at) {
        *b = value;
    }
    out
}

/// `plain` as a compressed segment message (version 3, docs/FORMAT.md "Segments,
/// compressed") declaring `declared` inflated bytes (its true length when `None`); made here
/// because the encoder leaves messages as short as the universe's plain.
fn zstd_wrapped(plain: &[u8], declared: Option<u64>) -> Vec<u8> {
    let mut out = b"CLSG".to_vec();
    out.push(cardlog_sync::wire::segment::COMPRESSED_VERSION);
    varint::put(&mut out, declared.unwrap_or(plain.len() as u64));
    out.extend_from_slice(&zstd::bulk::compress(plain, 3).unwrap_or_default());
    out
}

fn cat(parts: &[&[u8]]) -> Vec<u8> {
    parts.concat()
}

fn varint(v: u64) -> Vec<u8> {
    let mut out = Vec::new();
    varint::put(&mut out, v);
    out
}

/// Where the last segment's head id starts in a segment message body (without checksum): the
/// body's last 32 bytes.
fn last_head(body: &[u8]) -> usize {
    body.len().saturating_sub(32)
}

fn decode_segments_seeds() -> Vec<Seed> {
    let t = "decode_segments";
    let missing = segments(&["a2", "a3", "b1", "b2"]);
    let body = unsealed(&missing).to_vec();
    vec![
        // What the base lacks: two authors, one anchored at seq 2, a reference to another
        // author's write.
        (t, "valid-missing-ops.bin", with_mode(MODE_AS_IS, &missing)),
        (
            t,
            "valid-anchored.bin",
            with_mode(MODE_AS_IS, &segments(&["a2", "a3"])),
        ),
        (
            t,
            "valid-no-segments.bin",
            with_mode(MODE_AS_IS, &segments(&[])),
        ),
        // Decodable ops that replay refuses (a bad replaced write) or that fork from the
        // resolver's chain, and one stamped like its predecessor (accepted): the decoder does
        // not judge them.
        (
            t,
            "valid-refused-by-replay.bin",
            with_mode(
                MODE_AS_IS,
                &segments(&["b1", "b2-same-time", "c1-bad-replace"]),
            ),
        ),
        (
            t,
            "valid-fork.bin",
            with_mode(MODE_AS_IS, &segments(&["r2-fork"])),
        ),
        (
            t,
            "valid-sealed-by-harness.bin",
            with_mode(MODE_SEAL, &body),
        ),
        // The same messages for the harness to seal, so mutations of them reach the parser.
        (
            t,
            "valid-sealed-refused-by-replay.bin",
            with_mode(
                MODE_SEAL,
                unsealed(&segments(&["b1", "b2-same-time", "c1-bad-replace"])),
            ),
        ),
        (
            t,
            "valid-sealed-fork.bin",
            with_mode(MODE_SEAL, unsealed(&segments(&["r2-fork"]))),
        ),
        (t, "invalid-empty.bin", vec![MODE_AS_IS]),
        (
            t,
            "invalid-truncated.bin",
            with_mode(
                MODE_AS_IS,
                missing.get(..missing.len() / 2).unwrap_or_default(),
            ),
        ),
        (
            t,
            "invalid-bit-flip.bin",
            with_mode(MODE_AS_IS, &flipped(&missing, missing.len() / 2)),
        ),
        (
            t,
            "invalid-head-mismatch.bin",
            with_mode(MODE_SEAL, &flipped(&body, last_head(&body))),
        ),
        (
            t,
            "invalid-unknown-version.bin",
            with_mode(MODE_SEAL, &replaced(&body, 4, 9)),
        ),
        (
            t,
            "valid-compressed.bin",
            with_mode(MODE_AS_IS, &zstd_wrapped(&missing, None)),
        ),
        (
            t,
            "invalid-compressed-damaged.bin",
            with_mode(MODE_AS_IS, &{
                let wrapped = zstd_wrapped(&missing, None);
                flipped(&wrapped, wrapped.len() / 2)
            }),
        ),
        (
            t,
            "invalid-compressed-over-ratio.bin",
            with_mode(MODE_AS_IS, &zstd_wrapped(&missing, Some(1 << 20))),
        ),
        (
            t,
            "invalid-compressed-twice.bin",
            with_mode(
                MODE_AS_IS,
                &zstd_wrapped(&zstd_wrapped(&missing, None), None),
            ),
        ),
        (
            t,
            "invalid-bad-magic.bin",
            with_mode(MODE_SEAL, &replaced(&body, 3, b'X')),
        ),
        (
            t,
            "invalid-oversize-count.bin",
            with_mode(MODE_SEAL, &cat(&[b"CLSG\x01", &varint(1 << 40)])),
        ),
        (
            t,
            "invalid-non-minimal-varint.bin",
            with_mode(MODE_SEAL, b"CLSG\x01\x80\x00\x00"),
        ),
        (
            t,
            "invalid-trailing-byte.bin",
            with_mode(MODE_SEAL, &cat(&[&body, &[0]])),
        ),
        // b2 replaces a write of a2, which is neither in the message nor in the base.
        (
            t,
            "invalid-unresolved.bin",
            with_mode(MODE_AS_IS, &segments(&["b1", "b2"])),
        ),
    ]
}

fn base_summary() -> Summary {
    // REPLICA at seq 2, ALICE at seq 1: what the base holds.
    summary_from(&[1, 0x40])
}

fn decode_message_seeds() -> Vec<Seed> {
    let t = "decode_message";
    let hello = message::encode(&Message::Hello {
        replica: PEER,
        wall_ms: T0_MS + 600_000,
        summary: base_summary(),
    });
    let ops = message::encode(&Message::Ops {
        last: true,
        forks: vec![cardlog_sync::Fork {
            author: crate::sync_checks::ALICE,
            seq: 1,
            ours: OpId([0xee; 32]),
            theirs: universe().op("a1").id(),
        }],
        segments: segments(&["a2", "a3", "b1", "b2"]),
    });
    let ack = message::encode(&Message::Ack {
        summary: summary_from(&[1, 2, 1]),
    });
    let abort = message::encode(&Message::Abort {
        reason: "disk full: ünïcode reasons too".into(),
    });
    let bundle = message::encode(&Message::Bundle {
        replica: PEER,
        created_ms: T0_MS,
        segments: segments(&["a2", "a3"]),
    });
    let heads = message::encode(&Message::SummaryFile {
        replica: PEER,
        summary: Summary::new(),
    });
    let busy = message::encode(&Message::Busy {
        retry_after_ms: 2_000,
    });
    // An ack listing ALICE before REPLICA: authors out of order.
    let good_ack = unsealed(&message::encode(&Message::Ack {
        summary: summary_from(&[1, 0x40]),
    }))
    .to_vec();
    let entry = good_ack.len().saturating_sub(7) / 2;
    let (head, entries) = good_ack.split_at(7.min(good_ack.len()));
    let (first, second) = entries.split_at(entry.min(entries.len()));
    let unsorted = cat(&[head, second, first]);
    vec![
        (t, "valid-hello.bin", with_mode(MODE_AS_IS, &hello)),
        (t, "valid-ops.bin", with_mode(MODE_AS_IS, &ops)),
        (t, "valid-ack.bin", with_mode(MODE_AS_IS, &ack)),
        (t, "valid-abort.bin", with_mode(MODE_AS_IS, &abort)),
        (t, "valid-bundle.bin", with_mode(MODE_AS_IS, &bundle)),
        (t, "valid-heads.bin", with_mode(MODE_AS_IS, &heads)),
        (t, "valid-busy.bin", with_mode(MODE_AS_IS, &busy)),
        (
            t,
            "valid-sealed-by-harness.bin",
            with_mode(MODE_SEAL, unsealed(&hello)),
        ),
        // More for the harness to seal, so mutations of them reach the parser.
        (
            t,
            "valid-sealed-ops.bin",
            with_mode(MODE_SEAL, unsealed(&ops)),
        ),
        (
            t,
            "valid-sealed-ack.bin",
            with_mode(MODE_SEAL, unsealed(&ack)),
        ),
        (
            t,
            "valid-sealed-bundle.bin",
            with_mode(MODE_SEAL, unsealed(&bundle)),
        ),
        (t, "invalid-empty.bin", vec![MODE_AS_IS]),
        (
            t,
            "invalid-truncated.bin",
            with_mode(MODE_AS_IS, hello.get(..hello.len() - 1).unwrap_or_default()),
        ),
        (
            t,
            "invalid-bit-flip.bin",
            with_mode(MODE_AS_IS, &flipped(&hello, 10)),
        ),
        (
            t,
            "invalid-unknown-version.bin",
            with_mode(MODE_SEAL, &replaced(unsealed(&abort), 4, 2)),
        ),
        (
            t,
            "invalid-oversize-length.bin",
            with_mode(
                MODE_SEAL,
                &cat(&[b"CLSY\x01\x02\x01\x00", &varint((256 << 20) + 1)]),
            ),
        ),
        (
            t,
            "invalid-unsorted-summary.bin",
            with_mode(MODE_SEAL, &unsorted),
        ),
        (
            t,
            "invalid-non-minimal-varint.bin",
            with_mode(MODE_SEAL, b"CLSY\x01\x03\x80\x00"),
        ),
        (
            t,
            "invalid-trailing-byte.bin",
            with_mode(MODE_SEAL, &cat(&[unsealed(&ack), &[0]])),
        ),
        (
            t,
            "invalid-unknown-kind.bin",
            with_mode(MODE_SEAL, b"CLSY\x01\x09"),
        ),
        (
            t,
            "invalid-last-flag.bin",
            with_mode(MODE_SEAL, b"CLSY\x01\x02\x02\x00\x00"),
        ),
        (
            t,
            "invalid-abort-not-utf8.bin",
            with_mode(MODE_SEAL, b"CLSY\x01\x04\x02\xff\xfe"),
        ),
        // A correct checksum over bytes that are not a message: the harness must seal exactly
        // as the library does for this to reach the kind byte.
        (
            t,
            "invalid-sealed-garbage.bin",
            with_mode(MODE_AS_IS, &seal_message(b"CLSY\x01\x09")),
        ),
    ]
}

/// One `sync_session` chunk: a `u16` little-endian length, the selector, the payload.
fn session_chunk(selector: u8, payload: &[u8]) -> Vec<u8> {
    let len = u16::try_from(payload.len() + 1).unwrap_or(u16::MAX);
    cat(&[&len.to_le_bytes(), &[selector], payload])
}

/// The universe mask choosing the ops named.
fn mask(names: &[&str]) -> [u8; 2] {
    let mut m = 0u16;
    for (i, (name, _)) in universe().ops.iter().enumerate() {
        if names.contains(name) {
            m |= 1 << i;
        }
    }
    m.to_le_bytes()
}

fn ops_payload(flags: u8, names: &[&str]) -> Vec<u8> {
    cat(&[&[flags], &mask(names)])
}

fn sync_session_seeds() -> Vec<Seed> {
    let t = "sync_session";
    let empty_hello = session_chunk(chunk::HELLO, &[0]);
    let extras = ["a2", "a3", "b1", "b2"];
    // REPLICA at 2, ALICE at 3, BOB at 2: the replica after taking the extras.
    let full_ack = session_chunk(chunk::ACK, &[1, 2, 1]);
    let hello = message::encode(&Message::Hello {
        replica: PEER,
        wall_ms: T0_MS,
        summary: Summary::new(),
    });
    let ops = message::encode(&Message::Ops {
        last: true,
        forks: Vec::new(),
        segments: segments(&["a2", "a3"]),
    });
    let ack = message::encode(&Message::Ack {
        summary: summary_from(&[1, 2]),
    });
    let anchored = unsealed(&segments(&["a2", "a3"])).to_vec();
    vec![
        // Hello with an empty summary, the initiator's ops, its ack: a whole session.
        (
            t,
            "valid-full-session.bin",
            cat(&[
                &empty_hello,
                &session_chunk(chunk::OPS, &ops_payload(1, &extras)),
                &full_ack,
            ]),
        ),
        // The initiator holds r1 and a1: the responder sends only r2.
        (
            t,
            "valid-partial-hello.bin",
            cat(&[
                &session_chunk(chunk::HELLO, &[0, 0x40, 0x40]),
                &session_chunk(chunk::OPS, &ops_payload(1, &["b1"])),
                &session_chunk(chunk::ACK, &[1, 0x40, 0x40]),
            ]),
        ),
        // The same session as whole messages, and a second one right after.
        (
            t,
            "valid-raw-messages.bin",
            cat(&[
                &session_chunk(chunk::RAW, &hello),
                &session_chunk(chunk::RAW, &ops),
                &session_chunk(chunk::RAW, &ack),
                &session_chunk(chunk::SEALED, unsealed(&hello)),
            ]),
        ),
        // Ops split over two messages, the first not the last.
        (
            t,
            "valid-ops-in-parts.bin",
            cat(&[
                &empty_hello,
                &session_chunk(chunk::OPS, &ops_payload(0, &["a2", "a3"])),
                &session_chunk(chunk::SEGMENTS, &cat(&[&[0], &anchored])),
                &session_chunk(chunk::OPS, &ops_payload(1, &["b1", "b2"])),
                &full_ack,
            ]),
        ),
        // A bundle, then the same bundle again (nothing new).
        (
            t,
            "valid-bundle-import.bin",
            cat(&[
                &session_chunk(chunk::BUNDLE | chunk::OPS, &ops_payload(0, &extras)),
                &session_chunk(chunk::BUNDLE | chunk::OPS, &ops_payload(0, &extras)),
            ]),
        ),
        // The initiator reports a fork and sends a fork of the replica's own r2: both are
        // recorded, the forked chain is set aside, the session goes on.
        (
            t,
            "valid-fork-reported.bin",
            cat(&[
                &empty_hello,
                &session_chunk(chunk::OPS, &ops_payload(3, &["r2-fork"])),
                &session_chunk(chunk::ACK, &[1, 0x40]),
            ]),
        ),
        // BOB's seq 2 stamped like his seq 1: stored like any op (a chain's timestamps need
        // not increase).
        (
            t,
            "valid-same-time-chain.bin",
            cat(&[
                &empty_hello,
                &session_chunk(chunk::OPS, &ops_payload(1, &["b1", "b2-same-time"])),
            ]),
        ),
        (
            t,
            "invalid-bad-replace.bin",
            session_chunk(
                chunk::BUNDLE | chunk::OPS,
                &ops_payload(0, &["c1-bad-replace"]),
            ),
        ),
        (
            t,
            "invalid-same-peer.bin",
            session_chunk(chunk::HELLO, &[1]),
        ),
        // An ack before any hello, then a proper start.
        (
            t,
            "invalid-out-of-order.bin",
            cat(&[&full_ack, &empty_hello]),
        ),
        // Altered segment content under a correct checksum: the head does not match.
        (
            t,
            "invalid-damaged-segments.bin",
            cat(&[
                &empty_hello,
                &session_chunk(
                    chunk::SEGMENTS,
                    &cat(&[&[1], &flipped(&anchored, last_head(&anchored))]),
                ),
            ]),
        ),
        (
            t,
            "invalid-damaged-message.bin",
            session_chunk(chunk::RAW, &flipped(&hello, 8)),
        ),
        // b2 names a write of a2, which neither the message nor the replica has.
        (
            t,
            "invalid-unresolved.bin",
            cat(&[
                &empty_hello,
                &session_chunk(chunk::OPS, &ops_payload(1, &["b1", "b2"])),
            ]),
        ),
        // A heads file given to the bundle import.
        (
            t,
            "invalid-heads-as-bundle.bin",
            session_chunk(chunk::BUNDLE | chunk::HELLO, &[0, 1]),
        ),
    ]
}

fn handshake_seeds() -> Vec<Seed> {
    use crate::sync_checks::stage;
    let t = "handshake";
    // Message 1 is keyed by the book: no made-up one is taken (a real one is random).
    let m1 = |key: u8| {
        let mut m = b"CLNX\x01".to_vec();
        m.extend_from_slice(&[key; 48]);
        with_mode(stage::MESSAGE_1, &m)
    };
    vec![
        (t, "invalid-m1-empty.bin", vec![stage::MESSAGE_1]),
        (
            t,
            "invalid-m1-unencrypted.bin",
            with_mode(stage::MESSAGE_1, b"CLSY\x01\x01"),
        ),
        (t, "invalid-m1-unauthenticated.bin", m1(9)),
        (
            t,
            "invalid-m2.bin",
            with_mode(stage::MESSAGE_2, &[0x55; 192]),
        ),
        (
            t,
            "invalid-m3.bin",
            with_mode(stage::MESSAGE_3, &[0x55; 160]),
        ),
        (
            t,
            "invalid-sealed.bin",
            with_mode(stage::SEALED, &[0x55; 40]),
        ),
        // Addressed to a relay of many books: keyed by its device id instead.
        (
            t,
            "invalid-addressed-m1.bin",
            with_mode(stage::MESSAGE_1 | stage::ADDRESSED, &{
                let mut m = b"CLNX\x02".to_vec();
                m.extend_from_slice(&[9; 48]);
                m
            }),
        ),
        (
            t,
            "invalid-addressed-m3.bin",
            with_mode(stage::MESSAGE_3 | stage::ADDRESSED, &[0x55; 176]),
        ),
    ]
}

/// Every generated seed of the sync-layer targets.
pub fn sync_seeds() -> Vec<Seed> {
    let mut out = decode_segments_seeds();
    out.extend(decode_message_seeds());
    out.extend(sync_session_seeds());
    out.extend(handshake_seeds());
    out
}

//! Every limit on what a peer sends (docs/FORMAT.md, "Limits"), one past its value: each is
//! refused with `WireError::TooLarge` naming the quantity, its unit, the value found and the
//! limit, before anything is allocated for it; the limit itself is not refused (the same
//! message at the limit fails later, for lack of the bytes it announces). Messages are built
//! by hand with valid checksums, as a hostile peer would, so they reach the check. The encoder
//! keeps to the limits too: it never writes a message a receiver would refuse.
#![allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    clippy::panic,
    clippy::expect_used
)]

use std::collections::HashMap;
use std::io::Write as _;
use std::net::{TcpListener, TcpStream};
use std::time::Duration;

use cardlog_core::{ContactId, DeviceId, Hlc, Op, OpId, Path, SealedOp, Value, Write};
use cardlog_sync::transport::{TcpTransport, Transport};
use cardlog_sync::wire::message::{self, limits as msg, Message};
use cardlog_sync::wire::segment::limits as seg;
use cardlog_sync::{
    decode_segments, encode_segments, wire::varint, Locate, Resolve, SyncError, TransportError,
    WireError,
};

const NINE_MS: u64 = 1_795_338_000_000;

/// A receiver holding nothing.
struct Empty;

impl Resolve for Empty {
    fn op_at(&self, _: &DeviceId, _: u64) -> Result<Option<SealedOp>, WireError> {
        Ok(None)
    }
}

/// A sender that can describe the ops it was given.
struct Known(HashMap<OpId, SealedOp>);

impl Locate for Known {
    fn locate(&self, id: &OpId) -> Result<Option<SealedOp>, WireError> {
        Ok(self.0.get(id).cloned())
    }
}

fn v(n: u64) -> Vec<u8> {
    let mut out = Vec::new();
    varint::put(&mut out, n);
    out
}

fn checksum(context: &str, bytes: &[u8]) -> [u8; 16] {
    let full = blake3::Hasher::new_derive_key(context)
        .update(bytes)
        .finalize();
    full.as_bytes()[..16].try_into().unwrap()
}

/// A segment message around `body` (everything after the version byte), with its checksum.
fn segments(body: &[u8]) -> Vec<u8> {
    let mut out = b"CLSG\x01".to_vec();
    out.extend_from_slice(body);
    let sum = checksum("cardlog 2026-11-23 segment checksum v1", &out);
    out.extend_from_slice(&sum);
    out
}

/// A protocol message of `kind` around `body`, with its checksum.
fn message(kind: u8, body: &[u8]) -> Vec<u8> {
    let mut out = b"CLSY\x01".to_vec();
    out.push(kind);
    out.extend_from_slice(body);
    let sum = checksum("cardlog 2026-11-23 sync message checksum v1", &out);
    out.extend_from_slice(&sum);
    out
}

fn cat(parts: &[&[u8]]) -> Vec<u8> {
    parts.concat()
}

/// `limit + 1` is refused naming `what`, the value and the limit; `limit` is not refused as
/// too large. `build(n)` is the message declaring `n`.
fn assert_limit<T: std::fmt::Debug>(
    what: &str,
    limit: u64,
    build: impl Fn(u64) -> Vec<u8>,
    decode: impl Fn(&[u8]) -> Result<T, WireError>,
) {
    let err = decode(&build(limit + 1)).unwrap_err();
    match &err {
        WireError::TooLarge {
            what: w,
            got,
            limit: l,
        } => assert_eq!((*w, *got, *l), (what, limit + 1, limit)),
        other => panic!("{what}: {other:?}"),
    }
    let text = err.to_string();
    assert!(
        text.starts_with(what)
            && text.contains(&(limit + 1).to_string())
            && text.contains(&format!("limit of {limit}")),
        "{text}"
    );
    if let Err(WireError::TooLarge { what: w, .. }) = decode(&build(limit)) {
        panic!("{what} at its limit: refused ({w})");
    }
}

fn seg_decode(bytes: &[u8]) -> Result<Vec<SealedOp>, WireError> {
    decode_segments(bytes, &Empty)
}

/// One author's segment from seq 1 up to its op count (exclusive of what follows).
fn one_segment(n_ops: u64) -> Vec<u8> {
    cat(&[
        &v(1),
        &[0xa1; 16],
        &v(1),
        &v(0),
        &v(1),
        &v(NINE_MS),
        &v(n_ops),
    ])
}

/// One op of one segment, up to its write count.
fn one_op(n_writes: u64) -> Vec<u8> {
    cat(&[&one_segment(1), &v(0), &v(n_writes)])
}

/// One explicit write of contact c1…c1, up to its path length.
fn explicit_write(path_len: u64) -> Vec<u8> {
    cat(&[&one_op(1), &[0], &v(0), &[0xc1; 16], &v(path_len)])
}

/// `Path::Exists` in bincode.
const EXISTS: &[u8] = &[0];

#[test]
fn authors_per_message_max() {
    assert_limit(
        "authors in a message",
        seg::AUTHORS_PER_MESSAGE_MAX,
        |n| segments(&v(n)),
        seg_decode,
    );
}

#[test]
fn segments_per_message_max() {
    assert_limit(
        "segments in a message",
        seg::SEGMENTS_PER_MESSAGE_MAX,
        |n| segments(&cat(&[&v(0), &v(n)])),
        seg_decode,
    );
}

#[test]
fn ops_per_segment_max() {
    assert_limit(
        "ops in a segment",
        seg::OPS_PER_SEGMENT_MAX,
        |n| segments(&one_segment(n)),
        seg_decode,
    );
}

#[test]
fn writes_per_op_max() {
    assert_limit(
        "writes in an op",
        seg::WRITES_PER_OP_MAX,
        |n| segments(&one_op(n)),
        seg_decode,
    );
}

#[test]
fn replaces_per_write_max() {
    assert_limit(
        "replaced writes in a write",
        seg::REPLACES_PER_WRITE_MAX,
        |n| segments(&cat(&[&explicit_write(1), EXISTS, &v(n)])),
        seg_decode,
    );
}

#[test]
fn path_bytes_max() {
    assert_limit(
        "path bytes",
        seg::PATH_BYTES_MAX,
        |n| segments(&explicit_write(n)),
        seg_decode,
    );
}

#[test]
fn value_bytes_max() {
    assert_limit(
        "value bytes",
        seg::VALUE_BYTES_MAX,
        |n| segments(&cat(&[&explicit_write(1), EXISTS, &v(0), &v(n)])),
        seg_decode,
    );
}

#[test]
fn exact_op_bytes_max() {
    // A version-2 segment of one exact op (flags: op format 2, exact ops) declaring its length.
    let exact = |n: u64| {
        let mut out = b"CLSG\x02".to_vec();
        out.extend_from_slice(&cat(&[
            &v(1),
            &[0xa1; 16],
            &v(1),
            &v(0),
            &[1 | 8],
            &v(1),
            &v(1),
            &v(n),
        ]));
        let sum = checksum("cardlog 2026-11-23 segment checksum v1", &out);
        out.extend_from_slice(&sum);
        out
    };
    assert_limit("op bytes", seg::OP_BYTES_MAX, exact, seg_decode);
}

#[test]
fn segment_message_bytes_max() {
    let limit = seg::MESSAGE_BYTES_MAX;
    // Checked before the magic: zeros of the limit's length fail on the magic instead.
    let err = seg_decode(&vec![0; limit + 1]).unwrap_err();
    assert_eq!(
        err,
        WireError::TooLarge {
            what: "segment message bytes",
            got: limit as u64 + 1,
            limit: limit as u64,
        }
    );
    assert_eq!(
        seg_decode(&vec![0; limit]).unwrap_err(),
        WireError::BadMagic
    );
}

#[test]
fn a_segments_seqs_may_not_run_past_the_largest() {
    let from = |first: u64, n_ops: u64| {
        segments(&cat(&[
            &v(1),
            &[0xa1; 16],
            &v(1),
            &v(0),
            &v(first),
            &[0x0b; 32],
            &v(NINE_MS),
            &v(n_ops),
        ]))
    };
    match seg_decode(&from(u64::MAX, 2)).unwrap_err() {
        WireError::Framing(what) => assert!(
            what.contains("2 ops from seq 18446744073709551615 run past the largest seq"),
            "{what}"
        ),
        other => panic!("{other:?}"),
    }
    // One op at the largest seq is a matter for the op's own checks (here: it is cut short).
    assert_eq!(
        seg_decode(&from(u64::MAX, 1)).unwrap_err(),
        WireError::Truncated
    );
}

#[test]
fn authors_per_summary_max() {
    for kind in [1u8, 3, 6] {
        // hello: sender id and wall time first; heads: writer id first.
        let prefix = match kind {
            1 => cat(&[&[9; 16], &v(NINE_MS)]),
            6 => vec![9; 16],
            _ => Vec::new(),
        };
        assert_limit(
            "authors in a summary",
            msg::AUTHORS_PER_SUMMARY_MAX,
            |n| message(kind, &cat(&[&prefix, &v(n)])),
            message::decode,
        );
    }
}

#[test]
fn forks_per_message_max() {
    assert_limit(
        "forks in a message",
        msg::FORKS_PER_MESSAGE_MAX,
        |n| message(2, &cat(&[&[1], &v(n)])),
        message::decode,
    );
}

#[test]
fn reason_bytes_max() {
    let limit = msg::REASON_BYTES_MAX;
    let abort = |n: u64| message(4, &cat(&[&v(n), &vec![b'a'; n as usize]]));
    assert_limit("abort reason bytes", limit, abort, message::decode);
    assert_eq!(
        message::decode(&abort(limit)).unwrap(),
        Message::Abort {
            reason: "a".repeat(limit as usize)
        }
    );
    // A longer reason is cut at a character boundary by the sender, never sent whole.
    let long = "é".repeat(limit as usize);
    match message::decode(&message::encode(&Message::Abort { reason: long })).unwrap() {
        Message::Abort { reason } => assert_eq!(reason.len(), limit as usize),
        other => panic!("{other:?}"),
    }
}

#[test]
fn message_bytes_max_and_the_segment_bytes_inside() {
    let limit = msg::MESSAGE_BYTES_MAX;
    assert_eq!(
        message::decode(&vec![0; limit + 1]).unwrap_err(),
        WireError::TooLarge {
            what: "message bytes",
            got: limit as u64 + 1,
            limit: limit as u64,
        }
    );
    assert_eq!(
        message::decode(&vec![0; limit]).unwrap_err(),
        WireError::BadMagic
    );
    // The segment message an `Ops` message or a bundle declares.
    for (kind, prefix) in [
        (2u8, cat(&[&[1], &v(0)])),
        (5, cat(&[&[9; 16], &v(NINE_MS)])),
    ] {
        assert_limit(
            "segment message bytes",
            limit as u64,
            |n| message(kind, &cat(&[&prefix, &v(n)])),
            message::decode,
        );
    }
}

#[test]
fn a_tcp_length_prefix_one_past_the_limit_is_refused_before_reading() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    // The largest session message, sealed (its tags and length inside the encryption).
    let limit = cardlog_sync::secure::sealed_len(msg::MESSAGE_BYTES_MAX) as u32;
    assert!(
        limit > msg::MESSAGE_BYTES_MAX as u32 && limit < msg::MESSAGE_BYTES_MAX as u32 + 80_000
    );
    for (declared, refused) in [(limit + 1, true), (limit, false)] {
        let mut peer = TcpStream::connect(addr).unwrap();
        let (stream, _) = listener.accept().unwrap();
        let mut t = TcpTransport::new(stream, Duration::from_secs(10)).unwrap();
        peer.write_all(&declared.to_be_bytes()).unwrap();
        drop(peer);
        match (t.recv(), refused) {
            (Err(TransportError::Wire(e)), true) => assert_eq!(
                e,
                WireError::TooLarge {
                    what: "message bytes (length prefix)",
                    got: u64::from(declared),
                    limit: u64::from(limit),
                }
            ),
            // At the limit the transport waits for the bytes, which never come.
            (Err(TransportError::Disconnected(why)), false) => {
                assert!(why.contains(&format!("after 0 of {limit} bytes")), "{why}")
            }
            (other, _) => panic!("{declared}: {other:?}"),
        }
    }
}

/// A valid first op of `author` writing contact `contact`'s existence, replacing `replaces`.
fn exists_op(author: DeviceId, contacts: &[(ContactId, Vec<OpId>)]) -> SealedOp {
    Op {
        author,
        seq: 1,
        prev: None,
        hlc: Hlc {
            wall_ms: NINE_MS,
            counter: 0,
        },
        writes: contacts
            .iter()
            .map(|(contact, replaces)| Write {
                contact: *contact,
                path: Path::Exists,
                value: Some(Value::Bool(true)),
                replaces: replaces.clone(),
            })
            .collect(),
        members: Vec::new(),
    }
    .seal()
    .unwrap()
}

fn id(prefix: u8, i: u32) -> [u8; 16] {
    let mut id = [prefix; 16];
    id[..4].copy_from_slice(&i.to_be_bytes());
    id
}

#[test]
fn the_encoder_never_writes_more_segments_than_a_receiver_reads() {
    let limit = seg::SEGMENTS_PER_MESSAGE_MAX as u32;
    let ops: Vec<SealedOp> = (0..=limit)
        .map(|i| exists_op(DeviceId(id(0xa0, i)), &[(ContactId([1; 16]), vec![])]))
        .collect();
    let known = Known(HashMap::new());
    let err = encode_segments(&ops, &known).unwrap_err();
    assert_eq!(
        err,
        WireError::TooLarge {
            what: "segments in a message",
            got: u64::from(limit) + 1,
            limit: u64::from(limit),
        }
    );
    // At the limit, what it writes reads back.
    let bytes = encode_segments(&ops[..limit as usize], &known).unwrap();
    assert_eq!(seg_decode(&bytes).unwrap().len(), limit as usize);
}

#[test]
fn the_encoder_never_writes_a_larger_author_table_than_a_receiver_reads() {
    // Three ops of one author (one segment) replacing writes of 65,537 other authors' ops:
    // the table names every author a reference needs, not only those with a segment.
    let limit = seg::AUTHORS_PER_MESSAGE_MAX as u32;
    let others: Vec<SealedOp> = (0..limit)
        .map(|i| {
            exists_op(
                DeviceId(id(0xb0, i)),
                &[(ContactId(id(0xc0, i / 256)), vec![])],
            )
        })
        .collect();
    let known = Known(others.iter().map(|o| (o.id(), o.clone())).collect());
    let author = DeviceId([0xee; 16]);
    let chain = |others: &[SealedOp]| -> Vec<SealedOp> {
        // 256 replaced ops per write (one contact each), at most 86 writes per op (1 MiB).
        let writes: Vec<(ContactId, Vec<OpId>)> = others
            .chunks(256)
            .map(|c| {
                let mut ids: Vec<OpId> = c.iter().map(SealedOp::id).collect();
                ids.sort_unstable();
                (c[0].op().writes[0].contact, ids)
            })
            .collect();
        let mut out: Vec<SealedOp> = Vec::new();
        for (seq, group) in (1..).zip(writes.chunks(86)) {
            let mut op = exists_op(author, group).op().clone();
            op.seq = seq;
            op.prev = out.last().map(SealedOp::id);
            op.hlc.counter = seq as u32;
            out.push(op.seal().unwrap());
        }
        out
    };
    // With the author itself, the table has one entry more than the ops replaced.
    let at_limit = chain(&others[..limit as usize - 1]);
    let bytes = encode_segments(&at_limit, &known).unwrap();
    let err = seg_decode(&bytes).unwrap_err();
    assert!(
        matches!(err, WireError::Unresolved { .. }),
        "read back at the limit: {err:?}"
    );
    let one_more = exists_op(
        DeviceId(id(0xb0, limit)),
        &[(ContactId(id(0xc0, limit / 256)), vec![])],
    );
    let mut over = others.clone();
    over.push(one_more.clone());
    let mut known = known;
    known.0.insert(one_more.id(), one_more);
    let err = encode_segments(&chain(&over[..limit as usize]), &known).unwrap_err();
    assert_eq!(
        err,
        WireError::TooLarge {
            what: "authors in a message",
            got: u64::from(limit) + 1,
            limit: u64::from(limit),
        }
    );
}

/// A replica that only lists its ops: enough for `bundle::export`.
struct Listed(Vec<SealedOp>);

impl cardlog_sync::SyncStore for Listed {
    type Error = std::io::Error;
    fn device_id(&self) -> DeviceId {
        DeviceId([0xdd; 16])
    }
    fn summary(&self) -> cardlog_sync::Summary {
        cardlog_sync::Summary::new()
    }
    fn ops_since(&self, _: &cardlog_sync::Summary) -> Result<Vec<SealedOp>, Self::Error> {
        Ok(self.0.clone())
    }
    fn op_by_id(&self, _: &OpId) -> Result<Option<SealedOp>, Self::Error> {
        Ok(None)
    }
    fn op_at(&self, _: &DeviceId, _: u64) -> Result<Option<SealedOp>, Self::Error> {
        Ok(None)
    }
    fn apply(
        &mut self,
        _: &[SealedOp],
        _: &[cardlog_core::SignedTip],
    ) -> Result<cardlog_sync::Applied, Self::Error> {
        Ok(cardlog_sync::Applied::default())
    }
}

impl cardlog_sync::PeerBook for Listed {
    fn wall_ms(&self) -> u64 {
        NINE_MS
    }

    fn calibrated_ms(&self) -> u64 {
        NINE_MS
    }

    fn calibrate(
        &mut self,
        _: DeviceId,
        _: u64,
        _: u64,
        _: u64,
    ) -> Result<Option<i64>, Self::Error> {
        Ok(None)
    }

    fn record_peer(&mut self, _: DeviceId, _: &cardlog_sync::Summary) -> Result<(), Self::Error> {
        Ok(())
    }

    fn record_forks(&mut self, _: &[cardlog_sync::Fork]) -> Result<(), Self::Error> {
        Ok(())
    }
}

#[test]
fn a_bundle_too_many_segments_for_one_message_says_what_works_instead() {
    let limit = seg::SEGMENTS_PER_MESSAGE_MAX as u32;
    let ops: Vec<SealedOp> = (0..=limit)
        .map(|i| exists_op(DeviceId(id(0xa0, i)), &[(ContactId([1; 16]), vec![])]))
        .collect();
    let replica = Listed(ops);
    match cardlog_sync::bundle::export(&replica, None).unwrap_err() {
        SyncError::Wire(WireError::TooLarge {
            what,
            got,
            limit: l,
        }) => {
            assert_eq!((got, l), (u64::from(limit) + 1, u64::from(limit)));
            assert!(what.starts_with("segments in a bundle") && what.contains("TCP sync"));
        }
        other => panic!("{other:?}"),
    }
    // One op fewer exports, and the bundle imports elsewhere.
    let replica = Listed(replica.0[..limit as usize].to_vec());
    let bundle = cardlog_sync::bundle::export(&replica, None).unwrap();
    match message::decode(&bundle).unwrap() {
        Message::Bundle { segments, .. } => {
            assert_eq!(seg_decode(&segments).unwrap().len(), limit as usize)
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn segments_of_one_author_that_overlap_are_refused() {
    // Two segments of one author from the same seq: an encoder writes each op once, and a
    // decoder looking up which places a message carries could miss one behind an overlap.
    let segment = cat(&[&v(0), &v(1), &v(NINE_MS), &v(0), &[0x11; 32]]);
    let bytes = segments(&cat(&[&v(1), &[0xa1; 16], &v(2), &segment, &segment]));
    let err = seg_decode(&bytes).unwrap_err();
    assert!(
        matches!(&err, WireError::Framing(m) if m.contains("overlap")),
        "{err:?}"
    );
}

//! The segment encoding end to end: messages built from real multi-device histories rebuild the
//! exact ops (same bytes, same ids) on a receiver holding only part of the history; every
//! single-byte flip, every truncation and altered content with a valid checksum are refused;
//! references to ops the receiver lacks are named; single-field edits cost few bytes, a
//! chain stamped backwards (a clock set back) carries whole times and rebuilds exactly, and a
//! compressed message reads as the plain one it wraps, within its inflation bound.
#![allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    clippy::panic,
    clippy::expect_used
)]

use std::collections::BTreeSet;
use std::sync::Arc;

use cardlog_core::{
    BookId, Contact, ContactId, Device, DeviceId, DeviceKey, FakeClock, Field, Hlc, ItemBody,
    ItemId, MemberChange, MemberRole, Op, OpId, Replay, SealedOp, Signature, SignedTip,
};
use cardlog_sync::wire::segment::{compress, limits, plain_bytes, COMPRESSED_VERSION};
use cardlog_sync::{
    decode_available_segments, decode_segments, decode_session_segments, decode_signed_segments,
    encode_segments, Locate, Resolve, WireError,
};

const NINE_MS: u64 = 1_795_338_000_000;

/// A replica's ops as the sender or receiver sees them.
struct Held<'a>(&'a Replay);

impl Locate for Held<'_> {
    fn locate(&self, id: &OpId) -> Result<Option<SealedOp>, WireError> {
        Ok(self.0.op(id).cloned())
    }
}

impl Resolve for Held<'_> {
    fn op_at(&self, author: &DeviceId, seq: u64) -> Result<Option<SealedOp>, WireError> {
        let index = usize::try_from(seq).unwrap().checked_sub(1);
        Ok(index.and_then(|i| self.0.chain(author).nth(i).cloned()))
    }
}

fn contact(n: u8) -> Contact {
    let mut c = Contact::new(ContactId([n; 16]));
    c.set(Field::Given, format!("Person {n}"));
    c.phones.push(cardlog_core::Item {
        id: ItemId([0x80 + n; 16]),
        label: "mobile".into(),
        body: ItemBody::Text(format!("+1 555 01{n:02}")),
    });
    c.tags.insert("friends".into());
    c
}

/// Three devices: creates, edits of different and the same fields, a delete racing an edit,
/// a multi-contact save, syncs in between. Returns the devices.
fn history() -> (Vec<Device>, Arc<FakeClock>) {
    let clock = Arc::new(FakeClock::new(NINE_MS));
    let mut d: Vec<Device> = (1..=3)
        .map(|i| Device::new(DeviceId([i; 16]), clock.clone()))
        .collect();
    for n in 1..=4 {
        d[0].create(&contact(n)).unwrap();
    }
    let (a, rest) = d.split_at_mut(1);
    a[0].sync(&mut rest[0]).unwrap();
    a[0].sync(&mut rest[1]).unwrap();
    clock.advance_ms(60_000);
    d[1].edit(ContactId([1; 16]), |c| {
        c.set(Field::Org, "Initech");
    })
    .unwrap();
    d[2].edit(ContactId([1; 16]), |c| {
        c.set(Field::Org, "Initrode");
        c.tags.remove("friends");
    })
    .unwrap();
    d[2].delete(ContactId([2; 16])).unwrap();
    clock.advance_ms(5_000);
    d[1].edit(ContactId([2; 16]), |c| {
        c.phones[0].body = ItemBody::Text("+1 555 9999".into());
    })
    .unwrap();
    let mut batch = cardlog_core::Batch::new();
    batch.create(&contact(9)).unwrap().change(
        ContactId([3; 16]),
        cardlog_core::Path::Field(Field::Note),
        Some(cardlog_core::Value::Text("see 9".into())),
    );
    d[0].save(&batch).unwrap();
    let (left, right) = d.split_at_mut(2);
    left[1].sync(&mut right[0]).unwrap();
    clock.advance_ms(1_000);
    d[2].edit(ContactId([1; 16]), |c| {
        c.set(Field::Note, "settled");
    })
    .unwrap();
    (d, clock)
}

fn ids(ops: &[SealedOp]) -> BTreeSet<OpId> {
    ops.iter().map(SealedOp::id).collect()
}

#[test]
fn a_message_rebuilds_exactly_the_ops_the_receiver_lacks() {
    let (d, _) = history();
    let sender = d[2].replay();
    let receiver = d[0].replay();
    let missing = sender.missing_for(&receiver.summary());
    assert!(missing.len() >= 4, "a real divergence: {}", missing.len());
    let bytes = encode_segments(&missing, &Held(sender)).unwrap();
    let got = decode_segments(&bytes, &Held(receiver)).unwrap();
    assert_eq!(ids(&got), ids(&missing));
    for op in &got {
        assert_eq!(op.bytes(), sender.op(&op.id()).unwrap().bytes());
    }
    // Dependencies first: a fresh copy of the receiver applies them with nothing pending.
    let mut copy = Replay::new();
    for op in receiver.ops_in_order() {
        copy.insert(op.clone()).unwrap();
    }
    for op in got {
        copy.insert(op).unwrap();
    }
    assert_eq!(copy.waiting().count(), 0);
    let mut full = Replay::new();
    for op in receiver.ops_in_order().chain(sender.ops_in_order()) {
        full.insert(op.clone()).unwrap();
    }
    assert_eq!(copy.state_bytes(), full.state_bytes());
}

#[test]
fn a_whole_history_goes_to_an_empty_replica() {
    let (mut d, _) = history();
    let (a, rest) = d.split_at_mut(1);
    a[0].sync(&mut rest[0]).unwrap();
    a[0].sync(&mut rest[1]).unwrap();
    let all: Vec<SealedOp> = d[0].replay().ops_in_order().cloned().collect();
    let empty = Replay::new();
    let bytes = encode_segments(&all, &Held(d[0].replay())).unwrap();
    let got = decode_segments(&bytes, &Held(&empty)).unwrap();
    assert_eq!(ids(&got), ids(&all));
    let mut replay = Replay::new();
    for op in got {
        replay.insert(op).unwrap();
    }
    assert_eq!(replay.state_bytes(), d[0].replay().state_bytes());
}

fn small_message() -> (Vec<u8>, Replay, Vec<SealedOp>) {
    let (d, _) = history();
    let sender = d[2].replay();
    let receiver = d[0].replay().clone();
    let missing = sender.missing_for(&receiver.summary());
    let bytes = encode_segments(&missing, &Held(sender)).unwrap();
    (bytes, receiver, missing)
}

#[test]
fn every_single_byte_flip_is_refused() {
    let (bytes, receiver, missing) = small_message();
    let mut refused = 0;
    for i in 0..bytes.len() {
        for flip in [0x01u8, 0x80, 0xff] {
            let mut damaged = bytes.clone();
            damaged[i] ^= flip;
            match decode_segments(&damaged, &Held(&receiver)) {
                Err(_) => refused += 1,
                Ok(ops) => assert_eq!(ids(&ops), ids(&missing), "flip at {i} changed the ops"),
            }
        }
    }
    assert_eq!(
        refused,
        bytes.len() * 3,
        "every flip is caught by the checksum"
    );
}

#[test]
fn every_truncation_and_extension_is_refused() {
    let (bytes, receiver, _) = small_message();
    for len in 0..bytes.len() {
        assert!(
            decode_segments(&bytes[..len], &Held(&receiver)).is_err(),
            "{len}"
        );
    }
    let mut longer = bytes.clone();
    longer.push(0);
    assert!(decode_segments(&longer, &Held(&receiver)).is_err());
}

/// Recomputes the checksum, as a forger who knows the format would.
fn reseal(bytes: &mut [u8]) {
    let n = bytes.len() - 16;
    let sum = blake3::Hasher::new_derive_key("cardlog 2026-11-23 segment checksum v1")
        .update(&bytes[..n])
        .finalize();
    bytes[n..].copy_from_slice(&sum.as_bytes()[..16]);
}

#[test]
fn altered_content_with_a_valid_checksum_fails_its_segment() {
    let (bytes, receiver, _) = small_message();
    assert!(decode_segments(&bytes, &Held(&receiver)).is_ok());
    // Change one byte of the text "settled" to "Settled" and fix the checksum.
    let at = bytes
        .windows(7)
        .position(|w| w == b"settled")
        .expect("the note text is in the message");
    let mut forged = bytes.clone();
    forged[at] = b'S';
    reseal(&mut forged);
    match decode_segments(&forged, &Held(&receiver)) {
        Err(WireError::HeadMismatch { author, .. }) => assert_eq!(author, DeviceId([3; 16])),
        other => panic!("expected a head mismatch, got {other:?}"),
    }
}

#[test]
fn unknown_version_and_bad_magic_are_named() {
    let (bytes, receiver, _) = small_message();
    let mut v9 = bytes.clone();
    v9[4] = 9;
    assert_eq!(
        decode_segments(&v9, &Held(&receiver)).unwrap_err(),
        WireError::UnknownVersion(9)
    );
    let mut other = bytes;
    other[0] = b'X';
    assert_eq!(
        decode_segments(&other, &Held(&receiver)).unwrap_err(),
        WireError::BadMagic
    );
}

#[test]
fn a_reference_the_receiver_cannot_resolve_is_named() {
    let (d, _) = history();
    let sender = d[2].replay();
    // Only the last op of device 3: it replaces writes the empty receiver does not have.
    let last = sender.chain(&DeviceId([3; 16])).last().unwrap().clone();
    let bytes = encode_segments(std::slice::from_ref(&last), &Held(sender)).unwrap();
    let empty = Replay::new();
    match decode_segments(&bytes, &Held(&empty)) {
        Err(WireError::Unresolved { author, .. }) => assert_eq!(author, DeviceId([3; 16])),
        other => panic!("expected an unresolved reference, got {other:?}"),
    }
    // Decoded as a bundle, the segment is left out and its op counted.
    let (decoded, missing) = decode_available_segments(&bytes, &Held(&empty)).unwrap();
    assert_eq!((decoded.ops.len(), decoded.tips.len(), missing), (0, 0, 1));
    // Beside a segment that resolves, only the one that does not is left out.
    let first = sender.chain(&DeviceId([1; 16])).next().unwrap().clone();
    let both = encode_segments(&[first.clone(), last], &Held(sender)).unwrap();
    let (decoded, missing) = decode_available_segments(&both, &Held(&empty)).unwrap();
    assert_eq!(decoded.ops, vec![first]);
    assert_eq!(missing, 1);
}

#[test]
fn single_field_edits_cost_under_forty_bytes_each() {
    // 300 contacts shared, then 100 single-field edits of random contacts on one side.
    let clock = Arc::new(FakeClock::new(NINE_MS));
    let mut a = Device::new(DeviceId([1; 16]), clock.clone());
    let mut b = Device::new(DeviceId([2; 16]), clock.clone());
    for n in 0..300u32 {
        let mut c = Contact::new(ContactId(u128::from(n + 1).to_be_bytes()));
        c.set(Field::Given, format!("Given {n}"));
        c.set(Field::Org, format!("Org {n}"));
        a.create(&c).unwrap();
        clock.advance_ms(1_000);
    }
    a.sync(&mut b).unwrap();
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    for i in 0..100 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let n = (x % 300) as u32;
        clock.advance_ms(1_500);
        a.edit(ContactId(u128::from(n + 1).to_be_bytes()), |c| {
            c.set(Field::Title, format!("Title {i}"));
        })
        .unwrap();
    }
    let missing = a.replay().missing_for(&b.summary());
    assert_eq!(missing.len(), 100);
    let bytes = encode_segments(&missing, &Held(a.replay())).unwrap();
    let per_op = bytes.len() as f64 / 100.0;
    let raw: usize = missing.iter().map(|o| o.bytes().len()).sum();
    eprintln!(
        "100 single-field edits: {} bytes ({per_op:.1}/op; the ops themselves are {:.1}/op)",
        bytes.len(),
        raw as f64 / 100.0
    );
    assert!(per_op <= 40.0, "{per_op} bytes per op");
    let got = decode_segments(&bytes, &Held(b.replay())).unwrap();
    assert_eq!(ids(&got), ids(&missing));
}

/// A founder's first two ops (founding a book, admitting a writer) and its signature of the
/// second, as a sender holding them sees them.
struct Founded {
    ops: Vec<SealedOp>,
    book: BookId,
    key: DeviceKey,
    signature: Signature,
}

impl Founded {
    fn new() -> Self {
        let key = DeviceKey::from_seed(&[0x11; 32]);
        let book = BookId::founded_by(&key.public(), &[0x33; 16]);
        let hlc = Hlc {
            wall_ms: NINE_MS,
            counter: 0,
        };
        let found = Op {
            author: key.device(),
            seq: 1,
            prev: None,
            hlc,
            writes: vec![],
            members: vec![MemberChange::Found {
                nonce: [0x33; 16],
                key: key.public(),
                name: "Ada's iPhone".into(),
            }],
        }
        .seal()
        .unwrap();
        let add = Op {
            author: key.device(),
            seq: 2,
            prev: Some(found.id()),
            hlc: Hlc { counter: 1, ..hlc },
            writes: vec![],
            members: vec![MemberChange::Add {
                device: DeviceKey::from_seed(&[0x22; 32]).device(),
                role: MemberRole::Write,
                name: "Ada's iPad".into(),
            }],
        }
        .seal()
        .unwrap();
        let signature = key.sign_tip(&book, &add.id());
        Self {
            ops: vec![found, add],
            book,
            key,
            signature,
        }
    }
}

impl Locate for Founded {
    fn locate(&self, id: &OpId) -> Result<Option<SealedOp>, WireError> {
        Ok(self.ops.iter().find(|op| op.id() == *id).cloned())
    }

    fn tip_signature(&self, author: &DeviceId, seq: u64) -> Result<Option<SignedTip>, WireError> {
        Ok(
            (*author == self.key.device() && seq == 2).then_some(SignedTip {
                author: *author,
                key: self.key.public(),
                seq,
                op: self.ops[1].id(),
                signature: self.signature,
            }),
        )
    }
}

impl Resolve for Founded {
    fn op_at(&self, _: &DeviceId, _: u64) -> Result<Option<SealedOp>, WireError> {
        Ok(None)
    }
}

#[test]
fn membership_ops_and_tip_signatures_travel_in_segments() {
    // A membership op is rebuilt exactly; the segment carries the signature of its last op,
    // which verifies under the founder's key for this book only.
    let founded = Founded::new();
    let bytes = encode_segments(&founded.ops, &founded).unwrap();
    let decoded = decode_signed_segments(&bytes, &founded).unwrap();
    assert_eq!(decoded.ops, founded.ops);
    let tip = SignedTip {
        author: founded.key.device(),
        key: founded.key.public(),
        seq: 2,
        op: founded.ops[1].id(),
        signature: founded.signature,
    };
    assert_eq!(decoded.tips, [tip]);
    founded
        .key
        .public()
        .verify_tip(&founded.book, &tip.op, &tip.signature)
        .unwrap();

    // A sub-range the sender holds no signature for travels unsigned.
    let first = encode_segments(&founded.ops[..1], &founded).unwrap();
    let decoded = decode_signed_segments(&first, &founded).unwrap();
    assert_eq!((decoded.ops.len(), decoded.tips.len()), (1, 0));
    assert!(first.len() + 96 < bytes.len());

    // A signature altered on the way still decodes (the checksum is resealed) but no longer
    // verifies: the receiver, which knows the key, refuses it.
    let mut forged = bytes.clone();
    let at = forged.len() - 16 - 64;
    assert_eq!(&forged[at..at + 64], &founded.signature.0[..]);
    forged[at] ^= 1;
    reseal(&mut forged);
    let decoded = decode_signed_segments(&forged, &founded).unwrap();
    let tip = decoded.tips[0];
    assert!(founded
        .key
        .public()
        .verify_tip(&founded.book, &tip.op, &tip.signature)
        .is_err());

    // Unknown segment flags are refused, naming the segment's author.
    let mut flagged = bytes;
    let flags_at = 4 + 1 + 1 + 16 + 1 + 1;
    assert_eq!(flagged[flags_at], 0b11);
    flagged[flags_at] |= 0x80;
    reseal(&mut flagged);
    assert!(matches!(
        decode_segments(&flagged, &founded),
        Err(WireError::Framing(what)) if what.contains("unknown flags")
    ));
}

/// One device's chain with the given wall times, in seq order.
fn chain_at(times: &[u64]) -> (Device, Vec<SealedOp>) {
    let clock = Arc::new(FakeClock::new(NINE_MS));
    let mut device = Device::new(DeviceId([0x5e; 16]), clock.clone());
    let c = contact(1);
    let mut ops = Vec::new();
    for (n, t) in times.iter().enumerate() {
        clock.set_ms(*t);
        let op = if n == 0 {
            device.create(&c).unwrap()
        } else {
            device
                .edit(c.id, |c| {
                    c.set(Field::Note, format!("note {n}"));
                })
                .unwrap()
                .unwrap()
        };
        assert_eq!(op.op().hlc.wall_ms, *t);
        ops.push(op);
    }
    (device, ops)
}

/// The flags byte of the first segment of a one-author message (magic, version, one author,
/// one segment, author index 0, flags).
fn first_flags(bytes: &[u8]) -> u8 {
    assert_eq!((bytes[5], bytes[22], bytes[23]), (1, 1, 0));
    bytes[24]
}

#[test]
fn a_chain_stamped_backwards_carries_whole_times_and_rebuilds_exactly() {
    // A clock a day ahead, then set to 1970, then to the end of time, then right: times go
    // back and forth by up to 2^64 ms, which no delta could carry; the segment carries whole
    // times (flag bit 2) and the receiver rebuilds every op byte for byte.
    let day = 86_400_000;
    let (device, ops) = chain_at(&[NINE_MS, NINE_MS + day, 0, u64::MAX, NINE_MS + 1]);
    let bytes = encode_segments(&ops, &Held(device.replay())).unwrap();
    assert_eq!(first_flags(&bytes) & 4, 4);
    let got = decode_segments(&bytes, &Held(&Replay::new())).unwrap();
    assert_eq!(got.len(), ops.len());
    for (a, b) in got.iter().zip(&ops) {
        assert_eq!(a.bytes(), b.bytes());
    }
    // A chain whose times only go forward is written as before: deltas, no flag.
    let (device, ops) = chain_at(&[NINE_MS, NINE_MS, NINE_MS + day]);
    let bytes = encode_segments(&ops, &Held(device.replay())).unwrap();
    assert_eq!(first_flags(&bytes) & 4, 0);
    assert_eq!(
        ids(&decode_segments(&bytes, &Held(&Replay::new())).unwrap()),
        ids(&ops)
    );
}

/// A receiver that holds another branch of an author's chain than the sender (the author was
/// restored from a backup and wrote again at the same seq), and may know it.
struct Forked<'a> {
    held: Held<'a>,
    knows: bool,
}

impl Resolve for Forked<'_> {
    fn op_at(&self, author: &DeviceId, seq: u64) -> Result<Option<SealedOp>, WireError> {
        self.held.op_at(author, seq)
    }

    fn forked(&self, author: &DeviceId) -> bool {
        self.knows && *author == DeviceId([1; 16])
    }
}

#[test]
fn references_into_a_forked_chain_name_the_senders_ops_or_wait() {
    let clock = Arc::new(FakeClock::new(NINE_MS));
    // Device 1 writes X and gives it to device 2, which edits on top of it. Its store is then
    // restored: as "device 1 again" it writes Y at X's seq, and the receiver holds Y.
    let mut before = Device::new(DeviceId([1; 16]), clock.clone());
    // (Its id sorts first, so its segment comes before device 1's in the message.)
    let mut editor = Device::new(DeviceId([0; 16]), clock.clone());
    let mut receiver = Device::new(DeviceId([3; 16]), clock.clone());
    let x = before.create(&contact(1)).unwrap();
    before.sync(&mut editor).unwrap();
    clock.advance_ms(1_000);
    let edit = editor
        .edit(ContactId([1; 16]), |c| {
            c.set(Field::Org, "on X");
        })
        .unwrap()
        .unwrap();
    let mut after = Device::new(DeviceId([1; 16]), clock.clone());
    let y = after.create(&contact(9)).unwrap();
    after.sync(&mut receiver).unwrap();
    assert_eq!((x.op().seq, y.op().seq), (1, 1));

    // The message carries X too: the edit's reference to (device 1, seq 1) names X, not the
    // Y the receiver holds there, whatever order the segments come in.
    let bytes = encode_segments(&[edit.clone(), x.clone()], &Held(editor.replay())).unwrap();
    let got = decode_segments(&bytes, &Held(receiver.replay())).unwrap();
    let ids: BTreeSet<OpId> = got.iter().map(SealedOp::id).collect();
    assert_eq!(ids, BTreeSet::from([x.id(), edit.id()]));

    // The message carries only the edit: rebuilt on Y, it cannot hash to its head. A receiver
    // that does not know of the fork refuses the message; one that does leaves the segment
    // out, counted missing, to wait until the branch is settled.
    let bytes = encode_segments(std::slice::from_ref(&edit), &Held(editor.replay())).unwrap();
    let unaware = Forked {
        held: Held(receiver.replay()),
        knows: false,
    };
    assert!(matches!(
        decode_session_segments(&bytes, &unaware),
        Err(WireError::HeadMismatch { .. })
    ));
    let aware = Forked {
        held: Held(receiver.replay()),
        knows: true,
    };
    let (decoded, left_out) = decode_session_segments(&bytes, &aware).unwrap();
    assert!(decoded.ops.is_empty());
    assert_eq!(left_out, 1);

    // The message shows the fork itself (a bundle, no hello): device 1's second op continues
    // X, not the Y the receiver holds before it; built on Y, it waits too.
    clock.advance_ms(1_000);
    let x2 = before
        .edit(ContactId([1; 16]), |c| {
            c.set(Field::Note, "second");
        })
        .unwrap()
        .unwrap();
    let bytes = encode_segments(std::slice::from_ref(&x2), &Held(before.replay())).unwrap();
    let (decoded, left_out) = decode_session_segments(&bytes, &unaware).unwrap();
    assert!(decoded.ops.is_empty());
    assert_eq!(left_out, 1);
}

/// `edits` single-field edits of 300 shared contacts on one side, each setting the note to
/// `note(i)`: the message of those edits, as the other side lacks them, and that side.
fn edits_message(edits: u32, note: impl Fn(u32) -> String) -> (Vec<u8>, Replay, Vec<SealedOp>) {
    let clock = Arc::new(FakeClock::new(NINE_MS));
    let mut a = Device::new(DeviceId([1; 16]), clock.clone());
    let mut b = Device::new(DeviceId([2; 16]), clock.clone());
    for n in 0..300u32 {
        let mut c = Contact::new(ContactId(u128::from(n + 1).to_be_bytes()));
        c.set(Field::Given, format!("Given {n}"));
        a.create(&c).unwrap();
        clock.advance_ms(1_000);
    }
    a.sync(&mut b).unwrap();
    for i in 0..edits {
        clock.advance_ms(1_500);
        a.edit(ContactId(u128::from(i % 300 + 1).to_be_bytes()), |c| {
            c.set(Field::Note, note(i));
        })
        .unwrap();
    }
    let missing = a.replay().missing_for(&b.summary());
    let bytes = encode_segments(&missing, &Held(a.replay())).unwrap();
    (bytes, b.replay().clone(), missing)
}

/// `plain` wrapped as a compressed message declaring `declared` inflated bytes.
fn wrapped(plain: &[u8], declared: u64) -> Vec<u8> {
    let mut out = b"CLSG".to_vec();
    out.push(COMPRESSED_VERSION);
    cardlog_sync::wire::varint::put(&mut out, declared);
    out.extend_from_slice(&zstd::bulk::compress(plain, 3).unwrap());
    out
}

#[test]
fn a_compressed_message_is_shorter_and_rebuilds_exactly_the_same_ops() {
    let words = [
        "call back",
        "met at the fair",
        "prefers e-mail",
        "birthday in May",
    ];
    let (plain, receiver, missing) =
        edits_message(100, |i| format!("{} ({i})", words[i as usize % 4]));
    let packed = compress(plain.clone());
    assert_eq!(packed[4], COMPRESSED_VERSION);
    assert!(
        packed.len() * 3 < plain.len() * 2,
        "{} bytes compressed from {}",
        packed.len(),
        plain.len()
    );
    assert_eq!(plain_bytes(&packed), plain.len() as u64);
    assert_eq!(plain_bytes(&plain), plain.len() as u64);
    let got = decode_signed_segments(&packed, &Held(&receiver)).unwrap();
    let want = decode_signed_segments(&plain, &Held(&receiver)).unwrap();
    assert_eq!(ids(&got.ops), ids(&missing));
    let bytes = |ops: &[SealedOp]| ops.iter().map(|o| o.bytes().to_vec()).collect::<Vec<_>>();
    assert_eq!(bytes(&got.ops), bytes(&want.ops));
    // Compressing again leaves it as it is.
    assert_eq!(compress(packed.clone()), packed);
}

#[test]
fn short_messages_and_ones_that_would_inflate_past_the_bound_are_sent_plain() {
    let (short, _, _) = small_message();
    assert_eq!(compress(short.clone()), short);
    // The same long note on every edit compresses far past INFLATE_RATIO_MAX.
    let (plain, receiver, _) = edits_message(200, |_| "x".repeat(400));
    let frame = zstd::bulk::compress(&plain, 3).unwrap();
    assert!(plain.len() as u64 > frame.len() as u64 * limits::INFLATE_RATIO_MAX);
    assert_eq!(compress(plain.clone()), plain);
    // Made by hand, the receiver refuses it before inflating anything.
    let over = wrapped(&plain, plain.len() as u64);
    match decode_segments(&over, &Held(&receiver)) {
        Err(WireError::TooLarge { got, limit, .. }) => {
            assert_eq!(got, plain.len() as u64);
            assert_eq!(limit, frame.len() as u64 * limits::INFLATE_RATIO_MAX);
        }
        other => panic!("expected the inflation bound, got {other:?}"),
    }
}

#[test]
fn a_compressed_message_that_lies_about_its_length_or_nests_or_is_damaged_is_refused() {
    let (plain, receiver, missing) = edits_message(60, |i| format!("note number {i}"));
    let decode = |bytes: &[u8]| decode_segments(bytes, &Held(&receiver));
    assert_eq!(
        ids(&decode(&wrapped(&plain, plain.len() as u64)).unwrap()),
        ids(&missing)
    );
    for declared in [plain.len() as u64 - 1, plain.len() as u64 + 1, 0] {
        assert!(
            matches!(
                decode(&wrapped(&plain, declared)),
                Err(WireError::Framing(_))
            ),
            "declared {declared}"
        );
    }
    let inner = wrapped(&plain, plain.len() as u64);
    let twice = wrapped(&inner, inner.len() as u64);
    assert!(matches!(decode(&twice), Err(WireError::Framing(_))));
    // Every flipped byte of the compressed form is refused (by zstd, the declared length or
    // the plain message's checksum), or gives back the very same ops.
    let packed = compress(plain);
    for i in 0..packed.len() {
        let mut damaged = packed.clone();
        damaged[i] ^= 0x41;
        if let Ok(ops) = decode(&damaged) {
            assert_eq!(ids(&ops), ids(&missing), "flip at {i}");
        }
    }
    for len in 0..packed.len() {
        assert!(decode(&packed[..len]).is_err(), "{len}");
    }
}

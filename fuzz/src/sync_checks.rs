//! The checks behind the sync-layer fuzz targets (`decode_segments`, `decode_message`,
//! `sync_session`), written once. Each takes arbitrary bytes, must never panic on them, and
//! panics (with a message naming the broken property) only when cardlog-sync breaks a promise.
//! The fuzz targets call these through the `cardlog-fuzz` library; the stable test
//! crates/cardlog-sync/tests/fuzz_corpus.rs includes this very file with `#[path]`, so it must
//! only depend on `std`, `cardlog_core`, `cardlog_sync` and `blake3`.
//!
//! Both message formats end in a 16-byte checksum that random mutations never get right, so the
//! inputs say where the harness should compute it (the first byte of a `decode_segments` or
//! `decode_message` input, a selector byte per `sync_session` chunk): the fuzzer then reaches
//! the parsers behind the checksum instead of stopping at it. The ops the checks draw on (the
//! [`Universe`]) are built deterministically from devices on a fake clock.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, OnceLock};

use cardlog_core::replay::ChainTip;
use cardlog_core::{
    decode_op, Contact, ContactId, Device, DeviceId, FakeClock, Field, Hlc, Item, ItemBody, ItemId,
    Op, OpId, Path, Replay, SealedOp, Value, Write,
};
use cardlog_sync::wire::message::{self, Fork, Message, Summary};
use cardlog_sync::{bundle, decode_segments, encode_segments, Locate, Resolve, WireError};
use cardlog_sync::{Role, Session, SyncError, SyncStore};

// ---- checksums -----------------------------------------------------------------------------

/// The segment message checksum's blake3 context (docs/FORMAT.md; private in cardlog-sync, so
/// repeated here: the `valid-sealed-*` seeds fail if the two ever differ).
const SEGMENT_CHECKSUM_CONTEXT: &str = "cardlog 2026-11-23 segment checksum v1";
/// The protocol message checksum's blake3 context.
const MESSAGE_CHECKSUM_CONTEXT: &str = "cardlog 2026-11-23 sync message checksum v1";
const CHECKSUM_BYTES: usize = 16;

fn sealed_with(context: &str, body: &[u8]) -> Vec<u8> {
    let hash = blake3::Hasher::new_derive_key(context)
        .update(body)
        .finalize();
    let mut out = body.to_vec();
    out.extend_from_slice(hash.as_bytes().get(..CHECKSUM_BYTES).unwrap_or_default());
    out
}

/// `body` (a segment message without its checksum) with the checksum appended.
pub fn seal_segments(body: &[u8]) -> Vec<u8> {
    sealed_with(SEGMENT_CHECKSUM_CONTEXT, body)
}

/// `body` (a protocol message without its checksum) with the checksum appended.
pub fn seal_message(body: &[u8]) -> Vec<u8> {
    sealed_with(MESSAGE_CHECKSUM_CONTEXT, body)
}

/// `bytes` without its last 16 bytes (the checksum), for seeds the harness seals.
pub fn unsealed(bytes: &[u8]) -> &[u8] {
    bytes
        .get(..bytes.len().saturating_sub(CHECKSUM_BYTES))
        .unwrap_or_default()
}

/// How a `decode_segments` or `decode_message` input is read: its first byte is a mode, the
/// rest the message. With an odd mode the rest lacks its checksum and the harness appends it;
/// with an even mode the rest goes to the decoder as it is. An empty input is an empty message.
pub const MODE_AS_IS: u8 = 0;
/// See [`MODE_AS_IS`].
pub const MODE_SEAL: u8 = 1;

fn harness_input(data: &[u8], seal: fn(&[u8]) -> Vec<u8>) -> Vec<u8> {
    match data.split_first() {
        Some((mode, rest)) if mode & 1 == MODE_SEAL => seal(rest),
        Some((_, rest)) => rest.to_vec(),
        None => Vec::new(),
    }
}

// ---- the fixed ops -------------------------------------------------------------------------

/// The replica the `sync_session` target runs (the responder).
pub const REPLICA: DeviceId = DeviceId([0x11; 16]);
/// Another device, whose chain the replica holds in part.
pub const ALICE: DeviceId = DeviceId([0x22; 16]);
/// A device the replica has not heard of.
pub const BOB: DeviceId = DeviceId([0x33; 16]);
/// A device whose only op breaks the replay rules.
pub const CAROL: DeviceId = DeviceId([0x44; 16]);
/// The initiator the `sync_session` target's hellos come from.
pub const PEER: DeviceId = DeviceId([0x55; 16]);
/// Wall time when the history starts (2026-11-22), ms since the epoch.
pub const T0_MS: u64 = 1_795_338_000_000;
/// The summary authors a `sync_session` hello or ack chooses heads for, in this order.
pub const AUTHORS: [DeviceId; 4] = [REPLICA, ALICE, BOB, CAROL];

/// The ops every sync check draws on, built once, deterministically:
///
/// - `base`: `r1` (REPLICA creates contact 1), `a1` (ALICE creates contact 2), `r2` (REPLICA
///   edits contact 1): what the `sync_session` replica starts with and the `decode_segments`
///   resolver holds;
/// - valid ops the base lacks: `a2` (ALICE renames contact 1, concurrently with `r2`), `a3`
///   (ALICE deletes contact 2), `b1` (BOB creates contact 3), `b2` (BOB edits the name `a2`
///   wrote: a reference to another author's write);
/// - `b2-same-time`: BOB's seq 2 with the timestamp of his seq 1, valid (a chain orders its
///   author's ops, not their timestamps);
/// - ops that are valid alone but not together with the others: `r2-fork` and `a2-fork`
///   (another op at the same place of REPLICA's and ALICE's chains), `c1-bad-replace` (CAROL
///   replaces a write `r1` never made).
pub struct Universe {
    /// Every op with its name, dependencies first.
    pub ops: Vec<(&'static str, SealedOp)>,
    /// The base ops, applied.
    pub base: Replay,
}

impl Universe {
    /// The op named `name`.
    pub fn op(&self, name: &str) -> SealedOp {
        self.ops
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, op)| op.clone())
            .unwrap_or_else(|| panic!("no op named {name} in the universe"))
    }

    /// The ops named in `names`, in that order.
    pub fn ops_named(&self, names: &[&str]) -> Vec<SealedOp> {
        names.iter().map(|n| self.op(n)).collect()
    }

    /// The valid chain of `author` (base and valid extra ops, no forks or broken ops).
    pub fn chain(&self, author: &DeviceId) -> Vec<SealedOp> {
        let names: &[&str] = match *author {
            REPLICA => &["r1", "r2"],
            ALICE => &["a1", "a2", "a3"],
            BOB => &["b1", "b2"],
            _ => &[],
        };
        self.ops_named(names)
    }

    /// A resolver and locator over the base ops.
    pub fn held(&self) -> Held<'_> {
        Held(&self.base)
    }
}

fn contact(n: u8, given: &str) -> Contact {
    let mut c = Contact::new(ContactId([n; 16]));
    c.set(Field::Given, given);
    c.phones.push(Item {
        id: ItemId([0x80 + n; 16]),
        label: "mobile".into(),
        body: ItemBody::Text(format!("+1 555 01{n:02}")),
    });
    c.tags.insert("friends".into());
    c
}

fn receive_all(device: &mut Device, ops: &[&SealedOp]) {
    for op in ops {
        device
            .receive((*op).clone())
            .unwrap_or_else(|e| panic!("building the universe: {e}"));
    }
}

fn built(what: &str, op: Result<SealedOp, cardlog_core::DeviceError>) -> SealedOp {
    op.unwrap_or_else(|e| panic!("building the universe, {what}: {e}"))
}

fn edited(
    what: &str,
    device: &mut Device,
    id: ContactId,
    f: impl FnOnce(&mut Contact),
) -> SealedOp {
    match device.edit(id, f) {
        Ok(Some(op)) => op,
        other => panic!("building the universe, {what}: {other:?}"),
    }
}

fn sealed(what: &str, op: Op) -> SealedOp {
    op.seal()
        .unwrap_or_else(|e| panic!("building the universe, {what}: {e}"))
}

impl Universe {
    fn build() -> Self {
        let clock = Arc::new(FakeClock::new(T0_MS));
        let (c1, c2, c3) = (ContactId([1; 16]), ContactId([2; 16]), ContactId([3; 16]));
        let mut r = Device::new(REPLICA, clock.clone());
        let mut a = Device::new(ALICE, clock.clone());
        let mut b = Device::new(BOB, clock.clone());

        let r1 = built("r1", r.create(&contact(1, "Ada")));
        receive_all(&mut a, &[&r1]);
        clock.advance_ms(1_000);
        let a1 = built("a1", a.create(&contact(2, "Grace")));
        receive_all(&mut r, &[&a1]);
        clock.advance_ms(60_000);
        let r2 = edited("r2", &mut r, c1, |c| {
            c.set(Field::Org, "Analytical Engines");
            if let Some(p) = c.phones.first_mut() {
                p.body = ItemBody::Text("+1 555 0199".into());
            }
        });
        // Another device writing as REPLICA from the same start: a fork of r2.
        let mut r_twin = Device::new(REPLICA, clock.clone());
        receive_all(&mut r_twin, &[&r1, &a1]);
        let r2_fork = edited("r2-fork", &mut r_twin, c1, |c| {
            c.set(Field::Org, "Difference Engines");
        });
        clock.advance_ms(5_000);
        let a2 = edited("a2", &mut a, c1, |c| {
            c.set(Field::Given, "Augusta");
        });
        let mut a_twin = Device::new(ALICE, clock.clone());
        receive_all(&mut a_twin, &[&r1, &a1]);
        let a2_fork = edited("a2-fork", &mut a_twin, c2, |c| {
            c.set(Field::Note, "a fork");
        });
        clock.advance_ms(5_000);
        let a3 = built("a3", a.delete(c2));
        receive_all(&mut b, &[&r1, &a1, &a2]);
        clock.advance_ms(1_000);
        let b1 = built("b1", b.create(&contact(3, "Hedy")));
        clock.advance_ms(1_000);
        let b2 = edited("b2", &mut b, c1, |c| {
            c.set(Field::Given, "Ada Augusta");
        });
        // BOB's seq 2 stamped like his seq 1: accepted (an author's chain orders its ops, not
        // their timestamps).
        let b2_same_time = sealed(
            "b2-same-time",
            Op {
                author: BOB,
                seq: 2,
                prev: Some(b1.id()),
                hlc: b1.op().hlc,
                writes: vec![
                    Write {
                        contact: c3,
                        path: Path::Exists,
                        value: Some(Value::Bool(true)),
                        replaces: vec![b1.id()],
                    },
                    Write {
                        contact: c3,
                        path: Path::Field(Field::Note),
                        value: Some(Value::Text("late".into())),
                        replaces: Vec::new(),
                    },
                ],
                members: Vec::new(),
            },
        );
        // CAROL replaces r1's organization, which r1 never wrote.
        let c1_bad_replace = sealed(
            "c1-bad-replace",
            Op {
                author: CAROL,
                seq: 1,
                prev: None,
                hlc: Hlc {
                    wall_ms: T0_MS + 120_000,
                    counter: 0,
                },
                writes: vec![
                    Write {
                        contact: c1,
                        path: Path::Exists,
                        value: Some(Value::Bool(true)),
                        replaces: Vec::new(),
                    },
                    Write {
                        contact: c1,
                        path: Path::Field(Field::Org),
                        value: Some(Value::Text("Globex".into())),
                        replaces: vec![r1.id()],
                    },
                ],
                members: Vec::new(),
            },
        );

        let mut base = Replay::new();
        for op in [&r1, &a1, &r2] {
            base.insert(op.clone())
                .unwrap_or_else(|e| panic!("building the universe: {e}"));
        }
        let ops = vec![
            ("r1", r1),
            ("a1", a1),
            ("r2", r2),
            ("a2", a2),
            ("a3", a3),
            ("b1", b1),
            ("b2", b2),
            ("r2-fork", r2_fork),
            ("a2-fork", a2_fork),
            ("b2-same-time", b2_same_time),
            ("c1-bad-replace", c1_bad_replace),
        ];
        Universe { ops, base }
    }
}

/// The fixed ops, built on first use.
pub fn universe() -> &'static Universe {
    static UNIVERSE: OnceLock<Universe> = OnceLock::new();
    UNIVERSE.get_or_init(Universe::build)
}

/// A replay's ops as the segment codec's sender or receiver sees them.
pub struct Held<'a>(pub &'a Replay);

impl Locate for Held<'_> {
    fn locate(&self, id: &OpId) -> Result<Option<SealedOp>, WireError> {
        Ok(self.0.op(id).cloned())
    }
}

impl Resolve for Held<'_> {
    fn op_at(&self, author: &DeviceId, seq: u64) -> Result<Option<SealedOp>, WireError> {
        Ok(chain_op(self.0, author, seq))
    }
}

fn chain_op(replay: &Replay, author: &DeviceId, seq: u64) -> Option<SealedOp> {
    let index = usize::try_from(seq.checked_sub(1)?).ok()?;
    replay.chain(author).nth(index).cloned()
}

/// A sealed op is exactly its canonical bytes: they decode strictly to it, hash to its id, and
/// sealing its content again gives the same id.
fn verify_op(op: &SealedOp, what: &str) {
    match decode_op(op.bytes()) {
        Ok(decoded) => assert_eq!(decoded.id(), op.id(), "{what}: bytes decode to another op"),
        Err(e) => panic!(
            "{what}: op {} does not decode from its own bytes: {e}",
            op.id()
        ),
    }
    assert_eq!(
        OpId::of_bytes(op.bytes()),
        op.id(),
        "{what}: op id is not the hash of its bytes"
    );
    match op.op().clone().seal() {
        Ok(again) => assert_eq!(again.id(), op.id(), "{what}: re-sealing gives another id"),
        Err(e) => panic!("{what}: op {} does not seal again: {e}", op.id()),
    }
}

// ---- decode_segments -----------------------------------------------------------------------

/// The `decode_segments` target: `data` is a mode byte and a segment message (see
/// [`MODE_AS_IS`]), decoded against the base ops of the [`Universe`]; see
/// [`check_segment_message`] for what must hold.
pub fn check_decode_segments(data: &[u8]) -> Result<Vec<SealedOp>, WireError> {
    let bytes = harness_input(data, seal_segments);
    check_segment_message(&bytes, &universe().held())
}

/// Decodes a segment message against `held`. Whatever the input, decoding returns instead of
/// panicking. When it accepts the message:
///
/// - every op is exactly its canonical bytes (they decode to it, hash to its id, and sealing
///   its content again gives the same id);
/// - dependencies come first: an op's previous op and replaced ops, when in the message, come
///   before it, and every replaced op is in the message or held;
/// - when the ops form consistent chains (no two ops at one place of a chain, and adjacent ops
///   of one author linked and in clock order; otherwise replay refuses them anyway), encoding
///   them again succeeds, decodes to the same ops, and encoding those gives the same bytes
///   again (the encoding is a function of the op set).
pub fn check_segment_message(bytes: &[u8], held: &Held<'_>) -> Result<Vec<SealedOp>, WireError> {
    let decoded = decode_segments(bytes, held);
    if let Ok(ops) = &decoded {
        check_decoded(ops, held);
    }
    decoded
}

fn check_decoded(ops: &[SealedOp], held: &Held<'_>) {
    let mut position: HashMap<OpId, usize> = HashMap::new();
    for (i, op) in ops.iter().enumerate() {
        verify_op(op, "decode_segments");
        position.entry(op.id()).or_insert(i);
    }
    for (i, op) in ops.iter().enumerate() {
        let o = op.op();
        if let Some(j) = o.prev.and_then(|p| position.get(&p)) {
            assert!(*j < i, "op {} comes before its previous op", op.id());
        }
        for replaced in o.writes.iter().flat_map(|w| &w.replaces) {
            match position.get(replaced) {
                Some(j) => assert!(*j < i, "op {} comes before an op it replaces", op.id()),
                None => assert!(
                    held.0.contains(replaced),
                    "op {} replaces {replaced}, neither in the message nor held",
                    op.id()
                ),
            }
        }
    }
    if !consistent_chains(ops) {
        return;
    }
    let again = encode_segments(ops, held)
        .unwrap_or_else(|e| panic!("an accepted message's ops do not encode again: {e}"));
    let redecoded = decode_segments(&again, held)
        .unwrap_or_else(|e| panic!("re-encoded ops do not decode: {e}"));
    let ids = |ops: &[SealedOp]| -> BTreeSet<OpId> { ops.iter().map(SealedOp::id).collect() };
    assert_eq!(
        ids(&redecoded),
        ids(ops),
        "re-encoding an accepted message's ops gives other ops"
    );
    let third = encode_segments(&redecoded, held)
        .unwrap_or_else(|e| panic!("re-decoded ops do not encode again: {e}"));
    assert!(
        third == again,
        "the same ops encode to different messages (the encoding depends on more than the op set)"
    );
}

/// Whether the ops' chains are consistent: one op per (author, seq), and each op following
/// another of the message names it as previous.
fn consistent_chains(ops: &[SealedOp]) -> bool {
    let mut at: BTreeMap<(DeviceId, u64), &SealedOp> = BTreeMap::new();
    for op in ops {
        let key = (op.op().author, op.op().seq);
        if at.get(&key).is_some_and(|other| other.id() != op.id()) {
            return false;
        }
        at.insert(key, op);
    }
    at.iter().all(|((author, seq), op)| {
        let Some(before) = seq.checked_sub(1).and_then(|s| at.get(&(*author, s))) else {
            return true;
        };
        op.op().prev == Some(before.id())
    })
}

// ---- decode_message ------------------------------------------------------------------------

/// The `decode_message` target: `data` is a mode byte and a protocol message (see
/// [`MODE_AS_IS`]). Whatever the input, [`message::decode`] returns instead of panicking; when
/// it accepts the message, the format is canonical: encoding the decoded message gives exactly
/// the input bytes. The segments an `Ops` or `Bundle` message carries then go through
/// [`check_segment_message`] against the universe's base ops.
pub fn check_decode_message(data: &[u8]) -> Result<Message, WireError> {
    let bytes = harness_input(data, seal_message);
    let decoded = message::decode(&bytes);
    if let Ok(m) = &decoded {
        assert!(
            message::encode(m) == bytes,
            "message::decode accepted a {} message that is not the canonical encoding of what \
             it decoded",
            m.kind()
        );
        if let Message::Ops { segments, .. } | Message::Bundle { segments, .. } = m {
            let _ = check_segment_message(segments, &universe().held());
        }
    }
    decoded
}

// ---- handshake -----------------------------------------------------------------------------

/// What the `handshake` target's first byte makes of the rest (modulo 4).
pub mod stage {
    /// The rest is message 1, given to a responder.
    pub const MESSAGE_1: u8 = 0;
    /// The rest is message 2, given to an initiator that sent a real message 1.
    pub const MESSAGE_2: u8 = 1;
    /// The rest is message 3, given to a responder that answered a real message 1.
    pub const MESSAGE_3: u8 = 2;
    /// The rest is the first sealed message of an established session.
    pub const SEALED: u8 = 3;
    /// Added to a stage: the handshake is addressed to a relay of many books.
    pub const ADDRESSED: u8 = 4;
}

fn identity(n: u8) -> cardlog_sync::Identity {
    cardlog_sync::Identity::new(
        cardlog_core::BookId([7; 16]),
        &cardlog_core::DeviceKey::from_seed(&[n; 32]),
    )
}

/// The `handshake` target: a stage byte ([`stage`]) and bytes an attacker sends at that point
/// of a handshake between two real devices of one book; with the stage byte's bit 2 set
/// ([`stage::ADDRESSED`]) the handshake is addressed to a relay of many books instead.
/// Nothing panics; no made-up message 1, 2 or 3 ever authenticates, and no made-up sealed
/// message ever opens (each would take forging an AEAD tag under a key the attacker lacks:
/// message 1's is the book's, or the relay's device id's). `Ok` if the bytes were taken.
pub fn check_handshake(data: &[u8]) -> Result<(), String> {
    use cardlog_sync::secure::Handshake;
    let (mode, rest) = data.split_first().map_or((0, &[][..]), |(m, r)| (*m, r));
    let addressed = mode & stage::ADDRESSED != 0;
    let initiator = identity(1);
    let responder = if addressed {
        cardlog_sync::Identity::any_book(&cardlog_core::DeviceKey::from_seed(&[2; 32]))
    } else {
        identity(2)
    };
    let real =
        |e: cardlog_sync::HandshakeError| -> String { format!("a real handshake failed: {e}") };
    let initiate = || {
        if addressed {
            Handshake::initiate_to(&initiator, responder.device())
        } else {
            Handshake::initiate(&initiator)
        }
        .map_err(real)
    };
    match mode % 4 {
        stage::MESSAGE_1 => {
            let taken = Handshake::answer(&responder, rest);
            assert!(taken.is_err(), "a made-up message 1 authenticated");
            taken.map(|_| ()).map_err(|e| e.to_string())
        }
        stage::MESSAGE_2 => {
            let (mut hi, _m1) = initiate()?;
            let taken = hi.read_reply(rest);
            assert!(
                taken.is_err(),
                "a made-up message 2 authenticated: {taken:?}"
            );
            taken.map(|_| ()).map_err(|e| e.to_string())
        }
        stage::MESSAGE_3 => {
            let (_hi, m1) = initiate()?;
            let (hr, _m2) = Handshake::answer(&responder, &m1).map_err(real)?;
            let taken = hr.read_final(rest);
            assert!(taken.is_err(), "a made-up message 3 authenticated");
            taken.map(|_| ()).map_err(|e| e.to_string())
        }
        _ => {
            let (mut hi, m1) = initiate()?;
            let (hr, m2) = Handshake::answer(&responder, &m1).map_err(real)?;
            hi.read_reply(&m2).map_err(real)?;
            let (m3, _ci) = hi.finish(&initiator).map_err(real)?;
            let (_, _, mut cr) = hr.read_final(&m3).map_err(real)?;
            let opened = cr.open(rest);
            assert!(opened.is_err(), "a made-up sealed message opened");
            opened.map(|_| ()).map_err(|e| e.to_string())
        }
    }
}

// ---- the in-memory replica -----------------------------------------------------------------

pub use cardlog_sync::memory::MemoryReplica as MemReplica;

/// A replica writing as `id` holding `ops` (applied together, any order; refusals ignored), its
/// wall clock fixed ten minutes after [`T0_MS`].
pub fn mem_replica<'a>(id: DeviceId, ops: impl IntoIterator<Item = &'a SealedOp>) -> MemReplica {
    let mut replica = MemReplica::new(Device::new(id, Arc::new(FakeClock::new(T0_MS + 600_000))));
    let ops: Vec<SealedOp> = ops.into_iter().cloned().collect();
    let _ = replica.apply(&ops, &[]);
    replica
}

/// Checks that `replica` is internally consistent: every author's chain runs from seq 1 to its
/// summary head with each op naming the one before and stamped after it, every op is exactly
/// its canonical bytes, every replaced write is applied and at the same contact and path,
/// nothing is waiting, and the store's summary carries each head's timestamp.
pub fn check_replica(replica: &MemReplica) {
    let replay = replica.replay();
    let mut total = 0usize;
    for (author, tip) in replay.summary() {
        let (seq, head) = (tip.seq, tip.op);
        let mut previous: Option<&SealedOp> = None;
        let mut n = 0u64;
        for op in replay.chain(&author) {
            n += 1;
            verify_op(op, "replica");
            let o = op.op();
            assert_eq!(o.author, author, "op {} in another author's chain", op.id());
            assert_eq!(o.seq, n, "op {} at the wrong place of its chain", op.id());
            assert_eq!(
                o.prev,
                previous.map(SealedOp::id),
                "op {} does not name the op before it",
                op.id()
            );
            for w in &o.writes {
                for replaced in &w.replaces {
                    let wrote = replay
                        .op(replaced)
                        .map(|r| r.op().write_at(w.contact, &w.path).is_some());
                    assert_eq!(
                        wrote,
                        Some(true),
                        "op {} replaces a write of {replaced} that is not applied",
                        op.id()
                    );
                }
            }
            previous = Some(op);
        }
        assert_eq!(n, seq, "{author}'s summary seq is not its chain length");
        assert_eq!(
            previous.map(SealedOp::id),
            Some(head),
            "{author}'s summary head is not its last op"
        );
        total += usize::try_from(n).unwrap_or(usize::MAX);
    }
    assert_eq!(total, replay.len(), "applied ops outside every chain");
    assert_eq!(replay.waiting().count(), 0, "the replica keeps waiting ops");
    for (author, head) in replica.summary() {
        let hlc = replay.op(&head.op).map(|o| o.op().hlc);
        assert_eq!(
            hlc,
            Some(head.hlc),
            "{author}'s summary head has another timestamp"
        );
    }
}

// ---- sync_session --------------------------------------------------------------------------

/// What a `sync_session` chunk's selector byte means: the high bit sends the chunk to
/// [`bundle::import`] instead of the session, the rest (modulo [`chunk::KINDS`]) picks how the
/// harness builds the message from the chunk's payload.
pub mod chunk {
    /// High bit: import the message as a bundle file instead of giving it to the session.
    pub const BUNDLE: u8 = 0x80;
    /// The payload is the message, as it is.
    pub const RAW: u8 = 0;
    /// The payload is a message without its checksum; the harness appends it.
    pub const SEALED: u8 = 1;
    /// A hello (a heads file for a bundle import) from a summary chosen by the payload: a
    /// byte whose low bit makes the sender the replica itself, then one byte per author of
    /// [`super::AUTHORS`] (see [`super::summary_from`]).
    pub const HELLO: u8 = 2;
    /// An ops message (a bundle) around fuzzer-written segments: a flags byte (bit 0: the
    /// sender's last ops message; bit 1: report a fork), then a segment message without its
    /// checksum, which the harness appends.
    pub const SEGMENTS: u8 = 3;
    /// An ops message (a bundle) carrying universe ops: a flags byte as for [`SEGMENTS`],
    /// then a little-endian `u16` choosing universe ops by bit (op `i` of
    /// [`super::Universe::ops`] is bit `i`).
    pub const OPS: u8 = 4;
    /// An ack from a summary chosen by the payload (one byte per author).
    pub const ACK: u8 = 5;
    /// Number of kinds.
    pub const KINDS: u8 = 6;
}

/// The summary a `sync_session` payload chooses, one byte per author of [`AUTHORS`] (missing
/// bytes are 0): 0 leaves the author out; with the high bit set, a head the universe does not
/// have (seq from the low six bits plus one, a made-up id); otherwise the author's valid op at
/// seq `1 + (byte & 0x3f) % chain length` (left out for an author without valid ops).
pub fn summary_from(bytes: &[u8]) -> Summary {
    let u = universe();
    let mut summary = Summary::new();
    for (i, author) in AUTHORS.iter().enumerate() {
        let b = bytes.get(i).copied().unwrap_or(0);
        if b == 0 {
            continue;
        }
        if b & 0x80 != 0 {
            summary.insert(
                *author,
                ChainTip {
                    seq: u64::from(b & 0x3f) + 1,
                    op: OpId([b; 32]),
                    hlc: Hlc {
                        wall_ms: T0_MS,
                        counter: u32::from(b),
                    },
                },
            );
            continue;
        }
        let chain = u.chain(author);
        if chain.is_empty() {
            continue;
        }
        let index = usize::from(b & 0x3f) % chain.len();
        if let Some(op) = chain.get(index) {
            summary.insert(
                *author,
                ChainTip {
                    seq: op.op().seq,
                    op: op.id(),
                    hlc: op.op().hlc,
                },
            );
        }
    }
    summary
}

/// The universe ops a `u16` mask chooses (bit `i`: op `i`), in universe order.
pub fn ops_from_mask(mask: u16) -> Vec<SealedOp> {
    universe()
        .ops
        .iter()
        .enumerate()
        .filter(|(i, _)| u32::try_from(*i).is_ok_and(|i| i < 16 && mask & (1 << i) != 0))
        .map(|(_, (_, op))| op.clone())
        .collect()
}

/// The fork an ops message reports when its flags ask for one.
fn reported_fork() -> Fork {
    Fork {
        author: ALICE,
        seq: 1,
        ours: OpId([0xee; 32]),
        theirs: universe().op("a1").id(),
    }
}

/// Builds the message one `sync_session` chunk stands for (see [`chunk`]).
pub fn chunk_message(kind: u8, bundle_entry: bool, payload: &[u8]) -> Vec<u8> {
    let (first, rest) = payload.split_first().map_or((0, &[][..]), |(f, r)| (*f, r));
    let segments_message = |segments: Vec<u8>| {
        if bundle_entry {
            Message::Bundle {
                replica: PEER,
                created_ms: T0_MS + 600_000,
                segments,
            }
        } else {
            Message::Ops {
                last: first & 1 != 0,
                forks: if first & 2 != 0 {
                    vec![reported_fork()]
                } else {
                    Vec::new()
                },
                segments,
            }
        }
    };
    let message = match kind % chunk::KINDS {
        chunk::RAW => return payload.to_vec(),
        chunk::SEALED => return seal_message(payload),
        chunk::HELLO => {
            let replica = if first & 1 != 0 { REPLICA } else { PEER };
            let summary = summary_from(rest);
            if bundle_entry {
                Message::SummaryFile { replica, summary }
            } else {
                Message::Hello {
                    replica,
                    wall_ms: T0_MS + 600_000,
                    summary,
                }
            }
        }
        chunk::SEGMENTS => segments_message(seal_segments(rest)),
        chunk::OPS => {
            let mask = u16::from_le_bytes([
                rest.first().copied().unwrap_or(0),
                rest.get(1).copied().unwrap_or(0),
            ]);
            let ops = ops_from_mask(mask);
            // Universe ops always encode (the locator holds every op they name).
            let segments = encode_segments(&ops, &UniverseOps)
                .unwrap_or_else(|e| panic!("universe ops do not encode: {e}"));
            segments_message(segments)
        }
        _ => Message::Ack {
            summary: summary_from(payload),
        },
    };
    message::encode(&message)
}

/// Locates any universe op by id.
pub struct UniverseOps;

impl Locate for UniverseOps {
    fn locate(&self, id: &OpId) -> Result<Option<SealedOp>, WireError> {
        Ok(universe()
            .ops
            .iter()
            .find(|(_, op)| op.id() == *id)
            .map(|(_, op)| op.clone()))
    }
}

/// Splits a `sync_session` input into chunks: the `replay_ops` framing (a little-endian `u16`
/// length, then that many bytes).
pub use super::checks::split_chunks;

/// What [`check_sync_session`] saw, so tests can tell how far a seed gets.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SessionCheck {
    /// Chunks in the input.
    pub chunks: usize,
    /// Chunks the session (or bundle import) took without error.
    pub accepted: usize,
    /// Why each refused chunk was refused (a short error kind, e.g. `refused`, `protocol`,
    /// `wire:Checksum`), in input order.
    pub refused: Vec<String>,
    /// Messages the responder sent.
    pub sent: usize,
    /// Sessions that reached their end.
    pub sessions_done: usize,
    /// Ops the replica holds at the end beyond its base ops.
    pub ops_gained: usize,
    /// Forks the replica recorded.
    pub forks: usize,
}

/// A short name for why a chunk was refused.
pub fn error_kind<E: std::fmt::Debug>(e: &SyncError<E>) -> String {
    let variant = |debug: String| -> String {
        debug
            .split(['(', ' ', '{'])
            .next()
            .unwrap_or_default()
            .to_owned()
    };
    match e {
        SyncError::Wire(w) => format!("wire:{}", variant(format!("{w:?}"))),
        SyncError::Protocol(_) => "protocol".into(),
        SyncError::Refused(_) => "refused".into(),
        SyncError::SamePeer(_) => "same-peer".into(),
        SyncError::PeerAborted(_) => "aborted".into(),
        other => variant(format!("{other:?}")),
    }
}

/// The `sync_session` target: a responder [`Session`] on a [`MemReplica`] holding the
/// universe's base ops takes the chunks of `data` (see [`split_chunks`]) one by one, each
/// turned into a message by [`chunk_message`] and given to the session or, with the
/// [`chunk::BUNDLE`] bit, to [`bundle::import`]. After a session ends or fails, the next chunk
/// goes to a new one. Nothing may panic, and:
///
/// - a refused message changes no op of the replica (each message is applied whole or not at
///   all);
/// - every message the responder sends decodes, is canonical, and says what the replica holds
///   (its hello and ack carry the replica's summary; its ops decode against the replica into
///   ops the replica holds);
/// - after every chunk the replica is consistent ([`check_replica`]), and at the end a fresh
///   replay of its ops in application order gives the same state bytes.
pub fn check_sync_session(data: &[u8]) -> SessionCheck {
    let u = universe();
    let base_len = u.base.len();
    let mut replica = mem_replica(REPLICA, u.base.ops_in_order());
    let mut session = Session::new(Role::Responder);
    let chunks = split_chunks(data);
    let mut out = SessionCheck {
        chunks: chunks.len(),
        ..SessionCheck::default()
    };
    for chunk in chunks {
        let (selector, payload) = chunk.split_first().map_or((0, &[][..]), |(s, p)| (*s, p));
        let bundle_entry = selector & chunk::BUNDLE != 0;
        let bytes = chunk_message(selector & !chunk::BUNDLE, bundle_entry, payload);
        let before = (replica.replay().summary(), replica.replay().len());
        let result = if bundle_entry {
            bundle::import(&mut replica, &bytes).map(|_| ())
        } else {
            session.receive(&bytes, &mut replica)
        };
        let failed = match result {
            Ok(()) => {
                out.accepted += 1;
                false
            }
            Err(e) => {
                assert!(
                    (replica.replay().summary(), replica.replay().len()) == before,
                    "a refused message changed the replica's ops: {e}"
                );
                out.refused.push(error_kind(&e));
                true
            }
        };
        if !bundle_entry {
            // Anything the session queued goes out now, and must make sense.
            for _ in 0..1024 {
                match session.next_message(&mut replica) {
                    Ok(Some(sent)) => {
                        out.sent += 1;
                        check_sent(&sent, &replica);
                    }
                    Ok(None) => break,
                    Err(e) => panic!("the responder could not say what to send: {e}"),
                }
            }
            if session.is_done() {
                out.sessions_done += 1;
                session = Session::new(Role::Responder);
            } else if failed {
                session = Session::new(Role::Responder);
            }
        }
        check_replica(&replica);
    }
    let mut fresh = Replay::new();
    for op in replica.replay().ops_in_order() {
        if let Err(e) = fresh.insert(op.clone()) {
            panic!("the replica's ops, replayed afresh in their order, are refused: {e}");
        }
    }
    assert!(
        fresh.state_bytes() == replica.replay().state_bytes(),
        "a fresh replay of the replica's ops gives another state"
    );
    out.ops_gained = replica.replay().len().saturating_sub(base_len);
    out.forks = replica.forks().len();
    out
}

/// What the responder sent must decode, be canonical and say what `replica` holds.
fn check_sent(bytes: &[u8], replica: &MemReplica) {
    let m = message::decode(bytes)
        .unwrap_or_else(|e| panic!("the responder sent a message that does not decode: {e}"));
    assert!(
        message::encode(&m) == bytes,
        "the responder sent a non-canonical {} message",
        m.kind()
    );
    match m {
        Message::Hello {
            replica: id,
            summary,
            ..
        } => {
            assert_eq!(id, REPLICA, "the responder's hello names another replica");
            assert!(
                summary == replica.summary(),
                "the responder's hello is not its summary"
            );
        }
        Message::Ack { summary } => {
            assert!(
                summary == replica.summary(),
                "the responder's ack is not its summary"
            );
        }
        Message::Ops { segments, .. } => {
            let ops = decode_segments(&segments, &Held(replica.replay())).unwrap_or_else(|e| {
                panic!("the responder sent segments it cannot decode itself: {e}")
            });
            for op in ops {
                assert!(
                    replica.replay().contains(&op.id()),
                    "the responder sent op {} it does not hold",
                    op.id()
                );
            }
        }
        other => panic!("the responder sent a {} message", other.kind()),
    }
}

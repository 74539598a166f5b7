//! The segment encoding (version 2, and version 3 for a compressed one; it reads version 1
//! too; byte layout in docs/FORMAT.md, "Segments" and "Segments, compressed").
//!
//! A message carries one segment per author: that author's ops in a contiguous seq range,
//! anchored to the id of the op before the range. Each op is sent compactly:
//!
//! - author, seq and previous id are implied by the segment;
//! - the timestamp is a wall-clock delta from the previous op plus the counter (a segment in
//!   which an op is stamped before the one before it, its author's clock having been set
//!   back, carries whole times instead, flagged);
//! - a write that replaces earlier writes names the first of them as (author, seq, write
//!   index), and takes its contact and path from it; other replaced writes are (author, seq);
//! - contacts are numbered in a per-message table, authors in another;
//! - the common `exists = true` write has a one-byte form;
//! - a membership op (no writes) carries its member changes in their bincode form.
//!
//! A version-2 segment also says which op format its ops are in, and may carry its author's
//! public key and signature of its last op (the chain tip), which covers every op of the
//! segment.
//!
//! A segment may instead carry each op as its exact bytes (flag bit 3: a branch of a chain
//! that forks from the receiver's, whose references by place could name other ops there):
//! decoded strictly and checked against its place.
//!
//! The receiver rebuilds each compact op exactly, seals it (which re-validates and re-hashes
//! it) and checks the chain: each op names the previous one, and the last one's id must equal the
//! segment's head, which the sender computed from its own bytes. Anything altered on the way
//! therefore fails the segment, naming its author and seq range. A 16-byte checksum over the
//! whole message catches damage in the framing first.
//!
//! A sender may wrap a message in zstd ([`compress`], version 3: docs/FORMAT.md, "Segments,
//! compressed"); every decoder here inflates it first, within [`limits::INFLATE_RATIO_MAX`] of
//! its compressed bytes, and reads what it inflates to as a plain message, checksum included.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet, HashMap};

use cardlog_core::codec::{decode_exact, encode_to_vec, OpFormat};
use cardlog_core::{
    ContactId, DeviceId, Hlc, MemberChange, Op, OpId, Path, PublicKey, SealedOp, Signature,
    SignedTip, Value, Write,
};

use super::error::{WireError, AUTHORS_IN_A_MESSAGE, SEGMENTS_IN_A_MESSAGE};
use super::frame::{checksum, Reader, CHECKSUM_BYTES};
use super::varint;

/// The segment format version this build writes plain (it reads version 1 too; a compressed
/// message is [`COMPRESSED_VERSION`]).
pub const SEGMENT_VERSION: u8 = 2;
/// Segment flags (version 2): its ops are in op format 2 (else 1).
const FLAG_FORMAT_2: u8 = 1;
/// Segment flags (version 2): the author's signature of the last op follows the head.
const FLAG_SIGNED: u8 = 2;
/// Segment flags (version 2): each op after the first carries its wall time whole, not as a
/// delta, because one of them is stamped before the op before it (its author's clock was set
/// back). Set only then, so every other segment is what builds without it write and read.
const FLAG_ABSOLUTE_TIMES: u8 = 4;
/// Segment flags (version 2): each op travels as its exact bytes (a length, then the op as
/// its author sealed it), not rebuilt from references by place. For a branch of a chain that
/// forks from the receiver's ([`encode_exact_segments`]), and for a chain sent whole because
/// it forks between the two sides ([`encode_segments_exact_for`]): the receiver may hold other
/// ops at the places their ops name, so only their ids can say which ops they are. Builds
/// from before 2026-12-06 refuse it.
const FLAG_EXACT_OPS: u8 = 8;
const MAGIC: &[u8; 4] = b"CLSG";
/// The version byte of a compressed segment message ([`compress`]): a zstd frame of a plain
/// (version 1 or 2) message follows its inflated length.
pub const COMPRESSED_VERSION: u8 = 3;
/// Plain messages shorter than this are sent as they are: a zstd frame's own header and the
/// few repeats in a short message save little or nothing.
const COMPRESS_FROM_BYTES: usize = 512;
/// zstd's level for segment messages: its default, within 2 % of level 19's size on sync
/// messages of contacts (`zstd -b3` on the compare workload's full sync: 2.96x, about 250 MB/s
/// compressing and 900 MB/s inflating on a 2-core Xeon VM).
const ZSTD_LEVEL: i32 = 3;
const CHECKSUM_CONTEXT: &str = "cardlog 2026-11-23 segment checksum v1";

/// Limits on what a message may declare, each checked before anything is allocated for it.
/// Names end in their unit (docs/FORMAT.md, "Limits", lists them with the errors they give).
/// The encoder keeps to them too, so every message it writes can be read back.
pub mod limits {
    /// Largest segment message, in bytes.
    pub const MESSAGE_BYTES_MAX: usize = 256 << 20;
    /// Most entries in one message's author table.
    pub const AUTHORS_PER_MESSAGE_MAX: u64 = 1 << 16;
    /// Most segments in one message.
    pub const SEGMENTS_PER_MESSAGE_MAX: u64 = 1 << 16;
    /// Most ops in one segment (the encoder starts a new segment of the same author beyond).
    pub const OPS_PER_SEGMENT_MAX: u64 = 1 << 22;
    /// Most writes in one op (the op format's own limit).
    pub const WRITES_PER_OP_MAX: u64 = cardlog_core::codec::limits::WRITES_PER_OP_MAX as u64;
    /// Most member changes in one op (the op format's own limit).
    pub const MEMBER_CHANGES_PER_OP_MAX: u64 =
        cardlog_core::codec::limits::MEMBER_CHANGES_PER_OP_MAX as u64;
    /// Longest encoded member change, in bytes (a key, a role and a name of at most 256
    /// bytes fit well within it).
    pub const MEMBER_CHANGE_BYTES_MAX: u64 = 1024;
    /// Most replaced writes named by one write (the op format's own limit).
    pub const REPLACES_PER_WRITE_MAX: u64 =
        cardlog_core::codec::limits::REPLACES_PER_WRITE_MAX as u64;
    /// Longest encoded path of an explicit write, in bytes (no op can hold a longer one).
    pub const PATH_BYTES_MAX: u64 = cardlog_core::codec::limits::OP_BYTES_MAX as u64;
    /// Longest encoded value of a write, in bytes (no op can hold a longer one).
    pub const VALUE_BYTES_MAX: u64 = cardlog_core::codec::limits::OP_BYTES_MAX as u64;
    /// Most bytes of one exact op (flag bit 3): the op size limit.
    pub const OP_BYTES_MAX: u64 = cardlog_core::codec::limits::OP_BYTES_MAX as u64;
    /// Most bytes a compressed message may inflate to per byte of its zstd frame: what it can
    /// make a receiver hold before any check of its content is then at most this many times
    /// what it sent. Contacts' sync messages compress 2-3x, regular ones up to about 6x; a
    /// sender whose message would compress further sends it plain.
    pub const INFLATE_RATIO_MAX: u64 = 8;
    /// Longest plain message a compressed one may inflate to, in bytes: twice a session's
    /// chunk of ops, so a session message is compressed (but one extended far past its chunk
    /// to end at signed ops, which is bounded in ops, not bytes), and a larger bundle is
    /// written plain. A server counts what a message inflates to against its receive budget.
    pub const INFLATED_BYTES_MAX: usize = 16 << 20;
}

/// The sender's view: where an op named by id is, and which chain tips it holds signatures of.
pub trait Locate {
    /// The op with this id, if known.
    fn locate(&self, id: &OpId) -> Result<Option<SealedOp>, WireError>;

    /// The author's signature of its op at `seq` (with its key), if the sender holds it.
    fn tip_signature(&self, author: &DeviceId, seq: u64) -> Result<Option<SignedTip>, WireError> {
        let _ = (author, seq);
        Ok(None)
    }
}

/// The receiver's view: the op an author wrote at a seq, if it has it.
pub trait Resolve {
    /// The op `author` wrote at `seq`, if known.
    fn op_at(&self, author: &DeviceId, seq: u64) -> Result<Option<SealedOp>, WireError>;

    /// Whether the receiver knows `author`'s chain to fork from the sender's (a store
    /// restored from a backup: docs/SEMANTICS.md, "Restores"): the op it holds at a seq may
    /// not be the one the sender names there. A segment whose ops named such an op and then
    /// do not hash to its head is left out (counted missing) rather than refusing the message:
    /// it waits until the fork is settled.
    fn forked(&self, author: &DeviceId) -> bool {
        let _ = author;
        false
    }
}

// ---- encoding ------------------------------------------------------------------------------

/// Write tags.
const TAG_EXPLICIT: u8 = 0;
const TAG_SAME_AS_REPLACED: u8 = 1;
const TAG_EXISTS_TRUE: u8 = 2;

/// Contact references of explicit writes: 0 is a new contact (its 16 bytes follow), 1 the
/// contact of the op's previous write (writes are sorted by contact, `exists` first, so an
/// edit's new path usually follows its contact's `exists` write), n ≥ 2 entry n - 2 of the
/// message's contact table.
const CONTACT_NEW: u64 = 0;
const CONTACT_SAME_AS_PREVIOUS: u64 = 1;
const CONTACT_TABLE_BASE: u64 = 2;

struct Tables {
    authors: Vec<DeviceId>,
    author_index: HashMap<DeviceId, u64>,
    contacts: HashMap<ContactId, u64>,
}

impl Tables {
    fn author(&mut self, a: DeviceId) -> u64 {
        if let Some(i) = self.author_index.get(&a) {
            return *i;
        }
        let i = self.authors.len() as u64;
        self.authors.push(a);
        self.author_index.insert(a, i);
        i
    }
}

/// Encodes `ops` (any set of whole ops, typically `ops_since` of a peer's summary) as one
/// message: one segment per contiguous run of each author's ops (of at most
/// [`limits::OPS_PER_SEGMENT_MAX`], in one op format). `locate` finds the ops that replaced writes name (in `ops`
/// or already with the peer). More segments or authors than a receiver accepts is a
/// [`WireError::TooLarge`]: the message could not be read back. The message's size is the
/// caller's to check (sessions send in chunks; a bundle checks its whole file).
pub fn encode_segments(ops: &[SealedOp], locate: &impl Locate) -> Result<Vec<u8>, WireError> {
    encode(ops, locate, &|_| false)
}

/// [`encode_segments`] with the segments of the authors in `exact` as exact ops (segment flag
/// bit 3): chains a session or bundle sends whole because they fork between the two sides,
/// whose ops may name places the receiver holds other ops at (docs/SYNC.md, "A fork of one's
/// own chain: taking it back").
pub fn encode_segments_exact_for(
    ops: &[SealedOp],
    locate: &impl Locate,
    exact: &BTreeSet<DeviceId>,
) -> Result<Vec<u8>, WireError> {
    encode(ops, locate, &|author| exact.contains(author))
}

/// [`encode_segments`] with every op as its exact bytes (segment flag bit 3, docs/FORMAT.md):
/// for a branch of a chain that forks from the receiver's (a branch kept aside, handed on or owed back), whose
/// ops name ops the receiver may hold other ops in place of. `locate` gives only the
/// signatures of segment tips; the ops' references travel as the ids they are.
pub fn encode_exact_segments(ops: &[SealedOp], locate: &impl Locate) -> Result<Vec<u8>, WireError> {
    encode(ops, locate, &|_| true)
}

/// Encodes `ops`, the segments of the authors `exact` says as exact ops.
fn encode(
    ops: &[SealedOp],
    locate: &impl Locate,
    exact: &dyn Fn(&DeviceId) -> bool,
) -> Result<Vec<u8>, WireError> {
    let mut by_author: BTreeMap<DeviceId, Vec<&SealedOp>> = BTreeMap::new();
    let mut in_message: HashMap<OpId, &SealedOp> = HashMap::new();
    for op in ops {
        by_author.entry(op.op().author).or_default().push(op);
        in_message.insert(op.id(), op);
    }
    let mut segments: Vec<Vec<&SealedOp>> = Vec::new();
    for (_, mut chain) in by_author {
        chain.sort_by_key(|op| op.op().seq);
        chain.dedup_by_key(|op| op.op().seq);
        let mut run: Vec<&SealedOp> = Vec::new();
        for op in chain {
            let full = run.len() as u64 >= limits::OPS_PER_SEGMENT_MAX;
            let breaks = run
                .last()
                .is_some_and(|l| l.op().seq + 1 != op.op().seq || l.format() != op.format());
            if full || breaks {
                segments.push(std::mem::take(&mut run));
            }
            run.push(op);
        }
        if !run.is_empty() {
            segments.push(run);
        }
    }

    if segments.len() as u64 > limits::SEGMENTS_PER_MESSAGE_MAX {
        return Err(WireError::TooLarge {
            what: SEGMENTS_IN_A_MESSAGE,
            got: segments.len() as u64,
            limit: limits::SEGMENTS_PER_MESSAGE_MAX,
        });
    }

    let mut tables = Tables {
        authors: Vec::new(),
        author_index: HashMap::new(),
        contacts: HashMap::new(),
    };
    let find = |id: &OpId| -> Result<SealedOp, WireError> {
        if let Some(op) = in_message.get(id) {
            return Ok((*op).clone());
        }
        locate
            .locate(id)?
            .ok_or_else(|| WireError::Sender(format!("op {id} is named but not found")))
    };
    let mut body = Vec::new();
    varint::put(&mut body, segments.len() as u64);
    for segment in &segments {
        let (Some(first), Some(last)) = (segment.first(), segment.last()) else {
            continue;
        };
        let f = first.op();
        let exact = exact(&f.author);
        // A signature of another op than the one sent would only be refused by the receiver.
        let signature = locate
            .tip_signature(&f.author, last.op().seq)?
            .filter(|t| t.op == last.id());
        varint::put(&mut body, tables.author(f.author));
        let mut flags = 0;
        if first.format() == OpFormat::V2 {
            flags |= FLAG_FORMAT_2;
        }
        if signature.is_some() {
            flags |= FLAG_SIGNED;
        }
        let goes_back = segment
            .windows(2)
            .any(|w| matches!(w, [a, b] if b.op().hlc.wall_ms < a.op().hlc.wall_ms));
        if exact {
            flags |= FLAG_EXACT_OPS;
        } else if goes_back {
            flags |= FLAG_ABSOLUTE_TIMES;
        }
        body.push(flags);
        varint::put(&mut body, f.seq);
        if let Some(prev) = f.prev {
            body.extend_from_slice(&prev.0);
        }
        if exact {
            varint::put(&mut body, segment.len() as u64);
            for sealed in segment {
                varint::put(&mut body, sealed.bytes().len() as u64);
                body.extend_from_slice(sealed.bytes());
            }
        } else {
            varint::put(&mut body, f.hlc.wall_ms);
            varint::put(&mut body, segment.len() as u64);
        }
        let mut wall = f.hlc.wall_ms;
        for (i, sealed) in segment.iter().enumerate().filter(|_| !exact) {
            let op = sealed.op();
            if i > 0 {
                if goes_back {
                    varint::put(&mut body, op.hlc.wall_ms);
                } else {
                    varint::put(&mut body, op.hlc.wall_ms.saturating_sub(wall));
                }
            }
            wall = op.hlc.wall_ms;
            varint::put(&mut body, u64::from(op.hlc.counter));
            varint::put(&mut body, op.writes.len() as u64);
            let mut previous = None;
            for w in &op.writes {
                encode_write(&mut body, &mut tables, w, previous, &find)?;
                previous = Some(w.contact);
            }
            if op.writes.is_empty() {
                varint::put(&mut body, op.members.len() as u64);
                for change in &op.members {
                    let bytes = encode_to_vec(change);
                    varint::put(&mut body, bytes.len() as u64);
                    body.extend_from_slice(&bytes);
                }
            }
        }
        body.extend_from_slice(&last.id().0);
        if let Some(tip) = signature {
            body.extend_from_slice(&tip.key.0);
            body.extend_from_slice(&tip.signature.0);
        }
    }

    // Replaced writes may name authors without a segment here, so the table is counted last.
    if tables.authors.len() as u64 > limits::AUTHORS_PER_MESSAGE_MAX {
        return Err(WireError::TooLarge {
            what: AUTHORS_IN_A_MESSAGE,
            got: tables.authors.len() as u64,
            limit: limits::AUTHORS_PER_MESSAGE_MAX,
        });
    }
    let mut out = Vec::with_capacity(body.len() + 64);
    out.extend_from_slice(MAGIC);
    out.push(SEGMENT_VERSION);
    varint::put(&mut out, tables.authors.len() as u64);
    for a in &tables.authors {
        out.extend_from_slice(&a.0);
    }
    out.extend_from_slice(&body);
    let sum = checksum(CHECKSUM_CONTEXT, &out);
    out.extend_from_slice(&sum);
    Ok(out)
}

fn encode_write(
    out: &mut Vec<u8>,
    tables: &mut Tables,
    w: &Write,
    previous: Option<ContactId>,
    find: &impl Fn(&OpId) -> Result<SealedOp, WireError>,
) -> Result<(), WireError> {
    // The replaced writes as (author, seq), and the position of this write's twin in the first.
    let mut refs = Vec::with_capacity(w.replaces.len());
    let mut twin = None;
    for (i, id) in w.replaces.iter().enumerate() {
        let op = find(id)?;
        let o = op.op();
        if i == 0 {
            twin = o
                .writes
                .iter()
                .position(|x| x.contact == w.contact && x.path == w.path);
        }
        refs.push((tables.author(o.author), o.seq));
    }
    let tag = match (twin, &w.path, &w.value) {
        (Some(_), Path::Exists, Some(Value::Bool(true))) => TAG_EXISTS_TRUE,
        (Some(_), _, _) => TAG_SAME_AS_REPLACED,
        (None, _, _) => TAG_EXPLICIT,
    };
    out.push(tag);
    if tag == TAG_EXPLICIT {
        match tables.contacts.get(&w.contact) {
            _ if previous == Some(w.contact) => varint::put(out, CONTACT_SAME_AS_PREVIOUS),
            Some(i) => varint::put(out, i + CONTACT_TABLE_BASE),
            None => {
                varint::put(out, 0);
                out.extend_from_slice(&w.contact.0);
                let next = tables.contacts.len() as u64;
                tables.contacts.insert(w.contact, next);
            }
        }
        let path = encode_to_vec(&w.path);
        varint::put(out, path.len() as u64);
        out.extend_from_slice(&path);
    }
    varint::put(out, refs.len() as u64);
    for (author, seq) in &refs {
        varint::put(out, *author);
        varint::put(out, *seq);
    }
    if let Some(index) = twin.filter(|_| tag != TAG_EXPLICIT) {
        varint::put(out, index as u64);
    }
    if tag != TAG_EXISTS_TRUE {
        let value = encode_to_vec(&w.value);
        varint::put(out, value.len() as u64);
        out.extend_from_slice(&value);
    }
    Ok(())
}

// ---- decoding ------------------------------------------------------------------------------

/// Where a write goes, as sent.
enum Target {
    Explicit(Option<ContactId>, Path),
    Twin { author: u64, seq: u64, index: u64 },
}

struct RawWrite {
    target: Target,
    replaces: Vec<(u64, u64)>,
    value: Option<Value>,
}

/// One op as sent: rebuilt from its compact form, or exactly its bytes ([`FLAG_EXACT_OPS`]).
enum RawOp {
    Compact {
        hlc: Hlc,
        writes: Vec<RawWrite>,
        members: Vec<MemberChange>,
    },
    /// Decoded and sealed from its bytes (its id is theirs), author and seq checked.
    Exact(SealedOp),
}

impl RawOp {
    /// The replaced writes it names by place (none for an exact op: it names them by id).
    fn places(&self) -> impl Iterator<Item = &(u64, u64)> {
        let writes: &[RawWrite] = match self {
            RawOp::Compact { writes, .. } => writes,
            RawOp::Exact(_) => &[],
        };
        writes.iter().flat_map(|w| &w.replaces)
    }
}

struct RawSegment {
    author: DeviceId,
    format: OpFormat,
    first_seq: u64,
    anchor: Option<OpId>,
    ops: Vec<RawOp>,
    head: OpId,
    signature: Option<(PublicKey, Signature)>,
}

/// `message` (a plain segment message, as [`encode_segments`] writes it) compressed with zstd
/// as version [`COMPRESSED_VERSION`] when that makes it shorter and it inflates within
/// [`limits::INFLATE_RATIO_MAX`] and [`limits::INFLATED_BYTES_MAX`]; else `message` itself. Every decoder reads either. A
/// message that is already compressed, or too short to gain, is returned as it is.
pub fn compress(message: Vec<u8>) -> Vec<u8> {
    if message.len() < COMPRESS_FROM_BYTES
        || message.len() > limits::INFLATED_BYTES_MAX
        || message.get(MAGIC.len()) == Some(&COMPRESSED_VERSION)
    {
        return message;
    }
    let Ok(frame) = zstd::bulk::compress(&message, ZSTD_LEVEL) else {
        return message;
    };
    if inflation_allowed(message.len() as u64, frame.len()).is_err() {
        return message;
    }
    let mut out = Vec::with_capacity(frame.len() + MAGIC.len() + 1 + 5);
    out.extend_from_slice(MAGIC);
    out.push(COMPRESSED_VERSION);
    varint::put(&mut out, message.len() as u64);
    out.extend_from_slice(&frame);
    if out.len() >= message.len() {
        return message;
    }
    out
}

/// Whether a zstd frame of `frame_bytes` may inflate to `declared` bytes: at most
/// [`limits::INFLATED_BYTES_MAX`] and [`limits::INFLATE_RATIO_MAX`] times the frame. The one
/// rule the encoder keeps to, the decoder checks and a server reserves for.
fn inflation_allowed(declared: u64, frame_bytes: usize) -> Result<(), WireError> {
    if declared > limits::INFLATED_BYTES_MAX as u64 {
        return Err(WireError::TooLarge {
            what: "inflated segment message bytes",
            got: declared,
            limit: limits::INFLATED_BYTES_MAX as u64,
        });
    }
    let most = (frame_bytes as u64).saturating_mul(limits::INFLATE_RATIO_MAX);
    if declared > most {
        return Err(WireError::TooLarge {
            what: "inflated segment message bytes (at most INFLATE_RATIO_MAX per compressed byte)",
            got: declared,
            limit: most,
        });
    }
    Ok(())
}

/// The length of the plain message `bytes` holds: what a compressed one declares it inflates
/// to, read from its header (checked against the limits [`plain`] checks, not by inflating),
/// else its own length (also for a declared length the limits refuse: [`plain`] then
/// refuses the message before inflating anything).
pub fn plain_bytes(bytes: &[u8]) -> u64 {
    let mut r = Reader { input: bytes };
    let compressed = r.bytes(MAGIC.len()).is_ok_and(|m| m == MAGIC)
        && r.byte().is_ok_and(|v| v == COMPRESSED_VERSION);
    match compressed.then(|| r.varint()) {
        Some(Ok(n)) if inflation_allowed(n, r.input.len()).is_ok() => n,
        _ => bytes.len() as u64,
    }
}

/// The plain (version 1 or 2) segment message `bytes` holds: `bytes` itself, or what a
/// compressed message inflates to. The declared length is checked against
/// [`limits::INFLATED_BYTES_MAX`] and [`limits::INFLATE_RATIO_MAX`] before anything is
/// allocated for it, and the frame must inflate to exactly that many bytes of a plain message.
pub fn plain(bytes: &[u8]) -> Result<Cow<'_, [u8]>, WireError> {
    if bytes.len() > limits::MESSAGE_BYTES_MAX {
        return Err(WireError::TooLarge {
            what: "segment message bytes",
            got: bytes.len() as u64,
            limit: limits::MESSAGE_BYTES_MAX as u64,
        });
    }
    let mut r = Reader { input: bytes };
    if r.bytes(MAGIC.len())? != MAGIC {
        return Err(WireError::BadMagic);
    }
    if r.byte()? != COMPRESSED_VERSION {
        return Ok(Cow::Borrowed(bytes));
    }
    let declared = r.varint()?;
    let frame = r.input;
    inflation_allowed(declared, frame.len())?;
    // Bounded by `declared`: more output is an error, not a larger buffer.
    let inflated = zstd::bulk::decompress(frame, declared as usize).map_err(|e| {
        WireError::Framing(format!(
            "the compressed segment message does not inflate: {e}"
        ))
    })?;
    if inflated.len() as u64 != declared {
        return Err(WireError::Framing(format!(
            "the compressed segment message inflates to {} bytes, not the {declared} it declares",
            inflated.len()
        )));
    }
    if inflated.get(..MAGIC.len()) != Some(MAGIC.as_slice())
        || inflated.get(MAGIC.len()) == Some(&COMPRESSED_VERSION)
    {
        return Err(WireError::Framing(
            "the compressed segment message does not hold a plain segment message".into(),
        ));
    }
    Ok(Cow::Owned(inflated))
}

/// Whether a segment message carries any op (checked like any message: magic, version,
/// checksum, structure), without rebuilding the ops.
pub fn carries_ops(bytes: &[u8]) -> Result<bool, WireError> {
    Ok(census(bytes)?.0 > 0)
}

/// What a segment message carries, without rebuilding its ops (checked like any message:
/// magic, version, checksum, structure): how many ops, and by which authors (each once).
/// Costs the structural walk every decode starts with (it keeps about 64 bytes per compact op
/// while it runs, and each exact op decoded: a few times its bytes), not the memory of
/// rebuilt ops.
pub fn census(bytes: &[u8]) -> Result<(u64, Vec<DeviceId>), WireError> {
    let (_, segments) = parse(bytes)?;
    let ops = segments.iter().map(|s| s.ops.len() as u64).sum();
    let mut authors: Vec<DeviceId> = segments.iter().map(|s| s.author).collect();
    authors.sort_unstable();
    authors.dedup();
    Ok((ops, authors))
}

/// Strictly decodes exactly `bytes` as a `T` (re-encoding must give the same bytes).
fn decode_strict<T: bincode::Decode<()> + bincode::Encode>(bytes: &[u8]) -> Option<T> {
    decode_exact::<T>(bytes).filter(|v| encode_to_vec(v) == bytes)
}

fn parse(bytes: &[u8]) -> Result<(Vec<DeviceId>, Vec<RawSegment>), WireError> {
    let bytes = plain(bytes)?;
    let bytes = bytes.as_ref();
    let mut r = Reader { input: bytes };
    if r.bytes(MAGIC.len())? != MAGIC {
        return Err(WireError::BadMagic);
    }
    let version = r.byte()?;
    if version != 1 && version != SEGMENT_VERSION {
        return Err(WireError::UnknownVersion(version));
    }
    let Some(body_len) = bytes.len().checked_sub(CHECKSUM_BYTES) else {
        return Err(WireError::Truncated);
    };
    let (signed, sum) = bytes.split_at(body_len);
    if checksum(CHECKSUM_CONTEXT, signed) != sum {
        return Err(WireError::Checksum);
    }
    let mut r = Reader {
        input: signed.get(MAGIC.len() + 1..).unwrap_or_default(),
    };
    let n_authors = r.bounded(AUTHORS_IN_A_MESSAGE, limits::AUTHORS_PER_MESSAGE_MAX)?;
    let mut authors = Vec::new();
    for _ in 0..n_authors {
        authors.push(DeviceId(r.array()?));
    }
    let n_segments = r.bounded(SEGMENTS_IN_A_MESSAGE, limits::SEGMENTS_PER_MESSAGE_MAX)?;
    let mut contacts: Vec<ContactId> = Vec::new();
    let mut segments = Vec::new();
    for _ in 0..n_segments {
        let index = r.varint()?;
        let author = usize::try_from(index)
            .ok()
            .and_then(|i| authors.get(i))
            .copied()
            .ok_or_else(|| WireError::Framing(format!("author index {index} out of range")))?;
        let flags = if version == 1 { 0 } else { r.byte()? };
        if flags & !(FLAG_FORMAT_2 | FLAG_SIGNED | FLAG_ABSOLUTE_TIMES | FLAG_EXACT_OPS) != 0 {
            return Err(WireError::Framing(format!(
                "segment of {author}: unknown flags {flags:#04x}"
            )));
        }
        let format = if flags & FLAG_FORMAT_2 != 0 {
            OpFormat::V2
        } else {
            OpFormat::V1
        };
        let first_seq = r.varint()?;
        if first_seq == 0 {
            return Err(WireError::Framing(format!(
                "segment of {author} starts at seq 0"
            )));
        }
        let anchor = if first_seq > 1 {
            Some(OpId(r.array()?))
        } else {
            None
        };
        let exact = flags & FLAG_EXACT_OPS != 0;
        if exact && flags & FLAG_ABSOLUTE_TIMES != 0 {
            // Exact ops carry their own times: one encoding per segment.
            return Err(WireError::Framing(format!(
                "segment of {author}: flags {flags:#04x} set whole times on exact ops"
            )));
        }
        let mut wall = if exact { 0 } else { r.varint()? };
        let n_ops = r.bounded("ops in a segment", limits::OPS_PER_SEGMENT_MAX)?;
        if first_seq.checked_add(n_ops.saturating_sub(1)).is_none() {
            return Err(WireError::Framing(format!(
                "segment of {author}: {n_ops} ops from seq {first_seq} run past the largest seq"
            )));
        }
        let mut ops = Vec::new();
        for i in 0..n_ops {
            let seq = first_seq.saturating_add(i);
            let bad = |what: &str| WireError::Malformed {
                author,
                seq,
                what: what.to_owned(),
            };
            if exact {
                let len = r.bounded("op bytes", limits::OP_BYTES_MAX)?;
                let bytes = r.bytes(usize::try_from(len).map_err(|_| bad("op length"))?)?;
                let op = cardlog_core::decode_op(bytes)
                    .map_err(|e| bad(&format!("op does not decode: {e}")))?;
                if op.op().author != author || op.op().seq != seq {
                    return Err(bad(&format!(
                        "op of {} seq {} in the segment's place",
                        op.op().author,
                        op.op().seq
                    )));
                }
                if op.format() != format {
                    return Err(bad("op in another format than its segment's"));
                }
                ops.push(RawOp::Exact(op));
                continue;
            }
            if i > 0 {
                let time = r.varint()?;
                wall = if flags & FLAG_ABSOLUTE_TIMES != 0 {
                    time
                } else {
                    wall.checked_add(time)
                        .ok_or_else(|| bad("timestamp overflows"))?
                };
            }
            let counter = u32::try_from(r.varint()?).map_err(|_| bad("counter over 32 bits"))?;
            let n_writes = r.bounded("writes in an op", limits::WRITES_PER_OP_MAX)?;
            let mut writes = Vec::new();
            for _ in 0..n_writes {
                writes.push(parse_write(&mut r, &mut contacts, &bad)?);
            }
            let mut members = Vec::new();
            if n_writes == 0 && format == OpFormat::V2 {
                let n = r.bounded("member changes in an op", limits::MEMBER_CHANGES_PER_OP_MAX)?;
                for _ in 0..n {
                    let len = r.bounded("member change bytes", limits::MEMBER_CHANGE_BYTES_MAX)?;
                    let bytes = r.bytes(usize::try_from(len).map_err(|_| bad("change length"))?)?;
                    members.push(
                        decode_strict(bytes).ok_or_else(|| bad("member change does not decode"))?,
                    );
                }
            }
            ops.push(RawOp::Compact {
                hlc: Hlc {
                    wall_ms: wall,
                    counter,
                },
                writes,
                members,
            });
        }
        let head = OpId(r.array()?);
        let signature = if flags & FLAG_SIGNED != 0 {
            Some((PublicKey(r.array()?), Signature(r.array()?)))
        } else {
            None
        };
        segments.push(RawSegment {
            author,
            format,
            first_seq,
            anchor,
            ops,
            head,
            signature,
        });
    }
    if !r.input.is_empty() {
        return Err(WireError::Trailing(r.input.len()));
    }
    Ok((authors, segments))
}

fn parse_write(
    r: &mut Reader<'_>,
    contacts: &mut Vec<ContactId>,
    bad: &impl Fn(&str) -> WireError,
) -> Result<RawWrite, WireError> {
    let tag = r.byte()?;
    let explicit = match tag {
        TAG_EXPLICIT => {
            // `None`: the contact of the op's previous write, known once the op is rebuilt.
            let contact = match r.varint()? {
                CONTACT_NEW => {
                    let c = ContactId(r.array()?);
                    contacts.push(c);
                    Some(c)
                }
                CONTACT_SAME_AS_PREVIOUS => None,
                n => Some(
                    usize::try_from(n - CONTACT_TABLE_BASE)
                        .ok()
                        .and_then(|i| contacts.get(i))
                        .copied()
                        .ok_or_else(|| bad("contact index out of range"))?,
                ),
            };
            let len = r.bounded("path bytes", limits::PATH_BYTES_MAX)?;
            let bytes = r.bytes(usize::try_from(len).map_err(|_| bad("path length"))?)?;
            let path: Path = decode_strict(bytes).ok_or_else(|| bad("path does not decode"))?;
            Some((contact, path))
        }
        TAG_SAME_AS_REPLACED | TAG_EXISTS_TRUE => None,
        other => return Err(bad(&format!("unknown write tag {other}"))),
    };
    let n = r.bounded("replaced writes in a write", limits::REPLACES_PER_WRITE_MAX)?;
    let mut replaces = Vec::new();
    for _ in 0..n {
        replaces.push((r.varint()?, r.varint()?));
    }
    let target = match explicit {
        Some((c, p)) => Target::Explicit(c, p),
        None => {
            let &(author, seq) = replaces
                .first()
                .ok_or_else(|| bad("a write without path names no replaced write"))?;
            Target::Twin {
                author,
                seq,
                index: r.varint()?,
            }
        }
    };
    let value = if tag == TAG_EXISTS_TRUE {
        Some(Value::Bool(true))
    } else {
        let len = r.bounded("value bytes", limits::VALUE_BYTES_MAX)?;
        let bytes = r.bytes(usize::try_from(len).map_err(|_| bad("value length"))?)?;
        decode_strict::<Option<Value>>(bytes).ok_or_else(|| bad("value does not decode"))?
    };
    Ok(RawWrite {
        target,
        replaces,
        value,
    })
}

/// What a message decodes to: its ops, every one after the ops it depends on, and the chain-tip
/// signatures its segments carry (not yet verified: the receiver knows the authors' keys).
#[derive(Debug, Clone, Default)]
pub struct Decoded {
    /// The ops.
    pub ops: Vec<SealedOp>,
    /// One per signed segment: its author's signature of its last op.
    pub tips: Vec<SignedTip>,
    /// The authors of segments left out (their ops counted missing): a later message of the
    /// same session that continues one names ops the receiver does not get.
    pub left_out: BTreeSet<DeviceId>,
}

/// [`decode_signed_segments`] without the signatures.
pub fn decode_segments(bytes: &[u8], resolve: &impl Resolve) -> Result<Vec<SealedOp>, WireError> {
    decode_signed_segments(bytes, resolve).map(|d| d.ops)
}

/// Decodes a message into ops, in an order in which every op comes after the ops it depends
/// on (an exact op, which names ops by id, only after those of its own segment), and the tip
/// signatures it carries. Every op is rebuilt exactly, sealed (validated and
/// hashed) in its segment's op format and checked against its segment's chain and head;
/// `resolve` supplies the ops named but not carried (the receiver's own). Any fault refuses the
/// whole message (but for segments left out as [`Resolve::forked`] says, when it knows forks).
pub fn decode_signed_segments(bytes: &[u8], resolve: &impl Resolve) -> Result<Decoded, WireError> {
    decode(bytes, resolve, false).map(|(decoded, _)| decoded)
}

/// [`decode_signed_segments`] for a message that is the whole of what its sender sends (a
/// bundle): a segment with an op that names an op neither in the message nor resolvable is
/// left out whole (every op of it is counted in the second value), and the rest is decoded.
/// Its later ops could not be stored without it (a chain has no gaps), and its earlier ones
/// could not be authenticated: the segment's signature covers its head, whose id cannot be
/// computed without the named op. Every other fault still refuses the whole message.
pub fn decode_available_segments(
    bytes: &[u8],
    resolve: &impl Resolve,
) -> Result<(Decoded, usize), WireError> {
    decode(bytes, resolve, true)
}

/// [`decode_signed_segments`] as a session reads a message: with the number of ops of
/// segments left out because they were rebuilt on this receiver's branch of a chain it knows
/// to fork from the sender's ([`Resolve::forked`]); every other fault refuses the message.
pub fn decode_session_segments(
    bytes: &[u8],
    resolve: &impl Resolve,
) -> Result<(Decoded, usize), WireError> {
    decode(bytes, resolve, false)
}

/// [`decode_signed_segments`] and [`decode_available_segments`]: `partial` says whether a
/// segment that cannot be rebuilt for want of a named op is left out or refuses the message.
fn decode(
    bytes: &[u8],
    resolve: &impl Resolve,
    partial: bool,
) -> Result<(Decoded, usize), WireError> {
    let (authors, segments) = parse(bytes)?;
    // The places the message carries: a reference there names the sender's op, never one
    // the receiver holds at that place (their chains may fork).
    // (Each segment's first seq to its last, by author: a lookup is one range query.)
    let mut carried: BTreeMap<(DeviceId, u64), u64> = BTreeMap::new();
    for segment in &segments {
        let last = segment
            .first_seq
            .saturating_add(segment.ops.len() as u64)
            .saturating_sub(1);
        if carried
            .insert((segment.author, segment.first_seq), last)
            .is_some()
        {
            return Err(WireError::Framing(format!(
                "segments of {} overlap at seq {}",
                segment.author, segment.first_seq
            )));
        }
    }
    // One author's segments are disjoint (an encoder writes each op once): with overlaps,
    // the lookup below could miss a place the message carries.
    let mut previous: Option<(DeviceId, u64)> = None;
    for (&(author, first), &last) in &carried {
        if let Some((a, end)) = previous {
            if a == author && first <= end {
                return Err(WireError::Framing(format!(
                    "segments of {author} overlap at seq {first}"
                )));
            }
        }
        previous = Some((author, last));
    }
    let carries = |author: &DeviceId, seq: u64| {
        carried
            .range(..=(*author, seq))
            .next_back()
            .is_some_and(|((a, _), last)| a == author && *last >= seq)
    };
    // Chains the message itself shows forking from the receiver's: a segment continuing
    // another op than the receiver holds before it.
    let mut forked_here: std::collections::HashSet<DeviceId> = Default::default();
    for segment in &segments {
        let Some(before) = segment.first_seq.checked_sub(1).filter(|s| *s > 0) else {
            continue;
        };
        if let Some(held) = resolve.op_at(&segment.author, before)? {
            if Some(held.id()) != segment.anchor {
                forked_here.insert(segment.author);
            }
        }
    }
    let forked = |author: &DeviceId| forked_here.contains(author) || resolve.forked(author);
    let mut decoded: HashMap<(DeviceId, u64), SealedOp> = HashMap::new();
    // Ops rebuilt on an op the receiver holds in a chain it knows to fork from the sender's
    // (or on such an op of the message): they may not be the sender's.
    let mut doubtful: std::collections::HashSet<(DeviceId, u64)> = Default::default();
    let mut doubtful_segment = vec![false; segments.len()];
    let mut out = Vec::new();
    // The segment each op of `out` came from.
    let mut from_segment: Vec<usize> = Vec::new();
    // Each segment advances as far as its references allow; one that stops for an op the
    // message carries but has not rebuilt yet waits for that op, and goes on once it is
    // rebuilt. Each segment is taken up once at first and once per op it waited for, so the
    // cost is linear in the message whatever the order of its segments (rounds over every
    // segment until none advances were quadratic: 65,536 one-op segments in reverse
    // dependency order took 110 CPU-seconds).
    let mut next: Vec<usize> = vec![0; segments.len()];
    let mut prev: Vec<Option<OpId>> = segments.iter().map(|s| s.anchor).collect();
    let mut ready: std::collections::VecDeque<usize> = (0..segments.len()).collect();
    let mut waiting_for: HashMap<(DeviceId, u64), Vec<usize>> = HashMap::new();
    while let Some(si) = ready.pop_front() {
        let Some(segment) = segments.get(si) else {
            continue;
        };
        {
            let (Some(cursor), Some(chain)) = (next.get_mut(si), prev.get_mut(si)) else {
                continue;
            };
            while let Some(raw) = segment.ops.get(*cursor) {
                let seq = segment.first_seq.saturating_add(*cursor as u64);
                let found = Found {
                    authors: &authors,
                    decoded: &decoded,
                    carries: &carries,
                    resolve,
                };
                // Whether it names an op as the receiver holds it in a chain known to fork (or
                // a doubtful op of the message): then what it names may not be what the sender
                // meant, and an op that cannot be built or sealed is this receiver's doing.
                let named_in_doubt = raw.places().any(|(a, s)| {
                    let Some(author) = usize::try_from(*a).ok().and_then(|i| authors.get(i)) else {
                        return false;
                    };
                    if decoded.contains_key(&(*author, *s)) {
                        doubtful.contains(&(*author, *s))
                    } else {
                        // (A bundle carries no summary of its sender's: another device's chain
                        // it names outside itself may fork from the receiver's unseen. A
                        // segment's own chain is checked by its anchor.)
                        !carries(author, *s)
                            && (forked(author) || (partial && *author != segment.author))
                    }
                });
                // An op after a doubtful one in its segment chains to it: in doubt too.
                let named_in_doubt =
                    named_in_doubt || doubtful_segment.get(si).copied().unwrap_or(false);
                let built =
                    match raw {
                        // Its bytes are the author's: it need only continue the op before it.
                        RawOp::Exact(op) if op.op().prev == *chain => Ok(Rebuilt::Op(op.clone())),
                        RawOp::Exact(_) => Err(WireError::Malformed {
                            author: segment.author,
                            seq,
                            what: "the op does not continue the op before it".to_owned(),
                        }),
                        RawOp::Compact {
                            hlc,
                            writes,
                            members,
                        } => rebuild(segment, seq, *chain, (*hlc, writes, members), &found)
                            .and_then(|b| match b {
                                Rebuilt::Op(op) => op
                                    .seal_in(segment.format)
                                    .map(Rebuilt::Op)
                                    .map_err(|error| WireError::Op {
                                        author: segment.author,
                                        seq,
                                        error,
                                    }),
                                Rebuilt::Waits(place) => Ok(Rebuilt::Waits(place)),
                                Rebuilt::Unavailable => Ok(Rebuilt::Unavailable),
                            }),
                    };
                let sealed = match built {
                    Ok(Rebuilt::Op(b)) => b,
                    Ok(Rebuilt::Waits(place)) => {
                        waiting_for.entry(place).or_default().push(si);
                        break;
                    }
                    Ok(Rebuilt::Unavailable) => break,
                    Err(_) if named_in_doubt => {
                        // Left out below (it cannot reach its head).
                        if let Some(d) = doubtful_segment.get_mut(si) {
                            *d = true;
                        }
                        break;
                    }
                    Err(e) => return Err(e),
                };
                if named_in_doubt {
                    doubtful.insert((segment.author, seq));
                    if let Some(d) = doubtful_segment.get_mut(si) {
                        *d = true;
                    }
                }
                *chain = Some(sealed.id());
                decoded.insert((segment.author, seq), sealed.clone());
                out.push(sealed);
                from_segment.push(si);
                *cursor += 1;
                if let Some(woken) = waiting_for.remove(&(segment.author, seq)) {
                    ready.extend(woken);
                }
            }
        }
    }
    let mut left_out = vec![false; segments.len()];
    // A segment rebuilt on this receiver's branch of a forked chain, not the sender's, is left
    // out, and so is one that stopped short where a message may (a bundle) or for a doubtful
    // reference.
    for (si, segment) in segments.iter().enumerate() {
        let done = next.get(si).copied().unwrap_or_default();
        let doubted = doubtful_segment.get(si).copied().unwrap_or(false);
        let short = done < segment.ops.len();
        let off_head = prev.get(si).copied().flatten() != Some(segment.head);
        if (short && partial) || (off_head && doubted) {
            if let Some(l) = left_out.get_mut(si) {
                *l = true;
            }
        }
    }
    // The first reference of a segment that stopped short that could not be resolved.
    let unresolved = |si: usize, segment: &RawSegment| {
        let done = next.get(si).copied().unwrap_or_default();
        segment
            .ops
            .get(done)
            .into_iter()
            .flat_map(RawOp::places)
            .find_map(|(a, s)| {
                let author = usize::try_from(*a).ok().and_then(|i| authors.get(i))?;
                let known = decoded.contains_key(&(*author, *s))
                    || resolve.op_at(author, *s).ok().flatten().is_some();
                (!known).then_some((*author, *s))
            })
    };
    // A segment that stopped short naming an op of a chain known to fork that is not here (a
    // segment left out earlier in the session, or the receiver's branch lacks it), or an op
    // of a segment left out here, waits too; and so on, whatever the segments' order (each
    // segment is looked at once per segment it waits on: linear in the message).
    let mut waiting: BTreeMap<(DeviceId, u64), Vec<usize>> = BTreeMap::new();
    let mut newly: Vec<usize> = Vec::new();
    for (si, segment) in segments.iter().enumerate() {
        let done = next.get(si).copied().unwrap_or_default();
        if left_out.get(si).copied().unwrap_or(false) {
            newly.push(si);
        } else if done >= segment.ops.len() {
            continue;
        } else if let Some((a, s)) = unresolved(si, segment) {
            if forked(&a) {
                if let Some(l) = left_out.get_mut(si) {
                    *l = true;
                }
                newly.push(si);
            } else {
                waiting.entry((a, s)).or_default().push(si);
            }
        }
    }
    while let Some(sj) = newly.pop() {
        let Some(other) = segments.get(sj) else {
            continue;
        };
        let end = other.first_seq.saturating_add(other.ops.len() as u64);
        let names: Vec<(DeviceId, u64)> = waiting
            .range((other.author, other.first_seq)..(other.author, end))
            .map(|(k, _)| *k)
            .collect();
        for key in names {
            for si in waiting.remove(&key).unwrap_or_default() {
                if let Some(l) = left_out.get_mut(si).filter(|l| !**l) {
                    *l = true;
                    newly.push(si);
                }
            }
        }
    }
    for (si, segment) in segments.iter().enumerate() {
        if left_out.get(si).copied().unwrap_or(false) {
            continue;
        }
        let done = next.get(si).copied().unwrap_or_default();
        let seq = segment.first_seq.saturating_add(done as u64);
        if done < segment.ops.len() {
            let (target_author, target_seq) =
                unresolved(si, segment).unwrap_or((segment.author, seq));
            return Err(WireError::Unresolved {
                author: segment.author,
                seq,
                target_author,
                target_seq,
            });
        }
        if prev.get(si).copied().flatten() != Some(segment.head) {
            return Err(WireError::HeadMismatch {
                author: segment.author,
                first: segment.first_seq,
                last: segment
                    .first_seq
                    .saturating_add(segment.ops.len() as u64)
                    .saturating_sub(1),
            });
        }
    }
    let left = |si: usize| left_out.get(si).copied().unwrap_or(false);
    let missing: usize = segments
        .iter()
        .enumerate()
        .filter(|(si, _)| left(*si))
        .map(|(_, segment)| segment.ops.len())
        .sum();
    if missing > 0 {
        // An op of another segment that named one of these stays: it is counted missing where
        // it is applied, for want of the op it names.
        let mut kept = from_segment.iter().map(|si| !left(*si));
        out.retain(|_| kept.next().unwrap_or(true));
    }
    let tips = segments
        .iter()
        .enumerate()
        .filter(|(si, _)| !left(*si))
        .filter_map(|(_, segment)| {
            let (key, signature) = segment.signature?;
            Some(SignedTip {
                author: segment.author,
                key,
                seq: segment
                    .first_seq
                    .saturating_add(segment.ops.len() as u64)
                    .saturating_sub(1),
                op: segment.head,
                signature,
            })
        })
        .collect();
    let left_out = segments
        .iter()
        .enumerate()
        .filter(|(si, _)| left(*si))
        .map(|(_, segment)| segment.author)
        .collect();
    Ok((
        Decoded {
            ops: out,
            tips,
            left_out,
        },
        missing,
    ))
}

/// Where a rebuilt op's references are looked up: the message's ops decoded so far, then
/// (for places the message does not carry) the receiver's.
struct Found<'a, R, C> {
    authors: &'a [DeviceId],
    decoded: &'a HashMap<(DeviceId, u64), SealedOp>,
    carries: &'a C,
    resolve: &'a R,
}

/// What [`rebuild`] made of one op: `T` is the op, unsealed or sealed.
enum Rebuilt<T> {
    /// The op.
    Op(T),
    /// It names an op the message carries that is not rebuilt yet (author, seq).
    Waits((DeviceId, u64)),
    /// It names an op neither the message carries nor the receiver holds.
    Unavailable,
}

/// Rebuilds one op, or says which op it names is not available yet. (Whether what it names
/// may not be what the sender meant is the caller's to judge, from the references alone:
/// `named_in_doubt`.)
fn rebuild<R: Resolve, C: Fn(&DeviceId, u64) -> bool>(
    segment: &RawSegment,
    seq: u64,
    prev: Option<OpId>,
    (hlc, raw_writes, members): (Hlc, &[RawWrite], &[MemberChange]),
    found: &Found<'_, R, C>,
) -> Result<Rebuilt<Op>, WireError> {
    #[cfg(test)]
    tests::REBUILDS.with(|n| n.set(n.get() + 1));
    let bad = |what: String| WireError::Malformed {
        author: segment.author,
        seq,
        what,
    };
    let lookup = |a: u64, s: u64| -> Result<Rebuilt<SealedOp>, WireError> {
        let author = usize::try_from(a)
            .ok()
            .and_then(|i| found.authors.get(i))
            .ok_or_else(|| bad(format!("author index {a} out of range")))?;
        if let Some(op) = found.decoded.get(&(*author, s)) {
            return Ok(Rebuilt::Op(op.clone()));
        }
        if (found.carries)(author, s) {
            // Not rebuilt yet: the sender's op there, not the receiver's.
            return Ok(Rebuilt::Waits((*author, s)));
        }
        Ok(match found.resolve.op_at(author, s)? {
            Some(op) => Rebuilt::Op(op),
            None => Rebuilt::Unavailable,
        })
    };
    let mut writes = Vec::with_capacity(raw_writes.len());
    for w in raw_writes {
        let mut replaces = Vec::with_capacity(w.replaces.len());
        let mut twin = None;
        for (i, (a, s)) in w.replaces.iter().enumerate() {
            let op = match lookup(*a, *s)? {
                Rebuilt::Op(op) => op,
                Rebuilt::Waits(place) => return Ok(Rebuilt::Waits(place)),
                Rebuilt::Unavailable => return Ok(Rebuilt::Unavailable),
            };
            if i == 0 {
                if let Target::Twin { index, .. } = &w.target {
                    let write = usize::try_from(*index)
                        .ok()
                        .and_then(|i| op.op().writes.get(i))
                        .ok_or_else(|| bad(format!("write index {index} out of range")))?;
                    twin = Some((write.contact, write.path.clone()));
                }
            }
            replaces.push(op.id());
        }
        let (contact, path) = match (&w.target, twin) {
            (Target::Explicit(Some(c), p), _) => (*c, p.clone()),
            (Target::Explicit(None, p), _) => {
                let c = writes
                    .last()
                    .map(|prev: &Write| prev.contact)
                    .ok_or_else(|| bad("the first write refers to a previous write".into()))?;
                (c, p.clone())
            }
            (Target::Twin { .. }, Some(t)) => t,
            (Target::Twin { author, seq, .. }, None) => {
                return Err(bad(format!("names no write of op {author}/{seq}")))
            }
        };
        replaces.sort_unstable();
        writes.push(Write {
            contact,
            path,
            value: w.value.clone(),
            replaces,
        });
    }
    let op = Op {
        author: segment.author,
        seq,
        prev,
        hlc,
        writes,
        members: members.to_vec(),
    };
    Ok(Rebuilt::Op(op))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]

    use std::cell::Cell;
    use std::sync::Arc;

    use cardlog_core::{Contact, ContactId, Device, FakeClock, Field};

    use super::*;

    thread_local! {
        /// Ops this thread tried to rebuild: the decoder's work, counted without a clock.
        pub(super) static REBUILDS: Cell<u64> = const { Cell::new(0) };
    }

    struct Nothing;

    impl Locate for Nothing {
        fn locate(&self, _: &OpId) -> Result<Option<SealedOp>, WireError> {
            Ok(None)
        }
    }

    impl Resolve for Nothing {
        fn op_at(&self, _: &DeviceId, _: u64) -> Result<Option<SealedOp>, WireError> {
            Ok(None)
        }
    }

    /// `n` devices edit one note in turn, each replacing the one before, the first device
    /// with the largest id: a message carries them in reverse dependency order (segments go
    /// by author id), each one-op segment waiting for the next.
    fn reverse_chain(n: u16) -> Vec<SealedOp> {
        let clock = Arc::new(FakeClock::new(1_795_338_000_000));
        let id = |k: u16| {
            let mut id = [0u8; 16];
            id[..2].copy_from_slice(&(n - k).to_be_bytes());
            DeviceId(id)
        };
        let mut all = Device::new(DeviceId([0xff; 16]), clock.clone());
        let mut ops = Vec::new();
        for k in 0..n {
            let mut d = Device::new(id(k), clock.clone());
            all.push_to(&mut d).unwrap();
            let op = if k == 0 {
                let mut c = Contact::new(ContactId([7; 16]));
                c.set(Field::Note, "0");
                d.create(&c).unwrap()
            } else {
                d.edit(ContactId([7; 16]), |c| {
                    c.set(Field::Note, format!("{k}"));
                })
                .unwrap()
                .unwrap()
            };
            all.receive(op.clone()).unwrap();
            ops.push(op);
            clock.advance_ms(1);
        }
        ops
    }

    /// Ops held by (author, seq): a receiver.
    struct Holds(Vec<SealedOp>);

    impl Resolve for Holds {
        fn op_at(&self, author: &DeviceId, seq: u64) -> Result<Option<SealedOp>, WireError> {
            Ok(self
                .0
                .iter()
                .find(|op| op.op().author == *author && op.op().seq == seq)
                .cloned())
        }
    }

    impl Locate for Holds {
        fn locate(&self, id: &OpId) -> Result<Option<SealedOp>, WireError> {
            Ok(self.0.iter().find(|op| op.id() == *id).cloned())
        }
    }

    /// One device's chain forked at seq 2: the note `a` set, then `b` replacing it (what the
    /// sender holds), and `c` in place of `a` (what the receiver holds). Returns (the shared
    /// create, a, b, c).
    fn forked_chain() -> (SealedOp, SealedOp, SealedOp, SealedOp) {
        let clock = Arc::new(FakeClock::new(1_795_338_000_000));
        let me = DeviceId([3; 16]);
        let mut sender = Device::new(me, clock.clone());
        let mut c = Contact::new(ContactId([7; 16]));
        c.set(Field::Note, "0");
        let create = sender.create(&c).unwrap();
        let mut restored = sender.clone();
        let note = |d: &mut Device, v: &str| {
            d.edit(ContactId([7; 16]), |c| {
                c.set(Field::Note, v);
            })
            .unwrap()
            .unwrap()
        };
        clock.advance_ms(1);
        let a = note(&mut sender, "a");
        clock.advance_ms(1);
        let b = note(&mut sender, "b");
        clock.advance_ms(1);
        let other = note(&mut restored, "c");
        (create, a, b, other)
    }

    /// A branch sent by place is rebuilt on the receiver's own op at the place it names and
    /// left out; sent exact, it decodes to the sender's op.
    #[test]
    fn exact_ops_are_the_senders_where_the_receiver_holds_another_op_at_the_place_they_name() {
        let (create, a, b, other) = forked_chain();
        assert_eq!(a.op().seq, other.op().seq);
        let sender = Holds(vec![create.clone(), a.clone(), b.clone()]);
        let receiver = Holds(vec![create, other]);
        // `b` alone, continuing `a`: by place it names seq 2, which the receiver holds as
        // another op, so it rebuilds to another op than `b` and is left out.
        let by_place = encode_segments(std::slice::from_ref(&b), &sender).unwrap();
        let (decoded, missing) = decode(&by_place, &receiver, true).unwrap();
        assert!(decoded.ops.is_empty(), "{:?}", decoded.ops);
        assert_eq!(missing, 1);
        // As its exact bytes it is the sender's op, naming `a` by its id.
        let exact = encode_exact_segments(std::slice::from_ref(&b), &sender).unwrap();
        let decoded = decode_segments(&exact, &receiver).unwrap();
        assert_eq!(decoded, vec![b.clone()]);
        assert_eq!(decoded[0].op().writes[0].replaces, vec![a.id()]);
        // And compressed, as sessions send it.
        assert_eq!(
            decode_segments(&compress(exact), &receiver).unwrap(),
            vec![b]
        );
    }

    /// Exact ops for some authors only: their segments carry exact ops, the others' stay
    /// compact, and the message decodes to the sender's ops on a receiver holding another op
    /// at a place the exact ones name.
    #[test]
    fn only_the_listed_authors_segments_go_as_exact_ops() {
        let (create, a, b, other) = forked_chain();
        let clock = Arc::new(FakeClock::new(1_795_338_100_000));
        let mut them = Device::new(DeviceId([4; 16]), clock);
        let theirs = them.create(&Contact::new(ContactId([8; 16]))).unwrap();
        let sender = Holds(vec![create.clone(), a, b.clone(), theirs.clone()]);
        let receiver = Holds(vec![create, other]);
        let listed: BTreeSet<DeviceId> = [b.op().author].into();
        let bytes =
            encode_segments_exact_for(&[b.clone(), theirs.clone()], &sender, &listed).unwrap();
        let (_, segments) = parse(&bytes).unwrap();
        assert_eq!(segments.len(), 2);
        for segment in &segments {
            let exact = segment.ops.iter().all(|op| matches!(op, RawOp::Exact(_)));
            let compact = segment
                .ops
                .iter()
                .all(|op| matches!(op, RawOp::Compact { .. }));
            if segment.author == b.op().author {
                assert!(exact, "the listed author's segment is not exact");
            } else {
                assert!(compact, "another author's segment is not compact");
            }
        }
        let mut decoded = decode_segments(&bytes, &receiver).unwrap();
        decoded.sort_by_key(|op| op.op().author);
        assert_eq!(decoded, vec![b.clone(), theirs.clone()]);
        // None listed: by place, `b` is rebuilt on the receiver's op and left out.
        let none =
            encode_segments_exact_for(&[b.clone(), theirs.clone()], &sender, &BTreeSet::new())
                .unwrap();
        assert_eq!(
            none,
            encode_segments(&[b, theirs.clone()], &sender).unwrap()
        );
        let (decoded, missing) = decode(&none, &receiver, true).unwrap();
        assert_eq!((decoded.ops, missing), (vec![theirs], 1));
    }

    /// Exact ops swapped, replaced by a fork's op, altered, or flagged with whole times beside
    /// them: each message refused (checksums made good, so the segment checks are what refuse).
    #[test]
    fn an_exact_op_out_of_its_place_or_altered_is_refused() {
        let (create, a, b, other) = forked_chain();
        let sender = Holds(vec![create.clone(), a.clone(), b.clone()]);
        let good = encode_exact_segments(&[a.clone(), b.clone()], &sender).unwrap();
        assert_eq!(
            decode_segments(&good, &Nothing).unwrap(),
            vec![a.clone(), b.clone()]
        );
        // The message with `b`'s bytes in place of `a`'s (and the checksum made good): an
        // op of another seq than its place.
        let swap = |from: &SealedOp, to: &SealedOp| {
            let at = good
                .windows(from.bytes().len())
                .position(|w| w == from.bytes())
                .unwrap();
            // The length prefix before the op's bytes, then the bytes.
            let mut prefix = Vec::new();
            varint::put(&mut prefix, from.bytes().len() as u64);
            let at = at - prefix.len();
            let mut bad = good[..at].to_vec();
            varint::put(&mut bad, to.bytes().len() as u64);
            bad.extend_from_slice(to.bytes());
            let rest = at + prefix.len() + from.bytes().len();
            bad.extend_from_slice(&good[rest..good.len() - CHECKSUM_BYTES]);
            let sum = checksum(CHECKSUM_CONTEXT, &bad);
            bad.extend_from_slice(&sum);
            bad
        };
        let misplaced = swap(&a, &b);
        let refused = decode_segments(&misplaced, &Nothing);
        assert!(
            matches!(refused, Err(WireError::Malformed { seq: 2, .. })),
            "{refused:?}"
        );
        // `other` in place of `a`: the right place, but `b` does not continue it.
        let forked = swap(&a, &other);
        let refused = decode_segments(&forked, &Nothing);
        assert!(
            matches!(refused, Err(WireError::Malformed { seq: 3, .. })),
            "{refused:?}"
        );
        // A byte of an op's body changed (checksum made good): it no longer decodes
        // canonically, or it hashes to another id than the head.
        let at = good
            .windows(b.bytes().len())
            .position(|w| w == b.bytes())
            .unwrap();
        let mut altered = good[..good.len() - CHECKSUM_BYTES].to_vec();
        let last = at + b.bytes().len() - 1;
        altered[last] ^= 1;
        let sum = checksum(CHECKSUM_CONTEXT, &altered);
        altered.extend_from_slice(&sum);
        assert!(decode_segments(&altered, &Nothing).is_err());
        // Whole times (bit 2) beside exact ops: a second encoding of the segment, refused.
        // (Flags follow magic, version, the author table of one and the segment count.)
        let at = MAGIC.len() + 1 + 1 + 16 + 1 + 1;
        assert_eq!(good[at], FLAG_FORMAT_2 | FLAG_EXACT_OPS);
        let mut both = good[..good.len() - CHECKSUM_BYTES].to_vec();
        both[at] |= FLAG_ABSOLUTE_TIMES;
        let sum = checksum(CHECKSUM_CONTEXT, &both);
        both.extend_from_slice(&sum);
        let refused = decode_segments(&both, &Nothing);
        assert!(matches!(refused, Err(WireError::Framing(_))), "{refused:?}");
    }

    #[test]
    fn decoding_is_linear_whatever_the_order_of_the_segments() {
        let n = 300;
        let ops = reverse_chain(n);
        let bytes = encode_segments(&ops, &Nothing).unwrap();
        REBUILDS.with(|r| r.set(0));
        let decoded = decode_segments(&bytes, &Nothing).unwrap();
        let rebuilds = REBUILDS.with(Cell::get);
        // Every op is rebuilt, dependencies first.
        let ids: Vec<OpId> = decoded.iter().map(SealedOp::id).collect();
        assert_eq!(ids, ops.iter().map(SealedOp::id).collect::<Vec<_>>());
        // Each segment is tried once at first and once when the op it waits for is rebuilt
        // (rounds over every segment tried about n²/2 = 45,000).
        assert!(
            rebuilds <= 2 * u64::from(n),
            "{rebuilds} rebuilds for {n} ops"
        );
    }
}

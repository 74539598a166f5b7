//! The sans-IO sync session: a state value that says which message to send next and takes the
//! messages that arrive. It does no I/O itself; [`crate::transport::run`] drives it over any
//! [`crate::transport::Transport`].
//!
//! A session between an initiator I and a responder R (docs/SYNC.md):
//!
//! ```text
//! I → R  Hello   (I's summary, I's calibrated time)
//! R → I  Hello   (R's summary, R's calibrated time: I calibrates its clock from it)
//! R → I  Ops…    (what I lacks, dependencies first, in chunks; the last one says so)
//! I → R  Ops…    (what R lacks)
//! I → R  Ack     (I's summary after applying)
//! R → I  Ack     (R's summary after applying: both now hold the same ops)
//! ```
//!
//! Only one side writes at a time, so no transport can deadlock on full buffers. Every `Ops`
//! message is verified whole (checksum, strict decode, recomputed ids, chains, references)
//! and applied atomically before the next is read: an interrupted session keeps what was
//! applied, and the next session sends only what is still missing.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet, VecDeque};

use cardlog_core::{DeviceId, OpId, SealedOp, SignedTip};

use crate::error::{AuthError, SyncError};
use crate::quota::{Pushed, Quota};
use crate::receive::{
    apply_held, finish, forks_in_summary, reported_forks, sent_whole, Held, View,
};
use crate::store::{PeerBook, TakenBack};
use crate::wire::message::{self, Fork, Message, Summary};
use crate::wire::segment::{compress, encode_exact_segments, encode_segments_exact_for};

/// The clock calibration a session made.
#[derive(serde::Serialize, Debug, Clone, Copy, PartialEq, Eq)]
pub struct Calibration {
    /// The offset now applied to the raw wall clock, in ms (positive: the peer is ahead).
    pub offset_ms: i64,
    /// The measured round trip, in ms.
    pub rtt_ms: u64,
}

/// How far a sync session (or a bundle import) has got, counted from its start: what a
/// progress display shows ([`crate::PeerBook::progress`] receives it as it changes).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SyncProgress {
    /// Ops received so far: stored, already held, or waiting for a dependency.
    pub received_ops: u64,
    /// Ops the peer's hello holds beyond this side (per author, its last seq past this
    /// side's): about what is to come; `None` before the hello (and for a bundle, whose ops
    /// are all given at once). A fork or a restore can bring more.
    pub expected_ops: Option<u64>,
    /// Ops sent so far.
    pub sent_ops: u64,
    /// Bytes of the session's messages received so far (before decryption: the final
    /// report of an encrypted session counts what the transport carried, a little more).
    pub bytes_received: u64,
    /// Bytes of the session's messages sent so far, counted alike.
    pub bytes_sent: u64,
}

/// What a session did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SyncReport {
    /// The peer's device id, once known.
    pub peer: Option<DeviceId>,
    /// Ops sent.
    pub sent_ops: usize,
    /// Ops received and stored.
    pub stored: usize,
    /// Ops received that were already held.
    pub duplicates: usize,
    /// Ops received whose dependencies were absent (not stored).
    pub missing: usize,
    /// Authors whose received ops were refused (not a member, no valid signature…), each
    /// with why; none of their ops were stored.
    pub refused: Vec<cardlog_core::Refusal>,
    /// Of the ops stored, those void (kept without effect: see [`crate::Applied::void`]).
    pub void: usize,
    /// Bytes sent: of an encrypted session ([`crate::transport::run_secure`]) the messages the
    /// transport carried, handshake and encryption included (not a transport's own framing,
    /// such as TCP's 4-byte lengths); of a session in the clear, its messages.
    pub bytes_sent: u64,
    /// Bytes received, counted alike.
    pub bytes_received: u64,
    /// Of the bytes both ways, those of the handshake ([`crate::transport::run_secure`]; 0
    /// for a session in the clear, [`crate::transport::run`]).
    pub handshake_bytes: u64,
    /// Of which summary bytes (both `Hello`s and `Ack`s, both ways).
    pub summary_bytes: u64,
    /// Forks found between the two sides, as seen from here.
    pub forks: Vec<Fork>,
    /// The clock calibration made (initiator only).
    pub calibration: Option<Calibration>,
    /// This replica's own chain taken back from the peer, after a restore in place
    /// (docs/SEMANTICS.md, "Restores").
    pub taken_back: Option<TakenBack>,
    /// Whether the peer holds this replica's own chain otherwise than it does (a restore lost
    /// ops) and they are not taken back yet: the next session takes them.
    pub restored: bool,
    /// Authors whose branch held here their author gave up (it re-issued every op of it on
    /// the branch the peer holds): the branch was withdrawn and the peer's stored
    /// (docs/SEMANTICS.md, "Restores").
    pub settled: Vec<DeviceId>,
    /// Whether both sides ended with the same summary.
    pub converged: bool,
    /// Times the server answered busy before this session was served
    /// ([`crate::transport::sync_tcp`]).
    pub busy_retries: u32,
}

impl serde::Serialize for SyncReport {
    /// `{peer, sent_ops, received_ops, stored, duplicates, missing, bytes_sent,
    /// bytes_received, summary_bytes, handshake_bytes, forks, refused, void, calibration,
    /// taken_back, restored, settled, converged, busy_retries}`: ids as hex, `received_ops` the sum of
    /// stored, duplicates and missing, each refusal its sentence (docs/CLI.md, `sync --json`).
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = s.serialize_map(Some(19))?;
        map.serialize_entry("peer", &self.peer)?;
        map.serialize_entry("sent_ops", &self.sent_ops)?;
        map.serialize_entry(
            "received_ops",
            &(self.stored + self.duplicates + self.missing),
        )?;
        map.serialize_entry("stored", &self.stored)?;
        map.serialize_entry("duplicates", &self.duplicates)?;
        map.serialize_entry("missing", &self.missing)?;
        map.serialize_entry("bytes_sent", &self.bytes_sent)?;
        map.serialize_entry("bytes_received", &self.bytes_received)?;
        map.serialize_entry("summary_bytes", &self.summary_bytes)?;
        map.serialize_entry("handshake_bytes", &self.handshake_bytes)?;
        map.serialize_entry("forks", &self.forks)?;
        map.serialize_entry("refused", &self.refused)?;
        map.serialize_entry("void", &self.void)?;
        map.serialize_entry("calibration", &self.calibration)?;
        map.serialize_entry("taken_back", &self.taken_back)?;
        map.serialize_entry("restored", &self.restored)?;
        map.serialize_entry("settled", &self.settled)?;
        map.serialize_entry("converged", &self.converged)?;
        map.serialize_entry("busy_retries", &self.busy_retries)?;
        map.end()
    }
}

/// Which side of a session this is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Opens the session and calibrates its clock to the responder's.
    Initiator,
    /// Answers (a served replica, a relay).
    Responder,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Start,
    AwaitHello,
    AwaitOps,
    Sending,
    AwaitAck,
    Done,
    Failed,
}

/// Ops per `Ops` message at most; a message also closes once its ops reach
/// [`CHUNK_BYTES`], so messages stay far below the message size limit. The receiver applies
/// each message as one store call, whose memory grows with it: measured on a 30,000-op full
/// sync, 16,384 ops per message peaked at 621 MB and took 4.2 s, 1,024 at 236 MB and 3.5 s,
/// for 0.14 % more bytes (docs/PERFORMANCE.md).
pub const CHUNK_OPS: usize = 1_024;
/// Op bytes per `Ops` message at most (the compact encoding is smaller than the ops; exact
/// ops add a length each).
pub const CHUNK_BYTES: usize = 8 << 20;

/// One sync session. See the module docs.
#[derive(Debug)]
pub struct Session {
    role: Role,
    /// Ops the peer's hello holds beyond this side, once it came ([`SyncProgress`]).
    expected: Option<u64>,
    state: State,
    hello_sent_ms: u64,
    peer_summary: Option<Summary>,
    outbox: VecDeque<Out>,
    forks: BTreeSet<Fork>,
    acked: bool,
    chunk_ops: usize,
    /// Received ops held back until the peer's last `Ops` message.
    held: Held,
    /// The peer the handshake authenticated ([`crate::secure`]): its hello must name it.
    authenticated: Option<DeviceId>,
    /// The authenticated peer, if it may not push (a read-only member): its ops are refused.
    read_only_peer: Option<DeviceId>,
    /// Whether this side sends ops (false for a read-only member).
    pushes: bool,
    /// Whether this side's hello left its own chain out ([`PeerBook::restored`]): the peer
    /// then sends all of it.
    omitted_own: bool,
    /// Authors whose chains fork between the peer's hello and what this side holds: this side
    /// sends the peer all it holds of each (the peer may hold a branch their author gave up).
    forked_in_hello: BTreeSet<DeviceId>,
    /// What the peer may push in this session (a served session's), and what it pushed.
    quota: Option<(Quota, Pushed)>,
    report: SyncReport,
}

/// Most branches of other devices' chains owed back ([`PeerBook::owed`]) sent in one
/// session.
const OWED_PER_SESSION: usize = 16;

/// A message waiting in a session's outbox.
#[derive(Debug)]
enum Out {
    /// Encoded; `true` for a message carrying a summary (counted as summary bytes).
    Ready(Vec<u8>, bool),
    /// `Ops` messages not built yet: each is built when it is next to go, so a sender holds
    /// one message's ops at a time, not everything a full sync sends.
    Ops(Outgoing),
}

/// A store's lookups for encoding a kept branch, or covers ([`PeerBook::cover`]): their
/// signatures are their own.
pub(crate) struct BranchTip<'a, S> {
    pub(crate) view: View<'a, S>,
    pub(crate) tips: Vec<SignedTip>,
}

impl<S: PeerBook> crate::wire::segment::Locate for BranchTip<'_, S> {
    fn locate(&self, id: &OpId) -> Result<Option<SealedOp>, crate::wire::WireError> {
        self.view.locate(id)
    }

    fn tip_signature(
        &self,
        author: &DeviceId,
        seq: u64,
    ) -> Result<Option<SignedTip>, crate::wire::WireError> {
        if let Some(tip) = self
            .tips
            .iter()
            .find(|t| t.author == *author && t.seq == seq)
        {
            return Ok(Some(*tip));
        }
        self.view.tip_signature(author, seq)
    }
}

/// The ops still to send in `Ops` messages.
#[derive(Debug)]
struct Outgoing {
    /// Ops fetched and not sent yet (all of them, for a store without places).
    ops: VecDeque<SealedOp>,
    /// Places of ops not fetched yet ([`SyncStore::places_since`]).
    places: VecDeque<u64>,
    /// Authors whose chains fork between us: their ops are left out.
    forked: BTreeSet<DeviceId>,
    /// Authors whose chains go whole though the peer's hello names them, because they fork
    /// between the two sides ([`sent_whole`]): their segments go as exact ops, since their
    /// ops may name places the peer holds other ops at (seed 0xc79f5 of base 817000).
    exact: BTreeSet<DeviceId>,
    /// The peer's own chain from this seq on, left out: a branch of it kept here goes
    /// instead, in a message of its own ([`PeerBook::kept_branch`]).
    cut: Option<(DeviceId, u64)>,
    /// Forks to report, in the first message only (taken by it).
    forks: Vec<Fork>,
    /// Branches of other devices' chains owed back ([`PeerBook::owed`]), as encoded
    /// segments with their op counts: each goes in a message of its own after the ordinary
    /// ones, so what they name has arrived and they change nothing the ordinary ones carry.
    owed: VecDeque<(Vec<u8>, usize)>,
}

impl Outgoing {
    fn is_empty(&self) -> bool {
        self.ops.is_empty() && self.places.is_empty() && self.owed.is_empty()
    }

    /// Whether `op` stays out of these messages (a forked author's, or past the cut).
    fn leaves_out(&self, op: &SealedOp) -> bool {
        let o = op.op();
        self.forked.contains(&o.author)
            || self
                .cut
                .is_some_and(|(author, from)| o.author == author && o.seq >= from)
    }

    /// Fetches up to a message's worth of ops, leaving out forked authors'.
    fn fill<S: PeerBook>(
        &mut self,
        store: &S,
        chunk_ops: usize,
    ) -> Result<(), SyncError<S::Error>> {
        while self.ops.len() < chunk_ops && !self.places.is_empty() {
            let n = (chunk_ops - self.ops.len()).min(self.places.len());
            let places: Vec<u64> = self.places.drain(..n).collect();
            let fetched = store.ops_at_places(&places).map_err(SyncError::Store)?;
            if fetched.len() != places.len() {
                return Err(SyncError::StoreContract(format!(
                    "the store gave {} ops for {} places it listed",
                    fetched.len(),
                    places.len()
                )));
            }
            let kept: Vec<SealedOp> = fetched
                .into_iter()
                .filter(|op| !self.leaves_out(op))
                .collect();
            self.ops.extend(kept);
        }
        Ok(())
    }

    /// The next `Ops` message: at most `chunk_ops` ops and about [`CHUNK_BYTES`] of them (at
    /// least one op while any is left; a single empty message when there is nothing to send).
    /// Returns it with the number of ops it carries.
    fn next<S: PeerBook>(
        &mut self,
        store: &S,
        chunk_ops: usize,
    ) -> Result<(Vec<u8>, usize), SyncError<S::Error>> {
        self.fill(store, chunk_ops)?;
        if self.ops.is_empty() && self.places.is_empty() {
            if let Some((segments, sent)) = self.owed.pop_front() {
                let message = message::encode(&Message::Ops {
                    last: self.owed.is_empty(),
                    forks: std::mem::take(&mut self.forks),
                    segments,
                });
                return Ok((message, sent));
            }
        }
        let mut take = 0;
        let mut bytes = 0;
        for op in &self.ops {
            if take > 0 && (take >= chunk_ops || bytes + op.bytes().len() > CHUNK_BYTES) {
                break;
            }
            bytes += op.bytes().len();
            take += 1;
        }
        let mut unsigned = BTreeSet::new();
        if store.keeps_signatures() {
            (take, unsigned) = self.signed_end(store, take, chunk_ops)?;
        }
        let mut ops: Vec<SealedOp> = self.ops.drain(..take).collect();
        let mut covers = Vec::new();
        if !unsigned.is_empty() && self.ops.is_empty() && self.places.is_empty() {
            covers = with_covers(store, &mut ops, &mut unsigned)?;
            ops = signed_only(store, ops, unsigned)?;
        }
        let mut exact = Cow::Borrowed(&self.exact);
        if !covers.is_empty() {
            exact.to_mut().extend(covers.iter().map(|t| t.author));
        }
        let located = BranchTip {
            view: View(store),
            tips: covers,
        };
        let segments = compress(encode_segments_exact_for(&ops, &located, &exact)?);
        let sent = ops.len();
        drop(ops);
        // Whether this message is the last: if only places are left, they may all be forked
        // authors' ops, so fetch the next message's now rather than send an empty one later.
        if self.ops.is_empty() {
            self.fill(store, chunk_ops)?;
        }
        let message = message::encode(&Message::Ops {
            last: self.is_empty(),
            forks: std::mem::take(&mut self.forks),
            segments,
        });
        Ok((message, sent))
    }
}

impl Outgoing {
    /// Where a message of the first `take` ops should end so that each author's last op in
    /// it is one whose signature the store holds: a segment's ops are accepted only under a
    /// signature of its last op or a later one (docs/SYNC.md, "Signatures"). The ops are in
    /// the store's order, every op after its dependencies, so taking more of them never
    /// needs ops further on. Gives up after [`EXTEND_OPS_MAX`] more ops (or
    /// [`EXTEND_BYTES_MAX`] more bytes), or at the end of what
    /// there is to send: returns the authors whose last op in the message is still unsigned.
    fn signed_end<S: PeerBook>(
        &mut self,
        store: &S,
        mut take: usize,
        chunk_ops: usize,
    ) -> Result<(usize, BTreeSet<DeviceId>), SyncError<S::Error>> {
        let me = store.device_id();
        let signed = |op: &SealedOp| -> Result<bool, SyncError<S::Error>> {
            let o = op.op();
            // A replica that keeps signatures signs its own chain at any op it holds, on
            // demand: asking would sign each op the extension passes.
            if o.author == me && store.keeps_signatures() {
                return Ok(true);
            }
            Ok(store
                .tip_signature(&o.author, o.seq)
                .map_err(SyncError::Store)?
                .is_some())
        };
        let mut last: BTreeMap<DeviceId, &SealedOp> = BTreeMap::new();
        for op in self.ops.iter().take(take) {
            last.insert(op.op().author, op);
        }
        let mut unsigned = BTreeSet::new();
        for (author, op) in last {
            if !signed(op)? {
                unsigned.insert(author);
            }
        }
        let cap = take + EXTEND_OPS_MAX;
        let mut extended = 0usize;
        while !unsigned.is_empty() && take < cap {
            if take >= self.ops.len() {
                self.fill(store, take + chunk_ops)?;
            }
            let Some(op) = self.ops.get(take) else {
                break;
            };
            extended += op.bytes().len();
            if extended > EXTEND_BYTES_MAX {
                break;
            }
            take += 1;
            if signed(op)? {
                unsigned.remove(&op.op().author);
            } else {
                unsigned.insert(op.op().author);
            }
        }
        Ok((take, unsigned))
    }
}

/// The covers ([`PeerBook::cover`]) of the tails of `unsigned` authors in the last message's
/// (or a bundle's) `ops`: where the store has one for an author's last op in it, the cover's
/// ops go after the message's (as exact ops: they may name ops the peer does not hold, given
/// up) and the author leaves `unsigned`. The receiver admits the tail under the cover's
/// signature, which covers exactly those bytes, and keeps what of the cover it cannot store
/// to prove the tail in turn (docs/SYNC.md, "Signatures"). At most [`COVER_OPS_MAX`] ops and
/// [`COVER_BYTES_MAX`] bytes a cover, [`EXTEND_BYTES_MAX`] in all (a tail whose cover does
/// not fit is left out, as without one). Returns the covers' signatures.
pub(crate) fn with_covers<S: PeerBook>(
    store: &S,
    ops: &mut Vec<SealedOp>,
    unsigned: &mut BTreeSet<DeviceId>,
) -> Result<Vec<SignedTip>, SyncError<S::Error>> {
    let mut last: BTreeMap<DeviceId, (u64, OpId)> = BTreeMap::new();
    for op in ops.iter() {
        let o = op.op();
        if unsigned.contains(&o.author) {
            last.insert(o.author, (o.seq, op.id()));
        }
    }
    let mut tips = Vec::new();
    let mut room = EXTEND_BYTES_MAX;
    for (author, (seq, id)) in last {
        let Some((cover, tip)) = store.cover(&author, seq, id).map_err(SyncError::Store)? else {
            continue;
        };
        let bytes: usize = cover.iter().map(|op| op.bytes().len()).sum();
        if tip.author != author
            || cover.last().is_none_or(|op| op.id() != tip.op)
            || cover.len() > COVER_OPS_MAX
            || bytes > COVER_BYTES_MAX.min(room)
        {
            continue;
        }
        room -= bytes;
        ops.extend(cover);
        tips.push(tip);
        unsigned.remove(&author);
    }
    Ok(tips)
}

/// The last message's `ops` without what no signature held covers: the tails of the
/// `unsigned` authors above their last op signed here (their signature was of an op this
/// replica withdrew since), and what names a left-out op or follows one in its chain, until
/// every author's last op left in is signed. The receiver admits a segment's ops only under
/// the signature of its last op, and a reference to an op neither carried nor held refuses
/// the message: so the signed ops go in, and the rest comes with its author's next session.
pub(crate) fn signed_only<S: PeerBook>(
    store: &S,
    mut ops: Vec<SealedOp>,
    mut unsigned: BTreeSet<DeviceId>,
) -> Result<Vec<SealedOp>, SyncError<S::Error>> {
    let me = store.device_id();
    let mut signed: BTreeMap<(DeviceId, u64), bool> = BTreeMap::new();
    let mut is_signed = |op: &SealedOp| -> Result<bool, SyncError<S::Error>> {
        let o = op.op();
        if o.author == me {
            return Ok(true);
        }
        if let Some(known) = signed.get(&(o.author, o.seq)) {
            return Ok(*known);
        }
        let known = store
            .tip_signature(&o.author, o.seq)
            .map_err(SyncError::Store)?
            .is_some_and(|t| t.op == op.id());
        signed.insert((o.author, o.seq), known);
        Ok(known)
    };
    loop {
        // Each unsigned author's last signed op in the message.
        let mut up_to: BTreeMap<DeviceId, u64> = BTreeMap::new();
        for op in &ops {
            let o = op.op();
            if unsigned.contains(&o.author) && is_signed(op)? {
                up_to.insert(o.author, o.seq);
            }
        }
        let mut left_out: BTreeSet<OpId> = BTreeSet::new();
        let mut cut: BTreeMap<DeviceId, u64> = BTreeMap::new();
        let mut kept = Vec::with_capacity(ops.len());
        // In message order, which is dependency order: one pass finds every dependent.
        for op in ops {
            let o = op.op();
            let out = (unsigned.contains(&o.author)
                && up_to.get(&o.author).is_none_or(|s| o.seq > *s))
                || cut.get(&o.author).is_some_and(|s| o.seq > *s)
                || o.writes
                    .iter()
                    .flat_map(|w| &w.replaces)
                    .any(|r| left_out.contains(r));
            if out {
                left_out.insert(op.id());
                let at = cut.entry(o.author).or_insert(o.seq);
                *at = (*at).min(o.seq);
            } else {
                kept.push(op);
            }
        }
        // Authors that lost ops to that and whose last op left in is not signed.
        let mut last: BTreeMap<DeviceId, &SealedOp> = BTreeMap::new();
        for op in &kept {
            last.insert(op.op().author, op);
        }
        let mut more = false;
        for (author, op) in last {
            if cut.contains_key(&author) && !unsigned.contains(&author) && !is_signed(op)? {
                unsigned.insert(author);
                more = true;
            }
        }
        ops = kept;
        if !more {
            return Ok(ops);
        }
    }
}

/// Most ops of a cover sent ([`with_covers`]): a receiver keeps no more (the store's
/// `COVER_OPS_MAX`).
const COVER_OPS_MAX: usize = 1024;
/// Most bytes of a cover's ops sent: a receiver keeps no more (the store's `COVER_BYTES_MAX`).
/// A message carries at most [`EXTEND_BYTES_MAX`] of covers in all.
const COVER_BYTES_MAX: usize = 1 << 20;

/// How many ops past its size a message may grow to end at signed ops.
const EXTEND_OPS_MAX: usize = 1 << 16;
/// How many bytes of ops past its size a message may grow to end at signed ops: with
/// [`CHUNK_BYTES`], well under the quarter of a receiver's budget one message may take
/// (16 MiB). Past either bound the message goes with unsigned tails, which the receiver holds
/// back within the session until a later message brings their signatures (docs/SYNC.md).
const EXTEND_BYTES_MAX: usize = 4 << 20;

impl Session {
    /// A new session on one side.
    pub fn new(role: Role) -> Self {
        Self {
            role,
            expected: None,
            state: State::Start,
            hello_sent_ms: 0,
            peer_summary: None,
            outbox: VecDeque::new(),
            forks: BTreeSet::new(),
            acked: false,
            chunk_ops: CHUNK_OPS,
            held: Held::default(),
            authenticated: None,
            read_only_peer: None,
            pushes: true,
            omitted_own: false,
            forked_in_hello: BTreeSet::new(),
            quota: None,
            report: SyncReport::default(),
        }
    }

    /// The session of an authenticated peer ([`crate::secure`]): its hello must name
    /// `peer`; its ops are refused unless `peer_pushes`; this side sends ops only if `pushes`.
    pub fn with_peer(mut self, peer: DeviceId, peer_pushes: bool, pushes: bool) -> Self {
        self.authenticated = Some(peer);
        self.report.peer = Some(peer);
        self.read_only_peer = (!peer_pushes).then_some(peer);
        self.pushes = pushes;
        self
    }

    /// Sends at most `n` ops (at least 1) per `Ops` message instead of [`CHUNK_OPS`]. Each
    /// message is applied atomically on arrival, so smaller messages lose less work to a
    /// broken connection.
    pub fn with_chunk_ops(mut self, n: usize) -> Self {
        self.chunk_ops = n.max(1);
        self
    }

    /// Limits what the peer may push in this session ([`Quota`]): an `Ops` message that would
    /// go over it is refused whole, before its ops are rebuilt or applied, with
    /// [`SyncError::OverQuota`].
    pub fn with_quota(mut self, quota: Quota) -> Self {
        self.quota = Some((quota, Pushed::default()));
        self
    }

    /// Which side this is.
    pub fn role(&self) -> Role {
        self.role
    }

    /// Whether the session has ended successfully.
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// What the session did so far.
    pub fn report(&self) -> &SyncReport {
        &self.report
    }

    /// How far the session has got, for a progress display.
    pub fn progress(&self) -> SyncProgress {
        let r = &self.report;
        SyncProgress {
            received_ops: (r.stored + r.duplicates + r.missing) as u64,
            expected_ops: self.expected,
            sent_ops: r.sent_ops as u64,
            bytes_received: r.bytes_received,
            bytes_sent: r.bytes_sent,
        }
    }

    /// The message to send next, if it is this side's turn; `None` means wait for the peer
    /// (or, once [`Session::is_done`], the end). An error (the store could not give the ops
    /// to send) fails the session; send [`Session::abort`] to tell the peer why.
    pub fn next_message<S: PeerBook>(
        &mut self,
        store: &mut S,
    ) -> Result<Option<Vec<u8>>, SyncError<S::Error>> {
        match self.state {
            State::Start if self.role == Role::Initiator => {
                self.hello_sent_ms = store.wall_ms();
                self.state = State::AwaitHello;
                let bytes = self.hello(store);
                self.report.summary_bytes += bytes.len() as u64;
                Ok(Some(self.sent(bytes)))
            }
            State::Sending => {
                let bytes = match self.outbox.front_mut() {
                    None => return Ok(None),
                    Some(Out::Ops(outgoing)) => {
                        // Ops already taken from the stream would be missing from any later
                        // message, so a failure here ends the session.
                        let (bytes, ops) = match outgoing.next(&*store, self.chunk_ops) {
                            Ok(built) => built,
                            Err(e) => {
                                self.state = State::Failed;
                                return Err(e);
                            }
                        };
                        self.report.sent_ops += ops;
                        if outgoing.is_empty() {
                            self.outbox.pop_front();
                        }
                        bytes
                    }
                    Some(Out::Ready(bytes, summary)) => {
                        let bytes = std::mem::take(bytes);
                        if *summary {
                            self.report.summary_bytes += bytes.len() as u64;
                        }
                        self.outbox.pop_front();
                        bytes
                    }
                };
                if self.outbox.is_empty() {
                    self.state = match self.role {
                        Role::Initiator => State::AwaitAck,
                        // The responder's turn ends either after its ops (then it waits for
                        // the initiator's) or with its final ack.
                        Role::Responder if self.acked => State::Done,
                        Role::Responder => State::AwaitOps,
                    };
                }
                Ok(Some(self.sent(bytes)))
            }
            _ => Ok(None),
        }
    }

    /// Takes one message from the peer. On error the session has failed; what was applied
    /// before stays applied. Send [`Session::abort`] to tell the peer why.
    pub fn receive<S: PeerBook>(
        &mut self,
        bytes: &[u8],
        store: &mut S,
    ) -> Result<(), SyncError<S::Error>> {
        self.report.bytes_received += bytes.len() as u64;
        let result = self.receive_inner(bytes, store);
        if result.is_err() {
            self.state = State::Failed;
        }
        result
    }

    /// A message telling the peer this side gives up, and why.
    pub fn abort(&mut self, reason: &str) -> Vec<u8> {
        self.state = State::Failed;
        message::encode(&Message::Abort {
            reason: reason.to_owned(),
        })
    }

    fn sent(&mut self, bytes: Vec<u8>) -> Vec<u8> {
        self.report.bytes_sent += bytes.len() as u64;
        bytes
    }

    fn hello<S: PeerBook>(&mut self, store: &S) -> Vec<u8> {
        let mut summary = store.summary();
        if store.restored() {
            // A peer holds this side's chain otherwise: asked for all of it.
            self.omitted_own |= summary.remove(&store.device_id()).is_some();
        }

        message::encode(&Message::Hello {
            replica: store.device_id(),
            wall_ms: store.calibrated_ms(),
            summary,
        })
    }

    fn receive_inner<S: PeerBook>(
        &mut self,
        bytes: &[u8],
        store: &mut S,
    ) -> Result<(), SyncError<S::Error>> {
        let message = message::decode(bytes)?;
        match message {
            Message::Abort { reason } => return Err(SyncError::PeerAborted(reason)),
            // A server that holds all of this device's sessions (transport::serve) says so
            // first, before anything is exchanged; anywhere else it is out of place.
            Message::Busy { retry_after_ms }
                if self.role == Role::Initiator && self.state == State::AwaitHello =>
            {
                return Err(SyncError::Busy(retry_after_ms))
            }
            _ => {}
        }
        match (self.state, message) {
            (
                State::Start,
                Message::Hello {
                    replica, summary, ..
                },
            ) if self.role == Role::Responder => {
                self.report.summary_bytes += bytes.len() as u64;
                self.meet(store, replica, &summary)?;
                let hello = self.hello(store);
                self.outbox.push_back(Out::Ready(hello, true));
                self.queue_ops(store, &summary)?;
                self.state = State::Sending;
                Ok(())
            }
            (
                State::AwaitHello,
                Message::Hello {
                    replica,
                    wall_ms,
                    summary,
                },
            ) => {
                let received = store.wall_ms();
                self.report.summary_bytes += bytes.len() as u64;
                self.meet(store, replica, &summary)?;
                let offset = store
                    .calibrate(replica, wall_ms, self.hello_sent_ms, received)
                    .map_err(SyncError::Store)?;
                self.report.calibration = offset.map(|offset_ms| Calibration {
                    offset_ms,
                    rtt_ms: received.saturating_sub(self.hello_sent_ms),
                });
                self.state = State::AwaitOps;
                Ok(())
            }
            (
                State::AwaitOps,
                Message::Ops {
                    last,
                    forks,
                    segments,
                },
            ) => {
                // What the message carries, walked once for both checks (only when one applies).
                if self.read_only_peer.is_some() || self.quota.is_some() {
                    let (ops, authors) = crate::wire::segment::census(&segments)?;
                    if let Some(peer) = self.read_only_peer.filter(|_| ops > 0) {
                        return Err(SyncError::Auth(AuthError::ReadOnlyPush(peer)));
                    }
                    if let Some((quota, pushed)) = &mut self.quota {
                        pushed
                            .count(
                                quota,
                                ops,
                                pushed_bytes(bytes, &segments),
                                &authors,
                                &store.summary(),
                            )
                            .map_err(SyncError::OverQuota)?;
                    }
                }
                let mut flipped = reported_forks(store, &forks)?;
                // Whatever is recorded, references into these chains are in doubt.
                self.held
                    .known_forks
                    .extend(flipped.iter().map(|f| f.author));
                // A fork of the peer's own chain is its restore: it takes it back.
                flipped.retain(|f| Some(f.author) != self.report.peer);
                if !flipped.is_empty() {
                    store.record_forks(&flipped).map_err(SyncError::Store)?;
                    self.forks.extend(flipped);
                }
                // References into chains that fork between the two sides may name ops this
                // side holds otherwise: segments built on them wait (left out, missing).
                self.held
                    .known_forks
                    .extend(self.forks.iter().map(|f| f.author));
                if store.restored() {
                    self.held.known_forks.insert(store.device_id());
                }
                let received = apply_held(store, &segments, &mut self.held, last)?;
                self.report.stored += received.applied.stored;
                self.report.duplicates += received.applied.duplicates;
                self.report.void += received.applied.void;
                self.report.missing += received.applied.missing;
                self.report.refused.extend(received.applied.refused);
                self.forks.extend(received.forks);
                if last {
                    // The peer has sent all it holds of this side's chain and of the chains
                    // this side's hello left out.
                    let own = self.held.has_own() || self.omitted_own;
                    let peer = self.peer_holding_own(store);
                    let finished = finish(store, &mut self.held, own, peer)?;
                    // Every session's end is an attempt for own edits waiting for a copy.
                    store.reissue_waiting().map_err(SyncError::Store)?;
                    if finished.taken_back.is_some() {
                        let me = store.device_id();
                        self.forks.retain(|f| f.author != me);
                        self.report.taken_back = finished.taken_back;
                    }
                    self.forks.retain(|f| !finished.settled.contains(&f.author));
                    self.report.settled.extend(finished.settled);
                    let rest = finished.rest;
                    self.report.stored += rest.stored;
                    self.report.duplicates += rest.duplicates;
                    self.report.void += rest.void;
                    self.report.missing += rest.missing;
                    self.report.refused.extend(rest.refused);
                }
                if last {
                    // (Read once at the end, not per message: a take back may have cleared it.)
                    self.report.restored = store.restored();
                }
                self.report.forks = self.forks.iter().copied().collect();
                if last {
                    match self.role {
                        Role::Initiator => {
                            let peer = self.peer_summary.clone().unwrap_or_default();
                            self.queue_ops(store, &peer)?;
                            self.outbox.push_back(Out::Ready(
                                message::encode(&Message::Ack {
                                    summary: store.summary(),
                                }),
                                true,
                            ));
                            self.state = State::Sending;
                        }
                        Role::Responder => self.state = State::AwaitAck,
                    }
                }
                Ok(())
            }
            (State::AwaitAck, Message::Ack { summary }) => {
                self.report.summary_bytes += bytes.len() as u64;
                let mine = store.summary();
                self.report.converged = store.converged_with(&summary);
                self.acked = true;
                if let Some(peer) = self.report.peer {
                    store
                        .record_peer(peer, &summary)
                        .map_err(SyncError::Store)?;
                }
                match self.role {
                    Role::Initiator => self.state = State::Done,
                    Role::Responder => {
                        self.outbox.push_back(Out::Ready(
                            message::encode(&Message::Ack { summary: mine }),
                            true,
                        ));
                        self.state = State::Sending;
                    }
                }
                Ok(())
            }
            (state, message) => Err(SyncError::Protocol(format!(
                "unexpected {} message while {}",
                message.kind(),
                match state {
                    State::Start | State::AwaitHello => "waiting for hello",
                    State::AwaitOps => "waiting for ops",
                    State::AwaitAck => "waiting for the ack",
                    State::Sending => "it was this side's turn",
                    State::Done => "the session had ended",
                    State::Failed => "the session had failed",
                }
            ))),
        }
    }

    /// An `Ops` message (not the last) carrying the branch of the peer's own chain kept here
    /// ([`PeerBook::kept_branch`]), with the seq it starts at and its first op; `None` when
    /// none is kept, or it cannot be encoded (an op it names is not held here: the peer gets
    /// it from another).
    fn kept_branch_message<S: PeerBook>(&self, store: &S) -> Option<(Vec<u8>, u64, OpId)> {
        let peer = self.report.peer?;
        let (branch, tip) = store.kept_branch(&peer)?;
        let first = branch.first()?;
        let (from, first) = (first.op().seq, first.id());
        // The peer's hello ends on the branch: it holds it, and the chain held here (what it
        // may have lost) goes as usual.
        let holds = self.peer_summary.as_ref().and_then(|s| s.get(&peer));
        if holds.is_some_and(|t| branch.iter().any(|op| op.id() == t.op)) {
            return None;
        }
        Some((branch_message(store, &branch, tip)?, from, first))
    }

    /// The branches of other devices' chains this side owes ([`PeerBook::owed`]) that go to
    /// this peer, as encoded segments with their op counts: at most one per author (the one
    /// starting lowest), at most [`OWED_PER_SESSION`], the peer's own first. Each goes in a
    /// message of its own after the ordinary ones ([`Outgoing::next`]):
    /// - to their author, when its hello shows its chain (not left out: a take back goes
    ///   first) ending on an op not of the branch, the hello shows no fork of it, and this
    ///   side holds no more of it than the hello shows: nothing else of that chain goes in
    ///   the session, so the branch is the only one of its own the author sets apart;
    /// - when the branch continues nothing and neither its hello nor this side holds any of
    ///   the author's chain: to the author, or to another peer (not for a branch handed on
    ///   for its author alone), which hands it on;
    /// - with the ops below it that only its signature proves ([`crate::Owed::proved`]) from
    ///   the first the author lacks, to the author whose hello shows its chain, or none of it
    ///   (left out or not), ending among them or just below them, with no fork of it;
    /// - to another peer (not for a branch handed on for its author alone), when its hello
    ///   shows the author's chain as this side holds it, ending on an op not of the branch and
    ///   no lower than the op it continues: the branch then forks from what the peer holds,
    ///   and nothing else of that chain goes in this session.
    ///
    /// A branch that cannot be encoded (over the limits) is left out.
    fn owed_segments<S: PeerBook>(&self, store: &S) -> VecDeque<(Vec<u8>, usize)> {
        let (Some(summary), Some(peer)) = (self.peer_summary.as_ref(), self.report.peer) else {
            return VecDeque::new();
        };
        let mine = store.summary();
        let mut owed: Vec<crate::store::Owed> = store
            .owed(&peer)
            .into_iter()
            .filter_map(|mut owed| {
                let author = owed.tip.author;
                let held = mine.get(&author);
                // The ops held here below the branch that only its signature proves, from the
                // first the author lacks, to the author whose hello shows its chain (or none of
                // it) ending among them or just below them, with no fork of it: this side
                // holds none of its chain above them.
                let below = owed.proved.first().map(|op| op.op().seq.saturating_sub(1));
                let top = owed.proved.last().map(|op| op.op().seq);
                let shown = summary.get(&author).map_or(0, |t| t.seq);
                let proving = author == peer
                    && below.is_some_and(|b| b <= shown)
                    && top.is_some_and(|t| shown < t)
                    && held.map(|h| h.seq) == top
                    && !self.forks.iter().any(|f| f.author == peer);
                if proving {
                    let mut ops = std::mem::take(&mut owed.proved);
                    ops.retain(|op| op.op().seq > shown);
                    ops.append(&mut owed.ops);
                    owed.ops = ops;
                    return Some(owed);
                }
                owed.proved.clear();
                // A branch that continues nothing, where neither side holds any of its
                // author's chain: to the author (its hello shows none of it), or to another
                // peer, which hands it on (seed 0xc7774 of base 817000: the laptop's only op,
                // its rename of the phone's contact, reached the tablet alone, which withdrew
                // it with the phone's branch after a restore lost it on the laptop; the laptop
                // meets the phone, never the tablet).
                let continues_nothing = owed.ops.first().is_some_and(|op| op.op().seq == 1);
                if !summary.contains_key(&author)
                    && held.is_none()
                    && continues_nothing
                    && (author != peer || !self.forks.iter().any(|f| f.author == peer))
                    && (author == peer || !owed.author_only)
                {
                    return Some(owed);
                }
                let theirs = summary.get(&author)?;
                if owed.ops.iter().any(|op| op.id() == theirs.op) {
                    return None;
                }
                if author == peer {
                    return (held.is_none_or(|h| h.seq <= theirs.seq)
                        && !self.forks.iter().any(|f| f.author == peer))
                    .then_some(owed);
                }
                let base = owed
                    .ops
                    .first()
                    .map_or(0, |op| op.op().seq.saturating_sub(1));
                (!owed.author_only && held == Some(theirs) && theirs.seq >= base).then_some(owed)
            })
            .collect();
        let first_seq = |owed: &crate::store::Owed| owed.ops.first().map_or(0, |op| op.op().seq);
        owed.sort_by_key(|owed| (owed.tip.author != peer, owed.tip.author, first_seq(owed)));
        owed.dedup_by_key(|owed| owed.tip.author);
        owed.into_iter()
            .filter_map(|owed| Some((branch_segments(store, &owed.ops, owed.tip)?, owed.ops.len())))
            .take(OWED_PER_SESSION)
            .collect()
    }

    /// The peer, with the seq up to which its hello said it holds this side's chain.
    fn peer_holding_own<S: PeerBook>(&self, store: &S) -> Option<(DeviceId, u64)> {
        let me = store.device_id();
        let holds = self
            .peer_summary
            .as_ref()
            .and_then(|s| s.get(&me))
            .map_or(0, |t| t.seq);
        self.report.peer.map(|p| (p, holds))
    }

    /// Takes the peer's hello: who it is, what it holds, where our chains fork.
    fn meet<S: PeerBook>(
        &mut self,
        store: &mut S,
        peer: DeviceId,
        summary: &Summary,
    ) -> Result<(), SyncError<S::Error>> {
        if peer == store.device_id() {
            return Err(SyncError::SamePeer(peer));
        }
        if let Some(authenticated) = self.authenticated {
            if peer != authenticated {
                return Err(SyncError::Protocol(format!(
                    "the hello names device {peer}, but the handshake authenticated {authenticated}"
                )));
            }
        }
        self.report.peer = Some(peer);
        let mine = store.summary();
        self.expected = Some(
            summary
                .iter()
                .map(|(author, tip)| {
                    tip.seq
                        .saturating_sub(mine.get(author).map_or(0, |t| t.seq))
                })
                .fold(0u64, u64::saturating_add),
        );
        // A hello without the peer's own chain: it holds none, or it was restored and waits to
        // take its chain back, sending none of it. Ops naming that chain past what this side
        // holds then wait (left out, missing), as for any chain in doubt.
        if !summary.contains_key(&peer) {
            self.held.known_forks.insert(peer);
        }
        let forks = forks_in_summary(store, summary)?;
        let me = store.device_id();
        let lost = forks
            .iter()
            .filter(|f| f.author == me && !store.withdrew(&f.theirs))
            .map(|f| f.seq)
            .max();
        if let Some(at) = lost.filter(|_| !store.restored()) {
            // The peer holds an op of this side's chain where it holds another (and not one
            // it withdrew): a restore lost ops. The next hello asks for all of the chain.
            store.mark_restored(peer, at).map_err(SyncError::Store)?;
        }
        self.report.restored = store.restored();
        if !forks.is_empty() {
            // The peer's own chain forking is the peer's restore: it takes it back from what
            // this side sends, so it is not recorded here.
            // Nor is a branch this side gave up (it withdrew the peer's op there).
            let recorded: Vec<Fork> = forks
                .iter()
                .filter(|f| f.author != peer && !(f.author == me && store.withdrew(&f.theirs)))
                .copied()
                .collect();
            store.record_forks(&recorded).map_err(SyncError::Store)?;
            // This side's own chain forking there is a branch it gave up only if every op the
            // peer holds there is one it withdrew: then the peer gets all of the chain too,
            // to settle.
            self.forked_in_hello.extend(
                forks
                    .iter()
                    .map(|f| f.author)
                    .filter(|a| *a != me || lost.is_none()),
            );
            self.forks.extend(forks);
            self.report.forks = self.forks.iter().copied().collect();
        }
        store.record_peer(peer, summary).map_err(SyncError::Store)?;
        self.peer_summary = Some(summary.clone());
        Ok(())
    }

    /// Queues the `Ops` messages carrying what a peer holding `peer` lacks, leaving out the
    /// authors whose chains fork between us (the peer could not apply them).
    fn queue_ops<S: PeerBook>(
        &mut self,
        store: &S,
        peer: &Summary,
    ) -> Result<(), SyncError<S::Error>> {
        let mut forked: BTreeSet<DeviceId> = self.forks.iter().map(|f| f.author).collect();
        let mut asked = peer.clone();
        // A chain forking between the peer's hello and what this side holds: the peer gets
        // all of it as held here, as exact ops. If it is the peer's own, a restore lost the
        // peer ops, to take back; if another's, the peer may hold a branch its author gave
        // up, to settle.
        for author in &self.forked_in_hello {
            if forked.remove(author) {
                asked.remove(author);
            }
        }
        // So too a fork of another device's chain that the peer's messages showed (an
        // initiator queues after the responder's) where its hello shows that chain beyond
        // what this side holds, so the hello could not show the fork here: the peer may hold
        // a branch its author gave up, and settles it only with the chain as held here (seed
        // 0xc7faa of base 819000: the laptop held the removed tablet's rename and void tag,
        // both built on the phone's branch given up; the phone, holding only the tablet's
        // re-issued rename, took the laptop to be ahead on that chain and sent none of it).
        let me = store.device_id();
        let mine = store.summary();
        for fork in &self.forks {
            let author = fork.author;
            let ahead = peer
                .get(&author)
                .is_some_and(|t| mine.get(&author).is_none_or(|m| t.seq > m.seq));
            if author != me && Some(author) != self.report.peer && ahead && forked.remove(&author) {
                asked.remove(&author);
            }
        }
        // A fork of this side's own chain where the peer holds only ops this side withdrew is
        // a branch it gave up, kept there: the peer gets this side's chain (its copies with
        // it) and drops the branch. Leaving it out would leave both waiting for good.
        if self
            .forks
            .iter()
            .filter(|f| f.author == me)
            .all(|f| store.withdrew(&f.theirs))
        {
            forked.remove(&me);
        }
        // So too where the peer holds that branch further than this side's chain goes (its
        // hello ends on an op this side withdrew, past this side's tip, where no fork shows)
        // while this side waits to re-issue edits for copies only the peer's settling brings:
        // it gets all of the chain, or it would take itself to be ahead and never settle.
        if store.waits_to_reissue() && peer.get(&me).is_some_and(|t| store.withdrew(&t.op)) {
            asked.remove(&me);
        }
        // A chain this side holds signed proof of forking (a branch kept) that the peer holds
        // otherwise than this side: it may hold the other branch without either side seeing
        // it in the hellos (its part goes further than this side's). It gets all of the
        // chain too: it keeps what it cannot settle, for the author to take back. (Only signed
        // proof counts here; a fork merely claimed, in a hello or a message, sends the chain
        // whole only as above, once per session.)
        for author in store.branch_authors() {
            let Some(theirs) = peer.get(&author) else {
                continue;
            };
            // (A peer merely behind on the chain held here gets what it lacks, as usual.)
            let agrees = mine.get(&author).is_some_and(|t| t.seq >= theirs.seq)
                && store
                    .op_at(&author, theirs.seq)
                    .map_err(SyncError::Store)?
                    .is_some_and(|op| op.id() == theirs.op);
            if author != store.device_id() && !agrees {
                asked.remove(&author);
            }
        }
        // This side's own chain forks from a peer's: none of it goes out until taken back.
        if store.restored() {
            forked.insert(store.device_id());
        }
        // Every chain the hello names that goes whole (it forks between the two sides) goes
        // as exact ops.
        let exact = sent_whole(peer, &asked);
        let peer = &asked;
        // A branch of the peer's own chain kept here: if the peer was restored from a backup,
        // what it lost. It goes first, in its own message; the peer's chain from there is
        // left out of the rest.
        let mut cut = None;
        let mut branch_fork = None;
        if let Some((message, from, first)) = self
            .pushes
            .then(|| self.kept_branch_message(store))
            .flatten()
        {
            cut = self.report.peer.map(|p| (p, from));
            // Unless its hello shows an op of its chain that the chain held here does not
            // hold: then it may hold the branch and have lost this one, and both go (it takes
            // back the one it lacks).
            let shown = self
                .report
                .peer
                .and_then(|p| Some((p, *self.peer_summary.as_ref()?.get(&p)?)));
            // (Nor is there one where its hello leaves its chain out: it found it was restored
            // and asks for all of it, and it may have lost either branch.)
            match shown {
                Some((peer, tip)) => {
                    let held = store
                        .op_at(&peer, tip.seq)
                        .map_err(SyncError::Store)?
                        .is_some_and(|op| op.id() == tip.op);
                    if !held {
                        cut = None;
                    }
                }
                None => cut = None,
            }
            // With the cut, ops naming the peer's chain past it name the chain held here, not
            // the branch the peer now holds: the fork goes with the messages, so the peer
            // takes references into its chain as in doubt (segments built on them wait).
            if let Some((peer, from)) = cut {
                if let Some(ours) = store.op_at(&peer, from).map_err(SyncError::Store)? {
                    branch_fork = Some(Fork {
                        author: peer,
                        seq: from,
                        ours: ours.id(),
                        theirs: first,
                    });
                }
            }
            self.outbox.push_back(Out::Ready(message, false));
        }
        let (ops, places) = if !self.pushes {
            // A read-only member sends one empty, last `Ops` message.
            (VecDeque::new(), VecDeque::new())
        } else {
            match store.places_since(peer).map_err(SyncError::Store)? {
                Some(places) => (VecDeque::new(), places.into()),
                None => (
                    store.ops_since(peer).map_err(SyncError::Store)?.into(),
                    VecDeque::new(),
                ),
            }
        };
        let mut outgoing = Outgoing {
            ops,
            places,
            forked,
            exact,
            cut,
            // Forks are for the peer's information; a peer reads at most this many.
            forks: branch_fork
                .into_iter()
                .chain(self.forks.iter().copied())
                .take(message::limits::FORKS_PER_MESSAGE_MAX as usize)
                .collect(),
            // Edits withdrawn here that their author may have lost (restored in place).
            owed: if self.pushes {
                self.owed_segments(store)
            } else {
                VecDeque::new()
            },
        };
        let ops = std::mem::take(&mut outgoing.ops);
        outgoing.ops = ops
            .into_iter()
            .filter(|op| !outgoing.leaves_out(op))
            .collect();
        self.outbox.push_back(Out::Ops(outgoing));
        Ok(())
    }
}

/// An `Ops` message (not the last) carrying `branch` (ops of one author's chain, in chain
/// order) with its author's signature `tip` of the last; `None` when it cannot be encoded (an
/// op it names is not held here).
fn branch_message<S: PeerBook>(store: &S, branch: &[SealedOp], tip: SignedTip) -> Option<Vec<u8>> {
    Some(message::encode(&Message::Ops {
        last: false,
        forks: Vec::new(),
        segments: branch_segments(store, branch, tip)?,
    }))
}

/// `branch` (ops of one author's chain, in chain order) with its author's signature `tip` of
/// the last, as compressed segments of exact ops (the chain forks from the peer's, so the
/// places its ops name may hold other ops there); `None` when it cannot be encoded.
fn branch_segments<S: PeerBook>(store: &S, branch: &[SealedOp], tip: SignedTip) -> Option<Vec<u8>> {
    let located = BranchTip {
        view: View(store),
        tips: vec![tip],
    };
    Some(compress(encode_exact_segments(branch, &located).ok()?))
}

/// The bytes an `Ops` message counts against a [`Quota`]: the message with its segments as
/// they inflate (a compressed message pushes what it inflates to).
fn pushed_bytes(message: &[u8], segments: &[u8]) -> u64 {
    (message.len() as u64)
        .saturating_sub(segments.len() as u64)
        .saturating_add(crate::wire::segment::plain_bytes(segments))
}

/// How many bytes more than its own length receiving `bytes` takes: what the segments of a
/// compressed `Ops` message inflate to beyond their compressed length (0 for anything else,
/// and for a message that does not decode, which [`Session::receive`] refuses). A transport
/// driver holds that much more of a server's receive budget ([`crate::transport::Transport::hold`]).
pub fn inflation(bytes: &[u8]) -> u64 {
    match message::decode(bytes) {
        Ok(Message::Ops { segments, .. }) => {
            crate::wire::segment::plain_bytes(&segments).saturating_sub(segments.len() as u64)
        }
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn a_compressed_ops_message_counts_what_its_segments_inflate_to() {
        // A frame of 100 bytes may declare up to 800 (INFLATE_RATIO_MAX).
        let ops = |declared: u64| {
            let mut segments = b"CLSG\x03".to_vec();
            crate::wire::varint::put(&mut segments, declared);
            segments.extend_from_slice(&[0; 100]);
            let message = message::encode(&Message::Ops {
                last: true,
                forks: Vec::new(),
                segments: segments.clone(),
            });
            (message, segments)
        };
        let (message, segments) = ops(800);
        let extra = 800 - segments.len() as u64;
        assert_eq!(inflation(&message), extra);
        assert_eq!(
            pushed_bytes(&message, &segments),
            message.len() as u64 + extra
        );
        // Declaring more than the limits allow reserves nothing: the decoder refuses it.
        let (message, segments) = ops(801);
        assert_eq!(inflation(&message), 0);
        assert_eq!(pushed_bytes(&message, &segments), message.len() as u64);
        // A plain message, or another kind, inflates to nothing more.
        let plain = message::encode(&Message::Ops {
            last: true,
            forks: Vec::new(),
            segments: b"CLSG\x02".to_vec(),
        });
        assert_eq!(inflation(&plain), 0);
        assert_eq!(pushed_bytes(&plain, b"CLSG\x02"), plain.len() as u64);
        let abort = message::encode(&Message::Abort {
            reason: "no".into(),
        });
        assert_eq!(inflation(&abort), 0);
    }
}

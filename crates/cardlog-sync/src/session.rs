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

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use cardlog_core::{OpId, ReplicaId, SealedOp};

use crate::message::{self, Fork, Message, Summary};
use crate::segment::{decode_segments, encode_segments, Locate, Resolve};
use crate::WireError;

/// What a replica must offer to take part in a session. `cardlog::Replica` implements it over
/// its store; tests and the simulator implement it in memory.
pub trait SyncStore {
    /// Errors of the store itself.
    type Error: std::error::Error + Send + Sync + 'static;
    /// The device id this replica writes as.
    fn replica_id(&self) -> ReplicaId;
    /// Per author, the last op held.
    fn summary(&self) -> Summary;
    /// The ops a peer holding `peer` lacks, in an order where dependencies come first.
    fn ops_since(&self, peer: &Summary) -> Result<Vec<SealedOp>, Self::Error>;
    /// Where the ops [`SyncStore::ops_since`] returns are kept (store-defined places, such as
    /// log offsets), in the same order, for a store that can read them back a few at a time
    /// with [`SyncStore::ops_at_places`]. A session then holds one message's ops at a time
    /// instead of all it sends. `None` (the default) means the store cannot, and the session
    /// takes `ops_since` whole.
    fn places_since(&self, peer: &Summary) -> Result<Option<Vec<u64>>, Self::Error> {
        let _ = peer;
        Ok(None)
    }
    /// The ops at `places` (as [`SyncStore::places_since`] gave them), in that order. Only
    /// called on a store whose `places_since` returns places; the default returns none, which
    /// the session reports as an error.
    fn ops_at_places(&self, places: &[u64]) -> Result<Vec<SealedOp>, Self::Error> {
        let _ = places;
        Ok(Vec::new())
    }
    /// The op with this id, if held.
    fn op_by_id(&self, id: &OpId) -> Result<Option<SealedOp>, Self::Error>;
    /// The op `author` wrote at `seq`, if held.
    fn op_at(&self, author: &ReplicaId, seq: u64) -> Result<Option<SealedOp>, Self::Error>;
    /// Stores verified ops in one atomic, durable step: all of them (less duplicates and ops
    /// whose dependencies are absent) or, if any is refused, none.
    fn apply(&mut self, ops: &[SealedOp]) -> Result<Applied, Self::Error>;
    /// Whether an error of [`SyncStore::apply`] is a refusal of the ops by the replay rules
    /// (the peer's fault: a clock regression, a write replacing what it cannot replace)
    /// rather than a failure of the store.
    fn is_refusal(error: &Self::Error) -> bool {
        let _ = error;
        false
    }
    /// Raw wall-clock time in ms (for round-trip measurement).
    fn wall_ms(&self) -> u64;
    /// Calibrated wall-clock time in ms (what the peer is told).
    fn calibrated_ms(&self) -> u64;
    /// Calibrates the clock from `peer`'s reported time `peer_ms`, for a request sent at raw
    /// time `sent_ms` and answered at `received_ms`. Returns the new offset.
    fn calibrate(
        &mut self,
        peer: ReplicaId,
        peer_ms: u64,
        sent_ms: u64,
        received_ms: u64,
    ) -> Result<i64, Self::Error>;
    /// Remembers that `peer` holds (at least) `acked`: the "needs sync" question is answered
    /// from it.
    fn record_peer(&mut self, peer: ReplicaId, acked: &Summary) -> Result<(), Self::Error>;
    /// Remembers forks found, as seen from here.
    fn record_forks(&mut self, forks: &[Fork]) -> Result<(), Self::Error>;
}

/// What [`SyncStore::apply`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Applied {
    /// Ops stored.
    pub stored: usize,
    /// Ops already held.
    pub duplicates: usize,
    /// Ops not stored because a dependency is absent.
    pub missing: usize,
}

/// Why a session, an import or an export failed. What was applied before the failure is kept
/// (each message is applied whole or not at all).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SyncError {
    /// The peer or file sent bytes that are not a valid message; nothing of it was applied.
    #[error("refused data: {0}")]
    Wire(#[from] WireError),
    /// The peer sent a valid message at the wrong moment.
    #[error("protocol violation: {0}")]
    Protocol(String),
    /// The peer's ops break the replay rules (clock regression, a bad replaced write); the
    /// message carrying them was refused whole.
    #[error("refused ops from the peer: {0}")]
    Refused(String),
    /// The local store failed.
    #[error("local store: {0}")]
    Store(Box<dyn std::error::Error + Send + Sync>),
    /// The peer gave up, saying why.
    #[error("the peer aborted the session: {0}")]
    PeerAborted(String),
    /// The peer is this same replica.
    #[error("the peer is this same replica ({0})")]
    SamePeer(ReplicaId),
    /// The connection broke before the session ended.
    #[error("the peer disconnected before the session ended{0}")]
    Disconnected(String),
    /// The peer did not send a whole message in time.
    #[error("timed out after {0} ms waiting for the peer")]
    Timeout(u64),
    /// A transport-level failure.
    #[error("transport: {0}")]
    Transport(String),
}

impl SyncError {
    fn store(e: impl std::error::Error + Send + Sync + 'static) -> Self {
        SyncError::Store(Box::new(e))
    }
}

/// The clock calibration a session made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Calibration {
    /// The offset now applied to the raw wall clock, in ms (positive: the peer is ahead).
    pub offset_ms: i64,
    /// The measured round trip, in ms.
    pub rtt_ms: u64,
}

/// What a session did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SyncReport {
    /// The peer's device id, once known.
    pub peer: Option<ReplicaId>,
    /// Ops sent.
    pub sent_ops: usize,
    /// Ops received and stored.
    pub stored: usize,
    /// Ops received that were already held.
    pub duplicates: usize,
    /// Ops received whose dependencies were absent (not stored).
    pub missing: usize,
    /// Message bytes sent.
    pub bytes_sent: u64,
    /// Message bytes received.
    pub bytes_received: u64,
    /// Of which summary bytes (both `Hello`s and `Ack`s, both ways).
    pub summary_bytes: u64,
    /// Forks found between the two sides, as seen from here.
    pub forks: Vec<Fork>,
    /// The clock calibration made (initiator only).
    pub calibration: Option<Calibration>,
    /// Whether both sides ended with the same summary.
    pub converged: bool,
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
/// Op bytes per `Ops` message at most (the compact encoding is smaller than the ops).
pub const CHUNK_BYTES: usize = 8 << 20;

/// One sync session. See the module docs.
#[derive(Debug)]
pub struct Session {
    role: Role,
    state: State,
    hello_sent_ms: u64,
    peer_summary: Option<Summary>,
    outbox: VecDeque<Out>,
    forks: BTreeSet<Fork>,
    acked: bool,
    chunk_ops: usize,
    report: SyncReport,
}

/// Adapts a store to the segment codec's lookups.
pub(crate) struct View<'a, S>(pub(crate) &'a S);

impl<S: SyncStore> Locate for View<'_, S> {
    fn locate(&self, id: &OpId) -> Result<Option<SealedOp>, WireError> {
        self.0
            .op_by_id(id)
            .map_err(|e| WireError::Sender(e.to_string()))
    }
}

impl<S: SyncStore> Resolve for View<'_, S> {
    fn op_at(&self, author: &ReplicaId, seq: u64) -> Result<Option<SealedOp>, WireError> {
        self.0
            .op_at(author, seq)
            .map_err(|e| WireError::Lookup(e.to_string()))
    }
}

/// What applying one segment message did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Received {
    /// Ops the message carried.
    pub ops: usize,
    /// What the store did with them.
    pub applied: Applied,
    /// Forks found: those authors' ops were not applied.
    pub forks: Vec<Fork>,
}

/// Verifies a segment message completely and applies it atomically. Ops of an author whose
/// chain here differs from the message's (a fork) are set aside and the fork reported and
/// recorded; anything else wrong refuses the whole message, leaving the store unchanged.
pub fn apply_segments<S: SyncStore>(store: &mut S, bytes: &[u8]) -> Result<Received, SyncError> {
    let ops = decode_segments(bytes, &View(&*store))?;
    let summary = store.summary();
    // Each author's ops in the message, by seq: where they meet our chain.
    let mut by_author: BTreeMap<ReplicaId, Vec<&SealedOp>> = BTreeMap::new();
    for op in &ops {
        by_author.entry(op.op().author).or_default().push(op);
    }
    let mut forks = Vec::new();
    for (author, mut theirs) in by_author {
        let Some(head) = summary.get(&author) else {
            continue;
        };
        theirs.sort_by_key(|op| op.op().seq);
        // The lowest seq where the message differs from what is held is the fork: an op
        // where another is held, or the op after our head naming another predecessor. Ops
        // already held come first (a whole-history bundle, a replay): a fork after a shared
        // prefix is still a fork, not a reason to refuse everyone else's ops.
        for op in theirs {
            let seq = op.op().seq;
            if seq <= head.seq {
                let ours = store
                    .op_at(&author, seq)
                    .map_err(SyncError::store)?
                    .map(|o| o.id());
                if let Some(ours) = ours.filter(|o| *o != op.id()) {
                    forks.push(Fork {
                        author,
                        seq,
                        ours,
                        theirs: op.id(),
                    });
                    break;
                }
            } else {
                if seq == head.seq + 1 {
                    if let Some(prev) = op.op().prev.filter(|p| *p != head.op) {
                        forks.push(Fork {
                            author,
                            seq: head.seq,
                            ours: head.op,
                            theirs: prev,
                        });
                    }
                }
                break;
            }
        }
    }
    let forked: BTreeSet<ReplicaId> = forks.iter().map(|f| f.author).collect();
    let keep: Vec<SealedOp> = ops
        .iter()
        .filter(|op| !forked.contains(&op.op().author))
        .cloned()
        .collect();
    if !forks.is_empty() {
        store.record_forks(&forks).map_err(SyncError::store)?;
    }
    let applied = store.apply(&keep).map_err(|e| {
        if S::is_refusal(&e) {
            SyncError::Refused(e.to_string())
        } else {
            SyncError::store(e)
        }
    })?;
    Ok(Received {
        ops: ops.len(),
        applied,
        forks,
    })
}

/// A message waiting in a session's outbox.
#[derive(Debug)]
enum Out {
    /// Encoded; `true` for a message carrying a summary (counted as summary bytes).
    Ready(Vec<u8>, bool),
    /// `Ops` messages not built yet: each is built when it is next to go, so a sender holds
    /// one message's ops at a time, not everything a full sync sends.
    Ops(Outgoing),
}

/// The ops still to send in `Ops` messages.
#[derive(Debug)]
struct Outgoing {
    /// Ops fetched and not sent yet (all of them, for a store without places).
    ops: VecDeque<SealedOp>,
    /// Places of ops not fetched yet ([`SyncStore::places_since`]).
    places: VecDeque<u64>,
    /// Authors whose chains fork between us: their ops are left out.
    forked: BTreeSet<ReplicaId>,
    /// Forks to report, in the first message only (taken by it).
    forks: Vec<Fork>,
}

impl Outgoing {
    fn is_empty(&self) -> bool {
        self.ops.is_empty() && self.places.is_empty()
    }

    /// Fetches up to a message's worth of ops, leaving out forked authors'.
    fn fill<S: SyncStore>(&mut self, store: &S, chunk_ops: usize) -> Result<(), SyncError> {
        while self.ops.len() < chunk_ops && !self.places.is_empty() {
            let n = (chunk_ops - self.ops.len()).min(self.places.len());
            let places: Vec<u64> = self.places.drain(..n).collect();
            let fetched = store.ops_at_places(&places).map_err(SyncError::store)?;
            if fetched.len() != places.len() {
                return Err(SyncError::Store(
                    format!(
                        "the store gave {} ops for {} places it listed",
                        fetched.len(),
                        places.len()
                    )
                    .into(),
                ));
            }
            self.ops.extend(
                fetched
                    .into_iter()
                    .filter(|op| !self.forked.contains(&op.op().author)),
            );
        }
        Ok(())
    }

    /// The next `Ops` message: at most `chunk_ops` ops and about [`CHUNK_BYTES`] of them (at
    /// least one op while any is left; a single empty message when there is nothing to send).
    /// Returns it with the number of ops it carries.
    fn next<S: SyncStore>(
        &mut self,
        store: &S,
        chunk_ops: usize,
    ) -> Result<(Vec<u8>, usize), SyncError> {
        self.fill(store, chunk_ops)?;
        let mut take = 0;
        let mut bytes = 0;
        for op in &self.ops {
            if take > 0 && (take >= chunk_ops || bytes + op.bytes().len() > CHUNK_BYTES) {
                break;
            }
            bytes += op.bytes().len();
            take += 1;
        }
        let ops: Vec<SealedOp> = self.ops.drain(..take).collect();
        let segments = encode_segments(&ops, &View(store))?;
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

impl Session {
    /// A new session on one side.
    pub fn new(role: Role) -> Self {
        Self {
            role,
            state: State::Start,
            hello_sent_ms: 0,
            peer_summary: None,
            outbox: VecDeque::new(),
            forks: BTreeSet::new(),
            acked: false,
            chunk_ops: CHUNK_OPS,
            report: SyncReport::default(),
        }
    }

    /// Sends at most `n` ops (at least 1) per `Ops` message instead of [`CHUNK_OPS`]. Each
    /// message is applied atomically on arrival, so smaller messages lose less work to a
    /// broken connection.
    pub fn with_chunk_ops(mut self, n: usize) -> Self {
        self.chunk_ops = n.max(1);
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

    /// The message to send next, if it is this side's turn; `None` means wait for the peer
    /// (or, once [`Session::is_done`], the end). An error (the store could not give the ops
    /// to send) fails the session; send [`Session::abort`] to tell the peer why.
    pub fn next_message<S: SyncStore>(
        &mut self,
        store: &mut S,
    ) -> Result<Option<Vec<u8>>, SyncError> {
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
    pub fn receive<S: SyncStore>(&mut self, bytes: &[u8], store: &mut S) -> Result<(), SyncError> {
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

    fn hello<S: SyncStore>(&self, store: &S) -> Vec<u8> {
        message::encode(&Message::Hello {
            replica: store.replica_id(),
            wall_ms: store.calibrated_ms(),
            summary: store.summary(),
        })
    }

    fn receive_inner<S: SyncStore>(
        &mut self,
        bytes: &[u8],
        store: &mut S,
    ) -> Result<(), SyncError> {
        let message = message::decode(bytes)?;
        if let Message::Abort { reason } = message {
            return Err(SyncError::PeerAborted(reason));
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
                self.outbox.push_back(Out::Ready(self.hello(store), true));
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
                    .map_err(SyncError::store)?;
                self.report.calibration = Some(Calibration {
                    offset_ms: offset,
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
                // A fork the peer reports names the op it says this side holds there; a claim
                // about an op not held here is no fork of ours and is not recorded.
                let mut flipped: Vec<Fork> = Vec::new();
                for fork in forks.iter().map(|f| f.flipped()) {
                    let held = store
                        .op_at(&fork.author, fork.seq)
                        .map_err(SyncError::store)?
                        .map(|o| o.id());
                    if held == Some(fork.ours) {
                        flipped.push(fork);
                    }
                }
                if !flipped.is_empty() {
                    store.record_forks(&flipped).map_err(SyncError::store)?;
                    self.forks.extend(flipped);
                }
                let received = apply_segments(store, &segments)?;
                self.report.stored += received.applied.stored;
                self.report.duplicates += received.applied.duplicates;
                self.report.missing += received.applied.missing;
                self.forks.extend(received.forks);
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
                self.report.converged = summary == mine;
                self.acked = true;
                if let Some(peer) = self.report.peer {
                    store
                        .record_peer(peer, &summary)
                        .map_err(SyncError::store)?;
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

    /// Takes the peer's hello: who it is, what it holds, where our chains fork.
    fn meet<S: SyncStore>(
        &mut self,
        store: &mut S,
        peer: ReplicaId,
        summary: &Summary,
    ) -> Result<(), SyncError> {
        if peer == store.replica_id() {
            return Err(SyncError::SamePeer(peer));
        }
        self.report.peer = Some(peer);
        let mine = store.summary();
        let mut forks = Vec::new();
        for (author, theirs) in summary {
            let Some(ours) = mine.get(author) else {
                continue;
            };
            if ours.seq < theirs.seq {
                continue;
            }
            let at = store
                .op_at(author, theirs.seq)
                .map_err(SyncError::store)?
                .map(|o| o.id());
            if let Some(at) = at.filter(|id| *id != theirs.op) {
                forks.push(Fork {
                    author: *author,
                    seq: theirs.seq,
                    ours: at,
                    theirs: theirs.op,
                });
            }
        }
        if !forks.is_empty() {
            store.record_forks(&forks).map_err(SyncError::store)?;
            self.forks.extend(forks);
            self.report.forks = self.forks.iter().copied().collect();
        }
        store.record_peer(peer, summary).map_err(SyncError::store)?;
        self.peer_summary = Some(summary.clone());
        Ok(())
    }

    /// Queues the `Ops` messages carrying what a peer holding `peer` lacks, leaving out the
    /// authors whose chains fork between us (the peer could not apply them).
    fn queue_ops<S: SyncStore>(&mut self, store: &S, peer: &Summary) -> Result<(), SyncError> {
        let forked: BTreeSet<ReplicaId> = self.forks.iter().map(|f| f.author).collect();
        let (ops, places) = match store.places_since(peer).map_err(SyncError::store)? {
            Some(places) => (VecDeque::new(), places.into()),
            None => (
                store
                    .ops_since(peer)
                    .map_err(SyncError::store)?
                    .into_iter()
                    .filter(|op| !forked.contains(&op.op().author))
                    .collect(),
                VecDeque::new(),
            ),
        };
        self.outbox.push_back(Out::Ops(Outgoing {
            ops,
            places,
            forked,
            // Forks are for the peer's information; a peer reads at most this many.
            forks: self
                .forks
                .iter()
                .copied()
                .take(message::limits::FORKS_PER_MESSAGE_MAX as usize)
                .collect(),
        }));
        Ok(())
    }
}

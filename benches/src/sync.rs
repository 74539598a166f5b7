//! Helpers for the sync benchmarks (`benches/sync.rs`) and the `sync_figures` binary: running
//! one session between two replicas over the in-process channel transport while recording
//! every message and timing every call the session makes into each store, in-memory lookups
//! for the segment codec, and the divergence both sides make between two sessions.
//!
//! The recording changes nothing the library does: [`Timed`] passes every [`SyncStore`] call
//! through to the [`Replica`] (flushes included; the one ending an `apply` is only timed
//! apart) and reads a clock around it, and [`Recorded`] hands every message to the channel as
//! it is.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use cardlog::sync_layer::secure::{Access, Expect, Identity};
use cardlog::sync_layer::transport::{self, Transport};
use cardlog::sync_layer::{
    Applied, AuthError, Gate, Locate, PeerBook, Resolve, SyncStore, WireError,
};
use cardlog::SyncReport;
use cardlog::{
    DeviceId, Field, Fork, OpId, Replica, Role, SealedOp, SignedTip, Summary, TransportError,
};
use cardlog_core::FakeClock;

use crate::{Error, FieldEdits, FieldEditsConfig, XorShift};

// ---- lookups for the codec -----------------------------------------------------------------

/// Ops held in memory, by id and by (author, seq): the sender's [`Locate`] and the receiver's
/// [`Resolve`] for benchmarks of the segment codec alone, without a store.
#[derive(Debug, Default, Clone)]
pub struct MemoryOps {
    by_id: HashMap<OpId, SealedOp>,
    by_seq: HashMap<(DeviceId, u64), OpId>,
}

impl MemoryOps {
    /// An index of `ops`.
    pub fn new<'a>(ops: impl IntoIterator<Item = &'a SealedOp>) -> Self {
        let mut index = Self::default();
        for op in ops {
            index.by_seq.insert((op.op().author, op.op().seq), op.id());
            index.by_id.insert(op.id(), op.clone());
        }
        index
    }

    /// Number of ops held.
    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    /// Whether no op is held.
    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }
}

impl Locate for MemoryOps {
    fn locate(&self, id: &OpId) -> Result<Option<SealedOp>, WireError> {
        Ok(self.by_id.get(id).cloned())
    }
}

impl Resolve for MemoryOps {
    fn op_at(&self, author: &DeviceId, seq: u64) -> Result<Option<SealedOp>, WireError> {
        Ok(self
            .by_seq
            .get(&(*author, seq))
            .and_then(|id| self.by_id.get(id))
            .cloned())
    }
}

/// A replica's store as the codec's lookups: what the session itself uses on each side.
#[derive(Debug, Clone, Copy)]
pub struct StoreOps<'r>(pub &'r Replica);

impl Locate for StoreOps<'_> {
    fn locate(&self, id: &OpId) -> Result<Option<SealedOp>, WireError> {
        self.0.op(id).map_err(|e| WireError::Sender(e.to_string()))
    }

    /// The signatures the replica keeps, as a session's segments carry them.
    fn tip_signature(&self, author: &DeviceId, seq: u64) -> Result<Option<SignedTip>, WireError> {
        self.0
            .store()
            .signature(author, seq)
            .map_err(|e| WireError::Sender(e.to_string()))
    }
}

impl Resolve for StoreOps<'_> {
    fn op_at(&self, author: &DeviceId, seq: u64) -> Result<Option<SealedOp>, WireError> {
        self.0
            .store()
            .op_by_seq(author, seq)
            .map_err(|e| WireError::Lookup(e.to_string()))
    }
}

// ---- timing the store calls of a session ---------------------------------------------------

/// Calls made into one store during a session, by [`SyncStore`] method: how many and how long
/// they took in all.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CallTimes(pub BTreeMap<&'static str, (u64, Duration)>);

impl CallTimes {
    fn add(&mut self, name: &'static str, took: Duration) {
        let entry = self.0.entry(name).or_default();
        entry.0 += 1;
        entry.1 += took;
    }

    /// The time spent in the calls named `name`.
    pub fn time(&self, name: &str) -> Duration {
        self.0.get(name).map_or(Duration::ZERO, |(_, t)| *t)
    }

    /// The number of calls named `name`.
    pub fn calls(&self, name: &str) -> u64 {
        self.0.get(name).map_or(0, |(n, _)| *n)
    }

    /// The time spent in all calls.
    pub fn total(&self) -> Duration {
        self.0.values().map(|(_, t)| *t).sum()
    }
}

/// A [`Replica`] whose [`SyncStore`] calls are timed. Every call goes to the replica's own
/// implementation, unchanged; [`Timed::times`] says where a session spent its time in the
/// store (calls made while encoding and decoding segments included: `op_by_id` on the
/// sending side, `op_at` on the receiving one). The flush that ends a non-empty `apply` is
/// timed apart, as `apply_flush`: the apply runs in bulk mode, which skips that flush, and the
/// mode is ended right after, which makes it.
pub struct Timed<'r> {
    replica: &'r mut Replica,
    times: RefCell<CallTimes>,
}

impl<'r> Timed<'r> {
    /// Wraps `replica`.
    pub fn new(replica: &'r mut Replica) -> Self {
        Self {
            replica,
            times: RefCell::new(CallTimes::default()),
        }
    }

    /// The calls made so far.
    pub fn times(&self) -> CallTimes {
        self.times.borrow().clone()
    }

    fn timed<T>(&self, name: &'static str, f: impl FnOnce() -> T) -> T {
        let start = Instant::now();
        let out = f();
        self.times.borrow_mut().add(name, start.elapsed());
        out
    }
}

impl SyncStore for Timed<'_> {
    type Error = cardlog::Error;

    fn device_id(&self) -> DeviceId {
        self.replica.id()
    }

    fn summary(&self) -> Summary {
        self.timed("summary", || SyncStore::summary(&*self.replica))
    }

    fn ops_since(&self, peer: &Summary) -> Result<Vec<SealedOp>, Self::Error> {
        self.timed("ops_since", || SyncStore::ops_since(&*self.replica, peer))
    }

    fn places_since(&self, peer: &Summary) -> Result<Option<Vec<u64>>, Self::Error> {
        self.timed("places_since", || {
            SyncStore::places_since(&*self.replica, peer)
        })
    }

    fn ops_at_places(&self, places: &[u64]) -> Result<Vec<SealedOp>, Self::Error> {
        self.timed("ops_at_places", || {
            SyncStore::ops_at_places(&*self.replica, places)
        })
    }

    fn op_by_id(&self, id: &OpId) -> Result<Option<SealedOp>, Self::Error> {
        self.timed("op_by_id", || SyncStore::op_by_id(&*self.replica, id))
    }

    fn op_at(&self, author: &DeviceId, seq: u64) -> Result<Option<SealedOp>, Self::Error> {
        self.timed("op_at", || SyncStore::op_at(&*self.replica, author, seq))
    }

    fn keeps_signatures(&self) -> bool {
        true
    }

    fn tip_signature(
        &self,
        author: &DeviceId,
        seq: u64,
    ) -> Result<Option<cardlog::SignedTip>, Self::Error> {
        self.timed("tip_signature", || {
            SyncStore::tip_signature(&*self.replica, author, seq)
        })
    }

    fn apply(
        &mut self,
        ops: &[SealedOp],
        tips: &[cardlog::SignedTip],
    ) -> Result<Applied, Self::Error> {
        if ops.is_empty() {
            // Nothing to store, so the replica would not flush either.
            let start = Instant::now();
            let out = SyncStore::apply(&mut *self.replica, ops, tips);
            self.times.get_mut().add("apply", start.elapsed());
            return out;
        }
        // The replica's apply ends with a flush; in bulk mode it leaves it to the end of the
        // mode, which comes right after: the same store calls, with the flush timed apart.
        let start = Instant::now();
        let mut bulk = self.replica.bulk();
        let out = SyncStore::apply(&mut *bulk, ops, tips);
        let staged = start.elapsed();
        let start = Instant::now();
        let flushed = bulk.finish();
        let times = self.times.get_mut();
        times.add("apply", staged);
        times.add("apply_flush", start.elapsed());
        let out = out?;
        flushed?;
        Ok(out)
    }

    fn is_refusal(error: &Self::Error) -> bool {
        <Replica as SyncStore>::is_refusal(error)
    }
}

impl Gate for Timed<'_> {
    fn identity(&self) -> Identity {
        Gate::identity(&*self.replica)
    }

    fn admit_peer(&self, peer: &DeviceId) -> Result<Access, AuthError> {
        Gate::admit_peer(&*self.replica, peer)
    }

    fn pushes(&self) -> bool {
        Gate::pushes(&*self.replica)
    }
}

impl PeerBook for Timed<'_> {
    fn wall_ms(&self) -> u64 {
        PeerBook::wall_ms(&*self.replica)
    }

    fn calibrated_ms(&self) -> u64 {
        PeerBook::calibrated_ms(&*self.replica)
    }

    fn calibrate(
        &mut self,
        peer: DeviceId,
        peer_ms: u64,
        sent_ms: u64,
        received_ms: u64,
    ) -> Result<Option<i64>, Self::Error> {
        let start = Instant::now();
        let out = PeerBook::calibrate(&mut *self.replica, peer, peer_ms, sent_ms, received_ms);
        self.times.get_mut().add("calibrate", start.elapsed());
        out
    }

    fn record_peer(&mut self, peer: DeviceId, acked: &Summary) -> Result<(), Self::Error> {
        let start = Instant::now();
        let out = PeerBook::record_peer(&mut *self.replica, peer, acked);
        self.times.get_mut().add("record_peer", start.elapsed());
        out
    }

    fn record_forks(&mut self, forks: &[Fork]) -> Result<(), Self::Error> {
        let start = Instant::now();
        let out = PeerBook::record_forks(&mut *self.replica, forks);
        self.times.get_mut().add("record_forks", start.elapsed());
        out
    }
}

// ---- recording the messages ----------------------------------------------------------------

/// One message of a session, as sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sent {
    /// Which side sent it.
    pub from: Role,
    /// The message kind (`hello`, `ops`, `ack`, `abort`), from its frame.
    pub kind: &'static str,
    /// The message's size, frame and checksum included.
    pub bytes: usize,
    /// The whole message (to decode again outside the session).
    pub payload: Vec<u8>,
}

/// The messages of a session in the order they were sent. Only one side writes at a time, so
/// this is also the order of the protocol's turns.
pub type MessageLog = Arc<Mutex<Vec<Sent>>>;

/// A transport that records what it sends into a [`MessageLog`] shared by both ends.
#[derive(Debug)]
pub struct Recorded<T> {
    inner: T,
    side: Role,
    log: MessageLog,
}

impl<T> Recorded<T> {
    /// `inner`, used by `side`, recording into `log`.
    pub fn new(inner: T, side: Role, log: MessageLog) -> Self {
        Self { inner, side, log }
    }
}

/// The kind of a framed sync message (`"CLSY"`, version, kind, …; docs/FORMAT.md).
pub fn message_kind(bytes: &[u8]) -> &'static str {
    match bytes.get(5) {
        Some(1) => "hello",
        Some(2) => "ops",
        Some(3) => "ack",
        Some(4) => "abort",
        Some(5) => "bundle",
        Some(6) => "heads",
        _ => "unknown",
    }
}

impl<T: Transport> Transport for Recorded<T> {
    fn send(&mut self, bytes: Vec<u8>) -> Result<(), TransportError> {
        let kind = message_kind(&bytes);
        let sent = Sent {
            from: self.side,
            kind,
            bytes: bytes.len(),
            payload: bytes.clone(),
        };
        self.log
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(sent);
        self.inner.send(bytes)
    }

    fn recv(&mut self) -> Result<Vec<u8>, TransportError> {
        self.inner.recv()
    }
}

// ---- one session between two replicas ------------------------------------------------------

/// What one session between two replicas did, seen from both sides.
#[derive(Debug, Clone)]
pub struct PairSync {
    /// The initiator's report.
    pub initiator: SyncReport,
    /// The responder's report.
    pub responder: SyncReport,
    /// Every message, in the order sent.
    pub messages: Vec<Sent>,
    /// Wall time from the initiator's start to the end of both sides.
    pub elapsed: Duration,
    /// The store calls of the initiator.
    pub initiator_calls: CallTimes,
    /// The store calls of the responder.
    pub responder_calls: CallTimes,
}

impl PairSync {
    /// Ops sent by both sides.
    pub fn exchanged_ops(&self) -> usize {
        self.initiator.sent_ops + self.responder.sent_ops
    }

    /// Every byte both sides sent.
    pub fn wire_bytes(&self) -> u64 {
        self.initiator.bytes_sent + self.initiator.bytes_received
    }

    /// Bytes of the messages of `kind`.
    pub fn bytes_of(&self, kind: &str) -> usize {
        self.messages
            .iter()
            .filter(|m| m.kind == kind)
            .map(|m| m.bytes)
            .sum()
    }

    /// Number of messages of `kind` (any kind when `None`) sent by `from` (either side when
    /// `None`).
    pub fn count(&self, kind: Option<&str>, from: Option<Role>) -> usize {
        self.messages
            .iter()
            .filter(|m| kind.is_none_or(|k| m.kind == k) && from.is_none_or(|f| m.from == f))
            .count()
    }

    /// Turns: runs of consecutive messages from one side (a one-way trip each).
    pub fn flights(&self) -> usize {
        let mut flights = 0;
        let mut last = None;
        for m in &self.messages {
            if last != Some(m.from) {
                flights += 1;
                last = Some(m.from);
            }
        }
        flights
    }

    /// The session's messages as `I:hello R:hello R:ops …`.
    pub fn sequence(&self) -> String {
        self.messages
            .iter()
            .map(|m| {
                let side = match m.from {
                    Role::Initiator => "I",
                    Role::Responder => "R",
                };
                format!("{side}:{}({})", m.kind, m.bytes)
            })
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// How long each side waits for the other's next message in [`sync_pair`].
pub const PAIR_TIMEOUT: Duration = Duration::from_secs(600);

/// How [`sync_pair_with`] carries the session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Carry {
    /// In the clear ([`transport::run`]), as between replicas of one program.
    Clear,
    /// Encrypted and authenticated ([`transport::run_secure`]), as every network session.
    Sealed,
}

/// Runs one session between `initiator` and `responder` over the in-process channel
/// transport, in the clear, the responder on a second thread, recording messages and store
/// calls.
pub fn sync_pair(initiator: &mut Replica, responder: &mut Replica) -> Result<PairSync, Error> {
    sync_pair_with(initiator, responder, Carry::Clear)
}

/// [`sync_pair`], carried as `carry` says (the recorded messages are what crossed the
/// channel: sealed ones and the handshake for [`Carry::Sealed`]).
pub fn sync_pair_with(
    initiator: &mut Replica,
    responder: &mut Replica,
    carry: Carry,
) -> Result<PairSync, Error> {
    let (end_i, end_r) = transport::channel_pair(PAIR_TIMEOUT);
    let log: MessageLog = Arc::new(Mutex::new(Vec::new()));
    let mut end_i = Recorded::new(end_i, Role::Initiator, log.clone());
    let mut end_r = Recorded::new(end_r, Role::Responder, log.clone());
    let mut store_i = Timed::new(initiator);
    let mut store_r = Timed::new(responder);
    let start = Instant::now();
    let (report_i, (report_r, responder_calls)) = std::thread::scope(|scope| {
        let responder = scope.spawn(|| {
            let report = match carry {
                Carry::Clear => transport::run(Role::Responder, &mut store_r, &mut end_r),
                Carry::Sealed => {
                    transport::run_secure(Role::Responder, &mut store_r, &mut end_r, Expect::Member)
                }
            };
            (report, store_r.times())
        });
        let report = match carry {
            Carry::Clear => transport::run(Role::Initiator, &mut store_i, &mut end_i),
            Carry::Sealed => {
                transport::run_secure(Role::Initiator, &mut store_i, &mut end_i, Expect::Member)
            }
        };
        // A panic on the responder's thread is a bug in the library or here: pass it on.
        let joined = match responder.join() {
            Ok(joined) => joined,
            Err(panic) => std::panic::resume_unwind(panic),
        };
        (report, joined)
    });
    let elapsed = start.elapsed();
    let messages = std::mem::take(&mut *log.lock().unwrap_or_else(PoisonError::into_inner));
    Ok(PairSync {
        initiator: report_i?,
        responder: report_r?,
        messages,
        elapsed,
        initiator_calls: store_i.times(),
        responder_calls,
    })
}

/// Makes `saves` single-field saves on `replica` (grouped in bulk mode, flushed at the end):
/// each sets `field` of a contact of the `history` stream picked by `rng` to a value shaped
/// like the stream's own edits (`note 123456`), moving `clock` on `step_ms` first, as a person
/// editing one contact after another would.
pub fn diverge(
    replica: &mut Replica,
    history: &FieldEditsConfig,
    clock: &FakeClock,
    rng: &mut XorShift,
    saves: usize,
    field: Field,
    step_ms: i64,
) -> Result<(), Error> {
    let mut bulk = replica.bulk();
    for _ in 0..saves {
        clock.advance_ms(step_ms);
        let contact = FieldEdits::contact(history, rng.below(history.contacts));
        // Values like the history's own edits ("note 123456").
        let value = format!("{} {}", field.name(), 100_000 + rng.below(900_000));
        bulk.edit(contact, |c| {
            c.set(field, value);
        })?
        .ok_or("a divergence save changed nothing")?;
    }
    bulk.finish()?;
    Ok(())
}

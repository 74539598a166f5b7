//! Carrying sessions: the driver loop, an in-process channel transport (crossbeam) and TCP.
//! [`run`] drives a session in the clear, for an in-process channel; [`run_secure`] an
//! encrypted, authenticated one ([`crate::secure`]) over any transport, and every session
//! over TCP ([`sync_tcp`], [`serve`]) is one.
//!
//! TCP frames each message as a 4-byte big-endian length and the message. Every read has a
//! deadline for the whole message (a peer that trickles one byte a minute times out like one
//! that says nothing), declared lengths are checked against the message size limit before any
//! buffer grows, and buffers grow only as bytes actually arrive.

use std::io::{ErrorKind, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cardlog_core::{BookId, DeviceId, OpId, Refusal, SealedOp, SignedTip};

pub use crate::budget::Budget;
pub use crate::busy::Retry;
use crate::busy::{busy_message, claim_session, Backlog, Refuser, Tickets};
use crate::error::{AuthError, SyncError, TransportError};
use crate::quota::Quota;
use crate::secure::{self, Access, Channel, Expect, Handshake, Identity};
use crate::session::{Role, Session, SyncReport};
pub use crate::shared::Shared;
use crate::slots::Slots;
use crate::store::{Applied, Gate, PeerBook, SyncStore, TakenBack};
use crate::wire::message::{self, Fork, Message, Summary};
use crate::wire::WireError;

/// How long a side waits for the peer's next whole message by default.
pub const TIMEOUT_DEFAULT: Duration = Duration::from_secs(30);

/// Default whole-session deadline of a served session ([`ServeOptions::session_timeout`]):
/// a first sync of a 200,000-op history takes seconds on loopback; a slow phone link may take
/// minutes.
pub const SESSION_TIMEOUT_DEFAULT: Duration = Duration::from_secs(10 * 60);

/// A server's default budget of received message bytes held at once
/// ([`ServeOptions::receive_budget`]): 64 MiB, a few hundred of the messages an honest
/// device sends ([`crate::session::CHUNK_OPS`] ops of a few hundred bytes each). A served
/// session refuses a message longer than a quarter of it ([`Budget::message_max`]).
pub const RECEIVE_BUDGET_DEFAULT: u64 = 64 << 20;

/// How long a served connection may take to authenticate by default
/// ([`ServeOptions::handshake_timeout`]): three small messages, well under a second on any
/// link a sync could use.
pub const HANDSHAKE_TIMEOUT_DEFAULT: Duration = Duration::from_secs(5);

/// The least a server at capacity asks a turned-away device to wait by default
/// ([`ServeOptions::busy_retry_after`]): about a short session's length.
pub const BUSY_RETRY_AFTER_DEFAULT: Duration = Duration::from_secs(2);

/// Something that carries whole messages both ways.
pub trait Transport {
    /// Sends one message.
    fn send(&mut self, bytes: Vec<u8>) -> Result<(), TransportError>;
    /// Receives the next whole message.
    fn recv(&mut self) -> Result<Vec<u8>, TransportError>;
    /// Receives the next whole message, refusing one of more than `max` bytes: asked before
    /// the peer is authenticated (the handshake), when no large message is due. A transport
    /// that can should refuse before reading the bytes; the default reads, then checks.
    fn recv_at_most(&mut self, max: usize) -> Result<Vec<u8>, TransportError> {
        let bytes = self.recv()?;
        if bytes.len() > max {
            return Err(TransportError::Wire(WireError::TooLarge {
                what: "message bytes",
                got: bytes.len() as u64,
                limit: max as u64,
            }));
        }
        Ok(bytes)
    }
    /// Holds `bytes` more for the message just received, until the next is asked for: what a
    /// compressed message inflates to beyond its own length ([`crate::session::inflation`]), so a
    /// server's receive budget counts it. The default holds nothing.
    fn hold(&mut self, bytes: u64) -> Result<(), TransportError> {
        let _ = bytes;
        Ok(())
    }
    /// Ends this side after a last message (an abort), so the peer can still read it: a
    /// connection closed with unread bytes may be reset, losing what was sent. The default
    /// does nothing.
    fn close(&mut self) {}
}

/// Runs one session to its end over `transport`, in the clear: for an in-process channel
/// between replicas of one program. Anything that crosses a network runs
/// [`run_secure`]. If this side fails, it tells the peer why (best effort) before
/// returning the error.
pub fn run<S: PeerBook, T: Transport>(
    role: Role,
    store: &mut S,
    transport: &mut T,
) -> Result<SyncReport, SyncError<S::Error>> {
    run_session(Session::new(role), store, transport)
}

/// [`run`] with a session set up by the caller (e.g. [`Session::with_chunk_ops`]).
pub fn run_session<S: PeerBook, T: Transport>(
    mut session: Session,
    store: &mut S,
    transport: &mut T,
) -> Result<SyncReport, SyncError<S::Error>> {
    loop {
        loop {
            match session.next_message(store) {
                Ok(Some(bytes)) => {
                    transport.send(bytes)?;
                    store.progress(&session.progress());
                }
                Ok(None) => break,
                // Building a message failed (the store could not give its ops): tell the
                // peer why, as for a message that could not be taken.
                Err(e) => {
                    let _ = transport.send(session.abort(&e.to_string()));
                    transport.close();
                    return Err(e);
                }
            }
        }
        if session.is_done() {
            return Ok(session.report().clone());
        }
        let bytes = transport.recv()?;
        transport.hold(crate::session::inflation(&bytes))?;
        if let Err(e) = session.receive(&bytes, store) {
            if !matches!(e, SyncError::PeerAborted(_) | SyncError::Busy(_)) {
                let _ = transport.send(session.abort(&e.to_string()));
                transport.close();
            }
            return Err(e);
        }
        store.progress(&session.progress());
    }
}

// ---- encrypted -----------------------------------------------------------------------------

/// A transport whose messages travel sealed by a [`Channel`], counting the bytes it carries.
struct Sealed<'a, T> {
    inner: &'a mut T,
    channel: Channel,
    sent: u64,
    received: u64,
}

impl<T: Transport> Transport for Sealed<'_, T> {
    fn send(&mut self, bytes: Vec<u8>) -> Result<(), TransportError> {
        let sealed = self.channel.seal(&bytes)?;
        self.sent += sealed.len() as u64;
        self.inner.send(sealed)
    }

    fn recv(&mut self) -> Result<Vec<u8>, TransportError> {
        let sealed = self.inner.recv()?;
        self.received += sealed.len() as u64;
        self.channel.open(&sealed)
    }

    fn hold(&mut self, bytes: u64) -> Result<(), TransportError> {
        self.inner.hold(bytes)
    }

    /// The connection's own close: without it a sealed abort was lost to a reset whenever
    /// the peer had sent more after the message refused (its ack after its ops).
    fn close(&mut self) {
        self.inner.close();
    }
}

/// What an unencrypted sync message in place of the handshake's message 2 says: an `Abort`
/// is how a responder refuses message 1 (and how an older cardlog refuses any handshake), a
/// `Busy` how a server at capacity turns the connection away ([`crate::busy`]).
fn clear_answer<E>(bytes: &[u8]) -> Option<SyncError<E>> {
    match message::decode(bytes) {
        Ok(Message::Abort { reason }) => Some(SyncError::PeerAborted(reason)),
        Ok(Message::Busy { retry_after_ms }) => Some(SyncError::Busy(retry_after_ms)),
        _ => None,
    }
}

/// What the responder tells an initiator whose message 1 it refused.
fn refusal_of_message_1(e: &crate::error::HandshakeError) -> String {
    use crate::error::HandshakeError;
    match e {
        HandshakeError::Unencrypted => {
            "this replica takes only encrypted sessions (cardlog with session encryption): \
             upgrade cardlog"
                .to_owned()
        }
        HandshakeError::Decrypt(_) => "handshake refused: this replica belongs to another \
                                        address book, or is not the device the handshake is \
                                        addressed to"
            .to_owned(),
        other => format!("handshake refused: {other}"),
    }
}

/// Runs one encrypted session to its end over `transport` ([`crate::secure`]): the handshake,
/// the checks of who the peer is ([`Gate::admit_peer`], and `expect` on the initiator), then
/// [`Session`] over the sealed channel. The report's byte counts are the messages the
/// transport carried, handshake included.
pub fn run_secure<S: Gate, T: Transport>(
    role: Role,
    store: &mut S,
    transport: &mut T,
    expect: Expect,
) -> Result<SyncReport, SyncError<S::Error>> {
    run_secure_session(Session::new(role), store, transport, expect)
}

/// [`run_secure`] with a session set up by the caller (e.g. [`Session::with_chunk_ops`]).
pub fn run_secure_session<S: Gate, T: Transport>(
    session: Session,
    store: &mut S,
    transport: &mut T,
    expect: Expect,
) -> Result<SyncReport, SyncError<S::Error>> {
    let identity = store.identity();
    let mut bytes = (0u64, 0u64);
    let (peer, access, channel) = match session.role() {
        Role::Initiator => {
            let (mut handshake, m1) = match expect {
                Expect::Member | Expect::DeviceOfBook(_) => Handshake::initiate(&identity),
                Expect::Device(device) => Handshake::initiate_to(&identity, device),
            }
            .map_err(SyncError::Handshake)?;
            bytes.0 += m1.len() as u64;
            // A connection closed before the answer to message 1 is one a server turned away
            // without a word: its accept queue or its refusals overflowed under a crowd
            // (the kernel resets what it cannot take). `sync_tcp` retries it like `Busy`.
            let turned_away = |e: TransportError| match e {
                TransportError::Disconnected(how) => SyncError::TurnedAway(how),
                other => SyncError::from(other),
            };
            transport.send(m1).map_err(turned_away)?;
            let m2 = transport
                .recv_at_most(secure::HANDSHAKE_MESSAGE_MAX)
                .map_err(turned_away)?;
            bytes.1 += m2.len() as u64;
            match (clear_answer(&m2), expect) {
                // A handshake addressed to a device that another device refused: whoever
                // answers at the address is not the device expected (it cannot read message 1),
                // or that device refused.
                (Some(SyncError::PeerAborted(reason)), Expect::Device(expected)) => {
                    return Err(SyncError::Auth(AuthError::NotReached { expected, reason }))
                }
                // The responder refused message 1 (another book, another version) or is at
                // capacity, or an older cardlog answered in the clear.
                (Some(refused), _) => return Err(refused),
                (None, _) => {}
            }
            let peer = handshake.read_reply(&m2).map_err(SyncError::Handshake)?;
            if let Some(expected) = expect.device() {
                if peer.device != expected {
                    return Err(SyncError::Auth(AuthError::RelayMismatch {
                        expected,
                        got: peer.device,
                    }));
                }
            }
            let access = store.admit_peer(&peer.device).map_err(SyncError::Auth)?;
            let (m3, channel) = handshake.finish(&identity).map_err(SyncError::Handshake)?;
            bytes.0 += m3.len() as u64;
            transport.send(m3)?;
            (peer, access, channel)
        }
        Role::Responder => {
            let (peer, book, mut channel) = answer_handshake(&identity, transport, &mut bytes)?;
            if identity.book() != Some(book) {
                return Err(refuse(
                    &mut channel,
                    transport,
                    SyncError::Auth(AuthError::NotKept(book)),
                ));
            }
            let access = admit(store, &peer, &mut channel, transport)?;
            return run_sealed(session, store, transport, channel, peer, access, bytes);
        }
    };
    run_sealed(session, store, transport, channel, peer, access, bytes)
}

/// The responder's half of the handshake, as `identity`: who the initiator is, the book it
/// named, and the channel. A message 1 this side cannot answer is refused in the clear.
fn answer_handshake<E, T: Transport>(
    identity: &Identity,
    transport: &mut T,
    bytes: &mut (u64, u64),
) -> Result<(secure::Peer, BookId, Channel), SyncError<E>> {
    let m1 = transport.recv_at_most(secure::HANDSHAKE_MESSAGE_MAX)?;
    bytes.1 += m1.len() as u64;
    let (handshake, m2) = match Handshake::answer(identity, &m1) {
        Ok(answered) => answered,
        Err(e) => {
            // Said in the clear: nothing is keyed yet, and the reason tells nothing about this
            // replica but that it speaks cardlog (and, to a handshake of one book reaching a
            // relay of many, that it is such a relay).
            let _ = transport.send(message::encode(&Message::Abort {
                reason: refusal_of_message_1(&e),
            }));
            transport.close();
            return Err(SyncError::Handshake(e));
        }
    };
    bytes.0 += m2.len() as u64;
    transport.send(m2)?;
    let m3 = transport.recv_at_most(secure::HANDSHAKE_MESSAGE_MAX)?;
    bytes.1 += m3.len() as u64;
    handshake.read_final(&m3).map_err(SyncError::Handshake)
}

/// Ends a session after the handshake with a sealed `Abort` saying why: the refused device
/// learns why, and nothing else. Returns `error`.
fn refuse<E, T: Transport>(
    channel: &mut Channel,
    transport: &mut T,
    error: SyncError<E>,
) -> SyncError<E> {
    let reason = match &error {
        SyncError::Auth(refusal) => refusal.to_string(),
        // A local fault is not the peer's to read about.
        _ => "the server could not take the session: try again later".to_owned(),
    };
    let abort = message::encode(&Message::Abort { reason });
    if let Ok(sealed) = channel.seal(&abort) {
        let _ = transport.send(sealed);
    }
    transport.close();
    error
}

/// A session slot of one device, held for a session.
type DeviceSlot = crate::slots::Slot<DeviceId>;

/// The responder's check of an authenticated peer: admitted by `store`, else refused with a
/// sealed `Abort` saying why.
fn admit<S: Gate, T: Transport>(
    store: &S,
    peer: &secure::Peer,
    channel: &mut Channel,
    transport: &mut T,
) -> Result<Access, SyncError<S::Error>> {
    store
        .admit_peer(&peer.device)
        .map_err(|refusal| refuse(channel, transport, SyncError::Auth(refusal)))
}

/// One of the authenticated peer's session slots, held as long as the guard returned; a peer
/// that holds all of its slots is answered busy (sealed), to come back after `retry_after`.
fn claim_device_slot<E, T: Transport>(
    peer: &secure::Peer,
    channel: &mut Channel,
    transport: &mut T,
    slots: &Arc<Slots<DeviceId>>,
    retry_after: Duration,
) -> Result<DeviceSlot, SyncError<E>> {
    slots.claim(peer.device).ok_or_else(|| {
        // Said sealed: only the device itself learns it is busy.
        busy_sealed(channel, transport, retry_after);
        SyncError::Transport(format!(
            "turned away (busy): device {} already holds {} sessions",
            peer.device,
            slots.limit()
        ))
    })
}

/// The session proper, over the channel the handshake set up; the report's byte counts take
/// in the handshake's `bytes` (sent, received).
fn run_sealed<S: Gate, T: Transport>(
    session: Session,
    store: &mut S,
    transport: &mut T,
    channel: Channel,
    peer: secure::Peer,
    access: Access,
    bytes: (u64, u64),
) -> Result<SyncReport, SyncError<S::Error>> {
    let session = session.with_peer(peer.device, access.push, store.pushes());
    let mut sealed = Sealed {
        inner: transport,
        channel,
        sent: 0,
        received: 0,
    };
    let mut report = run_session(session, store, &mut sealed)?;
    report.bytes_sent = bytes.0 + sealed.sent;
    report.bytes_received = bytes.1 + sealed.received;
    report.handshake_bytes = bytes.0 + bytes.1;
    Ok(report)
}

/// What serves sessions ([`serve_host`]): who answers handshakes, and where each session's
/// book is kept. A replica hosts its one book ([`OneBook`]); a relay of many books (crate
/// `cardlog`, `Relay`) finds, or takes, the book the initiator names.
pub trait Host: Send + Sync + 'static {
    /// The store of one book.
    type Store: Gate + Send + 'static;

    /// Who this host is in handshakes ([`Identity::any_book`] for a relay of many books).
    fn identity(&self) -> Identity;

    /// The store of `book` for a session with the authenticated device `peer`: one this host
    /// keeps, or one it takes now. The error ends the session; an [`AuthError`] is told to
    /// the peer, any other error only that the server failed.
    fn store_for(
        &self,
        book: BookId,
        peer: DeviceId,
    ) -> Result<Shared<Self::Store>, SyncError<<Self::Store as SyncStore>::Error>>;

    /// A whole-session deadline shorter than the server's for this session of `book`, if the
    /// host wants one (asked after [`Host::store_for`]): a relay gives a session taking a book,
    /// whose device it cannot check yet, less time than a member's.
    fn session_timeout(&self, _book: BookId) -> Option<Duration> {
        None
    }

    /// A session of `book` with `peer` ended, `ok` if it succeeded (called after every
    /// [`Host::store_for`] that gave a store). A relay keeps a book it took in that session
    /// only if the book's membership now names the relay and `peer`.
    fn ended(&self, book: BookId, peer: DeviceId, ok: bool);
}

/// What a served connection needs past its handshake: a session slot of the server's
/// (else it is answered busy, sealed), then a slot of its device's, the session deadline,
/// and the backlog that times busy answers.
struct Admission<'a> {
    /// The backlog of the handshake stage.
    handshakes: &'a Backlog,
    sessions: &'a Arc<Slots<()>>,
    /// Sessions beyond `sessions` for devices back at their moment (`tickets`).
    overdraft: &'a Arc<Slots<()>>,
    tickets: &'a Tickets,
    devices: &'a Arc<Slots<DeviceId>>,
    backlog: &'a Backlog,
    retry_after: Duration,
    /// When the connection was accepted, and how long its whole session may take from then.
    accepted: Instant,
    session_timeout: Duration,
}

/// Ends a session after the handshake with a sealed `Busy` asking to come back after
/// `retry_after`: only the device itself learns it.
fn busy_sealed<T: Transport>(channel: &mut Channel, transport: &mut T, retry_after: Duration) {
    if let Ok(sealed) = channel.seal(&busy_message(retry_after)) {
        let _ = transport.send(sealed);
    }
    transport.close();
}

/// One served connection, as the responder, on `host`: the handshake (holding `handshake`, a
/// slot of the connections still authenticating, within the handshake deadline), then a
/// session slot, the book's store, the checks of the peer, the session. `met` gets the book,
/// the peer and the store once the host gave one.
fn respond<H: Host>(
    host: &H,
    session: Session,
    transport: &mut TcpTransport,
    handshake: crate::slots::Slot<()>,
    admission: &Admission<'_>,
    met: &mut Option<(BookId, DeviceId, Shared<H::Store>)>,
) -> Result<SyncReport, SyncError<<H::Store as SyncStore>::Error>> {
    let identity = host.identity();
    let mut bytes = (0u64, 0u64);
    let handshake_began = admission.handshakes.started();
    let answered = answer_handshake(&identity, transport, &mut bytes);
    admission
        .handshakes
        .ended(handshake_began, answered.is_ok());
    let (peer, book, mut channel) = answered?;
    // Authenticated: the connection leaves the handshake pool for a session slot, and its
    // whole session may now take the session deadline.
    drop(handshake);
    // A device back at the moment it was given gets in over the limit (within the overdraft)
    // rather than being asked to the end of the queue again.
    let claimed = claim_session(
        admission.sessions,
        admission.overdraft,
        admission.tickets,
        admission.backlog,
        peer.device,
        Instant::now(),
    );
    let _session_slot = match claimed {
        Ok(slot) => slot,
        Err(wait) => {
            busy_sealed(&mut channel, transport, wait);
            return Err(SyncError::Transport(format!(
                "turned away (busy): already serving {} sessions",
                admission.sessions.limit()
            )));
        }
    };
    transport.set_session_deadline(admission.accepted, admission.session_timeout);
    let began = admission.backlog.started();
    let result = (|| {
        // The device's own slot before anything of the book: one key cannot start more
        // sessions, takings included, than its slots.
        let _slot = claim_device_slot(
            &peer,
            &mut channel,
            transport,
            admission.devices,
            admission.retry_after,
        )?;
        let mut store = match host.store_for(book, peer.device) {
            Ok(store) => store,
            Err(SyncError::Auth(AuthError::Taking(book))) => {
                // Another session is taking the book: this one is busy, and the device
                // comes back as asked.
                busy_sealed(&mut channel, transport, admission.retry_after);
                return Err(SyncError::Auth(AuthError::Taking(book)));
            }
            Err(e) => return Err(refuse(&mut channel, transport, e)),
        };
        *met = Some((book, peer.device, store.clone()));
        if let Some(most) = host.session_timeout(book) {
            let most = most.min(admission.session_timeout);
            transport.set_session_deadline(admission.accepted, most);
        }
        let access = admit(&store, &peer, &mut channel, transport)?;
        run_sealed(session, &mut store, transport, channel, peer, access, bytes)
    })();
    admission.backlog.ended(began, result.is_ok());
    result
}

// ---- in-process ----------------------------------------------------------------------------

/// One end of an in-process channel pair.
#[derive(Debug)]
pub struct ChannelEnd {
    tx: crossbeam_channel::Sender<Vec<u8>>,
    rx: crossbeam_channel::Receiver<Vec<u8>>,
    timeout: Duration,
}

/// Two connected ends; each waits at most `timeout` for a message.
pub fn channel_pair(timeout: Duration) -> (ChannelEnd, ChannelEnd) {
    let (a_tx, b_rx) = crossbeam_channel::unbounded();
    let (b_tx, a_rx) = crossbeam_channel::unbounded();
    (
        ChannelEnd {
            tx: a_tx,
            rx: a_rx,
            timeout,
        },
        ChannelEnd {
            tx: b_tx,
            rx: b_rx,
            timeout,
        },
    )
}

impl Transport for ChannelEnd {
    fn send(&mut self, bytes: Vec<u8>) -> Result<(), TransportError> {
        self.tx
            .send(bytes)
            .map_err(|_| TransportError::Disconnected(String::new()))
    }

    fn recv(&mut self) -> Result<Vec<u8>, TransportError> {
        self.rx.recv_timeout(self.timeout).map_err(|e| match e {
            crossbeam_channel::RecvTimeoutError::Timeout => {
                TransportError::Timeout(self.timeout.as_millis() as u64)
            }
            crossbeam_channel::RecvTimeoutError::Disconnected => {
                TransportError::Disconnected(String::new())
            }
        })
    }
}

// ---- TCP -----------------------------------------------------------------------------------

/// A session's TCP connection.
#[derive(Debug)]
pub struct TcpTransport {
    stream: TcpStream,
    timeout: Duration,
    /// When the whole session must be over, and that deadline's length
    /// ([`TcpTransport::with_session_deadline`]).
    session: Option<(Instant, Duration)>,
    /// The server's budget of received bytes and what this connection holds of it
    /// ([`TcpTransport::with_budget`]).
    budget: Option<(Arc<Budget>, u64)>,
    /// The deadline the last message was received by: what [`Transport::hold`] waits until
    /// at most.
    received_by: Option<Instant>,
}

/// The longest [`TcpTransport::hold`] waits for room in the budget: a session that waits
/// holds its message's own bytes, so sessions waiting for one another are let go soon (their
/// peers retry) rather than at their message deadline.
const HOLD_WAIT: Duration = Duration::from_secs(1);

impl TcpTransport {
    /// Wraps a connected stream; each message must arrive whole within `timeout`.
    pub fn new(stream: TcpStream, timeout: Duration) -> Result<Self, TransportError> {
        stream
            .set_nodelay(true)
            .map_err(|e| TransportError::Io(e.to_string()))?;
        stream
            .set_write_timeout(Some(timeout))
            .map_err(|e| TransportError::Io(e.to_string()))?;
        Ok(Self {
            stream,
            timeout,
            session: None,
            budget: None,
            received_by: None,
        })
    }

    /// Reserves each received message's bytes in `budget` before reading them, holding them
    /// until the next message is asked for or the connection is dropped ([`Budget`]): what
    /// a server does with connections it did not start ([`ServeOptions::receive_budget`]).
    pub fn with_budget(mut self, budget: Arc<Budget>) -> Self {
        self.budget = Some((budget, 0));
        self
    }

    /// Gives back what the last message held of the budget.
    fn release_budget(&mut self) {
        if let Some((budget, held)) = &mut self.budget {
            budget.release(std::mem::take(held));
        }
    }

    /// Gives the whole session `most` from now, beside each message's own deadline: a peer
    /// that keeps the session open by sending each message just in time is cut off with
    /// [`TransportError::SessionTimeout`] (what a server does with connections it did not
    /// start: [`ServeOptions::session_timeout`]).
    pub fn with_session_deadline(mut self, most: Duration) -> Self {
        self.session = Instant::now().checked_add(most).map(|at| (at, most));
        self
    }

    /// Gives the whole session `most` from `start` (a server extends a connection's short
    /// handshake deadline this way once the peer authenticated).
    pub fn set_session_deadline(&mut self, start: Instant, most: Duration) {
        self.session = start.checked_add(most).map(|at| (at, most));
    }

    /// The deadline for the next message, and the error for missing it.
    fn deadline(&self) -> (Instant, TransportError) {
        let message = Instant::now() + self.timeout;
        let per_message = TransportError::Timeout(self.timeout.as_millis() as u64);
        match self.session {
            Some((at, most)) if at < message => {
                (at, TransportError::SessionTimeout(most.as_millis() as u64))
            }
            _ => (message, per_message),
        }
    }

    /// Connects to `addr` (waiting at most `timeout`).
    pub fn connect(addr: &str, timeout: Duration) -> Result<Self, TransportError> {
        let addrs: Vec<SocketAddr> = addr
            .to_socket_addrs()
            .map_err(|e| TransportError::Io(format!("{addr}: {e}")))?
            .collect();
        let mut last = format!("{addr}: no address");
        for a in addrs {
            match TcpStream::connect_timeout(&a, timeout) {
                Ok(stream) => return Self::new(stream, timeout),
                Err(e) => last = format!("{a}: {e}"),
            }
        }
        Err(TransportError::Io(format!("cannot connect to {last}")))
    }

    fn read_exact_by(
        &mut self,
        buf: &mut Vec<u8>,
        len: usize,
        (deadline, missed): &(Instant, TransportError),
    ) -> Result<(), TransportError> {
        const STEP: usize = 64 << 10;
        let deadline = *deadline;
        let mut filled = buf.len();
        while filled < len {
            let now = Instant::now();
            if now >= deadline {
                return Err(missed.clone());
            }
            self.stream
                .set_read_timeout(Some(deadline - now))
                .map_err(|e| TransportError::Io(e.to_string()))?;
            // Grow only as bytes arrive: a declared length costs nothing until it is sent.
            let want = len.min(filled + STEP);
            buf.resize(want, 0);
            match self
                .stream
                .read(buf.get_mut(filled..want).unwrap_or_default())
            {
                Ok(0) => {
                    buf.truncate(filled);
                    return Err(TransportError::Disconnected(format!(
                        " (after {filled} of {len} bytes of a message)"
                    )));
                }
                Ok(n) => filled += n,
                Err(e)
                    if matches!(
                        e.kind(),
                        ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted
                    ) => {}
                Err(e) => {
                    buf.truncate(filled);
                    return Err(TransportError::Disconnected(format!(" ({e})")));
                }
            }
            buf.truncate(filled);
        }
        Ok(())
    }
}

impl Transport for TcpTransport {
    fn send(&mut self, bytes: Vec<u8>) -> Result<(), TransportError> {
        let len = u32::try_from(bytes.len()).map_err(|_| {
            TransportError::Io(format!("message of {} bytes is too large", bytes.len()))
        })?;
        let (deadline, missed) = self.deadline();
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(missed);
        }
        self.stream
            .set_write_timeout(Some(left))
            .map_err(|e| TransportError::Io(e.to_string()))?;
        let write = |s: &mut TcpStream| -> std::io::Result<()> {
            s.write_all(&len.to_be_bytes())?;
            s.write_all(&bytes)?;
            s.flush()
        };
        write(&mut self.stream).map_err(|e| match e.kind() {
            ErrorKind::WouldBlock | ErrorKind::TimedOut => missed,
            _ => TransportError::Disconnected(format!(" ({e})")),
        })
    }

    fn recv(&mut self) -> Result<Vec<u8>, TransportError> {
        // The largest message, sealed ([`crate::secure`]).
        self.recv_at_most(secure::sealed_len(message::limits::MESSAGE_BYTES_MAX))
    }

    /// Refuses a length prefix over `max` before reading any of the message.
    fn recv_at_most(&mut self, max: usize) -> Result<Vec<u8>, TransportError> {
        // The caller is done with the message before: it asks for the next.
        self.release_budget();
        let deadline = self.deadline();
        let mut head = Vec::with_capacity(4);
        self.read_exact_by(&mut head, 4, &deadline)?;
        let len = u32::from_be_bytes(<[u8; 4]>::try_from(head.as_slice()).unwrap_or_default());
        let len = len as usize;
        if len > max {
            return Err(TransportError::Wire(WireError::TooLarge {
                what: "message bytes (length prefix)",
                got: len as u64,
                limit: max as u64,
            }));
        }
        if let Some((budget, held)) = &mut self.budget {
            if len as u64 > budget.message_max() {
                return Err(TransportError::Wire(WireError::TooLarge {
                    what: "message bytes (length prefix, a quarter of the server's receive budget)",
                    got: len as u64,
                    limit: budget.message_max(),
                }));
            }
            *held = budget.reserve(len as u64, deadline.0).ok_or_else(|| {
                TransportError::Io(format!(
                    "no room to receive a message of {len} bytes before its deadline: other \
                     sessions hold this server's receive budget of {} bytes",
                    budget.limit()
                ))
            })?;
        }
        let mut body = Vec::new();
        self.read_exact_by(&mut body, len, &deadline)?;
        self.received_by = Some(deadline.0);
        Ok(body)
    }

    /// Reserves `bytes` more of the server's receive budget beside the last message's, within
    /// a quarter of the budget for the two, waiting for room until the message's deadline and
    /// for at most a second: the session fails if none comes (its peer retries later).
    fn hold(&mut self, bytes: u64) -> Result<(), TransportError> {
        if bytes == 0 {
            return Ok(());
        }
        let soon = Instant::now() + HOLD_WAIT;
        let until = self.received_by.map_or(soon, |by| by.min(soon));
        let Some((budget, held)) = &mut self.budget else {
            return Ok(());
        };
        let total = held.saturating_add(bytes);
        if total > budget.message_max() {
            return Err(TransportError::Wire(WireError::TooLarge {
                what: "message bytes as inflated (a quarter of the server's receive budget)",
                got: total,
                limit: budget.message_max(),
            }));
        }
        let more = budget.reserve(bytes, until).ok_or_else(|| {
            TransportError::Io(format!(
                "no room to inflate a message to {total} bytes before its deadline: other \
                 sessions hold this server's receive budget of {} bytes",
                budget.limit()
            ))
        })?;
        *held = held.saturating_add(more);
        Ok(())
    }

    /// Shuts the sending half, then reads and drops what the peer still sends for up to a
    /// second, so the last message is delivered rather than lost to a reset.
    fn close(&mut self) {
        let _ = self.stream.shutdown(std::net::Shutdown::Write);
        let deadline = Instant::now() + CLOSE_DRAIN;
        let mut sink = [0u8; 4096];
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            if left.is_zero() || self.stream.set_read_timeout(Some(left)).is_err() {
                break;
            }
            match self.stream.read(&mut sink) {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
        }
    }
}

impl Drop for TcpTransport {
    fn drop(&mut self) {
        self.release_budget();
    }
}

/// How long [`TcpTransport`] waits for the peer to close after this side's last message.
const CLOSE_DRAIN: Duration = Duration::from_secs(1);

/// Connects to `addr` and runs an encrypted session as the initiator with the device
/// `expect` names. A server at capacity answers [`Message::Busy`]: the call waits as it
/// asks, backing off per `retry`, and tries again on a new connection; nothing of a
/// turned-away attempt touched the store. [`SyncError::Busy`] once the retries are spent.
pub fn sync_tcp<S: Gate>(
    store: &mut S,
    addr: &str,
    timeout: Duration,
    expect: Expect,
    retry: Retry,
) -> Result<SyncReport, SyncError<S::Error>> {
    let mut attempt = 0;
    let mut expect = expect;
    loop {
        let outcome = {
            let mut transport = TcpTransport::connect(addr, timeout)?;
            run_secure(Role::Initiator, store, &mut transport, expect)
            // The connection closes here, before any wait: the server holds nothing of a
            // device it turned away.
        };
        // The device at the address refused a handshake addressed to the one expected: a
        // cardlog from before addressed handshakes, or another device. A handshake of the book
        // tells which (the device check after message 2 names another device); if that is
        // refused too, the first refusal stands.
        let outcome = match (outcome, expect) {
            (
                Err(SyncError::Auth(AuthError::NotReached { expected, reason })),
                Expect::Device(d),
            ) => {
                let fallback = TcpTransport::connect(addr, timeout)
                    .map_err(SyncError::from)
                    .and_then(|mut transport| {
                        run_secure(
                            Role::Initiator,
                            store,
                            &mut transport,
                            Expect::DeviceOfBook(d),
                        )
                    });
                match fallback {
                    // Refused again, or gone: the first refusal says more.
                    Err(
                        SyncError::PeerAborted(_)
                        | SyncError::Transport(_)
                        | SyncError::Disconnected(_)
                        | SyncError::TurnedAway(_),
                    ) => Err(SyncError::Auth(AuthError::NotReached { expected, reason })),
                    other => {
                        // Whatever it was, the peer speaks handshakes of the book: retries
                        // after a busy answer use them too.
                        expect = Expect::DeviceOfBook(d);
                        other
                    }
                }
            }
            (other, _) => other,
        };
        match outcome {
            Err(SyncError::Busy(asked_ms)) if attempt < retry.attempts => {
                std::thread::sleep(retry.wait(attempt, asked_ms));
                attempt += 1;
            }
            Err(SyncError::TurnedAway(_)) if attempt < retry.attempts => {
                std::thread::sleep(retry.wait_unanswered(attempt));
                attempt += 1;
            }
            Ok(mut report) => {
                report.busy_retries = attempt;
                return Ok(report);
            }
            other => return other,
        }
    }
}

// ---- serving several peers -----------------------------------------------------------------

impl<S: SyncStore> SyncStore for Shared<S> {
    type Error = S::Error;
    fn device_id(&self) -> DeviceId {
        self.lock().device_id()
    }
    fn summary(&self) -> Summary {
        self.lock().summary()
    }
    fn ops_since(&self, peer: &Summary) -> Result<Vec<SealedOp>, Self::Error> {
        self.lock().ops_since(peer)
    }
    fn places_since(&self, peer: &Summary) -> Result<Option<Vec<u64>>, Self::Error> {
        self.lock().places_since(peer)
    }
    fn ops_at_places(&self, places: &[u64]) -> Result<Vec<SealedOp>, Self::Error> {
        self.lock().ops_at_places(places)
    }
    fn op_by_id(&self, id: &OpId) -> Result<Option<SealedOp>, Self::Error> {
        self.lock().op_by_id(id)
    }
    fn op_at(&self, author: &DeviceId, seq: u64) -> Result<Option<SealedOp>, Self::Error> {
        self.lock().op_at(author, seq)
    }
    fn keeps_signatures(&self) -> bool {
        self.lock().keeps_signatures()
    }
    fn tip_signature(&self, author: &DeviceId, seq: u64) -> Result<Option<SignedTip>, Self::Error> {
        self.lock().tip_signature(author, seq)
    }
    fn apply(&mut self, ops: &[SealedOp], tips: &[SignedTip]) -> Result<Applied, Self::Error> {
        S::apply_shared(self, ops, tips)
    }
    fn is_refusal(error: &Self::Error) -> bool {
        S::is_refusal(error)
    }
    fn reopen_if_poisoned(&mut self) -> bool {
        self.lock().reopen_if_poisoned()
    }
    fn converged_with(&self, theirs: &Summary) -> bool {
        self.lock().converged_with(theirs)
    }
    fn signatures_for(&self, ops: &[SealedOp]) -> Result<Vec<SignedTip>, Self::Error> {
        self.lock().signatures_for(ops)
    }
    fn authorship(&self, ops: &[SealedOp], tips: &[SignedTip]) -> Result<(), Refusal> {
        self.lock().authorship(ops, tips)
    }
}

impl<S: PeerBook> PeerBook for Shared<S> {
    fn wall_ms(&self) -> u64 {
        self.lock().wall_ms()
    }

    fn progress(&mut self, progress: &crate::SyncProgress) {
        self.lock().progress(progress);
    }

    fn calibrated_ms(&self) -> u64 {
        self.lock().calibrated_ms()
    }

    fn calibrate(
        &mut self,
        peer: DeviceId,
        peer_ms: u64,
        sent_ms: u64,
        received_ms: u64,
    ) -> Result<Option<i64>, Self::Error> {
        self.lock().calibrate(peer, peer_ms, sent_ms, received_ms)
    }

    fn record_peer(&mut self, peer: DeviceId, acked: &Summary) -> Result<(), Self::Error> {
        self.lock().record_peer(peer, acked)
    }

    fn record_forks(&mut self, forks: &[Fork]) -> Result<(), Self::Error> {
        self.lock().record_forks(forks)
    }

    // Every method is forwarded, defaults included: a default here would silently give a
    // served store another behaviour than the store has (no take back, no settling, every
    // fork claim taken as signed).

    fn restored(&self) -> bool {
        self.lock().restored()
    }

    fn mark_restored(&mut self, peer: DeviceId, at: u64) -> Result<(), Self::Error> {
        self.lock().mark_restored(peer, at)
    }

    fn settle_fork(
        &mut self,
        author: DeviceId,
        theirs: &[SealedOp],
        tips: &[SignedTip],
    ) -> Result<bool, Self::Error> {
        self.lock().settle_fork(author, theirs, tips)
    }

    fn branch_authors(&self) -> std::collections::BTreeSet<DeviceId> {
        self.lock().branch_authors()
    }

    fn keep_branch(
        &mut self,
        author: DeviceId,
        theirs: &[SealedOp],
        tips: &[SignedTip],
    ) -> Result<(), Self::Error> {
        self.lock().keep_branch(author, theirs, tips)
    }

    fn kept_branch(&self, author: &DeviceId) -> Option<(Vec<SealedOp>, SignedTip)> {
        self.lock().kept_branch(author)
    }

    fn cover(
        &self,
        author: &DeviceId,
        seq: u64,
        id: OpId,
    ) -> Result<Option<(Vec<SealedOp>, SignedTip)>, Self::Error> {
        self.lock().cover(author, seq, id)
    }

    fn owed(&self, peer: &DeviceId) -> Vec<crate::store::Owed> {
        self.lock().owed(peer)
    }

    fn withdrew(&self, op: &OpId) -> bool {
        self.lock().withdrew(op)
    }

    fn reissue_waiting(&mut self) -> Result<(), Self::Error> {
        self.lock().reissue_waiting()
    }

    fn take_back(
        &mut self,
        peer: Option<(DeviceId, u64)>,
        theirs: &[SealedOp],
        tips: &[SignedTip],
    ) -> Result<Option<TakenBack>, Self::Error> {
        self.lock().take_back(peer, theirs, tips)
    }
}

impl<S: Gate> Gate for Shared<S> {
    fn identity(&self) -> Identity {
        self.lock().identity()
    }

    fn admit_peer(&self, peer: &DeviceId) -> Result<Access, AuthError> {
        self.lock().admit_peer(peer)
    }

    fn pushes(&self) -> bool {
        self.lock().pushes()
    }
}

/// How a server behaves.
#[derive(Debug, Clone, Copy)]
pub struct ServeOptions {
    /// Per-message deadline.
    pub timeout: Duration,
    /// Whole-session deadline: a peer that sends each message just in time cannot hold a
    /// session (and one of `max_sessions`) longer than this.
    pub session_timeout: Duration,
    /// How long a connection may take to authenticate (the three handshake messages): one
    /// that has not by then is dropped, so connections that idle or trickle before the
    /// handshake hold a slot of `max_handshakes` for this long at most, and never a session.
    pub handshake_timeout: Duration,
    /// Connections authenticating at once; further connections are answered busy
    /// ([`crate::busy`]) and closed. Larger than `max_sessions`, so connections that never
    /// authenticate (strangers, a flood) cannot keep honest devices from their sessions.
    pub max_handshakes: usize,
    /// Sessions served at once, counted from the end of the handshake; an authenticated
    /// device over it is answered busy (sealed), asked back at a moment of its own. A device
    /// back at that moment while the sessions are still full is let in over the limit, up to
    /// a quarter more (at least 1) sessions at once (`busy::Tickets`).
    pub max_sessions: usize,
    /// Sessions served at once for one IP address; its further connections are answered
    /// busy and closed, so one host cannot take every session.
    pub max_sessions_per_address: usize,
    /// Sessions served at once for one device (known once the handshake authenticated it);
    /// its further sessions are answered busy, so one device's key (a stolen phone) cannot
    /// take every session from many addresses. An honest device runs one at a time.
    pub max_sessions_per_device: usize,
    /// Bytes of received messages held at once across all sessions ([`Budget`]): a session
    /// whose message does not fit waits, within the message's deadline, for room.
    pub receive_budget: u64,
    /// What a connection over `max_sessions_per_address` or `max_sessions_per_device` is
    /// told: busy, retry after this long ([`crate::busy`]). Over `max_sessions`, each device
    /// turned away is asked for a moment of its own, no sooner than this: the next free slot,
    /// slots spaced by the mean session time divided by `max_sessions`.
    pub busy_retry_after: Duration,
    /// What one session may push ([`Quota`]): ops, bytes, authors new to this server.
    pub quota: Quota,
    /// Stop after this many sessions (successful or not); `None` serves forever.
    pub sessions: Option<u64>,
    /// Ops per `Ops` message sent ([`crate::session::CHUNK_OPS`] by default).
    pub chunk_ops: usize,
}

impl Default for ServeOptions {
    fn default() -> Self {
        Self {
            timeout: TIMEOUT_DEFAULT,
            session_timeout: SESSION_TIMEOUT_DEFAULT,
            handshake_timeout: HANDSHAKE_TIMEOUT_DEFAULT,
            max_handshakes: 256,
            max_sessions: 64,
            max_sessions_per_address: 8,
            max_sessions_per_device: 2,
            receive_budget: RECEIVE_BUDGET_DEFAULT,
            busy_retry_after: BUSY_RETRY_AFTER_DEFAULT,
            quota: Quota::default(),
            sessions: None,
            chunk_ops: crate::session::CHUNK_OPS,
        }
    }
}

/// Serves encrypted sessions of `store`'s book on `listener` ([`serve_host`] with the
/// replica as the host).
pub fn serve<S, F>(
    listener: &TcpListener,
    store: Shared<S>,
    options: ServeOptions,
    on_session: F,
) -> Result<(), SyncError<S::Error>>
where
    S: Gate + Send + 'static,
    F: Fn(SocketAddr, Result<SyncReport, SyncError<S::Error>>) + Send + Sync + 'static,
{
    serve_host(listener, Arc::new(OneBook::new(store)), options, on_session)
}

/// A replica served on its own ([`serve`]): its one book, its identity made once, so a
/// handshake never waits for the replica's lock.
pub struct OneBook<S> {
    store: Shared<S>,
    identity: Identity,
}

impl<S: Gate> OneBook<S> {
    /// Hosts `store`'s book.
    pub fn new(store: Shared<S>) -> Self {
        let identity = store.lock().identity();
        Self { store, identity }
    }
}

impl<S: Gate + Send + 'static> Host for OneBook<S> {
    type Store = S;

    fn identity(&self) -> Identity {
        self.identity.clone()
    }

    fn store_for(&self, book: BookId, _peer: DeviceId) -> Result<Shared<S>, SyncError<S::Error>> {
        if self.identity.book() == Some(book) {
            Ok(self.store.clone())
        } else {
            Err(SyncError::Auth(AuthError::NotKept(book)))
        }
    }

    fn ended(&self, _book: BookId, _peer: DeviceId, _ok: bool) {}
}

/// What ends a served session once the host gave a store, run even if the session's thread
/// panics: a store left refusing writes by a failed one is reopened (a full disk: the next
/// session goes through once the disk writes again), its handle let go, and the host told
/// ([`Host::ended`]: a relay decides there whether it keeps a book it was taking).
struct Ending<'a, H: Host> {
    host: &'a H,
    met: Option<(BookId, DeviceId, Shared<H::Store>)>,
    ok: bool,
}

impl<H: Host> Drop for Ending<'_, H> {
    fn drop(&mut self) {
        if let Some((book, peer, mut store)) = self.met.take() {
            if !self.ok {
                store.reopen_if_poisoned();
            }
            drop(store);
            self.host.ended(book, peer, self.ok);
        }
    }
}

/// Serves encrypted sessions on `listener`, each on its own thread as the responder, with the
/// book each initiator names found by `host`, reporting each session's outcome to
/// `on_session` (from that session's thread). Returns after `options.sessions` sessions have
/// ended, or on a listener error.
pub fn serve_host<H, F>(
    listener: &TcpListener,
    host: Arc<H>,
    options: ServeOptions,
    on_session: F,
) -> Result<(), SyncError<<H::Store as SyncStore>::Error>>
where
    H: Host,
    F: Fn(SocketAddr, Result<SyncReport, SyncError<<H::Store as SyncStore>::Error>>)
        + Send
        + Sync
        + 'static,
{
    let on_session = Arc::new(on_session);
    let refuser = Refuser::start();
    let backlog = Arc::new(Backlog::new(options.max_sessions, options.busy_retry_after));
    let budget = Arc::new(Budget::new(options.receive_budget));
    let device_slots = Slots::new(options.max_sessions_per_device);
    let session_slots: Arc<Slots<()>> = Slots::new(options.max_sessions);
    // Devices back at the moment they were asked to come back, while the sessions are full.
    // (None when no session is served at all.)
    let overdraft: Arc<Slots<()>> =
        Slots::new((options.max_sessions / 4).max(usize::from(options.max_sessions > 0)));
    let tickets = Arc::new(Tickets::default());
    let handshake_slots: Arc<Slots<()>> = Slots::new(options.max_handshakes);
    // Connections turned away before their handshake are asked back by a backlog of their
    // own: a handshake takes milliseconds, or the handshake deadline at most, so a flood of
    // strangers cannot push the moments members are asked back at for sessions.
    let handshake_backlog = Arc::new(Backlog::new(
        options.max_handshakes,
        options.busy_retry_after,
    ));
    let address_slots: Arc<Slots<IpAddr>> = Slots::new(options.max_sessions_per_address);
    let mut handles = Vec::new();
    let mut accepted = 0u64;
    while options.sessions.is_none_or(|n| accepted < n) {
        let (stream, addr) = match listener.accept() {
            Ok(accepted) => accepted,
            // Most accept errors are passing (a connection reset before it was taken, too many
            // open files while sessions end): a relay keeps serving.
            Err(e) if e.kind() == ErrorKind::InvalidInput => {
                return Err(SyncError::Transport(format!("accept: {e}")))
            }
            Err(_) => {
                std::thread::sleep(Duration::from_millis(50));
                continue;
            }
        };
        let at = Instant::now();
        accepted += 1;
        let Some(handshake_slot) = handshake_slots.claim(()) else {
            refuser.refuse(stream, || handshake_backlog.turn_away());
            on_session(
                addr,
                Err(SyncError::Transport(format!(
                    "turned away (busy): already {} connections authenticating",
                    options.max_handshakes
                ))),
            );
            continue;
        };
        let ip = addr.ip();
        let Some(address_slot) = address_slots.claim(ip) else {
            refuser.refuse(stream, || options.busy_retry_after);
            on_session(
                addr,
                Err(SyncError::Transport(format!(
                    "turned away (busy): already serving {} sessions for {ip}",
                    options.max_sessions_per_address
                ))),
            );
            continue;
        };
        let host = Arc::clone(&host);
        let on_spawn_failure = Arc::clone(&on_session);
        let on_session = Arc::clone(&on_session);
        let timeout = options.timeout;
        let session_timeout = options.session_timeout;
        let handshake_timeout = options.handshake_timeout.min(session_timeout);
        let chunk_ops = options.chunk_ops;
        let quota = options.quota;
        let budget = Arc::clone(&budget);
        let device_slots = Arc::clone(&device_slots);
        let session_slots = Arc::clone(&session_slots);
        let overdraft = Arc::clone(&overdraft);
        let tickets = Arc::clone(&tickets);
        let busy_retry_after = options.busy_retry_after;
        let backlog = Arc::clone(&backlog);
        let handshakes = Arc::clone(&handshake_backlog);
        let spawned = std::thread::Builder::new().spawn(move || {
            let mut ending = Ending {
                host: &*host,
                met: None,
                ok: false,
            };
            let admission = Admission {
                handshakes: &handshakes,
                sessions: &session_slots,
                overdraft: &overdraft,
                tickets: &tickets,
                devices: &device_slots,
                backlog: &backlog,
                retry_after: busy_retry_after,
                accepted: at,
                session_timeout,
            };
            let result = TcpTransport::new(stream, timeout)
                .map(|t| {
                    t.with_session_deadline(handshake_timeout)
                        .with_budget(budget)
                })
                .map_err(SyncError::from)
                .and_then(|mut t| {
                    let session = Session::new(Role::Responder)
                        .with_chunk_ops(chunk_ops)
                        .with_quota(quota);
                    respond(
                        &*host,
                        session,
                        &mut t,
                        handshake_slot,
                        &admission,
                        &mut ending.met,
                    )
                });
            ending.ok = result.is_ok();
            drop(ending);
            // The slots go back before the outcome is reported: a caller that counts
            // outcomes may start its next session at once.
            drop(address_slot);
            on_session(addr, result);
        });
        match spawned {
            Ok(handle) => handles.push(handle),
            // No thread to be had (the process's limit): the connection and its slots went
            // with the closure; the relay keeps serving.
            Err(e) => on_spawn_failure(
                addr,
                Err(SyncError::Transport(format!(
                    "no thread for the session: {e}"
                ))),
            ),
        }
        handles.retain(|h| !h.is_finished());
    }
    for h in handles {
        let _ = h.join();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]

    use super::*;

    #[test]
    fn a_session_deadline_cuts_off_a_peer_that_sends_each_message_just_in_time() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let sender = std::thread::spawn(move || {
            let mut t = TcpTransport::connect(&addr, Duration::from_secs(5)).unwrap();
            // Each message well within the per-message deadline, for 3 s in all.
            for _ in 0..15 {
                if t.send(vec![7; 16]).is_err() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(200));
            }
        });
        let (stream, _) = listener.accept().unwrap();
        let mut t = TcpTransport::new(stream, Duration::from_secs(5))
            .unwrap()
            .with_session_deadline(Duration::from_millis(700));
        let started = Instant::now();
        let mut received = 0;
        let err = loop {
            match t.recv() {
                Ok(_) => received += 1,
                Err(e) => break e,
            }
        };
        assert_eq!(err, TransportError::SessionTimeout(700));
        assert!((1..15).contains(&received), "{received}");
        assert!(started.elapsed() < Duration::from_secs(3));
        drop(t);
        sender.join().unwrap();
    }

    #[test]
    fn what_a_message_inflates_to_holds_the_budget_beside_it_within_a_quarter() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let budget = Arc::new(Budget::new(4000));
        let peer = std::thread::spawn(move || {
            let mut t = TcpTransport::connect(&addr, Duration::from_secs(5)).unwrap();
            for _ in 0..3 {
                let _ = t.send(vec![7; 300]);
            }
            let _ = t.recv();
        });
        let (stream, _) = listener.accept().unwrap();
        let mut t = TcpTransport::new(stream, Duration::from_millis(300))
            .unwrap()
            .with_budget(Arc::clone(&budget));
        assert_eq!(t.recv().unwrap().len(), 300);
        t.hold(600).unwrap();
        assert_eq!(budget.held(), 900);
        // Asking for the next message gives back both.
        assert_eq!(t.recv().unwrap().len(), 300);
        assert_eq!(budget.held(), 300);
        // Inflated past a quarter of the budget (1,000 bytes with the message's own 300).
        let err = t.hold(701).unwrap_err();
        assert!(
            matches!(
                err,
                TransportError::Wire(WireError::TooLarge {
                    got: 1001,
                    limit: 1000,
                    ..
                })
            ),
            "{err}"
        );
        // No room: others hold the budget, and the hold gives up at the message's deadline.
        let others = budget.reserve(3500, Instant::now()).unwrap();
        assert!(matches!(t.hold(400), Err(TransportError::Io(_))));
        budget.release(others);
        assert_eq!(t.recv().unwrap().len(), 300);
        assert_eq!(budget.held(), 300);
        drop(t);
        assert_eq!(budget.held(), 0);
        peer.join().unwrap();
    }

    #[test]
    fn received_messages_hold_the_servers_budget_until_the_next_is_asked_for() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        // One message may take a quarter: 800 bytes.
        let budget = Arc::new(Budget::new(3200));
        // Seven peers each send two messages of 800 bytes at once, the last one of 900.
        let mut served = Vec::new();
        let mut peers = Vec::new();
        for i in 0..7 {
            let addr = addr.clone();
            peers.push(std::thread::spawn(move || {
                let mut t = TcpTransport::connect(&addr, Duration::from_secs(5)).unwrap();
                let len = if i == 6 { 900 } else { 800 };
                for _ in 0..2 {
                    let _ = t.send(vec![7; len]);
                }
                // Held open until the server side is done.
                let _ = t.recv();
            }));
            let (stream, _) = listener.accept().unwrap();
            // The fifth gives up soon; the others wait long enough for their peer's bytes.
            let timeout = Duration::from_millis(if i == 4 { 300 } else { 5000 });
            served.push(
                TcpTransport::new(stream, timeout)
                    .unwrap()
                    .with_budget(Arc::clone(&budget)),
            );
        }
        // A message over a quarter of the budget is refused before it is read.
        let err = served[6].recv().unwrap_err();
        assert!(
            matches!(
                err,
                TransportError::Wire(WireError::TooLarge {
                    got: 900,
                    limit: 800,
                    ..
                })
            ),
            "{err}"
        );
        for t in &mut served[..4] {
            assert_eq!(t.recv().unwrap().len(), 800);
        }
        assert_eq!(budget.held(), 3200);
        // While four messages are held, the fifth does not fit: it gives up at its deadline,
        // its bytes never read.
        let refused = served[4].recv().unwrap_err();
        assert!(matches!(refused, TransportError::Io(_)), "{refused}");
        // The first asks for its next message: the one before is released, the next takes
        // its place.
        assert_eq!(served[0].recv().unwrap().len(), 800);
        assert_eq!(budget.held(), 3200);
        // Dropping a connection releases what it held, and the sixth gets in.
        drop(served.remove(0));
        assert_eq!(budget.held(), 2400);
        assert_eq!(served[4].recv().unwrap().len(), 800);
        assert_eq!(budget.peak(), 3200);
        drop(served);
        assert_eq!(budget.held(), 0);
        for p in peers {
            p.join().unwrap();
        }
    }
}

//! Why a session, an import or an export failed ([`SyncError`], generic over the local
//! store's own error, so a caller matches the store's failure by its type and never downcasts),
//! and why a transport could not carry a message ([`TransportError`]).

use std::convert::Infallible;

use cardlog_core::{BookId, DeviceId};

use crate::wire::WireError;

/// Why a session, an import or an export failed. What was applied before the failure is kept
/// (each message is applied whole or not at all).
///
/// `E` is the local store's error ([`crate::SyncStore::Error`]); calls that touch no store
/// (reading a summary file) use [`Infallible`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SyncError<E> {
    /// The peer or file sent bytes that are not a valid message; nothing of it was applied.
    #[error("refused data: {0}")]
    Wire(#[from] WireError),
    /// The peer sent a valid message at the wrong moment.
    #[error("protocol violation: {0}")]
    Protocol(String),
    /// The peer's ops break the replay rules (a broken chain, a bad replaced write); the
    /// message carrying them was refused whole.
    #[error("refused ops from the peer: {0}")]
    Refused(String),
    /// The local store failed, with its own error.
    #[error("local store: {0}")]
    Store(E),
    /// The local store broke the sync layer's contract (it gave a different number of ops
    /// than the places it listed).
    #[error("local store: {0}")]
    StoreContract(String),
    /// The peer gave up, saying why.
    #[error("the peer aborted the session: {0}")]
    PeerAborted(String),
    /// The peer is this same replica.
    #[error("the peer is this same replica ({0})")]
    SamePeer(DeviceId),
    /// The connection broke before the session ended.
    #[error("the peer disconnected before the session ended{0}")]
    Disconnected(String),
    /// The peer did not send a whole message in time.
    #[error("timed out after {0} ms waiting for the peer")]
    Timeout(u64),
    /// The session was not over within its whole-session deadline (in ms): a peer that keeps
    /// a session open by sending slowly is cut off ([`crate::transport::ServeOptions`]).
    #[error("the session took longer than its {0} ms deadline")]
    SessionTimeout(u64),
    /// A transport-level failure.
    #[error("transport: {0}")]
    Transport(String),
    /// The session handshake failed: nobody was authenticated and nothing was exchanged.
    #[error("handshake failed: {0}")]
    Handshake(HandshakeError),
    /// The peer authenticated, but is not let in (or not let do what it tried); nothing it
    /// sent was applied.
    #[error("{0}")]
    Auth(AuthError),
    /// The server is at capacity and asked to be tried again after this many ms
    /// ([`crate::wire::message::Message::Busy`]); nothing was exchanged.
    /// [`crate::transport::sync_tcp`] retries by itself ([`crate::transport::Retry`]) and
    /// returns this only once its retries are spent.
    #[error("the peer is busy serving other devices: try again in {} s", .0.div_ceil(1000))]
    Busy(u64),
    /// A message of an established session failed its authentication check: altered,
    /// dropped, reordered or replayed in transit. Nothing of it was applied; the session ends.
    #[error(
        "message {0} of the session failed its authentication check: it was altered, dropped, \
         reordered or replayed in transit; nothing of it was applied"
    )]
    Tampered(u64),
    /// The peer's pushes went over this server's quota for one session
    /// ([`crate::quota::Quota`]): the message that would have gone over was refused whole;
    /// what earlier messages brought is kept.
    #[error("{0}")]
    OverQuota(crate::quota::QuotaExceeded),
    /// The server closed the connection before answering the handshake's first message:
    /// turned away without a word (its accept queue or its refusals overflowed under a
    /// crowd), or not a cardlog server. Nothing was exchanged.
    /// [`crate::transport::sync_tcp`] retries it as it retries [`SyncError::Busy`], with its
    /// backoff alone, and returns this only once its retries are spent.
    #[error("the server closed the connection before answering{0}")]
    TurnedAway(String),
}

impl<E> SyncError<E> {
    /// The same error with the store's error turned by `f` (erasing it, or widening an error
    /// of a call that touched no store).
    pub fn map_store<F>(self, f: impl FnOnce(E) -> F) -> SyncError<F> {
        match self {
            SyncError::Wire(w) => SyncError::Wire(w),
            SyncError::Protocol(p) => SyncError::Protocol(p),
            SyncError::Refused(r) => SyncError::Refused(r),
            SyncError::Store(e) => SyncError::Store(f(e)),
            SyncError::StoreContract(c) => SyncError::StoreContract(c),
            SyncError::PeerAborted(r) => SyncError::PeerAborted(r),
            SyncError::SamePeer(p) => SyncError::SamePeer(p),
            SyncError::Disconnected(d) => SyncError::Disconnected(d),
            SyncError::Timeout(t) => SyncError::Timeout(t),
            SyncError::SessionTimeout(t) => SyncError::SessionTimeout(t),
            SyncError::Transport(t) => SyncError::Transport(t),
            SyncError::Handshake(h) => SyncError::Handshake(h),
            SyncError::Auth(a) => SyncError::Auth(a),
            SyncError::Tampered(n) => SyncError::Tampered(n),
            SyncError::Busy(ms) => SyncError::Busy(ms),
            SyncError::OverQuota(q) => SyncError::OverQuota(q),
            SyncError::TurnedAway(how) => SyncError::TurnedAway(how),
        }
    }
}

impl SyncError<Infallible> {
    /// An error of a call that touched no store, as the error of any store.
    pub fn widen<E>(self) -> SyncError<E> {
        self.map_store(|never| match never {})
    }
}

/// Why a [`crate::transport::Transport`] could not carry a message. A session turns it into
/// the [`SyncError`] variant of the same name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TransportError {
    /// The connection broke (the text says where, e.g. " (after 10 of 99 bytes)").
    #[error("the peer disconnected before the session ended{0}")]
    Disconnected(String),
    /// The peer did not send a whole message in time.
    #[error("timed out after {0} ms waiting for the peer")]
    Timeout(u64),
    /// The session was not over within its whole-session deadline (in ms).
    #[error("the session took longer than its {0} ms deadline")]
    SessionTimeout(u64),
    /// Any other failure of the carrier (connecting, socket options).
    #[error("transport: {0}")]
    Io(String),
    /// What arrived cannot be a message (a length prefix over the limit).
    #[error("refused data: {0}")]
    Wire(WireError),
    /// An encrypted message failed its authentication check ([`SyncError::Tampered`]): the
    /// number of the message in its direction, from 1.
    #[error("message {0} failed its authentication check")]
    Tampered(u64),
}

/// Why a session handshake failed (docs/SYNC.md, "Handshake").
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HandshakeError {
    /// The first message is a sync message of the unencrypted protocol (cardlog before
    /// encrypted sessions).
    #[error(
        "the peer speaks the unencrypted sync protocol of an older cardlog, which is no longer \
         accepted: upgrade it"
    )]
    Unencrypted,
    /// The bytes are not a cardlog session handshake.
    #[error("not a cardlog session handshake (bad magic)")]
    NotAHandshake,
    /// A handshake version this build does not speak.
    #[error("handshake version {0} is not supported (this build speaks versions 1 to {1})")]
    Version(u8, u8),
    /// A handshake of one book reached a relay of many books, which answers only handshakes
    /// addressed to its device id.
    #[error(
        "this is a relay of many address books: it answers only sessions addressed to its \
         device id (pair with it: `cardlog pair RELAY_ID ADDR`)"
    )]
    NotAddressed,
    /// This side has no book of its own to start a handshake for (a relay of many books
    /// only answers).
    #[error("this side keeps no address book of its own: it only answers sessions")]
    NoBook,
    /// A handshake message of the wrong size.
    #[error("handshake message {message} is {got} bytes, expected {expected}")]
    Size {
        /// Which message (1, 2 or 3).
        message: u8,
        /// Its size.
        got: usize,
        /// The size it must have.
        expected: usize,
    },
    /// A handshake message does not decrypt: the peer serves another address book, or the
    /// message was altered or replayed from another session.
    #[error(
        "handshake message {0} does not authenticate: the peer belongs to another address \
         book, or the message was altered or replayed in transit"
    )]
    Decrypt(u8),
    /// The peer's certificate does not bind its session key to the device key it names.
    #[error("the peer's device key does not certify its session key")]
    Certificate,
    /// The Noise implementation refused an operation (a local fault).
    #[error("noise: {0}")]
    Noise(String),
}

/// Why an authenticated peer was refused (docs/SECURITY.md, "Who may connect"). A refusal
/// happens before this side sends anything of the book.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AuthError {
    /// The peer is not a member of this replica's address book.
    #[error("peer {0} is not a member of this address book")]
    NotAMember(DeviceId),
    /// The peer was removed from the book.
    #[error("peer {0} was removed from this address book")]
    Removed(DeviceId),
    /// This replica holds no membership yet (it joined and has not synced) and the peer is not
    /// the device it is paired with.
    #[error(
        "peer {0} cannot be checked: the refusing replica knows no members of its address \
         book yet (it joined and has not synced) and is not paired with {0} (`cardlog pair \
         DEVICE`)"
    )]
    MembersUnknown(DeviceId),
    /// The peer is not the device this side meant to reach (the paired relay).
    #[error("relay key mismatch: expected {expected}, the peer is {got}")]
    RelayMismatch {
        /// The device expected.
        expected: DeviceId,
        /// The device that answered.
        got: DeviceId,
    },
    /// The session names an address book this side does not keep (a replica of another
    /// book, or a relay that did not take it).
    #[error("this server does not keep address book {0}")]
    NotKept(BookId),
    /// A relay is taking the book in another session; the peer tries again later.
    #[error("the relay is taking address book {0} in another session: sync again in a moment")]
    Taking(BookId),
    /// A relay keeps as many books as it may, and takes no more (how many is not said: a
    /// stranger learns nothing of the other books).
    #[error("the relay keeps as many address books as it may: it takes no more")]
    BooksFull,
    /// The device at the address refused a handshake addressed to the device this side meant
    /// to reach (the paired relay): it is another device (which cannot read such a handshake),
    /// or that device refused it for the reason given.
    #[error(
        "relay key mismatch: expected {expected}, but the device at this address is another \
         one (or refused the session: {reason})"
    )]
    NotReached {
        /// The device expected.
        expected: DeviceId,
        /// What the device at the address answered.
        reason: String,
    },
    /// A read-only member sent ops: read members pull, never push.
    #[error(
        "peer {0} is a read-only member: it may pull but not push ops; nothing it sent was stored"
    )]
    ReadOnlyPush(DeviceId),
}

impl<E> From<TransportError> for SyncError<E> {
    fn from(e: TransportError) -> Self {
        match e {
            TransportError::Disconnected(d) => SyncError::Disconnected(d),
            TransportError::Timeout(t) => SyncError::Timeout(t),
            TransportError::SessionTimeout(t) => SyncError::SessionTimeout(t),
            TransportError::Io(t) => SyncError::Transport(t),
            TransportError::Wire(w) => SyncError::Wire(w),
            TransportError::Tampered(n) => SyncError::Tampered(n),
        }
    }
}

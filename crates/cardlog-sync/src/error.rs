//! Why a session, an import or an export failed ([`SyncError`], generic over the local
//! store's own error, so a caller matches the store's failure by its type and never downcasts),
//! and why a transport could not carry a message ([`TransportError`]).

use std::convert::Infallible;

use cardlog_core::DeviceId;

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
    /// The peer's ops break the replay rules (clock regression, a bad replaced write); the
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
    /// A transport-level failure.
    #[error("transport: {0}")]
    Transport(String),
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
            SyncError::Transport(t) => SyncError::Transport(t),
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
    /// Any other failure of the carrier (connecting, socket options).
    #[error("transport: {0}")]
    Io(String),
    /// What arrived cannot be a message (a length prefix over the limit).
    #[error("refused data: {0}")]
    Wire(WireError),
}

impl<E> From<TransportError> for SyncError<E> {
    fn from(e: TransportError) -> Self {
        match e {
            TransportError::Disconnected(d) => SyncError::Disconnected(d),
            TransportError::Timeout(t) => SyncError::Timeout(t),
            TransportError::Io(t) => SyncError::Transport(t),
            TransportError::Wire(w) => SyncError::Wire(w),
        }
    }
}

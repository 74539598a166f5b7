//! Why a session, an import or an export failed.

use cardlog_core::DeviceId;

use crate::wire::WireError;

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

impl SyncError {
    pub(crate) fn store(e: impl std::error::Error + Send + Sync + 'static) -> Self {
        SyncError::Store(Box::new(e))
    }
}

//! The facade's errors: one enum for opening a replica, one for everything after.

use cardlog_core::{EditError, RandomError, ReplayError};
use cardlog_store::StoreError;

pub use cardlog_store::OpenError;

/// Why a replica call failed. Nothing was saved unless the variant says otherwise.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An edit was refused (no such contact, deleted, already exists, not deleted, changes
    /// that cannot be planned or encoded). Nothing was saved.
    #[error(transparent)]
    Edit(#[from] EditError),
    /// A local op was refused by the replay rules: the store's own chain is inconsistent.
    #[error(transparent)]
    Replay(Box<ReplayError>),
    /// The store failed. After a failed write the replica refuses writes until reopened
    /// ([`StoreError::Poisoned`]); whether the failed save is durable is unknown until then.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// No random id could be drawn.
    #[error(transparent)]
    Random(#[from] RandomError),
}

impl From<ReplayError> for Error {
    fn from(e: ReplayError) -> Self {
        Error::Replay(Box::new(e))
    }
}

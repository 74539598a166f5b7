//! The facade's errors: one enum for opening a replica, one for everything after.

use cardlog_core::{ContactId, DiffError, EncodeError, PlanError, RandomError, ReplayError};
use cardlog_store::StoreError;

pub use cardlog_store::OpenError;

/// Why a replica call failed. Nothing was saved unless the variant says otherwise.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// No contact with this id exists here.
    #[error("no contact {0}")]
    NotFound(ContactId),
    /// The contact is deleted; restore it first.
    #[error("contact {0} is deleted (restore it to edit it)")]
    Deleted(ContactId),
    /// A contact with this id already exists.
    #[error("contact {0} already exists")]
    Exists(ContactId),
    /// The contact is not deleted, so there is nothing to restore.
    #[error("contact {0} is not deleted")]
    NotDeleted(ContactId),
    /// The edited contact cannot be turned into writes (duplicate item ids, a field that does
    /// not fit its path…).
    #[error(transparent)]
    Diff(#[from] DiffError),
    /// The changes cannot be planned into writes.
    #[error(transparent)]
    Plan(#[from] PlanError),
    /// The op cannot be encoded (a value over the size limits).
    #[error(transparent)]
    Encode(#[from] EncodeError),
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

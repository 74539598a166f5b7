//! The facade's errors: one enum for opening a replica, one for everything after.

use cardlog_core::{DeviceId, EditError, MemberRole, RandomError, Refusal, ReplayError};
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
    /// A store could not be opened or created (a relay opening or taking a book).
    #[error(transparent)]
    Open(#[from] OpenError),
    /// The store failed. After a failed write the replica refuses writes until reopened
    /// ([`StoreError::Poisoned`]); whether the failed save is durable is unknown until then.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// No random id could be drawn.
    #[error(transparent)]
    Random(#[from] RandomError),
    /// The address book's rules refuse an op: its author is not a member, was removed, may
    /// not write this, or no valid signature covers it. Nothing was stored.
    #[error(transparent)]
    Refused(#[from] Refusal),
    /// A change to the members that cannot be made as asked. Nothing was saved.
    #[error(transparent)]
    Member(#[from] MemberError),
}

/// Why a change to the members was not made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MemberError {
    /// The device is already a member with this role or a larger one (roles only grow).
    #[error("{device} is already a {role} member of this address book")]
    AlreadyMember {
        /// The device.
        device: DeviceId,
        /// Its role.
        role: MemberRole,
    },
    /// The device was removed; a removed device is never admitted again (pair it anew: a new
    /// key is a new device).
    #[error("{device} was removed from this address book and cannot be added again")]
    Removed {
        /// The device.
        device: DeviceId,
    },
    /// The device is not a member (nothing to remove).
    #[error("{device} is not a member of this address book")]
    NotMember {
        /// The device.
        device: DeviceId,
    },
    /// A device cannot remove itself (another admin removes it).
    #[error("a device cannot remove itself; another admin can")]
    Yourself,
}

impl From<ReplayError> for Error {
    fn from(e: ReplayError) -> Self {
        Error::Replay(Box::new(e))
    }
}

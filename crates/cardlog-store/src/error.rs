//! The store's errors: opening, and everything after.

use std::path::PathBuf;

use cardlog_core::ReplayError;

use crate::kv::KvError;
use crate::log::LogError;

/// Why a store could not be opened or created. Nothing in the directory was changed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum OpenError {
    /// The directory does not hold a cardlog store (no marker file, or one that is not a
    /// cardlog store's).
    #[error(
        "{0} is not a cardlog store (no CARDLOG marker file, or one that is not a cardlog \
         store's); create one with `create`"
    )]
    NotAStore(PathBuf),
    /// `create` was pointed at a directory that already has files.
    #[error("{0} is not empty; a store is created in a new or empty directory")]
    NotEmpty(PathBuf),
    /// The store was written by a format this build does not read (or the marker or format
    /// entry that says so is damaged).
    #[error(
        "{dir}: the store gives its format as {found:?}, but this build reads store format \
         {supported} only (a store of another format, or a damaged one)"
    )]
    UnknownFormat {
        /// The store directory.
        dir: PathBuf,
        /// What the marker says.
        found: String,
        /// The format this build reads.
        supported: u8,
    },
    /// A file system call failed.
    #[error("{path}: {message}")]
    Io {
        /// The path involved.
        path: PathBuf,
        /// The OS error.
        message: String,
    },
    /// The storage engine failed (or found its files damaged).
    #[error(transparent)]
    Engine(#[from] KvError),
    /// A record the store wrote does not decode.
    #[error("store damaged: {0} does not decode")]
    Corrupt(String),
    /// The store's files are damaged in the way described.
    #[error("store damaged: {0}")]
    Damaged(String),
    /// A call on the op log file failed.
    #[error(transparent)]
    Log(#[from] LogError),
    /// No random device id could be drawn.
    #[error(transparent)]
    Random(#[from] cardlog_core::RandomError),
}

/// Why a store call failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The storage engine failed. After a failed write the store refuses further writes.
    #[error(transparent)]
    Engine(#[from] KvError),
    /// A write failed earlier; reopen the store to continue.
    #[error("the store refuses writes after an earlier write failed ({0}); reopen it")]
    Poisoned(String),
    /// A record the store wrote does not decode.
    #[error("store damaged: {0} does not decode")]
    Corrupt(String),
    /// The store's files are damaged in the way described.
    #[error("store damaged: {0}")]
    Damaged(String),
    /// A call on the op log file failed. After a failed write the store refuses further
    /// writes.
    #[error(transparent)]
    Log(#[from] LogError),
    /// The op was refused by the replay rules (fork, chain mismatch…). Nothing was stored.
    #[error(transparent)]
    Refused(Box<ReplayError>),
}

impl From<ReplayError> for StoreError {
    fn from(e: ReplayError) -> Self {
        StoreError::Refused(Box::new(e))
    }
}

impl From<StoreError> for OpenError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Engine(k) => OpenError::Engine(k),
            StoreError::Corrupt(w) => OpenError::Corrupt(w),
            StoreError::Damaged(w) => OpenError::Damaged(w),
            StoreError::Log(e) => OpenError::Log(e),
            other => OpenError::Corrupt(other.to_string()),
        }
    }
}

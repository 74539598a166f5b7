//! The store's errors: opening, and everything after.

use std::path::PathBuf;

use cardlog_core::ReplayError;

use crate::log::LogError;
use crate::state::kv::KvError;

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
    /// The directory does not hold a cardlog relay (no RELAY marker file, or one that is not
    /// a cardlog relay's).
    #[error(
        "{0} is not a cardlog relay (no RELAY marker file, or one that is not a cardlog \
         relay's); create one with `cardlog relay init`"
    )]
    NotARelay(PathBuf),
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
    /// Another process (or another handle in this one) has the store open.
    #[error("storage engine: could not acquire lock on {}: another handle holds it", .0.display())]
    Locked(PathBuf),
    /// A file system call failed.
    #[error("{path}: {message}")]
    Io {
        /// The path involved.
        path: PathBuf,
        /// What kind of failure the OS reported (a full disk is
        /// [`std::io::ErrorKind::StorageFull`]).
        kind: std::io::ErrorKind,
        /// The OS error.
        message: String,
    },
    /// The storage engine failed (or found its files damaged).
    #[error(transparent)]
    Engine(KvError),
    /// The store's files are damaged in the way described (`offset`: the op log record where,
    /// when the damage is in the log).
    #[error("store damaged: {what}")]
    Damaged {
        /// What is damaged, in words.
        what: String,
        /// The byte offset in `ops.log` of the damaged record, if the damage is there.
        offset: Option<u64>,
    },
    /// A call on the op log file failed.
    #[error(transparent)]
    Log(LogError),
    /// No random device id could be drawn.
    #[error(transparent)]
    Random(#[from] cardlog_core::RandomError),
    /// The replica could not be set up as asked (for example a device name over the limit).
    #[error("cannot set up the replica: {0}")]
    Refused(String),
}

/// Why a store call failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The storage engine failed. After a failed write the store refuses further writes.
    #[error(transparent)]
    Engine(KvError),
    /// A write failed earlier; reopen the store to continue.
    #[error("the store refuses writes after an earlier write failed ({0}); reopen it")]
    Poisoned(String),
    /// The store was opened read-only ([`crate::Store::open_read_only`]): its state was
    /// replayed from the op log into memory, and nothing is written.
    #[error(
        "the store was opened read-only, from its op log alone: open it normally (or run \
         repair if its database is damaged) to write"
    )]
    ReadOnly,
    /// The store's files are damaged in the way described (`offset`: the op log record where,
    /// when the damage is in the log). The same fault whichever read met it.
    #[error("store damaged: {what}")]
    Damaged {
        /// What is damaged, in words.
        what: String,
        /// The byte offset in `ops.log` of the damaged record, if the damage is there.
        offset: Option<u64>,
    },
    /// A call on the op log file failed. After a failed write the store refuses further
    /// writes.
    #[error(transparent)]
    Log(LogError),
    /// The op was refused by the replay rules (fork, chain mismatch…). Nothing was stored.
    #[error(transparent)]
    Refused(Box<ReplayError>),
    /// The store keeps no contact state ([`crate::Keeps::OpsOnly`], a relay's copy of a
    /// book): a read of contacts is refused.
    #[error(
        "this store keeps ops only (a relay's copy of an address book) and has no contacts to \
         read: open it read-only (cardlog --read-only), which replays its log, or sync it to a \
         device"
    )]
    OpsOnly,
    /// The replica already belongs to another address book.
    #[error("this replica belongs to address book {held}, not {book}")]
    OtherBook {
        /// The book it belongs to.
        held: cardlog_core::BookId,
        /// The book asked for.
        book: cardlog_core::BookId,
    },
}

impl From<ReplayError> for StoreError {
    fn from(e: ReplayError) -> Self {
        StoreError::Refused(Box::new(e))
    }
}

impl StoreError {
    /// Damage that is not in the op log: a stored value of `what` that does not decode.
    pub fn undecodable(what: &str) -> Self {
        StoreError::Damaged {
            what: format!("{what} does not decode"),
            offset: None,
        }
    }

    /// Damage described by `what`, not tied to an op log record.
    pub fn damaged(what: String) -> Self {
        StoreError::Damaged { what, offset: None }
    }
}

impl OpenError {
    /// Damage described by `what`, not tied to an op log record.
    pub fn damaged(what: String) -> Self {
        OpenError::Damaged { what, offset: None }
    }

    /// A file system call on `path` failed.
    pub fn io(path: &std::path::Path, e: std::io::Error) -> Self {
        OpenError::Io {
            path: path.to_owned(),
            kind: e.kind(),
            message: e.to_string(),
        }
    }

    /// The kind of the file system failure behind this error, if one is: how a caller tells a
    /// full disk or a read-only mount (which a read-only open gets past,
    /// [`crate::Store::open_read_only`]) from damage or a store in use.
    pub fn io_kind(&self) -> Option<std::io::ErrorKind> {
        match self {
            OpenError::Io { kind, .. }
            | OpenError::Engine(KvError::Io { kind, .. })
            | OpenError::Log(LogError::Io { kind, .. }) => Some(*kind),
            _ => None,
        }
    }

    /// Whether the store could not be opened for writing because nothing can be written where
    /// it is: a full disk (or quota), a read-only mount, or files this user may not write.
    /// [`crate::Store::open_read_only`] still reads such a store.
    pub fn is_unwritable(&self) -> bool {
        use std::io::ErrorKind as K;
        matches!(
            self.io_kind(),
            Some(K::StorageFull | K::QuotaExceeded | K::ReadOnlyFilesystem | K::PermissionDenied)
        )
    }

    /// Whether the store's database (not its op log) is damaged: what `repair` mends, and
    /// [`crate::Store::open_read_only`] reads past.
    pub fn is_database_damage(&self) -> bool {
        matches!(
            self,
            OpenError::Engine(KvError::Damaged(_) | KvError::EngineBug(_))
                | OpenError::Damaged { offset: None, .. }
        )
    }
}

impl From<LogError> for StoreError {
    fn from(e: LogError) -> Self {
        match e {
            LogError::Damaged { what, offset } => StoreError::Damaged {
                what,
                offset: Some(offset),
            },
            io => StoreError::Log(io),
        }
    }
}

impl From<KvError> for StoreError {
    fn from(e: KvError) -> Self {
        StoreError::Engine(e)
    }
}

impl From<LogError> for OpenError {
    fn from(e: LogError) -> Self {
        StoreError::from(e).into()
    }
}

impl From<KvError> for OpenError {
    fn from(e: KvError) -> Self {
        match e {
            KvError::Locked(dir) => OpenError::Locked(dir),
            other => OpenError::Engine(other),
        }
    }
}

impl From<StoreError> for OpenError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Engine(k) => k.into(),
            StoreError::Damaged { what, offset } => OpenError::Damaged { what, offset },
            StoreError::Log(e) => OpenError::Log(e),
            // A refused op or a poisoned store while opening: the store's own state is wrong.
            other => OpenError::damaged(format!("{other} does not decode")),
        }
    }
}

//! What can go wrong, as one line for stderr and an exit code (docs/CLI.md, "Exit codes").

use cardlog::sync_layer::WireError;
use cardlog::{EditError, KvError, StoreError};
use cardlog::{Error, OpenError, SyncError};

/// A failed command. Its message is printed as one line; its kind picks the exit code.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// Something named does not exist: a contact, an op, the store itself. Exit 3.
    #[error("{0}")]
    NotFound(String),
    /// The command line or a value in it is wrong. Exit 2.
    #[error("{0}")]
    Invalid(String),
    /// The store is damaged or fails verification. Exit 4.
    #[error("{0}")]
    Corrupt(String),
    /// Anything else (I/O, the storage engine). Exit 1.
    #[error("{0}")]
    Failed(String),
    /// Whoever read stdout stopped reading (`cardlog log | head`): not a failure of the
    /// command, so `main` ends quietly with exit 0.
    #[error("stdout was closed")]
    StdoutClosed,
}

/// Where the data of a failed sync came from, which decides whose fault a bad message is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncSource {
    /// A file the user named (`import`, `export --since`): damaged, forged or the wrong kind
    /// of file is invalid input, exit 2.
    File,
    /// A peer over the network (`sync`, `serve`): anything the peer does wrong, and a peer
    /// that cannot be reached, is a failure of the session, exit 1.
    Peer,
    /// Only this replica (`export`): whatever is not the store's own error is exit 1.
    Local,
}

impl CliError {
    /// A sync error as one line starting with `context`. The local store's own errors keep
    /// their usual codes (4 for damage); the rest follow [`SyncSource`].
    pub fn from_sync(e: SyncError, source: SyncSource, context: &str) -> CliError {
        let text = match &e {
            // Say what is wrong without "from the peer" when it came from a file; the wire
            // layer's "not a segment message" would name the wrong kind of file.
            SyncError::Wire(WireError::BadMagic) if source == SyncSource::File => {
                format!("{context}: not a cardlog bundle or heads file (bad magic)")
            }
            SyncError::Wire(w) if source == SyncSource::File => format!("{context}: {w}"),
            SyncError::Protocol(p) if source == SyncSource::File => format!("{context}: {p}"),
            _ => format!("{context}: {e}"),
        };
        match e {
            SyncError::Store(inner) => CliError::from(inner).with_text(text),
            SyncError::SamePeer(_) => CliError::Invalid(text),
            SyncError::Wire(_) | SyncError::Protocol(_) | SyncError::Refused(_)
                if source == SyncSource::File =>
            {
                CliError::Invalid(text)
            }
            _ => CliError::Failed(text),
        }
    }

    /// The same kind of error with another message.
    fn with_text(self, text: String) -> CliError {
        match self {
            CliError::NotFound(_) => CliError::NotFound(text),
            CliError::Invalid(_) => CliError::Invalid(text),
            CliError::Corrupt(_) => CliError::Corrupt(text),
            CliError::Failed(_) => CliError::Failed(text),
            CliError::StdoutClosed => CliError::StdoutClosed,
        }
    }

    /// The process exit code.
    pub fn exit_code(&self) -> u8 {
        match self {
            CliError::StdoutClosed => 0,
            CliError::Failed(_) => 1,
            CliError::Invalid(_) => 2,
            CliError::NotFound(_) => 3,
            CliError::Corrupt(_) => 4,
        }
    }
}

/// What a damaged store's error adds: the way out.
const REPAIR_HINT: &str = "; `cardlog repair` builds a new database from the op log (a log \
     damaged in its middle is cut there, a copy kept)";

impl From<Error> for CliError {
    fn from(e: Error) -> Self {
        let text = e.to_string();
        match e {
            Error::Edit(EditError::NotFound(_)) => CliError::NotFound(text),
            Error::Edit(_) | Error::Refused(_) | Error::Member(_) => CliError::Invalid(text),
            Error::Replay(_) => CliError::Corrupt(text),
            Error::Store(StoreError::Damaged { .. })
            | Error::Store(StoreError::Engine(KvError::Damaged(_))) => {
                CliError::Corrupt(format!("{text}{REPAIR_HINT}"))
            }
            _ => CliError::Failed(text),
        }
    }
}

impl From<OpenError> for CliError {
    fn from(e: OpenError) -> Self {
        let text = e.to_string();
        match e {
            OpenError::NotAStore(_) | OpenError::NotARelay(_) => CliError::NotFound(text),
            OpenError::NotEmpty(_) | OpenError::UnknownFormat { .. } => CliError::Invalid(text),
            OpenError::Damaged { .. } | OpenError::Engine(KvError::Damaged(_)) => {
                CliError::Corrupt(format!("{text}{REPAIR_HINT}"))
            }
            _ => CliError::Failed(text),
        }
    }
}

impl From<std::io::Error> for CliError {
    fn from(e: std::io::Error) -> Self {
        CliError::Failed(e.to_string())
    }
}

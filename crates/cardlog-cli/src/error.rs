//! What can go wrong, as one line for stderr and an exit code (docs/CLI.md, "Exit codes").

use cardlog::{Error, OpenError};
use cardlog_store::StoreError;

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

impl CliError {
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

impl From<Error> for CliError {
    fn from(e: Error) -> Self {
        let text = e.to_string();
        match e {
            Error::NotFound(_) => CliError::NotFound(text),
            Error::Deleted(_)
            | Error::Exists(_)
            | Error::NotDeleted(_)
            | Error::Diff(_)
            | Error::Plan(_)
            | Error::Encode(_) => CliError::Invalid(text),
            Error::Replay(_) | Error::Store(StoreError::Corrupt(_)) => CliError::Corrupt(text),
            _ => CliError::Failed(text),
        }
    }
}

impl From<OpenError> for CliError {
    fn from(e: OpenError) -> Self {
        let text = e.to_string();
        match e {
            OpenError::NotAStore(_) => CliError::NotFound(text),
            OpenError::NotEmpty(_) | OpenError::UnknownFormat { .. } => CliError::Invalid(text),
            OpenError::Corrupt(_) => CliError::Corrupt(text),
            _ => CliError::Failed(text),
        }
    }
}

impl From<std::io::Error> for CliError {
    fn from(e: std::io::Error) -> Self {
        CliError::Failed(e.to_string())
    }
}

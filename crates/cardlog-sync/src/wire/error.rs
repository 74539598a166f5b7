//! Why wire bytes (a segment message, a sync message, a bundle or summary file) were refused or
//! could not be written. Nothing of refused bytes is applied.

use cardlog_core::{DeviceId, EncodeError};

/// What [`WireError::TooLarge`] names for [`super::segment::limits::AUTHORS_PER_MESSAGE_MAX`] (a bundle export
/// adds a hint to it).
pub(crate) const AUTHORS_IN_A_MESSAGE: &str = "authors in a message";
/// What [`WireError::TooLarge`] names for [`super::segment::limits::SEGMENTS_PER_MESSAGE_MAX`].
pub(crate) const SEGMENTS_IN_A_MESSAGE: &str = "segments in a message";

/// Why a message could not be encoded or was refused. Nothing of a refused message is applied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WireError {
    /// The input ends early.
    #[error("message truncated")]
    Truncated,
    /// Bytes follow the end of the message.
    #[error("{0} bytes after the end of the message")]
    Trailing(usize),
    /// Not a segment message.
    #[error("not a cardlog sync message or segment (bad magic)")]
    BadMagic,
    /// A version this build does not read (a sync message of a version other than 1; a
    /// segment message of a version other than 1, 2 or 3): written by a newer build.
    #[error("format version {0}, which this build does not read (written by a newer cardlog?)")]
    UnknownVersion(u8),
    /// The checksum does not match: the message was damaged.
    #[error("checksum mismatch: the message was damaged in transit or on disk")]
    Checksum,
    /// A number is malformed.
    #[error("malformed number: {0}")]
    Varint(&'static str),
    /// A count or length is beyond its limit.
    #[error("{what}: {got}, more than the limit of {limit}")]
    TooLarge {
        /// What was counted, with its unit (`"authors in a message"`, `"value bytes"`).
        what: &'static str,
        /// The declared value.
        got: u64,
        /// The limit.
        limit: u64,
    },
    /// Something in a segment is malformed.
    #[error("segment of {author}, seq {seq}: {what}")]
    Malformed {
        /// The segment's author.
        author: DeviceId,
        /// The op's seq.
        seq: u64,
        /// What is wrong.
        what: String,
    },
    /// The framing outside any segment is malformed.
    #[error("message framing: {0}")]
    Framing(String),
    /// An op names an earlier op that is neither in the message nor known to the receiver.
    #[error("segment of {author}, seq {seq}: names op {target_author} seq {target_seq}, which is not here")]
    Unresolved {
        /// The segment's author.
        author: DeviceId,
        /// The op's seq.
        seq: u64,
        /// The named op's author.
        target_author: DeviceId,
        /// The named op's seq.
        target_seq: u64,
    },
    /// The rebuilt ops do not hash to the segment's head: content was altered.
    #[error(
        "segment of {author}, seqs {first}..={last}: the ops do not hash to the segment's head \
         (their content was altered)"
    )]
    HeadMismatch {
        /// The segment's author.
        author: DeviceId,
        /// First seq.
        first: u64,
        /// Last seq.
        last: u64,
    },
    /// A rebuilt op breaks the op format's invariants.
    #[error("segment of {author}, seq {seq}: {error}")]
    Op {
        /// The segment's author.
        author: DeviceId,
        /// The op's seq.
        seq: u64,
        /// What is wrong with it.
        error: EncodeError,
    },
    /// The sender could not find an op it must describe.
    #[error("sender: {0}")]
    Sender(String),
    /// The receiver's lookup failed.
    #[error("receiver lookup: {0}")]
    Lookup(String),
}

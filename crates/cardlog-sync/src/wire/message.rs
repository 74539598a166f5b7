//! Protocol messages and files (version 1; byte layout in docs/FORMAT.md, "Sync messages").
//!
//! Every message, on the wire or in a file, has the same frame:
//!
//! ```text
//! "CLSY"  version (1 byte)  kind (1 byte)  body  checksum (16 bytes)
//! ```
//!
//! The checksum is blake3 in derive-key mode over everything before it. Numbers in the body
//! are strict LEB128 varints; ids are their raw bytes. A summary entry is the author (16
//! bytes), the seq, the head op id (32 bytes) and the head's timestamp (wall ms, counter):
//! about 58 bytes per author. Segments are carried as a whole segment message
//! ([`crate::wire::segment`]), which has its own checksum.

use cardlog_core::replay::ChainTip;
use cardlog_core::{DeviceId, Hlc, OpId};

use super::error::WireError;
use super::frame::{checksum, Reader, CHECKSUM_BYTES};
use super::varint;

/// The message format version this build writes and reads.
pub const MESSAGE_VERSION: u8 = 1;
const MAGIC: &[u8; 4] = b"CLSY";
const CHECKSUM_CONTEXT: &str = "cardlog 2026-11-23 sync message checksum v1";

pub use cardlog_core::Summary;

/// Limits on what a message may declare, checked before anything is allocated for it. Names
/// end in their unit (docs/FORMAT.md, "Limits").
pub mod limits {
    /// Largest message, in bytes (a session splits what it sends to stay far below).
    pub const MESSAGE_BYTES_MAX: usize = crate::wire::segment::limits::MESSAGE_BYTES_MAX;
    /// Most authors in a summary (hello, ack, summary file).
    pub const AUTHORS_PER_SUMMARY_MAX: u64 = 1 << 20;
    /// Most forks reported in one `Ops` message (a sender reports no more).
    pub const FORKS_PER_MESSAGE_MAX: u64 = 1 << 16;
    /// Longest abort reason, in bytes (a sender cuts a longer one at a character boundary).
    pub const REASON_BYTES_MAX: u64 = 4096;
}

/// Two different ops at the same place in one author's chain. Never merged: reported, kept,
/// and the author's later ops are not exchanged between the two sides.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
pub struct Fork {
    /// The author whose chain forked.
    pub author: DeviceId,
    /// The contested seq.
    pub seq: u64,
    /// The op held here at that seq.
    pub ours: OpId,
    /// The op the peer holds at that seq.
    pub theirs: OpId,
}

impl Fork {
    /// The same fork seen from the other side.
    pub fn flipped(self) -> Self {
        Self {
            ours: self.theirs,
            theirs: self.ours,
            ..self
        }
    }
}

/// One protocol message or file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// Opens a session: who the sender is, what it holds, and its calibrated wall time.
    Hello {
        /// The sender's device id.
        replica: DeviceId,
        /// The sender's calibrated wall time when it sent this, in ms since the epoch.
        wall_ms: u64,
        /// What the sender holds.
        summary: Summary,
    },
    /// Ops the receiver lacks, as a segment message; `last` ends the sender's turn.
    Ops {
        /// Whether this is the sender's last `Ops` message of the session.
        last: bool,
        /// Forks the sender found between the two sides (from its point of view).
        forks: Vec<Fork>,
        /// A segment message ([`crate::wire::segment`]).
        segments: Vec<u8>,
    },
    /// What the sender holds after applying everything it received.
    Ack {
        /// The sender's summary.
        summary: Summary,
    },
    /// The sender gives up on the session, saying why.
    Abort {
        /// Why, for people.
        reason: String,
    },
    /// A bundle file: ops carried by hand (`cardlog export`).
    Bundle {
        /// The device that wrote the file.
        replica: DeviceId,
        /// Its calibrated wall time when it wrote it.
        created_ms: u64,
        /// A segment message.
        segments: Vec<u8>,
    },
    /// A summary file (`cardlog summary --out`), to build a bundle of only what its writer lacks.
    SummaryFile {
        /// The device that wrote the file.
        replica: DeviceId,
        /// What it holds.
        summary: Summary,
    },
    /// A server at capacity answers a connection with this, in the clear, instead of the
    /// handshake's message 2, and closes: nothing was read or kept of the connection. The
    /// initiator may try again after `retry_after_ms` (and backs off further on each refusal).
    Busy {
        /// How long the server asks the initiator to wait, in ms.
        retry_after_ms: u64,
    },
}

const KIND_HELLO: u8 = 1;
const KIND_OPS: u8 = 2;
const KIND_ACK: u8 = 3;
const KIND_ABORT: u8 = 4;
const KIND_BUNDLE: u8 = 5;
const KIND_SUMMARY_FILE: u8 = 6;
const KIND_BUSY: u8 = 7;

impl Message {
    /// The message's name, for errors.
    pub fn kind(&self) -> &'static str {
        match self {
            Message::Hello { .. } => "hello",
            Message::Ops { .. } => "ops",
            Message::Ack { .. } => "ack",
            Message::Abort { .. } => "abort",
            Message::Bundle { .. } => "bundle",
            // The name errors print; kept as it was for the CLI's unchanged messages.
            Message::SummaryFile { .. } => "heads",
            Message::Busy { .. } => "busy",
        }
    }
}

fn put_summary(out: &mut Vec<u8>, summary: &Summary) {
    varint::put(out, summary.len() as u64);
    for (author, head) in summary {
        out.extend_from_slice(&author.0);
        varint::put(out, head.seq);
        out.extend_from_slice(&head.op.0);
        varint::put(out, head.hlc.wall_ms);
        varint::put(out, u64::from(head.hlc.counter));
    }
}

fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    varint::put(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

/// Encodes a message with its frame and checksum.
pub fn encode(message: &Message) -> Vec<u8> {
    let mut out = Vec::with_capacity(64);
    out.extend_from_slice(MAGIC);
    out.push(MESSAGE_VERSION);
    match message {
        Message::Hello {
            replica,
            wall_ms,
            summary,
        } => {
            out.push(KIND_HELLO);
            out.extend_from_slice(&replica.0);
            varint::put(&mut out, *wall_ms);
            put_summary(&mut out, summary);
        }
        Message::Ops {
            last,
            forks,
            segments,
        } => {
            out.push(KIND_OPS);
            out.push(u8::from(*last));
            varint::put(&mut out, forks.len() as u64);
            for f in forks {
                out.extend_from_slice(&f.author.0);
                varint::put(&mut out, f.seq);
                out.extend_from_slice(&f.ours.0);
                out.extend_from_slice(&f.theirs.0);
            }
            put_bytes(&mut out, segments);
        }
        Message::Ack { summary } => {
            out.push(KIND_ACK);
            put_summary(&mut out, summary);
        }
        Message::Abort { reason } => {
            out.push(KIND_ABORT);
            let mut end = reason.len().min(limits::REASON_BYTES_MAX as usize);
            while !reason.is_char_boundary(end) {
                end -= 1;
            }
            put_bytes(&mut out, reason.get(..end).unwrap_or_default().as_bytes());
        }
        Message::Bundle {
            replica,
            created_ms,
            segments,
        } => {
            out.push(KIND_BUNDLE);
            out.extend_from_slice(&replica.0);
            varint::put(&mut out, *created_ms);
            put_bytes(&mut out, segments);
        }
        Message::SummaryFile { replica, summary } => {
            out.push(KIND_SUMMARY_FILE);
            out.extend_from_slice(&replica.0);
            put_summary(&mut out, summary);
        }
        Message::Busy { retry_after_ms } => {
            out.push(KIND_BUSY);
            varint::put(&mut out, *retry_after_ms);
        }
    }
    let sum = checksum(CHECKSUM_CONTEXT, &out);
    out.extend_from_slice(&sum);
    out
}

fn get_summary(r: &mut Reader<'_>) -> Result<Summary, WireError> {
    let n = r.bounded("authors in a summary", limits::AUTHORS_PER_SUMMARY_MAX)?;
    let mut summary = Summary::new();
    let mut previous: Option<DeviceId> = None;
    for _ in 0..n {
        let author = DeviceId(r.array()?);
        if previous.is_some_and(|p| p >= author) {
            return Err(WireError::Framing(
                "summary authors are not in strictly increasing order".into(),
            ));
        }
        previous = Some(author);
        let seq = r.varint()?;
        if seq == 0 {
            return Err(WireError::Framing(format!(
                "summary entry of {author} has seq 0"
            )));
        }
        let op = OpId(r.array()?);
        let wall_ms = r.varint()?;
        let counter = u32::try_from(r.varint()?)
            .map_err(|_| WireError::Framing(format!("summary entry of {author}: counter")))?;
        summary.insert(
            author,
            ChainTip {
                seq,
                op,
                hlc: Hlc { wall_ms, counter },
            },
        );
    }
    Ok(summary)
}

fn get_bytes(r: &mut Reader<'_>, what: &'static str) -> Result<Vec<u8>, WireError> {
    let n = r.bounded(what, limits::MESSAGE_BYTES_MAX as u64)?;
    let n = usize::try_from(n).map_err(|_| WireError::Truncated)?;
    Ok(r.bytes(n)?.to_vec())
}

/// Decodes one message: frame, version, checksum, then the body, strictly (every byte must be
/// used; numbers must be minimal; summaries sorted).
pub fn decode(bytes: &[u8]) -> Result<Message, WireError> {
    if bytes.len() > limits::MESSAGE_BYTES_MAX {
        return Err(WireError::TooLarge {
            what: "message bytes",
            got: bytes.len() as u64,
            limit: limits::MESSAGE_BYTES_MAX as u64,
        });
    }
    if bytes.len() < MAGIC.len() + 2 + CHECKSUM_BYTES {
        return Err(if bytes.starts_with(MAGIC) || MAGIC.starts_with(bytes) {
            WireError::Truncated
        } else {
            WireError::BadMagic
        });
    }
    if !bytes.starts_with(MAGIC) {
        return Err(WireError::BadMagic);
    }
    let version = bytes.get(MAGIC.len()).copied().unwrap_or_default();
    if version != MESSAGE_VERSION {
        return Err(WireError::UnknownVersion(version));
    }
    let (framed, sum) = bytes.split_at(bytes.len() - CHECKSUM_BYTES);
    if checksum(CHECKSUM_CONTEXT, framed) != sum {
        return Err(WireError::Checksum);
    }
    let mut r = Reader {
        input: framed.get(MAGIC.len() + 1..).unwrap_or_default(),
    };
    let message = match r.byte()? {
        KIND_HELLO => Message::Hello {
            replica: DeviceId(r.array()?),
            wall_ms: r.varint()?,
            summary: get_summary(&mut r)?,
        },
        KIND_OPS => {
            let last = match r.byte()? {
                0 => false,
                1 => true,
                b => return Err(WireError::Framing(format!("ops message: last flag {b}"))),
            };
            let n = r.bounded("forks in a message", limits::FORKS_PER_MESSAGE_MAX)?;
            let mut forks = Vec::new();
            for _ in 0..n {
                forks.push(Fork {
                    author: DeviceId(r.array()?),
                    seq: r.varint()?,
                    ours: OpId(r.array()?),
                    theirs: OpId(r.array()?),
                });
            }
            Message::Ops {
                last,
                forks,
                segments: get_bytes(&mut r, "segment message bytes")?,
            }
        }
        KIND_ACK => Message::Ack {
            summary: get_summary(&mut r)?,
        },
        KIND_ABORT => {
            let n = r.bounded("abort reason bytes", limits::REASON_BYTES_MAX)?;
            let n = usize::try_from(n).map_err(|_| WireError::Truncated)?;
            let reason = String::from_utf8(r.bytes(n)?.to_vec())
                .map_err(|_| WireError::Framing("abort reason is not UTF-8".into()))?;
            Message::Abort { reason }
        }
        KIND_BUNDLE => Message::Bundle {
            replica: DeviceId(r.array()?),
            created_ms: r.varint()?,
            segments: get_bytes(&mut r, "segment message bytes")?,
        },
        KIND_SUMMARY_FILE => Message::SummaryFile {
            replica: DeviceId(r.array()?),
            summary: get_summary(&mut r)?,
        },
        KIND_BUSY => Message::Busy {
            retry_after_ms: r.varint()?,
        },
        k => return Err(WireError::Framing(format!("unknown message kind {k}"))),
    };
    if !r.input.is_empty() {
        return Err(WireError::Trailing(r.input.len()));
    }
    Ok(message)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    fn summary() -> Summary {
        let mut s = Summary::new();
        for i in 1..=3u8 {
            s.insert(
                DeviceId([i; 16]),
                ChainTip {
                    seq: u64::from(i) * 1000,
                    op: OpId([i; 32]),
                    hlc: Hlc {
                        wall_ms: 1_795_000_000_000,
                        counter: 2,
                    },
                },
            );
        }
        s
    }

    fn all() -> Vec<Message> {
        vec![
            Message::Hello {
                replica: DeviceId([9; 16]),
                wall_ms: 1_795_000_000_123,
                summary: summary(),
            },
            Message::Ops {
                last: true,
                forks: vec![Fork {
                    author: DeviceId([1; 16]),
                    seq: 7,
                    ours: OpId([2; 32]),
                    theirs: OpId([3; 32]),
                }],
                segments: vec![1, 2, 3],
            },
            Message::Ack { summary: summary() },
            Message::Abort {
                reason: "stop".into(),
            },
            Message::Bundle {
                replica: DeviceId([4; 16]),
                created_ms: 5,
                segments: vec![],
            },
            Message::SummaryFile {
                replica: DeviceId([4; 16]),
                summary: Summary::new(),
            },
            Message::Busy {
                retry_after_ms: 2000,
            },
        ]
    }

    #[test]
    fn round_trip_every_kind() {
        for m in all() {
            assert_eq!(decode(&encode(&m)).unwrap(), m, "{}", m.kind());
        }
    }

    #[test]
    fn summary_costs_at_most_64_bytes_per_author() {
        let empty = encode(&Message::Ack {
            summary: Summary::new(),
        })
        .len();
        let three = encode(&Message::Ack { summary: summary() }).len();
        let per_author = (three - empty) as f64 / 3.0;
        assert!(per_author <= 64.0, "{per_author}");
    }

    #[test]
    fn every_flip_and_truncation_is_refused() {
        for m in all() {
            let bytes = encode(&m);
            for i in 0..bytes.len() {
                let mut bad = bytes.clone();
                bad[i] ^= 0x41;
                assert!(decode(&bad).is_err(), "{} flip at {i}", m.kind());
                assert!(decode(&bytes[..i]).is_err(), "{} cut at {i}", m.kind());
            }
        }
    }

    #[test]
    fn unknown_version_is_named() {
        let mut bytes = encode(&Message::Abort { reason: "x".into() });
        bytes[4] = 2;
        assert_eq!(decode(&bytes), Err(WireError::UnknownVersion(2)));
    }
}

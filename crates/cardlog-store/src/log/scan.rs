//! Reading records back: one at a time ([`Read`]) or as a sequential scan in large chunks
//! ([`Scan`]), which hands out records borrowed from its buffer ([`ReadRef`]).

use cardlog_core::OpId;

use super::io::LogError;
use super::io::LogIo;
use super::record::{parse_header, Record, HEADER_BYTES};

/// How many bytes a sequential scan reads at once.
const SCAN_CHUNK_BYTES: usize = 1 << 20;

/// What reading a record found.
#[derive(Debug)]
pub enum Read {
    /// A whole record.
    Record(Record),
    /// The file ends at this offset.
    End,
    /// The record at `offset` is malformed; `cut_off` when it runs past the end of the file
    /// (what a write cut off by a crash leaves).
    Bad {
        /// Where the record starts.
        offset: u64,
        /// What is wrong.
        why: String,
        /// Whether it runs past the end of the file.
        cut_off: bool,
    },
}

/// A sequential read of records (see [`super::OpLog::scan`]).
pub struct Scan<'a> {
    io: &'a dyn LogIo,
    limit: u64,
    buf: Vec<u8>,
    buf_at: u64,
    pos: u64,
    done: bool,
}

impl<'a> Scan<'a> {
    /// A scan of the log file behind `io` from `from` up to `limit`.
    pub(super) fn new(io: &'a dyn LogIo, from: u64, limit: u64) -> Self {
        Scan {
            io,
            limit,
            buf: Vec::new(),
            buf_at: from,
            pos: from,
            done: false,
        }
    }
}

impl Scan<'_> {
    /// Where the next record would start.
    pub fn position(&self) -> u64 {
        self.pos
    }

    fn fill(&mut self, need: usize) -> Result<bool, LogError> {
        let have_from = (self.pos - self.buf_at) as usize;
        if self.buf.len().saturating_sub(have_from) >= need {
            return Ok(true);
        }
        let remaining = self.limit - self.pos;
        let want = need.max(SCAN_CHUNK_BYTES).min(remaining as usize);
        if want < need {
            return Ok(false);
        }
        // The buffer is reused: one allocation for the whole scan.
        self.buf.clear();
        self.buf.resize(want, 0);
        self.buf_at = self.pos;
        if let Err(e) = self.io.read_at(&mut self.buf, self.pos) {
            self.buf.clear();
            return Err(e);
        }
        Ok(true)
    }

    /// The next record, [`Read::End`] at the limit, or [`Read::Bad`] (after which the scan
    /// stops).
    pub fn next_read(&mut self) -> Result<Read, LogError> {
        Ok(match self.next_ref()? {
            ReadRef::Record {
                offset,
                flags,
                id,
                bytes,
            } => Read::Record(Record {
                offset,
                flags,
                id,
                bytes: bytes.to_vec(),
            }),
            ReadRef::End => Read::End,
            ReadRef::Bad {
                offset,
                why,
                cut_off,
            } => Read::Bad {
                offset,
                why,
                cut_off,
            },
        })
    }

    /// [`Scan::next_read`] without copying the record's bytes out of the scan's buffer.
    pub fn next_ref(&mut self) -> Result<ReadRef<'_>, LogError> {
        if self.done || self.pos >= self.limit {
            self.done = true;
            return Ok(ReadRef::End);
        }
        let offset = self.pos;
        if self.limit - offset < HEADER_BYTES || !self.fill(HEADER_BYTES as usize)? {
            self.done = true;
            return Ok(ReadRef::Bad {
                offset,
                why: format!(
                    "record at byte {offset}: header cut off by the end of the log at {}",
                    self.limit
                ),
                cut_off: true,
            });
        }
        let at = (offset - self.buf_at) as usize;
        let mut header = [0u8; HEADER_BYTES as usize];
        header.copy_from_slice(
            self.buf
                .get(at..at + HEADER_BYTES as usize)
                .unwrap_or(&[0u8; HEADER_BYTES as usize]),
        );
        let (flags, id, len) = match parse_header(&header, offset, self.limit) {
            Ok(parts) => parts,
            Err((why, cut_off)) => {
                self.done = true;
                return Ok(ReadRef::Bad {
                    offset,
                    why,
                    cut_off,
                });
            }
        };
        // parse_header checked that the record ends within the limit.
        self.fill(HEADER_BYTES as usize + len)?;
        let at = (offset - self.buf_at) as usize + HEADER_BYTES as usize;
        match self.buf.get(at..at + len) {
            Some(bytes) => {
                self.pos = offset + HEADER_BYTES + len as u64;
                Ok(ReadRef::Record {
                    offset,
                    flags,
                    id,
                    bytes,
                })
            }
            None => {
                self.done = true;
                Ok(ReadRef::Bad {
                    offset,
                    why: format!("record at byte {offset}: cut off"),
                    cut_off: true,
                })
            }
        }
    }
}

/// What reading a record found, borrowing its bytes from the scan (see [`Scan::next_ref`]).
#[derive(Debug)]
pub enum ReadRef<'a> {
    /// A whole record.
    Record {
        /// Where it starts.
        offset: u64,
        /// Its flags ([`super::record::COMMIT`]).
        flags: u8,
        /// The id written with it.
        id: OpId,
        /// The op's bytes.
        bytes: &'a [u8],
    },
    /// The file ends here.
    End,
    /// As [`Read::Bad`].
    Bad {
        /// Where the record starts.
        offset: u64,
        /// What is wrong.
        why: String,
        /// Whether it runs past the end of the file.
        cut_off: bool,
    },
}

impl Iterator for Scan<'_> {
    type Item = Result<Record, LogError>;

    /// Records the store believes valid: a malformed one is an error (damage).
    fn next(&mut self) -> Option<Self::Item> {
        match self.next_read() {
            Ok(Read::Record(r)) => Some(Ok(r)),
            Ok(Read::End) => None,
            Ok(Read::Bad { why, offset, .. }) => Some(Err(LogError::Damaged {
                what: format!("op log: {why}"),
                offset,
            })),
            Err(e) => {
                self.done = true;
                Some(Err(e))
            }
        }
    }
}

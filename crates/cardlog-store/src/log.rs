//! The op log: one append-only file of framed ops, the store's source of truth.
//!
//! Each record is `[u32 LE op length][u8 flags][32-byte op id][op bytes]` (docs/FORMAT.md,
//! "Store"). A record's offset in the file is its place in application order. The last record
//! of every [`crate::Store::apply_all`] call carries [`COMMIT`]: on open, records after the
//! last commit (a write cut off by a crash) are cut away, so a call's ops are all in the log
//! or none is. A save is durable once the file is synced ([`OpLog::sync`]); everything else
//! the store keeps (registers, author heads, the in-memory index) is derived from this file
//! and can be rebuilt from it.
//!
//! All file access goes through [`LogIo`], which is also the fault-injection point for tests.

use std::fs::File;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use cardlog_core::codec::{format_config, limits};
use cardlog_core::{decode_op, DecodeError, Op, OpId, SealedOp};

use crate::error::StoreError;

/// Flag of the last record written by one apply call.
pub const COMMIT: u8 = 1;
/// Bytes before a record's op bytes: length, flags, id.
pub const HEADER_BYTES: u64 = 4 + 1 + 32;
/// The log file's name in the store directory.
pub const LOG_FILE: &str = "ops.log";

/// A failed call on the log file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("op log: {0}")]
pub struct LogError(pub String);

/// The calls the store makes on its log file.
pub trait LogIo: Send + Sync {
    /// The file's length in bytes.
    fn file_len(&self) -> Result<u64, LogError>;
    /// Fills `buf` from `offset` (an error if the file ends first).
    fn read_at(&self, buf: &mut [u8], offset: u64) -> Result<(), LogError>;
    /// Writes all of `buf` at `offset`.
    fn write_at(&self, buf: &[u8], offset: u64) -> Result<(), LogError>;
    /// Makes every write durable (data and the file's length).
    fn sync(&self) -> Result<(), LogError>;
    /// Cuts the file to `len` bytes and makes that durable.
    fn truncate(&self, len: u64) -> Result<(), LogError>;
}

/// The log in a real file.
pub struct FileLog {
    file: File,
}

impl FileLog {
    /// Opens the log file at `path`; `create` makes a new, empty one (it must not exist).
    pub fn open(path: &Path, create: bool) -> Result<Self, LogError> {
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(create)
            .open(path)
            .map_err(|e| LogError(format!("{}: {e}", path.display())))?;
        Ok(Self { file })
    }
}

fn io_err(what: &str, e: std::io::Error) -> LogError {
    LogError(format!("{what}: {e}"))
}

impl LogIo for FileLog {
    fn file_len(&self) -> Result<u64, LogError> {
        Ok(self.file.metadata().map_err(|e| io_err("stat", e))?.len())
    }

    fn read_at(&self, buf: &mut [u8], offset: u64) -> Result<(), LogError> {
        #[cfg(unix)]
        {
            use std::os::unix::fs::FileExt;
            self.file
                .read_exact_at(buf, offset)
                .map_err(|e| io_err(&format!("read at {offset}"), e))
        }
        #[cfg(not(unix))]
        {
            use std::io::{Read, Seek, SeekFrom};
            let mut f = &self.file;
            f.seek(SeekFrom::Start(offset))
                .and_then(|_| f.read_exact(buf))
                .map_err(|e| io_err(&format!("read at {offset}"), e))
        }
    }

    fn write_at(&self, buf: &[u8], offset: u64) -> Result<(), LogError> {
        #[cfg(unix)]
        {
            use std::os::unix::fs::FileExt;
            self.file
                .write_all_at(buf, offset)
                .map_err(|e| io_err(&format!("write at {offset}"), e))
        }
        #[cfg(not(unix))]
        {
            use std::io::{Seek, SeekFrom, Write};
            let mut f = &self.file;
            f.seek(SeekFrom::Start(offset))
                .and_then(|_| f.write_all(buf))
                .map_err(|e| io_err(&format!("write at {offset}"), e))
        }
    }

    fn sync(&self) -> Result<(), LogError> {
        self.file.sync_data().map_err(|e| io_err("fsync", e))
    }

    fn truncate(&self, len: u64) -> Result<(), LogError> {
        self.file
            .set_len(len)
            .and_then(|()| self.file.sync_all())
            .map_err(|e| io_err(&format!("truncate to {len}"), e))
    }
}

/// Wraps a [`LogIo`] and fails every write (`write_at`, `sync`, `truncate`) after a given
/// number of successful ones: the fault-injection point for tests.
pub struct FaultyLog<L> {
    inner: L,
    writes_left: Arc<AtomicU64>,
}

impl<L: LogIo> FaultyLog<L> {
    /// Lets `writes_ok` writes through, then fails every write.
    pub fn new(inner: L, writes_ok: u64) -> Self {
        Self::sharing(inner, Arc::new(AtomicU64::new(writes_ok)))
    }

    /// Lets writes through while `budget` (shared with other faulty parts of one store) lasts.
    pub fn sharing(inner: L, budget: Arc<AtomicU64>) -> Self {
        Self {
            inner,
            writes_left: budget,
        }
    }

    fn take(&self) -> Result<(), LogError> {
        self.writes_left
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .map(|_| ())
            .map_err(|_| LogError("injected write failure".into()))
    }
}

impl<L: LogIo> LogIo for FaultyLog<L> {
    fn file_len(&self) -> Result<u64, LogError> {
        self.inner.file_len()
    }
    fn read_at(&self, buf: &mut [u8], offset: u64) -> Result<(), LogError> {
        self.inner.read_at(buf, offset)
    }
    fn write_at(&self, buf: &[u8], offset: u64) -> Result<(), LogError> {
        self.take()?;
        self.inner.write_at(buf, offset)
    }
    fn sync(&self) -> Result<(), LogError> {
        self.take()?;
        self.inner.sync()
    }
    fn truncate(&self, len: u64) -> Result<(), LogError> {
        self.take()?;
        self.inner.truncate(len)
    }
}

/// One record read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// Where it starts (its place in application order).
    pub offset: u64,
    /// Its flags ([`COMMIT`]).
    pub flags: u8,
    /// The id written with it (checked against the bytes only where said).
    pub id: OpId,
    /// The op's canonical bytes.
    pub bytes: Vec<u8>,
}

impl Record {
    /// Where the next record starts.
    pub fn end(&self) -> u64 {
        self.offset + HEADER_BYTES + self.bytes.len() as u64
    }

    /// Decodes the op strictly and checks it hashes to the id written with it; the error
    /// names the record and what is wrong.
    pub fn seal(&self) -> Result<SealedOp, String> {
        check_record(self.offset, &self.id, &self.bytes, |b| {
            decode_op(b).map(|sealed| {
                let id = sealed.id();
                (sealed, id)
            })
        })
    }

    /// Decodes the op without re-checking its encoding or hash (for records already checked
    /// when they were written; `verify` and `rebuild` use the strict decoder instead).
    pub fn decode_trusted(&self) -> Result<Op, StoreError> {
        decode_trusted(self.offset, &self.bytes)
    }
}

/// [`Record::decode_trusted`] of the op bytes of the record at `offset`.
pub fn decode_trusted(offset: u64, bytes: &[u8]) -> Result<Op, StoreError> {
    let body = bytes.get(1..).unwrap_or_default();
    match bincode::decode_from_slice::<Op, _>(body, format_config()) {
        Ok((op, used)) if used == body.len() => Ok(op),
        _ => Err(StoreError::Corrupt(format!(
            "op log record at byte {offset}"
        ))),
    }
}

/// Decodes a record's op bytes with `decode` (one of core's strict decoders) and checks they
/// hash to the id written with them; the error names the record's offset and what is wrong.
pub fn check_record<T>(
    offset: u64,
    recorded: &OpId,
    bytes: &[u8],
    decode: impl FnOnce(&[u8]) -> Result<(T, OpId), DecodeError>,
) -> Result<T, String> {
    match decode(bytes) {
        Ok((op, id)) if id == *recorded => Ok(op),
        Ok((_, id)) => Err(format!(
            "op log record at byte {offset}: the op hashes to {id}, the log says {recorded}"
        )),
        Err(e) => Err(format!("op log record at byte {offset}: {e}")),
    }
}

/// Appends a record for an op to `buf`.
pub fn frame(buf: &mut Vec<u8>, id: &OpId, bytes: &[u8], flags: u8) {
    // Op bytes are bounded by the op size limit (well under 4 GiB).
    buf.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
    buf.push(flags);
    buf.extend_from_slice(&id.0);
    buf.extend_from_slice(bytes);
}

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

/// The op log over a [`LogIo`].
pub struct OpLog {
    io: Box<dyn LogIo>,
    len: u64,
    /// The file's length once known: past `len` it holds zeros written ahead.
    allocated: Option<u64>,
}

/// How far ahead of the records small appends extend the file with zeros. Syncing a write
/// that does not change the file's length needs no journal commit of its metadata (measured:
/// the durable-save ratio of docs/PERFORMANCE.md went from 0.15 to about 0.5); recovery cuts
/// the zeros away after a crash.
pub const PREALLOCATE_BYTES: u64 = 1 << 20;

/// How many bytes a sequential scan reads at once.
const SCAN_CHUNK_BYTES: usize = 1 << 20;

impl OpLog {
    /// The log over `io`, whose valid records end at `len`.
    pub fn new(io: Box<dyn LogIo>, len: u64) -> Self {
        Self {
            io,
            len,
            allocated: None,
        }
    }

    /// Where the next record goes (the end of the valid records).
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether no record is stored.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The file's physical length (may exceed [`OpLog::len`] before recovery).
    pub fn file_len(&self) -> Result<u64, LogError> {
        self.io.file_len()
    }

    /// Writes `buf` (whole records) at the end. Not durable until [`OpLog::sync`]. Small
    /// writes land in space extended with zeros ahead of time ([`PREALLOCATE_BYTES`]).
    pub fn append(&mut self, buf: &[u8]) -> Result<(), LogError> {
        let end = self.len + buf.len() as u64;
        let mut allocated = match self.allocated {
            Some(a) => a,
            None => self.io.file_len()?,
        };
        if end > allocated && (buf.len() as u64) * 4 < PREALLOCATE_BYTES {
            let from = allocated.max(self.len);
            let zeros = vec![0u8; (end + PREALLOCATE_BYTES - from) as usize];
            self.io.write_at(&zeros, from)?;
            allocated = end + PREALLOCATE_BYTES;
        }
        self.io.write_at(buf, self.len)?;
        self.len = end;
        self.allocated = Some(allocated.max(end));
        Ok(())
    }

    /// Cuts the zeros written ahead, so a closed store's log ends with its last record.
    pub fn trim(&mut self) -> Result<(), LogError> {
        if self.allocated.is_some_and(|a| a > self.len) {
            self.io.truncate(self.len)?;
            self.allocated = Some(self.len);
        }
        Ok(())
    }

    /// Makes every appended record durable.
    pub fn sync(&self) -> Result<(), LogError> {
        self.io.sync()
    }

    /// Sets where valid records end (recovery, before any append).
    pub fn set_len(&mut self, len: u64) {
        self.len = len;
    }

    /// Reads raw bytes (recovery looks at what follows a bad record).
    pub fn read_raw(&self, buf: &mut [u8], offset: u64) -> Result<(), LogError> {
        self.io.read_at(buf, offset)
    }

    /// Cuts the file to `len` (dropping a torn tail) and makes it the end.
    pub fn truncate(&mut self, len: u64) -> Result<(), LogError> {
        self.io.truncate(len)?;
        self.len = len;
        self.allocated = Some(len);
        Ok(())
    }

    /// Reads the record at `offset`, which must be below `limit`.
    pub fn read_within(&self, offset: u64, limit: u64) -> Result<Read, LogError> {
        if offset >= limit {
            return Ok(Read::End);
        }
        if limit - offset < HEADER_BYTES {
            return Ok(Read::Bad {
                offset,
                why: format!(
                    "record at byte {offset}: header cut off by the end of the log at {limit}"
                ),
                cut_off: true,
            });
        }
        let mut header = [0u8; HEADER_BYTES as usize];
        self.io.read_at(&mut header, offset)?;
        match parse_header(&header, offset, limit) {
            Ok((flags, id, len)) => {
                let mut bytes = vec![0u8; len];
                self.io.read_at(&mut bytes, offset + HEADER_BYTES)?;
                Ok(Read::Record(Record {
                    offset,
                    flags,
                    id,
                    bytes,
                }))
            }
            Err((why, cut_off)) => Ok(Read::Bad {
                offset,
                why,
                cut_off,
            }),
        }
    }

    /// Reads the record at `offset`, which the store believes valid.
    pub fn read(&self, offset: u64) -> Result<Record, StoreError> {
        match self.read_within(offset, self.len) {
            Ok(Read::Record(r)) => Ok(r),
            Ok(Read::End) => Err(StoreError::Damaged(format!(
                "op log: a record at byte {offset}, past the end ({})",
                self.len
            ))),
            Ok(Read::Bad { why, .. }) => Err(StoreError::Damaged(format!("op log: {why}"))),
            Err(e) => Err(StoreError::Log(e)),
        }
    }

    /// Just the id of the record at `offset`.
    pub fn id_at(&self, offset: u64) -> Result<OpId, StoreError> {
        if offset + HEADER_BYTES > self.len {
            return Err(StoreError::Damaged(format!(
                "op log: an id at byte {offset}, past the end ({})",
                self.len
            )));
        }
        let mut id = [0u8; 32];
        self.io
            .read_at(&mut id, offset + 5)
            .map_err(StoreError::Log)?;
        Ok(OpId(id))
    }

    /// Reads records in order from `from` up to `limit`, in large sequential chunks.
    pub fn scan(&self, from: u64, limit: u64) -> Scan<'_> {
        Scan {
            log: self,
            limit,
            buf: Vec::new(),
            buf_at: from,
            pos: from,
            done: false,
        }
    }
}

/// Checks a record header at `offset` (the file's records end at `limit`): its flags, id and
/// op length, or why it is malformed and whether it runs past `limit` (cut off).
fn parse_header(
    header: &[u8; HEADER_BYTES as usize],
    offset: u64,
    limit: u64,
) -> Result<(u8, OpId, usize), (String, bool)> {
    let [a, b, c, d, flags, id @ ..] = *header;
    let len = u32::from_le_bytes([a, b, c, d]) as usize;
    if len == 0 || len > limits::OP_BYTES_MAX {
        return Err((
            format!(
                "record at byte {offset}: op length {len} (1 to {} bytes allowed)",
                limits::OP_BYTES_MAX
            ),
            false,
        ));
    }
    if flags & !COMMIT != 0 {
        return Err((
            format!("record at byte {offset}: unknown flags {flags:#04x}"),
            false,
        ));
    }
    if offset + HEADER_BYTES + len as u64 > limit {
        return Err((
            format!(
                "record at byte {offset}: {len} op bytes run past the end of the log at {limit}"
            ),
            true,
        ));
    }
    Ok((flags, OpId(id), len))
}

/// A sequential read of records (see [`OpLog::scan`]).
pub struct Scan<'a> {
    log: &'a OpLog,
    limit: u64,
    buf: Vec<u8>,
    buf_at: u64,
    pos: u64,
    done: bool,
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
        if let Err(e) = self.log.io.read_at(&mut self.buf, self.pos) {
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
        /// Its flags ([`COMMIT`]).
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
    type Item = Result<Record, StoreError>;

    /// Records the store believes valid: a malformed one is an error (damage).
    fn next(&mut self) -> Option<Self::Item> {
        match self.next_read() {
            Ok(Read::Record(r)) => Some(Ok(r)),
            Ok(Read::End) => None,
            Ok(Read::Bad { why, .. }) => Some(Err(StoreError::Damaged(format!("op log: {why}")))),
            Err(e) => {
                self.done = true;
                Some(Err(StoreError::Log(e)))
            }
        }
    }
}

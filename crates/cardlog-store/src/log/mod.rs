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

mod index;
mod io;
mod record;
mod recovery;
mod scan;
mod sigs;

pub(crate) use index::{ContactIndex, LogIndex};
pub use io::{FaultyLog, FileLog, LogError, LogIo};
pub use record::{
    check_record, decode_trusted, frame, set_commit, Record, COMMIT, HEADER_BYTES, ID_AT,
};
pub use recovery::{Committed, Tail, TAIL_CHUNK_OPS};
pub use scan::{Read, ReadRef, Scan};
pub use sigs::{append_sigs, encode_sig, open_sigs, read_sigs, SIGS_FILE, SIG_RECORD_BYTES};

use record::parse_header;

use cardlog_core::OpId;

/// The log file's name in the store directory.
pub const LOG_FILE: &str = "ops.log";

/// The op log over a [`LogIo`].
pub struct OpLog {
    io: Box<dyn LogIo>,
    len: u64,
    /// The file's length once known, 0 before (asking the file again for an empty one is
    /// harmless; a plain u64 keeps the log, and so the replica, small): past `len` it holds
    /// zeros written ahead.
    allocated: u64,
    /// How far ahead small appends extend the file ([`PREALLOCATE_BYTES`] by default).
    preallocate: u64,
}

/// Bytes of op read with a record's header ([`OpLog::read_within`]): a record's first read is
/// 1 KiB, which holds an op of a few writes whole.
const READ_AHEAD: u64 = 1024 - HEADER_BYTES;

/// How far ahead of the records small appends extend the file with zeros. Syncing a write
/// that does not change the file's length needs no journal commit of its metadata (measured:
/// the durable-save ratio of docs/PERFORMANCE.md went from 0.15 to about 0.5); recovery cuts
/// the zeros away after a crash.
pub const PREALLOCATE_BYTES: u64 = 1 << 20;

impl OpLog {
    /// The log over `io`, whose valid records end at `len`.
    pub fn new(io: Box<dyn LogIo>, len: u64) -> Self {
        Self {
            io,
            len,
            allocated: 0,
            preallocate: PREALLOCATE_BYTES,
        }
    }

    /// Sets how far ahead of its records small appends extend the file (0: never). A store
    /// that stays open with few writes (a relay's book among thousands) keeps that many bytes
    /// of zeros on disk while open.
    pub fn set_preallocate(&mut self, bytes: u64) {
        self.preallocate = bytes;
    }

    /// How far ahead of its records small appends extend the file.
    pub fn preallocate(&self) -> u64 {
        self.preallocate
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
    /// writes land in space extended with zeros ahead of time ([`OpLog::set_preallocate`]).
    pub fn append(&mut self, buf: &[u8]) -> Result<(), LogError> {
        let end = self.len + buf.len() as u64;
        let mut allocated = match self.allocated {
            0 => self.io.file_len()?,
            known => known,
        };
        if end > allocated && (buf.len() as u64) * 4 < self.preallocate {
            let from = allocated.max(self.len);
            let zeros = vec![0u8; (end + self.preallocate - from) as usize];
            self.io.write_at(&zeros, from)?;
            allocated = end + self.preallocate;
        }
        self.io.write_at(buf, self.len)?;
        self.len = end;
        self.allocated = allocated.max(end);
        Ok(())
    }

    /// Cuts the zeros written ahead, so a closed store's log ends with its last record.
    pub fn trim(&mut self) -> Result<(), LogError> {
        if self.allocated > self.len {
            self.io.truncate(self.len)?;
            self.allocated = self.len;
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
        self.allocated = len;
        Ok(())
    }

    /// Reads the record at `offset`, which must be below `limit`: its first kilobyte, header
    /// included, in one read (a lookup of a replaced op, in sync or apply,
    /// costs one system call, not two).
    pub fn read_within(&self, offset: u64, limit: u64) -> Result<Read, LogError> {
        self.read_ahead(offset, limit, READ_AHEAD)
    }

    /// [`OpLog::read_within`] reading the header alone first: for a search that tries offset
    /// after offset where few hold a record (`repair` past damage), which would otherwise copy
    /// a kilobyte per byte searched.
    pub fn probe_within(&self, offset: u64, limit: u64) -> Result<Read, LogError> {
        self.read_ahead(offset, limit, 0)
    }

    fn read_ahead(&self, offset: u64, limit: u64, ahead: u64) -> Result<Read, LogError> {
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
        // On the stack: a kilobyte's allocation per read is a large request for glibc's
        // malloc, which first consolidates every small freed chunk (15 % of a full sync's
        // time when it was a `Vec`). The op's bytes are copied out at their exact length.
        let mut ahead_buf = [0u8; (HEADER_BYTES + READ_AHEAD) as usize];
        let first = (limit - offset).min(HEADER_BYTES + ahead.min(READ_AHEAD)) as usize;
        let buf = ahead_buf.get_mut(..first).unwrap_or_default();
        self.io.read_at(buf, offset)?;
        let Some(header) = buf
            .get(..HEADER_BYTES as usize)
            .and_then(|h| <[u8; HEADER_BYTES as usize]>::try_from(h).ok())
        else {
            return Err(LogError::Damaged {
                what: format!("op log: a record's header at byte {offset} was not read whole"),
                offset,
            });
        };
        match parse_header(&header, offset, limit) {
            Ok((flags, id, len)) => {
                let have = first - HEADER_BYTES as usize;
                let bytes = if len <= have {
                    buf.get(HEADER_BYTES as usize..HEADER_BYTES as usize + len)
                        .unwrap_or_default()
                        .to_vec()
                } else {
                    let mut bytes = vec![0u8; len];
                    self.io.read_at(&mut bytes, offset + HEADER_BYTES)?;
                    bytes
                };
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
    pub fn read(&self, offset: u64) -> Result<Record, LogError> {
        self.read_before(offset, self.len)
    }

    /// [`OpLog::read`] of a record that ends by `end`: past the log's length while its open
    /// reads its tail (the length is set once the tail is read).
    pub fn read_before(&self, offset: u64, end: u64) -> Result<Record, LogError> {
        match self.read_within(offset, end)? {
            Read::Record(r) => Ok(r),
            Read::End => Err(LogError::Damaged {
                what: format!("op log: a record at byte {offset}, past the end ({end})"),
                offset,
            }),
            Read::Bad { why, .. } => Err(LogError::Damaged {
                what: format!("op log: {why}"),
                offset,
            }),
        }
    }

    /// Just the id of the record at `offset`.
    pub fn id_at(&self, offset: u64) -> Result<OpId, LogError> {
        if offset + HEADER_BYTES > self.len {
            return Err(LogError::Damaged {
                what: format!(
                    "op log: an id at byte {offset}, past the end ({})",
                    self.len
                ),
                offset,
            });
        }
        let mut id = [0u8; 32];
        self.io.read_at(&mut id, offset + ID_AT)?;
        Ok(OpId(id))
    }

    /// Reads records in order from `from` up to `limit`, in large sequential chunks.
    pub fn scan(&self, from: u64, limit: u64) -> Scan<'_> {
        Scan::new(&*self.io, from, limit)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Records whose op ends just before, at and just after the first read's kilobyte (and
    /// well past it) read back whole and exact by every read path, also when the log's end
    /// cuts the first read short.
    #[test]
    fn a_record_reads_back_exactly_at_every_size_around_the_first_read() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ops.log");
        let mut log = OpLog::new(Box::new(FileLog::open(&path, true).unwrap()), 0);
        let ahead = READ_AHEAD as usize;
        let sizes = [1, 2, ahead - 1, ahead, ahead + 1, 1024, 3 * 1024];
        let mut written = Vec::new();
        for (i, len) in sizes.into_iter().enumerate() {
            let bytes: Vec<u8> = (0..len).map(|b| (b * 7 + i) as u8).collect();
            let id = OpId([i as u8 + 1; 32]);
            let mut buf = Vec::new();
            frame(&mut buf, &id, &bytes, 0);
            let offset = log.len();
            log.append(&buf).unwrap();
            written.push((offset, id, bytes));
        }
        let end = log.len();
        for (offset, id, bytes) in &written {
            let whole = |read: Read| match read {
                Read::Record(r) => (r.offset, r.id, r.bytes),
                other => panic!("record at {offset}: {other:?}"),
            };
            assert_eq!(
                whole(log.read_within(*offset, end).unwrap()),
                (*offset, *id, bytes.clone())
            );
            assert_eq!(
                whole(log.probe_within(*offset, end).unwrap()),
                (*offset, *id, bytes.clone())
            );
            let r = log.read_before(*offset, end).unwrap();
            assert_eq!((r.id, &r.bytes), (*id, bytes));
            // The log's end right after this record: the first read stops there.
            let own_end = offset + HEADER_BYTES + bytes.len() as u64;
            assert_eq!(whole(log.read_within(*offset, own_end).unwrap()).2, *bytes);
            // One byte short of it: cut off, not misread.
            match log.read_within(*offset, own_end - 1).unwrap() {
                Read::Bad { cut_off: true, .. } => {}
                other => panic!("record at {offset} cut short: {other:?}"),
            }
        }
        assert!(matches!(log.read_within(end, end).unwrap(), Read::End));
    }
}

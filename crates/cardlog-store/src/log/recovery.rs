//! Reading the log's tail at open: which records past a point are committed, and whether what
//! follows them is a torn tail (a write cut off by a crash, or zeros written ahead: safe to
//! cut) or damage with data after it (never cut: it could hold saves).

use cardlog_core::SealedOp;

use super::io::LogError;
use super::record::COMMIT;
use super::scan::Read;
use super::OpLog;

/// What the log holds past a point (see [`OpLog::read_tail`]).
#[derive(Debug, Default)]
pub struct Tail {
    /// How many ops the committed records hold.
    pub committed_ops: u64,
    /// Where the committed records end: where the log ends once a torn tail is cut.
    pub committed_end: u64,
    /// `Some(why)` when a damaged record is followed by data that is not a torn tail: the
    /// log must not be cut there.
    pub damaged: Option<String>,
}

/// How many bytes after a bad record are read to tell zeros written ahead from data.
const ZEROS_CHECKED_BYTES_MAX: u64 = 4 << 20;

/// Committed records handed over at once by [`OpLog::read_tail`] (more when one apply call
/// committed more: its records are handed over together).
pub const TAIL_CHUNK_OPS: usize = 16_384;

/// What [`OpLog::read_tail`] hands committed records to, in chunks, in log order.
pub type Committed<'a, E> = &'a mut dyn FnMut(Vec<(u64, SealedOp)>) -> Result<(), E>;

impl OpLog {
    /// Reads the records from `from` to `file_len` (the file's length), checking each op
    /// strictly against its recorded id. Records after the last [`COMMIT`] are not committed.
    /// With `each`, the committed ops are handed to it for replay, in chunks of about
    /// [`TAIL_CHUNK_OPS`] (memory stays bounded by a chunk, not the tail).
    pub fn read_tail<E: From<LogError>>(
        &self,
        from: u64,
        file_len: u64,
        mut each: Option<Committed<'_, E>>,
    ) -> Result<Tail, E> {
        let mut tail = Tail {
            committed_end: from,
            ..Tail::default()
        };
        let mut committed: Vec<(u64, SealedOp)> = Vec::new();
        let mut uncommitted: Vec<(u64, SealedOp)> = Vec::new();
        let mut uncommitted_ops = 0u64;
        let mut bad: Option<(u64, String, bool)> = None;
        let mut scan = self.scan(from, file_len);
        loop {
            match scan.next_read()? {
                Read::Record(r) => {
                    let end = r.end();
                    let op = match r.seal() {
                        Ok(op) => op,
                        Err(e) => {
                            bad = Some((r.offset, e.reason(), end == file_len));
                            break;
                        }
                    };
                    uncommitted_ops += 1;
                    if each.is_some() {
                        uncommitted.push((r.offset, op));
                    }
                    if r.flags & COMMIT != 0 {
                        committed.append(&mut uncommitted);
                        tail.committed_ops += uncommitted_ops;
                        uncommitted_ops = 0;
                        tail.committed_end = end;
                        if let Some(each) = each.as_mut() {
                            if committed.len() >= TAIL_CHUNK_OPS {
                                each(std::mem::take(&mut committed))?;
                            }
                        }
                    }
                }
                Read::End => break,
                Read::Bad {
                    offset,
                    why,
                    cut_off,
                } => {
                    bad = Some((offset, why, cut_off));
                    break;
                }
            }
        }
        if let Some(each) = each.as_mut() {
            if !committed.is_empty() {
                each(committed)?;
            }
        }
        if let Some((offset, why, cut_off)) = bad {
            if !cut_off && !self.zeros_from(offset, file_len)? {
                tail.damaged = Some(why);
            }
        }
        Ok(tail)
    }

    /// Whether the file holds only zero bytes from `offset` to `end` (space a crash left
    /// allocated but unwritten), reading at most a few MiB.
    fn zeros_from(&self, offset: u64, end: u64) -> Result<bool, LogError> {
        if end.saturating_sub(offset) > ZEROS_CHECKED_BYTES_MAX {
            return Ok(false);
        }
        let mut buf = vec![0u8; (end - offset) as usize];
        self.read_raw(&mut buf, offset)?;
        Ok(buf.iter().all(|b| *b == 0))
    }
}

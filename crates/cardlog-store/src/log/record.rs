//! The record: the one place that knows the bytes of an `ops.log` record (docs/FORMAT.md,
//! "The op log"): `[u32 LE op length][u8 flags][32-byte op id][op bytes]`, the last record
//! of every apply call flagged [`COMMIT`]. Framing, header parsing, field offsets and the
//! checks of a record's op against its recorded id all live here.

use cardlog_core::codec::limits;
use cardlog_core::{decode_op, decode_op_unchecked, DecodeError, Op, OpId, SealedOp};

use super::io::LogError;

/// Flag of the last record written by one apply call.
pub const COMMIT: u8 = 1;
/// Where the flags byte sits in a record (after the 4-byte length).
pub const FLAGS_AT: usize = 4;
/// Where the op id sits in a record (after the length and flags).
pub const ID_AT: u64 = 5;
/// Bytes before a record's op bytes: length, flags, id.
pub const HEADER_BYTES: u64 = ID_AT + 32;

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
    pub fn seal(&self) -> Result<SealedOp, LogError> {
        check_record(self.offset, &self.id, &self.bytes, |b| {
            decode_op(b).map(|sealed| {
                let id = sealed.id();
                (sealed, id)
            })
        })
        .map_err(|what| LogError::Damaged {
            what,
            offset: self.offset,
        })
    }

    /// Decodes the op without re-checking its encoding or hash (for records already checked
    /// when they were written; `verify` and `rebuild` use the strict decoder instead).
    pub fn decode_trusted(&self) -> Result<Op, LogError> {
        decode_trusted(self.offset, &self.bytes)
    }
}

/// [`Record::decode_trusted`] of the op bytes of the record at `offset`.
pub fn decode_trusted(offset: u64, bytes: &[u8]) -> Result<Op, LogError> {
    // The record was checked when it was written; its first byte says its op format.
    decode_op_unchecked(bytes).ok_or_else(|| LogError::Damaged {
        what: format!("op log record at byte {offset} does not decode"),
        offset,
    })
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

/// Appends a record for an op to `buf`; returns where its flags byte is in `buf` (see
/// [`set_commit`]).
pub fn frame(buf: &mut Vec<u8>, id: &OpId, bytes: &[u8], flags: u8) -> usize {
    let flags_at = buf.len() + FLAGS_AT;
    // Op bytes are bounded by the op size limit (well under 4 GiB).
    buf.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
    buf.push(flags);
    buf.extend_from_slice(&id.0);
    buf.extend_from_slice(bytes);
    flags_at
}

/// Flags the record whose flags byte is at `flags_at` in `buf` (as [`frame`] returned it)
/// as the last of its apply call.
pub fn set_commit(buf: &mut [u8], flags_at: usize) {
    if let Some(flags) = buf.get_mut(flags_at) {
        *flags |= COMMIT;
    }
}

/// Checks a record header at `offset` (the file's records end at `limit`): its flags, id and
/// op length, or why it is malformed and whether it runs past `limit` (cut off).
pub(super) fn parse_header(
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

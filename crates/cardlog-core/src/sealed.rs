//! Sealing: an op validated and encoded with its id fixed ([`SealedOp`]), the canonical
//! encoding of ops, and their strict decoding.
//!
//! bincode's own decoder is lenient: it accepts non-minimal varints and ignores trailing bytes.
//! Because an op's id is the hash of its bytes, two byte strings for one op would give two ids,
//! so [`decode_op`] rejects input that is not exactly the encoding of what it decoded (checked
//! by length, see the function). A [`SealedOp`] is made only here, by [`Op::seal`] or
//! [`decode_op`]: code that takes one never sees an unchecked op.

use std::sync::Arc;

use bincode::enc::write::SizeWriter;
use bincode::enc::{Encode, EncoderImpl};
use bincode::error::DecodeError as BincodeDecodeError;

use crate::codec::{format_config, limits, OpFormat, OP_FORMAT_VERSION};
use crate::hlc::Hlc;
use crate::id::DeviceId;
use crate::id::OpId;
use crate::op::Write;
use crate::op::{Op, OpInvalid};

impl Op {
    /// Validates and encodes the op in the format this build writes, fixing its id.
    pub fn seal(self) -> Result<SealedOp, EncodeError> {
        self.seal_in(OpFormat::V2)
    }

    /// Validates and encodes the op in `format` (format 1 to rebuild an op of a history
    /// written before books existed), fixing its id.
    pub fn seal_in(self, format: OpFormat) -> Result<SealedOp, EncodeError> {
        self.validate().map_err(EncodeError::Invalid)?;
        let bytes = encode_op_in(&self, format)?;
        Ok(SealedOp::from_parts(self, bytes))
    }
}

/// A valid op with its exact canonical bytes and id. Cheap to clone.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SealedOp {
    inner: Arc<SealedInner>,
}

#[derive(Debug, PartialEq, Eq)]
struct SealedInner {
    op: Op,
    id: OpId,
    bytes: Vec<u8>,
}

impl SealedOp {
    /// Only for bytes that are the canonical encoding of a validated `op`.
    fn from_parts(op: Op, bytes: Vec<u8>) -> Self {
        let id = OpId::of_bytes(&bytes);
        Self {
            inner: Arc::new(SealedInner { op, id, bytes }),
        }
    }

    /// The op's content.
    pub fn op(&self) -> &Op {
        &self.inner.op
    }

    /// The op's id: the hash of [`SealedOp::bytes`].
    pub fn id(&self) -> OpId {
        self.inner.id
    }

    /// The exact canonical bytes (version byte first).
    pub fn bytes(&self) -> &[u8] {
        &self.inner.bytes
    }

    /// The format its bytes are in.
    pub fn format(&self) -> OpFormat {
        match self.inner.bytes.first() {
            Some(1) => OpFormat::V1,
            _ => OpFormat::V2,
        }
    }
}

/// Why an op could not be encoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EncodeError {
    /// The op breaks an invariant.
    #[error("invalid op: {0}")]
    Invalid(#[from] OpInvalid),
    /// The encoded op would exceed the size limit.
    #[error("the encoded op would be {len} bytes, more than the {max}-byte op limit")]
    TooLarge {
        /// The encoded length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// bincode refused (writing into memory does not fail in practice).
    #[error("encoding failed: {0}")]
    Bincode(String),
}

/// Why bytes are not a valid op. Each variant is a distinct fault a user or peer can act on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// No bytes at all.
    #[error("empty input: an op starts with a version byte")]
    Empty,
    /// More bytes than any op may have.
    #[error("{len} bytes is larger than the {max}-byte op limit")]
    TooLarge {
        /// Input length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The version byte is not one this build reads.
    #[error("unknown op format version {found} (this build reads versions 1 to {supported})")]
    UnknownVersion {
        /// The byte found.
        found: u8,
        /// The newest version this build reads.
        supported: u8,
    },
    /// The input ends inside the op.
    #[error("truncated: the input ends in the middle of the op")]
    Truncated,
    /// A length prefix claims more than the decoder may allocate
    /// ([`limits::DECODED_BYTES_MAX`]).
    #[error("a length prefix claims more than the {max} bytes decoding may allocate")]
    LengthTooLarge {
        /// The limit.
        max: usize,
    },
    /// Bytes follow the op.
    #[error("{count} trailing bytes after the op")]
    TrailingBytes {
        /// How many.
        count: usize,
    },
    /// The bytes decode, but are not the canonical encoding (for example a non-minimal varint).
    #[error("not canonical: the bytes decode but re-encode differently (non-minimal integer or similar) at offset {offset}")]
    NonCanonical {
        /// First differing byte offset.
        offset: usize,
    },
    /// The bytes do not follow the op layout (bad enum tag, bad UTF-8, bad boolean…).
    #[error("malformed op: {0}")]
    Malformed(String),
    /// The op decodes canonically but breaks an invariant.
    #[error("invalid op: {0}")]
    Invalid(#[from] OpInvalid),
}

/// Encodes an op in the format this build writes: the version byte, then its bincode body.
/// Does not validate (see [`Op::seal`]).
pub fn encode_op(op: &Op) -> Result<Vec<u8>, EncodeError> {
    encode_op_in(op, OpFormat::V2)
}

/// The fields of a format-1 body, in order (format 1 has no member changes).
type BodyV1<'a> = (
    &'a DeviceId,
    &'a u64,
    &'a Option<OpId>,
    &'a Hlc,
    &'a Vec<Write>,
);

fn body_v1(op: &Op) -> BodyV1<'_> {
    (&op.author, &op.seq, &op.prev, &op.hlc, &op.writes)
}

/// [`encode_op`] in a chosen format. Member changes cannot be written in format 1.
pub fn encode_op_in(op: &Op, format: OpFormat) -> Result<Vec<u8>, EncodeError> {
    let mut bytes = Vec::with_capacity(128);
    bytes.push(format.byte());
    // bincode does not apply the configured limit when encoding; the length is checked below.
    let written = match format {
        OpFormat::V1 if !op.members.is_empty() => {
            return Err(EncodeError::Invalid(OpInvalid::MembersInFormat1))
        }
        OpFormat::V1 => bincode::encode_into_std_write(body_v1(op), &mut bytes, format_config()),
        OpFormat::V2 => bincode::encode_into_std_write(op, &mut bytes, format_config()),
    };
    written.map_err(|e| EncodeError::Bincode(e.to_string()))?;
    if bytes.len() > limits::OP_BYTES_MAX {
        return Err(EncodeError::TooLarge {
            len: bytes.len(),
            max: limits::OP_BYTES_MAX,
        });
    }
    Ok(bytes)
}

/// Decodes an op's bytes in their format without the checks of [`decode_op`]: for bytes that
/// were checked when they were written (the store's own log). `None` if they do not decode.
pub fn decode_op_unchecked(bytes: &[u8]) -> Option<Op> {
    let (&version, body) = bytes.split_first()?;
    match OpFormat::of_byte(version)? {
        OpFormat::V1 => {
            crate::codec::decode_exact::<(DeviceId, u64, Option<OpId>, Hlc, Vec<Write>)>(body)
                .map(from_v1)
        }
        OpFormat::V2 => crate::codec::decode_exact::<Op>(body),
    }
}

fn from_v1((author, seq, prev, hlc, writes): (DeviceId, u64, Option<OpId>, Hlc, Vec<Write>)) -> Op {
    Op {
        author,
        seq,
        prev,
        hlc,
        writes,
        members: Vec::new(),
    }
}

/// Strictly decodes and validates one op from exactly `bytes`, computing its id from them.
pub fn decode_op(bytes: &[u8]) -> Result<SealedOp, DecodeError> {
    let op = decode_strict(bytes)?;
    Ok(SealedOp::from_parts(op, bytes.to_vec()))
}

/// [`decode_op`] for readers that need the op and its id but not its bytes (rebuilding state
/// from a log): the same checks, without keeping a copy of the bytes.
pub fn decode_op_with_id(bytes: &[u8]) -> Result<(Op, OpId), DecodeError> {
    let op = decode_strict(bytes)?;
    Ok((op, OpId::of_bytes(bytes)))
}

/// Decodes `bytes` as one op, checking the version, the size limit, canonical form and the
/// op's invariants.
fn decode_strict(bytes: &[u8]) -> Result<Op, DecodeError> {
    let (&version, body) = bytes.split_first().ok_or(DecodeError::Empty)?;
    if bytes.len() > limits::OP_BYTES_MAX {
        return Err(DecodeError::TooLarge {
            len: bytes.len(),
            max: limits::OP_BYTES_MAX,
        });
    }
    let format = OpFormat::of_byte(version).ok_or(DecodeError::UnknownVersion {
        found: version,
        supported: OP_FORMAT_VERSION,
    })?;
    let (op, used): (Op, usize) = match format {
        OpFormat::V1 => bincode::decode_from_slice(body, format_config())
            .map(|(body, used)| (from_v1(body), used)),
        OpFormat::V2 => bincode::decode_from_slice(body, format_config()),
    }
    .map_err(map_decode_error)?;
    if used != body.len() {
        return Err(DecodeError::TrailingBytes {
            count: body.len() - used,
        });
    }
    // Canonical iff the canonical encoding of what was decoded is exactly as long as the input:
    // every part of an op (fixed-size ids, varints, length-prefixed strings and lists, enum
    // tags, option tags and booleans, which bincode only accepts as 0 or 1) decodes from either
    // its one canonical form or a strictly longer non-minimal varint form, so equal lengths
    // leave no room for any other form. Counting the length avoids re-encoding; the re-encode
    // below only runs to name the offset of non-canonical input.
    let mut sizer = EncoderImpl::new(SizeWriter::default(), format_config());
    match format {
        OpFormat::V1 => body_v1(&op).encode(&mut sizer),
        OpFormat::V2 => op.encode(&mut sizer),
    }
    .map_err(|e| DecodeError::Malformed(e.to_string()))?;
    if sizer.into_writer().bytes_written != body.len() {
        let reencoded =
            encode_op_in(&op, format).map_err(|e| DecodeError::Malformed(e.to_string()))?;
        let offset = reencoded
            .iter()
            .zip(bytes)
            .position(|(a, b)| a != b)
            .unwrap_or(reencoded.len().min(bytes.len()));
        return Err(DecodeError::NonCanonical { offset });
    }
    op.validate()?;
    Ok(op)
}

fn map_decode_error(e: BincodeDecodeError) -> DecodeError {
    match e {
        BincodeDecodeError::UnexpectedEnd { .. } => DecodeError::Truncated,
        BincodeDecodeError::LimitExceeded => DecodeError::LengthTooLarge {
            max: limits::DECODED_BYTES_MAX,
        },
        other => DecodeError::Malformed(other.to_string()),
    }
}

//! The bytes that travel: segment messages (ops, compactly, `segment`), the framed sync
//! messages and files that carry them (`message`), their shared framing (`frame`: checksum and
//! bounded reader), strict LEB128 (`varint`) and the one error for refused bytes (`error`).
//! docs/FORMAT.md is the normative description.

pub mod error;
pub(crate) mod frame;
pub mod message;
pub mod segment;
pub mod varint;

pub use error::WireError;
pub use message::{Fork, Message, Summary};
pub use segment::{
    decode_available_segments, decode_segments, decode_session_segments, decode_signed_segments,
    encode_exact_segments, encode_segments, Decoded, Locate, Resolve, SEGMENT_VERSION,
};

//! The format's one bincode 2.0.1 configuration (little endian, variable-length integers), the
//! size limits on everything decoded, and the helpers every other encoded value (store keys and
//! meta, wire tables) goes through. Ops themselves are encoded and strictly decoded in
//! `sealed.rs`. docs/FORMAT.md is the normative description of the bytes.

use bincode::config::{self, Configuration, LittleEndian, Varint};

/// The version byte that leads every op this build writes ([`OpFormat::V2`]).
pub const OP_FORMAT_VERSION: u8 = 2;

/// An op format: the version byte that leads an op's bytes and decides their layout
/// (docs/FORMAT.md). Format 1 (no member changes) is still read and re-encoded exactly, for
/// histories written before books existed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum OpFormat {
    /// Version 1: author, seq, prev, hlc, writes.
    V1,
    /// Version 2: version 1's fields, then the member changes.
    V2,
}

impl OpFormat {
    /// The version byte.
    pub fn byte(self) -> u8 {
        match self {
            OpFormat::V1 => 1,
            OpFormat::V2 => 2,
        }
    }

    /// The format of a version byte, if this build reads it.
    pub fn of_byte(byte: u8) -> Option<Self> {
        match byte {
            1 => Some(OpFormat::V1),
            2 => Some(OpFormat::V2),
            _ => None,
        }
    }
}

/// Limits on everything decoded, with their units in their names (docs/FORMAT.md, "Limits").
/// No op type nests (a value holds strings, never other values), so there is no depth to bound.
pub mod limits {
    /// Largest encoded op, version byte included.
    pub const OP_BYTES_MAX: usize = 1 << 20;
    /// Most writes in one op.
    pub const WRITES_PER_OP_MAX: usize = 4096;
    /// Most replaced op ids in one write.
    pub const REPLACES_PER_WRITE_MAX: usize = 256;
    /// Longest text (field value, label, address part, custom value).
    pub const TEXT_BYTES_MAX: usize = 256 * 1024;
    /// Longest tag or custom field name, and longest device name.
    pub const NAME_BYTES_MAX: usize = 256;
    /// Most member changes in one op.
    pub const MEMBER_CHANGES_PER_OP_MAX: usize = 256;
    /// Most memory, in bytes, decoding one value may claim. bincode counts every decoded
    /// integer at its width in memory (up to 8 bytes for a 1-byte varint) and reserves a whole
    /// vector before reading its elements (a [`Write`] is far larger in memory than its
    /// smallest encoding), so this is what any valid op of [`OP_BYTES_MAX`] can need: 8 bytes
    /// per input byte plus its largest reservations. It bounds what a length prefix can make
    /// the decoder allocate.
    ///
    /// [`Write`]: crate::Write
    pub const DECODED_BYTES_MAX: usize = 8 * OP_BYTES_MAX
        + WRITES_PER_OP_MAX * std::mem::size_of::<crate::Write>()
        + REPLACES_PER_WRITE_MAX * std::mem::size_of::<crate::OpId>();
}

/// The one bincode configuration of the format. The limit bounds what any length prefix may
/// make the decoder allocate; it does not change the bytes.
pub type FormatConfig =
    Configuration<LittleEndian, Varint, config::Limit<{ limits::DECODED_BYTES_MAX }>>;

/// The format's bincode configuration.
pub fn format_config() -> FormatConfig {
    config::standard()
        .with_little_endian()
        .with_variable_int_encoding()
        .with_limit::<{ limits::DECODED_BYTES_MAX }>()
}

/// Encodes `value` with `config` into a new vector: the one helper for bincode values kept
/// outside ops (store keys and meta, wire tables). Writing into memory has no failure mode in
/// bincode 2.
pub fn encode_with<T: bincode::Encode, C: config::Config>(value: &T, config: C) -> Vec<u8> {
    bincode::encode_to_vec(value, config).unwrap_or_default()
}

/// [`encode_with`] in the format's configuration.
pub fn encode_to_vec<T: bincode::Encode>(value: &T) -> Vec<u8> {
    encode_with(value, format_config())
}

/// Decodes exactly `bytes` with `config`: `None` if they do not decode or bytes are left over.
/// Not a canonicality check (see [`crate::decode_op`] for ops, whose bytes are hashed).
pub fn decode_exact_with<T: bincode::Decode<()>, C: config::Config>(
    bytes: &[u8],
    config: C,
) -> Option<T> {
    match bincode::decode_from_slice(bytes, config) {
        Ok((value, used)) if used == bytes.len() => Some(value),
        _ => None,
    }
}

/// [`decode_exact_with`] in the format's configuration.
pub fn decode_exact<T: bincode::Decode<()>>(bytes: &[u8]) -> Option<T> {
    decode_exact_with(bytes, format_config())
}

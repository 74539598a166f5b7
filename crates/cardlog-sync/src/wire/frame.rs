//! What segment and message framing share: the 16-byte keyed-by-context checksum that closes
//! each of them, and the bounded [`Reader`] both parse with.

use super::error::WireError;
use super::varint;

/// Bytes of the checksum that ends a segment message or a sync message.
pub(crate) const CHECKSUM_BYTES: usize = 16;

/// The first 16 bytes of blake3 in derive-key mode under `context` (each format has its own
/// context, so a segment's checksum never validates a message and vice versa).
pub(crate) fn checksum(context: &str, bytes: &[u8]) -> [u8; CHECKSUM_BYTES] {
    let full = blake3::Hasher::new_derive_key(context)
        .update(bytes)
        .finalize();
    let mut out = [0u8; CHECKSUM_BYTES];
    if let Some(head) = full.as_bytes().get(..CHECKSUM_BYTES) {
        out.copy_from_slice(head);
    }
    out
}

/// A cursor over a message's bytes: every read is bounded by what is left.
pub(crate) struct Reader<'a> {
    pub(crate) input: &'a [u8],
}

impl<'a> Reader<'a> {
    pub(crate) fn varint(&mut self) -> Result<u64, WireError> {
        varint::get(&mut self.input)
    }

    pub(crate) fn bounded(&mut self, what: &'static str, limit: u64) -> Result<u64, WireError> {
        let got = self.varint()?;
        if got > limit {
            return Err(WireError::TooLarge { what, got, limit });
        }
        Ok(got)
    }

    pub(crate) fn bytes(&mut self, n: usize) -> Result<&'a [u8], WireError> {
        if self.input.len() < n {
            return Err(WireError::Truncated);
        }
        let (head, rest) = self.input.split_at(n);
        self.input = rest;
        Ok(head)
    }

    pub(crate) fn array<const N: usize>(&mut self) -> Result<[u8; N], WireError> {
        let bytes = self.bytes(N)?;
        <[u8; N]>::try_from(bytes).map_err(|_| WireError::Truncated)
    }

    pub(crate) fn byte(&mut self) -> Result<u8, WireError> {
        Ok(self.array::<1>()?[0])
    }
}

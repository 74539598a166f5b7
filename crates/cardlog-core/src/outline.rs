//! An op's outline read straight from its bytes: its author, its seq and the contacts it
//! writes, which is what the store's log index keeps per op. Nothing is allocated and no
//! value is decoded (a full decode of a created contact's op allocates every string in it):
//! the index of a million-op log is built from its outlines.
//!
//! The bytes are walked as [`crate::decode_op_unchecked`] reads them (docs/FORMAT.md, "Op"):
//! the version byte, author, seq, prev, timestamp, then each write's contact, path, value and
//! replaced ids, skipped by their lengths, then the end (a format-2 op: an empty list of member
//! changes, then the end). Strings are checked as UTF-8, bools and enum variants as in range,
//! 32-bit integers as such, so bytes the decoder refuses have no outline. An op changing
//! members has none either (there are a few per device): its reader decodes it in full. It
//! is meant for bytes already checked (a store's own log records); strict decoding and the
//! id are [`crate::decode_op`]'s.

use crate::codec::OpFormat;
use crate::id::{ContactId, DeviceId};
use crate::model::{Field, ItemKind};

/// An op's author and seq, from [`outline`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outline {
    /// The op's author.
    pub author: DeviceId,
    /// Its place in the author's chain.
    pub seq: u64,
}

/// Reads the outline of the op whose exact bytes are `bytes` (either op format), putting the
/// contact of each of its writes, in order, in `contacts` (cleared first). `None` if the bytes
/// are not an op's up to the end of its writes; a caller then decodes them in full to say what
/// is wrong.
pub fn outline(bytes: &[u8], contacts: &mut Vec<ContactId>) -> Option<Outline> {
    contacts.clear();
    let mut r = Reader(bytes);
    let format = OpFormat::of_byte(r.byte()?)?;
    let author = DeviceId(r.array()?);
    let seq = r.varint()?;
    match r.byte()? {
        0 => {}
        1 => {
            r.take(32)?;
        }
        _ => return None,
    }
    r.varint()?; // the timestamp's wall clock
    r.varint_u32()?; // and counter
    for _ in 0..r.varint()? {
        contacts.push(ContactId(r.array()?));
        r.path()?;
        match r.byte()? {
            0 => {}
            1 => r.value()?,
            _ => return None,
        }
        let replaced = usize::try_from(r.varint()?).ok()?;
        r.take(replaced.checked_mul(32)?)?;
    }
    // A format-2 op saving contacts has no member changes.
    if format == OpFormat::V2 && r.varint()? != 0 {
        return None;
    }
    r.0.is_empty().then_some(Outline { author, seq })
}

/// `Field` variants (every one decodes, though `formatted_name` is never written).
const FIELDS: u32 = Field::ALL.len() as u32;
/// `ItemKind` variants.
const ITEM_KINDS: u32 = ItemKind::ALL.len() as u32;

/// The bytes not read yet.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let (taken, rest) = self.0.split_at_checked(n)?;
        self.0 = rest;
        Some(taken)
    }

    fn byte(&mut self) -> Option<u8> {
        self.take(1)?.first().copied()
    }

    fn array<const N: usize>(&mut self) -> Option<[u8; N]> {
        self.take(N)?.try_into().ok()
    }

    /// An unsigned integer as the format's varint encodes it (integers, enum variants and
    /// lengths alike): a byte under 251 is the value; 251, 252 and 253 are followed by the
    /// value in 2, 4 and 8 bytes, little endian (bincode 2's `VarintEncoding`).
    fn varint(&mut self) -> Option<u64> {
        match self.byte()? {
            b @ 0..=250 => Some(u64::from(b)),
            251 => Some(u64::from(u16::from_le_bytes(self.array()?))),
            252 => Some(u64::from(u32::from_le_bytes(self.array()?))),
            253 => Some(u64::from_le_bytes(self.array()?)),
            _ => None,
        }
    }

    /// A 32-bit integer (or enum variant): a varint no wider than 4 bytes.
    fn varint_u32(&mut self) -> Option<u32> {
        u32::try_from(self.varint()?).ok()
    }

    /// An enum variant below `variants`.
    fn variant(&mut self, variants: u32) -> Option<u32> {
        self.varint_u32().filter(|v| *v < variants)
    }

    /// A string: its length, then that many bytes of UTF-8.
    fn string(&mut self) -> Option<()> {
        let len = usize::try_from(self.varint()?).ok()?;
        std::str::from_utf8(self.take(len)?).ok().map(|_| ())
    }

    /// A `Path`: its variant, then `Field`, `ItemKind` and item id, or a tag or custom name.
    fn path(&mut self) -> Option<()> {
        match self.varint_u32()? {
            0 => Some(()),
            1 => self.variant(FIELDS).map(|_| ()),
            2 => {
                self.variant(ITEM_KINDS)?;
                self.take(16).map(|_| ())
            }
            3 | 4 => self.string(),
            _ => None,
        }
    }

    /// A `Value`: text, a bool, an item (label, then a text or the seven strings of a postal
    /// address) or presence.
    fn value(&mut self) -> Option<()> {
        match self.varint_u32()? {
            0 => self.string(),
            1 => self.byte().filter(|b| *b <= 1).map(|_| ()),
            2 => {
                self.string()?;
                match self.varint_u32()? {
                    0 => self.string(),
                    1 => (0..7).try_for_each(|_| self.string()),
                    _ => None,
                }
            }
            3 => Some(()),
            _ => None,
        }
    }
}

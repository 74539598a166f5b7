//! The key space of the store's sled database and its record encodings (docs/FORMAT.md, "Store"). One byte tags each
//! kind of key; integers in keys are big endian so key order is numeric order.

use std::collections::BTreeMap;

use cardlog_core::codec::format_config;
use cardlog_core::replay::{ChainHead, Heads};
use cardlog_core::{ContactId, Path, ReplicaId};

use crate::error::StoreError;

/// Meta entries: `m` + name.
pub const META: u8 = b'm';
/// Author heads (the summary): `a` + author → seq + op id + hlc.
pub const AUTHOR: u8 = b'a';
/// A contact's registers: `c` + contact → every register of the contact (path, write count,
/// heads). One key per contact (store format 3): a read is one lookup, and a save writes one
/// key per contact it changes.
pub const CONTACT: u8 = b'c';
/// Format 2's register keys: `h` + contact + path. Only an upgrade from format 2 touches them
/// (it removes them).
pub const HEADS_V2: u8 = b'h';

/// The registers of one contact by path: how many writes each has had, and its heads.
pub type ContactRegisters = BTreeMap<Path, (u64, Heads)>;

/// Meta names.
pub mod meta {
    /// Store format version (one byte).
    pub const FORMAT: &[u8] = b"mformat";
    /// This replica's device id.
    pub const REPLICA: &[u8] = b"mreplica";
    /// Where the store was when it last opened (copy detection).
    pub const HOME: &[u8] = b"mhome";
    /// The local hybrid clock's last timestamp and calibration offset.
    pub const CLOCK: &[u8] = b"mclock";
    /// Device ids the store wrote as before it was copied or restored (16 bytes each).
    pub const FORMER: &[u8] = b"mformer";
    /// How far the registers and author heads follow the op log: ops and log bytes covered
    /// (written with every register batch; the log's tail past it is replayed at open).
    pub const APPLIED: &[u8] = b"mapplied";
    /// Present while `rebuild` runs: the registers are not to be trusted.
    pub const REBUILDING: &[u8] = b"mrebuilding";
    /// Sync peers: what each acknowledged holding, and when (written by the facade).
    pub const PEERS: &[u8] = b"mpeers";
    /// Forks found during sync (written by the facade).
    pub const FORKS: &[u8] = b"mforks";
    /// The last clock calibration: peer, offset, round trip, when (written by the facade).
    pub const CALIBRATION: &[u8] = b"mcalibration";
}

fn corrupt(what: &str) -> StoreError {
    StoreError::Corrupt(what.to_owned())
}

fn take<const N: usize>(bytes: &[u8], at: usize, what: &str) -> Result<[u8; N], StoreError> {
    bytes
        .get(at..at + N)
        .and_then(|s| <[u8; N]>::try_from(s).ok())
        .ok_or_else(|| corrupt(what))
}

/// Encodes a value with the format configuration.
pub fn encode<T: bincode::Encode>(value: &T) -> Vec<u8> {
    let mut out = Vec::new();
    // Writing into a Vec has no failure mode in bincode 2.
    let _ = bincode::encode_into_std_write(value, &mut out, format_config());
    out
}

/// Decodes exactly `bytes` as a `T`, naming `what` on failure.
pub fn decode<T: bincode::Decode<()>>(bytes: &[u8], what: &str) -> Result<T, StoreError> {
    match bincode::decode_from_slice(bytes, format_config()) {
        Ok((v, used)) if used == bytes.len() => Ok(v),
        _ => Err(corrupt(what)),
    }
}

/// `a` + author.
pub fn author(author: &ReplicaId) -> Vec<u8> {
    let mut k = Vec::with_capacity(17);
    k.push(AUTHOR);
    k.extend_from_slice(&author.0);
    k
}

/// Parses an author key and value.
pub fn parse_author(k: &[u8], v: &[u8]) -> Result<(ReplicaId, ChainHead), StoreError> {
    Ok((
        ReplicaId(take(k, 1, "author key")?),
        decode(v, "author head")?,
    ))
}

/// `c` + contact.
pub fn contact(contact: &ContactId) -> Vec<u8> {
    let mut k = Vec::with_capacity(17);
    k.push(CONTACT);
    k.extend_from_slice(&contact.0);
    k
}

/// The contact of a contact key.
pub fn parse_contact(k: &[u8]) -> Result<ContactId, StoreError> {
    if k.len() != 17 {
        return Err(corrupt("contact key"));
    }
    Ok(ContactId(take(k, 1, "contact key")?))
}

/// A contact value: its registers in path order.
pub fn contact_value(registers: &ContactRegisters) -> Vec<u8> {
    encode(registers)
}

/// Parses a contact value.
pub fn parse_contact_value(v: &[u8]) -> Result<ContactRegisters, StoreError> {
    decode(v, "contact registers")
}

//! The store's key space and record encodings (docs/FORMAT.md, "Store"). One byte tags each
//! kind of key; integers in keys are big endian so key order is numeric order.

use cardlog_core::codec::format_config;
use cardlog_core::replay::{ChainHead, Heads, WriteKey};
use cardlog_core::{ContactId, Hlc, OpId, Path, ReplicaId};

use crate::error::StoreError;

/// Meta entries: `m` + name.
pub const META: u8 = b'm';
/// The log: `l` + author + seq → application order + op bytes.
pub const LOG: u8 = b'l';
/// Op index: `i` + op id → author + seq + hlc.
pub const INDEX: u8 = b'i';
/// Author heads (the summary): `a` + author → seq + op id + hlc.
pub const AUTHOR: u8 = b'a';
/// Application order: `o` + order → author + seq.
pub const ORDER: u8 = b'o';
/// Register heads: `h` + contact + path → write count + heads.
pub const HEADS: u8 = b'h';
/// Register history: `w` + contact + path length + path + hlc + author + op id → the write.
pub const WRITE: u8 = b'w';

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

fn hlc_bytes(h: Hlc) -> [u8; 12] {
    let mut out = [0u8; 12];
    out[..8].copy_from_slice(&h.wall_ms.to_be_bytes());
    out[8..].copy_from_slice(&h.counter.to_be_bytes());
    out
}

fn hlc_from(bytes: &[u8], at: usize, what: &str) -> Result<Hlc, StoreError> {
    Ok(Hlc {
        wall_ms: u64::from_be_bytes(take(bytes, at, what)?),
        counter: u32::from_be_bytes(take(bytes, at + 8, what)?),
    })
}

/// `l` + author + seq.
pub fn log(author: &ReplicaId, seq: u64) -> Vec<u8> {
    let mut k = Vec::with_capacity(25);
    k.push(LOG);
    k.extend_from_slice(&author.0);
    k.extend_from_slice(&seq.to_be_bytes());
    k
}

/// A log value: application order, then the op's bytes.
pub fn log_value(order: u64, op_bytes: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(8 + op_bytes.len());
    v.extend_from_slice(&order.to_be_bytes());
    v.extend_from_slice(op_bytes);
    v
}

/// Splits a log value into its order and op bytes.
pub fn split_log_value(v: &[u8]) -> Result<(u64, &[u8]), StoreError> {
    let order = u64::from_be_bytes(take(v, 0, "log entry")?);
    Ok((order, v.get(8..).unwrap_or_default()))
}

/// The (author, seq) of a log key.
pub fn parse_log(k: &[u8]) -> Result<(ReplicaId, u64), StoreError> {
    Ok((
        ReplicaId(take(k, 1, "log key")?),
        u64::from_be_bytes(take(k, 17, "log key")?),
    ))
}

/// `i` + op id.
pub fn index(op: &OpId) -> Vec<u8> {
    let mut k = Vec::with_capacity(33);
    k.push(INDEX);
    k.extend_from_slice(&op.0);
    k
}

/// Where an op is: its author, seq and timestamp.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Located {
    /// The author.
    pub author: ReplicaId,
    /// The seq.
    pub seq: u64,
    /// The timestamp.
    pub hlc: Hlc,
}

/// An index value.
pub fn index_value(l: &Located) -> Vec<u8> {
    let mut v = Vec::with_capacity(36);
    v.extend_from_slice(&l.author.0);
    v.extend_from_slice(&l.seq.to_be_bytes());
    v.extend_from_slice(&hlc_bytes(l.hlc));
    v
}

/// Parses an index value.
pub fn parse_index_value(v: &[u8]) -> Result<Located, StoreError> {
    Ok(Located {
        author: ReplicaId(take(v, 0, "op index entry")?),
        seq: u64::from_be_bytes(take(v, 16, "op index entry")?),
        hlc: hlc_from(v, 24, "op index entry")?,
    })
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

/// `o` + order.
pub fn order(order: u64) -> Vec<u8> {
    let mut k = Vec::with_capacity(9);
    k.push(ORDER);
    k.extend_from_slice(&order.to_be_bytes());
    k
}

/// The order of an order key.
pub fn parse_order(k: &[u8]) -> Result<u64, StoreError> {
    Ok(u64::from_be_bytes(take(k, 1, "order key")?))
}

/// An order value: author + seq.
pub fn order_value(author: &ReplicaId, seq: u64) -> Vec<u8> {
    let mut v = Vec::with_capacity(24);
    v.extend_from_slice(&author.0);
    v.extend_from_slice(&seq.to_be_bytes());
    v
}

/// Parses an order value.
pub fn parse_order_value(v: &[u8]) -> Result<(ReplicaId, u64), StoreError> {
    Ok((
        ReplicaId(take(v, 0, "order entry")?),
        u64::from_be_bytes(take(v, 16, "order entry")?),
    ))
}

/// `h` + contact (the prefix of a contact's registers).
pub fn heads_prefix(contact: &ContactId) -> Vec<u8> {
    let mut k = Vec::with_capacity(40);
    k.push(HEADS);
    k.extend_from_slice(&contact.0);
    k
}

/// `h` + contact + path.
pub fn heads(contact: &ContactId, path: &Path) -> Vec<u8> {
    let mut k = heads_prefix(contact);
    k.extend_from_slice(&encode(path));
    k
}

/// The (contact, path) of a heads key.
pub fn parse_heads(k: &[u8]) -> Result<(ContactId, Path), StoreError> {
    let contact = ContactId(take(k, 1, "register key")?);
    let path = decode(k.get(17..).unwrap_or_default(), "register key")?;
    Ok((contact, path))
}

/// A heads value: how many writes the register has had, then its heads.
pub fn heads_value(writes: u64, heads: &Heads) -> Vec<u8> {
    encode(&(writes, heads))
}

/// Parses a heads value.
pub fn parse_heads_value(v: &[u8]) -> Result<(u64, Heads), StoreError> {
    decode(v, "register heads")
}

/// `w` + contact + path length + path (the prefix of one register's history).
pub fn write_prefix(contact: &ContactId, path: &Path) -> Vec<u8> {
    let path = encode(path);
    let mut k = Vec::with_capacity(19 + path.len() + 60);
    k.push(WRITE);
    k.extend_from_slice(&contact.0);
    // Path encodings are bounded by the op size limit; a u32 length keeps prefixes unambiguous.
    k.extend_from_slice(&(path.len() as u32).to_be_bytes());
    k.extend_from_slice(&path);
    k
}

/// The history key of one write.
pub fn write(contact: &ContactId, path: &Path, key: &WriteKey) -> Vec<u8> {
    let mut k = write_prefix(contact, path);
    k.extend_from_slice(&hlc_bytes(key.hlc));
    k.extend_from_slice(&key.author.0);
    k.extend_from_slice(&key.op.0);
    k
}

//! The key space of the store's sled database and its record encodings (docs/FORMAT.md, "Store"). One byte tags each
//! kind of key; integers in keys are big endian so key order is numeric order.

use cardlog_core::codec::{decode_exact_with, encode_to_vec, format_config};
use cardlog_core::replay::{ChainTip, Heads};
use cardlog_core::{listing_key_contact, listing_key_name, ContactId, ContactRow, DeviceId, Path};

use super::contact_value;
use super::kv::KvBatch;
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
/// Chain-tip signatures: `s` + author + seq (u64 BE) → the signed op's id (32), the
/// author's public key (32) and the signature (64).
pub const SIGNATURE: u8 = b's';
/// The name index: `n` + the contact's listing key (core's `listing_key`: display-name order
/// as bytes, ending in the contact id) → the contact's row ([`row_value`]). Pages of contacts
/// and lists of rows walk it in order.
pub const NAME: u8 = b'n';
/// Name index version 2's second half: `N` + contact → its listing key. Version 3 writes
/// none (a save finds the entry to remove from the contact's registers before it, which it
/// reads anyway); a build removes those a version-2 index left.
pub const NAME_OF: u8 = b'N';
/// The name index's column widths: `w` + column ([`WIDTH_NAME`] or [`WIDTH_FIRST`]) +
/// deleted (0 or 1) + width in chars (u32 BE) → how many entries have that width there (u64
/// BE, never 0: a width no entry has has no key). What an aligned listing needs before its
/// first row, kept with the entries ([`width_keys`]).
pub const WIDTH: u8 = b'w';
/// [`WIDTH`]'s column of display names (core's `ContactRow::name`).
pub const WIDTH_NAME: u8 = b'n';
/// [`WIDTH`]'s column of first phones or e-mails (core's `ContactRow::phone_or_email`).
pub const WIDTH_FIRST: u8 = b'f';
/// Membership ops: `u` + op id → the op's bytes, or where its record is in the op log
/// ([`membership_value`]). Read whole at open.
pub const MEMBERSHIP: u8 = b'u';
/// Sync peers: `p` + peer device id → what it acknowledged holding and when (the facade's
/// record). One key per peer, so a session rewrites its own peer's record only; format 5
/// stores written before kept them all under `mpeers`, which the first write splits.
pub const PEER: u8 = b'p';

/// The listing order's version the name index follows (the value of `meta::NAMES`): 4 since
/// it keeps its column widths (`w`); 3 had no `N` keys (2 had them; 1 held no rows either). Any change to what an entry is
/// (core's `listing_key`, `ContactRow::of`, [`row_value`]) needs a new version: a save finds
/// the entry it replaces by computing it from the registers, so an index built another way
/// would keep entries no save removes (until `verify` names them and `rebuild` rewrites).
pub const NAME_INDEX_VERSION: u8 = 4;

/// Every register of one contact by path (core's type: what a save reads and a store keeps).
pub use cardlog_core::replay::ContactRegisters;

/// Meta names.
pub mod meta {
    /// Store format version (one byte).
    pub const FORMAT: &[u8] = b"mformat";
    /// This replica's device id.
    pub const REPLICA: &[u8] = b"mreplica";
    /// Where the store was when it last opened (copy detection).
    pub const HOME: &[u8] = b"mhome";
    /// The clock's calibration: its offset and when it was taken (docs/FORMAT.md).
    pub const CLOCK: &[u8] = b"mclock";
    /// Device ids the store wrote as before it was copied or restored (16 bytes each).
    pub const FORMER: &[u8] = b"mformer";
    /// How far the registers and author heads follow the op log: ops and log bytes covered
    /// (written with every register batch; the log's tail past it is replayed at open).
    pub const APPLIED: &[u8] = b"mapplied";
    /// Present while `rebuild` runs: the registers are not to be trusted.
    pub const REBUILDING: &[u8] = b"mrebuilding";
    /// Sync peers, all in one record (written by the facade before peers had a key each,
    /// [`super::PEER`]; read while it lasts, removed by the next peer write).
    pub const PEERS: &[u8] = b"mpeers";
    /// Forks found during sync (written by the facade).
    pub const FORKS: &[u8] = b"mforks";
    /// The last clock calibration: peer, offset, round trip, when (written by the facade).
    pub const CALIBRATION: &[u8] = b"mcalibration";
    /// The device this replica is paired with (its relay): device id and address, if given
    /// (written by the facade; docs/SECURITY.md, "Who may connect").
    pub const PAIRED: &[u8] = b"mpaired";
    /// The address book this replica belongs to (16 bytes); absent until it founds or joins
    /// one.
    pub const BOOK: &[u8] = b"mbook";
    /// The op log offsets (u64 BE each) of withdrawn ops (this device's own, taken back after
    /// a restore in place, or a branch of another's chain its author gave up): passed over by
    /// every read of the log (docs/FORMAT.md, "Store").
    pub const WITHDRAWN: &[u8] = b"mwithdrawn";
    /// Of those, the offsets of the ops not yet written again on the device's chain.
    pub const REISSUE: &[u8] = b"mreissue";
    /// Present (one byte, 1) while a peer is known to hold this device's own chain otherwise
    /// than it does and the ops are not taken back yet (written by the facade).
    pub const RESTORED: &[u8] = b"mrestored";
    /// Branches of other devices' chains a peer held where this replica holds others, kept
    /// (bounded) to give back to their author if it was restored (written by the facade).
    pub const BRANCHES: &[u8] = b"mbranches";
    /// Branches of other devices' chains handed on for their author alone: the rest of a
    /// branch given up, withdrawn elsewhere, that this replica never held the base of
    /// (bounded; written by the facade).
    pub const HANDED: &[u8] = b"mhanded";
    /// Signatures of other devices' ops withdrawn here, kept by op id (bounded; written by
    /// the facade): a signature held by seq is replaced when the author's next op at that
    /// seq arrives, and the withdrawn op may still be owed to its author.
    pub const WITHDRAWN_SIGS: &[u8] = b"mwsigs";
    /// While an op listed for re-issue waits for another device's copy of an op it names:
    /// how many more attempts it waits (one byte; written by the facade).
    pub const REISSUE_WAIT: &[u8] = b"mreissuewait";
    /// Ops of this device's own chain, by id, that a peer held where this device holds later
    /// copies of all of them: a branch it gave up before a restore made it forget (bounded;
    /// written by the facade). A take back also accepts one as the op below an own branch
    /// given back later (the rest of that branch).
    pub const GIVEN_UP: &[u8] = b"mgivenup";
    /// The copies on this device's chain of ops it gave up ([`GIVEN_UP`]), by the given-up
    /// op's id: what an own op given back later that names one names instead (bounded;
    /// written by the facade).
    pub const GIVEN_UP_COPIES: &[u8] = b"mgivencopies";
    /// Covers (`store/cover.rs`): ops of removed devices' chains this store could not store
    /// that prove void ops it holds, each continuing its author's chain held here up to an op
    /// whose signature came with them, where no signature kept covers the ops held (the
    /// author's signature was of an op withdrawn elsewhere). Passed on with the ops they cover
    /// (bounded; written by the store with the received signatures).
    pub const COVERS: &[u8] = b"mcovers";
    /// Present once the name index holds every contact: four bytes, the index's version
    /// ([`super::NAME_INDEX_VERSION`]) and the Unicode version of the case tables that
    /// lowercased the names. A store without it, or with another, builds it at its next open.
    pub const NAMES: &[u8] = b"mnames";
    /// How many rebuilds the state has been through (`store/changes.rs`): *bincode* `u64`.
    pub const EPOCH: &[u8] = b"mepoch";
    /// Present (one byte, 1) in a store that keeps no contact state (`Keeps::OpsOnly`: no
    /// `c`, `n` or `w` keys); absent in one that does.
    pub const KEEPS: &[u8] = b"mkeeps";
}

/// The key of the signature of `author`'s op at `seq`.
pub fn signature(author: &DeviceId, seq: u64) -> Vec<u8> {
    let mut k = Vec::with_capacity(25);
    k.push(SIGNATURE);
    k.extend_from_slice(&author.0);
    k.extend_from_slice(&seq.to_be_bytes());
    k
}

/// The author and seq of a signature key ([`signature`]), or `None` if `key` is not one.
pub fn parse_signature(key: &[u8]) -> Option<(DeviceId, u64)> {
    let (&prefix, rest) = key.split_first()?;
    if prefix != SIGNATURE || rest.len() != 24 {
        return None;
    }
    let author = DeviceId(rest.get(..16)?.try_into().ok()?);
    let seq = u64::from_be_bytes(rest.get(16..)?.try_into().ok()?);
    Some((author, seq))
}

/// The key of a membership op.
pub fn membership(op: &cardlog_core::OpId) -> Vec<u8> {
    let mut k = Vec::with_capacity(33);
    k.push(MEMBERSHIP);
    k.extend_from_slice(&op.0);
    k
}

/// A membership op's value under its `u` key ([`membership`]): in a store that keeps contacts,
/// the op's bytes (a device's store holds a few, and its open reads them without the log, so
/// damage in the log leaves it opening read-only); in one that keeps ops only (a relay's book,
/// which holds one per device of the book), the log offset of its record (u64 BE), each read
/// back from the log at open (issue 24: the op's bytes are in the log already).
pub fn membership_value(keeps_contacts: bool, offset: u64, bytes: &[u8]) -> Vec<u8> {
    if keeps_contacts {
        bytes.to_vec()
    } else {
        offset.to_be_bytes().to_vec()
    }
}

/// The log offset a `u` value names ([`membership_value`]), or `None` if it holds the op's
/// bytes (never 8 bytes long: an op's encoding holds its 16-byte author).
pub fn membership_offset(value: &[u8]) -> Option<u64> {
    <[u8; 8]>::try_from(value).ok().map(u64::from_be_bytes)
}

fn corrupt(what: &str) -> StoreError {
    StoreError::undecodable(what)
}

fn take<const N: usize>(bytes: &[u8], at: usize, what: &str) -> Result<[u8; N], StoreError> {
    bytes
        .get(at..at + N)
        .and_then(|s| <[u8; N]>::try_from(s).ok())
        .ok_or_else(|| corrupt(what))
}

/// Encodes a value with the format configuration.
pub fn encode<T: bincode::Encode>(value: &T) -> Vec<u8> {
    encode_to_vec(value)
}

/// Decodes exactly `bytes` as a `T`, naming `what` on failure.
pub fn decode<T: bincode::Decode<()>>(bytes: &[u8], what: &str) -> Result<T, StoreError> {
    decode_with(bytes, format_config(), what)
}

/// `a` + author.
pub fn author(author: &DeviceId) -> Vec<u8> {
    let mut k = Vec::with_capacity(17);
    k.push(AUTHOR);
    k.extend_from_slice(&author.0);
    k
}

/// `p` + peer.
pub fn peer(peer: &DeviceId) -> Vec<u8> {
    let mut k = Vec::with_capacity(17);
    k.push(PEER);
    k.extend_from_slice(&peer.0);
    k
}

/// Parses a peer key.
pub fn parse_peer(k: &[u8]) -> Result<DeviceId, StoreError> {
    if k.len() != 17 {
        return Err(corrupt("peer key"));
    }
    Ok(DeviceId(take(k, 1, "peer key")?))
}

/// Parses an author key and value.
pub fn parse_author(k: &[u8], v: &[u8]) -> Result<(DeviceId, ChainTip), StoreError> {
    Ok((
        DeviceId(take(k, 1, "author key")?),
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

/// `n` + listing key.
pub fn name(listing_key: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(1 + listing_key.len());
    k.push(NAME);
    k.extend_from_slice(listing_key);
    k
}

/// A contact's entry in the name index: its listing key (the `n` key's tail) and its row
/// value (the `n` value: [`row_value`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    /// The contact's listing key.
    pub key: Vec<u8>,
    /// The row value under it.
    pub row: Vec<u8>,
}

/// The name-index writes that list a contact as `new`, given the entry its registers called
/// for before (`old`): nothing when neither changed, the row alone when only it did.
pub fn rename(batch: &mut KvBatch, old: Option<&Listed>, new: Listed) {
    if let Some(old) = old {
        if old.key == new.key {
            if old.row != new.row {
                batch.insert(name(&new.key), new.row);
            }
            return;
        }
        batch.remove(name(&old.key));
    }
    batch.insert(name(&new.key), new.row);
}

/// The [`WIDTH`] keys a name-index entry counts under: its row's name and first phone or
/// e-mail widths, in chars; `None` when the entry does not parse.
pub fn width_keys(listed: &Listed) -> Option<[Vec<u8>; 2]> {
    let row = parse_row(&name(&listed.key), &listed.row).ok()?;
    let (name_width, first_width) = row.widths();
    let key = |column: u8, width: usize| {
        let mut k = vec![WIDTH, column, u8::from(row.deleted)];
        k.extend_from_slice(&u32::try_from(width).unwrap_or(u32::MAX).to_be_bytes());
        k
    };
    Some([key(WIDTH_NAME, name_width), key(WIDTH_FIRST, first_width)])
}

/// A [`WIDTH`] key's column, deleted flag and width.
pub fn parse_width_key(k: &[u8]) -> Result<(u8, bool, usize), StoreError> {
    const WHAT: &str = "name index width key";
    match k {
        [WIDTH, column, deleted @ (0 | 1), w0, w1, w2, w3] => Ok((
            *column,
            *deleted == 1,
            u32::from_be_bytes([*w0, *w1, *w2, *w3]) as usize,
        )),
        _ => Err(corrupt(WHAT)),
    }
}

/// A [`WIDTH`] value: the count.
pub fn width_count(v: &[u8]) -> Result<u64, StoreError> {
    <[u8; 8]>::try_from(v)
        .map(u64::from_be_bytes)
        .map_err(|_| corrupt("name index width count"))
}

/// A contact's `n` value: what its row holds beyond its listing key (which gives the id and
/// the display name): the first phone or e-mail, whether it is deleted, its conflict count.
pub fn row_value(row: &ContactRow) -> Vec<u8> {
    encode(&(&row.phone_or_email, row.deleted, row.conflicts))
}

/// The row of an `n` key (`n` + listing key) and its value.
pub fn parse_row(k: &[u8], v: &[u8]) -> Result<ContactRow, StoreError> {
    const WHAT: &str = "name index entry";
    let listed = k.get(1..).ok_or_else(|| corrupt(WHAT))?;
    let (phone_or_email, deleted, conflicts): (Option<String>, bool, u32) = decode(v, WHAT)?;
    Ok(ContactRow {
        id: listing_key_contact(listed).ok_or_else(|| corrupt(WHAT))?,
        name: listing_key_name(listed).ok_or_else(|| corrupt(WHAT))?,
        phone_or_email,
        deleted,
        conflicts,
    })
}

/// A contact value: its registers, each write key once (`contact_value.rs`).
pub fn contact_value(registers: &ContactRegisters) -> Vec<u8> {
    contact_value::encode(registers)
}

/// Parses a contact value ([`contact_value()`]; format 5's too): never an empty map.
pub fn parse_contact_value(v: &[u8]) -> Result<ContactRegisters, StoreError> {
    contact_value::decode(v)
}

/// Decodes exactly `bytes` with `config`, naming `what` on failure.
fn decode_with<T: bincode::Decode<()>, C: bincode::config::Config>(
    bytes: &[u8],
    config: C,
    what: &str,
) -> Result<T, StoreError> {
    decode_exact_with(bytes, config).ok_or_else(|| corrupt(what))
}

/// Parses a format-2 register key and value (`h` + contact + *bincode* path →
/// *bincode* `(u64, Heads)`), for the upgrade to format 3.
pub fn parse_register_v2(
    k: &[u8],
    v: &[u8],
) -> Result<(ContactId, Path, (u64, Heads)), StoreError> {
    let contact = ContactId(take(k, 1, "format-2 register key")?);
    let path = decode(k.get(17..).unwrap_or_default(), "format-2 register key")?;
    Ok((contact, path, decode(v, "format-2 register")?))
}

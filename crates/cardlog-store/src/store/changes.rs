//! Which contacts the store's state changed for: as it happens (tracked on request, for a
//! subscriber) and since a cursor (read back from the log, for an app that was not running).
//!
//! Every register write after open goes through one of two places: a staged batch
//! (`stage.rs`: saves, received ops) or a rebuild (`verify.rs`: `rebuild`, a retraction, a
//! withdrawal). (The log's tail replayed and a format upgraded at open write registers
//! before anyone can listen.) A staged batch knows the paths its ops wrote; a rebuild compares each contact's
//! registers before and after. While tracking is on, both note what changed here, and
//! [`Store::take_changes`] hands it over.
//!
//! A [`ChangeCursor`] names a point in this store's history: the device, the rebuild epoch,
//! a log offset and the record ending there (so a log restored from a backup and grown back
//! to the same length is told apart). The changes since it are the contacts the ops logged after that offset
//! wrote, for as long as no rebuild has re-derived the state (a rebuild can change any
//! contact without a new op, so it starts a new epoch and older cursors see
//! [`Since::Everything`]).

use std::collections::{BTreeMap, BTreeSet};

use cardlog_core::codec::limits;
use cardlog_core::replay::Summary;
use cardlog_core::{ContactId, DeviceId, OpId, Path};

use super::Store;
use crate::error::StoreError;
use crate::log::{HEADER_BYTES, ID_AT};
use crate::state::keys::{self, ContactRegisters};

/// A contact whose state changed, with the paths (fields and items) whose registers changed.
/// As JSON (core's `json` shapes): `{"contact": "<hex>", "paths": ["given", "phone.<id>"]}`.
#[derive(
    Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
pub struct ContactChange {
    /// The contact.
    pub contact: ContactId,
    /// The paths whose registers changed, in path order. A rebuild that removed a contact's
    /// registers altogether names the paths it had.
    pub paths: Vec<Path>,
}

/// A point in a store's history, to ask later what changed since ([`Store::changes_since`]).
/// Opaque to apps: keep it as the 72 bytes of [`ChangeCursor::to_bytes`] (or its hex
/// `Display`) and give it back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ChangeCursor {
    device: DeviceId,
    epoch: u64,
    offset: u64,
    /// The log record ending at `offset` (its start and the first 16 bytes of its op id):
    /// a log restored from a backup and grown back to the same length holds another record
    /// there. Zeros when `offset` is 0.
    last_start: u64,
    last_id: [u8; 16],
}

/// Bytes of an encoded [`ChangeCursor`].
pub const CHANGE_CURSOR_BYTES: usize = 72;

/// A change cursor that does not decode: it was not made by [`ChangeCursor::to_bytes`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a change cursor: {0}")]
pub struct CursorParseError(&'static str);

impl ChangeCursor {
    /// A cursor that answers [`Since::Everything`] on any store (an app's first run, or a
    /// change whose end could not be read carries it).
    pub fn everything(device: DeviceId) -> Self {
        Self {
            device,
            epoch: u64::MAX,
            offset: u64::MAX,
            last_start: 0,
            last_id: [0; 16],
        }
    }

    /// The byte of the op log the cursor stands at: everything before it was logged when
    /// the cursor was made.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// The cursor's bytes: device id, epoch, log offset and the start of the record ending
    /// there (big-endian), that record's op id (16 bytes), then 16 bytes of their blake3
    /// hash, which tells a mistyped cursor from one of another store.
    pub fn to_bytes(&self) -> [u8; CHANGE_CURSOR_BYTES] {
        let mut body = Vec::with_capacity(CHANGE_CURSOR_BYTES);
        body.extend_from_slice(&self.device.0);
        body.extend_from_slice(&self.epoch.to_be_bytes());
        body.extend_from_slice(&self.offset.to_be_bytes());
        body.extend_from_slice(&self.last_start.to_be_bytes());
        body.extend_from_slice(&self.last_id);
        let check = blake3::hash(&body);
        body.extend(check.as_bytes().iter().take(16));
        let mut out = [0u8; CHANGE_CURSOR_BYTES];
        out.copy_from_slice(&body);
        out
    }

    /// Reads back [`ChangeCursor::to_bytes`].
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, CursorParseError> {
        const SIZE: CursorParseError = CursorParseError("not 72 bytes");
        if bytes.len() != CHANGE_CURSOR_BYTES {
            return Err(SIZE);
        }
        let (body, check) = bytes.split_at(CHANGE_CURSOR_BYTES - 16);
        if blake3::hash(body).as_bytes().get(..16) != Some(check) {
            return Err(CursorParseError("its check does not match"));
        }
        let (device, rest) = body.split_at(16);
        let (epoch, rest) = rest.split_at(8);
        let (offset, rest) = rest.split_at(8);
        let (last_start, last_id) = rest.split_at(8);
        let number = |b: &[u8]| {
            <[u8; 8]>::try_from(b)
                .map(u64::from_be_bytes)
                .map_err(|_| SIZE)
        };
        Ok(Self {
            device: DeviceId(<[u8; 16]>::try_from(device).map_err(|_| SIZE)?),
            epoch: number(epoch)?,
            offset: number(offset)?,
            last_start: number(last_start)?,
            last_id: <[u8; 16]>::try_from(last_id).map_err(|_| SIZE)?,
        })
    }

    /// The cursor's short form, for a record the store's own database keeps (a sync peer's
    /// place in the op log, `cardlog::Replica`): epoch, log offset and the length of the record
    /// ending there as varints (the format's bincode), then that record's op id (16 bytes).
    /// No device id (the store's own, given back to [`ChangeCursor::from_short_bytes`]) and no
    /// check hash (the database's records check themselves): at most 43 bytes, never
    /// [`CHANGE_CURSOR_BYTES`], where [`ChangeCursor::to_bytes`] takes 72 (a relay keeps one
    /// per device of a book).
    pub fn to_short_bytes(&self) -> Vec<u8> {
        let back = self.offset.saturating_sub(self.last_start);
        cardlog_core::codec::encode_to_vec(&(self.epoch, self.offset, back, self.last_id))
    }

    /// Reads back [`ChangeCursor::to_short_bytes`] as a cursor of `device`'s store; `None`
    /// if the bytes are not exactly a short form.
    pub fn from_short_bytes(device: DeviceId, bytes: &[u8]) -> Option<Self> {
        let (epoch, offset, back, last_id): (u64, u64, u64, [u8; 16]) =
            cardlog_core::codec::decode_exact(bytes)?;
        Some(Self {
            device,
            epoch,
            offset,
            last_start: offset.checked_sub(back)?,
            last_id,
        })
    }
}

impl std::fmt::Display for ChangeCursor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for b in self.to_bytes() {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

/// As its 144 hex digits (what `Display` writes).
impl serde::Serialize for ChangeCursor {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for ChangeCursor {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

impl std::str::FromStr for ChangeCursor {
    type Err = CursorParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        const HEX: CursorParseError = CursorParseError("not 144 hex digits");
        if s.len() != CHANGE_CURSOR_BYTES * 2 {
            return Err(HEX);
        }
        let digit = |c: u8| (c as char).to_digit(16).ok_or(HEX);
        let bytes = s
            .as_bytes()
            .chunks_exact(2)
            .map(|pair| match pair {
                [hi, lo] => Ok((digit(*hi)? * 16 + digit(*lo)?) as u8),
                _ => Err(HEX),
            })
            .collect::<Result<Vec<u8>, _>>()?;
        Self::from_bytes(&bytes)
    }
}

/// What changed since a cursor. As JSON `{"changes": [{"contact", "paths"}]}` or
/// `"everything"`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Since {
    /// These contacts (in contact order), each with the paths written. It may name a contact
    /// whose visible state did not change (a write that lost to a concurrent one, a write of
    /// a removed device); it never leaves out one that did.
    Changes(Vec<ContactChange>),
    /// The cursor is of another store or device id, of before a rebuild, or past this
    /// store's history (a backup restored): read every contact again.
    Everything,
}

fn id_prefix(id: &OpId) -> [u8; 16] {
    let mut out = [0u8; 16];
    out.iter_mut().zip(id.0.iter()).for_each(|(o, b)| *o = *b);
    out
}

/// Changes noted while tracking is on, per contact.
#[derive(Debug, Default)]
pub(crate) struct Noted(BTreeMap<ContactId, BTreeSet<Path>>);

impl Noted {
    fn note(&mut self, contact: ContactId, paths: impl IntoIterator<Item = Path>) {
        self.0.entry(contact).or_default().extend(paths);
    }
}

/// The paths whose registers differ between `before` and `after`.
pub(crate) fn changed_paths(before: &ContactRegisters, after: &ContactRegisters) -> Vec<Path> {
    let mut paths: BTreeSet<Path> = BTreeSet::new();
    for (path, value) in before {
        if after.get(path) != Some(value) {
            paths.insert(path.clone());
        }
    }
    for path in after.keys() {
        if !before.contains_key(path) {
            paths.insert(path.clone());
        }
    }
    paths.into_iter().collect()
}

impl Store {
    /// Starts (or stops) noting which contacts each write changes, for
    /// [`Store::take_changes`]. Off by default: nothing is kept for a store nobody asks.
    pub fn track_changes(&mut self, on: bool) {
        self.noted = on.then(Box::default);
    }

    /// The changes noted since tracking started or since the last call, in contact order;
    /// empty when tracking is off.
    pub fn take_changes(&mut self) -> Vec<ContactChange> {
        let Some(noted) = self.noted.as_mut() else {
            return Vec::new();
        };
        std::mem::take(&mut noted.0)
            .into_iter()
            .map(|(contact, paths)| ContactChange {
                contact,
                paths: paths.into_iter().collect(),
            })
            .collect()
    }

    /// Notes that a write changed `paths` of `contact` (while tracking).
    pub(super) fn note_change(
        &mut self,
        contact: ContactId,
        paths: impl IntoIterator<Item = Path>,
    ) {
        if let Some(noted) = self.noted.as_mut() {
            noted.note(contact, paths);
        }
    }

    /// Notes what a rebuild changed of the contact under `key`: its registers `before` and
    /// `after` (`None`: none). A value that does not decode counts as no registers: the
    /// rebuild replaces it either way.
    pub(super) fn note_rebuilt(&mut self, key: &[u8], before: Option<&[u8]>, after: Option<&[u8]>) {
        let Ok(contact) = keys::parse_contact(key) else {
            return;
        };
        let registers = |v: Option<&[u8]>| {
            v.and_then(|v| keys::parse_contact_value(v).ok())
                .unwrap_or_default()
        };
        let paths = changed_paths(&registers(before), &registers(after));
        self.note_change(contact, paths);
    }

    /// Whether changes are being noted.
    pub(super) fn tracks_changes(&self) -> bool {
        self.noted.is_some()
    }

    /// Where the store's history stands now: [`Store::changes_since`] it names what changes
    /// after this. Right after a write it costs nothing; otherwise it finds the log's last
    /// record by reading back from the log's end (a few KiB), and only where that fails (a
    /// withdrawn record last) through the log index (built on first use, one read of the log).
    pub fn change_cursor(&self) -> Result<ChangeCursor, StoreError> {
        let offset = self.log.len();
        let (last_start, last_id) = match *self.last_record {
            _ if offset == 0 => (0, [0; 16]),
            Some((start, end, id)) if end == offset => (start, id),
            _ => self.find_last_record()?,
        };
        Ok(self.cursor_at(offset, last_start, last_id))
    }

    /// This store's cursor at `offset`, where the record starting at `last_start` (id prefix
    /// `last_id`) ends.
    fn cursor_at(&self, offset: u64, last_start: u64, last_id: [u8; 16]) -> ChangeCursor {
        ChangeCursor {
            device: self.device,
            epoch: self.epoch,
            offset,
            last_start,
            last_id,
        }
    }

    /// Where in the log the first op `summary` lacks is (the smallest offset among what
    /// [`Store::offsets_since`] gives, found per author: each chain's offsets rise with its
    /// seqs), or `None` when it lacks nothing held here.
    pub fn first_offset_since(&self, summary: &Summary) -> Result<Option<u64>, StoreError> {
        let mut first: Option<u64> = None;
        for (author, head) in &self.summary {
            let from = summary.get(author).map_or(0, |h| h.seq).saturating_add(1);
            if from > head.seq {
                continue;
            }
            let found = self.index()?.at_seq(author, from).ok_or_else(|| {
                StoreError::damaged(format!(
                    "the log index lacks {author}'s op {from}, which the summary holds"
                ))
            })?;
            first = Some(first.map_or(found, |f| f.min(found)));
        }
        Ok(first)
    }

    /// A cursor at the end of the last op's record that starts before `offset` (at the log's
    /// start when none does): a place no later than `offset`, everything before it logged. A
    /// peer's record names such a place when it is the one its device has seen all of
    /// (cardlog's `record_peer`).
    pub fn cursor_before(&self, offset: u64) -> Result<ChangeCursor, StoreError> {
        let index = self.index()?;
        let last = self
            .summary
            .iter()
            .filter_map(|(author, head)| {
                let chain = index.seq_range(author, 1, head.seq);
                // (A chain's offsets rise with its seqs: the index appends in log order.)
                let before = chain.partition_point(|&at| at < offset);
                before.checked_sub(1).and_then(|i| chain.get(i)).copied()
            })
            .max();
        Ok(match last {
            None => self.cursor_at(0, 0, [0; 16]),
            Some(start) => {
                let record = self.log.read(start)?;
                self.cursor_at(record.end(), start, id_prefix(&record.id))
            }
        })
    }

    /// The start and id prefix of the record ending at the log's end: the latest of the
    /// authors' tips in the index, else (a withdrawn record last) a scan of the log.
    fn find_last_record(&self) -> Result<(u64, [u8; 16]), StoreError> {
        if let Some(found) = self.last_record_by_tips()? {
            return Ok(found);
        }
        let end = self.log.len();
        let index = self.index()?;
        let latest = self
            .summary
            .iter()
            .filter_map(|(author, tip)| index.at_seq(author, tip.seq))
            .max();
        if let Some(start) = latest {
            let record = self.log.read(start)?;
            if record.end() == end {
                return Ok((start, id_prefix(&record.id)));
            }
        }
        let mut last = None;
        for record in self.log.scan(0, end) {
            let record = record?;
            last = Some((record.offset, id_prefix(&record.id)));
        }
        last.ok_or_else(|| StoreError::damaged("the op log holds no record before its end".into()))
    }

    /// The record ending at the log's end, found without the index: the last record appended
    /// is its author's chain tip (unless it was withdrawn), whose id the summary holds. The
    /// log's last bytes are read, in windows growing from 4 KiB up to the largest record, and
    /// searched back for a header whose length ends its record at the log's end and whose id
    /// is a tip's; the record found there is read whole and its op hashed to confirm it.
    /// `None` when none is (the caller then asks the index).
    fn last_record_by_tips(&self) -> Result<Option<(u64, [u8; 16])>, StoreError> {
        let end = self.log.len();
        let tips: BTreeSet<[u8; 32]> = self.summary.values().map(|t| t.op.0).collect();
        let header = HEADER_BYTES as usize;
        let largest = (header + limits::OP_BYTES_MAX) as u64;
        let mut window = 4096u64;
        loop {
            let from = end.saturating_sub(window);
            let mut buf = vec![0u8; (end - from) as usize];
            self.log.read_raw(&mut buf, from)?;
            let mut rel = buf.len().saturating_sub(header + 1);
            loop {
                let len = buf
                    .get(rel..rel + 4)
                    .and_then(|b| <[u8; 4]>::try_from(b).ok())
                    .map(u32::from_le_bytes);
                let id = buf
                    .get(rel + ID_AT as usize..rel + header)
                    .and_then(|b| <[u8; 32]>::try_from(b).ok());
                if let (Some(len), Some(id)) = (len, id) {
                    let ends_at_end =
                        (rel as u64) + (header as u64) + u64::from(len) == buf.len() as u64;
                    if ends_at_end && tips.contains(&id) {
                        // Confirmed by the record itself: whole, and its op hashing to that id
                        // (an op's value can hold bytes that look like a header; such a
                        // candidate is passed over, never an error).
                        let start = from + rel as u64;
                        let whole = self
                            .log
                            .read(start)
                            .ok()
                            .filter(|r| r.end() == end && r.id.0 == id)
                            .is_some_and(|r| r.seal().is_ok());
                        if whole {
                            return Ok(Some((start, id_prefix(&OpId(id)))));
                        }
                    }
                }
                if rel == 0 {
                    break;
                }
                rel -= 1;
            }
            if from == 0 || window >= largest {
                return Ok(None);
            }
            window = (window * 16).min(largest);
        }
    }

    /// Whether `cursor` names a place in this store's op log as it is: the same device and
    /// rebuild epoch, and the record it ends after still there, ending where it did. A log
    /// restored from a backup, or cut by a crash after a bulk write (or by a rebuild that
    /// accepted a shorter log), and grown back holds another record there. Reads one record.
    pub fn holds_cursor(&self, cursor: &ChangeCursor) -> bool {
        if cursor.device != self.device
            || cursor.epoch != self.epoch
            || cursor.offset > self.log.len()
        {
            return false;
        }
        cursor.offset == 0
            || self.log.read(cursor.last_start).is_ok_and(|record| {
                record.end() == cursor.offset && id_prefix(&record.id) == cursor.last_id
            })
    }

    /// Notes the last record appended (start, end, id) for [`Store::change_cursor`].
    pub(super) fn appended(&mut self, start: u64, end: u64, id: &OpId) {
        *self.last_record = Some((start, end, id_prefix(id)));
    }

    /// The contacts changed since `cursor` (from this store's [`Store::change_cursor`]):
    /// those written by the ops logged after it, read back from the log (the time it takes
    /// grows with the ops since, not with the store). [`Since::Everything`] when the cursor
    /// cannot answer (see [`Since`]).
    pub fn changes_since(&self, cursor: &ChangeCursor) -> Result<Since, StoreError> {
        if !self.holds_cursor(cursor) {
            return Ok(Since::Everything);
        }
        let mut noted = Noted::default();
        for (i, record) in self.log.scan(cursor.offset, self.log.len()).enumerate() {
            let record = match record {
                // The first record is checked whole: a cursor of another history of this
                // device (a backup restored) may fall inside a record.
                Ok(record) if i == 0 && record.seal().is_err() => return Ok(Since::Everything),
                Ok(record) => record,
                Err(_) if i == 0 => return Ok(Since::Everything),
                Err(e) => return Err(e.into()),
            };
            if self.withdrawn.offsets.contains(&record.offset) {
                continue;
            }
            let op = record.decode_trusted()?;
            for write in op.writes {
                noted.note(write.contact, [write.path]);
            }
        }
        Ok(Since::Changes(
            noted
                .0
                .into_iter()
                .map(|(contact, paths)| ContactChange {
                    contact,
                    paths: paths.into_iter().collect(),
                })
                .collect(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The short form's bytes (a peer record's place, docs/FORMAT.md): a refactor cannot
    /// change what a stored record reads.
    #[test]
    fn a_cursors_short_form_has_golden_bytes_and_reads_back_exactly() {
        let device = DeviceId([0xd1; 16]);
        let cursor = ChangeCursor {
            device,
            epoch: 2,
            offset: 70_000,
            last_start: 69_820,
            last_id: [0x5a; 16],
        };
        let short = cursor.to_short_bytes();
        let hex: String = short.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(hex, "02fc70110100b45a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a");
        assert_eq!(ChangeCursor::from_short_bytes(device, &short), Some(cursor));
        let everything = ChangeCursor::everything(device);
        assert_eq!(
            ChangeCursor::from_short_bytes(device, &everything.to_short_bytes()),
            Some(everything)
        );
        assert!(everything.to_short_bytes().len() < CHANGE_CURSOR_BYTES);
        // Not exactly a short form: a byte more, one less, a record longer than its end.
        let mut longer = short.clone();
        longer.push(0);
        assert_eq!(ChangeCursor::from_short_bytes(device, &longer), None);
        assert_eq!(
            ChangeCursor::from_short_bytes(device, &short[..short.len() - 1]),
            None
        );
        let past = cardlog_core::codec::encode_to_vec(&(2u64, 10u64, 11u64, [0u8; 16]));
        assert_eq!(ChangeCursor::from_short_bytes(device, &past), None);
    }
}

//! The log index: where each op is in the op log, by author and seq and by id
//! ([`LogIndex`]), and by contact ([`ContactIndex`]).
//!
//! Both live in memory and are derived from the log alone: each is built by one sequential
//! read of the log the first time something needs it, then kept up to date by every apply.
//! A sync and a lookup by id need the first; only `history` needs the second, so a sync
//! never pays for a table as large as the address book. Opening a store and reading
//! contacts build neither, so they cost the same for ten thousand ops as for a million. Per
//! op the first holds an offset by author and seq and an 8-byte id prefix and offset; the
//! second an offset per contact written (docs/PERFORMANCE.md has the measured memory of a
//! million-op store).

use std::collections::{BTreeSet, HashMap};

use foldhash::fast::RandomState;

use cardlog_core::{outline, ContactId, DeviceId, Op, OpId};

use super::io::LogError;
use super::record::decode_trusted;
use super::scan::ReadRef;
use super::OpLog;

/// Record offsets by author and id.
#[derive(Debug, Default)]
pub(crate) struct LogIndex {
    /// Per author, the offset of seq `n` at `n - 1`.
    by_author: HashMap<DeviceId, Vec<u64>, RandomState>,
    /// The first 8 bytes of an op id → its offset.
    by_id: HashMap<u64, u64, RandomState>,
    /// Ids whose first 8 bytes are shared with an earlier op (rare): full id → offset.
    by_full_id: HashMap<OpId, u64, RandomState>,
}

/// Record offsets by contact.
#[derive(Debug, Default)]
pub(crate) struct ContactIndex {
    /// Per contact, the offsets of the ops that wrote to it, in log order.
    by_contact: HashMap<ContactId, Vec<u64>, RandomState>,
}

/// Reads the log from the start and calls `each` with every record's offset, id, author,
/// seq and the contacts it writes (in write order), but for the records at the offsets in
/// `withdrawn`. Each record is read from the scan's buffer as an outline
/// (`cardlog_core::outline`: nothing decoded or allocated); one that has none is decoded in
/// full, which names what is wrong with it.
fn scan_outlines(
    log: &OpLog,
    withdrawn: &BTreeSet<u64>,
    mut each: impl FnMut(u64, &OpId, DeviceId, u64, &[ContactId]),
) -> Result<(), LogError> {
    let mut scan = log.scan(0, log.len());
    let mut contacts = Vec::new();
    loop {
        match scan.next_ref()? {
            ReadRef::Record { offset, .. } if withdrawn.contains(&offset) => {}
            ReadRef::Record {
                offset, id, bytes, ..
            } => match outline(bytes, &mut contacts) {
                Some(o) => each(offset, &id, o.author, o.seq, &contacts),
                None => {
                    let op = decode_trusted(offset, bytes)?;
                    contacts.clear();
                    contacts.extend(op.writes.iter().map(|w| w.contact));
                    each(offset, &id, op.author, op.seq, &contacts);
                }
            },
            ReadRef::End => return Ok(()),
            ReadRef::Bad { why, offset, .. } => {
                return Err(LogError::Damaged {
                    what: format!("op log: {why}"),
                    offset,
                })
            }
        }
    }
}

fn short(id: &OpId) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(id.0.get(..8).unwrap_or(&[0u8; 8]));
    u64::from_be_bytes(b)
}

impl LogIndex {
    /// An empty index with room for `ops` ops.
    pub(crate) fn with_capacity(ops: usize) -> Self {
        Self {
            by_id: HashMap::with_capacity_and_hasher(ops, RandomState::default()),
            ..Self::default()
        }
    }

    /// Reads the log from the start and indexes every record but those at the offsets in
    /// `withdrawn` ([`scan_outlines`]).
    pub(crate) fn build(log: &OpLog, withdrawn: &BTreeSet<u64>) -> Result<Self, LogError> {
        let mut index = Self::default();
        scan_outlines(log, withdrawn, |offset, id, author, seq, _| {
            index.add_parts(offset, id, author, seq)
        })?;
        Ok(index)
    }

    /// Indexes the op at `offset` (appended after every indexed one).
    pub(crate) fn add(&mut self, offset: u64, id: &OpId, op: &Op) {
        self.add_parts(offset, id, op.author, op.seq);
    }

    /// Indexes the op at `offset` by its author, seq and id.
    fn add_parts(&mut self, offset: u64, id: &OpId, author: DeviceId, seq: u64) {
        let chain = self.by_author.entry(author).or_default();
        // Chains are stored without gaps; a gap here means the caller skipped a record.
        if chain.len() as u64 + 1 == seq {
            chain.push(offset);
        }
        match self.by_id.entry(short(id)) {
            std::collections::hash_map::Entry::Vacant(v) => {
                v.insert(offset);
            }
            std::collections::hash_map::Entry::Occupied(_) => {
                self.by_full_id.insert(*id, offset);
            }
        }
    }

    /// The offset of `author`'s op at `seq`.
    pub(crate) fn at_seq(&self, author: &DeviceId, seq: u64) -> Option<u64> {
        let i = usize::try_from(seq.checked_sub(1)?).ok()?;
        self.by_author.get(author)?.get(i).copied()
    }

    /// The offsets of `author`'s ops from `from` to `to` (inclusive).
    pub(crate) fn seq_range(&self, author: &DeviceId, from: u64, to: u64) -> &[u64] {
        let Some(chain) = self.by_author.get(author) else {
            return &[];
        };
        let lo = usize::try_from(from.saturating_sub(1)).unwrap_or(usize::MAX);
        let hi = usize::try_from(to).unwrap_or(usize::MAX).min(chain.len());
        chain.get(lo..hi).unwrap_or(&[])
    }

    /// The offset of the op with this id, checked against the id stored in the log.
    pub(crate) fn find(&self, log: &OpLog, id: &OpId) -> Result<Option<u64>, LogError> {
        match self.candidate(id) {
            Some((at, false)) if log.id_at(at)? != *id => Ok(None),
            found => Ok(found.map(|(at, _)| at)),
        }
    }

    /// Where the op with this id is if the store holds it, and whether that is sure: an
    /// offset found by the id's first 8 bytes only (`false`) holds the op only if the record
    /// there has this id, which a caller reading the record checks instead of
    /// [`LogIndex::find`]'s read of the id alone.
    pub(crate) fn candidate(&self, id: &OpId) -> Option<(u64, bool)> {
        if let Some(at) = self.by_full_id.get(id) {
            return Some((*at, true));
        }
        self.by_id.get(&short(id)).map(|at| (*at, false))
    }

    /// The offsets of every op whose id's first 8 bytes satisfy `keep`, and of every op in
    /// the (rare) collision table.
    pub(crate) fn id_candidates(&self, keep: impl Fn(&[u8; 8]) -> bool) -> Vec<u64> {
        let mut out: Vec<u64> = self
            .by_id
            .iter()
            .filter(|(k, _)| keep(&k.to_be_bytes()))
            .map(|(_, at)| *at)
            .collect();
        out.extend(self.by_full_id.values());
        out
    }
}

impl ContactIndex {
    /// Reads the log from the start and indexes every record but those at the offsets in
    /// `withdrawn` ([`scan_outlines`]).
    pub(crate) fn build(log: &OpLog, withdrawn: &BTreeSet<u64>) -> Result<Self, LogError> {
        let mut index = Self::default();
        scan_outlines(log, withdrawn, |offset, _, _, _, contacts| {
            index.add_parts(offset, contacts.iter().copied())
        })?;
        Ok(index)
    }

    /// Indexes the op at `offset` (appended after every indexed one).
    pub(crate) fn add(&mut self, offset: u64, op: &Op) {
        self.add_parts(offset, op.writes.iter().map(|w| w.contact));
    }

    /// Indexes the op at `offset` by the contacts of its writes in order.
    fn add_parts(&mut self, offset: u64, contacts: impl IntoIterator<Item = ContactId>) {
        let mut last: Option<ContactId> = None;
        for contact in contacts {
            if last == Some(contact) {
                continue;
            }
            last = Some(contact);
            let list = self.by_contact.entry(contact).or_default();
            if list.last() != Some(&offset) {
                list.push(offset);
            }
        }
    }

    /// The offsets of the ops that wrote to `contact`, in log order.
    pub(crate) fn contact(&self, contact: &ContactId) -> &[u64] {
        self.by_contact.get(contact).map_or(&[], |v| v.as_slice())
    }
}

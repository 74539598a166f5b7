//! Staging: many ops checked and turned into log records plus one atomic batch of register
//! writes.
//!
//! A [`Stage`] layers what it has staged over the store, so the check of each op sees the ops
//! staged before it (a chain delivered in one bundle applies in one call), and each contact
//! touched by several ops is read once and written once. Saves, bulk imports and the replay of
//! the log's tail at open all go through it, so there is one write path.

use std::collections::hash_map::Entry;
use std::collections::{BTreeMap, BTreeSet, HashMap};

use foldhash::fast::RandomState;

use cardlog_core::replay::{
    check_op, view_of, ChainTip, OpLookup, Readiness, RegisterWrite, Summary,
};
use cardlog_core::{ContactId, Cutoffs, DeviceId, OpId, Path, SealedOp};

use super::names::{count_widths, index_entry};
use crate::error::StoreError;
use crate::log::{self, set_commit};
use crate::state::keys::{self, meta, ContactRegisters};
use crate::state::kv::KvBatch;

/// What a stage is layered over: the ops stored (for the replay checks) and each contact's
/// stored registers. The store implements it; nothing here knows the store itself.
pub(crate) trait Stored: OpLookup<Error = StoreError> {
    /// Every register of `contact` as stored (empty if never written).
    fn contact_registers(&self, contact: &ContactId) -> Result<ContactRegisters, StoreError>;

    /// Which ops are void (their writes take no effect) under the membership stored.
    fn cutoffs(&self) -> &Cutoffs;

    /// Whether registers are kept (`Keeps::Contacts`): a stage over a store keeping ops only
    /// reads and stages none, and checks replaced writes against the ops themselves.
    fn keeps_contacts(&self) -> bool;

    /// How many name-index entries a `w` key counts (0 when it has none).
    fn width_count(&self, key: &[u8]) -> Result<u64, StoreError>;
}

/// What a finished stage writes.
pub(crate) struct Staged {
    /// Records to append to the log (the last one flagged [`COMMIT`]).
    pub(crate) records: Vec<u8>,
    /// Register, author-tip and watermark writes.
    pub(crate) batch: KvBatch,
    /// The authors' chain tips that changed.
    pub(crate) tips: Summary,
    /// The ops stored, with their offsets, in log order.
    pub(crate) added: Vec<(u64, SealedOp)>,
    /// The membership ops among them.
    pub(crate) membership: Vec<SealedOp>,
    /// The contacts whose registers changed, each with the paths written.
    pub(crate) changed: Vec<(ContactId, BTreeSet<Path>)>,
}

/// One contact's registers as staged, and whether staged ops changed them.
struct StagedContact {
    registers: ContactRegisters,
    /// Its entry in the name index before the stage, as its registers call for (`None`:
    /// it had none).
    listed: Option<keys::Listed>,
    /// The paths staged ops wrote (none: unchanged).
    paths: BTreeSet<Path>,
}

/// Ops staged over a store, not yet written.
pub(crate) struct Stage<'s> {
    store: &'s dyn Stored,
    records: Vec<u8>,
    last_flags_at: Option<usize>,
    /// Each staged op's place in `added`.
    ids: HashMap<OpId, usize, RandomState>,
    seqs: HashMap<(DeviceId, u64), OpId, RandomState>,
    tips: Summary,
    /// Contacts' registers read from the store (once each), and whether staged ops changed
    /// them.
    contacts: HashMap<ContactId, StagedContact, RandomState>,
    added: Vec<(u64, SealedOp)>,
    /// Membership ops staged (kept under `u` keys: `keys::membership_value`).
    membership: Vec<SealedOp>,
    /// Log offset of the next record.
    next_offset: u64,
    /// Ops in the log once staged ones are written.
    next_count: u64,
}

impl<'s> Stage<'s> {
    /// A stage over `store` whose first record goes at `offset`, with `count` ops before it.
    pub(crate) fn at(store: &'s dyn Stored, offset: u64, count: u64) -> Self {
        Self {
            store,
            records: Vec::new(),
            last_flags_at: None,
            ids: HashMap::default(),
            seqs: HashMap::default(),
            tips: Summary::new(),
            contacts: HashMap::default(),
            added: Vec::new(),
            membership: Vec::new(),
            next_offset: offset,
            next_count: count,
        }
    }

    /// Number of ops staged.
    pub(crate) fn len(&self) -> usize {
        self.added.len()
    }

    /// Checks `sealed` against the store and what is staged; when it is ready, stages its log
    /// record, author head and register changes.
    pub(crate) fn add_op(&mut self, sealed: &SealedOp) -> Result<Readiness, StoreError> {
        // The check usually finds the replaced writes among these registers' heads, and the
        // op then changes them: each contact is read from the store once, here.
        if self.store.keeps_contacts() {
            for w in &sealed.op().writes {
                self.load(&w.contact)?;
            }
        }
        let readiness = check_op(&*self, sealed)?;
        if readiness != Readiness::Ready {
            return Ok(readiness);
        }
        self.last_flags_at = Some(log::frame(
            &mut self.records,
            &sealed.id(),
            sealed.bytes(),
            0,
        ));
        self.add_logged(self.next_offset, sealed)?;
        Ok(Readiness::Ready)
    }

    /// The staged registers of `contact`, read from the store the first time.
    fn load(&mut self, contact: &ContactId) -> Result<&mut StagedContact, StoreError> {
        Ok(match self.contacts.entry(*contact) {
            Entry::Occupied(staged) => staged.into_mut(),
            Entry::Vacant(slot) => {
                let registers = self.store.contact_registers(contact)?;
                // What the index holds for it is what its registers call for (every register
                // write writes the index too, and `verify` checks it): derived, not read.
                let listed =
                    (!registers.is_empty()).then(|| index_entry(&view_of(*contact, &registers)));
                slot.insert(StagedContact {
                    registers,
                    listed,
                    paths: BTreeSet::new(),
                })
            }
        })
    }

    /// Stages the head and register changes of an op in the log at `offset` (just framed, or
    /// in the log's tail at open, unchecked).
    pub(crate) fn add_logged(&mut self, offset: u64, sealed: &SealedOp) -> Result<(), StoreError> {
        let op = sealed.op();
        let id = sealed.id();
        self.ids.insert(id, self.added.len());
        self.seqs.insert((op.author, op.seq), id);
        self.tips.insert(
            op.author,
            ChainTip {
                seq: op.seq,
                op: id,
                hlc: op.hlc,
            },
        );
        // A void op is held (ops replacing its writes need it) but its writes take no effect.
        let void = self.store.cutoffs().voids(&op.author, op.seq);
        let keeps = self.store.keeps_contacts();
        for w in &op.writes {
            if void || !keeps {
                continue;
            }
            let staged = self.load(&w.contact)?;
            // Only a write creates a register: a path merely looked at stays absent.
            let (writes, heads) = staged.registers.entry(w.path.clone()).or_default();
            *writes += 1;
            heads.apply(RegisterWrite::of(op, id, w));
            if !staged.paths.contains(&w.path) {
                staged.paths.insert(w.path.clone());
            }
        }
        if op.is_membership() {
            self.membership.push(sealed.clone());
        }
        self.next_offset = offset + log::HEADER_BYTES + sealed.bytes().len() as u64;
        self.next_count += 1;
        self.added.push((offset, sealed.clone()));
        Ok(())
    }

    /// Passes over a withdrawn record of the log's tail at `offset` (`withdraw.rs`): the
    /// watermark covers its bytes, and nothing else changes.
    pub(crate) fn pass_over(&mut self, offset: u64, sealed: &SealedOp) {
        self.next_offset = offset + log::HEADER_BYTES + sealed.bytes().len() as u64;
    }

    /// The records and the batch to write (with the watermark: ops and log bytes the registers
    /// now cover).
    pub(crate) fn finish(mut self) -> Result<Staged, StoreError> {
        if let Some(at) = self.last_flags_at {
            set_commit(&mut self.records, at);
        }
        let mut batch = KvBatch::default();
        // Each author's head once, however many of its ops the batch holds.
        for (author, tip) in &self.tips {
            batch.insert(keys::author(author), keys::encode(tip));
        }
        let mut changed = Vec::new();
        let mut widths: BTreeMap<Vec<u8>, i64> = BTreeMap::new();
        for (contact, staged) in self.contacts.drain() {
            if !staged.paths.is_empty() {
                batch.insert(
                    keys::contact(&contact),
                    keys::contact_value(&staged.registers),
                );
                let entry = index_entry(&view_of(contact, &staged.registers));
                if staged.listed.as_ref() != Some(&entry) {
                    if let Some(old) = &staged.listed {
                        count_widths(&mut widths, old, -1);
                    }
                    count_widths(&mut widths, &entry, 1);
                }
                keys::rename(&mut batch, staged.listed.as_ref(), entry);
                changed.push((contact, staged.paths));
            }
        }
        // The width counts the entries changed, each read once and written once.
        for (key, by) in widths {
            if by == 0 {
                continue;
            }
            let count = i64::try_from(self.store.width_count(&key)?).unwrap_or(i64::MAX);
            match u64::try_from(count.saturating_add(by)) {
                Ok(n) if n > 0 => batch.insert(key, n.to_be_bytes().to_vec()),
                _ => batch.remove(key),
            }
        }
        let keeps = self.store.keeps_contacts();
        for op in &self.membership {
            let id = op.id();
            let Some((offset, _)) = self.ids.get(&id).and_then(|i| self.added.get(*i)) else {
                continue; // (every membership op staged is in `added`)
            };
            batch.insert(
                keys::membership(&id),
                keys::membership_value(keeps, *offset, op.bytes()),
            );
        }
        batch.insert(
            meta::APPLIED.to_vec(),
            keys::encode(&(self.next_count, self.next_offset)),
        );
        Ok(Staged {
            records: self.records,
            batch,
            tips: self.tips,
            added: self.added,
            membership: self.membership,
            changed,
        })
    }
}

impl OpLookup for Stage<'_> {
    type Error = StoreError;

    fn contains(&self, op: &OpId) -> Result<bool, StoreError> {
        Ok(self.ids.contains_key(op) || self.store.contains(op)?)
    }

    fn chain_tip(&self, author: &DeviceId) -> Result<Option<ChainTip>, StoreError> {
        match self.tips.get(author) {
            Some(h) => Ok(Some(*h)),
            None => self.store.chain_tip(author),
        }
    }

    fn op_at(&self, author: &DeviceId, seq: u64) -> Result<Option<OpId>, StoreError> {
        match self.seqs.get(&(*author, seq)) {
            Some(id) => Ok(Some(*id)),
            None => self.store.op_at(author, seq),
        }
    }

    fn wrote_at(
        &self,
        op: &OpId,
        contact: &ContactId,
        path: &Path,
    ) -> Result<Option<bool>, StoreError> {
        // Usually the replaced write is one of the register's current heads (loaded by
        // `add_op`): no lookup by id.
        if self
            .contacts
            .get(contact)
            .and_then(|c| c.registers.get(path))
            .is_some_and(|(_, heads)| heads.is_head(op))
        {
            return Ok(Some(true));
        }
        if let Some((_, staged)) = self.ids.get(op).and_then(|i| self.added.get(*i)) {
            return Ok(Some(staged.op().write_at(*contact, path).is_some()));
        }
        self.store.wrote_at(op, contact, path)
    }
}

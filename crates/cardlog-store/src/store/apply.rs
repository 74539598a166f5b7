//! Writing: ops checked and staged ([`super::stage::Stage`]), their records appended to the
//! log, their register changes held back and written to sled in batches; `settle`, `flush`
//! and meta values.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use cardlog_core::replay::{Missing, Readiness};
use cardlog_core::{ContactId, Cutoffs, DeviceId, Hlc, OpId, SealedOp, SignedTip};

use super::stage::{Stage, Stored};
use super::OpOutcome;
use super::Store;
use crate::error::StoreError;
use crate::log::{LogError, SIGS_FILE};
use crate::state::held::HELD_OPS_MAX;
use crate::state::keys::{self, meta, ContactRegisters};
use crate::state::kv::KvBatch;

impl Store {
    /// Stores one op if it is ready: checked like [`cardlog_core::Replay::insert`], then written
    /// with its state changes. Not yet durable: see [`Store::flush`]. Returns `Missing` (and
    /// stores nothing) when a dependency is absent; a refused op is an error and nothing is
    /// stored.
    pub fn apply(&mut self, sealed: &SealedOp) -> Result<Readiness, StoreError> {
        match self.apply_all(std::slice::from_ref(sealed))?.pop() {
            Some(OpOutcome::Stored) => Ok(Readiness::Ready),
            Some(OpOutcome::Duplicate) => Ok(Readiness::Duplicate),
            Some(OpOutcome::Missing(m)) => Ok(Readiness::Missing(m)),
            Some(OpOutcome::Refused(e)) => Err(StoreError::Refused(e)),
            None => Err(StoreError::undecodable("apply outcome")),
        }
    }

    /// Stores every op of `ops` whose dependencies are in the store or among `ops` (in any
    /// order: ops waiting for a later one are retried until no more can be stored). Ops still
    /// missing a dependency, duplicates and refused ops are skipped and reported, one outcome
    /// per op in input order; the others are all stored or, if a write fails, none is (the
    /// log records of one call end with one commit flag). Not yet durable: see
    /// [`Store::flush`].
    pub fn apply_all(&mut self, ops: &[SealedOp]) -> Result<Vec<OpOutcome>, StoreError> {
        self.apply_all_inner(ops, &[], false)
    }

    /// [`Store::apply_all`], keeping the chain-tip signatures that cover the ops (the caller
    /// verified them; a signature of an op that is not stored afterwards is not kept). Another
    /// device's ops are stored only up to one a signature covers: where the op a signature in
    /// `tips` is of waits for a dependency, the ops below it that no other signature covers
    /// wait with it (reported missing), so the store never holds an op it cannot prove to a
    /// peer; but a removed device's ops whose cover the batch brings go in, the cover kept to
    /// prove them ([`Store::cover`]).
    pub fn apply_signed(
        &mut self,
        ops: &[SealedOp],
        tips: &[SignedTip],
    ) -> Result<Vec<OpOutcome>, StoreError> {
        self.apply_all_inner(ops, tips, false)
    }

    /// Like [`Store::apply_all`], but all or nothing for refusals: if any op is refused (a
    /// fork, a broken chain, a forged reference…) nothing at all is stored and the first
    /// refusal is the error. Ops that are duplicates or still miss a dependency do not stop
    /// the others.
    pub fn apply_all_strict(&mut self, ops: &[SealedOp]) -> Result<Vec<OpOutcome>, StoreError> {
        self.apply_all_inner(ops, &[], true)
    }

    /// [`Store::apply_all_strict`] with signatures, as [`Store::apply_signed`].
    pub fn apply_signed_strict(
        &mut self,
        ops: &[SealedOp],
        tips: &[SignedTip],
    ) -> Result<Vec<OpOutcome>, StoreError> {
        self.apply_all_inner(ops, tips, true)
    }

    fn apply_all_inner(
        &mut self,
        ops: &[SealedOp],
        tips: &[SignedTip],
        strict: bool,
    ) -> Result<Vec<OpOutcome>, StoreError> {
        self.writable()?;
        // Held-back register changes are written once there are enough of them: before
        // anything of this call, so a failure stores none of it.
        if self.held.ops() >= HELD_OPS_MAX {
            self.settle()?;
        }
        // Causal order first, so one pass usually stores everything: by the latest timestamp
        // along each author's chain up to the op (an op comes after its chain predecessor
        // whatever its own timestamp: a clock set back stamps earlier), and ops replacing
        // writes usually come after those writes in real time.
        let mut outcomes: Vec<(usize, &SealedOp, Option<OpOutcome>)> = ops
            .iter()
            .enumerate()
            .map(|(i, op)| (i, op, None))
            .collect();
        outcomes.sort_by_key(|(i, op, _)| (op.op().author, op.op().seq, *i));
        // Per author, the latest timestamp of the ops at lower seqs (ops at one seq, a fork,
        // do not count for each other: the earlier of them comes first).
        let mut key: Vec<(Hlc, DeviceId, u64, usize)> = Vec::with_capacity(outcomes.len());
        let mut below: Option<(DeviceId, u64, Option<Hlc>, Option<Hlc>)> = None;
        for (i, op, _) in &outcomes {
            let o = op.op();
            // (author, seq, latest below this seq, latest up to and at this seq)
            let (max_below, max_here) = match below {
                Some((author, seq, b, h)) if author == o.author && seq == o.seq => (b, h),
                Some((author, _, _, h)) if author == o.author => (h, h),
                _ => (None, None),
            };
            let latest = max_below.map_or(o.hlc, |b| b.max(o.hlc));
            let here = Some(max_here.map_or(o.hlc, |h| h.max(o.hlc)));
            below = Some((o.author, o.seq, max_below, here));
            key.push((latest, o.author, o.seq, *i));
        }
        let mut keyed: Vec<_> = key.into_iter().zip(outcomes).collect();
        keyed.sort_by_key(|(k, _)| *k);
        let ordered: Vec<(usize, &SealedOp)> =
            keyed.into_iter().map(|(_, (i, op, _))| (i, op)).collect();
        // Ops left waiting because they cannot be proved to a peer yet (below), and the
        // covers that prove ops stored (`cover.rs`).
        let mut unproved: HashMap<usize, Missing> = HashMap::new();
        let (stage, mut outcomes, covers) = loop {
            let mut stage = Stage::at(self, self.log_len(), self.op_count());
            let mut outcomes: Vec<(usize, &SealedOp, Option<OpOutcome>)> = ordered
                .iter()
                .map(|(i, op)| {
                    let waits = unproved.get(i).copied().map(OpOutcome::Missing);
                    (*i, *op, waits)
                })
                .collect();
            loop {
                let mut progress = false;
                for (i, op, outcome) in outcomes.iter_mut() {
                    if unproved.contains_key(i)
                        || matches!(outcome, Some(o) if !matches!(o, OpOutcome::Missing(_)))
                    {
                        continue;
                    }
                    *outcome = Some(match stage.add_op(op) {
                        Ok(Readiness::Ready) => {
                            progress = true;
                            OpOutcome::Stored
                        }
                        Ok(Readiness::Duplicate) => OpOutcome::Duplicate,
                        Ok(Readiness::Missing(m)) => OpOutcome::Missing(m),
                        Err(StoreError::Refused(e)) => OpOutcome::Refused(e),
                        Err(e) => return Err(e),
                    });
                }
                let waiting = outcomes
                    .iter()
                    .any(|(_, _, o)| matches!(o, Some(OpOutcome::Missing(_))));
                if !progress || !waiting {
                    break;
                }
            }
            let (more, covers) = self.unprovable(&outcomes, tips)?;
            if more.is_empty() {
                break (stage, outcomes, covers);
            }
            unproved.extend(more);
        };
        outcomes.sort_by_key(|(i, _, _)| *i);
        let outcomes: Vec<OpOutcome> = outcomes.into_iter().filter_map(|(_, _, o)| o).collect();
        if strict {
            if let Some(OpOutcome::Refused(e)) =
                outcomes.iter().find(|o| matches!(o, OpOutcome::Refused(_)))
            {
                return Err(StoreError::Refused(e.clone()));
            }
        }
        if stage.len() == 0 {
            self.keep_held_signatures(tips)?;
            return Ok(outcomes);
        }
        let mut staged = stage.finish()?;
        // A removal voiding ops that took effect: the batch flags a rebuild, done below.
        let retraction = self.retraction(&mut staged, &self.log, self.log.len())?;
        // Received signatures are durable before the ops they cover: a record appended to the
        // log survives a killed process even unsynced, sled's unflushed writes do not, and a
        // received signature cannot be made again. (One kept for an op not stored is ignored.)
        let mut received: Vec<SignedTip> = Vec::with_capacity(tips.len());
        for tip in tips.iter().filter(|t| t.author != self.device) {
            // (One kept as it is, as a later step of a shared apply passes again, is not
            // written again.)
            if self.raw_signature(&tip.author, tip.seq).ok().flatten() != Some(*tip) {
                received.push(*tip);
            }
        }
        if !received.is_empty() || !covers.is_empty() {
            self.keep_signatures(&received)?;
            if !covers.is_empty() {
                let mut batch = KvBatch::default();
                self.keep_covers(covers, &mut batch)?;
                self.kv.apply(batch).map_err(|e| self.poison(e))?;
            }
            self.sync_signature_log()?;
            self.kv.flush().map_err(|e| self.poison(e))?;
            self.meta_dirty = false;
        }
        // The log first: registers never cover a record the log does not hold.
        if let Err(e) = self.log.append(&staged.records) {
            return Err(self.poison_log(e));
        }
        let added = staged.added.len() as u64;
        self.held.add(staged.batch, added);
        for (contact, paths) in staged.changed {
            self.note_change(contact, paths);
        }
        if let Some((start, op)) = staged.added.last() {
            let end = self.log.len();
            self.appended(*start, end, &op.id());
        }
        self.ops += added;
        self.summary.extend(staged.tips);
        if let Some(index) = self.index.get_mut() {
            for (offset, op) in &staged.added {
                index.add(*offset, &op.id(), op.op());
            }
        }
        if let Some(index) = self.by_contact.get_mut() {
            for (offset, op) in &staged.added {
                index.add(*offset, op.op());
            }
        }
        let retract = match retraction {
            Some((cutoffs, retract)) => {
                self.cutoffs = cutoffs;
                retract
            }
            None => false,
        };
        self.keep_held_signatures(tips)?;
        if retract {
            // The registers still show what the batch voids: a store that cannot rebuild
            // them takes no more writes (the flag in the batch finishes the rebuild at open).
            if let Err(e) = self.rebuild() {
                if self.poisoned.is_none() {
                    self.poisoned = Some(format!("the retraction of void ops failed: {e}"));
                    self.write_failed = true;
                }
                return Err(e);
            }
        }
        Ok(outcomes)
    }

    /// Of the ops a batch would store, those no signature would cover: another device's ops
    /// stored above the last of its ops signed (by a signature in `tips` or kept here), when
    /// the batch's signature of that device's chain is of a later op that waits for a
    /// dependency, unless that device is removed and the batch holds every op from the last
    /// stored up to that one (a cover, `cover.rs`: returned, to keep beside the ops it proves). Such ops
    /// are held back with it (by index in the batch, each with what it waits for): a replica
    /// stores another device's ops only up to an op it can prove to a peer, so that whatever
    /// it holds it can pass on (docs/SYNC.md, "Signatures").
    #[allow(clippy::type_complexity)]
    fn unprovable(
        &self,
        outcomes: &[(usize, &SealedOp, Option<OpOutcome>)],
        tips: &[SignedTip],
    ) -> Result<(HashMap<usize, Missing>, Vec<super::cover::Cover>), StoreError> {
        let mut out = HashMap::new();
        let mut covers = Vec::new();
        // The cutoffs with the batch's membership ops, once needed.
        let mut removed: Option<Cutoffs> = None;
        // (Nothing waits in almost every batch: then nothing is read.)
        if tips.is_empty()
            || !outcomes
                .iter()
                .any(|(_, _, o)| matches!(o, Some(OpOutcome::Missing(_))))
        {
            return Ok((out, covers));
        }
        // Per author: the ops stored by seq (index, id), and the first op left waiting.
        let mut stored: BTreeMap<DeviceId, BTreeMap<u64, (usize, OpId)>> = BTreeMap::new();
        let mut waiting: BTreeMap<DeviceId, (u64, Missing)> = BTreeMap::new();
        for (i, op, outcome) in outcomes {
            let o = op.op();
            if o.author == self.device {
                continue;
            }
            match outcome {
                Some(OpOutcome::Stored) => {
                    stored
                        .entry(o.author)
                        .or_default()
                        .insert(o.seq, (*i, op.id()));
                }
                Some(OpOutcome::Missing(m)) => {
                    let first = waiting.entry(o.author).or_insert((o.seq, *m));
                    if o.seq < first.0 {
                        *first = (o.seq, *m);
                    }
                }
                _ => {}
            }
        }
        for (author, ops) in stored {
            let Some((_, why)) = waiting.get(&author) else {
                continue;
            };
            let Some(head) = ops.keys().next_back().copied() else {
                continue;
            };
            // Only where the batch's signature is of an op it does not store.
            let Some(above) = tips
                .iter()
                .filter(|t| t.author == author && t.seq > head)
                .max_by_key(|t| t.seq)
            else {
                continue;
            };
            let mut signed_at = None;
            for (seq, (_, id)) in ops.iter().rev() {
                let in_batch = tips
                    .iter()
                    .any(|t| t.author == author && t.seq == *seq && t.op == *id);
                if in_batch
                    || self
                        .raw_signature(&author, *seq)?
                        .is_some_and(|t| t.op == *id)
                {
                    signed_at = Some(*seq);
                    break;
                }
            }
            let from = signed_at.map_or(0, |s| s.saturating_add(1));
            if ops.range(from..).next().is_none() {
                continue;
            }
            // Unless they are a removed device's (which never writes the op signed again:
            // under the membership with the batch's own changes) and the batch brings the ops
            // up to the signed one: a cover, kept while there is room.
            if removed.is_none() {
                let changes: Vec<SealedOp> = outcomes
                    .iter()
                    .filter(|(_, op, _)| op.op().is_membership())
                    .map(|(_, op, _)| (*op).clone())
                    .collect();
                removed = Some(if changes.is_empty() {
                    self.cutoffs.clone()
                } else {
                    self.cutoffs_with(&changes, &self.log, self.log.len())?
                });
            }
            if removed
                .as_ref()
                .is_some_and(|c| c.cutoff(&author).is_some())
            {
                let head_id = ops.get(&head).map(|(_, id)| *id);
                let mut by_seq: BTreeMap<u64, Vec<&SealedOp>> = BTreeMap::new();
                for (_, op, _) in outcomes
                    .iter()
                    .filter(|(_, op, _)| op.op().author == author)
                {
                    by_seq.entry(op.op().seq).or_default().push(*op);
                }
                let cover = head_id.and_then(|id| Self::cover_in_batch(&by_seq, (head, id), above));
                if let Some(cover) = cover {
                    if self.room_for_cover(&author, &covers)? {
                        covers.push(cover);
                        continue;
                    }
                }
            }
            for (_, (i, _)) in ops.range(from..) {
                out.insert(*i, *why);
            }
        }
        Ok((out, covers))
    }

    /// Keeps the signatures of `tips` whose ops the store now holds, and lets go of those of
    /// the same authors that a later one kept covers (`Store::prune_signatures`).
    fn keep_held_signatures(&mut self, tips: &[SignedTip]) -> Result<(), StoreError> {
        let held: Vec<SignedTip> = tips
            .iter()
            .filter(|t| self.summary.get(&t.author).is_some_and(|h| h.seq >= t.seq))
            .copied()
            .collect();
        if held.is_empty() {
            return Ok(());
        }
        self.keep_signatures(&held)?;
        // Best effort: the ops are stored by now, and a signature not let go of costs bytes,
        // not correctness (one that does not decode is left to whoever reads it).
        let authors: BTreeSet<DeviceId> = held.iter().map(|t| t.author).collect();
        let _ = self.prune_signatures(&authors);
        Ok(())
    }

    /// Syncs the signature log (signatures are appended to it only with a meta write, so
    /// whoever flushes meta syncs it).
    fn sync_signature_log(&mut self) -> Result<(), StoreError> {
        if let Some(Err(e)) = self.sigs.as_ref().map(std::fs::File::sync_data) {
            return Err(self.poison_log(LogError::Io {
                call: format!("fsync of {SIGS_FILE}"),
                kind: e.kind(),
                message: e.to_string(),
            }));
        }
        Ok(())
    }

    /// Writes the register changes held back since the last such write (see `state/held.rs`) to
    /// the database now, after syncing the log so the database is never ahead of it. Never
    /// needed for durability or for reads: the store does it every 1,024 ops, before a
    /// rebuild and when it is dropped. An error poisons the store, as any failed write does.
    pub fn settle(&mut self) -> Result<(), StoreError> {
        self.writable()?;
        if self.held.is_empty() {
            return Ok(());
        }
        if let Err(e) = self.log.sync() {
            return Err(self.poison_log(e));
        }
        let batch = self.held.batch();
        self.kv.apply(batch).map_err(|e| self.poison(e))?;
        self.held.clear();
        Ok(())
    }

    /// Makes every stored op durable: one sync of the op log (and of the database when meta
    /// values changed). The registers follow the log and are replayed from it after a crash.
    /// The database goes first: the signatures of received ops are kept there, and unlike
    /// this device's own they cannot be made again, so a crash between the two syncs must not
    /// leave an op durable without its signature (a signature of an op the log lost is
    /// ignored: it is read only together with the op it names).
    pub fn flush(&mut self) -> Result<(), StoreError> {
        self.writable()?;
        if self.meta_dirty {
            self.sync_signature_log()?;
            self.kv.flush().map_err(|e| self.poison(e))?;
            self.meta_dirty = false;
        }
        if let Err(e) = self.log.sync() {
            return Err(self.poison_log(e));
        }
        Ok(())
    }

    /// Removes a meta value; durable at the next [`Store::flush`].
    pub fn remove_meta(&mut self, key: &[u8]) -> Result<(), StoreError> {
        self.writable()?;
        let mut batch = KvBatch::default();
        batch.remove(key.to_vec());
        self.kv.apply(batch).map_err(|e| self.poison(e))?;
        self.meta_dirty = true;
        Ok(())
    }

    /// Saves sync peers' records ([`Store::peer_record`]) in one batch, and removes the
    /// record that held them all before (`mpeers`): the facade's first peer write after an
    /// upgrade passes every peer it read there. Durable at the next [`Store::flush`].
    pub fn put_peer_records(
        &mut self,
        records: Vec<(DeviceId, Vec<u8>)>,
    ) -> Result<(), StoreError> {
        self.writable()?;
        let mut batch = KvBatch::default();
        for (peer, value) in records {
            batch.insert(keys::peer(&peer), value);
        }
        batch.remove(meta::PEERS.to_vec());
        self.kv.apply(batch).map_err(|e| self.poison(e))?;
        self.meta_dirty = true;
        Ok(())
    }

    /// Removes these sync peers' records (expired: the facade's sweep), in one batch; durable
    /// at the next [`Store::flush`].
    pub fn remove_peer_records(&mut self, peers: &[DeviceId]) -> Result<(), StoreError> {
        self.writable()?;
        let mut batch = KvBatch::default();
        for peer in peers {
            batch.remove(keys::peer(peer));
        }
        self.kv.apply(batch).map_err(|e| self.poison(e))?;
        self.meta_dirty = true;
        Ok(())
    }

    /// Gives back what a close would while the store stays open: the held-back changes are
    /// written, the zeros written ahead of the log's records cut, and a journal compacted as
    /// at its close (docs/FORMAT.md, "The journal"). What a relay does to a book no session
    /// holds: a book at rest takes about what it holds. A failure to cut or compact changes
    /// nothing the store holds and is returned as it is (the next one, or the close, tries
    /// again).
    pub fn rest(&mut self) -> Result<(), StoreError> {
        self.settle()?;
        self.log.trim()?;
        self.kv.rest()?;
        Ok(())
    }

    /// Saves a meta value (clock state and the like); durable at the next [`Store::flush`].
    pub fn put_meta(&mut self, key: &[u8], value: Vec<u8>) -> Result<(), StoreError> {
        self.writable()?;
        let mut batch = KvBatch::default();
        batch.insert(key.to_vec(), value);
        self.kv.apply(batch).map_err(|e| self.poison(e))?;
        self.meta_dirty = true;
        Ok(())
    }
}

impl Stored for Store {
    fn contact_registers(&self, contact: &ContactId) -> Result<ContactRegisters, StoreError> {
        Store::contact_registers(self, contact)
    }

    fn cutoffs(&self) -> &Cutoffs {
        &self.cutoffs
    }

    fn keeps_contacts(&self) -> bool {
        self.keeps == super::Keeps::Contacts
    }

    fn width_count(&self, key: &[u8]) -> Result<u64, StoreError> {
        Store::width_count(self, key)
    }
}

//! Withdrawing ops after a restore in place (docs/SEMANTICS.md, "Restores"). A device whose
//! store was restored from a backup may have written ops at seqs its chain had already used
//! before the disk was lost; once a peer gives it back the ops it lost, its own later ops are
//! withdrawn, and a replica holding such a branch of another device's chain withdraws it once
//! its author re-issued it. The records stay in the log, listed under `mwithdrawn`, and every
//! read of the log passes over them (the state, the index, `verify`, [`Store::ops`]). This
//! device's own not yet written again on the chain stay listed under `mreissue` until the
//! facade has re-issued them, so a crash in between loses nothing.
//!
//! What builds on withdrawn ops goes with them: an op that replaces one of their writes, the
//! rest of its author's chain after it, and what builds on those in turn. This device's own
//! such ops are listed for re-issue like the rest (the facade writes them again naming the
//! copies of what they named); another device's wait for their author, who re-issues them
//! when it settles the same fork. There is no bound on how much goes so: whether to withdraw
//! must be decided alike by every replica, and what builds on a branch differs from one
//! replica to the next (docs/SECURITY.md says what an author giving up a branch can do).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::OnceLock;

use cardlog_core::{DeviceId, OpId, SealedOp, SignedTip};

use super::Store;
use crate::error::StoreError;
use crate::state::keys::{self, meta};
use crate::state::kv::KvBatch;

/// An author's ops from a seq on, and what builds on them ([`Store::closure`]).
struct Closure {
    at: Vec<u64>,
    ops: Vec<SealedOp>,
    built_on: Vec<(u64, SealedOp)>,
}

/// What a withdraw took out of the state.
#[derive(Debug, Clone, Default)]
pub struct Withdrawal {
    /// The ops withdrawn: the chain's from the seq asked for, in chain order, then what built
    /// on them, in the order it was applied.
    pub ops: Vec<SealedOp>,
    /// The other authors whose ops built on them, each with the first seq withdrawn: their
    /// chains here now end before it (a fork of theirs recorded there is over).
    pub authors: BTreeMap<DeviceId, u64>,
}

pub(super) fn encode_offsets(offsets: &[u64]) -> Vec<u8> {
    offsets.iter().flat_map(|o| o.to_be_bytes()).collect()
}

/// The offsets [`encode_offsets`] wrote, or `None` when `bytes` is not a whole number of them.
pub(super) fn decode_offsets(bytes: &[u8]) -> Option<Vec<u64>> {
    if !bytes.len().is_multiple_of(8) {
        return None;
    }
    Some(
        bytes
            .chunks_exact(8)
            .filter_map(|c| <[u8; 8]>::try_from(c).ok())
            .map(u64::from_be_bytes)
            .collect(),
    )
}

impl Store {
    /// The log offsets listed under a meta name (u64 BE each); empty when absent.
    pub(super) fn offsets(&self, name: &[u8]) -> Result<Vec<u64>, StoreError> {
        let Some(bytes) = self.held.get(&*self.kv, name)? else {
            return Ok(Vec::new());
        };
        decode_offsets(&bytes)
            .ok_or_else(|| StoreError::undecodable(&String::from_utf8_lossy(name)))
    }

    /// Withdraws this device's own ops from `seq` to its chain's tip, with what builds on them
    /// (module docs), and returns them in chain order: afterwards the store holds its chain up
    /// to `seq - 1`, the state is rebuilt without them, and this device's own withdrawn ops
    /// are listed for re-issue ([`Store::pending_reissue`]). Nothing to withdraw (no op at
    /// `seq`) returns nothing.
    pub fn withdraw_own_from(&mut self, seq: u64) -> Result<Withdrawal, StoreError> {
        let me = self.device;
        self.withdraw_from(&me, seq)
    }

    /// [`Store::withdraw_own_from`] for any author's chain: `author`'s ops from `seq` on, a
    /// branch its author gave up (it re-issued every one of them on the chain it kept,
    /// checked by the caller), with what builds on them. Only this device's own are listed
    /// for re-issue.
    pub fn withdraw_from(&mut self, author: &DeviceId, seq: u64) -> Result<Withdrawal, StoreError> {
        self.writable()?;
        if !self.held.is_empty() {
            self.settle()?;
        }
        let Some(Closure {
            mut at,
            mut ops,
            built_on,
        }) = self.closure(author, seq)?
        else {
            return Ok(Withdrawal::default());
        };
        let others: Vec<&SealedOp> = built_on
            .iter()
            .map(|(_, op)| op)
            .filter(|op| op.op().author != *author)
            .collect();
        let authors: BTreeMap<DeviceId, u64> =
            others.iter().fold(BTreeMap::new(), |mut first, op| {
                let o = op.op();
                let at = first.entry(o.author).or_insert(o.seq);
                *at = (*at).min(o.seq);
                first
            });
        let own_at: Vec<u64> = if *author == self.device {
            at.clone()
        } else {
            Vec::new()
        }
        .into_iter()
        .chain(
            built_on
                .iter()
                .filter(|(_, op)| op.op().author == self.device)
                .map(|(o, _)| *o),
        )
        .collect();
        at.extend(built_on.iter().map(|(o, _)| *o));
        ops.extend(built_on.into_iter().map(|(_, op)| op));
        let ids: Vec<(OpId, u64)> = ops.iter().map(SealedOp::id).zip(at.clone()).collect();
        let mut withdrawn = self.offsets(meta::WITHDRAWN)?;
        withdrawn.extend(&at);
        let mut batch = KvBatch::default();
        batch.insert(meta::WITHDRAWN.to_vec(), encode_offsets(&withdrawn));
        if !own_at.is_empty() {
            let mut reissue = self.offsets(meta::REISSUE)?;
            reissue.extend(&own_at);
            batch.insert(meta::REISSUE.to_vec(), encode_offsets(&reissue));
            // Until the re-issue is done the device stays marked restored: a crash before
            // then makes its next session ask for its whole chain again and finish.
            batch.insert(meta::RESTORED.to_vec(), vec![1]);
        }
        // This device's own are signed again when re-issued. Another author's are kept: where
        // its chain here now ends below the ops withdrawn, the signature of the last of them
        // is what still proves the ops held below ([`Store::withdrawn_cover`]) until the
        // author re-issues them; a signature is only served for the op held at its seq.
        for op in ops.iter().filter(|op| op.op().author == self.device) {
            batch.remove(keys::signature(&op.op().author, op.op().seq));
        }
        // The state is rebuilt without them; a crash before that finishes makes the next
        // open finish it.
        batch.insert(meta::REBUILDING.to_vec(), vec![1]);
        self.kv.apply(batch).map_err(|e| self.poison(e))?;
        self.kv.flush().map_err(|e| self.poison(e))?;
        self.withdrawn.offsets.extend(at);
        self.withdrawn.ids.extend(ids);
        self.index = OnceLock::new();
        self.by_contact = OnceLock::new();
        self.rebuild()?;
        Ok(Withdrawal { ops, authors })
    }

    /// The ops other devices built on `author`'s ops from `seq` on, held here (module docs):
    /// what [`Store::withdraw_from`] would withdraw with them, in the order they were applied.
    pub fn built_on(&self, author: &DeviceId, seq: u64) -> Result<Vec<SealedOp>, StoreError> {
        Ok(self
            .closure(author, seq)?
            .map(|c| {
                c.built_on
                    .into_iter()
                    .map(|(_, op)| op)
                    .filter(|op| op.op().author != *author)
                    .collect()
            })
            .unwrap_or_default())
    }

    /// `author`'s ops from `seq` to its tip (log offsets and ops, in chain order), and the ops
    /// that build on them (with their offsets, in log order); `None` when it holds no op at
    /// `seq`.
    fn closure(&self, author: &DeviceId, seq: u64) -> Result<Option<Closure>, StoreError> {
        let Some(tip) = self.summary.get(author).copied() else {
            return Ok(None);
        };
        if seq == 0 || seq > tip.seq {
            return Ok(None);
        }
        let at: Vec<u64> = self.index()?.seq_range(author, seq, tip.seq).to_vec();
        let mut ops = Vec::with_capacity(at.len());
        for offset in &at {
            ops.push(self.log.read(*offset)?.seal()?);
        }
        let mut ids: HashSet<OpId> = ops.iter().map(SealedOp::id).collect();
        // What builds on them: the log holds every op after what it names (its chain
        // predecessor and the writes it replaces), so one pass from the first finds all of it.
        let mut built_on = Vec::new();
        if let Some(first) = at.iter().min() {
            for record in self.log.scan(*first, self.log.len()) {
                let record = record?;
                if self.withdrawn.offsets.contains(&record.offset) || ids.contains(&record.id) {
                    continue;
                }
                let op = record.decode_trusted()?;
                let names_one = op.prev.is_some_and(|p| ids.contains(&p))
                    || op
                        .writes
                        .iter()
                        .flat_map(|w| &w.replaces)
                        .any(|r| ids.contains(r));
                if names_one {
                    ids.insert(record.id);
                    built_on.push((record.offset, self.log.read(record.offset)?.seal()?));
                }
            }
        }
        Ok(Some(Closure { at, ops, built_on }))
    }

    /// The withdrawn ops not yet re-issued, in log order (the order they were written in),
    /// each with its log offset (for [`Store::reissued`]).
    pub fn pending_reissue(&self) -> Result<Vec<(u64, SealedOp)>, StoreError> {
        let mut at = self.offsets(meta::REISSUE)?;
        at.sort_unstable();
        at.dedup();
        let mut out = Vec::with_capacity(at.len());
        for offset in at {
            out.push((offset, self.log.read(offset)?.seal()?));
        }
        Ok(out)
    }

    /// Records durably that the withdrawn ops at log offsets `done` have been re-issued (or
    /// will not be), in one write: the log is synced first, so their copies are durable before
    /// they leave the list. (A crash before this leaves them listed; the facade finds their
    /// copies on the chain and does not write them again.)
    pub fn reissued(&mut self, done: &[u64]) -> Result<(), StoreError> {
        if done.is_empty() {
            return Ok(());
        }
        self.writable()?;
        self.flush()?;
        let done: std::collections::BTreeSet<u64> = done.iter().copied().collect();
        let rest: Vec<u64> = self
            .offsets(meta::REISSUE)?
            .into_iter()
            .filter(|o| !done.contains(o))
            .collect();
        let mut batch = KvBatch::default();
        if rest.is_empty() {
            batch.remove(meta::REISSUE.to_vec());
        } else {
            batch.insert(meta::REISSUE.to_vec(), encode_offsets(&rest));
        }
        self.kv.apply(batch).map_err(|e| self.poison(e))?;
        self.kv.flush().map_err(|e| self.poison(e))?;
        Ok(())
    }

    /// The withdrawn op `id`, read from the log; `None` when no withdrawn op has that id.
    pub fn withdrawn_op(&self, id: &OpId) -> Result<Option<SealedOp>, StoreError> {
        match self.withdrawn.ids.get(id) {
            Some(offset) => Ok(Some(self.log.read(*offset)?.seal()?)),
            None => Ok(None),
        }
    }

    /// The withdrawn ops of `author`'s chain that continue it from its op `id` at `seq` (each
    /// naming the one below), up to the first with a signature kept, in chain order, with that
    /// signature: what covers the ops of another device held here up to `id` when what it
    /// wrote after them was withdrawn for building on a branch given up, until it re-issues
    /// that. A session sends them beside the ops they cover as proof (docs/SYNC.md,
    /// "Signatures"). `None` when no such op has a signature kept. Checking the signature is
    /// the caller's.
    pub fn withdrawn_cover(
        &self,
        author: &DeviceId,
        seq: u64,
        id: OpId,
    ) -> Result<Option<(Vec<SealedOp>, SignedTip)>, StoreError> {
        let above = self.withdrawn_above(author, seq)?;
        // Each withdrawn op reached, by id, with the one below it (`None` for the first).
        let mut below: HashMap<OpId, (Option<OpId>, &SealedOp)> = HashMap::new();
        let mut reached: Vec<OpId> = vec![id];
        for s in seq.saturating_add(1).. {
            let Some(ops) = above.get(&s) else {
                return Ok(None);
            };
            let mut next: Vec<OpId> = Vec::new();
            for op in ops {
                if let Some(prev) = op.op().prev.filter(|p| reached.contains(p)) {
                    below.insert(op.id(), ((prev != id).then_some(prev), op));
                    next.push(op.id());
                }
            }
            if next.is_empty() {
                return Ok(None);
            }
            if let Some(tip) = self.raw_signature(author, s)? {
                if next.contains(&tip.op) {
                    let mut chain = Vec::new();
                    let mut at = Some(tip.op);
                    while let Some((prev, op)) = at.and_then(|a| below.get(&a)) {
                        chain.push((*op).clone());
                        at = *prev;
                    }
                    chain.reverse();
                    return Ok(Some((chain, tip)));
                }
            }
            reached = next;
        }
        Ok(None)
    }

    /// The chains of withdrawn ops: one per withdrawn op that no other withdrawn op of its
    /// author names as its predecessor, from it down through the withdrawn ops each names as
    /// its predecessor, in chain order. What a replica may owe their author (docs/SYNC.md,
    /// "Edits owed back"); which ops of them are owed, and proving them, is the caller's.
    /// Reads every withdrawn op once.
    pub fn withdrawn_chains(&self) -> Result<Vec<Vec<SealedOp>>, StoreError> {
        let mut all: BTreeMap<OpId, SealedOp> = BTreeMap::new();
        for offset in self.withdrawn.ids.values() {
            let op = self.log.read(*offset)?.seal()?;
            all.insert(op.id(), op);
        }
        let named: HashSet<OpId> = all.values().filter_map(|op| op.op().prev).collect();
        let mut chains = Vec::new();
        for leaf in all.values().filter(|op| !named.contains(&op.id())) {
            let mut chain = Vec::new();
            let mut at = Some(leaf);
            while let Some(op) = at {
                chain.push(op.clone());
                at = op
                    .op()
                    .prev
                    .and_then(|p| all.get(&p))
                    .filter(|p| p.op().author == op.op().author);
            }
            chain.reverse();
            chains.push(chain);
        }
        Ok(chains)
    }

    /// The signature kept here of `author`'s op `id` at `seq`, whether or not that op is
    /// held or withdrawn; `None` when the signature kept at `seq` is of another op, or none
    /// is. Checking the signature is the caller's.
    pub fn kept_signature(
        &self,
        author: &DeviceId,
        seq: u64,
        id: &OpId,
    ) -> Result<Option<SignedTip>, StoreError> {
        Ok(self.raw_signature(author, seq)?.filter(|tip| tip.op == *id))
    }

    /// `author`'s withdrawn ops above `seq`, by seq (each read from the log).
    fn withdrawn_above(
        &self,
        author: &DeviceId,
        seq: u64,
    ) -> Result<BTreeMap<u64, Vec<SealedOp>>, StoreError> {
        let mut above: BTreeMap<u64, Vec<SealedOp>> = BTreeMap::new();
        for offset in self.withdrawn.ids.values() {
            let op = self.log.read(*offset)?.seal()?;
            if op.op().author == *author && op.op().seq > seq {
                above.entry(op.op().seq).or_default().push(op);
            }
        }
        Ok(above)
    }

    /// Whether `id` is an op withdrawn here (this device's own after a restore, or a branch
    /// of another's chain its author gave up): a peer still holding it holds a branch given
    /// up, not ops this store lacks.
    pub fn withdrew(&self, id: &OpId) -> bool {
        self.withdrawn.ids.contains_key(id)
    }
}

//! A store restored in place (docs/SEMANTICS.md, "Restores"): the device takes back the ops of
//! its own chain that a peer holds and its backup lost, and re-issues on its chain, after them,
//! the ops it wrote since the restore at the same places (the same writes, at their first
//! times). Nothing is lost: the peer's ops come back, the device's later ones go out again, and
//! every replica converges on one chain. The session decides when (`cardlog_sync::session`:
//! once the peer has sent all it holds of the chain); this file does it.

use std::collections::BTreeMap;

use cardlog_core::{Membership, Op, OpId, SealedOp, SignedTip, Write};
use cardlog_store::keys::meta;
use cardlog_store::StoreError;
use cardlog_sync::TakenBack;

use crate::error::Error;
use crate::replica::Replica;

impl Replica {
    /// Whether a peer is known to hold this replica's own chain otherwise than it does (its
    /// store was restored from a backup, and it wrote since) and those ops are not taken back
    /// yet: its next session asks the peer for all of its chain.
    pub fn is_restored(&self) -> Result<bool, Error> {
        Ok(self.store.meta(meta::RESTORED)?.is_some())
    }

    pub(crate) fn mark_restored_chain(&mut self) -> Result<(), Error> {
        self.store.put_meta(meta::RESTORED, vec![1])?;
        self.durable()
    }

    /// Takes back this replica's own ops `theirs` (with their signatures `tips`) from where
    /// they differ from its chain, and re-issues what that replaces (and anything an earlier
    /// take back left to re-issue). `None` when nothing can be taken back: `theirs` has a
    /// gap, or another device's op builds on this device's ops there (the fork then stays
    /// recorded, as before).
    pub(crate) fn take_back_chain(
        &mut self,
        theirs: &[SealedOp],
        tips: &[SignedTip],
    ) -> Result<Option<TakenBack>, Error> {
        let me = self.id();
        let mut theirs: Vec<&SealedOp> = theirs.iter().filter(|o| o.op().author == me).collect();
        theirs.sort_by_key(|o| o.op().seq);
        theirs.dedup_by_key(|o| o.id());
        // Where the peer's chain parts from this one.
        let mut from = None;
        for op in &theirs {
            let seq = op.op().seq;
            let held = self.store.op_by_seq(&me, seq)?.map(|o| o.id());
            if held != Some(op.id()) {
                from = Some(seq);
                break;
            }
        }
        let mut taken = TakenBack::default();
        if let Some(from) = from {
            let recovered: Vec<SealedOp> = theirs
                .iter()
                .filter(|o| o.op().seq >= from)
                .map(|o| (*o).clone())
                .collect();
            // They must continue this chain below `from` without a gap.
            let mut prev = match from.checked_sub(1).filter(|s| *s > 0) {
                Some(s) => match self.store.op_by_seq(&me, s)? {
                    Some(op) => Some(op.id()),
                    None => return Ok(None),
                },
                None => None,
            };
            for (i, op) in recovered.iter().enumerate() {
                if op.op().seq != from + i as u64 || op.op().prev != prev {
                    return Ok(None);
                }
                prev = Some(op.id());
            }
            // Signed by this device's key, as its ops must be, before anything is withdrawn.
            if cardlog_sync::SyncStore::authorship(self, &recovered, tips).is_err() {
                return Ok(None);
            }
            match self.store.withdraw_own_from(from) {
                Ok(_) => {}
                Err(StoreError::BuiltOn { .. }) => return Ok(None),
                Err(e) => return Err(e.into()),
            }
            // The membership follows the ops held (withdrawn member changes are re-issued).
            *self.membership =
                Membership::compute(self.membership.book(), self.store.membership_ops()?);
            let admitted = self.admit(&recovered, tips);
            self.apply_admitted(&admitted.ops, &admitted.tips)?;
            taken.from_seq = from;
            taken.recovered = admitted.ops.len();
        }
        let pending = self.store.pending_reissue()?;
        if from.is_none() && pending.is_empty() && !self.is_restored()? {
            return Ok(None);
        }
        taken.reissued = self.reissue(&pending)?;
        self.store.reissued()?;
        self.store.remove_meta(meta::RESTORED)?;
        self.forget_own_forks()?;
        self.durable()?;
        Ok(Some(taken))
    }

    /// Writes `withdrawn` (this device's ops, in chain order) again at the end of its chain:
    /// the same writes and member changes at the same times, each replacing what the original
    /// replaced (a withdrawn op by its re-issued copy).
    fn reissue(&mut self, withdrawn: &[SealedOp]) -> Result<usize, Error> {
        let me = self.id();
        let mut copies: BTreeMap<OpId, OpId> = BTreeMap::new();
        for old in withdrawn {
            let tip = self.store.summary().get(&me).copied();
            let writes = old
                .op()
                .writes
                .iter()
                .map(|w| {
                    let mut replaces: Vec<OpId> = w
                        .replaces
                        .iter()
                        .map(|r| copies.get(r).copied().unwrap_or(*r))
                        .collect();
                    replaces.sort_unstable();
                    Write {
                        contact: w.contact,
                        path: w.path.clone(),
                        value: w.value.clone(),
                        replaces,
                    }
                })
                .collect();
            let op = Op {
                author: me,
                seq: tip.map_or(0, |t| t.seq) + 1,
                prev: tip.map(|t| t.op),
                hlc: old.op().hlc,
                writes,
                members: old.op().members.clone(),
            }
            .seal_in(old.format())
            .map_err(cardlog_core::EditError::from)?;
            let clock = self.clock.clone();
            self.store_own(&op, clock)?;
            copies.insert(old.id(), op.id());
        }
        Ok(copies.len())
    }
}

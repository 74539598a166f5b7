//! A store restored in place (docs/SEMANTICS.md, "Restores"): the device takes back the ops of
//! its own chain that a peer holds and its backup lost, and re-issues on its chain, after them,
//! the ops it wrote since the restore at the same places (the same writes, at their first
//! times). Nothing is lost: the peer's ops come back, the device's later ones go out again, and
//! every replica converges on one chain. The session decides when (`cardlog_sync::session`:
//! once the peer has sent all it holds of the chain); this file does it.

use std::collections::BTreeMap;

use cardlog_core::{DeviceId, Membership, Op, OpId, SealedOp, SignedTip, Write};
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

    /// Takes back this replica's own ops `theirs` (with their signatures `tips`), as `peer`
    /// holds them, from where they differ from its chain, and re-issues what that replaces
    /// (and anything an earlier take back left to re-issue). `None` when nothing was taken
    /// back. A take back that cannot be made (`theirs` has a gap, is not all signed and
    /// admitted, holds an op this device withdrew before, or another device's op builds on
    /// the ops it would withdraw) changes nothing but the mark: the fork stays recorded, as
    /// any fork. With nothing differing, the mark stays until a peer holding the lost ops is
    /// met, unless `peer` is the book's relay (the device's hub: if it holds no other ops of
    /// the chain, the claim that marked it was stale).
    pub(crate) fn take_back_chain(
        &mut self,
        peer: Option<DeviceId>,
        theirs: &[SealedOp],
        tips: &[SignedTip],
    ) -> Result<Option<TakenBack>, Error> {
        let me = self.id();
        let parting = self.parting(&me, theirs)?;
        let mut taken = TakenBack::default();
        if let Some((from, recovered)) = &parting {
            let from = *from;
            if !self.can_take_back(from, recovered, tips)? {
                self.unmark_restored()?;
                return Ok(None);
            }
            let Some(stored) = self.replace_branch(&me, from, recovered, tips)? else {
                self.unmark_restored()?;
                return Ok(None);
            };
            taken.from_seq = from;
            taken.recovered = stored;
            if taken.recovered < recovered.len() {
                // Not all came in: re-issuing now would land where the peer holds ops. The
                // device stays marked (the withdraw marked it); a later session finishes.
                return Ok(Some(taken));
            }
        }
        let pending = self.store.pending_reissue()?;
        if parting.is_none() && pending.is_empty() {
            if peer.is_some_and(|p| self.is_time_reference(&p)) {
                self.unmark_restored()?;
            }
            return Ok(None);
        }
        taken.reissued = self.reissue(&pending)?;
        self.unmark_restored()?;
        let me = self.id();
        self.forget_forks_of(&me)?;
        self.durable()?;
        Ok(Some(taken))
    }

    /// Whether `recovered` (this device's ops from seq `from`, as a peer holds them) can
    /// replace its own there: they continue its chain below `from` without a gap, none is an
    /// op it withdrew before, and they are signed by its key and let in by the book.
    fn can_take_back(
        &self,
        from: u64,
        recovered: &[SealedOp],
        tips: &[SignedTip],
    ) -> Result<bool, Error> {
        let me = self.id();
        if !self.chain_continues(&me, from, recovered)? {
            return Ok(false);
        }
        if recovered.iter().any(|op| self.store.withdrew(&op.id())) {
            return Ok(false);
        }
        // Signed by this device's key and let in by the book, judged as if nothing of the chain
        // were held here (what is held there is what they replace).
        Ok(cardlog_sync::SyncStore::authorship(self, recovered, tips).is_ok())
    }

    /// Settles a fork of `author`'s chain (another device's) when the branch held here is one
    /// its author gave up: every op of it from where `theirs` differs has a copy on `theirs`
    /// (the same writes, member changes and time), `theirs` continues the chain held below
    /// there and is signed and let in. The held branch is withdrawn and `theirs` stored.
    /// `false`, changing nothing, otherwise (also when an op held here builds on the branch:
    /// `StoreError::BuiltOn`).
    pub(crate) fn settle_fork_of(
        &mut self,
        author: DeviceId,
        theirs: &[SealedOp],
        tips: &[SignedTip],
    ) -> Result<bool, Error> {
        if author == self.id() {
            return Ok(false);
        }
        let Some((from, recovered)) = self.parting(&author, theirs)? else {
            return Ok(false);
        };
        let tip = self.store.summary().get(&author).map_or(0, |t| t.seq);
        let mut given_up = Vec::new();
        for seq in from..=tip {
            match self.store.op_by_seq(&author, seq)? {
                Some(op) => given_up.push(op),
                None => return Ok(false),
            }
        }
        if given_up.is_empty()
            || !reissued_in_order(&given_up, &recovered)
            || recovered.iter().any(|op| self.store.withdrew(&op.id()))
            || !self.chain_continues(&author, from, &recovered)?
            || cardlog_sync::SyncStore::authorship(self, &recovered, tips).is_err()
        {
            return Ok(false);
        }
        let stored = self.replace_branch(&author, from, &recovered, tips)?;
        if stored.is_none_or(|n| n < recovered.len()) {
            // Not all came in (the record stays; a later session sends the rest).
            return Ok(false);
        }
        self.forget_forks_of(&author)?;
        self.durable()?;
        Ok(true)
    }

    /// Where a peer's copy of `author`'s chain (`theirs`, any order, other authors' ops left
    /// out) parts from the one held here: the first seq where they differ, and the peer's ops
    /// from there in chain order. `None` when they agree as far as the peer's go.
    fn parting(
        &self,
        author: &DeviceId,
        theirs: &[SealedOp],
    ) -> Result<Option<(u64, Vec<SealedOp>)>, Error> {
        let mut theirs: Vec<&SealedOp> =
            theirs.iter().filter(|o| o.op().author == *author).collect();
        theirs.sort_by_key(|o| o.op().seq);
        theirs.dedup_by_key(|o| o.id());
        for op in &theirs {
            let seq = op.op().seq;
            let held = self.store.op_by_seq(author, seq)?.map(|o| o.id());
            if held != Some(op.id()) {
                let from_here = theirs
                    .iter()
                    .filter(|o| o.op().seq >= seq)
                    .map(|o| (*o).clone())
                    .collect();
                return Ok(Some((seq, from_here)));
            }
        }
        Ok(None)
    }

    /// Replaces `author`'s ops held from seq `from` with `theirs` (checked by the caller):
    /// withdraws the held ones, follows the membership to what is then held, and stores
    /// `theirs` as any received ops. The number of `theirs` now held; `None`, changing
    /// nothing, when another op held builds on the ones to withdraw (`StoreError::BuiltOn`).
    fn replace_branch(
        &mut self,
        author: &DeviceId,
        from: u64,
        theirs: &[SealedOp],
        tips: &[SignedTip],
    ) -> Result<Option<usize>, Error> {
        match self.store.withdraw_from(author, from) {
            Ok(_) => {}
            Err(StoreError::BuiltOn { .. }) => return Ok(None),
            Err(e) => return Err(e.into()),
        }
        // Withdrawn member changes no longer count (this device's own are re-issued).
        *self.membership =
            Membership::compute(self.membership.book(), self.store.membership_ops()?);
        let admitted = self.admit(theirs, tips);
        let report = self.apply_admitted(&admitted.ops, &admitted.tips)?;
        Ok(Some(report.stored + report.duplicates))
    }

    /// Whether `ops` (of `author`, from seq `from`) continue the chain held here below `from`
    /// without a gap.
    fn chain_continues(
        &self,
        author: &DeviceId,
        from: u64,
        ops: &[SealedOp],
    ) -> Result<bool, Error> {
        let mut prev = match from.checked_sub(1).filter(|s| *s > 0) {
            Some(s) => match self.store.op_by_seq(author, s)? {
                Some(op) => Some(op.id()),
                None => return Ok(false),
            },
            None => None,
        };
        for (i, op) in ops.iter().enumerate() {
            if Some(op.op().seq) != from.checked_add(i as u64) || op.op().prev != prev {
                return Ok(false);
            }
            prev = Some(op.id());
        }
        Ok(true)
    }

    fn unmark_restored(&mut self) -> Result<(), Error> {
        if self.is_restored()? {
            self.store.remove_meta(meta::RESTORED)?;
            self.durable()?;
        }
        Ok(())
    }

    /// Writes `withdrawn` (this device's ops with their log offsets, in the order they were
    /// written) again at the end of its chain: the same writes and member changes at the same
    /// times, each replacing what the original replaced (a withdrawn op by its copy). Each
    /// leaves the store's list once its copy is durable; one the book no longer lets this
    /// device write (it was removed or lost the role since) leaves it without a copy. Returns
    /// the number of copies.
    fn reissue(&mut self, withdrawn: &[(u64, SealedOp)]) -> Result<usize, Error> {
        let me = self.id();
        let mut copies: BTreeMap<OpId, OpId> = BTreeMap::new();
        for (at, old) in withdrawn {
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
            if self.membership.check(&op).is_ok() {
                let clock = self.clock.clone();
                self.store_own(&op, clock)?;
                copies.insert(old.id(), op.id());
            }
            self.store.reissued(*at)?;
        }
        Ok(copies.len())
    }
}

/// Whether every op of `given_up` (a branch, in chain order) has its own copy on `kept` (in
/// chain order), later in the chain than it and in the same order: what a take back leaves
/// (copies are written after the ops taken back). Fingerprints alone could pair two honest
/// branches that differ only in what they replace; the order and the seqs rule out a swap.
fn reissued_in_order(given_up: &[SealedOp], kept: &[SealedOp]) -> bool {
    let mut rest = kept.iter();
    given_up.iter().all(|old| {
        let print = fingerprint(old);
        rest.by_ref()
            .any(|new| new.op().seq > old.op().seq && fingerprint(new) == print)
    })
}

/// What a re-issued copy shares with the op it copies: its time, writes (contact, path,
/// value) and member changes, in that op's encoding (the replaced ops differ: a copy names
/// the copies of the ops its original named).
fn fingerprint(op: &SealedOp) -> Vec<u8> {
    let o = op.op();
    let writes: Vec<(cardlog_core::ContactId, String, Option<String>)> = o
        .writes
        .iter()
        .map(|w| {
            (
                w.contact,
                w.path.to_string(),
                w.value.as_ref().map(|v| format!("{v:?}")),
            )
        })
        .collect();
    format!("{:?}|{:?}|{:?}", o.hlc, writes, o.members).into_bytes()
}

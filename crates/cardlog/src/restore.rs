//! A store restored in place (docs/SEMANTICS.md, "Restores"): the device takes back the ops of
//! its own chain that a peer holds and its backup lost, and re-issues on its chain, after them,
//! the ops it wrote since the restore at the same places (the same writes, at their first
//! times). Nothing is lost: the peer's ops come back, the device's later ones go out again, and
//! every replica converges on one chain. The session decides when (`cardlog_sync::session`:
//! once the peer has sent all it holds of the chain); this file does it. It also settles
//! another device's branch that its author gave up, and keeps a peer's branch of another
//! device's chain that cannot be settled yet, to give it back to its author (a device that
//! meets only a hub still gets back what a peer it never meets held).

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};

use cardlog_core::{
    DeviceId, Membership, Op, OpId, PublicKey, SealedOp, Signature, SignedTip, Write,
};
use cardlog_store::keys::meta;
use cardlog_sync::TakenBack;

use crate::error::Error;
use crate::replica::Replica;
use crate::sync::{decode, encode};

/// A kept branch as stored (`meta::BRANCHES`): its author, its ops' bytes in chain order, and
/// the author's key and signature of the last.
type BranchRecord = (DeviceId, Vec<Vec<u8>>, Vec<u8>, Vec<u8>);

/// Most ops of one kept branch (a longer one is not kept: its author gets it from a peer
/// that holds it, as before).
const BRANCH_OPS_MAX: usize = 1024;

/// Most bytes of one kept branch's ops (ops may be large: a count alone does not bound it).
const BRANCH_BYTES_MAX: usize = 1 << 20;

/// Most branches of other devices' chains owed back that one session considers
/// ([`Replica::owed_branches`]; the session sends at most 16 of them).
const OWED_MAX: usize = 64;

/// Most branches handed on for their authors ([`Replica::hand_on`]).
const HANDED_MAX: usize = 16;

/// A signature of another device's withdrawn op as kept by id (`meta::WITHDRAWN_SIGS`): its
/// author, seq and id, the author's key and signature.
type SigRecord = (DeviceId, u64, OpId, Vec<u8>, Vec<u8>);

/// Most signatures of withdrawn ops kept by id ([`Replica::keep_withdrawn_signatures`]).
const WITHDRAWN_SIGS_MAX: usize = 1024;

/// Most branches kept, and most bytes of all their ops (the oldest goes first).
const BRANCHES_MAX: usize = 64;
const BRANCHES_BYTES_MAX: usize = 8 << 20;

/// Most attempts (one per session or bundle, and per take back or settling) an op listed for
/// re-issue waits for another device's copy of an op it names before it goes without naming
/// it ([`Replica::reissue_pending`]).
const REISSUE_WAIT_ATTEMPTS: u8 = 16;

/// Most sessions a restored mark lasts in which a peer sends all it holds of the chain and
/// nothing differs (a claim nobody holds up goes then, whoever made it).
const MARK_SESSIONS: u8 = 8;

/// Most op ids kept under `meta::GIVEN_UP` (the oldest go first).
const GIVEN_UP_MAX: usize = 1024;

/// The restored mark as kept (`meta::RESTORED`): the seq where a peer was found to hold the
/// chain otherwise (a record: no rule reads it since session 30), that peer, and how many more
/// sessions without a take back it lasts. The
/// store's own withdraw writes a bare mark (one byte), read as "anywhere, anyone".
#[derive(Debug, Clone, Copy)]
struct Mark {
    at: u64,
    by: Option<DeviceId>,
    left: u8,
}

impl Mark {
    fn bytes(&self) -> Vec<u8> {
        let mut v = self.at.to_be_bytes().to_vec();
        if let Some(by) = self.by {
            v.extend_from_slice(&by.0);
        }
        v.push(self.left);
        v
    }

    fn read(v: &[u8]) -> Mark {
        let at = v
            .get(..8)
            .and_then(|b| <[u8; 8]>::try_from(b).ok())
            .map_or(0, u64::from_be_bytes);
        let by = v
            .get(8..24)
            .and_then(|b| <[u8; 16]>::try_from(b).ok())
            .map(DeviceId);
        let left = match v.len() {
            9 | 25 => v.last().copied().unwrap_or(MARK_SESSIONS),
            _ => MARK_SESSIONS,
        };
        Mark { at, by, left }
    }
}

impl Replica {
    /// Whether a peer is known to hold this replica's own chain otherwise than it does (its
    /// store was restored from a backup, and it wrote since) and those ops are not taken back
    /// yet: its next session asks the peer for all of its chain.
    pub fn is_restored(&self) -> Result<bool, Error> {
        Ok(self.store.meta(meta::RESTORED)?.is_some())
    }

    /// Marks the chain restored: `peer` holds an op of it at seq `at` where this replica
    /// holds another ([`Mark`]).
    pub(crate) fn mark_restored_chain(&mut self, peer: DeviceId, at: u64) -> Result<(), Error> {
        let mark = Mark {
            at,
            by: Some(peer),
            left: MARK_SESSIONS,
        };
        self.store.put_meta(meta::RESTORED, mark.bytes())?;
        self.durable()
    }

    fn mark(&self) -> Result<Option<Mark>, Error> {
        Ok(self.store.meta(meta::RESTORED)?.map(|v| Mark::read(&v)))
    }

    /// Takes back this replica's own ops `theirs` (with their signatures `tips`), as `peer`
    /// holds them, from where they differ from its chain (those that link from there: the
    /// peer may have sent two branches of it), and re-issues what that replaces
    /// (and anything an earlier take back left to re-issue). `None` when nothing was taken
    /// back. Another device's op that builds on the ops withdrawn goes with them, until its
    /// author re-issues it (`Store::withdraw_from`). Where the op held at the place was
    /// stamped before the peer's, or the peer's hold one this device gave up (withdrew,
    /// recorded, or holds a later copy of) or continue one it withdrew or gave up instead of
    /// the chain held below ([`Self::continues_elsewhere`]), the chain stays and the peer's
    /// ops it neither holds nor gave up are re-issued after it ([`Self::reissue_theirs`]), all
    /// then recorded as given up. A take back that cannot be made (`theirs` has a gap, or is
    /// not all signed and admitted) changes nothing but the mark: the fork stays recorded, as
    /// any fork. With nothing differing, the mark stays until a peer holding the lost ops is
    /// met, unless `peer` made the claim that marked it (or the mark names no claimant and
    /// `peer` is the relay) or the mark has lasted [`MARK_SESSIONS`] such sessions: then the
    /// claim was stale. A peer holding the chain as here, however far, proves nothing about
    /// the claimant's ops, so how far `peer`'s hello said it holds the chain is not used.
    pub(crate) fn take_back_chain(
        &mut self,
        peer: Option<(DeviceId, u64)>,
        theirs: &[SealedOp],
        tips: &[SignedTip],
    ) -> Result<Option<TakenBack>, Error> {
        let me = self.id();
        // Only the ops that link from where the chains part: a peer may send two branches of
        // this chain (the one it holds and one it keeps aside), set apart here by seq as one
        // list; the first branch is taken back now, the other comes again after (seed 0xcbfcf
        // of base 835000: restored twice from two backups, the phone got "one" at seq 5 from
        // the desktop's chain and its lost tag at 6 from the branch the desktop kept, which
        // continues "three"; the two did not link, so nothing was ever taken back).
        let parting = self.parting(&me, theirs)?.map(|(from, mut ops)| {
            let linked = ops
                .windows(2)
                .take_while(|w| w.get(1).map(|b| b.op().prev) == w.first().map(|a| Some(a.id())))
                .count();
            ops.truncate(linked + 1);
            (from, ops)
        });
        let mut taken = TakenBack::default();
        if let Some((from, recovered)) = &parting {
            let from = *from;
            // Checked once: the signatures are the costly part.
            let own = self.authentic(from, recovered, tips)?;
            if !own {
                self.unmark_restored()?;
                return Ok(None);
            }
            let copied = self.copied_later(&me, recovered)?;
            // The given-up record, read once for both uses below.
            let given = self.given_up()?;
            let gave_up = |op: &SealedOp| self.store.withdrew(&op.id()) || given.contains(&op.id());
            if copied.iter().any(|c| *c)
                || recovered.iter().any(gave_up)
                || self.continues_elsewhere(&me, from, recovered, true)?
                || self.stamped_first(&me, from, recovered)?
            {
                // The chain held here stays, and what the peer holds of it otherwise comes
                // back re-issued after it (an op with a copy on the chain is not written
                // again), then counts as given up, so the peer gets the chain to settle:
                // - ops of which some were given up or have a later copy here belong to a
                //   branch this device gave up at a take back, maybe forgetting it when its
                //   store was restored once more from the backup of before (seed 0xc3916 of
                //   base 801000: taking it back swung back to it). Those of its ops written
                //   after the take back's copies were lost with the restore and held by this
                //   peer alone (seed 0xc3ddb of base 802000: before, they were never taken
                //   back and the replicas never converged).
                // - the op held at the place was stamped before the peer's: every rebuilding
                //   of this chain orders two branches so, whichever it meets first (seed
                //   0xc3552 of base 800000: restored a second time, the phone got its
                //   first-written op back from one peer and then took the later one back
                //   from another, re-issuing the first after it, while the relay kept the
                //   order the first take back had made: the same edits the other way round,
                //   and the two never settled).
                // The mark goes if this peer's claim set it (or none named): another peer's
                // claim may still be of ops really lost.
                // The peer's ops neither held nor given up (re-issuing the others adds nothing).
                let fresh: Vec<SealedOp> = recovered
                    .iter()
                    .filter(|op| !gave_up(op))
                    .cloned()
                    .collect();
                // What waits for re-issue goes first, in its order; while any of it still
                // waits (for another device's copy), nothing is written after it: the mark
                // stays and a later session goes on.
                if !self.store.pending_reissue()?.is_empty() {
                    taken.reissued = self.reissue_pending()?;
                    if !self.store.pending_reissue()?.is_empty() {
                        return Ok((taken.reissued > 0).then_some(taken));
                    }
                }
                if !self.copies_fit(&me, &fresh)? {
                    // A copy would land below its op's seq (the chain here is shorter than
                    // the peer's branch before it): a copy is never found there, so it waits,
                    // the mark kept, until the chain reaches it.
                    return Ok((taken.reissued > 0).then_some(taken));
                }
                taken.reissued += self.reissue_theirs(&fresh)?;
                self.give_up(&fresh)?;
                self.forget_forks_where(|f| f.author == me)?;
                let by = self.mark()?.and_then(|m| m.by);
                if by.is_none() || by == peer.map(|(p, _)| p) {
                    self.unmark_restored()?;
                }
                self.durable()?;
                // Nothing of the chain was replaced (`from_seq` 0): its ops came back as copies.
                return Ok((taken.reissued > 0).then_some(taken));
            }
            let stored = self.replace_branch(&me, from, recovered, tips)?;
            taken.from_seq = from;
            taken.recovered = stored;
            if taken.recovered < recovered.len() {
                // Those naming ops withdrawn here (another device's branch given up, settled
                // before they came back) are re-issued after the chain, naming the copies, as
                // this device's own edits on a branch given up are, and recorded as given up,
                // so peers holding them settle on the copies.
                let rest = self.naming_withdrawn(&me, recovered, false)?;
                if taken.recovered + rest.len() < recovered.len() {
                    // Not all came in: re-issuing now would land where the peer holds ops.
                    // The device stays marked (the withdraw marked it); a later session
                    // finishes.
                    return Ok(Some(taken));
                }
                taken.reissued += self.reissue_theirs(&rest)?;
                self.give_up(&rest)?;
            }
        }
        let pending = self.store.pending_reissue()?;
        if parting.is_none() && pending.is_empty() {
            if let (Some(mut mark), Some((peer, _))) = (self.mark()?, peer) {
                // The claim was stale when the peer that made it sends all it holds of the
                // chain and nothing differs. Any other peer, the relay too, proves nothing:
                // it may never have held the lost ops, which still sit on the claimant
                // (seed 0xc3988 of base 801000: the relay, holding the chain as here past the
                // claim, cleared each mark the laptop's hello set, and the phone's lost edit
                // never came back). A bare mark (a withdraw's, naming no claimant) with
                // nothing left to take back or re-issue is what a finished take back left
                // behind: the relay clears it, as before. Else the mark lasts a bounded
                // number of such sessions.
                let stale = mark.by == Some(peer)
                    || (mark.by.is_none() && self.is_time_reference(&peer))
                    || mark.left <= 1;
                if stale {
                    self.unmark_restored()?;
                } else {
                    mark.left -= 1;
                    self.store.put_meta(meta::RESTORED, mark.bytes())?;
                    self.durable()?;
                }
            }
            return Ok(None);
        }
        taken.reissued = self.reissue_pending()?;
        self.unmark_restored()?;
        let me = self.id();
        self.forget_forks_where(|f| f.author == me)?;
        self.durable()?;
        Ok(Some(taken))
    }

    /// Re-issues this device's own ops among `ops` (just applied, from a peer) that could not
    /// be stored because they name ops withdrawn here ([`Self::naming_withdrawn`]), and
    /// records them as given up: a device that lost them and settled the fork they built on
    /// before a peer gave them back (not a take back: it held nothing at their seqs). The
    /// number of ops so handled.
    pub(crate) fn reissue_own_naming_withdrawn(
        &mut self,
        ops: &[SealedOp],
    ) -> Result<usize, Error> {
        let me = self.id();
        let mut own: Vec<SealedOp> = ops
            .iter()
            .filter(|op| op.op().author == me)
            .cloned()
            .collect();
        own.sort_by_key(|op| op.op().seq);
        let rest = self.naming_withdrawn(&me, &own, false)?;
        if rest.is_empty() {
            return Ok(0);
        }
        self.reissue_theirs(&rest)?;
        self.give_up(&rest)?;
        Ok(rest.len())
    }

    /// Hands on for their author ([`Self::hand_on`]) other devices' ops among `ops` (just
    /// applied, signed by `tips`) that could not be stored because they name ops withdrawn
    /// or not held here: per author, the ops that continue the chain held here and name such
    /// ops ([`Self::naming_withdrawn`]'s rule, an op not held counting as withdrawn), when the
    /// author's signature of the last came with them and the book lets them in. (An op not
    /// held may have been withdrawn elsewhere before this replica held it: seed 0xc7774 of
    /// base 817000, the laptop's rename of the tablet's rename, which the phone never held.)
    /// Their author withdraws and re-issues them when it settles the same fork; if it lost
    /// them, this replica gives them back (docs/SYNC.md, "Edits owed back").
    pub(crate) fn hand_on_naming_withdrawn(
        &mut self,
        ops: &[SealedOp],
        tips: &[SignedTip],
    ) -> Result<(), Error> {
        let me = self.id();
        let mut by_author: BTreeMap<DeviceId, Vec<SealedOp>> = BTreeMap::new();
        for op in ops.iter().filter(|op| op.op().author != me) {
            by_author
                .entry(op.op().author)
                .or_default()
                .push(op.clone());
        }
        for (author, mut theirs) in by_author {
            theirs.sort_by_key(|op| op.op().seq);
            let branch = self.naming_withdrawn(&author, &theirs, true)?;
            let Some(last) = branch.last() else {
                continue;
            };
            let Some(tip) = tips
                .iter()
                .find(|t| t.author == author && t.op == last.id() && t.seq == last.op().seq)
            else {
                continue;
            };
            let bytes: usize = branch.iter().map(|op| op.bytes().len()).sum();
            if branch.len() > BRANCH_OPS_MAX
                || bytes > BRANCH_BYTES_MAX
                || cardlog_sync::SyncStore::authorship(self, &branch, &[*tip]).is_err()
            {
                continue;
            }
            self.hand_on(&branch, tip)?;
        }
        Ok(())
    }

    /// The ops of `own` (`me`'s, in chain order, just offered to the store by a take back or an
    /// apply) that it could not store because they name ops withdrawn here:
    /// from the first not held, which must continue the chain held here and name at least one
    /// op withdrawn here, every other op it names being held or withdrawn; then each op after
    /// it that continues it and names only ops held, withdrawn or among these. None given up
    /// or withdrawn here (those are listed for re-issue, or have their copies). Re-issued
    /// after the chain, each copy lands at its op's seq or later, as copies must (seed
    /// 0xc5d8c of base 809000: the laptop lost its contact and its rename of the phone's
    /// contact to a restore; by the time a peer gave them back, the laptop had settled the
    /// phone's fork, withdrawing the contact the rename named). Empty if there are none.
    fn naming_withdrawn(
        &self,
        me: &DeviceId,
        own: &[SealedOp],
        lacking: bool,
    ) -> Result<Vec<SealedOp>, Error> {
        let tip = self.store.summary().get(me).copied();
        let (mut seq, mut prev) = (tip.map_or(0, |t| t.seq), tip.map(|t| t.op));
        let given = self.given_up()?;
        let mut rest: Vec<SealedOp> = Vec::new();
        for op in own {
            let held = self.store.op_by_seq(me, op.op().seq)?;
            if rest.is_empty() && held.is_some_and(|h| h.id() == op.id()) {
                continue;
            }
            let o = op.op();
            let continues = o.seq == seq.saturating_add(1) && o.prev == prev;
            let fresh = !self.store.withdrew(&op.id()) && !given.contains(&op.id());
            if !continues || !fresh {
                break;
            }
            let mut names_withdrawn = false;
            let mut all_known = true;
            for r in o.writes.iter().flat_map(|w| &w.replaces) {
                if self.store.withdrew(r) {
                    names_withdrawn = true;
                } else if !rest.iter().any(|x| x.id() == *r)
                    && !cardlog_core::replay::OpLookup::contains(&self.store, r)?
                {
                    all_known = false;
                }
            }
            // (With `lacking`, an op named that is not held here counts as withdrawn: it may
            // have been withdrawn elsewhere before this replica ever held it.)
            if lacking && !all_known {
                (names_withdrawn, all_known) = (true, true);
            }
            if !all_known || (rest.is_empty() && !names_withdrawn) {
                break;
            }
            (seq, prev) = (o.seq, Some(op.id()));
            rest.push(op.clone());
        }
        Ok(rest)
    }

    /// Whether each op of `ops` (of `author`'s chain) has a copy on the chain held here at a
    /// later seq: the same writes, member changes and time (what a re-issue writes).
    fn copied_later(&self, author: &DeviceId, ops: &[SealedOp]) -> Result<Vec<bool>, Error> {
        let Some(first) = ops.iter().map(|o| o.op().seq).min() else {
            return Ok(Vec::new());
        };
        let tip = self.store.summary().get(author).map_or(0, |t| t.seq);
        // Each fingerprint held from there, with the highest seq it is held at.
        let mut held: std::collections::HashMap<Vec<u8>, u64> = Default::default();
        for s in first..=tip {
            if let Some(op) = self.store.op_by_seq(author, s)? {
                held.insert(fingerprint(&op), s);
            }
        }
        Ok(ops
            .iter()
            .map(|op| held.get(&fingerprint(op)).is_some_and(|s| *s > op.op().seq))
            .collect())
    }

    /// Whether the op this device holds at `from` of its own chain was stamped before the
    /// first of `theirs` (a peer's branch from there; the op id decides a tie): the chain
    /// keeps the earlier-stamped branch and the other is re-issued after it, whichever of the
    /// two a rebuilding of the chain meets first, so every rebuilding orders them alike.
    /// `false` when nothing is held there.
    fn stamped_first(
        &self,
        author: &DeviceId,
        from: u64,
        theirs: &[SealedOp],
    ) -> Result<bool, Error> {
        let (Some(held), Some(first)) = (self.store.op_by_seq(author, from)?, theirs.first())
        else {
            return Ok(false);
        };
        Ok((held.op().hlc, held.id()) < (first.op().hlc, first.id()))
    }

    /// Whether copies of `ops` (in chain order, those without a copy on the chain yet) would
    /// each land at their op's seq or later when written after the chain's tip.
    fn copies_fit(&self, author: &DeviceId, ops: &[SealedOp]) -> Result<bool, Error> {
        let mut next = self.store.summary().get(author).map_or(0, |t| t.seq) + 1;
        let copied = self.copied_later(author, ops)?;
        for (op, copied) in ops.iter().zip(copied) {
            if copied {
                continue;
            }
            if next < op.op().seq {
                return Ok(false);
            }
            next += 1;
        }
        Ok(true)
    }

    /// Writes copies of `theirs` (this device's own ops, as a peer holds them on a branch
    /// the chain here does not follow) at the end of the chain, as a take back re-issues:
    /// the same writes, member changes and times, naming the copies of what they named. A
    /// copy already on the chain is not written again (a crash came in between). Nothing
    /// waits: a write naming an op whose copy is not held names none for it. The number of
    /// copies written.
    fn reissue_theirs(&mut self, theirs: &[SealedOp]) -> Result<usize, Error> {
        let ops: Vec<(Option<u64>, &SealedOp)> = theirs.iter().map(|op| (None, op)).collect();
        let (written, _) = self.write_copies(&ops, false)?;
        Ok(written)
    }

    /// Records `ops` (this device's own, held by a peer) as a branch it gave up
    /// (`meta::GIVEN_UP`, at most [`GIVEN_UP_MAX`] ids in the order last seen, the oldest
    /// going first).
    fn give_up(&mut self, ops: &[SealedOp]) -> Result<(), Error> {
        let mut ids = self.given_up()?;
        let mut copies = self.given_up_copies()?;
        let mut prints = Prints::default();
        for op in ops {
            // Seen again: to the end, the newest.
            ids.retain(|id| *id != op.id());
            ids.push(op.id());
            // Its copy, by the given-up op's id (`meta::GIVEN_UP_COPIES`), for an own op
            // given back later that names it (seed 0xc9038's kind: an edit of it).
            if let Some(copy) = self.copy_of(op, &mut prints)? {
                copies.retain(|(id, _)| *id != op.id());
                copies.push((op.id(), copy));
            }
        }
        let over = ids.len().saturating_sub(GIVEN_UP_MAX);
        ids.drain(..over);
        let over = copies.len().saturating_sub(GIVEN_UP_MAX);
        copies.drain(..over);
        self.store.put_meta(meta::GIVEN_UP, encode(&ids))?;
        self.store
            .put_meta(meta::GIVEN_UP_COPIES, encode(&copies))?;
        self.durable()
    }

    /// The copies of the ops recorded by [`Self::give_up`], by the given-up op's id (none
    /// when the record does not decode: an own op naming one then names none for it, beside
    /// its copy, a visible conflict).
    fn given_up_copies(&self) -> Result<Vec<(OpId, OpId)>, Error> {
        Ok(self
            .store
            .meta(meta::GIVEN_UP_COPIES)?
            .and_then(|v| decode::<Vec<(OpId, OpId)>>(&v, "copies of given-up ops").ok())
            .unwrap_or_default())
    }

    /// The copy held here of `id`, an own op this device gave up ([`Self::give_up`]).
    fn given_up_copy(&self, id: &OpId) -> Result<Option<OpId>, Error> {
        let Some(copy) = self
            .given_up_copies()?
            .into_iter()
            .find_map(|(given, copy)| (given == *id).then_some(copy))
        else {
            return Ok(None);
        };
        Ok(cardlog_core::replay::OpLookup::contains(&self.store, &copy)?.then_some(copy))
    }

    /// The ops recorded by [`Self::give_up`] (none when the record does not decode).
    fn given_up(&self) -> Result<Vec<OpId>, Error> {
        Ok(self
            .store
            .meta(meta::GIVEN_UP)?
            .and_then(|v| decode::<Vec<OpId>>(&v, "given-up ops").ok())
            .unwrap_or_default())
    }

    /// Whether this device gave `id` up: withdrew it at a take back, or found it on a peer
    /// as a branch it gave up before a restore made it forget ([`Self::give_up`]).
    pub(crate) fn gave_up(&self, id: &OpId) -> bool {
        self.store.withdrew(id) || self.given_up().is_ok_and(|ids| ids.contains(id))
    }

    /// Whether `recovered` (this device's ops from seq `from`, as a peer holds them) are its
    /// own: they continue its chain below `from`, or an op of it withdrawn or given up here
    /// ([`Self::continues_elsewhere`]), without a gap, and are signed by its key and
    /// let in by the book, judged as if nothing of the chain were held here (what is held
    /// there is what they replace). Nothing else a peer shows of this chain is acted on.
    fn authentic(
        &self,
        from: u64,
        recovered: &[SealedOp],
        tips: &[SignedTip],
    ) -> Result<bool, Error> {
        let me = self.id();
        if !self.chain_continues(&me, from, recovered)?
            && !self.continues_elsewhere(&me, from, recovered, true)?
        {
            return Ok(false);
        }
        Ok(cardlog_sync::SyncStore::authorship(self, recovered, tips).is_ok())
    }

    /// Settles a fork of `author`'s chain (another device's) when the branch held here is one
    /// its author gave up: every op of it from where `theirs` differs has a copy on `theirs`
    /// (the same writes, member changes and time) but those naming another device's op built
    /// on the branch (their author re-issues them once that device has), `theirs` continues
    /// the chain held below there and is signed and let in. The held branch is withdrawn and
    /// `theirs` stored; what builds on the branch here goes with it (`Store::withdraw_from`):
    /// this device's own such edits are re-issued ([`Self::reissue_pending`]; with the take
    /// back, if this device is marked restored), naming the author's copies of what they
    /// named, and another device's wait for their author to do the same. `false`, changing
    /// nothing, otherwise.
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
        if recovered.iter().any(|op| self.store.withdrew(&op.id()))
            || !self.chain_continues(&author, from, &recovered)?
            || cardlog_sync::SyncStore::authorship(self, &recovered, tips).is_err()
        {
            return Ok(false);
        }
        let tip = self.store.summary().get(&author).map_or(0, |t| t.seq);
        let mut given_up = Vec::new();
        for seq in from..=tip {
            match self.store.op_by_seq(&author, seq)? {
                Some(op) => given_up.push(op),
                None => return Ok(false),
            }
        }
        // Where the two part at an op and its copy at one seq (an edit re-issued where it was,
        // naming the copies of what it named), either may be the newer: the held one is not
        // given up here (it could be the copy, and the peer's the original its author
        // withdrew). Such a fork ends when the branch the original built on is settled, which
        // withdraws it.
        if let (Some(held), Some(peer)) = (given_up.first(), recovered.first()) {
            if fingerprint(held) == fingerprint(peer) {
                return Ok(false);
            }
        }
        // Its ops that name (through replaced writes) another device's op built on the branch
        // wait on its author for their copies, as that device's op waits for its own: they
        // need none yet (they are withdrawn with the branch either way).
        let mut waits: BTreeSet<OpId> = self
            .store
            .built_on(&author, from)?
            .iter()
            .map(SealedOp::id)
            .collect();
        // An op after a waiting one that has no copy on `theirs` yet waits too: its author
        // re-issues it after the waiting one rather than below its own seq
        // ([`Self::reissue`]).
        let total = given_up.len();
        let mut must_copy = Vec::with_capacity(total);
        let mut after_waiting = false;
        for op in given_up {
            let names_waiting = op
                .op()
                .writes
                .iter()
                .flat_map(|w| &w.replaces)
                .any(|r| waits.contains(r));
            let uncopied = || {
                let print = fingerprint(&op);
                !recovered
                    .iter()
                    .any(|r| r.op().seq >= op.op().seq && fingerprint(r) == print)
            };
            if names_waiting || (after_waiting && uncopied()) {
                waits.insert(op.id());
                after_waiting = true;
            } else {
                must_copy.push(op);
            }
        }
        // With ops left out (they wait), the rest must be copied in order (`copied`).
        let whole = must_copy.len() == total;
        if must_copy.is_empty() || !copied(&must_copy, &recovered, !whole) {
            return Ok(false);
        }
        // A take back under way re-issues what this withdraws of this device's own with the
        // rest; otherwise it is re-issued here.
        let taking_back = self.is_restored()?;
        let stored = self.replace_branch(&author, from, &recovered, tips)?;
        if !taking_back {
            self.reissue_pending()?;
            // (The withdraw marked the chain if it took own ops: they are listed instead.)
            self.unmark_restored()?;
        }
        if stored < recovered.len() {
            // Not all came in (the record stays; a later session sends the rest).
            self.durable()?;
            return Ok(false);
        }
        self.forget_forks_where(|f| f.author == author)?;
        self.forget_branch(&author)?;
        self.durable()?;
        Ok(true)
    }

    /// Keeps a peer's branch of `author`'s chain (another device's) where it forks from the
    /// one held here and was not settled: from where they part, continuing the chain held
    /// below, signed by the author to its last op and let in, none withdrawn here, at most
    /// [`BRANCH_OPS_MAX`] ops. If the author was restored in place and wrote since, this is
    /// what it lost; its next session here gives it back (docs/SYNC.md, "A fork of one's own
    /// chain"), so a device that meets only a relay is not stranded.
    pub(crate) fn keep_branch_of(
        &mut self,
        author: DeviceId,
        theirs: &[SealedOp],
        tips: &[SignedTip],
    ) -> Result<(), Error> {
        if author == self.id() {
            return Ok(());
        }
        let Some((from, branch)) = self.parting(&author, theirs)? else {
            return Ok(());
        };
        let Some(last) = branch.last() else {
            return Ok(());
        };
        let Some(tip) = tips
            .iter()
            .find(|t| t.author == author && t.op == last.id() && t.seq == last.op().seq)
        else {
            return Ok(());
        };
        let bytes: usize = branch.iter().map(|op| op.bytes().len()).sum();
        if branch.len() > BRANCH_OPS_MAX
            || bytes > BRANCH_BYTES_MAX
            || branch.iter().any(|op| self.store.withdrew(&op.id()))
            || cardlog_sync::SyncStore::authorship(self, &branch, &[*tip]).is_err()
        {
            return Ok(());
        }
        // A branch that does not continue the chain held here is not kept; if it continues
        // an op this replica never held or withdrew, it may be the rest of a branch given up,
        // withdrawn with it elsewhere, on its way to its author: it is handed on to the
        // author alone.
        if !self.chain_continues(&author, from, &branch)? {
            if self.continues_elsewhere(&author, from, &branch, false)? {
                self.hand_on(&branch, tip)?;
                // Not a fork of the chain held here: the receive recorded it as one (naming
                // the op the branch continues, or its op at a seq held here).
                let mut named: BTreeSet<OpId> = branch.iter().map(SealedOp::id).collect();
                named.extend(branch.first().and_then(|op| op.op().prev));
                self.forget_forks_where(|f| f.author == author && named.contains(&f.theirs))?;
            }
            return Ok(());
        }
        let mut all = self.branches()?;
        push_record(&mut all, BRANCHES_MAX, &branch, tip);
        self.store.put_meta(meta::BRANCHES, encode(&all))?;
        self.durable()
    }

    /// The branch of `author`'s chain kept by [`Self::keep_branch_of`], with the author's
    /// signature of its last op; `None` when none is kept, or it is no longer worth giving
    /// ([`Self::worth_giving`]).
    pub(crate) fn kept_branch_of(
        &self,
        author: &DeviceId,
    ) -> Result<Option<(Vec<SealedOp>, SignedTip)>, Error> {
        match self.branches()?.into_iter().find(|(a, ..)| a == author) {
            Some(record) => self.worth_giving(record),
            None => Ok(None),
        }
    }

    /// The branches of other devices' chains withdrawn here that hold an edit their author
    /// has not re-issued (no copy on the chain held here), from the first such edit, each
    /// with the author's signature of its last op, checked against the book, at most
    /// [`BRANCH_OPS_MAX`] ops and [`BRANCH_BYTES_MAX`] bytes; then the branches handed on
    /// for their author alone ([`Self::hand_on`]); at most [`OWED_MAX`] in all. Such edits
    /// were withdrawn for building on a branch a third device gave up; their author re-issues
    /// them once it has them, and if it lost them (restored in place), no replica serves a
    /// withdrawn op otherwise ([`cardlog_sync::PeerBook::owed`]). Those of `peer`'s own chain
    /// come first, so the bound never leaves out what the session's peer is owed.
    pub(crate) fn owed_branches(&self, peer: &DeviceId) -> Result<Vec<cardlog_sync::Owed>, Error> {
        let me = self.id();
        let mut prints = Prints::default();
        let mut owed = Vec::new();
        let sigs = self.withdrawn_signatures()?;
        let chains = self.store.withdrawn_chains()?;
        let handed = self.handed()?;
        // The peer's own first, then the others, each in the order read.
        for peers_own in [true, false] {
            for mut ops in chains
                .iter()
                .filter(|c| {
                    c.first()
                        .is_some_and(|op| (op.op().author == *peer) == peers_own)
                })
                .cloned()
            {
                // Up to its highest op whose signature is kept (by seq, or by id at the withdraw).
                let mut tip = None;
                for (i, op) in ops.iter().enumerate().rev() {
                    let (author, seq, id) = (op.op().author, op.op().seq, op.id());
                    let by_id = sigs.iter().find(|r| r.2 == id).and_then(|r| {
                        Some(SignedTip {
                            author,
                            key: PublicKey(r.3.clone().try_into().ok()?),
                            seq,
                            op: id,
                            signature: Signature(r.4.clone().try_into().ok()?),
                        })
                    });
                    let kept = match by_id {
                        Some(t) => Some(t),
                        None => self.store.kept_signature(&author, seq, &id)?,
                    };
                    if let Some(t) = kept {
                        tip = Some(t);
                        ops.truncate(i + 1);
                        break;
                    }
                }
                let Some(tip) = tip.filter(|t| t.author != me) else {
                    continue;
                };
                // From the first op not re-issued: those below it have copies (what they name
                // may not be held anywhere any more, so they could not be sent either).
                let mut first = None;
                for (i, op) in ops.iter().enumerate() {
                    if self.copy_of(op, &mut prints)?.is_none() {
                        first = Some(i);
                        break;
                    }
                }
                let Some(first) = first else {
                    continue;
                };
                ops.drain(..first);
                let bytes: usize = ops.iter().map(|op| op.bytes().len()).sum();
                if ops.len() > BRANCH_OPS_MAX || bytes > BRANCH_BYTES_MAX {
                    continue;
                }
                if cardlog_sync::SyncStore::authorship(self, &ops, &[tip]).is_err() {
                    continue;
                }
                // The ops below that only this signature proves go with it, if the book still
                // lets them in.
                let mut proved = self.proved_only_by(&ops)?;
                let linked: Vec<SealedOp> = proved.iter().chain(&ops).cloned().collect();
                if cardlog_sync::SyncStore::authorship(self, &linked, &[tip]).is_err() {
                    proved.clear();
                }
                owed.push(cardlog_sync::Owed {
                    ops,
                    tip,
                    author_only: false,
                    proved,
                });
                if owed.len() == OWED_MAX {
                    return Ok(owed);
                }
            }
            for record in handed
                .iter()
                .filter(|(author, ..)| (author == peer) == peers_own)
                .cloned()
            {
                if let Some((ops, tip)) = self.still_owed(record, &mut prints)? {
                    owed.push(cardlog_sync::Owed {
                        ops,
                        tip,
                        author_only: true,
                        proved: Vec::new(),
                    });
                    if owed.len() == OWED_MAX {
                        return Ok(owed);
                    }
                }
            }
        }
        Ok(owed)
    }

    /// The ops of the author's chain held here just below `branch` (withdrawn ops, in chain
    /// order) that only the branch's signature proves: each continued by the next (the
    /// branch's first op continuing the last), none with a kept signature of its own, down
    /// to the first that has one (it, and what it continues, travel as any op). At most
    /// [`BRANCH_OPS_MAX`] ops with the branch and [`BRANCH_BYTES_MAX`] bytes; none if more
    /// would be needed (seed 0xc5d8c of base 809000: the laptop's contact below its rename,
    /// which settling the phone's fork withdrew, after the laptop lost both to a restore).
    fn proved_only_by(&self, branch: &[SealedOp]) -> Result<Vec<SealedOp>, Error> {
        let Some(first) = branch.first() else {
            return Ok(Vec::new());
        };
        let author = first.op().author;
        let mut bytes: usize = branch.iter().map(|op| op.bytes().len()).sum();
        let mut proved = Vec::new();
        let (mut seq, mut prev) = (first.op().seq, first.op().prev);
        while let (Some(below), Some(want)) = (seq.checked_sub(1).filter(|s| *s > 0), prev) {
            let Some(held) = self.store.op_by_seq(&author, below)? else {
                break;
            };
            if held.id() != want || self.store.kept_signature(&author, below, &want)?.is_some() {
                break;
            }
            bytes += held.bytes().len();
            if proved.len() + branch.len() >= BRANCH_OPS_MAX || bytes > BRANCH_BYTES_MAX {
                return Ok(Vec::new());
            }
            (seq, prev) = (below, held.op().prev);
            proved.push(held);
        }
        proved.reverse();
        Ok(proved)
    }

    /// Keeps, by op id, the signatures of other devices' ops just withdrawn (`withdrawn`)
    /// that are kept here by seq ([`meta::WITHDRAWN_SIGS`], at most [`WITHDRAWN_SIGS_MAX`],
    /// the oldest going first): the author's next op at a seq replaces the one kept there,
    /// and a withdrawn op may still be owed ([`Self::owed_branches`]).
    fn keep_withdrawn_signatures(&mut self, withdrawn: &[SealedOp]) -> Result<(), Error> {
        let me = self.id();
        let mut all = self.withdrawn_signatures()?;
        let before = all.len();
        for op in withdrawn.iter().filter(|op| op.op().author != me) {
            let (author, seq, id) = (op.op().author, op.op().seq, op.id());
            if all.iter().any(|r| r.2 == id) {
                continue;
            }
            if let Some(tip) = self.store.kept_signature(&author, seq, &id)? {
                all.push((
                    author,
                    seq,
                    id,
                    tip.key.0.to_vec(),
                    tip.signature.0.to_vec(),
                ));
            }
        }
        if all.len() == before {
            return Ok(());
        }
        let excess = all.len().saturating_sub(WITHDRAWN_SIGS_MAX);
        all.drain(..excess);
        self.store.put_meta(meta::WITHDRAWN_SIGS, encode(&all))?;
        Ok(())
    }

    /// The signatures kept by [`Self::keep_withdrawn_signatures`]; a record that does not
    /// decode counts as none (they only help give back what peers may still hold).
    fn withdrawn_signatures(&self) -> Result<Vec<SigRecord>, Error> {
        Ok(match self.store.meta(meta::WITHDRAWN_SIGS)? {
            Some(v) => decode(&v, "withdrawn signatures").unwrap_or_default(),
            None => Vec::new(),
        })
    }

    /// Hands on `branch` (checked by the caller: signed by `tip`) for its author alone (`meta::HANDED`, at most [`HANDED_MAX`] branches and
    /// [`BRANCHES_BYTES_MAX`] bytes in all, the oldest going first).
    fn hand_on(&mut self, branch: &[SealedOp], tip: &SignedTip) -> Result<(), Error> {
        let mut all = self.handed()?;
        push_record(&mut all, HANDED_MAX, branch, tip);
        self.store.put_meta(meta::HANDED, encode(&all))?;
        self.durable()
    }

    /// The branches handed on for their authors ([`Self::hand_on`]); a record that does not
    /// decode counts as none (as [`Self::branches`]).
    fn handed(&self) -> Result<Vec<BranchRecord>, Error> {
        Ok(match self.store.meta(meta::HANDED)? {
            Some(v) => decode(&v, "handed").unwrap_or_default(),
            None => Vec::new(),
        })
    }

    /// A handed-on branch as its ops and the author's signature of the last, while its author
    /// may still lack it: not held here, none withdrawn here, none with a copy on the chain
    /// held here (the author re-issued it), and signed by the author.
    fn still_owed(
        &self,
        record: BranchRecord,
        prints: &mut Prints,
    ) -> Result<Option<(Vec<SealedOp>, SignedTip)>, Error> {
        let Some((ops, tip)) = read_record(record) else {
            return Ok(None);
        };
        let (author, Some(first)) = (tip.author, ops.first()) else {
            return Ok(None);
        };
        let held = self.store.op_by_seq(&author, first.op().seq)?;
        if author == self.id()
            || held.is_some_and(|o| o.id() == first.id())
            || ops.iter().any(|op| self.store.withdrew(&op.id()))
        {
            return Ok(None);
        }
        for op in &ops {
            if self.copy_of(op, prints)?.is_some() {
                return Ok(None);
            }
        }
        if cardlog_sync::SyncStore::authorship(self, &ops, &[tip]).is_err() {
            return Ok(None);
        }
        Ok(Some((ops, tip)))
    }

    /// A kept branch as its ops and the author's signature of the last, unless the chain held
    /// here has taken it in since, or holds its author's copies of it (the author gave it up;
    /// copies of edits withdrawn for building on a branch given up may sit at their own seqs).
    fn worth_giving(
        &self,
        record: BranchRecord,
    ) -> Result<Option<(Vec<SealedOp>, SignedTip)>, Error> {
        let Some((ops, tip)) = read_record(record) else {
            return Ok(None);
        };
        let (author, Some(first)) = (&tip.author, ops.first()) else {
            return Ok(None);
        };
        let held = self
            .store
            .op_by_seq(author, first.op().seq)?
            .map(|o| o.id());
        if held == Some(first.id()) || ops.iter().any(|op| self.store.withdrew(&op.id())) {
            // Taken in, or withdrawn here (given up).
            return Ok(None);
        }
        // Given up by its author: the chain held here has its copies.
        let head = self.store.summary().get(author).map_or(0, |t| t.seq);
        let mut ours = Vec::new();
        for seq in first.op().seq..=head {
            if let Some(op) = self.store.op_by_seq(author, seq)? {
                ours.push(op);
            }
        }
        if copied(&ops, &ours, false) {
            return Ok(None);
        }
        Ok(Some((ops, tip)))
    }

    /// The authors of the branches kept and still worth giving, each record read once.
    pub(crate) fn kept_branch_authors(&self) -> Result<BTreeSet<DeviceId>, Error> {
        let mut authors = BTreeSet::new();
        for record in self.branches()? {
            let author = record.0;
            if self.worth_giving(record)?.is_some() {
                authors.insert(author);
            }
        }
        Ok(authors)
    }

    /// The kept branches. A record that does not decode counts as none: they are copies of
    /// ops peers hold, kept to help; losing them loses nothing stored, and a session must not
    /// fail for them.
    fn branches(&self) -> Result<Vec<BranchRecord>, Error> {
        Ok(match self.store.meta(meta::BRANCHES)? {
            Some(v) => decode(&v, "branches").unwrap_or_default(),
            None => Vec::new(),
        })
    }

    /// Drops the kept branches that are no longer worth giving (the chain held here took the
    /// branch in, or holds its author's copies of it: the author gave it up), and with each
    /// the records of its author's fork, which is over here.
    pub(crate) fn tidy_branches(&mut self) -> Result<(), Error> {
        self.tidy_handed()?;
        let all = self.branches()?;
        if all.is_empty() {
            return Ok(());
        }
        let mut kept = Vec::with_capacity(all.len());
        let mut over = Vec::new();
        for record in all {
            if matches!(self.worth_giving(record.clone()), Ok(Some(_))) {
                kept.push(record);
            } else {
                over.push(record.0);
            }
        }
        if over.is_empty() {
            return Ok(());
        }
        self.store.put_meta(meta::BRANCHES, encode(&kept))?;
        if !over.is_empty() {
            self.forget_forks_where(|f| over.contains(&f.author))?;
        }
        Ok(())
    }

    /// Drops the branches handed on that their author no longer lacks
    /// ([`Self::still_owed`]).
    fn tidy_handed(&mut self) -> Result<(), Error> {
        let all = self.handed()?;
        if all.is_empty() {
            return Ok(());
        }
        let mut prints = Prints::default();
        let mut kept = Vec::with_capacity(all.len());
        for record in all.iter() {
            if self.still_owed(record.clone(), &mut prints)?.is_some() {
                kept.push(record.clone());
            }
        }
        if kept.len() == all.len() {
            return Ok(());
        }
        if kept.is_empty() {
            self.store.remove_meta(meta::HANDED)?;
        } else {
            self.store.put_meta(meta::HANDED, encode(&kept))?;
        }
        Ok(())
    }

    /// Drops the kept branch of `author` (its fork is settled here).
    fn forget_branch(&mut self, author: &DeviceId) -> Result<(), Error> {
        let mut all = self.branches()?;
        let before = all.len();
        all.retain(|(a, ..)| a != author);
        if all.len() != before {
            self.store.put_meta(meta::BRANCHES, encode(&all))?;
        }
        Ok(())
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
    /// `theirs` as any received ops. What built on the held ones is withdrawn with them, and
    /// the records of forks of its authors' chains where it was are over. The number of
    /// `theirs` now held.
    fn replace_branch(
        &mut self,
        author: &DeviceId,
        from: u64,
        theirs: &[SealedOp],
        tips: &[SignedTip],
    ) -> Result<usize, Error> {
        let withdrawal = self.store.withdraw_from(author, from)?;
        self.keep_withdrawn_signatures(&withdrawal.ops)?;
        let from = &withdrawal.authors;
        self.forget_forks_where(|f| from.get(&f.author).is_some_and(|seq| f.seq >= *seq))?;
        // Withdrawn member changes no longer count (this device's own are re-issued).
        *self.membership =
            Membership::compute(self.membership.book(), self.store.membership_ops()?);
        let admitted = self.admit(theirs, tips);
        let report = self.apply_admitted(&admitted.ops, &admitted.tips)?;
        Ok(report.stored + report.duplicates)
    }

    /// Whether `ops` (of `author`, from seq `from`) continue the chain held here below `from`
    /// without a gap.
    fn chain_continues(
        &self,
        author: &DeviceId,
        from: u64,
        ops: &[SealedOp],
    ) -> Result<bool, Error> {
        let prev = match from.checked_sub(1).filter(|s| *s > 0) {
            Some(s) => match self.store.op_by_seq(author, s)? {
                Some(op) => Some(op.id()),
                None => return Ok(false),
            },
            None => None,
        };
        Ok(linked(from, prev, ops))
    }

    /// Whether `ops` (of `author`, from seq `from`) continue, without a gap, an op this
    /// replica does not hold at `from - 1`: with `withdrawn_only`, one it withdrew or (of its
    /// own chain) gave up ([`Self::give_up`]: it holds only its id); without, also one it
    /// never held. Such ops are the rest of a branch given up: edits written on it that a
    /// replica withdrew with it and gives back to their author, who may have lost them
    /// ([`Self::owed_branches`]). A device that took back part of such a branch re-issued it
    /// and keeps only the ids of what it gave up; the rest, given back later, continues one of
    /// those (seed 0xc9038 of base 823000).
    fn continues_elsewhere(
        &self,
        author: &DeviceId,
        from: u64,
        ops: &[SealedOp],
        withdrawn_only: bool,
    ) -> Result<bool, Error> {
        let Some(base) = ops.first().and_then(|op| op.op().prev) else {
            return Ok(false);
        };
        let below = match from.checked_sub(1).filter(|s| *s > 0) {
            Some(s) => self.store.op_by_seq(author, s)?.map(|o| o.id()),
            None => return Ok(false),
        };
        if below == Some(base) {
            return Ok(false);
        }
        let base_ok = match self.store.withdrawn_op(&base)? {
            Some(op) => op.op().author == *author && op.op().seq.checked_add(1) == Some(from),
            // (Its seq is not known here: the ops' author, this device, signed that `base`
            // is its op at `from - 1`.)
            None if *author == self.id() && self.given_up()?.contains(&base) => true,
            None => !withdrawn_only && self.op(&base)?.is_none(),
        };
        Ok(base_ok && linked(from, Some(base), ops))
    }

    fn unmark_restored(&mut self) -> Result<(), Error> {
        if self.is_restored()? {
            self.store.remove_meta(meta::RESTORED)?;
            self.durable()?;
        }
        Ok(())
    }

    /// Re-issues the ops listed for re-issue ([`Self::reissue`]), as far as it can: one naming
    /// another device's withdrawn op whose copy is not held here yet waits for it, with the
    /// ops naming it (and those whose copy would land below their own seq), for [`REISSUE_WAIT_ATTEMPTS`] calls (the copy comes once that device
    /// settles the same fork); after that it goes without naming it. Returns the number of
    /// copies written.
    pub(crate) fn reissue_pending(&mut self) -> Result<usize, Error> {
        let pending = self.store.pending_reissue()?;
        if pending.is_empty() {
            if self.store.meta(meta::REISSUE_WAIT)?.is_some() {
                self.store.remove_meta(meta::REISSUE_WAIT)?;
                self.durable()?;
            }
            return Ok(0);
        }
        let left = self
            .store
            .meta(meta::REISSUE_WAIT)?
            .and_then(|v| v.first().copied())
            .unwrap_or(REISSUE_WAIT_ATTEMPTS);
        let written = self.reissue(&pending, left > 1)?;
        if self.store.pending_reissue()?.is_empty() {
            self.store.remove_meta(meta::REISSUE_WAIT)?;
            // What peers held of this chain otherwise is given up and re-issued.
            let me = self.id();
            self.forget_forks_where(|f| f.author == me)?;
        } else {
            // Each copy written may be what the rest waits for: the count starts again.
            let left = if written > 0 {
                REISSUE_WAIT_ATTEMPTS
            } else {
                left.saturating_sub(1).max(1)
            };
            self.store.put_meta(meta::REISSUE_WAIT, vec![left])?;
        }
        self.durable()?;
        Ok(written)
    }

    /// Writes `withdrawn` (this device's ops with their log offsets, in the order they were
    /// written) again at the end of its chain: the same writes and member changes at the same
    /// times, each replacing what the original replaced (a withdrawn op by its copy: this
    /// device's own written here, or another's found on its author's chain). When another's
    /// copy is not held here, the op and those naming it stay listed if `wait` (with any op after
    /// it whose copy would land below its own seq: copies keep the chain's order), else it names
    /// none for it (the write then stands beside what is there, visibly); for a removed
    /// device's op, whose copy seldom comes, it names what that op replaced (in turn), and for a
    /// void op held here none (as the op takes no effect). The ops done leave
    /// the store's list in one write at the end, their copies durable; an op that already has
    /// a copy on the chain (a crash came before the list was written) is not written again;
    /// one the book no longer lets this device write (it was removed or lost the role since)
    /// leaves it without a copy. Returns the number of copies written.
    fn reissue(&mut self, withdrawn: &[(u64, SealedOp)], wait: bool) -> Result<usize, Error> {
        let listed: Vec<(Option<u64>, &SealedOp)> =
            withdrawn.iter().map(|(at, op)| (Some(*at), op)).collect();
        let (written, done) = self.write_copies(&listed, wait)?;
        // One write for the whole list (each copy is durable already: `store_own`).
        self.store.reissued(&done)?;
        Ok(written)
    }

    /// [`Self::reissue`]'s copies of `ops` (each with its log offset when it is listed for
    /// re-issue), written at the end of the chain: the number written, and the offsets of the
    /// listed ones done.
    fn write_copies(
        &mut self,
        ops: &[(Option<u64>, &SealedOp)],
        wait: bool,
    ) -> Result<(usize, Vec<u64>), Error> {
        let me = self.id();
        let mut copies: BTreeMap<OpId, OpId> = BTreeMap::new();
        let mut prints = Prints::default();
        // Ops that wait (for another device's copy, or for an op here that waits).
        let mut waiting: BTreeSet<OpId> = BTreeSet::new();
        let mut written = 0;
        let mut done = Vec::with_capacity(ops.len());
        for (at, old) in ops {
            let old = *old;
            // Read per op: a member change copied before this one may have changed them.
            let cutoffs = self.membership.cutoffs();
            // Re-issued already (a crash came before it left the list).
            if let Some(copy) = self.copy_of(old, &mut prints)? {
                copies.insert(old.id(), copy);
                done.extend(*at);
                continue;
            }
            let mut waits = false;
            let mut writes = Vec::with_capacity(old.op().writes.len());
            for w in &old.op().writes {
                let mut replaces = Vec::with_capacity(w.replaces.len());
                // What is left to name; a removed device's withdrawn op gives way to what it
                // replaced.
                let mut todo: Vec<OpId> = w.replaces.iter().rev().copied().collect();
                let mut seen: BTreeSet<OpId> = BTreeSet::new();
                while let Some(r) = todo.pop() {
                    if !seen.insert(r) {
                        continue;
                    }
                    if waiting.contains(&r) {
                        waits = true;
                    } else if let Some(copy) = copies.get(&r) {
                        replaces.push(*copy);
                    } else if !self.store.withdrew(&r) {
                        if self.is_void(&r, &cutoffs)? {
                            // A void op takes no effect (what it replaced stays a head beside
                            // the write, as beside the original), and only a kept op naming it
                            // lets a replica store it: naming none for it, the copy goes in
                            // where the void op never went (seed 0xc6242).
                        } else if cardlog_core::replay::OpLookup::contains(&self.store, &r)? {
                            replaces.push(r);
                        } else if let Some(copy) = self.given_up_copy(&r)? {
                            // An own op given up (only its id kept, and its copy's): an own
                            // op given back after it that replaces it replaces the copy.
                            replaces.push(copy);
                        } else if wait {
                            // Not held here (an op a peer's branch named that this device
                            // lost with its disk): waits, or names none for it.
                            waits = true;
                        }
                    } else if let Some(copy) = self.copy_on_chain(&r, &mut prints)? {
                        replaces.push(copy);
                    } else if let Some(named) = self.named_by_removed(&r, w, &cutoffs)? {
                        // A removed device's copy seldom comes (`named_by_removed`): the
                        // write replaces what that op replaced, or nothing for a void op.
                        todo.extend(named.into_iter().rev());
                    } else if wait {
                        waits = true;
                    }
                }
                replaces.sort_unstable();
                replaces.dedup();
                writes.push(Write {
                    contact: w.contact,
                    path: w.path.clone(),
                    value: w.value.clone(),
                    replaces,
                });
            }
            let tip = self.store.summary().get(&me).copied();
            let seq = tip.map_or(0, |t| t.seq) + 1;
            // The ops after a waiting one that do not name it go on, unless that would put
            // the copy before its op's seq: a copy is never found below it ([`Self::copy_of`]),
            // so it waits its turn (it goes in order once the waiting op does).
            if waits || (!waiting.is_empty() && seq < old.op().seq) {
                waiting.insert(old.id());
                continue;
            }
            let op = Op {
                author: me,
                seq,
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
                written += 1;
            }
            done.extend(*at);
        }
        Ok((written, done))
    }

    /// What an own write naming the withdrawn op `id` names instead, if its author was
    /// removed from the book (`cutoffs`): a copy of it seldom comes (a removed device's copies
    /// count only below its cutoff, and a member's replica refuses its sessions). For an op
    /// written before the removal, what it replaced at `w`'s path (the write still supersedes
    /// what it superseded; should the op's copy come, the two stand side by side, visibly);
    /// for a void op, nothing: it took no effect anywhere, so what it replaced stays a head
    /// beside the write, as beside the original, and as for a void op held here (a write
    /// naming what it replaced hid that conflict). `None` for an op not withdrawn here or
    /// whose author is still a member.
    fn named_by_removed(
        &self,
        id: &OpId,
        w: &Write,
        cutoffs: &cardlog_core::Cutoffs,
    ) -> Result<Option<Vec<OpId>>, Error> {
        let Some(old) = self.store.withdrawn_op(id)? else {
            return Ok(None);
        };
        let (author, seq) = (old.op().author, old.op().seq);
        if cutoffs.cutoff(&author).is_none() {
            return Ok(None);
        }
        if cutoffs.voids(&author, seq) {
            return Ok(Some(Vec::new()));
        }
        Ok(Some(
            old.op()
                .writes
                .iter()
                .filter(|o| o.contact == w.contact && o.path == w.path)
                .flat_map(|o| o.replaces.iter().copied())
                .collect(),
        ))
    }

    /// Whether the op `id` is held here and `cutoffs` make it void (its author was removed
    /// before writing it).
    fn is_void(&self, id: &OpId, cutoffs: &cardlog_core::Cutoffs) -> Result<bool, Error> {
        if cutoffs.is_empty() {
            return Ok(false);
        }
        Ok(self
            .store
            .op(id)?
            .is_some_and(|op| cutoffs.voids(&op.op().author, op.op().seq)))
    }

    /// The copy its author wrote of the withdrawn op `id`: the first op at its seq or after
    /// on the author's chain held here with its fingerprint. (A branch given up is re-issued
    /// after the ops taken back; an edit withdrawn because it built on one is re-issued at
    /// its own seq, its author's chain having gone back to before it.) `None` for an op not
    /// withdrawn here.
    fn copy_on_chain(&self, id: &OpId, prints: &mut Prints) -> Result<Option<OpId>, Error> {
        match self.store.withdrawn_op(id)? {
            Some(old) => self.copy_of(&old, prints),
            None => Ok(None),
        }
    }

    /// [`Self::copy_on_chain`] of the withdrawn op `old`.
    fn copy_of(&self, old: &SealedOp, prints: &mut Prints) -> Result<Option<OpId>, Error> {
        let (author, seq) = (old.op().author, old.op().seq);
        let print = fingerprint(old);
        let known = prints.0.get(&author).is_some_and(|(from, _)| *from <= seq);
        if !known {
            // The author's chain from this seq to its tip, read once per re-issue.
            let tip = self.store.summary().get(&author).map_or(0, |t| t.seq);
            let mut chain = Vec::new();
            for s in seq..=tip {
                if let Some(op) = self.store.op_by_seq(&author, s)? {
                    chain.push((s, fingerprint(&op), op.id()));
                }
            }
            prints.0.insert(author, (seq, chain));
        }
        Ok(prints.0.get(&author).and_then(|(_, chain)| {
            chain
                .iter()
                .find(|(s, p, _)| *s >= seq && *p == print)
                .map(|(.., id)| *id)
        }))
    }
}

/// Per author, the fingerprints of its chain from a seq to its tip as held when first looked
/// at, for [`Replica::copy_on_chain`] within one re-issue.
#[derive(Default)]
struct Prints(BTreeMap<DeviceId, (u64, Vec<Printed>)>);

/// One op of a chain as [`Prints`] keeps it: its seq, fingerprint and id.
type Printed = (u64, Vec<u8>, OpId);

/// Puts `branch` with its author's signature `tip` in `all` (records of [`BranchRecord`]),
/// in place of one of the same author, dropping the oldest while there are `max` or the bytes
/// would pass [`BRANCHES_BYTES_MAX`].
fn push_record(all: &mut Vec<BranchRecord>, max: usize, branch: &[SealedOp], tip: &SignedTip) {
    all.retain(|(a, ..)| *a != tip.author);
    let bytes: usize = branch.iter().map(|op| op.bytes().len()).sum();
    let size = |b: &BranchRecord| b.1.iter().map(Vec::len).sum::<usize>();
    while !all.is_empty()
        && (all.len() >= max || all.iter().map(size).sum::<usize>() + bytes > BRANCHES_BYTES_MAX)
    {
        all.remove(0);
    }
    all.push((
        tip.author,
        branch.iter().map(|op| op.bytes().to_vec()).collect(),
        tip.key.0.to_vec(),
        tip.signature.0.to_vec(),
    ));
}

/// A kept or handed-on branch as stored, read back as its ops and the author's signature of
/// the last; `None` when it does not decode, or holds no op (such a record counts as none:
/// [`Replica::branches`]). Checking the signature is the caller's.
fn read_record((author, ops, key, signature): BranchRecord) -> Option<(Vec<SealedOp>, SignedTip)> {
    let ops = ops
        .iter()
        .map(|b| cardlog_core::sealed::decode_op(b))
        .collect::<Result<Vec<SealedOp>, _>>()
        .ok()?;
    let last = ops.last()?;
    let tip = SignedTip {
        author,
        key: PublicKey(key.try_into().ok()?),
        seq: last.op().seq,
        op: last.id(),
        signature: Signature(signature.try_into().ok()?),
    };
    Some((ops, tip))
}

/// Whether `ops` are seqs `from`, `from + 1`, … each naming the one before, the first
/// naming `prev`.
fn linked(from: u64, mut prev: Option<OpId>, ops: &[SealedOp]) -> bool {
    for (i, op) in ops.iter().enumerate() {
        if Some(op.op().seq) != from.checked_add(i as u64) || op.op().prev != prev {
            return false;
        }
        prev = Some(op.id());
    }
    true
}

/// Whether every op of `given_up` (a branch, in chain order) has its own copy on `kept` (in
/// chain order): another op with its fingerprint, at its seq or later, each a different op,
/// and with `in_order` in the branch's order. Copies never sit below the op they copy: a
/// take back writes them after the ops taken back, an edit withdrawn for building on a branch
/// given up is re-issued where it was (its author's chain went back to before it), and an op
/// after one that waits for a copy waits too rather than land below its seq
/// ([`Replica::reissue`]). A copy differs from its op only in what it replaces (it names the
/// copies of what its op named), so such a branch holds no edit `kept` lacks. The copies
/// need not be in the branch's order for a whole branch: a device restored twice re-issues
/// what it gets back in the order it meets it (seed 0xc8f3a: the phone got its second
/// contact back before its first). Two whole branches that each hold the other's copies hold
/// them in the same order anyway (a copy at its op's seq or later, both ways, puts every one
/// at its op's seq); for a branch with ops left out (they wait), order is asked, so that two
/// replicas leaving out different ops never each give their own branch up. Linear in both:
/// each op takes the first free copy of its fingerprint at its seq or later.
fn copied(given_up: &[SealedOp], kept: &[SealedOp], in_order: bool) -> bool {
    if in_order {
        let mut rest = kept.iter();
        return given_up.iter().all(|old| {
            let print = fingerprint(old);
            rest.by_ref().any(|new| {
                new.op().seq >= old.op().seq && new.id() != old.id() && fingerprint(new) == print
            })
        });
    }
    let mut free: HashMap<Vec<u8>, VecDeque<&SealedOp>> = HashMap::new();
    for op in kept {
        free.entry(fingerprint(op)).or_default().push_back(op);
    }
    given_up.iter().all(|old| {
        let Some(copies) = free.get_mut(&fingerprint(old)) else {
            return false;
        };
        // Those below this op's seq are below every later op's too (`given_up` is in order).
        while copies
            .front()
            .is_some_and(|new| new.op().seq < old.op().seq || new.id() == old.id())
        {
            copies.pop_front();
        }
        copies.pop_front().is_some()
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;
    use crate::sync::tests::{hex, unhex};

    /// `mrestored` (docs/FORMAT.md, "Store"): seq, peer and sessions left; then a mark whose
    /// peer is not known (seq and sessions left).
    const GOLDEN_MARK_HEX: &str = "0102030405060708b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b207";
    const GOLDEN_MARK_NO_PEER_HEX: &str = "000000000000002a03";
    /// `mbranches`: one kept branch of two ops' bytes, with the author's key and signature.
    const GOLDEN_BRANCHES_HEX: &str = "01a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a10203010203020405205a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a406b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b";

    /// `mgivenup`: two op ids.
    const GOLDEN_GIVEN_UP_HEX: &str = "02c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c30707070707070707070707070707070707070707070707070707070707070707";

    /// `mgivencopies`: one given-up op's id, then its copy's.
    const GOLDEN_GIVEN_UP_COPIES_HEX: &str = "01c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c35e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e";

    /// `mwsigs`: one signature kept by op id (author, seq 0x0102, op, key, signature).
    const GOLDEN_WITHDRAWN_SIGS_HEX: &str = "01d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4fb0201e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5205a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a406b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b";

    fn fields(m: Mark) -> (u64, Option<DeviceId>, u8) {
        (m.at, m.by, m.left)
    }

    #[test]
    fn restore_records_match_their_golden_bytes() {
        let mark = Mark {
            at: 0x0102_0304_0506_0708,
            by: Some(DeviceId([0xb2; 16])),
            left: 7,
        };
        assert_eq!(hex(&mark.bytes()), GOLDEN_MARK_HEX);
        assert_eq!(fields(Mark::read(&unhex(GOLDEN_MARK_HEX))), fields(mark));
        let no_peer = Mark {
            at: 42,
            by: None,
            left: 3,
        };
        assert_eq!(hex(&no_peer.bytes()), GOLDEN_MARK_NO_PEER_HEX);
        assert_eq!(
            fields(Mark::read(&unhex(GOLDEN_MARK_NO_PEER_HEX))),
            fields(no_peer)
        );
        // The store's bare mark (one byte, 1): anywhere, anyone, the full count of sessions.
        assert_eq!(fields(Mark::read(&[1])), (0, None, MARK_SESSIONS));
        let branches: Vec<BranchRecord> = vec![(
            DeviceId([0xa1; 16]),
            vec![vec![1, 2, 3], vec![4, 5]],
            vec![0x5a; 32],
            vec![0x6b; 64],
        )];
        assert_eq!(hex(&encode(&branches)), GOLDEN_BRANCHES_HEX);
        let back: Vec<BranchRecord> = decode(&unhex(GOLDEN_BRANCHES_HEX), "branches").unwrap();
        assert_eq!(back, branches);
        let bytes = unhex(GOLDEN_BRANCHES_HEX);
        assert!(decode::<Vec<BranchRecord>>(&bytes[..bytes.len() - 1], "branches").is_err());
        let given_up = vec![OpId([0xc3; 32]), OpId([0x07; 32])];
        assert_eq!(hex(&encode(&given_up)), GOLDEN_GIVEN_UP_HEX);
        let back: Vec<OpId> = decode(&unhex(GOLDEN_GIVEN_UP_HEX), "given-up ops").unwrap();
        assert_eq!(back, given_up);
        let copies = vec![(OpId([0xc3; 32]), OpId([0x5e; 32]))];
        assert_eq!(hex(&encode(&copies)), GOLDEN_GIVEN_UP_COPIES_HEX);
        let back: Vec<(OpId, OpId)> =
            decode(&unhex(GOLDEN_GIVEN_UP_COPIES_HEX), "copies of given-up ops").unwrap();
        assert_eq!(back, copies);
        // `mhanded` is encoded as `mbranches` (the same record type, above).
        let sigs: Vec<SigRecord> = vec![(
            DeviceId([0xd4; 16]),
            0x0102,
            OpId([0xe5; 32]),
            vec![0x5a; 32],
            vec![0x6b; 64],
        )];
        assert_eq!(hex(&encode(&sigs)), GOLDEN_WITHDRAWN_SIGS_HEX);
        let back: Vec<SigRecord> =
            decode(&unhex(GOLDEN_WITHDRAWN_SIGS_HEX), "withdrawn signatures").unwrap();
        assert_eq!(back, sigs);
    }

    /// A one-op branch of `author`'s, its note `note` bytes long, with a made-up signature.
    fn branch_of(author: u8, note: usize) -> (Vec<SealedOp>, SignedTip) {
        let clock = std::sync::Arc::new(cardlog_core::FakeClock::new(1_700_000_000_000));
        let mut device = cardlog_core::Device::new(DeviceId([author; 16]), clock);
        let mut contact = cardlog_core::Contact::new(cardlog_core::ContactId([author; 16]));
        contact.set(cardlog_core::Field::Note, "n".repeat(note));
        let op = device.create(&contact).unwrap();
        let tip = SignedTip {
            author: op.op().author,
            key: PublicKey([author; 32]),
            seq: op.op().seq,
            op: op.id(),
            signature: Signature([author; 64]),
        };
        (vec![op], tip)
    }

    /// What a member can make a replica keep for others (`mbranches`, `mhanded`; docs/SECURITY.md,
    /// "Restores" and "Edits owed back") stays bounded whatever it sends: one branch per author
    /// (a later one replaces the earlier, wherever it stood), at most the cap of branches and at
    /// most [`BRANCHES_BYTES_MAX`] bytes of ops in all, the oldest going first.
    #[test]
    fn kept_and_handed_branches_stay_bounded_per_author_in_count_and_in_bytes() {
        let bytes =
            |all: &[BranchRecord]| -> usize { all.iter().flat_map(|r| &r.1).map(Vec::len).sum() };
        let mut all: Vec<BranchRecord> = Vec::new();
        // The same author again and again: one record, the last sent.
        for note in [10, 20, 30] {
            let (branch, tip) = branch_of(1, note);
            push_record(&mut all, HANDED_MAX, &branch, &tip);
        }
        assert_eq!(all.len(), 1);
        assert_eq!(all[0].1, vec![branch_of(1, 30).0[0].bytes().to_vec()]);
        // Many authors: the cap, the oldest gone first, the newest kept.
        for author in 2..=40u8 {
            let (branch, tip) = branch_of(author, 10);
            push_record(&mut all, HANDED_MAX, &branch, &tip);
        }
        assert_eq!(all.len(), HANDED_MAX);
        let authors: Vec<u8> = all.iter().map(|r| r.0 .0[0]).collect();
        assert_eq!(authors, (25..=40).collect::<Vec<u8>>());
        // An author already kept sends again: it moves to the end, the count stays.
        let (branch, tip) = branch_of(30, 10);
        push_record(&mut all, HANDED_MAX, &branch, &tip);
        assert_eq!(all.len(), HANDED_MAX);
        assert_eq!(all.last().map(|r| r.0), Some(DeviceId([30; 16])));
        // Large branches (an op of a 200 KiB note each): the bytes bound before the count.
        let mut big: Vec<BranchRecord> = Vec::new();
        for author in 1..=60u8 {
            let (branch, tip) = branch_of(author, 200 << 10);
            push_record(&mut big, BRANCHES_MAX, &branch, &tip);
            assert!(bytes(&big) <= BRANCHES_BYTES_MAX, "{} bytes", bytes(&big));
        }
        let per = bytes(&big[..1]);
        assert!(BRANCHES_BYTES_MAX / per < BRANCHES_MAX);
        assert_eq!(big.len(), BRANCHES_BYTES_MAX / per);
        assert_eq!(big.last().map(|r| r.0), Some(DeviceId([60; 16])));
    }

    /// A replica hands on at most [`HANDED_MAX`] branches, one per author, whatever arrives
    /// (the cap `hand_on` passes, read back from the store).
    #[test]
    fn a_replica_hands_on_at_most_its_cap_of_branches_one_per_author() {
        let tmp = tempfile::tempdir().unwrap();
        let mut replica = Replica::create(&tmp.path().join("r")).unwrap();
        for author in 1..=(HANDED_MAX as u8 + 8) {
            let (branch, tip) = branch_of(author, 10);
            replica.hand_on(&branch, &tip).unwrap();
        }
        let (branch, tip) = branch_of(HANDED_MAX as u8 + 8, 20);
        replica.hand_on(&branch, &tip).unwrap();
        let handed = replica.handed().unwrap();
        assert_eq!(handed.len(), HANDED_MAX);
        let authors: BTreeSet<DeviceId> = handed.iter().map(|r| r.0).collect();
        assert_eq!(authors.len(), HANDED_MAX, "one per author");
        assert_eq!(
            handed.last().map(|r| r.1.clone()),
            Some(vec![branch[0].bytes().to_vec()])
        );
    }
}

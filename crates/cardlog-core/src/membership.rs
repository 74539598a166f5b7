//! Who belongs to an address book, decided from its membership ops alone (docs/SECURITY.md,
//! "Membership"). [`Membership::compute`] is a pure function of the *set* of membership ops:
//! every replica holding the same ops reaches the same members, roles and removals, whatever
//! order the ops arrived in. [`Membership::check`] says whether one op may be accepted.
//!
//! The rules:
//!
//! - The founder (the author of the book's founding op) is an admin.
//! - An `Add` by an admin admits a device, or widens its role (roles only grow: a device added
//!   twice has the larger role). An `Adopt` by an admin adopts a format-1 chain up to a tip.
//! - A `Remove` of device D with `after = n` by an admin makes every op of D after seq n void:
//!   kept without effect (up to [`VOID_WINDOW`] of them, so that what other devices built on
//!   them applies everywhere; later ones are refused), and retracted where it took effect
//!   before the removal arrived. A removed device is never admitted again (a new key is a
//!   new device).
//! - An admin's changes written after its own cutoff are void.
//! - Removals nothing can void are settled first. When admins remove each other (a cycle: each
//!   removal is after its author's cutoff set by the other), the removal by the more senior
//!   admin counts: the founder first, then in the order of the (timestamp, op id) of the op
//!   that first admitted each. Without the tie-break both outcomes would be consistent and
//!   replicas could disagree.

use std::collections::BTreeMap;

use crate::codec::OpFormat;
use crate::hlc::Hlc;
use crate::id::{DeviceId, OpId};
use crate::key::{BookId, SignedTip};
use crate::member::{MemberChange, MemberRole};
use crate::sealed::SealedOp;

/// One admitted device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    /// What it may do (the largest role any admitting change gave it).
    pub role: MemberRole,
    /// Its human name (from the first change admitting it).
    pub name: String,
    /// Who admitted it; `None` for the founder.
    pub added_by: Option<DeviceId>,
    /// The op that first admitted it (the founding op for the founder).
    pub added_in: OpId,
    /// Set once it is removed.
    pub removed: Option<Removal>,
}

/// An effective removal of a device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Removal {
    /// The admin that removed it.
    pub by: DeviceId,
    /// Its last seq that stays valid.
    pub after: u64,
    /// The removing op.
    pub op: OpId,
}

/// A format-1 chain adopted into the book.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Adoption {
    /// The last adopted seq.
    pub seq: u64,
    /// The id of the op at that seq.
    pub tip: OpId,
    /// The admin that adopted it.
    pub by: DeviceId,
}

/// Why an op is refused by the book's membership. Each names the author.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Refusal {
    /// The replica has not received its book's founding op yet, and this is not it.
    #[error("op {seq} of {author}: this replica has not received the founding op of its address book yet")]
    NotFounded {
        /// The author.
        author: DeviceId,
        /// The op's seq.
        seq: u64,
    },
    /// A founding op of another book, or a second founding op.
    #[error("{author} founds address book {found}, but this replica belongs to {book}")]
    OtherBook {
        /// The author.
        author: DeviceId,
        /// The book it founds.
        found: BookId,
        /// This replica's book.
        book: BookId,
    },
    /// The author is not a member of the book.
    #[error("{author} is not a member of this address book")]
    NotMember {
        /// The author.
        author: DeviceId,
    },
    /// The author was removed and the op is after its last valid seq.
    #[error("{author} was removed from this address book by {by} after its op {after}; op {seq} is void")]
    Removed {
        /// The author.
        author: DeviceId,
        /// The op's seq.
        seq: u64,
        /// Its last valid seq.
        after: u64,
        /// The admin that removed it.
        by: DeviceId,
    },
    /// This device's own new op (a save, a member change), refused because it knows it was
    /// removed: it writes nothing more, even at a seq its chain went back to below its cutoff
    /// (there only its withdrawn edits' copies go).
    #[error("{author} was removed from this address book by {by} after its op {after}: it writes nothing more")]
    NoLongerMember {
        /// This device.
        author: DeviceId,
        /// Its last valid seq.
        after: u64,
        /// The admin that removed it.
        by: DeviceId,
    },
    /// A save of contacts by a member whose role does not write.
    #[error("{author} is a {role} member and cannot save contacts")]
    CannotWrite {
        /// The author.
        author: DeviceId,
        /// Its role.
        role: MemberRole,
    },
    /// A membership change by a member who is not an admin.
    #[error("{author} is a {role} member and cannot change members")]
    NotAdmin {
        /// The author.
        author: DeviceId,
        /// Its role.
        role: MemberRole,
    },
    /// A format-1 op of a chain the book has not adopted (or beyond the adopted tip).
    #[error("format-1 op {seq} of {author} is not part of an adopted history")]
    NotAdopted {
        /// The author.
        author: DeviceId,
        /// The op's seq.
        seq: u64,
    },
    /// A format-1 op at an adopted tip's seq that is not the adopted op.
    #[error("format-1 op {seq} of {author} is {op}, but the book adopted {tip}")]
    AdoptedTipMismatch {
        /// The author.
        author: DeviceId,
        /// The seq.
        seq: u64,
        /// The op received.
        op: OpId,
        /// The adopted op.
        tip: OpId,
    },
    /// No signature of the author covers the op (none at or after its seq among those
    /// received, and none held).
    #[error("op {seq} of {author} is not covered by a signature of its author")]
    Unsigned {
        /// The author.
        author: DeviceId,
        /// The op's seq.
        seq: u64,
    },
    /// A signature that does not verify under the author's key.
    #[error("the signature of {author} on its op {seq} does not verify")]
    BadSignature {
        /// The author.
        author: DeviceId,
        /// The signed op's seq.
        seq: u64,
    },
    /// An op where the replica holds another op of the same author and seq.
    #[error("fork: op {seq} of {author} is {ours} here but {theirs} was received")]
    Forked {
        /// The author.
        author: DeviceId,
        /// The seq.
        seq: u64,
        /// The op held.
        ours: OpId,
        /// The op received.
        theirs: OpId,
    },
    /// A format-2 op by an author whose id is not derived from a key (a format-1 author).
    #[error("{author} wrote op {seq} in format 2 but has no key in this address book")]
    NoKey {
        /// The author.
        author: DeviceId,
        /// The op's seq.
        seq: u64,
    },
}

/// Whether the batch carries `author`'s ops from `from` up to `to` as one chain: every seq
/// in between, each op naming the one before as its previous op. (Were one missing, or
/// another op put in its place, a signature of `to` would say nothing about the op at
/// `from`; if the replica held an op in between it would hold the one at `from` too, and
/// that op is taken as held before this is asked.)
fn chained(
    ids: &BTreeMap<(DeviceId, u64), (OpId, Option<OpId>)>,
    author: &DeviceId,
    from: u64,
    to: u64,
) -> bool {
    (from.saturating_add(1)..=to).all(|s| {
        match (ids.get(&(*author, s)), ids.get(&(*author, s - 1))) {
            (Some((_, prev)), Some((below, _))) => *prev == Some(*below),
            _ => false,
        }
    })
}

impl Refusal {
    /// Whether membership ops the replica does not hold yet could lift this refusal (an
    /// `Add`, a widened role, the founding op, an adoption), as opposed to a fault of the op
    /// itself (a bad signature, a fork, another book).
    pub fn awaits_membership(&self) -> bool {
        matches!(
            self,
            Refusal::NotFounded { .. }
                | Refusal::NotMember { .. }
                | Refusal::CannotWrite { .. }
                | Refusal::NotAdmin { .. }
                | Refusal::NotAdopted { .. }
        )
    }

    /// Whether more of what the sender is still sending could lift this refusal: membership
    /// ops ([`Refusal::awaits_membership`]) or a later signed op of the same chain (an unsigned
    /// tail), or a void op ([`Standing::Void`]) that an op still to come may need. A session
    /// holds such ops back until it ends rather than refusing them at once.
    pub fn may_lift(&self) -> bool {
        self.awaits_membership()
            || match self {
                Refusal::Unsigned { .. } => true,
                // A void op is kept once an op replacing its writes comes.
                Refusal::Removed { seq, after, .. } => seq.saturating_sub(*after) <= VOID_WINDOW,
                _ => false,
            }
    }

    /// The author whose ops are refused.
    pub fn author(&self) -> DeviceId {
        match self {
            Refusal::NotFounded { author, .. }
            | Refusal::OtherBook { author, .. }
            | Refusal::NotMember { author }
            | Refusal::Removed { author, .. }
            | Refusal::NoLongerMember { author, .. }
            | Refusal::CannotWrite { author, .. }
            | Refusal::NotAdmin { author, .. }
            | Refusal::NotAdopted { author, .. }
            | Refusal::AdoptedTipMismatch { author, .. }
            | Refusal::Unsigned { author, .. }
            | Refusal::BadSignature { author, .. }
            | Refusal::Forked { author, .. }
            | Refusal::NoKey { author, .. } => *author,
        }
    }
}

/// How many of a removed device's ops past its cutoff a replica keeps (void, without
/// effect); later ones are refused. A device writes past its cutoff only until the removal
/// reaches it (an honest one is then refused by its own replica), so this bounds what a
/// stolen device can make every replica store, far above what a device writes offline.
pub const VOID_WINDOW: u64 = 4096;

/// Whether a received op takes effect once kept ([`Membership::standing`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Standing {
    /// It takes effect.
    Valid,
    /// It is by a removed device, after its cutoff: kept in the log, so that ops of other
    /// devices that replace its writes can be applied, but its writes take no effect
    /// (docs/SEMANTICS.md, "Removed devices").
    Void,
}

/// The last valid seq of each removed device: its later ops are void. What the store and the
/// replay need of the membership to decide which ops take effect.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Cutoffs(BTreeMap<DeviceId, u64>);

impl Cutoffs {
    /// Whether op `seq` of `author` is void.
    pub fn voids(&self, author: &DeviceId, seq: u64) -> bool {
        self.0.get(author).is_some_and(|after| seq > *after)
    }

    /// The last valid seq of `author`, if its later ops are void.
    pub fn cutoff(&self, author: &DeviceId) -> Option<u64> {
        self.0.get(author).copied()
    }

    /// Whether no op is void (no device was removed).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The authors whose cutoff differs between `self` and `other` (removed in one only, or at
    /// another seq), each with the lower of its cutoffs: its ops past that seq may change
    /// from valid to void or back.
    pub fn changed_from(&self, other: &Cutoffs) -> Vec<(DeviceId, u64)> {
        let mut out = Vec::new();
        for (device, after) in &self.0 {
            match other.0.get(device) {
                Some(o) if o == after => {}
                Some(o) => out.push((*device, (*o).min(*after))),
                None => out.push((*device, *after)),
            }
        }
        for (device, after) in &other.0 {
            if !self.0.contains_key(device) {
                out.push((*device, *after));
            }
        }
        out
    }
}

/// The members of one address book, as its membership ops decide.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Membership {
    book: BookId,
    founder: Option<DeviceId>,
    members: BTreeMap<DeviceId, Member>,
    adopted: BTreeMap<DeviceId, Adoption>,
    /// Devices only void changes add (a removed admin's, after its cutoff): all their ops
    /// are void.
    void_added: std::collections::BTreeSet<DeviceId>,
    /// The membership ops this was computed from, by id.
    ops: BTreeMap<OpId, SealedOp>,
}

/// Bound on the fixpoint rounds of [`Membership::compute`] (each round admits or cuts at least
/// one device, so the number of devices bounds it; this only caps hostile input).
const ROUNDS_MAX: usize = 64;

/// What [`Membership::admit`] lets through from a batch of received ops.
#[derive(Debug, Clone, Default)]
pub struct Admission {
    /// The ops that may be applied, in the order given.
    pub ops: Vec<SealedOp>,
    /// The signatures that verified and cover them, to keep with the ops.
    pub tips: Vec<SignedTip>,
    /// Per refused author, the first refusal (its later ops in the batch are left out too).
    pub refused: Vec<Refusal>,
    /// How many of `ops` are void ([`Standing::Void`]): kept, without effect.
    pub void: usize,
}

impl Membership {
    /// The ops of a received batch (a sync message, a bundle) this membership lets through:
    /// each op's author must be allowed to write it ([`Membership::check`], with the batch's
    /// own membership ops taken into account as they come), and each format-2 op must be
    /// covered by a signature of its author, at its seq or a later one of the batch's `tips`,
    /// that verifies under the author's key; a format-1 op must be part of an adopted chain
    /// whose adopted tip is in the batch or already `held`. `held(author, seq)` is the id of
    /// the op the replica already holds there (held ops passed these checks when they came).
    /// An op already held is let through as it is (the store counts it as a duplicate); another
    /// op where one is held is a fork, refused here before it can change the membership. An
    /// author's first refused op refuses its later ops in the batch. Returns the membership
    /// with the admitted membership ops.
    pub fn admit(
        &self,
        ops: &[SealedOp],
        tips: &[SignedTip],
        held: impl Fn(&DeviceId, u64) -> Option<OpId>,
    ) -> (Admission, Membership) {
        let mut membership = self.clone();
        let mut out = Admission::default();
        // Refused authors, each with its first refusal, in the order they were met.
        let mut refused: BTreeMap<DeviceId, Refusal> = BTreeMap::new();
        let mut order: Vec<DeviceId> = Vec::new();
        // Per author, the signatures offered, by seq, and the highest seq one that verified.
        let mut offered: BTreeMap<DeviceId, BTreeMap<u64, SignedTip>> = BTreeMap::new();
        for tip in tips {
            offered.entry(tip.author).or_default().insert(tip.seq, *tip);
        }
        let mut covered: BTreeMap<DeviceId, u64> = BTreeMap::new();
        // Per author, its void ops that passed every other check.
        let mut void: BTreeMap<DeviceId, Vec<SealedOp>> = BTreeMap::new();
        // Each op of the batch by author and seq, with the previous op it names.
        let ids: BTreeMap<(DeviceId, u64), (OpId, Option<OpId>)> = ops
            .iter()
            .map(|op| ((op.op().author, op.op().seq), (op.id(), op.op().prev)))
            .collect();
        // Membership ops in the batch can admit authors whose ops come earlier in it (the
        // segments of a message are in author order, not in the order the book needs): an
        // author refused for want of membership is tried again after a round that changed
        // the membership, until a round changes nothing.
        // Each author's ops in seq order; the admitted ones are given back in input order.
        let mut pending: Vec<&SealedOp> = ops.iter().collect();
        pending.sort_by_key(|op| (op.op().author, op.op().seq));
        loop {
            let mut deferred: Vec<&SealedOp> = Vec::new();
            let mut waiting: BTreeMap<DeviceId, Refusal> = BTreeMap::new();
            let mut changed = false;
            for sealed in pending {
                let op = sealed.op();
                let author = op.author;
                if refused.contains_key(&author) {
                    continue;
                }
                if waiting.contains_key(&author) {
                    deferred.push(sealed);
                    continue;
                }
                match held(&author, op.seq) {
                    Some(id) if id == sealed.id() => {
                        out.ops.push(sealed.clone());
                        covered.entry(author).or_insert(op.seq);
                        continue;
                    }
                    Some(ours) => {
                        order.push(author);
                        refused.insert(
                            author,
                            Refusal::Forked {
                                author,
                                seq: op.seq,
                                ours,
                                theirs: sealed.id(),
                            },
                        );
                        continue;
                    }
                    None => {}
                }
                let verdict = membership.standing(sealed).and_then(|standing| {
                    membership
                        .cover(sealed, &offered, &ids, &mut covered, &mut out.tips, &held)
                        .map(|()| standing)
                });
                match verdict {
                    Ok(Standing::Void) => {
                        // Kept only if an op kept needs it (below). A void membership op
                        // changes no member, but says which devices only it adds (void too).
                        if op.is_membership() {
                            membership = membership.with(sealed);
                            changed = true;
                        }
                        void.entry(author).or_default().push(sealed.clone());
                    }
                    Ok(Standing::Valid) => {
                        if op.is_membership() {
                            membership = membership.with(sealed);
                            changed = true;
                        }
                        out.ops.push(sealed.clone());
                    }
                    Err(refusal) if refusal.awaits_membership() => {
                        waiting.insert(author, refusal);
                        deferred.push(sealed);
                    }
                    Err(refusal) => {
                        order.push(author);
                        refused.insert(author, refusal);
                    }
                }
            }
            if deferred.is_empty() || !changed {
                for (author, refusal) in waiting {
                    order.push(author);
                    refused.insert(author, refusal);
                }
                break;
            }
            pending = deferred;
        }
        // Standing is settled against the batch's final membership, whatever order its ops
        // were met in (a removal met after the ops it voids, a removal voided later on):
        // admitted ops now void become candidates, candidates now valid are admitted.
        if membership.cutoffs() != self.cutoffs() {
            let mut fresh = Vec::with_capacity(out.ops.len());
            for sealed in std::mem::take(&mut out.ops) {
                let o = sealed.op();
                if held(&o.author, o.seq) == Some(sealed.id()) {
                    fresh.push(sealed);
                    continue;
                }
                match membership.standing(&sealed) {
                    Ok(Standing::Valid) => fresh.push(sealed),
                    Ok(Standing::Void) => void.entry(o.author).or_default().push(sealed),
                    Err(refusal) => {
                        if let std::collections::btree_map::Entry::Vacant(slot) =
                            refused.entry(o.author)
                        {
                            order.push(o.author);
                            slot.insert(refusal);
                        }
                    }
                }
            }
            out.ops = fresh;
            for run in void.values_mut() {
                run.retain(|sealed| {
                    if membership.standing(sealed) == Ok(Standing::Valid) {
                        out.ops.push(sealed.clone());
                        return false;
                    }
                    true
                });
            }
        }
        // Void ops are kept only when an op kept replaces one of their writes, or their
        // author's valid ops are new here (then all of their author's void ops in the batch,
        // which its signature covers as one chain, and the void changes that add that
        // author): without them, that op could be applied only where they took effect before
        // the removal arrived. Other void ops are refused.
        void.retain(|author, run| !refused.contains_key(author) && !run.is_empty());
        let mut kept: std::collections::HashSet<OpId> = out.ops.iter().map(SealedOp::id).collect();
        let mut queue: Vec<DeviceId> = Vec::new();
        if !void.is_empty() {
            let by_id: std::collections::HashMap<OpId, DeviceId> = void
                .iter()
                .flat_map(|(author, run)| run.iter().map(move |op| (op.id(), *author)))
                .collect();
            // Per device, the authors of the void changes adding it.
            let mut adders: BTreeMap<DeviceId, Vec<DeviceId>> = BTreeMap::new();
            for (author, run) in &void {
                for op in run {
                    for change in &op.op().members {
                        if let MemberChange::Add { device, .. } = change {
                            adders.entry(*device).or_default().push(*author);
                        }
                    }
                }
            }
            let needed = |op: &SealedOp| -> Vec<DeviceId> {
                op.op()
                    .writes
                    .iter()
                    .flat_map(|w| w.replaces.iter())
                    .filter_map(|r| by_id.get(r).copied())
                    .collect()
            };
            for op in &out.ops {
                queue.extend(needed(op));
                // An author's valid ops new here are covered by the signature of its last op
                // in the batch, which may be void: its void ops come along, or the valid ones
                // would be held without a signature of their own to pass on.
                let o = op.op();
                if void.contains_key(&o.author) && held(&o.author, o.seq) != Some(op.id()) {
                    queue.push(o.author);
                }
            }
            while let Some(author) = queue.pop() {
                let Some(run) = void.remove(&author) else {
                    continue;
                };
                queue.extend(adders.get(&author).into_iter().flatten().copied());
                for op in run {
                    if kept.insert(op.id()) {
                        queue.extend(needed(&op));
                        out.ops.push(op);
                        out.void += 1;
                    }
                }
            }
        }
        let mut dropped_changes = false;
        for (author, run) in void {
            dropped_changes |= run.iter().any(|op| op.op().is_membership());
            if let Some(Err(refusal)) = run.first().map(|op| membership.check(op)) {
                if let std::collections::btree_map::Entry::Vacant(slot) = refused.entry(author) {
                    order.push(author);
                    slot.insert(refusal);
                }
            }
        }
        // The membership returned holds only membership ops let through.
        if dropped_changes {
            let through = out.ops.iter().filter(|op| op.op().is_membership()).cloned();
            membership = Membership::compute(self.book, self.ops.values().cloned().chain(through));
        }
        let admitted = kept;
        out.ops = ops
            .iter()
            .filter(|op| admitted.contains(&op.id()))
            .cloned()
            .collect();
        out.refused = order.iter().filter_map(|a| refused.remove(a)).collect();
        (out, membership)
    }

    /// Whether a signature (or an adopted tip) covers `sealed`; verifies the lowest offered
    /// signature of its author at or after its seq the first time one is needed.
    fn cover(
        &self,
        sealed: &SealedOp,
        offered: &BTreeMap<DeviceId, BTreeMap<u64, SignedTip>>,
        ids: &BTreeMap<(DeviceId, u64), (OpId, Option<OpId>)>,
        covered: &mut BTreeMap<DeviceId, u64>,
        keep: &mut Vec<SignedTip>,
        held: &impl Fn(&DeviceId, u64) -> Option<OpId>,
    ) -> Result<(), Refusal> {
        let op = sealed.op();
        let (author, seq) = (op.author, op.seq);
        if covered.get(&author).is_some_and(|c| *c >= seq) {
            return Ok(());
        }
        if sealed.format() == OpFormat::V1 {
            // `check` made sure the author is adopted at least this far.
            let adoption = self
                .adopted
                .get(&author)
                .ok_or(Refusal::NotAdopted { author, seq })?;
            let tip_here = ids.get(&(author, adoption.seq)).map(|e| e.0) == Some(adoption.tip)
                && chained(ids, &author, seq, adoption.seq);
            if tip_here || held(&author, adoption.seq) == Some(adoption.tip) {
                covered.insert(author, adoption.seq);
                return Ok(());
            }
            return Err(Refusal::Unsigned { author, seq });
        }
        let founding = matches!(op.members.first(), Some(MemberChange::Found { .. }));
        if !founding && !self.members.contains_key(&author) && !self.void_added.contains(&author) {
            return Err(Refusal::NotMember { author });
        }
        let candidates = offered
            .get(&author)
            .into_iter()
            .flat_map(|t| t.range(seq..));
        for (_, tip) in candidates {
            // The signed op must be the one the batch carries at that seq (or one held).
            let named = ids
                .get(&(author, tip.seq))
                .map(|e| e.0)
                .or(held(&author, tip.seq));
            // And the batch's ops from this one up to it must be the chain it signed.
            if named != Some(tip.op) || !chained(ids, &author, seq, tip.seq) {
                continue;
            }
            // The key is the author's if it hashes to the author's id.
            if tip.key.device() != author
                || tip
                    .key
                    .verify_tip(&self.book, &tip.op, &tip.signature)
                    .is_err()
            {
                return Err(Refusal::BadSignature {
                    author,
                    seq: tip.seq,
                });
            }
            covered.insert(author, tip.seq);
            keep.push(*tip);
            return Ok(());
        }
        Err(Refusal::Unsigned { author, seq })
    }

    /// The membership of `book` before its founding op has arrived: nobody.
    pub fn new(book: BookId) -> Self {
        Self {
            book,
            founder: None,
            members: BTreeMap::new(),
            adopted: BTreeMap::new(),
            void_added: Default::default(),
            ops: BTreeMap::new(),
        }
    }

    /// The book.
    pub fn book(&self) -> BookId {
        self.book
    }

    /// The founder, once the founding op is here.
    pub fn founder(&self) -> Option<DeviceId> {
        self.founder
    }

    /// The admitted devices (removed ones included, with their removal).
    pub fn members(&self) -> impl Iterator<Item = (&DeviceId, &Member)> {
        self.members.iter()
    }

    /// One device, if admitted.
    pub fn member(&self, device: &DeviceId) -> Option<&Member> {
        self.members.get(device)
    }

    /// The format-1 chains adopted.
    pub fn adopted(&self) -> impl Iterator<Item = (&DeviceId, &Adoption)> {
        self.adopted.iter()
    }

    /// The adoption of a format-1 author, if adopted.
    pub fn adoption(&self, author: &DeviceId) -> Option<&Adoption> {
        self.adopted.get(author)
    }

    /// The membership ops it was computed from.
    pub fn ops(&self) -> impl Iterator<Item = &SealedOp> {
        self.ops.values()
    }

    /// The last valid seq of `device`: `None` while it is not removed.
    pub fn cutoff(&self, device: &DeviceId) -> Option<u64> {
        self.members
            .get(device)
            .and_then(|m| m.removed)
            .map(|r| r.after)
    }

    /// The last valid seq of every removed device, and 0 for every device only void changes
    /// add: what decides which held ops are void ([`Cutoffs::voids`]).
    pub fn cutoffs(&self) -> Cutoffs {
        Cutoffs(
            self.members
                .iter()
                .filter_map(|(d, m)| m.removed.map(|r| (*d, r.after)))
                .chain(self.void_added.iter().map(|d| (*d, 0)))
                .collect(),
        )
    }

    /// Whether a received `sealed` may be kept: [`Membership::check`], except that an op of
    /// a removed device after its cutoff, up to [`VOID_WINDOW`] ops past it (or of a device
    /// only a removed admin's void change added, up to that seq), is kept as
    /// [`Standing::Void`] (written concurrently with the removal, as far as anyone can tell:
    /// other devices may have built on it, so it is kept for their ops to apply everywhere,
    /// and it takes no effect anywhere).
    pub fn standing(&self, sealed: &SealedOp) -> Result<Standing, Refusal> {
        match self.check(sealed) {
            Ok(()) => Ok(Standing::Valid),
            Err(Refusal::Removed { seq, after, .. })
                if seq.saturating_sub(after) <= VOID_WINDOW =>
            {
                Ok(Standing::Void)
            }
            Err(Refusal::NotMember { author })
                if self.void_added.contains(&author) && sealed.op().seq <= VOID_WINDOW =>
            {
                Ok(Standing::Void)
            }
            Err(refusal) => Err(refusal),
        }
    }

    /// Whether `op` may be accepted by a replica of this book holding this membership: its
    /// author is a member that was not removed before it, and its role allows what it does (or
    /// it is the book's founding op, or part of an adopted format-1 chain). Does not look at
    /// signatures or the chain; see [`crate::replay::check_op`] for those.
    pub fn check(&self, sealed: &SealedOp) -> Result<(), Refusal> {
        let op = sealed.op();
        let (author, seq) = (op.author, op.seq);
        if let Some(MemberChange::Found { nonce, key, .. }) = op.members.first() {
            let found = BookId::founded_by(key, nonce);
            return match self.founder {
                Some(founder) if founder == author && found == self.book => Ok(()),
                None if found == self.book => Ok(()),
                _ => Err(Refusal::OtherBook {
                    author,
                    found,
                    book: self.book,
                }),
            };
        }
        if self.founder.is_none() {
            return Err(Refusal::NotFounded { author, seq });
        }
        if sealed.format() == OpFormat::V1 {
            let adoption = self
                .adopted
                .get(&author)
                .filter(|a| seq <= a.seq)
                .ok_or(Refusal::NotAdopted { author, seq })?;
            if seq == adoption.seq && sealed.id() != adoption.tip {
                return Err(Refusal::AdoptedTipMismatch {
                    author,
                    seq,
                    op: sealed.id(),
                    tip: adoption.tip,
                });
            }
            return Ok(());
        }
        let Some(member) = self.members.get(&author) else {
            if self.adopted.contains_key(&author) {
                return Err(Refusal::NoKey { author, seq });
            }
            return Err(Refusal::NotMember { author });
        };
        if let Some(removal) = member.removed.filter(|r| seq > r.after) {
            return Err(Refusal::Removed {
                author,
                seq,
                after: removal.after,
                by: removal.by,
            });
        }
        if op.is_membership() {
            if !member.role.changes_members() {
                return Err(Refusal::NotAdmin {
                    author,
                    role: member.role,
                });
            }
        } else if !member.role.writes_contacts() {
            return Err(Refusal::CannotWrite {
                author,
                role: member.role,
            });
        }
        Ok(())
    }

    /// This membership with `op` (a membership op) among its ops, recomputed. Ops without
    /// member changes leave it as it is.
    pub fn with(&self, op: &SealedOp) -> Self {
        if !op.op().is_membership() || self.ops.contains_key(&op.id()) {
            return self.clone();
        }
        let mut ops = self.ops.clone();
        ops.insert(op.id(), op.clone());
        Self::compute(self.book, ops.into_values())
    }

    /// The membership of the one book founded among `ops` (`None` if no founding op is
    /// among them, or founding ops of several books are): for holders of ops that know no
    /// book of their own (the in-memory test double, the simulator's reference checks).
    pub fn founded_in<'a>(ops: impl IntoIterator<Item = &'a SealedOp>) -> Option<Self> {
        let members: Vec<SealedOp> = ops
            .into_iter()
            .filter(|op| op.op().is_membership())
            .cloned()
            .collect();
        let mut books = members
            .iter()
            .filter_map(|op| match op.op().members.first() {
                Some(MemberChange::Found { nonce, key, .. }) if op.op().seq == 1 => {
                    Some(BookId::founded_by(key, nonce))
                }
                _ => None,
            });
        let book = books.next()?;
        if books.any(|other| other != book) {
            return None;
        }
        Some(Self::compute(book, members))
    }

    /// The membership of `book` decided by `ops` (ops without member changes are ignored):
    /// the same result for the same set of ops, in any order.
    pub fn compute(book: BookId, ops: impl IntoIterator<Item = SealedOp>) -> Self {
        let ops: BTreeMap<OpId, SealedOp> = ops
            .into_iter()
            .filter(|op| op.op().is_membership())
            .map(|op| (op.id(), op))
            .collect();
        let mut out = Self::new(book);
        // The founding op: the author's seq 1, founding exactly this book.
        let founding = ops.values().find(|op| {
            let o = op.op();
            matches!(o.members.first(), Some(MemberChange::Found { nonce, key, .. })
                if o.seq == 1 && BookId::founded_by(key, nonce) == book)
        });
        let Some(founding) = founding else {
            out.ops = ops;
            return out;
        };
        let founder = founding.op().author;
        out.founder = Some(founder);
        // Changes, each with its author, seq, timestamp and op id; in a fixed order.
        let mut changes: Vec<(&SealedOp, &MemberChange)> = ops
            .values()
            .flat_map(|op| op.op().members.iter().map(move |c| (op, c)))
            .collect();
        changes.sort_by_key(|(op, _)| (op.op().hlc, op.id()));

        let mut cutoffs: BTreeMap<DeviceId, Removal> = BTreeMap::new();
        let mut members = BTreeMap::new();
        for _ in 0..ROUNDS_MAX {
            members = admit(founding, &changes, &cutoffs);
            let next = remove(&changes, &members);
            if next == cutoffs {
                break;
            }
            cutoffs = next;
        }
        let adopted = adopt(&changes, &members, &cutoffs);
        for (device, removal) in &cutoffs {
            if let Some(m) = members.get_mut(device) {
                m.member.removed = Some(*removal);
            }
        }
        out.void_added = changes
            .iter()
            .filter_map(|(_, change)| match change {
                MemberChange::Add { device, .. } if !members.contains_key(device) => Some(*device),
                _ => None,
            })
            .collect();
        out.members = members.into_iter().map(|(d, a)| (d, a.member)).collect();
        out.adopted = adopted;
        out.ops = ops;
        out
    }
}

/// A member as the computation sees it: with its seniority.
struct Admitted {
    member: Member,
    /// Smaller is more senior: the founder's is the smallest.
    seniority: (Hlc, OpId),
}

/// Whether a change by `author` at `seq` is void under `cutoffs`.
fn void(cutoffs: &BTreeMap<DeviceId, Removal>, author: &DeviceId, seq: u64) -> bool {
    cutoffs.get(author).is_some_and(|r| seq > r.after)
}

/// The admitted devices under `cutoffs`: the founder, then every device added by an admitted
/// admin in a change that is not void, repeated until nothing changes.
fn admit(
    founding: &SealedOp,
    changes: &[(&SealedOp, &MemberChange)],
    cutoffs: &BTreeMap<DeviceId, Removal>,
) -> BTreeMap<DeviceId, Admitted> {
    let mut members = BTreeMap::new();
    if let Some(MemberChange::Found { name, .. }) = founding.op().members.first() {
        members.insert(
            founding.op().author,
            Admitted {
                member: Member {
                    role: MemberRole::Admin,
                    name: name.clone(),
                    added_by: None,
                    added_in: founding.id(),
                    removed: None,
                },
                seniority: (Hlc::default(), OpId([0; 32])),
            },
        );
    }
    loop {
        let mut changed = false;
        for (op, change) in changes {
            let MemberChange::Add { device, role, name } = change else {
                continue;
            };
            let o = op.op();
            let is_admin = members
                .get(&o.author)
                .is_some_and(|a: &Admitted| a.member.role.changes_members());
            if !is_admin || void(cutoffs, &o.author, o.seq) {
                continue;
            }
            let device = *device;
            match members.get_mut(&device) {
                Some(existing) => {
                    if role.rank() > existing.member.role.rank() {
                        existing.member.role = *role;
                        changed = true;
                    }
                }
                None => {
                    members.insert(
                        device,
                        Admitted {
                            member: Member {
                                role: *role,
                                name: name.clone(),
                                added_by: Some(o.author),
                                added_in: op.id(),
                                removed: None,
                            },
                            seniority: (o.hlc, op.id()),
                        },
                    );
                    changed = true;
                }
            }
        }
        if !changed {
            return members;
        }
    }
}

/// A removal change, as [`remove`] weighs it.
#[derive(Clone, Copy)]
struct Candidate {
    author: DeviceId,
    seq: u64,
    op: OpId,
    device: DeviceId,
    after: u64,
}

/// The removals that count among `members`. A removal by an admin counts unless it is after
/// its author's own cutoff set by a removal that counts. Removals nothing can void are settled
/// first and their cutoffs applied; when only removals that void each other are left (admins
/// removing each other), the one by the most senior author counts, and settling goes on.
fn remove(
    changes: &[(&SealedOp, &MemberChange)],
    members: &BTreeMap<DeviceId, Admitted>,
) -> BTreeMap<DeviceId, Removal> {
    let mut undecided: Vec<Candidate> = changes
        .iter()
        .filter_map(|(op, change)| {
            let MemberChange::Remove { device, after } = change else {
                return None;
            };
            let o = op.op();
            let admin = members.get(&o.author)?.member.role.changes_members();
            admin.then_some(Candidate {
                author: o.author,
                seq: o.seq,
                op: op.id(),
                device: *device,
                after: *after,
            })
        })
        .collect();
    let mut cutoffs: BTreeMap<DeviceId, Removal> = BTreeMap::new();
    let count = |r: Candidate, cutoffs: &mut BTreeMap<DeviceId, Removal>| {
        if cutoffs.get(&r.device).is_none_or(|c| r.after < c.after) {
            cutoffs.insert(
                r.device,
                Removal {
                    by: r.author,
                    after: r.after,
                    op: r.op,
                },
            );
        }
    };
    while !undecided.is_empty() {
        undecided.retain(|r| !void(&cutoffs, &r.author, r.seq));
        let threatened = |r: &Candidate, among: &[Candidate]| {
            among
                .iter()
                .any(|q| q.device == r.author && q.after < r.seq)
        };
        let (safe, rest): (Vec<Candidate>, Vec<Candidate>) =
            undecided.iter().partition(|r| !threatened(r, &undecided));
        if !safe.is_empty() {
            for r in safe {
                count(r, &mut cutoffs);
            }
            undecided = rest;
            continue;
        }
        // Only removals that void each other are left: the most senior author's counts.
        let senior = undecided
            .iter()
            .enumerate()
            .min_by_key(|(_, r)| {
                let seniority = members.get(&r.author).map(|a| a.seniority);
                (seniority, r.seq, r.op)
            })
            .map(|(i, _)| i);
        if let Some(i) = senior {
            let r = undecided.swap_remove(i);
            count(r, &mut cutoffs);
        }
    }
    cutoffs
}

/// The adoptions made by admins in changes that are not void; the first (in change order) for
/// each author counts.
fn adopt(
    changes: &[(&SealedOp, &MemberChange)],
    members: &BTreeMap<DeviceId, Admitted>,
    cutoffs: &BTreeMap<DeviceId, Removal>,
) -> BTreeMap<DeviceId, Adoption> {
    let mut adopted = BTreeMap::new();
    for (op, change) in changes {
        let MemberChange::Adopt { author, seq, tip } = change else {
            continue;
        };
        let o = op.op();
        let is_admin = members
            .get(&o.author)
            .is_some_and(|a| a.member.role.changes_members());
        if is_admin && !void(cutoffs, &o.author, o.seq) {
            adopted.entry(*author).or_insert(Adoption {
                seq: *seq,
                tip: *tip,
                by: o.author,
            });
        }
    }
    adopted
}

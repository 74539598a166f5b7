//! The receive path, shared by sessions and bundle import: a segment message verified whole,
//! forked authors set aside, the rest applied atomically ([`apply_segments`]). Every fork
//! decision lives in this file: in a message's ops ([`apply_segments`]), in a peer's summary
//! ([`forks_in_summary`]) and in forks a peer reports ([`reported_forks`]).

use std::collections::{BTreeMap, BTreeSet};

use cardlog_core::{DeviceId, OpId, Refusal, SealedOp, SignedTip};

use crate::error::SyncError;
use crate::store::{Applied, PeerBook, SyncStore, TakenBack};
use crate::wire::message::{Fork, Summary};
use crate::wire::segment::{decode_available_segments, decode_session_segments, Locate, Resolve};
use crate::wire::WireError;

/// Adapts a store to the segment codec's lookups.
pub(crate) struct View<'a, S>(pub(crate) &'a S);

impl<S: SyncStore> Locate for View<'_, S> {
    fn locate(&self, id: &OpId) -> Result<Option<SealedOp>, WireError> {
        self.0
            .op_by_id(id)
            .map_err(|e| WireError::Sender(e.to_string()))
    }

    fn tip_signature(&self, author: &DeviceId, seq: u64) -> Result<Option<SignedTip>, WireError> {
        self.0
            .tip_signature(author, seq)
            .map_err(|e| WireError::Sender(e.to_string()))
    }
}

impl<S: SyncStore> Resolve for View<'_, S> {
    fn op_at(&self, author: &DeviceId, seq: u64) -> Result<Option<SealedOp>, WireError> {
        self.0
            .op_at(author, seq)
            .map_err(|e| WireError::Lookup(e.to_string()))
    }
}

/// What applying one segment message did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Received {
    /// Ops the message carried.
    pub ops: usize,
    /// What the store did with them.
    pub applied: Applied,
    /// Forks found: those authors' ops were not applied.
    pub forks: Vec<Fork>,
    /// This replica's own chain, as the sender held it, taken back (a bundle carrying the
    /// ops a restore lost: [`PeerBook::take_back`]).
    pub taken_back: Option<TakenBack>,
    /// Authors whose branch held here their author gave up, settled with the sender's
    /// ([`PeerBook::settle_fork`]).
    pub settled: Vec<DeviceId>,
}

/// Verifies a segment message completely and applies it atomically. Ops of an author whose
/// chain here differs from the message's (a fork) are set aside and the fork reported and
/// recorded; anything else wrong refuses the whole message, leaving the store unchanged.
/// The message is taken as the whole of what the sender sends (a bundle): what the store
/// refuses is reported refused, and a segment that names an op neither in the message nor
/// held here is left out and its ops counted missing
/// ([`decode_available_segments`]), so the rest (other devices' ops) is still stored.
pub fn apply_segments<S: PeerBook>(
    store: &mut S,
    bytes: &[u8],
) -> Result<Received, SyncError<S::Error>> {
    let mut held = Held::default();
    let mut received = apply_with(store, bytes, &mut held, true, true)?;
    let own = held.has_own();
    let finished = finish(store, &mut held, own, None)?;
    // Own edits waiting for a copy are retried only after a bundle that brought something: a
    // bundle refused whole (a stranger's) or holding nothing new leaves the store as it was,
    // and does not count as an attempt (docs/SEMANTICS.md, "Edits made on a branch given
    // up"); the next session or bundle that brings ops retries them.
    let brought = received.applied.stored + received.applied.void > 0
        || finished.rest.stored + finished.rest.void > 0
        || finished.taken_back.is_some()
        || !finished.settled.is_empty();
    if brought {
        store.reissue_waiting().map_err(SyncError::Store)?;
    }
    received.taken_back = finished.taken_back;
    received
        .forks
        .retain(|f| !finished.settled.contains(&f.author));
    received.settled = finished.settled;
    received.applied.add(finished.rest);
    Ok(received)
}

/// What [`finish`] did.
pub(crate) struct Finished {
    /// The receiver's own chain taken back, if it was.
    pub(crate) taken_back: Option<TakenBack>,
    /// Authors whose forks ended ([`settle_forked`]).
    pub(crate) settled: Vec<DeviceId>,
    /// What the ops held back for them did ([`apply_rest`]).
    pub(crate) rest: Applied,
}

/// Ends a receive once the sender has sent all (its last message, or a bundle), in one order
/// for sessions and bundles: the receiver's own chain as the sender holds it is taken back
/// (`take_back`: the sender sent it, as ops set apart or because the receiver's hello asked
/// for all of it; `peer` is who, with how far its hello holds the chain:
/// [`PeerBook::take_back`]); other authors' forks are settled or kept ([`settle_forked`]);
/// what waited for either goes in ([`apply_rest`]). The caller then re-issues own edits
/// waiting for a copy ([`PeerBook::reissue_waiting`]). A take back that stored only part of
/// the chain (its ops name copies on a branch another author gave up, which the settling
/// then stored) is made once more after it.
pub(crate) fn finish<S: PeerBook>(
    store: &mut S,
    held: &mut Held,
    take_back: bool,
    peer: Option<(DeviceId, u64)>,
) -> Result<Finished, SyncError<S::Error>> {
    let mut taken_back = None;
    let mut own = None;
    if take_back {
        let (ops, tips) = held.take_own();
        taken_back = store
            .take_back(peer, &ops, &tips)
            .map_err(SyncError::Store)?;
        own = Some((ops, tips));
    }
    let settled = settle_forked(store, held)?;
    if let (Some((ops, tips)), Some(first)) = (&own, taken_back) {
        if !settled.is_empty() && store.restored() {
            if let Some(again) = store.take_back(peer, ops, tips).map_err(SyncError::Store)? {
                taken_back = Some(TakenBack {
                    from_seq: first.from_seq,
                    recovered: first.recovered + again.recovered,
                    reissued: first.reissued + again.reissued,
                });
            }
        }
    }
    // A take back that stored only part of the chain may wait on held ops that in turn name
    // the part it could not store: the peer's edit replacing the receiver's lost edit, which
    // replaced the peer's contact, whose segment waits whole behind that edit (seed 0xc3587).
    // Neither goes in before the other, so both go in one batch, then the take back ends.
    let mut unstored: Vec<SealedOp> = Vec::new();
    if let (Some((ops, _)), Some(first)) = (&own, taken_back) {
        // (`from_seq` 0: nothing of the chain was replaced, so nothing of it waits.)
        if first.from_seq > 0 && !held.ops.is_empty() && store.restored() {
            for op in ops.iter().filter(|o| o.op().seq >= first.from_seq) {
                if !holds_own(store, op)? {
                    unstored.push(op.clone());
                }
            }
        }
    }
    let rest = match (&own, taken_back) {
        (Some((ops, tips)), Some(first)) if !unstored.is_empty() => {
            let rest = apply_rest_with(store, held, unstored.clone(), tips.clone())?;
            let mut recovered = 0;
            for op in &unstored {
                recovered += usize::from(holds_own(store, op)?);
            }
            let again = store.take_back(peer, ops, tips).map_err(SyncError::Store)?;
            taken_back = Some(TakenBack {
                from_seq: first.from_seq,
                recovered: first.recovered + recovered,
                reissued: first.reissued + again.map_or(0, |a| a.reissued),
            });
            Applied {
                stored: rest.stored.saturating_sub(recovered),
                ..rest
            }
        }
        _ => apply_rest(store, held)?,
    };
    Ok(Finished {
        taken_back,
        settled,
        rest,
    })
}

/// Received ops a session holds back while it lasts, because what the sender is still
/// sending may let them in: ops the store refused for want of membership ops or of a later
/// signed op of the chain ([`Refusal::may_lift`]), and ops it left out for want of an op they
/// depend on. Each later message is admitted together with them, and references in it
/// resolve to them; what the last message still leaves out is reported refused or missing.
/// A session that breaks drops them (nothing of theirs was stored; the next session sends
/// them again).
#[derive(Debug, Default)]
pub(crate) struct Held {
    /// In arrival order, which is an order in which every op comes after its dependencies.
    ops: Vec<SealedOp>,
    /// Where each held op is in `ops`, by author and seq, for references in later messages.
    at: BTreeMap<(DeviceId, u64), usize>,
    /// The signatures received for held authors' chains.
    tips: Vec<SignedTip>,
    /// Authors whose chains the session knows to fork between the two sides (from the
    /// peer's hello, or forks it reported): an op held here at a place of theirs may not be
    /// the one the sender names ([`Resolve::forked`]).
    pub(crate) known_forks: BTreeSet<DeviceId>,
    /// The receiver's own ops as the sender holds them, by seq, where they fork from its
    /// chain (its store was restored: docs/SEMANTICS.md, "Restores"), with their signatures:
    /// kept for [`PeerBook::take_back`] once the sender has sent all. References in later
    /// messages resolve to them.
    own: BTreeMap<u64, SealedOp>,
    own_tips: Vec<SignedTip>,
    /// Other authors' ops where they fork from the chains held here, by author and seq,
    /// with their signatures: kept for [`PeerBook::settle_fork`] once the sender has sent
    /// all. References in later messages resolve to them.
    forked: BTreeMap<DeviceId, BTreeMap<u64, SealedOp>>,
    forked_tips: Vec<SignedTip>,
    /// How many ops `own` and `forked` hold together (at most [`HELD_OPS_MAX`]).
    apart: usize,
}

impl Held {
    /// Whether received ops of the receiver's own chain fork from it.
    pub(crate) fn has_own(&self) -> bool {
        !self.own.is_empty()
    }

    /// Other authors' ops received where they fork from the chains held here, by author (in
    /// seq order), and their signatures.
    pub(crate) fn take_forked(&mut self) -> (BTreeMap<DeviceId, Vec<SealedOp>>, Vec<SignedTip>) {
        let forked = std::mem::take(&mut self.forked)
            .into_iter()
            .map(|(author, ops)| (author, ops.into_values().collect()))
            .collect();
        (forked, std::mem::take(&mut self.forked_tips))
    }

    /// The receiver's own ops received where they fork from its chain (in seq order), and
    /// their signatures.
    pub(crate) fn take_own(&mut self) -> (Vec<SealedOp>, Vec<SignedTip>) {
        (
            std::mem::take(&mut self.own).into_values().collect(),
            std::mem::take(&mut self.own_tips),
        )
    }

    /// Keeps `ops` of `author` apart (own or forked), unless that would hold more than
    /// [`HELD_OPS_MAX`]: then nothing more is kept apart for it, and `false`.
    fn set_apart<'a>(
        &mut self,
        author: DeviceId,
        own: bool,
        ops: impl Iterator<Item = &'a SealedOp>,
    ) -> bool {
        let chain = if own {
            &mut self.own
        } else {
            self.forked.entry(author).or_default()
        };
        for op in ops {
            let seq = op.op().seq;
            if chain.contains_key(&seq) {
                continue;
            }
            // The receiver's own ops set apart are one branch, in chain order: an op that does
            // not follow the one set apart below it is of another lost branch the sender holds
            // too (a device restored twice), which a later session brings back.
            if own {
                if let Some((below, prev)) = chain.range(..seq).next_back() {
                    if below.checked_add(1) != Some(seq) || op.op().prev != Some(prev.id()) {
                        continue;
                    }
                }
            }
            if self.apart >= HELD_OPS_MAX {
                return false;
            }
            chain.insert(seq, op.clone());
            self.apart += 1;
        }
        true
    }

    /// The op set apart for `author` at `seq`, if any.
    fn apart_at(&self, author: &DeviceId, seq: u64) -> Option<&SealedOp> {
        self.forked
            .get(author)
            .and_then(|c| c.get(&seq))
            .or_else(|| self.own.get(&seq).filter(|op| op.op().author == *author))
    }
}

/// How many ops a session holds back at most; past it, refusals are reported at once (a
/// peer cannot make a receiver keep an unbounded amount of ops it has not stored).
const HELD_OPS_MAX: usize = 1 << 16;

/// The store's lookups, with a session's held ops in front.
struct WithHeld<'a, S> {
    store: &'a S,
    held: &'a Held,
}

impl<S: SyncStore> Resolve for WithHeld<'_, S> {
    fn op_at(&self, author: &DeviceId, seq: u64) -> Result<Option<SealedOp>, WireError> {
        let held = self.held.at.get(&(*author, seq));
        if let Some(op) = held.and_then(|i| self.held.ops.get(*i)) {
            return Ok(Some(op.clone()));
        }
        // The sender's branch of a forked chain: its references name its own ops.
        if let Some(op) = self.held.apart_at(author, seq) {
            return Ok(Some(op.clone()));
        }
        View(self.store).op_at(author, seq)
    }

    fn forked(&self, author: &DeviceId) -> bool {
        self.held.known_forks.contains(author)
            || self.held.forked.contains_key(author)
            || (*author == self.store.device_id() && !self.held.own.is_empty())
    }
}

/// [`apply_segments`] within a session: `held` carries what earlier messages left out, and
/// `last` says whether this message is the sender's last (then nothing more is held). A
/// segment naming an op the receiver cannot find refuses the message: the sender chose what
/// to send from the receiver's summary, so it is a fault, not a gap.
pub(crate) fn apply_held<S: PeerBook>(
    store: &mut S,
    bytes: &[u8],
    held: &mut Held,
    last: bool,
) -> Result<Received, SyncError<S::Error>> {
    apply_with(store, bytes, held, last, false)
}

/// [`apply_segments`] and [`apply_held`]: `partial` says whether segments that name ops the
/// receiver lacks are left out (counted missing) or refuse the message.
fn apply_with<S: PeerBook>(
    store: &mut S,
    bytes: &[u8],
    held: &mut Held,
    last: bool,
    partial: bool,
) -> Result<Received, SyncError<S::Error>> {
    let with_held = WithHeld { store, held };
    let (decoded, left_out) = if partial {
        decode_available_segments(bytes, &with_held)?
    } else {
        decode_session_segments(bytes, &with_held)?
    };
    let carried = decoded.ops.len() + left_out;
    // References into those chains are in doubt for the rest of the session: later messages
    // may continue the segments left out.
    held.known_forks.extend(decoded.left_out.iter().copied());
    let mut ops = std::mem::take(&mut held.ops);
    let earlier: BTreeSet<OpId> = ops.iter().map(SealedOp::id).collect();
    held.at.clear();
    ops.extend(
        decoded
            .ops
            .into_iter()
            .filter(|op| !earlier.contains(&op.id())),
    );
    let mut tips = std::mem::take(&mut held.tips);
    tips.extend(decoded.tips);
    let summary = store.summary();
    // Each author's ops in the message, by seq: where they meet our chain.
    let mut by_author: BTreeMap<DeviceId, Vec<&SealedOp>> = BTreeMap::new();
    for op in &ops {
        by_author.entry(op.op().author).or_default().push(op);
    }
    let mut forks = Vec::new();
    for (author, mut theirs) in by_author {
        theirs.sort_by_key(|op| op.op().seq);
        // (A fork after a shared prefix is still a fork, not a reason to refuse everyone
        // else's ops.)
        forks.extend(fork_with(&*store, &summary, author, theirs)?);
    }
    // A fork counts only if the differing ops are their author's own (signed by it): ops
    // anyone could have made up are refused, not recorded as the author's fork.
    let mut unowned = Vec::new();
    forks.retain(|f| {
        let theirs: Vec<SealedOp> = ops
            .iter()
            .filter(|op| op.op().author == f.author)
            .cloned()
            .collect();
        match store.authorship(&theirs, &tips) {
            Ok(()) => true,
            Err(refusal) => {
                unowned.push(refusal);
                false
            }
        }
    });
    // Authors forked in this message, or in an earlier one of the session (their later ops
    // continue the branch set aside).
    let forked: BTreeSet<DeviceId> = forks
        .iter()
        .map(|f| f.author)
        .chain(held.forked.keys().copied())
        .collect();
    let unowned_authors: BTreeSet<DeviceId> = unowned.iter().map(Refusal::author).collect();
    // The receiver's own chain forking: what it lost to a restore. Kept apart, with the rest
    // of its own ops this sender sends, for `take_back`.
    // A peer holding one of the ops this replica withdrew when it took its chain back holds
    // the branch it gave up: an ordinary fork, nothing to take back, unless it holds ops of
    // the chain after it that this replica neither holds nor gave up (written after the take
    // back's copies, then lost to a second restore: seed 0xc3ddb of base 802000), which come
    // back re-issued after the chain held here.
    let me = store.device_id();
    let lost_after = || -> Result<bool, SyncError<S::Error>> {
        for op in ops.iter().filter(|op| op.op().author == me) {
            if !store.withdrew(&op.id()) && !holds_own(&*store, op)? {
                return Ok(true);
            }
        }
        Ok(false)
    };
    let forked_own = forks.iter().filter(|f| f.author == me);
    let lost = forked_own.clone().any(|f| !store.withdrew(&f.theirs))
        || (forked_own.count() > 0 && lost_after()?);
    if (lost || held.has_own()) && !unowned_authors.contains(&me) {
        // (Ops it holds as they are are not what it lost: a sender holding two branches of
        // its chain sends both, and only the one it lacks is taken back.)
        let mut mine = Vec::new();
        for op in ops.iter().filter(|op| op.op().author == me) {
            let holds = store
                .op_at(&me, op.op().seq)
                .map_err(SyncError::Store)?
                .is_some_and(|o| o.id() == op.id());
            if !holds {
                mine.push(op);
            }
        }
        // (With the signatures of the ops set apart: one of the branch it holds would not prove
        // them, nor one of a second lost branch the sender also holds, whose ops at seqs
        // already set apart are passed over: it goes back with a later session.)
        if held.set_apart(me, true, mine.into_iter()) {
            let signed: BTreeSet<OpId> = held.own.values().map(SealedOp::id).collect();
            held.own_tips.extend(
                tips.iter()
                    .filter(|t| t.author == me && signed.contains(&t.op))
                    .copied(),
            );
        } else {
            // More than a session holds back: the fork stays recorded, nothing is taken back.
            held.take_own();
        }
    }
    // Other authors' forks: kept (bounded) in case their author gave the branch held here up.
    for author in forked
        .iter()
        .filter(|a| **a != me && !unowned_authors.contains(a))
    {
        let theirs = ops.iter().filter(|op| op.op().author == *author);
        if held.set_apart(*author, false, theirs) {
            held.forked_tips
                .extend(tips.iter().filter(|t| t.author == *author).cloned());
        }
    }
    let own_apart = held.has_own();
    let keep: Vec<SealedOp> = ops
        .into_iter()
        .filter(|op| {
            let author = op.op().author;
            let apart = forked.contains(&author)
                || unowned_authors.contains(&author)
                || (own_apart && author == me);
            !apart
        })
        .collect();
    if !forks.is_empty() {
        store.record_forks(&forks).map_err(SyncError::Store)?;
    }
    let mut applied = store.apply(&keep, &tips).map_err(|e| {
        if S::is_refusal(&e) {
            SyncError::Refused(e.to_string())
        } else {
            SyncError::Store(e)
        }
    })?;
    applied.refused.extend(unowned);
    applied.missing += left_out;
    // After the last message, ops that name a branch set aside may still go in once it is
    // taken back or settled ([`apply_rest`]).
    if !last || held.has_own() || !held.forked.is_empty() {
        hold(store, keep, tips, &mut applied, held)?;
    }
    Ok(Received {
        ops: carried,
        applied,
        forks,
        taken_back: None,
        settled: Vec::new(),
    })
}

/// Ends the forks `held` set apart once the sender has sent all it holds of those chains
/// (its last message, or a bundle): each author's branch held here is settled with the
/// sender's where its author gave it up ([`PeerBook::settle_fork`]), and otherwise kept
/// ([`PeerBook::keep_branch`]). Settling one author's branch also withdraws what other
/// devices built on it, so another author's chain held here may no longer differ from the
/// sender's: its ops rejoin the ordinary ones `held` holds for [`apply_rest`]. Settling is
/// tried again while it makes progress, since one settled branch can bring the copies another
/// waits for. Returns the authors whose forks ended, in the order they did.
fn settle_forked<S: PeerBook>(
    store: &mut S,
    held: &mut Held,
) -> Result<Vec<DeviceId>, SyncError<S::Error>> {
    let (mut forked, tips) = held.take_forked();
    let mut ended = Vec::new();
    loop {
        let before = ended.len();
        for (author, theirs) in &forked {
            if store
                .settle_fork(*author, theirs, &tips)
                .map_err(SyncError::Store)?
            {
                ended.push(*author);
            }
        }
        forked.retain(|author, _| !ended.contains(author));
        if ended.len() == before || forked.is_empty() {
            break;
        }
    }
    let summary = store.summary();
    for (author, theirs) in forked {
        let refs: Vec<&SealedOp> = theirs.iter().collect();
        if fork_with(store, &summary, author, refs)?.is_some() {
            store
                .keep_branch(author, &theirs, &tips)
                .map_err(SyncError::Store)?;
        } else {
            held.tips
                .extend(tips.iter().filter(|t| t.author == author).copied());
            held.ops.extend(theirs);
            ended.push(author);
        }
    }
    Ok(ended)
}

/// Where `author`'s ops `theirs` (in seq order) first differ from the chain held here, whose
/// head `summary` gives: an op where another is held, or the op after the head naming another
/// predecessor. Ops already held may come first (a whole-history bundle, a replay): a fork
/// after a shared prefix is still a fork.
fn fork_with<S: SyncStore>(
    store: &S,
    summary: &Summary,
    author: DeviceId,
    theirs: Vec<&SealedOp>,
) -> Result<Option<Fork>, SyncError<S::Error>> {
    let Some(head) = summary.get(&author) else {
        return Ok(None);
    };
    for op in theirs {
        let seq = op.op().seq;
        if seq > head.seq {
            let prev = op.op().prev.filter(|p| *p != head.op);
            return Ok(prev.filter(|_| seq == head.seq + 1).map(|prev| Fork {
                author,
                seq: head.seq,
                ours: head.op,
                theirs: prev,
            }));
        }
        let ours = store
            .op_at(&author, seq)
            .map_err(SyncError::Store)?
            .map(|o| o.id());
        if let Some(ours) = ours.filter(|o| *o != op.id()) {
            return Ok(Some(Fork {
                author,
                seq,
                ours,
                theirs: op.id(),
            }));
        }
    }
    Ok(None)
}

/// Applies what `held` still holds back after the sender's last message, once a take back or
/// settling (which it may have waited for) is done: what does not go in now is reported
/// refused or missing.
fn apply_rest<S: PeerBook>(store: &mut S, held: &mut Held) -> Result<Applied, SyncError<S::Error>> {
    apply_rest_with(store, held, Vec::new(), Vec::new())
}

/// Whether the store holds `op` (one of its own chain) at its place.
fn holds_own<S: SyncStore>(store: &S, op: &SealedOp) -> Result<bool, SyncError<S::Error>> {
    let at = store
        .op_at(&op.op().author, op.op().seq)
        .map_err(SyncError::Store)?;
    Ok(at.is_some_and(|held| held.id() == op.id()))
}

/// [`apply_rest`] with `first` (and their signatures `first_tips`) in the same batch, before
/// the held ops: the receiver's own ops a take back could not store alone.
fn apply_rest_with<S: PeerBook>(
    store: &mut S,
    held: &mut Held,
    first: Vec<SealedOp>,
    first_tips: Vec<SignedTip>,
) -> Result<Applied, SyncError<S::Error>> {
    held.at.clear();
    let mut ops = first;
    ops.append(&mut held.ops);
    let mut tips = first_tips;
    tips.append(&mut held.tips);
    if ops.is_empty() {
        return Ok(Applied::default());
    }
    store.apply(&ops, &tips).map_err(|e| {
        if S::is_refusal(&e) {
            SyncError::Refused(e.to_string())
        } else {
            SyncError::Store(e)
        }
    })
}

/// Moves into `held` what the store left out of `batch` that a later message may let in, and
/// takes it out of `applied`'s refusals and missing count (unless that would hold more than
/// [`HELD_OPS_MAX`] ops).
fn hold<S: PeerBook>(
    store: &S,
    batch: Vec<SealedOp>,
    tips: Vec<SignedTip>,
    applied: &mut Applied,
    held: &mut Held,
) -> Result<(), SyncError<S::Error>> {
    if applied.refused.is_empty() && applied.missing == 0 {
        return Ok(());
    }
    let lifting: BTreeSet<DeviceId> = applied
        .refused
        .iter()
        .filter(|r| r.may_lift())
        .map(Refusal::author)
        .collect();
    let refused: BTreeSet<DeviceId> = applied.refused.iter().map(Refusal::author).collect();
    let mut keep = Vec::new();
    let mut missing = 0;
    for op in batch {
        let author = op.op().author;
        let wanted =
            lifting.contains(&author) || (applied.missing > 0 && !refused.contains(&author));
        if !wanted {
            continue;
        }
        let stored = store
            .op_at(&author, op.op().seq)
            .map_err(SyncError::Store)?
            .is_some_and(|o| o.id() == op.id());
        // (An op this replica withdrew or gave up, its own re-issued as a copy, never goes
        // in: held, it would be refused as a fork of the chain its copy continues.)
        if !stored && !store.withdrew(&op.id()) {
            missing += usize::from(!lifting.contains(&author));
            keep.push(op);
        }
    }
    if keep.len() > HELD_OPS_MAX {
        return Ok(());
    }
    let authors: BTreeSet<DeviceId> = keep.iter().map(|op| op.op().author).collect();
    held.at = keep
        .iter()
        .enumerate()
        .map(|(i, op)| ((op.op().author, op.op().seq), i))
        .collect();
    held.ops = keep;
    held.tips = tips
        .into_iter()
        .filter(|t| authors.contains(&t.author))
        .collect();
    applied.refused.retain(|r| !r.may_lift());
    applied.missing = applied.missing.saturating_sub(missing);
    Ok(())
}

/// The authors `hello` names whose chains go whole anyway (left out of `asked`, what the ops
/// sent are chosen by, because they fork between the two sides): their segments go as exact
/// ops (segment flag bit 3), since their ops may name places in other chains that the
/// receiver holds other ops at. By reference they were rebuilt there on the receiver's ops,
/// failed their heads and were left out every time (seed 0xc79f5 of base 817000).
pub(crate) fn sent_whole(hello: &Summary, asked: &Summary) -> BTreeSet<DeviceId> {
    hello
        .keys()
        .filter(|author| !asked.contains_key(author))
        .copied()
        .collect()
}

/// The forks a peer's summary shows: an author whose tip there is an op at a seq where this
/// replica holds another op.
pub fn forks_in_summary<S: SyncStore>(
    store: &S,
    summary: &Summary,
) -> Result<Vec<Fork>, SyncError<S::Error>> {
    let mine = store.summary();
    let mut forks = Vec::new();
    for (author, theirs) in summary {
        let Some(ours) = mine.get(author) else {
            continue;
        };
        if ours.seq < theirs.seq {
            continue;
        }
        // At this side's own tip the summary names the op: no lookup (a replica just opened
        // would build its whole log index for it, at the first sync with nothing to exchange).
        let at = if ours.seq == theirs.seq {
            Some(ours.op)
        } else {
            store
                .op_at(author, theirs.seq)
                .map_err(SyncError::Store)?
                .map(|o| o.id())
        };
        if let Some(at) = at.filter(|id| *id != theirs.op) {
            forks.push(Fork {
                author: *author,
                seq: theirs.seq,
                ours: at,
                theirs: theirs.op,
            });
        }
    }
    Ok(forks)
}

/// The forks a peer reports, as seen from here, that are forks of ours: each names the op the
/// peer says this side holds there, and a claim about an op not held here is not one.
pub fn reported_forks<S: SyncStore>(
    store: &S,
    reported: &[Fork],
) -> Result<Vec<Fork>, SyncError<S::Error>> {
    let mut ours = Vec::new();
    for fork in reported.iter().map(|f| f.flipped()) {
        let held = store
            .op_at(&fork.author, fork.seq)
            .map_err(SyncError::Store)?
            .map(|o| o.id());
        if held == Some(fork.ours) {
            ours.push(fork);
        }
    }
    Ok(ours)
}

//! What a replica offers the sync layer: its summary, its ops and an atomic apply
//! ([`SyncStore`]), and its clock and the record of what it learns of peers ([`PeerBook`]).
//! `cardlog::Replica` implements both over its store; `memory::MemoryReplica` in memory.

use cardlog_core::{DeviceId, OpId, Refusal, SealedOp, SignedTip};

use crate::error::AuthError;
use crate::secure::{Access, Identity};
use crate::wire::message::{Fork, Summary};

/// What a replica must offer to take part in a session. `cardlog::Replica` implements it over
/// its store; tests and the simulator implement it in memory.
pub trait SyncStore {
    /// Errors of the store itself.
    type Error: std::error::Error + Send + Sync + 'static;
    /// The device id this replica writes as.
    fn device_id(&self) -> DeviceId;
    /// Per author, the last op held.
    fn summary(&self) -> Summary;
    /// Whether a peer holding `theirs` holds what this replica holds, as far as it takes
    /// effect: by default, the same summary. A replica of a book may differ from its peers in
    /// the void ops it keeps (docs/SEMANTICS.md, "Removed devices").
    fn converged_with(&self, theirs: &Summary) -> bool {
        self.summary() == *theirs
    }
    /// The ops a peer holding `peer` lacks, in an order where dependencies come first.
    fn ops_since(&self, peer: &Summary) -> Result<Vec<SealedOp>, Self::Error>;
    /// Where the ops [`SyncStore::ops_since`] returns are kept (store-defined places, such as
    /// log offsets), in the same order, for a store that can read them back a few at a time
    /// with [`SyncStore::ops_at_places`]. A session then holds one message's ops at a time
    /// instead of all it sends. `None` (the default) means the store cannot, and the session
    /// takes `ops_since` whole.
    fn places_since(&self, peer: &Summary) -> Result<Option<Vec<u64>>, Self::Error> {
        let _ = peer;
        Ok(None)
    }
    /// The ops at `places` (as [`SyncStore::places_since`] gave them), in that order. Only
    /// called on a store whose `places_since` returns places; the default returns none, which
    /// the session reports as an error.
    fn ops_at_places(&self, places: &[u64]) -> Result<Vec<SealedOp>, Self::Error> {
        let _ = places;
        Ok(Vec::new())
    }
    /// The op with this id, if held.
    fn op_by_id(&self, id: &OpId) -> Result<Option<SealedOp>, Self::Error>;
    /// The op `author` wrote at `seq`, if held.
    fn op_at(&self, author: &DeviceId, seq: u64) -> Result<Option<SealedOp>, Self::Error>;
    /// Whether the store keeps chain-tip signatures ([`SyncStore::tip_signature`]), and signs
    /// its own chain at any op it holds: a session then ends each message where every
    /// author's last op is signed. The default keeps none.
    fn keeps_signatures(&self) -> bool {
        false
    }
    /// The author's chain-tip signature of its op at `seq` (with its key), if held: a message
    /// sends it with a segment ending there. The default holds none.
    fn tip_signature(&self, author: &DeviceId, seq: u64) -> Result<Option<SignedTip>, Self::Error> {
        let _ = (author, seq);
        Ok(None)
    }
    /// The signatures a receiver of `ops` needs with them: per author, the one held of its
    /// last op among them ([`SyncStore::tip_signature`]), which covers its chain down to the
    /// first.
    fn signatures_for(&self, ops: &[SealedOp]) -> Result<Vec<SignedTip>, Self::Error> {
        let mut last: std::collections::BTreeMap<DeviceId, u64> = Default::default();
        for op in ops {
            let seq = last.entry(op.op().author).or_insert(op.op().seq);
            *seq = (*seq).max(op.op().seq);
        }
        let mut tips = Vec::new();
        for (author, seq) in last {
            if let Some(tip) = self.tip_signature(&author, seq)? {
                tips.push(tip);
            }
        }
        Ok(tips)
    }
    /// Checks that `ops` (one author's, as a received batch carries them, with the batch's
    /// signatures `tips`) are that author's own, as the store's rules require of any op it
    /// stores, judged without what the store holds of the author: the refusal if not. A fork
    /// (an op where the store holds another of the same author and seq) is recorded only for
    /// ops that pass, so a peer cannot make a replica record a fork for an author it cannot
    /// sign for. The default (a store that keeps no signatures) passes every op.
    fn authorship(&self, ops: &[SealedOp], tips: &[SignedTip]) -> Result<(), Refusal> {
        let _ = (ops, tips);
        Ok(())
    }
    /// Stores received ops (decoded and hash-checked) in one atomic, durable step. `tips` are
    /// the chain-tip signatures the message carried, not yet verified: the store decides which
    /// authors may write what and checks the signatures (`cardlog::Replica` through
    /// `cardlog_core::Membership::admit`), and reports the authors it refused in
    /// [`Applied::refused`] without storing their ops. Of the rest, all are stored (less
    /// duplicates and ops whose dependencies are absent) or, if any is refused by the replay
    /// rules, none.
    fn apply(&mut self, ops: &[SealedOp], tips: &[SignedTip]) -> Result<Applied, Self::Error>;
    /// [`SyncStore::apply`] for a store other threads use while a session runs
    /// ([`crate::shared::Shared`]): the default holds the lock for the whole apply. A store
    /// that can check a message whole and then store it in steps overrides it, taking the
    /// lock per step and making way for waiting threads between steps
    /// ([`crate::shared::Shared::make_way`]), so a save waits for one step rather than a
    /// whole message (a message
    /// carries up to an author's signed tip: tens of thousands of ops in a first sync). Each
    /// step is durable; a refusal by the replay rules stores nothing of its step, and the
    /// steps before it stay stored (valid ops, as if the message had been two).
    fn apply_shared(
        shared: &crate::shared::Shared<Self>,
        ops: &[SealedOp],
        tips: &[SignedTip],
    ) -> Result<Applied, Self::Error>
    where
        Self: Sized,
    {
        shared.lock().apply(ops, tips)
    }
    /// Whether an error of [`SyncStore::apply`] is a refusal of the ops by the replay rules
    /// (the peer's fault: a broken chain, a write replacing what it cannot replace)
    /// rather than a failure of the store.
    fn is_refusal(error: &Self::Error) -> bool {
        let _ = error;
        false
    }
    /// A store that refuses writes after one failed (a full disk) opens itself again, so a
    /// process that stays up (a relay) goes on once the disk writes again; whether it did.
    /// [`crate::transport::serve`] calls it after every failed session. The default has
    /// nothing to reopen.
    fn reopen_if_poisoned(&mut self) -> bool {
        false
    }
}

/// What a session tells a replica about its peers and the time as it learns them: the clock
/// readings a session exchanges, the calibration it measures, and the acknowledgements and forks
/// it records. Kept apart from [`SyncStore`] (a replica's ops) so each says one thing; a session
/// needs both.
pub trait PeerBook: SyncStore {
    /// Raw wall-clock time in ms (for round-trip measurement).
    fn wall_ms(&self) -> u64;

    /// How far the session under way (or a bundle import) has got: called after each
    /// message sent or taken. Does nothing unless the replica shows progress.
    fn progress(&mut self, progress: &crate::SyncProgress) {
        let _ = progress;
    }
    /// Calibrated wall-clock time in ms (what the peer is told).
    fn calibrated_ms(&self) -> u64;
    /// Calibrates the clock from `peer`'s reported time `peer_ms`, for a request sent at raw
    /// time `sent_ms` and answered at `received_ms`, if `peer` serves as this replica's time
    /// reference: the new offset, or `None` when it does not (the clock is left as it is).
    fn calibrate(
        &mut self,
        peer: DeviceId,
        peer_ms: u64,
        sent_ms: u64,
        received_ms: u64,
    ) -> Result<Option<i64>, Self::Error>;
    /// Remembers that `peer` holds (at least) `acked`: the "needs sync" question is answered
    /// from it.
    fn record_peer(&mut self, peer: DeviceId, acked: &Summary) -> Result<(), Self::Error>;
    /// Remembers forks found, as seen from here.
    fn record_forks(&mut self, forks: &[Fork]) -> Result<(), Self::Error>;
    /// Whether this replica knows that a peer holds its own chain otherwise than it does (its
    /// store was restored from a backup and it wrote since: docs/SEMANTICS.md, "Restores")
    /// and has not taken the peer's ops back yet. Its hello then leaves its own chain out, so
    /// the peer sends all of it, and it sends none of its own ops. The default never knows.
    fn restored(&self) -> bool {
        false
    }
    /// Remembers that `peer` holds this replica's own chain otherwise than it does, from seq
    /// `at` on or below ([`PeerBook::restored`]).
    fn mark_restored(&mut self, peer: DeviceId, at: u64) -> Result<(), Self::Error> {
        let _ = (peer, at);
        Ok(())
    }
    /// Settles a fork of `author`'s chain with the peer's branch (`theirs`, verified, with the
    /// signatures `tips`; the sender sends a chain whole when it sees the fork in the
    /// receiver's hello): if every op of the branch held here from where they differ was
    /// re-issued by its author later on the peer's branch (the same writes and member changes
    /// at the same times, one copy each, at its op's seq or later: the author was restored in
    /// place and gave this branch up), the held branch is withdrawn and the peer's stored.
    /// Returns whether it was. The default settles nothing.
    fn settle_fork(
        &mut self,
        author: DeviceId,
        theirs: &[SealedOp],
        tips: &[SignedTip],
    ) -> Result<bool, Self::Error> {
        let _ = (author, theirs, tips);
        Ok(false)
    }
    /// Authors of the branches kept by [`PeerBook::keep_branch`]: chains this replica holds
    /// signed proof of forking. The default keeps none.
    fn branch_authors(&self) -> std::collections::BTreeSet<DeviceId> {
        std::collections::BTreeSet::new()
    }
    /// Keeps the peer's branch of `author`'s chain (`theirs`, verified, with the signatures
    /// `tips`) where it forks from the one held here and could not be settled: if `author`
    /// was restored from a backup and wrote since, this is what it lost, and a session with
    /// it gives the branch back ([`PeerBook::kept_branch`]). The default keeps nothing.
    fn keep_branch(
        &mut self,
        author: DeviceId,
        theirs: &[SealedOp],
        tips: &[SignedTip],
    ) -> Result<(), Self::Error> {
        let _ = (author, theirs, tips);
        Ok(())
    }
    /// The cover of `author`'s chain held here up to its op `id` at `seq`, where no signature
    /// this replica keeps of an op held covers that op: ops of the chain not held here that
    /// continue it from `id`, in chain order, up to one whose author's signature it keeps,
    /// with that signature (the author's ops after those held were withdrawn here, or where
    /// they came from, for building on a branch given up). A session's last message sends
    /// them beside the chain's tail, as proof of it (docs/SYNC.md, "Signatures"); without
    /// one, the tail is left out. The default has none.
    fn cover(
        &self,
        author: &DeviceId,
        seq: u64,
        id: OpId,
    ) -> Result<Option<(Vec<SealedOp>, SignedTip)>, Self::Error> {
        let _ = (author, seq, id);
        Ok(None)
    }
    /// The branch of `author`'s chain kept by [`PeerBook::keep_branch`], in chain order, with
    /// its author's signature of its last op. The default has none.
    fn kept_branch(&self, author: &DeviceId) -> Option<(Vec<SealedOp>, SignedTip)> {
        let _ = author;
        None
    }
    /// Branches of other devices' chains withdrawn here (each in chain order, with its
    /// author's signature of the last) holding edits their author has not re-issued: they
    /// were withdrawn for building on a branch a third device gave up, and their author
    /// re-issues them once it holds them. If it lost them (restored in place), no replica
    /// serves a withdrawn op otherwise: a session sends each, after its ordinary messages,
    /// to the author or to a peer whose hello shows the author's chain forking from the
    /// branch (docs/SYNC.md, "Edits owed back"). The author takes back what it lacks; another
    /// replica that does not hold what the branch continues hands it on to the author alone
    /// ([`Owed::author_only`]). Those of `peer`'s own chain come first (a replica may bound
    /// how many it considers). The default owes nothing.
    fn owed(&self, peer: &DeviceId) -> Vec<Owed> {
        let _ = peer;
        Vec::new()
    }
    /// Re-issues what this replica still lists for re-issue and can now: its own ops withdrawn
    /// because they built on a branch another device gave up wait for that device's copies
    /// of what they named, which a session or bundle may bring. Called once a session or
    /// bundle has applied all it brings. The default has nothing listed.
    fn reissue_waiting(&mut self) -> Result<(), Self::Error> {
        Ok(())
    }
    /// Whether this replica lists own ops for re-issue that wait for another device's copies
    /// ([`PeerBook::reissue_waiting`]). The default lists none.
    fn waits_to_reissue(&self) -> bool {
        false
    }
    /// Whether `op` is one of this replica's own ops it withdrew when it took its chain
    /// back: a peer holding it holds the branch this replica gave up, not ops it lost, so it
    /// is an ordinary fork. The default withdrew none.
    fn withdrew(&self, op: &OpId) -> bool {
        let _ = op;
        false
    }
    /// Takes back this replica's own ops as `peer` holds them, once the peer has sent all of
    /// its chain it holds: `theirs` (verified, signed by this replica's key; `tips` the
    /// signatures that came with them) from where they differ from what this replica holds
    /// replace its own ops there, which are re-issued after them on its chain (the same
    /// writes, at their first times). `theirs` may be empty (an earlier take back left ops
    /// to re-issue). `peer` is the session's peer (none for a bundle) with the seq up to which
    /// its hello said it holds this replica's chain (for judging whether a claim of lost ops
    /// was stale; `Replica` judges by who made the claim only, docs/SEMANTICS.md,
    /// "Restores"). `None`: nothing was taken back (the default: a replica that cannot).
    fn take_back(
        &mut self,
        peer: Option<(DeviceId, u64)>,
        theirs: &[SealedOp],
        tips: &[SignedTip],
    ) -> Result<Option<TakenBack>, Self::Error> {
        let _ = (peer, theirs, tips);
        Ok(None)
    }
}

/// What taking back a replica's own chain from a peer did ([`PeerBook::take_back`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct TakenBack {
    /// The first seq of its chain where the peer's ops replaced its own (0: none replaced,
    /// only ops left from an earlier take back were re-issued).
    pub from_seq: u64,
    /// Ops of its chain it got back from the peer.
    pub recovered: usize,
    /// Its own ops written since the restore, re-issued after them.
    pub reissued: usize,
}

/// Who a replica is in encrypted sessions and whom it lets in (docs/SECURITY.md, "Who may
/// connect"): what [`crate::transport::run_secure`] needs beyond a [`PeerBook`].
pub trait Gate: PeerBook {
    /// This replica's session identity (its book, session key and certificate).
    fn identity(&self) -> Identity;
    /// Whether the authenticated device `peer` may take part in a session with this replica,
    /// and what it may do; the refusal names why not. Asked before this side sends anything
    /// of the book.
    fn admit_peer(&self, peer: &DeviceId) -> Result<Access, AuthError>;
    /// Whether this replica sends ops in sessions (a read-only member does not: its peers
    /// would refuse them).
    fn pushes(&self) -> bool;
}

/// What [`SyncStore::apply`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Applied {
    /// Ops stored.
    pub stored: usize,
    /// Ops already held.
    pub duplicates: usize,
    /// Ops not stored because a dependency is absent.
    pub missing: usize,
    /// Authors whose ops were refused (not a member, no valid signature…), each with why;
    /// none of their ops in the message was stored.
    pub refused: Vec<Refusal>,
    /// Of the ops stored, those void (by a removed device after its cutoff, kept because
    /// other ops replace their writes; they take no effect).
    pub void: usize,
}

impl Applied {
    /// Counts what another apply did in with this one.
    pub fn add(&mut self, other: Applied) {
        self.stored += other.stored;
        self.duplicates += other.duplicates;
        self.missing += other.missing;
        self.refused.extend(other.refused);
        self.void += other.void;
    }
}

/// A branch of another device's chain a replica owes ([`PeerBook::owed`]).
#[derive(Debug, Clone)]
pub struct Owed {
    /// The ops, of one author's chain, in chain order.
    pub ops: Vec<SealedOp>,
    /// The author's signature of the last.
    pub tip: SignedTip,
    /// Whether it goes to its author alone: a branch another replica handed on for it, whose
    /// base the replica holding it does not hold. (A branch withdrawn here also goes to a
    /// peer holding the author's chain as here, from which it forks.)
    pub author_only: bool,
    /// Ops of the author's chain held here below the branch, in chain order, that no kept
    /// signature proves but the branch's (the author's signature held here was of a branch
    /// op, since withdrawn): no session can send them otherwise. They go before the branch
    /// to the author when its hello shows its chain ending just below them (docs/SYNC.md,
    /// "Edits owed back").
    pub proved: Vec<SealedOp>,
}

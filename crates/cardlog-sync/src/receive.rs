//! The receive path, shared by sessions and bundle import: a segment message verified whole,
//! forked authors set aside, the rest applied atomically ([`apply_segments`]). Every fork
//! decision lives in this file: in a message's ops ([`apply_segments`]), in a peer's summary
//! ([`forks_in_summary`]) and in forks a peer reports ([`reported_forks`]).

use std::collections::{BTreeMap, BTreeSet};

use cardlog_core::{DeviceId, OpId, SealedOp};

use crate::error::SyncError;
use crate::store::{Applied, PeerBook, SyncStore};
use crate::wire::message::{Fork, Summary};
use crate::wire::segment::{decode_segments, Locate, Resolve};
use crate::wire::WireError;

/// Adapts a store to the segment codec's lookups.
pub(crate) struct View<'a, S>(pub(crate) &'a S);

impl<S: SyncStore> Locate for View<'_, S> {
    fn locate(&self, id: &OpId) -> Result<Option<SealedOp>, WireError> {
        self.0
            .op_by_id(id)
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
}

/// Verifies a segment message completely and applies it atomically. Ops of an author whose
/// chain here differs from the message's (a fork) are set aside and the fork reported and
/// recorded; anything else wrong refuses the whole message, leaving the store unchanged.
pub fn apply_segments<S: PeerBook>(
    store: &mut S,
    bytes: &[u8],
) -> Result<Received, SyncError<S::Error>> {
    let ops = decode_segments(bytes, &View(&*store))?;
    let summary = store.summary();
    // Each author's ops in the message, by seq: where they meet our chain.
    let mut by_author: BTreeMap<DeviceId, Vec<&SealedOp>> = BTreeMap::new();
    for op in &ops {
        by_author.entry(op.op().author).or_default().push(op);
    }
    let mut forks = Vec::new();
    for (author, mut theirs) in by_author {
        let Some(head) = summary.get(&author) else {
            continue;
        };
        theirs.sort_by_key(|op| op.op().seq);
        // The lowest seq where the message differs from what is held is the fork: an op
        // where another is held, or the op after our head naming another predecessor. Ops
        // already held come first (a whole-history bundle, a replay): a fork after a shared
        // prefix is still a fork, not a reason to refuse everyone else's ops.
        for op in theirs {
            let seq = op.op().seq;
            if seq <= head.seq {
                let ours = store
                    .op_at(&author, seq)
                    .map_err(SyncError::Store)?
                    .map(|o| o.id());
                if let Some(ours) = ours.filter(|o| *o != op.id()) {
                    forks.push(Fork {
                        author,
                        seq,
                        ours,
                        theirs: op.id(),
                    });
                    break;
                }
            } else {
                if seq == head.seq + 1 {
                    if let Some(prev) = op.op().prev.filter(|p| *p != head.op) {
                        forks.push(Fork {
                            author,
                            seq: head.seq,
                            ours: head.op,
                            theirs: prev,
                        });
                    }
                }
                break;
            }
        }
    }
    let forked: BTreeSet<DeviceId> = forks.iter().map(|f| f.author).collect();
    let keep: Vec<SealedOp> = ops
        .iter()
        .filter(|op| !forked.contains(&op.op().author))
        .cloned()
        .collect();
    if !forks.is_empty() {
        store.record_forks(&forks).map_err(SyncError::Store)?;
    }
    let applied = store.apply(&keep).map_err(|e| {
        if S::is_refusal(&e) {
            SyncError::Refused(e.to_string())
        } else {
            SyncError::Store(e)
        }
    })?;
    Ok(Received {
        ops: ops.len(),
        applied,
        forks,
    })
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
        let at = store
            .op_at(author, theirs.seq)
            .map_err(SyncError::Store)?
            .map(|o| o.id());
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

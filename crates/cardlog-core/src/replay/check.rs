//! The dependency and consistency check an op passes before it is applied, written once over an
//! [`OpLookup`] so the in-memory replay and the durable store apply exactly the same rules.

use crate::hlc::Hlc;
use crate::id::{ContactId, DeviceId, OpId};
use crate::model::Path;
use crate::sealed::SealedOp;

/// The last applied op of one author.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, bincode::Encode, bincode::Decode,
)]
pub struct ChainTip {
    /// Its seq (the number of the author's ops applied).
    pub seq: u64,
    /// Its id (commits to the author's whole chain).
    pub op: OpId,
    /// Its timestamp.
    pub hlc: Hlc,
}

/// Per author, the tip of its chain: what a replica holds, in one value. Equal summaries mean
/// equal sets of ops (each tip's id commits to its author's whole chain). The one summary
/// type: replays, stores, the facade and the wire all use it.
pub type Summary = std::collections::BTreeMap<DeviceId, ChainTip>;

/// What the check needs to know about the ops already applied.
pub trait OpLookup {
    /// Errors of the lookup itself (I/O for a store); must carry replay refusals.
    type Error: From<ReplayError>;
    /// Whether the op is applied.
    fn contains(&self, op: &OpId) -> Result<bool, Self::Error>;
    /// The author's last applied op.
    fn chain_tip(&self, author: &DeviceId) -> Result<Option<ChainTip>, Self::Error>;
    /// The id of the author's applied op at `seq`.
    fn op_at(&self, author: &DeviceId, seq: u64) -> Result<Option<OpId>, Self::Error>;
    /// Whether the applied op `op` wrote at `(contact, path)`; `None` if `op` is not applied.
    fn wrote_at(
        &self,
        op: &OpId,
        contact: &ContactId,
        path: &Path,
    ) -> Result<Option<bool>, Self::Error>;
}

/// Whether an op can be applied now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Readiness {
    /// Every dependency is present and the op is consistent with them.
    Ready,
    /// The op is already applied.
    Duplicate,
    /// A dependency is missing (the first one found).
    Missing(Missing),
}

/// Checks an op against the applied ops without changing anything: already applied, chain
/// position (forks), previous-op hash, timestamp after its predecessor's, replaced writes
/// present and at the same contact and path.
pub fn check_op<L: OpLookup>(lookup: &L, sealed: &SealedOp) -> Result<Readiness, L::Error> {
    let op = sealed.op();
    let id = sealed.id();
    let head = lookup.chain_tip(&op.author)?;
    let applied = head.map_or(0, |h| h.seq);
    // An op past its author's head cannot be applied yet, so only ops at or below the head
    // need the (for a store, costly) lookup by id.
    if op.seq <= applied && lookup.contains(&id)? {
        return Ok(Readiness::Duplicate);
    }
    if op.seq <= applied {
        let existing = lookup.op_at(&op.author, op.seq)?.unwrap_or(id);
        return Err(ReplayError::Fork {
            author: op.author,
            seq: op.seq,
            existing,
            incoming: id,
        }
        .into());
    }
    if op.seq > applied + 1 {
        return Ok(Readiness::Missing(Missing::Chain {
            author: op.author,
            seq: op.seq - 1,
        }));
    }
    if let Some(head) = head {
        if op.prev != Some(head.op) {
            return Err(ReplayError::ChainMismatch {
                author: op.author,
                seq: op.seq,
                op: id,
                named: op.prev,
                present: head.op,
            }
            .into());
        }
    }
    for w in &op.writes {
        for replaced in &w.replaces {
            match lookup.wrote_at(replaced, &w.contact, &w.path)? {
                None => return Ok(Readiness::Missing(Missing::Op(*replaced))),
                Some(false) => {
                    return Err(ReplayError::BadReplace {
                        op: id,
                        contact: w.contact,
                        path: w.path.to_string(),
                        replaced: *replaced,
                    }
                    .into())
                }
                Some(true) => {}
            }
        }
    }
    Ok(Readiness::Ready)
}

/// Why an op cannot be applied. The op is not applied and nothing changes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ReplayError {
    /// Two different ops claim the same place in one author's chain (for example a device
    /// restored from a backup kept writing). Never merged silently.
    #[error("fork: author {author} seq {seq} is op {existing} here but {incoming} was received")]
    Fork {
        /// The author.
        author: DeviceId,
        /// The contested position.
        seq: u64,
        /// The op already applied at that position.
        existing: OpId,
        /// The op received.
        incoming: OpId,
    },
    /// The op names a previous op that is not the author's op at `seq - 1` here: its chain
    /// diverges from the one this replica has (a fork at an earlier seq).
    #[error("chain mismatch: op {op} (author {author} seq {seq}) names previous op {named:?}, but seq {prev_seq} here is {present}", prev_seq = seq - 1)]
    ChainMismatch {
        /// The author.
        author: DeviceId,
        /// The received op's seq.
        seq: u64,
        /// The received op.
        op: OpId,
        /// The previous op it names.
        named: Option<OpId>,
        /// The author's op at `seq - 1` here.
        present: OpId,
    },
    /// A write names a replaced op that has no write at the same contact and path.
    #[error("op {op} write {contact}/{path} replaces op {replaced}, which did not write there")]
    BadReplace {
        /// The op.
        op: OpId,
        /// The contact written.
        contact: ContactId,
        /// The path written.
        path: String,
        /// The replaced op named.
        replaced: OpId,
    },
}

/// Something an op waits for before it can be applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Missing {
    /// The author's op at this seq (the chain predecessor).
    Chain {
        /// The author.
        author: DeviceId,
        /// The missing seq.
        seq: u64,
    },
    /// An op named in `replaces`.
    Op(OpId),
}

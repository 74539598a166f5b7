//! An in-memory replica for the sync protocol: a core [`Device`] plus the peers and forks a
//! session records. The simulator's fast mode, the fuzz targets and tests use it; apps use
//! `cardlog::Replica`.
//!
//! `apply` behaves like the store's: atomic (a refused op leaves nothing of the call behind),
//! in any order (ops waiting for another op of the same call are retried), and ops whose
//! dependencies are absent are counted as missing and not kept.

use std::collections::{BTreeMap, BTreeSet};

use cardlog_core::replay::{check_op, Readiness, Replay, ReplayError};
use cardlog_core::{Device, DeviceId, Membership, OpId, SealedOp, SignedTip};

use crate::store::{Applied, PeerBook, SyncStore};
use crate::wire::message::{Fork, Summary};

/// See the module docs.
#[derive(Debug, Clone)]
pub struct MemoryReplica {
    device: Device,
    peers: BTreeMap<DeviceId, Summary>,
    forks: BTreeSet<Fork>,
}

/// The in-memory replica's only error: replay refused an op (the peer's fault).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(transparent)]
pub struct Refusal(pub ReplayError);

impl MemoryReplica {
    /// A replica over `device`.
    pub fn new(device: Device) -> Self {
        Self {
            device,
            peers: BTreeMap::new(),
            forks: BTreeSet::new(),
        }
    }

    /// The device (to read contacts).
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// The device (to save edits).
    pub fn device_mut(&mut self) -> &mut Device {
        &mut self.device
    }

    /// The applied ops.
    pub fn replay(&self) -> &Replay {
        self.device.replay()
    }

    /// What each peer acknowledged holding.
    pub fn peers(&self) -> &BTreeMap<DeviceId, Summary> {
        &self.peers
    }

    /// The forks sessions recorded.
    pub fn forks(&self) -> &BTreeSet<Fork> {
        &self.forks
    }
}

impl SyncStore for MemoryReplica {
    type Error = Refusal;

    fn device_id(&self) -> DeviceId {
        self.device.id()
    }

    fn summary(&self) -> Summary {
        self.replay().summary()
    }

    fn ops_since(&self, peer: &Summary) -> Result<Vec<SealedOp>, Refusal> {
        Ok(self.replay().missing_for(peer))
    }

    fn op_by_id(&self, id: &OpId) -> Result<Option<SealedOp>, Refusal> {
        Ok(self.replay().op(id).cloned())
    }

    fn op_at(&self, author: &DeviceId, seq: u64) -> Result<Option<SealedOp>, Refusal> {
        let Some(index) = seq.checked_sub(1).and_then(|i| usize::try_from(i).ok()) else {
            return Ok(None);
        };
        Ok(self.replay().chain(author).nth(index).cloned())
    }

    /// Applies the ops without looking at signatures or membership: the in-memory replica is
    /// the protocol's test double (tests, fuzzing, the simulator's memory nodes), not a
    /// replica of a book; `cardlog::Replica` is. Only the removals among the ops it holds
    /// count, so that it derives the state a replica derives from the same ops.
    fn apply(&mut self, ops: &[SealedOp], _tips: &[SignedTip]) -> Result<Applied, Refusal> {
        let mut next = self.device.clone();
        let mut applied = Applied::default();
        let mut waiting: Vec<&SealedOp> = ops.iter().collect();
        loop {
            let mut still = Vec::new();
            let before = waiting.len();
            for op in waiting {
                match check_op(next.replay(), op).map_err(Refusal)? {
                    Readiness::Duplicate => applied.duplicates += 1,
                    Readiness::Missing(_) => still.push(op),
                    Readiness::Ready => {
                        next.receive(op.clone()).map_err(Refusal)?;
                        applied.stored += 1;
                    }
                }
            }
            let progress = still.len() < before;
            waiting = still;
            if !progress || waiting.is_empty() {
                break;
            }
        }
        applied.missing = waiting.len();
        // Removals among the ops make a removed device's later ops void, as in a replica.
        if ops.iter().any(|op| op.op().is_membership()) {
            if let Some(membership) = Membership::founded_in(next.replay().ops_in_order()) {
                next.set_cutoffs(membership.cutoffs());
            }
        }
        self.device = next;
        Ok(applied)
    }

    fn is_refusal(_: &Refusal) -> bool {
        true
    }
}

impl PeerBook for MemoryReplica {
    fn wall_ms(&self) -> u64 {
        self.device.now_ms()
    }

    fn calibrated_ms(&self) -> u64 {
        self.device
            .clock()
            .calibrated_at(self.device.now_ms(), self.device.monotonic_ms())
    }

    fn calibrate(
        &mut self,
        _peer: DeviceId,
        peer_ms: u64,
        sent_ms: u64,
        received_ms: u64,
    ) -> Result<Option<i64>, Refusal> {
        // An in-memory device has no book, so no relay: every peer is its time reference.
        let mono = self.device.monotonic_ms();
        Ok(Some(self.device.clock_mut().calibrate(
            peer_ms,
            sent_ms,
            received_ms,
            mono,
        )))
    }

    fn record_peer(&mut self, peer: DeviceId, acked: &Summary) -> Result<(), Refusal> {
        self.peers.insert(peer, acked.clone());
        Ok(())
    }

    fn record_forks(&mut self, forks: &[Fork]) -> Result<(), Refusal> {
        self.forks.extend(forks.iter().copied());
        Ok(())
    }
}

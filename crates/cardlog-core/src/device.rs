//! An in-memory replica: a device id, its hybrid clock and a [`Replay`]. It saves edits as ops,
//! receives peers' ops and reads contacts, with exactly the rules the durable `Replica` uses.
//!
//! It exists for tests, the simulator and apps' own property tests: everything is in memory and
//! time comes from an injected [`WallClock`].

use std::sync::Arc;

use crate::edit::{self, EditError, EditTarget};
use crate::hlc::{Hlc, HlcClock, SkewReport, WallClock};
use crate::id::{ContactId, DeviceId, RandomError};
use crate::model::contact::Contact;
use crate::model::{Path, Value};
use crate::replay::{
    Batch, ChainTip, ContactRegisters, ContactView, InsertOutcome, Replay, ReplayError, Summary,
};
use crate::sealed::SealedOp;

/// Why a device operation failed. Nothing was saved.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DeviceError {
    /// The edit was refused (see [`EditError`]).
    #[error(transparent)]
    Edit(#[from] EditError),
    /// The op was refused by replay (only possible for received ops).
    #[error(transparent)]
    Replay(Box<ReplayError>),
    /// No random id could be drawn.
    #[error(transparent)]
    Random(#[from] RandomError),
}

impl From<ReplayError> for DeviceError {
    fn from(e: ReplayError) -> Self {
        DeviceError::Replay(Box::new(e))
    }
}

/// An in-memory replica. See the module docs. Cloning copies its whole state (the sync
/// layer's in-memory replica applies a batch to a clone and keeps it only if all is well).
#[derive(Clone)]
pub struct Device {
    id: DeviceId,
    clock: HlcClock,
    wall: Arc<dyn WallClock>,
    replay: Replay,
    skew: Vec<SkewReport>,
}

impl std::fmt::Debug for Device {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Device")
            .field("id", &self.id)
            .field("clock", &self.clock)
            .field("ops", &self.replay.len())
            .finish_non_exhaustive()
    }
}

impl Device {
    /// A device with the given id and wall clock.
    pub fn new(id: DeviceId, wall: Arc<dyn WallClock>) -> Self {
        Self {
            id,
            clock: HlcClock::default(),
            wall,
            replay: Replay::new(),
            skew: Vec::new(),
        }
    }

    /// A device with a fresh random id.
    pub fn random(wall: Arc<dyn WallClock>) -> Result<Self, RandomError> {
        Ok(Self::new(DeviceId::random()?, wall))
    }

    /// Raw wall-clock time from the device's clock, in ms.
    pub fn now_ms(&self) -> u64 {
        self.wall.now_ms()
    }

    /// The monotonic reading of its clock ([`WallClock::monotonic_ms`]).
    pub fn monotonic_ms(&self) -> Option<u64> {
        self.wall.monotonic_ms()
    }

    /// The device id.
    pub fn id(&self) -> DeviceId {
        self.id
    }

    /// The materialized state.
    pub fn replay(&self) -> &Replay {
        &self.replay
    }

    /// The hybrid clock.
    pub fn clock(&self) -> &HlcClock {
        &self.clock
    }

    /// The hybrid clock, to calibrate.
    pub fn clock_mut(&mut self) -> &mut HlcClock {
        &mut self.clock
    }

    /// Received timestamps that were further ahead of the local clock than the bound.
    pub fn skew_reports(&self) -> &[SkewReport] {
        &self.skew
    }

    /// A contact as apps read it, deleted or not.
    pub fn contact(&self, id: &ContactId) -> Option<ContactView> {
        self.replay.contact(id)
    }

    /// The visible (not deleted) contacts.
    pub fn contacts(&self) -> Vec<ContactView> {
        self.replay.contacts(false)
    }

    /// Saves a batch as one op and returns it (see [`crate::edit::save`]).
    pub fn save(&mut self, batch: &Batch) -> Result<SealedOp, DeviceError> {
        edit::save(self, batch)
    }

    /// Creates a contact.
    pub fn create(&mut self, contact: &Contact) -> Result<SealedOp, DeviceError> {
        edit::create(self, contact)
    }

    /// Edits a visible contact with `f`; saves only what changed. `None` when nothing did.
    pub fn edit(
        &mut self,
        id: ContactId,
        f: impl FnOnce(&mut Contact),
    ) -> Result<Option<SealedOp>, DeviceError> {
        edit::edit(self, id, f)
    }

    /// Deletes a visible contact.
    pub fn delete(&mut self, id: ContactId) -> Result<SealedOp, DeviceError> {
        edit::delete(self, id)
    }

    /// Restores a deleted contact.
    pub fn restore(&mut self, id: ContactId) -> Result<SealedOp, DeviceError> {
        edit::restore(self, id)
    }

    /// Settles a path with `value` (any value, also the visible one), replacing every head.
    pub fn resolve(
        &mut self,
        id: ContactId,
        path: Path,
        value: Option<Value>,
    ) -> Result<SealedOp, DeviceError> {
        edit::resolve(self, id, path, value)
    }

    /// Makes the ops `cutoffs` voids take no effect ([`Replay::set_cutoffs`]).
    pub fn set_cutoffs(&mut self, cutoffs: crate::membership::Cutoffs) {
        self.replay.set_cutoffs(cutoffs);
    }

    /// Receives a peer's op: replay inserts it, and a timestamp beyond the skew bound is
    /// reported (the clock never moves for it).
    pub fn receive(&mut self, op: SealedOp) -> Result<InsertOutcome, ReplayError> {
        let (author, hlc) = (op.op().author, op.op().hlc);
        let outcome = self.replay.insert(op)?;
        let now = self
            .clock
            .calibrated_at(self.wall.now_ms(), self.wall.monotonic_ms());
        if let Some(report) = self.clock.observe(author, hlc, now) {
            self.skew.push(report);
        }
        Ok(outcome)
    }

    /// Per author, the seq and id of the last op here.
    pub fn summary(&self) -> Summary {
        self.replay.summary()
    }

    /// Sends `self`'s ops that `peer` lacks to `peer` (dependencies first).
    pub fn push_to(&self, peer: &mut Device) -> Result<usize, ReplayError> {
        let missing = self.replay.missing_for(&peer.summary());
        let n = missing.len();
        for op in missing {
            peer.receive(op)?;
        }
        Ok(n)
    }

    /// Full two-way sync between two in-memory devices.
    pub fn sync(&mut self, peer: &mut Device) -> Result<(), ReplayError> {
        self.push_to(peer)?;
        peer.push_to(self)?;
        Ok(())
    }
}

impl EditTarget for Device {
    type Error = DeviceError;

    fn author(&self) -> DeviceId {
        self.id
    }

    fn own_tip(&self) -> Option<ChainTip> {
        self.replay.tip(&self.id)
    }

    fn contact_registers(&self, contact: &ContactId) -> Result<ContactRegisters, DeviceError> {
        Ok(self.replay.contact_registers(contact))
    }

    fn next_hlc(&self) -> (Hlc, HlcClock) {
        let mut clock = self.clock.clone();
        let now = self.wall.now_ms();
        clock.check(now, self.wall.monotonic_ms());
        let hlc = clock.tick(now);
        (hlc, clock)
    }

    fn store_local(&mut self, op: &SealedOp, clock: HlcClock) -> Result<(), DeviceError> {
        self.replay.insert(op.clone())?;
        self.clock = clock;
        Ok(())
    }
}

//! An in-memory replica: a device id, its hybrid clock and a [`Replay`]. It saves edits as ops,
//! receives peers' ops and reads contacts, with exactly the rules the durable `Replica` uses.
//!
//! It exists for tests, the simulator and apps' own property tests: everything is in memory and
//! time comes from an injected [`WallClock`].

use std::sync::Arc;

use crate::hlc::{HlcClock, SkewReport, WallClock};
use crate::id::{ContactId, DeviceId, RandomError};
use crate::model::contact::{Contact, DiffError};
use crate::model::{Path, Value};
use crate::replay::{Batch, ContactView, InsertOutcome, PlanError, Replay, ReplayError, Summary};
use crate::sealed::EncodeError;
use crate::sealed::SealedOp;

/// Why a device operation failed. Nothing was saved.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DeviceError {
    /// No contact with this id exists here.
    #[error("no contact {0}")]
    NotFound(ContactId),
    /// The contact is deleted; restore it first.
    #[error("contact {0} is deleted (restore it to edit it)")]
    Deleted(ContactId),
    /// A contact with this id already exists.
    #[error("contact {0} already exists")]
    Exists(ContactId),
    /// The contact is not deleted.
    #[error("contact {0} is not deleted")]
    NotDeleted(ContactId),
    /// The edited contact cannot be diffed.
    #[error(transparent)]
    Diff(#[from] DiffError),
    /// The changes cannot be planned into writes.
    #[error(transparent)]
    Plan(#[from] PlanError),
    /// The op cannot be encoded.
    #[error(transparent)]
    Encode(#[from] EncodeError),
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

    /// Saves a batch as one op and returns it.
    pub fn save(&mut self, batch: &Batch) -> Result<SealedOp, DeviceError> {
        // The clock only advances if the save succeeds.
        let mut clock = self.clock.clone();
        let hlc = clock.tick(self.wall.now_ms());
        let op = self.replay.next_op(self.id, hlc, batch)?.seal()?;
        self.replay.insert(op.clone())?;
        self.clock = clock;
        Ok(op)
    }

    /// Creates a contact.
    pub fn create(&mut self, contact: &Contact) -> Result<SealedOp, DeviceError> {
        if self.replay.knows(&contact.id) {
            return Err(DeviceError::Exists(contact.id));
        }
        let mut batch = Batch::new();
        batch.create(contact)?;
        self.save(&batch)
    }

    /// Edits a visible contact with `f`; saves only what changed. `None` when nothing did.
    pub fn edit(
        &mut self,
        id: ContactId,
        f: impl FnOnce(&mut Contact),
    ) -> Result<Option<SealedOp>, DeviceError> {
        let batch = Batch::edited(&self.visible(id)?, f)?;
        if batch.is_empty() {
            return Ok(None);
        }
        self.save(&batch).map(Some)
    }

    /// Deletes a visible contact.
    pub fn delete(&mut self, id: ContactId) -> Result<SealedOp, DeviceError> {
        self.visible(id)?;
        self.save(Batch::new().delete(id))
    }

    /// Restores a deleted contact.
    pub fn restore(&mut self, id: ContactId) -> Result<SealedOp, DeviceError> {
        let view = self.replay.contact(&id).ok_or(DeviceError::NotFound(id))?;
        if !view.deleted {
            return Err(DeviceError::NotDeleted(id));
        }
        self.save(Batch::new().restore(id))
    }

    /// Settles a path with `value` (any value, also the visible one), replacing every head.
    pub fn resolve(
        &mut self,
        id: ContactId,
        path: Path,
        value: Option<Value>,
    ) -> Result<SealedOp, DeviceError> {
        if !self.replay.knows(&id) {
            return Err(DeviceError::NotFound(id));
        }
        self.save(Batch::new().change(id, path, value))
    }

    /// Receives a peer's op: the clock absorbs its timestamp (reporting one beyond the skew
    /// bound), then replay inserts it.
    pub fn receive(&mut self, op: SealedOp) -> Result<InsertOutcome, ReplayError> {
        let hlc = op.op().hlc;
        let outcome = self.replay.insert(op)?;
        if let Some(report) = self.clock.observe(hlc, self.wall.now_ms()) {
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

    fn visible(&self, id: ContactId) -> Result<Contact, DeviceError> {
        let view = self.replay.contact(&id).ok_or(DeviceError::NotFound(id))?;
        if view.deleted {
            return Err(DeviceError::Deleted(id));
        }
        Ok(view.contact)
    }
}

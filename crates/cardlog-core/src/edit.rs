//! The save protocol, written once: the preconditions of each edit (the contact must exist, be
//! visible, be deleted, …), the assembly of the next op (seq and prev from the author's chain
//! tip, each write replacing exactly the heads it saw, the timestamp from the clock) and the
//! order of a save (tick a copy of the clock, seal, store, and only then adopt the clock).
//!
//! The in-memory [`crate::Device`], the durable `cardlog::Replica`, the simulator and the fuzz
//! targets all save through these functions. They differ only in where a contact's registers
//! come from and where the op goes, which is all an [`EditTarget`] says.

use crate::hlc::{Hlc, HlcClock};
use crate::id::{ContactId, DeviceId};
use crate::model::contact::{Contact, DiffError};
use crate::model::{Path, Value};
use crate::op::Op;
use crate::replay::{view_of, Batch, ChainTip, ContactRegisters, PlanError};
use crate::sealed::{EncodeError, SealedOp};

/// Why an edit was refused. Nothing was saved.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EditError {
    /// No contact with this id exists here.
    #[error("no contact {0}")]
    NotFound(ContactId),
    /// The contact is deleted; restore it first.
    #[error("contact {0} is deleted (restore it to edit it)")]
    Deleted(ContactId),
    /// A contact with this id already exists.
    #[error("contact {0} already exists")]
    Exists(ContactId),
    /// The contact is not deleted, so there is nothing to restore.
    #[error("contact {0} is not deleted")]
    NotDeleted(ContactId),
    /// The edited contact cannot be turned into changes (duplicate item ids, a field that does
    /// not fit its path…).
    #[error(transparent)]
    Diff(#[from] DiffError),
    /// The changes cannot be planned into writes.
    #[error(transparent)]
    Plan(#[from] PlanError),
    /// The op cannot be encoded (a value over the size limits).
    #[error(transparent)]
    Encode(#[from] EncodeError),
}

/// What the save protocol needs of a replica: who writes, its chain tip, a contact's
/// registers, its clock, and where a sealed local op goes.
pub trait EditTarget {
    /// The replica's own errors (a failed store); the protocol's refusals become one of them.
    type Error: From<EditError>;

    /// The device id local ops are written as.
    fn author(&self) -> DeviceId;

    /// The author's last op held here, if any.
    fn own_tip(&self) -> Option<ChainTip>;

    /// Every register of `contact` (empty if it was never written).
    fn contact_registers(&self, contact: &ContactId) -> Result<ContactRegisters, Self::Error>;

    /// The timestamp of the next local op, and the clock as it is once that op is saved.
    fn next_hlc(&self) -> (Hlc, HlcClock);

    /// Stores a local op just sealed (durably, for a durable replica), then adopts `clock`.
    /// On error the clock must stay as it was.
    fn store_local(&mut self, op: &SealedOp, clock: HlcClock) -> Result<(), Self::Error>;
}

/// Saves a batch of changes (any number of contacts) as one op and returns it.
pub fn save<T: EditTarget + ?Sized>(target: &mut T, batch: &Batch) -> Result<SealedOp, T::Error> {
    save_knowing(target, batch, None)
}

/// [`save`], given the registers of one contact of the batch as just read (`known`), so they
/// are not read again.
pub fn save_knowing<T: EditTarget + ?Sized>(
    target: &mut T,
    batch: &Batch,
    known: Option<(ContactId, &ContactRegisters)>,
) -> Result<SealedOp, T::Error> {
    // The clock only advances if the save succeeds.
    let (hlc, clock) = target.next_hlc();
    let op = next_op(target, hlc, batch, known)?
        .seal()
        .map_err(EditError::from)?;
    target.store_local(&op, clock)?;
    Ok(op)
}

/// The op that saves `batch` as the target's next op at `hlc`: seq and previous op from its
/// chain tip, each write replacing the heads it saw (each contact's registers read once).
pub fn next_op<T: EditTarget + ?Sized>(
    target: &T,
    hlc: Hlc,
    batch: &Batch,
    known: Option<(ContactId, &ContactRegisters)>,
) -> Result<Op, T::Error> {
    let author = target.author();
    let tip = target.own_tip();
    let mut writes = Vec::new();
    for (contact, changes) in batch.contacts() {
        let read;
        let registers = match known {
            Some((id, registers)) if id == *contact => registers,
            _ => {
                read = target.contact_registers(contact)?;
                &read
            }
        };
        let planned = crate::replay::plan_contact(*contact, changes, |path| {
            Ok::<_, PlanError>(
                registers
                    .get(path)
                    .map_or_else(Vec::new, |(_, heads)| heads.head_ops()),
            )
        })
        .map_err(EditError::from)?;
        writes.extend(planned);
    }
    if writes.is_empty() {
        return Err(EditError::Plan(PlanError::Empty).into());
    }
    Ok(Op {
        author,
        seq: tip.map_or(0, |t| t.seq) + 1,
        prev: tip.map(|t| t.op),
        hlc,
        writes,
        members: Vec::new(),
    })
}

/// Creates a contact with every field and item it has.
pub fn create<T: EditTarget + ?Sized>(
    target: &mut T,
    contact: &Contact,
) -> Result<SealedOp, T::Error> {
    if !target.contact_registers(&contact.id)?.is_empty() {
        return Err(EditError::Exists(contact.id).into());
    }
    let mut batch = Batch::new();
    batch.create(contact).map_err(EditError::from)?;
    save(target, &batch)
}

/// Edits a visible contact with `f` and saves only what changed (the minimal writes); `None`,
/// saving nothing, when `f` changed nothing.
pub fn edit<T: EditTarget + ?Sized>(
    target: &mut T,
    id: ContactId,
    f: impl FnOnce(&mut Contact),
) -> Result<Option<SealedOp>, T::Error> {
    // The registers are read once: for the contact as it is and for the heads the changed
    // paths replace.
    let (contact, registers) = visible(target, id)?;
    let batch = Batch::edited(&contact, f).map_err(EditError::from)?;
    if batch.is_empty() {
        return Ok(None);
    }
    save_knowing(target, &batch, Some((id, &registers))).map(Some)
}

/// Deletes a visible contact (a tombstone: history is kept and it can be restored).
pub fn delete<T: EditTarget + ?Sized>(target: &mut T, id: ContactId) -> Result<SealedOp, T::Error> {
    let (_, registers) = visible(target, id)?;
    save_knowing(target, Batch::new().delete(id), Some((id, &registers)))
}

/// Restores a deleted contact.
pub fn restore<T: EditTarget + ?Sized>(
    target: &mut T,
    id: ContactId,
) -> Result<SealedOp, T::Error> {
    let registers = target.contact_registers(&id)?;
    if registers.is_empty() {
        return Err(EditError::NotFound(id).into());
    }
    if !view_of(id, &registers).deleted {
        return Err(EditError::NotDeleted(id).into());
    }
    save_knowing(target, Batch::new().restore(id), Some((id, &registers)))
}

/// Settles a path (typically a conflicted one) with `value`, which may be any of the
/// alternatives or something new; `None` removes it. The write replaces every head.
pub fn resolve<T: EditTarget + ?Sized>(
    target: &mut T,
    id: ContactId,
    path: Path,
    value: Option<Value>,
) -> Result<SealedOp, T::Error> {
    let registers = target.contact_registers(&id)?;
    if registers.is_empty() {
        return Err(EditError::NotFound(id).into());
    }
    save_knowing(
        target,
        Batch::new().change(id, path, value),
        Some((id, &registers)),
    )
}

/// A visible contact and the registers it was read from (read once).
fn visible<T: EditTarget + ?Sized>(
    target: &T,
    id: ContactId,
) -> Result<(Contact, ContactRegisters), T::Error> {
    let registers = target.contact_registers(&id)?;
    if registers.is_empty() {
        return Err(EditError::NotFound(id).into());
    }
    let view = view_of(id, &registers);
    if view.deleted {
        return Err(EditError::Deleted(id).into());
    }
    Ok((view.contact, registers))
}

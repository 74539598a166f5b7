//! Planning a save: a [`Batch`] of changes to one or more contacts becomes the writes of one op,
//! each write naming the heads it replaces.
//!
//! The rule lives here once and is shared by every replica kind: the in-memory [`Replay`]
//! passes its registers' heads, the sled store passes heads it reads from disk.
//!
//! [`Replay`]: crate::replay::Replay

use std::collections::BTreeMap;

use crate::codec::limits;
use crate::id::{ContactId, OpId};
use crate::model::contact::{diff, Change, Contact, DiffError};
use crate::model::{Path, Value};
use crate::op::Write;

/// Why a set of changes cannot be planned into writes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PlanError {
    /// Two changes for the same path of one contact.
    #[error("contact {contact}: {path} is changed twice in one save")]
    RepeatedPath {
        /// The contact.
        contact: ContactId,
        /// The path.
        path: String,
    },
    /// A value that the path cannot hold.
    #[error("contact {contact}: {path} cannot hold that value")]
    WrongValue {
        /// The contact.
        contact: ContactId,
        /// The path.
        path: String,
    },
    /// More concurrent heads than one write may replace.
    #[error("contact {contact}: {path} has {heads} concurrent values, more than one write may replace ({max})")]
    TooManyHeads {
        /// The contact.
        contact: ContactId,
        /// The path.
        path: String,
        /// How many.
        heads: usize,
        /// The limit.
        max: usize,
    },
    /// The save changes nothing.
    #[error("nothing to save: the batch changes nothing")]
    Empty,
}

/// The changes of one save, by contact. All of them become one op: visible together, everywhere
/// (semantics S7).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Batch {
    contacts: BTreeMap<ContactId, Vec<Change>>,
}

impl Batch {
    /// An empty batch.
    pub fn new() -> Self {
        Self::default()
    }

    /// Creates `contact` with every value it holds.
    pub fn create(&mut self, contact: &Contact) -> Result<&mut Self, DiffError> {
        let changes = contact.to_changes()?;
        self.contacts.entry(contact.id).or_default().extend(changes);
        Ok(self)
    }

    /// Saves the edit from `before` (the visible contact) to `after`: only what differs is
    /// written. An edit that changes nothing adds nothing.
    pub fn edit(&mut self, before: &Contact, after: &Contact) -> Result<&mut Self, DiffError> {
        let changes = diff(before, after)?;
        if !changes.is_empty() {
            self.contacts.entry(after.id).or_default().extend(changes);
        }
        Ok(self)
    }

    /// The batch of an edit made by `f` on a copy of `before` (the visible contact): only what
    /// `f` changed. Empty when it changed nothing. Every replica kind edits through this.
    pub fn edited(before: &Contact, f: impl FnOnce(&mut Contact)) -> Result<Self, DiffError> {
        let mut after = before.clone();
        f(&mut after);
        let mut batch = Self::new();
        batch.edit(before, &after)?;
        Ok(batch)
    }

    /// Deletes a contact (it becomes a tombstone and can be restored).
    pub fn delete(&mut self, contact: ContactId) -> &mut Self {
        self.change(contact, Path::Exists, Some(Value::Bool(false)))
    }

    /// Restores a deleted contact with the values it had.
    pub fn restore(&mut self, contact: ContactId) -> &mut Self {
        self.change(contact, Path::Exists, Some(Value::Bool(true)))
    }

    /// Sets (or with `None` removes) the value at one path; also how a conflict is settled with
    /// a value of the caller's choice, even the visible one.
    pub fn change(&mut self, contact: ContactId, path: Path, value: Option<Value>) -> &mut Self {
        self.contacts
            .entry(contact)
            .or_default()
            .push(Change { path, value });
        self
    }

    /// The changes by contact, in contact order.
    pub fn contacts(&self) -> impl Iterator<Item = (&ContactId, &Vec<Change>)> + '_ {
        self.contacts.iter()
    }

    /// Whether the batch touches no contact.
    pub fn is_empty(&self) -> bool {
        self.contacts.is_empty()
    }
}

/// The writes that make `changes` to `contact`, sorted by path. Each write replaces every head
/// at its path as `heads` reports them (so an edit of a conflicted path settles it), and an
/// `exists` write is added, `true` unless the changes set it, replacing the `exists` heads: an
/// edit made after a delete was seen restores, and a delete made after an edit was seen wins.
pub fn plan_contact<E>(
    contact: ContactId,
    changes: &[Change],
    mut heads: impl FnMut(&Path) -> Result<Vec<OpId>, E>,
) -> Result<Vec<Write>, E>
where
    E: From<PlanError>,
{
    let mut by_path: BTreeMap<&Path, Option<&Value>> = BTreeMap::new();
    for change in changes {
        if !change.path.accepts(change.value.as_ref()) {
            return Err(PlanError::WrongValue {
                contact,
                path: change.path.to_string(),
            }
            .into());
        }
        if by_path
            .insert(&change.path, change.value.as_ref())
            .is_some()
        {
            return Err(PlanError::RepeatedPath {
                contact,
                path: change.path.to_string(),
            }
            .into());
        }
    }
    let exists = Value::Bool(true);
    by_path.entry(&Path::Exists).or_insert(Some(&exists));
    let mut writes = Vec::with_capacity(by_path.len());
    for (path, value) in by_path {
        let mut replaces = heads(path)?;
        replaces.sort_unstable();
        replaces.dedup();
        if replaces.len() > limits::REPLACES_PER_WRITE_MAX {
            return Err(PlanError::TooManyHeads {
                contact,
                path: path.to_string(),
                heads: replaces.len(),
                max: limits::REPLACES_PER_WRITE_MAX,
            }
            .into());
        }
        writes.push(Write {
            contact,
            path: path.clone(),
            value: value.cloned(),
            replaces,
        });
    }
    Ok(writes)
}

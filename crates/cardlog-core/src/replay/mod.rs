//! Deterministic replay: the pure, in-memory materializer that turns a set of ops into contact
//! state, per-field conflicts and per-field history.
//!
//! Ops may be inserted in any order. An op is applied once its dependencies are present: the
//! author's previous op (the hash chain) and every op it names in `replaces`. Until then it waits
//! in a waiting room. Whatever the order, the same set of applied ops gives the same registers
//! (docs/SEMANTICS.md gives the rules; [`Replay::state_bytes`] is the byte-level witness used by
//! the property tests).
//!
//! An op is checked completely before any of it is applied, so a rejected op leaves no trace and
//! an accepted one becomes visible whole (semantics S7).

mod check;
mod plan;
mod register;
mod view;

use std::collections::{BTreeMap, HashMap, VecDeque};

pub use check::{check_op, ChainTip, Missing, OpLookup, Readiness, ReplayError, Summary};
pub use plan::{plan_contact, Batch, PlanError};
pub use register::{Heads, RegisterWrite, WriteKey};
pub use view::{
    contact_view, field_conflict, state_bytes, state_digest, suspects, view_of, write_state,
    ContactRegisters, ContactView, FieldConflict, HistoryEntry, Suspect,
};

use register::Register;

use crate::id::{ContactId, DeviceId, OpId};
use crate::membership::Cutoffs;
use crate::model::Path;
use crate::sealed::SealedOp;

/// An op that was waiting in the waiting room and turned out to be bad once its dependencies
/// arrived. It is dropped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejected {
    /// The op.
    pub op: OpId,
    /// Why.
    pub error: ReplayError,
}

/// What inserting an op did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InsertOutcome {
    /// The op was applied, and with it these previously waiting ops (the op itself first).
    Applied {
        /// Every op applied by this insert, in application order.
        applied: Vec<OpId>,
        /// Waiting ops this insert unblocked that turned out to be invalid.
        rejected: Vec<Rejected>,
    },
    /// The op is already applied; nothing changed.
    Duplicate,
    /// The op waits for a dependency (it is kept and applied when the dependency arrives).
    Waiting {
        /// The first dependency found missing.
        missing: Missing,
    },
}

/// The materializer. See the module docs.
#[derive(Debug, Clone, Default)]
pub struct Replay {
    ops: HashMap<OpId, SealedOp>,
    chains: BTreeMap<DeviceId, Vec<OpId>>,
    order: Vec<OpId>,
    contacts: BTreeMap<ContactId, BTreeMap<Path, Register>>,
    waiting: HashMap<OpId, SealedOp>,
    waiters: HashMap<Missing, Vec<OpId>>,
    /// Which ops are void (docs/SEMANTICS.md, "Removed devices").
    cutoffs: Cutoffs,
}

impl OpLookup for Replay {
    type Error = ReplayError;

    fn contains(&self, op: &OpId) -> Result<bool, ReplayError> {
        Ok(self.ops.contains_key(op))
    }

    fn chain_tip(&self, author: &DeviceId) -> Result<Option<ChainTip>, ReplayError> {
        let Some(chain) = self.chains.get(author) else {
            return Ok(None);
        };
        Ok(chain
            .last()
            .and_then(|id| self.ops.get(id))
            .map(|op| ChainTip {
                seq: chain.len() as u64,
                op: op.id(),
                hlc: op.op().hlc,
            }))
    }

    fn op_at(&self, author: &DeviceId, seq: u64) -> Result<Option<OpId>, ReplayError> {
        Ok(self
            .chains
            .get(author)
            .zip(seq.checked_sub(1).and_then(|i| usize::try_from(i).ok()))
            .and_then(|(chain, i)| chain.get(i))
            .copied())
    }

    fn wrote_at(
        &self,
        op: &OpId,
        contact: &ContactId,
        path: &Path,
    ) -> Result<Option<bool>, ReplayError> {
        Ok(self
            .ops
            .get(op)
            .map(|o| o.op().write_at(*contact, path).is_some()))
    }
}

impl Replay {
    /// An empty replay.
    pub fn new() -> Self {
        Self::default()
    }

    /// Inserts an op: applies it (and any waiting ops it unblocks) if its dependencies are
    /// present, keeps it waiting otherwise. An invalid op is refused and changes nothing.
    pub fn insert(&mut self, op: SealedOp) -> Result<InsertOutcome, ReplayError> {
        let id = op.id();
        match check_op(self, &op)? {
            Readiness::Duplicate => Ok(InsertOutcome::Duplicate),
            Readiness::Missing(missing) => {
                // An op already waiting stays registered under the dependency it waits for.
                if self.waiting.insert(id, op).is_none() {
                    self.waiters.entry(missing).or_default().push(id);
                }
                Ok(InsertOutcome::Waiting { missing })
            }
            Readiness::Ready => {
                self.waiting.remove(&id);
                self.apply(op);
                let mut applied = vec![id];
                let mut rejected = Vec::new();
                self.wake(&mut applied, &mut rejected);
                Ok(InsertOutcome::Applied { applied, rejected })
            }
        }
    }

    /// Applies a checked op.
    fn apply(&mut self, sealed: SealedOp) {
        self.take_effect(&sealed);
        let op = sealed.op();
        let id = sealed.id();
        self.chains.entry(op.author).or_default().push(id);
        self.order.push(id);
        self.ops.insert(id, sealed);
    }

    /// Moves the writes of an applied op into the registers, unless the op is void.
    fn take_effect(&mut self, sealed: &SealedOp) {
        let op = sealed.op();
        if self.cutoffs.voids(&op.author, op.seq) {
            return;
        }
        let id = sealed.id();
        for w in &op.writes {
            self.contacts
                .entry(w.contact)
                .or_default()
                .entry(w.path.clone())
                .or_default()
                .apply(RegisterWrite::of(op, id, w));
        }
    }

    /// Makes the ops of removed devices past their cutoffs void ([`Cutoffs`], from the book's
    /// membership): void ops stay held, and ops replacing their writes still apply, but their
    /// writes take no effect. Changed cutoffs re-derive the registers from the ops held, so
    /// the state is the same whatever order ops and removals came in.
    pub fn set_cutoffs(&mut self, cutoffs: Cutoffs) {
        if cutoffs == self.cutoffs {
            return;
        }
        self.cutoffs = cutoffs;
        self.contacts.clear();
        let order = std::mem::take(&mut self.order);
        for id in &order {
            if let Some(sealed) = self.ops.get(id).cloned() {
                self.take_effect(&sealed);
            }
        }
        self.order = order;
    }

    /// The cutoffs in force.
    pub fn cutoffs(&self) -> &Cutoffs {
        &self.cutoffs
    }

    /// Applies waiting ops whose dependencies are now present, until none is left to wake.
    fn wake(&mut self, applied: &mut Vec<OpId>, rejected: &mut Vec<Rejected>) {
        let mut queue: VecDeque<OpId> = applied.iter().copied().collect();
        while let Some(done) = queue.pop_front() {
            let Some(op) = self.ops.get(&done) else {
                continue;
            };
            let deps = [
                Missing::Chain {
                    author: op.op().author,
                    seq: op.op().seq,
                },
                Missing::Op(done),
            ];
            for dep in deps {
                for waiter in self.waiters.remove(&dep).unwrap_or_default() {
                    let Some(sealed) = self.waiting.remove(&waiter) else {
                        continue;
                    };
                    match check_op(self, &sealed) {
                        Ok(Readiness::Ready) => {
                            self.apply(sealed);
                            applied.push(waiter);
                            queue.push_back(waiter);
                        }
                        Ok(Readiness::Duplicate) => {}
                        Ok(Readiness::Missing(missing)) => {
                            self.waiting.insert(waiter, sealed);
                            self.waiters.entry(missing).or_default().push(waiter);
                        }
                        Err(error) => rejected.push(Rejected { op: waiter, error }),
                    }
                }
            }
        }
    }

    /// The applied op with this id.
    pub fn op(&self, id: &OpId) -> Option<&SealedOp> {
        self.ops.get(id)
    }

    /// Whether the op is applied.
    pub fn contains(&self, id: &OpId) -> bool {
        self.ops.contains_key(id)
    }

    /// Number of applied ops.
    pub fn len(&self) -> usize {
        self.ops.len()
    }

    /// Whether no op is applied.
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    /// Ops waiting for a dependency.
    pub fn waiting(&self) -> impl Iterator<Item = &SealedOp> + '_ {
        self.waiting.values()
    }

    /// One author's applied ops, in seq order.
    pub fn chain(&self, author: &DeviceId) -> impl Iterator<Item = &SealedOp> + '_ {
        self.chains
            .get(author)
            .into_iter()
            .flatten()
            .filter_map(|id| self.ops.get(id))
    }

    /// For each author: the seq and id of its last applied op. Equal summaries mean equal sets
    /// of applied ops (each head hash commits to its author's whole chain).
    pub fn summary(&self) -> Summary {
        self.chains
            .iter()
            .filter_map(|(author, chain)| {
                let tip = chain.last()?;
                Some((
                    *author,
                    ChainTip {
                        seq: chain.len() as u64,
                        op: *tip,
                        hlc: self.ops.get(tip).map(|o| o.op().hlc).unwrap_or_default(),
                    },
                ))
            })
            .collect()
    }

    /// Every applied op in the order it was applied: an order in which each op's dependencies
    /// come before it (what a sync sends).
    pub fn ops_in_order(&self) -> impl Iterator<Item = &SealedOp> + '_ {
        self.order.iter().filter_map(|id| self.ops.get(id))
    }

    /// The applied ops a peer with `summary` lacks, dependencies first.
    pub fn missing_for(&self, summary: &Summary) -> Vec<SealedOp> {
        self.ops_in_order()
            .filter(|op| {
                summary
                    .get(&op.op().author)
                    .is_none_or(|tip| op.op().seq > tip.seq)
            })
            .cloned()
            .collect()
    }

    /// Every register of `contact` with its write count and heads (empty if never written):
    /// what a save plans against, in the shape a store keeps.
    pub fn contact_registers(&self, contact: &ContactId) -> ContactRegisters {
        self.contacts
            .get(contact)
            .map(|registers| {
                registers
                    .iter()
                    .map(|(path, r)| (path.clone(), (r.entries().len() as u64, r.heads().clone())))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The tip of `author`'s chain here, if it has applied any of its ops.
    pub fn tip(&self, author: &DeviceId) -> Option<ChainTip> {
        OpLookup::chain_tip(self, author).ok().flatten()
    }

    /// Whether any op has written this contact.
    pub fn knows(&self, contact: &ContactId) -> bool {
        self.contacts.contains_key(contact)
    }

    /// Every contact id written so far (deleted ones included), in id order.
    pub fn contact_ids(&self) -> impl Iterator<Item = ContactId> + '_ {
        self.contacts.keys().copied()
    }

    /// The contact as apps read it, deleted or not; `None` if no op has written it.
    pub fn contact(&self, id: &ContactId) -> Option<ContactView> {
        let registers = self.contacts.get(id)?;
        Some(view::contact_view(
            *id,
            registers.iter().map(|(path, r)| (path, r.heads())),
        ))
    }

    /// Every contact, in id order; deleted ones only when asked.
    pub fn contacts(&self, include_deleted: bool) -> Vec<ContactView> {
        self.contacts
            .keys()
            .filter_map(|id| self.contact(id))
            .filter(|v| include_deleted || !v.deleted)
            .collect()
    }

    /// Every value the path has had, oldest first (by timestamp, author, op id). Empty if the
    /// path was never written.
    pub fn history(&self, contact: &ContactId, path: &Path) -> Vec<HistoryEntry> {
        self.contacts
            .get(contact)
            .and_then(|r| r.get(path))
            .map(|r| {
                r.entries()
                    .iter()
                    .map(|e| HistoryEntry::of(e, r.heads().is_head(&e.key.op)))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The paths of a contact that have ever been written, in path order.
    pub fn paths(&self, contact: &ContactId) -> Vec<Path> {
        self.contacts
            .get(contact)
            .map(|r| r.keys().cloned().collect())
            .unwrap_or_default()
    }

    /// Every conflicted path of every contact (deleted ones included).
    pub fn conflicts(&self) -> Vec<(ContactId, FieldConflict)> {
        self.contacts
            .iter()
            .flat_map(|(id, registers)| {
                registers
                    .iter()
                    .filter_map(|(path, r)| view::field_conflict(path, r.heads()).map(|c| (*id, c)))
            })
            .collect()
    }

    /// The materialized state as canonical bytes: for every contact and path, the head writes
    /// (key and value) and the number of writes. Two replays with the same applied ops give the
    /// same bytes whatever the order the ops came in; the property tests compare these.
    pub fn state_bytes(&self) -> Vec<u8> {
        view::state_bytes(self.state_rows())
    }

    /// The blake3 hash of [`Replay::state_bytes`], for compact comparison (computed without
    /// holding the bytes).
    pub fn state_digest(&self) -> [u8; 32] {
        view::state_digest(self.state_rows())
    }

    fn state_rows(&self) -> impl Iterator<Item = (ContactId, &Path, &Heads, u64)> {
        self.contacts.iter().flat_map(|(id, registers)| {
            registers
                .iter()
                .map(|(path, r)| (*id, path, r.heads(), r.entries().len() as u64))
        })
    }
}

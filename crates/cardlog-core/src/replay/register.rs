//! One register: the writes at one (contact, path) that are *heads* (not replaced by any other
//! write present), and in the in-memory replay also every write ever made there (history).
//!
//! The rule is a pure function of the set of writes: a write is a head unless another write at
//! the same path names it in `replaces`. Because a write can only name writes that existed when
//! it was made, the writes that replace a given write always arrive after it, so heads can be
//! maintained incrementally in any delivery order with the same result. [`Heads`] is the part
//! a durable store keeps per path; it is all a read needs.

use bincode::{Decode, Encode};

use crate::hlc::Hlc;
use crate::id::{DeviceId, OpId};
use crate::model::Value;
use crate::op::{Op, Write};

/// The total order of writes that decides which concurrent write is visible: hybrid timestamp,
/// then author, then op id. No two distinct writes at one path compare equal (op ids differ).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Encode, Decode)]
pub struct WriteKey {
    /// The writing op's timestamp.
    pub hlc: Hlc,
    /// The writing device.
    pub author: DeviceId,
    /// The writing op.
    pub op: OpId,
}

/// One write as a register remembers it.
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub struct RegisterWrite {
    /// Its place in the order of writes.
    pub key: WriteKey,
    /// The writing op's seq in its author's chain.
    pub seq: u64,
    /// The value; `None` is a removal.
    pub value: Option<Value>,
    /// The writes it replaced.
    pub replaces: Vec<OpId>,
}

impl RegisterWrite {
    /// The write `op` (whose id is `id`) makes with `write`.
    pub fn of(op: &Op, id: OpId, write: &Write) -> Self {
        Self {
            key: WriteKey {
                hlc: op.hlc,
                author: op.author,
                op: id,
            },
            seq: op.seq,
            value: write.value.clone(),
            replaces: write.replaces.clone(),
        }
    }
}

/// The heads of one register, sorted by [`WriteKey`], and the timestamp of its first write.
#[derive(Clone, Debug, Default, PartialEq, Eq, Encode, Decode)]
pub struct Heads {
    first: Option<Hlc>,
    heads: Vec<RegisterWrite>,
}

impl Heads {
    /// Adds a write that is not yet applied here: the writes it replaces stop being heads and it
    /// becomes one (nothing present can replace it yet). The caller applies each write once
    /// (the in-memory register and the store both check their history first).
    pub fn apply(&mut self, write: RegisterWrite) {
        self.first = Some(self.first.map_or(write.key.hlc, |f| f.min(write.key.hlc)));
        self.heads.retain(|h| !write.replaces.contains(&h.key.op));
        if let Err(at) = self.heads.binary_search_by(|h| h.key.cmp(&write.key)) {
            self.heads.insert(at, write);
        }
    }

    /// Heads as a store kept them: `first` and `heads` exactly as [`Heads::first_hlc`] and
    /// [`Heads::iter`] gave them (a store's own encoding reads them back with this; nothing is
    /// checked or reordered, as a decode of the derived encoding checks nothing either).
    pub fn from_parts(first: Option<Hlc>, heads: Vec<RegisterWrite>) -> Self {
        Self { first, heads }
    }

    /// The heads, in [`WriteKey`] order (the last is the visible one).
    pub fn iter(&self) -> impl DoubleEndedIterator<Item = &RegisterWrite> + '_ {
        self.heads.iter()
    }

    /// The visible write: the greatest head.
    pub fn winner(&self) -> Option<&RegisterWrite> {
        self.heads.last()
    }

    /// The visible value (`None` when the path is unset or its winner is a removal).
    pub fn value(&self) -> Option<&Value> {
        self.winner().and_then(|e| e.value.as_ref())
    }

    /// Whether the heads disagree: more than one distinct value (a removal counts as a value).
    pub fn conflicted(&self) -> bool {
        match self.heads.split_first() {
            Some((first, rest)) => rest.iter().any(|h| h.value != first.value),
            None => false,
        }
    }

    /// The op ids of the heads, sorted by id: what a new write at this path replaces.
    pub fn head_ops(&self) -> Vec<OpId> {
        let mut ops: Vec<OpId> = self.heads.iter().map(|h| h.key.op).collect();
        ops.sort_unstable();
        ops
    }

    /// The timestamp of the first write (items are listed by when they were first written).
    pub fn first_hlc(&self) -> Option<Hlc> {
        self.first
    }

    /// Whether `op` is a head here.
    pub fn is_head(&self, op: &OpId) -> bool {
        self.heads.iter().any(|h| &h.key.op == op)
    }
}

/// A register of the in-memory replay: its heads and its whole history.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Register {
    heads: Heads,
    entries: Vec<RegisterWrite>,
}

impl Register {
    /// Adds a write; adding a write already present changes nothing.
    pub(crate) fn apply(&mut self, write: RegisterWrite) {
        let Err(at) = self.entries.binary_search_by(|e| e.key.cmp(&write.key)) else {
            return;
        };
        self.heads.apply(write.clone());
        self.entries.insert(at, write);
    }

    /// Every write, oldest first by [`WriteKey`].
    pub(crate) fn entries(&self) -> &[RegisterWrite] {
        &self.entries
    }

    /// The heads.
    pub(crate) fn heads(&self) -> &Heads {
        &self.heads
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(ms: u64, op: u8, value: &str, replaces: &[u8]) -> RegisterWrite {
        RegisterWrite {
            key: WriteKey {
                hlc: Hlc {
                    wall_ms: ms,
                    counter: 0,
                },
                author: DeviceId([op; 16]),
                op: OpId([op; 32]),
            },
            seq: 1,
            value: Some(Value::Text(value.into())),
            replaces: replaces.iter().map(|b| OpId([*b; 32])).collect(),
        }
    }

    #[test]
    fn replaced_writes_stop_being_heads_in_any_order() {
        let a = write(10, 1, "a", &[]);
        let b = write(20, 2, "b", &[]);
        let c = write(5, 3, "c", &[1, 2]);
        let mut r1 = Register::default();
        for e in [a.clone(), b.clone(), c.clone()] {
            r1.apply(e);
        }
        let mut r2 = Register::default();
        for e in [b, a, c.clone()] {
            r2.apply(e);
        }
        assert_eq!(r1, r2);
        // c replaced both and wins although its timestamp is the oldest: causality, not clocks.
        assert_eq!(r1.heads().value(), c.value.as_ref());
        assert!(!r1.heads().conflicted());
        assert_eq!(r1.entries().len(), 3);
        assert_eq!(
            r1.heads().first_hlc(),
            Some(Hlc {
                wall_ms: 5,
                counter: 0
            })
        );
    }

    #[test]
    fn concurrent_heads_conflict_only_when_values_differ() {
        let mut r = Register::default();
        r.apply(write(10, 1, "same", &[]));
        r.apply(write(20, 2, "same", &[]));
        assert!(!r.heads().conflicted());
        r.apply(write(30, 3, "other", &[]));
        assert!(r.heads().conflicted());
        assert_eq!(r.heads().value(), Some(&Value::Text("other".into())));
        assert_eq!(r.heads().head_ops().len(), 3);
    }

    #[test]
    fn applying_twice_changes_nothing() {
        let mut r = Register::default();
        r.apply(write(10, 1, "a", &[]));
        let once = r.clone();
        r.apply(write(10, 1, "a", &[]));
        assert_eq!(r, once);
    }
}

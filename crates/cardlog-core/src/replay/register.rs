//! One register: every write ever made at one (contact, path), and which of them are *heads*
//! (not replaced by any other write present).
//!
//! The rule is a pure function of the set of writes: a write is a head unless another write at
//! the same path names it in `replaces`. Because a write can only name writes that existed when
//! it was made, the writes that replace a given write always arrive after it, so heads can be
//! maintained incrementally in any delivery order with the same result.

use bincode::{Decode, Encode};

use crate::hlc::Hlc;
use crate::id::{OpId, ReplicaId};
use crate::model::Value;

/// The total order of writes that decides which concurrent write is visible: hybrid timestamp,
/// then author, then op id. No two distinct writes at one path compare equal (op ids differ).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Encode, Decode)]
pub struct WriteKey {
    /// The writing op's timestamp.
    pub hlc: Hlc,
    /// The writing device.
    pub author: ReplicaId,
    /// The writing op.
    pub op: OpId,
}

/// One write as a register remembers it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Entry {
    pub(crate) key: WriteKey,
    pub(crate) seq: u64,
    pub(crate) value: Option<Value>,
    pub(crate) replaces: Vec<OpId>,
}

/// All writes at one path, sorted by [`WriteKey`], and the keys of the heads, sorted.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Register {
    entries: Vec<Entry>,
    heads: Vec<WriteKey>,
}

impl Register {
    /// Adds a write. Its replaced writes stop being heads; it becomes one (nothing present can
    /// replace it yet, see the module docs). Adding a write already present changes nothing.
    pub(crate) fn apply(&mut self, entry: Entry) {
        let Err(at) = self.entries.binary_search_by(|e| e.key.cmp(&entry.key)) else {
            return;
        };
        self.heads.retain(|h| !entry.replaces.contains(&h.op));
        if let Err(h) = self.heads.binary_search(&entry.key) {
            self.heads.insert(h, entry.key);
        }
        self.entries.insert(at, entry);
    }

    /// Every write, oldest first by [`WriteKey`].
    pub(crate) fn entries(&self) -> &[Entry] {
        &self.entries
    }

    /// The unreplaced writes, in [`WriteKey`] order (the last is the visible one).
    pub(crate) fn heads(&self) -> impl DoubleEndedIterator<Item = &Entry> + '_ {
        self.heads.iter().filter_map(|k| self.entry(k))
    }

    /// The visible write: the greatest head.
    pub(crate) fn winner(&self) -> Option<&Entry> {
        self.heads.last().and_then(|k| self.entry(k))
    }

    /// The visible value (`None` when the path is unset or its winner is a removal).
    pub(crate) fn value(&self) -> Option<&Value> {
        self.winner().and_then(|e| e.value.as_ref())
    }

    /// Whether the heads disagree: more than one distinct value (a removal counts as a value).
    pub(crate) fn conflicted(&self) -> bool {
        let mut heads = self.heads();
        match heads.next() {
            Some(first) => heads.any(|h| h.value != first.value),
            None => false,
        }
    }

    /// The op ids of the heads, sorted by id: what a new write at this path replaces.
    pub(crate) fn head_ops(&self) -> Vec<OpId> {
        let mut ops: Vec<OpId> = self.heads.iter().map(|k| k.op).collect();
        ops.sort_unstable();
        ops
    }

    /// The timestamp of the oldest write (items are listed by when they were first written).
    pub(crate) fn first_hlc(&self) -> Option<Hlc> {
        self.entries.first().map(|e| e.key.hlc)
    }

    /// Whether `op` is a head here.
    pub(crate) fn is_head(&self, op: &OpId) -> bool {
        self.heads.iter().any(|k| &k.op == op)
    }

    fn entry(&self, key: &WriteKey) -> Option<&Entry> {
        self.entries
            .binary_search_by(|e| e.key.cmp(key))
            .ok()
            .and_then(|i| self.entries.get(i))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(ms: u64, op: u8, value: &str, replaces: &[u8]) -> Entry {
        Entry {
            key: WriteKey {
                hlc: Hlc {
                    wall_ms: ms,
                    counter: 0,
                },
                author: ReplicaId([op; 16]),
                op: OpId([op; 32]),
            },
            seq: 1,
            value: Some(Value::Text(value.into())),
            replaces: replaces.iter().map(|b| OpId([*b; 32])).collect(),
        }
    }

    #[test]
    fn replaced_writes_stop_being_heads_in_any_order() {
        let a = entry(10, 1, "a", &[]);
        let b = entry(20, 2, "b", &[]);
        let c = entry(5, 3, "c", &[1, 2]);
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
        assert_eq!(r1.value(), c.value.as_ref());
        assert!(!r1.conflicted());
        assert_eq!(r1.entries().len(), 3);
    }

    #[test]
    fn concurrent_heads_conflict_only_when_values_differ() {
        let mut r = Register::default();
        r.apply(entry(10, 1, "same", &[]));
        r.apply(entry(20, 2, "same", &[]));
        assert!(!r.conflicted());
        r.apply(entry(30, 3, "other", &[]));
        assert!(r.conflicted());
        assert_eq!(r.value(), Some(&Value::Text("other".into())));
        assert_eq!(r.head_ops().len(), 3);
    }

    #[test]
    fn applying_twice_changes_nothing() {
        let mut r = Register::default();
        r.apply(entry(10, 1, "a", &[]));
        let once = r.clone();
        r.apply(entry(10, 1, "a", &[]));
        assert_eq!(r, once);
    }
}

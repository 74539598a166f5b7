//! Register changes held back from sled, and reads that see them.
//!
//! Every apply appends its ops to the op log (the truth, synced by a flush), but the sled side
//! (register changes, author heads, the registers' watermark) is collected here, later writes
//! to a key replacing earlier ones, and written as one batch every [`HELD_OPS_MAX`] ops,
//! before a rebuild, on `Store::settle` and when the store is dropped. The threshold is checked
//! before an apply writes anything, so failing to write them fails that apply whole, and they
//! stay held and read until written.
//!
//! Why: a sled batch costs sled two buffer writes, each with its own `sync_file_range`, on top
//! of the log's `fdatasync`; one batch per save halved the durable save rate.
//!
//! Each batch is written after a sync of the log and carries the watermark of exactly the ops
//! it covers, so sled is never ahead of the log, and a crash in between is the usual case open
//! already handles: the log's committed records past the watermark are replayed. Reads merge
//! these held-back values over sled's, so nothing reads stale state.

use std::collections::BTreeMap;
use std::iter::Peekable;

use super::kv::{Kv, KvBatch, KvIter, KvResult};

/// Ops whose register changes may wait before they are written to sled.
pub(crate) const HELD_OPS_MAX: u64 = 1024;

/// Writes waiting for sled, by key; `None` removes the key.
#[derive(Debug, Default)]
pub(crate) struct HeldBack {
    writes: BTreeMap<Vec<u8>, Option<Vec<u8>>>,
    ops: u64,
}

impl HeldBack {
    /// Adds the sled side of `ops` applied ops (later writes to a key win).
    pub(crate) fn add(&mut self, batch: KvBatch, ops: u64) {
        for (key, value) in batch.into_writes() {
            self.writes.insert(key, value);
        }
        self.ops += ops;
    }

    /// Ops waiting.
    pub(crate) fn ops(&self) -> u64 {
        self.ops
    }

    /// Whether nothing waits.
    pub(crate) fn is_empty(&self) -> bool {
        self.writes.is_empty()
    }

    /// Everything waiting, as one batch (kept until [`HeldBack::clear`]: if writing it fails,
    /// reads still see it).
    pub(crate) fn batch(&self) -> KvBatch {
        let mut batch = KvBatch::default();
        for (key, value) in &self.writes {
            match value {
                Some(v) => batch.insert(key.clone(), v.clone()),
                None => batch.remove(key.clone()),
            }
        }
        batch
    }

    /// Forgets everything waiting (once it is written).
    pub(crate) fn clear(&mut self) {
        self.writes.clear();
        self.ops = 0;
    }

    /// The value at `key` as the store sees it: held back, else sled's.
    pub(crate) fn get(&self, kv: &dyn Kv, key: &[u8]) -> KvResult<Option<Vec<u8>>> {
        match self.writes.get(key) {
            Some(value) => Ok(value.clone()),
            None => kv.get(key),
        }
    }

    /// Every pair whose key starts with `prefix`, in key order, held-back values over sled's.
    pub(crate) fn scan_prefix<'a>(&'a self, kv: &'a dyn Kv, prefix: &[u8]) -> KvIter<'a> {
        self.scan_from(kv, prefix, prefix)
    }

    /// Every pair whose key starts with `prefix` and is not less than `from`, in key order,
    /// held-back values over sled's.
    pub(crate) fn scan_from<'a>(
        &'a self,
        kv: &'a dyn Kv,
        prefix: &[u8],
        from: &[u8],
    ) -> KvIter<'a> {
        let stored = kv.scan_from(prefix, from);
        if self.writes.is_empty() {
            return stored;
        }
        let owned = prefix.to_vec();
        let held = self
            .writes
            .range(from.max(prefix).to_vec()..)
            .take_while(move |(k, _)| k.starts_with(&owned));
        Box::new(Merge {
            stored: stored.peekable(),
            held: held.peekable(),
        })
    }
}

/// Two key-ordered streams merged, the held one winning on equal keys.
struct Merge<'a, P: Iterator<Item = (&'a Vec<u8>, &'a Option<Vec<u8>>)>> {
    stored: Peekable<KvIter<'a>>,
    held: Peekable<P>,
}

impl<'a, P: Iterator<Item = (&'a Vec<u8>, &'a Option<Vec<u8>>)>> Iterator for Merge<'a, P> {
    type Item = KvResult<(Vec<u8>, Vec<u8>)>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            let take_held = match (self.stored.peek(), self.held.peek()) {
                (None, None) => return None,
                (Some(Err(_)), _) => return self.stored.next(),
                (Some(Ok(_)), None) => return self.stored.next(),
                (None, Some(_)) => true,
                (Some(Ok((stored_key, _))), Some((held_key, _))) => {
                    if stored_key.as_slice() == held_key.as_slice() {
                        // The held-back write replaces (or removes) the stored pair.
                        self.stored.next();
                        true
                    } else {
                        held_key.as_slice() < stored_key.as_slice()
                    }
                }
            };
            if !take_held {
                return self.stored.next();
            }
            match self.held.next() {
                Some((key, Some(value))) => return Some(Ok((key.clone(), value.clone()))),
                // A removed key: nothing to yield, look further.
                Some((_, None)) => continue,
                None => return None,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::state::SledKv;

    fn pairs(iter: KvIter<'_>) -> Vec<(Vec<u8>, Vec<u8>)> {
        iter.collect::<KvResult<Vec<_>>>().unwrap()
    }

    #[test]
    fn reads_merge_held_writes_over_stored_ones() {
        let dir = tempfile::tempdir().unwrap();
        let kv = SledKv::open(dir.path(), 1 << 20).unwrap();
        let mut stored = KvBatch::default();
        for k in [b"a1", b"a3", b"a5", b"b1"] {
            stored.insert(k.to_vec(), b"old".to_vec());
        }
        kv.apply(stored).unwrap();

        let mut held = HeldBack::default();
        let mut batch = KvBatch::default();
        batch.insert(b"a0".to_vec(), b"new".to_vec()); // before every stored key
        batch.insert(b"a3".to_vec(), b"new".to_vec()); // replaces a stored value
        batch.remove(b"a5".to_vec()); // removes a stored key
        batch.insert(b"a9".to_vec(), b"new".to_vec()); // after every stored key
        batch.remove(b"a7".to_vec()); // removes a key never stored
        held.add(batch, 2);
        let mut later = KvBatch::default();
        later.insert(b"a0".to_vec(), b"newer".to_vec()); // a later write wins
        held.add(later, 1);
        assert_eq!(held.ops(), 3);

        let v = |s: &str| s.as_bytes().to_vec();
        assert_eq!(
            pairs(held.scan_prefix(&kv, b"a")),
            vec![
                (v("a0"), v("newer")),
                (v("a1"), v("old")),
                (v("a3"), v("new")),
                (v("a9"), v("new")),
            ]
        );
        assert_eq!(
            pairs(held.scan_prefix(&kv, b"b")),
            vec![(v("b1"), v("old"))]
        );
        assert_eq!(held.get(&kv, b"a5").unwrap(), None);
        assert_eq!(held.get(&kv, b"a3").unwrap(), Some(v("new")));
        assert_eq!(held.get(&kv, b"a1").unwrap(), Some(v("old")));

        // Written as one batch, sled then reads as the merge did.
        kv.apply(held.batch()).unwrap();
        held.clear();
        assert!(held.is_empty() && held.ops() == 0);
        assert_eq!(
            pairs(kv.scan_prefix(b"a")),
            vec![
                (v("a0"), v("newer")),
                (v("a1"), v("old")),
                (v("a3"), v("new")),
                (v("a9"), v("new")),
            ]
        );
    }

    proptest::proptest! {
        /// Merged reads equal a model: sled's pairs with every held write applied in order.
        #[test]
        fn merged_reads_match_a_model(
            stored in proptest::collection::btree_map(
                proptest::collection::vec(0u8..4, 1..4), proptest::collection::vec(0u8..255, 0..3), 0..20),
            writes in proptest::collection::vec(
                (proptest::collection::vec(0u8..4, 1..4),
                 proptest::option::of(proptest::collection::vec(0u8..255, 0..3))), 0..30),
            prefix in proptest::collection::vec(0u8..4, 0..3),
        ) {
            let dir = tempfile::tempdir().unwrap();
            let kv = SledKv::open(dir.path(), 1 << 20).unwrap();
            let mut batch = KvBatch::default();
            for (k, v) in &stored {
                batch.insert(k.clone(), v.clone());
            }
            kv.apply(batch).unwrap();
            let mut model = stored.clone();
            let mut held = HeldBack::default();
            for (k, v) in &writes {
                let mut batch = KvBatch::default();
                match v {
                    Some(v) => {
                        batch.insert(k.clone(), v.clone());
                        model.insert(k.clone(), v.clone());
                    }
                    None => {
                        batch.remove(k.clone());
                        model.remove(k);
                    }
                }
                held.add(batch, 1);
            }
            let want: Vec<_> = model
                .iter()
                .filter(|(k, _)| k.starts_with(&prefix))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            proptest::prop_assert_eq!(pairs(held.scan_prefix(&kv, &prefix)), want.clone());
            for (k, _) in &writes {
                proptest::prop_assert_eq!(held.get(&kv, k).unwrap(), model.get(k).cloned());
            }
            kv.apply(held.batch()).unwrap();
            proptest::prop_assert_eq!(pairs(kv.scan_prefix(&prefix)), want);
        }
    }
}

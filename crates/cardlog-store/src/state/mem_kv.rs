//! [`MemKv`]: a key space in memory, behind the same [`Kv`] interface as sled. What a store
//! opened read-only replays its op log into (`store/salvage.rs`): such an open writes nothing
//! to disk, so it works on a read-only mount, a full disk, or beside a database sled cannot
//! open.

use std::collections::BTreeMap;
use std::sync::RwLock;

use super::kv::{Kv, KvBatch, KvError, KvIter, KvResult};

/// Ordered keys in memory; gone when dropped. `flush` makes nothing durable.
#[derive(Debug, Default)]
pub struct MemKv {
    pairs: RwLock<BTreeMap<Vec<u8>, Vec<u8>>>,
}

impl MemKv {
    /// A key space holding `pairs`.
    pub fn with(pairs: impl IntoIterator<Item = (Vec<u8>, Vec<u8>)>) -> Self {
        Self {
            pairs: RwLock::new(pairs.into_iter().collect()),
        }
    }
}

/// A lock a panicking thread left poisoned: the map itself is whole (every write is one
/// `BTreeMap` call), so it is reported rather than trusted or panicked on.
fn poisoned<T>() -> KvResult<T> {
    Err(KvError::EngineBug(
        "the in-memory key space's lock was poisoned by a panic".into(),
    ))
}

impl Kv for MemKv {
    fn get(&self, key: &[u8]) -> KvResult<Option<Vec<u8>>> {
        match self.pairs.read() {
            Ok(pairs) => Ok(pairs.get(key).cloned()),
            Err(_) => poisoned(),
        }
    }

    /// Copies the matching pairs out first: the lock is not held while the caller iterates.
    fn scan_from<'a>(&'a self, prefix: &[u8], from: &[u8]) -> KvIter<'a> {
        let Ok(pairs) = self.pairs.read() else {
            return Box::new(std::iter::once(poisoned()));
        };
        let start = from.max(prefix).to_vec();
        let found: Vec<KvResult<(Vec<u8>, Vec<u8>)>> = pairs
            .range(start..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .map(|(k, v)| Ok((k.clone(), v.clone())))
            .collect();
        Box::new(found.into_iter())
    }

    fn apply(&self, batch: KvBatch) -> KvResult<()> {
        let Ok(mut pairs) = self.pairs.write() else {
            return poisoned();
        };
        for (k, v) in batch.into_writes() {
            match v {
                Some(v) => pairs.insert(k, v),
                None => pairs.remove(&k),
            };
        }
        Ok(())
    }

    fn flush(&self) -> KvResult<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn batches_apply_in_order_and_scans_keep_to_their_prefix() {
        let kv = MemKv::default();
        let mut b = KvBatch::default();
        for k in [&b"a1"[..], b"b1", b"b2", b"b3", b"c1"] {
            b.insert(k.to_vec(), k.to_vec());
        }
        b.remove(b"b2".to_vec());
        b.insert(b"b2".to_vec(), b"again".to_vec());
        b.remove(b"c1".to_vec());
        kv.apply(b).unwrap();
        let keys = |it: KvIter<'_>| -> Vec<Vec<u8>> { it.map(|r| r.unwrap().0).collect() };
        assert_eq!(keys(kv.scan_prefix(b"b")), [&b"b1"[..], b"b2", b"b3"]);
        assert_eq!(keys(kv.scan_from(b"b", b"b2")), [&b"b2"[..], b"b3"]);
        assert_eq!(keys(kv.scan_from(b"b", b"a")), [&b"b1"[..], b"b2", b"b3"]);
        assert_eq!(kv.get(b"b2").unwrap(), Some(b"again".to_vec()));
        assert_eq!(kv.get(b"c1").unwrap(), None);
    }
}

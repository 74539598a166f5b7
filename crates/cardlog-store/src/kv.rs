//! The narrow storage interface the store is written against, its sled implementation, and a
//! fault-injecting wrapper for tests.
//!
//! Everything the store keeps lives in one ordered key space. A [`KvBatch`] is applied
//! atomically, also across a crash (sled seals a batch in its log as one unit), which is what
//! makes each op's log entry, index entries and state changes appear together or not at all.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// A failure of the storage engine (I/O, corruption it detected, a full disk…).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("storage engine: {0}")]
pub struct KvError(pub String);

/// Result of a storage call.
pub type KvResult<T> = Result<T, KvError>;

/// Key/value pairs in key order.
pub type KvIter<'a> = Box<dyn Iterator<Item = KvResult<(Vec<u8>, Vec<u8>)>> + 'a>;

/// Inserts and removals applied together.
#[derive(Debug, Default, Clone)]
pub struct KvBatch {
    writes: Vec<(Vec<u8>, Option<Vec<u8>>)>,
}

impl KvBatch {
    /// Sets `key` to `value`.
    pub fn insert(&mut self, key: Vec<u8>, value: Vec<u8>) {
        self.writes.push((key, Some(value)));
    }

    /// Removes `key`.
    pub fn remove(&mut self, key: Vec<u8>) {
        self.writes.push((key, None));
    }

    /// Number of writes.
    pub fn len(&self) -> usize {
        self.writes.len()
    }

    /// Whether the batch is empty.
    pub fn is_empty(&self) -> bool {
        self.writes.is_empty()
    }

    /// The writes, in the order they were made.
    pub fn into_writes(self) -> Vec<(Vec<u8>, Option<Vec<u8>>)> {
        self.writes
    }
}

/// The storage interface: ordered keys, atomic batches, explicit flush.
pub trait Kv: Send + Sync {
    /// The value at `key`.
    fn get(&self, key: &[u8]) -> KvResult<Option<Vec<u8>>>;
    /// Every pair whose key starts with `prefix`, in key order. An error is the last item.
    fn scan_prefix<'a>(&'a self, prefix: &[u8]) -> KvIter<'a>;
    /// Pairs with `start <= key < end`, in key order. An error is the last item.
    fn range<'a>(&'a self, start: &[u8], end: &[u8]) -> KvIter<'a>;
    /// The last pair whose key starts with `prefix`.
    fn last_with_prefix(&self, prefix: &[u8]) -> KvResult<Option<(Vec<u8>, Vec<u8>)>>;
    /// Applies every write of the batch, atomically (also across a crash).
    fn apply(&self, batch: KvBatch) -> KvResult<()>;
    /// Makes every applied batch durable, also against a power cut (not only a killed
    /// process).
    fn flush(&self) -> KvResult<()>;
}

/// How many times (10 ms apart) an open retries a lock still held by a just-closed handle.
const LOCK_RETRIES: u32 = 200;

/// sled 0.34 as the engine.
pub struct SledKv {
    db: sled::Db,
    /// sled's data file, kept open to `fsync` it: sled's own flush only calls
    /// `sync_file_range`, which neither flushes the disk's write cache nor the file's metadata,
    /// so it survives a killed process but not a power cut.
    data: std::fs::File,
}

/// sled's error in words a user can act on. sled's own text for damage is
/// `Read corrupted data at file offset None backtrace ()`, and a damaged `conf` file reads as
/// an unsupported sled version, so both are said plainly here.
fn sled_err(e: sled::Error) -> KvError {
    match e {
        sled::Error::Corruption { at: Some(at), .. } => KvError(format!(
            "database damaged: corrupted data (sled position {at})"
        )),
        sled::Error::Corruption { at: None, .. } => {
            KvError("database damaged: sled found corrupted data".into())
        }
        sled::Error::Unsupported(why) => KvError(format!(
            "database damaged or written by another sled version: sled says \"{why}\""
        )),
        other => KvError(other.to_string()),
    }
}

fn pair(r: sled::Result<(sled::IVec, sled::IVec)>) -> KvResult<(Vec<u8>, Vec<u8>)> {
    r.map(|(k, v)| (k.to_vec(), v.to_vec())).map_err(sled_err)
}

/// A sled iterator that ends after its first error. sled's own iterator returns the same error
/// again on every call once it hits a damaged page, so a caller that counts or skips errors
/// (`count()`, `filter_map(Result::ok)`) would never finish.
fn scan<'a>(iter: sled::Iter) -> KvIter<'a> {
    let mut failed = false;
    Box::new(iter.map_while(move |r| {
        if failed {
            return None;
        }
        let r = pair(r);
        failed = r.is_err();
        Some(r)
    }))
}

impl SledKv {
    /// Opens (creating if needed) a sled database in `dir` with a page cache of `cache_bytes`.
    ///
    /// sled releases its file lock a moment after the last handle of a database is dropped, so
    /// an open right after a close in the same process may find the lock still held: that case
    /// is retried for up to two seconds before it is reported.
    pub fn open(dir: &Path, cache_bytes: u64) -> KvResult<Self> {
        let mut attempts = 0;
        loop {
            let opened = sled::Config::new()
                .path(dir)
                .cache_capacity(cache_bytes)
                .open();
            match opened {
                Ok(db) => {
                    let file = dir.join("db");
                    let data = std::fs::File::open(&file)
                        .map_err(|e| KvError(format!("{}: {e}", file.display())))?;
                    return Ok(Self { db, data });
                }
                // sled reports the held lock as an `Other` I/O error naming it.
                Err(sled::Error::Io(e))
                    if attempts < LOCK_RETRIES
                        && e.to_string().contains("could not acquire lock") =>
                {
                    attempts += 1;
                    std::thread::sleep(std::time::Duration::from_millis(10));
                }
                Err(e) => return Err(sled_err(e)),
            }
        }
    }
}

impl Kv for SledKv {
    fn get(&self, key: &[u8]) -> KvResult<Option<Vec<u8>>> {
        self.db
            .get(key)
            .map(|v| v.map(|v| v.to_vec()))
            .map_err(sled_err)
    }

    fn scan_prefix<'a>(&'a self, prefix: &[u8]) -> KvIter<'a> {
        scan(self.db.scan_prefix(prefix))
    }

    fn range<'a>(&'a self, start: &[u8], end: &[u8]) -> KvIter<'a> {
        scan(self.db.range(start.to_vec()..end.to_vec()))
    }

    fn last_with_prefix(&self, prefix: &[u8]) -> KvResult<Option<(Vec<u8>, Vec<u8>)>> {
        self.db
            .scan_prefix(prefix)
            .next_back()
            .transpose()
            .map(|o| o.map(|(k, v)| (k.to_vec(), v.to_vec())))
            .map_err(sled_err)
    }

    fn apply(&self, batch: KvBatch) -> KvResult<()> {
        let mut b = sled::Batch::default();
        for (k, v) in batch.writes {
            match v {
                Some(v) => b.insert(k, v),
                None => b.remove(k),
            }
        }
        self.db.apply_batch(b).map_err(sled_err)
    }

    fn flush(&self) -> KvResult<()> {
        self.db.flush().map_err(sled_err)?;
        self.data
            .sync_data()
            .map_err(|e| KvError(format!("fsync of the data file: {e}")))
    }
}

/// Wraps a [`Kv`] and fails every write (`apply`, `flush`) after a given number of successful
/// ones: the fault-injection point for tests of the store's error handling.
pub struct FaultyKv<K> {
    inner: K,
    writes_left: Arc<AtomicU64>,
}

impl<K: Kv> FaultyKv<K> {
    /// Lets `writes_ok` writes through, then fails every write.
    pub fn new(inner: K, writes_ok: u64) -> Self {
        Self::sharing(inner, Arc::new(AtomicU64::new(writes_ok)))
    }

    /// Lets writes through while `budget` (shared with other faulty parts of one store) lasts.
    pub fn sharing(inner: K, budget: Arc<AtomicU64>) -> Self {
        Self {
            inner,
            writes_left: budget,
        }
    }

    fn take(&self) -> KvResult<()> {
        self.writes_left
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .map(|_| ())
            .map_err(|_| KvError("injected write failure".into()))
    }
}

impl<K: Kv> Kv for FaultyKv<K> {
    fn get(&self, key: &[u8]) -> KvResult<Option<Vec<u8>>> {
        self.inner.get(key)
    }

    fn scan_prefix<'a>(&'a self, prefix: &[u8]) -> KvIter<'a> {
        self.inner.scan_prefix(prefix)
    }

    fn range<'a>(&'a self, start: &[u8], end: &[u8]) -> KvIter<'a> {
        self.inner.range(start, end)
    }

    fn last_with_prefix(&self, prefix: &[u8]) -> KvResult<Option<(Vec<u8>, Vec<u8>)>> {
        self.inner.last_with_prefix(prefix)
    }

    fn apply(&self, batch: KvBatch) -> KvResult<()> {
        self.take()?;
        self.inner.apply(batch)
    }

    fn flush(&self) -> KvResult<()> {
        self.take()?;
        self.inner.flush()
    }
}

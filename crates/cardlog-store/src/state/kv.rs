//! The narrow storage interface the store is written against ([`Kv`]), its error, and the
//! wrappers that are not an engine: [`FaultyKv`] (fails writes on cue, for tests) and
//! `ClosedKv` (what a store holds once its database is closed). sled itself is in `sled_kv.rs`.
//!
//! What the store keeps in sled lives in one ordered key space: point reads, prefix scans and
//! atomic batches are all it asks. A [`KvBatch`] is applied atomically, also across a crash
//! (sled seals a batch in its log as one unit), which is what makes the register changes,
//! author chain tips and watermark of a batch of ops appear together or not at all. One
//! exception, by design: the name index is derived state, and `SledKv` keeps it in a
//! database of its own, so a failed write or a crash can leave the index apart from the rest.
//! It is then never trusted: `SledKv` reads it as absent (unmarked) and refuses writes to it
//! until the store is reopened, and the open empties it so the store builds it again.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// A failure of the storage engine. Branch on the variant, never on the text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KvError {
    /// Another handle (another process, or one in this process not yet released) holds the
    /// database's lock.
    #[error("storage engine: could not acquire lock on {}: another handle holds it", .0.display())]
    Locked(PathBuf),
    /// The engine found its files damaged (or written by another version of it).
    #[error("storage engine: {0}")]
    Damaged(String),
    /// A file system call failed (`kind` is the OS's: a full disk is
    /// [`std::io::ErrorKind::StorageFull`]).
    #[error("storage engine: {message}")]
    Io {
        /// What kind of failure the OS reported.
        kind: std::io::ErrorKind,
        /// The OS's words, with the file.
        message: String,
    },
    /// The engine reported a failure of its own (sled's "reportable bug").
    #[error("storage engine: {0}")]
    EngineBug(String),
    /// The database was closed.
    #[error("storage engine: the database is closed")]
    Closed,
    /// A failure [`FaultyKv`] injected.
    #[error("storage engine: injected write failure")]
    Injected,
    /// A write to the name index was refused: a failed write left it out of step with the
    /// rest, or the open could not bring it back in step. Reopening the store rebuilds it.
    #[error("storage engine: the name index is out of step with the registers until the store is reopened")]
    IndexOutOfStep,
}

impl KvError {
    /// What failed, without the "storage engine" prefix (a poisoned store's reason).
    pub fn reason(&self) -> String {
        match self {
            KvError::Locked(dir) => format!(
                "could not acquire lock on {}: another handle holds it",
                dir.display()
            ),
            KvError::Damaged(what) | KvError::EngineBug(what) => what.clone(),
            KvError::Io { message, .. } => message.clone(),
            KvError::Closed => "the database is closed".into(),
            KvError::Injected => "injected write failure".into(),
            KvError::IndexOutOfStep => {
                "the name index is out of step with the registers until the store is reopened"
                    .into()
            }
        }
    }

    /// The OS's failure of a call on `path`.
    pub fn io(path: &std::path::Path, e: &std::io::Error) -> Self {
        KvError::Io {
            kind: e.kind(),
            message: format!("{}: {e}", path.display()),
        }
    }
}

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
    /// Every pair whose key starts with `prefix` and is not less than `from`, in key order.
    /// An error is the last item.
    fn scan_from<'a>(&'a self, prefix: &[u8], from: &[u8]) -> KvIter<'a>;
    /// Every pair whose key starts with `prefix`, in key order. An error is the last item.
    fn scan_prefix<'a>(&'a self, prefix: &[u8]) -> KvIter<'a> {
        self.scan_from(prefix, prefix)
    }
    /// Applies every write of the batch, atomically (also across a crash; but see the
    /// module's docs for the name index).
    fn apply(&self, batch: KvBatch) -> KvResult<()>;
    /// Makes every applied batch durable, also against a power cut (not only a killed
    /// process).
    fn flush(&self) -> KvResult<()>;
    /// Closes the database, first leaving it so that the next open has little to recover when
    /// this session wrote much. The default just closes.
    fn close_checkpointed(self: Box<Self>) -> KvResult<()> {
        Ok(())
    }
    /// Gives back, while open, what a close would (a journal compacts as it would at its
    /// close): for a store left idle that stays open. The default does nothing.
    fn rest(&self) -> KvResult<()> {
        Ok(())
    }
    /// The page cache it was opened with, to open it again alike
    /// ([`crate::Store::reopen_if_poisoned`]); `None` for a database without one.
    fn cache_bytes(&self) -> Option<u64> {
        None
    }
}

/// A database already closed: every call fails. What a store holds while it closes; it
/// remembers the page cache the database had, to open it again alike.
pub(crate) struct ClosedKv(pub(crate) Option<u64>);

impl ClosedKv {
    fn closed<T>() -> KvResult<T> {
        Err(KvError::Closed)
    }
}

impl Kv for ClosedKv {
    fn cache_bytes(&self) -> Option<u64> {
        self.0
    }

    fn get(&self, _: &[u8]) -> KvResult<Option<Vec<u8>>> {
        Self::closed()
    }

    fn scan_from<'a>(&'a self, _: &[u8], _: &[u8]) -> KvIter<'a> {
        Box::new(std::iter::once(Self::closed()))
    }

    fn apply(&self, _: KvBatch) -> KvResult<()> {
        Self::closed()
    }

    fn flush(&self) -> KvResult<()> {
        Self::closed()
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
            .map_err(|_| KvError::Injected)
    }
}

impl<K: Kv> Kv for FaultyKv<K> {
    fn get(&self, key: &[u8]) -> KvResult<Option<Vec<u8>>> {
        self.inner.get(key)
    }

    fn scan_from<'a>(&'a self, prefix: &[u8], from: &[u8]) -> KvIter<'a> {
        self.inner.scan_from(prefix, from)
    }

    fn apply(&self, batch: KvBatch) -> KvResult<()> {
        self.take()?;
        self.inner.apply(batch)
    }

    fn flush(&self) -> KvResult<()> {
        self.take()?;
        self.inner.flush()
    }

    fn close_checkpointed(self: Box<Self>) -> KvResult<()> {
        Box::new(self.inner).close_checkpointed()
    }

    fn cache_bytes(&self) -> Option<u64> {
        self.inner.cache_bytes()
    }
}

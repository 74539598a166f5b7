//! sled 0.34.7 behind [`Kv`], and every workaround sled needs, in this one file: its page
//! cache set (its default is 1 GiB), its damage and lock errors turned into [`KvError`]
//! variants, torn snapshot files a killed open left cleared before it opens (its issue #1527),
//! an `fsync` of its data file on flush (its own flush is only `sync_file_range`), and a
//! checkpointing close (it snapshots its page table only while opening).

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use super::kv::{Kv, KvBatch, KvError, KvIter, KvResult};
use crate::store::CACHE_BYTES_MIN;

/// Bytes (keys and values) written in one session from which closing checkpoints sled (see
/// [`SledKv::close_checkpointed`]): below it, what the next open recovers costs a few
/// milliseconds at most.
pub const CHECKPOINT_BYTES_MIN: u64 = 4 << 20;

/// How many times (10 ms apart) an open retries a lock still held by a just-closed handle.
const LOCK_RETRIES: u32 = 200;

/// sled 0.34 as the engine.
pub struct SledKv {
    db: sled::Db,
    /// sled's data file, kept open to `fsync` it: sled's own flush only calls
    /// `sync_file_range`, which neither flushes the disk's write cache nor the file's metadata,
    /// so it survives a killed process but not a power cut.
    data: std::fs::File,
    /// Where the database is and its cache size, to open it again when checkpointing.
    dir: std::path::PathBuf,
    cache_bytes: u64,
    /// Bytes of keys and values written (inserted or removed) since this handle opened.
    bytes_written: AtomicU64,
}

/// sled's error in words a user can act on. sled's own text for damage is
/// `Read corrupted data at file offset None backtrace ()`, and a damaged `conf` file reads as
/// an unsupported sled version, so both are said plainly here.
fn sled_err(e: sled::Error) -> KvError {
    match e {
        sled::Error::Corruption { at: Some(at), .. } => KvError::Damaged(format!(
            "database damaged: corrupted data (sled position {at})"
        )),
        sled::Error::Corruption { at: None, .. } => {
            KvError::Damaged("database damaged: sled found corrupted data".into())
        }
        sled::Error::Unsupported(why) => KvError::Damaged(format!(
            "database damaged or written by another sled version: sled says \"{why}\""
        )),
        sled::Error::Io(e) => KvError::Io {
            kind: e.kind(),
            message: format!("IO error: {e}"),
        },
        other => KvError::EngineBug(other.to_string()),
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

/// Why one attempt to open sled failed.
enum Opening {
    /// Another handle holds the database's lock (seen by our own check of it).
    Locked,
    /// sled failed with an I/O error of the kind it uses for a held lock: retried.
    MaybeLocked(KvError),
    /// Anything else.
    Failed(KvError),
}

/// What became of an attempt to clear torn snapshots before sled opens.
enum Cleared {
    /// Done (or nothing to do).
    Done,
    /// Another handle holds the database's lock: it may be writing a snapshot right now.
    Locked,
}

/// Removes the snapshot files a killed sled left half written.
///
/// sled 0.34.7 writes the snapshot it takes while opening a database to
/// `snap.<lsn>.generating`, syncs it, then renames it to `snap.<lsn>`. Its reader, though, lists
/// `.generating` files among the snapshots and reads the one whose name sorts last, which is the
/// unfinished one. A process killed while an open was writing it therefore leaves a database
/// sled refuses as corrupted (its issue #1527), although nothing it relied on is damaged: the
/// previous snapshot and the log are intact, and the open that died had changed nothing else.
///
/// So, before sled opens, every `.generating` file that fails sled's own check (a trailer of the
/// length and the CRC-32 of the bytes before it) is removed. A complete one is left for sled
/// (after a power cut its rename may be what was lost). This runs under sled's own lock on the
/// `db` file, so a snapshot another process is writing right now is never touched.
fn clear_torn_snapshots(dir: &Path) -> KvResult<Cleared> {
    let fail = |what: &Path, e: std::io::Error| KvError::io(what, &e);
    let lock_path = dir.join("db");
    let lock = match std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&lock_path)
    {
        Ok(file) => file,
        // No database yet, so no snapshot either.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Cleared::Done),
        Err(e) => return Err(fail(&lock_path, e)),
    };
    match lock.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => return Ok(Cleared::Locked),
        // No file locks here, so sled takes none either: nothing to coordinate with.
        Err(std::fs::TryLockError::Error(e)) if e.kind() == std::io::ErrorKind::Unsupported => {}
        Err(std::fs::TryLockError::Error(e)) => return Err(fail(&lock_path, e)),
    }
    let entries = std::fs::read_dir(dir).map_err(|e| fail(dir, e))?;
    for entry in entries {
        let path = entry.map_err(|e| fail(dir, e))?.path();
        let is_generating = path
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with("snap.") && n.ends_with(".generating"));
        if !is_generating {
            continue;
        }
        let torn = |e: std::io::Error| KvError::Io {
            kind: e.kind(),
            message: format!(
                "{}: a sled snapshot a killed open may have left half written: {e}",
                path.display()
            ),
        };
        let bytes = std::fs::read(&path).map_err(torn)?;
        if !snapshot_is_whole(&bytes) {
            std::fs::remove_file(&path).map_err(torn)?;
        }
    }
    // Dropping the file releases the lock; sled takes it again as it opens.
    drop(lock);
    Ok(Cleared::Done)
}

/// Whether another handle holds sled's lock on the database in `dir` (the `db` file's flock,
/// which sled takes for as long as a database is open).
pub(crate) fn lock_is_held(dir: &Path) -> bool {
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(dir.join("db"))
        .is_ok_and(|file| matches!(file.try_lock(), Err(std::fs::TryLockError::WouldBlock)))
}

/// Whether `bytes` pass sled 0.34.7's check of a snapshot file: they end in an 8-byte length and
/// the little-endian CRC-32 of everything before that length.
fn snapshot_is_whole(bytes: &[u8]) -> bool {
    let Some(body_len) = bytes.len().checked_sub(12).filter(|&n| n > 0) else {
        return false;
    };
    let (body, trailer) = bytes.split_at(body_len);
    let Some(crc) = trailer.get(8..12).and_then(|c| <[u8; 4]>::try_from(c).ok()) else {
        return false;
    };
    crc32fast::hash(body) == u32::from_le_bytes(crc)
}

impl SledKv {
    /// Opens (creating if needed) a sled database in `dir` with a page cache of `cache_bytes`,
    /// raised to [`CACHE_BYTES_MIN`] when smaller.
    ///
    /// sled releases its file lock a moment after the last handle of a database is dropped, so
    /// an open right after a close in the same process may find the lock still held: that case
    /// is retried for up to two seconds before it is reported. Snapshot files a killed process
    /// left half written are removed first (see `clear_torn_snapshots`).
    pub fn open(dir: &Path, cache_bytes: u64) -> KvResult<Self> {
        let cache_bytes = cache_bytes.max(CACHE_BYTES_MIN);
        let mut attempts = 0;
        loop {
            let opened = match clear_torn_snapshots(dir)? {
                Cleared::Locked => Err(Opening::Locked),
                Cleared::Done => sled::Config::new()
                    .path(dir)
                    .cache_capacity(cache_bytes)
                    .open()
                    .map_err(|e| match e {
                        // sled reports a held lock only as an I/O error of kind `Other` (its
                        // words name the lock). Such an error may be a handle just closed that
                        // lets go a moment later, so it is retried; whether the lock is what
                        // failed is asked of the lock itself, never read from the words.
                        sled::Error::Io(io) if io.kind() == std::io::ErrorKind::Other => {
                            Opening::MaybeLocked(sled_err(sled::Error::Io(io)))
                        }
                        other => Opening::Failed(sled_err(other)),
                    }),
            };
            match opened {
                Ok(db) => {
                    let file = dir.join("db");
                    let data = std::fs::File::open(&file).map_err(|e| KvError::io(&file, &e))?;
                    return Ok(Self {
                        db,
                        data,
                        dir: dir.to_path_buf(),
                        cache_bytes,
                        bytes_written: AtomicU64::new(0),
                    });
                }
                Err(Opening::Locked | Opening::MaybeLocked(_)) if attempts < LOCK_RETRIES => {
                    attempts += 1;
                    std::thread::sleep(std::time::Duration::from_millis(10));
                }
                Err(Opening::Locked) => return Err(KvError::Locked(dir.join("db"))),
                Err(Opening::MaybeLocked(_)) if lock_is_held(dir) => {
                    return Err(KvError::Locked(dir.join("db")));
                }
                Err(Opening::MaybeLocked(e) | Opening::Failed(e)) => return Err(e),
            }
        }
    }
}

impl Kv for SledKv {
    fn cache_bytes(&self) -> Option<u64> {
        Some(self.cache_bytes)
    }

    fn get(&self, key: &[u8]) -> KvResult<Option<Vec<u8>>> {
        self.db
            .get(key)
            .map(|v| v.map(|v| v.to_vec()))
            .map_err(sled_err)
    }

    fn scan_prefix<'a>(&'a self, prefix: &[u8]) -> KvIter<'a> {
        scan(self.db.scan_prefix(prefix))
    }

    fn scan_from<'a>(&'a self, prefix: &[u8], from: &[u8]) -> KvIter<'a> {
        let prefix = prefix.to_vec();
        let inner = scan(self.db.range(from.max(&prefix[..]).to_vec()..));
        Box::new(inner.take_while(move |r| match r {
            Ok((k, _)) => k.starts_with(&prefix),
            Err(_) => true,
        }))
    }

    fn apply(&self, batch: KvBatch) -> KvResult<()> {
        let writes = batch.into_writes();
        let bytes: usize = writes
            .iter()
            .map(|(k, v)| k.len() + v.as_ref().map_or(0, Vec::len))
            .sum();
        self.bytes_written
            .fetch_add(bytes as u64, Ordering::Relaxed);
        let mut b = sled::Batch::default();
        for (k, v) in writes {
            match v {
                Some(v) => b.insert(k, v),
                None => b.remove(k),
            }
        }
        self.db.apply_batch(b).map_err(sled_err)
    }

    fn flush(&self) -> KvResult<()> {
        self.db.flush().map_err(sled_err)?;
        self.data.sync_data().map_err(|e| KvError::Io {
            kind: e.kind(),
            message: format!("fsync of the data file: {e}"),
        })
    }

    /// sled 0.34.7 writes a snapshot of its page table only while opening a database (its
    /// `snapshot_after_ops` is ignored), and an open recovers everything logged since the last
    /// snapshot: after a session of many writes, the next open would replay all of them (tens
    /// of milliseconds for a hundred thousand ops). So a handle that wrote at least
    /// [`CHECKPOINT_BYTES_MIN`] closes, opens the database again (sled recovers and writes
    /// its snapshot) and closes that: the cost moves from the next start to this close. A
    /// process killed meanwhile leaves what any kill during an open leaves (a torn snapshot
    /// file, cleared by the next open).
    fn close_checkpointed(self: Box<Self>) -> KvResult<()> {
        let Self {
            db,
            data,
            dir,
            cache_bytes,
            bytes_written,
        } = *self;
        if bytes_written.into_inner() < CHECKPOINT_BYTES_MIN {
            return Ok(());
        }
        db.flush().map_err(sled_err)?;
        drop(db);
        drop(data);
        // sled would create a database where none is: never where the store was removed.
        if !dir.join("db").is_file() {
            return Ok(());
        }
        drop(Self::open(&dir, cache_bytes)?);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]

    use super::*;

    /// Bytes framed as sled 0.34.7 frames a snapshot: body, 8-byte length, CRC-32.
    fn framed(body: &[u8]) -> Vec<u8> {
        let mut out = body.to_vec();
        out.extend_from_slice(&u64::try_from(body.len()).unwrap().to_le_bytes());
        out.extend_from_slice(&crc32fast::hash(body).to_le_bytes());
        out
    }

    #[test]
    fn a_whole_snapshot_passes_and_any_cut_or_crc_covered_flip_fails() {
        let whole = framed(b"some snapshot bytes");
        assert!(snapshot_is_whole(&whole));
        for cut in 0..whole.len() {
            assert!(!snapshot_is_whole(&whole[..cut]), "cut to {cut} bytes");
        }
        for at in 0..whole.len() {
            let mut flipped = whole.clone();
            flipped[at] ^= 0x10;
            // The length field is not covered by the CRC (sled does not check it either).
            let in_length = (whole.len() - 12..whole.len() - 4).contains(&at);
            assert_eq!(snapshot_is_whole(&flipped), in_length, "byte {at} flipped");
        }
    }

    #[test]
    fn torn_snapshots_are_left_alone_while_another_handle_holds_the_lock() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        let held = SledKv::open(dir, 1 << 20).unwrap();
        let torn = dir.join("snap.7FFFFFFFFFFFFFFF.generating");
        std::fs::write(&torn, b"half a snap").unwrap();
        assert!(matches!(clear_torn_snapshots(dir), Ok(Cleared::Locked)));
        assert!(torn.exists());
        drop(held);
        // Once the lock is free (sled lets go of it a moment after the drop), it goes.
        let mut cleared = false;
        for _ in 0..LOCK_RETRIES {
            if matches!(clear_torn_snapshots(dir), Ok(Cleared::Done)) {
                cleared = true;
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        assert!(cleared && !torn.exists());
    }

    /// The finished snapshot files sled has written in `dir` (`snap.<lsn>`), sorted.
    fn snapshots(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with("snap.") && !n.ends_with(".generating"))
            .collect();
        names.sort();
        names
    }

    /// Bytes of one key and value written by [`write_and_close`].
    const PAIR_BYTES: u64 = 9 + 1024;

    /// A handle that wrote `keys` keys of 1 KiB values, closed with `close_checkpointed`.
    fn write_and_close(dir: &Path, keys: u64, round: u8) {
        let kv = SledKv::open(dir, 1 << 20).unwrap();
        let mut batch = KvBatch::default();
        for i in 0..keys {
            batch.insert([&[round][..], &i.to_be_bytes()].concat(), vec![round; 1024]);
        }
        kv.apply(batch).unwrap();
        Box::new(kv).close_checkpointed().unwrap();
    }

    #[test]
    fn closing_after_many_writes_leaves_nothing_to_recover_and_after_few_does() {
        // sled writes a snapshot while opening when it recovered something since the last
        // one: an open right after a checkpointing close adds none, after a plain close one.
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        let open_close = || drop(SledKv::open(dir, 1 << 20).unwrap());
        write_and_close(dir, 10, 1);
        let before = snapshots(dir);
        open_close();
        let after = snapshots(dir);
        assert_ne!(after, before, "below the threshold the next open recovers");

        let enough = CHECKPOINT_BYTES_MIN.div_ceil(PAIR_BYTES);
        write_and_close(dir, enough, 2);
        let before = snapshots(dir);
        open_close();
        assert_eq!(snapshots(dir), before, "nothing left to recover");

        let kv = SledKv::open(dir, 1 << 20).unwrap();
        for (round, keys) in [(1u8, 10u64), (2, enough)] {
            assert_eq!(
                kv.scan_prefix(&[round]).count() as u64,
                keys,
                "round {round}"
            );
        }
        let last = [&[2u8][..], &(enough - 1).to_be_bytes()].concat();
        assert_eq!(kv.get(&last).unwrap(), Some(vec![2; 1024]));
    }
}

//! sled 0.34.7 behind [`Kv`], and every workaround sled needs, in this one file: its page
//! cache set (its default is 1 GiB), its damage and lock errors turned into [`KvError`]
//! variants, torn snapshot files a killed open left cleared before it opens (its issue #1527),
//! an `fsync` of its data file on flush (its own flush is only `sync_file_range`), and a
//! checkpointing close (it snapshots its page table only while opening).

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use super::keys;
use super::kv::{Kv, KvBatch, KvError, KvIter, KvResult};
use crate::store::CACHE_BYTES_MIN;

/// Bytes (keys and values) written in one session from which closing checkpoints sled (see
/// [`SledKv::close_checkpointed`]): below it, what the next open recovers costs a few
/// milliseconds at most.
pub const CHECKPOINT_BYTES_MIN: u64 = 4 << 20;

/// How many times (10 ms apart) an open retries a lock still held by a just-closed handle.
const LOCK_RETRIES: u32 = 200;

/// One sled 0.34 database.
struct SledDb {
    db: sled::Db,
    /// sled's data file, kept open to `fsync` it: sled's own flush only calls
    /// `sync_file_range`, which neither flushes the disk's write cache nor the file's metadata,
    /// so it survives a killed process but not a power cut.
    data: std::fs::File,
    /// Where the database is and its cache size, to open it again when checkpointing.
    dir: std::path::PathBuf,
    cache_bytes: u64,
    /// Its segment size (fixed when it was created: sled refuses another).
    segment_bytes: usize,
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

impl SledDb {
    /// Opens (creating if needed) a sled database in `dir` with a page cache of `cache_bytes`,
    /// raised to [`CACHE_BYTES_MIN`] when smaller.
    ///
    /// sled releases its file lock a moment after the last handle of a database is dropped, so
    /// an open right after a close in the same process may find the lock still held: that case
    /// is retried for up to two seconds before it is reported. Snapshot files a killed process
    /// left half written are removed first (see `clear_torn_snapshots`).
    pub fn open(dir: &Path, cache_bytes: u64, segment_bytes: usize) -> KvResult<Self> {
        let cache_bytes = cache_bytes.max(CACHE_BYTES_MIN);
        let mut attempts = 0;
        loop {
            let opened = match clear_torn_snapshots(dir)? {
                Cleared::Locked => Err(Opening::Locked),
                Cleared::Done => sled::Config::new()
                    .path(dir)
                    .cache_capacity(cache_bytes)
                    .segment_size(segment_bytes)
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
                        segment_bytes,
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

impl Kv for SledDb {
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
            segment_bytes,
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
        drop(Self::open(&dir, cache_bytes, segment_bytes)?);
        Ok(())
    }
}

/// The directory, inside the main database's, of the database that holds the name index.
pub const NAMES_DIR: &str = "names";

/// The main database's segment size: sled's default.
pub const MAIN_SEGMENT_BYTES: usize = 512 << 10;

/// The names database's segment size. sled allocates its file a segment at a time and zeroes
/// its free segments at every open; the index is small (about 70 bytes per contact), so its
/// segments are too (a relay's book, which lists nothing, kept 0.5 MB more with 512 KiB).
pub const NAMES_SEGMENT_BYTES: usize = 64 << 10;

/// The key (outside the store's key space: its keys start with a letter) under which both
/// databases keep the number of the last batch that wrote to the name index.
const STEP: &[u8] = b"\xffsplit-step";

/// Keys removed per batch while the main database gives up a name index it kept before the
/// split, or the names database is emptied.
const CLEAR_CHUNK: usize = 16_384;

/// Whether `key` belongs to the name index (its entries and its mark), kept in the names
/// database.
fn in_names(key: &[u8]) -> bool {
    matches!(
        key.first(),
        Some(&keys::NAME | &keys::NAME_OF | &keys::WIDTH)
    ) || key == keys::meta::NAMES
}

/// sled 0.34 as the engine: one key space kept in two sled databases, the name index (`n`,
/// `N`, its width counts `w` and its mark `mnames`) in one of its own (`db/names/`), everything else in the main
/// one (`db/`).
///
/// Why two: sled 0.34.7 reclaims the space of a segment only once half of it is dead, and
/// small entries rewritten beside each batch of contact registers keep the segments they
/// were written to half alive long after the registers in them died. With the name index's
/// entries in the same database, the compare workload's store kept twice its bytes and saved
/// at half the rate (`benches/src/bin/sled_space.rs` shows it with sled alone: 49 MB without
/// such writes, 160 MB with 200 per batch, 95 MB with them in another tree, 51 + 2 MB in
/// another database).
///
/// The name index is derived from the registers, so the two databases need not be written
/// atomically together, only never be trusted out of step: every batch that writes to the
/// index writes the same batch number (`STEP`) to both, the names database first. sled keeps
/// each database's batches whole and in order, so after a crash the two hold the same number
/// only if the main database kept exactly the index batches the names database kept (batches
/// that leave the index alone do not change any entry it derives). Otherwise the open empties
/// the names database: the index and its mark are gone, and the store builds it again
/// (`Store::ensure_name_index`). So is one beside a main database holding index keys (written
/// before the split, or by a build from before it: that build keeps its own index there, not
/// this one). A names database that fails to open or read once the main one is open (its lock
/// is the store's) is made anew.
///
/// While a handle runs, the index is *lost* when a batch's index half was written and the
/// rest failed, or when the open could not write what brings the two back in step (a full
/// disk): reads then see no index (no mark: pages read every contact) and batches that write
/// to it are refused with [`KvError::IndexOutOfStep`] until the store is reopened, whose open
/// finds the two out of step.
pub struct SledKv {
    main: SledDb,
    names: SledDb,
    /// The last batch number written to the index; held while a batch is applied, so both
    /// databases take the index batches in the same order.
    step: std::sync::Mutex<u64>,
    /// The index is out of step with the rest (see above).
    lost: std::sync::atomic::AtomicBool,
    /// Tests: the main database's half of the next batch with an index half fails.
    #[cfg(test)]
    fail_main_once: std::sync::atomic::AtomicBool,
}

fn step_of(db: &SledDb) -> KvResult<u64> {
    Ok(match db.get(STEP)? {
        Some(v) => u64::from_be_bytes(
            <[u8; 8]>::try_from(v.as_slice())
                .map_err(|_| KvError::Damaged("database damaged: the batch number".into()))?,
        ),
        None => 0,
    })
}

/// Removes every key of `db` that `which` picks, a chunk at a time.
fn remove_all(db: &SledDb, prefix: &[u8], which: impl Fn(&[u8]) -> bool) -> KvResult<()> {
    loop {
        let mut chunk = KvBatch::default();
        for pair in db.scan_prefix(prefix) {
            let (k, _) = pair?;
            if which(&k) {
                chunk.remove(k);
                if chunk.len() >= CLEAR_CHUNK {
                    break;
                }
            }
        }
        if chunk.is_empty() {
            return Ok(());
        }
        db.apply(chunk)?;
    }
}

impl SledKv {
    /// Opens (creating if needed) the store's sled databases in `dir` (the main one) and
    /// `dir/names/`, with a page cache of `cache_bytes` for the main one and a quarter of it
    /// for the names one, each raised to [`CACHE_BYTES_MIN`] when smaller.
    ///
    /// The names database is emptied when it is out of step with the main one (see
    /// [`SledKv`]) or damaged, and a main database written before the split gives up the
    /// name index it kept (the store builds it again in the names database).
    pub fn open(dir: &Path, cache_bytes: u64) -> KvResult<Self> {
        let names_dir = dir.join(NAMES_DIR);
        let open_names = || SledDb::open(&names_dir, cache_bytes / 4, NAMES_SEGMENT_BYTES);
        // Opened side by side: most of an open is sled's own fixed cost (its threads, its
        // snapshot, zeroing its free segments), about as much for the small database as for
        // the large one. The names one on the calling thread: what its open frees stays in
        // that thread's malloc arena, where the index scans that follow (a list, a page) can
        // use it again (2.7 MB less at 100,000 contacts; docs/PERFORMANCE.md).
        let (main, names) = std::thread::scope(|scope| {
            let main = scope.spawn(|| SledDb::open(dir, cache_bytes, MAIN_SEGMENT_BYTES));
            // sled may panic on damaged files: a names database that does so is made anew
            // below, as one that fails to open.
            let names = std::panic::catch_unwind(std::panic::AssertUnwindSafe(open_names))
                .unwrap_or_else(|_| Err(KvError::EngineBug("the names database panicked".into())));
            (main.join(), names)
        });
        let main =
            main.unwrap_or_else(|_| Err(KvError::EngineBug("the main database panicked".into())))?;
        // A database written before the split (or by a build from before it, which builds an
        // index of its own there and leaves this one behind) keeps an index among the rest.
        let prefixes = [&[keys::NAME][..], &[keys::NAME_OF], keys::meta::NAMES];
        let mut behind = false;
        for prefix in prefixes {
            if let Some(first) = main.scan_prefix(prefix).next() {
                behind |= in_names(&first?.0);
            }
        }
        let step = step_of(&main)?;
        // Made anew only now that the main database is open: its lock is the store's, so no
        // other handle is using the one removed.
        let anew = || {
            std::fs::remove_dir_all(&names_dir).map_err(|e| KvError::io(&names_dir, &e))?;
            open_names()
        };
        let (names, in_step) = match names {
            Err(KvError::Locked(at)) => return Err(KvError::Locked(at)),
            Ok(names) => match step_of(&names) {
                Ok(at) => (names, !behind && at == step),
                Err(_) => {
                    drop(names);
                    (anew()?, false)
                }
            },
            Err(_) => (anew()?, false),
        };
        let kv = Self {
            main,
            names,
            step: std::sync::Mutex::new(step),
            lost: std::sync::atomic::AtomicBool::new(false),
            #[cfg(test)]
            fail_main_once: std::sync::atomic::AtomicBool::new(false),
        };
        if !in_step {
            // Best effort: an open that cannot write (a full disk, a store reopened to keep
            // reads going) still opens, its index lost until the next open.
            let emptied = remove_all(&kv.names, &[], |_| true).and_then(|()| {
                let mut mark = KvBatch::default();
                mark.insert(STEP.to_vec(), step.to_be_bytes().to_vec());
                kv.names.apply(mark)?;
                kv.names.flush()
            });
            let cleared = emptied.and_then(|()| {
                prefixes
                    .iter()
                    .filter(|_| behind)
                    .try_for_each(|prefix| remove_all(&kv.main, prefix, in_names))
            });
            kv.lost.store(cleared.is_err(), Ordering::SeqCst);
        }
        Ok(kv)
    }

    /// Whether `key` reads as absent: it is the index's and the index is lost.
    fn hidden(&self, key: &[u8]) -> bool {
        in_names(key) && self.lost.load(Ordering::SeqCst)
    }
}

/// Opens the main database in `dir` alone, as it is: no names database, nothing brought in
/// step. For reading what a damaged store's database still gives (`store/salvage.rs`).
pub(crate) fn open_main_alone(dir: &Path, cache_bytes: u64) -> KvResult<impl Kv> {
    SledDb::open(dir, cache_bytes, MAIN_SEGMENT_BYTES)
}

impl Kv for SledKv {
    fn cache_bytes(&self) -> Option<u64> {
        self.main.cache_bytes()
    }

    fn get(&self, key: &[u8]) -> KvResult<Option<Vec<u8>>> {
        if self.hidden(key) {
            Ok(None)
        } else if in_names(key) {
            self.names.get(key)
        } else {
            self.main.get(key)
        }
    }

    fn scan_from<'a>(&'a self, prefix: &[u8], from: &[u8]) -> KvIter<'a> {
        let outside = |r: &KvResult<(Vec<u8>, Vec<u8>)>| !matches!(r, Ok((k, _)) if k == STEP);
        // A prefix whose keys all live on one side scans that side alone (the contacts'
        // scans, the index's pages); only `m` (meta, with the index's mark) and the whole
        // key space need both.
        let lost = self.lost.load(Ordering::SeqCst);
        let (main_too, names_too) = match prefix.first() {
            Some(&keys::NAME | &keys::NAME_OF | &keys::WIDTH) => (false, !lost),
            Some(&keys::META) | None => (true, !lost),
            Some(_) => (true, false),
        };
        match (main_too, names_too) {
            (false, false) => Box::new(std::iter::empty()),
            (true, false) => Box::new(self.main.scan_from(prefix, from).filter(outside)),
            (false, true) => Box::new(self.names.scan_from(prefix, from).filter(outside)),
            (true, true) => Box::new(Merged {
                a: self.main.scan_from(prefix, from).filter(outside).peekable(),
                b: self
                    .names
                    .scan_from(prefix, from)
                    .filter(outside)
                    .peekable(),
                failed: false,
            }),
        }
    }

    fn apply(&self, batch: KvBatch) -> KvResult<()> {
        let mut main = KvBatch::default();
        let mut names = KvBatch::default();
        for (k, v) in batch.into_writes() {
            let part = if in_names(&k) { &mut names } else { &mut main };
            match v {
                Some(v) => part.insert(k, v),
                None => part.remove(k),
            }
        }
        let mut step = self
            .step
            .lock()
            .map_err(|_| KvError::EngineBug("a batch panicked while it was applied".into()))?;
        if names.is_empty() {
            return if main.is_empty() {
                Ok(())
            } else {
                self.main.apply(main)
            };
        }
        if self.lost.load(Ordering::SeqCst) {
            return Err(KvError::IndexOutOfStep);
        }
        *step += 1;
        let number = step.to_be_bytes().to_vec();
        names.insert(STEP.to_vec(), number.clone());
        main.insert(STEP.to_vec(), number);
        self.names.apply(names)?;
        #[cfg(test)]
        if self.fail_main_once.swap(false, Ordering::SeqCst) {
            self.lost.store(true, Ordering::SeqCst);
            return Err(KvError::Injected);
        }
        self.main.apply(main).inspect_err(|_| {
            // The index's half is in, the rest is not: never trusted again by this handle.
            self.lost.store(true, Ordering::SeqCst);
        })
    }

    fn flush(&self) -> KvResult<()> {
        self.names.flush()?;
        self.main.flush()
    }

    fn close_checkpointed(self: Box<Self>) -> KvResult<()> {
        let Self { main, names, .. } = *self;
        Box::new(names).close_checkpointed()?;
        Box::new(main).close_checkpointed()
    }
}

/// Two key-ordered scans as one (no key is in both); like every scan, it ends after its
/// first error.
struct Merged<A: Iterator, B: Iterator> {
    a: std::iter::Peekable<A>,
    b: std::iter::Peekable<B>,
    failed: bool,
}

impl<A, B> Iterator for Merged<A, B>
where
    A: Iterator<Item = KvResult<(Vec<u8>, Vec<u8>)>>,
    B: Iterator<Item = KvResult<(Vec<u8>, Vec<u8>)>>,
{
    type Item = KvResult<(Vec<u8>, Vec<u8>)>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed {
            return None;
        }
        let a_first = match (self.a.peek(), self.b.peek()) {
            (None, None) => return None,
            (Some(_), None) | (Some(Err(_)), _) => true,
            (None, Some(_)) | (_, Some(Err(_))) => false,
            (Some(Ok((ka, _))), Some(Ok((kb, _)))) => ka <= kb,
        };
        let item = if a_first {
            self.a.next()
        } else {
            self.b.next()
        };
        self.failed = matches!(item, Some(Err(_)));
        item
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

    fn pairs(kv: &dyn Kv, prefix: &[u8]) -> Vec<Vec<u8>> {
        kv.scan_prefix(prefix).map(|r| r.unwrap().0).collect()
    }

    fn write(kv: &dyn Kv, keys: &[&[u8]]) {
        let mut batch = KvBatch::default();
        for k in keys {
            batch.insert(k.to_vec(), b"v".to_vec());
        }
        kv.apply(batch).unwrap();
        kv.flush().unwrap();
    }

    #[test]
    fn the_name_index_goes_to_its_own_database_and_scans_see_one_key_space() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        let kv = SledKv::open(dir, 1 << 20).unwrap();
        write(
            &kv,
            &[b"cx", b"mformat", b"mnames", b"nada", b"Nx", b"a1", b"mz"],
        );
        assert_eq!(kv.get(b"mnames").unwrap(), Some(b"v".to_vec()));
        assert_eq!(kv.names.get(b"nada").unwrap(), Some(b"v".to_vec()));
        assert_eq!(kv.main.get(b"nada").unwrap(), None);
        assert_eq!(kv.main.get(b"cx").unwrap(), Some(b"v".to_vec()));
        let all: Vec<&[u8]> = vec![b"Nx", b"a1", b"cx", b"mformat", b"mnames", b"mz", b"nada"];
        assert_eq!(pairs(&kv, &[]), all);
        assert_eq!(pairs(&kv, b"m"), [&b"mformat"[..], b"mnames", b"mz"]);
        let from: Vec<Vec<u8>> = kv.scan_from(b"m", b"mn").map(|r| r.unwrap().0).collect();
        assert_eq!(from, [&b"mnames"[..], b"mz"]);
        // Both databases took the one index batch.
        assert_eq!(
            (step_of(&kv.main).unwrap(), step_of(&kv.names).unwrap()),
            (1, 1)
        );
        write(&kv, &[b"cy"]);
        assert_eq!(
            step_of(&kv.main).unwrap(),
            1,
            "a batch without index entries"
        );
    }

    #[test]
    fn a_names_database_out_of_step_is_emptied_and_the_rest_kept() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        let kv = SledKv::open(dir, 1 << 20).unwrap();
        write(&kv, &[b"cx", b"nada", b"mnames"]);
        write(&kv, &[b"cy", b"nbob"]);
        drop(kv);
        // The names database kept one index batch fewer than the main one (a crash).
        let names = SledDb::open(&dir.join(NAMES_DIR), 1 << 20, NAMES_SEGMENT_BYTES).unwrap();
        let mut back = KvBatch::default();
        back.insert(STEP.to_vec(), 1u64.to_be_bytes().to_vec());
        back.remove(b"nbob".to_vec());
        names.apply(back).unwrap();
        names.flush().unwrap();
        drop(names);
        let kv = SledKv::open(dir, 1 << 20).unwrap();
        assert_eq!(pairs(&kv, &[]), [&b"cx"[..], b"cy"]);
        assert_eq!(step_of(&kv.names).unwrap(), 2);
        // In step again: what is written next stays.
        write(&kv, &[b"nada"]);
        drop(kv);
        let kv = SledKv::open(dir, 1 << 20).unwrap();
        assert_eq!(pairs(&kv, b"n"), [b"nada"]);
    }

    #[test]
    fn an_index_a_build_from_before_the_split_wrote_empties_this_one() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        let kv = SledKv::open(dir, 1 << 20).unwrap();
        write(&kv, &[b"cx", b"nada", b"mnames"]);
        drop(kv);
        // An older build wrote its own index in the main database (and a register).
        let old = SledDb::open(dir, 1 << 20, MAIN_SEGMENT_BYTES).unwrap();
        write(&old, &[b"cy", b"nbob", b"mnames"]);
        drop(old);
        let kv = SledKv::open(dir, 1 << 20).unwrap();
        assert_eq!(pairs(&kv, &[]), [&b"cx"[..], b"cy"]);
    }

    #[test]
    fn a_database_from_before_the_split_gives_up_its_index_and_a_damaged_names_one_is_made_anew() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        let old = SledDb::open(dir, 1 << 20, MAIN_SEGMENT_BYTES).unwrap();
        write(&old, &[b"cx", b"mformat", b"mnames", b"nada", b"Nx", b"zz"]);
        drop(old);
        let kv = SledKv::open(dir, 1 << 20).unwrap();
        assert_eq!(pairs(&kv, &[]), [&b"cx"[..], b"mformat", b"zz"]);
        assert_eq!(pairs(&kv.main, &[]), [&b"cx"[..], b"mformat", b"zz"]);
        write(&kv, &[b"nada"]);
        drop(kv);
        std::fs::write(dir.join(NAMES_DIR).join("conf"), b"not sled's").unwrap();
        let kv = SledKv::open(dir, 1 << 20).unwrap();
        assert_eq!(pairs(&kv, &[]), [&b"cx"[..], b"mformat", b"zz"]);
    }

    #[test]
    fn a_batch_whose_index_half_alone_is_written_loses_the_index_until_the_next_open() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        let kv = SledKv::open(dir, 1 << 20).unwrap();
        write(&kv, &[b"cx", b"nada", b"mnames"]);
        kv.fail_main_once.store(true, Ordering::SeqCst);
        let mut batch = KvBatch::default();
        batch.insert(b"cy".to_vec(), b"v".to_vec());
        batch.insert(b"nbob".to_vec(), b"v".to_vec());
        assert_eq!(kv.apply(batch), Err(KvError::Injected));
        // The index reads as absent, writes to it are refused, the rest goes on.
        assert_eq!(kv.get(b"mnames").unwrap(), None);
        assert_eq!(pairs(&kv, &[]), [b"cx"]);
        let mut index = KvBatch::default();
        index.insert(b"ncy".to_vec(), b"v".to_vec());
        index.insert(b"cz".to_vec(), b"v".to_vec());
        assert_eq!(kv.apply(index), Err(KvError::IndexOutOfStep));
        assert_eq!(kv.get(b"cz").unwrap(), None, "refused whole");
        write(&kv, &[b"cz"]);
        kv.flush().unwrap();
        drop(kv);
        // The names database holds a batch the main one lacks: emptied at the next open.
        let kv = SledKv::open(dir, 1 << 20).unwrap();
        assert!(!kv.lost.load(Ordering::SeqCst));
        assert_eq!(pairs(&kv, &[]), [&b"cx"[..], b"cz"]);
        write(&kv, &[b"nada"]);
        assert_eq!(pairs(&kv, b"n"), [b"nada"]);
    }

    #[test]
    fn a_names_database_that_does_not_read_is_made_anew() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        let kv = SledKv::open(dir, 1 << 20).unwrap();
        write(&kv, &[b"cx", b"nada"]);
        drop(kv);
        let names = SledDb::open(&dir.join(NAMES_DIR), 1 << 20, NAMES_SEGMENT_BYTES).unwrap();
        let mut bad = KvBatch::default();
        bad.insert(STEP.to_vec(), vec![1, 2, 3]);
        names.apply(bad).unwrap();
        names.flush().unwrap();
        drop(names);
        let kv = SledKv::open(dir, 1 << 20).unwrap();
        assert_eq!(pairs(&kv, &[]), [b"cx"]);
        assert_eq!(step_of(&kv.names).unwrap(), step_of(&kv.main).unwrap());
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

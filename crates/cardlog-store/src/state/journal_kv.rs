//! [`JournalKv`]: a key space held in memory and kept on disk as a journal of its batches,
//! behind the same [`Kv`] interface as sled. What a relay keeps each book's state in: a small
//! book costs the bytes it holds, where a sled database costs about a megabyte however little
//! it holds (its segments) and threads of its own (docs/PERFORMANCE.md, "A relay's books in
//! journals").
//!
//! The journal (`journal` in the database's directory) is [`MAGIC`], then one record per
//! applied batch: the payload's length (u32 LE), the CRC-32 of those four bytes (u32 LE), the
//! payload's CRC-32 (u32 LE), then the payload (each write: 1 for an insert or 0 for a removal,
//! the key's length as u32 LE and the key, and for an insert the value's length and the value).
//! A batch is one record, so it is applied whole or not at all, also across a crash: a record
//! that is not whole (a header or payload cut short or failing its CRC: zeros, or pages of a
//! write the file system half kept) with no whole record after it is what a crash left, and
//! is removed when the journal opens; one with a whole record after it, or a whole record
//! whose payload does not parse, is damage ([`KvError::Damaged`]), and the store's `repair`
//! takes what comes before it.
//!
//! Once the journal holds more bytes of replaced writes than half its live pairs' (and at
//! least [`COMPACT_SLACK`] of them), it is written anew with only the live pairs: aside
//! (`journal.compacting`), synced, then renamed over the old one, so a crash leaves one whole
//! journal or the other. The directory's `lock` file is locked while a handle is open: a
//! second handle, in this process or another, gets [`KvError::Locked`].
//!
//! Everything is in memory while open: what suits a relay's books (small, and no more than
//! the relay's `open_books_max` open at once), not a device's store of a million contacts.

use std::collections::{BTreeMap, VecDeque};
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

use super::kv::{Kv, KvBatch, KvError, KvIter, KvResult};

/// The journal's file name in the database's directory.
pub const JOURNAL_FILE: &str = "journal";
/// The lock file's name in the database's directory.
const LOCK_FILE: &str = "lock";
/// Where a compaction writes the new journal before renaming it into place.
const COMPACTING_FILE: &str = "journal.compacting";
/// The journal's first bytes (its format version is the digit).
pub const MAGIC: &[u8; 16] = b"cardlog journal1";
/// Bytes of a record's header: length, its CRC, the payload's CRC.
const HEADER: usize = 12;
/// Replaced bytes a journal may hold (or half its live pairs' bytes, if more) before it is
/// compacted: a journal stays within 1.5 times what it holds (above 32 KiB live; below, what
/// it holds and 16 KiB), written about three times over.
pub const COMPACT_SLACK: u64 = 16 << 10;
/// Replaced bytes a journal may keep when it closes or rests (or a sixteenth of its live
/// bytes, if more); past that it is compacted, so a book at rest takes about what it holds.
/// A compaction writes the live bytes once for at least a sixteenth of them replaced since
/// the last: a relay book's rests cost at most 16 bytes written per byte replaced, at times
/// when no session holds the book.
pub const CLOSE_SLACK: u64 = 1 << 10;
/// The close's threshold as a share of the live bytes ([`CLOSE_SLACK`]).
const CLOSE_SHARE: u64 = 16;
/// How many times (10 ms apart) an open retries a lock still held.
const LOCK_RETRIES: u32 = 200;
/// Pairs a scan copies out in its first step (the lock is not held while the caller
/// iterates): a lookup that takes the first pair pays for few; each step doubles, up to
/// [`SCAN_STEP`].
const SCAN_FIRST: usize = 4;
/// The most pairs a scan copies out per step.
const SCAN_STEP: usize = 256;
/// Bytes of pairs per record of a compacted journal.
const COMPACT_RECORD_BYTES: usize = 1 << 20;

/// The pairs and what they cost on disk.
#[derive(Default)]
struct Pairs {
    map: BTreeMap<Vec<u8>, Vec<u8>>,
    /// What the live pairs take in a compacted journal.
    live: u64,
}

/// The journal file as this handle writes it.
struct Writer {
    /// Shared with a flush, which syncs it without holding the writer's lock.
    file: Arc<File>,
    len: u64,
    /// Why writes are refused: an append failed and could not be cut back off the journal,
    /// or a sync failed (what it should have made durable may be lost: Linux may drop the
    /// pages and their error).
    broken: Option<KvError>,
    /// The journal's length when a compaction last failed: none is tried again until it has
    /// grown by [`COMPACT_SLACK`] (a full disk is not rewritten at every batch).
    compact_failed_at: Option<u64>,
}

/// A key space in memory, its batches journaled to a file. See the module docs.
pub struct JournalKv {
    dir: PathBuf,
    pairs: RwLock<Pairs>,
    writer: Mutex<Writer>,
    /// Held (locked) for as long as the handle is open.
    _lock: File,
}

impl std::fmt::Debug for JournalKv {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JournalKv").field("dir", &self.dir).finish()
    }
}

fn poisoned<T>() -> KvResult<T> {
    Err(KvError::EngineBug(
        "the journal's lock was poisoned by a panic".into(),
    ))
}

/// What one pair takes in a record.
fn pair_bytes(key: &[u8], value: &[u8]) -> u64 {
    pair_bytes_of(key.len(), value.len())
}

fn pair_bytes_of(key: usize, value: usize) -> u64 {
    9 + key as u64 + value as u64
}

fn put_len(out: &mut Vec<u8>, len: usize) -> KvResult<()> {
    let len = u32::try_from(len)
        .map_err(|_| KvError::EngineBug("a key or value of 4 GiB or more".into()))?;
    out.extend_from_slice(&len.to_le_bytes());
    Ok(())
}

/// A record holding `writes`.
fn record<'a>(writes: impl Iterator<Item = (&'a [u8], Option<&'a [u8]>)>) -> KvResult<Vec<u8>> {
    let mut payload = Vec::new();
    for (key, value) in writes {
        payload.push(u8::from(value.is_some()));
        put_len(&mut payload, key.len())?;
        payload.extend_from_slice(key);
        if let Some(value) = value {
            put_len(&mut payload, value.len())?;
            payload.extend_from_slice(value);
        }
    }
    let len = u32::try_from(payload.len())
        .map_err(|_| KvError::EngineBug("a batch of 4 GiB or more".into()))?
        .to_le_bytes();
    let mut out = Vec::with_capacity(HEADER + payload.len());
    out.extend_from_slice(&len);
    out.extend_from_slice(&crc32fast::hash(&len).to_le_bytes());
    out.extend_from_slice(&crc32fast::hash(&payload).to_le_bytes());
    out.extend_from_slice(&payload);
    Ok(out)
}

fn u32_at(bytes: &[u8], at: usize) -> Option<u32> {
    bytes
        .get(at..at.checked_add(4)?)
        .and_then(|b| <[u8; 4]>::try_from(b).ok())
        .map(u32::from_le_bytes)
}

/// One write of a batch: a key and its new value, or `None` for a removal.
type PairWrite = (Vec<u8>, Option<Vec<u8>>);

/// The writes of a payload, or `None` if it is malformed.
fn writes_of(payload: &[u8]) -> Option<Vec<PairWrite>> {
    let mut at = 0usize;
    let mut out = Vec::new();
    let take = |at: &mut usize| -> Option<Vec<u8>> {
        let len = u32_at(payload, *at)? as usize;
        let start = *at + 4;
        let bytes = payload.get(start..start.checked_add(len)?)?.to_vec();
        *at = start + len;
        Some(bytes)
    };
    while at < payload.len() {
        let tag = *payload.get(at)?;
        at += 1;
        let key = take(&mut at)?;
        let value = match tag {
            0 => None,
            1 => Some(take(&mut at)?),
            _ => return None,
        };
        out.push((key, value));
    }
    Some(out)
}

/// What reading a journal's bytes found.
#[derive(Debug, Default)]
pub struct JournalRead {
    /// The pairs of every whole record before the end or the damage.
    pub pairs: BTreeMap<Vec<u8>, Vec<u8>>,
    /// Where the whole records end.
    pub end: u64,
    /// Damage in the middle of the journal: where and what.
    pub damage: Option<String>,
    /// The inserts of the whole records found past the damage, in the order written (a
    /// removal among them is not kept): what `repair` searches for the signatures a journal
    /// store keeps nowhere else. Empty without damage.
    pub past_damage: Vec<(Vec<u8>, Vec<u8>)>,
}

/// The inserts of every whole record that parses in `rest`, found byte by byte (past one
/// found, the search goes on after it).
fn inserts_in(rest: &[u8]) -> Vec<(Vec<u8>, Vec<u8>)> {
    let mut out = Vec::new();
    let mut at = 0usize;
    while let Some(tail) = rest.get(at..).filter(|t| !t.is_empty()) {
        match whole_record(tail).and_then(|payload| Some((payload.len(), writes_of(payload)?))) {
            Some((len, writes)) => {
                out.extend(writes.into_iter().filter_map(|(k, v)| Some((k, v?))));
                at = at.saturating_add(HEADER).saturating_add(len);
            }
            None => at += 1,
        }
    }
    out
}

/// The payload length a record at the start of `rest` claims, if its header's CRC holds.
fn claimed_len(rest: &[u8]) -> Option<usize> {
    let len = u32_at(rest, 0)?;
    (crc32fast::hash(&len.to_le_bytes()) == u32_at(rest, 4)?)
        .then(|| usize::try_from(len).ok())
        .flatten()
}

/// A whole record at the start of `rest`: its header's CRC and its payload's hold. Gives the
/// payload.
fn whole_record(rest: &[u8]) -> Option<&[u8]> {
    let end = HEADER.checked_add(claimed_len(rest)?)?;
    let payload = rest.get(HEADER..end)?;
    (crc32fast::hash(payload) == u32_at(rest, 8)?).then_some(payload)
}

/// Whether a whole record starts anywhere in `rest`: what tells damage in the middle of a
/// journal (records written after it survive) from a tail a crash tore (nothing whole
/// follows, whatever bytes the file system left there).
fn whole_record_in(rest: &[u8]) -> bool {
    (0..rest.len()).any(|at| rest.get(at..).and_then(whole_record).is_some())
}

/// Reads a journal's bytes: every whole record, up to a torn tail or damage. A record that
/// is not whole (a header or payload cut short or failing its CRC, zeros, bytes of a write
/// the file system half kept) ends the journal if no whole record follows it, and is damage
/// if one does; a whole record whose payload does not parse is damage.
pub fn read(bytes: &[u8]) -> JournalRead {
    let mut found = JournalRead::default();
    if bytes.get(..MAGIC.len()) != Some(&MAGIC[..]) {
        found.damage = Some("it does not begin as a journal".into());
        return found;
    }
    let mut at = MAGIC.len();
    found.end = at as u64;
    while let Some(rest) = bytes.get(at..).filter(|rest| !rest.is_empty()) {
        let Some(payload) = whole_record(rest) else {
            // Whole records are searched for past this one's claimed end when its header
            // holds (its payload, written by whoever wrote the batch, may hold bytes that look
            // like a record), else from its next byte.
            let search_from = claimed_len(rest).map_or(1, |len| HEADER.saturating_add(len));
            if rest.get(search_from..).is_some_and(whole_record_in) {
                found.damage = Some(format!("the record at byte {at} is damaged"));
                found.past_damage = inserts_in(rest.get(search_from..).unwrap_or_default());
            }
            break; // a torn tail: the end
        };
        let Some(writes) = writes_of(payload) else {
            found.damage = Some(format!("the record at byte {at} does not parse"));
            found.past_damage = inserts_in(
                rest.get(HEADER.saturating_add(payload.len())..)
                    .unwrap_or_default(),
            );
            break;
        };
        for (key, value) in writes {
            match value {
                Some(value) => found.pairs.insert(key, value),
                None => found.pairs.remove(&key),
            };
        }
        at += HEADER + payload.len();
        found.end = at as u64;
    }
    found
}

/// Syncs a directory's entries (not every platform can: callers say what a failure means).
fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir).and_then(|d| d.sync_all())
}

impl JournalKv {
    /// Creates an empty journal database in `dir` (created if absent; it must not hold a
    /// journal already), durably.
    pub fn create(dir: &Path) -> KvResult<()> {
        std::fs::create_dir_all(dir).map_err(|e| KvError::io(dir, &e))?;
        let path = dir.join(JOURNAL_FILE);
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(|e| KvError::io(&path, &e))?;
        file.write_all(MAGIC)
            .and_then(|()| file.sync_all())
            .map_err(|e| KvError::io(&path, &e))?;
        // Best effort, as the store's create syncs its directories.
        let _ = sync_dir(dir);
        Ok(())
    }

    /// Whether `dir` holds a journal database (and not a sled one): its journal, or its lock
    /// file (a journal lost beside it is damage, not a sled database to create).
    pub fn is_journal(dir: &Path) -> bool {
        dir.join(JOURNAL_FILE).is_file() || dir.join(LOCK_FILE).is_file()
    }

    /// Whether another handle holds the lock of the journal database in `dir`.
    pub fn lock_is_held(dir: &Path) -> bool {
        OpenOptions::new()
            .write(true)
            .open(dir.join(LOCK_FILE))
            .is_ok_and(|file| matches!(file.try_lock(), Err(std::fs::TryLockError::WouldBlock)))
    }

    /// Reads the journal in `dir` as it is, writing nothing and taking no lock: the pairs of
    /// every whole record before its end or its damage (what `repair` reads from a database
    /// set aside).
    pub fn read_dir(dir: &Path) -> KvResult<JournalRead> {
        let path = dir.join(JOURNAL_FILE);
        let bytes = std::fs::read(&path).map_err(|e| KvError::io(&path, &e))?;
        Ok(read(&bytes))
    }

    /// Opens the journal database in `dir`: locks it, reads every record into memory and
    /// cuts off a record a crash left half written. Damage in the middle is
    /// [`KvError::Damaged`].
    ///
    /// A lock still held is retried for up to two seconds (as sled's is): a relay may open a
    /// book again while the handle it just closed still compacts and lets go.
    pub fn open(dir: &Path) -> KvResult<Self> {
        let lock_path = dir.join(LOCK_FILE);
        let lock = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .open(&lock_path)
            .map_err(|e| KvError::io(&lock_path, &e))?;
        let mut attempts = 0;
        loop {
            match lock.try_lock() {
                Ok(()) => break,
                Err(std::fs::TryLockError::WouldBlock) if attempts < LOCK_RETRIES => {
                    attempts += 1;
                    std::thread::sleep(std::time::Duration::from_millis(10));
                }
                Err(std::fs::TryLockError::WouldBlock) => {
                    return Err(KvError::Locked(dir.to_owned()))
                }
                // A file system without locks (as sled does, the database is used unlocked).
                Err(std::fs::TryLockError::Error(e))
                    if e.kind() == std::io::ErrorKind::Unsupported =>
                {
                    break
                }
                Err(std::fs::TryLockError::Error(e)) => return Err(KvError::io(&lock_path, &e)),
            }
        }
        // What a compaction cut off left aside (the journal it would have replaced is whole).
        let _ = std::fs::remove_file(dir.join(COMPACTING_FILE));
        let path = dir.join(JOURNAL_FILE);
        let mut file = match OpenOptions::new().read(true).write(true).open(&path) {
            Ok(file) => file,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(KvError::Damaged(format!(
                    "database damaged: {} is missing beside its lock file",
                    path.display()
                )))
            }
            Err(e) => return Err(KvError::io(&path, &e)),
        };
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes)
            .map_err(|e| KvError::io(&path, &e))?;
        let found = read(&bytes);
        if let Some(damage) = found.damage {
            return Err(KvError::Damaged(format!(
                "database damaged: {}: {damage}",
                path.display()
            )));
        }
        if found.end < bytes.len() as u64 {
            file.set_len(found.end)
                .and_then(|()| file.sync_all())
                .map_err(|e| KvError::io(&path, &e))?;
        }
        drop(bytes);
        let live = found.pairs.iter().map(|(k, v)| pair_bytes(k, v)).sum();
        Ok(Self {
            dir: dir.to_owned(),
            pairs: RwLock::new(Pairs {
                map: found.pairs,
                live,
            }),
            writer: Mutex::new(Writer {
                file: Arc::new(file),
                len: found.end,
                broken: None,
                compact_failed_at: None,
            }),
            _lock: lock,
        })
    }

    /// The journal's length in bytes (what it takes on disk).
    pub fn journal_bytes(&self) -> u64 {
        self.writer.lock().map_or(0, |w| w.len)
    }

    /// Writes the journal anew with only the live pairs, if it holds more replaced bytes than
    /// [`COMPACT_SLACK`] and than half its live ones. A compaction that fails leaves the old
    /// journal in place (and is not tried again until the journal has grown by the slack).
    /// Compacts past the close's threshold ([`CLOSE_SLACK`], a sixteenth of the live bytes);
    /// `closing`: whatever an earlier compaction's failure (the last chance before the next
    /// open).
    fn compact_at_rest(&self, closing: bool) -> KvResult<()> {
        let Ok(mut writer) = self.writer.lock() else {
            return poisoned();
        };
        if writer.broken.is_some() {
            return Ok(());
        }
        let Ok(pairs) = self.pairs.read() else {
            return poisoned();
        };
        if replaced(&writer, &pairs) <= CLOSE_SLACK.max(pairs.live / CLOSE_SHARE) {
            return Ok(());
        }
        if let Some(failed) = writer.compact_failed_at.filter(|_| !closing) {
            if writer.len < failed.saturating_add(COMPACT_SLACK) {
                return Ok(());
            }
        }
        let compacted = self.compact(&mut writer, &pairs.map);
        if compacted.is_err() {
            writer.compact_failed_at = Some(writer.len);
        }
        compacted
    }

    fn compact_if_due(&self, writer: &mut Writer) {
        let Ok(pairs) = self.pairs.read() else {
            return;
        };
        if replaced(writer, &pairs) <= COMPACT_SLACK.max(pairs.live / 2) {
            return;
        }
        if let Some(failed) = writer.compact_failed_at {
            if writer.len < failed.saturating_add(COMPACT_SLACK) {
                return;
            }
        }
        if self.compact(writer, &pairs.map).is_err() {
            writer.compact_failed_at = Some(writer.len);
        }
    }

    fn compact(&self, writer: &mut Writer, map: &BTreeMap<Vec<u8>, Vec<u8>>) -> KvResult<()> {
        let path = self.dir.join(COMPACTING_FILE);
        let io = |e: std::io::Error| KvError::io(&path, &e);
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)
            .map_err(io)?;
        let mut len = MAGIC.len() as u64;
        let written = (|| {
            file.write_all(MAGIC).map_err(io)?;
            let mut chunk: Vec<(&[u8], Option<&[u8]>)> = Vec::new();
            let mut chunk_bytes = 0usize;
            let mut pairs = map.iter().peekable();
            while let Some((k, v)) = pairs.next() {
                chunk.push((k, Some(v)));
                chunk_bytes += k.len() + v.len();
                if chunk_bytes >= COMPACT_RECORD_BYTES || pairs.peek().is_none() {
                    let bytes = record(chunk.drain(..))?;
                    file.write_all(&bytes).map_err(io)?;
                    len += bytes.len() as u64;
                    chunk_bytes = 0;
                }
            }
            file.sync_all().map_err(io)?;
            let journal = self.dir.join(JOURNAL_FILE);
            std::fs::rename(&path, &journal).map_err(|e| KvError::io(&journal, &e))
        })();
        if let Err(e) = written {
            let _ = std::fs::remove_file(&path);
            return Err(e);
        }
        // The rename must be durable before later flushes of the new file say anything is
        // (where a directory can be synced: on Unix).
        if let Err(e) = sync_dir(&self.dir) {
            if cfg!(unix) {
                writer.broken = Some(KvError::io(&self.dir, &e));
            }
        }
        writer.file = Arc::new(file);
        writer.len = len;
        writer.compact_failed_at = None;
        Ok(())
    }
}

/// Bytes of the journal that no live pair needs (replaced writes, removals, headers).
fn replaced(writer: &Writer, pairs: &Pairs) -> u64 {
    writer.len.saturating_sub(pairs.live + MAGIC.len() as u64)
}

impl Kv for JournalKv {
    fn get(&self, key: &[u8]) -> KvResult<Option<Vec<u8>>> {
        match self.pairs.read() {
            Ok(pairs) => Ok(pairs.map.get(key).cloned()),
            Err(_) => poisoned(),
        }
    }

    /// Copies the pairs out a step at a time (up to 256 pairs): the lock is not held while the
    /// caller iterates, and a caller that stops early has not paid for the rest.
    fn scan_from<'a>(&'a self, prefix: &[u8], from: &[u8]) -> KvIter<'a> {
        Box::new(Scan {
            kv: self,
            prefix: prefix.to_vec(),
            next: Bound::Included(from.max(prefix).to_vec()),
            buf: VecDeque::new(),
            step: SCAN_FIRST,
            done: false,
        })
    }

    fn apply(&self, batch: KvBatch) -> KvResult<()> {
        let Ok(mut writer) = self.writer.lock() else {
            return poisoned();
        };
        if let Some(why) = &writer.broken {
            return Err(why.clone());
        }
        let writes = batch.into_writes();
        if writes.is_empty() {
            return Ok(());
        }
        let bytes = record(writes.iter().map(|(k, v)| (k.as_slice(), v.as_deref())))?;
        let path = self.dir.join(JOURNAL_FILE);
        let at = writer.len;
        if let Err(e) = write_at(&writer.file, &bytes, at) {
            let failed = KvError::io(&path, &e);
            // Cut the half-written record off, so the journal stays whole for later batches;
            // if even that fails, nothing more is written through this handle.
            if writer.file.set_len(at).is_err() {
                writer.broken = Some(failed.clone());
            }
            return Err(failed);
        }
        writer.len += bytes.len() as u64;
        {
            let Ok(mut pairs) = self.pairs.write() else {
                return poisoned();
            };
            for (k, v) in writes {
                let key_len = k.len();
                let added = v.as_ref().map_or(0, |v| pair_bytes_of(key_len, v.len()));
                let old = match v {
                    Some(v) => pairs.map.insert(k, v),
                    None => pairs.map.remove(&k),
                };
                let gone = old.map_or(0, |old| pair_bytes_of(key_len, old.len()));
                pairs.live = (pairs.live + added).saturating_sub(gone);
            }
        }
        self.compact_if_due(&mut writer);
        Ok(())
    }

    /// Compacts the journal as it closes if it keeps more replaced bytes than [`CLOSE_SLACK`]
    /// and a sixteenth of its live ones (a relay closes its least used books: at rest, a book
    /// takes about what it holds). A handle whose writes failed closes as it is.
    fn close_checkpointed(self: Box<Self>) -> KvResult<()> {
        self.compact_at_rest(true)
    }

    /// Compacts the journal as [`Kv::close_checkpointed`] does, keeping it open: a relay's
    /// book that no session holds. After a failed compaction (a full disk) it waits, as
    /// writes do, until the journal has grown by [`COMPACT_SLACK`].
    fn rest(&self) -> KvResult<()> {
        self.compact_at_rest(false)
    }

    /// Syncs the journal without holding the writer's lock: batches applied meanwhile wait
    /// for no sync (a compaction meanwhile synced its new journal whole before it took its
    /// place).
    fn flush(&self) -> KvResult<()> {
        let file = {
            let Ok(writer) = self.writer.lock() else {
                return poisoned();
            };
            if let Some(why) = &writer.broken {
                return Err(why.clone());
            }
            Arc::clone(&writer.file)
        };
        let synced = file
            .sync_data()
            .map_err(|e| KvError::io(&self.dir.join(JOURNAL_FILE), &e));
        if let Err(e) = &synced {
            if let Ok(mut writer) = self.writer.lock() {
                writer.broken = Some(e.clone());
            }
        }
        synced
    }
}

#[cfg(unix)]
fn write_at(file: &File, bytes: &[u8], at: u64) -> std::io::Result<()> {
    std::os::unix::fs::FileExt::write_all_at(file, bytes, at)
}

#[cfg(not(unix))]
fn write_at(mut file: &File, bytes: &[u8], at: u64) -> std::io::Result<()> {
    use std::io::Seek;
    file.seek(std::io::SeekFrom::Start(at))?;
    file.write_all(bytes)
}

/// A scan's state between steps.
struct Scan<'a> {
    kv: &'a JournalKv,
    prefix: Vec<u8>,
    next: Bound<Vec<u8>>,
    buf: VecDeque<(Vec<u8>, Vec<u8>)>,
    /// Pairs the next step copies out.
    step: usize,
    done: bool,
}

impl Iterator for Scan<'_> {
    type Item = KvResult<(Vec<u8>, Vec<u8>)>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.buf.is_empty() && !self.done {
            let Ok(pairs) = self.kv.pairs.read() else {
                self.done = true;
                return Some(poisoned());
            };
            let range = (self.next.clone(), Bound::Unbounded);
            self.buf.extend(
                pairs
                    .map
                    .range::<Vec<u8>, _>(range)
                    .take_while(|(k, _)| k.starts_with(&self.prefix))
                    .take(self.step)
                    .map(|(k, v)| (k.clone(), v.clone())),
            );
            match self.buf.back() {
                Some((last, _)) if self.buf.len() == self.step => {
                    self.next = Bound::Excluded(last.clone());
                    self.step = (self.step * 2).min(SCAN_STEP);
                }
                _ => self.done = true,
            }
        }
        self.buf.pop_front().map(Ok)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]

    use super::*;

    fn keys(it: KvIter<'_>) -> Vec<Vec<u8>> {
        it.map(|r| r.unwrap().0).collect()
    }

    fn batch(writes: &[(&[u8], Option<&[u8]>)]) -> KvBatch {
        let mut b = KvBatch::default();
        for (k, v) in writes {
            match v {
                Some(v) => b.insert(k.to_vec(), v.to_vec()),
                None => b.remove(k.to_vec()),
            }
        }
        b
    }

    fn journal_len(dir: &Path) -> u64 {
        std::fs::metadata(dir.join(JOURNAL_FILE)).unwrap().len()
    }

    /// The record format's golden bytes (docs/FORMAT.md, "The journal"): an insert of `k` =
    /// `v` and a removal of `x`, computed apart from this code (Python's `zlib.crc32`).
    #[test]
    fn a_record_has_its_golden_bytes() {
        const GOLDEN: &str = "11000000e6efe1c90689699401010000006b0100000076000100000078";
        let r = record([(&b"k"[..], Some(&b"v"[..])), (&b"x"[..], None)].into_iter()).unwrap();
        let hex: String = r.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(hex, GOLDEN);
        let mut journal = MAGIC.to_vec();
        journal.extend(&r);
        let found = read(&journal);
        assert_eq!(found.damage, None);
        assert_eq!(found.end, journal.len() as u64);
        assert_eq!(
            found.pairs.into_iter().collect::<Vec<_>>(),
            [(b"k".to_vec(), b"v".to_vec())]
        );
    }

    #[test]
    fn batches_survive_a_reopen_and_scans_keep_to_their_prefix() {
        let dir = tempfile::tempdir().unwrap();
        JournalKv::create(dir.path()).unwrap();
        {
            let kv = JournalKv::open(dir.path()).unwrap();
            kv.apply(batch(&[
                (b"a1", Some(b"x")),
                (b"b1", Some(b"1")),
                (b"b2", Some(b"2")),
                (b"c1", Some(b"c")),
            ]))
            .unwrap();
            kv.apply(batch(&[
                (b"b2", None),
                (b"b3", Some(b"3")),
                (b"b2", Some(b"again")),
            ]))
            .unwrap();
            kv.apply(batch(&[(b"c1", None)])).unwrap();
            kv.flush().unwrap();
        }
        let kv = JournalKv::open(dir.path()).unwrap();
        assert_eq!(keys(kv.scan_prefix(b"b")), [&b"b1"[..], b"b2", b"b3"]);
        assert_eq!(keys(kv.scan_from(b"b", b"b2")), [&b"b2"[..], b"b3"]);
        assert_eq!(keys(kv.scan_from(b"b", b"a")), [&b"b1"[..], b"b2", b"b3"]);
        assert_eq!(kv.get(b"b2").unwrap(), Some(b"again".to_vec()));
        assert_eq!(kv.get(b"c1").unwrap(), None);
        assert_eq!(kv.get(b"a1").unwrap(), Some(b"x".to_vec()));
    }

    #[test]
    fn a_scan_longer_than_its_step_sees_every_pair_once_in_order() {
        let dir = tempfile::tempdir().unwrap();
        JournalKv::create(dir.path()).unwrap();
        let kv = JournalKv::open(dir.path()).unwrap();
        let mut b = KvBatch::default();
        for i in 0..(SCAN_STEP * 3 + 7) as u32 {
            b.insert([&b"k"[..], &i.to_be_bytes()].concat(), vec![1]);
        }
        b.insert(b"l".to_vec(), vec![2]);
        kv.apply(b).unwrap();
        let found = keys(kv.scan_prefix(b"k"));
        assert_eq!(found.len(), SCAN_STEP * 3 + 7);
        assert!(found.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(
            keys(kv.scan_from(b"k", &[&b"k"[..], &5u32.to_be_bytes()].concat())).len(),
            SCAN_STEP * 3 + 2
        );
    }

    #[test]
    fn a_record_a_crash_cut_off_is_dropped_and_writing_goes_on() {
        for tail in [
            vec![7u8, 0, 0], // a header cut off
            vec![0u8; 40],   // zeros where a header would be
            {
                // a whole header, its payload cut short
                let mut r = record([(&b"k9"[..], Some(&b"v"[..]))].into_iter()).unwrap();
                r.truncate(r.len() - 2);
                r
            },
            {
                // the last record whole in length but its bytes not all written
                let mut r = record([(&b"k9"[..], Some(&b"v"[..]))].into_iter()).unwrap();
                let last = r.len() - 1;
                r[last] ^= 0xff;
                r
            },
            {
                // two records never synced: the first's second half and all of the second
                // left as zeros, the file's length kept
                let mut r = record([(&b"k9"[..], Some(&[7u8; 64][..]))].into_iter()).unwrap();
                let half = r.len() / 2;
                r[half..].fill(0);
                r.extend(vec![0u8; 80]);
                r
            },
            {
                // a batch cut short whose value holds a whole record's bytes (anyone who can
                // write a value can put them there): not damage
                let inner = record([(&b"x"[..], Some(&b"forged"[..]))].into_iter()).unwrap();
                let writes = [
                    (&b"k9"[..], Some(&inner[..])),
                    (&b"k8"[..], Some(&b"more"[..])),
                ];
                let mut r = record(writes.into_iter()).unwrap();
                r.truncate(r.len() - 1);
                r
            },
            {
                // a header torn across pages: its length there, the rest zeros, then a page
                // of the payload that did reach the disk
                let mut r = record([(&b"k9"[..], Some(&[7u8; 64][..]))].into_iter()).unwrap();
                r[4..20].fill(0);
                r
            },
        ] {
            let dir = tempfile::tempdir().unwrap();
            JournalKv::create(dir.path()).unwrap();
            {
                let kv = JournalKv::open(dir.path()).unwrap();
                kv.apply(batch(&[(b"k1", Some(b"one"))])).unwrap();
                kv.flush().unwrap();
            }
            let whole = journal_len(dir.path());
            let mut f = OpenOptions::new()
                .append(true)
                .open(dir.path().join(JOURNAL_FILE))
                .unwrap();
            f.write_all(&tail).unwrap();
            drop(f);
            let kv = JournalKv::open(dir.path()).unwrap();
            assert_eq!(journal_len(dir.path()), whole, "tail {tail:?}");
            assert_eq!(kv.get(b"k9").unwrap(), None);
            kv.apply(batch(&[(b"k2", Some(b"two"))])).unwrap();
            drop(kv);
            let kv = JournalKv::open(dir.path()).unwrap();
            assert_eq!(keys(kv.scan_prefix(b"k")), [&b"k1"[..], b"k2"]);
        }
    }

    #[test]
    fn a_damaged_record_before_others_is_damage_and_read_gives_what_precedes_it() {
        let dir = tempfile::tempdir().unwrap();
        JournalKv::create(dir.path()).unwrap();
        {
            let kv = JournalKv::open(dir.path()).unwrap();
            kv.apply(batch(&[(b"k1", Some(b"one"))])).unwrap();
            kv.apply(batch(&[(b"k2", Some(b"two"))])).unwrap();
            kv.apply(batch(&[(b"k3", Some(b"three"))])).unwrap();
        }
        let path = dir.path().join(JOURNAL_FILE);
        let mut bytes = std::fs::read(&path).unwrap();
        let second = MAGIC.len()
            + record([(&b"k1"[..], Some(&b"one"[..]))].into_iter())
                .unwrap()
                .len();
        for (at, what) in [(second + HEADER + 3, "record"), (second + 1, "header")] {
            let mut damaged = bytes.clone();
            damaged[at] ^= 0x10;
            std::fs::write(&path, &damaged).unwrap();
            match JournalKv::open(dir.path()) {
                Err(KvError::Damaged(why)) => {
                    assert!(why.contains(&format!("byte {second}")), "{why}")
                }
                other => panic!("{what}: {other:?}"),
            }
            let found = read(&damaged);
            assert_eq!(found.pairs.keys().collect::<Vec<_>>(), [&b"k1".to_vec()]);
            assert_eq!(found.end, second as u64);
            // The whole record past the damage is found for repair.
            assert_eq!(
                found.past_damage,
                [(b"k3".to_vec(), b"three".to_vec())],
                "{what}"
            );
            // Nothing was cut: the damage is still there for repair to read.
            assert_eq!(std::fs::read(&path).unwrap(), damaged);
        }
        bytes.truncate(4);
        std::fs::write(&path, &bytes).unwrap();
        assert!(matches!(
            JournalKv::open(dir.path()),
            Err(KvError::Damaged(_))
        ));
    }

    #[test]
    fn a_journal_of_replaced_writes_is_compacted_to_its_live_pairs() {
        let dir = tempfile::tempdir().unwrap();
        JournalKv::create(dir.path()).unwrap();
        let kv = JournalKv::open(dir.path()).unwrap();
        let value = vec![7u8; 1000];
        for round in 0..300u32 {
            let mut b = KvBatch::default();
            for k in 0..10u32 {
                b.insert(
                    k.to_be_bytes().to_vec(),
                    [&round.to_be_bytes()[..], &value].concat(),
                );
            }
            kv.apply(b).unwrap();
        }
        let live = 10 * pair_bytes_of(4, 1004);
        // 300 rounds wrote 3 MB; at most the slack, the live pairs and one batch are kept.
        let most = MAGIC.len() as u64
            + COMPACT_SLACK.max(live / 2)
            + live
            + 11 * pair_bytes_of(4, 1004)
            + HEADER as u64;
        assert!(
            journal_len(dir.path()) <= most,
            "{} > {most}",
            journal_len(dir.path())
        );
        assert_eq!(kv.journal_bytes(), journal_len(dir.path()));
        assert!(!dir.path().join(COMPACTING_FILE).exists());
        kv.apply(batch(&[(b"after", Some(b"compaction"))])).unwrap();
        drop(kv);
        let kv = JournalKv::open(dir.path()).unwrap();
        assert_eq!(kv.scan_prefix(&[0]).count(), 10);
        assert_eq!(
            kv.get(&3u32.to_be_bytes()).unwrap().unwrap()[..4],
            299u32.to_be_bytes()
        );
        assert_eq!(kv.get(b"after").unwrap(), Some(b"compaction".to_vec()));
    }

    #[test]
    fn a_journal_closed_with_replaced_writes_is_left_with_its_live_pairs() {
        let dir = tempfile::tempdir().unwrap();
        JournalKv::create(dir.path()).unwrap();
        let write = |rounds: u32| {
            let kv = JournalKv::open(dir.path()).unwrap();
            for round in 0..rounds {
                kv.apply(batch(&[(b"k", Some(&[round as u8; 100]))]))
                    .unwrap();
            }
            kv
        };
        // A few replaced writes: under the slack, the journal is left as it is.
        let kv = write(5);
        let before = kv.journal_bytes();
        Box::new(kv).close_checkpointed().unwrap();
        assert_eq!(journal_len(dir.path()), before);
        // Many: it is written anew, and reads the same.
        let kv = write(200);
        assert!(kv.journal_bytes() > CLOSE_SLACK);
        Box::new(kv).close_checkpointed().unwrap();
        let whole = (MAGIC.len() + HEADER) as u64 + pair_bytes_of(1, 100);
        assert_eq!(journal_len(dir.path()), whole);
        let kv = JournalKv::open(dir.path()).unwrap();
        assert_eq!(kv.get(b"k").unwrap(), Some(vec![199; 100]));
        drop(kv);
        // At rest, a handle left open is compacted alike, and goes on writing.
        let kv = write(200);
        kv.rest().unwrap();
        assert_eq!(journal_len(dir.path()), whole);
        assert_eq!(kv.journal_bytes(), whole);
        kv.apply(batch(&[(b"k", Some(&[7; 100]))])).unwrap();
        drop(kv);
        let kv = JournalKv::open(dir.path()).unwrap();
        assert_eq!(kv.get(b"k").unwrap(), Some(vec![7; 100]));
    }

    #[test]
    fn a_whole_record_that_does_not_parse_is_damage() {
        let dir = tempfile::tempdir().unwrap();
        JournalKv::create(dir.path()).unwrap();
        let payload = [1u8, 200, 0, 0, 0]; // an insert whose key is longer than the payload
        let len = (payload.len() as u32).to_le_bytes();
        let mut r = len.to_vec();
        r.extend(crc32fast::hash(&len).to_le_bytes());
        r.extend(crc32fast::hash(&payload).to_le_bytes());
        r.extend(payload);
        let mut f = OpenOptions::new()
            .append(true)
            .open(dir.path().join(JOURNAL_FILE))
            .unwrap();
        f.write_all(&r).unwrap();
        drop(f);
        match JournalKv::open(dir.path()) {
            Err(KvError::Damaged(why)) => assert!(why.contains("does not parse"), "{why}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_journal_lost_beside_its_lock_file_is_damage() {
        let dir = tempfile::tempdir().unwrap();
        JournalKv::create(dir.path()).unwrap();
        drop(JournalKv::open(dir.path()).unwrap());
        std::fs::remove_file(dir.path().join(JOURNAL_FILE)).unwrap();
        assert!(JournalKv::is_journal(dir.path()));
        assert!(matches!(
            JournalKv::open(dir.path()),
            Err(KvError::Damaged(_))
        ));
    }

    #[test]
    fn a_second_handle_is_refused_while_the_first_is_open() {
        let dir = tempfile::tempdir().unwrap();
        JournalKv::create(dir.path()).unwrap();
        let kv = JournalKv::open(dir.path()).unwrap();
        assert!(matches!(
            JournalKv::open(dir.path()),
            Err(KvError::Locked(_))
        ));
        drop(kv);
        JournalKv::open(dir.path()).unwrap();
        assert!(
            JournalKv::create(dir.path()).is_err(),
            "a journal is not made twice"
        );
    }
}

//! The durable store: the op log in its own append-only file, the materialized registers and
//! author heads in sled.
//!
//! Applying ops appends their records to the log and holds their register changes, author
//! heads and the registers' watermark (how much of the log they cover) in memory
//! (`pending.rs`), where reads see them; they go to sled as one batch every 1,024 ops or so
//! (checked between apply calls), after a sync of the log. A save is durable once
//! [`Store::flush`] has synced the log; the sled side follows, and opening replays the log's
//! tail past the watermark, so after a crash the log and the state always agree. Opening reads
//! the meta entries, one head per author and that tail: its cost does not grow with the
//! history. Lookups by author, id or contact use an
//! in-memory index built from the log the first time one is needed (`index.rs`).

use std::collections::BTreeMap;
use std::path::{Path as FsPath, PathBuf};
use std::sync::OnceLock;

use cardlog_core::replay::Missing;
use cardlog_core::replay::{
    contact_view, field_conflict, write_state, ChainHead, ContactView, FieldConflict, Heads,
    OpLookup, Readiness, RegisterWrite, Version,
};
use cardlog_core::{ContactId, IdPrefix, OpId, Path, ReplayError, ReplicaId, SealedOp};

use crate::derive::{derive, Derived, Registers};
use crate::error::{OpenError, StoreError};
use crate::index::LogIndex;
use crate::keys::{self, meta, ContactRegisters};
use crate::kv::{ClosedKv, Kv, KvBatch, KvError, SledKv};
use crate::log::{FileLog, LogError, LogIo, OpLog, Read, COMMIT, LOG_FILE};
use crate::pending::{Pending, PENDING_OPS_MAX};
use crate::stage::Stage;

/// The store format this build reads and writes (the marker file and the `format` meta entry).
pub const STORE_FORMAT_VERSION: u8 = 3;
/// Default sled page cache: modest, because sled's own default is 1 GiB.
pub const CACHE_BYTES_DEFAULT: u64 = 32 << 20;

const MARKER_FILE: &str = "CARDLOG";
/// The marker of store format 2, which [`Store::open`] upgrades.
const MARKER_V2: &str = "cardlog store 2\n";
const DB_DIR: &str = "db";

fn marker_text() -> String {
    format!("cardlog store {STORE_FORMAT_VERSION}\n")
}

/// How to open a store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreOptions {
    /// sled's page cache size in bytes.
    pub cache_bytes: u64,
}

impl Default for StoreOptions {
    fn default() -> Self {
        Self {
            cache_bytes: CACHE_BYTES_DEFAULT,
        }
    }
}

/// Writes per sled batch when `rebuild` repairs the registers.
const REBUILD_CHUNK: usize = 16_384;

/// How far a long operation (`verify`, `rebuild`) has got, in units of work.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    /// Units done.
    pub done: u64,
    /// Units in all.
    pub total: u64,
}

/// What happened to one op given to [`Store::apply_all`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OpOutcome {
    /// Stored, with its state changes.
    Stored,
    /// Already stored; nothing changed.
    Duplicate,
    /// A dependency is absent (the first one found); not stored.
    Missing(Missing),
    /// Refused by the replay rules (fork, broken chain, clock regression, bad replace); not
    /// stored.
    Refused(Box<ReplayError>),
}

/// What `verify` found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VerifyReport {
    /// Ops re-hashed and checked.
    pub ops: u64,
    /// Authors whose chains were checked.
    pub authors: usize,
    /// Registers compared with the state rebuilt from the log.
    pub registers: u64,
    /// Every inconsistency found; empty when the store is sound.
    pub problems: Vec<String>,
}

impl VerifyReport {
    /// Whether nothing is wrong.
    pub fn is_ok(&self) -> bool {
        self.problems.is_empty()
    }
}

/// The durable store. See the module docs.
pub struct Store {
    kv: Box<dyn Kv>,
    log: OpLog,
    index: OnceLock<LogIndex>,
    dir: PathBuf,
    replica: ReplicaId,
    previous_replica: Option<ReplicaId>,
    summary: BTreeMap<ReplicaId, ChainHead>,
    ops: u64,
    poisoned: Option<String>,
    /// A meta value was written since the database was last flushed.
    meta_dirty: bool,
    recovery: Recovery,
    /// Register changes not yet written to the database (see `pending.rs`).
    pending: Pending,
}

/// What opening the store found and repaired.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Recovery {
    /// Committed ops past the registers' watermark, replayed into the registers.
    pub tail_ops: u64,
    /// Bytes cut from the log's end: an unfinished write (after the last commit) and the
    /// zeros the log is extended with ahead of its records.
    pub torn_bytes: u64,
    /// The registers cover more log than the file holds (it lost data): the store is
    /// read-only until `rebuild` accepts the log as it is.
    pub state_ahead_of_log: bool,
    /// Damage in the log past the watermark with valid-looking data after it: nothing was cut,
    /// the store is read-only (the reason).
    pub damaged_tail: Option<String>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("dir", &self.dir)
            .field("replica", &self.replica)
            .field("authors", &self.summary.len())
            .finish_non_exhaustive()
    }
}

/// Writes this format's marker at `path` and makes it durable.
fn write_marker(path: &FsPath) -> std::io::Result<()> {
    std::fs::write(path, marker_text())?;
    std::fs::File::open(path)?.sync_all()
}

fn io(path: &FsPath, e: std::io::Error) -> OpenError {
    OpenError::Io {
        path: path.to_owned(),
        message: e.to_string(),
    }
}

/// Where the store lives: its canonical path and, on Unix, the device and inode of its database
/// directory. A copy or a restore from backup changes it.
fn home_of(dir: &FsPath) -> Vec<u8> {
    let db = dir.join(DB_DIR);
    let path = std::fs::canonicalize(&db).unwrap_or(db.clone());
    #[cfg(unix)]
    let ids = {
        use std::os::unix::fs::MetadataExt;
        std::fs::metadata(&db).map_or((0, 0), |m| (m.dev(), m.ino()))
    };
    #[cfg(not(unix))]
    let ids = (0u64, 0u64);
    keys::encode(&(path.to_string_lossy().into_owned(), ids.0, ids.1))
}

impl Store {
    /// Creates a store in `dir`, which must not exist or be empty.
    pub fn create(dir: &FsPath, options: &StoreOptions) -> Result<Self, OpenError> {
        if dir.exists() {
            let mut entries = std::fs::read_dir(dir).map_err(|e| io(dir, e))?;
            if entries.next().is_some() {
                return Err(OpenError::NotEmpty(dir.to_owned()));
            }
        }
        // The store is built whole in a hidden sibling directory and renamed into place, so a
        // crash during create leaves either no store or a complete one, never a directory that
        // is neither (a leftover `.NAME.creating-*` sibling is harmless and can be deleted).
        let name = dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "store".into());
        let parent = match dir.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
            _ => PathBuf::from("."),
        };
        std::fs::create_dir_all(&parent).map_err(|e| io(&parent, e))?;
        let tmp = parent.join(format!(
            ".{name}.creating-{}",
            ReplicaId::random()?.to_string().get(..12).unwrap_or("0")
        ));
        let built = Self::build(&tmp, options)
            .and_then(|()| std::fs::rename(&tmp, dir).map_err(|e| io(dir, e)));
        if let Err(e) = built {
            let _ = std::fs::remove_dir_all(&tmp);
            return Err(e);
        }
        // Make the rename itself durable (best effort: not every platform can sync a directory).
        let _ = std::fs::File::open(&parent).and_then(|d| d.sync_all());
        Self::open(dir, options)
    }

    /// Writes a complete new store into `tmp`: database with format and device id, an empty
    /// op log, then the marker, each made durable.
    fn build(tmp: &FsPath, options: &StoreOptions) -> Result<(), OpenError> {
        std::fs::create_dir(tmp).map_err(|e| io(tmp, e))?;
        let kv = SledKv::open(&tmp.join(DB_DIR), options.cache_bytes)?;
        let mut batch = KvBatch::default();
        batch.insert(meta::FORMAT.to_vec(), vec![STORE_FORMAT_VERSION]);
        batch.insert(meta::REPLICA.to_vec(), ReplicaId::random()?.0.to_vec());
        batch.insert(meta::APPLIED.to_vec(), keys::encode(&(0u64, 0u64)));
        kv.apply(batch)?;
        kv.flush()?;
        drop(kv);
        let log = FileLog::open(&tmp.join(LOG_FILE), true)?;
        log.sync()?;
        drop(log);
        let marker = tmp.join(MARKER_FILE);
        write_marker(&marker).map_err(|e| io(&marker, e))?;
        Ok(())
    }

    /// Opens the store in `dir`. A directory without a store, or with a store of an unknown
    /// format, is refused before anything in it is touched; a store of format 2 is upgraded
    /// first (see `upgrade_from_2`).
    pub fn open(dir: &FsPath, options: &StoreOptions) -> Result<Self, OpenError> {
        let marker = dir.join(MARKER_FILE);
        let text = match std::fs::read(&marker) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(OpenError::NotAStore(dir.to_owned()))
            }
            Err(e) => return Err(io(&marker, e)),
        };
        let text = String::from_utf8_lossy(&text);
        if text == MARKER_V2 {
            Self::upgrade_from_2(dir, options)?;
        } else if text != marker_text() {
            let Some(rest) = text.strip_prefix("cardlog store ") else {
                return Err(OpenError::NotAStore(dir.to_owned()));
            };
            // A well-formed marker of another version is another format; anything else that
            // starts like a marker is a damaged one.
            return Err(match rest.strip_suffix('\n').map(str::parse::<u8>) {
                Some(Ok(_)) => OpenError::UnknownFormat {
                    dir: dir.to_owned(),
                    found: text.trim().to_owned(),
                    supported: STORE_FORMAT_VERSION,
                },
                _ => OpenError::Damaged(format!(
                    "{} reads {:?}, not a store marker",
                    marker.display(),
                    text.chars().take(40).collect::<String>()
                )),
            });
        }
        let db = dir.join(DB_DIR);
        if !db.is_dir() {
            // Opening sled would create an empty database; a marker without one is damage.
            return Err(OpenError::Damaged(format!(
                "{} has a store marker but no {DB_DIR}/ database directory",
                dir.display()
            )));
        }
        let log_path = dir.join(LOG_FILE);
        if !log_path.is_file() {
            return Err(OpenError::Damaged(format!(
                "{} has a store marker but no {LOG_FILE} op log",
                dir.display()
            )));
        }
        let kv = SledKv::open(&db, options.cache_bytes)?;
        let log = FileLog::open(&log_path, false)?;
        Self::open_parts(Box::new(kv), Box::new(log), dir)
    }

    /// Upgrades a store of format 2 (one sled key per register) to format 3 (one per
    /// contact), converting the registers in place: no replay of the log.
    ///
    /// The new marker is written beside the old one first (an unwritable directory fails
    /// before the database changes); then one durable sled batch replaces every `h` key by
    /// its contact's `c` key and sets the format to 3; then the new marker replaces the old.
    /// A register that does not parse is dropped and the rebuild mark set, so the open that
    /// follows rebuilds the registers from the log (as `verify` and `rebuild` would have on
    /// format 2). A crash before the batch leaves format 2 as it was; after it, a format-2
    /// marker over a database saying 3 only has its marker replaced.
    fn upgrade_from_2(dir: &FsPath, options: &StoreOptions) -> Result<(), OpenError> {
        let upgrading = |what: String| {
            OpenError::Damaged(format!(
                "upgrading the format-2 store in {}: {what}",
                dir.display()
            ))
        };
        let db = dir.join(DB_DIR);
        if !db.is_dir() || !dir.join(LOG_FILE).is_file() {
            return Err(upgrading(format!(
                "no {DB_DIR}/ database or no {LOG_FILE} op log"
            )));
        }
        let marker = dir.join(MARKER_FILE);
        let next = dir.join(format!("{MARKER_FILE}.upgrading"));
        write_marker(&next).map_err(|e| upgrading(format!("{}: {e}", next.display())))?;
        let kv = SledKv::open(&db, options.cache_bytes)?;
        match kv.get(meta::FORMAT)?.as_deref() {
            Some([2]) => {
                let mut batch = KvBatch::default();
                let mut contact: Option<(ContactId, ContactRegisters)> = None;
                let mut unreadable = false;
                for pair in kv.scan_prefix(&[keys::HEADS_V2]) {
                    let (k, v) = pair?;
                    match keys::parse_register_v2(&k, &v) {
                        Ok((id, path, register)) => {
                            // `h` keys are in contact order: a contact's registers are adjacent.
                            if let Some((c, registers)) = contact.take_if(|(c, _)| *c != id) {
                                batch.insert(keys::contact(&c), keys::contact_value(&registers));
                            }
                            contact
                                .get_or_insert_with(|| (id, ContactRegisters::new()))
                                .1
                                .insert(path, register);
                        }
                        Err(_) => unreadable = true,
                    }
                    batch.remove(k);
                }
                if let Some((c, registers)) = contact {
                    batch.insert(keys::contact(&c), keys::contact_value(&registers));
                }
                if unreadable {
                    batch.insert(meta::REBUILDING.to_vec(), vec![1]);
                }
                batch.insert(meta::FORMAT.to_vec(), vec![STORE_FORMAT_VERSION]);
                kv.apply(batch)?;
                kv.flush()?;
            }
            Some([v]) if *v == STORE_FORMAT_VERSION => {}
            Some(other) => {
                return Err(upgrading(format!(
                    "the marker says format 2 but the database says {other:?}"
                )))
            }
            None => return Err(upgrading("the database has no format entry".into())),
        }
        drop(kv);
        std::fs::rename(&next, &marker)
            .map_err(|e| upgrading(format!("{}: {e}", marker.display())))?;
        // Make the rename durable (best effort: not every platform can sync a directory).
        let _ = std::fs::File::open(dir).and_then(|d| d.sync_all());
        Ok(())
    }

    /// Opens a store on an already opened key space and log file (tests use this to inject
    /// faults).
    pub fn open_parts(
        kv: Box<dyn Kv>,
        log: Box<dyn LogIo>,
        dir: &FsPath,
    ) -> Result<Self, OpenError> {
        match kv.get(meta::FORMAT)?.as_deref() {
            Some([v]) if *v == STORE_FORMAT_VERSION => {}
            Some(other) => {
                return Err(OpenError::UnknownFormat {
                    dir: dir.to_owned(),
                    found: format!("{other:?}"),
                    supported: STORE_FORMAT_VERSION,
                })
            }
            None => return Err(OpenError::NotAStore(dir.to_owned())),
        }
        let replica = kv
            .get(meta::REPLICA)?
            .and_then(|v| <[u8; 16]>::try_from(v.as_slice()).ok())
            .map(ReplicaId)
            .ok_or_else(|| OpenError::Corrupt("replica id".into()))?;
        let mut summary = BTreeMap::new();
        for pair in kv.scan_prefix(&[keys::AUTHOR]) {
            let (k, v) = pair?;
            let (author, head) = keys::parse_author(&k, &v)?;
            summary.insert(author, head);
        }
        let (applied_ops, applied_bytes): (u64, u64) = match kv.get(meta::APPLIED)? {
            Some(v) => keys::decode(&v, "applied watermark")?,
            None => return Err(OpenError::Corrupt("applied watermark".into())),
        };
        let file_len = log.file_len()?;
        let mut store = Self {
            kv,
            log: OpLog::new(log, applied_bytes.min(file_len)),
            index: OnceLock::new(),
            dir: dir.to_owned(),
            replica,
            previous_replica: None,
            summary,
            ops: applied_ops,
            poisoned: None,
            meta_dirty: false,
            pending: Pending::default(),
            recovery: Recovery::default(),
        };
        if applied_bytes > file_len {
            // The registers cover more of the log than the file holds (a power cut lost the
            // log's tail, or the file was cut): the registers cannot be trusted.
            // Replaying what is left would silently drop what the registers still show, so
            // the store opens read-only and says so; `rebuild` accepts the log as it is.
            store.recovery.state_ahead_of_log = true;
            store.log.set_len(0);
            store.ops = 0;
            store.recover_tail(file_len, false)?;
            store.poisoned = Some(format!(
                "the op log holds {file_len} bytes but the registers cover {applied_bytes}: \
                 ops.log lost data (restore it, or run rebuild to keep only what it holds)"
            ));
        } else {
            store.recover_tail(file_len, true)?;
        }
        store.check_home()?;
        // A rebuild was cut off: the registers are half-built. Finish it from the log. If the
        // log itself is damaged the store still opens, read-only, so `verify` can name the
        // damage.
        if store.pending.get(&*store.kv, meta::REBUILDING)?.is_some() && store.poisoned.is_none() {
            match store.rebuild() {
                Ok(_) => {}
                Err(StoreError::Corrupt(what) | StoreError::Damaged(what)) => {
                    store.poisoned = Some(format!("an interrupted rebuild cannot finish: {what}"));
                }
                Err(e) => return Err(e.into()),
            }
        }
        Ok(store)
    }

    /// Reads the log past the registers' watermark: committed records are replayed into the
    /// registers (when `replay`), a torn tail (records after the last commit, cut off by a
    /// crash) is cut away, and damage with valid data after it leaves the store read-only.
    fn recover_tail(&mut self, file_len: u64, replay: bool) -> Result<(), OpenError> {
        let from = self.log.len();
        let mut uncommitted: Vec<(u64, SealedOp)> = Vec::new();
        let mut committed: Vec<(u64, SealedOp)> = Vec::new();
        let mut committed_end = from;
        let mut count = 0u64;
        let mut uncommitted_count = 0u64;
        let mut bad: Option<(u64, String, bool)> = None;
        {
            let mut scan = self.log.scan(from, file_len);
            loop {
                match scan.next_read()? {
                    Read::Record(r) => {
                        let end = r.end();
                        let op = match r.seal() {
                            Ok(op) => op,
                            Err(why) => {
                                bad = Some((r.offset, why, end == file_len));
                                break;
                            }
                        };
                        uncommitted_count += 1;
                        if replay {
                            uncommitted.push((r.offset, op));
                        }
                        if r.flags & COMMIT != 0 {
                            committed.append(&mut uncommitted);
                            count += uncommitted_count;
                            uncommitted_count = 0;
                            committed_end = end;
                        }
                    }
                    Read::End => break,
                    Read::Bad {
                        offset,
                        why,
                        cut_off,
                    } => {
                        bad = Some((offset, why, cut_off));
                        break;
                    }
                }
            }
        }
        let torn = match &bad {
            None => true,
            Some((offset, _, cut_off)) => *cut_off || self.zeros_from(*offset, file_len)?,
        };
        if !torn {
            // Valid-looking data follows a damaged record: cutting it away could lose saves.
            let why = bad.map(|b| b.1).unwrap_or_default();
            self.poisoned = Some(format!(
                "the op log is damaged past what the registers hold ({why}); run verify"
            ));
            self.recovery.damaged_tail = Some(why);
        }
        self.log.set_len(committed_end);
        if torn && committed_end < file_len {
            self.recovery.torn_bytes = file_len - committed_end;
            self.log.truncate(committed_end)?;
        }
        self.recovery.tail_ops = count;
        if !replay {
            self.ops += count;
            return Ok(());
        }
        if committed.is_empty() {
            return Ok(());
        }
        let mut stage = Stage::at(self, from, self.ops);
        for (offset, op) in &committed {
            stage.add_logged(*offset, op)?;
        }
        let staged = stage.finish();
        // Those records may still be only in the page cache (a killed process, bulk mode):
        // sync them before sled's watermark covers them.
        self.log.sync()?;
        self.kv.apply(staged.batch)?;
        self.kv.flush()?;
        self.ops += staged.added.len() as u64;
        self.summary.extend(staged.heads);
        Ok(())
    }

    /// Whether the log holds only zero bytes from `offset` to `end` (space a crash left
    /// allocated but unwritten), reading at most a few MiB.
    fn zeros_from(&self, offset: u64, end: u64) -> Result<bool, OpenError> {
        const MAX_CHECK_BYTES: u64 = 4 << 20;
        if end.saturating_sub(offset) > MAX_CHECK_BYTES {
            return Ok(false);
        }
        let mut buf = vec![0u8; (end - offset) as usize];
        self.log.read_raw(&mut buf, offset)?;
        Ok(buf.iter().all(|b| *b == 0))
    }

    /// A store that moved (copied, or restored from a backup) must not keep writing as the
    /// device it was copied from: that device may still be writing the same chain.
    fn check_home(&mut self) -> Result<(), OpenError> {
        let home = home_of(&self.dir);
        let recorded = self.pending.get(&*self.kv, meta::HOME)?;
        if recorded.is_none() {
            // The first open after create: record where the store lives.
            let mut batch = KvBatch::default();
            batch.insert(meta::HOME.to_vec(), home);
            self.kv.apply(batch)?;
            self.kv.flush()?;
        } else if recorded.as_deref() != Some(home.as_slice()) {
            let fresh = ReplicaId::random()?;
            let mut batch = KvBatch::default();
            batch.insert(meta::REPLICA.to_vec(), fresh.0.to_vec());
            batch.insert(meta::HOME.to_vec(), home);
            let mut former = self
                .pending
                .get(&*self.kv, meta::FORMER)?
                .unwrap_or_default();
            former.extend_from_slice(&self.replica.0);
            batch.insert(meta::FORMER.to_vec(), former);
            self.kv.apply(batch)?;
            self.kv.flush()?;
            self.previous_replica = Some(self.replica);
            self.replica = fresh;
        }
        Ok(())
    }

    /// What this open found and repaired.
    pub fn recovery(&self) -> &Recovery {
        &self.recovery
    }

    /// The store's directory.
    pub fn dir(&self) -> &FsPath {
        &self.dir
    }

    /// The device id new local ops are written as.
    pub fn replica_id(&self) -> ReplicaId {
        self.replica
    }

    /// If this open found the store copied or restored, the device id it had before (the store
    /// now writes as a fresh id).
    pub fn previous_replica_id(&self) -> Option<ReplicaId> {
        self.previous_replica
    }

    /// Every device id this store wrote as before it was copied or restored, oldest first
    /// (kept across opens, unlike [`Store::previous_replica_id`]).
    pub fn former_replica_ids(&self) -> Result<Vec<ReplicaId>, StoreError> {
        let bytes = self
            .pending
            .get(&*self.kv, meta::FORMER)?
            .unwrap_or_default();
        if !bytes.len().is_multiple_of(16) {
            return Err(StoreError::Corrupt("former device ids".into()));
        }
        Ok(bytes
            .chunks_exact(16)
            .filter_map(|c| <[u8; 16]>::try_from(c).ok())
            .map(ReplicaId)
            .collect())
    }

    /// Per author, the last op stored.
    pub fn summary(&self) -> &BTreeMap<ReplicaId, ChainHead> {
        &self.summary
    }

    /// Number of ops stored.
    pub fn op_count(&self) -> u64 {
        self.ops
    }

    /// Bytes of op log in use (where the next record goes).
    pub fn log_len(&self) -> u64 {
        self.log.len()
    }

    fn writable(&self) -> Result<(), StoreError> {
        match &self.poisoned {
            Some(why) => Err(StoreError::Poisoned(why.clone())),
            None => Ok(()),
        }
    }

    fn poison(&mut self, e: KvError) -> StoreError {
        self.poisoned = Some(e.0.clone());
        StoreError::Engine(e)
    }

    fn poison_log(&mut self, e: LogError) -> StoreError {
        self.poisoned = Some(e.0.clone());
        StoreError::Log(e)
    }

    /// The log index, built by one read of the log the first time it is needed.
    fn index(&self) -> Result<&LogIndex, StoreError> {
        if let Some(index) = self.index.get() {
            return Ok(index);
        }
        let built = LogIndex::build(&self.log)?;
        Ok(self.index.get_or_init(|| built))
    }

    /// The heads at one path.
    pub fn heads(&self, contact: &ContactId, path: &Path) -> Result<Heads, StoreError> {
        Ok(self
            .contact_registers(contact)?
            .remove(path)
            .map(|(_, heads)| heads)
            .unwrap_or_default())
    }

    /// Every register of a contact by path (empty if never written): one lookup. What
    /// [`Store::contact`] and [`Store::heads`] read; a caller that needs several of a contact's
    /// heads, or its view and heads, reads this once.
    pub fn contact_registers(&self, contact: &ContactId) -> Result<ContactRegisters, StoreError> {
        match self.pending.get(&*self.kv, &keys::contact(contact))? {
            Some(v) => keys::parse_contact_value(&v),
            None => Ok(ContactRegisters::new()),
        }
    }

    /// Stores one op if it is ready: checked like [`cardlog_core::Replay::insert`], then written
    /// with its state changes. Not yet durable: see [`Store::flush`]. Returns `Missing` (and
    /// stores nothing) when a dependency is absent; a refused op is an error and nothing is
    /// stored.
    pub fn apply(&mut self, sealed: &SealedOp) -> Result<Readiness, StoreError> {
        match self.apply_all(std::slice::from_ref(sealed))?.pop() {
            Some(OpOutcome::Stored) => Ok(Readiness::Ready),
            Some(OpOutcome::Duplicate) => Ok(Readiness::Duplicate),
            Some(OpOutcome::Missing(m)) => Ok(Readiness::Missing(m)),
            Some(OpOutcome::Refused(e)) => Err(StoreError::Refused(e)),
            None => Err(StoreError::Corrupt("apply outcome".into())),
        }
    }

    /// Stores every op of `ops` whose dependencies are in the store or among `ops` (in any
    /// order: ops waiting for a later one are retried until no more can be stored). Ops still
    /// missing a dependency, duplicates and refused ops are skipped and reported, one outcome
    /// per op in input order; the others are all stored or, if a write fails, none is (the
    /// log records of one call end with one commit flag). Not yet durable: see
    /// [`Store::flush`].
    pub fn apply_all(&mut self, ops: &[SealedOp]) -> Result<Vec<OpOutcome>, StoreError> {
        self.apply_all_inner(ops, false)
    }

    /// Like [`Store::apply_all`], but all or nothing for refusals: if any op is refused (a
    /// fork, a broken chain, a forged reference…) nothing at all is stored and the first
    /// refusal is the error. Ops that are duplicates or still miss a dependency do not stop
    /// the others.
    pub fn apply_all_strict(&mut self, ops: &[SealedOp]) -> Result<Vec<OpOutcome>, StoreError> {
        self.apply_all_inner(ops, true)
    }

    fn apply_all_inner(
        &mut self,
        ops: &[SealedOp],
        strict: bool,
    ) -> Result<Vec<OpOutcome>, StoreError> {
        self.writable()?;
        // Held-back register changes are written once there are enough of them: before
        // anything of this call, so a failure stores none of it.
        if self.pending.ops() >= PENDING_OPS_MAX {
            self.settle()?;
        }
        let mut stage = Stage::new(self);
        // Causal order first: an op's timestamp is after those of the ops it depends on (the
        // chain predecessor always, the replaced writes unless their clock ran beyond the skew
        // bound), so one pass usually stores everything.
        let mut outcomes: Vec<(usize, &SealedOp, Option<OpOutcome>)> = ops
            .iter()
            .enumerate()
            .map(|(i, op)| (i, op, None))
            .collect();
        outcomes.sort_by_key(|(i, op, _)| (op.op().hlc, op.op().author, op.op().seq, *i));
        loop {
            let mut progress = false;
            for (_, op, outcome) in outcomes.iter_mut() {
                if matches!(outcome, Some(o) if !matches!(o, OpOutcome::Missing(_))) {
                    continue;
                }
                *outcome = Some(match stage.add_op(op) {
                    Ok(Readiness::Ready) => {
                        progress = true;
                        OpOutcome::Stored
                    }
                    Ok(Readiness::Duplicate) => OpOutcome::Duplicate,
                    Ok(Readiness::Missing(m)) => OpOutcome::Missing(m),
                    Err(StoreError::Refused(e)) => OpOutcome::Refused(e),
                    Err(e) => return Err(e),
                });
            }
            let waiting = outcomes
                .iter()
                .any(|(_, _, o)| matches!(o, Some(OpOutcome::Missing(_))));
            if !progress || !waiting {
                break;
            }
        }
        outcomes.sort_by_key(|(i, _, _)| *i);
        let outcomes: Vec<OpOutcome> = outcomes.into_iter().filter_map(|(_, _, o)| o).collect();
        if strict {
            if let Some(OpOutcome::Refused(e)) =
                outcomes.iter().find(|o| matches!(o, OpOutcome::Refused(_)))
            {
                return Err(StoreError::Refused(e.clone()));
            }
        }
        if stage.len() == 0 {
            return Ok(outcomes);
        }
        let staged = stage.finish();
        // The log first: registers never cover a record the log does not hold.
        if let Err(e) = self.log.append(&staged.records) {
            return Err(self.poison_log(e));
        }
        let added = staged.added.len() as u64;
        self.pending.add(staged.batch, added);
        self.ops += added;
        self.summary.extend(staged.heads);
        if let Some(index) = self.index.get_mut() {
            for (offset, op) in &staged.added {
                index.add(*offset, &op.id(), op.op());
            }
        }
        Ok(outcomes)
    }

    /// Writes the register changes held back since the last such write (see `pending.rs`) to
    /// the database now, after syncing the log so the database is never ahead of it. Never
    /// needed for durability or for reads: the store does it every 1,024 ops, before a
    /// rebuild and when it is dropped. An error poisons the store, as any failed write does.
    pub fn settle(&mut self) -> Result<(), StoreError> {
        self.writable()?;
        if self.pending.is_empty() {
            return Ok(());
        }
        if let Err(e) = self.log.sync() {
            return Err(self.poison_log(e));
        }
        let batch = self.pending.batch();
        self.kv.apply(batch).map_err(|e| self.poison(e))?;
        self.pending.clear();
        Ok(())
    }

    /// Makes every stored op durable: one sync of the op log (and of the database when meta
    /// values changed). The registers follow the log and are replayed from it after a crash.
    pub fn flush(&mut self) -> Result<(), StoreError> {
        self.writable()?;
        if let Err(e) = self.log.sync() {
            return Err(self.poison_log(e));
        }
        if self.meta_dirty {
            self.kv.flush().map_err(|e| self.poison(e))?;
            self.meta_dirty = false;
        }
        Ok(())
    }

    /// Saves a meta value (clock state and the like); durable at the next [`Store::flush`].
    pub fn put_meta(&mut self, key: &[u8], value: Vec<u8>) -> Result<(), StoreError> {
        self.writable()?;
        let mut batch = KvBatch::default();
        batch.insert(key.to_vec(), value);
        self.kv.apply(batch).map_err(|e| self.poison(e))?;
        self.meta_dirty = true;
        Ok(())
    }

    /// Reads a meta value.
    pub fn meta(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.pending.get(&*self.kv, key)?)
    }

    /// A contact as apps read it (deleted or not); `None` if never written.
    pub fn contact(&self, id: &ContactId) -> Result<Option<ContactView>, StoreError> {
        let registers = self.contact_registers(id)?;
        if registers.is_empty() {
            return Ok(None);
        }
        Ok(Some(view_of(*id, &registers)))
    }

    /// Every register, grouped by contact in id order.
    fn for_each_contact(
        &self,
        mut f: impl FnMut(ContactId, ContactRegisters),
    ) -> Result<(), StoreError> {
        for pair in self.pending.scan_prefix(&*self.kv, &[keys::CONTACT]) {
            let (k, v) = pair?;
            f(keys::parse_contact(&k)?, keys::parse_contact_value(&v)?);
        }
        Ok(())
    }

    /// Every contact in id order; deleted ones only when asked.
    pub fn contacts(&self, include_deleted: bool) -> Result<Vec<ContactView>, StoreError> {
        let mut out = Vec::new();
        self.for_each_contact(|id, registers| {
            let view = view_of(id, &registers);
            if include_deleted || !view.deleted {
                out.push(view);
            }
        })?;
        Ok(out)
    }

    /// Every conflicted path of every contact.
    pub fn conflicts(&self) -> Result<Vec<(ContactId, FieldConflict)>, StoreError> {
        let mut out = Vec::new();
        self.for_each_contact(|id, registers| {
            let mut conflicts: Vec<FieldConflict> = registers
                .iter()
                .filter_map(|(p, (_, h))| field_conflict(p, h))
                .collect();
            conflicts.sort_by(|a, b| a.path.cmp(&b.path));
            out.extend(conflicts.into_iter().map(|c| (id, c)));
        })?;
        Ok(out)
    }

    /// Every value a path has had, oldest first (in the order that decides the visible
    /// value).
    pub fn history(&self, contact: &ContactId, path: &Path) -> Result<Vec<Version>, StoreError> {
        let heads = self.heads(contact, path)?;
        let mut writes = Vec::new();
        for at in self.index()?.contact(contact) {
            let record = self.log.read(*at)?;
            let op = record.decode_trusted()?;
            for w in op
                .writes
                .iter()
                .filter(|w| w.contact == *contact && w.path == *path)
            {
                writes.push(RegisterWrite::of(&op, record.id, w));
            }
        }
        writes.sort_by_key(|w| w.key);
        Ok(writes
            .iter()
            .map(|w| Version::of(w, heads.is_head(&w.key.op)))
            .collect())
    }

    /// Every path of a contact that has been written.
    pub fn paths(&self, contact: &ContactId) -> Result<Vec<Path>, StoreError> {
        Ok(self.contact_registers(contact)?.into_keys().collect())
    }

    /// The canonical state bytes (equal to [`cardlog_core::Replay::state_bytes`] for the same
    /// ops).
    pub fn state_bytes(&self) -> Result<Vec<u8>, StoreError> {
        let mut out = Vec::new();
        self.write_state(&mut out)?;
        Ok(out)
    }

    /// The blake3 hash of [`Store::state_bytes`] (equal to
    /// [`cardlog_core::Replay::state_digest`] for the same ops), computed one contact at a
    /// time: what comparing two large stores should use.
    pub fn state_digest(&self) -> Result<[u8; 32], StoreError> {
        let mut hasher = blake3::Hasher::new();
        self.write_state(&mut hasher)?;
        Ok(*hasher.finalize().as_bytes())
    }

    /// Writes the state rows contact by contact (contacts in id order, paths in order within
    /// each: the order of the whole state).
    fn write_state(&self, out: &mut impl std::io::Write) -> Result<(), StoreError> {
        self.for_each_contact(|id, registers| {
            write_state(
                registers
                    .iter()
                    .map(|(path, (writes, heads))| (id, path, heads, *writes)),
                out,
            );
        })
    }

    /// Up to `limit` contacts whose id starts with `prefix`, in id order (for unique-prefix
    /// lookups: more than one is ambiguous).
    pub fn contacts_matching(
        &self,
        prefix: &IdPrefix,
        limit: usize,
    ) -> Result<Vec<ContactId>, StoreError> {
        let mut start = vec![keys::CONTACT];
        start.extend(prefix.whole_bytes());
        let mut out: Vec<ContactId> = Vec::new();
        for pair in self.pending.scan_prefix(&*self.kv, &start) {
            let (k, _) = pair?;
            let contact = keys::parse_contact(&k)?;
            if contact.matches(prefix) {
                if out.len() == limit {
                    break;
                }
                out.push(contact);
            }
        }
        Ok(out)
    }

    /// Up to `limit` ops whose id starts with `prefix`, in id order.
    pub fn ops_matching(&self, prefix: &IdPrefix, limit: usize) -> Result<Vec<OpId>, StoreError> {
        let whole = prefix.whole_bytes();
        let index = self.index()?;
        let candidates = index.id_candidates(|first| {
            if prefix.len() <= 16 {
                prefix.matches(first)
            } else {
                whole.get(..8) == Some(first.as_slice())
            }
        });
        let mut out = Vec::new();
        for at in candidates {
            let id = self.log.id_at(at)?;
            if prefix.matches(&id.0) {
                out.push(id);
            }
        }
        out.sort();
        out.dedup();
        out.truncate(limit);
        Ok(out)
    }

    /// The op stored at `offset`, strictly decoded and checked against its recorded id.
    fn op_at_offset(&self, offset: u64) -> Result<SealedOp, StoreError> {
        let record = self.log.read(offset)?;
        record.seal().map_err(StoreError::Damaged)
    }

    /// The op with this id.
    pub fn op(&self, id: &OpId) -> Result<Option<SealedOp>, StoreError> {
        match self.index()?.find(&self.log, id)? {
            Some(at) => Ok(Some(self.op_at_offset(at)?)),
            None => Ok(None),
        }
    }

    /// The op `author` wrote at `seq`, if held.
    pub fn op_by_seq(&self, author: &ReplicaId, seq: u64) -> Result<Option<SealedOp>, StoreError> {
        if self.summary.get(author).is_none_or(|h| seq > h.seq) {
            return Ok(None);
        }
        match self.index()?.at_seq(author, seq) {
            Some(at) => Ok(Some(self.op_at_offset(at)?)),
            None => Err(StoreError::Damaged(format!(
                "op log: {author} seq {seq} is below its head but not in the log"
            ))),
        }
    }

    /// The ops a peer with `summary` lacks, in an order where dependencies come first (the
    /// log's). Work is proportional to what is sent, not to the history.
    pub fn ops_since(
        &self,
        summary: &BTreeMap<ReplicaId, ChainHead>,
    ) -> Result<Vec<SealedOp>, StoreError> {
        // Offsets the index just gave: no need for `ops_at_offsets`' check of each.
        self.offsets_since(summary)?
            .into_iter()
            .map(|at| self.op_at_offset(at))
            .collect()
    }

    /// Where the ops [`Store::ops_since`] returns are in the op log, in the same order: a
    /// sender keeps only these 8 bytes per op and reads a message's worth at a time with
    /// [`Store::ops_at_offsets`].
    pub fn offsets_since(
        &self,
        summary: &BTreeMap<ReplicaId, ChainHead>,
    ) -> Result<Vec<u64>, StoreError> {
        let index = self.index()?;
        let mut offsets = Vec::new();
        for (author, head) in &self.summary {
            let from = summary.get(author).map_or(0, |h| h.seq) + 1;
            if from > head.seq {
                continue;
            }
            let found = index.seq_range(author, from, head.seq);
            if found.len() as u64 != head.seq - from + 1 {
                return Err(StoreError::Damaged(format!(
                    "op log: {author} seqs {from}..={} are not all in the log",
                    head.seq
                )));
            }
            offsets.extend_from_slice(found);
        }
        offsets.sort_unstable();
        Ok(offsets)
    }

    /// The ops at these offsets of the op log (as [`Store::offsets_since`] gives them), each
    /// strictly decoded. An offset where no op of this store starts is an error, not a guess.
    pub fn ops_at_offsets(&self, offsets: &[u64]) -> Result<Vec<SealedOp>, StoreError> {
        let index = self.index()?;
        offsets
            .iter()
            .map(|&at| {
                let op = self.op_at_offset(at)?;
                let (author, seq) = (op.op().author, op.op().seq);
                if index.seq_range(&author, seq, seq) != [at] {
                    return Err(StoreError::Damaged(format!(
                        "byte {at} of the op log holds a record that is not {author}'s op {seq}"
                    )));
                }
                Ok(op)
            })
            .collect()
    }

    /// Every op in the order it was applied, strictly decoded.
    pub fn ops(&self) -> impl Iterator<Item = Result<SealedOp, StoreError>> + '_ {
        self.log.scan(0, self.log.len()).map(|record| {
            let record = record?;
            record.seal().map_err(StoreError::Damaged)
        })
    }

    /// Re-hashes every op, checks every chain, rebuilds the registers from the log and compares
    /// them, the author heads and the watermark with the stored ones.
    pub fn verify(&self) -> Result<VerifyReport, StoreError> {
        self.verify_with(&mut |_| {})
    }

    /// [`Store::verify`], reporting how many ops it has checked every few thousand.
    pub fn verify_with(
        &self,
        progress: &mut dyn FnMut(Progress),
    ) -> Result<VerifyReport, StoreError> {
        let derived = derive(&self.log, progress, self.ops, false)?;
        let mut problems = derived.problems;
        if self.recovery.state_ahead_of_log {
            if let Some(why) = &self.poisoned {
                problems.push(why.clone());
            }
        }
        if let Some(why) = &self.recovery.damaged_tail {
            problems.push(format!(
                "op log past the registers' watermark: {why} (the store is read-only)"
            ));
        }
        if derived.ops != self.ops {
            problems.push(format!(
                "{} ops in the op log but {} counted by the registers' watermark",
                derived.ops, self.ops
            ));
        }
        match self.pending.get(&*self.kv, meta::APPLIED)? {
            Some(v)
                if keys::decode::<(u64, u64)>(&v, "applied watermark").ok()
                    == Some((self.ops, self.log.len())) => {}
            _ => problems.push("the registers' watermark disagrees with the op log".into()),
        }
        if self.pending.get(&*self.kv, meta::REBUILDING)?.is_some() {
            problems.push("a rebuild was interrupted (reopen the store to finish it)".into());
        }
        let mut stored_heads = BTreeMap::new();
        for pair in self.pending.scan_prefix(&*self.kv, &[keys::AUTHOR]) {
            let (k, v) = pair?;
            match keys::parse_author(&k, &v) {
                Ok((author, head)) => {
                    stored_heads.insert(author, head);
                }
                Err(e) => problems.push(e.to_string()),
            }
        }
        if derived.heads != stored_heads {
            problems.push("author heads (summary) disagree with the log".into());
        }
        let mut stored = Registers::new();
        for pair in self.pending.scan_prefix(&*self.kv, &[keys::CONTACT]) {
            let (k, v) = pair?;
            match keys::parse_contact(&k) {
                Ok(contact) => match keys::parse_contact_value(&v) {
                    Ok(registers) => {
                        stored.insert(contact, registers);
                    }
                    Err(e) => problems.push(format!("registers of contact {contact}: {e}")),
                },
                Err(e) => problems.push(format!("register: {e}")),
            }
        }
        if self
            .pending
            .scan_prefix(&*self.kv, &[keys::HEADS_V2])
            .next()
            .is_some()
        {
            problems.push("format-2 register keys are left in the database".into());
        }
        let none = ContactRegisters::new();
        let mut registers = 0u64;
        for (contact, derived_paths) in &derived.registers {
            registers += derived_paths.len() as u64;
            let stored_paths = stored.get(contact).unwrap_or(&none);
            if stored_paths == derived_paths {
                continue;
            }
            for (path, value) in derived_paths {
                if stored_paths.get(path) != Some(value) {
                    problems.push(format!("register {contact}/{path} differs from the log"));
                }
            }
        }
        for (contact, stored_paths) in &stored {
            let derived_paths = derived.registers.get(contact).unwrap_or(&none);
            for path in stored_paths
                .keys()
                .filter(|p| !derived_paths.contains_key(*p))
            {
                problems.push(format!("register {contact}/{path} has no write in the log"));
            }
        }
        Ok(VerifyReport {
            ops: derived.ops,
            authors: derived.heads.len(),
            registers,
            problems,
        })
    }

    /// Makes the registers and author heads those derived from the log, writing only what
    /// differs. Returns the number of ops replayed.
    ///
    /// The whole log is read and checked (every op decodes strictly and hashes to its id)
    /// before anything is written: a damaged log is reported and the state is left as it was.
    /// A `rebuilding` mark is made durable before the first write and removed by the last, so
    /// a crash midway leaves a store whose next [`Store::open`] finishes the rebuild. A failure
    /// once the state is being replaced poisons the store; the mark makes the next open retry.
    pub fn rebuild(&mut self) -> Result<u64, StoreError> {
        self.rebuild_with(&mut |_| {})
    }

    /// [`Store::rebuild`], reporting progress in ops replayed.
    pub fn rebuild_with(&mut self, progress: &mut dyn FnMut(Progress)) -> Result<u64, StoreError> {
        // A log shorter than the registers is the one poisoning rebuild may clear.
        if !self.recovery.state_ahead_of_log {
            self.writable()?;
        }
        // Rebuild compares with (and rewrites) what sled holds: nothing may be held back.
        // (Only a writable store holds anything back.)
        if !self.pending.is_empty() {
            self.settle()?;
        }
        let mut derived = derive(&self.log, progress, self.ops, true)?;
        if derived.broken {
            return Err(StoreError::Damaged(
                derived
                    .problems
                    .first()
                    .cloned()
                    .unwrap_or_else(|| "op log".into()),
            ));
        }
        self.rebuild_state(&derived).map_err(|e| {
            if self.poisoned.is_none() {
                self.poisoned = Some(format!("rebuild failed: {e}"));
            }
            e
        })?;
        if self.recovery.state_ahead_of_log {
            self.recovery.state_ahead_of_log = false;
            self.poisoned = None;
        }
        self.ops = derived.ops;
        self.summary = std::mem::take(&mut derived.heads);
        if let Some(index) = derived.index.take() {
            self.index = OnceLock::from(index);
        }
        progress(Progress {
            done: derived.ops,
            total: derived.ops,
        });
        Ok(derived.ops)
    }

    fn rebuild_state(&mut self, derived: &Derived) -> Result<(), StoreError> {
        // The new watermark covers the whole log: it must be on disk first.
        if let Err(e) = self.log.sync() {
            return Err(self.poison_log(e));
        }
        self.kv
            .apply({
                let mut b = KvBatch::default();
                b.insert(meta::REBUILDING.to_vec(), vec![1]);
                b
            })
            .map_err(|e| self.poison(e))?;
        self.kv.flush().map_err(|e| self.poison(e))?;
        let mut wanted: BTreeMap<Vec<u8>, Vec<u8>> = derived
            .registers
            .iter()
            .map(|(contact, registers)| (keys::contact(contact), keys::contact_value(registers)))
            .collect();
        for (author, head) in &derived.heads {
            wanted.insert(keys::author(author), keys::encode(head));
        }
        let mut batch = KvBatch::default();
        // Format-2 register keys never belong in format 3: any left are removed too.
        for prefix in [keys::AUTHOR, keys::CONTACT, keys::HEADS_V2] {
            let pairs: Result<Vec<_>, KvError> =
                self.pending.scan_prefix(&*self.kv, &[prefix]).collect();
            let pairs = pairs.map_err(|e| self.poison(e))?;
            for (k, v) in pairs {
                match wanted.remove(&k) {
                    Some(want) if want == v => {}
                    Some(want) => batch.insert(k, want),
                    None => batch.remove(k),
                }
                if batch.len() >= REBUILD_CHUNK {
                    let full = std::mem::take(&mut batch);
                    self.kv.apply(full).map_err(|e| self.poison(e))?;
                }
            }
        }
        for (k, v) in wanted {
            batch.insert(k, v);
        }
        batch.insert(
            meta::APPLIED.to_vec(),
            keys::encode(&(derived.ops, self.log.len())),
        );
        batch.remove(meta::REBUILDING.to_vec());
        self.kv.apply(batch).map_err(|e| self.poison(e))?;
        self.kv.flush().map_err(|e| self.poison(e))?;
        Ok(())
    }
}

/// The view apps read of a contact's registers.
pub fn view_of(id: ContactId, registers: &ContactRegisters) -> ContactView {
    contact_view(id, registers.iter().map(|(path, (_, heads))| (path, heads)))
}

impl Drop for Store {
    /// Writes the held-back register changes (after syncing the log), cuts the zeros the
    /// log was extended with ahead of its records, and after a session of many writes
    /// checkpoints sled so the next open need not recover them (best effort: the next open
    /// replays, cuts and recovers otherwise). The checkpoint makes such a close take about as
    /// long as sled's recovery of that session, plus waiting for sled to let go of its lock
    /// (bounded at two seconds): an app closing on its UI thread after a large import should
    /// close elsewhere.
    fn drop(&mut self) {
        // A poisoned store's settle refuses, and one that fails poisons it.
        let _ = self.settle();
        if self.poisoned.is_none() {
            let _ = self.log.trim();
            // After many writes, the next open starts faster (see `Kv::close_checkpointed`).
            let kv = std::mem::replace(&mut self.kv, Box::new(ClosedKv));
            let _ = kv.close_checkpointed();
        }
    }
}

impl OpLookup for Store {
    type Error = StoreError;

    fn contains(&self, op: &OpId) -> Result<bool, StoreError> {
        Ok(self.index()?.find(&self.log, op)?.is_some())
    }

    fn chain_head(&self, author: &ReplicaId) -> Result<Option<ChainHead>, StoreError> {
        Ok(self.summary.get(author).copied())
    }

    fn op_at(&self, author: &ReplicaId, seq: u64) -> Result<Option<OpId>, StoreError> {
        if self.summary.get(author).is_none_or(|h| seq > h.seq) {
            return Ok(None);
        }
        match self.index()?.at_seq(author, seq) {
            Some(at) => Ok(Some(self.log.id_at(at)?)),
            None => Ok(None),
        }
    }

    fn wrote_at(
        &self,
        op: &OpId,
        contact: &ContactId,
        path: &Path,
    ) -> Result<Option<bool>, StoreError> {
        let Some(at) = self.index()?.find(&self.log, op)? else {
            return Ok(None);
        };
        let found = self.log.read(at)?.decode_trusted()?;
        Ok(Some(
            found
                .writes
                .iter()
                .any(|w| w.contact == *contact && w.path == *path),
        ))
    }
}

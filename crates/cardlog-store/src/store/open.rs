//! Creating and opening a store: the marker file, the checks that refuse a directory that is
//! not a store (or not this format) before anything in it is touched, the recovery of the
//! log's tail past the registers' watermark, an interrupted rebuild finished, and the home
//! check that gives a copied or restored store a fresh device id.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path as FsPath, PathBuf};
use std::sync::OnceLock;

use cardlog_core::{BookId, Cutoffs, DeviceId, DeviceKey, SealedOp, SignedTip};

use super::identity::{
    commit_key, read_key, read_key_file, signature_value, stage_key, write_key, KEY_FILE,
};
use super::stage::Stage;
use super::{Database, Keeps, Store, StoreOptions, Withdrawn};
use crate::error::{OpenError, StoreError};
use crate::log::{
    append_sigs, open_sigs, read_sigs, FileLog, LogError, LogIo, OpLog, LOG_FILE, SIGS_FILE,
    SIG_RECORD_BYTES,
};
use crate::state::held::HeldBack;
use crate::state::journal_kv::JournalKv;
use crate::state::keys::{self, meta};
use crate::state::kv::{Kv, KvBatch, KvError};
use crate::state::sled_kv::{lock_is_held, SledKv};

/// The store format this build reads and writes (the marker file and the `format` meta entry).
pub const STORE_FORMAT_VERSION: u8 = 6;

pub(super) const MARKER_FILE: &str = "CARDLOG";
/// The marker of store format 2, which [`Store::open`] upgrades.
pub(super) const MARKER_V2: &str = "cardlog store 2\n";
/// The marker of store format 3, which [`Store::open`] upgrades.
pub(super) const MARKER_V3: &str = "cardlog store 3\n";
/// The marker of store format 4, which [`Store::open`] upgrades.
pub(super) const MARKER_V4: &str = "cardlog store 4\n";
/// The marker of store format 5, which [`Store::open`] upgrades.
pub(super) const MARKER_V5: &str = "cardlog store 5\n";
pub(super) const DB_DIR: &str = "db";

fn marker_text() -> String {
    format!("cardlog store {STORE_FORMAT_VERSION}\n")
}

/// Writes the marker of format `version` at `path` and makes it durable.
pub(super) fn write_marker(path: &FsPath, version: u8) -> std::io::Result<()> {
    std::fs::write(path, format!("cardlog store {version}\n"))?;
    std::fs::File::open(path)?.sync_all()
}

/// Opens the store's database in `db`: the journal it holds ([`Database::Journal`]), else
/// sled's.
pub(super) fn open_database(db: &FsPath, cache_bytes: u64) -> Result<Box<dyn Kv>, KvError> {
    match database_in(db) {
        Database::Journal => Ok(Box::new(JournalKv::open(db)?)),
        Database::Sled => Ok(Box::new(SledKv::open(db, cache_bytes)?)),
    }
}

/// Creates an empty database of the kind `database` in `db` and opens it.
pub(super) fn create_database(
    db: &FsPath,
    database: Database,
    cache_bytes: u64,
) -> Result<Box<dyn Kv>, KvError> {
    match database {
        Database::Sled => Ok(Box::new(SledKv::open(db, cache_bytes)?)),
        Database::Journal => {
            JournalKv::create(db)?;
            Ok(Box::new(JournalKv::open(db)?))
        }
    }
}

/// The kind of database in `db`.
pub(super) fn database_in(db: &FsPath) -> Database {
    if JournalKv::is_journal(db) {
        Database::Journal
    } else {
        Database::Sled
    }
}

pub(super) fn io(path: &FsPath, e: std::io::Error) -> OpenError {
    OpenError::io(path, e)
}

// ---- what a compaction leaves, and the store's gate (store/compact.rs) ---------------------

/// Where a compaction builds its copy of the database.
pub(super) fn building_path(dir: &FsPath) -> PathBuf {
    dir.join(format!("{DB_DIR}.compacting"))
}

/// Where a compaction puts the database it replaces while it swaps them.
pub(super) fn replaced_path(dir: &FsPath) -> PathBuf {
    dir.join(format!("{DB_DIR}.compacted"))
}

/// How a process holds the store's gate ([`gate`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Gate {
    /// For an open or a `repair`: any number at once.
    Shared,
    /// For a compaction's swap of its database: no open under way meanwhile.
    Exclusive,
}

/// The store's gate: a lock on its marker file, which stays where it is whatever happens to
/// `db/` (sled's own lock is on a file inside `db/`, which a compaction renames). Held by
/// every open for as long as it opens, and by a compaction while it renames databases, so an
/// open never looks for `db/` between the two renames (nor creates an empty one there).
/// Waits for the other holders; where the file system has no locks, there is nothing to wait
/// for.
pub(super) fn gate(dir: &FsPath, how: Gate) -> Result<std::fs::File, OpenError> {
    let marker = dir.join(MARKER_FILE);
    let file = std::fs::File::open(&marker).map_err(|e| io(&marker, e))?;
    let locked = match how {
        Gate::Shared => file.lock_shared(),
        Gate::Exclusive => file.lock(),
    };
    match locked {
        Err(e) if e.kind() != std::io::ErrorKind::Unsupported => Err(io(&marker, e)),
        _ => Ok(file),
    }
}

/// Makes the renames in `dir` durable (where directories can be synced: Unix).
pub(super) fn sync_dir(dir: &FsPath) -> Result<(), OpenError> {
    #[cfg(unix)]
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| io(dir, e))?;
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}

/// Removes the directory `path` if it can: what is left is garbage the next open tries again.
pub(super) fn remove_best_effort(path: &FsPath) {
    let _ = std::fs::remove_dir_all(path);
}

/// Undoes a compaction a crash cut off between its two renames (store/compact.rs, step 2):
/// there is no `db/`, the database it replaced is whole beside it. Run under the gate, first.
pub(super) fn recover_compaction(dir: &FsPath) -> Result<(), OpenError> {
    let db = dir.join(DB_DIR);
    let replaced = replaced_path(dir);
    if db.exists() || !replaced.is_dir() {
        return Ok(());
    }
    match std::fs::rename(&replaced, &db) {
        // Another open under the gate put it back first.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && db.is_dir() => Ok(()),
        Err(e) => Err(io(&db, e)),
        Ok(()) => sync_dir(dir),
    }
}

/// Removes what a compaction cut off left beside `db/` (store/compact.rs, steps 1 and 4), best
/// effort: run by an open holding `db/` locked, so no compaction is building a copy of it; a
/// replaced database still locked is its compaction's to remove.
fn remove_compaction_leftovers(dir: &FsPath) {
    remove_best_effort(&building_path(dir));
    let replaced = replaced_path(dir);
    if replaced.is_dir() && !lock_is_held(&replaced) {
        remove_best_effort(&replaced);
    }
}

/// What stands in for the log while [`Store::recover_tail`] reads it: every call fails.
struct Detached;

impl LogIo for Detached {
    fn file_len(&self) -> Result<u64, LogError> {
        Err(LogError::ReadOnly)
    }
    fn read_at(&self, _: &mut [u8], _: u64) -> Result<(), LogError> {
        Err(LogError::ReadOnly)
    }
    fn write_at(&self, _: &[u8], _: u64) -> Result<(), LogError> {
        Err(LogError::ReadOnly)
    }
    fn sync(&self) -> Result<(), LogError> {
        Err(LogError::ReadOnly)
    }
    fn truncate(&self, _: u64) -> Result<(), LogError> {
        Err(LogError::ReadOnly)
    }
}

/// The marker file's text, or `NotAStore` where there is none.
pub(super) fn read_marker(dir: &FsPath) -> Result<String, OpenError> {
    let marker = dir.join(MARKER_FILE);
    match std::fs::read(&marker) {
        Ok(t) => Ok(String::from_utf8_lossy(&t).into_owned()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            Err(OpenError::NotAStore(dir.to_owned()))
        }
        Err(e) => Err(io(&marker, e)),
    }
}

/// Whether `text` is the marker of the format this build writes.
pub(super) fn is_current_marker(text: &str) -> bool {
    text == marker_text()
}

/// Whether `text` is the marker of a format [`Store::open`] upgrades.
pub(super) fn is_older_marker(text: &str) -> bool {
    [MARKER_V2, MARKER_V3, MARKER_V4, MARKER_V5].contains(&text)
}

/// Why a marker that is neither this format's nor one upgraded is refused: another format, or
/// a damaged marker.
pub(super) fn unknown_marker(dir: &FsPath, text: &str) -> OpenError {
    let Some(rest) = text.strip_prefix("cardlog store ") else {
        return OpenError::NotAStore(dir.to_owned());
    };
    // A well-formed marker of another version is another format; anything else that starts
    // like a marker is a damaged one.
    match rest.strip_suffix('\n').map(str::parse::<u8>) {
        Some(Ok(_)) => OpenError::UnknownFormat {
            dir: dir.to_owned(),
            found: text.trim().to_owned(),
            supported: STORE_FORMAT_VERSION,
        },
        _ => OpenError::damaged(format!(
            "{} reads {:?}, not a store marker",
            dir.join(MARKER_FILE).display(),
            text.chars().take(40).collect::<String>()
        )),
    }
}

/// Where the store lives: its canonical path and, on Unix, the device and inode of its database
/// directory. A copy or a restore from backup changes it.
pub(super) fn home_of(dir: &FsPath) -> Vec<u8> {
    let db = dir.join(DB_DIR);
    home_as(&db, &db)
}

/// [`home_of`] the directory `directory` will have once it is renamed to `db` (a rename keeps
/// a directory's device and inode), `db` being where the store's database is now.
pub(super) fn home_as(db: &FsPath, directory: &FsPath) -> Vec<u8> {
    let path = std::fs::canonicalize(db).unwrap_or(db.to_owned());
    #[cfg(unix)]
    let ids = {
        use std::os::unix::fs::MetadataExt;
        std::fs::metadata(directory).map_or((0, 0), |m| (m.dev(), m.ino()))
    };
    #[cfg(not(unix))]
    let ids = (0u64, 0u64);
    keys::encode(&(path.to_string_lossy().into_owned(), ids.0, ids.1))
}

impl Store {
    /// Creates a store in `dir`, which must not exist or be empty, with a new device key.
    pub fn create(dir: &FsPath, options: &StoreOptions) -> Result<Self, OpenError> {
        Self::create_as(dir, options, &DeviceKey::generate()?)
    }

    /// Creates a store in `dir`, which must not exist or be empty, writing as the device
    /// holding `key`: a relay keeps each of its books in a store of its own, all as one device.
    pub fn create_as(
        dir: &FsPath,
        options: &StoreOptions,
        key: &DeviceKey,
    ) -> Result<Self, OpenError> {
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
            DeviceId::random()?.to_string().get(..12).unwrap_or("0")
        ));
        let built = Self::build(&tmp, options, key)
            .and_then(|()| std::fs::rename(&tmp, dir).map_err(|e| io(dir, e)));
        if let Err(e) = built {
            let _ = std::fs::remove_dir_all(&tmp);
            return Err(e);
        }
        // Make the rename itself durable (best effort: not every platform can sync a directory).
        let _ = std::fs::File::open(&parent).and_then(|d| d.sync_all());
        Self::open(dir, options)
    }

    /// Writes a complete new store into `tmp`: the device key, database with format and
    /// device id, an empty op log, then the marker, each made durable.
    fn build(tmp: &FsPath, options: &StoreOptions, key: &DeviceKey) -> Result<(), OpenError> {
        std::fs::create_dir(tmp).map_err(|e| io(tmp, e))?;
        write_key(tmp, key)?;
        let kv = create_database(&tmp.join(DB_DIR), options.database, options.cache_bytes)?;
        let mut batch = KvBatch::default();
        batch.insert(meta::FORMAT.to_vec(), vec![STORE_FORMAT_VERSION]);
        batch.insert(meta::REPLICA.to_vec(), key.device().0.to_vec());
        batch.insert(meta::APPLIED.to_vec(), keys::encode(&(0u64, 0u64)));
        if options.keeps == Keeps::OpsOnly {
            batch.insert(meta::KEEPS.to_vec(), vec![1]);
        }
        kv.apply(batch)?;
        kv.flush()?;
        drop(kv);
        let log = FileLog::open(&tmp.join(LOG_FILE), true)?;
        log.sync()?;
        drop(log);
        let marker = tmp.join(MARKER_FILE);
        write_marker(&marker, STORE_FORMAT_VERSION).map_err(|e| io(&marker, e))?;
        Ok(())
    }

    /// What the store in `dir` keeps, read without opening it and writing nothing: a journal
    /// store's `mkeeps`. A sled store cannot be read without writing (every sled open does):
    /// it reads as [`Keeps::Contacts`], as does anything that is no readable journal store
    /// (an open then says what it is).
    pub fn keeps_in(dir: &FsPath) -> Keeps {
        let db = dir.join(DB_DIR);
        if database_in(&db) != Database::Journal {
            return Keeps::Contacts;
        }
        match JournalKv::read_dir(&db) {
            Ok(found) if found.pairs.get(meta::KEEPS).map(Vec::as_slice) == Some(&[1]) => {
                Keeps::OpsOnly
            }
            _ => Keeps::Contacts,
        }
    }

    /// Opens the store in `dir`. A directory without a store, or with a store of an unknown
    /// format, is refused before anything in it is touched; a store of format 2, 3, 4 or 5 is
    /// upgraded first (`upgrade.rs`).
    pub fn open(dir: &FsPath, options: &StoreOptions) -> Result<Self, OpenError> {
        let mut text = read_marker(dir)?;
        let _gate = gate(dir, Gate::Shared)?;
        recover_compaction(dir)?;
        if text == MARKER_V2 {
            Self::upgrade_from_2(dir, options)?;
            text = MARKER_V3.to_owned();
        }
        if text == MARKER_V3 {
            Self::upgrade_from_3(dir, options)?;
            text = MARKER_V4.to_owned();
        }
        if text == MARKER_V4 {
            Self::upgrade_from_4(dir, options)?;
            text = MARKER_V5.to_owned();
        }
        if text == MARKER_V5 {
            Self::upgrade_from_5(dir, options)?;
        } else if text != marker_text() {
            return Err(unknown_marker(dir, &text));
        }
        let db = dir.join(DB_DIR);
        if !db.is_dir() {
            // Opening sled would create an empty database; a marker without one is damage.
            return Err(OpenError::damaged(format!(
                "{} has a store marker but no {DB_DIR}/ database directory",
                dir.display()
            )));
        }
        let log_path = dir.join(LOG_FILE);
        if !log_path.is_file() {
            return Err(OpenError::damaged(format!(
                "{} has a store marker but no {LOG_FILE} op log",
                dir.display()
            )));
        }
        let kv = open_database(&db, options.cache_bytes)?;
        // Under the database's lock, so no compaction is building beside it.
        remove_compaction_leftovers(dir);
        let log = FileLog::open(&log_path, false)?;
        Self::open_parts(kv, Box::new(log), dir)
    }

    /// Opens this store's directory again in place of this handle, if a write failed while
    /// it was open (a full disk, say): what lets a long-running process, such as a relay, go
    /// on once the disk writes again, without a restart. The old handle's database is closed
    /// first (its lock let go: another process may open the store in that moment, and this
    /// open then fails as `Locked`) and the store read from disk as any open reads it, with
    /// the page cache it had, so nothing the failed write half did survives. Returns whether
    /// it reopened (the reopened store may still refuse writes, for damage its open found:
    /// [`Store::is_poisoned`]). A store refusing writes for damage found when it opened is not
    /// reopened (`Ok(false)`: `rebuild` is its way out). An open that fails (the
    /// disk still full) returns its error and leaves this handle poisoned, readable again if
    /// its database could be opened again; a later call tries again.
    pub fn reopen_if_poisoned(&mut self) -> Result<bool, OpenError> {
        if self.poisoned.is_none() || !self.write_failed {
            return Ok(false);
        }
        let cache_bytes = self.kv.cache_bytes().unwrap_or(super::CACHE_BYTES_DEFAULT);
        let preallocate = self.log.preallocate();
        drop(std::mem::replace(
            &mut self.kv,
            Box::new(crate::state::kv::ClosedKv(Some(cache_bytes))),
        ));
        let options = StoreOptions {
            cache_bytes,
            ..StoreOptions::default()
        };
        let mut fresh = match Store::open(&self.dir, &options) {
            Ok(fresh) => fresh,
            Err(e) => {
                // Reads go on as before the call where the database opens.
                if let Ok(kv) = open_database(&self.dir.join(DB_DIR), cache_bytes) {
                    self.kv = kv;
                }
                return Err(e);
            }
        };
        fresh.log.set_preallocate(preallocate);
        // What this handle's first open found: the store was copied or restored.
        fresh.previous_device = fresh.previous_device.or(self.previous_device);
        // The old handle goes: poisoned, its drop writes nothing.
        *self = fresh;
        Ok(true)
    }

    /// Stops this handle taking writes: what its owner does when it cannot read what it keeps
    /// beside the store after [`Store::reopen_if_poisoned`] (so a later call tries again).
    pub fn refuse_writes(&mut self, why: String) {
        self.poisoned = Some(why);
        self.write_failed = true;
    }

    /// Whether this handle refuses writes: a write failed (until reopened,
    /// [`Store::reopen_if_poisoned`]) or the store was found damaged when it opened.
    pub fn is_poisoned(&self) -> bool {
        self.poisoned.is_some()
    }

    /// Opens a store on an already opened key space and log file (tests use this to inject
    /// faults).
    pub fn open_parts(
        kv: Box<dyn Kv>,
        log: Box<dyn LogIo>,
        dir: &FsPath,
    ) -> Result<Self, OpenError> {
        Self::open_parts_as(kv, log, dir, false)
    }

    /// [`Store::open_parts`]; `read_only`: nothing is written to disk (the key file is read
    /// as it is, the log's torn tail is left in place, the home is not checked) and the store
    /// refuses writes ([`Store::open_read_only`]).
    pub(super) fn open_parts_as(
        kv: Box<dyn Kv>,
        log: Box<dyn LogIo>,
        dir: &FsPath,
        read_only: bool,
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
            .map(DeviceId)
            .ok_or_else(|| OpenError::damaged("replica id does not decode".into()))?;
        let key = if read_only {
            let key = read_key_file(&dir.join(KEY_FILE))?;
            if key.device() != replica {
                return Err(OpenError::damaged(format!(
                    "{KEY_FILE} is the key of device {}, not of {replica}",
                    key.device()
                )));
            }
            key
        } else {
            read_key(dir, replica)?
        };
        let book = match kv.get(meta::BOOK)? {
            None => None,
            Some(v) => Some(BookId(<[u8; 16]>::try_from(v.as_slice()).map_err(
                |_| OpenError::damaged("the address book id does not decode".into()),
            )?)),
        };
        let mut summary = BTreeMap::new();
        for pair in kv.scan_prefix(&[keys::AUTHOR]) {
            let (k, v) = pair?;
            let (author, head) = keys::parse_author(&k, &v)?;
            summary.insert(author, head);
        }
        let (applied_ops, applied_bytes): (u64, u64) = match kv.get(meta::APPLIED)? {
            Some(v) => keys::decode(&v, "applied watermark")?,
            None => {
                return Err(OpenError::damaged(
                    "applied watermark does not decode".into(),
                ))
            }
        };
        let keeps = match kv.get(meta::KEEPS)?.as_deref() {
            None => Keeps::Contacts,
            Some([1]) => Keeps::OpsOnly,
            Some(_) => return Err(OpenError::damaged("mkeeps does not decode".into())),
        };
        let epoch: u64 = match kv.get(meta::EPOCH)? {
            None => 0,
            Some(v) => keys::decode(&v, "rebuild epoch")?,
        };
        let file_len = log.file_len()?;
        let mut store = Self {
            kv,
            log: OpLog::new(log, applied_bytes.min(file_len)),
            index: OnceLock::new(),
            by_contact: OnceLock::new(),
            dir: dir.to_owned(),
            key: Box::new(key),
            device: replica,
            previous_device: None,
            book,
            summary,
            ops: applied_ops,
            poisoned: None,
            write_failed: false,
            meta_dirty: false,
            sigs: None,
            held: HeldBack::default(),
            recovery: Box::new(super::Recovery {
                read_only,
                ..super::Recovery::default()
            }),
            cutoffs: Cutoffs::default(),
            withdrawn: Box::default(),
            noted: None,
            epoch,
            last_record: Box::new(None),
            keeps,
        };
        let offsets: BTreeSet<u64> = store.offsets(meta::WITHDRAWN)?.into_iter().collect();
        // (An offset past a log cut shorter reads as nothing: `verify` names such a log.)
        let ids = offsets
            .iter()
            .filter_map(|at| store.log.id_at(*at).ok().map(|id| (id, *at)))
            .collect();
        store.withdrawn = Box::new(Withdrawn { offsets, ids });
        store.cutoffs = match store.cutoffs_with(&[], &store.log, file_len) {
            Ok(cutoffs) => cutoffs,
            // A relay's book whose op log no longer holds a membership op where its `u` key
            // says (cut shorter, or damaged there): it opens read-only under the membership
            // ops it can read, and says so; `verify` names the difference, `repair` rebuilds
            // the keys from what the log holds.
            Err(e) => {
                store.poisoned = Some(format!(
                    "{e}: the op log lost a membership op (run verify; repair keeps what the \
                     log holds)"
                ));
                store.cutoffs_with(&[], &store.log, file_len)?
            }
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
        if read_only {
            // A removal in the log voided ops replayed before it: the registers in memory are
            // rebuilt (writing nothing to disk either).
            if store.held.get(&*store.kv, meta::REBUILDING)?.is_some() {
                store.rebuild_unchecked(&mut |_| {})?;
            }
            store.ensure_name_index()?;
            store.poisoned = Some("opened read-only".into());
            return Ok(store);
        }
        store.open_signature_log()?;
        store.check_home()?;
        // A rebuild was cut off: the registers are half-built. Finish it from the log. If the
        // log itself is damaged the store still opens, read-only, so `verify` can name the
        // damage.
        if store.held.get(&*store.kv, meta::REBUILDING)?.is_some() && store.poisoned.is_none() {
            match store.rebuild() {
                Ok(_) => {}
                Err(StoreError::Damaged { what, .. }) => {
                    store.poisoned = Some(format!("an interrupted rebuild cannot finish: {what}"));
                }
                Err(e) => return Err(e.into()),
            }
        }
        store.ensure_name_index()?;
        Ok(store)
    }

    /// Reads the log past the registers' watermark: committed records are replayed into the
    /// registers (when `replay`), a torn tail (records after the last commit, cut off by a
    /// crash) is cut away, and damage with valid data after it leaves the store read-only.
    fn recover_tail(&mut self, file_len: u64, replay: bool) -> Result<(), OpenError> {
        let from = self.log.len();
        // Committed records are replayed as they are read, a chunk at a time: a store whose
        // whole log is its tail (a read-only open, a repair) holds a chunk in memory, not the
        // log. (What follows the last commit is decided after: committed records are valid
        // either way.)
        let tail = if replay {
            // The log is read while the rest of the store takes each chunk: it is moved out
            // for the read (`each` only syncs it) and put back whatever happens.
            let log = std::mem::replace(&mut self.log, OpLog::new(Box::new(Detached), 0));
            let mut synced = false;
            let read = log.read_tail(
                from,
                file_len,
                Some(
                    &mut |chunk: Vec<(u64, SealedOp)>| -> Result<(), OpenError> {
                        if !synced {
                            // Those records may still be only in the page cache (a killed
                            // process, bulk mode): sync them before sled's watermark covers them.
                            log.sync()?;
                            synced = true;
                        }
                        self.replay_logged(&chunk, &log, file_len)
                    },
                ),
            );
            self.log = log;
            read?
        } else {
            self.log.read_tail::<OpenError>(from, file_len, None)?
        };
        match &tail.damaged {
            Some(why) => {
                // Valid-looking data follows a damaged record: cutting it away could lose
                // saves.
                self.poisoned = Some(format!(
                    "the op log is damaged past what the registers hold ({why}); run verify"
                ));
                self.recovery.damaged_tail = Some(why.clone());
                self.log.set_len(tail.committed_end);
            }
            None => {
                self.log.set_len(tail.committed_end);
                if tail.committed_end < file_len {
                    self.recovery.torn_bytes = file_len - tail.committed_end;
                    // (A read-only open leaves the file as it is: the length set is enough.)
                    if !self.recovery.read_only {
                        self.log.truncate(tail.committed_end)?;
                    }
                }
            }
        }
        self.recovery.tail_ops = tail.committed_ops;
        if !replay {
            self.ops += tail.committed_ops;
        }
        Ok(())
    }

    /// Replays committed records of the log's tail into the registers: staged, written as one
    /// batch with the watermark after them.
    /// `log` is the store's op log, moved out of it while its tail is read up to `end` (the
    /// file's length): membership ops kept as log offsets, by earlier chunks too, are read
    /// back through it.
    fn replay_logged(
        &mut self,
        ops: &[(u64, SealedOp)],
        log: &OpLog,
        end: u64,
    ) -> Result<(), OpenError> {
        let Some((start, _)) = ops.first() else {
            return Ok(());
        };
        let mut stage = Stage::at(self, *start, self.ops);
        for (offset, op) in ops {
            // A withdrawn record is passed over, as every read of the log does (a repair
            // replays a whole log that may hold some).
            if self.withdrawn.offsets.contains(offset) {
                stage.pass_over(*offset, op);
            } else {
                stage.add_logged(*offset, op)?;
            }
        }
        let mut staged = stage.finish()?;
        // A removal in the tail voids ops already in the registers: rebuilt after (`open`).
        let retraction = self.retraction(&mut staged, log, end)?;
        self.kv.apply(staged.batch)?;
        self.kv.flush()?;
        self.ops += staged.added.len() as u64;
        self.summary.extend(staged.tips);
        if let Some((cutoffs, _)) = retraction {
            self.cutoffs = cutoffs;
        }
        Ok(())
    }

    /// Opens the signature log for appending. A store that has none yet (created by a build
    /// before it existed) gets one holding every received signature its database keeps,
    /// written whole beside it and renamed into place (a failed open leaves none, and the next
    /// open writes it again). A torn last record (a write cut off) is cut away first, so the
    /// records appended after it stay where a reader looks for them.
    fn open_signature_log(&mut self) -> Result<(), OpenError> {
        let path = self.dir.join(SIGS_FILE);
        if database_in(&self.dir.join(DB_DIR)) == Database::Journal {
            return self.retire_signature_log(&path);
        }
        if !path.exists() {
            let mut tips = Vec::new();
            for pair in self.kv.scan_prefix(&[keys::SIGNATURE]) {
                let (k, _) = pair?;
                let Some((author, seq)) = keys::parse_signature(&k) else {
                    continue;
                };
                // (One that does not decode is left to whoever reads it.)
                if author != self.device {
                    if let Ok(Some(tip)) = self.raw_signature(&author, seq) {
                        tips.push(tip);
                    }
                }
            }
            let fresh = self.dir.join(format!("{SIGS_FILE}.new"));
            let _ = std::fs::remove_file(&fresh);
            let (mut file, _) = open_sigs(&fresh).map_err(|e| io(&fresh, e))?;
            append_sigs(&mut file, &tips)
                .and_then(|()| file.sync_all())
                .and_then(|()| std::fs::rename(&fresh, &path))
                .map_err(|e| io(&path, e))?;
            let _ = std::fs::File::open(&self.dir).and_then(|d| d.sync_all());
        }
        let (file, _) = open_sigs(&path).map_err(|e| io(&path, e))?;
        let len = file.metadata().map_err(|e| io(&path, e))?.len();
        let torn = len % SIG_RECORD_BYTES as u64;
        if torn != 0 {
            file.set_len(len - torn)
                .and_then(|()| file.sync_all())
                .map_err(|e| io(&path, e))?;
        }
        self.sigs = Some(file);
        Ok(())
    }

    /// A journal store keeps no signature log: its journal is one already (a record appended
    /// survives a killed process, each is checked by its CRC, and `repair` reads whole records
    /// past damage), so a second copy of each signature would only double their bytes. One
    /// left by a build before (session 36) is read into the journal, which may lack its last
    /// records (the log is appended to first), and removed.
    fn retire_signature_log(&mut self, path: &FsPath) -> Result<(), OpenError> {
        if !path.exists() {
            return Ok(());
        }
        let (tips, _) = read_sigs(path).map_err(|e| io(path, e))?;
        let mut batch = KvBatch::default();
        for tip in tips.iter().filter(|t| t.author != self.device) {
            let key = keys::signature(&tip.author, tip.seq);
            if self.kv.get(&key)?.is_none() {
                batch.insert(key, signature_value(tip));
            }
        }
        if !batch.is_empty() {
            self.kv.apply(batch)?;
            self.kv.flush()?;
        }
        std::fs::remove_file(path).map_err(|e| io(path, e))?;
        let _ = std::fs::File::open(&self.dir).and_then(|d| d.sync_all());
        Ok(())
    }

    /// A store that moved (copied, or restored from a backup) must not keep writing as the
    /// device it was copied from: that device may still be writing the same chain.
    fn check_home(&mut self) -> Result<(), OpenError> {
        let home = home_of(&self.dir);
        let recorded = self.held.get(&*self.kv, meta::HOME)?;
        if recorded.is_none() {
            // The first open after create: record where the store lives.
            let mut batch = KvBatch::default();
            batch.insert(meta::HOME.to_vec(), home);
            self.kv.apply(batch)?;
            self.kv.flush()?;
        } else if recorded.as_deref() != Some(home.as_slice()) {
            // A new identity: a new key, so a new device id (which is not a member of the book
            // until an admin adds it).
            // The new key waits beside the old until the database writes as its device (an open
            // after a crash in between finishes the change, see `read_key`).
            let key = DeviceKey::generate()?;
            let fresh = key.device();
            stage_key(&self.dir, &key)?;
            let mut batch = KvBatch::default();
            // The chain written under the old key is signed with it one last time, and kept:
            // this device signs its own chain only when it sends it, and after this open the
            // old key is gone.
            if let (Some(book), Some(tip)) = (self.book, self.summary.get(&self.device).copied()) {
                let signed = SignedTip {
                    author: self.device,
                    key: self.key.public(),
                    seq: tip.seq,
                    op: tip.op,
                    signature: self.key.sign_tip(&book, &tip.op),
                };
                batch.insert(
                    keys::signature(&self.device, tip.seq),
                    signature_value(&signed),
                );
                // No other copy of it can be made once the old key is gone: into the signature
                // log too, for `repair`.
                if let Some(file) = self.sigs.as_mut() {
                    let path = self.dir.join(SIGS_FILE);
                    append_sigs(file, &[signed])
                        .and_then(|()| file.sync_data())
                        .map_err(|e| io(&path, e))?;
                }
            }
            batch.insert(meta::REPLICA.to_vec(), fresh.0.to_vec());
            batch.insert(meta::HOME.to_vec(), home);
            let mut former = self.held.get(&*self.kv, meta::FORMER)?.unwrap_or_default();
            former.extend_from_slice(&self.device.0);
            batch.insert(meta::FORMER.to_vec(), former);
            self.kv.apply(batch)?;
            self.kv.flush()?;
            commit_key(&self.dir)?;
            *self.key = key;
            self.previous_device = Some(self.device);
            self.device = fresh;
        }
        Ok(())
    }
}

//! The durable store: the op log in its own append-only file, the materialized registers and
//! author heads in sled.
//!
//! Applying ops appends their records to the log and holds their register changes, author
//! heads and the registers' watermark (how much of the log they cover) in memory
//! (`state/held.rs`), where reads see them; they go to sled as one batch every 1,024 ops or so
//! (checked between apply calls), after a sync of the log. A save is durable once
//! [`Store::flush`] has synced the log; the sled side follows, and opening replays the log's
//! tail past the watermark, so after a crash the log and the state always agree. Opening reads
//! the meta entries, one head per author and that tail: its cost does not grow with the
//! history. Lookups by author, id or contact use an
//! in-memory index built from the log the first time one is needed (`log/index.rs`).

//! The files: `open` (create, open, tail recovery, home check), `upgrade` (formats 2, 3 and 4,
//! step by step to 5), `identity` (the device key, the book, signatures, membership ops), `apply` with `stage`
//! (the one write path), `retract` (void ops and their retraction), `read`, `verify` (verify
//! and rebuild) with `derive` (the state re-derived from the log alone), `changes` (which
//! contacts writes changed, live and since a cursor), `names` (the name index pages walk),
//! `salvage` (a store read from its op log alone, and `repair`: a new database built from it).

mod apply;
mod changes;
mod compact;
mod cover;
mod derive;
mod identity;
mod names;
mod open;
mod read;
mod retract;
mod salvage;
mod stage;
mod upgrade;
mod verify;
mod withdraw;

use std::collections::BTreeSet;
use std::path::{Path as FsPath, PathBuf};
use std::sync::OnceLock;

use cardlog_core::replay::{ChainTip, Heads, Missing, OpLookup, Summary};
use cardlog_core::{BookId, ContactId, Cutoffs, DeviceId, DeviceKey, OpId, Path, ReplayError};

pub use changes::{ChangeCursor, ContactChange, CursorParseError, Since, CHANGE_CURSOR_BYTES};
pub use compact::Compacted;
pub use cover::Cover;
pub use derive::Progress;
pub use identity::{read_key_file, write_key_file, KEY_FILE, SIGNATURE_SPACING};
pub use open::STORE_FORMAT_VERSION;
pub use salvage::{LogDamage, RepairReport, RESYNC_BYTES_MAX};
pub use withdraw::Withdrawal;

use crate::error::StoreError;
use crate::log::{ContactIndex, LogError, LogIndex, OpLog};
use crate::state::held::HeldBack;
use crate::state::keys::{self, meta, ContactRegisters};
use crate::state::kv::{ClosedKv, Kv, KvError};

/// Default sled page cache: modest, because sled's own default is 1 GiB.
pub const CACHE_BYTES_DEFAULT: u64 = 32 << 20;

/// The smallest page cache a store opens with: a smaller `cache_bytes` (zero included, which
/// sled itself refuses with a panic) is raised to it. sled counts a page by its bytes on
/// disk, so what a full scan keeps in memory is several times the figure given here
/// (docs/PERFORMANCE.md, "Apps' API").
pub const CACHE_BYTES_MIN: u64 = 64 << 10;

/// How to open a store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreOptions {
    /// sled's page cache size in bytes (at least [`CACHE_BYTES_MIN`]) for the main database;
    /// the name index's database has a cache of its own, a quarter that size (at least the
    /// minimum too).
    pub cache_bytes: u64,
    /// What keeps the state of a store [`Store::create_as`] creates (an open finds what the
    /// store was created with).
    pub database: Database,
    /// What a store [`Store::create_as`] creates keeps besides its op log (an open finds what
    /// the store was created with).
    pub keeps: Keeps,
}

impl Default for StoreOptions {
    fn default() -> Self {
        Self {
            cache_bytes: CACHE_BYTES_DEFAULT,
            database: Database::Sled,
            keeps: Keeps::Contacts,
        }
    }
}

/// What a store keeps in its database besides what passing ops on needs (author heads,
/// signatures, membership, peers and the rest of docs/FORMAT.md's key space).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Keeps {
    /// Every contact's registers and the name index: what a device reads its address book
    /// from.
    #[default]
    Contacts,
    /// No contact state: a relay's copy of a book, which checks and passes ops on and never
    /// reads a contact. Its reads of contacts are refused ([`StoreError::OpsOnly`]); a
    /// read-only open ([`Store::open_read_only`]) replays the log into memory and reads them.
    OpsOnly,
}

/// What keeps a store's state (its registers, author heads, signatures, peers and the rest of
/// docs/FORMAT.md's key space) beside its op log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Database {
    /// sled (`db/`): what a device's store is kept in; it reads a contact without holding
    /// the others in memory.
    #[default]
    Sled,
    /// A journal of batches, every pair in memory while open (`db/journal`,
    /// [`crate::state::JournalKv`]): what a relay keeps each book in, costing the bytes it
    /// holds rather than sled's megabyte of segments per database.
    Journal,
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
    /// Refused by the replay rules (fork, broken chain, bad replace); not
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

/// `{"ok", "ops", "authors", "registers", "problems"}` (`ok`: [`VerifyReport::is_ok`]), as
/// `cardlog verify --json` prints it.
impl serde::Serialize for VerifyReport {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut o = s.serialize_struct("VerifyReport", 5)?;
        o.serialize_field("ok", &self.is_ok())?;
        o.serialize_field("ops", &self.ops)?;
        o.serialize_field("authors", &self.authors)?;
        o.serialize_field("registers", &self.registers)?;
        o.serialize_field("problems", &self.problems)?;
        o.end()
    }
}

/// The durable store. See the module docs.
pub struct Store {
    kv: Box<dyn Kv>,
    log: OpLog,
    index: OnceLock<LogIndex>,
    /// Built apart from `index`: only `history` needs it.
    by_contact: OnceLock<ContactIndex>,
    dir: PathBuf,
    /// The device's key; `device` is its id. Boxed: a key with its precomputed public point
    /// is larger than the rest of the store's fields.
    key: Box<DeviceKey>,
    device: DeviceId,
    previous_device: Option<DeviceId>,
    /// The address book, once founded or joined.
    book: Option<BookId>,
    summary: Summary,
    ops: u64,
    poisoned: Option<String>,
    /// The poison is a write that failed while the store was open (not damage found at
    /// open): opening again may cure it ([`Store::reopen_if_poisoned`]).
    write_failed: bool,
    /// A meta value (or a received signature, also appended to the signature log of a sled
    /// store) was written since the database was last flushed.
    meta_dirty: bool,
    /// The signature log (`log/sigs.rs`), open for appending; `None` in a store opened
    /// read-only and in a journal store (its journal is such a log).
    sigs: Option<std::fs::File>,
    /// Boxed: rarely read, and the store is kept within a replica by value.
    recovery: Box<Recovery>,
    /// Register changes not yet written to the database (see `state/held.rs`).
    held: HeldBack,
    /// Which ops are void under the membership ops held (`retract.rs`).
    cutoffs: Cutoffs,
    /// The log offsets of this device's own ops taken back after a restore (`withdraw.rs`):
    /// every read of the log passes over them.
    /// Boxed: rarely any, and the store is kept by value.
    withdrawn: Box<Withdrawn>,
    /// Changes noted for [`Store::take_changes`] while tracking is on (`changes.rs`).
    noted: Option<Box<changes::Noted>>,
    /// How many rebuilds the state has been through: a change cursor of an earlier epoch
    /// cannot answer (`changes.rs`).
    epoch: u64,
    /// The last record appended by this handle: start, end and op id prefix (`changes.rs`).
    /// Boxed (once, at open): the store is kept by value.
    last_record: Box<Option<(u64, u64, [u8; 16])>>,
    /// Whether the store keeps contact state (`meta::KEEPS`).
    keeps: Keeps,
}

/// The withdrawn ops (`withdraw.rs`): their log offsets and ids.
#[derive(Debug, Default)]
pub(crate) struct Withdrawn {
    pub(crate) offsets: BTreeSet<u64>,
    /// Their ids, each with its offset.
    pub(crate) ids: std::collections::HashMap<OpId, u64>,
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
    /// The store was opened read-only ([`Store::open_read_only`]): its state was replayed from
    /// the op log into memory, its database not opened, and nothing is written.
    pub read_only: bool,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("dir", &self.dir)
            .field("device", &self.device)
            .field("authors", &self.summary.len())
            .finish_non_exhaustive()
    }
}

impl Store {
    /// Whether the store keeps contact state ([`StoreOptions::keeps`] at create).
    pub fn keeps(&self) -> Keeps {
        self.keeps
    }

    /// Refuses a read of contacts in a store that keeps none.
    pub(crate) fn contacts_kept(&self) -> Result<(), StoreError> {
        match self.keeps {
            Keeps::Contacts => Ok(()),
            Keeps::OpsOnly => Err(StoreError::OpsOnly),
        }
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
    pub fn device_id(&self) -> DeviceId {
        self.device
    }

    /// If this open found the store copied or restored, the device id it had before (the store
    /// now writes as a fresh id).
    pub fn previous_device_id(&self) -> Option<DeviceId> {
        self.previous_device
    }

    /// Every device id this store wrote as before it was copied or restored, oldest first
    /// (kept across opens, unlike [`Store::previous_device_id`]).
    pub fn former_device_ids(&self) -> Result<Vec<DeviceId>, StoreError> {
        let bytes = self.held.get(&*self.kv, meta::FORMER)?.unwrap_or_default();
        if !bytes.len().is_multiple_of(16) {
            return Err(StoreError::undecodable("former device ids"));
        }
        Ok(bytes
            .chunks_exact(16)
            .filter_map(|c| <[u8; 16]>::try_from(c).ok())
            .map(DeviceId)
            .collect())
    }

    /// Per author, the last op stored.
    pub fn summary(&self) -> &Summary {
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

    /// Sets how far ahead of its records a small append extends the op log with zeros
    /// ([`crate::log::PREALLOCATE_BYTES`] by default; 0 never). The zeros make a durable save's
    /// sync cheaper (no metadata journal commit) and are cut at close; a store kept open with
    /// few writes (a relay's book among many) keeps them on disk meanwhile.
    pub fn set_log_preallocation(&mut self, bytes: u64) {
        self.log.set_preallocate(bytes);
    }

    fn writable(&self) -> Result<(), StoreError> {
        if self.recovery.read_only {
            return Err(StoreError::ReadOnly);
        }
        match &self.poisoned {
            Some(why) => Err(StoreError::Poisoned(why.clone())),
            None => Ok(()),
        }
    }

    fn poison(&mut self, e: KvError) -> StoreError {
        self.poisoned = Some(e.reason());
        self.write_failed = true;
        StoreError::Engine(e)
    }

    fn poison_log(&mut self, e: LogError) -> StoreError {
        self.poisoned = Some(e.reason());
        self.write_failed = true;
        StoreError::from(e)
    }

    /// The log index, built by one read of the log the first time it is needed.
    fn index(&self) -> Result<&LogIndex, StoreError> {
        if let Some(index) = self.index.get() {
            return Ok(index);
        }
        let built = LogIndex::build(&self.log, &self.withdrawn.offsets)?;
        Ok(self.index.get_or_init(|| built))
    }

    /// The offsets of the ops that wrote to each contact, built on first use as
    /// [`Store::index`] is.
    fn contact_index(&self) -> Result<&ContactIndex, StoreError> {
        if let Some(index) = self.by_contact.get() {
            return Ok(index);
        }
        let built = ContactIndex::build(&self.log, &self.withdrawn.offsets)?;
        Ok(self.by_contact.get_or_init(|| built))
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
        self.contacts_kept()?;
        match self.held.get(&*self.kv, &keys::contact(contact))? {
            Some(v) => keys::parse_contact_value(&v),
            None => Ok(ContactRegisters::new()),
        }
    }
}

/// The bytes of the files under `path` (a store, a relay, any directory; 0 for what cannot
/// be read): what `stats` and a relay's status report as bytes on disk.
pub fn dir_bytes(path: &std::path::Path) -> u64 {
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return 0;
    };
    if !meta.is_dir() {
        return meta.len();
    }
    std::fs::read_dir(path)
        .map(|entries| entries.flatten().map(|e| dir_bytes(&e.path())).sum())
        .unwrap_or(0)
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
            let kv = std::mem::replace(&mut self.kv, Box::new(ClosedKv(None)));
            let _ = kv.close_checkpointed();
        }
    }
}

impl OpLookup for Store {
    type Error = StoreError;

    fn contains(&self, op: &OpId) -> Result<bool, StoreError> {
        Ok(self.index()?.find(&self.log, op)?.is_some())
    }

    fn chain_tip(&self, author: &DeviceId) -> Result<Option<ChainTip>, StoreError> {
        Ok(self.summary.get(author).copied())
    }

    fn op_at(&self, author: &DeviceId, seq: u64) -> Result<Option<OpId>, StoreError> {
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
        Ok(Some(found.write_at(*contact, path).is_some()))
    }
}

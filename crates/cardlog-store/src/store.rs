//! The durable store: the op log and the materialized registers in one ordered key space.
//!
//! Each op is stored with one atomic batch holding its log entry, its index entries, its
//! author's new head and every register it changes, so after a crash the log and the state
//! always agree; a save is durable once [`Store::flush`] returns. Opening reads only the meta
//! entries and one head per author: its cost does not grow with the history.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path as FsPath, PathBuf};

use cardlog_core::replay::Missing;
use cardlog_core::replay::{
    contact_view, field_conflict, state_bytes, ChainHead, ContactView, FieldConflict, Heads,
    OpLookup, Readiness, RegisterWrite, Version, WriteKey,
};
use cardlog_core::{decode_op, ContactId, IdPrefix, OpId, Path, ReplayError, ReplicaId, SealedOp};

use crate::error::{OpenError, StoreError};
use crate::keys::{self, meta, Located};
use crate::kv::{Kv, KvBatch, KvError, SledKv};
use crate::stage::Stage;

/// The store format this build reads and writes (the marker file and the `format` meta entry).
pub const STORE_FORMAT_VERSION: u8 = 1;
/// Default sled page cache: modest, because sled's own default is 1 GiB.
pub const CACHE_BYTES_DEFAULT: u64 = 32 << 20;

const MARKER_FILE: &str = "CARDLOG";
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

/// Ops per batch when `rebuild` replays the log: bounds its memory.
const REBUILD_CHUNK: usize = 16_384;

/// How often (in ops) long operations report progress.
const PROGRESS_EVERY: u64 = 4096;

/// How far a long operation (`verify`, `rebuild`) has got, in units of work.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    /// Units done.
    pub done: u64,
    /// Units in all.
    pub total: u64,
}

/// The registers of a store, by contact and path: write count and heads.
type Registers = BTreeMap<(ContactId, Path), (u64, Heads)>;

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
    dir: PathBuf,
    replica: ReplicaId,
    previous_replica: Option<ReplicaId>,
    summary: BTreeMap<ReplicaId, ChainHead>,
    next_order: u64,
    poisoned: Option<String>,
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

    /// Writes a complete new store into `tmp`: database with format and device id, then the
    /// marker, each made durable.
    fn build(tmp: &FsPath, options: &StoreOptions) -> Result<(), OpenError> {
        std::fs::create_dir(tmp).map_err(|e| io(tmp, e))?;
        let kv = SledKv::open(&tmp.join(DB_DIR), options.cache_bytes)?;
        let mut batch = KvBatch::default();
        batch.insert(meta::FORMAT.to_vec(), vec![STORE_FORMAT_VERSION]);
        batch.insert(meta::REPLICA.to_vec(), ReplicaId::random()?.0.to_vec());
        kv.apply(batch)?;
        kv.flush()?;
        drop(kv);
        let marker = tmp.join(MARKER_FILE);
        std::fs::write(&marker, marker_text()).map_err(|e| io(&marker, e))?;
        std::fs::File::open(&marker)
            .and_then(|f| f.sync_all())
            .map_err(|e| io(&marker, e))?;
        Ok(())
    }

    /// Opens the store in `dir`. A directory without a store, or with a store of another
    /// format, is refused before anything in it is touched.
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
        if text != marker_text() {
            if !text.starts_with("cardlog store ") {
                return Err(OpenError::NotAStore(dir.to_owned()));
            }
            return Err(OpenError::UnknownFormat {
                dir: dir.to_owned(),
                found: text.trim().to_owned(),
                supported: STORE_FORMAT_VERSION,
            });
        }
        let db = dir.join(DB_DIR);
        if !db.is_dir() {
            // Opening sled would create an empty database; a marker without one is damage.
            return Err(OpenError::Corrupt(format!(
                "{} has a store marker but no {DB_DIR}/ database directory",
                dir.display()
            )));
        }
        let kv = SledKv::open(&db, options.cache_bytes)?;
        Self::open_kv(Box::new(kv), dir)
    }

    /// Opens a store on an already opened key space (tests use this to inject faults).
    pub fn open_kv(kv: Box<dyn Kv>, dir: &FsPath) -> Result<Self, OpenError> {
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
        let next_order = match kv.last_with_prefix(&[keys::ORDER])? {
            Some((k, _)) => keys::parse_order(&k)? + 1,
            None => 0,
        };
        let mut store = Self {
            kv,
            dir: dir.to_owned(),
            replica,
            previous_replica: None,
            summary,
            next_order,
            poisoned: None,
        };
        // A store that moved (copied, or restored from a backup) must not keep writing as the
        // device it was copied from: that device may still be writing the same chain.
        let home = home_of(dir);
        let recorded = store.kv.get(meta::HOME)?;
        if recorded.is_none() {
            // The first open after create: record where the store lives.
            let mut batch = KvBatch::default();
            batch.insert(meta::HOME.to_vec(), home);
            store.kv.apply(batch)?;
            store.kv.flush()?;
        } else if recorded.as_deref() != Some(home.as_slice()) {
            let fresh = ReplicaId::random()?;
            let mut batch = KvBatch::default();
            batch.insert(meta::REPLICA.to_vec(), fresh.0.to_vec());
            batch.insert(meta::HOME.to_vec(), home);
            let mut former = store.kv.get(meta::FORMER)?.unwrap_or_default();
            former.extend_from_slice(&store.replica.0);
            batch.insert(meta::FORMER.to_vec(), former);
            store.kv.apply(batch)?;
            store.kv.flush()?;
            store.previous_replica = Some(store.replica);
            store.replica = fresh;
        }
        // A rebuild was cut off: the registers are half-built. Finish it from the log. If the
        // log itself is damaged the store still opens, read-only, so `verify` can name the
        // damage.
        if store.kv.get(meta::REBUILDING)?.is_some() {
            match store.rebuild() {
                Ok(_) => {}
                Err(StoreError::Corrupt(what)) => {
                    store.poisoned = Some(format!(
                        "an interrupted rebuild cannot finish: {what} does not decode"
                    ));
                }
                Err(e) => return Err(e.into()),
            }
        }
        Ok(store)
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
        let bytes = self.kv.get(meta::FORMER)?.unwrap_or_default();
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
        self.next_order
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

    /// The heads at one path.
    pub fn heads(&self, contact: &ContactId, path: &Path) -> Result<Heads, StoreError> {
        Ok(self.register_at(&keys::heads(contact, path))?.1)
    }

    /// The register stored under a heads key (empty if never written).
    pub(crate) fn register_at(&self, heads_key: &[u8]) -> Result<(u64, Heads), StoreError> {
        match self.kv.get(heads_key)? {
            Some(v) => keys::parse_heads_value(&v),
            None => Ok((0, Heads::default())),
        }
    }

    /// Stores one op if it is ready: checked like [`cardlog_core::Replay::insert`], then written
    /// with its state changes in one atomic batch. Not yet durable: see [`Store::flush`].
    /// Returns `Missing` (and stores nothing) when a dependency is absent; a refused op is an
    /// error and nothing is stored.
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
    /// order: ops waiting for a later one are retried until no more can be stored), with one
    /// atomic batch. Ops still missing a dependency, duplicates and refused ops are skipped and
    /// reported, one outcome per op in input order; the others are all stored or, if the engine
    /// fails, none is. Not yet durable: see [`Store::flush`].
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
        let (batch, heads, next_order) = stage.finish();
        if let Err(e) = self.kv.apply(batch) {
            return Err(self.poison(e));
        }
        self.next_order = next_order;
        self.summary.extend(heads);
        Ok(outcomes)
    }

    /// Makes every stored op durable.
    pub fn flush(&mut self) -> Result<(), StoreError> {
        self.writable()?;
        self.kv.flush().map_err(|e| self.poison(e))
    }

    /// Saves a meta value (clock state and the like) without flushing.
    pub fn put_meta(&mut self, key: &[u8], value: Vec<u8>) -> Result<(), StoreError> {
        self.writable()?;
        let mut batch = KvBatch::default();
        batch.insert(key.to_vec(), value);
        self.kv.apply(batch).map_err(|e| self.poison(e))
    }

    /// Reads a meta value.
    pub fn meta(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.kv.get(key)?)
    }

    /// A contact as apps read it (deleted or not); `None` if never written.
    pub fn contact(&self, id: &ContactId) -> Result<Option<ContactView>, StoreError> {
        let mut registers = Vec::new();
        for pair in self.kv.scan_prefix(&keys::heads_prefix(id)) {
            let (k, v) = pair?;
            let (_, path) = keys::parse_heads(&k)?;
            registers.push((path, keys::parse_heads_value(&v)?.1));
        }
        if registers.is_empty() {
            return Ok(None);
        }
        Ok(Some(contact_view(
            *id,
            registers.iter().map(|(p, h)| (p, h)),
        )))
    }

    /// Every register, grouped by contact in id order.
    fn for_each_contact(
        &self,
        mut f: impl FnMut(ContactId, Vec<(Path, u64, Heads)>),
    ) -> Result<(), StoreError> {
        let mut current: Option<ContactId> = None;
        let mut registers = Vec::new();
        for pair in self.kv.scan_prefix(&[keys::HEADS]) {
            let (k, v) = pair?;
            let (contact, path) = keys::parse_heads(&k)?;
            let (writes, heads) = keys::parse_heads_value(&v)?;
            if current != Some(contact) {
                if let Some(c) = current.take() {
                    f(c, std::mem::take(&mut registers));
                }
                current = Some(contact);
            }
            registers.push((path, writes, heads));
        }
        if let Some(c) = current {
            f(c, registers);
        }
        Ok(())
    }

    /// Every contact in id order; deleted ones only when asked.
    pub fn contacts(&self, include_deleted: bool) -> Result<Vec<ContactView>, StoreError> {
        let mut out = Vec::new();
        self.for_each_contact(|id, registers| {
            let view = contact_view(id, registers.iter().map(|(p, _, h)| (p, h)));
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
                .filter_map(|(p, _, h)| field_conflict(p, h))
                .collect();
            conflicts.sort_by(|a, b| a.path.cmp(&b.path));
            out.extend(conflicts.into_iter().map(|c| (id, c)));
        })?;
        Ok(out)
    }

    /// Every value a path has had, oldest first.
    pub fn history(&self, contact: &ContactId, path: &Path) -> Result<Vec<Version>, StoreError> {
        let heads = self.heads(contact, path)?;
        let mut out = Vec::new();
        for pair in self.kv.scan_prefix(&keys::write_prefix(contact, path)) {
            let (_, v) = pair?;
            let w: RegisterWrite = keys::decode(&v, "history entry")?;
            out.push(Version::of(&w, heads.is_head(&w.key.op)));
        }
        Ok(out)
    }

    /// Every path of a contact that has been written.
    pub fn paths(&self, contact: &ContactId) -> Result<Vec<Path>, StoreError> {
        let mut out = Vec::new();
        for pair in self.kv.scan_prefix(&keys::heads_prefix(contact)) {
            let (k, _) = pair?;
            out.push(keys::parse_heads(&k)?.1);
        }
        out.sort();
        Ok(out)
    }

    /// The canonical state bytes (equal to [`cardlog_core::Replay::state_bytes`] for the same
    /// ops).
    pub fn state_bytes(&self) -> Result<Vec<u8>, StoreError> {
        let mut all = Registers::new();
        self.for_each_contact(|id, registers| {
            for (path, writes, heads) in registers {
                all.insert((id, path), (writes, heads));
            }
        })?;
        Ok(state_bytes(
            all.iter().map(|((c, p), (n, h))| (*c, p, h, *n)),
        ))
    }

    fn op_at_order(&self, order_value: &[u8]) -> Result<(u64, SealedOp), StoreError> {
        let (author, seq) = keys::parse_order_value(order_value)?;
        self.load(&author, seq)?
            .ok_or_else(|| StoreError::Corrupt(format!("log entry {author} seq {seq}")))
    }

    fn load(&self, author: &ReplicaId, seq: u64) -> Result<Option<(u64, SealedOp)>, StoreError> {
        let Some(v) = self.kv.get(&keys::log(author, seq))? else {
            return Ok(None);
        };
        let (order, bytes) = keys::split_log_value(&v)?;
        let op = decode_op(bytes)
            .map_err(|e| StoreError::Corrupt(format!("op {author} seq {seq} ({e})")))?;
        Ok(Some((order, op)))
    }

    /// Up to `limit` contacts whose id starts with `prefix`, in id order (for unique-prefix
    /// lookups: more than one is ambiguous).
    pub fn contacts_matching(
        &self,
        prefix: &IdPrefix,
        limit: usize,
    ) -> Result<Vec<ContactId>, StoreError> {
        let mut start = vec![keys::HEADS];
        start.extend(prefix.whole_bytes());
        let mut out: Vec<ContactId> = Vec::new();
        for pair in self.kv.scan_prefix(&start) {
            let (k, _) = pair?;
            let (contact, _) = keys::parse_heads(&k)?;
            if out.last() != Some(&contact) && contact.matches(prefix) {
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
        let mut start = vec![keys::INDEX];
        start.extend(prefix.whole_bytes());
        let mut out = Vec::new();
        for pair in self.kv.scan_prefix(&start) {
            let (k, _) = pair?;
            let id = k
                .get(1..)
                .and_then(|b| <[u8; 32]>::try_from(b).ok())
                .map(OpId)
                .ok_or_else(|| StoreError::Corrupt("op index key".into()))?;
            if id.matches(prefix) {
                if out.len() == limit {
                    break;
                }
                out.push(id);
            }
        }
        Ok(out)
    }

    /// The op with this id.
    pub fn op(&self, id: &OpId) -> Result<Option<SealedOp>, StoreError> {
        let Some(v) = self.kv.get(&keys::index(id))? else {
            return Ok(None);
        };
        let at = keys::parse_index_value(&v)?;
        match self.load(&at.author, at.seq)? {
            Some((_, op)) if op.id() == *id => Ok(Some(op)),
            Some(_) => Err(StoreError::Corrupt(format!(
                "log entry {} seq {} (indexed as op {id}, hashes to another id)",
                at.author, at.seq
            ))),
            None => Err(StoreError::Corrupt(format!(
                "op index entry of {id} (no log entry {} seq {})",
                at.author, at.seq
            ))),
        }
    }

    /// The op `author` wrote at `seq`, if held.
    pub fn op_by_seq(&self, author: &ReplicaId, seq: u64) -> Result<Option<SealedOp>, StoreError> {
        Ok(self.load(author, seq)?.map(|(_, op)| op))
    }

    /// The ops a peer with `summary` lacks, in an order where dependencies come first. Work is
    /// proportional to what is sent, not to the history.
    pub fn ops_since(
        &self,
        summary: &BTreeMap<ReplicaId, ChainHead>,
    ) -> Result<Vec<SealedOp>, StoreError> {
        let mut out = Vec::new();
        for (author, head) in &self.summary {
            let from = summary.get(author).map_or(0, |h| h.seq) + 1;
            if from > head.seq {
                continue;
            }
            let start = keys::log(author, from);
            let end = keys::log(author, u64::MAX);
            for pair in self.kv.range(&start, &end) {
                let (k, v) = pair?;
                let (_, seq) = keys::parse_log(&k)?;
                let (order, bytes) = keys::split_log_value(&v)?;
                let op = decode_op(bytes)
                    .map_err(|e| StoreError::Corrupt(format!("op {author} seq {seq} ({e})")))?;
                out.push((order, op));
            }
        }
        out.sort_by_key(|(order, _)| *order);
        Ok(out.into_iter().map(|(_, op)| op).collect())
    }

    /// Every op in the order it was applied.
    pub fn ops(&self) -> impl Iterator<Item = Result<SealedOp, StoreError>> + '_ {
        self.kv
            .scan_prefix(&[keys::ORDER])
            .map(move |pair| Ok(self.op_at_order(&pair?.1)?.1))
    }

    /// Re-derives the registers from the log alone, applying ops in their stored order.
    fn derive(
        &self,
        progress: &mut dyn FnMut(Progress),
    ) -> Result<(Registers, Vec<String>, u64), StoreError> {
        let mut state = Registers::new();
        let mut problems = Vec::new();
        let mut seen: HashSet<OpId> = HashSet::new();
        let mut heads: BTreeMap<ReplicaId, ChainHead> = BTreeMap::new();
        let mut ops = 0u64;
        for pair in self.kv.scan_prefix(&[keys::ORDER]) {
            let (k, v) = pair?;
            let order = keys::parse_order(&k)?;
            let (author, seq) = keys::parse_order_value(&v)?;
            let loaded = match self.load(&author, seq) {
                Ok(Some(l)) => l,
                Ok(None) => {
                    problems.push(format!(
                        "order {order}: log entry {author} seq {seq} missing"
                    ));
                    continue;
                }
                Err(e) => {
                    problems.push(e.to_string());
                    continue;
                }
            };
            let (stored_order, sealed) = loaded;
            let op = sealed.op();
            let id = sealed.id();
            ops += 1;
            if ops.is_multiple_of(PROGRESS_EVERY) {
                progress(Progress {
                    done: ops,
                    total: self.next_order,
                });
            }
            if stored_order != order || op.author != author || op.seq != seq {
                problems.push(format!(
                    "log entry {author} seq {seq} disagrees with its key or order"
                ));
            }
            let prev = heads.get(&author);
            if prev.map_or(0, |h| h.seq) + 1 != seq || prev.map(|h| h.op) != op.prev {
                problems.push(format!("chain of {author} broken at seq {seq}"));
            }
            if prev.is_some_and(|h| h.hlc >= op.hlc) {
                problems.push(format!(
                    "timestamp of {author} seq {seq} not after its predecessor's"
                ));
            }
            match self.kv.get(&keys::index(&id))? {
                Some(v)
                    if keys::parse_index_value(&v)?
                        == (Located {
                            author,
                            seq,
                            hlc: op.hlc,
                        }) => {}
                _ => problems.push(format!("op index entry of {id} missing or wrong")),
            }
            for w in &op.writes {
                for r in &w.replaces {
                    if !seen.contains(r) {
                        problems.push(format!("op {id} replaces {r}, which is not before it"));
                    }
                }
                let write = RegisterWrite {
                    key: WriteKey {
                        hlc: op.hlc,
                        author,
                        op: id,
                    },
                    seq,
                    value: w.value.clone(),
                    replaces: w.replaces.clone(),
                };
                let history_key = keys::write(&w.contact, &w.path, &write.key);
                if self.kv.get(&history_key)?.as_deref() != Some(keys::encode(&write).as_slice()) {
                    problems.push(format!(
                        "history entry of op {id} at {}/{} missing or wrong",
                        w.contact, w.path
                    ));
                }
                let entry = state.entry((w.contact, w.path.clone())).or_default();
                entry.0 += 1;
                entry.1.apply(write);
            }
            seen.insert(id);
            heads.insert(
                author,
                ChainHead {
                    seq,
                    op: id,
                    hlc: op.hlc,
                },
            );
        }
        if self.kv.get(meta::REBUILDING)?.is_some() {
            problems.push("a rebuild was interrupted (reopen the store to finish it)".into());
        }
        if heads != self.summary {
            problems.push("author heads (summary) disagree with the log".into());
        }
        Ok((state, problems, ops))
    }

    /// Re-hashes every op, checks every chain and index entry, rebuilds the registers from the
    /// log and compares them with the stored ones.
    pub fn verify(&self) -> Result<VerifyReport, StoreError> {
        self.verify_with(&mut |_| {})
    }

    /// [`Store::verify`], reporting how many ops it has checked every few thousand.
    pub fn verify_with(
        &self,
        progress: &mut dyn FnMut(Progress),
    ) -> Result<VerifyReport, StoreError> {
        let (derived, mut problems, ops) = self.derive(progress)?;
        let logged = self.kv.scan_prefix(&[keys::LOG]).count() as u64;
        if logged != ops {
            problems.push(format!(
                "{logged} log entries but {ops} ops in application order"
            ));
        }
        let mut stored = Registers::new();
        self.for_each_contact(|id, registers| {
            for (path, writes, heads) in registers {
                stored.insert((id, path), (writes, heads));
            }
        })?;
        let registers = derived.len() as u64;
        for (key, value) in &derived {
            if stored.get(key) != Some(value) {
                problems.push(format!("register {}/{} differs from the log", key.0, key.1));
            }
        }
        for key in stored.keys().filter(|k| !derived.contains_key(*k)) {
            problems.push(format!(
                "register {}/{} has no write in the log",
                key.0, key.1
            ));
        }
        let writes: u64 = derived.values().map(|(n, _)| n).sum();
        let history = self.kv.scan_prefix(&[keys::WRITE]).count() as u64;
        if history != writes {
            problems.push(format!(
                "{history} history entries but {writes} writes in the log"
            ));
        }
        Ok(VerifyReport {
            ops,
            authors: self.summary.len(),
            registers,
            problems,
        })
    }

    /// Replaces the registers and history with ones derived from the log, in bounded chunks.
    /// Returns the number of ops replayed.
    ///
    /// A `rebuilding` mark is made durable first and removed by the last batch, so a crash
    /// midway leaves a store whose next [`Store::open`] finishes the rebuild: the state is never
    /// trusted half-built, and memory stays bounded by the chunk size, not the history.
    ///
    /// The whole log is read and checked (every op decodes strictly and hashes to its id) before
    /// anything is removed: a damaged log is reported and the state is left as it was. A failure
    /// once the state is being replaced poisons the store; the mark makes the next open retry.
    pub fn rebuild(&mut self) -> Result<u64, StoreError> {
        self.rebuild_with(&mut |_| {})
    }

    /// [`Store::rebuild`], reporting progress: the log check counts the first half of the
    /// work, the replay the second.
    pub fn rebuild_with(&mut self, progress: &mut dyn FnMut(Progress)) -> Result<u64, StoreError> {
        self.writable()?;
        self.check_log(progress)?;
        self.rebuild_state(progress).map_err(|e| {
            if self.poisoned.is_none() {
                self.poisoned = Some(format!("rebuild failed: {e}"));
            }
            e
        })
    }

    /// Reads every op in application order, strictly decoded and re-hashed.
    fn check_log(&self, progress: &mut dyn FnMut(Progress)) -> Result<(), StoreError> {
        let mut expected = 0u64;
        for pair in self.kv.scan_prefix(&[keys::ORDER]) {
            let (k, v) = pair?;
            let order = keys::parse_order(&k)?;
            if order != expected {
                return Err(StoreError::Corrupt(format!(
                    "application order: entry {order} where {expected} was expected"
                )));
            }
            self.op_at_order(&v)?;
            expected += 1;
            if expected.is_multiple_of(PROGRESS_EVERY) {
                progress(Progress {
                    done: expected,
                    total: self.next_order * 2,
                });
            }
        }
        if expected != self.next_order {
            return Err(StoreError::Corrupt(format!(
                "application order: {expected} entries, {} expected",
                self.next_order
            )));
        }
        Ok(())
    }

    fn rebuild_state(&mut self, progress: &mut dyn FnMut(Progress)) -> Result<u64, StoreError> {
        self.put_meta(meta::REBUILDING, vec![1])?;
        self.flush()?;
        for prefix in [keys::HEADS, keys::WRITE] {
            loop {
                let mut batch = KvBatch::default();
                for pair in self.kv.scan_prefix(&[prefix]).take(REBUILD_CHUNK) {
                    batch.remove(pair?.0);
                }
                if batch.is_empty() {
                    break;
                }
                self.kv.apply(batch).map_err(|e| self.poison(e))?;
            }
        }
        let mut replayed = 0u64;
        while replayed < self.next_order {
            let mut chunk = Vec::with_capacity(REBUILD_CHUNK);
            let start = keys::order(replayed);
            let end = keys::order(self.next_order);
            for pair in self.kv.range(&start, &end).take(REBUILD_CHUNK) {
                chunk.push(self.op_at_order(&pair?.1)?.1);
            }
            if chunk.is_empty() {
                return Err(StoreError::Corrupt(format!(
                    "application order: no op at {replayed} of {}",
                    self.next_order
                )));
            }
            let mut stage = Stage::new(self);
            for op in &chunk {
                stage.add_state(op)?;
            }
            let (batch, _, _) = stage.finish();
            self.kv.apply(batch).map_err(|e| self.poison(e))?;
            replayed += chunk.len() as u64;
            progress(Progress {
                done: self.next_order + replayed,
                total: self.next_order * 2,
            });
        }
        let mut batch = KvBatch::default();
        batch.remove(meta::REBUILDING.to_vec());
        self.kv.apply(batch).map_err(|e| self.poison(e))?;
        self.flush()?;
        Ok(replayed)
    }
}

impl OpLookup for Store {
    type Error = StoreError;

    fn contains(&self, op: &OpId) -> Result<bool, StoreError> {
        Ok(self.kv.get(&keys::index(op))?.is_some())
    }

    fn chain_head(&self, author: &ReplicaId) -> Result<Option<ChainHead>, StoreError> {
        Ok(self.summary.get(author).copied())
    }

    fn op_at(&self, author: &ReplicaId, seq: u64) -> Result<Option<OpId>, StoreError> {
        match self.kv.get(&keys::log(author, seq))? {
            Some(v) => Ok(Some(OpId::of_bytes(keys::split_log_value(&v)?.1))),
            None => Ok(None),
        }
    }

    fn wrote_at(
        &self,
        op: &OpId,
        contact: &ContactId,
        path: &Path,
    ) -> Result<Option<bool>, StoreError> {
        let Some(v) = self.kv.get(&keys::index(op))? else {
            return Ok(None);
        };
        let at = keys::parse_index_value(&v)?;
        let key = WriteKey {
            hlc: at.hlc,
            author: at.author,
            op: *op,
        };
        Ok(Some(
            self.kv.get(&keys::write(contact, path, &key))?.is_some(),
        ))
    }
}

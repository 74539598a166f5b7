//! Compaction: the store's database copied, in key order, into a fresh one that takes its
//! place ([`Store::compact`]).
//!
//! sled 0.34 reclaims a segment only once at most half of it is live, so a database whose
//! contacts are rewritten keeps several times what it holds (docs/PERFORMANCE.md, "A store's
//! database compacted"); a fresh database written in key order keeps about twice. Nothing is
//! derived again: every pair (meta, peers, signatures, registers, the name index) is copied as
//! it is, and the copy is read back against the original before it replaces it. The op log is
//! not touched. A journal database (a relay's book) compacts itself and is left as it is.
//!
//! The swap, and what an open finds after a crash at each step ([`recover`], which every open
//! runs first):
//!
//! 1. The copy is built and flushed in `db.compacting`: an open removes it.
//! 2. `db` is renamed `db.compacted`: there is no `db`, and an open renames it back.
//! 3. `db.compacting` is renamed `db`: an open removes `db.compacted`.
//! 4. `db.compacted` is removed.
//!
//! A compaction holds the old database open, so locked, until step 4: a process opening the
//! store meanwhile gets [`OpenError::Locked`], and [`recover`] leaves alone a directory whose
//! lock is held.
//!
//! The database directory's identity is what tells a store copied or restored from one that
//! stayed (`open.rs`, `check_home`): a store that has not moved records its new database's
//! home at the open that ends the compaction, one copied keeps the home it had, so that the
//! open still gives it a new device id (as `repair` does).

use std::path::{Path as FsPath, PathBuf};

use super::open::{database_in, home_of, DB_DIR};
use super::{dir_bytes, Database, Store, StoreOptions};
use crate::error::OpenError;
use crate::state::keys::meta;
use crate::state::kv::{Kv, KvBatch};
use crate::state::sled_kv::lock_is_held;
use crate::state::SledKv;

/// Pairs per batch of the copy: sled's memory grows with a batch's size
/// (docs/PERFORMANCE.md, "An index built at open").
const COPY_BATCH: usize = 1_024;

/// What [`Store::compact`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Compacted {
    /// Bytes of the database directory before (`ops.log` is not counted: it is not touched).
    pub before: u64,
    /// Bytes of the database directory after.
    pub after: u64,
    /// Pairs copied.
    pub pairs: u64,
    /// Bytes of their keys and values.
    pub live: u64,
    /// Whether the database is a journal, which compacts itself: nothing was done.
    pub journal: bool,
}

/// Where a compaction builds the copy.
fn building_path(dir: &FsPath) -> PathBuf {
    dir.join(format!("{DB_DIR}.compacting"))
}

/// Where a compaction puts the old database while it swaps them.
fn old_path(dir: &FsPath) -> PathBuf {
    dir.join(format!("{DB_DIR}.compacted"))
}

fn io(path: &FsPath, e: std::io::Error) -> OpenError {
    OpenError::io(path, e)
}

/// Makes the renames in `dir` durable.
fn sync_dir(dir: &FsPath) -> Result<(), OpenError> {
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| io(dir, e))
}

/// Finishes or undoes a compaction a crash cut off (module docs), before an open reads the
/// database: a directory another process holds locked is left alone.
pub(super) fn recover(dir: &FsPath) -> Result<(), OpenError> {
    let db = dir.join(DB_DIR);
    let old = old_path(dir);
    let building = building_path(dir);
    if !db.exists() && old.is_dir() {
        if lock_is_held(&old) {
            return Err(OpenError::Locked(old.join("db")));
        }
        // Cut off between its two renames: the old database is whole.
        std::fs::rename(&old, &db).map_err(|e| io(&db, e))?;
        sync_dir(dir)?;
    }
    for leftover in [old, building] {
        if leftover.is_dir() && db.is_dir() && !lock_is_held(&leftover) {
            std::fs::remove_dir_all(&leftover).map_err(|e| io(&leftover, e))?;
        }
    }
    Ok(())
}

impl Store {
    /// Rewrites the database of the store in `dir` in key order into a fresh one that takes
    /// its place (module docs): the same pairs in about half the bytes of a database whose
    /// contacts were rewritten many times. The store must not be open elsewhere
    /// ([`OpenError::Locked`]). It is opened once first (an upgrade, the replay of its log's
    /// tail happen there) and once after (which checks the copy opens). Cut off anywhere,
    /// the next open finds the store as it was or compacted, never without a database.
    pub fn compact(dir: &FsPath, options: &StoreOptions) -> Result<Compacted, OpenError> {
        let db = dir.join(DB_DIR);
        let before = dir_bytes(&db);
        drop(Store::open(dir, options)?);
        if database_in(&db) == Database::Journal {
            return Ok(Compacted {
                journal: true,
                ..Compacted::default()
            });
        }
        let home = home_of(dir);
        let old = SledKv::open(&db, options.cache_bytes)?;
        let building = building_path(dir);
        if building.exists() {
            std::fs::remove_dir_all(&building).map_err(|e| io(&building, e))?;
        }
        let copied = copy(&old, &building, options.cache_bytes, &home);
        let (pairs, live) = match copied {
            Ok(counts) => counts,
            Err(e) => {
                let _ = std::fs::remove_dir_all(&building);
                return Err(e);
            }
        };
        // 2 and 3: the swap. `old` stays open (locked) until the copy is in place.
        let aside = old_path(dir);
        std::fs::rename(&db, &aside).map_err(|e| io(&aside, e))?;
        sync_dir(dir)?;
        std::fs::rename(&building, &db).map_err(|e| io(&db, e))?;
        sync_dir(dir)?;
        drop(old);
        std::fs::remove_dir_all(&aside).map_err(|e| io(&aside, e))?;
        let after = dir_bytes(&db);
        // The open that records the new home. A process that opened the store since the swap
        // has recorded it already.
        match Store::open(dir, options) {
            Ok(store) => drop(store),
            Err(OpenError::Locked(_)) => {}
            Err(e) => return Err(e),
        }
        Ok(Compacted {
            before,
            after,
            pairs,
            live,
            journal: false,
        })
    }
}

/// Step 1: every pair of `old` copied into a new database in `building`, in key order and
/// batches of [`COPY_BATCH`], flushed, then read back against `old`, and closed. The home is
/// left out where it is the store's own (module docs). Returns the pairs and their bytes.
fn copy(
    old: &SledKv,
    building: &FsPath,
    cache_bytes: u64,
    home: &[u8],
) -> Result<(u64, u64), OpenError> {
    // What the copy leaves out: the home of a store that has not moved.
    let unmoved = old.get(meta::HOME)?.as_deref() == Some(home);
    let skip = |key: &[u8]| unmoved && key == meta::HOME;
    let new = SledKv::open(building, cache_bytes)?;
    let (mut pairs, mut live) = (0u64, 0u64);
    let mut batch = KvBatch::default();
    for pair in old.scan_prefix(&[]) {
        let (k, v) = pair?;
        if skip(&k) {
            continue;
        }
        pairs += 1;
        live += (k.len() + v.len()) as u64;
        batch.insert(k, v);
        if batch.len() >= COPY_BATCH {
            new.apply(std::mem::take(&mut batch))?;
        }
    }
    new.apply(batch)?;
    new.flush()?;
    // Read back: the same pairs in the same order, or the copy is not used.
    let mut theirs = old
        .scan_prefix(&[])
        .filter(|p| !matches!(p, Ok((k, _)) if skip(k)));
    let mut ours = new.scan_prefix(&[]);
    loop {
        match (theirs.next().transpose()?, ours.next().transpose()?) {
            (None, None) => break,
            (a, b) if a == b => continue,
            (a, b) => {
                let key = |p: &Option<(Vec<u8>, Vec<u8>)>| {
                    p.as_ref()
                        .map_or("the end".to_owned(), |(k, _)| format!("key {k:02x?}"))
                };
                return Err(OpenError::damaged(format!(
                    "the compacted copy of the database differs from it (the copy holds {} \
                     where the database holds {}); the database was left as it is",
                    key(&b),
                    key(&a)
                )));
            }
        }
    }
    drop(ours);
    Box::new(new).close_checkpointed()?;
    Ok((pairs, live))
}

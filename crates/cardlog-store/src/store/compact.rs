//! Compaction: the store's database copied, in key order, into a fresh one that takes its
//! place ([`Store::compact`]).
//!
//! sled 0.34 reclaims a segment only once at most half of it is live, so a database whose
//! contacts are rewritten keeps several times what it holds (docs/PERFORMANCE.md, "A store's
//! database compacted"); a fresh database written in key order keeps about twice. Nothing is
//! derived again: every pair (meta, peers, signatures, registers, the name index) is copied as
//! it is, but for the home (below) and a contact value still in format 5's encoding (a store
//! upgraded from format 5), which is packed as a save would write it
//! (`contact_value::packed`). The op log is not touched. A journal database (a relay's
//! book) compacts itself and is left as it is.
//!
//! The old database is held open, so locked, from before the copy is built until it is
//! removed, and the store's gate (`open.rs`, `gate`: a lock on the marker file, which every
//! open holds while it opens) is held exclusively around the two renames, so no open looks
//! for `db/` between them. The steps, and what an open finds after a crash at each:
//!
//! 1. The copy is built in `db.compacting`, flushed, closed, every file and directory in it
//!    synced, then opened again and read back against the old database (through a fresh
//!    open: from its files), and closed. An open (which holds `db/` locked by then, so no
//!    compaction is building) removes it.
//! 2. `db` is renamed `db.compacted`: there is no `db`, and an open renames it back
//!    (`open.rs`, `recover_compaction`, first thing under the gate; `repair` too).
//! 3. `db.compacting` is renamed `db`; the store is opened once (a copy that does not open is
//!    swapped back out, the old database in again, unless another process opened it).
//! 4. `db.compacted` is removed (best effort): an open that finds it unlocked removes it.
//!
//! The database directory's identity is what tells a store copied or restored from one that
//! stayed (`open.rs`, `check_home`). The compaction's first open gives a copied store its new
//! device id as any open does; the copy's `mhome` is then the home the new directory will
//! have at `db/` (its device and inode, which the rename keeps), so the open after still finds
//! the store where it was.

use std::path::Path as FsPath;

use super::open::{
    building_path, database_in, gate, home_as, io, read_marker, remove_best_effort, replaced_path,
    sync_dir, Gate, DB_DIR,
};
use super::{dir_bytes, Database, Store, StoreOptions};
use crate::error::OpenError;
use crate::state::contact_value;
use crate::state::keys::{self, meta};
use crate::state::kv::{Kv, KvBatch};
use crate::state::sled_kv::lock_is_held;
use crate::state::SledKv;

/// Pairs per batch of the copy: sled's memory grows with a batch's size
/// (docs/PERFORMANCE.md, "An index built at open").
const COPY_BATCH: usize = 1_024;

/// The copy takes the database's place only when it is smaller by at least a
/// `SHRINK_MIN_DIVISOR`th, or packed values ([`Compacted::packed`]): a smaller saving is not
/// worth a new database directory (a backup taken before it, restored in place, is then taken
/// for a copy of the store: a new device id). A database written in key order, or compacted
/// just before, is kept as it is.
const SHRINK_MIN_DIVISOR: u64 = 16;

/// What [`Store::compact`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
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
    /// Whether the copy was set aside and the database kept as it was: the copy (of
    /// `copy_bytes`) was not smaller by a sixteenth, and packed no value.
    pub kept: bool,
    /// Bytes of the copy built (0 for a journal).
    pub copy_bytes: u64,
    /// Contact values the copy holds packed that the database held in store format 5's
    /// encoding (a store upgraded from format 5): a copy that packs any takes the database's
    /// place whatever its size.
    pub packed: u64,
}

/// Syncs every file and directory under `path`: sled syncs its data file, not its `conf`
/// nor the directory entries of a database it created.
fn sync_tree(path: &FsPath) -> Result<(), OpenError> {
    for entry in std::fs::read_dir(path).map_err(|e| io(path, e))? {
        let entry = entry.map_err(|e| io(path, e))?;
        let at = entry.path();
        if entry.file_type().map_err(|e| io(&at, e))?.is_dir() {
            sync_tree(&at)?;
        } else {
            std::fs::File::open(&at)
                .and_then(|f| f.sync_all())
                .map_err(|e| io(&at, e))?;
        }
    }
    sync_dir(path)
}

impl Store {
    /// Rewrites the database of the store in `dir` in key order into a fresh one that takes
    /// its place (module docs): the same pairs in about half the bytes of a database whose
    /// contacts were rewritten many times. A copy that saves less than a sixteenth and packs
    /// no value is thrown away and the database kept ([`Compacted::kept`]). The store must
    /// not be open elsewhere
    /// ([`OpenError::Locked`]). It is opened once first (an upgrade, the replay of its log's
    /// tail, a new device id for a copied store happen there) and once with the copy in
    /// place. Cut off anywhere, the next open finds the store as it was or compacted, never
    /// without a database. A `db/` that is a symbolic link is refused (the swap would replace
    /// the link with a directory).
    pub fn compact(dir: &FsPath, options: &StoreOptions) -> Result<Compacted, OpenError> {
        read_marker(dir)?;
        let db = dir.join(DB_DIR);
        if std::fs::symlink_metadata(&db).is_ok_and(|m| m.file_type().is_symlink()) {
            return Err(OpenError::Refused(format!(
                "{} is a symbolic link: compact would put a directory in its place",
                db.display()
            )));
        }
        let before = dir_bytes(&db);
        drop(Store::open(dir, options)?);
        if database_in(&db) == Database::Journal {
            return Ok(Compacted {
                journal: true,
                ..Compacted::default()
            });
        }
        let old = SledKv::open(&db, options.cache_bytes)?;
        let building = building_path(dir);
        // Under `old`'s lock: no other compaction builds beside this one.
        remove_best_effort(&building);
        let (pairs, live, packed) = match build(&old, dir, &building, options.cache_bytes) {
            Ok(counts) => counts,
            Err(e) => {
                remove_best_effort(&building);
                return Err(e);
            }
        };
        let (copy_bytes, now) = (dir_bytes(&building), dir_bytes(&db));
        if packed == 0 && copy_bytes >= now - now / SHRINK_MIN_DIVISOR {
            remove_best_effort(&building);
            return Ok(Compacted {
                before,
                after: now,
                pairs,
                live,
                journal: false,
                kept: true,
                copy_bytes,
                packed,
            });
        }
        // 2 and 3: the swap, `old` open (locked) throughout, and no open under way
        // meanwhile (the store's gate: an open that started before waits for `old`'s lock
        // and gives up as `Locked`; one that starts during the swap waits for it).
        let aside = replaced_path(dir);
        {
            let _gate = gate(dir, Gate::Exclusive)?;
            std::fs::rename(&db, &aside).map_err(|e| io(&aside, e))?;
            sync_dir(dir)?;
            std::fs::rename(&building, &db).map_err(|e| io(&db, e))?;
            sync_dir(dir)?;
        }
        match Store::open(dir, options) {
            // Opened elsewhere since the swap: it opens.
            Ok(_) | Err(OpenError::Locked(_)) => {}
            Err(e) => {
                // The copy does not open: the old database goes back in its place, unless
                // a process opened the copy meanwhile (then it opens after all).
                let _gate = gate(dir, Gate::Exclusive)?;
                if !lock_is_held(&db) {
                    std::fs::rename(&db, &building).map_err(|e| io(&building, e))?;
                    std::fs::rename(&aside, &db).map_err(|e| io(&db, e))?;
                    sync_dir(dir)?;
                    return Err(e);
                }
            }
        }
        let after = dir_bytes(&db);
        drop(old);
        // Best effort: the next open removes what is left.
        remove_best_effort(&aside);
        Ok(Compacted {
            before,
            after,
            pairs,
            live,
            journal: false,
            kept: false,
            copy_bytes,
            packed,
        })
    }
}

/// Step 1: every pair of `old` copied into a new database in `building`, in key order and
/// batches of [`COPY_BATCH`], the home as it will be once `building` is the store's `db/`;
/// flushed, closed and synced; then opened again and read back against `old`. Returns the
/// pairs, their bytes, and how many contact values were packed.
fn build(
    old: &SledKv,
    dir: &FsPath,
    building: &FsPath,
    cache_bytes: u64,
) -> Result<(u64, u64, u64), OpenError> {
    let new = SledKv::open(building, cache_bytes)?;
    let home = home_as(&dir.join(DB_DIR), building);
    // `old`'s pair as the copy holds it.
    let copied = |(k, v): (Vec<u8>, Vec<u8>)| -> (Vec<u8>, Vec<u8>) {
        if k == meta::HOME {
            return (k, home.clone());
        }
        if k.first() == Some(&keys::CONTACT) {
            if let Some(packed) = contact_value::packed(&v) {
                return (k, packed);
            }
        }
        (k, v)
    };
    let (mut pairs, mut live, mut packed) = (0u64, 0u64, 0u64);
    let mut batch = KvBatch::default();
    for pair in old.scan_prefix(&[]) {
        let (k, v) = pair?;
        let mark = |v: &[u8]| v.first() == Some(&contact_value::MARK);
        let was_packed = mark(&v);
        let (k, v) = copied((k, v));
        if k.first() == Some(&keys::CONTACT) && !was_packed && mark(&v) {
            packed += 1;
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
    Box::new(new).close_checkpointed()?;
    sync_tree(building)?;
    // Read back from disk: the same pairs in the same order, or the copy is not used.
    let new = SledKv::open(building, cache_bytes)?;
    let mut theirs = old.scan_prefix(&[]).map(|p| p.map(copied));
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
    Ok((pairs, live, packed))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    /// An open that starts while a compaction swaps databases waits for the swap: it never
    /// looks for `db/` between the two renames (where it would find none, or make an empty
    /// one there), and opens the database in place once the gate is let go.
    #[test]
    fn an_open_waits_for_the_swap() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("s");
        let device = Store::create(&dir, &StoreOptions::default())
            .unwrap()
            .device_id();
        let db = dir.join(DB_DIR);
        let aside = replaced_path(&dir);
        let swap = gate(&dir, Gate::Exclusive).unwrap();
        std::fs::rename(&db, &aside).unwrap();
        let opener = {
            let dir = dir.clone();
            std::thread::spawn(move || {
                Store::open(&dir, &StoreOptions::default()).map(|s| s.device_id())
            })
        };
        std::thread::sleep(std::time::Duration::from_millis(300));
        assert!(!opener.is_finished(), "the open went on during the swap");
        assert!(!db.exists(), "the open made a database");
        std::fs::rename(&aside, &db).unwrap();
        drop(swap);
        assert_eq!(opener.join().unwrap().unwrap(), device);
    }
}

//! Throwaway replicas for the `vcard_import` target. cardlog-vcard imports only into a
//! [`Replica`], and a replica lives in a directory (sled), so each run gets a fresh one in a
//! scratch folder (under /dev/shm when there is one, so the store's fsyncs cost little); each
//! replica's directory is removed when it is dropped, the (then empty) per-process folder by the
//! stable driver on exit.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use cardlog::{Options, Replica};
use cardlog_core::FakeClock;

/// Wall time the scratch replicas' clock reads (2026-11-22), ms since the epoch.
const NOW_MS: u64 = 1_795_338_000_000;

/// A fresh replica in its own scratch directory, removed on drop.
pub struct ScratchReplica {
    replica: Option<Replica>,
    dir: PathBuf,
}

impl ScratchReplica {
    /// The replica.
    pub fn replica(&mut self) -> &mut Replica {
        match self.replica.as_mut() {
            Some(r) => r,
            None => unreachable!("the replica is only taken on drop"),
        }
    }
}

impl Drop for ScratchReplica {
    fn drop(&mut self) {
        drop(self.replica.take());
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn scratch_root() -> PathBuf {
    let shm = PathBuf::from("/dev/shm");
    let base = if shm.is_dir() {
        shm
    } else {
        std::env::temp_dir()
    };
    base.join(format!("cardlog-fuzz-{}", std::process::id()))
}

/// A fresh, empty replica on a fixed fake clock.
///
/// # Panics
///
/// When the scratch directory cannot be written: the target cannot run at all then.
pub fn scratch_replica() -> ScratchReplica {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let dir = scratch_root().join(format!("r{}", NEXT.fetch_add(1, Ordering::Relaxed)));
    let _ = std::fs::remove_dir_all(&dir);
    let options = Options {
        wall: Arc::new(FakeClock::new(NOW_MS)),
        cache_bytes: 1 << 20,
        ..Options::default()
    };
    match Replica::create_with(&dir, options) {
        Ok(replica) => ScratchReplica {
            replica: Some(replica),
            dir,
        },
        Err(e) => panic!("creating a scratch replica in {}: {e}", dir.display()),
    }
}

/// Removes this process's scratch folder (the stable driver calls it on exit).
pub fn remove_scratch_root() {
    let _ = std::fs::remove_dir_all(scratch_root());
}

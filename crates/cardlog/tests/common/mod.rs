//! Helpers shared by the facade's integration tests: replicas on a fake clock, sample
//! contacts, one in-process session, re-sealing a tampered segment message as a forger who
//! knows the format would (sync.rs, hostile.rs), a small deterministic random source and
//! numeric environment knobs (crash.rs, crash_sync.rs, damage.rs).
#![allow(
    dead_code,
    clippy::unwrap_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::path::Path as FsPath;
use std::sync::Arc;
use std::time::Duration;

use cardlog::sync_layer::transport::channel_pair;
use cardlog::{
    Contact, ContactId, Field, MemberRole, Options, Replica, Role, SyncError, SyncReport,
};
use cardlog_core::FakeClock;

/// The store in `dir` opened again on a disk that fails every write once `budget` (shared by
/// its database and its op log) is spent: the fault-injection point of the tests of a full
/// disk.
pub fn on_failing_disk(
    dir: &FsPath,
    options: Options,
    budget: &Arc<std::sync::atomic::AtomicU64>,
) -> Replica {
    use cardlog_store::log::{FaultyLog, FileLog, LOG_FILE};
    use cardlog_store::state::{FaultyKv, SledKv};
    let kv = FaultyKv::sharing(
        SledKv::open(&dir.join("db"), cardlog::CACHE_BYTES_DEFAULT).unwrap(),
        budget.clone(),
    );
    let log = FaultyLog::sharing(
        FileLog::open(&dir.join(LOG_FILE), false).unwrap(),
        budget.clone(),
    );
    let store = cardlog_store::Store::open_parts(Box::new(kv), Box::new(log), dir).unwrap();
    Replica::from_store(store, options).unwrap()
}

/// 2026-11-22T09:00:00Z.
pub const NINE_MS: u64 = 1_795_338_000_000;
pub const TIMEOUT: Duration = Duration::from_secs(20);

/// The default options, reading wall time from `clock`.
pub fn options(clock: &Arc<FakeClock>) -> Options {
    Options {
        wall: clock.clone(),
        ..Options::default()
    }
}

/// A new replica in `dir` reading its wall time from `clock`, founding its own address book.
pub fn replica(dir: &FsPath, clock: &Arc<FakeClock>) -> Replica {
    Replica::create_with(dir, options(clock)).unwrap()
}

/// The store in `dir` opened again, reading its wall time from `clock`.
pub fn reopen(dir: &FsPath, clock: &Arc<FakeClock>) -> Replica {
    Replica::open_with(dir, options(clock)).unwrap()
}

/// A new replica in `dir` reading its wall time from `clock`, a writer of `admin`'s address
/// book: `admin` adds it, and it takes what `admin` holds.
pub fn member_of(admin: &mut Replica, dir: &FsPath, clock: &Arc<FakeClock>) -> Replica {
    joined_as(admin, dir, clock, MemberRole::Write)
}

/// A new replica in `dir` reading its wall time from `clock`, the relay of `admin`'s address
/// book (the members' time reference): `admin` adds it, and it takes what `admin` holds.
pub fn relay_of(admin: &mut Replica, dir: &FsPath, clock: &Arc<FakeClock>) -> Replica {
    joined_as(admin, dir, clock, MemberRole::Relay)
}

fn joined_as(
    admin: &mut Replica,
    dir: &FsPath,
    clock: &Arc<FakeClock>,
    role: MemberRole,
) -> Replica {
    let mut r = Replica::join_with(
        dir,
        admin.book(),
        Options {
            wall: clock.clone(),
            ..Options::default()
        },
    )
    .unwrap();
    admin.add_member(r.id(), role, "test device").unwrap();
    r.pull_from(admin).unwrap();
    r
}

/// Contact `n` with a given name.
pub fn person(n: u8, given: &str) -> Contact {
    let mut c = Contact::new(ContactId([n; 16]));
    c.set(Field::Given, given);
    c
}

/// `key`'s signature of `op` as the tip of its chain in `book` (its author being `key`'s
/// device), as a device signing its own chain gives it.
pub fn signed_tip(
    key: &cardlog_core::DeviceKey,
    book: &cardlog::BookId,
    op: &cardlog::SealedOp,
) -> cardlog::SignedTip {
    cardlog::SignedTip {
        author: key.device(),
        key: key.public(),
        seq: op.op().seq,
        op: op.id(),
        signature: key.sign_tip(book, &op.id()),
    }
}

/// One session over the in-process channel, `a` initiating.
pub fn session(a: &mut Replica, b: &mut Replica) -> (SyncReport, SyncReport) {
    let (mut ea, mut eb) = channel_pair(TIMEOUT);
    std::thread::scope(|s| {
        let h = s.spawn(|| b.sync_over(Role::Responder, &mut eb).unwrap());
        let x = a.sync_over(Role::Initiator, &mut ea).unwrap();
        (x, h.join().unwrap())
    })
}

/// One session over the in-process channel that must fail on both sides, `a` initiating:
/// each side's error.
pub fn failed_session(a: &mut Replica, b: &mut Replica) -> (SyncError, SyncError) {
    let (mut ea, mut eb) = channel_pair(TIMEOUT);
    std::thread::scope(|s| {
        let h = s.spawn(|| b.sync_over(Role::Responder, &mut eb).unwrap_err());
        let x = a.sync_over(Role::Initiator, &mut ea).unwrap_err();
        drop(ea);
        (x, h.join().unwrap())
    })
}

/// Recomputes a segment message's checksum (written here independently of the sync crate).
pub fn reseal_segments(segments: &mut [u8]) {
    let n = segments.len() - 16;
    let sum = blake3::Hasher::new_derive_key("cardlog 2026-11-23 segment checksum v1")
        .update(&segments[..n])
        .finalize();
    segments[n..].copy_from_slice(&sum.as_bytes()[..16]);
}

/// xorshift64: small and deterministic (kill times, damage offsets, actions).
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed.max(1))
    }

    pub fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> Option<&'a T> {
        let i = usize::try_from(self.below(items.len() as u64)).unwrap();
        items.get(i)
    }
}

/// The number in environment variable `var`, if set (a test knob; not a number panics).
pub fn env_number<T: std::str::FromStr>(var: &str) -> Option<T> {
    std::env::var(var).ok().map(|s| {
        s.parse()
            .unwrap_or_else(|_| panic!("{var}={s} is not a number"))
    })
}

/// Copies a directory tree (a closed store, or its sled database).
pub fn copy_dir(from: &FsPath, to: &FsPath) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

/// Restores `backup` (a copy of a closed store) into `dir` in place, as a phone restore or
/// `rsync -a --delete` does: the directories stay (same inodes), files the backup lacks go, and
/// every file of the backup is written over the one in place.
pub fn restore_in_place(backup: &FsPath, dir: &FsPath) {
    remove_extra(backup, dir);
    copy_dir(backup, dir);
}

fn remove_extra(backup: &FsPath, dir: &FsPath) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        let kept = backup.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            if kept.is_dir() {
                remove_extra(&kept, &entry.path());
            } else {
                std::fs::remove_dir_all(entry.path()).unwrap();
            }
        } else if !kept.is_file() {
            std::fs::remove_file(entry.path()).unwrap();
        }
    }
}

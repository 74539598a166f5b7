//! Durable stores for the store benchmarks, built from a [`FieldEdits`] stream through the
//! public [`Replica`] API and cached on disk.
//!
//! A million-op store takes a while to build, so [`cached`] keeps built stores under
//! `target/bench-stores/<workload version>/` and reuses them on later runs. The version names
//! the generator and the store format: change either and the old stores are simply not found,
//! never measured by mistake. A store counts as built only once its `.ready` marker (written
//! after the replica was closed cleanly) exists; a half-built one is thrown away and rebuilt.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cardlog::{Options, Replica, CACHE_BYTES_DEFAULT};
use cardlog_core::FakeClock;

use crate::{Error, FieldEdits, FieldEditsConfig};

/// Bump when [`FieldEdits`] or the contents of the cached stores change (3: the name index in
/// a database of its own, of version 3; a store cached before would build it at every copy's
/// first open, inside the timed region).
const GENERATOR_VERSION: u32 = 3;

/// Contacts in every benchmark store: an address book of ordinary size, edited over and over
/// to make the history long.
pub const CONTACTS: usize = 1_000;

/// Ops per [`Replica::apply`] call when building a store.
pub const BUILD_CHUNK: usize = 10_000;

/// The cache key of the stores: generator version and store format version.
pub fn workload_version() -> String {
    format!(
        "field-edits-{GENERATOR_VERSION}-store-{}",
        cardlog_store::STORE_FORMAT_VERSION
    )
}

/// The workload of an `ops`-op benchmark store: [`CONTACTS`] contacts, then single-field edits.
pub fn config(ops: usize) -> FieldEditsConfig {
    FieldEditsConfig::new(CONTACTS.min(ops), ops)
}

/// Replica options for the benchmarks: `cache_bytes` of sled page cache and a fake wall clock
/// reading the end of the `config` stream, so applying it reports no clock skew and local saves
/// come after it.
pub fn options(config: &FieldEditsConfig, cache_bytes: u64) -> Options {
    Options {
        cache_bytes,
        wall: Arc::new(FakeClock::new(FieldEdits::end_ms(config))),
        ..Options::default()
    }
}

/// [`options`] with the default cache size.
pub fn default_options(config: &FieldEditsConfig) -> Options {
    options(config, CACHE_BYTES_DEFAULT)
}

/// Creates a replica in `dir` and applies the whole `config` stream to it in bulk mode,
/// `chunk` ops per [`Replica::apply`] call, flushing once at the end.
pub fn build(
    dir: &Path,
    config: &FieldEditsConfig,
    options: Options,
    chunk: usize,
) -> Result<Replica, Error> {
    let mut replica = Replica::create_with(dir, options)?;
    // The stream's author writes in the replica's book.
    replica.add_member(
        crate::device_id(config.author),
        cardlog::MemberRole::Write,
        "generated",
    )?;
    let book = replica.book();
    let mut edits = FieldEdits::new(config);
    let mut bulk = replica.bulk();
    loop {
        let ops = edits.next_chunk(chunk.max(1))?;
        if ops.is_empty() {
            break;
        }
        let report = bulk.apply(&ops, &crate::sign_generated(book, &ops))?;
        if report.stored != ops.len() {
            return Err(
                format!("stored {} of {} ops: {report:?}", report.stored, ops.len()).into(),
            );
        }
    }
    bulk.finish()?;
    Ok(replica)
}

/// Where cached stores live: `$CARDLOG_BENCH_STORES` if set, else `bench-stores` in the cargo
/// target directory, in a folder named by [`workload_version`].
pub fn cache_root() -> PathBuf {
    let base = match std::env::var_os("CARDLOG_BENCH_STORES") {
        Some(dir) => PathBuf::from(dir),
        None => std::env::var_os("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"))
            .join("bench-stores"),
    };
    base.join(workload_version())
}

/// A temporary directory beside the cached stores (same file system), removed when dropped.
pub fn scratch() -> Result<tempfile::TempDir, Error> {
    let root = cache_root();
    std::fs::create_dir_all(&root)?;
    Ok(tempfile::tempdir_in(root)?)
}

/// The directory of the cached `ops`-op store (see [`config`]), building it first if it is not
/// there yet. Returns the directory and whether it was built now.
pub fn cached(ops: usize) -> Result<(PathBuf, bool), Error> {
    cached_as(&format!("ops-{ops}"), &config(ops))
}

/// The directory of the cached store `name`, holding the whole `config` stream, building it
/// first if it is not there yet. Returns the directory and whether it was built now. Different
/// workloads need different names: the name is the only cache key besides
/// [`workload_version`].
pub fn cached_as(name: &str, config: &FieldEditsConfig) -> Result<(PathBuf, bool), Error> {
    let root = cache_root();
    let dir = root.join(name);
    let ready = root.join(format!("{name}.ready"));
    if ready.exists() && dir.exists() {
        return Ok((dir, false));
    }
    if dir.exists() {
        std::fs::remove_dir_all(&dir)?;
    }
    std::fs::create_dir_all(&root)?;
    let replica = build(&dir, config, default_options(config), BUILD_CHUNK)?;
    let expected = config.ops as u64 + MEMBERSHIP_OPS;
    if replica.op_count() != expected {
        return Err(format!("built {} ops, expected {expected}", replica.op_count()).into());
    }
    drop(replica);
    // Opened once so that whatever sled does on its first reopen is not in a measurement.
    drop(open_timed(&dir, &default_options(config))?);
    std::fs::write(&ready, format!("{}\n", workload_version()))?;
    Ok((dir, true))
}

/// How long [`open_timed`] waits for a just-closed replica's lock.
const LOCK_WAIT: Duration = Duration::from_secs(5);

/// Opens the replica in `dir` and returns it with the time the successful open took.
///
/// sled 0.34 releases its file lock from a background thread some time after the handle is
/// dropped (sled issue #1289), so an open right after a close can fail with "could not acquire
/// lock". The store retries that itself now (`SledKv::open`, 10 ms apart, inside the time
/// measured here), so callers that reopen in one process pause after the close; should the
/// error still come out, the attempt is retried here for up to five seconds and not counted.
/// The number of such failed attempts is returned too.
pub fn open_timed(dir: &Path, options: &Options) -> Result<(Replica, Duration, u32), Error> {
    let first = Instant::now();
    let mut failed = 0;
    loop {
        let start = Instant::now();
        match Replica::open_with(dir, options.clone()) {
            Ok(replica) => return Ok((replica, start.elapsed(), failed)),
            Err(e @ cardlog::OpenError::Locked(_)) => {
                if first.elapsed() > LOCK_WAIT {
                    return Err(e.into());
                }
                failed += 1;
                std::thread::sleep(Duration::from_millis(1));
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// Ops a store [`build`] makes besides the stream's: the book's founding op and the op
/// adding the stream's author.
pub const MEMBERSHIP_OPS: u64 = 2;

/// Admits copies of the store in `template` (each a new device: a copy takes a new key) to
/// its book, with one op of the template's founder adding them all, applied to each copy.
/// The bench acts as that founder by reading its key file: setup, never timed.
pub fn admit_copies(template: &Path, copies: &mut [&mut Replica]) -> Result<(), Error> {
    admit(template, copies, &[])
}

/// [`admit_copies`], admitting `others` too (devices that do not hold the history: the op is
/// not applied to them).
pub fn admit(
    template: &Path,
    copies: &mut [&mut Replica],
    others: &[cardlog::DeviceId],
) -> Result<(), Error> {
    let seed: [u8; 32] = std::fs::read(template.join(cardlog_store::KEY_FILE))?
        .try_into()
        .map_err(|_| "the template's key file is not 32 bytes")?;
    let key = cardlog_core::DeviceKey::from_seed(&seed);
    let founder = key.device();
    let Some(first) = copies.first() else {
        return Ok(());
    };
    let book = first.book();
    let tip = *first
        .summary()
        .get(&founder)
        .ok_or("the template's founder wrote nothing")?;
    let op = cardlog_core::Op {
        author: founder,
        seq: tip.seq + 1,
        prev: Some(tip.op),
        hlc: tip.hlc.successor(),
        writes: Vec::new(),
        members: copies
            .iter()
            .map(|c| c.id())
            .chain(others.iter().copied())
            .map(|device| cardlog_core::MemberChange::Add {
                device,
                role: cardlog::MemberRole::Write,
                name: "bench copy".into(),
            })
            .collect(),
    }
    .seal()?;
    let signed = cardlog::SignedTip {
        author: founder,
        key: key.public(),
        seq: op.op().seq,
        op: op.id(),
        signature: key.sign_tip(&book, &op.id()),
    };
    for copy in copies.iter_mut() {
        copy.apply(std::slice::from_ref(&op), &[signed])?;
    }
    Ok(())
}

/// Copies the directory tree `from` to `to` (which must not exist). Returns the bytes copied.
pub fn copy_dir(from: &Path, to: &Path) -> Result<u64, Error> {
    std::fs::create_dir_all(to)?;
    let mut bytes = 0;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            bytes += copy_dir(&entry.path(), &target)?;
        } else {
            bytes += std::fs::copy(entry.path(), &target)?;
        }
    }
    Ok(bytes)
}

/// The total size of the files under `dir`.
pub fn dir_bytes(dir: &Path) -> Result<u64, Error> {
    dir_total(dir, &|meta| meta.len())
}

/// The sum of `per_file` over the files under `dir`, recursively.
pub fn dir_total(dir: &Path, per_file: &dyn Fn(&std::fs::Metadata) -> u64) -> Result<u64, Error> {
    let mut total = 0;
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let meta = entry.metadata()?;
        total += if meta.is_dir() {
            dir_total(&entry.path(), per_file)?
        } else {
            per_file(&meta)
        };
    }
    Ok(total)
}

/// A store's two sled databases (`db`, a store's `db/` directory, and its `names/` inside),
/// opened with sled alone, configured and opened as `SledKv::open` does (its segment sizes,
/// `cache` split 4:1, side by side): what the figures binaries measure sled with.
pub fn open_sled_pair(db: &Path, cache: u64) -> Result<(sled::Db, sled::Db), Error> {
    use cardlog_store::state::sled_kv::{MAIN_SEGMENT_BYTES, NAMES_DIR, NAMES_SEGMENT_BYTES};
    let config = |path: &Path, cache: u64, segment: usize| {
        sled::Config::new()
            .path(path)
            .cache_capacity(cache.max(cardlog_store::CACHE_BYTES_MIN))
            .segment_size(segment)
    };
    let names_dir = db.join(NAMES_DIR);
    let (main, names) = std::thread::scope(|scope| {
        let main = scope.spawn(|| config(db, cache, MAIN_SEGMENT_BYTES).open());
        let names = config(&names_dir, cache / 4, NAMES_SEGMENT_BYTES).open();
        (main.join(), names)
    });
    let main = main.map_err(|_| "sled panicked opening the main database")??;
    Ok((main, names?))
}

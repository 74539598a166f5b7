//! A store its database cannot serve: read from the op log alone ([`Store::open_read_only`]),
//! and mended with a new database built from the op log ([`Store::repair`]).
//!
//! Everything in the database but the meta entries, peer records and received signatures is
//! derived from `ops.log` (docs/FORMAT.md, "Store"), so the log alone gives back every
//! contact. A read-only open replays it into memory and writes nothing anywhere: it works on a
//! read-only mount, on a full disk, and beside a database sled cannot open. `repair` builds a
//! new database, carries over what it can read of the old one (which is kept aside, never
//! deleted), and salvages the ops found past damage in the log.

use std::path::{Path as FsPath, PathBuf};

use cardlog_core::{BookId, DeviceId, MemberChange, SealedOp};

use super::identity::{read_key, read_key_file, KEY_FILE};
use super::open::{
    home_of, is_current_marker, is_older_marker, read_marker, unknown_marker, DB_DIR,
};
use super::{Store, StoreOptions, STORE_FORMAT_VERSION};
use crate::error::{OpenError, StoreError};
use crate::log::{read_sigs, FileLog, LogError, LogIo, OpLog, Read, LOG_FILE, SIGS_FILE};
use crate::state::keys::{self, meta};
use crate::state::kv::{Kv, KvBatch};
use crate::state::mem_kv::MemKv;
use crate::state::sled_kv::{lock_is_held, SledKv};
use crate::OpOutcome;

/// How many bytes past a damaged record `repair` searches for the next whole record, in all.
pub const RESYNC_BYTES_MAX: u64 = 16 << 20;

/// What [`Store::repair`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct RepairReport {
    /// Ops in the new database (the op log's, replayed, plus those salvaged past damage).
    pub ops: u64,
    /// Where the database that was replaced now lies (`db.damaged-N`), if there was one.
    pub set_aside: Option<PathBuf>,
    /// What was carried over from the old database (meta entry names, and counts of peer
    /// records and signatures).
    pub kept: Vec<String>,
    /// What could not be carried over, in words.
    pub lost: Vec<String>,
    /// Damage found in the op log, if any.
    pub log_damage: Option<LogDamage>,
    /// What `verify` finds after the repair: empty when the store is sound.
    pub problems: Vec<String>,
}

/// Damage in the middle of the op log, and what `repair` made of what follows it.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct LogDamage {
    /// Where the log was cut: the end of the last whole committed record before the damage.
    pub at: u64,
    /// What is wrong there.
    pub why: String,
    /// Bytes of log from `at` to its end.
    pub bytes_after: u64,
    /// Whole records found past `at` (each hashing to its id).
    pub records_after: u64,
    /// Of them, stored again (every op they build on is held).
    pub salvaged: u64,
    /// Of them, not stored: they build on ops lost in the damage. Another device holding
    /// them gives them back at the next sync.
    pub waiting: u64,
    /// Of the records not stored, those this device wrote. If no other device holds them
    /// (they never synced), the copy of the log set aside is the only one.
    pub own_waiting: u64,
    /// Whether the search for whole records past the damage stopped at
    /// [`RESYNC_BYTES_MAX`] before the log's end.
    pub search_stopped: bool,
    /// The whole log as it was before the repair.
    pub set_aside: PathBuf,
}

/// The first free `NAME.damaged-N` beside `path`.
fn aside_path(path: &FsPath) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut n = 1u64;
    loop {
        let candidate = path.with_file_name(format!("{name}.damaged-{n}"));
        if !candidate.exists() {
            return candidate;
        }
        n += 1;
    }
}

fn io(path: &FsPath, e: std::io::Error) -> OpenError {
    OpenError::io(path, e)
}

/// The address book the log's founding op founds, if the log holds one (only a book's ops are
/// in its store's log, so the first founding op is the book's).
fn book_in_log(log: &OpLog) -> Result<Option<BookId>, OpenError> {
    let mut scan = log.scan(0, log.len());
    loop {
        match scan.next_read()? {
            Read::Record(r) => {
                let Ok(op) = r.decode_trusted() else { continue };
                for change in &op.members {
                    if let MemberChange::Found { nonce, key, .. } = change {
                        return Ok(Some(BookId::founded_by(key, nonce)));
                    }
                }
            }
            Read::End | Read::Bad { .. } => return Ok(None),
        }
    }
}

/// The meta entries a new database starts from: format, device, an empty watermark and the
/// book.
fn seed(device: DeviceId, book: Option<BookId>) -> Vec<(Vec<u8>, Vec<u8>)> {
    let mut pairs = vec![
        (meta::FORMAT.to_vec(), vec![STORE_FORMAT_VERSION]),
        (meta::REPLICA.to_vec(), device.0.to_vec()),
        (meta::APPLIED.to_vec(), keys::encode(&(0u64, 0u64))),
    ];
    if let Some(book) = book {
        pairs.push((meta::BOOK.to_vec(), book.0.to_vec()));
    }
    pairs
}

/// Refuses anything but a store of this build's format (an older one is upgraded by an open
/// for writing, which neither a read-only open nor a repair is).
fn check_current(dir: &FsPath, what: &str) -> Result<(), OpenError> {
    let text = read_marker(dir)?;
    if is_current_marker(&text) {
        return Ok(());
    }
    if is_older_marker(&text) {
        return Err(OpenError::Refused(format!(
            "{} holds store format {}: {what} reads format {STORE_FORMAT_VERSION} only; \
             open the store for writing once to upgrade it",
            dir.display(),
            text.trim().trim_start_matches("cardlog store "),
        )));
    }
    Err(unknown_marker(dir, &text))
}

/// What `repair` read of the old database: the entries it carries over.
#[derive(Default)]
struct Salvaged {
    pairs: Vec<(Vec<u8>, Vec<u8>)>,
    kept: Vec<String>,
    lost: Vec<String>,
}

/// Meta entries derived from the log, or written fresh by `repair`: never carried over.
const REBUILT_META: [&[u8]; 5] = [
    meta::FORMAT,
    meta::APPLIED,
    meta::REBUILDING,
    meta::NAMES,
    meta::EPOCH,
];

/// A meta entry's name, without its key prefix.
fn meta_name(key: &[u8]) -> String {
    String::from_utf8_lossy(key.get(1..).unwrap_or_default()).into_owned()
}

/// Reads what can be carried over from the database in `db` (a copy set aside): meta entries,
/// peer records and signatures. `cut`: the op log was cut there, so entries naming places
/// past it (peer records, withdrawn offsets) are left behind. A database that cannot be opened,
/// or panics sled, gives what was read before.
fn salvage(db: &FsPath, cut: Option<u64>) -> Salvaged {
    let mut out = Salvaged::default();
    let read = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let kv = SledKv::open(db, crate::CACHE_BYTES_MIN)?;
        let mut pairs = Vec::new();
        let mut failed = None;
        for prefix in [keys::META, keys::PEER, keys::SIGNATURE] {
            for pair in kv.scan_prefix(&[prefix]) {
                match pair {
                    Ok(pair) => pairs.push(pair),
                    Err(e) => {
                        failed = Some(e.reason());
                        break;
                    }
                }
            }
        }
        Ok::<_, crate::state::kv::KvError>((pairs, failed))
    }));
    let pairs = match read {
        Ok(Ok((pairs, failed))) => {
            if let Some(why) = failed {
                out.lost
                    .push(format!("part of the old database could not be read: {why}"));
            }
            pairs
        }
        Ok(Err(e)) => {
            out.lost.push(format!(
                "the old database could not be opened ({}): peer records, calibration and \
                 pairing start afresh",
                e.reason()
            ));
            return out;
        }
        Err(_) => {
            out.lost.push(
                "the old database made sled panic: peer records, calibration and pairing \
                 start afresh"
                    .into(),
            );
            return out;
        }
    };
    let (mut peers, mut signatures, mut peers_dropped) = (0u64, 0u64, 0u64);
    for (k, v) in pairs {
        match k.first().copied() {
            Some(keys::PEER) if cut.is_some() => peers_dropped += 1,
            Some(keys::PEER) => {
                peers += 1;
                out.pairs.push((k, v));
            }
            Some(keys::SIGNATURE) => {
                signatures += 1;
                out.pairs.push((k, v));
            }
            _ if REBUILT_META.contains(&k.as_slice()) => {}
            _ if k == meta::PEERS && cut.is_some() => peers_dropped += 1,
            _ if (k == meta::WITHDRAWN || k == meta::REISSUE) && cut.is_some() => {
                let Some(cut) = cut else { continue };
                let offsets = super::withdraw::decode_offsets(&v).unwrap_or_default();
                let kept: Vec<u64> = offsets.into_iter().filter(|o| *o < cut).collect();
                if !kept.is_empty() {
                    out.kept.push(meta_name(&k));
                    out.pairs.push((k, super::withdraw::encode_offsets(&kept)));
                }
            }
            _ => {
                out.kept.push(meta_name(&k));
                out.pairs.push((k, v));
            }
        }
    }
    if peers > 0 {
        out.kept.push(format!("{peers} peer records"));
    }
    if peers_dropped > 0 {
        out.lost.push(format!(
            "{peers_dropped} peer records (the log was cut: what they say was exchanged \
             named places past the cut; the next sync with each peer starts from nothing)"
        ));
    }
    if signatures > 0 {
        out.kept.push(format!("{signatures} signatures"));
    }
    out
}

/// The records past `from` in `log` (whose file is `file_len` bytes) that are whole: each
/// hashes to its id. After a damaged record the search goes on byte by byte, up to
/// [`RESYNC_BYTES_MAX`] bytes in all; returns them and whether the search stopped early.
fn records_past(
    log: &OpLog,
    from: u64,
    file_len: u64,
) -> Result<(Vec<SealedOp>, bool), StoreError> {
    let mut found = Vec::new();
    let mut at = from;
    let mut searched = 0u64;
    while at < file_len {
        let whole = match log.read_within(at, file_len) {
            Ok(Read::Record(r)) => r.seal().ok().map(|op| (op, r.end())),
            Ok(Read::End) => break,
            Ok(Read::Bad { .. }) | Err(LogError::Damaged { .. }) => None,
            Err(e) => return Err(e.into()),
        };
        match whole {
            Some((op, end)) => {
                found.push(op);
                at = end;
            }
            None => {
                searched += 1;
                if searched > RESYNC_BYTES_MAX {
                    return Ok((found, true));
                }
                at += 1;
            }
        }
    }
    Ok((found, false))
}

impl Store {
    /// Opens the store in `dir` for reading only, from its op log alone: the state is replayed
    /// into memory and the database is not opened, so nothing is written anywhere (on a
    /// read-only mount, a full disk, or beside a database sled cannot open). Every write is
    /// refused ([`StoreError::ReadOnly`]). It costs a replay of the whole log, in time and in
    /// memory: what [`Store::open`] avoids.
    ///
    /// What only the database keeps is absent: peer records, the signatures of received ops,
    /// calibration and pairing; so are the marks of ops this device withdrew after a restore
    /// (docs/SEMANTICS.md, "Restores"), whose writes such a view still shows.
    pub fn open_read_only(dir: &FsPath) -> Result<Self, OpenError> {
        check_current(dir, "a read-only open")?;
        let log_path = dir.join(LOG_FILE);
        let key = read_key_file(&dir.join(KEY_FILE))?;
        let book = {
            let file = FileLog::open_read_only(&log_path)?;
            let len = file.file_len()?;
            book_in_log(&OpLog::new(Box::new(file), len))?
        };
        let log = FileLog::open_read_only(&log_path)?;
        let kv = MemKv::with(seed(key.device(), book));
        Self::open_parts_as(Box::new(kv), Box::new(log), dir, true)
    }

    /// Builds a new database for the store in `dir` from its op log, for a store whose
    /// database is damaged (or lost): the old one is renamed aside (`db.damaged-N`), never
    /// deleted, and what can be read of it is carried over (the device id, book, peer records,
    /// signatures of received ops, calibration, pairing, fork records). The device id is kept.
    ///
    /// A damaged record in the middle of the log: the log is copied aside whole
    /// (`ops.log.damaged-N`) and cut after the last whole committed record before the damage;
    /// every whole record found past it is applied again, through the same checks as a
    /// received op, and those that build on ops lost in the damage are counted
    /// ([`LogDamage`]): a sync with a device that holds them gives them back.
    ///
    /// Refused while another process has the store open. A crash midway leaves a store
    /// `repair` can be run on again.
    pub fn repair(dir: &FsPath, options: &StoreOptions) -> Result<RepairReport, OpenError> {
        check_current(dir, "repair")?;
        let db = dir.join(DB_DIR);
        if lock_is_held(&db) {
            return Err(OpenError::Locked(db.join("db")));
        }
        let log_path = dir.join(LOG_FILE);
        if !log_path.is_file() {
            return Err(OpenError::damaged(format!(
                "{} has no {LOG_FILE} op log: there is nothing to rebuild from",
                dir.display()
            )));
        }
        let mut report = RepairReport::default();

        // The log: cut before damage in its middle, keeping a copy of it whole.
        let (book, after) = {
            let file = FileLog::open(&log_path, false)?;
            let file_len = file.file_len()?;
            let log = OpLog::new(Box::new(file), file_len);
            let tail = log.read_tail::<LogError>(0, file_len, None)?;
            let book = book_in_log(&OpLog::new(
                Box::new(FileLog::open_read_only(&log_path)?),
                tail.committed_end,
            ))?;
            match tail.damaged {
                None => (book, Vec::new()),
                Some(why) => {
                    let at = tail.committed_end;
                    let (after, search_stopped) = records_past(&log, at, file_len)?;
                    let set_aside = aside_path(&log_path);
                    std::fs::copy(&log_path, &set_aside).map_err(|e| io(&set_aside, e))?;
                    std::fs::File::open(&set_aside)
                        .and_then(|f| f.sync_all())
                        .map_err(|e| io(&set_aside, e))?;
                    report.log_damage = Some(LogDamage {
                        at,
                        why,
                        bytes_after: file_len - at,
                        records_after: after.len() as u64,
                        search_stopped,
                        set_aside,
                        ..LogDamage::default()
                    });
                    (book, after)
                }
            }
        };
        let cut = report.log_damage.as_ref().map(|d| d.at);

        // The old database: set aside, and read for what it can give.
        let mut salvaged = Salvaged::default();
        // Where the store lives now, told by the database directory being replaced.
        let home = home_of(dir);
        if db.exists() {
            let aside = aside_path(&db);
            std::fs::rename(&db, &aside).map_err(|e| io(&aside, e))?;
            salvaged = salvage(&aside, cut);
            report.set_aside = Some(aside);
            // A store that has not moved records its new database's home at its next open;
            // one copied or restored keeps the home it had, so that open still gives it a new
            // device id (`open.rs`, `check_home`).
            let unmoved = salvaged
                .pairs
                .iter()
                .any(|(k, v)| k == meta::HOME && *v == home);
            if unmoved {
                salvaged.pairs.retain(|(k, _)| k != meta::HOME);
                salvaged.kept.retain(|name| name != "home");
            }
        } else {
            salvaged
                .lost
                .push("there was no database: nothing but the op log is kept".into());
        }

        // The device: the old database's, if its key is here; else the key file's.
        let old_replica = salvaged
            .pairs
            .iter()
            .find(|(k, _)| k == meta::REPLICA)
            .and_then(|(_, v)| <[u8; 16]>::try_from(v.as_slice()).ok())
            .map(DeviceId);
        let device = match old_replica.map(|r| read_key(dir, r)) {
            Some(Ok(key)) => key.device(),
            _ => read_key_file(&dir.join(KEY_FILE))?.device(),
        };
        let old_book = salvaged
            .pairs
            .iter()
            .find(|(k, _)| k == meta::BOOK)
            .and_then(|(_, v)| <[u8; 16]>::try_from(v.as_slice()).ok())
            .map(BookId);
        let epoch: u64 = salvaged
            .pairs
            .iter()
            .find(|(k, _)| k == meta::EPOCH)
            .and_then(|(_, v)| keys::decode(v, "rebuild epoch").ok())
            .unwrap_or(0);

        // The signatures of received ops, from the signature log (the old database's, read
        // above, are the same ones where it could be read).
        let sigs_path = dir.join(SIGS_FILE);
        let (tips, damaged_sigs) = read_sigs(&sigs_path).map_err(|e| io(&sigs_path, e))?;
        if !tips.is_empty() {
            salvaged
                .kept
                .push(format!("{} signatures from {SIGS_FILE}", tips.len()));
        }
        if damaged_sigs > 0 {
            salvaged.lost.push(format!(
                "{damaged_sigs} damaged records of {SIGS_FILE} (a signature lost there comes \
                 back with the author's next ops)"
            ));
        }
        let mut logged: Vec<(Vec<u8>, Vec<u8>)> = tips
            .iter()
            .map(|tip| {
                (
                    keys::signature(&tip.author, tip.seq),
                    super::identity::signature_value(tip),
                )
            })
            .collect();
        logged.append(&mut salvaged.pairs);
        salvaged.pairs = logged;

        // The new database, built aside and renamed into place whole.
        let building = dir.join(format!("{DB_DIR}.repairing"));
        if building.exists() {
            std::fs::remove_dir_all(&building).map_err(|e| io(&building, e))?;
        }
        {
            let kv = SledKv::open(&building, options.cache_bytes)?;
            let mut batch = KvBatch::default();
            for (k, v) in &salvaged.pairs {
                batch.insert(k.clone(), v.clone());
            }
            for (k, v) in seed(device, old_book.or(book)) {
                batch.insert(k, v);
            }
            // Change cursors of before cannot answer for the new database.
            batch.insert(meta::EPOCH.to_vec(), keys::encode(&(epoch + 1)));
            kv.apply(batch)?;
            kv.flush()?;
        }
        if let Some(at) = cut {
            let log = FileLog::open(&log_path, false)?;
            log.truncate(at)?;
        }
        std::fs::rename(&building, &db).map_err(|e| io(&db, e))?;
        let _ = std::fs::File::open(dir).and_then(|d| d.sync_all());
        report.kept = salvaged.kept;
        report.lost = salvaged.lost;

        // Opening replays the whole log into the new database (its watermark is at 0).
        let mut store = Store::open(dir, options)?;
        if let Some(damage) = report.log_damage.as_mut() {
            let outcomes = store.apply_all(&after)?;
            for (op, outcome) in after.iter().zip(outcomes) {
                match outcome {
                    OpOutcome::Stored | OpOutcome::Duplicate => damage.salvaged += 1,
                    OpOutcome::Missing(_) | OpOutcome::Refused(_) => {
                        damage.waiting += 1;
                        if op.op().author == store.device {
                            damage.own_waiting += 1;
                        }
                    }
                }
            }
            store.flush()?;
        }
        report.ops = store.op_count();
        report.problems = store.verify()?.problems;
        Ok(report)
    }
}

//! A store its database cannot serve: read from the op log alone ([`Store::open_read_only`]),
//! and mended with a new database built from the op log ([`Store::repair`]).
//!
//! Everything in the database but the meta entries, peer records and received signatures is
//! derived from `ops.log` (docs/FORMAT.md, "Store"), so the log alone gives back every
//! contact. A read-only open replays it into memory and writes nothing anywhere: it works on a
//! read-only mount, on a full disk, and beside a database sled cannot open. `repair` builds a
//! new database, carries over what it can read of the old one (which is kept aside, never
//! deleted), and salvages the ops found past damage in the log.

use std::collections::BTreeSet;
use std::path::{Path as FsPath, PathBuf};

use cardlog_core::{BookId, DeviceId, MemberChange, SealedOp};

use super::identity::{read_key, read_key_file, KEY_FILE};
use super::open::{
    create_database, database_in, gate, home_of, is_current_marker, is_older_marker, read_marker,
    recover_compaction, unknown_marker, Gate, DB_DIR, MARKER_V5,
};
use super::{Store, StoreOptions, STORE_FORMAT_VERSION};
use crate::error::{OpenError, StoreError};
use crate::log::{
    read_sigs, FileLog, LogError, LogIo, OpLog, Read, LOG_FILE, SIGS_FILE, TAIL_CHUNK_OPS,
};
use crate::state::journal_kv::JournalKv;
use crate::state::keys::{self, meta};
use crate::state::kv::{Kv, KvBatch};
use crate::state::mem_kv::MemKv;
use crate::state::sled_kv::{lock_is_held, open_main_alone};
use crate::OpOutcome;

/// How many bytes past a damaged record `repair` searches for the next whole record, in all.
pub const RESYNC_BYTES_MAX: u64 = 16 << 20;

/// How many bytes `repair` reads, in all, for candidate records past damage that turn out not
/// to hash to their ids, before it stops searching.
const RESYNC_READ_BYTES_MAX: u64 = 256 << 20;

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

/// The note `repair` leaves while it cuts a damaged log: which copy holds it whole, where it
/// is cut, and why. Removed once the records past the cut are applied again.
const PENDING_FILE: &str = "ops.log.repairing";

/// What [`PENDING_FILE`] says.
struct Pending {
    copy: PathBuf,
    at: u64,
    why: String,
}

impl Pending {
    /// The note's text: a first line naming it, the copy's file name, the offset, the reason.
    fn write(&self, path: &FsPath) -> Result<(), OpenError> {
        let name = self
            .copy
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let text = format!("cardlog repair v1\n{name}\n{}\n{}\n", self.at, self.why);
        std::fs::write(path, text)
            .and_then(|()| std::fs::File::open(path)?.sync_all())
            .map_err(|e| io(path, e))?;
        if let Some(dir) = path.parent() {
            let _ = std::fs::File::open(dir).and_then(|d| d.sync_all());
        }
        Ok(())
    }

    /// The note read back (`None` if it is not one, or its copy is gone).
    fn parse(text: &str, dir: &FsPath) -> Option<Pending> {
        let mut lines = text.lines();
        if lines.next()? != "cardlog repair v1" {
            return None;
        }
        let name = lines.next()?;
        if name.is_empty() || name.contains('/') || name.contains('\\') {
            return None;
        }
        let at = lines.next()?.parse().ok()?;
        let why = lines.next().unwrap_or("damaged").to_owned();
        let copy = dir.join(name);
        copy.is_file().then_some(Pending { copy, at, why })
    }
}

/// The `NAME.damaged-N` beside `path` with the highest N, if any.
fn newest_aside(path: &FsPath) -> Option<PathBuf> {
    let name = path.file_name()?.to_string_lossy().into_owned();
    let prefix = format!("{name}.damaged-");
    std::fs::read_dir(path.parent()?)
        .ok()?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let file = e.file_name().to_string_lossy().into_owned();
            let n: u64 = file.strip_prefix(&prefix)?.parse().ok()?;
            Some((n, e.path()))
        })
        .max_by_key(|(n, _)| *n)
        .map(|(_, p)| p)
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

/// Refuses anything but a store of this build's format or one whose marker is in `also` (an
/// older one is upgraded by an open for writing, which neither a read-only open nor a repair
/// is).
fn check_current(dir: &FsPath, what: &str, also: &[&str]) -> Result<(), OpenError> {
    let text = read_marker(dir)?;
    if is_current_marker(&text) || also.contains(&text.as_str()) {
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
    /// The old database's rebuild epoch, if it could be read.
    epoch: Option<u64>,
    /// Every withdrawn offset it listed, before any cut: records `repair` must not apply
    /// again.
    withdrawn: Vec<u64>,
    /// Own ops listed for re-issue whose records were past the cut.
    reissue_past_cut: usize,
    kept: Vec<String>,
    lost: Vec<String>,
}

/// Meta entries derived from the log, or written fresh by `repair`: never carried over.
/// (`mepoch` is not among them: the old epoch is read, and the new one is one past it.)
const REBUILT_META: [&[u8]; 4] = [meta::FORMAT, meta::APPLIED, meta::REBUILDING, meta::NAMES];

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
    let prefixes = [keys::META, keys::PEER, keys::SIGNATURE];
    let read = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        if JournalKv::is_journal(db) {
            let found = JournalKv::read_dir(db)?;
            let mut pairs = found.pairs;
            // A journal store keeps received signatures nowhere else (no `sigs.log`): those
            // in whole records past the damage are kept too, the later of two for one seq; so
            // is what the store keeps (`mkeeps`), where such a record holds it.
            for (k, v) in found.past_damage {
                if k.first() == Some(&keys::SIGNATURE) || k == meta::KEEPS {
                    pairs.insert(k, v);
                }
            }
            let pairs = pairs
                .into_iter()
                .filter(|(k, _)| k.first().is_some_and(|p| prefixes.contains(p)))
                .collect();
            return Ok((pairs, found.damage));
        }
        // The main database alone: the name index is rebuilt anyway, and bringing the two
        // in step would write to the copy set aside.
        let kv = open_main_alone(db, crate::CACHE_BYTES_MIN)?;
        let mut pairs = Vec::new();
        let mut failed = None;
        for prefix in prefixes {
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
        if k == meta::EPOCH {
            out.epoch = keys::decode(&v, "rebuild epoch").ok();
            continue;
        }
        if k == meta::WITHDRAWN {
            out.withdrawn = super::withdraw::decode_offsets(&v).unwrap_or_default();
        }
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
                if k == meta::REISSUE {
                    out.reissue_past_cut = offsets.iter().filter(|o| **o >= cut).count();
                }
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
    withdrawn: &BTreeSet<u64>,
) -> Result<(Vec<SealedOp>, bool), StoreError> {
    let mut found = Vec::new();
    let mut at = from;
    let mut searched = 0u64;
    // Bytes read for candidates that turned out not to be records: a damaged region full of
    // plausible headers could otherwise cost a record's read (up to 1 MiB) per byte.
    let mut wasted = 0u64;
    while at < file_len {
        if wasted > RESYNC_READ_BYTES_MAX {
            return Ok((found, true));
        }
        let whole = match log.probe_within(at, file_len) {
            Ok(Read::Record(r)) => {
                let sealed = r.seal().ok().map(|op| (op, r.end()));
                if sealed.is_none() {
                    wasted += r.end() - at;
                }
                sealed
            }
            Ok(Read::End) => break,
            Ok(Read::Bad { .. }) | Err(LogError::Damaged { .. }) => None,
            Err(e) => return Err(e.into()),
        };
        match whole {
            Some((op, end)) => {
                // (A withdrawn record stays withdrawn: not applied again.)
                if !withdrawn.contains(&at) {
                    found.push(op);
                }
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
        // Format 5 differs from 6 only in the `c` values, which a read-only open never reads
        // (its state is the log replayed into memory): a store an app could not upgrade (a
        // full disk, a read-only mount) is still read.
        check_current(dir, "a read-only open", &[MARKER_V5])?;
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
    /// deleted, and what can be read of it is carried over (the device id, book, peer
    /// records, signatures of received ops, calibration, pairing, fork records); received
    /// signatures also come from the signature log. The device id is kept.
    ///
    /// A damaged record in the middle of the log: the log is copied aside whole
    /// (`ops.log.damaged-N`) and cut after the last whole committed record before the damage;
    /// every whole record found past it is stored again as a received op is at the store
    /// (chains, references, signature coverage), and those that build on ops lost in the
    /// damage are counted ([`LogDamage`]): a sync with a device that holds them gives them
    /// back.
    ///
    /// Refused while another process has the store open. A run cut off anywhere leaves a
    /// store `repair` can be run on again: the cut is noted (`ops.log.repairing`) before it is
    /// made and the note removed only once what follows it is stored again, and a run that
    /// finds no database reads the newest one set aside.
    pub fn repair(dir: &FsPath, options: &StoreOptions) -> Result<RepairReport, OpenError> {
        check_current(dir, "repair", &[])?;
        // Under the store's gate: no compaction swaps databases meanwhile; one cut off
        // between its renames left the whole old database aside.
        let _gate = gate(dir, Gate::Shared)?;
        recover_compaction(dir)?;
        let db = dir.join(DB_DIR);
        if JournalKv::lock_is_held(&db) {
            return Err(OpenError::Locked(db.join("lock")));
        }
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

        // 1. The log. Damage in its middle: the log is copied aside whole and a durable note
        // says where it is cut, before anything changes; a repair cut off after the cut finds
        // the note and takes the records past the damage from the copy again.
        let pending_path = dir.join(PENDING_FILE);
        let pending = match std::fs::read_to_string(&pending_path) {
            Ok(text) => Pending::parse(&text, dir),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(io(&pending_path, e)),
        };
        let (book, damage) = {
            let file = FileLog::open(&log_path, false)?;
            let file_len = file.file_len()?;
            let log = OpLog::new(Box::new(file), file_len);
            let tail = log.read_tail::<LogError>(0, file_len, None)?;
            let book = book_in_log(&OpLog::new(
                Box::new(FileLog::open_read_only(&log_path)?),
                tail.committed_end,
            ))?;
            let damage = match (pending, tail.damaged) {
                // Cut by an earlier repair (the log may have been cut already or not).
                (Some(pending), _) => Some(pending),
                (None, None) => None,
                (None, Some(why)) => {
                    let copy = aside_path(&log_path);
                    std::fs::copy(&log_path, &copy).map_err(|e| io(&copy, e))?;
                    std::fs::File::open(&copy)
                        .and_then(|f| f.sync_all())
                        .map_err(|e| io(&copy, e))?;
                    let pending = Pending {
                        copy,
                        at: tail.committed_end,
                        why,
                    };
                    pending.write(&pending_path)?;
                    Some(pending)
                }
            };
            (book, damage)
        };
        let cut = damage.as_ref().map(|d| d.at);

        // 2. The old database: set aside, then read for what it can give (sled writes as it
        // opens it, so the copy set aside is what is read; nothing is removed from it). A
        // repair cut off before its new database was in place finds the newest one set aside.
        let home = home_of(dir);
        let aside = if db.exists() {
            let aside = aside_path(&db);
            std::fs::rename(&db, &aside).map_err(|e| io(&aside, e))?;
            let _ = std::fs::File::open(dir).and_then(|d| d.sync_all());
            Some(aside)
        } else {
            newest_aside(&db)
        };
        let mut salvaged = match &aside {
            Some(aside) => salvage(aside, cut),
            None => Salvaged {
                lost: vec!["there was no database: nothing but the op log is kept".into()],
                ..Salvaged::default()
            },
        };
        report.set_aside = aside;
        // A store that has not moved records its new database's home at its next open; one
        // copied or restored keeps the home it had, so that open still gives it a new device
        // id (`open.rs`, `check_home`).
        let unmoved = salvaged
            .pairs
            .iter()
            .any(|(k, v)| k == meta::HOME && *v == home);
        if unmoved {
            salvaged.pairs.retain(|(k, _)| k != meta::HOME);
            salvaged.kept.retain(|name| name != "home");
        }
        if salvaged.reissue_past_cut > 0 {
            salvaged.lost.push(format!(
                "{} of this device's own ops waiting to be written again after a restore were \
                 past the damage: they are in the copy of the log",
                salvaged.reissue_past_cut
            ));
        }

        // 3. The records past the damage, from the copy (withdrawn ones stay withdrawn).
        let withdrawn: BTreeSet<u64> = salvaged.withdrawn.iter().copied().collect();
        let after = match &damage {
            None => Vec::new(),
            Some(d) => {
                let copy = FileLog::open_read_only(&d.copy)?;
                let copy_len = copy.file_len()?;
                let (after, search_stopped) = records_past(
                    &OpLog::new(Box::new(copy), copy_len),
                    d.at,
                    copy_len,
                    &withdrawn,
                )?;
                report.log_damage = Some(LogDamage {
                    at: d.at,
                    why: d.why.clone(),
                    bytes_after: copy_len.saturating_sub(d.at),
                    records_after: after.len() as u64,
                    search_stopped,
                    set_aside: d.copy.clone(),
                    ..LogDamage::default()
                });
                after
            }
        };

        // 4. The signatures of received ops, from the signature log (the old database's,
        // read above, are the same ones where it could be read).
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
        // A journal store's are in its database: what the records past the log's damage are
        // checked against too.
        let mut tips = tips;
        tips.extend(salvaged.pairs.iter().filter_map(|(k, v)| {
            let (author, seq) = keys::parse_signature(k)?;
            super::identity::decode_signature(author, seq, v)
        }));
        let mut pairs: Vec<(Vec<u8>, Vec<u8>)> = tips
            .iter()
            .map(|tip| {
                (
                    keys::signature(&tip.author, tip.seq),
                    super::identity::signature_value(tip),
                )
            })
            .collect();
        pairs.append(&mut salvaged.pairs);

        // The device: the old database's, if its key is here; else the key file's.
        let old_replica = pairs
            .iter()
            .find(|(k, _)| k == meta::REPLICA)
            .and_then(|(_, v)| <[u8; 16]>::try_from(v.as_slice()).ok())
            .map(DeviceId);
        let device = match old_replica.map(|r| read_key(dir, r)) {
            Some(Ok(key)) => key.device(),
            _ => read_key_file(&dir.join(KEY_FILE))?.device(),
        };
        let old_book = pairs
            .iter()
            .find(|(k, _)| k == meta::BOOK)
            .and_then(|(_, v)| <[u8; 16]>::try_from(v.as_slice()).ok())
            .map(BookId);
        if old_book.or(book).is_none() {
            salvaged.lost.push(
                "the address book: neither the old database nor the log names it (a device \
                 that joined and never received the book's ops); its next open founds a new \
                 one, so join again instead (`init --join BOOK` in a new directory)"
                    .into(),
            );
        }
        // The new database's epoch must differ from every epoch a change cursor could name:
        // the old one's next, or, where it could not be read, one drawn at random.
        let epoch: u64 = match salvaged.epoch {
            Some(old) => old.saturating_add(1),
            None => {
                u64::from_le_bytes(*DeviceId::random()?.0.first_chunk::<8>().unwrap_or(&[1; 8]))
                    >> 1
            }
        };

        // 5. The new database, built aside and renamed into place whole; the log cut.
        let building = dir.join(format!("{DB_DIR}.repairing"));
        if building.exists() {
            std::fs::remove_dir_all(&building).map_err(|e| io(&building, e))?;
        }
        {
            // A database of the kind the store had (a relay's book keeps its journal).
            let database = report
                .set_aside
                .as_deref()
                .map_or(options.database, database_in);
            let kv = create_database(&building, database, options.cache_bytes)?;
            let mut batch = KvBatch::default();
            for (k, v) in pairs {
                batch.insert(k, v);
            }
            for (k, v) in seed(device, old_book.or(book)) {
                batch.insert(k, v);
            }
            // What the store keeps: as the old database said (a journal's record of it past
            // damage included), else as the caller asks.
            if options.keeps == super::Keeps::OpsOnly {
                batch.insert(meta::KEEPS.to_vec(), vec![1]);
            }
            batch.insert(meta::EPOCH.to_vec(), keys::encode(&epoch));
            kv.apply(batch)?;
            kv.flush()?;
        }
        if let Some(at) = cut {
            let log = FileLog::open(&log_path, false)?;
            if log.file_len()? > at {
                log.truncate(at)?;
            }
        }
        std::fs::rename(&building, &db).map_err(|e| io(&db, e))?;
        let _ = std::fs::File::open(dir).and_then(|d| d.sync_all());
        report.kept = salvaged.kept;
        report.lost = salvaged.lost;

        // 6. Opening replays the whole log into the new database (its watermark is at 0).
        // Then the records past the damage are applied as received ops are stored: chains,
        // references and the signatures kept (another device's ops only up to one a kept
        // signature covers), a chunk at a time; the note goes once they are durable.
        let mut store = Store::open(dir, options)?;
        if let Some(damage) = report.log_damage.as_mut() {
            for chunk in after.chunks(TAIL_CHUNK_OPS) {
                let outcomes = store.apply_signed(chunk, &tips)?;
                for (op, outcome) in chunk.iter().zip(outcomes) {
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
            }
            store.flush()?;
            std::fs::remove_file(&pending_path).map_err(|e| io(&pending_path, e))?;
        }
        report.ops = store.op_count();
        report.problems = store.verify()?.problems;
        Ok(report)
    }
}

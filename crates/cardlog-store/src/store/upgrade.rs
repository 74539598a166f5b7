//! The upgrades, in place and without a replay of the log: format 2 (one sled key per register)
//! to format 3 (one per contact), format 3 (no device key) to format 4 (a device key, the
//! address book, signatures and membership ops), format 4 to format 5 (the name index,
//! which the open that follows builds), and format 5 to format 6 (each contact's write keys
//! kept once in its value). Each writes the next format's marker beside the old
//! one, switches the database in one durable batch, then replaces the marker; an open after a
//! crash in between finishes the step.

use std::path::Path as FsPath;

use cardlog_core::{ContactId, DeviceId, DeviceKey};

use super::identity::{read_key, stage_key};
use super::open::{open_database, write_marker, DB_DIR, MARKER_FILE, STORE_FORMAT_VERSION};
use super::{Store, StoreOptions};
use crate::error::OpenError;
use crate::log::LOG_FILE;
use crate::state::keys::{self, meta, ContactRegisters};
use crate::state::kv::{Kv, KvBatch};
use crate::state::sled_kv::SledKv;

impl Store {
    /// Upgrades a store of format 2 (one sled key per register) to format 3 (one per
    /// contact), converting the registers in place: no replay of the log.
    ///
    /// The new marker is written beside the old one first (an unwritable directory fails
    /// before the database changes); then one durable sled batch replaces every `h` key by
    /// its contact's `c` key and sets the format to 3; then the new marker replaces the old.
    /// A register that does not parse is dropped and the rebuild mark set, so the open that
    /// follows rebuilds the registers from the log (as `verify` and `rebuild` would have on
    /// format 2). A crash before the batch leaves format 2 as it was; after it, a format-2
    /// marker over a database saying 3 only has its marker replaced.
    pub(super) fn upgrade_from_2(dir: &FsPath, options: &StoreOptions) -> Result<(), OpenError> {
        let step = Step::begin(dir, 2, FORMAT_3)?;
        let upgrading = |what: String| step.damaged(&what);
        let kv = SledKv::open(&dir.join(DB_DIR), options.cache_bytes)?;
        match kv.get(meta::FORMAT)?.as_deref() {
            Some([2]) => {
                let mut batch = KvBatch::default();
                let mut contact: Option<(ContactId, ContactRegisters)> = None;
                let mut unreadable = false;
                for pair in kv.scan_prefix(&[keys::HEADS_V2]) {
                    let (k, v) = pair?;
                    match keys::parse_register_v2(&k, &v) {
                        Ok((id, path, register)) => {
                            // `h` keys are in contact order: a contact's registers are adjacent.
                            if let Some((c, registers)) = contact.take_if(|(c, _)| *c != id) {
                                batch.insert(keys::contact(&c), keys::contact_value(&registers));
                            }
                            contact
                                .get_or_insert_with(|| (id, ContactRegisters::new()))
                                .1
                                .insert(path, register);
                        }
                        Err(_) => unreadable = true,
                    }
                    batch.remove(k);
                }
                if let Some((c, registers)) = contact {
                    batch.insert(keys::contact(&c), keys::contact_value(&registers));
                }
                if unreadable {
                    batch.insert(meta::REBUILDING.to_vec(), vec![1]);
                }
                batch.insert(meta::FORMAT.to_vec(), vec![FORMAT_3]);
                kv.apply(batch)?;
                kv.flush()?;
            }
            Some([FORMAT_3]) => {}
            Some(other) => {
                return Err(upgrading(format!(
                    "the marker says format 2 but the database says {other:?}"
                )))
            }
            None => return Err(upgrading("the database has no format entry".into())),
        }
        drop(kv);
        step.finish()
    }
}

/// The format [`Store::upgrade_from_2`] writes (and [`Store::upgrade_from_3`] reads).
const FORMAT_3: u8 = 3;
/// The format [`Store::upgrade_from_3`] writes (and [`Store::upgrade_from_4`] reads).
const FORMAT_4: u8 = 4;
/// The format [`Store::upgrade_from_4`] writes (and [`Store::upgrade_from_5`] reads).
const FORMAT_5: u8 = 5;

impl Store {
    /// Upgrades a store of format 3 to format 4: the device takes a key (a new device id: the
    /// old one had no key, and its format-1 chain stays in the log as written, for the book to
    /// adopt) and the database records the new id, the old one among the former ids, and the
    /// format. Nothing else changes: the store belongs to no book until the facade founds or
    /// joins one.
    ///
    /// Crash-safe in steps: the new marker is written beside the old, the key waits beside
    /// where it goes (`device.key.next`), one durable sled batch switches the id and format,
    /// the key is put in place, then the marker. An open after a crash in any step finds
    /// either format 3 untouched (the waiting key is used) or format 4 with its key.
    pub(super) fn upgrade_from_3(dir: &FsPath, options: &StoreOptions) -> Result<(), OpenError> {
        let step = Step::begin(dir, 3, FORMAT_4)?;
        let upgrading = |what: String| step.damaged(&what);
        let kv = SledKv::open(&dir.join(DB_DIR), options.cache_bytes)?;
        let replica = kv
            .get(meta::REPLICA)?
            .and_then(|v| <[u8; 16]>::try_from(v.as_slice()).ok())
            .map(DeviceId)
            .ok_or_else(|| upgrading("the replica id does not decode".into()))?;
        match kv.get(meta::FORMAT)?.as_deref() {
            Some([FORMAT_3]) => {
                let key = DeviceKey::generate()?;
                stage_key(dir, &key)?;
                let mut batch = KvBatch::default();
                batch.insert(meta::REPLICA.to_vec(), key.device().0.to_vec());
                let mut former = kv.get(meta::FORMER)?.unwrap_or_default();
                former.extend_from_slice(&replica.0);
                batch.insert(meta::FORMER.to_vec(), former);
                batch.insert(meta::FORMAT.to_vec(), vec![FORMAT_4]);
                kv.apply(batch)?;
                kv.flush()?;
                read_key(dir, key.device())?;
            }
            Some([FORMAT_4]) => {
                // Cut off after the batch: put the waiting key in place.
                read_key(dir, replica)?;
            }
            Some(other) => {
                return Err(upgrading(format!(
                    "the marker says format 3 but the database says {other:?}"
                )))
            }
            None => return Err(upgrading("the database has no format entry".into())),
        }
        drop(kv);
        step.finish()
    }
}

impl Store {
    /// Upgrades a store of format 4 to format 5: nothing in it changes but the format; the
    /// name index format 5 keeps is built by the open that follows (`names.rs`), since the
    /// database carries no mark that it is complete. A crash before the batch leaves format 4
    /// as it was; after it, a format-4 marker over a database saying 5 only has its marker
    /// replaced.
    pub(super) fn upgrade_from_4(dir: &FsPath, options: &StoreOptions) -> Result<(), OpenError> {
        let step = Step::begin(dir, 4, FORMAT_5)?;
        let upgrading = |what: String| step.damaged(&what);
        let kv = SledKv::open(&dir.join(DB_DIR), options.cache_bytes)?;
        match kv.get(meta::FORMAT)?.as_deref() {
            Some([FORMAT_4]) => {
                let mut batch = KvBatch::default();
                batch.insert(meta::FORMAT.to_vec(), vec![FORMAT_5]);
                batch.remove(meta::NAMES.to_vec());
                kv.apply(batch)?;
                kv.flush()?;
            }
            Some([FORMAT_5]) => {}
            Some(other) => {
                return Err(upgrading(format!(
                    "the marker says format 4 but the database says {other:?}"
                )))
            }
            None => return Err(upgrading("the database has no format entry".into())),
        }
        drop(kv);
        step.finish()
    }
}

impl Store {
    /// Upgrades a store of format 5 to format 6: the database's format is set, in a durable
    /// batch, then the marker. Nothing else is written: format 6 reads format 5's contact
    /// values as they are; a save or an apply that writes a contact again writes its value
    /// packed (`state/contact_value.rs`), `compact` packs every one it copies, and `rebuild`
    /// leaves one that holds what the log gives. (Packing every value at the open took 31.9 s
    /// and wrote 2.8 GB at a million contacts, and left a larger database until a `compact`,
    /// which packs them anyway.) A build that reads only format 5 refuses the store by its
    /// format from then on, rather than misreading a value packed since. A crash before the
    /// batch leaves format 5 as it was; after it, the next open only replaces the marker.
    pub(super) fn upgrade_from_5(dir: &FsPath, options: &StoreOptions) -> Result<(), OpenError> {
        let step = Step::begin(dir, 5, STORE_FORMAT_VERSION)?;
        let upgrading = |what: String| step.damaged(&what);
        let kv = open_database(&dir.join(DB_DIR), options.cache_bytes)?;
        match kv.get(meta::FORMAT)?.as_deref() {
            Some([FORMAT_5]) => {
                let mut batch = KvBatch::default();
                batch.insert(meta::FORMAT.to_vec(), vec![STORE_FORMAT_VERSION]);
                kv.apply(batch)?;
                kv.flush()?;
            }
            Some([v]) if *v == STORE_FORMAT_VERSION => {}
            Some(other) => {
                return Err(upgrading(format!(
                    "the marker says format 5 but the database says {other:?}"
                )))
            }
            None => return Err(upgrading("the database has no format entry".into())),
        }
        drop(kv);
        step.finish()
    }
}

/// One upgrade step's files: the next format's marker written beside the old one first (an
/// unwritable directory fails before the database changes), renamed over it last.
struct Step<'d> {
    dir: &'d FsPath,
    from: u8,
    marker: std::path::PathBuf,
    next: std::path::PathBuf,
}

impl<'d> Step<'d> {
    /// Checks the store has its database and log, and writes the marker of format `to`
    /// beside the old one.
    fn begin(dir: &'d FsPath, from: u8, to: u8) -> Result<Self, OpenError> {
        let step = Self {
            dir,
            from,
            marker: dir.join(MARKER_FILE),
            next: dir.join(format!("{MARKER_FILE}.upgrading")),
        };
        if !dir.join(DB_DIR).is_dir() || !dir.join(LOG_FILE).is_file() {
            return Err(step.damaged(&format!("no {DB_DIR}/ database or no {LOG_FILE} op log")));
        }
        write_marker(&step.next, to)
            .map_err(|e| step.damaged(&format!("{}: {e}", step.next.display())))?;
        Ok(step)
    }

    /// The error naming what stopped the upgrade.
    fn damaged(&self, what: &str) -> OpenError {
        OpenError::damaged(format!(
            "upgrading the format-{} store in {}: {what}",
            self.from,
            self.dir.display()
        ))
    }

    /// Puts the new marker in place, durably where the platform can sync a directory.
    fn finish(self) -> Result<(), OpenError> {
        std::fs::rename(&self.next, &self.marker)
            .map_err(|e| self.damaged(&format!("{}: {e}", self.marker.display())))?;
        let _ = std::fs::File::open(self.dir).and_then(|d| d.sync_all());
        Ok(())
    }
}

//! The comparison workload on cardlog, through the public facade an app embeds:
//! [`Replica::create`], [`Replica::add_contact`], [`Replica::edit`], [`Replica::bulk`],
//! [`Replica::open`], [`Replica::contact`], and sync sessions over the in-process channel
//! transport (recorded and timed by [`crate::sync::sync_pair`]).
//!
//! The contact model is cardlog's own: given, family, nickname, org, title and note are
//! fields; the e-mail address and the phone number are items (with an id and an empty label),
//! as an app would store them. Without bulk mode every save is durable (`fdatasync` of the op
//! log) before it returns; in bulk mode each chunk of saves is made durable by
//! [`cardlog::Bulk::finish`], inside the timed region.

use std::path::Path;
use std::time::{Duration, Instant};

use cardlog::{
    Contact, ContactId, Field, Item, ItemBody, ItemId, Options as ReplicaOptions, Replica,
};

use super::workload::{self, Edit, NewContact, Save, FIELDS};
use super::{
    divergence, fig_ms, fig_peak, save_phases, Options, FIG_BYTES, FIG_FIRST_READ_MS,
    FIG_FULL_SYNC_BYTES, FIG_FULL_SYNC_MS, FIG_INC_SYNC_BYTES, FIG_INC_SYNC_MESSAGES,
    FIG_INC_SYNC_MS, FIG_OPEN_MS, FIG_PEAK_MB, FIG_PEAK_MB_BEFORE_SYNC, FIG_REOPEN_MS,
};
use crate::figures::{self, fig};
use crate::stores;
use crate::sync::sync_pair;
use crate::Error;

/// Pause between closing the store and opening it again: sled 0.34 releases its file lock
/// from a background thread after the close (see [`stores::open_timed`]).
const REOPEN_PAUSE: Duration = Duration::from_millis(300);

/// The cardlog field of a workload field that is a field (not an item).
fn field(index: usize) -> Option<Field> {
    match index {
        workload::GIVEN => Some(Field::Given),
        workload::FAMILY => Some(Field::Family),
        workload::NICKNAME => Some(Field::Nickname),
        workload::ORG => Some(Field::Org),
        workload::TITLE => Some(Field::Title),
        workload::NOTE => Some(Field::Note),
        _ => None,
    }
}

fn text_item(id: [u8; 16], text: &str) -> Item {
    Item {
        id: ItemId(id),
        label: String::new(),
        body: ItemBody::Text(text.to_owned()),
    }
}

/// The contact a [`NewContact`] describes.
fn contact(new: &NewContact) -> Contact {
    let mut c = Contact::new(ContactId(new.id));
    for (i, value) in new.values.iter().enumerate() {
        if let Some(f) = field(i) {
            c.set(f, value.as_str());
        }
    }
    let [email_id, phone_id] = new.item_ids;
    if let Some(email) = new.values.get(workload::EMAIL) {
        c.emails.push(text_item(email_id, email));
    }
    if let Some(phone) = new.values.get(workload::PHONE) {
        c.phones.push(text_item(phone_id, phone));
    }
    c
}

/// One save through the facade: `add_contact` or `edit` (durable on return unless the
/// replica is in bulk mode).
fn save(replica: &mut Replica, save: Save) -> Result<(), Error> {
    match save {
        Save::Create(new) => {
            replica.add_contact(&contact(&new))?;
        }
        Save::Edit(edit) => {
            edit_one(replica, edit)?;
        }
    }
    Ok(())
}

fn edit_one(replica: &mut Replica, edit: Edit) -> Result<(), Error> {
    let Edit {
        id,
        field: f,
        value,
        ..
    } = edit;
    let changed = replica.edit(ContactId(id), |c| match field(f) {
        Some(f) => {
            c.set(f, value);
        }
        None => {
            let items = if f == workload::EMAIL {
                &mut c.emails
            } else {
                &mut c.phones
            };
            if let Some(item) = items.first_mut() {
                item.body = ItemBody::Text(value);
            }
        }
    })?;
    changed
        .map(|_| ())
        .ok_or_else(|| "an edit changed nothing".into())
}

/// Makes one chunk of saves: each durable on return, or (`bulk`) all durable at the end.
pub fn save_chunk(replica: &mut Replica, saves: Vec<Save>, bulk: bool) -> Result<(), Error> {
    if bulk {
        let mut group = replica.bulk();
        for s in saves {
            save(&mut group, s)?;
        }
        group.finish()?;
    } else {
        for s in saves {
            save(replica, s)?;
        }
    }
    Ok(())
}

/// Runs the workload (see the parent module); `scratch` holds the two replicas.
pub fn run(options: &Options, scratch: &Path, bulk: bool) -> Result<(), Error> {
    let config = options.workload;
    let dir_a = scratch.join("a");
    let mut a = Replica::create(&dir_a)?;

    let w = save_phases(options, |s| save_chunk(&mut a, s, bulk))?;
    let ops = a.op_count();
    // The saves and the op founding the replica's address book.
    if ops != (config.contacts + config.edits) as u64 + 1 {
        return Err(format!("the replica holds {ops} ops").into());
    }

    // Close, measure the directory, open again (as an app does when it starts).
    let start = Instant::now();
    drop(a);
    fig_ms("close_ms", start.elapsed());
    fig(FIG_BYTES, stores::dir_bytes(&dir_a)? as f64);
    fig("bytes_allocated", allocated_bytes(&dir_a)? as f64);
    std::thread::sleep(REOPEN_PAUSE);
    let (a, open, retries) = stores::open_timed(&dir_a, &ReplicaOptions::default())?;
    fig_ms(FIG_OPEN_MS, open);
    drop(a);
    std::thread::sleep(REOPEN_PAUSE);
    let written = figures::io_written();
    let (mut a, reopen, more) = stores::open_timed(&dir_a, &ReplicaOptions::default())?;
    fig_ms(FIG_REOPEN_MS, reopen);
    // Counted for the whole process, so sled's threads of a database closed just before count
    // too (`growth_figures` opens in a fresh process).
    figures::fig_written("reopen", written);
    fig("open_lock_retries", f64::from(retries + more));
    let first = ContactId(w.id(0).ok_or("no contacts")?);
    let start = Instant::now();
    let view = a.contact(&first)?;
    fig_ms(FIG_FIRST_READ_MS, start.elapsed());
    // Six of the eight are fields; the e-mail address and the phone number are items.
    if view.is_none_or(|v| v.contact.fields.len() != FIELDS.len() - 2) {
        return Err("the first contact did not read back".into());
    }
    fig_peak(FIG_PEAK_MB_BEFORE_SYNC);

    // Full sync: a new, empty device of the book, added by the first (one more op), starts a
    // session with it.
    let mut b = Replica::join(&scratch.join("b"), a.book())?;
    a.add_member(b.id(), cardlog::MemberRole::Write, "b")?;
    let ops = a.op_count();
    let full = sync_pair(&mut b, &mut a)?;
    if !full.initiator.converged || full.exchanged_ops() as u64 != ops {
        return Err(format!("full sync: {:?}", full.initiator).into());
    }
    fig(FIG_FULL_SYNC_BYTES, full.wire_bytes() as f64);
    fig_ms(FIG_FULL_SYNC_MS, full.elapsed);
    fig("full_sync_messages", full.count(None, None) as f64);
    if a.state_digest()? != b.state_digest()? {
        return Err("full sync: the states differ".into());
    }

    // Both sides save on their own, then sync.
    for (replica, side) in [(&mut a, 1), (&mut b, 2)] {
        let mut d = divergence(&w, side);
        for _ in 0..config.diverge {
            edit_one(replica, d.edit().ok_or("no contacts")?)?;
        }
    }
    let inc = sync_pair(&mut a, &mut b)?;
    if !inc.initiator.converged || inc.exchanged_ops() != 2 * config.diverge {
        return Err(format!("incremental sync: {:?}", inc.initiator).into());
    }
    if a.state_digest()? != b.state_digest()? {
        return Err("incremental sync: the states differ".into());
    }
    fig(FIG_INC_SYNC_BYTES, inc.wire_bytes() as f64);
    fig_ms(FIG_INC_SYNC_MS, inc.elapsed);
    fig(FIG_INC_SYNC_MESSAGES, inc.count(None, None) as f64);
    fig("inc_sync_ops_bytes", inc.bytes_of("ops") as f64);
    fig_peak(FIG_PEAK_MB);

    // Compaction of the first replica's database, closed (what an app runs when idle).
    drop((a, b));
    let start = Instant::now();
    let done = Replica::compact(&dir_a, ReplicaOptions::default())?;
    fig_ms(FIG_COMPACT_MS, start.elapsed());
    fig(FIG_BYTES_COMPACTED, stores::dir_bytes(&dir_a)? as f64);
    fig("compact_db_before", done.before as f64);
    fig("compact_db_after", done.after as f64);
    // An open of the compacted store, and what it writes.
    std::thread::sleep(REOPEN_PAUSE);
    let written = figures::io_written();
    let (a, open, _) = stores::open_timed(&dir_a, &ReplicaOptions::default())?;
    fig_ms("compacted_open_ms", open);
    figures::fig_written("compacted_open", written);
    drop(a);
    Ok(())
}

/// The store's bytes after [`Replica::compact`], at the end of the run.
pub const FIG_BYTES_COMPACTED: &str = "bytes_compacted";
/// How long the compaction took.
pub const FIG_COMPACT_MS: &str = "compact_ms";

/// The disk space the files under `dir` take (allocated blocks; sparse or preallocated files
/// count what they use, not their length).
fn allocated_bytes(dir: &Path) -> Result<u64, Error> {
    use std::os::unix::fs::MetadataExt;
    stores::dir_total(dir, &|meta| meta.blocks() * 512)
}

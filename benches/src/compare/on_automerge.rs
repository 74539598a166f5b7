//! The comparison workload on automerge 0.12: one [`AutoCommit`] document with a root map
//! `contacts` holding one map per contact (keyed by the contact id in hex) of eight string
//! fields, and one commit per save. Nothing is written to disk: a save is an in-memory commit.
//!
//! Size is the length of [`AutoCommit::save`] (a compressed document); open is
//! [`AutoCommit::load`] of those bytes (which is `Automerge::load` and a wrapper). Both syncs
//! run automerge's own protocol ([`automerge::sync`]): each side generates messages until
//! neither has anything to send, every message is encoded, counted, decoded and received. For
//! the incremental sync each side starts from the sync state it kept from the full sync,
//! saved with [`sync::State::encode`] and read back with [`sync::State::decode`]: what an app
//! that meets the same peer again is told to do (it keeps only the shared heads).

use std::time::Instant;

use automerge::sync::{self, SyncDoc};
use automerge::transaction::Transactable;
use automerge::{AutoCommit, ObjId, ObjType, ReadDoc, Value, ROOT};

use super::workload::{self, Edit, Save, FIELDS};
use super::{
    divergence, fig_ms, fig_peak, save_phases, Options, FIG_BYTES, FIG_FIRST_READ_MS,
    FIG_FULL_SYNC_BYTES, FIG_FULL_SYNC_MS, FIG_INC_SYNC_BYTES, FIG_INC_SYNC_MESSAGES,
    FIG_INC_SYNC_MS, FIG_OPEN_MS, FIG_PEAK_MB, FIG_PEAK_MB_BEFORE_SYNC, FIG_REOPEN_MS, FIG_SAVE_MS,
};
use crate::figures::fig;
use crate::Error;

/// The `contacts` map of `doc`.
fn contacts(doc: &AutoCommit) -> Result<ObjId, Error> {
    match doc.get(ROOT, "contacts")? {
        Some((Value::Object(ObjType::Map), id)) => Ok(id),
        _ => Err("automerge: no contacts map".into()),
    }
}

fn save(doc: &mut AutoCommit, contacts: &ObjId, save: Save) -> Result<(), Error> {
    match save {
        Save::Create(new) => {
            let obj = doc.put_object(contacts, workload::key(&new.id), ObjType::Map)?;
            for (field, value) in FIELDS.iter().zip(new.values) {
                doc.put(&obj, *field, value)?;
            }
        }
        Save::Edit(edit) => edit_one(doc, contacts, edit)?,
    }
    doc.commit();
    Ok(())
}

fn edit_one(doc: &mut AutoCommit, contacts: &ObjId, edit: Edit) -> Result<(), Error> {
    let (_, obj) = doc
        .get(contacts, workload::key(&edit.id))?
        .ok_or("automerge: edited contact missing")?;
    doc.put(&obj, edit.field_name(), edit.value)?;
    Ok(())
}

/// What one run of the sync protocol cost.
struct SyncCost {
    bytes: usize,
    messages: usize,
}

/// Runs the sync protocol between `first` (which speaks first) and `second` until neither
/// side has a message to send. Every message is encoded and decoded, as over a network.
fn sync_loop(
    first: &mut AutoCommit,
    first_state: &mut sync::State,
    second: &mut AutoCommit,
    second_state: &mut sync::State,
) -> Result<SyncCost, Error> {
    let mut cost = SyncCost {
        bytes: 0,
        messages: 0,
    };
    loop {
        let mut sent = false;
        if let Some(m) = first.sync().generate_sync_message(first_state) {
            let wire = m.encode();
            cost.bytes += wire.len();
            cost.messages += 1;
            second
                .sync()
                .receive_sync_message(second_state, sync::Message::decode(&wire)?)?;
            sent = true;
        }
        if let Some(m) = second.sync().generate_sync_message(second_state) {
            let wire = m.encode();
            cost.bytes += wire.len();
            cost.messages += 1;
            first
                .sync()
                .receive_sync_message(first_state, sync::Message::decode(&wire)?)?;
            sent = true;
        }
        if !sent {
            return Ok(cost);
        }
    }
}

fn same_heads(a: &mut AutoCommit, b: &mut AutoCommit) -> bool {
    let mut x = a.get_heads();
    let mut y = b.get_heads();
    x.sort();
    y.sort();
    x == y
}

/// Runs the workload (see the parent module).
pub fn run(options: &Options) -> Result<(), Error> {
    let config = options.workload;
    let mut doc = AutoCommit::new();
    let map = doc.put_object(ROOT, "contacts", ObjType::Map)?;
    doc.commit();

    let w = save_phases(options, |s| {
        s.into_iter().try_for_each(|s| save(&mut doc, &map, s))
    })?;

    let start = Instant::now();
    let bytes = doc.save();
    fig_ms(FIG_SAVE_MS, start.elapsed());
    fig(FIG_BYTES, bytes.len() as f64);
    drop(doc);

    let start = Instant::now();
    let first = AutoCommit::load(&bytes)?;
    fig_ms(FIG_OPEN_MS, start.elapsed());
    drop(first);
    let start = Instant::now();
    let mut a = AutoCommit::load(&bytes)?;
    fig_ms(FIG_REOPEN_MS, start.elapsed());
    drop(bytes);
    let key = workload::key(&w.id(0).ok_or("no contacts")?);
    let start = Instant::now();
    let map = contacts(&a)?;
    let (_, obj) = a
        .get(&map, key)?
        .ok_or("automerge: first contact missing")?;
    let mut read = 0;
    for field in FIELDS {
        if let Some((Value::Scalar(v), _)) = a.get(&obj, field)? {
            read += usize::from(v.as_str().is_some());
        }
    }
    fig_ms(FIG_FIRST_READ_MS, start.elapsed());
    if read != FIELDS.len() {
        return Err(format!("automerge: read {read} fields of the first contact").into());
    }
    fig_peak(FIG_PEAK_MB_BEFORE_SYNC);

    // Full sync to a new, empty document; the new peer speaks first.
    let mut b = AutoCommit::new();
    let (mut state_a, mut state_b) = (sync::State::new(), sync::State::new());
    let start = Instant::now();
    let full = sync_loop(&mut b, &mut state_b, &mut a, &mut state_a)?;
    fig_ms(FIG_FULL_SYNC_MS, start.elapsed());
    fig(FIG_FULL_SYNC_BYTES, full.bytes as f64);
    fig("full_sync_messages", full.messages as f64);
    if !same_heads(&mut a, &mut b) {
        return Err("automerge: full sync did not converge".into());
    }
    let (kept_a, kept_b) = (state_a.encode(), state_b.encode());

    // Both sides save on their own, then sync again with the states they kept.
    for (doc, side) in [(&mut a, 1), (&mut b, 2)] {
        let map = contacts(doc)?;
        let mut d = divergence(&w, side);
        for _ in 0..config.diverge {
            save(doc, &map, Save::Edit(d.edit().ok_or("no contacts")?))?;
        }
    }
    let mut state_a = sync::State::decode(&kept_a)?;
    let mut state_b = sync::State::decode(&kept_b)?;
    let start = Instant::now();
    let inc = sync_loop(&mut a, &mut state_a, &mut b, &mut state_b)?;
    fig_ms(FIG_INC_SYNC_MS, start.elapsed());
    fig(FIG_INC_SYNC_BYTES, inc.bytes as f64);
    fig(FIG_INC_SYNC_MESSAGES, inc.messages as f64);
    if !same_heads(&mut a, &mut b) {
        return Err("automerge: incremental sync did not converge".into());
    }
    fig_peak(FIG_PEAK_MB);
    Ok(())
}

//! The comparison workload on loro 1.17: one [`LoroDoc`] with a root map `contacts` holding a
//! child [`LoroMap`] per contact (keyed by the contact id in hex) of eight string fields, and
//! one [`LoroDoc::commit`] per save. Nothing is written to disk: a save is an in-memory commit.
//! Loro's defaults are kept, so consecutive local commits within its merge interval (1,000 s)
//! are stored as one change; the figure `changes` reports how many it kept.
//!
//! Size is the length of a snapshot export ([`ExportMode::Snapshot`]); open is
//! [`LoroDoc::new`] then [`LoroDoc::import`] of the snapshot (loro decodes parts of a snapshot
//! lazily; the first read is timed separately). The full sync exports every update and imports
//! them into an empty document. The incremental sync is loro's version-vector exchange: each
//! side sends its encoded [`LoroDoc::oplog_vv`] and receives [`ExportMode::updates`] from it;
//! all four messages are counted.

use std::time::Instant;

use loro::{Container, ExportMode, LoroDoc, LoroMap, LoroValue, ValueOrContainer, VersionVector};

use super::workload::{self, Edit, Save, FIELDS};
use super::{
    divergence, fig_ms, fig_peak, save_phases, Options, FIG_BYTES, FIG_FIRST_READ_MS,
    FIG_FULL_SYNC_BYTES, FIG_FULL_SYNC_MS, FIG_INC_SYNC_BYTES, FIG_INC_SYNC_MESSAGES,
    FIG_INC_SYNC_MS, FIG_OPEN_MS, FIG_PEAK_MB, FIG_PEAK_MB_BEFORE_SYNC, FIG_REOPEN_MS, FIG_SAVE_MS,
};
use crate::figures::fig;
use crate::Error;

/// The map of the contact keyed `key` in `contacts`.
fn contact(contacts: &LoroMap, key: &str) -> Result<LoroMap, Error> {
    match contacts.get(key) {
        Some(ValueOrContainer::Container(Container::Map(m))) => Ok(m),
        _ => Err(format!("loro: contact {key} missing").into()),
    }
}

fn save(doc: &LoroDoc, contacts: &LoroMap, save: Save) -> Result<(), Error> {
    match save {
        Save::Create(new) => {
            let m = contacts.insert_container(&workload::key(&new.id), LoroMap::new())?;
            for (field, value) in FIELDS.iter().zip(new.values) {
                m.insert(field, value)?;
            }
        }
        Save::Edit(edit) => edit_one(contacts, edit)?,
    }
    doc.commit();
    Ok(())
}

fn edit_one(contacts: &LoroMap, edit: Edit) -> Result<(), Error> {
    let m = contact(contacts, &workload::key(&edit.id))?;
    m.insert(edit.field_name(), edit.value)?;
    Ok(())
}

/// Runs the workload (see the parent module).
pub fn run(options: &Options) -> Result<(), Error> {
    let config = options.workload;
    let doc = LoroDoc::new();
    let map = doc.get_map("contacts");

    let w = save_phases(options, |s| {
        s.into_iter().try_for_each(|s| save(&doc, &map, s))
    })?;
    fig("changes", doc.len_changes() as f64);
    fig("ops", doc.len_ops() as f64);

    let start = Instant::now();
    let bytes = doc.export(ExportMode::Snapshot)?;
    fig_ms(FIG_SAVE_MS, start.elapsed());
    fig(FIG_BYTES, bytes.len() as f64);
    drop(map);
    drop(doc);

    let start = Instant::now();
    let first = LoroDoc::new();
    first.import(&bytes)?;
    fig_ms(FIG_OPEN_MS, start.elapsed());
    drop(first);
    let start = Instant::now();
    let a = LoroDoc::new();
    a.import(&bytes)?;
    fig_ms(FIG_REOPEN_MS, start.elapsed());
    drop(bytes);
    let key = workload::key(&w.id(0).ok_or("no contacts")?);
    let start = Instant::now();
    let first = contact(&a.get_map("contacts"), &key)?;
    let mut read = 0;
    for field in FIELDS {
        if let Some(ValueOrContainer::Value(LoroValue::String(_))) = first.get(field) {
            read += 1;
        }
    }
    fig_ms(FIG_FIRST_READ_MS, start.elapsed());
    if read != FIELDS.len() {
        return Err(format!("loro: read {read} fields of the first contact").into());
    }
    fig_peak(FIG_PEAK_MB_BEFORE_SYNC);

    // Full sync: every update, imported into a new, empty document.
    let b = LoroDoc::new();
    let start = Instant::now();
    let all = a.export(ExportMode::all_updates())?;
    b.import(&all)?;
    fig_ms(FIG_FULL_SYNC_MS, start.elapsed());
    fig(FIG_FULL_SYNC_BYTES, all.len() as f64);
    drop(all);
    if a.oplog_vv() != b.oplog_vv() {
        return Err("loro: full sync did not converge".into());
    }

    // Both sides save on their own, then exchange version vectors and the updates they lack.
    for (doc, side) in [(&a, 1), (&b, 2)] {
        let map = doc.get_map("contacts");
        let mut d = divergence(&w, side);
        for _ in 0..config.diverge {
            save(doc, &map, Save::Edit(d.edit().ok_or("no contacts")?))?;
        }
    }
    let start = Instant::now();
    let vv_a = a.oplog_vv().encode();
    let vv_b = b.oplog_vv().encode();
    let for_b = a.export(ExportMode::updates(&VersionVector::decode(&vv_b)?))?;
    let for_a = b.export(ExportMode::updates(&VersionVector::decode(&vv_a)?))?;
    b.import(&for_b)?;
    a.import(&for_a)?;
    fig_ms(FIG_INC_SYNC_MS, start.elapsed());
    let messages = [&vv_a, &vv_b, &for_a, &for_b];
    fig(
        FIG_INC_SYNC_BYTES,
        messages.iter().map(|m| m.len()).sum::<usize>() as f64,
    );
    fig(FIG_INC_SYNC_MESSAGES, messages.len() as f64);
    if a.oplog_vv() != b.oplog_vv() {
        return Err("loro: incremental sync did not converge".into());
    }
    fig_peak(FIG_PEAK_MB);
    Ok(())
}

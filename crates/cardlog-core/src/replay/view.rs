//! Reading registers: the app-facing [`ContactView`], per-path conflicts and versions, and the
//! canonical state bytes. Built from [`Heads`] only, so the in-memory replay and the durable
//! store read contacts with the same code and produce the same bytes.

use std::collections::BTreeMap;

use bincode::Encode;

use super::register::{Heads, RegisterWrite};
use crate::hlc::Hlc;
use crate::id::{ContactId, DeviceId, ItemId, OpId};
use crate::model::contact::{Contact, Item};
use crate::model::{Field, ItemKind, Path, Value};

/// One value a path has had: which op wrote it, when, by whom, and whether it is still a head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryEntry {
    /// The op that wrote it.
    pub op: OpId,
    /// The writing device.
    pub author: DeviceId,
    /// The op's seq in its author's chain.
    pub seq: u64,
    /// The op's timestamp.
    pub hlc: Hlc,
    /// The value written; `None` is a removal.
    pub value: Option<Value>,
    /// The writes this one replaced.
    pub replaces: Vec<OpId>,
    /// Whether no write present replaces it (the visible value or a conflict alternative).
    pub head: bool,
}

/// Why a write's timestamp cannot be right (docs/SEMANTICS.md, "Time"). The timestamp still
/// decides as stamped (every replica must decide alike); the mark tells the reader not to trust
/// it, and names what gives it away.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Suspect {
    /// Stamped further ahead of the reader's time than the skew bound: its device's clock was
    /// ahead (it wins concurrent edits until real time passes it).
    Ahead {
        /// How far ahead of the reader's time, in ms.
        by_ms: u64,
    },
    /// Stamped before a write it replaces by more than the skew bound. It was made after that
    /// write (it replaced it), so its device's clock was behind: that write's own time is not
    /// ahead of the reader's.
    Behind {
        /// How far before the replaced write, in ms.
        by_ms: u64,
        /// The replaced write it was stamped before.
        of: OpId,
    },
}

/// The suspect writes among one path's history (as a replica's `history` returns it): `now_ms`
/// is the reader's (calibrated) time and `bound_ms` the skew bound. A write ahead of `now_ms`
/// by more than the bound is [`Suspect::Ahead`]; one stamped more than the bound before a
/// write it replaces, where that write is not itself ahead, is [`Suspect::Behind`] (the
/// largest such gap). A write that replaces a far-future write is not blamed for it. The
/// marks are the reader's view: a reader whose own clock is far behind sees everyone's
/// writes as ahead.
pub fn suspects(history: &[HistoryEntry], now_ms: u64, bound_ms: u64) -> BTreeMap<OpId, Suspect> {
    let ahead = |v: &HistoryEntry| v.hlc.wall_ms.saturating_sub(now_ms) > bound_ms;
    let at: BTreeMap<OpId, &HistoryEntry> = history.iter().map(|v| (v.op, v)).collect();
    let mut out = BTreeMap::new();
    for v in history {
        if ahead(v) {
            let by_ms = v.hlc.wall_ms.saturating_sub(now_ms);
            out.insert(v.op, Suspect::Ahead { by_ms });
            continue;
        }
        let behind = v
            .replaces
            .iter()
            .filter_map(|r| at.get(r))
            .filter(|r| !ahead(r))
            // A replaced write a little ahead (within the bound) counts as stamped now.
            .map(|r| {
                (
                    r.hlc.wall_ms.min(now_ms).saturating_sub(v.hlc.wall_ms),
                    r.op,
                )
            })
            .filter(|(gap, _)| *gap > bound_ms)
            .max();
        if let Some((by_ms, of)) = behind {
            out.insert(v.op, Suspect::Behind { by_ms, of });
        }
    }
    out
}

/// A path whose heads disagree: the visible winner and the other values, readable until an edit
/// of the path settles it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldConflict {
    /// The conflicted path (`exists` for a concurrent delete and edit).
    pub path: Path,
    /// The visible write.
    pub winner: HistoryEntry,
    /// The other heads, newest first.
    pub alternatives: Vec<HistoryEntry>,
}

/// A contact as an app reads it: the visible values, whether it is deleted, and its conflicts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContactView {
    /// The visible values.
    pub contact: Contact,
    /// Whether the contact is deleted (a tombstone that can be restored).
    pub deleted: bool,
    /// Conflicted paths, in path order.
    pub conflicts: Vec<FieldConflict>,
    /// Timestamp of the first write of the contact.
    pub created: Hlc,
    /// Timestamp of the newest visible write.
    pub updated: Hlc,
}

impl HistoryEntry {
    /// The version a register write describes.
    pub fn of(write: &RegisterWrite, head: bool) -> Self {
        Self {
            op: write.key.op,
            author: write.key.author,
            seq: write.seq,
            hlc: write.key.hlc,
            value: write.value.clone(),
            replaces: write.replaces.clone(),
            head,
        }
    }
}

/// The conflict at a path, if its heads disagree: the winner and the other heads, newest first.
pub fn field_conflict(path: &Path, heads: &Heads) -> Option<FieldConflict> {
    if !heads.conflicted() {
        return None;
    }
    let mut versions = heads.iter().rev().map(|w| HistoryEntry::of(w, true));
    let winner = versions.next()?;
    Some(FieldConflict {
        path: path.clone(),
        winner,
        alternatives: versions.collect(),
    })
}

/// Every register of one contact, by path: how many writes it has had, and its heads. What a
/// store keeps under one key, and what a save reads (once per contact) to know which writes
/// each new write replaces.
pub type ContactRegisters = BTreeMap<Path, (u64, Heads)>;

/// The view apps read of a contact, from its registers.
pub fn view_of(id: ContactId, registers: &ContactRegisters) -> ContactView {
    contact_view(id, registers.iter().map(|(path, (_, heads))| (path, heads)))
}

/// Builds a contact's view from the heads of its registers (any order).
pub fn contact_view<'a>(
    id: ContactId,
    registers: impl IntoIterator<Item = (&'a Path, &'a Heads)>,
) -> ContactView {
    let mut contact = Contact::new(id);
    let mut items: BTreeMap<ItemKind, Vec<(Hlc, ItemId, Item)>> = BTreeMap::new();
    let mut conflicts = Vec::new();
    let mut created = Hlc::default();
    let mut updated = Hlc::default();
    let mut deleted = true;
    for (path, heads) in registers {
        if let Some(w) = heads.winner() {
            updated = updated.max(w.key.hlc);
        }
        if let Some(c) = field_conflict(path, heads) {
            conflicts.push(c);
        }
        if path == &Path::Exists {
            created = heads.first_hlc().unwrap_or_default();
            deleted = heads.value() != Some(&Value::Bool(true));
            continue;
        }
        let Some(value) = heads.value() else {
            continue;
        };
        match (path, value) {
            (Path::Field(f), Value::Text(t)) => {
                contact.fields.insert(*f, t.clone());
            }
            (Path::Item(kind, item), Value::Item(v)) => {
                items.entry(*kind).or_default().push((
                    heads.first_hlc().unwrap_or_default(),
                    *item,
                    Item {
                        id: *item,
                        label: v.label.clone(),
                        body: v.body.clone(),
                    },
                ));
            }
            (Path::Tag(name), Value::Present) => {
                contact.tags.insert(name.clone());
            }
            (Path::Custom(name), Value::Text(t)) => match Field::of_custom(name) {
                Some(field) => {
                    contact.fields.insert(field, t.clone());
                }
                None => {
                    contact.custom.insert(name.clone(), t.clone());
                }
            },
            // Validation makes other combinations impossible; ignoring them keeps reads total.
            _ => {}
        }
    }
    for (kind, mut list) in items {
        list.sort_by_key(|a| (a.0, a.1));
        *contact.items_mut(kind) = list.into_iter().map(|(_, _, item)| item).collect();
    }
    conflicts.sort_by(|a, b| a.path.cmp(&b.path));
    ContactView {
        contact,
        deleted,
        conflicts,
        created,
        updated,
    }
}

/// The canonical bytes of a materialized state: for every (contact, path) — given in that
/// order — its heads and how many writes it has had. Equal op sets give equal bytes, whichever
/// replica (in memory or on disk) computed them and in whatever order ops arrived.
pub fn state_bytes<'a>(
    registers: impl IntoIterator<Item = (ContactId, &'a Path, &'a Heads, u64)>,
) -> Vec<u8> {
    let mut out = Vec::new();
    write_state(registers, &mut out);
    out
}

/// The blake3 hash of [`state_bytes`] of the same registers, computed as they stream by:
/// comparing two states this way holds neither in memory.
pub fn state_digest<'a>(
    registers: impl IntoIterator<Item = (ContactId, &'a Path, &'a Heads, u64)>,
) -> [u8; 32] {
    let mut hasher = blake3::Hasher::new();
    write_state(registers, &mut hasher);
    *hasher.finalize().as_bytes()
}

/// Writes the rows of [`state_bytes`] to `out` (a `Vec`, a hasher…): the bytes are the rows
/// concatenated, so rows given in several calls, in order, write the same bytes as one call.
pub fn write_state<'a>(
    registers: impl IntoIterator<Item = (ContactId, &'a Path, &'a Heads, u64)>,
    out: &mut impl std::io::Write,
) {
    #[derive(Encode)]
    struct Row<'a> {
        contact: ContactId,
        path: &'a Path,
        writes: u64,
        heads: &'a Heads,
    }
    for (contact, path, heads, writes) in registers {
        let row = Row {
            contact,
            path,
            writes,
            heads,
        };
        // Encoding into a Vec or a hasher has no failure mode; a failure would drop the row
        // on every replica alike.
        let _ = bincode::encode_into_std_write(&row, out, bincode::config::standard());
    }
}

//! The reference model: semantics S1–S9 computed directly from a set of ops, sharing no code
//! with the engine's replay (`cardlog_core::replay`), so a bug cannot hide in both. It is
//! deliberately naive — every question is answered by scanning all writes — and small enough
//! to check by reading against docs/SEMANTICS.md:
//!
//! - a write at (contact, path) is a **head** unless another write at the same (contact, path)
//!   names its op in `replaces`;
//! - the visible value is the head with the greatest (timestamp, author, op id);
//! - heads holding more than one distinct value (a removal is a value) make a **conflict**;
//! - a contact is deleted unless its visible `exists` value is `true`;
//! - items are ordered by the earliest timestamp written at their path, then id.
//!
//! [`Rule::LastWriteWins`] is the canary: the "last save wins" rule cardlog exists to avoid
//! (replaced writes ignored, the newest timestamp wins). The harness must tell it apart from
//! the engine; `tests/canary.rs` shows it does.

use std::collections::{BTreeMap, BTreeSet};

use cardlog_core::{
    Contact, ContactId, ContactView, DeviceId, Field, Hlc, Item, ItemKind, OpId, Path, SealedOp,
    Value,
};

/// Which merge rule the model applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Rule {
    /// cardlog's semantics (docs/SEMANTICS.md).
    #[default]
    Cardlog,
    /// The canary: ignore what writes replaced; the newest write wins; no conflicts.
    LastWriteWins,
}

/// One write as the model sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct W {
    op: OpId,
    author: DeviceId,
    hlc: Hlc,
    value: Option<Value>,
    replaces: Vec<OpId>,
}

impl W {
    fn order(&self) -> (Hlc, DeviceId, OpId) {
        (self.hlc, self.author, self.op)
    }
}

/// A contact as the model computes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelContact {
    /// The visible values.
    pub contact: Contact,
    /// Whether it is deleted.
    pub deleted: bool,
    /// Per conflicted path: the visible op, then the other heads' ops newest first.
    pub conflicts: BTreeMap<Path, (OpId, Vec<OpId>)>,
}

impl ModelContact {
    /// The same facts read off an engine view, for comparison.
    pub fn of_view(view: &ContactView) -> Self {
        Self {
            contact: view.contact.clone(),
            deleted: view.deleted,
            conflicts: view
                .conflicts
                .iter()
                .map(|c| {
                    (
                        c.path.clone(),
                        (c.winner.op, c.alternatives.iter().map(|v| v.op).collect()),
                    )
                })
                .collect(),
        }
    }
}

/// Computes every contact from `ops` (any order, duplicates ignored).
pub fn contacts(ops: &[SealedOp], rule: Rule) -> BTreeMap<ContactId, ModelContact> {
    let mut registers: BTreeMap<(ContactId, Path), Vec<W>> = BTreeMap::new();
    let mut seen: BTreeSet<OpId> = BTreeSet::new();
    for sealed in ops {
        if !seen.insert(sealed.id()) {
            continue;
        }
        let op = sealed.op();
        for w in &op.writes {
            registers
                .entry((w.contact, w.path.clone()))
                .or_default()
                .push(W {
                    op: sealed.id(),
                    author: op.author,
                    hlc: op.hlc,
                    value: w.value.clone(),
                    replaces: w.replaces.clone(),
                });
        }
    }
    let mut out: BTreeMap<ContactId, ModelContact> = BTreeMap::new();
    let mut items: BTreeMap<(ContactId, ItemKind), Vec<(Hlc, Item)>> = BTreeMap::new();
    for ((contact, path), writes) in &registers {
        let replaced: BTreeSet<OpId> = match rule {
            Rule::Cardlog => writes.iter().flat_map(|w| w.replaces.clone()).collect(),
            Rule::LastWriteWins => writes
                .iter()
                .filter(|w| writes.iter().any(|x| x.order() > w.order()))
                .map(|w| w.op)
                .collect(),
        };
        let mut heads: Vec<&W> = writes
            .iter()
            .filter(|w| !replaced.contains(&w.op))
            .collect();
        heads.sort_by_key(|w| std::cmp::Reverse(w.order()));
        let Some(winner) = heads.first() else {
            continue;
        };
        let entry = out.entry(*contact).or_insert_with(|| ModelContact {
            contact: Contact::new(*contact),
            deleted: true,
            conflicts: BTreeMap::new(),
        });
        if heads.iter().any(|h| h.value != winner.value) {
            entry.conflicts.insert(
                path.clone(),
                (winner.op, heads.iter().skip(1).map(|h| h.op).collect()),
            );
        }
        let first = writes.iter().map(|w| w.hlc).min().unwrap_or_default();
        match (path, &winner.value) {
            (Path::Exists, v) => entry.deleted = v != &Some(Value::Bool(true)),
            (_, None) => {}
            (Path::Field(f), Some(Value::Text(t))) => {
                entry.contact.fields.insert(*f, t.clone());
            }
            (Path::Item(kind, id), Some(Value::Item(v))) => {
                items.entry((*contact, *kind)).or_default().push((
                    first,
                    Item {
                        id: *id,
                        label: v.label.clone(),
                        body: v.body.clone(),
                    },
                ));
            }
            (Path::Tag(name), Some(Value::Present)) => {
                entry.contact.tags.insert(name.clone());
            }
            (Path::Custom(name), Some(Value::Text(t))) => match Field::of_custom(name) {
                Some(field) => {
                    entry.contact.fields.insert(field, t.clone());
                }
                None => {
                    entry.contact.custom.insert(name.clone(), t.clone());
                }
            },
            _ => {}
        }
    }
    for ((contact, kind), mut list) in items {
        list.sort_by_key(|a| (a.0, a.1.id));
        if let Some(c) = out.get_mut(&contact) {
            *c.contact.items_mut(kind) = list.into_iter().map(|(_, item)| item).collect();
        }
    }
    out
}

//! Importing a `.vcf` file into a replica: one save per card, matched to the contacts already
//! there so a re-import updates instead of duplicating (docs/VCARD.md, "Matching").
//!
//! - A card with a UID is the contact whose id that UID gives (`ids`): new, it is created;
//!   present, it is edited to equal the card (`Replica::edit` saves only what differs, so an
//!   unchanged card saves nothing); deleted here, it is skipped with a warning.
//! - A card without a UID is unchanged if a visible contact has exactly its content, and a new
//!   contact otherwise.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use cardlog::{Contact, ContactId, Field, Item, ItemBody, ItemId, ItemKind, Progress, Replica};

use crate::card::{self, Draft};
use crate::error::{CardError, ImportError, Warning};
use crate::{frame, ids};

/// How to import.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct ImportOptions {
    /// Bulk mode ([`Replica::bulk`]): still one op per card, but made durable together at the
    /// end instead of one by one. Much faster for large files; a crash part way loses some
    /// cards (never part of one), which a second import then adds.
    pub bulk: bool,
}

impl ImportOptions {
    /// Options with bulk mode on or off.
    pub fn bulk(bulk: bool) -> Self {
        Self { bulk }
    }
}

/// What happened to one card.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Outcome {
    /// A new contact was saved.
    Created(ContactId),
    /// The card's contact was here and was edited to match the card.
    Updated(ContactId),
    /// The card's contact was here with exactly the card's content; nothing was saved.
    Unchanged(ContactId),
    /// The card's contact is deleted here; nothing was saved (see [`Warning::Deleted`]).
    Skipped(ContactId),
    /// The card was not imported.
    Rejected(CardError),
}

/// One card of the file and what became of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CardReport {
    /// The line of its `BEGIN:VCARD` (1-based).
    pub line: usize,
    /// What happened.
    pub outcome: Outcome,
}

/// The summary of an import.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImportReport {
    /// Every card read, in file order.
    pub cards: Vec<CardReport>,
    /// Properties kept as custom fields (no field of their own), over all cards imported.
    pub kept: usize,
    /// What was accepted with a caveat.
    pub warnings: Vec<Warning>,
}

impl ImportReport {
    fn count(&self, f: impl Fn(&Outcome) -> bool) -> usize {
        self.cards.iter().filter(|c| f(&c.outcome)).count()
    }

    /// Cards that created a contact.
    pub fn created(&self) -> usize {
        self.count(|o| matches!(o, Outcome::Created(_)))
    }

    /// Cards that updated a contact.
    pub fn updated(&self) -> usize {
        self.count(|o| matches!(o, Outcome::Updated(_)))
    }

    /// Cards whose contact was already here as they are.
    pub fn unchanged(&self) -> usize {
        self.count(|o| matches!(o, Outcome::Unchanged(_)))
    }

    /// Cards whose contact is deleted here.
    pub fn skipped(&self) -> usize {
        self.count(|o| matches!(o, Outcome::Skipped(_)))
    }

    /// The rejected cards: line and reason.
    pub fn rejected(&self) -> impl Iterator<Item = (usize, &CardError)> {
        self.cards.iter().filter_map(|c| match &c.outcome {
            Outcome::Rejected(e) => Some((c.line, e)),
            _ => None,
        })
    }
}

/// A contact's content without ids: what "exactly the card's content" compares.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Content {
    fields: BTreeMap<Field, String>,
    items: Vec<(ItemKind, String, ItemBody)>,
    tags: BTreeSet<String>,
    custom: BTreeMap<String, String>,
}

fn content(c: &Contact) -> Content {
    let mut items: Vec<(ItemKind, String, ItemBody)> = ItemKind::ALL
        .into_iter()
        .flat_map(|kind| {
            c.items(kind)
                .iter()
                .map(move |i| (kind, i.label.clone(), i.body.clone()))
        })
        .collect();
    items.sort();
    Content {
        fields: c.fields.clone(),
        items,
        tags: c.tags.clone(),
        custom: c.custom.clone(),
    }
}

/// Gives a draft its contact id and its items their derived ids.
fn with_ids(mut contact: Contact, id: ContactId) -> Contact {
    contact.id = id;
    for kind in ItemKind::ALL {
        for (position, item) in contact.items_mut(kind).iter_mut().enumerate() {
            item.id = ids::item_id(id, kind, position, &item.label, &item.body);
        }
    }
    contact
}

/// The card's contact with the ids of `existing`'s items where they are the same item: equal
/// label and value first, then the remaining ones in order (an edited phone stays one item).
fn aligned(existing: &Contact, card: Contact) -> Contact {
    let mut out = with_ids(card, existing.id);
    // A formatted name equal to the name its parts give is exported as FN and read back as
    // no field (that FN says nothing more): the card still says the same, so it stays.
    if out.get(Field::FormattedName).is_none() {
        if let Some(formatted) = existing.get(Field::FormattedName) {
            if formatted == out.built_name() {
                out.set(Field::FormattedName, formatted);
            }
        }
    }
    for kind in ItemKind::ALL {
        let old: &[Item] = existing.items(kind);
        let mut used = vec![false; old.len()];
        let new = out.items_mut(kind);
        let mut found: Vec<Option<ItemId>> = vec![None; new.len()];
        for (slot, item) in found.iter_mut().zip(new.iter()) {
            let same = old
                .iter()
                .zip(used.iter_mut())
                .find(|(o, used)| !**used && o.label == item.label && o.body == item.body);
            if let Some((o, used)) = same {
                *used = true;
                *slot = Some(o.id);
            }
        }
        for slot in found.iter_mut().filter(|s| s.is_none()) {
            if let Some((o, used)) = old.iter().zip(used.iter_mut()).find(|(_, used)| !**used) {
                *used = true;
                *slot = Some(o.id);
            }
        }
        let taken: Vec<ItemId> = old.iter().map(|o| o.id).collect();
        for (item, slot) in new.iter_mut().zip(found) {
            match slot {
                Some(id) => item.id = id,
                // A derived id equal to an old item's would make two items one.
                None if taken.contains(&item.id) => {
                    if let Ok(id) = ItemId::random() {
                        item.id = id;
                    }
                }
                None => {}
            }
        }
    }
    out
}

/// Whether a replica error concerns this card only (it is rejected and the import goes on) or
/// the replica (the import stops).
fn card_level(e: &cardlog::Error) -> bool {
    // Every refused edit is about the card (its contents, or the contact it names).
    matches!(e, cardlog::Error::Edit(_))
}

struct Run<'r> {
    replica: &'r mut Replica,
    report: ImportReport,
    /// Visible contacts by content, built at the first card without a UID.
    by_content: Option<HashMap<Content, ContactId>>,
}

impl Run<'_> {
    fn saved(
        &mut self,
        line: usize,
        result: Result<Outcome, cardlog::Error>,
    ) -> Result<Outcome, ImportError> {
        match result {
            Ok(outcome) => Ok(outcome),
            Err(e) if card_level(&e) => Ok(Outcome::Rejected(CardError::Save(e))),
            Err(source) => Err(ImportError::Replica { line, source }),
        }
    }

    fn index(&mut self, before: Option<&Contact>, after: &Contact) {
        if let Some(index) = self.by_content.as_mut() {
            if let Some(before) = before {
                let key = content(before);
                if index.get(&key) == Some(&before.id) {
                    index.remove(&key);
                }
            }
            index.entry(content(after)).or_insert(after.id);
        }
    }

    fn create(&mut self, line: usize, contact: Contact) -> Result<Outcome, ImportError> {
        let id = contact.id;
        let result = self
            .replica
            .add_contact(&contact)
            .map(|_| Outcome::Created(id));
        let outcome = self.saved(line, result)?;
        if matches!(outcome, Outcome::Created(_)) {
            self.index(None, &contact);
        }
        Ok(outcome)
    }

    fn card(&mut self, line: usize, draft: Draft) -> Result<Outcome, ImportError> {
        let Some(uid) = draft.uid else {
            return self.without_uid(line, draft.contact);
        };
        let id = ids::contact_of_uid(&uid);
        let existing = self
            .replica
            .contact(&id)
            .map_err(|source| ImportError::Replica { line, source })?;
        match existing {
            None => self.create(line, with_ids(draft.contact, id)),
            Some(view) if view.deleted => {
                self.report
                    .warnings
                    .push(Warning::Deleted { line, contact: id });
                Ok(Outcome::Skipped(id))
            }
            Some(view) => {
                let after = aligned(&view.contact, draft.contact);
                let target = after.clone();
                let result = self
                    .replica
                    .edit(id, move |c| *c = target)
                    .map(|op| match op {
                        Some(_) => Outcome::Updated(id),
                        None => Outcome::Unchanged(id),
                    });
                let outcome = self.saved(line, result)?;
                if matches!(outcome, Outcome::Updated(_)) {
                    self.index(Some(&view.contact), &after);
                }
                Ok(outcome)
            }
        }
    }

    fn without_uid(&mut self, line: usize, contact: Contact) -> Result<Outcome, ImportError> {
        if self.by_content.is_none() {
            let visible = self
                .replica
                .contacts()
                .map_err(|source| ImportError::Replica { line, source })?;
            let mut index = HashMap::with_capacity(visible.len());
            for view in visible {
                index
                    .entry(content(&view.contact))
                    .or_insert(view.contact.id);
            }
            self.by_content = Some(index);
        }
        let key = content(&contact);
        if let Some(id) = self.by_content.as_ref().and_then(|i| i.get(&key)) {
            return Ok(Outcome::Unchanged(*id));
        }
        let id = ContactId::random().map_err(|e| ImportError::Replica {
            line,
            source: cardlog::Error::Random(e),
        })?;
        self.create(line, with_ids(contact, id))
    }
}

fn run(
    replica: &mut Replica,
    input: &[u8],
    progress: &mut dyn FnMut(Progress),
) -> Result<ImportReport, ImportError> {
    let framed = frame::split(input);
    let total = framed.cards.len() as u64;
    let mut run = Run {
        replica,
        report: ImportReport {
            warnings: framed.warnings,
            ..ImportReport::default()
        },
        by_content: None,
    };
    for (done, card) in (1u64..).zip(framed.cards) {
        let (line, outcome) = match card {
            Err((line, e)) => (line, Outcome::Rejected(e)),
            Ok(card) => match card::read(&card) {
                Err(e) => (card.line, Outcome::Rejected(e)),
                Ok(draft) => {
                    run.report.kept += draft.kept;
                    run.report.warnings.extend(draft.warnings.iter().cloned());
                    (card.line, run.card(card.line, draft)?)
                }
            },
        };
        run.report.cards.push(CardReport { line, outcome });
        progress(Progress { done, total });
    }
    Ok(run.report)
}

/// Imports every card of a `.vcf` file (vCard 2.1, 3.0 or 4.0; UTF-8, or 8-bit text with a
/// `CHARSET`) into `replica`, one save per card, and reports what became of each. A card that
/// cannot be imported is rejected with its line and reason and the rest go on; only a failing
/// replica stops the import.
pub fn import(replica: &mut Replica, input: &[u8]) -> Result<ImportReport, ImportError> {
    import_with(replica, input, &ImportOptions::default(), &mut |_| {})
}

/// [`import`] with options and a progress callback (cards done of cards in the file).
pub fn import_with(
    replica: &mut Replica,
    input: &[u8],
    options: &ImportOptions,
    progress: &mut dyn FnMut(Progress),
) -> Result<ImportReport, ImportError> {
    if !options.bulk {
        return run(replica, input, progress);
    }
    let mut bulk = replica.bulk();
    let report = run(&mut bulk, input, progress)?;
    bulk.finish().map_err(ImportError::Flush)?;
    Ok(report)
}

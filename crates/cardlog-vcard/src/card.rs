//! One card, parsed by calcard, turned into a [`Contact`] (import's half of the mapping in
//! docs/VCARD.md): name parts, nickname, organization, title, dates and note into fields;
//! phones, e-mails, addresses and URLs into items labelled by their `TYPE`; categories into
//! tags; and every other property, whole, into a custom field that export writes back.

use std::collections::{BTreeMap, HashMap, VecDeque};

use calcard::vcard::{
    VCard, VCardEntry, VCardParameterName, VCardParameterValue, VCardProperty, VCardValue,
};
use cardlog::{Contact, ContactId, Field, Item, ItemBody, ItemId, ItemKind, PostalAddress};
use cardlog_core::codec::limits::{NAME_BYTES_MAX, TEXT_BYTES_MAX};

use crate::error::{CardError, Warning};
use crate::frame::FramedCard;
use crate::{date, ids, names, prop};

/// A card read into a contact, before it has its id.
#[derive(Debug, Clone)]
pub(crate) struct Draft {
    /// The contact; its id and item ids are placeholders.
    pub contact: Contact,
    /// The card's UID, if it has one.
    pub uid: Option<String>,
    /// Properties kept as custom fields.
    pub kept: usize,
    /// Caveats.
    pub warnings: Vec<Warning>,
}

/// Finds a property's line: the n-th property called `GROUP.NAME` in the card is on the n-th
/// line that starts with that name.
struct Lines {
    by_key: HashMap<String, VecDeque<usize>>,
    card: usize,
}

impl Lines {
    fn new(card: &FramedCard) -> Self {
        let mut by_key: HashMap<String, VecDeque<usize>> = HashMap::new();
        for (key, line) in &card.properties {
            by_key.entry(key.clone()).or_default().push_back(*line);
        }
        Self {
            by_key,
            card: card.line,
        }
    }

    fn next(&mut self, entry: &VCardEntry) -> usize {
        let mut key = entry
            .group
            .as_ref()
            .map(|g| format!("{g}."))
            .unwrap_or_default();
        key.push_str(entry.name.as_str());
        self.by_key
            .get_mut(&key.to_ascii_uppercase())
            .and_then(VecDeque::pop_front)
            .unwrap_or(self.card)
    }
}

/// Properties whose values may be binary data (base64 or a `data:` URI).
fn may_be_binary(entry: &VCardEntry) -> bool {
    matches!(
        entry.name,
        VCardProperty::Photo
            | VCardProperty::Logo
            | VCardProperty::Sound
            | VCardProperty::Key
            | VCardProperty::Other(_)
    )
}

/// A text value calcard could not decode (quoted-printable or base64 bytes that are invalid in
/// their charset are left as binary data) is decoded as UTF-8 with U+FFFD for the bad bytes.
/// Returns whether the entry has any U+FFFD.
fn decode_text(entry: &mut VCardEntry, quoted_printable: bool) -> bool {
    let binary_ok = !quoted_printable && may_be_binary(entry);
    let mut replaced = false;
    for value in &mut entry.values {
        match value {
            VCardValue::Binary(data) if !binary_ok => {
                let text = String::from_utf8_lossy(&data.data).into_owned();
                replaced |= text.contains('\u{fffd}');
                *value = VCardValue::Text(text);
            }
            // Only decoded values: text that was already U+FFFD in UTF-8 is not a decoding loss.
            VCardValue::Text(t) if quoted_printable => replaced |= t.contains('\u{fffd}'),
            VCardValue::Component(parts) if quoted_printable => {
                replaced |= parts.iter().any(|t| t.contains('\u{fffd}'));
            }
            _ => {}
        }
    }
    replaced
}

/// The values as text, components joined by `,`; `None` if any is not text or there are more
/// than `max`.
fn texts(entry: &VCardEntry, max: usize) -> Option<Vec<String>> {
    if entry.values.len() > max {
        return None;
    }
    entry
        .values
        .iter()
        .map(|v| match v {
            VCardValue::Text(t) => Some(t.clone()),
            VCardValue::Component(parts) => Some(parts.join(",")),
            _ => None,
        })
        .collect()
}

fn single_text(entry: &VCardEntry) -> Option<String> {
    match entry.values.as_slice() {
        [VCardValue::Text(t)] => Some(t.clone()),
        _ => None,
    }
}

fn all_empty(values: &[String]) -> bool {
    values.iter().all(String::is_empty)
}

struct Reader {
    draft: Draft,
    /// Field properties already mapped (later ones of the same name are kept whole).
    mapped: Vec<&'static str>,
}

impl Reader {
    /// Records the group and parameters of a property mapped to a field, when it has any.
    fn remember_left(&mut self, entry: &VCardEntry, name: &'static str) {
        let bare = VCardEntry {
            group: entry.group.clone(),
            name: entry.name.clone(),
            params: entry
                .params
                .iter()
                .filter(|p| {
                    // A date's VALUE follows from its text (a date or not), so it is not kept.
                    !(matches!(name, "BDAY" | "ANNIVERSARY") && p.name == VCardParameterName::Value)
                })
                .cloned()
                .collect(),
            values: Vec::new(),
        };
        let left = prop::left_of(&bare);
        if left != name {
            self.draft
                .contact
                .custom
                .insert(format!("{}{name}", names::LEFT_PREFIX), left);
        }
    }

    fn field(&mut self, entry: &VCardEntry, name: &'static str, field: Field, text: String) {
        self.mapped.push(name);
        self.draft.contact.set(field, text);
        self.remember_left(entry, name);
    }

    /// Keeps a property whole as a custom field: its left side names it, its vCard 4.0 value is
    /// the text (docs/VCARD.md, "Custom fields").
    fn keep(&mut self, entry: &VCardEntry, line: usize) {
        let left = prop::left_of(entry);
        let value = prop::value_of(entry);
        let custom = &mut self.draft.contact.custom;
        // A name a field is stored under (`FN`) is taken: such a property is kept as `FN #2`.
        let reserved = Field::of_custom(&left).is_some() && !custom.contains_key(&left);
        if reserved {
            custom.insert(left.clone(), String::new());
        }
        let name = names::unique(custom, &left);
        if reserved {
            custom.remove(&left);
        }
        let (name, value) = match name {
            name if name.len() <= NAME_BYTES_MAX => (name, value),
            _ => (
                names::unique(custom, names::WHOLE_LINE),
                prop::line_of(entry),
            ),
        };
        if value.len() > TEXT_BYTES_MAX {
            self.draft.warnings.push(Warning::TooLarge {
                line,
                property: entry.name.as_str().to_owned(),
                bytes: value.len(),
            });
            return;
        }
        custom.insert(name, value);
        self.draft.kept += 1;
    }

    fn item(&mut self, entry: &VCardEntry, kind: ItemKind, body: ItemBody) -> bool {
        // Export writes the label back as TYPE and parameters, or whole in X-CARDLOG-LABEL.
        let label = prop::label_of(entry);
        self.draft.contact.items_mut(kind).push(Item {
            id: ItemId([0; 16]),
            label,
            body,
        });
        true
    }

    fn read(&mut self, entry: &VCardEntry) -> bool {
        let first = |name: &str, mapped: &[&str]| !mapped.contains(&name);
        let plain = entry.group.is_none() && entry.params.is_empty();
        match &entry.name {
            VCardProperty::Uid => {
                if let (None, Some(VCardValue::Text(uid))) = (&self.draft.uid, entry.values.first())
                {
                    if !uid.is_empty() {
                        self.draft.uid = Some(uid.clone());
                        // A UID that is a contact id is not kept: export writes it from the id.
                        return plain
                            && entry.values.len() == 1
                            && ids::contact_of_urn(uid).is_some();
                    }
                }
                false
            }
            VCardProperty::N if first("N", &self.mapped) => {
                let Some(parts) = texts(entry, 5) else {
                    return false;
                };
                self.mapped.push("N");
                let part = |i: usize| parts.get(i).cloned().unwrap_or_default();
                for (i, field) in [
                    Field::Family,
                    Field::Given,
                    Field::Middle,
                    Field::Prefix,
                    Field::Suffix,
                ]
                .into_iter()
                .enumerate()
                {
                    self.draft.contact.set(field, part(i));
                }
                self.remember_left(entry, "N");
                true
            }
            VCardProperty::Nickname if first("NICKNAME", &self.mapped) => {
                match texts(entry, usize::MAX) {
                    Some(v) if !all_empty(&v) => {
                        self.field(entry, "NICKNAME", Field::Nickname, v.join(","));
                        true
                    }
                    Some(_) => true,
                    None => false,
                }
            }
            VCardProperty::Org if first("ORG", &self.mapped) => match texts(entry, usize::MAX) {
                Some(v) if !all_empty(&v) => {
                    let mut parts = v.into_iter();
                    let org = parts.next().unwrap_or_default();
                    let department: Vec<String> = parts.collect();
                    self.field(entry, "ORG", Field::Org, org);
                    self.draft
                        .contact
                        .set(Field::Department, department.join(";"));
                    true
                }
                Some(_) => true,
                None => false,
            },
            VCardProperty::Title | VCardProperty::Note => {
                let (name, field) = match entry.name {
                    VCardProperty::Title => ("TITLE", Field::Title),
                    _ => ("NOTE", Field::Note),
                };
                if !first(name, &self.mapped) {
                    return false;
                }
                match single_text(entry) {
                    Some(t) if t.is_empty() => true,
                    Some(t) => {
                        self.field(entry, name, field, t);
                        true
                    }
                    None => false,
                }
            }
            VCardProperty::Bday | VCardProperty::Anniversary => {
                let (name, field) = match entry.name {
                    VCardProperty::Bday => ("BDAY", Field::Birthday),
                    _ => ("ANNIVERSARY", Field::Anniversary),
                };
                if !first(name, &self.mapped) {
                    return false;
                }
                let text = match entry.values.as_slice() {
                    [VCardValue::PartialDateTime(p)] => date::format(p)
                        .filter(|s| date::parse(s).is_some())
                        .unwrap_or_else(|| prop::value_of(entry)),
                    [VCardValue::Text(t)] => t.clone(),
                    _ => return false,
                };
                if text.is_empty() {
                    return true;
                }
                self.field(entry, name, field, text);
                true
            }
            VCardProperty::Tel | VCardProperty::Email | VCardProperty::Url => {
                let kind = match entry.name {
                    VCardProperty::Tel => ItemKind::Phone,
                    VCardProperty::Email => ItemKind::Email,
                    _ => ItemKind::Url,
                };
                match single_text(entry) {
                    Some(t) if !t.is_empty() => self.item(entry, kind, ItemBody::Text(t)),
                    _ => false,
                }
            }
            VCardProperty::Adr => match texts(entry, 7) {
                Some(parts) if !all_empty(&parts) => {
                    let part = |i: usize| parts.get(i).cloned().unwrap_or_default();
                    let address = PostalAddress {
                        po_box: part(0),
                        extended: part(1),
                        street: part(2),
                        locality: part(3),
                        region: part(4),
                        code: part(5),
                        country: part(6),
                    };
                    self.item(
                        entry,
                        ItemKind::Address,
                        ItemBody::Address(Box::new(address)),
                    )
                }
                _ => false,
            },
            VCardProperty::Categories if plain => match texts(entry, usize::MAX) {
                Some(tags)
                    if tags
                        .iter()
                        .all(|t| !t.is_empty() && t.len() <= NAME_BYTES_MAX) =>
                {
                    self.draft.contact.tags.extend(tags);
                    true
                }
                _ => false,
            },
            VCardProperty::Other(name) if name.eq_ignore_ascii_case(prop::FALLBACK) => {
                let (Some(value), None, [p]) =
                    (single_text(entry), &entry.group, entry.params.as_slice())
                else {
                    return false;
                };
                let custom_name = match (&p.name, &p.value) {
                    (VCardParameterName::Other(n), VCardParameterValue::Text(v))
                        if n.eq_ignore_ascii_case(prop::FALLBACK_NAME) =>
                    {
                        v.clone()
                    }
                    _ => return false,
                };
                if custom_name.is_empty()
                    || custom_name.len() > NAME_BYTES_MAX
                    || self.draft.contact.custom.contains_key(&custom_name)
                {
                    return false;
                }
                self.draft.contact.custom.insert(custom_name, value);
                self.draft.kept += 1;
                true
            }
            _ => false,
        }
    }
}

/// Reads one framed card into a draft contact.
pub(crate) fn read(card: &FramedCard) -> Result<Draft, CardError> {
    let vcard = VCard::parse(&card.text).map_err(|e| CardError::Unreadable(format!("{e:?}")))?;
    let mut lines = Lines::new(card);
    let qp_lines: Vec<usize> = card.quoted_printable.clone();
    let mut reader = Reader {
        draft: Draft {
            contact: Contact::new(ContactId([0; 16])),
            uid: None,
            kept: 0,
            warnings: Vec::new(),
        },
        mapped: Vec::new(),
    };
    let mut formatted = Vec::new();
    for entry in &vcard.entries {
        let line = lines.next(entry);
        if matches!(
            entry.name,
            VCardProperty::Version | VCardProperty::Begin | VCardProperty::End
        ) {
            continue;
        }
        let mut entry = entry.clone();
        if decode_text(&mut entry, qp_lines.contains(&line)) {
            reader.draft.warnings.push(Warning::InvalidBytes {
                line,
                property: entry.name.as_str().to_owned(),
            });
        }
        if entry.name == VCardProperty::Fn {
            formatted.push((entry, line));
            continue;
        }
        if !reader.read(&entry) {
            reader.keep(&entry, line);
        }
    }
    // The first plain FN is the formatted-name field, unless it is what the name parts give
    // anyway (what export writes for a contact without one), so that a card without FN
    // round-trips without gaining one; any other FN (a second one, or one with a group or
    // parameters such as LANGUAGE) is kept as written.
    let built = reader.draft.contact.built_name();
    for (i, (entry, line)) in formatted.into_iter().enumerate() {
        let plain = i == 0 && entry.group.is_none() && entry.params.is_empty();
        match single_text(&entry) {
            Some(text) if plain && text == built => {}
            Some(text) if plain && !text.is_empty() => {
                reader.draft.contact.set(Field::FormattedName, text);
            }
            // (Never under the bare name `FN`, which is where the field is stored.)
            _ => reader.keep(&entry, line),
        }
    }
    Ok(reader.draft)
}

/// Whether one of these custom fields writes `property` (such as `UID` or `FN`) on export, so
/// export does not write its own.
pub(crate) fn custom_writes(custom: &BTreeMap<String, String>, property: &str) -> bool {
    custom.keys().any(|name| {
        let base = names::base(name);
        base.split([';', ':'])
            .next()
            .is_some_and(|p| p.eq_ignore_ascii_case(property))
    })
}

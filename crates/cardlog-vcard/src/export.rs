//! Contacts to vCard 4.0 (or 3.0): export's half of the mapping in docs/VCARD.md. Fields,
//! items and tags become their properties, with the groups and parameters import remembered;
//! custom fields holding kept properties are written back as they were; any other custom
//! field goes out as `X-CARDLOG-CUSTOM;X-NAME=…`, which import reads back under its name.

use calcard::vcard::{
    VCard, VCardEntry, VCardParameter, VCardParameterName, VCardProperty, VCardValue,
    VCardValueType, VCardVersion,
};
use cardlog::{Contact, ContactId, Field, ItemBody, ItemKind, Replica};

use crate::card::custom_writes;
use crate::error::ExportError;
use crate::{date, ids, names, prop};

/// The vCard version to write.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum Version {
    /// vCard 3.0 (RFC 2426), for older programs.
    V3,
    /// vCard 4.0 (RFC 6350), the default.
    #[default]
    V4,
}

impl Version {
    fn calcard(self) -> VCardVersion {
        match self {
            Version::V3 => VCardVersion::V3_0,
            Version::V4 => VCardVersion::V4_0,
        }
    }
}

/// Whether `entry`, written as vCard `version` and read back, is the same property (calcard's
/// 3.0 writer and reader do not carry every 4.0 value through unchanged).
fn survives(entry: &VCardEntry, version: Version) -> bool {
    let mut text = String::new();
    let card = VCard {
        entries: vec![entry.clone()],
    };
    if card.write_to(&mut text, version.calcard()).is_err() {
        return false;
    }
    let Ok(back) = VCard::parse(&text) else {
        return false;
    };
    let mut back = back
        .entries
        .into_iter()
        .filter(|e| e.name != VCardProperty::Version);
    match (back.next(), back.next()) {
        (Some(read), None) => prop::line_of(&read) == prop::line_of(entry),
        _ => false,
    }
}

/// Builds the properties of one contact, remembering which `vcard:NAME` fields were used.
struct Writer<'c> {
    contact: &'c Contact,
    version: Version,
    entries: Vec<VCardEntry>,
    used: Vec<String>,
}

impl Writer<'_> {
    /// A property for a field, with the group and parameters import kept for it.
    fn field_entry(&mut self, name: VCardProperty) -> VCardEntry {
        let key = format!("{}{}", names::LEFT_PREFIX, name.as_str());
        let remembered = self
            .contact
            .custom
            .get(&key)
            .and_then(|left| prop::read_left(left, &name));
        match remembered {
            Some(entry) => {
                self.used.push(key);
                entry
            }
            None => VCardEntry::new(name),
        }
    }

    fn text_field(&mut self, name: VCardProperty, field: Field) {
        if let Some(text) = self.contact.get(field) {
            let entry = self.field_entry(name).with_value(text.to_owned());
            self.entries.push(entry);
        }
    }

    fn date_field(&mut self, name: VCardProperty, field: Field) {
        let Some(text) = self.contact.get(field) else {
            return;
        };
        let entry = self.field_entry(name);
        // A date in the field's form is written as a date if it reads back as the same date in
        // the version written; anything else is text.
        let as_date = date::parse(text)
            .map(|p| entry.clone().with_value(VCardValue::PartialDateTime(p)))
            .filter(|candidate| survives(candidate, self.version));
        let entry = as_date.unwrap_or_else(|| {
            entry
                .with_param(VCardParameter::value(VCardValueType::Text))
                .with_value(text.to_owned())
        });
        self.entries.push(entry);
    }

    fn items(&mut self) {
        for kind in ItemKind::ALL {
            let name = match kind {
                ItemKind::Phone => VCardProperty::Tel,
                ItemKind::Email => VCardProperty::Email,
                ItemKind::Address => VCardProperty::Adr,
                ItemKind::Url => VCardProperty::Url,
            };
            for item in self.contact.items(kind) {
                let entry = prop::params_for_label(&name, &item.label);
                let entry = match &item.body {
                    ItemBody::Text(t) => entry.with_value(t.clone()),
                    ItemBody::Address(a) => entry.with_values(
                        a.parts()
                            .into_iter()
                            .map(|p| VCardValue::Text(p.to_owned()))
                            .collect(),
                    ),
                };
                self.entries.push(entry);
            }
        }
    }

    /// Custom fields: kept properties as they were, the rest as `X-CARDLOG-CUSTOM`.
    fn custom(&mut self) {
        let mut custom: Vec<(&String, &String)> = self.contact.custom.iter().collect();
        custom.sort_by(|a, b| names::order(a.0).cmp(&names::order(b.0)));
        for (name, value) in custom {
            if self.used.contains(name) {
                continue;
            }
            let base = names::base(name);
            let kept = if base == names::WHOLE_LINE {
                prop::read_line_exact(value)
            } else if base.starts_with(names::LEFT_PREFIX) {
                None
            } else {
                prop::read_line_exact(&format!("{base}:{value}"))
            };
            let kept = kept.filter(|e| survives(e, self.version));
            let entry = kept.unwrap_or_else(|| {
                VCardEntry::new(VCardProperty::Other(prop::FALLBACK.to_owned()))
                    .with_param(VCardParameter::new(
                        VCardParameterName::Other(prop::FALLBACK_NAME.to_owned()),
                        name.clone(),
                    ))
                    .with_value(value.clone())
            });
            self.entries.push(entry);
        }
    }
}

/// One contact as a vCard of `version` (CRLF line ends, folded at 75 bytes).
///
/// Writes `UID` (`urn:uuid:` + the contact id, unless the contact keeps a UID of its own) and
/// `FN` (the display name: the formatted name when set) so the card stands alone and imports
/// back to this contact.
pub fn to_vcard(contact: &Contact, version: Version) -> String {
    let mut w = Writer {
        contact,
        version,
        entries: Vec::new(),
        used: Vec::new(),
    };
    if !custom_writes(&contact.custom, "UID") {
        w.entries
            .push(VCardEntry::new(VCardProperty::Uid).with_value(ids::uid_of(contact.id)));
    }
    // Always: a kept `FN` (another language, a second name) is an extra one.
    w.entries
        .push(VCardEntry::new(VCardProperty::Fn).with_value(contact.display_name()));
    let n: Vec<VCardValue> = [
        Field::Family,
        Field::Given,
        Field::Middle,
        Field::Prefix,
        Field::Suffix,
    ]
    .into_iter()
    .map(|f| VCardValue::Text(contact.get(f).unwrap_or_default().to_owned()))
    .collect();
    let entry = w.field_entry(VCardProperty::N).with_values(n);
    w.entries.push(entry);
    w.text_field(VCardProperty::Nickname, Field::Nickname);
    if contact.get(Field::Org).is_some() || contact.get(Field::Department).is_some() {
        let mut values = vec![VCardValue::Text(
            contact.get(Field::Org).unwrap_or_default().to_owned(),
        )];
        if let Some(department) = contact.get(Field::Department) {
            values.extend(
                department
                    .split(';')
                    .map(|d| VCardValue::Text(d.to_owned())),
            );
        }
        let entry = w.field_entry(VCardProperty::Org).with_values(values);
        w.entries.push(entry);
    }
    w.text_field(VCardProperty::Title, Field::Title);
    w.date_field(VCardProperty::Bday, Field::Birthday);
    w.date_field(VCardProperty::Anniversary, Field::Anniversary);
    w.text_field(VCardProperty::Note, Field::Note);
    w.items();
    if !contact.tags.is_empty() {
        w.entries.push(
            VCardEntry::new(VCardProperty::Categories).with_values(
                contact
                    .tags
                    .iter()
                    .map(|t| VCardValue::Text(t.clone()))
                    .collect(),
            ),
        );
    }
    w.custom();
    let mut out = String::new();
    // Writing to a String cannot fail.
    let _ = VCard { entries: w.entries }.write_to(&mut out, version.calcard());
    out
}

/// Exports contacts as one vCard file: the visible contacts in id order when `ids` is empty,
/// else those contacts in the order given (a deleted or unknown one is an error).
pub fn export(
    replica: &Replica,
    ids: &[ContactId],
    version: Version,
) -> Result<String, ExportError> {
    let contacts: Vec<Contact> = if ids.is_empty() {
        replica.contacts()?.into_iter().map(|v| v.contact).collect()
    } else {
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            match replica.contact(id)? {
                None => return Err(ExportError::NotFound(*id)),
                Some(v) if v.deleted => return Err(ExportError::Deleted(*id)),
                Some(v) => out.push(v.contact),
            }
        }
        out
    };
    Ok(contacts
        .iter()
        .map(|c| to_vcard(c, version))
        .collect::<String>())
}

//! The contact data model as the log sees it: every piece of a contact is a register at a
//! [`Path`] holding a [`Value`]. The typed, app-facing view built from those registers and the
//! diff that turns an edited view back into writes live in [`contact`].
//!
//! Enum variant order is part of the op format (bincode encodes the variant index): new variants
//! go at the end, existing ones are never reordered or removed (docs/FORMAT.md).

pub mod contact;
pub mod listing;

use bincode::{Decode, Encode};

use crate::id::ItemId;

/// A single-valued field of a contact.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Encode, Decode)]
pub enum Field {
    /// Given (first) name.
    Given,
    /// Family (last) name.
    Family,
    /// Additional (middle) names.
    Middle,
    /// Honorific prefix ("Dr.").
    Prefix,
    /// Honorific suffix ("Jr.").
    Suffix,
    /// Nickname.
    Nickname,
    /// Organization.
    Org,
    /// Department within the organization.
    Department,
    /// Job title.
    Title,
    /// Birthday, as written (vCard allows partial dates such as `--0415`).
    Birthday,
    /// Anniversary, as written.
    Anniversary,
    /// Free-text note.
    Note,
    /// The formatted name (vCard `FN`): the name as the contact wants it shown. When absent
    /// the display name is built from the name parts ([`super::Contact::display_name`]).
    /// Stored at the custom path `custom/FN` ([`Field::path`]), where earlier builds kept a
    /// vCard's `FN`: writing it needs no new op format, and every build reads it.
    FormattedName,
}

impl Field {
    /// Every field, in format order.
    pub const ALL: [Field; 13] = [
        Field::Given,
        Field::Family,
        Field::Middle,
        Field::Prefix,
        Field::Suffix,
        Field::Nickname,
        Field::Org,
        Field::Department,
        Field::Title,
        Field::Birthday,
        Field::Anniversary,
        Field::Note,
        Field::FormattedName,
    ];

    /// The field's name in paths, the CLI and JSON.
    pub fn name(self) -> &'static str {
        match self {
            Field::Given => "given",
            Field::Family => "family",
            Field::Middle => "middle",
            Field::Prefix => "prefix",
            Field::Suffix => "suffix",
            Field::Nickname => "nickname",
            Field::Org => "org",
            Field::Department => "department",
            Field::Title => "title",
            Field::Birthday => "birthday",
            Field::Anniversary => "anniversary",
            Field::Note => "note",
            Field::FormattedName => "formatted_name",
        }
    }

    /// The field with this name, if any.
    pub fn from_name(name: &str) -> Option<Field> {
        Field::ALL.into_iter().find(|f| f.name() == name)
    }

    /// The path the field is written at: `Path::Field`, except the formatted name, which
    /// lives at `custom/FN` ([`FORMATTED_NAME_CUSTOM`]).
    pub fn path(self) -> Path {
        match self {
            Field::FormattedName => Path::Custom(FORMATTED_NAME_CUSTOM.to_owned()),
            other => Path::Field(other),
        }
    }

    /// The field a custom field name stands for (`FN`: the formatted name), if any.
    pub fn of_custom(name: &str) -> Option<Field> {
        (name == FORMATTED_NAME_CUSTOM).then_some(Field::FormattedName)
    }
}

/// The custom field name the formatted name is stored under ([`Field::path`]): a contact's
/// `custom` map never holds it, its `fields` do.
pub const FORMATTED_NAME_CUSTOM: &str = "FN";

/// The kinds of multi-valued items.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Encode, Decode)]
pub enum ItemKind {
    /// Telephone numbers.
    Phone,
    /// E-mail addresses.
    Email,
    /// Postal addresses (a structured value that changes as one).
    Address,
    /// Web addresses.
    Url,
}

impl ItemKind {
    /// Every kind, in format order.
    pub const ALL: [ItemKind; 4] = [
        ItemKind::Phone,
        ItemKind::Email,
        ItemKind::Address,
        ItemKind::Url,
    ];

    /// The kind's name in paths and the CLI.
    pub fn name(self) -> &'static str {
        match self {
            ItemKind::Phone => "phone",
            ItemKind::Email => "email",
            ItemKind::Address => "address",
            ItemKind::Url => "url",
        }
    }

    /// The kind with this name, if any.
    pub fn from_name(name: &str) -> Option<ItemKind> {
        ItemKind::ALL.into_iter().find(|k| k.name() == name)
    }
}

/// Where a register lives within a contact.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Encode, Decode)]
pub enum Path {
    /// Whether the contact exists (false after a delete); written by every edit.
    Exists,
    /// A single-valued field.
    Field(Field),
    /// One multi-valued item, by kind and id.
    Item(ItemKind, ItemId),
    /// Membership of one tag.
    Tag(String),
    /// A custom field by name (vCard `X-` properties and anything else without a field).
    Custom(String),
}

impl std::fmt::Display for Path {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Path::Exists => f.write_str("exists"),
            Path::Field(field) => f.write_str(field.name()),
            Path::Item(kind, id) => write!(f, "{}/{id}", kind.name()),
            Path::Tag(name) => write!(f, "tag/{name}"),
            Path::Custom(name) => match Field::of_custom(name) {
                Some(field) => f.write_str(field.name()),
                None => write!(f, "custom/{name}"),
            },
        }
    }
}

/// Why a string is not a path.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{input:?} is not a path (expected exists, a field name such as given or org, \
         KIND/ITEM-ID with KIND one of phone, email, address, url, tag/NAME or custom/NAME)"
)]
pub struct PathParseError {
    /// The string given.
    pub input: String,
}

impl std::str::FromStr for Path {
    type Err = PathParseError;

    /// Parses the display form: `exists`, `given`, `phone/<item id hex>`, `tag/<name>`,
    /// `custom/<name>`.
    fn from_str(s: &str) -> Result<Self, PathParseError> {
        let err = || PathParseError {
            input: s.to_owned(),
        };
        if s == "exists" {
            return Ok(Path::Exists);
        }
        if let Some(field) = Field::from_name(s) {
            return Ok(field.path());
        }
        let (head, rest) = s.split_once('/').ok_or_else(err)?;
        match head {
            "tag" if !rest.is_empty() => Ok(Path::Tag(rest.to_owned())),
            "custom" if !rest.is_empty() => Ok(Path::Custom(rest.to_owned())),
            _ => {
                let kind = ItemKind::from_name(head).ok_or_else(err)?;
                let id = rest.parse::<ItemId>().map_err(|_| err())?;
                Ok(Path::Item(kind, id))
            }
        }
    }
}

/// A postal address: one value whose parts change together (vCard `ADR` components). Empty
/// strings are absent parts.
#[derive(
    Clone,
    Debug,
    Default,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Encode,
    Decode,
    serde::Serialize,
    serde::Deserialize,
)]
pub struct PostalAddress {
    /// Post office box.
    pub po_box: String,
    /// Extended address (apartment, suite).
    pub extended: String,
    /// Street and number.
    pub street: String,
    /// City.
    pub locality: String,
    /// State, province or region.
    pub region: String,
    /// Postal code.
    pub code: String,
    /// Country.
    pub country: String,
}

impl PostalAddress {
    /// The parts in vCard order.
    pub fn parts(&self) -> [&str; 7] {
        [
            &self.po_box,
            &self.extended,
            &self.street,
            &self.locality,
            &self.region,
            &self.code,
            &self.country,
        ]
    }
}

impl std::fmt::Display for PostalAddress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let parts: Vec<&str> = self.parts().into_iter().filter(|p| !p.is_empty()).collect();
        f.write_str(&parts.join(", "))
    }
}

/// The content of an item: text for phones, e-mails and URLs, a structured address for
/// addresses.
#[derive(
    Clone,
    Debug,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Encode,
    Decode,
    serde::Serialize,
    serde::Deserialize,
)]
#[serde(untagged)]
pub enum ItemBody {
    /// A phone number, e-mail address or URL.
    Text(String),
    /// A postal address. Boxed: it is seven strings where every other value is at most two,
    /// and a value is held inline in every write and register; inline, it made a `Value` 192
    /// bytes instead of 48 and a `RegisterWrite` 288 instead of 144 (rebuild ran about 1.25×
    /// slower for it). The encoding is the same either way.
    Address(Box<PostalAddress>),
}

impl std::fmt::Display for ItemBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ItemBody::Text(t) => f.write_str(t),
            ItemBody::Address(a) => a.fmt(f),
        }
    }
}

/// An item's value: its label ("work", "mobile"; may be empty) and body, one register.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Encode, Decode)]
pub struct ItemValue {
    /// Free-form label.
    pub label: String,
    /// The content.
    pub body: ItemBody,
}

/// What a write stores at a path. A removal (cleared field, removed item or tag) is the absence
/// of a value (`None` in [`crate::op::Write::value`]).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Encode, Decode)]
pub enum Value {
    /// Text of a field or custom field.
    Text(String),
    /// Existence of the contact.
    Bool(bool),
    /// An item.
    Item(ItemValue),
    /// Membership of a tag.
    Present,
}

impl std::fmt::Display for Value {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Value::Text(t) => f.write_str(t),
            Value::Bool(b) => write!(f, "{b}"),
            Value::Item(item) if item.label.is_empty() => item.body.fmt(f),
            Value::Item(item) => write!(f, "{}: {}", item.label, item.body),
            Value::Present => f.write_str("present"),
        }
    }
}

impl Path {
    /// Whether `value` may be written at this path: text for fields and custom fields, an item
    /// of the matching body for items, presence for tags, a boolean (never a removal) for
    /// existence.
    pub fn accepts(&self, value: Option<&Value>) -> bool {
        match (self, value) {
            (Path::Exists, Some(Value::Bool(_))) => true,
            (Path::Exists, _) => false,
            (_, None) => true,
            (Path::Field(_) | Path::Custom(_), Some(Value::Text(_))) => true,
            (Path::Item(ItemKind::Address, _), Some(Value::Item(v))) => {
                matches!(v.body, ItemBody::Address(_))
            }
            (Path::Item(_, _), Some(Value::Item(v))) => matches!(v.body, ItemBody::Text(_)),
            (Path::Tag(_), Some(Value::Present)) => true,
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_parse_from_their_display_form() {
        let item = ItemId([0x5a; 16]);
        for path in [
            Path::Exists,
            Path::Field(Field::Given),
            Path::Field(Field::Note),
            Path::Item(ItemKind::Address, item),
            Path::Tag("book club".into()),
            Path::Custom("X-SHOE-SIZE".into()),
        ] {
            assert_eq!(path.to_string().parse::<Path>(), Ok(path));
        }
        for bad in ["", "colour", "phone/12", "fax/00", "tag/", "custom/"] {
            assert!(bad.parse::<Path>().is_err(), "{bad:?}");
        }
    }

    /// Field indices are part of the op format (docs/FORMAT.md): the formatted name came
    /// last, so every earlier field keeps its index.
    #[test]
    fn field_indices_match_the_format() {
        for (i, field) in Field::ALL.into_iter().enumerate() {
            assert_eq!(
                crate::codec::encode_to_vec(&Path::Field(field)),
                vec![1, i as u8],
                "{field:?}"
            );
        }
        // The formatted name is written at custom/FN: no op carries field 12.
        assert_eq!(
            Field::FormattedName.path(),
            Path::Custom(FORMATTED_NAME_CUSTOM.into())
        );
        assert_eq!("formatted_name".parse(), Ok(Field::FormattedName.path()));
        assert_eq!("custom/FN".parse(), Ok(Field::FormattedName.path()));
        assert_eq!(Field::FormattedName.path().to_string(), "formatted_name");
    }

    /// The formatted name as earlier builds stored a vCard's FN (the custom path `FN`) reads
    /// as the field; the field's own index is never written; the custom name is reserved.
    #[test]
    fn the_formatted_name_lives_at_custom_fn() {
        use crate::id::{ContactId, DeviceId};
        use crate::op::{Op, OpInvalid, Write};
        use crate::replay::view_of;
        let contact = ContactId([4; 16]);
        let op = |path: Path| Op {
            author: DeviceId([1; 16]),
            seq: 1,
            prev: None,
            hlc: crate::Hlc::default(),
            writes: vec![
                Write {
                    contact,
                    path: Path::Exists,
                    value: Some(Value::Bool(true)),
                    replaces: vec![],
                },
                Write {
                    contact,
                    path,
                    value: Some(Value::Text("Countess".into())),
                    replaces: vec![],
                },
            ],
            members: vec![],
        };
        assert_eq!(
            op(Path::Field(Field::FormattedName)).validate(),
            Err(OpInvalid::FieldNotWritable {
                index: 1,
                field: Field::FormattedName
            })
        );
        let sealed = op(Path::Custom("FN".into())).seal().unwrap();
        let mut registers = crate::replay::ContactRegisters::new();
        for w in &sealed.op().writes {
            let (writes, heads) = registers.entry(w.path.clone()).or_default();
            *writes += 1;
            heads.apply(crate::replay::RegisterWrite::of(
                sealed.op(),
                sealed.id(),
                w,
            ));
        }
        let view = view_of(contact, &registers);
        assert_eq!(view.contact.get(Field::FormattedName), Some("Countess"));
        assert!(view.contact.custom.is_empty());
        assert_eq!(view.contact.display_name(), "Countess");
        let mut c = crate::Contact::new(contact);
        c.custom.insert("FN".into(), "x".into());
        assert!(matches!(
            c.to_changes(),
            Err(crate::DiffError::ReservedCustom { .. })
        ));
    }

    /// Values live inline in every write and register: an unboxed address made them 192 bytes.
    #[test]
    fn values_stay_small() {
        assert!(
            std::mem::size_of::<Value>() <= 56,
            "{}",
            std::mem::size_of::<Value>()
        );
        assert!(std::mem::size_of::<Option<Value>>() <= 56);
    }
}

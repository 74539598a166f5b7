//! The serde shapes of the public types: the one owner of how cardlog's values look as JSON
//! (or any serde format), the shapes docs/CLI.md documents and the CLI prints.
//!
//! - Ids (contact, device, item, op, book) are lowercase hex strings; a path is its text form
//!   (`org`, `phone.<item id>`, `tag.friends`, `custom.X-FOO`, `exists`); a field or item kind
//!   is its name; an [`Hlc`] is `"<wall ms>.<counter>"`.
//! - Times shown to people (a view's `created` and `updated`, a version's or op's `time`) are
//!   RFC 3339 in UTC with milliseconds ([`rfc3339`]).
//! - A [`Contact`] is one object: `id`, each single-valued field under its name (`given`,
//!   `org`, …), `phones`, `emails`, `addresses`, `urls` (each `[{id, label, value}]`, an
//!   address's value an object of its seven parts), `tags` and `custom`.
//! - A [`ContactView`] is its contact's object plus `deleted`, `created`, `updated` and
//!   `conflicts` (`[{path, values}]`, the visible version first); a version
//!   ([`HistoryEntry`]) is `{op, device, seq, time, hlc, value, replaces, head}`.
//! - An op ([`SealedOp`]) is `{id, author, seq, prev, time, hlc, bytes, writes, members}`, a
//!   write `{contact, path, value, replaces}`, a member change `{change, …}`.
//! - A row ([`crate::ContactRow`]) is `{id, name, phone_or_email, deleted, conflicts}`
//!   (`phone_or_email` `null` when the contact has neither); it also deserializes.
//! - A register value ([`Value`]) is text as a string, existence as a boolean, an item as
//!   `{label, value}`, tag presence as `true`, a removal as `null`. Its meaning depends on
//!   its path, so values, versions, views and ops serialize only; model types (ids, paths,
//!   contacts, items, addresses, timestamps) also deserialize, and a contact read back
//!   equals the one written.
//!
//! - A membership refusal ([`crate::Refusal`]) is its sentence, which names the author; a
//!   role is its name; a member ([`crate::Member`]) is `{role, name, added_by, added_in,
//!   removed}`, a removal `{by, after, op}`.
//!
//! Objects are written in struct order; serde_json's `Value` (which the CLI prints) sorts
//! keys, which is what makes the CLI's output byte-stable.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::time::{Duration, UNIX_EPOCH};

use serde::de::{self, MapAccess, Visitor};
use serde::ser::{SerializeMap, SerializeSeq};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::hlc::Hlc;
use crate::id::{ContactId, DeviceId, ItemId, OpId};
use crate::key::BookId;
use crate::member::MemberChange;
use crate::model::contact::{Contact, Item};
use crate::model::{Field, ItemKind, Path, Value};
use crate::op::Write;
use crate::replay::{ContactView, FieldConflict, HistoryEntry, Suspect};
use crate::sealed::SealedOp;

/// Milliseconds since 1970 as RFC 3339 (UTC, milliseconds). Years past 9999 (only a peer
/// with a broken clock writes them) are `+<ms>ms` rather than a failure.
pub fn rfc3339(ms: u64) -> String {
    let raw = || format!("+{ms}ms");
    match UNIX_EPOCH.checked_add(Duration::from_millis(ms)) {
        Some(at) => {
            let mut out = String::new();
            match fmt::Write::write_fmt(
                &mut out,
                format_args!("{}", humantime::format_rfc3339_millis(at)),
            ) {
                Ok(()) => out,
                Err(_) => raw(),
            }
        }
        None => raw(),
    }
}

/// Types written as their `Display` text and read back through `FromStr`.
macro_rules! as_text {
    ($($ty:ty => $what:literal),* $(,)?) => {$(
        impl Serialize for $ty {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(self)
            }
        }

        impl<'de> Deserialize<'de> for $ty {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let text = String::deserialize(d)?;
                text.parse()
                    .map_err(|e| de::Error::custom(format_args!("not {}: {text:?} ({e})", $what)))
            }
        }
    )*};
}

as_text!(
    ContactId => "a contact id",
    DeviceId => "a device id",
    ItemId => "an item id",
    OpId => "an op id",
    BookId => "a book id",
    Path => "a path",
    Hlc => "a timestamp (<wall ms>.<counter>)",
);

impl std::str::FromStr for Hlc {
    type Err = HlcParseError;

    /// Reads `"<wall ms>.<counter>"` (the `Display` form).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (wall, counter) = s.split_once('.').ok_or(HlcParseError)?;
        Ok(Hlc {
            wall_ms: wall.parse().map_err(|_| HlcParseError)?,
            counter: counter.parse().map_err(|_| HlcParseError)?,
        })
    }
}

/// A timestamp that is not `"<wall ms>.<counter>"`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("expected <wall ms>.<counter>")]
pub struct HlcParseError;

/// Types written as their name.
macro_rules! as_name {
    ($($ty:ty => $what:literal),* $(,)?) => {$(
        impl Serialize for $ty {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.name())
            }
        }

        impl<'de> Deserialize<'de> for $ty {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let name = String::deserialize(d)?;
                <$ty>::from_name(&name)
                    .ok_or_else(|| de::Error::custom(format_args!("not {}: {name:?}", $what)))
            }
        }
    )*};
}

as_name!(Field => "a field name", ItemKind => "an item kind");

/// The JSON key of a contact's items of one kind.
pub fn plural(kind: ItemKind) -> &'static str {
    match kind {
        ItemKind::Phone => "phones",
        ItemKind::Email => "emails",
        ItemKind::Address => "addresses",
        ItemKind::Url => "urls",
    }
}

/// Writes a contact's entries into a map being serialized (shared by [`Contact`] and
/// [`ContactView`]).
fn contact_entries<M: SerializeMap>(c: &Contact, map: &mut M) -> Result<(), M::Error> {
    map.serialize_entry("id", &c.id)?;
    for (field, value) in &c.fields {
        map.serialize_entry(field.name(), value)?;
    }
    for kind in ItemKind::ALL {
        map.serialize_entry(plural(kind), c.items(kind))?;
    }
    map.serialize_entry("tags", &c.tags)?;
    map.serialize_entry("custom", &c.custom)
}

impl Serialize for Contact {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(None)?;
        contact_entries(self, &mut map)?;
        map.end()
    }
}

impl<'de> Deserialize<'de> for Contact {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_map(ContactVisitor)
    }
}

struct ContactVisitor;

impl<'de> Visitor<'de> for ContactVisitor {
    type Value = Contact;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(
            "a contact object (id, fields by name, phones, emails, addresses, urls, tags, custom)",
        )
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Contact, A::Error> {
        let mut id: Option<ContactId> = None;
        let mut fields = BTreeMap::new();
        let mut items: BTreeMap<ItemKind, Vec<Item>> = BTreeMap::new();
        let mut tags = BTreeSet::new();
        let mut custom = BTreeMap::new();
        while let Some(key) = map.next_key::<String>()? {
            if key == "id" {
                id = Some(map.next_value()?);
            } else if key == "tags" {
                tags = map.next_value()?;
            } else if key == "custom" {
                custom = map.next_value()?;
            } else if let Some(kind) = ItemKind::ALL.into_iter().find(|k| plural(*k) == key) {
                items.insert(kind, map.next_value()?);
            } else if let Some(field) = Field::from_name(&key) {
                let value: String = map.next_value()?;
                // An empty value is no value, as `Contact::set` has it.
                if !value.is_empty() && fields.insert(field, value).is_some() {
                    return Err(de::Error::duplicate_field(field.name()));
                }
            } else {
                return Err(de::Error::custom(format_args!(
                    "unknown contact key {key:?}: not a field name, id, phones, emails, \
                     addresses, urls, tags or custom"
                )));
            }
        }
        let mut contact = Contact::new(id.ok_or_else(|| de::Error::missing_field("id"))?);
        contact.fields = fields;
        for (kind, list) in items {
            *contact.items_mut(kind) = list;
        }
        contact.tags = tags;
        contact.custom = custom;
        Ok(contact)
    }
}

impl Serialize for Value {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Value::Text(t) => s.serialize_str(t),
            Value::Bool(b) => s.serialize_bool(*b),
            Value::Present => s.serialize_bool(true),
            Value::Item(item) => {
                let mut map = s.serialize_map(Some(2))?;
                map.serialize_entry("label", &item.label)?;
                map.serialize_entry("value", &item.body)?;
                map.end()
            }
        }
    }
}

impl Serialize for HistoryEntry {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(8))?;
        map.serialize_entry("op", &self.op)?;
        map.serialize_entry("device", &self.author)?;
        map.serialize_entry("seq", &self.seq)?;
        map.serialize_entry("time", &rfc3339(self.hlc.wall_ms))?;
        map.serialize_entry("hlc", &self.hlc)?;
        map.serialize_entry("value", &self.value)?;
        map.serialize_entry("replaces", &self.replaces)?;
        map.serialize_entry("head", &self.head)?;
        map.end()
    }
}

/// A conflict's versions, the visible one first.
struct Versions<'a>(&'a FieldConflict);

impl Serialize for Versions<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(1 + self.0.alternatives.len()))?;
        seq.serialize_element(&self.0.winner)?;
        for v in &self.0.alternatives {
            seq.serialize_element(v)?;
        }
        seq.end()
    }
}

impl Serialize for FieldConflict {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(2))?;
        map.serialize_entry("path", &self.path)?;
        map.serialize_entry("values", &Versions(self))?;
        map.end()
    }
}

impl Serialize for ContactView {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(None)?;
        contact_entries(&self.contact, &mut map)?;
        map.serialize_entry("deleted", &self.deleted)?;
        map.serialize_entry("created", &rfc3339(self.created.wall_ms))?;
        map.serialize_entry("updated", &rfc3339(self.updated.wall_ms))?;
        map.serialize_entry("conflicts", &self.conflicts)?;
        map.end()
    }
}

impl Serialize for crate::membership::Refusal {
    /// Its sentence (`"<device> is not a member of this address book"`): a refusal is told
    /// to people, and each names the author.
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl Serialize for Suspect {
    /// `{"ahead_ms": N}` or `{"behind_ms": N, "of": OP}`.
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Suspect::Ahead { by_ms } => {
                let mut map = s.serialize_map(Some(1))?;
                map.serialize_entry("ahead_ms", by_ms)?;
                map.end()
            }
            Suspect::Behind { by_ms, of } => {
                let mut map = s.serialize_map(Some(2))?;
                map.serialize_entry("behind_ms", by_ms)?;
                map.serialize_entry("of", of)?;
                map.end()
            }
        }
    }
}

impl Serialize for Write {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(4))?;
        map.serialize_entry("contact", &self.contact)?;
        map.serialize_entry("path", &self.path)?;
        map.serialize_entry("value", &self.value)?;
        map.serialize_entry("replaces", &self.replaces)?;
        map.end()
    }
}

impl Serialize for crate::member::MemberRole {
    /// Its name: `admin`, `write` or `read` (or `relay`).
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

impl Serialize for crate::membership::Member {
    /// `{role, name, added_by, added_in, removed}`, `removed` `null` or `{by, after, op}`.
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(5))?;
        map.serialize_entry("role", &self.role)?;
        map.serialize_entry("name", &self.name)?;
        map.serialize_entry("added_by", &self.added_by)?;
        map.serialize_entry("added_in", &self.added_in)?;
        map.serialize_entry("removed", &self.removed)?;
        map.end()
    }
}

impl Serialize for crate::membership::Removal {
    /// `{by, after, op}`.
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(3))?;
        map.serialize_entry("by", &self.by)?;
        map.serialize_entry("after", &self.after)?;
        map.serialize_entry("op", &self.op)?;
        map.end()
    }
}

impl Serialize for MemberChange {
    /// `{change, …}` with `change` one of found (`key`, `name`), add (`device`, `role`,
    /// `name`), remove (`device`, `after`), adopt (`author`, `seq`, `tip`).
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(None)?;
        match self {
            MemberChange::Found { key, name, .. } => {
                map.serialize_entry("change", "found")?;
                map.serialize_entry("key", &key.to_string())?;
                map.serialize_entry("name", name)?;
            }
            MemberChange::Add { device, role, name } => {
                map.serialize_entry("change", "add")?;
                map.serialize_entry("device", device)?;
                map.serialize_entry("role", role.name())?;
                map.serialize_entry("name", name)?;
            }
            MemberChange::Remove { device, after } => {
                map.serialize_entry("change", "remove")?;
                map.serialize_entry("device", device)?;
                map.serialize_entry("after", after)?;
            }
            MemberChange::Adopt { author, seq, tip } => {
                map.serialize_entry("change", "adopt")?;
                map.serialize_entry("author", author)?;
                map.serialize_entry("seq", seq)?;
                map.serialize_entry("tip", tip)?;
            }
        }
        map.end()
    }
}

impl Serialize for SealedOp {
    /// `{id, author, seq, prev, time, hlc, bytes, writes, members}`; `bytes` is the length
    /// of its canonical encoding.
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let o = self.op();
        let mut map = s.serialize_map(Some(9))?;
        map.serialize_entry("id", &self.id())?;
        map.serialize_entry("author", &o.author)?;
        map.serialize_entry("seq", &o.seq)?;
        map.serialize_entry("prev", &o.prev)?;
        map.serialize_entry("time", &rfc3339(o.hlc.wall_ms))?;
        map.serialize_entry("hlc", &o.hlc)?;
        map.serialize_entry("bytes", &self.bytes().len())?;
        map.serialize_entry("writes", &o.writes)?;
        map.serialize_entry("members", &o.members)?;
        map.end()
    }
}

// `ItemBody` (text or an address object, untagged), `Item` (`{id, label, value}`) and
// `PostalAddress` (its seven parts) derive theirs where they are declared (`model`).

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::model::{ItemBody, PostalAddress};

    #[test]
    fn a_contact_reads_back_equal_and_unknown_keys_are_named() {
        let mut c = Contact::new(ContactId([7; 16]));
        c.set(Field::Given, "Ada").set(Field::Org, "Engines");
        c.phones.push(Item {
            id: ItemId([1; 16]),
            label: "mobile".into(),
            body: ItemBody::Text("+44".into()),
        });
        c.addresses.push(Item {
            id: ItemId([2; 16]),
            label: "home".into(),
            body: ItemBody::Address(Box::new(PostalAddress {
                street: "1 Lane".into(),
                ..PostalAddress::default()
            })),
        });
        c.tags.insert("friends".into());
        c.custom.insert("X-A".into(), "b".into());
        let text = serde_json::to_string(&c).unwrap();
        let back: Contact = serde_json::from_str(&text).unwrap();
        assert_eq!(back, c);
        let err = serde_json::from_str::<Contact>(
            r#"{"id":"07070707070707070707070707070707","nope":"x"}"#,
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("unknown contact key \"nope\""), "{err}");
        let err = serde_json::from_str::<Contact>(r#"{"id":"zz"}"#)
            .unwrap_err()
            .to_string();
        assert!(err.contains("not a contact id"), "{err}");
    }

    #[test]
    fn timestamps_and_paths_round_trip_as_text() {
        let hlc = Hlc {
            wall_ms: 1_795_338_000_034,
            counter: 2,
        };
        assert_eq!(serde_json::to_string(&hlc).unwrap(), "\"1795338000034.2\"");
        assert_eq!(
            serde_json::from_str::<Hlc>("\"1795338000034.2\"").unwrap(),
            hlc
        );
        let path = Path::Item(ItemKind::Phone, ItemId([1; 16]));
        let text = serde_json::to_string(&path).unwrap();
        assert_eq!(serde_json::from_str::<Path>(&text).unwrap(), path);
        assert_eq!(rfc3339(1_795_338_000_034), "2026-11-22T09:00:00.034Z");
        assert_eq!(rfc3339(u64::MAX), format!("+{}ms", u64::MAX));
    }
}

//! The typed contact view apps read and edit, and the diff that turns an edited view into the
//! minimal set of changes (only the fields, items, tags and custom fields that differ; the seed
//! material's "key-based updates").
//!
//! A [`Contact`] holds visible values only; whether it is deleted and which fields are
//! conflicted come with it in [`crate::replay::ContactView`].

use std::collections::{BTreeMap, BTreeSet};

use crate::id::{ContactId, ItemId, RandomError};
use crate::model::{Field, ItemBody, ItemKind, ItemValue, Path, PostalAddress, Value};

/// One multi-valued item as the app sees it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Item {
    /// The item's own id, stable across edits of its label and value.
    pub id: ItemId,
    /// Free-form label ("work", "mobile"); may be empty.
    pub label: String,
    /// The content (`value` in JSON).
    #[serde(rename = "value")]
    pub body: ItemBody,
}

impl Item {
    /// A text item (phone, e-mail, URL) with a fresh id.
    pub fn text(label: impl Into<String>, text: impl Into<String>) -> Result<Self, RandomError> {
        Ok(Self {
            id: ItemId::random()?,
            label: label.into(),
            body: ItemBody::Text(text.into()),
        })
    }

    /// A postal address item with a fresh id.
    pub fn address(label: impl Into<String>, address: PostalAddress) -> Result<Self, RandomError> {
        Ok(Self {
            id: ItemId::random()?,
            label: label.into(),
            body: ItemBody::Address(Box::new(address)),
        })
    }

    fn value(&self) -> Value {
        Value::Item(ItemValue {
            label: self.label.clone(),
            body: self.body.clone(),
        })
    }
}

/// A contact's visible state, as the app reads and edits it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Contact {
    /// The contact's id.
    pub id: ContactId,
    /// Single-valued fields that are set.
    pub fields: BTreeMap<Field, String>,
    /// Phone numbers, oldest first.
    pub phones: Vec<Item>,
    /// E-mail addresses, oldest first.
    pub emails: Vec<Item>,
    /// Postal addresses, oldest first.
    pub addresses: Vec<Item>,
    /// Web addresses, oldest first.
    pub urls: Vec<Item>,
    /// Tags.
    pub tags: BTreeSet<String>,
    /// Custom fields by name (vCard `X-` properties and the like).
    pub custom: BTreeMap<String, String>,
}

/// One change an edit makes: the new value at a path, or its removal.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Change {
    /// Where.
    pub path: Path,
    /// The new value; `None` removes.
    pub value: Option<Value>,
}

/// Why an edited contact cannot be turned into changes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DiffError {
    /// A custom field named as a field is stored (`FN` is the formatted name).
    #[error("custom field {name:?} is where the {} field is stored: set that field instead", field.name())]
    ReservedCustom {
        /// The custom field's name.
        name: String,
        /// The field stored under it.
        field: Field,
    },
    /// The edit changed the contact's id.
    #[error("an edit cannot change a contact's id (was {before}, now {after})")]
    IdChanged {
        /// The original id.
        before: ContactId,
        /// The id after the edit.
        after: ContactId,
    },
    /// Two items of one kind share an id.
    #[error("two {kind} items share the id {id}", kind = kind.name())]
    DuplicateItem {
        /// The kind.
        kind: ItemKind,
        /// The repeated id.
        id: ItemId,
    },
    /// An address item holds text, or a phone/e-mail/URL holds an address.
    #[error("{kind} item {id} holds the wrong kind of value", kind = kind.name())]
    WrongBody {
        /// The kind.
        kind: ItemKind,
        /// The item.
        id: ItemId,
    },
}

impl Contact {
    /// An empty contact with the given id.
    pub fn new(id: ContactId) -> Self {
        Self {
            id,
            fields: BTreeMap::new(),
            phones: Vec::new(),
            emails: Vec::new(),
            addresses: Vec::new(),
            urls: Vec::new(),
            tags: BTreeSet::new(),
            custom: BTreeMap::new(),
        }
    }

    /// An empty contact with a fresh random id.
    pub fn random() -> Result<Self, RandomError> {
        Ok(Self::new(ContactId::random()?))
    }

    /// A field's value, if set.
    pub fn get(&self, field: Field) -> Option<&str> {
        self.fields.get(&field).map(String::as_str)
    }

    /// Sets a field; an empty string clears it.
    pub fn set(&mut self, field: Field, value: impl Into<String>) -> &mut Self {
        let value = value.into();
        if value.is_empty() {
            self.fields.remove(&field);
        } else {
            self.fields.insert(field, value);
        }
        self
    }

    /// The items of one kind.
    pub fn items(&self, kind: ItemKind) -> &[Item] {
        match kind {
            ItemKind::Phone => &self.phones,
            ItemKind::Email => &self.emails,
            ItemKind::Address => &self.addresses,
            ItemKind::Url => &self.urls,
        }
    }

    /// The items of one kind, to edit.
    pub fn items_mut(&mut self, kind: ItemKind) -> &mut Vec<Item> {
        match kind {
            ItemKind::Phone => &mut self.phones,
            ItemKind::Email => &mut self.emails,
            ItemKind::Address => &mut self.addresses,
            ItemKind::Url => &mut self.urls,
        }
    }

    /// Adds a text item (phone, e-mail, URL) with a fresh id and returns the id.
    pub fn add_text_item(
        &mut self,
        kind: ItemKind,
        label: impl Into<String>,
        text: impl Into<String>,
    ) -> Result<ItemId, RandomError> {
        let item = Item::text(label, text)?;
        let id = item.id;
        self.items_mut(kind).push(item);
        Ok(id)
    }

    /// Adds a postal address with a fresh id and returns the id.
    pub fn add_address(
        &mut self,
        label: impl Into<String>,
        address: PostalAddress,
    ) -> Result<ItemId, RandomError> {
        let item = Item::address(label, address)?;
        let id = item.id;
        self.addresses.push(item);
        Ok(id)
    }

    /// Removes an item by id; returns whether it was there.
    pub fn remove_item(&mut self, kind: ItemKind, id: ItemId) -> bool {
        let items = self.items_mut(kind);
        let before = items.len();
        items.retain(|i| i.id != id);
        items.len() != before
    }

    /// A one-line display name: the formatted name (vCard `FN`) when set, else "Prefix Given
    /// Middle Family Suffix" (the parts present), else the organisation, else the first
    /// e-mail or phone; empty when the contact has none of these.
    pub fn display_name(&self) -> String {
        if let Some(formatted) = self.get(Field::FormattedName).filter(|f| !f.is_empty()) {
            return formatted.to_owned();
        }
        self.built_name()
    }

    /// The display name without the formatted name: what the name parts, organisation,
    /// e-mail or phone give (vCard import keeps an `FN` only when it differs from this).
    pub fn built_name(&self) -> String {
        let name: Vec<&str> = [
            Field::Prefix,
            Field::Given,
            Field::Middle,
            Field::Family,
            Field::Suffix,
        ]
        .into_iter()
        .filter_map(|f| self.get(f))
        .collect();
        if !name.is_empty() {
            return name.join(" ");
        }
        if let Some(org) = self.get(Field::Org) {
            return org.to_owned();
        }
        self.emails
            .iter()
            .chain(&self.phones)
            .map(|i| i.body.to_string())
            .next()
            .unwrap_or_default()
    }

    /// The first phone, else the first e-mail: the one way to reach the contact a list row
    /// shows (`cardlog list`).
    pub fn first_phone_or_email(&self) -> Option<&Item> {
        self.phones.first().or(self.emails.first())
    }

    /// Every visible value as (path, value), sorted by path: the changes that create this
    /// contact from nothing.
    pub fn to_changes(&self) -> Result<Vec<Change>, DiffError> {
        diff(&Contact::new(self.id), self)
    }

    fn entries(&self) -> Result<BTreeMap<Path, Value>, DiffError> {
        let mut out = BTreeMap::new();
        for (field, value) in &self.fields {
            if !value.is_empty() {
                out.insert(field.path(), Value::Text(value.clone()));
            }
        }
        for kind in ItemKind::ALL {
            for item in self.items(kind) {
                let path = Path::Item(kind, item.id);
                let value = item.value();
                if !path.accepts(Some(&value)) {
                    return Err(DiffError::WrongBody { kind, id: item.id });
                }
                if out.insert(path, value).is_some() {
                    return Err(DiffError::DuplicateItem { kind, id: item.id });
                }
            }
        }
        for tag in &self.tags {
            out.insert(Path::Tag(tag.clone()), Value::Present);
        }
        for (name, value) in &self.custom {
            if let Some(field) = Field::of_custom(name) {
                return Err(DiffError::ReservedCustom {
                    name: name.clone(),
                    field,
                });
            }
            out.insert(Path::Custom(name.clone()), Value::Text(value.clone()));
        }
        Ok(out)
    }
}

/// The minimal changes that turn `before` into `after`: one per field, item, tag or custom field
/// whose value differs, sorted by path. Unchanged paths produce nothing, so an edit never
/// overwrites (or conflicts with) values it did not touch.
pub fn diff(before: &Contact, after: &Contact) -> Result<Vec<Change>, DiffError> {
    if before.id != after.id {
        return Err(DiffError::IdChanged {
            before: before.id,
            after: after.id,
        });
    }
    let old = before.entries()?;
    let new = after.entries()?;
    let mut changes = Vec::new();
    for (path, value) in &new {
        if old.get(path) != Some(value) {
            changes.push(Change {
                path: path.clone(),
                value: Some(value.clone()),
            });
        }
    }
    for path in old.keys() {
        if !new.contains_key(path) {
            changes.push(Change {
                path: path.clone(),
                value: None,
            });
        }
    }
    changes.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(changes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Contact {
        let mut c = Contact::new(ContactId([1; 16]));
        c.set(Field::Given, "Foo").set(Field::Family, "Bar");
        c.phones.push(Item {
            id: ItemId([2; 16]),
            label: "mobile".into(),
            body: ItemBody::Text("+1 555 0100".into()),
        });
        c.tags.insert("friends".into());
        c.custom.insert("X-SHOE-SIZE".into(), "44".into());
        c
    }

    #[test]
    fn unchanged_contact_diffs_to_nothing() {
        let c = sample();
        assert_eq!(diff(&c, &c.clone()).unwrap(), vec![]);
    }

    #[test]
    fn diff_names_only_what_changed() {
        // Changing the e-mail and nothing else yields exactly one change: key-based updates.
        let before = sample();
        let mut after = before.clone();
        let email = after.add_text_item(ItemKind::Email, "", "foo@b").unwrap();
        after.set(Field::Given, "Voo");
        after.tags.remove("friends");
        after.custom.insert("X-SHOE-SIZE".into(), "45".into());
        let changes = diff(&before, &after).unwrap();
        let paths: Vec<String> = changes.iter().map(|c| c.path.to_string()).collect();
        assert_eq!(
            paths,
            vec![
                "given".to_owned(),
                format!("email/{email}"),
                "tag/friends".to_owned(),
                "custom/X-SHOE-SIZE".to_owned()
            ]
        );
        assert_eq!(changes[2].value, None);
        assert_eq!(changes[0].value, Some(Value::Text("Voo".into())));
    }

    #[test]
    fn item_label_edit_is_one_change_and_removal_is_none() {
        let before = sample();
        let mut after = before.clone();
        after.phones[0].label = "work".into();
        let changes = diff(&before, &after).unwrap();
        assert_eq!(changes.len(), 1);
        let mut removed = before.clone();
        assert!(removed.remove_item(ItemKind::Phone, ItemId([2; 16])));
        let changes = diff(&before, &removed).unwrap();
        assert_eq!(
            changes,
            vec![Change {
                path: Path::Item(ItemKind::Phone, ItemId([2; 16])),
                value: None
            }]
        );
    }

    #[test]
    fn bad_edits_are_refused() {
        let before = sample();
        let mut other = before.clone();
        other.id = ContactId([9; 16]);
        assert!(matches!(
            diff(&before, &other),
            Err(DiffError::IdChanged { .. })
        ));
        let mut dup = before.clone();
        dup.phones.push(dup.phones[0].clone());
        assert!(matches!(
            diff(&before, &dup),
            Err(DiffError::DuplicateItem { .. })
        ));
        let mut wrong = before.clone();
        wrong.addresses.push(Item {
            id: ItemId([3; 16]),
            label: String::new(),
            body: ItemBody::Text("x".into()),
        });
        assert!(matches!(
            diff(&before, &wrong),
            Err(DiffError::WrongBody { .. })
        ));
    }

    #[test]
    fn empty_field_means_unset() {
        let mut c = sample();
        c.set(Field::Given, "");
        assert_eq!(c.get(Field::Given), None);
        assert_eq!(c.display_name(), "Bar");
    }
}

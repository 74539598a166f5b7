//! Contact and item ids for imported cards, derived rather than drawn at random where that
//! helps: the same card imported on two devices (or twice on one) lands on the same contact and
//! the same items, so syncing the two imports merges them instead of doubling them (two heads
//! with the same value are not a conflict, docs/SEMANTICS.md).
//!
//! - A UID of the form `urn:uuid:` + a lowercase UUID *is* the contact id (that is the form
//!   export writes for contacts without a UID of their own).
//! - Any other UID: the contact id is the first 16 bytes of a keyed BLAKE3 hash of it.
//! - An item's id starts with its position among its kind in the card (two bytes, big-endian),
//!   followed by 14 bytes of a hash of contact id, kind, position, label and value. Items saved
//!   in one op are ordered by id (docs/SEMANTICS.md rule 6), so the prefix keeps the card's
//!   order.

use cardlog::{ContactId, ItemBody, ItemId, ItemKind};

const UID_CONTEXT: &str = "cardlog-vcard 2026-11 contact id from vCard UID";
const ITEM_CONTEXT: &str = "cardlog-vcard 2026-11 item id from vCard property";

/// The `urn:uuid:` form of a contact id, as export writes it in `UID`.
pub(crate) fn uid_of(id: ContactId) -> String {
    let hex = id.to_string();
    let part = |a: usize, b: usize| hex.get(a..b).unwrap_or_default();
    format!(
        "urn:uuid:{}-{}-{}-{}-{}",
        part(0, 8),
        part(8, 12),
        part(12, 16),
        part(16, 20),
        part(20, 32)
    )
}

/// The contact id a UID in exactly the `urn:uuid:` form [`uid_of`] writes names, if it is one.
pub(crate) fn contact_of_urn(uid: &str) -> Option<ContactId> {
    let rest = uid.strip_prefix("urn:uuid:")?;
    let hex: String = rest.chars().filter(|c| *c != '-').collect();
    let id: ContactId = hex.parse().ok()?;
    (uid_of(id) == uid).then_some(id)
}

/// The contact id a card with this UID is imported as.
pub(crate) fn contact_of_uid(uid: &str) -> ContactId {
    if let Some(id) = contact_of_urn(uid) {
        return id;
    }
    let hash = blake3::derive_key(UID_CONTEXT, uid.as_bytes());
    let mut id = [0u8; 16];
    for (to, from) in id.iter_mut().zip(hash) {
        *to = from;
    }
    ContactId(id)
}

fn push_str(hasher: &mut blake3::Hasher, s: &str) {
    hasher.update(&(s.len() as u64).to_le_bytes());
    hasher.update(s.as_bytes());
}

/// The id of the item at `position` among the `kind` items of a card imported as `contact`.
pub(crate) fn item_id(
    contact: ContactId,
    kind: ItemKind,
    position: usize,
    label: &str,
    body: &ItemBody,
) -> ItemId {
    let position = u16::try_from(position).unwrap_or(u16::MAX);
    let mut hasher = blake3::Hasher::new_derive_key(ITEM_CONTEXT);
    hasher.update(contact.as_bytes());
    hasher.update(kind.name().as_bytes());
    hasher.update(&position.to_be_bytes());
    push_str(&mut hasher, label);
    match body {
        ItemBody::Text(t) => push_str(&mut hasher, t),
        ItemBody::Address(a) => {
            for part in a.parts() {
                push_str(&mut hasher, part);
            }
        }
    }
    let hash = hasher.finalize();
    let mut id = [0u8; 16];
    for (to, from) in id
        .iter_mut()
        .zip(position.to_be_bytes().into_iter().chain(*hash.as_bytes()))
    {
        *to = from;
    }
    ItemId(id)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn urn_uids_are_contact_ids_and_other_uids_hash() {
        let id = ContactId([0xab; 16]);
        let uid = uid_of(id);
        assert_eq!(uid, "urn:uuid:abababab-abab-abab-abab-abababababab");
        assert_eq!(contact_of_urn(&uid), Some(id));
        assert_eq!(contact_of_uid(&uid), id);
        // Upper case or without the urn prefix is just some UID.
        assert_eq!(contact_of_urn(&uid.to_uppercase()), None);
        assert_eq!(contact_of_urn("abababab-abab-abab-abab-abababababab"), None);
        assert_eq!(contact_of_uid("testuid1"), contact_of_uid("testuid1"));
        assert_ne!(contact_of_uid("testuid1"), contact_of_uid("testuid2"));
    }

    #[test]
    fn item_ids_keep_card_order() {
        let c = ContactId([1; 16]);
        let body = ItemBody::Text("+1".into());
        let a = item_id(c, ItemKind::Phone, 0, "", &body);
        let b = item_id(c, ItemKind::Phone, 1, "", &body);
        assert!(a < b);
        assert_eq!(a, item_id(c, ItemKind::Phone, 0, "", &body));
        assert_ne!(a, item_id(c, ItemKind::Phone, 0, "cell", &body));
    }
}

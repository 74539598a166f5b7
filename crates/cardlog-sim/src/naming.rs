//! How the numbers in a schedule name things: contact and item ids from counters, and the
//! small alphabets of fields and names edits pick from (few, so random devices collide). Shared
//! by the strategies that draw schedules and the simulator that runs them.

use cardlog_core::{ContactId, Field, ItemId, ItemKind};

/// Fields edits touch (few, so they collide).
pub const FIELDS: [Field; 3] = [Field::Given, Field::Org, Field::Note];
/// Tag and custom-field names edits use.
pub const NAMES: [&str; 2] = ["friends", "work"];

/// The contact id numbered `n`.
pub fn contact_id(n: u64) -> ContactId {
    let mut b = [0u8; 16];
    for (d, s) in b.iter_mut().zip(n.to_be_bytes()) {
        *d = s;
    }
    b[8] = 0xc0;
    ContactId(b)
}

/// The item id numbered `k` of contact `n`.
pub fn item_id(n: u64, k: u64) -> ItemId {
    let mut b = [0u8; 16];
    for (d, s) in b
        .iter_mut()
        .zip(n.to_be_bytes().into_iter().chain(k.to_be_bytes()))
    {
        *d = s;
    }
    ItemId(b)
}

/// The field numbered `i` (modulo [`FIELDS`]).
pub fn field_at(i: usize) -> Field {
    FIELDS
        .get(i % FIELDS.len())
        .copied()
        .unwrap_or(Field::Given)
}

/// The tag or custom-field name numbered `i` (modulo [`NAMES`]).
pub fn name_at(i: usize) -> &'static str {
    NAMES.get(i % NAMES.len()).copied().unwrap_or("friends")
}

/// Which kind of item an `AddItem` edit adds.
pub fn item_kind(kind: usize) -> ItemKind {
    if kind == 0 {
        ItemKind::Phone
    } else {
        ItemKind::Email
    }
}

/// What a story calls the replica numbered `i`: a device a person owns.
pub fn device_name(i: usize) -> String {
    const DEVICES: [&str; 8] = [
        "phone", "tablet", "laptop", "desktop", "watch", "tv", "car", "kiosk",
    ];
    DEVICES
        .get(i)
        .map_or_else(|| format!("device {i}"), |d| (*d).to_owned())
}

/// The number of a contact id made by [`contact_id`] (`None` for any other id).
pub fn contact_number(id: &ContactId) -> Option<u64> {
    let (n, rest) = id.0.split_first_chunk::<8>()?;
    (rest.first() == Some(&0xc0)).then(|| u64::from_be_bytes(*n))
}

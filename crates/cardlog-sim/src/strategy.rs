//! Public proptest strategies: contacts, edits, sync modes and whole schedules. An app can
//! build its own properties on them (run a [`crate::Schedule`] with [`crate::Sim`], then check
//! what it cares about).
//!
//! Values come from small alphabets on purpose: few fields, few values, few tag names, so
//! random devices often touch the same path and the interesting cases (conflicts, concurrent
//! delete and edit, settling) happen in short schedules.

use proptest::prelude::*;

use cardlog_core::{Contact, Field, Item, ItemBody};

pub use crate::naming::{contact_id, field_at, item_id, item_kind, name_at, FIELDS, NAMES};

use crate::schedule::{Action, Edit, Schedule, Storage, SyncMode};

fn word() -> impl Strategy<Value = String> {
    prop_oneof![Just("a"), Just("b"), Just("c"), Just("dé")].prop_map(str::to_owned)
}

/// A contact with a given name, maybe an org, a phone, an e-mail and a tag. The id and item
/// ids come from `id` (callers number contacts so schedules are reproducible).
pub fn contact(id: u64) -> impl Strategy<Value = Contact> {
    (
        word(),
        proptest::option::of(word()),
        proptest::option::of(word()),
        proptest::option::of(word()),
        any::<bool>(),
    )
        .prop_map(move |(given, org, phone, email, tagged)| {
            let mut c = Contact::new(contact_id(id));
            c.set(Field::Given, given);
            if let Some(org) = org {
                c.set(Field::Org, org);
            }
            if let Some(p) = phone {
                c.phones.push(Item {
                    id: item_id(id, 0),
                    label: "cell".into(),
                    body: ItemBody::Text(p),
                });
            }
            if let Some(e) = email {
                c.emails.push(Item {
                    id: item_id(id, 1),
                    label: "home".into(),
                    body: ItemBody::Text(e),
                });
            }
            if tagged {
                c.tags.insert(name_at(0).into());
            }
            c
        })
}

/// One edit of one (randomly picked) contact, or a new contact.
pub fn edit() -> impl Strategy<Value = Edit> {
    let pick = any::<u8>();
    prop_oneof![
        5 => contact(0).prop_map(Edit::Add),
        4 => (pick, 0..FIELDS.len(), word()).prop_map(|(pick, field, value)| Edit::SetField { pick, field, value }),
        1 => (pick, 0..FIELDS.len()).prop_map(|(pick, field)| Edit::ClearField { pick, field }),
        2 => (pick, 0..2usize, word()).prop_map(|(pick, kind, text)| Edit::AddItem { pick, kind, text }),
        2 => (pick, any::<u8>(), word()).prop_map(|(pick, nth, text)| Edit::EditItem { pick, nth, text }),
        1 => (pick, any::<u8>()).prop_map(|(pick, nth)| Edit::RemoveItem { pick, nth }),
        1 => (pick, 0..NAMES.len(), any::<bool>()).prop_map(|(pick, name, on)| Edit::Tag { pick, name, on }),
        1 => (pick, 0..NAMES.len(), proptest::option::of(word())).prop_map(|(pick, name, value)| Edit::Custom { pick, name, value }),
        1 => pick.prop_map(|pick| Edit::Delete { pick }),
        1 => pick.prop_map(|pick| Edit::Restore { pick }),
        1 => pick.prop_map(|pick| Edit::Resolve { pick }),
    ]
}

/// How two replicas exchange ops.
pub fn sync_mode() -> impl Strategy<Value = SyncMode> {
    prop_oneof![
        4 => Just(SyncMode::Full),
        1 => (1u8..100).prop_map(SyncMode::Partial),
        1 => (1u8..6).prop_map(SyncMode::Interrupted),
        1 => Just(SyncMode::Duplicated),
        1 => any::<u64>().prop_map(SyncMode::Reordered),
        1 => any::<u8>().prop_map(SyncMode::Relay),
        1 => Just(SyncMode::Bundle),
    ]
}

/// How two replicas exchange ops when an app's network is in the loop
/// ([`crate::Sim::with_network`]): over it in about half the syncs, by the built-in modes in
/// the others.
pub fn sync_mode_over_network() -> impl Strategy<Value = SyncMode> {
    prop_oneof![
        1 => any::<u64>().prop_map(SyncMode::Network),
        1 => sync_mode(),
    ]
}

/// How far from real time someone sets a clock: right (most often), a day either way, or
/// about 73 years ahead (2099: a clock that failed into the far future).
pub fn clock_error() -> impl Strategy<Value = i64> {
    const DAY_MS: i64 = 86_400_000;
    prop_oneof![
        3 => Just(0),
        1 => Just(DAY_MS),
        1 => Just(-DAY_MS),
        1 => Just(26_700 * DAY_MS),
    ]
}

/// One step of a schedule on `replicas` replicas.
pub fn action(replicas: usize) -> impl Strategy<Value = Action> {
    action_with(replicas, sync_mode())
}

/// One step of a schedule on `replicas` replicas whose syncs take their mode from `modes`.
pub fn action_with(
    replicas: usize,
    modes: impl Strategy<Value = SyncMode> + 'static,
) -> impl Strategy<Value = Action> {
    let r = 0..replicas;
    prop_oneof![
        24 => (r.clone(), edit()).prop_map(|(replica, edit)| Action::Save { replica, edit }),
        12 => (r.clone(), r.clone(), modes).prop_map(|(from, to, mode)| Action::Sync { from, to, mode }),
        4 => r.clone().prop_map(|replica| Action::Crash { replica }),
        4 => (r.clone(), -120_000i64..600_000).prop_map(|(replica, delta_ms)| Action::ClockJump { replica, delta_ms }),
        2 => (r.clone(), clock_error()).prop_map(|(replica, off_by_ms)| Action::SetClock { replica, off_by_ms }),
        1 => (r.clone(), any::<bool>()).prop_map(|(target, forge)| Action::Stranger { target, forge }),
        2 => r.clone().prop_map(|replica| Action::Admit { replica }),
        1 => r.clone().prop_map(|replica| Action::Leave { replica }),
        2 => r.clone().prop_map(|replica| Action::Backup { replica }),
        2 => r.prop_map(|replica| Action::Restore { replica }),
    ]
}

/// A device's clock at the start: right (half the time, so that edits on right clocks meet
/// and "a right clock's later edit wins" has something to compare), or off by up to ±10
/// minutes.
pub fn skew() -> impl Strategy<Value = i64> {
    prop_oneof![1 => Just(0i64), 1 => -600_000i64..600_000]
}

/// A whole schedule: `replicas` devices (each with a clock skew of up to ±10 minutes, or
/// none) and `len` actions.
pub fn schedule(
    replicas: std::ops::RangeInclusive<usize>,
    len: std::ops::Range<usize>,
    storage: Storage,
) -> impl Strategy<Value = Schedule> {
    schedule_with(replicas, len, storage, false)
}

/// A whole schedule as [`schedule`] draws it, about half its syncs over the app's network
/// ([`SyncMode::Network`]; run it on a [`crate::Sim::with_network`]).
pub fn schedule_over_network(
    replicas: std::ops::RangeInclusive<usize>,
    len: std::ops::Range<usize>,
    storage: Storage,
) -> impl Strategy<Value = Schedule> {
    schedule_with(replicas, len, storage, true)
}

fn schedule_with(
    replicas: std::ops::RangeInclusive<usize>,
    len: std::ops::Range<usize>,
    storage: Storage,
    network: bool,
) -> impl Strategy<Value = Schedule> {
    replicas.prop_flat_map(move |n| {
        let actions = if network {
            action_with(n, sync_mode_over_network().boxed()).boxed()
        } else {
            action(n).boxed()
        };
        (
            proptest::collection::vec(skew(), n),
            proptest::collection::vec(actions, len.clone()),
        )
            .prop_map(move |(skews_ms, actions)| Schedule {
                storage,
                skews_ms,
                actions,
            })
    })
}

//! The binding semantics S1–S9 (docs/SEMANTICS.md), one named test per rule and per seed
//! scenario, on in-memory devices with fake clocks.
#![allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::panic)]

use std::sync::Arc;

use cardlog_core::{
    Batch, Contact, ContactId, Device, DeviceId, FakeClock, Field, InsertOutcome, ItemBody, ItemId,
    ItemKind, Path, PostalAddress, ReplayError, Value,
};

const MIN_MS: i64 = 60_000;
const HOUR_MS: i64 = 60 * MIN_MS;
/// 2026-11-22T09:00:00Z.
const NINE_MS: u64 = 1_795_338_000_000;

struct World {
    devices: Vec<Device>,
    clocks: Vec<Arc<FakeClock>>,
}

impl World {
    fn new(n: u8) -> Self {
        let clocks: Vec<Arc<FakeClock>> =
            (0..n).map(|_| Arc::new(FakeClock::new(NINE_MS))).collect();
        let devices = (0..n)
            .map(|i| Device::new(DeviceId([i + 1; 16]), clocks[usize::from(i)].clone()))
            .collect();
        Self { devices, clocks }
    }

    /// Advances every device's wall clock.
    fn advance(&self, ms: i64) {
        for c in &self.clocks {
            c.advance_ms(ms);
        }
    }

    fn sync(&mut self, a: usize, b: usize) {
        let (lo, hi) = (a.min(b), a.max(b));
        let (left, right) = self.devices.split_at_mut(hi);
        left[lo].sync(&mut right[0]).unwrap();
    }

    fn sync_all(&mut self) {
        for _ in 0..2 {
            for i in 1..self.devices.len() {
                self.sync(0, i);
            }
        }
    }

    fn contact(&self, device: usize, id: ContactId) -> Contact {
        self.devices[device].contact(&id).unwrap().contact
    }

    fn assert_converged(&self) {
        let first = self.devices[0].replay().state_bytes();
        for d in &self.devices[1..] {
            assert_eq!(
                d.replay().state_bytes(),
                first,
                "devices differ after a full sync"
            );
            assert_eq!(d.summary(), self.devices[0].summary());
        }
    }
}

fn sample(id: u8) -> Contact {
    let mut c = Contact::new(ContactId([id; 16]));
    c.set(Field::Given, "Foo").set(Field::Family, "Bar");
    c.phones.push(cardlog_core::Item {
        id: ItemId([0xa0 + id; 16]),
        label: "mobile".into(),
        body: ItemBody::Text("+1 555 0100".into()),
    });
    c.emails.push(cardlog_core::Item {
        id: ItemId([0xb0 + id; 16]),
        label: "home".into(),
        body: ItemBody::Text("foo@old.example".into()),
    });
    c
}

fn text(s: &str) -> Option<Value> {
    Some(Value::Text(s.into()))
}

#[test]
fn s1_seed_phone_and_email_edited_apart_both_survive() {
    // The tablet changes the number at 10:00, the offline phone the e-mail at 11:00, the phone
    // syncs at noon: every device ends with the new number and the new e-mail.
    let mut w = World::new(2);
    let (tablet, phone) = (0, 1);
    let c = sample(1);
    w.devices[tablet].create(&c).unwrap();
    w.sync(tablet, phone);

    w.advance(HOUR_MS);
    w.devices[tablet]
        .edit(c.id, |c| {
            c.phones[0].body = ItemBody::Text("+1 555 0199".into())
        })
        .unwrap();
    w.advance(HOUR_MS);
    w.devices[phone]
        .edit(c.id, |c| {
            c.emails[0].body = ItemBody::Text("foo@new.example".into())
        })
        .unwrap();
    w.advance(HOUR_MS);
    w.sync(phone, tablet);

    for d in [tablet, phone] {
        let got = w.contact(d, c.id);
        assert_eq!(got.phones[0].body, ItemBody::Text("+1 555 0199".into()));
        assert_eq!(got.emails[0].body, ItemBody::Text("foo@new.example".into()));
        assert_eq!(
            got.fields.get(&Field::Given).map(String::as_str),
            Some("Foo")
        );
        assert!(w.devices[d].contact(&c.id).unwrap().conflicts.is_empty());
    }
    w.assert_converged();
}

#[test]
fn s1_different_fields_on_three_devices_all_survive() {
    let mut w = World::new(3);
    let c = sample(2);
    w.devices[0].create(&c).unwrap();
    w.sync_all();
    w.devices[0]
        .edit(c.id, |c| {
            c.set(Field::Org, "Example Corp");
        })
        .unwrap();
    w.devices[1]
        .edit(c.id, |c| {
            c.set(Field::Title, "Engineer");
        })
        .unwrap();
    w.devices[2]
        .edit(c.id, |c| {
            c.tags.insert("friends".into());
        })
        .unwrap();
    w.sync_all();
    let got = w.contact(2, c.id);
    assert_eq!(got.get(Field::Org), Some("Example Corp"));
    assert_eq!(got.get(Field::Title), Some("Engineer"));
    assert!(got.tags.contains("friends"));
    assert!(w.devices[0].replay().conflicts().is_empty());
    w.assert_converged();
}

#[test]
fn s2_causal_edit_wins_although_its_clock_is_three_hours_behind() {
    let mut w = World::new(2);
    let (tablet, phone) = (0, 1);
    w.clocks[phone].advance_ms(-3 * HOUR_MS);
    let c = sample(3);
    w.devices[tablet].create(&c).unwrap();
    w.devices[tablet]
        .edit(c.id, |c| {
            c.set(Field::Title, "Engineer");
        })
        .unwrap();
    w.sync(tablet, phone);
    // The phone saw "Engineer" and changes it. Its clock is 3 h behind; the skew bound keeps
    // the tablet's timestamp from dragging it more than 5 min forward, so its op is stamped
    // hours *before* the value it replaces.
    w.advance(MIN_MS);
    let op = w.devices[phone]
        .edit(c.id, |c| {
            c.set(Field::Title, "Manager");
        })
        .unwrap()
        .unwrap();
    let tablet_title = w.devices[tablet]
        .replay()
        .history(&c.id, &Path::Field(Field::Title));
    assert!(
        op.op().hlc < tablet_title[0].hlc,
        "the causal edit must carry the older timestamp"
    );
    assert_eq!(
        w.devices[phone].skew_reports().len(),
        2,
        "both tablet ops were far ahead"
    );
    w.sync(phone, tablet);
    for d in [tablet, phone] {
        assert_eq!(w.contact(d, c.id).get(Field::Title), Some("Manager"));
        assert!(w.devices[d].replay().conflicts().is_empty());
    }
    w.assert_converged();
}

#[test]
fn s3_concurrent_edits_later_wins_and_loser_is_an_alternative() {
    let mut w = World::new(2);
    let c = sample(4);
    w.devices[0].create(&c).unwrap();
    w.sync(0, 1);
    w.devices[0]
        .edit(c.id, |c| {
            c.set(Field::Given, "Early");
        })
        .unwrap();
    w.clocks[1].advance_ms(MIN_MS);
    w.devices[1]
        .edit(c.id, |c| {
            c.set(Field::Given, "Late");
        })
        .unwrap();
    w.sync(0, 1);
    for d in 0..2 {
        let view = w.devices[d].contact(&c.id).unwrap();
        assert_eq!(view.contact.get(Field::Given), Some("Late"));
        assert_eq!(view.conflicts.len(), 1);
        let conflict = &view.conflicts[0];
        assert_eq!(conflict.path, Path::Field(Field::Given));
        assert_eq!(conflict.winner.value, text("Late"));
        assert_eq!(conflict.winner.author, w.devices[1].id());
        let alternatives: Vec<_> = conflict
            .alternatives
            .iter()
            .map(|v| v.value.clone())
            .collect();
        assert_eq!(alternatives, vec![text("Early")]);
    }
    w.assert_converged();
}

#[test]
fn s3_edit_time_decides_not_arrival_time() {
    // Device 0 edits at 10:00 but only syncs at 15:00; device 1 edits at 11:00 and syncs first.
    let mut w = World::new(3);
    let c = sample(5);
    w.devices[2].create(&c).unwrap();
    w.sync_all();
    w.advance(HOUR_MS);
    w.devices[0]
        .edit(c.id, |c| {
            c.set(Field::Note, "from 10:00");
        })
        .unwrap();
    w.advance(HOUR_MS);
    w.devices[1]
        .edit(c.id, |c| {
            c.set(Field::Note, "from 11:00");
        })
        .unwrap();
    w.sync(1, 2);
    w.advance(4 * HOUR_MS);
    w.sync(0, 2);
    w.sync_all();
    assert_eq!(w.contact(2, c.id).get(Field::Note), Some("from 11:00"));
    w.assert_converged();
}

#[test]
fn s3_equal_timestamps_break_ties_deterministically() {
    let mut w = World::new(2);
    let c = sample(6);
    w.devices[0].create(&c).unwrap();
    w.sync(0, 1);
    w.advance(MIN_MS);
    w.devices[0]
        .edit(c.id, |c| {
            c.set(Field::Given, "Zero");
        })
        .unwrap();
    w.devices[1]
        .edit(c.id, |c| {
            c.set(Field::Given, "One");
        })
        .unwrap();
    let heads: Vec<_> = (0..2)
        .map(|d| {
            w.devices[d]
                .replay()
                .history(&c.id, &Path::Field(Field::Given))
                .last()
                .unwrap()
                .hlc
        })
        .collect();
    assert_eq!(heads[0], heads[1], "the test needs identical timestamps");
    w.sync(1, 0);
    // Same timestamp: the greater device id wins (device 1 has id 0x02…).
    assert_eq!(w.contact(0, c.id).get(Field::Given), Some("One"));
    assert_eq!(w.contact(1, c.id).get(Field::Given), Some("One"));
    w.assert_converged();
}

#[test]
fn s3_settling_edit_clears_the_conflict_everywhere() {
    let mut w = World::new(2);
    let c = sample(7);
    w.devices[0].create(&c).unwrap();
    w.sync(0, 1);
    w.devices[0]
        .edit(c.id, |c| {
            c.set(Field::Title, "A");
        })
        .unwrap();
    w.devices[1]
        .edit(c.id, |c| {
            c.set(Field::Title, "B");
        })
        .unwrap();
    w.sync(0, 1);
    assert_eq!(w.devices[0].replay().conflicts().len(), 1);
    // Nobody is forced to resolve: unrelated edits leave the conflict in place.
    w.devices[0]
        .edit(c.id, |c| {
            c.set(Field::Note, "unrelated");
        })
        .unwrap();
    w.sync(0, 1);
    assert_eq!(w.devices[1].replay().conflicts().len(), 1);
    // An edit of the field replaces both heads.
    w.advance(MIN_MS);
    w.devices[1]
        .edit(c.id, |c| {
            c.set(Field::Title, "C");
        })
        .unwrap();
    w.sync(0, 1);
    for d in 0..2 {
        assert!(w.devices[d].replay().conflicts().is_empty());
        assert_eq!(w.contact(d, c.id).get(Field::Title), Some("C"));
    }
    w.assert_converged();
}

#[test]
fn s3_resolve_can_keep_the_visible_value() {
    let mut w = World::new(2);
    let c = sample(8);
    w.devices[0].create(&c).unwrap();
    w.sync(0, 1);
    w.devices[0]
        .edit(c.id, |c| {
            c.set(Field::Title, "A");
        })
        .unwrap();
    w.clocks[1].advance_ms(1);
    w.devices[1]
        .edit(c.id, |c| {
            c.set(Field::Title, "B");
        })
        .unwrap();
    w.sync(0, 1);
    // Choosing the value already visible is still a write: it settles the conflict.
    w.devices[0]
        .resolve(c.id, Path::Field(Field::Title), text("B"))
        .unwrap();
    w.sync(0, 1);
    assert!(w.devices[1].replay().conflicts().is_empty());
    assert_eq!(w.contact(1, c.id).get(Field::Title), Some("B"));
}

#[test]
fn s5_deleted_contact_is_a_restorable_tombstone_with_history() {
    let mut w = World::new(2);
    let c = sample(9);
    w.devices[0].create(&c).unwrap();
    w.devices[0]
        .edit(c.id, |c| {
            c.set(Field::Given, "Fooo");
        })
        .unwrap();
    w.devices[0].delete(c.id).unwrap();
    w.sync(0, 1);
    let d1 = &w.devices[1];
    assert!(d1.contacts().is_empty());
    assert_eq!(d1.replay().contacts(true).len(), 1);
    assert!(d1.contact(&c.id).unwrap().deleted);
    assert_eq!(
        d1.replay().history(&c.id, &Path::Field(Field::Given)).len(),
        2
    );
    assert!(matches!(
        w.devices[1].edit(c.id, |c| {
            c.set(Field::Given, "x");
        }),
        Err(cardlog_core::DeviceError::Edit(
            cardlog_core::EditError::Deleted(_)
        ))
    ));
    w.devices[1].restore(c.id).unwrap();
    w.sync(0, 1);
    let back = w.devices[0].contact(&c.id).unwrap();
    assert!(!back.deleted);
    assert_eq!(back.contact.get(Field::Given), Some("Fooo"));
    assert_eq!(back.contact.phones, c.phones);
}

#[test]
fn s5_delete_after_seeing_an_edit_wins_without_conflict() {
    let mut w = World::new(2);
    let c = sample(10);
    w.devices[0].create(&c).unwrap();
    w.sync(0, 1);
    // The edit is stamped later than the delete, but the delete saw it.
    w.clocks[0].advance_ms(HOUR_MS);
    w.devices[0]
        .edit(c.id, |c| {
            c.set(Field::Note, "edited");
        })
        .unwrap();
    w.sync(0, 1);
    w.clocks[1].set_ms(NINE_MS + 1);
    w.devices[1].delete(c.id).unwrap();
    w.sync(0, 1);
    for d in 0..2 {
        let view = w.devices[d].contact(&c.id).unwrap();
        assert!(view.deleted);
        assert!(view.conflicts.is_empty());
    }
}

#[test]
fn s5_concurrent_delete_and_edit_later_wins_and_is_marked() {
    for delete_later in [false, true] {
        let mut w = World::new(2);
        let c = sample(11);
        w.devices[0].create(&c).unwrap();
        w.sync(0, 1);
        let (deleter, editor) = (0, 1);
        let later = if delete_later { deleter } else { editor };
        w.clocks[later].advance_ms(MIN_MS);
        w.devices[deleter].delete(c.id).unwrap();
        w.devices[editor]
            .edit(c.id, |c| {
                c.set(Field::Note, "kept");
            })
            .unwrap();
        w.sync(0, 1);
        for d in 0..2 {
            let view = w.devices[d].contact(&c.id).unwrap();
            assert_eq!(view.deleted, delete_later, "delete_later={delete_later}");
            assert_eq!(view.conflicts.len(), 1);
            assert_eq!(view.conflicts[0].path, Path::Exists);
            // The concurrent edit is not lost either way.
            assert_eq!(view.contact.get(Field::Note), Some("kept"));
        }
        w.assert_converged();
    }
}

#[test]
fn s6_items_added_concurrently_both_survive() {
    let mut w = World::new(2);
    let c = sample(12);
    w.devices[0].create(&c).unwrap();
    w.sync(0, 1);
    w.devices[0]
        .edit(c.id, |c| {
            c.add_text_item(ItemKind::Phone, "work", "+1 555 0001")
                .unwrap();
        })
        .unwrap();
    w.devices[1]
        .edit(c.id, |c| {
            c.add_text_item(ItemKind::Phone, "home", "+1 555 0002")
                .unwrap();
        })
        .unwrap();
    w.sync(0, 1);
    let phones = w.contact(1, c.id).phones;
    assert_eq!(phones.len(), 3);
    let numbers: std::collections::BTreeSet<String> =
        phones.iter().map(|p| p.body.to_string()).collect();
    assert!(numbers.contains("+1 555 0001") && numbers.contains("+1 555 0002"));
    assert!(w.devices[0].replay().conflicts().is_empty());
    w.assert_converged();
}

#[test]
fn s6_removing_an_item_concurrently_with_editing_it_follows_s3() {
    for remove_later in [false, true] {
        let mut w = World::new(2);
        let c = sample(13);
        w.devices[0].create(&c).unwrap();
        w.sync(0, 1);
        let (remover, editor) = (0, 1);
        w.clocks[if remove_later { remover } else { editor }].advance_ms(MIN_MS);
        let phone = c.phones[0].id;
        w.devices[remover]
            .edit(c.id, |c| {
                c.remove_item(ItemKind::Phone, phone);
            })
            .unwrap();
        w.devices[editor]
            .edit(c.id, |c| c.phones[0].label = "work".into())
            .unwrap();
        w.sync(0, 1);
        let view = w.devices[0].contact(&c.id).unwrap();
        assert_eq!(view.contact.phones.is_empty(), remove_later);
        assert_eq!(view.conflicts.len(), 1);
        assert_eq!(view.conflicts[0].path, Path::Item(ItemKind::Phone, phone));
        w.assert_converged();
    }
}

#[test]
fn s6_postal_address_changes_as_one_value() {
    let mut w = World::new(2);
    let mut c = sample(14);
    c.add_address(
        "home",
        PostalAddress {
            street: "1 Old St".into(),
            locality: "Oldtown".into(),
            ..Default::default()
        },
    )
    .unwrap();
    w.devices[0].create(&c).unwrap();
    w.sync(0, 1);
    w.devices[0]
        .edit(c.id, |c| {
            if let ItemBody::Address(a) = &mut c.addresses[0].body {
                a.street = "2 New St".into()
            }
        })
        .unwrap();
    w.clocks[1].advance_ms(MIN_MS);
    w.devices[1]
        .edit(c.id, |c| {
            if let ItemBody::Address(a) = &mut c.addresses[0].body {
                a.locality = "Newtown".into()
            }
        })
        .unwrap();
    w.sync(0, 1);
    // Never a mix of the two: the later whole address wins, the other is the alternative.
    let got = w.contact(0, c.id);
    let ItemBody::Address(a) = &got.addresses[0].body else {
        panic!("not an address")
    };
    assert_eq!(
        (a.street.as_str(), a.locality.as_str()),
        ("1 Old St", "Newtown")
    );
    assert_eq!(w.devices[0].replay().conflicts().len(), 1);
}

#[test]
fn s7_a_save_touching_two_contacts_is_applied_whole_or_not_at_all() {
    let mut w = World::new(2);
    let (a, b) = (sample(15), sample(16));
    let mut batch = Batch::new();
    batch.create(&a).unwrap().create(&b).unwrap();
    let first = w.devices[0].save(&batch).unwrap();
    let mut a2 = a.clone();
    a2.set(Field::Note, "moved");
    let mut b2 = b.clone();
    b2.set(Field::Note, "moved too");
    let mut batch = Batch::new();
    batch.edit(&a, &a2).unwrap().edit(&b, &b2).unwrap();
    let second = w.devices[0].save(&batch).unwrap();
    assert_eq!(
        second
            .op()
            .writes
            .iter()
            .filter(|w| w.path == Path::Field(Field::Note))
            .count(),
        2
    );

    // Delivered out of order, the second op waits whole: neither contact shows it.
    let d1 = &mut w.devices[1];
    assert!(matches!(
        d1.receive(second.clone()).unwrap(),
        InsertOutcome::Waiting { .. }
    ));
    assert!(d1.contacts().is_empty());
    let outcome = d1.receive(first).unwrap();
    assert!(matches!(outcome, InsertOutcome::Applied { ref applied, .. } if applied.len() == 2));
    assert_eq!(
        d1.contact(&a.id).unwrap().contact.get(Field::Note),
        Some("moved")
    );
    assert_eq!(
        d1.contact(&b.id).unwrap().contact.get(Field::Note),
        Some("moved too")
    );
}

#[test]
fn s7_a_refused_op_leaves_no_trace() {
    let mut w = World::new(2);
    let c = sample(17);
    let first = w.devices[0].create(&c).unwrap();
    w.devices[1].receive(first.clone()).unwrap();
    // A forged op claiming device 0's seq 1 with other content is a fork: refused whole.
    let mut forged = first.op().clone();
    forged.writes.retain(|w| w.path == Path::Exists);
    let forged = forged.seal().unwrap();
    let before = w.devices[1].replay().state_bytes();
    let err = w.devices[1].receive(forged.clone()).unwrap_err();
    assert_eq!(
        err,
        ReplayError::Fork {
            author: w.devices[0].id(),
            seq: 1,
            existing: first.id(),
            incoming: forged.id()
        }
    );
    assert_eq!(w.devices[1].replay().state_bytes(), before);
}

#[test]
fn s8_history_lists_every_value_with_device_time_and_op() {
    let mut w = World::new(2);
    let c = sample(18);
    let created = w.devices[0].create(&c).unwrap();
    w.sync(0, 1);
    w.advance(MIN_MS);
    let edited = w.devices[1]
        .edit(c.id, |c| {
            c.set(Field::Given, "Fu");
        })
        .unwrap()
        .unwrap();
    w.advance(MIN_MS);
    let cleared = w.devices[0]
        .edit(c.id, |c| {
            c.set(Field::Given, "");
        })
        .unwrap()
        .unwrap();
    w.sync(0, 1);
    let history = w.devices[1]
        .replay()
        .history(&c.id, &Path::Field(Field::Given));
    let seen: Vec<_> = history
        .iter()
        .map(|v| (v.op, v.author, v.value.clone(), v.head))
        .collect();
    assert_eq!(
        seen,
        vec![
            (created.id(), w.devices[0].id(), text("Foo"), false),
            (edited.id(), w.devices[1].id(), text("Fu"), true),
            (cleared.id(), w.devices[0].id(), None, true),
        ]
    );
    assert_eq!(history[1].hlc, edited.op().hlc);
    // The clear did not see "Fu": it is a concurrent removal, visible as a conflict.
    assert_eq!(w.devices[1].replay().conflicts().len(), 1);
}

#[test]
fn s9_custom_fields_are_kept_and_merged_like_fields() {
    let mut w = World::new(2);
    let mut c = sample(19);
    c.custom.insert("X-SHOE-SIZE".into(), "44".into());
    c.custom
        .insert("X-UNKNOWN-VENDOR-THING".into(), "raw;value".into());
    w.devices[0].create(&c).unwrap();
    w.sync(0, 1);
    w.devices[0]
        .edit(c.id, |c| {
            c.custom.insert("X-SHOE-SIZE".into(), "45".into());
        })
        .unwrap();
    w.devices[1]
        .edit(c.id, |c| {
            c.custom.insert("X-PRONOUNS".into(), "they".into());
        })
        .unwrap();
    w.sync(0, 1);
    let got = w.contact(1, c.id);
    assert_eq!(
        got.custom.get("X-SHOE-SIZE").map(String::as_str),
        Some("45")
    );
    assert_eq!(
        got.custom.get("X-PRONOUNS").map(String::as_str),
        Some("they")
    );
    assert_eq!(
        got.custom.get("X-UNKNOWN-VENDOR-THING").map(String::as_str),
        Some("raw;value")
    );
    w.assert_converged();
}

#[test]
fn ops_out_of_chain_order_wait_and_then_apply() {
    let mut w = World::new(2);
    let c = sample(20);
    let ops = [
        w.devices[0].create(&c).unwrap(),
        w.devices[0]
            .edit(c.id, |c| {
                c.set(Field::Title, "1");
            })
            .unwrap()
            .unwrap(),
        w.devices[0]
            .edit(c.id, |c| {
                c.set(Field::Title, "2");
            })
            .unwrap()
            .unwrap(),
    ];
    let d1 = &mut w.devices[1];
    for op in ops.iter().rev().take(2) {
        assert!(matches!(
            d1.receive(op.clone()).unwrap(),
            InsertOutcome::Waiting { .. }
        ));
    }
    assert_eq!(d1.replay().waiting().count(), 2);
    assert!(
        matches!(d1.receive(ops[0].clone()).unwrap(), InsertOutcome::Applied { ref applied, .. } if applied.len() == 3)
    );
    assert_eq!(d1.replay().waiting().count(), 0);
    assert_eq!(
        d1.receive(ops[1].clone()).unwrap(),
        InsertOutcome::Duplicate
    );
    w.assert_converged();
}

//! Contacts a page at a time from a real store: the pages walk every contact once in
//! display-name order (checked against sorting the full list independently), a search keeps
//! exactly what `Contact::matches` keeps, and edits between pages never list a contact twice.
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

mod common;

use std::collections::BTreeSet;
use std::sync::Arc;

use cardlog::{Contact, ContactId, ContactQuery, ContactView, Field, ItemKind, Replica};
use cardlog_core::FakeClock;
use common::{replica, Rng, NINE_MS};

const NAMES: [&str; 8] = ["ada", "Ada", "Émile", "zoe", "Bob", "carl", "", "bob"];

fn filled(r: &mut Replica, n: u8, rng: &mut Rng) {
    for i in 0..n {
        let mut c = Contact::new(ContactId([i; 16]));
        let given = NAMES[rng.below(NAMES.len() as u64) as usize];
        if !given.is_empty() {
            c.set(Field::Given, given);
        }
        if rng.below(3) == 0 {
            c.set(Field::Org, "Navy");
        }
        if rng.below(4) == 0 {
            c.add_text_item(ItemKind::Phone, "work", format!("+1 (555) 01{i:03}"))
                .unwrap();
        }
        r.add_contact(&c).unwrap();
        if rng.below(5) == 0 {
            r.delete(c.id).unwrap();
        }
    }
}

/// The order stated in docs/SEMANTICS.md, written out independently of the library's.
fn sorted(mut all: Vec<ContactView>) -> Vec<ContactId> {
    all.sort_by_key(|v| {
        let name = v.contact.display_name();
        (name.is_empty(), name.to_lowercase(), name, v.contact.id)
    });
    all.into_iter().map(|v| v.contact.id).collect()
}

fn walk(r: &Replica, query: &ContactQuery) -> Vec<ContactId> {
    let mut out = Vec::new();
    let mut query = query.clone();
    loop {
        let page = r.contacts_page(&query).unwrap();
        assert!(page.contacts.len() <= query.limit.max(1));
        out.extend(page.contacts.iter().map(|v| v.contact.id));
        match page.next {
            Some(next) => query.after = Some(next),
            None => return out,
        }
    }
}

#[test]
fn pages_walk_every_contact_once_in_display_name_order() {
    let tmp = tempfile::tempdir().unwrap();
    let clock = Arc::new(FakeClock::new(NINE_MS));
    let mut r = replica(&tmp.path().join("r"), &clock);
    filled(&mut r, 120, &mut Rng::new(7));
    for limit in [1, 7, 50, 500] {
        let query = ContactQuery {
            limit,
            ..ContactQuery::default()
        };
        assert_eq!(
            walk(&r, &query),
            sorted(r.contacts().unwrap()),
            "limit {limit}"
        );
        let query = ContactQuery {
            include_deleted: true,
            ..query
        };
        assert_eq!(
            walk(&r, &query),
            sorted(r.contacts_with_deleted().unwrap()),
            "limit {limit}, deleted too"
        );
    }
    for search in ["ada", "navy bob", "555 01", "55501007", "zzz"] {
        let query = ContactQuery {
            search: Some(search.to_owned()),
            limit: 9,
            ..ContactQuery::default()
        };
        let want: Vec<ContactView> = r
            .contacts()
            .unwrap()
            .into_iter()
            .filter(|v| v.contact.matches(search))
            .collect();
        assert_eq!(walk(&r, &query), sorted(want), "search {search}");
    }
}

#[test]
fn edits_between_pages_move_only_the_contacts_edited() {
    let tmp = tempfile::tempdir().unwrap();
    let clock = Arc::new(FakeClock::new(NINE_MS));
    let mut r = replica(&tmp.path().join("r"), &clock);
    filled(&mut r, 60, &mut Rng::new(11));
    let everyone: BTreeSet<ContactId> =
        r.contacts().unwrap().iter().map(|v| v.contact.id).collect();
    let mut rng = Rng::new(12);
    let mut seen = Vec::new();
    let mut renamed = BTreeSet::new();
    let mut query = ContactQuery {
        limit: 5,
        ..ContactQuery::default()
    };
    loop {
        let page = r.contacts_page(&query).unwrap();
        seen.extend(page.contacts.iter().map(|v| v.contact.id));
        // Rename a few contacts anywhere in the order before the next page.
        for _ in 0..2 {
            let id = ContactId([rng.below(60) as u8; 16]);
            let name = NAMES[rng.below(NAMES.len() as u64) as usize];
            clock.advance_ms(1_000);
            if r.edit(id, |c| {
                c.set(Field::Family, name);
            })
            .unwrap_or(None)
            .is_some()
            {
                renamed.insert(id);
            }
        }
        match page.next {
            Some(next) => query.after = Some(next),
            None => break,
        }
    }
    // A contact nobody renamed is listed exactly once; one renamed meanwhile may move (it
    // is listed again at its new place, or passed over): the subscription tells the UI.
    for id in everyone.difference(&renamed) {
        assert_eq!(seen.iter().filter(|s| *s == id).count(), 1, "{id:?}");
    }
    assert!(!renamed.is_empty());
}

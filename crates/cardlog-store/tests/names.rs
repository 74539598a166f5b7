//! The name index (store/names.rs): built at the first open of a store that has none, kept by
//! saves and applies, checked by `verify` and repaired by `rebuild`; pages read through it
//! equal the listing order of every contact, and the rows it holds equal what the contacts
//! give.
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

mod common;

use std::ops::ControlFlow;

use cardlog_core::{
    listing_key, Contact, ContactId, ContactQuery, ContactRow, Field, ItemKind, RowWidths,
};
use cardlog_store::keys::{self, meta};
use cardlog_store::Store;
use common::{new_store, reopen, walk_pages, World};

const NAMES: [&str; 6] = ["Zoe", "ada", "Ada", "", "Émile", "bob"];

/// Every contact of the store, sorted by the listing key computed from its view.
fn by_name(store: &Store) -> Vec<ContactId> {
    let mut all = store.contacts(true).unwrap();
    all.sort_by_key(|v| listing_key(&v.contact));
    all.into_iter().map(|v| v.contact.id).collect()
}

/// A store holding 30 contacts, some renamed and some deleted, written by one device.
fn filled() -> (tempfile::TempDir, std::path::PathBuf, Store) {
    let (tmp, dir, store, _world) = filled_by();
    (tmp, dir, store)
}

/// [`filled`], with the device that wrote it.
fn filled_by() -> (tempfile::TempDir, std::path::PathBuf, Store, World) {
    let (tmp, dir, mut store) = new_store();
    // A second device, idle here, for tests that edit beside the first.
    let mut w = World::new(2);
    for i in 0..30u8 {
        let mut c = Contact::new(ContactId([i; 16]));
        let name = NAMES[usize::from(i) % NAMES.len()];
        if !name.is_empty() {
            c.set(Field::Given, name);
        }
        w.devices[0].create(&c).unwrap();
    }
    for i in (0..30u8).step_by(4) {
        w.advance(1_000);
        w.devices[0]
            .edit(ContactId([i; 16]), |c| {
                c.set(Field::Family, format!("Renamed{}", 30 - i));
            })
            .unwrap();
    }
    for i in (0..30u8).step_by(7) {
        w.advance(1_000);
        w.devices[0].delete(ContactId([i; 16])).unwrap();
    }
    let ops: Vec<_> = w.all_ops();
    store.apply_all(&ops).unwrap();
    // In sled, so the tests' direct removals are not overwritten by held-back writes.
    store.settle().unwrap();
    (tmp, dir, store, w)
}

#[test]
fn pages_follow_saves_renames_and_deletes() {
    let (_tmp, dir, store) = filled();
    let want = by_name(&store);
    assert_eq!(want.len(), 30);
    for limit in [1, 4, 30, 100] {
        assert_eq!(walk_pages(&store, limit, true), want, "limit {limit}");
    }
    let live: Vec<ContactId> = want
        .iter()
        .filter(|id| !store.contact(id).unwrap().unwrap().deleted)
        .copied()
        .collect();
    assert_eq!(walk_pages(&store, 4, false), live);
    assert!(store.verify().unwrap().is_ok());
    drop(store);
    let store = reopen(&dir);
    assert_eq!(walk_pages(&store, 7, true), want, "after a reopen");
}

/// Every row `each_row` gives (deleted ones too).
fn rows(store: &Store) -> Vec<ContactRow> {
    let mut out = Vec::new();
    store
        .each_row(true, |row| {
            out.push(row);
            ControlFlow::Continue(())
        })
        .unwrap();
    out
}

/// The rows the contacts give, in listing order.
fn rows_wanted(store: &Store) -> Vec<ContactRow> {
    by_name(store)
        .iter()
        .map(|id| ContactRow::of(&store.contact(id).unwrap().unwrap()))
        .collect()
}

#[test]
fn rows_follow_edits_that_keep_the_name() {
    let (_tmp, _dir, mut store, mut w) = filled_by();
    assert_eq!(rows(&store), rows_wanted(&store));
    // A phone added and a deletion: the listing keys stay, the rows change.
    w.advance(10_000);
    let mut c = Contact::new(ContactId([40; 16]));
    c.set(Field::Given, "Quinn");
    w.devices[0].create(&c).unwrap();
    store.apply_all(&w.all_ops()).unwrap();
    let before = rows(&store);
    let quinn = before.iter().find(|r| r.name == "Quinn").unwrap().clone();
    assert_eq!(quinn.phone_or_email, None);
    w.devices[0]
        .edit(ContactId([40; 16]), |c| {
            c.add_text_item(ItemKind::Phone, "cell", "+1 555 0100")
                .unwrap();
        })
        .unwrap();
    store.apply_all(&w.all_ops()).unwrap();
    let after = rows(&store);
    let quinn = after.iter().find(|r| r.name == "Quinn").unwrap();
    assert_eq!(quinn.phone_or_email.as_deref(), Some("+1 555 0100"));
    assert_eq!(after, rows_wanted(&store));
    w.devices[0].delete(ContactId([40; 16])).unwrap();
    store.apply_all(&w.all_ops()).unwrap();
    assert!(rows(&store).iter().any(|r| r.name == "Quinn" && r.deleted));
    assert_eq!(rows(&store), rows_wanted(&store));
    let mut live = Vec::new();
    store
        .each_row(false, |row| {
            live.push(row);
            ControlFlow::Continue(())
        })
        .unwrap();
    assert!(live.iter().all(|r| !r.deleted) && live.len() < rows(&store).len());
    assert!(store.verify().unwrap().is_ok());
}

#[test]
fn an_index_of_the_version_before_rows_is_rebuilt_at_open() {
    let (_tmp, dir, mut store) = filled();
    let want = rows_wanted(&store);
    // As version 1 left it: every `n` value empty, marked version 1.
    let (major, minor, update) = char::UNICODE_VERSION;
    store
        .put_meta(meta::NAMES, vec![1, major, minor, update])
        .unwrap();
    for id in by_name(&store) {
        let view = store.contact(&id).unwrap().unwrap();
        store
            .put_meta(&keys::name(&listing_key(&view.contact)), Vec::new())
            .unwrap();
    }
    store.flush().unwrap();
    drop(store);
    let store = reopen(&dir);
    assert_eq!(
        store.meta(meta::NAMES).unwrap(),
        Some(vec![keys::NAME_INDEX_VERSION, major, minor, update])
    );
    assert_eq!(rows(&store), want);
    assert!(store.verify().unwrap().is_ok());
}

#[test]
fn a_build_that_fails_leaves_no_mark_of_another_version() {
    let (_tmp, dir, mut store) = filled();
    // Marked by the version before rows, with a contact the build cannot decode.
    let (major, minor, update) = char::UNICODE_VERSION;
    store
        .put_meta(meta::NAMES, vec![1, major, minor, update])
        .unwrap();
    store
        .put_meta(&keys::contact(&ContactId([5; 16])), vec![0xff; 7])
        .unwrap();
    store.flush().unwrap();
    drop(store);
    let store = reopen(&dir);
    // Not `[1, …]`: an older build would trust its half-rewritten index.
    assert_eq!(store.meta(meta::NAMES).unwrap(), None);
}

/// The widths `row_widths` reads from the index's counts, as the rows give them.
fn widths_wanted(store: &Store, include_deleted: bool) -> RowWidths {
    let mut widths = RowWidths::default();
    rows_wanted(store)
        .iter()
        .filter(|r| include_deleted || !r.deleted)
        .for_each(|r| widths.fit(r));
    widths
}

#[test]
fn widths_follow_the_widest_row_as_it_grows_shrinks_and_goes() {
    let (_tmp, dir, mut store, mut w) = filled_by();
    for deleted in [true, false] {
        assert_eq!(
            store.row_widths(deleted).unwrap(),
            Some(widths_wanted(&store, deleted))
        );
    }
    let before = store.row_widths(false).unwrap().unwrap();
    // One contact far wider than the rest, in both columns: the widths grow to it.
    let wide = ContactId([50; 16]);
    let mut c = Contact::new(wide);
    c.set(Field::Given, "Bartholomew-Maximilian Ödegaard");
    c.add_text_item(ItemKind::Email, "home", "a.very.long.address@example.org")
        .unwrap();
    w.devices[0].create(&c).unwrap();
    store.apply_all(&w.all_ops()).unwrap();
    let grown = store.row_widths(false).unwrap().unwrap();
    assert_eq!(
        grown.name,
        "Bartholomew-Maximilian Ödegaard".chars().count()
    );
    assert_eq!(grown.first, "a.very.long.address@example.org".len());
    assert_eq!(grown.rows, before.rows + 1);
    // Renamed short: the name column shrinks back; the e-mail still holds the other.
    w.advance(1_000);
    w.devices[0]
        .edit(wide, |c| {
            c.set(Field::Given, "Bo");
        })
        .unwrap();
    store.apply_all(&w.all_ops()).unwrap();
    let renamed = store.row_widths(false).unwrap().unwrap();
    assert_eq!((renamed.name, renamed.first), (before.name, grown.first));
    // Deleted: gone from the live widths, still in those with the deleted.
    w.advance(1_000);
    w.devices[0].delete(wide).unwrap();
    store.apply_all(&w.all_ops()).unwrap();
    assert_eq!(store.row_widths(false).unwrap(), Some(before));
    assert_eq!(
        store.row_widths(true).unwrap(),
        Some(widths_wanted(&store, true))
    );
    assert!(store.row_widths(true).unwrap().unwrap().first >= grown.first);
    assert!(store.verify().unwrap().is_ok());
    drop(store);
    let store = reopen(&dir);
    assert_eq!(
        store.row_widths(false).unwrap(),
        Some(before),
        "after a reopen"
    );
}

#[test]
fn verify_names_a_wrong_width_count_and_rebuild_rewrites_it() {
    let (_tmp, _dir, mut store) = filled();
    let want = widths_wanted(&store, true);
    // A count for a width no row has: the listing would pad to it.
    let mut key = vec![keys::WIDTH, keys::WIDTH_NAME, 0];
    key.extend_from_slice(&77u32.to_be_bytes());
    store.put_meta(&key, 1u64.to_be_bytes().to_vec()).unwrap();
    store.flush().unwrap();
    assert_eq!(
        store.row_widths(true).unwrap().unwrap().name,
        77,
        "the damage shows"
    );
    let report = store.verify().unwrap();
    assert!(
        report.problems.iter().any(|p| p.contains("name index")),
        "{:?}",
        report.problems
    );
    store.rebuild().unwrap();
    assert_eq!(store.row_widths(true).unwrap(), Some(want));
    assert!(store.verify().unwrap().is_ok());
}

#[test]
fn verify_names_a_row_that_is_wrong_and_rebuild_rewrites_it() {
    let (_tmp, _dir, mut store) = filled();
    let want = rows_wanted(&store);
    let victim = store.contact(&by_name(&store)[2]).unwrap().unwrap();
    let mut wrong = ContactRow::of(&victim);
    wrong.conflicts += 3;
    store
        .put_meta(
            &keys::name(&listing_key(&victim.contact)),
            keys::row_value(&wrong),
        )
        .unwrap();
    store.flush().unwrap();
    assert_ne!(rows(&store), want, "the damage shows");
    let report = store.verify().unwrap();
    assert!(
        report.problems.iter().any(|p| p.contains("name index")),
        "{:?}",
        report.problems
    );
    store.rebuild().unwrap();
    assert_eq!(rows(&store), want);
    assert!(store.verify().unwrap().is_ok());
}

#[test]
fn a_conflict_alone_changes_the_row() {
    let (_tmp, _dir, mut store, mut w) = filled_by();
    // Two devices set the same field of one contact concurrently: its name stays, its row
    // counts a conflict.
    let id = ContactId([1; 16]);
    w.sync(0, 1);
    w.advance(1_000);
    for (device, org) in [(0, "Engines"), (1, "Looms")] {
        w.devices[device]
            .edit(id, |c| {
                c.set(Field::Org, org);
            })
            .unwrap();
    }
    assert_eq!(
        rows(&store).iter().find(|r| r.id == id).unwrap().conflicts,
        0
    );
    store.apply_all(&w.all_ops()).unwrap();
    let after = rows(&store);
    assert_eq!(after.iter().find(|r| r.id == id).unwrap().conflicts, 1);
    assert_eq!(after, rows_wanted(&store));
}

#[test]
fn a_store_without_the_index_builds_it_at_open() {
    let (_tmp, dir, mut store) = filled();
    let want = by_name(&store);
    // As a store written before the index existed: no mark, and entries missing.
    store.remove_meta(meta::NAMES).unwrap();
    let victim = store.contact(&want[3]).unwrap().unwrap().contact;
    store
        .remove_meta(&keys::name(&listing_key(&victim)))
        .unwrap();
    store.flush().unwrap();
    // Read whole while the index is not marked complete.
    assert_eq!(walk_pages(&store, 5, true), want, "without the index");
    assert_eq!(rows(&store), rows_wanted(&store), "rows without the index");
    drop(store);
    let store = reopen(&dir);
    let (major, minor, update) = char::UNICODE_VERSION;
    assert_eq!(
        store.meta(meta::NAMES).unwrap(),
        Some(vec![keys::NAME_INDEX_VERSION, major, minor, update])
    );
    assert_eq!(walk_pages(&store, 5, true), want, "after the build");
    let report = store.verify().unwrap();
    assert!(report.is_ok(), "{:?}", report.problems);
}

#[test]
fn verify_names_a_damaged_index_and_rebuild_repairs_it() {
    let (_tmp, _dir, mut store) = filled();
    let want = by_name(&store);
    let victim = store.contact(&want[0]).unwrap().unwrap().contact;
    store
        .remove_meta(&keys::name(&listing_key(&victim)))
        .unwrap();
    store.flush().unwrap();
    let report = store.verify().unwrap();
    assert!(
        report.problems.iter().any(|p| p.contains("name index")),
        "{:?}",
        report.problems
    );
    assert_ne!(walk_pages(&store, 5, true), want, "the damage shows");
    store.rebuild().unwrap();
    assert!(store.verify().unwrap().is_ok());
    assert_eq!(walk_pages(&store, 5, true), want, "after rebuild");
}

#[test]
fn a_search_page_walks_the_index_past_contacts_that_do_not_match() {
    let (_tmp, _dir, store) = filled();
    let want: Vec<ContactId> = by_name(&store)
        .into_iter()
        .filter(|id| {
            let v = store.contact(id).unwrap().unwrap();
            !v.deleted && v.contact.matches("renamed")
        })
        .collect();
    assert!(!want.is_empty());
    let mut query = ContactQuery {
        search: Some("renamed".into()),
        limit: 2,
        ..ContactQuery::default()
    };
    let mut got = Vec::new();
    loop {
        let page = store.contacts_page(&query).unwrap();
        got.extend(page.contacts.iter().map(|v| v.contact.id));
        match page.next {
            Some(next) => query.after = Some(next),
            None => break,
        }
    }
    assert_eq!(got, want);
}

#[test]
fn a_store_whose_index_cannot_be_built_still_opens_and_names_the_damage() {
    let (_tmp, dir, mut store) = filled();
    // A format-4 store (no index yet) with one contact's registers damaged.
    store.remove_meta(meta::NAMES).unwrap();
    store
        .put_meta(&keys::contact(&ContactId([5; 16])), vec![0xff; 7])
        .unwrap();
    store.flush().unwrap();
    drop(store);
    let store = reopen(&dir);
    assert_eq!(store.meta(meta::NAMES).unwrap(), None, "left unmarked");
    let report = store.verify().unwrap();
    assert!(
        report.problems.iter().any(|p| p.contains("contact")),
        "{:?}",
        report.problems
    );
}

#[test]
fn a_store_whose_names_database_is_lost_builds_the_index_again_at_open() {
    // The index lives in a database of its own (`db/names/`, see `SledKv`); one lost or out of
    // step with the main database is built again from the registers at the next open.
    let (_tmp, dir, mut store) = filled();
    let want = by_name(&store);
    let want_rows = rows(&store);
    store.flush().unwrap();
    drop(store);
    let names = dir
        .join("db")
        .join(cardlog_store::state::sled_kv::NAMES_DIR);
    assert!(names.is_dir());
    std::fs::remove_dir_all(&names).unwrap();
    let store = reopen(&dir);
    assert!(store.meta(meta::NAMES).unwrap().is_some(), "marked again");
    assert_eq!(walk_pages(&store, 5, true), want);
    assert_eq!(rows(&store), want_rows);
    let report = store.verify().unwrap();
    assert!(report.is_ok(), "{:?}", report.problems);
}

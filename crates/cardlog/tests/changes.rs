//! Change notifications: each source (save, delete, restore, resolve, apply, import, sync,
//! a removal that voids ops, rebuild) reports exactly the contacts it changed, once; a
//! dropped subscriber stops costing anything; cursors answer what changed while an app was
//! not running and say "everything" when they cannot; and a property test over random
//! schedules of three devices checks that the reported changes are exactly the contacts
//! whose registers changed. Progress of sessions and imports goes through the same hub.
#![allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    clippy::panic,
    clippy::expect_used
)]

mod common;

use std::collections::BTreeSet;
use std::sync::Arc;

use cardlog::{ChangeCursor, ChangeSource, Changes, ContactId, Field, Path, Replica, Since, Value};
use cardlog_core::FakeClock;
use common::{member_of, person, replica, session, NINE_MS};
use crossbeam_channel::Receiver;
use proptest::prelude::*;

/// Everything received so far.
fn drain(rx: &Receiver<Changes>) -> Vec<Changes> {
    rx.try_iter().collect()
}

/// The one change received, from `source`, as contact ids.
fn one(rx: &Receiver<Changes>, source: ChangeSource) -> Vec<ContactId> {
    let got = drain(rx);
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0].source, source);
    got[0].contacts.iter().map(|c| c.contact).collect()
}

fn ids(n: &[u8]) -> Vec<ContactId> {
    n.iter().map(|n| ContactId([*n; 16])).collect()
}

fn two() -> (tempfile::TempDir, Arc<FakeClock>, Replica, Replica) {
    let tmp = tempfile::tempdir().unwrap();
    let clock = Arc::new(FakeClock::new(NINE_MS));
    let mut laptop = replica(&tmp.path().join("laptop"), &clock);
    let phone = member_of(&mut laptop, &tmp.path().join("phone"), &clock);
    (tmp, clock, laptop, phone)
}

#[test]
fn saves_report_the_contact_and_the_paths_they_wrote() {
    let (_tmp, clock, mut laptop, _phone) = two();
    let rx = laptop.subscribe();
    laptop.add_contact(&person(1, "Ada")).unwrap();
    assert_eq!(one(&rx, ChangeSource::Save), ids(&[1]));

    clock.advance_ms(1_000);
    laptop
        .edit(ContactId([1; 16]), |c| {
            c.set(Field::Org, "Analytical Engines");
        })
        .unwrap();
    let got = drain(&rx);
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].contacts.len(), 1);
    assert!(got[0].contacts[0].paths.contains(&Path::Field(Field::Org)));
    assert!(!got[0].contacts[0]
        .paths
        .contains(&Path::Field(Field::Given)));

    // An edit that changes nothing saves nothing and reports nothing.
    laptop
        .edit(ContactId([1; 16]), |c| {
            c.set(Field::Org, "Analytical Engines");
        })
        .unwrap();
    assert!(drain(&rx).is_empty());

    laptop.add_contact(&person(2, "Grace")).unwrap();
    assert_eq!(one(&rx, ChangeSource::Save), ids(&[2]));
    laptop.delete(ContactId([2; 16])).unwrap();
    assert_eq!(one(&rx, ChangeSource::Save), ids(&[2]));
    laptop.restore(ContactId([2; 16])).unwrap();
    assert_eq!(one(&rx, ChangeSource::Save), ids(&[2]));
    laptop
        .resolve(
            ContactId([1; 16]),
            Path::Field(Field::Nickname),
            Some(Value::Text("Countess".into())),
        )
        .unwrap();
    let got = drain(&rx);
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].contacts.len(), 1);
    assert_eq!(got[0].contacts[0].contact, ContactId([1; 16]));
    assert!(got[0].contacts[0]
        .paths
        .contains(&Path::Field(Field::Nickname)));
}

#[test]
fn apply_import_and_sync_report_exactly_the_contacts_they_brought() {
    let (tmp, clock, mut laptop, mut phone) = two();
    let rx = phone.subscribe();
    laptop.add_contact(&person(1, "Ada")).unwrap();
    laptop.add_contact(&person(2, "Grace")).unwrap();
    phone.pull_from(&laptop).unwrap();
    assert_eq!(one(&rx, ChangeSource::Apply), ids(&[1, 2]));
    // Again: nothing new, nothing reported.
    phone.pull_from(&laptop).unwrap();
    assert!(drain(&rx).is_empty());

    clock.advance_ms(1_000);
    laptop.add_contact(&person(3, "Alan")).unwrap();
    let bundle = laptop.export_bundle(Some(phone.summary())).unwrap();
    phone.import_bundle(&bundle).unwrap();
    assert_eq!(one(&rx, ChangeSource::Import), ids(&[3]));
    phone.import_bundle(&bundle).unwrap();
    assert!(drain(&rx).is_empty());

    clock.advance_ms(1_000);
    laptop
        .edit(ContactId([2; 16]), |c| {
            c.set(Field::Org, "Navy");
        })
        .unwrap();
    let laptop_rx = laptop.subscribe();
    phone.add_contact(&person(4, "Edsger")).unwrap();
    assert_eq!(one(&rx, ChangeSource::Save), ids(&[4]));
    session(&mut phone, &mut laptop);
    let got: BTreeSet<ContactId> = drain(&rx)
        .into_iter()
        .inspect(|c| assert_eq!(c.source, ChangeSource::Sync))
        .flat_map(|c| c.contacts.into_iter().map(|c| c.contact))
        .collect();
    assert_eq!(got, ids(&[2]).into_iter().collect());
    assert_eq!(one(&laptop_rx, ChangeSource::Sync), ids(&[4]));
    drop(tmp);
}

#[test]
fn a_removal_that_voids_applied_ops_reports_what_it_took_away() {
    let (tmp, clock, mut laptop, mut phone) = two();
    let mut tablet = member_of(&mut laptop, &tmp.path().join("tablet"), &clock);
    phone.pull_from(&laptop).unwrap();
    tablet.add_contact(&person(1, "Ada")).unwrap();
    phone.pull_from(&tablet).unwrap();
    // The phone adds a contact the tablet takes; the laptop, which never saw it, removes the
    // phone as of what it holds: on the tablet the contact goes when the removal arrives.
    clock.advance_ms(1_000);
    phone.add_contact(&person(5, "Mallory")).unwrap();
    tablet.pull_from(&phone).unwrap();
    assert!(tablet.contact(&ContactId([5; 16])).unwrap().is_some());
    laptop.remove_member(phone.id()).unwrap();
    let rx = tablet.subscribe();
    tablet.pull_from(&laptop).unwrap();
    assert!(tablet.contact(&ContactId([5; 16])).unwrap().is_none());
    assert_eq!(one(&rx, ChangeSource::Apply), ids(&[5]));
}

#[test]
fn rebuild_reports_only_contacts_whose_registers_differ() {
    let (_tmp, _clock, mut laptop, _phone) = two();
    laptop.add_contact(&person(1, "Ada")).unwrap();
    let rx = laptop.subscribe();
    let cursor = laptop.change_cursor().unwrap();
    laptop.rebuild().unwrap();
    // The state was right: nothing to report, but the cursor of before cannot answer.
    assert!(drain(&rx).is_empty());
    assert_eq!(laptop.changes_since(&cursor).unwrap(), Since::Everything);
}

#[test]
fn a_dropped_subscriber_is_forgotten_and_others_still_hear() {
    let (_tmp, _clock, mut laptop, _phone) = two();
    let gone = laptop.subscribe();
    let kept = laptop.subscribe();
    drop(gone);
    laptop.add_contact(&person(1, "Ada")).unwrap();
    assert_eq!(one(&kept, ChangeSource::Save), ids(&[1]));
    drop(kept);
    laptop.add_contact(&person(2, "Grace")).unwrap();
    let again = laptop.subscribe();
    laptop.add_contact(&person(3, "Alan")).unwrap();
    // Only what happened while someone listened.
    assert_eq!(one(&again, ChangeSource::Save), ids(&[3]));
}

#[test]
fn changes_since_a_cursor_survive_a_restart_and_expire_on_rebuild() {
    let tmp = tempfile::tempdir().unwrap();
    let clock = Arc::new(FakeClock::new(NINE_MS));
    let dir = tmp.path().join("laptop");
    let mut laptop = replica(&dir, &clock);
    laptop.add_contact(&person(1, "Ada")).unwrap();
    let cursor = laptop.change_cursor().unwrap();
    assert_eq!(
        laptop.changes_since(&cursor).unwrap(),
        Since::Changes(Vec::new())
    );
    laptop.add_contact(&person(2, "Grace")).unwrap();
    laptop
        .edit(ContactId([1; 16]), |c| {
            c.set(Field::Org, "Analytical Engines");
        })
        .unwrap();
    let text = cursor.to_string();
    let last = laptop.change_cursor().unwrap();
    drop(laptop);

    let mut laptop = common::reopen(&dir, &clock);
    // Found again from the log's end after the open (without its index): the same place.
    assert_eq!(laptop.change_cursor().unwrap(), last);
    let cursor: ChangeCursor = text.parse().unwrap();
    let Since::Changes(changed) = laptop.changes_since(&cursor).unwrap() else {
        panic!("the cursor should answer");
    };
    let contacts: Vec<ContactId> = changed.iter().map(|c| c.contact).collect();
    assert_eq!(contacts, ids(&[1, 2]));
    assert!(changed[0].paths.contains(&Path::Field(Field::Org)));
    assert!(!changed[0].paths.contains(&Path::Field(Field::Given)));

    // Another replica's cursor, a mistyped one, one past the history, one of before a rebuild.
    let other = replica(&tmp.path().join("other"), &clock);
    assert_eq!(
        laptop
            .changes_since(&other.change_cursor().unwrap())
            .unwrap(),
        Since::Everything
    );
    let mut typo = text.clone().into_bytes();
    typo[40] = if typo[40] == b'0' { b'1' } else { b'0' };
    assert!(String::from_utf8(typo)
        .unwrap()
        .parse::<ChangeCursor>()
        .is_err());
    assert!("zz".parse::<ChangeCursor>().is_err());
    laptop.rebuild().unwrap();
    assert_eq!(laptop.changes_since(&cursor).unwrap(), Since::Everything);
    let now = laptop.change_cursor().unwrap();
    assert_eq!(
        laptop.changes_since(&now).unwrap(),
        Since::Changes(Vec::new())
    );
    assert_eq!(ChangeCursor::from_bytes(&now.to_bytes()).unwrap(), now);
}

#[test]
fn a_cursor_from_after_a_backup_is_restored_asks_for_everything() {
    let tmp = tempfile::tempdir().unwrap();
    let clock = Arc::new(FakeClock::new(NINE_MS));
    let dir = tmp.path().join("phone");
    let mut phone = replica(&dir, &clock);
    phone.add_contact(&person(1, "Ada")).unwrap();
    drop(phone);
    common::copy_dir(&dir, &tmp.path().join("backup"));
    let mut phone = common::reopen(&dir, &clock);
    phone.add_contact(&person(2, "Grace")).unwrap();
    phone.add_contact(&person(3, "Alan")).unwrap();
    let later = phone.change_cursor().unwrap();
    drop(phone);
    common::restore_in_place(&tmp.path().join("backup"), &dir);
    let mut phone = common::reopen(&dir, &clock);
    assert_eq!(phone.changes_since(&later).unwrap(), Since::Everything);
    // Grown back to the very same length with other contacts of the same size: still
    // another history.
    phone.add_contact(&person(4, "Grace")).unwrap();
    phone.add_contact(&person(5, "Alan")).unwrap();
    assert_eq!(
        phone.change_cursor().unwrap().to_bytes()[24..32],
        later.to_bytes()[24..32]
    );
    assert_eq!(phone.changes_since(&later).unwrap(), Since::Everything);
    // A cursor taken right after open, before any write, is found through the index.
    drop(phone);
    let phone = common::reopen(&dir, &clock);
    let now = phone.change_cursor().unwrap();
    assert_eq!(
        phone.changes_since(&now).unwrap(),
        Since::Changes(Vec::new())
    );
}

#[test]
fn sync_sessions_and_imports_report_progress_up_to_what_they_took() {
    use cardlog::SyncProgress;
    use std::sync::Mutex;
    let (tmp, clock, mut laptop, mut phone) = two();
    phone.pull_from(&laptop).unwrap();
    for n in 0..40u8 {
        laptop.add_contact(&person(100 + n, "Many")).unwrap();
    }
    let seen: Arc<Mutex<Vec<SyncProgress>>> = Arc::default();
    let sink = seen.clone();
    phone.set_progress(Some(Box::new(move |p: &SyncProgress| {
        sink.lock().unwrap().push(*p);
    })));
    let (report, _) = session(&mut phone, &mut laptop);
    let seen = std::mem::take(&mut *seen.lock().unwrap());
    assert!(seen.len() >= 2, "{seen:?}");
    for pair in seen.windows(2) {
        assert!(pair[1].received_ops >= pair[0].received_ops, "{seen:?}");
        assert!(pair[1].bytes_received >= pair[0].bytes_received, "{seen:?}");
        assert!(pair[1].bytes_sent >= pair[0].bytes_sent, "{seen:?}");
    }
    let last = seen.last().unwrap();
    assert_eq!(last.expected_ops, Some(40));
    assert_eq!(
        last.received_ops,
        (report.stored + report.duplicates + report.missing) as u64
    );
    assert_eq!(report.stored, 40);
    // (The report counts the encrypted bytes the transport carried; progress, the messages.)
    assert!(last.bytes_received > 0 && last.bytes_received <= report.bytes_received);

    // A bundle: its bytes first, then what it brought.
    let seen: Arc<Mutex<Vec<SyncProgress>>> = Arc::default();
    let sink = seen.clone();
    let mut other = replica(&tmp.path().join("other"), &clock);
    other.set_progress(Some(Box::new(move |p: &SyncProgress| {
        sink.lock().unwrap().push(*p);
    })));
    other.add_contact(&person(9, "Ada")).unwrap();
    let bundle = other.export_bundle(None).unwrap();
    other.import_bundle(&bundle).unwrap();
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 2, "{seen:?}");
    assert_eq!(seen[0].bytes_received, bundle.len() as u64);
    assert_eq!(seen[0].received_ops, 0);
    assert!(seen[1].received_ops >= 1, "{seen:?}");
    // Turned off, nothing more is reported.
    drop(seen);
    other.set_progress(None);
    other.import_bundle(&bundle).unwrap();
}

// ---- property: reported changes are exactly the contacts whose registers changed ----------

#[derive(Debug, Clone)]
enum Action {
    Add(usize, u8),
    Edit(usize, u8, u8),
    Delete(usize, u8),
    Restore(usize, u8),
    Pull(usize, usize),
    Import(usize, usize),
    Sync(usize, usize),
    Rebuild(usize),
}

fn action() -> impl Strategy<Value = Action> {
    let r = 0usize..3;
    let c = 0u8..5;
    prop_oneof![
        (r.clone(), c.clone()).prop_map(|(r, c)| Action::Add(r, c)),
        (r.clone(), c.clone(), 0u8..4).prop_map(|(r, c, v)| Action::Edit(r, c, v)),
        (r.clone(), c.clone()).prop_map(|(r, c)| Action::Delete(r, c)),
        (r.clone(), c.clone()).prop_map(|(r, c)| Action::Restore(r, c)),
        (r.clone(), r.clone()).prop_map(|(a, b)| Action::Pull(a, b)),
        (r.clone(), r.clone()).prop_map(|(a, b)| Action::Import(a, b)),
        (r.clone(), r.clone()).prop_map(|(a, b)| Action::Sync(a, b)),
        r.prop_map(Action::Rebuild),
    ]
}

/// Every contact's registers (encoded), by id.
fn registers(r: &Replica) -> Vec<Vec<u8>> {
    (0u8..5)
        .map(|n| {
            let regs = r.store().contact_registers(&ContactId([n; 16])).unwrap();
            cardlog_store::keys::contact_value(&regs)
        })
        .collect()
}

fn run(actions: &[Action]) {
    let tmp = tempfile::tempdir().unwrap();
    let clock = Arc::new(FakeClock::new(NINE_MS));
    let mut first = replica(&tmp.path().join("r0"), &clock);
    let second = member_of(&mut first, &tmp.path().join("r1"), &clock);
    let third = member_of(&mut first, &tmp.path().join("r2"), &clock);
    let mut r = vec![first, second, third];
    // Everyone knows every member before the schedule starts.
    let (a, b) = pair(&mut r, 1, 0);
    a.pull_from(b).unwrap();
    let rx: Vec<Receiver<Changes>> = r.iter_mut().map(Replica::subscribe).collect();
    let start: Vec<ChangeCursor> = r.iter().map(|r| r.change_cursor().unwrap()).collect();
    let initial: Vec<Vec<Vec<u8>>> = r.iter().map(registers).collect();
    for a in actions {
        clock.advance_ms(1_000);
        let before: Vec<Vec<Vec<u8>>> = r.iter().map(registers).collect();
        let cursors: Vec<ChangeCursor> = r.iter().map(|r| r.change_cursor().unwrap()).collect();
        match *a {
            Action::Add(i, n) if r[i].contact(&ContactId([n; 16])).unwrap().is_none() => {
                r[i].add_contact(&person(n, "New")).unwrap();
            }
            Action::Edit(i, n, v) => {
                let _ = r[i].edit(ContactId([n; 16]), |c| {
                    c.set(Field::Org, format!("org {v}"));
                });
            }
            Action::Delete(i, n) => {
                let _ = r[i].delete(ContactId([n; 16]));
            }
            Action::Restore(i, n) => {
                let _ = r[i].restore(ContactId([n; 16]));
            }
            Action::Pull(i, j) if i != j => {
                let (a, b) = pair(&mut r, i, j);
                a.pull_from(b).unwrap();
            }
            Action::Import(i, j) if i != j => {
                let (a, b) = pair(&mut r, i, j);
                let bundle = b.export_bundle(Some(a.summary())).unwrap();
                a.import_bundle(&bundle).unwrap();
            }
            Action::Sync(i, j) if i != j => {
                let (a, b) = pair(&mut r, i, j);
                session(a, b);
            }
            Action::Rebuild(i) => {
                r[i].rebuild().unwrap();
            }
            _ => {}
        }
        for i in 0..3 {
            let after = registers(&r[i]);
            let changed: BTreeSet<u8> = (0u8..5)
                .filter(|n| before[i][*n as usize] != after[*n as usize])
                .collect();
            let reported: BTreeSet<u8> = drain(&rx[i])
                .into_iter()
                .flat_map(|c| c.contacts.into_iter().map(|c| c.contact.0[0]))
                .collect();
            assert_eq!(reported, changed, "replica {i} after {a:?}");
            if let Since::Changes(since) = r[i].changes_since(&cursors[i]).unwrap() {
                let since: BTreeSet<u8> = since.iter().map(|c| c.contact.0[0]).collect();
                assert!(since.is_superset(&changed), "replica {i} after {a:?}");
            }
        }
    }
    // Over the whole run: what changed since the start, unless a rebuild expired the cursor.
    for i in 0..3 {
        let end = registers(&r[i]);
        let changed: BTreeSet<u8> = (0u8..5)
            .filter(|n| initial[i][*n as usize] != end[*n as usize])
            .collect();
        if let Since::Changes(since) = r[i].changes_since(&start[i]).unwrap() {
            let since: BTreeSet<u8> = since.iter().map(|c| c.contact.0[0]).collect();
            assert!(since.is_superset(&changed), "replica {i}");
        }
    }
}

fn pair(r: &mut [Replica], i: usize, j: usize) -> (&mut Replica, &mut Replica) {
    if i < j {
        let (x, y) = r.split_at_mut(j);
        (&mut x[i], &mut y[0])
    } else {
        let (x, y) = r.split_at_mut(i);
        (&mut y[0], &mut x[j])
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn reported_changes_are_exactly_the_contacts_whose_registers_changed(
        actions in proptest::collection::vec(action(), 1..24)
    ) {
        run(&actions);
    }
}

#[test]
fn changes_travel_as_json_and_come_back_equal() {
    let (_tmp, clock, mut laptop, _phone) = two();
    let rx = laptop.subscribe();
    laptop.add_contact(&person(1, "Ada")).unwrap();
    clock.advance_ms(1_000);
    laptop
        .edit(ContactId([1; 16]), |c| {
            c.set(Field::Org, "Analytical Engines");
        })
        .unwrap();
    let got = drain(&rx);
    let edit = got.last().unwrap();
    let json = serde_json::to_value(edit).unwrap();
    assert_eq!(json["source"], "save");
    assert_eq!(
        json["contacts"][0]["contact"],
        ContactId([1; 16]).to_string()
    );
    let paths: Vec<String> = edit.contacts[0]
        .paths
        .iter()
        .map(|p| p.to_string())
        .collect();
    assert!(paths.contains(&"org".to_owned()), "{paths:?}");
    assert_eq!(json["contacts"][0]["paths"], serde_json::json!(paths));
    assert_eq!(json["cursor"], edit.cursor.to_string());
    assert_eq!(json["cursor"].as_str().unwrap().len(), 144);
    let back: Changes = serde_json::from_value(json).unwrap();
    assert_eq!(&back, edit);
    // A cursor read back from JSON asks what it asked before.
    assert_eq!(
        laptop.changes_since(&back.cursor).unwrap(),
        laptop.changes_since(&edit.cursor).unwrap()
    );
    let mut bad = serde_json::to_value(edit).unwrap();
    bad["cursor"] = serde_json::json!("00");
    assert!(serde_json::from_value::<Changes>(bad).is_err());
}

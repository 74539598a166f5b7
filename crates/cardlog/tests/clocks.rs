//! Clocks that fail, permanently or once, over real stores (issue "Clocks that fail forever"):
//! each op is stamped with its device's real time at the edit, whatever the device stamped
//! before and whatever it received (docs/SEMANTICS.md, "Time").
//!
//! - a device whose clock was a day ahead and was set right stamps right again, and loses to
//!   an edit made later in real time (failure 1);
//! - a device that received a far-future op keeps stamping its own time, also after it reopens
//!   (failure 2);
//! - an op carrying the largest timestamp, received by a session or a bundle, never stops the
//!   receiver from saving (failure 6).
#![allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    clippy::panic,
    clippy::expect_used
)]

mod common;

use std::sync::Arc;

use cardlog::{Field, Path, Replica, Suspect};
use cardlog_core::FakeClock;
use common::{member_of, person, reopen, replica, session, NINE_MS};

const DAY_MS: u64 = 86_400_000;
const MIN_MS: u64 = 60_000;

fn org(r: &Replica, n: u8) -> Option<String> {
    r.contact(&person(n, "").id)
        .unwrap()
        .unwrap()
        .contact
        .get(Field::Org)
        .map(str::to_owned)
}

/// A laptop whose clock is behind real time, in a book with a relay on real time, each
/// knowing the other as a member.
struct Behind {
    tmp: tempfile::TempDir,
    real: Arc<FakeClock>,
    behind: Arc<FakeClock>,
    laptop: Replica,
    relay: Replica,
}

fn behind_by(ms: u64) -> Behind {
    let tmp = tempfile::tempdir().unwrap();
    let real = Arc::new(FakeClock::new(NINE_MS));
    let behind = Arc::new(FakeClock::new(NINE_MS - ms));
    let mut admin = replica(&tmp.path().join("admin"), &real);
    let mut laptop = member_of(&mut admin, &tmp.path().join("laptop"), &behind);
    let relay = common::relay_of(&mut admin, &tmp.path().join("relay"), &real);
    laptop.pull_from(&admin).unwrap();
    Behind {
        tmp,
        real,
        behind,
        laptop,
        relay,
    }
}

/// The wall time an op was stamped with.
fn stamped(r: &Replica, op: &cardlog::OpId) -> u64 {
    r.op(op).unwrap().unwrap().op().hlc.wall_ms
}

#[test]
fn a_clock_set_right_stamps_real_time_again_and_loses_to_a_later_edit() {
    let tmp = tempfile::tempdir().unwrap();
    let real = Arc::new(FakeClock::new(NINE_MS));
    let wrong = Arc::new(FakeClock::new(NINE_MS + DAY_MS));
    let mut laptop = replica(&tmp.path().join("laptop"), &real);
    let mut phone = member_of(&mut laptop, &tmp.path().join("phone"), &wrong);
    let ada = person(1, "Ada");
    laptop.add_contact(&ada).unwrap();
    phone.pull_from(&laptop).unwrap();
    // The phone's clock is a day ahead when it edits.
    let ahead = phone
        .edit(ada.id, |c| {
            c.set(Field::Note, "written a day ahead");
        })
        .unwrap()
        .unwrap();
    assert_eq!(stamped(&phone, &ahead), NINE_MS + DAY_MS);
    laptop.pull_from(&phone).unwrap();

    // Its user sets the clock right. A minute later the phone edits the organisation; a minute
    // after that, not having seen it, the laptop does too.
    wrong.set_ms(NINE_MS);
    wrong.advance_ms(MIN_MS as i64);
    real.advance_ms(MIN_MS as i64);
    let phone_edit = phone
        .edit(ada.id, |c| {
            c.set(Field::Org, "phone");
        })
        .unwrap()
        .unwrap();
    assert_eq!(stamped(&phone, &phone_edit), NINE_MS + MIN_MS);
    wrong.advance_ms(MIN_MS as i64);
    real.advance_ms(MIN_MS as i64);
    laptop
        .edit(ada.id, |c| {
            c.set(Field::Org, "laptop");
        })
        .unwrap()
        .unwrap();

    laptop.pull_from(&phone).unwrap();
    phone.pull_from(&laptop).unwrap();
    // The edit made later in real time wins on both, the other is kept as the alternative.
    assert_eq!(org(&laptop, 1).as_deref(), Some("laptop"));
    assert_eq!(org(&phone, 1).as_deref(), Some("laptop"));
    assert_eq!(laptop.state_bytes().unwrap(), phone.state_bytes().unwrap());
    let conflict = &phone.contact(&ada.id).unwrap().unwrap().conflicts;
    assert_eq!(conflict.len(), 1);
    // The note written a day ahead is marked suspect on both; the organisations are not.
    for r in [&phone, &laptop] {
        let marks = r.suspects(&ada.id, &Path::Field(Field::Note)).unwrap();
        assert_eq!(
            marks.into_iter().collect::<Vec<_>>(),
            vec![(
                ahead,
                Suspect::Ahead {
                    by_ms: DAY_MS - 2 * MIN_MS
                }
            )]
        );
        assert!(r
            .suspects(&ada.id, &Path::Field(Field::Org))
            .unwrap()
            .is_empty());
    }
    // Both stores hold a chain whose timestamps go back, and find nothing wrong with it.
    assert!(phone.verify().unwrap().is_ok());
    assert!(laptop.verify().unwrap().is_ok());
    // And a session carries such a chain to a third device.
    let mut tablet = member_of(&mut laptop, &tmp.path().join("tablet"), &real);
    session(&mut tablet, &mut laptop);
    assert_eq!(tablet.state_bytes().unwrap(), phone.state_bytes().unwrap());
}

#[test]
fn a_far_future_op_received_never_moves_the_receivers_own_stamps() {
    let tmp = tempfile::tempdir().unwrap();
    let real = Arc::new(FakeClock::new(NINE_MS));
    // 2099-01-01.
    let future = Arc::new(FakeClock::new(4_070_908_800_000));
    let mut laptop = replica(&tmp.path().join("laptop"), &real);
    let mut broken = member_of(&mut laptop, &tmp.path().join("broken"), &future);
    broken.add_contact(&person(2, "From 2099")).unwrap();
    let report = laptop.pull_from(&broken).unwrap();
    // The receiver reports the wild timestamp, naming its writer.
    assert_eq!(report.skew.len(), 1, "{report:?}");
    assert_eq!(report.skew[0].author, broken.id());

    real.advance_ms(1_000);
    let own = laptop.add_contact(&person(3, "Mine")).unwrap();
    assert_eq!(stamped(&laptop, &own), NINE_MS + 1_000);
    // Nor after the store is opened again.
    let dir = tmp.path().join("laptop");
    drop(laptop);
    let mut laptop = reopen(&dir, &real);
    real.advance_ms(1_000);
    let again = laptop.add_contact(&person(4, "Mine too")).unwrap();
    assert_eq!(stamped(&laptop, &again), NINE_MS + 2_000);
}

#[test]
fn an_op_with_the_largest_timestamp_never_stops_the_receiver_saving() {
    let tmp = tempfile::tempdir().unwrap();
    let real = Arc::new(FakeClock::new(NINE_MS));
    let end_of_time = Arc::new(FakeClock::new(u64::MAX));
    let mut laptop = replica(&tmp.path().join("laptop"), &real);
    let mut broken = member_of(&mut laptop, &tmp.path().join("broken"), &end_of_time);
    let mut phone = member_of(&mut laptop, &tmp.path().join("phone"), &real);
    let c = person(5, "Max");
    broken.add_contact(&c).unwrap();
    broken
        .edit(c.id, |c| {
            c.set(Field::Org, "twice at the end of time");
        })
        .unwrap()
        .unwrap();
    // By a session…
    let (mine, _) = session(&mut laptop, &mut broken);
    assert!(mine.converged);
    // …and by a bundle.
    let bundle = broken.export_bundle(None).unwrap();
    phone.import_bundle(&bundle).unwrap();
    for r in [&mut laptop, &mut phone] {
        real.advance_ms(1_000);
        let id = r.add_contact(&person(6, "Still saving")).unwrap();
        assert_eq!(stamped(r, &id), real.now_ms());
        r.edit(c.id, |c| {
            c.set(Field::Org, "edited after the end of time");
        })
        .unwrap()
        .unwrap();
        assert!(r.verify().unwrap().is_ok());
        // The edit replaced the far-future write it saw, so it is visible and unconflicted
        // although its timestamp is far smaller.
        let view = r.contact(&c.id).unwrap().unwrap();
        assert_eq!(
            view.contact.get(Field::Org),
            Some("edited after the end of time")
        );
        assert!(view.conflicts.is_empty());
        let history = r.history(&c.id, &Path::Field(Field::Org)).unwrap();
        assert_eq!(history.len(), 2);
        assert_eq!(history.iter().filter(|v| v.head).count(), 1);
        // The far-future write is marked; the edit that replaced it is not blamed for being
        // stamped before it.
        let marks = r.suspects_in(&history);
        assert_eq!(marks.len(), 1, "{marks:?}");
        let far = history.iter().find(|v| !v.head).unwrap();
        assert!(matches!(marks.get(&far.op), Some(Suspect::Ahead { .. })));
    }
}

use cardlog_core::WallClock;

#[test]
fn a_device_meeting_a_peer_a_day_ahead_keeps_its_own_time_and_a_relay_calibrates_it() {
    let tmp = tempfile::tempdir().unwrap();
    let real = Arc::new(FakeClock::new(NINE_MS));
    let ahead = Arc::new(FakeClock::new(NINE_MS + DAY_MS));
    let relay_clock = Arc::new(FakeClock::new(NINE_MS + MIN_MS));
    let mut laptop = replica(&tmp.path().join("laptop"), &real);
    let mut phone = member_of(&mut laptop, &tmp.path().join("phone"), &ahead);
    // Direct sync with a device whose clock is a day ahead: no calibration (failure 4).
    let (mine, _) = session(&mut laptop, &mut phone);
    assert_eq!(mine.calibration, None);
    let own = laptop.add_contact(&person(7, "Own time")).unwrap();
    assert_eq!(stamped(&laptop, &own), NINE_MS);

    // A relay of the book is the time reference: a minute ahead of the laptop, it moves the
    // laptop's stamps a minute on.
    let mut relay = common::relay_of(&mut laptop, &tmp.path().join("relay"), &relay_clock);
    assert!(laptop.is_time_reference(&relay.id()));
    assert!(!laptop.is_time_reference(&phone.id()));
    let (mine, _) = session(&mut laptop, &mut relay);
    let calibration = mine.calibration.expect("calibrated against the relay");
    assert_eq!(calibration.offset_ms, MIN_MS as i64);
    let calibrated = laptop.add_contact(&person(8, "Relay time")).unwrap();
    assert_eq!(stamped(&laptop, &calibrated), NINE_MS + MIN_MS);
}

#[test]
fn a_calibration_goes_when_the_user_sets_the_clock_right() {
    // Failure 3: the laptop's clock is three hours behind; the relay calibrates it and its
    // saves are stamped right. Its user then sets the clock right: the calibration no longer
    // applies (the wall clock moved three hours more than time passed), so saves are stamped
    // with the clock as it now reads, not three hours ahead of it. Also after a reopen.
    let hours = 3 * 3_600_000;
    let Behind {
        tmp,
        real,
        behind,
        mut laptop,
        mut relay,
    } = behind_by(hours);
    let (mine, _) = session(&mut laptop, &mut relay);
    assert_eq!(mine.calibration.unwrap().offset_ms, hours as i64);
    let right = laptop.add_contact(&person(9, "Calibrated")).unwrap();
    assert_eq!(stamped(&laptop, &right), NINE_MS);

    real.advance_ms(MIN_MS as i64);
    behind.advance_ms(MIN_MS as i64);
    behind.set_ms(real.now_ms());
    let after_fix = laptop.add_contact(&person(10, "Clock set right")).unwrap();
    assert_eq!(stamped(&laptop, &after_fix), NINE_MS + MIN_MS);
    assert_eq!(laptop.clock().offset_ms(), 0);

    // A calibration stored, then the clock set right while the app was closed.
    let (mine, _) = session(&mut laptop, &mut relay);
    assert_eq!(mine.calibration.unwrap().offset_ms, 0);
    behind.advance_ms(-(hours as i64));
    let (mine, _) = session(&mut laptop, &mut relay);
    assert_eq!(mine.calibration.unwrap().offset_ms, hours as i64);
    let dir = tmp.path().join("laptop");
    drop(laptop);
    behind.set_ms(real.now_ms());
    let mut laptop = reopen(&dir, &behind);
    assert_eq!(laptop.clock().offset_ms(), 0);
    let reopened = laptop.add_contact(&person(11, "Reopened")).unwrap();
    assert_eq!(stamped(&laptop, &reopened), real.now_ms());
}

#[test]
fn a_chain_stamped_backwards_travels_whole_by_bundle_and_session() {
    // A device whose clock goes back a second before every save: 300 ops, each stamped
    // before the one before it. A bundle and a session carry them (times travel whole in such
    // a segment), and the receiver stores them in one pass per batch.
    let tmp = tempfile::tempdir().unwrap();
    let real = Arc::new(FakeClock::new(NINE_MS));
    let falling = Arc::new(FakeClock::new(NINE_MS));
    let mut laptop = replica(&tmp.path().join("laptop"), &real);
    let mut odd = member_of(&mut laptop, &tmp.path().join("odd"), &falling);
    let mut phone = member_of(&mut laptop, &tmp.path().join("phone"), &real);
    odd.pull_from(&laptop).unwrap();
    let c = person(12, "Backwards");
    odd.add_contact(&c).unwrap();
    for n in 0..300 {
        falling.advance_ms(-1_000);
        odd.edit(c.id, |c| {
            c.set(Field::Note, format!("note {n}"));
        })
        .unwrap()
        .unwrap();
    }
    let bundle = odd.export_bundle(None).unwrap();
    let imported = laptop.import_bundle(&bundle).unwrap();
    assert_eq!(imported.received.applied.stored, 301);
    assert_eq!(laptop.state_bytes().unwrap(), odd.state_bytes().unwrap());
    let (mine, _) = session(&mut phone, &mut odd);
    assert!(mine.converged);
    assert_eq!(phone.state_bytes().unwrap(), odd.state_bytes().unwrap());
    let note = phone.contact(&c.id).unwrap().unwrap();
    assert_eq!(note.contact.get(Field::Note), Some("note 299"));
}

#[test]
fn a_removed_relay_is_no_time_reference() {
    let tmp = tempfile::tempdir().unwrap();
    let real = Arc::new(FakeClock::new(NINE_MS));
    let mut admin = replica(&tmp.path().join("admin"), &real);
    let relay = common::relay_of(&mut admin, &tmp.path().join("relay"), &real);
    assert!(admin.is_time_reference(&relay.id()));
    admin.remove_member(relay.id()).unwrap();
    assert!(!admin.is_time_reference(&relay.id()));
}

#[test]
fn a_lapsed_calibration_stays_gone_after_a_reboot() {
    // The clock is set right after a calibration; a save notices and stores the lapse. After
    // a reboot (the monotonic clock starts again at 0, so it can no longer tell) the stored
    // calibration must not come back.
    let hours = 3 * 3_600_000;
    let Behind {
        tmp,
        real,
        behind,
        mut laptop,
        mut relay,
    } = behind_by(hours);
    session(&mut laptop, &mut relay);
    assert!(laptop.last_calibration().unwrap().unwrap().in_force);
    behind.advance_ms(1_000);
    behind.set_ms(real.now_ms() + 1_000);
    assert!(!laptop.last_calibration().unwrap().unwrap().in_force);
    laptop.add_contact(&person(13, "Noticed")).unwrap();
    let dir = tmp.path().join("laptop");
    drop(laptop);
    let rebooted = Arc::new(FakeClock::new(real.now_ms() + 2_000));
    let mut laptop = reopen(&dir, &rebooted);
    assert_eq!(laptop.clock().offset_ms(), 0);
    let id = laptop.add_contact(&person(14, "After reboot")).unwrap();
    assert_eq!(stamped(&laptop, &id), real.now_ms() + 2_000);
}

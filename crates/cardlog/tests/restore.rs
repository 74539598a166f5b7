//! A store restored from a backup in place (the folder kept, its contents replaced by last
//! week's, as a phone restore or `rsync --delete` does) over real stores: the device writes on
//! before it meets anyone, then takes back the ops its backup lost from the first peer that
//! holds them, and re-issues its own later ops after them. Nothing is lost, every replica
//! converges, and the device keeps syncing (docs/SEMANTICS.md, "Restores").
#![allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    clippy::panic,
    clippy::expect_used
)]

mod common;

use std::sync::Arc;

use cardlog::sync_layer::transport::{channel_pair, run, Shared};
use cardlog::{Field, Replica, Role, SyncReport, TakenBack};
use cardlog_core::{FakeClock, Path, Value};
use common::{
    copy_dir, member_of, person, reopen, replica, restore_in_place, session, NINE_MS, TIMEOUT,
};

/// Closes `r` (whose store is `dir`), does `meanwhile` to its files (a backup, a restore in
/// place) and opens it again.
fn reopened(
    r: Replica,
    dir: &std::path::Path,
    clock: &Arc<FakeClock>,
    meanwhile: impl FnOnce(),
) -> Replica {
    drop(r);
    meanwhile();
    reopen(dir, clock)
}

/// The phone backed up (to `backup`), its contact "Lost" synced to the relay, its store
/// restored in place from before it, and a contact "After" written since: the restored device
/// the scenarios here start from.
fn restored_after_losing_a_contact(
    phone: Replica,
    dir: &std::path::Path,
    backup: &std::path::Path,
    relay: &mut Replica,
    clock: &Arc<FakeClock>,
) -> Replica {
    let mut phone = reopened(phone, dir, clock, || copy_dir(dir, backup));
    clock.advance_ms(60_000);
    phone.add_contact(&person(1, "Lost")).unwrap();
    session(&mut phone, relay);
    let mut phone = reopened(phone, dir, clock, || restore_in_place(backup, dir));
    clock.advance_ms(60_000);
    phone.add_contact(&person(2, "After")).unwrap();
    phone
}

/// The laptop (the founder, with a contact 4 of its own), the relay, and the phone, tablet and
/// desk as members, each synced once through the relay; then the phone restored in place after
/// losing a contact and writing another ([`restored_after_losing_a_contact`]).
struct WithDesk {
    laptop: Replica,
    relay: Replica,
    phone: Replica,
    tablet: Replica,
    desk: Replica,
}

fn with_a_desk(dir: &std::path::Path, clock: &Arc<FakeClock>) -> WithDesk {
    let mut laptop = replica(&dir.join("laptop"), clock);
    let mut relay = common::relay_of(&mut laptop, &dir.join("relay"), clock);
    let phone_dir = dir.join("phone");
    let mut phone = member_of(&mut laptop, &phone_dir, clock);
    let mut tablet = member_of(&mut laptop, &dir.join("tablet"), clock);
    let mut desk = member_of(&mut laptop, &dir.join("desk"), clock);
    laptop.add_contact(&person(4, "The laptop's")).unwrap();
    session(&mut relay, &mut laptop);
    for x in [&mut phone, &mut tablet, &mut desk] {
        session(x, &mut relay);
    }
    let backup = dir.join("phone-backup");
    let phone = restored_after_losing_a_contact(phone, &phone_dir, &backup, &mut relay, clock);
    WithDesk {
        laptop,
        relay,
        phone,
        tablet,
        desk,
    }
}

fn field(r: &Replica, n: u8, f: Field) -> Option<String> {
    r.contact(&person(n, "").id)
        .unwrap()
        .map(|v| v.contact.get(f).map(str::to_owned))
        .unwrap_or_default()
}

/// A laptop (the founder) and a phone that synced, the phone's store backed up at that point,
/// then two more ops of the phone that reach the laptop (`lost`: they are lost with the disk),
/// then the backup restored in place. Returns the phone's seq at the backup.
struct Restored {
    tmp: tempfile::TempDir,
    clock: Arc<FakeClock>,
    laptop: Replica,
    phone: Replica,
    /// A member that synced once, before the phone's contacts: it never got the lost ops.
    tablet: Option<Replica>,
    /// Another such member (the tablet knows it is one).
    desk: Option<Replica>,
    backed_up_at: u64,
}

fn restored(lost: usize) -> Restored {
    let tmp = tempfile::tempdir().unwrap();
    let clock = Arc::new(FakeClock::new(NINE_MS));
    let phone_dir = tmp.path().join("phone");
    let mut laptop = replica(&tmp.path().join("laptop"), &clock);
    let mut phone = member_of(&mut laptop, &phone_dir, &clock);
    let mut tablet = member_of(&mut laptop, &tmp.path().join("tablet"), &clock);
    let desk = member_of(&mut laptop, &tmp.path().join("desk"), &clock);
    session(&mut tablet, &mut laptop);
    for n in 1..=3 {
        phone.add_contact(&person(n, "Ada")).unwrap();
    }
    session(&mut phone, &mut laptop);
    let backed_up_at = phone.summary()[&phone.id()].seq;
    let id = phone.id();
    drop(phone);
    copy_dir(&phone_dir, &tmp.path().join("backup"));
    let mut phone = reopen(&phone_dir, &clock);
    clock.advance_ms(60_000);
    // Written before the disk died, and synced.
    if lost > 0 {
        phone
            .edit(person(1, "").id, |c| {
                c.set(Field::Note, "before the disk died");
            })
            .unwrap();
    }
    for n in 1..lost {
        if n < 100 {
            phone.add_contact(&person(10 + n as u8, "Synced")).unwrap();
        } else {
            phone
                .edit(person(3, "").id, |c| {
                    c.set(Field::Note, format!("note {n}"));
                })
                .unwrap();
        }
    }
    session(&mut phone, &mut laptop);
    drop(phone);
    restore_in_place(&tmp.path().join("backup"), &phone_dir);
    let phone = reopen(&phone_dir, &clock);
    assert_eq!(phone.id(), id, "an in-place restore is not noticed at open");
    assert_eq!(phone.summary()[&id].seq, backed_up_at);
    Restored {
        tmp,
        clock,
        laptop,
        phone,
        tablet: Some(tablet),
        desk: Some(desk),
        backed_up_at,
    }
}

/// The phone's writes after the restore: an edit of contact 2 and a new contact 5.
fn write_after_restore(r: &mut Restored) {
    r.clock.advance_ms(60_000);
    r.phone
        .edit(person(2, "").id, |c| {
            c.set(Field::Org, "after the restore");
        })
        .unwrap();
    r.phone
        .add_contact(&person(5, "New after restore"))
        .unwrap();
}

/// A minute later, `x` renames contact `n` (its given name).
fn rename(x: &mut Replica, clock: &FakeClock, n: u8, given: &str) {
    clock.advance_ms(60_000);
    x.edit(person(n, "").id, |c| {
        c.set(Field::Given, given);
    })
    .unwrap();
}

/// Every replica of `all` holds what `reference` holds, verifies, and records no fork.
fn assert_converged(all: &[&Replica], reference: &Replica) {
    for x in all {
        assert!(x.forks().unwrap().is_empty(), "{:?}", x.forks().unwrap());
        assert!(x.verify().unwrap().is_ok());
        assert_eq!(x.state_bytes().unwrap(), reference.state_bytes().unwrap());
        assert_eq!(x.summary(), reference.summary());
    }
}

fn assert_whole(r: &Restored) {
    for x in [&r.phone, &r.laptop] {
        assert_eq!(
            field(x, 1, Field::Note).as_deref(),
            Some("before the disk died")
        );
        assert_eq!(
            field(x, 2, Field::Org).as_deref(),
            Some("after the restore")
        );
        assert_eq!(
            field(x, 5, Field::Given).as_deref(),
            Some("New after restore")
        );
        assert!(x.verify().unwrap().is_ok());
    }
    assert_eq!(
        r.phone.state_bytes().unwrap(),
        r.laptop.state_bytes().unwrap()
    );
    assert_eq!(r.phone.summary(), r.laptop.summary());
    assert!(!r.phone.is_restored().unwrap());
    let me = r.phone.id();
    assert!(r.phone.forks().unwrap().iter().all(|f| f.author != me));
    assert!(
        r.laptop.forks().unwrap().iter().all(|f| f.author != me),
        "the laptop does not record a fork the phone took back"
    );
}

#[test]
fn a_store_restored_in_place_takes_back_its_chain_and_its_later_writes_reach_everyone() {
    let mut r = restored(2);
    write_after_restore(&mut r);
    // The laptop holds another op at the phone's last seq: it sends the phone all of its
    // chain, the phone takes back the two ops it lost and sends its two later ones on top.
    let (mine, _) = session(&mut r.phone, &mut r.laptop);
    let k = r.backed_up_at;
    assert_eq!(
        mine.taken_back,
        Some(TakenBack {
            from_seq: k + 1,
            recovered: 2,
            reissued: 2
        })
    );
    assert!(mine.converged, "{mine:?}");
    assert_whole(&r);
    // The re-issued ops keep the times they were written at.
    let tip = r.phone.summary()[&r.phone.id()];
    assert_eq!(tip.seq, k + 4);
    assert_eq!(tip.hlc.wall_ms, NINE_MS + 120_000);
    // A third device gets everything from the laptop; the phone keeps writing and syncing.
    let mut tablet = member_of(&mut r.laptop, &r.tmp.path().join("tablet2"), &r.clock);
    r.phone
        .edit(person(3, "").id, |c| {
            c.set(Field::Org, "still syncing");
        })
        .unwrap();
    session(&mut r.phone, &mut r.laptop);
    session(&mut tablet, &mut r.laptop);
    assert_eq!(
        field(&tablet, 3, Field::Org).as_deref(),
        Some("still syncing")
    );
    assert_eq!(
        tablet.state_bytes().unwrap(),
        r.phone.state_bytes().unwrap()
    );
    // Reopened, the phone reads the same (the withdrawn records stay passed over).
    let dir = r.tmp.path().join("phone");
    let before = r.phone.state_bytes().unwrap();
    drop(std::mem::replace(&mut r.phone, tablet));
    let phone = reopen(&dir, &r.clock);
    assert_eq!(phone.state_bytes().unwrap(), before);
    assert!(phone.verify().unwrap().is_ok());
}

#[test]
fn a_peer_holding_less_of_the_chain_is_noticed_first_and_the_next_session_takes_it_back() {
    // One op lost; two written after the restore: the laptop's copy of the chain is shorter
    // than the phone's, so only the phone sees the fork (in the laptop's summary).
    let mut r = restored(1);
    write_after_restore(&mut r);
    let (first, _) = session(&mut r.phone, &mut r.laptop);
    assert!(first.restored, "{first:?}");
    assert_eq!(first.taken_back, None);
    assert!(r.phone.is_restored().unwrap());
    // Nor does a bundle it exports while marked carry its ops (the laptop would meet the
    // fork in it).
    let bundle = r.phone.export_bundle(None).unwrap();
    let imported = r.laptop.import_bundle(&bundle).unwrap();
    assert!(imported.received.forks.is_empty(), "{imported:?}");
    assert!(
        r.phone
            .ops()
            .any(|o| o.unwrap().op().author == r.phone.id()),
        "the phone does hold ops of its own"
    );
    // It sent none of its own ops meanwhile: the laptop holds no fork of the phone's chain.
    assert_eq!(
        r.laptop.summary()[&r.phone.id()].seq,
        r.backed_up_at + 1,
        "the laptop kept the chain it had"
    );
    // A restart in between changes nothing.
    let dir = r.tmp.path().join("phone");
    let placeholder = replica(&r.tmp.path().join("placeholder"), &r.clock);
    drop(std::mem::replace(&mut r.phone, placeholder));
    r.phone = reopen(&dir, &r.clock);
    assert!(r.phone.is_restored().unwrap());
    let (second, _) = session(&mut r.phone, &mut r.laptop);
    assert_eq!(
        second.taken_back,
        Some(TakenBack {
            from_seq: r.backed_up_at + 1,
            recovered: 1,
            reissued: 2
        })
    );
    assert!(second.converged, "{second:?}");
    assert_whole(&r);
}

#[test]
fn a_branch_given_up_never_swings_back_and_a_peer_holding_it_settles_it() {
    // After the restore the phone first meets a tablet that never got the lost ops: the
    // tablet takes the phone's post-restore ops (it cannot know). Then the phone takes its
    // chain back from the laptop and re-issues them. Meeting the tablet again, the phone sees
    // the branch it gave up: a fork, not ops it lost, and sends the tablet its whole chain;
    // the tablet finds every op of its branch re-issued there and settles. The phone's chain
    // stays as it is, however often it meets either, and all converge.
    let mut r = restored(2);
    let mut tablet = r.tablet.take().unwrap();
    write_after_restore(&mut r);
    let me = r.phone.id();
    session(&mut tablet, &mut r.phone);
    assert_eq!(
        tablet.summary()[&me].seq,
        r.backed_up_at + 2,
        "the tablet took the branch"
    );
    let (taken, _) = session(&mut r.phone, &mut r.laptop);
    assert!(taken.taken_back.is_some(), "{taken:?}");
    let tip = r.phone.summary()[&me];
    // (The phone starts the session: the tablet, answering, sends first and settles when the
    // phone's ops come.)
    let (mine, settled) = session(&mut r.phone, &mut tablet);
    assert_eq!(mine.taken_back, None);
    assert!(!mine.restored, "{mine:?}");
    assert_eq!(settled.settled, vec![me], "{settled:?}");
    for _ in 0..2 {
        let (mine, _) = session(&mut r.phone, &mut tablet);
        assert_eq!(mine.taken_back, None);
        assert!(!r.phone.is_restored().unwrap());
        session(&mut r.phone, &mut r.laptop);
        session(&mut r.laptop, &mut tablet);
        assert_eq!(
            r.phone.summary()[&me],
            tip,
            "the phone's chain did not move"
        );
    }
    assert!(tablet.forks().unwrap().iter().all(|f| f.author != me));
    assert!(r.phone.forks().unwrap().iter().all(|f| f.author != me));
    session(&mut r.phone, &mut tablet);
    for x in [&tablet, &r.phone] {
        assert_eq!(x.state_bytes().unwrap(), r.laptop.state_bytes().unwrap());
        assert_eq!(x.summary(), r.laptop.summary());
        assert!(x.verify().unwrap().is_ok());
    }
}

/// The tablet edits on top of the phone's post-restore branch (contact 2's organisation, the
/// phone's new contact 5) before the phone takes its chain back; with `told_phone`, the phone
/// gets those edits too before its take back. Nothing of it may block a fork from settling or
/// be lost: the edits are withdrawn with the branch they built on and re-issued by their
/// author on the copies, and every device converges with them and without a conflict.
fn edits_on_a_branch_given_up(told_phone: bool) {
    let mut r = restored(2);
    let mut tablet = r.tablet.take().unwrap();
    write_after_restore(&mut r);
    let me = r.phone.id();
    let tab = tablet.id();
    session(&mut tablet, &mut r.phone);
    r.clock.advance_ms(60_000);
    tablet
        .edit(person(2, "").id, |c| {
            c.set(Field::Org, "the tablet's, on top");
        })
        .unwrap();
    tablet
        .edit(person(5, "").id, |c| {
            c.set(Field::Note, "noted on the tablet");
        })
        .unwrap();
    let edited = tablet.summary()[&tab];
    if told_phone {
        session(&mut tablet, &mut r.phone);
        assert_eq!(r.phone.summary()[&tab], edited);
    }
    let (taken, _) = session(&mut r.phone, &mut r.laptop);
    assert!(taken.taken_back.is_some(), "{taken:?}");
    let (_, settled) = session(&mut r.phone, &mut tablet);
    assert_eq!(settled.settled, vec![me], "{settled:?}");
    assert_ne!(
        tablet.summary()[&tab].op,
        edited.op,
        "the tablet re-issued its edits"
    );
    for _ in 0..2 {
        session(&mut r.phone, &mut tablet);
        session(&mut r.laptop, &mut tablet);
        session(&mut r.phone, &mut r.laptop);
    }
    for x in [&tablet, &r.phone, &r.laptop] {
        assert_eq!(
            field(x, 2, Field::Org).as_deref(),
            Some("the tablet's, on top")
        );
        assert_eq!(
            field(x, 5, Field::Note).as_deref(),
            Some("noted on the tablet")
        );
        assert_eq!(
            field(x, 1, Field::Note).as_deref(),
            Some("before the disk died")
        );
        assert!(x.conflicts().unwrap().is_empty(), "{:?}", x.conflicts());
        assert!(!x.is_restored().unwrap());
    }
    assert_converged(&[&tablet, &r.phone, &r.laptop], &r.laptop);
}

#[test]
fn an_edit_on_a_branch_given_up_is_reissued_by_its_author_and_the_fork_settles() {
    edits_on_a_branch_given_up(false);
}

#[test]
fn an_edit_on_its_branch_that_reached_the_restored_device_does_not_block_its_take_back() {
    edits_on_a_branch_given_up(true);
}

#[test]
fn an_edit_waiting_for_a_copy_from_a_device_never_met_again_goes_in_beside_the_copy() {
    // The tablet renames contact 5 (the phone's, written after the restore) and the desk
    // renames it again on top; the tablet is then lost. Settling the phone's fork, the desk
    // withdraws both renames; its own waits for the tablet's copy of the first, which never
    // comes, then goes in without naming it: beside the phone's copy, a visible conflict,
    // not a lost edit. The tablet's rename is given up with the branch it built on.
    let mut r = restored(2);
    let tablet_dir = r.tmp.path().join("tablet");
    let mut tablet = r.tablet.take().unwrap();
    let mut desk = r.desk.take().unwrap();
    write_after_restore(&mut r);
    session(&mut tablet, &mut r.phone);
    rename(&mut tablet, &r.clock, 5, "renamed on the tablet");
    session(&mut desk, &mut tablet);
    rename(&mut desk, &r.clock, 5, "renamed on the desk");
    let me = r.phone.id();
    let edited = desk.summary()[&desk.id()];
    drop(tablet);
    std::fs::remove_dir_all(&tablet_dir).unwrap();
    let (taken, _) = session(&mut r.phone, &mut r.laptop);
    assert!(taken.taken_back.is_some(), "{taken:?}");
    let (_, settled) = session(&mut r.phone, &mut desk);
    assert_eq!(settled.settled, vec![me], "{settled:?}");
    assert!(
        desk.summary()
            .get(&desk.id())
            .is_none_or(|t| t.seq < edited.seq),
        "the desk's rename waits, withdrawn"
    );
    for _ in 0..20 {
        session(&mut r.phone, &mut desk);
        session(&mut r.laptop, &mut desk);
    }
    assert_eq!(desk.summary()[&desk.id()].seq, edited.seq, "re-issued");
    for x in [&desk, &r.phone, &r.laptop] {
        assert_eq!(
            field(x, 5, Field::Given).as_deref(),
            Some("renamed on the desk")
        );
        let conflicts = x.conflicts().unwrap();
        assert_eq!(conflicts.len(), 1, "{conflicts:?}");
    }
    assert_converged(&[&desk, &r.phone, &r.laptop], &r.laptop);
}

#[test]
fn the_restored_device_editing_on_top_of_an_edit_on_its_branch_waits_only_for_that_edit() {
    // The tablet renames the phone's post-restore contact 5, the phone renames it again on
    // top of that and adds contact 6, and the tablet gets both, all before the phone takes
    // its chain back. The phone's second rename names the tablet's, which goes with the
    // branch: it waits for the tablet's copy, while contact 6 does not wait. The tablet settles
    // without a copy of that rename (it waits on the tablet's own edit), re-issues its rename,
    // and the phone's follows on top: the last rename stands, without a conflict.
    let mut r = restored(2);
    let mut tablet = r.tablet.take().unwrap();
    write_after_restore(&mut r);
    session(&mut tablet, &mut r.phone);
    rename(&mut tablet, &r.clock, 5, "renamed on the tablet");
    session(&mut tablet, &mut r.phone);
    rename(&mut r.phone, &r.clock, 5, "renamed on the phone, on top");
    r.phone.add_contact(&person(6, "Unrelated")).unwrap();
    session(&mut tablet, &mut r.phone);
    let me = r.phone.id();
    // (Its branch is longer than what the laptop holds of its chain: the first session
    // notices, the second takes back.)
    let (noticed, _) = session(&mut r.phone, &mut r.laptop);
    assert!(noticed.restored, "{noticed:?}");
    let (taken, _) = session(&mut r.phone, &mut r.laptop);
    assert!(taken.taken_back.is_some(), "{taken:?}");
    assert_eq!(
        field(&r.phone, 6, Field::Given).as_deref(),
        Some("Unrelated"),
        "contact 6 does not wait for the rename"
    );
    let (_, settled) = session(&mut r.phone, &mut tablet);
    assert_eq!(settled.settled, vec![me], "{settled:?}");
    for _ in 0..2 {
        session(&mut r.phone, &mut tablet);
        session(&mut r.laptop, &mut tablet);
        session(&mut r.phone, &mut r.laptop);
    }
    for x in [&tablet, &r.phone, &r.laptop] {
        assert_eq!(
            field(x, 5, Field::Given).as_deref(),
            Some("renamed on the phone, on top")
        );
        assert_eq!(field(x, 6, Field::Given).as_deref(), Some("Unrelated"));
        assert!(x.conflicts().unwrap().is_empty(), "{:?}", x.conflicts());
    }
    assert_converged(&[&tablet, &r.phone, &r.laptop], &r.laptop);
}

#[test]
fn a_copy_far_along_the_chain_is_found() {
    // 2,100 ops lost with the disk: the phone's copies of its branch land more than 2,100
    // seqs after the ops they copy. The tablet's rename of the phone's post-restore contact
    // still finds the copy it must name, and no conflict appears.
    let mut r = restored(2_100);
    let mut tablet = r.tablet.take().unwrap();
    write_after_restore(&mut r);
    session(&mut tablet, &mut r.phone);
    rename(&mut tablet, &r.clock, 5, "renamed on the tablet");
    let me = r.phone.id();
    let (taken, _) = session(&mut r.phone, &mut r.laptop);
    assert!(taken.taken_back.is_some(), "{taken:?}");
    let (_, settled) = session(&mut r.phone, &mut tablet);
    assert_eq!(settled.settled, vec![me], "{settled:?}");
    session(&mut r.laptop, &mut tablet);
    session(&mut r.phone, &mut r.laptop);
    for x in [&tablet, &r.phone, &r.laptop] {
        assert_eq!(
            field(x, 5, Field::Given).as_deref(),
            Some("renamed on the tablet")
        );
        assert!(x.conflicts().unwrap().is_empty(), "{:?}", x.conflicts());
    }
    assert_converged(&[&tablet, &r.phone, &r.laptop], &r.laptop);
}

#[test]
fn replicas_holding_different_amounts_built_on_a_branch_settle_it_alike() {
    // The tablet renames the phone's post-restore contact 5, the phone gets the rename, and the
    // tablet then saves 1,100 more edits the phone does not hold. Withdrawing the branch takes
    // one op of the tablet's at the phone and 1,101 at the tablet: both must decide the same
    // (a bound on what others lose, counted on what each holds, once split them for good).
    let mut r = restored(2);
    let mut tablet = r.tablet.take().unwrap();
    write_after_restore(&mut r);
    tablet.add_contact(&person(7, "Busy")).unwrap();
    session(&mut tablet, &mut r.phone);
    rename(&mut tablet, &r.clock, 5, "renamed on the tablet");
    session(&mut tablet, &mut r.phone);
    for n in 0..1_100 {
        tablet
            .edit(person(7, "").id, |c| {
                c.set(Field::Note, format!("note {n}"));
            })
            .unwrap();
    }
    let me = r.phone.id();
    let (noticed, _) = session(&mut r.phone, &mut r.laptop);
    if noticed.taken_back.is_none() {
        let (taken, _) = session(&mut r.phone, &mut r.laptop);
        assert!(taken.taken_back.is_some(), "{taken:?}");
    }
    let (_, settled) = session(&mut r.phone, &mut tablet);
    assert_eq!(settled.settled, vec![me], "{settled:?}");
    for _ in 0..2 {
        session(&mut r.phone, &mut tablet);
        session(&mut r.laptop, &mut tablet);
        session(&mut r.phone, &mut r.laptop);
    }
    for x in [&tablet, &r.phone, &r.laptop] {
        assert_eq!(
            field(x, 5, Field::Given).as_deref(),
            Some("renamed on the tablet")
        );
        assert_eq!(field(x, 7, Field::Note).as_deref(), Some("note 1099"));
    }
    assert_converged(&[&tablet, &r.phone, &r.laptop], &r.laptop);
}

#[test]
fn a_peer_that_recorded_the_fork_takes_the_copies_that_extend_its_chain() {
    // The tablet holds the phone's post-restore branch, the laptop the ops the restore lost;
    // meeting, each records the fork and keeps the other's branch. The phone takes its chain
    // back from the tablet's kept branch and re-issues. Meeting the phone then, the laptop
    // (which holds the lost ops) finds the phone's ops simply continue its chain: it stores
    // them, though it recorded a fork of that chain.
    let mut r = restored(2);
    let mut tablet = r.tablet.take().unwrap();
    write_after_restore(&mut r);
    let me = r.phone.id();
    session(&mut tablet, &mut r.phone);
    session(&mut tablet, &mut r.laptop);
    assert!(r.laptop.forks().unwrap().iter().any(|f| f.author == me));
    for _ in 0..2 {
        session(&mut r.phone, &mut tablet);
    }
    assert!(!r.phone.is_restored().unwrap());
    session(&mut r.phone, &mut r.laptop);
    assert_eq!(r.laptop.summary()[&me], r.phone.summary()[&me]);
    assert_whole(&r);
}

#[test]
fn a_bundle_holding_the_lost_ops_gives_them_back() {
    let mut r = restored(2);
    write_after_restore(&mut r);
    let bundle = r.laptop.export_bundle(None).unwrap();
    let imported = r.phone.import_bundle(&bundle).unwrap();
    assert_eq!(
        imported.received.taken_back,
        Some(TakenBack {
            from_seq: r.backed_up_at + 1,
            recovered: 2,
            reissued: 2
        })
    );
    session(&mut r.phone, &mut r.laptop);
    assert_whole(&r);
}

#[test]
fn a_restore_with_no_writes_since_gets_its_ops_back_by_an_ordinary_sync() {
    let mut r = restored(2);
    let (mine, _) = session(&mut r.phone, &mut r.laptop);
    assert_eq!(mine.taken_back, None);
    assert!(mine.converged);
    assert_eq!(
        field(&r.phone, 1, Field::Note).as_deref(),
        Some("before the disk died")
    );
    assert_eq!(
        r.phone.state_bytes().unwrap(),
        r.laptop.state_bytes().unwrap()
    );
}

/// The peer's edit on top of an op the restore lost, the device having written since: the
/// lost op names the peer's contact, whose op travels in the peer's segment, and that segment
/// waits whole behind the peer's edit, which names the lost op. Neither could go in before the
/// other, so the first session stored nothing of either (not converged; the next one, asking
/// for the whole chain, took them), which the simulator's "a completed session delivers"
/// caught (seed 0xc3587 of `CARDLOG_SIM_BASE=800000`). They now go in together, in the first.
#[test]
fn a_peers_edit_on_top_of_a_lost_op_comes_back_with_it_in_one_session() {
    let tmp = tempfile::tempdir().unwrap();
    let clock = Arc::new(FakeClock::new(NINE_MS));
    let phone_dir = tmp.path().join("phone");
    let mut phone = replica(&phone_dir, &clock);
    let mut laptop = member_of(&mut phone, &tmp.path().join("laptop"), &clock);
    laptop.add_contact(&person(1, "Ada")).unwrap();
    // Backed up before it has the laptop's contact.
    let id = phone.id();
    drop(phone);
    copy_dir(&phone_dir, &tmp.path().join("backup"));
    let mut phone = reopen(&phone_dir, &clock);
    session(&mut phone, &mut laptop);
    clock.advance_ms(60_000);
    // The lost op: the phone's edit of the laptop's contact, which reached the laptop.
    phone
        .edit(person(1, "").id, |c| {
            c.set(Field::Note, "the phone's note");
        })
        .unwrap();
    session(&mut phone, &mut laptop);
    drop(phone);
    restore_in_place(&tmp.path().join("backup"), &phone_dir);
    let mut phone = reopen(&phone_dir, &clock);
    assert_eq!(phone.id(), id);
    // A write after the restore: the phone's chain now forks from what the laptop holds.
    clock.advance_ms(60_000);
    phone.add_contact(&person(5, "After")).unwrap();
    // The laptop's edit on top of it.
    clock.advance_ms(60_000);
    laptop
        .edit(person(1, "").id, |c| {
            c.set(Field::Note, "the laptop's note");
        })
        .unwrap();
    let (mine, _) = session(&mut phone, &mut laptop);
    assert!(mine.converged, "{mine:?}");
    assert_eq!(
        field(&phone, 1, Field::Note).as_deref(),
        Some("the laptop's note")
    );
    assert!(!phone.is_restored().unwrap());
    assert_converged(&[&phone], &laptop);
    // And the phone writes on, reaching the laptop.
    phone.add_contact(&person(9, "Later")).unwrap();
    session(&mut phone, &mut laptop);
    assert_converged(&[&phone], &laptop);
}

#[test]
fn the_relay_holding_the_chain_as_here_does_not_clear_the_claim_of_the_peer_holding_the_lost_op() {
    // The phone's lost edit sits on the laptop only. After the restore the relay takes the
    // phone's new writes; the laptop's hello then shows the lost op (the phone is marked),
    // and before the phone meets the laptop again it syncs with the relay, which holds the
    // chain as the phone does, past the claim. That proves nothing about the laptop's op: the
    // mark stays, and the laptop's next session gives the edit back. (When the relay's word
    // cleared the mark, the laptop's hello marked it again at every meeting and the relay
    // cleared it in between: the edit never came back. Simulator seed 0xc3988 of base 801000.)
    let tmp = tempfile::tempdir().unwrap();
    let clock = Arc::new(FakeClock::new(NINE_MS));
    let phone_dir = tmp.path().join("phone");
    let mut laptop = replica(&tmp.path().join("laptop"), &clock);
    let mut relay = common::relay_of(&mut laptop, &tmp.path().join("relay"), &clock);
    let mut phone = member_of(&mut laptop, &phone_dir, &clock);
    session(&mut relay, &mut laptop);
    phone.add_contact(&person(1, "Ada")).unwrap();
    session(&mut phone, &mut relay);
    let id = phone.id();
    drop(phone);
    copy_dir(&phone_dir, &tmp.path().join("backup"));
    let mut phone = reopen(&phone_dir, &clock);
    clock.advance_ms(60_000);
    phone
        .edit(person(1, "").id, |c| {
            c.set(Field::Note, "before the disk died");
        })
        .unwrap();
    // It reaches the laptop, not the relay.
    session(&mut phone, &mut laptop);
    drop(phone);
    restore_in_place(&tmp.path().join("backup"), &phone_dir);
    let mut phone = reopen(&phone_dir, &clock);
    assert_eq!(phone.id(), id);
    clock.advance_ms(60_000);
    phone.add_contact(&person(5, "After")).unwrap();
    phone.add_contact(&person(6, "After")).unwrap();
    session(&mut phone, &mut relay);
    let (noticed, _) = session(&mut phone, &mut laptop);
    assert!(noticed.restored, "{noticed:?}");
    let (mine, _) = session(&mut phone, &mut relay);
    assert!(mine.taken_back.is_none(), "{mine:?}");
    assert!(
        phone.is_restored().unwrap(),
        "the relay's chain says nothing of the laptop's op"
    );
    let (taken, _) = session(&mut phone, &mut laptop);
    assert!(taken.taken_back.is_some(), "{taken:?}");
    assert_eq!(
        field(&phone, 1, Field::Note).as_deref(),
        Some("before the disk died")
    );
    for _ in 0..2 {
        session(&mut phone, &mut relay);
        session(&mut laptop, &mut relay);
    }
    assert!(!phone.is_restored().unwrap());
    assert_converged(&[&phone, &relay], &laptop);
    assert_eq!(field(&laptop, 5, Field::Given).as_deref(), Some("After"));
}

#[test]
fn a_device_restored_twice_from_one_backup_does_not_take_back_the_branch_it_gave_up() {
    // The phone's lost contact sits on the relay; after the first restore the phone writes
    // another, which reaches the tablet and from it the laptop. The phone takes the lost one
    // back from the relay and re-issues its own after it; the tablet settles. Then the phone
    // is restored again from the same backup: it gets the settled chain from the relay, then
    // meets the laptop, which still holds the branch given up. The phone no longer remembers
    // giving it up, but every op of it has a later copy on its chain: it records the branch
    // as given up instead of taking it back (which would withdraw the settled chain and
    // re-issue it once more, a chain the relay and tablet refuse as swinging back: seed
    // 0xc3916 of base 801000), and the laptop settles.
    let tmp = tempfile::tempdir().unwrap();
    let clock = Arc::new(FakeClock::new(NINE_MS));
    let phone_dir = tmp.path().join("phone");
    let mut laptop = replica(&tmp.path().join("laptop"), &clock);
    let mut relay = common::relay_of(&mut laptop, &tmp.path().join("relay"), &clock);
    let mut phone = member_of(&mut laptop, &phone_dir, &clock);
    let mut tablet = member_of(&mut laptop, &tmp.path().join("tablet"), &clock);
    session(&mut relay, &mut laptop);
    session(&mut tablet, &mut laptop);
    session(&mut phone, &mut relay);
    let id = phone.id();
    let backup = tmp.path().join("backup");
    let mut phone = restored_after_losing_a_contact(phone, &phone_dir, &backup, &mut relay, &clock);
    session(&mut phone, &mut tablet);
    session(&mut laptop, &mut tablet);
    // The relay shows the lost contact; the next session takes it back.
    for _ in 0..2 {
        session(&mut phone, &mut relay);
    }
    assert!(!phone.is_restored().unwrap());
    assert_eq!(field(&phone, 1, Field::Given).as_deref(), Some("Lost"));
    session(&mut tablet, &mut relay);
    assert_converged(&[&phone, &tablet], &relay);
    // Restored again from the same backup.
    let mut phone = reopened(phone, &phone_dir, &clock, || {
        restore_in_place(&backup, &phone_dir)
    });
    assert_eq!(phone.id(), id);
    session(&mut phone, &mut relay);
    assert_converged(&[&phone], &relay);
    for _ in 0..3 {
        session(&mut phone, &mut laptop);
    }
    assert!(!phone.is_restored().unwrap());
    for x in [&phone, &laptop, &tablet] {
        assert_eq!(field(x, 1, Field::Given).as_deref(), Some("Lost"));
        assert_eq!(field(x, 2, Field::Given).as_deref(), Some("After"));
    }
    session(&mut tablet, &mut relay);
    session(&mut laptop, &mut relay);
    assert_converged(&[&phone, &laptop, &tablet], &relay);
}

#[test]
fn a_crash_right_after_the_withdraw_is_finished_by_the_next_session() {
    // A take back withdraws the phone's post-restore ops first; the process dies before the
    // laptop's ops are stored and the withdrawn ones re-issued. The reopened phone is still
    // marked restored, holds its chain up to the backup and verifies; its next session takes
    // the lost ops as an ordinary continuation and re-issues the withdrawn ones.
    let mut r = restored(2);
    write_after_restore(&mut r);
    let dir = r.tmp.path().join("phone");
    let me = r.phone.id();
    let placeholder = replica(&r.tmp.path().join("placeholder"), &r.clock);
    drop(std::mem::replace(&mut r.phone, placeholder));
    {
        let options = cardlog_store::StoreOptions::default();
        let mut store = cardlog_store::Store::open(&dir, &options).unwrap();
        let withdrawn = store.withdraw_own_from(r.backed_up_at + 1).unwrap();
        assert_eq!(withdrawn.ops.len(), 2);
    }
    r.phone = reopen(&dir, &r.clock);
    assert!(r.phone.is_restored().unwrap());
    assert_eq!(r.phone.summary()[&me].seq, r.backed_up_at);
    assert!(r.phone.verify().unwrap().is_ok());
    assert_eq!(
        field(&r.phone, 5, Field::Given),
        None,
        "withdrawn, not yet re-issued"
    );
    let (mine, _) = session(&mut r.phone, &mut r.laptop);
    assert_eq!(
        mine.taken_back,
        Some(TakenBack {
            from_seq: 0,
            recovered: 0,
            reissued: 2
        })
    );
    assert!(mine.converged, "{mine:?}");
    assert_whole(&r);
}

#[test]
fn a_crash_before_the_reissue_list_is_written_writes_no_second_copy() {
    // The re-issued copies are durable one by one, the list of ops to re-issue is written
    // once at the end: a crash in between leaves ops listed whose copies are on the chain.
    // Put the list back as it was after a take back (the same bytes a crash would leave):
    // the next session finds the copies and writes none again.
    let mut r = restored(2);
    write_after_restore(&mut r);
    let (taken, _) = session(&mut r.phone, &mut r.laptop);
    assert_eq!(taken.taken_back.map(|t| t.reissued), Some(2), "{taken:?}");
    let dir = r.tmp.path().join("phone");
    let tip = r.phone.summary()[&r.phone.id()];
    let placeholder = replica(&r.tmp.path().join("placeholder"), &r.clock);
    drop(std::mem::replace(&mut r.phone, placeholder));
    {
        use cardlog_store::keys::meta;
        let options = cardlog_store::StoreOptions::default();
        let mut store = cardlog_store::Store::open(&dir, &options).unwrap();
        let withdrawn = store.meta(meta::WITHDRAWN).unwrap().unwrap();
        assert_eq!(withdrawn.len(), 16, "the two ops the take back withdrew");
        store.put_meta(meta::REISSUE, withdrawn).unwrap();
        store.put_meta(meta::RESTORED, vec![1]).unwrap();
        store.flush().unwrap();
        assert_eq!(store.pending_reissue().unwrap().len(), 2);
    }
    r.phone = reopen(&dir, &r.clock);
    let (again, _) = session(&mut r.phone, &mut r.laptop);
    assert_eq!(again.taken_back.map(|t| t.reissued), Some(0), "{again:?}");
    assert_eq!(r.phone.summary()[&r.phone.id()], tip, "no second copy");
    assert!(!r.phone.is_restored().unwrap());
    assert_whole(&r);
}

#[test]
fn a_device_that_meets_only_a_hub_gets_back_what_a_peer_it_never_meets_held() {
    // The lost ops are on the laptop; after the restore the phone and the laptop each sync
    // only with the tablet (the hub, as a relay would be). The tablet first takes the phone's
    // post-restore branch, then meets the laptop: a fork it cannot settle, so it keeps the
    // laptop's branch aside. At the phone's next session it gives the phone that branch; the
    // phone takes it back and re-issues its own writes, the tablet settles the branch the
    // phone gave up, and the laptop gets the re-issued writes from the tablet. The tablet
    // serves its sessions as `cardlog serve` does, through a shared handle.
    let mut r = restored(2);
    let tablet = Shared::new(r.tablet.take().unwrap());
    write_after_restore(&mut r);
    let me = r.phone.id();
    served(&mut r.phone, &tablet);
    let (_, hub) = served(&mut r.laptop, &tablet);
    assert!(hub.forks.iter().any(|f| f.author == me), "{hub:?}");
    assert!(hub.settled.is_empty());
    let (taken, _) = served(&mut r.phone, &tablet);
    assert_eq!(
        taken.taken_back,
        Some(TakenBack {
            from_seq: r.backed_up_at + 1,
            recovered: 2,
            reissued: 2
        }),
        "{taken:?}"
    );
    let (_, settled) = served(&mut r.phone, &tablet);
    assert_eq!(settled.settled, vec![me], "{settled:?}");
    served(&mut r.laptop, &tablet);
    served(&mut r.phone, &tablet);
    assert_whole(&r);
    let tablet = tablet.lock();
    assert_eq!(
        tablet.state_bytes().unwrap(),
        r.laptop.state_bytes().unwrap()
    );
    assert_eq!(tablet.summary(), r.laptop.summary());
    assert!(tablet.verify().unwrap().is_ok());
}

/// One session, `a` initiating, with a replica served through a shared handle (as `serve`
/// holds it): both sides' reports.
fn served(a: &mut Replica, hub: &Shared<Replica>) -> (SyncReport, SyncReport) {
    let (mut ea, mut eb) = channel_pair(TIMEOUT);
    let mut hub = hub.clone();
    std::thread::scope(|s| {
        let h = s.spawn(move || run(Role::Responder, &mut hub, &mut eb).unwrap());
        let x = run(Role::Initiator, a, &mut ea).unwrap();
        (x, h.join().unwrap())
    })
}

/// Each contact's view, by id (deleted ones too).
fn views(r: &Replica) -> std::collections::BTreeMap<cardlog::ContactId, cardlog::ContactView> {
    r.contacts_with_deleted()
        .unwrap()
        .into_iter()
        .map(|v| (v.contact.id, v))
        .collect()
}

/// The contacts whose views differ between two snapshots (appeared, gone or changed).
fn differing(
    before: &std::collections::BTreeMap<cardlog::ContactId, cardlog::ContactView>,
    after: &std::collections::BTreeMap<cardlog::ContactId, cardlog::ContactView>,
) -> std::collections::BTreeSet<cardlog::ContactId> {
    before
        .keys()
        .chain(after.keys())
        .filter(|id| before.get(id) != after.get(id))
        .copied()
        .collect()
}

#[test]
fn a_take_back_tells_subscribers_every_contact_it_changed() {
    let mut r = restored(2);
    write_after_restore(&mut r);
    let phone_changes = r.phone.subscribe();
    let laptop_changes = r.laptop.subscribe();
    let (phone_before, laptop_before) = (views(&r.phone), views(&r.laptop));
    let (mine, _) = session(&mut r.phone, &mut r.laptop);
    assert!(mine.taken_back.is_some(), "{mine:?}");
    assert_whole(&r);
    for (rx, before, x) in [
        (&phone_changes, &phone_before, &r.phone),
        (&laptop_changes, &laptop_before, &r.laptop),
    ] {
        let changed = differing(before, &views(x));
        let reported: std::collections::BTreeSet<cardlog::ContactId> = rx
            .try_iter()
            .flat_map(|c| c.contacts.into_iter().map(|c| c.contact))
            .collect();
        assert!(!changed.is_empty());
        assert!(
            changed.is_subset(&reported),
            "changed {changed:?}, reported {reported:?}"
        );
    }
    // The note the backup lost came back to the phone, and it was told.
    assert!(differing(&phone_before, &views(&r.phone)).contains(&person(1, "").id));
}

#[test]
fn an_edit_withdrawn_with_a_branch_given_up_comes_back_to_its_author_restored_in_place() {
    // The phone's lost contact sits on the relay. After its restore the phone adds another,
    // which the tablet renames; the tablet is backed up, adds a contact of its own that only
    // the laptop gets, and is restored in place itself: the contact is on the laptop alone.
    // The phone takes its chain back from the relay; the tablet and then the laptop settle
    // the phone's fork through the relay, the laptop withdrawing the tablet's contact with
    // the branch (it built on the tablet's rename). Before, the contact was lost everywhere:
    // only the tablet could re-issue it, and it no longer held it. Now the laptop gives it
    // to the relay, which hands it on to the tablet; the tablet re-issues it and everyone
    // gets it (docs/SYNC.md, "Edits owed back").
    let tmp = tempfile::tempdir().unwrap();
    let clock = Arc::new(FakeClock::new(NINE_MS));
    let mut laptop = replica(&tmp.path().join("laptop"), &clock);
    let mut relay = common::relay_of(&mut laptop, &tmp.path().join("relay"), &clock);
    let phone_dir = tmp.path().join("phone");
    let tablet_dir = tmp.path().join("tablet");
    let mut phone = member_of(&mut laptop, &phone_dir, &clock);
    let mut tablet = member_of(&mut laptop, &tablet_dir, &clock);
    session(&mut relay, &mut laptop);
    session(&mut tablet, &mut relay);
    session(&mut phone, &mut relay);
    let phone_backup = tmp.path().join("phone-backup");
    let mut phone =
        restored_after_losing_a_contact(phone, &phone_dir, &phone_backup, &mut relay, &clock);
    session(&mut phone, &mut tablet);
    rename(&mut tablet, &clock, 2, "After, renamed");
    let tablet_backup = tmp.path().join("tablet-backup");
    let mut tablet = reopened(tablet, &tablet_dir, &clock, || {
        copy_dir(&tablet_dir, &tablet_backup)
    });
    clock.advance_ms(60_000);
    tablet.add_contact(&person(3, "Tablet's own")).unwrap();
    session(&mut laptop, &mut tablet);
    let mut tablet = reopened(tablet, &tablet_dir, &clock, || {
        restore_in_place(&tablet_backup, &tablet_dir)
    });
    assert_eq!(field(&tablet, 3, Field::Given), None, "lost with the disk");
    // Settling, all through the relay.
    for _ in 0..4 {
        session(&mut phone, &mut relay);
        session(&mut tablet, &mut relay);
        session(&mut laptop, &mut relay);
    }
    for x in [&phone, &tablet, &laptop, &relay] {
        assert_eq!(field(x, 1, Field::Given).as_deref(), Some("Lost"));
        assert_eq!(field(x, 2, Field::Given).as_deref(), Some("After, renamed"));
        assert_eq!(field(x, 3, Field::Given).as_deref(), Some("Tablet's own"));
    }
    assert_converged(&[&phone, &tablet, &laptop], &relay);
    assert!(!tablet.is_restored().unwrap());
}

#[test]
fn ops_only_a_withdrawn_edit_proves_come_back_to_their_author_restored_in_place() {
    // Seed 0xc5d8c of the restore schedules, over real stores. The phone's lost contact
    // sits on the relay. After its restore the phone adds another; the tablet, backed up,
    // adds a contact of its own and renames the phone's, the phone gets both, and the tablet
    // is restored in place: both are lost there. When the phone takes its chain back it
    // withdraws the rename (it built on the branch given up), and the tablet's contact below
    // it was proved only by the rename's signature. Before, nobody could pass it on: the
    // phone held it alone, and the replicas never converged. Now the phone sends the tablet
    // the contact and the rename together under that signature (docs/SYNC.md, "Edits owed
    // back"): the tablet stores its contact and re-issues the rename, which names the
    // contact it withdrew when it settled the phone's fork, and everyone gets both.
    let tmp = tempfile::tempdir().unwrap();
    let clock = Arc::new(FakeClock::new(NINE_MS));
    let mut laptop = replica(&tmp.path().join("laptop"), &clock);
    let mut relay = common::relay_of(&mut laptop, &tmp.path().join("relay"), &clock);
    let phone_dir = tmp.path().join("phone");
    let tablet_dir = tmp.path().join("tablet");
    let mut phone = member_of(&mut laptop, &phone_dir, &clock);
    let mut tablet = member_of(&mut laptop, &tablet_dir, &clock);
    session(&mut relay, &mut laptop);
    session(&mut tablet, &mut relay);
    session(&mut phone, &mut relay);
    let phone_backup = tmp.path().join("phone-backup");
    let mut phone =
        restored_after_losing_a_contact(phone, &phone_dir, &phone_backup, &mut relay, &clock);
    session(&mut tablet, &mut phone);
    let tablet_backup = tmp.path().join("tablet-backup");
    let mut tablet = reopened(tablet, &tablet_dir, &clock, || {
        copy_dir(&tablet_dir, &tablet_backup)
    });
    assert!(
        !tablet.summary().contains_key(&tablet.id()),
        "no op of its own yet"
    );
    clock.advance_ms(60_000);
    tablet.add_contact(&person(3, "Tablet's own")).unwrap();
    rename(&mut tablet, &clock, 2, "After, renamed");
    session(&mut phone, &mut tablet);
    let mut tablet = reopened(tablet, &tablet_dir, &clock, || {
        restore_in_place(&tablet_backup, &tablet_dir)
    });
    assert_eq!(field(&tablet, 3, Field::Given), None, "lost with the disk");
    // The phone takes its chain back from the relay, withdrawing the tablet's rename.
    session(&mut phone, &mut relay);
    assert_eq!(field(&phone, 1, Field::Given).as_deref(), Some("Lost"));
    for _ in 0..4 {
        session(&mut tablet, &mut phone);
        session(&mut phone, &mut relay);
        session(&mut tablet, &mut relay);
        session(&mut laptop, &mut relay);
    }
    for x in [&phone, &tablet, &laptop, &relay] {
        assert_eq!(field(x, 1, Field::Given).as_deref(), Some("Lost"));
        assert_eq!(field(x, 2, Field::Given).as_deref(), Some("After, renamed"));
        assert_eq!(field(x, 3, Field::Given).as_deref(), Some("Tablet's own"));
    }
    assert_converged(&[&phone, &tablet, &laptop], &relay);
    // The contact at seq 1 and one copy of the rename at seq 2 (withdrawn everywhere as the
    // original, never stored by the tablet): re-issued once, however many sessions offered it.
    assert_eq!(tablet.summary()[&tablet.id()].seq, 2);
}

/// A removed device's void ops, covered only by the signature of its withdrawn last op, and
/// the tablet's edits naming them (seed 0xc6242 of the restore schedules, over real stores).
/// The phone's lost contact sits on the relay. After its restore the phone adds another (2);
/// with `built_on_branch` the tablet renames it; the desk takes what the tablet holds. The
/// desk is removed from the book (it does not know yet) and writes on, void: a contact of its
/// own (3), a new name for the laptop's contact (4), then a note on the phone's contact. The
/// tablet takes those and renames contacts 3 and 4, naming the desk's void ops. When the
/// phone's fork settles, the desk's note goes with the branch, and the desk's other two ops
/// are covered only by that withdrawn note's signature: the note travels beside them as their
/// cover, to the relay, which never held them, and from it to the laptop (without it, no
/// replica could prove them there). Every replica must end with the tablet's renames, the
/// laptop's name of contact 4 (which the void op had replaced) beside the tablet's as a
/// visible conflict, and the same state.
fn edits_on_void_ops_below_a_withdrawn_op(built_on_branch: bool) {
    let tmp = tempfile::tempdir().unwrap();
    let clock = Arc::new(FakeClock::new(NINE_MS));
    let WithDesk {
        mut laptop,
        mut relay,
        mut phone,
        mut tablet,
        mut desk,
    } = with_a_desk(tmp.path(), &clock);
    session(&mut tablet, &mut phone);
    let given_2 = if built_on_branch {
        rename(&mut tablet, &clock, 2, "After, renamed");
        "After, renamed"
    } else {
        "After"
    };
    session(&mut desk, &mut tablet);
    laptop.remove_member(desk.id()).unwrap();
    clock.advance_ms(60_000);
    desk.add_contact(&person(3, "The desk's, void")).unwrap();
    rename(&mut desk, &clock, 4, "The desk's, void");
    desk.edit(person(2, "").id, |c| {
        c.set(Field::Note, "the desk's, void");
    })
    .unwrap();
    session(&mut tablet, &mut desk);
    rename(&mut tablet, &clock, 3, "Renamed on the tablet");
    rename(&mut tablet, &clock, 4, "Renamed on the tablet");
    let tab = tablet.id();
    let renamed = tablet.summary()[&tab];
    // The removal reaches everyone; the phone takes its chain back from the relay and
    // settles with the tablet.
    session(&mut laptop, &mut relay);
    session(&mut phone, &mut relay);
    assert_eq!(field(&phone, 1, Field::Given).as_deref(), Some("Lost"));
    for _ in 0..3 {
        session(&mut tablet, &mut phone);
        session(&mut tablet, &mut relay);
        session(&mut phone, &mut relay);
        session(&mut laptop, &mut relay);
    }
    if built_on_branch {
        assert_ne!(tablet.summary()[&tab].op, renamed.op, "re-issued");
        assert_eq!(tablet.summary()[&tab].seq, renamed.seq);
    } else {
        assert_eq!(tablet.summary()[&tab], renamed, "kept, not re-issued");
    }
    // Re-issued, the tablet's renames name none of the desk's void ops, and the relay never
    // needs them; kept, they name them, and the ops came to the relay with their cover.
    assert_eq!(
        relay.summary().contains_key(&desk.id()),
        !built_on_branch,
        "the desk's void ops at the relay"
    );
    for x in [&phone, &tablet, &laptop, &relay] {
        assert_eq!(field(x, 1, Field::Given).as_deref(), Some("Lost"));
        assert_eq!(field(x, 2, Field::Given).as_deref(), Some(given_2));
        for n in [3, 4] {
            assert_eq!(
                field(x, n, Field::Given).as_deref(),
                Some("Renamed on the tablet")
            );
        }
        let conflicts = x.conflicts().unwrap();
        assert_eq!(conflicts.len(), 1, "{conflicts:?}");
        assert_eq!(conflicts[0].0, person(4, "").id, "the laptop's name beside");
        assert_eq!(
            x.summary()[&tab],
            tablet.summary()[&tab],
            "the tablet's chain"
        );
        assert!(x.verify().unwrap().is_ok());
        assert_eq!(x.state_bytes().unwrap(), relay.state_bytes().unwrap());
    }
    assert_eq!(
        laptop.summary().get(&desk.id()),
        relay.summary().get(&desk.id()),
        "passed on with their cover"
    );
}

#[test]
fn an_edit_re_issued_over_a_removed_devices_void_edit_stays_in_conflict_with_what_it_replaced() {
    // The phone notes its post-restore contact; the desk, removed, writes over the note (void)
    // and the tablet, not knowing of the removal yet, writes over the desk's. All three go
    // with the phone's branch; the phone and the tablet re-issue theirs, the desk never does.
    // Where the tablet's original was held, the desk's note took no effect and the phone's
    // stayed a head beside the tablet's: a conflict. The tablet's copy keeps it (before, it
    // named what the desk's note replaced, the phone's, and the conflict was gone).
    let tmp = tempfile::tempdir().unwrap();
    let clock = Arc::new(FakeClock::new(NINE_MS));
    let WithDesk {
        mut laptop,
        mut relay,
        mut phone,
        mut tablet,
        mut desk,
    } = with_a_desk(tmp.path(), &clock);
    let note = |x: &mut Replica, text: &str| {
        clock.advance_ms(60_000);
        x.edit(person(2, "").id, |c| {
            c.set(Field::Note, text);
        })
        .unwrap();
    };
    note(&mut phone, "the phone's");
    session(&mut tablet, &mut phone);
    session(&mut desk, &mut tablet);
    laptop.remove_member(desk.id()).unwrap();
    note(&mut desk, "the desk's, void");
    session(&mut tablet, &mut desk);
    note(&mut tablet, "the tablet's");
    session(&mut laptop, &mut relay);
    for _ in 0..3 {
        session(&mut tablet, &mut phone);
        session(&mut tablet, &mut relay);
        session(&mut phone, &mut relay);
        session(&mut laptop, &mut relay);
    }
    for x in [&phone, &tablet, &laptop, &relay] {
        assert_eq!(field(x, 1, Field::Given).as_deref(), Some("Lost"));
        assert_eq!(field(x, 2, Field::Note).as_deref(), Some("the tablet's"));
        let conflicts = x.conflicts().unwrap();
        assert_eq!(conflicts.len(), 1, "{conflicts:?}");
        let (contact, conflict) = &conflicts[0];
        assert_eq!(*contact, person(2, "").id);
        assert_eq!(conflict.path, Path::Field(Field::Note));
        assert_eq!(conflict.alternatives.len(), 1, "{conflict:?}");
        assert_eq!(
            conflict.alternatives[0].value,
            Some(Value::Text("the phone's".into()))
        );
        assert!(x.verify().unwrap().is_ok());
        assert_eq!(x.state_bytes().unwrap(), relay.state_bytes().unwrap());
    }
}

#[test]
fn an_edit_on_a_removed_devices_void_contact_reaches_a_relay_that_never_held_the_contact() {
    // The tablet's renames come after its rename of the phone's contact, which goes with the
    // branch: all three are withdrawn and re-issued. Before, the copies still named the void
    // ops, so they never went in at the relay, nor anything the tablet wrote after them. Now
    // a copy names none for a void op, as the op takes no effect (fails without the change,
    // and with a copy naming what the void op replaced instead, which hid the conflict).
    edits_on_void_ops_below_a_withdrawn_op(true);
}

#[test]
fn an_edit_kept_on_a_removed_devices_void_contact_reaches_a_relay_that_never_held_it() {
    // Without the tablet's rename of the phone's contact, its renames build on nothing given
    // up and are kept as they are, still naming the desk's void ops. Only the signature of
    // the desk's withdrawn note proves those: the tablet sends the note beside them as their
    // cover, the relay stores the void ops (the renames name them) and keeps the note it
    // cannot store, and passes both on to the laptop. Before covers travelled, the relay
    // could store neither, nor anything the tablet wrote after them.
    edits_on_void_ops_below_a_withdrawn_op(false);
}

/// The desk removed after its void ops reached the tablet, which renamed two of them (kept,
/// naming them) and settled the restored phone's fork, withdrawing the desk's note: the only
/// signature proving the desk's void ops is that note's, their cover. The relay holds none of
/// it yet.
fn a_tablet_holding_a_cover(dir: &std::path::Path, clock: &Arc<FakeClock>) -> WithDesk {
    let WithDesk {
        mut laptop,
        mut relay,
        mut phone,
        mut tablet,
        mut desk,
    } = with_a_desk(dir, clock);
    session(&mut tablet, &mut phone);
    session(&mut desk, &mut tablet);
    laptop.remove_member(desk.id()).unwrap();
    clock.advance_ms(60_000);
    desk.add_contact(&person(3, "The desk's, void")).unwrap();
    rename(&mut desk, clock, 4, "The desk's, void");
    desk.edit(person(2, "").id, |c| {
        c.set(Field::Note, "the desk's, void");
    })
    .unwrap();
    session(&mut tablet, &mut desk);
    rename(&mut tablet, clock, 3, "Renamed on the tablet");
    rename(&mut tablet, clock, 4, "Renamed on the tablet");
    // The removal reaches the relay and the phone; the phone takes its chain back from the
    // relay, and the tablet settles the phone's fork, withdrawing the desk's note.
    session(&mut laptop, &mut relay);
    session(&mut phone, &mut relay);
    session(&mut tablet, &mut phone);
    WithDesk {
        laptop,
        relay,
        phone,
        tablet,
        desk,
    }
}

#[test]
fn a_cover_that_does_not_prove_the_removed_devices_ops_stores_none_of_them() {
    // The tablet's renames kept, naming the desk's void ops, whose only proof is the signature
    // of the desk's note withdrawn with the phone's branch (as above); the relay gets the
    // tablet's batch directly, from a member that alters it: the note changed, left out, or
    // one of the void ops below it forged. None of these stores any of the desk's ops, nor the
    // renames naming them; the batch as the tablet holds it stores them all.
    let tmp = tempfile::tempdir().unwrap();
    let clock = Arc::new(FakeClock::new(NINE_MS));
    let WithDesk {
        mut relay,
        tablet,
        desk,
        ..
    } = a_tablet_holding_a_cover(tmp.path(), &clock);
    let d = desk.id();
    let t = tablet.id();
    let theirs = tablet.ops_since(relay.summary()).unwrap();
    let void: Vec<cardlog::SealedOp> = theirs
        .iter()
        .filter(|o| o.op().author == d)
        .cloned()
        .collect();
    let renames: Vec<cardlog::SealedOp> = theirs
        .iter()
        .filter(|o| o.op().author == t)
        .cloned()
        .collect();
    assert_eq!(void.len(), 2, "the desk's void contact and rename");
    assert!(!renames.is_empty());
    let last = void.last().unwrap();
    let (cover, tip) = cardlog::sync_layer::PeerBook::cover(&tablet, &d, last.op().seq, last.id())
        .unwrap()
        .expect("the tablet holds the note as the void ops' cover");
    let renames_tips = tablet.signatures_for(&renames).unwrap();
    let batch = |desks: &[cardlog::SealedOp]| -> Vec<cardlog::SealedOp> {
        desks.iter().chain(&renames).cloned().collect()
    };
    let reseal = |o: &cardlog::SealedOp, given: &str| -> cardlog::SealedOp {
        let mut op = o.op().clone();
        for w in &mut op.writes {
            if w.path == Path::Field(Field::Given) || w.path == Path::Field(Field::Note) {
                w.value = Some(Value::Text(given.into()));
            }
        }
        op.seal_in(o.format()).unwrap()
    };
    let mut tips = vec![tip];
    tips.extend(renames_tips.iter().copied());
    let altered_note = reseal(&cover[0], "not the desk's");
    let forged_rename = reseal(&void[1], "forged");
    let forgeries: Vec<(&str, Vec<cardlog::SealedOp>)> = vec![
        (
            "the note altered",
            batch(&[void.clone(), vec![altered_note]].concat()),
        ),
        ("the note left out", batch(&void)),
        (
            "a void op below it forged",
            batch(&[vec![void[0].clone(), forged_rename], cover.clone()].concat()),
        ),
    ];
    let before = relay.state_bytes().unwrap();
    for (what, ops) in &forgeries {
        // The book refuses it before the store sees it: the signature offered covers no
        // chain through these ops (and the store's own cover takes only a chain linked by id
        // up to the signed op).
        match relay.apply(ops, &tips) {
            Err(cardlog::Error::Refused(cardlog_core::Refusal::Unsigned { author, .. })) => {
                assert_eq!(author, d, "{what}")
            }
            other => panic!("{what}: {other:?}"),
        }
        assert_eq!(relay.summary().get(&d), None, "{what}: no op of the desk's");
        assert_ne!(
            relay.summary().get(&t),
            tablet.summary().get(&t),
            "{what}: the renames naming them wait"
        );
        assert_eq!(relay.state_bytes().unwrap(), before, "{what}");
        assert!(relay.verify().unwrap().is_ok(), "{what}");
    }
    relay
        .apply(&batch(&[void.clone(), cover].concat()), &tips)
        .unwrap();
    assert_eq!(relay.summary().get(&d).map(|h| h.op), Some(last.id()));
    assert_eq!(relay.summary().get(&t), tablet.summary().get(&t));
    assert_eq!(
        field(&relay, 4, Field::Given).as_deref(),
        Some("Renamed on the tablet")
    );
    assert!(relay.verify().unwrap().is_ok());
}

#[test]
fn a_bundle_carries_a_removed_devices_void_ops_with_their_cover() {
    // The tablet's bundle for the relay holds its renames, the desk's void ops they name and,
    // as a session does, the note withdrawn with the phone's branch as their cover.
    let tmp = tempfile::tempdir().unwrap();
    let clock = Arc::new(FakeClock::new(NINE_MS));
    let WithDesk {
        mut relay,
        tablet,
        desk,
        ..
    } = a_tablet_holding_a_cover(tmp.path(), &clock);
    let bundle = tablet.export_bundle_counted(Some(relay.summary())).unwrap();
    // What the bundle holds, as `cardlog export` reports it: the cover counted, by its device.
    assert_eq!((bundle.ops, bundle.authors), (5, 2));
    let received = relay.import_bundle(&bundle.bytes).unwrap().received;
    assert_eq!(received.ops, bundle.ops);
    let applied = received.applied;
    // The renames and the two void ops stored; the note kept as their cover, not stored.
    assert_eq!((applied.stored, applied.missing), (4, 1), "{applied:?}");
    assert!(applied.refused.is_empty(), "{applied:?}");
    let t = tablet.id();
    assert_eq!(relay.summary().get(&t), tablet.summary().get(&t));
    assert_eq!(
        relay.summary().get(&desk.id()).map(|h| h.seq),
        Some(2),
        "the desk's void ops"
    );
    assert_eq!(
        field(&relay, 4, Field::Given).as_deref(),
        Some("Renamed on the tablet")
    );
    assert!(relay.verify().unwrap().is_ok());
}

//! A relay of many address books over TCP on loopback (relay.rs): each book taken on the first
//! session of one of its members once an admin added the relay, devices of each book getting
//! their book's ops only, a book that did not add the relay leaving nothing behind, a
//! non-member refused, and books kept across a reopen.
#![allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::panic)]

mod common;

use std::net::TcpListener;
use std::path::Path as FsPath;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use cardlog::sync_layer::transport::{serve_host, Host, ServeOptions};
use cardlog::{
    AuthError, BookId, DeviceId, Field, MemberRole, Options, Relay, RelayOptions, Replica,
    SyncError, BOOKS_DIR,
};
use cardlog_core::FakeClock;
use common::{member_of, person, replica, NINE_MS, TIMEOUT};

type Outcomes = Arc<Mutex<Vec<Result<(), String>>>>;

/// Serves `relay` on a loopback port for `sessions` sessions: the address, the serving thread
/// and each session's outcome.
fn serve(relay: &Arc<Relay>, sessions: u64) -> (String, JoinHandle<()>, Outcomes) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let outcomes: Outcomes = Arc::default();
    let seen = Arc::clone(&outcomes);
    let relay = Arc::clone(relay);
    let handle = std::thread::spawn(move || {
        let options = ServeOptions {
            sessions: Some(sessions),
            ..ServeOptions::default()
        };
        serve_host(&listener, relay, options, move |_, result| {
            seen.lock()
                .unwrap()
                .push(result.map(|_| ()).map_err(|e| e.to_string()));
        })
        .unwrap();
    });
    (addr, handle, outcomes)
}

/// Waits until the server reported `n` sessions: a client's sync returns when its side is
/// done, a moment before the relay's thread ends the session (and keeps a book it took).
fn reported(outcomes: &Outcomes, n: usize) {
    let deadline = std::time::Instant::now() + TIMEOUT;
    while outcomes.lock().unwrap().len() < n {
        assert!(
            std::time::Instant::now() < deadline,
            "{n} sessions never ended"
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

/// Each book's op log on disk ends with its last record (no zeros written ahead of it).
fn logs_end_at_their_last_record(relay: &Relay, relay_dir: &FsPath, books: &[BookId]) {
    for book in books {
        let log = relay_dir
            .join(BOOKS_DIR)
            .join(book.to_string())
            .join("ops.log");
        let len = std::fs::metadata(&log).unwrap().len();
        assert_eq!(
            len,
            relay.open_book(*book).unwrap().lock().store().log_len()
        );
    }
}

fn relay_options(clock: &Arc<FakeClock>) -> RelayOptions {
    RelayOptions {
        wall: clock.clone(),
        ..RelayOptions::default()
    }
}

/// `device` pairs with the relay at `addr` and syncs with it.
fn sync_with(device: &mut Replica, relay: &Relay, addr: &str) -> Result<(), SyncError> {
    device.pair(relay.id(), Some(addr)).unwrap();
    device.sync_tcp(addr, TIMEOUT).map(|_| ())
}

fn entries(dir: &FsPath) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir.join(BOOKS_DIR))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn a_relay_keeps_many_books_and_each_device_gets_its_own_books_ops_only() {
    let dirs = tempfile::tempdir().unwrap();
    let clock = Arc::new(FakeClock::new(NINE_MS));
    let relay_dir = dirs.path().join("relay");
    let relay = Arc::new(Relay::init(&relay_dir, relay_options(&clock)).unwrap());
    let (addr, server, outcomes) = serve(&relay, 6);

    // Two books, each with an admin and a phone; each admin adds the relay and syncs first.
    let mut admins = Vec::new();
    let mut phones = Vec::new();
    for (n, name) in [(1u8, "Ada"), (2, "Grace")] {
        let mut admin = replica(&dirs.path().join(format!("admin{n}")), &clock);
        admin.add_contact(&person(n, name)).unwrap();
        admin
            .add_member(relay.id(), MemberRole::Relay, "relay")
            .unwrap();
        let phone = member_of(&mut admin, &dirs.path().join(format!("phone{n}")), &clock);
        sync_with(&mut admin, &relay, &addr).unwrap();
        admins.push(admin);
        phones.push(phone);
    }
    reported(&outcomes, 2);
    assert_eq!(relay.books().len(), 2);
    let books: Vec<_> = admins.iter().map(Replica::book).collect();
    // A book kept after its taking rests as after any last session: no zeros ahead of its log.
    logs_end_at_their_last_record(&relay, &relay_dir, &books);
    assert_eq!(relay.books(), {
        let mut b = books.clone();
        b.sort();
        b
    });

    // Each admin edits; each phone gets its own book's edit through the relay, and nothing
    // of the other book.
    for (n, admin) in admins.iter_mut().enumerate() {
        admin
            .edit(cardlog::ContactId([n as u8 + 1; 16]), |c| {
                c.set(Field::Org, "via relay");
            })
            .unwrap();
        sync_with(admin, &relay, &addr).unwrap();
    }
    for (n, phone) in phones.iter_mut().enumerate() {
        sync_with(phone, &relay, &addr).unwrap();
        let contacts = phone.contacts().unwrap();
        assert_eq!(contacts.len(), 1, "phone {n}");
        assert_eq!(contacts[0].contact.get(Field::Org), Some("via relay"));
        assert_eq!(phone.summary(), admins[n].summary());
    }
    server.join().unwrap();
    assert!(
        outcomes.lock().unwrap().iter().all(Result::is_ok),
        "{:?}",
        outcomes.lock().unwrap()
    );

    // The status names both books, their members and the devices the relay met.
    let status = relay.status().unwrap();
    assert_eq!(status.device, relay.id());
    assert_eq!(status.books.len(), 2);
    for book in &status.books {
        assert_eq!((book.members, book.devices, book.authors), (3, 2, 1));
        assert!(book.ops >= 5 && book.bytes > 0, "{book:?}");
    }

    // Open books keep at most the relay's zeros ahead of their op logs on disk (16 KiB, not a
    // device's 1 MiB: a relay keeps many books open), and none once their last session ended:
    // at rest, a book's op log ends with its last record.
    assert_eq!(
        cardlog::RelayOptions::default().log_preallocate_bytes,
        16 << 10
    );
    logs_end_at_their_last_record(&relay, &relay_dir, &books);

    // Kept across a reopen, with what they hold.
    drop(status);
    let relay = Arc::try_unwrap(relay).unwrap();
    drop(relay);
    let reopened = Relay::open(&relay_dir, relay_options(&clock)).unwrap();
    let mut sorted = books.clone();
    sorted.sort();
    assert_eq!(reopened.books(), sorted);
    let kept = reopened.open_book(books[0]).unwrap();
    assert_eq!(kept.lock().summary(), admins[0].summary());
    // A book keeps ops only: its membership is read from its log, its signatures from its
    // journal (no `sigs.log`), and it has no contacts to read.
    assert_eq!(kept.lock().store().keeps(), cardlog::Keeps::OpsOnly);
    for book in reopened.status().unwrap().books {
        assert_eq!(book.members, 3, "{book:?}");
    }
    assert!(matches!(
        kept.lock().contacts(),
        Err(cardlog::Error::Store(cardlog::StoreError::OpsOnly))
    ));
    for book in &books {
        let dir = relay_dir.join(BOOKS_DIR).join(book.to_string());
        assert!(!dir.join("sigs.log").exists());
    }
}

#[test]
fn a_book_that_did_not_add_the_relay_leaves_nothing_and_non_members_are_refused() {
    let dirs = tempfile::tempdir().unwrap();
    let clock = Arc::new(FakeClock::new(NINE_MS));
    let relay_dir = dirs.path().join("relay");
    let relay = Arc::new(Relay::init(&relay_dir, relay_options(&clock)).unwrap());
    let (addr, server, outcomes) = serve(&relay, 4);

    // A device that joined a book and knows no members yet lets its paired relay in, and the
    // relay starts taking the book; the session leaves no membership naming the relay, so
    // the book is dropped, directory and all.
    let stranger = replica(&dirs.path().join("stranger"), &clock);
    let mut joined = Replica::join_with(
        &dirs.path().join("joined"),
        stranger.book(),
        Options {
            wall: clock.clone(),
            ..Options::default()
        },
    )
    .unwrap();
    sync_with(&mut joined, &relay, &addr).unwrap();

    // A book's admin that did not add the relay refuses it before naming the book.
    let mut other = replica(&dirs.path().join("other"), &clock);
    let refused = sync_with(&mut other, &relay, &addr).unwrap_err();
    assert!(
        matches!(refused, SyncError::Auth(AuthError::NotAMember(d)) if d == relay.id()),
        "{refused}"
    );

    // A book the relay keeps refuses a device that is not its member.
    let mut admin = replica(&dirs.path().join("admin"), &clock);
    admin
        .add_member(relay.id(), MemberRole::Relay, "relay")
        .unwrap();
    sync_with(&mut admin, &relay, &addr).unwrap();
    let mut outsider = Replica::join_with(
        &dirs.path().join("outsider"),
        admin.book(),
        Options {
            wall: clock.clone(),
            ..Options::default()
        },
    )
    .unwrap();
    let refused = sync_with(&mut outsider, &relay, &addr).unwrap_err();
    assert!(refused.to_string().contains("is not a member"), "{refused}");
    server.join().unwrap();
    let outcomes = outcomes.lock().unwrap().clone();
    // The stranger's session succeeded (nothing to exchange), the admin's too; the refused
    // admin hung up after message 2, the outsider was refused.
    let ok: Vec<bool> = outcomes.iter().map(Result::is_ok).collect();
    assert_eq!(ok, [true, false, true, false], "{outcomes:?}");
    assert_eq!(relay.books(), vec![admin.book()]);
    assert_eq!(entries(&relay_dir), vec![admin.book().to_string()]);
}

#[test]
fn a_taking_cut_off_by_a_crash_is_removed_at_open() {
    let dirs = tempfile::tempdir().unwrap();
    let clock = Arc::new(FakeClock::new(NINE_MS));
    let relay_dir = dirs.path().join("relay");
    drop(Relay::init(&relay_dir, relay_options(&clock)).unwrap());
    let book = replica(&dirs.path().join("admin"), &clock).book();
    // What a crash during a first session leaves: the book's replica and its taking mark.
    let books = relay_dir.join(BOOKS_DIR);
    drop(Replica::join(&books.join(book.to_string()), book).unwrap());
    std::fs::write(books.join(format!("{book}.taking")), b"").unwrap();
    let relay = Relay::open(&relay_dir, relay_options(&clock)).unwrap();
    assert!(relay.books().is_empty());
    assert!(entries(&relay_dir).is_empty());
    // One process at a time.
    let err = Relay::open(&relay_dir, relay_options(&clock)).unwrap_err();
    assert!(matches!(err, cardlog::OpenError::Locked(_)), "{err}");
    // A directory that is not a relay is refused untouched.
    let err = Relay::open(&dirs.path().join("admin"), relay_options(&clock)).unwrap_err();
    assert!(matches!(err, cardlog::OpenError::NotARelay(_)), "{err}");
}

#[test]
fn one_taking_per_book_a_bounded_number_at_once_and_only_the_taker_decides() {
    let dirs = tempfile::tempdir().unwrap();
    let clock = Arc::new(FakeClock::new(NINE_MS));
    let relay_dir = dirs.path().join("relay");
    let relay = Relay::init(
        &relay_dir,
        RelayOptions {
            max_taking: 2,
            max_books: 3,
            ..relay_options(&clock)
        },
    )
    .unwrap();
    let (a, b, c) = (BookId([1; 16]), BookId([2; 16]), BookId([3; 16]));
    let (p, q) = (DeviceId([7; 16]), DeviceId([8; 16]));
    // A first session takes book a, with a shorter deadline than a member's session; a
    // second naming it meanwhile is told busy.
    assert_eq!(relay.session_timeout(a), None);
    let taking = relay.store_for(a, p).unwrap();
    assert_eq!(
        relay.session_timeout(a),
        Some(std::time::Duration::from_secs(120))
    );
    let busy = relay.store_for(a, q).unwrap_err();
    assert!(
        matches!(busy, SyncError::Auth(AuthError::Taking(x)) if x == a),
        "{busy}"
    );
    // Two takings at once at most: a third book is told busy too.
    drop(relay.store_for(b, q).unwrap());
    let busy = relay.store_for(c, q).unwrap_err();
    assert!(
        matches!(busy, SyncError::Auth(AuthError::Taking(x)) if x == c),
        "{busy}"
    );
    assert!(relay.books().is_empty());
    // Only the taker's session decides: another device's end changes nothing.
    drop(taking);
    relay.ended(a, q, true);
    assert!(relay.store_for(a, q).is_err());
    // The taker's session left no membership naming the relay: the book goes, all of it.
    relay.ended(a, p, true);
    relay.ended(b, q, false);
    assert!(relay.books().is_empty());
    assert!(entries(&relay_dir).is_empty(), "{:?}", entries(&relay_dir));
    // Past the most books (books being taken count), a new book is refused without saying
    // how many there are.
    let full = Relay::init(
        &dirs.path().join("relay2"),
        RelayOptions {
            max_books: 1,
            ..relay_options(&clock)
        },
    )
    .unwrap();
    drop(full.store_for(a, p).unwrap());
    let refused = full.store_for(b, p).unwrap_err();
    assert!(
        matches!(refused, SyncError::Auth(AuthError::BooksFull)),
        "{refused}"
    );
    assert!(!refused.to_string().contains('1'), "{refused}");
}

#[test]
fn books_past_the_most_open_are_closed_when_idle_and_reopened_by_their_next_session() {
    let dirs = tempfile::tempdir().unwrap();
    let clock = Arc::new(FakeClock::new(NINE_MS));
    let relay = Arc::new(
        Relay::init(
            &dirs.path().join("relay"),
            RelayOptions {
                open_books_max: 1,
                ..relay_options(&clock)
            },
        )
        .unwrap(),
    );
    let (addr, server, outcomes) = serve(&relay, 4);
    let mut admins = Vec::new();
    for n in 1..=2u8 {
        let mut admin = replica(&dirs.path().join(format!("admin{n}")), &clock);
        admin
            .add_member(relay.id(), MemberRole::Relay, "relay")
            .unwrap();
        sync_with(&mut admin, &relay, &addr).unwrap();
        admins.push(admin);
    }
    reported(&outcomes, 2);
    // Taking book 2 opened it; book 1, idle, was closed.
    assert_eq!(relay.books().len(), 2);
    let now_open = relay.open_books();
    assert_eq!(now_open, vec![admins[1].book()], "{now_open:?}");
    // Book 1's next session reopens it, with what it held, and book 2 is closed.
    admins[0].add_contact(&person(1, "Ada")).unwrap();
    sync_with(&mut admins[0], &relay, &addr).unwrap();
    reported(&outcomes, 3);
    assert_eq!(relay.open_books(), vec![admins[0].book()]);
    sync_with(&mut admins[1], &relay, &addr).unwrap();
    server.join().unwrap();
    assert!(outcomes.lock().unwrap().iter().all(Result::is_ok));
    let kept = relay.open_book(admins[0].book()).unwrap();
    assert_eq!(kept.lock().summary(), admins[0].summary());
}

/// A host that serves one replica and panics once it has given the store: what a bug in a
/// host or a store does to a session's thread.
struct Panicking {
    store: cardlog::SharedReplica,
    identity: cardlog::sync_layer::Identity,
    ended: Arc<Mutex<Vec<(BookId, DeviceId, bool)>>>,
}

impl Host for Panicking {
    type Store = Replica;

    fn identity(&self) -> cardlog::sync_layer::Identity {
        self.identity.clone()
    }

    fn store_for(
        &self,
        _book: BookId,
        _peer: DeviceId,
    ) -> Result<cardlog::SharedReplica, SyncError> {
        Ok(self.store.clone())
    }

    fn session_timeout(&self, _book: BookId) -> Option<std::time::Duration> {
        panic!("a host bug");
    }

    fn ended(&self, book: BookId, peer: DeviceId, ok: bool) {
        self.ended.lock().unwrap().push((book, peer, ok));
    }
}

#[test]
fn a_session_whose_thread_panics_still_ends_with_its_host() {
    let dirs = tempfile::tempdir().unwrap();
    let clock = Arc::new(FakeClock::new(NINE_MS));
    let mut hub = replica(&dirs.path().join("hub"), &clock);
    let mut phone = member_of(&mut hub, &dirs.path().join("phone"), &clock);
    let identity = cardlog::sync_layer::Identity::new(hub.book(), hub.store().device_key());
    let ended: Arc<Mutex<Vec<(BookId, DeviceId, bool)>>> = Arc::default();
    let host = Arc::new(Panicking {
        store: cardlog::SharedReplica::new(hub),
        identity,
        ended: Arc::clone(&ended),
    });
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let server = std::thread::spawn(move || {
        let options = ServeOptions {
            sessions: Some(1),
            ..ServeOptions::default()
        };
        serve_host(&listener, host, options, |_, _| {}).unwrap();
    });
    // The phone sees the connection go; the relay's host is told the session ended, failed
    // (a relay taking a book decides there whether it keeps it, and frees the book).
    assert!(phone.sync_tcp(&addr, TIMEOUT).is_err());
    server.join().unwrap();
    let ended = ended.lock().unwrap().clone();
    assert_eq!(ended.len(), 1, "{ended:?}");
    assert_eq!((ended[0].1, ended[0].2), (phone.id(), false));
}

#[test]
fn a_books_membership_ops_are_kept_as_places_in_its_log_and_read_back_from_it() {
    let dirs = tempfile::tempdir().unwrap();
    let clock = Arc::new(FakeClock::new(NINE_MS));
    let mut admin = replica(&dirs.path().join("admin"), &clock);
    admin.add_contact(&person(1, "Ada")).unwrap();
    let _phone = member_of(&mut admin, &dirs.path().join("phone"), &clock);
    admin
        .add_member(DeviceId([0x77; 16]), MemberRole::Relay, "relay")
        .unwrap();
    let ops = admin.store().ops_since(&Default::default()).unwrap();
    let ids = |ops: Vec<cardlog_core::SealedOp>| -> Vec<cardlog_core::OpId> {
        let mut ids: Vec<_> = ops.iter().map(cardlog_core::SealedOp::id).collect();
        ids.sort();
        ids
    };
    let members = ids(admin.store().membership_ops().unwrap());
    assert_eq!(members.len(), 3, "founding, the phone, the relay");
    // Up to the phone's admission in one call, settled; the rest (the relay's) in another.
    let last_member = ops.iter().rposition(|op| op.op().is_membership()).unwrap();
    let options = relay_book_options();
    let dir = dirs.path().join("book");
    let mut book = cardlog::Store::create(&dir, &options).unwrap();
    book.set_book(admin.book()).unwrap();
    book.apply_all_strict(&ops[..last_member]).unwrap();
    book.settle().unwrap();
    book.apply_all_strict(&ops[last_member..]).unwrap();
    assert_eq!(ids(book.membership_ops().unwrap()), members);
    // Copied while open, as a killed process leaves it: the relay's admission is in the log's
    // tail, not in the journal. The open replays the tail, reading the membership ops kept
    // before it from the log it is replaying.
    let crashed = dirs.path().join("crashed");
    common::copy_dir(&dir, &crashed);
    drop(book);
    let reopened = cardlog::Store::open(&crashed, &options).unwrap();
    assert!(reopened.recovery().tail_ops > 0, "the tail was replayed");
    assert_eq!(ids(reopened.membership_ops().unwrap()), members);
    assert_eq!(reopened.verify().unwrap().problems, Vec::<String>::new());
    drop(reopened);
    // Each is kept as the offset of its record (8 bytes), not its bytes again.
    for store in [&dir, &crashed] {
        let pairs = cardlog_store::state::JournalKv::read_dir(&store.join("db"))
            .unwrap()
            .pairs;
        let kept: Vec<&Vec<u8>> = pairs
            .iter()
            .filter(|(k, _)| k[0] == b'u')
            .map(|(_, v)| v)
            .collect();
        assert_eq!(kept.len(), 3);
        assert!(kept.iter().all(|v| v.len() == 8), "{kept:?}");
    }
}

#[test]
fn a_books_membership_kept_in_its_log_survives_a_tail_of_many_chunks_a_cut_log_and_repair() {
    let dirs = tempfile::tempdir().unwrap();
    let clock = Arc::new(FakeClock::new(NINE_MS));
    let mut admin = replica(&dirs.path().join("admin"), &clock);
    let _phone = member_of(&mut admin, &dirs.path().join("phone"), &clock);
    admin
        .add_member(DeviceId([0x77; 16]), MemberRole::Relay, "relay")
        .unwrap();
    let ops = admin.store().ops_since(&Default::default()).unwrap();
    let members: Vec<usize> = (0..ops.len())
        .filter(|i| ops[*i].op().is_membership())
        .collect();
    assert_eq!(members.len(), 3, "founding, the phone, the relay");
    assert_eq!(
        members[2],
        ops.len() - 1,
        "the relay's admission comes last"
    );
    // Another device's ops between the phone's admission and the relay's: more than a chunk
    // of the tail's replay, so the two admissions are replayed in different chunks.
    let mut other = cardlog_core::Device::new(DeviceId([0x55; 16]), clock.clone());
    let filler: Vec<cardlog_core::SealedOp> = (0..cardlog_store::log::TAIL_CHUNK_OPS + 2_000)
        .map(|i| {
            let mut id = [0u8; 16];
            id[..8].copy_from_slice(&(i as u64).to_be_bytes());
            other
                .create(&cardlog_core::Contact::new(cardlog::ContactId(id)))
                .unwrap()
        })
        .collect();
    let mut tail: Vec<cardlog_core::SealedOp> = ops[members[0] + 1..=members[1]].to_vec();
    tail.extend(filler);
    tail.extend_from_slice(&ops[members[1] + 1..]);
    let options = relay_book_options();
    let dir = dirs.path().join("book");
    let mut book = cardlog::Store::create(&dir, &options).unwrap();
    book.set_book(admin.book()).unwrap();
    book.apply_all_strict(&ops[..=members[0]]).unwrap();
    book.settle().unwrap();
    // In calls of 1,000 (a commit each), not settled: what a killed relay leaves.
    for call in tail.chunks(1_000) {
        book.apply_all_strict(call).unwrap();
    }
    let ids = |store: &cardlog::Store| -> usize { store.membership_ops().unwrap().len() };
    assert_eq!(ids(&book), 3);
    let crashed = dirs.path().join("crashed");
    common::copy_dir(&dir, &crashed);
    // The original settled: its journal keeps the relay's admission.
    book.settle().unwrap();
    book.flush().unwrap();
    let records_end = book.log_len();
    drop(book);
    let reopened = cardlog::Store::open(&crashed, &options).unwrap();
    assert_eq!(ids(&reopened), 3);
    assert_eq!(reopened.verify().unwrap().problems, Vec::<String>::new());
    drop(reopened);
    // Repair replays the whole log as its tail, a chunk at a time: the second chunk's
    // replay of the relay's admission reads the phone's, kept by the first.
    cardlog::Store::repair(&crashed, &options).unwrap();
    let repaired = cardlog::Store::open(&crashed, &options).unwrap();
    assert_eq!(ids(&repaired), 3);
    assert_eq!(repaired.verify().unwrap().problems, Vec::<String>::new());
    drop(repaired);

    // The log cut inside the relay's admission (a power cut below the state, or a cut file):
    // the book opens read-only under the membership it can read, verify names what is wrong,
    // and repair keeps what the log holds.
    let kept = cardlog_store::state::JournalKv::read_dir(&dir.join("db"))
        .unwrap()
        .pairs;
    let places: Vec<u64> = kept
        .iter()
        .filter(|(k, _)| k[0] == b'u')
        .map(|(_, v)| u64::from_be_bytes(v[..].try_into().unwrap()))
        .collect();
    assert_eq!(places.len(), 3);
    let last = *places.iter().max().unwrap();
    assert!(last < records_end);
    let log = dir.join(cardlog_store::log::LOG_FILE);
    let bytes = std::fs::read(&log).unwrap();
    std::fs::write(&log, &bytes[..last as usize + 5]).unwrap();
    let opened = cardlog::Store::open(&dir, &options).unwrap();
    assert!(opened.is_poisoned());
    assert_eq!(ids(&opened), 2);
    assert!(!opened.verify().unwrap().problems.is_empty());
    drop(opened);
    cardlog::Store::repair(&dir, &options).unwrap();
    let repaired = cardlog::Store::open(&dir, &options).unwrap();
    assert!(!repaired.is_poisoned());
    assert_eq!(ids(&repaired), 2);
    assert_eq!(repaired.verify().unwrap().problems, Vec::<String>::new());
}

/// A store as a relay creates its books: in a journal, keeping ops only.
fn relay_book_options() -> cardlog_store::StoreOptions {
    cardlog_store::StoreOptions {
        database: cardlog::Database::Journal,
        keeps: cardlog::Keeps::OpsOnly,
        ..Default::default()
    }
}

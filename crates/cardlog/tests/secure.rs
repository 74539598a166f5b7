//! Encrypted, mutually authenticated sessions over real TCP (issue "Trust II"), seen from a
//! proxy in the middle that records and tampers: what crosses the wire carries no contact
//! data; a relay with the wrong key, a non-member, a read-only member that pushes and a
//! spoofed relay with a clock ten years ahead are each refused at the point the design says,
//! with the error named; a flipped, dropped, reordered or replayed message ends the session
//! and nothing of it is applied.
#![allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    clippy::panic,
    clippy::expect_used
)]

mod common;

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cardlog::sync_layer::secure::Expect;
use cardlog::sync_layer::secure::{Handshake, Identity};
use cardlog::sync_layer::transport::{
    self, channel_pair, run, serve, Retry, ServeOptions, Shared, Transport,
};
use cardlog::sync_layer::wire::message::{self, Message};
use cardlog::sync_layer::wire::segment;
use cardlog::{
    AuthError, Contact, ContactId, Field, HandshakeError, MemberRole, Options, Replica, Role,
    SyncError, SyncReport,
};
use cardlog_core::{FakeClock, ItemKind};
use common::{member_of, replica, NINE_MS};

const TIMEOUT: Duration = Duration::from_secs(5);
/// Strings that must never cross the wire in the clear.
const SECRETS: [&str; 5] = [
    "Zanzibar",
    "Quillfeather",
    "+442079460123",
    "ada.secret@example.org",
    "meet at the observatory",
];

fn secret_contact(n: u8) -> Contact {
    let mut c = Contact::new(ContactId([n; 16]));
    c.set(Field::Given, SECRETS[0]);
    c.set(Field::Family, SECRETS[1]);
    c.set(Field::Note, SECRETS[4]);
    c.add_text_item(ItemKind::Phone, "mobile", SECRETS[2])
        .unwrap();
    c.add_text_item(ItemKind::Email, "home", SECRETS[3])
        .unwrap();
    c
}

/// What a sync message or bundle shows whoever reads it: its bytes, and the plain form of the
/// segments it carries (they may travel compressed, which hides nothing).
fn readable(message: &[u8]) -> Vec<u8> {
    let mut out = message.to_vec();
    if let Ok(Message::Ops { segments, .. } | Message::Bundle { segments, .. }) =
        message::decode(message)
    {
        out.extend_from_slice(&segment::plain(&segments).unwrap());
    }
    out
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

// ---- a served replica and a proxy -------------------------------------------------------

/// A replica served for one session on loopback: its address, and a handle giving back the
/// replica and the session's outcome.
struct Served {
    addr: String,
    handle: std::thread::JoinHandle<(Replica, Result<SyncReport, SyncError>)>,
}

fn serve_once(r: Replica, chunk_ops: usize) -> Served {
    serve_sessions(r, chunk_ops, 1)
}

/// [`serve_once`] for `n` sessions; `finish` gives the last one's outcome.
fn serve_sessions(r: Replica, chunk_ops: usize, n: u64) -> Served {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let handle = std::thread::spawn(move || {
        let shared = Shared::new(r);
        let outcome = Arc::new(Mutex::new(None));
        let o = Arc::clone(&outcome);
        serve(
            &listener,
            shared.clone(),
            ServeOptions {
                timeout: TIMEOUT,
                sessions: Some(n),
                chunk_ops,
                ..ServeOptions::default()
            },
            move |_, result| *o.lock().unwrap() = Some(result),
        )
        .unwrap();
        let result = outcome.lock().unwrap().take().unwrap();
        let r = shared.into_inner().ok().unwrap();
        (r, result)
    });
    Served { addr, handle }
}

impl Served {
    fn finish(self) -> (Replica, Result<SyncReport, SyncError>) {
        self.handle.join().unwrap()
    }
}

/// Each ended session's outcome, in the order they end (the error's text when it failed).
type Outcomes = Arc<Mutex<Vec<Result<(), String>>>>;

/// Serves `shared` on loopback on a thread until `options.sessions` have ended: the address,
/// the thread, and the sessions' outcomes as they end.
fn serve_shared(
    shared: &Shared<Replica>,
    options: ServeOptions,
) -> (String, std::thread::JoinHandle<()>, Outcomes) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let outcomes: Outcomes = Arc::default();
    let (shared, o) = (shared.clone(), Arc::clone(&outcomes));
    let handle = std::thread::spawn(move || {
        serve(&listener, shared, options, move |_, result| {
            o.lock()
                .unwrap()
                .push(result.map(|_| ()).map_err(|e| e.to_string()));
        })
        .unwrap();
    });
    (addr, handle, outcomes)
}

/// A hub to serve and a member phone holding one contact the hub lacks (contact 1).
fn hub_and_phone(dir: &std::path::Path) -> (Shared<Replica>, Replica) {
    let clock = Arc::new(FakeClock::new(NINE_MS));
    let mut hub = replica(&dir.join("hub"), &clock);
    let mut phone = member_of(&mut hub, &dir.join("phone"), &clock);
    phone.add_contact(&secret_contact(1)).unwrap();
    (Shared::new(hub), phone)
}

/// Which way a frame travels through the proxy.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Way {
    /// Client to server.
    Up,
    /// Server to client.
    Down,
}

/// What the proxy does with the frames of one direction: given the frame's index in that
/// direction (from 0) and its bytes, the frames to pass on now.
type Rule = Box<dyn FnMut(usize, Vec<u8>) -> Vec<Vec<u8>> + Send>;

fn pass() -> Rule {
    Box::new(|_, f| vec![f])
}

/// Every frame a proxy saw, with its direction.
type Seen = Arc<Mutex<Vec<(Way, Vec<u8>)>>>;

/// A proxy for one connection to `server`: its address, and every frame it saw, by direction
/// (as received, before its rule).
struct Proxy {
    addr: String,
    seen: Seen,
}

impl Proxy {
    fn new(server: &str, up: Rule, down: Rule) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let server = server.to_owned();
        let s = Arc::clone(&seen);
        std::thread::spawn(move || {
            let (client, _) = listener.accept().unwrap();
            let upstream = TcpStream::connect(&server).unwrap();
            let (c2, u2) = (client.try_clone().unwrap(), upstream.try_clone().unwrap());
            let s2 = Arc::clone(&s);
            let a = std::thread::spawn(move || relay_frames(client, upstream, Way::Up, up, &s));
            let b = std::thread::spawn(move || relay_frames(u2, c2, Way::Down, down, &s2));
            let _ = (a.join(), b.join());
        });
        Self { addr, seen }
    }

    fn frames(&self, way: Way) -> Vec<Vec<u8>> {
        let seen = self.seen.lock().unwrap();
        seen.iter()
            .filter(|(w, _)| *w == way)
            .map(|(_, f)| f.clone())
            .collect()
    }

    fn bytes(&self) -> Vec<u8> {
        let seen = self.seen.lock().unwrap();
        seen.iter().flat_map(|(_, f)| f.clone()).collect()
    }
}

fn relay_frames(
    mut from: TcpStream,
    mut to: TcpStream,
    way: Way,
    mut rule: Rule,
    seen: &Mutex<Vec<(Way, Vec<u8>)>>,
) {
    let mut index = 0;
    while let Some(frame) = read_frame(&mut from) {
        seen.lock().unwrap().push((way, frame.clone()));
        for out in rule(index, frame) {
            if to.write_all(&framed(&out)).is_err() {
                return;
            }
        }
        index += 1;
    }
    let _ = to.shutdown(Shutdown::Write);
}

fn framed(bytes: &[u8]) -> Vec<u8> {
    let mut out = (bytes.len() as u32).to_be_bytes().to_vec();
    out.extend_from_slice(bytes);
    out
}

fn read_frame(s: &mut TcpStream) -> Option<Vec<u8>> {
    let mut len = [0u8; 4];
    s.read_exact(&mut len).ok()?;
    let mut body = vec![0u8; u32::from_be_bytes(len) as usize];
    s.read_exact(&mut body).ok()?;
    Some(body)
}

// ---- a small book -----------------------------------------------------------------------

struct Book {
    _tmp: tempfile::TempDir,
    clock: Arc<FakeClock>,
    admin: Replica,
    phone: Replica,
}

fn book() -> Book {
    let tmp = tempfile::tempdir().unwrap();
    let clock = Arc::new(FakeClock::new(NINE_MS));
    let mut admin = replica(&tmp.path().join("admin"), &clock);
    let phone = member_of(&mut admin, &tmp.path().join("phone"), &clock);
    Book {
        _tmp: tmp,
        clock,
        admin,
        phone,
    }
}

fn joined(b: &Book, name: &str, clock: &Arc<FakeClock>) -> Replica {
    Replica::join_with(
        &b._tmp.path().join(name),
        b.admin.book(),
        Options {
            wall: clock.clone(),
            ..Options::default()
        },
    )
    .unwrap()
}

// ---- what crosses the wire --------------------------------------------------------------

#[test]
fn a_captured_session_carries_none_of_the_contact_strings() {
    let mut b = book();
    for n in 1..=3 {
        b.admin.add_contact(&secret_contact(n)).unwrap();
        b.phone.add_contact(&secret_contact(100 + n)).unwrap();
    }
    // The same session in the clear (in process) carries every string: the check below can
    // fail.
    {
        let tmp = tempfile::tempdir().unwrap();
        let mut admin_copy = replica(&tmp.path().join("x"), &b.clock);
        admin_copy.add_contact(&secret_contact(7)).unwrap();
        let (ea, mut eb) = channel_pair(TIMEOUT);
        let seen = Arc::new(Mutex::new(Vec::new()));
        struct Tap<T>(T, Arc<Mutex<Vec<u8>>>);
        impl<T: Transport> Transport for Tap<T> {
            fn send(&mut self, bytes: Vec<u8>) -> Result<(), cardlog::TransportError> {
                self.1.lock().unwrap().extend_from_slice(&readable(&bytes));
                self.0.send(bytes)
            }
            fn recv(&mut self) -> Result<Vec<u8>, cardlog::TransportError> {
                self.0.recv()
            }
        }
        let mut tapped = Tap(ea, Arc::clone(&seen));
        let fresh_dir = tmp.path().join("y");
        let mut fresh = Replica::join(&fresh_dir, admin_copy.book()).unwrap();
        std::thread::scope(|s| {
            s.spawn(|| run(Role::Responder, &mut fresh, &mut eb));
            let _ = run(Role::Initiator, &mut admin_copy, &mut tapped);
        });
        let clear = seen.lock().unwrap();
        // The messages' and segments' magic is in the clear whether the ops travel
        // compressed or not: the wire check below for it cannot pass by compression alone.
        assert!(contains(&clear, "CLSY") && contains(&clear, "CLSG"));
        for secret in SECRETS {
            assert!(
                contains(&clear, secret),
                "{secret} not in the clear session"
            );
        }
    }

    // A bundle is readable by whoever holds the file, as docs/SECURITY.md ("Bundles") and
    // `cardlog export --help` say.
    let bundle = readable(&b.admin.export_bundle(None).unwrap());
    for secret in SECRETS {
        assert!(
            contains(&bundle, secret),
            "{secret} not readable in a bundle"
        );
    }

    let served = serve_once(b.admin, 2);
    let proxy = Proxy::new(&served.addr, pass(), pass());
    let report = b.phone.sync_tcp(&proxy.addr, TIMEOUT).unwrap();
    let (admin, result) = served.finish();
    let theirs = result.unwrap();
    assert!(report.converged && theirs.converged, "{report:?}");
    assert_eq!(report.stored, 3);
    assert_eq!(
        admin.state_digest().unwrap(),
        b.phone.state_digest().unwrap()
    );
    let wire = proxy.bytes();
    for magic in ["CLSY", "CLSG"] {
        assert!(
            !contains(&wire, magic),
            "{magic} crossed the wire in the clear"
        );
    }
    for secret in SECRETS {
        assert!(
            !contains(&wire, secret),
            "{secret} crossed the wire in the clear"
        );
    }
    // Nor does any device id (they travel inside the encryption too).
    for id in [admin.id(), b.phone.id()] {
        assert!(
            !wire.windows(16).any(|w| w == id.0),
            "device id {id} in the clear"
        );
    }
    // The report counts what crossed the wire, handshake included.
    let up: usize = proxy.frames(Way::Up).iter().map(Vec::len).sum();
    assert_eq!(report.bytes_sent as usize, up);
    assert_eq!(report.handshake_bytes, 53 + 192 + 160);
}

// ---- who may connect --------------------------------------------------------------------

#[test]
fn a_client_pointed_at_a_relay_with_the_wrong_key_refuses_before_sending_anything() {
    let mut b = book();
    b.admin.add_contact(&secret_contact(1)).unwrap();
    b.phone.pull_from(&b.admin).unwrap();
    // The phone is paired with the admin's replica as its relay; another member (a genuine
    // one: the check is of the key, not of membership) answers at that address.
    let impostor = member_of(&mut b.admin, &b._tmp.path().join("impostor"), &b.clock);
    let impostor_id = impostor.id();
    let served = serve_once(impostor, 1024);
    let proxy = Proxy::new(&served.addr, pass(), pass());
    b.phone.pair(b.admin.id(), Some(&proxy.addr)).unwrap();
    let before = b.phone.summary().clone();
    // One attempt: the handshake is addressed to the admin's device, so the impostor cannot
    // take message 1 (it answers as a device of the book only to its own id).
    let mut transport = transport::TcpTransport::connect(&proxy.addr, TIMEOUT).unwrap();
    let err = transport::run_secure(
        Role::Initiator,
        &mut b.phone,
        &mut transport,
        Expect::Device(b.admin.id()),
    )
    .unwrap_err();
    drop(transport);
    assert!(
        matches!(&err, SyncError::Auth(AuthError::NotReached { expected, .. })
            if *expected == b.admin.id()),
        "{err:?}"
    );
    assert!(
        err.to_string().starts_with(&format!(
            "relay key mismatch: expected {}, but",
            b.admin.id()
        )),
        "{err}"
    );
    // All the phone sent: message 1 of the handshake, an ephemeral key.
    let up = proxy.frames(Way::Up);
    assert_eq!(up.len(), 1, "{up:?}");
    assert_eq!(up[0].len(), 53);
    assert_eq!(&up[0][..4], b"CLNX");
    let (impostor, result) = served.finish();
    assert!(
        matches!(
            result,
            Err(SyncError::Handshake(cardlog::HandshakeError::Decrypt(1)))
        ),
        "{result:?}"
    );
    assert_eq!(
        impostor.peers().unwrap(),
        vec![],
        "the impostor learned nothing of the phone"
    );
    // A whole sync falls back to a handshake of the book (what a cardlog from before
    // addressed handshakes answers), where the impostor answers message 2 and is named by its
    // key, before the phone sends its identity.
    let impostor = Shared::new(impostor);
    let (addr, _server, outcomes) = serve_shared(
        &impostor,
        ServeOptions {
            timeout: TIMEOUT,
            sessions: Some(2),
            ..ServeOptions::default()
        },
    );
    b.phone.pair(b.admin.id(), Some(&addr)).unwrap();
    let err = b.phone.sync_paired(TIMEOUT).unwrap_err();
    assert!(
        matches!(err, SyncError::Auth(AuthError::RelayMismatch { expected, got })
            if expected == b.admin.id() && got == impostor_id),
        "{err:?}"
    );
    assert!(
        err.to_string().starts_with("relay key mismatch: expected "),
        "{err}"
    );
    let deadline = std::time::Instant::now() + TIMEOUT;
    while outcomes.lock().unwrap().len() < 2 {
        assert!(std::time::Instant::now() < deadline);
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(impostor.lock().peers().unwrap().is_empty());
    assert_eq!(b.phone.summary(), &before);
    assert!(b.phone.last_calibration().unwrap().is_none());
}

#[test]
fn a_non_member_is_refused_before_it_receives_anything_of_the_book() {
    let mut b = book();
    b.admin.add_contact(&secret_contact(1)).unwrap();
    // It joined the book and paired with the admin (so it proceeds), but no admin added it.
    let mut stranger = joined(&b, "stranger", &b.clock);
    stranger.pair(b.admin.id(), None).unwrap();
    let admin_summary = b.admin.summary().clone();
    let served = serve_once(b.admin, 1024);
    let proxy = Proxy::new(&served.addr, pass(), pass());
    let err = stranger.sync_tcp(&proxy.addr, TIMEOUT).unwrap_err();
    let (admin, result) = served.finish();
    assert!(
        matches!(&result, Err(SyncError::Auth(AuthError::NotAMember(d))) if *d == stranger.id()),
        "{result:?}"
    );
    let expected = format!(
        "peer {} is not a member of this address book",
        stranger.id()
    );
    assert!(
        matches!(&err, SyncError::PeerAborted(why) if *why == expected),
        "{err:?}"
    );
    // What it received: message 2 of the handshake, then one sealed abort; no summary, no op.
    let down = proxy.frames(Way::Down);
    assert_eq!(down.len(), 2, "{down:?}");
    assert_eq!(down[0].len(), 192);
    assert!(down[1].len() < 200, "{}", down[1].len());
    assert_eq!(stranger.op_count(), 0);
    assert_eq!(
        admin.summary(),
        &admin_summary,
        "the stranger's hello was never read"
    );
    assert!(admin.peers().unwrap().is_empty());
}

#[test]
fn a_read_only_member_pulls_but_its_push_is_refused_and_nothing_is_stored() {
    let mut b = book();
    let mut reader = joined(&b, "reader", &b.clock);
    b.admin
        .add_member(reader.id(), MemberRole::Read, "kiosk")
        .unwrap();
    b.admin.add_contact(&secret_contact(1)).unwrap();
    reader.pull_from(&b.admin).unwrap();
    // The phone writes; the reader takes it in (in process), the admin has not seen it.
    b.phone.pull_from(&b.admin).unwrap();
    b.phone.add_contact(&secret_contact(2)).unwrap();
    reader.pull_from(&b.phone).unwrap();
    let phone_op = b.phone.summary()[&b.phone.id()].op;
    assert!(b.admin.op(&phone_op).unwrap().is_none());

    // An honest reader pulls and sends nothing.
    b.admin.add_contact(&secret_contact(3)).unwrap();
    let served = serve_once(b.admin, 1024);
    let report = reader.sync_tcp(&served.addr, TIMEOUT).unwrap();
    let (admin, result) = served.finish();
    result.unwrap();
    assert_eq!((report.sent_ops, report.stored), (0, 1), "{report:?}");
    assert!(admin.op(&phone_op).unwrap().is_none());

    // A reader that pushes anyway (the protocol by hand): refused, nothing stored.
    let before = admin.summary().clone();
    let digest = admin.state_digest().unwrap();
    let served = serve_once(admin, 1024);
    let identity = Identity::new(reader.book(), reader.store().device_key());
    let mut s = TcpStream::connect(&served.addr).unwrap();
    let (mut handshake, m1) = Handshake::initiate(&identity).unwrap();
    s.write_all(&framed(&m1)).unwrap();
    handshake.read_reply(&read_frame(&mut s).unwrap()).unwrap();
    let (m3, mut channel) = handshake.finish(&identity).unwrap();
    s.write_all(&framed(&m3)).unwrap();
    let hello = message::encode(&Message::Hello {
        replica: reader.id(),
        wall_ms: NINE_MS,
        summary: before.clone(),
    });
    s.write_all(&framed(&channel.seal(&hello).unwrap()))
        .unwrap();
    loop {
        let bytes = channel.open(&read_frame(&mut s).unwrap()).unwrap();
        if let Message::Ops { last: true, .. } = message::decode(&bytes).unwrap() {
            break;
        }
    }
    let segments = match message::decode(&reader.export_bundle(Some(&before)).unwrap()).unwrap() {
        Message::Bundle { segments, .. } => segments,
        other => panic!("{other:?}"),
    };
    let push = message::encode(&Message::Ops {
        last: true,
        forks: vec![],
        segments,
    });
    s.write_all(&framed(&channel.seal(&push).unwrap())).unwrap();
    let answer = message::decode(&channel.open(&read_frame(&mut s).unwrap()).unwrap()).unwrap();
    assert!(
        matches!(&answer, Message::Abort { reason } if reason.contains("read-only member")),
        "{answer:?}"
    );
    let (admin, result) = served.finish();
    assert!(
        matches!(result, Err(SyncError::Auth(AuthError::ReadOnlyPush(d))) if d == reader.id()),
        "{result:?}"
    );
    assert_eq!(admin.summary(), &before);
    assert_eq!(admin.state_digest().unwrap(), digest);
    assert!(admin.op(&phone_op).unwrap().is_none());
}

#[test]
fn a_spoofed_relay_cannot_move_a_clients_clock() {
    let mut b = book();
    // A device ten years ahead that knows the book's id (it is no secret) but is no member.
    let ahead = Arc::new(FakeClock::new(NINE_MS + 10 * 365 * 86_400_000));
    let mut spoof = joined(&b, "spoof", &ahead);
    spoof.pair(b.phone.id(), None).unwrap();
    let served = serve_once(spoof, 1024);
    let err = b.phone.sync_tcp(&served.addr, TIMEOUT).unwrap_err();
    assert!(
        matches!(err, SyncError::Auth(AuthError::NotAMember(_))),
        "{err:?}"
    );
    let _ = served.finish();
    // Paired with the spoof's address as its relay, the phone refuses it by key as well.
    // (Two connections: the addressed handshake, which the spoof cannot read, then the
    // handshake of the book, where its key shows.)
    let spoof = Replica::open(&b._tmp.path().join("spoof")).unwrap();
    let served = serve_sessions(spoof, 1024, 2);
    b.phone.pair(b.admin.id(), Some(&served.addr)).unwrap();
    let err = b.phone.sync_paired(TIMEOUT).unwrap_err();
    assert!(
        matches!(err, SyncError::Auth(AuthError::RelayMismatch { .. })),
        "{err:?}"
    );
    let (spoof, _) = served.finish();
    // Paired with the spoof itself (its id typed in by mistake or by trickery), the phone,
    // which knows its book's members, still refuses it: a pairing admits a non-member only
    // while a replica knows no members.
    let spoof_id = spoof.id();
    let served = serve_once(spoof, 1024);
    b.phone.pair(spoof_id, Some(&served.addr)).unwrap();
    let err = b.phone.sync_paired(TIMEOUT).unwrap_err();
    assert!(
        matches!(err, SyncError::Auth(AuthError::NotAMember(d)) if d == spoof_id),
        "{err:?}"
    );
    let _ = served.finish();
    assert!(b.phone.last_calibration().unwrap().is_none());
    assert_eq!(b.phone.clock().offset_ms(), 0);
    let op = b.phone.add_contact(&secret_contact(9)).unwrap();
    let hlc = b.phone.op(&op).unwrap().unwrap().op().hlc;
    assert!(hlc.wall_ms < NINE_MS + 60_000, "{hlc:?}");
    // A writer's served replica passes the checks but is no time reference: no calibration.
    b.clock.set_ms(NINE_MS + 120_000);
    let relay_clock = Arc::new(FakeClock::new(NINE_MS + 180_000));
    let mut relay = joined(&b, "relay", &relay_clock);
    b.admin
        .add_member(relay.id(), cardlog::MemberRole::Relay, "relay")
        .unwrap();
    relay.pull_from(&b.admin).unwrap();
    let served = serve_once(b.admin, 1024);
    let report = b.phone.sync_tcp(&served.addr, TIMEOUT).unwrap();
    served.finish().1.unwrap();
    assert_eq!(report.calibration, None, "{report:?}");
    // The book's relay does calibrate it (the clock is taken only after the checks).
    let served = serve_once(relay, 1024);
    let report = b.phone.sync_tcp(&served.addr, TIMEOUT).unwrap();
    served.finish().1.unwrap();
    assert!(report.calibration.is_some(), "{report:?}");
}

#[test]
fn an_unencrypted_peer_is_told_to_upgrade_and_gets_nothing() {
    let mut b = book();
    b.admin.add_contact(&secret_contact(1)).unwrap();
    let served = serve_once(b.admin, 1024);
    // An older cardlog's first message: a hello in the clear.
    let mut s = TcpStream::connect(&served.addr).unwrap();
    let hello = message::encode(&Message::Hello {
        replica: b.phone.id(),
        wall_ms: NINE_MS,
        summary: Default::default(),
    });
    s.write_all(&framed(&hello)).unwrap();
    let answer = message::decode(&read_frame(&mut s).unwrap()).unwrap();
    assert!(
        matches!(&answer, Message::Abort { reason } if reason.contains("upgrade cardlog")),
        "{answer:?}"
    );
    assert!(read_frame(&mut s).is_none(), "nothing more");
    let (_, result) = served.finish();
    assert!(
        matches!(
            result,
            Err(SyncError::Handshake(HandshakeError::Unencrypted))
        ),
        "{result:?}"
    );
}

// ---- tampering in flight ----------------------------------------------------------------

/// A book where the admin holds 6 saves the phone lacks, served 1 op per message, and the
/// phone syncs through a proxy with `down` applied to what the admin sends: the phone's
/// error, and both replicas afterwards.
fn tampered(down: Rule) -> (SyncError, Result<SyncReport, SyncError>, Replica, Replica) {
    let mut b = book();
    for n in 1..=6 {
        b.admin.add_contact(&secret_contact(n)).unwrap();
    }
    let phone_before = b.phone.op_count();
    let served = serve_once(b.admin, 1);
    let proxy = Proxy::new(&served.addr, pass(), down);
    let err = b.phone.sync_tcp(&proxy.addr, TIMEOUT).unwrap_err();
    let (admin, result) = served.finish();
    // Nothing of a tampered message is applied: each whole message before it carried one op
    // adding one contact, and the phone holds exactly those ops beyond its own.
    assert!(b.phone.verify().unwrap().is_ok());
    assert_eq!(
        b.phone.op_count(),
        phone_before + b.phone.contacts().unwrap().len() as u64
    );
    (err, result, b.phone, admin)
}

#[test]
fn a_flipped_byte_in_flight_ends_the_session_and_nothing_of_it_is_applied() {
    // Frames down: m2, hello, then one Ops message per op. Flip a byte in the first Ops.
    let (err, result, phone, _) = tampered(Box::new(|i, mut f| {
        if i == 2 {
            let n = f.len() / 2;
            f[n] ^= 0x01;
        }
        vec![f]
    }));
    assert!(matches!(err, SyncError::Tampered(2)), "{err:?}");
    assert!(
        err.to_string()
            .contains("altered, dropped, reordered or replayed"),
        "{err}"
    );
    assert!(result.is_err(), "{result:?}");
    assert_eq!(
        phone.contacts().unwrap().len(),
        0,
        "no op of the tampered message"
    );
}

#[test]
fn a_dropped_message_ends_the_session() {
    let (err, result, phone, _) = tampered(Box::new(|i, f| if i == 3 { vec![] } else { vec![f] }));
    // The hello (1) and first Ops (2) opened; the frame after the dropped one fails as 3.
    assert!(matches!(err, SyncError::Tampered(3)), "{err:?}");
    assert!(result.is_err());
    assert_eq!(
        phone.contacts().unwrap().len(),
        1,
        "only the whole message before it"
    );
}

#[test]
fn reordered_messages_end_the_session() {
    let mut held = None;
    let (err, result, phone, _) = tampered(Box::new(move |i, f| match i {
        2 => {
            held = Some(f);
            vec![]
        }
        3 => vec![f, held.take().unwrap()],
        _ => vec![f],
    }));
    assert!(matches!(err, SyncError::Tampered(2)), "{err:?}");
    assert!(result.is_err());
    assert_eq!(phone.contacts().unwrap().len(), 0);
}

#[test]
fn a_replayed_message_ends_the_session() {
    let mut first = None;
    let (err, _, phone, _) = tampered(Box::new(move |i, f| match i {
        2 => {
            first = Some(f.clone());
            vec![f]
        }
        3 => vec![first.take().unwrap()],
        _ => vec![f],
    }));
    assert!(matches!(err, SyncError::Tampered(3)), "{err:?}");
    assert_eq!(phone.contacts().unwrap().len(), 1);
}

#[test]
fn a_recorded_session_replayed_to_the_server_is_refused_at_the_handshake() {
    let mut b = book();
    b.phone.add_contact(&secret_contact(1)).unwrap();
    let served = serve_once(b.admin, 1024);
    let proxy = Proxy::new(&served.addr, pass(), pass());
    b.phone.sync_tcp(&proxy.addr, TIMEOUT).unwrap();
    let (mut admin, result) = served.finish();
    result.unwrap();
    let recorded = proxy.frames(Way::Up);
    // The admin moves on; an attacker replays the phone's recorded frames to it. The replay
    // does not get past the handshake (the server's ephemeral key is new), so it changes
    // nothing, not even what the admin records of its peers.
    admin.add_contact(&secret_contact(3)).unwrap();
    let before = admin.summary().clone();
    let before_peers = admin.peers().unwrap();
    let before_digest = admin.state_digest().unwrap();
    let served = serve_once(admin, 1024);
    let mut s = TcpStream::connect(&served.addr).unwrap();
    s.write_all(&framed(&recorded[0])).unwrap();
    let _m2 = read_frame(&mut s).unwrap();
    for frame in &recorded[1..] {
        if s.write_all(&framed(frame)).is_err() {
            break;
        }
    }
    let (admin, result) = served.finish();
    assert!(
        matches!(
            result,
            Err(SyncError::Handshake(HandshakeError::Decrypt(3)))
        ),
        "{result:?}"
    );
    assert_eq!(admin.state_digest().unwrap(), before_digest);
    assert_eq!(admin.summary(), &before);
    assert_eq!(admin.peers().unwrap(), before_peers);
}

#[test]
fn a_served_replica_whose_disk_failed_serves_again_without_a_restart() {
    use std::sync::atomic::AtomicU64;

    let tmp = tempfile::tempdir().unwrap();
    let clock = Arc::new(FakeClock::new(NINE_MS));
    let hub_dir = tmp.path().join("hub");
    let mut hub = replica(&hub_dir, &clock);
    let mut phone = member_of(&mut hub, &tmp.path().join("phone"), &clock);
    drop(hub);
    // The hub's store on a disk that fails every write once `budget` is spent.
    let options = Options {
        wall: clock.clone(),
        ..Options::default()
    };
    let hub = common::on_failing_disk(&hub_dir, options, &Arc::new(AtomicU64::new(0)));

    let shared = Shared::new(hub);
    let (addr, server, outcomes) = serve_shared(
        &shared,
        ServeOptions {
            timeout: TIMEOUT,
            sessions: Some(2),
            ..ServeOptions::default()
        },
    );
    phone.add_contact(&secret_contact(1)).unwrap();
    // The hub cannot store the phone's op: the session fails on its side.
    let _ = phone.sync_tcp(&addr, TIMEOUT);
    // The disk writes again (the hub reopened its store after the failed session, onto the
    // real files): the next session goes through, with the same running server.
    let report = phone.sync_tcp(&addr, TIMEOUT).unwrap();
    assert!(report.converged, "{report:?}");
    server.join().unwrap();
    let oks: Vec<bool> = outcomes.lock().unwrap().iter().map(Result::is_ok).collect();
    assert_eq!(oks, [false, true]);
    let hub = shared.into_inner().ok().unwrap();
    assert!(hub.contact(&ContactId([1; 16])).unwrap().is_some());
    assert!(hub.verify().unwrap().is_ok());
}

#[test]
fn one_address_cannot_take_every_session_of_a_served_replica_and_is_told_to_come_back() {
    let tmp = tempfile::tempdir().unwrap();
    let (shared, mut phone) = hub_and_phone(tmp.path());
    // Served for good (how many connections a retrying client makes depends on timing), so
    // the server thread is left running when the test ends.
    let (addr, _server, outcomes) = serve_shared(
        &shared,
        ServeOptions {
            timeout: TIMEOUT,
            max_sessions_per_address: 1,
            busy_retry_after: Duration::from_millis(100),
            sessions: None,
            ..ServeOptions::default()
        },
    );
    let ended = |n: usize| {
        let deadline = std::time::Instant::now() + TIMEOUT;
        while outcomes.lock().unwrap().len() < n {
            assert!(
                std::time::Instant::now() < deadline,
                "{n} sessions never ended"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    };
    // A connection that sends nothing holds this address's one session...
    let idle = TcpStream::connect(&addr).unwrap();
    // ...so the next from the same address is told, before any handshake, that the server
    // is busy and when to come back (a client that does not retry sees exactly that).
    let refused =
        transport::sync_tcp(&mut phone, &addr, TIMEOUT, Expect::Member, Retry::NEVER).unwrap_err();
    assert!(matches!(refused, SyncError::Busy(100)), "{refused}");
    ended(1);
    let turned_away = outcomes.lock().unwrap()[0].clone().unwrap_err();
    assert!(
        turned_away.contains("busy") && turned_away.contains("for 127.0.0.1"),
        "{turned_away}"
    );
    drop(idle);
    ended(2);
    // A client that retries (the library's default) gets in once the address's session
    // ends: here another idle connection goes 300 ms into the client's backing off.
    let idle = TcpStream::connect(&addr).unwrap();
    std::thread::sleep(Duration::from_millis(50));
    let goes = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(300));
        drop(idle);
    });
    let report = phone.sync_tcp(&addr, TIMEOUT).unwrap();
    goes.join().unwrap();
    assert!(report.converged, "{report:?}");
    assert!(report.busy_retries >= 1, "{report:?}");
    assert_eq!(report.sent_ops, 1, "{report:?}");
    assert!(shared
        .lock()
        .contact(&ContactId([1; 16]))
        .unwrap()
        .is_some());
}

#[test]
fn connections_that_never_authenticate_cannot_take_a_members_session() {
    let tmp = tempfile::tempdir().unwrap();
    let (shared, mut phone) = hub_and_phone(tmp.path());
    // Two sessions at once, eight connections authenticating; idle connections may wait a
    // minute for their handshake here.
    let (addr, _server, _) = serve_shared(
        &shared,
        ServeOptions {
            timeout: TIMEOUT,
            max_sessions: 2,
            max_handshakes: 8,
            max_sessions_per_address: 16,
            handshake_timeout: Duration::from_secs(60),
            sessions: None,
            ..ServeOptions::default()
        },
    );
    // Four connections that send nothing: more than the sessions, fewer than the handshakes.
    let idle: Vec<TcpStream> = (0..4).map(|_| TcpStream::connect(&addr).unwrap()).collect();
    std::thread::sleep(Duration::from_millis(100));
    // The member gets a session at once (no retry allowed): the idle ones hold handshake
    // slots, not sessions.
    let report =
        transport::sync_tcp(&mut phone, &addr, TIMEOUT, Expect::Member, Retry::NEVER).unwrap();
    assert!(report.converged && report.busy_retries == 0, "{report:?}");
    drop(idle);

    // A handshake has a deadline of its own: with two handshake slots, two idle connections
    // turn a member away until their deadline drops them, then it gets in.
    let tmp = tempfile::tempdir().unwrap();
    let (shared, mut phone) = hub_and_phone(tmp.path());
    let (addr, _server, outcomes) = serve_shared(
        &shared,
        ServeOptions {
            timeout: TIMEOUT,
            max_handshakes: 2,
            max_sessions_per_address: 16,
            // Long enough that the member's connection (accepted after the idle ones, in order)
            // finds their slots still held on a loaded machine.
            handshake_timeout: Duration::from_millis(1500),
            busy_retry_after: Duration::from_millis(100),
            sessions: None,
            ..ServeOptions::default()
        },
    );
    let idle: Vec<TcpStream> = (0..2).map(|_| TcpStream::connect(&addr).unwrap()).collect();
    std::thread::sleep(Duration::from_millis(100));
    let refused =
        transport::sync_tcp(&mut phone, &addr, TIMEOUT, Expect::Member, Retry::NEVER).unwrap_err();
    assert!(matches!(refused, SyncError::Busy(_)), "{refused}");
    let deadline = std::time::Instant::now() + TIMEOUT;
    while outcomes.lock().unwrap().len() < 3 {
        assert!(std::time::Instant::now() < deadline, "the idle ones stayed");
        std::thread::sleep(Duration::from_millis(20));
    }
    let dropped: Vec<String> = outcomes
        .lock()
        .unwrap()
        .iter()
        .skip(1)
        .map(|o| o.clone().unwrap_err())
        .collect();
    assert!(
        dropped.iter().all(|e| e.contains("1500 ms deadline")),
        "{dropped:?}"
    );
    let report = phone.sync_tcp(&addr, TIMEOUT).unwrap();
    assert!(report.converged, "{report:?}");
    drop(idle);
}

/// A session of `phone`'s key on the server at `addr` that completes the handshake and the
/// hellos and then says nothing: it holds a session (and one of the phone's slots) until
/// the connection is dropped or the server's message deadline passes.
fn held_session(phone: &Replica, addr: &str) -> TcpStream {
    let identity = Identity::new(phone.book(), phone.store().device_key());
    let mut held = TcpStream::connect(addr).unwrap();
    let (mut handshake, m1) = Handshake::initiate(&identity).unwrap();
    held.write_all(&framed(&m1)).unwrap();
    handshake
        .read_reply(&read_frame(&mut held).unwrap())
        .unwrap();
    let (m3, mut channel) = handshake.finish(&identity).unwrap();
    held.write_all(&framed(&m3)).unwrap();
    // Its hello answered: the session is running and holds the slot.
    let hello = message::encode(&Message::Hello {
        replica: phone.id(),
        wall_ms: NINE_MS,
        summary: phone.summary().clone(),
    });
    held.write_all(&framed(&channel.seal(&hello).unwrap()))
        .unwrap();
    let answer = channel.open(&read_frame(&mut held).unwrap()).unwrap();
    assert!(matches!(
        message::decode(&answer).unwrap(),
        Message::Hello { .. }
    ));
    held
}

#[test]
fn one_device_cannot_hold_more_sessions_than_its_slots_and_is_told_so_sealed() {
    let tmp = tempfile::tempdir().unwrap();
    let (shared, mut phone) = hub_and_phone(tmp.path());
    let (addr, _server, outcomes) = serve_shared(
        &shared,
        ServeOptions {
            // The held session waits this long for its next message.
            timeout: Duration::from_secs(30),
            max_sessions_per_device: 1,
            busy_retry_after: Duration::from_millis(300),
            sessions: None,
            ..ServeOptions::default()
        },
    );
    // The phone's key completes a handshake and then says nothing: the session holds the
    // phone's one slot.
    let held = held_session(&phone, &addr);
    // From the same address (its limit is 8), the phone's next session is answered busy
    // once the handshake says who it is; nothing of it is exchanged.
    let summary = phone.summary().clone();
    let err =
        transport::sync_tcp(&mut phone, &addr, TIMEOUT, Expect::Member, Retry::NEVER).unwrap_err();
    assert!(matches!(err, SyncError::Busy(300)), "{err}");
    assert_eq!(phone.summary(), &summary);
    let deadline = std::time::Instant::now() + TIMEOUT;
    while outcomes.lock().unwrap().is_empty() {
        assert!(std::time::Instant::now() < deadline, "never turned away");
        std::thread::sleep(Duration::from_millis(10));
    }
    let turned_away = outcomes.lock().unwrap()[0].clone().unwrap_err();
    assert!(
        turned_away.contains(&format!("device {}", phone.id())),
        "{turned_away}"
    );
    // Once the held session ends, the phone gets in.
    drop(held);
    let report = phone.sync_tcp(&addr, TIMEOUT).unwrap();
    assert!(report.converged, "{report:?}");
    assert!(shared
        .lock()
        .contact(&ContactId([1; 16]))
        .unwrap()
        .is_some());
}

/// A device turned away for want of a session and back at the moment it was given gets in
/// over the session limit (within the overdraft), rather than being asked to the end of the
/// queue again; back too early, it is turned away again (docs/SYNC.md, "Busy").
#[test]
fn a_device_back_at_its_moment_gets_in_though_the_sessions_are_still_full() {
    let tmp = tempfile::tempdir().unwrap();
    let (shared, mut phone) = hub_and_phone(tmp.path());
    let (addr, _server, _) = serve_shared(
        &shared,
        ServeOptions {
            // The held session waits this long for its next message.
            timeout: Duration::from_secs(30),
            max_sessions: 1,
            busy_retry_after: Duration::from_millis(200),
            sessions: None,
            ..ServeOptions::default()
        },
    );
    // The phone's key completes a handshake and a hello, then says nothing: the session holds
    // the server's one session.
    let held = held_session(&phone, &addr);
    let busy = |phone: &mut Replica| match transport::sync_tcp(
        phone,
        &addr,
        TIMEOUT,
        Expect::Member,
        Retry::NEVER,
    ) {
        Err(SyncError::Busy(ms)) => Some(ms),
        Ok(report) => {
            assert!(report.converged, "{report:?}");
            None
        }
        Err(e) => panic!("{e}"),
    };
    let asked = busy(&mut phone).expect("the sessions are full");
    assert!(asked >= 200, "{asked}");
    // Back at once: too early, turned away again, asked to come back later.
    let asked = busy(&mut phone).expect("back too early");
    // Back at its moment: in, though the held session still holds the one session.
    std::thread::sleep(Duration::from_millis(asked));
    assert_eq!(busy(&mut phone), None, "let in at its moment");
    assert!(shared
        .lock()
        .contact(&ContactId([1; 16]))
        .unwrap()
        .is_some());
    // Its ticket is used up: with the held session still there, the next is turned away.
    assert!(busy(&mut phone).is_some());
    drop(held);
}

/// A served replica takes at most its quota from one session (docs/SECURITY.md, "Quotas"):
/// the message that would go over is refused whole before it is applied, the device is told
/// which quota, and a session within it goes through.
#[test]
fn a_session_that_pushes_over_the_quota_is_refused_and_one_within_it_goes_through() {
    use cardlog::sync_layer::Quota;
    let tmp = tempfile::tempdir().unwrap();
    let clock = Arc::new(FakeClock::new(NINE_MS));
    let mut hub = replica(&tmp.path().join("hub"), &clock);
    let mut phone = member_of(&mut hub, &tmp.path().join("phone"), &clock);
    let mut tablet = member_of(&mut hub, &tmp.path().join("tablet"), &clock);
    for n in 1..=8 {
        phone.add_contact(&secret_contact(n)).unwrap();
    }
    let hub = Shared::new(hub);
    let held = hub.lock().summary().clone();
    let served = |quota: Quota| {
        serve_shared(
            &hub,
            ServeOptions {
                quota,
                sessions: Some(1),
                ..ServeOptions::default()
            },
        )
    };
    // Eight ops over a quota of five: refused whole, nothing of them stored.
    let quota = Quota {
        ops: 5,
        ..Quota::default()
    };
    let (addr, handle, outcomes) = served(quota);
    let err = phone.sync_tcp(&addr, TIMEOUT).unwrap_err();
    handle.join().unwrap();
    assert!(
        matches!(&err, SyncError::PeerAborted(why) if why.contains("ops pushed") && why.contains("at most 5")),
        "{err}"
    );
    let server_side = outcomes.lock().unwrap()[0].clone().unwrap_err();
    assert!(
        server_side.contains("over this server's quota"),
        "{server_side}"
    );
    assert_eq!(
        hub.lock().summary(),
        &held,
        "nothing of the refused message stored"
    );
    // The same within a quota of eight.
    let (addr, handle, _) = served(Quota {
        ops: 8,
        ..Quota::default()
    });
    phone.sync_tcp(&addr, TIMEOUT).unwrap();
    handle.join().unwrap();
    assert!(hub.lock().contact(&ContactId([8; 16])).unwrap().is_some());
    // Authors new to the hub: the tablet brings its own chain.
    tablet.add_contact(&secret_contact(20)).unwrap();
    phone.add_contact(&secret_contact(21)).unwrap();
    common::session(&mut tablet, &mut phone);
    let quota = Quota {
        new_authors: 0,
        ..Quota::default()
    };
    let (addr, handle, outcomes) = served(quota);
    let err = tablet.sync_tcp(&addr, TIMEOUT).unwrap_err();
    handle.join().unwrap();
    assert!(
        matches!(&err, SyncError::PeerAborted(why) if why.contains("authors new")),
        "{err}"
    );
    assert!(outcomes.lock().unwrap()[0].is_err());
}

/// A server that closes a connection without answering (its accept queue overflowed under a
/// crowd, and the kernel reset it) is tried again with backoff, as a busy one is; the
/// session then goes through and counts the retry.
#[test]
fn a_connection_closed_before_the_answer_is_tried_again() {
    let tmp = tempfile::tempdir().unwrap();
    let (hub, mut phone) = hub_and_phone(tmp.path());
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let served = std::thread::spawn(move || {
        // The first connection is closed unanswered, with its message 1 unread: a reset.
        let (first, _) = listener.accept().unwrap();
        std::thread::sleep(Duration::from_millis(100));
        drop(first);
        serve(
            &listener,
            hub,
            ServeOptions {
                sessions: Some(1),
                ..ServeOptions::default()
            },
            |_, result| {
                result.unwrap();
            },
        )
        .unwrap();
    });
    let report = phone.sync_tcp(&addr, TIMEOUT).unwrap();
    served.join().unwrap();
    assert_eq!(report.busy_retries, 1);
    assert_eq!(report.sent_ops, 1);
}

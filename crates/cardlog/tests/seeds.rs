//! The seed scenarios (../shared/seeds, worked in docs/SEMANTICS.md) re-run on real stores:
//! every device is a `Replica` in its own temporary directory, and each replica is closed and
//! reopened before it is checked. Every scenario runs once per way ops travel: `ops_since` /
//! `apply` directly, a sync session over the in-process channel, a session over TCP on
//! loopback, and bundle files (heads file one way, bundle the other).
#![allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    clippy::panic,
    clippy::expect_used
)]

use std::path::PathBuf;
use std::sync::Arc;

use cardlog::sync_layer::transport::{channel_pair, TcpTransport};
use cardlog::Role;
use cardlog::{
    Contact, ContactId, Field, ItemBody, ItemId, ItemKind, Options, Path, Replica, Summary, Value,
};
use cardlog_core::FakeClock;
use std::time::Duration;

/// How ops travel between replicas in a scenario.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Via {
    Direct,
    Channel,
    Tcp,
    Bundle,
}

const TIMEOUT: Duration = Duration::from_secs(20);

/// 2026-11-22T09:00:00Z.
const NINE_MS: u64 = 1_795_338_000_000;
const HOUR_MS: i64 = 3_600_000;

struct World {
    via: Via,
    _tmp: tempfile::TempDir,
    dirs: Vec<PathBuf>,
    clocks: Vec<Arc<FakeClock>>,
    replicas: Vec<Option<Replica>>,
}

impl World {
    fn new(via: Via, names: &[&str]) -> Self {
        let tmp = tempfile::tempdir().unwrap();
        let mut w = Self {
            via,
            dirs: names.iter().map(|n| tmp.path().join(n)).collect(),
            _tmp: tmp,
            clocks: Vec::new(),
            replicas: Vec::new(),
        };
        // The first replica founds the book; it adds each other one, which takes what it
        // holds.
        for (i, name) in names.iter().enumerate() {
            let clock = Arc::new(FakeClock::new(NINE_MS));
            let options = Self::options(&clock);
            let r = match w.replicas.first_mut() {
                None => Replica::create_with(&w.dirs[i], options).unwrap(),
                Some(founder) => {
                    let founder = founder.as_mut().unwrap();
                    let mut r = Replica::join_with(&w.dirs[i], founder.book(), options).unwrap();
                    founder
                        .add_member(r.id(), cardlog::MemberRole::Write, name)
                        .unwrap();
                    r.pull_from(founder).unwrap();
                    r
                }
            };
            w.clocks.push(clock);
            w.replicas.push(Some(r));
        }
        // Everyone holds every admission.
        for i in 1..names.len() {
            w.push(0, i);
        }
        w
    }

    fn options(clock: &Arc<FakeClock>) -> Options {
        Options {
            wall: clock.clone(),
            ..Options::default()
        }
    }

    fn r(&mut self, i: usize) -> &mut Replica {
        self.replicas[i].as_mut().unwrap()
    }

    fn advance(&self, ms: i64) {
        for c in &self.clocks {
            c.advance_ms(ms);
        }
    }

    /// Carries `from`'s ops that `to` lacks.
    fn push(&mut self, from: usize, to: usize) {
        let summary: Summary = self.r(to).summary().clone();
        let ops = self.r(from).ops_since(&summary).unwrap();
        let tips = self.r(from).signatures_for(&ops).unwrap();
        let report = self.r(to).apply(&ops, &tips).unwrap();
        assert!(report.missing.is_empty());
    }

    fn sync(&mut self, a: usize, b: usize) {
        match self.via {
            Via::Direct => {
                self.push(a, b);
                self.push(b, a);
            }
            Via::Bundle => {
                for (from, to) in [(a, b), (b, a)] {
                    let heads = self.r(to).summary_file();
                    let (_, since) =
                        cardlog::sync_layer::bundle::read_summary_file(&heads).unwrap();
                    let bundle = self.r(from).export_bundle(Some(&since)).unwrap();
                    let imported = self.r(to).import_bundle(&bundle).unwrap();
                    assert_eq!(imported.received.applied.missing, 0);
                    assert!(imported.received.forks.is_empty());
                    // Importing the same bundle again changes nothing.
                    let state = self.r(to).state_bytes().unwrap();
                    let again = self.r(to).import_bundle(&bundle).unwrap();
                    assert_eq!(again.received.applied.stored, 0);
                    assert_eq!(self.r(to).state_bytes().unwrap(), state);
                }
            }
            Via::Channel | Via::Tcp => {
                let mut ra = self.replicas[a].take().unwrap();
                let mut rb = self.replicas[b].take().unwrap();
                let (ia, ib) = (ra.id(), rb.id());
                let (x, y) = if self.via == Via::Channel {
                    let (mut ea, mut eb) = channel_pair(TIMEOUT);
                    std::thread::scope(|s| {
                        let h = s.spawn(|| rb.sync_over(Role::Responder, &mut eb));
                        let x = ra.sync_over(Role::Initiator, &mut ea);
                        (x, h.join().unwrap())
                    })
                } else {
                    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
                    let addr = listener.local_addr().unwrap().to_string();
                    std::thread::scope(|s| {
                        let h = s.spawn(|| {
                            let (stream, _) = listener.accept().unwrap();
                            let mut t = TcpTransport::new(stream, TIMEOUT).unwrap();
                            rb.sync_over(Role::Responder, &mut t)
                        });
                        let x = ra.sync_tcp(&addr, TIMEOUT);
                        (x, h.join().unwrap())
                    })
                };
                let (x, y) = (x.unwrap(), y.unwrap());
                assert!(x.converged && y.converged, "{x:?} {y:?}");
                assert_eq!(x.peer, Some(ib));
                assert_eq!(y.peer, Some(ia));
                assert_eq!(x.sent_ops, y.stored);
                assert_eq!(y.sent_ops, x.stored);
                assert!(x.forks.is_empty() && y.forks.is_empty());
                assert_eq!(ra.summary(), rb.summary());
                // Each now knows the other holds everything: nothing needs sync.
                assert!(ra.needs_sync(&ib).unwrap().is_empty());
                assert!(rb.needs_sync(&ia).unwrap().is_empty());
                self.replicas[a] = Some(ra);
                self.replicas[b] = Some(rb);
            }
        }
    }

    /// Closes and reopens every replica, then checks they all hold the same ops and state and
    /// pass `verify`.
    fn reopen_and_check_converged(&mut self) {
        for i in 0..self.replicas.len() {
            drop(self.replicas[i].take());
            let r = Replica::open_with(&self.dirs[i], Self::options(&self.clocks[i])).unwrap();
            let report = r.verify().unwrap();
            assert!(report.is_ok(), "{:?}", report.problems);
            self.replicas[i] = Some(r);
        }
        let first = self.r(0).state_bytes().unwrap();
        let summary = self.r(0).summary().clone();
        for i in 1..self.replicas.len() {
            assert_eq!(
                self.r(i).state_bytes().unwrap(),
                first,
                "replica {i} differs"
            );
            assert_eq!(*self.r(i).summary(), summary);
        }
    }

    fn contact(&mut self, i: usize, id: ContactId) -> Contact {
        self.r(i).contact(&id).unwrap().unwrap().contact
    }
}

fn person(n: u8, given: &str) -> Contact {
    let mut c = Contact::new(ContactId([n; 16]));
    c.set(Field::Given, given);
    c.phones.push(cardlog::Item {
        id: ItemId([0xa0 + n; 16]),
        label: "work".into(),
        body: ItemBody::Text("+1 555 0100".into()),
    });
    c.emails.push(cardlog::Item {
        id: ItemId([0xb0 + n; 16]),
        label: "work".into(),
        body: ItemBody::Text(format!("{}@old.example", given.to_lowercase())),
    });
    c
}

fn seed_000_iphone_and_ipad_edit_offline_and_both_edits_arrive(via: Via) {
    let mut w = World::new(via, &["iphone", "ipad"]);
    let (iphone, ipad) = (0, 1);
    let c = person(1, "Dana");
    w.r(iphone).add_contact(&c).unwrap();
    w.sync(iphone, ipad);

    // Offline: the iPhone changes the number, the iPad the e-mail and adds a new contact.
    w.advance(HOUR_MS);
    w.r(iphone)
        .edit(c.id, |c| {
            c.phones[0].body = ItemBody::Text("+1 555 0199".into())
        })
        .unwrap();
    w.advance(HOUR_MS);
    w.r(ipad)
        .edit(c.id, |c| {
            c.emails[0].body = ItemBody::Text("dana@new.example".into())
        })
        .unwrap();
    let added = person(2, "Eli");
    w.r(ipad).add_contact(&added).unwrap();
    w.advance(HOUR_MS);
    w.sync(ipad, iphone);
    w.reopen_and_check_converged();

    for d in [iphone, ipad] {
        let got = w.contact(d, c.id);
        assert_eq!(got.phones[0].body, ItemBody::Text("+1 555 0199".into()));
        assert_eq!(
            got.emails[0].body,
            ItemBody::Text("dana@new.example".into())
        );
        assert_eq!(w.contact(d, added.id), added);
        assert!(w.r(d).conflicts().unwrap().is_empty());
    }
}

fn seed_001_alice_and_bob_edit_carol_at_once_and_nothing_is_lost(via: Via) {
    let mut w = World::new(via, &["alice", "bob"]);
    let (alice, bob) = (0, 1);
    let carol = person(3, "Carol");
    w.r(alice).add_contact(&carol).unwrap();
    w.sync(alice, bob);

    // Simultaneously: different fields on each side, and the same field on both.
    w.r(alice)
        .edit(carol.id, |c| {
            c.set(Field::Title, "CTO").set(Field::Org, "Initech");
        })
        .unwrap();
    w.clocks[bob].advance_ms(1_000);
    w.r(bob)
        .edit(carol.id, |c| {
            c.phones[0].body = ItemBody::Text("+1 555 0142".into());
            c.set(Field::Org, "Initrode");
        })
        .unwrap();
    w.sync(alice, bob);
    w.reopen_and_check_converged();

    let org = Path::Field(Field::Org);
    for d in [alice, bob] {
        let view = w.r(d).contact(&carol.id).unwrap().unwrap();
        assert_eq!(view.contact.get(Field::Title), Some("CTO"));
        assert_eq!(
            view.contact.phones[0].body,
            ItemBody::Text("+1 555 0142".into())
        );
        // The same field: the later edit shows, the other is kept as a visible alternative.
        assert_eq!(view.contact.get(Field::Org), Some("Initrode"));
        assert_eq!(view.conflicts.len(), 1);
        assert_eq!(view.conflicts[0].path, org);
        assert_eq!(
            view.conflicts[0].alternatives[0].value,
            Some(Value::Text("Initech".into()))
        );
    }
    w.r(alice)
        .resolve(carol.id, org, Some(Value::Text("Initech".into())))
        .unwrap();
    w.sync(alice, bob);
    w.reopen_and_check_converged();
    assert!(w.r(bob).conflicts().unwrap().is_empty());
    assert_eq!(w.contact(bob, carol.id).get(Field::Org), Some("Initech"));
}

fn seed_002_offline_creation_reaches_everyone_through_a_relay(via: Via) {
    // A relay is just another replica; clients never talk to each other directly.
    let mut w = World::new(via, &["relay", "client-a", "client-b"]);
    let (relay, a, b) = (0, 1, 2);
    let c = person(4, "Fay");
    w.r(a).add_contact(&c).unwrap();
    w.advance(HOUR_MS);
    w.sync(a, relay);
    w.sync(b, relay);
    assert_eq!(w.contact(b, c.id), c);

    // Apart: both clients change the same note, and client a deletes a contact that client b
    // edits later.
    let other = person(5, "Gus");
    w.r(b).add_contact(&other).unwrap();
    w.sync(b, relay);
    w.sync(a, relay);
    w.r(a)
        .edit(c.id, |c| {
            c.set(Field::Note, "met at the conference");
        })
        .unwrap();
    w.r(a).delete(other.id).unwrap();
    w.advance(HOUR_MS);
    w.r(b)
        .edit(c.id, |c| {
            c.set(Field::Note, "prefers e-mail");
        })
        .unwrap();
    w.r(b)
        .edit(other.id, |c| {
            c.set(Field::Title, "Chef");
        })
        .unwrap();
    for _ in 0..2 {
        w.sync(a, relay);
        w.sync(b, relay);
    }
    w.reopen_and_check_converged();

    for d in [relay, a, b] {
        let note = w.r(d).contact(&c.id).unwrap().unwrap();
        assert_eq!(note.contact.get(Field::Note), Some("prefers e-mail"));
        assert_eq!(note.conflicts.len(), 1, "the earlier note stays visible");
        // The later edit of the deleted contact wins, and the delete is marked (S5).
        let gus = w.r(d).contact(&other.id).unwrap().unwrap();
        assert!(!gus.deleted);
        assert_eq!(gus.contact.get(Field::Title), Some("Chef"));
        assert_eq!(gus.conflicts[0].path, Path::Exists);
    }
}

fn seed_003_edits_are_stored_as_key_based_updates(via: Via) {
    let mut w = World::new(via, &["app"]);
    let mut c = person(6, "Hal");
    c.add_text_item(ItemKind::Url, "", "https://hal.example")
        .unwrap();
    w.r(0).add_contact(&c).unwrap();

    let id = w
        .r(0)
        .edit(c.id, |c| {
            c.set(Field::Family, "Nine-Thousand");
        })
        .unwrap()
        .unwrap();
    let op = w.r(0).op(&id).unwrap().unwrap();
    let paths: Vec<String> = op.op().writes.iter().map(|w| w.path.to_string()).collect();
    assert_eq!(paths, ["exists", "family"]);

    let phone = c.phones[0].id;
    let id = w
        .r(0)
        .edit(c.id, |c| {
            c.remove_item(ItemKind::Phone, phone);
        })
        .unwrap()
        .unwrap();
    let op = w.r(0).op(&id).unwrap().unwrap();
    assert_eq!(op.op().writes.len(), 2);
    assert_eq!(op.op().writes[1].path, Path::Item(ItemKind::Phone, phone));
    assert_eq!(op.op().writes[1].value, None);
    w.reopen_and_check_converged();
    assert!(w.contact(0, c.id).phones.is_empty());
    assert_eq!(w.contact(0, c.id).urls.len(), 1);
}

fn seed_004_vesper_rules_property_merge_real_time_and_any_call_order(via: Via) {
    // Day phone edits the note, night phone the tags: both get both (rule 2). The same
    // property edited on both: the later edit shows whatever the arrival order (rule 3), and
    // the losing value stays visible instead of vanishing. The order in which devices talk to
    // the server does not matter (rule 5).
    let mut w = World::new(via, &["server", "day", "night", "server-2"]);
    let (server, day, night, server2) = (0, 1, 2, 3);
    let mut c = person(7, "Ivy");
    c.tags.insert("friends".into());
    w.r(day).add_contact(&c).unwrap();
    w.sync(day, server);
    w.sync(night, server);
    w.sync(server, server2);

    w.advance(HOUR_MS);
    w.r(night)
        .edit(c.id, |c| {
            c.set(Field::Note, "night note");
            c.tags.insert("book club".into());
        })
        .unwrap();
    w.advance(HOUR_MS);
    w.r(day)
        .edit(c.id, |c| {
            c.set(Field::Note, "day note");
            c.tags.remove("friends");
        })
        .unwrap();

    // Server 1 hears from day first, server 2 from night first.
    w.push(day, server);
    w.push(night, server);
    w.push(night, server2);
    w.push(day, server2);
    assert_eq!(
        w.r(server).state_bytes().unwrap(),
        w.r(server2).state_bytes().unwrap()
    );
    w.sync(day, server);
    w.sync(night, server);
    w.sync(server, server2);
    w.reopen_and_check_converged();

    for d in [server, day, night, server2] {
        let view = w.r(d).contact(&c.id).unwrap().unwrap();
        assert_eq!(view.contact.get(Field::Note), Some("day note"));
        let tags: Vec<&str> = view.contact.tags.iter().map(String::as_str).collect();
        assert_eq!(tags, ["book club"]);
        assert_eq!(view.conflicts.len(), 1);
        assert_eq!(
            view.conflicts[0].alternatives[0].value,
            Some(Value::Text("night note".into()))
        );
    }
}

// One test per scenario and way of travel (seed 003 has one replica: it syncs with none).

#[test]
fn seed_000_via_direct() {
    seed_000_iphone_and_ipad_edit_offline_and_both_edits_arrive(Via::Direct);
}

#[test]
fn seed_000_via_channel() {
    seed_000_iphone_and_ipad_edit_offline_and_both_edits_arrive(Via::Channel);
}

#[test]
fn seed_000_via_tcp() {
    seed_000_iphone_and_ipad_edit_offline_and_both_edits_arrive(Via::Tcp);
}

#[test]
fn seed_000_via_bundle() {
    seed_000_iphone_and_ipad_edit_offline_and_both_edits_arrive(Via::Bundle);
}

#[test]
fn seed_001_via_direct() {
    seed_001_alice_and_bob_edit_carol_at_once_and_nothing_is_lost(Via::Direct);
}

#[test]
fn seed_001_via_channel() {
    seed_001_alice_and_bob_edit_carol_at_once_and_nothing_is_lost(Via::Channel);
}

#[test]
fn seed_001_via_tcp() {
    seed_001_alice_and_bob_edit_carol_at_once_and_nothing_is_lost(Via::Tcp);
}

#[test]
fn seed_001_via_bundle() {
    seed_001_alice_and_bob_edit_carol_at_once_and_nothing_is_lost(Via::Bundle);
}

#[test]
fn seed_002_via_direct() {
    seed_002_offline_creation_reaches_everyone_through_a_relay(Via::Direct);
}

#[test]
fn seed_002_via_channel() {
    seed_002_offline_creation_reaches_everyone_through_a_relay(Via::Channel);
}

#[test]
fn seed_002_via_tcp() {
    seed_002_offline_creation_reaches_everyone_through_a_relay(Via::Tcp);
}

#[test]
fn seed_002_via_bundle() {
    seed_002_offline_creation_reaches_everyone_through_a_relay(Via::Bundle);
}

#[test]
fn seed_003_via_direct() {
    seed_003_edits_are_stored_as_key_based_updates(Via::Direct);
}

#[test]
fn seed_004_via_direct() {
    seed_004_vesper_rules_property_merge_real_time_and_any_call_order(Via::Direct);
}

#[test]
fn seed_004_via_channel() {
    seed_004_vesper_rules_property_merge_real_time_and_any_call_order(Via::Channel);
}

#[test]
fn seed_004_via_tcp() {
    seed_004_vesper_rules_property_merge_real_time_and_any_call_order(Via::Tcp);
}

#[test]
fn seed_004_via_bundle() {
    seed_004_vesper_rules_property_merge_real_time_and_any_call_order(Via::Bundle);
}

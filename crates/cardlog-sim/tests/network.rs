//! The transport hook: schedules drive sessions through a network of the test's own. A
//! network that fails as real ones do (cut lines, delays, duplicated, altered or lost messages
//! that end the session) keeps every property; one that silently drops a message and lets
//! both ends believe the session completed is caught by the built-in properties within 200
//! schedules, and the failure reads as a story with a replay command.
#![allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    clippy::panic,
    clippy::expect_used
)]

use std::time::Duration;

use cardlog_sim::strategy::schedule_over_network;
use cardlog_sim::{explore, schedule_of, Ends, ExploreError, Link, Network, Sim, Stats, Storage};
use cardlog_sync::transport::{channel_pair, ChannelEnd, Transport};
use cardlog_sync::TransportError;

/// What goes wrong on one end's sends.
#[derive(Debug, Clone, Copy)]
enum Fault {
    None,
    /// Sleeps this many ms before each send.
    Delay(u64),
    /// The line dies after this many sends: this end's send fails, which ends its session.
    CutAfter(usize),
    /// The k-th send is delivered twice.
    Duplicate(usize),
    /// The k-th send arrives with one byte flipped.
    Corrupt(usize),
    /// The k-th send is lost and `send` says it went (a broken transport).
    LoseSilently(usize),
}

struct Faulty {
    inner: ChannelEnd,
    sent: usize,
    fault: Fault,
}

impl Transport for Faulty {
    fn send(&mut self, mut bytes: Vec<u8>) -> Result<(), TransportError> {
        self.sent += 1;
        let k = self.sent;
        match self.fault {
            Fault::None => {}
            Fault::Delay(ms) => std::thread::sleep(Duration::from_millis(ms)),
            Fault::CutAfter(n) if k > n => {
                return Err(TransportError::Disconnected(
                    " (the test cut the line)".into(),
                ))
            }
            Fault::Duplicate(n) if k == n => self.inner.send(bytes.clone())?,
            Fault::Corrupt(n) if k == n => {
                let at = bytes.len() / 2;
                if let Some(b) = bytes.get_mut(at) {
                    *b ^= 0x20;
                }
            }
            Fault::LoseSilently(n) if k == n => return Ok(()),
            _ => {}
        }
        self.inner.send(bytes)
    }

    fn recv(&mut self) -> Result<Vec<u8>, TransportError> {
        self.inner.recv()
    }
}

/// A network whose faults come from each session's seed.
struct TestNetwork {
    /// Faults of the responder's end, by seed.
    faults: fn(u64) -> Fault,
    /// How long an end waits for a message.
    timeout: Duration,
}

impl Network for TestNetwork {
    fn connect(&mut self, link: Link) -> Result<Ends, TransportError> {
        let (i, r) = channel_pair(self.timeout);
        Ok(Ends {
            initiator: Box::new(i),
            responder: Box::new(Faulty {
                inner: r,
                sent: 0,
                fault: (self.faults)(link.seed),
            }),
        })
    }

    fn name(&self) -> String {
        "the test network".into()
    }
}

/// Real faults: every one ends the session it hits with an error (or does no harm).
fn honest_faults(seed: u64) -> Fault {
    let k = (seed >> 8) as usize % 6 + 1;
    match seed % 6 {
        0 => Fault::None,
        1 => Fault::Delay(1),
        2 => Fault::CutAfter(k),
        3 => Fault::Duplicate(k),
        4 => Fault::Corrupt(k),
        _ => Fault::CutAfter(0),
    }
}

#[test]
fn a_network_that_fails_honestly_keeps_every_property() {
    for (storage, cases) in [(Storage::Memory, 96), (Storage::Disk, 16)] {
        let mut total = Stats::default();
        explore(schedule_over_network(3..=4, 16..48, storage), cases, |s| {
            let network = TestNetwork {
                faults: honest_faults,
                timeout: Duration::from_secs(10),
            };
            let stats = Sim::new(s)?.with_network(network).execute(s)?;
            total.network_completed += stats.network_completed;
            total.network_failed += stats.network_failed;
            Ok(())
        })
        .unwrap();
        // Sessions went over the network, and its faults ended some of them.
        assert!(total.network_completed > 3, "{storage:?}: {total:?}");
        assert!(total.network_failed > 3, "{storage:?}: {total:?}");
    }
}

#[test]
fn a_network_that_loses_a_message_and_claims_success_is_caught() {
    let result = explore(
        schedule_over_network(3..=4, 16..48, Storage::Memory),
        200,
        |s| {
            let network = TestNetwork {
                // The responder's second message (its first `Ops`, when the session has
                // several) is lost, and its `send` says it went.
                faults: |_| Fault::LoseSilently(2),
                // A lost last message leaves the other end waiting: not long.
                timeout: Duration::from_millis(25),
            };
            Sim::new(s)?.with_network(network).execute(s).map(|_| ())
        },
    );
    let Err(ExploreError::Failed(failure)) = result else {
        panic!("200 schedules never noticed a transport that loses messages: {result:?}");
    };
    assert_eq!(
        failure.violation.property, "a completed session delivers",
        "{failure}"
    );
    let text = failure.to_string();
    // It reads as what the devices did, and says how to replay it.
    assert!(text.contains("over the test network"), "{text}");
    assert!(text.contains("what the devices did:"), "{text}");
    let replay = format!(
        "replay: CARDLOG_SIM_SEED={:#018x} cargo test -p cardlog-sim --test network -- \
         a_network_that_loses_a_message_and_claims_success_is_caught --exact",
        failure.seed
    );
    assert!(text.contains(&replay), "{text}");
    eprintln!("{failure}");
}

#[test]
fn the_schedule_a_seed_draws_is_the_same_on_every_run() {
    let strategy = schedule_over_network(3..=4, 8..16, Storage::Memory);
    let draw = |seed| schedule_of(&strategy, seed).unwrap();
    assert_eq!(draw(7), draw(7));
    assert_eq!(draw(7).to_string(), draw(7).to_string());
    // Different seeds, different schedules.
    assert_ne!(draw(7), draw(8));
}

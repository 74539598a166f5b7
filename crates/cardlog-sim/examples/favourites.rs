//! An app proves its own use of cardlog converges: its own transport in the loop, its own
//! property, under generated schedules.
//!
//! The app marks favourites with the tag `friends`, and carries sync sessions through a
//! mailbox server of its own (each side posts to the other's mailbox; the server is slow at
//! times and restarts now and then, dropping the sessions it carried). The property: a
//! contact marked favourite on any device is a favourite on every device after sync, and
//! what the app shows agrees with the reference model. The harness's own properties hold
//! alongside (convergence, no lost save, a completed session delivers…).
//!
//! ```text
//! cargo run -p cardlog-sim --example favourites            # 48 schedules
//! CARDLOG_SIM_CASES=1000 cargo run --release -p cardlog-sim --example favourites
//! CARDLOG_SIM_SEED=0x… cargo run -p cardlog-sim --example favourites   # replay a failure
//! ```

use std::collections::BTreeSet;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::time::Duration;

use cardlog_core::ContactId;
use cardlog_sim::strategy::schedule_over_network;
use cardlog_sim::{
    explore, Ends, ExploreError, Link, Network, ReplicaView, Sim, Storage, Violation,
};
use cardlog_sync::transport::Transport;
use cardlog_sync::TransportError;

/// The tag the app shows as a favourite star.
const FAVOURITE: &str = "friends";

// ---- the app's transport -------------------------------------------------------------------

/// One side of a session through the mailbox server.
struct Mailbox {
    /// The other side's mailbox.
    outbox: Sender<Vec<u8>>,
    /// This side's.
    inbox: Receiver<Vec<u8>>,
    /// Messages this side has posted.
    posted: usize,
    /// The server restarts after carrying this many of this side's messages (the session is
    /// lost; the app reports it as a disconnect).
    restart_after: Option<usize>,
    /// The server holds each message this long before delivering it.
    delay: Duration,
}

impl Transport for Mailbox {
    fn send(&mut self, bytes: Vec<u8>) -> Result<(), TransportError> {
        self.posted += 1;
        if self.restart_after.is_some_and(|n| self.posted > n) {
            return Err(TransportError::Disconnected(
                " (the mailbox server restarted)".into(),
            ));
        }
        std::thread::sleep(self.delay);
        self.outbox
            .send(bytes)
            .map_err(|_| TransportError::Disconnected(" (the other side left)".into()))
    }

    fn recv(&mut self) -> Result<Vec<u8>, TransportError> {
        match self.inbox.recv_timeout(Duration::from_secs(10)) {
            Ok(bytes) => Ok(bytes),
            Err(RecvTimeoutError::Timeout) => Err(TransportError::Timeout(10_000)),
            Err(RecvTimeoutError::Disconnected) => Err(TransportError::Disconnected(
                " (the other side left)".into(),
            )),
        }
    }
}

/// The app's mailbox server: what it does to a session comes from the session's seed.
struct MailboxServer;

impl Network for MailboxServer {
    fn connect(&mut self, link: Link) -> Result<Ends, TransportError> {
        let (to_responder, responder_inbox) = mpsc::channel();
        let (to_initiator, initiator_inbox) = mpsc::channel();
        // One session in four is cut by a restart, after a few of the responder's messages;
        // one in four is slow.
        let restart_after = (link.seed % 4 == 1).then_some((link.seed >> 8) as usize % 5);
        let delay = Duration::from_micros(if link.seed % 4 == 2 { 500 } else { 0 });
        Ok(Ends {
            initiator: Box::new(Mailbox {
                outbox: to_responder,
                inbox: initiator_inbox,
                posted: 0,
                restart_after: None,
                delay,
            }),
            responder: Box::new(Mailbox {
                outbox: to_initiator,
                inbox: responder_inbox,
                posted: 0,
                restart_after,
                delay,
            }),
        })
    }

    fn name(&self) -> String {
        "the mailbox server".into()
    }
}

// ---- the app's property ---------------------------------------------------------------------

/// The contacts a replica shows with a favourite star.
fn favourites(r: &ReplicaView<'_>) -> Result<BTreeSet<ContactId>, Violation> {
    Ok(r.contacts()?
        .into_iter()
        .filter(|v| v.contact.tags.contains(FAVOURITE))
        .map(|v| v.contact.id)
        .collect())
}

/// "A contact marked favourite on any device is a favourite everywhere after sync", and the
/// app's view agrees with the reference model's (run after the final sync).
fn favourites_agree(sim: &mut Sim) -> Result<(), Violation> {
    let Some(first) = sim.replica(0) else {
        return Ok(());
    };
    let first = favourites(&first)?;
    for r in sim.replicas() {
        let here = favourites(&r)?;
        if here != first {
            return Err(Violation::new(
                "favourites agree",
                format!("replica {} stars {here:?}, replica 0 {first:?}", r.index()),
            ));
        }
        let model: BTreeSet<ContactId> = r
            .model()?
            .into_iter()
            .filter(|(_, m)| !m.deleted && m.contact.tags.contains(FAVOURITE))
            .map(|(id, _)| id)
            .collect();
        if model != here {
            return Err(Violation::new(
                "favourites agree",
                format!(
                    "replica {}: the model stars {model:?}, the app {here:?}",
                    r.index()
                ),
            ));
        }
    }
    Ok(())
}

fn main() -> Result<(), ExploreError> {
    let runs = explore(
        schedule_over_network(2..=4, 4..32, Storage::Memory),
        48,
        |s| {
            // Plays the schedule, syncs everything, checks the app's property, then every
            // built-in one; a violation carries the story of the run.
            Sim::new(s)?
                .with_network(MailboxServer)
                .execute_with(s, favourites_agree)
                .map(|_| ())
        },
    )?;
    println!(
        "{runs} schedules over the mailbox server: favourites agree everywhere, and every \
         property of the harness holds"
    );
    Ok(())
}

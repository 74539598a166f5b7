//! A server at capacity says so: it answers a connection it cannot serve with one
//! [`Message::Busy`] in the clear and closes (`Refuser`), and an initiator waits and tries
//! again with backoff ([`Retry`]) instead of seeing a reset connection (docs/SYNC.md, "Busy").
//!
//! Who may send a `Busy`: anyone who can answer the connection, since it comes before the
//! handshake. All it can make a client do is wait (at most [`Retry::most_wait`] per attempt)
//! and give up after [`Retry::attempts`] retries: a sync that a dropped connection would
//! fail at once fails some seconds later.

use std::hash::{BuildHasher, Hasher};
use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cardlog_core::DeviceId;

use crate::slots::{Slot, Slots};
use crate::wire::message::{self, Message};

/// The shortest wait before a retry ([`Retry::wait`]).
pub const RETRY_WAIT_MIN: Duration = Duration::from_millis(100);

/// What a client waits, doubled per retry, before coming back to a server that closed the
/// connection without answering ([`Retry::wait_unanswered`]): 2 s.
pub const SILENT_BACKOFF_MS: u64 = 2_000;

/// How an initiator honours a [`Message::Busy`] answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retry {
    /// Attempts after the first one (0: give up at the first busy answer).
    pub attempts: u32,
    /// Longest wait before one attempt, whatever the server asked.
    pub most_wait: Duration,
}

impl Retry {
    /// Never retries: a busy answer is returned at once as
    /// [`crate::SyncError::Busy`].
    pub const NEVER: Retry = Retry {
        attempts: 0,
        most_wait: Duration::ZERO,
    };

    /// How long to wait before retry number `attempt` (from 0) when the server asked for
    /// `asked_ms`: what it asked (a cardlog server asks each device it turns away for a
    /// moment of its own: `Backlog`), but at least a backoff of 500 ms doubled per earlier
    /// retry (a server asking for too little is not hammered); spread at random over up to
    /// 20 % more so devices asked alike do not come back in the same instant, never less (a
    /// device back before the moment it was given finds the server still busy, and is asked
    /// to the end of the queue: before session 35 the spread was ±10 %); at most
    /// [`Retry::most_wait`] and at least [`RETRY_WAIT_MIN`].
    pub fn wait(&self, attempt: u32, asked_ms: u64) -> Duration {
        let backoff_ms = 500u64.saturating_mul(1u64 << attempt.min(16));
        let base = asked_ms.max(backoff_ms);
        // Random per call: std's hasher keys come from the operating system (a clock's
        // nanoseconds are coarse on some platforms, and devices would share them).
        let random = std::collections::hash_map::RandomState::new()
            .build_hasher()
            .finish();
        let spread_ms = base.saturating_mul(1000 + random % 201) / 1000;
        Duration::from_millis(spread_ms)
            .min(self.most_wait)
            .max(RETRY_WAIT_MIN)
    }

    /// How long to wait before retry number `attempt` when the server closed the connection
    /// without answering ([`crate::SyncError::TurnedAway`]): [`Retry::wait`] with
    /// [`SILENT_BACKOFF_MS`] doubled per earlier retry standing for the ask, since a crowd
    /// turned away at once would come back at once.
    pub fn wait_unanswered(&self, attempt: u32) -> Duration {
        self.wait(
            attempt,
            SILENT_BACKOFF_MS.saturating_mul(1 << attempt.min(16)),
        )
    }
}

impl Default for Retry {
    /// Three retries, each wait at most 2 minutes (a relay serving a thousand devices at
    /// once may ask some to come back a minute later): a relay still busy after the waits it
    /// asked for is reported as busy.
    fn default() -> Self {
        Retry {
            attempts: 3,
            most_wait: Duration::from_secs(120),
        }
    }
}

/// An encoded [`Message::Busy`] asking to retry after `retry_after` (in ms, rounded down).
pub(crate) fn busy_message(retry_after: Duration) -> Vec<u8> {
    message::encode(&Message::Busy {
        retry_after_ms: u64::try_from(retry_after.as_millis()).unwrap_or(u64::MAX),
    })
}

/// The bytes a server writes to a connection it turns away: one framed [`Message::Busy`]
/// (the 4-byte length, then the message, as every TCP message).
pub(crate) fn busy_frame(retry_after: Duration) -> Vec<u8> {
    let busy = busy_message(retry_after);
    let mut frame = Vec::with_capacity(4 + busy.len());
    frame.extend_from_slice(&u32::try_from(busy.len()).unwrap_or(0).to_be_bytes());
    frame.extend_from_slice(&busy);
    frame
}

/// When a server at capacity asks each device it turns away to come back: the devices
/// queue up in time, one slot each, slots spaced by the time one session takes divided by
/// the sessions served at once (the rate at which sessions free up). The session time is
/// the larger of the mean of those that ended (exponentially weighted, 1/4 per session) and
/// twice the mean age of those running (which a steady state makes equal, and which rises
/// at once when sessions get longer, before any of them ends). A thousand devices arriving
/// together are asked to come back spread over the time the server needs to serve them,
/// rather than all again after the same 2 s.
pub(crate) struct Backlog {
    sessions: u32,
    least: Duration,
    state: std::sync::Mutex<BacklogState>,
}

struct BacklogState {
    /// Mean time of the sessions that ended.
    mean: Duration,
    /// The next free slot.
    next: Instant,
    /// Sessions running, and the sum of their starts (ns after `base`).
    running: u32,
    starts_ns: u128,
    base: Instant,
}

impl Backlog {
    /// A backlog for `sessions` served at once; no device is asked for less than `least`,
    /// which is also the session time assumed until one is measured.
    pub(crate) fn new(sessions: usize, least: Duration) -> Backlog {
        let now = Instant::now();
        Backlog {
            sessions: u32::try_from(sessions.max(1)).unwrap_or(u32::MAX),
            least: least.min(BACKLOG_MAX),
            state: std::sync::Mutex::new(BacklogState {
                mean: least,
                next: now,
                running: 0,
                starts_ns: 0,
                base: now,
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BacklogState> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// A session starts; give what this returns to [`Backlog::ended`].
    pub(crate) fn started(&self) -> Instant {
        let now = Instant::now();
        let mut state = self.lock();
        state.running = state.running.saturating_add(1);
        state.starts_ns += now.duration_since(state.base).as_nanos();
        now
    }

    /// The session that started at `began` ended; `served` whether it went through (only
    /// those count in the mean: a peer that idles until its deadline says nothing of how
    /// long serving takes).
    pub(crate) fn ended(&self, began: Instant, served: bool) {
        let mut state = self.lock();
        state.running = state.running.saturating_sub(1);
        let start_ns = began.duration_since(state.base).as_nanos();
        state.starts_ns = state.starts_ns.saturating_sub(start_ns);
        if served {
            state.mean = (state.mean.saturating_mul(3))
                .saturating_add(began.elapsed())
                .min(BACKLOG_MAX)
                / 4;
        }
    }

    /// How long the next device turned away is asked to wait: until the next free slot, at
    /// least `least`; the slot after it is then the next one's. The queue reaches at most
    /// [`BACKLOG_MAX`] ahead (later slots share its end), so a flood of connections cannot
    /// push honest devices' slots out of reach for long after it.
    pub(crate) fn turn_away(&self) -> Duration {
        self.turn_away_at(Instant::now())
    }

    pub(crate) fn turn_away_at(&self, now: Instant) -> Duration {
        let mut state = self.lock();
        let mut session = state.mean;
        if let Some(mean_start) = state.starts_ns.checked_div(u128::from(state.running)) {
            let now_ns = now.duration_since(state.base).as_nanos();
            let age_ns = now_ns.saturating_sub(mean_start);
            let twice_age =
                Duration::from_nanos(u64::try_from(age_ns).unwrap_or(u64::MAX)).saturating_mul(2);
            session = session.max(twice_age);
        }
        let (Some(soonest), Some(latest)) =
            (now.checked_add(self.least), now.checked_add(BACKLOG_MAX))
        else {
            return self.least;
        };
        let slot = state.next.clamp(soonest, latest.max(soonest));
        state.next = slot
            .checked_add(session.min(BACKLOG_MAX) / self.sessions)
            .unwrap_or(slot);
        slot.saturating_duration_since(now)
    }
}

/// How far ahead the backlog's queue reaches ([`Backlog::turn_away`]): a device's wait is
/// capped at 2 minutes anyway ([`Retry::default`]).
const BACKLOG_MAX: Duration = Duration::from_secs(120);

/// The moments given to authenticated devices turned away for want of a session
/// ([`Backlog::turn_away`]), so that one back at its moment is let in over the session limit
/// (within a bounded overdraft: [`claim_session`]) rather than turned away again to the end
/// of the queue. Before session 35 a device back at its moment while the sessions were still
/// full was asked further back each time, and a few of a thousand devices arriving together
/// ran out of their 3 retries (docs/PERFORMANCE.md, "Busy devices let in at their moment").
///
/// Who gets one: any device that completed a handshake (it proved its key), before the book
/// checks it, so a stranger minting keys gets one per key (docs/SECURITY.md says what that
/// buys). At most [`TICKETS_MAX`] are kept: when the table is full, lapsed tickets are dropped
/// (at most once per [`TICKET_PRUNE_EVERY`]) and, if it is still full, new ones are not kept.
/// A ticket is good from its moment (less [`TICKET_EARLY`]) for [`TICKET_LIFE`]; it goes
/// when its device gets a session, or lapses.
#[derive(Debug, Default)]
pub(crate) struct Tickets {
    state: std::sync::Mutex<TicketState>,
}

#[derive(Debug, Default)]
struct TicketState {
    due: std::collections::HashMap<DeviceId, Instant>,
    /// When lapsed tickets were last dropped from a full table.
    pruned: Option<Instant>,
}

/// Most tickets kept ([`Tickets`]): 64 Ki devices turned away at once, about 4 MB.
const TICKETS_MAX: usize = 1 << 16;
/// How long after its moment a ticket still lets its device in.
const TICKET_LIFE: Duration = Duration::from_secs(120);
/// How much before its moment a ticket already lets its device in (the wait is measured from
/// the answer's arrival, the moment from its sending).
const TICKET_EARLY: Duration = Duration::from_millis(50);
/// How often a full table of tickets is searched for lapsed ones.
const TICKET_PRUNE_EVERY: Duration = Duration::from_secs(1);

impl Tickets {
    fn lock(&self) -> std::sync::MutexGuard<'_, TicketState> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// `device` was asked at `now` to come back at `at` (replacing any moment it had).
    pub(crate) fn give(&self, device: DeviceId, at: Instant, now: Instant) {
        let mut state = self.lock();
        if state.due.len() >= TICKETS_MAX && !state.due.contains_key(&device) {
            let prune = state
                .pruned
                .is_none_or(|p| now.saturating_duration_since(p) >= TICKET_PRUNE_EVERY);
            if prune {
                state.pruned = Some(now);
                state.due.retain(|_, t| !lapsed(*t, now));
            }
            if state.due.len() >= TICKETS_MAX {
                return;
            }
        }
        state.due.insert(device, at);
    }

    /// Whether `device` is back at `now` within its ticket's time (a lapsed ticket goes).
    pub(crate) fn due(&self, device: &DeviceId, now: Instant) -> bool {
        let mut state = self.lock();
        let Some(at) = state.due.get(device).copied() else {
            return false;
        };
        if lapsed(at, now) {
            state.due.remove(device);
            return false;
        }
        now >= at.checked_sub(TICKET_EARLY).unwrap_or(at)
    }

    /// `device` got a session: its ticket, if any, goes.
    pub(crate) fn forget(&self, device: &DeviceId) {
        self.lock().due.remove(device);
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.lock().due.len()
    }
}

/// Whether a ticket for `at` no longer lets its device in at `now`.
fn lapsed(at: Instant, now: Instant) -> bool {
    at.checked_add(TICKET_LIFE).is_none_or(|end| now > end)
}

/// A session slot for the authenticated `device` at `now`, or how long to ask it to wait: one
/// of `sessions`, or, when they are full and the device is back at the moment its ticket
/// gives, one of `overdraft`. Any other device turned away, and one back at its moment
/// with the overdraft full too, is asked for a moment of its own by `backlog`, which its
/// ticket keeps. A device given a session has no ticket left.
///
/// A due device finding the overdraft full gets a moment from the queue, not a short wait:
/// session 35's review had it asked back after `busy_retry_after` (2 s) keeping its ticket,
/// and such devices, back while the overdraft was still full, spent their 3 retries in a few
/// seconds: 1–20 % of 1,000 devices failed a round where the queue's moments lost at most 1
/// (docs/PERFORMANCE.md, "A relay's books in journals, and busy devices queued again").
pub(crate) fn claim_session(
    sessions: &Arc<Slots<()>>,
    overdraft: &Arc<Slots<()>>,
    tickets: &Tickets,
    backlog: &Backlog,
    device: DeviceId,
    now: Instant,
) -> Result<Slot<()>, Duration> {
    if let Some(slot) = sessions.claim(()) {
        tickets.forget(&device);
        return Ok(slot);
    }
    if tickets.due(&device, now) {
        if let Some(slot) = overdraft.claim(()) {
            tickets.forget(&device);
            return Ok(slot);
        }
    }
    let wait = backlog.turn_away_at(now);
    if let Some(at) = now.checked_add(wait) {
        tickets.give(device, at, now);
    }
    Err(wait)
}

/// Most connections held at once while their busy answer drains; beyond it the oldest is
/// closed (a flood of connections costs a bounded set of sockets; a server's limit of open
/// files must leave room for it, for `max_sessions` and for their overdraft).
const HELD_MAX: usize = 1024;
/// Most connections waiting to be answered; beyond it a connection is closed unanswered (a
/// thousand devices arriving together are all answered).
const QUEUED_MAX: usize = 1024;
/// How long a turned-away connection is held for its peer to read the answer and close (a
/// cardlog device reads it right after sending its 53-byte message 1, and closes).
const HOLD: Duration = Duration::from_secs(1);
/// Bytes read and dropped from one turned-away connection before it is closed (message 1
/// and its frame are 57).
const DRAIN_BYTES_MAX: usize = 1024;
/// How often held connections are drained.
const TICK: Duration = Duration::from_millis(20);

/// Turns away connections a server cannot serve, on a thread of its own so the accepting
/// loop never waits on a slow peer: writes the busy answer, shuts the sending half, and
/// reads and drops what the peer still sends (its handshake message 1) until it closes or
/// [`HOLD`] passes. Closing a socket with unread bytes would reset the connection and could
/// destroy the answer before the peer reads it.
pub(crate) struct Refuser {
    tx: Option<crossbeam_channel::Sender<(TcpStream, Duration)>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Refuser {
    /// Starts the thread.
    pub(crate) fn start() -> Refuser {
        let (tx, rx) = crossbeam_channel::bounded::<(TcpStream, Duration)>(QUEUED_MAX);
        let thread = std::thread::Builder::new()
            .name("cardlog-busy".into())
            .spawn(move || refuse_loop(&rx))
            .ok();
        Refuser {
            tx: Some(tx),
            thread,
        }
    }

    /// Answers `stream` busy, asking it to come back after `retry_after` (what it returns:
    /// called once the connection is sure to be answered). If the refuser is itself full,
    /// the connection is closed and `retry_after` is not called.
    pub(crate) fn refuse(&self, stream: TcpStream, retry_after: impl FnOnce() -> Duration) {
        let Some(tx) = &self.tx else {
            return;
        };
        if tx.is_full() {
            return;
        }
        // (The accepting loop is the only sender: room seen is room kept.)
        let _ = tx.try_send((stream, retry_after()));
    }
}

impl Drop for Refuser {
    /// Stops the thread (it closes what it holds at once) and waits for it.
    fn drop(&mut self) {
        self.tx = None;
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// One turned-away connection: until when it is held, and the bytes drained from it.
struct Held {
    stream: TcpStream,
    until: Instant,
    drained: usize,
}

fn refuse_loop(rx: &crossbeam_channel::Receiver<(TcpStream, Duration)>) {
    let mut held: std::collections::VecDeque<Held> = Default::default();
    let mut sink = [0u8; DRAIN_BYTES_MAX];
    let mut next_drain = Instant::now() + TICK;
    loop {
        // Answer each connection as it arrives; drain the held ones once per tick, however
        // many arrive.
        let arrived = if held.is_empty() {
            match rx.recv() {
                Ok(stream) => Some(stream),
                // The server stopped and nothing is held.
                Err(_) => return,
            }
        } else {
            match rx.recv_deadline(next_drain) {
                Ok(stream) => Some(stream),
                Err(crossbeam_channel::RecvTimeoutError::Timeout) => None,
                // The server stopped: the held connections still drain (at most HOLD), so
                // their answers are not lost to a reset.
                Err(crossbeam_channel::RecvTimeoutError::Disconnected) => {
                    while !held.is_empty() {
                        std::thread::sleep(TICK);
                        drain(&mut held, &mut sink);
                    }
                    return;
                }
            }
        };
        if let Some((stream, retry_after)) = arrived {
            if answer(&stream, &busy_frame(retry_after)) {
                if held.len() >= HELD_MAX {
                    held.pop_front();
                }
                held.push_back(Held {
                    stream,
                    until: Instant::now() + HOLD,
                    drained: 0,
                });
            }
        }
        if Instant::now() >= next_drain {
            drain(&mut held, &mut sink);
            next_drain = Instant::now() + TICK;
        }
    }
}

/// Reads and drops what each held connection sent, closing those whose peer closed, that
/// sent more than [`DRAIN_BYTES_MAX`], or that outstayed [`HOLD`].
fn drain(held: &mut std::collections::VecDeque<Held>, sink: &mut [u8]) {
    let now = Instant::now();
    held.retain_mut(|h| {
        if now >= h.until {
            return false;
        }
        loop {
            let room = DRAIN_BYTES_MAX.saturating_sub(h.drained);
            let Some(buf) = sink.get_mut(..room).filter(|b| !b.is_empty()) else {
                return false;
            };
            match h.stream.read(buf) {
                Ok(0) => return false,
                Ok(n) => h.drained += n,
                Err(e) if e.kind() == ErrorKind::WouldBlock => return true,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(_) => return false,
            }
        }
    });
}

/// Writes the answer without waiting (it is far smaller than any socket buffer) and shuts
/// the sending half; false if the connection is already gone.
fn answer(mut stream: &TcpStream, frame: &[u8]) -> bool {
    stream.set_nonblocking(true).is_ok()
        && stream.write_all(frame).is_ok()
        && stream.shutdown(Shutdown::Write).is_ok()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]

    use super::*;

    #[test]
    fn waits_are_the_ask_or_the_backoff_up_to_a_fifth_more_and_stop_at_the_cap() {
        let retry = Retry {
            attempts: 5,
            most_wait: Duration::from_secs(10),
        };
        // The ask, or the backoff when it is larger (500 ms doubled per retry), never less,
        // at most 20 % more.
        for (attempt, asked, base) in [
            (0u32, 1000u64, 1000u64),
            (1, 1000, 1000),
            (2, 1000, 2000),
            (3, 3000, 4000),
            (0, 7000, 7000),
        ] {
            let w = retry.wait(attempt, asked).as_millis() as u64;
            assert!(w >= base && w <= base * 12 / 10, "{attempt}: {w}");
        }
        assert_eq!(retry.wait(5, 1000), Duration::from_secs(10));
        assert_eq!(retry.wait(40, u64::MAX), Duration::from_secs(10));
        // A server asking for nothing still gets the backoff.
        assert!(retry.wait(0, 0) >= Duration::from_millis(500));
        // Never before the moment asked, over many draws.
        assert!((0..1_000).all(|_| retry.wait(0, 3000) >= Duration::from_secs(3)));
        let no_wait = Retry {
            attempts: 3,
            most_wait: Duration::ZERO,
        };
        assert_eq!(no_wait.wait(2, 5000), RETRY_WAIT_MIN);
        // Spread: not every wait the same.
        let waits: std::collections::BTreeSet<Duration> =
            (0..20).map(|_| retry.wait(0, 1000)).collect();
        assert!(waits.len() > 1, "{waits:?}");
    }

    #[test]
    fn a_ticket_is_due_from_its_moment_until_it_lapses() {
        let tickets = Tickets::default();
        let now = Instant::now();
        let (phone, tablet) = (DeviceId([1; 16]), DeviceId([2; 16]));
        let at = now + Duration::from_secs(2);
        tickets.give(phone, at, now);
        // Another device, or this one too early: no, and the ticket stays.
        assert!(!tickets.due(&tablet, at));
        assert!(!tickets.due(&phone, now));
        assert!(!tickets.due(&phone, at - Duration::from_millis(100)));
        // From its moment (or just before it) until it lapses.
        assert!(tickets.due(&phone, at - TICKET_EARLY));
        assert!(tickets.due(&phone, at + TICKET_LIFE));
        // Given again: a later moment replaces the first.
        tickets.give(phone, at + Duration::from_secs(5), now);
        assert!(!tickets.due(&phone, at));
        assert!(tickets.due(&phone, at + Duration::from_secs(5)));
        tickets.forget(&phone);
        assert!(!tickets.due(&phone, at + Duration::from_secs(5)));
        // Lapsed: it goes.
        tickets.give(tablet, at, now);
        assert!(!tickets.due(&tablet, at + TICKET_LIFE + Duration::from_secs(1)));
        assert_eq!(tickets.len(), 0);
    }

    #[test]
    fn tickets_are_bounded_and_lapsed_ones_make_room_at_most_once_a_second() {
        let tickets = Tickets::default();
        let now = Instant::now();
        let device = |i: u32| {
            let mut id = [0u8; 16];
            id[..4].copy_from_slice(&i.to_be_bytes());
            DeviceId(id)
        };
        for i in 0..TICKETS_MAX as u32 {
            tickets.give(device(i), now, now);
        }
        // Full of live tickets: the next is not kept, the ones kept stay.
        let late = device(u32::MAX);
        tickets.give(late, now, now);
        assert_eq!(tickets.len(), TICKETS_MAX);
        assert!(!tickets.due(&late, now));
        assert!(tickets.due(&device(7), now));
        // Once they lapse, a full table makes room, but looks for lapsed ones at most once
        // a second: just after a search found none, the next is not kept either.
        let later = now + TICKET_LIFE + Duration::from_secs(1);
        tickets.give(late, later, now + Duration::from_millis(500));
        assert_eq!(tickets.len(), TICKETS_MAX);
        tickets.give(late, later, later);
        assert_eq!(tickets.len(), 1);
        assert!(tickets.due(&late, later));
    }

    /// A device back at its moment takes the overdraft when the sessions are full; with the
    /// overdraft full too it is given a later moment from the queue (its ticket moved to
    /// it); a device given a session has no ticket left.
    #[test]
    fn a_device_back_at_its_moment_takes_the_overdraft_once() {
        let sessions = Slots::new(1);
        let overdraft = Slots::new(1);
        let tickets = Tickets::default();
        let backlog = Backlog::new(1, Duration::from_secs(1));
        let (a, b, c) = (DeviceId([1; 16]), DeviceId([2; 16]), DeviceId([3; 16]));
        let now = Instant::now();
        let claim =
            |device, now| claim_session(&sessions, &overdraft, &tickets, &backlog, device, now);
        let held = claim(c, now).unwrap();
        // a and b are turned away, each asked for a moment.
        let wait_a = claim(a, now).unwrap_err();
        let wait_b = claim(b, now).unwrap_err();
        assert!(
            wait_a >= Duration::from_secs(1) && wait_b > wait_a,
            "{wait_a:?} {wait_b:?}"
        );
        // Both back at their moments, the one session still held: a takes the overdraft; b
        // finds it full and is given a later moment, its ticket moved there.
        let later = now + wait_b;
        let over = claim(a, later).unwrap();
        let wait_b2 = claim(b, later).unwrap_err();
        assert!(wait_b2 >= Duration::from_secs(1), "{wait_b2:?}");
        assert!(
            !tickets.due(&b, later),
            "not due again before its new moment"
        );
        assert!(tickets.due(&b, later + wait_b2));
        // a's ticket is used: another session of a's is turned away to a moment of its own.
        assert!(claim(a, later).unwrap_err() > wait_b2);
        drop(over);
        let over = claim(b, later + wait_b2).unwrap();
        assert!(!tickets.due(&b, later + wait_b2));
        // A device that gets an ordinary session loses its ticket too.
        drop(over);
        assert!(claim(c, later).is_err());
        drop(held);
        let _session = claim(c, later).unwrap();
        assert!(!tickets.due(&c, later + Duration::from_secs(1)));
    }

    #[test]
    fn devices_turned_away_together_are_asked_for_a_slot_each() {
        // 4 sessions at once, 2 s each: a session frees up every 500 ms.
        let backlog = Backlog::new(4, Duration::from_secs(1));
        backlog.lock().mean = Duration::from_secs(2);
        let now = Instant::now();
        let asks: Vec<Duration> = (0..10).map(|_| backlog.turn_away_at(now)).collect();
        // The first no sooner than the least ask; each next 500 ms later.
        assert_eq!(asks[0], Duration::from_secs(1));
        for pair in asks.windows(2) {
            assert_eq!(pair[1] - pair[0], Duration::from_millis(500), "{asks:?}");
        }
        // The queue reaches at most 2 minutes ahead, however many are turned away.
        for _ in 0..1000 {
            backlog.turn_away_at(now);
        }
        assert_eq!(backlog.turn_away_at(now), BACKLOG_MAX);
        // Sessions running for 10 s already: serving takes longer than the mean says, and
        // the slots spread out at once (2 × 10 s / 4 sessions = 5 s apart).
        let backlog = Backlog::new(4, Duration::from_secs(1));
        let base = backlog.lock().base;
        for _ in 0..4 {
            backlog.started();
        }
        // As if the four sessions had started at `base` and it is now 10 s later.
        backlog.lock().starts_ns = 0;
        let later = base + Duration::from_secs(10);
        let (first, second) = (backlog.turn_away_at(later), backlog.turn_away_at(later));
        assert_eq!(
            second - first,
            Duration::from_secs(5),
            "{first:?} {second:?}"
        );
        // Nonsense settings do not panic.
        let odd = Backlog::new(0, Duration::MAX);
        assert_eq!(odd.turn_away(), BACKLOG_MAX);
        odd.ended(odd.started(), true);
    }

    #[test]
    fn the_busy_frame_is_one_framed_busy_message() {
        let frame = busy_frame(Duration::from_millis(2500));
        let len = u32::from_be_bytes(frame[..4].try_into().unwrap()) as usize;
        assert_eq!(len, frame.len() - 4);
        assert_eq!(
            message::decode(&frame[4..]).unwrap(),
            Message::Busy {
                retry_after_ms: 2500
            }
        );
    }
}

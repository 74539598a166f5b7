//! A server at capacity says so: it answers a connection it cannot serve with one
//! [`Message::Busy`] in the clear and closes ([`Refuser`]), and an initiator waits and tries
//! again with backoff ([`Retry`]) instead of seeing a reset connection (docs/SYNC.md, "Busy").
//!
//! Who may send a `Busy`: anyone who can answer the connection, since it comes before the
//! handshake. All it can make a client do is wait (at most [`Retry::most_wait`] per attempt)
//! and give up after [`Retry::attempts`] retries, which is what dropping the connection
//! would have done anyway.

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::wire::message::{self, Message};

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
    /// `asked_ms`: the ask doubled per earlier retry, spread by ±25 % so that the devices a
    /// busy relay turned away do not all come back in the same instant, and capped at
    /// [`Retry::most_wait`]. At least 100 ms, so a server asking for 0 is not hammered.
    pub fn wait(&self, attempt: u32, asked_ms: u64) -> Duration {
        let doubled = asked_ms.max(100).saturating_mul(1u64 << attempt.min(16));
        // A spread in [0.75, 1.25) from the clock's nanoseconds: no two devices share them.
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or_default();
        let spread = u64::from(nanos % 500);
        let spread_ms = doubled.saturating_mul(750 + spread) / 1000;
        Duration::from_millis(spread_ms).min(self.most_wait)
    }
}

impl Default for Retry {
    /// Three retries, each wait at most 30 s: a relay that is still busy after about a
    /// minute of backing off is reported as busy.
    fn default() -> Self {
        Retry {
            attempts: 3,
            most_wait: Duration::from_secs(30),
        }
    }
}

/// The bytes a server writes to a connection it turns away: one framed [`Message::Busy`]
/// (the 4-byte length, then the message, as every TCP message).
pub(crate) fn busy_frame(retry_after: Duration) -> Vec<u8> {
    let busy = message::encode(&Message::Busy {
        retry_after_ms: u64::try_from(retry_after.as_millis()).unwrap_or(u64::MAX),
    });
    let mut frame = Vec::with_capacity(4 + busy.len());
    frame.extend_from_slice(&u32::try_from(busy.len()).unwrap_or(0).to_be_bytes());
    frame.extend_from_slice(&busy);
    frame
}

/// Most connections held at once while their busy answer drains; beyond it the oldest is
/// dropped without one (a flood of connections costs a bounded set of sockets).
const HELD_MAX: usize = 4096;
/// How long a turned-away connection is held for its peer to read the answer and close.
const HOLD: Duration = Duration::from_secs(2);
/// How often held connections are drained.
const TICK: Duration = Duration::from_millis(20);

/// Turns away connections a server cannot serve, on a thread of its own so the accepting
/// loop never waits on a slow peer: writes the busy answer, shuts the sending half, and
/// reads and drops what the peer still sends (its handshake message 1) until it closes or
/// [`HOLD`] passes. Closing a socket with unread bytes would reset the connection and could
/// destroy the answer before the peer reads it.
pub(crate) struct Refuser {
    tx: Option<crossbeam_channel::Sender<TcpStream>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Refuser {
    /// Starts the thread; every connection handed over is answered busy with `retry_after`.
    pub(crate) fn start(retry_after: Duration) -> Refuser {
        let (tx, rx) = crossbeam_channel::bounded::<TcpStream>(HELD_MAX);
        let frame = busy_frame(retry_after);
        let thread = std::thread::Builder::new()
            .name("cardlog-busy".into())
            .spawn(move || refuse_loop(&rx, &frame))
            .ok();
        Refuser {
            tx: Some(tx),
            thread,
        }
    }

    /// Answers `stream` busy. If the refuser is itself full, the connection is dropped.
    pub(crate) fn refuse(&self, stream: TcpStream) {
        if let Some(tx) = &self.tx {
            let _ = tx.try_send(stream);
        }
    }
}

impl Drop for Refuser {
    fn drop(&mut self) {
        self.tx = None;
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn refuse_loop(rx: &crossbeam_channel::Receiver<TcpStream>, frame: &[u8]) {
    let mut held: std::collections::VecDeque<(TcpStream, Instant)> = Default::default();
    let mut sink = [0u8; 4096];
    let mut open = true;
    while open || !held.is_empty() {
        let first = if held.is_empty() && open {
            rx.recv().ok()
        } else {
            match rx.recv_timeout(TICK) {
                Ok(stream) => Some(stream),
                Err(crossbeam_channel::RecvTimeoutError::Timeout) => None,
                Err(crossbeam_channel::RecvTimeoutError::Disconnected) => {
                    open = false;
                    None
                }
            }
        };
        if first.is_none() && held.is_empty() {
            open = false;
        }
        for stream in first.into_iter().chain(rx.try_iter()) {
            if answer(&stream, frame) {
                if held.len() >= HELD_MAX {
                    held.pop_front();
                }
                held.push_back((stream, Instant::now() + HOLD));
            }
        }
        let now = Instant::now();
        held.retain_mut(|(stream, until)| {
            if now >= *until {
                return false;
            }
            loop {
                match stream.read(&mut sink) {
                    Ok(0) => return false,
                    Ok(_) => {}
                    Err(e) if e.kind() == ErrorKind::WouldBlock => return true,
                    Err(e) if e.kind() == ErrorKind::Interrupted => {}
                    Err(_) => return false,
                }
            }
        });
    }
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
    fn waits_double_per_retry_within_a_quarter_and_stop_at_the_cap() {
        let retry = Retry {
            attempts: 5,
            most_wait: Duration::from_secs(10),
        };
        for (attempt, base) in [(0u32, 1000u64), (1, 2000), (2, 4000)] {
            let w = retry.wait(attempt, 1000).as_millis() as u64;
            assert!(w >= base * 3 / 4 && w < base * 5 / 4, "{attempt}: {w}");
        }
        assert_eq!(retry.wait(4, 1000), Duration::from_secs(10));
        assert_eq!(retry.wait(40, u64::MAX), Duration::from_secs(10));
        assert!(retry.wait(0, 0) >= Duration::from_millis(75));
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

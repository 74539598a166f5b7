//! Who a server lets in, and when (docs/SYNC.md, "Busy"): a connection first holds a
//! handshake slot ([`Admission::max_handshakes`], cheap and short-lived: the handshake has
//! its own deadline), and only a peer the handshake authenticated and the store admitted
//! takes a session slot, within the server's `max_sessions` and its device's
//! `max_sessions_per_device`. So connections that idle or trickle before authenticating (a
//! stranger needs no key to open them) hold handshake slots only, for seconds, and never the
//! sessions members sync in.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use cardlog_core::DeviceId;

use crate::busy::Backlog;

/// A server's counts of connections and sessions.
pub(crate) struct Admission {
    max_handshakes: usize,
    max_sessions: usize,
    max_per_device: usize,
    retry_after: Duration,
    handshaking: AtomicUsize,
    sessions: AtomicUsize,
    per_device: Mutex<HashMap<DeviceId, usize>>,
    pub(crate) backlog: Backlog,
}

/// Why an authenticated peer was turned away, and how long it is asked to wait.
pub(crate) struct TurnedAway {
    pub(crate) why: String,
    pub(crate) retry_after: Duration,
}

impl Admission {
    pub(crate) fn new(
        max_handshakes: usize,
        max_sessions: usize,
        max_per_device: usize,
        retry_after: Duration,
    ) -> Admission {
        Admission {
            max_handshakes,
            max_sessions,
            max_per_device,
            retry_after,
            handshaking: AtomicUsize::new(0),
            sessions: AtomicUsize::new(0),
            per_device: Mutex::default(),
            backlog: Backlog::new(max_sessions, retry_after),
        }
    }

    /// A connection accepted: a handshake slot, or why not (called from the accepting loop
    /// only, so room seen is room kept). The caller asks the backlog for the wait only once
    /// the connection is sure to be answered (`Refuser::refuse`).
    pub(crate) fn connect(self: &Arc<Self>) -> Result<Ticket, String> {
        if self.handshaking.load(Ordering::SeqCst) >= self.max_handshakes {
            return Err(format!(
                "turned away (busy): already {} connections in their handshake",
                self.max_handshakes
            ));
        }
        self.handshaking.fetch_add(1, Ordering::SeqCst);
        Ok(Ticket {
            admission: Arc::clone(self),
            handshaking: true,
            device: None,
            began: None,
            served: false,
        })
    }

    fn lock_devices(&self) -> std::sync::MutexGuard<'_, HashMap<DeviceId, usize>> {
        self.per_device
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

/// One connection's place: a handshake slot until [`Ticket::admit`], then a session slot
/// and one of its device's; given back when dropped.
pub(crate) struct Ticket {
    admission: Arc<Admission>,
    handshaking: bool,
    device: Option<DeviceId>,
    /// When its session started ([`Backlog::started`]), and whether it went through.
    began: Option<Instant>,
    served: bool,
}

impl Ticket {
    /// The session went through: its time counts in the backlog's mean.
    pub(crate) fn served(&mut self) {
        self.served = true;
    }

    /// The handshake authenticated `device` and the store admitted it: its handshake slot
    /// is given back and a session slot taken, or it is told why not and when to come back.
    pub(crate) fn admit(&mut self, device: DeviceId) -> Result<(), TurnedAway> {
        let a = &self.admission;
        // A device turned away keeps its handshake slot until its connection is gone (it is
        // told why, then closed), so such connections stay counted.
        let mut devices = a.lock_devices();
        let held = devices.get(&device).copied().unwrap_or(0);
        if held >= a.max_per_device {
            return Err(TurnedAway {
                why: format!(
                    "turned away (busy): device {device} already holds {} sessions",
                    a.max_per_device
                ),
                retry_after: a.retry_after,
            });
        }
        // Under the devices' lock, so two sessions cannot both take the last slot.
        if a.sessions.load(Ordering::SeqCst) >= a.max_sessions {
            return Err(TurnedAway {
                why: format!(
                    "turned away (busy): already serving {} sessions",
                    a.max_sessions
                ),
                retry_after: a.backlog.turn_away(),
            });
        }
        if self.handshaking {
            self.handshaking = false;
            a.handshaking.fetch_sub(1, Ordering::SeqCst);
        }
        a.sessions.fetch_add(1, Ordering::SeqCst);
        devices.insert(device, held + 1);
        self.device = Some(device);
        self.began = Some(a.backlog.started());
        Ok(())
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        let a = &self.admission;
        if let Some(began) = self.began.take() {
            a.backlog.ended(began, self.served);
        }
        if self.handshaking {
            a.handshaking.fetch_sub(1, Ordering::SeqCst);
        }
        if let Some(device) = self.device.take() {
            a.sessions.fetch_sub(1, Ordering::SeqCst);
            let mut devices = a.lock_devices();
            if let Some(n) = devices.get_mut(&device) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    devices.remove(&device);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn handshakes_and_sessions_are_counted_apart_and_given_back() {
        let a = Arc::new(Admission::new(2, 1, 1, Duration::from_millis(300)));
        let (one, two) = (DeviceId([1; 16]), DeviceId([2; 16]));
        let mut first = a.connect().ok().unwrap();
        let second = a.connect().ok().unwrap();
        // Two connections in their handshake: a third is turned away before it.
        assert!(a.connect().is_err());
        // One authenticates: its handshake slot is free again, and it holds the session.
        first.admit(one).ok().unwrap();
        let mut third = a.connect().ok().unwrap();
        // The one session is taken: another device is asked to come back.
        let busy = third.admit(two).err().unwrap();
        assert!(busy.why.contains("1 sessions"), "{}", busy.why);
        // A device turned away keeps its handshake slot until its connection goes.
        assert!(a.connect().is_err());
        drop(second);
        // The same device again: over its own slots, asked back after the set wait.
        let mut fourth = a.connect().ok().unwrap();
        let busy = fourth.admit(one).err().unwrap();
        assert!(busy.why.contains(&format!("device {one}")), "{}", busy.why);
        assert_eq!(busy.retry_after, Duration::from_millis(300));
        drop((third, fourth));
        drop(first);
        assert_eq!(a.sessions.load(Ordering::SeqCst), 0);
        assert_eq!(a.handshaking.load(Ordering::SeqCst), 0);
        assert!(a.lock_devices().is_empty());
        let mut fifth = a.connect().ok().unwrap();
        fifth.admit(two).ok().unwrap();
    }
}

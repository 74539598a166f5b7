//! How many bytes of received messages a server holds at once, across all its sessions
//! ([`Budget`]): a message's declared length is reserved before its bytes are read, and
//! released when the session asks for its next message or ends. A session whose message
//! does not fit waits, within that message's deadline, for others to release theirs. One
//! message may take at most a quarter of the budget ([`Budget::message_max`]; a served
//! session refuses a longer one), so no one connection holds it all, and 32 members each
//! declaring a 256 MiB message hold at most the budget, not 8 GiB (docs/SECURITY.md,
//! "Threat model").

use std::sync::{Condvar, Mutex, PoisonError};
use std::time::Instant;

/// A server's budget of received message bytes (see the module).
#[derive(Debug)]
pub struct Budget {
    limit: u64,
    state: Mutex<State>,
    freed: Condvar,
}

#[derive(Debug, Default)]
struct State {
    held: u64,
    peak: u64,
}

impl Budget {
    /// A budget of `limit` bytes.
    pub fn new(limit: u64) -> Budget {
        Budget {
            limit: limit.max(1),
            state: Mutex::new(State::default()),
            freed: Condvar::new(),
        }
    }

    /// The budget's size in bytes.
    pub fn limit(&self) -> u64 {
        self.limit
    }

    /// The longest message a connection under this budget may receive: a quarter of it, so
    /// one connection (or one device's two) cannot hold it all.
    pub fn message_max(&self) -> u64 {
        (self.limit / 4).max(1)
    }

    /// The most bytes held at once so far.
    pub fn peak(&self) -> u64 {
        self.lock().peak
    }

    /// Bytes held now.
    pub fn held(&self) -> u64 {
        self.lock().held
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Reserves `bytes` (at most the whole budget), waiting until `deadline` for room;
    /// `None` if there was none by then.
    pub(crate) fn reserve(&self, bytes: u64, deadline: Instant) -> Option<u64> {
        let want = bytes.min(self.limit);
        let mut state = self.lock();
        while want > self.limit.saturating_sub(state.held) {
            let left = deadline.checked_duration_since(Instant::now())?;
            if left.is_zero() {
                return None;
            }
            state = self
                .freed
                .wait_timeout(state, left)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
        state.held = state.held.saturating_add(want);
        state.peak = state.peak.max(state.held);
        Some(want)
    }

    /// Gives back what [`Budget::reserve`] returned.
    pub(crate) fn release(&self, bytes: u64) {
        if bytes == 0 {
            return;
        }
        let mut state = self.lock();
        state.held = state.held.saturating_sub(bytes);
        drop(state);
        self.freed.notify_all();
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::sync::Arc;
    use std::time::Duration;

    use super::*;

    #[test]
    fn a_reservation_waits_for_room_and_gives_up_at_its_deadline() {
        let budget = Arc::new(Budget::new(1000));
        let soon = || Instant::now() + Duration::from_millis(100);
        let a = budget.reserve(800, soon()).unwrap();
        assert_eq!(
            budget.reserve(300, soon()),
            None,
            "no room while 800 are held"
        );
        assert_eq!(budget.reserve(200, soon()), Some(200));
        budget.release(200);
        // A message larger than the whole budget waits for all of it.
        let b = Arc::clone(&budget);
        let waiter =
            std::thread::spawn(move || b.reserve(5000, Instant::now() + Duration::from_secs(10)));
        std::thread::sleep(Duration::from_millis(50));
        budget.release(a);
        assert_eq!(waiter.join().unwrap(), Some(1000));
        assert_eq!(budget.held(), 1000);
        assert_eq!(budget.peak(), 1000);
    }
}

//! Slots counted per key, at most a limit held at once for each: a server's sessions per IP
//! address and per authenticated device ([`crate::transport::ServeOptions`]). A slot is a
//! guard: it is given back when dropped, by a session that ends, fails or panics alike, so a
//! key's count never leaks.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

/// Slots per key, at most `limit` held at once for each key.
#[derive(Debug)]
pub(crate) struct Slots<K> {
    limit: usize,
    held: Mutex<HashMap<K, usize>>,
}

/// One slot of a key; given back when dropped.
#[derive(Debug)]
pub(crate) struct Slot<K: Eq + Hash + Copy> {
    slots: Arc<Slots<K>>,
    key: K,
}

impl<K: Eq + Hash + Copy> Slots<K> {
    pub(crate) fn new(limit: usize) -> Arc<Self> {
        Arc::new(Slots {
            limit,
            held: Mutex::default(),
        })
    }

    /// The most slots one key may hold at once.
    pub(crate) fn limit(&self) -> usize {
        self.limit
    }

    /// A slot of `key`, or `None` when it holds `limit` already.
    pub(crate) fn claim(self: &Arc<Self>, key: K) -> Option<Slot<K>> {
        let mut held = self.lock();
        let n = held.entry(key).or_insert(0);
        if *n >= self.limit {
            if *n == 0 {
                held.remove(&key);
            }
            return None;
        }
        *n += 1;
        Some(Slot {
            slots: Arc::clone(self),
            key,
        })
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<K, usize>> {
        self.held.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl<K: Eq + Hash + Copy> Drop for Slot<K> {
    fn drop(&mut self) {
        let mut held = self.slots.lock();
        if let Some(n) = held.get_mut(&self.key) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                held.remove(&self.key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn a_key_holds_at_most_its_limit_and_a_dropped_slot_is_given_back() {
        let slots = Slots::new(2);
        let a = slots.claim('a').unwrap();
        let _a2 = slots.claim('a').unwrap();
        assert!(slots.claim('a').is_none(), "a holds its two");
        let _b = slots.claim('b').expect("another key has its own");
        drop(a);
        assert!(slots.claim('a').is_some(), "the dropped slot is free again");
    }

    #[test]
    fn a_panicking_holder_gives_its_slot_back() {
        let slots = Slots::new(1);
        let held = Arc::clone(&slots);
        let _ = std::thread::spawn(move || {
            let _slot = held.claim(7u8).unwrap();
            panic!("a session that panics");
        })
        .join();
        assert!(slots.claim(7u8).is_some());
        assert!(slots.lock().len() <= 1, "no count left behind");
    }

    #[test]
    fn keys_with_no_slot_held_are_not_kept() {
        let slots = Slots::new(0);
        assert!(slots.claim(1u8).is_none());
        let slots1 = Slots::new(1);
        drop(slots1.claim(1u8));
        assert!(slots.lock().is_empty() && slots1.lock().is_empty());
    }
}

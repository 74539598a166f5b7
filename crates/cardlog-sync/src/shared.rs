//! A store shared between threads ([`Shared`]): sessions with several peers, or a session and
//! an app's saves, each taking the lock for one store call, and a long job handing the lock to
//! waiting threads between its steps. The sync layer's use of it (`impl SyncStore for
//! Shared`) is in `transport.rs`.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// A replica shared between sessions: each store call takes the lock for its own duration,
/// so sessions with several peers interleave (every apply is atomic and idempotent).
///
/// A long job that releases the lock between steps (a session storing a large message,
/// [`crate::store::SyncStore::apply_shared`]) calls [`Shared::make_way`] between them: threads waiting in
/// [`Shared::lock`] are counted, and the job lets them take the lock before it takes it
/// again. Without that, the thread that just let go usually takes the lock back before the
/// woken waiter runs, and a save waits for several steps instead of one.
#[derive(Debug)]
pub struct Shared<S>(Arc<SharedInner<S>>);

#[derive(Debug)]
struct SharedInner<S> {
    store: Mutex<S>,
    /// Threads blocked in [`Shared::lock`].
    waiting: AtomicUsize,
    /// Locks taken after waiting, ever ([`Shared::make_way`] counts those it waits for).
    taken: AtomicUsize,
}

impl<S> Clone for Shared<S> {
    fn clone(&self) -> Self {
        Self(Arc::clone(&self.0))
    }
}

/// The longest [`Shared::make_way`] waits for waiters to take the lock: a stream of waiters
/// cannot stop the job.
const MAKE_WAY_MAX: Duration = Duration::from_millis(20);

impl<S> Shared<S> {
    /// Shares `store`.
    pub fn new(store: S) -> Self {
        Self(Arc::new(SharedInner {
            store: Mutex::new(store),
            waiting: AtomicUsize::new(0),
            taken: AtomicUsize::new(0),
        }))
    }

    /// The store, locked. A panic in another holder does not make it unusable: every change
    /// to the store is atomic, so there is no half-done state to protect.
    pub fn lock(&self) -> MutexGuard<'_, S> {
        match self.0.store.try_lock() {
            Ok(guard) => return guard,
            Err(std::sync::TryLockError::Poisoned(poisoned)) => return poisoned.into_inner(),
            Err(std::sync::TryLockError::WouldBlock) => {}
        }
        self.0.waiting.fetch_add(1, Ordering::SeqCst);
        let guard = self
            .0
            .store
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        // In this order, a make_way that counts this thread as waiting also finds this lock
        // not yet counted taken, or returns early; never waits for a lock already taken.
        self.0.waiting.fetch_sub(1, Ordering::SeqCst);
        self.0.taken.fetch_add(1, Ordering::SeqCst);
        guard
    }

    /// Called without the lock, between two steps of a long job: returns once as many
    /// threads as were waiting for the lock when it was called have taken it (or after 20 ms
    /// at most), so they go before the job's next step. Threads that start waiting later,
    /// such as another job coming back for its next step, are not waited for.
    pub fn make_way(&self) {
        self.make_way_within(MAKE_WAY_MAX);
    }

    fn make_way_within(&self, most: Duration) {
        let waiting = self.0.waiting.load(Ordering::SeqCst);
        if waiting == 0 {
            return;
        }
        let target = self.0.taken.load(Ordering::SeqCst).wrapping_add(waiting);
        let deadline = Instant::now() + most;
        // `taken` only grows (wrapping after usize::MAX locks): how far it still is from
        // the target, in the wrapping sense.
        while target.wrapping_sub(self.0.taken.load(Ordering::SeqCst)) as isize > 0
            && Instant::now() < deadline
        {
            std::thread::yield_now();
        }
    }

    /// Whether this is the only handle to the store (no session holds another): what a relay
    /// asks before it closes a book nobody uses.
    pub fn is_unique(&self) -> bool {
        Arc::strong_count(&self.0) == 1
    }

    /// The store, once no other handle shares it; `Err(self)` otherwise.
    pub fn into_inner(self) -> Result<S, Self> {
        match Arc::try_unwrap(self.0) {
            Ok(inner) => Ok(inner
                .store
                .into_inner()
                .unwrap_or_else(|poisoned| poisoned.into_inner())),
            Err(arc) => Err(Self(arc)),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn make_way_lets_a_waiting_thread_take_the_lock_first() {
        let shared = Shared::new(0u32);
        let held = shared.lock();
        let waiter = {
            let shared = shared.clone();
            std::thread::spawn(move || {
                let mut n = shared.lock();
                *n += 1;
                // Held long enough for the job's next try to find it taken.
                std::thread::sleep(Duration::from_millis(200));
            })
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while shared.0.waiting.load(Ordering::SeqCst) == 0 {
            assert!(Instant::now() < deadline, "the waiter never waited");
            std::thread::yield_now();
        }
        // Asleep in the lock by now, not spinning: a lock taken again at once would
        // usually beat it.
        std::thread::sleep(Duration::from_millis(50));
        drop(held);
        // (make_way gives up after 20 ms; a loaded test machine may take longer to wake it.)
        shared.make_way_within(Duration::from_secs(10));
        // The waiter holds the lock now: the job's next step waits for it.
        assert!(matches!(
            shared.0.store.try_lock(),
            Err(std::sync::TryLockError::WouldBlock)
        ));
        assert_eq!(*shared.lock(), 1);
        waiter.join().unwrap();
        assert!(shared.into_inner().is_ok());
    }
}

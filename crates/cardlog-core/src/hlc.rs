//! A device's timestamps: each op is stamped with the device's calibrated real time at the
//! edit (docs/SEMANTICS.md, "Time"), whatever it stamped before and whatever it received. A
//! clock that was wrong and is set right stamps right from then on; a wild timestamp received
//! from a peer is reported, never adopted.
//!
//! Timestamps only order *concurrent* edits (semantics S3): an author's own order comes from
//! its chain (seq, prev) and causality from the writes an edit replaces, so timestamps need
//! not increase along a chain. The counter orders a device's edits within one millisecond.
//!
//! The clock is pure: callers read an injectable [`WallClock`] and pass the reading in, so the
//! rules are testable without time passing.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bincode::{Decode, Encode};

/// A timestamp: calibrated wall time in milliseconds since the Unix epoch, and a counter that
/// orders one device's edits within one millisecond. Ordered by `wall_ms`, then `counter`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Encode, Decode)]
pub struct Hlc {
    /// Milliseconds since 1970-01-01T00:00:00Z, as the writing device believed (calibrated).
    pub wall_ms: u64,
    /// Tie-breaker within one millisecond.
    pub counter: u32,
}

impl Hlc {
    /// The smallest timestamp strictly greater than `self` (the largest timestamp there is,
    /// `u64::MAX.u32::MAX`, has none: it gives `u64::MAX.0`).
    pub fn successor(self) -> Hlc {
        match self.counter.checked_add(1) {
            Some(counter) => Hlc {
                wall_ms: self.wall_ms,
                counter,
            },
            None => Hlc {
                wall_ms: self.wall_ms.saturating_add(1),
                counter: 0,
            },
        }
    }
}

impl std::fmt::Display for Hlc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.wall_ms, self.counter)
    }
}

/// A source of wall-clock time in milliseconds since the Unix epoch. Injected so tests and
/// scripted scenarios (`CARDLOG_NOW`) control time.
pub trait WallClock: Send + Sync {
    /// Current wall time, milliseconds since the Unix epoch.
    fn now_ms(&self) -> u64;

    /// Milliseconds on a clock nobody sets: it only moves forward with real time, whatever
    /// happens to the wall clock (the time since boot where the platform has it), or `None`
    /// where there is none. A calibration is dropped when the wall clock moved apart from
    /// it (someone set the clock: [`HlcClock::check`]).
    fn monotonic_ms(&self) -> Option<u64> {
        None
    }
}

/// The operating system's clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl WallClock for SystemClock {
    fn now_ms(&self) -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
            .unwrap_or(0)
    }

    /// The time since boot, from `/proc/uptime` (Linux), so that it compares across runs of
    /// the program; `None` elsewhere (a calibration then lasts [`CALIBRATION_TTL_MS`]).
    ///
    /// Every save reads it, and reading the file costs an open, a read and a close: a reading
    /// less than [`UPTIME_REUSE_MS`] old is carried forward by the process's own monotonic
    /// clock instead, unless the wall clock moved apart from it meanwhile (a suspend, which
    /// the process's clock does not count, or someone setting the clock): then the file is
    /// read again.
    fn monotonic_ms(&self) -> Option<u64> {
        uptime::carried_forward(self.now_ms())
    }
}

/// How long a reading of `/proc/uptime` is carried forward by the process's monotonic clock
/// ([`SystemClock::monotonic_ms`]).
pub const UPTIME_REUSE_MS: u64 = 1_000;

mod uptime {
    //! `/proc/uptime`, read at most about once a second per process.

    use std::sync::Mutex;
    use std::time::Instant;

    /// How far the wall clock may move apart from the process's clock before a reading is
    /// not carried forward.
    const DRIFT_MS: u64 = 50;

    /// The last reading: when (the process's clock, the wall clock), what it said, and the
    /// most this process returned since.
    struct Reading {
        at: Instant,
        wall_ms: u64,
        uptime_ms: u64,
        returned: u64,
    }

    static LAST: Mutex<Option<Reading>> = Mutex::new(None);

    /// The time since boot at wall time `wall_ms`; never less than it returned before (the
    /// file's 10 ms steps could otherwise take a carried reading back).
    pub(super) fn carried_forward(wall_ms: u64) -> Option<u64> {
        let now = Instant::now();
        let mut last = LAST.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(r) = last.as_mut() {
            let passed =
                u64::try_from(now.saturating_duration_since(r.at).as_millis()).unwrap_or(u64::MAX);
            let wall_passed = i128::from(wall_ms) - i128::from(r.wall_ms);
            if passed < super::UPTIME_REUSE_MS
                && (wall_passed - i128::from(passed)).unsigned_abs() <= u128::from(DRIFT_MS)
            {
                r.returned = r.returned.max(r.uptime_ms.checked_add(passed)?);
                return Some(r.returned);
            }
        }
        let uptime_ms = read()?;
        let returned = last
            .as_ref()
            .map_or(uptime_ms, |r| r.returned.max(uptime_ms));
        *last = Some(Reading {
            at: now,
            wall_ms,
            uptime_ms,
            returned,
        });
        Some(returned)
    }

    /// `/proc/uptime`'s first field in milliseconds.
    fn read() -> Option<u64> {
        let text = std::fs::read_to_string("/proc/uptime").ok()?;
        let seconds = text.split_whitespace().next()?;
        let (whole, fraction) = seconds.split_once('.').unwrap_or((seconds, "0"));
        let whole: u64 = whole.parse().ok()?;
        let hundredths: u64 = fraction.get(..2).unwrap_or(fraction).parse().ok()?;
        whole
            .checked_mul(1000)?
            .checked_add(hundredths.saturating_mul(10))
    }

    #[cfg(all(test, target_os = "linux"))]
    mod tests {
        #![allow(clippy::unwrap_used)]

        use super::*;
        use crate::hlc::{SystemClock, WallClock};

        /// A carried-forward reading moves with time and stays near a fresh one (the file's
        /// 10 ms steps, the carry's error, and room for a loaded machine).
        #[test]
        fn a_carried_reading_follows_the_file() {
            let first = SystemClock.monotonic_ms().unwrap();
            std::thread::sleep(std::time::Duration::from_millis(300));
            let carried = SystemClock.monotonic_ms().unwrap();
            let fresh = read().unwrap();
            assert!(carried >= first + 290, "{first} then {carried}");
            assert!(
                carried.abs_diff(fresh) <= 100,
                "carried {carried}, read {fresh}"
            );
        }
    }
}

/// A clock that only moves when told to; clones share one time. Its monotonic reading moves
/// with time passing ([`FakeClock::advance_ms`] forward), not when someone sets the clock
/// ([`FakeClock::set_ms`], or `advance_ms` backward).
#[derive(Debug, Clone, Default)]
pub struct FakeClock {
    wall: Arc<AtomicU64>,
    mono: Arc<AtomicU64>,
}

impl FakeClock {
    /// A fake clock reading `now_ms` (its monotonic reading starts at 0).
    pub fn new(now_ms: u64) -> Self {
        Self {
            wall: Arc::new(AtomicU64::new(now_ms)),
            mono: Arc::new(AtomicU64::new(0)),
        }
    }
    /// Sets the time, as a person sets a clock (no time passes).
    pub fn set_ms(&self, now_ms: u64) {
        self.wall.store(now_ms, Ordering::SeqCst);
    }
    /// Time passes (a positive delta), or the clock is set back (a negative one).
    pub fn advance_ms(&self, delta_ms: i64) {
        let now = self.wall.load(Ordering::SeqCst);
        self.set_ms(now.saturating_add_signed(delta_ms));
        if let Ok(passed) = u64::try_from(delta_ms) {
            let mono = self.mono.load(Ordering::SeqCst);
            self.mono
                .store(mono.saturating_add(passed), Ordering::SeqCst);
        }
    }
}

impl WallClock for FakeClock {
    fn now_ms(&self) -> u64 {
        self.wall.load(Ordering::SeqCst)
    }

    fn monotonic_ms(&self) -> Option<u64> {
        Some(self.mono.load(Ordering::SeqCst))
    }
}

/// Default bound on how far ahead of local (calibrated) time a received timestamp may be before
/// it is reported: 5 minutes.
pub const SKEW_BOUND_MS_DEFAULT: u64 = 5 * 60 * 1000;

/// How far the wall clock may drift from the monotonic one after a calibration before the
/// clock counts as set by someone, and the calibration is dropped: 2 minutes.
pub const CLOCK_CHANGE_MS: u64 = 2 * 60 * 1000;

/// How long a calibration holds when no monotonic reading can tell whether the clock was set
/// since (no monotonic clock, or a reboot since): 3 days.
pub const CALIBRATION_TTL_MS: u64 = 3 * 24 * 60 * 60 * 1000;

/// When a calibration was taken: the raw wall time and the monotonic reading then.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Anchor {
    /// Raw wall time, ms since the Unix epoch.
    pub wall_ms: u64,
    /// [`WallClock::monotonic_ms`] then.
    pub mono_ms: Option<u64>,
}

/// A received timestamp that was further ahead of the local clock than the bound. It is still
/// accepted (replay never depends on the receiver's clock) but reported, with its op's author.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SkewReport {
    /// The device that wrote it (the op's author).
    pub author: crate::id::DeviceId,
    /// The remote timestamp.
    pub remote: Hlc,
    /// Local calibrated wall time when it was seen.
    pub local_ms: u64,
    /// How far ahead the remote timestamp was.
    pub ahead_ms: u64,
}

/// A device's clock state: its last timestamp, its calibration (offset and when it was
/// taken) and its skew bound.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HlcClock {
    last: Hlc,
    offset_ms: i64,
    anchor: Option<Anchor>,
    skew_bound_ms: u64,
}

impl Default for HlcClock {
    fn default() -> Self {
        Self::new(Hlc::default(), 0, SKEW_BOUND_MS_DEFAULT)
    }
}

impl HlcClock {
    /// A clock resuming from `last` (the timestamp of its device's last op), with a
    /// calibration offset and skew bound.
    pub fn new(last: Hlc, offset_ms: i64, skew_bound_ms: u64) -> Self {
        Self {
            last,
            offset_ms,
            anchor: None,
            skew_bound_ms,
        }
    }

    /// The timestamp last issued.
    pub fn last(&self) -> Hlc {
        self.last
    }

    /// The calibration offset added to the raw wall clock.
    pub fn offset_ms(&self) -> i64 {
        self.offset_ms
    }

    /// The skew bound in milliseconds.
    pub fn skew_bound_ms(&self) -> u64 {
        self.skew_bound_ms
    }

    /// Raw wall time corrected by the calibration offset.
    pub fn calibrated_ms(&self, wall_ms: u64) -> u64 {
        wall_ms.saturating_add_signed(self.offset_ms)
    }

    /// Raw wall time corrected by the calibration offset if the calibration still holds at
    /// this reading ([`HlcClock::calibration_holds`]), else raw wall time: what a clock that
    /// cannot drop a lapsed calibration yet (a read) tells.
    pub fn calibrated_at(&self, wall_ms: u64, mono_ms: Option<u64>) -> u64 {
        if self.calibration_holds(wall_ms, mono_ms) {
            self.calibrated_ms(wall_ms)
        } else {
            wall_ms
        }
    }

    /// The timestamp of a new local edit: calibrated wall time now. Within the millisecond of
    /// the last one, the next counter; otherwise counter 0, also when the clock went back (it
    /// was wrong and was set right, or the calibration changed): the real time at the edit is
    /// what decides among concurrent edits, not what the device stamped before.
    pub fn tick(&mut self, wall_ms: u64) -> Hlc {
        let now = self.calibrated_ms(wall_ms);
        self.last = if now == self.last.wall_ms {
            self.last.successor()
        } else {
            Hlc {
                wall_ms: now,
                counter: 0,
            }
        };
        self.last
    }

    /// Checks a timestamp seen on a received op against `now`, the local calibrated time
    /// ([`HlcClock::calibrated_at`]): one beyond `now + bound` is reported. The clock never
    /// moves for it (a peer's wild clock decides nothing about local stamps).
    pub fn observe(
        &self,
        author: crate::id::DeviceId,
        remote: Hlc,
        now: u64,
    ) -> Option<SkewReport> {
        let cap_ms = now.saturating_add(self.skew_bound_ms);
        (remote.wall_ms > cap_ms).then(|| SkewReport {
            author,
            remote,
            local_ms: now,
            ahead_ms: remote.wall_ms - now,
        })
    }

    /// Learns the calibration offset from a peer's reported wall time: the peer's time is taken
    /// to be half a round trip old when it arrives. `sent_ms` and `received_ms` are raw local
    /// wall readings around the exchange, `mono_ms` the monotonic reading on receipt (the
    /// calibration's [`Anchor`]). Returns the new offset.
    pub fn calibrate(
        &mut self,
        peer_ms: u64,
        sent_ms: u64,
        received_ms: u64,
        mono_ms: Option<u64>,
    ) -> i64 {
        let half_rtt = received_ms.saturating_sub(sent_ms) / 2;
        let peer_now = i128::from(peer_ms) + i128::from(half_rtt);
        let offset = peer_now - i128::from(received_ms);
        self.offset_ms =
            i64::try_from(offset).unwrap_or(if offset < 0 { i64::MIN } else { i64::MAX });
        self.anchor = Some(Anchor {
            wall_ms: received_ms,
            mono_ms,
        });
        self.offset_ms
    }

    /// The same clock with its calibration taken at `anchor` (as stored with the offset).
    pub fn with_anchor(mut self, anchor: Option<Anchor>) -> Self {
        self.anchor = anchor;
        self
    }

    /// When the calibration in force was taken (`None`: never, or dropped).
    pub fn anchor(&self) -> Option<Anchor> {
        self.anchor
    }

    /// Whether the calibration still holds at this reading: the wall clock has moved as the
    /// monotonic clock did since it was taken (within [`CLOCK_CHANGE_MS`]), or, where that
    /// cannot be told, it is less than [`CALIBRATION_TTL_MS`] old and the wall clock has not
    /// gone back past it. An offset without an anchor (stored by an older build) does not
    /// hold.
    pub fn calibration_holds(&self, wall_ms: u64, mono_ms: Option<u64>) -> bool {
        let Some(anchor) = self.anchor else {
            return self.offset_ms == 0;
        };
        let wall_passed = i128::from(wall_ms) - i128::from(anchor.wall_ms);
        match (anchor.mono_ms, mono_ms) {
            (Some(then), Some(now)) if now >= then => {
                let mono_passed = i128::from(now - then);
                (wall_passed - mono_passed).unsigned_abs() <= u128::from(CLOCK_CHANGE_MS)
            }
            _ => {
                wall_passed >= -i128::from(CLOCK_CHANGE_MS)
                    && wall_passed <= i128::from(CALIBRATION_TTL_MS)
            }
        }
    }

    /// Drops a calibration that no longer holds at this reading
    /// ([`HlcClock::calibration_holds`]): the clock reads raw wall time again until the next
    /// calibration. Returns whether it dropped one.
    pub fn check(&mut self, wall_ms: u64, mono_ms: Option<u64>) -> bool {
        if self.offset_ms == 0 || self.calibration_holds(wall_ms, mono_ms) {
            return false;
        }
        self.offset_ms = 0;
        self.anchor = None;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_follow_the_clock_even_when_it_goes_back() {
        // Within one millisecond the counter orders a device's edits; a clock set back (it was
        // wrong) stamps the real time at the edit, not after what it stamped before.
        let mut c = HlcClock::default();
        let a = c.tick(86_400_000);
        let b = c.tick(86_400_000);
        assert!(a < b);
        assert_eq!(b.counter, 1);
        let fixed = c.tick(900);
        assert_eq!(
            fixed,
            Hlc {
                wall_ms: 900,
                counter: 0
            }
        );
        assert_eq!(c.tick(2000).wall_ms, 2000);
    }

    #[test]
    fn counter_overflow_carries_into_wall() {
        let h = Hlc {
            wall_ms: 7,
            counter: u32::MAX,
        };
        assert_eq!(
            h.successor(),
            Hlc {
                wall_ms: 8,
                counter: 0
            }
        );
    }

    #[test]
    fn observe_reports_a_timestamp_beyond_the_bound_and_never_moves_the_clock() {
        let mut c = HlcClock::default();
        let near = Hlc {
            wall_ms: 10_000 + 60_000,
            counter: 3,
        };
        let author = crate::id::DeviceId([7; 16]);
        assert_eq!(c.observe(author, near, 10_000), None);
        let far = Hlc {
            wall_ms: u64::MAX,
            counter: u32::MAX,
        };
        let report = c.observe(author, far, 10_000).expect("reported");
        assert_eq!(report.ahead_ms, u64::MAX - 10_000);
        assert_eq!(report.author, author);
        // Whatever was received, the next edit is stamped at the device's own time.
        assert_eq!(
            c.tick(10_000),
            Hlc {
                wall_ms: 10_000,
                counter: 0
            }
        );
    }

    #[test]
    fn calibration_uses_half_the_round_trip() {
        // The peer said 10_000 when asked at local 4_000 and answered at local 4_200: the peer
        // is 10_100 at local 4_200, an offset of 5_900.
        let mut c = HlcClock::default();
        assert_eq!(c.calibrate(10_000, 4_000, 4_200, None), 5_900);
        assert_eq!(c.tick(4_200).wall_ms, 10_100);
    }

    #[test]
    fn a_calibration_is_dropped_when_someone_sets_the_clock() {
        // Calibrated at raw 1_000_000 (monotonic 50) by +1 h; an hour of real time later the
        // wall and monotonic clocks agree: it holds.
        let hour = 3_600_000;
        let mut c = HlcClock::default();
        c.calibrate(1_000_000 + hour, 1_000_000, 1_000_000, Some(50));
        assert!(c.calibration_holds(1_000_000 + hour, Some(50 + hour)));
        assert!(!c.check(1_000_000 + hour, Some(50 + hour)));
        assert_eq!(c.tick(1_000_000 + hour).wall_ms, 1_000_000 + 2 * hour);
        // The user sets the clock an hour forward (to the right time): the wall clock moved
        // an hour more than time passed, and the offset goes.
        assert!(!c.calibration_holds(1_000_000 + 2 * hour, Some(50 + hour + 1)));
        assert!(c.check(1_000_000 + 2 * hour, Some(50 + hour + 1)));
        assert_eq!(c.offset_ms(), 0);
        assert_eq!(c.tick(1_000_000 + 2 * hour).wall_ms, 1_000_000 + 2 * hour);
    }

    #[test]
    fn without_a_monotonic_reading_a_calibration_expires_or_ends_when_the_clock_goes_back() {
        let mut c = HlcClock::default();
        c.calibrate(10_000_000, 5_000_000, 5_000_000, None);
        assert!(c.calibration_holds(5_000_000 + CALIBRATION_TTL_MS, None));
        assert!(!c.calibration_holds(5_000_000 + CALIBRATION_TTL_MS + 1, None));
        assert!(!c.calibration_holds(5_000_000 - CLOCK_CHANGE_MS - 1, None));
        // A monotonic reading from before a reboot (smaller than the anchor's) tells nothing.
        let mut d = HlcClock::default();
        d.calibrate(10_000_000, 5_000_000, 5_000_000, Some(1_000));
        assert!(d.calibration_holds(5_000_100, Some(10)));
        // An offset stored without an anchor does not hold.
        let legacy = HlcClock::new(Hlc::default(), 42, SKEW_BOUND_MS_DEFAULT);
        assert!(!legacy.calibration_holds(1, Some(1)));
    }

    #[test]
    fn a_fake_clock_set_by_hand_does_not_move_its_monotonic_reading() {
        let c = FakeClock::new(1_000);
        c.advance_ms(500);
        assert_eq!((c.now_ms(), c.monotonic_ms()), (1_500, Some(500)));
        c.set_ms(9_000);
        c.advance_ms(-1_000);
        assert_eq!((c.now_ms(), c.monotonic_ms()), (8_000, Some(500)));
    }

    #[test]
    fn fake_clock_is_shared_between_clones() {
        let a = FakeClock::new(5);
        let b = a.clone();
        a.advance_ms(10);
        assert_eq!(b.now_ms(), 15);
        a.advance_ms(-20);
        assert_eq!(b.now_ms(), 0);
    }
}

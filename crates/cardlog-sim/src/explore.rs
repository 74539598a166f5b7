//! Many generated schedules against one property, each drawn from a seed a person can replay.
//!
//! [`explore`] draws schedules from a proptest strategy, one per seed, and runs a property on
//! each. When one fails it shrinks it (proptest's own shrinking: fewer devices, fewer and
//! simpler actions) and returns a [`Failure`] that prints what the devices did, the minimal
//! schedule as a story, and the command that replays it:
//!
//! ```text
//! replay: CARDLOG_SIM_SEED=0x5be1d2c3a4f50617 cargo test -p my-app --test sync -- favourites --exact
//! ```
//!
//! Seeds are deterministic: the same test draws the same schedules on every run and every
//! machine (they derive from the test's name), so CI is reproducible. The environment
//! changes that:
//!
//! - `CARDLOG_SIM_SEED=S` runs only the schedule of seed S (the replay);
//! - `CARDLOG_SIM_CASES=N` runs N schedules instead of the test's own number;
//! - `CARDLOG_SIM_BASE=B` draws from other seeds (B, B+1, …): new ground for a long run.

use std::time::{Duration, Instant};

use proptest::strategy::{Strategy, ValueTree};
use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};

use crate::schedule::Schedule;
use crate::sim::Violation;

/// At most this many schedules are tried while shrinking a failure…
const SHRINK_RUNS: u32 = 512;
/// …and for at most this long.
const SHRINK_TIME: Duration = Duration::from_secs(60);

/// A property that failed on a generated schedule, shrunk.
#[derive(Clone)]
pub struct Failure {
    /// The seed that drew the failing schedule.
    pub seed: u64,
    /// The smallest schedule found that still fails.
    pub schedule: Schedule,
    /// How it fails (with the story of its run).
    pub violation: Violation,
    /// How many actions the schedule first drawn had.
    pub drawn_actions: usize,
    /// The command that replays it.
    pub replay: String,
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "property \"{}\" failed on the schedule of seed {:#018x} ({} actions drawn, {} \
             after shrinking)",
            self.violation.property,
            self.seed,
            self.drawn_actions,
            self.schedule.actions.len()
        )?;
        writeln!(f, "{}", self.violation)?;
        writeln!(f, "the schedule: {}", self.schedule)?;
        write!(f, "replay: {}", self.replay)
    }
}

/// A failure reads the same through `{:?}` (as `unwrap` prints it).
impl std::fmt::Debug for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "\n{self}")
    }
}

impl std::error::Error for Failure {}

/// Why [`explore`] stopped without checking every schedule.
#[derive(thiserror::Error)]
pub enum ExploreError {
    /// A schedule broke the property (shrunk).
    #[error("{0}")]
    Failed(Box<Failure>),
    /// A variable of the environment that steers the run is not a number.
    #[error("{var}={value:?} is not a number (decimal, or hexadecimal after 0x)")]
    Env {
        /// The variable.
        var: &'static str,
        /// What it holds.
        value: String,
    },
}

/// An error reads the same through `{:?}` (as `unwrap` and `main` print it).
impl std::fmt::Debug for ExploreError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "\n{self}")
    }
}

/// The seeds a run draws its schedules from: the environment's (module docs), else `cases`
/// seeds from the running test's name.
fn seeds(cases: u32) -> Result<Vec<u64>, ExploreError> {
    if let Some(seed) = env_u64("CARDLOG_SIM_SEED")? {
        return Ok(vec![seed]);
    }
    let cases = env_u64("CARDLOG_SIM_CASES")?.unwrap_or(u64::from(cases));
    let base = env_u64("CARDLOG_SIM_BASE")?.unwrap_or_else(|| name_seed(&test_name()));
    Ok((0..cases).map(|i| base.wrapping_add(i)).collect())
}

/// The schedule `strategy` draws from `seed` (what [`explore`] runs for that seed; `None` if
/// the strategy draws nothing).
pub fn schedule_of<S: Strategy<Value = Schedule>>(strategy: &S, seed: u64) -> Option<Schedule> {
    strategy
        .new_tree(&mut runner(seed))
        .ok()
        .map(|t| t.current())
}

/// Runs `property` on `cases` schedules drawn from `strategy` (fewer or more as the
/// environment says, see the module docs): the number of schedules checked, or the first
/// failure, shrunk. A property that panics fails (property "panicked").
pub fn explore<S, P>(strategy: S, cases: u32, mut property: P) -> Result<u32, ExploreError>
where
    S: Strategy<Value = Schedule>,
    P: FnMut(&Schedule) -> Result<(), Violation>,
{
    let mut checked = 0u32;
    for seed in seeds(cases)? {
        // A strategy that cannot draw a value draws nothing to check.
        let Ok(mut tree) = strategy.new_tree(&mut runner(seed)) else {
            continue;
        };
        let drawn = tree.current();
        checked = checked.saturating_add(1);
        let Err(first) = guarded(&mut property, &drawn) else {
            continue;
        };
        let (schedule, violation) = shrink(&mut tree, drawn.clone(), first, &mut property);
        return Err(ExploreError::Failed(Box::new(Failure {
            seed,
            schedule,
            violation,
            drawn_actions: drawn.actions.len(),
            replay: replay_command(seed),
        })));
    }
    Ok(checked)
}

/// The property on `s`, a panic in it turned into a violation.
fn guarded<P>(property: &mut P, s: &Schedule) -> Result<(), Violation>
where
    P: FnMut(&Schedule) -> Result<(), Violation>,
{
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| property(s))) {
        Ok(result) => result,
        Err(payload) => {
            let message = payload
                .downcast_ref::<&str>()
                .map(|m| (*m).to_owned())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "a panic without a message".into());
            Err(Violation::new("panicked", message))
        }
    }
}

/// Proptest's shrinking loop (simplify while the property still fails, step back when it
/// passes), then [`pared`]: the smallest failing schedule seen.
fn shrink<T, P>(
    tree: &mut T,
    mut best: Schedule,
    mut why: Violation,
    property: &mut P,
) -> (Schedule, Violation)
where
    T: ValueTree<Value = Schedule>,
    P: FnMut(&Schedule) -> Result<(), Violation>,
{
    let start = Instant::now();
    // Whether the schedule tried last failed: then simplify it further, else undo the last
    // simplification.
    let mut failing = true;
    for _ in 0..SHRINK_RUNS {
        let moved = if failing {
            tree.simplify()
        } else {
            tree.complicate()
        };
        if !moved || start.elapsed() > SHRINK_TIME {
            break;
        }
        let candidate = tree.current();
        // A simpler schedule counts only if it breaks the same property: a shrink that trades
        // the failure for another would report something else than what was found.
        match guarded(property, &candidate) {
            Err(v) if v.property == why.property => {
                best = candidate;
                why = v;
                failing = true;
            }
            _ => failing = false,
        }
    }
    pared(best, why, property, start)
}

/// Pares a shrunk schedule further, below the least length its strategy draws: what follows
/// the action the run failed at goes, then each action whose removal keeps the same property
/// failing (the latest first).
fn pared<P>(
    mut best: Schedule,
    mut why: Violation,
    property: &mut P,
    start: Instant,
) -> (Schedule, Violation)
where
    P: FnMut(&Schedule) -> Result<(), Violation>,
{
    if let Some(step) = why.step.filter(|s| *s < best.actions.len()) {
        let mut shorter = best.clone();
        shorter.actions.truncate(step);
        if let Err(v) = guarded(property, &shorter) {
            if v.property == why.property {
                (best, why) = (shorter, v);
            }
        }
    }
    for i in (0..best.actions.len()).rev() {
        if start.elapsed() > SHRINK_TIME {
            break;
        }
        let mut shorter = best.clone();
        shorter.actions.remove(i);
        if let Err(v) = guarded(property, &shorter) {
            if v.property == why.property {
                (best, why) = (shorter, v);
            }
        }
    }
    (best, why)
}

/// The test runner that draws the schedule of `seed`.
fn runner(seed: u64) -> TestRunner {
    let mut bytes = [0u8; 32];
    for chunk in bytes.chunks_mut(8) {
        chunk.copy_from_slice(&seed.to_le_bytes());
    }
    TestRunner::new_with_rng(
        Config::default(),
        TestRng::from_seed(RngAlgorithm::ChaCha, &bytes),
    )
}

/// A number from the environment, decimal or `0x` hexadecimal (`_` separators allowed);
/// unset is `None`, anything else an error (a replay that silently ran other seeds would pass).
fn env_u64(var: &'static str) -> Result<Option<u64>, ExploreError> {
    let Ok(value) = std::env::var(var) else {
        return Ok(None);
    };
    let v = value.trim().replace('_', "");
    let parsed = match v.strip_prefix("0x").or_else(|| v.strip_prefix("0X")) {
        Some(hex) => u64::from_str_radix(hex, 16).ok(),
        None => v.parse().ok(),
    };
    parsed.map(Some).ok_or(ExploreError::Env { var, value })
}

/// The running test's name (libtest names a test's thread after it), or the program's.
fn test_name() -> String {
    match std::thread::current().name() {
        Some(name) if name != "main" => name.to_owned(),
        _ => program().1,
    }
}

/// FNV-1a of a name: where a test's seeds start.
fn name_seed(name: &str) -> u64 {
    name.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// Whether this program is an example, and its name without cargo's hash suffix.
fn program() -> (bool, String) {
    let path = std::env::args().next().map(std::path::PathBuf::from);
    let example = path.as_ref().is_some_and(|p| {
        p.parent()
            .and_then(|d| d.file_name())
            .is_some_and(|d| d == "examples")
    });
    let stem = path
        .as_ref()
        .and_then(|p| p.file_stem())
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    // Test binaries are named `name-<16 hex digits>`.
    let name = match stem.rsplit_once('-') {
        Some((name, hash)) if hash.len() == 16 && hash.bytes().all(|b| b.is_ascii_hexdigit()) => {
            name.to_owned()
        }
        _ => stem,
    };
    (example, name)
}

/// The command that replays the schedule of `seed` in the program running now.
fn replay_command(seed: u64) -> String {
    let (example, program) = program();
    let package = std::env::var("CARGO_PKG_NAME").ok();
    let env = format!("CARDLOG_SIM_SEED={seed:#018x}");
    match (package, example, std::thread::current().name()) {
        (Some(p), true, _) => format!("{env} cargo run -p {p} --example {program}"),
        (Some(p), false, Some(test)) if test != "main" => {
            let target = if program == p.replace('-', "_") {
                "--lib".to_owned()
            } else {
                format!("--test {program}")
            };
            format!("{env} cargo test -p {p} {target} -- {test} --exact")
        }
        _ => format!(
            "{env} {}",
            std::env::args()
                .next()
                .unwrap_or_else(|| "the program".into())
        ),
    }
}

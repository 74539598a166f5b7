//! Saves while a large sync runs (issue 22): an empty replica takes a 200,000-op history in
//! one session through a `SharedReplica` (the session takes the lock per store call), while
//! the app's thread saves a contact every 20 ms; each save's time (lock wait included) is
//! measured, next to the same saves with no session running. Target: a save during the
//! session completes in ≤ 50 ms.
//!
//! `cargo run --release -p cardlog-benches --bin shared_figures [-- --ops N]`
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cardlog::sync_layer::transport::{self, channel_pair};
use cardlog::{Contact, Field, Replica, Role, SharedReplica, Summary};
use cardlog_benches::figures::{machine, median, Args};
use cardlog_benches::stores;
use cardlog_benches::Error;

const OPS_DEFAULT: usize = 200_000;
const SAVE_EVERY: Duration = Duration::from_millis(20);
const IDLE_SAVES: usize = 50;

fn main() -> Result<(), Error> {
    let args = Args::from_env();
    let ops = args.number("--ops", OPS_DEFAULT)?;
    eprintln!("shared figures: {}", machine());
    let (template, built) = stores::cached(ops)?;
    if built {
        eprintln!("  built the {ops}-op template");
    }
    let scratch = stores::scratch()?;
    let (mut source, target) = pair(&template, scratch.path())?;

    // Saves with nothing else running.
    let shared = SharedReplica::new(target);
    let idle = saves(&shared, IDLE_SAVES, &AtomicBool::new(true))?;

    // The same saves while the session runs on another thread.
    let (mut end_t, mut end_s) = channel_pair(Duration::from_secs(600));
    let running = Arc::new(AtomicBool::new(true));
    let started = Instant::now();
    let (during, session_s, stored) = std::thread::scope(|scope| -> Result<_, Error> {
        let served = scope.spawn(|| transport::run(Role::Responder, &mut source, &mut end_s));
        let mut side = shared.clone();
        let flag = running.clone();
        let session = scope.spawn(move || {
            let report = transport::run(Role::Initiator, &mut side, &mut end_t);
            flag.store(false, Ordering::SeqCst);
            report
        });
        let during = saves(&shared, usize::MAX, &running)?;
        let report = session.join().map_err(|_| "the session panicked")??;
        served.join().map_err(|_| "the served side panicked")??;
        Ok((during, started.elapsed().as_secs_f64(), report.stored))
    })?;
    if stored < ops {
        return Err(format!("the session stored {stored} of {ops} ops").into());
    }
    let stats = |mut v: Vec<f64>| {
        let n = v.len();
        let max = v.iter().copied().fold(0.0, f64::max);
        let p99 = {
            v.sort_by(f64::total_cmp);
            v.get((n * 99 / 100).min(n.saturating_sub(1)))
                .copied()
                .unwrap_or(f64::NAN)
        };
        (n, median(&mut v), p99, max)
    };
    let (n_idle, med_idle, p99_idle, max_idle) = stats(idle);
    let (n_during, med_during, p99_during, max_during) = stats(during);
    println!("{ops}-op session into an empty replica: {session_s:.1} s, {stored} ops stored");
    println!("| saves | count | median ms | p99 ms | max ms |");
    println!("|---|---|---|---|---|");
    println!("| idle | {n_idle} | {med_idle:.2} | {p99_idle:.2} | {max_idle:.2} |");
    println!(
        "| during the session | {n_during} | {med_during:.2} | {p99_during:.2} | {max_during:.2} |"
    );
    println!(
        "target: every save during the session ≤ 50 ms: {}",
        if max_during <= 50.0 { "pass" } else { "FAIL" }
    );
    Ok(())
}

/// A copy of the template (the source, holding the history) and an empty member of its book
/// that knows the book's membership (the target).
fn pair(template: &Path, dir: &Path) -> Result<(Replica, Replica), Error> {
    stores::copy_dir(template, &dir.join("source"))?;
    let (mut source, _, _) = stores::open_timed(&dir.join("source"), &cardlog::Options::default())?;
    let mut target = Replica::join(&dir.join("target"), source.book())?;
    stores::admit(template, &mut [&mut source], &[target.id()])?;
    // The target takes the founder's chain (the membership ops) first, so it may save.
    let mut without_founder: Summary = source.summary().clone();
    let founder = source
        .members()
        .into_iter()
        .find(|(_, m)| m.role == cardlog::MemberRole::Admin)
        .map(|(d, _)| d)
        .ok_or("no admin")?;
    without_founder.remove(&founder);
    let membership = source.ops_since(&without_founder)?;
    let membership: Vec<_> = membership
        .into_iter()
        .filter(|op| op.op().author == founder)
        .collect();
    let tips = source.signatures_for(&membership)?;
    target.apply(&membership, &tips)?;
    Ok((source, target))
}

/// Saves a contact every 20 ms, `count` times or while `running`; returns each save's ms
/// (and names on stderr each one over 50 ms, with when it started).
fn saves(shared: &SharedReplica, count: usize, running: &AtomicBool) -> Result<Vec<f64>, Error> {
    let mut out = Vec::new();
    let began = Instant::now();
    while out.len() < count && running.load(Ordering::SeqCst) {
        let mut c = Contact::random()?;
        c.set(Field::Given, format!("Saved {}", out.len()));
        let start = Instant::now();
        shared.lock().add_contact(&c)?;
        let ms = start.elapsed().as_secs_f64() * 1e3;
        if ms > 50.0 {
            eprintln!(
                "  save {} at {:.2} s took {ms:.1} ms",
                out.len(),
                start.duration_since(began).as_secs_f64()
            );
        }
        out.push(ms);
        std::thread::sleep(SAVE_EVERY);
    }
    Ok(out)
}

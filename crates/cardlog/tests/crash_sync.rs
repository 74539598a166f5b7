//! The sync crash matrix: a child process (this test binary re-run) imports a series of
//! bundles, or syncs over TCP with a server in the parent, and is killed with SIGKILL at
//! pseudo-random moments. After each kill its store must open, pass `verify`, hold a
//! prefix-closed set of ops (every op's predecessor and every op it replaces present), and hold
//! every bundle or session the child reported as finished. A sync after the kill then
//! completes and converges: nothing was left half-applied.
#![allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    clippy::panic,
    clippy::expect_used
)]
#![cfg(unix)]

mod common;

use common::Rng;

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Write as _};
use std::net::TcpListener;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path as FsPath, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use cardlog::sync_layer::transport::{serve, ServeOptions, Shared};
use cardlog::{Contact, ContactId, Field, OpId, Replica};

/// In the child: the store directory.
const DIR_VAR: &str = "CARDLOG_SYNC_CRASH_DIR";
/// In the child: `import:<bundle dir>` or `tcp:<address>`.
const JOB_VAR: &str = "CARDLOG_SYNC_CRASH_JOB";
/// In the child: the book the store joins.
const BOOK_VAR: &str = "CARDLOG_SYNC_CRASH_BOOK";
const MARK: &str = "cardlog-sync-crash\t";
const BUNDLES: usize = 6;
const OPS_PER_BUNDLE: usize = 400;
const ROUNDS: u64 = 10;

fn emit(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{MARK}{line}");
    let _ = out.flush();
}

/// The child's side; does nothing in a normal test run.
#[test]
fn child_job() {
    let (Some(dir), Some(job)) = (std::env::var_os(DIR_VAR), std::env::var(JOB_VAR).ok()) else {
        return;
    };
    let dir = PathBuf::from(dir);
    let book: cardlog::BookId = std::env::var(BOOK_VAR).unwrap().parse().unwrap();
    let mut replica = if dir.exists() {
        Replica::open(&dir).unwrap()
    } else {
        Replica::join(&dir, book).unwrap()
    };
    emit("ready");
    if let Some(bundles) = job.strip_prefix("import:") {
        for i in 0..BUNDLES {
            let bytes = std::fs::read(FsPath::new(bundles).join(format!("{i}.bundle"))).unwrap();
            replica.import_bundle(&bytes).unwrap();
            emit(&format!("imported\t{i}"));
        }
    } else if let Some(addr) = job.strip_prefix("tcp:") {
        let report = replica.sync_tcp(addr, Duration::from_secs(30)).unwrap();
        emit(&format!("synced\t{}", report.stored));
    }
    emit("done");
    // Wait to be killed, so every round ends the same way.
    std::thread::sleep(Duration::from_secs(60));
}

/// A source replica with `BUNDLES × OPS_PER_BUNDLE` ops, and its ops as a series of bundles,
/// each holding what the previous ones do not.
fn source(dir: &FsPath, bundles: &FsPath) -> Replica {
    let mut r = Replica::create(dir).unwrap();
    std::fs::create_dir_all(bundles).unwrap();
    // The first bundle carries the book's founding op too.
    let mut since = cardlog::Summary::new();
    for b in 0..BUNDLES {
        {
            let mut bulk = r.bulk();
            for i in 0..OPS_PER_BUNDLE {
                let n = (b * OPS_PER_BUNDLE + i) as u64;
                let id = ContactId([(n % 50) as u8 + 1; 16]);
                if bulk.contact(&id).unwrap().is_none() {
                    let mut c = Contact::new(id);
                    c.set(Field::Given, format!("P{n}"));
                    bulk.add_contact(&c).unwrap();
                } else {
                    bulk.edit(id, |c| {
                        c.set(Field::Note, format!("note {n}"));
                    })
                    .unwrap();
                }
            }
            bulk.finish().unwrap();
        }
        let bytes = r.export_bundle(Some(&since)).unwrap();
        std::fs::write(bundles.join(format!("{b}.bundle")), bytes).unwrap();
        since = r.summary().clone();
    }
    r
}

/// Runs the child until `kill_after` past its "ready" line (or its end), kills it, and
/// returns the lines it reported.
fn run_child(dir: &FsPath, book: cardlog::BookId, job: &str, kill_after: Duration) -> Vec<String> {
    let exe = std::env::current_exe().unwrap();
    let mut child = Command::new(exe)
        .args(["--exact", "child_job", "--nocapture", "--test-threads=1"])
        .env(DIR_VAR, dir)
        .env(BOOK_VAR, book.to_string())
        .env(JOB_VAR, job)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            // libtest's "test child_job ... " may precede the first mark on its line.
            if let Some((_, rest)) = line.split_once(MARK) {
                if tx.send(rest.to_owned()).is_err() {
                    break;
                }
            }
        }
    });
    let mut lines = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    // Wait for "ready" (the store is open), then give the job `kill_after`.
    while let Ok(line) = rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
        let ready = line == "ready";
        lines.push(line);
        if ready {
            break;
        }
    }
    let kill_at = Instant::now() + kill_after;
    while let Ok(line) = rx.recv_timeout(kill_at.saturating_duration_since(Instant::now())) {
        let done = line == "done";
        lines.push(line);
        if done {
            break;
        }
    }
    child.kill().unwrap();
    let status = child.wait().unwrap();
    assert_eq!(
        status.signal(),
        Some(9),
        "the child ended by itself: {lines:?}"
    );
    while let Ok(line) = rx.recv_timeout(Duration::from_millis(200)) {
        lines.push(line);
    }
    lines
}

/// Opens the store, verifies it and checks its ops are prefix-closed; returns their ids.
fn check_store(dir: &FsPath, round: u64) -> (Replica, BTreeSet<OpId>) {
    let r = Replica::open(dir).unwrap_or_else(|e| panic!("round {round}: open: {e}"));
    let report = r.verify().unwrap();
    assert!(report.is_ok(), "round {round}: {:?}", report.problems);
    let ops: Vec<_> = r.ops().collect::<Result<_, _>>().unwrap();
    let ids: BTreeSet<OpId> = ops.iter().map(|o| o.id()).collect();
    for op in &ops {
        if let Some(prev) = op.op().prev {
            assert!(
                ids.contains(&prev),
                "round {round}: {} lacks its predecessor",
                op.id()
            );
        }
        for w in &op.op().writes {
            for replaced in &w.replaces {
                assert!(
                    ids.contains(replaced),
                    "round {round}: {} lacks {replaced}",
                    op.id()
                );
            }
        }
    }
    (r, ids)
}

#[test]
fn sigkill_during_bundle_import_and_tcp_sync_leaves_a_consistent_prefix() {
    if std::env::var_os(DIR_VAR).is_some() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let bundles = tmp.path().join("bundles");
    let src = source(&tmp.path().join("source"), &bundles);
    let total = src.op_count();
    let book = src.book();
    let mut rng = Rng::new(0x005e_edc7_a511);
    let mut stats = (0u64, 0u64, 0u64); // kills, partial stores seen, complete stores seen

    // Imports: one store, killed and resumed round after round.
    let dir = tmp.path().join("importer");
    let mut reported: BTreeSet<usize> = BTreeSet::new();
    for round in 0..ROUNDS {
        let lines = run_child(
            &dir,
            book,
            &format!("import:{}", bundles.display()),
            Duration::from_millis(rng.below(400)),
        );
        stats.0 += 1;
        reported.extend(
            lines
                .iter()
                .filter_map(|l| l.strip_prefix("imported\t"))
                .map(|n| n.parse::<usize>().unwrap()),
        );
        let (r, ids) = check_store(&dir, round);
        // Every bundle reported imported is wholly there; bundles are all-or-nothing (the
        // first also holds the book's founding op).
        let held = ids.len() as u64;
        let saves = held.saturating_sub(1);
        assert_eq!(
            saves % OPS_PER_BUNDLE as u64,
            0,
            "round {round}: {held} ops"
        );
        assert!(
            saves >= (reported.len() * OPS_PER_BUNDLE) as u64,
            "round {round}: {held} ops but {} bundles reported",
            reported.len()
        );
        if held < total {
            stats.1 += 1;
        } else {
            stats.2 += 1;
        }
        drop(r);
    }

    // TCP: a server in this process; each round a fresh child store syncs and is killed.
    let shared = Shared::new(src);
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    {
        let shared = shared.clone();
        std::thread::spawn(move || {
            serve(
                &listener,
                shared,
                ServeOptions {
                    chunk_ops: 150,
                    ..ServeOptions::default()
                },
                |_, _| {},
            )
        });
    }
    let served = shared.lock().id();
    for round in 0..ROUNDS {
        let dir = tmp.path().join(format!("tcp-{round}"));
        // Each child is a device of the book, admitted by the source and paired with it, so
        // the encrypted session lets it in.
        {
            let mut child = Replica::join(&dir, book).unwrap();
            child.pair(served, Some(&addr)).unwrap();
            shared
                .lock()
                .add_member(child.id(), cardlog::MemberRole::Write, "child")
                .unwrap();
        }
        let total = shared.lock().op_count();
        let lines = run_child(
            &dir,
            book,
            &format!("tcp:{addr}"),
            Duration::from_millis(rng.below(300)),
        );
        stats.0 += 1;
        let synced = lines.iter().any(|l| l.starts_with("synced"));
        let (mut r, ids) = check_store(&dir, round);
        let held = ids.len() as u64;
        if synced {
            assert_eq!(held, total, "round {round}: reported synced");
        }
        if held < total {
            stats.1 += 1;
        } else {
            stats.2 += 1;
        }
        // The next session completes what the killed one started.
        let report = r.sync_tcp(&addr, Duration::from_secs(30)).unwrap();
        assert!(report.converged, "round {round}: {report:?}");
        assert_eq!(report.stored as u64, total - held, "round {round}");
        assert_eq!(r.summary(), shared.lock().summary());
    }
    eprintln!(
        "sync crash matrix: {} kills, {} left a partial store, {} a complete one",
        stats.0, stats.1, stats.2
    );
    assert!(
        stats.1 > 0,
        "no kill landed mid-way: the test tests nothing"
    );
    assert!(shared.lock().verify().unwrap().is_ok());
}

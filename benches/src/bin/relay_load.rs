//! A relay under load (issue "A relay for many address books"): N member devices of one book
//! all sync at the same instant with one relay, twice around, over loopback. The relay runs in
//! a child process (this binary again, `--serve DIR`) so that its peak memory is its own;
//! every device retries as the library does by default when the relay answers busy (3
//! retries with backoff). Reported per round: sessions completed and how many needed
//! retries, p50/p99/max time of a device's sync (backoff included), and after both rounds the
//! relay's peak RSS and its directory against the op log it holds.
//!
//! All devices connect from 127.0.0.1, so the relay's per-address limit is raised to its
//! global limit here (64): the per-address limit is for hosts, not for a load test.
//!
//! `cargo run --release -p cardlog-benches --bin relay_load [-- --devices N]`
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use cardlog::sync_layer::transport::{serve, ServeOptions, Shared};
use cardlog::{Contact, ContactId, Field, MemberRole, Options, Replica};
use cardlog_benches::figures::{machine, Args};
use cardlog_benches::stores::{self, dir_bytes};
use cardlog_benches::Error;

const DEVICES_DEFAULT: usize = 1000;
const TIMEOUT: Duration = Duration::from_secs(60);
/// A device's sled cache: small, since a thousand stores are open at once in this process.
const CLIENT_CACHE_BYTES: u64 = 256 << 10;

fn main() -> Result<(), Error> {
    let args = Args::from_env();
    if args.has("--serve") {
        let dir = args.value("--serve").ok_or("--serve DIR")?;
        return relay(Path::new(dir));
    }
    let devices = args.number("--devices", DEVICES_DEFAULT)?;
    eprintln!("relay load: {}", machine());
    let scratch = stores::scratch()?;
    let root = scratch.path();
    let relay_dir = root.join("relay");
    let started = Instant::now();
    let mut clients = {
        let mut relay = Replica::create(&relay_dir)?;
        let mut clients = Vec::with_capacity(devices);
        for i in 0..devices {
            let c = Replica::join_with(
                &root.join(format!("d{i}")),
                relay.book(),
                Options {
                    cache_bytes: CLIENT_CACHE_BYTES,
                    ..Options::default()
                },
            )?;
            relay.add_member(c.id(), MemberRole::Write, &format!("device {i}"))?;
            clients.push(c);
        }
        // Each device takes the membership (one op per device) from the relay as a bundle,
        // two at once.
        let bundle = relay.export_bundle(None)?;
        let half = clients.len().div_ceil(2).max(1);
        let bundle = &bundle;
        std::thread::scope(|s| {
            for part in clients.chunks_mut(half) {
                s.spawn(move || {
                    for c in part {
                        c.import_bundle(bundle).expect("import");
                    }
                });
            }
        });
        clients
    };
    eprintln!(
        "  {devices} devices joined in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let exe = std::env::current_exe()?;
    let mut child = Command::new(exe)
        .arg("--serve")
        .arg(&relay_dir)
        .stdout(Stdio::piped())
        .spawn()?;
    let mut line = String::new();
    BufReader::new(child.stdout.take().ok_or("no stdout")?).read_line(&mut line)?;
    let addr = line.trim().to_owned();
    println!("{devices} devices of one book syncing at once with one relay (a process of its own) over loopback; default retries (3, each the wait the relay asks)");
    println!("| round | completed | needed a retry | busy answers | failed | p50 s | p99 s | max s | round s |");
    println!("|---|---|---|---|---|---|---|---|---|");
    for round in 1..=2u8 {
        let barrier = Arc::new(Barrier::new(clients.len()));
        let began = Instant::now();
        let outcomes: Vec<(Duration, Result<u32, String>)> = std::thread::scope(|s| {
            let handles: Vec<_> = clients
                .iter_mut()
                .enumerate()
                .map(|(i, c)| {
                    let (addr, barrier) = (addr.clone(), Arc::clone(&barrier));
                    std::thread::Builder::new()
                        .stack_size(256 << 10)
                        .spawn_scoped(s, move || {
                            let mut contact = Contact::new(ContactId(contact_id(i, round)));
                            contact.set(Field::Given, format!("device {i} round {round}"));
                            c.add_contact(&contact).unwrap();
                            barrier.wait();
                            let t = Instant::now();
                            let r = c.sync_tcp(&addr, TIMEOUT);
                            (
                                t.elapsed(),
                                r.map(|r| r.busy_retries).map_err(|e| e.to_string()),
                            )
                        })
                        .unwrap()
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let round_s = began.elapsed().as_secs_f64();
        let mut times: Vec<f64> = outcomes
            .iter()
            .filter(|(_, r)| r.is_ok())
            .map(|(t, _)| t.as_secs_f64())
            .collect();
        times.sort_by(f64::total_cmp);
        let done = times.len();
        let retried = outcomes
            .iter()
            .filter(|(_, r)| matches!(r, Ok(n) if *n > 0))
            .count();
        let busy: u32 = outcomes.iter().filter_map(|(_, r)| r.as_ref().ok()).sum();
        let failed: Vec<&String> = outcomes
            .iter()
            .filter_map(|(_, r)| r.as_ref().err())
            .collect();
        let at = |q: f64| {
            times
                .get(((times.len() as f64 - 1.0) * q).round() as usize)
                .copied()
                .unwrap_or(f64::NAN)
        };
        println!(
            "| {round} | {done}/{devices} ({:.1} %) | {retried} | {busy} | {} | {:.2} | {:.2} | {:.2} | {round_s:.1} |",
            100.0 * done as f64 / devices as f64,
            failed.len(),
            at(0.5),
            at(0.99),
            times.last().copied().unwrap_or(f64::NAN),
        );
        // Why, grouped (digits left out, so "try again in 13 s" and "in 17 s" count as one).
        let mut why: std::collections::BTreeMap<String, usize> = Default::default();
        for e in &failed {
            let reason: String = e.chars().filter(|c| !c.is_ascii_digit()).collect();
            *why.entry(reason).or_default() += 1;
        }
        for (reason, n) in why {
            eprintln!("  round {round}: {n} failed: {reason}");
        }
    }
    let status = std::fs::read_to_string(format!("/proc/{}/status", child.id()))?;
    let peak_mb = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<f64>().ok())
        .map_or(f64::NAN, |kb| kb * 1024.0 / 1e6);
    child.kill()?;
    child.wait()?;
    let dir = dir_bytes(&relay_dir)? as f64 / 1e6;
    let log = std::fs::metadata(relay_dir.join("ops.log"))?.len() as f64 / 1e6;
    println!();
    println!(
        "relay peak RSS {peak_mb:.1} MB; relay directory {dir:.1} MB holding an op log of {log:.2} MB ({:.1}×)",
        dir / log
    );
    for entry in std::fs::read_dir(&relay_dir)? {
        let entry = entry?;
        let bytes = if entry.metadata()?.is_dir() {
            dir_bytes(&entry.path())?
        } else {
            entry.metadata()?.len()
        };
        eprintln!("  {:>10} {}", bytes, entry.file_name().to_string_lossy());
    }
    Ok(())
}

/// The child: serves the relay's store until killed, printing the bound address first.
fn relay(dir: &Path) -> Result<(), Error> {
    let relay = Replica::open(dir)?;
    let listener = TcpListener::bind("127.0.0.1:0")?;
    println!("{}", listener.local_addr()?);
    let options = ServeOptions {
        timeout: TIMEOUT,
        max_sessions_per_address: ServeOptions::default().max_sessions,
        ..ServeOptions::default()
    };
    // Sessions that failed other than by turning a device away, as they end (the parent's
    // stderr): what a device saw as a reset was, here.
    serve(&listener, Shared::new(relay), options, |_, result| {
        if let Err(e) = result {
            if !e.to_string().contains("turned away (busy)") {
                eprintln!("  relay: a session failed: {e}");
            }
        }
    })?;
    Ok(())
}

/// A contact id of its own per device and round.
fn contact_id(i: usize, round: u8) -> [u8; 16] {
    let mut id = [0xcc; 16];
    id[..8].copy_from_slice(&(i as u64).to_be_bytes());
    id[8] = round;
    id
}

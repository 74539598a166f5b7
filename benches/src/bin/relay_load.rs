//! A relay under load (issue "A relay for many address books"): N member devices of B books
//! (a relay of many books, `cardlog::Relay`) all sync at the same instant with one relay, twice
//! around, over loopback. Each book's admin adds the relay and syncs once before, so the relay
//! takes the book; each device pairs with the relay. The relay runs in
//! a child process (this binary again, `--serve DIR`) so that its peak memory is its own;
//! every device retries as the library does by default when the relay answers busy (3
//! retries with backoff). Reported per round: sessions completed and how many needed
//! retries, p50/p99/max time of a device's sync (backoff included), and after both rounds the
//! relay's peak RSS and its directory against the op log it holds.
//!
//! All devices connect from 127.0.0.1, so the relay's per-address limit is raised to its
//! global limit here (64): the per-address limit is for hosts, not for a load test.
//!
//! `cargo run --release -p cardlog-benches --bin relay_load [-- --devices N] [--books B]`
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use cardlog::sync_layer::transport::{serve_host, ServeOptions};
use cardlog::{
    Contact, ContactId, Field, MemberRole, Options, Relay, RelayOptions, Replica, BOOKS_DIR,
};
use cardlog_benches::figures::{machine, Args};
use cardlog_benches::stores::{self, dir_bytes};
use cardlog_benches::Error;

const DEVICES_DEFAULT: usize = 1000;
const BOOKS_DEFAULT: usize = 10;
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
    let books = args
        .number("--books", BOOKS_DEFAULT)?
        .clamp(1, devices.max(1));
    eprintln!("relay load: {}", machine());
    let scratch = stores::scratch()?;
    let root = scratch.path();
    let relay_dir = root.join("relay");
    let relay_id = Relay::init(&relay_dir, RelayOptions::default())?.id();
    let exe = std::env::current_exe()?;
    let mut child = Command::new(exe)
        .arg("--serve")
        .arg(&relay_dir)
        .stdout(Stdio::piped())
        .spawn()?;
    let mut line = String::new();
    BufReader::new(child.stdout.take().ok_or("no stdout")?).read_line(&mut line)?;
    let addr = line.trim().to_owned();
    let started = Instant::now();
    let mut clients = Vec::with_capacity(devices);
    for b in 0..books {
        // Book b's admin adds the relay and its share of the devices, and syncs with the
        // relay, which takes the book.
        let mut admin = Replica::create(&root.join(format!("admin{b}")))?;
        admin.add_member(relay_id, MemberRole::Relay, "relay")?;
        let mut members = Vec::new();
        for i in (b..devices).step_by(books) {
            let c = Replica::join_with(
                &root.join(format!("d{i}")),
                admin.book(),
                Options {
                    cache_bytes: CLIENT_CACHE_BYTES,
                    ..Options::default()
                },
            )?;
            admin.add_member(c.id(), MemberRole::Write, &format!("device {i}"))?;
            members.push((i, c));
        }
        admin.pair(relay_id, Some(&addr))?;
        admin.sync_tcp(&addr, TIMEOUT)?;
        // Each device takes the membership (one op per device) from its admin as a bundle, two
        // at once, and pairs with the relay.
        let bundle = admin.export_bundle(None)?;
        let half = members.len().div_ceil(2).max(1);
        let bundle = &bundle;
        let addr = &addr;
        std::thread::scope(|s| {
            for part in members.chunks_mut(half) {
                s.spawn(move || {
                    for (_, c) in part {
                        c.import_bundle(bundle).expect("import");
                        c.pair(relay_id, Some(addr)).expect("pair");
                    }
                });
            }
        });
        clients.extend(members);
    }
    clients.sort_by_key(|(i, _)| *i);
    let mut clients: Vec<Replica> = clients.into_iter().map(|(_, c)| c).collect();
    eprintln!(
        "  {devices} devices of {books} books joined in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    println!("{devices} devices of {books} books syncing at once with one relay of many books (a process of its own) over loopback; default retries (3, each the wait the relay asks)");
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
    // The ops' bytes: each book's op log up to its last record (zeros written ahead of the
    // records while the relay ran are in the directory's bytes, not here).
    let mut log = 0u64;
    {
        let relay = Relay::open(&relay_dir, RelayOptions::default())?;
        for book in relay.books() {
            log += relay.open_book(book)?.lock().store().log_len();
        }
    }
    let log = log as f64 / 1e6;
    println!();
    println!(
        "relay peak RSS {peak_mb:.1} MB; relay directory {dir:.1} MB holding {log:.2} MB of ops ({:.1}×)",
        dir / log
    );
    let mut parts: std::collections::BTreeMap<String, u64> = Default::default();
    for book in std::fs::read_dir(relay_dir.join(BOOKS_DIR))? {
        let book = book?;
        if !book.metadata()?.is_dir() {
            continue;
        }
        for entry in std::fs::read_dir(book.path())? {
            let entry = entry?;
            let bytes = if entry.metadata()?.is_dir() {
                dir_bytes(&entry.path())?
            } else {
                entry.metadata()?.len()
            };
            *parts
                .entry(entry.file_name().to_string_lossy().into_owned())
                .or_default() += bytes;
        }
    }
    for (name, bytes) in parts {
        eprintln!("  {bytes:>10} {name} (all books)");
    }
    Ok(())
}

/// The child: serves the relay's store until killed, printing the bound address first.
fn relay(dir: &Path) -> Result<(), Error> {
    let relay = Relay::open(dir, RelayOptions::default())?;
    let listener = TcpListener::bind("127.0.0.1:0")?;
    println!("{}", listener.local_addr()?);
    let options = ServeOptions {
        timeout: TIMEOUT,
        max_sessions_per_address: ServeOptions::default().max_sessions,
        ..ServeOptions::default()
    };
    // Sessions that failed other than by turning a device away, as they end (the parent's
    // stderr): what a device saw as a reset was, here.
    serve_host(&listener, Arc::new(relay), options, |_, result| {
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

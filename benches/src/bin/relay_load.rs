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
//! All devices connect from 127.0.0.1, so the relay's per-address limit is lifted here: the
//! per-address limit is for hosts, not for a load test.
//!
//! With `--hostile H`, a third round runs while H hostile connections attack the relay (half
//! connect and send nothing, half send a handshake's first bytes one every 200 ms, each
//! reconnecting whenever the relay drops it) and 4 stolen member keys each hold 2 sessions
//! open by authenticating and then sending nothing; round 2 is the same work without them, so
//! the added latency is round 3's p50/p99 less round 2's. Use fewer devices than the relay's
//! 64 sessions (e.g. `--devices 50`) so that what is measured is the attack, not the crowd.
//!
//! With `--sled-books`, the relay keeps its books in sled (as before session 36) instead of
//! journals: the two side by side.
//!
//! `cargo run --release -p cardlog-benches --bin relay_load [-- --devices N] [--books B]
//! [--hostile H] [--sled-books]`
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader};
use std::io::{Read, Write};
use std::net::TcpListener;
use std::net::TcpStream;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use cardlog::sync_layer::secure::Handshake;
use cardlog::sync_layer::transport::{serve_host, ServeOptions, TcpTransport, Transport};
use cardlog::sync_layer::Identity;
use cardlog::{
    Contact, ContactId, Database, Field, MemberRole, Options, Relay, RelayOptions, Replica,
    BOOKS_DIR,
};
use cardlog_benches::figures::{machine, Args};
use cardlog_benches::stores::{self, dir_bytes};
use cardlog_benches::Error;

const DEVICES_DEFAULT: usize = 1000;
const BOOKS_DEFAULT: usize = 10;
/// Member keys of book 0 an attacker holds in hostile mode, each holding 2 sessions.
const STOLEN: usize = 4;
const TIMEOUT: Duration = Duration::from_secs(60);
/// A device's sled cache: small, since a thousand stores are open at once in this process.
const CLIENT_CACHE_BYTES: u64 = 256 << 10;

fn main() -> Result<(), Error> {
    let args = Args::from_env();
    if args.has("--serve") {
        let dir = args.value("--serve").ok_or("--serve DIR")?;
        return relay(
            Path::new(dir),
            args.has("--quiet"),
            args.has("--sled-books"),
        );
    }
    let devices = args.number("--devices", DEVICES_DEFAULT)?;
    let books = args
        .number("--books", BOOKS_DEFAULT)?
        .clamp(1, devices.max(1));
    let hostile = args.number("--hostile", 0)?;
    let sled_books = args.has("--sled-books");
    eprintln!(
        "relay load: {}; books kept in {}",
        machine(),
        if sled_books { "sled" } else { "journals" }
    );
    let scratch = stores::scratch()?;
    let root = scratch.path();
    let relay_dir = root.join("relay");
    let relay_id = Relay::init(&relay_dir, RelayOptions::default())?.id();
    let exe = std::env::current_exe()?;
    let mut child = Command::new(exe)
        .arg("--serve")
        .arg(&relay_dir)
        .args(if hostile > 0 { &["--quiet"][..] } else { &[] })
        .args(if sled_books {
            &["--sled-books"][..]
        } else {
            &[]
        })
        .stdout(Stdio::piped())
        .spawn()?;
    let mut line = String::new();
    BufReader::new(child.stdout.take().ok_or("no stdout")?).read_line(&mut line)?;
    let addr = line.trim().to_owned();
    let started = Instant::now();
    let mut clients = Vec::with_capacity(devices);
    // Session keys of members of book 0 that an attacker stole (hostile mode).
    let mut stolen = Vec::new();
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
        if b == 0 {
            for k in 0..STOLEN {
                let thief = Replica::join(&root.join(format!("stolen{k}")), admin.book())?;
                admin.add_member(thief.id(), MemberRole::Write, &format!("stolen {k}"))?;
                stolen.push(Identity::new(admin.book(), thief.store().device_key()));
            }
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
    let rounds = if hostile > 0 { 3 } else { 2 };
    let stop = Arc::new(AtomicBool::new(false));
    let mut attackers = Vec::new();
    for round in 1..=rounds {
        if round == 3 {
            attackers = attack(&addr, relay_id, hostile, &stolen, &stop);
            // Let the attack take hold, past one handshake deadline (5 s) so that the relay
            // drops and the attackers reconnect while the honest devices sync.
            std::thread::sleep(Duration::from_secs(6));
        }
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
    stop.store(true, Ordering::SeqCst);
    let attacks = attackers.len();
    let connections: u64 = attackers.into_iter().map(|h| h.join().unwrap_or(0)).sum();
    if hostile > 0 {
        println!();
        println!(
            "round 3 ran under attack: {attacks} hostile threads ({} idle, {} trickling, {} holding sessions with {STOLEN} stolen keys) opened {connections} connections",
            hostile / 2,
            hostile - hostile / 2,
            2 * STOLEN
        );
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
    // What the books' journals hold as the relay left them, by kind of key (docs/FORMAT.md,
    // "The database"): each pair as a compacted journal writes it, and the bytes of replaced
    // writes not compacted yet.
    let mut kinds: std::collections::BTreeMap<char, (u64, u64)> = Default::default();
    let (mut journals, mut live) = (0u64, 0u64);
    for book in std::fs::read_dir(relay_dir.join(BOOKS_DIR))? {
        let db = book?.path().join("db");
        if !cardlog_store::state::JournalKv::is_journal(&db) {
            continue;
        }
        journals +=
            std::fs::metadata(db.join(cardlog_store::state::journal_kv::JOURNAL_FILE))?.len();
        for (k, v) in cardlog_store::state::JournalKv::read_dir(&db)?.pairs {
            let bytes = (k.len() + v.len() + 9) as u64;
            let kind = kinds
                .entry(k.first().map_or('?', |b| *b as char))
                .or_default();
            kind.0 += 1;
            kind.1 += bytes;
            live += bytes;
        }
    }
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
        "relay peak RSS {peak_mb:.1} MB; relay directory {dir:.2} MB holding {log:.2} MB of ops ({:.2}×)",
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
            let name = entry.file_name().to_string_lossy().into_owned();
            let bytes = if entry.metadata()?.is_dir() {
                dir_bytes(&entry.path())?
            } else {
                entry.metadata()?.len()
            };
            // The name index's database apart from the rest of `db`.
            let names = entry.path().join(cardlog_store::state::sled_kv::NAMES_DIR);
            let names_bytes = if names.is_dir() {
                dir_bytes(&names)?
            } else {
                0
            };
            if names_bytes > 0 {
                *parts.entry(format!("{name}/names")).or_default() += names_bytes;
            }
            *parts.entry(name).or_default() += bytes - names_bytes;
        }
    }
    for (name, bytes) in parts {
        eprintln!("  {bytes:>10} {name} (all books)");
    }
    if journals > 0 {
        eprintln!(
            "  journals as the relay left them: {journals} bytes, {live} live, {} replaced",
            journals.saturating_sub(live)
        );
        for (kind, (n, bytes)) in kinds {
            eprintln!("    `{kind}`: {n} pairs, {bytes} bytes");
        }
    }
    Ok(())
}

/// The child: serves the relay until killed, printing the bound address first; `quiet`
/// leaves out the sessions that failed.
fn relay(dir: &Path, quiet: bool, sled_books: bool) -> Result<(), Error> {
    let options = RelayOptions {
        database: if sled_books {
            Database::Sled
        } else {
            Database::Journal
        },
        ..RelayOptions::default()
    };
    let relay = Relay::open(dir, options)?;
    let listener = TcpListener::bind("127.0.0.1:0")?;
    println!("{}", listener.local_addr()?);
    let options = ServeOptions {
        timeout: TIMEOUT,
        max_sessions_per_address: usize::MAX,
        ..ServeOptions::default()
    };
    // Sessions that failed other than by turning a device away, as they end (the parent's
    // stderr): what a device saw as a reset was, here.
    serve_host(&listener, Arc::new(relay), options, move |_, result| {
        if let Err(e) = result {
            // Under attack (hostile mode) the attackers' sessions fail by the hundred.
            if !quiet && !e.to_string().contains("turned away (busy)") {
                eprintln!("  relay: a session failed: {e}");
            }
        }
    })?;
    Ok(())
}

/// Starts the attack of hostile mode: `hostile` connections that idle or trickle and never
/// authenticate, and two sessions per stolen identity that authenticate and then send
/// nothing, each reconnecting when the relay drops it, until `stop`. Each thread returns the
/// connections it opened.
fn attack(
    addr: &str,
    relay: cardlog::DeviceId,
    hostile: usize,
    stolen: &[Identity],
    stop: &Arc<AtomicBool>,
) -> Vec<JoinHandle<u64>> {
    let mut threads = Vec::new();
    for i in 0..hostile {
        let (addr, stop) = (addr.to_owned(), Arc::clone(stop));
        let trickle = i % 2 == 1;
        threads.push(std::thread::spawn(move || {
            let mut opened = 0;
            while !stop.load(Ordering::SeqCst) {
                let Ok(mut stream) = TcpStream::connect(&addr) else {
                    std::thread::sleep(Duration::from_millis(100));
                    continue;
                };
                opened += 1;
                let _ = stream.set_read_timeout(Some(Duration::from_millis(200)));
                let first = b"\0\0\0\x35CLNX\x02";
                let mut sent = 0;
                let mut scratch = [0u8; 256];
                while !stop.load(Ordering::SeqCst) {
                    if trickle {
                        let byte = first.get(sent).copied().unwrap_or(0x55);
                        if stream.write_all(&[byte]).is_err() {
                            break;
                        }
                        sent += 1;
                    }
                    match stream.read(&mut scratch) {
                        Ok(0) => break,
                        Ok(_) => break,
                        Err(e)
                            if e.kind() == std::io::ErrorKind::WouldBlock
                                || e.kind() == std::io::ErrorKind::TimedOut => {}
                        Err(_) => break,
                    }
                }
            }
            opened
        }));
    }
    for identity in stolen {
        for _ in 0..2 {
            let (addr, stop, identity) = (addr.to_owned(), Arc::clone(stop), identity.clone());
            threads.push(std::thread::spawn(move || {
                let mut opened = 0;
                while !stop.load(Ordering::SeqCst) {
                    let Ok(mut t) = TcpTransport::connect(&addr, Duration::from_secs(1)) else {
                        std::thread::sleep(Duration::from_millis(100));
                        continue;
                    };
                    opened += 1;
                    let Ok((mut handshake, m1)) = Handshake::initiate_to(&identity, relay) else {
                        break;
                    };
                    let authenticated = t.send(m1).is_ok()
                        && t.recv()
                            .ok()
                            .and_then(|m2| handshake.read_reply(&m2).ok())
                            .is_some();
                    if !authenticated {
                        std::thread::sleep(Duration::from_millis(100));
                        continue;
                    }
                    let Ok((m3, _channel)) = handshake.finish(&identity) else {
                        break;
                    };
                    let _ = t.send(m3);
                    // Authenticated: send nothing more, until the relay gives up on us (its
                    // per-message deadline).
                    while !stop.load(Ordering::SeqCst) {
                        match t.recv() {
                            Err(cardlog::TransportError::Timeout(_)) => {}
                            _ => break,
                        }
                    }
                }
                opened
            }));
        }
    }
    threads
}

/// A contact id of its own per device and round.
fn contact_id(i: usize, round: u8) -> [u8; 16] {
    let mut id = [0xcc; 16];
    id[..8].copy_from_slice(&(i as u64).to_be_bytes());
    id[8] = round;
    id
}

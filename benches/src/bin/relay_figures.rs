//! What a relay keeps on disk as its devices sync (issue "A relay for many address books"):
//! one served replica (the book's founder) and N member devices, each saving one contact and
//! syncing with it over loopback TCP, twice around; the relay's directory is measured after
//! each round against the bytes of the op log it holds. Before peers had a key each, every
//! session rewrote one record naming every peer with what it acknowledged of every author,
//! so the directory grew with devices × authors × sessions.
//!
//! `cargo run --release -p cardlog-benches --bin relay_figures [-- --devices N]`
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::TcpListener;
use std::time::{Duration, Instant};

use cardlog::sync_layer::transport::{serve, ServeOptions, Shared};
use cardlog::{Contact, ContactId, Field, MemberRole, Replica};
use cardlog_benches::figures::{machine, Args};
use cardlog_benches::stores::{self, dir_bytes};
use cardlog_benches::Error;

const DEVICES_DEFAULT: usize = 200;
/// Clients syncing at once (the relay's per-address limit is 8: they share 127.0.0.1).
const CONCURRENCY: usize = 8;
const TIMEOUT: Duration = Duration::from_secs(60);

fn main() -> Result<(), Error> {
    let args = Args::from_env();
    let devices = args.number("--devices", DEVICES_DEFAULT)?;
    eprintln!("relay figures: {}", machine());
    let scratch = stores::scratch()?;
    let root = scratch.path();
    let relay_dir = root.join("relay");
    let mut relay = Replica::create(&relay_dir)?;
    let mut clients = Vec::with_capacity(devices);
    for i in 0..devices {
        let c = Replica::join_with(
            &root.join(format!("d{i}")),
            relay.book(),
            Default::default(),
        )?;
        relay.add_member(c.id(), MemberRole::Write, &format!("device {i}"))?;
        clients.push(c);
    }
    for c in &mut clients {
        c.pull_from(&relay)?;
    }
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?.to_string();
    let shared = Shared::new(relay);
    let server = {
        let shared = shared.clone();
        std::thread::spawn(move || {
            serve(
                &listener,
                shared,
                ServeOptions {
                    timeout: TIMEOUT,
                    sessions: Some((devices * 2) as u64),
                    ..ServeOptions::default()
                },
                |_, result| {
                    if let Err(e) = result {
                        eprintln!("  a session failed: {e}");
                    }
                },
            )
        })
    };
    println!("{devices} devices, one relay, {CONCURRENCY} syncing at once over loopback");
    println!("| round | sessions s | relay dir MB | op log MB | dir ÷ log |");
    println!("|---|---|---|---|---|");
    for round in 1..=2u8 {
        let started = Instant::now();
        for chunk in clients.chunks_mut(CONCURRENCY) {
            std::thread::scope(|s| {
                for (i, c) in chunk.iter_mut().enumerate() {
                    let addr = addr.clone();
                    s.spawn(move || {
                        let mut contact = Contact::new(ContactId(rand_id(c.id().0, round, i)));
                        contact.set(Field::Given, format!("round {round}"));
                        c.add_contact(&contact).unwrap();
                        c.sync_tcp(&addr, TIMEOUT).unwrap();
                    });
                }
            });
        }
        let secs = started.elapsed().as_secs_f64();
        let dir = dir_bytes(&relay_dir)? as f64 / 1e6;
        let log = std::fs::metadata(relay_dir.join("ops.log"))?.len() as f64 / 1e6;
        println!(
            "| {round} | {secs:.1} | {dir:.1} | {log:.2} | {:.0}× |",
            dir / log
        );
    }
    server.join().map_err(|_| "the relay panicked")??;
    Ok(())
}

/// A contact id of its own per device and round.
fn rand_id(device: [u8; 16], round: u8, i: usize) -> [u8; 16] {
    let mut id = device;
    id[0] ^= round;
    id[1] ^= i as u8;
    id[15] = 0xcc;
    id
}

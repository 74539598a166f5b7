//! The first sync after an open (issue 23): what an app pays when it starts and syncs with a
//! peer, at several history sizes, with nothing to exchange and with 10 + 10 saves made before
//! the open. Two copies of a cached store are admitted to its book and synced once (so each
//! knows the other), then closed; each round (makes the saves, closes,) opens both again and
//! times one session between them, then a second session on the same handles (the warm
//! figure). Medians of the rounds.
//!
//! `cargo run --release -p cardlog-benches --bin resume_figures [-- --ops 10000,200000]`
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::time::Duration;

use std::sync::Arc;

use cardlog::{Field, Options};
use cardlog_benches::figures::{machine, median, Args};
use cardlog_benches::sync::{diverge, sync_pair};
use cardlog_benches::{stores, Error, FieldEdits, XorShift};
use cardlog_core::FakeClock;

const ROUNDS: usize = 5;
/// Saves each side makes before the open, in the incremental scenario.
const SAVES: usize = 10;
const SIZES_DEFAULT: [usize; 2] = [10_000, 200_000];

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn main() -> Result<(), Error> {
    let args = Args::from_env();
    let sizes: Vec<usize> = match args.value("--ops") {
        Some(list) => list
            .split(',')
            .map(str::parse)
            .collect::<Result<_, _>>()
            .map_err(|e| format!("--ops: {e}"))?,
        None => SIZES_DEFAULT.to_vec(),
    };
    println!("machine: {}", machine());
    println!(
        "{:>10} {:>7} {:>12} {:>14} {:>14} {:>10}",
        "ops", "saves", "open ms", "first sync ms", "second sync ms", "exchanged"
    );
    for ops in sizes {
        for saves in [0, SAVES] {
            scenario(ops, saves)?;
        }
    }
    Ok(())
}

/// One history size, `saves` saves per side before each open.
fn scenario(ops: usize, saves: usize) -> Result<(), Error> {
    {
        let (template, _) = stores::cached(ops)?;
        let config = stores::config(ops);
        let clock = Arc::new(FakeClock::new(FieldEdits::end_ms(&config)));
        let options = Options {
            wall: clock.clone(),
            ..stores::default_options(&config)
        };
        let mut rng = XorShift::new(7);
        let scratch = stores::scratch()?;
        let (a_dir, b_dir) = (scratch.path().join("a"), scratch.path().join("b"));
        stores::copy_dir(&template, &a_dir)?;
        stores::copy_dir(&template, &b_dir)?;
        {
            let (mut a, _, _) = stores::open_timed(&a_dir, &options)?;
            let (mut b, _, _) = stores::open_timed(&b_dir, &options)?;
            stores::admit_copies(&template, &mut [&mut a, &mut b])?;
            sync_pair(&mut a, &mut b)?;
        }
        let (mut opens, mut firsts, mut seconds) = (Vec::new(), Vec::new(), Vec::new());
        let mut exchanged = 0;
        for _ in 0..ROUNDS {
            if saves > 0 {
                let (mut a, _, _) = stores::open_timed(&a_dir, &options)?;
                let (mut b, _, _) = stores::open_timed(&b_dir, &options)?;
                diverge(&mut a, &config, &clock, &mut rng, saves, Field::Note, 1_000)?;
                diverge(
                    &mut b,
                    &config,
                    &clock,
                    &mut rng,
                    saves,
                    Field::Title,
                    1_000,
                )?;
            }
            std::thread::sleep(Duration::from_millis(100));
            let (mut a, open_a, _) = stores::open_timed(&a_dir, &options)?;
            let (mut b, _, _) = stores::open_timed(&b_dir, &options)?;
            opens.push(ms(open_a));
            let first = sync_pair(&mut a, &mut b)?;
            if std::env::var_os("CARDLOG_CALLS").is_some() {
                eprintln!("{:?}\n{:?}", first.initiator_calls, first.responder_calls);
            }
            exchanged += first.exchanged_ops();
            firsts.push(ms(first.elapsed));
            let second = sync_pair(&mut a, &mut b)?;
            exchanged += second.exchanged_ops();
            seconds.push(ms(second.elapsed));
        }
        println!(
            "{ops:>10} {saves:>7} {:>12.1} {:>14.1} {:>14.1} {exchanged:>10}",
            median(&mut opens),
            median(&mut firsts),
            median(&mut seconds)
        );
    }
    Ok(())
}

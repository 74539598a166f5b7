//! One contact workload on cardlog, automerge and loro, side by side (issue 8): saves per
//! second, bytes kept, open time, full and incremental sync (bytes and time), peak memory, as
//! absolute figures and as ratios cardlog / peer, checked against the targets.
//!
//! `cargo run --release -p cardlog-benches --bin compare [-- OPTIONS]`
//!
//! - `--quick`: a smoke run (200 contacts, 2,000 edits) of a few seconds, for CI.
//! - `--contacts N`, `--edits N`, `--diverge N`: the workload (default 10,000, 100,000, 100).
//! - `--chunk N`: saves generated, then made, at a time; in cardlog's bulk mode, the saves
//!   made durable together (default 1,000).
//! - `--rounds N`: run every engine N times, interleaved; the table shows medians (default 1;
//!   with an even N the upper of the two middle values).
//! - `--scratch DIR` (or `CARDLOG_COMPARE_DIR`): where cardlog's replicas are written (a fresh
//!   temporary directory inside it, removed at the end); default: the system's temp dir.
//!
//! Each engine's whole run is one child process (this binary re-executed with
//! `--engine cardlog-durable|cardlog-bulk|automerge|loro`), so its peak memory (VmHWM) is its
//! own. Children print `FIG name value` lines (`cardlog_benches::figures`); rounds visit the
//! engines round-robin, starting one engine later each round. What each engine does is in
//! `cardlog_benches::compare` and its modules.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Instant;

use cardlog_benches::compare::workload::WorkloadConfig;
use cardlog_benches::compare::{self, Engine, Options};
use cardlog_benches::figures::{self, Args, Figures};
use cardlog_benches::Error;

/// Open plus first read of a contact, per run.
const FIG_OPEN_PLUS_READ_MS: &str = "open_plus_read_ms";

/// Parsed command line.
fn main() -> Result<(), Error> {
    let args = Args::from_env();
    if args.has("--help") || args.has("-h") {
        println!(
            "compare [--quick] [--contacts N] [--edits N] [--diverge N] [--chunk N] \
             [--rounds N] [--scratch DIR]\n\
             One contact workload on cardlog, automerge and loro (see the source's docs)."
        );
        return Ok(());
    }
    let quick = args.has("--quick");
    let full = WorkloadConfig::full();
    let (contacts, edits) = if quick {
        (200, 2_000)
    } else {
        (full.contacts, full.edits)
    };
    let options = Options {
        workload: WorkloadConfig {
            contacts: args.number("--contacts", contacts)?,
            edits: args.number("--edits", edits)?,
            diverge: args.number("--diverge", full.diverge)?,
            seed: full.seed,
        },
        chunk: args.number("--chunk", 1_000)?.max(1),
    };
    if options.workload.contacts == 0 {
        return Err("--contacts must be at least 1".into());
    }
    if let Some(engine) = args.value("--engine") {
        let scratch = PathBuf::from(args.value("--scratch").ok_or("--scratch is missing")?);
        return compare::run(Engine::parse(engine)?, &options, &scratch);
    }
    let scratch = args
        .value("--scratch")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("CARDLOG_COMPARE_DIR").map(PathBuf::from));
    parent(&options, args.number("--rounds", 1)?.max(1), scratch)
}

fn parent(options: &Options, rounds: usize, scratch: Option<PathBuf>) -> Result<(), Error> {
    let started = Instant::now();
    let scratch = match scratch {
        Some(base) => {
            std::fs::create_dir_all(&base)?;
            tempfile::tempdir_in(base)?
        }
        None => tempfile::tempdir()?,
    };
    let w = options.workload;
    eprintln!(
        "compare: {} contacts x {} fields, {} single-field saves, {} + {} divergent saves; \
         chunks of {}; {rounds} round(s); scratch {}",
        w.contacts,
        compare::workload::FIELDS.len(),
        w.edits,
        w.diverge,
        w.diverge,
        options.chunk,
        scratch.path().display()
    );
    let mut runs: BTreeMap<&'static str, Vec<Figures>> = BTreeMap::new();
    for round in 0..rounds {
        for k in 0..Engine::ALL.len() {
            let Some(engine) = Engine::ALL.get((k + round) % Engine::ALL.len()) else {
                continue;
            };
            let dir = scratch
                .path()
                .join(format!("round{}-{}", round + 1, engine.name()));
            std::fs::create_dir_all(&dir)?;
            let dir_arg = dir.to_string_lossy().into_owned();
            let numbers = [
                ("--contacts", w.contacts),
                ("--edits", w.edits),
                ("--diverge", w.diverge),
                ("--chunk", options.chunk),
            ]
            .map(|(flag, n)| (flag, n.to_string()));
            let mut child_args = vec!["--engine", engine.name(), "--scratch", &dir_arg];
            for (flag, n) in &numbers {
                child_args.extend([*flag, n.as_str()]);
            }
            let label = format!("round {} {}", round + 1, engine.name());
            let mut figs = figures::child(&label, &child_args)?;
            // Open plus first read of this run (a sum per run, not of medians).
            if let (Some(open), Some(read)) = (
                figs.get(compare::FIG_OPEN_MS),
                figs.get(compare::FIG_FIRST_READ_MS),
            ) {
                figs.insert(FIG_OPEN_PLUS_READ_MS.into(), open + read);
            }
            std::fs::remove_dir_all(&dir)?;
            runs.entry(engine.name()).or_default().push(figs);
        }
    }
    let medians: BTreeMap<&str, Figures> = runs
        .iter()
        .map(|(engine, runs)| (*engine, figures::medians(runs)))
        .collect();
    println!();
    println!("Machine: {}", figures::machine());
    println!(
        "Workload: {} contacts x {} fields (one save each), then {} single-field saves; \
         two replicas then diverge by {} saves each. {} round(s){}.",
        w.contacts,
        compare::workload::FIELDS.len(),
        w.edits,
        w.diverge,
        rounds,
        if rounds > 1 { ", medians" } else { "" }
    );
    println!();
    print_table(&table(options, &medians));
    println!();
    print_details(&runs);
    println!();
    println!("compare: done in {:.1} s", started.elapsed().as_secs_f64());
    Ok(())
}

/// A ratio cardlog / peer must satisfy.
#[derive(Clone, Copy)]
enum Bound {
    AtLeast(f64),
    AtMost(f64),
}

impl Bound {
    fn holds(self, ratio: f64) -> Option<bool> {
        if !ratio.is_finite() {
            return None;
        }
        Some(match self {
            Bound::AtLeast(x) => ratio >= x,
            Bound::AtMost(x) => ratio <= x,
        })
    }

    fn text(self, peer: &str) -> String {
        match self {
            Bound::AtLeast(x) => format!("c/{peer} >= {}", fmt_ratio(x)),
            Bound::AtMost(x) => format!("c/{peer} <= {}", fmt_ratio(x)),
        }
    }
}

/// Which ratios a row is checked against: against automerge, against loro, and whether the
/// loro bound is only a stretch goal.
#[derive(Clone, Copy)]
struct Target {
    automerge: Option<Bound>,
    loro: Option<Bound>,
    loro_is_stretch: bool,
}

struct Row {
    label: String,
    /// The figure, and which cardlog run it comes from.
    figure: &'static str,
    cardlog: &'static str,
    target: Option<Target>,
}

fn table(options: &Options, medians: &BTreeMap<&str, Figures>) -> Vec<Vec<String>> {
    let w = options.workload;
    let bulk_target = Target {
        automerge: Some(Bound::AtLeast(1.0)),
        loro: Some(Bound::AtLeast(0.5)),
        loro_is_stretch: true,
    };
    let open_target = Target {
        automerge: Some(Bound::AtMost(0.1)),
        loro: Some(Bound::AtMost(10.0)),
        loro_is_stretch: false,
    };
    let row = |label: String, figure, cardlog, target| Row {
        label,
        figure,
        cardlog,
        target,
    };
    let durable = Engine::CardlogDurable.name();
    let bulk = Engine::CardlogBulk.name();
    let ops = w.contacts + w.edits;
    let rows = vec![
        row(
            format!("Saves/s, phase 1 ({} creates): cardlog durable", w.contacts),
            compare::FIG_CREATE_SAVES_PER_S,
            durable,
            None,
        ),
        row(
            format!(
                "Saves/s, phase 1: cardlog bulk ({} per durable batch)",
                options.chunk
            ),
            compare::FIG_CREATE_SAVES_PER_S,
            bulk,
            Some(bulk_target),
        ),
        row(
            format!(
                "Saves/s, phase 2 ({} single-field): cardlog durable",
                w.edits
            ),
            compare::FIG_EDIT_SAVES_PER_S,
            durable,
            None,
        ),
        row(
            "Saves/s, phase 2: cardlog bulk".into(),
            compare::FIG_EDIT_SAVES_PER_S,
            bulk,
            Some(bulk_target),
        ),
        row(
            format!("Bytes kept, {ops} ops (cardlog: store dir; peers: save/snapshot)"),
            compare::FIG_BYTES,
            durable,
            None,
        ),
        row(
            "Bytes kept after `compact` (cardlog only; its database rewritten in key order)".into(),
            compare::on_cardlog::FIG_BYTES_COMPACTED,
            durable,
            None,
        ),
        row(
            "`compact`, ms (cardlog only)".into(),
            compare::on_cardlog::FIG_COMPACT_MS,
            durable,
            None,
        ),
        // cardlog has no such step: its run prints no save_ms.
        row(
            "Save to bytes, ms (peers only)".into(),
            compare::FIG_SAVE_MS,
            durable,
            None,
        ),
        row(
            format!("Open/load of the {ops}-op state, ms"),
            compare::FIG_OPEN_MS,
            durable,
            Some(open_target),
        ),
        row(
            "Open/load again, ms (cardlog: sled has snapshotted)".into(),
            compare::FIG_REOPEN_MS,
            durable,
            Some(open_target),
        ),
        row(
            "First read of a contact after open, ms".into(),
            compare::FIG_FIRST_READ_MS,
            durable,
            None,
        ),
        row(
            "Open + first read, ms".into(),
            FIG_OPEN_PLUS_READ_MS,
            durable,
            Some(open_target),
        ),
        row(
            "Full sync to an empty peer, bytes".into(),
            compare::FIG_FULL_SYNC_BYTES,
            durable,
            None,
        ),
        row(
            "Full sync to an empty peer, ms".into(),
            compare::FIG_FULL_SYNC_MS,
            durable,
            None,
        ),
        row(
            format!(
                "Incremental sync ({} + {} saves), bytes",
                w.diverge, w.diverge
            ),
            compare::FIG_INC_SYNC_BYTES,
            durable,
            Some(Target {
                automerge: Some(Bound::AtMost(1.0 / 3.0)),
                loro: Some(Bound::AtMost(1.0)),
                loro_is_stretch: true,
            }),
        ),
        row(
            "Incremental sync, ms".into(),
            compare::FIG_INC_SYNC_MS,
            durable,
            None,
        ),
        row(
            "Peak RSS before sync (saves, save, open), MB".into(),
            compare::FIG_PEAK_MB_BEFORE_SYNC,
            durable,
            None,
        ),
        row(
            "Peak RSS, whole run, MB".into(),
            compare::FIG_PEAK_MB,
            durable,
            Some(Target {
                automerge: Some(Bound::AtMost(0.5)),
                loro: None,
                loro_is_stretch: false,
            }),
        ),
    ];

    let get =
        |engine: &str, figure: &str| -> Option<f64> { medians.get(engine)?.get(figure).copied() };
    let am = Engine::Automerge.name();
    let lo = Engine::Loro.name();
    let mut out = vec![[
        "Figure",
        "cardlog",
        "automerge",
        "loro",
        "cardlog/automerge",
        "cardlog/loro",
        "Target",
        "Result",
    ]
    .map(String::from)
    .to_vec()];
    for r in rows {
        let c = get(r.cardlog, r.figure);
        let a = get(am, r.figure);
        let l = get(lo, r.figure);
        let ratio = |peer: Option<f64>| match (c, peer) {
            (Some(c), Some(p)) if p != 0.0 => Some(c / p),
            _ => None,
        };
        let (ra, rl) = (ratio(a), ratio(l));
        let (target, result) = match r.target {
            None => (String::new(), String::new()),
            Some(t) => judge(t, ra, rl),
        };
        out.push(vec![
            r.label,
            c.map_or("-".into(), fmt_value),
            a.map_or("-".into(), fmt_value),
            l.map_or("-".into(), fmt_value),
            ra.map_or("-".into(), fmt_ratio),
            rl.map_or("-".into(), fmt_ratio),
            target,
            result,
        ]);
    }
    out
}

/// The target text and the verdict of a row.
fn judge(t: Target, ra: Option<f64>, rl: Option<f64>) -> (String, String) {
    let mut text = Vec::new();
    let mut main = Vec::new();
    let mut stretch = None;
    if let Some(b) = t.automerge {
        text.push(b.text("am"));
        main.push(ra.and_then(|r| b.holds(r)));
    }
    if let Some(b) = t.loro {
        if t.loro_is_stretch {
            text.push(format!("stretch {}", b.text("loro")));
            stretch = Some(rl.and_then(|r| b.holds(r)));
        } else {
            text.push(b.text("loro"));
            main.push(rl.and_then(|r| b.holds(r)));
        }
    }
    let verdict = |v: Option<bool>| v.map_or("n/a", figures::pass);
    let all = if main.iter().any(Option::is_none) {
        None
    } else {
        Some(main.iter().all(|v| *v == Some(true)))
    };
    let mut result = verdict(all).to_owned();
    if let Some(s) = stretch {
        result.push_str(&format!(" (stretch {})", verdict(s)));
    }
    (text.join("; "), result)
}

fn print_table(rows: &[Vec<String>]) {
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..columns)
        .map(|i| {
            rows.iter()
                .filter_map(|r| r.get(i))
                .map(|c| c.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    for (n, row) in rows.iter().enumerate() {
        let cells: Vec<String> = row
            .iter()
            .zip(&widths)
            .enumerate()
            .map(|(i, (cell, width))| {
                if i == 0 || i >= 6 {
                    format!("{cell:<width$}")
                } else {
                    format!("{cell:>width$}")
                }
            })
            .collect();
        println!("| {} |", cells.join(" | "));
        if n == 0 {
            // Markdown: numbers right-aligned.
            let rule: Vec<String> = widths
                .iter()
                .enumerate()
                .map(|(i, w)| {
                    if i == 0 || i >= 6 {
                        "-".repeat(w + 2)
                    } else {
                        format!("{}:", "-".repeat(w + 1))
                    }
                })
                .collect();
            println!("|{}|", rule.join("|"));
        }
    }
}

/// Every figure of every run, per engine.
fn print_details(runs: &BTreeMap<&str, Vec<Figures>>) {
    println!("All figures (per engine; one value per round):");
    for engine in Engine::ALL {
        let Some(runs) = runs.get(engine.name()) else {
            continue;
        };
        let mut names: Vec<&String> = runs.iter().flat_map(|f| f.keys()).collect();
        names.sort();
        names.dedup();
        let line: Vec<String> = names
            .into_iter()
            .map(|name| {
                let values: Vec<String> = runs
                    .iter()
                    .map(|f| f.get(name).map_or("-".into(), |v| fmt_value(*v)))
                    .collect();
                format!("{name}={}", values.join("/"))
            })
            .collect();
        println!("  {}: {}", engine.name(), line.join(" "));
    }
}

/// A figure: thousands separated at 1,000 and above, three significant digits below.
fn fmt_value(v: f64) -> String {
    if !v.is_finite() {
        return format!("{v}");
    }
    if v.abs() >= 1_000.0 {
        let digits = format!("{:.0}", v.abs());
        let mut out = String::new();
        for (i, ch) in digits.chars().enumerate() {
            if i > 0 && (digits.len() - i) % 3 == 0 {
                out.push(',');
            }
            out.push(ch);
        }
        if v < 0.0 {
            out.insert(0, '-');
        }
        out
    } else if v.abs() >= 100.0 {
        format!("{v:.0}")
    } else if v.abs() >= 10.0 {
        format!("{v:.1}")
    } else if v.abs() >= 1.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.3}")
    }
}

/// A ratio with three significant digits (or two decimals below 0.01's precision).
fn fmt_ratio(v: f64) -> String {
    if v.abs() >= 100.0 {
        format!("{v:.0}")
    } else if v.abs() >= 10.0 {
        format!("{v:.1}")
    } else if v.abs() >= 1.0 {
        format!("{v:.2}")
    } else if v.abs() >= 0.01 {
        format!("{v:.3}")
    } else {
        format!("{v:.2e}")
    }
}

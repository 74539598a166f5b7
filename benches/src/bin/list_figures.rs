//! Listing figures (issue 22): listing every contact of a 100,000-contact store the way
//! `cardlog list` did before (`Replica::contacts`, every full view at once, then the rows),
//! one view at a time (`Replica::each_contact`: `stream`), and the way it does now (the rows
//! of the name index, `Replica::each_row`: `rows`); the first page of 50 contacts sorted by
//! display name after an open: through the name index (`Replica::contacts_page`), as it was
//! before the index (every contact offered to core's `Pager`: `scan_page`), and with a search.
//! Each scenario runs in a fresh process (peak memory is its own); medians are reported.
//!
//! The `cli` rows run the `cardlog` binary itself (`cardlog list > /dev/null`, its wall time
//! and its peak memory from `getrusage(RUSAGE_CHILDREN)`): the one built beside this binary, and with
//! `--before PATH` another build of it (the tree before a change) on its own copy of the store,
//! alternating with it in one run.
//!
//! `cargo build --release -p cardlog-cli && cargo run --release -p cardlog-benches --bin
//! list_figures [-- --contacts N] [--before PATH]`
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use cardlog::{Contact, ContactId, ContactQuery, ContactView, Field, ItemKind, Replica};
use cardlog_benches::figures::{self, child_quiet, fig, get, machine, median, peak_rss_mb, Args};
use cardlog_benches::stores;
use cardlog_benches::{Error, XorShift};
use cardlog_core::Pager;

const CONTACTS_DEFAULT: usize = 100_000;
const ROUNDS: usize = 5;
const SCENARIOS: [&str; 6] = [
    "collect",
    "stream",
    "rows",
    "scan_page",
    "page",
    "search_page",
];
const GIVEN: [&str; 8] = [
    "Ada", "Grace", "Alan", "Edsger", "Barbara", "Ken", "Frances", "Niklaus",
];
const FAMILY: [&str; 8] = [
    "Lovelace", "Hopper", "Turing", "Dijkstra", "Liskov", "Thompson", "Allen", "Wirth",
];

fn main() -> Result<(), Error> {
    let args = Args::from_env();
    let value_of = |flag: &str| args.value(flag).map(str::to_owned);
    if let Some(scenario) = value_of("--scenario") {
        let dir = PathBuf::from(value_of("--dir").ok_or("--dir missing")?);
        if scenario == "cli" {
            return run_cli(Path::new(&value_of("--cli").ok_or("--cli missing")?), &dir);
        }
        return run(&scenario, &dir);
    }
    let contacts = value_of("--contacts")
        .map(|s| s.parse())
        .transpose()?
        .unwrap_or(CONTACTS_DEFAULT);
    parent(contacts, value_of("--before").map(PathBuf::from))
}

/// Runs `cardlog list` (the binary at `cli`) on the store, its output to /dev/null: its wall
/// time and its peak memory (this process's only child, so `RUSAGE_CHILDREN` is its own).
#[cfg(unix)]
fn run_cli(cli: &Path, dir: &Path) -> Result<(), Error> {
    let start = Instant::now();
    let status = Command::new(cli)
        .arg("--store")
        .arg(dir)
        .arg("list")
        .stdout(Stdio::null())
        .status()?;
    let ms = start.elapsed().as_secs_f64() * 1e3;
    if !status.success() {
        return Err(format!("{} list: {status}", cli.display()).into());
    }
    use nix::sys::resource::{getrusage, UsageWho};
    let usage = getrusage(UsageWho::RUSAGE_CHILDREN)?;
    fig("ms", ms);
    // Linux gives kilobytes.
    fig("peak_rss_mb", usage.max_rss() as f64 * 1024.0 / 1e6);
    Ok(())
}

/// The peak memory of another process is read with `getrusage`: Unix only.
#[cfg(not(unix))]
fn run_cli(_cli: &Path, _dir: &Path) -> Result<(), Error> {
    Err("the cli scenario measures a process with getrusage: Unix only".into())
}

/// One listed row, as `cardlog list` prints it.
fn row(v: &ContactView) -> (String, String, String, usize) {
    let c = &v.contact;
    let first = c
        .first_phone_or_email()
        .map(|i| i.body.to_string())
        .unwrap_or_default();
    (c.id.to_string(), c.display_name(), first, v.conflicts.len())
}

fn run(scenario: &str, dir: &Path) -> Result<(), Error> {
    let opened = Instant::now();
    let r = Replica::open(dir)?;
    let open_ms = opened.elapsed().as_secs_f64() * 1e3;
    let start = Instant::now();
    let listed = match scenario {
        "collect" => {
            let all = r.contacts()?;
            let rows: Vec<_> = all.iter().map(row).collect();
            rows.len()
        }
        "stream" => {
            let mut rows = Vec::new();
            r.each_contact(false, |v| {
                rows.push(row(&v));
                ControlFlow::Continue(())
            })?;
            rows.len()
        }
        "scan_page" => {
            let mut pager = Pager::new(ContactQuery {
                limit: 50,
                ..ContactQuery::default()
            });
            r.each_contact(false, |v| {
                pager.offer(v);
                ControlFlow::Continue(())
            })?;
            pager.finish().contacts.len()
        }
        "rows" => {
            // What `cardlog list` keeps: the text of each row until the widths are known.
            let (mut text, mut ends) = (String::new(), Vec::new());
            r.each_row(false, |row| {
                text.push_str(&row.id.to_string()[..8]);
                text.push_str(&row.name);
                text.push_str(row.phone_or_email.as_deref().unwrap_or_default());
                ends.push(text.len());
                ControlFlow::Continue(())
            })?;
            ends.len()
        }
        "page" | "search_page" => {
            let query = ContactQuery {
                limit: 50,
                search: (scenario == "search_page").then(|| "lovelace".to_owned()),
                ..ContactQuery::default()
            };
            r.contacts_page(&query)?.contacts.len()
        }
        other => return Err(format!("unknown scenario {other}").into()),
    };
    fig("open_ms", open_ms);
    fig("ms", start.elapsed().as_secs_f64() * 1e3);
    fig("listed", listed as f64);
    fig("peak_rss_mb", peak_rss_mb());
    Ok(())
}

/// The cached store of `n` contacts (given, family, org on some, a phone on most), built
/// in bulk on first use.
fn store(n: usize) -> Result<PathBuf, Error> {
    let root = stores::cache_root();
    // Per store format: a cached store of an older one would be upgraded by the first run.
    let v = cardlog_store::STORE_FORMAT_VERSION;
    let dir = root.join(format!("list-{n}-v{v}"));
    let ready = root.join(format!("list-{n}-v{v}.ready"));
    if ready.exists() && dir.exists() {
        return Ok(dir);
    }
    if dir.exists() {
        std::fs::remove_dir_all(&dir)?;
    }
    std::fs::create_dir_all(&root)?;
    let mut r = Replica::create(&dir)?;
    let mut rng = XorShift::new(22);
    let mut bulk = r.bulk();
    for i in 0..n {
        let mut id = [0u8; 16];
        id[..8].copy_from_slice(&(i as u64).to_be_bytes());
        let mut c = Contact::new(ContactId(id));
        c.set(Field::Given, GIVEN[rng.below(GIVEN.len())])
            .set(Field::Family, FAMILY[rng.below(FAMILY.len())]);
        if rng.below(3) == 0 {
            c.set(Field::Org, "Analytical Engines");
        }
        if rng.below(4) != 0 {
            c.add_text_item(ItemKind::Phone, "mobile", format!("+44 20 {i:08}"))?;
        }
        bulk.add_contact(&c)?;
    }
    bulk.finish()?;
    drop(r);
    std::fs::write(&ready, "ready\n")?;
    Ok(dir)
}

fn parent(n: usize, before: Option<PathBuf>) -> Result<(), Error> {
    eprintln!("list figures: {}", machine());
    let started = Instant::now();
    let dir = store(n)?;
    // An index of an older version is rebuilt at the first open: not in the figures.
    drop(Replica::open(&dir)?);
    eprintln!(
        "  store of {n} contacts ready in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let d = dir.to_string_lossy().into_owned();
    let cli = std::env::current_exe()?.with_file_name("cardlog");
    if !cli.exists() {
        return Err(format!(
            "{} missing: cargo build --release -p cardlog-cli",
            cli.display()
        )
        .into());
    }
    // The build before a change lists its own copy (each build keeps the index its way).
    let before = match before {
        Some(exe) => {
            let copy = dir.with_extension("before");
            if copy.exists() {
                std::fs::remove_dir_all(&copy)?;
            }
            let copied = Command::new("cp").arg("-a").arg(&dir).arg(&copy).status()?;
            if !copied.success() {
                return Err("cp -a of the store failed".into());
            }
            Some((
                exe.to_string_lossy().into_owned(),
                copy.to_string_lossy().into_owned(),
            ))
        }
        None => None,
    };
    let cli = cli.to_string_lossy().into_owned();
    let mut cli_runs: Vec<(&str, &str, &str)> = vec![("cli", cli.as_str(), d.as_str())];
    if let Some((exe, copy)) = &before {
        cli_runs.push(("cli_before", exe.as_str(), copy.as_str()));
    }
    // A first run of each build, not counted: the copy's first open takes a new device id
    // (and an older build rebuilds the index its way).
    for (_, exe, store) in &cli_runs {
        child_quiet(&["--scenario", "cli", "--cli", exe, "--dir", store])?;
    }
    let mut runs: std::collections::BTreeMap<&str, Vec<figures::Figures>> = Default::default();
    for _ in 0..ROUNDS {
        for scenario in SCENARIOS {
            let f = child_quiet(&["--scenario", scenario, "--dir", &d])?;
            runs.entry(scenario).or_default().push(f);
        }
        for (name, exe, store) in &cli_runs {
            let f = child_quiet(&["--scenario", "cli", "--cli", exe, "--dir", store])?;
            runs.entry(name).or_default().push(f);
        }
    }
    let med = |scenario: &str, name: &str| -> Result<f64, Error> {
        let mut values = Vec::new();
        for f in runs.get(scenario).map(Vec::as_slice).unwrap_or_default() {
            values.push(get(f, name)?);
        }
        Ok(median(&mut values))
    };
    println!("{n} contacts, medians of {ROUNDS} runs each, one process per run");
    println!("| scenario | listed | open ms | list ms | peak RSS MB |");
    println!("|---|---|---|---|---|");
    for scenario in SCENARIOS {
        println!(
            "| {scenario} | {} | {:.1} | {:.1} | {:.1} |",
            med(scenario, "listed")?,
            med(scenario, "open_ms")?,
            med(scenario, "ms")?,
            med(scenario, "peak_rss_mb")?
        );
    }
    println!(
        "stream ÷ collect: time {:.2}×, peak RSS {:.2}×",
        med("stream", "ms")? / med("collect", "ms")?,
        med("stream", "peak_rss_mb")? / med("collect", "peak_rss_mb")?
    );
    println!(
        "rows ÷ collect: time {:.2}×, peak RSS {:.2}×",
        med("rows", "ms")? / med("collect", "ms")?,
        med("rows", "peak_rss_mb")? / med("collect", "peak_rss_mb")?
    );
    println!("| cardlog list (whole process) | wall ms | peak RSS MB |");
    println!("|---|---|---|");
    for (name, _, _) in &cli_runs {
        println!(
            "| {name} | {:.1} | {:.1} |",
            med(name, "ms")?,
            med(name, "peak_rss_mb")?
        );
    }
    if before.is_some() {
        println!(
            "cli ÷ cli_before: time {:.2}× (target ≤ 0.5×), peak RSS {:.2}×",
            med("cli", "ms")? / med("cli_before", "ms")?,
            med("cli", "peak_rss_mb")? / med("cli_before", "peak_rss_mb")?
        );
    }
    println!(
        "cardlog list peak RSS {:.1} MB: target ≤ 30 MB: {}",
        med("cli", "peak_rss_mb")?,
        if med("cli", "peak_rss_mb")? <= 30.0 {
            "pass"
        } else {
            "FAIL"
        }
    );
    println!(
        "first page of 50 after open: {:.2} ms through the index ({:.2} ms read whole): \
         target ≤ 5 ms: {}",
        med("page", "ms")?,
        med("scan_page", "ms")?,
        if med("page", "ms")? <= 5.0 {
            "pass"
        } else {
            "FAIL"
        }
    );
    Ok(())
}

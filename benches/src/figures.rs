//! Plumbing of the figures binaries (`store_figures`, `sync_figures`): each scenario runs in a fresh child
//! process (the binary re-executed with `--scenario`), prints `FIG name value` lines, and the
//! parent collects them into a table. A fresh process per scenario keeps one scenario's caches
//! and allocations out of the next one's figures.

use std::collections::BTreeMap;
use std::process::Command;
use std::time::Instant;

use crate::Error;

/// A figures binary's command line: `--flag value` pairs and bare flags, in any order.
pub struct Args(Vec<String>);

impl Args {
    /// The process's arguments, less the program name.
    pub fn from_env() -> Args {
        Args(std::env::args().skip(1).collect())
    }

    /// The value after `flag`, if given.
    pub fn value(&self, flag: &str) -> Option<&str> {
        self.0
            .iter()
            .position(|a| a == flag)
            .and_then(|i| self.0.get(i + 1))
            .map(String::as_str)
    }

    /// The number after `flag` (`_` allowed between digits), or `default` when not given.
    pub fn number(&self, flag: &str, default: usize) -> Result<usize, Error> {
        match self.value(flag) {
            Some(v) => Ok(v.replace('_', "").parse()?),
            None => Ok(default),
        }
    }

    /// Whether the bare `flag` is given.
    pub fn has(&self, flag: &str) -> bool {
        self.0.iter().any(|a| a == flag)
    }
}

/// Figures printed by one scenario, by name.
pub type Figures = BTreeMap<String, f64>;

/// Prints one figure for the parent to collect.
pub fn fig(name: &str, value: f64) {
    println!("FIG {name} {value}");
}

/// Runs this binary again with `args`, passes its stderr on, and returns the figures it
/// printed; `label` names it in the progress line.
pub fn child(label: &str, args: &[&str]) -> Result<Figures, Error> {
    let started = Instant::now();
    let figures = child_quiet(args)?;
    eprintln!("  {label} done in {:.1} s", started.elapsed().as_secs_f64());
    Ok(figures)
}

/// [`child`] without the progress line.
pub fn child_quiet(args: &[&str]) -> Result<Figures, Error> {
    let exe = std::env::current_exe()?;
    let out = Command::new(exe).args(args).output()?;
    eprint!("{}", String::from_utf8_lossy(&out.stderr));
    if !out.status.success() {
        return Err(format!("scenario {args:?} failed: {}", out.status).into());
    }
    let mut figures = Figures::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let mut parts = line.split_whitespace();
        if let (Some("FIG"), Some(name), Some(value)) = (parts.next(), parts.next(), parts.next()) {
            figures.insert(name.to_owned(), value.parse()?);
        }
    }
    Ok(figures)
}

/// The figure `name`, or an error naming it.
pub fn get(figures: &Figures, name: &str) -> Result<f64, Error> {
    figures
        .get(name)
        .copied()
        .ok_or_else(|| format!("figure {name} missing").into())
}

/// The median of `values` (sorted in place); NaN when empty.
pub fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or(f64::NAN)
}

/// Per figure, the median over the runs that reported it.
pub fn medians(runs: &[Figures]) -> Figures {
    let mut values: BTreeMap<&str, Vec<f64>> = BTreeMap::new();
    for figs in runs {
        for (name, v) in figs {
            values.entry(name.as_str()).or_default().push(*v);
        }
    }
    values
        .into_iter()
        .map(|(name, mut v)| (name.to_owned(), median(&mut v)))
        .collect()
}

/// The CPU model, core count and memory of this machine, from /proc.
pub fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let mem_mb = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<u64>().ok())
        })
        .map_or(0, |kb| kb / 1024);
    format!("{cpu}, {cores} cores, {mem_mb} MiB RAM")
}

/// Peak resident memory of this process so far, in MB (10^6 bytes), from /proc.
pub fn peak_rss_mb() -> f64 {
    rss_mb().0
}

/// Peak and current resident memory of this process, in MB (10^6 bytes), from /proc.
pub fn rss_mb() -> (f64, f64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|kb| kb.parse::<f64>().ok())
            .map_or(f64::NAN, |kb| kb * 1024.0 / 1e6)
    };
    (field("VmHWM:"), field("VmRSS:"))
}

/// Bytes this process has written so far, from /proc/self/io: what it passed to write
/// calls (`wchar`) and what it sent toward the disk (`write_bytes`, counted as page-cache
/// pages are dirtied). `None` where /proc has no such file (not Linux).
pub fn io_written() -> Option<(u64, u64)> {
    let io = std::fs::read_to_string("/proc/self/io").ok()?;
    let field = |name: &str| {
        io.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|n| n.trim().parse::<u64>().ok())
    };
    Some((field("wchar:")?, field("write_bytes:")?))
}

/// Prints `{what}_wchar` and `{what}_write_bytes`: what this process wrote since `before`
/// ([`io_written`]), the bytes passed to write calls and those sent toward the disk (issue
/// 23's target for an open: at most 64 KiB). Nothing where /proc has no counts (a report
/// then says "not measured").
pub fn fig_written(what: &str, before: Option<(u64, u64)>) {
    if let (Some(before), Some((wchar, disk))) = (before, io_written()) {
        fig(
            &format!("{what}_wchar"),
            wchar.saturating_sub(before.0) as f64,
        );
        fig(
            &format!("{what}_write_bytes"),
            disk.saturating_sub(before.1) as f64,
        );
    }
}

/// `pass` or `FAIL`.
pub fn pass(ok: bool) -> &'static str {
    if ok {
        "pass"
    } else {
        "FAIL"
    }
}

/// A figure for a details line: whole numbers and large values without decimals.
pub fn fmt_value(v: f64) -> String {
    if v.fract() == 0.0 || v.abs() >= 100.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.3}")
    }
}

/// `n` ops as `10k`, `1M`, `110k`.
pub fn ops_label(n: usize) -> String {
    if n >= 1_000_000 && n.is_multiple_of(1_000_000) {
        format!("{}M", n / 1_000_000)
    } else if n.is_multiple_of(1_000) {
        format!("{}k", n / 1_000)
    } else {
        n.to_string()
    }
}

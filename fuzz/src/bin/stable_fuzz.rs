//! The stable-toolchain fuzz driver: runs one target (or all) for a given time without nightly
//! or cargo-fuzz. It loads the target's seeds (fuzz/seeds/<target>/) and working corpus
//! (fuzz/corpus/<target>/, if any), then loops: pick an input, mutate it (`cardlog_fuzz::mutate`,
//! seeded PRNG), run the target's check under `catch_unwind`. There is no coverage feedback;
//! instead an input showing an outcome feature not seen before (see `cardlog_fuzz::targets`)
//! joins the corpus and is saved to fuzz/corpus/<target>/. A panicking input is saved to
//! fuzz/artifacts/<target>/crash-<hash> (one per distinct panic location and message) and the
//! run goes on; the exit status is 1 if anything crashed.
//!
//! ```text
//! stable_fuzz TARGET|all SECONDS [--seed N] [--max-len BYTES] [--fuzz-dir DIR]
//! stable_fuzz list
//! ```
//!
//! Build it in release (`cargo build --release --manifest-path fuzz/Cargo.toml --bin
//! stable_fuzz`), or let fuzz/run.sh do it.

use std::collections::{BTreeMap, HashSet};
use std::panic::{self, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use cardlog_fuzz::mutate::{mutate, Rng};
use cardlog_fuzz::scratch::remove_scratch_root;
use cardlog_fuzz::targets::{target, Target, TARGETS};

/// The last panic's message and location, recorded by the panic hook.
static LAST_PANIC: Mutex<Option<String>> = Mutex::new(None);

/// Most inputs kept in memory per target (seeds included).
const CORPUS_MAX: usize = 2048;
/// An input taking longer than this is saved as `slow-<hash>`.
const SLOW: Duration = Duration::from_secs(2);

struct Args {
    targets: Vec<&'static Target>,
    seconds: u64,
    seed: u64,
    max_len: usize,
    fuzz_dir: PathBuf,
}

fn usage() -> ! {
    eprintln!(
        "usage: stable_fuzz TARGET|all SECONDS [--seed N] [--max-len BYTES] [--fuzz-dir DIR]\n       \
         stable_fuzz list\n\ntargets: {}",
        TARGETS.iter().map(|t| t.name).collect::<Vec<_>>().join(", ")
    );
    std::process::exit(2)
}

fn parse_args() -> Args {
    let mut args = std::env::args().skip(1);
    let name = args.next().unwrap_or_else(|| usage());
    if name == "list" {
        for t in TARGETS {
            println!("{}", t.name);
        }
        std::process::exit(0);
    }
    let targets: Vec<&'static Target> = if name == "all" {
        TARGETS.iter().collect()
    } else {
        match target(&name) {
            Some(t) => vec![t],
            None => {
                eprintln!("unknown target {name}");
                usage()
            }
        }
    };
    let seconds = args
        .next()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| usage());
    let mut out = Args {
        targets,
        seconds,
        seed: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64),
        max_len: 4096,
        fuzz_dir: PathBuf::from(env!("CARGO_MANIFEST_DIR")),
    };
    while let Some(flag) = args.next() {
        let value = args.next().unwrap_or_else(|| usage());
        match flag.as_str() {
            "--seed" => out.seed = value.parse().unwrap_or_else(|_| usage()),
            "--max-len" => out.max_len = value.parse().unwrap_or_else(|_| usage()),
            "--fuzz-dir" => out.fuzz_dir = PathBuf::from(value),
            _ => usage(),
        }
    }
    out
}

/// The files directly in `dir`, sorted by name (none if it does not exist).
fn read_dir_files(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut out: Vec<(String, Vec<u8>)> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.is_file())
        .filter_map(|p| {
            let name = p.file_name()?.to_string_lossy().into_owned();
            Some((name, std::fs::read(&p).ok()?))
        })
        .collect();
    out.sort();
    out
}

fn hash_hex(bytes: &[u8]) -> String {
    blake3::hash(bytes)
        .to_hex()
        .get(..16)
        .unwrap_or_default()
        .to_owned()
}

/// Runs the target once; `Err` carries the panic's message and location.
fn run_once(t: &Target, input: &[u8]) -> Result<Vec<u64>, String> {
    match panic::catch_unwind(AssertUnwindSafe(|| (t.run)(input))) {
        Ok(features) => Ok(features),
        Err(_) => Err(LAST_PANIC
            .lock()
            .map(|mut p| p.take())
            .unwrap_or_default()
            .unwrap_or_else(|| "panic without a message".into())),
    }
}

/// The part of a panic report that identifies the bug: its location and message without
/// digits (ids and counts differ between inputs hitting the same bug).
fn crash_key(report: &str) -> String {
    report
        .chars()
        .filter(|c| !c.is_ascii_digit())
        .take(200)
        .collect()
}

struct Outcome {
    execs: u64,
    elapsed: Duration,
    corpus: usize,
    features: usize,
    crashes: Crashes,
}

fn save(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let path = dir.join(name);
    if let Err(e) = std::fs::create_dir_all(dir).and_then(|()| std::fs::write(&path, bytes)) {
        eprintln!("could not save {}: {e}", path.display());
    }
    path
}

type Crashes = BTreeMap<String, (u64, PathBuf)>;

/// Counts a crash (or slow input) under its key, saving and printing the first input of each.
fn record(
    crashes: &mut Crashes,
    t: &Target,
    artifacts_dir: &Path,
    input: &[u8],
    report: String,
    kind: &str,
) {
    let key = crash_key(&report);
    let entry = crashes.entry(key).or_insert_with(|| {
        let path = save(artifacts_dir, &format!("{kind}-{}", hash_hex(input)), input);
        println!(
            "{}: {kind} ({} bytes), saved to {}\n  {report}",
            t.name,
            input.len(),
            path.display()
        );
        (0, path)
    });
    entry.0 += 1;
}

fn fuzz(t: &Target, args: &Args, seed: u64) -> Outcome {
    let seeds_dir = args.fuzz_dir.join("seeds").join(t.name);
    let corpus_dir = args.fuzz_dir.join("corpus").join(t.name);
    let artifacts_dir = args.fuzz_dir.join("artifacts").join(t.name);
    let mut rng = Rng::new(seed);
    let mut corpus: Vec<Vec<u8>> = read_dir_files(&seeds_dir)
        .into_iter()
        .chain(read_dir_files(&corpus_dir))
        .map(|(_, bytes)| bytes)
        .collect();
    if corpus.is_empty() {
        corpus.push(Vec::new());
    }
    let mut seen_inputs: HashSet<Vec<u8>> = corpus.iter().cloned().collect();
    let mut features: HashSet<u64> = HashSet::new();
    let mut crashes = Crashes::new();
    println!(
        "{}: {} inputs from {} and {}; seed {seed}",
        t.name,
        corpus.len(),
        seeds_dir.display(),
        corpus_dir.display()
    );
    // The starting inputs first, as they are.
    for input in corpus.clone() {
        match run_once(t, &input) {
            Ok(found) => features.extend(found),
            Err(report) => record(&mut crashes, t, &artifacts_dir, &input, report, "crash"),
        }
    }
    let start = Instant::now();
    let deadline = start + Duration::from_secs(args.seconds);
    let mut next_status = start + Duration::from_secs(10);
    let mut execs: u64 = 0;
    loop {
        if execs.is_multiple_of(64) {
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            if now >= next_status {
                let secs = now.duration_since(start).as_secs_f64();
                println!(
                    "{}: #{execs} {:.0} execs/s, corpus {}, features {}, crashes {}",
                    t.name,
                    execs as f64 / secs,
                    corpus.len(),
                    features.len(),
                    crashes.len()
                );
                next_status = now + Duration::from_secs(10);
            }
        }
        let parent = &corpus[rng.below(corpus.len())];
        let input = mutate(&mut rng, parent, &corpus, args.max_len);
        let began = Instant::now();
        let result = run_once(t, &input);
        let took = began.elapsed();
        execs += 1;
        match result {
            Ok(found) => {
                if took > SLOW {
                    record(
                        &mut crashes,
                        t,
                        &artifacts_dir,
                        &input,
                        format!("slow input: {took:?}"),
                        "slow",
                    );
                }
                let new = found
                    .into_iter()
                    .fold(false, |new, f| features.insert(f) | new);
                if new && corpus.len() < CORPUS_MAX && seen_inputs.insert(input.clone()) {
                    save(&corpus_dir, &hash_hex(&input), &input);
                    corpus.push(input);
                }
            }
            Err(report) => record(&mut crashes, t, &artifacts_dir, &input, report, "crash"),
        }
    }
    Outcome {
        execs,
        elapsed: start.elapsed(),
        corpus: corpus.len(),
        features: features.len(),
        crashes,
    }
}

fn main() {
    let args = parse_args();
    panic::set_hook(Box::new(|info| {
        let location = info
            .location()
            .map(|l| format!("{}:{}", l.file(), l.line()))
            .unwrap_or_default();
        let message = info
            .payload()
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| {
                info.payload()
                    .downcast_ref::<&str>()
                    .map(|s| (*s).to_owned())
            })
            .unwrap_or_default();
        if let Ok(mut last) = LAST_PANIC.lock() {
            *last = Some(format!("panicked at {location}: {message}"));
        }
    }));
    let mut failed = false;
    for (i, t) in args.targets.iter().enumerate() {
        let outcome = fuzz(t, &args, args.seed.wrapping_add(i as u64));
        let secs = outcome.elapsed.as_secs_f64().max(1e-9);
        println!(
            "{}: done, {} execs in {:.1} s ({:.0} execs/s), corpus {}, features {}, {} distinct \
             crashes",
            t.name,
            outcome.execs,
            secs,
            outcome.execs as f64 / secs,
            outcome.corpus,
            outcome.features,
            outcome.crashes.len()
        );
        for (key, (count, path)) in &outcome.crashes {
            println!("  {count}x {} ({key})", path.display());
        }
        failed |= !outcome.crashes.is_empty();
    }
    remove_scratch_root();
    std::process::exit(i32::from(failed));
}

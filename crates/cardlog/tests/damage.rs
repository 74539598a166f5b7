//! Damaged stores: a real replica is built and closed, then every regular file under its
//! directory (found by walking it, so files the layout gains later are covered too) is damaged
//! in copies of the store: truncated to several lengths, single bits flipped and bytes
//! overwritten at a deterministic spread of offsets, or deleted. Each copy must either refuse to
//! open with a clear error, or open and then either have `verify` name the fault or read back
//! exactly the original contacts, histories, conflicts, ops and state. Nothing may panic, on any
//! thread, and writes after a successful open must work or fail with a typed error. A copy
//! whose database was damaged must also be repaired whole by `Replica::repair` (every few).
#![allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    clippy::panic,
    clippy::expect_used
)]

mod common;

use common::{copy_dir, env_number, Rng, NINE_MS};

use std::collections::BTreeMap;
use std::panic::{self, AssertUnwindSafe};
use std::path::{Path as FsPath, PathBuf};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use cardlog::{
    Contact, ContactId, ContactView, Error, Field, FieldConflict, HistoryEntry, ItemKind, OpId,
    OpenError, Options, Path, Replica, Summary,
};
use cardlog_core::FakeClock;

/// The seed of the damage offsets unless overridden.
const SEED_DEFAULT: u64 = 0x5eed_da3a_9e00_0001;
/// Overrides the seed (printed by every run).
const SEED_VAR: &str = "CARDLOG_DAMAGE_SEED";
/// Overrides the number of bit flips per file, for longer runs by hand.
const FLIPS_VAR: &str = "CARDLOG_DAMAGE_FLIPS";
/// Set to a case number to run only that damage and keep the damaged copy (for debugging; the
/// damage is the same with the same seed, the store's bytes may differ a little, as device ids
/// are random).
const ONLY_VAR: &str = "CARDLOG_DAMAGE_ONLY";
/// Set to print every case's outcome.
const VERBOSE_VAR: &str = "CARDLOG_DAMAGE_VERBOSE";
/// Single-bit flips per file unless overridden (a file with fewer bits gets every bit flipped).
const FLIPS_DEFAULT: usize = 200;
/// Overwrites (a run of bytes set to zeros, ones or random bytes) per file.
const OVERWRITES: usize = 24;
/// Contacts in the original store.
const CONTACTS: u8 = 36;
/// Edit rounds over every contact (each edit is one op).
const EDIT_ROUNDS: usize = 8;
/// One damaged copy of the database in this many is repaired too (every one with
/// `CARDLOG_DAMAGE_ONLY`).
const REPAIR_EVERY: usize = 5;
/// A page cache small enough that many opens in a row stay cheap.
const CACHE_BYTES: u64 = 1 << 20;
/// One damaged copy taking longer than this is reported as a hang.
const CASE_TIME_MAX: Duration = Duration::from_secs(20);

// ---- panics on every thread -----------------------------------------------------------------

/// Every panic of the process (sled runs background threads that `catch_unwind` would not see),
/// as "thread 'name' at location: message".
fn panics() -> &'static Mutex<Vec<String>> {
    static PANICS: OnceLock<Mutex<Vec<String>>> = OnceLock::new();
    PANICS.get_or_init(|| Mutex::new(Vec::new()))
}

fn record_panics() {
    panic::set_hook(Box::new(|info| {
        let thread = std::thread::current();
        let message = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_default();
        let at = info.location().map(|l| l.to_string()).unwrap_or_default();
        let line = format!(
            "thread '{}' at {at}: {message}",
            thread.name().unwrap_or("?")
        );
        eprintln!("panic: {line}");
        panics()
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(line);
    }));
}

fn take_panics() -> Vec<String> {
    std::mem::take(&mut *panics().lock().unwrap_or_else(|e| e.into_inner()))
}

// ---- the original store ---------------------------------------------------------------------

fn options(clock: &Arc<FakeClock>) -> Options {
    Options {
        wall: clock.clone(),
        cache_bytes: CACHE_BYTES,
        ..Options::default()
    }
}

/// Builds the original store in `dir`: contacts with items, rounds of edits, deletes and
/// restores, and a second device's concurrent edits (so there are two authors and conflicts).
/// Returns the store's op count.
fn build_original(root: &FsPath, dir: &FsPath) -> u64 {
    let clock = Arc::new(FakeClock::new(NINE_MS));
    let mut a = Replica::create_with(dir, options(&clock)).unwrap();
    let mut b = Replica::join_with(&root.join("other-device"), a.book(), options(&clock)).unwrap();
    a.add_member(b.id(), cardlog::MemberRole::Write, "other device")
        .unwrap();
    b.pull_from(&a).unwrap();
    let ids: Vec<ContactId> = (1..=CONTACTS).map(|n| ContactId([n; 16])).collect();
    for (n, id) in ids.iter().enumerate() {
        let mut c = Contact::new(*id);
        c.set(Field::Given, format!("Given {n}"))
            .set(Field::Family, format!("Family {n}"));
        c.add_text_item(ItemKind::Phone, "mobile", format!("+44 20 7946 {n:04}"))
            .unwrap();
        c.add_text_item(ItemKind::Email, "", format!("person{n}@example.org"))
            .unwrap();
        if n % 3 == 0 {
            c.tags.insert("friends".into());
        }
        a.add_contact(&c).unwrap();
        clock.advance_ms(1_000);
    }
    let fields = [Field::Org, Field::Title, Field::Note, Field::Nickname];
    for round in 0..EDIT_ROUNDS {
        for (n, id) in ids.iter().enumerate() {
            let field = fields[(n + round) % fields.len()];
            a.edit(*id, |c| {
                c.set(field, format!("{} {n} round {round}", field.name()));
                if round % 2 == 1 {
                    c.add_text_item(
                        ItemKind::Url,
                        "",
                        format!("https://example.org/{n}/{round}"),
                    )
                    .unwrap();
                }
            })
            .unwrap();
            clock.advance_ms(1_000);
        }
    }
    // Every seventh contact is deleted; the first is restored again.
    for id in ids.iter().step_by(7) {
        a.delete(*id).unwrap();
    }
    a.restore(ids[0]).unwrap();

    // The other device learns everything, then edits some of the same fields concurrently.
    b.pull_from(&a).unwrap();
    let shown = ids.iter().enumerate().filter(|(n, _)| n % 7 != 0);
    for (_, id) in shown.step_by(5) {
        b.edit(*id, |c| {
            c.set(Field::Given, "Concurrent");
        })
        .unwrap();
        a.edit(*id, |c| {
            c.set(Field::Given, "Local");
        })
        .unwrap();
    }
    a.pull_from(&b).unwrap();
    assert!(
        !a.conflicts().unwrap().is_empty(),
        "the original has conflicts"
    );
    assert!(a.verify().unwrap().is_ok());
    let count = a.op_count();
    drop(a);
    drop(b);
    count
}

/// Everything an app can read from a replica, for comparison with the original.
#[derive(Debug, PartialEq)]
struct Contents {
    contacts: Vec<ContactView>,
    histories: BTreeMap<ContactId, Vec<(Path, Vec<HistoryEntry>)>>,
    conflicts: Vec<(ContactId, FieldConflict)>,
    ops: Vec<OpId>,
    summary: Summary,
    state: Vec<u8>,
}

fn read_contents(r: &Replica) -> Result<Contents, Error> {
    let contacts = r.contacts_with_deleted()?;
    let mut histories = BTreeMap::new();
    for c in &contacts {
        histories.insert(c.contact.id, r.contact_history(&c.contact.id)?);
    }
    Ok(Contents {
        contacts,
        histories,
        conflicts: r.conflicts()?,
        ops: r
            .ops()
            .map(|op| op.map(|op| op.id()))
            .collect::<Result<_, _>>()?,
        summary: r.summary().clone(),
        state: r.state_bytes()?,
    })
}

// ---- damage ---------------------------------------------------------------------------------

/// One way of damaging one file.
#[derive(Debug, Clone)]
enum Damage {
    Truncate(u64),
    FlipBit { offset: u64, bit: u8 },
    Overwrite { offset: u64, bytes: Vec<u8> },
    Delete,
}

impl std::fmt::Display for Damage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Damage::Truncate(len) => write!(f, "truncated to {len} bytes"),
            Damage::FlipBit { offset, bit } => write!(f, "bit {bit} of byte {offset} flipped"),
            Damage::Overwrite { offset, bytes } => write!(
                f,
                "{} bytes at {offset} overwritten with {:02x}…",
                bytes.len(),
                bytes.first().copied().unwrap_or(0)
            ),
            Damage::Delete => write!(f, "deleted"),
        }
    }
}

impl Damage {
    fn apply(&self, file: &FsPath) {
        match self {
            Damage::Truncate(len) => {
                let f = std::fs::OpenOptions::new().write(true).open(file).unwrap();
                f.set_len(*len).unwrap();
            }
            Damage::FlipBit { offset, bit } => {
                let mut bytes = std::fs::read(file).unwrap();
                bytes[usize::try_from(*offset).unwrap()] ^= 1 << bit;
                std::fs::write(file, bytes).unwrap();
            }
            Damage::Overwrite {
                offset,
                bytes: with,
            } => {
                let mut bytes = std::fs::read(file).unwrap();
                let at = usize::try_from(*offset).unwrap();
                let end = (at + with.len()).min(bytes.len());
                bytes[at..end].copy_from_slice(&with[..end - at]);
                std::fs::write(file, bytes).unwrap();
            }
            Damage::Delete => std::fs::remove_file(file).unwrap(),
        }
    }
}

/// Picks the `i`th of `n` positions spread over `0..count`: one in each of `n` equal strata,
/// so every region is hit.
fn spread(count: usize, i: usize, n: usize, rng: &mut Rng) -> usize {
    let from = count * i / n;
    let to = (count * (i + 1) / n).max(from + 1);
    from + usize::try_from(rng.below((to - from) as u64)).unwrap()
}

/// `n` offsets into `bytes`: half spread over the whole file, half over its non-zero bytes
/// (where the data is: much of a preallocated file is zeros that nothing reads).
fn offsets(bytes: &[u8], n: usize, rng: &mut Rng) -> Vec<u64> {
    let data: Vec<usize> = (0..bytes.len()).filter(|i| bytes[*i] != 0).collect();
    let over_data = if data.is_empty() { 0 } else { n / 2 };
    let over_file = n - over_data;
    let mut out: Vec<usize> = (0..over_file)
        .map(|i| spread(bytes.len(), i, over_file, rng))
        .collect();
    out.extend((0..over_data).map(|i| data[spread(data.len(), i, over_data, rng)]));
    out.into_iter().map(|o| o as u64).collect()
}

/// The damages tried on a file holding `bytes`: truncations (to 0, 1, half, all but the last
/// byte and a few page and segment sizes), single-bit flips (every bit of a small file),
/// overwrites with a zeroed sector, a run of ones or random bytes, and deletion.
fn damages(bytes: &[u8], rng: &mut Rng, flips: usize) -> Vec<Damage> {
    let len = bytes.len() as u64;
    let mut out = Vec::new();
    let mut cuts = vec![0, 1, len / 2, len.saturating_sub(1)];
    cuts.extend([512, 4096, 65_536, 524_288, 1_048_576]);
    cuts.sort_unstable();
    cuts.dedup();
    out.extend(cuts.into_iter().filter(|c| *c < len).map(Damage::Truncate));
    if len * 8 <= flips as u64 {
        for offset in 0..len {
            out.extend((0..8).map(|bit| Damage::FlipBit { offset, bit }));
        }
    } else {
        for offset in offsets(bytes, flips, rng) {
            let bit = u8::try_from(rng.below(8)).unwrap();
            out.push(Damage::FlipBit { offset, bit });
        }
    }
    if len > 0 {
        let n = OVERWRITES.min(bytes.len());
        for (i, offset) in offsets(bytes, n, rng).into_iter().enumerate() {
            let with = match i % 3 {
                0 => vec![0; 512],
                1 => vec![0xff; 8],
                _ => (0..16).map(|_| rng.next() as u8).collect(),
            };
            out.push(Damage::Overwrite {
                offset,
                bytes: with,
            });
        }
    }
    out.push(Damage::Delete);
    out
}

/// Every regular file under `dir`, as paths relative to it, in order.
fn files_under(dir: &FsPath) -> Vec<PathBuf> {
    fn walk(root: &FsPath, dir: &FsPath, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let entry = entry.unwrap();
            let kind = entry.file_type().unwrap();
            let path = entry.path();
            if kind.is_dir() {
                walk(root, &path, out);
            } else if kind.is_file() {
                out.push(path.strip_prefix(root).unwrap().to_owned());
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

// ---- one damaged copy -----------------------------------------------------------------------

/// How a damaged copy fared.
#[derive(Debug)]
enum Outcome {
    /// Refused to open, with this message.
    OpenError(String),
    /// Opened, and `verify` passed and everything read back equal to the original.
    Identical,
    /// Opened, and `verify` named the fault (its first problem or its error).
    VerifyNamed(String),
    /// Something the test forbids; the message says what.
    Failure(String),
}

/// A damaged copy's outcome, and whether writing to it (once opened) was refused.
#[derive(Debug)]
struct Judged {
    outcome: Outcome,
    /// The error of the first refused write, if one was.
    write_refused: Option<String>,
    /// Whether it did not finish in time (its thread is still running).
    hung: bool,
}

impl From<Outcome> for Judged {
    fn from(outcome: Outcome) -> Self {
        Self {
            outcome,
            write_refused: None,
            hung: false,
        }
    }
}

/// Words that say what is wrong (what `OpenError`, `StoreError` and the storage engine's errors
/// say): an error from opening or verifying a damaged copy must contain one of them.
const SPECIFIC: [&str; 5] = [
    "damaged",
    "corrupt",
    "format",
    "not a cardlog store",
    "does not decode",
];

fn is_specific(message: &str) -> bool {
    let lower = message.to_lowercase();
    SPECIFIC.iter().any(|w| lower.contains(w))
}

/// Runs `f`, turning a panic into a failure message.
fn guarded<T>(what: &str, f: impl FnOnce() -> T) -> Result<T, String> {
    panic::catch_unwind(AssertUnwindSafe(f)).map_err(|p| {
        let message = p
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| p.downcast_ref::<String>().cloned())
            .unwrap_or_default();
        format!("{what} panicked: {message}")
    })
}

/// Opens a damaged copy and judges it against `original`.
fn judge(dir: &FsPath, original: &Contents) -> Judged {
    let clock = Arc::new(FakeClock::new(NINE_MS + 86_400_000));
    let opened = match guarded("open", || Replica::open_with(dir, options(&clock))) {
        Err(p) => return Outcome::Failure(p).into(),
        Ok(Err(e)) => {
            let message = e.to_string();
            if !is_specific(&message) {
                return Outcome::Failure(format!("open error does not say what is wrong: {e:?}"))
                    .into();
            }
            if !matches!(
                e,
                OpenError::Engine(_)
                    | OpenError::Damaged { .. }
                    | OpenError::Log(_)
                    | OpenError::NotAStore(_)
                    | OpenError::UnknownFormat { .. }
                    | OpenError::Io { .. }
            ) {
                return Outcome::Failure(format!("unexpected open error: {e:?}")).into();
            }
            return Outcome::OpenError(message).into();
        }
        Ok(Ok(r)) => r,
    };
    let mut replica = opened;
    let verified = match guarded("verify", || replica.verify()) {
        Err(p) => return Outcome::Failure(p).into(),
        Ok(v) => v,
    };
    // Read whatever verify said: reading a damaged store must not panic either.
    let contents = match guarded("reading contacts and history", || read_contents(&replica)) {
        Err(p) => return Outcome::Failure(p).into(),
        Ok(c) => c,
    };
    let outcome = match (&verified, &contents) {
        (Err(e), _) => {
            let message = e.to_string();
            if !is_specific(&message) {
                Outcome::Failure(format!("verify error does not say what is wrong: {e:?}"))
            } else {
                Outcome::VerifyNamed(format!("verify error: {message}"))
            }
        }
        (Ok(report), _) if !report.is_ok() => {
            match report.problems.iter().find(|p| p.trim().is_empty()) {
                Some(_) => Outcome::Failure(format!("verify names an empty problem: {report:?}")),
                None => Outcome::VerifyNamed(report.problems[0].clone()),
            }
        }
        (Ok(_), Err(e)) => Outcome::Failure(format!("verify passed but reading fails: {e}")),
        (Ok(_), Ok(c)) if c != original => Outcome::Failure(format!(
            "verify passed but the data differs from the original: {}",
            difference(original, c)
        )),
        (Ok(_), Ok(_)) => Outcome::Identical,
    };
    // Writes either work or fail with a typed error (every `Error` is one; it must say what).
    let wrote = guarded("writing", || {
        let mut c = Contact::new(ContactId([0xee; 16]));
        c.set(Field::Given, "After damage");
        let added = replica.add_contact(&c).map(|_| ());
        let edited = replica
            .edit(ContactId([2; 16]), |c| {
                c.set(Field::Note, "edited after damage");
            })
            .map(|_| ());
        [added, edited]
    });
    let write_refused = match wrote {
        Err(p) => return Outcome::Failure(p).into(),
        Ok(results) => results.into_iter().find_map(Result::err),
    };
    if let Some(e) = &write_refused {
        if e.to_string().trim().is_empty() {
            return Outcome::Failure(format!("a write failed without a message: {e:?}")).into();
        }
    }
    if let Err(p) = guarded("closing", || drop(replica)) {
        return Outcome::Failure(p).into();
    }
    Judged {
        outcome,
        write_refused: write_refused.map(|e| e.to_string()),
        hung: false,
    }
}

/// Repairs the store in `dir` and checks it reads back exactly `original` and verifies.
fn repaired_whole(dir: &FsPath, original: &Contents) -> Result<(), String> {
    let clock = Arc::new(FakeClock::new(NINE_MS + 86_400_000));
    let report = guarded("repair", || Replica::repair(dir, options(&clock)))?
        .map_err(|e| format!("failed: {e}"))?;
    if !report.problems.is_empty() {
        return Err(format!("not intact after: {:?}", report.problems));
    }
    let r = guarded("open after repair", || {
        Replica::open_with(dir, options(&clock))
    })?
    .map_err(|e| format!("does not open after: {e}"))?;
    let contents = guarded("reading after repair", || read_contents(&r))?
        .map_err(|e| format!("reading after: {e}"))?;
    if contents != *original {
        return Err(format!(
            "differs after: {}",
            difference(original, &contents)
        ));
    }
    match take_panics().as_slice() {
        [] => Ok(()),
        panicked => Err(format!("panicked: {}", panicked.join("; "))),
    }
}

/// The first thing that differs, briefly.
fn difference(a: &Contents, b: &Contents) -> String {
    if a.ops != b.ops {
        return format!("ops: {} originally, {} now", a.ops.len(), b.ops.len());
    }
    if a.summary != b.summary {
        return "author heads".into();
    }
    if a.contacts != b.contacts {
        return format!(
            "contacts: {} originally, {} now",
            a.contacts.len(),
            b.contacts.len()
        );
    }
    if a.histories != b.histories {
        return "histories".into();
    }
    if a.conflicts != b.conflicts {
        return "conflicts".into();
    }
    "state bytes".into()
}

/// Runs `judge` on its own thread so a hang is reported with the case that caused it.
fn judge_in_time(dir: PathBuf, original: Arc<Contents>) -> Judged {
    let (tx, rx) = mpsc::channel();
    std::thread::Builder::new()
        .name("damaged-copy".into())
        .spawn(move || {
            let outcome = judge(&dir, &original);
            let _ = tx.send(outcome);
        })
        .unwrap();
    match rx.recv_timeout(CASE_TIME_MAX) {
        Ok(judged) => judged,
        Err(mpsc::RecvTimeoutError::Timeout) => Judged {
            outcome: Outcome::Failure(format!("hung for more than {CASE_TIME_MAX:?}")),
            write_refused: None,
            hung: true,
        },
        Err(mpsc::RecvTimeoutError::Disconnected) => {
            Outcome::Failure("the judging thread died without an outcome".into()).into()
        }
    }
}

// ---- the test -------------------------------------------------------------------------------

/// Counts of outcomes, for one file or all.
#[derive(Debug, Default)]
struct Tally {
    open_error: usize,
    identical: usize,
    verify_named: usize,
    failures: usize,
    /// Copies that opened but refused a write (with a typed error).
    write_refused: usize,
    /// Copies with a damaged database that `repair` gave back whole.
    repaired: usize,
    elapsed: Duration,
}

impl Tally {
    fn copies(&self) -> usize {
        self.open_error + self.identical + self.verify_named + self.failures
    }

    fn add(&mut self, other: &Tally) {
        self.open_error += other.open_error;
        self.identical += other.identical;
        self.verify_named += other.verify_named;
        self.failures += other.failures;
        self.write_refused += other.write_refused;
        self.repaired += other.repaired;
        self.elapsed += other.elapsed;
    }

    fn line(&self, what: &str) -> String {
        format!(
            "{what:<26} {:>4} copies: {:>4} open error, {:>4} recovered identical, {:>4} verify \
             named the fault, {:>3} failures; {:>3} refused writes after opening; {:>3} repaired \
             whole ({:.1?})",
            self.copies(),
            self.open_error,
            self.identical,
            self.verify_named,
            self.failures,
            self.write_refused,
            self.repaired,
            self.elapsed
        )
    }
}

/// What the loop over damaged copies collects.
#[derive(Default)]
struct Findings {
    failures: Vec<String>,
    /// A case hung: its thread still runs (likely spinning), so the test stops there.
    hung: bool,
    /// Error and problem messages (directory names and numbers replaced), with how often each
    /// was seen.
    messages: BTreeMap<String, usize>,
}

impl Findings {
    fn message(&mut self, kind: &str, text: &str, dir: &FsPath) {
        // Numbers (file positions, sequence numbers) would make every message its own.
        let mut key = String::new();
        for c in text.replace(&dir.display().to_string(), "<dir>").chars() {
            if !c.is_ascii_digit() {
                key.push(c);
            } else if !key.ends_with('#') {
                key.push('#');
            }
        }
        let key: String = key.chars().take(120).collect();
        *self.messages.entry(format!("{kind}: {key}")).or_default() += 1;
    }
}

/// The original store and how to go through its damaged copies.
struct Campaign {
    /// The original store's directory; damaged copies are made next to it.
    original_dir: PathBuf,
    /// What the original reads back.
    original: Arc<Contents>,
    /// Only this case (debugging: its damaged copy is kept).
    only: Option<usize>,
    /// Print every case; keep the damaged copies that fail.
    verbose: bool,
}

/// Makes one damaged copy of the original store, judges it and counts the outcome.
fn run_case(
    campaign: &Campaign,
    case: usize,
    file: &FsPath,
    damage: &Damage,
    tally: &mut Tally,
    findings: &mut Findings,
) {
    let scratch = campaign.original_dir.parent().unwrap();
    let dir = scratch.join(format!("case-{case}"));
    copy_dir(&campaign.original_dir, &dir);
    damage.apply(&dir.join(file));
    // Kept as damaged, before opening changes anything, to look at if it fails.
    let debugging = campaign.verbose || campaign.only.is_some();
    let as_damaged = scratch.join(format!("case-{case}-as-damaged"));
    if debugging {
        copy_dir(&dir, &as_damaged);
    }
    let mut judged = judge_in_time(dir.clone(), campaign.original.clone());
    let panicked = take_panics();
    if !panicked.is_empty() && !matches!(judged.outcome, Outcome::Failure(_)) {
        judged.outcome = Outcome::Failure(format!("panicked: {}", panicked.join("; ")));
    }
    let name = format!("{} {damage}", file.display());
    if debugging {
        println!("case {case}: {name}: {judged:?}");
    }
    let failed = matches!(judged.outcome, Outcome::Failure(_));
    findings.hung |= judged.hung;
    match judged.outcome {
        Outcome::OpenError(m) => {
            tally.open_error += 1;
            findings.message("open", &m, &dir);
        }
        Outcome::Identical => tally.identical += 1,
        Outcome::VerifyNamed(m) => {
            tally.verify_named += 1;
            findings.message("verify", &m, &dir);
        }
        Outcome::Failure(why) => {
            tally.failures += 1;
            findings
                .failures
                .push(format!("case {case}, {name}: {why}"));
        }
    }
    if let Some(m) = judged.write_refused {
        tally.write_refused += 1;
        findings.message("write", &m, &dir);
    }
    let _ = std::fs::remove_dir_all(&dir);
    // Whatever the damage did to the database, `repair` gives back every op, the same state
    // and a store that verifies (on a fresh damaged copy: judging wrote to the first). Every
    // few cases: a repair costs a new database and a verify.
    if file.starts_with("db") && (case.is_multiple_of(REPAIR_EVERY) || campaign.only.is_some()) {
        let again = scratch.join(format!("case-{case}-repair"));
        copy_dir(&campaign.original_dir, &again);
        damage.apply(&again.join(file));
        match repaired_whole(&again, &campaign.original) {
            Ok(()) => tally.repaired += 1,
            Err(why) => {
                tally.failures += 1;
                findings
                    .failures
                    .push(format!("case {case}, {name}: repair: {why}"));
            }
        }
        let _ = std::fs::remove_dir_all(&again);
    }
    if debugging && (failed || campaign.only.is_some()) {
        let kept = std::env::temp_dir().join(format!("cardlog-damage-case-{case}"));
        let _ = std::fs::remove_dir_all(&kept);
        copy_dir(&as_damaged, &kept);
        println!("case {case} kept, as damaged, in {}", kept.display());
    }
    let _ = std::fs::remove_dir_all(&as_damaged);
}

#[test]
fn damaged_stores_refuse_to_open_or_name_the_fault_or_read_back_intact() {
    record_panics();
    let started = Instant::now();
    let seed = env_number(SEED_VAR).unwrap_or(SEED_DEFAULT);
    let flips = env_number(FLIPS_VAR).unwrap_or(FLIPS_DEFAULT);
    println!("damage test seed {seed:#x} ({SEED_VAR} to replay), {flips} bit flips per file");
    let mut rng = Rng::new(seed);

    let tmp = tempfile::tempdir().unwrap();
    let original_dir = tmp.path().join("original");
    let op_count = build_original(tmp.path(), &original_dir);
    let original = {
        let clock = Arc::new(FakeClock::new(NINE_MS + 86_400_000));
        let r = Replica::open_with(&original_dir, options(&clock)).unwrap();
        assert!(r.verify().unwrap().is_ok());
        Arc::new(read_contents(&r).unwrap())
    };
    let files = files_under(&original_dir);
    let sizes: Vec<String> = files
        .iter()
        .map(|f| {
            let len = std::fs::metadata(original_dir.join(f)).unwrap().len();
            format!("{} ({len} bytes)", f.display())
        })
        .collect();
    println!(
        "original: {op_count} ops, {} contacts, {} conflicts; files: {} (built in {:.1?})",
        original.contacts.len(),
        original.conflicts.len(),
        sizes.join(", "),
        started.elapsed()
    );
    assert!(files.len() >= 2, "a store has a marker and a database");
    assert!(take_panics().is_empty(), "panics while building the store");

    let campaign = Campaign {
        original_dir,
        original,
        only: env_number(ONLY_VAR),
        verbose: std::env::var_os(VERBOSE_VAR).is_some(),
    };
    let mut total = Tally::default();
    let mut findings = Findings::default();
    let mut case = 0usize;
    for file in &files {
        let bytes = std::fs::read(campaign.original_dir.join(file)).unwrap();
        let mut tally = Tally::default();
        let file_started = Instant::now();
        for damage in damages(&bytes, &mut rng, flips) {
            case += 1;
            if campaign.only.is_none_or(|n| n == case) && !findings.hung {
                run_case(&campaign, case, file, &damage, &mut tally, &mut findings);
            }
        }
        tally.elapsed = file_started.elapsed();
        println!("{}", tally.line(&file.display().to_string()));
        total.add(&tally);
    }
    println!("{}", total.line("all files"));
    println!("messages seen (how often):");
    for (message, n) in &findings.messages {
        println!("{n:>5} × {message}");
    }
    println!("whole test: {:.1?}", started.elapsed());
    assert!(
        total.copies() > 0,
        "no damaged copy was tried (CARDLOG_DAMAGE_ONLY?)"
    );
    assert!(
        findings.failures.is_empty(),
        "{} of {} damaged copies failed:\n{}",
        findings.failures.len(),
        total.copies(),
        findings.failures.join("\n")
    );
}

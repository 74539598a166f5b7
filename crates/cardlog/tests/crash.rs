//! A real crash test of the durable replica: this test binary re-runs itself as a child process
//! that saves in a loop (adds, edits of varied fields and items, deletes, restores, multi-contact
//! batches and bulk groups) and reports every save once it has returned; the parent kills it
//! with SIGKILL at pseudo-random moments, many times over one store. After each kill the store
//! must open, `verify` must pass, every reported save must be in the log in the order it was
//! reported, and every value the child reported writing must be what the contact holds unless an
//! unreported save that was still running at the kill overwrote it.
#![allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    clippy::panic,
    clippy::expect_used
)]
#![cfg(unix)]

mod common;

use common::{env_number, Rng};

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::io::{BufRead, BufReader, Read, Write as _};
use std::os::unix::process::ExitStatusExt;
use std::path::Path as FsPath;
use std::process::{Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use cardlog::{
    Batch, Contact, ContactId, Field, HistoryEntry, ItemBody, ItemId, ItemKind, OpId,
    PostalAddress, Replica, Value,
};

/// Set (to the store's directory) only in the child process: it makes `child_saves` run.
const CHILD_DIR_VAR: &str = "CARDLOG_CRASH_CHILD_DIR";
/// The child's seed for choosing what to save.
const CHILD_SEED_VAR: &str = "CARDLOG_CRASH_CHILD_SEED";
/// Overrides the parent's seed (printed by every run) to replay a run's kill schedule.
const SEED_VAR: &str = "CARDLOG_CRASH_SEED";
/// Overrides the number of kills, for longer runs by hand.
const ROUNDS_VAR: &str = "CARDLOG_CRASH_ROUNDS";

/// The parent's seed unless overridden.
const SEED_DEFAULT: u64 = 0x00c4_7d10_6c7a_5e11;
/// Kills per run unless overridden: about 10 s in a debug build.
const ROUNDS_DEFAULT: usize = 25;
/// Prefix of every line the child reports; libtest's own output is ignored.
const MARK: &str = "cardlog-crash\t";
/// Most ops one bulk group saves before `finish`.
const BULK_OPS_MAX: u64 = 12;
/// A child that was never killed (its parent died) stops by itself after this long.
const CHILD_RUN_MAX: Duration = Duration::from_secs(120);
/// How long the parent waits for a child to report that it opened the store.
const OPEN_WAIT_MAX: Duration = Duration::from_secs(60);

/// How a write's value travels between child and parent: `=` and its display, or `-` for a
/// removal.
fn value_text(value: Option<&Value>) -> String {
    match value {
        Some(v) => format!("={v}"),
        None => "-".to_owned(),
    }
}

/// One write the child reported: the contact, the path (as displayed) and the value text.
#[derive(Debug, Clone)]
struct Written {
    contact: ContactId,
    path: String,
    value: String,
}

/// One save whose call returned in the child, with every write its op makes.
#[derive(Debug, Clone)]
struct Saved {
    op: OpId,
    writes: Vec<Written>,
}

impl Saved {
    fn line(&self) -> String {
        let mut line = format!("{MARK}saved\t{}", self.op);
        for w in &self.writes {
            line.push_str(&format!("\t{}\t{}\t{}", w.contact, w.path, w.value));
        }
        line.push('\n');
        line
    }

    fn parse(fields: &[&str]) -> Self {
        let (op, rest) = fields.split_first().expect("saved line without an op id");
        assert!(rest.len() % 3 == 0, "malformed saved line: {fields:?}");
        Self {
            op: op.parse().expect("op id"),
            writes: rest
                .chunks_exact(3)
                .map(|w| Written {
                    contact: w[0].parse().expect("contact id"),
                    path: w[1].to_owned(),
                    value: w[2].to_owned(),
                })
                .collect(),
        }
    }
}

/// What a child reported before it died.
#[derive(Debug, Default)]
struct ChildReport {
    /// Whether the child had started opening the store.
    opening: bool,
    /// The op count of the store when the child had opened it.
    opened: Option<u64>,
    saved: Vec<Saved>,
    /// How many of them were saved in bulk groups.
    bulk_saved: usize,
    /// Whether the child died in a bulk group before reporting any of its saves.
    in_bulk: bool,
}

impl ChildReport {
    fn parse(lines: &[String]) -> Self {
        let mut report = Self::default();
        let mut bulk = false;
        for line in lines {
            // libtest may print "test child_saves ... " without a newline before our first line.
            let Some(at) = line.find(MARK) else { continue };
            let fields: Vec<&str> = line[at + MARK.len()..].split('\t').collect();
            match fields.as_slice() {
                ["opening"] => report.opening = true,
                ["ready"] => {}
                ["opened", count] => report.opened = Some(count.parse().expect("op count")),
                ["bulk", _] => (bulk, report.in_bulk) = (true, true),
                ["bulk-done"] => bulk = false,
                ["saved", rest @ ..] => {
                    report.saved.push(Saved::parse(rest));
                    report.bulk_saved += usize::from(bulk);
                    report.in_bulk = false;
                }
                _ => panic!("unexpected line from the child: {line:?}"),
            }
        }
        report
    }
}

// ---- the child ------------------------------------------------------------------------------

/// Writes one report line and flushes it. Returns false when the parent is gone.
fn emit(line: &str) -> bool {
    let mut out = std::io::stdout().lock();
    out.write_all(line.as_bytes()).is_ok() && out.flush().is_ok()
}

/// The child's side: saves of every kind, each reported only after its call returned.
struct Saver {
    rng: Rng,
    /// The contacts the store shows.
    shown: Vec<ContactId>,
    /// The deleted contacts.
    deleted: Vec<ContactId>,
    /// Makes every value written unique, so a stale value can never pass for a new one.
    stamp: String,
    counter: u64,
}

impl Saver {
    fn fresh(&mut self, what: &str) -> String {
        self.counter += 1;
        format!("{what} {}.{}", self.stamp, self.counter)
    }

    /// The writes an op makes for one contact's changes: each changed path, plus `exists`,
    /// which every save of a contact writes.
    fn writes_of(contact: ContactId, before: &Contact, after: &Contact, out: &mut Vec<Written>) {
        for change in cardlog_core::diff(before, after).unwrap() {
            out.push(Written {
                contact,
                path: change.path.to_string(),
                value: value_text(change.value.as_ref()),
            });
        }
        out.push(Written {
            contact,
            path: "exists".to_owned(),
            value: value_text(Some(&Value::Bool(true))),
        });
    }

    /// A random contact, shown or deleted, as the store has it.
    fn pick(&mut self, replica: &Replica, deleted: bool) -> Option<Contact> {
        let ids = if deleted { &self.deleted } else { &self.shown };
        let id = *self.rng.pick(ids)?;
        let view = replica
            .contact(&id)
            .unwrap()
            .expect("a contact this child saw");
        assert_eq!(view.deleted, deleted, "contact {id}: deleted");
        Some(view.contact)
    }

    fn add(&mut self, replica: &mut Replica) -> Saved {
        let mut contact = Contact::random().unwrap();
        let given = self.fresh("Zoë");
        let family = self.fresh("Brontë-Smith");
        contact.set(Field::Given, given).set(Field::Family, family);
        if self.rng.below(2) == 0 {
            contact.set(Field::Org, self.fresh("Analytical Engines Ltd"));
        }
        for _ in 0..=self.rng.below(2) {
            let number = self.fresh("+44 20 7946");
            contact
                .add_text_item(ItemKind::Phone, "mobile", number)
                .unwrap();
        }
        let mail = self.fresh("mail@example.org");
        contact.add_text_item(ItemKind::Email, "", mail).unwrap();
        if self.rng.below(3) == 0 {
            let street = self.fresh("Street");
            contact
                .add_address(
                    "home",
                    PostalAddress {
                        street,
                        locality: "London".into(),
                        country: "UK".into(),
                        ..PostalAddress::default()
                    },
                )
                .unwrap();
        }
        if self.rng.below(2) == 0 {
            contact.tags.insert(format!("tag{}", self.rng.below(4)));
        }
        if self.rng.below(3) == 0 {
            contact
                .custom
                .insert("X-SHOE-SIZE".into(), self.fresh("size"));
        }
        let op = replica.add_contact(&contact).unwrap();
        self.shown.push(contact.id);
        let mut writes = Vec::new();
        Self::writes_of(contact.id, &Contact::new(contact.id), &contact, &mut writes);
        Saved { op, writes }
    }

    /// Changes one or more things of `contact`, always at least one.
    fn change(&mut self, contact: &mut Contact) {
        for _ in 0..=self.rng.below(3) {
            match self.rng.below(9) {
                0 | 1 => {
                    let field = *self.rng.pick(&Field::ALL).unwrap();
                    let value = self.fresh(field.name());
                    contact.set(field, value);
                }
                2 => {
                    let set: Vec<Field> = contact.fields.keys().copied().collect();
                    if let Some(field) = self.rng.pick(&set) {
                        contact.set(*field, "");
                    }
                }
                3 => {
                    let kind = if self.rng.below(2) == 0 {
                        ItemKind::Phone
                    } else {
                        ItemKind::Email
                    };
                    let text = self.fresh(kind.name());
                    // Change an existing item's text, or add one if there is none.
                    let ids: Vec<ItemId> = contact.items(kind).iter().map(|i| i.id).collect();
                    match self.rng.pick(&ids) {
                        Some(id) => {
                            let item = contact.items_mut(kind).iter_mut().find(|i| i.id == *id);
                            item.unwrap().body = ItemBody::Text(text);
                        }
                        None => {
                            contact.add_text_item(kind, "work", text).unwrap();
                        }
                    }
                }
                4 => {
                    let url = self.fresh("https://example.org/");
                    contact.add_text_item(ItemKind::Url, "", url).unwrap();
                }
                5 => {
                    let items: Vec<(ItemKind, ItemId)> = ItemKind::ALL
                        .into_iter()
                        .flat_map(|k| contact.items(k).iter().map(move |i| (k, i.id)))
                        .collect();
                    if let Some((kind, id)) = self.rng.pick(&items) {
                        contact.remove_item(*kind, *id);
                    }
                }
                6 => {
                    let tag = format!("tag{}", self.rng.below(4));
                    if !contact.tags.remove(&tag) {
                        contact.tags.insert(tag);
                    }
                }
                7 => {
                    if contact.custom.remove("X-SHOE-SIZE").is_none() {
                        contact
                            .custom
                            .insert("X-SHOE-SIZE".into(), self.fresh("size"));
                    }
                }
                _ => {
                    let street = self.fresh("Road");
                    contact
                        .add_address(
                            "work",
                            PostalAddress {
                                street,
                                code: "NW1".into(),
                                ..PostalAddress::default()
                            },
                        )
                        .unwrap();
                }
            }
        }
        // Whatever the dice said, the edit must change something.
        contact.set(Field::Note, self.fresh("note"));
    }

    fn edit(&mut self, replica: &mut Replica) -> Option<Saved> {
        let before = self.pick(replica, false)?;
        let mut after = before.clone();
        self.change(&mut after);
        let op = replica
            .edit(before.id, |c| *c = after.clone())
            .unwrap()
            .expect("an edit that changes something saves");
        let mut writes = Vec::new();
        Self::writes_of(before.id, &before, &after, &mut writes);
        Some(Saved { op, writes })
    }

    /// Edits two contacts in one op.
    fn edit_two(&mut self, replica: &mut Replica) -> Option<Saved> {
        let first = self.pick(replica, false)?;
        let second = self.pick(replica, false)?;
        if first.id == second.id {
            return None;
        }
        let mut batch = Batch::new();
        let mut writes = Vec::new();
        for before in [first, second] {
            let mut after = before.clone();
            self.change(&mut after);
            batch.edit(&before, &after).unwrap();
            Self::writes_of(before.id, &before, &after, &mut writes);
        }
        let op = replica.save(&batch).unwrap().id();
        Some(Saved { op, writes })
    }

    fn delete_or_restore(&mut self, replica: &mut Replica, delete: bool) -> Option<Saved> {
        let contact = self.pick(replica, !delete)?;
        let op = if delete {
            replica.delete(contact.id).unwrap()
        } else {
            replica.restore(contact.id).unwrap()
        };
        let (from, to) = if delete {
            (&mut self.shown, &mut self.deleted)
        } else {
            (&mut self.deleted, &mut self.shown)
        };
        from.retain(|id| *id != contact.id);
        to.push(contact.id);
        let writes = vec![Written {
            contact: contact.id,
            path: "exists".to_owned(),
            value: value_text(Some(&Value::Bool(!delete))),
        }];
        Some(Saved { op, writes })
    }

    /// One save of any single kind; adds a contact when the chosen kind has nothing to act on.
    fn one(&mut self, replica: &mut Replica) -> Saved {
        let saved = match self.rng.below(100) {
            0..=24 => None,
            25..=69 => self.edit(replica),
            70..=79 => self.edit_two(replica),
            80..=89 => self.delete_or_restore(replica, true),
            _ => self.delete_or_restore(replica, false),
        };
        saved.unwrap_or_else(|| self.add(replica))
    }

    /// Saves until the parent kills the process. Returns if the parent has gone away.
    fn run(&mut self, replica: &mut Replica) {
        let started = Instant::now();
        while started.elapsed() < CHILD_RUN_MAX {
            if self.rng.below(8) == 0 {
                let n = 2 + self.rng.below(BULK_OPS_MAX - 1);
                if !emit(&format!("{MARK}bulk\t{n}\n")) {
                    return;
                }
                let mut bulk = replica.bulk();
                let saved: Vec<Saved> = (0..n).map(|_| self.one(&mut bulk)).collect();
                bulk.finish().unwrap();
                // Only now are the bulk saves durable, so only now are they reported.
                for s in &saved {
                    if !emit(&s.line()) {
                        return;
                    }
                }
                if !emit(&format!("{MARK}bulk-done\n")) {
                    return;
                }
            } else {
                let saved = self.one(replica);
                if !emit(&saved.line()) {
                    return;
                }
            }
        }
        panic!("the child saved for {CHILD_RUN_MAX:?} without being killed");
    }
}

/// Not a test of its own: the child process the crash test runs. Without the environment
/// variable (any normal test run) it returns at once.
#[test]
fn child_saves() {
    let Some(dir) = std::env::var_os(CHILD_DIR_VAR) else {
        return;
    };
    let seed: u64 = env_number(CHILD_SEED_VAR).expect("the child needs a seed");
    if !emit(&format!("{MARK}opening\n")) {
        return;
    }
    let mut replica = Replica::open(FsPath::new(&dir))
        .unwrap_or_else(|e| panic!("child: the store does not open: {e}"));
    if !emit(&format!("{MARK}opened\t{}\n", replica.op_count())) {
        return;
    }
    let (mut shown, mut deleted) = (Vec::new(), Vec::new());
    for view in replica.contacts_with_deleted().unwrap() {
        let ids = if view.deleted {
            &mut deleted
        } else {
            &mut shown
        };
        ids.push(view.contact.id);
    }
    if !emit(&format!("{MARK}ready\n")) {
        return;
    }
    Saver {
        rng: Rng::new(seed),
        shown,
        deleted,
        stamp: format!("{}.{seed:x}", std::process::id()),
        counter: 0,
    }
    .run(&mut replica);
}

// ---- the parent -----------------------------------------------------------------------------

/// A running child. Dropping it kills and reaps the process, so a failed assertion never
/// leaves one running.
struct Running {
    process: std::process::Child,
    lines: Receiver<String>,
    received: Vec<String>,
    stdout: Option<JoinHandle<()>>,
    stderr: Option<JoinHandle<String>>,
}

/// What a killed child left behind.
struct Finished {
    status: ExitStatus,
    lines: Vec<String>,
    stderr: String,
}

impl Running {
    fn spawn(dir: &FsPath, seed: u64) -> Self {
        let mut process = Command::new(std::env::current_exe().unwrap())
            .args(["child_saves", "--exact", "--nocapture", "--test-threads=1"])
            .env(CHILD_DIR_VAR, dir)
            .env(CHILD_SEED_VAR, seed.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut out = BufReader::new(process.stdout.take().unwrap());
        let mut err = process.stderr.take().unwrap();
        let (sender, lines) = mpsc::channel();
        let stdout = thread::spawn(move || {
            let mut line = Vec::new();
            loop {
                line.clear();
                match out.read_until(b'\n', &mut line) {
                    // A line without its newline was cut by the kill: it reports nothing.
                    Ok(0) | Err(_) => return,
                    Ok(_) if line.ends_with(b"\n") => {
                        let text = String::from_utf8_lossy(&line).trim_end().to_owned();
                        if sender.send(text).is_err() {
                            return;
                        }
                    }
                    Ok(_) => return,
                }
            }
        });
        let stderr = thread::spawn(move || {
            let mut text = String::new();
            let _ = err.read_to_string(&mut text);
            text
        });
        Self {
            process,
            lines,
            received: Vec::new(),
            stdout: Some(stdout),
            stderr: Some(stderr),
        }
    }

    /// Waits for the child's report line starting with `what` and returns when it came.
    /// Fails the test, with the child's stderr, if it never comes.
    fn wait_for(&mut self, what: &str) -> Instant {
        let deadline = Instant::now() + OPEN_WAIT_MAX;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    let found = line.contains(&format!("{MARK}{what}"));
                    self.received.push(line);
                    if found {
                        return Instant::now();
                    }
                }
                Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => {
                    let _ = self.process.kill();
                    let status = self.process.wait().unwrap();
                    let stderr = self.stderr.take().unwrap().join().unwrap();
                    panic!("the child never reported {what:?} ({status}); its stderr:\n{stderr}");
                }
            }
        }
    }

    /// SIGKILLs the child, reaps it and collects everything it printed.
    fn kill(mut self) -> Finished {
        // An error here means the child had already exited; `wait` reports how.
        let _ = self.process.kill();
        let status = self.process.wait().unwrap();
        self.stdout.take().unwrap().join().unwrap();
        let stderr = self.stderr.take().unwrap().join().unwrap();
        let mut lines = std::mem::take(&mut self.received);
        lines.extend(self.lines.try_iter());
        Finished {
            status,
            lines,
            stderr,
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.process.kill();
        let _ = self.process.wait();
    }
}

/// The last write the parent knows of at one path: reported by the child, or adopted from the
/// store when an unreported save (running at the kill) turned out durable.
#[derive(Debug, Clone)]
struct Expected {
    op: OpId,
    value: String,
}

/// The parent's model of the store, checked after every kill.
#[derive(Default)]
struct Audit {
    /// The store's ops in application order, as of the last check.
    log: Vec<OpId>,
    reported: HashSet<OpId>,
    expected: BTreeMap<(ContactId, String), Expected>,
    saves: usize,
    rounds_with_saves: usize,
    /// Ops that were durable although the child never reported them.
    unreported: usize,
    /// Paths whose last reported write was overwritten by such an op.
    adopted: usize,
    bulk_saves: usize,
    killed_in_open: usize,
    killed_in_bulk: usize,
}

/// Every path of a contact, as displayed, with its history.
fn histories(replica: &Replica, contact: &ContactId) -> BTreeMap<String, Vec<HistoryEntry>> {
    replica
        .contact_history(contact)
        .unwrap()
        .into_iter()
        .map(|(path, versions)| (path.to_string(), versions))
        .collect()
}

/// Every value a contact shows, by path as displayed, in the child's value text.
fn visible(replica: &Replica, contact: &ContactId) -> BTreeMap<String, String> {
    let Some(view) = replica.contact(contact).unwrap() else {
        return BTreeMap::new();
    };
    let mut out: BTreeMap<String, String> = view
        .contact
        .to_changes()
        .unwrap()
        .into_iter()
        .map(|c| (c.path.to_string(), value_text(c.value.as_ref())))
        .collect();
    out.insert(
        "exists".to_owned(),
        value_text(Some(&Value::Bool(!view.deleted))),
    );
    out
}

impl Audit {
    fn check_round(&mut self, round: usize, dir: &FsPath, child: &ChildReport) {
        let at = format!("round {round}");
        if let Some(opened) = child.opened {
            assert_eq!(
                opened,
                self.log.len() as u64,
                "{at}: the child opened the store with another op count than the parent left"
            );
        } else {
            self.killed_in_open += usize::from(child.opening);
        }
        self.killed_in_bulk += usize::from(child.in_bulk);

        let replica = Replica::open(dir)
            .unwrap_or_else(|e| panic!("{at}: the store does not open after SIGKILL: {e}"));
        let report = replica.verify().unwrap();
        assert!(
            report.is_ok(),
            "{at}: verify after SIGKILL found:\n{}",
            report.problems.join("\n")
        );

        // The log only grows, and what it held before is still there in the same order.
        let ops: Vec<OpId> = replica.ops().map(|op| op.unwrap().id()).collect();
        assert_eq!(ops.len() as u64, replica.op_count(), "{at}: op count");
        assert!(
            ops.len() >= self.log.len(),
            "{at}: the op count went down from {} to {}",
            self.log.len(),
            ops.len()
        );
        assert_eq!(
            ops[..self.log.len()],
            self.log[..],
            "{at}: ops durable before this child ran were lost or reordered"
        );
        let position: HashMap<OpId, usize> =
            ops.iter().enumerate().map(|(i, id)| (*id, i)).collect();

        // Every returned save is present, and they are the next ops of the log in the order
        // they returned: one writer extends one chain.
        for (i, saved) in child.saved.iter().enumerate() {
            let Some(op) = replica.op(&saved.op).unwrap() else {
                panic!(
                    "{at}: save {} returned in the child but is not in the store",
                    saved.op
                );
            };
            // The op writes exactly what the child said it saved.
            let written: BTreeSet<(ContactId, String, String)> = op
                .op()
                .writes
                .iter()
                .map(|w| (w.contact, w.path.to_string(), value_text(w.value.as_ref())))
                .collect();
            let reported: BTreeSet<(ContactId, String, String)> = saved
                .writes
                .iter()
                .map(|w| (w.contact, w.path.clone(), w.value.clone()))
                .collect();
            assert_eq!(written, reported, "{at}: the writes of save {}", saved.op);
            assert_eq!(
                position.get(&saved.op),
                Some(&(self.log.len() + i)),
                "{at}: save {} is not where it returned in the log",
                saved.op
            );
            assert!(
                self.reported.insert(saved.op),
                "{at}: {} reported twice",
                saved.op
            );
        }
        let unreported = ops.len() - self.log.len() - child.saved.len();
        // At most one save or one bulk group was in flight when the child died.
        assert!(
            unreported as u64 <= BULK_OPS_MAX,
            "{at}: {unreported} ops in the store that the child never reported"
        );

        // Each reported write is in its path's history, with the value the child wrote.
        let mut cache: HashMap<ContactId, BTreeMap<String, Vec<HistoryEntry>>> = HashMap::new();
        for saved in &child.saved {
            for w in &saved.writes {
                let paths = cache
                    .entry(w.contact)
                    .or_insert_with(|| histories(&replica, &w.contact));
                let found = paths.get(&w.path).is_some_and(|versions| {
                    versions
                        .iter()
                        .any(|v| v.op == saved.op && value_text(v.value.as_ref()) == w.value)
                });
                assert!(
                    found,
                    "{at}: contact {} {} lacks the write {} of save {}",
                    w.contact, w.path, w.value, saved.op
                );
                self.expected.insert(
                    (w.contact, w.path.clone()),
                    Expected {
                        op: saved.op,
                        value: w.value.clone(),
                    },
                );
            }
        }

        // Every path shows the last value written to it: the last reported one, unless a save
        // that had not returned when the child died came later and turned out durable. Only
        // contacts this round's ops wrote need a look: `verify` has just matched every register
        // with the log, and the log before this round is unchanged.
        let mut touched = BTreeSet::new();
        for id in &ops[self.log.len()..] {
            let op = replica.op(id).unwrap().unwrap();
            touched.extend(op.op().writes.iter().map(|w| w.contact));
        }
        let mut shown: HashMap<ContactId, BTreeMap<String, String>> = HashMap::new();
        let of_touched = self
            .expected
            .iter_mut()
            .filter(|((contact, _), _)| touched.contains(contact));
        for ((contact, path), expected) in of_touched {
            let versions = cache
                .entry(*contact)
                .or_insert_with(|| histories(&replica, contact))
                .get(path)
                .unwrap_or_else(|| panic!("{at}: contact {contact} {path} has no history"));
            let heads: Vec<&HistoryEntry> = versions.iter().filter(|v| v.head).collect();
            let [head] = heads.as_slice() else {
                panic!("{at}: contact {contact} {path} has {} heads", heads.len());
            };
            let value = value_text(head.value.as_ref());
            if head.op != expected.op {
                assert!(
                    !self.reported.contains(&head.op)
                        && position.get(&head.op) > position.get(&expected.op),
                    "{at}: contact {contact} {path} shows {value} of {}, not {} of {}",
                    head.op,
                    expected.value,
                    expected.op
                );
                *expected = Expected { op: head.op, value };
                self.adopted += 1;
                continue;
            }
            assert_eq!(
                value, expected.value,
                "{at}: contact {contact} {path}: head value"
            );
            let now = shown
                .entry(*contact)
                .or_insert_with(|| visible(&replica, contact))
                .get(path)
                .cloned()
                .unwrap_or_else(|| value_text(None));
            assert_eq!(
                now, expected.value,
                "{at}: contact {contact} shows {path} as {now}, the child saved {}",
                expected.value
            );
        }

        self.saves += child.saved.len();
        self.rounds_with_saves += usize::from(!child.saved.is_empty());
        self.bulk_saves += child.bulk_saved;
        self.unreported += unreported;
        self.log = ops;
    }
}

/// SIGKILLs a saving child process over and over, checking the store after every kill.
#[test]
fn sigkill_loses_no_returned_save() {
    if std::env::var_os(CHILD_DIR_VAR).is_some() {
        return;
    }
    let seed = env_number(SEED_VAR).unwrap_or(SEED_DEFAULT);
    let rounds = env_number(ROUNDS_VAR).unwrap_or(ROUNDS_DEFAULT);
    eprintln!("crash test: seed {seed} ({SEED_VAR} to replay), {rounds} rounds");
    let started = Instant::now();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("replica");
    drop(Replica::create(&dir).unwrap());

    let mut rng = Rng::new(seed);
    let mut audit = Audit::default();
    // How long the last child took to open the store, as the parent saw it.
    let mut open_ms = 20;
    for round in 0..rounds {
        if round > 0 && round % 100 == 0 {
            eprintln!(
                "crash test: {round} kills in {:.1?}, {} saves reported, {} ops",
                started.elapsed(),
                audit.saves,
                audit.log.len()
            );
        }
        let mut child = Running::spawn(&dir, rng.next());
        let opening = child.wait_for("opening");
        // One kill in four is aimed at `Replica::open` (sled's recovery), the others land
        // among saves: mostly soon after the open, sometimes after sled's periodic flush.
        let after_ms = if rng.below(4) == 0 {
            rng.below(open_ms + 1)
        } else {
            let opened = child.wait_for("opened");
            open_ms = u64::try_from((opened - opening).as_millis()).unwrap();
            child.wait_for("ready");
            match rng.below(8) {
                0 => 150 + rng.below(600),
                _ => 5 + rng.below(145),
            }
        };
        thread::sleep(Duration::from_millis(after_ms));
        let finished = child.kill();
        assert_eq!(
            finished.status.signal(),
            Some(9),
            "round {round}: the child ended by itself ({}); its stderr:\n{}",
            finished.status,
            finished.stderr
        );
        let report = ChildReport::parse(&finished.lines);
        audit.check_round(round, &dir, &report);
    }

    eprintln!(
        "crash test: {rounds} kills in {:.1?}: {} saves reported ({} in bulk groups), {} kills \
         after at least one save, {} while the store was opening, {} inside a bulk group; {} \
         ops in the store, {} durable but unreported, {} paths overwritten by them",
        started.elapsed(),
        audit.saves,
        audit.bulk_saves,
        audit.rounds_with_saves,
        audit.killed_in_open,
        audit.killed_in_bulk,
        audit.log.len(),
        audit.unreported,
        audit.adopted,
    );
    assert!(
        audit.saves >= 2 * rounds,
        "only {} saves were reported: the kills came too early to test anything",
        audit.saves
    );
    assert!(
        audit.rounds_with_saves * 2 >= rounds,
        "only {} of {rounds} kills came after a save",
        audit.rounds_with_saves
    );
}

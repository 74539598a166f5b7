//! Runs the real `cardlog` binary for the sync commands: `heads --out`, `export`, `import`,
//! `serve` and `sync` as separate processes on separate stores, and the sync parts of `status`
//! and `list --needs-sync`. Each test plays a scenario (the seed scenario through files and
//! over TCP, damaged files, forks, a badly set clock, several peers at once, peers that fail)
//! and checks stdout, stderr, exit codes and that both stores end identical. Every run uses a
//! fixed `CARDLOG_NOW`; the two sides of a session use the same one unless the test is about
//! the clock.
#![allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    clippy::panic,
    clippy::expect_used
)]

use std::ffi::OsStr;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cardlog::{Contact, ContactId, Field, Options, Replica};
use cardlog_core::{Device, FakeClock};
use serde_json::{json, Value};
use tempfile::TempDir;

mod common;
use common::{arg_strings, finished, Run};

const NINE: &str = "2026-11-22T09:00:00Z";
const TEN: &str = "2026-11-22T10:00:00Z";
const ELEVEN: &str = "2026-11-22T11:00:00Z";
const NOON: &str = "2026-11-22T12:00:00Z";
/// 2026-11-22T09:00:00Z in ms.
const NINE_MS: u64 = 1_795_338_000_000;

// ---- running the binary ---------------------------------------------------------------------

/// `cardlog ARGS` as a command with exactly the environment given (no inherited `CARDLOG_*`).
fn command<S: AsRef<OsStr>>(args: &[S], now: &str) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_cardlog"));
    cmd.args(args)
        .env_remove("CARDLOG_STORE")
        .env("CARDLOG_NOW", now)
        .env("RUST_BACKTRACE", "1");
    cmd
}

/// A store made by `cardlog init`, in its own temporary directory, which also holds the
/// files the test writes.
struct Store {
    tmp: TempDir,
    dir: PathBuf,
}

impl Store {
    fn init() -> Store {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("store");
        let s = Store { tmp, dir };
        s.run(&["init"]).ok();
        s
    }

    /// A store of this store's address book, as a person pairs a device: `init --join BOOK`
    /// there, `members add DEVICE` here, and the new store takes what this one holds.
    fn member(&self) -> Store {
        self.member_as("write")
    }

    /// [`Store::member`] with the role `role`.
    fn member_as(&self, role: &str) -> Store {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("store");
        let s = Store { tmp, dir };
        let book = self.run(&["book"]).ok().stdout.trim().to_owned();
        s.run(&["init", "--join", &book]).ok();
        let device = s.run(&["device"]).ok().stdout.trim().to_owned();
        self.run(&[
            "members",
            "add",
            &device,
            "--role",
            role,
            "--name",
            "test device",
        ])
        .ok();
        s.pull_from(self);
        s
    }

    /// Takes what `other` holds (in process, no session).
    fn pull_from(&self, other: &Store) {
        let other = Replica::open(&other.dir).unwrap();
        Replica::open(&self.dir).unwrap().pull_from(&other).unwrap();
    }

    fn args<'a>(&'a self, args: &[&'a str]) -> Vec<&'a OsStr> {
        let mut all: Vec<&OsStr> = vec![OsStr::new("--store"), self.dir.as_os_str()];
        all.extend(args.iter().map(|a| OsStr::new(*a)));
        all
    }

    /// `cardlog --store DIR ARGS` with `CARDLOG_NOW=now`.
    fn at(&self, now: &str, args: &[&str]) -> Run {
        let all = self.args(args);
        let out = command(&all, now)
            .output()
            .expect("the cardlog binary runs");
        finished(arg_strings(&all), out)
    }

    fn run(&self, args: &[&str]) -> Run {
        self.at(NINE, args)
    }

    /// A file path beside the store.
    fn file(&self, name: &str) -> PathBuf {
        self.tmp.path().join(name)
    }

    fn add(&self, now: &str, args: &[&str]) -> String {
        let mut all = vec!["add"];
        all.extend_from_slice(args);
        let run = self.at(now, &all).ok();
        run.stdout.trim_end().to_owned()
    }

    fn replica(&self) -> String {
        text(&self.run(&["status", "--json"]).ok().json()["replica"]).to_owned()
    }

    fn show(&self, id: &str) -> Value {
        self.run(&["show", id, "--json"]).ok().json()
    }

    fn heads(&self) -> Value {
        self.run(&["heads", "--json"]).ok().json()
    }

    fn log(&self) -> Value {
        self.run(&["log", "--json"]).ok().json()
    }

    fn status(&self, now: &str) -> Value {
        self.at(now, &["status", "--json"]).ok().json()
    }

    /// `cardlog serve --listen 127.0.0.1:0 ARGS` in the background, once it listens.
    fn serve(&self, now: &str, args: &[&str]) -> Server {
        let mut all = vec!["serve", "--listen", "127.0.0.1:0"];
        all.extend_from_slice(args);
        spawn_server(&self.args(&all), now)
    }
}

/// `cardlog ARGS` serving in the background (`serve` or `relay serve`), once it listens.
fn spawn_server(all: &[&OsStr], now: &str) -> Server {
    {
        let mut child = command(all, now)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the cardlog binary starts");
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut first = String::new();
        stdout.read_line(&mut first).unwrap();
        let first = first.trim_end().to_owned();
        let addr = match first.strip_prefix("listening on ") {
            Some(addr) => addr.to_owned(),
            None => {
                let j: Value = serde_json::from_str(&first)
                    .unwrap_or_else(|_| panic!("serve printed {first:?} first"));
                text(&j["listening"]).to_owned()
            }
        };
        Server {
            child: Some(child),
            stdout,
            first,
            addr,
            args: arg_strings(all),
        }
    }
}

/// A running `cardlog serve`; killed if the test ends before it exits.
struct Server {
    child: Option<Child>,
    stdout: BufReader<ChildStdout>,
    first: String,
    addr: String,
    args: Vec<String>,
}

impl Server {
    /// Waits (at most a minute) for the server to exit; its stdout starts with the
    /// `listening` line.
    fn finish(mut self) -> Run {
        let mut child = self.child.take().unwrap();
        let deadline = Instant::now() + Duration::from_secs(60);
        while child.try_wait().unwrap().is_none() {
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("cardlog {:?} did not exit", self.args);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let mut rest = String::new();
        self.stdout.read_to_string(&mut rest).unwrap();
        let mut stderr = String::new();
        child
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut stderr)
            .unwrap();
        Run {
            args: self.args.clone(),
            code: child.wait().unwrap().code().expect("exited, not killed"),
            stdout: format!("{}\n{rest}", self.first),
            stderr,
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(child) = &mut self.child {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn text(v: &Value) -> &str {
    v.as_str()
        .unwrap_or_else(|| panic!("not a JSON string: {v}"))
}

fn array(v: &Value) -> &Vec<Value> {
    v.as_array()
        .unwrap_or_else(|| panic!("not a JSON array: {v}"))
}

fn path_str(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn file_len(p: &Path) -> u64 {
    std::fs::metadata(p).unwrap().len()
}

/// The names of the files in `dir`, sorted.
fn names(dir: &Path) -> Vec<String> {
    let mut out: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    out.sort();
    out
}

/// Ada on store `s` at 09:00, with a phone and an e-mail; returns her id and the two item ids.
fn add_ada(s: &Store) -> (String, String, String) {
    let id = s.add(
        NINE,
        &[
            "--given",
            "Ada",
            "--family",
            "Lovelace",
            "--phone",
            "mobile=+44 20 7946 0000",
            "--email",
            "home=ada@old.example",
        ],
    );
    let j = s.show(&id);
    let phone = text(&j["phones"][0]["id"]).to_owned();
    let email = text(&j["emails"][0]["id"]).to_owned();
    (id, phone, email)
}

/// The seed scenario's edits while apart: at 10:00 `b` changes the phone number, at 11:00
/// `a` changes the e-mail address.
fn edit_apart(a: &Store, b: &Store, ids: &(String, String, String)) {
    let (id, phone, email) = ids;
    b.at(
        TEN,
        &["set", id, &format!("phone.{phone}=+44 20 7946 0999")],
    )
    .ok();
    a.at(
        ELEVEN,
        &["set", id, &format!("email.{email}=ada@new.example")],
    )
    .ok();
}

/// Both stores show the contact with both edits, identically, and hold the same heads.
fn assert_converged(a: &Store, b: &Store, id: &str) {
    let (x, y) = (a.show(id), b.show(id));
    assert_eq!(x, y, "the contact differs between the stores");
    assert_eq!(x["phones"][0]["value"], json!("+44 20 7946 0999"));
    assert_eq!(x["emails"][0]["value"], json!("ada@new.example"));
    assert_eq!(x["conflicts"], json!([]));
    let heads = a.heads();
    assert_eq!(array(&heads).len(), 2, "both devices wrote: {heads}");
    assert_eq!(heads, b.heads(), "the heads differ between the stores");
    a.run(&["verify"]).ok();
    b.run(&["verify"]).ok();
}

// ---- bundle files ---------------------------------------------------------------------------

#[test]
fn bundles_carry_the_seed_scenario_both_ways_and_import_twice_stores_nothing() {
    // A full export carries the new contact; both edit different fields while apart; heads
    // files and `export --since` carry only the missing op each way; both stores end with the
    // same contact and heads, and importing any bundle again stores nothing.
    let a = Store::init();
    let b = a.member();
    let (ra, rb) = (a.replica(), b.replica());
    let ids = add_ada(&a);

    let all = a.file("all.bundle");
    let j = a
        .run(&["export", "--out", path_str(&all), "--json"])
        .ok()
        .json();
    assert_eq!(
        j,
        json!({"out": path_str(&all), "replica": ra, "since": null, "ops": 3, "authors": 1,
               "bytes": file_len(&all)})
    );
    // The founding op and the op adding b (b holds both already) and Ada's.
    let run = b.run(&["import", path_str(&all)]).ok();
    run.has_line(&["imported", &ra, "3 op(s), 1 stored, 2 duplicate(s)"]);
    assert_eq!(b.show(&ids.0), a.show(&ids.0));

    edit_apart(&a, &b, &ids);

    let b_heads = b.file("b.heads");
    let j = b
        .at(NOON, &["heads", "--out", path_str(&b_heads), "--json"])
        .ok()
        .json();
    assert_eq!(
        j,
        json!({"out": path_str(&b_heads), "replica": rb, "authors": 2,
               "bytes": file_len(&b_heads)})
    );
    // Without --out, heads prints as before and writes nothing.
    let human = b.run(&["heads"]).ok();
    assert_eq!(human.lines().len(), 2);
    human.has_line(&[&rb, "seq 1", "(this replica)"]);

    let to_b = a.file("to-b.bundle");
    let j = a
        .at(
            NOON,
            &[
                "export",
                "--since",
                path_str(&b_heads),
                "--out",
                path_str(&to_b),
                "--json",
            ],
        )
        .ok()
        .json();
    assert_eq!(j["since"], json!(rb));
    assert_eq!(j["ops"], json!(1), "only the 11:00 edit: {j}");
    assert!(file_len(&to_b) < file_len(&all) + 200);
    let j = b
        .at(NOON, &["import", path_str(&to_b), "--json"])
        .ok()
        .json();
    assert_eq!(
        j,
        json!({"file": path_str(&to_b), "from": ra, "created": "2026-11-22T12:00:00.000Z",
               "ops": 1, "stored": 1, "duplicates": 0, "missing": 0, "forks": [],
               "refused": [], "void": 0, "taken_back": null, "settled": []})
    );

    let a_heads = a.file("a.heads");
    a.at(NOON, &["heads", "--out", path_str(&a_heads)])
        .ok()
        .has_line(&["wrote the heads of 1 device(s)"]);
    let to_a = b.file("to-a.bundle");
    b.at(
        NOON,
        &[
            "export",
            "--since",
            path_str(&a_heads),
            "--out",
            path_str(&to_a),
        ],
    )
    .ok()
    .has_line(&["exported 1 op(s) by 1 device(s)", &ra]);
    a.at(NOON, &["import", path_str(&to_a)])
        .ok()
        .has_line(&["1 op(s), 1 stored"]);

    assert_converged(&a, &b, &ids.0);

    // Every bundle again: nothing stored, the heads unchanged.
    let heads = a.heads();
    for (s, bundle, ops) in [(&b, &to_b, 1), (&a, &to_a, 1), (&b, &all, 3), (&a, &all, 3)] {
        let j = s.run(&["import", path_str(bundle), "--json"]).ok().json();
        assert_eq!(
            (&j["stored"], &j["duplicates"]),
            (&json!(0), &json!(ops)),
            "{j}"
        );
        assert_eq!(s.heads(), heads);
    }
    // Now each lacks nothing the other has.
    let empty = a.file("empty.bundle");
    let j = a
        .run(&[
            "export",
            "--since",
            path_str(&b_heads),
            "--out",
            path_str(&empty),
            "--json",
        ])
        .ok()
        .json();
    assert_eq!(j["ops"], json!(1), "b's heads file is older than b: {j}");
    b.run(&["heads", "--out", path_str(&b_heads)]).ok();
    let j = a
        .run(&[
            "export",
            "--since",
            path_str(&b_heads),
            "--out",
            path_str(&empty),
            "--json",
        ])
        .ok()
        .json();
    assert_eq!(j["ops"], json!(0), "{j}");
    // Files are replaced whole, and no temporary file is left beside them.
    assert_eq!(
        names(a.tmp.path()),
        [
            "a.heads",
            "all.bundle",
            "empty.bundle",
            "store",
            "to-b.bundle"
        ]
    );
    assert_eq!(names(b.tmp.path()), ["b.heads", "store", "to-a.bundle"]);
}

#[test]
fn a_damaged_truncated_or_wrong_file_is_refused_and_the_store_is_unchanged() {
    // A bundle with one byte flipped in the middle, cut in half, cut to a few bytes, empty, a
    // heads file, a missing file: each import exits non-zero with one line naming the fault,
    // and the store's heads and log are what they were. A bundle given as a heads file is
    // refused too, and a failed export leaves the file it would have replaced untouched.
    let a = Store::init();
    let b = a.member();
    let ids = add_ada(&a);
    let all = a.file("all.bundle");
    a.run(&["export", "--out", path_str(&all)]).ok();
    b.run(&["import", path_str(&all)]).ok();
    edit_apart(&a, &b, &ids);
    let bundle = a.file("a.bundle");
    a.run(&["export", "--out", path_str(&bundle)]).ok();
    let good = std::fs::read(&bundle).unwrap();
    assert!(good.len() > 100);
    let heads_before = b.heads();
    let log_before = b.log();

    let mut flipped = good.clone();
    flipped[good.len() / 2] ^= 0x20;
    let cases: [(&str, Vec<u8>, &[&str]); 5] = [
        ("flipped.bundle", flipped, &["cannot import", "damaged"]),
        (
            "notes.txt",
            b"not a bundle at all, just some text".to_vec(),
            &["notes.txt: not a cardlog bundle"],
        ),
        (
            "half.bundle",
            good[..good.len() / 2].to_vec(),
            &["cannot import", "half.bundle"],
        ),
        (
            "stub.bundle",
            good[..3].to_vec(),
            &["cannot import", "truncated"],
        ),
        ("empty.bundle", Vec::new(), &["cannot import", "truncated"]),
    ];
    for (name, bytes, says) in cases {
        let path = b.file(name);
        std::fs::write(&path, bytes).unwrap();
        b.run(&["import", path_str(&path)])
            .fails(2)
            .says(says)
            .says(&["no op was imported"]);
        b.run(&["import", path_str(&path), "--json"]).fails(2);
        assert_eq!(b.heads(), heads_before, "{name} changed the heads");
        assert_eq!(b.log(), log_before, "{name} changed the log");
    }

    let heads = b.file("b.heads");
    b.run(&["heads", "--out", path_str(&heads)]).ok();
    b.run(&["import", path_str(&heads)])
        .fails(2)
        .says(&["heads", "not a bundle"]);
    b.run(&["import", path_str(&b.file("absent.bundle"))])
        .fails(3)
        .says(&["cannot read", "absent.bundle"]);
    assert_eq!(b.heads(), heads_before);

    // A bundle is not a heads file; the export it was for writes nothing.
    let out = a.file("out.bundle");
    std::fs::write(&out, b"old").unwrap();
    a.run(&[
        "export",
        "--since",
        path_str(&bundle),
        "--out",
        path_str(&out),
    ])
    .fails(2)
    .says(&["not a usable heads file", "not a heads file"]);
    assert_eq!(std::fs::read(&out).unwrap(), b"old");
    a.run(&["export", "--out", path_str(&a.file("no/such/dir/x.bundle"))])
        .fails(1)
        .says(&["cannot write"]);

    // The intact bundle still imports; with b's edit carried back, both stores agree.
    b.run(&["import", path_str(&bundle)])
        .ok()
        .has_line(&["1 stored"]);
    let back = b.file("b.bundle");
    b.run(&["export", "--out", path_str(&back)]).ok();
    a.run(&["import", path_str(&back)])
        .ok()
        .has_line(&["1 stored"]);
    assert_converged(&a, &b, &ids.0);
}

// ---- serve and sync -------------------------------------------------------------------------

#[test]
fn serve_and_sync_carry_the_seed_scenario() {
    // The same scenario as two processes talking TCP: `serve --sessions 1` on one store,
    // `sync ADDR` on the other, once to share the new contact and once after the edits made
    // apart. Both print what happened, and the stores end identical.
    let a = Store::init();
    let b = a.member();
    let (ra, rb) = (a.replica(), b.replica());
    let ids = add_ada(&a);

    let server = a.serve(NINE, &["--sessions", "1"]);
    assert!(server.addr.starts_with("127.0.0.1:"), "{}", server.first);
    assert_ne!(server.addr, "127.0.0.1:0", "the bound port is printed");
    let j = b.run(&["sync", &server.addr, "--json"]).ok().json();
    let served = server.finish().ok();
    assert_eq!(j["address"], json!(server_addr(&served)));
    assert_eq!(j["peer"], json!(ra));
    assert_eq!(
        (&j["sent_ops"], &j["received_ops"], &j["stored"]),
        (&json!(0), &json!(1), &json!(1))
    );
    assert_eq!((&j["duplicates"], &j["missing"]), (&json!(0), &json!(0)));
    assert_eq!(j["converged"], json!(true));
    assert_eq!(j["forks"], json!([]));
    // The served replica is a writer, not the book's relay: no calibration.
    assert_eq!(j["calibration"], json!(null));
    for key in ["bytes_sent", "bytes_received", "summary_bytes"] {
        assert!(j[key].as_u64().unwrap() > 0, "{key}: {j}");
    }
    assert_eq!(served.lines().len(), 2, "{}", served.stdout);
    served.has_line(&[
        "session 1 from 127.0.0.1:",
        &format!("peer {rb}"),
        "sent 1 op(s), received 0 op(s)",
        "converged",
    ]);
    assert_eq!(b.show(&ids.0), a.show(&ids.0));

    edit_apart(&a, &b, &ids);

    let server = a.serve(NOON, &["--sessions", "1"]);
    let run = b.at(NOON, &["sync", &server.addr]).ok();
    let served = server.finish().ok();
    run.has_line(&["synced with", &ra, &server_addr(&served)]);
    run.has_line(&["sent       1 op(s)"]);
    run.has_line(&["received   1 op(s): 1 stored, 0 duplicate(s)"]);
    run.has_line(&["clock      not calibrated"]);
    run.has_line(&["converged  yes"]);
    assert!(!run.stdout.contains("FORK") && !run.stdout.contains("warning"));
    served.has_line(&[
        "session 1",
        "sent 1 op(s), received 1 op(s) (1 stored)",
        "converged",
    ]);
    assert!(!served.stdout.contains("not converged"));

    assert_converged(&a, &b, &ids.0);
}

/// The address a finished server said it listened on.
fn server_addr(served: &Run) -> String {
    served.lines()[0]
        .strip_prefix("listening on ")
        .unwrap()
        .to_owned()
}

#[test]
fn serve_takes_several_peers_at_once_and_reports_each_session() {
    // One server, three connections at once: two replicas syncing and a peer sending garbage.
    // `serve --json` prints one JSON line per session; the good sessions converge, the bad one
    // is reported with its error, and serve exits 1 after its 3 sessions saying one failed.
    let hub = Store::init();
    let (p, q) = (hub.member(), hub.member());
    let (rp, rq) = (p.replica(), q.replica());
    let from_p = p.add(NINE, &["--given", "Pat"]);
    let from_q = q.add(NINE, &["--given", "Quinn"]);

    let r_hub = hub.replica();
    let server = hub.serve(NINE, &["--sessions", "3", "--timeout", "10", "--json"]);
    let first: Value = serde_json::from_str(&server.first).unwrap();
    assert_eq!(first["replica"], json!(r_hub));
    // While it serves, the store is in use: other commands say so.
    hub.run(&["status"])
        .fails(1)
        .says(&["in use by another process"]);
    let addr = server.addr.clone();
    let garbage = std::thread::spawn({
        let addr = addr.clone();
        move || {
            let mut s = std::net::TcpStream::connect(addr).unwrap();
            s.write_all(&[0, 0, 0, 5, b'h', b'e', b'l', b'l', b'o'])
                .unwrap();
            let mut sink = Vec::new();
            let _ = s.read_to_end(&mut sink);
        }
    });
    let (run_p, run_q) = std::thread::scope(|s| {
        let hp = s.spawn(|| p.run(&["sync", &addr, "--json"]));
        let hq = s.spawn(|| q.run(&["sync", &addr, "--json"]));
        (hp.join().unwrap(), hq.join().unwrap())
    });
    garbage.join().unwrap();
    let served = server.finish().fails(1).says(&["1 of 3 session(s) failed"]);
    for run in [run_p, run_q] {
        // `converged` may be false here: the hub can take the other peer's op during the
        // session, so the summaries differ at the end. The next round settles it.
        let j = run.ok().json();
        assert_eq!(j["sent_ops"], json!(1), "{j}");
        assert_eq!(j["forks"], json!([]), "{j}");
    }
    let sessions: Vec<Value> = served.lines()[1..]
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(sessions.len(), 3, "{}", served.stdout);
    let mut numbers: Vec<u64> = sessions
        .iter()
        .map(|s| s["session"].as_u64().unwrap())
        .collect();
    numbers.sort_unstable();
    assert_eq!(numbers, [1, 2, 3]);
    let failed: Vec<&Value> = sessions
        .iter()
        .filter(|s| s["ok"] == json!(false))
        .collect();
    assert_eq!(failed.len(), 1, "{}", served.stdout);
    assert!(!text(&failed[0]["error"]).is_empty());
    let mut peers: Vec<&str> = sessions
        .iter()
        .filter(|s| s["ok"] == json!(true))
        .map(|s| {
            assert_eq!(s["received_ops"], json!(1), "{s}");
            assert_eq!(s["stored"], json!(1), "{s}");
            text(&s["peer"])
        })
        .collect();
    peers.sort_unstable();
    let mut expected = [rp.as_str(), rq.as_str()];
    expected.sort_unstable();
    assert_eq!(peers, expected);
    // The hub holds both contacts; one more round, one peer after the other, gives everyone
    // everything (the hub is a relay with no special code path).
    hub.show(&from_p);
    hub.show(&from_q);
    let server = hub.serve(NINE, &["--sessions", "2"]);
    for s in [&p, &q] {
        let j = s.run(&["sync", &server.addr, "--json"]).ok().json();
        assert_eq!(j["converged"], json!(true), "{j}");
    }
    server.finish().ok();
    let heads = hub.heads();
    // The hub (the founder: the ops adding p and q), p and q.
    assert_eq!(array(&heads).len(), 3);
    assert_eq!(p.heads(), heads);
    assert_eq!(q.heads(), heads);
    assert_eq!(p.show(&from_q), q.show(&from_q));
    assert_eq!(q.show(&from_p), p.show(&from_p));
}

#[test]
fn sync_failures_exit_1_and_bad_addresses_exit_2() {
    // No one listening, a peer that hangs up at once (after retries), and a peer that never answers (with a
    // short --timeout) are exit 1 naming the address; a malformed address is exit 2; in every
    // case the store is unchanged.
    let s = Store::init();
    s.add(NINE, &["--given", "Ada"]);
    let heads = s.heads();

    let closed = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = closed.local_addr().unwrap().to_string();
    drop(closed);
    s.run(&["sync", &addr])
        .fails(1)
        .says(&[&format!("sync with {addr} failed"), "connect"]);

    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    // A peer that hangs up at once is tried again, as a busy one is (3 retries, 2 s backoff
    // doubled), then reported.
    let hang_up = std::thread::spawn(move || {
        for _ in 0..4 {
            drop(listener.accept().unwrap());
        }
    });
    s.run(&["sync", &addr])
        .fails(1)
        .says(&["closed the connection before answering"]);
    hang_up.join().unwrap();

    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let silent = std::thread::spawn(move || {
        let (mut conn, _) = listener.accept().unwrap();
        let mut sink = Vec::new();
        let _ = conn.read_to_end(&mut sink);
    });
    let started = Instant::now();
    s.run(&["sync", &addr, "--timeout", "1"])
        .fails(1)
        .says(&["timed out"]);
    assert!(started.elapsed() < Duration::from_secs(20));
    silent.join().unwrap();

    for bad in ["nowhere", "127.0.0.1:99999", ":7447"] {
        s.run(&["sync", bad]).fails(2).says(&["HOST:PORT"]);
        s.run(&["serve", "--listen", bad])
            .fails(2)
            .says(&["HOST:PORT"]);
    }
    s.run(&["sync", "127.0.0.1:1", "--timeout", "0"]).fails(2);
    assert_eq!(s.heads(), heads);
    assert_eq!(s.status(NINE)["peers"], json!([]));
}

// ---- status and list --needs-sync -----------------------------------------------------------

#[test]
fn status_and_list_needs_sync_follow_what_each_peer_acknowledged() {
    // After a sync both sides list the other as a peer with nothing to sync and the time; an
    // edit on one side makes that contact need sync for the other (status counts it,
    // `list --needs-sync` lists it) until the next sync. The initiator shows its calibration.
    let a = Store::init();
    let b = a.member();
    let (ra, rb) = (a.replica(), b.replica());
    let ada = a.add(NINE, &["--given", "Ada", "--phone", "+44 20 7946 0000"]);
    let bob = a.add(NINE, &["--given", "Bob"]);
    let before = b.status(NINE);
    assert_eq!(before["peers"], json!([]));
    assert_eq!(before["forks"], json!([]));
    assert_eq!(before["calibration"], json!(null));
    // A device never met has acknowledged nothing: everything needs sync.
    let never = a.run(&["list", "--needs-sync", &rb]).ok();
    assert_eq!(never.lines().len(), 2, "{}", never.stdout);

    let server = a.serve(NINE, &["--sessions", "1"]);
    b.run(&["sync", &server.addr]).ok();
    server.finish().ok();

    let j = b.status(NINE);
    assert_eq!(
        j["peers"],
        json!([{"peer": ra, "last_sync": "2026-11-22T09:00:00.000Z", "needs_sync": 0}])
    );
    assert_eq!(j["calibration"], json!(null));
    let j = a.status(NINE);
    assert_eq!(
        j["peers"],
        json!([{"peer": rb, "last_sync": "2026-11-22T09:00:00.000Z", "needs_sync": 0}])
    );
    assert_eq!(
        j["calibration"],
        json!(null),
        "the responder never calibrates"
    );
    let prefix_a = &ra[..6];
    let none = b.run(&["list", "--needs-sync", prefix_a]).ok();
    assert_eq!(none.stdout, "");
    assert!(none.stderr.contains("no contacts"));
    assert_eq!(
        b.run(&["list", "--needs-sync", prefix_a, "--json"])
            .ok()
            .json(),
        json!([])
    );

    b.at(TEN, &["set", &ada, "note=met at the Society"]).ok();
    let j = b.status(TEN);
    assert_eq!(j["peers"][0]["needs_sync"], json!(1));
    let human = b.at(TEN, &["status"]).ok();
    human.has_line(&[
        "peer       ",
        &ra,
        "last sync 2026-11-22T09:00:00.000Z",
        "1 contact(s) need sync",
    ]);
    // A writer is no time reference: no calibration to show.
    assert!(!human.stdout.contains("calibrated"), "{}", human.stdout);
    assert!(!human.stdout.contains("warning") && !human.stdout.contains("FORK"));
    let listed = b.run(&["list", "--needs-sync", prefix_a]).ok();
    assert_eq!(listed.lines().len(), 1, "{}", listed.stdout);
    assert!(
        listed.lines()[0].starts_with(&ada[..8]),
        "{}",
        listed.stdout
    );
    let j = b
        .run(&["list", "--needs-sync", prefix_a, "--json"])
        .ok()
        .json();
    assert_eq!(array(&j).len(), 1);
    assert_eq!(
        j[0],
        b.show(&ada),
        "the same contact objects as without the flag"
    );
    // Without the flag, list is unchanged: both contacts.
    let all = b.run(&["list"]).ok();
    assert_eq!(all.lines().len(), 2);
    assert!(all.stdout.contains(&bob[..8]));
    // The other side holds nothing its peer lacks.
    assert_eq!(a.run(&["list", "--needs-sync", &rb[..6]]).ok().stdout, "");

    let server = a.serve(TEN, &["--sessions", "1"]);
    b.at(TEN, &["sync", &server.addr]).ok();
    server.finish().ok();
    assert_eq!(b.run(&["list", "--needs-sync", prefix_a]).ok().stdout, "");
    let j = b.status(TEN);
    assert_eq!(
        j["peers"],
        json!([{"peer": ra, "last_sync": "2026-11-22T10:00:00.000Z", "needs_sync": 0}])
    );
    b.at(TEN, &["status"])
        .ok()
        .has_line(&["peer       ", &ra, "in sync"]);
    assert_eq!(
        a.status(TEN)["peers"][0]["last_sync"],
        json!("2026-11-22T10:00:00.000Z")
    );

    // Peers are named by a unique prefix of a known peer, or a full id.
    b.run(&["list", "--needs-sync", "zz"]).fails(2);
    let unknown = if ra.starts_with("00") { "ff" } else { "00" };
    b.run(&["list", "--needs-sync", unknown])
        .fails(3)
        .says(&["no peer", "cardlog status"]);
    b.run(&["list", "--needs-sync", &rb])
        .fails(2)
        .says(&["this replica itself"]);
}

#[test]
fn a_clock_far_off_is_calibrated_and_status_warns() {
    // The syncing device's clock says 09:00 while the book's relay says 11:00: sync calibrates
    // it by two hours, beyond the 5-minute bound, and both sync and status warn; its next
    // save is stamped with the corrected time. A writer's clock at 11:00 moves nothing.
    let admin = Store::init();
    let b = admin.member();
    let writer = admin.member();
    b.pull_from(&admin);
    let server = writer.serve(ELEVEN, &["--sessions", "1"]);
    let run = b.at(NINE, &["sync", &server.addr]).ok();
    server.finish().ok();
    run.has_line(&["clock", "not calibrated", "relay"]);
    let a = admin.member_as("relay");
    b.pull_from(&admin);
    let ra = a.replica();
    let server = a.serve(ELEVEN, &["--sessions", "1"]);
    let run = b.at(NINE, &["sync", &server.addr]).ok();
    server.finish().ok();
    run.has_line(&["offset +7200000 ms"]);
    run.has_line(&["warning", "7200 s off", "300 s"]);
    let j = b.status(NINE);
    assert_eq!(
        j["calibration"],
        json!({"peer": ra, "offset_ms": 7_200_000, "rtt_ms": 0,
               "at": "2026-11-22T11:00:00.000Z", "beyond_bound": true, "in_force": true})
    );
    b.at(NINE, &["status"])
        .ok()
        .has_line(&["warning", "7200 s off", "set it right"]);
    let id = b.add(NINE, &["--given", "Ada"]);
    assert_eq!(b.show(&id)["created"], json!("2026-11-22T11:00:00.000Z"));
    // Four days on, with no way to tell whether the clock was set since (`CARDLOG_NOW` has no
    // monotonic reading), the calibration has lapsed: status says so and saves use the clock.
    let later = "2026-11-26T09:00:00Z";
    assert_eq!(b.status(later)["calibration"]["in_force"], json!(false));
    b.at(later, &["status"])
        .ok()
        .has_line(&["no longer applied"]);
    let id = b.add(later, &["--given", "Later"]);
    assert_eq!(b.show(&id)["created"], json!("2026-11-26T09:00:00.000Z"));

    let server = a.serve(ELEVEN, &["--sessions", "1"]);
    let j = b.at(NINE, &["sync", &server.addr, "--json"]).ok().json();
    server.finish().ok();
    assert_eq!(
        j["calibration"],
        json!({"offset_ms": 7_200_000, "rtt_ms": 0, "beyond_bound": true})
    );
}

// ---- forks ----------------------------------------------------------------------------------

fn op_ids(s: &Store) -> Vec<String> {
    array(&s.log())
        .iter()
        .map(|o| text(&o["id"]).to_owned())
        .collect()
}

#[test]
fn forks_are_reported_by_import_sync_and_status() {
    // One device id wrote two different first ops (as a device restored from a backup does),
    // one held by each store. Importing the other's bundle and syncing report the fork with
    // both op ids; status shows it first; the forked ops are never merged, everything else
    // still travels.
    let a = Store::init();
    let b = a.member();
    // A member's key that two devices hold (a restore that was not noticed).
    let key = cardlog_core::DeviceKey::from_seed(&[0xf0; 32]);
    let author = key.device();
    {
        let mut admin = Replica::open(&a.dir).unwrap();
        admin
            .add_member(author, cardlog::MemberRole::Write, "twin")
            .unwrap();
        Replica::open(&b.dir).unwrap().pull_from(&admin).unwrap();
    }
    let book = Replica::open(&a.dir).unwrap().book();
    let clock = Arc::new(FakeClock::new(NINE_MS));
    let mut before = Device::new(author, clock.clone());
    let mut after = Device::new(author, clock.clone());
    let mut first = Contact::new(ContactId([20; 16]));
    first.set(Field::Given, "Before");
    let ours = before.create(&first).unwrap();
    clock.advance_ms(1);
    let mut second = Contact::new(ContactId([21; 16]));
    second.set(Field::Given, "After");
    let theirs = after.create(&second).unwrap();
    for (s, op) in [(&a, &ours), (&b, &theirs)] {
        let options = Options {
            wall: clock.clone(),
            ..Options::default()
        };
        let mut r = Replica::open_with(&s.dir, options).unwrap();
        let tip = cardlog::SignedTip {
            author,
            key: key.public(),
            seq: op.op().seq,
            op: op.id(),
            signature: key.sign_tip(&book, &op.id()),
        };
        assert_eq!(r.apply(std::slice::from_ref(op), &[tip]).unwrap().stored, 1);
    }
    let on_b = b.add(NINE, &["--given", "OnB"]);
    let (ours, theirs) = (ours.id().to_string(), theirs.id().to_string());
    let author = author.to_string();

    let bundle = b.file("b.bundle");
    b.run(&["export", "--out", path_str(&bundle)]).ok();
    let run = a.run(&["import", path_str(&bundle)]).ok();
    run.has_line(&["FORK", &author, "seq 1", &ours, &theirs]);
    run.has_line(&["restored from a backup"]);
    run.has_line(&["1 stored"]);
    let fork = json!({"author": author, "seq": 1, "ours": ours, "theirs": theirs});
    let j = a.run(&["import", path_str(&bundle), "--json"]).ok().json();
    assert_eq!(j["forks"], json!([fork]));
    assert_eq!(j["stored"], json!(0));

    let human = a.run(&["status"]).ok();
    assert!(human.lines()[0].starts_with("FORK"), "{}", human.stdout);
    human.has_line(&["FORK", &author, "seq 1", &ours, &theirs]);
    assert_eq!(a.status(NINE)["forks"], json!([fork]));
    // Never merged: the other branch's contact is not here, b's own contact is.
    a.run(&["show", "21212121"]).fails(3);
    a.show(&on_b);
    assert!(!op_ids(&a).contains(&theirs));
    a.run(&["verify"]).ok();

    let server = b.serve(NINE, &["--sessions", "1"]);
    let j = a.run(&["sync", &server.addr, "--json"]).ok().json();
    let served = server.finish().ok();
    assert_eq!(j["forks"], json!([fork]));
    assert_eq!(j["converged"], json!(false));
    served.has_line(&["session 1", "not converged", "FORK device", &author]);
    assert_eq!(
        b.status(NINE)["forks"],
        json!([{"author": author, "seq": 1, "ours": theirs, "theirs": ours}]),
        "each side names its own op `ours`"
    );
}

/// Copies `from` over `to` in place, as a phone restore or `rsync -a --delete` does: the
/// directories stay, files `from` lacks go, every file of `from` is written over.
fn restore_in_place(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(to).unwrap() {
        let entry = entry.unwrap();
        let kept = from.join(entry.file_name());
        let is_dir = entry.file_type().unwrap().is_dir();
        if is_dir && !kept.is_dir() {
            std::fs::remove_dir_all(entry.path()).unwrap();
        } else if !is_dir && !kept.is_file() {
            std::fs::remove_file(entry.path()).unwrap();
        }
    }
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            restore_in_place(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

#[test]
fn a_store_restored_in_place_takes_back_what_it_lost_at_its_next_sync() {
    // b's store is backed up; b saves a contact that reaches a; the backup is restored over
    // b's folder in place and b saves another. The sync takes back the lost contact and sends
    // the new one; both stores end identical.
    let a = Store::init();
    let b = a.member();
    let backup = b.file("backup");
    restore_in_place(&b.dir, &backup);
    let lost = b.add(NINE, &["--given", "Lost"]);
    a.pull_from(&b);
    restore_in_place(&backup, &b.dir);
    b.run(&["show", &lost]).fails(3);
    let new = b.add(TEN, &["--given", "New"]);
    assert_eq!(
        b.status(TEN)["restored"],
        json!(false),
        "not known before a sync"
    );

    let server = a.serve(TEN, &["--sessions", "1"]);
    let run = b.at(TEN, &["sync", &server.addr]).ok();
    server.finish().ok();
    run.has_line(&[
        "restored",
        "took back 1 op(s) of its history from seq 1",
        "the 1 op(s) written since",
    ]);
    run.has_line(&["converged  yes"]);
    assert!(!run.stdout.contains("FORK"), "{}", run.stdout);
    assert_eq!(b.show(&lost), a.show(&lost));
    assert_eq!(a.show(&new), b.show(&new));
    assert_eq!(b.heads(), a.heads());
    assert_eq!(b.status(TEN)["restored"], json!(false));
    b.run(&["verify"]).ok();
}

// ---- help -----------------------------------------------------------------------------------

#[test]
fn help_describes_the_sync_commands() {
    // Each new command and flag appears in --help with its purpose.
    let top = command(&["--help"], NINE).output().unwrap();
    let top = String::from_utf8(top.stdout).unwrap();
    for needle in [
        "export",
        "import",
        "serve",
        "sync",
        "summary --out",
        "damaged or forged bundle",
    ] {
        assert!(top.contains(needle), "--help lacks {needle}:\n{top}");
    }
    for (sub, needles) in [
        (
            "export",
            &["--out <FILE>", "--since <HEADS_FILE>", "NOT encrypted"][..],
        ),
        ("import", &["<FILE>", "unchanged"][..]),
        (
            "serve",
            &["--listen <ADDR>", "--sessions <N>", "--timeout <SECS>"][..],
        ),
        (
            "sync",
            &[
                "[ADDR]",
                "--timeout <SECS>",
                "[default: 30]",
                "paired relay",
            ][..],
        ),
        ("pair", &["[DEVICE]", "[ADDR]", "relay key mismatch"][..]),
        ("heads", &["--out <FILE>"][..]),
        ("list", &["--needs-sync <PEER>"][..]),
    ] {
        let out = command(&[sub, "--help"], NINE).output().unwrap();
        assert!(out.status.success());
        let out = String::from_utf8(out.stdout).unwrap();
        for needle in needles {
            assert!(out.contains(needle), "{sub} --help lacks {needle}:\n{out}");
        }
    }
}

// ---- the address book ------------------------------------------------------------------------

#[test]
fn a_stranger_cannot_write_to_a_served_book_and_a_member_can() {
    // The forgery of issue 19: a fresh store syncing with a served replica used to pull every
    // contact, delete one and push the delete back. A store of another book exchanges
    // nothing; a store that joins the book can pull but not write until an admin adds it;
    // once added, its saves travel.
    let served = Store::init();
    let ada = served.add(NINE, &["--given", "Ada"]);
    let book = served.run(&["book"]).ok().stdout.trim().to_owned();
    assert_eq!(book.len(), 32);
    let members = served.run(&["members", "--json"]).ok().json();
    assert_eq!(members["book"], json!(book));
    assert_eq!(array(&members["members"]).len(), 1);
    assert_eq!(members["members"][0]["role"], json!("admin"));

    // Another book: the handshake fails at its first message (keyed by the book id), so
    // nothing is exchanged.
    let stranger = Store::init();
    stranger.add(NINE, &["--given", "Mallory"]);
    let server = served.serve(NINE, &["--sessions", "1"]);
    stranger
        .run(&["sync", &server.addr])
        .fails(1)
        .says(&["handshake refused", "another address book"]);
    server.finish().fails(1);
    stranger.run(&["show", &ada]).fails(3);
    assert!(!served.run(&["list"]).ok().stdout.contains("Mallory"));

    // A device that joins the book knows no members yet: it admits no peer until paired.
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("store");
    let joiner = Store { tmp, dir };
    joiner.run(&["init", "--join", &book]).ok();
    let served_id = served.run(&["device"]).ok().stdout.trim().to_owned();
    let server = served.serve(NINE, &["--sessions", "1"]);
    joiner
        .run(&["sync", &server.addr])
        .fails(1)
        .says(&["knows no members of its address book yet", &served_id]);
    server.finish().fails(1);
    let paired = joiner.run(&["pair", &served_id]).ok().stdout;
    assert_eq!(paired.trim(), format!("paired with {served_id}"));
    // Paired, it reaches the served replica, which refuses it: not a member yet.
    let server = served.serve(NINE, &["--sessions", "1"]);
    let device = joiner.run(&["device"]).ok().stdout.trim().to_owned();
    joiner
        .run(&["sync", &server.addr])
        .fails(1)
        .says(&[&format!(
            "peer {device} is not a member of this address book"
        )]);
    server.finish().fails(1);
    joiner.run(&["show", &ada]).fails(3);

    // Added by the admin, it syncs, writes, and its delete reaches the served replica.
    served
        .run(&[
            "members",
            "add",
            &device,
            "--name",
            "Ada's iPad",
            "--role",
            "write",
        ])
        .ok();
    let listed = served.run(&["members"]).ok().stdout;
    assert!(
        listed.contains("Ada's iPad") && listed.contains("write"),
        "{listed}"
    );
    let server = served.serve(NINE, &["--sessions", "1"]);
    joiner.run(&["sync", &server.addr]).ok();
    server.finish().ok();
    joiner.run(&["rm", &ada]).ok();
    let server = served.serve(NINE, &["--sessions", "1"]);
    joiner.run(&["sync", &server.addr]).ok();
    server.finish().ok();
    assert_eq!(served.show(&ada)["deleted"], json!(true));
    // Each write shows its device's name, as the membership ops give it.
    let history = served.run(&["history", &ada, "exists"]).ok().stdout;
    assert!(history.contains("(Ada's iPad)"), "{history}");
    let versions = served
        .run(&["history", &ada, "exists", "--json"])
        .ok()
        .json();
    let names: Vec<&serde_json::Value> = array(&versions["paths"][0]["versions"])
        .iter()
        .map(|v| &v["device_name"])
        .collect();
    assert!(names.contains(&&json!("Ada's iPad")), "{versions}");
    let log = served.run(&["log", "--author", &device]).ok().stdout;
    assert!(log.contains("(by Ada's iPad)"), "{log}");
    let ops = served.run(&["log", "--json"]).ok().json();
    assert!(
        array(&ops)
            .iter()
            .any(|o| o["author_name"] == json!("Ada's iPad")),
        "{ops}"
    );

    // The pairing shows in status; `sync` without an address needs a paired address.
    let status = joiner.run(&["status", "--json"]).ok().json();
    assert_eq!(
        status["paired"],
        json!({"device": served_id, "address": null}),
        "{status}"
    );
    joiner
        .run(&["sync"])
        .fails(2)
        .says(&["no paired relay address"]);
    // Paired with a relay at an address where another device answers: refused by key, named.
    let stranger_id = stranger.run(&["device"]).ok().stdout.trim().to_owned();
    let server = served.serve(NINE, &["--sessions", "1"]);
    joiner.run(&["pair", &stranger_id, &server.addr]).ok();
    joiner.run(&["sync"]).fails(1).says(&[&format!(
        "relay key mismatch: expected {stranger_id}, but the device at this address is another"
    )]);
    server.finish().fails(1);
    // Paired right, `sync` alone reaches it.
    let server = served.serve(NINE, &["--sessions", "1"]);
    joiner.run(&["pair", &served_id, &server.addr]).ok();
    let j = joiner.run(&["sync", "--json"]).ok().json();
    server.finish().ok();
    assert_eq!(j["peer"], json!(served_id));
    // Addressed to the paired device, the handshake names the book in message 3.
    assert_eq!(j["handshake_bytes"], json!(421));

    // Removed, its later saves are refused by the book, and it is no longer let in.
    served.run(&["members", "remove", &device[..8]]).ok();
    served
        .run(&["members", "add", &device, "--name", "again"])
        .fails(2)
        .says(&["cannot be added again"]);
    let server = served.serve(NINE, &["--sessions", "1"]);
    joiner.run(&["pair", &served_id, &server.addr]).ok();
    joiner
        .run(&["sync"])
        .fails(1)
        .says(&[&format!("peer {device} was removed from this address book")]);
    server.finish().fails(1);
}

// ---- a relay of many books --------------------------------------------------------------------

#[test]
fn a_relay_of_many_books_is_created_served_and_inspected_from_the_command_line() {
    let tmp = tempfile::tempdir().unwrap();
    let relay_dir = tmp.path().join("relay");
    let relay_path = path_str(&relay_dir);
    let init = finished(
        arg_strings(&["relay", "init", relay_path, "--json"]),
        command(&["relay", "init", relay_path, "--json"], NINE)
            .output()
            .unwrap(),
    )
    .ok();
    let relay = text(&init.json()["relay"]).to_owned();
    assert_eq!(relay.len(), 32, "{}", init.stdout);
    // Again on the same directory: not empty.
    let again = finished(
        arg_strings(&["relay", "init", relay_path]),
        command(&["relay", "init", relay_path], NINE)
            .output()
            .unwrap(),
    );
    assert_eq!(again.code, 2, "{again:?}");

    let serve_args = [
        "relay",
        "serve",
        relay_path,
        "--listen",
        "127.0.0.1:0",
        "--sessions",
        "4",
    ];
    let server = spawn_server(&serve_args.map(OsStr::new), NINE);
    // Two books, each with an admin that adds the relay and syncs, and a phone of the first.
    let (ada, grace) = (Store::init(), Store::init());
    for s in [&ada, &grace] {
        s.run(&[
            "members", "add", &relay, "--role", "relay", "--name", "relay",
        ])
        .ok();
        s.run(&["pair", &relay, &server.addr]).ok();
    }
    let phone = ada.member();
    phone.run(&["pair", &relay, &server.addr]).ok();
    let id = ada.add(NINE, &["--given", "Ada"]);
    grace.add(NINE, &["--given", "Grace"]);
    for s in [&ada, &grace, &phone] {
        let out = s.run(&["sync", "--json"]).ok();
        assert_eq!(text(&out.json()["peer"]), relay, "{}", out.stdout);
    }
    assert_eq!(text(&phone.show(&id)["given"]), "Ada");
    assert_eq!(array(&phone.run(&["list", "--json"]).ok().json()).len(), 1);
    // A store of a third book that never added the relay refuses it by its membership.
    let stranger = Store::init();
    stranger.run(&["pair", &relay, &server.addr]).ok();
    let refused = stranger.run(&["sync"]);
    assert_eq!(refused.code, 1, "{refused:?}");
    assert!(
        refused.stderr.contains("is not a member"),
        "{}",
        refused.stderr
    );
    let served = server.finish();
    assert_eq!(served.code, 1, "{served:?}");
    assert!(
        served.stdout.starts_with("listening on 127.0.0.1:"),
        "{}",
        served.stdout
    );

    let status = finished(
        arg_strings(&["relay", "status", relay_path, "--json"]),
        command(&["relay", "status", relay_path, "--json"], NINE)
            .output()
            .unwrap(),
    )
    .ok()
    .json();
    assert_eq!(text(&status["device"]), relay);
    let books = array(&status["books"]);
    assert_eq!(books.len(), 2, "{status}");
    let mut kept: Vec<&str> = books.iter().map(|b| text(&b["book"])).collect();
    kept.sort_unstable();
    let mut expected = [
        ada.run(&["book"]).ok().stdout.trim().to_owned(),
        grace.run(&["book"]).ok().stdout.trim().to_owned(),
    ];
    expected.sort();
    assert_eq!(kept, expected);
    let text_status = finished(
        arg_strings(&["relay", "status", relay_path]),
        command(&["relay", "status", relay_path], NINE)
            .output()
            .unwrap(),
    )
    .ok();
    assert!(
        text_status
            .stdout
            .starts_with(&format!("relay {relay}: 2 book(s), ")),
        "{}",
        text_status.stdout
    );
    // A book's copy keeps ops only: its contacts are read from its log, and it takes no save.
    // (Each book holds one contact.)
    let a_book = relay_dir.join("books").join(&expected[0]);
    let on_book = |args: &[&str]| {
        let mut all = vec!["--store", path_str(&a_book)];
        all.extend_from_slice(args);
        finished(arg_strings(&all), command(&all, NINE).output().unwrap())
    };
    let listed = on_book(&["list", "--json"]).ok();
    let rows = array(&listed.json()).clone();
    assert_eq!(rows.len(), 1, "{}", listed.stdout);
    assert!(
        listed.stderr.contains("keeps ops only"),
        "{}",
        listed.stderr
    );
    let refused = on_book(&["add", "--given", "Mallory"]);
    assert_eq!(refused.code, 1, "{refused:?}");
    assert!(
        refused.stderr.contains("keeps ops only"),
        "{}",
        refused.stderr
    );
    // A directory that is not a relay is named as such (exit 3).
    let not = finished(
        arg_strings(&["relay", "status", "x"]),
        command(&["relay", "status", path_str(&ada.dir)], NINE)
            .output()
            .unwrap(),
    );
    assert_eq!(not.code, 3, "{not:?}");
    assert!(
        not.stderr.contains("is not a cardlog relay"),
        "{}",
        not.stderr
    );
}

//! Runs the real `cardlog` binary for every command, in human and `--json` form, and checks
//! stdout, stderr and the exit code of each run, including the error cases (unknown id,
//! ambiguous prefix, bad field name, missing or damaged store, bad `CARDLOG_NOW`). Every run
//! uses its own temporary store and a fixed `CARDLOG_NOW`. Steps that are not what a test is
//! about (carrying ops between two stores, damaging a store) are done through the library,
//! then the binary runs on the result; the sync commands have their own tests in sync.rs.
#![allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    clippy::panic,
    clippy::expect_used
)]

use std::collections::BTreeSet;
use std::ffi::OsStr;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;

use cardlog::{Contact, Field, Options, Replica};
use cardlog_core::FakeClock;
use cardlog_store::state::{Kv, KvBatch, SledKv};
use serde_json::{json, Value};
use tempfile::TempDir;

mod common;
use common::{arg_strings, finished, Run};

const NINE: &str = "2026-11-22T09:00:00Z";
const TEN: &str = "2026-11-22T10:00:00Z";
const ELEVEN: &str = "2026-11-22T11:00:00Z";

/// Every subcommand, for the help test.
const SUBCOMMANDS: [&str; 25] = [
    "init",
    "add",
    "set",
    "rm",
    "restore",
    "show",
    "list",
    "history",
    "log",
    "op",
    "summary",
    "status",
    "conflicts",
    "resolve",
    "verify",
    "rebuild",
    "repair",
    "compact",
    "stats",
    "export",
    "import",
    "serve",
    "sync",
    "demo",
    "vcard",
];

// ---- running the binary ---------------------------------------------------------------------

/// Runs `cardlog ARGS` with exactly the environment given (no inherited `CARDLOG_*`).
fn cardlog<S: AsRef<OsStr>>(args: &[S], env: &[(&str, &OsStr)]) -> Run {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_cardlog"));
    cmd.args(args)
        .env_remove("CARDLOG_STORE")
        .env_remove("CARDLOG_NOW")
        .env("RUST_BACKTRACE", "1");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("the cardlog binary runs");
    finished(arg_strings(args), out)
}

/// A store directory (created by `init` or not) in its own temporary directory.
struct Store {
    _tmp: TempDir,
    dir: PathBuf,
}

impl Store {
    /// A path where no store exists yet.
    fn new() -> Store {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("store");
        Store { _tmp: tmp, dir }
    }

    /// A fresh store made by `cardlog init`.
    fn init() -> Store {
        let s = Store::new();
        s.run(&["init"]).ok();
        s
    }

    /// `cardlog --store DIR ARGS` with `CARDLOG_NOW=now`.
    fn at(&self, now: &str, args: &[&str]) -> Run {
        let mut all: Vec<&OsStr> = vec![OsStr::new("--store"), self.dir.as_os_str()];
        all.extend(args.iter().map(OsStr::new));
        cardlog(&all, &[("CARDLOG_NOW", OsStr::new(now))])
    }

    /// `cardlog --store DIR ARGS` at 09:00.
    fn run(&self, args: &[&str]) -> Run {
        self.at(NINE, args)
    }

    /// `cardlog add ARGS`: asserts stdout is exactly one id and returns it.
    fn add(&self, args: &[&str]) -> String {
        let mut all = vec!["add"];
        all.extend_from_slice(args);
        let run = self.run(&all).ok();
        let id = run.stdout.strip_suffix('\n').unwrap_or_default().to_owned();
        assert!(is_hex(&id, 32), "add printed {:?}", run.stdout);
        id
    }

    fn show(&self, id: &str) -> Value {
        self.run(&["show", id, "--json"]).ok().json()
    }

    fn replica(&self) -> String {
        let status = self.run(&["status", "--json"]).ok().json();
        status["replica"].as_str().unwrap().to_owned()
    }

    /// The log's saves, as `log --json` gives them: the membership ops (the founding op
    /// `init` writes) left out, since these tests are about saves (`init_founds_a_book…`
    /// checks the founding op).
    fn log(&self) -> Vec<Value> {
        array(&self.run(&["log", "--json"]).ok().json())
            .iter()
            .filter(|o| array(&o["members"]).is_empty())
            .cloned()
            .collect()
    }
}

fn is_hex(s: &str, len: usize) -> bool {
    s.len() == len
        && s.chars()
            .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
}

fn array(v: &Value) -> &Vec<Value> {
    v.as_array()
        .unwrap_or_else(|| panic!("not a JSON array: {v}"))
}

fn text(v: &Value) -> &str {
    v.as_str()
        .unwrap_or_else(|| panic!("not a JSON string: {v}"))
}

/// A 32-digit hex id none of `ids` starts with the first two digits of.
fn absent_id(ids: &[&str]) -> String {
    (0u8..=255)
        .map(|b| format!("{b:02x}{}", "0".repeat(30)))
        .find(|cand| ids.iter().all(|id| id.get(..2) != cand.get(..2)))
        .unwrap()
}

/// The first hex digit shared by two of `ids`, and those ids.
fn shared_first_digit(ids: &[String]) -> (String, Vec<String>) {
    for digit in "0123456789abcdef".chars() {
        let matching: Vec<String> = ids
            .iter()
            .filter(|id| id.starts_with(digit))
            .cloned()
            .collect();
        if matching.len() >= 2 {
            return (digit.to_string(), matching);
        }
    }
    panic!("17 ids always share a first digit: {ids:?}");
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

/// Carries every op `from` has and `to` lacks (what sync will do), through the library.
fn carry(from: &Path, to: &Path) -> usize {
    let from = Replica::open(from).unwrap();
    let mut to = Replica::open(to).unwrap();
    to.pull_from(&from).unwrap().stored
}

// ---- init, add -------------------------------------------------------------------------------

#[test]
fn init_creates_a_store_once() {
    // Human and JSON forms of init; a second init on the same directory is refused with exit 2.
    let s = Store::new();
    let run = s.run(&["init"]).ok();
    let line = run.stdout.trim_end();
    let replica = line
        .strip_prefix("created replica ")
        .and_then(|rest| rest.split(' ').next())
        .unwrap_or_else(|| panic!("init printed {line:?}"));
    assert!(is_hex(replica, 32));
    assert!(
        line.contains(&format!(" in {}, founding address book ", s.dir.display())),
        "{line}"
    );
    assert_eq!(s.replica(), replica);

    s.run(&["init"]).fails(2).says(&["not empty"]);
    assert_eq!(s.replica(), replica, "a refused init changes nothing");

    let other = Store::new();
    let j = other.run(&["init", "--json"]).ok().json();
    assert!(is_hex(text(&j["replica"]), 32));
    assert_eq!(text(&j["store"]), other.dir.to_str().unwrap());
    assert_ne!(
        text(&j["replica"]),
        replica,
        "each store has its own device id"
    );
}

#[test]
fn add_prints_only_the_id_and_show_has_every_field() {
    // add with every kind of value prints one id line; show --json returns them all, by name.
    let s = Store::init();
    let run = s
        .at(
            TEN,
            &[
                "add",
                "--given",
                "Ada",
                "--family",
                "Lovelace",
                "--org",
                "Analytical Engines",
                "--note",
                "met at the Society",
                "--phone",
                "mobile=+44 20 7946 0000",
                "--phone",
                "+1=555",
                "--email",
                "ada@example.org",
                "--url",
                "https://example.org/?q=a=b",
                "--address",
                "home=12 St James's Sq;London;;SW1Y 4LB;UK",
                "--tag",
                "friends",
                "--tag",
                "chess",
                "--custom",
                "X-SHOE=38",
                "--json",
            ],
        )
        .ok();
    assert_eq!(run.lines().len(), 1, "only the id, even with --json");
    let id = run.stdout.trim_end().to_owned();
    assert!(is_hex(&id, 32), "{:?}", run.stdout);
    assert!(run.stderr.is_empty(), "{}", run.stderr);

    let c = s.show(&id);
    assert_eq!(c["id"], json!(id));
    assert_eq!(c["given"], json!("Ada"));
    assert_eq!(c["family"], json!("Lovelace"));
    assert_eq!(c["org"], json!("Analytical Engines"));
    assert_eq!(c["note"], json!("met at the Society"));
    assert!(c.get("middle").is_none(), "unset fields are absent: {c}");
    // Items saved together are ordered by id, so compare them without their ids.
    let phones = array(&c["phones"]);
    let mut labelled: Vec<(&Value, &Value)> =
        phones.iter().map(|p| (&p["label"], &p["value"])).collect();
    labelled.sort_by_key(|(l, _)| l.to_string());
    // '+' cannot be in a label, so "+1=555" is all value.
    assert_eq!(
        labelled,
        [
            (&json!(""), &json!("+1=555")),
            (&json!("mobile"), &json!("+44 20 7946 0000"))
        ]
    );
    for item in phones {
        assert!(is_hex(text(&item["id"]), 32));
    }
    assert_eq!(
        c["emails"],
        json!([{"id": c["emails"][0]["id"], "label": "", "value": "ada@example.org"}])
    );
    assert_eq!(c["urls"][0]["label"], json!(""));
    assert_eq!(c["urls"][0]["value"], json!("https://example.org/?q=a=b"));
    assert_eq!(c["addresses"][0]["label"], json!("home"));
    assert_eq!(
        c["addresses"][0]["value"],
        json!({"po_box": "", "extended": "", "street": "12 St James's Sq", "locality": "London",
               "region": "", "code": "SW1Y 4LB", "country": "UK"})
    );
    assert_eq!(c["tags"], json!(["chess", "friends"]));
    assert_eq!(c["custom"], json!({"X-SHOE": "38"}));
    assert_eq!(c["deleted"], json!(false));
    assert_eq!(c["conflicts"], json!([]));
    assert_eq!(c["created"], json!("2026-11-22T10:00:00.000Z"));

    let human = s.run(&["show", &id[..8]]).ok();
    let first = human.lines()[0];
    assert_eq!(first, format!("{id}  Ada Lovelace"));
    assert!(human.stdout.contains("  tags"), "{}", human.stdout);
    assert!(human.stdout.contains("+44 20 7946 0000 (mobile)"));
    assert!(human.stdout.contains("custom.X-SHOE"));
    // Values start in one column.
    let columns: BTreeSet<usize> = human.lines()[1..]
        .iter()
        .map(|l| {
            let key_end = 2 + l[2..].find(' ').unwrap();
            key_end + l[key_end..].find(|ch: char| ch != ' ').unwrap()
        })
        .collect();
    assert_eq!(columns.len(), 1, "values not aligned:\n{}", human.stdout);
}

#[test]
fn add_refuses_what_it_cannot_store() {
    // No value at all, a custom field without '=', an address of six parts: exit 2, no op.
    let s = Store::init();
    s.run(&["add"]).fails(2).says(&["at least one value"]);
    s.run(&["add", "--given", "A", "--custom", "X-NOEQUALS"])
        .fails(2)
        .says(&["X-NOEQUALS", "NAME=VALUE"]);
    s.run(&["add", "--given", "A", "--address", "a;b;c;d;e;f"])
        .fails(2)
        .says(&["6 parts"]);
    s.run(&["add", "--given", "A", "--phone", "work="])
        .fails(2)
        .says(&["no value"]);
    assert!(s.log().is_empty(), "a refused add saves nothing");
}

// ---- set ------------------------------------------------------------------------------------

#[test]
fn set_applies_every_assignment_form_in_one_op() {
    // One set with every form changes exactly what it names, as one op.
    let s = Store::init();
    let id = s.add(&[
        "--given",
        "Ada",
        "--family",
        "Lovelace",
        "--nickname",
        "Countess",
        "--phone",
        "mobile=+44 20 7946 0000",
        "--email",
        "home=ada@old.example",
        "--tag",
        "friend",
    ]);
    let before = s.show(&id);
    let phone = text(&before["phones"][0]["id"]).to_owned();
    let email = text(&before["emails"][0]["id"]).to_owned();
    let ops_before = s.log().len();

    let run = s
        .at(
            TEN,
            &[
                "set",
                &id[..6],
                "given=Augusta Ada",
                "nickname=",
                "note=a+=b -= c",
                &format!("phone.{}=work=+1 555 0100", &phone[..8]),
                &format!("email.{}=ada@new.example", &email[..8]),
                "phone+=fax=+1 555 0199",
                "email+=x@example.org",
                "url+=https://example.org/a?b=c",
                "address+=home=1 Main St;Springfield;IL;62701;USA",
                "tag+=vip",
                "tag-=friend",
                "custom.X-SHOE=44",
            ],
        )
        .ok();
    let op = run
        .stdout
        .trim_end()
        .strip_prefix("saved op ")
        .unwrap_or_else(|| panic!("set printed {:?}", run.stdout));
    assert!(is_hex(op, 64));
    let log = s.log();
    assert_eq!(log.len(), ops_before + 1, "all assignments are one op");
    assert_eq!(log.last().unwrap()["id"], json!(op));

    let c = s.show(&id);
    assert_eq!(c["given"], json!("Augusta Ada"));
    assert_eq!(c["family"], json!("Lovelace"), "untouched fields stay");
    assert!(c.get("nickname").is_none(), "FIELD= clears: {c}");
    assert_eq!(
        c["note"],
        json!("a+=b -= c"),
        "the value is all after the first '='"
    );
    let phones = array(&c["phones"]);
    assert_eq!(phones.len(), 2);
    assert_eq!(
        phones[0],
        json!({"id": phone, "label": "work", "value": "+1 555 0100"})
    );
    assert_eq!(phones[1]["label"], json!("fax"));
    assert_eq!(phones[1]["value"], json!("+1 555 0199"));
    assert_eq!(
        c["emails"][0],
        json!({"id": email, "label": "home", "value": "ada@new.example"}),
        "without a label the old label stays"
    );
    assert_eq!(c["emails"][1]["label"], json!(""));
    assert_eq!(c["emails"][1]["value"], json!("x@example.org"));
    assert_eq!(c["urls"][0]["value"], json!("https://example.org/a?b=c"));
    assert_eq!(c["urls"][0]["label"], json!(""));
    assert_eq!(c["addresses"][0]["label"], json!("home"));
    assert_eq!(c["addresses"][0]["value"]["locality"], json!("Springfield"));
    assert_eq!(c["addresses"][0]["value"]["country"], json!("USA"));
    assert_eq!(c["tags"], json!(["vip"]));
    assert_eq!(c["custom"], json!({"X-SHOE": "44"}));

    // Removals: KIND-=ITEM, KIND.ITEM= and custom.NAME=.
    let fax = text(&phones[1]["id"]).to_owned();
    let second_email = text(&c["emails"][1]["id"]).to_owned();
    let url = text(&c["urls"][0]["id"]).to_owned();
    let j = s
        .at(
            ELEVEN,
            &[
                "set",
                &id,
                &format!("phone-={}", &fax[..8]),
                &format!("email.{}=", &second_email[..8]),
                &format!("url-={url}"),
                "custom.X-SHOE=",
                "--json",
            ],
        )
        .ok()
        .json();
    assert_eq!(j["changed"], json!(true));
    assert_eq!(j["contact"], json!(id));
    assert!(is_hex(text(&j["op"]), 64));
    let c = s.show(&id);
    assert_eq!(array(&c["phones"]).len(), 1);
    assert_eq!(c["phones"][0]["id"], json!(phone));
    assert_eq!(array(&c["emails"]).len(), 1);
    assert_eq!(c["urls"], json!([]));
    assert_eq!(c["custom"], json!({}));

    // Setting what is already there saves nothing.
    let ops = s.log().len();
    let run = s
        .run(&["set", &id, "given=Augusta Ada", "tag-=absent"])
        .ok();
    assert_eq!(run.stdout, "nothing changed\n");
    let j = s.run(&["set", &id, "tag+=vip", "--json"]).ok().json();
    assert_eq!(j, json!({"contact": id, "op": null, "changed": false}));
    assert_eq!(s.log().len(), ops);
}

#[test]
fn set_refuses_bad_assignments_and_saves_nothing() {
    // Unknown field, missing '=', list without item, empty tag, unknown item, unknown contact:
    // one stderr line each, the right exit code, and no op saved (not even the valid part).
    let s = Store::init();
    let id = s.add(&["--given", "Ada", "--phone", "+44 20 7946 0000"]);
    let phone = text(&s.show(&id)["phones"][0]["id"]).to_owned();
    let ops = s.log().len();

    s.run(&["set", &id, "given=Grace", "bogus=1"])
        .fails(2)
        .says(&["unknown field \"bogus\"", "given, family"]);
    s.run(&["set", &id, "given"])
        .fails(2)
        .says(&["\"given\"", "no '='"]);
    s.run(&["set", &id, "phone=123"])
        .fails(2)
        .says(&["phone+=", "phone-="]);
    s.run(&["set", &id, "tag=x"]).fails(2).says(&["tag+="]);
    s.run(&["set", &id, "tag+="]).fails(2).says(&["tag name"]);
    s.run(&["set", &id, "org+=x"]).fails(2).says(&["\"org\""]);
    s.run(&["set", &id, "custom.=x"]).fails(2).says(&["name"]);
    s.run(&["set", &id, "phone.zz=1"]).fails(2).says(&["zz"]);
    s.run(&["set", &id, &format!("phone.{}=work=", &phone[..8])])
        .fails(2)
        .says(&["no value"]);
    let absent = absent_id(&[&phone]);
    s.run(&["set", &id, &format!("phone.{}=1", &absent[..8])])
        .fails(3)
        .says(&[&absent[..8]]);
    s.run(&["set", &id, &format!("phone-={}", &absent[..8])])
        .fails(3);
    let nobody = absent_id(&[&id]);
    s.run(&["set", &nobody, "given=x"])
        .fails(3)
        .says(&[&nobody]);
    assert_eq!(s.log().len(), ops, "nothing was saved");
    assert_eq!(s.show(&id)["given"], json!("Ada"));
}

#[test]
fn ids_accept_unique_prefixes_and_name_ambiguous_ones() {
    // 17 contacts, 17 ops and 17 items each share a first hex digit somewhere (pigeonhole): that
    // digit is refused as ambiguous with the candidates listed; longer prefixes work.
    let s = Store::init();
    let mut phones = Vec::new();
    for n in 0..17 {
        phones.push("--phone".to_owned());
        phones.push(format!("+1 555 01{n:02}"));
    }
    let mut args: Vec<&str> = vec!["--given", "Many"];
    args.extend(phones.iter().map(String::as_str));
    let mut ids = vec![s.add(&args)];
    for n in 1..17 {
        ids.push(s.add(&["--given", &format!("Person {n}")]));
    }

    let (digit, matching) = shared_first_digit(&ids);
    let run = s.run(&["show", &digit]).fails(2).says(&["ambiguous"]);
    let listed = matching
        .iter()
        .filter(|id| run.stderr.contains(id.as_str()))
        .count();
    assert!(listed >= 2, "candidates not listed: {}", run.stderr);
    s.run(&["set", &digit, "given=x"])
        .fails(2)
        .says(&["ambiguous"]);
    s.run(&["rm", &digit]).fails(2).says(&["ambiguous"]);
    s.run(&["history", &digit]).fails(2).says(&["ambiguous"]);

    // A unique prefix finds the contact.
    let unique = |id: &str| -> String {
        (1..=32)
            .map(|n| id[..n].to_owned())
            .find(|p| ids.iter().filter(|other| other.starts_with(p)).count() == 1)
            .unwrap()
    };
    let p = unique(&ids[0]);
    assert_eq!(s.show(&p)["id"], json!(ids[0]));

    // Unknown and malformed ids.
    let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
    let absent = absent_id(&refs);
    s.run(&["show", &absent])
        .fails(3)
        .says(&["no contact", &absent]);
    s.run(&["show", &absent[..4]]).fails(3);
    s.run(&["show", "xyz"]).fails(2).says(&["hex"]);
    s.run(&["show", ""]).fails(2);

    // Item prefixes.
    let items: Vec<String> = array(&s.show(&ids[0])["phones"])
        .iter()
        .map(|i| text(&i["id"]).to_owned())
        .collect();
    let (item_digit, _) = shared_first_digit(&items);
    s.run(&["set", &ids[0], &format!("phone.{item_digit}=1")])
        .fails(2)
        .says(&["ambiguous"]);
    s.run(&["set", &ids[0], &format!("phone-={item_digit}")])
        .fails(2)
        .says(&["ambiguous"]);
    s.run(&["history", &ids[0], &format!("phone/{item_digit}")])
        .fails(2)
        .says(&["ambiguous"]);

    // Op prefixes.
    let ops: Vec<String> = s.log().iter().map(|o| text(&o["id"]).to_owned()).collect();
    assert_eq!(ops.len(), 17);
    let (op_digit, op_matching) = shared_first_digit(&ops);
    let run = s.run(&["op", &op_digit]).fails(2).says(&["ambiguous"]);
    assert!(op_matching.iter().any(|o| run.stderr.contains(o.as_str())));
    let j = s.run(&["op", &ops[3][..12], "--json"]).ok().json();
    assert_eq!(j["id"], json!(ops[3]));
}

// ---- rm, restore, show, list ------------------------------------------------------------------

#[test]
fn rm_hides_a_contact_and_restore_brings_it_back() {
    // rm keeps the contact (show, list --deleted, history) and restore undoes it; both refuse
    // the wrong state with exit 2 and unknown ids with exit 3.
    let s = Store::init();
    let ada = s.add(&["--given", "Ada"]);
    let bob = s.add(&["--given", "Bob"]);

    let run = s.at(TEN, &["rm", &bob[..8]]).ok();
    assert!(
        run.stdout.starts_with(&format!("deleted {bob} (op ")),
        "{}",
        run.stdout
    );
    assert!(run
        .stdout
        .contains(&format!("cardlog restore {}", &bob[..8])));
    let listed = s.run(&["list"]).ok();
    assert_eq!(listed.lines().len(), 1);
    assert!(listed.stdout.contains("Ada") && !listed.stdout.contains("Bob"));
    let all = s.run(&["list", "--deleted"]).ok();
    assert_eq!(all.lines().len(), 2);
    let bob_line = all.lines().into_iter().find(|l| l.contains("Bob")).unwrap();
    assert!(bob_line.ends_with("[deleted]"), "{bob_line}");
    let ids: Vec<Value> = array(&s.run(&["list", "--json"]).ok().json())
        .iter()
        .map(|c| c["id"].clone())
        .collect();
    assert_eq!(ids, vec![json!(ada)]);
    let shown = s.show(&bob);
    assert_eq!(shown["deleted"], json!(true));
    assert_eq!(shown["given"], json!("Bob"));
    assert!(s.run(&["show", &bob]).ok().lines()[0].ends_with("[deleted]"));

    s.run(&["rm", &bob]).fails(2).says(&["already deleted"]);
    s.run(&["set", &bob, "given=Robert"])
        .fails(2)
        .says(&["deleted", "cardlog restore"]);
    s.run(&["restore", &ada]).fails(2).says(&["not deleted"]);

    let j = s.at(ELEVEN, &["restore", &bob, "--json"]).ok().json();
    assert_eq!(j["contact"], json!(bob));
    assert!(is_hex(text(&j["op"]), 64));
    assert_eq!(s.show(&bob)["deleted"], json!(false));
    assert_eq!(s.run(&["list"]).ok().lines().len(), 2);
    let run = s.run(&["restore", &bob]).fails(2);
    assert!(run.stdout.is_empty());

    let j = s.run(&["rm", &ada, "--json"]).ok().json();
    assert_eq!(j["contact"], json!(ada));
    let restored = s.run(&["restore", &ada]).ok();
    assert!(restored.stdout.starts_with(&format!("restored {ada} (op ")));

    let absent = absent_id(&[&ada, &bob]);
    s.run(&["rm", &absent]).fails(3);
    s.run(&["restore", &absent]).fails(3);
}

#[test]
fn list_searches_aligns_and_prints_a_json_array() {
    // list filters case-insensitively over names, items and tags; columns line up; --json is an
    // array of show objects; an empty result is exit 0 with a note on stderr.
    let s = Store::init();
    let ada = s.add(&["--given", "Ada", "--family", "Lovelace", "--phone", "+44 1"]);
    let bob = s.add(&["--given", "Bob", "--email", "bob@example.com"]);
    let carol = s.add(&["--org", "Carol's Bakery", "--tag", "chess"]);

    let run = s.run(&["list"]).ok();
    let lines = run.lines();
    assert_eq!(lines.len(), 3);
    for id in [&ada, &bob, &carol] {
        assert_eq!(
            lines.iter().filter(|l| l.starts_with(&id[..8])).count(),
            1,
            "{}",
            run.stdout
        );
    }
    // The third column (first phone or e-mail) starts at the same offset on every line that has
    // one.
    let starts: BTreeSet<usize> = [("+44 1", &ada), ("bob@example.com", &bob)]
        .iter()
        .map(|(v, id)| {
            let line = lines.iter().find(|l| l.starts_with(&id[..8])).unwrap();
            line.find(v).unwrap()
        })
        .collect();
    assert_eq!(starts.len(), 1, "not aligned:\n{}", run.stdout);
    // In display-name order (Ada Lovelace, Bob, Carol's Bakery), whatever the ids, in text
    // and in JSON, searched or not.
    let order =
        |stdout: &str| -> Vec<String> { stdout.lines().map(|l| l[..8].to_owned()).collect() };
    let want: Vec<String> = [&ada, &bob, &carol]
        .iter()
        .map(|id| id[..8].to_owned())
        .collect();
    assert_eq!(order(&run.stdout), want, "{}", run.stdout);
    let json_ids: Vec<String> = array(&s.run(&["list", "--json"]).ok().json())
        .iter()
        .map(|c| text(&c["id"])[..8].to_owned())
        .collect();
    assert_eq!(json_ids, want);
    let searched = s.run(&["list", "o"]).ok(); // Lovelace, bob@, Carol: all three
    assert_eq!(order(&searched.stdout), want, "{}", searched.stdout);

    let found = s.run(&["list", "BOB"]).ok();
    assert_eq!(found.lines().len(), 1);
    assert!(found.stdout.starts_with(&bob[..8]));
    let found = s.run(&["list", "chess", "--json"]).ok().json();
    assert_eq!(array(&found).len(), 1);
    assert_eq!(found[0]["id"], json!(carol));
    assert_eq!(found[0]["org"], json!("Carol's Bakery"));
    let found = s.run(&["list", "example.com"]).ok();
    assert!(found.stdout.contains("Bob") && found.lines().len() == 1);

    let none = s.run(&["list", "zzz"]).ok();
    assert!(none.stdout.is_empty());
    assert_eq!(none.stderr.trim_end(), "no contacts");
    assert_eq!(s.run(&["list", "zzz", "--json"]).ok().json(), json!([]));

    // Printed a contact at a time, the array is still byte for byte what printing it whole
    // gives; a phone number's digits find it however it is written.
    let printed = s.run(&["list", "--json"]).ok();
    let whole = serde_json::to_string_pretty(&printed.json()).unwrap() + "\n";
    assert_eq!(printed.stdout, whole);
    let found = s.run(&["list", "+44-1"]).ok();
    assert!(found.stdout.starts_with(&ada[..8]) && found.lines().len() == 1);

    let all = s.run(&["list", "--json"]).ok().json();
    let all = array(&all);
    assert_eq!(all.len(), 3);
    for c in all {
        for key in [
            "id",
            "phones",
            "emails",
            "addresses",
            "urls",
            "tags",
            "custom",
            "deleted",
            "conflicts",
        ] {
            assert!(c.get(key).is_some(), "{key} missing in {c}");
        }
        let id = text(&c["id"]);
        assert_eq!(c, &s.show(id), "list objects are show objects");
    }
}

// ---- history, log, op, heads, status, stats ----------------------------------------------------

#[test]
fn history_marks_writes_whose_time_cannot_be_right() {
    // A clock in 2099 writes the note; a clock a day behind then replaces the organisation
    // written at 09:00. Read at 09:00, both are marked; the first organisation is not.
    let s = Store::init();
    let id = s.add(&["--given", "Ada", "--org", "Now"]);
    s.at("2099-01-01T00:00:00Z", &["set", &id, "note=from 2099"])
        .ok();
    s.at("2026-11-21T09:00:00Z", &["set", &id, "org=a day behind"])
        .ok();
    let note = s.run(&["history", &id, "note"]).ok();
    assert!(
        note.stdout
            .contains("SUSPECT: stamped 26337 days ahead of this device's time"),
        "{}",
        note.stdout
    );
    // History lists by timestamp, so the write a day behind comes first.
    let org = s.run(&["history", &id, "org"]).ok();
    let lines = org.lines();
    assert!(!lines[2].contains("SUSPECT"), "{}", org.stdout);
    let first = text(
        &s.run(&["history", &id, "org", "--json"]).ok().json()["paths"][0]["versions"][1]["op"],
    )
    .to_owned();
    assert!(
        lines[1].ends_with(&format!(
            "SUSPECT: stamped 1 day before op {}, which it replaces",
            &first[..8]
        )),
        "{}",
        org.stdout
    );
    let j = s.run(&["history", &id, "--json"]).ok().json();
    let paths = array(&j["paths"]);
    let versions =
        |p: &str| array(&paths.iter().find(|x| x["path"] == json!(p)).unwrap()["versions"]).clone();
    let org = versions("org");
    assert_eq!(org[1]["suspect"], json!(null));
    assert_eq!(
        org[0]["suspect"],
        json!({"behind_ms": 86_400_000, "of": first})
    );
    assert!(versions("note")[0]["suspect"]["ahead_ms"].as_u64().unwrap() > 26_337 * 86_400_000);
    assert_eq!(versions("given")[0]["suspect"], json!(null));
}

#[test]
fn history_of_a_contact_a_field_and_an_item() {
    // Every value with device, time, op and what it replaced; one field; one item by prefix in
    // slash or dot form; unknown paths.
    let s = Store::init();
    let replica = s.replica();
    let id = s.add(&[
        "--given",
        "Ada",
        "--org",
        "Old",
        "--phone",
        "work=+1 555",
        "--tag",
        "t",
    ]);
    s.at(TEN, &["set", &id, "org=Middle value"]).ok();
    let phone = text(&s.show(&id)["phones"][0]["id"]).to_owned();
    s.at(
        ELEVEN,
        &["set", &id, "org=New", &format!("phone-={}", &phone[..8])],
    )
    .ok();

    // Read at 11:00: no write is ahead of the reader's clock (see
    // `history_marks_writes_whose_time_cannot_be_right` for reads that are).
    let whole = s.at(ELEVEN, &["history", &id]).ok();
    let headers: Vec<&str> = whole
        .lines()
        .into_iter()
        .filter(|l| !l.starts_with(' '))
        .collect();
    assert_eq!(
        headers,
        vec![
            "exists".to_owned(),
            "given".to_owned(),
            "org".to_owned(),
            format!("phone/{phone}"),
            "tag/t".to_owned()
        ]
    );

    let org = s.at(ELEVEN, &["history", &id[..8], "org"]).ok();
    let lines = org.lines();
    assert_eq!(lines.len(), 4, "{}", org.stdout);
    assert_eq!(lines[0], "org");
    assert!(lines[1].contains("Old") && lines[1].contains("2026-11-22T09:00:00.000Z"));
    assert!(lines[1].trim_end().ends_with("new"));
    assert!(lines[3].trim_start().starts_with('*') && lines[3].contains("New"));
    assert!(!lines[1].trim_start().starts_with('*') && !lines[2].trim_start().starts_with('*'));
    assert!(lines[2].contains(&format!("by {}", &replica[..8])));
    // The value column ends in one place.
    let replaces: BTreeSet<usize> = lines[1..].iter().map(|l| l.rfind("  ").unwrap()).collect();
    assert_eq!(replaces.len(), 1, "not aligned:\n{}", org.stdout);

    let j = s.at(ELEVEN, &["history", &id, "org", "--json"]).ok().json();
    assert_eq!(j["contact"], json!(id));
    let paths = array(&j["paths"]);
    assert_eq!(paths.len(), 1);
    assert_eq!(paths[0]["path"], json!("org"));
    let versions = array(&paths[0]["versions"]);
    let values: Vec<&Value> = versions.iter().map(|v| &v["value"]).collect();
    assert_eq!(
        values,
        [&json!("Old"), &json!("Middle value"), &json!("New")]
    );
    let heads: Vec<&Value> = versions.iter().map(|v| &v["head"]).collect();
    assert_eq!(heads, [&json!(false), &json!(false), &json!(true)]);
    let times: Vec<&str> = versions.iter().map(|v| text(&v["time"])).collect();
    assert_eq!(
        times,
        [
            "2026-11-22T09:00:00.000Z",
            "2026-11-22T10:00:00.000Z",
            "2026-11-22T11:00:00.000Z"
        ]
    );
    assert_eq!(versions[0]["replaces"], json!([]));
    assert_eq!(versions[1]["replaces"], json!([versions[0]["op"]]));
    assert_eq!(versions[2]["replaces"], json!([versions[1]["op"]]));
    for v in versions {
        assert_eq!(v["device"], json!(replica));
        assert!(is_hex(text(&v["op"]), 64));
        assert!(v["seq"].as_u64().unwrap() >= 1);
        assert!(v["hlc"].is_string());
    }

    for arg in [
        format!("phone/{}", &phone[..6]),
        format!("phone.{}", &phone[..6]),
    ] {
        let j = s.run(&["history", &id, &arg, "--json"]).ok().json();
        assert_eq!(j["paths"][0]["path"], json!(format!("phone/{phone}")));
        let versions = array(&j["paths"][0]["versions"]);
        assert_eq!(
            versions[0]["value"],
            json!({"label": "work", "value": "+1 555"})
        );
        assert_eq!(versions[1]["value"], json!(null), "a removal is null");
    }
    let j = s.run(&["history", &id, "tag/t", "--json"]).ok().json();
    assert_eq!(j["paths"][0]["versions"][0]["value"], json!(true));

    s.run(&["history", &id, "middle"])
        .fails(3)
        .says(&["no path middle"]);
    s.run(&["history", &id, "bogus"])
        .fails(2)
        .says(&["\"bogus\" is not a path"]);
    s.run(&["history", &id, "phone/zz"]).fails(2);
    let absent = absent_id(&[&phone]);
    s.run(&["history", &id, &format!("phone/{}", &absent[..6])])
        .fails(3);
    s.run(&["history", &absent_id(&[&id])]).fails(3);
}

/// A store with two contacts and four ops: add Ada, add Bob, set Ada, rm Bob.
fn four_ops() -> (Store, String, String) {
    let s = Store::init();
    let ada = s.add(&["--given", "Ada"]);
    let bob = s.at(TEN, &["add", "--given", "Bob"]).ok().stdout;
    let bob = bob.trim_end().to_owned();
    s.at(TEN, &["set", &ada, "org=Engines", "tag+=x"]).ok();
    s.at(ELEVEN, &["rm", &bob]).ok();
    (s, ada, bob)
}

fn seqs(s: &Store, args: &[&str]) -> Vec<u64> {
    let mut all = vec!["log", "--json"];
    all.extend_from_slice(args);
    array(&s.run(&all).ok().json())
        .iter()
        .map(|o| o["seq"].as_u64().unwrap())
        .collect()
}

#[test]
fn log_lists_ops_and_filters_them() {
    // The log in application order, human and JSON, filtered by author, contact and seq range.
    let (s, ada, bob) = four_ops();
    let replica = s.replica();
    let human = s.run(&["log"]).ok();
    let lines = human.lines();
    // The book's founding op, then the four saves.
    assert_eq!(lines.len(), 5);
    assert!(lines[0].contains("founds the address book"), "{}", lines[0]);
    for (n, line) in lines.iter().enumerate() {
        assert!(line.trim_start().starts_with(&format!("{n}  ")), "{line}");
        assert!(
            line.contains(&format!("{}#{}", &replica[..8], n + 1)),
            "{line}"
        );
    }
    let lines = &lines[1..];
    assert!(lines[2].contains("3 write(s)"), "{}", lines[2]);
    assert!(lines[2].contains("org") && lines[2].contains("tag/x"));
    assert!(lines[3].contains("2026-11-22T11:00:00.000Z"));

    let log = s.log();
    assert_eq!(log.len(), 4);
    for (n, op) in log.iter().enumerate() {
        // After the founding op (order 0, seq 1).
        assert_eq!(op["order"], json!(n + 1));
        assert_eq!(op["seq"], json!(n + 2));
        assert_eq!(op["author"], json!(replica));
        assert!(is_hex(text(&op["id"]), 64));
        assert!(op["bytes"].as_u64().unwrap() > 0);
        if n == 0 {
            assert!(is_hex(text(&op["prev"]), 64));
        } else {
            assert_eq!(op["prev"], log[n - 1]["id"]);
        }
    }
    let writes = array(&log[3]["writes"]);
    assert_eq!(
        writes,
        &vec![json!({"contact": bob, "path": "exists", "value": false,
                     "replaces": [log[1]["id"]]})]
    );

    // Seqs count the founding op (seq 1): the saves are 2 to 5.
    assert_eq!(seqs(&s, &["--contact", &bob[..8]]), [3, 5]);
    assert_eq!(seqs(&s, &["--contact", &ada, "--from", "3"]), [4]);
    assert_eq!(seqs(&s, &["--from", "3", "--to", "4"]), [3, 4]);
    assert_eq!(seqs(&s, &["--author", &replica[..6], "--from", "5"]), [5]);
    assert_eq!(seqs(&s, &["--author", &replica]), [1, 2, 3, 4, 5]);
    assert!(seqs(&s, &["--from", "6"]).is_empty());
    let filtered = s.run(&["log", "--contact", &bob]).ok();
    assert_eq!(filtered.lines().len(), 2);
    assert!(
        filtered.lines()[1].trim_start().starts_with("4  "),
        "order kept"
    );

    let absent = absent_id(&[&replica]);
    s.run(&["log", "--author", &absent[..6]])
        .fails(3)
        .says(&["no device"]);
    s.run(&["log", "--contact", &absent_id(&[&ada, &bob])])
        .fails(3);
    s.run(&["log", "--from", "two"]).fails(2).says(&["--from"]);
}

#[test]
fn op_decodes_one_op_by_prefix() {
    // op by prefix: human fields, JSON with id_ok, and the not-found / malformed cases.
    let (s, ada, _) = four_ops();
    let log = s.log();
    let id = text(&log[2]["id"]).to_owned();
    let human = s.run(&["op", &id[..10]]).ok();
    let lines = human.lines();
    assert_eq!(lines[0], format!("op      {id}"));
    assert_eq!(lines[1], "id      ok (hash of the bytes)");
    assert!(lines.contains(&"seq     4"), "the founding op is seq 1");
    assert!(lines.contains(&format!("prev    {}", text(&log[1]["id"])).as_str()));
    assert!(lines
        .iter()
        .any(|l| l.starts_with("time    2026-11-22T10:00:00.000Z  (hlc 1795341600000.")));
    assert!(human.stdout.contains("writes  3"), "{}", human.stdout);
    let write_lines: Vec<&&str> = lines
        .iter()
        .filter(|l| l.starts_with(&format!("  {}", &ada[..8])))
        .collect();
    assert_eq!(write_lines.len(), 3);
    let cols: BTreeSet<usize> = write_lines
        .iter()
        .map(|l| l.find("replaces").unwrap())
        .collect();
    assert_eq!(cols.len(), 1, "not aligned:\n{}", human.stdout);

    let j = s.run(&["op", &id[..10], "--json"]).ok().json();
    assert_eq!(j["id_ok"], json!(true));
    let mut expected = log[2].clone();
    let obj = expected.as_object_mut().unwrap();
    obj.remove("order");
    obj.insert("id_ok".into(), json!(true));
    assert_eq!(j, expected, "op --json is the log entry plus id_ok");
    let paths: Vec<&str> = array(&j["writes"])
        .iter()
        .map(|w| text(&w["path"]))
        .collect();
    assert_eq!(paths, ["exists", "org", "tag/x"]);

    let ids: Vec<&str> = log.iter().map(|o| text(&o["id"])).collect();
    s.run(&["op", &absent_id(&ids)]).fails(3).says(&["no op"]);
    s.run(&["op", "not-hex"]).fails(2);
}

#[test]
fn heads_status_and_stats_describe_the_store() {
    // heads: one chain head per author; status: counts; stats: ops and bytes per author. Both
    // forms of each agree with the log.
    let (s, _, _) = four_ops();
    let replica = s.replica();
    let log = s.log();
    let last = text(&log[3]["id"]);

    let heads = s.run(&["heads"]).ok();
    assert_eq!(heads.lines().len(), 1);
    let line = heads.lines()[0];
    assert!(
        line.starts_with(&replica) && line.ends_with("(this replica)"),
        "{line}"
    );
    // Seq 1 is the book's founding op; the four saves are 2 to 5.
    assert!(line.contains(last) && line.contains("seq 5"));
    let j = s.run(&["heads", "--json"]).ok().json();
    assert_eq!(
        j,
        json!([{"author": replica, "seq": 5, "op": last, "time": "2026-11-22T11:00:00.000Z"}])
    );

    let j = s.at(ELEVEN, &["status", "--json"]).ok().json();
    assert_eq!(j["replica"], json!(replica));
    assert_eq!(j["previous_replica"], json!(null));
    assert_eq!(j["store"], json!(s.dir.to_str().unwrap()));
    assert_eq!(j["ops"], json!(5), "the founding op and four saves");
    assert_eq!(j["authors"], json!(1));
    assert_eq!(j["contacts"], json!(1));
    assert_eq!(j["deleted"], json!(1));
    assert_eq!(j["conflicts"], json!(0));
    assert_eq!(j["skew"], json!([]));
    assert!(text(&j["clock"]).starts_with("1795345200000."));
    // Two hours earlier the log's last op is ahead of the clock, but it is this device's own:
    // skew reports name other devices only (the conflicts test covers a peer ahead).
    let j = s.at(NINE, &["status", "--json"]).ok().json();
    assert_eq!(j["skew"], json!([]));
    let human = s.at(NINE, &["status"]).ok();
    assert!(!human.stdout.contains("skew"), "{}", human.stdout);
    let human = s.at(ELEVEN, &["status"]).ok();
    for expected in [
        format!("replica    {replica}"),
        "ops        5".to_owned(),
        "contacts   1 (1 deleted)".to_owned(),
        "conflicts  0".to_owned(),
    ] {
        assert!(
            human.lines().contains(&expected.as_str()),
            "{}",
            human.stdout
        );
    }

    let j = s.run(&["stats", "--json"]).ok().json();
    // Every op, the founding one included.
    let every = array(&s.run(&["log", "--json"]).ok().json()).clone();
    let bytes: u64 = every.iter().map(|o| o["bytes"].as_u64().unwrap()).sum();
    assert_eq!(j["ops"], json!(5));
    assert_eq!(j["op_bytes"], json!(bytes));
    assert!(j["store_bytes"].as_u64().unwrap() > bytes);
    assert_eq!(j["authors"][0]["author"], json!(replica));
    assert_eq!(j["authors"][0]["ops"], json!(5));
    assert_eq!(j["authors"][0]["bytes"], json!(bytes));
    let writes: usize = log.iter().map(|o| array(&o["writes"]).len()).sum();
    assert_eq!(j["authors"][0]["writes"], json!(writes));
    let human = s.run(&["stats"]).ok();
    assert!(human.lines()[0].starts_with("author"));
    assert!(human.lines()[1].starts_with(&replica));
    assert!(human
        .stdout
        .contains(&format!("total ops 5, op bytes {bytes}, store on disk ")));
}

// ---- conflicts and resolve ---------------------------------------------------------------------

#[test]
fn conflicts_between_two_devices_are_shown_and_resolved() {
    // A copied store writes as a new device; both edit note and org while apart, B's op is
    // carried to A (through the library), and A shows both fields
    // conflicted, the later edit winning. resolve --keep, --value and --remove settle them.
    let a = Store::init();
    let id = a.add(&["--given", "Ada", "--note", "first", "--org", "Old"]);
    let a_id = a.replica();
    let b = Store::new();
    copy_dir(&a.dir, &b.dir);
    // The first open of the copy notices it and takes a new device id.
    let status = b.run(&["status"]).ok();
    assert!(
        status.stdout.contains(&format!(
            "(this store was copied or restored; it wrote as {a_id} before)"
        )),
        "{}",
        status.stdout
    );
    let b_id = b.replica();
    assert_ne!(b_id, a_id);
    // A new device of the book: it writes once the original adds it.
    b.at(TEN, &["set", &id, "note=too early"])
        .fails(2)
        .says(&["not a member"]);
    a.run(&["members", "add", &b_id, "--name", "the copy"]).ok();
    assert_eq!(carry(&a.dir, &b.dir), 1);
    let c = Store::new();
    copy_dir(&a.dir, &c.dir);
    let status = c.run(&["status", "--json"]).ok().json();
    assert_eq!(status["previous_replica"], json!(a_id));
    assert_ne!(status["replica"], json!(a_id));
    b.at(TEN, &["set", &id, "note=from B", "org=B Org"]).ok();
    a.at(ELEVEN, &["set", &id, "note=from A", "org=A Org"]).ok();
    assert_eq!(carry(&b.dir, &a.dir), 1);

    // Seen from 09:00, device B's last op (10:00) is beyond the 5-minute bound; A's own (11:00)
    // is not reported.
    let j = a.at(NINE, &["status", "--json"]).ok().json();
    assert_eq!(j["skew"], json!([{"author": b_id, "ahead_ms": 3_600_000}]));
    let human = a.at(NINE, &["status"]).ok();
    assert!(human.stdout.contains(&format!(
        "skew       device {} writes 3600s ahead of this clock (bound 300s)",
        &b_id[..8]
    )));

    let j = a.run(&["conflicts", "--json"]).ok().json();
    let conflicts = array(&j);
    assert_eq!(conflicts.len(), 2, "{j}");
    let note = conflicts
        .iter()
        .find(|c| c["path"] == json!("note"))
        .unwrap();
    assert_eq!(note["contact"], json!(id));
    let values = array(&note["values"]);
    assert_eq!(values.len(), 2);
    assert_eq!(
        values[0]["value"],
        json!("from A"),
        "the later edit is shown"
    );
    assert_eq!(values[0]["device"], json!(a_id));
    assert_eq!(values[0]["time"], json!("2026-11-22T11:00:00.000Z"));
    assert_eq!(values[1]["value"], json!("from B"));
    assert_eq!(values[1]["device"], json!(b_id));
    assert_eq!(values[1]["time"], json!("2026-11-22T10:00:00.000Z"));
    assert_eq!(
        values[0]["replaces"], values[1]["replaces"],
        "both replaced one write"
    );
    let b_op = text(&values[1]["op"]).to_owned();
    assert!(is_hex(&b_op, 64));
    assert!(conflicts.iter().any(|c| c["path"] == json!("org")));
    // Seen from 09:00 both writes are stamped ahead of this clock: marked suspect. From 11:00
    // neither is.
    assert_eq!(values[0]["suspect"], json!({"ahead_ms": 7_200_000}));
    assert_eq!(values[1]["suspect"], json!({"ahead_ms": 3_600_000}));
    let later = a.at(ELEVEN, &["conflicts", "--json"]).ok().json();
    for conflict in array(&later) {
        for v in array(&conflict["values"]) {
            assert_eq!(v["suspect"], json!(null), "{later}");
        }
    }
    assert!(!a.at(ELEVEN, &["conflicts"]).ok().stdout.contains("SUSPECT"));

    let human = a.run(&["conflicts"]).ok();
    assert!(human
        .stdout
        .contains("SUSPECT: stamped 2 h ahead of this device's time"));
    assert!(human.lines()[0].starts_with(&format!("{}  Ada", &id[..8])));
    assert!(human.stdout.contains("conflict on note:"));
    assert!(human.stdout.contains("conflict on org:"));
    let shown = human
        .lines()
        .into_iter()
        .find(|l| l.contains("from A"))
        .unwrap();
    assert!(shown.trim_start().starts_with("shown") && shown.contains(&a_id[..8]));
    let also = human
        .lines()
        .into_iter()
        .find(|l| l.contains("from B"))
        .unwrap();
    assert!(also.trim_start().starts_with("also") && also.contains(&b_op[..8]));

    let c = a.show(&id);
    assert_eq!(c["note"], json!("from A"));
    assert_eq!(c["org"], json!("A Org"));
    assert_eq!(array(&c["conflicts"]).len(), 2);
    assert_eq!(
        c["conflicts"][0]["values"][0]["device"]
            .as_str()
            .map(str::len),
        Some(32)
    );
    assert!(a
        .run(&["show", &id])
        .ok()
        .stdout
        .contains("conflict on note:"));
    assert!(a.run(&["list"]).ok().stdout.contains("[2 conflict(s)]"));
    let status = a.run(&["status", "--json"]).ok().json();
    assert_eq!(status["conflicts"], json!(2));
    assert_eq!(status["authors"], json!(2));
    let heads: BTreeSet<String> = array(&a.run(&["heads", "--json"]).ok().json())
        .iter()
        .map(|h| text(&h["author"]).to_owned())
        .collect();
    assert_eq!(heads, BTreeSet::from([a_id.clone(), b_id.clone()]));
    assert_eq!(seqs(&a, &["--author", &b_id[..8]]), [1]);
    // a: the founding op, its save, the op adding b, its edit.
    assert_eq!(seqs(&a, &["--author", &a_id[..8]]), [1, 2, 3, 4]);
    let history = a.run(&["history", &id, "note", "--json"]).ok().json();
    let heads = array(&history["paths"][0]["versions"])
        .iter()
        .filter(|v| v["head"] == json!(true))
        .count();
    assert_eq!(heads, 2);
    a.run(&["verify"]).ok();

    // Wrong uses of resolve change nothing.
    let ops = a.log().len();
    a.run(&["resolve", &id, "note"])
        .fails(2)
        .says(&["--keep", "--value", "--remove"]);
    let not_competing = absent_id(&[text(&values[0]["op"]), &b_op]);
    a.run(&["resolve", &id, "note", "--keep", &not_competing[..8]])
        .fails(3)
        .says(&["cardlog conflicts"]);
    a.run(&["resolve", &id, "note", "--keep", &b_op[..8], "--value", "x"])
        .fails(2);
    a.run(&["resolve", &id, "middle", "--value", "x"]).fails(3);
    a.run(&["resolve", &absent_id(&[&id]), "note", "--remove"])
        .fails(3);
    assert_eq!(a.log().len(), ops);

    let run = a
        .at(ELEVEN, &["resolve", &id[..8], "note", "--keep", &b_op[..8]])
        .ok();
    assert!(run
        .stdout
        .starts_with(&format!("resolved note of {} (op ", &id[..8])));
    let c = a.show(&id);
    assert_eq!(c["note"], json!("from B"));
    assert_eq!(array(&c["conflicts"]).len(), 1);
    assert_eq!(c["conflicts"][0]["path"], json!("org"));

    let j = a
        .at(
            ELEVEN,
            &["resolve", &id, "org", "--value", "Settled", "--json"],
        )
        .ok()
        .json();
    assert_eq!(j["contact"], json!(id));
    assert_eq!(j["path"], json!("org"));
    assert!(is_hex(text(&j["op"]), 64));
    assert_eq!(a.show(&id)["org"], json!("Settled"));
    assert_eq!(a.run(&["conflicts", "--json"]).ok().json(), json!([]));
    assert_eq!(a.run(&["conflicts"]).ok().stdout, "no conflicts\n");

    a.at(ELEVEN, &["resolve", &id, "note", "--remove"]).ok();
    assert!(a.show(&id).get("note").is_none());
    assert_eq!(a.log().len(), ops + 3);
    a.run(&["verify"]).ok();
}

// ---- verify, rebuild, damage ----------------------------------------------------------------

/// Removes the first key with this prefix from the store's sled database.
fn remove_first_key(store: &Path, prefix: &[u8]) {
    let kv = SledKv::open(&store.join("db"), 1 << 20).unwrap();
    let (key, _) = kv.scan_prefix(prefix).next().unwrap().unwrap();
    let mut batch = KvBatch::default();
    batch.remove(key);
    kv.apply(batch).unwrap();
    kv.flush().unwrap();
}

#[test]
fn verify_finds_damage_and_rebuild_repairs_it() {
    // verify exits 0 on a sound store and 4 once a register is deleted behind its back; rebuild
    // rewrites the state from the log and verify passes again.
    let (s, ada, _) = four_ops();
    let run = s.run(&["verify"]).ok();
    assert!(
        run.stdout
            .starts_with("ok: 5 ops from 1 device(s) re-hashed"),
        "{}",
        run.stdout
    );
    let j = s.run(&["verify", "--json"]).ok().json();
    assert_eq!(j["ok"], json!(true));
    assert_eq!(j["ops"], json!(5));
    assert_eq!(j["authors"], json!(1));
    assert_eq!(j["problems"], json!([]));
    assert!(j["registers"].as_u64().unwrap() > 0);

    remove_first_key(&s.dir, b"c");
    let run = s
        .run(&["verify"])
        .fails(4)
        .says(&["not intact", "cardlog rebuild"]);
    assert!(run.stdout.is_empty());
    let run = s.run(&["verify", "--json"]).fails(4);
    let j = run.json();
    assert_eq!(j["ok"], json!(false));
    assert!(!array(&j["problems"]).is_empty());

    let run = s.run(&["rebuild"]).ok();
    assert_eq!(run.stdout, "rebuilt the state from 5 ops\n");
    s.run(&["verify"]).ok();
    assert_eq!(s.run(&["rebuild", "--json"]).ok().json(), json!({"ops": 5}));
    assert_eq!(s.show(&ada)["org"], json!("Engines"));
}

#[test]
fn a_store_whose_database_is_damaged_is_read_from_its_log_and_repaired() {
    // Without its device id the database cannot open: read commands read the op log alone and
    // say so (pointing at repair), writes and verify exit 4, and `repair` builds a new
    // database that keeps the device id; then everything works as before.
    let (s, ada, _) = four_ops();
    let replica = s.replica();
    let before = s.run(&["list", "--deleted"]).ok().stdout;
    remove_first_key(&s.dir, cardlog_store::keys::meta::REPLICA);
    for args in [&["list", "--deleted"][..], &["status"], &["show", &ada]] {
        let run = s.run(args).ok();
        assert!(
            run.stderr.contains("read from the op log alone")
                && run.stderr.contains("cardlog repair"),
            "{args:?}: {}",
            run.stderr
        );
    }
    assert_eq!(s.run(&["list", "--deleted"]).ok().stdout, before);
    s.run(&["add", "--given", "Cy"]).fails(4).says(&["damaged"]);
    s.run(&["verify"]).fails(4).says(&["damaged"]);

    let run = s.run(&["repair"]).ok();
    assert!(
        run.stdout.starts_with("repaired: 5 ops replayed"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout.contains("the old database is kept at"),
        "{}",
        run.stdout
    );
    let run = s.run(&["list", "--deleted"]).ok();
    assert_eq!(run.stdout, before);
    assert!(run.stderr.is_empty(), "{}", run.stderr);
    assert_eq!(s.replica(), replica, "repair kept the device id");
    s.run(&["verify"]).ok();
    s.run(&["set", &ada, "title=Countess"]).ok();
    let j = s.run(&["repair", "--json"]).ok().json();
    assert_eq!(j["ops"], json!(6));
    assert_eq!(j["problems"], json!([]));
    assert_eq!(j["log_damage"], Value::Null);
    assert!(j["set_aside"].as_str().unwrap().contains("db.damaged-2"));
}

#[test]
fn compact_keeps_a_database_its_copy_would_not_shrink_and_the_store_reads_the_same() {
    // A store of four ops: its copy saves less than a sixteenth, so the database is kept
    // (the library's tests compact databases that shrink).
    let (s, ada, _) = four_ops();
    let list = s.run(&["list", "--deleted"]).ok().stdout;
    let replica = s.replica();
    let run = s.run(&["compact"]).ok();
    assert!(
        run.stdout
            .starts_with("the database is compact already: a copy took ")
            && run.stdout.contains("op log is unchanged"),
        "{}",
        run.stdout
    );
    assert_eq!(s.run(&["list", "--deleted"]).ok().stdout, list);
    assert_eq!(s.replica(), replica, "compact kept the device id");
    s.run(&["verify"]).ok();
    s.run(&["set", &ada, "title=Countess"]).ok();
    let j = s.run(&["compact", "--json"]).ok().json();
    assert!(j["pairs"].as_u64().unwrap() > 4, "{j}");
    assert_eq!(j["journal"], json!(false));
    assert_eq!(j["kept"], json!(true));
    assert!(j["copy_bytes"].as_u64().unwrap() > 0, "{j}");
    s.run(&["--read-only", "compact"])
        .fails(2)
        .says(&["read-only"]);
    s.run(&["show", &ada]).ok().has_line(&["Countess"]);
}

#[test]
fn compact_swaps_in_a_smaller_database_and_the_store_reads_the_same() {
    // 2,000 cards imported, then each changed by a second import of the same UIDs: the
    // database keeps the values the second import replaced, so its copy is smaller and
    // takes its place (the test above keeps one that is not).
    let s = Store::init();
    let cards = |note: &str| -> String {
        (0..2000)
            .map(|i| {
                format!(
                    "BEGIN:VCARD\r\nVERSION:4.0\r\nUID:urn:uuid:compact-{i}\r\nFN:Person {i}\r\n\
                     N:{i};Person;;;\r\nNOTE:{note} {i}\r\nEND:VCARD\r\n"
                )
            })
            .collect()
    };
    let vcf = s.dir.with_extension("vcf");
    for note in ["first", "second, a longer note than the first"] {
        std::fs::write(&vcf, cards(note)).unwrap();
        s.run(&["vcard", "import", "--bulk", vcf.to_str().unwrap()])
            .ok();
    }
    let list = s.run(&["list"]).ok().stdout;
    let replica = s.replica();
    let run = s.run(&["compact"]).ok();
    // "compacted: database A -> B bytes (N pairs, K bytes of keys and values); ..."
    let sizes: Vec<u64> = run
        .stdout
        .strip_prefix("compacted: database ")
        .and_then(|rest| rest.split(" bytes").next())
        .map(|ab| ab.split(" -> ").map(|n| n.parse().unwrap()).collect())
        .unwrap_or_else(|| panic!("{}", run.stdout));
    let (before, after) = (sizes[0], sizes[1]);
    assert!(after <= before - before / 16, "{before} -> {after}");
    assert!(
        run.stdout.contains("the op log is unchanged"),
        "{}",
        run.stdout
    );
    assert_eq!(s.run(&["list"]).ok().stdout, list);
    assert_eq!(s.replica(), replica, "compact kept the device id");
    s.run(&["verify"]).ok();
    // Compacted just now, it is kept as it is the next time.
    let j = s.run(&["compact", "--json"]).ok().json();
    assert_eq!(j["kept"], json!(true), "{j}");
}

#[test]
fn read_only_writes_nothing_and_refuses_writes() {
    let (s, ada, _) = four_ops();
    let list = s.run(&["list"]).ok().stdout;
    // Every file's bytes and modification time, before and after the read-only runs.
    let files = |dir: &Path| -> Vec<(PathBuf, Vec<u8>, std::time::SystemTime)> {
        let mut out = Vec::new();
        let mut todo = vec![dir.to_owned()];
        while let Some(d) = todo.pop() {
            for entry in std::fs::read_dir(&d).unwrap() {
                let path = entry.unwrap().path();
                let meta = std::fs::metadata(&path).unwrap();
                if meta.is_dir() {
                    todo.push(path);
                } else {
                    out.push((
                        path.clone(),
                        std::fs::read(&path).unwrap(),
                        meta.modified().unwrap(),
                    ));
                }
            }
        }
        out.sort();
        out
    };
    let before = files(&s.dir);
    let run = s.run(&["--read-only", "list"]).ok();
    assert_eq!(run.stdout, list);
    assert!(run.stderr.is_empty(), "{}", run.stderr);
    s.run(&["--read-only", "vcard", "export"])
        .ok()
        .has_line(&["FN:Ada"]);
    s.run(&["--read-only", "set", &ada, "title=x"])
        .fails(1)
        .says(&["read-only"]);
    s.run(&["--read-only", "repair"]).fails(2);
    assert!(files(&s.dir) == before, "a --read-only run changed a file");
}

// ---- store selection, clock, errors ---------------------------------------------------------

#[test]
fn a_missing_store_says_to_run_init() {
    // Every command on a directory that does not exist: exit 3, a hint at `cardlog init`, and
    // nothing created.
    let s = Store::new();
    let commands: [&[&str]; 16] = [
        &["add", "--given", "Ada"],
        &["set", "ab", "given=x"],
        &["rm", "ab"],
        &["restore", "ab"],
        &["show", "ab"],
        &["list"],
        &["history", "ab"],
        &["log"],
        &["op", "ab"],
        &["heads"],
        &["status"],
        &["conflicts"],
        &["resolve", "ab", "note", "--remove"],
        &["verify"],
        &["rebuild"],
        &["stats"],
    ];
    for args in commands {
        s.run(args)
            .fails(3)
            .says(&["no cardlog store", "cardlog init"]);
    }
    assert!(!s.dir.exists());
}

#[test]
fn a_directory_that_is_not_a_store_is_left_alone() {
    // A directory with other files: commands refuse it (exit 3), init refuses it (exit 2), and
    // its contents are unchanged.
    let s = Store::new();
    std::fs::create_dir_all(&s.dir).unwrap();
    std::fs::write(s.dir.join("notes.txt"), "mine").unwrap();
    s.run(&["list"])
        .fails(3)
        .says(&["is not a cardlog store", "cardlog init"]);
    s.run(&["status", "--json"]).fails(3);
    s.run(&["init"]).fails(2).says(&["not empty"]);
    let names: Vec<_> = std::fs::read_dir(&s.dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, ["notes.txt"]);
}

#[test]
fn cardlog_now_sets_the_clock_and_a_bad_one_is_refused() {
    // Saves are stamped with CARDLOG_NOW; a value that is not RFC 3339 is exit 2, naming it.
    let s = Store::new();
    // init writes the book's founding op: at the same time, so the first save is not after it.
    s.at("2001-02-03T04:05:06Z", &["init"]).ok();
    let id = s
        .at("2001-02-03T04:05:06Z", &["add", "--given", "Ada"])
        .ok();
    let id = id.stdout.trim_end();
    assert_eq!(s.show(id)["created"], json!("2001-02-03T04:05:06.000Z"));
    assert_eq!(s.log()[0]["time"], json!("2001-02-03T04:05:06.000Z"));
    // A zone offset is applied, not ignored.
    let id = s
        .at("2026-11-22T10:00:00.25+01:00", &["add", "--given", "Bob"])
        .ok();
    let created = &s.show(id.stdout.trim_end())["created"];
    assert_eq!(created, &json!("2026-11-22T09:00:00.250Z"));
    for bad in [
        "yesterday",
        "2026-13-45T00:00:00Z",
        "2026-11-22T09:00:00",
        "2026-11-22T09:00:00+25:00",
        "1969-12-31T23:00:00Z",
        "",
    ] {
        s.at(bad, &["list"])
            .fails(2)
            .says(&["CARDLOG_NOW", "RFC 3339"]);
    }
    s.at("yesterday", &["add", "--given", "Carol"]).fails(2);
    assert_eq!(s.log().len(), 2);
}

#[test]
fn the_store_comes_from_the_flag_then_the_environment_then_the_data_dir() {
    // --store wins over CARDLOG_STORE, which wins over the user's data directory.
    let tmp = tempfile::tempdir().unwrap();
    let from_env = tmp.path().join("env-store");
    let from_flag = tmp.path().join("flag-store");
    let env = [
        ("CARDLOG_STORE", from_env.as_os_str()),
        ("CARDLOG_NOW", OsStr::new(NINE)),
    ];
    cardlog(&["init"], &env).ok();
    assert!(from_env.join("db").exists());
    let j = cardlog(&["status", "--json"], &env).ok().json();
    assert_eq!(j["store"], json!(from_env.to_str().unwrap()));
    cardlog(
        &[
            OsStr::new("--store"),
            from_flag.as_os_str(),
            OsStr::new("status"),
        ],
        &env,
    )
    .fails(3)
    .says(&[from_flag.to_str().unwrap()]);

    if cfg!(target_os = "linux") {
        let data = tmp.path().join("data");
        let home = tmp.path().join("home");
        // An empty CARDLOG_STORE counts as unset.
        let env = [
            ("XDG_DATA_HOME", data.as_os_str()),
            ("HOME", home.as_os_str()),
            ("CARDLOG_NOW", OsStr::new(NINE)),
            ("CARDLOG_STORE", OsStr::new("")),
        ];
        cardlog(&["list"], &env)
            .fails(3)
            .says(&[data.join("cardlog").to_str().unwrap()]);
        cardlog(&["init"], &env).ok();
        let j = cardlog(&["status", "--json"], &env).ok().json();
        assert_eq!(j["store"], json!(data.join("cardlog").to_str().unwrap()));
    }
}

#[test]
fn usage_errors_are_one_line_with_exit_2() {
    // clap's errors are condensed to one line with the usage; nothing is created.
    let s = Store::new();
    s.run(&["addd"])
        .fails(2)
        .says(&["addd", "'add'", "usage: cardlog"]);
    s.run(&["set"])
        .fails(2)
        .says(&["<ID>", "usage: cardlog set"]);
    s.run(&["add", "--bogus"]).fails(2).says(&["--bogus"]);
    s.run(&["log", "--to", "ten"]).fails(2).says(&["--to"]);
    s.run(&["resolve", "ab", "note", "--keep", "cd", "--remove"])
        .fails(2)
        .says(&["--keep"]);
    assert!(!s.dir.exists());
    let bare = cardlog::<&str>(&[], &[]);
    assert_eq!(bare.code, 2);
    assert!(bare.stderr.contains("Usage: cardlog"), "{}", bare.stderr);
}

#[test]
fn help_explains_every_command() {
    // cardlog --help lists every command and the environment; each command's --help exits 0
    // with its own usage and a description.
    let top = cardlog(&["--help"], &[]).ok();
    for sub in SUBCOMMANDS {
        assert!(
            top.lines()
                .iter()
                .any(|l| l.trim_start().starts_with(&format!("{sub} "))),
            "{sub} missing from --help"
        );
    }
    for needle in [
        "CARDLOG_STORE",
        "CARDLOG_NOW",
        "Exit codes",
        "--store",
        "--json",
    ] {
        assert!(top.stdout.contains(needle), "--help lacks {needle}");
    }
    for sub in SUBCOMMANDS {
        let run = cardlog(&[sub, "--help"], &[]).ok();
        assert!(
            run.stdout.contains(&format!("Usage: cardlog {sub}")),
            "{sub} --help: {}",
            run.stdout
        );
        assert!(run.lines()[0].len() > 10, "{sub} has no description");
    }
    // `summary` was called `heads`: the old name is listed as an alias and still runs it.
    assert!(top.stdout.contains("[alias: heads]"), "{}", top.stdout);
    let old = cardlog(&["heads", "--help"], &[]).ok();
    assert!(
        old.stdout.contains("Usage: cardlog summary"),
        "{}",
        old.stdout
    );
    let set = cardlog(&["help", "set"], &[]).ok();
    for form in [
        "FIELD=VALUE",
        "KIND+=[LABEL=]VALUE",
        "KIND-=ITEM",
        "tag+=T",
        "custom.NAME",
    ] {
        assert!(set.stdout.contains(form), "set help lacks {form}");
    }
    cardlog(&["--version"], &[]).ok();
}

// ---- demo, pipes, odd data --------------------------------------------------------------------

#[test]
fn demo_runs_the_seed_scenario() {
    // The demo runs in its own temporary stores (the --store given is not touched) and reports
    // that the two replicas converged byte for byte.
    let s = Store::new();
    let run = s.run(&["demo"]).ok();
    assert!(
        run.stdout.contains("states byte-identical: yes"),
        "{}",
        run.stdout
    );
    assert!(run.stdout.contains("conflict on note:"));
    assert!(run.stdout.contains("both replicas verify"));
    assert!(!s.dir.exists());
}

#[test]
fn a_closed_stdout_ends_quietly() {
    // A reader that stops early (`cardlog show | head`) ends the command with exit 0 and no
    // panic message, even when the output is larger than the pipe.
    let s = Store::init();
    let big = "x".repeat(100_000);
    let custom: Vec<String> = (0..3).map(|n| format!("X-BIG{n}={big}")).collect();
    let id = s.add(&[
        "--given", "Big", "--custom", &custom[0], "--custom", &custom[1], "--custom", &custom[2],
    ]);
    let mut child = Command::new(env!("CARGO_BIN_EXE_cardlog"))
        .args([OsStr::new("--store"), s.dir.as_os_str()])
        .args(["show", &id])
        .env("CARDLOG_NOW", NINE)
        .env("RUST_BACKTRACE", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let mut head = [0u8; 32];
    stdout.read_exact(&mut head).unwrap();
    assert!(String::from_utf8_lossy(&head).starts_with(&id));
    drop(stdout);
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    let status = child.wait().unwrap();
    assert_eq!(stderr, "");
    assert_eq!(status.code(), Some(0));
}

#[test]
fn times_past_year_9999_print_without_a_panic() {
    // An op stamped far in the future (a peer with a broken clock) prints its time as raw
    // milliseconds instead of crashing the formatter.
    let s = Store::new();
    let future_ms = 600_000_000_000_000; // about the year 20983
    {
        let options = Options {
            wall: Arc::new(FakeClock::new(future_ms)),
            ..Options::default()
        };
        let mut r = Replica::create_with(&s.dir, options).unwrap();
        let mut c = Contact::random().unwrap();
        c.set(Field::Given, "Future");
        r.add_contact(&c).unwrap();
    }
    let raw = format!("+{future_ms}ms");
    let log = s.log();
    assert_eq!(log[0]["time"], json!(raw));
    let id = text(&log[0]["writes"][0]["contact"]).to_owned();
    for args in [
        &["log"][..],
        &["op", text(&log[0]["id"])],
        &["heads"],
        &["show", &id, "--json"],
        &["history", &id],
    ] {
        let run = s.run(args).ok();
        assert!(run.stdout.contains(&raw), "{args:?}: {}", run.stdout);
    }
    s.run(&["status"]).ok();
}

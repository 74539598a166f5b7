//! Runs the real `cardlog vcard import` and `cardlog vcard export` on the vCard fixtures of
//! cardlog-vcard and on broken input, checking stdout, stderr and exit codes: a file imports,
//! imports again without change, exports and imports into a second store as the same contacts;
//! rejected cards are listed with their line and give exit 2 after the rest is imported.
#![allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    clippy::panic,
    clippy::expect_used
)]

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::Command;

mod common;
use common::{arg_strings, finished, Run};

const NINE: &str = "2026-11-22T09:00:00Z";

fn cardlog<S: AsRef<OsStr>>(store: &Path, args: &[S]) -> Run {
    let out = Command::new(env!("CARGO_BIN_EXE_cardlog"))
        .arg("--store")
        .arg(store)
        .args(args)
        .env_remove("CARDLOG_STORE")
        .env("CARDLOG_NOW", NINE)
        .output()
        .unwrap();
    let run = finished(arg_strings(args), out);
    run.assert_no_panic();
    run
}

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../cardlog-vcard/tests/fixtures")
        .join(name)
}

fn store(tmp: &tempfile::TempDir, name: &str) -> PathBuf {
    let dir = tmp.path().join(name);
    cardlog(&dir, &["init"]).ok();
    dir
}

#[test]
fn import_reimport_export_and_import_elsewhere() {
    let tmp = tempfile::tempdir().unwrap();
    let first = store(&tmp, "first");
    let file = fixture("040.vcf");
    let run = cardlog(
        &first,
        &[OsStr::new("vcard"), OsStr::new("import"), file.as_os_str()],
    )
    .ok();
    assert!(
        run.stdout.starts_with("read 1 card(s) from ")
            && run
                .stdout
                .contains(": 1 created, 0 updated, 0 unchanged, 0 skipped, 0 rejected; "),
        "{}",
        run.stdout
    );
    let listed = cardlog(&first, &["list"]).ok();
    assert!(listed.stdout.contains("VCard Test"), "{}", listed.stdout);

    // Again: nothing changes, and --json says so per card.
    let again = cardlog(
        &first,
        &[
            OsStr::new("vcard"),
            OsStr::new("import"),
            file.as_os_str(),
            OsStr::new("--json"),
        ],
    )
    .ok()
    .json();
    assert_eq!(again["cards"], 1);
    assert_eq!(again["unchanged"], 1);
    assert_eq!(again["contacts"][0]["outcome"], "unchanged");
    assert_eq!(again["contacts"][0]["line"], 1);
    assert!(again["kept"].as_u64().unwrap() > 10);

    // Export to a file, import it into another store: the same contacts.
    let out = tmp.path().join("out.vcf");
    let done = cardlog(
        &first,
        &[
            OsStr::new("vcard"),
            OsStr::new("export"),
            OsStr::new("--out"),
            out.as_os_str(),
        ],
    )
    .ok();
    assert!(
        done.stdout.starts_with("exported 1 contact(s) to "),
        "{}",
        done.stdout
    );
    let second = store(&tmp, "second");
    cardlog(
        &second,
        &[OsStr::new("vcard"), OsStr::new("import"), out.as_os_str()],
    )
    .ok();
    let a = cardlog(&first, &["list", "--json"]).ok().json();
    let b = cardlog(&second, &["list", "--json"]).ok().json();
    assert_eq!(a, b);

    // To stdout, in 3.0, by id prefix.
    let id = a[0]["id"].as_str().unwrap();
    let v3 = cardlog(&first, &["vcard", "export", "--version", "3", &id[..8]]).ok();
    assert!(
        v3.stdout.starts_with("BEGIN:VCARD\r\nVERSION:3.0\r\n"),
        "{}",
        v3.stdout
    );
    assert!(v3.stdout.contains("X-SKYPE:IM5\r\n"));
    assert_eq!(
        cardlog(&first, &["vcard", "export"]).ok().stdout,
        std::fs::read_to_string(&out).unwrap()
    );
}

#[test]
fn rejected_cards_are_listed_and_exit_2_after_the_rest_is_imported() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = store(&tmp, "s");
    let file = tmp.path().join("broken.vcf");
    std::fs::write(
        &file,
        b"BEGIN:VCARD\nN:Lost;Half;;;\nBEGIN:VCARD\nN:Kept;Whole;;;\nEND:VCARD\nBEGIN:VCARD\nN:M\xfcller\nEND:VCARD\n",
    )
    .unwrap();
    let run = cardlog(
        &dir,
        &[OsStr::new("vcard"), OsStr::new("import"), file.as_os_str()],
    )
    .fails(2);
    assert!(
        run.stderr.contains("2 of 3 card(s) rejected"),
        "{}",
        run.stderr
    );
    assert!(run
        .stdout
        .contains("rejected: line 1: no END:VCARD before the next BEGIN:VCARD at line 3\n"));
    assert!(run.stdout.contains(
        "rejected: line 6: line 7 is not UTF-8 and no CHARSET parameter says what it is\n"
    ));
    let listed = cardlog(&dir, &["list"]).ok();
    assert_eq!(listed.stdout.lines().count(), 1);
    assert!(listed.stdout.contains("Whole Kept"));

    let json = cardlog(
        &dir,
        &[
            OsStr::new("vcard"),
            OsStr::new("import"),
            file.as_os_str(),
            OsStr::new("--json"),
        ],
    )
    .fails(2)
    .json();
    assert_eq!(json["rejected"][0]["line"], 1);
    assert_eq!(json["unchanged"], 1);
}

#[test]
fn bad_arguments_and_missing_things() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = store(&tmp, "s");
    let missing = cardlog(&dir, &["vcard", "import", "/nonexistent/contacts.vcf"]).fails(1);
    assert!(missing
        .stderr
        .contains("cannot read /nonexistent/contacts.vcf"));
    cardlog(&dir, &["vcard", "export", "--version", "5"]).fails(2);
    cardlog(&dir, &["vcard", "export", "0123abcd"]).fails(3);
    assert_eq!(cardlog(&dir, &["vcard", "export"]).ok().stdout, "");
    let none = tmp.path().join("none");
    cardlog(&none, &["vcard", "export"]).fails(3);
}

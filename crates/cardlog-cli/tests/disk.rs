//! A store on a full disk and on a read-only mount, for real: a small tmpfs is mounted, filled
//! and remounted read-only, and the read commands must still list and export every contact
//! (sled cannot even open there: it writes at every open). Mounting needs root (or the
//! capability); where it is refused the test says so and does nothing.
#![allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    clippy::panic,
    clippy::expect_used
)]

use std::ffi::OsStr;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

mod common;
use common::{arg_strings, finished, Run};

/// A tmpfs mounted for the test, unmounted when dropped.
struct Tmpfs {
    _tmp: tempfile::TempDir,
    dir: PathBuf,
}

impl Tmpfs {
    /// Mounts a tmpfs of `size` (as `mount` reads it: "8m"), or `None` where mounting is refused.
    fn mount(size: &str) -> Option<Tmpfs> {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("mnt");
        std::fs::create_dir(&dir).unwrap();
        let mounted = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(&dir)
            .output()
            .is_ok_and(|o| o.status.success());
        mounted.then_some(Tmpfs { _tmp: tmp, dir })
    }

    fn remount_read_only(&self) {
        let out = Command::new("mount")
            .args(["-o", "remount,ro"])
            .arg(&self.dir)
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.dir).output();
    }
}

fn cardlog<S: AsRef<OsStr>>(store: &Path, args: &[S]) -> Run {
    let out = Command::new(env!("CARGO_BIN_EXE_cardlog"))
        .args(args)
        .env("CARDLOG_STORE", store)
        .env("CARDLOG_NOW", "2026-11-22T09:00:00Z")
        .env("RUST_BACKTRACE", "1")
        .output()
        .expect("the cardlog binary runs");
    finished(arg_strings(args), out)
}

/// Writes zeros to `path` until the file system is full.
fn fill(path: &Path) {
    let mut file = std::fs::File::create(path).unwrap();
    let chunk = vec![0u8; 64 << 10];
    loop {
        match file.write_all(&chunk) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::StorageFull => break,
            Err(e) => panic!("filling the disk: {e}"),
        }
    }
    // Whatever the last partial chunk left.
    while file.write_all(&[0u8; 512]).is_ok() {}
}

#[test]
fn read_commands_work_on_a_full_disk_and_a_read_only_mount() {
    let Some(disk) = Tmpfs::mount("16m") else {
        eprintln!("skipped: mounting a tmpfs was refused (not root)");
        return;
    };
    let store = disk.dir.join("store");
    cardlog(&store, &["init"]).ok();
    for name in ["Ada", "Bob", "Cy"] {
        cardlog(&store, &["add", "--given", name, "--family", "Example"]).ok();
    }
    let listed = cardlog(&store, &["list"]).ok().stdout;
    assert_eq!(listed.lines().count(), 3);

    let filler = disk.dir.join("filler");
    fill(&filler);
    let run = cardlog(&store, &["list"]).ok();
    assert_eq!(run.stdout, listed);
    // Whether sled's open finds the bytes it writes depends on what the file system had left
    // (the fill ends at its block granularity): where it does not, the note says so.
    assert!(
        run.stderr.is_empty()
            || (run.stderr.contains("read from the op log alone")
                && !run.stderr.contains("repair")),
        "{}",
        run.stderr
    );
    let card = cardlog(&store, &["vcard", "export"]).ok();
    for name in ["Ada", "Bob", "Cy"] {
        card.has_line(&[&format!("FN:{name} Example")]);
    }
    // A write cannot be made, and says why.
    cardlog(&store, &["add", "--given", "Dee"])
        .fails(1)
        .says(&["No space left"]);
    std::fs::remove_file(&filler).unwrap();
    cardlog(&store, &["add", "--given", "Dee"]).ok();

    disk.remount_read_only();
    let run = cardlog(&store, &["list"]).ok();
    assert_eq!(run.stdout.lines().count(), 4);
    assert!(
        run.stderr.contains("Read-only file system"),
        "{}",
        run.stderr
    );
    cardlog(&store, &["status"]).ok();
}

/// A relay keeps each book's state in a journal (`Database::Journal`) rather than sled. On a
/// disk that fills, the journal's batch fails cleanly (the half-written record cut off); once
/// space is freed the same handle goes on without a restart, and every save it reported made
/// is there, also after a reopen.
#[test]
fn a_journal_store_on_a_full_disk_fails_cleanly_and_goes_on_once_space_is_freed() {
    use cardlog::{Contact, ContactId, Database, Field, Options, Replica};
    let Some(disk) = Tmpfs::mount("16m") else {
        eprintln!("skipped: mounting a tmpfs was refused (not root)");
        return;
    };
    let dir = disk.dir.join("book");
    let options = Options {
        database: Database::Journal,
        ..Options::default()
    };
    let id = |n: u32| {
        let mut id = [0u8; 16];
        id[..4].copy_from_slice(&n.to_be_bytes());
        ContactId(id)
    };
    let contact = |n: u32| {
        let mut c = Contact::new(id(n));
        c.set(Field::Given, format!("Person {n}"));
        c
    };
    let mut r = Replica::create_with(&dir, options.clone()).unwrap();
    assert!(dir.join("db").join("journal").is_file());
    let mut saved = Vec::new();
    for n in 0..50 {
        r.add_contact(&contact(n)).unwrap();
        saved.push(n);
    }
    let filler = disk.dir.join("filler");
    fill(&filler);
    // Saves go into the log's room ahead (written before the disk filled) until the state's
    // batch, every 1,024 ops, needs space the disk no longer has.
    let mut failure = None;
    for n in 50..3_000 {
        match r.add_contact(&contact(n)) {
            Ok(_) => saved.push(n),
            Err(e) => {
                failure = Some(e);
                break;
            }
        }
    }
    let failure = failure.expect("a save fails once the disk is full");
    // The journal's batch is what failed (the log's writes had room).
    let said = failure.to_string();
    assert!(
        said.contains("No space left") && said.contains("journal"),
        "{said}"
    );
    assert!(
        r.add_contact(&contact(9_999)).is_err(),
        "poisoned until reopened"
    );
    std::fs::remove_file(&filler).unwrap();
    assert!(r.reopen_if_poisoned().unwrap());
    r.add_contact(&contact(10_000)).unwrap();
    saved.push(10_000);
    let has_all = |r: &Replica| {
        for &n in &saved {
            assert!(r.contact(&id(n)).unwrap().is_some(), "contact {n}");
        }
    };
    has_all(&r);
    assert!(r.verify().unwrap().is_ok());
    drop(r);
    let r = Replica::open_with(&dir, options).unwrap();
    has_all(&r);
    assert!(r.verify().unwrap().is_ok());
    assert_eq!(r.contacts().unwrap().len(), saved.len());
}

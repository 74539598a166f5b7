//! A replica open in another process is refused with the typed `OpenError::Locked`, not an
//! engine error to be read by its words; once that process lets go, the store opens. The test
//! re-runs its own binary as the process that holds the store (as the crash test does).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use cardlog::{OpenError, Replica};

/// The store the child holds open; unset in a normal run.
const HOLD_DIR_VAR: &str = "CARDLOG_LOCKED_CHILD_DIR";
/// What the child prints once it holds the store (the test harness may print on that line too).
const HELD: &str = "<<cardlog: the store is held>>";

/// Not a test of its own: the child that holds the store open until its stdin closes. Without
/// the environment variable (any normal run) it returns at once.
#[test]
fn child_holds_the_store() {
    let Some(dir) = std::env::var_os(HOLD_DIR_VAR) else {
        return;
    };
    let replica = Replica::open(Path::new(&dir)).unwrap();
    println!("{HELD}");
    let _ = std::io::stdin().read_to_end(&mut Vec::new());
    drop(replica);
}

// A second process's open is refused as Locked while the first holds the store, and succeeds
// after the first has let go.
#[test]
fn a_store_open_in_another_process_is_refused_as_locked() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("store");
    drop(Replica::create(&dir).unwrap());
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "child_holds_the_store",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(HOLD_DIR_VAR, &dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    while !line.contains(HELD) {
        line.clear();
        assert!(
            out.read_line(&mut line).unwrap() > 0,
            "the child ended before holding"
        );
    }

    let err = Replica::open(&dir).unwrap_err();
    assert!(matches!(err, OpenError::Locked(_)), "{err:?}");
    assert!(err.to_string().contains("another handle holds it"), "{err}");

    drop(child.stdin.take());
    assert!(child.wait().unwrap().success());
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match Replica::open(&dir) {
            Ok(_) => break,
            Err(OpenError::Locked(_)) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => panic!("the store does not open once the child let go: {e}"),
        }
    }
}

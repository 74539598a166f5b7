//! The `vcard_import` fuzz seed corpus on stable: every file in fuzz/seeds/vcard_import/ goes
//! through the same check as the fuzz target (fuzz/src/vcard_checks.rs itself, included below),
//! each into a fresh replica; `valid-*` files must import cleanly and `invalid-*` ones reject a
//! card or hold none; named seeds must give their expected counts; the seed files must be
//! exactly what the check file generates (run with `CARDLOG_WRITE_SEEDS=1` to rewrite them);
//! and crash inputs left in fuzz/artifacts/vcard_import/ (ignored by git) are replayed as
//! regressions whenever that folder exists.
#![allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    clippy::panic,
    clippy::expect_used
)]

#[path = "../../../fuzz/src/corpus.rs"]
mod corpus;
#[path = "../../../fuzz/src/vcard_checks.rs"]
mod vcard_checks;

use std::fs;
use std::path::{Path, PathBuf};

use cardlog::Replica;
use vcard_checks::{check_vcard_import, vcard_seeds, VcardCheck};

use corpus::files;

fn fuzz_dir() -> PathBuf {
    corpus::fuzz_dir(env!("CARGO_MANIFEST_DIR"))
}

/// Runs the check on `bytes` in a fresh replica.
fn check(root: &Path, name: &str, bytes: &[u8]) -> VcardCheck {
    let mut replica = Replica::create(&root.join(name)).unwrap();
    check_vcard_import(&mut replica, bytes)
}

/// The committed seed files are byte for byte what fuzz/src/vcard_checks.rs generates.
#[test]
fn generated_seeds_are_the_committed_files() {
    let write = std::env::var_os("CARDLOG_WRITE_SEEDS").is_some();
    let dir = fuzz_dir().join("seeds/vcard_import");
    for (name, bytes) in vcard_seeds() {
        let path = dir.join(name);
        if write {
            fs::create_dir_all(&dir).unwrap();
            fs::write(&path, &bytes).unwrap();
            continue;
        }
        let committed = fs::read(&path).unwrap_or_else(|e| {
            panic!(
                "{}: {e} (run `CARDLOG_WRITE_SEEDS=1 cargo test -p cardlog-vcard --test \
                 fuzz_corpus` to write the generated seeds)",
                path.display()
            )
        });
        assert!(
            committed == bytes,
            "{} is not what fuzz/src/vcard_checks.rs generates (rewrite with \
             CARDLOG_WRITE_SEEDS=1 if the change is intended)",
            path.display()
        );
    }
}

/// Seeds that must be present, and what importing each gives: cards, created, rejected, and
/// at least this many warnings.
const EXPECTED: &[(&str, usize, usize, usize, usize)] = &[
    ("valid-v30-002.vcf", 1, 1, 0, 0),
    ("valid-v40-024.vcf", 1, 1, 0, 0),
    ("valid-v21-quoted-printable-010.vcf", 1, 1, 0, 0),
    // The last card has no END:VCARD but a complete last line: imported, with a warning.
    ("valid-no-end-at-eof-056.vcf", 1, 1, 0, 1),
    ("valid-two-cards.vcf", 2, 2, 0, 0),
    // 002.vcf's card runs into 024.vcf's BEGIN:VCARD: rejected; 024's card imported.
    ("invalid-missing-end.vcf", 2, 1, 1, 0),
    ("invalid-truncated.vcf", 1, 0, 1, 0),
    ("invalid-not-utf8.vcf", 1, 0, 1, 0),
    ("invalid-empty.vcf", 0, 0, 0, 0),
];

/// Every vcard_import seed passes the target's check, each into a fresh replica on disk, with
/// the outcome its name promises.
#[test]
fn vcard_import_seeds_pass_the_target_checks() {
    let tmp = tempfile::tempdir().unwrap();
    let seeds = files(&fuzz_dir().join("seeds/vcard_import"));
    let mut results = Vec::new();
    for (name, bytes) in &seeds {
        let result = check(tmp.path(), name, bytes);
        if name.starts_with("valid-") {
            assert!(
                result.accepted(),
                "{name} should import cleanly: {result:?}"
            );
        } else if name.starts_with("invalid-") {
            assert!(!result.accepted(), "{name} should be refused: {result:?}");
        } else {
            panic!("fuzz/seeds/vcard_import/{name} is named neither valid-* nor invalid-*");
        }
        results.push((name.as_str(), result));
    }
    for (name, cards, created, rejected, warnings) in EXPECTED {
        let (_, got) = results
            .iter()
            .find(|(n, _)| n == name)
            .unwrap_or_else(|| panic!("seed fuzz/seeds/vcard_import/{name} is missing"));
        assert_eq!(
            (got.cards, got.created, got.rejected),
            (*cards, *created, *rejected),
            "{name}: {got:?}"
        );
        assert!(got.warnings >= *warnings, "{name}: {got:?}");
    }
}

/// Crash inputs a fuzzing run saved pass the check now (none here unless a run saved some).
#[test]
fn fuzz_artifacts_do_not_regress() {
    let tmp = tempfile::tempdir().unwrap();
    let artifacts = files(&fuzz_dir().join("artifacts/vcard_import"));
    for (name, bytes) in &artifacts {
        eprintln!("replaying fuzz/artifacts/vcard_import/{name}");
        let _ = check(tmp.path(), name, bytes);
    }
    eprintln!("replayed {} fuzz artifacts", artifacts.len());
}

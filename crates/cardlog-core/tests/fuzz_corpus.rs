//! The fuzz seed corpus on stable: every file in fuzz/seeds/ goes through the same checks as the
//! libFuzzer targets (the checks are fuzz/src/checks.rs itself, included below), so CI exercises
//! the targets' properties without nightly or cargo-fuzz. Seeds for `decode_op` are named
//! `valid-*.bin` (must decode) or `invalid-*.bin` (must be refused). Crash inputs that
//! `cargo fuzz` leaves in fuzz/artifacts/ (ignored by git, so only on the machine that found
//! them) are replayed too, as regressions, whenever that folder exists.
#![allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::panic)]

#[path = "../../../fuzz/src/checks.rs"]
mod checks;
#[path = "../../../fuzz/src/corpus.rs"]
mod corpus;

use std::path::PathBuf;

use cardlog_core::{DecodeError, OpInvalid, SealedOp};
use checks::{check_decode_op, check_replay_ops, ReplayCheck};

use corpus::files;

fn fuzz_dir() -> PathBuf {
    corpus::fuzz_dir(env!("CARGO_MANIFEST_DIR"))
}

type DecodeExpectation = fn(&Result<SealedOp, DecodeError>) -> bool;

/// Seeds that must be present, and what decoding each gives.
const DECODE_SEEDS: &[(&str, DecodeExpectation)] = &[
    ("valid-golden-create.bin", |r| {
        // Golden op 1 of tests/format.rs and docs/FORMAT.md.
        r.as_ref().is_ok_and(|op| {
            op.id().to_string()
                == "e4e0fdb7405338d24751a3490eca84724319f31a33a09ff8c31f919534645d8f"
        })
    }),
    ("valid-golden-edit.bin", |r| {
        // Golden op 2.
        r.as_ref().is_ok_and(|op| {
            op.id().to_string()
                == "cc5ba243d0e7acd10ce57e5e20972410042904f91d84d6bf14b09ea6c65338bd"
        })
    }),
    ("valid-multi-contact.bin", |r| {
        r.as_ref().is_ok_and(|op| {
            let contacts: std::collections::BTreeSet<_> =
                op.op().writes.iter().map(|w| w.contact).collect();
            contacts.len() == 2
        })
    }),
    ("valid-concurrent-rename.bin", |r| r.is_ok()),
    ("invalid-empty.bin", |r| r == &Err(DecodeError::Empty)),
    ("invalid-truncated.bin", |r| {
        r == &Err(DecodeError::Truncated)
    }),
    ("invalid-trailing-byte.bin", |r| {
        r == &Err(DecodeError::TrailingBytes { count: 1 })
    }),
    ("invalid-non-minimal-varint.bin", |r| {
        r == &Err(DecodeError::NonCanonical { offset: 17 })
    }),
    ("invalid-unknown-version.bin", |r| {
        matches!(r, Err(DecodeError::UnknownVersion { found: 3, .. }))
    }),
    ("invalid-bad-path-tag.bin", |r| {
        matches!(r, Err(DecodeError::Malformed(_)))
    }),
    ("invalid-oversize-length.bin", |r| {
        matches!(r, Err(DecodeError::LengthTooLarge { .. }))
    }),
    ("invalid-unsorted-writes.bin", |r| {
        matches!(
            r,
            Err(DecodeError::Invalid(OpInvalid::WritesUnsorted { .. }))
        )
    }),
];

#[test]
fn decode_op_seeds_pass_the_target_checks() {
    let seeds = files(&fuzz_dir().join("seeds/decode_op"));
    for (name, bytes) in &seeds {
        let result = check_decode_op(bytes);
        if name.starts_with("valid-") {
            assert!(result.is_ok(), "{name} should decode: {result:?}");
        } else if name.starts_with("invalid-") {
            assert!(result.is_err(), "{name} should be refused");
        } else {
            panic!(
                "fuzz/seeds/decode_op/{name} is named neither valid-*.bin nor invalid-*.bin \
                 (a fuzzing run that wrote new inputs here? give cargo fuzz a writable corpus \
                 folder first, see fuzz/README.md)"
            );
        }
    }
    for (name, expected) in DECODE_SEEDS {
        let (_, bytes) = seeds
            .iter()
            .find(|(n, _)| n == name)
            .unwrap_or_else(|| panic!("seed fuzz/seeds/decode_op/{name} is missing"));
        let result = check_decode_op(bytes);
        assert!(expected(&result), "{name} decodes to {result:?}");
    }
}

/// Seeds that must be present, and what replaying each in both orders gives.
const REPLAY_SEEDS: &[(&str, ReplayCheck)] = &[
    (
        "chain-in-order.bin",
        ReplayCheck {
            chunks: 2,
            ops: 2,
            applied_forward: 2,
            applied_backward: 2,
            compared: true,
        },
    ),
    (
        "chain-reversed.bin",
        ReplayCheck {
            chunks: 2,
            ops: 2,
            applied_forward: 2,
            applied_backward: 2,
            compared: true,
        },
    ),
    (
        // Two devices edit the golden contact concurrently, plus an unrelated op; delivered
        // dependents first, so one order goes through the pending buffer.
        "concurrent-edits.bin",
        ReplayCheck {
            chunks: 4,
            ops: 4,
            applied_forward: 4,
            applied_backward: 4,
            compared: true,
        },
    ),
    (
        // Golden create, a different op at the same seq, and golden edit: whichever seq-1 op
        // comes first wins, so the two orders keep different ops and are not compared.
        "fork.bin",
        ReplayCheck {
            chunks: 3,
            ops: 3,
            applied_forward: 2,
            applied_backward: 1,
            compared: false,
        },
    ),
    (
        // An empty chunk, an op, an op with a trailing byte, an op, and a length running past
        // the end.
        "mixed-garbage.bin",
        ReplayCheck {
            chunks: 5,
            ops: 2,
            applied_forward: 2,
            applied_backward: 2,
            compared: true,
        },
    ),
];

#[test]
fn replay_ops_seeds_pass_the_target_checks() {
    let seeds = files(&fuzz_dir().join("seeds/replay_ops"));
    let results: Vec<(String, ReplayCheck)> = seeds
        .iter()
        .map(|(name, bytes)| (name.clone(), check_replay_ops(bytes)))
        .collect();
    for (name, expected) in REPLAY_SEEDS {
        let (_, got) = results
            .iter()
            .find(|(n, _)| n == name)
            .unwrap_or_else(|| panic!("seed fuzz/seeds/replay_ops/{name} is missing"));
        assert_eq!(got, expected, "{name}");
    }
}

#[test]
fn fuzz_artifacts_do_not_regress() {
    let dir = fuzz_dir().join("artifacts");
    if !dir.is_dir() {
        eprintln!("no fuzz/artifacts/ here: nothing to replay");
        return;
    }
    // cargo fuzz writes artifacts/<target>/<kind>-<hash>; the other targets' artifacts are
    // replayed by their own crates' tests.
    let decode = files(&dir.join("decode_op"));
    for (_, bytes) in &decode {
        let _ = check_decode_op(bytes);
    }
    let replay = files(&dir.join("replay_ops"));
    for (_, bytes) in &replay {
        let _ = check_replay_ops(bytes);
    }
    eprintln!("replayed {} fuzz artifacts", decode.len() + replay.len());
}

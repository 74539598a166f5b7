//! The sync-layer fuzz seed corpus on stable: every file in fuzz/seeds/{decode_segments,
//! decode_message,sync_session,handshake}/ goes through the same checks as the fuzz targets (the checks
//! are fuzz/src/sync_checks.rs itself, included below), named seeds must give their expected
//! outcome, the seed files must be exactly what fuzz/src/sync_seeds.rs generates (run with
//! `CARDLOG_WRITE_SEEDS=1` to rewrite them), and crash inputs left in fuzz/artifacts/ by a
//! fuzzing run (ignored by git) are replayed as regressions whenever that folder exists.
#![allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    clippy::panic,
    clippy::expect_used
)]

#[path = "../../../fuzz/src/checks.rs"]
#[allow(dead_code)]
mod checks;
#[path = "../../../fuzz/src/corpus.rs"]
mod corpus;
#[path = "../../../fuzz/src/sync_checks.rs"]
mod sync_checks;
#[path = "../../../fuzz/src/sync_seeds.rs"]
mod sync_seeds;

use std::fs;
use std::path::PathBuf;

use cardlog_sync::wire::message::{self, Message};
use cardlog_sync::WireError;
use sync_checks::{
    check_decode_message, check_decode_segments, check_handshake, check_sync_session, seal_message,
    seal_segments, universe, unsealed, SessionCheck,
};

use corpus::files;

fn fuzz_dir() -> PathBuf {
    corpus::fuzz_dir(env!("CARGO_MANIFEST_DIR"))
}

fn seed<'a>(seeds: &'a [(String, Vec<u8>)], target: &str, name: &str) -> &'a [u8] {
    seeds
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, b)| b.as_slice())
        .unwrap_or_else(|| panic!("seed fuzz/seeds/{target}/{name} is missing"))
}

fn valid_or_invalid(target: &str, name: &str, accepted: bool, detail: &dyn std::fmt::Debug) {
    if name.starts_with("valid-") {
        assert!(accepted, "{target}/{name} should be accepted: {detail:?}");
    } else if name.starts_with("invalid-") {
        assert!(!accepted, "{target}/{name} should be refused: {detail:?}");
    } else {
        panic!(
            "fuzz/seeds/{target}/{name} is named neither valid-* nor invalid-* (a fuzzing run \
             that wrote new inputs here? give it a writable corpus folder first, see \
             fuzz/README.md)"
        );
    }
}

/// The committed seed files are byte for byte what fuzz/src/sync_seeds.rs generates.
#[test]
fn generated_seeds_are_the_committed_files() {
    let write = std::env::var_os("CARDLOG_WRITE_SEEDS").is_some();
    for (target, name, bytes) in sync_seeds::sync_seeds() {
        let path = fuzz_dir().join("seeds").join(target).join(name);
        if write {
            fs::create_dir_all(path.parent().unwrap()).unwrap();
            fs::write(&path, &bytes).unwrap();
            continue;
        }
        let committed = fs::read(&path).unwrap_or_else(|e| {
            panic!(
                "{}: {e} (run `CARDLOG_WRITE_SEEDS=1 cargo test -p cardlog-sync --test \
                 fuzz_corpus` to write the generated seeds)",
                path.display()
            )
        });
        assert!(
            committed == bytes,
            "{} is not what fuzz/src/sync_seeds.rs generates (rewrite with CARDLOG_WRITE_SEEDS=1 \
             if the change is intended)",
            path.display()
        );
    }
}

/// The harness computes both checksums as the library does: sealing an encoded message's body
/// gives the message back.
#[test]
fn the_harness_seals_messages_like_the_library() {
    // The checksum contexts are private to cardlog-sync; the harness repeats them.
    let ops = universe().ops_named(&["a2", "a3"]);
    let segments = cardlog_sync::encode_segments(&ops, &universe().held()).unwrap();
    assert_eq!(seal_segments(unsealed(&segments)), segments);
    let hello = message::encode(&Message::Abort { reason: "x".into() });
    assert_eq!(seal_message(unsealed(&hello)), hello);
}

type SegmentsExpectation = fn(&Result<Vec<cardlog_core::SealedOp>, WireError>) -> bool;

/// Seeds that must be present, and what decoding each gives.
const SEGMENT_SEEDS: &[(&str, SegmentsExpectation)] = &[
    ("valid-missing-ops.bin", |r| {
        r.as_ref().is_ok_and(|o| o.len() == 4)
    }),
    ("valid-anchored.bin", |r| {
        r.as_ref().is_ok_and(|o| o.len() == 2)
    }),
    ("valid-no-segments.bin", |r| {
        r.as_ref().is_ok_and(Vec::is_empty)
    }),
    ("valid-refused-by-replay.bin", |r| {
        r.as_ref().is_ok_and(|o| o.len() == 3)
    }),
    ("valid-fork.bin", |r| r.as_ref().is_ok_and(|o| o.len() == 1)),
    ("valid-sealed-by-harness.bin", |r| {
        r.as_ref().is_ok_and(|o| o.len() == 4)
    }),
    ("valid-sealed-refused-by-replay.bin", |r| {
        r.as_ref().is_ok_and(|o| o.len() == 3)
    }),
    ("valid-sealed-fork.bin", |r| {
        r.as_ref().is_ok_and(|o| o.len() == 1)
    }),
    ("invalid-empty.bin", |r| r == &Err(WireError::Truncated)),
    ("invalid-truncated.bin", |r| r == &Err(WireError::Checksum)),
    ("invalid-bit-flip.bin", |r| r == &Err(WireError::Checksum)),
    ("invalid-head-mismatch.bin", |r| {
        matches!(r, Err(WireError::HeadMismatch { .. }))
    }),
    ("invalid-unknown-version.bin", |r| {
        r == &Err(WireError::UnknownVersion(9))
    }),
    ("valid-compressed.bin", |r| r.is_ok()),
    ("invalid-compressed-damaged.bin", |r| {
        matches!(r, Err(WireError::Framing(_) | WireError::Checksum))
    }),
    ("invalid-compressed-over-ratio.bin", |r| {
        matches!(r, Err(WireError::TooLarge { got: 1_048_576, .. }))
    }),
    ("invalid-compressed-twice.bin", |r| {
        matches!(r, Err(WireError::Framing(_)))
    }),
    ("invalid-bad-magic.bin", |r| r == &Err(WireError::BadMagic)),
    ("invalid-oversize-count.bin", |r| {
        matches!(r, Err(WireError::TooLarge { .. }))
    }),
    ("invalid-non-minimal-varint.bin", |r| {
        matches!(r, Err(WireError::Varint(_)))
    }),
    ("invalid-trailing-byte.bin", |r| {
        r == &Err(WireError::Trailing(1))
    }),
    ("invalid-unresolved.bin", |r| {
        matches!(r, Err(WireError::Unresolved { .. }))
    }),
];

/// Every decode_segments seed passes the target's checks with the outcome its name promises.
#[test]
fn decode_segments_seeds_pass_the_target_checks() {
    let target = "decode_segments";
    let seeds = files(&fuzz_dir().join("seeds").join(target));
    for (name, bytes) in &seeds {
        let result = check_decode_segments(bytes);
        valid_or_invalid(target, name, result.is_ok(), &result.as_ref().map(Vec::len));
    }
    for (name, expected) in SEGMENT_SEEDS {
        let result = check_decode_segments(seed(&seeds, target, name));
        assert!(expected(&result), "{name} decodes to {result:?}");
    }
}

type MessageExpectation = fn(&Result<Message, WireError>) -> bool;

/// Seeds that must be present, and what decoding each gives.
const MESSAGE_SEEDS: &[(&str, MessageExpectation)] = &[
    ("valid-hello.bin", |r| {
        r.as_ref().is_ok_and(|m| m.kind() == "hello")
    }),
    (
        "valid-ops.bin",
        |r| matches!(r, Ok(Message::Ops { last: true, forks, .. }) if forks.len() == 1),
    ),
    ("valid-ack.bin", |r| {
        r.as_ref().is_ok_and(|m| m.kind() == "ack")
    }),
    (
        "valid-abort.bin",
        |r| matches!(r, Ok(Message::Abort { reason }) if reason.contains("ünïcode")),
    ),
    ("valid-bundle.bin", |r| {
        r.as_ref().is_ok_and(|m| m.kind() == "bundle")
    }),
    ("valid-heads.bin", |r| {
        r.as_ref().is_ok_and(|m| m.kind() == "heads")
    }),
    ("valid-sealed-by-harness.bin", |r| {
        r.as_ref().is_ok_and(|m| m.kind() == "hello")
    }),
    ("valid-sealed-ops.bin", |r| {
        r.as_ref().is_ok_and(|m| m.kind() == "ops")
    }),
    ("valid-sealed-ack.bin", |r| {
        r.as_ref().is_ok_and(|m| m.kind() == "ack")
    }),
    ("valid-sealed-bundle.bin", |r| {
        r.as_ref().is_ok_and(|m| m.kind() == "bundle")
    }),
    ("invalid-empty.bin", |r| r == &Err(WireError::Truncated)),
    ("invalid-truncated.bin", |r| r == &Err(WireError::Checksum)),
    ("invalid-bit-flip.bin", |r| r == &Err(WireError::Checksum)),
    ("invalid-unknown-version.bin", |r| {
        r == &Err(WireError::UnknownVersion(2))
    }),
    ("invalid-oversize-length.bin", |r| {
        matches!(r, Err(WireError::TooLarge { .. }))
    }),
    (
        "invalid-unsorted-summary.bin",
        |r| matches!(r, Err(WireError::Framing(m)) if m.contains("increasing")),
    ),
    ("invalid-non-minimal-varint.bin", |r| {
        matches!(r, Err(WireError::Varint(_)))
    }),
    ("invalid-trailing-byte.bin", |r| {
        r == &Err(WireError::Trailing(1))
    }),
    (
        "invalid-unknown-kind.bin",
        |r| matches!(r, Err(WireError::Framing(m)) if m.contains("kind 9")),
    ),
    (
        "invalid-last-flag.bin",
        |r| matches!(r, Err(WireError::Framing(m)) if m.contains("last flag")),
    ),
    (
        "invalid-abort-not-utf8.bin",
        |r| matches!(r, Err(WireError::Framing(m)) if m.contains("UTF-8")),
    ),
    (
        "invalid-sealed-garbage.bin",
        |r| matches!(r, Err(WireError::Framing(m)) if m.contains("kind 9")),
    ),
];

/// Every decode_message seed passes the target's checks with the outcome its name promises.
#[test]
fn decode_message_seeds_pass_the_target_checks() {
    let target = "decode_message";
    let seeds = files(&fuzz_dir().join("seeds").join(target));
    for (name, bytes) in &seeds {
        let result = check_decode_message(bytes);
        valid_or_invalid(
            target,
            name,
            result.is_ok(),
            &result.as_ref().map(Message::kind),
        );
    }
    for (name, expected) in MESSAGE_SEEDS {
        let result = check_decode_message(seed(&seeds, target, name));
        assert!(expected(&result), "{name} decodes to {result:?}");
    }
}

fn session(
    chunks: usize,
    accepted: usize,
    refused: &[&str],
    sent: usize,
    sessions_done: usize,
    ops_gained: usize,
    forks: usize,
) -> SessionCheck {
    SessionCheck {
        chunks,
        accepted,
        refused: refused.iter().map(|s| (*s).to_owned()).collect(),
        sent,
        sessions_done,
        ops_gained,
        forks,
    }
}

/// Seeds that must be present, and what the session made of each: chunks, accepted, why
/// refused, messages sent, sessions done, ops gained, forks recorded.
fn session_seeds() -> Vec<(&'static str, SessionCheck)> {
    vec![
        // Hello, ops, ack: the responder sends its hello, its ops (what an empty initiator
        // lacks) and its ack, and gains the four ops the base lacks.
        ("valid-full-session.bin", session(3, 3, &[], 3, 1, 4, 0)),
        ("valid-partial-hello.bin", session(3, 3, &[], 3, 1, 1, 0)),
        // A whole session, then the hello of a second one (answered with hello and ops).
        ("valid-raw-messages.bin", session(4, 4, &[], 5, 1, 2, 0)),
        ("valid-ops-in-parts.bin", session(5, 5, &[], 3, 1, 4, 0)),
        ("valid-bundle-import.bin", session(2, 2, &[], 0, 0, 4, 0)),
        // The reported fork and the fork of r2 found in the ops.
        ("valid-fork-reported.bin", session(3, 3, &[], 3, 1, 0, 2)),
        // An op stamped like its predecessor: stored with it.
        ("valid-same-time-chain.bin", session(2, 2, &[], 2, 0, 2, 0)),
        (
            "invalid-bad-replace.bin",
            session(1, 0, &["refused"], 0, 0, 0, 0),
        ),
        (
            "invalid-same-peer.bin",
            session(1, 0, &["same-peer"], 0, 0, 0, 0),
        ),
        (
            "invalid-out-of-order.bin",
            session(2, 1, &["protocol"], 2, 0, 0, 0),
        ),
        (
            "invalid-damaged-segments.bin",
            session(2, 1, &["wire:HeadMismatch"], 2, 0, 0, 0),
        ),
        (
            "invalid-damaged-message.bin",
            session(1, 0, &["wire:Checksum"], 0, 0, 0, 0),
        ),
        (
            "invalid-unresolved.bin",
            session(2, 1, &["wire:Unresolved"], 2, 0, 0, 0),
        ),
        (
            "invalid-heads-as-bundle.bin",
            session(1, 0, &["protocol"], 0, 0, 0, 0),
        ),
    ]
}

/// Every sync_session seed passes the target's checks, named seeds with their exact counts.
#[test]
fn sync_session_seeds_pass_the_target_checks() {
    let target = "sync_session";
    let seeds = files(&fuzz_dir().join("seeds").join(target));
    for (name, bytes) in &seeds {
        let result = check_sync_session(bytes);
        valid_or_invalid(target, name, result.refused.is_empty(), &result);
    }
    for (name, expected) in session_seeds() {
        let got = check_sync_session(seed(&seeds, target, name));
        assert_eq!(got, expected, "{name}");
    }
}

#[test]
fn handshake_seeds_pass_the_target_checks() {
    let target = "handshake";
    let seeds = files(&fuzz_dir().join("seeds").join(target));
    assert_eq!(seeds.len(), 8);
    for (name, bytes) in &seeds {
        let result = check_handshake(bytes);
        valid_or_invalid(target, name, result.is_ok(), &result);
    }
    let unencrypted = check_handshake(seed(&seeds, target, "invalid-m1-unencrypted.bin"));
    assert!(
        unencrypted
            .as_ref()
            .is_err_and(|e| e.contains("unencrypted")),
        "{unencrypted:?}"
    );
}

/// Crash inputs a fuzzing run saved pass the checks now (none here unless a run saved some).
#[test]
fn fuzz_artifacts_do_not_regress() {
    let mut replayed = 0;
    for target in [
        "decode_segments",
        "decode_message",
        "sync_session",
        "handshake",
    ] {
        let dir = fuzz_dir().join("artifacts").join(target);
        for (name, bytes) in files(&dir) {
            eprintln!("replaying fuzz/artifacts/{target}/{name}");
            match target {
                "decode_segments" => drop(check_decode_segments(&bytes)),
                "decode_message" => drop(check_decode_message(&bytes)),
                "handshake" => drop(check_handshake(&bytes)),
                _ => drop(check_sync_session(&bytes)),
            }
            replayed += 1;
        }
    }
    eprintln!("replayed {replayed} fuzz artifacts");
}

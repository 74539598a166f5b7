//! Every fuzz target by name, with a function that runs its check on one input: what the
//! stable driver (src/bin/stable_fuzz.rs) fuzzes. Each function also returns coarse features
//! of the outcome (which error, how many ops, which session refusals), which the stable driver,
//! lacking libFuzzer's coverage feedback, uses the way libFuzzer uses coverage: an input that
//! shows a feature not seen before joins the corpus.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};

use crate::{checks, scratch, sync_checks, vcard_checks};

/// One fuzz target.
pub struct Target {
    /// The name, as in fuzz_targets/ and seeds/.
    pub name: &'static str,
    /// Runs the target's check on one input; returns the outcome's features.
    pub run: fn(&[u8]) -> Vec<u64>,
}

/// Every target, in the order `all` runs them.
pub const TARGETS: &[Target] = &[
    Target {
        name: "decode_op",
        run: decode_op,
    },
    Target {
        name: "replay_ops",
        run: replay_ops,
    },
    Target {
        name: "decode_segments",
        run: decode_segments,
    },
    Target {
        name: "decode_message",
        run: decode_message,
    },
    Target {
        name: "sync_session",
        run: sync_session,
    },
    Target {
        name: "handshake",
        run: handshake,
    },
    Target {
        name: "vcard_import",
        run: vcard_import,
    },
];

/// The target named `name`.
pub fn target(name: &str) -> Option<&'static Target> {
    TARGETS.iter().find(|t| t.name == name)
}

fn feature(value: impl Hash) -> u64 {
    let mut h = DefaultHasher::new();
    value.hash(&mut h);
    h.finish()
}

/// An error's shape: the words of its `Debug` text, without numbers or anything that looks like
/// an id, at most three of them: the variant and the start of its message (so offsets, counts,
/// ids and the input's own text quoted in the error do not make every error new).
fn error_shape(e: &impl std::fmt::Debug) -> String {
    format!("{e:?}")
        .split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|w| !w.is_empty() && w.chars().all(|c| c.is_ascii_alphabetic()))
        .filter(|w| !(w.len() >= 8 && w.chars().all(|c| c.is_ascii_hexdigit())))
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

fn decode_op(data: &[u8]) -> Vec<u64> {
    vec![match checks::check_decode_op(data) {
        Ok(op) => feature(("ok", op.op().writes.len().min(8))),
        Err(e) => feature(error_shape(&e)),
    }]
}

fn replay_ops(data: &[u8]) -> Vec<u64> {
    let r = checks::check_replay_ops(data);
    vec![
        feature(("chunks", r.chunks.min(16))),
        feature(("ops", r.ops.min(16))),
        feature(("forward", r.applied_forward.min(16))),
        feature(("backward", r.applied_backward.min(16))),
        feature(("compared", r.compared, r.applied_forward.min(16))),
    ]
}

fn decode_segments(data: &[u8]) -> Vec<u64> {
    vec![match sync_checks::check_decode_segments(data) {
        Ok(ops) => feature(("ok", ops.len().min(16))),
        Err(e) => feature(error_shape(&e)),
    }]
}

fn decode_message(data: &[u8]) -> Vec<u64> {
    vec![match sync_checks::check_decode_message(data) {
        Ok(m) => feature(("ok", m.kind())),
        Err(e) => feature(error_shape(&e)),
    }]
}

fn handshake(data: &[u8]) -> Vec<u64> {
    let stage = data.first().map_or(0, |m| m % 4);
    vec![match sync_checks::check_handshake(data) {
        Ok(()) => feature(("ok", stage)),
        Err(e) => feature((stage, error_shape(&e))),
    }]
}

fn sync_session(data: &[u8]) -> Vec<u64> {
    let s = sync_checks::check_sync_session(data);
    let mut out = vec![
        feature(("accepted", s.accepted.min(8))),
        feature(("sent", s.sent.min(8))),
        feature(("done", s.sessions_done.min(4))),
        feature(("gained", s.ops_gained)),
        feature(("forks", s.forks.min(8))),
    ];
    // Each refusal, and what was refused after what.
    let mut previous = "";
    for kind in &s.refused {
        out.push(feature(("refused", kind)));
        out.push(feature(("refused after", previous, kind)));
        previous = kind;
    }
    out
}

fn vcard_import(data: &[u8]) -> Vec<u64> {
    let mut scratch = scratch::scratch_replica();
    let v = vcard_checks::check_vcard_import(scratch.replica(), data);
    vec![
        feature(("cards", v.cards.min(16))),
        feature(("created", v.created.min(16))),
        feature(("updated", v.updated.min(16))),
        feature(("unchanged", v.unchanged.min(16))),
        feature(("rejected", v.rejected.min(16))),
        feature(("warnings", v.warnings.min(16))),
    ]
}

//! The checks behind the fuzz targets, written once. Each takes arbitrary bytes, must never
//! panic on them, and panics (with a message naming the broken property) only when cardlog-core
//! breaks a promise. The fuzz targets call these through the `cardlog-fuzz` library; the stable
//! test crates/cardlog-core/tests/fuzz_corpus.rs includes this very file with `#[path]`, so it
//! must only depend on `std` and `cardlog_core`.

use std::collections::BTreeSet;

use cardlog_core::{decode_op, DecodeError, OpId, Replay, SealedOp};

/// The `decode_op` target: strictly decodes `data` as one op. Whatever the input, decoding
/// returns instead of panicking; when it accepts the input, the op is exactly the input (its
/// bytes are `data`, its id is their hash) and sealing a copy of its content again gives the
/// same bytes and id. Returns the decoder's answer for callers that check more.
pub fn check_decode_op(data: &[u8]) -> Result<SealedOp, DecodeError> {
    let decoded = decode_op(data);
    if let Ok(sealed) = &decoded {
        assert_eq!(
            sealed.bytes(),
            data,
            "decode_op accepted bytes that are not its canonical encoding"
        );
        assert_eq!(
            sealed.id(),
            OpId::of_bytes(data),
            "a decoded op's id is not the hash of the input"
        );
        let resealed = match sealed.op().clone().seal_in(sealed.format()) {
            Ok(resealed) => resealed,
            Err(e) => panic!("decode_op accepted an op that does not seal again: {e}"),
        };
        assert_eq!(
            resealed.bytes(),
            sealed.bytes(),
            "re-sealing a decoded op gives other bytes"
        );
        assert_eq!(
            resealed.id(),
            sealed.id(),
            "re-sealing a decoded op gives another id"
        );
    }
    decoded
}

/// Splits the `replay_ops` input into chunks, each a little-endian `u16` length followed by that
/// many bytes. A length running past the end takes what is left; a lone last byte is ignored.
pub fn split_chunks(data: &[u8]) -> Vec<&[u8]> {
    let mut chunks = Vec::new();
    let mut rest = data;
    while let Some((len, tail)) = rest.split_first_chunk::<2>() {
        let len = usize::from(u16::from_le_bytes(*len));
        let (chunk, tail) = tail.split_at(len.min(tail.len()));
        chunks.push(chunk);
        rest = tail;
    }
    chunks
}

/// What [`check_replay_ops`] saw, so tests can tell that a seed reaches the comparison.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplayCheck {
    /// Length-prefixed chunks in the input.
    pub chunks: usize,
    /// Chunks that decoded as ops.
    pub ops: usize,
    /// Distinct ops applied when inserted in input order.
    pub applied_forward: usize,
    /// Distinct ops applied when inserted in reverse order.
    pub applied_backward: usize,
    /// Whether both orders applied the same ops, so their states were compared.
    pub compared: bool,
}

/// The `replay_ops` target: decodes each chunk of `data` (see [`split_chunks`]) with
/// [`check_decode_op`], inserts every decodable op into a fresh [`Replay`] in input order and
/// into another in reverse order. Insertion may refuse ops (forks, broken chains, clock
/// regressions, bad replaces) but never panics, and each replay's bookkeeping agrees with
/// itself. When both orders end up applying the same set of ops (in particular when nothing is
/// left waiting and no op was refused as a fork), their materialized states must be
/// byte-identical: replay does not depend on delivery order.
///
/// The comparison is keyed on the applied set rather than on "nothing waiting" alone because
/// two ops claiming one author's seq are a fork: whichever arrives first is applied and the other
/// refused, so the two orders may legitimately keep different ops.
pub fn check_replay_ops(data: &[u8]) -> ReplayCheck {
    let chunks = split_chunks(data);
    let ops: Vec<SealedOp> = chunks
        .iter()
        .filter_map(|chunk| check_decode_op(chunk).ok())
        .collect();
    let forward = replay(ops.iter());
    let backward = replay(ops.iter().rev());
    let applied_forward = applied(&forward, &ops);
    let applied_backward = applied(&backward, &ops);
    let compared = applied_forward == applied_backward;
    if compared {
        assert!(
            forward.state_bytes() == backward.state_bytes(),
            "the same {} ops applied in two orders give different states",
            applied_forward.len()
        );
        assert_eq!(
            forward.summary(),
            backward.summary(),
            "the same ops applied in two orders give different chain summaries"
        );
    }
    ReplayCheck {
        chunks: chunks.len(),
        ops: ops.len(),
        applied_forward: applied_forward.len(),
        applied_backward: applied_backward.len(),
        compared,
    }
}

/// Inserts `ops` one by one into a fresh replay; refusals are part of the contract, panics are
/// not.
fn replay<'a>(ops: impl Iterator<Item = &'a SealedOp>) -> Replay {
    let mut replay = Replay::new();
    for op in ops {
        let _ = replay.insert(op.clone());
    }
    replay
}

/// The ids of `ops` that `replay` applied, after checking that the replay's own accounts agree:
/// it applied nothing else, and no op is both applied and waiting.
fn applied(replay: &Replay, ops: &[SealedOp]) -> BTreeSet<OpId> {
    let applied: BTreeSet<OpId> = ops
        .iter()
        .map(SealedOp::id)
        .filter(|id| replay.contains(id))
        .collect();
    assert_eq!(
        replay.len(),
        applied.len(),
        "the replay counts ops it was never given"
    );
    for op in replay.waiting() {
        assert!(
            !replay.contains(&op.id()),
            "op {} is both applied and waiting",
            op.id()
        );
    }
    applied
}

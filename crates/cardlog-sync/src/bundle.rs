//! Bundle and summary files: the sync protocol carried by hand (sneakernet, a shared folder).
//!
//! A bundle is one [`Message::Bundle`]: a segment message with the writer's id and time. A
//! summary file is one [`Message::SummaryFile`]: a summary, so that the next bundle for that replica
//! carries only what it lacks (`cardlog summary --out` there, `cardlog export --since` here).
//! Importing verifies the whole bundle before applying anything and applies it atomically;
//! importing the same bundle again stores nothing.

use cardlog_core::{DeviceId, OpId, SealedOp, SignedTip};

use std::collections::{BTreeMap, BTreeSet};
use std::convert::Infallible;

use crate::error::SyncError;
use crate::receive::{apply_segments, forks_in_summary, sent_whole, Received, View};
use crate::session::{signed_only, with_covers, BranchTip};
use crate::store::{PeerBook, SyncStore};
use crate::wire::error::{AUTHORS_IN_A_MESSAGE, SEGMENTS_IN_A_MESSAGE};
use crate::wire::message::{self, Message, Summary};
use crate::wire::segment::{compress, encode_segments_exact_for};
use crate::wire::WireError;

/// What an import did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Imported {
    /// The device that wrote the bundle.
    pub from: DeviceId,
    /// When it wrote it (its calibrated wall time, ms since the epoch).
    pub created_ms: u64,
    /// What was applied.
    pub received: Received,
}

impl serde::Serialize for Imported {
    /// `{from, created, ops, stored, duplicates, missing, forks, refused, void, taken_back,
    /// settled}`: the device as hex, `created` as RFC 3339, the counts of what was applied
    /// (docs/CLI.md, `import --json`).
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let received = &self.received;
        let applied = &received.applied;
        let mut map = s.serialize_map(Some(11))?;
        map.serialize_entry("from", &self.from)?;
        map.serialize_entry("created", &cardlog_core::json::rfc3339(self.created_ms))?;
        map.serialize_entry("ops", &received.ops)?;
        map.serialize_entry("stored", &applied.stored)?;
        map.serialize_entry("duplicates", &applied.duplicates)?;
        map.serialize_entry("missing", &applied.missing)?;
        map.serialize_entry("forks", &received.forks)?;
        map.serialize_entry("refused", &applied.refused)?;
        map.serialize_entry("void", &applied.void)?;
        map.serialize_entry("taken_back", &received.taken_back)?;
        map.serialize_entry("settled", &received.settled)?;
        map.end()
    }
}

/// A bundle's bytes and what it holds ([`export_counted`]).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Exported {
    /// The bundle file.
    pub bytes: Vec<u8>,
    /// The ops it holds: a removed device's covered ops and the op covering them included
    /// (the importer keeps that one as their proof, not stored), tails no signature covers
    /// left out; not always the summaries' difference.
    pub ops: usize,
    /// The devices whose ops it holds.
    pub authors: usize,
}

/// A bundle of the ops a replica holding `since` lacks (everything when `None`), as
/// [`export_counted`] builds it.
pub fn export<S: PeerBook>(
    store: &S,
    since: Option<&Summary>,
) -> Result<Vec<u8>, SyncError<S::Error>> {
    export_counted(store, since).map(|e| e.bytes)
}

/// A bundle of the ops a replica holding `since` lacks (everything when `None`). A replica
/// marked restored ([`PeerBook::restored`]) leaves its own ops out, as its sessions do: its
/// chain forks from what a peer holds until it has taken the peer's back.
pub fn export_counted<S: PeerBook>(
    store: &S,
    since: Option<&Summary>,
) -> Result<Exported, SyncError<S::Error>> {
    let summary = since.cloned().unwrap_or_default();
    let mut asked = summary.clone();
    // A chain forking between the summary and what this side holds goes whole, as held here
    // (as in a session): the receiver sets it apart to settle or keep, and references into
    // it resolve to the bundle's ops, not to the other branch it holds. Its ops go exact.
    for fork in forks_in_summary(store, &asked)? {
        asked.remove(&fork.author);
    }
    let exact = sent_whole(&summary, &asked);
    let ops = || -> Result<Vec<SealedOp>, SyncError<S::Error>> {
        let mut ops = store.ops_since(&asked).map_err(SyncError::Store)?;
        if store.restored() {
            let me = store.device_id();
            ops.retain(|op| op.op().author != me);
        }
        Ok(ops)
    };
    let (sent, covers) = signed_ops(store, ops()?, true)?;
    let covered = !covers.is_empty();
    let mut held = counted(&sent);
    let mut bytes = encode_bundle(store, &sent, covers, &exact)?;
    drop(sent);
    if bytes.len() > message::limits::MESSAGE_BYTES_MAX && covered {
        // The covers pushed it over: without them, as before they travelled (the ops read
        // again rather than kept twice for this rare case).
        let (sent, _) = signed_ops(store, ops()?, false)?;
        held = counted(&sent);
        bytes = encode_bundle(store, &sent, Vec::new(), &exact)?;
    }
    if bytes.len() > message::limits::MESSAGE_BYTES_MAX {
        return Err(SyncError::Wire(WireError::TooLarge {
            what: "bundle bytes (use a TCP sync, which sends in parts)",
            got: bytes.len() as u64,
            limit: message::limits::MESSAGE_BYTES_MAX as u64,
        }));
    }
    let (ops, authors) = held;
    Ok(Exported {
        bytes,
        ops,
        authors,
    })
}

/// How many ops `ops` are, and by how many devices.
fn counted(ops: &[SealedOp]) -> (usize, usize) {
    let authors: BTreeSet<DeviceId> = ops.iter().map(|op| op.op().author).collect();
    (ops.len(), authors.len())
}

/// The ops a bundle sends, and the signatures of the covers among them.
type SignedOps = (Vec<SealedOp>, Vec<SignedTip>);

/// `ops` as a bundle sends them, as a session's last message does: an author's tail that no
/// signature held covers (its signature was of an op withdrawn here) goes with its cover if
/// it is a removed device's and `covers` (docs/SYNC.md, "Signatures"), else it is left out
/// with what names it, so that the signed ops below it go in (the importer admits a segment
/// only under the signature of its last op). Returns the ops and the covers' signatures.
fn signed_ops<S: PeerBook>(
    store: &S,
    mut ops: Vec<SealedOp>,
    covers: bool,
) -> Result<SignedOps, SyncError<S::Error>> {
    if !store.keeps_signatures() {
        return Ok((ops, Vec::new()));
    }
    let me = store.device_id();
    let mut last: BTreeMap<DeviceId, (u64, OpId)> = BTreeMap::new();
    for op in &ops {
        last.insert(op.op().author, (op.op().seq, op.id()));
    }
    let mut unsigned = BTreeSet::new();
    for (author, (seq, id)) in last {
        // This replica signs its own chain when it sends it.
        if author == me {
            continue;
        }
        let signed = store
            .tip_signature(&author, seq)
            .map_err(SyncError::Store)?
            .is_some_and(|t| t.op == id);
        if !signed {
            unsigned.insert(author);
        }
    }
    if unsigned.is_empty() {
        return Ok((ops, Vec::new()));
    }
    let tips = if covers {
        with_covers(store, &mut ops, &mut unsigned)?
    } else {
        Vec::new()
    };
    Ok((signed_only(store, ops, unsigned)?, tips))
}

/// The bundle of `ops` (covers included, with their signatures `covers`), chains of `exact`
/// authors (and the covers') sent as exact ops.
fn encode_bundle<S: PeerBook>(
    store: &S,
    ops: &[SealedOp],
    covers: Vec<SignedTip>,
    exact: &BTreeSet<DeviceId>,
) -> Result<Vec<u8>, SyncError<S::Error>> {
    let mut exact = exact.clone();
    exact.extend(covers.iter().map(|t| t.author));
    let located = BranchTip {
        view: View(store),
        tips: covers,
    };
    // Too much for one message: a session would send it in parts.
    let segments = encode_segments_exact_for(ops, &located, &exact).map_err(|e| match e {
        WireError::TooLarge { what, got, limit } => WireError::TooLarge {
            what: match what {
                AUTHORS_IN_A_MESSAGE => {
                    "authors in a bundle (use a TCP sync, which sends in parts)"
                }
                SEGMENTS_IN_A_MESSAGE => {
                    "segments in a bundle (use a TCP sync, which sends in parts)"
                }
                other => other,
            },
            got,
            limit,
        },
        other => other,
    })?;
    let segments = compress(segments);
    Ok(message::encode(&Message::Bundle {
        replica: store.device_id(),
        created_ms: store.calibrated_ms(),
        segments,
    }))
}

/// Verifies and applies a bundle. Nothing is applied if any part of it is damaged or forged,
/// except that the ops of an author whose chain forks from this replica's are set aside and
/// the fork reported.
pub fn import<S: PeerBook>(store: &mut S, bytes: &[u8]) -> Result<Imported, SyncError<S::Error>> {
    match message::decode(bytes)? {
        Message::Bundle {
            replica,
            created_ms,
            segments,
        } => {
            let mut progress = crate::SyncProgress {
                bytes_received: bytes.len() as u64,
                ..crate::SyncProgress::default()
            };
            store.progress(&progress);
            let received = apply_segments(store, &segments)?;
            let a = &received.applied;
            progress.received_ops = (a.stored + a.duplicates + a.missing) as u64;
            store.progress(&progress);
            Ok(Imported {
                from: replica,
                created_ms,
                received,
            })
        }
        other => Err(SyncError::Protocol(format!(
            "this file is a {} message, not a bundle",
            other.kind()
        ))),
    }
}

/// A summary file: what this replica holds.
pub fn summary_file<S: SyncStore>(store: &S) -> Vec<u8> {
    message::encode(&Message::SummaryFile {
        replica: store.device_id(),
        summary: store.summary(),
    })
}

/// Reads a summary file: who wrote it and what it held. (Its errors say "heads file", the
/// CLI's word until its messages next change.)
pub fn read_summary_file(bytes: &[u8]) -> Result<(DeviceId, Summary), SyncError<Infallible>> {
    match message::decode(bytes)? {
        Message::SummaryFile { replica, summary } => Ok((replica, summary)),
        other => Err(SyncError::Protocol(format!(
            "this file is a {} message, not a heads file",
            other.kind()
        ))),
    }
}

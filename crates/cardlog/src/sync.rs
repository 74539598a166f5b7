//! Sync on a [`Replica`]: sessions over any transport, bundle files, and what the replica
//! remembers about its peers (what each acknowledged, forks, the last clock calibration),
//! which answers the "needs sync" question. Protocol and formats: docs/SYNC.md.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use bincode::config::{self, Configuration, LittleEndian, Varint};
use bincode::{Decode, Encode};
use cardlog_core::codec::{decode_exact_with, encode_with};
use cardlog_core::replay::ChainTip;
use cardlog_core::MemberRole;
use cardlog_core::{ContactId, DeviceId, OpId, Refusal, SealedOp, SignedTip};
use cardlog_store::keys::meta;
use cardlog_store::{ChangeCursor, StoreError};
use cardlog_sync::bundle::{self, Exported, Imported};
use cardlog_sync::secure::{Access, Expect, Identity};
use cardlog_sync::transport::{self, Retry, Transport};
use cardlog_sync::{
    Applied, AuthError, Fork, Gate, PeerBook, Role, SyncReport, SyncStore, TakenBack,
};

use crate::changes::ChangeSource;

use crate::error::Error;
use cardlog_core::Summary;

use crate::replica::Replica;

/// A replica several threads use while one of them syncs it ([`Replica::sync_tcp_shared`]):
/// each call takes the lock for its own duration (`shared.lock().save(…)`).
pub type SharedReplica = cardlog_sync::transport::Shared<Replica>;

/// Ops stored per lock of a [`SharedReplica`] while a session applies a message
/// (`SyncStore::apply_shared`): about 20 ms of work with its sync, so a save waits about
/// that long rather than for a whole message (docs/PERFORMANCE.md, "Apps' API").
pub const SHARED_STEP_OPS: usize = 512;

/// `ops` cut into steps of [`SHARED_STEP_OPS`], a step running on to the end of its last
/// author's run of ops where that author is `removed`: the store takes a removed device's ops
/// proved only by a cover when one call brings them with it (docs/SYNC.md, "Signatures"), so
/// such a run is not split (it is at most what one message brings of a removed device: its
/// void ops within the void window and a cover).
fn steps_of(ops: &[SealedOp], removed: impl Fn(&DeviceId) -> bool) -> Vec<&[SealedOp]> {
    let mut steps = Vec::new();
    let mut rest = ops;
    while !rest.is_empty() {
        let mut end = SHARED_STEP_OPS.min(rest.len());
        let author = |i: usize| rest.get(i).map(|op| op.op().author);
        while end < rest.len()
            && author(end) == author(end.saturating_sub(1))
            && author(end).is_some_and(|a| removed(&a))
        {
            end += 1;
        }
        let (step, after) = rest.split_at(end);
        steps.push(step);
        rest = after;
    }
    steps
}

/// What this replica knows about a peer it synced with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerInfo {
    /// The peer's device id.
    pub id: DeviceId,
    /// What the peer acknowledged holding of the authors held here (per author, the highest
    /// seen). Authors held only by the peer are not kept: a peer could name any number.
    pub acked: Summary,
    /// This replica's calibrated time at the last session, in ms since the epoch.
    pub last_ms: u64,
}

/// The last clock calibration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CalibrationInfo {
    /// The peer calibrated to.
    pub peer: DeviceId,
    /// The offset applied to the wall clock, in ms (positive: the wall clock was behind).
    pub offset_ms: i64,
    /// The measured round trip, in ms.
    pub rtt_ms: u64,
    /// When (calibrated ms since the epoch).
    pub at_ms: u64,
    /// Whether the offset is beyond the skew bound (5 minutes by default): the device's
    /// clock is badly wrong and the user should be told.
    pub beyond_bound: bool,
    /// Whether the clock still applies it: not when someone set the clock since, or when it
    /// is too old to tell (docs/SEMANTICS.md, "Time"; saves then use the clock as it reads).
    pub in_force: bool,
}

/// The device a replica is paired with: the relay it syncs through (or, for a device that
/// joined a book, the member it first syncs with). Sessions with it check its key; a replica
/// that holds no membership yet admits only it.
#[derive(serde::Serialize, Debug, Clone, PartialEq, Eq)]
pub struct Pairing {
    /// The paired device.
    pub device: DeviceId,
    /// Where it is served (`host:port`), if given (`address` in its serde shape).
    #[serde(rename = "address")]
    pub addr: Option<String>,
}

impl serde::Serialize for CalibrationInfo {
    /// `{peer, offset_ms, rtt_ms, at, beyond_bound, in_force}`, `at` as RFC 3339
    /// (docs/CLI.md, `status --json`).
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = s.serialize_map(Some(6))?;
        map.serialize_entry("peer", &self.peer)?;
        map.serialize_entry("offset_ms", &self.offset_ms)?;
        map.serialize_entry("rtt_ms", &self.rtt_ms)?;
        map.serialize_entry("at", &cardlog_core::json::rfc3339(self.at_ms))?;
        map.serialize_entry("beyond_bound", &self.beyond_bound)?;
        map.serialize_entry("in_force", &self.in_force)?;
        map.end()
    }
}

/// A peer's record as written before records named a place in the op log: what it
/// acknowledged, listed per author (docs/FORMAT.md, "Store"). Still read; the record of
/// before (`mpeers`) holds these.
#[derive(Encode, Decode, Default)]
struct PeerRecord {
    acked: Vec<(DeviceId, ChainTip)>,
    last_ms: u64,
}

/// A peer's record as written now, after the byte [`PEER_MARK`]: the peer holds every op of
/// this replica's op log up to `place` (a [`cardlog_store::ChangeCursor`]'s short bytes, about
/// 25, or its 72 bytes in a record written before session 38: the log's end when the record
/// was written, or the place before the first op the peer lacked, which ever needs fewer
/// exceptions), but for the authors in `except`, of which it holds the given tip (`None`:
/// nothing). After a session that converged `except` is empty, so a relay's record of each of
/// its thousands of devices is under 40 bytes rather than an entry
/// per author of the book (issue 24's relay directory); after one while others wrote, it
/// lists the authors the peer holds past its place, not every author that wrote meanwhile.
/// The place checks itself ([`cardlog_store::Store::holds_cursor`]): in a log cut shorter
/// than the place since (a crash after a bulk write, a rebuild that accepted a shorter log, a
/// backup restored) and grown back, the record reads as a peer never met, not as one that
/// holds what was written there since. A cut past the place passes the check: the record's
/// tips then say what the peer holds, by seq, of chains that may have been written anew.
#[derive(Encode, Decode)]
struct PeerMark {
    place: Vec<u8>,
    except: Vec<(DeviceId, Option<ChainTip>)>,
    last_ms: u64,
}

// A store keeps another device's signatures at most a message's ops apart, so a session that
// cuts a message anywhere ends it at a signed op within one more message's ops.
const _: () =
    assert!(cardlog_store::SIGNATURE_SPACING as usize == cardlog_sync::session::CHUNK_OPS);

/// How long a record is kept of a peer that is a member of the book and has not synced since:
/// two years. Past it the peer counts as never met ("needs sync" names everything for it).
const PEER_KEPT_MS: u64 = 2 * 365 * DAY_MS;

/// How long a record is kept of a peer that is no current member (removed, or met only through
/// a summary file) and has not synced since: 30 days.
const PEER_GONE_KEPT_MS: u64 = 30 * DAY_MS;

const DAY_MS: u64 = 24 * 60 * 60 * 1000;

/// The first byte of a [`PeerMark`] record. A [`PeerRecord`] starts with the varint of its
/// list's length, and no varint starts with 0xff, so the two never read as each other.
const PEER_MARK: u8 = 0xff;

/// A peer record as stored, in either form.
enum StoredPeer {
    Listed(PeerRecord),
    Marked(PeerMark),
}

impl StoredPeer {
    /// `None` if the bytes are neither form exactly.
    fn decode(bytes: &[u8]) -> Option<StoredPeer> {
        match bytes.split_first() {
            Some((&PEER_MARK, rest)) => decode(rest, "peer").ok().map(StoredPeer::Marked),
            _ => decode(bytes, "peer").ok().map(StoredPeer::Listed),
        }
    }

    /// The calibrated time of the peer's last session.
    fn last_ms(&self) -> u64 {
        match self {
            StoredPeer::Listed(record) => record.last_ms,
            StoredPeer::Marked(mark) => mark.last_ms,
        }
    }
}

impl PeerMark {
    fn encode(&self) -> Vec<u8> {
        let mut bytes = vec![PEER_MARK];
        bytes.extend_from_slice(&encode(self));
        bytes
    }
}

type ForkRecord = (DeviceId, u64, OpId, OpId);

/// Most memory decoding one meta record may claim, in bytes. The peers and forks records grow
/// with the peers, authors and forks met, far beyond one op, so they do not decode under the
/// op format's [`cardlog_core::codec::limits::DECODED_BYTES_MAX`]; bincode counts each entry
/// at its size in memory (about 70 bytes per acknowledged author).
const META_DECODED_BYTES_MAX: usize = 256 << 20;

/// The format's bincode configuration (docs/FORMAT.md) with the meta records' decode limit;
/// the limit does not change the bytes.
type MetaConfig = Configuration<LittleEndian, Varint, config::Limit<META_DECODED_BYTES_MAX>>;

fn meta_config() -> MetaConfig {
    config::standard()
        .with_little_endian()
        .with_variable_int_encoding()
        .with_limit::<META_DECODED_BYTES_MAX>()
}

pub(crate) fn encode<T: Encode>(value: &T) -> Vec<u8> {
    encode_with(value, meta_config())
}

pub(crate) fn decode<T: Decode<()>>(bytes: &[u8], what: &str) -> Result<T, Error> {
    decode_exact_with(bytes, meta_config())
        .ok_or_else(|| Error::Store(StoreError::undecodable(&format!("meta {what}"))))
}

impl Replica {
    /// The peers kept in the one record of before peers had a key each (`mpeers`), until
    /// the next peer write splits it (docs/FORMAT.md, "Store").
    ///
    /// Peer records are bookkeeping, not the book: one that does not decode (a damaged
    /// disk, or a record of before poisoned by an older cardlog's unbounded summaries) counts
    /// as a peer never met, which over-reports "needs sync" for it until its next session
    /// writes it again, rather than failing every session and `status`.
    fn peers_of_before(&self) -> Result<BTreeMap<DeviceId, PeerRecord>, Error> {
        Ok(match self.store.meta(meta::PEERS)? {
            Some(v) => decode::<Vec<(DeviceId, PeerRecord)>>(&v, "peers")
                .map(|records| records.into_iter().collect())
                .unwrap_or_default(),
            None => BTreeMap::new(),
        })
    }

    /// Every peer this replica synced with and what it acknowledged: each under its own
    /// key, and those still only in the record of before; one that does not decode, or names
    /// a place not in the op log as it is, is left out (see [`Replica::peers_of_before`]).
    fn peer_records(&self) -> Result<BTreeMap<DeviceId, PeerInfo>, Error> {
        let mut infos = BTreeMap::new();
        for (id, record) in self.peers_of_before()? {
            infos.insert(id, self.peer_info(id, StoredPeer::Listed(record))?);
        }
        for (id, bytes) in self.store.peer_records()? {
            match StoredPeer::decode(&bytes) {
                Some(stored) => {
                    infos.insert(id, self.peer_info(id, stored)?);
                }
                None => {
                    infos.remove(&id);
                }
            }
        }
        Ok(infos
            .into_iter()
            .filter_map(|(id, info)| Some((id, info?)))
            .collect())
    }

    /// One peer's record, if this replica synced with it and the record can be read (see
    /// [`Replica::peer_records`]).
    fn peer_record(&self, peer: &DeviceId) -> Result<Option<PeerInfo>, Error> {
        let stored = match self.store.peer_record(peer)? {
            Some(bytes) => StoredPeer::decode(&bytes),
            None => self.peers_of_before()?.remove(peer).map(StoredPeer::Listed),
        };
        match stored {
            Some(stored) => self.peer_info(*peer, stored),
            None => Ok(None),
        }
    }

    /// What a stored record says the peer acknowledged, per author held here (and per
    /// author it listed); `None` for a mark whose place is not in the op log as it is (see
    /// [`PeerMark`]).
    fn peer_info(&self, id: DeviceId, stored: StoredPeer) -> Result<Option<PeerInfo>, Error> {
        let mark = match stored {
            StoredPeer::Listed(record) => {
                return Ok(Some(PeerInfo {
                    id,
                    acked: record.acked.into_iter().collect(),
                    last_ms: record.last_ms,
                }))
            }
            StoredPeer::Marked(mark) => mark,
        };
        let place = if mark.place.len() == cardlog_store::CHANGE_CURSOR_BYTES {
            ChangeCursor::from_bytes(&mark.place).ok()
        } else {
            ChangeCursor::from_short_bytes(self.store.device_id(), &mark.place)
        };
        let place = match place {
            Some(place) if self.store.holds_cursor(&place) => place,
            _ => return Ok(None),
        };
        let at = place.offset();
        let except: BTreeMap<DeviceId, Option<ChainTip>> = mark.except.into_iter().collect();
        let mut acked: Summary = except
            .iter()
            .filter_map(|(author, tip)| Some((*author, (*tip)?)))
            .collect();
        // (Nothing written since the record: every author's tip is the one held now.)
        let unchanged = at == self.store.log_len();
        for (author, tip) in Replica::summary(self) {
            if except.contains_key(author) {
                continue;
            }
            if unchanged {
                acked.insert(*author, *tip);
            } else if let Some(tip) = self.store.tip_before(author, at)? {
                acked.insert(*author, tip);
            }
        }
        Ok(Some(PeerInfo {
            id,
            acked,
            last_ms: mark.last_ms,
        }))
    }

    /// Removes the records of peers not met for longer than they are kept
    /// ([`PEER_KEPT_MS`], [`PEER_GONE_KEPT_MS`]), and those that do not decode, at calibrated
    /// time `now`: a relay's records stay bounded by the devices that still sync with it.
    /// Run by [`PeerBook::record_peer`] at its first record after open and then on the first
    /// of each (calibrated) day; each sweep reads every record, a few bytes each.
    fn sweep_peers(&mut self, now: u64) -> Result<(), Error> {
        let membership = self.membership();
        let open_book = membership.founder().is_none();
        let mut expired = Vec::new();
        for (id, bytes) in self.store.peer_records()? {
            let last_ms = StoredPeer::decode(&bytes).map_or(0, |stored| stored.last_ms());
            let member = open_book || membership.member(&id).is_some_and(|m| m.removed.is_none());
            let kept = if member {
                PEER_KEPT_MS
            } else {
                PEER_GONE_KEPT_MS
            };
            if now.saturating_sub(last_ms) > kept {
                expired.push(id);
            }
        }
        if !expired.is_empty() {
            self.store.remove_peer_records(&expired)?;
        }
        Ok(())
    }

    /// The peers this replica has synced with, by id.
    pub fn peers(&self) -> Result<Vec<PeerInfo>, Error> {
        Ok(self.peer_records()?.into_values().collect())
    }

    /// The contacts with changes held here that `peer` has not acknowledged: the "needs
    /// sync" badge. Every change counts, whichever device made it, since this replica could
    /// pass it on. A peer never met has acknowledged nothing. Work grows with what the peer
    /// lacks, not with the history.
    pub fn needs_sync(&self, peer: &DeviceId) -> Result<BTreeSet<ContactId>, Error> {
        let acked: Summary = self
            .peer_record(peer)?
            .map(|info| info.acked)
            .unwrap_or_default();
        let mut out = BTreeSet::new();
        let cutoffs = self.membership().cutoffs();
        for op in self.ops_since(&acked)? {
            // A void op changes nothing the peer would show.
            if cutoffs.voids(&op.op().author, op.op().seq) {
                continue;
            }
            out.extend(op.op().writes.iter().map(|w| w.contact));
        }
        Ok(out)
    }

    /// Forks found by sync or import, sorted: two different ops at one place of an author's
    /// chain. Their ops are never merged; the author's later ops stay apart. One per place
    /// (author, seq, op held here): the first other op met there.
    pub fn forks(&self) -> Result<Vec<Fork>, Error> {
        Ok(match self.store.meta(meta::FORKS)? {
            Some(v) => decode::<Vec<ForkRecord>>(&v, "forks")?
                .into_iter()
                .map(|(author, seq, ours, theirs)| Fork {
                    author,
                    seq,
                    ours,
                    theirs,
                })
                .collect(),
            None => Vec::new(),
        })
    }

    /// The last clock calibration, if any session made one.
    pub fn last_calibration(&self) -> Result<Option<CalibrationInfo>, Error> {
        let Some(v) = self.store.meta(meta::CALIBRATION)? else {
            return Ok(None);
        };
        let (peer, offset_ms, rtt_ms, at_ms) =
            decode::<(DeviceId, i64, u64, u64)>(&v, "calibration")?;
        let in_force = self.clock.offset_ms() == offset_ms
            && self.clock.anchor().is_some()
            && self
                .clock
                .calibration_holds(self.wall.now_ms(), self.wall.monotonic_ms());
        Ok(Some(CalibrationInfo {
            peer,
            offset_ms,
            rtt_ms,
            at_ms,
            beyond_bound: offset_ms.unsigned_abs() > self.clock.skew_bound_ms(),
            in_force,
        }))
    }

    /// Pairs this replica with `device` (its relay, or the member a joining device first
    /// syncs with), served at `addr` if given: sessions with the paired relay refuse any other
    /// device ([`Replica::sync_paired`]), and a replica that holds no membership yet admits it
    /// and no other (once the membership is held, it must name the device like any peer).
    /// Replaces an earlier pairing.
    pub fn pair(&mut self, device: DeviceId, addr: Option<&str>) -> Result<(), Error> {
        let record = (device, addr.map(str::to_owned));
        self.store.put_meta(meta::PAIRED, encode(&record))?;
        self.durable()
    }

    /// The pairing ([`Replica::pair`]), if any.
    pub fn paired(&self) -> Result<Option<Pairing>, Error> {
        let Some(v) = self.store.meta(meta::PAIRED)? else {
            return Ok(None);
        };
        let (device, addr) = decode::<(DeviceId, Option<String>)>(&v, "paired")?;
        Ok(Some(Pairing { device, addr }))
    }

    /// Runs one encrypted sync session over `transport` (see [`cardlog_sync::secure`]): the
    /// peer must be a member of this replica's book, or the paired device.
    pub fn sync_over<T: Transport>(
        &mut self,
        role: Role,
        transport: &mut T,
    ) -> Result<SyncReport, SyncError> {
        self.as_source(ChangeSource::Sync, |r| {
            transport::run_secure(role, r, transport, Expect::Member)
        })
    }

    /// Connects to a served replica at `addr` (`host:port`) and syncs with it; waits at most
    /// `timeout` for each message. A server at capacity that answers busy is tried again
    /// after the wait it asks for, with backoff ([`Retry::default`]: three retries), before
    /// [`SyncError::Busy`] is returned. The peer must be a member of this replica's book; if
    /// `addr` is the paired relay's address, it must be that relay.
    pub fn sync_tcp(&mut self, addr: &str, timeout: Duration) -> Result<SyncReport, SyncError> {
        let expect = self.expect_at(addr)?;
        self.as_source(ChangeSource::Sync, |r| {
            transport::sync_tcp(r, addr, timeout, expect, Retry::default())
        })
    }

    /// Syncs the replica in `shared` with the served replica at `addr`, as
    /// [`Replica::sync_tcp`] does, while other threads keep using it: the session takes the
    /// lock for each store call only (building one message, or storing one step of
    /// [`SHARED_STEP_OPS`] ops of a received one), so a save or read from a UI thread waits
    /// for one such call, never the whole session.
    /// Saves made meanwhile are as durable as ever; the session sends them if they are made
    /// before it builds its last message, and the next session does otherwise. Changes the
    /// session makes are reported to subscribers as `Sync`.
    pub fn sync_tcp_shared(
        shared: &SharedReplica,
        addr: &str,
        timeout: Duration,
    ) -> Result<SyncReport, SyncError> {
        let expect = shared.lock().expect_at(addr)?;
        let mut session_side = shared.clone();
        let out = transport::sync_tcp(&mut session_side, addr, timeout, expect, Retry::default());
        // What the session changed outside the applies (a take back, a settled fork).
        shared.lock().as_source(ChangeSource::Sync, |_| ());
        out
    }

    /// Which peer a session with `addr` must reach: the paired relay when `addr` is its
    /// address, any member of the book otherwise.
    fn expect_at(&self, addr: &str) -> Result<Expect, SyncError> {
        Ok(match self.paired().map_err(SyncError::Store)? {
            Some(p) if p.addr.as_deref() == Some(addr) => Expect::Device(p.device),
            _ => Expect::Member,
        })
    }

    /// The source the changes of a received message are reported as: the sync layer drives
    /// an apply, so a session served or run without `sync_over` and friends is still a
    /// `Sync` (an import keeps `Import`).
    fn applying_source(&self) -> ChangeSource {
        match self.hub.source {
            ChangeSource::Save => ChangeSource::Sync,
            other => other,
        }
    }

    /// Syncs with the paired relay at its address; the peer must be that relay.
    pub fn sync_paired(&mut self, timeout: Duration) -> Result<SyncReport, SyncError> {
        let Some(Pairing {
            device,
            addr: Some(addr),
        }) = self.paired().map_err(SyncError::Store)?
        else {
            return Err(SyncError::Transport(
                "this replica is not paired with a relay address (`cardlog pair DEVICE ADDR`)"
                    .to_owned(),
            ));
        };
        self.as_source(ChangeSource::Sync, |r| {
            transport::sync_tcp(r, &addr, timeout, Expect::Device(device), Retry::default())
        })
    }

    /// A bundle of the ops a replica holding `since` lacks (every op when `None`).
    pub fn export_bundle(&self, since: Option<&Summary>) -> Result<Vec<u8>, SyncError> {
        bundle::export(self, since)
    }

    /// [`Replica::export_bundle`], with how many ops the bundle holds and by how many
    /// devices (what `cardlog export` reports).
    pub fn export_bundle_counted(&self, since: Option<&Summary>) -> Result<Exported, SyncError> {
        bundle::export_counted(self, since)
    }

    /// Verifies and applies a bundle; importing it again changes nothing.
    pub fn import_bundle(&mut self, bytes: &[u8]) -> Result<Imported, SyncError> {
        self.as_source(ChangeSource::Import, |r| bundle::import(r, bytes))
    }

    /// Remembers what a summary file says its writer holds, so that [`Replica::needs_sync`]
    /// works for peers met only through files. This replica's own summary is ignored.
    pub fn record_summary(&mut self, peer: DeviceId, summary: &Summary) -> Result<(), Error> {
        if peer == self.id() {
            return Ok(());
        }
        PeerBook::record_peer(self, peer, summary)
    }

    /// A summary file: what this replica holds, for a peer to export only what it lacks.
    pub fn summary_file(&self) -> Vec<u8> {
        bundle::summary_file(self)
    }
}

/// Why a sync session, an import or an export of a replica failed; a failure of the replica's
/// own store is [`cardlog_sync::SyncError::Store`] with the replica's [`Error`], matched by
/// its type.
pub type SyncError = cardlog_sync::SyncError<Error>;

impl SyncStore for Replica {
    type Error = Error;

    fn device_id(&self) -> DeviceId {
        self.id()
    }

    fn summary(&self) -> Summary {
        Replica::summary(self).clone()
    }

    /// The same summary but for void ops past a removed author's cutoff: both sides hold its
    /// chain at least up to the cutoff, and differ only past it.
    fn converged_with(&self, theirs: &Summary) -> bool {
        let mine = Replica::summary(self);
        let cutoffs = self.membership().cutoffs();
        let authors: BTreeSet<&DeviceId> = mine.keys().chain(theirs.keys()).collect();
        authors
            .into_iter()
            .all(|author| match (mine.get(author), theirs.get(author)) {
                (Some(a), Some(b)) if a == b => true,
                (a, b) => {
                    let (a, b) = (a.map_or(0, |t| t.seq), b.map_or(0, |t| t.seq));
                    // Both hold the chain up to the cutoff: what differs is void.
                    cutoffs.cutoff(author).is_some_and(|c| a.min(b) >= c)
                }
            })
    }

    fn ops_since(&self, peer: &Summary) -> Result<Vec<SealedOp>, Error> {
        Replica::ops_since(self, peer)
    }

    fn places_since(&self, peer: &Summary) -> Result<Option<Vec<u64>>, Error> {
        Ok(Some(self.store.offsets_since(peer)?))
    }

    fn ops_at_places(&self, places: &[u64]) -> Result<Vec<SealedOp>, Error> {
        Ok(self.store.ops_at_offsets(places)?)
    }

    fn op_by_id(&self, id: &OpId) -> Result<Option<SealedOp>, Error> {
        self.op(id)
    }

    fn op_at(&self, author: &DeviceId, seq: u64) -> Result<Option<SealedOp>, Error> {
        Ok(self.store.op_by_seq(author, seq)?)
    }

    fn keeps_signatures(&self) -> bool {
        true
    }

    fn tip_signature(&self, author: &DeviceId, seq: u64) -> Result<Option<SignedTip>, Error> {
        Ok(self.store.signature(author, seq)?)
    }

    /// Membership and signatures as [`Replica::admit`] checks them, as if nothing of the
    /// author were held here.
    fn authorship(&self, ops: &[SealedOp], tips: &[SignedTip]) -> Result<(), Refusal> {
        let (admission, _) = self.membership().admit(ops, tips, |_, _| None);
        admission.refused.into_iter().next().map_or(Ok(()), Err)
    }

    /// Refused authors' ops are left out and reported; the rest is stored as
    /// [`Replica::apply`] stores (all or nothing for replay refusals).
    fn apply(&mut self, ops: &[SealedOp], tips: &[SignedTip]) -> Result<Applied, Error> {
        let admitted = self.admit(ops, tips);
        let source = self.applying_source();
        let report = self.as_source(source, |r| r.apply_admitted(&admitted.ops, &admitted.tips))?;
        let mut missing = report.missing.len();
        if missing > 0 {
            missing = missing.saturating_sub(self.reissue_own_naming_withdrawn(&admitted.ops)?);
            self.hand_on_naming_withdrawn(&admitted.ops, &admitted.tips)?;
        }
        Ok(Applied {
            stored: report.stored,
            duplicates: report.duplicates,
            missing,
            refused: admitted.refused,
            void: admitted.void,
        })
    }

    /// Checked whole under one lock (membership, signatures), then stored about
    /// [`SHARED_STEP_OPS`] at a time (a removed device's run of ops is not split), the lock
    /// taken per step; ops of a step that wait for one of a later step are carried into it,
    /// so the steps store what one apply would. Each step is durable and leaves nothing held
    /// back for the next save to write.
    fn apply_shared(
        shared: &SharedReplica,
        ops: &[SealedOp],
        tips: &[SignedTip],
    ) -> Result<Applied, Error> {
        let lock = || shared.lock();
        let (admitted, source, removed) = {
            let r = lock();
            let admitted = r.admit(ops, tips);
            // (With the membership ops the batch brings, as the store decides.)
            let removed = admitted
                .ops
                .iter()
                .filter(|op| op.op().is_membership())
                .fold(r.membership().clone(), |m, op| m.with(op))
                .cutoffs();
            (admitted, r.applying_source(), removed)
        };
        let mut applied = Applied {
            refused: admitted.refused,
            void: admitted.void,
            ..Applied::default()
        };
        let mut steps = steps_of(&admitted.ops, |a| removed.cutoff(a).is_some());
        if steps.is_empty() {
            // Nothing to store, but the call still does what `apply` does with the tips.
            steps.push(&[]);
        }
        let last = steps.len().saturating_sub(1);
        let mut carried: Vec<SealedOp> = Vec::new();
        for (i, step) in steps.into_iter().enumerate() {
            if i > 0 {
                // A save that waited during the last step goes before this one.
                shared.make_way();
            }
            let mut batch = std::mem::take(&mut carried);
            batch.extend_from_slice(step);
            // The signatures are kept with the first step, before any of the ops; later steps
            // get those of their ops' authors again, so the store sees which signed op each
            // author's ops are proved by (a kept signature is not written twice).
            let step_tips: Vec<SignedTip> = if i == 0 {
                admitted.tips.clone()
            } else {
                let authors: BTreeSet<DeviceId> = batch.iter().map(|op| op.op().author).collect();
                admitted
                    .tips
                    .iter()
                    .filter(|t| authors.contains(&t.author))
                    .copied()
                    .collect()
            };
            let report = {
                let mut r = lock();
                let report = r.as_source(source, |r| r.apply_admitted(&batch, &step_tips))?;
                // The register changes held back are written now, by the session, rather
                // than by whichever save comes next.
                r.store.settle()?;
                report
            };
            applied.stored += report.stored;
            applied.duplicates += report.duplicates;
            if i == last {
                applied.missing = report.missing.len();
                if applied.missing > 0 {
                    let mut r = lock();
                    let handled = r.reissue_own_naming_withdrawn(&admitted.ops)?;
                    applied.missing = applied.missing.saturating_sub(handled);
                    r.hand_on_naming_withdrawn(&admitted.ops, &admitted.tips)?;
                }
            } else {
                let waiting: BTreeSet<OpId> = report.missing.iter().map(|(id, _)| *id).collect();
                carried = batch
                    .into_iter()
                    .filter(|op| waiting.contains(&op.id()))
                    .collect();
            }
        }
        Ok(applied)
    }

    fn is_refusal(error: &Error) -> bool {
        matches!(
            error,
            Error::Replay(_) | Error::Store(StoreError::Refused(_))
        )
    }

    /// A reopen that fails (the disk still full) leaves the replica refusing writes; the
    /// next failed session tries again.
    fn reopen_if_poisoned(&mut self) -> bool {
        Replica::reopen_if_poisoned(self).unwrap_or(false)
    }
}

impl Gate for Replica {
    fn identity(&self) -> Identity {
        let book = self.book();
        if let Some(identity) = self.session_identity.get() {
            if identity.book() == Some(book) && identity.device() == self.id() {
                return Identity::clone(identity);
            }
        }
        let identity = Identity::new(book, self.store.device_key());
        let _ = self.session_identity.set(Box::new(identity.clone()));
        identity
    }

    /// A current member of the book (a read member may not push). While this replica holds
    /// no membership yet (it joined and never synced), only the paired device.
    fn admit_peer(&self, peer: &DeviceId) -> Result<Access, AuthError> {
        if let Some(member) = self.membership().member(peer) {
            if member.removed.is_some() {
                return Err(AuthError::Removed(*peer));
            }
            return Ok(Access {
                push: member.role != MemberRole::Read,
            });
        }
        if self.membership().founder().is_some() {
            return Err(AuthError::NotAMember(*peer));
        }
        // A pairing that cannot be read admits no one.
        let paired = self.paired().ok().flatten().map(|p| p.device);
        if paired == Some(*peer) {
            return Ok(Access { push: true });
        }
        Err(AuthError::MembersUnknown(*peer))
    }

    fn pushes(&self) -> bool {
        self.membership()
            .member(&self.id())
            .is_none_or(|m| m.role != MemberRole::Read)
    }
}

impl Replica {
    /// Whether `peer` serves as this replica's time reference: a relay of its book, not
    /// removed (docs/SEMANTICS.md, "Time"). Devices meeting directly leave each other's clocks
    /// alone.
    pub fn is_time_reference(&self, peer: &DeviceId) -> bool {
        self.membership()
            .member(peer)
            .is_some_and(|m| m.role == MemberRole::Relay && m.removed.is_none())
    }
}

impl PeerBook for Replica {
    fn progress(&mut self, progress: &cardlog_sync::SyncProgress) {
        if let Some(sink) = self.hub.progress.as_mut() {
            sink(progress);
        }
    }

    fn wall_ms(&self) -> u64 {
        self.wall.now_ms()
    }

    fn calibrated_ms(&self) -> u64 {
        self.clock
            .calibrated_at(self.wall.now_ms(), self.wall.monotonic_ms())
    }

    fn calibrate(
        &mut self,
        peer: DeviceId,
        peer_ms: u64,
        sent_ms: u64,
        received_ms: u64,
    ) -> Result<Option<i64>, Error> {
        // Only a relay of the book is a time reference (docs/SEMANTICS.md, "Time"): a device
        // calibrating to whichever peer it met would take on that peer's wrong clock.
        if !self.is_time_reference(&peer) {
            return Ok(None);
        }
        // The record goes in first so that Replica::calibrate's one flush covers both.
        let offset =
            self.clock
                .clone()
                .calibrate(peer_ms, sent_ms, received_ms, self.wall.monotonic_ms());
        let at_ms = self.wall.now_ms().saturating_add_signed(offset);
        let record = (peer, offset, received_ms.saturating_sub(sent_ms), at_ms);
        self.store.put_meta(meta::CALIBRATION, encode(&record))?;
        Replica::calibrate(self, peer_ms, sent_ms, received_ms).map(Some)
    }

    fn record_peer(&mut self, peer: DeviceId, acked: &Summary) -> Result<(), Error> {
        let mut merged = self
            .peer_record(&peer)?
            .map(|info| info.acked)
            .unwrap_or_default();
        // Only authors held here matter to `needs_sync`; keeping only those bounds the record
        // by this replica's authors, whatever a peer's summary claims.
        let held = Replica::summary(self);
        for (author, head) in acked.iter().filter(|(a, _)| held.contains_key(*a)) {
            match merged.get(author) {
                Some(have) if have.seq >= head.seq => {}
                _ => {
                    merged.insert(*author, *head);
                }
            }
        }
        // What the peer acknowledged is written as this replica's op log now, but for the
        // authors whose tip it holds differently: after a session that converged, none.
        let mut except: Vec<(DeviceId, Option<ChainTip>)> = held
            .iter()
            .filter_map(|(author, tip)| match merged.get(author) {
                Some(theirs) if theirs == tip => None,
                theirs => Some((*author, theirs.copied())),
            })
            .collect();
        let mut place = self.store.change_cursor()?;
        // A relay whose devices sync at once logs other devices' ops while a session runs,
        // which the peer then lacks: as of now, each such author is an exception. The place
        // before the first op the peer lacks may need fewer (the authors of what it holds
        // past there); the smaller of the two is kept (docs/PERFORMANCE.md, "A relay's books
        // in journals").
        if !except.is_empty() {
            if let Some(first) = self.store.first_offset_since(&merged)? {
                let earlier = self.store.cursor_before(first)?;
                let at = earlier.offset();
                let mut there = Vec::new();
                for author in held.keys() {
                    let ours = self.store.tip_before(author, at)?;
                    let theirs = merged.get(author).copied();
                    if theirs != ours {
                        there.push((*author, theirs));
                        if there.len() >= except.len() {
                            break; // no smaller than at the log's end
                        }
                    }
                }
                if there.len() < except.len() {
                    (place, except) = (earlier, there);
                }
            }
        }
        let mark = PeerMark {
            place: place.to_short_bytes(),
            except,
            last_ms: self.calibrated_ms(),
        };
        // Only this peer's record is written (one key per peer); the first write after the
        // record of before splits it, in the same batch.
        let mut writes = vec![(peer, mark.encode())];
        for (other, r) in self.peers_of_before()? {
            if other != peer && self.store.peer_record(&other)?.is_none() {
                writes.push((other, encode(&r)));
            }
        }
        self.store.put_peer_records(writes)?;
        let today = u32::try_from(mark.last_ms / DAY_MS).unwrap_or(u32::MAX);
        if today != self.peers_swept_day {
            self.peers_swept_day = today;
            // Bookkeeping: a sweep that fails (a record key that does not parse, say) fails
            // no session; the next day's sweep tries again.
            let _ = self.sweep_peers(mark.last_ms);
        }
        self.tidy_branches()?;
        self.durable()
    }

    fn record_forks(&mut self, forks: &[Fork]) -> Result<(), Error> {
        let mut all: BTreeSet<ForkRecord> = self
            .forks()?
            .into_iter()
            .map(|f| (f.author, f.seq, f.ours, f.theirs))
            .collect();
        // One record per place in a chain (author, seq, the op held here): however many other
        // ops peers claim for it, the record stays bounded by the ops held.
        let mut places: BTreeSet<(DeviceId, u64, OpId)> =
            all.iter().map(|(a, s, o, _)| (*a, *s, *o)).collect();
        let before = all.len();
        let me = self.id();
        for f in forks {
            // A peer holding a branch of this replica's own chain that it gave up (it withdrew
            // the peer's op there) is not a fork of it: the peer settles once it has the copies.
            if f.author == me && self.store.withdrew(&f.theirs) {
                continue;
            }
            if places.insert((f.author, f.seq, f.ours)) {
                all.insert((f.author, f.seq, f.ours, f.theirs));
            }
        }
        if all.len() == before {
            return Ok(());
        }
        let list: Vec<ForkRecord> = all.into_iter().collect();
        self.store.put_meta(meta::FORKS, encode(&list))?;
        self.durable()
    }

    fn restored(&self) -> bool {
        self.is_restored().unwrap_or(false)
    }

    fn mark_restored(&mut self, peer: DeviceId, at: u64) -> Result<(), Error> {
        self.mark_restored_chain(peer, at)
    }

    fn settle_fork(
        &mut self,
        author: DeviceId,
        theirs: &[SealedOp],
        tips: &[SignedTip],
    ) -> Result<bool, Error> {
        self.settle_fork_of(author, theirs, tips)
    }

    fn withdrew(&self, op: &OpId) -> bool {
        self.gave_up(op)
    }

    fn reissue_waiting(&mut self) -> Result<(), Error> {
        // (A device marked restored re-issues when it takes its chain back.)
        if !self.is_restored()? {
            self.reissue_pending()?;
        }
        Ok(())
    }

    fn waits_to_reissue(&self) -> bool {
        self.store.pending_reissue().is_ok_and(|p| !p.is_empty())
    }

    fn branch_authors(&self) -> BTreeSet<DeviceId> {
        // (Only branches still worth giving: not taken in or given up since.)
        self.kept_branch_authors().unwrap_or_default()
    }

    fn keep_branch(
        &mut self,
        author: DeviceId,
        theirs: &[SealedOp],
        tips: &[SignedTip],
    ) -> Result<(), Error> {
        self.keep_branch_of(author, theirs, tips)
    }

    fn kept_branch(&self, author: &DeviceId) -> Option<(Vec<SealedOp>, SignedTip)> {
        self.kept_branch_of(author).ok().flatten()
    }

    fn cover(
        &self,
        author: &DeviceId,
        seq: u64,
        id: OpId,
    ) -> Result<Option<(Vec<SealedOp>, SignedTip)>, Error> {
        // Only a removed device's ops go with their cover: a member's are proved by its next
        // ops, which a receiver waits for (docs/SYNC.md, "Signatures").
        if self.membership().cutoffs().cutoff(author).is_none() {
            return Ok(None);
        }
        Ok(self.store.cover(author, seq, id)?)
    }

    fn owed(&self, peer: &DeviceId) -> Vec<cardlog_sync::Owed> {
        self.owed_branches(peer).unwrap_or_default()
    }

    fn take_back(
        &mut self,
        peer: Option<(DeviceId, u64)>,
        theirs: &[SealedOp],
        tips: &[SignedTip],
    ) -> Result<Option<TakenBack>, Error> {
        self.take_back_chain(peer, theirs, tips)
    }
}

impl Replica {
    /// Drops the records of forks that `gone` picks (`restore.rs`: of a chain taken back or
    /// settled, of ops withdrawn from a seq on, or to a branch handed on for its author).
    /// Writes nothing when it picks none.
    pub(crate) fn forget_forks_where(&mut self, gone: impl Fn(&Fork) -> bool) -> Result<(), Error> {
        let all = self.forks()?;
        if !all.iter().any(&gone) {
            return Ok(());
        }
        let list: Vec<ForkRecord> = all
            .into_iter()
            .filter(|f| !gone(f))
            .map(|f| (f.author, f.seq, f.ours, f.theirs))
            .collect();
        self.store.put_meta(meta::FORKS, encode(&list))?;
        Ok(())
    }
}

#[cfg(test)]
pub(crate) mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;
    use cardlog_core::Hlc;

    #[test]
    fn a_shared_apply_splits_runs_of_ops_in_steps_but_a_removed_devices() {
        let clock = std::sync::Arc::new(cardlog_core::FakeClock::new(1_795_338_000_000));
        let (one, two) = (DeviceId([1; 16]), DeviceId([2; 16]));
        let mut ops = Vec::new();
        for (author, n) in [(one, 600u32), (two, 10)] {
            let mut device = cardlog_core::Device::new(author, clock.clone());
            for i in 0..n {
                let mut id = [author.0[0]; 16];
                id[..4].copy_from_slice(&i.to_be_bytes());
                let contact = cardlog_core::Contact::new(ContactId(id));
                ops.push(device.create(&contact).unwrap());
            }
        }
        let lens = |steps: Vec<&[SealedOp]>| steps.iter().map(|s| s.len()).collect::<Vec<_>>();
        assert_eq!(lens(steps_of(&ops, |_| false)), [SHARED_STEP_OPS, 98]);
        assert_eq!(lens(steps_of(&ops, |a| *a == one)), [600, 10]);
        assert_eq!(lens(steps_of(&ops, |a| *a == two)), [SHARED_STEP_OPS, 98]);
        assert!(steps_of(&[], |_| true).is_empty());
    }

    /// A relay that met many peers, each acknowledging many authors, keeps a peers record far
    /// larger (in bincode's count of decoded memory) than one op may be; it must read back.
    #[test]
    fn large_meta_records_read_back() {
        let head = ChainTip {
            seq: 1 << 40,
            op: OpId([7; 32]),
            hlc: Hlc {
                wall_ms: 1 << 41,
                counter: 3,
            },
        };
        let peers: Vec<(DeviceId, PeerRecord)> = (0..100u32)
            .map(|p| {
                let acked = (0..1_000u32)
                    .map(|a| {
                        let mut id = [0u8; 16];
                        id[..4].copy_from_slice(&a.to_be_bytes());
                        (DeviceId(id), head)
                    })
                    .collect();
                let mut id = [1u8; 16];
                id[..4].copy_from_slice(&p.to_be_bytes());
                (DeviceId(id), PeerRecord { acked, last_ms: 5 })
            })
            .collect();
        let bytes = encode(&peers);
        let back: Vec<(DeviceId, PeerRecord)> = decode(&bytes, "peers").unwrap();
        assert_eq!(back.len(), 100);
        assert!(back.iter().all(|(_, r)| r.acked.len() == 1_000));
    }

    /// The facade's meta records as golden bytes (docs/FORMAT.md, "Store": `mpeers`,
    /// `mforks`, `mcalibration`, `mclock`, `mpaired`): fixed values encode to exactly these bytes and the
    /// bytes decode back to them, so a refactor cannot change what a stored replica reads.
    const GOLDEN_PEERS_HEX: &str = "01b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b202a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1031111111111111111111111111111111111111111111111111111111111111111fd035e56eea101000011b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2fb2c012222222222222222222222222222222222222222222222222222222222222222fd2c5f56eea101000022fde86156eea1010000";
    /// One peer's record under its own key (`p` + id): the record inside the one above.
    const GOLDEN_PEER_HEX: &str = "02a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1031111111111111111111111111111111111111111111111111111111111111111fd035e56eea101000011b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2fb2c012222222222222222222222222222222222222222222222222222222222222222fd2c5f56eea101000022fde86156eea1010000";
    /// One peer's record as written now: [`PEER_MARK`], then a [`PeerMark`] whose place is 72
    /// bytes of 0x5a (a change cursor's length), with one author held to seq 3 and one not at
    /// all.
    const GOLDEN_PEER_MARK_HEX: &str = "ff485a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a02a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a101031111111111111111111111111111111111111111111111111111111111111111fd035e56eea101000011c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c300fde86156eea1010000";
    const GOLDEN_FORKS_HEX: &str = "01a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a10233333333333333333333333333333333333333333333333333333333333333334444444444444444444444444444444444444444444444444444444444444444";
    const GOLDEN_CALIBRATION_HEX: &str =
        "b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2fcffb74c0a2afdd06556eea1010000";
    const GOLDEN_CLOCK_HEX: &str = "fffffffffad9a400";
    /// `mclock` with the calibration's anchor: offset −1 day, taken at raw
    /// 2026-11-22T09:00:00Z with monotonic reading 5,000; then the same without a monotonic
    /// reading.
    const GOLDEN_CLOCK_ANCHORED_HEX: &str = "fffffffffad9a400000001a2027bd680010000000000001388";
    const GOLDEN_CLOCK_UNMONOTONIC_HEX: &str = "fffffffffad9a400000001a2027bd68000";
    const GOLDEN_PAIRED_HEX: &str =
        "b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2011272656c61792e6578616d706c653a37343437";

    type Peers = Vec<(DeviceId, PeerRecord)>;
    type CalibrationRecord = (DeviceId, i64, u64, u64);

    fn golden_values() -> (Peers, Vec<ForkRecord>, CalibrationRecord, i64) {
        let tip = |seq: u64, b: u8| ChainTip {
            seq,
            op: OpId([b; 32]),
            hlc: Hlc {
                wall_ms: 1_795_000_000_000 + seq,
                counter: u32::from(b),
            },
        };
        let peers = vec![(
            DeviceId([0xb2; 16]),
            PeerRecord {
                acked: vec![
                    (DeviceId([0xa1; 16]), tip(3, 0x11)),
                    (DeviceId([0xb2; 16]), tip(300, 0x22)),
                ],
                last_ms: 1_795_000_001_000,
            },
        )];
        let forks = vec![(DeviceId([0xa1; 16]), 2, OpId([0x33; 32]), OpId([0x44; 32]))];
        let calibration = (
            DeviceId([0xb2; 16]),
            -86_400_000i64,
            42u64,
            1_795_000_002_000u64,
        );
        (peers, forks, calibration, -86_400_000)
    }

    pub(crate) fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    pub(crate) fn unhex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    #[test]
    fn the_pairing_record_matches_its_golden_bytes() {
        let paired = (DeviceId([0xb2; 16]), Some("relay.example:7447".to_owned()));
        assert_eq!(hex(&encode(&paired)), GOLDEN_PAIRED_HEX);
        let back: (DeviceId, Option<String>) = decode(&unhex(GOLDEN_PAIRED_HEX), "paired").unwrap();
        assert_eq!(back, paired);
        let bytes = unhex(GOLDEN_PAIRED_HEX);
        assert!(decode::<(DeviceId, Option<String>)>(&bytes[..bytes.len() - 1], "paired").is_err());
    }

    #[test]
    fn meta_records_match_their_golden_bytes() {
        let (peers, forks, calibration, clock) = golden_values();
        assert_eq!(hex(&encode(&peers)), GOLDEN_PEERS_HEX);
        assert_eq!(hex(&encode(&forks)), GOLDEN_FORKS_HEX);
        assert_eq!(hex(&encode(&calibration)), GOLDEN_CALIBRATION_HEX);
        assert_eq!(hex(&clock.to_be_bytes()), GOLDEN_CLOCK_HEX);
        let back: Vec<(DeviceId, PeerRecord)> = decode(&unhex(GOLDEN_PEERS_HEX), "peers").unwrap();
        assert_eq!(back.len(), 1);
        assert_eq!(back[0].0, peers[0].0);
        assert_eq!(back[0].1.acked, peers[0].1.acked);
        assert_eq!(back[0].1.last_ms, peers[0].1.last_ms);
        assert_eq!(hex(&encode(&peers[0].1)), GOLDEN_PEER_HEX);
        let back: PeerRecord = decode(&unhex(GOLDEN_PEER_HEX), "peer").unwrap();
        assert_eq!(
            (back.acked, back.last_ms),
            (peers[0].1.acked.clone(), peers[0].1.last_ms)
        );
        let mark = PeerMark {
            place: vec![0x5a; 72],
            except: vec![
                (DeviceId([0xa1; 16]), Some(peers[0].1.acked[0].1)),
                (DeviceId([0xc3; 16]), None),
            ],
            last_ms: 1_795_000_001_000,
        };
        assert_eq!(hex(&mark.encode()), GOLDEN_PEER_MARK_HEX);
        match StoredPeer::decode(&unhex(GOLDEN_PEER_MARK_HEX)) {
            Some(StoredPeer::Marked(back)) => {
                assert_eq!(
                    (&back.place, &back.except, back.last_ms),
                    (&mark.place, &mark.except, mark.last_ms)
                );
            }
            _ => panic!("the mark reads back as a mark"),
        }
        assert!(matches!(
            StoredPeer::decode(&unhex(GOLDEN_PEER_HEX)),
            Some(StoredPeer::Listed(_))
        ));
        let back: Vec<ForkRecord> = decode(&unhex(GOLDEN_FORKS_HEX), "forks").unwrap();
        assert_eq!(back, forks);
        let back: (DeviceId, i64, u64, u64) =
            decode(&unhex(GOLDEN_CALIBRATION_HEX), "calibration").unwrap();
        assert_eq!(back, calibration);
        let bytes: [u8; 8] = unhex(GOLDEN_CLOCK_HEX).try_into().unwrap();
        assert_eq!(i64::from_be_bytes(bytes), clock);
        // The clock record as the replica writes and reads it, with and without an anchor.
        let nine = 1_795_338_000_000;
        for (golden, mono) in [
            (GOLDEN_CLOCK_ANCHORED_HEX, Some(5_000)),
            (GOLDEN_CLOCK_UNMONOTONIC_HEX, None),
        ] {
            let c = cardlog_core::HlcClock::new(Default::default(), clock, 0).with_anchor(Some(
                cardlog_core::Anchor {
                    wall_ms: nine,
                    mono_ms: mono,
                },
            ));
            assert_eq!(hex(&crate::replica::clock_record(&c)), golden);
            let back = crate::replica::parse_clock_record(&unhex(golden)).unwrap();
            assert_eq!(back, (clock, c.anchor()));
            let bytes = unhex(golden);
            let short = bytes.get(..bytes.len() - 1).unwrap();
            assert_eq!(crate::replica::parse_clock_record(short), None);
        }
        assert_eq!(
            crate::replica::parse_clock_record(&unhex(GOLDEN_CLOCK_HEX)),
            Some((clock, None))
        );
        // One byte less of any record is refused, not read as something else.
        let cut = |golden: &str| {
            let bytes = unhex(golden);
            bytes[..bytes.len() - 1].to_vec()
        };
        assert!(decode::<Vec<(DeviceId, PeerRecord)>>(&cut(GOLDEN_PEERS_HEX), "peers").is_err());
        assert!(decode::<PeerRecord>(&cut(GOLDEN_PEER_HEX), "peer").is_err());
        assert!(StoredPeer::decode(&cut(GOLDEN_PEER_MARK_HEX)).is_none());
        assert!(decode::<Vec<ForkRecord>>(&cut(GOLDEN_FORKS_HEX), "forks").is_err());
        assert!(decode::<(DeviceId, i64, u64, u64)>(&cut(GOLDEN_CALIBRATION_HEX), "cal").is_err());
    }

    fn summary_with(r: &Replica) -> Summary {
        Replica::summary(r).clone()
    }

    /// Each peer has its own key: a session's record rewrites that peer's only, and the one
    /// record of before (`mpeers`) is split by the first peer write, nothing of it lost.
    #[test]
    fn peers_are_kept_one_key_each_and_the_record_of_before_is_split() {
        let tmp = tempfile::tempdir().unwrap();
        let mut r = Replica::create(&tmp.path().join("r")).unwrap();
        let me = r.id();
        let held = summary_with(&r);
        let tip = held[&me];
        assert_eq!(held.len(), 1);
        let (a, b, c) = (
            DeviceId([0xa1; 16]),
            DeviceId([0xb2; 16]),
            DeviceId([0xc3; 16]),
        );
        let before: Vec<(DeviceId, PeerRecord)> = [a, b]
            .into_iter()
            .map(|p| {
                let record = PeerRecord {
                    acked: vec![(me, tip)],
                    last_ms: r.calibrated_ms(),
                };
                (p, record)
            })
            .collect();
        r.store.put_meta(meta::PEERS, encode(&before)).unwrap();
        let ids = |r: &Replica| r.peers().unwrap().iter().map(|p| p.id).collect::<Vec<_>>();
        assert_eq!(ids(&r), [a, b], "read from the record of before");
        assert!(
            r.needs_sync(&a).unwrap().is_empty(),
            "a acknowledged everything"
        );
        r.record_summary(c, &held).unwrap();
        assert_eq!(r.store.meta(meta::PEERS).unwrap(), None, "split");
        assert_eq!(ids(&r), [a, b, c]);
        assert_eq!(r.store.peer_records().unwrap().len(), 3);
        for info in r.peers().unwrap() {
            assert_eq!(info.acked, held, "{}", info.id);
        }
        // A later session with c leaves a's and b's records as they were.
        let others = |r: &Replica| {
            r.store
                .peer_records()
                .unwrap()
                .into_iter()
                .filter(|(p, _)| *p != c)
                .collect::<Vec<_>>()
        };
        let untouched = others(&r);
        r.add_contact(&cardlog_core::Contact::new(cardlog_core::ContactId(
            [1; 16],
        )))
        .unwrap();
        let newer = summary_with(&r);
        r.record_summary(c, &newer).unwrap();
        assert_eq!(others(&r), untouched);
        assert!(r.needs_sync(&c).unwrap().is_empty());
        assert_eq!(r.needs_sync(&a).unwrap().len(), 1);
    }

    /// A peer record that does not decode counts as a peer never met, and the next session
    /// with that peer writes it again; the record of before likewise.
    #[test]
    fn a_damaged_peer_record_is_a_peer_never_met_until_its_next_session() {
        let tmp = tempfile::tempdir().unwrap();
        let mut r = Replica::create(&tmp.path().join("r")).unwrap();
        r.add_contact(&cardlog_core::Contact::new(ContactId([1; 16])))
            .unwrap();
        let held = summary_with(&r);
        let (a, b) = (DeviceId([0xa1; 16]), DeviceId([0xb2; 16]));
        r.record_summary(a, &held).unwrap();
        r.record_summary(b, &held).unwrap();
        assert!(r.needs_sync(&a).unwrap().is_empty());
        r.store
            .put_peer_records(vec![(a, vec![0xff, 0xff, 0xff])])
            .unwrap();
        let ids = |r: &Replica| r.peers().unwrap().iter().map(|p| p.id).collect::<Vec<_>>();
        assert_eq!(ids(&r), [b], "a is left out, b still read");
        assert_eq!(r.needs_sync(&a).unwrap().len(), 1, "a acknowledged nothing");
        r.record_summary(a, &held).unwrap();
        assert_eq!(ids(&r), [a, b]);
        assert!(r.needs_sync(&a).unwrap().is_empty());
        // A record of before that does not decode: read as no peers, removed by the next
        // peer write.
        r.store.put_meta(meta::PEERS, vec![0xff; 9]).unwrap();
        assert_eq!(ids(&r), [a, b]);
        r.record_summary(b, &held).unwrap();
        assert_eq!(r.store.meta(meta::PEERS).unwrap(), None);
    }

    /// One session over the in-process channel, `a` initiating.
    fn session(a: &mut Replica, b: &mut Replica) {
        let (mut ea, mut eb) = cardlog_sync::transport::channel_pair(Duration::from_secs(10));
        std::thread::scope(|s| {
            let h = s.spawn(|| b.sync_over(Role::Responder, &mut eb).unwrap());
            a.sync_over(Role::Initiator, &mut ea).unwrap();
            h.join().unwrap();
        });
    }

    /// A record written when other devices' ops came in after the peer's (a relay whose
    /// devices sync at once) names the place before the first op the peer lacks, not the log's
    /// end with an exception per author that wrote since: it stays small, and reads back as
    /// what the peer acknowledged.
    #[test]
    fn a_peer_record_written_after_others_wrote_names_the_place_before_what_the_peer_lacks() {
        let tmp = tempfile::tempdir().unwrap();
        let (mut hub, mut devices) = hub_and_devices(tmp.path(), 12);
        let (first, rest) = devices.split_first_mut().unwrap();
        session(first, &mut hub);
        let seen = summary_with(&hub);
        for d in rest.iter_mut() {
            session(d, &mut hub);
        }
        assert_eq!(summary_with(&hub).len(), seen.len() + 11);
        // What a session of the first device ending now would write.
        hub.record_summary(first.id(), &seen).unwrap();
        let bytes = hub.store.peer_record(&first.id()).unwrap().unwrap();
        assert!(
            bytes.len() <= 90,
            "11 authors wrote after the peer's last op: {} bytes",
            bytes.len()
        );
        let info = hub
            .peers()
            .unwrap()
            .into_iter()
            .find(|p| p.id == first.id())
            .unwrap();
        assert_eq!(info.acked, seen);
        let lacking = hub.needs_sync(&first.id()).unwrap();
        for i in 2..=12u8 {
            assert!(lacking.contains(&ContactId([i; 16])), "contact {i}");
        }
        assert!(!lacking.contains(&ContactId([1; 16])));
        // Peers that lack ops from early on, or hold only the latest ones: whichever place is
        // written, each reads back exactly as acknowledged.
        let now = summary_with(&hub);
        let mut without_hub = now.clone();
        without_hub.remove(&hub.id());
        let mut only_late = now.clone();
        for a in seen.keys() {
            only_late.remove(a);
        }
        for (i, acked) in [seen.clone(), without_hub, only_late]
            .into_iter()
            .enumerate()
        {
            let peer = DeviceId([0xe0 + i as u8; 16]);
            hub.record_summary(peer, &acked).unwrap();
            let info = hub.peers().unwrap().into_iter().find(|p| p.id == peer);
            assert_eq!(info.unwrap().acked, acked, "peer {i}");
        }
    }

    /// A hub and `n` member devices of its book, each of which pulled the hub's ops and then
    /// saved contact `[i + 1; 16]` (not synced yet).
    fn hub_and_devices(dir: &std::path::Path, n: u8) -> (Replica, Vec<Replica>) {
        let mut hub = Replica::create(&dir.join("hub")).unwrap();
        let devices = (0..n)
            .map(|i| {
                let mut d = Replica::join(&dir.join(format!("d{i}")), hub.book()).unwrap();
                hub.add_member(d.id(), MemberRole::Write, "device").unwrap();
                d.pull_from(&hub).unwrap();
                d.add_contact(&cardlog_core::Contact::new(ContactId([i + 1; 16])))
                    .unwrap();
                d
            })
            .collect();
        (hub, devices)
    }

    /// A replica that syncs with many devices of many authors (a relay) keeps a few bytes per
    /// device, not an entry per author: a record names the place in its op log the device has
    /// seen all of. What the device acknowledged reads back exactly, tips of authors that
    /// wrote since included, and "needs sync" names what came after.
    #[test]
    fn a_peer_record_names_a_place_in_the_op_log_and_stays_small_whatever_the_authors() {
        let tmp = tempfile::tempdir().unwrap();
        let (mut hub, mut devices) = hub_and_devices(tmp.path(), 6);
        for _round in 0..2 {
            for d in &mut devices {
                session(d, &mut hub);
            }
        }
        let held = summary_with(&hub);
        assert_eq!(held.len(), 7, "the hub and six devices wrote");
        let records = hub.store.peer_records().unwrap();
        assert_eq!(records.len(), 6);
        for (peer, bytes) in &records {
            assert!(
                bytes.len() <= 40,
                "{peer}'s record after a session that converged: {} bytes",
                bytes.len()
            );
        }
        for info in hub.peers().unwrap() {
            assert_eq!(info.acked, held, "{}", info.id);
        }
        // A record written before session 38 names its place in the cursor's 72 bytes: it
        // reads the same.
        let before = hub.peers().unwrap();
        for (peer, bytes) in &records {
            let Some(StoredPeer::Marked(mut mark)) = StoredPeer::decode(bytes) else {
                panic!("{peer}'s record is a mark");
            };
            let place = ChangeCursor::from_short_bytes(hub.id(), &mark.place).unwrap();
            mark.place = place.to_bytes().to_vec();
            hub.store
                .put_peer_records(vec![(*peer, mark.encode())])
                .unwrap();
        }
        let after = hub.peers().unwrap();
        assert_eq!(
            after.iter().map(|p| (p.id, &p.acked)).collect::<Vec<_>>(),
            before.iter().map(|p| (p.id, &p.acked)).collect::<Vec<_>>()
        );
        // The hub writes again and a new device's ops arrive: the devices' records still read
        // as what they acknowledged, the hub's tip of then read back from its log.
        hub.add_contact(&cardlog_core::Contact::new(ContactId([0x40; 16])))
            .unwrap();
        let mut late = Replica::join(&tmp.path().join("late"), hub.book()).unwrap();
        hub.add_member(late.id(), MemberRole::Write, "late")
            .unwrap();
        late.pull_from(&hub).unwrap();
        late.add_contact(&cardlog_core::Contact::new(ContactId([0x41; 16])))
            .unwrap();
        session(&mut late, &mut hub);
        let first = devices[0].id();
        let info = hub
            .peers()
            .unwrap()
            .into_iter()
            .find(|p| p.id == first)
            .unwrap();
        assert_eq!(info.acked, held);
        let lacking = hub.needs_sync(&first).unwrap();
        assert!(
            lacking.contains(&ContactId([0x40; 16])) && lacking.contains(&ContactId([0x41; 16]))
        );
        assert!(!lacking.contains(&ContactId([1; 16])));
        // A peer that acknowledged less, or more, than the hub holds: its record says so.
        let stranger = DeviceId([0xee; 16]);
        let now = summary_with(&hub);
        let mut partial = now.clone();
        partial.remove(&hub.id());
        let some_device = devices[1].id();
        let mut ahead = partial[&some_device];
        ahead.seq += 5;
        ahead.op = OpId([9; 32]);
        partial.insert(some_device, ahead);
        partial.insert(DeviceId([0xef; 16]), ahead);
        hub.record_summary(stranger, &partial).unwrap();
        let info = hub
            .peers()
            .unwrap()
            .into_iter()
            .find(|p| p.id == stranger)
            .unwrap();
        let mut expected = partial.clone();
        expected.remove(&DeviceId([0xef; 16]));
        assert_eq!(info.acked, expected, "authors not held are not kept");
        // A mark whose place is not in the op log as it is (the log was cut shorter since, or
        // the place is not a cursor at all) is a peer never met.
        let past = PeerMark {
            place: ChangeCursor::everything(hub.id()).to_bytes().to_vec(),
            except: Vec::new(),
            last_ms: 1,
        };
        hub.store
            .put_peer_records(vec![(stranger, past.encode())])
            .unwrap();
        assert!(hub.peers().unwrap().iter().all(|p| p.id != stranger));
        assert!(!hub.needs_sync(&stranger).unwrap().is_empty());
    }

    /// Records of peers not met for long are swept (once a day at most, at a record): a peer
    /// that is no member after 30 days, a member after two years.
    #[test]
    fn records_of_peers_not_met_for_long_expire() {
        let tmp = tempfile::tempdir().unwrap();
        let clock = std::sync::Arc::new(cardlog_core::FakeClock::new(1_795_338_000_000));
        let options = || crate::Options {
            wall: clock.clone(),
            ..crate::Options::default()
        };
        let mut hub = Replica::create_with(&tmp.path().join("hub"), options()).unwrap();
        let member = Replica::join_with(&tmp.path().join("m"), hub.book(), options()).unwrap();
        hub.add_member(member.id(), MemberRole::Write, "member")
            .unwrap();
        let (stranger, other) = (DeviceId([0xee; 16]), DeviceId([0xef; 16]));
        let held = summary_with(&hub);
        let ids = |r: &Replica| {
            r.peers()
                .unwrap()
                .iter()
                .map(|p| p.id)
                .collect::<BTreeSet<_>>()
        };
        hub.record_summary(stranger, &held).unwrap();
        hub.record_summary(member.id(), &held).unwrap();
        clock.advance_ms(29 * DAY_MS as i64);
        hub.record_summary(other, &held).unwrap();
        assert_eq!(ids(&hub).len(), 3, "none expired yet");
        clock.advance_ms(2 * DAY_MS as i64);
        hub.record_summary(other, &held).unwrap();
        assert_eq!(
            ids(&hub),
            BTreeSet::from([member.id(), other]),
            "the stranger's went"
        );
        clock.advance_ms(2 * 365 * DAY_MS as i64);
        hub.record_summary(other, &held).unwrap();
        assert_eq!(ids(&hub), BTreeSet::from([other]), "the member's went too");
        // Reads sweep nothing: only a record does, once a day.
        hub.record_summary(stranger, &held).unwrap();
        clock.advance_ms(40 * DAY_MS as i64);
        assert_eq!(ids(&hub).len(), 2);
    }
}

//! The simulator: N replicas with their own fake clocks, driven by a [`Schedule`] of saves,
//! syncs in many modes, crashes and clock jumps; then a final full sync and every property
//! checked ([`Sim::check`]).
//!
//! Replicas are real stores in temporary directories ([`Storage::Disk`]) or in-memory devices
//! ([`Storage::Memory`], much faster, no crashes). Everything is deterministic given the
//! schedule: contact and item ids are numbered, clocks are fake, reorderings are seeded.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use cardlog::{Options, Replica};
use cardlog_core::edit::{self, EditTarget};
use cardlog_core::seeded::shuffle;
use cardlog_core::{
    Contact, ContactId, ContactView, Device, DeviceError, DeviceId, DeviceKey, EditError,
    FakeClock, HistoryEntry, Item, ItemBody, ItemId, OpId, Path, SealedOp, SignedTip, Value,
};
use cardlog_sync::memory::MemoryReplica;
use cardlog_sync::session::Session;
use cardlog_sync::transport::{channel_pair, run_session, ChannelEnd, Transport};
use cardlog_sync::wire::message::{self, Message};
use cardlog_sync::wire::segment::{encode_segments, Locate};
use cardlog_sync::{
    bundle, Applied, PeerBook, Role, Summary, SyncError, TransportError, WireError,
};

use crate::model::{self, ModelContact, Rule};
use crate::naming::{self, contact_id, field_at, item_id, item_kind, name_at};
use crate::network::{Ends, Link, Network};
use crate::schedule::ADMITTED_AT_START;
pub use crate::schedule::{Action, Edit, Schedule, Storage, SyncMode, RELAY};
use crate::story;

/// 2026-11-22T09:00:00Z: where every simulated clock starts (plus its skew).
pub const START_MS: u64 = 1_795_338_000_000;
const STEP_MS: i64 = 1_000;
const TIMEOUT: Duration = Duration::from_secs(30);
/// Most rounds of the final sync ([`Sim::sync_all`]).
const FINAL_ROUNDS_MAX: usize = 6;

/// A property that did not hold, with what was seen and what the devices did up to then.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// The property.
    pub property: &'static str,
    /// What was seen.
    pub detail: String,
    /// What the devices did until the property failed, one line per step and its outcome
    /// (empty when the violation did not come from a run, see [`Sim::story`]).
    pub story: Vec<String>,
    /// The action (numbered from 1) during which it failed; `None` when it failed in the
    /// checks after the schedule.
    pub step: Option<usize>,
}

impl std::fmt::Display for Violation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.property, self.detail)?;
        if !self.story.is_empty() {
            write!(f, "\nwhat the devices did:")?;
            for line in &self.story {
                write!(f, "\n{line}")?;
            }
        }
        Ok(())
    }
}

impl std::error::Error for Violation {}

impl Violation {
    /// A violation of an app's own property (`property` names it, `detail` says what was
    /// seen); [`Sim::told`] attaches the run's story.
    pub fn new(property: &'static str, detail: impl Into<String>) -> Self {
        violation(property, detail)
    }
}

fn violation(property: &'static str, detail: impl Into<String>) -> Violation {
    Violation {
        property,
        detail: detail.into(),
        story: Vec::new(),
        step: None,
    }
}

// ---- nodes ---------------------------------------------------------------------------------

/// One replica of a simulation (read through [`crate::view::ReplicaView`]).
// A simulation holds a handful of nodes: their size is of no account, and boxing the replica
// would only add a deref to every step.
#[allow(clippy::large_enum_variant)]
pub(crate) enum Node {
    Disk {
        replica: Option<Replica>,
        dir: PathBuf,
        clock: Arc<FakeClock>,
    },
    Memory {
        replica: MemoryReplica,
        clock: Arc<FakeClock>,
    },
}

fn options(clock: &Arc<FakeClock>) -> Options {
    Options {
        wall: clock.clone(),
        ..Options::default()
    }
}

/// Edit refusals an app sees as "nothing to do" rather than failures.
fn benign(e: &EditError) -> bool {
    matches!(
        e,
        EditError::NotFound(_)
            | EditError::Deleted(_)
            | EditError::NotDeleted(_)
            | EditError::Exists(_)
    )
}

fn benign_replica(e: &cardlog::Error) -> bool {
    matches!(e, cardlog::Error::Edit(e) if benign(e))
}

fn benign_device(e: &DeviceError) -> bool {
    matches!(e, DeviceError::Edit(e) if benign(e))
}

impl Node {
    fn clock(&self) -> &Arc<FakeClock> {
        match self {
            Node::Disk { clock, .. } => clock,
            Node::Memory { clock, .. } => clock,
        }
    }

    pub(crate) fn device(&self) -> Result<DeviceId, Violation> {
        match self {
            Node::Disk { replica, .. } => Ok(replica
                .as_ref()
                .ok_or_else(|| violation("replica", "closed"))?
                .id()),
            Node::Memory { replica, .. } => Ok(replica.device().id()),
        }
    }

    pub(crate) fn summary(&self) -> Result<Summary, Violation> {
        match self {
            Node::Disk { replica, .. } => Ok(replica
                .as_ref()
                .ok_or_else(|| violation("replica", "closed"))?
                .summary()
                .clone()),
            Node::Memory { replica, .. } => Ok(replica.device().summary()),
        }
    }

    pub(crate) fn views(&self) -> Result<Vec<ContactView>, Violation> {
        match self {
            Node::Disk { replica, .. } => replica
                .as_ref()
                .ok_or_else(|| violation("replica", "closed"))?
                .contacts_with_deleted()
                .map_err(|e| violation("read", e.to_string())),
            Node::Memory { replica, .. } => Ok(replica.replay().contacts(true)),
        }
    }

    /// Of `ops` (held by this replica, all of whose ops are `held`), those no signature it
    /// holds covers (one of an op of the same author at that seq or later). A replica stores
    /// the ops of a segment that go in and keeps the segment's signature only if its last op
    /// does; the rest may wait for a branch to become one (a restore), and the prefix cannot
    /// be proved to a peer until it comes.
    fn unprovable(
        &self,
        ops: &[&SealedOp],
        held: &[SealedOp],
    ) -> Result<std::collections::BTreeSet<OpId>, Violation> {
        let Node::Disk {
            replica: Some(r), ..
        } = self
        else {
            return Ok(Default::default());
        };
        let mut out = std::collections::BTreeSet::new();
        for o in ops {
            let mut covered = false;
            for p in held
                .iter()
                .filter(|p| p.op().author == o.op().author && p.op().seq >= o.op().seq)
            {
                let tips = r
                    .signatures_for(std::slice::from_ref(p))
                    .map_err(|e| violation("read", e.to_string()))?;
                if !tips.is_empty() {
                    covered = true;
                    break;
                }
            }
            if !covered {
                out.insert(o.id());
            }
        }
        Ok(out)
    }

    /// The places (author, seq) of `ops` (held by this replica) whose signatures it sends: of
    /// its own chain, only its last op there (a segment carries the signature of its last
    /// op); of others', those it holds a signature of.
    fn signed(&self, ops: &[SealedOp]) -> Result<Vec<(DeviceId, u64)>, Violation> {
        let Node::Disk {
            replica: Some(r), ..
        } = self
        else {
            return Ok(Vec::new());
        };
        let me = cardlog_sync::SyncStore::device_id(r);
        let mut out = Vec::new();
        for o in ops {
            let (author, seq) = (o.op().author, o.op().seq);
            let signed = if author == me {
                !ops.iter().any(|p| p.op().author == me && p.op().seq > seq)
            } else {
                !r.signatures_for(std::slice::from_ref(o))
                    .map_err(|e| violation("read", e.to_string()))?
                    .is_empty()
            };
            if signed {
                out.push((author, seq));
            }
        }
        Ok(out)
    }

    /// Whether the replica withdrew op `id` (a branch given up, or what built on one).
    fn withdrew(&self, id: &OpId) -> bool {
        match self {
            Node::Disk {
                replica: Some(r), ..
            } => cardlog_sync::PeerBook::withdrew(r, id),
            _ => false,
        }
    }

    /// Whether the replica waits to take back its own chain from a peer (it found it was
    /// restored from a backup; `Replica::is_restored`).
    pub(crate) fn restored(&self) -> Result<bool, Violation> {
        match self {
            Node::Disk { replica, .. } => replica
                .as_ref()
                .ok_or_else(|| violation("replica", "closed"))?
                .is_restored()
                .map_err(|e| violation("read", e.to_string())),
            Node::Memory { .. } => Ok(false),
        }
    }

    /// Whether the replica holds own edits withdrawn with a branch given up, waiting to be
    /// re-issued (for a copy of an op they name; docs/SEMANTICS.md, "Edits made on a branch
    /// given up").
    pub(crate) fn waits_to_reissue(&self) -> Result<bool, Violation> {
        match self {
            Node::Disk { replica, .. } => replica
                .as_ref()
                .ok_or_else(|| violation("replica", "closed"))?
                .store()
                .pending_reissue()
                .map(|pending| !pending.is_empty())
                .map_err(|e| violation("read", e.to_string())),
            Node::Memory { .. } => Ok(false),
        }
    }

    /// The devices that own edits waiting here to be re-issued admit ([`Self::waits_to_reissue`]):
    /// this replica does not know them as members until those go in.
    pub(crate) fn admissions_waiting(
        &self,
    ) -> Result<std::collections::BTreeSet<DeviceId>, Violation> {
        match self {
            Node::Disk { replica, .. } => Ok(replica
                .as_ref()
                .ok_or_else(|| violation("replica", "closed"))?
                .store()
                .pending_reissue()
                .map_err(|e| violation("read", e.to_string()))?
                .iter()
                .flat_map(|(_, op)| op.op().members.clone())
                .filter_map(|m| match m {
                    cardlog::MemberChange::Add { device, .. } => Some(device),
                    _ => None,
                })
                .collect()),
            Node::Memory { .. } => Ok(Default::default()),
        }
    }

    pub(crate) fn ops(&self) -> Result<Vec<SealedOp>, Violation> {
        match self {
            Node::Disk { replica, .. } => replica
                .as_ref()
                .ok_or_else(|| violation("replica", "closed"))?
                .ops()
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| violation("read", e.to_string())),
            Node::Memory { replica, .. } => Ok(replica.replay().ops_in_order().cloned().collect()),
        }
    }

    pub(crate) fn history(
        &self,
        contact: &ContactId,
        path: &Path,
    ) -> Result<Vec<HistoryEntry>, Violation> {
        match self {
            Node::Disk { replica, .. } => replica
                .as_ref()
                .ok_or_else(|| violation("replica", "closed"))?
                .history(contact, path)
                .map_err(|e| violation("read", e.to_string())),
            Node::Memory { replica, .. } => Ok(replica.replay().history(contact, path)),
        }
    }

    fn state_bytes(&self) -> Result<Vec<u8>, Violation> {
        match self {
            Node::Disk { replica, .. } => replica
                .as_ref()
                .ok_or_else(|| violation("replica", "closed"))?
                .state_bytes()
                .map_err(|e| violation("read", e.to_string())),
            Node::Memory { replica, .. } => Ok(replica.replay().state_bytes()),
        }
    }

    fn with_store<R>(&mut self, f: impl FnOnce(&mut dyn ErasedStore) -> R) -> Result<R, Violation> {
        match self {
            Node::Disk { replica, .. } => Ok(f(replica
                .as_mut()
                .ok_or_else(|| violation("replica", "closed"))?)),
            Node::Memory { replica, .. } => Ok(f(replica)),
        }
    }

    /// Saves `edit`: the contact it picked (none when the device knows none) and what came
    /// of it.
    fn save(
        &mut self,
        edit: &Edit,
        fresh_item: ItemId,
    ) -> Result<(Option<ContactId>, Saved), Violation> {
        let views = self.views()?;
        let pick =
            |p: &u8| -> Option<&ContactView> { views.get(usize::from(*p) % views.len().max(1)) };
        let target = match edit {
            Edit::Add(c) => Some(c.id),
            Edit::SetField { pick: p, .. }
            | Edit::ClearField { pick: p, .. }
            | Edit::AddItem { pick: p, .. }
            | Edit::EditItem { pick: p, .. }
            | Edit::RemoveItem { pick: p, .. }
            | Edit::Tag { pick: p, .. }
            | Edit::Custom { pick: p, .. }
            | Edit::Delete { pick: p }
            | Edit::Restore { pick: p }
            | Edit::Resolve { pick: p } => pick(p).map(|v| v.contact.id),
        };
        let Some(id) = target else {
            return Ok((None, Saved::Nothing));
        };
        if let (Some(v), Edit::Restore { .. }) = (views.iter().find(|v| v.contact.id == id), edit) {
            if !v.deleted {
                return Ok((target, Saved::Nothing));
            }
        }
        let view = views.iter().find(|v| v.contact.id == id);
        // What an edit does to the visible contact.
        let change = |c: &mut Contact| match edit {
            Edit::SetField { field, value, .. } => {
                c.set(field_at(*field), value.clone());
            }
            Edit::ClearField { field, .. } => {
                c.fields.remove(&field_at(*field));
            }
            Edit::AddItem { kind, text, .. } => {
                c.items_mut(item_kind(*kind)).push(Item {
                    id: fresh_item,
                    label: "other".into(),
                    body: ItemBody::Text(text.clone()),
                });
            }
            Edit::EditItem { nth, text, .. } => {
                let all = c.phones.iter_mut().chain(c.emails.iter_mut());
                let items: Vec<&mut Item> = all.collect();
                let len = items.len();
                if len > 0 {
                    if let Some(item) = items.into_iter().nth(usize::from(*nth) % len) {
                        item.body = ItemBody::Text(text.clone());
                    }
                }
            }
            Edit::RemoveItem { nth, .. } => {
                let len = c.phones.len() + c.emails.len();
                if len > 0 {
                    let k = usize::from(*nth) % len;
                    if k < c.phones.len() {
                        c.phones.remove(k);
                    } else {
                        c.emails.remove(k - c.phones.len());
                    }
                }
            }
            Edit::Tag { name, on, .. } => {
                let name = name_at(*name).to_owned();
                if *on {
                    c.tags.insert(name);
                } else {
                    c.tags.remove(&name);
                }
            }
            Edit::Custom { name, value, .. } => {
                let name = format!("X-{}", name_at(*name).to_uppercase());
                match value {
                    Some(v) => c.custom.insert(name, v.clone()),
                    None => c.custom.remove(&name),
                };
            }
            _ => {}
        };
        let resolve = view.and_then(|v| {
            v.conflicts
                .first()
                .map(|c| (c.path.clone(), c.winner.value.clone()))
        });
        let op = match self {
            Node::Disk { replica, .. } => {
                let r = replica
                    .as_mut()
                    .ok_or_else(|| violation("replica", "closed"))?;
                // A device that has not learnt of its admission yet cannot save, as in an app;
                // any other refusal by the book is a violation.
                let me = r.id();
                let admitted = r.membership().member(&me).is_some();
                match save_edit(&mut r.editor(), edit, id, change, resolve) {
                    Ok(op) => Ok(op.map_or(Saved::Nothing, Saved::Op)),
                    Err(e) if benign_replica(&e) => Ok(Saved::Nothing),
                    Err(cardlog::Error::Refused(cardlog::Refusal::NotMember { .. }))
                        if !admitted =>
                    {
                        Ok(Saved::Nothing)
                    }
                    // A removed device that has learnt of its removal saves nothing more,
                    // nor does the relay.
                    Err(cardlog::Error::Refused(
                        cardlog::Refusal::Removed { author, .. }
                        | cardlog::Refusal::NoLongerMember { author, .. },
                    )) if author == me => Ok(Saved::Nothing),
                    Err(cardlog::Error::Refused(cardlog::Refusal::CannotWrite {
                        author,
                        role: cardlog::MemberRole::Relay,
                    })) if author == me => Ok(Saved::RefusedToRelay),
                    Err(e) => Err(violation("save", format!("{edit:?}: {e}"))),
                }
            }
            Node::Memory { replica, .. } => {
                match save_edit(replica.device_mut(), edit, id, change, resolve) {
                    Ok(op) => Ok(op.map_or(Saved::Nothing, Saved::Op)),
                    Err(e) if benign_device(&e) => Ok(Saved::Nothing),
                    Err(e) => Err(violation("save", format!("{edit:?}: {e}"))),
                }
            }
        }?;
        Ok((target, op))
    }
}

/// What came of a save.
enum Saved {
    /// This op was saved.
    Op(SealedOp),
    /// Nothing: the edit did not apply, or the device may not save (yet, or any more).
    Nothing,
    /// The relay tried, and its book refused: a relay cannot save contacts.
    RefusedToRelay,
}

/// Saves `edit` of contact `id` through core's save protocol, on any kind of replica.
fn save_edit<T: EditTarget + ?Sized>(
    target: &mut T,
    edit: &Edit,
    id: ContactId,
    change: impl FnOnce(&mut Contact),
    resolve: Option<(Path, Option<Value>)>,
) -> Result<Option<SealedOp>, T::Error> {
    match edit {
        Edit::Add(c) => edit::create(target, c).map(Some),
        Edit::Delete { .. } => edit::delete(target, id).map(Some),
        Edit::Restore { .. } => edit::restore(target, id).map(Some),
        Edit::Resolve { .. } => match resolve {
            Some((path, value)) => edit::resolve(target, id, path, value).map(Some),
            None => Ok(None),
        },
        _ => edit::edit(target, id, change),
    }
}

/// [`SyncStore`] with its error erased, so disk and memory nodes share the sync code.
trait ErasedStore {
    fn summary_(&self) -> Summary;
    fn calibrated_ms_(&self) -> u64;
    fn ops_since_(&self, peer: &Summary) -> Result<Vec<SealedOp>, String>;
    fn signatures_(&self, ops: &[SealedOp]) -> Result<Vec<SignedTip>, String>;
    fn apply_(&mut self, ops: &[SealedOp], tips: &[SignedTip]) -> Result<Applied, String>;
    fn export_(&self, since: &Summary) -> Result<Vec<u8>, String>;
    fn import_(&mut self, bytes: &[u8]) -> Result<Applied, String>;
    fn summary_file_(&self) -> Vec<u8>;
    fn session_(
        &mut self,
        role: Role,
        chunk: usize,
        t: &mut dyn Transport,
    ) -> Result<(), SyncError<String>>;
}

struct DynTransport<'a>(&'a mut dyn Transport);

impl Transport for DynTransport<'_> {
    fn send(&mut self, bytes: Vec<u8>) -> Result<(), TransportError> {
        self.0.send(bytes)
    }
    fn recv(&mut self) -> Result<Vec<u8>, TransportError> {
        self.0.recv()
    }
    fn recv_at_most(&mut self, max: usize) -> Result<Vec<u8>, TransportError> {
        self.0.recv_at_most(max)
    }
    fn close(&mut self) {
        self.0.close()
    }
}

impl<S: PeerBook> ErasedStore for S {
    fn summary_(&self) -> Summary {
        self.summary()
    }
    fn calibrated_ms_(&self) -> u64 {
        self.calibrated_ms()
    }
    fn ops_since_(&self, peer: &Summary) -> Result<Vec<SealedOp>, String> {
        self.ops_since(peer).map_err(|e| e.to_string())
    }
    /// Per author among `ops`, the signature held of its last one (as a message carries).
    fn signatures_(&self, ops: &[SealedOp]) -> Result<Vec<SignedTip>, String> {
        self.signatures_for(ops).map_err(|e| e.to_string())
    }
    fn apply_(&mut self, ops: &[SealedOp], tips: &[SignedTip]) -> Result<Applied, String> {
        self.apply(ops, tips).map_err(|e| e.to_string())
    }
    fn export_(&self, since: &Summary) -> Result<Vec<u8>, String> {
        bundle::export(self, Some(since)).map_err(|e| e.to_string())
    }
    fn import_(&mut self, bytes: &[u8]) -> Result<Applied, String> {
        bundle::import(self, bytes)
            .map(|i| i.received.applied)
            .map_err(|e| e.to_string())
    }
    fn summary_file_(&self) -> Vec<u8> {
        bundle::summary_file(self)
    }
    fn session_(
        &mut self,
        role: Role,
        chunk: usize,
        t: &mut dyn Transport,
    ) -> Result<(), SyncError<String>> {
        run_session(
            Session::new(role).with_chunk_ops(chunk),
            self,
            &mut DynTransport(t),
        )
        .map(|_| ())
        .map_err(|e| e.map_store(|e| e.to_string()))
    }
}

/// What a stranger's bundle carries: its op and its signature.
struct Carried<'a> {
    ops: &'a [SealedOp],
    tip: SignedTip,
}

impl Locate for Carried<'_> {
    fn locate(&self, id: &OpId) -> Result<Option<SealedOp>, WireError> {
        Ok(self.ops.iter().find(|o| o.id() == *id).cloned())
    }

    fn tip_signature(&self, author: &DeviceId, seq: u64) -> Result<Option<SignedTip>, WireError> {
        Ok((self.tip.author == *author && self.tip.seq == seq).then_some(self.tip))
    }
}

/// SplitMix64's finaliser: a seed's bits spread over the whole number.
fn mix(seed: u64) -> u64 {
    let mut z = seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The line a session runs over.
#[derive(Debug, Clone, Copy)]
enum Line {
    /// The in-process channel, whole.
    Whole,
    /// The in-process channel, cut after that many messages the initiator receives.
    Cut(usize),
    /// The app's network, with this seed.
    Network(u64),
}

impl Line {
    /// Whether a session end over this line may end as `r`: a cut ends it with a
    /// disconnect; an app's network with what a fault of a line can cause (a lost, late,
    /// altered, duplicated or misplaced message, or a cut), never with a refusal of valid ops
    /// or a failure of the local store.
    fn excuses(self, r: &Result<(), SyncError<String>>) -> bool {
        match (self, r) {
            (_, Ok(())) => true,
            (Line::Cut(_), Err(SyncError::Disconnected(_))) => true,
            (Line::Network(_), Err(e)) => matches!(
                e,
                SyncError::Disconnected(_)
                    | SyncError::Timeout(_)
                    | SyncError::Transport(_)
                    | SyncError::Wire(_)
                    | SyncError::Protocol(_)
                    | SyncError::PeerAborted(_)
                    | SyncError::Tampered(_)
            ),
            _ => false,
        }
    }
}

/// A transport that breaks after `left` received messages.
struct Cut {
    inner: ChannelEnd,
    left: usize,
}

impl Transport for Cut {
    fn send(&mut self, bytes: Vec<u8>) -> Result<(), TransportError> {
        self.inner.send(bytes)
    }
    fn recv(&mut self) -> Result<Vec<u8>, TransportError> {
        if self.left == 0 {
            return Err(TransportError::Disconnected(" (simulated)".into()));
        }
        self.left -= 1;
        self.inner.recv()
    }
}

// ---- the simulator -------------------------------------------------------------------------

/// What a run did (to show schedules exercise what they should).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Saves that returned an op.
    pub saves: usize,
    /// Sync actions run.
    pub syncs: usize,
    /// Crashes (drop and reopen) of disk replicas.
    pub crashes: usize,
    /// Conflicted paths after the final sync.
    pub conflicts: usize,
    /// Deleted contacts after the final sync.
    pub deleted: usize,
    /// Ops held after the final sync.
    pub ops: usize,
    /// Strangers' pushes refused.
    pub refused: usize,
    /// Devices removed from the book.
    pub removed: usize,
    /// Joined devices admitted during the schedule.
    pub admitted: usize,
    /// Saves a removed device made before it learnt of its removal (void).
    pub void_saves: usize,
    /// Void ops replica 0 holds after the final sync (kept because other ops replace their
    /// writes).
    pub void_kept: usize,
    /// Sessions of the schedule (not the final sync) with the relay (disk replica [`RELAY`])
    /// at one end.
    pub relay_sessions: usize,
    /// Saves the relay tried and its book refused (a relay cannot save contacts).
    pub relay_saves_refused: usize,
    /// Sessions over the app's network that both ends completed.
    pub network_completed: usize,
    /// Sessions over the app's network that a fault ended (or that could not connect).
    pub network_failed: usize,
    /// Saves made while their device's time read real time.
    pub right_saves: usize,
    /// Pairs of such saves competing at one path after the final sync: what "a right
    /// clock's later edit wins" compared.
    pub right_pairs: usize,
    /// Backups taken of disk replicas' stores.
    pub backups: usize,
    /// Stores restored in place from a backup.
    pub restores: usize,
    /// Saves lost with a restored disk: no other replica held them (nor a copy) when it was
    /// restored.
    pub lost_with_disk: usize,
}

/// A running simulation.
pub struct Sim {
    tmp: Option<tempfile::TempDir>,
    nodes: Vec<Node>,
    saves: Vec<(usize, OpId)>,
    /// Saves by removed devices, made before they learnt of their removal: void.
    void_saves: Vec<(usize, OpId)>,
    next_contact: u64,
    next_item: u64,
    rule: Rule,
    stats: Stats,
    /// Replicas removed from the book ([`Action::Leave`]): what they save is void.
    removed: std::collections::BTreeSet<usize>,
    /// Strangers made so far (each has its own key).
    strangers: u8,
    /// The app's network, for [`SyncMode::Network`].
    network: Option<Box<dyn Network>>,
    /// What the devices did so far, one line per step and its outcome.
    story: Vec<String>,
    /// Real time (what a correct clock reads): where clocks start, one step on per action.
    real_ms: u64,
    /// Saves made while their device's time (its clock, calibrated) read real time: the real
    /// time of each.
    right_saves: BTreeMap<OpId, u64>,
    /// Every save that returned, by id: a restore's take back re-issues saves as copies, which
    /// "no lost save" recognises by their content.
    sealed: BTreeMap<OpId, SealedOp>,
    /// Each disk replica's last backup ([`Action::Backup`]).
    backups: BTreeMap<usize, PathBuf>,
    /// Devices whose store was restored from a backup during the schedule: until their chains
    /// are one again, replicas may hold two branches of them, and a session may leave a
    /// branch behind for a later one to settle.
    restored: std::collections::BTreeSet<DeviceId>,
    /// Every op a session's ends held at its start, by author and seq: what a replica may
    /// have withdrawn since.
    seen: std::collections::BTreeSet<(DeviceId, u64, OpId)>,
}

impl Sim {
    /// Sets up the schedule's replicas.
    pub fn new(schedule: &Schedule) -> Result<Self, Violation> {
        let tmp = match schedule.storage {
            Storage::Disk => {
                Some(tempfile::tempdir().map_err(|e| violation("setup", e.to_string()))?)
            }
            Storage::Memory => None,
        };
        let mut nodes: Vec<Node> = Vec::new();
        for (i, skew) in schedule.skews_ms.iter().enumerate() {
            let clock = Arc::new(FakeClock::new(START_MS.saturating_add_signed(*skew)));
            let node = match &tmp {
                Some(tmp) => {
                    let dir = tmp.path().join(format!("r{i}"));
                    let setup = |e: String| violation("setup", e);
                    // Replica 0 founds the book; it adds replicas 1 and 2 as writers and
                    // replica 3 as the relay, and each takes the founder's ops then (the
                    // others learn of one another by sync). Replica 4 joins but waits for an
                    // `Admit`.
                    let replica = match nodes.first_mut() {
                        Some(Node::Disk {
                            replica: Some(founder),
                            ..
                        }) => {
                            let mut r = Replica::join_with(&dir, founder.book(), options(&clock))
                                .map_err(|e| setup(e.to_string()))?;
                            if i < ADMITTED_AT_START {
                                let role = if i == RELAY {
                                    cardlog::MemberRole::Relay
                                } else {
                                    cardlog::MemberRole::Write
                                };
                                founder
                                    .add_member(r.id(), role, &format!("r{i}"))
                                    .map_err(|e| setup(e.to_string()))?;
                            }
                            r.pull_from(founder).map_err(|e| setup(e.to_string()))?;
                            r
                        }
                        _ => Replica::create_with(&dir, options(&clock))
                            .map_err(|e| setup(e.to_string()))?,
                    };
                    Node::Disk {
                        replica: Some(replica),
                        dir,
                        clock,
                    }
                }
                None => {
                    let mut id = [0u8; 16];
                    id[0] = 0xd0;
                    id[15] = i as u8;
                    Node::Memory {
                        replica: MemoryReplica::new(Device::new(DeviceId(id), clock.clone())),
                        clock,
                    }
                }
            };
            nodes.push(node);
        }
        Ok(Self {
            tmp,
            nodes,
            void_saves: Vec::new(),
            saves: Vec::new(),
            next_contact: 1,
            next_item: 0,
            rule: Rule::Cardlog,
            stats: Stats::default(),
            removed: Default::default(),
            strangers: 0,
            network: None,
            story: Vec::new(),
            real_ms: START_MS,
            right_saves: BTreeMap::new(),
            sealed: BTreeMap::new(),
            backups: BTreeMap::new(),
            restored: Default::default(),
            seen: Default::default(),
        })
    }

    /// Carries [`SyncMode::Network`] sessions over an app's own network.
    pub fn with_network(mut self, network: impl Network + 'static) -> Self {
        self.network = Some(Box::new(network));
        self
    }

    /// Uses another model rule (the canary).
    pub fn with_rule(mut self, rule: Rule) -> Self {
        self.rule = rule;
        self
    }

    /// Runs a schedule and checks every property; a violation carries the run's story.
    pub fn run(schedule: &Schedule) -> Result<Stats, Violation> {
        Self::new(schedule)?.execute(schedule)
    }

    /// Plays the schedule on this simulation (set up with [`Sim::new`], maybe
    /// [`Sim::with_network`] or [`Sim::with_rule`]) and checks every property; a violation
    /// carries the run's story.
    pub fn execute(self, schedule: &Schedule) -> Result<Stats, Violation> {
        self.execute_with(schedule, |_| Ok(()))
    }

    /// [`Sim::execute`] with an app's own property, checked after the schedule and a final
    /// full sync, before the built-in ones; a violation of either carries the run's story.
    pub fn execute_with(
        mut self,
        schedule: &Schedule,
        property: impl FnOnce(&mut Sim) -> Result<(), Violation>,
    ) -> Result<Stats, Violation> {
        let result = self.play(schedule).and_then(|()| {
            self.sync_all()?;
            property(&mut self)?;
            self.check()
        });
        match result {
            Ok(()) => Ok(self.stats),
            Err(v) => Err(self.told(v)),
        }
    }

    /// What the devices did so far: one line per step, as a person would tell it, with what
    /// each step picked and how it ended ("tablet sets org=\"b\" on the contact it picks
    /// (#7): contact 3, saved").
    pub fn story(&self) -> &[String] {
        &self.story
    }

    /// `v` with this run's story attached (and, when it failed after the schedule, a last
    /// line saying so).
    pub fn told(&self, mut v: Violation) -> Violation {
        if v.story.is_empty() {
            v.story = self.story.clone();
            if v.step.is_none() {
                v.story.push(format!(
                    "      after the schedule, in the final sync or checks: property \"{}\" failed",
                    v.property
                ));
            }
        }
        v
    }

    /// What the run did so far.
    pub fn stats(&self) -> Stats {
        self.stats
    }

    /// Plays every action of the schedule.
    pub fn play(&mut self, schedule: &Schedule) -> Result<(), Violation> {
        for action in &schedule.actions {
            self.step(action)?;
        }
        Ok(())
    }

    /// Every save that returned: (replica, op id).
    pub fn saves(&self) -> &[(usize, OpId)] {
        &self.saves
    }

    pub(crate) fn nodes(&self) -> &[Node] {
        &self.nodes
    }

    /// What the reference model makes of `ops` under this simulation's rule: the contacts,
    /// once a removed device's ops past its cutoff (void) are left out.
    pub(crate) fn model_of(&self, ops: &[SealedOp]) -> BTreeMap<ContactId, ModelContact> {
        // The model knows membership only as far as this: a removed device's ops past its
        // cutoff are void and take no effect.
        let cutoffs = cutoffs_of(ops);
        let effective: Vec<SealedOp> = ops
            .iter()
            .filter(|o| !cutoffs.voids(&o.op().author, o.op().seq))
            .cloned()
            .collect();
        model::contacts(&effective, self.rule)
    }

    /// Plays one action and tells it in the story.
    fn step(&mut self, action: &Action) -> Result<(), Violation> {
        let network = self
            .network
            .as_ref()
            .map_or_else(|| "the app's network (none given)".into(), |n| n.name());
        let words = story::action_words(action, self.nodes.len(), &network);
        let line = self.story.len() + 1;
        let before = self.stats;
        match self.act(action) {
            Ok(outcome) => {
                let outcome = outcome.unwrap_or_else(|| self.outcome(action, before));
                self.story.push(format!("{line:>4}. {words}{outcome}"));
                Ok(())
            }
            Err(mut v) => {
                self.story.push(format!(
                    "{line:>4}. {words}: property \"{}\" failed here",
                    v.property
                ));
                v.step = Some(line);
                Err(v)
            }
        }
    }

    /// How an action other than a save or a sync ended, from what it counted.
    fn outcome(&self, action: &Action, before: Stats) -> String {
        let s = self.stats;
        let said = |yes: bool, done: &str| {
            if yes {
                format!(": {done}")
            } else {
                ": nothing to do".to_owned()
            }
        };
        match action {
            Action::Crash { .. } => said(s.crashes > before.crashes, "reopened, verify ok"),
            Action::Stranger { .. } => said(s.refused > before.refused, "refused, nothing changed"),
            Action::Leave { .. } => said(s.removed > before.removed, "removed"),
            Action::Admit { .. } => said(s.admitted > before.admitted, "admitted"),
            Action::Backup { .. } => said(s.backups > before.backups, "backed up"),
            Action::Save { .. }
            | Action::Sync { .. }
            | Action::ClockJump { .. }
            | Action::SetClock { .. }
            | Action::Restore { .. } => String::new(),
        }
    }

    /// Plays one action: how a save or a sync ended, for the story.
    fn act(&mut self, action: &Action) -> Result<Option<String>, Violation> {
        for n in &self.nodes {
            n.clock().advance_ms(STEP_MS);
        }
        self.real_ms = self.real_ms.saturating_add_signed(STEP_MS);
        let n = self.nodes.len();
        match action {
            Action::Save { replica, edit } => {
                let edit = match edit {
                    Edit::Add(c) => Edit::Add(self.renumber(c)),
                    e => e.clone(),
                };
                // Item ids are random in an app; here they are numbered, unique across devices.
                self.next_item += 1;
                let fresh = item_id(u64::MAX, self.next_item);
                let real = self.real_ms;
                let right = self
                    .node(replica % n)?
                    .with_store(|s| s.calibrated_ms_() == real)?;
                let (target, op) = self.node(replica % n)?.save(&edit, fresh)?;
                let contact = match target.as_ref().and_then(naming::contact_number) {
                    Some(k) => format!("contact {k}"),
                    None => "no contact to pick".into(),
                };
                let op = match op {
                    Saved::Op(op) => {
                        let id = op.id();
                        self.sealed.insert(id, op);
                        id
                    }
                    Saved::Nothing => return Ok(Some(format!(": {contact}, nothing saved"))),
                    Saved::RefusedToRelay => {
                        self.stats.relay_saves_refused += 1;
                        return Ok(Some(format!(
                            ": {contact}, refused (a relay cannot save contacts)"
                        )));
                    }
                };
                // The founder removed it after holding all its ops: what it saves now is
                // past its cutoff.
                if self.removed.contains(&(replica % n)) {
                    self.stats.void_saves += 1;
                    self.void_saves.push((replica % n, op));
                    return Ok(Some(format!(
                        ": {contact}, saved (void: the device was removed)"
                    )));
                }
                self.stats.saves += 1;
                self.saves.push((replica % n, op));
                if right {
                    self.stats.right_saves += 1;
                    self.right_saves.insert(op, real);
                }
                return Ok(Some(format!(": {contact}, saved")));
            }
            Action::Sync { from, to, mode } => {
                let (from, to) = (from % n, to % n);
                if from == to {
                    return Ok(Some(": the same device, nothing to do".into()));
                }
                self.stats.syncs += 1;
                return self.sync(from, to, *mode).map(Some);
            }
            Action::Crash { replica } => self.crash(replica % n)?,
            Action::Stranger { target, forge } => self.stranger(target % n, *forge)?,
            Action::Leave { replica } => self.leave(replica % n)?,
            Action::Admit { replica } => self.admit(replica % n)?,
            Action::Backup { replica } => self.backup(replica % n)?,
            Action::Restore { replica } => return self.restore(replica % n),
            Action::ClockJump { replica, delta_ms } => {
                self.node(replica % n)?.clock().advance_ms(*delta_ms);
            }
            Action::SetClock { replica, off_by_ms } => {
                let real = self.real_ms;
                self.node(replica % n)?
                    .clock()
                    .set_ms(real.saturating_add_signed(*off_by_ms));
            }
        }
        Ok(None)
    }

    /// [`Action::Stranger`]: the push must be refused, naming the op's author, and change
    /// nothing at the target.
    fn stranger(&mut self, target: usize, forge: bool) -> Result<(), Violation> {
        self.strangers = self.strangers.wrapping_add(1);
        let key = DeviceKey::from_seed(
            &[0xee, self.strangers]
                .repeat(16)
                .try_into()
                .unwrap_or([0xee; 32]),
        );
        let contact = self.renumber(&Contact::new(ContactId([0; 16])));
        let Node::Disk {
            replica: Some(r),
            clock,
            ..
        } = self.node(target)?
        else {
            return Ok(());
        };
        let fail = |e: String| violation("stranger refused", format!("replica {target}: {e}"));
        // A forger claims a member's id (the target's own); a stranger writes as itself.
        let author = if forge { r.id() } else { key.device() };
        let mut device = Device::new(author, clock.clone());
        let op = device.create(&contact).map_err(|e| fail(e.to_string()))?;
        let tip = SignedTip {
            author,
            key: key.public(),
            seq: op.op().seq,
            op: op.id(),
            signature: key.sign_tip(&r.book(), &op.id()),
        };
        let ops = [op];
        let segments =
            encode_segments(&ops, &Carried { ops: &ops, tip }).map_err(|e| fail(e.to_string()))?;
        let file = message::encode(&Message::Bundle {
            replica: key.device(),
            created_ms: cardlog_core::WallClock::now_ms(&**clock),
            segments,
        });
        let before = (r.state_bytes(), r.summary().clone(), r.op_count());
        let imported = r.import_bundle(&file).map_err(|e| fail(e.to_string()))?;
        let refused = &imported.received.applied.refused;
        if refused.len() != 1
            || refused.first().map(cardlog::Refusal::author) != Some(author)
            || imported.received.applied.stored != 0
            || (r.state_bytes(), r.summary().clone(), r.op_count()) != before
        {
            return Err(fail(format!("{imported:?}")));
        }
        self.stats.refused += 1;
        Ok(())
    }

    /// The founder's replica and replica `i`'s, when both are open disk replicas.
    fn founder_and(&mut self, i: usize) -> Result<Option<(&mut Replica, &mut Replica)>, Violation> {
        Ok(match self.pair(0, i)? {
            (
                Node::Disk {
                    replica: Some(founder),
                    ..
                },
                Node::Disk {
                    replica: Some(other),
                    ..
                },
            ) => Some((founder, other)),
            _ => None,
        })
    }

    /// [`Action::Admit`].
    fn admit(&mut self, i: usize) -> Result<(), Violation> {
        if i == 0 {
            return Ok(());
        }
        let Some((founder, joined)) = self.founder_and(i)? else {
            return Ok(());
        };
        let id = joined.id();
        if founder.membership().member(&id).is_some() {
            return Ok(());
        }
        founder
            .add_member(id, cardlog::MemberRole::Write, &format!("r{i}"))
            .map_err(|e| violation("admission", format!("replica {i}: {e}")))?;
        self.stats.admitted += 1;
        Ok(())
    }

    /// [`Action::Leave`].
    fn leave(&mut self, i: usize) -> Result<(), Violation> {
        if i == 0 || self.removed.contains(&i) || !matches!(self.node(i)?, Node::Disk { .. }) {
            return Ok(());
        }
        // A device restored from a backup is not removed: a removal's cutoff names a seq, not
        // an op, so replicas holding different branches of its chain there would each keep
        // theirs (docs/SEMANTICS.md, "Restores", "What is left").
        let device = self.node(i)?.device()?;
        if self.restored.contains(&device) {
            return Ok(());
        }
        // Only a member leaves (the founder admits one that joined, if need be, first).
        self.admit(i)?;
        let fail = |e: String| violation("removal", format!("replica {i}: {e}"));
        // The founder holds all of the device's ops first: none of them is void, and every
        // save the device makes from now on is.
        self.session(i, 0, Line::Whole)?;
        // (Unless some wait there for a restored chain to become one, as ops built on a
        // branch its author gives up do: then it stays for now.)
        let held: std::collections::BTreeSet<OpId> =
            self.node(0)?.ops()?.iter().map(SealedOp::id).collect();
        if self
            .node(i)?
            .ops()?
            .iter()
            .any(|o| o.op().author == device && !held.contains(&o.id()))
        {
            return Ok(());
        }
        // Nor one whose own edits were withdrawn with a branch given up and wait to be
        // re-issued: only it can re-issue them, and a removed device's copies count only at
        // their seqs below its cutoff (docs/SEMANTICS.md, "What is left"). Seed 0xbe402: the
        // laptop renamed the contact the tablet had renamed on the restored phone's branch;
        // its session with the founder settled that branch, and its rename waited for the
        // tablet's copy.
        if self.node(i)?.waits_to_reissue()? {
            return Ok(());
        }
        // Nor while the founder's admission of it waits to be re-issued: withdrawn by a take
        // back in that session, it is re-issued only after the founder's edits before it,
        // which wait for another device's copy; until then the device is no member there
        // (seed 0xca327 of base 828000: the watch, admitted just now, handed the restored
        // phone its lost contact).
        let waiting = self.node(0)?.admissions_waiting()?;
        let Some((admin, gone)) = self.founder_and(i)? else {
            return Ok(());
        };
        if waiting.contains(&device) && admin.membership().member(&device).is_none() {
            return Ok(());
        }
        admin
            .remove_member(gone.id())
            .map_err(|e| fail(e.to_string()))?;
        self.removed.insert(i);
        self.stats.removed += 1;
        Ok(())
    }

    fn renumber(&mut self, c: &Contact) -> Contact {
        let n = self.next_contact;
        self.next_contact += 1;
        let mut c = c.clone();
        c.id = contact_id(n);
        for (k, item) in c.phones.iter_mut().chain(c.emails.iter_mut()).enumerate() {
            item.id = item_id(n, k as u64);
        }
        c
    }

    fn crash(&mut self, i: usize) -> Result<(), Violation> {
        if let Node::Disk {
            replica,
            dir,
            clock,
        } = self.node(i)?
        {
            drop(replica.take());
            let reopened = Replica::open_with(dir, options(clock))
                .map_err(|e| violation("crash recovery", format!("replica {i}: {e}")))?;
            let report = reopened
                .verify()
                .map_err(|e| violation("crash recovery", e.to_string()))?;
            if !report.is_ok() {
                return Err(violation(
                    "crash recovery",
                    format!("replica {i}: {:?}", report.problems),
                ));
            }
            *replica = Some(reopened);
            self.stats.crashes += 1;
        }
        Ok(())
    }

    /// [`Action::Backup`]: the store closes cleanly, its directory is copied aside (replacing
    /// an earlier backup), and it reopens.
    fn backup(&mut self, i: usize) -> Result<(), Violation> {
        let Some(to) = self
            .tmp
            .as_ref()
            .map(|t| t.path().join(format!("backup{i}")))
        else {
            return Ok(());
        };
        let fail = |e: String| violation("backup", format!("replica {i}: {e}"));
        if let Node::Disk {
            replica,
            dir,
            clock,
        } = self.node(i)?
        {
            if let Some(mut r) = replica.take() {
                r.flush().map_err(|e| fail(e.to_string()))?;
            }
            if to.exists() {
                std::fs::remove_dir_all(&to).map_err(|e| fail(e.to_string()))?;
            }
            copy_dir(dir, &to).map_err(|e| fail(e.to_string()))?;
            *replica =
                Some(Replica::open_with(dir, options(clock)).map_err(|e| fail(e.to_string()))?);
            self.backups.insert(i, to);
            self.stats.backups += 1;
        }
        Ok(())
    }

    /// [`Action::Restore`]: the device is off while its store's directory gets the files of its
    /// last backup in place, then opens it (it must verify). Saves no replica holds any more
    /// (nor a copy of) were lost with the disk: "no lost save" no longer asks for them.
    fn restore(&mut self, i: usize) -> Result<Option<String>, Violation> {
        let Some(backup) = self.backups.get(&i).cloned() else {
            return Ok(Some(": no backup to restore, nothing happens".into()));
        };
        if self.removed.contains(&i) {
            // (Nor is a removed device restored: see `leave`.)
            return Ok(Some(": the device was removed, nothing happens".into()));
        }
        let fail = |e: String| violation("restore", format!("replica {i}: {e}"));
        let Node::Disk {
            replica,
            dir,
            clock,
        } = self.node(i)?
        else {
            return Ok(None);
        };
        drop(replica.take());
        restore_in_place(&backup, dir).map_err(|e| fail(e.to_string()))?;
        let reopened = Replica::open_with(dir, options(clock)).map_err(|e| fail(e.to_string()))?;
        let report = reopened.verify().map_err(|e| fail(e.to_string()))?;
        if !report.is_ok() {
            return Err(fail(format!("verify: {:?}", report.problems)));
        }
        let device = reopened.id();
        *replica = Some(reopened);
        self.restored.insert(device);
        self.stats.restores += 1;
        let lost = self.forget_lost_saves()?;
        Ok(Some(match lost {
            0 => ": restored".into(),
            n => format!(": restored, {n} saves lost with the disk"),
        }))
    }

    /// Leaves out of [`Sim::saves`] the saves that no replica holds, neither as saved nor as
    /// a re-issued copy (a restore destroyed them); returns how many.
    fn forget_lost_saves(&mut self) -> Result<usize, Violation> {
        let mut held: BTreeMap<OpId, SealedOp> = BTreeMap::new();
        for node in &self.nodes {
            held.extend(node.ops()?.into_iter().map(|o| (o.id(), o)));
        }
        let before = self.saves.len();
        let sealed = &self.sealed;
        self.saves.retain(|(_, id)| {
            held.contains_key(id)
                || sealed
                    .get(id)
                    .is_some_and(|o| copy_of(o, held.values()).is_some())
        });
        let lost = before - self.saves.len();
        self.stats.lost_with_disk += lost;
        Ok(lost)
    }

    /// Two nodes at once, mutably.
    fn pair(&mut self, a: usize, b: usize) -> Result<(&mut Node, &mut Node), Violation> {
        let missing = || violation("schedule", format!("no replica pair {a}, {b}"));
        if a < b {
            let (lo, hi) = self.nodes.split_at_mut(b);
            Ok((
                lo.get_mut(a).ok_or_else(missing)?,
                hi.first_mut().ok_or_else(missing)?,
            ))
        } else {
            let (lo, hi) = self.nodes.split_at_mut(a);
            Ok((
                hi.first_mut().ok_or_else(missing)?,
                lo.get_mut(b).ok_or_else(missing)?,
            ))
        }
    }

    fn node(&mut self, i: usize) -> Result<&mut Node, Violation> {
        self.nodes
            .get_mut(i)
            .ok_or_else(|| violation("schedule", format!("no replica {i}")))
    }

    fn first(&self) -> Result<&Node, Violation> {
        self.nodes
            .first()
            .ok_or_else(|| violation("schedule", "no replicas"))
    }

    /// A session: `from` responds, `to` initiates, over `line`. Its outcome for the story:
    /// empty when both ends completed, else how the line's fault ended it.
    fn session(&mut self, from: usize, to: usize, line: Line) -> Result<String, Violation> {
        // What each side held at the start: a session both ends call complete delivers it.
        let held = (self.node(from)?.ops()?, self.node(to)?.ops()?);
        let chunk = match line {
            Line::Whole => 1 << 14,
            Line::Cut(_) => 1,
            // A few ops per message, so the network carries several (from the seed mixed, so
            // that the chunk size does not follow an app's own `seed % n` choice of fault).
            Line::Network(seed) => 1 + (mix(seed) % 4) as usize,
        };
        let Ends {
            initiator,
            responder,
        } = match line {
            Line::Whole | Line::Cut(_) => {
                let (responder, initiator) = channel_pair(TIMEOUT);
                let initiator: Box<dyn Transport + Send> = match line {
                    Line::Cut(left) => Box::new(Cut {
                        inner: initiator,
                        left,
                    }),
                    _ => Box::new(initiator),
                };
                Ends {
                    initiator,
                    responder: Box::new(responder),
                }
            }
            Line::Network(seed) => {
                let Some(network) = self.network.as_mut() else {
                    return Err(violation(
                        "schedule",
                        "SyncMode::Network needs the app's network: Sim::with_network",
                    ));
                };
                let link = Link {
                    initiator: to,
                    responder: from,
                    seed,
                };
                match network.connect(link) {
                    Ok(ends) => ends,
                    Err(e) => {
                        self.stats.network_failed += 1;
                        return Ok(format!(": the network could not connect ({e})"));
                    }
                }
            }
        };
        if (from == RELAY || to == RELAY)
            && matches!(self.nodes.get(RELAY), Some(Node::Disk { .. }))
        {
            self.stats.relay_sessions += 1;
        }
        let (a, b) = self.pair(from, to)?;
        let (ra, rb) = std::thread::scope(|s| {
            let h = s.spawn(move || {
                let mut t = responder;
                a.with_store(|st| st.session_(Role::Responder, chunk, &mut *t))
            });
            let mut t = initiator;
            let rb = b.with_store(|st| st.session_(Role::Initiator, chunk, &mut *t));
            // Closed, so that a responder still waiting hears of it.
            drop(t);
            (h.join(), rb)
        });
        let ra = ra.map_err(|_| violation("sync", "responder thread panicked"))??;
        let rb = rb?;
        let (ok_a, ok_b) = (line.excuses(&ra), line.excuses(&rb));
        if !(ok_a && ok_b) {
            return Err(violation(
                "sync",
                format!("{from}→{to} over {line:?}: {ra:?} / {rb:?}"),
            ));
        }
        let over_network = matches!(line, Line::Network(_));
        match (ra, rb) {
            (Ok(()), Ok(())) => {
                self.seen.extend(
                    held.0
                        .iter()
                        .chain(&held.1)
                        .map(|o| (o.op().author, o.op().seq, o.id())),
                );
                self.check_delivered(from, to, &held.0)?;
                self.check_delivered(to, from, &held.1)?;
                self.stats.network_completed += usize::from(over_network);
                Ok(String::new())
            }
            (ra, rb) => {
                self.stats.network_failed += usize::from(over_network);
                let said = |r: Result<(), SyncError<String>>| match r {
                    Ok(()) => "done".to_owned(),
                    Err(e) => e.to_string(),
                };
                Ok(format!(
                    ": the session failed ({}: {}; {}: {})",
                    naming::device_name(to),
                    said(rb),
                    naming::device_name(from),
                    said(ra)
                ))
            }
        }
    }

    /// Property "a completed session delivers": after a session both ends called complete,
    /// `taker` holds every op `giver` held at its start, but void ops of removed devices
    /// that it refused, and, of a device restored from a backup, ops on a branch the session
    /// left for later (docs/SEMANTICS.md, "Restores"): the taker holds another op at or
    /// before its place in the chain (a fork not settled yet), the giver withdrew it in the
    /// session, its copy arrived instead, or it is the giver's own while the giver waits to
    /// take its chain back; and what builds on those or is admitted by them.
    fn check_delivered(
        &self,
        giver: usize,
        taker: usize,
        had: &[SealedOp],
    ) -> Result<(), Violation> {
        let node = |i: usize| {
            self.nodes
                .get(i)
                .ok_or_else(|| violation("schedule", format!("no replica {i}")))
        };
        let ops = node(taker)?.ops()?;
        let held: std::collections::BTreeSet<OpId> = ops.iter().map(SealedOp::id).collect();
        let cutoffs = cutoffs_of(&ops);
        // Nor ops of a device whose admission the taker wrote and withdrew with its chain at
        // a take back, waiting there to be re-issued behind edits that wait for another
        // device's copy: the taker knows it as no member until then (seed 0xcb82c of base
        // 833000; 0xca327's kind).
        let not_yet = node(taker)?.admissions_waiting()?;
        let missing: Vec<&SealedOp> = had
            .iter()
            .filter(|o| {
                !held.contains(&o.id())
                    && !cutoffs.voids(&o.op().author, o.op().seq)
                    && !not_yet.contains(&o.op().author)
            })
            .collect();
        // Restored devices whose chains are not one yet (replicas hold different tips).
        let mut unsettled = false;
        for d in &self.restored {
            let mut tips = std::collections::BTreeSet::new();
            for n in &self.nodes {
                tips.insert(n.summary()?.get(d).map(|t| t.op));
            }
            unsettled |= tips.len() > 1;
        }
        let missing = if !missing.is_empty() && !self.restored.is_empty() {
            let places = |ops: &[SealedOp]| -> BTreeMap<(DeviceId, u64), OpId> {
                ops.iter()
                    .map(|o| ((o.op().author, o.op().seq), o.id()))
                    .collect()
            };
            let (theirs, mine) = (places(had), places(&ops));
            let forks_by = |o: &SealedOp| {
                let author = o.op().author;
                theirs
                    .range((author, 0)..=(author, o.op().seq))
                    .any(|(place, id)| mine.get(place).is_some_and(|held| held != id))
            };
            let now: std::collections::BTreeSet<OpId> =
                node(giver)?.ops()?.iter().map(SealedOp::id).collect();
            let giver_id = node(giver)?.device()?;
            let giver_waits = node(giver)?.restored()?;
            // A signature missing is a fault, but while some restored chain is not one yet, or
            // where the giver withdrew the op its signature was of (the author built on a
            // branch given up and re-issues the op in its next session, signing anew).
            let unprovable = node(giver)?.unprovable(&missing, had)?;
            let cut = |o: &SealedOp| -> Result<bool, Violation> {
                let (author, seq) = (o.op().author, o.op().seq);
                for (_, _, id) in self
                    .seen
                    .range((author, seq.saturating_add(1), OpId([0; 32]))..)
                    .take_while(|(a, ..)| *a == author)
                {
                    if node(giver)?.withdrew(id) {
                        return Ok(true);
                    }
                }
                Ok(false)
            };
            let mut excused = std::collections::BTreeSet::new();
            for o in &missing {
                if unprovable.contains(&o.id()) && (unsettled || cut(o)?) {
                    excused.insert(o.id());
                }
            }
            let mut waits: std::collections::BTreeSet<OpId> = missing
                .iter()
                .filter(|o| {
                    excused.contains(&o.id())
                        // Withdrawn by the giver in the session (with a branch given up, or
                        // built on one): its author re-issues it.
                        || !now.contains(&o.id())
                        || (self.restored.contains(&o.op().author)
                            && (forks_by(o)
                                || copy_of(o, &ops).is_some()
                                || (o.op().author == giver_id && giver_waits)))
                })
                .map(|o| o.id())
                .collect();
            // And what builds on those (names one), with the rest of its author's ops sent (a
            // segment goes in whole or waits whole): its author's ops after one of them (a
            // chain has no gaps) and below one that no signature the giver holds proves
            // without it (a replica stores another device's ops only up to one it can
            // prove): it goes in when they do.
            let signed: std::collections::BTreeSet<(DeviceId, u64)> =
                node(giver)?.signed(had)?.into_iter().collect();
            loop {
                let waiting: std::collections::BTreeSet<DeviceId> = missing
                    .iter()
                    .filter(|o| waits.contains(&o.id()))
                    .map(|o| o.op().author)
                    .collect();
                // Devices a waiting op admits: the taker cannot take their ops before it
                // knows them as members (seed 0xbeba8: the phone, restored twice, admitted the
                // watch on a branch the tablet cannot take yet).
                let admitted: std::collections::BTreeSet<DeviceId> = missing
                    .iter()
                    .filter(|o| waits.contains(&o.id()))
                    .flat_map(|o| o.op().members.iter())
                    .filter_map(|m| match m {
                        cardlog::MemberChange::Add { device, .. } => Some(*device),
                        _ => None,
                    })
                    .collect();
                let more: Vec<OpId> = missing
                    .iter()
                    .filter(|o| !waits.contains(&o.id()))
                    .filter(|o| {
                        let o = o.op();
                        if admitted.contains(&o.author) {
                            return true;
                        }
                        // A waiting op of its author's above it that no signature below
                        // proves it without, or below it (a chain has no gaps).
                        let below_waiting = missing.iter().any(|w| {
                            let w_seq = w.op().seq;
                            waits.contains(&w.id())
                                && w.op().author == o.author
                                && (w_seq < o.seq
                                    || (w_seq > o.seq
                                        && signed
                                            .range((o.author, o.seq)..(o.author, w_seq))
                                            .next()
                                            .is_none()))
                        });
                        (unsettled && waiting.contains(&o.author))
                            || below_waiting
                            || o.writes
                                .iter()
                                .flat_map(|w| &w.replaces)
                                .any(|r| waits.contains(r))
                    })
                    .map(|o| o.id())
                    .collect();
                if more.is_empty() {
                    break;
                }
                waits.extend(more);
            }
            missing
                .into_iter()
                .filter(|o| !waits.contains(&o.id()))
                .collect()
        } else {
            missing
        };
        match missing.first() {
            None => Ok(()),
            Some(first) => Err(violation(
                "a completed session delivers",
                format!(
                    "both ends of {} ↔ {} reported success, but {} lacks {} of the ops {} held \
                     (first {} by {}, seq {})",
                    naming::device_name(giver),
                    naming::device_name(taker),
                    naming::device_name(taker),
                    missing.len(),
                    naming::device_name(giver),
                    first.id(),
                    first.op().author,
                    first.op().seq
                ),
            )),
        }
    }

    fn sync(&mut self, from: usize, to: usize, mode: SyncMode) -> Result<String, Violation> {
        let fail = |e: String| violation("sync", format!("{from}→{to} {mode:?}: {e}"));
        match mode {
            SyncMode::Full => self.session(from, to, Line::Whole),
            SyncMode::Interrupted(k) => self.session(from, to, Line::Cut(usize::from(k))),
            SyncMode::Network(seed) => self.session(from, to, Line::Network(seed)),
            SyncMode::Relay(r) => {
                let relay = usize::from(r) % self.nodes.len();
                if relay == from || relay == to {
                    return self.session(from, to, Line::Whole);
                }
                let first = self.session(from, relay, Line::Whole)?;
                let second = self.session(relay, to, Line::Whole)?;
                Ok(format!("{first}{second}"))
            }
            SyncMode::Partial(pct) => {
                let forked = self.forked_between(from, to)?;
                let (a, b) = self.pair(from, to)?;
                let since = b.with_store(|s| s.summary_())?;
                let mut ops = a.with_store(|s| s.ops_since_(&since))?.map_err(fail)?;
                ops.retain(|o| !forked.contains(&o.op().author));
                let keep = ops.len() * usize::from(pct) / 100;
                let prefix = ops.get(..keep).unwrap_or_default();
                // Authors whose part ends where the sender holds no signature are refused (and
                // come with a later sync).
                let tips = a.with_store(|s| s.signatures_(prefix))?.map_err(fail)?;
                b.with_store(|s| s.apply_(prefix, &tips))?.map_err(fail)?;
                Ok(String::new())
            }
            SyncMode::Reordered(seed) => {
                let mut forked = self.forked_between(from, to)?;
                let me = self.node(to)?.device()?;
                let (a, b) = self.pair(from, to)?;
                let since = b.with_store(|s| s.summary_())?;
                let mut ops = a.with_store(|s| s.ops_since_(&since))?.map_err(fail)?;
                // A device admitted by an op of a chain left out, and not yet known to the
                // receiver as a member, is left out too: its ops would be refused as a
                // stranger's until the admission arrives (seed 0xc488e of base 805000: the
                // phone admitted the watch on its branch after a restore, which the tablet,
                // holding the phone's other branch, cannot take in raw ops).
                let known: std::collections::BTreeSet<DeviceId> = admitted_by(&b.ops()?).collect();
                let unknown: Vec<DeviceId> = admitted_by(
                    &ops.iter()
                        .filter(|o| forked.contains(&o.op().author))
                        .cloned()
                        .collect::<Vec<_>>(),
                )
                .filter(|d| !known.contains(d))
                .collect();
                forked.extend(unknown);
                ops.retain(|o| !forked.contains(&o.op().author));
                let tips = a.with_store(|s| s.signatures_(&ops))?.map_err(fail)?;
                shuffle(&mut ops, seed);
                // (Which devices the receiver takes as removed while it stores the batch: under
                // the membership ops it holds and those the batch brings.)
                let mut members = b.ops()?;
                members.extend(ops.iter().filter(|o| o.op().is_membership()).cloned());
                let removed = cutoffs_of(&members);
                let applied = b.with_store(|s| s.apply_(&ops, &tips))?.map_err(fail)?;
                // Every op the receiver lacked arrived, in whatever order: all must be stored,
                // but a removed device's void ops that nothing among them needs.
                if applied
                    .refused
                    .iter()
                    .any(|r| !matches!(r, cardlog::Refusal::Removed { .. }))
                {
                    return Err(fail(format!("{applied:?}")));
                }
                let refused: std::collections::BTreeSet<DeviceId> = applied
                    .refused
                    .iter()
                    .map(cardlog::Refusal::author)
                    .collect();
                let held = b.ops()?;
                let cutoffs = cutoffs_of(&held);
                // While a restored device's chain forks between the two, the receiver's
                // summary names its op at a place where the sender holds another: ops built on
                // the sender's do not go in without it (a session sends such chains whole).
                let had: std::collections::BTreeSet<OpId> = held
                    .iter()
                    .map(SealedOp::id)
                    .chain(ops.iter().map(SealedOp::id))
                    .collect();
                let mut lacking: std::collections::BTreeSet<OpId> = Default::default();
                if !self.restored.is_empty() {
                    loop {
                        let mut more: Vec<OpId> = ops
                            .iter()
                            .filter(|o| !lacking.contains(&o.id()))
                            .filter(|o| {
                                let o = o.op();
                                o.prev
                                    .iter()
                                    .chain(o.writes.iter().flat_map(|w| &w.replaces))
                                    .any(|d| !had.contains(d) || lacking.contains(d))
                            })
                            .map(SealedOp::id)
                            .collect();
                        // And what no signature proves without them: the receiver stores
                        // another device's ops only up to one it can prove, so where the
                        // batch's signature of an author's chain is of an op that waits, the
                        // ops below it that no signature of the batch covers wait with it
                        // (docs/SYNC.md, "Signatures"; `Store::apply_signed`).
                        if more.is_empty() {
                            let authors: std::collections::BTreeSet<DeviceId> = ops
                                .iter()
                                .filter(|o| lacking.contains(&o.id()) && o.op().author != me)
                                .map(|o| o.op().author)
                                .collect();
                            for author in authors {
                                let going: Vec<&SealedOp> = ops
                                    .iter()
                                    .filter(|o| {
                                        o.op().author == author && !lacking.contains(&o.id())
                                    })
                                    .collect();
                                let Some(head) = going.iter().map(|o| o.op().seq).max() else {
                                    continue;
                                };
                                let Some(tip) = tips
                                    .iter()
                                    .filter(|t| t.author == author && t.seq > head)
                                    .max_by_key(|t| t.seq)
                                else {
                                    continue;
                                };
                                let signed_at = going
                                    .iter()
                                    .filter(|o| {
                                        tips.iter().any(|t| {
                                            t.author == author
                                                && t.seq == o.op().seq
                                                && t.op == o.id()
                                        })
                                    })
                                    .map(|o| o.op().seq)
                                    .max();
                                // Unless their device is removed (it never signs them again)
                                // and the batch brings the ops from the head up to the signed
                                // one: a cover, which proves them.
                                let by_removed = removed.cutoff(&author).is_some();
                                let mut at =
                                    going.iter().find(|o| o.op().seq == head).map(|o| o.id());
                                for seq in head.saturating_add(1)..=tip.seq {
                                    at = at.and_then(|prev| {
                                        ops.iter()
                                            .find(|o| {
                                                let o = o.op();
                                                o.author == author
                                                    && o.seq == seq
                                                    && o.prev == Some(prev)
                                            })
                                            .map(|o| o.id())
                                    });
                                }
                                if by_removed && at == Some(tip.op) {
                                    continue;
                                }
                                more.extend(
                                    going
                                        .iter()
                                        .filter(|o| signed_at.is_none_or(|s| o.op().seq > s))
                                        .map(|o| o.id()),
                                );
                            }
                        }
                        if more.is_empty() {
                            break;
                        }
                        lacking.extend(more);
                    }
                }
                let expected = ops
                    .iter()
                    .filter(|o| {
                        let id = o.id();
                        let o = o.op();
                        let void = refused.contains(&o.author) && cutoffs.voids(&o.author, o.seq);
                        !void && !lacking.contains(&id)
                    })
                    .count();
                if applied.stored != expected {
                    return Err(fail(format!("{applied:?} of {} shuffled ops", ops.len())));
                }
                Ok(String::new())
            }
            SyncMode::Bundle | SyncMode::Duplicated => {
                let (a, b) = self.pair(from, to)?;
                let heads = b.with_store(|s| s.summary_file_())?;
                let (_, since) =
                    bundle::read_summary_file(&heads).map_err(|e| fail(e.to_string()))?;
                let file = a.with_store(|s| s.export_(&since))?.map_err(fail)?;
                b.with_store(|s| s.import_(&file))?.map_err(fail)?;
                if mode == SyncMode::Duplicated {
                    let before = b.state_bytes()?;
                    let again = b.with_store(|s| s.import_(&file))?.map_err(fail)?;
                    if again.stored != 0 || b.state_bytes()? != before {
                        return Err(violation(
                            "import idempotent",
                            format!("second import stored {again:?}"),
                        ));
                    }
                }
                Ok(String::new())
            }
        }
    }

    /// A final full sync: every replica with the first, round after round until a round
    /// changes nothing (at least twice round, at most `FINAL_ROUNDS_MAX`). Two rounds
    /// deliver everything while every chain is one; a store restored from a backup needs a
    /// round more to take back what it lost from the first replica (which keeps the branch
    /// it could not settle), and another for the first to settle the branch given up.
    pub fn sync_all(&mut self) -> Result<(), Violation> {
        // The schedule's own sessions are what the stats count.
        let relay_sessions = self.stats.relay_sessions;
        let mut before = self.summaries()?;
        for round in 0..FINAL_ROUNDS_MAX {
            for i in 1..self.nodes.len() {
                self.session(i, 0, Line::Whole)?;
            }
            let after = self.summaries()?;
            if round >= 1 && after == before {
                break;
            }
            before = after;
        }
        self.stats.relay_sessions = relay_sessions;
        Ok(())
    }

    /// Authors whose chains replicas `a` and `b` hold otherwise (an op of each at one place: a
    /// restored device's): raw ops (the partial and reordered modes, which skip the session's
    /// fork handling) cannot go between them, and are left out.
    fn forked_between(
        &self,
        a: usize,
        b: usize,
    ) -> Result<std::collections::BTreeSet<DeviceId>, Violation> {
        let places = |i: usize| -> Result<BTreeMap<(DeviceId, u64), OpId>, Violation> {
            let node = self
                .nodes
                .get(i)
                .ok_or_else(|| violation("schedule", format!("no replica {i}")))?;
            Ok(node
                .ops()?
                .iter()
                .map(|o| ((o.op().author, o.op().seq), o.id()))
                .collect())
        };
        let (ours, theirs) = (places(a)?, places(b)?);
        Ok(ours
            .iter()
            .filter(|(place, id)| theirs.get(place).is_some_and(|t| t != *id))
            .map(|((author, _), _)| *author)
            .collect())
    }

    fn summaries(&self) -> Result<Vec<Summary>, Violation> {
        self.nodes.iter().map(Node::summary).collect()
    }

    /// Syncs everything, then checks: convergence, equality with the reference model, no lost
    /// save, import idempotence, order independence, and (on disk) incremental = rebuilt.
    pub fn check(&mut self) -> Result<(), Violation> {
        // The model must hold at every replica before the final sync, too: whatever subset of
        // ops a replica has, its state is the model's function of that subset.
        self.check_model_everywhere()?;
        self.sync_all()?;
        self.check_convergence()?;
        self.check_model_everywhere()?;
        let views = self.first()?.views()?;
        self.stats.conflicts = views.iter().map(|v| v.conflicts.len()).sum();
        self.stats.deleted = views.iter().filter(|v| v.deleted).count();
        let ops = self.first()?.ops()?;
        let cutoffs = cutoffs_of(&ops);
        self.stats.ops = ops.len();
        self.stats.void_kept = ops
            .iter()
            .filter(|o| cutoffs.voids(&o.op().author, o.op().seq))
            .count();
        self.check_no_lost_save()?;
        self.check_right_clock_wins()?;
        self.check_order_independence()?;
        self.check_rebuild()?;
        self.check_import_idempotent()?;
        Ok(())
    }

    /// Property "convergence": every replica has the first one's state bytes and summary
    /// (meaningful after [`Sim::sync_all`]).
    pub fn check_convergence(&mut self) -> Result<(), Violation> {
        let first = self.first()?.state_bytes()?;
        // Void ops are kept only where other ops need them: summaries agree up to the cutoffs.
        let cutoffs = cutoffs_of(&self.first()?.ops()?);
        let valid = |summary: Summary, ops: &[SealedOp]| {
            let mut tips: BTreeMap<DeviceId, (u64, OpId)> = summary
                .iter()
                .filter(|(author, tip)| !cutoffs.voids(author, tip.seq))
                .map(|(author, tip)| (*author, (tip.seq, tip.op)))
                .collect();
            // A removed author's last valid op, where void ones follow it.
            for op in ops {
                let o = op.op();
                let past = summary
                    .get(&o.author)
                    .is_some_and(|t| cutoffs.voids(&o.author, t.seq));
                if past && !cutoffs.voids(&o.author, o.seq) {
                    let tip = tips.entry(o.author).or_insert((o.seq, op.id()));
                    if o.seq > tip.0 {
                        *tip = (o.seq, op.id());
                    }
                }
            }
            tips
        };
        let summary = valid(
            self.node(0)?.with_store(|s| s.summary_())?,
            &self.first()?.ops()?,
        );
        for (i, node) in self.nodes.iter_mut().enumerate().skip(1) {
            if node.state_bytes()? != first {
                return Err(violation(
                    "convergence",
                    format!("replica {i} state differs"),
                ));
            }
            let ops = node.ops()?;
            if valid(node.with_store(|s| s.summary_())?, &ops) != summary {
                return Err(violation(
                    "convergence",
                    format!("replica {i} summary differs"),
                ));
            }
        }
        Ok(())
    }

    /// Property "reference model": every replica's contacts equal the model's function of
    /// the ops it holds.
    pub fn check_model_everywhere(&self) -> Result<(), Violation> {
        for (i, node) in self.nodes.iter().enumerate() {
            self.check_model(i, node)?;
        }
        Ok(())
    }

    /// Property "import idempotent": a bundle of everything replica 0 holds, imported twice
    /// into every replica, changes nothing the second time (nor the first, after a full
    /// sync).
    pub fn check_import_idempotent(&mut self) -> Result<(), Violation> {
        let file = self
            .node(0)?
            .with_store(|s| s.export_(&Summary::new()))?
            .map_err(|e| violation("import idempotent", e))?;
        for (i, node) in self.nodes.iter_mut().enumerate() {
            node.with_store(|s| s.import_(&file))?
                .map_err(|e| violation("import idempotent", e))?;
            let before = node.state_bytes()?;
            let again = node
                .with_store(|s| s.import_(&file))?
                .map_err(|e| violation("import idempotent", e))?;
            if again.stored != 0 || node.state_bytes()? != before {
                return Err(violation(
                    "import idempotent",
                    format!("replica {i}: second import stored {again:?}"),
                ));
            }
        }
        Ok(())
    }

    fn check_model(&self, i: usize, node: &Node) -> Result<(), Violation> {
        let ops = node.ops()?;
        let expected = self.model_of(&ops);
        let seen: BTreeMap<_, _> = node
            .views()?
            .iter()
            .map(|v| (v.contact.id, ModelContact::of_view(v)))
            .collect();
        if expected != seen {
            let diff: Vec<String> = expected
                .iter()
                .filter(|(id, m)| seen.get(*id) != Some(*m))
                .map(|(id, m)| format!("{id}: model {m:?} engine {:?}", seen.get(id)))
                .take(2)
                .collect();
            return Err(violation(
                "reference model",
                format!("replica {i} ({} ops): {}", ops.len(), diff.join("; ")),
            ));
        }
        Ok(())
    }

    /// Property "no lost save": every save that returned is on every replica, each write
    /// in its path's history; a save its device re-issued after a restore is there as its
    /// copy (the same time and writes, later in the chain). Saves lost with a restored disk
    /// before any other replica held them are not asked for.
    pub fn check_no_lost_save(&mut self) -> Result<(), Violation> {
        for (i, node) in self.nodes.iter().enumerate() {
            let held: BTreeMap<OpId, SealedOp> =
                node.ops()?.into_iter().map(|o| (o.id(), o)).collect();
            for (by, id) in &self.saves {
                let op = match held.get(id) {
                    Some(op) => op,
                    None => match self.sealed.get(id).and_then(|o| copy_of(o, held.values())) {
                        Some(copy) => copy,
                        None => {
                            return Err(violation(
                                "no lost save",
                                format!("op {id} saved on replica {by} is missing on replica {i}"),
                            ));
                        }
                    },
                };
                let id = &op.id();
                // Each write is visible, or superseded or conflicting in its history.
                for w in &op.op().writes {
                    let history = node.history(&w.contact, &w.path)?;
                    if !history.iter().any(|v| v.op == *id && v.value == w.value) {
                        return Err(violation(
                            "no lost save",
                            format!(
                                "replica {i}: write of {id} at {}/{} not in its history",
                                w.contact, w.path
                            ),
                        ));
                    }
                }
            }
        }
        Ok(())
    }

    /// Property "a right clock's later edit wins": of two concurrent edits of one path (both
    /// heads of a conflict on replica 0, after the final sync), each made while its device's
    /// time read real time, the one made later in real time is shown, whatever either device's
    /// clock read before (docs/SEMANTICS.md, "Time"). A device whose clock was set right
    /// after being wrong is held to it from its next edit on.
    pub fn check_right_clock_wins(&mut self) -> Result<(), Violation> {
        self.stats.right_pairs = 0;
        for view in self.first()?.views()? {
            for conflict in &view.conflicts {
                let Some(shown) = self.right_saves.get(&conflict.winner.op) else {
                    continue;
                };
                for other in &conflict.alternatives {
                    let Some(made) = self.right_saves.get(&other.op) else {
                        continue;
                    };
                    self.stats.right_pairs += 1;
                    if made > shown {
                        return Err(violation(
                            "a right clock's later edit wins",
                            format!(
                                "contact {} {}: {} (made {} ms later in real time) lost to {}",
                                view.contact.id,
                                conflict.path,
                                other.op,
                                made - shown,
                                conflict.winner.op
                            ),
                        ));
                    }
                }
            }
        }
        Ok(())
    }

    /// Property "order independence": the ops of replica 0 replayed in memory in reverse
    /// and in a shuffled order give the same state bytes.
    pub fn check_order_independence(&self) -> Result<(), Violation> {
        let ops = self.first()?.ops()?;
        let expected = self.first()?.state_bytes()?;
        for seed in [0u64, 0x9e37_79b9_7f4a_7c15] {
            let mut shuffled = ops.clone();
            if seed == 0 {
                shuffled.reverse();
            } else {
                shuffle(&mut shuffled, seed);
            }
            let mut replay = cardlog_core::replay::Replay::new();
            replay.set_cutoffs(cutoffs_of(&ops));
            for op in shuffled {
                replay
                    .insert(op)
                    .map_err(|e| violation("order independence", e.to_string()))?;
            }
            if replay.state_bytes() != expected {
                return Err(violation(
                    "order independence",
                    format!("state differs after delivery order {seed:#x}"),
                ));
            }
        }
        Ok(())
    }

    /// Property "incremental = rebuilt" (disk replicas): `rebuild` leaves replica 0's
    /// state bytes unchanged.
    pub fn check_rebuild(&mut self) -> Result<(), Violation> {
        if let Some(Node::Disk {
            replica: Some(r), ..
        }) = self.nodes.get_mut(0)
        {
            let before = r
                .state_bytes()
                .map_err(|e| violation("incremental = rebuilt", e.to_string()))?;
            r.rebuild()
                .map_err(|e| violation("incremental = rebuilt", e.to_string()))?;
            if r.state_bytes()
                .map_err(|e| violation("incremental = rebuilt", e.to_string()))?
                != before
            {
                return Err(violation(
                    "incremental = rebuilt",
                    "state differs after rebuild",
                ));
            }
        }
        Ok(())
    }
}

/// The op among `held` that is a re-issued copy of `op` (docs/SEMANTICS.md, "Restores"): by
/// the same author, at its seq or later in its chain (an edit made on a branch given up is
/// re-issued where it was: its author's chain goes back to before it), with the same time,
/// writes (contact, path, value) and member changes.
fn copy_of<'a>(
    op: &SealedOp,
    held: impl IntoIterator<Item = &'a SealedOp>,
) -> Option<&'a SealedOp> {
    let o = op.op();
    let writes = |op: &cardlog_core::Op| -> Vec<(ContactId, Path, Option<Value>)> {
        op.writes
            .iter()
            .map(|w| (w.contact, w.path.clone(), w.value.clone()))
            .collect()
    };
    let print = writes(o);
    held.into_iter().find(|c| {
        let c = c.op();
        c.author == o.author
            && c.seq >= o.seq
            && c != o
            && c.hlc == o.hlc
            && c.members == o.members
            && writes(c) == print
    })
}

/// Copies the directory `from` to `to` (created), files and subdirectories.
fn copy_dir(from: &std::path::Path, to: &std::path::Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_dir(&entry.path(), &target)?;
        } else {
            std::fs::copy(entry.path(), &target)?;
        }
    }
    Ok(())
}

/// Restores `backup` into `dir` in place, as a phone restore or `rsync -a --delete` does: the
/// directories stay (same inodes), files the backup lacks go, every file of the backup is
/// written over the one in place.
fn restore_in_place(backup: &std::path::Path, dir: &std::path::Path) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let kept = backup.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            if kept.is_dir() {
                restore_in_place(&kept, &entry.path())?;
            } else {
                std::fs::remove_dir_all(entry.path())?;
            }
        } else if !kept.is_file() {
            std::fs::remove_file(entry.path())?;
        }
    }
    copy_dir(backup, dir)
}

/// The cutoffs of the book founded among `ops`: which of them are void.
fn cutoffs_of(ops: &[SealedOp]) -> cardlog_core::Cutoffs {
    cardlog_core::Membership::founded_in(ops)
        .map(|m| m.cutoffs())
        .unwrap_or_default()
}

/// The devices `ops` admit (member changes adding them).
fn admitted_by(ops: &[SealedOp]) -> impl Iterator<Item = DeviceId> + '_ {
    ops.iter()
        .flat_map(|o| o.op().members.iter())
        .filter_map(|m| match m {
            cardlog::MemberChange::Add { device, .. } => Some(*device),
            _ => None,
        })
}

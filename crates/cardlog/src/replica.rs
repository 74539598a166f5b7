//! [`Replica`]: one device's durable copy of the contacts, in a directory.
//!
//! A replica is a [`Store`] plus the device's hybrid clock and the membership of its address
//! book (`book.rs`). Local saves are planned against the stored register heads (each write
//! replaces exactly the heads it saw), sealed as the device's next op, signed, stored in one
//! atomic batch and flushed before the call returns. Ops from other devices go through
//! [`Replica::apply`]: the book's membership and the authors' signatures first, then the same
//! checks an in-memory [`cardlog_core::Replay`] applies.
//!
//! The clock is not replayed either: each new op carries the device's calibrated real time at
//! the edit (docs/SEMANTICS.md, "Time"). The calibration learned from the book's relay is
//! kept in the store's meta with when it was taken, and lapses once someone sets the clock.

use std::collections::BTreeMap;
use std::ops::{Deref, DerefMut};
use std::path::Path as FsPath;
use std::sync::Arc;

use crate::changes::ChangeSource;
use cardlog_core::edit::{self, EditTarget};
use cardlog_core::hlc::SKEW_BOUND_MS_DEFAULT;
use cardlog_core::replay::{ChainTip, ContactRegisters, Heads};
use cardlog_core::{
    Anchor, Batch, BookId, Contact, ContactId, ContactPage, ContactQuery, ContactRow, ContactView,
    DeviceId, FieldConflict, HistoryEntry, Hlc, HlcClock, IdPrefix, Membership, Missing, OpId,
    Path, RowWidths, SealedOp, SignedTip, SkewReport, Suspect, SystemClock, Value, WallClock,
};
use cardlog_store::keys::meta;
use cardlog_store::{
    Compacted, Database, Keeps, OpOutcome, Progress, RepairReport, Store, StoreOptions,
    VerifyReport, CACHE_BYTES_DEFAULT,
};

use crate::error::{Error, OpenError};

use cardlog_core::Summary;

/// How to open a replica.
#[derive(Clone)]
pub struct Options {
    /// sled's page cache in bytes (default [`CACHE_BYTES_DEFAULT`], 32 MiB; at least
    /// [`CACHE_BYTES_MIN`](crate::CACHE_BYTES_MIN)) for the store's main database; the name
    /// index's database has a cache of its own, a quarter that size (at least the minimum too).
    pub cache_bytes: u64,
    /// Where wall time comes from (tests inject a fake clock).
    pub wall: Arc<dyn WallClock>,
    /// How far ahead of local time a received timestamp may be before it is reported
    /// (default 5 min; it never moves the clock).
    pub skew_bound_ms: u64,
    /// This device's human name ("Ada's iPhone"), written into the book when this replica
    /// founds one; `None` names it "device" and the first hex digits of its id.
    pub name: Option<String>,
    /// How far ahead of its records a small save extends the op log with zeros (default
    /// [`cardlog_store::log::PREALLOCATE_BYTES`], 1 MiB, which makes a durable save's sync
    /// cheaper; cut at close). A relay keeping many books open sets it small.
    pub log_preallocate_bytes: u64,
    /// What keeps the state of a replica created with these options (default
    /// [`Database::Sled`]; a relay keeps its books in [`Database::Journal`]). An open finds
    /// what the store was created with.
    pub database: Database,
    /// What a replica created with these options keeps besides its op log (default
    /// [`Keeps::Contacts`]; a relay keeps its books [`Keeps::OpsOnly`]: it never reads a
    /// contact). An open finds what the store was created with.
    pub keeps: Keeps,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            cache_bytes: CACHE_BYTES_DEFAULT,
            wall: Arc::new(SystemClock),
            skew_bound_ms: SKEW_BOUND_MS_DEFAULT,
            name: None,
            log_preallocate_bytes: cardlog_store::log::PREALLOCATE_BYTES,
            database: Database::Sled,
            keeps: Keeps::Contacts,
        }
    }
}

impl std::fmt::Debug for Options {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Options")
            .field("cache_bytes", &self.cache_bytes)
            .field("skew_bound_ms", &self.skew_bound_ms)
            .field("database", &self.database)
            .field("keeps", &self.keeps)
            .finish_non_exhaustive()
    }
}

/// What [`Replica::apply`] did with a set of ops.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ApplyReport {
    /// Authors whose ops were refused by the book (not members, no valid signature…), with
    /// why; none of their ops was stored. Always empty from [`Replica::apply`], which refuses
    /// the whole set instead.
    pub refused: Vec<cardlog_core::Refusal>,
    /// Ops stored.
    pub stored: usize,
    /// Ops already here.
    pub duplicates: usize,
    /// Ops not stored because a dependency is neither here nor among the ops given, with the
    /// first missing dependency. Send them again once the dependency has arrived.
    pub missing: Vec<(OpId, Missing)>,
    /// Received timestamps further ahead of local time than the skew bound.
    pub skew: Vec<SkewReport>,
}

/// One device's durable copy of the contacts. See the module docs.
///
/// Dropping it closes the store. After a session of many writes (a large import or first
/// sync) the close also checkpoints the database so the next open is fast, which takes tens of
/// milliseconds per hundred thousand ops: drop it off the UI thread then.
pub struct Replica {
    pub(crate) store: Store,
    pub(crate) clock: HlcClock,
    pub(crate) wall: Arc<dyn WallClock>,
    bulk: bool,
    /// Who may write what in the replica's book (`book.rs`).
    /// Boxed: it is as large as the rest of the replica.
    pub(crate) membership: Box<Membership>,
    /// The session identity (`sync.rs`), made on first use: it costs a signature and a scalar
    /// multiplication, once per replica rather than per session. Boxed: the replica stays small.
    pub(crate) session_identity: std::sync::OnceLock<Box<cardlog_sync::Identity>>,
    /// Change subscribers (`changes.rs`). Boxed: the replica stays small.
    pub(crate) hub: Box<crate::changes::Hub>,
    /// The day (calibrated, since the epoch) peer records were last swept for expiry
    /// (`sync.rs`); 0 before the first sweep since open. (A day number, not ms: it fits
    /// beside `bulk`, and the replica stays small.)
    pub(crate) peers_swept_day: u32,
}

impl std::fmt::Debug for Replica {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Replica")
            .field("store", &self.store)
            .field("clock", &self.clock)
            .field("bulk", &self.bulk)
            .finish_non_exhaustive()
    }
}

fn store_options(options: &Options) -> StoreOptions {
    StoreOptions {
        cache_bytes: options.cache_bytes,
        database: options.database,
        keeps: options.keeps,
    }
}

impl Replica {
    /// Creates a replica in `dir` (which must not exist or be empty) with a new device key,
    /// founding a new address book whose first admin it is.
    pub fn create(dir: &FsPath) -> Result<Self, OpenError> {
        Self::create_with(dir, Options::default())
    }

    /// [`Replica::create`] with options.
    pub fn create_with(dir: &FsPath, options: Options) -> Result<Self, OpenError> {
        let store = Store::create(dir, &store_options(&options))?;
        Self::from_store(store, options)
    }

    /// Creates a replica in `dir` for the existing address book `book`, with a new device key.
    /// It accepts that book's ops only, and writes once an admin has added it
    /// ([`Replica::add_member`] on an admin's replica, with this one's [`Replica::id`]) and the
    /// op admitting it has arrived here (by sync or bundle).
    pub fn join(dir: &FsPath, book: BookId) -> Result<Self, OpenError> {
        Self::join_with(dir, book, Options::default())
    }

    /// [`Replica::join`] with options.
    pub fn join_with(dir: &FsPath, book: BookId, options: Options) -> Result<Self, OpenError> {
        let mut store = Store::create(dir, &store_options(&options))?;
        store.set_book(book)?;
        store.flush()?;
        Self::from_store(store, options)
    }

    /// [`Replica::join_with`] writing as the device holding `key` instead of a new one: a
    /// relay keeps each of its books in a replica of its own, all as one device
    /// ([`crate::Relay`]).
    pub fn join_as(
        dir: &FsPath,
        book: BookId,
        key: &cardlog_core::DeviceKey,
        options: Options,
    ) -> Result<Self, OpenError> {
        let mut store = Store::create_as(dir, &store_options(&options), key)?;
        store.set_book(book)?;
        store.flush()?;
        Self::from_store(store, options)
    }

    /// Opens the replica in `dir`. Cost does not grow with the history: nothing is replayed. A
    /// directory that is not a replica, or one of an unknown format, is refused untouched.
    pub fn open(dir: &FsPath) -> Result<Self, OpenError> {
        Self::open_with(dir, Options::default())
    }

    /// [`Replica::open`] with options.
    pub fn open_with(dir: &FsPath, options: Options) -> Result<Self, OpenError> {
        let store = Store::open(dir, &store_options(&options))?;
        Self::from_store(store, options)
    }

    /// Opens the replica in `dir` for reading only, from its op log alone
    /// ([`Store::open_read_only`]): nothing is written anywhere, so it reads a store on a
    /// read-only mount, on a full disk, or whose database cannot be opened (`cardlog` falls
    /// back to it for its read commands). Every write is refused
    /// ([`cardlog_store::StoreError::ReadOnly`]). It replays the whole log, in time and
    /// memory; peer records, calibration and the signatures of received ops are absent.
    pub fn open_read_only(dir: &FsPath, options: Options) -> Result<Self, OpenError> {
        Self::from_store(Store::open_read_only(dir)?, options)
    }

    /// Builds a new database for the replica in `dir` from its op log
    /// ([`Store::repair`]: the old one set aside, what it still gives carried over, the device
    /// id kept), then opens it and verifies it, the book's rules included: the report's
    /// problems are [`Replica::verify`]'s.
    pub fn repair(dir: &FsPath, options: Options) -> Result<RepairReport, Error> {
        let mut report = Store::repair(dir, &store_options(&options))?;
        let replica = Self::open_with(dir, options)?;
        report.problems = replica.verify()?.problems;
        Ok(report)
    }

    /// Rewrites the database of the replica in `dir` in key order into a fresh one
    /// ([`Store::compact`]): the same contents in about half the bytes once contacts were
    /// rewritten many times (a copy that would save less than a sixteenth is thrown away:
    /// [`Compacted::kept`]); the op log is not touched. The replica must not be open
    /// elsewhere. Something for an app to run when it is idle: it reads and writes the whole
    /// database once.
    pub fn compact(dir: &FsPath, options: Options) -> Result<Compacted, Error> {
        Ok(Store::compact(dir, &store_options(&options))?)
    }

    /// A replica over an already opened store (tests use it to inject storage faults). A store
    /// that belongs to no book yet (new, or upgraded from before books existed) founds one,
    /// adopting the format-1 history it holds (docs/SECURITY.md, "Existing stores").
    pub fn from_store(mut store: Store, options: Options) -> Result<Self, OpenError> {
        store.set_log_preallocation(options.log_preallocate_bytes);
        let (clock, membership) = Self::read_from(&store, &*options.wall, options.skew_bound_ms)?;
        let book = store.book();
        let mut replica = Self {
            store,
            clock,
            wall: options.wall,
            bulk: false,
            membership: Box::new(membership),
            session_identity: std::sync::OnceLock::new(),
            hub: Box::default(),
            peers_swept_day: 0,
        };
        // (A store opened read-only founds nothing: its log holds no founding op yet.)
        if book.is_none() && !replica.store.recovery().read_only {
            replica.found(options.name)?;
        }
        Ok(replica)
    }

    /// What a replica keeps in memory beside its store: the clock (its chain's last time and
    /// calibration) and the book's membership.
    fn read_from(
        store: &Store,
        wall: &dyn WallClock,
        skew_bound_ms: u64,
    ) -> Result<(HlcClock, Membership), OpenError> {
        let (offset_ms, anchor) = match store.meta(meta::CLOCK)? {
            Some(v) => parse_clock_record(&v)
                .ok_or_else(|| OpenError::damaged("clock offset does not decode".into()))?,
            None => (0, None),
        };
        let me = store.device_id();
        let own = store.summary().get(&me).map(|h| h.hlc).unwrap_or_default();
        let mut clock = HlcClock::new(own, offset_ms, skew_bound_ms).with_anchor(anchor);
        // A calibration taken before someone set the clock (or too long ago to tell) goes.
        clock.check(wall.now_ms(), wall.monotonic_ms());
        let membership = match store.book() {
            Some(book) => Membership::compute(book, store.membership_ops()?),
            None => Membership::new(BookId([0; 16])),
        };
        Ok((clock, membership))
    }

    /// After a failed write (a full disk, an I/O error) the replica refuses writes
    /// ([`cardlog_store::StoreError::Poisoned`]) until its store is opened again. This opens
    /// it again in place, as [`Replica::open`] would, keeping the subscribers: what a process
    /// that stays up (a relay, an app) calls once the disk writes again. Returns whether the
    /// replica takes writes again (`false`: nothing had failed, or the store refuses writes
    /// for damage found when it opened, which `rebuild` mends). If the open fails (the disk
    /// still full) the replica still refuses writes, its reads working where its database
    /// could be opened again, and a later call tries again.
    pub fn reopen_if_poisoned(&mut self) -> Result<bool, OpenError> {
        if !self.store.is_poisoned() {
            return Ok(false);
        }
        // Read before the old handle goes: the skew bound lives in the clock.
        let skew_bound_ms = self.clock.skew_bound_ms();
        if !self.store.reopen_if_poisoned()? {
            return Ok(false);
        }
        let (clock, membership) = match Self::read_from(&self.store, &*self.wall, skew_bound_ms) {
            Ok(read) => read,
            Err(e) => {
                // Writes with the old clock and membership could be wrong: refused until a
                // later call reads them.
                self.store.refuse_writes(format!("reopened, but {e}"));
                return Err(e);
            }
        };
        self.clock = clock;
        *self.membership = membership;
        // Subscribers keep being told (a store opened afresh notes no changes).
        if self.hub.has_subscribers() {
            self.store.track_changes(true);
        }
        Ok(!self.store.is_poisoned())
    }

    /// The device id new local ops are written as.
    pub fn id(&self) -> DeviceId {
        self.store.device_id()
    }

    /// If this open found the directory copied or restored from a backup, the device id it was
    /// written as before: the replica now writes as a fresh id so two copies never extend the
    /// same chain (docs/ARCHITECTURE.md, "Device identity").
    pub fn previous_id(&self) -> Option<DeviceId> {
        self.store.previous_device_id()
    }

    /// Every device id this replica's directory wrote as before a copy or restore, oldest
    /// first (kept across opens).
    pub fn former_ids(&self) -> Result<Vec<DeviceId>, Error> {
        Ok(self.store.former_device_ids()?)
    }

    /// The hybrid clock.
    pub fn clock(&self) -> &HlcClock {
        &self.clock
    }

    /// Learns the calibration offset from a peer's reported wall time (see
    /// [`HlcClock::calibrate`]) and keeps it in the store. Returns the new offset.
    pub fn calibrate(
        &mut self,
        peer_ms: u64,
        sent_ms: u64,
        received_ms: u64,
    ) -> Result<i64, Error> {
        let mut clock = self.clock.clone();
        let offset = clock.calibrate(peer_ms, sent_ms, received_ms, self.wall.monotonic_ms());
        self.store.put_meta(meta::CLOCK, clock_record(&clock))?;
        self.durable()?;
        self.clock = clock;
        Ok(offset)
    }

    /// Whether saves are flushed one by one (the default) or grouped ([`Replica::bulk`]).
    pub fn is_bulk(&self) -> bool {
        self.bulk
    }

    /// Bulk mode for imports and initial syncs: saves and applies through the returned guard
    /// are stored as usual but not flushed one by one. They become durable together at
    /// [`Bulk::finish`] (or, best effort, when the guard is dropped). A crash before that loses
    /// some of them, never half of one, and leaves the store consistent.
    pub fn bulk(&mut self) -> Bulk<'_> {
        self.bulk = true;
        Bulk { replica: self }
    }

    /// Makes everything stored durable.
    pub fn flush(&mut self) -> Result<(), Error> {
        Ok(self.store.flush()?)
    }

    pub(crate) fn durable(&mut self) -> Result<(), Error> {
        if self.bulk {
            Ok(())
        } else {
            self.flush()
        }
    }

    // ---- saving --------------------------------------------------------------------------

    /// The save protocol's view of this replica ([`EditTarget`]), for code written once over
    /// any replica (the simulator, an app's own property tests): it saves through core's
    /// `edit` functions exactly as the methods below do.
    pub fn editor(&mut self) -> impl EditTarget<Error = Error> + '_ {
        Local(self)
    }

    /// Gives back what a close would while the replica stays open ([`Store::rest`]): what
    /// an app whose replica stays open in the background, or a relay for a book no session
    /// holds, calls.
    pub fn rest(&mut self) -> Result<(), Error> {
        Ok(self.store.rest()?)
    }

    /// Saves a batch of changes (any number of contacts) as one op; returns it once durable.
    pub fn save(&mut self, batch: &Batch) -> Result<SealedOp, Error> {
        edit::save(&mut Local(self), batch)
    }

    /// Adds a new contact with every field and item it has. Returns the op's id.
    pub fn add_contact(&mut self, contact: &Contact) -> Result<OpId, Error> {
        Ok(edit::create(&mut Local(self), contact)?.id())
    }

    /// Edits a visible contact with `f` and saves only what changed (the minimal writes).
    /// Returns `None`, saving nothing, when `f` changed nothing.
    pub fn edit(
        &mut self,
        id: ContactId,
        f: impl FnOnce(&mut Contact),
    ) -> Result<Option<OpId>, Error> {
        Ok(edit::edit(&mut Local(self), id, f)?.map(|op| op.id()))
    }

    /// Deletes a visible contact (a tombstone: history is kept and it can be restored).
    pub fn delete(&mut self, id: ContactId) -> Result<OpId, Error> {
        Ok(edit::delete(&mut Local(self), id)?.id())
    }

    /// Restores a deleted contact.
    pub fn restore(&mut self, id: ContactId) -> Result<OpId, Error> {
        Ok(edit::restore(&mut Local(self), id)?.id())
    }

    /// Settles a path (typically a conflicted one) with `value`, which may be any of the
    /// alternatives or something new; `None` removes it. The write replaces every head.
    pub fn resolve(
        &mut self,
        id: ContactId,
        path: Path,
        value: Option<Value>,
    ) -> Result<OpId, Error> {
        Ok(edit::resolve(&mut Local(self), id, path, value)?.id())
    }

    // ---- ops from elsewhere --------------------------------------------------------------

    /// Applies ops made elsewhere, in any order, with the chain-tip signatures that cover
    /// them ([`Replica::signatures_for`] on the replica they come from): every op whose
    /// dependencies are here or among `ops` is stored, in one atomic batch, durable when this
    /// returns. If any op is refused (its author not a member or not allowed to write it, no
    /// valid signature, a fork, a broken chain, a forged reference) nothing is stored and the
    /// error names it.
    pub fn apply(&mut self, ops: &[SealedOp], tips: &[SignedTip]) -> Result<ApplyReport, Error> {
        self.as_source(ChangeSource::Apply, |r| r.apply_unreported(ops, tips))
    }

    fn apply_unreported(
        &mut self,
        ops: &[SealedOp],
        tips: &[SignedTip],
    ) -> Result<ApplyReport, Error> {
        let admitted = self.admit(ops, tips);
        if let Some(refusal) = admitted.refused.into_iter().next() {
            return Err(Error::Refused(refusal));
        }
        self.apply_admitted(&admitted.ops, &admitted.tips)
    }

    /// Stores ops [`Replica::admit`] let through (all or nothing for replay refusals), keeps
    /// their signatures and follows the membership ops among them.
    pub(crate) fn apply_admitted(
        &mut self,
        ops: &[SealedOp],
        tips: &[SignedTip],
    ) -> Result<ApplyReport, Error> {
        let report = self.store_admitted(ops, tips);
        // Reported per call: a sync or an import, many calls long, shows each as it lands.
        self.publish();
        report
    }

    fn store_admitted(
        &mut self,
        ops: &[SealedOp],
        tips: &[SignedTip],
    ) -> Result<ApplyReport, Error> {
        let outcomes = match self.store.apply_signed_strict(ops, tips) {
            Ok(outcomes) => outcomes,
            Err(e) => {
                // The store may hold part of the batch (a retraction that failed after the
                // append): the membership follows what it holds.
                if let Ok(held) = self.store.membership_ops() {
                    *self.membership = Membership::compute(self.membership.book(), held);
                }
                return Err(e.into());
            }
        };
        let mut report = ApplyReport::default();
        let now = self
            .clock
            .calibrated_at(self.wall.now_ms(), self.wall.monotonic_ms());
        for (op, outcome) in ops.iter().zip(outcomes) {
            match outcome {
                OpOutcome::Stored => {
                    report.stored += 1;
                    report
                        .skew
                        .extend(self.clock.observe(op.op().author, op.op().hlc, now));
                    if op.op().is_membership() {
                        *self.membership = self.membership.with(op);
                    }
                }
                OpOutcome::Duplicate => report.duplicates += 1,
                OpOutcome::Missing(m) => report.missing.push((op.id(), m)),
                OpOutcome::Refused(e) => return Err(Error::Replay(e)),
            }
        }
        if report.stored > 0 {
            self.durable()?;
        }
        Ok(report)
    }

    /// Per author, the last op held here.
    pub fn summary(&self) -> &Summary {
        self.store.summary()
    }

    /// The ops a peer with `summary` lacks, dependencies first. Work grows with what is sent,
    /// not with the history.
    pub fn ops_since(&self, summary: &Summary) -> Result<Vec<SealedOp>, Error> {
        Ok(self.store.ops_since(summary)?)
    }

    /// The op with this id, if held here.
    pub fn op(&self, id: &OpId) -> Result<Option<SealedOp>, Error> {
        Ok(self.store.op(id)?)
    }

    /// Every op, in the order this replica applied them.
    pub fn ops(&self) -> impl Iterator<Item = Result<SealedOp, Error>> + '_ {
        self.store.ops().map(|r| r.map_err(Error::from))
    }

    /// Up to `limit` contacts (deleted ones included) whose id starts with `prefix`, in id
    /// order: one is a unique match, several an ambiguous prefix.
    pub fn contacts_matching(
        &self,
        prefix: &IdPrefix,
        limit: usize,
    ) -> Result<Vec<ContactId>, Error> {
        Ok(self.store.contacts_matching(prefix, limit)?)
    }

    /// Up to `limit` ops whose id starts with `prefix`, in id order.
    pub fn ops_matching(&self, prefix: &IdPrefix, limit: usize) -> Result<Vec<OpId>, Error> {
        Ok(self.store.ops_matching(prefix, limit)?)
    }

    /// Number of ops held.
    pub fn op_count(&self) -> u64 {
        self.store.op_count()
    }

    // ---- reading -------------------------------------------------------------------------

    /// A contact, deleted or not; `None` if it was never written here.
    pub fn contact(&self, id: &ContactId) -> Result<Option<ContactView>, Error> {
        Ok(self.store.contact(id)?)
    }

    /// Every contact in id order, one at a time (deleted ones only when asked), until `f`
    /// returns `ControlFlow::Break`: memory holds one contact, not the store (what
    /// [`Replica::contacts`] collects).
    pub fn each_contact(
        &self,
        include_deleted: bool,
        f: impl FnMut(ContactView) -> std::ops::ControlFlow<()>,
    ) -> Result<(), Error> {
        Ok(self.store.each_contact(include_deleted, f)?)
    }

    /// Every contact's row (what a list shows: display name, first phone or e-mail, deleted,
    /// conflict count) in display-name order, one at a time (deleted ones only when asked),
    /// until `f` returns `ControlFlow::Break`. Read from the store's name index alone, which
    /// holds each row beside the contact's place: a whole list costs the index, not the
    /// contacts (`cardlog list`). The order is [`Replica::contacts_page`]'s.
    pub fn each_row(
        &self,
        include_deleted: bool,
        f: impl FnMut(ContactRow) -> std::ops::ControlFlow<()>,
    ) -> Result<(), Error> {
        Ok(self.store.each_row(include_deleted, f)?)
    }

    /// The widest name and first phone or e-mail among the rows [`Replica::each_row`] gives
    /// (deleted ones only when asked), and how many there are: what an aligned listing needs
    /// before its first row, read from counts the name index keeps (a few keys, not the
    /// rows), so such a listing reads the index once. `None` for a store whose index could
    /// not be built (one opened read-only after damage): fit the rows instead
    /// ([`RowWidths::fit`]).
    pub fn row_widths(&self, include_deleted: bool) -> Result<Option<RowWidths>, Error> {
        Ok(self.store.row_widths(include_deleted)?)
    }

    /// One page of contacts sorted by display name, optionally searched (name, organisation,
    /// e-mail, phone digits, any field: `Contact::matches`); pass the page's `next` as the
    /// following query's `after`. Read through the store's name index from the page's start:
    /// time and memory follow the page (and, with a search, the contacts passed over), not the
    /// store. The order is locale-independent (docs/SEMANTICS.md, "Listing contacts").
    pub fn contacts_page(&self, query: &ContactQuery) -> Result<ContactPage, Error> {
        Ok(self.store.contacts_page(query)?)
    }

    /// The visible contacts, in id order.
    pub fn contacts(&self) -> Result<Vec<ContactView>, Error> {
        Ok(self.store.contacts(false)?)
    }

    /// Every contact, deleted ones included, in id order.
    pub fn contacts_with_deleted(&self) -> Result<Vec<ContactView>, Error> {
        Ok(self.store.contacts(true)?)
    }

    /// Every value one path of a contact has had, oldest first: value, device, time, op id,
    /// and whether it is still a head.
    pub fn history(&self, id: &ContactId, path: &Path) -> Result<Vec<HistoryEntry>, Error> {
        Ok(self.store.history(id, path)?)
    }

    /// The writes of one path of a contact whose timestamps cannot be right, by op: stamped
    /// far ahead of this device's (calibrated) time, or before a write they replace
    /// ([`cardlog_core::suspects`], with this replica's skew bound). `history` and
    /// `conflicts` readers show them marked.
    pub fn suspects(&self, id: &ContactId, path: &Path) -> Result<BTreeMap<OpId, Suspect>, Error> {
        Ok(self.suspects_in(&self.store.history(id, path)?))
    }

    /// [`Replica::suspects`] of a path's history already read.
    pub fn suspects_in(&self, history: &[HistoryEntry]) -> BTreeMap<OpId, Suspect> {
        let now = self
            .clock
            .calibrated_at(self.wall.now_ms(), self.wall.monotonic_ms());
        cardlog_core::suspects(history, now, self.clock.skew_bound_ms())
    }

    /// The history of every path of a contact, in path order.
    pub fn contact_history(&self, id: &ContactId) -> Result<Vec<(Path, Vec<HistoryEntry>)>, Error> {
        let mut out = Vec::new();
        for path in self.store.paths(id)? {
            let versions = self.store.history(id, &path)?;
            out.push((path, versions));
        }
        Ok(out)
    }

    /// Every path of a contact that has been written, in path order.
    pub fn paths(&self, id: &ContactId) -> Result<Vec<Path>, Error> {
        Ok(self.store.paths(id)?)
    }

    /// The heads of one path (more than one with different values: a conflict).
    pub fn heads(&self, id: &ContactId, path: &Path) -> Result<Heads, Error> {
        Ok(self.store.heads(id, path)?)
    }

    /// Every conflicted path of every contact.
    pub fn conflicts(&self) -> Result<Vec<(ContactId, FieldConflict)>, Error> {
        Ok(self.store.conflicts()?)
    }

    /// The canonical bytes of the whole state: equal on two replicas exactly when they show
    /// the same contacts, conflicts and history.
    pub fn state_bytes(&self) -> Result<Vec<u8>, Error> {
        Ok(self.store.state_bytes()?)
    }

    /// The blake3 hash of [`Replica::state_bytes`], computed one contact at a time: equal on
    /// two replicas exactly when their state bytes are (short of a blake3 collision), without
    /// holding either state in memory.
    pub fn state_digest(&self) -> Result<[u8; 32], Error> {
        Ok(self.store.state_digest()?)
    }

    // ---- maintenance ---------------------------------------------------------------------

    /// Re-hashes every op, checks every chain, rebuilds the state from the log and compares it
    /// with the stored one, and checks the book's rules over the log: every op let in by the
    /// membership, every signing author's chain covered by a kept signature that verifies.
    /// Changes nothing.
    pub fn verify(&self) -> Result<VerifyReport, Error> {
        let mut report = self.store.verify()?;
        report.problems.extend(self.audit()?);
        Ok(report)
    }

    /// [`Replica::verify`] with a progress callback (for a progress bar).
    pub fn verify_with(&self, progress: &mut dyn FnMut(Progress)) -> Result<VerifyReport, Error> {
        let mut report = self.store.verify_with(progress)?;
        report.problems.extend(self.audit()?);
        Ok(report)
    }

    /// [`Replica::rebuild`] with a progress callback.
    pub fn rebuild_with(&mut self, progress: &mut dyn FnMut(Progress)) -> Result<u64, Error> {
        self.as_source(ChangeSource::Rebuild, |r| {
            Ok(r.store.rebuild_with(progress)?)
        })
    }

    /// Throws the materialized state away and rebuilds it from the log. Returns the number of
    /// ops replayed.
    pub fn rebuild(&mut self) -> Result<u64, Error> {
        self.rebuild_with(&mut |_| {})
    }

    /// The store underneath, for inspection tools.
    pub fn store(&self) -> &Store {
        &self.store
    }
}

/// A replica in bulk mode (see [`Replica::bulk`]). Everything a [`Replica`] does is available
/// through it; saves are not flushed one by one.
#[derive(Debug)]
pub struct Bulk<'r> {
    replica: &'r mut Replica,
}

impl Bulk<'_> {
    /// Flushes everything saved in bulk mode and ends it.
    pub fn finish(self) -> Result<(), Error> {
        self.replica.bulk = false;
        self.replica.flush()
    }
}

impl Deref for Bulk<'_> {
    type Target = Replica;

    fn deref(&self) -> &Replica {
        self.replica
    }
}

impl DerefMut for Bulk<'_> {
    fn deref_mut(&mut self) -> &mut Replica {
        self.replica
    }
}

impl Drop for Bulk<'_> {
    fn drop(&mut self) {
        if self.replica.bulk {
            self.replica.bulk = false;
            // Best effort; a failure poisons the store, so the next write reports it.
            let _ = self.replica.flush();
        }
    }
}

/// The replica as the save protocol sees it (core's [`EditTarget`]; see [`Replica::editor`]).
struct Local<'r>(&'r mut Replica);

impl EditTarget for Local<'_> {
    type Error = Error;

    fn author(&self) -> DeviceId {
        self.0.id()
    }

    fn own_tip(&self) -> Option<ChainTip> {
        self.0.store.summary().get(&self.0.id()).copied()
    }

    fn contact_registers(&self, contact: &ContactId) -> Result<ContactRegisters, Error> {
        Ok(self.0.store.contact_registers(contact)?)
    }

    fn next_hlc(&self) -> (Hlc, HlcClock) {
        let mut clock = self.0.clock.clone();
        let now = self.0.wall.now_ms();
        // A calibration taken before someone set the clock no longer applies.
        clock.check(now, self.0.wall.monotonic_ms());
        let hlc = clock.tick(now);
        (hlc, clock)
    }

    /// Stores the op (if the book lets this device write it) with its signature and makes it
    /// durable (unless in bulk mode) before the clock moves on ([`Replica::store_new`]).
    fn store_local(&mut self, op: &SealedOp, clock: HlcClock) -> Result<(), Error> {
        self.0.store_new(op, clock)
    }
}

/// The `mclock` meta value (docs/FORMAT.md): the offset (i64 BE), then the calibration's
/// anchor: its raw wall time (u64 BE), a byte 1 and its monotonic reading (u64 BE), or a
/// byte 0 when it had none.
pub(crate) fn clock_record(clock: &HlcClock) -> Vec<u8> {
    let mut v = clock.offset_ms().to_be_bytes().to_vec();
    if let Some(anchor) = clock.anchor() {
        v.extend_from_slice(&anchor.wall_ms.to_be_bytes());
        match anchor.mono_ms {
            Some(mono) => {
                v.push(1);
                v.extend_from_slice(&mono.to_be_bytes());
            }
            None => v.push(0),
        }
    }
    v
}

/// Reads an `mclock` value: the offset and the anchor (absent in the 8-byte form older builds
/// wrote). `None`: not a clock record.
pub(crate) fn parse_clock_record(v: &[u8]) -> Option<(i64, Option<Anchor>)> {
    let be = |b: &[u8]| -> Option<[u8; 8]> { b.try_into().ok() };
    let offset = i64::from_be_bytes(be(v.get(..8)?)?);
    let anchor = match v.get(8..) {
        Some([]) | None => None,
        Some(rest) => {
            let wall_ms = u64::from_be_bytes(be(rest.get(..8)?)?);
            let mono_ms = match rest.get(8..)? {
                [0] => None,
                [1, mono @ ..] => Some(u64::from_be_bytes(be(mono)?)),
                _ => return None,
            };
            Some(Anchor { wall_ms, mono_ms })
        }
    };
    Some((offset, anchor))
}

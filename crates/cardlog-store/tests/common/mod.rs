//! Shared helpers of the store's integration tests: multi-device histories built with core
//! `Device`s on fake clocks, a reference `Replay` of the same ops, and one comparison of
//! everything a store reads against that reference.
#![allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    clippy::panic,
    clippy::expect_used
)]
// Each test binary includes this module and uses a different part of it.
#![allow(dead_code)]

use std::collections::{BTreeMap, HashSet};
use std::path::{Path as FsPath, PathBuf};
use std::sync::Arc;

use cardlog_core::{
    Contact, ContactId, Device, DeviceId, FakeClock, Field, InsertOutcome, Item, ItemBody, ItemId,
    ItemKind, OpId, PostalAddress, Replay, SealedOp, Summary,
};
use cardlog_store::{OpOutcome, Store, StoreOptions};

pub const MIN_MS: i64 = 60_000;
pub const HOUR_MS: i64 = 60 * MIN_MS;
/// 2026-11-22T09:00:00Z.
pub const NINE_MS: u64 = 1_795_338_000_000;

/// Small page cache: the tests' stores are tiny.
pub fn options() -> StoreOptions {
    StoreOptions {
        cache_bytes: 1 << 20,
        ..StoreOptions::default()
    }
}

/// In-memory devices with one fake wall clock each.
pub struct World {
    pub devices: Vec<Device>,
    pub clocks: Vec<Arc<FakeClock>>,
}

impl World {
    /// `n` devices with ids `01…01`, `02…02`, … and clocks at 09:00.
    pub fn new(n: u8) -> Self {
        let clocks: Vec<Arc<FakeClock>> =
            (0..n).map(|_| Arc::new(FakeClock::new(NINE_MS))).collect();
        let devices = (0..n)
            .map(|i| Device::new(DeviceId([i + 1; 16]), clocks[usize::from(i)].clone()))
            .collect();
        Self { devices, clocks }
    }

    /// Advances every wall clock.
    pub fn advance(&self, ms: i64) {
        for c in &self.clocks {
            c.advance_ms(ms);
        }
    }

    /// Two-way sync of two distinct devices.
    pub fn sync(&mut self, a: usize, b: usize) {
        assert_ne!(a, b);
        let (lo, hi) = (a.min(b), a.max(b));
        let (left, right) = self.devices.split_at_mut(hi);
        left[lo].sync(&mut right[0]).unwrap();
    }

    /// One-way push of only the first `n` ops `from` has and `to` lacks.
    pub fn push_some(&mut self, from: usize, to: usize, n: usize) {
        let ops = self.devices[from]
            .replay()
            .missing_for(&self.devices[to].summary());
        for op in ops.into_iter().take(n) {
            self.devices[to].receive(op).unwrap();
        }
    }

    /// Every op any device has, each once, dependencies first.
    pub fn all_ops(&self) -> Vec<SealedOp> {
        let mut merged = Replay::new();
        for d in &self.devices {
            for op in d.replay().ops_in_order() {
                merged.insert(op.clone()).unwrap();
            }
        }
        assert_eq!(merged.waiting().count(), 0);
        merged.ops_in_order().cloned().collect()
    }
}

/// A contact with names, a phone, an e-mail, an address, a tag and a custom field.
pub fn sample(id: u8) -> Contact {
    let mut c = Contact::new(ContactId([id; 16]));
    c.set(Field::Given, format!("Given{id}"))
        .set(Field::Family, "Example");
    c.phones.push(Item {
        id: ItemId([0xa0 ^ id; 16]),
        label: "mobile".into(),
        body: ItemBody::Text("+1 555 0100".into()),
    });
    c.emails.push(Item {
        id: ItemId([0xb0 ^ id; 16]),
        label: "home".into(),
        body: ItemBody::Text("someone@old.example".into()),
    });
    c.addresses.push(Item {
        id: ItemId([0xc0 ^ id; 16]),
        label: "home".into(),
        body: ItemBody::Address(Box::new(PostalAddress {
            street: "1 Main St".into(),
            locality: "Springfield".into(),
            country: "US".into(),
            ..PostalAddress::default()
        })),
    });
    c.tags.insert("friends".into());
    c.custom.insert("X-SHOE-SIZE".into(), "44".into());
    c
}

/// A scripted history of three devices (tablet 0, phone 1, laptop 2): concurrent edits of
/// different fields and of the same field (a conflict), a delete concurrent with an edit, a
/// delete and restore, a contact left deleted, partial syncs, and a phone whose clock runs
/// three hours behind (so an op can carry an older timestamp than the op it replaces).
pub fn scripted_world() -> World {
    let (tablet, phone, laptop) = (0, 1, 2);
    let mut w = World::new(3);
    w.clocks[phone].advance_ms(-3 * HOUR_MS);
    let a = sample(1);
    let b = sample(2);
    w.devices[tablet].create(&a).unwrap();
    w.devices[tablet].create(&b).unwrap();
    w.sync(tablet, phone);
    w.sync(tablet, laptop);

    // Apart: different fields of `a`, the same field (title) on tablet and laptop.
    w.advance(MIN_MS);
    w.devices[tablet]
        .edit(a.id, |c| {
            c.set(Field::Title, "Engineer");
        })
        .unwrap();
    w.devices[laptop]
        .edit(a.id, |c| {
            c.set(Field::Title, "Manager");
            c.emails[0].body = ItemBody::Text("someone@new.example".into());
        })
        .unwrap();
    w.devices[phone]
        .edit(a.id, |c| {
            c.phones[0].body = ItemBody::Text("+1 555 0199".into());
            c.tags.insert("work".into());
        })
        .unwrap();
    // The phone deletes `b` while the tablet edits it.
    w.devices[phone].delete(b.id).unwrap();
    w.devices[tablet]
        .edit(b.id, |c| {
            c.set(Field::Nickname, "Bee");
        })
        .unwrap();

    w.advance(MIN_MS);
    w.push_some(tablet, phone, 1);
    w.sync(laptop, tablet);
    w.sync(phone, laptop);
    w.sync(tablet, phone);

    // The phone, three hours behind, edits what it has just seen from the tablet.
    w.advance(MIN_MS);
    w.devices[phone]
        .edit(a.id, |c| {
            c.set(Field::Org, "Example Corp");
            c.custom.insert("X-SHOE-SIZE".into(), "45".into());
        })
        .unwrap();

    // The laptop creates, deletes and restores `c`, and creates and deletes `d`.
    let c = sample(3);
    let d = sample(4);
    w.devices[laptop].create(&c).unwrap();
    w.advance(MIN_MS);
    w.devices[laptop].delete(c.id).unwrap();
    w.advance(MIN_MS);
    w.devices[laptop].restore(c.id).unwrap();
    w.devices[laptop]
        .edit(c.id, |c| {
            c.set(Field::Note, "restored");
            let _ = c.add_text_item(ItemKind::Url, "site", "https://example.org");
        })
        .unwrap();
    w.devices[laptop].create(&d).unwrap();
    w.advance(MIN_MS);
    w.devices[laptop].delete(d.id).unwrap();

    w.sync(phone, laptop);
    w.sync(tablet, phone);
    // A second same-field conflict, on the custom field, between tablet and laptop.
    w.advance(MIN_MS);
    w.devices[tablet]
        .edit(c.id, |c| {
            c.set(Field::Department, "R&D");
        })
        .unwrap();
    w.devices[tablet]
        .edit(a.id, |c| {
            c.custom.insert("X-SHOE-SIZE".into(), "47".into());
        })
        .unwrap();
    w.devices[laptop]
        .edit(a.id, |c| {
            c.custom.insert("X-SHOE-SIZE".into(), "46".into());
        })
        .unwrap();
    w.sync(tablet, phone);
    w
}

/// Whether some op replaces a write whose timestamp is later than its own (the dependency
/// order then differs from the timestamp order).
pub fn has_backdated_replace(ops: &[SealedOp]) -> bool {
    let hlc: BTreeMap<OpId, cardlog_core::Hlc> = ops.iter().map(|o| (o.id(), o.op().hlc)).collect();
    ops.iter().any(|o| {
        o.op()
            .writes
            .iter()
            .flat_map(|w| &w.replaces)
            .any(|r| hlc.get(r).is_some_and(|h| *h > o.op().hlc))
    })
}

/// A replay of `ops`, delivered in the given order; every op must end up applied.
pub fn replay_of(ops: &[SealedOp]) -> Replay {
    let mut r = Replay::new();
    for op in ops {
        match r.insert(op.clone()).unwrap() {
            InsertOutcome::Applied { rejected, .. } => assert!(rejected.is_empty()),
            InsertOutcome::Duplicate | InsertOutcome::Waiting { .. } => {}
        }
    }
    assert_eq!(r.waiting().count(), 0, "ops left pending");
    r
}

/// Runs `open` until sled's file lock lets it through (at most about two seconds).
///
/// sled 0.34 releases its lock on a database some moments after the last handle is dropped (its
/// background threads let go of the file later; spacejam/sled#1234), so an immediate reopen in
/// the same process can fail with the lock held (`Locked`). Any other error returns at once.
pub fn retry_lock<T, E: IsLocked>(mut open: impl FnMut() -> Result<T, E>) -> Result<T, E> {
    let mut attempts = 0;
    loop {
        match open() {
            Err(e) if attempts < 200 && e.is_locked() => {
                attempts += 1;
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            other => return other,
        }
    }
}

/// An open error that may say the database's lock is held, by its variant.
pub trait IsLocked {
    /// Whether the error is the held lock.
    fn is_locked(&self) -> bool;
}

impl IsLocked for cardlog_store::OpenError {
    fn is_locked(&self) -> bool {
        matches!(self, cardlog_store::OpenError::Locked(_))
    }
}

impl IsLocked for cardlog_store::state::KvError {
    fn is_locked(&self) -> bool {
        matches!(self, cardlog_store::state::KvError::Locked(_))
    }
}

/// Creates a store in `dir`.
pub fn create_store(dir: &FsPath) -> Store {
    Store::create(dir, &options()).unwrap()
}

/// A fresh store in a temporary directory (the store lives in `<tmp>/store`), its state in
/// `database`.
pub fn new_store_in(database: cardlog_store::Database) -> (tempfile::TempDir, PathBuf, Store) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("store");
    let options = StoreOptions {
        database,
        ..options()
    };
    let store = Store::create(&dir, &options).unwrap();
    (tmp, dir, store)
}

/// A fresh store in a temporary directory (the store lives in `<tmp>/store`).
pub fn new_store() -> (tempfile::TempDir, PathBuf, Store) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("store");
    let store = create_store(&dir);
    (tmp, dir, store)
}

/// Reopens the store at `dir` with the plain sled engine.
pub fn reopen(dir: &FsPath) -> Store {
    retry_lock(|| Store::open(dir, &options())).unwrap()
}

/// Applies `ops` in calls of `apply_all` that each take the next `sizes[i]` new ops (cycling
/// through `sizes`), carrying ops that miss a dependency into the next call, until everything
/// is stored. Panics on a refusal or when a call makes no progress.
pub fn apply_in_chunks(store: &mut Store, ops: &[SealedOp], sizes: &[usize]) {
    assert!(sizes.iter().all(|n| *n > 0));
    let mut carry: Vec<SealedOp> = Vec::new();
    let mut rest = ops;
    for size in sizes.iter().cycle() {
        let (now, later) = rest.split_at((*size).min(rest.len()));
        rest = later;
        let mut batch = std::mem::take(&mut carry);
        batch.extend_from_slice(now);
        if batch.is_empty() {
            break;
        }
        let outcomes = store.apply_all(&batch).unwrap();
        assert_eq!(outcomes.len(), batch.len());
        let mut stored = 0;
        for (op, outcome) in batch.into_iter().zip(outcomes) {
            match outcome {
                OpOutcome::Stored => stored += 1,
                OpOutcome::Duplicate => {}
                OpOutcome::Missing(_) => carry.push(op),
                OpOutcome::Refused(e) => panic!("op {} refused: {e}", op.id()),
            }
        }
        assert!(
            stored > 0 || !rest.is_empty() || carry.is_empty(),
            "no progress with {} ops waiting",
            carry.len()
        );
    }
}

/// The summary of a store in the shape `Replay::summary` has.
pub fn summary_of(store: &Store) -> Summary {
    store.summary().clone()
}

/// Asserts that everything the store reads equals what `replay` reads, and that the store
/// verifies clean.
pub fn assert_same_as_replay(store: &Store, replay: &Replay) {
    let state = store.state_bytes().unwrap();
    assert_eq!(state, replay.state_bytes(), "state");
    // The streamed digests hash exactly those bytes, on both sides.
    let digest = *blake3::hash(&state).as_bytes();
    assert_eq!(store.state_digest().unwrap(), digest, "store digest");
    assert_eq!(replay.state_digest(), digest, "replay digest");
    assert_eq!(store.contacts(false).unwrap(), replay.contacts(false));
    assert_eq!(store.contacts(true).unwrap(), replay.contacts(true));
    assert_eq!(store.conflicts().unwrap(), replay.conflicts());
    // The name index lists every contact once, in the listing order.
    let mut by_name = replay.contacts(true);
    by_name.sort_by_key(|v| cardlog_core::listing_key(&v.contact));
    assert_eq!(
        walk_pages(store, 3, true),
        by_name.iter().map(|v| v.contact.id).collect::<Vec<_>>(),
        "pages by name"
    );
    // Each index entry holds its contact's row: the rows walk the same order.
    for include_deleted in [true, false] {
        let mut rows = Vec::new();
        store
            .each_row(include_deleted, |row| {
                rows.push(row);
                std::ops::ControlFlow::Continue(())
            })
            .unwrap();
        let want: Vec<_> = by_name
            .iter()
            .filter(|v| include_deleted || !v.deleted)
            .map(cardlog_core::ContactRow::of)
            .collect();
        assert_eq!(rows, want, "rows (deleted too: {include_deleted})");
        // The widths the index counts are those of exactly these rows.
        let mut widths = cardlog_core::RowWidths::default();
        want.iter().for_each(|row| widths.fit(row));
        assert_eq!(
            store.row_widths(include_deleted).unwrap(),
            Some(widths),
            "row widths (deleted too: {include_deleted})"
        );
    }
    for id in replay.contact_ids() {
        assert_eq!(store.contact(&id).unwrap(), replay.contact(&id));
        let paths = replay.paths(&id);
        assert_eq!(store.paths(&id).unwrap(), paths);
        for path in &paths {
            assert_eq!(
                store.history(&id, path).unwrap(),
                replay.history(&id, path),
                "history of {id}/{path}"
            );
        }
    }
    assert_eq!(summary_of(store), replay.summary());
    // The chain heads also carry each head op's timestamp.
    for (author, head) in store.summary() {
        assert_eq!(
            replay.op(&head.op).map(|o| (o.op().author, o.op().hlc)),
            Some((*author, head.hlc))
        );
    }
    assert_eq!(store.op_count(), replay.len() as u64);
    for op in replay.ops_in_order() {
        assert_eq!(store.op(&op.id()).unwrap().as_ref(), Some(op));
    }
    let listed: Vec<SealedOp> = store.ops().map(Result::unwrap).collect();
    assert_eq!(listed.len(), replay.len());
    let ids: HashSet<OpId> = listed.iter().map(SealedOp::id).collect();
    assert_eq!(ids.len(), replay.len());
    assert!(ids.iter().all(|id| replay.contains(id)));
    let report = store.verify().unwrap();
    assert!(report.is_ok(), "verify: {:?}", report.problems);
    assert_eq!(report.ops, replay.len() as u64);
    assert_eq!(report.authors, replay.summary().len());
}

/// Every contact in display-name order, read `limit` at a time through `contacts_page`.
pub fn walk_pages(store: &Store, limit: usize, include_deleted: bool) -> Vec<ContactId> {
    let mut query = cardlog_core::ContactQuery {
        limit,
        include_deleted,
        ..Default::default()
    };
    let mut out = Vec::new();
    loop {
        let page = store.contacts_page(&query).unwrap();
        assert!(page.contacts.len() <= limit);
        out.extend(page.contacts.iter().map(|v| v.contact.id));
        match page.next {
            Some(next) => query.after = Some(next),
            None => return out,
        }
    }
}

/// The (offset, op length) of every record in the op log of the closed store at `dir`.
pub fn log_records(dir: &FsPath) -> Vec<(usize, usize)> {
    let bytes = std::fs::read(dir.join(cardlog_store::log::LOG_FILE)).unwrap();
    let mut out = Vec::new();
    let mut at = 0usize;
    while at < bytes.len() {
        let len = u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
        assert!(len > 0, "zeros in the log of a closed store at byte {at}");
        out.push((at, len));
        at += cardlog_store::log::HEADER_BYTES as usize + len;
    }
    out
}

/// Changes the op log of the closed store at `dir` behind the store's back.
pub fn edit_log(dir: &FsPath, f: impl FnOnce(&mut Vec<u8>)) {
    let path = dir.join(cardlog_store::log::LOG_FILE);
    let mut bytes = std::fs::read(&path).unwrap();
    f(&mut bytes);
    std::fs::write(&path, bytes).unwrap();
}

//! The name index: every contact by its place in the listing order (core's `listing`), so a
//! page of contacts in display-name order reads the page, not the store. Every register write
//! keeps it (`stage.rs`), every rebuild rewrites it (`verify.rs`, checked by `verify`), the
//! first open of a store written before it existed builds it, and `contacts_page` and
//! `each_row` walk it. Each entry holds its contact's row (core's `ContactRow`), so a whole
//! list reads the index alone.

use std::collections::BTreeMap;
use std::ops::ControlFlow;

use cardlog_core::replay::{view_of, ContactView};
use cardlog_core::{
    listing_key, listing_key_contact, ContactPage, ContactQuery, ContactRow, Pager, RowWidths,
};

use super::derive::Registers;
use super::Store;
use crate::error::StoreError;
use crate::state::keys::{self, meta, NAME_INDEX_VERSION};
use crate::state::kv::KvBatch;

/// Stale keys removed per sled batch while the index is built.
const BUILD_CHUNK: usize = 16_384;

/// Entries written per sled batch while the index is built (see `build_name_index`).
const ENTRIES_CHUNK: usize = 1_024;

/// The value of `meta::NAMES` this build writes and trusts: the listing order's version and
/// the Unicode version of the case tables that lowercase names (`char::UNICODE_VERSION`),
/// since another version may lowercase some names otherwise.
pub(super) fn names_mark() -> Vec<u8> {
    let (major, minor, update) = char::UNICODE_VERSION;
    vec![NAME_INDEX_VERSION, major, minor, update]
}

/// What the name index holds for a contact as read: its listing key (the `n` key's tail) and
/// its row value (the `n` value).
pub(super) fn index_entry(view: &ContactView) -> keys::Listed {
    keys::Listed {
        key: listing_key(&view.contact),
        row: keys::row_value(&ContactRow::of(view)),
    }
}

/// The name-index entries (`n` keys with their values, and the `w` width counts) that
/// `registers` call for.
pub(super) fn wanted_names(registers: &Registers) -> BTreeMap<Vec<u8>, Vec<u8>> {
    let mut wanted = BTreeMap::new();
    let mut widths = BTreeMap::new();
    for (contact, registers) in registers {
        let entry = index_entry(&view_of(*contact, registers));
        count_widths(&mut widths, &entry, 1);
        wanted.insert(keys::name(&entry.key), entry.row);
    }
    wanted.extend(width_values(widths));
    wanted
}

/// Adds `by` to the count of each width key of `entry` (`keys::width_keys`).
pub(super) fn count_widths(counts: &mut BTreeMap<Vec<u8>, i64>, entry: &keys::Listed, by: i64) {
    for key in keys::width_keys(entry).into_iter().flatten() {
        *counts.entry(key).or_default() += by;
    }
}

/// The `w` values of whole counts (those above 0).
fn width_values(counts: BTreeMap<Vec<u8>, i64>) -> impl Iterator<Item = (Vec<u8>, Vec<u8>)> {
    counts.into_iter().filter_map(|(k, n)| {
        u64::try_from(n)
            .ok()
            .filter(|n| *n > 0)
            .map(|n| (k, n.to_be_bytes().to_vec()))
    })
}

impl Store {
    /// Whether the name index holds every contact, in the order this build computes.
    pub(super) fn names_indexed(&self) -> Result<bool, StoreError> {
        Ok(self.held.get(&*self.kv, meta::NAMES)?.as_deref() == Some(&names_mark()[..]))
    }

    /// Builds the name index when the store has none (written before it existed, by an
    /// older listing order, or by a build with other Unicode case tables): one pass over the
    /// contacts, at open. A store it cannot build it for (a contact that does not decode, a
    /// failed write) still opens, unmarked: pages then read every contact, and `verify` and
    /// `rebuild` deal with the damage as before.
    pub(super) fn ensure_name_index(&mut self) -> Result<(), StoreError> {
        if self.poisoned.is_some() || self.names_indexed()? {
            return Ok(());
        }
        // Whatever stopped it, the mark is not written: nothing trusts a partial index.
        let _unbuilt = self.build_name_index();
        Ok(())
    }

    fn build_name_index(&mut self) -> Result<(), StoreError> {
        // Unmarked first and durably: a build cut off midway leaves no mark any build trusts
        // (another build's mark over a half-rewritten index would be trusted by that build).
        let mut unmark = KvBatch::default();
        unmark.remove(meta::NAMES.to_vec());
        self.kv.apply(unmark)?;
        self.kv.flush()?;
        let mut batch = KvBatch::default();
        // (`N`: what a version-2 index kept beside its entries.)
        for prefix in [keys::NAME, keys::NAME_OF, keys::WIDTH] {
            loop {
                // Stale entries (an interrupted build), removed a chunk at a time.
                let stale: Result<Vec<_>, _> = self
                    .held
                    .scan_prefix(&*self.kv, &[prefix])
                    .take(BUILD_CHUNK)
                    .collect();
                let stale = stale?;
                if stale.is_empty() {
                    break;
                }
                let mut removal = KvBatch::default();
                for (k, _) in stale {
                    removal.remove(k);
                }
                self.kv.apply(removal)?;
            }
        }
        // Entries are written while the contacts are read, in batches of ENTRIES_CHUNK:
        // sled keeps what a batch splits in memory, so larger batches cost far more of it (and
        // of its file) for no speed (at 100,000 contacts: 16,384 per batch gathered four at a
        // time, 208-259 MB peak and a 59-62 MB names database; 1,024 written as read, 92 MB
        // and 34 MB; docs/PERFORMANCE.md has the sizes between).
        let mut widths = BTreeMap::new();
        for pair in self.held.scan_prefix(&*self.kv, &[keys::CONTACT]) {
            let (k, v) = pair?;
            let contact = keys::parse_contact(&k)?;
            let entry = index_entry(&view_of(contact, &keys::parse_contact_value(&v)?));
            count_widths(&mut widths, &entry, 1);
            keys::rename(&mut batch, None, entry);
            if batch.len() >= ENTRIES_CHUNK {
                self.kv.apply(std::mem::take(&mut batch))?;
            }
        }
        for (k, v) in width_values(widths) {
            batch.insert(k, v);
        }
        batch.insert(meta::NAMES.to_vec(), names_mark());
        self.kv.apply(batch)?;
        self.kv.flush()?;
        Ok(())
    }

    /// The widest name and first phone or e-mail among the rows [`Store::each_row`] gives
    /// (deleted ones only when asked), and how many there are, read from the name index's
    /// width counts (a few keys, not the entries): what an aligned listing needs before its
    /// first row. `None` for a store whose index could not be built.
    pub fn row_widths(&self, include_deleted: bool) -> Result<Option<RowWidths>, StoreError> {
        self.contacts_kept()?;
        if !self.names_indexed()? {
            return Ok(None);
        }
        let mut widths = RowWidths::default();
        for pair in self.held.scan_prefix(&*self.kv, &[keys::WIDTH]) {
            let (k, v) = pair?;
            let (column, deleted, width) = keys::parse_width_key(&k)?;
            let count = keys::width_count(&v)?;
            if deleted && !include_deleted {
                continue;
            }
            match column {
                keys::WIDTH_NAME => {
                    widths.name = widths.name.max(width);
                    widths.rows += count;
                }
                keys::WIDTH_FIRST => widths.first = widths.first.max(width),
                _ => return Err(StoreError::undecodable("name index width key")),
            }
        }
        Ok(Some(widths))
    }

    /// The current count under a `w` key (0 when it has none).
    pub(super) fn width_count(&self, key: &[u8]) -> Result<u64, StoreError> {
        self.held
            .get(&*self.kv, key)?
            .map_or(Ok(0), |v| keys::width_count(&v))
    }

    /// One page of contacts in display-name order (core's `listing`), read through the name
    /// index from the page's start: the contacts before it are not read, and only the page is
    /// kept in memory. (A store whose index could not be built, one opened read-only after
    /// damage, is read whole, one contact at a time.)
    pub fn contacts_page(&self, query: &ContactQuery) -> Result<ContactPage, StoreError> {
        self.contacts_kept()?;
        let mut pager = Pager::new(query.clone());
        if !self.names_indexed()? {
            self.for_each_contact(|id, registers| pager.offer(view_of(id, &registers)))?;
            return Ok(pager.finish());
        }
        // The smallest key after the cursor's.
        let mut from = keys::name(
            &query
                .after
                .as_ref()
                .map(|c| c.key_bytes())
                .unwrap_or_default(),
        );
        if query.after.is_some() {
            from.push(0);
        }
        for pair in self.held.scan_from(&*self.kv, &[keys::NAME], &from) {
            let (k, _) = pair?;
            let contact = k
                .get(1..)
                .and_then(listing_key_contact)
                .ok_or_else(|| StoreError::undecodable("name index key"))?;
            let registers = self.contact_registers(&contact)?;
            if registers.is_empty() {
                return Err(StoreError::Damaged {
                    what: format!(
                        "the name index lists contact {contact}, which the store lacks \
                         (run rebuild)"
                    ),
                    offset: None,
                });
            }
            pager.offer(view_of(contact, &registers));
            if pager.settled() {
                break;
            }
        }
        Ok(pager.finish())
    }

    /// Every contact's row in display-name order (core's `listing`), one at a time (deleted
    /// ones only when asked), until `f` breaks. Read from the name index alone: the contacts
    /// are not read, and memory holds one row. (A store whose index could not be built, one
    /// opened read-only after damage, reads every contact and sorts the rows: memory then
    /// holds every row.)
    pub fn each_row(
        &self,
        include_deleted: bool,
        mut f: impl FnMut(ContactRow) -> ControlFlow<()>,
    ) -> Result<(), StoreError> {
        self.contacts_kept()?;
        if !self.names_indexed()? {
            let mut rows = Vec::new();
            self.for_each_contact(|id, registers| {
                let view = view_of(id, &registers);
                if include_deleted || !view.deleted {
                    rows.push((listing_key(&view.contact), ContactRow::of(&view)));
                }
            })?;
            rows.sort_unstable_by(|a, b| a.0.cmp(&b.0));
            for (_, row) in rows {
                if f(row).is_break() {
                    break;
                }
            }
            return Ok(());
        }
        for pair in self.held.scan_prefix(&*self.kv, &[keys::NAME]) {
            let (k, v) = pair?;
            let row = keys::parse_row(&k, &v)?;
            if (include_deleted || !row.deleted) && f(row).is_break() {
                break;
            }
        }
        Ok(())
    }
}

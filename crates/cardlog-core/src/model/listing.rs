//! Listing contacts a page at a time: the order (by display name, the same on every device
//! and in every locale), that order as bytes for a store's name index ([`listing_key`]), the
//! search, and the pager that keeps only one page in memory while contacts are offered to it
//! (in any order, or in listing order from a name index, where it settles early).
//!
//! The order is by the display name ([`Contact::display_name`]) lowercased (Unicode simple
//! lowercase, code point by code point: no locale collation, so "Émile" sorts after "Zoe"),
//! then by the name as written, then by contact id; contacts with no name at all come last.
//! An app that wants its locale's collation sorts a page itself: the order here is what
//! makes pages stable and resumable ([`PageCursor`]).

use std::cmp::Ordering;
use std::collections::BinaryHeap;

use super::contact::Contact;
use super::ItemKind;
use crate::id::ContactId;
use crate::replay::ContactView;

/// Which contacts to list and how many.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContactQuery {
    /// Only contacts matching this search ([`Contact::matches`]); `None` lists all.
    pub search: Option<String>,
    /// Deleted contacts too (tombstones that can be restored).
    pub include_deleted: bool,
    /// Start after this place ([`ContactPage::next`] of the page before); `None`: the start.
    pub after: Option<PageCursor>,
    /// At most this many contacts (at least 1 is listed when any is left).
    pub limit: usize,
}

impl Default for ContactQuery {
    fn default() -> Self {
        Self {
            search: None,
            include_deleted: false,
            after: None,
            limit: 50,
        }
    }
}

/// One page of contacts, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContactPage {
    /// The contacts, in display-name order.
    pub contacts: Vec<ContactView>,
    /// Where the next page starts, when there is one.
    pub next: Option<PageCursor>,
}

/// A place in the display-name order: the last contact of a page. The next page starts
/// right after it whatever changed in between, so a contact nobody touched is listed exactly
/// once; a contact renamed across the cursor meanwhile moves with its name (listed again at
/// its new place, or passed over), as a change notification reports.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PageCursor(SortKey);

impl PageCursor {
    /// The place as bytes in the order of [`listing_key`]: the next page lists the contacts
    /// whose key is greater.
    pub fn key_bytes(&self) -> Vec<u8> {
        self.0.to_bytes()
    }
}

/// A contact's place in the listing order as bytes whose byte order is that order (what a
/// store's name index is keyed by): equal contacts in every field that names them give equal
/// keys, and the id ends the key, so it is unique per contact.
pub fn listing_key(contact: &Contact) -> Vec<u8> {
    SortKey::of(contact).to_bytes()
}

/// The contact id at the end of a [`listing_key`].
pub fn listing_key_contact(key: &[u8]) -> Option<ContactId> {
    let at = key.len().checked_sub(16)?;
    key.get(at..)?.try_into().ok().map(ContactId)
}

/// The display name a [`listing_key`] was made from (`None` when `key` is not one): with
/// [`listing_key_contact`], what a [`ContactRow`] takes from its place in a name index.
pub fn listing_key_name(key: &[u8]) -> Option<String> {
    let end = key.len().checked_sub(16)?;
    let mut rest = key.get(1..end)?;
    // The folded name, then the name: each escaped and ended as `SortKey::to_bytes` writes.
    let mut read = || -> Option<Vec<u8>> {
        let mut out = Vec::new();
        loop {
            let (&b, after) = rest.split_first()?;
            rest = after;
            if b != 0 {
                out.push(b);
                continue;
            }
            let (&next, after) = rest.split_first()?;
            rest = after;
            match next {
                0xFF => out.push(0),
                0 => return Some(out),
                _ => return None,
            }
        }
    };
    read()?;
    let name = String::from_utf8(read()?).ok()?;
    rest.is_empty().then_some(name)
}

/// What a list shows of a contact (a row of `cardlog list`): kept beside the contact's place
/// in a store's name index, so a whole list in display-name order reads the index, not the
/// contacts.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ContactRow {
    /// The contact.
    pub id: ContactId,
    /// Its display name ([`Contact::display_name`]; empty when it has none).
    pub name: String,
    /// Its first phone, else its first e-mail, as written ([`Contact::first_phone_or_email`]).
    pub phone_or_email: Option<String>,
    /// Whether it is deleted (a tombstone that can be restored).
    pub deleted: bool,
    /// How many of its paths are in conflict.
    pub conflicts: u32,
}

impl ContactRow {
    /// The row of a contact as read.
    pub fn of(view: &ContactView) -> Self {
        Self {
            id: view.contact.id,
            name: view.contact.display_name(),
            phone_or_email: view
                .contact
                .first_phone_or_email()
                .map(|i| i.body.to_string()),
            deleted: view.deleted,
            conflicts: u32::try_from(view.conflicts.len()).unwrap_or(u32::MAX),
        }
    }

    /// How wide its name and its first phone or e-mail are, in chars: what a listing aligns
    /// its columns to ([`RowWidths`]).
    pub fn widths(&self) -> (usize, usize) {
        (
            self.name.chars().count(),
            self.phone_or_email
                .as_deref()
                .map_or(0, |first| first.chars().count()),
        )
    }
}

/// The widest name and first phone or e-mail of some rows ([`ContactRow::widths`]) and how
/// many rows there are: what an aligned listing needs before it prints its first row. A
/// store keeps them for its whole name index (`Replica::row_widths`), so a listing reads the
/// index once.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RowWidths {
    /// How many rows.
    pub rows: u64,
    /// The widest name.
    pub name: usize,
    /// The widest first phone or e-mail.
    pub first: usize,
}

impl RowWidths {
    /// Counts `row` in.
    pub fn fit(&mut self, row: &ContactRow) {
        let (name, first) = row.widths();
        self.name = self.name.max(name);
        self.first = self.first.max(first);
        self.rows += 1;
    }
}

/// The order's key (module docs).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
struct SortKey {
    /// No display name: after every contact that has one.
    nameless: bool,
    folded: String,
    name: String,
    id: ContactId,
}

impl SortKey {
    /// The key as bytes whose byte order is the key's order: the nameless flag, the folded
    /// name and the name (each with NUL written as `00 FF` and ended by `00 00`), then the id.
    /// What a store's name index holds (docs/FORMAT.md, "Store").
    fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(2 * self.name.len() + 22);
        out.push(u8::from(self.nameless));
        for s in [&self.folded, &self.name] {
            for b in s.bytes() {
                out.push(b);
                if b == 0 {
                    out.push(0xFF);
                }
            }
            out.extend_from_slice(&[0, 0]);
        }
        out.extend_from_slice(&self.id.0);
        out
    }

    fn of(contact: &Contact) -> Self {
        let name = contact.display_name();
        Self {
            nameless: name.is_empty(),
            folded: name.to_lowercase(),
            name,
            id: contact.id,
        }
    }
}

impl Contact {
    /// Whether a search finds this contact: every word of `search` (split at whitespace)
    /// occurs, ignoring case, in some field, item (label or value), tag or custom field; a
    /// word of digits (`+ - ( ) .` within it ignored, at least three digits; a word has no
    /// spaces, so write a number without them)
    /// also finds a phone number whose digits contain it, however it is written.
    pub fn matches(&self, search: &str) -> bool {
        let hay: Vec<String> = self
            .fields
            .values()
            .cloned()
            .chain(ItemKind::ALL.into_iter().flat_map(|k| {
                self.items(k)
                    .iter()
                    .map(|i| format!("{} {}", i.label, i.body))
            }))
            .chain(self.tags.iter().cloned())
            .chain(self.custom.iter().map(|(k, v)| format!("{k} {v}")))
            .map(|h| h.to_lowercase())
            .collect();
        let phones: Vec<String> = self
            .phones
            .iter()
            .map(|p| digits(&p.body.to_string()))
            .collect();
        search.split_whitespace().all(|word| {
            let word_lower = word.to_lowercase();
            if hay.iter().any(|h| h.contains(&word_lower)) {
                return true;
            }
            let wanted = digits(word);
            let only_digits = word
                .chars()
                .all(|c| c.is_ascii_digit() || "+-().".contains(c));
            only_digits && wanted.len() >= 3 && phones.iter().any(|p| p.contains(&wanted))
        })
    }
}

fn digits(s: &str) -> String {
    s.chars().filter(char::is_ascii_digit).collect()
}

/// A page being gathered: contacts are offered in any order, and only the first `limit`
/// after the cursor in display-name order are kept (memory bounded by the page).
#[derive(Debug)]
pub struct Pager {
    query: ContactQuery,
    /// The best `limit` so far, the greatest on top (to be dropped first).
    kept: BinaryHeap<Kept>,
    /// Whether a matching contact past the page was seen.
    more: bool,
}

#[derive(Debug)]
struct Kept(SortKey, ContactView);

impl PartialEq for Kept {
    fn eq(&self, other: &Self) -> bool {
        self.0 == other.0
    }
}
impl Eq for Kept {}
impl PartialOrd for Kept {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Kept {
    fn cmp(&self, other: &Self) -> Ordering {
        self.0.cmp(&other.0)
    }
}

impl Pager {
    /// A pager for `query`.
    pub fn new(query: ContactQuery) -> Self {
        Self {
            query,
            kept: BinaryHeap::new(),
            more: false,
        }
    }

    /// Whether the page is settled when contacts are offered in listing order: it is full
    /// and a matching contact after it was seen, so none offered later can enter it.
    pub fn settled(&self) -> bool {
        self.more
    }

    /// Offers one contact.
    pub fn offer(&mut self, view: ContactView) {
        if view.deleted && !self.query.include_deleted {
            return;
        }
        let key = SortKey::of(&view.contact);
        if self
            .query
            .after
            .as_ref()
            .is_some_and(|after| key <= after.0)
        {
            return;
        }
        if let Some(search) = &self.query.search {
            if !view.contact.matches(search) {
                return;
            }
        }
        let limit = self.query.limit.max(1);
        if self.kept.len() >= limit {
            self.more = true;
            if self.kept.peek().is_some_and(|top| top.0 <= key) {
                return;
            }
            self.kept.pop();
        }
        self.kept.push(Kept(key, view));
    }

    /// The page.
    pub fn finish(self) -> ContactPage {
        let kept = self.kept.into_sorted_vec();
        let next = if self.more {
            kept.last().map(|k| PageCursor(k.0.clone()))
        } else {
            None
        };
        ContactPage {
            contacts: kept.into_iter().map(|k| k.1).collect(),
            next,
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]

    use super::*;
    use crate::model::Field;
    use crate::Hlc;

    fn view(n: u8, given: &str, deleted: bool) -> ContactView {
        let mut c = Contact::new(ContactId([n; 16]));
        if !given.is_empty() {
            c.set(Field::Given, given);
        }
        ContactView {
            contact: c,
            deleted,
            conflicts: Vec::new(),
            created: Hlc::default(),
            updated: Hlc::default(),
        }
    }

    fn names(page: &ContactPage) -> Vec<String> {
        page.contacts
            .iter()
            .map(|v| v.contact.display_name())
            .collect()
    }

    /// Every page of `views` offered in the given order, `limit` at a time.
    fn all_pages(views: &[ContactView], query: ContactQuery) -> Vec<String> {
        let mut out = Vec::new();
        let mut after = None;
        loop {
            let mut pager = Pager::new(ContactQuery {
                after: after.clone(),
                ..query.clone()
            });
            for v in views {
                pager.offer(v.clone());
            }
            let page = pager.finish();
            out.extend(names(&page));
            match page.next {
                Some(next) => after = Some(next),
                None => return out,
            }
        }
    }

    #[test]
    fn pages_walk_the_display_name_order_whatever_the_offer_order() {
        let views = vec![
            view(1, "zoe", false),
            view(2, "Ada", false),
            view(3, "", false),
            view(4, "émile", false),
            view(5, "ada", false),
            view(6, "Bob", true),
            view(7, "Carl", false),
        ];
        let want = ["Ada", "ada", "Carl", "zoe", "émile", ""];
        for limit in 1..8 {
            let query = ContactQuery {
                limit,
                ..ContactQuery::default()
            };
            assert_eq!(all_pages(&views, query.clone()), want, "limit {limit}");
            let mut reversed = views.clone();
            reversed.reverse();
            assert_eq!(all_pages(&reversed, query), want, "limit {limit}");
        }
        let with_deleted = all_pages(
            &views,
            ContactQuery {
                include_deleted: true,
                limit: 2,
                ..ContactQuery::default()
            },
        );
        assert_eq!(
            with_deleted,
            ["Ada", "ada", "Bob", "Carl", "zoe", "émile", ""]
        );
    }

    #[test]
    fn listing_keys_sort_as_the_order_does() {
        let names = [
            "", "a", "a\0", "a\0b", "a\u{1}", "ab", "A", "Ab", "é", "Z", "\0",
        ];
        let mut views = Vec::new();
        for (i, name) in names.iter().enumerate() {
            for id in [3u8, 1] {
                let mut c = Contact::new(ContactId([id + 10 * i as u8; 16]));
                if !name.is_empty() {
                    c.set(Field::Given, *name);
                }
                views.push(c);
            }
        }
        for a in &views {
            for b in &views {
                assert_eq!(
                    listing_key(a).cmp(&listing_key(b)),
                    SortKey::of(a).cmp(&SortKey::of(b)),
                    "{:?} vs {:?}",
                    a.display_name(),
                    b.display_name()
                );
            }
            assert_eq!(listing_key_contact(&listing_key(a)), Some(a.id));
            assert_eq!(
                listing_key_name(&listing_key(a)).as_deref(),
                Some(a.display_name().as_str())
            );
        }
    }

    #[test]
    fn a_row_is_what_a_list_shows_and_serializes_as_documented() {
        let mut v = view(1, "Ada", false);
        v.contact
            .add_text_item(ItemKind::Email, "home", "ada@example.org")
            .unwrap();
        let row = ContactRow::of(&v);
        let json = serde_json::to_value(&row).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "id": "01".repeat(16),
                "name": "Ada",
                "phone_or_email": "ada@example.org",
                "deleted": false,
                "conflicts": 0,
            })
        );
        assert_eq!(serde_json::from_value::<ContactRow>(json).unwrap(), row);
        // The phone before the e-mail, whichever came first.
        v.contact
            .add_text_item(ItemKind::Phone, "cell", "+44 1")
            .unwrap();
        assert_eq!(ContactRow::of(&v).phone_or_email.as_deref(), Some("+44 1"));
        assert_eq!(ContactRow::of(&view(2, "", true)).phone_or_email, None);
        assert!(ContactRow::of(&view(2, "", true)).deleted);
    }

    #[test]
    fn a_key_that_is_not_a_listing_key_gives_no_name() {
        let key = listing_key(&Contact::new(ContactId([7; 16])));
        assert_eq!(listing_key_name(&key).as_deref(), Some(""));
        for cut in 0..key.len() - 16 {
            let mut short = key[..cut].to_vec();
            short.extend_from_slice(&[7; 16]);
            assert_eq!(listing_key_name(&short), None, "cut at {cut}");
        }
        // An escape other than `00 FF` or `00 00`, and bytes after the name.
        let mut bad = vec![0, b'a', 0, 1, 0, 0, b'a', 0, 0];
        bad.extend_from_slice(&[7; 16]);
        assert_eq!(listing_key_name(&bad), None);
        let mut long = vec![0, b'a', 0, 0, b'a', 0, 0, b'x'];
        long.extend_from_slice(&[7; 16]);
        assert_eq!(listing_key_name(&long), None);
    }

    #[test]
    fn a_search_finds_words_anywhere_and_phone_digits_however_written() {
        let mut c = Contact::new(ContactId([1; 16]));
        c.set(Field::Given, "Grace").set(Field::Org, "US Navy");
        c.add_text_item(ItemKind::Phone, "work", "+1 (555) 010-4477")
            .unwrap();
        c.add_text_item(ItemKind::Email, "home", "grace@example.org")
            .unwrap();
        assert!(c.matches("grace navy"));
        assert!(c.matches("EXAMPLE.ORG"));
        assert!(c.matches("5550104477"));
        assert!(c.matches("010-4477"));
        assert!(!c.matches("grace army"));
        assert!(!c.matches("99"));
        assert!(c.matches(""));
    }
}

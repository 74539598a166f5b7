//! Shared workload generators for the benchmarks in `benches/`.
//!
//! Everything here is deterministic: ids come from counters, time from [`FakeClock`]s, and the
//! only "randomness" is a fixed-seed xorshift generator, so two runs (and two machines) measure
//! exactly the same ops. The generators go through the public [`Device`] API, so the ops they
//! produce are the ones real saves produce (replaced heads, `exists` writes, hash chains).
//!
//! - [`typical_op`]: one ordinary contact edit of five writes, for the codec benchmarks.
//! - [`History::build`]: a multi-device history (creates, field edits, item changes, tags,
//!   custom fields, a few deletes and restores, concurrent edits between periodic syncs), for
//!   the replay and device benchmarks.
//! - [`shuffle`]: a deterministic shuffle, to deliver ops out of dependency order.
//! - [`FieldEdits`]: a stream of single-field edits by one device (after one create per
//!   contact), in memory bounded by the number of contacts, so the store benchmarks can make a
//!   million ops without holding them. [`stores`] builds and caches durable stores from it.
//! - [`figures`]: the child-process plumbing and table helpers of the figures binaries.
//! - [`sync`]: one timed, recorded sync session between two replicas, and the divergence the
//!   two sides make between sessions, for the sync benchmarks.
//! - [`compare`]: one contact workload on cardlog, automerge and loro, for the `compare`
//!   binary (the two peers are dependencies of this crate only).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use cardlog_core::replay::{plan_contact, Batch};
use cardlog_core::{
    BookId, Contact, ContactId, Device, DeviceId, DeviceKey, FakeClock, Field, HlcClock, Item,
    ItemBody, ItemId, ItemKind, Op, OpId, Path, PostalAddress, Replay, SealedOp, SignedTip,
};

pub mod compare;
pub mod figures;
pub mod stores;
pub mod sync;

/// What the generators fail with: an engine error (which would be a bug in the engine or the
/// generator) or a broken generator invariant.
pub type Error = Box<dyn std::error::Error + Send + Sync>;

/// 2026-11-22T09:00:00Z, the start of every generated history.
pub const START_MS: u64 = 1_795_338_000_000;

/// A xorshift64 generator: fast, deterministic, and good enough to pick workload steps.
#[derive(Debug, Clone)]
pub struct XorShift(u64);

impl XorShift {
    /// A generator with this seed (a zero seed is replaced, xorshift would stay at zero).
    pub fn new(seed: u64) -> Self {
        Self(if seed == 0 {
            0x9e37_79b9_7f4a_7c15
        } else {
            seed
        })
    }

    /// The next 64 pseudo-random bits.
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    /// A number in `0..n` (`0` when `n` is zero). The modulo bias is irrelevant here.
    pub fn below(&mut self, n: usize) -> usize {
        match u64::try_from(n) {
            Ok(0) | Err(_) => 0,
            Ok(n) => usize::try_from(self.next_u64() % n).unwrap_or(0),
        }
    }

    /// One element of `items` (`None` when it is empty).
    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> Option<&'a T> {
        items.get(self.below(items.len()))
    }
}

/// Shuffles `items` deterministically (Fisher–Yates driven by [`XorShift`] with `seed`).
pub fn shuffle<T>(items: &mut [T], seed: u64) {
    let mut rng = XorShift::new(seed);
    for i in (1..items.len()).rev() {
        items.swap(i, rng.below(i + 1));
    }
}

/// The key of generated device `index` (seed `[index % 255 + 1; 32]`).
pub fn device_key(index: usize) -> DeviceKey {
    DeviceKey::from_seed(&[u8::try_from(index % 255).unwrap_or(0) + 1; 32])
}

/// The device ids of the 255 generated keys, made once.
static DEVICE_IDS: std::sync::LazyLock<Vec<DeviceId>> =
    std::sync::LazyLock::new(|| (0..255).map(|i| device_key(i).device()).collect());

/// The device id of generated device `index`: its key's.
pub fn device_id(index: usize) -> DeviceId {
    DEVICE_IDS
        .get(index % 255)
        .copied()
        .unwrap_or(DeviceId([0; 16]))
}

/// Per generated author among `ops`, its signature of its last op in `book`: what a sender
/// holding those ops sends with them.
pub fn sign_generated(book: BookId, ops: &[SealedOp]) -> Vec<SignedTip> {
    let mut last: BTreeMap<DeviceId, &SealedOp> = BTreeMap::new();
    for op in ops {
        let o = op.op();
        if last.get(&o.author).is_none_or(|l| l.op().seq < o.seq) {
            last.insert(o.author, op);
        }
    }
    last.into_iter()
        .filter_map(|(author, op)| {
            let index = DEVICE_IDS.iter().position(|d| *d == author)?;
            let key = device_key(index);
            Some(SignedTip {
                author,
                key: key.public(),
                seq: op.op().seq,
                op: op.id(),
                signature: key.sign_tip(&book, &op.id()),
            })
        })
        .collect()
}

/// The contact id of the `n`-th generated contact (the counter, big-endian).
pub fn contact_id(n: u64) -> ContactId {
    ContactId(u128::from(n).to_be_bytes())
}

/// The item id of the `n`-th generated item (the counter, big-endian, top byte 0x17 so item
/// and contact ids never look alike in a dump).
pub fn item_id(n: u64) -> ItemId {
    ItemId((u128::from(n) | (0x17 << 120)).to_be_bytes())
}

/// A typical save: one edit of one existing contact that changes its organization, adds a
/// phone number, adds a tag and changes a custom field. It has five writes (`exists`, `org`, the
/// new phone item, the tag, the custom field), four of which replace the write made when the
/// contact was created, as an ordinary edit on a device does.
pub fn typical_op() -> Result<SealedOp, Error> {
    let mut device = Device::new(device_id(0), Arc::new(FakeClock::new(START_MS)));
    let mut contact = Contact::new(contact_id(1));
    contact
        .set(Field::Given, "Ada")
        .set(Field::Family, "Lovelace")
        .set(Field::Org, "Analytical Engines Ltd");
    contact
        .phones
        .push(text_item(item_id(1), "mobile", "+44 20 7946 0018"));
    contact
        .emails
        .push(text_item(item_id(2), "work", "ada@engines.example"));
    contact
        .custom
        .insert("X-SOURCE".into(), "imported 2026-11-01".into());
    device.create(&contact)?;

    let op = device.edit(contact.id, |c| {
        c.set(Field::Org, "Babbage & Lovelace");
        c.phones
            .push(text_item(item_id(3), "home", "+44 20 7946 0992"));
        c.tags.insert("colleagues".into());
        c.custom.insert("X-SOURCE".into(), "edited on phone".into());
    })?;
    let op = op.ok_or("the typical edit changed nothing")?;
    if op.op().writes.len() != 5 {
        return Err(format!("the typical op has {} writes, not 5", op.op().writes.len()).into());
    }
    Ok(op)
}

fn text_item(id: ItemId, label: &str, text: impl Into<String>) -> Item {
    Item {
        id,
        label: label.into(),
        body: ItemBody::Text(text.into()),
    }
}

/// The shape of a generated history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryConfig {
    /// Number of devices editing (each with its own fake clock, started a little apart).
    pub devices: usize,
    /// Number of contacts created over the run.
    pub contacts: usize,
    /// Number of ops (saves) in the history, creates included.
    pub ops: usize,
    /// Saves between two syncs; each sync joins the next pair of devices in turn, so devices
    /// edit concurrently (and sometimes conflict) in between.
    pub sync_every: usize,
    /// Seed of the xorshift generator that picks every step.
    pub seed: u64,
}

impl Default for HistoryConfig {
    /// Three devices, 200 contacts, 5000 ops, a pairwise sync every 50 saves.
    fn default() -> Self {
        Self {
            devices: 3,
            contacts: 200,
            ops: 5000,
            sync_every: 50,
            seed: 0x00ca_7d10_9b3e_5eed,
        }
    }
}

/// A generated history: the devices that wrote it, fully synced at the end, so every device
/// holds every op and the same state.
#[derive(Debug)]
pub struct History {
    /// The devices, `device_id(i)` at index `i`.
    pub devices: Vec<Device>,
    /// Each device's wall clock (advance them to move time on).
    pub clocks: Vec<Arc<FakeClock>>,
    /// The contacts created, in creation order (the first ones are edited most).
    pub contacts: Vec<ContactId>,
}

const GIVEN: [&str; 12] = [
    "Ada", "Grace", "Alan", "Edsger", "Barbara", "Donald", "Frances", "Ken", "Margaret", "Niklaus",
    "Radia", "Tony",
];
const FAMILY: [&str; 12] = [
    "Lovelace", "Hopper", "Turing", "Dijkstra", "Liskov", "Knuth", "Allen", "Thompson", "Hamilton",
    "Wirth", "Perlman", "Hoare",
];
const ORGS: [&str; 6] = [
    "Example Corp",
    "Initech",
    "Globex",
    "Umbrella Research",
    "Acme Widgets",
    "Hooli",
];
const TITLES: [&str; 5] = [
    "Engineer",
    "Manager",
    "Director",
    "Consultant",
    "Researcher",
];
const LABELS: [&str; 4] = ["mobile", "work", "home", ""];
const TAGS: [&str; 5] = ["family", "friends", "work", "club", "vip"];
const CUSTOM: [&str; 3] = ["X-SOURCE", "X-ASSISTANT", "X-SPOUSE"];
const NOTES: [&str; 4] = [
    "Met at the conference; follow up about the proposal.",
    "Prefers e-mail over phone calls.",
    "Birthday party invitation sent.",
    "",
];

/// The generator's running state.
struct Gen {
    rng: XorShift,
    next_item: u64,
}

impl Gen {
    fn item(&mut self, kind: ItemKind, given: &str, family: &str) -> Item {
        self.next_item += 1;
        let id = item_id(self.next_item);
        let label = self.rng.pick(&LABELS).copied().unwrap_or_default();
        let body = match kind {
            ItemKind::Phone => ItemBody::Text(format!("+1 555 {:04}", self.rng.below(10_000))),
            ItemKind::Email => ItemBody::Text(format!(
                "{}.{}{}@example.org",
                given.to_lowercase(),
                family.to_lowercase(),
                self.rng.below(100)
            )),
            ItemKind::Url => {
                ItemBody::Text(format!("https://{}.example.net/", family.to_lowercase()))
            }
            ItemKind::Address => ItemBody::Address(Box::new(PostalAddress {
                street: format!("{} Main Street", 1 + self.rng.below(999)),
                locality: "Springfield".into(),
                code: format!("{:05}", self.rng.below(100_000)),
                country: "USA".into(),
                ..PostalAddress::default()
            })),
        };
        Item {
            id,
            label: label.into(),
            body,
        }
    }

    fn new_contact(&mut self, id: ContactId) -> Contact {
        let given = self.rng.pick(&GIVEN).copied().unwrap_or_default();
        let family = self.rng.pick(&FAMILY).copied().unwrap_or_default();
        let mut c = Contact::new(id);
        c.set(Field::Given, given).set(Field::Family, family);
        if self.rng.below(2) == 0 {
            c.set(
                Field::Org,
                self.rng.pick(&ORGS).copied().unwrap_or_default(),
            );
        }
        let phone = self.item(ItemKind::Phone, given, family);
        c.phones.push(phone);
        if self.rng.below(10) < 7 {
            let email = self.item(ItemKind::Email, given, family);
            c.emails.push(email);
        }
        if self.rng.below(5) == 0 {
            let address = self.item(ItemKind::Address, given, family);
            c.addresses.push(address);
        }
        if self.rng.below(10) < 3 {
            c.tags
                .insert(self.rng.pick(&TAGS).copied().unwrap_or_default().into());
        }
        c
    }

    /// Applies one random edit to `c` (the visible contact); the device saves only what changed.
    fn edit(&mut self, c: &mut Contact) {
        let given = c.get(Field::Given).unwrap_or("x").to_owned();
        let family = c.get(Field::Family).unwrap_or("y").to_owned();
        let roll = self.rng.below(100);
        match roll {
            0..=34 => {
                let field = *self
                    .rng
                    .pick(&[
                        Field::Org,
                        Field::Title,
                        Field::Note,
                        Field::Nickname,
                        Field::Given,
                    ])
                    .unwrap_or(&Field::Note);
                let value = match field {
                    Field::Org => self.rng.pick(&ORGS).copied().unwrap_or_default().to_owned(),
                    Field::Title => self
                        .rng
                        .pick(&TITLES)
                        .copied()
                        .unwrap_or_default()
                        .to_owned(),
                    Field::Note => self
                        .rng
                        .pick(&NOTES)
                        .copied()
                        .unwrap_or_default()
                        .to_owned(),
                    Field::Given => self
                        .rng
                        .pick(&GIVEN)
                        .copied()
                        .unwrap_or_default()
                        .to_owned(),
                    _ => format!("{}{}", given.get(..2).unwrap_or("xy"), self.rng.below(10)),
                };
                c.set(field, value);
            }
            35..=49 => {
                let kind = *self
                    .rng
                    .pick(&[
                        ItemKind::Phone,
                        ItemKind::Email,
                        ItemKind::Email,
                        ItemKind::Url,
                    ])
                    .unwrap_or(&ItemKind::Phone);
                let item = self.item(kind, &given, &family);
                c.items_mut(kind).push(item);
            }
            50..=59 => {
                let n = self.rng.below(10_000);
                if let Some(p) = c.phones.last_mut() {
                    p.body = ItemBody::Text(format!("+1 555 {n:04}"));
                }
            }
            60..=64 => {
                let kind = if self.rng.below(2) == 0 {
                    ItemKind::Phone
                } else {
                    ItemKind::Email
                };
                if let Some(first) = c.items(kind).first().map(|i| i.id) {
                    c.remove_item(kind, first);
                }
            }
            65..=74 => {
                let tag = self.rng.pick(&TAGS).copied().unwrap_or("vip").to_owned();
                if !c.tags.remove(&tag) {
                    c.tags.insert(tag);
                }
            }
            75..=84 => {
                let name = self.rng.pick(&CUSTOM).copied().unwrap_or("X-SOURCE");
                let value = format!("value {}", self.rng.below(1000));
                c.custom.insert(name.into(), value);
            }
            85..=94 => {
                // A fuller edit of several fields at once (someone changed jobs).
                c.set(
                    Field::Org,
                    self.rng.pick(&ORGS).copied().unwrap_or_default(),
                )
                .set(
                    Field::Title,
                    self.rng.pick(&TITLES).copied().unwrap_or_default(),
                )
                .set(Field::Department, format!("Dept {}", self.rng.below(20)));
                let email = self.item(ItemKind::Email, &given, &family);
                c.emails.push(email);
            }
            _ => {
                let field = *self
                    .rng
                    .pick(&[Field::Note, Field::Title, Field::Nickname])
                    .unwrap_or(&Field::Note);
                c.set(field, "");
            }
        }
    }
}

/// Returns mutable references to two distinct devices (`None` if they are the same or absent).
fn pair(devices: &mut [Device], a: usize, b: usize) -> Option<(&mut Device, &mut Device)> {
    if a == b {
        return None;
    }
    let (lo, hi) = (a.min(b), a.max(b));
    let (left, right) = devices.split_at_mut_checked(hi)?;
    let (x, y) = (left.get_mut(lo)?, right.first_mut()?);
    Some(if a < b { (x, y) } else { (y, x) })
}

impl History {
    /// Generates a history with `config`. Each step advances every clock by one second to two
    /// minutes, then one device (chosen at random) either creates the next contact or edits a
    /// contact it knows: half the edits go to the 16 oldest contacts, so devices often edit the
    /// same contact concurrently. About one edit in a hundred deletes the contact instead, and
    /// the next edit of a deleted contact restores it. Every `sync_every` saves the next pair of
    /// devices syncs; at the end all devices sync fully.
    pub fn build(config: &HistoryConfig) -> Result<Self, Error> {
        if config.devices == 0 || config.contacts == 0 || config.ops < config.contacts {
            return Err(
                "a history needs a device, a contact, and at least one op per contact".into(),
            );
        }
        let clocks: Vec<Arc<FakeClock>> = (0..config.devices)
            .map(|i| Arc::new(FakeClock::new(START_MS + 1_500 * i as u64)))
            .collect();
        let mut devices: Vec<Device> = clocks
            .iter()
            .enumerate()
            .map(|(i, clock)| Device::new(device_id(i), clock.clone()))
            .collect();
        let mut gen = Gen {
            rng: XorShift::new(config.seed),
            next_item: 0,
        };
        let mut contacts: Vec<ContactId> = Vec::with_capacity(config.contacts);
        let create_odds = (config.ops / (2 * config.contacts)).max(1);
        let mut saved = 0usize;
        let mut steps = 0usize;
        let mut sync_round = 0usize;

        while saved < config.ops {
            steps += 1;
            if steps > config.ops.saturating_mul(50) {
                return Err(format!("generator stalled after {saved} ops").into());
            }
            let delta_ms = 1_000 + gen.rng.below(119_000) as i64;
            for clock in &clocks {
                clock.advance_ms(delta_ms);
            }
            let d = gen.rng.below(config.devices);
            let device = devices.get_mut(d).ok_or("device index out of range")?;

            let to_create = config.contacts - contacts.len();
            let must_create = to_create > 0 && config.ops - saved <= to_create;
            if must_create || (to_create > 0 && gen.rng.below(create_odds) == 0) {
                let id = contact_id(contacts.len() as u64 + 1);
                device.create(&gen.new_contact(id))?;
                contacts.push(id);
                saved += 1;
            } else {
                let hot = contacts.len().min(16);
                let index = if gen.rng.below(2) == 0 {
                    gen.rng.below(hot)
                } else {
                    gen.rng.below(contacts.len())
                };
                let Some(&id) = contacts.get(index) else {
                    continue;
                };
                let Some(view) = device.contact(&id) else {
                    // Created elsewhere and not synced here yet.
                    continue;
                };
                if view.deleted {
                    device.restore(id)?;
                    saved += 1;
                } else if gen.rng.below(100) == 0 {
                    device.delete(id)?;
                    saved += 1;
                } else if device.edit(id, |c| gen.edit(c))?.is_some() {
                    saved += 1;
                } else {
                    // The edit changed nothing (a value set to what it was); no save, no sync.
                    continue;
                }
            }

            if config.sync_every > 0 && saved.is_multiple_of(config.sync_every) {
                let a = sync_round % config.devices;
                let b = (sync_round + 1) % config.devices;
                sync_round += 1;
                if let Some((x, y)) = pair(&mut devices, a, b) {
                    x.sync(y)?;
                }
            }
        }

        // Full sync: everything to device 0, then device 0 to everyone.
        for _ in 0..2 {
            for i in 1..devices.len() {
                if let Some((x, y)) = pair(&mut devices, 0, i) {
                    x.sync(y)?;
                }
            }
        }
        let history = Self {
            devices,
            clocks,
            contacts,
        };
        history.check(config.ops)?;
        Ok(history)
    }

    /// Checks what the benchmarks rely on: every device holds all `ops` ops, none pending, and
    /// the same state.
    fn check(&self, ops: usize) -> Result<(), Error> {
        let first = self.replay()?;
        if first.len() != ops || first.waiting().count() != 0 {
            return Err(format!("device 0 holds {} ops, expected {ops}", first.len()).into());
        }
        let digest = first.state_digest();
        for (i, d) in self.devices.iter().enumerate() {
            if d.replay().len() != ops || d.replay().state_digest() != digest {
                return Err(format!("device {i} did not converge").into());
            }
        }
        Ok(())
    }

    /// Device 0's replay (every device has the same state).
    pub fn replay(&self) -> Result<&Replay, Error> {
        Ok(self.devices.first().ok_or("no devices")?.replay())
    }

    /// Every op, in an order where dependencies come first (device 0's application order).
    pub fn ops(&self) -> Result<Vec<SealedOp>, Error> {
        Ok(self.replay()?.ops_in_order().cloned().collect())
    }

    /// Figures describing the history, to print next to the measurements.
    pub fn stats(&self) -> Result<HistoryStats, Error> {
        let replay = self.replay()?;
        let mut per_author = BTreeMap::new();
        let mut bytes = 0usize;
        let mut writes = 0usize;
        for op in replay.ops_in_order() {
            *per_author.entry(op.op().author).or_insert(0usize) += 1;
            bytes += op.bytes().len();
            writes += op.op().writes.len();
        }
        Ok(HistoryStats {
            ops: replay.len(),
            bytes,
            writes,
            contacts: replay.contact_ids().count(),
            visible: replay.contacts(false).len(),
            conflicts: replay.conflicts().len(),
            authors: per_author.len(),
        })
    }
}

/// Figures describing a generated history.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HistoryStats {
    /// Number of ops.
    pub ops: usize,
    /// Total encoded size of the ops, in bytes.
    pub bytes: usize,
    /// Total number of writes.
    pub writes: usize,
    /// Contacts ever written.
    pub contacts: usize,
    /// Contacts visible (not deleted) at the end.
    pub visible: usize,
    /// Conflicted paths at the end.
    pub conflicts: usize,
    /// Devices that authored ops.
    pub authors: usize,
}

impl std::fmt::Display for HistoryStats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let per_op = |n: usize| n as f64 / self.ops.max(1) as f64;
        write!(
            f,
            "{} ops by {} devices, {} bytes ({:.1} bytes/op), {:.2} writes/op, {} contacts ({} visible), {} conflicted paths",
            self.ops,
            self.authors,
            self.bytes,
            per_op(self.bytes),
            per_op(self.writes),
            self.contacts,
            self.visible,
            self.conflicts
        )
    }
}

/// The fields a [`FieldEdits`] edit changes, one per op.
const EDITED_FIELDS: [Field; 5] = [
    Field::Org,
    Field::Title,
    Field::Note,
    Field::Nickname,
    Field::Department,
];

/// The shape of a [`FieldEdits`] stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldEditsConfig {
    /// The writing device is `device_id(author)`; its contacts' ids are numbered from
    /// `author << 32`, so streams of different authors never touch the same contact.
    pub author: usize,
    /// Contacts created first (one op each: `exists`, given and family name, and the first
    /// `create_fields - 2` of [`CREATE_EXTRA_FIELDS`]).
    pub contacts: usize,
    /// Fields set by each create, 2 (given and family name, the default) to 8.
    pub create_fields: usize,
    /// Ops in the stream, creates included.
    pub ops: usize,
    /// Seed of the xorshift generator that picks the contact and field of each edit.
    pub seed: u64,
}

impl FieldEditsConfig {
    /// `ops` ops by device 1 over `contacts` contacts, with the default seed.
    pub fn new(contacts: usize, ops: usize) -> Self {
        Self {
            author: 1,
            contacts,
            create_fields: 2,
            ops,
            seed: 0x00f1_e1d5_ed17_5eed,
        }
    }
}

/// The fields a [`FieldEdits`] create sets after given and family name, in this order, when
/// [`FieldEditsConfig::create_fields`] asks for more than two.
pub const CREATE_EXTRA_FIELDS: [Field; 6] = [
    Field::Org,
    Field::Department,
    Field::Title,
    Field::Nickname,
    Field::Birthday,
    Field::Note,
];

/// Wall time step between two ops of a [`FieldEdits`] stream.
pub const FIELD_EDIT_STEP_MS: u64 = 1_000;

/// A deterministic stream of single-field edits made by one device: first one create per
/// contact, then each op sets one field (org, title, note, nickname or department) of one
/// contact picked uniformly to a new value, so every edit has exactly two writes (`exists` and
/// the field), each replacing the previous head at its path. The wall clock moves
/// [`FIELD_EDIT_STEP_MS`] per op.
///
/// The ops are exactly the ones a core [`Device`] would save for the same edits (a test checks
/// it), but only the current contacts and one head per path are kept, so a million ops cost a
/// few megabytes to make, not the whole history.
#[derive(Debug)]
pub struct FieldEdits {
    config: FieldEditsConfig,
    author: DeviceId,
    clock: HlcClock,
    wall_ms: u64,
    chain: Option<(u64, OpId)>,
    contacts: Vec<Contact>,
    heads: HashMap<(ContactId, Path), OpId>,
    rng: XorShift,
    made: usize,
}

impl FieldEdits {
    /// A stream with `config`, starting at [`START_MS`].
    pub fn new(config: &FieldEditsConfig) -> Self {
        Self {
            author: device_id(config.author),
            clock: HlcClock::default(),
            wall_ms: START_MS,
            chain: None,
            contacts: Vec::with_capacity(config.contacts),
            heads: HashMap::new(),
            rng: XorShift::new(config.seed),
            made: 0,
            config: config.clone(),
        }
    }

    /// The id of the `n`-th contact (from 0) the stream with `config` creates.
    pub fn contact(config: &FieldEditsConfig, n: usize) -> ContactId {
        contact_id(((config.author as u64) << 32) | (n as u64 + 1))
    }

    /// The wall time of the stream's last op when all `ops` are made: a replica whose clock
    /// reads this (or later) sees no clock skew in any of them.
    pub fn end_ms(config: &FieldEditsConfig) -> u64 {
        START_MS + FIELD_EDIT_STEP_MS * config.ops as u64
    }

    /// Ops made so far.
    pub fn made(&self) -> usize {
        self.made
    }

    /// The next `max` ops (fewer at the end of the stream, none after it).
    pub fn next_chunk(&mut self, max: usize) -> Result<Vec<SealedOp>, Error> {
        self.by_ref().take(max).collect()
    }

    fn next_op(&mut self) -> Result<SealedOp, Error> {
        self.wall_ms += FIELD_EDIT_STEP_MS;
        let n = self.made;
        let mut batch = Batch::new();
        if n < self.config.contacts {
            let mut c = Contact::new(Self::contact(&self.config, n));
            let given = GIVEN.get(n % GIVEN.len()).copied().unwrap_or("Ada");
            let family = FAMILY
                .get((n / GIVEN.len()) % FAMILY.len())
                .copied()
                .unwrap_or("Lovelace");
            c.set(Field::Given, given).set(Field::Family, family);
            let extra = self.config.create_fields.saturating_sub(2);
            for field in CREATE_EXTRA_FIELDS.iter().take(extra) {
                let value = match field {
                    Field::Birthday => {
                        format!("19{:02}-{:02}-{:02}", 40 + n % 60, 1 + n % 12, 1 + n % 28)
                    }
                    other => format!("{} {n}", other.name()),
                };
                c.set(*field, value);
            }
            batch.create(&c)?;
            self.contacts.push(c);
        } else {
            let index = self.rng.below(self.contacts.len());
            let field = *self.rng.pick(&EDITED_FIELDS).ok_or("no fields")?;
            let before = self.contacts.get_mut(index).ok_or("no contacts")?;
            let mut after = before.clone();
            after.set(field, format!("{} {n}", field.name()));
            batch.edit(before, &after)?;
            *before = after;
        }
        let mut writes = Vec::new();
        for (id, changes) in batch.contacts() {
            writes.extend(plan_contact(*id, changes, |path| {
                Ok::<_, Error>(
                    self.heads
                        .get(&(*id, path.clone()))
                        .copied()
                        .into_iter()
                        .collect(),
                )
            })?);
        }
        let op = Op {
            author: self.author,
            seq: self.chain.map_or(0, |(seq, _)| seq) + 1,
            prev: self.chain.map(|(_, id)| id),
            hlc: self.clock.tick(self.wall_ms),
            writes,
            members: Vec::new(),
        }
        .seal()?;
        let id = op.id();
        for w in &op.op().writes {
            self.heads.insert((w.contact, w.path.clone()), id);
        }
        self.chain = Some((op.op().seq, id));
        self.made += 1;
        Ok(op)
    }
}

impl Iterator for FieldEdits {
    type Item = Result<SealedOp, Error>;

    fn next(&mut self) -> Option<Self::Item> {
        (self.made < self.config.ops).then(|| self.next_op())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn small() -> HistoryConfig {
        HistoryConfig {
            devices: 3,
            contacts: 20,
            ops: 400,
            sync_every: 25,
            seed: 7,
        }
    }

    #[test]
    fn typical_op_has_five_writes_and_round_trips() -> Result<(), Error> {
        let op = typical_op()?;
        assert_eq!(op.op().writes.len(), 5);
        let decoded = cardlog_core::decode_op(op.bytes())?;
        assert_eq!(decoded, op);
        Ok(())
    }

    #[test]
    fn history_is_deterministic_and_converged() -> Result<(), Error> {
        let a = History::build(&small())?;
        let b = History::build(&small())?;
        let ids = |h: &History| -> Result<Vec<_>, Error> {
            Ok(h.ops()?.iter().map(SealedOp::id).collect())
        };
        assert_eq!(ids(&a)?, ids(&b)?);
        let stats = a.stats()?;
        assert_eq!(stats.ops, 400);
        assert_eq!(stats.contacts, 20);
        assert_eq!(stats.authors, 3);
        Ok(())
    }

    #[test]
    fn shuffled_delivery_gives_the_same_state() -> Result<(), Error> {
        let history = History::build(&small())?;
        let mut ops = history.ops()?;
        shuffle(&mut ops, 42);
        let mut replay = Replay::new();
        for op in ops {
            replay.insert(op)?;
        }
        assert_eq!(replay.waiting().count(), 0);
        assert_eq!(replay.state_digest(), history.replay()?.state_digest());
        Ok(())
    }

    #[test]
    fn field_edits_are_what_a_device_saves() -> Result<(), Error> {
        // Replays the same edits on a core Device and compares the op bytes one by one.
        field_edits_match_a_device(&FieldEditsConfig::new(7, 120), 3)
    }

    #[test]
    fn field_edits_with_eight_field_creates_are_what_a_device_saves() -> Result<(), Error> {
        // The same check with creates setting eight fields (nine writes with `exists`).
        let config = FieldEditsConfig {
            create_fields: 8,
            ..FieldEditsConfig::new(7, 120)
        };
        field_edits_match_a_device(&config, 9)
    }

    fn field_edits_match_a_device(
        config: &FieldEditsConfig,
        create_writes: usize,
    ) -> Result<(), Error> {
        let ops: Vec<SealedOp> = FieldEdits::new(config).collect::<Result<_, _>>()?;
        assert_eq!(ops.len(), config.ops);
        assert!(ops
            .iter()
            .take(config.contacts)
            .all(|op| op.op().writes.len() == create_writes));
        assert!(ops
            .iter()
            .skip(config.contacts)
            .all(|op| op.op().writes.len() == 2));

        let clock = Arc::new(FakeClock::new(START_MS));
        let mut device = Device::new(device_id(config.author), clock.clone());
        for op in &ops {
            clock.advance_ms(FIELD_EDIT_STEP_MS as i64);
            let w = op.op().writes.iter().find(|w| w.path != Path::Exists);
            let contact = op.op().writes.first().ok_or("no writes")?.contact;
            let saved = if device.contact(&contact).is_none() {
                let mut c = Contact::new(contact);
                for w in &op.op().writes {
                    if let (Path::Field(f), Some(cardlog_core::Value::Text(t))) =
                        (&w.path, &w.value)
                    {
                        c.set(*f, t.clone());
                    }
                }
                device.create(&c)?
            } else {
                let (Some(Path::Field(f)), Some(Some(cardlog_core::Value::Text(t)))) =
                    (w.map(|w| &w.path), w.map(|w| &w.value))
                else {
                    return Err("an edit without a text field".into());
                };
                device
                    .edit(contact, |c| {
                        c.set(*f, t.clone());
                    })?
                    .ok_or("the edit changed nothing")?
            };
            assert_eq!(saved.bytes(), op.bytes());
        }
        Ok(())
    }
}

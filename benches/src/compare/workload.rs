//! The contact workload every engine of the `compare` binary runs, generated the same way for
//! each: contacts with eight text fields, created one save each, then single-field saves of
//! uniformly chosen contacts.
//!
//! The generator is deterministic (a fixed-seed [`XorShift`] and counters) and engine-neutral:
//! it hands out [`NewContact`]s and [`Edit`]s of plain strings, and each engine maps them onto
//! its own data model. Every edit sets its field to a value different from the one it had, so
//! no engine can skip a save as a no-op. Values have ordinary lengths (names of 3–9 bytes,
//! e-mails of 20–30, phones of 15, notes of 25–40) and the contact ids are 16 random-looking
//! bytes (a UUID's size), which the document engines use as 32-hex-digit map keys.

use crate::XorShift;

/// The eight fields of every contact, in the order of [`NewContact::values`].
pub const FIELDS: [&str; 8] = [
    "given", "family", "nickname", "email", "phone", "org", "title", "note",
];

/// Index of `given` in [`FIELDS`].
pub const GIVEN: usize = 0;
/// Index of `family` in [`FIELDS`].
pub const FAMILY: usize = 1;
/// Index of `nickname` in [`FIELDS`].
pub const NICKNAME: usize = 2;
/// Index of `email` in [`FIELDS`].
pub const EMAIL: usize = 3;
/// Index of `phone` in [`FIELDS`].
pub const PHONE: usize = 4;
/// Index of `org` in [`FIELDS`].
pub const ORG: usize = 5;
/// Index of `title` in [`FIELDS`].
pub const TITLE: usize = 6;
/// Index of `note` in [`FIELDS`].
pub const NOTE: usize = 7;

const GIVEN_NAMES: [&str; 24] = [
    "Ada",
    "Grace",
    "Alan",
    "Edsger",
    "Barbara",
    "Donald",
    "Frances",
    "Ken",
    "Margaret",
    "Niklaus",
    "Radia",
    "Tony",
    "Leslie",
    "Shafi",
    "John",
    "Sophie",
    "Hedy",
    "Claude",
    "Katherine",
    "Dennis",
    "Annie",
    "Tim",
    "Whitfield",
    "Jean",
];
const FAMILY_NAMES: [&str; 24] = [
    "Lovelace",
    "Hopper",
    "Turing",
    "Dijkstra",
    "Liskov",
    "Knuth",
    "Allen",
    "Thompson",
    "Hamilton",
    "Wirth",
    "Perlman",
    "Hoare",
    "Lamport",
    "Goldwasser",
    "McCarthy",
    "Wilson",
    "Lamarr",
    "Shannon",
    "Johnson",
    "Ritchie",
    "Easley",
    "Berners-Lee",
    "Diffie",
    "Sammet",
];
const ORGS: [&str; 12] = [
    "Example Corp",
    "Initech",
    "Globex Corporation",
    "Umbrella Research",
    "Acme Widgets Ltd",
    "Hooli",
    "Vandelay Industries",
    "Stark Industries",
    "Wayne Enterprises",
    "Soylent Foods",
    "Cyberdyne Systems",
    "Tyrell Corporation",
];
const TITLES: [&str; 10] = [
    "Engineer",
    "Senior Engineer",
    "Engineering Manager",
    "Director of Research",
    "Consultant",
    "Researcher",
    "Product Manager",
    "Chief Technology Officer",
    "Designer",
    "Account Executive",
];
const NOTES: [&str; 6] = [
    "Met at the spring conference",
    "Prefers e-mail over phone calls",
    "Birthday party invitation sent",
    "Follow up about the proposal",
    "Introduced by a colleague",
    "Call back after the holidays",
];

/// The shape of a workload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WorkloadConfig {
    /// Contacts created in phase 1, one save each.
    pub contacts: usize,
    /// Single-field saves in phase 2.
    pub edits: usize,
    /// Single-field saves each of the two replicas makes before the incremental sync.
    pub diverge: usize,
    /// Seed of the generator.
    pub seed: u64,
}

impl WorkloadConfig {
    /// The workload: 10,000 contacts, 100,000 edits, 100 divergent saves per side.
    pub fn full() -> Self {
        Self {
            contacts: 10_000,
            edits: 100_000,
            diverge: 100,
            seed: 0x00c0_4a7e_5eed_0008,
        }
    }
}

/// A contact to create: its index (0-based, in creation order), its id and the values of
/// its eight fields, in [`FIELDS`] order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewContact {
    /// Creation index.
    pub index: usize,
    /// The contact's 16-byte id.
    pub id: [u8; 16],
    /// Ids for the e-mail and phone items, for an engine that models them as items with ids
    /// (cardlog); the document engines ignore them.
    pub item_ids: [[u8; 16]; 2],
    /// One value per field of [`FIELDS`].
    pub values: [String; 8],
}

/// A single-field save: set field `field` (an index into [`FIELDS`]) of contact `contact` (a
/// creation index) to `value`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Edit {
    /// Creation index of the contact.
    pub contact: usize,
    /// The contact's 16-byte id.
    pub id: [u8; 16],
    /// Index into [`FIELDS`].
    pub field: usize,
    /// The new value, always different from the field's current one.
    pub value: String,
}

impl Edit {
    /// The field's name.
    pub fn field_name(&self) -> &'static str {
        FIELDS.get(self.field).copied().unwrap_or("note")
    }
}

/// One save of the workload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Save {
    /// Create a contact with all eight fields.
    Create(NewContact),
    /// Set one field of an existing contact.
    Edit(Edit),
}

/// The generator. One per engine run; engines consume the same sequence.
#[derive(Debug, Clone)]
pub struct Workload {
    rng: XorShift,
    ids: Vec<[u8; 16]>,
    /// Per contact, the current index into the list of each list-valued field (given, family,
    /// org, title), so that an edit always picks a different entry.
    picks: Vec<[u8; 4]>,
    /// Saves made so far: part of every free-form value, which makes each one new.
    n: u64,
}

/// The 32-hex-digit map key of a contact id (what the document engines key contacts by).
pub fn key(id: &[u8; 16]) -> String {
    format!("{:032x}", u128::from_be_bytes(*id))
}

impl Workload {
    /// A generator seeded with `seed`.
    pub fn new(seed: u64) -> Self {
        Self {
            rng: XorShift::new(seed),
            ids: Vec::new(),
            picks: Vec::new(),
            n: 0,
        }
    }

    /// Restarts the random choices from `seed`, keeping the contacts made so far: another
    /// device editing the same address book.
    pub fn reseed(&mut self, seed: u64) {
        self.rng = XorShift::new(seed);
    }

    /// The id of contact `index`, if created.
    pub fn id(&self, index: usize) -> Option<[u8; 16]> {
        self.ids.get(index).copied()
    }

    fn id16(&mut self) -> [u8; 16] {
        let hi = u128::from(self.rng.next_u64());
        let lo = u128::from(self.rng.next_u64());
        ((hi << 64) | lo).to_be_bytes()
    }

    /// An index into a list of `len` entries other than `current` (any when `len` is 1).
    fn other(&mut self, current: u8, len: usize) -> u8 {
        let skip = 1 + self.rng.below(len.saturating_sub(1).max(1));
        u8::try_from((usize::from(current) + skip) % len.max(1)).unwrap_or(0)
    }

    fn free_value(&mut self, field: usize, given: &str, family: &str) -> String {
        let n = self.n;
        match field {
            NICKNAME => format!("{}{n}", given.get(..3).unwrap_or(given).to_lowercase()),
            EMAIL => format!(
                "{}.{}{}@example.org",
                given.to_lowercase(),
                family.to_lowercase(),
                n
            ),
            PHONE => {
                // 7919 is prime and coprime with 10^7, so n -> x is one-to-one below 10^7.
                let x = n.wrapping_mul(7_919) % 10_000_000;
                format!("+1 555 {:03} {:04}", x / 10_000, x % 10_000)
            }
            _ => format!(
                "{} {n}",
                self.rng.pick(&NOTES).copied().unwrap_or("Met at a meetup")
            ),
        }
    }

    /// The next contact to create.
    pub fn create(&mut self) -> NewContact {
        self.n += 1;
        let index = self.ids.len();
        let id = self.id16();
        let item_ids = [self.id16(), self.id16()];
        let pick = |rng: &mut XorShift, len: usize| u8::try_from(rng.below(len)).unwrap_or(0);
        let picks = [
            pick(&mut self.rng, GIVEN_NAMES.len()),
            pick(&mut self.rng, FAMILY_NAMES.len()),
            pick(&mut self.rng, ORGS.len()),
            pick(&mut self.rng, TITLES.len()),
        ];
        let [g, f, o, t] = picks;
        let given = entry(&GIVEN_NAMES, g);
        let family = entry(&FAMILY_NAMES, f);
        let values = [
            given.to_owned(),
            family.to_owned(),
            self.free_value(NICKNAME, given, family),
            self.free_value(EMAIL, given, family),
            self.free_value(PHONE, given, family),
            entry(&ORGS, o).to_owned(),
            entry(&TITLES, t).to_owned(),
            self.free_value(NOTE, given, family),
        ];
        self.ids.push(id);
        self.picks.push(picks);
        NewContact {
            index,
            id,
            item_ids,
            values,
        }
    }

    /// The next single-field save: a uniformly chosen contact and field. `None` before any
    /// contact was created.
    pub fn edit(&mut self) -> Option<Edit> {
        if self.ids.is_empty() {
            return None;
        }
        self.n += 1;
        let contact = self.rng.below(self.ids.len());
        let field = self.rng.below(FIELDS.len());
        let id = *self.ids.get(contact)?;
        let mut picks = *self.picks.get(contact)?;
        let given = entry(&GIVEN_NAMES, picks[0]);
        let family = entry(&FAMILY_NAMES, picks[1]);
        let slot = match field {
            GIVEN => Some((0, GIVEN_NAMES.as_slice())),
            FAMILY => Some((1, FAMILY_NAMES.as_slice())),
            ORG => Some((2, ORGS.as_slice())),
            TITLE => Some((3, TITLES.as_slice())),
            _ => None,
        };
        let value = match slot {
            Some((i, list)) => {
                let current = picks.get(i).copied().unwrap_or(0);
                let next = self.other(current, list.len());
                if let Some(p) = picks.get_mut(i) {
                    *p = next;
                }
                entry(list, next).to_owned()
            }
            None => self.free_value(field, given, family),
        };
        if let Some(p) = self.picks.get_mut(contact) {
            *p = picks;
        }
        Some(Edit {
            contact,
            id,
            field,
            value,
        })
    }

    /// The next `count` saves of a phase: creates while fewer than `contacts` contacts exist
    /// (phase 1), edits after that.
    pub fn next_saves(&mut self, count: usize, contacts: usize) -> Vec<Save> {
        let mut out = Vec::with_capacity(count);
        for _ in 0..count {
            if self.ids.len() < contacts {
                out.push(Save::Create(self.create()));
            } else if let Some(edit) = self.edit() {
                out.push(Save::Edit(edit));
            }
        }
        out
    }
}

fn entry(list: &[&'static str], i: u8) -> &'static str {
    list.get(usize::from(i)).copied().unwrap_or("x")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn workload_is_deterministic_and_every_edit_changes_its_field() {
        // Runs the generator twice and replays its saves into a plain table of values.
        let run = || {
            let mut w = Workload::new(7);
            let mut saves = w.next_saves(20, 20);
            saves.extend(w.next_saves(20_000, 20));
            saves
        };
        let saves = run();
        assert_eq!(saves, run());
        let mut table: Vec<[String; 8]> = Vec::new();
        for save in saves {
            match save {
                Save::Create(c) => {
                    assert_eq!(c.index, table.len());
                    table.push(c.values);
                }
                Save::Edit(e) => {
                    let row = table.get_mut(e.contact).expect("created");
                    let old = row.get_mut(e.field).expect("field");
                    assert_ne!(*old, e.value, "an edit must change its field");
                    *old = e.value;
                }
            }
        }
        assert_eq!(table.len(), 20);
    }
}

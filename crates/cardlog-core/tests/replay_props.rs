//! Property tests of replay (semantics S4): random multi-device histories of edits, deletes,
//! restores and partial syncs produce op sets that give byte-identical state in any delivery
//! order, with any duplication, and that devices converge after a full sync.
#![allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::panic)]

use std::sync::Arc;

use cardlog_core::seeded::shuffle;
use cardlog_core::{
    ContactId, Device, DeviceId, FakeClock, Field, InsertOutcome, Item, ItemBody, ItemId, ItemKind,
    Replay, SealedOp,
};
use proptest::prelude::*;

#[derive(Clone, Debug)]
enum Action {
    Edit {
        device: usize,
        contact: u8,
        edit: Edit,
    },
    Sync {
        a: usize,
        b: usize,
    },
    /// One-way push of only the first `n` missing ops (an interrupted sync).
    Partial {
        from: usize,
        to: usize,
        n: usize,
    },
    Tick {
        device: usize,
        ms: i64,
    },
}

#[derive(Clone, Debug)]
enum Edit {
    Set(usize, u8),
    Clear(usize),
    AddPhone(u8),
    RelabelFirstPhone(u8),
    RemoveFirstPhone,
    Tag(u8),
    Custom(u8),
    Delete,
    Restore,
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        4 => (0..4usize, 0..4u8).prop_map(|(f, v)| Edit::Set(f, v)),
        1 => (0..4usize).prop_map(Edit::Clear),
        2 => (0..4u8).prop_map(Edit::AddPhone),
        2 => (0..4u8).prop_map(Edit::RelabelFirstPhone),
        1 => Just(Edit::RemoveFirstPhone),
        1 => (0..3u8).prop_map(Edit::Tag),
        1 => (0..3u8).prop_map(Edit::Custom),
        1 => Just(Edit::Delete),
        1 => Just(Edit::Restore),
    ]
}

fn action(devices: usize) -> impl Strategy<Value = Action> {
    prop_oneof![
        6 => (0..devices, 0..3u8, edit()).prop_map(|(device, contact, edit)| Action::Edit { device, contact, edit }),
        2 => (0..devices, 0..devices).prop_map(|(a, b)| Action::Sync { a, b }),
        1 => (0..devices, 0..devices, 0..4usize).prop_map(|(from, to, n)| Action::Partial { from, to, n }),
        2 => (0..devices, -120_000..600_000i64).prop_map(|(device, ms)| Action::Tick { device, ms }),
    ]
}

struct Sim {
    devices: Vec<Device>,
    clocks: Vec<Arc<FakeClock>>,
    next_item: u64,
}

fn pair(devices: &mut [Device], a: usize, b: usize) -> Option<(&mut Device, &mut Device)> {
    if a == b {
        return None;
    }
    let (lo, hi) = (a.min(b), a.max(b));
    let (left, right) = devices.split_at_mut(hi);
    Some((&mut left[lo], &mut right[0]))
}

impl Sim {
    fn new(n: usize) -> Self {
        let clocks: Vec<_> = (0..n)
            .map(|_| Arc::new(FakeClock::new(1_795_338_000_000)))
            .collect();
        let devices = (0..n)
            .map(|i| Device::new(DeviceId([i as u8 + 1; 16]), clocks[i].clone()))
            .collect();
        Self {
            devices,
            clocks,
            next_item: 0,
        }
    }

    fn run(&mut self, action: &Action) {
        match action {
            Action::Edit {
                device,
                contact,
                edit,
            } => self.edit(*device, ContactId([*contact; 16]), edit),
            Action::Sync { a, b } => {
                if let Some((x, y)) = pair(&mut self.devices, *a, *b) {
                    x.sync(y).unwrap();
                }
            }
            Action::Partial { from, to, n } => {
                let ops = self.devices[*from]
                    .replay()
                    .missing_for(&self.devices[*to].summary());
                for op in ops.into_iter().take(*n) {
                    self.devices[*to].receive(op).unwrap();
                }
            }
            Action::Tick { device, ms } => self.clocks[*device].advance_ms(*ms),
        }
    }

    fn edit(&mut self, device: usize, id: ContactId, edit: &Edit) {
        self.next_item += 1;
        let item_id = ItemId(u128::from(self.next_item).to_le_bytes());
        let d = &mut self.devices[device];
        let Some(view) = d.contact(&id) else {
            let mut c = cardlog_core::Contact::new(id);
            c.set(Field::Given, format!("c{}", id.0[0]));
            d.create(&c).unwrap();
            return;
        };
        let result = match edit {
            Edit::Delete => d.delete(id).map(Some),
            Edit::Restore => d.restore(id).map(Some),
            _ if view.deleted => return,
            other => d.edit(id, |c| match other {
                Edit::Set(f, v) => {
                    c.set(Field::ALL[*f], format!("v{v}"));
                }
                Edit::Clear(f) => {
                    c.set(Field::ALL[*f], "");
                }
                Edit::AddPhone(v) => c.phones.push(Item {
                    id: item_id,
                    label: String::new(),
                    body: ItemBody::Text(format!("+{v}")),
                }),
                Edit::RelabelFirstPhone(v) => {
                    if let Some(p) = c.phones.first_mut() {
                        p.label = format!("l{v}");
                    }
                }
                Edit::RemoveFirstPhone => {
                    if let Some(p) = c.phones.first().map(|p| p.id) {
                        c.remove_item(ItemKind::Phone, p);
                    }
                }
                Edit::Tag(t) => {
                    let t = format!("t{t}");
                    if !c.tags.remove(&t) {
                        c.tags.insert(t);
                    }
                }
                Edit::Custom(v) => {
                    c.custom.insert("X-N".into(), format!("{v}"));
                }
                Edit::Delete | Edit::Restore => {}
            }),
        };
        // Deleting a deleted contact or restoring a visible one is refused; that is fine here.
        let _ = result;
    }

    fn full_sync(&mut self) {
        for _ in 0..2 {
            for i in 1..self.devices.len() {
                let (a, b) = pair(&mut self.devices, 0, i).unwrap();
                a.sync(b).unwrap();
            }
        }
    }
}

fn replay_all(ops: &[SealedOp]) -> Replay {
    let mut r = Replay::new();
    for op in ops {
        match r.insert(op.clone()).unwrap() {
            InsertOutcome::Applied { rejected, .. } => assert!(rejected.is_empty()),
            InsertOutcome::Duplicate | InsertOutcome::Waiting { .. } => {}
        }
    }
    r
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    #[test]
    fn any_order_and_duplication_gives_identical_state(
        devices in 2..4usize,
        actions in proptest::collection::vec(action(3), 1..40),
        seed in any::<u64>(),
    ) {
        let mut sim = Sim::new(devices);
        for a in actions.iter().filter(|a| match a {
            Action::Edit { device, .. } | Action::Tick { device, .. } => *device < devices,
            Action::Sync { a, b } => *a < devices && *b < devices,
            Action::Partial { from, to, .. } => *from < devices && *to < devices,
        }) {
            sim.run(a);
        }
        sim.full_sync();
        let reference = sim.devices[0].replay();
        for d in &sim.devices[1..] {
            prop_assert_eq!(d.replay().state_bytes(), reference.state_bytes());
            prop_assert_eq!(d.summary(), reference.summary());
        }

        let ops: Vec<SealedOp> = reference.ops_in_order().cloned().collect();
        // In dependency order.
        prop_assert_eq!(replay_all(&ops).state_bytes(), reference.state_bytes());
        // Shuffled.
        let mut shuffled = ops.clone();
        shuffle(&mut shuffled, seed);
        let r = replay_all(&shuffled);
        prop_assert_eq!(r.waiting().count(), 0);
        prop_assert_eq!(r.state_bytes(), reference.state_bytes());
        prop_assert_eq!(r.contacts(true), reference.contacts(true));
        // Shuffled with every op delivered twice.
        let mut doubled: Vec<SealedOp> = ops.iter().chain(&ops).cloned().collect();
        shuffle(&mut doubled, seed.rotate_left(17));
        let r2 = replay_all(&doubled);
        prop_assert_eq!(r2.state_bytes(), reference.state_bytes());
        prop_assert_eq!(r2.len(), ops.len());
    }
}

#[test]
fn state_bytes_see_a_difference() {
    // The witness used above is not blind: one extra edit changes it.
    let mut sim = Sim::new(2);
    sim.edit(0, ContactId([1; 16]), &Edit::Set(0, 0));
    sim.full_sync();
    let before = sim.devices[1].replay().state_bytes();
    sim.edit(0, ContactId([1; 16]), &Edit::Set(1, 1));
    assert_ne!(sim.devices[0].replay().state_bytes(), before);
}

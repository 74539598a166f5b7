//! An app's own property over the simulator, written with [`Sim::replica`] (issue "cardlog-sim
//! for app developers", read access): "a contact tagged as a favourite on any device is a
//! favourite on every device after sync" (on generated schedules, with the app's own transport
//! in the loop, in `examples/favourites.rs`), and the read access itself checked on a
//! scripted schedule (what each replica shows before and
//! after a sync, its summary, ops, history and conflicts, and the model's view).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;

use cardlog_core::{Contact, ContactId, Field, Path};
use cardlog_sim::{Action, Edit, ReplicaView, Schedule, Sim, Storage, SyncMode};

/// The app marks favourites with a tag. The generated schedules tag contacts `friends` or
/// `work`, so the app here calls `friends` its favourites.
const FAVOURITE: &str = "friends";

/// The contacts a replica shows as favourites.
fn favourites(r: &ReplicaView<'_>) -> BTreeSet<ContactId> {
    r.contacts()
        .unwrap()
        .into_iter()
        .filter(|v| v.contact.tags.contains(FAVOURITE))
        .map(|v| v.contact.id)
        .collect()
}

fn app_property(sim: &mut Sim) -> Result<(), String> {
    sim.sync_all().map_err(|v| v.detail)?;
    let first = favourites(&sim.replica(0).unwrap());
    for r in sim.replicas() {
        let here = favourites(&r);
        if here != first {
            return Err(format!(
                "replica {} has favourites {here:?}, replica 0 {first:?}",
                r.index()
            ));
        }
        // The app's view agrees with the reference model's.
        let model: BTreeSet<ContactId> = r
            .model()
            .unwrap()
            .into_iter()
            .filter(|(_, m)| !m.deleted && m.contact.tags.contains(FAVOURITE))
            .map(|(id, _)| id)
            .collect();
        if model != here {
            return Err(format!(
                "replica {}: model {model:?}, shown {here:?}",
                r.index()
            ));
        }
    }
    Ok(())
}

#[test]
fn read_access_shows_each_replica_before_and_after_a_sync() {
    let mut ada = Contact::new(ContactId([1; 16]));
    ada.set(Field::Given, "Ada");
    ada.tags.insert(FAVOURITE.into());
    let schedule = Schedule {
        storage: Storage::Disk,
        skews_ms: vec![0, 0, 0],
        actions: vec![
            Action::Save {
                replica: 0,
                edit: Edit::Add(ada),
            },
            Action::Sync {
                from: 0,
                to: 1,
                mode: SyncMode::Full,
            },
            // Apart, both rename Ada: a conflict once they meet.
            Action::Save {
                replica: 0,
                edit: Edit::SetField {
                    pick: 0,
                    field: 0,
                    value: "Ada L.".into(),
                },
            },
            Action::Save {
                replica: 1,
                edit: Edit::SetField {
                    pick: 0,
                    field: 0,
                    value: "Augusta".into(),
                },
            },
        ],
    };
    let mut sim = Sim::new(&schedule).unwrap();
    sim.play(&schedule).unwrap();
    assert_eq!(sim.replica_count(), 3);
    assert!(sim.replica(3).is_none());
    let (r0, r2) = (sim.replica(0).unwrap(), sim.replica(2).unwrap());
    let ada = r0.contacts().unwrap()[0].contact.id;
    // Replica 2 has not synced: it shows nothing, and the property sees the difference.
    assert!(r2.contacts().unwrap().is_empty());
    assert!(r2.contact(&ada).unwrap().is_none());
    assert_ne!(favourites(&r0), favourites(&r2));
    assert_ne!(r0.summary().unwrap(), r2.summary().unwrap());
    assert_ne!(r0.device().unwrap(), r2.device().unwrap());

    sim.sync_all().unwrap();
    let views: Vec<ReplicaView<'_>> = sim.replicas().collect();
    for r in &views {
        let shown = r.contact(&ada).unwrap().expect("Ada everywhere");
        assert_eq!(r.conflicts().unwrap().len(), 1, "replica {}", r.index());
        assert_eq!(shown.conflicts.len(), 1);
        let history = r.history(&ada, &Path::Field(Field::Given)).unwrap();
        assert_eq!(history.len(), 3, "Ada, then both renames");
        assert_eq!(r.summary().unwrap(), views[0].summary().unwrap());
        assert_eq!(r.ops().unwrap().len(), views[0].ops().unwrap().len());
        assert_eq!(r.model().unwrap()[&ada].contact, shown.contact);
    }
    app_property(&mut sim).unwrap();
    sim.check().unwrap();
}

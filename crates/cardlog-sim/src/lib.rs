//! cardlog-sim: the property-test harness for many devices (docs/SIM.md).
//!
//! - [`Sim`] runs a [`Schedule`] on N replicas — real stores in temporary directories or
//!   in-memory replicas (`cardlog_sync::memory::MemoryReplica`) — each with its own fake clock and skew: saves, syncs between any two
//!   (full sessions, partial, interrupted, duplicated, reordered, through a relay, through
//!   bundle files), crashes (drop and reopen from disk) and clock jumps; then a final full
//!   sync and every property ([`Sim::check`]).
//! - [`model`] is a small reference model of semantics S1–S9 computed straight from the op
//!   set, sharing no code with the engine's replay.
//! - [`ReplicaView`] ([`Sim::replica`]) reads one replica from an app's own property: its
//!   contacts, conflicts, history, summary and ops, and the reference model's view of them.
//! - [`Network`] puts an app's own transport in the loop ([`SyncMode::Network`],
//!   [`Sim::with_network`]); property "a completed session delivers" catches one that loses
//!   data while both ends believe the session completed.
//! - [`strategy`] holds public proptest strategies (contacts, edits, sync modes, schedules)
//!   for apps that want to prove their own use of cardlog converges; [`explore()`] runs a
//!   property over them with seeds, shrinks a failure and prints it as a story (what each
//!   device did) with the command that replays it.
//!
//! Start with `examples/favourites.rs` and docs/SIM.md.
//!
//! ```
//! use cardlog_sim::{Action, Edit, Schedule, Sim, Storage, SyncMode};
//! use cardlog_core::{Contact, ContactId, Field};
//!
//! let mut ada = Contact::new(ContactId([1; 16]));
//! ada.set(Field::Given, "Ada");
//! let schedule = Schedule {
//!     storage: Storage::Memory,
//!     skews_ms: vec![0, -300_000],
//!     actions: vec![
//!         Action::Save { replica: 0, edit: Edit::Add(ada) },
//!         Action::Sync { from: 0, to: 1, mode: SyncMode::Full },
//!         Action::Save { replica: 1, edit: Edit::SetField { pick: 0, field: 1, value: "b".into() } },
//!         Action::Save { replica: 0, edit: Edit::SetField { pick: 0, field: 1, value: "c".into() } },
//!     ],
//! };
//! Sim::run(&schedule).expect("every property holds");
//! ```

pub mod explore;
pub mod model;
mod naming;
pub mod network;
pub mod schedule;
pub mod sim;
mod story;
pub mod strategy;
mod view;

pub use explore::{explore, schedule_of, ExploreError, Failure};
pub use model::Rule;
pub use network::{Ends, Link, Network};
pub use sim::{Action, Edit, Schedule, Sim, Stats, Storage, SyncMode, Violation};
pub use view::ReplicaView;

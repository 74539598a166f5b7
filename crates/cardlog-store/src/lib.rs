//! cardlog's durable store: the op log in its own append-only file (`log`), and the
//! materialized contact registers in sled (`state`), behind the narrow [`state::kv::Kv`]
//! interface (also the fault-injection point for tests). Apps use it
//! through the `cardlog` crate's `Replica`; the store itself knows nothing of clocks or edits,
//! only of sealed ops.
//!
//! The replay rules are not re-implemented here: ops are checked with
//! [`cardlog_core::replay::check_op`], registers are updated with
//! [`cardlog_core::replay::Heads`] and read with [`cardlog_core::replay::contact_view`], so a
//! store and an in-memory `Replay` of the same ops give the same state bytes.
//!
//! ```
//! use std::sync::Arc;
//! use cardlog_core::{Contact, Device, FakeClock, Field};
//! use cardlog_store::{Store, StoreOptions};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let tmp = tempfile::tempdir()?;
//! let mut store = Store::create(&tmp.path().join("store"), &StoreOptions::default())?;
//!
//! // Ops made elsewhere (here by an in-memory device) are checked and stored atomically.
//! let mut device = Device::random(Arc::new(FakeClock::new(1_700_000_000_000)))?;
//! let mut contact = Contact::random()?;
//! contact.set(Field::Given, "Ada");
//! let op = device.create(&contact)?;
//! store.apply_all(&[op])?;
//! store.flush()?;
//!
//! assert_eq!(store.contact(&contact.id)?.ok_or("missing")?.contact, contact);
//! assert_eq!(store.state_bytes()?, device.replay().state_bytes());
//! assert!(store.verify()?.is_ok());
//! # Ok(()) }
//! ```

pub mod error;
pub mod log;
pub mod state;
pub mod store;

pub use error::{OpenError, StoreError};
pub use state::keys::{self, ContactRegisters};
pub use store::{
    dir_bytes, read_key_file, write_key_file, ChangeCursor, Compacted, ContactChange,
    CursorParseError, Database, Keeps, LogDamage, OpOutcome, Progress, Recovery, RepairReport,
    Since, Store, StoreOptions, VerifyReport, Withdrawal, CACHE_BYTES_DEFAULT, CACHE_BYTES_MIN,
    CHANGE_CURSOR_BYTES, KEY_FILE, SIGNATURE_SPACING, STORE_FORMAT_VERSION,
};

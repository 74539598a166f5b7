//! cardlog's durable store: the op log and the materialized contact registers in sled, behind
//! the narrow [`kv::Kv`] interface (also the fault-injection point for tests).
//!
//! The replay rules are not re-implemented here: ops are checked with
//! [`cardlog_core::replay::check_op`], registers are updated with
//! [`cardlog_core::replay::Heads`] and read with [`cardlog_core::replay::contact_view`], so a
//! store and an in-memory `Replay` of the same ops give the same state bytes.

pub mod error;
pub mod keys;
pub mod kv;
mod stage;
pub mod store;

pub use error::{OpenError, StoreError};
pub use store::{
    OpOutcome, Store, StoreOptions, VerifyReport, CACHE_BYTES_DEFAULT, STORE_FORMAT_VERSION,
};

//! The state derived from the log, as kept in sled: the narrow [`kv::Kv`] interface (and, in
//! `sled_kv`, sled behind it with every workaround it needs), the key space and value encodings
//! (`keys`), and the register changes held back from sled between batches (`held`).

pub(crate) mod held;
pub mod keys;
pub mod kv;
pub mod sled_kv;

pub use kv::{FaultyKv, Kv, KvBatch, KvError};
pub use sled_kv::{SledKv, CHECKPOINT_BYTES_MIN};

//! The state derived from the log, as kept in sled: the narrow [`kv::Kv`] interface (and, in
//! `sled_kv`, sled behind it with every workaround it needs), the key space and value encodings
//! (`keys`; a contact's registers in `contact_value`), the register changes held back from
//! sled between batches (`held`), a key space in memory for a store opened read-only
//! (`mem_kv`), and one in memory kept on disk as a journal of its batches, for a relay's books
//! (`journal_kv`).

pub mod contact_value;
pub(crate) mod held;
pub mod journal_kv;
pub mod keys;
pub mod kv;
pub mod mem_kv;
pub mod sled_kv;

pub use journal_kv::JournalKv;
pub use kv::{FaultyKv, Kv, KvBatch, KvError};
pub use mem_kv::MemKv;
pub use sled_kv::{SledKv, CHECKPOINT_BYTES_MIN};

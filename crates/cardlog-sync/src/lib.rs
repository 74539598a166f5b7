//! cardlog's sync layer (docs/SYNC.md): how replicas exchange the ops they lack.
//!
//! - [`wire`]: the bytes that travel. [`wire::segment`]: the compact, verifiable encoding ops
//!   travel in. A segment is a contiguous run
//!   of one author's ops anchored to the id of the op before it; ops are sent without what the
//!   receiver can recompute and rebuilt into their exact bytes on arrival, so a single changed
//!   byte makes the segment fail, with an error naming author and seqs.
//!   [`wire::message`]: the framed, checksummed protocol messages and files (hello, ops, ack,
//!   abort, bundle, summary file).
//! - [`store`]: what a replica offers a session ([`SyncStore`]); [`receive`]: the receive path
//!   shared by sessions and bundle import (verify whole, set forks aside, apply atomically);
//!   [`error`]: [`SyncError`], generic over the store's own error, and [`TransportError`].
//! - [`session`]: the sans-IO session: summaries one way and the other, then exactly the
//!   missing segments each way, then both sides confirm equal summaries. Forks are reported,
//!   never merged; the initiator calibrates its clock to the responder's.
//! - [`secure`]: the encrypted, mutually authenticated session every network transport
//!   carries: a Noise XX handshake keyed by the devices' keys, the membership check of each
//!   side by the other ([`Gate`]), then every message sealed.
//! - [`transport`]: drives a session over an in-process channel (crossbeam) or TCP, with
//!   deadlines; a served replica handles several peers at once. TCP sessions are always
//!   [`secure`] ones.
//! - [`bundle`]: the same segments in a file, for sneakernet or a shared folder.
//!
//! The replica side is the [`SyncStore`] trait; `cardlog::Replica` implements it, and
//! [`memory::MemoryReplica`] is an in-memory one (simulator, fuzzing, tests).

pub mod budget;
pub mod bundle;
pub mod busy;
pub mod error;
pub mod memory;
pub mod quota;
pub mod receive;
pub mod secure;
pub mod session;
pub mod shared;
mod slots;
pub mod store;
pub mod transport;
pub mod wire;

pub use error::{AuthError, HandshakeError, SyncError, TransportError};
pub use quota::{Quota, QuotaExceeded, QuotaPart};
pub use receive::{apply_segments, Received};
pub use secure::{Access, Expect, Identity};
pub use session::{Calibration, Role, Session, SyncProgress, SyncReport};
pub use store::{Applied, Gate, Owed, PeerBook, SyncStore, TakenBack};
pub use wire::{
    decode_available_segments, decode_segments, decode_session_segments, decode_signed_segments,
    encode_exact_segments, encode_segments, Decoded, Fork, Locate, Message, Resolve, Summary,
    WireError, SEGMENT_VERSION,
};

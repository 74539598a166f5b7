//! cardlog's sync layer. Today: the **segment** encoding ops travel in between replicas
//! (docs/SYNC.md, docs/FORMAT.md "Segments"). A segment is a contiguous run of one author's
//! ops anchored to the id of the op before it; ops are sent in a compact form that leaves out
//! what the receiver can recompute (author, seq, previous id, the contact and path of an edit,
//! the full ids of replaced writes) and is rebuilt into the exact op bytes on arrival. Each
//! segment ends with its last op's id, so every rebuilt op is bound to what the sender hashed:
//! a single changed byte anywhere makes the segment fail, with an error naming author and seqs.
//!
//! The protocol session and its transports (in-process, TCP, bundle files) build on this.

pub mod segment;
pub mod varint;

pub use segment::{decode_segments, encode_segments, Locate, Resolve, WireError, SEGMENT_VERSION};

//! cardlog's pure engine: identifiers, the hybrid logical clock, the contact model, ops and
//! their canonical encoding, and deterministic replay. No I/O happens here; storage (sled),
//! sync and the CLI build on this crate.
//!
//! Every save is one [`Op`]: its author, its place in the author's hash chain, a hybrid
//! timestamp and its writes. A write sets (or removes) the value at one contact path and names
//! the writes at that path it replaces. [`Replay`] turns any set of ops, delivered in any
//! order, into the same contacts, conflicts and history (docs/SEMANTICS.md).
//!
//! ```
//! use std::sync::Arc;
//! use cardlog_core::{Contact, Device, FakeClock, Field, ItemKind};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let clock = Arc::new(FakeClock::new(1_700_000_000_000));
//! let mut tablet = Device::random(clock.clone())?;
//! let mut phone = Device::random(clock.clone())?;
//!
//! let mut foo = Contact::random()?;
//! foo.set(Field::Given, "Foo");
//! let number = foo.add_text_item(ItemKind::Phone, "mobile", "+1 555 0100")?;
//! tablet.create(&foo)?;
//! tablet.sync(&mut phone)?;
//!
//! // Apart: the tablet changes the number, the phone adds an e-mail.
//! tablet.edit(foo.id, |c| c.phones[0].body = cardlog_core::ItemBody::Text("+1 555 0199".into()))?;
//! phone.edit(foo.id, |c| { let _ = c.add_text_item(ItemKind::Email, "", "foo@example.org"); })?;
//! tablet.sync(&mut phone)?;
//!
//! // Both edits survive, on both devices.
//! let merged = phone.contact(&foo.id).ok_or("missing")?.contact;
//! assert_eq!(merged.phones[0].id, number);
//! assert_eq!(merged.phones[0].body.to_string(), "+1 555 0199");
//! assert_eq!(merged.emails.len(), 1);
//! assert_eq!(tablet.replay().state_bytes(), phone.replay().state_bytes());
//! # Ok(()) }
//! ```

pub mod codec;
pub mod device;
pub mod edit;
pub mod hlc;
pub mod id;
pub mod json;
pub mod key;
pub mod member;
pub mod membership;
pub mod model;
pub mod op;
pub mod outline;
pub mod replay;
pub mod sealed;
pub mod seeded;

pub use codec::{OpFormat, OP_FORMAT_VERSION};
pub use device::{Device, DeviceError};
pub use edit::{EditError, EditTarget};
pub use hlc::{Anchor, FakeClock, Hlc, HlcClock, SkewReport, SystemClock, WallClock};
pub use id::{ContactId, DeviceId, IdParseError, IdPrefix, ItemId, OpId, RandomError};
pub use key::{BookId, DeviceKey, KeyError, PublicKey, Signature, SignedTip};
pub use member::{MemberChange, MemberRole, MemberRoleParseError};
pub use membership::{
    Admission, Adoption, Cutoffs, Member, Membership, Refusal, Removal, Standing, VOID_WINDOW,
};
pub use model::contact::{diff, Change, Contact, DiffError, Item};
pub use model::listing::{
    listing_key, listing_key_contact, listing_key_name, ContactPage, ContactQuery, ContactRow,
    PageCursor, Pager, RowWidths,
};
pub use model::{Field, ItemBody, ItemKind, ItemValue, Path, PathParseError, PostalAddress, Value};
pub use op::{MemberFault, Op, OpInvalid, Write};
pub use outline::{outline, Outline};
pub use replay::{
    suspects, Batch, ChainTip, ContactView, FieldConflict, HistoryEntry, InsertOutcome, Missing,
    PlanError, Rejected, Replay, ReplayError, Summary, Suspect, WriteKey,
};
pub use sealed::{
    decode_op, decode_op_unchecked, decode_op_with_id, encode_op, encode_op_in, DecodeError,
    EncodeError, SealedOp,
};

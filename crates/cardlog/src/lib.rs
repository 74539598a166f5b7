//! cardlog: an offline-first sync engine for contact data. This crate is what apps embed: a
//! [`Replica`] is one device's durable copy of the contacts, kept in a directory.
//!
//! Every save appends one content-hashed, signed op to the replica's log and updates the
//! materialized contacts in the same atomic write; it returns once both are durable. Ops made
//! elsewhere arrive through [`Replica::apply`] (the sync layer carries them), are accepted
//! only from members of the replica's address book with a valid signature, and replay into the
//! same state on every device: concurrent edits of different fields both survive, concurrent
//! edits of one field are kept as a visible conflict until someone settles it
//! (docs/SEMANTICS.md, docs/SECURITY.md).
//!
//! ```
//! use cardlog::{Contact, Field, ItemKind, MemberRole, Replica};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let dirs = (tempfile::tempdir()?, tempfile::tempdir()?);
//! let mut laptop = Replica::create(&dirs.0.path().join("laptop"))?;
//! let mut phone = Replica::join(&dirs.1.path().join("phone"), laptop.book())?;
//! laptop.add_member(phone.id(), MemberRole::Write, "Ada's phone")?;
//!
//! let mut ada = Contact::random()?;
//! ada.set(Field::Given, "Ada").set(Field::Family, "Lovelace");
//! ada.add_text_item(ItemKind::Phone, "mobile", "+44 20 7946 0000")?;
//! laptop.add_contact(&ada)?;
//!
//! // Carry the laptop's ops to the phone, then edit different fields on each.
//! phone.pull_from(&laptop)?;
//! laptop.edit(ada.id, |c| { c.set(Field::Org, "Analytical Engines"); })?;
//! phone.edit(ada.id, |c| { c.set(Field::Nickname, "Countess"); })?;
//! phone.pull_from(&laptop)?;
//! laptop.pull_from(&phone)?;
//!
//! // Both edits survive on both devices, and the states are byte-identical.
//! let seen = laptop.contact(&ada.id)?.ok_or("missing")?.contact;
//! assert_eq!(seen.get(Field::Org), Some("Analytical Engines"));
//! assert_eq!(seen.get(Field::Nickname), Some("Countess"));
//! assert_eq!(laptop.state_bytes()?, phone.state_bytes()?);
//! # Ok(()) }
//! ```

mod book;
mod changes;
mod error;
mod relay;
mod replica;
mod restore;
mod sync;

pub use changes::{ChangeSource, Changes, ProgressSink};
pub use error::{Error, MemberError, OpenError};
pub use relay::{BookStatus, Relay, RelayOptions, RelayStatus, BOOKS_DIR, RELAY_MARKER};
pub use replica::{ApplyReport, Bulk, Options, Replica};
pub use sync::{CalibrationInfo, Pairing, PeerInfo, SharedReplica, SyncError, SHARED_STEP_OPS};

/// The sync layer: sessions, transports, bundles (docs/SYNC.md).
pub use cardlog_sync as sync_layer;
pub use cardlog_sync::{
    AuthError, Fork, HandshakeError, Role, SyncProgress, SyncReport, TakenBack, TransportError,
};

pub use cardlog_core::edit::EditTarget;
/// The serde shapes of the public types (JSON as docs/CLI.md documents it).
pub use cardlog_core::json;
pub use cardlog_core::replay::{ChainTip, ContactRegisters, Heads};
pub use cardlog_core::{
    Admission, Adoption, BookId, Member, MemberChange, MemberRole, MemberRoleParseError,
    Membership, PublicKey, Refusal, Removal, Signature, SignedTip,
};
pub use cardlog_core::{
    Batch, Contact, ContactId, ContactPage, ContactQuery, ContactRow, ContactView, DeviceId,
    FakeClock, Field, FieldConflict, HistoryEntry, Hlc, HlcClock, IdPrefix, Item, ItemBody, ItemId,
    ItemKind, ItemValue, Missing, OpId, PageCursor, Path, PostalAddress, RowWidths, SealedOp,
    SkewReport, Summary, Suspect, SystemClock, Value, WallClock,
};
pub use cardlog_core::{
    DeviceError, DiffError, EditError, EncodeError, PlanError, RandomError, ReplayError,
};
pub use cardlog_store::log::LogError;
pub use cardlog_store::state::KvError;
pub use cardlog_store::{
    dir_bytes, ChangeCursor, Compacted, ContactChange, CursorParseError, Database, Keeps,
    LogDamage, Progress, Recovery, RepairReport, Since, Store, StoreError, VerifyReport,
    CACHE_BYTES_DEFAULT, CACHE_BYTES_MIN,
};
pub use cardlog_sync::bundle::{Exported, Imported};

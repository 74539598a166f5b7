//! What a simulation runs: a [`Schedule`] of [`Action`]s on replicas with clock skews, the
//! [`Edit`]s devices save and the [`SyncMode`]s they exchange ops by, and which replica plays
//! which part in a book (founder, writers, the relay, a device waiting to be admitted). Told as
//! stories by `story`, run by `sim`.

use cardlog_core::Contact;

/// Disk replicas below this index are writers from the start (the founder included); the
/// others joined and wait for an [`Action::Admit`].
pub(crate) const ADMITTED_AT_START: usize = 4;
/// The disk replica admitted with the relay role: it stores and forwards but cannot save
/// contacts (as a served replica; its saves are refused, which the simulator takes as an app
/// would: nothing saved).
pub const RELAY: usize = 3;

/// Where replicas keep their state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Storage {
    /// Real stores in temporary directories (crashes drop and reopen them).
    Disk,
    /// In-memory devices (fast; a crash is a no-op).
    Memory,
}

/// One change a device saves, as a person makes it in an app.
///
/// Every edit but [`Edit::Add`] acts on a contact the device already knows: `pick` chooses
/// it, modulo the number of contacts the device holds (deleted ones included), in id order,
/// so the same schedule picks the same contact on every run. Fields and names are numbers
/// into small alphabets ([`crate::strategy::FIELDS`], [`crate::strategy::NAMES`]), so random
/// devices often touch the same path. An edit that does not apply (editing a deleted
/// contact, restoring a visible one, an item of a contact without items) saves nothing, as
/// in an app. A run's story names the contact each edit picked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Edit {
    /// A new contact (its contact and item ids are renumbered by the simulator: contact
    /// numbers count up from 1 across the whole run).
    Add(Contact),
    /// Sets a single-valued field.
    SetField {
        /// Which contact (see [`Edit`]).
        pick: u8,
        /// Which field: an index into [`crate::strategy::FIELDS`] (modulo its length).
        field: usize,
        /// The new value.
        value: String,
    },
    /// Clears a single-valued field.
    ClearField {
        /// Which contact.
        pick: u8,
        /// Which field, as in [`Edit::SetField`].
        field: usize,
    },
    /// Adds a phone (`kind` 0) or an e-mail (any other `kind`) labelled "other".
    AddItem {
        /// Which contact.
        pick: u8,
        /// 0: a phone; otherwise an e-mail.
        kind: usize,
        /// Its number or address.
        text: String,
    },
    /// Changes the text of one item: the `nth` (modulo their number) of the contact's phones
    /// followed by its e-mails.
    EditItem {
        /// Which contact.
        pick: u8,
        /// Which item.
        nth: u8,
        /// The new text.
        text: String,
    },
    /// Removes one item, chosen as in [`Edit::EditItem`].
    RemoveItem {
        /// Which contact.
        pick: u8,
        /// Which item.
        nth: u8,
    },
    /// Adds (`on`) or removes a tag.
    Tag {
        /// Which contact.
        pick: u8,
        /// Which tag: an index into [`crate::strategy::NAMES`] (modulo its length).
        name: usize,
        /// Tag or untag.
        on: bool,
    },
    /// Sets (`Some`) or clears a custom field `X-NAME`, its name from
    /// [`crate::strategy::NAMES`] in capitals.
    Custom {
        /// Which contact.
        pick: u8,
        /// Which name, as in [`Edit::Tag`].
        name: usize,
        /// The value, or `None` to clear it.
        value: Option<String>,
    },
    /// Deletes the contact.
    Delete {
        /// Which contact.
        pick: u8,
    },
    /// Restores a deleted contact.
    Restore {
        /// Which contact.
        pick: u8,
    },
    /// Settles the contact's first conflict with its visible value.
    Resolve {
        /// Which contact.
        pick: u8,
    },
}

/// How two replicas exchange ops.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncMode {
    /// A whole session over the in-process channel.
    Full,
    /// Only the first `n` percent of what the receiver lacks, dependencies first.
    Partial(u8),
    /// A session (one op per message) whose line breaks after `n` received messages.
    Interrupted(u8),
    /// The same bundle imported twice.
    Duplicated,
    /// What the receiver lacks, applied in a shuffled order (seeded).
    Reordered(u64),
    /// Through a third replica (picked by the number): from → relay, then relay → to.
    Relay(u8),
    /// Heads file one way, bundle the other.
    Bundle,
    /// A whole session (a few ops per message) over the app's own network
    /// ([`crate::sim::Sim::with_network`]), which takes its faults from the number
    /// ([`crate::network::Link::seed`]).
    Network(u64),
}

/// One step of a schedule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// A device saves an edit.
    Save {
        /// Which device.
        replica: usize,
        /// What it saves.
        edit: Edit,
    },
    /// Ops travel from one replica to another (both ways for sessions).
    Sync {
        /// The sending side (the session's responder).
        from: usize,
        /// The receiving side (the session's initiator).
        to: usize,
        /// How.
        mode: SyncMode,
    },
    /// The replica is dropped without a clean close and reopened from disk.
    Crash {
        /// Which.
        replica: usize,
    },
    /// A device outside the book pushes an op to a replica by a bundle: a contact of its own,
    /// signed with its own key (`forge == false`), or one claimed for a member and signed
    /// with the outsider's key (`forge == true`). Replicas of a book (disk) refuse it and
    /// change nothing; in-memory devices have no book and skip this.
    Stranger {
        /// The replica it reaches.
        target: usize,
        /// Which kind of op.
        forge: bool,
    },
    /// A device leaves the book (a lost phone): it syncs with the founder and the founder
    /// removes it. It learns of its removal only by a later sync; until then its saves are
    /// void (concurrent with the removal: they spread, others build on them, and they never
    /// take effect anywhere); after that its saves are refused. It still relays. Disk
    /// replicas only; never the founder.
    Leave {
        /// Which.
        replica: usize,
    },
    /// The founder admits a device that joined the book but was not admitted yet (disk
    /// replica 4 starts so); the device learns of it by a later sync. A no-op for any
    /// other replica.
    Admit {
        /// Which.
        replica: usize,
    },
    /// A device's wall clock jumps.
    ClockJump {
        /// Which.
        replica: usize,
        /// By how much (may be negative).
        delta_ms: i64,
    },
    /// Someone sets a device's clock to real time plus `off_by_ms`: 0 sets it right, a day
    /// ahead or behind sets it wrong, decades ahead is a clock that failed into the far future
    /// (docs/SEMANTICS.md, "Time"). No time passes: a calibration taken before lapses.
    SetClock {
        /// Which.
        replica: usize,
        /// How far from real time it is set.
        off_by_ms: i64,
    },
    /// A backup of a device's store is taken (the store closed cleanly, its directory copied
    /// aside, reopened), replacing any earlier backup of it. Disk replicas only.
    Backup {
        /// Which.
        replica: usize,
    },
    /// A device's store is restored in place from its last [`Action::Backup`], as a phone
    /// restore or `rsync --delete` does: the directory stays, its files are the backup's. What
    /// it held since the backup and no other replica holds is gone with the disk; the rest it
    /// gets back when it meets a peer that holds more of its chain (docs/SEMANTICS.md,
    /// "Restores"). Nothing happens without a backup. Disk replicas only.
    Restore {
        /// Which.
        replica: usize,
    },
}

/// A whole simulated run. It prints as a story (`Display`, and `Debug`, which proptest shows
/// of a failing case).
#[derive(Clone, PartialEq, Eq)]
pub struct Schedule {
    /// Where replicas keep state.
    pub storage: Storage,
    /// Each replica's initial clock skew (the schedule has one replica per entry).
    pub skews_ms: Vec<i64>,
    /// The steps.
    pub actions: Vec<Action>,
}

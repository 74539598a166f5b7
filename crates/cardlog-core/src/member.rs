//! What a membership op says: the changes to an address book's members an admin device writes
//! into its chain (docs/FORMAT.md, "Op (version 2)"; docs/SECURITY.md for who may write them).
//! Whether a change takes effect is decided by [`crate::membership`], from the set of all
//! membership ops, never by the order they arrived in.

use std::fmt;

use bincode::{Decode, Encode};

use crate::id::{DeviceId, OpId};
use crate::key::PublicKey;

/// What a member may do. Roles only grow: a device added twice has the larger of its roles
/// ([`MemberRole::rank`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Encode, Decode)]
pub enum MemberRole {
    /// Receives the book's ops; writes nothing.
    Read,
    /// Saves contacts.
    Write,
    /// Saves contacts and changes the members.
    Admin,
    /// Stores and forwards the book's ops for others; writes nothing.
    Relay,
}

impl MemberRole {
    /// Every role, in format order.
    pub const ALL: [MemberRole; 4] = [
        MemberRole::Read,
        MemberRole::Write,
        MemberRole::Admin,
        MemberRole::Relay,
    ];

    /// Order of privilege, for merging roles: read < relay < write < admin.
    pub fn rank(self) -> u8 {
        match self {
            MemberRole::Read => 0,
            MemberRole::Relay => 1,
            MemberRole::Write => 2,
            MemberRole::Admin => 3,
        }
    }

    /// Whether ops of this role may save contacts.
    pub fn writes_contacts(self) -> bool {
        matches!(self, MemberRole::Write | MemberRole::Admin)
    }

    /// Whether ops of this role may change the members.
    pub fn changes_members(self) -> bool {
        self == MemberRole::Admin
    }

    /// The role's name as the CLI shows and parses it.
    pub fn name(self) -> &'static str {
        match self {
            MemberRole::Read => "read",
            MemberRole::Write => "write",
            MemberRole::Admin => "admin",
            MemberRole::Relay => "relay",
        }
    }
}

impl fmt::Display for MemberRole {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A name that is not a role.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("'{0}' is not a role (read, write, admin or relay)")]
pub struct MemberRoleParseError(pub String);

impl std::str::FromStr for MemberRole {
    type Err = MemberRoleParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        MemberRole::ALL
            .into_iter()
            .find(|r| r.name() == s)
            .ok_or_else(|| MemberRoleParseError(s.to_owned()))
    }
}

/// One change to the members, written by an admin (or, for [`MemberChange::Found`], by the
/// founder as its first op).
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub enum MemberChange {
    /// Founds the book: the founder's first op, alone. The book's id is
    /// [`crate::BookId::founded_by`]`(key, nonce)`; the founder is an admin.
    Found {
        /// Random bytes making the book id unique.
        nonce: [u8; 16],
        /// The founder's public key (its device id is the op's author).
        key: PublicKey,
        /// The founder device's human name.
        name: String,
    },
    /// Admits a device, or widens its role. Its public key comes with its signatures (a
    /// device id is the hash of its key, so only that key's signatures count for it).
    Add {
        /// The device.
        device: DeviceId,
        /// What it may do.
        role: MemberRole,
        /// Its human name ("Ada's iPad").
        name: String,
    },
    /// Removes a device: its ops after `after` (the last of its seqs the remover had seen)
    /// are void everywhere, and it can never be admitted again.
    Remove {
        /// The device removed.
        device: DeviceId,
        /// Its last seq that stays valid.
        after: u64,
    },
    /// Adopts a chain of format-1 ops (written before the book existed, by an author without a
    /// key) up to `seq`, whose op id is `tip`, as part of the book's history.
    Adopt {
        /// The format-1 author.
        author: DeviceId,
        /// The last adopted seq.
        seq: u64,
        /// The id of that op, which commits to the whole adopted chain.
        tip: OpId,
    },
}

impl MemberChange {
    /// The human name this change carries, if any.
    pub fn name(&self) -> Option<&str> {
        match self {
            MemberChange::Found { name, .. } | MemberChange::Add { name, .. } => Some(name),
            MemberChange::Remove { .. } | MemberChange::Adopt { .. } => None,
        }
    }
}

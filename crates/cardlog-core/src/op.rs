//! The op: one save of one device. It carries its author, its place in the author's hash chain
//! (seq and previous op id), its hybrid timestamp, and either its writes to contacts or its
//! changes to the book's members.
//!
//! [`Op`] is plain content. [`SealedOp`](crate::sealed::SealedOp) is an op together with its exact canonical bytes and
//! its id, and can only be made by encoding a valid op ([`Op::seal`]) or by strictly decoding
//! and validating bytes ([`crate::sealed::decode_op`]): code that takes a `SealedOp` never sees
//! unchecked input.

use bincode::{Decode, Encode};

use crate::codec::limits;
use crate::hlc::Hlc;
use crate::id::{ContactId, DeviceId, OpId};
use crate::member::MemberChange;
use crate::model::{Field, ItemBody, Path, Value};

/// One register write: the new value (or removal) at a contact's path, naming the writes at that
/// path it replaces (the heads its device saw: usually one, none for a new path, several when it
/// settles a conflict).
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub struct Write {
    /// The contact written.
    pub contact: ContactId,
    /// Where in the contact.
    pub path: Path,
    /// The new value; `None` removes (clears a field, removes an item or tag).
    pub value: Option<Value>,
    /// Ops whose writes at the same contact and path this write replaces; sorted, unique.
    pub replaces: Vec<OpId>,
}

/// One save: all its writes become visible together (semantics S7).
///
/// Everything reachable from `Op` must keep one canonical bincode form whose alternatives are
/// all longer (ids, varints, strings, lists, enums, `Option`, `bool`): `decode_op` checks
/// canonical form by length (docs/FORMAT.md). A map, set, float or custom `Decode` here would
/// need that check revisited.
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub struct Op {
    /// The device that wrote it.
    pub author: DeviceId,
    /// Position in the author's chain: 1, 2, 3, …
    pub seq: u64,
    /// The id of the author's op `seq - 1`; `None` exactly when `seq == 1`.
    pub prev: Option<OpId>,
    /// When it was written: the author's calibrated real time at the edit (docs/SEMANTICS.md,
    /// "Time"); it may be before `prev`'s, if the author's clock was set back.
    pub hlc: Hlc,
    /// The writes, sorted by (contact, path), at most one per (contact, path). Every contact
    /// written also has its `Exists` path written. Empty in a membership op.
    pub writes: Vec<Write>,
    /// Changes to the book's members (format 2 only); empty in a save of contacts.
    pub members: Vec<MemberChange>,
}

/// What is wrong with one member change of an op.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MemberFault {
    /// `Found` anywhere but as the only change of an author's first op.
    #[error("a book can only be founded by the only change of its founder's first op")]
    FoundOutOfPlace,
    /// `Found` names a key that is not the author's.
    #[error("the founding key is not the author's")]
    FoundKeyNotAuthor,
    /// A key that is not a usable ed25519 public key.
    #[error("not a usable ed25519 public key")]
    BadKey,
    /// A device name empty or too long.
    #[error("a device name must be 1 to {max} bytes, got {bytes}")]
    NameLength {
        /// Its length.
        bytes: usize,
        /// The limit.
        max: usize,
    },
    /// `Adopt` of seq 0.
    #[error("an adopted chain ends at seq 1 or later")]
    AdoptSeqZero,
}

/// Why an op's content breaks the format's invariants. Each names the offending place.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum OpInvalid {
    /// seq 0 is not a position.
    #[error("seq must start at 1, got 0")]
    SeqZero,
    /// `prev` present on the first op or missing on a later one.
    #[error("op seq {seq} {}", if *seq == 1 { "must not name a previous op" } else { "must name its previous op" })]
    PrevMismatch {
        /// The op's seq.
        seq: u64,
    },
    /// An op without writes or member changes.
    #[error("an op must write something")]
    NoWrites,
    /// An op with both writes and member changes.
    #[error("an op either saves contacts or changes members, not both")]
    Mixed,
    /// Too many member changes.
    #[error("{count} member changes in one op, the limit is {max}")]
    TooManyMemberChanges {
        /// How many.
        count: usize,
        /// The limit.
        max: usize,
    },
    /// A member change breaks its rules.
    #[error("member change {index}: {fault}")]
    Member {
        /// Index of the change.
        index: usize,
        /// What is wrong.
        fault: MemberFault,
    },
    /// Member changes in a format-1 op, which has no place for them.
    #[error("a format-1 op cannot change members")]
    MembersInFormat1,
    /// Too many writes.
    #[error("{count} writes in one op, the limit is {max}")]
    TooManyWrites {
        /// How many.
        count: usize,
        /// The limit.
        max: usize,
    },
    /// Writes out of canonical order or repeated.
    #[error("write {index} ({path}) is out of order or repeats a path")]
    WritesUnsorted {
        /// Index of the offending write.
        index: usize,
        /// Its path.
        path: String,
    },
    /// A value of the wrong type for its path.
    #[error("write {index}: {path} cannot hold {what}")]
    WrongValue {
        /// Index of the write.
        index: usize,
        /// Its path.
        path: String,
        /// What it held.
        what: String,
    },
    /// Replaced op ids out of order or repeated.
    #[error("write {index}: replaced op ids must be sorted and unique")]
    ReplacesUnsorted {
        /// Index of the write.
        index: usize,
    },
    /// A write replacing more writes than allowed.
    #[error("write {index} replaces {count} writes, the limit is {max}")]
    TooManyReplaces {
        /// Index of the write.
        index: usize,
        /// How many it replaces.
        count: usize,
        /// The limit.
        max: usize,
    },
    /// A text longer than allowed.
    #[error("write {index}: a text of {bytes} bytes, the limit is {max}")]
    TextTooLong {
        /// Index of the write.
        index: usize,
        /// Its length.
        bytes: usize,
        /// The limit.
        max: usize,
    },
    /// A field written at a path it is not stored at (the formatted name lives at
    /// `custom/FN`).
    #[error("write {index}: the {} field is written at {}", field.name(), field.path())]
    FieldNotWritable {
        /// The write's index.
        index: usize,
        /// The field.
        field: Field,
    },
    /// A tag or custom field name empty or too long.
    #[error("write {index}: a tag or custom field name must be 1 to {max} bytes, got {bytes}")]
    BadName {
        /// Index of the write.
        index: usize,
        /// Its length.
        bytes: usize,
        /// The limit.
        max: usize,
    },
    /// A contact is written without its existence being written in the same op.
    #[error("contact {contact} is written without its exists path")]
    MissingExists {
        /// The contact.
        contact: ContactId,
    },
}

impl Write {
    fn texts(&self) -> Vec<&str> {
        let mut out = Vec::new();
        match &self.value {
            Some(Value::Text(t)) => out.push(t.as_str()),
            Some(Value::Item(item)) => {
                out.push(item.label.as_str());
                match &item.body {
                    ItemBody::Text(t) => out.push(t.as_str()),
                    ItemBody::Address(a) => out.extend(a.parts()),
                }
            }
            Some(Value::Bool(_) | Value::Present) | None => {}
        }
        out
    }
}

impl Op {
    /// Checks every invariant of the format that does not need other ops: seq and prev agree,
    /// writes are sorted and unique, values fit their paths, lists are sorted and within limits,
    /// every written contact has its existence written.
    pub fn validate(&self) -> Result<(), OpInvalid> {
        if self.seq == 0 {
            return Err(OpInvalid::SeqZero);
        }
        if (self.seq == 1) != self.prev.is_none() {
            return Err(OpInvalid::PrevMismatch { seq: self.seq });
        }
        if !self.members.is_empty() {
            return if self.writes.is_empty() {
                self.validate_members()
            } else {
                Err(OpInvalid::Mixed)
            };
        }
        if self.writes.is_empty() {
            return Err(OpInvalid::NoWrites);
        }
        if self.writes.len() > limits::WRITES_PER_OP_MAX {
            return Err(OpInvalid::TooManyWrites {
                count: self.writes.len(),
                max: limits::WRITES_PER_OP_MAX,
            });
        }
        let mut prev: Option<&Write> = None;
        let mut exists_seen = false;
        for (index, w) in self.writes.iter().enumerate() {
            if let Some(p) = prev {
                if (p.contact, &p.path) >= (w.contact, &w.path) {
                    return Err(OpInvalid::WritesUnsorted {
                        index,
                        path: w.path.to_string(),
                    });
                }
                if p.contact != w.contact {
                    if !exists_seen {
                        return Err(OpInvalid::MissingExists { contact: p.contact });
                    }
                    exists_seen = false;
                }
            }
            // Path::Exists sorts first, so it is the first write of each contact when present.
            exists_seen |= w.path == Path::Exists;
            if !w.path.accepts(w.value.as_ref()) {
                return Err(OpInvalid::WrongValue {
                    index,
                    path: w.path.to_string(),
                    what: match &w.value {
                        None => "a removal".to_owned(),
                        Some(v) => format!("{v:?}"),
                    },
                });
            }
            if w.replaces.len() > limits::REPLACES_PER_WRITE_MAX {
                return Err(OpInvalid::TooManyReplaces {
                    index,
                    count: w.replaces.len(),
                    max: limits::REPLACES_PER_WRITE_MAX,
                });
            }
            if w.replaces.windows(2).any(|p| matches!(p, [a, b] if a >= b)) {
                return Err(OpInvalid::ReplacesUnsorted { index });
            }
            if w.path == Path::Field(Field::FormattedName) {
                return Err(OpInvalid::FieldNotWritable {
                    index,
                    field: Field::FormattedName,
                });
            }
            if let Path::Tag(name) | Path::Custom(name) = &w.path {
                if name.is_empty() || name.len() > limits::NAME_BYTES_MAX {
                    return Err(OpInvalid::BadName {
                        index,
                        bytes: name.len(),
                        max: limits::NAME_BYTES_MAX,
                    });
                }
            }
            for text in w.texts() {
                if text.len() > limits::TEXT_BYTES_MAX {
                    return Err(OpInvalid::TextTooLong {
                        index,
                        bytes: text.len(),
                        max: limits::TEXT_BYTES_MAX,
                    });
                }
            }
            prev = Some(w);
        }
        match prev {
            Some(p) if !exists_seen => Err(OpInvalid::MissingExists { contact: p.contact }),
            _ => Ok(()),
        }
    }

    /// The member-change half of [`Op::validate`].
    fn validate_members(&self) -> Result<(), OpInvalid> {
        if self.members.len() > limits::MEMBER_CHANGES_PER_OP_MAX {
            return Err(OpInvalid::TooManyMemberChanges {
                count: self.members.len(),
                max: limits::MEMBER_CHANGES_PER_OP_MAX,
            });
        }
        let alone = self.seq == 1 && self.members.len() == 1;
        for (index, change) in self.members.iter().enumerate() {
            let fault = |fault| Err(OpInvalid::Member { index, fault });
            if let Some(name) = change.name() {
                if name.is_empty() || name.len() > limits::NAME_BYTES_MAX {
                    return fault(MemberFault::NameLength {
                        bytes: name.len(),
                        max: limits::NAME_BYTES_MAX,
                    });
                }
            }
            match change {
                MemberChange::Found { key, .. } => {
                    if !alone {
                        return fault(MemberFault::FoundOutOfPlace);
                    }
                    if key.check().is_err() {
                        return fault(MemberFault::BadKey);
                    }
                    if key.device() != self.author {
                        return fault(MemberFault::FoundKeyNotAuthor);
                    }
                }
                MemberChange::Adopt { seq: 0, .. } => return fault(MemberFault::AdoptSeqZero),
                MemberChange::Add { .. }
                | MemberChange::Remove { .. }
                | MemberChange::Adopt { .. } => {}
            }
        }
        Ok(())
    }

    /// Whether this op changes the book's members.
    pub fn is_membership(&self) -> bool {
        !self.members.is_empty()
    }

    /// The write at `(contact, path)`, if this op has one.
    pub fn write_at(&self, contact: ContactId, path: &Path) -> Option<&Write> {
        self.writes
            .binary_search_by(|w| (w.contact, &w.path).cmp(&(contact, path)))
            .ok()
            .and_then(|i| self.writes.get(i))
    }
}

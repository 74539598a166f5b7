//! The replica's address book: founding one or joining one, its members, and the admission of
//! received ops (docs/SECURITY.md, "Membership"). The rules themselves are core's
//! ([`Membership`]); this file applies them to the replica: its own membership ops, signed and
//! stored like any save, and the check every received op passes before it is stored.

use cardlog_core::{
    Admission, BookId, DeviceId, HlcClock, Member, MemberChange, MemberRole, Membership, Op, OpId,
    SealedOp, SignedTip,
};
use cardlog_store::OpenError;

use crate::error::{Error, MemberError};
use crate::replica::Replica;

/// Most member changes written in one op (the op format's own limit).
const CHANGES_PER_OP_MAX: usize = cardlog_core::codec::limits::MEMBER_CHANGES_PER_OP_MAX;

impl Replica {
    /// The address book this replica belongs to.
    pub fn book(&self) -> BookId {
        self.membership.book()
    }

    /// Who belongs to the book, as the membership ops held here decide.
    pub fn membership(&self) -> &Membership {
        &self.membership
    }

    /// The members (removed ones included, with their removal), by device id.
    pub fn members(&self) -> Vec<(DeviceId, Member)> {
        self.membership
            .members()
            .map(|(d, m)| (*d, m.clone()))
            .collect()
    }

    /// Admits `device` to the book with `role` and a human name ("Ada's iPad"), or widens its
    /// role: an admin's signed membership op, saved like any other. The device's ops are
    /// accepted everywhere once this op has reached them.
    pub fn add_member(
        &mut self,
        device: DeviceId,
        role: MemberRole,
        name: &str,
    ) -> Result<OpId, Error> {
        if let Some(member) = self.membership.member(&device) {
            if member.removed.is_some() {
                return Err(MemberError::Removed { device }.into());
            }
            if member.role.rank() >= role.rank() {
                return Err(MemberError::AlreadyMember {
                    device,
                    role: member.role,
                }
                .into());
            }
        }
        let op = self.write_members(vec![MemberChange::Add {
            device,
            role,
            name: name.to_owned(),
        }])?;
        Ok(op.id())
    }

    /// Removes `device` from the book: its ops after the last one held here are void
    /// everywhere, and it is never admitted again.
    pub fn remove_member(&mut self, device: DeviceId) -> Result<OpId, Error> {
        if device == self.id() {
            return Err(MemberError::Yourself.into());
        }
        match self.membership.member(&device) {
            None => return Err(MemberError::NotMember { device }.into()),
            Some(m) if m.removed.is_some() => return Err(MemberError::Removed { device }.into()),
            Some(_) => {}
        }
        let after = self.store.summary().get(&device).map_or(0, |t| t.seq);
        let op = self.write_members(vec![MemberChange::Remove { device, after }])?;
        Ok(op.id())
    }

    /// Founds a new book for a replica that has none (a new store, or one written before
    /// books existed): this device founds it as its first admin, then adopts every format-1
    /// chain held, at its tip, so that history stays part of the book.
    pub(crate) fn found(&mut self, name: Option<String>) -> Result<(), OpenError> {
        let key = self.store.device_key().public();
        let nonce = DeviceId::random()?.0;
        let book = BookId::founded_by(&key, &nonce);
        let name = name.unwrap_or_else(|| format!("device {}", &self.id().to_string()[..8]));
        self.store.set_book(book)?;
        *self.membership = Membership::new(book);
        self.write_members(vec![MemberChange::Found { nonce, key, name }])
            .map_err(open_error)?;
        let mut adopt = Vec::new();
        let me = self.id();
        for (author, tip) in self.store.summary().clone() {
            if author == me {
                continue;
            }
            let legacy = self
                .store
                .op_by_seq(&author, tip.seq)?
                .is_some_and(|op| op.format() == cardlog_core::OpFormat::V1);
            if legacy {
                adopt.push(MemberChange::Adopt {
                    author,
                    seq: tip.seq,
                    tip: tip.op,
                });
            }
        }
        for chunk in adopt.chunks(CHANGES_PER_OP_MAX) {
            self.write_members(chunk.to_vec()).map_err(open_error)?;
        }
        self.store.flush()?;
        Ok(())
    }

    /// Writes this device's next op with `changes`, if the book lets it.
    fn write_members(&mut self, changes: Vec<MemberChange>) -> Result<SealedOp, Error> {
        let me = self.id();
        let tip = self.store.summary().get(&me).copied();
        let mut clock = self.clock.clone();
        let now = self.wall.now_ms();
        clock.check(now, self.wall.monotonic_ms());
        let hlc = clock.tick(now);
        let op = Op {
            author: me,
            seq: tip.map_or(0, |t| t.seq) + 1,
            prev: tip.map(|t| t.op),
            hlc,
            writes: Vec::new(),
            members: changes,
        }
        .seal()
        .map_err(cardlog_core::EditError::from)?;
        self.store_new(&op, clock)?;
        Ok(op)
    }

    /// Stores a new op of this device (a save or a member change, not a copy re-issued):
    /// [`Self::store_own`], unless this device knows it was removed. Then it writes nothing
    /// new (`Refusal::NoLongerMember`), even at a seq its chain went back to below its cutoff
    /// (its own edits withdrawn with a branch given up): that seq is for those edits' copies,
    /// and a save made now would count as made before the removal, while the copies would
    /// land past the cutoff and be void (seed 0xcc15e of base 835000).
    pub(crate) fn store_new(&mut self, op: &SealedOp, clock: HlcClock) -> Result<(), Error> {
        let me = self.id();
        if let Some(removal) = self.membership.member(&me).and_then(|m| m.removed) {
            return Err(Error::Refused(cardlog_core::Refusal::NoLongerMember {
                author: me,
                after: removal.after,
                by: removal.by,
            }));
        }
        self.store_own(op, clock)
    }

    /// Stores this device's op, if the book lets this device write it,
    /// and makes it durable (unless in bulk mode) before the clock moves on.
    pub(crate) fn store_own(&mut self, op: &SealedOp, clock: HlcClock) -> Result<(), Error> {
        let stored = self.store_own_unreported(op, clock);
        self.publish();
        stored
    }

    fn store_own_unreported(&mut self, op: &SealedOp, clock: HlcClock) -> Result<(), Error> {
        self.membership.check(op)?;
        // Not signed here: the store signs this device's chain when it is sent.
        match self.store.apply_all(std::slice::from_ref(op))?.pop() {
            Some(cardlog_store::OpOutcome::Stored) => {}
            other => {
                return Err(Error::Store(cardlog_store::StoreError::undecodable(
                    &format!("own chain: a local op was {other:?}"),
                )))
            }
        }
        if op.op().is_membership() {
            *self.membership = self.membership.with(op);
        }
        // A calibration the save found lapsed is stored as gone, with the op.
        if clock.anchor() != self.clock.anchor() || clock.offset_ms() != self.clock.offset_ms() {
            self.store.put_meta(
                cardlog_store::keys::meta::CLOCK,
                crate::replica::clock_record(&clock),
            )?;
        }
        self.durable()?;
        self.clock = clock;
        Ok(())
    }

    /// Which of `ops` (received, with the signatures `tips` that came with them) the book lets
    /// this replica store: see [`Membership::admit`].
    pub fn admit(&self, ops: &[SealedOp], tips: &[SignedTip]) -> Admission {
        let store = &self.store;
        let (admission, _) = self.membership.admit(ops, tips, |author, seq| {
            cardlog_core::replay::OpLookup::op_at(store, author, seq)
                .ok()
                .flatten()
        });
        admission
    }

    /// Takes what `other` (a replica of the same book, in this process) holds and this one
    /// lacks: its ops since this replica's summary, with the signatures that cover them,
    /// applied as [`Replica::apply`] does.
    pub fn pull_from(&mut self, other: &Replica) -> Result<crate::ApplyReport, Error> {
        let ops = other.ops_since(self.summary())?;
        let tips = other.signatures_for(&ops)?;
        self.apply(&ops, &tips)
    }

    /// The chain-tip signatures held here that cover `ops` (per author, the one of its last op
    /// among them): what a replica receiving `ops` from this one needs with them.
    pub fn signatures_for(&self, ops: &[SealedOp]) -> Result<Vec<SignedTip>, Error> {
        cardlog_sync::SyncStore::signatures_for(self, ops)
    }
}

/// An error founding a book, as an error opening the replica.
fn open_error(e: Error) -> OpenError {
    match e {
        Error::Store(e) => e.into(),
        Error::Random(e) => e.into(),
        other => OpenError::Refused(other.to_string()),
    }
}

impl Replica {
    /// The book's rules checked over everything held, as part of [`Replica::verify`]: every
    /// op is one the membership lets in, or void ([`Membership::standing`]: a removed
    /// device's ops after its cutoff are held without effect, however many arrived before the
    /// removal), and every author writing in op format 2 has a kept signature of its last op,
    /// under a key that is the author's, that verifies (one signature covers the chain, which
    /// the store's own check links op by op). Where what the author wrote after its last op
    /// held was withdrawn for building on a branch given up, here or where the ops held came
    /// from, the signature of the op continuing the chain covers it, with the ops up to it
    /// (a cover: [`Store::cover`]) until the author's next ops arrive. The problems, in words.
    ///
    /// [`Store::cover`]: cardlog_store::Store::cover
    pub(crate) fn audit(&self) -> Result<Vec<String>, Error> {
        let mut problems = Vec::new();
        let mut last_signed: std::collections::BTreeMap<DeviceId, (u64, OpId)> = Default::default();
        for op in self.store.ops() {
            let op = op?;
            let o = op.op();
            match self.membership.standing(&op) {
                Ok(_) | Err(cardlog_core::Refusal::Removed { .. }) => {}
                Err(refusal) => problems.push(format!("op {} of {}: {refusal}", o.seq, o.author)),
            }
            if op.format() == cardlog_core::OpFormat::V2 {
                let last = last_signed.entry(o.author).or_insert((o.seq, op.id()));
                if o.seq >= last.0 {
                    *last = (o.seq, op.id());
                }
            }
        }
        let book = self.book();
        for (author, (seq, id)) in last_signed {
            // Where what the author wrote after `id` was withdrawn for building on a branch
            // given up, the signature of that covers the chain here until it re-issues it.
            let tip = match self.store.signature(&author, seq)? {
                Some(tip) => Some(tip),
                None => self.store.cover(&author, seq, id)?.map(|(_, tip)| tip),
            };
            let Some(tip) = tip else {
                problems.push(format!(
                    "no signature of {author} is kept for its last op ({seq}): its chain is not \
                     covered"
                ));
                continue;
            };
            if tip.key.device() != author || (tip.seq == seq && tip.op != id) {
                problems.push(format!(
                    "the signature kept for op {seq} of {author} is by another key or of \
                     another op"
                ));
            } else if tip.key.verify_tip(&book, &tip.op, &tip.signature).is_err() {
                problems.push(format!(
                    "the signature kept for op {seq} of {author} does not verify"
                ));
            }
        }
        Ok(problems)
    }
}

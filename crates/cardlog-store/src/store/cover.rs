//! Covers: the ops that prove another device's ops held here when no signature kept of an op
//! held does (docs/SYNC.md, "Signatures"). One signature covers an author's chain up to the
//! op it signs, and a store takes another device's ops only up to one it can prove to a
//! peer. Where the author's ops after those held were withdrawn for building on a branch a
//! third device gave up (here, or where they came from), the signature is of a withdrawn op:
//! the ops from the one after the last held up to the signed one are the *cover*. Withdrawn
//! here, they are in the op log ([`Store::withdrawn_cover`]). A member re-issues such ops, and
//! its new ones are signed, so ops proved only by a cover just wait for them; a removed device
//! never does, so its ops (void past its cutoff; a member's edit may name them) are taken with
//! their cover
//! when a batch brings one, and the cover's ops the store cannot take (they name what was
//! given up) are kept under `mcovers`, to pass those ops on with their proof. Whether the
//! device is removed is decided under the membership with the batch's own changes.
//!
//! Who may send one: any peer of a session or bundle. The facade admits the batch first (the
//! signature verifies under the author's key in the book); here the cover's ops must link
//! from the last op stored of the author's chain to the signed one by id, so the signature
//! covers exactly their bytes. Bounded: at most [`COVER_OPS_MAX`] ops and
//! [`COVER_BYTES_MAX`] bytes each, one per author, [`COVERS_MAX`] in all; a cover kept is not
//! pushed out while it still proves the chain held, so past that the ops a new cover would
//! prove wait, as before covers were kept.

use std::collections::BTreeMap;

use cardlog_core::{DeviceId, OpId, SealedOp, SignedTip};

use super::identity::{decode_signature, signature_value};
use super::Store;
use crate::error::StoreError;
use crate::state::keys::meta;
use crate::state::kv::KvBatch;

/// Most ops of one cover kept.
pub const COVER_OPS_MAX: usize = 1024;
/// Most bytes of one cover's ops kept.
pub const COVER_BYTES_MAX: usize = 1 << 20;
/// Most covers kept (the oldest goes first).
pub const COVERS_MAX: usize = 64;

/// A cover: ops of one author's chain, in chain order, and its signature of the last.
pub type Cover = (Vec<SealedOp>, SignedTip);

impl Store {
    /// The cover of `author`'s chain held here up to its op `id` at `seq` (module docs): its
    /// withdrawn ops continuing it up to one whose signature is kept, or a cover kept with
    /// ops it proved, continuing it; `None` when there is neither. Checking the signature is
    /// the caller's.
    pub fn cover(
        &self,
        author: &DeviceId,
        seq: u64,
        id: OpId,
    ) -> Result<Option<Cover>, StoreError> {
        if let Some(cover) = self.withdrawn_cover(author, seq, id)? {
            return Ok(Some(cover));
        }
        Ok(self
            .covers()?
            .into_iter()
            .find(|(ops, tip)| tip.author == *author && continues(seq, id, ops)))
    }

    /// The covers kept under `mcovers`, in the order kept; a value that does not decode reads
    /// as none (the ops they proved are then held without proof to pass on).
    pub(super) fn covers(&self) -> Result<Vec<Cover>, StoreError> {
        Ok(self
            .meta(meta::COVERS)?
            .and_then(|v| decode_covers(&v))
            .unwrap_or_default())
    }

    /// Of a batch's ops for `author` (stored up to `head`, its id), the cover the batch
    /// brings: its ops from `head + 1` up to the one `tip` signs, each naming the one below;
    /// `None` when the batch lacks one of them or it is past the bounds.
    pub(super) fn cover_in_batch(
        batch: &BTreeMap<u64, Vec<&SealedOp>>,
        head: (u64, OpId),
        tip: &SignedTip,
    ) -> Option<Cover> {
        let mut ops: Vec<SealedOp> = Vec::new();
        let mut prev = head.1;
        let mut bytes = 0usize;
        for seq in head.0.checked_add(1)?..=tip.seq {
            let op = batch
                .get(&seq)?
                .iter()
                .find(|op| op.op().prev == Some(prev))?;
            bytes = bytes.saturating_add(op.bytes().len());
            prev = op.id();
            ops.push((*op).clone());
            if ops.len() > COVER_OPS_MAX || bytes > COVER_BYTES_MAX {
                return None;
            }
        }
        (prev == tip.op && !ops.is_empty()).then_some((ops, *tip))
    }

    /// Whether a cover of `author`'s chain can be kept beside those kept (and `new`, this
    /// batch's so far) without pushing out one that still proves the chain held: it replaces
    /// the author's own, or there are fewer than [`COVERS_MAX`].
    pub(super) fn room_for_cover(
        &self,
        author: &DeviceId,
        new: &[Cover],
    ) -> Result<bool, StoreError> {
        let mut authors: std::collections::BTreeSet<DeviceId> = self
            .live_covers()?
            .into_iter()
            .map(|(_, tip)| tip.author)
            .collect();
        authors.extend(new.iter().map(|(_, tip)| tip.author));
        Ok(authors.contains(author) || authors.len() < COVERS_MAX)
    }

    /// The covers kept that still continue the chain held (their author's later ops have not
    /// arrived).
    fn live_covers(&self) -> Result<Vec<Cover>, StoreError> {
        Ok(self
            .covers()?
            .into_iter()
            .filter(|(ops, tip)| {
                self.summary
                    .get(&tip.author)
                    .is_some_and(|h| continues(h.seq, h.op, ops))
            })
            .collect())
    }

    /// Adds `new` covers (each in place of one of the same author kept before) to `batch`,
    /// dropping those that no longer continue the chain held ([`Self::room_for_cover`] saw
    /// to the bound).
    pub(super) fn keep_covers(
        &self,
        new: Vec<Cover>,
        batch: &mut KvBatch,
    ) -> Result<(), StoreError> {
        if new.is_empty() {
            return Ok(());
        }
        let mut all: Vec<Cover> = self
            .live_covers()?
            .into_iter()
            .filter(|(_, tip)| !new.iter().any(|(_, t)| t.author == tip.author))
            .collect();
        all.extend(new);
        batch.insert(meta::COVERS.to_vec(), encode_covers(&all));
        Ok(())
    }
}

/// Whether `ops` continue a chain from its op `id` at `seq`: seqs `seq + 1`, … each naming
/// the one before, the first naming `id`.
fn continues(seq: u64, id: OpId, ops: &[SealedOp]) -> bool {
    let mut at = (seq, id);
    for op in ops {
        let o = op.op();
        if Some(o.seq) != at.0.checked_add(1) || o.prev != Some(at.1) {
            return false;
        }
        at = (o.seq, op.id());
    }
    !ops.is_empty()
}

/// `mcovers`' value: per cover, the author (16 bytes), its signature as an `s` value (op id,
/// key, signature: 128 bytes), the number of ops (u32 BE), then each op as its length (u32 BE)
/// and its bytes.
fn encode_covers(all: &[Cover]) -> Vec<u8> {
    let mut v = Vec::new();
    for (ops, tip) in all {
        v.extend_from_slice(&tip.author.0);
        v.extend_from_slice(&signature_value(tip));
        v.extend_from_slice(&(ops.len() as u32).to_be_bytes());
        for op in ops {
            v.extend_from_slice(&(op.bytes().len() as u32).to_be_bytes());
            v.extend_from_slice(op.bytes());
        }
    }
    v
}

/// The covers [`encode_covers`] wrote, each op decoded strictly (re-hashed) and the signature
/// of the last; `None` when the value does not read so.
fn decode_covers(mut v: &[u8]) -> Option<Vec<Cover>> {
    fn take<'a>(v: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
        let (head, rest) = (v.get(..n)?, v.get(n..)?);
        *v = rest;
        Some(head)
    }
    let u32_at = |v: &mut &[u8]| -> Option<usize> {
        Some(u32::from_be_bytes(take(v, 4)?.try_into().ok()?) as usize)
    };
    let mut all = Vec::new();
    while !v.is_empty() {
        let author = DeviceId(take(&mut v, 16)?.try_into().ok()?);
        let signature = take(&mut v, 128)?;
        let n = u32_at(&mut v)?;
        if n == 0 || n > COVER_OPS_MAX {
            return None;
        }
        let mut ops = Vec::with_capacity(n);
        for _ in 0..n {
            let len = u32_at(&mut v)?;
            ops.push(cardlog_core::sealed::decode_op(take(&mut v, len)?).ok()?);
        }
        let last = ops.last()?;
        let tip = decode_signature(author, last.op().seq, signature)?;
        if tip.op != last.id() || last.op().author != author {
            return None;
        }
        all.push((ops, tip));
    }
    Some(all)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]

    use std::sync::Arc;

    use cardlog_core::{BookId, Contact, ContactId, Device, DeviceKey, FakeClock, Field};

    use super::*;

    /// Two ops of device `22…22`'s chain (a contact, then a note on it) and its signature of
    /// the second, all deterministic.
    fn cover() -> Cover {
        let author = DeviceId([0x22; 16]);
        let mut device = Device::new(author, Arc::new(FakeClock::new(1_795_338_000_000)));
        let mut contact = Contact::new(ContactId([0xc1; 16]));
        contact.set(Field::Given, "Ada");
        let first = device.create(&contact).unwrap();
        let note = device
            .edit(contact.id, |c| {
                c.set(Field::Note, "met at the conference");
            })
            .unwrap()
            .unwrap();
        let key = DeviceKey::from_seed(&[0x22; 32]);
        let tip = SignedTip {
            author,
            key: key.public(),
            seq: note.op().seq,
            op: note.id(),
            signature: key.sign_tip(&BookId([0xb0; 16]), &note.id()),
        };
        (vec![first, note], tip)
    }

    #[test]
    fn covers_are_written_as_docs_format_lays_them_out_and_read_back() {
        let (ops, tip) = cover();
        let bytes = encode_covers(&[(ops.clone(), tip)]);
        // The author, the signature as an `s` value, the count, then each op's length and bytes.
        let mut want = tip.author.0.to_vec();
        want.extend_from_slice(&signature_value(&tip));
        want.extend_from_slice(&2u32.to_be_bytes());
        for op in &ops {
            want.extend_from_slice(&(op.bytes().len() as u32).to_be_bytes());
            want.extend_from_slice(op.bytes());
        }
        assert_eq!(bytes, want);
        assert_eq!(decode_covers(&bytes), Some(vec![(ops.clone(), tip)]));
        assert_eq!(decode_covers(&[]), Some(Vec::new()));
        assert!(!continues(0, OpId([0; 32]), &[]));
        assert!(continues(1, ops[0].id(), &ops[1..]));
        assert!(
            !continues(1, ops[1].id(), &ops[1..]),
            "names another op below"
        );
        assert!(!continues(2, ops[0].id(), &ops[1..]), "another seq");
    }

    #[test]
    fn a_cover_that_does_not_read_back_whole_is_none() {
        let (ops, tip) = cover();
        let bytes = encode_covers(&[(ops.clone(), tip)]);
        // Cut anywhere.
        for n in [1, 16, 100, 144, 148, bytes.len() - 1] {
            assert_eq!(decode_covers(&bytes[..n]), None, "cut at {n}");
        }
        // A signature of another op than the last, an op altered, no ops, too many ops.
        let mut other = bytes.clone();
        other[16] ^= 1;
        assert_eq!(decode_covers(&other), None);
        let mut altered = bytes.clone();
        let last = altered.len() - 1;
        altered[last] ^= 1;
        assert_eq!(decode_covers(&altered), None);
        for n in [0u32, COVER_OPS_MAX as u32 + 1] {
            let mut count = bytes.clone();
            count[144..148].copy_from_slice(&n.to_be_bytes());
            assert_eq!(decode_covers(&count), None, "{n} ops");
        }
        // Another author's op under this author's name.
        let mut renamed = bytes;
        renamed[0] ^= 1;
        assert_eq!(decode_covers(&renamed), None);
    }
}

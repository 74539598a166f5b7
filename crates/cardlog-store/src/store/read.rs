//! Reading: contacts, conflicts, history and state bytes from the registers; ops from the log
//! by id, by author and seq, or since a peer's summary (through the log index).

use cardlog_core::replay::{
    field_conflict, write_state, ChainTip, ContactView, FieldConflict, HistoryEntry, RegisterWrite,
    Summary,
};
use cardlog_core::{ContactId, DeviceId, IdPrefix, OpId, Path, SealedOp};

use std::ops::ControlFlow;

use super::Store;
use crate::error::StoreError;
use crate::state::keys::{self, ContactRegisters};
use cardlog_core::replay::view_of;

impl Store {
    /// Reads a meta value.
    pub fn meta(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.held.get(&*self.kv, key)?)
    }

    /// The facade's record of one sync peer, if it has one (`p` + its id).
    pub fn peer_record(&self, peer: &DeviceId) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.held.get(&*self.kv, &keys::peer(peer))?)
    }

    /// Every sync peer's record, in id order.
    pub fn peer_records(&self) -> Result<Vec<(DeviceId, Vec<u8>)>, StoreError> {
        self.held
            .scan_prefix(&*self.kv, &[keys::PEER])
            .map(|pair| {
                let (k, v) = pair?;
                Ok((keys::parse_peer(&k)?, v))
            })
            .collect()
    }

    /// A contact as apps read it (deleted or not); `None` if never written.
    pub fn contact(&self, id: &ContactId) -> Result<Option<ContactView>, StoreError> {
        let registers = self.contact_registers(id)?;
        if registers.is_empty() {
            return Ok(None);
        }
        Ok(Some(view_of(*id, &registers)))
    }

    /// Every register, grouped by contact in id order.
    pub(super) fn for_each_contact(
        &self,
        mut f: impl FnMut(ContactId, ContactRegisters),
    ) -> Result<(), StoreError> {
        self.contacts_kept()?;
        for pair in self.held.scan_prefix(&*self.kv, &[keys::CONTACT]) {
            let (k, v) = pair?;
            f(keys::parse_contact(&k)?, keys::parse_contact_value(&v)?);
        }
        Ok(())
    }

    /// Every contact in id order, one at a time (deleted ones only when asked), until `f`
    /// breaks: memory holds one contact, not the store.
    pub fn each_contact(
        &self,
        include_deleted: bool,
        mut f: impl FnMut(ContactView) -> ControlFlow<()>,
    ) -> Result<(), StoreError> {
        self.contacts_kept()?;
        for pair in self.held.scan_prefix(&*self.kv, &[keys::CONTACT]) {
            let (k, v) = pair?;
            let view = view_of(keys::parse_contact(&k)?, &keys::parse_contact_value(&v)?);
            if (include_deleted || !view.deleted) && f(view).is_break() {
                break;
            }
        }
        Ok(())
    }

    /// Every contact in id order; deleted ones only when asked.
    pub fn contacts(&self, include_deleted: bool) -> Result<Vec<ContactView>, StoreError> {
        let mut out = Vec::new();
        self.for_each_contact(|id, registers| {
            let view = view_of(id, &registers);
            if include_deleted || !view.deleted {
                out.push(view);
            }
        })?;
        Ok(out)
    }

    /// Every conflicted path of every contact.
    pub fn conflicts(&self) -> Result<Vec<(ContactId, FieldConflict)>, StoreError> {
        let mut out = Vec::new();
        self.for_each_contact(|id, registers| {
            let mut conflicts: Vec<FieldConflict> = registers
                .iter()
                .filter_map(|(p, (_, h))| field_conflict(p, h))
                .collect();
            conflicts.sort_by(|a, b| a.path.cmp(&b.path));
            out.extend(conflicts.into_iter().map(|c| (id, c)));
        })?;
        Ok(out)
    }

    /// Every value a path has had, oldest first (in the order that decides the visible
    /// value). Writes of void ops are not among them.
    pub fn history(
        &self,
        contact: &ContactId,
        path: &Path,
    ) -> Result<Vec<HistoryEntry>, StoreError> {
        let heads = self.heads(contact, path)?;
        let mut writes = Vec::new();
        for at in self.contact_index()?.contact(contact) {
            let record = self.log.read(*at)?;
            let op = record.decode_trusted()?;
            // A void op's writes never took effect: no part of any value's history.
            if self.cutoffs.voids(&op.author, op.seq) {
                continue;
            }
            for w in op
                .writes
                .iter()
                .filter(|w| w.contact == *contact && w.path == *path)
            {
                writes.push(RegisterWrite::of(&op, record.id, w));
            }
        }
        writes.sort_by_key(|w| w.key);
        Ok(writes
            .iter()
            .map(|w| HistoryEntry::of(w, heads.is_head(&w.key.op)))
            .collect())
    }

    /// Every path of a contact that has been written.
    pub fn paths(&self, contact: &ContactId) -> Result<Vec<Path>, StoreError> {
        Ok(self.contact_registers(contact)?.into_keys().collect())
    }

    /// The canonical state bytes (equal to [`cardlog_core::Replay::state_bytes`] for the same
    /// ops).
    pub fn state_bytes(&self) -> Result<Vec<u8>, StoreError> {
        let mut out = Vec::new();
        self.write_state(&mut out)?;
        Ok(out)
    }

    /// The blake3 hash of [`Store::state_bytes`] (equal to
    /// [`cardlog_core::Replay::state_digest`] for the same ops), computed one contact at a
    /// time: what comparing two large stores should use.
    pub fn state_digest(&self) -> Result<[u8; 32], StoreError> {
        let mut hasher = blake3::Hasher::new();
        self.write_state(&mut hasher)?;
        Ok(*hasher.finalize().as_bytes())
    }

    /// Writes the state rows contact by contact (contacts in id order, paths in order within
    /// each: the order of the whole state).
    fn write_state(&self, out: &mut impl std::io::Write) -> Result<(), StoreError> {
        self.for_each_contact(|id, registers| {
            write_state(
                registers
                    .iter()
                    .map(|(path, (writes, heads))| (id, path, heads, *writes)),
                out,
            );
        })
    }

    /// Up to `limit` contacts whose id starts with `prefix`, in id order (for unique-prefix
    /// lookups: more than one is ambiguous).
    pub fn contacts_matching(
        &self,
        prefix: &IdPrefix,
        limit: usize,
    ) -> Result<Vec<ContactId>, StoreError> {
        self.contacts_kept()?;
        let mut start = vec![keys::CONTACT];
        start.extend(prefix.whole_bytes());
        let mut out: Vec<ContactId> = Vec::new();
        for pair in self.held.scan_prefix(&*self.kv, &start) {
            let (k, _) = pair?;
            let contact = keys::parse_contact(&k)?;
            if contact.matches(prefix) {
                if out.len() == limit {
                    break;
                }
                out.push(contact);
            }
        }
        Ok(out)
    }

    /// Up to `limit` ops whose id starts with `prefix`, in id order.
    pub fn ops_matching(&self, prefix: &IdPrefix, limit: usize) -> Result<Vec<OpId>, StoreError> {
        let whole = prefix.whole_bytes();
        let index = self.index()?;
        let candidates = index.id_candidates(|first| {
            if prefix.len() <= 16 {
                prefix.matches(first)
            } else {
                whole.get(..8) == Some(first.as_slice())
            }
        });
        let mut out = Vec::new();
        for at in candidates {
            let id = self.log.id_at(at)?;
            if prefix.matches(&id.0) {
                out.push(id);
            }
        }
        out.sort();
        out.dedup();
        out.truncate(limit);
        Ok(out)
    }

    /// The op stored at `offset`, strictly decoded and checked against its recorded id.
    fn op_at_offset(&self, offset: u64) -> Result<SealedOp, StoreError> {
        let record = self.log.read(offset)?;
        Ok(record.seal()?)
    }

    /// The op with this id.
    pub fn op(&self, id: &OpId) -> Result<Option<SealedOp>, StoreError> {
        let Some((at, _)) = self.index()?.candidate(id) else {
            return Ok(None);
        };
        // One read: the record's id tells whether the candidate is the op.
        let record = self.log.read(at)?;
        if record.id != *id {
            return Ok(None);
        }
        Ok(Some(record.seal()?))
    }

    /// `author`'s chain as this store held it when its op log was `at` bytes long
    /// ([`Store::log_len`]): the tip of the part of the chain stored before that byte, `None`
    /// if none was. An op is always stored after the op before it in its chain, so that part
    /// is a prefix of the chain. Costs no read when the whole chain was held by then, one op
    /// read otherwise.
    pub fn tip_before(&self, author: &DeviceId, at: u64) -> Result<Option<ChainTip>, StoreError> {
        let Some(head) = self.summary.get(author) else {
            return Ok(None);
        };
        let chain = self.index()?.seq_range(author, 1, head.seq);
        let held = chain.partition_point(|&offset| offset < at);
        if held == chain.len() && chain.len() as u64 == head.seq {
            return Ok(Some(*head));
        }
        let Some(&offset) = held.checked_sub(1).and_then(|i| chain.get(i)) else {
            return Ok(None);
        };
        let op = self.op_at_offset(offset)?;
        Ok(Some(ChainTip {
            seq: op.op().seq,
            op: op.id(),
            hlc: op.op().hlc,
        }))
    }

    /// The op `author` wrote at `seq`, if held.
    pub fn op_by_seq(&self, author: &DeviceId, seq: u64) -> Result<Option<SealedOp>, StoreError> {
        if self.summary.get(author).is_none_or(|h| seq > h.seq) {
            return Ok(None);
        }
        match self.index()?.at_seq(author, seq) {
            Some(at) => Ok(Some(self.op_at_offset(at)?)),
            None => Err(StoreError::damaged(format!(
                "op log: {author} seq {seq} is below its head but not in the log"
            ))),
        }
    }

    /// The ops a peer with `summary` lacks, in an order where dependencies come first (the
    /// log's). Work is proportional to what is sent, not to the history.
    pub fn ops_since(&self, summary: &Summary) -> Result<Vec<SealedOp>, StoreError> {
        // Offsets the index just gave: no need for `ops_at_offsets`' check of each.
        self.offsets_since(summary)?
            .into_iter()
            .map(|at| self.op_at_offset(at))
            .collect()
    }

    /// Where the ops [`Store::ops_since`] returns are in the op log, in the same order: a
    /// sender keeps only these 8 bytes per op and reads a message's worth at a time with
    /// [`Store::ops_at_offsets`].
    pub fn offsets_since(&self, summary: &Summary) -> Result<Vec<u64>, StoreError> {
        let mut offsets = Vec::new();
        for (author, head) in &self.summary {
            let from = summary.get(author).map_or(0, |h| h.seq) + 1;
            if from > head.seq {
                continue;
            }
            // (Only when something is lacking: a peer that holds everything costs no index.)
            let found = self.index()?.seq_range(author, from, head.seq);
            if found.len() as u64 != head.seq - from + 1 {
                return Err(StoreError::damaged(format!(
                    "op log: {author} seqs {from}..={} are not all in the log",
                    head.seq
                )));
            }
            offsets.extend_from_slice(found);
        }
        offsets.sort_unstable();
        Ok(offsets)
    }

    /// The ops at these offsets of the op log (as [`Store::offsets_since`] gives them), each
    /// strictly decoded. An offset where no op of this store starts is an error, not a guess.
    pub fn ops_at_offsets(&self, offsets: &[u64]) -> Result<Vec<SealedOp>, StoreError> {
        let index = self.index()?;
        offsets
            .iter()
            .map(|&at| {
                let op = self.op_at_offset(at)?;
                let (author, seq) = (op.op().author, op.op().seq);
                if index.seq_range(&author, seq, seq) != [at] {
                    return Err(StoreError::Damaged {
                        what: format!(
                            "byte {at} of the op log holds a record that is not {author}'s op {seq}"
                        ),
                        offset: Some(at),
                    });
                }
                Ok(op)
            })
            .collect()
    }

    /// Every op in the order it was applied, strictly decoded (withdrawn ones left out).
    pub fn ops(&self) -> impl Iterator<Item = Result<SealedOp, StoreError>> + '_ {
        self.log
            .scan(0, self.log.len())
            .filter_map(|record| match record {
                Ok(record) if self.withdrawn.offsets.contains(&record.offset) => None,
                Ok(record) => Some(record.seal().map_err(StoreError::from)),
                Err(e) => Some(Err(e.into())),
            })
    }
}

//! Staging: many ops checked and turned into one atomic batch of key/value writes.
//!
//! A [`Stage`] layers what it has staged over the store's committed keys, so the check of each
//! op sees the ops staged before it (a chain delivered in one bundle applies in one batch), and
//! each register touched by several ops is read once and written once. Single saves, bulk
//! imports and `rebuild` all go through it, so there is one write path.

use std::collections::{BTreeMap, HashMap, HashSet};

use cardlog_core::replay::{
    check_op, ChainHead, Heads, OpLookup, Readiness, RegisterWrite, WriteKey,
};
use cardlog_core::{ContactId, OpId, Path, ReplicaId, SealedOp};

use crate::error::StoreError;
use crate::keys::{self, Located};
use crate::kv::KvBatch;
use crate::store::Store;

/// Ops staged over a store, not yet written.
pub(crate) struct Stage<'s> {
    store: &'s Store,
    batch: KvBatch,
    index: HashMap<OpId, Located>,
    log: HashMap<(ReplicaId, u64), OpId>,
    heads: BTreeMap<ReplicaId, ChainHead>,
    registers: HashMap<Vec<u8>, (u64, Heads)>,
    writes: HashSet<Vec<u8>>,
    next_order: u64,
    staged: usize,
}

impl<'s> Stage<'s> {
    pub(crate) fn new(store: &'s Store) -> Self {
        Self {
            store,
            batch: KvBatch::default(),
            index: HashMap::new(),
            log: HashMap::new(),
            heads: BTreeMap::new(),
            registers: HashMap::new(),
            writes: HashSet::new(),
            next_order: store.op_count(),
            staged: 0,
        }
    }

    /// Number of ops staged.
    pub(crate) fn len(&self) -> usize {
        self.staged
    }

    /// Checks `sealed` against the store and what is staged; when it is ready, stages its log
    /// entry, index entries, author head and state changes.
    pub(crate) fn add_op(&mut self, sealed: &SealedOp) -> Result<Readiness, StoreError> {
        let readiness = check_op(&*self, sealed)?;
        if readiness != Readiness::Ready {
            return Ok(readiness);
        }
        let op = sealed.op();
        let id = sealed.id();
        let order = self.next_order;
        let head = ChainHead {
            seq: op.seq,
            op: id,
            hlc: op.hlc,
        };
        let at = Located {
            author: op.author,
            seq: op.seq,
            hlc: op.hlc,
        };
        self.batch.insert(
            keys::log(&op.author, op.seq),
            keys::log_value(order, sealed.bytes()),
        );
        self.batch.insert(keys::index(&id), keys::index_value(&at));
        self.batch
            .insert(keys::order(order), keys::order_value(&op.author, op.seq));
        self.index.insert(id, at);
        self.log.insert((op.author, op.seq), id);
        self.heads.insert(op.author, head);
        self.next_order += 1;
        self.add_state(sealed)?;
        Ok(Readiness::Ready)
    }

    /// Stages only the state changes of an op already in the log (rebuild), unchecked.
    pub(crate) fn add_state(&mut self, sealed: &SealedOp) -> Result<(), StoreError> {
        let op = sealed.op();
        for w in &op.writes {
            let write = RegisterWrite {
                key: WriteKey {
                    hlc: op.hlc,
                    author: op.author,
                    op: sealed.id(),
                },
                seq: op.seq,
                value: w.value.clone(),
                replaces: w.replaces.clone(),
            };
            let write_key = keys::write(&w.contact, &w.path, &write.key);
            self.batch.insert(write_key.clone(), keys::encode(&write));
            self.writes.insert(write_key);
            let heads_key = keys::heads(&w.contact, &w.path);
            let register = match self.registers.get_mut(&heads_key) {
                Some(r) => r,
                None => {
                    let r = self.store.register_at(&heads_key)?;
                    self.registers.entry(heads_key).or_insert(r)
                }
            };
            register.0 += 1;
            register.1.apply(write);
        }
        self.staged += 1;
        Ok(())
    }

    /// The batch to apply, the author heads it changes and the next application order.
    pub(crate) fn finish(mut self) -> (KvBatch, BTreeMap<ReplicaId, ChainHead>, u64) {
        // Each author's head once, however many of its ops the batch holds.
        for (author, head) in &self.heads {
            self.batch.insert(keys::author(author), keys::encode(head));
        }
        for (key, (writes, heads)) in self.registers.drain() {
            self.batch.insert(key, keys::heads_value(writes, &heads));
        }
        (self.batch, self.heads, self.next_order)
    }
}

impl OpLookup for Stage<'_> {
    type Error = StoreError;

    fn contains(&self, op: &OpId) -> Result<bool, StoreError> {
        Ok(self.index.contains_key(op) || self.store.contains(op)?)
    }

    fn chain_head(&self, author: &ReplicaId) -> Result<Option<ChainHead>, StoreError> {
        match self.heads.get(author) {
            Some(h) => Ok(Some(*h)),
            None => self.store.chain_head(author),
        }
    }

    fn op_at(&self, author: &ReplicaId, seq: u64) -> Result<Option<OpId>, StoreError> {
        match self.log.get(&(*author, seq)) {
            Some(id) => Ok(Some(*id)),
            None => self.store.op_at(author, seq),
        }
    }

    fn wrote_at(
        &self,
        op: &OpId,
        contact: &ContactId,
        path: &Path,
    ) -> Result<Option<bool>, StoreError> {
        match self.index.get(op) {
            Some(at) => {
                let key = WriteKey {
                    hlc: at.hlc,
                    author: at.author,
                    op: *op,
                };
                Ok(Some(
                    self.writes.contains(&keys::write(contact, path, &key)),
                ))
            }
            None => self.store.wrote_at(op, contact, path),
        }
    }
}

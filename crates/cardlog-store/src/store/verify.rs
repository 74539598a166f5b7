//! `verify` (the log re-derived and compared with the stored state) and `rebuild` (the
//! registers rewritten from the log, behind a durable mark that `open` finishes).

use std::collections::BTreeMap;
use std::sync::OnceLock;

use super::derive::{Derived, Progress, Registers};
use super::names::{names_mark, wanted_names};
use super::Store;
use super::VerifyReport;
use crate::error::StoreError;
use crate::state::contact_value;
use crate::state::keys::{self, meta, ContactRegisters};
use crate::state::kv::{KvBatch, KvError};

/// Writes per sled batch when `rebuild` repairs the registers.
const REBUILD_CHUNK: usize = 16_384;

impl Store {
    /// Re-hashes every op, checks every chain, rebuilds the registers from the log and compares
    /// them, the author heads and the watermark with the stored ones.
    pub fn verify(&self) -> Result<VerifyReport, StoreError> {
        self.verify_with(&mut |_| {})
    }

    /// [`Store::verify`], reporting how many ops it has checked every few thousand.
    pub fn verify_with(
        &self,
        progress: &mut dyn FnMut(Progress),
    ) -> Result<VerifyReport, StoreError> {
        let (mut derived, _) = self.derive_settled(progress, false)?;
        self.keep_registers(&mut derived);
        let mut problems = std::mem::take(&mut derived.problems);
        if self.recovery.state_ahead_of_log {
            if let Some(why) = &self.poisoned {
                problems.push(why.clone());
            }
        }
        if let Some(why) = &self.recovery.damaged_tail {
            problems.push(format!(
                "op log past the registers' watermark: {why} (the store is read-only)"
            ));
        }
        if derived.ops != self.ops {
            problems.push(format!(
                "{} ops in the op log but {} counted by the registers' watermark",
                derived.ops, self.ops
            ));
        }
        match self.held.get(&*self.kv, meta::APPLIED)? {
            Some(v)
                if keys::decode::<(u64, u64)>(&v, "applied watermark").ok()
                    == Some((self.ops, self.log.len())) => {}
            _ => problems.push("the registers' watermark disagrees with the op log".into()),
        }
        if self.held.get(&*self.kv, meta::REBUILDING)?.is_some() {
            problems.push("a rebuild was interrupted (reopen the store to finish it)".into());
        }
        let mut stored_heads = BTreeMap::new();
        for pair in self.held.scan_prefix(&*self.kv, &[keys::AUTHOR]) {
            let (k, v) = pair?;
            match keys::parse_author(&k, &v) {
                Ok((author, head)) => {
                    stored_heads.insert(author, head);
                }
                Err(e) => problems.push(e.to_string()),
            }
        }
        if derived.tips != stored_heads {
            problems.push("author heads (summary) disagree with the log".into());
        }
        let mut stored = Registers::new();
        for pair in self.held.scan_prefix(&*self.kv, &[keys::CONTACT]) {
            let (k, v) = pair?;
            match keys::parse_contact(&k) {
                Ok(contact) => match keys::parse_contact_value(&v) {
                    Ok(registers) => {
                        stored.insert(contact, registers);
                    }
                    Err(e) => problems.push(format!("registers of contact {contact}: {e}")),
                },
                Err(e) => problems.push(format!("register: {e}")),
            }
        }
        let mut stored_membership = BTreeMap::new();
        for pair in self.held.scan_prefix(&*self.kv, &[keys::MEMBERSHIP]) {
            let (k, v) = pair?;
            stored_membership.insert(k, v);
        }
        // Either form names the op ([`keys::membership_value`]): a relay's book written
        // before session 38 holds the bytes, one written since the offsets.
        let same = stored_membership.len() == derived.membership.len()
            && derived.membership.iter().all(|(id, (offset, bytes))| {
                stored_membership
                    .get(&keys::membership(id))
                    .is_some_and(|v| v == bytes || keys::membership_offset(v) == Some(*offset))
            });
        if !same {
            problems.push("the membership ops kept disagree with the log".into());
        }
        if self
            .held
            .scan_prefix(&*self.kv, &[keys::HEADS_V2])
            .next()
            .is_some()
        {
            problems.push("format-2 register keys are left in the database".into());
        }
        if self.names_indexed()? {
            let mut stored_names = BTreeMap::new();
            for prefix in [keys::NAME, keys::NAME_OF, keys::WIDTH] {
                for pair in self.held.scan_prefix(&*self.kv, &[prefix]) {
                    let (k, v) = pair?;
                    stored_names.insert(k, v);
                }
            }
            if stored_names != wanted_names(&derived.registers) {
                problems.push("the name index disagrees with the registers (run rebuild)".into());
            }
        }
        let none = ContactRegisters::new();
        let mut registers = 0u64;
        for (contact, derived_paths) in &derived.registers {
            registers += derived_paths.len() as u64;
            let stored_paths = stored.get(contact).unwrap_or(&none);
            if stored_paths == derived_paths {
                continue;
            }
            for (path, value) in derived_paths {
                if stored_paths.get(path) != Some(value) {
                    problems.push(format!("register {contact}/{path} differs from the log"));
                }
            }
        }
        for (contact, stored_paths) in &stored {
            let derived_paths = derived.registers.get(contact).unwrap_or(&none);
            for path in stored_paths
                .keys()
                .filter(|p| !derived_paths.contains_key(*p))
            {
                problems.push(format!("register {contact}/{path} has no write in the log"));
            }
        }
        Ok(VerifyReport {
            ops: derived.ops,
            authors: derived.tips.len(),
            registers,
            problems,
        })
    }

    /// Makes the registers and author heads those derived from the log, writing only what
    /// differs. Returns the number of ops replayed.
    ///
    /// The whole log is read and checked (every op decodes strictly and hashes to its id)
    /// before anything is written: a damaged log is reported and the state is left as it was.
    /// A `rebuilding` mark is made durable before the first write and removed by the last, so
    /// a crash midway leaves a store whose next [`Store::open`] finishes the rebuild. A failure
    /// once the state is being replaced poisons the store; the mark makes the next open retry.
    pub fn rebuild(&mut self) -> Result<u64, StoreError> {
        self.rebuild_with(&mut |_| {})
    }

    /// [`Store::rebuild`], reporting progress in ops replayed.
    pub fn rebuild_with(&mut self, progress: &mut dyn FnMut(Progress)) -> Result<u64, StoreError> {
        // A log shorter than the registers is the one poisoning rebuild may clear.
        if !self.recovery.state_ahead_of_log {
            self.writable()?;
        }
        self.rebuild_unchecked(progress)
    }

    /// [`Store::rebuild_with`] without asking whether the store takes writes: what a
    /// read-only open runs on its registers in memory when the log's membership voids ops it
    /// replayed.
    pub(super) fn rebuild_unchecked(
        &mut self,
        progress: &mut dyn FnMut(Progress),
    ) -> Result<u64, StoreError> {
        // Rebuild compares with (and rewrites) what sled holds: nothing may be held back.
        // (Only a writable store holds anything back.)
        if !self.held.is_empty() {
            self.settle()?;
        }
        let (mut derived, cutoffs) = self.derive_settled(progress, true)?;
        self.keep_registers(&mut derived);
        if derived.broken {
            return Err(StoreError::damaged(
                derived
                    .problems
                    .first()
                    .cloned()
                    .unwrap_or_else(|| "op log".into()),
            ));
        }
        self.rebuild_state(&derived).map_err(|e| {
            if self.poisoned.is_none() {
                self.poisoned = Some(format!("rebuild failed: {e}"));
                self.write_failed = true;
            }
            e
        })?;
        if self.recovery.state_ahead_of_log {
            self.recovery.state_ahead_of_log = false;
            self.poisoned = None;
            self.forget_places_past_log()?;
        }
        self.ops = derived.ops;
        self.cutoffs = cutoffs;
        self.summary = std::mem::take(&mut derived.tips);
        if let Some(index) = derived.index.take() {
            self.index = OnceLock::from(index);
            // Built again on its next use, from the log as it is now.
            self.by_contact = OnceLock::new();
        }
        progress(Progress {
            done: derived.ops,
            total: derived.ops,
        });
        Ok(derived.ops)
    }

    /// After a rebuild accepted an op log cut shorter than the registers covered, removes,
    /// durably, what names places in the log as it was: every sync peer's record (and the
    /// record of before them, `mpeers`), whose acknowledgements would cover what is written
    /// there next, and the withdrawn and re-issue offsets past the log's end, which would
    /// make the op appended there next read as withdrawn (left out of the index, of every
    /// later rebuild and of `ops`).
    fn forget_places_past_log(&mut self) -> Result<(), StoreError> {
        self.writable()?;
        let end = self.log.len();
        let mut batch = KvBatch::default();
        let peers: Result<Vec<_>, KvError> = self
            .held
            .scan_prefix(&*self.kv, &[keys::PEER])
            .map(|pair| pair.map(|(k, _)| k))
            .collect();
        for k in peers.map_err(|e| self.poison(e))? {
            batch.remove(k);
        }
        batch.remove(meta::PEERS.to_vec());
        for name in [meta::WITHDRAWN, meta::REISSUE] {
            let offsets = self.offsets(name)?;
            let kept: Vec<u64> = offsets.iter().copied().filter(|o| *o < end).collect();
            if kept.len() == offsets.len() {
                continue;
            }
            if kept.is_empty() {
                batch.remove(name.to_vec());
            } else {
                batch.insert(name.to_vec(), super::withdraw::encode_offsets(&kept));
            }
        }
        self.kv.apply(batch).map_err(|e| self.poison(e))?;
        self.kv.flush().map_err(|e| self.poison(e))?;
        self.withdrawn.offsets.retain(|o| *o < end);
        self.withdrawn.ids.retain(|_, o| *o < end);
        Ok(())
    }

    /// Drops the registers derived from the log where the store keeps none: it is to hold
    /// none (`verify` names any it has; `rebuild` removes them).
    fn keep_registers(&self, derived: &mut Derived) {
        if self.keeps == super::Keeps::OpsOnly {
            derived.registers.clear();
        }
    }

    fn rebuild_state(&mut self, derived: &Derived) -> Result<(), StoreError> {
        // The new watermark covers the whole log: it must be on disk first.
        if let Err(e) = self.log.sync() {
            return Err(self.poison_log(e));
        }
        self.kv
            .apply({
                let mut b = KvBatch::default();
                b.insert(meta::REBUILDING.to_vec(), vec![1]);
                // Any contact may change without a new op: change cursors of before this
                // rebuild cannot answer (`changes.rs`). Bumped first, so a crash midway
                // cannot leave the state changed under an old epoch.
                b.insert(meta::EPOCH.to_vec(), keys::encode(&(self.epoch + 1)));
                // The name index is rewritten in chunks too: pages read every contact until
                // the last batch marks it complete again.
                b.remove(meta::NAMES.to_vec());
                b
            })
            .map_err(|e| self.poison(e))?;
        self.kv.flush().map_err(|e| self.poison(e))?;
        self.epoch += 1;
        let tracking = self.tracks_changes();
        let mut wanted: BTreeMap<Vec<u8>, Vec<u8>> = derived
            .registers
            .iter()
            .map(|(contact, registers)| (keys::contact(contact), keys::contact_value(registers)))
            .collect();
        wanted.extend(wanted_names(&derived.registers));
        for (author, head) in &derived.tips {
            wanted.insert(keys::author(author), keys::encode(head));
        }
        let keeps = self.keeps == super::Keeps::Contacts;
        for (id, (offset, bytes)) in &derived.membership {
            wanted.insert(
                keys::membership(id),
                keys::membership_value(keeps, *offset, bytes),
            );
        }
        let mut batch = KvBatch::default();
        // Format-2 register keys never belong in format 3: any left are removed too.
        for prefix in [
            keys::AUTHOR,
            keys::CONTACT,
            keys::HEADS_V2,
            keys::MEMBERSHIP,
            keys::NAME,
            keys::NAME_OF,
            keys::WIDTH,
        ] {
            let pairs: Result<Vec<_>, KvError> =
                self.held.scan_prefix(&*self.kv, &[prefix]).collect();
            let pairs = pairs.map_err(|e| self.poison(e))?;
            for (k, v) in pairs {
                match wanted.remove(&k) {
                    Some(want) if want == v => {}
                    // A value still in format 5's encoding that holds what the log gives is
                    // left as it is (`compact` packs it): no write, no change to report.
                    Some(want)
                        if prefix == keys::CONTACT && contact_value::same_registers(&v, &want) => {}
                    Some(want) => {
                        if tracking && prefix == keys::CONTACT {
                            self.note_rebuilt(&k, Some(&v), Some(&want));
                        }
                        batch.insert(k, want);
                    }
                    None => {
                        if tracking && prefix == keys::CONTACT {
                            self.note_rebuilt(&k, Some(&v), None);
                        }
                        batch.remove(k);
                    }
                }
                if batch.len() >= REBUILD_CHUNK {
                    let full = std::mem::take(&mut batch);
                    self.kv.apply(full).map_err(|e| self.poison(e))?;
                }
            }
        }
        for (k, v) in wanted {
            if tracking && k.first() == Some(&keys::CONTACT) {
                self.note_rebuilt(&k, None, Some(&v));
            }
            batch.insert(k, v);
        }
        batch.insert(
            meta::APPLIED.to_vec(),
            keys::encode(&(derived.ops, self.log.len())),
        );
        batch.insert(meta::NAMES.to_vec(), names_mark());
        batch.remove(meta::REBUILDING.to_vec());
        self.kv.apply(batch).map_err(|e| self.poison(e))?;
        self.kv.flush().map_err(|e| self.poison(e))?;
        Ok(())
    }
}

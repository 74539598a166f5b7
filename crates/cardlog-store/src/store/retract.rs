//! Void ops on the store's side: which held ops take no effect, and their retraction.
//!
//! The book's membership decides which ops are void (core's `Cutoffs`: a removed device's ops
//! past its last valid seq). The store keeps the cutoffs of the membership ops it holds and
//! leaves void ops' writes out of the registers (`stage.rs`, `derive.rs`). When a batch (a
//! received one, or the log's tail at open) changes the cutoffs so that an op already held
//! changes standing (a removal arrives after the ops it voids took effect, or a removal is
//! itself voided), the batch carries the rebuild flag with its watermark and the registers
//! are rebuilt from the log right after it: a crash at any point finishes the rebuild at the
//! next open.

use cardlog_core::{Cutoffs, Membership, SealedOp};

use super::derive::{derive, Derived, Progress};
use super::stage::Staged;
use super::Store;
use crate::error::StoreError;
use crate::log::OpLog;
use crate::state::keys::meta;

impl Store {
    /// The cutoffs decided by the membership ops held plus `extra` (staged, not yet written),
    /// reading the op log's records that end by `end` through `log`
    /// ([`Store::membership_ops_in`]).
    pub(super) fn cutoffs_with(
        &self,
        extra: &[SealedOp],
        log: &OpLog,
        end: u64,
    ) -> Result<Cutoffs, StoreError> {
        let Some(book) = self.book else {
            return Ok(Cutoffs::default());
        };
        let mut ops = self.membership_ops_in(log, end)?;
        ops.extend(extra.iter().cloned());
        Ok(Membership::compute(book, ops).cutoffs())
    }

    /// The cutoffs once `staged` is written, and whether an op held or staged changes
    /// standing under them (then `staged`'s batch carries the rebuild flag). `None` when the
    /// batch holds no membership op.
    pub(super) fn retraction(
        &self,
        staged: &mut Staged,
        log: &OpLog,
        end: u64,
    ) -> Result<Option<(Cutoffs, bool)>, StoreError> {
        if staged.membership.is_empty() {
            return Ok(None);
        }
        let next = self.cutoffs_with(&staged.membership, log, end)?;
        let retract = self
            .cutoffs
            .changed_from(&next)
            .iter()
            .any(|(device, low)| {
                let tip = staged
                    .tips
                    .get(device)
                    .or_else(|| self.summary.get(device))
                    .map_or(0, |t| t.seq);
                tip > *low
            });
        if retract {
            staged.batch.insert(meta::REBUILDING.to_vec(), vec![1]);
        }
        Ok(Some((next, retract)))
    }

    /// Derives the state from the log under the cutoffs of the membership ops the log itself
    /// holds: derived once under the cutoffs in force, and again if the log's own membership
    /// decides others (what `verify` and `rebuild` compare with and write).
    pub(super) fn derive_settled(
        &self,
        progress: &mut dyn FnMut(Progress),
        with_index: bool,
    ) -> Result<(Derived, Cutoffs), StoreError> {
        let derived = derive(
            &self.log,
            progress,
            self.ops,
            with_index,
            &self.cutoffs,
            &self.withdrawn.offsets,
        )?;
        let Some(book) = self.book else {
            return Ok((derived, self.cutoffs.clone()));
        };
        let mut ops = Vec::with_capacity(derived.membership.len());
        for (_, bytes) in derived.membership.values() {
            ops.push(
                cardlog_core::decode_op(bytes)
                    .map_err(|e| StoreError::undecodable(&format!("membership op ({e})")))?,
            );
        }
        let cutoffs = Membership::compute(book, ops).cutoffs();
        if cutoffs == self.cutoffs || derived.broken {
            return Ok((derived, cutoffs));
        }
        let derived = derive(
            &self.log,
            progress,
            self.ops,
            with_index,
            &cutoffs,
            &self.withdrawn.offsets,
        )?;
        Ok((derived, cutoffs))
    }
}

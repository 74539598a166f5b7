//! Deriving registers, author heads and the log index from the op log alone, checking every
//! record: what `verify` compares with the stored state and what `rebuild` writes.
//!
//! One sequential pass: each record is read from the scan's buffer without a copy, decoded
//! strictly and hashed against its recorded id (core's `decode_op_with_id`, which keeps no
//! bytes), then its chain, timestamp and replaced writes (each must be an earlier op: a head
//! of the register written, else found by its full id) are checked and its writes moved into
//! the registers. It runs on the calling thread: splitting reading and checking over threads
//! was measured slower on the two-core machines of docs/PERFORMANCE.md (every op then crosses
//! cores and is freed on another thread than the one that allocated it).

use std::collections::btree_map::Entry;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use cardlog_core::replay::{ChainTip, Heads, RegisterWrite, Summary, WriteKey};
use cardlog_core::{decode_op_with_id, ContactId, Cutoffs, Op, OpId, Path};
use foldhash::fast::RandomState;

use crate::error::StoreError;
use crate::log::{check_record, LogIndex, OpLog, ReadRef, COMMIT, HEADER_BYTES};
use crate::state::keys::ContactRegisters;

/// How far a long operation (`verify`, `rebuild`) has got, in units of work.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    /// Units done.
    pub done: u64,
    /// Units in all.
    pub total: u64,
}

/// The registers of a store by contact (each contact's by path: write count and heads), as
/// the database keeps them.
pub(crate) type Registers = BTreeMap<ContactId, ContactRegisters>;

/// How often (in ops) long operations report progress.
pub(crate) const PROGRESS_EVERY: u64 = 4096;

/// What the log says the state should be.
#[derive(Default)]
pub(crate) struct Derived {
    pub(crate) registers: Registers,
    pub(crate) tips: Summary,
    pub(crate) ops: u64,
    pub(crate) problems: Vec<String>,
    /// A record does not decode or hash to its id: nothing can be rebuilt from the log.
    pub(crate) broken: bool,
    pub(crate) index: Option<LogIndex>,
    /// The membership ops, by id, with their log offsets and bytes.
    pub(crate) membership: BTreeMap<OpId, (u64, Vec<u8>)>,
}

/// Re-derives registers, author heads and (with `with_index`) the index from `log`, checking
/// every record (strict decoding, id, chain, timestamps, replaced writes before their
/// replacement). Problems found are listed; damage that stops the read ends it. `total` is
/// the number of ops expected (for progress and to size tables). The records at the offsets
/// in `withdrawn` are passed over (`withdraw.rs`).
pub(crate) fn derive(
    log: &OpLog,
    progress: &mut dyn FnMut(Progress),
    total: u64,
    with_index: bool,
    cutoffs: &Cutoffs,
    withdrawn: &BTreeSet<u64>,
) -> Result<Derived, StoreError> {
    // Every record takes more than its header: the file's size bounds what to reserve, however
    // wrong `total` is.
    let expected = total.min(log.len() / (HEADER_BYTES + 1));
    let mut replay = Replayer::new(
        log,
        usize::try_from(expected).unwrap_or(0),
        with_index,
        total,
        cutoffs,
    );
    let mut scan = log.scan(0, log.len());
    loop {
        match scan.next_ref()? {
            ReadRef::Record {
                offset,
                flags,
                id,
                bytes,
            } => {
                replay.last_flags = flags;
                if withdrawn.contains(&offset) {
                    continue;
                }
                match check_record(offset, &id, bytes, decode_op_with_id) {
                    Ok(op) => {
                        if op.is_membership() {
                            replay.d.membership.insert(id, (offset, bytes.to_vec()));
                        }
                        replay.add(offset, id, op, progress)?
                    }
                    Err(why) => replay.damaged(why),
                }
            }
            ReadRef::End => break,
            ReadRef::Bad { why, .. } => {
                replay.damaged(format!("op log: {why}"));
                break;
            }
        }
    }
    Ok(replay.finish())
}

/// The replaying half of [`derive`].
struct Replayer<'a> {
    log: &'a OpLog,
    d: Derived,
    /// Registers by contact, then path (looked up without building an owned key).
    registers: HashMap<ContactId, HashMap<Path, (u64, Heads), RandomState>, RandomState>,
    /// Every op id so far, unless the index being built holds them.
    seen: Option<HashSet<OpId, RandomState>>,
    last_flags: u8,
    total: u64,
    /// Which ops are void: held, checked, without effect on the registers.
    cutoffs: &'a Cutoffs,
}

impl<'a> Replayer<'a> {
    fn new(
        log: &'a OpLog,
        expected: usize,
        with_index: bool,
        total: u64,
        cutoffs: &'a Cutoffs,
    ) -> Self {
        Self {
            log,
            d: Derived {
                index: with_index.then(|| LogIndex::with_capacity(expected)),
                ..Derived::default()
            },
            registers: HashMap::default(),
            seen: (!with_index)
                .then(|| HashSet::with_capacity_and_hasher(expected, RandomState::default())),
            last_flags: COMMIT,
            total,
            cutoffs,
        }
    }

    /// A record that cannot be replayed: nothing can be rebuilt from the log.
    fn damaged(&mut self, why: String) {
        self.d.problems.push(why);
        self.d.broken = true;
    }

    fn add(
        &mut self,
        offset: u64,
        id: OpId,
        op: Op,
        progress: &mut dyn FnMut(Progress),
    ) -> Result<(), StoreError> {
        let d = &mut self.d;
        let author = op.author;
        let seq = op.seq;
        d.ops += 1;
        if d.ops.is_multiple_of(PROGRESS_EVERY) {
            progress(Progress {
                done: d.ops,
                total: self.total,
            });
        }
        let head = ChainTip {
            seq,
            op: id,
            hlc: op.hlc,
        };
        let prev = match d.tips.entry(author) {
            Entry::Vacant(v) => {
                v.insert(head);
                None
            }
            Entry::Occupied(mut o) => Some(std::mem::replace(o.get_mut(), head)),
        };
        if prev.map_or(0, |h| h.seq) + 1 != seq || prev.map(|h| h.op) != op.prev {
            d.problems
                .push(format!("chain of {author} broken at seq {seq}"));
        }
        if let Some(index) = d.index.as_mut() {
            index.add(offset, &id, &op);
        }
        let key = WriteKey {
            hlc: op.hlc,
            author,
            op: id,
        };
        let void = self.cutoffs.voids(&author, seq);
        for w in op.writes {
            if void {
                // Held without effect: only its replaced writes are checked.
                for r in &w.replaces {
                    let before = match (&self.seen, &d.index) {
                        (Some(seen), _) => seen.contains(r),
                        (None, Some(index)) => index.find(self.log, r)?.is_some(),
                        (None, None) => true,
                    };
                    if !before {
                        d.problems
                            .push(format!("op {id} replaces {r}, which is not before it"));
                    }
                }
                continue;
            }
            let paths = self.registers.entry(w.contact).or_default();
            if !paths.contains_key(&w.path) {
                paths.insert(w.path.clone(), (0, Heads::default()));
            }
            let Some((writes, heads)) = paths.get_mut(&w.path) else {
                continue;
            };
            for r in &w.replaces {
                // Usually a head of the register it writes (found without a table lookup);
                // else looked up by id (the index holds this op too, but an op cannot name
                // itself: its id is the hash of bytes that hold `r`).
                let before = heads.iter().any(|h| h.key.op == *r)
                    || match (&self.seen, &d.index) {
                        (Some(seen), _) => seen.contains(r),
                        (None, Some(index)) => index.find(self.log, r)?.is_some(),
                        (None, None) => true,
                    };
                if !before {
                    d.problems
                        .push(format!("op {id} replaces {r}, which is not before it"));
                }
            }
            *writes += 1;
            heads.apply(RegisterWrite {
                key,
                seq,
                value: w.value,
                replaces: w.replaces,
            });
        }
        if let Some(seen) = self.seen.as_mut() {
            seen.insert(id);
        }
        Ok(())
    }

    fn finish(mut self) -> Derived {
        if self.last_flags & COMMIT == 0 {
            self.d
                .problems
                .push("op log: the last record is not the end of a committed write".into());
        }
        self.d.registers = self
            .registers
            .into_iter()
            .map(|(contact, paths)| (contact, paths.into_iter().collect()))
            .collect();
        self.d
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

    use std::sync::Arc;

    use cardlog_core::{Contact, Device, FakeClock, Field, SealedOp};

    use super::*;
    use crate::log::{frame, FileLog};

    /// A device's first ops: create a contact, then edit its given name twice.
    fn history() -> (Device, ContactId, Vec<SealedOp>) {
        let mut device = Device::random(Arc::new(FakeClock::new(1_700_000_000_000))).unwrap();
        let mut contact = Contact::random().unwrap();
        contact.set(Field::Given, "Ada");
        let mut ops = vec![device.create(&contact).unwrap()];
        for name in ["Ada L.", "Ada Lovelace"] {
            let op = device
                .edit(contact.id, |c| {
                    c.set(Field::Given, name);
                })
                .unwrap()
                .unwrap();
            ops.push(op);
        }
        (device, contact.id, ops)
    }

    /// The next op in `last`'s chain, changed by `change`, sealed.
    fn next_after(last: &SealedOp, change: impl FnOnce(&mut Op)) -> SealedOp {
        let mut op = last.op().clone();
        op.seq += 1;
        op.prev = Some(last.id());
        op.hlc.wall_ms += 1;
        for w in &mut op.writes {
            w.replaces = vec![];
        }
        change(&mut op);
        op.seal().unwrap()
    }

    /// A log file (in the returned directory) holding the framed records `records`.
    fn log_of(records: &[u8]) -> (tempfile::TempDir, OpLog) {
        let dir = tempfile::tempdir().unwrap();
        let io = FileLog::open(&dir.path().join("ops.log"), true).unwrap();
        let mut log = OpLog::new(Box::new(io), 0);
        log.append(records).unwrap();
        (dir, log)
    }

    /// Derives from a log holding `ops` (the last record committed unless `commit_last` is
    /// false), with and without the index; both must list the same problems.
    fn derive_ops(ops: &[SealedOp], commit_last: bool) -> Derived {
        let mut buf = Vec::new();
        for (i, op) in ops.iter().enumerate() {
            let last = i + 1 == ops.len();
            let flags = if last && commit_last { COMMIT } else { 0 };
            frame(&mut buf, &op.id(), op.bytes(), flags);
        }
        let (_dir, log) = log_of(&buf);
        let plain = derive(
            &log,
            &mut |_| {},
            ops.len() as u64,
            false,
            &Cutoffs::default(),
            &BTreeSet::new(),
        )
        .unwrap();
        let indexed = derive(
            &log,
            &mut |_| {},
            ops.len() as u64,
            true,
            &Cutoffs::default(),
            &BTreeSet::new(),
        )
        .unwrap();
        assert_eq!(plain.problems, indexed.problems);
        assert_eq!(plain.registers, indexed.registers);
        assert!(indexed.index.is_some() && plain.index.is_none());
        indexed
    }

    #[test]
    fn a_sound_log_has_no_problems() {
        let (_, contact, ops) = history();
        let d = derive_ops(&ops, true);
        assert_eq!(d.problems, Vec::<String>::new());
        assert!(!d.broken);
        assert_eq!(d.ops, 3);
        assert_eq!(
            d.registers
                .get(&contact)
                .and_then(|r| r.get(&Path::Field(Field::Given)))
                .map(|r| r.0),
            Some(3)
        );
    }

    #[test]
    fn replacing_an_earlier_write_that_is_no_longer_a_head_is_sound() {
        // Found by id, not among the register's heads: the first op's write was replaced.
        let (_, _, mut ops) = history();
        let first = ops[0].id();
        let op = next_after(&ops[2], |op| {
            for w in &mut op.writes {
                w.replaces = vec![first];
            }
        });
        ops.push(op);
        assert_eq!(derive_ops(&ops, true).problems, Vec::<String>::new());
    }

    #[test]
    fn a_replaced_write_not_in_the_log_before_it_is_named() {
        let (_, _, mut ops) = history();
        let ghost = OpId([7; 32]);
        let op = next_after(&ops[2], |op| {
            for w in &mut op.writes {
                w.replaces = vec![ghost];
            }
        });
        let id = op.id();
        ops.push(op);
        let d = derive_ops(&ops, true);
        assert!(
            d.problems
                .contains(&format!("op {id} replaces {ghost}, which is not before it")),
            "{:?}",
            d.problems
        );
        assert!(
            !d.broken,
            "a semantic problem, not damage: {:?}",
            d.problems
        );
    }

    #[test]
    fn a_replaced_id_sharing_only_a_prefix_with_an_earlier_op_is_named() {
        // Not a head (the first op's write was replaced), and all but its last byte match an
        // earlier op's id, so its 8-byte index prefix does too.
        let (_, _, mut ops) = history();
        let mut forged = ops[0].id();
        forged.0[31] ^= 1;
        let op = next_after(&ops[2], |op| {
            for w in &mut op.writes {
                w.replaces = vec![forged];
            }
        });
        let id = op.id();
        ops.push(op);
        let d = derive_ops(&ops, true);
        assert!(
            d.problems.contains(&format!(
                "op {id} replaces {forged}, which is not before it"
            )),
            "{:?}",
            d.problems
        );
    }

    #[test]
    fn broken_chains_are_named_and_earlier_timestamps_are_sound() {
        let (device, _, mut ops) = history();
        let author = device.id();
        ops.push(next_after(&ops[2], |op| op.seq += 1));
        // A clock set back: the chain orders the author's ops, not their timestamps.
        ops.push(next_after(&ops[3], |op| op.hlc.wall_ms -= 10));
        let d = derive_ops(&ops, true);
        assert_eq!(
            d.problems,
            vec![format!("chain of {author} broken at seq 5")]
        );
    }

    #[test]
    fn an_uncommitted_last_record_and_damaged_bytes_are_named() {
        let (_, _, ops) = history();
        let d = derive_ops(&ops, false);
        assert_eq!(
            d.problems,
            vec!["op log: the last record is not the end of a committed write".to_string()]
        );

        // Bytes that no longer hash to the recorded id: damage, nothing to rebuild from.
        let mut buf = Vec::new();
        frame(&mut buf, &ops[1].id(), ops[0].bytes(), COMMIT);
        let (_dir, log) = log_of(&buf);
        let d = derive(
            &log,
            &mut |_| {},
            1,
            true,
            &Cutoffs::default(),
            &BTreeSet::new(),
        )
        .unwrap();
        assert!(d.broken);
        assert!(
            d.problems[0].starts_with("op log record at byte 0: the op hashes to"),
            "{:?}",
            d.problems
        );
    }
}

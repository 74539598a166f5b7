//! Who the store writes as and what proves the ops it holds: the device's secret key (in the
//! `device.key` file, readable by its owner only, never in the database, a bundle or a log
//! line), the address book it belongs to, the chain-tip signatures of the ops it holds, and its
//! membership ops (docs/FORMAT.md, "Store"; docs/SECURITY.md).

use std::collections::BTreeSet;
use std::io::Write as _;
use std::path::Path as FsPath;

use cardlog_core::{BookId, DeviceId, DeviceKey, OpId, PublicKey, SealedOp, Signature, SignedTip};

use super::Store;
use crate::error::{OpenError, StoreError};
use crate::log::{append_sigs, LogError, OpLog, SIGS_FILE};
use crate::state::keys::{self, meta};
use crate::state::kv::KvBatch;

/// The most ops between two signatures of another device's chain that a store's pruning of
/// covered signatures (`Store::prune_signatures`) leaves kept (or below the first): one
/// author's chain cut anywhere reaches a signed op within this many more of its ops.
/// `cardlog_sync`'s `CHUNK_OPS`, the ops of one message.
pub const SIGNATURE_SPACING: u64 = 1_024;

/// The file holding the device's secret key: its 32-byte ed25519 seed.
pub const KEY_FILE: &str = "device.key";

/// Where a new key waits while the store takes a new identity (see [`Store::check_home`]).
const NEXT_KEY_FILE: &str = "device.key.next";

/// Writes a new key file `name` in `dir`, owner read/write only, durably; refuses to replace
/// one. (A relay of many books keeps its key the same way: `cardlog::Relay`.)
pub fn write_key_file(dir: &FsPath, name: &str, key: &DeviceKey) -> Result<(), OpenError> {
    let path = dir.join(name);
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(&path).map_err(|e| OpenError::io(&path, e))?;
    file.write_all(&key.seed())
        .and_then(|()| file.sync_all())
        .map_err(|e| OpenError::io(&path, e))?;
    Ok(())
}

/// Writes the key file of a new store in `dir`.
pub(super) fn write_key(dir: &FsPath, key: &DeviceKey) -> Result<(), OpenError> {
    write_key_file(dir, KEY_FILE, key)
}

/// Reads the key file at `path`: a 32-byte ed25519 seed, or an error naming what is wrong.
pub fn read_key_file(path: &FsPath) -> Result<DeviceKey, OpenError> {
    let bytes = std::fs::read(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => OpenError::damaged(format!(
            "{} is missing: the store has no device key",
            path.display()
        )),
        _ => OpenError::io(path, e),
    })?;
    let seed = <[u8; 32]>::try_from(bytes.as_slice()).map_err(|_| {
        OpenError::damaged(format!(
            "{} holds {} bytes, not a 32-byte key",
            path.display(),
            bytes.len()
        ))
    })?;
    Ok(DeviceKey::from_seed(&seed))
}

/// Reads the key of the store in `dir`, which writes as `device`. A new key left waiting by
/// an identity change cut off after the database took the new id is put in place now.
pub(super) fn read_key(dir: &FsPath, device: DeviceId) -> Result<DeviceKey, OpenError> {
    let path = dir.join(KEY_FILE);
    let current = read_key_file(&path);
    if let Ok(key) = &current {
        if key.device() == device {
            let _ = std::fs::remove_file(dir.join(NEXT_KEY_FILE));
            return Ok(DeviceKey::from_seed(&key.seed()));
        }
    }
    if let Ok(waiting) = read_key_file(&dir.join(NEXT_KEY_FILE)) {
        if waiting.device() == device {
            commit_key(dir)?;
            return Ok(waiting);
        }
    }
    match current {
        Ok(key) => Err(OpenError::damaged(format!(
            "{} is the key of device {}, but the store writes as {device}",
            path.display(),
            key.device()
        ))),
        Err(e) => Err(e),
    }
}

/// First step of taking a new key: it waits beside the current one (durably).
pub(super) fn stage_key(dir: &FsPath, key: &DeviceKey) -> Result<(), OpenError> {
    let _ = std::fs::remove_file(dir.join(NEXT_KEY_FILE));
    write_key_file(dir, NEXT_KEY_FILE, key)
}

/// Last step of taking a new key, once the database writes as its device: it replaces the
/// current one.
pub(super) fn commit_key(dir: &FsPath) -> Result<(), OpenError> {
    let path = dir.join(KEY_FILE);
    std::fs::rename(dir.join(NEXT_KEY_FILE), &path).map_err(|e| OpenError::io(&path, e))?;
    let _ = std::fs::File::open(dir).and_then(|d| d.sync_all());
    Ok(())
}

impl Store {
    /// The device's key: what it signs its ops with.
    pub fn device_key(&self) -> &DeviceKey {
        &self.key
    }

    /// The address book this replica belongs to, once it founded or joined one.
    pub fn book(&self) -> Option<BookId> {
        self.book
    }

    /// Records the book this replica belongs to; durable at the next [`Store::flush`].
    /// Refused if it already belongs to another.
    pub fn set_book(&mut self, book: BookId) -> Result<(), StoreError> {
        match self.book {
            Some(held) if held != book => Err(StoreError::OtherBook { held, book }),
            Some(_) => Ok(()),
            None => {
                self.put_meta(meta::BOOK, book.0.to_vec())?;
                self.book = Some(book);
                self.cutoffs = self.cutoffs_with(&[], &self.log, self.log.len())?;
                Ok(())
            }
        }
    }

    /// The signature of `author`'s op at `seq`, if the store holds that op and has one: for
    /// another author, the one kept (if it is of the op held there); for this device, one made
    /// now. This device signs its chain when it is sent rather than at each save (one
    /// signature covers the chain up to the op it signs), so a save costs no signature.
    pub fn signature(&self, author: &DeviceId, seq: u64) -> Result<Option<SignedTip>, StoreError> {
        let held = cardlog_core::replay::OpLookup::op_at(self, author, seq)?;
        if *author == self.device {
            return Ok(held.and_then(|op| self.sign(seq, op)));
        }
        let Some(tip) = self.raw_signature(author, seq)? else {
            return Ok(None);
        };
        Ok((held == Some(tip.op)).then_some(tip))
    }

    /// The signature kept for `author` at `seq`, not checked against the op held there.
    pub(super) fn raw_signature(
        &self,
        author: &DeviceId,
        seq: u64,
    ) -> Result<Option<SignedTip>, StoreError> {
        let Some(v) = self.held.get(&*self.kv, &keys::signature(author, seq))? else {
            return Ok(None);
        };
        decode_signature(*author, seq, &v)
            .map(Some)
            .ok_or_else(|| StoreError::undecodable("chain-tip signature"))
    }

    /// The membership ops the store holds: kept whole in the database, or (a store that keeps
    /// ops only) read from the op log where their `u` values say ([`keys::membership_value`]).
    pub fn membership_ops(&self) -> Result<Vec<SealedOp>, StoreError> {
        self.membership_ops_in(&self.log, self.log.len())
    }

    /// [`Store::membership_ops`], reading the op log's records that end by `end` through
    /// `log`: the store's own, or the log moved out of it while its open replays the log's
    /// tail (whose length is set once the tail is read: the replay reads up to the file's
    /// end). A `u` value naming a record that does not read back as the op its key names is
    /// an error naming the offset (the log was cut or damaged there: `repair` rebuilds the
    /// keys from what the log holds), except in a store already read-only for damage, where
    /// it is passed over (`open` makes such a store read-only).
    pub(super) fn membership_ops_in(
        &self,
        log: &OpLog,
        end: u64,
    ) -> Result<Vec<SealedOp>, StoreError> {
        let mut ops = Vec::new();
        for pair in self.held.scan_prefix(&*self.kv, &[keys::MEMBERSHIP]) {
            let (k, v) = pair?;
            let op = match keys::membership_offset(&v) {
                Some(at) => match log.read_before(at, end).and_then(|r| r.seal()) {
                    Ok(op) if k.get(1..) == Some(&op.id().0[..]) => op,
                    _ if self.poisoned.is_some() => continue,
                    found => {
                        let why =
                            found.map_or_else(|e| e.to_string(), |_| "another op is there".into());
                        return Err(StoreError::undecodable(&format!(
                            "membership op at op log offset {at} ({why})"
                        )));
                    }
                },
                None => cardlog_core::decode_op(&v)
                    .map_err(|e| StoreError::undecodable(&format!("membership op ({e})")))?,
            };
            ops.push(op);
        }
        Ok(ops)
    }

    /// Keeps chain-tip signatures. Signatures of this device's own ops go with the held-back
    /// register changes (a crash loses only those the next open signs again, see
    /// `sign_own_tip`); others are written to the database now and are durable at the next
    /// [`Store::flush`].
    pub(super) fn keep_signatures(&mut self, tips: &[SignedTip]) -> Result<(), StoreError> {
        let mut own = KvBatch::default();
        let mut received = KvBatch::default();
        let mut logged = Vec::new();
        for tip in tips {
            // Into the signature log once: one already kept as it is (the same batch's second
            // call, a batch of duplicates) is not appended again.
            if tip.author != self.device
                && self
                    .held
                    .get(&*self.kv, &keys::signature(&tip.author, tip.seq))?
                    .as_deref()
                    != Some(signature_value(tip).as_slice())
            {
                logged.push(*tip);
            }
            let v = signature_value(tip);
            let batch = if tip.author == self.device {
                &mut own
            } else {
                &mut received
            };
            batch.insert(keys::signature(&tip.author, tip.seq), v);
        }
        if !own.is_empty() {
            self.held.add(own, 0);
        }
        if !received.is_empty() {
            // Into the signature log first (a sled store's: `repair` reads them back from
            // there; a journal store has none, its journal is such a log).
            if let Some(file) = self.sigs.as_mut().filter(|_| !logged.is_empty()) {
                if let Err(e) = append_sigs(file, &logged) {
                    return Err(self.poison_log(LogError::Io {
                        call: format!("append to {SIGS_FILE}"),
                        kind: e.kind(),
                        message: e.to_string(),
                    }));
                }
            }
            self.kv.apply(received).map_err(|e| self.poison(e))?;
            self.meta_dirty = true;
        }
        Ok(())
    }

    /// Lets go of the kept signatures of `authors` (other devices) that a later one covers:
    /// a signature covers its author's chain down to the first op, so of a chain held whole
    /// only its highest signature is needed, and one in the middle only where a message cut
    /// there would otherwise have to grow by more than [`SIGNATURE_SPACING`] ops to end at a
    /// signed op (`cardlog_sync`'s sessions end each message at signed ops). A signature goes
    /// only when it and the next one kept are of the ops held at their seqs (the held chain is
    /// one, so the later covers the earlier); one of an op withdrawn or replaced since stays.
    /// The removals go with the held-back register changes, after the log that holds the
    /// covering op: a crash before them keeps both.
    ///
    /// What it saves: a device that syncs with a relay signs its tip each time, and the relay
    /// kept every one (two in three of a relay book's signature bytes after two rounds, issue
    /// 24).
    pub(super) fn prune_signatures(
        &mut self,
        authors: &BTreeSet<DeviceId>,
    ) -> Result<(), StoreError> {
        let mut gone = KvBatch::default();
        for author in authors.iter().filter(|a| **a != self.device) {
            let mut prefix = vec![keys::SIGNATURE];
            prefix.extend_from_slice(&author.0);
            // (seq, whether the signature is of the op held at that seq), by seq.
            let mut kept: Vec<(u64, bool)> = Vec::new();
            for pair in self.held.scan_prefix(&*self.kv, &prefix) {
                let (k, v) = pair?;
                let Some((_, seq)) = keys::parse_signature(&k) else {
                    continue;
                };
                let tip = decode_signature(*author, seq, &v)
                    .ok_or_else(|| StoreError::undecodable("chain-tip signature"))?;
                let held = cardlog_core::replay::OpLookup::op_at(self, author, seq)?;
                kept.push((seq, held == Some(tip.op)));
            }
            let mut below = 0u64;
            for pair in kept.windows(2) {
                let &[(seq, of_held), (next, next_of_held)] = pair else {
                    continue;
                };
                if of_held && next_of_held && next - below <= SIGNATURE_SPACING {
                    gone.remove(keys::signature(author, seq));
                } else if of_held {
                    // (One of an op not held covers nothing held: the gap runs on.)
                    below = seq;
                }
            }
        }
        if !gone.is_empty() {
            self.held.add(gone, 0);
        }
        Ok(())
    }

    /// The signature of this device's op `op` at `seq`, made now.
    pub fn sign(&self, seq: u64, op: OpId) -> Option<SignedTip> {
        let book = self.book?;
        Some(SignedTip {
            author: self.device,
            key: self.key.public(),
            seq,
            op,
            signature: self.key.sign_tip(&book, &op),
        })
    }
}

/// The signature of `author`'s op at `seq` kept as `value` ([`signature_value`]), or `None`
/// if it does not decode.
pub(super) fn decode_signature(author: DeviceId, seq: u64, value: &[u8]) -> Option<SignedTip> {
    Some(SignedTip {
        author,
        op: OpId(value.get(..32)?.try_into().ok()?),
        key: PublicKey(value.get(32..64)?.try_into().ok()?),
        signature: Signature(value.get(64..128)?.try_into().ok()?),
        seq,
    })
}

/// A kept signature's value under its `s` key: op id, key, signature.
pub(super) fn signature_value(tip: &SignedTip) -> Vec<u8> {
    let mut v = Vec::with_capacity(128);
    v.extend_from_slice(&tip.op.0);
    v.extend_from_slice(&tip.key.0);
    v.extend_from_slice(&tip.signature.0);
    v
}

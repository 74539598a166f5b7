//! The signature log: every chain-tip signature received from another device, appended to
//! `sigs.log` as it is kept in the database (docs/FORMAT.md, "Store"). The database is where
//! signatures are looked up; this file is what `repair` reads them back from when the database
//! is lost (they cannot be made again: they are other devices' signatures, and the op log
//! holds ops only).
//!
//! A record is 156 bytes: the CRC-32 (little-endian) of the 152 bytes after it, then author
//! (16), seq (u64 LE), op id (32), public key (32), signature (64). Each record carries its
//! CRC, so a reader finds whole ones past damage or a torn write (searching byte by byte), and
//! an open cuts a torn last record away before it appends.

use std::fs::File;
use std::io::{Read as _, Write as _};
use std::path::Path;

use cardlog_core::{DeviceId, OpId, PublicKey, Signature, SignedTip};

/// The signature log's name in the store directory.
pub const SIGS_FILE: &str = "sigs.log";

/// Bytes of one record.
pub const SIG_RECORD_BYTES: usize = 156;

/// The record of `tip`.
pub fn encode_sig(tip: &SignedTip) -> [u8; SIG_RECORD_BYTES] {
    let mut body = Vec::with_capacity(SIG_RECORD_BYTES - 4);
    body.extend_from_slice(&tip.author.0);
    body.extend_from_slice(&tip.seq.to_le_bytes());
    body.extend_from_slice(&tip.op.0);
    body.extend_from_slice(&tip.key.0);
    body.extend_from_slice(&tip.signature.0);
    let mut record = [0u8; SIG_RECORD_BYTES];
    let (crc, rest) = record.split_at_mut(4);
    crc.copy_from_slice(&crc32fast::hash(&body).to_le_bytes());
    rest.copy_from_slice(&body);
    record
}

/// The signature a record holds, or `None` if its CRC does not match.
fn decode_sig(record: &[u8]) -> Option<SignedTip> {
    let crc = u32::from_le_bytes(record.get(..4)?.try_into().ok()?);
    let body = record.get(4..SIG_RECORD_BYTES)?;
    if crc32fast::hash(body) != crc {
        return None;
    }
    Some(SignedTip {
        author: DeviceId(body.get(..16)?.try_into().ok()?),
        seq: u64::from_le_bytes(body.get(16..24)?.try_into().ok()?),
        op: OpId(body.get(24..56)?.try_into().ok()?),
        key: PublicKey(body.get(56..88)?.try_into().ok()?),
        signature: Signature(body.get(88..152)?.try_into().ok()?),
    })
}

/// Opens the signature log at `path` for appending, creating it if absent; whether it was
/// created.
pub fn open_sigs(path: &Path) -> std::io::Result<(File, bool)> {
    let existed = path.exists();
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)?;
    Ok((file, !existed))
}

/// Appends `tips` in one write.
pub fn append_sigs(file: &mut File, tips: &[SignedTip]) -> std::io::Result<()> {
    let bytes: Vec<u8> = tips.iter().flat_map(encode_sig).collect();
    file.write_all(&bytes)
}

/// Every signature whose record is whole, in the order written, and how many runs of damage
/// were passed over (a torn last record counts as one). A missing file holds none.
pub fn read_sigs(path: &Path) -> std::io::Result<(Vec<SignedTip>, u64)> {
    let mut bytes = Vec::new();
    match File::open(path) {
        Ok(mut file) => {
            file.read_to_end(&mut bytes)?;
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((Vec::new(), 0)),
        Err(e) => return Err(e),
    }
    let mut tips = Vec::with_capacity(bytes.len() / SIG_RECORD_BYTES);
    let mut damaged = 0u64;
    let mut at = 0usize;
    // Where the last damage began: a run of bytes that hold no record counts once.
    let mut in_damage = false;
    while let Some(record) = bytes.get(at..at + SIG_RECORD_BYTES) {
        match decode_sig(record) {
            Some(tip) => {
                tips.push(tip);
                at += SIG_RECORD_BYTES;
                in_damage = false;
            }
            None => {
                // A damaged record, or records shifted by a torn write before them: the
                // search goes on byte by byte for the next whole one.
                if !in_damage {
                    damaged += 1;
                    in_damage = true;
                }
                at += 1;
            }
        }
    }
    if at < bytes.len() && !in_damage {
        damaged += 1;
    }
    Ok((tips, damaged))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]

    use super::*;

    fn tip(n: u8) -> SignedTip {
        SignedTip {
            author: DeviceId([n; 16]),
            seq: u64::from(n) * 1000,
            op: OpId([n ^ 1; 32]),
            key: PublicKey([n ^ 2; 32]),
            signature: Signature([n ^ 3; 64]),
        }
    }

    #[test]
    fn records_read_back_and_a_damaged_or_torn_one_is_skipped_alone() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join(SIGS_FILE);
        let (mut file, created) = open_sigs(&path).unwrap();
        assert!(created);
        append_sigs(&mut file, &[tip(1), tip(2)]).unwrap();
        append_sigs(&mut file, &[tip(3)]).unwrap();
        drop(file);
        assert!(!open_sigs(&path).unwrap().1);
        assert_eq!(read_sigs(&path).unwrap(), (vec![tip(1), tip(2), tip(3)], 0));
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[SIG_RECORD_BYTES + 40] ^= 1;
        bytes.extend_from_slice(&encode_sig(&tip(4))[..100]);
        std::fs::write(&path, bytes).unwrap();
        assert_eq!(read_sigs(&path).unwrap(), (vec![tip(1), tip(3)], 2));
        // A torn write followed by whole records (a reader that stepped 156 bytes at a time
        // would lose every one after it).
        let mut bytes = std::fs::read(&path).unwrap();
        bytes.extend_from_slice(&encode_sig(&tip(5)));
        bytes.extend_from_slice(&encode_sig(&tip(6)));
        std::fs::write(&path, bytes).unwrap();
        assert_eq!(
            read_sigs(&path).unwrap(),
            (vec![tip(1), tip(3), tip(5), tip(6)], 2)
        );
        assert_eq!(
            read_sigs(&tmp.path().join("absent")).unwrap(),
            (Vec::new(), 0)
        );
    }
}

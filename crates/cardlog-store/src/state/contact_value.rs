//! A contact's registers as store format 6 keeps them under its `c` key: every write key
//! (timestamp, author, op, seq) once per contact, which the registers' heads name by index.
//!
//! The registers of a contact are mostly written by the same ops: a new contact's nine
//! registers by one op, so format 5 (the registers' map as bincode encodes it) kept the op's
//! 32-byte id and the author's 16-byte id nine times, 432 of a created contact's 881 bytes
//! (`growth_figures`; 326 bytes here). Here a value is [`MARK`] then the bincode of `Packed`: the distinct
//! authors, the distinct writes (each naming its author by index), and per register its path,
//! write count, first timestamp (by index when a write has it, as it usually does) and heads
//! (each naming its write by index, with its value and the ids it replaced).
//!
//! A format-5 value (no [`MARK`]: a bincode map starts with its length, whose first byte is
//! never 255) is still read: a store upgraded from format 5 keeps its values as they were
//! until a save or an apply writes their contact again, or `compact` copies them ([`packed`]);
//! `rebuild` takes one holding what it derives as unchanged ([`same_registers`]).
//! The encoding is deterministic (tables in the order the registers, by path, and their heads
//! name them), so `rebuild` finds a value unchanged by its bytes and writes only the others.

use std::collections::HashMap;

use bincode::de::Decoder;
use bincode::enc::write::SizeWriter;
use bincode::enc::EncoderImpl;
use bincode::error::DecodeError;
use bincode::{Decode, Encode};
use foldhash::fast::RandomState;

use cardlog_core::codec::{decode_exact_with, format_config};
use cardlog_core::replay::{ContactRegisters, Heads, RegisterWrite, WriteKey};
use cardlog_core::{DeviceId, Hlc, OpId, Path, Value};

use crate::error::StoreError;

/// The first byte of a format-6 value (a bincode varint never starts with it).
pub const MARK: u8 = 0xff;

const WHAT: &str = "contact registers";

/// A format-6 value after its [`MARK`]: what [`PackedOut`] encodes and [`Unpacked`] decodes,
/// field by field (the tests' reference coder uses it whole).
#[cfg_attr(
    not(test),
    expect(dead_code, reason = "the tests' reference coder builds it")
)]
#[derive(Debug, Encode, Decode)]
struct Packed {
    authors: Vec<DeviceId>,
    writes: Vec<PackedWrite>,
    registers: Vec<PackedRegister>,
}

/// A write key and seq; `author` indexes [`Packed::authors`].
#[derive(Debug, Encode, Decode)]
struct PackedWrite {
    hlc: Hlc,
    author: u32,
    op: OpId,
    seq: u64,
}

/// One register; `heads` in the register's order.
#[derive(Debug, Encode, Decode)]
struct PackedRegister {
    path: Path,
    writes: u64,
    first: First,
    heads: Vec<PackedHead>,
}

/// A register's first timestamp.
#[derive(Debug, Encode, Decode)]
enum First {
    None,
    /// The timestamp of [`Packed::writes`] entry n.
    OfWrite(u32),
    Explicit(Hlc),
}

/// A head: `write` indexes [`Packed::writes`].
#[derive(Debug, Encode, Decode)]
struct PackedHead {
    write: u32,
    value: Option<Value>,
    replaces: Vec<OpId>,
}

/// [`Packed`] as [`encode`] writes it: the same fields in the same order, so the same bytes,
/// borrowing the registers' paths, values and replaced ids instead of copying them.
#[derive(Encode)]
struct PackedOut<'a> {
    authors: &'a [DeviceId],
    writes: &'a [PackedWrite],
    registers: &'a [RegisterOut<'a>],
}

/// [`PackedRegister`], borrowed.
#[derive(Encode)]
struct RegisterOut<'a> {
    path: &'a Path,
    writes: u64,
    first: First,
    heads: &'a [HeadOut<'a>],
}

/// [`PackedHead`], borrowed.
#[derive(Encode)]
struct HeadOut<'a> {
    write: u32,
    value: Option<&'a Value>,
    replaces: &'a [OpId],
}

/// Tables this short are searched in order; longer ones get a hash index (a contact's
/// registers are usually written by a handful of ops, but nothing bounds how many).
const SCANNED_MAX: usize = 16;

/// The place of the first entry of `table` equal to `key` by `same`, looked up in `index`
/// once the table outgrows [`SCANNED_MAX`] (`index` is built then, and kept up to date by
/// [`place_or_push`]).
fn find<T, K: std::hash::Hash + Eq>(
    table: &[T],
    index: &HashMap<K, u32, RandomState>,
    key: &K,
    same: impl Fn(&T) -> bool,
) -> Option<u32> {
    if table.len() <= SCANNED_MAX {
        table.iter().position(same).map(index_of)
    } else {
        index.get(key).copied()
    }
}

/// The place of `key`'s entry in `table`, pushing `make()` first if it has none.
fn place_or_push<T, K: std::hash::Hash + Eq + Clone>(
    table: &mut Vec<T>,
    index: &mut HashMap<K, u32, RandomState>,
    key: K,
    same: impl Fn(&T) -> bool,
    key_of: impl Fn(&T) -> K,
    make: impl FnOnce() -> T,
) -> u32 {
    if let Some(at) = find(table, index, &key, same) {
        return at;
    }
    table.push(make());
    let at = index_of(table.len() - 1);
    if table.len() == SCANNED_MAX + 1 {
        // The first push past the scanned size: index every entry (keys are unique here).
        for (i, entry) in table.iter().enumerate() {
            index.entry(key_of(entry)).or_insert(index_of(i));
        }
    } else if table.len() > SCANNED_MAX + 1 {
        index.entry(key).or_insert(at);
    }
    at
}

fn index_of(len: usize) -> u32 {
    u32::try_from(len).unwrap_or(u32::MAX)
}

/// The value kept for `registers`.
pub fn encode(registers: &ContactRegisters) -> Vec<u8> {
    let mut authors: Vec<DeviceId> = Vec::new();
    let mut author_at: HashMap<DeviceId, u32, RandomState> = HashMap::default();
    let mut writes: Vec<PackedWrite> = Vec::new();
    let mut write_at: HashMap<(OpId, Hlc, u32, u64), u32, RandomState> = HashMap::default();
    // Every register's heads in one vector (each register's a run of it, `ends` where each
    // run ends): one allocation for them all.
    let mut heads_out: Vec<HeadOut<'_>> = Vec::new();
    let mut ends = Vec::with_capacity(registers.len());
    for (_, heads) in registers.values() {
        for w in heads.iter() {
            let author = place_or_push(
                &mut authors,
                &mut author_at,
                w.key.author,
                |a| *a == w.key.author,
                |a| *a,
                || w.key.author,
            );
            let write = place_or_push(
                &mut writes,
                &mut write_at,
                (w.key.op, w.key.hlc, author, w.seq),
                |p| p.op == w.key.op && p.hlc == w.key.hlc && p.author == author && p.seq == w.seq,
                |p| (p.op, p.hlc, p.author, p.seq),
                || PackedWrite {
                    hlc: w.key.hlc,
                    author,
                    op: w.key.op,
                    seq: w.seq,
                },
            );
            heads_out.push(HeadOut {
                write,
                value: w.value.as_ref(),
                replaces: &w.replaces,
            });
        }
        ends.push(heads_out.len());
    }
    // Once every write is in the table: a first timestamp that one of them has names the
    // first write with it.
    let mut hlc_at: HashMap<Hlc, u32, RandomState> = HashMap::default();
    if writes.len() > SCANNED_MAX {
        for (i, w) in writes.iter().enumerate() {
            hlc_at.entry(w.hlc).or_insert(index_of(i));
        }
    }
    let mut packed = Vec::with_capacity(registers.len());
    let mut start = 0;
    for ((path, (count, heads)), end) in registers.iter().zip(ends) {
        let first = match heads.first_hlc() {
            None => First::None,
            Some(hlc) => match find(&writes, &hlc_at, &hlc, |w| w.hlc == hlc) {
                Some(at) => First::OfWrite(at),
                None => First::Explicit(hlc),
            },
        };
        packed.push(RegisterOut {
            path,
            writes: *count,
            first,
            heads: heads_out.get(start..end).unwrap_or_default(),
        });
        start = end;
    }
    let out = PackedOut {
        authors: &authors,
        writes: &writes,
        registers: &packed,
    };
    // Measured first, so the value is allocated once at its size. Neither pass has a failure
    // mode in bincode 2 (writing into memory, as `codec::encode_with`).
    let mut sizer = EncoderImpl::new(SizeWriter::default(), format_config());
    let _ = out.encode(&mut sizer);
    let mut value = vec![0u8; 1 + sizer.into_writer().bytes_written];
    let written = match value.split_first_mut() {
        Some((mark, rest)) => {
            *mark = MARK;
            bincode::encode_into_slice(&out, rest, format_config()).unwrap_or(0)
        }
        None => 0,
    };
    value.truncate(1 + written);
    value
}

/// `$decode($bytes, config)` with the format's configuration and the limit on what the
/// decoder may allocate scaled to the value's length ([`decode`] says why).
macro_rules! scaled {
    ($decode:ident, $bytes:expr) => {
        match $bytes.len() {
            n if n <= 128 << 10 => $decode($bytes, format_config().with_limit::<{ 8 << 20 }>()),
            n if n <= 1 << 20 => $decode($bytes, format_config().with_limit::<{ 64 << 20 }>()),
            n if n <= 8 << 20 => $decode($bytes, format_config().with_limit::<{ 512 << 20 }>()),
            _ => $decode($bytes, format_config().with_limit::<{ usize::MAX }>()),
        }
    };
}

/// Exactly `bytes` decoded as a `T` with `config`.
fn exact<T: Decode<()>, C: bincode::config::Config>(
    bytes: &[u8],
    config: C,
) -> Result<T, StoreError> {
    decode_exact_with(bytes, config).ok_or_else(|| StoreError::undecodable(WHAT))
}

/// The registers a value holds (format 6, or format 5 as a store upgraded from it and the
/// fixtures have it);
/// never an empty map (a contact exists once a register does).
///
/// A contact holds any number of registers, so its value has no size limit of its own, and
/// the decoder's bound on what length prefixes may make it allocate (the format's
/// `DECODED_BYTES_MAX` fits one op) scales with the value instead: 64 bytes of decoded memory
/// per stored byte, in steps. bincode counts a 1-byte varint as up to 8 bytes and reserves a
/// whole map or vector before reading it (a map entry is about 20 times its smallest
/// encoding), so no valid value needs more. A format-6 head of three bytes names a write
/// it becomes a copy of (about 100 bytes with an empty value): within the same bound.
pub fn decode(v: &[u8]) -> Result<ContactRegisters, StoreError> {
    let registers = match v.split_first() {
        Some((&MARK, packed)) => scaled!(unpacked, packed)?,
        _ => scaled!(exact, v)?,
    };
    if registers.is_empty() {
        return Err(StoreError::undecodable("contact registers (none)"));
    }
    Ok(registers)
}

/// `value` packed, when it is a value in format 5's encoding that decodes: what `compact`
/// writes in its place. `None` for a value already packed, or one that does not decode (left
/// as it is: `verify` names it, `repair` rebuilds it).
///
/// The packed value is read back before it is returned: one that does not give the same
/// registers (a fault in the encoding) is not returned, so the old value stays.
pub fn packed(value: &[u8]) -> Option<Vec<u8>> {
    if value.first() == Some(&MARK) {
        return None;
    }
    let registers = decode(value).ok()?;
    let packed = encode(&registers);
    (decode(&packed).ok()? == registers).then_some(packed)
}

/// Whether two values hold the same registers, whatever their encodings: the same bytes, or
/// (where one is in format 5's encoding) the same registers decoded. Two format-6 values hold
/// the same registers only as the same bytes (the encoding is deterministic).
pub fn same_registers(a: &[u8], b: &[u8]) -> bool {
    if a == b {
        return true;
    }
    if a.first() == Some(&MARK) && b.first() == Some(&MARK) {
        return false;
    }
    matches!((decode(a), decode(b)), (Ok(x), Ok(y)) if x == y)
}

/// The registers the bytes of a [`Packed`] describe, decoded straight into them: the same
/// bincode reads in the same order as decoding a `Packed` (the same claims on `config`'s
/// limit included, so the same values are refused) and then [`unpack`]ing it, without the
/// intermediate vectors. An index out of range or a path twice is damage, as there.
fn unpacked<C: bincode::config::Config>(
    bytes: &[u8],
    config: C,
) -> Result<ContactRegisters, StoreError> {
    match bincode::decode_from_slice::<Unpacked, C>(bytes, config) {
        Ok((Unpacked(registers), read)) if read == bytes.len() => Ok(registers),
        Err(DecodeError::Other(what)) => Err(StoreError::undecodable(&format!("{WHAT} ({what})"))),
        _ => Err(StoreError::undecodable(WHAT)),
    }
}

/// [`unpacked`]'s registers.
struct Unpacked(ContactRegisters);

impl<Ctx> Decode<Ctx> for Unpacked {
    fn decode<D: Decoder<Context = Ctx>>(d: &mut D) -> Result<Self, DecodeError> {
        let authors: Vec<DeviceId> = Decode::decode(d)?;
        let writes: Vec<PackedWrite> = Decode::decode(d)?;
        let write = |i: u32| written(&writes, &authors, i).map_err(DecodeError::Other);
        // As `Vec<PackedRegister>` decodes: its length, a claim for that many, then each
        // (un-claiming its size as it is read).
        let count = slice_len(d)?;
        d.claim_container_read::<PackedRegister>(count)?;
        let mut registers = ContactRegisters::new();
        for _ in 0..count {
            d.unclaim_bytes_read(std::mem::size_of::<PackedRegister>());
            let path: Path = Decode::decode(d)?;
            let written: u64 = Decode::decode(d)?;
            let first: First = Decode::decode(d)?;
            let heads_count = slice_len(d)?;
            d.claim_container_read::<PackedHead>(heads_count)?;
            // (Never more room ahead than a few heads: the claim was for the smaller type.)
            let mut heads = Vec::with_capacity(heads_count.min(8));
            for _ in 0..heads_count {
                d.unclaim_bytes_read(std::mem::size_of::<PackedHead>());
                let at: u32 = Decode::decode(d)?;
                let value: Option<Value> = Decode::decode(d)?;
                let replaces: Vec<OpId> = Decode::decode(d)?;
                let (w, author) = write(at)?;
                heads.push(w.head(author, value, replaces));
            }
            let first = match first {
                First::None => None,
                First::OfWrite(i) => Some(write(i)?.0.hlc),
                First::Explicit(hlc) => Some(hlc),
            };
            let heads = Heads::from_parts(first, heads);
            if registers.insert(path, (written, heads)).is_some() {
                return Err(DecodeError::Other("a path twice"));
            }
        }
        Ok(Unpacked(registers))
    }
}

/// Write `i` of `writes` and its author from `authors`; what is out of range, if not there.
fn written<'w>(
    writes: &'w [PackedWrite],
    authors: &[DeviceId],
    i: u32,
) -> Result<(&'w PackedWrite, DeviceId), &'static str> {
    let w = usize::try_from(i)
        .ok()
        .and_then(|i| writes.get(i))
        .ok_or("a write index out of range")?;
    let author = usize::try_from(w.author)
        .ok()
        .and_then(|i| authors.get(i))
        .ok_or("an author index out of range")?;
    Ok((w, *author))
}

impl PackedWrite {
    /// The head this write makes, by `author`, with its value and replaced ids.
    fn head(&self, author: DeviceId, value: Option<Value>, replaces: Vec<OpId>) -> RegisterWrite {
        RegisterWrite {
            key: WriteKey {
                hlc: self.hlc,
                author,
                op: self.op,
            },
            seq: self.seq,
            value,
            replaces,
        }
    }
}

/// A container's length as bincode reads it (a u64 that must fit a usize).
fn slice_len<D: Decoder>(d: &mut D) -> Result<usize, DecodeError> {
    let n: u64 = Decode::decode(d)?;
    usize::try_from(n).map_err(|_| DecodeError::OutsideUsizeRange(n))
}

/// The registers `packed` describes; an index out of range or a path twice is damage.
#[cfg(test)]
fn unpack(packed: Packed) -> Result<ContactRegisters, StoreError> {
    let bad = |what: &str| StoreError::undecodable(&format!("{WHAT} ({what})"));
    let Packed {
        authors,
        writes,
        registers: packed_registers,
    } = packed;
    let write = |i: u32| written(&writes, &authors, i).map_err(bad);
    let mut registers = ContactRegisters::new();
    for r in packed_registers {
        let first = match r.first {
            First::None => None,
            First::OfWrite(i) => Some(write(i)?.0.hlc),
            First::Explicit(hlc) => Some(hlc),
        };
        let mut heads = Vec::with_capacity(r.heads.len());
        for h in r.heads {
            let (w, author) = write(h.write)?;
            heads.push(w.head(author, h.value, h.replaces));
        }
        let heads = Heads::from_parts(first, heads);
        if registers.insert(r.path, (r.writes, heads)).is_some() {
            return Err(bad("a path twice"));
        }
    }
    Ok(registers)
}

#[cfg(test)]
mod tests {
    use super::*;

    use cardlog_core::codec::encode_to_vec;
    use cardlog_core::{Field, ItemId, ItemKind};

    fn write(author: u8, op: u8, ms: u64, value: Option<&str>, replaces: &[u8]) -> RegisterWrite {
        RegisterWrite {
            key: WriteKey {
                hlc: Hlc {
                    wall_ms: ms,
                    counter: 0,
                },
                author: DeviceId([author; 16]),
                op: OpId([op; 32]),
            },
            seq: u64::from(op),
            value: value.map(|v| Value::Text(v.to_owned())),
            replaces: replaces.iter().map(|r| OpId([*r; 32])).collect(),
        }
    }

    fn heads(writes: Vec<RegisterWrite>) -> Heads {
        let mut h = Heads::default();
        for w in writes {
            h.apply(w);
        }
        h
    }

    /// A created contact, an edit, a conflict between two authors, a removal and a register
    /// whose first write is no longer a head.
    fn registers() -> ContactRegisters {
        let mut r = ContactRegisters::new();
        r.insert(Path::Exists, (1, heads(vec![write(1, 1, 10, None, &[])])));
        r.insert(
            Path::Field(Field::Given),
            (
                2,
                heads(vec![
                    write(1, 1, 10, Some("Ada"), &[]),
                    write(1, 2, 20, Some("Ada L."), &[1]),
                ]),
            ),
        );
        r.insert(
            Path::Field(Field::Org),
            (
                2,
                heads(vec![
                    write(2, 3, 30, Some("Engines"), &[]),
                    write(1, 4, 30, Some("Mills"), &[]),
                ]),
            ),
        );
        r.insert(
            Path::Item(ItemKind::Phone, ItemId([9; 16])),
            (1, heads(vec![write(1, 1, 10, Some("+44"), &[])])),
        );
        r.insert(
            Path::Tag("friends".into()),
            (1, heads(vec![write(2, 5, 40, None, &[])])),
        );
        r
    }

    #[test]
    fn a_value_reads_back_as_the_registers_it_was_made_of() {
        let registers = registers();
        let value = encode(&registers);
        assert_eq!(value[0], MARK);
        assert_eq!(decode(&value).unwrap(), registers);
        // Deterministic: `verify` compares bytes.
        assert_eq!(encode(&decode(&value).unwrap()), value);
        // Each id once: smaller than format 5's map, even with five ops of two authors.
        let format_5 = encode_to_vec(&registers);
        assert!(
            value.len() * 5 < format_5.len() * 4,
            "{} vs {}",
            value.len(),
            format_5.len()
        );
    }

    #[test]
    fn a_format_5_value_still_reads() {
        let registers = registers();
        assert_eq!(decode(&encode_to_vec(&registers)).unwrap(), registers);
    }

    #[test]
    fn damaged_values_are_refused_not_misread() {
        let value = encode(&registers());
        for cut in 0..value.len() {
            assert!(decode(&value[..cut]).is_err(), "cut at {cut}");
        }
        // No registers.
        let empty = Packed {
            authors: vec![],
            writes: vec![],
            registers: vec![],
        };
        let mut v = vec![MARK];
        v.extend(encode_to_vec(&empty));
        assert!(decode(&v).is_err());
        // A head naming a write that is not there, a write naming an absent author, a path
        // twice.
        let one = |write: u32, author: u32, paths: usize| {
            let packed = Packed {
                authors: vec![DeviceId([1; 16])],
                writes: vec![PackedWrite {
                    hlc: Hlc::default(),
                    author,
                    op: OpId([1; 32]),
                    seq: 1,
                }],
                registers: (0..paths)
                    .map(|_| PackedRegister {
                        path: Path::Exists,
                        writes: 1,
                        first: First::OfWrite(0),
                        heads: vec![PackedHead {
                            write,
                            value: None,
                            replaces: vec![],
                        }],
                    })
                    .collect(),
            };
            let mut v = vec![MARK];
            v.extend(encode_to_vec(&packed));
            v
        };
        assert!(decode(&one(0, 0, 1)).is_ok());
        assert!(decode(&one(1, 0, 1)).is_err());
        assert!(decode(&one(0, 1, 1)).is_err());
        assert!(decode(&one(0, 0, 2)).is_err());
    }

    /// The encoder before session 46 (owned tables, hash maps throughout): [`encode`] must give
    /// its bytes exactly.
    fn reference_encode(registers: &ContactRegisters) -> Vec<u8> {
        let mut authors: Vec<DeviceId> = Vec::new();
        let mut author_at: HashMap<DeviceId, u32, RandomState> = HashMap::default();
        let mut writes: Vec<PackedWrite> = Vec::new();
        let mut write_at: HashMap<(OpId, Hlc, u32, u64), u32, RandomState> = HashMap::default();
        // The first write with each timestamp, for registers' first timestamps.
        let mut hlc_at: HashMap<Hlc, u32, RandomState> = HashMap::default();
        let index = |len: usize| u32::try_from(len).unwrap_or(u32::MAX);
        let mut packed = Vec::with_capacity(registers.len());
        for (path, (count, heads)) in registers {
            let mut packed_heads = Vec::new();
            for w in heads.iter() {
                let author = *author_at.entry(w.key.author).or_insert_with(|| {
                    authors.push(w.key.author);
                    index(authors.len() - 1)
                });
                let write = *write_at
                    .entry((w.key.op, w.key.hlc, author, w.seq))
                    .or_insert_with(|| {
                        writes.push(PackedWrite {
                            hlc: w.key.hlc,
                            author,
                            op: w.key.op,
                            seq: w.seq,
                        });
                        index(writes.len() - 1)
                    });
                hlc_at.entry(w.key.hlc).or_insert(write);
                packed_heads.push(PackedHead {
                    write,
                    value: w.value.clone(),
                    replaces: w.replaces.clone(),
                });
            }
            packed.push(PackedRegister {
                path: path.clone(),
                writes: *count,
                first: heads.first_hlc().map_or(First::None, First::Explicit),
                heads: packed_heads,
            });
        }
        // Once every write is in the table: a first timestamp that one of them has names it.
        for r in &mut packed {
            if let First::Explicit(hlc) = r.first {
                if let Some(at) = hlc_at.get(&hlc) {
                    r.first = First::OfWrite(*at);
                }
            }
        }
        let packed = Packed {
            authors,
            writes,
            registers: packed,
        };
        let mut value = vec![MARK];
        value.extend_from_slice(&encode_to_vec(&packed));
        value
    }

    /// The decoder before session 46 (a whole [`Packed`], then [`unpack`]): [`decode`] must
    /// accept and refuse what it does, with the same registers.
    fn reference_decode(v: &[u8]) -> Result<ContactRegisters, StoreError> {
        let registers = match v.split_first() {
            Some((&MARK, packed)) => {
                let packed: Packed = scaled!(exact, packed)?;
                unpack(packed)?
            }
            _ => return decode(v),
        };
        if registers.is_empty() {
            return Err(StoreError::undecodable("contact registers (none)"));
        }
        Ok(registers)
    }

    /// A write [`built`] makes: (path, op, milliseconds, value, replaced ops).
    type TestWrite = (u8, u8, u64, Option<u8>, Vec<u8>);

    /// Registers built from `writes`: (path, op, milliseconds, value, replaced ops), each
    /// applied to its path's heads as a store applies writes (the author is the op's number
    /// modulo 3).
    fn built(writes: &[TestWrite]) -> ContactRegisters {
        built_by(writes, 3)
    }

    /// [`built`], the author being the op's number modulo `authors`.
    fn built_by(writes: &[TestWrite], authors: u8) -> ContactRegisters {
        let paths = [
            Path::Exists,
            Path::Field(Field::Given),
            Path::Field(Field::Note),
            Path::Item(ItemKind::Email, ItemId([3; 16])),
            Path::Custom("X-A".into()),
        ];
        let mut r = ContactRegisters::new();
        for (path, op, ms, value, replaces) in writes {
            let text = value.map(|v| format!("v{v}"));
            let w = write(op % authors, *op, *ms, text.as_deref(), replaces);
            let (count, heads) = r
                .entry(paths[usize::from(*path) % paths.len()].clone())
                .or_default();
            *count += 1;
            heads.apply(w);
        }
        r
    }

    proptest::proptest! {
        #[test]
        fn any_registers_read_back_from_their_value(
            writes in proptest::collection::vec(
                (0u8..5, 1u8..8, 0u64..4, proptest::option::of(0u8..3),
                 proptest::collection::vec(1u8..8, 0..3)),
                1..30,
            )
        ) {
            let registers = built(&writes);
            let value = encode(&registers);
            proptest::prop_assert_eq!(&decode(&value).unwrap(), &registers);
            proptest::prop_assert_eq!(encode(&decode(&value).unwrap()), value);
            proptest::prop_assert_eq!(decode(&encode_to_vec(&registers)).unwrap(), registers);
        }

        #[test]
        fn any_registers_encode_as_the_reference_encoder_does(
            // Up to about 60 distinct writes: past the tables' scanned size, and below it.
            writes in proptest::collection::vec(
                (0u8..5, 1u8..60, 0u64..10, proptest::option::of(0u8..3),
                 proptest::collection::vec(1u8..60, 0..2)),
                1..120,
            )
        ) {
            // Up to 40 authors: the author table past its scanned size too.
            for authors in [3, 40] {
                let registers = built_by(&writes, authors);
                proptest::prop_assert_eq!(encode(&registers), reference_encode(&registers));
            }
        }

        #[test]
        fn any_value_decodes_as_the_reference_decoder_decodes_it(
            writes in proptest::collection::vec(
                (0u8..5, 1u8..60, 0u64..10, proptest::option::of(0u8..3),
                 proptest::collection::vec(1u8..60, 0..2)),
                1..60,
            ),
            cut in 0usize..4000,
            flip in proptest::option::of((0usize..4000, 1u8..=255)),
            tail in proptest::collection::vec(proptest::arbitrary::any::<u8>(), 0..40),
        ) {
            // A value, then the same cut short, with a byte changed, or bytes after it.
            let value = encode(&built_by(&writes, 40));
            let mut changed = value.clone();
            if let Some((at, x)) = flip {
                let at = at % changed.len();
                changed[at] ^= x;
            }
            let cut_short = value[..cut.min(value.len())].to_vec();
            let longer = [value.clone(), tail.clone()].concat();
            let random = [vec![MARK], tail].concat();
            for v in [value, changed, cut_short, longer, random] {
                match (decode(&v), reference_decode(&v)) {
                    (Ok(a), Ok(b)) => proptest::prop_assert_eq!(a, b),
                    (Err(_), Err(_)) => {}
                    (a, b) => proptest::prop_assert!(false, "{v:?}: {a:?} against {b:?}"),
                }
            }
        }

        #[test]
        fn any_bytes_are_read_or_refused_without_a_panic(
            bytes in proptest::collection::vec(proptest::arbitrary::any::<u8>(), 0..200)
        ) {
            for v in [bytes.clone(), [vec![MARK], bytes].concat()] {
                if let Ok(registers) = decode(&v) {
                    proptest::prop_assert_eq!(decode(&encode(&registers)).unwrap(), registers);
                }
            }
        }
    }
}

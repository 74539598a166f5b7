//! The stable driver's input mutator: a seeded PRNG and byte-level mutations in the spirit of
//! libFuzzer's (bit flips, interesting bytes, inserts, deletes, copies, splices with other
//! corpus inputs), plus two that know the formats: LEB128 numbers at interesting values (counts
//! and lengths at and past their limits) and edits of whole `u16`-length-prefixed chunks (the
//! `replay_ops` and `sync_session` framing). Without coverage feedback these are what gets
//! random inputs past the first length check.

/// A small, fast, seeded PRNG (splitmix64): the same seed gives the same run.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator from `seed`.
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (0 when `n` is 0).
    pub fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            return 0;
        }
        usize::try_from(self.next_u64() % n as u64).unwrap_or(0)
    }

    /// A random byte.
    pub fn byte(&mut self) -> u8 {
        self.next_u64().to_le_bytes()[0]
    }
}

/// Bytes that tend to sit on boundaries: zero, one, the LEB128 continuation bit, sign bits, all
/// ones, and the `sync_session` selector bits.
const INTERESTING_BYTES: [u8; 10] = [0, 1, 2, 0x3f, 0x40, 0x7f, 0x80, 0x81, 0xfe, 0xff];

/// Numbers worth writing as LEB128: small ones, byte boundaries, and the sync formats' limits
/// and one past them (2^16 authors/segments/forks, 2^20 summary authors, 2^22 ops per segment,
/// 4096 reason bytes, 256 MiB messages), and the largest.
const INTERESTING_NUMBERS: [u64; 22] = [
    0,
    1,
    2,
    3,
    0x7f,
    0x80,
    0x3fff,
    0x4000,
    4096,
    4097,
    1 << 16,
    (1 << 16) + 1,
    1 << 20,
    (1 << 20) + 1,
    1 << 22,
    (1 << 22) + 1,
    256 << 20,
    (256 << 20) + 1,
    u32::MAX as u64,
    1 << 35,
    u64::MAX - 1,
    u64::MAX,
];

fn leb128(mut v: u64) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let byte = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            out.push(byte);
            return out;
        }
        out.push(byte | 0x80);
    }
}

/// Splits `data` into `u16`-little-endian-length-prefixed chunks if it is exactly such a
/// sequence.
fn chunks(data: &[u8]) -> Option<Vec<Vec<u8>>> {
    let mut out = Vec::new();
    let mut rest = data;
    while !rest.is_empty() {
        let (len, tail) = rest.split_first_chunk::<2>()?;
        let len = usize::from(u16::from_le_bytes(*len));
        if tail.len() < len {
            return None;
        }
        let (chunk, tail) = tail.split_at(len);
        out.push(chunk.to_vec());
        rest = tail;
    }
    Some(out)
}

fn unchunk(chunks: &[Vec<u8>]) -> Vec<u8> {
    let mut out = Vec::new();
    for c in chunks {
        let len = u16::try_from(c.len()).unwrap_or(u16::MAX);
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(c.get(..usize::from(len)).unwrap_or(c));
    }
    out
}

/// A random range of `data`: start and length (at most `max`, at least 1 when `data` is not
/// empty).
fn range(rng: &mut Rng, len: usize, max: usize) -> (usize, usize) {
    let start = rng.below(len);
    let n = 1 + rng.below(max.min(len - start).max(1));
    (start, n.min(len - start))
}

/// Applies one to six random mutations to `input`; `corpus` supplies material for splices.
/// The result is at most `max_len` bytes.
pub fn mutate(rng: &mut Rng, input: &[u8], corpus: &[Vec<u8>], max_len: usize) -> Vec<u8> {
    let mut data = input.to_vec();
    let rounds = 1 + rng.below(6);
    for _ in 0..rounds {
        mutate_once(rng, &mut data, corpus);
    }
    data.truncate(max_len);
    data
}

fn mutate_once(rng: &mut Rng, data: &mut Vec<u8>, corpus: &[Vec<u8>]) {
    let other: &[u8] = corpus
        .get(rng.below(corpus.len()))
        .map(Vec::as_slice)
        .unwrap_or_default();
    match rng.below(BYTE_MUTATIONS + 3) {
        // Whole chunks: drop, duplicate, swap, or take one from another input.
        11 | 12 => {
            if let Some(mut cs) = chunks(data) {
                let theirs = chunks(other).unwrap_or_default();
                match rng.below(4) {
                    0 if !cs.is_empty() => {
                        cs.remove(rng.below(cs.len()));
                    }
                    1 if !cs.is_empty() => {
                        let c = cs[rng.below(cs.len())].clone();
                        cs.insert(rng.below(cs.len() + 1), c);
                    }
                    2 if cs.len() >= 2 => {
                        let (a, b) = (rng.below(cs.len()), rng.below(cs.len()));
                        cs.swap(a, b);
                    }
                    _ if !theirs.is_empty() => {
                        let c = theirs[rng.below(theirs.len())].clone();
                        cs.insert(rng.below(cs.len() + 1), c);
                    }
                    _ => {}
                }
                *data = unchunk(&cs);
            } else if let Some(b) = data.get_mut(0) {
                // Not chunked: try another mode or selector byte instead.
                *b = rng.byte();
            }
        }
        // Mutate inside one chunk, keeping the framing right.
        13 => match chunks(data) {
            Some(mut cs) if !cs.is_empty() => {
                let i = rng.below(cs.len());
                let choice = rng.below(BYTE_MUTATIONS);
                let mut inner = cs[i].clone();
                byte_mutation(rng, &mut inner, other, choice);
                inner.truncate(usize::from(u16::MAX));
                cs[i] = inner;
                *data = unchunk(&cs);
            }
            _ => byte_mutation(rng, data, other, 0),
        },
        choice => byte_mutation(rng, data, other, choice),
    }
}

/// How many byte-level mutations [`byte_mutation`] knows.
const BYTE_MUTATIONS: usize = 11;

/// Byte-level mutation number `choice` (0..[`BYTE_MUTATIONS`]) of `data`; `other` is another
/// corpus input for splices. A mutation that cannot apply (an empty input) does nothing.
fn byte_mutation(rng: &mut Rng, data: &mut Vec<u8>, other: &[u8], choice: usize) {
    match choice {
        // Flip one bit.
        0 if !data.is_empty() => {
            let i = rng.below(data.len());
            if let Some(b) = data.get_mut(i) {
                *b ^= 1 << rng.below(8);
            }
        }
        // An interesting or random byte.
        1 if !data.is_empty() => {
            let i = rng.below(data.len());
            let v = if rng.below(2) == 0 {
                INTERESTING_BYTES[rng.below(INTERESTING_BYTES.len())]
            } else {
                rng.byte()
            };
            if let Some(b) = data.get_mut(i) {
                *b = v;
            }
        }
        // Add or subtract a little.
        2 if !data.is_empty() => {
            let i = rng.below(data.len());
            let delta = 1 + rng.below(8) as u8;
            if let Some(b) = data.get_mut(i) {
                *b = if rng.below(2) == 0 {
                    b.wrapping_add(delta)
                } else {
                    b.wrapping_sub(delta)
                };
            }
        }
        // Insert random bytes.
        3 => {
            let at = rng.below(data.len() + 1);
            let n = 1 + rng.below(8);
            let bytes: Vec<u8> = (0..n).map(|_| rng.byte()).collect();
            data.splice(at..at, bytes);
        }
        // Delete a range.
        4 if !data.is_empty() => {
            let (start, n) = range(rng, data.len(), 32);
            data.drain(start..start + n);
        }
        // Copy a range elsewhere (insert).
        5 if !data.is_empty() => {
            let (start, n) = range(rng, data.len(), 64);
            let piece: Vec<u8> = data.get(start..start + n).unwrap_or_default().to_vec();
            let at = rng.below(data.len() + 1);
            data.splice(at..at, piece);
        }
        // Splice: this input's head, another's tail.
        6 if !other.is_empty() => {
            let cut = rng.below(data.len() + 1);
            let from = rng.below(other.len());
            data.truncate(cut);
            data.extend_from_slice(other.get(from..).unwrap_or_default());
        }
        // Insert a piece of another input.
        7 if !other.is_empty() => {
            let (start, n) = range(rng, other.len(), 128);
            let at = rng.below(data.len() + 1);
            data.splice(
                at..at,
                other.get(start..start + n).unwrap_or_default().to_vec(),
            );
        }
        // An interesting number in LEB128, replacing what is there or inserted.
        8 => {
            let v = INTERESTING_NUMBERS[rng.below(INTERESTING_NUMBERS.len())];
            let bytes = leb128(v);
            let at = rng.below(data.len() + 1);
            let end = if rng.below(2) == 0 {
                // Replace one varint's worth (up to the first byte without continuation bit).
                let mut e = at;
                while let Some(b) = data.get(e) {
                    e += 1;
                    if b & 0x80 == 0 {
                        break;
                    }
                }
                e
            } else {
                at
            };
            data.splice(at..end, bytes);
        }
        // A little-endian u16 (a chunk length) nudged or set to a boundary.
        9 if data.len() >= 2 => {
            let i = rng.below(data.len() - 1);
            let old = u16::from_le_bytes([data[i], data[i + 1]]);
            let new = match rng.below(4) {
                0 => old.wrapping_add(1 + rng.below(16) as u16),
                1 => old.wrapping_sub(1 + rng.below(16) as u16),
                2 => 0,
                _ => u16::MAX,
            };
            data[i..i + 2].copy_from_slice(&new.to_le_bytes());
        }
        // Truncate.
        10 if !data.is_empty() => {
            let at = rng.below(data.len());
            data.truncate(at);
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_round_trip() {
        let data = unchunk(&[vec![1, 2, 3], vec![], vec![9]]);
        assert_eq!(chunks(&data), Some(vec![vec![1, 2, 3], vec![], vec![9]]));
        assert_eq!(chunks(&[5, 0, 1]), None);
    }
}

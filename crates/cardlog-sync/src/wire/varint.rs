//! LEB128 unsigned integers, strictly decoded: the shortest form only, at most 64 bits. Used
//! for the segment encoding, where most numbers (seq deltas, table indexes, counts) are small.

use super::error::WireError;

/// Appends `v` in LEB128.
pub fn put(out: &mut Vec<u8>, mut v: u64) {
    loop {
        let byte = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

/// Reads one LEB128 number from the front of `input`, advancing it.
pub fn get(input: &mut &[u8]) -> Result<u64, WireError> {
    let mut value: u64 = 0;
    for i in 0..10u32 {
        let (&byte, rest) = input.split_first().ok_or(WireError::Truncated)?;
        *input = rest;
        let bits = u64::from(byte & 0x7f);
        if i == 9 && bits > 1 {
            return Err(WireError::Varint("more than 64 bits"));
        }
        value |= bits << (7 * i);
        if byte & 0x80 == 0 {
            if byte == 0 && i > 0 {
                return Err(WireError::Varint("not in its shortest form"));
            }
            return Ok(value);
        }
    }
    Err(WireError::Varint("more than 10 bytes"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_strictness() {
        for v in [
            0,
            1,
            127,
            128,
            300,
            16_383,
            16_384,
            u64::from(u32::MAX),
            u64::MAX,
        ] {
            let mut out = Vec::new();
            put(&mut out, v);
            let mut input = out.as_slice();
            assert_eq!(get(&mut input), Ok(v));
            assert!(input.is_empty());
        }
        // 0 written in two bytes, and 1 padded: both refused.
        assert!(get(&mut [0x80u8, 0x00].as_slice()).is_err());
        assert!(get(&mut [0x81u8, 0x00].as_slice()).is_err());
        assert_eq!(get(&mut [0x80u8].as_slice()), Err(WireError::Truncated));
        assert!(get(&mut [0xffu8; 10].as_slice()).is_err());
    }
}

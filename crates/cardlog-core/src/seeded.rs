//! Deterministic shuffling for tests, the simulator and benchmarks: the same seed gives the same
//! order on every machine, so a failing case replays from its printed seed. Never used for ids
//! or anything an attacker could predict to their gain (ids come from the OS's randomness).

/// Shuffles `items` in place (Fisher–Yates driven by xorshift64 from `seed`).
pub fn shuffle<T>(items: &mut [T], mut seed: u64) {
    seed |= 1;
    for i in (1..items.len()).rev() {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        items.swap(i, (seed % (i as u64 + 1)) as usize);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_seed_gives_one_order_and_another_seed_another() {
        let mut a: Vec<u32> = (0..32).collect();
        let mut b = a.clone();
        let mut c = a.clone();
        shuffle(&mut a, 7);
        shuffle(&mut b, 7);
        shuffle(&mut c, 8);
        assert_eq!(a, b);
        assert_ne!(a, c);
        let mut sorted = a.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, (0..32).collect::<Vec<_>>());
    }
}

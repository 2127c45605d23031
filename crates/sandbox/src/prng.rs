//! A tiny deterministic PRNG (SplitMix64), so the synthetic data is the same on every run and
//! every machine without a `rand` dependency.
//!
//! Only integer arithmetic is used here and in the generators: floating-point functions such as
//! `ln` or `exp` come from the platform's libm and may differ in the last bit between machines,
//! which would break "same id, same document".

/// SplitMix64 (Steele, Lea and Flood, 2014): one 64-bit state, full period, good enough
/// statistical quality for test data.
#[derive(Debug, Clone)]
pub(crate) struct SplitMix64 {
    state: u64,
}

impl SplitMix64 {
    /// A generator for one stream, e.g. one customer: `domain` separates kinds of data and
    /// `index` the items of a kind, so changing one kind never shifts another.
    pub(crate) fn for_item(domain: u64, index: u64) -> Self {
        let mut seeder = SplitMix64 {
            state: domain ^ index.wrapping_mul(0xD1B5_4A32_D192_ED03),
        };
        SplitMix64 {
            state: seeder.next_u64(),
        }
    }

    /// A generator seeded directly.
    pub(crate) fn new(seed: u64) -> Self {
        SplitMix64 { state: seed }
    }

    /// The next 64 random bits.
    pub(crate) fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (`0` when `n` is `0`), by Lemire's multiply-shift.
    pub(crate) fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }

    /// A number in `lo..=hi`.
    pub(crate) fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.below(hi - lo + 1)
    }

    /// `true` with a probability of `percent` in 100.
    pub(crate) fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }

    /// One item, uniformly.
    pub(crate) fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }

    /// One item, with probability proportional to its weight.
    pub(crate) fn weighted<'a, T>(&mut self, items: &'a [(T, u32)]) -> &'a T {
        let total: u64 = items.iter().map(|(_, w)| u64::from(*w)).sum();
        let mut ticket = self.below(total);
        for (item, weight) in items {
            if ticket < u64::from(*weight) {
                return item;
            }
            ticket -= u64::from(*weight);
        }
        // Unreachable for a non-empty table: the tickets add up to `total`.
        &items[items.len() - 1].0
    }

    /// A value in `lo..hi`, skewed toward `lo` (the smaller of two uniform draws), the way
    /// amounts cluster at the bottom of a bracket.
    pub(crate) fn skewed(&mut self, lo: u64, hi: u64) -> u64 {
        let a = self.below(hi - lo);
        let b = self.below(hi - lo);
        lo + a.min(b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_sequence_for_seed_zero() {
        // Reference values of SplitMix64 from seed 0 (as in the xoshiro authors' C code).
        let mut r = SplitMix64::new(0);
        assert_eq!(r.next_u64(), 0xE220_A839_7B1D_CDAF);
        assert_eq!(r.next_u64(), 0x6E78_9E6A_A1B9_65F4);
        assert_eq!(r.next_u64(), 0x06C4_5D18_8009_454F);
    }

    #[test]
    fn bounded_draws_stay_in_range() {
        let mut r = SplitMix64::new(7);
        for _ in 0..10_000 {
            assert!(r.below(10) < 10);
            let v = r.range(5, 9);
            assert!((5..=9).contains(&v));
            let s = r.skewed(100, 200);
            assert!((100..200).contains(&s));
        }
        assert_eq!(r.below(0), 0);
    }

    #[test]
    fn weighted_never_picks_zero_weight() {
        let mut r = SplitMix64::new(1);
        let table = [("a", 0), ("b", 3), ("c", 0), ("d", 1)];
        for _ in 0..1000 {
            let v = *r.weighted(&table);
            assert!(v == "b" || v == "d");
        }
    }
}

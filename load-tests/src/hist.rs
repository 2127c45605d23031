//! A log-linear latency histogram in the manner of HdrHistogram.
//!
//! Values are nanoseconds. Below 128 every value has its own bucket; above, each power of two
//! is split into 128 buckets, so a recorded value is known to within 1/128 (0.8 %) of
//! itself. Memory is fixed (about 35 KiB) whatever the number of samples, merging is adding
//! counts, and percentiles report the highest value equivalent to the bucket (as
//! HdrHistogram does), clamped to the largest value actually seen.

/// Sub-buckets per power of two, as a power of two.
const SUB_BITS: u32 = 7;
/// Sub-buckets per power of two.
const SUB: u64 = 1 << SUB_BITS;
/// Largest exponent tracked: values at or above 2^40 ns (18 minutes) land in the top bucket.
const MAX_EXP: u32 = 40;
/// Number of buckets.
const BUCKETS: usize = ((MAX_EXP - SUB_BITS + 2) as usize) * SUB as usize;

/// Latency histogram of nanosecond values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Histogram {
    counts: Vec<u64>,
    total: u64,
    min: u64,
    max: u64,
    sum: u128,
}

impl Default for Histogram {
    fn default() -> Self {
        Self::new()
    }
}

impl Histogram {
    /// An empty histogram.
    pub fn new() -> Self {
        Histogram {
            counts: vec![0; BUCKETS],
            total: 0,
            min: u64::MAX,
            max: 0,
            sum: 0,
        }
    }

    /// Records one value (nanoseconds).
    pub fn record(&mut self, value: u64) {
        self.counts[index(value)] += 1;
        self.total += 1;
        self.min = self.min.min(value);
        self.max = self.max.max(value);
        self.sum += u128::from(value);
    }

    /// Adds every sample of `other`.
    pub fn merge(&mut self, other: &Histogram) {
        for (mine, theirs) in self.counts.iter_mut().zip(&other.counts) {
            *mine += theirs;
        }
        self.total += other.total;
        self.min = self.min.min(other.min);
        self.max = self.max.max(other.max);
        self.sum += other.sum;
    }

    /// Number of recorded values.
    pub fn len(&self) -> u64 {
        self.total
    }

    /// Whether nothing was recorded.
    pub fn is_empty(&self) -> bool {
        self.total == 0
    }

    /// Smallest recorded value (0 when empty).
    pub fn min(&self) -> u64 {
        if self.is_empty() { 0 } else { self.min }
    }

    /// Largest recorded value (0 when empty).
    pub fn max(&self) -> u64 {
        self.max
    }

    /// Mean of the recorded values (0 when empty).
    pub fn mean(&self) -> f64 {
        if self.is_empty() {
            0.0
        } else {
            self.sum as f64 / self.total as f64
        }
    }

    /// The value at quantile `q` (0.0–1.0): the smallest bucket whose cumulative count
    /// reaches `ceil(q × n)`, reported as the highest value of that bucket, clamped to the
    /// recorded range. 0 when empty.
    pub fn quantile(&self, q: f64) -> u64 {
        if self.is_empty() {
            return 0;
        }
        let q = q.clamp(0.0, 1.0);
        let rank = ((q * self.total as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (i, count) in self.counts.iter().enumerate() {
            seen += count;
            if seen >= rank {
                return highest_equivalent(i).clamp(self.min, self.max);
            }
        }
        self.max
    }
}

/// The bucket of `value`.
fn index(value: u64) -> usize {
    if value < SUB {
        return value as usize;
    }
    let exp = (63 - value.leading_zeros()).min(MAX_EXP);
    if exp == MAX_EXP {
        return BUCKETS - 1;
    }
    let shift = exp - SUB_BITS;
    let sub = (value >> shift) - SUB;
    ((u64::from(shift) + 1) * SUB + sub) as usize
}

/// The largest value that lands in bucket `i`.
fn highest_equivalent(i: usize) -> u64 {
    let i = i as u64;
    if i < SUB {
        return i;
    }
    let shift = i / SUB - 1;
    let sub = i % SUB;
    ((SUB + sub) << shift) + (1 << shift) - 1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_values_are_exact() {
        let mut h = Histogram::new();
        for v in [0, 1, 5, 127] {
            h.record(v);
        }
        assert_eq!(h.quantile(0.25), 0);
        assert_eq!(h.quantile(0.5), 1);
        assert_eq!(h.quantile(0.75), 5);
        assert_eq!(h.quantile(1.0), 127);
    }

    #[test]
    fn every_bucket_holds_the_values_that_map_to_it() {
        for v in [
            128,
            129,
            255,
            256,
            257,
            1_000,
            65_535,
            1 << 20,
            (1 << 39) + 12_345,
        ] {
            let i = index(v);
            assert!(highest_equivalent(i) >= v, "{v}");
            if i > 0 {
                assert!(highest_equivalent(i - 1) < v, "{v}");
            }
        }
    }

    #[test]
    fn percentiles_of_a_uniform_range_are_within_one_percent() {
        let mut h = Histogram::new();
        // 1 µs .. 10 ms in 1 µs steps.
        for us in 1..=10_000u64 {
            h.record(us * 1_000);
        }
        for (q, expected) in [
            (0.5, 5_000_000.0),
            (0.99, 9_900_000.0),
            (0.999, 9_990_000.0),
        ] {
            let got = h.quantile(q) as f64;
            assert!(
                (got - expected).abs() / expected < 0.01,
                "q={q}: {got} vs {expected}"
            );
        }
        assert_eq!(h.len(), 10_000);
        assert_eq!(h.min(), 1_000);
        assert_eq!(h.max(), 10_000_000);
        assert_eq!(h.quantile(1.0), 10_000_000);
        assert!((h.mean() - 5_000_500.0).abs() < 1.0);
    }

    #[test]
    fn a_single_outlier_shows_only_in_the_top_quantiles() {
        let mut h = Histogram::new();
        for _ in 0..999 {
            h.record(100_000);
        }
        h.record(50_000_000);
        assert!(h.quantile(0.99) < 101_000);
        assert!(h.quantile(0.999) < 101_000);
        assert_eq!(h.quantile(0.9999), 50_000_000);
    }

    #[test]
    fn merge_equals_recording_everything_in_one() {
        let (mut a, mut b, mut both) = (Histogram::new(), Histogram::new(), Histogram::new());
        for v in (0..5_000u64).map(|i| i * 7_919 % 3_000_000) {
            if v % 2 == 0 {
                a.record(v)
            } else {
                b.record(v)
            }
            both.record(v);
        }
        a.merge(&b);
        assert_eq!(a, both);
    }

    #[test]
    fn empty_and_huge_values_do_not_panic() {
        let mut h = Histogram::new();
        assert_eq!(h.quantile(0.99), 0);
        assert_eq!(h.min(), 0);
        assert_eq!(h.mean(), 0.0);
        h.record(u64::MAX);
        assert_eq!(h.quantile(0.5), u64::MAX);
        let mut empty = Histogram::new();
        empty.merge(&Histogram::new());
        assert!(empty.is_empty());
    }
}

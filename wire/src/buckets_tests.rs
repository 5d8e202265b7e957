use super::*;

/// xorshift64*: deterministic values of every magnitude, no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// 0 µs to ~100 s, log-uniform-ish, with bucket bounds themselves now and then.
    fn micros(&mut self, bounds: &[f64]) -> u64 {
        match self.next() % 8 {
            0 => (bounds[(self.next() as usize) % bounds.len()] * 1e6).round() as u64,
            _ => self.next() % 10u64.pow(1 + (self.next() % 8) as u32),
        }
    }
}

/// Per-bucket counts and sum of what `values` would record, one value at a time.
fn recorded(bounds: &[f64], values: impl Iterator<Item = (u64, u64)>) -> (Vec<u64>, u128) {
    let mut counts = vec![0; bounds.len() + 1];
    let mut sum = 0u128;
    for (us, n) in values {
        counts[bucket_index(bounds, us)] += n;
        sum += u128::from(us) * u128::from(n);
    }
    (counts, sum)
}

#[test]
fn values_fall_in_the_bucket_prometheus_puts_them_in() {
    let b = CONNECT_BUCKETS;
    assert_eq!(bucket_index(b, 0), 0);
    assert_eq!(bucket_index(b, 100), 0, "le is inclusive");
    assert_eq!(bucket_index(b, 101), 1);
    assert_eq!(bucket_index(b, 250), 1);
    assert_eq!(bucket_index(b, 60_000_000), b.len() - 1);
    assert_eq!(bucket_index(b, 60_000_001), b.len(), "+Inf");
    for bounds in [CONNECT_BUCKETS, FIRST_BYTE_BUCKETS] {
        for i in 0..=bounds.len() {
            let (low, high) = bucket_range_us(bounds, i);
            assert_eq!(bucket_index(bounds, low), i, "{i}: {low}");
            if let Some(high) = high {
                assert_eq!(bucket_index(bounds, high), i, "{i}: {high}");
                assert_eq!(bucket_index(bounds, high + 1), i + 1, "{i}: {high} + 1");
            }
            if low > 0 {
                assert_eq!(bucket_index(bounds, low - 1), i - 1, "{i}: {low} - 1");
            }
        }
    }
}

#[test]
fn spread_values_give_the_same_buckets_count_and_sum_as_each_value() {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    for bounds in [CONNECT_BUCKETS, FIRST_BYTE_BUCKETS] {
        for round in 0..2000 {
            let n = 1 + rng.next() % if round % 10 == 0 { 5000 } else { 20 };
            let values: Vec<u64> = (0..n).map(|_| rng.micros(bounds)).collect();
            let mut summary = BucketCounts::default();
            values.iter().for_each(|&v| summary.add(bounds, v));
            assert_eq!(summary.total(), n);
            let spread = spread(bounds, &summary.counts, summary.sum_us);
            assert_eq!((spread.sum_error_us, spread.extra_counts), (0, 0));
            let want = recorded(bounds, values.iter().map(|&v| (v, 1)));
            assert_eq!(recorded(bounds, spread.values.iter().copied()), want);
            let buckets_used = summary.counts.iter().filter(|&&c| c > 0).count();
            assert!(spread.values.len() <= 3 * buckets_used, "{spread:?}");
        }
    }
}

#[test]
fn trailing_empty_buckets_are_not_kept() {
    let mut summary = BucketCounts::default();
    summary.add(CONNECT_BUCKETS, 40);
    summary.add(CONNECT_BUCKETS, 90);
    assert_eq!(summary.counts, [2]);
    summary.add(CONNECT_BUCKETS, 700);
    assert_eq!(summary.counts, [2, 0, 0, 1]);
    assert_eq!(summary.sum_us, 830);
}

#[test]
fn impossible_sums_keep_the_counts_and_say_how_far_off_they_are() {
    let b = FIRST_BYTE_BUCKETS;
    // Two values of at most 1 ms cannot add up to 5 ms, nor one of 1..5 ms to nothing.
    let high = spread(b, &[2], 5000);
    assert_eq!(high.values, [(1000, 2)]);
    assert_eq!(high.sum_error_us, 3000);
    let low = spread(b, &[0, 1], 0);
    assert_eq!(low.values, [(1001, 1)]);
    assert_eq!(low.sum_error_us, -1001);
    // +Inf takes any excess; counts past it are reported, not recorded.
    let mut counts = vec![0; b.len() + 3];
    counts[b.len()] = 2;
    counts[b.len() + 2] = 7;
    let inf = spread(b, &counts, 500_000_000);
    assert_eq!(inf.values, [(439_999_999, 1), (60_000_001, 1)]);
    assert_eq!((inf.sum_error_us, inf.extra_counts), (0, 7));
}

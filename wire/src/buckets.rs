//! The histogram buckets of connect time and time to first byte, shared by the agent (which
//! counts healthy connections per bucket in a [`crate::ConnectionSummary`]) and the collector
//! (whose Prometheus histograms use the same bounds). A value falls in the first bucket whose
//! bound it does not exceed (Prometheus' `le`), compared in seconds as `us as f64 / 1e6`, the
//! way the collector records a single connection; past the last bound is `+Inf`.
//!
//! [`spread`] turns a summary's bucket counts and exact sum back into values, so that a
//! histogram that only records values gets the same bucket counts, count and sum as if it
//! had recorded every connection.

/// Connect times on loopback are tens of µs, across a network ms; SYN retries add 1, 3, 7 s.
pub const CONNECT_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 3.0,
    7.0, 15.0, 60.0,
];
/// First byte: an application's think time, up to nginx's default 60 s read timeout.
pub const FIRST_BYTE_BUCKETS: &[f64] = &[
    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];

/// The bucket `us` falls in: an index into `bounds`, or `bounds.len()` for `+Inf`.
pub fn bucket_index(bounds: &[f64], us: u64) -> usize {
    let seconds = us as f64 / 1e6;
    bounds
        .iter()
        .position(|&bound| seconds <= bound)
        .unwrap_or(bounds.len())
}

/// Per-bucket counts of microsecond values; trailing empty buckets are not kept, so what
/// goes on the wire is as short as the largest value needs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BucketCounts {
    pub counts: Vec<u64>,
    pub sum_us: u64,
}

impl BucketCounts {
    pub fn add(&mut self, bounds: &[f64], us: u64) {
        let index = bucket_index(bounds, us);
        if self.counts.len() <= index {
            self.counts.resize(index + 1, 0);
        }
        self.counts[index] += 1;
        self.sum_us = self.sum_us.saturating_add(us);
    }

    pub fn total(&self) -> u64 {
        self.counts.iter().sum()
    }
}

/// The integer microseconds of bucket `index`: (smallest, largest), `None` above for +Inf.
fn bucket_range_us(bounds: &[f64], index: usize) -> (u64, Option<u64>) {
    // The largest µs value at or below each bound, found with the comparison that places
    // values (the bounds are decimals f64 cannot hold exactly).
    let top = |bound: f64| {
        let mut us = (bound * 1e6).floor() as u64;
        while us as f64 / 1e6 > bound {
            us -= 1;
        }
        while (us + 1) as f64 / 1e6 <= bound {
            us += 1;
        }
        us
    };
    let low = match index {
        0 => 0,
        i => top(bounds[i - 1]) + 1,
    };
    (low, bounds.get(index).map(|&b| top(b)))
}

/// Values to record for a summary: (microseconds, how many times).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Spread {
    pub values: Vec<(u64, u64)>,
    /// The summary's sum minus the sum of `values`: 0 unless the sum is impossible for its
    /// bucket counts (a forged or corrupt summary), in which case the values keep the
    /// counts and come as close to the sum as the buckets allow.
    pub sum_error_us: i128,
    /// Counts past the `+Inf` bucket (a summary longer than the bounds): not recorded.
    pub extra_counts: u64,
}

/// Values that land `counts[i]` times in bucket `i` and add up to `sum_us` exactly: each
/// starts at its bucket's smallest value, then the rest of the sum fills buckets up to their
/// largest value, in order. At most three distinct values per bucket, so a histogram records
/// them with `record_many`.
pub fn spread(bounds: &[f64], counts: &[u64], sum_us: u64) -> Spread {
    let kept = counts.len().min(bounds.len() + 1);
    let extra_counts = counts[kept..].iter().sum();
    let counts = &counts[..kept];
    let floor: u128 = counts
        .iter()
        .enumerate()
        .map(|(i, &c)| u128::from(c) * u128::from(bucket_range_us(bounds, i).0))
        .sum();
    let mut slack = i128::from(sum_us) - floor as i128;
    let mut values = Vec::with_capacity(3 * counts.len());
    let mut push = |us: u64, n: u64| {
        if n > 0 {
            values.push((us, n));
        }
    };
    for (i, &count) in counts.iter().enumerate() {
        let (low, high) = bucket_range_us(bounds, i);
        if count == 0 {
            continue;
        }
        let room = high.map_or(u128::MAX, |h| u128::from(h - low));
        let want = slack.max(0) as u128;
        // `full` values go to the top; one takes what is left over; the rest stay low.
        let full = want
            .checked_div(room)
            .map_or(0, |n| n.min(u128::from(count)) as u64);
        let rest = if full < count {
            want - u128::from(full) * room
        } else {
            0
        };
        let rest = rest.min(room).min(u128::from(u64::MAX - low)) as u64;
        push(high.unwrap_or(low), full);
        let mut left = count - full;
        if rest > 0 {
            push(low + rest, 1);
            left -= 1;
        }
        push(low, left);
        slack -= (u128::from(full) * room + u128::from(rest)) as i128;
    }
    Spread {
        values,
        sum_error_us: slack,
        extra_counts,
    }
}

#[cfg(test)]
#[path = "buckets_tests.rs"]
mod tests;

//! Time: probe timestamps are CLOCK_MONOTONIC (`bpf_ktime_get_ns`) while records carry
//! wall-clock time; civil dates to Unix time (nginx's logs) and back (RFC 3339 output).

pub struct MonotonicClock {
    /// CLOCK_REALTIME - CLOCK_MONOTONIC, in ns, taken once at start.
    offset_ns: i128,
}

fn clock_ns(id: libc::clockid_t) -> i128 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: valid pointer to a timespec.
    unsafe { libc::clock_gettime(id, &mut ts) };
    i128::from(ts.tv_sec) * 1_000_000_000 + i128::from(ts.tv_nsec)
}

impl MonotonicClock {
    pub fn now() -> Self {
        MonotonicClock {
            offset_ns: clock_ns(libc::CLOCK_REALTIME) - clock_ns(libc::CLOCK_MONOTONIC),
        }
    }

    /// Unix time in ns of a monotonic timestamp.
    pub fn unix_ns(&self, monotonic_ns: u64) -> i128 {
        i128::from(monotonic_ns) + self.offset_ns
    }
}

/// Current wall clock as Unix ns.
pub fn unix_now_ns() -> i128 {
    clock_ns(libc::CLOCK_REALTIME)
}

/// Serde: Unix ns written as RFC 3339 (times are kept as numbers, formatted only for output).
pub fn serialize_rfc3339<S: serde::Serializer>(unix_ns: &i128, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&rfc3339(*unix_ns))
}

pub fn serialize_rfc3339_opt<S: serde::Serializer>(
    unix_ns: &Option<i128>,
    s: S,
) -> Result<S::Ok, S::Error> {
    match unix_ns {
        Some(ns) => serialize_rfc3339(ns, s),
        None => s.serialize_none(),
    }
}

/// RFC 3339 UTC with microseconds, e.g. `2026-11-25T10:13:58.123456Z`.
pub fn rfc3339(unix_ns: i128) -> String {
    let secs = unix_ns.div_euclid(1_000_000_000) as i64;
    let micros = unix_ns.rem_euclid(1_000_000_000) / 1000;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{micros:06}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian (H. Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// Seconds since the Unix epoch for a UTC civil time (H. Hinnant's days_from_civil).
pub fn civil_to_unix(
    year: u32,
    month: u32,
    day: u32,
    hour: u32,
    min: u32,
    sec: u32,
) -> Option<i64> {
    let valid =
        (1..=12).contains(&month) && (1..=31).contains(&day) && hour < 24 && min < 60 && sec <= 60;
    if !valid {
        return None;
    }
    let y = i64::from(year) - i64::from(month <= 2);
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (i64::from(month) + 9) % 12;
    let doy = (153 * mp + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(days * 86_400 + i64::from(hour) * 3_600 + i64::from(min) * 60 + i64::from(sec))
}

#[cfg(test)]
mod tests {
    use super::civil_to_unix;

    #[test]
    fn epoch_conversion() {
        assert_eq!(civil_to_unix(1970, 1, 1, 0, 0, 0), Some(0));
        assert_eq!(civil_to_unix(2000, 2, 29, 12, 0, 0), Some(951_825_600));
        assert_eq!(civil_to_unix(2024, 0, 1, 0, 0, 0), None);
    }

    #[test]
    fn formats_utc() {
        assert_eq!(super::rfc3339(0), "1970-01-01T00:00:00.000000Z");
        assert_eq!(
            super::rfc3339(1_795_602_838_123_456_789),
            "2026-11-25T10:33:58.123456Z"
        );
    }
}

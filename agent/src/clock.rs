//! Time: probe timestamps are CLOCK_MONOTONIC (`bpf_ktime_get_ns`) while records carry
//! wall-clock time, printed as RFC 3339 (calendar arithmetic in `vigil_wire::time`).

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
    let mut out = Vec::with_capacity(27);
    write_rfc3339(&mut out, unix_ns);
    String::from_utf8(out).expect("ASCII")
}

/// `rfc3339` appended to `out` digit by digit: `trace` writes one per connection, and
/// `format!` cost more than the rest of its line.
pub fn write_rfc3339(out: &mut Vec<u8>, unix_ns: i128) {
    let secs = unix_ns.div_euclid(1_000_000_000) as i64;
    let micros = (unix_ns.rem_euclid(1_000_000_000) / 1000) as u32;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400) as u32);
    let (y, m, d) = vigil_wire::time::civil_from_days(days);
    if !(0..=9999).contains(&y) {
        // Outside four digits (never from a real clock): the plain way.
        let (h, min, s) = (rem / 3600, rem % 3600 / 60, rem % 60);
        let text = format!("{y:04}-{m:02}-{d:02}T{h:02}:{min:02}:{s:02}.{micros:06}Z");
        out.extend_from_slice(text.as_bytes());
        return;
    }
    let mut digits = |value: u32, width: usize, after: u8| {
        let mut buf = [b'0'; 6];
        let mut v = value;
        for slot in buf[..width].iter_mut().rev() {
            *slot = b'0' + (v % 10) as u8;
            v /= 10;
        }
        out.extend_from_slice(&buf[..width]);
        out.push(after);
    };
    digits(y as u32, 4, b'-');
    digits(m, 2, b'-');
    digits(d, 2, b'T');
    digits(rem / 3600, 2, b':');
    digits(rem % 3600 / 60, 2, b':');
    digits(rem % 60, 2, b'.');
    digits(micros, 6, b'Z');
}

#[cfg(test)]
mod tests {
    use vigil_wire::time::civil_to_unix;

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

//! The only clock type of the sensor: capture timestamps in nanoseconds since the Unix
//! epoch. Flow logic runs on packet time only, never on the wall clock, so a replay is
//! reproducible; this module owns that time type and its formatting.

use std::fmt;

/// A capture timestamp: nanoseconds since 1970-01-01T00:00:00Z (covers years 1678-2262).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Timestamp(pub i64);

/// Nanoseconds in one second.
pub const NANOS_PER_SEC: i64 = 1_000_000_000;
/// Nanoseconds in one microsecond.
pub const NANOS_PER_MICRO: i64 = 1_000;

impl Timestamp {
    /// Builds a timestamp from seconds and a sub-second fraction in nanoseconds.
    pub fn from_secs_nanos(secs: i64, nanos: i64) -> Self {
        Timestamp(secs.saturating_mul(NANOS_PER_SEC).saturating_add(nanos))
    }

    /// Builds a timestamp from whole microseconds since the epoch.
    pub fn from_micros(us: i64) -> Self {
        Timestamp(us.saturating_mul(NANOS_PER_MICRO))
    }

    /// Nanoseconds since the epoch.
    pub fn as_nanos(self) -> i64 {
        self.0
    }

    /// Whole microseconds since the epoch (floor).
    pub fn as_micros(self) -> i64 {
        self.0.div_euclid(NANOS_PER_MICRO)
    }

    /// Seconds since the epoch as a float (for rates and human output only).
    pub fn as_secs_f64(self) -> f64 {
        self.0 as f64 / NANOS_PER_SEC as f64
    }

    /// `self + d` saturating.
    pub fn plus(self, d: Nanos) -> Self {
        Timestamp(self.0.saturating_add(d.0))
    }

    /// `self - earlier` as a duration (may be negative when timestamps go backwards).
    pub fn since(self, earlier: Timestamp) -> Nanos {
        Nanos(self.0.saturating_sub(earlier.0))
    }

    /// Formats as ISO 8601 with microseconds in UTC, Suricata EVE style:
    /// `2026-11-25T11:25:59.123456+0000`.
    pub fn to_eve_string(self) -> String {
        let mut s = String::with_capacity(31);
        self.write_eve(&mut s);
        s
    }

    /// Writes the EVE form into `out` (see [`Timestamp::to_eve_string`]).
    ///
    /// Digits are written directly: every flow event carries three timestamps, and the
    /// `core::fmt` padding machinery was a visible share of event output.
    pub fn write_eve(self, out: &mut String) {
        match self.eve_digits() {
            Some(b) => out.extend(b.iter().map(|&c| char::from(c))),
            None => self.write_eve_fmt(out),
        }
    }

    /// UTC (year, month, day, second of the day, microsecond) of the timestamp.
    fn civil(self) -> (i64, u32, u32, i64, i64) {
        let secs = self.0.div_euclid(NANOS_PER_SEC);
        let micros = self.0.rem_euclid(NANOS_PER_SEC) / NANOS_PER_MICRO;
        let (y, m, d) = civil_from_days(secs.div_euclid(86_400));
        (y, m, d, secs.rem_euclid(86_400), micros)
    }

    /// The EVE form as ASCII bytes, when the year has four digits (always, for an `i64` of
    /// nanoseconds: it spans the years 1677-2262).
    pub fn eve_digits(self) -> Option<[u8; 31]> {
        let (y, m, d, sod, micros) = self.civil();
        if (1000..=9999).contains(&y) {
            let mut b = *b"0000-00-00T00:00:00.000000+0000";
            let mut put = |at: usize, width: usize, mut v: i64| {
                for i in (at..at + width).rev() {
                    b[i] = b'0' + (v % 10) as u8;
                    v /= 10;
                }
            };
            put(0, 4, y);
            put(5, 2, i64::from(m));
            put(8, 2, i64::from(d));
            put(11, 2, sod / 3600);
            put(14, 2, (sod % 3600) / 60);
            put(17, 2, sod % 60);
            put(20, 6, micros);
            return Some(b);
        }
        None
    }

    /// [`Timestamp::write_eve`] through `core::fmt` (any year).
    fn write_eve_fmt(self, out: &mut String) {
        use fmt::Write;
        let (y, m, d, sod, micros) = self.civil();
        let _ = write!(
            out,
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:06}+0000",
            y,
            m,
            d,
            sod / 3600,
            (sod % 3600) / 60,
            sod % 60,
            micros
        );
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_eve_string())
    }
}

/// A signed duration in nanoseconds, on packet time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Nanos(pub i64);

impl Nanos {
    /// Whole seconds to a duration.
    pub const fn from_secs(s: i64) -> Self {
        Nanos(s.saturating_mul(NANOS_PER_SEC))
    }
    /// Fractional seconds to a duration (rounded to the nanosecond).
    pub fn from_secs_f64(s: f64) -> Self {
        Nanos((s * NANOS_PER_SEC as f64).round() as i64)
    }
    /// Milliseconds to a duration.
    pub fn from_millis(ms: i64) -> Self {
        Nanos(ms.saturating_mul(1_000_000))
    }
    /// The duration in seconds as a float.
    pub fn as_secs_f64(self) -> f64 {
        self.0 as f64 / NANOS_PER_SEC as f64
    }
}

/// Days since 1970-01-01 to a proleptic Gregorian (year, month, day).
/// Howard Hinnant's `civil_from_days` algorithm.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eve_format_epoch_and_known_date() {
        assert_eq!(
            Timestamp(0).to_eve_string(),
            "1970-01-01T00:00:00.000000+0000"
        );
        // 2026-11-25T11:25:59.123456Z
        let t = Timestamp::from_secs_nanos(1_795_605_959, 123_456_789);
        assert_eq!(t.to_eve_string(), "2026-11-25T11:25:59.123456+0000");
    }

    #[test]
    fn eve_format_before_epoch() {
        let t = Timestamp(-1);
        assert_eq!(t.to_eve_string(), "1969-12-31T23:59:59.999999+0000");
    }

    proptest::proptest! {
        /// The direct digit writer gives exactly what `core::fmt` gives, over the whole
        /// range of the type.
        #[test]
        fn direct_eve_digits_equal_fmt(ns in proptest::prelude::any::<i64>()) {
            let t = Timestamp(ns);
            let (mut fast, mut slow) = (String::new(), String::new());
            t.write_eve(&mut fast);
            t.write_eve_fmt(&mut slow);
            proptest::prop_assert_eq!(fast, slow);
        }
    }

    #[test]
    fn leap_day() {
        // 2024-02-29T00:00:00Z = 1709164800
        let t = Timestamp::from_secs_nanos(1_709_164_800, 0);
        assert_eq!(t.to_eve_string(), "2024-02-29T00:00:00.000000+0000");
    }
}

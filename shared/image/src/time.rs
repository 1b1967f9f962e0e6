//! RFC 3339 timestamps as image configs carry them, without a date-time dependency.
//!
//! [`Timestamp`] is seconds and nanoseconds since the Unix epoch (UTC). Formatting follows
//! Go's `time.RFC3339Nano` (trailing zeros of the fraction dropped, `Z` for UTC), which is
//! what Docker writes and prints; parsing accepts any RFC 3339 offset.

use std::fmt;

/// A point in time, UTC.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Timestamp {
    /// Seconds since 1970-01-01T00:00:00Z (negative before).
    pub seconds: i64,
    /// Nanoseconds within the second, 0..1e9.
    pub nanos: u32,
}

impl Timestamp {
    /// The current time.
    pub fn now() -> Self {
        let d = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        Self {
            seconds: d.as_secs() as i64,
            nanos: d.subsec_nanos(),
        }
    }

    /// Whole seconds since the epoch.
    pub fn from_unix(seconds: i64) -> Self {
        Self { seconds, nanos: 0 }
    }

    /// `SOURCE_DATE_EPOCH` when set to an integer, else now.
    pub fn source_date_epoch_or_now() -> Self {
        std::env::var("SOURCE_DATE_EPOCH")
            .ok()
            .and_then(|v| v.trim().parse::<i64>().ok())
            .map(Self::from_unix)
            .unwrap_or_else(Self::now)
    }

    /// Parses an RFC 3339 time (`2024-01-01T00:00:00Z`, `…T00:00:00.123+02:00`).
    pub fn parse(s: &str) -> Option<Self> {
        let b = s.as_bytes();
        if b.len() < 20 {
            return None;
        }
        let num = |from: usize, len: usize| -> Option<i64> {
            let part = s.get(from..from + len)?;
            part.bytes()
                .all(|c| c.is_ascii_digit())
                .then(|| part.parse().ok())?
        };
        let (year, month, day) = (num(0, 4)?, num(5, 2)?, num(8, 2)?);
        if b[4] != b'-'
            || b[7] != b'-'
            || !matches!(b[10], b'T' | b't' | b' ')
            || b[13] != b':'
            || b[16] != b':'
        {
            return None;
        }
        let (hour, minute, second) = (num(11, 2)?, num(14, 2)?, num(17, 2)?);
        if !(1..=12).contains(&month)
            || !(1..=31).contains(&day)
            || hour > 23
            || minute > 59
            || second > 60
        {
            return None;
        }
        let mut i = 19;
        let mut nanos: u32 = 0;
        if b.get(i) == Some(&b'.') {
            i += 1;
            let start = i;
            while i < b.len() && b[i].is_ascii_digit() {
                i += 1;
            }
            let frac = &s[start..i];
            if frac.is_empty() {
                return None;
            }
            let mut digits: String = frac.chars().take(9).collect();
            while digits.len() < 9 {
                digits.push('0');
            }
            nanos = digits.parse().ok()?;
        }
        let offset = match &s[i..] {
            "Z" | "z" => 0,
            rest if rest.len() == 6
                && matches!(rest.as_bytes()[0], b'+' | b'-')
                && rest.as_bytes()[3] == b':' =>
            {
                let h: i64 = rest[1..3].parse().ok()?;
                let m: i64 = rest[4..6].parse().ok()?;
                let sign = if rest.starts_with('-') { -1 } else { 1 };
                sign * (h * 3600 + m * 60)
            }
            _ => return None,
        };
        let days = days_from_civil(year, month, day);
        Some(Self {
            seconds: days * 86_400 + hour * 3600 + minute * 60 + second - offset,
            nanos,
        })
    }

    /// RFC 3339 with seconds only (`2017-01-01T12:00:03Z`), as `docker history -H=false`.
    pub fn to_rfc3339_seconds(&self) -> String {
        let (date, time) = self.civil();
        format!("{date}T{time}Z")
    }

    /// Go's `time.Time.String()` of the second in UTC (`2017-01-01 12:00:03 +0000 UTC`), as
    /// `docker images` shows `CreatedAt`.
    pub fn to_go_string_utc(&self) -> String {
        let (date, time) = self.civil();
        format!("{date} {time} +0000 UTC")
    }

    fn civil(&self) -> (String, String) {
        let days = self.seconds.div_euclid(86_400);
        let secs = self.seconds.rem_euclid(86_400);
        let (y, m, d) = civil_from_days(days);
        (
            format!("{y:04}-{m:02}-{d:02}"),
            format!(
                "{:02}:{:02}:{:02}",
                secs / 3600,
                secs % 3600 / 60,
                secs % 60
            ),
        )
    }
}

impl fmt::Display for Timestamp {
    /// RFC 3339 with nanoseconds, trailing zeros dropped (Go's `RFC3339Nano`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (date, time) = self.civil();
        write!(f, "{date}T{time}")?;
        if self.nanos != 0 {
            let frac = format!("{:09}", self.nanos);
            write!(f, ".{}", frac.trim_end_matches('0'))?;
        }
        f.write_str("Z")
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The date of a day count since 1970-01-01.
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_known_values() {
        let t = Timestamp::parse("2024-01-01T00:00:00Z").unwrap();
        assert_eq!(t.seconds, 1_704_067_200);
        assert_eq!(t.to_string(), "2024-01-01T00:00:00Z");
        let t = Timestamp::parse("2022-02-04T21:20:12.497794809Z").unwrap();
        assert_eq!(t.to_string(), "2022-02-04T21:20:12.497794809Z");
        assert_eq!(t.to_rfc3339_seconds(), "2022-02-04T21:20:12Z");
        let t = Timestamp::parse("2017-01-01T14:00:03.5+02:00").unwrap();
        assert_eq!(t.to_string(), "2017-01-01T12:00:03.5Z");
        assert_eq!(Timestamp::from_unix(0).to_string(), "1970-01-01T00:00:00Z");
        assert_eq!(
            Timestamp::parse("0001-01-01T00:00:00Z")
                .unwrap()
                .to_string(),
            "0001-01-01T00:00:00Z"
        );
    }

    #[test]
    fn garbage_is_rejected() {
        for s in [
            "",
            "2024-01-01",
            "2024-13-01T00:00:00Z",
            "2024-01-01T00:00:00",
            "2024-01-01T00:00:00.Z",
            "x024-01-01T00:00:00Z",
        ] {
            assert!(Timestamp::parse(s).is_none(), "{s}");
        }
    }
}

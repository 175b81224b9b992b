//! Go `encoding/json` compatibility: the writer BuildKit's digests depend on, and Go's time format.
//!
//! BuildKit writes every cache document with `json.Marshal`: compact, no trailing newline, struct
//! keys in declaration order (our structs declare them in the same order), map keys sorted by
//! bytes (`BTreeMap<String, _>` does the same), `<`, `>`, `&`, U+2028 and U+2029 escaped as
//! `\u003c`-style sequences, and `time.Time` as RFC 3339 with trailing fraction zeros dropped.

use std::fmt;
use std::io;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::{Error, Result};

/// Serialise `value` exactly as Go's `json.Marshal` would.
pub fn to_go_json<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>> {
    let mut out = Vec::with_capacity(256);
    let mut ser = serde_json::Serializer::with_formatter(&mut out, GoFormatter);
    value.serialize(&mut ser).map_err(|source| Error::Json {
        what: "document being written".into(),
        source,
    })?;
    // Growth doubles: a 17 MB document would keep up to 32 MB for as long as it is held.
    out.shrink_to_fit();
    Ok(out)
}

/// A `serde_json` formatter that adds Go's HTML-safe escapes to the compact format.
#[derive(Debug, Clone, Copy, Default)]
pub struct GoFormatter;

impl serde_json::ser::Formatter for GoFormatter {
    fn write_string_fragment<W: ?Sized + io::Write>(&mut self, w: &mut W, fragment: &str) -> io::Result<()> {
        let mut start = 0;
        for (i, c) in fragment.char_indices() {
            let esc: &[u8] = match c {
                '<' => b"\\u003c",
                '>' => b"\\u003e",
                '&' => b"\\u0026",
                '\u{2028}' => b"\\u2028",
                '\u{2029}' => b"\\u2029",
                _ => continue,
            };
            w.write_all(&fragment.as_bytes()[start..i])?;
            w.write_all(esc)?;
            start = i + c.len_utf8();
        }
        w.write_all(&fragment.as_bytes()[start..])
    }
}

/// A point in time as Go's `time.Time` serialises it, keeping the original UTC offset.
///
/// Parsing then formatting gives back the same text for anything Go wrote (fraction without
/// trailing zeros, `Z` for a zero offset), which keeps config digests stable.
///
/// ```
/// use bkcache_core::GoTime;
/// let t: GoTime = "2022-03-13T08:13:28.292012780+01:00".parse().unwrap();
/// assert_eq!(t.to_string(), "2022-03-13T08:13:28.29201278+01:00");
/// assert_eq!(t.to_utc().to_string(), "2022-03-13T07:13:28.29201278Z");
/// assert!(GoTime::ZERO.is_zero());
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct GoTime {
    /// Seconds since the Unix epoch (UTC).
    secs: i64,
    nanos: u32,
    /// Offset east of UTC, in seconds.
    offset: i32,
}

const ZERO_SECS: i64 = -62_135_596_800; // 0001-01-01T00:00:00Z

impl GoTime {
    /// Go's zero time, `0001-01-01T00:00:00Z`.
    pub const ZERO: GoTime = GoTime {
        secs: ZERO_SECS,
        nanos: 0,
        offset: 0,
    };

    /// From Unix seconds and nanoseconds, in UTC.
    pub fn from_unix(secs: i64, nanos: u32) -> Self {
        GoTime { secs, nanos, offset: 0 }
    }

    /// The current time, in UTC.
    pub fn now() -> Self {
        let d = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        Self::from_unix(d.as_secs() as i64, d.subsec_nanos())
    }

    /// Whether this is Go's zero time.
    pub fn is_zero(&self) -> bool {
        self.secs == ZERO_SECS && self.nanos == 0
    }

    /// Seconds since the Unix epoch.
    pub fn unix_secs(&self) -> i64 {
        self.secs
    }

    /// Nanoseconds since the Unix epoch (for ordering).
    pub fn unix_nanos(&self) -> i128 {
        self.secs as i128 * 1_000_000_000 + self.nanos as i128
    }

    /// The same instant written in UTC.
    pub fn to_utc(self) -> Self {
        GoTime { offset: 0, ..self }
    }

    fn parse_str(s: &str) -> Option<GoTime> {
        let b = s.as_bytes();
        let num = |r: std::ops::Range<usize>| -> Option<i64> {
            let part = b.get(r)?;
            if part.is_empty() || !part.iter().all(u8::is_ascii_digit) {
                return None;
            }
            std::str::from_utf8(part).ok()?.parse().ok()
        };
        if b.len() < 20
            || b[4] != b'-'
            || b[7] != b'-'
            || !matches!(b[10], b'T' | b't')
            || b[13] != b':'
            || b[16] != b':'
        {
            return None;
        }
        let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
        let (hour, min, sec) = (num(11..13)?, num(14..16)?, num(17..19)?);
        if !(1..=12).contains(&month)
            || day < 1
            || day > days_in_month(year, month)
            || hour > 23
            || min > 59
            || sec > 59
        {
            return None;
        }
        let mut i = 19;
        let mut nanos = 0u32;
        if b[i] == b'.' || b[i] == b',' {
            let start = i + 1;
            let mut end = start;
            while end < b.len() && b[end].is_ascii_digit() {
                end += 1;
            }
            let digits = end - start;
            if digits == 0 || digits > 9 {
                return None;
            }
            nanos = num(start..end)? as u32 * 10u32.pow((9 - digits) as u32);
            i = end;
        }
        let offset = match b.get(i)? {
            b'Z' | b'z' if i + 1 == b.len() => 0,
            c @ (b'+' | b'-') if i + 6 == b.len() && b[i + 3] == b':' => {
                let (h, m) = (num(i + 1..i + 3)?, num(i + 4..i + 6)?);
                if h > 23 || m > 59 {
                    return None;
                }
                let o = (h * 3600 + m * 60) as i32;
                if *c == b'-' {
                    -o
                } else {
                    o
                }
            }
            _ => return None,
        };
        let local = days_from_civil(year, month, day) * 86400 + hour * 3600 + min * 60 + sec;
        Some(GoTime {
            secs: local - offset as i64,
            nanos,
            offset,
        })
    }
}

impl std::str::FromStr for GoTime {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        GoTime::parse_str(s).ok_or_else(|| Error::InvalidTime {
            value: s.chars().take(64).collect(),
        })
    }
}

impl fmt::Display for GoTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let local = self.secs + self.offset as i64;
        let (days, rem) = (local.div_euclid(86400), local.rem_euclid(86400));
        let (y, m, d) = civil_from_days(days);
        write!(
            f,
            "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}",
            rem / 3600,
            rem / 60 % 60,
            rem % 60
        )?;
        if self.nanos != 0 {
            let frac = format!("{:09}", self.nanos);
            write!(f, ".{}", frac.trim_end_matches('0'))?;
        }
        if self.offset == 0 {
            f.write_str("Z")
        } else {
            let sign = if self.offset < 0 { '-' } else { '+' };
            let o = self.offset.abs();
            write!(f, "{sign}{:02}:{:02}", o / 3600, o / 60 % 60)
        }
    }
}

impl fmt::Debug for GoTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "GoTime({self})")
    }
}

impl Default for GoTime {
    fn default() -> Self {
        GoTime::ZERO
    }
}

impl PartialOrd for GoTime {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for GoTime {
    /// Orders by instant; equal instants with different offsets order by offset, so `Ord`
    /// agrees with `Eq`.
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.secs, self.nanos, self.offset).cmp(&(other.secs, other.nanos, other.offset))
    }
}

impl Serialize for GoTime {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for GoTime {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

fn is_leap(y: i64) -> bool {
    (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
}

fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        2 if is_leap(y) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 for a proleptic Gregorian date (Howard Hinnant's algorithm).
/// Go's `time.ParseDuration` for non-negative durations (`300ms`, `1.5h`, `2h45m`; units ns,
/// us, µs, ms, s, m, h; a bare `0`), as BuildKit reads its duration attributes. `None` for
/// anything else, a negative duration or one past Go's `int64` nanoseconds.
pub fn parse_go_duration(value: &str) -> Option<std::time::Duration> {
    let v = value.trim();
    let (negative, s) = match v.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, v.strip_prefix('+').unwrap_or(v)),
    };
    if s == "0" {
        return Some(std::time::Duration::ZERO);
    }
    if s.is_empty() {
        return None;
    }
    let mut total: f64 = 0.0;
    let mut rest = s;
    while !rest.is_empty() {
        let num_len = rest.find(|c: char| !(c.is_ascii_digit() || c == '.'))?;
        let (num, tail) = rest.split_at(num_len);
        if num.is_empty() || num == "." || num.matches('.').count() > 1 {
            return None;
        }
        let n: f64 = num.parse().ok()?;
        let unit_len = tail
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(tail.len());
        let (unit, tail) = tail.split_at(unit_len);
        let scale = match unit {
            "ns" => 1e-9,
            "us" | "µs" | "μs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return None,
        };
        total += n * scale;
        rest = tail;
    }
    if !total.is_finite() || total > (i64::MAX / 1_000_000_000) as f64 || (negative && total > 0.0) {
        return None;
    }
    Some(std::time::Duration::from_secs_f64(total))
}

/// A `Retry-After` value, as a wait from now: delay-seconds, or an IMF-fixdate
/// (`Sun, 06 Nov 1994 08:49:37 GMT`; a date past is no wait). `None` for anything else.
pub fn parse_retry_after(value: &str) -> Option<std::time::Duration> {
    let v = value.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(std::time::Duration::from_secs(secs));
    }
    let parts: Vec<&str> = v.split_whitespace().collect();
    if parts.len() != 6 || parts[5] != "GMT" {
        return None;
    }
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let day: i64 = parts[1].parse().ok()?;
    let month = MONTHS.iter().position(|m| *m == parts[2])? as i64 + 1;
    let year: i64 = parts[3].parse().ok()?;
    let hms: Vec<i64> = parts[4].split(':').map(|p| p.parse().ok()).collect::<Option<_>>()?;
    let [h, m, s] = hms[..] else { return None };
    let at = days_from_civil(year, month, day) * 86400 + h * 3600 + m * 60 + s;
    let now = GoTime::now().unix_secs();
    Some(std::time::Duration::from_secs(at.saturating_sub(now).max(0) as u64))
}

fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (if m <= 2 { yoe + era * 400 + 1 } else { yoe + era * 400 }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_forms() {
        assert_eq!(parse_retry_after("7"), Some(std::time::Duration::from_secs(7)));
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:49:37 GMT"),
            Some(std::time::Duration::ZERO)
        );
        let later = std::time::SystemTime::now() + std::time::Duration::from_secs(3600);
        let secs = later.duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64;
        let days = secs.div_euclid(86400);
        // Format an IMF date for `later` (civil from days) and parse it back.
        let (y, m, d) = civil_from_days(days);
        let months = [
            "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
        ];
        let rem = secs.rem_euclid(86400);
        let text = format!(
            "Mon, {d:02} {} {y} {:02}:{:02}:{:02} GMT",
            months[(m - 1) as usize],
            rem / 3600,
            rem % 3600 / 60,
            rem % 60
        );
        let got = parse_retry_after(&text).unwrap().as_secs();
        assert!((3590..=3600).contains(&got), "{text} -> {got}");
        assert_eq!(parse_retry_after("soon"), None);
    }

    fn round_trip(input: &str, expected: &str) {
        let t: GoTime = input.parse().unwrap_or_else(|e| panic!("{input}: {e}"));
        assert_eq!(t.to_string(), expected, "{input}");
    }

    #[test]
    fn go_time_format() {
        round_trip("2026-11-23T14:28:19.11218679Z", "2026-11-23T14:28:19.11218679Z");
        round_trip("2026-11-23T14:28:19.112186790Z", "2026-11-23T14:28:19.11218679Z");
        round_trip("2024-01-02T03:04:05.5Z", "2024-01-02T03:04:05.5Z");
        round_trip("2024-01-02T03:04:05.000Z", "2024-01-02T03:04:05Z");
        round_trip(
            "2022-03-13T08:13:28.237041716+01:00",
            "2022-03-13T08:13:28.237041716+01:00",
        );
        round_trip("2022-03-13T08:13:28-05:30", "2022-03-13T08:13:28-05:30");
        round_trip("2022-03-13T08:13:28+00:00", "2022-03-13T08:13:28Z");
        round_trip("0001-01-01T00:00:00Z", "0001-01-01T00:00:00Z");
        round_trip("2000-02-29T23:59:59Z", "2000-02-29T23:59:59Z");
    }

    #[test]
    fn go_time_rejects() {
        for bad in [
            "",
            "2024-01-02",
            "2024-01-02T03:04:05",
            "2024-13-02T03:04:05Z",
            "2023-02-29T03:04:05Z",
            "2024-01-02T03:04:05.Z",
            "2024-01-02T03:04:05.1234567891Z",
            "2024-01-02T03:04:05+0100",
            "2024-01-02T03:04:05Zjunk",
        ] {
            assert!(bad.parse::<GoTime>().is_err(), "{bad}");
        }
    }

    #[test]
    fn go_time_order_and_utc() {
        let a: GoTime = "2022-03-13T08:13:28+01:00".parse().unwrap();
        let b: GoTime = "2022-03-13T07:13:29Z".parse().unwrap();
        assert!(a < b);
        assert_eq!(a.to_utc().to_string(), "2022-03-13T07:13:28Z");
        assert_eq!(GoTime::ZERO.to_string(), "0001-01-01T00:00:00Z");
        assert_eq!(GoTime::from_unix(0, 0).to_string(), "1970-01-01T00:00:00Z");
    }

    #[test]
    fn go_escaping() {
        let s = to_go_json(&"a<b>&c\u{2028}\u{2029}\"\n\u{1}é").unwrap();
        assert_eq!(
            String::from_utf8(s).unwrap(),
            r#""a\u003cb\u003e\u0026c\u2028\u2029\"\n\u0001é""#
        );
    }
}

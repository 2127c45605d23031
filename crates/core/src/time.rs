//! Time as the gateway sees it: seconds since the Unix epoch, from an injectable clock.
//!
//! Token expiry, consent expiry and campaign windows all take "now" from a [`Clock`], so
//! tests move time instead of sleeping.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// Seconds since 1970-01-01T00:00:00Z.
///
/// Serialised as the integer number of seconds.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(transparent)]
pub struct UnixTime(pub i64);

impl UnixTime {
    /// The current wall-clock time.
    pub fn now() -> Self {
        let secs = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0);
        UnixTime(secs)
    }

    /// The UTC day number (days since the epoch), used for daily caps.
    pub fn day(self) -> i64 {
        self.0.div_euclid(86_400)
    }
}

impl std::fmt::Display for UnixTime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// A source of the current time.
pub trait Clock: Send + Sync + std::fmt::Debug + 'static {
    /// The current time.
    fn now(&self) -> UnixTime;
}

/// The system clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> UnixTime {
        UnixTime::now()
    }
}

/// A clock that tests set and advance by hand.
#[derive(Debug, Clone, Default)]
pub struct ManualClock(Arc<AtomicI64>);

impl ManualClock {
    /// A clock that reads `start`.
    pub fn new(start: UnixTime) -> Self {
        ManualClock(Arc::new(AtomicI64::new(start.0)))
    }

    /// Moves the clock forward by `secs`.
    pub fn advance(&self, secs: i64) {
        self.0.fetch_add(secs, Ordering::SeqCst);
    }

    /// Sets the clock.
    pub fn set(&self, time: UnixTime) {
        self.0.store(time.0, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> UnixTime {
        UnixTime(self.0.load(Ordering::SeqCst))
    }
}

/// Formats a time as RFC 3339 UTC with second precision, e.g. `2026-11-27T18:00:00Z`.
pub fn format_rfc3339(time: UnixTime) -> String {
    let mut out = String::with_capacity(24);
    write_rfc3339_seconds(&mut out, time);
    out.push('Z');
    out
}

/// Writes `YYYY-MM-DDTHH:MM:SS` (no zone) to `out`. Years 0–9999 are written digit by digit
/// (this runs several times per request); others go through `format!`, as before.
pub(crate) fn write_rfc3339_seconds(out: &mut String, time: UnixTime) {
    let days = time.0.div_euclid(86_400);
    let secs = time.0.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    let (h, mi, s) = (secs / 3600, (secs / 60) % 60, secs % 60);
    if !(0..=9999).contains(&y) {
        out.push_str(&format!("{y:04}-{m:02}-{d:02}T{h:02}:{mi:02}:{s:02}"));
        return;
    }
    push_digits(out, y, 4);
    out.push('-');
    push_digits(out, m, 2);
    out.push('-');
    push_digits(out, d, 2);
    out.push('T');
    push_digits(out, h, 2);
    out.push(':');
    push_digits(out, mi, 2);
    out.push(':');
    push_digits(out, s, 2);
}

/// Writes the `width` lowest decimal digits of a non-negative `value`, zero-padded.
pub(crate) fn push_digits(out: &mut String, value: i64, width: u32) {
    for place in (0..width).rev() {
        let digit = (value / 10i64.pow(place)).rem_euclid(10);
        out.push(char::from(b'0' + u8::try_from(digit).unwrap_or(0)));
    }
}

/// Parses RFC 3339 (`YYYY-MM-DDTHH:MM:SS[.frac](Z|±HH:MM)`) into seconds; fractions are dropped.
pub fn parse_rfc3339(text: &str) -> Option<UnixTime> {
    let b = text.as_bytes();
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't' | b' ') {
        return None;
    }
    if b[13] != b':' || b[16] != b':' {
        return None;
    }
    let num = |range: std::ops::Range<usize>| -> Option<i64> {
        let s = text.get(range)?;
        if !s.bytes().all(|c| c.is_ascii_digit()) {
            return None;
        }
        s.parse().ok()
    };
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, s) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&mo) || d < 1 || d > days_in_month(y, mo) || h > 23 || mi > 59 || s > 60 {
        return None;
    }
    let mut rest = &text[19..];
    if let Some(frac) = rest.strip_prefix('.') {
        let digits = frac.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return None;
        }
        rest = &frac[digits..];
    }
    let offset = match rest {
        "Z" | "z" => 0,
        _ => {
            let rb = rest.as_bytes();
            if rb.len() != 6 || !matches!(rb[0], b'+' | b'-') || rb[3] != b':' {
                return None;
            }
            let oh: i64 = rest.get(1..3)?.parse().ok()?;
            let om: i64 = rest.get(4..6)?.parse().ok()?;
            if oh > 23 || om > 59 {
                return None;
            }
            let sign = if rb[0] == b'-' { -1 } else { 1 };
            sign * (oh * 3600 + om * 60)
        }
    };
    let days = days_from_civil(y, mo, d);
    Some(UnixTime(
        days * 86_400 + h * 3600 + mi * 60 + s.min(59) - offset,
    ))
}

fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        _ => 28,
    }
}

// Howard Hinnant's civil-date algorithms (public domain).
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
    fn formats_and_parses_known_instants() {
        assert_eq!(format_rfc3339(UnixTime(0)), "1970-01-01T00:00:00Z");
        assert_eq!(
            parse_rfc3339("2027-06-30T00:00:00Z"),
            Some(UnixTime(1_814_313_600))
        );
        assert_eq!(
            format_rfc3339(UnixTime(1_814_313_600)),
            "2027-06-30T00:00:00Z"
        );
        assert_eq!(
            parse_rfc3339("2027-06-30T08:00:00.123+08:00"),
            Some(UnixTime(1_814_313_600))
        );
    }

    #[test]
    fn rejects_malformed_times() {
        for bad in [
            "",
            "2027-06-30",
            "2027-13-01T00:00:00Z",
            "2027-02-30T00:00:00Z",
            "2027-06-30T24:00:00Z",
            "2027-06-30T00:00:00",
            "2027-06-30T00:00:00+0800",
            "2027-06-30T00:00:00.Z",
            "２０２７-06-30T00:00:00Z",
        ] {
            assert_eq!(parse_rfc3339(bad), None, "{bad}");
        }
    }

    proptest::proptest! {
        #[test]
        fn formatting_matches_the_format_macro(secs in -100_000_000_000i64..300_000_000_000) {
            let days = secs.div_euclid(86_400);
            let rest = secs.rem_euclid(86_400);
            let (y, m, d) = civil_from_days(days);
            let expected = format!(
                "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
                rest / 3600,
                (rest / 60) % 60,
                rest % 60
            );
            proptest::prop_assert_eq!(format_rfc3339(UnixTime(secs)), expected);
        }

        #[test]
        fn format_then_parse_is_identity(secs in -10_000_000_000i64..100_000_000_000) {
            let t = UnixTime(secs);
            let text = format_rfc3339(t);
            proptest::prop_assume!(text.len() == 20);
            proptest::prop_assert_eq!(parse_rfc3339(&text), Some(t));
        }

        #[test]
        fn parse_never_panics(text in "\\PC{0,40}") {
            let _ = parse_rfc3339(&text);
        }
    }
}

//! ISO-8601 date-times as people and MongoDB tools write them: one parser
//! for extended JSON's `$date` strings and for string values going into
//! date and time columns, so both accept the same text.
//!
//! Accepts a date (`2009-04-01`), or a date, `T` (or `t` or a space), a time
//! with or without seconds and fraction, and an optional zone: `Z`,
//! `±HH:MM`, `±HHMM` or `±HH`. The fraction is kept to the nanosecond and
//! its finer digits are reported, so each caller refuses what it would
//! truncate (BSON keeps milliseconds, PostgreSQL microseconds).
//!
//! Knows chrono only.

use chrono::{DateTime, NaiveDate, NaiveDateTime, NaiveTime, Utc};

/// A parsed date-time: wall-clock time and, when written, its offset.
#[derive(Debug, Clone, PartialEq)]
pub struct IsoDateTime {
    pub local: NaiveDateTime,
    /// Seconds east of UTC; `None` when the text names no zone.
    pub offset: Option<i64>,
    /// The fraction's digits as written (`"1234567"`), to judge precision.
    fraction: String,
}

impl IsoDateTime {
    /// Whether the fraction has non-zero digits past the `n`-th.
    pub fn finer_than(&self, digits: usize) -> bool {
        self.fraction.bytes().skip(digits).any(|b| b != b'0')
    }

    /// The instant, when the text names its zone.
    pub fn instant(&self) -> Option<DateTime<Utc>> {
        let offset = self.offset?;
        Some(self.local.and_utc() - chrono::Duration::seconds(offset))
    }
}

/// Parses `s`; the error says what is wrong, to follow the value in a message.
pub fn parse_iso(s: &str) -> Result<IsoDateTime, &'static str> {
    let t = s.trim();
    let (date, rest) = match t.find(['T', 't', ' ']) {
        Some(i) => (&t[..i], Some(&t[i + 1..])),
        None => (t, None),
    };
    let date = NaiveDate::parse_from_str(date, "%Y-%m-%d").map_err(|_| "has no valid date")?;
    let Some(rest) = rest else {
        return Ok(IsoDateTime { local: date.and_time(NaiveTime::MIN), offset: None, fraction: String::new() });
    };
    let (time, offset) = split_zone(rest)?;
    let (hms, fraction) = time.split_once('.').unwrap_or((time, ""));
    let clock = match hms.len() {
        8 => NaiveTime::parse_from_str(hms, "%H:%M:%S"),
        5 => NaiveTime::parse_from_str(hms, "%H:%M"),
        _ => return Err("has no valid time of day"),
    }
    .map_err(|_| "has no valid time of day")?;
    if time.contains('.') && (fraction.is_empty() || !fraction.bytes().all(|b| b.is_ascii_digit())) {
        return Err("has a malformed fraction of a second");
    }
    if hms.len() == 5 && !fraction.is_empty() {
        return Err("has a fraction but no seconds");
    }
    let nanos: u32 = format!("{:0<9}", &fraction[..fraction.len().min(9)]).parse().unwrap_or(0);
    let local = NaiveDateTime::new(date, clock) + chrono::Duration::nanoseconds(i64::from(nanos));
    Ok(IsoDateTime { local, offset, fraction: fraction.to_string() })
}

/// Splits `Z`, `±HH:MM`, `±HHMM` or `±HH` off the end of a time; the offset in seconds east.
fn split_zone(t: &str) -> Result<(&str, Option<i64>), &'static str> {
    if let Some(b) = t.strip_suffix(['Z', 'z']) {
        return Ok((b, Some(0)));
    }
    let Some(at) = t.rfind(['+', '-']) else { return Ok((t, None)) };
    let (body, zone) = t.split_at(at);
    let sign = if zone.starts_with('-') { -1 } else { 1 };
    let hhmm: String = zone[1..].chars().filter(|c| *c != ':').collect();
    let colon_ok = !zone.contains(':') || zone.len() == 6;
    if !colon_ok || !matches!(hhmm.len(), 2 | 4) || !hhmm.bytes().all(|b| b.is_ascii_digit()) {
        return Err("has a malformed time zone");
    }
    let h: i64 = hhmm[..2].parse().map_err(|_| "has a malformed time zone")?;
    let m: i64 = if hhmm.len() == 4 { hhmm[2..].parse().map_err(|_| "has a malformed time zone")? } else { 0 };
    if h > 23 || m > 59 {
        return Err("has a malformed time zone");
    }
    Ok((body, Some(sign * (h * 3600 + m * 60))))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forms_and_refusals() {
        let utc = |s: &str| parse_iso(s).map(|d| d.instant().map(|i| i.timestamp_millis()));
        let base = 1_238_544_000_000; // 2009-04-01T00:00:00Z
        let seven = 7 * 3600 * 1000;
        for (text, want) in [
            ("2009-04-01T00:00:00.000-0700", Ok(Some(base + seven))),
            ("2009-04-01T00:00:00.000-07:00", Ok(Some(base + seven))),
            ("2009-04-01T00:00:00-07", Ok(Some(base + seven))),
            ("2009-04-01t00:00:00+0530", Ok(Some(base - 5 * 3600 * 1000 - 30 * 60 * 1000))),
            ("2009-04-01 00:00Z", Ok(Some(base))),
            ("2009-04-01T00:00:00.5z", Ok(Some(base + 500))),
            ("2009-04-01T00:00:00", Ok(None)),
            ("2009-04-01", Ok(None)),
            ("2009-02-30", Err("has no valid date")),
            ("2009-04-01T25:00:00Z", Err("has no valid time of day")),
            ("2009-04-01T00:00.5Z", Err("has a fraction but no seconds")),
            ("2009-04-01T00:00:00.Z", Err("has a malformed fraction of a second")),
            ("2009-04-01T00:00:00+7", Err("has a malformed time zone")),
        ] {
            assert_eq!(utc(text), want, "{text}");
        }
        let d = parse_iso("2015-08-13 00:27:59.1234560").unwrap();
        assert_eq!(d.local.and_utc().timestamp_subsec_nanos(), 123_456_000);
        assert!(!d.finer_than(6) && d.finer_than(3));
        assert!(parse_iso("2015-08-13 00:27:59.1234567").unwrap().finer_than(6));
    }
}

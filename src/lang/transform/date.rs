//! `date`: a BSON date becomes midnight of its day in the column's time
//! zone, for DATE columns fed with date-times.

use bson::{RawBson, RawBsonRef};
use chrono::{NaiveTime, TimeZone};
use chrono_tz::Tz;

pub(super) fn midnight(v: RawBsonRef<'_>, tz: Tz) -> Result<Option<RawBson>, String> {
    let RawBsonRef::DateTime(d) = v else {
        return Err(format!("transform `date` expects a date, got {}", crate::value::text::bson_kind(v)));
    };
    let utc =
        chrono::DateTime::from_timestamp_millis(d.timestamp_millis()).ok_or_else(|| "date out of range".to_string())?;
    let day = utc.with_timezone(&tz).date_naive().and_time(NaiveTime::MIN);
    let midnight =
        tz.from_local_datetime(&day).earliest().ok_or_else(|| format!("midnight of {day} does not exist in {tz}"))?;
    Ok(Some(RawBson::DateTime(bson::DateTime::from_millis(midnight.timestamp_millis()))))
}

/// Why a `date_format` is not one chrono can read, if it is not.
pub fn format_error(f: &str) -> Option<String> {
    use chrono::format::{Item, StrftimeItems};
    if StrftimeItems::new(f).any(|i| matches!(i, Item::Error)) {
        return Some("an unknown or incomplete `%` specifier".into());
    }
    if !f.contains('%') {
        return Some("no `%` specifier: it would match only itself".into());
    }
    None
}

/// `to_date`: a string becomes a BSON date. With `date_format` (chrono's
/// strftime syntax) the string must match it whole; without, it is read as
/// ISO-8601. A time without an offset is wall-clock time in the column's
/// zone; a format with no time gives midnight there. BSON keeps
/// milliseconds: finer digits are refused, never dropped. Dates pass.
pub(super) fn parse(v: RawBsonRef<'_>, cx: &super::TransformCx<'_>) -> Result<Option<RawBson>, String> {
    use chrono::{DateTime, NaiveDate, NaiveDateTime, Timelike};
    let s = match v {
        RawBsonRef::DateTime(_) => return Ok(Some(RawBson::from(v))),
        RawBsonRef::String(s) => s,
        other => {
            return Err(format!("transform `to_date` expects a string, got {}", crate::value::text::bson_kind(other)));
        }
    };
    let shown = crate::value::text::preview(v);
    let instant: DateTime<chrono::Utc> = match cx.date_format {
        Some(f) => {
            let local = if let Ok(d) = DateTime::parse_from_str(s, f) {
                Ok(d.to_utc())
            } else if let Ok(t) = NaiveDateTime::parse_from_str(s, f) {
                Err(t)
            } else if let Ok(d) = NaiveDate::parse_from_str(s, f) {
                Err(d.and_time(NaiveTime::MIN))
            } else {
                return Err(format!("string {shown} does not match date_format \"{f}\""));
            };
            match local {
                Ok(utc) => utc,
                Err(naive) => cx
                    .tz
                    .from_local_datetime(&naive)
                    .single()
                    .ok_or_else(|| format!("{naive} does not exist, or is ambiguous, in {}", cx.tz))?
                    .to_utc(),
            }
        }
        None => {
            let d = crate::value::datetime::parse_iso(s)
                .map_err(|_| format!("string {shown} is not an ISO-8601 date (give `date_format` for other forms)"))?;
            match d.instant() {
                Some(i) => i,
                None => cx
                    .tz
                    .from_local_datetime(&d.local)
                    .single()
                    .ok_or_else(|| format!("{} does not exist, or is ambiguous, in {}", d.local, cx.tz))?
                    .to_utc(),
            }
        }
    };
    if instant.nanosecond() % 1_000_000 != 0 {
        return Err(format!("string {shown} is finer than a millisecond, which a BSON date keeps"));
    }
    Ok(Some(RawBson::DateTime(bson::DateTime::from_millis(instant.timestamp_millis()))))
}

#[cfg(test)]
mod tests {
    use super::super::TransformCx;
    use super::*;

    /// Input, format and zone, then the UTC instant (RFC 3339) or `ERR <start>`.
    #[test]
    fn to_date_table() {
        let ny: Tz = "America/New_York".parse().unwrap();
        let rows: &[(&str, Option<&str>, Tz, &str)] = &[
            ("03/15/2024", Some("%m/%d/%Y"), Tz::UTC, "2024-03-15T00:00:00Z"),
            ("03/15/2024", Some("%m/%d/%Y"), ny, "2024-03-15T04:00:00Z"),
            ("2024-03-15 13:45", Some("%Y-%m-%d %H:%M"), Tz::UTC, "2024-03-15T13:45:00Z"),
            ("15.03.2024 13:45 +0200", Some("%d.%m.%Y %H:%M %z"), ny, "2024-03-15T11:45:00Z"),
            ("2024-03-15T10:00:00.123Z", None, Tz::UTC, "2024-03-15T10:00:00.123Z"),
            ("2024-03-15", None, ny, "2024-03-15T04:00:00Z"),
            ("2024-03-15T10:00:00.1234Z", None, Tz::UTC, "ERR string \"2024-03-15T10:00:00.1234Z\" is finer"),
            ("15/03/2024", Some("%m/%d/%Y"), Tz::UTC, "ERR string \"15/03/2024\" does not match"),
            ("03/15/2024 junk", Some("%m/%d/%Y"), Tz::UTC, "ERR string \"03/15/2024 junk\" does not match"),
            ("yesterday", None, Tz::UTC, "ERR string \"yesterday\" is not an ISO-8601 date"),
            ("2024-03-10 02:30", Some("%Y-%m-%d %H:%M"), ny, "ERR 2024-03-10 02:30:00 does not exist"),
        ];
        for (input, format, tz, want) in rows {
            let cx = TransformCx { tz: *tz, date_format: *format };
            let got = match parse(RawBsonRef::String(input), &cx) {
                Ok(Some(RawBson::DateTime(d))) => chrono::DateTime::from_timestamp_millis(d.timestamp_millis())
                    .unwrap()
                    .to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true),
                Ok(other) => format!("{other:?}"),
                Err(e) => format!("ERR {e}"),
            };
            assert!(got.starts_with(want), "{input} {format:?}: got {got}, want {want}");
        }
        let noon = bson::DateTime::from_millis(1_736_942_400_000);
        assert!(matches!(
            parse(RawBsonRef::DateTime(noon), &TransformCx { tz: Tz::UTC, date_format: None }),
            Ok(Some(RawBson::DateTime(d))) if d == noon
        ));
    }
}

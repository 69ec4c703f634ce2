//! `date`, `timestamp`, `timestamptz`: BSON dates (UTC instants), BSON
//! timestamps and ISO-8601 strings, in the column's declared zone for the
//! wall-clock types. A date with a time of day is refused, never truncated.

use bson::RawBsonRef;
use chrono::{DateTime, NaiveDate, NaiveDateTime, NaiveTime, TimeZone, Utc};
use chrono_tz::Tz;

use super::{ColumnType, binary, refuse};
use crate::schema::SqlType;
use crate::value::cell::Cell;
use crate::value::coerce::CoerceRules;
use crate::value::datetime::{IsoDateTime, parse_iso};
use crate::value::text::{bson_kind, preview};

pub struct TemporalType;

impl ColumnType for TemporalType {
    fn coerce<'a>(&self, v: RawBsonRef<'a>, ty: &SqlType, rules: &CoerceRules) -> Result<Cell<'a>, String> {
        match ty {
            SqlType::Date => {
                let local = wall_clock(v, ty, rules)?;
                if local.time() != NaiveTime::MIN {
                    return Err(format!(
                        "{} {} has a time of day ({} in {}); a date column would drop it (add transform \"date\" to keep only the day)",
                        bson_kind(v),
                        preview(v),
                        local.time(),
                        rules.tz
                    ));
                }
                Ok(Cell::Date(local.date()))
            }
            SqlType::Timestamp => wall_clock(v, ty, rules).map(Cell::Timestamp),
            _ => instant(v, ty, rules).map(Cell::Timestamptz),
        }
    }

    fn oid(&self, ty: &SqlType) -> u32 {
        match ty {
            SqlType::Date => 1082,
            SqlType::Timestamp => 1114,
            _ => 1184,
        }
    }

    fn write_binary(&self, out: &mut Vec<u8>, cell: &Cell<'_>, ty: &SqlType) {
        match cell {
            Cell::Date(d) => {
                let days = d.signed_duration_since(epoch().date()).num_days() as i32;
                out.extend_from_slice(&days.to_be_bytes());
            }
            Cell::Timestamp(t) => micros(out, *t),
            Cell::Timestamptz(t) => micros(out, t.naive_utc()),
            c => binary::mismatch(out, c, ty),
        }
    }
}

/// PostgreSQL's epoch for dates and timestamps.
fn epoch() -> NaiveDateTime {
    NaiveDate::from_ymd_opt(2000, 1, 1).and_then(|d| d.and_hms_opt(0, 0, 0)).unwrap_or_default()
}

fn micros(out: &mut Vec<u8>, t: NaiveDateTime) {
    let us = t.signed_duration_since(epoch()).num_microseconds().unwrap_or(i64::MAX);
    out.extend_from_slice(&us.to_be_bytes());
}

/// The UTC instant of a date value; a string without an offset is read in the zone.
fn instant(v: RawBsonRef<'_>, ty: &SqlType, rules: &CoerceRules) -> Result<DateTime<Utc>, String> {
    match v {
        RawBsonRef::DateTime(d) => DateTime::from_timestamp_millis(d.timestamp_millis())
            .ok_or_else(|| format!("date {} ms is out of range", d.timestamp_millis())),
        RawBsonRef::Timestamp(t) => DateTime::from_timestamp(i64::from(t.time), 0).ok_or_else(|| refuse(v, ty)),
        RawBsonRef::String(_) => {
            let d = iso_string(v)?;
            match d.instant() {
                Some(i) => Ok(i),
                None => {
                    local_to_utc(d.local, rules.tz).ok_or_else(|| format!("{} does not exist in {}", d.local, rules.tz))
                }
            }
        }
        _ => Err(refuse(v, ty)),
    }
}

/// The wall-clock time of a value in the declared zone.
fn wall_clock(v: RawBsonRef<'_>, ty: &SqlType, rules: &CoerceRules) -> Result<NaiveDateTime, String> {
    if let RawBsonRef::String(_) = v {
        let d = iso_string(v)?;
        // A string without an offset already is wall-clock time.
        if d.offset.is_none() {
            return Ok(d.local);
        }
    }
    let utc = instant(v, ty, rules)?;
    Ok(utc.with_timezone(&rules.tz).naive_local())
}

/// A date-time string, read by the one ISO-8601 parser. PostgreSQL keeps
/// microseconds: non-zero digits past the sixth would be truncated, so they
/// are refused.
fn iso_string(v: RawBsonRef<'_>) -> Result<IsoDateTime, String> {
    let RawBsonRef::String(s) = v else { return Err(format!("{} is not a string", bson_kind(v))) };
    let d = parse_iso(s).map_err(|_| format!("string {} is not a date or time", preview(v)))?;
    if d.finer_than(6) {
        return Err(format!("{} {} is finer than a microsecond, which PostgreSQL keeps", bson_kind(v), preview(v)));
    }
    Ok(d)
}

fn local_to_utc(naive: NaiveDateTime, tz: Tz) -> Option<DateTime<Utc>> {
    tz.from_local_datetime(&naive).earliest().map(|d| d.with_timezone(&Utc))
}

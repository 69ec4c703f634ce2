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

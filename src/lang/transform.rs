//! The closed set of pure value transforms a column may list in `transform`.
//!
//! Each is a function of one value, applied in the order written, after the
//! value is read and before it is mapped (`map`) and coerced. Strings are the
//! input of the text transforms; any other type is a rejection, never a
//! silent pass-through.

use bson::{RawBson, RawBsonRef};
use chrono::{NaiveTime, TimeZone};
use chrono_tz::Tz;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transform {
    /// Strip leading and trailing white space.
    Trim,
    Lowercase,
    Uppercase,
    /// Runs of white space become one space (and the ends are trimmed).
    CollapseWhitespace,
    /// An empty (or all-blank) string becomes null.
    EmptyToNull,
    /// A BSON date becomes midnight of its day in the column's time zone,
    /// for DATE columns fed with date-times.
    Date,
}

impl Transform {
    pub const NAMES: &'static [&'static str] =
        &["trim", "lowercase", "uppercase", "collapse_whitespace", "empty_to_null", "date"];

    pub fn parse(s: &str) -> Option<Transform> {
        Some(match s {
            "trim" => Transform::Trim,
            "lowercase" => Transform::Lowercase,
            "uppercase" => Transform::Uppercase,
            "collapse_whitespace" => Transform::CollapseWhitespace,
            "empty_to_null" => Transform::EmptyToNull,
            "date" => Transform::Date,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Transform::Trim => "trim",
            Transform::Lowercase => "lowercase",
            Transform::Uppercase => "uppercase",
            Transform::CollapseWhitespace => "collapse_whitespace",
            Transform::EmptyToNull => "empty_to_null",
            Transform::Date => "date",
        }
    }

    /// Applies the transform. `Ok(None)` means the value became null.
    pub fn apply(self, v: RawBsonRef<'_>, tz: Tz) -> Result<Option<RawBson>, String> {
        if self == Transform::Date {
            let RawBsonRef::DateTime(d) = v else {
                return Err(format!("transform `date` expects a date, got {}", crate::value::text::bson_kind(v)));
            };
            let utc = chrono::DateTime::from_timestamp_millis(d.timestamp_millis())
                .ok_or_else(|| "date out of range".to_string())?;
            let day = utc.with_timezone(&tz).date_naive().and_time(NaiveTime::MIN);
            let midnight = tz
                .from_local_datetime(&day)
                .earliest()
                .ok_or_else(|| format!("midnight of {day} does not exist in {tz}"))?;
            return Ok(Some(RawBson::DateTime(bson::DateTime::from_millis(midnight.timestamp_millis()))));
        }
        let RawBsonRef::String(s) = v else {
            return Err(format!(
                "transform `{}` expects a string, got {}",
                self.name(),
                crate::value::text::bson_kind(v)
            ));
        };
        let out = match self {
            Transform::Trim => s.trim().to_string(),
            Transform::Lowercase => s.to_lowercase(),
            Transform::Uppercase => s.to_uppercase(),
            Transform::CollapseWhitespace => s.split_whitespace().collect::<Vec<_>>().join(" "),
            Transform::EmptyToNull if s.trim().is_empty() => return Ok(None),
            Transform::EmptyToNull => s.to_string(),
            Transform::Date => unreachable!("handled above"),
        };
        Ok(Some(RawBson::String(out)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transforms() {
        let s = |t: Transform, v: &str| match t.apply(RawBsonRef::String(v), Tz::UTC) {
            Ok(Some(RawBson::String(s))) => s,
            Ok(None) => "<null>".into(),
            other => format!("{other:?}"),
        };
        assert_eq!(s(Transform::Trim, "  A b "), "A b");
        assert_eq!(s(Transform::Lowercase, "ÀB"), "àb");
        assert_eq!(s(Transform::Uppercase, "ab"), "AB");
        assert_eq!(s(Transform::CollapseWhitespace, " a \t b\n"), "a b");
        assert_eq!(s(Transform::EmptyToNull, "  "), "<null>");
        assert!(Transform::Trim.apply(RawBsonRef::Int32(1), Tz::UTC).is_err());
        let noon = bson::DateTime::from_millis(1_736_942_400_000); // 2025-01-15T12:00Z
        let Some(RawBson::DateTime(d)) = Transform::Date.apply(RawBsonRef::DateTime(noon), Tz::UTC).unwrap() else {
            panic!()
        };
        assert_eq!(d.timestamp_millis(), 1_736_899_200_000);
    }
}

//! The closed set of pure value transforms a column may list in `transform`.
//!
//! Each is a function of one value, applied in the order written, after the
//! value is read and before it is mapped (`map`) and coerced. Strings are the
//! input of the text transforms; any other type is a rejection, never a
//! silent pass-through. Two column options shape a value into an array
//! after the transforms: `split` and `wrap_scalar` ([`shape`]).

pub mod date;
pub mod number;
pub mod shape;
pub mod text;

use bson::{RawBson, RawBsonRef};
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
    /// A numeric string becomes an exact number (int64, or decimal128);
    /// numbers pass; anything else is refused.
    ToNumber,
    /// A date string becomes a BSON date, read with the column's
    /// `date_format` (chrono syntax) or as ISO-8601; dates pass.
    ToDate,
}

/// What a transform may need beside the value: the column's zone and
/// its `date_format`.
#[derive(Debug, Clone, Copy)]
pub struct TransformCx<'c> {
    pub tz: Tz,
    pub date_format: Option<&'c str>,
}

/// Every transform and the name it is written with: the only list.
const ALL: &[(Transform, &str)] = &[
    (Transform::Trim, "trim"),
    (Transform::Lowercase, "lowercase"),
    (Transform::Uppercase, "uppercase"),
    (Transform::CollapseWhitespace, "collapse_whitespace"),
    (Transform::EmptyToNull, "empty_to_null"),
    (Transform::Date, "date"),
    (Transform::ToNumber, "to_number"),
    (Transform::ToDate, "to_date"),
];

impl Transform {
    /// The names, for messages (`did you mean`).
    pub fn names() -> Vec<&'static str> {
        ALL.iter().map(|(_, n)| *n).collect()
    }

    pub fn parse(s: &str) -> Option<Transform> {
        ALL.iter().find(|(_, n)| *n == s).map(|(t, _)| *t)
    }

    pub fn name(self) -> &'static str {
        ALL.iter().find(|(t, _)| *t == self).map_or("?", |(_, n)| n)
    }

    /// Applies the transform. `Ok(None)` means the value became null.
    /// Whether applying the transform to `v` would give `v` itself (a
    /// trimmed string trimmed again, lowercase text lowercased): then it
    /// need not run, and the value stays borrowed from the document.
    pub fn keeps(self, v: RawBsonRef<'_>) -> bool {
        let RawBsonRef::String(s) = v else { return false };
        match self {
            Transform::Trim => s.trim().len() == s.len(),
            Transform::Lowercase => s.is_ascii() && !s.bytes().any(|b| b.is_ascii_uppercase()),
            Transform::Uppercase => s.is_ascii() && !s.bytes().any(|b| b.is_ascii_lowercase()),
            Transform::EmptyToNull => !s.trim().is_empty(),
            _ => false,
        }
    }

    pub fn apply(self, v: RawBsonRef<'_>, cx: &TransformCx<'_>) -> Result<Option<RawBson>, String> {
        match self {
            Transform::Date => date::midnight(v, cx.tz),
            Transform::ToDate => date::parse(v, cx),
            Transform::ToNumber => number::to_number(v),
            Transform::Trim
            | Transform::Lowercase
            | Transform::Uppercase
            | Transform::CollapseWhitespace
            | Transform::EmptyToNull => text::apply(self, v),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every variant has exactly one name, and names read back as it.
    #[test]
    fn names_round_trip() {
        for (t, n) in ALL {
            assert_eq!(Transform::parse(n), Some(*t));
            assert_eq!(t.name(), *n);
            // A new variant must be listed in ALL: this match fails to compile otherwise.
            match t {
                Transform::Trim
                | Transform::Lowercase
                | Transform::Uppercase
                | Transform::CollapseWhitespace
                | Transform::EmptyToNull
                | Transform::Date
                | Transform::ToNumber
                | Transform::ToDate => {}
            }
        }
        assert_eq!(Transform::names().len(), ALL.len());
        assert_eq!(Transform::parse("Trim"), None);
    }

    #[test]
    fn transforms() {
        let cx = TransformCx { tz: Tz::UTC, date_format: None };
        let s = |t: Transform, v: &str| match t.apply(RawBsonRef::String(v), &cx) {
            Ok(Some(RawBson::String(s))) => s,
            Ok(None) => "<null>".into(),
            other => format!("{other:?}"),
        };
        assert_eq!(s(Transform::Trim, "  A b "), "A b");
        assert_eq!(s(Transform::Lowercase, "ÀB"), "àb");
        assert_eq!(s(Transform::Uppercase, "ab"), "AB");
        assert_eq!(s(Transform::CollapseWhitespace, " a \t b\n"), "a b");
        assert_eq!(s(Transform::EmptyToNull, "  "), "<null>");
        assert!(Transform::Trim.apply(RawBsonRef::Int32(1), &cx).is_err());
        let noon = bson::DateTime::from_millis(1_736_942_400_000); // 2025-01-15T12:00Z
        let Some(RawBson::DateTime(d)) = Transform::Date.apply(RawBsonRef::DateTime(noon), &cx).unwrap() else {
            panic!()
        };
        assert_eq!(d.timestamp_millis(), 1_736_899_200_000);
    }
}

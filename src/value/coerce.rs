//! Coercion of one BSON value into one PostgreSQL column type: the
//! declared rules (zone, JSON form, id namespace) and the dispatch to the
//! type's family in [`crate::value::types`], which holds each type's
//! accepted values. Exact or an error: a value that would be truncated,
//! wrapped or rounded is rejected with a reason a person can act on.
//!
//! Knows BSON and the target types; nothing of mappings, files or the database.

use bson::RawBsonRef;
use chrono_tz::Tz;

use crate::schema::SqlType;
use crate::value::cell::Cell;
use crate::value::ids::IdNamespace;
use crate::value::json::JsonForm;
use crate::value::types;

/// The declared rules coercion follows for one column.
#[derive(Debug, Clone, Copy)]
pub struct CoerceRules {
    /// Wall-clock zone for DATE and TIMESTAMP (BSON dates are UTC instants).
    pub tz: Tz,
    pub json: JsonForm,
    pub ns: IdNamespace,
    /// How a string holds bytes for a `bytea` column (`encoding`); `None`:
    /// strings are refused there.
    pub bytes: Option<BytesText>,
    /// The length every array value must have (`dimensions`), for vectors.
    pub dimensions: Option<u32>,
    /// A geometry column takes `[lon, lat]` arrays as points (`point = true`).
    pub point: bool,
}

/// The text forms of bytes a `bytea` column reads from strings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BytesText {
    Base64,
    Hex,
}

impl BytesText {
    pub const NAMES: &[(BytesText, &str)] = &[(BytesText::Base64, "base64"), (BytesText::Hex, "hex")];

    pub fn parse(s: &str) -> Option<BytesText> {
        Self::NAMES.iter().find(|(_, n)| *n == s).map(|(b, _)| *b)
    }

    pub fn name(self) -> &'static str {
        Self::NAMES.iter().find(|(b, _)| *b == self).map_or("base64", |(_, n)| n)
    }
}

impl Default for CoerceRules {
    fn default() -> Self {
        CoerceRules {
            tz: Tz::UTC,
            json: JsonForm::default(),
            ns: IdNamespace::default(),
            bytes: None,
            dimensions: None,
            point: false,
        }
    }
}

/// Coerces a non-null value. Null and missing are handled by the caller
/// (they depend on `default` and `required`, not on the type).
#[inline]
pub fn coerce<'a>(v: RawBsonRef<'a>, ty: &SqlType, rules: &CoerceRules) -> Result<Cell<'a>, String> {
    match types::of(ty) {
        Some(family) => family.coerce(v, ty, rules),
        None => Err(format!("finlit-map cannot write the type `{ty}`")),
    }
}

/// A schema DEFAULT constant as SQL text (`'novice'`, `10`, `TRUE`,
/// `'{}'::jsonb`, `-1`) as a typed cell; `None` when it is not a plain constant.
pub fn sql_constant(text: &str, ty: &SqlType, rules: &CoerceRules) -> Option<Cell<'static>> {
    let mut t = text.trim();
    // A trailing cast outside any quotes: `'{}'::jsonb`.
    if let Some(i) = t.rfind("::")
        && !t[i..].contains('\'')
    {
        t = t[..i].trim();
    }
    let t = t.trim_start_matches('(').trim_end_matches(')');
    let value = if t.len() >= 2 && t.starts_with('\'') && t.ends_with('\'') {
        t[1..t.len() - 1].replace("''", "'")
    } else {
        t.to_ascii_lowercase()
    };
    if ty.is_json() {
        serde_json::from_str::<serde_json::Value>(&value).ok()?;
        return Some(Cell::Json(value));
    }
    coerce(RawBsonRef::String(&value), ty, rules).ok().map(Cell::into_owned)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::value::text::{bson_kind, decimal_text};
    use bson::spec::BinarySubtype;
    use bson::{Decimal128, rawdoc};
    use std::str::FromStr;

    fn ok(c: Result<Cell<'_>, String>) -> String {
        match c {
            Ok(c) => c.to_pg_text().unwrap_or_else(|| "NULL".into()),
            Err(e) => format!("ERR {e}"),
        }
    }

    fn dec(s: &str) -> RawBsonRef<'static> {
        RawBsonRef::Decimal128(Decimal128::from_str(s).unwrap())
    }

    fn ms(y: i32, m: u32, d: u32, h: u32, min: u32) -> RawBsonRef<'static> {
        let t = chrono::NaiveDate::from_ymd_opt(y, m, d).unwrap().and_hms_opt(h, min, 0).unwrap().and_utc();
        RawBsonRef::DateTime(bson::DateTime::from_millis(t.timestamp_millis()))
    }

    fn t(s: &str) -> SqlType {
        SqlType::parse(s).unwrap()
    }

    /// Every row: value, target type, expected PostgreSQL text or `ERR <start of reason>`.
    #[test]
    fn coercion_table() {
        let long = "x".repeat(256);
        let oid = bson::oid::ObjectId::parse_str("507f1f77bcf86cd799439011").unwrap();
        let doc = rawdoc! { "a": 1, "b": [1, "x"] };
        let arr_ints = rawdoc! { "v": [1, 2, bson::RawBson::Null] };
        let arr_mixed = rawdoc! { "v": [1, 2.5] };
        let arr_strs = rawdoc! { "v": ["a", "b c"] };
        let uuid_bin = bson::Binary { subtype: BinarySubtype::Uuid, bytes: vec![7; 16] };
        let uuid_raw = rawdoc! { "u": uuid_bin };
        let rows: Vec<(RawBsonRef, &str, &str)> = vec![
            // text and varchar(n)
            (RawBsonRef::String("héllo"), "varchar(5)", "héllo"),
            (RawBsonRef::String("héllo!"), "varchar(5)", "ERR string of 6 characters is longer than varchar(5)"),
            (RawBsonRef::String(&long), "varchar(255)", "ERR string of 256 characters"),
            (RawBsonRef::String(&long), "text", &long),
            (RawBsonRef::String("a\0b"), "text", "ERR text cannot hold the NUL"),
            (RawBsonRef::ObjectId(oid), "text", "507f1f77bcf86cd799439011"),
            (RawBsonRef::Int64(42), "text", "42"),
            (RawBsonRef::Boolean(true), "varchar(5)", "true"),
            (RawBsonRef::Document(&doc), "text", "ERR document {…} cannot go into text; use a json"),
            (RawBsonRef::String("ab"), "char(2)", "ab"),
            // integers: exact or refused
            (RawBsonRef::Int32(i32::MAX), "integer", "2147483647"),
            (RawBsonRef::Int64(3_000_000_000), "integer", "ERR int64 3000000000 is out of range for integer"),
            (RawBsonRef::Int64(3_000_000_000), "bigint", "3000000000"),
            (RawBsonRef::Int32(40_000), "smallint", "ERR int32 40000 is out of range for smallint"),
            (RawBsonRef::Double(1.5), "integer", "ERR double 1.5 is not a whole number"),
            (RawBsonRef::Double(7.0), "integer", "7"),
            (RawBsonRef::Double(f64::NAN), "integer", "ERR double NaN is not a whole number"),
            (RawBsonRef::Double(1e19), "bigint", "ERR double 10000000000000000000 is out of range"),
            (dec("12"), "integer", "12"),
            (dec("1.2E+1"), "integer", "12"),
            (dec("12.5"), "integer", "ERR decimal128 12.5 is not a whole number"),
            (RawBsonRef::String("17"), "integer", "17"),
            (RawBsonRef::String("17x"), "integer", "ERR string \"17x\" is not a number"),
            (RawBsonRef::Boolean(true), "integer", "ERR bool true cannot go into integer"),
            // numeric: Decimal128 exactly, scale and precision checked
            (dec("12345678901234567890.123456789"), "numeric", "12345678901234567890.123456789"),
            (dec("1.50"), "numeric(4,1)", "1.50"),
            (dec("1.25"), "numeric(4,1)", "ERR 1.25 has 2 decimal places; numeric(4,1) would round it"),
            (dec("12345"), "numeric(4,1)", "ERR 12345 is too large for numeric(4,1)"),
            // item 5: negative scale and scale above precision, as PostgreSQL 15 has them
            (RawBsonRef::Int32(12300), "numeric(3,-2)", "12300"),
            (RawBsonRef::Int32(12350), "numeric(3,-2)", "ERR 12350 is not a multiple of 100"),
            (RawBsonRef::Int32(123_000), "numeric(3,-2)", "ERR 123000 is too large for numeric(3,-2)"),
            (RawBsonRef::Double(99999.0), "numeric(3,-2)", "ERR 99999 is not a multiple of 100"),
            (dec("0.0012"), "numeric(2,4)", "0.0012"),
            (dec("0.012"), "numeric(2,4)", "ERR 0.012 is too large for numeric(2,4)"),
            (dec("0.00123"), "numeric(2,4)", "ERR 0.00123 has 5 decimal places"),
            (dec("0"), "numeric(2,4)", "0"),
            (dec("-1E-3"), "numeric", "-0.001"),
            (RawBsonRef::Double(0.1), "numeric(3,2)", "0.1"),
            (RawBsonRef::Double(f64::NAN), "numeric(5,2)", "NaN"),
            (RawBsonRef::Double(f64::INFINITY), "numeric", "Infinity"),
            (RawBsonRef::Double(f64::INFINITY), "numeric(5,2)", "ERR Infinity cannot go into numeric(5,2)"),
            (dec("NaN"), "numeric", "NaN"),
            (dec("-Infinity"), "numeric", "-Infinity"),
            (RawBsonRef::Int64(i64::MAX), "numeric", "9223372036854775807"),
            // floating point: no silent rounding
            (RawBsonRef::Double(0.1), "double precision", "0.1"),
            (RawBsonRef::Int64(1 << 53), "double precision", "9007199254740992"),
            (RawBsonRef::Int64((1 << 53) + 1), "double precision", "ERR int64 9007199254740993 has more digits"),
            (dec("0.1"), "double precision", "0.1"),
            // item 3: compared by value, not by text
            (dec("1.50"), "double precision", "1.5"),
            (RawBsonRef::String("0.10"), "double precision", "0.1"),
            (dec("1.5E+3"), "double precision", "1500"),
            (dec("1.50"), "real", "1.5"),
            (dec("-0.0"), "double precision", "-0"),
            (
                dec("0.10000000000000000001"),
                "double precision",
                "ERR decimal128 0.10000000000000000001 would be rounded",
            ),
            (RawBsonRef::Double(0.1), "real", "0.10000000149011612"),
            (RawBsonRef::Double(0.123456789), "real", "ERR double 0.123456789 would be rounded"),
            (RawBsonRef::Double(f64::NEG_INFINITY), "real", "-Infinity"),
            // boolean
            (RawBsonRef::Boolean(false), "boolean", "f"),
            (RawBsonRef::Int32(1), "boolean", "t"),
            (RawBsonRef::Int32(2), "boolean", "ERR int32 2 cannot go into boolean"),
            (RawBsonRef::String("yes"), "boolean", "ERR string \"yes\" cannot go into boolean"),
            // dates and times (UTC rule), before 1970 too
            (ms(2025, 1, 15, 0, 0), "date", "2025-01-15"),
            (ms(1969, 7, 20, 0, 0), "date", "1969-07-20"),
            (ms(1901, 12, 13, 20, 45), "timestamp", "1901-12-13 20:45:00"),
            (ms(2025, 1, 15, 14, 30), "date", "ERR date 2025-01-15T14:30:00Z has a time of day (14:30:00 in UTC)"),
            (ms(1960, 1, 1, 0, 0), "timestamptz", "1960-01-01 00:00:00+00"),
            (RawBsonRef::String("2025-01-15"), "date", "2025-01-15"),
            (RawBsonRef::String("2025-02-30"), "date", "ERR string \"2025-02-30\" is not a date or time"),
            (RawBsonRef::String("2025-01-15T10:00:00+02:00"), "timestamptz", "2025-01-15 08:00:00+00"),
            (RawBsonRef::String("2025-01-15 10:00:00"), "timestamp", "2025-01-15 10:00:00"),
            // the same ISO-8601 forms as `$date`: offsets without a colon, no seconds
            (RawBsonRef::String("2009-04-01T00:00:00.000-0700"), "timestamptz", "2009-04-01 07:00:00+00"),
            (RawBsonRef::String("2009-04-01T10:30"), "timestamp", "2009-04-01 10:30:00"),
            (RawBsonRef::Int64(5), "date", "ERR int64 5 cannot go into date"),
            // item 4: PostgreSQL keeps microseconds; finer digits are refused unless zeros
            (RawBsonRef::String("2015-08-13 00:27:59.123456"), "timestamp", "2015-08-13 00:27:59.123456"),
            (RawBsonRef::String("2015-08-13 00:27:59.1234560"), "timestamp", "2015-08-13 00:27:59.123456"),
            (
                RawBsonRef::String("2015-08-13 00:27:59.1234567"),
                "timestamp",
                "ERR string \"2015-08-13 00:27:59.1234567\" is finer than a microsecond",
            ),
            (
                RawBsonRef::String("2015-08-13T00:27:59.1234567Z"),
                "timestamptz",
                "ERR string \"2015-08-13T00:27:59.1234567Z\" is finer than a microsecond",
            ),
            // uuid
            (
                RawBsonRef::String("6f1c2c4e-1111-4222-8333-944455556666"),
                "uuid",
                "6f1c2c4e-1111-4222-8333-944455556666",
            ),
            (RawBsonRef::String("not-a-uuid"), "uuid", "ERR string \"not-a-uuid\" cannot go into uuid"),
            (uuid_raw.get("u").unwrap().unwrap(), "uuid", "07070707-0707-0707-0707-070707070707"),
            (RawBsonRef::ObjectId(oid), "uuid", "ERR objectId 507f1f77bcf86cd799439011 cannot go into uuid; use `id"),
            // json and arrays
            (RawBsonRef::Document(&doc), "jsonb", r#"{"a":1,"b":[1,"x"]}"#),
            (RawBsonRef::String("x"), "json", r#""x""#),
            (RawBsonRef::Double(f64::NAN), "jsonb", "ERR the double NaN has no JSON form"),
            (dec("-Infinity"), "jsonb", "ERR the decimal -Infinity has no JSON form"),
            (dec("Infinity"), "json", "ERR the decimal Infinity has no JSON form"),
            (dec("NaN"), "jsonb", "ERR the decimal NaN has no JSON form"),
            (dec("-1.50"), "jsonb", "-1.50"),
            (RawBsonRef::String("a\0"), "jsonb", "ERR jsonb cannot hold the NUL"),
            (arr_ints.get("v").unwrap().unwrap(), "integer[]", r#"{"1","2",NULL}"#),
            (arr_mixed.get("v").unwrap().unwrap(), "integer[]", "ERR element 1: double 2.5 is not a whole number"),
            (arr_strs.get("v").unwrap().unwrap(), "text[]", r#"{"a","b c"}"#),
            (RawBsonRef::String("a"), "text[]", "ERR string \"a\" cannot go into text[]"),
        ];
        let rules = CoerceRules::default();
        let mut failures = Vec::new();
        for (v, ty, expected) in rows {
            let got = ok(coerce(v, &t(ty), &rules));
            let pass = match expected.strip_prefix("ERR ") {
                Some(prefix) => got.strip_prefix("ERR ").is_some_and(|g| g.starts_with(prefix)),
                None => got == expected,
            };
            if !pass {
                failures.push(format!("{} {v:?} -> {ty}: expected {expected:?}, got {got:?}", bson_kind(v)));
            }
        }
        assert!(failures.is_empty(), "\n{}", failures.join("\n"));
    }

    #[test]
    fn time_zone_rule_moves_wall_clock() {
        let rules = CoerceRules { tz: "America/New_York".parse().unwrap(), ..Default::default() };
        // 2025-01-15T05:00Z is midnight in New York.
        assert_eq!(ok(coerce(ms(2025, 1, 15, 5, 0), &SqlType::Date, &rules)), "2025-01-15");
        assert_eq!(ok(coerce(ms(2025, 1, 15, 5, 0), &SqlType::Timestamp, &rules)), "2025-01-15 00:00:00");
        assert_eq!(ok(coerce(ms(2025, 1, 15, 5, 0), &SqlType::Timestamptz, &rules)), "2025-01-15 05:00:00+00");
    }

    #[test]
    fn schema_constants() {
        let r = CoerceRules::default();
        let cases = [
            ("'intermediate'", "varchar(50)", Some("intermediate")),
            ("'it''s'", "text", Some("it's")),
            ("10", "integer", Some("10")),
            ("-1", "integer", Some("-1")),
            ("TRUE", "boolean", Some("t")),
            ("1.0", "numeric(4,3)", Some("1.0")),
            ("'{}'::JSONB", "jsonb", Some("{}")),
            ("nextval('s')", "integer", None),
        ];
        for (text, ty, want) in cases {
            let got = sql_constant(text, &t(ty), &r).and_then(|c| c.to_pg_text());
            assert_eq!(got.as_deref(), want, "{text}");
        }
    }

    #[test]
    fn decimal_normalization() {
        for (raw, want) in [
            ("1.5E+3", Some("1500")),
            ("-0", Some("0")),
            ("0.000", Some("0.000")),
            ("1E-2", Some("0.01")),
            ("+7", Some("7")),
            ("1.2.3", None),
            ("", None),
            ("abc", None),
        ] {
            assert_eq!(decimal_text(raw).as_deref(), want, "{raw}");
        }
    }
}

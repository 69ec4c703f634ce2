//! Extended JSON (canonical, relaxed, and the legacy forms older mongoexport
//! and Compass wrote) → raw BSON, exactly.
//!
//! Numbers parse to the correctly rounded double (serde_json's
//! `float_roundtrip`); integers that fit int32/int64 stay integers, as
//! mongoimport reads them. `$date` strings are read here rather than by the
//! bson crate, which accepts only RFC 3339: offsets `-0700`, `-07:00`, `-07`,
//! `Z`, no fraction, no seconds. A value that is valid JSON but not a valid
//! extended-JSON value is a [`JsonError::Value`]: the caller rejects that one
//! document with the reason and goes on; broken JSON is [`JsonError::Syntax`].
//!
//! Knows JSON, BSON and the date-time parser; nothing of files, mappings or
//! PostgreSQL.

use bson::{Bson, RawDocumentBuf};
use serde_json::Value;

use crate::datetime::parse_iso;

#[derive(Debug, Clone, PartialEq)]
pub enum JsonError {
    /// Not JSON at all (or not an object): the file itself is broken here.
    Syntax(String),
    /// Valid JSON whose extended-JSON values cannot be read: this document is rejected.
    Value(String),
}

impl std::fmt::Display for JsonError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            JsonError::Syntax(s) | JsonError::Value(s) => f.write_str(s),
        }
    }
}

/// One extended-JSON document → raw BSON.
pub fn json_to_doc(bytes: &[u8]) -> Result<RawDocumentBuf, JsonError> {
    let mut value: Value = serde_json::from_slice(bytes).map_err(|e| {
        // Too deep is a property of this document, not a broken file: the
        // parser's own bound (128) stops it before any stack can overflow.
        if e.to_string().contains("recursion limit exceeded") {
            JsonError::Value(format!("nested deeper than {} levels (MongoDB's limit)", super::strict::MAX_DEPTH))
        } else {
            JsonError::Syntax(format!("invalid JSON: {e}"))
        }
    })?;
    if !value.is_object() {
        return Err(JsonError::Syntax("a document must be a JSON object".into()));
    }
    normalize_dates(&mut value).map_err(JsonError::Value)?;
    match Bson::try_from(value).map_err(|e| JsonError::Value(format!("invalid extended JSON: {e}")))? {
        Bson::Document(d) => RawDocumentBuf::try_from(&d).map_err(|e| JsonError::Value(e.to_string())),
        _ => Err(JsonError::Syntax("a document must be a JSON object".into())),
    }
}

/// Rewrites every `{"$date": "<string>"}` (and `{"$date": <whole float>}`)
/// into the canonical `{"$date": {"$numberLong": "<ms>"}}`.
fn normalize_dates(v: &mut Value) -> Result<(), String> {
    match v {
        Value::Array(items) => items.iter_mut().try_for_each(normalize_dates),
        Value::Object(map) => {
            if map.len() == 1
                && let Some(d) = map.get_mut("$date")
            {
                let ms = match d {
                    Value::String(s) => Some(parse_date_millis(s)?),
                    // Legacy: milliseconds as a JSON number, maybe written as `1.6e12`.
                    Value::Number(n) if n.as_i64().is_none() => {
                        let f = n.as_f64().unwrap_or(f64::NAN);
                        if f.fract() != 0.0 || !(-9.2e18..9.2e18).contains(&f) {
                            return Err(format!("$date {n} is not a whole number of milliseconds"));
                        }
                        Some(f as i64)
                    }
                    _ => None,
                };
                if let Some(ms) = ms {
                    *d = serde_json::json!({ "$numberLong": ms.to_string() });
                }
                return Ok(());
            }
            map.values_mut().try_for_each(normalize_dates)
        }
        _ => Ok(()),
    }
}

/// Milliseconds since the epoch of a `$date` string, as MongoDB tools have
/// written it (`2009-04-01T00:00:00.000-0700`, `…-07:00`, `…Z`, no fraction,
/// no seconds). Digits finer than a millisecond must be zeros (BSON keeps
/// milliseconds); a string without a zone is refused (it names no instant).
pub fn parse_date_millis(s: &str) -> Result<i64, String> {
    let bad = |why: &str| format!("$date {s:?} {why}");
    let d = parse_iso(s).map_err(bad)?;
    if d.finer_than(3) {
        return Err(bad("is finer than a millisecond; BSON dates keep milliseconds"));
    }
    let instant = d.instant().ok_or_else(|| bad("has no time zone (Z or an offset such as -07:00)"))?;
    Ok(instant.timestamp_millis())
}

#[cfg(test)]
mod tests {
    use super::*;
    use bson::RawBsonRef;

    #[test]
    fn date_forms_mongo_tools_wrote() {
        let utc = 1_238_544_000_000; // 2009-04-01T00:00:00Z
        let seven = 7 * 3600 * 1000;
        for (text, want) in [
            ("2009-04-01T00:00:00.000-0700", Ok(utc + seven)),
            ("2009-04-01T00:00:00.000-07:00", Ok(utc + seven)),
            ("2009-04-01T00:00:00-07", Ok(utc + seven)),
            ("2009-04-01T00:00:00+0530", Ok(utc - 5 * 3600 * 1000 - 30 * 60 * 1000)),
            ("2009-04-01T00:00:00Z", Ok(utc)),
            ("2009-04-01T00:00Z", Ok(utc)),
            ("2009-04-01 00:00:00.5Z", Ok(utc + 500)),
            ("2009-04-01T00:00:00.123000Z", Ok(utc + 123)),
            ("1901-12-13T20:45:52.001Z", Ok(-2_147_483_647_999)),
            ("2009-04-01T00:00:00.1234Z", Err("is finer than a millisecond")),
            ("2009-04-01T00:00:00", Err("has no time zone")),
            ("2009-04-01", Err("has no time zone")),
            ("2009-02-30T00:00:00Z", Err("has no valid date")),
            ("2009-04-01T25:00:00Z", Err("has no valid time of day")),
            ("2009-04-01T00:00.5Z", Err("has a fraction but no seconds")),
            ("yesterday", Err("has no valid date")),
        ] {
            match (parse_date_millis(text), want) {
                (Ok(got), Ok(w)) => assert_eq!(got, w, "{text}"),
                (Err(e), Err(w)) => assert!(e.contains(w), "{text}: {e}"),
                (got, w) => panic!("{text}: got {got:?}, want {w:?}"),
            }
        }
    }

    #[test]
    fn every_date_dialect_gives_the_same_instant() {
        let forms = [
            r#"{"d": {"$date": {"$numberLong": "1238569200000"}}}"#,
            r#"{"d": {"$date": "2009-04-01T07:00:00Z"}}"#,
            r#"{"d": {"$date": "2009-04-01T00:00:00.000-0700"}}"#,
            r#"{"d": {"$date": 1238569200000}}"#,
            r#"{"d": {"$date": 1.2385692e12}}"#,
        ];
        for f in forms {
            let d = json_to_doc(f.as_bytes()).unwrap();
            let Some(RawBsonRef::DateTime(dt)) = d.get("d").unwrap() else { panic!("{f}") };
            assert_eq!(dt.timestamp_millis(), 1_238_569_200_000, "{f}");
        }
    }

    #[test]
    fn bad_values_are_value_errors_and_bad_json_is_syntax() {
        assert!(matches!(json_to_doc(br#"{"d": {"$date": "soon"}}"#), Err(JsonError::Value(_))));
        assert!(matches!(json_to_doc(br#"{"o": {"$oid": "xyz"}}"#), Err(JsonError::Value(_))));
        assert!(matches!(json_to_doc(br#"{"d": 1"#), Err(JsonError::Syntax(_))));
        assert!(matches!(json_to_doc(b"[1]"), Err(JsonError::Syntax(_))));
    }

    #[test]
    fn doubles_are_correctly_rounded_and_integers_stay_integers() {
        let d =
            json_to_doc(br#"{"a": 98.35723209418343, "b": 4.5476109051041603e+18, "c": 7, "e": 3000000000, "f": 1.0}"#)
                .unwrap();
        assert_eq!(d.get("a").unwrap(), Some(RawBsonRef::Double(98.357_232_094_183_43)));
        assert_eq!(d.get_f64("a").unwrap().to_bits(), "98.35723209418343".parse::<f64>().unwrap().to_bits());
        assert_eq!(d.get_f64("b").unwrap().to_bits(), "4.5476109051041603e18".parse::<f64>().unwrap().to_bits());
        assert_eq!(d.get("c").unwrap(), Some(RawBsonRef::Int32(7)));
        assert_eq!(d.get("e").unwrap(), Some(RawBsonRef::Int64(3_000_000_000)));
        assert_eq!(d.get("f").unwrap(), Some(RawBsonRef::Double(1.0)));
    }
}

//! Extended JSON (canonical, relaxed, and the legacy forms older mongoexport
//! and Compass wrote: `$date` strings and numbers, `{"$binary": "…",
//! "$type": "…"}`, `{"$regex": "…", "$options": "…"}`) → raw BSON, exactly.
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

use crate::value::datetime::parse_iso;

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
    let Strict(mut value) = serde_json::from_slice(bytes).map_err(|e| {
        // Too deep is a property of this document, not a broken file: the
        // parser's own bound (128) stops it before any stack can overflow.
        if e.to_string().contains("recursion limit exceeded") {
            JsonError::Value(format!("nested deeper than {} levels (MongoDB's limit)", super::strict::MAX_DEPTH))
        } else if e.is_data() {
            // Raised by `Strict` itself: valid JSON, refused content.
            JsonError::Value(e.to_string())
        } else {
            JsonError::Syntax(format!("invalid JSON: {e}"))
        }
    })?;
    if !value.is_object() {
        return Err(JsonError::Syntax("a document must be a JSON object".into()));
    }
    if let Some(big) = integer_beyond_int64(bytes) {
        return Err(JsonError::Value(format!(
            "the integer {big} does not fit a 64-bit integer and would be rounded; write it as {{\"$numberDecimal\": \"{big}\"}} or as a string"
        )));
    }
    normalize(&mut value).map_err(JsonError::Value)?;
    match Bson::try_from(value).map_err(|e| JsonError::Value(format!("invalid extended JSON: {e}")))? {
        Bson::Document(d) => RawDocumentBuf::try_from(&d).map_err(|e| JsonError::Value(e.to_string())),
        _ => Err(JsonError::Syntax("a document must be a JSON object".into())),
    }
}

/// A JSON value whose objects may not repeat a key: `{"a": 1, "a": 2}`
/// would otherwise silently keep the last, a value changed without a word.
struct Strict(Value);

impl<'de> serde::Deserialize<'de> for Strict {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(StrictVisitor).map(Strict)
    }
}

struct StrictVisitor;

impl<'de> serde::de::Visitor<'de> for StrictVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_bool<E>(self, b: bool) -> Result<Value, E> {
        Ok(Value::Bool(b))
    }
    fn visit_i64<E>(self, i: i64) -> Result<Value, E> {
        Ok(Value::from(i))
    }
    fn visit_u64<E>(self, u: u64) -> Result<Value, E> {
        Ok(Value::from(u))
    }
    fn visit_f64<E>(self, f: f64) -> Result<Value, E> {
        Ok(serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number))
    }
    fn visit_str<E>(self, s: &str) -> Result<Value, E> {
        Ok(Value::String(s.to_string()))
    }
    fn visit_string<E>(self, s: String) -> Result<Value, E> {
        Ok(Value::String(s))
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(Strict(v)) = seq.next_element()? {
            items.push(v);
        }
        Ok(Value::Array(items))
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = serde_json::Map::new();
        while let Some(key) = map.next_key::<String>()? {
            if out.contains_key(&key) {
                return Err(serde::de::Error::custom(format!("the key {key:?} appears twice in one object")));
            }
            let Strict(v) = map.next_value()?;
            out.insert(key, v);
        }
        Ok(Value::Object(out))
    }
}

/// The first integer literal (outside strings) that does not fit int64:
/// serde_json would read it as the nearest double, changing its digits.
fn integer_beyond_int64(bytes: &[u8]) -> Option<String> {
    let (mut in_str, mut escaped) = (false, false);
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if in_str {
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_str = false,
                _ => {}
            }
            i += 1;
            continue;
        }
        if b == b'"' {
            in_str = true;
            i += 1;
            continue;
        }
        if b == b'-' || b.is_ascii_digit() {
            let start = i;
            i += 1;
            while i < bytes.len() && (bytes[i].is_ascii_digit() || b".eE+-".contains(&bytes[i])) {
                i += 1;
            }
            let token = std::str::from_utf8(&bytes[start..i]).unwrap_or("");
            let integral = !token.contains(['.', 'e', 'E']);
            if integral && token.len() >= 19 && token.parse::<i64>().is_err() {
                return Some(token.to_string());
            }
            continue;
        }
        i += 1;
    }
    None
}

/// The grammar of a `$numberDecimal` string (the extended-JSON
/// specification's): the bson crate reads `""`, `"."` or `"++1"` as numbers.
fn is_decimal_text(s: &str) -> bool {
    let body = s.strip_prefix(['-', '+']).unwrap_or(s);
    if ["inf", "infinity", "nan"].iter().any(|w| body.eq_ignore_ascii_case(w)) {
        return true;
    }
    let (mantissa, exponent) = match body.find(['e', 'E']) {
        Some(at) => (&body[..at], Some(&body[at + 1..])),
        None => (body, None),
    };
    let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let digits = |t: &str| t.bytes().all(|c| c.is_ascii_digit());
    let mantissa_ok = digits(int) && digits(frac) && !(int.is_empty() && frac.is_empty());
    let exponent_ok = exponent.is_none_or(|e| {
        let e = e.strip_prefix(['-', '+']).unwrap_or(e);
        !e.is_empty() && digits(e)
    });
    mantissa_ok && exponent_ok
}

/// Rewrites every `{"$date": "<string>"}` (and `{"$date": <whole float>}`)
/// into the canonical `{"$date": {"$numberLong": "<ms>"}}`, and refuses a
/// `$numberDecimal` that is not a decimal.
fn normalize(v: &mut Value) -> Result<(), String> {
    match v {
        Value::Array(items) => items.iter_mut().try_for_each(normalize),
        Value::Object(map) => {
            if map.len() == 1
                && let Some(Value::String(d)) = map.get("$numberDecimal")
                && !is_decimal_text(d)
            {
                return Err(format!("$numberDecimal {d:?} is not a decimal number"));
            }
            // Legacy binary: `{"$binary": "<base64>", "$type": "<hex>"}`.
            if map.len() == 2
                && let (Some(Value::String(data)), Some(Value::String(sub))) = (map.get("$binary"), map.get("$type"))
            {
                let sub = if sub.len() == 1 { format!("0{sub}") } else { sub.clone() };
                *v = serde_json::json!({ "$binary": { "base64": data, "subType": sub } });
                return Ok(());
            }
            // Legacy regular expression: `{"$regex": "...", "$options": "..."}`.
            if map.len() == 2
                && let (Some(Value::String(pattern)), Some(Value::String(options))) =
                    (map.get("$regex"), map.get("$options"))
            {
                *v = serde_json::json!({ "$regularExpression": { "pattern": pattern, "options": options } });
                return Ok(());
            }
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
            map.values_mut().try_for_each(normalize)
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

    /// Issue 10, item 7: what the extended-JSON specification calls parse
    /// errors, and integers that would be rounded, are rejects.
    #[test]
    fn lenient_json_is_refused() {
        for (text, why) in [
            (r#"{"d": {"$numberDecimal": ""}}"#, "is not a decimal"),
            (r#"{"d": {"$numberDecimal": "."}}"#, "is not a decimal"),
            (r#"{"d": {"$numberDecimal": "E01"}}"#, "is not a decimal"),
            (r#"{"d": {"$numberDecimal": "-+32.4"}}"#, "is not a decimal"),
            (r#"{"d": {"$numberDecimal": "++1"}}"#, "is not a decimal"),
            (r#"{"d": {"$numberDecimal": "1.2e"}}"#, "is not a decimal"),
            (r#"{"n": 123456789012345678901234567890}"#, "does not fit a 64-bit integer"),
            (r#"{"n": [1, -9223372036854775809]}"#, "does not fit a 64-bit integer"),
            (r#"{"a": 1, "a": 2}"#, "appears twice"),
            (r#"{"o": {"k": 1, "k": 1}}"#, "appears twice"),
        ] {
            match json_to_doc(text.as_bytes()) {
                Err(JsonError::Value(e)) => assert!(e.contains(why), "{text}: {e}"),
                other => panic!("{text}: {other:?}"),
            }
        }
        for text in [
            r#"{"d": {"$numberDecimal": "1.50"}}"#,
            r#"{"d": {"$numberDecimal": "-Infinity"}}"#,
            r#"{"d": {"$numberDecimal": "+.5E-3"}}"#,
            r#"{"d": {"$numberDecimal": "NaN"}}"#,
            r#"{"n": 9223372036854775807, "m": -9223372036854775808, "f": 1e30, "s": "123456789012345678901234567890"}"#,
        ] {
            assert!(json_to_doc(text.as_bytes()).is_ok(), "{text}");
        }
    }

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

    /// Binary and regular expressions: canonical and legacy give the same value.
    #[test]
    fn every_binary_and_regex_dialect_gives_the_same_value() {
        let binary = [
            r#"{"b": {"$binary": {"base64": "AAH/", "subType": "09"}}}"#,
            r#"{"b": {"$binary": "AAH/", "$type": "09"}}"#,
            r#"{"b": {"$binary": "AAH/", "$type": "9"}}"#,
        ];
        for f in binary {
            let d = json_to_doc(f.as_bytes()).unwrap();
            let Some(RawBsonRef::Binary(b)) = d.get("b").unwrap() else { panic!("{f}") };
            assert_eq!((b.subtype, b.bytes), (bson::spec::BinarySubtype::Vector, &[0u8, 1, 255][..]), "{f}");
        }
        let regex = [
            r#"{"r": {"$regularExpression": {"pattern": "^a.*", "options": "i"}}}"#,
            r#"{"r": {"$regex": "^a.*", "$options": "i"}}"#,
        ];
        for f in regex {
            let d = json_to_doc(f.as_bytes()).unwrap();
            let Some(RawBsonRef::RegularExpression(r)) = d.get("r").unwrap() else { panic!("{f}") };
            assert_eq!((r.pattern.as_str(), r.options.as_str()), ("^a.*", "i"), "{f}");
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

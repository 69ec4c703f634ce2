//! BSON written as JSON text for json/jsonb columns, in a declared form.
//!
//! JSON has no ObjectId, date, 64-bit integer or decimal type, so a mapping
//! declares what those become (`[json]` in the project file, per mapping or
//! per column). The writer works on raw BSON and builds the text directly.
//!
//! Knows BSON and JSON; nothing of columns or the database.

use std::fmt::Write as _;

use base64::Engine as _;
use bson::RawBsonRef;
use bson::spec::BinarySubtype;
use uuid::Uuid;

use crate::value::ids::IdNamespace;
use crate::value::text::iso_date;

/// What an ObjectId becomes inside JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ObjectIdForm {
    /// `"507f1f77bcf86cd799439011"`
    Hex,
    /// The same UUIDv5 an `id` column derives, so JSON and columns agree.
    Uuid,
    /// `{"$oid": "507f..."}`, MongoDB extended JSON.
    Extended,
}

/// What a BSON date becomes inside JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DateForm {
    /// `"2025-01-15T00:00:00Z"` (RFC 3339, UTC, milliseconds when not zero).
    Iso,
    /// Milliseconds since the epoch, as a number.
    Millis,
    /// `{"$date": "2025-01-15T00:00:00Z"}`, MongoDB relaxed extended JSON.
    Extended,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JsonForm {
    pub object_ids: ObjectIdForm,
    pub dates: DateForm,
}

impl Default for JsonForm {
    fn default() -> Self {
        JsonForm { object_ids: ObjectIdForm::Hex, dates: DateForm::Iso }
    }
}

impl ObjectIdForm {
    pub const NAMES: &'static [&'static str] = &["hex", "uuid", "extended"];
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "hex" => ObjectIdForm::Hex,
            "uuid" => ObjectIdForm::Uuid,
            "extended" => ObjectIdForm::Extended,
            _ => return None,
        })
    }
}

impl DateForm {
    pub const NAMES: &'static [&'static str] = &["iso", "millis", "extended"];
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "iso" => DateForm::Iso,
            "millis" => DateForm::Millis,
            "extended" => DateForm::Extended,
            _ => return None,
        })
    }
}

/// Writes `v` as JSON text. Fails only on values JSON cannot hold in the
/// declared form (a NaN double, a NUL character for jsonb).
pub fn write_json(v: RawBsonRef<'_>, form: &JsonForm, ns: &IdNamespace, out: &mut String) -> Result<(), String> {
    match v {
        RawBsonRef::Document(d) => {
            out.push('{');
            for (i, el) in d.iter().enumerate() {
                let (k, val) = el.map_err(|e| format!("malformed BSON: {e}"))?;
                if i > 0 {
                    out.push(',');
                }
                write_str(k.as_str(), out);
                out.push(':');
                write_json(val, form, ns, out)?;
            }
            out.push('}');
        }
        RawBsonRef::Array(a) => {
            out.push('[');
            for (i, el) in a.into_iter().enumerate() {
                let val = el.map_err(|e| format!("malformed BSON: {e}"))?;
                if i > 0 {
                    out.push(',');
                }
                write_json(val, form, ns, out)?;
            }
            out.push(']');
        }
        RawBsonRef::String(s) | RawBsonRef::Symbol(s) => write_str(s, out),
        RawBsonRef::Int32(i) => {
            let _ = write!(out, "{i}");
        }
        RawBsonRef::Int64(i) => {
            let _ = write!(out, "{i}");
        }
        RawBsonRef::Double(d) if d.is_finite() => {
            let _ = write!(out, "{d}");
        }
        RawBsonRef::Double(d) => return Err(format!("the double {d} has no JSON form")),
        RawBsonRef::Decimal128(d) => match super::text::decimal128_text(d) {
            // A number, not `NaN` or `±Infinity`, which JSON cannot hold.
            Some(t) if t.trim_start_matches('-').starts_with(|c: char| c.is_ascii_digit()) => out.push_str(&t),
            _ => return Err(format!("the decimal {d} has no JSON form")),
        },
        RawBsonRef::Boolean(b) => out.push_str(if b { "true" } else { "false" }),
        RawBsonRef::Null | RawBsonRef::Undefined => out.push_str("null"),
        RawBsonRef::ObjectId(oid) => match form.object_ids {
            ObjectIdForm::Hex => write_str(&oid.to_hex(), out),
            ObjectIdForm::Uuid => write_str(&ns.object_id(&oid).hyphenated().to_string(), out),
            ObjectIdForm::Extended => {
                let _ = write!(out, "{{\"$oid\":\"{}\"}}", oid.to_hex());
            }
        },
        RawBsonRef::DateTime(dt) => match form.dates {
            DateForm::Millis => {
                let _ = write!(out, "{}", dt.timestamp_millis());
            }
            DateForm::Iso | DateForm::Extended => {
                let iso = iso_date(dt);
                if form.dates == DateForm::Extended {
                    out.push_str("{\"$date\":");
                    write_str(&iso, out);
                    out.push('}');
                } else {
                    write_str(&iso, out);
                }
            }
        },
        RawBsonRef::Binary(b) => {
            if matches!(b.subtype, BinarySubtype::Uuid | BinarySubtype::UuidOld)
                && let Ok(u) = Uuid::from_slice(b.bytes)
            {
                write_str(&u.hyphenated().to_string(), out);
            } else {
                write_str(&base64::engine::general_purpose::STANDARD.encode(b.bytes), out);
            }
        }
        other => {
            // Regex, code, timestamps, min/max keys: MongoDB's own extended form.
            let b = bson::Bson::try_from(other).map_err(|e| e.to_string())?;
            out.push_str(&b.into_relaxed_extjson().to_string());
        }
    }
    Ok(())
}

fn write_str(s: &str, out: &mut String) {
    out.push('"');
    // Runs of bytes that need no escape are copied whole: strings are
    // mostly plain text, and a char at a time took twice the CPU
    // (docs/PERFORMANCE.md).
    let b = s.as_bytes();
    let mut plain = 0;
    for (i, &c) in b.iter().enumerate() {
        // `None`: a control character without a short escape.
        let escape = match c {
            b'"' => Some("\\\""),
            b'\\' => Some("\\\\"),
            b'\n' => Some("\\n"),
            b'\r' => Some("\\r"),
            b'\t' => Some("\\t"),
            c if c < 0x20 => None,
            _ => continue,
        };
        // Every byte that ends a run is ASCII, so `i` is a char boundary.
        out.push_str(&s[plain..i]);
        match escape {
            Some(e) => out.push_str(e),
            None => {
                let _ = write!(out, "\\u{:04x}", c);
            }
        }
        plain = i + 1;
    }
    out.push_str(&s[plain..]);
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;
    use bson::{oid::ObjectId, rawdoc};

    #[test]
    fn forms() {
        let oid = ObjectId::parse_str("507f1f77bcf86cd799439011").unwrap();
        let d = rawdoc! { "id": oid, "at": bson::DateTime::from_millis(-1000), "n": 3_i64, "s": "a\"b\n" };
        let ns = IdNamespace::default();
        let cases = [
            (
                ObjectIdForm::Hex,
                DateForm::Iso,
                r#"{"id":"507f1f77bcf86cd799439011","at":"1969-12-31T23:59:59Z","n":3,"s":"a\"b\n"}"#.to_string(),
            ),
            (
                ObjectIdForm::Extended,
                DateForm::Millis,
                r#"{"id":{"$oid":"507f1f77bcf86cd799439011"},"at":-1000,"n":3,"s":"a\"b\n"}"#.to_string(),
            ),
            (
                ObjectIdForm::Uuid,
                DateForm::Extended,
                format!(
                    r#"{{"id":"{}","at":{{"$date":"1969-12-31T23:59:59Z"}},"n":3,"s":"a\"b\n"}}"#,
                    ns.object_id(&oid)
                ),
            ),
        ];
        for (o, dt, expected) in cases {
            let mut out = String::new();
            write_json(RawBsonRef::Document(&d), &JsonForm { object_ids: o, dates: dt }, &ns, &mut out).unwrap();
            assert_eq!(out, expected);
        }
        let mut out = String::new();
        assert!(write_json(RawBsonRef::Double(f64::NAN), &JsonForm::default(), &ns, &mut out).is_err());
    }

    proptest::proptest! {
        /// Any string, escaped in runs, is what a char-at-a-time escaper
        /// writes and what a JSON parser reads back as the same string.
        #[test]
        fn strings_escape_as_char_by_char(s in "(?s).{0,40}", raw in proptest::collection::vec(0u8..0x30, 0..20)) {
            let with_controls: String = raw.iter().map(|&b| b as char).collect::<String>() + &s;
            for s in [s.as_str(), with_controls.as_str()] {
                let mut out = String::new();
                write_str(s, &mut out);
                let mut oracle = String::from('"');
                for c in s.chars() {
                    match c {
                        '"' => oracle.push_str("\\\""),
                        '\\' => oracle.push_str("\\\\"),
                        '\n' => oracle.push_str("\\n"),
                        '\r' => oracle.push_str("\\r"),
                        '\t' => oracle.push_str("\\t"),
                        c if (c as u32) < 0x20 => oracle.push_str(&format!("\\u{:04x}", c as u32)),
                        c => oracle.push(c),
                    }
                }
                oracle.push('"');
                proptest::prop_assert_eq!(&out, &oracle);
                proptest::prop_assert_eq!(serde_json::from_str::<String>(&out).unwrap(), s);
            }
        }
    }
}

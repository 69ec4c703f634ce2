//! One typed value bound for a PostgreSQL column, and its encoding in
//! COPY's text format.
//!
//! A `Cell` is produced only by coercion, so it always fits its column type.
//! This module knows PostgreSQL's text formats, nothing of BSON or mappings.

use std::borrow::Cow;
use std::fmt::Write as _;

use chrono::{DateTime, Datelike, NaiveDate, NaiveDateTime, Utc};
use uuid::Uuid;

/// A whole word for the variant's tag: a UUID's sixteen bytes then start
/// at a word, not at the second byte, and moving a cell (every column of
/// every row) is whole words the processor forwards from store to load
/// (the byte-wise moves stalled: 7% of a load's CPU, `docs/PERFORMANCE.md`).
#[derive(Debug, Clone, PartialEq)]
#[repr(u64)]
pub enum Cell<'a> {
    Null,
    Text(Cow<'a, str>),
    Int(i64),
    Double(f64),
    Real(f32),
    /// A decimal in plain notation (`-12.50`), or `NaN`/`Infinity`/`-Infinity`.
    Numeric(String),
    Bool(bool),
    Date(NaiveDate),
    Timestamp(NaiveDateTime),
    Timestamptz(DateTime<Utc>),
    Uuid(Uuid),
    /// JSON text, already serialized.
    Json(String),
    /// `bytea`: the bytes themselves.
    Bytes(Cow<'a, [u8]>),
    /// A PostGIS geometry or geography as EWKB (its text form is the hex).
    Ewkb(Vec<u8>),
    Array(Vec<Cell<'a>>),
}

impl Cell<'_> {
    pub fn into_owned(self) -> Cell<'static> {
        match self {
            Cell::Null => Cell::Null,
            Cell::Text(t) => Cell::Text(Cow::Owned(t.into_owned())),
            Cell::Int(i) => Cell::Int(i),
            Cell::Double(d) => Cell::Double(d),
            Cell::Real(r) => Cell::Real(r),
            Cell::Numeric(n) => Cell::Numeric(n),
            Cell::Bool(b) => Cell::Bool(b),
            Cell::Date(d) => Cell::Date(d),
            Cell::Timestamp(t) => Cell::Timestamp(t),
            Cell::Timestamptz(t) => Cell::Timestamptz(t),
            Cell::Uuid(u) => Cell::Uuid(u),
            Cell::Json(j) => Cell::Json(j),
            Cell::Bytes(b) => Cell::Bytes(Cow::Owned(b.into_owned())),
            Cell::Ewkb(b) => Cell::Ewkb(b),
            Cell::Array(a) => Cell::Array(a.into_iter().map(Cell::into_owned).collect()),
        }
    }

    pub fn is_null(&self) -> bool {
        matches!(self, Cell::Null)
    }

    /// The value as PostgreSQL prints it in text output (before COPY escaping).
    /// Used for COPY, for messages and for comparing with what the database holds.
    pub fn to_pg_text(&self) -> Option<String> {
        let mut s = String::new();
        self.write_pg_text(&mut s).then_some(s)
    }

    /// `to_pg_text` appended to `s` (a buffer the caller reuses); false,
    /// and nothing written, for NULL.
    pub fn write_pg_text(&self, s: &mut String) -> bool {
        match self {
            Cell::Null => return false,
            Cell::Text(t) => s.push_str(t),
            Cell::Int(i) => {
                let _ = write!(s, "{i}");
            }
            Cell::Double(d) => push_float(s, *d),
            Cell::Real(r) => push_float(s, f64::from(*r)),
            Cell::Numeric(n) => s.push_str(n),
            Cell::Bool(b) => s.push_str(if *b { "t" } else { "f" }),
            Cell::Date(d) => push_date(s, *d),
            Cell::Timestamp(t) => push_datetime(s, *t, ""),
            Cell::Timestamptz(t) => push_datetime(s, t.naive_utc(), "+00"),
            Cell::Uuid(u) => s.push_str(u.hyphenated().encode_lower(&mut uuid::Uuid::encode_buffer())),
            Cell::Json(j) => s.push_str(j),
            // bytea's hex form, as PostgreSQL prints it.
            Cell::Bytes(b) => {
                s.push_str("\\x");
                for byte in b.iter() {
                    let _ = write!(s, "{byte:02x}");
                }
            }
            Cell::Ewkb(b) => {
                for byte in b {
                    let _ = write!(s, "{byte:02X}");
                }
            }
            Cell::Array(items) => {
                s.push('{');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        s.push(',');
                    }
                    match item.to_pg_text() {
                        None => s.push_str("NULL"),
                        Some(t) => {
                            s.push('"');
                            for c in t.chars() {
                                if c == '"' || c == '\\' {
                                    s.push('\\');
                                }
                                s.push(c);
                            }
                            s.push('"');
                        }
                    }
                }
                s.push('}');
            }
        }
        true
    }

    /// The value's identity under PostgreSQL's `=` for its column type:
    /// equal values give equal identities (`1.50` and `1.5` as numeric,
    /// `-0` and `0` as double, jsonb objects whatever their key order), so
    /// a dry run finds the duplicate keys the server would. `None` for NULL,
    /// which never equals anything.
    pub fn identity(&self) -> Option<String> {
        Some(match self {
            Cell::Null => return None,
            Cell::Double(d) if *d == 0.0 => "0".into(),
            Cell::Real(r) if *r == 0.0 => "0".into(),
            Cell::Numeric(n) => super::text::canonical_decimal(n).to_string(),
            Cell::Json(j) => match serde_json::from_str::<serde_json::Value>(j) {
                Ok(v) => {
                    let mut s = String::new();
                    canonical_json(&v, &mut s);
                    s
                }
                Err(_) => j.clone(),
            },
            Cell::Array(items) => {
                let parts: Vec<Option<String>> = items.iter().map(Cell::identity).collect();
                serde_json::to_string(&parts).unwrap_or_default()
            }
            other => other.to_pg_text()?,
        })
    }

    /// Appends this value as one field of a COPY text-format row. The
    /// common types are written straight into the buffer: this runs for
    /// every cell of every row.
    pub fn write_copy_text(&self, out: &mut Vec<u8>) {
        match self {
            Cell::Null => out.extend_from_slice(b"\\N"),
            Cell::Text(t) => escape_copy(t, out),
            Cell::Int(i) => push_int(out, *i),
            Cell::Bool(b) => out.push(if *b { b't' } else { b'f' }),
            Cell::Uuid(u) => {
                out.extend_from_slice(u.hyphenated().encode_lower(&mut uuid::Uuid::encode_buffer()).as_bytes())
            }
            Cell::Date(d) if (1..=9999).contains(&d.year()) => push_ymd_bytes(out, *d),
            Cell::Timestamp(t) if (1..=9999).contains(&t.year()) => push_datetime_bytes(out, *t, b""),
            Cell::Timestamptz(t) if (1..=9999).contains(&t.year()) => push_datetime_bytes(out, t.naive_utc(), b"+00"),
            Cell::Json(j) => escape_copy(j, out),
            other => {
                if let Some(t) = other.to_pg_text() {
                    escape_copy(&t, out);
                }
            }
        }
    }
}

fn push_int(out: &mut Vec<u8>, i: i64) {
    let mut buf = [0u8; 20];
    let mut n = i.unsigned_abs();
    let mut at = buf.len();
    loop {
        at -= 1;
        buf[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    if i < 0 {
        out.push(b'-');
    }
    out.extend_from_slice(&buf[at..]);
}

fn push_digits(out: &mut Vec<u8>, v: u32, width: usize) {
    let mut buf = [b'0'; 10];
    let mut n = v;
    for slot in buf[..width].iter_mut().rev() {
        *slot = b'0' + (n % 10) as u8;
        n /= 10;
    }
    out.extend_from_slice(&buf[..width]);
}

fn push_ymd_bytes(out: &mut Vec<u8>, d: NaiveDate) {
    push_digits(out, d.year() as u32, 4);
    out.push(b'-');
    push_digits(out, d.month(), 2);
    out.push(b'-');
    push_digits(out, d.day(), 2);
}

/// `YYYY-MM-DD HH:MM:SS[.ffffff]` for years 1 to 9999 (others take the general path).
fn push_datetime_bytes(out: &mut Vec<u8>, t: NaiveDateTime, zone: &[u8]) {
    use chrono::Timelike;
    push_ymd_bytes(out, t.date());
    out.push(b' ');
    push_digits(out, t.hour(), 2);
    out.push(b':');
    push_digits(out, t.minute(), 2);
    out.push(b':');
    push_digits(out, t.second(), 2);
    let micros = t.nanosecond() / 1000;
    if micros > 0 {
        out.push(b'.');
        let mut digits = 6;
        let mut m = micros;
        while m % 10 == 0 {
            m /= 10;
            digits -= 1;
        }
        push_digits(out, m, digits);
    }
    out.extend_from_slice(zone);
}

/// jsonb's equality: object keys in one order, numbers by value.
fn canonical_json(v: &serde_json::Value, out: &mut String) {
    use serde_json::Value;
    match v {
        Value::Number(n) => out.push_str(&match n.as_f64() {
            Some(f) if n.is_f64() => {
                let mut t = String::new();
                push_float(&mut t, f);
                super::text::canonical_decimal(&t).to_string()
            }
            _ => super::text::canonical_decimal(&n.to_string()).to_string(),
        }),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                canonical_json(item, out);
            }
            out.push(']');
        }
        Value::Object(map) => {
            let mut entries: Vec<_> = map.iter().collect();
            entries.sort_by(|a, b| a.0.cmp(b.0));
            out.push('{');
            for (i, (k, item)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(k.clone()).to_string());
                out.push(':');
                canonical_json(item, out);
            }
            out.push('}');
        }
        other => out.push_str(&other.to_string()),
    }
}

fn push_float(s: &mut String, d: f64) {
    if d.is_nan() {
        s.push_str("NaN");
    } else if d.is_infinite() {
        s.push_str(if d > 0.0 { "Infinity" } else { "-Infinity" });
    } else {
        let _ = write!(s, "{d}");
    }
}

/// PostgreSQL writes years before 1 AD with a trailing ` BC` (there is no year 0).
fn push_date(s: &mut String, d: NaiveDate) {
    push_ymd(s, d);
    if d.year() <= 0 {
        s.push_str(" BC");
    }
}

fn push_ymd(s: &mut String, d: NaiveDate) {
    let y = d.year();
    let shown = if y <= 0 { 1 - y } else { y };
    let _ = write!(s, "{:04}-{:02}-{:02}", shown, d.month(), d.day());
}

/// `YYYY-MM-DD HH:MM:SS[.ffffff][zone][ BC]`, as PostgreSQL prints it.
fn push_datetime(s: &mut String, t: NaiveDateTime, zone: &str) {
    use chrono::Timelike;
    push_ymd(s, t.date());
    let _ = write!(s, " {:02}:{:02}:{:02}", t.hour(), t.minute(), t.second());
    let micros = t.nanosecond() / 1000;
    if micros > 0 {
        let frac = format!("{micros:06}");
        s.push('.');
        s.push_str(frac.trim_end_matches('0'));
    }
    s.push_str(zone);
    if t.year() <= 0 {
        s.push_str(" BC");
    }
}

/// COPY text format: backslash, tab, newline and carriage return are escaped.
pub fn escape_copy(s: &str, out: &mut Vec<u8>) {
    let bytes = s.as_bytes();
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let esc: &[u8] = match b {
            b'\\' => b"\\\\",
            b'\t' => b"\\t",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            _ => continue,
        };
        out.extend_from_slice(&bytes[start..i]);
        out.extend_from_slice(esc);
        start = i + 1;
    }
    out.extend_from_slice(&bytes[start..]);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn copy(c: Cell) -> String {
        let mut v = Vec::new();
        c.write_copy_text(&mut v);
        String::from_utf8(v).unwrap()
    }

    /// Values PostgreSQL's `=` finds equal have one identity; others differ.
    #[test]
    fn identity_follows_postgres_equality() {
        let same: Vec<(Cell, Cell)> = vec![
            (Cell::Numeric("1.50".into()), Cell::Numeric("1.5".into())),
            (Cell::Numeric("10.000".into()), Cell::Numeric("10".into())),
            (Cell::Numeric("-0.00".into()), Cell::Numeric("0".into())),
            (Cell::Double(-0.0), Cell::Double(0.0)),
            (Cell::Real(-0.0), Cell::Real(0.0)),
            (Cell::Double(f64::NAN), Cell::Double(f64::NAN)),
            (Cell::Json(r#"{"b":1,"a":[1.0,"x"]}"#.into()), Cell::Json(r#"{"a": [1, "x"], "b": 1.00}"#.into())),
        ];
        for (a, b) in same {
            assert_eq!(a.identity(), b.identity(), "{a:?} = {b:?}");
        }
        let differ: Vec<(Cell, Cell)> = vec![
            (Cell::Numeric("10".into()), Cell::Numeric("1".into())),
            (Cell::Numeric("100".into()), Cell::Numeric("1".into())),
            (Cell::Text("a".into()), Cell::Text("a ".into())),
            (Cell::Double(1e20), Cell::Double(1e21)),
            (Cell::Json(r#"{"a":"1"}"#.into()), Cell::Json(r#"{"a":1}"#.into())),
            (
                Cell::Array(vec![Cell::Text("a,b".into())]),
                Cell::Array(vec![Cell::Text("a".into()), Cell::Text("b".into())]),
            ),
        ];
        for (a, b) in differ {
            assert_ne!(a.identity(), b.identity(), "{a:?} <> {b:?}");
        }
        assert_eq!(Cell::Null.identity(), None);
    }

    #[test]
    fn copy_text_encoding() {
        let d = NaiveDate::from_ymd_opt(1969, 7, 20).unwrap();
        let cases: Vec<(Cell, &str)> = vec![
            (Cell::Null, "\\N"),
            (Cell::Text("a\tb\\c\nd".into()), "a\\tb\\\\c\\nd"),
            (Cell::Int(-42), "-42"),
            (Cell::Double(f64::NAN), "NaN"),
            (Cell::Double(f64::NEG_INFINITY), "-Infinity"),
            (Cell::Double(0.1), "0.1"),
            (Cell::Bool(true), "t"),
            (Cell::Date(d), "1969-07-20"),
            (Cell::Date(NaiveDate::from_ymd_opt(-43, 3, 15).unwrap()), "0044-03-15 BC"),
            (Cell::Timestamp(d.and_hms_milli_opt(20, 17, 40, 500).unwrap()), "1969-07-20 20:17:40.5"),
            (Cell::Timestamptz(d.and_hms_opt(0, 0, 0).unwrap().and_utc()), "1969-07-20 00:00:00+00"),
            (
                Cell::Timestamp(NaiveDate::from_ymd_opt(-43, 3, 15).unwrap().and_hms_opt(12, 0, 0).unwrap()),
                "0044-03-15 12:00:00 BC",
            ),
            (
                Cell::Array(vec![Cell::Text("a b".into()), Cell::Null, Cell::Text("q\"\\".into())]),
                "{\"a b\",NULL,\"q\\\\\"\\\\\\\\\"}",
            ),
            (Cell::Json("{\"a\":\"x\\ny\"}".into()), "{\"a\":\"x\\\\ny\"}"),
        ];
        for (cell, expected) in cases {
            assert_eq!(copy(cell.clone()), expected, "{cell:?}");
        }
    }
}

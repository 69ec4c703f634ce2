//! Shared text of values, the one leaf the other value modules use: a
//! BSON value's kind and preview for messages, plain decimal and double
//! text, one canonical spelling of a decimal, and the ISO form of a date.
//!
//! Knows BSON and number formats; nothing else (it imports no other
//! module of the crate, so coercion, ids and JSON forms need not import
//! each other).

use bson::RawBsonRef;

/// A short name of a BSON value's type, for messages.
pub fn bson_kind(v: RawBsonRef<'_>) -> &'static str {
    match v {
        RawBsonRef::Double(_) => "double",
        RawBsonRef::String(_) => "string",
        RawBsonRef::Array(_) => "array",
        RawBsonRef::Document(_) => "document",
        RawBsonRef::Boolean(_) => "bool",
        RawBsonRef::Null => "null",
        RawBsonRef::RegularExpression(_) => "regex",
        RawBsonRef::JavaScriptCode(_) | RawBsonRef::JavaScriptCodeWithScope(_) => "javascript",
        RawBsonRef::Int32(_) => "int32",
        RawBsonRef::Int64(_) => "int64",
        RawBsonRef::Timestamp(_) => "timestamp",
        RawBsonRef::Binary(_) => "binary",
        RawBsonRef::ObjectId(_) => "objectId",
        RawBsonRef::DateTime(_) => "date",
        RawBsonRef::Symbol(_) => "symbol",
        RawBsonRef::Decimal128(_) => "decimal128",
        RawBsonRef::Undefined => "undefined",
        RawBsonRef::MaxKey => "maxKey",
        RawBsonRef::MinKey => "minKey",
        RawBsonRef::DbPointer(_) => "dbPointer",
    }
}

/// A short rendering of a value for messages.
pub fn preview(v: RawBsonRef<'_>) -> String {
    match v {
        RawBsonRef::String(s) => {
            let short: String = s.chars().take(40).collect();
            if short.len() < s.len() { format!("{short:?}…") } else { format!("{short:?}") }
        }
        RawBsonRef::Double(d) => d.to_string(),
        RawBsonRef::Int32(i) => i.to_string(),
        RawBsonRef::Int64(i) => i.to_string(),
        RawBsonRef::Decimal128(d) => d.to_string(),
        RawBsonRef::Boolean(b) => b.to_string(),
        RawBsonRef::ObjectId(o) => o.to_hex(),
        RawBsonRef::DateTime(d) => iso_date(d),
        RawBsonRef::Document(_) => "{…}".into(),
        RawBsonRef::Array(_) => "[…]".into(),
        _ => String::new(),
    }
}

/// Shortest text that reads back as the same double; `NaN`, `Infinity`.
pub fn float_text(d: f64) -> String {
    if d.is_nan() {
        "NaN".into()
    } else if d.is_infinite() {
        if d > 0.0 { "Infinity".into() } else { "-Infinity".into() }
    } else {
        format!("{d}")
    }
}

/// Normalizes a decimal (`1.50E+3`, `-0.5`, `+7`, `NaN`, `-Infinity`) to plain
/// notation (`1500`, `-0.5`, `7`); `None` if it is not a number.
pub fn decimal_text(raw: &str) -> Option<String> {
    match raw {
        "NaN" | "-NaN" => return Some("NaN".into()),
        "Infinity" | "Inf" | "inf" => return Some("Infinity".into()),
        "-Infinity" | "-Inf" | "-inf" => return Some("-Infinity".into()),
        _ => {}
    }
    let (neg, rest) = match raw.as_bytes().first()? {
        b'-' => (true, &raw[1..]),
        b'+' => (false, &raw[1..]),
        _ => (false, raw),
    };
    let (mantissa, exp) = match rest.find(['e', 'E']) {
        Some(i) => (&rest[..i], rest[i + 1..].parse::<i64>().ok()?),
        None => (rest, 0),
    };
    let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    if int.is_empty() && frac.is_empty() || !int.bytes().chain(frac.bytes()).all(|b| b.is_ascii_digit()) {
        return None;
    }
    // All digits, and where the decimal point falls in them.
    let digits: String = format!("{int}{frac}");
    plain_decimal(neg, &digits, int.len() as i64 + exp)
}

/// A Decimal128 in plain notation: what `decimal_text` makes of the
/// driver's text of it, read from its bits without that text. The usual
/// encoding (a coefficient of up to 113 bits) is read here; the others
/// (NaN, infinities, the large-coefficient form) go through the driver.
pub fn decimal128_text(d: bson::Decimal128) -> Option<String> {
    let bits = u128::from_le_bytes(d.bytes());
    let coefficient = bits & ((1u128 << 113) - 1);
    if (bits >> 125) & 0b11 == 0b11 || coefficient > 9_999_999_999_999_999_999_999_999_999_999_999 {
        return decimal_text(&d.to_string());
    }
    let exponent = ((bits >> 113) & 0x3fff) as i64 - 6176;
    let digits = coefficient.to_string();
    plain_decimal(bits >> 127 == 1, &digits, digits.len() as i64 + exponent)
}

/// `digits` (ASCII digits, leading zeros allowed) with the decimal point
/// after the `point`th of them (before them when negative, past them when
/// beyond), in plain notation: no leading zeros but one, the fraction's
/// digits as given, no sign on zero.
fn plain_decimal(neg: bool, digits: &str, point: i64) -> Option<String> {
    if point.abs() > 10_000 {
        return None;
    }
    let (int, frac, zeros_before, zeros_after) = if point <= 0 {
        ("", digits, (-point) as usize, 0)
    } else if point as usize >= digits.len() {
        (digits, "", 0, point as usize - digits.len())
    } else {
        (&digits[..point as usize], &digits[point as usize..], 0, 0)
    };
    // The integer part: `int` then `zeros_after` zeros, without leading zeros.
    let int = int.trim_start_matches('0');
    let int_zero = int.is_empty();
    let is_zero = int_zero && frac.bytes().all(|b| b == b'0');
    let mut out = String::with_capacity(2 + int.len() + zeros_after + zeros_before + frac.len() + 1);
    if neg && !is_zero {
        out.push('-');
    }
    if int_zero {
        out.push('0');
    } else {
        out.push_str(int);
        out.extend(std::iter::repeat_n('0', zeros_after));
    }
    if zeros_before + frac.len() > 0 {
        out.push('.');
        out.extend(std::iter::repeat_n('0', zeros_before));
        out.push_str(frac);
    }
    Some(out)
}

/// Whether two plain decimals (as `decimal_text` writes them) are the same
/// number: `0.10` is `0.1`, `1.50` is `1.5`, `-0` is `0`.
pub fn same_number(a: &str, b: &str) -> bool {
    canonical_decimal(a) == canonical_decimal(b)
}

/// One spelling per numeric value of a plain decimal: no trailing zeros in
/// its fraction, no sign on zero (`1.50` → `1.5`, `-0.00` → `0`).
pub fn canonical_decimal(t: &str) -> &str {
    let t = if t.contains('.') && !t.contains(['e', 'E']) { t.trim_end_matches('0').trim_end_matches('.') } else { t };
    if !t.is_empty() && t.trim_start_matches('-').bytes().all(|b| b == b'0') { "0" } else { t }
}

/// RFC 3339 in UTC; milliseconds only when present, as MongoDB shows dates.
pub fn iso_date(dt: bson::DateTime) -> String {
    match chrono::DateTime::from_timestamp_millis(dt.timestamp_millis()) {
        Some(c) if dt.timestamp_millis() % 1000 == 0 => c.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
        Some(c) => c.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string(),
        None => dt.timestamp_millis().to_string(),
    }
}

/// The text a `map` table is keyed by: strings as they are, integers and booleans as written.
pub fn map_key(v: RawBsonRef<'_>) -> Option<String> {
    match v {
        RawBsonRef::String(s) => Some(s.to_string()),
        RawBsonRef::Int32(i) => Some(i.to_string()),
        RawBsonRef::Int64(i) => Some(i.to_string()),
        RawBsonRef::Boolean(b) => Some(b.to_string()),
        _ => None,
    }
}

/// The BSON type names a filter's `type` test takes (MongoDB's `$type` aliases).
pub const BSON_TYPE_NAMES: &[&str] = &[
    "string", "int", "long", "double", "decimal", "number", "date", "objectId", "array", "object", "bool", "null",
    "binData",
];

/// A value's BSON type as MongoDB's `$type` names it.
pub fn type_alias(v: RawBsonRef<'_>) -> &'static str {
    match v {
        RawBsonRef::Double(_) => "double",
        RawBsonRef::String(_) => "string",
        RawBsonRef::Document(_) => "object",
        RawBsonRef::Array(_) => "array",
        RawBsonRef::Binary(_) => "binData",
        RawBsonRef::Undefined => "undefined",
        RawBsonRef::ObjectId(_) => "objectId",
        RawBsonRef::Boolean(_) => "bool",
        RawBsonRef::DateTime(_) => "date",
        RawBsonRef::Null => "null",
        RawBsonRef::RegularExpression(_) => "regex",
        RawBsonRef::DbPointer(_) => "dbPointer",
        RawBsonRef::JavaScriptCode(_) => "javascript",
        RawBsonRef::Symbol(_) => "symbol",
        RawBsonRef::JavaScriptCodeWithScope(_) => "javascriptWithScope",
        RawBsonRef::Int32(_) => "int",
        RawBsonRef::Timestamp(_) => "timestamp",
        RawBsonRef::Int64(_) => "long",
        RawBsonRef::Decimal128(_) => "decimal",
        RawBsonRef::MinKey => "minKey",
        RawBsonRef::MaxKey => "maxKey",
    }
}

/// Whether a value is of the named BSON type (`number`: any numeric type).
pub fn is_bson_type(v: RawBsonRef<'_>, name: &str) -> bool {
    let alias = type_alias(v);
    alias == name || name == "number" && matches!(alias, "int" | "long" | "double" | "decimal")
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn dec(sign: bool, biased_exponent: u128, coefficient: u128) -> bson::Decimal128 {
        let bits = (u128::from(sign) << 127) | (biased_exponent << 113) | coefficient;
        bson::Decimal128::from_bytes(bits.to_le_bytes())
    }

    /// The driver's text of the value, normalized: what reading the bits
    /// must give, whatever the encoding.
    fn through_the_driver(d: bson::Decimal128) -> Option<String> {
        decimal_text(&d.to_string())
    }

    #[test]
    fn decimal128_texts() {
        let max = 9_999_999_999_999_999_999_999_999_999_999_999u128;
        for (d, want) in [
            (dec(false, 6176, 15), "15"),
            (dec(true, 6176 - 2, 150), "-1.50"),
            (dec(false, 6176 - 7, 1), "0.0000001"),
            (dec(false, 6176 + 3, 12), "12000"),
            (dec(true, 6176 - 3, 0), "0.000"),
            (dec(false, 6176 + 2, 0), "0"),
            (dec(false, 6176 - 34, max), "0.9999999999999999999999999999999999"),
        ] {
            assert_eq!(decimal128_text(d).as_deref(), Some(want), "{d}");
            assert_eq!(decimal128_text(d), through_the_driver(d), "{d}");
        }
        // Past 10,000 places either way: refused, as the driver's text is.
        for d in [dec(false, 0, 1), dec(false, 12287, 1), bson::Decimal128::from_bytes([0xff; 16])] {
            assert_eq!(decimal128_text(d), through_the_driver(d), "{d}");
        }
    }

    proptest! {
        #[test]
        fn decimal128_text_is_the_drivers_text_normalized(
            sign in any::<bool>(),
            exponent in prop_oneof![0u128..12288, 6150u128..6200],
            coefficient in prop_oneof![
                0u128..1_000_000,
                0u128..10_000_000_000_000_000_000_000_000_000_000_000,
                Just(10_000_000_000_000_000_000_000_000_000_000_000u128),
                0u128..(1 << 113),
            ],
            raw in any::<u128>(),
        ) {
            let d = dec(sign, exponent, coefficient);
            prop_assert_eq!(decimal128_text(d), through_the_driver(d));
            let r = bson::Decimal128::from_bytes(raw.to_le_bytes());
            prop_assert_eq!(decimal128_text(r), through_the_driver(r));
        }
    }
}

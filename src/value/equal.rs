//! Equality of BSON values as MongoDB queries see it, exactly: numbers by
//! value across int32, int64, double and decimal128 (`1`, `1.0` and decimal
//! `1.00` are equal; `2^53 + 1` as int64 is not the double `2^53`), every
//! other type by its bytes. Used by filters and by `null_if`.
//!
//! Knows BSON and decimal text; nothing else.

use bson::RawBsonRef;

use super::text::{canonical_decimal, decimal_text, decimal128_text, float_text};

/// A number's exact value as one canonical decimal text; `None` for non-numbers.
fn number(v: RawBsonRef<'_>) -> Option<String> {
    let text = match v {
        RawBsonRef::Int32(i) => i.to_string(),
        RawBsonRef::Int64(i) => i.to_string(),
        RawBsonRef::Double(d) => decimal_text(&float_text(d))?,
        RawBsonRef::Decimal128(d) => decimal128_text(d)?,
        _ => return None,
    };
    Some(canonical_decimal(&text).to_string())
}

/// Whether two values are equal (no array-element matching: see the filter's `matches`).
pub fn same_value(a: RawBsonRef<'_>, b: RawBsonRef<'_>) -> bool {
    match (number(a), number(b)) {
        (Some(x), Some(y)) => x == y,
        (None, None) => a == b,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bson::Decimal128;

    #[test]
    fn numbers_by_exact_value_others_by_bytes() {
        let dec = |s: &str| s.parse::<Decimal128>().unwrap();
        let (d1, d2) = (dec("1.00"), dec("0.1"));
        let same = [
            (RawBsonRef::Int32(1), RawBsonRef::Double(1.0)),
            (RawBsonRef::Int64(1), RawBsonRef::Decimal128(d1)),
            (RawBsonRef::Double(-0.0), RawBsonRef::Int32(0)),
            (RawBsonRef::Double(0.1), RawBsonRef::Decimal128(d2)),
            (RawBsonRef::String("N/A"), RawBsonRef::String("N/A")),
            (RawBsonRef::Null, RawBsonRef::Null),
        ];
        for (a, b) in same {
            assert!(same_value(a, b), "{a:?} = {b:?}");
        }
        let differ = [
            (RawBsonRef::Int64(9_007_199_254_740_993), RawBsonRef::Double(9_007_199_254_740_992.0)),
            (RawBsonRef::Int32(0), RawBsonRef::String("0")),
            (RawBsonRef::String("a"), RawBsonRef::String("A")),
            (RawBsonRef::Boolean(false), RawBsonRef::Int32(0)),
        ];
        for (a, b) in differ {
            assert!(!same_value(a, b), "{a:?} <> {b:?}");
        }
    }
}

//! `to_number`: a numeric string (`"12"`, `" -3.50 "`, `"1.5e3"`) becomes
//! the exact number it writes: an int64 when it is whole and fits, else a
//! decimal128 with the same digits. Numbers pass unchanged. A string that
//! is not a finite number (`"12a"`, `""`, `"NaN"`), or one with more
//! digits than decimal128 keeps, is refused.

use std::str::FromStr;

use bson::{Decimal128, RawBson, RawBsonRef};

use crate::value::text::{bson_kind, decimal_text, decimal128_text, preview};

pub(super) fn to_number(v: RawBsonRef<'_>) -> Result<Option<RawBson>, String> {
    let s = match v {
        RawBsonRef::Int32(_) | RawBsonRef::Int64(_) | RawBsonRef::Double(_) | RawBsonRef::Decimal128(_) => {
            return Ok(Some(RawBson::from(v)));
        }
        RawBsonRef::String(s) => s.trim(),
        other => return Err(format!("transform `to_number` expects a string or a number, got {}", bson_kind(other))),
    };
    let plain = decimal_text(s).filter(|t| !matches!(t.as_str(), "NaN" | "Infinity" | "-Infinity"));
    let Some(plain) = plain else {
        return Err(format!("string {} is not a number", preview(v)));
    };
    // A whole number keeps its sign of zero only as a decimal.
    let negative_zero = plain == "0" && s.starts_with('-');
    if !plain.contains('.')
        && !negative_zero
        && let Ok(i) = plain.parse::<i64>()
    {
        return Ok(Some(RawBson::Int64(i)));
    }
    // It is a number: a decimal128 that cannot hold it (or would round it) is the only way to fail.
    match Decimal128::from_str(s) {
        Ok(d) if decimal128_text(d).as_deref() == Some(plain.as_str()) => Ok(Some(RawBson::Decimal128(d))),
        _ => Err(format!("string {} has more digits than a decimal128 keeps (34)", preview(v))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Input, then the BSON it becomes (as `kind text`) or `ERR <start of reason>`.
    #[test]
    fn to_number_table() {
        let rows: &[(RawBson, &str)] = &[
            (RawBson::String("12".into()), "int64 12"),
            (RawBson::String(" -3 ".into()), "int64 -3"),
            (RawBson::String("3.50".into()), "decimal 3.50"),
            (RawBson::String("1.5e3".into()), "int64 1500"),
            (RawBson::String("-0".into()), "decimal -0"),
            (RawBson::String("99999999999999999999".into()), "decimal 99999999999999999999"),
            (
                RawBson::String("1.00000000000000000000000000000000001".into()),
                "ERR string \"1.00000000000000000000000000000000001\" has more digits",
            ),
            (RawBson::String("12a".into()), "ERR string \"12a\" is not a number"),
            (RawBson::String("".into()), "ERR string \"\" is not a number"),
            (RawBson::String("NaN".into()), "ERR string \"NaN\" is not a number"),
            (RawBson::Int32(7), "int32 7"),
            (RawBson::Double(0.5), "double 0.5"),
            (RawBson::Boolean(true), "ERR transform `to_number` expects a string or a number, got bool"),
        ];
        for (input, want) in rows {
            let got = match to_number(input.as_raw_bson_ref()) {
                Ok(Some(RawBson::Int64(i))) => format!("int64 {i}"),
                Ok(Some(RawBson::Int32(i))) => format!("int32 {i}"),
                Ok(Some(RawBson::Double(d))) => format!("double {d}"),
                Ok(Some(RawBson::Decimal128(d))) => format!("decimal {d}"),
                Ok(other) => format!("{other:?}"),
                Err(e) => format!("ERR {e}"),
            };
            assert!(got.starts_with(want), "{input:?}: got {got}, want {want}");
        }
    }
}

//! `numeric(p,s)` and unconstrained `numeric`: exact decimals; a value the
//! column would round is refused.

use bson::RawBsonRef;

use super::{ColumnType, binary, refuse};
use crate::schema::SqlType;
use crate::value::cell::Cell;
use crate::value::coerce::CoerceRules;
use crate::value::text::{decimal_text, decimal128_text, float_text, preview};

pub struct NumericType;

impl ColumnType for NumericType {
    fn coerce<'a>(&self, v: RawBsonRef<'a>, ty: &SqlType, _: &CoerceRules) -> Result<Cell<'a>, String> {
        let text = match v {
            RawBsonRef::Int32(i) => i.to_string(),
            RawBsonRef::Int64(i) => i.to_string(),
            RawBsonRef::Double(d) => float_text(d),
            RawBsonRef::Decimal128(d) => decimal128_text(d).ok_or_else(|| refuse(v, ty))?,
            RawBsonRef::String(s) => decimal_text(s).ok_or_else(|| format!("string {} is not a number", preview(v)))?,
            _ => return Err(refuse(v, ty)),
        };
        let SqlType::Numeric(limits) = ty else { return Err(refuse(v, ty)) };
        check_numeric(text, *limits)
    }

    fn oid(&self, _: &SqlType) -> u32 {
        1700
    }

    fn write_binary(&self, out: &mut Vec<u8>, cell: &Cell<'_>, ty: &SqlType) {
        match cell {
            Cell::Numeric(n) => numeric(out, n),
            c => binary::mismatch(out, c, ty),
        }
    }
}

/// Checks a plain decimal against NUMERIC(p,s) without rounding. PostgreSQL
/// rounds a value to `s` decimal places (tens, hundreds, … when `s` is
/// negative) and then needs `|value| < 10^(p-s)`; exact means the rounding
/// changes nothing.
fn check_numeric<'a>(text: String, limits: Option<(u32, i32)>) -> Result<Cell<'a>, String> {
    if text == "NaN" {
        return Ok(Cell::Numeric(text));
    }
    if text.ends_with("Infinity") {
        return match limits {
            None => Ok(Cell::Numeric(text)),
            Some((p, s)) => Err(format!("{text} cannot go into numeric({p},{s}); only unconstrained numeric holds it")),
        };
    }
    if let Some((p, s)) = limits {
        let digits = text.trim_start_matches('-');
        let (int, frac) = digits.split_once('.').unwrap_or((digits, ""));
        let frac = frac.trim_end_matches('0');
        let int = int.trim_start_matches('0');
        if int.is_empty() && frac.is_empty() {
            return Ok(Cell::Numeric(text));
        }
        // Decimal places the value needs: negative when it is a multiple of 10, 100, …
        let places: i64 =
            if frac.is_empty() { -((int.len() - int.trim_end_matches('0').len()) as i64) } else { frac.len() as i64 };
        if places > i64::from(s) {
            return Err(if s >= 0 {
                format!("{text} has {} decimal places; numeric({p},{s}) would round it", frac.len())
            } else {
                format!(
                    "{text} is not a multiple of 1{}; numeric({p},{s}) would round it",
                    "0".repeat(s.unsigned_abs() as usize)
                )
            });
        }
        // Magnitude: the position of the first significant digit must be below p - s.
        let magnitude: i64 =
            if int.is_empty() { -((frac.len() - frac.trim_start_matches('0').len()) as i64) } else { int.len() as i64 };
        if magnitude > i64::from(p) - i64::from(s) {
            return Err(format!("{text} is too large for numeric({p},{s})"));
        }
    }
    Ok(Cell::Numeric(text))
}

/// NUMERIC's binary form: base-10000 digits with a weight, a sign and a display scale.
fn numeric(out: &mut Vec<u8>, text: &str) {
    let special = match text {
        "NaN" => Some(0xC000u16),
        "Infinity" => Some(0xD000),
        "-Infinity" => Some(0xF000),
        _ => None,
    };
    if let Some(sign) = special {
        for v in [0i16, 0] {
            out.extend_from_slice(&v.to_be_bytes());
        }
        out.extend_from_slice(&sign.to_be_bytes());
        out.extend_from_slice(&0u16.to_be_bytes());
        return;
    }
    let (neg, digits) = match text.strip_prefix('-') {
        Some(d) => (true, d),
        None => (false, text),
    };
    let (int, frac) = digits.split_once('.').unwrap_or((digits, ""));
    let dscale = frac.len() as u16;
    // Whole groups of four digits on each side of the point.
    let int_pad = (4 - int.len() % 4) % 4;
    let frac_pad = (4 - frac.len() % 4) % 4;
    let all: Vec<u8> = std::iter::repeat_n(b'0', int_pad)
        .chain(int.bytes())
        .chain(frac.bytes())
        .chain(std::iter::repeat_n(b'0', frac_pad))
        .collect();
    let mut groups: Vec<u16> =
        all.chunks(4).map(|g| g.iter().fold(0u16, |acc, d| acc * 10 + u16::from(d - b'0'))).collect();
    let mut weight = ((int.len() + int_pad) / 4) as i16 - 1;
    while groups.first() == Some(&0) {
        groups.remove(0);
        weight -= 1;
    }
    while groups.last() == Some(&0) {
        groups.pop();
    }
    if groups.is_empty() {
        weight = 0;
    }
    out.extend_from_slice(&(groups.len() as i16).to_be_bytes());
    out.extend_from_slice(&weight.to_be_bytes());
    out.extend_from_slice(&(if neg && !groups.is_empty() { 0x4000u16 } else { 0 }).to_be_bytes());
    out.extend_from_slice(&dscale.to_be_bytes());
    for g in groups {
        out.extend_from_slice(&g.to_be_bytes());
    }
}

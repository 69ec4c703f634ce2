//! `real`, `double precision`: a value whose number would change in the
//! float is refused (an int64 past 2^53, a decimal with more digits).

use bson::RawBsonRef;

use super::{ColumnType, binary, decimal_or_refuse, refuse};
use crate::schema::SqlType;
use crate::value::cell::Cell;
use crate::value::coerce::CoerceRules;
use crate::value::text::{bson_kind, float_text, preview, same_number};

pub struct FloatType;

impl ColumnType for FloatType {
    fn coerce<'a>(&self, v: RawBsonRef<'a>, ty: &SqlType, _: &CoerceRules) -> Result<Cell<'a>, String> {
        if *ty == SqlType::Real { real(v, ty) } else { double(v, ty) }
    }

    fn oid(&self, ty: &SqlType) -> u32 {
        if *ty == SqlType::Real { 700 } else { 701 }
    }

    fn write_binary(&self, out: &mut Vec<u8>, cell: &Cell<'_>, ty: &SqlType) {
        match cell {
            Cell::Double(d) => out.extend_from_slice(&d.to_bits().to_be_bytes()),
            Cell::Real(r) => out.extend_from_slice(&r.to_bits().to_be_bytes()),
            c => binary::mismatch(out, c, ty),
        }
    }
}

fn double<'a>(v: RawBsonRef<'_>, ty: &SqlType) -> Result<Cell<'a>, String> {
    match v {
        RawBsonRef::Double(d) => Ok(Cell::Double(d)),
        RawBsonRef::Int32(i) => Ok(Cell::Double(f64::from(i))),
        RawBsonRef::Int64(i) if i.unsigned_abs() <= 1 << 53 => Ok(Cell::Double(i as f64)),
        RawBsonRef::Int64(i) => Err(format!("int64 {i} has more digits than double precision keeps")),
        RawBsonRef::Decimal128(_) | RawBsonRef::String(_) => {
            let text = decimal_or_refuse(v, ty)?;
            let d: f64 = text.parse().map_err(|_| refuse(v, ty))?;
            // The normal form drops the sign of zero; a double keeps it.
            let negative = match v {
                RawBsonRef::Decimal128(x) => x.to_string().starts_with('-'),
                RawBsonRef::String(s) => s.trim_start().starts_with('-'),
                _ => false,
            };
            let d = if d == 0.0 && negative { -0.0 } else { d };
            if same_number(&float_text(d), &text) || !d.is_finite() && text.contains("Infinity") || d.is_nan() {
                Ok(Cell::Double(d))
            } else {
                Err(format!(
                    "{} {} would be rounded to {} in double precision",
                    bson_kind(v),
                    preview(v),
                    float_text(d)
                ))
            }
        }
        _ => Err(refuse(v, ty)),
    }
}

fn real<'a>(v: RawBsonRef<'_>, ty: &SqlType) -> Result<Cell<'a>, String> {
    let (d, text) = match v {
        RawBsonRef::Double(d) => (d, float_text(d)),
        RawBsonRef::Int32(i) => (f64::from(i), i.to_string()),
        RawBsonRef::Int64(i) => (i as f64, i.to_string()),
        RawBsonRef::Decimal128(_) | RawBsonRef::String(_) => {
            let t = decimal_or_refuse(v, ty)?;
            (t.parse().map_err(|_| refuse(v, ty))?, t)
        }
        _ => return Err(refuse(v, ty)),
    };
    let r = d as f32;
    if !d.is_finite() || same_number(&float_text(f64::from(r)), &text) || same_number(&format!("{r}"), &text) {
        Ok(Cell::Real(r))
    } else {
        Err(format!("{} {} would be rounded to {r} in real; use double precision or numeric", bson_kind(v), preview(v)))
    }
}

//! `smallint`, `integer`, `bigint`: whole numbers in range; a double or
//! decimal with a fraction is refused, never rounded.

use bson::RawBsonRef;

use super::{ColumnType, binary, decimal_or_refuse, refuse};
use crate::schema::SqlType;
use crate::value::cell::Cell;
use crate::value::coerce::CoerceRules;
use crate::value::text::{bson_kind, float_text, preview};

pub struct IntegerType;

impl ColumnType for IntegerType {
    fn coerce<'a>(&self, v: RawBsonRef<'a>, ty: &SqlType, _: &CoerceRules) -> Result<Cell<'a>, String> {
        let (lo, hi) = match ty {
            SqlType::SmallInt => (i16::MIN as i64, i16::MAX as i64),
            SqlType::Integer => (i32::MIN as i64, i32::MAX as i64),
            _ => (i64::MIN, i64::MAX),
        };
        let n: i64 = match v {
            RawBsonRef::Int32(i) => i64::from(i),
            RawBsonRef::Int64(i) => i,
            RawBsonRef::Double(d) => {
                if !d.is_finite() || d.fract() != 0.0 {
                    return Err(format!("double {} is not a whole number; {ty} would round it", float_text(d)));
                }
                // 2^63 itself is not an i64; the range test below catches the rest.
                const TWO_63: f64 = 9_223_372_036_854_775_808.0;
                if !(-TWO_63..TWO_63).contains(&d) {
                    return Err(format!("double {} is out of range for {ty}", float_text(d)));
                }
                d as i64
            }
            RawBsonRef::Decimal128(_) | RawBsonRef::String(_) => {
                let text = decimal_or_refuse(v, ty)?;
                if text.contains('.') || text.contains('N') || text.contains('I') {
                    return Err(format!("{} {} is not a whole number; {ty} would round it", bson_kind(v), preview(v)));
                }
                text.parse::<i64>().map_err(|_| format!("{} {} is out of range for {ty}", bson_kind(v), preview(v)))?
            }
            _ => return Err(refuse(v, ty)),
        };
        if n < lo || n > hi {
            return Err(format!("{} {} is out of range for {ty}", bson_kind(v), preview(v)));
        }
        Ok(Cell::Int(n))
    }

    fn oid(&self, ty: &SqlType) -> u32 {
        match ty {
            SqlType::SmallInt => 21,
            SqlType::Integer => 23,
            _ => 20,
        }
    }

    fn write_binary(&self, out: &mut Vec<u8>, cell: &Cell<'_>, ty: &SqlType) {
        match (cell, ty) {
            (Cell::Int(i), SqlType::SmallInt) => out.extend_from_slice(&(*i as i16).to_be_bytes()),
            (Cell::Int(i), SqlType::Integer) => out.extend_from_slice(&(*i as i32).to_be_bytes()),
            (Cell::Int(i), _) => out.extend_from_slice(&i.to_be_bytes()),
            (c, _) => binary::mismatch(out, c, ty),
        }
    }
}

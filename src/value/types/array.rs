//! One-dimensional arrays (`text[]`, `integer[]`, …) of any written scalar
//! type; each element is coerced as the element type, nulls kept.

use bson::RawBsonRef;

use super::{ColumnType, binary, of, refuse};
use crate::schema::SqlType;
use crate::value::cell::Cell;
use crate::value::coerce::{CoerceRules, coerce};

pub struct ArrayType;

impl ColumnType for ArrayType {
    fn coerce<'a>(&self, v: RawBsonRef<'a>, ty: &SqlType, rules: &CoerceRules) -> Result<Cell<'a>, String> {
        let (SqlType::Array(inner), RawBsonRef::Array(a)) = (ty, v) else { return Err(refuse(v, ty)) };
        let mut items = Vec::new();
        for (i, el) in a.into_iter().enumerate() {
            let el = el.map_err(|e| format!("malformed BSON: {e}"))?;
            if matches!(el, RawBsonRef::Null | RawBsonRef::Undefined) {
                items.push(Cell::Null);
                continue;
            }
            items.push(coerce(el, inner, rules).map_err(|e| format!("element {i}: {e}"))?);
        }
        Ok(Cell::Array(items))
    }

    /// Arrays are never elements here, so no array OID is needed.
    fn oid(&self, _: &SqlType) -> u32 {
        0
    }

    fn write_binary(&self, out: &mut Vec<u8>, cell: &Cell<'_>, ty: &SqlType) {
        let (Cell::Array(items), SqlType::Array(inner)) = (cell, ty) else {
            return binary::mismatch(out, cell, ty);
        };
        let has_null = items.iter().any(Cell::is_null);
        out.extend_from_slice(&(i32::from(!items.is_empty())).to_be_bytes());
        out.extend_from_slice(&i32::from(has_null).to_be_bytes());
        out.extend_from_slice(&of(inner).map_or(0, |f| f.oid(inner)).to_be_bytes());
        if !items.is_empty() {
            out.extend_from_slice(&(items.len() as i32).to_be_bytes());
            out.extend_from_slice(&1i32.to_be_bytes());
        }
        for item in items {
            binary::write_field(out, item, inner);
        }
    }
}

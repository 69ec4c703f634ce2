//! `boolean`: BSON booleans, 0/1 and the strings "true"/"false".

use bson::RawBsonRef;

use super::{ColumnType, binary, refuse};
use crate::schema::SqlType;
use crate::value::cell::Cell;
use crate::value::coerce::CoerceRules;

pub struct BooleanType;

impl ColumnType for BooleanType {
    fn coerce<'a>(&self, v: RawBsonRef<'a>, ty: &SqlType, _: &CoerceRules) -> Result<Cell<'a>, String> {
        match v {
            RawBsonRef::Boolean(b) => Ok(Cell::Bool(b)),
            RawBsonRef::Int32(0) | RawBsonRef::Int64(0) => Ok(Cell::Bool(false)),
            RawBsonRef::Int32(1) | RawBsonRef::Int64(1) => Ok(Cell::Bool(true)),
            RawBsonRef::String("true") => Ok(Cell::Bool(true)),
            RawBsonRef::String("false") => Ok(Cell::Bool(false)),
            _ => Err(refuse(v, ty)),
        }
    }

    fn oid(&self, _: &SqlType) -> u32 {
        16
    }

    fn write_binary(&self, out: &mut Vec<u8>, cell: &Cell<'_>, ty: &SqlType) {
        match cell {
            Cell::Bool(b) => out.push(u8::from(*b)),
            c => binary::mismatch(out, c, ty),
        }
    }
}

//! `uuid`: BSON UUID binaries (subtypes 3 and 4) and UUID strings. An
//! ObjectId is refused here; `id = "..."` derives a UUID from it.

use bson::RawBsonRef;
use bson::spec::BinarySubtype;
use uuid::Uuid;

use super::{ColumnType, binary, refuse};
use crate::schema::SqlType;
use crate::value::cell::Cell;
use crate::value::coerce::CoerceRules;
use crate::value::text::preview;

pub struct UuidType;

impl ColumnType for UuidType {
    fn coerce<'a>(&self, v: RawBsonRef<'a>, ty: &SqlType, _: &CoerceRules) -> Result<Cell<'a>, String> {
        match v {
            RawBsonRef::Binary(b) if matches!(b.subtype, BinarySubtype::Uuid | BinarySubtype::UuidOld) => {
                Uuid::from_slice(b.bytes).map(Cell::Uuid).map_err(|e| format!("bad UUID binary: {e}"))
            }
            RawBsonRef::String(s) if s.len() == 36 => {
                Uuid::try_parse(s).map(Cell::Uuid).map_err(|_| format!("string {} is not a UUID", preview(v)))
            }
            _ => Err(refuse(v, ty)),
        }
    }

    fn oid(&self, _: &SqlType) -> u32 {
        2950
    }

    fn write_binary(&self, out: &mut Vec<u8>, cell: &Cell<'_>, ty: &SqlType) {
        match cell {
            Cell::Uuid(u) => out.extend_from_slice(u.as_bytes()),
            c => binary::mismatch(out, c, ty),
        }
    }
}

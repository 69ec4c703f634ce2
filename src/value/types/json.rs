//! `json`, `jsonb`: any value in the column's declared JSON form.

use bson::RawBsonRef;

use super::{ColumnType, binary};
use crate::schema::SqlType;
use crate::value::cell::Cell;
use crate::value::coerce::CoerceRules;
use crate::value::json::write_json;

pub struct JsonType;

impl ColumnType for JsonType {
    fn coerce<'a>(&self, v: RawBsonRef<'a>, ty: &SqlType, rules: &CoerceRules) -> Result<Cell<'a>, String> {
        let mut out = String::new();
        write_json(v, &rules.json, &rules.ns, &mut out)?;
        if *ty == SqlType::Jsonb && out.contains("\\u0000") {
            return Err("jsonb cannot hold the NUL character (\\u0000)".into());
        }
        Ok(Cell::Json(out))
    }

    fn oid(&self, ty: &SqlType) -> u32 {
        if *ty == SqlType::Jsonb { 3802 } else { 114 }
    }

    fn write_binary(&self, out: &mut Vec<u8>, cell: &Cell<'_>, ty: &SqlType) {
        match cell {
            Cell::Json(j) => {
                if *ty == SqlType::Jsonb {
                    out.push(1); // jsonb's binary format version
                }
                out.extend_from_slice(j.as_bytes());
            }
            c => binary::mismatch(out, c, ty),
        }
    }
}

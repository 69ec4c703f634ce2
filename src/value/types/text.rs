//! `text`, `varchar(n)`, `char(n)`: any scalar as its text; lengths checked.

use std::borrow::Cow;

use bson::RawBsonRef;
use bson::spec::BinarySubtype;
use uuid::Uuid;

use super::{ColumnType, binary, refuse};
use crate::schema::SqlType;
use crate::value::cell::Cell;
use crate::value::coerce::CoerceRules;
use crate::value::text::{decimal128_text, float_text, iso_date};

pub struct TextType;

impl ColumnType for TextType {
    fn coerce<'a>(&self, v: RawBsonRef<'a>, ty: &SqlType, _: &CoerceRules) -> Result<Cell<'a>, String> {
        let text: Cow<'a, str> = match v {
            RawBsonRef::String(s) | RawBsonRef::Symbol(s) => Cow::Borrowed(s),
            RawBsonRef::ObjectId(o) => Cow::Owned(o.to_hex()),
            RawBsonRef::Int32(i) => Cow::Owned(i.to_string()),
            RawBsonRef::Int64(i) => Cow::Owned(i.to_string()),
            RawBsonRef::Double(d) => Cow::Owned(float_text(d)),
            RawBsonRef::Decimal128(d) => Cow::Owned(decimal128_text(d).ok_or_else(|| refuse(v, ty))?),
            RawBsonRef::Boolean(b) => Cow::Borrowed(if b { "true" } else { "false" }),
            RawBsonRef::DateTime(d) => Cow::Owned(iso_date(d)),
            RawBsonRef::Binary(b) if b.subtype == BinarySubtype::Uuid => {
                Cow::Owned(Uuid::from_slice(b.bytes).map_err(|e| e.to_string())?.hyphenated().to_string())
            }
            _ => return Err(refuse(v, ty)),
        };
        check_text(text, ty)
    }

    fn oid(&self, ty: &SqlType) -> u32 {
        match ty {
            SqlType::Varchar(_) => 1043,
            SqlType::Char(_) => 1042,
            _ => 25,
        }
    }

    fn write_binary(&self, out: &mut Vec<u8>, cell: &Cell<'_>, ty: &SqlType) {
        match cell {
            // Text, varchar and char are their UTF-8 bytes.
            Cell::Text(t) => out.extend_from_slice(t.as_bytes()),
            c => binary::mismatch(out, c, ty),
        }
    }
}

fn check_text<'a>(text: Cow<'a, str>, ty: &SqlType) -> Result<Cell<'a>, String> {
    if text.contains('\0') {
        return Err("text cannot hold the NUL character".into());
    }
    let limit = match ty {
        SqlType::Varchar(Some(n)) | SqlType::Char(n) => Some(*n as usize),
        _ => None,
    };
    if let Some(n) = limit {
        // Counting chars is cheap only when needed: bytes bound chars from above.
        if text.len() > n {
            let len = text.chars().count();
            if len > n {
                return Err(format!("string of {len} characters is longer than {ty}"));
            }
        }
    }
    Ok(Cell::Text(text))
}

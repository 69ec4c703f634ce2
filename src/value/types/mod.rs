//! Every PostgreSQL column type finlit-map writes, one file per family:
//! what BSON values it accepts (exact or refused), its COPY binary
//! encoding and its OID. A new column type is one file here, an arm in
//! [`of`] and a row in the coercion table test; a type with no
//! family is a `check` error (`of` answers `None`), never a server error.
//!
//! Knows BSON and PostgreSQL's value formats; nothing of mappings,
//! connections or files. The text encoding of a value belongs to its
//! [`Cell`](crate::value::cell::Cell), which is per value, not per column.

pub mod array;
pub mod boolean;
pub mod bytea;
pub mod float;
pub mod geo;
pub mod integer;
pub mod json;
pub mod numeric;
pub mod temporal;
pub mod text;
pub mod uuid;

use bson::RawBsonRef;

use crate::schema::SqlType;
use crate::value::cell::Cell;
use crate::value::coerce::CoerceRules;
use crate::value::text::{bson_kind, decimal_text, decimal128_text, preview};

/// One family of PostgreSQL types (`smallint`/`integer`/`bigint` are one).
pub trait ColumnType: Sync {
    /// A non-null BSON value as a cell of `ty`, or why it cannot be one
    /// without changing it.
    fn coerce<'a>(&self, v: RawBsonRef<'a>, ty: &SqlType, rules: &CoerceRules) -> Result<Cell<'a>, String>;
    /// The type's OID (array headers name their element type by it).
    fn oid(&self, ty: &SqlType) -> u32;
    /// The binary COPY payload of a non-null cell this family coerced.
    fn write_binary(&self, out: &mut Vec<u8>, cell: &Cell<'_>, ty: &SqlType);
}

/// The family that writes `ty`; `None` when finlit-map does not write it.
/// A match, not a search: this is asked for every value loaded.
#[inline]
pub fn of(ty: &SqlType) -> Option<&'static dyn ColumnType> {
    Some(match ty {
        SqlType::Text | SqlType::Varchar(_) | SqlType::Char(_) => &text::TextType,
        SqlType::SmallInt | SqlType::Integer | SqlType::BigInt => &integer::IntegerType,
        SqlType::Numeric(_) => &numeric::NumericType,
        SqlType::Real | SqlType::Double => &float::FloatType,
        SqlType::Boolean => &boolean::BooleanType,
        SqlType::Date | SqlType::Timestamp | SqlType::Timestamptz => &temporal::TemporalType,
        SqlType::Uuid => &uuid::UuidType,
        SqlType::Json | SqlType::Jsonb => &json::JsonType,
        SqlType::Bytea => &bytea::ByteaType,
        SqlType::Geo(_) => &geo::GeoColumn,
        SqlType::Array(inner) => return array_of(inner),
        SqlType::Other(_) => return None,
    })
}

/// An array's family: one dimension, of a written type. Apart from `of`
/// so that `of`, not being recursive, is inlined where it is asked.
#[inline(never)]
fn array_of(inner: &SqlType) -> Option<&'static dyn ColumnType> {
    let written = !matches!(inner, SqlType::Array(_) | SqlType::Geo(_)) && of(inner).is_some();
    written.then_some(&array::ArrayType as &'static dyn ColumnType)
}

/// Whether finlit-map can write `ty` (arrays: one level, of a written type).
pub fn is_supported(ty: &SqlType) -> bool {
    of(ty).is_some()
}

/// The reason a value of the wrong kind is refused.
pub(crate) fn refuse(v: RawBsonRef<'_>, ty: &SqlType) -> String {
    let hint = match (v, ty) {
        (RawBsonRef::Document(_) | RawBsonRef::Array(_), _) => "; use a json or jsonb column",
        (RawBsonRef::ObjectId(_), SqlType::Uuid) => "; use `id = \"...\"` to derive a UUID",
        _ => "",
    };
    format!("{} {} cannot go into {ty}{hint}", bson_kind(v), preview(v))
}

/// A Decimal128 or numeric string in plain notation; other kinds are refused.
pub(crate) fn decimal_or_refuse(v: RawBsonRef<'_>, ty: &SqlType) -> Result<String, String> {
    let text = match v {
        RawBsonRef::Decimal128(d) => decimal128_text(d),
        RawBsonRef::String(s) => decimal_text(s),
        _ => return Err(refuse(v, ty)),
    };
    text.ok_or_else(|| format!("{} {} is not a number", bson_kind(v), preview(v)))
}

/// COPY's binary format: PostgreSQL parses no text, which makes loading
/// faster than its own CSV. Every field is a big-endian length and the
/// type's binary representation, which its family writes.
pub mod binary {
    use super::{Cell, SqlType};

    /// `PGCOPY\n\377\r\n\0`, no flags, no header extension.
    pub const HEADER: &[u8] = b"PGCOPY\n\xff\r\n\0\0\0\0\0\0\0\0\0";
    pub const TRAILER: &[u8] = &[0xff, 0xff];

    /// Appends one row: the field count, then each field.
    pub fn write_row(out: &mut Vec<u8>, cells: &[Cell<'_>], types: &[SqlType]) {
        out.extend_from_slice(&(cells.len() as i16).to_be_bytes());
        for (c, ty) in cells.iter().zip(types) {
            write_field(out, c, ty);
        }
    }

    /// Appends one field: its length (or -1 for NULL) and its bytes.
    pub fn write_field(out: &mut Vec<u8>, cell: &Cell<'_>, ty: &SqlType) {
        if cell.is_null() {
            out.extend_from_slice(&(-1i32).to_be_bytes());
            return;
        }
        let at = out.len();
        out.extend_from_slice(&[0; 4]);
        match super::of(ty) {
            Some(family) => family.write_binary(out, cell, ty),
            // The sink uses binary COPY only when every column's type has a
            // family; were that broken, the value goes as its text and the
            // server refuses the chunk, naming the column.
            None => out.extend_from_slice(cell.to_pg_text().unwrap_or_default().as_bytes()),
        }
        let len = (out.len() - at - 4) as i32;
        out[at..at + 4].copy_from_slice(&len.to_be_bytes());
    }

    /// A cell that is not its family's own kind (a half-added type): sent
    /// as text so the server refuses it, naming the column.
    pub(super) fn mismatch(out: &mut Vec<u8>, cell: &Cell<'_>, ty: &SqlType) {
        debug_assert!(false, "no binary encoding of {cell:?} as {ty}");
        out.extend_from_slice(cell.to_pg_text().unwrap_or_default().as_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each written type has a family, with PostgreSQL's OID;
    /// types finlit-map does not write have none (a `check` error).
    #[test]
    fn every_type_has_its_family() {
        let rows: &[(&str, Option<u32>)] = &[
            ("text", Some(25)),
            ("varchar(3)", Some(1043)),
            ("char(2)", Some(1042)),
            ("smallint", Some(21)),
            ("integer", Some(23)),
            ("bigint", Some(20)),
            ("numeric(6,2)", Some(1700)),
            ("real", Some(700)),
            ("double precision", Some(701)),
            ("boolean", Some(16)),
            ("date", Some(1082)),
            ("timestamp", Some(1114)),
            ("timestamptz", Some(1184)),
            ("uuid", Some(2950)),
            ("json", Some(114)),
            ("jsonb", Some(3802)),
            ("bytea", Some(17)),
            ("text[]", Some(0)),
        ];
        for (text, oid) in rows {
            let ty = SqlType::parse(text).unwrap();
            assert_eq!(of(&ty).map(|f| f.oid(&ty)), *oid, "{text}");
        }
        for ty in [SqlType::Other("money".into()), SqlType::Array(Box::new(SqlType::Array(Box::new(SqlType::Text))))] {
            assert!(of(&ty).is_none(), "{ty}");
        }
    }
}

//! `bytea`: BSON binary of any subtype, its bytes as they are; a string
//! only when the column declares its text form (`encoding = "base64"` or
//! `"hex"`), decoded strictly (bad characters or padding are refused).

use std::borrow::Cow;

use base64::Engine as _;
use bson::RawBsonRef;

use super::{ColumnType, binary, refuse};
use crate::schema::SqlType;
use crate::value::cell::Cell;
use crate::value::coerce::{BytesText, CoerceRules};
use crate::value::text::preview;

pub struct ByteaType;

impl ColumnType for ByteaType {
    fn coerce<'a>(&self, v: RawBsonRef<'a>, ty: &SqlType, rules: &CoerceRules) -> Result<Cell<'a>, String> {
        match (v, rules.bytes) {
            (RawBsonRef::Binary(b), _) => Ok(Cell::Bytes(Cow::Borrowed(b.bytes))),
            (RawBsonRef::String(s), Some(BytesText::Base64)) => base64::engine::general_purpose::STANDARD
                .decode(s)
                .map(|b| Cell::Bytes(Cow::Owned(b)))
                .map_err(|e| format!("string {} is not base64: {e}", preview(v))),
            (RawBsonRef::String(s), Some(BytesText::Hex)) => {
                hex(s).map(|b| Cell::Bytes(Cow::Owned(b))).ok_or_else(|| format!("string {} is not hex", preview(v)))
            }
            (RawBsonRef::String(_), None) => Err(format!(
                "string {} cannot go into bytea; say how it holds bytes with `encoding = \"base64\"` or `\"hex\"`",
                preview(v)
            )),
            _ => Err(refuse(v, ty)),
        }
    }

    fn oid(&self, _: &SqlType) -> u32 {
        17
    }

    fn write_binary(&self, out: &mut Vec<u8>, cell: &Cell<'_>, ty: &SqlType) {
        match cell {
            Cell::Bytes(b) => out.extend_from_slice(b),
            c => binary::mismatch(out, c, ty),
        }
    }
}

/// Pairs of hex digits (either case) as bytes; `None` for anything else.
fn hex(s: &str) -> Option<Vec<u8>> {
    if s.len() % 2 != 0 {
        return None;
    }
    let digit = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
    s.as_bytes().chunks(2).map(|p| Some(digit(p[0])? << 4 | digit(p[1])?)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Value and declared text form, then the PostgreSQL text or `ERR <start>`.
    #[test]
    fn bytea_table() {
        let bin = |subtype, bytes: &'static [u8]| RawBsonRef::Binary(bson::RawBinaryRef { subtype, bytes });
        let rows: Vec<(RawBsonRef<'static>, Option<BytesText>, &str)> = vec![
            (bin(bson::spec::BinarySubtype::Generic, &[0, 1, 0xff]), None, "\\x0001ff"),
            (bin(bson::spec::BinarySubtype::UserDefined(0x80), &[7]), None, "\\x07"),
            (bin(bson::spec::BinarySubtype::Md5, &[]), None, "\\x"),
            (RawBsonRef::String("AAH/"), Some(BytesText::Base64), "\\x0001ff"),
            (RawBsonRef::String("0001FF"), Some(BytesText::Hex), "\\x0001ff"),
            (RawBsonRef::String("AAH"), Some(BytesText::Base64), "ERR string \"AAH\" is not base64"),
            (RawBsonRef::String("0g"), Some(BytesText::Hex), "ERR string \"0g\" is not hex"),
            (RawBsonRef::String("abc"), Some(BytesText::Hex), "ERR string \"abc\" is not hex"),
            (RawBsonRef::String("AAH/"), None, "ERR string \"AAH/\" cannot go into bytea; say how"),
            (RawBsonRef::Int32(1), None, "ERR int32 1 cannot go into bytea"),
        ];
        for (v, bytes, want) in rows {
            let rules = CoerceRules { bytes, ..CoerceRules::default() };
            let got = match ByteaType.coerce(v, &SqlType::Bytea, &rules) {
                Ok(c) => c.to_pg_text().unwrap(),
                Err(e) => format!("ERR {e}"),
            };
            assert!(got.starts_with(want), "{v:?} {bytes:?}: got {got}, want {want}");
        }
    }
}

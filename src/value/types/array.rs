//! One-dimensional arrays (`text[]`, `integer[]`, …) of any written scalar
//! type; each element is coerced as the element type, nulls kept.

use bson::spec::BinarySubtype;
use bson::{RawBson, RawBsonRef};

use super::{ColumnType, binary, of, refuse};
use crate::schema::SqlType;
use crate::value::cell::Cell;
use crate::value::coerce::{CoerceRules, coerce};

pub struct ArrayType;

impl ColumnType for ArrayType {
    fn coerce<'a>(&self, v: RawBsonRef<'a>, ty: &SqlType, rules: &CoerceRules) -> Result<Cell<'a>, String> {
        let SqlType::Array(inner) = ty else { return Err(refuse(v, ty)) };
        let mut items = Vec::new();
        match v {
            RawBsonRef::Array(a) => {
                for (i, el) in a.into_iter().enumerate() {
                    let el = el.map_err(|e| format!("malformed BSON: {e}"))?;
                    if matches!(el, RawBsonRef::Null | RawBsonRef::Undefined) {
                        items.push(Cell::Null);
                        continue;
                    }
                    items.push(coerce(el, inner, rules).map_err(|e| format!("element {i}: {e}"))?);
                }
            }
            // A BSON vector (binary subtype 9): each number as its element type.
            RawBsonRef::Binary(b) if b.subtype == BinarySubtype::Vector => {
                for (i, el) in vector_elements(b.bytes)?.into_iter().enumerate() {
                    let el = coerce(el.as_raw_bson_ref(), inner, rules).map_err(|e| format!("element {i}: {e}"))?;
                    items.push(el.into_owned());
                }
            }
            _ => return Err(refuse(v, ty)),
        }
        if let Some(n) = rules.dimensions
            && items.len() != n as usize
        {
            return Err(format!("an array of {} elements, but the column takes `dimensions = {n}`", items.len()));
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

/// The numbers of a BSON vector, as the BSON binary-vector specification
/// defines them: int8 as integers, float32 as doubles (exactly), packed
/// bits as 0 and 1, most significant bit first, less the padding. A
/// malformed vector (an unknown type, padding where none is allowed or
/// over 7, ignored bits that are not zero, a float32 cut short) is refused.
fn vector_elements(bytes: &[u8]) -> Result<Vec<RawBson>, String> {
    use bson::binary::Vector;
    let vector = Vector::from_bytes(bytes).map_err(|e| format!("malformed BSON vector: {e}"))?;
    Ok(match vector {
        Vector::Int8(v) => v.into_iter().map(|i| RawBson::Int32(i32::from(i))).collect(),
        Vector::Float32(v) => v.into_iter().map(|f| RawBson::Double(f64::from(f))).collect(),
        // Validated above (padding 0–7, ignored bits zero); the bits themselves are read here.
        Vector::PackedBit(_) => {
            let (padding, data) = (usize::from(bytes[1]), &bytes[2..]);
            let count = data.len() * 8 - padding;
            (0..count).map(|i| RawBson::Int32(i32::from(data[i / 8] >> (7 - i % 8) & 1))).collect()
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn show(bytes: &[u8]) -> String {
        match vector_elements(bytes) {
            Ok(v) => v
                .iter()
                .map(|x| match x {
                    RawBson::Int32(i) => i.to_string(),
                    RawBson::Double(d) => d.to_string(),
                    other => format!("{other:?}"),
                })
                .collect::<Vec<_>>()
                .join(","),
            Err(e) => format!("ERR {e}"),
        }
    }

    /// The specification's own examples, and its malformed cases.
    #[test]
    fn bson_vectors_decode_exactly_or_are_refused() {
        assert_eq!(show(&[0x03, 0, 127, 7, 0x80]), "127,7,-128");
        let mut f = vec![0x27, 0];
        for x in [127.0f32, 7.0, 0.1] {
            f.extend_from_slice(&x.to_le_bytes());
        }
        assert_eq!(show(&f), format!("127,7,{}", f64::from(0.1f32)));
        assert_eq!(show(&[0x10, 0, 0x7f, 0x07]), "0,1,1,1,1,1,1,1,0,0,0,0,0,1,1,1");
        assert_eq!(show(&[0x10, 3, 0b1010_1000]), "1,0,1,0,1");
        assert_eq!(show(&[0x10, 0]), "");
        assert!(show(&[0x10, 3, 0b1010_1001]).contains("ignored bits"), "{}", show(&[0x10, 3, 0b1010_1001]));
        assert!(show(&[0x10, 8, 0]).starts_with("ERR"));
        assert!(show(&[0x10, 1]).starts_with("ERR"), "padding on an empty vector");
        assert!(show(&[0x03, 1, 5]).starts_with("ERR"), "padding on int8");
        assert!(show(&[0x27, 0, 1, 2, 3]).starts_with("ERR"), "a float32 cut short");
        assert!(show(&[0x42, 0, 1]).starts_with("ERR"), "an unknown type");
        assert!(show(&[0x03]).starts_with("ERR"));
    }
}

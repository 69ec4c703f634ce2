//! Column options that shape a value into an array, after the transforms:
//! `split = ","` cuts a string at each separator (an empty string gives no
//! elements; an array passes); `wrap_scalar = true` makes a single value a
//! one-element array. Both are for array columns (and `unwind`); anything
//! else is refused, never passed on as something else.

use bson::{RawArrayBuf, RawBson, RawBsonRef};

use crate::value::text::bson_kind;

/// `split = sep`: a string into its pieces, exactly as written between the separators.
pub fn split(v: RawBsonRef<'_>, sep: &str) -> Result<Option<RawBson>, String> {
    match v {
        RawBsonRef::String(s) => {
            let mut a = RawArrayBuf::new();
            if !s.is_empty() {
                for piece in s.split(sep) {
                    a.push(piece);
                }
            }
            Ok(Some(RawBson::Array(a)))
        }
        RawBsonRef::Array(_) => Ok(Some(RawBson::from(v))),
        other => Err(format!("`split` expects a string, got {}", bson_kind(other))),
    }
}

/// `wrap_scalar = true`: a value that is not an array becomes `[value]`.
pub fn wrap(v: RawBsonRef<'_>) -> Option<RawBson> {
    if matches!(v, RawBsonRef::Array(_)) {
        return None;
    }
    let mut a = RawArrayBuf::new();
    a.push(RawBson::from(v));
    Some(RawBson::Array(a))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(b: Option<RawBson>) -> Vec<String> {
        let Some(RawBson::Array(a)) = b else { panic!("{b:?}") };
        a.into_iter().map(|x| format!("{:?}", x.unwrap())).collect()
    }

    #[test]
    fn split_and_wrap() {
        assert_eq!(texts(split(RawBsonRef::String("a,b,,c "), ",").unwrap()).len(), 4);
        assert_eq!(texts(split(RawBsonRef::String("a, b"), ", ").unwrap()), ["String(\"a\")", "String(\"b\")"]);
        assert!(texts(split(RawBsonRef::String(""), ",").unwrap()).is_empty());
        assert!(split(RawBsonRef::Int32(1), ",").unwrap_err().contains("expects a string, got int32"));
        assert_eq!(texts(wrap(RawBsonRef::Int32(3))), ["Int32(3)"]);
        let arr = bson::rawdoc! { "a": [1] };
        assert!(wrap(arr.get("a").unwrap().unwrap()).is_none());
    }
}

//! How an unwind takes a document apart beyond a plain array: a value made
//! into an array (`split`, `wrap_scalar`), and nested levels, each element
//! of one level taken apart by the next, with where each row stands.
//!
//! Knows the plan's unwind shapes, paths and BSON; nothing of columns.

use bson::{RawBsonRef, RawDocument};

use crate::lang::expr::Level;
use crate::lang::transform::shape;
use crate::plan::{InnerUnwind, UnwindShape};
use crate::value::path::Found;
use crate::value::text::{bson_kind, preview};

/// The array an unwind with `split`/`wrap_scalar` takes apart: the value
/// itself when it is an array, else the array made of it; missing or null
/// gives no rows (counted), and a value neither option takes is a reject.
pub(super) fn shaped<'a>(u: &UnwindShape, doc: &'a RawDocument) -> Result<Found<'a>, String> {
    let found = u.base.eval(doc, None)?;
    let made = match found.as_ref() {
        None | Some(RawBsonRef::Null | RawBsonRef::Undefined) => return Ok(Found::Missing),
        Some(RawBsonRef::Array(_)) => None,
        Some(v @ RawBsonRef::String(_)) if u.split.is_some() => {
            shape::split(v, u.split.as_deref().unwrap_or_default())?
        }
        Some(v) if u.wrap_scalar => shape::wrap(v),
        Some(v) => {
            return Err(format!(
                "`unwind` over {} {}: not an array (`wrap_scalar = true` takes a single value as one element)",
                bson_kind(v),
                preview(v)
            ));
        }
    };
    Ok(made.map_or(found, Found::Owned))
}

/// The unwind levels a row stands in: each level's current element, and
/// its position and entry key, the outermost first.
#[derive(Default)]
pub(super) struct Stack<'a> {
    pub(super) els: Vec<RawBsonRef<'a>>,
    pub(super) at: Vec<Level<'a>>,
}

impl<'a> Stack<'a> {
    pub(super) fn push(&mut self, el: RawBsonRef<'a>, index: usize, key: Option<&'a str>) {
        self.els.push(el);
        self.at.push(Level { index, key });
    }

    pub(super) fn pop(&mut self) {
        self.els.pop();
        self.at.pop();
    }
}

/// What a nested level takes apart in the element above: an array, or an
/// object's entries (`true`) or `None` when the value is missing or null.
/// A scalar is refused with the reason.
pub(super) fn inner_elements<'a>(
    inner: &InnerUnwind,
    doc: &'a RawDocument,
    els: &[RawBsonRef<'a>],
) -> Result<(bool, Option<RawBsonRef<'a>>), String> {
    let path = inner.entries.as_ref().unwrap_or(&inner.path);
    let found = match path.eval_in(doc, els)? {
        Found::Borrowed(v) => v,
        Found::Missing | Found::Owned(_) => return Ok((false, None)),
    };
    match found {
        RawBsonRef::Null | RawBsonRef::Undefined => Ok((false, None)),
        RawBsonRef::Array(_) => Ok((false, Some(found))),
        RawBsonRef::Document(_) if inner.entries.is_some() => Ok((true, Some(found))),
        v => Err(format!(
            "`{}` over {} {}: not an array{}",
            inner.path,
            bson_kind(v),
            preview(v),
            if inner.entries.is_some() { " or an object" } else { "" }
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{plan, rows};
    use bson::rawdoc;

    /// `wrap_scalar` and `split` on an unwind: a single value is one
    /// element, a string is cut into elements, null or missing gives none.
    #[test]
    fn unwind_takes_scalars_and_strings_when_asked() {
        let sql = "CREATE TABLE g (id INTEGER NOT NULL, name TEXT NOT NULL, PRIMARY KEY (id, name));";
        let wrap = plan(
            sql,
            r#"source = "s"
table = "g"
unwind = { path = "$.genres", wrap_scalar = true }
key = ["id", "name"]
[columns]
id = "$._id"
name = "@"
"#,
        );
        assert_eq!(rows(&wrap, &rawdoc! { "_id": 1, "genres": ["a", "b"] }), vec!["1|a", "1|b"]);
        assert_eq!(rows(&wrap, &rawdoc! { "_id": 2, "genres": "drama" }), vec!["2|drama"]);
        assert_eq!(rows(&wrap, &rawdoc! { "_id": 3, "genres": bson::RawBson::Null }), vec!["NO ELEMENTS"]);
        assert_eq!(rows(&wrap, &rawdoc! { "_id": 4 }), vec!["NO ELEMENTS"]);
        let split = plan(
            sql,
            r#"source = "s"
table = "g"
unwind = { path = "$.genres[*]", split = ", " }
key = ["id", "name"]
[columns]
id = "$._id"
name = "@"
"#,
        );
        assert_eq!(rows(&split, &rawdoc! { "_id": 1, "genres": "a, b" }), vec!["1|a", "1|b"]);
        assert_eq!(rows(&split, &rawdoc! { "_id": 2, "genres": ["x"] }), vec!["2|x"]);
        assert_eq!(rows(&split, &rawdoc! { "_id": 3, "genres": "" }), vec!["NO ELEMENTS"]);
        assert_eq!(
            rows(&split, &rawdoc! { "_id": 4, "genres": 5 }),
            vec![
                "REJECT None None: `unwind` over int32 5: not an array (`wrap_scalar = true` takes a single value as one element)"
            ]
        );
    }

    /// Nested unwinds: rows at the innermost level, `@1` the outer
    /// element, `key`/`position` per level; an outer element without inner
    /// elements gives no row, a scalar where the inner array should be is
    /// a reject of that element.
    #[test]
    fn nested_unwinds_give_rows_at_the_innermost_level() {
        let m = plan(
            "CREATE TABLE b (id INTEGER NOT NULL, tier TEXT NOT NULL, pos INTEGER NOT NULL, benefit TEXT NOT NULL,
                 fee INTEGER, tier_pos INTEGER, PRIMARY KEY (id, tier, pos));",
            r#"source = "s"
table = "b"
unwind = ["$.tiers.*", "@.benefits[*]"]
key = ["id", "tier", "pos"]
filter = { path = "@", not_equals = "none" }
[columns]
id = "$._id"
tier = { key = "@1" }
tier_pos = { position = { index = "@1" } }
pos = { position = { index = "@" } }
benefit = "@"
fee = "@1.fee"
"#,
        );
        let doc = rawdoc! { "_id": 1, "tiers": {
            "gold": { "fee": 10, "benefits": ["lounge", "none", "miles"] },
            "basic": { "fee": 0, "benefits": [] },
            "odd": { "benefits": "x" },
            "silver": { "fee": 5, "benefits": ["miles"] },
        } };
        assert_eq!(
            rows(&m, &doc),
            vec![
                "1|gold|0|0|lounge|10",
                "FILTERED 1",
                "1|gold|0|2|miles|10",
                "REJECT Some(2) None: `@.benefits[*]` expects an array, but the value is string \"x\"",
                "1|silver|3|0|miles|5",
            ]
        );
    }
}

//! `id = "$.path"`: a deterministic UUIDv5 of the value at a path (the
//! project's namespace; an ObjectId and its hex give the same id), so a
//! row and every reference to it agree without a lookup.
//!
//! `id = ["$.zip", "$.state"]`: one UUIDv5 from several values, typed and
//! in order ([`crate::value::ids`] fixes the encoding). A missing or null
//! part leaves the whole value missing, so `required` and `default` apply.

use bson::{RawArrayBuf, RawBson, RawBsonRef};

use super::{Expr, ExprCx, ExprRef, Kind, RowCx, path_arg};
use crate::lang::spec::{Literal, Sp};
use crate::schema::SqlType;
use crate::value::cell::Cell;
use crate::value::coerce::CoerceRules;
use crate::value::path::{CompiledPath, Found};

pub const KIND: Kind = Kind { key: "id", compile };

#[derive(Debug)]
struct Id(CompiledPath);

/// An id from several fields.
#[derive(Debug)]
struct Ids(Vec<CompiledPath>);

fn compile(arg: &Sp<Literal>, cx: &mut dyn ExprCx) -> Option<ExprRef> {
    let id: ExprRef = match &arg.value {
        Literal::Array(items) if items.len() >= 2 => std::sync::Arc::new(Ids(super::paths_arg(arg, items, cx)?)),
        // One path in a list is the one-path id.
        Literal::Array(items) => match items.as_slice() {
            [Literal::String(p)] => std::sync::Arc::new(Id(cx.path(&Sp::new(p.clone(), arg.span.clone()))?)),
            _ => {
                cx.wrong_arg(arg, "a path, or an array of paths such as [\"$.zip\", \"$.state\"]");
                return None;
            }
        },
        _ => std::sync::Arc::new(Id(path_arg(arg, cx)?)),
    };
    if *cx.ty() != SqlType::Uuid {
        let message = format!("`id` derives a UUID, but `{}` is {}", cx.column(), cx.ty());
        cx.type_mismatch(arg, message, "uuid", "use `from` to copy the value as it is, or make the column UUID");
        return None;
    }
    Some(id)
}

impl Expr for Id {
    fn paths(&self) -> Vec<&CompiledPath> {
        vec![&self.0]
    }

    fn eval<'a>(
        &self,
        input: &mut dyn FnMut(usize) -> Result<Found<'a>, String>,
        _row: &RowCx<'_>,
    ) -> Result<Found<'a>, String> {
        input(0)
    }

    fn convert<'a>(&self, v: RawBsonRef<'a>, _ty: &SqlType, rules: &CoerceRules) -> Result<Cell<'a>, String> {
        rules.ns.derive(v).map(Cell::Uuid)
    }

    fn text(&self) -> String {
        format!("id({})", self.0.text())
    }

    fn yields(&self) -> Option<&'static str> {
        Some("uuid5")
    }

    fn is_id(&self) -> bool {
        true
    }
}

impl Expr for Ids {
    fn paths(&self) -> Vec<&CompiledPath> {
        self.0.iter().collect()
    }

    /// The parts as one array, for `convert`; missing when any part is.
    fn eval<'a>(
        &self,
        input: &mut dyn FnMut(usize) -> Result<Found<'a>, String>,
        _row: &RowCx<'_>,
    ) -> Result<Found<'a>, String> {
        let mut parts = RawArrayBuf::new();
        for i in 0..self.0.len() {
            match input(i)?.as_ref() {
                None | Some(RawBsonRef::Null | RawBsonRef::Undefined) => return Ok(Found::Missing),
                Some(v) => parts.push(RawBson::from(v)),
            }
        }
        Ok(Found::Owned(RawBson::Array(parts)))
    }

    fn convert<'a>(&self, v: RawBsonRef<'a>, _ty: &SqlType, rules: &CoerceRules) -> Result<Cell<'a>, String> {
        let RawBsonRef::Array(a) = v else {
            return Err(format!("an id from {} fields needs their values", self.0.len()));
        };
        let parts = a.into_iter().collect::<Result<Vec<_>, _>>().map_err(|e| format!("malformed BSON: {e}"))?;
        rules.ns.derive_parts(&parts).map(Cell::Uuid)
    }

    fn text(&self) -> String {
        let paths: Vec<&str> = self.0.iter().map(CompiledPath::text).collect();
        format!("id({})", paths.join(", "))
    }

    fn yields(&self) -> Option<&'static str> {
        Some("uuid5")
    }

    fn is_id(&self) -> bool {
        true
    }
}

//! `position = { index = "@" }`: the 0-based position of the unwind
//! element in its array, so a child table can keep the array's order (and
//! use it in its `key`). `@` is the element being unwound; naming outer
//! levels (`@1`) waits for nested unwinds.

use std::sync::Arc;

use bson::RawBson;

use super::{Expr, ExprCx, ExprRef, Kind, RowCx};
use crate::lang::spec::{Literal, Sp};
use crate::schema::SqlType;
use crate::value::path::{CompiledPath, Found};

pub const KIND: Kind = Kind { key: "position", compile };

#[derive(Debug)]
struct Position;

fn compile(arg: &Sp<Literal>, cx: &mut dyn ExprCx) -> Option<ExprRef> {
    let Literal::Table(entries) = &arg.value else {
        cx.wrong_arg(arg, "a table such as { index = \"@\" }");
        return None;
    };
    match entries.as_slice() {
        [(k, Literal::String(at))] if k == "index" && at == "@" => {}
        [(k, Literal::String(_))] if k == "index" => {
            cx.wrong_arg(arg, "only `@` (the element being unwound) as the level");
            return None;
        }
        _ => {
            cx.wrong_arg(arg, "a table such as { index = \"@\" }");
            return None;
        }
    }
    if !cx.unwinding() {
        let message = format!("`{}` takes an element's position, but the mapping has no `unwind`", cx.column());
        cx.misuse(arg, message, "add `unwind = \"$.array[*]\"` to the mapping, or fill the column another way");
        return None;
    }
    if !matches!(cx.ty(), SqlType::SmallInt | SqlType::Integer | SqlType::BigInt | SqlType::Numeric(_)) {
        let message = format!("`position` gives an integer, but `{}` is {}", cx.column(), cx.ty());
        cx.type_mismatch(arg, message, "integer", "make the column an integer type");
        return None;
    }
    Some(Arc::new(Position))
}

impl Expr for Position {
    fn paths(&self) -> Vec<&CompiledPath> {
        Vec::new()
    }

    fn eval<'a>(
        &self,
        _input: &mut dyn FnMut(usize) -> Result<Found<'a>, String>,
        row: &RowCx<'_>,
    ) -> Result<Found<'a>, String> {
        Ok(row.index.map_or(Found::Missing, |i| Found::Owned(RawBson::Int64(i as i64))))
    }

    fn text(&self) -> String {
        "position(@)".into()
    }
}

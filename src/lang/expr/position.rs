//! `position = { index = "@" }`: the 0-based position of the unwind
//! element in its array, so a child table can keep the array's order (and
//! use it in its `key`). `@` is the element being unwound (the innermost,
//! when unwinds are nested); `@1` the outermost level's, `@2` the next.

use std::sync::Arc;

use bson::RawBson;

use super::{Expr, ExprCx, ExprRef, Kind, RowCx};
use crate::lang::spec::{Literal, Sp};
use crate::schema::SqlType;
use crate::value::path::{CompiledPath, Found};

pub const KIND: Kind = Kind { key: "position", compile };

/// The level (`None`: the innermost).
#[derive(Debug)]
struct Position(Option<usize>);

fn compile(arg: &Sp<Literal>, cx: &mut dyn ExprCx) -> Option<ExprRef> {
    let Literal::Table(entries) = &arg.value else {
        cx.wrong_arg(arg, "a table such as { index = \"@\" }");
        return None;
    };
    let [(k, Literal::String(at))] = entries.as_slice() else {
        cx.wrong_arg(arg, "a table such as { index = \"@\" }");
        return None;
    };
    if k != "index" {
        cx.wrong_arg(arg, "a table such as { index = \"@\" }");
        return None;
    }
    if cx.levels() == 0 {
        let message = format!("`{}` takes an element's position, but the mapping has no `unwind`", cx.column());
        cx.misuse(arg, message, "add `unwind = \"$.array[*]\"` to the mapping, or fill the column another way");
        return None;
    }
    if !matches!(cx.ty(), SqlType::SmallInt | SqlType::Integer | SqlType::BigInt | SqlType::Numeric(_)) {
        let message = format!("`position` gives an integer, but `{}` is {}", cx.column(), cx.ty());
        cx.type_mismatch(arg, message, "integer", "make the column an integer type");
        return None;
    }
    match super::level_arg(at, cx.levels()) {
        Ok(level) => Some(Arc::new(Position(level))),
        Err(e) => {
            cx.misuse(arg, e, "`@` is the element being unwound; `@1` the outermost level's");
            None
        }
    }
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
        Ok(row.level(self.0).map_or(Found::Missing, |l| Found::Owned(RawBson::Int64(l.index as i64))))
    }

    fn text(&self) -> String {
        format!("position(@{})", self.0.map_or(String::new(), |n| n.to_string()))
    }
}

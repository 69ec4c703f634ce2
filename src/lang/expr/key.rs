//! `key = "@"`: in a mapping with `unwind = "$.obj.*"`, the key of the
//! object entry the row comes from (the values are `@`), so an object keyed
//! by country, language or id becomes rows that keep their key. With
//! nested unwinds, `key = "@1"` is the key at the outermost level.

use std::sync::Arc;

use bson::RawBson;

use super::{Expr, ExprCx, ExprRef, Kind, RowCx};
use crate::lang::spec::{Literal, Sp};
use crate::value::path::{CompiledPath, Found};

pub const KIND: Kind = Kind { key: "key", compile };

/// The level (`None`: the innermost).
#[derive(Debug)]
struct EntryKey(Option<usize>);

fn compile(arg: &Sp<Literal>, cx: &mut dyn ExprCx) -> Option<ExprRef> {
    let Literal::String(at) = &arg.value else {
        cx.wrong_arg(arg, "`@` (the entry being unwound) or `@1`, `@2`, … (a level)");
        return None;
    };
    let level = match super::level_arg(at, cx.levels().max(1)) {
        Ok(l) => l,
        Err(_) => {
            cx.wrong_arg(arg, "only `@` (the entry being unwound) or `@1`, `@2`, … (a level)");
            return None;
        }
    };
    if !cx.entries_at(level) {
        let message =
            format!("`{}` takes an object entry's key, but the mapping does not unwind an object there", cx.column());
        cx.misuse(arg, message, "unwind the object's entries with `unwind = \"$.object.*\"`");
        return None;
    }
    Some(Arc::new(EntryKey(level)))
}

impl Expr for EntryKey {
    fn paths(&self) -> Vec<&CompiledPath> {
        Vec::new()
    }

    fn eval<'a>(
        &self,
        _input: &mut dyn FnMut(usize) -> Result<Found<'a>, String>,
        row: &RowCx<'_>,
    ) -> Result<Found<'a>, String> {
        Ok(row
            .level(self.0)
            .and_then(|l| l.key)
            .map_or(Found::Missing, |k| Found::Owned(RawBson::String(k.to_string()))))
    }

    fn text(&self) -> String {
        format!("key(@{})", self.0.map_or(String::new(), |n| n.to_string()))
    }
}

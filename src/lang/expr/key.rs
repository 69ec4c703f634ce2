//! `key = "@"`: in a mapping with `unwind = "$.obj.*"`, the key of the
//! object entry the row comes from (the values are `@`), so an object keyed
//! by country, language or id becomes rows that keep their key.

use std::sync::Arc;

use bson::RawBson;

use super::{Expr, ExprCx, ExprRef, Kind, RowCx};
use crate::lang::spec::{Literal, Sp};
use crate::value::path::{CompiledPath, Found};

pub const KIND: Kind = Kind { key: "key", compile };

#[derive(Debug)]
struct EntryKey;

fn compile(arg: &Sp<Literal>, cx: &mut dyn ExprCx) -> Option<ExprRef> {
    match &arg.value {
        Literal::String(at) if at == "@" => {}
        _ => {
            cx.wrong_arg(arg, "only `@` (the entry being unwound)");
            return None;
        }
    }
    if !cx.unwinding_entries() {
        let message =
            format!("`{}` takes an object entry's key, but the mapping does not unwind an object", cx.column());
        cx.misuse(arg, message, "unwind the object's entries with `unwind = \"$.object.*\"`");
        return None;
    }
    Some(Arc::new(EntryKey))
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
        Ok(row.key.map_or(Found::Missing, |k| Found::Owned(RawBson::String(k.to_string()))))
    }

    fn text(&self) -> String {
        "key(@)".into()
    }
}

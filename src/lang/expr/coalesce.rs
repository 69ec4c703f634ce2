//! `coalesce = ["$.fullplot", "$.plot"]`: the first of the paths whose
//! value is present and not null (an empty string counts as a value).
//! Nothing present: the value is missing, so `required` and `default` apply.

use super::{Expr, ExprCx, ExprRef, Kind, RowCx};
use crate::lang::spec::{Literal, Sp};
use crate::value::path::{CompiledPath, Found};

pub const KIND: Kind = Kind { key: "coalesce", compile };

#[derive(Debug)]
struct Coalesce(Vec<CompiledPath>);

fn compile(arg: &Sp<Literal>, cx: &mut dyn ExprCx) -> Option<ExprRef> {
    let Literal::Array(items) = &arg.value else {
        cx.wrong_arg(arg, "an array of paths, such as [\"$.fullplot\", \"$.plot\"]");
        return None;
    };
    if items.is_empty() {
        cx.wrong_arg(arg, "at least one path");
        return None;
    }
    Some(std::sync::Arc::new(Coalesce(super::paths_arg(arg, items, cx)?)))
}

fn present(f: &Found<'_>) -> bool {
    !matches!(f.as_ref(), None | Some(bson::RawBsonRef::Null | bson::RawBsonRef::Undefined))
}

impl Expr for Coalesce {
    fn paths(&self) -> Vec<&CompiledPath> {
        self.0.iter().collect()
    }

    fn eval<'a>(
        &self,
        input: &mut dyn FnMut(usize) -> Result<Found<'a>, String>,
        _row: &RowCx<'_>,
    ) -> Result<Found<'a>, String> {
        for i in 0..self.0.len() {
            let v = input(i)?;
            if present(&v) {
                return Ok(v);
            }
        }
        Ok(Found::Missing)
    }

    fn text(&self) -> String {
        let paths: Vec<&str> = self.0.iter().map(CompiledPath::text).collect();
        format!("coalesce({})", paths.join(", "))
    }
}

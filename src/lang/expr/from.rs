//! `from = "$.path"` (or the shorthand `column = "$.path"`): the value at a
//! path, as it is.

use super::{Expr, ExprCx, ExprRef, Kind, RowCx, path_arg};
use crate::lang::spec::{Literal, Sp};
use crate::value::path::{CompiledPath, Found};

pub const KIND: Kind = Kind { key: "from", compile };

#[derive(Debug)]
struct From(CompiledPath);

fn compile(arg: &Sp<Literal>, cx: &mut dyn ExprCx) -> Option<ExprRef> {
    Some(std::sync::Arc::new(From(path_arg(arg, cx)?)))
}

impl Expr for From {
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

    fn is_path(&self) -> bool {
        true
    }

    fn text(&self) -> String {
        self.0.text().to_string()
    }
}

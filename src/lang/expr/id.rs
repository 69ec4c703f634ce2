//! `id = "$.path"`: a deterministic UUIDv5 of the value at a path (the
//! project's namespace; an ObjectId and its hex give the same id), so a
//! row and every reference to it agree without a lookup.

use bson::RawBsonRef;

use super::{Expr, ExprCx, ExprRef, Kind, RowCx, path_arg};
use crate::lang::spec::{Literal, Sp};
use crate::schema::SqlType;
use crate::value::cell::Cell;
use crate::value::coerce::CoerceRules;
use crate::value::path::{CompiledPath, Found};

pub const KIND: Kind = Kind { key: "id", compile };

#[derive(Debug)]
struct Id(CompiledPath);

fn compile(arg: &Sp<Literal>, cx: &mut dyn ExprCx) -> Option<ExprRef> {
    let path = path_arg(arg, cx)?;
    if *cx.ty() != SqlType::Uuid {
        let message = format!("`id` derives a UUID, but `{}` is {}", cx.column(), cx.ty());
        cx.type_mismatch(arg, message, "uuid", "use `from` to copy the value as it is, or make the column UUID");
        return None;
    }
    Some(std::sync::Arc::new(Id(path)))
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

//! A column with no source (neither `from` nor `id`): it takes its
//! `default`, the schema's DEFAULT, or NULL.

use super::{Expr, RowCx};
use crate::value::path::{CompiledPath, Found};

#[derive(Debug)]
pub struct DefaultOnly;

impl Expr for DefaultOnly {
    fn paths(&self) -> Vec<&CompiledPath> {
        Vec::new()
    }

    fn eval<'a>(
        &self,
        _input: &mut dyn FnMut(usize) -> Result<Found<'a>, String>,
        _row: &RowCx<'_>,
    ) -> Result<Found<'a>, String> {
        Ok(Found::Missing)
    }

    fn text(&self) -> String {
        "-".into()
    }

    fn is_default_only(&self) -> bool {
        true
    }
}

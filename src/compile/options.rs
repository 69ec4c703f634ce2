//! A column's options beside its value, checked against its type and
//! turned into the plan's rules: `encoding`, `dimensions`, `point`,
//! `on_missing`, `date_format`, `split`, `wrap_scalar`, `null_if`,
//! `map_null` and `default`.
//!
//! Knows specs, the schema's column types and values; nothing of sources
//! or connections.

use bson::RawBson;

use super::mapping::{MappingCx, literal_bson};
use crate::lang::diag::{Code, Diagnostic};
use crate::lang::spec::{ColumnSpec, Literal, Sp};
use crate::lang::transform::Transform;
use crate::plan::{DefaultPlan, OnMissing};
use crate::schema::{Column, SqlType};
use crate::value::coerce::{BytesText, CoerceRules, coerce};

impl MappingCx<'_> {
    /// `encoding` (bytea columns), `dimensions` (array columns) and `point`
    /// (geometry columns) into the column's coercion rules; a geometry
    /// column in a SRID GeoJSON cannot fill is an error.
    pub(super) fn byte_rules(&mut self, c: &ColumnSpec, ty: &SqlType, rules: &mut CoerceRules) -> Option<()> {
        let file = self.spec.file.clone();
        let mut ok = true;
        if let SqlType::Geo(g) = ty
            && let Some(e) = crate::value::types::geo::declared_error(g)
        {
            self.diags.push(
                Diagnostic::error(Code::UnsupportedType, format!("column `{}` is {ty}: {e}", c.name.value))
                    .at(&file, c.name.span.clone(), "GeoJSON cannot fill it exactly")
                    .help("declare the column in SRID 4326 (transform in SQL after the load if another is needed)"),
            );
            ok = false;
        }
        if let Some(p) = c.point.as_ref().filter(|p| p.value) {
            if matches!(ty, SqlType::Geo(_)) {
                rules.point = true;
            } else {
                self.diags.push(
                    Diagnostic::error(
                        Code::TypeMismatch,
                        format!("`point` reads [lon, lat] pairs as points, but `{}` is {ty}", c.name.value),
                    )
                    .at(&file, p.span.clone(), "not a geometry column")
                    .help("use it on a geometry or geography column"),
                );
                ok = false;
            }
        }
        if let Some(e) = &c.encoding {
            let names: Vec<&str> = BytesText::NAMES.iter().map(|(_, n)| *n).collect();
            match BytesText::parse(&e.value) {
                None => {
                    self.diags.push(super::bad_choice(&file, e, "`encoding`", &names));
                    ok = false;
                }
                Some(_) if *ty != SqlType::Bytea => {
                    self.diags.push(
                        Diagnostic::error(
                            Code::TypeMismatch,
                            format!("`encoding` says how strings hold bytes, but `{}` is {ty}", c.name.value),
                        )
                        .at(&file, e.span.clone(), "not a bytea column")
                        .help("use it on a bytea column"),
                    );
                    ok = false;
                }
                Some(b) => rules.bytes = Some(b),
            }
        }
        if let Some(d) = &c.dimensions {
            match d.value {
                Literal::Integer(n) if n > 0 && matches!(ty, SqlType::Array(_)) => {
                    rules.dimensions = u32::try_from(n).ok();
                }
                Literal::Integer(n) if n > 0 => {
                    self.diags.push(
                        Diagnostic::error(
                            Code::TypeMismatch,
                            format!("`dimensions` checks an array's length, but `{}` is {ty}", c.name.value),
                        )
                        .at(&file, d.span.clone(), "not an array column")
                        .help("use it on an array column such as real[]"),
                    );
                    ok = false;
                }
                _ => {
                    self.diags.push(
                        Diagnostic::error(Code::InvalidValue, "`dimensions` must be a positive integer")
                            .at(&file, d.span.clone(), format!("found {}", d.value.kind()))
                            .help("write the vector length, such as `dimensions = 1536`"),
                    );
                    ok = false;
                }
            }
        }
        ok.then_some(())
    }

    /// `on_missing`: a known choice, on a reference, into a nullable column.
    pub(super) fn on_missing(&mut self, c: &ColumnSpec, col: &Column, references: bool) -> Option<OnMissing> {
        let Some(o) = &c.on_missing else { return Some(OnMissing::Reject) };
        let file = self.spec.file.clone();
        let Some(choice) = OnMissing::parse(&o.value) else {
            let names: Vec<&str> = OnMissing::NAMES.iter().map(|(_, n)| *n).collect();
            self.diags.push(super::bad_choice(&file, o, "`on_missing`", &names));
            return None;
        };
        if !references {
            self.diags.push(
                Diagnostic::error(
                    Code::InvalidValue,
                    format!("`on_missing` on `{}`, which references nothing", col.name),
                )
                .at(&file, o.span.clone(), "no `references` here")
                .help("add `references = \"table\"`, or drop `on_missing`"),
            );
            return None;
        }
        if choice == OnMissing::Null && col.not_null {
            self.diags.push(
                Diagnostic::error(
                    Code::InvalidValue,
                    format!("`on_missing = \"null\"` on `{}`, which is NOT NULL in the schema", col.name),
                )
                .at(&file, o.span.clone(), "cannot be NULL")
                .help("drop NOT NULL from the column in a migration, or keep `on_missing = \"reject\"`"),
            );
            return None;
        }
        Some(choice)
    }

    /// `date_format`, `split` and `wrap_scalar`, checked against the
    /// transforms and the column type: a format nothing reads, or an array
    /// made for a column that is not one, is an error.
    #[allow(clippy::type_complexity)]
    pub(super) fn shaping(
        &mut self,
        c: &ColumnSpec,
        transforms: &[Transform],
        ty: &SqlType,
        column: &str,
    ) -> Option<(Option<String>, Option<String>, bool)> {
        let file = self.spec.file.clone();
        let mut ok = true;
        if let Some(f) = &c.date_format {
            if !transforms.contains(&Transform::ToDate) {
                self.diags.push(
                    Diagnostic::error(
                        Code::InvalidValue,
                        format!("`date_format` on `{column}` is read by no transform"),
                    )
                    .at(&file, f.span.clone(), "unused format")
                    .help("add `transform = \"to_date\"` to read strings with it"),
                );
                ok = false;
            } else if let Some(e) = crate::lang::transform::date::format_error(&f.value) {
                self.diags.push(
                    Diagnostic::error(
                        Code::InvalidValue,
                        format!("`date_format = {:?}` is not a date format", f.value),
                    )
                    .at(&file, f.span.clone(), e)
                    .help("chrono's strftime syntax, such as \"%m/%d/%Y\" or \"%Y-%m-%d %H:%M:%S\""),
                );
                ok = false;
            }
        }
        if let Some(s) = &c.split
            && s.value.is_empty()
        {
            self.diags.push(
                Diagnostic::error(Code::InvalidValue, "`split` needs a separator")
                    .at(&file, s.span.clone(), "empty separator")
                    .help("write the text between the parts, such as `split = \",\"`"),
            );
            ok = false;
        }
        let wrap = c.wrap_scalar.as_ref().filter(|w| w.value);
        let makes_array =
            c.split.as_ref().map(|s| ("split", s.span.clone())).or(wrap.map(|w| ("wrap_scalar", w.span.clone())));
        if let Some((option, span)) = makes_array
            && !matches!(ty, SqlType::Array(_))
        {
            self.diags.push(
                Diagnostic::error(Code::TypeMismatch, format!("`{option}` makes an array, but `{column}` is {ty}"))
                    .at(&file, span, "array here")
                    .help("use it on an array column (such as text[]), or on `unwind`"),
            );
            ok = false;
        }
        ok.then(|| {
            (c.date_format.as_ref().map(|f| f.value.clone()), c.split.as_ref().map(|s| s.value.clone()), wrap.is_some())
        })
    }

    /// `null_if` and `map_null` values: scalars only (a sentinel is one
    /// value; an array or a table would never equal a read value).
    pub(super) fn sentinels(&mut self, values: &[Sp<Literal>], option: &str) -> Vec<RawBson> {
        let file = self.spec.file.clone();
        let mut out = Vec::new();
        for v in values {
            let scalar = match option {
                "map_null" => matches!(v.value, Literal::String(_) | Literal::Integer(_) | Literal::Bool(_)),
                _ => !matches!(v.value, Literal::Array(_) | Literal::Table(_)),
            };
            if scalar {
                out.push(literal_bson(&v.value));
            } else {
                let what = if option == "map_null" {
                    "strings, integers or booleans (as `map` keys)"
                } else {
                    "single values"
                };
                self.diags.push(
                    Diagnostic::error(Code::InvalidValue, format!("`{option}` takes {what}, found {}", v.value.kind()))
                        .at(&file, v.span.clone(), "not a single value"),
                );
            }
        }
        out
    }

    pub(super) fn default(
        &mut self,
        d: &Sp<Literal>,
        ty: &SqlType,
        rules: &CoerceRules,
        col: &crate::schema::Column,
    ) -> Option<DefaultPlan> {
        if ty.is_temporal() && d.value == Literal::String("now".into()) {
            return Some(DefaultPlan::Now);
        }
        let b = literal_bson(&d.value);
        match coerce(b.as_raw_bson_ref(), ty, rules) {
            Ok(cell) => Some(DefaultPlan::Value(cell.into_owned())),
            Err(e) => {
                let file = self.spec.file.clone();
                let table = self.schema.table(&self.spec.table.as_ref()?.value)?;
                self.diags.push(
                    Diagnostic::error(
                        Code::TypeMismatch,
                        format!("default for `{}` does not fit its type {ty}", col.name),
                    )
                    .at(&file, d.span.clone(), format!("{} : {e}", d.value.kind()))
                    .also(&table.file, col.span.clone(), format!("declared {}", col.ty)),
                );
                None
            }
        }
    }
}

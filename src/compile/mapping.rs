//! One mapping file against the schema: its paths, columns (values,
//! transforms, defaults, references) and key, each problem a diagnostic.
//!
//! Knows specs, the schema and values; nothing of other mappings' order,
//! sources or connections.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Range;
use std::sync::Arc;

use bson::RawBson;

use super::{ProjectDefaults, bad_choice, json_form, parse_tz};
use crate::lang::diag::{Code, Diagnostic, Diagnostics, SourceFile, did_you_mean};
use crate::lang::expr::{DefaultOnly, ExprCx, ExprRef};
use crate::lang::spec::{self, ColumnSpec, Literal, MappingSpec, Sp};
use crate::lang::transform::Transform;
use crate::plan::{ColumnPlan, DefaultPlan, FilterPlan, FilterTest, InnerUnwind, MappingPlan, OnDuplicate};
use crate::schema::{Schema, SqlType, Table};
use crate::value::coerce::{CoerceRules, coerce};
use crate::value::path::{CompiledPath, Root};

pub(super) struct MappingCx<'a> {
    pub(super) spec: &'a MappingSpec,
    pub(super) schema: &'a Schema,
    pub(super) loaded: &'a BTreeMap<&'a str, Vec<&'a MappingSpec>>,
    pub(super) defaults: &'a ProjectDefaults,
    pub(super) diags: &'a mut Diagnostics,
    /// (referenced table, file, span) for each reference to another table.
    pub(super) edges: Vec<(String, SourceFile, Range<usize>)>,
    /// Per unwind level, outermost first: whether it unwinds an object's
    /// entries (`unwind = "$.obj.*"`).
    pub(super) entries: Vec<bool>,
}

impl MappingCx<'_> {
    pub(super) fn file(&self) -> &SourceFile {
        &self.spec.file
    }

    pub(super) fn compile(&mut self) -> Option<MappingPlan> {
        let spec = self.spec;
        let (Some(source), Some(table_name), Some(key)) = (&spec.source, &spec.table, &spec.key) else {
            return None;
        };
        let Some(table) = self.schema.table(&table_name.value) else {
            let mut d = Diagnostic::error(
                Code::UnknownTable,
                format!("table `{}` is not in the schema", table_name.value),
            )
            .at(self.file(), table_name.span.clone(), "unknown table");
            d = match did_you_mean(&table_name.value, self.schema.tables.keys().map(String::as_str)) {
                Some(s) => d.help(format!("did you mean `{s}`?")),
                None => d.help("tables are defined by the CREATE TABLE statements in schema/"),
            };
            self.diags.push(d);
            return None;
        };
        let file_tz = parse_tz(&spec.time_zone, &spec.file, self.diags);
        let mut rules = self.defaults.rules;
        if let Some(tz) = file_tz {
            rules.tz = tz;
        }
        rules.json = json_form(&spec.json, rules.json, &spec.file, self.diags);

        let (unwind, unwind_shape) = match spec.unwind.as_ref().map(|u| self.unwind(u, &spec.unwind_shape)) {
            Some(Some((u, shape))) => (Some(u), shape),
            _ => (None, None),
        };
        // `X.*` over a plain path X: rows are X's entries, keys known.
        let unwind_entries = unwind
            .as_ref()
            .and_then(|u| u.text().strip_suffix(".*"))
            .and_then(|parent| CompiledPath::parse(parent).ok())
            .filter(CompiledPath::is_simple);
        let inner_unwinds: Vec<InnerUnwind> = spec.unwind_inner.iter().filter_map(|u| self.inner_unwind(u)).collect();
        self.entries = std::iter::once(unwind_entries.is_some())
            .chain(inner_unwinds.iter().map(|i| i.entries.is_some()))
            .collect();
        let on_duplicate = match &spec.on_duplicate {
            None => OnDuplicate::Reject,
            Some(d) => OnDuplicate::parse(&d.value).unwrap_or_else(|| {
                let names: Vec<&str> = OnDuplicate::NAMES.iter().map(|(_, n)| *n).collect();
                self.diags.push(super::bad_choice(&spec.file, d, "`on_duplicate`", &names));
                OnDuplicate::Reject
            }),
        };
        let filter = spec.filter.iter().filter_map(|f| self.filter(f, spec.unwind.is_some())).collect();
        let mut columns = Vec::new();
        for c in &spec.columns {
            // `@` paths are judged by whether `unwind` is declared, so a bad
            // unwind path is reported once, not again at every `@` column.
            if let Some(cp) = self.column(c, table, rules, spec.unwind.is_some()) {
                columns.push(cp);
            }
        }
        self.unmapped(table);
        let key_idx = self.key(key, table, &columns);
        let mut depends_on: Vec<String> =
            columns.iter().filter_map(|c| c.references.clone()).filter(|t| *t != table.name).collect();
        depends_on.sort();
        depends_on.dedup();
        let mut plan = MappingPlan {
            name: spec.name.clone(),
            file: spec.file.path.clone(),
            source: source.value.clone(),
            table: table.name.clone(),
            unwind,
            unwind_entries,
            unwind_shape,
            inner_unwinds,
            on_duplicate,
            filter,
            columns,
            key: key_idx?,
            depends_on,
            fields: None,
        };
        plan.fields = plan.projection();
        Some(plan)
    }

    pub(super) fn path(&mut self, p: &Sp<String>, unwinding: bool) -> Option<CompiledPath> {
        match CompiledPath::parse(&p.value) {
            Ok(c) => {
                let declared = usize::from(self.spec.unwind.is_some()) + self.spec.unwind_inner.len();
                if let Root::Level(n) = c.root()
                    && usize::from(n) > declared
                {
                    self.diags.push(
                        Diagnostic::error(
                            Code::UnwindPathOutside,
                            format!("`{}` reads unwind level {n}, but this mapping unwinds {declared}", p.value),
                        )
                        .at(self.file(), p.span.clone(), "no such level")
                        .help("`@1` is the outermost level of `unwind = [\"$.a[*]\", \"@.b[*]\"]`, `@` the innermost"),
                    );
                    return None;
                }
                if c.root() != Root::Document && !unwinding {
                    self.diags.push(
                        Diagnostic::error(
                            Code::UnwindPathOutside,
                            format!("`{}` reads an unwind element, but this mapping has no `unwind`", p.value),
                        )
                        .at(self.file(), p.span.clone(), "`@` needs `unwind`")
                        .help("read from the document with `$.…`, or add `unwind = \"$.array[*]\"`"),
                    );
                    return None;
                }
                Some(c)
            }
            Err(e) => {
                self.diags.push(
                    Diagnostic::error(Code::InvalidJsonPath, format!("invalid path `{}`", p.value))
                        .at(self.file(), p.span.clone(), e)
                        .help("paths look like `$.profile.native_language`, `$.items[0]`, `$.tags[*]` or `@.weight`"),
                );
                None
            }
        }
    }

    fn filter(&mut self, f: &spec::FilterSpec, unwinding: bool) -> Option<FilterPlan> {
        // `@` paths test each unwind element; `$` paths the document.
        let path = self.path(&f.path, unwinding)?;
        let lit = |l: &Literal| literal_bson(l);
        let test = match &f.test.value {
            spec::FilterTest::Equals(l) => FilterTest::Equals(lit(l)),
            spec::FilterTest::NotEquals(l) => FilterTest::NotEquals(lit(l)),
            spec::FilterTest::In(ls) => FilterTest::In(ls.iter().map(lit).collect()),
            spec::FilterTest::NotIn(ls) => FilterTest::NotIn(ls.iter().map(lit).collect()),
            spec::FilterTest::Exists(b) => FilterTest::Exists(*b),
            spec::FilterTest::Type(names) => {
                for n in names {
                    if !crate::value::text::BSON_TYPE_NAMES.contains(&n.as_str()) {
                        let at = Sp::new(n.clone(), f.test.span.clone());
                        self.diags.push(bad_choice(
                            &self.spec.file,
                            &at,
                            "BSON type",
                            crate::value::text::BSON_TYPE_NAMES,
                        ));
                        return None;
                    }
                }
                FilterTest::Type(names.clone())
            }
        };
        Some(FilterPlan { path, test })
    }

    fn column(&mut self, c: &ColumnSpec, table: &Table, mut rules: CoerceRules, unwinding: bool) -> Option<ColumnPlan> {
        let file = self.spec.file.clone();
        let Some(col) = table.column(&c.name.value) else {
            let mut d = Diagnostic::error(
                Code::UnknownColumn,
                format!("table `{}` has no column `{}`", table.name, c.name.value),
            )
            .at(&file, c.name.span.clone(), "unknown column")
            .also(&table.file, table.span.clone(), format!("`{}` is defined here", table.name));
            d = match did_you_mean(&c.name.value, table.columns.iter().map(|c| c.name.as_str())) {
                Some(s) => d.help(format!("did you mean `{s}`?")),
                None => d.help(format!(
                    "columns of `{}`: {}",
                    table.name,
                    table.columns.iter().map(|c| c.name.as_str()).collect::<Vec<_>>().join(", ")
                )),
            };
            self.diags.push(d);
            return None;
        };
        // `time_zone = "$.timezone"`: each row's zone, read from the document.
        let tz_path = match &c.time_zone {
            Some(t) if t.value.starts_with(['$', '@']) => {
                if let Some(tz) = parse_tz(&c.time_zone_fallback, &file, self.diags) {
                    rules.tz = tz;
                }
                Some(self.path(t, unwinding)?)
            }
            _ => {
                if let Some(f) = &c.time_zone_fallback {
                    self.diags.push(
                        Diagnostic::error(Code::InvalidValue, "a second `time_zone` is the fallback of a path")
                            .at(&file, f.span.clone(), "no path before it")
                            .help("write `time_zone = [\"$.timezone\", \"America/New_York\"]`, or one zone name"),
                    );
                }
                if let Some(tz) = parse_tz(&c.time_zone, &file, self.diags) {
                    rules.tz = tz;
                }
                None
            }
        };
        rules.json = json_form(&c.json, rules.json, &file, self.diags);

        let mut ty = col.ty.clone();
        if let Some(t) = &c.ty {
            match SqlType::parse(&t.value) {
                Ok(parsed) => {
                    if crate::value::types::is_supported(&col.ty) && parsed != col.ty {
                        self.diags.push(
                            Diagnostic::warning(
                                Code::TypeMismatch,
                                format!("`type = \"{}\"` differs from the schema's {} for `{}`", t.value, col.ty, col.name),
                            )
                            .at(&file, t.span.clone(), "values are checked as this type")
                            .also(&table.file, col.span.clone(), format!("schema says {}", col.ty))
                            .help("PostgreSQL will cast on load; `type` is meant for columns whose type finlit-map does not know"),
                        );
                    }
                    ty = parsed;
                }
                Err(e) => {
                    self.diags.push(Diagnostic::error(Code::InvalidValue, format!("unknown type `{}`", t.value)).at(
                        &file,
                        t.span.clone(),
                        e,
                    ));
                    return None;
                }
            }
        }
        if !crate::value::types::is_supported(&ty) {
            self.diags.push(
                Diagnostic::error(
                    Code::UnsupportedType,
                    format!("column `{}` has type {}, which finlit-map does not write", col.name, col.ty),
                )
                .at(&file, c.name.span.clone(), "unsupported type")
                .also(&table.file, col.span.clone(), "declared here")
                .help("add `type = \"text\"` (or another supported type) to say how to write it"),
            );
            return None;
        }
        self.byte_rules(c, &ty, &mut rules)?;

        let value: ExprRef = match &c.source {
            Some(e) => {
                let kind = crate::lang::expr::kind(&e.key.value)?;
                let mut cx = ColumnCx { cx: self, unwinding, column: &col.name, ty: &ty, decl: (&table.file, col) };
                (kind.compile)(&e.arg, &mut cx)?
            }
            None => Arc::new(DefaultOnly),
        };

        let transforms: Vec<Transform> = c
            .transform
            .iter()
            .filter_map(|t| match Transform::parse(&t.value) {
                Some(t) => Some(t),
                None => {
                    self.diags.push(bad_choice(&file, t, "transform", &Transform::names()));
                    None
                }
            })
            .collect();

        let (date_format, split, wrap_scalar) = self.shaping(c, &transforms, &ty, &col.name)?;

        let mut map = Vec::new();
        for (k, v) in &c.map {
            let b = literal_bson(&v.value);
            if let Err(e) = coerce(b.as_raw_bson_ref(), &ty, &rules) {
                self.diags.push(
                    Diagnostic::error(Code::TypeMismatch, format!("`map` value for `{}` does not fit {ty}", k.value))
                        .at(&file, v.span.clone(), e),
                );
            }
            map.push((k.value.clone(), b));
        }

        let null_if = self.sentinels(&c.null_if, "null_if");
        let map_null: Vec<String> = self
            .sentinels(&c.map_null, "map_null")
            .iter()
            .filter_map(|b| crate::value::text::map_key(b.as_raw_bson_ref()))
            .collect();
        for (k, _) in &c.map {
            if map_null.contains(&k.value) {
                self.diags.push(
                    Diagnostic::error(Code::InvalidValue, format!("`{}` is both mapped and in `map_null`", k.value))
                        .at(&file, k.span.clone(), "mapped here")
                        .help("keep it in one of `map` and `map_null`"),
                );
            }
        }

        let default = match &c.default {
            Some(d) => self.default(d, &ty, &rules, col)?,
            None => match &col.default {
                Some(sd) => DefaultPlan::Schema(sd.clone()),
                None => DefaultPlan::None,
            },
        };
        if value.is_default_only() && matches!(default, DefaultPlan::None) {
            self.diags.push(
                Diagnostic::error(Code::MissingKey, format!("column `{}` has no `from`, `id` or `default`", col.name))
                    .at(&file, c.span.clone(), "no value")
                    .help("write `column = \"$.path\"`, or give it a `default`"),
            );
        }

        let (references, references_column) = self.references(c, table, col, &value).unzip();
        let on_missing = self.on_missing(c, col, references.is_some())?;
        Some(ColumnPlan {
            name: col.name.clone(),
            ty,
            value,
            required: c.required.as_ref().is_some_and(|r| r.value),
            not_null: col.not_null,
            default,
            transforms,
            date_format,
            split,
            wrap_scalar,
            map,
            null_if,
            map_null,
            references,
            references_column,
            on_missing,
            tz_path,
            rules,
        })
    }

    fn unmapped(&mut self, table: &Table) {
        let mapped: BTreeSet<&str> = self.spec.columns.iter().map(|c| c.name.value.as_str()).collect();
        for col in &table.columns {
            if col.not_null && col.default.is_none() && !mapped.contains(col.name.as_str()) {
                let file = self.spec.file.clone();
                self.diags.push(
                    Diagnostic::error(
                        Code::UnmappedNotNull,
                        format!(
                            "column `{}.{}` is NOT NULL without a default, and the mapping leaves it out",
                            table.name, col.name
                        ),
                    )
                    .at(&file, self.spec.columns_span.clone(), format!("`{}` missing from [columns]", col.name))
                    .also(&table.file, col.span.clone(), "NOT NULL, no DEFAULT")
                    .help(format!("map it: `{} = \"$.…\"`, or give it a `default`", col.name)),
                );
            }
        }
    }

    fn key(&mut self, key: &Sp<Vec<Sp<String>>>, table: &Table, columns: &[ColumnPlan]) -> Option<Vec<usize>> {
        let file = self.spec.file.clone();
        let mut idx = Vec::new();
        let mut ok = true;
        for k in &key.value {
            match columns.iter().position(|c| c.name == k.value) {
                Some(i) => idx.push(i),
                None => {
                    ok = false;
                    let known = table.column(&k.value).is_some();
                    let msg = if known {
                        format!("key column `{}` is not mapped", k.value)
                    } else {
                        format!("key column `{}` is not a column of `{}`", k.value, table.name)
                    };
                    let code = if known { Code::MissingKey } else { Code::UnknownColumn };
                    self.diags.push(Diagnostic::error(code, msg).at(&file, k.span.clone(), "not in [columns]"));
                }
            }
        }
        if ok {
            let names: Vec<&str> = key.value.iter().map(|k| k.value.as_str()).collect();
            if !table.is_unique_key(&names) {
                self.diags.push(
                    Diagnostic::error(
                        Code::KeyNotUnique,
                        format!(
                            "key ({}) is neither the primary key nor a unique key of `{}`",
                            names.join(", "),
                            table.name
                        ),
                    )
                    .at(&file, key.span.clone(), "not unique in the schema")
                    .also(&table.file, table.span.clone(), format!("primary key ({})", table.primary_key.join(", ")))
                    .help("re-runs update rows by this key, so it must be unique: use the primary key"),
                );
                ok = false;
            }
        }
        ok.then_some(idx)
    }
}

/// TOML literals as BSON, so defaults and `map` values go through the same coercion as data.
pub(super) fn literal_bson(l: &Literal) -> RawBson {
    match l {
        Literal::String(s) | Literal::Datetime(s) => RawBson::String(s.clone()),
        Literal::Integer(i) => match i32::try_from(*i) {
            Ok(i) => RawBson::Int32(i),
            Err(_) => RawBson::Int64(*i),
        },
        Literal::Float(f) => RawBson::Double(*f),
        Literal::Bool(b) => RawBson::Boolean(*b),
        Literal::Array(items) => {
            let mut a = bson::RawArrayBuf::new();
            for i in items {
                a.push(literal_bson(i));
            }
            RawBson::Array(a)
        }
        Literal::Table(entries) => {
            let mut d = bson::RawDocumentBuf::new();
            for (k, v) in entries {
                // A key with a NUL byte cannot be a BSON key; TOML keys practically never hold one.
                if let Ok(key) = <&bson::raw::CStr>::try_from(k.as_str()) {
                    d.append(key, literal_bson(v));
                }
            }
            RawBson::Document(d)
        }
    }
}

/// What an expression compiling for one column may ask: its paths compiled
/// in the mapping's context, the column, and a place for its diagnostics.
struct ColumnCx<'c, 'm> {
    cx: &'c mut MappingCx<'m>,
    unwinding: bool,
    column: &'c str,
    ty: &'c SqlType,
    decl: (&'c SourceFile, &'c crate::schema::Column),
}

impl ExprCx for ColumnCx<'_, '_> {
    fn path(&mut self, p: &Sp<String>) -> Option<CompiledPath> {
        self.cx.path(p, self.unwinding)
    }

    fn column(&self) -> &str {
        self.column
    }

    fn misuse(&mut self, at: &Sp<Literal>, message: String, help: &str) {
        let file = self.cx.spec.file.clone();
        self.cx
            .diags
            .push(Diagnostic::error(Code::InvalidValue, message).at(&file, at.span.clone(), "here").help(help));
    }

    /// Levels as declared, so a level that failed to compile is not
    /// reported again at every column that names it.
    fn levels(&self) -> usize {
        if self.unwinding { 1 + self.cx.spec.unwind_inner.len() } else { 0 }
    }

    fn entries_at(&self, n: Option<usize>) -> bool {
        let at = n.map_or(self.cx.entries.len().checked_sub(1), |n| n.checked_sub(1));
        at.and_then(|i| self.cx.entries.get(i)).copied().unwrap_or(false)
    }

    fn ty(&self) -> &SqlType {
        self.ty
    }

    fn wrong_arg(&mut self, arg: &Sp<Literal>, expected: &str) {
        let file = self.cx.spec.file.clone();
        self.cx.diags.push(
            Diagnostic::error(Code::InvalidValue, format!("expected {expected}, found {}", arg.value.kind())).at(
                &file,
                arg.span.clone(),
                format!("expected {expected}"),
            ),
        );
    }

    fn type_mismatch(&mut self, at: &Sp<Literal>, message: String, yields: &str, help: &str) {
        let file = self.cx.spec.file.clone();
        let (decl_file, col) = self.decl;
        self.cx.diags.push(
            Diagnostic::error(Code::TypeMismatch, message)
                .at(&file, at.span.clone(), format!("yields {yields}"))
                .also(decl_file, col.span.clone(), format!("declared {}", col.ty))
                .help(help),
        );
    }
}

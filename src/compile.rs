//! Specs + schema → `Plan`, collecting every diagnostic on the way.
//!
//! This is where the mapping language meets the target schema: paths are
//! compiled, columns resolved to typed schema columns, defaults and `map`
//! values coerced ahead of time, references turned into a dependency graph
//! and the graph into stages. Nothing returns at the first problem: `check`
//! prints all of them.
//!
//! Knows specs and the schema; nothing of sources, sinks or connections.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::ops::Range;
use std::path::{Path, PathBuf};

use bson::RawBson;
use chrono_tz::Tz;

use crate::coerce::{CoerceRules, coerce};
use crate::diag::{Code, Diagnostic, Diagnostics, SourceFile, did_you_mean};
use crate::ids::IdNamespace;
use crate::json::{DateForm, JsonForm, ObjectIdForm};
use crate::path::{CompiledPath, Root};
use crate::plan::{ColumnPlan, DefaultPlan, FilterPlan, FilterTest, MappingPlan, Plan, ValuePlan};
use crate::schema::{Schema, SqlType, Table};
use crate::spec::{self, ColumnSpec, JsonSpec, Literal, MappingSpec, ProjectSpec, Sp, ValueSource};
use crate::transform::Transform;

/// What `check` and every command start from: the mapping directory read,
/// the schema read, both compiled.
pub struct Compiled {
    pub plan: Option<Plan>,
    pub diagnostics: Diagnostics,
}

/// Loads and compiles a mapping directory. `schema_dir` overrides the
/// project file's `schema` (default: `../schema` beside the mapping dir, then `schema/`).
pub fn compile_dir(dir: &Path, schema_dir: Option<&Path>) -> Compiled {
    let mut diags = Diagnostics::default();
    let (project, specs) = spec::load_dir(dir, &mut diags);
    let schema_dir = schema_dir.map(Path::to_path_buf).unwrap_or_else(|| resolve_schema_dir(dir, &project));
    let schema = Schema::load_dir(&schema_dir, &mut diags);
    let plan = compile(&project, &specs, schema, schema_dir, &mut diags);
    diags.sort();
    let plan = if diags.has_errors() { None } else { Some(plan) };
    Compiled { plan, diagnostics: diags }
}

fn resolve_schema_dir(dir: &Path, project: &ProjectSpec) -> PathBuf {
    if let Some(s) = &project.schema {
        return dir.join(&s.value);
    }
    let beside = dir.join("..").join("schema");
    if beside.is_dir() { beside } else { PathBuf::from("schema") }
}

/// Compiles parsed specs against a schema. The plan is complete only when
/// `diags` holds no error.
pub fn compile(
    project: &ProjectSpec,
    specs: &[MappingSpec],
    schema: Schema,
    schema_dir: PathBuf,
    diags: &mut Diagnostics,
) -> Plan {
    let defaults = ProjectDefaults::new(project, diags);
    let loaded: BTreeMap<&str, Vec<&MappingSpec>> = specs.iter().fold(BTreeMap::new(), |mut m, s| {
        if let Some(t) = &s.table {
            m.entry(t.value.as_str()).or_default().push(s);
        }
        m
    });
    let mut mappings = Vec::new();
    // (mapping index, referenced table, span of the reference) for cycle messages.
    let mut edges: Vec<(usize, String, SourceFile, Range<usize>)> = Vec::new();
    for spec in specs {
        let mut cx =
            MappingCx { spec, schema: &schema, loaded: &loaded, defaults: &defaults, diags, edges: Vec::new() };
        if let Some(m) = cx.compile() {
            let idx = mappings.len();
            edges.extend(cx.edges.into_iter().map(|(t, f, s)| (idx, t, f, s)));
            mappings.push(m);
        }
    }
    check_overlaps(specs, diags);
    let stages = order(&mappings, &edges, diags);
    // Reorder mappings stage by stage so `mappings` is in load order.
    let mut ordered = Vec::with_capacity(mappings.len());
    let mut new_stages = Vec::new();
    let mut slots: Vec<Option<MappingPlan>> = mappings.into_iter().map(Some).collect();
    for stage in stages {
        let mut s = Vec::new();
        for i in stage {
            if let Some(m) = slots[i].take() {
                s.push(ordered.len());
                ordered.push(m);
            }
        }
        new_stages.push(s);
    }
    Plan { mappings: ordered, stages: new_stages, schema, schema_dir, namespace: defaults.rules.ns }
}

struct ProjectDefaults {
    rules: CoerceRules,
}

impl ProjectDefaults {
    fn new(p: &ProjectSpec, diags: &mut Diagnostics) -> Self {
        let mut rules = CoerceRules::default();
        if let (Some(ns), Some(file)) = (&p.namespace, &p.file) {
            match uuid::Uuid::parse_str(&ns.value) {
                Ok(u) => rules.ns = IdNamespace(u),
                Err(e) => diags.push(
                    Diagnostic::error(Code::InvalidValue, "the id namespace is not a UUID")
                        .at(file, ns.span.clone(), e.to_string())
                        .help("generate one with `uuidgen` and keep it forever: it fixes every derived id"),
                ),
            }
        }
        if let Some(file) = &p.file {
            if let Some(tz) = parse_tz(&p.time_zone, file, diags) {
                rules.tz = tz;
            }
            rules.json = json_form(&p.json, rules.json, file, diags);
        }
        ProjectDefaults { rules }
    }
}

fn parse_tz(tz: &Option<Sp<String>>, file: &SourceFile, diags: &mut Diagnostics) -> Option<Tz> {
    let tz = tz.as_ref()?;
    match tz.value.parse::<Tz>() {
        Ok(t) => Some(t),
        Err(_) => {
            let names = chrono_tz::TZ_VARIANTS.iter().map(|t| t.name());
            let mut d = Diagnostic::error(Code::InvalidValue, format!("unknown time zone `{}`", tz.value)).at(
                file,
                tz.span.clone(),
                "not an IANA time zone",
            );
            if let Some(s) = did_you_mean(&tz.value, names) {
                d = d.help(format!("did you mean `{s}`?"));
            }
            diags.push(d);
            None
        }
    }
}

fn json_form(j: &JsonSpec, base: JsonForm, file: &SourceFile, diags: &mut Diagnostics) -> JsonForm {
    let mut form = base;
    if let Some(o) = &j.object_ids {
        match ObjectIdForm::parse(&o.value) {
            Some(f) => form.object_ids = f,
            None => diags.push(bad_choice(file, o, "object_ids form", ObjectIdForm::NAMES)),
        }
    }
    if let Some(d) = &j.dates {
        match DateForm::parse(&d.value) {
            Some(f) => form.dates = f,
            None => diags.push(bad_choice(file, d, "dates form", DateForm::NAMES)),
        }
    }
    form
}

fn bad_choice(file: &SourceFile, v: &Sp<String>, what: &str, names: &[&str]) -> Diagnostic {
    let d = Diagnostic::error(Code::InvalidValue, format!("unknown {what} `{}`", v.value)).at(
        file,
        v.span.clone(),
        format!("one of: {}", names.join(", ")),
    );
    match did_you_mean(&v.value, names.iter().copied()) {
        Some(s) => d.help(format!("did you mean `{s}`?")),
        None => d,
    }
}

struct MappingCx<'a> {
    spec: &'a MappingSpec,
    schema: &'a Schema,
    loaded: &'a BTreeMap<&'a str, Vec<&'a MappingSpec>>,
    defaults: &'a ProjectDefaults,
    diags: &'a mut Diagnostics,
    /// (referenced table, file, span) for each reference to another table.
    edges: Vec<(String, SourceFile, Range<usize>)>,
}

impl MappingCx<'_> {
    fn file(&self) -> &SourceFile {
        &self.spec.file
    }

    fn compile(&mut self) -> Option<MappingPlan> {
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

        let unwind = spec.unwind.as_ref().and_then(|u| self.unwind(u));
        let filter = spec.filter.iter().filter_map(|f| self.filter(f)).collect();
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
        let fields = projection(&columns, unwind.as_ref(), &spec.filter);
        Some(MappingPlan {
            name: spec.name.clone(),
            file: spec.file.path.clone(),
            source: source.value.clone(),
            table: table.name.clone(),
            unwind,
            filter,
            columns,
            key: key_idx?,
            depends_on,
            fields,
        })
    }

    fn path(&mut self, p: &Sp<String>, unwinding: bool) -> Option<CompiledPath> {
        match CompiledPath::parse(&p.value) {
            Ok(c) => {
                if c.root() == Root::Element && !unwinding {
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

    fn unwind(&mut self, u: &Sp<String>) -> Option<CompiledPath> {
        let p = self.path(u, false)?;
        if p.is_multi() {
            return Some(p);
        }
        let help = if p.is_simple() && !u.value.trim_end().ends_with(']') {
            format!("did you mean `{}[*]`?", u.value.trim_end())
        } else {
            "end the path with `[*]` to take every element of an array".to_string()
        };
        self.diags.push(
            Diagnostic::error(
                Code::UnwindNotArray,
                format!("`unwind = \"{}\"` selects one value, not the elements of an array", u.value),
            )
            .at(self.file(), u.span.clone(), "cannot yield an array's elements")
            .help(help),
        );
        None
    }

    fn filter(&mut self, f: &spec::FilterSpec) -> Option<FilterPlan> {
        let path = self.path(&f.path, false)?;
        let lit = |l: &Literal| literal_bson(l);
        let test = match &f.test.value {
            spec::FilterTest::Equals(l) => FilterTest::Equals(lit(l)),
            spec::FilterTest::NotEquals(l) => FilterTest::NotEquals(lit(l)),
            spec::FilterTest::In(ls) => FilterTest::In(ls.iter().map(lit).collect()),
            spec::FilterTest::NotIn(ls) => FilterTest::NotIn(ls.iter().map(lit).collect()),
            spec::FilterTest::Exists(b) => FilterTest::Exists(*b),
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
        if let Some(tz) = parse_tz(&c.time_zone, &file, self.diags) {
            rules.tz = tz;
        }
        rules.json = json_form(&c.json, rules.json, &file, self.diags);

        let mut ty = col.ty.clone();
        if let Some(t) = &c.ty {
            match SqlType::parse(&t.value) {
                Ok(parsed) => {
                    if col.ty.is_supported() && parsed != col.ty {
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
        if !ty.is_supported() {
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

        let value = match &c.source {
            ValueSource::Path(p) => ValuePlan::Path(self.path(p, unwinding)?),
            ValueSource::Id(p) => {
                let path = self.path(p, unwinding)?;
                if ty != SqlType::Uuid {
                    self.diags.push(
                        Diagnostic::error(
                            Code::TypeMismatch,
                            format!("`id` derives a UUID, but `{}` is {}", col.name, col.ty),
                        )
                        .at(&file, p.span.clone(), "yields uuid")
                        .also(&table.file, col.span.clone(), format!("declared {}", col.ty))
                        .help("use `from` to copy the value as it is, or make the column UUID"),
                    );
                    return None;
                }
                ValuePlan::Id(path)
            }
            ValueSource::None => ValuePlan::DefaultOnly,
        };

        let transforms = c
            .transform
            .iter()
            .filter_map(|t| match Transform::parse(&t.value) {
                Some(t) => Some(t),
                None => {
                    self.diags.push(bad_choice(&file, t, "transform", Transform::NAMES));
                    None
                }
            })
            .collect();

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

        let default = match &c.default {
            Some(d) => self.default(d, &ty, &rules, col)?,
            None => match &col.default {
                Some(sd) => DefaultPlan::Schema(sd.clone()),
                None => DefaultPlan::None,
            },
        };
        if matches!(value, ValuePlan::DefaultOnly) && matches!(default, DefaultPlan::None) {
            self.diags.push(
                Diagnostic::error(Code::MissingKey, format!("column `{}` has no `from`, `id` or `default`", col.name))
                    .at(&file, c.span.clone(), "no value")
                    .help("write `column = \"$.path\"`, or give it a `default`"),
            );
        }

        let references = self.references(c, table, col, &value);
        Some(ColumnPlan {
            name: col.name.clone(),
            ty,
            value,
            required: c.required.as_ref().is_some_and(|r| r.value),
            not_null: col.not_null,
            default,
            transforms,
            map,
            references,
            rules,
        })
    }

    fn default(
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

    /// Resolves `references` against the schema's foreign keys and the set of
    /// loaded tables; records the dependency edge.
    fn references(
        &mut self,
        c: &ColumnSpec,
        table: &Table,
        col: &crate::schema::Column,
        value: &ValuePlan,
    ) -> Option<String> {
        let file = self.spec.file.clone();
        let fk = table.foreign_key_on(&col.name);
        let declared = c.references.as_ref();
        if let (Some(fk), ValuePlan::Path(p)) = (fk, value) {
            self.diags.push(
                Diagnostic::error(
                    Code::ForeignKeyWithoutId,
                    format!("`{}` is a foreign key to `{}`, but the mapping copies `{}` instead of deriving its id", col.name, fk.ref_table, p.text()),
                )
                .at(&file, c.span.clone(), "filled without `id`")
                .also(&fk.file, fk.span.clone(), "foreign key declared here")
                .help(format!("write `{} = {{ id = \"{}\", references = \"{}\" }}` so it matches the UUID of the row it points at", col.name, p.text(), fk.ref_table)),
            );
            return None;
        }
        if let (Some(r), ValuePlan::Path(_) | ValuePlan::DefaultOnly) = (declared, value) {
            self.diags.push(
                Diagnostic::error(Code::ForeignKeyWithoutId, format!("`references` on `{}` needs `id`", col.name))
                    .at(&file, r.span.clone(), "no `id` derivation")
                    .help("a reference holds the derived UUID of the row it points at: use `id = \"$.path\"`"),
            );
            return None;
        }
        let target = match (declared, fk) {
            (Some(r), Some(fk)) if r.value != fk.ref_table => {
                self.diags.push(
                    Diagnostic::error(
                        Code::ReferenceMismatch,
                        format!(
                            "`{}` references `{}`, but the schema's foreign key points at `{}`",
                            col.name, r.value, fk.ref_table
                        ),
                    )
                    .at(&file, r.span.clone(), format!("says `{}`", r.value))
                    .also(&fk.file, fk.span.clone(), format!("foreign key to `{}`", fk.ref_table)),
                );
                return None;
            }
            (Some(r), _) => (r.value.clone(), r.span.clone()),
            (None, Some(fk)) if matches!(value, ValuePlan::Id(_)) => (fk.ref_table.clone(), c.span.clone()),
            _ => return None,
        };
        if self.schema.table(&target.0).is_none() {
            let mut d = Diagnostic::error(
                Code::UnknownTable,
                format!("`references = \"{}\"`: no such table in the schema", target.0),
            )
            .at(&file, target.1.clone(), "unknown table");
            if let Some(s) = did_you_mean(&target.0, self.schema.tables.keys().map(String::as_str)) {
                d = d.help(format!("did you mean `{s}`?"));
            }
            self.diags.push(d);
            return None;
        }
        if !self.loaded.contains_key(target.0.as_str()) {
            self.diags.push(
                Diagnostic::error(
                    Code::ReferenceNotLoaded,
                    format!("`{}` references `{}`, which no mapping loads", col.name, target.0),
                )
                .at(&file, target.1.clone(), format!("no mapping has `table = \"{}\"`", target.0))
                .help(format!("add a mapping for `{}`, or drop the reference", target.0)),
            );
            return None;
        }
        if target.0 == table.name && col.not_null {
            self.diags.push(
                Diagnostic::error(
                    Code::TypeMismatch,
                    format!("self-reference `{}` is NOT NULL, so a child cannot load before its parent", col.name),
                )
                .at(&file, target.1.clone(), "self-reference")
                .also(&table.file, col.span.clone(), "NOT NULL here")
                .help("self-references are set in a second pass and must be nullable"),
            );
        }
        if target.0 != table.name {
            self.edges.push((target.0.clone(), file, target.1));
        }
        Some(target.0)
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
fn literal_bson(l: &Literal) -> RawBson {
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

/// The top-level fields a mapping reads, for a server-side projection.
fn projection(
    columns: &[ColumnPlan],
    unwind: Option<&CompiledPath>,
    filter: &[spec::FilterSpec],
) -> Option<Vec<String>> {
    let mut fields = BTreeSet::new();
    fields.insert("_id".to_string());
    let mut paths: Vec<CompiledPath> = columns
        .iter()
        .filter_map(|c| match &c.value {
            ValuePlan::Path(p) | ValuePlan::Id(p) => Some(p.clone()),
            ValuePlan::DefaultOnly => None,
        })
        .filter(|p| p.root() == Root::Document)
        .collect();
    paths.extend(unwind.cloned());
    paths.extend(filter.iter().filter_map(|f| CompiledPath::parse(&f.path.value).ok()));
    for p in paths {
        fields.insert(p.top_field()?.to_string());
    }
    Some(fields.into_iter().collect())
}

/// Two mappings loading one table must not produce the same keys: the
/// second would silently overwrite the first's rows.
fn check_overlaps(specs: &[MappingSpec], diags: &mut Diagnostics) {
    let mut by_table: HashMap<&str, Vec<&MappingSpec>> = HashMap::new();
    for s in specs {
        if let Some(t) = &s.table {
            by_table.entry(t.value.as_str()).or_default().push(s);
        }
    }
    let mut tables: Vec<_> = by_table.into_iter().filter(|(_, v)| v.len() > 1).collect();
    tables.sort_by_key(|(t, _)| *t);
    for (table, group) in tables {
        for (i, a) in group.iter().enumerate() {
            for b in &group[i + 1..] {
                if same_key_space(a, b) && !filters_disjoint(a, b) {
                    let ka = a.key.as_ref().map(|k| k.span.clone()).unwrap_or(0..0);
                    let kb = b.key.as_ref().map(|k| k.span.clone()).unwrap_or(0..0);
                    diags.push(
                        Diagnostic::error(
                            Code::OverlappingKeys,
                            format!("mappings `{}` and `{}` both load `{table}` with the same keys", a.name, b.name),
                        )
                        .at(&b.file, kb, "these keys")
                        .also(&a.file, ka, format!("overlap with `{}`", a.name))
                        .help("give the mappings disjoint filters (e.g. `equals` on a type field), or load one table from one mapping"),
                    );
                }
            }
        }
    }
}

/// Whether two mappings derive their key columns the same way from the same collection.
fn same_key_space(a: &MappingSpec, b: &MappingSpec) -> bool {
    let src = |m: &MappingSpec| m.source.as_ref().map(|s| s.value.clone());
    if src(a) != src(b) || a.unwind.as_ref().map(|u| &u.value) != b.unwind.as_ref().map(|u| &u.value) {
        return false;
    }
    let derivation = |m: &MappingSpec, col: &str| {
        m.columns.iter().find(|c| c.name.value == col).map(|c| match &c.source {
            ValueSource::Path(p) => format!("from {}", p.value),
            ValueSource::Id(p) => format!("id {}", p.value),
            ValueSource::None => "default".into(),
        })
    };
    let Some(key) = &a.key else { return false };
    key.value.iter().all(|k| {
        let da = derivation(a, &k.value);
        da.is_some() && da == derivation(b, &k.value)
    })
}

/// Filters are disjoint when one condition on a path excludes every value
/// the other mapping's condition on the same path accepts.
fn filters_disjoint(a: &MappingSpec, b: &MappingSpec) -> bool {
    use spec::FilterTest as T;
    let accepted = |t: &T| -> Option<Vec<Literal>> {
        match t {
            T::Equals(l) => Some(vec![l.clone()]),
            T::In(ls) => Some(ls.clone()),
            _ => None,
        }
    };
    a.filter.iter().any(|fa| {
        b.filter.iter().filter(|fb| fb.path.value == fa.path.value).any(|fb| match (&fa.test.value, &fb.test.value) {
            (T::Exists(x), T::Exists(y)) => x != y,
            (ta, tb) => match (accepted(ta), accepted(tb)) {
                (Some(va), Some(vb)) => va.iter().all(|v| !vb.contains(v)),
                (Some(va), None) => match tb {
                    T::NotIn(ex) => va.iter().all(|v| ex.contains(v)),
                    T::NotEquals(ex) => va.iter().all(|v| v == ex),
                    _ => false,
                },
                (None, Some(vb)) => match ta {
                    T::NotIn(ex) => vb.iter().all(|v| ex.contains(v)),
                    T::NotEquals(ex) => vb.iter().all(|v| v == ex),
                    _ => false,
                },
                (None, None) => false,
            },
        })
    })
}

/// Orders mappings into stages (Kahn's algorithm, layer by layer); reports
/// every cycle with the references that form it.
fn order(
    mappings: &[MappingPlan],
    edges: &[(usize, String, SourceFile, Range<usize>)],
    diags: &mut Diagnostics,
) -> Vec<Vec<usize>> {
    let n = mappings.len();
    // deps[i]: mappings that must load before mapping i.
    let mut deps: Vec<BTreeSet<usize>> = vec![BTreeSet::new(); n];
    for (i, table, _, _) in edges {
        for (j, m) in mappings.iter().enumerate() {
            if &m.table == table && j != *i {
                deps[*i].insert(j);
            }
        }
    }
    let mut done = vec![false; n];
    let mut stages = Vec::new();
    loop {
        let ready: Vec<usize> = (0..n).filter(|&i| !done[i] && deps[i].iter().all(|&d| done[d])).collect();
        if ready.is_empty() {
            break;
        }
        for &i in &ready {
            done[i] = true;
        }
        stages.push(ready);
    }
    if done.iter().all(|d| *d) {
        return stages;
    }
    // What is left contains cycles: find each one by walking dependencies.
    let mut reported: BTreeSet<Vec<usize>> = BTreeSet::new();
    for start in (0..n).filter(|&i| !done[i]) {
        if let Some(cycle) = find_cycle(start, &deps, &done) {
            let mut canon = cycle.clone();
            canon.sort();
            if !reported.insert(canon) {
                continue;
            }
            let names: Vec<&str> = cycle.iter().chain(cycle.first()).map(|&i| mappings[i].name.as_str()).collect();
            let mut d = Diagnostic::error(Code::DependencyCycle, format!("dependency cycle: {}", names.join(" -> ")))
                .help("one of these references must go, or become a nullable self-reference of a single table");
            for w in cycle.windows(2).chain(std::iter::once(&[cycle[cycle.len() - 1], cycle[0]][..])) {
                let (from, to) = (w[0], w[1]);
                if let Some((_, t, f, s)) = edges.iter().find(|(i, t, _, _)| *i == from && *t == mappings[to].table) {
                    let label = format!("{} references {t}", mappings[from].name);
                    d = if d.primary.is_none() { d.at(f, s.clone(), label) } else { d.also(f, s.clone(), label) };
                }
            }
            diags.push(d);
        }
    }
    // Still give a usable order for what is not in a cycle.
    stages.push((0..n).filter(|&i| !done[i]).collect());
    stages
}

fn find_cycle(start: usize, deps: &[BTreeSet<usize>], done: &[bool]) -> Option<Vec<usize>> {
    let mut path = vec![start];
    let mut seen = vec![start];
    let mut cur = start;
    loop {
        let next = *deps[cur].iter().find(|&&d| !done[d])?;
        if let Some(pos) = path.iter().position(|&p| p == next) {
            return Some(path[pos..].to_vec());
        }
        if seen.contains(&next) {
            return None;
        }
        seen.push(next);
        path.push(next);
        cur = next;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shipped_mappings_compile_cleanly() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let c = compile_dir(&root.join("mappings"), Some(&root.join("schema")));
        assert!(c.diagnostics.is_empty(), "{}", c.diagnostics.render_text(false));
        let plan = c.plan.unwrap();
        assert!(plan.stages.len() >= 2);
        // Every mapping loads after everything it references.
        let mut loaded = BTreeSet::new();
        for stage in &plan.stages {
            for &i in stage {
                for d in &plan.mappings[i].depends_on {
                    assert!(loaded.contains(d.as_str()), "{} before {d}", plan.mappings[i].name);
                }
            }
            for &i in stage {
                loaded.insert(plan.mappings[i].table.as_str());
            }
        }
    }
}

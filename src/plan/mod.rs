//! The compiled plan: every mapping resolved against the schema, with typed
//! columns, compiled paths, and the load order in stages.
//!
//! A `Plan` is what `exec`, `validate` and `rollback` work from; they never
//! see TOML. This module holds the types and their renderings (`plan` command).

use std::fmt::Write as _;
use std::path::PathBuf;

use bson::RawBson;
use serde_json::json;

use crate::lang::expr::ExprRef;
use crate::lang::transform::Transform;
use crate::schema::{Schema, SchemaDefault, SqlType};
use crate::value::cell::Cell;
use crate::value::coerce::CoerceRules;
use crate::value::ids::IdNamespace;
use crate::value::path::CompiledPath;

#[derive(Debug, Clone)]
pub struct Plan {
    /// Mappings in load order (stage by stage).
    pub mappings: Vec<MappingPlan>,
    /// Indices into `mappings`; all mappings of a stage may load at once.
    pub stages: Vec<Vec<usize>>,
    pub schema: Schema,
    pub schema_dir: PathBuf,
    pub namespace: IdNamespace,
}

impl Plan {
    pub fn mapping(&self, name: &str) -> Option<&MappingPlan> {
        self.mappings.iter().find(|m| m.name == name)
    }

    /// The column a referencing column points at: the mapping's natural
    /// key (`"table.column"`), else the schema's foreign key, else the
    /// referenced table's primary key. `None` when it references nothing.
    pub fn referenced_column(&self, m: &MappingPlan, c: &ColumnPlan) -> Option<String> {
        let target = c.references.as_deref()?;
        if let Some(rc) = &c.references_column {
            return Some(rc.clone());
        }
        if let Some(fk) = self.schema.table(&m.table).and_then(|t| t.foreign_key_on(&c.name))
            && let Some(rc) = fk.ref_columns.first()
        {
            return Some(rc.clone());
        }
        Some(self.schema.table(target).and_then(|t| t.primary_key.first().cloned()).unwrap_or_else(|| "id".into()))
    }
}

#[derive(Debug, Clone)]
pub struct MappingPlan {
    pub name: String,
    pub file: PathBuf,
    /// Source collection.
    pub source: String,
    pub table: String,
    pub unwind: Option<CompiledPath>,
    /// For `unwind = "$.obj.*"`: the object whose entries are the rows, so
    /// each row also knows its entry's key (`key = "@"`).
    pub unwind_entries: Option<CompiledPath>,
    /// For the table form with `wrap_scalar` or `split`: the one value
    /// that is made into the array whose elements are the rows.
    pub unwind_shape: Option<UnwindShape>,
    /// Nested unwind levels below `unwind`, outermost first: each takes
    /// apart the element of the level above (`@.benefits[*]`, `@.tiers.*`).
    pub inner_unwinds: Vec<InnerUnwind>,
    /// What a second row with the same key becomes.
    pub on_duplicate: OnDuplicate,
    pub filter: Vec<FilterPlan>,
    pub columns: Vec<ColumnPlan>,
    /// Indices into `columns` of the conflict key.
    pub key: Vec<usize>,
    /// Tables this mapping's rows point at (other than its own).
    pub depends_on: Vec<String>,
    /// Top-level fields the mapping reads; `None` if it may read any.
    pub fields: Option<Vec<String>>,
}

impl MappingPlan {
    pub fn key_names(&self) -> Vec<&str> {
        self.key.iter().map(|&i| self.columns[i].name.as_str()).collect()
    }

    /// Columns that point at the mapping's own table (a tree): they are
    /// loaded in a second pass, once every row of the table exists.
    pub fn self_references(&self) -> impl Iterator<Item = (usize, &ColumnPlan)> {
        self.columns.iter().enumerate().filter(|(_, c)| c.references.as_deref() == Some(self.table.as_str()))
    }
}

/// `on_duplicate`: rows of one run that repeat a key. `Reject` (the
/// default) rejects every row after the first; `First` and `Last` keep one
/// and count the others as `duplicates`, for lookup tables built from
/// repeated values.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum OnDuplicate {
    #[default]
    Reject,
    First,
    Last,
}

impl OnDuplicate {
    /// Every choice and the name it is written with.
    pub const NAMES: &[(OnDuplicate, &str)] =
        &[(OnDuplicate::Reject, "reject"), (OnDuplicate::First, "first"), (OnDuplicate::Last, "last")];

    pub fn parse(s: &str) -> Option<OnDuplicate> {
        Self::NAMES.iter().find(|(_, n)| *n == s).map(|(d, _)| *d)
    }

    pub fn name(self) -> &'static str {
        Self::NAMES.iter().find(|(d, _)| *d == self).map_or("reject", |(_, n)| n)
    }
}

#[derive(Debug, Clone)]
pub struct InnerUnwind {
    /// The level's path, as written (`@.benefits[*]`).
    pub path: CompiledPath,
    /// For `@.obj.*`: the object whose entries are the elements.
    pub entries: Option<CompiledPath>,
}

impl MappingPlan {
    /// A plan that reads a whole collection and maps nothing: what
    /// `scaffold` samples documents through.
    pub fn reading(collection: &str) -> MappingPlan {
        MappingPlan {
            name: collection.to_string(),
            file: PathBuf::new(),
            source: collection.to_string(),
            table: String::new(),
            unwind: None,
            unwind_entries: None,
            unwind_shape: None,
            inner_unwinds: Vec::new(),
            on_duplicate: OnDuplicate::Reject,
            filter: Vec::new(),
            columns: Vec::new(),
            key: Vec::new(),
            depends_on: Vec::new(),
            fields: None,
        }
    }

    /// The top-level fields the mapping reads, for a server-side
    /// projection; `None` when a path may read any field.
    pub fn projection(&self) -> Option<Vec<String>> {
        use crate::value::path::Root;
        let mut fields = std::collections::BTreeSet::from(["_id".to_string()]);
        let paths = self
            .columns
            .iter()
            .flat_map(ColumnPlan::paths)
            .chain(self.unwind.as_ref())
            .chain(self.filter.iter().map(|f| &f.path))
            .filter(|p| p.root() == Root::Document);
        for p in paths {
            fields.insert(p.top_field()?.to_string());
        }
        Some(fields.into_iter().collect())
    }

    /// This mapping with only the columns `keep` (by index): the same rows,
    /// fewer values, and a projection that asks for no more than they read.
    pub fn with_columns(&self, keep: &[usize]) -> MappingPlan {
        let mut p = self.clone();
        p.columns = keep.iter().map(|&i| self.columns[i].clone()).collect();
        p.key = self.key.iter().filter_map(|k| keep.iter().position(|i| i == k)).collect();
        p.fields = p.projection();
        p
    }

    /// Columns computed from the document's `_id` alone: together they
    /// find every row one document produced, which is how `sync` replaces
    /// a changed document's rows and deletes a deleted one's (a delete
    /// event carries nothing but the `_id`). Empty when no column is.
    pub fn identity(&self) -> Vec<usize> {
        let from_id =
            |p: &&CompiledPath| p.root() == crate::value::path::Root::Document && p.top_field() == Some("_id");
        self.columns
            .iter()
            .enumerate()
            .filter(|(_, c)| {
                let paths = c.paths();
                !paths.is_empty() && paths.iter().all(from_id) && c.references.as_deref() != Some(self.table.as_str())
            })
            .map(|(i, _)| i)
            .collect()
    }

    /// This mapping reduced to its identity columns, with neither filter
    /// nor unwind: mapping `{_id: X}` through it gives the identity of
    /// document X's rows.
    pub fn identity_plan(&self) -> MappingPlan {
        let mut p = MappingPlan::reading(&self.source);
        p.name = self.name.clone();
        p.table = self.table.clone();
        p.columns = self.identity().into_iter().map(|i| self.columns[i].clone()).collect();
        p
    }

    /// How many unwind levels the mapping has (0 without `unwind`).
    pub fn levels(&self) -> usize {
        usize::from(self.unwind.is_some()) + self.inner_unwinds.len()
    }
}

#[derive(Debug, Clone)]
pub struct UnwindShape {
    /// The value's path (the unwind path without its `[*]`).
    pub base: CompiledPath,
    pub wrap_scalar: bool,
    pub split: Option<String>,
}

impl UnwindShape {
    /// `; split ","; a single value as one element`, for the `plan` command.
    fn text(&self) -> String {
        let mut t = String::new();
        if let Some(sep) = &self.split {
            let _ = write!(t, "; a string split at {sep:?}");
        }
        if self.wrap_scalar {
            t.push_str("; a single value as one element");
        }
        t
    }
}

#[derive(Debug, Clone)]
pub enum DefaultPlan {
    None,
    /// A literal from the mapping, already coerced to the column type.
    Value(Cell<'static>),
    /// The server's clock at load time (`default = "now"`).
    Now,
    /// The schema's own DEFAULT, applied by the server.
    Schema(SchemaDefault),
}

#[derive(Debug, Clone)]
pub struct ColumnPlan {
    pub name: String,
    /// The type values are coerced to (the schema's, or the mapping's `type`).
    pub ty: SqlType,
    /// Where the value comes from (`from`, `id`, …).
    pub value: ExprRef,
    pub required: bool,
    /// NOT NULL in the schema.
    pub not_null: bool,
    pub default: DefaultPlan,
    pub transforms: Vec<Transform>,
    /// `date_format`: how `to_date` reads strings (chrono syntax).
    pub date_format: Option<String>,
    /// `split`: the separator that cuts a string into an array.
    pub split: Option<String>,
    /// `wrap_scalar`: a single value becomes a one-element array.
    pub wrap_scalar: bool,
    pub map: Vec<(String, RawBson)>,
    /// Sentinel values (as read) that mean null: `null_if`.
    pub null_if: Vec<RawBson>,
    /// `map` sources (by their text, as `map` keys) that become null.
    pub map_null: Vec<String>,
    pub references: Option<String>,
    /// The referenced column: the table's key, or a natural key (`"t.c"`).
    pub references_column: Option<String>,
    /// What a reference to a row that is not there becomes.
    pub on_missing: OnMissing,
    /// `time_zone = "$.timezone"`: the path of each row's zone (an IANA
    /// name); a missing or null one leaves `rules.tz`.
    pub tz_path: Option<CompiledPath>,
    pub rules: CoerceRules,
}

/// `on_missing`: a reference whose row is not in the referenced table.
/// `Reject` (the default) rejects the row; `Null` loads it with NULL there,
/// counted as `nulled` and written to the rejects file as a warning.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum OnMissing {
    #[default]
    Reject,
    Null,
}

impl OnMissing {
    pub const NAMES: &[(OnMissing, &str)] = &[(OnMissing::Reject, "reject"), (OnMissing::Null, "null")];

    pub fn parse(s: &str) -> Option<OnMissing> {
        Self::NAMES.iter().find(|(_, n)| *n == s).map(|(d, _)| *d)
    }
}

#[derive(Debug, Clone)]
pub struct FilterPlan {
    pub path: CompiledPath,
    pub test: FilterTest,
}

#[derive(Debug, Clone)]
pub enum FilterTest {
    Equals(RawBson),
    NotEquals(RawBson),
    In(Vec<RawBson>),
    NotIn(Vec<RawBson>),
    Exists(bool),
    /// The value's BSON type is one of these names (`value::types`).
    Type(Vec<String>),
}

/// What a default means, in one place: who fills it (the mapper, or the
/// server), what SQL the server uses, whether an update keeps the stored
/// value, and what the client writes when it copies straight into a table.
impl DefaultPlan {
    /// Filled by the server at load time: the staged value is NULL.
    pub fn by_server(&self) -> bool {
        matches!(self, DefaultPlan::Now | DefaultPlan::Schema(_))
    }

    /// The SQL the server fills a new row's missing value with.
    pub fn server_sql(&self) -> Option<String> {
        match self {
            DefaultPlan::Now | DefaultPlan::Schema(SchemaDefault::Now) => Some("now()".into()),
            DefaultPlan::Schema(SchemaDefault::Constant(v) | SchemaDefault::Expression(v)) => Some(v.clone()),
            DefaultPlan::Value(_) | DefaultPlan::None => None,
        }
    }

    /// Whether an update keeps the stored value when the document has none
    /// (clock and generated values), so a re-run does not rewrite `created_at`.
    pub fn keeps_stored(&self) -> bool {
        matches!(self, DefaultPlan::Now | DefaultPlan::Schema(SchemaDefault::Now | SchemaDefault::Expression(_)))
    }

    /// The value a client copying straight into the table writes for a
    /// missing one (COPY cannot ask the server per row): `Some(None)` when
    /// the mapper already filled it or there is none; `None` when only the
    /// server can compute it (a sequence, a function).
    pub fn client_value(
        &self,
        ty: &SqlType,
        rules: &CoerceRules,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Option<Option<Cell<'static>>> {
        match self {
            DefaultPlan::None | DefaultPlan::Value(_) => Some(None),
            DefaultPlan::Now | DefaultPlan::Schema(SchemaDefault::Now) => match ty {
                SqlType::Date => Some(Some(Cell::Date(now.with_timezone(&rules.tz).date_naive()))),
                SqlType::Timestamp => Some(Some(Cell::Timestamp(now.with_timezone(&rules.tz).naive_local()))),
                SqlType::Timestamptz => Some(Some(Cell::Timestamptz(now))),
                _ => None,
            },
            DefaultPlan::Schema(SchemaDefault::Constant(text)) => {
                crate::value::coerce::sql_constant(text, ty, rules).map(Some)
            }
            DefaultPlan::Schema(SchemaDefault::Expression(_)) => None,
        }
    }
}

impl ColumnPlan {
    /// Every source path the column reads: its expression's, in the order
    /// the expression asks for them, then its zone's (`time_zone = "$.…"`).
    pub fn paths(&self) -> Vec<&CompiledPath> {
        self.value.paths().into_iter().chain(self.tz_path.as_ref()).collect()
    }

    fn source_text(&self) -> String {
        self.value.text()
    }

    /// The steps a value goes through, in order: `trim > lowercase > map[1] > varchar(120)`.
    fn coercion_text(&self) -> String {
        let target = match self.value.yields() {
            Some(y) => y.to_string(),
            None if self.ty.is_temporal() => match &self.tz_path {
                Some(p) => format!("{} (zone from {p}, else {})", self.ty, self.rules.tz),
                None => format!("{} ({})", self.ty, self.rules.tz),
            },
            _ if self.ty.is_json() => {
                format!("{} (ids {:?}, dates {:?})", self.ty, self.rules.json.object_ids, self.rules.json.dates)
                    .to_lowercase()
            }
            _ => self.ty.to_string(),
        };
        let mut steps = Vec::new();
        if !self.null_if.is_empty() {
            steps.push(format!("null_if[{}]", self.null_if.len()));
        }
        steps.extend(self.transforms.iter().map(|t| match (t, &self.date_format) {
            (Transform::ToDate, Some(f)) => format!("to_date({f:?})"),
            _ => t.name().to_string(),
        }));
        if let Some(sep) = &self.split {
            steps.push(format!("split({sep:?})"));
        }
        if self.wrap_scalar {
            steps.push("wrap_scalar".into());
        }
        if !self.map.is_empty() {
            steps.push(format!("map[{}]", self.map.len()));
        }
        if !self.map_null.is_empty() {
            steps.push(format!("map_null[{}]", self.map_null.len()));
        }
        steps.push(target);
        steps.join(" > ")
    }

    fn default_text(&self) -> Option<String> {
        match &self.default {
            DefaultPlan::None => None,
            DefaultPlan::Value(c) => Some(c.to_pg_text().unwrap_or_else(|| "NULL".into())),
            DefaultPlan::Now => Some("now()".into()),
            DefaultPlan::Schema(SchemaDefault::Constant(c)) => Some(format!("{c} (schema)")),
            DefaultPlan::Schema(SchemaDefault::Now) => Some("now() (schema)".into()),
            DefaultPlan::Schema(SchemaDefault::Expression(e)) => Some(format!("{e} (schema)")),
        }
    }
}

impl Plan {
    pub fn render_text(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "{} mappings in {} stages; ids: UUIDv5 in namespace {}",
            self.mappings.len(),
            self.stages.len(),
            self.namespace.0
        );
        for (n, stage) in self.stages.iter().enumerate() {
            let _ = writeln!(out, "\nstage {}:", n + 1);
            for &i in stage {
                let m = &self.mappings[i];
                let _ = write!(out, "  {} : {} -> {}", m.name, m.source, m.table);
                if let Some(u) = &m.unwind {
                    let inner: String = m.inner_unwinds.iter().map(|i| format!(", then per {}", i.path)).collect();
                    let _ = write!(
                        out,
                        " (one row per {u}{}{inner})",
                        m.unwind_shape.as_ref().map_or(String::new(), UnwindShape::text)
                    );
                }
                let dup = match m.on_duplicate {
                    OnDuplicate::Reject => String::new(),
                    d => format!("; a repeated key keeps the {} row", d.name()),
                };
                let _ = writeln!(out, "  key ({}){dup}", m.key_names().join(", "));
                if !m.depends_on.is_empty() {
                    let _ = writeln!(out, "    after: {}", m.depends_on.join(", "));
                }
                for (_, c) in m.self_references() {
                    let _ = writeln!(out, "    self-reference: {} (set in a second pass)", c.name);
                }
                for f in &m.filter {
                    let _ = writeln!(out, "    filter: {} {:?}", f.path, f.test);
                }
                let w = m.columns.iter().map(|c| c.name.len()).max().unwrap_or(0);
                let ws = m.columns.iter().map(|c| c.source_text().len()).max().unwrap_or(0);
                for c in &m.columns {
                    let mut line = format!("    {:w$}  {:ws$}  -> {}", c.name, c.source_text(), c.coercion_text());
                    if c.required {
                        line.push_str("  required");
                    }
                    if let Some(d) = c.default_text() {
                        let _ = write!(line, "  default {d}");
                    }
                    if let Some(r) = &c.references {
                        let _ = write!(line, "  references {r}");
                    }
                    let _ = writeln!(out, "{}", line.trim_end());
                }
            }
        }
        out
    }

    pub fn render_json(&self) -> String {
        let mappings: Vec<_> = self
            .mappings
            .iter()
            .map(|m| {
                json!({
                    "name": m.name,
                    "file": m.file.display().to_string(),
                    "source": m.source,
                    "table": m.table,
                    "key": m.key_names(),
                    "unwind": m.unwind.as_ref().map(|u| u.text().to_string()),
                    "unwind_levels": m.inner_unwinds.iter().map(|i| i.path.text().to_string()).collect::<Vec<_>>(),
                    "on_duplicate": m.on_duplicate.name(),
                    "unwind_shape": m.unwind_shape.as_ref().map(|s| json!({"wrap_scalar": s.wrap_scalar, "split": s.split})),
                    "depends_on": m.depends_on,
                    "fields": m.fields,
                    "filter": m.filter.iter().map(|f| json!({"path": f.path.text(), "test": format!("{:?}", f.test)})).collect::<Vec<_>>(),
                    "columns": m.columns.iter().map(|c| json!({
                        "name": c.name,
                        "source": c.source_text(),
                        "sql_type": c.ty.to_string(),
                        "coercion": c.coercion_text(),
                        "required": c.required,
                        "not_null": c.not_null,
                        "default": c.default_text(),
                        "references": c.references,
                    })).collect::<Vec<_>>(),
                })
            })
            .collect();
        let stages: Vec<Vec<&str>> =
            self.stages.iter().map(|s| s.iter().map(|&i| self.mappings[i].name.as_str()).collect()).collect();
        serde_json::to_string_pretty(&json!({
            "namespace": self.namespace.0.to_string(),
            "stages": stages,
            "mappings": mappings,
        }))
        .unwrap_or_default()
    }

    /// The reference graph in Graphviz: one node per mapping, edges point
    /// at what must load first; stages are ranks.
    pub fn render_dot(&self) -> String {
        // Stages top to bottom, each a labelled cluster; references point
        // from a table down to the stage that loads first.
        let mut out = String::from(
            "digraph finlit_map {\n  rankdir=TB;\n  compound=true;\n  node [shape=box, style=rounded, fontname=\"monospace\"];\n",
        );
        for (n, stage) in self.stages.iter().enumerate() {
            let _ = writeln!(
                out,
                "  subgraph cluster_stage_{} {{\n    label=\"stage {} (loads {})\";\n    style=dashed;",
                n + 1,
                n + 1,
                if n == 0 { "first" } else { "after the stages above" }
            );
            for &i in stage {
                let m = &self.mappings[i];
                let _ = writeln!(out, "    \"{}\" [label=\"{}\\n{} -> {}\"];", m.name, m.name, m.source, m.table);
            }
            out.push_str("  }\n");
        }
        for m in &self.mappings {
            for c in &m.columns {
                let Some(t) = &c.references else { continue };
                for target in self.mappings.iter().filter(|o| &o.table == t) {
                    // Drawn from the loaded-first table, so stages read downwards.
                    let _ = writeln!(out, "  \"{}\" -> \"{}\" [label=\"{}\", dir=back];", target.name, m.name, c.name);
                }
            }
        }
        out.push_str("}\n");
        out
    }
}

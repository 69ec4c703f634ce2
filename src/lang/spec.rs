//! Mapping files as written: TOML parsed into typed structs that keep the
//! span of every key and value, so later stages can point back into the file.
//!
//! This module checks only the shape of the language (known keys, value
//! kinds). It knows nothing of the target schema, JSONPath semantics or BSON:
//! those checks belong to `compile`.

use std::path::{Path, PathBuf};

use toml::Spanned;
use toml::de::{DeTable, DeValue};

use crate::lang::diag::{Code, Diagnostic, Diagnostics, SourceFile, did_you_mean};

/// The project file in a mapping directory; every other `*.toml` is a mapping.
pub const PROJECT_FILE: &str = "finlit-map.toml";

pub use super::syntax::*;

pub const MAPPING_KEYS: &[&str] =
    &["source", "table", "key", "unwind", "on_duplicate", "time_zone", "json", "filter", "columns"];
/// Column options besides its value expression (whose keys `expr` lists).
pub const COLUMN_OPTIONS: &[&str] = &[
    "references",
    "on_missing",
    "required",
    "default",
    "transform",
    "date_format",
    "split",
    "wrap_scalar",
    "encoding",
    "dimensions",
    "point",
    "map",
    "map_null",
    "null_if",
    "type",
    "time_zone",
    "json",
];
pub const PROJECT_KEYS: &[&str] = &["namespace", "schema", "time_zone", "json"];
pub const JSON_KEYS: &[&str] = &["object_ids", "dates"];
pub const UNWIND_KEYS: &[&str] = &["path", "wrap_scalar", "split"];
pub const FILTER_KEYS: &[&str] = &["path", "equals", "not_equals", "in", "not_in", "exists", "type"];

/// Reads a mapping directory: the project file (if any) and every mapping, in
/// file-name order. Problems go to `diags`; a file that cannot be parsed at all
/// is skipped after its diagnostic.
pub fn load_dir(dir: &Path, diags: &mut Diagnostics) -> (ProjectSpec, Vec<MappingSpec>) {
    let mut project = ProjectSpec::default();
    let mut mappings = Vec::new();
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        // The usual cause: run from another directory than the project's.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            diags.push(Diagnostic::error(Code::Io, format!("no mapping directory {} here", dir.display())).help(
                "run from the project root (where mappings/ and schema/ are), or pass the mapping directory as DIR",
            ));
            return (project, mappings);
        }
        Err(e) => {
            diags.push(Diagnostic::error(Code::Io, format!("cannot read mapping directory {}: {e}", dir.display())));
            return (project, mappings);
        }
    };
    let mut paths: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    paths.sort();
    for path in paths {
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) => {
                diags.push(Diagnostic::error(Code::Io, format!("cannot read {}: {e}", path.display())));
                continue;
            }
        };
        let file = SourceFile::new(path.clone(), text);
        if path.file_name().is_some_and(|n| n == PROJECT_FILE) {
            if let Some(p) = parse_project(&file, diags) {
                project = p;
            }
        } else if let Some(m) = parse_mapping(&file, diags) {
            mappings.push(m);
        }
    }
    (project, mappings)
}

/// Parses TOML syntax, reporting a syntax error at its position.
fn parse_toml<'a>(file: &'a SourceFile, diags: &mut Diagnostics) -> Option<Spanned<DeTable<'a>>> {
    match DeTable::parse(&file.text) {
        Ok(t) => Some(t),
        Err(e) => {
            let span = e.span().unwrap_or(0..0);
            diags.push(Diagnostic::error(Code::TomlSyntax, "TOML syntax error").at(
                file,
                span,
                e.message().trim().to_string(),
            ));
            None
        }
    }
}

pub fn parse_project(file: &SourceFile, diags: &mut Diagnostics) -> Option<ProjectSpec> {
    let root = parse_toml(file, diags)?;
    let mut cx = Cx { file, diags };
    let mut p = ProjectSpec { file: Some(file.clone()), ..Default::default() };
    for (k, v) in root.get_ref().iter() {
        match k.get_ref().as_ref() {
            "namespace" => p.namespace = cx.string(v),
            "schema" => p.schema = cx.string(v),
            "time_zone" => p.time_zone = cx.string(v),
            "json" => p.json = cx.json(v),
            other => cx.unknown_key(k, other, PROJECT_KEYS, "the project file"),
        }
    }
    Some(p)
}

pub fn parse_mapping(file: &SourceFile, diags: &mut Diagnostics) -> Option<MappingSpec> {
    let root = parse_toml(file, diags)?;
    let name = file.path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
    let mut cx = Cx { file, diags };
    let mut m = MappingSpec {
        file: file.clone(),
        name,
        source: None,
        table: None,
        key: None,
        unwind: None,
        unwind_shape: UnwindShapeSpec::default(),
        unwind_inner: Vec::new(),
        on_duplicate: None,
        time_zone: None,
        json: JsonSpec::default(),
        filter: Vec::new(),
        columns: Vec::new(),
        columns_span: 0..0,
    };
    let mut saw_columns = false;
    for (k, v) in root.get_ref().iter() {
        match k.get_ref().as_ref() {
            "source" => m.source = cx.string(v),
            "table" => m.table = cx.string(v),
            "key" => m.key = cx.key(v),
            "unwind" => (m.unwind, m.unwind_shape, m.unwind_inner) = cx.unwind(v),
            "on_duplicate" => m.on_duplicate = cx.string(v),
            "time_zone" => m.time_zone = cx.string(v),
            "json" => m.json = cx.json(v),
            "filter" => m.filter = cx.filters(v),
            "columns" => {
                saw_columns = true;
                m.columns_span = k.span();
                m.columns = cx.columns(v);
            }
            other => cx.unknown_key(k, other, MAPPING_KEYS, "a mapping"),
        }
    }
    let whole = 0..0;
    for (key, present) in [("source", m.source.is_some()), ("table", m.table.is_some()), ("key", m.key.is_some())] {
        if !present {
            cx.diags.push(
                Diagnostic::error(Code::MissingKey, format!("mapping `{}` has no `{key}`", m.name))
                    .at(file, whole.clone(), format!("`{key}` is required"))
                    .help(format!("add `{key} = \"...\"` at the top of the file")),
            );
        }
    }
    if !saw_columns {
        cx.diags.push(Diagnostic::error(Code::MissingKey, format!("mapping `{}` has no [columns] table", m.name)).at(
            file,
            whole,
            "no columns",
        ));
    }
    Some(m)
}

/// Walks TOML values, pushing a diagnostic for each shape problem.
struct Cx<'a> {
    file: &'a SourceFile,
    diags: &'a mut Diagnostics,
}

type Val<'i> = Spanned<DeValue<'i>>;
type Key<'i> = Spanned<std::borrow::Cow<'i, str>>;

fn kind(v: &DeValue) -> &'static str {
    match v {
        DeValue::String(_) => "a string",
        DeValue::Integer(_) => "an integer",
        DeValue::Float(_) => "a float",
        DeValue::Boolean(_) => "a boolean",
        DeValue::Datetime(_) => "a date-time",
        DeValue::Array(_) => "an array",
        DeValue::Table(_) => "a table",
    }
}

impl Cx<'_> {
    fn wrong(&mut self, v: &Val, expected: &str) {
        self.diags.push(
            Diagnostic::error(Code::InvalidValue, format!("expected {expected}, found {}", kind(v.get_ref()))).at(
                self.file,
                v.span(),
                format!("expected {expected}"),
            ),
        );
    }

    fn unknown_key(&mut self, k: &Key, name: &str, allowed: &[&str], place: &str) {
        let mut d = Diagnostic::error(Code::UnknownKey, format!("unknown key `{name}` in {place}")).at(
            self.file,
            k.span(),
            "unknown key",
        );
        d = match did_you_mean(name, allowed.iter().copied()) {
            Some(s) => d.help(format!("did you mean `{s}`?")),
            None => d.help(format!("known keys: {}", allowed.join(", "))),
        };
        self.diags.push(d);
    }

    fn string(&mut self, v: &Val) -> Option<Sp<String>> {
        match v.get_ref() {
            DeValue::String(s) => Some(Sp::new(s.to_string(), v.span())),
            _ => {
                self.wrong(v, "a string");
                None
            }
        }
    }

    fn boolean(&mut self, v: &Val) -> Option<Sp<bool>> {
        match v.get_ref() {
            DeValue::Boolean(b) => Some(Sp::new(*b, v.span())),
            _ => {
                self.wrong(v, "a boolean");
                None
            }
        }
    }

    /// One literal or an array of them, each with its own span.
    fn list(&mut self, v: &Val) -> Vec<Sp<Literal>> {
        match v.get_ref() {
            DeValue::Array(a) => a.iter().filter_map(|i| self.literal(i)).collect(),
            _ => self.literal(v).into_iter().collect(),
        }
    }

    fn literal(&mut self, v: &Val) -> Option<Sp<Literal>> {
        literal_of(v.get_ref()).map(|l| Sp::new(l, v.span())).or_else(|| {
            self.wrong(v, "a string, number, boolean, date, array or table");
            None
        })
    }

    fn table<'t, 'i>(&mut self, v: &'t Val<'i>, expected: &str) -> Option<&'t DeTable<'i>> {
        match v.get_ref() {
            DeValue::Table(t) => Some(t),
            _ => {
                self.wrong(v, expected);
                None
            }
        }
    }

    fn key(&mut self, v: &Val) -> Option<Sp<Vec<Sp<String>>>> {
        match v.get_ref() {
            DeValue::String(s) => Some(Sp::new(vec![Sp::new(s.to_string(), v.span())], v.span())),
            DeValue::Array(items) if !items.is_empty() => {
                let cols = items.iter().filter_map(|i| self.string(i)).collect();
                Some(Sp::new(cols, v.span()))
            }
            _ => {
                self.wrong(v, "a column name or a non-empty array of column names");
                None
            }
        }
    }

    /// `unwind = "$.a[*]"`, the table `{ path = "$.a", wrap_scalar = true,
    /// split = "," }`, or nested levels `["$.a.*", "@.b[*]"]`.
    fn unwind(&mut self, v: &Val) -> (Option<Sp<String>>, UnwindShapeSpec, Vec<Sp<String>>) {
        let mut shape = UnwindShapeSpec::default();
        let t = match v.get_ref() {
            DeValue::Table(t) => t,
            DeValue::Array(items) if !items.is_empty() => {
                let mut levels = items.iter().filter_map(|i| self.string(i));
                let first = levels.next();
                return (first, shape, levels.collect());
            }
            DeValue::Array(_) => {
                self.wrong(v, "at least one path");
                return (None, shape, Vec::new());
            }
            _ => return (self.string(v), shape, Vec::new()),
        };
        let mut path = None;
        for (k, val) in t.iter() {
            match k.get_ref().as_ref() {
                "path" => path = self.string(val),
                "wrap_scalar" => shape.wrap_scalar = self.boolean(val),
                "split" => shape.split = self.string(val),
                other => self.unknown_key(k, other, UNWIND_KEYS, "`unwind`"),
            }
        }
        if path.is_none() {
            self.diags.push(
                Diagnostic::error(Code::MissingKey, "`unwind` as a table needs `path`")
                    .at(self.file, v.span(), "no path")
                    .help("write `unwind = { path = \"$.tags\", wrap_scalar = true }`"),
            );
        }
        (path, shape, Vec::new())
    }

    fn json(&mut self, v: &Val) -> JsonSpec {
        let mut j = JsonSpec::default();
        let Some(t) = self.table(v, "a table such as { object_ids = \"hex\", dates = \"iso\" }") else {
            return j;
        };
        for (k, v) in t.iter() {
            match k.get_ref().as_ref() {
                "object_ids" => j.object_ids = self.string(v),
                "dates" => j.dates = self.string(v),
                other => self.unknown_key(k, other, JSON_KEYS, "`json`"),
            }
        }
        j
    }

    fn filters(&mut self, v: &Val) -> Vec<FilterSpec> {
        let items: Vec<&Val> = match v.get_ref() {
            DeValue::Array(a) => a.iter().collect(),
            DeValue::Table(_) => vec![v],
            _ => {
                self.wrong(v, "an array of conditions such as { path = \"$.deleted\", exists = false }");
                return Vec::new();
            }
        };
        items.into_iter().filter_map(|i| self.filter(i)).collect()
    }

    fn filter(&mut self, v: &Val) -> Option<FilterSpec> {
        let t = self.table(v, "a condition table")?;
        let mut path = None;
        let mut test = None;
        for (k, val) in t.iter() {
            let name = k.get_ref().as_ref();
            let parsed = match name {
                "path" => {
                    path = self.string(val);
                    continue;
                }
                "equals" => self.literal(val).map(|l| FilterTest::Equals(l.value)),
                "not_equals" => self.literal(val).map(|l| FilterTest::NotEquals(l.value)),
                "in" | "not_in" => match self.literal(val).map(|l| l.value) {
                    Some(Literal::Array(items)) if name == "in" => Some(FilterTest::In(items)),
                    Some(Literal::Array(items)) => Some(FilterTest::NotIn(items)),
                    Some(_) => {
                        self.wrong(val, "an array");
                        None
                    }
                    None => None,
                },
                "exists" => self.boolean(val).map(|b| FilterTest::Exists(b.value)),
                "type" => match self.literal(val).map(|l| l.value) {
                    Some(Literal::String(t)) => Some(FilterTest::Type(vec![t])),
                    Some(Literal::Array(items)) if items.iter().all(|i| matches!(i, Literal::String(_))) => {
                        Some(FilterTest::Type(
                            items
                                .into_iter()
                                .filter_map(|i| if let Literal::String(t) = i { Some(t) } else { None })
                                .collect(),
                        ))
                    }
                    Some(_) => {
                        self.wrong(val, "a BSON type name or an array of them");
                        None
                    }
                    None => None,
                },
                other => {
                    self.unknown_key(k, other, FILTER_KEYS, "a filter condition");
                    continue;
                }
            };
            if let Some(p) = parsed {
                if test.is_some() {
                    self.diags.push(
                        Diagnostic::error(Code::InvalidValue, "a filter condition has more than one test")
                            .at(self.file, k.span(), "second test")
                            .help("write one condition per test: conditions are combined with AND"),
                    );
                } else {
                    test = Some(Sp::new(p, val.span()));
                }
            }
        }
        match (path, test) {
            (Some(path), Some(test)) => Some(FilterSpec { path, test, span: v.span() }),
            _ => {
                self.diags.push(
                    Diagnostic::error(Code::MissingKey, "a filter condition needs `path` and one test")
                        .at(self.file, v.span(), "incomplete condition")
                        .help("tests: equals, not_equals, in, not_in, exists"),
                );
                None
            }
        }
    }

    fn columns(&mut self, v: &Val) -> Vec<ColumnSpec> {
        let Some(t) = self.table(v, "a table of columns") else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for (k, v) in t.iter() {
            let name = Sp::new(k.get_ref().to_string(), k.span());
            let span = k.span().start..v.span().end.max(k.span().end);
            let mut c = ColumnSpec {
                name,
                source: None,
                references: None,
                on_missing: None,
                required: None,
                default: None,
                transform: Vec::new(),
                date_format: None,
                split: None,
                wrap_scalar: None,
                encoding: None,
                dimensions: None,
                point: None,
                map: Vec::new(),
                null_if: Vec::new(),
                map_null: Vec::new(),
                ty: None,
                time_zone: None,
                time_zone_fallback: None,
                json: JsonSpec::default(),
                span,
            };
            match v.get_ref() {
                DeValue::String(s) => {
                    let key = Sp::new("from".to_string(), v.span());
                    c.source = Some(ExprSpec { key, arg: Sp::new(Literal::String(s.to_string()), v.span()) });
                }
                DeValue::Table(t) => self.column_table(&mut c, t),
                _ => {
                    self.wrong(v, "a JSONPath string or a column table such as { from = \"$.x\" }");
                    continue;
                }
            }
            out.push(c);
        }
        out
    }

    fn column_table(&mut self, c: &mut ColumnSpec, t: &DeTable) {
        for (k, v) in t.iter() {
            match k.get_ref().as_ref() {
                key if crate::lang::expr::kind(key).is_some() => {
                    let Some(arg) = self.literal(v) else { continue };
                    if let Some(first) = &c.source {
                        self.diags.push(
                            Diagnostic::error(
                                Code::InvalidValue,
                                format!("a column takes one source, not both `{}` and `{key}`", first.key.value),
                            )
                            .at(self.file, k.span(), "second source")
                            .help(format!("keep one of {}", crate::lang::expr::keys().join(", "))),
                        );
                    } else {
                        c.source = Some(ExprSpec { key: Sp::new(key.to_string(), k.span()), arg });
                    }
                }
                "references" => c.references = self.string(v),
                "on_missing" => c.on_missing = self.string(v),
                "required" => c.required = self.boolean(v),
                "default" => c.default = self.literal(v),
                "transform" => match v.get_ref() {
                    DeValue::String(s) => c.transform = vec![Sp::new(s.to_string(), v.span())],
                    DeValue::Array(a) => c.transform = a.iter().filter_map(|i| self.string(i)).collect(),
                    _ => self.wrong(v, "a transform name or an array of them"),
                },
                "map" => {
                    if let Some(t) = self.table(v, "a table of `\"source value\" = target value`") {
                        for (mk, mv) in t.iter() {
                            if let Some(l) = self.literal(mv) {
                                c.map.push((Sp::new(mk.get_ref().to_string(), mk.span()), l));
                            }
                        }
                    }
                }
                "date_format" => c.date_format = self.string(v),
                "split" => c.split = self.string(v),
                "wrap_scalar" => c.wrap_scalar = self.boolean(v),
                "encoding" => c.encoding = self.string(v),
                "dimensions" => c.dimensions = self.literal(v),
                "point" => c.point = self.boolean(v),
                "null_if" => c.null_if = self.list(v),
                "map_null" => c.map_null = self.list(v),
                "type" => c.ty = self.string(v),
                // `time_zone = ["$.timezone", "America/New_York"]`: a row's
                // zone from the document, else this one.
                "time_zone" => match v.get_ref() {
                    DeValue::Array(items) if items.len() == 2 => {
                        c.time_zone = self.string(&items[0]);
                        c.time_zone_fallback = self.string(&items[1]);
                    }
                    _ => c.time_zone = self.string(v),
                },
                "json" => c.json = self.json(v),
                other => {
                    let keys: Vec<&str> =
                        crate::lang::expr::keys().into_iter().chain(COLUMN_OPTIONS.iter().copied()).collect();
                    self.unknown_key(k, other, &keys, "a column")
                }
            }
        }
    }
}

fn literal_of(v: &DeValue) -> Option<Literal> {
    Some(match v {
        DeValue::String(s) => Literal::String(s.to_string()),
        DeValue::Integer(i) => Literal::Integer(i64::from_str_radix(i.as_str(), i.radix()).ok()?),
        DeValue::Float(f) => Literal::Float(f.as_str().replace('_', "").parse().ok()?),
        DeValue::Boolean(b) => Literal::Bool(*b),
        DeValue::Datetime(d) => Literal::Datetime(d.to_string()),
        DeValue::Array(a) => Literal::Array(a.iter().map(|i| literal_of(i.get_ref())).collect::<Option<_>>()?),
        DeValue::Table(t) => Literal::Table(
            t.iter().map(|(k, v)| Some((k.get_ref().to_string(), literal_of(v.get_ref())?))).collect::<Option<_>>()?,
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> (Option<MappingSpec>, Diagnostics) {
        let mut d = Diagnostics::default();
        let f = SourceFile::new("m.toml", text);
        (parse_mapping(&f, &mut d), d)
    }

    #[test]
    fn shorthand_and_table_columns() {
        let (m, d) = parse(
            r#"
source = "s"
table = "t"
key = ["a", "b"]
[columns]
a = "$.x"
b = { id = "$._id", references = "t", required = true, default = 3, transform = ["trim"], map = { x = "y" } }
"#,
        );
        assert!(d.is_empty(), "{}", d.render_text(false));
        let m = m.unwrap();
        assert_eq!(m.key.unwrap().value.len(), 2);
        assert_eq!(m.columns.len(), 2);
        assert_eq!(m.columns[0].source.as_ref().map(|e| e.key.value.as_str()), Some("from"));
        assert_eq!(m.columns[1].source.as_ref().map(|e| e.key.value.as_str()), Some("id"));
        assert_eq!(m.columns[1].default.as_ref().unwrap().value, Literal::Integer(3));
        assert_eq!(m.columns[1].map[0].1.value, Literal::String("y".into()));
    }

    #[test]
    fn every_unknown_key_is_reported() {
        let (_, d) = parse(
            r#"
source = "s"
tabel = "t"
key = "a"
[columns]
a = { form = "$.x", requird = true }
"#,
        );
        let codes: Vec<_> = d.iter().map(|d| (d.code, d.help.clone())).collect();
        assert!(codes.contains(&(Code::UnknownKey, Some("did you mean `table`?".into()))));
        assert!(codes.contains(&(Code::UnknownKey, Some("did you mean `from`?".into()))));
        assert!(codes.contains(&(Code::UnknownKey, Some("did you mean `required`?".into()))));
        assert!(codes.iter().any(|(c, _)| *c == Code::MissingKey));
    }

    #[test]
    fn filter_conditions() {
        let (m, d) = parse(
            r#"
source = "s"
table = "t"
key = "a"
filter = [{ path = "$.deleted", exists = false }, { path = "$.kind", in = ["a", "b"] }]
[columns]
a = "$.x"
"#,
        );
        assert!(d.is_empty(), "{}", d.render_text(false));
        let f = m.unwrap().filter;
        assert_eq!(f[0].test.value, FilterTest::Exists(false));
        assert_eq!(f[1].test.value, FilterTest::In(vec![Literal::String("a".into()), Literal::String("b".into())]));
    }
}

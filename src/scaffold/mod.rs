//! Draft mappings from data: documents sampled from a collection, every
//! field's BSON types, presence and shape inferred, and from that a draft
//! mapping (TOML) and a schema migration (DDL) whose types fit every
//! sampled value, so the draft checks and loads its own sample with no
//! reject. Arrays of documents become child tables (`unwind`, `position`),
//! arrays of one scalar type array columns, small objects of scalars
//! flattened columns, anything else `jsonb`; mixed types take the type that
//! holds all of them and say so in a comment.
//!
//! Knows BSON and the mapping language's text; nothing of files,
//! connections or the compiler (the caller checks the draft).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use bson::{RawBsonRef, RawDocument, RawDocumentBuf};

use crate::value::text::bson_kind;

/// Reservoir sampling over a whole collection: every document has the same
/// chance to be in the sample, whatever its position. Deterministic.
pub struct Reservoir {
    pub sample: Vec<RawDocumentBuf>,
    size: usize,
    seen: u64,
    state: u64,
}

impl Reservoir {
    pub fn new(size: usize) -> Reservoir {
        Reservoir {
            sample: Vec::with_capacity(size.min(10_000)),
            size: size.max(1),
            seen: 0,
            state: 0x9e37_79b9_7f4a_7c15,
        }
    }

    pub fn offer(&mut self, doc: RawDocumentBuf) {
        self.seen += 1;
        if self.sample.len() < self.size {
            self.sample.push(doc);
            return;
        }
        // xorshift64*, seeded: the same data gives the same sample.
        self.state ^= self.state >> 12;
        self.state ^= self.state << 25;
        self.state ^= self.state >> 27;
        let r = self.state.wrapping_mul(0x2545_f491_4f6c_dd1d) % self.seen;
        if (r as usize) < self.size {
            self.sample[r as usize] = doc;
        }
    }

    /// Documents offered.
    pub fn seen(&self) -> u64 {
        self.seen
    }
}

/// What was seen of one field across documents (or array elements).
#[derive(Debug, Default, Clone)]
pub struct Field {
    /// Documents (or elements) that have the field, null included.
    pub present: u64,
    /// Values by BSON kind.
    pub kinds: BTreeMap<&'static str, u64>,
    /// Fields of the values that are documents.
    pub doc: Option<Box<Shape>>,
    /// The elements of the values that are arrays.
    pub elements: Option<Box<Field>>,
    /// The longest array seen.
    pub max_len: usize,
}

/// The fields of a set of documents, in the order first seen.
#[derive(Debug, Default, Clone)]
pub struct Shape {
    pub documents: u64,
    pub fields: Vec<(String, Field)>,
}

impl Shape {
    pub fn add(&mut self, doc: &RawDocument) {
        self.documents += 1;
        for (k, v) in doc.iter().flatten() {
            let k = k.as_str();
            let i = match self.fields.iter().position(|(n, _)| n == k) {
                Some(i) => i,
                None => {
                    self.fields.push((k.to_string(), Field::default()));
                    self.fields.len() - 1
                }
            };
            self.fields[i].1.add(v);
        }
    }
}

impl Field {
    fn add(&mut self, v: RawBsonRef<'_>) {
        self.present += 1;
        *self.kinds.entry(bson_kind(v)).or_default() += 1;
        match v {
            RawBsonRef::Document(d) => self.doc.get_or_insert_with(Default::default).add(d),
            RawBsonRef::Array(a) => {
                let el = self.elements.get_or_insert_with(Default::default);
                let mut n = 0;
                for x in a.into_iter().flatten() {
                    n += 1;
                    el.add(x);
                }
                self.max_len = self.max_len.max(n);
            }
            _ => {}
        }
    }

    /// Kinds other than null and undefined.
    fn value_kinds(&self) -> Vec<&'static str> {
        self.kinds.keys().copied().filter(|k| !matches!(*k, "null" | "undefined")).collect()
    }

    fn kinds_text(&self) -> String {
        self.kinds.iter().map(|(k, n)| format!("{k} {n}")).collect::<Vec<_>>().join(", ")
    }
}

/// The SQL type holding every value of these kinds exactly, and a note
/// when the kinds were mixed. `None`: containers, left to the caller.
fn scalar_type(kinds: &[&'static str]) -> Option<(&'static str, bool)> {
    let one = |k: &str| -> Option<&'static str> {
        Some(match k {
            "string" | "symbol" => "text",
            "int32" => "integer",
            "int64" => "bigint",
            "double" => "double precision",
            "decimal128" => "numeric",
            "bool" => "boolean",
            "date" | "timestamp" => "timestamptz",
            "objectId" => "uuid",
            "binary" => "bytea",
            _ => return None,
        })
    };
    match kinds {
        [] => Some(("text", false)),
        [k] => one(k).map(|t| (t, false)),
        _ if kinds.iter().all(|k| matches!(*k, "int32" | "int64")) => Some(("bigint", true)),
        // Integers and doubles (or decimals) together: numeric holds each exactly.
        _ if kinds.iter().all(|k| matches!(*k, "int32" | "int64" | "double" | "decimal128")) => Some(("numeric", true)),
        // Scalars of several kinds: text holds each as its text (ObjectIds as hex).
        _ if kinds.iter().all(|k| one(k).is_some() && *k != "binary") => Some(("text", true)),
        _ => None,
    }
}

/// A column name from a field name: lowercase letters, digits and `_`.
pub fn column_name(field: &str) -> String {
    let mut s: String = field
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_lowercase() } else { '_' })
        .collect::<String>()
        .trim_matches('_')
        .to_string();
    if s.is_empty() || s.starts_with(|c: char| c.is_ascii_digit()) {
        s = format!("f_{s}");
    }
    s
}

/// A path step for a field: `.name`, or `['odd key']`.
fn step(field: &str) -> String {
    let plain = field.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && field.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if plain { format!(".{field}") } else { format!("['{}']", field.replace('\\', "\\\\").replace('\'', "\\'")) }
}

/// A TOML basic string.
fn toml_str(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04X}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn quote(ident: &str) -> String {
    format!("\"{}\"", ident.replace('"', "\"\""))
}

/// One drafted column.
#[derive(Debug, Clone)]
pub struct DraftColumn {
    pub name: String,
    pub sql: String,
    /// The TOML value of the column entry (`"$.a"`, `{ id = "$._id" }`).
    pub value: String,
    pub comment: String,
}

/// One drafted table and its mapping.
#[derive(Debug, Clone)]
pub struct DraftTable {
    pub table: String,
    pub source: String,
    pub unwind: Option<String>,
    pub key: Vec<String>,
    pub columns: Vec<DraftColumn>,
    /// (column, referenced table, referenced column).
    pub references: Vec<(String, String, String)>,
    pub notes: Vec<String>,
}

/// The draft for a collection: its table, then one per array of documents.
pub fn draft(collection: &str, shape: &Shape, seen: u64) -> Vec<DraftTable> {
    let table = column_name(collection);
    let pct = |n: u64, of: u64| (n * 100 + of / 2).checked_div(of).unwrap_or(0);
    let mut main = DraftTable {
        table: table.clone(),
        source: collection.to_string(),
        unwind: None,
        key: vec!["id".into()],
        columns: Vec::new(),
        references: Vec::new(),
        notes: vec![format!("{} documents sampled of {seen}", shape.documents)],
    };
    let mut children = Vec::new();
    let mut used: Vec<String> = Vec::new();
    let mut unique = |name: String| -> String {
        let mut n = name.clone();
        let mut i = 2;
        while used.contains(&n) {
            n = format!("{name}_{i}");
            i += 1;
        }
        used.push(n.clone());
        n
    };
    // The key: `_id`, as a derived UUID when it is an ObjectId.
    let id_field = shape.fields.iter().find(|(n, _)| n == "_id").map(|(_, f)| f);
    let id_kinds = id_field.map(Field::value_kinds).unwrap_or_default();
    let (id_sql, id_value) = match id_kinds.as_slice() {
        ["objectId"] => ("uuid", "{ id = \"$._id\" }".to_string()),
        ["int32"] | ["int64"] | ["int32", "int64"] => ("bigint", "\"$._id\"".to_string()),
        _ => ("text", "\"$._id\"".to_string()),
    };
    main.columns.push(DraftColumn {
        name: unique("id".into()),
        sql: format!("{id_sql} PRIMARY KEY"),
        value: id_value.clone(),
        comment: format!("_id: {}", id_field.map(Field::kinds_text).unwrap_or_default()),
    });
    for (name, f) in shape.fields.iter().filter(|(n, _)| n != "_id") {
        let path = format!("${}", step(name));
        let presence = format!("in {}% of documents", pct(f.present, shape.documents));
        let kinds = f.value_kinds();
        let col = column_name(name);
        // Arrays of documents: a child table.
        if kinds == ["array"]
            && let Some(el) = &f.elements
            && el.value_kinds() == ["document"]
            && let Some(doc) = &el.doc
        {
            children.push(child_table(&table, name, doc, id_sql, &id_value, &presence));
            continue;
        }
        // Arrays of one scalar kind: an array column.
        if kinds == ["array"] {
            let el_kinds = f.elements.as_ref().map(|e| e.value_kinds()).unwrap_or_default();
            if let Some((t, mixed)) = scalar_type(&el_kinds).filter(|(t, _)| *t != "uuid" && *t != "bytea")
                && !el_kinds.is_empty()
            {
                let mixed = if mixed {
                    format!("; mixed elements: {}", f.elements.as_ref().map(|e| e.kinds_text()).unwrap_or_default())
                } else {
                    String::new()
                };
                main.columns.push(DraftColumn {
                    name: unique(col),
                    sql: format!("{t}[]"),
                    value: toml_str(&path),
                    comment: format!("array, up to {} elements, {presence}{mixed}", f.max_len),
                });
                continue;
            }
        }
        // Small objects of single-kind scalars: flattened.
        if kinds == ["document"]
            && let Some(doc) = &f.doc
            && doc.fields.len() <= 12
            && doc.fields.iter().all(|(_, sf)| {
                let k = sf.value_kinds();
                k.len() <= 1 && scalar_type(&k).is_some()
            })
        {
            for (sub, sf) in &doc.fields {
                let (t, _) = scalar_type(&sf.value_kinds()).unwrap_or(("text", false));
                let sub_path = format!("{path}{}", step(sub));
                let value =
                    if t == "uuid" { format!("{{ id = {} }}", toml_str(&sub_path)) } else { toml_str(&sub_path) };
                main.columns.push(DraftColumn {
                    name: unique(format!("{col}_{}", column_name(sub))),
                    sql: t.to_string(),
                    value,
                    comment: format!(
                        "{}: {}, in {}% of documents",
                        sub_path,
                        sf.kinds_text(),
                        pct(sf.present, shape.documents)
                    ),
                });
            }
            continue;
        }
        let (sql, value, note) = match scalar_type(&kinds) {
            // An ObjectId is most likely a reference: its UUID, as `id` derives it everywhere.
            Some(("uuid", _)) => (
                "uuid".to_string(),
                format!("{{ id = {} }}", toml_str(&path)),
                "; an ObjectId: a reference? add `references = \"table\"`".to_string(),
            ),
            Some((t, mixed)) => (
                t.to_string(),
                toml_str(&path),
                if mixed {
                    format!("; mixed types: {}", f.kinds_text())
                } else if kinds.is_empty() {
                    "; only null seen".into()
                } else {
                    String::new()
                },
            ),
            None => ("jsonb".to_string(), toml_str(&path), format!("; {}", f.kinds_text())),
        };
        main.columns.push(DraftColumn { name: unique(col), sql, value, comment: format!("{}{note}", presence) });
    }
    let mut all = vec![main];
    all.extend(children);
    all
}

fn child_table(parent: &str, field: &str, doc: &Shape, id_sql: &str, id_value: &str, presence: &str) -> DraftTable {
    let table = format!("{parent}_{}", column_name(field));
    let parent_col = format!("{parent}_id");
    let mut t = DraftTable {
        table,
        source: String::new(),
        unwind: Some(format!("${}[*]", step(field))),
        key: vec![parent_col.clone(), "position".into()],
        columns: Vec::new(),
        references: vec![(parent_col.clone(), parent.to_string(), "id".into())],
        notes: vec![format!("the elements of `{field}` ({presence}), one row each, in order")],
    };
    let parent_value = match id_value.strip_prefix("{ id = ") {
        Some(_) => format!("{{ id = \"$._id\", references = {} }}", toml_str(parent)),
        None => format!("{{ from = \"$._id\", references = {} }}", toml_str(parent)),
    };
    t.columns.push(DraftColumn {
        name: parent_col,
        sql: format!("{id_sql} NOT NULL"),
        value: parent_value,
        comment: "the parent document".into(),
    });
    t.columns.push(DraftColumn {
        name: "position".into(),
        sql: "integer NOT NULL".into(),
        value: "{ position = { index = \"@\" } }".into(),
        comment: "the element's place in the array".into(),
    });
    let mut used: Vec<String> = t.columns.iter().map(|c| c.name.clone()).collect();
    for (name, f) in &doc.fields {
        let mut col = column_name(name);
        while used.contains(&col) {
            col = format!("{col}_");
        }
        used.push(col.clone());
        let path = format!("@{}", step(name));
        let kinds = f.value_kinds();
        let (sql, value) = match scalar_type(&kinds) {
            Some(("uuid", _)) => ("uuid".to_string(), format!("{{ id = {} }}", toml_str(&path))),
            Some((t, _)) => (t.to_string(), toml_str(&path)),
            None => ("jsonb".to_string(), toml_str(&path)),
        };
        t.columns.push(DraftColumn { name: col, sql, value, comment: f.kinds_text() });
    }
    t
}

impl DraftTable {
    /// The mapping file.
    pub fn toml(&self, source: &str) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "# Drafted by `finlit-map scaffold` from sampled documents: read it, then edit.");
        for n in &self.notes {
            let _ = writeln!(out, "# {n}");
        }
        let _ = writeln!(out, "source = {}", toml_str(source));
        let _ = writeln!(out, "table  = {}", toml_str(&self.table));
        if let Some(u) = &self.unwind {
            let _ = writeln!(out, "unwind = {}", toml_str(u));
        }
        let keys: Vec<String> = self.key.iter().map(|k| toml_str(k)).collect();
        let _ = writeln!(out, "key    = [{}]", keys.join(", "));
        let _ = writeln!(out, "\n[columns]");
        let w = self.columns.iter().map(|c| c.name.len()).max().unwrap_or(0);
        for c in &self.columns {
            let _ = writeln!(out, "{:w$} = {}  # {}", c.name, c.value, c.comment);
        }
        out
    }

    /// The CREATE TABLE statement.
    pub fn ddl(&self) -> String {
        let mut lines: Vec<String> = self.columns.iter().map(|c| format!("    {} {}", quote(&c.name), c.sql)).collect();
        if self.key.len() > 1 {
            lines.push(format!(
                "    PRIMARY KEY ({})",
                self.key.iter().map(|k| quote(k)).collect::<Vec<_>>().join(", ")
            ));
        }
        for (c, t, rc) in &self.references {
            lines.push(format!("    FOREIGN KEY ({}) REFERENCES {} ({})", quote(c), quote(t), quote(rc)));
        }
        format!("CREATE TABLE {} (\n{}\n);\n", quote(&self.table), lines.join(",\n"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bson::{oid::ObjectId, rawdoc};

    #[test]
    fn a_draft_fits_every_sampled_value() {
        let mut shape = Shape::default();
        let a = ObjectId::new();
        shape.add(&rawdoc! { "_id": a, "name": "x", "n": 1, "tags": ["a", "b"], "addr": { "city": "Lima", "zip": 15 },
        "items": [ { "k": 1, "w": 0.5 } ], "mixed": 1, "ref": ObjectId::new(), "odd key": true });
        shape.add(&rawdoc! { "_id": ObjectId::new(), "name": "y", "n": 5_000_000_000_i64, "mixed": "one",
        "items": [], "meta": { "a": [1, { "b": 2 }] } });
        let tables = draft("People", &shape, 2);
        assert_eq!(tables.len(), 2);
        let t = &tables[0];
        let col = |n: &str| t.columns.iter().find(|c| c.name == n).unwrap_or_else(|| panic!("{n}: {t:?}"));
        assert_eq!(t.table, "people");
        assert_eq!((col("id").sql.as_str(), col("id").value.as_str()), ("uuid PRIMARY KEY", "{ id = \"$._id\" }"));
        assert_eq!(col("n").sql, "bigint");
        assert_eq!(col("tags").sql, "text[]");
        assert_eq!(col("addr_city").value, "\"$.addr.city\"");
        assert_eq!(col("mixed").sql, "text");
        assert!(col("mixed").comment.contains("mixed types: int32 1, string 1"));
        assert_eq!(col("ref").value, "{ id = \"$.ref\" }");
        assert_eq!(col("odd_key").value, "\"$['odd key']\"");
        assert_eq!(col("meta").sql, "jsonb");
        let child = &tables[1];
        assert_eq!((child.table.as_str(), child.unwind.as_deref()), ("people_items", Some("$.items[*]")));
        assert!(child.ddl().contains("FOREIGN KEY (\"people_id\") REFERENCES \"people\" (\"id\")"), "{}", child.ddl());
        assert!(t.toml("People").contains("source = \"People\""));
    }

    #[test]
    fn the_reservoir_keeps_a_fixed_size_sample_of_everything() {
        let mut r = Reservoir::new(10);
        for i in 0..1000 {
            r.offer(rawdoc! { "i": i });
        }
        assert_eq!((r.sample.len(), r.seen()), (10, 1000));
        // Not just the first ten.
        assert!(r.sample.iter().any(|d| d.get_i32("i").unwrap() >= 10));
    }
}

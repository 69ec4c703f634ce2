//! One source document through one mapping: filter, unwind, and for every
//! row, every column's value read, transformed, mapped, defaulted and coerced.
//!
//! The same code serves `run`, `run --dry-run` and `validate`, so what is
//! checked is exactly what is loaded. Knows the plan and BSON; nothing of
//! files or the database.

pub mod filter;
pub mod keep;
pub mod unwind;
pub mod value;

use unwind::{Stack, inner_elements, shaped};
use value::{RecentZones, value, value_of};

use bson::{RawBson, RawBsonRef, RawDocument};

use crate::lang::expr::{Level, RowCx};
use crate::plan::MappingPlan;
use crate::value::cell::Cell;
use crate::value::fields::FieldTrie;
use crate::value::path::{CompiledPath, Found, Root};
use crate::value::text::{bson_kind, preview};

/// Why a row was not produced.
#[derive(Debug, Clone, PartialEq)]
pub struct Rejection {
    /// The unwind element's index, for child-table mappings.
    pub element: Option<usize>,
    pub column: Option<String>,
    pub reason: String,
}

/// What one document gave.
#[derive(Debug)]
pub enum RowEvent<'a> {
    Row {
        element: Option<usize>,
        cells: Vec<Cell<'a>>,
    },
    Rejected(Rejection),
    /// Rows not produced: the document did not pass the filter, or a
    /// JSONPath filter in `unwind` dropped these elements.
    Filtered(u64),
    /// The document passed the filter but its unwind array is missing, null
    /// or empty: no row, and the document counts as filtered.
    NoElements,
}

/// Counts per column, for `--dry-run`.
#[derive(Debug, Default, Clone)]
pub struct ColumnStats {
    pub nulls: u64,
    pub defaults: u64,
}

/// Where a column's (or the unwind's) value is found for one row.
#[derive(Debug, Clone, Copy)]
enum Src {
    /// A slot of the document's one-pass extraction; `true` for `path[*]`.
    Doc(usize, bool),
    /// A slot of the unwind element's extraction.
    Elem(usize, bool),
    /// A general JSONPath, evaluated on its own.
    General,
    None,
}

/// Maps documents for one mapping plan.
pub struct RowMapper<'p> {
    plan: &'p MappingPlan,
    pub stats: Vec<ColumnStats>,
    doc_fields: FieldTrie,
    elem_fields: FieldTrie,
    /// Per column, where each path its expression reads is found.
    columns: Vec<Vec<(Src, &'p CompiledPath)>>,
    unwind: Src,
    /// Per column, the zones its rows named lately (`time_zone` from a path).
    zones: Vec<RecentZones>,
    /// Per column, the document scan's slot holding its value, when the
    /// column is a plain path's value as it is (`Expr::is_path`): taken as
    /// `lookup` takes it, without the calls (3% of a load's instructions,
    /// half of it `lookup`'s own, `docs/PERFORMANCE.md`).
    direct: Vec<Option<usize>>,
}

impl<'p> RowMapper<'p> {
    pub fn new(plan: &'p MappingPlan) -> Self {
        let (mut doc_fields, mut elem_fields) = (FieldTrie::default(), FieldTrie::default());
        let mut src = |p: Option<&CompiledPath>| match p.and_then(|p| Some((p.root(), p.fast_segments()?))) {
            // `$` or `@` alone is the document or the element itself:
            // nothing to look up by key.
            Some((_, ([], _))) => Src::General,
            Some((Root::Document, (segs, each))) => Src::Doc(doc_fields.add(segs), each),
            Some((Root::Element, (segs, each))) => Src::Elem(elem_fields.add(segs), each),
            _ if p.is_some() => Src::General,
            _ => Src::None,
        };
        // Each column's expression paths, then its zone's path (if any).
        let columns = plan.columns.iter().map(|c| c.paths().into_iter().map(|p| (src(Some(p)), p)).collect()).collect();
        let unwind = src(plan.unwind.as_ref());
        let direct = plan
            .columns
            .iter()
            .zip(&columns)
            .map(|(c, srcs): (_, &Vec<(Src, &CompiledPath)>)| match srcs.first() {
                Some(&(Src::Doc(slot, false), _)) if c.value.is_path() => Some(slot),
                _ => None,
            })
            .collect();
        RowMapper {
            plan,
            stats: vec![ColumnStats::default(); plan.columns.len()],
            doc_fields,
            elem_fields,
            columns,
            unwind,
            zones: plan.columns.iter().map(|_| RecentZones::default()).collect(),
            direct,
        }
    }

    pub fn plan(&self) -> &MappingPlan {
        self.plan
    }

    /// Calls `emit` for each row (or rejection) the document gives.
    pub fn map<'a>(&mut self, doc: &'a RawDocument, mut emit: impl FnMut(RowEvent<'a>)) {
        let passes = match self.passes_filter(doc) {
            Ok(p) => p,
            Err(reason) => {
                emit(RowEvent::Rejected(Rejection { element: None, column: None, reason }));
                return;
            }
        };
        // One scan of the document serves every plain path; a document the
        // scanner cannot read goes through the general evaluator instead.
        let mut fields = vec![None; self.doc_fields.slots()];
        let scanned = self.doc_fields.is_empty() || self.doc_fields.extract(doc, &mut fields);
        let fields = scanned.then_some(fields);
        let Some(unwind) = &self.plan.unwind else {
            if passes {
                emit(self.row(doc, fields.as_deref(), None));
            } else {
                emit(RowEvent::Filtered(1));
            }
            return;
        };
        // An object's entries (`$.obj.*`): rows borrow each value and know its key.
        if let Some(parent) = &self.plan.unwind_entries {
            match parent.eval(doc, None) {
                Ok(Found::Borrowed(RawBsonRef::Document(obj))) => {
                    if !passes {
                        emit(RowEvent::Filtered(obj.into_iter().count() as u64));
                    } else if obj.is_empty() {
                        emit(RowEvent::NoElements);
                    } else {
                        let mut stack = Stack::default();
                        for (i, entry) in obj.into_iter().enumerate() {
                            match entry {
                                Ok((k, v)) => {
                                    stack.push(v, i, Some(k.as_str()));
                                    self.element(doc, fields.as_deref(), &mut stack, &mut emit);
                                    stack.pop();
                                }
                                Err(e) => emit(malformed(i, e)),
                            }
                        }
                    }
                    return;
                }
                Ok(f) if passes && f.as_ref().is_some_and(is_scalar) => {
                    let v = f.as_ref().map_or("", bson_kind);
                    let reason = format!(
                        "`unwind = \"{}\"` over a {v}: not an object or an array",
                        self.plan.unwind.as_ref().map_or("", |u| u.text())
                    );
                    emit(RowEvent::Rejected(Rejection { element: None, column: None, reason }));
                    return;
                }
                // An array (`.*` is then every element), or nothing: as any unwind.
                Ok(_) | Err(_) => {}
            }
        }
        // A JSONPath filter in the unwind path is evaluated with its count
        // of dropped elements; a plain path comes from the one-pass scan.
        let found = if let Some(shape) = &self.plan.unwind_shape {
            shaped(shape, doc).map(|f| (f, 0))
        } else if unwind.is_filtering() {
            unwind.eval_counting_dropped(doc, &[])
        } else {
            lookup(self.unwind, fields.as_deref(), &[], unwind, doc, &[]).map(|f| (f, 0))
        };
        let (found, dropped) = match found {
            Ok(f) => f,
            // A scalar or a document where the unwind wants an array.
            Err(reason) if passes => {
                emit(RowEvent::Rejected(Rejection { element: None, column: None, reason }));
                return;
            }
            Err(_) => {
                emit(RowEvent::Filtered(0));
                return;
            }
        };
        // Missing or null: no elements. The document is filtered, never silently lost.
        let elements = match found.as_ref() {
            Some(RawBsonRef::Array(a)) => Some(a),
            _ => None,
        };
        if !passes {
            let n = elements.map_or(0, |a| a.into_iter().count());
            emit(RowEvent::Filtered((n + dropped) as u64));
            return;
        }
        let empty = elements.is_none_or(|a| a.is_empty());
        if dropped > 0 {
            emit(RowEvent::Filtered(dropped as u64));
        } else if empty {
            emit(RowEvent::NoElements);
            return;
        }
        match &found {
            // The usual case: the array lives in the document, rows borrow from it.
            Found::Borrowed(RawBsonRef::Array(elements)) => {
                let mut stack = Stack::default();
                for (i, el) in elements.into_iter().enumerate() {
                    match el {
                        Ok(el) => {
                            stack.push(el, i, None);
                            self.element(doc, fields.as_deref(), &mut stack, &mut emit);
                            stack.pop();
                        }
                        Err(e) => emit(malformed(i, e)),
                    }
                }
            }
            // A general JSONPath built the array: rows are copied out of it.
            Found::Owned(RawBson::Array(elements)) => {
                let mut stack = Stack::default();
                let mut owned = |ev: RowEvent<'_>| emit(into_owned(ev));
                for (i, el) in elements.into_iter().enumerate() {
                    match el {
                        Ok(el) => {
                            stack.push(el, i, None);
                            self.element(doc, fields.as_deref(), &mut stack, &mut owned);
                            stack.pop();
                        }
                        Err(e) => owned(malformed(i, e)),
                    }
                }
            }
            _ => {}
        }
    }

    /// The document-level conditions (`$` paths).
    fn passes_filter(&self, doc: &RawDocument) -> Result<bool, String> {
        self.passes(doc, &[], true)
    }

    /// The element-level conditions (`@`, `@1`, … paths) of an unwind
    /// mapping, at its innermost level.
    fn element_passes(&self, doc: &RawDocument, els: &[RawBsonRef<'_>]) -> Result<bool, String> {
        self.passes(doc, els, false)
    }

    fn passes(&self, doc: &RawDocument, els: &[RawBsonRef<'_>], document: bool) -> Result<bool, String> {
        for f in self.plan.filter.iter().filter(|f| (f.path.root() == Root::Document) == document) {
            let found = f.path.eval_in(doc, els)?;
            let v = found.as_ref();
            if !filter::holds(&f.test, v) {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// One unwind element: taken apart by the next level, or (at the
    /// innermost) filtered out, rejected, or its row.
    fn element<'a>(
        &mut self,
        doc: &'a RawDocument,
        fields: Option<&[Option<RawBsonRef<'a>>]>,
        stack: &mut Stack<'a>,
        emit: &mut dyn FnMut(RowEvent<'a>),
    ) {
        let index = stack.at.last().map(|l| l.index);
        if let Some(inner) = self.plan.inner_unwinds.get(stack.els.len() - 1) {
            let (entries, found) = match inner_elements(inner, doc, &stack.els) {
                Ok(f) => f,
                Err(reason) => return emit(RowEvent::Rejected(Rejection { element: index, column: None, reason })),
            };
            match found {
                Some(RawBsonRef::Document(obj)) if entries => {
                    for (i, entry) in obj.into_iter().enumerate() {
                        match entry {
                            Ok((k, v)) => {
                                stack.push(v, i, Some(k.as_str()));
                                self.element(doc, fields, stack, emit);
                                stack.pop();
                            }
                            Err(e) => emit(malformed(i, e)),
                        }
                    }
                }
                Some(RawBsonRef::Array(a)) => {
                    for (i, el) in a.into_iter().enumerate() {
                        match el {
                            Ok(v) => {
                                stack.push(v, i, None);
                                self.element(doc, fields, stack, emit);
                                stack.pop();
                            }
                            Err(e) => emit(malformed(i, e)),
                        }
                    }
                }
                // Missing or null: this element has no elements below it.
                _ => {}
            }
            return;
        }
        emit(match self.element_passes(doc, &stack.els) {
            Ok(true) => self.row(doc, fields, Some(stack)),
            Ok(false) => RowEvent::Filtered(1),
            Err(reason) => RowEvent::Rejected(Rejection { element: index, column: None, reason }),
        })
    }

    fn row<'a>(
        &mut self,
        doc: &'a RawDocument,
        fields: Option<&[Option<RawBsonRef<'a>>]>,
        stack: Option<&Stack<'a>>,
    ) -> RowEvent<'a> {
        let (els, levels): (&[RawBsonRef<'a>], &[Level<'a>]) = match stack {
            Some(s) => (&s.els, &s.at),
            None => (&[], &[]),
        };
        let el = els.last().copied();
        let i = levels.last().map(|l| l.index);
        let mut elem_fields = Vec::new();
        if let Some(RawBsonRef::Document(d)) = el
            && !self.elem_fields.is_empty()
        {
            elem_fields = vec![None; self.elem_fields.slots()];
            if !self.elem_fields.extract(d, &mut elem_fields) {
                return RowEvent::Rejected(Rejection {
                    element: i,
                    column: None,
                    reason: "malformed BSON in the array element".into(),
                });
            }
        }
        let mut cells = Vec::with_capacity(self.plan.columns.len());
        for (ci, col) in self.plan.columns.iter().enumerate() {
            let srcs = &self.columns[ci];
            let zoned;
            let rules = match &col.tz_path {
                None => &col.rules,
                Some(p) => {
                    let zone = srcs
                        .last()
                        .map_or(Ok(Found::Missing), |&(src, p)| lookup(src, fields, &elem_fields, p, doc, els));
                    match zone.and_then(|z| self.zones[ci].rules(p, z.as_ref(), &col.rules)) {
                        Ok(r) => {
                            zoned = r;
                            &zoned
                        }
                        Err(reason) => {
                            return RowEvent::Rejected(Rejection {
                                element: i,
                                column: Some(col.name.clone()),
                                reason,
                            });
                        }
                    }
                }
            };
            let cell = match (self.direct[ci], fields) {
                // `lookup`'s plain path of the document, as `eval` asks for it.
                (Some(slot), Some(f)) => value_of(col, f[slot], &mut self.stats[ci], rules),
                _ => col
                    .value
                    .eval(
                        &mut |n| match srcs.get(n) {
                            Some(&(src, p)) => lookup(src, fields, &elem_fields, p, doc, els),
                            None => Ok(Found::Missing),
                        },
                        &RowCx { levels },
                    )
                    .and_then(|f| value(col, f, &mut self.stats[ci], rules)),
            };
            match cell {
                Ok(c) => cells.push(c),
                Err(reason) => {
                    return RowEvent::Rejected(Rejection { element: i, column: Some(col.name.clone()), reason });
                }
            }
        }
        RowEvent::Row { element: i, cells }
    }
}

/// Neither a container nor null: what an unwind cannot take apart.
fn is_scalar(v: RawBsonRef<'_>) -> bool {
    !matches!(v, RawBsonRef::Array(_) | RawBsonRef::Document(_) | RawBsonRef::Null | RawBsonRef::Undefined)
}

fn malformed(i: usize, e: bson::error::Error) -> RowEvent<'static> {
    RowEvent::Rejected(Rejection { element: Some(i), column: None, reason: format!("malformed BSON: {e}") })
}

fn into_owned(e: RowEvent<'_>) -> RowEvent<'static> {
    match e {
        RowEvent::Row { element, cells } => {
            RowEvent::Row { element, cells: cells.into_iter().map(Cell::into_owned).collect() }
        }
        RowEvent::Rejected(r) => RowEvent::Rejected(r),
        RowEvent::Filtered(n) => RowEvent::Filtered(n),
        RowEvent::NoElements => RowEvent::NoElements,
    }
}

/// A path's value for this row: from the one-pass extraction when the path
/// is plain and the scan succeeded, else from the general evaluator.
fn lookup<'a>(
    src: Src,
    fields: Option<&[Option<RawBsonRef<'a>>]>,
    elem_fields: &[Option<RawBsonRef<'a>>],
    path: &CompiledPath,
    doc: &'a RawDocument,
    els: &[RawBsonRef<'a>],
) -> Result<Found<'a>, String> {
    let el = els.last().copied();
    let pick = |v: Option<RawBsonRef<'a>>, each: bool| match (v, each) {
        (v, true) => path.each(v),
        (Some(v), false) => Ok(Found::Borrowed(v)),
        (None, false) => Ok(Found::Missing),
    };
    match (src, fields) {
        (Src::Doc(slot, each), Some(f)) => pick(f[slot], each),
        (Src::Elem(slot, each), _) if matches!(el, Some(RawBsonRef::Document(_))) => pick(elem_fields[slot], each),
        (Src::None, _) => Ok(Found::Missing),
        _ => path.eval_in(doc, els),
    }
}

/// A short description of a document's `_id`, for rejects and logs.
pub fn doc_id(doc: &RawDocument) -> String {
    match doc.get("_id") {
        Ok(Some(v)) => match v {
            RawBsonRef::ObjectId(o) => o.to_hex(),
            RawBsonRef::String(s) => s.to_string(),
            other => format!("{} {}", bson_kind(other), preview(other)),
        },
        _ => "(no _id)".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compile::compile;
    use crate::lang::diag::{Diagnostics, SourceFile};
    use crate::lang::spec::{ProjectSpec, parse_mapping};
    use crate::schema::Schema;
    use bson::rawdoc;

    pub(super) fn plan(sql: &str, toml: &str) -> MappingPlan {
        let mut d = Diagnostics::default();
        let mut schema = Schema::default();
        schema.add_sql(&SourceFile::new("s.sql", sql), &mut d);
        let spec = parse_mapping(&SourceFile::new("m.toml", toml), &mut d).unwrap();
        let p = compile(&ProjectSpec::default(), &[spec], schema, ".".into(), &mut d);
        assert!(!d.has_errors(), "{}", d.render_text(false));
        p.mappings.into_iter().next().unwrap()
    }

    pub(super) fn rows(m: &MappingPlan, doc: &RawDocument) -> Vec<String> {
        let mut out = Vec::new();
        RowMapper::new(m).map(doc, |e| {
            out.push(match e {
                RowEvent::Row { cells, .. } => {
                    cells.iter().map(|c| c.to_pg_text().unwrap_or_else(|| "NULL".into())).collect::<Vec<_>>().join("|")
                }
                RowEvent::Rejected(r) => {
                    format!("REJECT {:?} {:?}: {}", r.element, r.column, r.reason)
                }
                RowEvent::Filtered(n) => format!("FILTERED {n}"),
                RowEvent::NoElements => "NO ELEMENTS".into(),
            })
        });
        out
    }

    pub(super) const SQL: &str =
        "CREATE TABLE t (id UUID PRIMARY KEY, email VARCHAR(20) NOT NULL, lvl VARCHAR(10) DEFAULT 'x', n INTEGER);
                       CREATE TABLE c (t_id UUID NOT NULL, k TEXT NOT NULL, w NUMERIC(3,2), PRIMARY KEY (t_id, k));";

    #[test]
    fn unwind_gives_one_row_per_element() {
        let m = plan(
            SQL,
            r#"source = "s"
table = "c"
unwind = "$.items[*]"
key = ["t_id", "k"]
[columns]
t_id = { id = "$._id" }
k = "@.k"
w = { from = "@.w", default = 1 }
"#,
        );
        let u = crate::value::ids::IdNamespace::default().derive(RawBsonRef::Int32(9)).unwrap();
        let doc = rawdoc! { "_id": 9, "items": [ { "k": "a", "w": 0.5 }, { "k": "b" }, { "w": 0.1 }, { "k": "c", "w": 1.234 } ] };
        assert_eq!(
            rows(&m, &doc),
            vec![
                format!("{u}|a|0.5"),
                format!("{u}|b|1"),
                "REJECT Some(2) Some(\"k\"): the column is NOT NULL and the document has no value".to_string(),
                "REJECT Some(3) Some(\"w\"): 1.234 has 3 decimal places; numeric(3,2) would round it".to_string(),
            ]
        );
        // Item 6: nothing vanishes. Missing, null or empty: the document is filtered.
        assert_eq!(rows(&m, &rawdoc! { "_id": 9 }), vec!["NO ELEMENTS"]);
        assert_eq!(rows(&m, &rawdoc! { "_id": 9, "items": bson::RawBson::Null }), vec!["NO ELEMENTS"]);
        assert_eq!(rows(&m, &rawdoc! { "_id": 9, "items": [] }), vec!["NO ELEMENTS"]);
        // A scalar or a document where an array should be: rejected with the reason.
        assert_eq!(
            rows(&m, &rawdoc! { "_id": 9, "items": "phone" }),
            vec!["REJECT None None: `$.items[*]` expects an array, but the value is string \"phone\""]
        );
        assert_eq!(
            rows(&m, &rawdoc! { "_id": 9, "items": { "k": "a" } }),
            vec!["REJECT None None: `$.items[*]` expects an array, but the value is document {…}"]
        );
    }

    /// Item 7: elements a JSONPath filter in `unwind` drops are counted as filtered.
    #[test]
    fn unwind_filter_counts_what_it_drops() {
        let m = plan(
            "CREATE TABLE a (id INTEGER NOT NULL, name TEXT NOT NULL, PRIMARY KEY (id, name));",
            r#"source = "s"
table = "a"
unwind = "$.authors[?(@ != '')]"
key = ["id", "name"]
[columns]
id = "$._id"
name = "@"
"#,
        );
        assert_eq!(rows(&m, &rawdoc! { "_id": 1, "authors": ["x", "", "y", ""] }), vec!["FILTERED 2", "1|x", "1|y"]);
        assert_eq!(rows(&m, &rawdoc! { "_id": 2, "authors": ["", ""] }), vec!["FILTERED 2"]);
    }
}

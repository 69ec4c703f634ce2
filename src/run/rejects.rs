//! The rejects file: one JSON line per document (or array element) that
//! could not be loaded, with the mapping, the `_id`, the column, the reason
//! and the document itself as relaxed extended JSON, so nothing is lost and
//! every reject can be fixed and replayed. A document that cannot be shown
//! as JSON (malformed BSON, an unreadable extended-JSON value) keeps its
//! bytes (`raw`: the JSON text; `raw_base64`: BSON) and where it is in the
//! source (`location`: file and byte offset or line).

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use base64::Engine as _;
use bson::Bson;
use serde::Serialize;
use serde_json::{Value, json};

use crate::source::SourceItem;

pub struct RejectsFile {
    path: PathBuf,
    out: Option<BufWriter<File>>,
    /// Continue the file of an interrupted run instead of starting anew.
    append: bool,
    pub written: u64,
    /// Lines written by this run, grouped by mapping, column, severity and
    /// the reason's shape.
    reasons: BTreeMap<(String, Option<String>, bool, String), ReasonCount>,
}

/// How often one kind of reject happened in a run, with the first example.
#[derive(Debug, Clone, Serialize)]
pub struct ReasonCount {
    pub mapping: String,
    pub column: Option<String>,
    /// The reason with its values replaced (`int64 N is out of range for integer`).
    pub reason: String,
    pub count: u64,
    /// The first such line's reason as written, and its `_id`.
    pub example: String,
    pub example_id: Value,
    /// Rows loaded with a caveat (`on_missing = "null"`), not rejects.
    pub warning: bool,
}

/// A reason with the values in it replaced, so rejects of one kind group
/// together: quoted text becomes `"…"`, a number `N`; type names such as
/// `varchar(255)` stay.
pub fn reason_shape(reason: &str) -> String {
    // Quoted values first: they may hold spaces.
    let mut unquoted = String::with_capacity(reason.len());
    let mut chars = reason.chars();
    while let Some(c) = chars.next() {
        if c != '"' {
            unquoted.push(c);
            continue;
        }
        let mut escaped = false;
        for d in chars.by_ref() {
            match d {
                _ if escaped => escaped = false,
                '\\' => escaped = true,
                '"' => break,
                _ => {}
            }
        }
        unquoted.push_str("\"…\"");
    }
    // Then each word that is a value: a number, a date, a UUID, an ObjectId.
    let value = |w: &str| {
        let hex = |w: &str| w.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-');
        let first = w.strip_prefix('-').unwrap_or(w).bytes().next();
        first.is_some_and(|b| b.is_ascii_digit())
            || (w.len() == 36 && w.matches('-').count() == 4 && hex(w))
            || (w.len() == 24 && hex(w))
    };
    unquoted
        .split(' ')
        .map(|word| {
            let core = word.trim_end_matches([',', ';', ':', ')', '.']);
            if value(core) && !core.contains('(') { format!("N{}", &word[core.len()..]) } else { word.to_string() }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

#[derive(Debug, Clone)]
pub struct RejectRecord<'a> {
    pub mapping: &'a str,
    pub collection: &'a str,
    pub element: Option<usize>,
    pub column: Option<&'a str>,
    pub reason: &'a str,
    pub document: Option<&'a SourceItem>,
    /// Where the document is in the source, when known.
    pub location: Option<&'a str>,
    /// The row loaded, with this caveat (a reference set to NULL): the
    /// line says `"severity": "warning"` instead of `"error"`.
    pub warning: bool,
    /// The change event the document came with (`sync`).
    pub event: Option<EventOrigin<'a>>,
}

/// A change event, as a rejects line names it.
#[derive(Debug, Clone, Copy)]
pub struct EventOrigin<'a> {
    /// `insert`, `update`, `replace` or `delete`.
    pub operation: &'a str,
    /// When the server applied it.
    pub cluster_time: Option<&'a str>,
    /// The document's `_id`, for a line without the document (a delete).
    pub id: Option<&'a Bson>,
}

impl RejectsFile {
    /// The file is created on the first reject, so a clean run leaves none.
    pub fn new(path: &Path, append: bool) -> RejectsFile {
        RejectsFile { path: path.to_path_buf(), out: None, append, written: 0, reasons: BTreeMap::new() }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn write(&mut self, r: &RejectRecord<'_>) -> std::io::Result<()> {
        if self.out.is_none() {
            let file = std::fs::OpenOptions::new()
                .create(true)
                .write(true)
                .append(self.append)
                .truncate(!self.append)
                .open(&self.path)?;
            self.out = Some(BufWriter::new(file));
        }
        let b64 = |b: &[u8]| Value::String(base64::engine::general_purpose::STANDARD.encode(b));
        let (mut id, mut doc, mut raw, mut raw_base64) = (Value::Null, Value::Null, None, None);
        match r.document {
            Some(SourceItem::Doc(d)) => match bson::Document::try_from(d.as_ref()) {
                Ok(d) => {
                    doc = Bson::Document(d).into_relaxed_extjson();
                    id = doc.get("_id").cloned().unwrap_or_default();
                }
                Err(_) => {
                    // Malformed inside: keep the bytes, and the `_id` if it can be read.
                    if let Ok(Some(v)) = d.get("_id")
                        && let Ok(b) = Bson::try_from(v)
                    {
                        id = b.into_relaxed_extjson();
                    }
                    raw_base64 = Some(b64(d.as_bytes()));
                }
            },
            Some(SourceItem::Bad(b)) if b.text => {
                raw = Some(Value::String(String::from_utf8_lossy(&b.raw).into_owned()))
            }
            Some(SourceItem::Bad(b)) => raw_base64 = Some(b64(&b.raw)),
            None => {}
        }
        if let (Value::Null, Some(ev)) = (&id, r.event)
            && let Some(i) = ev.id
        {
            id = i.clone().into_relaxed_extjson();
        }
        let mut line = json!({
            "mapping": r.mapping,
            "collection": r.collection,
            "_id": id.clone(),
            "element": r.element,
            "column": r.column,
            "reason": r.reason,
            "severity": if r.warning { "warning" } else { "error" },
            "document": doc,
        });
        if let Value::Object(o) = &mut line {
            if let Some(ev) = r.event {
                o.insert("operation".into(), Value::String(ev.operation.to_string()));
                o.insert("cluster_time".into(), ev.cluster_time.map_or(Value::Null, |t| Value::String(t.to_string())));
            }
            if let Some(at) = r.location {
                o.insert("location".into(), Value::String(at.to_string()));
            }
            if let Some(v) = raw {
                o.insert("raw".into(), v);
            }
            if let Some(v) = raw_base64 {
                o.insert("raw_base64".into(), v);
            }
        }
        if let Some(out) = &mut self.out {
            serde_json::to_writer(&mut *out, &line)?;
            out.write_all(b"\n")?;
        }
        self.written += 1;
        let shape = reason_shape(r.reason);
        let key = (r.mapping.to_string(), r.column.map(str::to_string), r.warning, shape.clone());
        self.reasons
            .entry(key)
            .or_insert_with(|| ReasonCount {
                mapping: r.mapping.to_string(),
                column: r.column.map(str::to_string),
                reason: shape,
                count: 0,
                example: r.reason.to_string(),
                example_id: id,
                warning: r.warning,
            })
            .count += 1;
        Ok(())
    }

    /// The kinds of rejects (and warnings) this run wrote, most frequent
    /// first, at most `top`.
    pub fn summary(&self, top: usize) -> Vec<ReasonCount> {
        let mut all: Vec<ReasonCount> = self.reasons.values().cloned().collect();
        all.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.mapping.cmp(&b.mapping)));
        all.truncate(top);
        all
    }

    pub fn flush(&mut self) -> std::io::Result<()> {
        match &mut self.out {
            Some(o) => o.flush(),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::reason_shape;

    /// Rejects of one kind group together; what tells kinds apart stays.
    #[test]
    fn reasons_group_by_their_shape() {
        let rows = [
            ("int64 3000000000 is out of range for integer", "int64 N is out of range for integer"),
            (
                "string of 300 characters is longer than varchar(255)",
                "string of N characters is longer than varchar(255)",
            ),
            ("string \"12,50\" is not a number", "string \"…\" is not a number"),
            ("string \"a \\\"b\\\"\" is not a number", "string \"…\" is not a number"),
            (
                "double -1.5e3 is not a whole number; integer would round it",
                "double N is not a whole number; integer would round it",
            ),
            ("date 2025-01-15 00:00:00 UTC has a time of day", "date N N UTC has a time of day"),
            ("element 3: int32 7 cannot go into text", "element N: int32 N cannot go into text"),
            (
                "points at a3c1e2f4-8f2b-5c7d-9e1f-6a4b2c8d0e7f, which is not in the referenced table",
                "points at N, which is not in the referenced table",
            ),
            ("points at 507f1f77bcf86cd799439011, which", "points at N, which"),
        ];
        for (reason, shape) in rows {
            assert_eq!(reason_shape(reason), shape, "{reason}");
        }
    }
}

//! The rejects file: one JSON line per document (or array element) that
//! could not be loaded, with the mapping, the `_id`, the column, the reason
//! and the document itself as relaxed extended JSON, so nothing is lost and
//! every reject can be fixed and replayed. A document that cannot be shown
//! as JSON (malformed BSON, an unreadable extended-JSON value) keeps its
//! bytes (`raw`: the JSON text; `raw_base64`: BSON) and where it is in the
//! source (`location`: file and byte offset or line).

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use base64::Engine as _;
use bson::Bson;
use serde_json::{Value, json};

use crate::source::SourceItem;

pub struct RejectsFile {
    path: PathBuf,
    out: Option<BufWriter<File>>,
    /// Continue the file of an interrupted run instead of starting anew.
    append: bool,
    pub written: u64,
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
}

impl RejectsFile {
    /// The file is created on the first reject, so a clean run leaves none.
    pub fn new(path: &Path, append: bool) -> RejectsFile {
        RejectsFile { path: path.to_path_buf(), out: None, append, written: 0 }
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
        let mut line = json!({
            "mapping": r.mapping,
            "collection": r.collection,
            "_id": id,
            "element": r.element,
            "column": r.column,
            "reason": r.reason,
            "severity": if r.warning { "warning" } else { "error" },
            "document": doc,
        });
        if let Value::Object(o) = &mut line {
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
        Ok(())
    }

    pub fn flush(&mut self) -> std::io::Result<()> {
        match &mut self.out {
            Some(o) => o.flush(),
            None => Ok(()),
        }
    }
}

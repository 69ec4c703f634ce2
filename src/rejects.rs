//! The rejects file: one JSON line per document (or array element) that
//! could not be loaded, with the mapping, the `_id`, the column, the reason
//! and the document itself as relaxed extended JSON, so nothing is lost and
//! every reject can be fixed and replayed.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use bson::{Bson, RawDocument};
use serde_json::json;

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
    pub document: Option<&'a RawDocument>,
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
        let (id, doc) = match r.document {
            Some(d) => {
                let b =
                    bson::Document::try_from(d).map(|d| Bson::Document(d).into_relaxed_extjson()).unwrap_or_default();
                (b.get("_id").cloned().unwrap_or_default(), b)
            }
            None => (serde_json::Value::Null, serde_json::Value::Null),
        };
        let line = json!({
            "mapping": r.mapping,
            "collection": r.collection,
            "_id": id,
            "element": r.element,
            "column": r.column,
            "reason": r.reason,
            "document": doc,
        });
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

//! Where documents come from: files (a mongodump directory or extended JSON)
//! or a live MongoDB server. Both yield raw BSON documents one at a time,
//! with a resume position a checkpoint can store and a later run can start
//! from.
//!
//! Knows BSON, files and the MongoDB driver; nothing of mappings' columns or
//! of PostgreSQL.

pub mod changes;
pub mod extjson;
pub mod files;
pub mod mongo;
pub mod strict;
pub mod walk;

use std::path::PathBuf;

use bson::RawDocumentBuf;
use serde::{Deserialize, Serialize};
use thiserror::Error;

pub use extjson::{JsonError, json_to_doc, parse_date_millis};
pub use files::{CollectionFile, DocReader, FileFormat, FileSource, SourceDoc};
pub use mongo::{MongoSource, MongoStream};

use crate::plan::MappingPlan;

#[derive(Debug, Error)]
pub enum SourceError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{path}: truncated document at byte offset {offset}: it declares {declared} bytes, {available} remain")]
    Truncated { path: PathBuf, offset: u64, declared: u32, available: u64 },
    #[error("{path}: corrupt document at byte offset {offset}: {reason}")]
    Corrupt { path: PathBuf, offset: u64, reason: String },
    #[error("{path}:{line}: {reason}")]
    BadJson { path: PathBuf, line: u64, reason: String },
    #[error("{path}: {reason}")]
    Unsupported { path: PathBuf, reason: String },
    #[error("source {path}: {reason}")]
    NotFound { path: PathBuf, reason: String },
    #[error("MongoDB {uri}: {reason}")]
    Mongo { uri: String, reason: String },
}

/// Where to continue reading a collection.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Position {
    /// Files: what `DocReader::position` returns (a byte offset, or the
    /// elements of a JSON array read), with the line there for JSON lines.
    Offset {
        at: u64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        line: Option<u64>,
    },
    /// A live server: documents are read in `_id` order; continue after this
    /// `_id` (relaxed extended JSON).
    AfterId { id: serde_json::Value },
}

/// A part of a collection, in the order a source reads it: the documents
/// after `start` (from the beginning when `None`) up to `end` (to the end
/// when `None`). A collection's ranges follow each other without a gap or
/// an overlap: each one's `end` is the next one's `start`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Range {
    pub start: Option<Position>,
    pub end: Option<Position>,
}

impl Range {
    /// The whole collection.
    pub fn whole() -> Range {
        Range::default()
    }

    /// Consecutive ranges meeting at `cuts`, in source order.
    pub fn between(cuts: Vec<Position>) -> Vec<Range> {
        let mut out = Vec::with_capacity(cuts.len() + 1);
        let mut start = None;
        for cut in cuts {
            out.push(Range { start: start.take(), end: Some(cut.clone()) });
            start = Some(cut);
        }
        out.push(Range { start, end: None });
        out
    }
}

/// When a collection is cut into ranges for several readers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Split {
    /// Files that are large enough; a live collection when its server
    /// reads an `_id` range from its index.
    Auto,
    /// Also a live collection whose server would scan for each range.
    Always,
    /// Never: one reader per collection.
    Never,
}

/// One document as read: BSON, or bytes that are not a readable document
/// (which the run rejects with the reason, keeping the bytes).
#[derive(Debug)]
pub enum SourceItem {
    Doc(RawDocumentBuf),
    Bad(BadDocument),
}

impl SourceItem {
    /// A document as read from BSON bytes: kept only if it is valid BSON
    /// all the way down and at most MongoDB's 100 levels deep; otherwise a
    /// bad document with its bytes and the reason.
    pub fn from_bson(doc: RawDocumentBuf) -> SourceItem {
        match strict::check(doc.as_bytes()) {
            Ok(()) => SourceItem::Doc(doc),
            Err(reason) => SourceItem::Bad(BadDocument { raw: doc.into_bytes(), text: false, reason }),
        }
    }

    /// A document built from a line of JSON: checked the same way, and if
    /// refused, kept as the text it came from.
    pub fn from_json(doc: RawDocumentBuf, text: &[u8]) -> SourceItem {
        match strict::check(doc.as_bytes()) {
            Ok(()) => SourceItem::Doc(doc),
            Err(reason) => SourceItem::Bad(BadDocument { raw: text.to_vec(), text: true, reason }),
        }
    }

    /// The document, for tests and tools that know it is one.
    pub fn unwrap_doc(self) -> RawDocumentBuf {
        match self {
            SourceItem::Doc(d) => d,
            SourceItem::Bad(b) => panic!("not a document: {}", b.reason),
        }
    }
}

/// A document the source could frame but not read.
#[derive(Debug, Clone)]
pub struct BadDocument {
    pub raw: Vec<u8>,
    /// The bytes are text (a JSON line), not BSON.
    pub text: bool,
    pub reason: String,
}

/// A stream of one collection's documents.
pub trait DocStream: Send {
    fn next_doc(&mut self) -> Option<Result<SourceItem, SourceError>>;
    /// Where a later run continues if everything read so far is committed.
    fn position(&self) -> Position;
    /// Where the document last returned is, for a person (file and byte
    /// offset or line); `None` for a live server.
    fn location(&self) -> Option<String> {
        None
    }
    /// A document's bytes, no longer needed, for the stream to read the
    /// next document into (a file source reuses them; others drop them).
    fn recycle(&mut self, _bytes: Vec<u8>) {}
}

impl DocStream for DocReader {
    fn next_doc(&mut self) -> Option<Result<SourceItem, SourceError>> {
        self.next().map(|r| r.map(|d| d.doc))
    }

    fn position(&self) -> Position {
        Position::Offset { at: DocReader::position(self), line: self.line() }
    }

    fn location(&self) -> Option<String> {
        DocReader::location(self)
    }

    fn recycle(&mut self, bytes: Vec<u8>) {
        DocReader::recycle(self, bytes);
    }
}

/// One collection as `list` shows it.
#[derive(Debug, Clone)]
pub struct CollectionInfo {
    pub name: String,
    pub documents: Option<u64>,
    pub kind: String,
}

/// A source of documents, chosen by `--source`.
#[derive(Debug, Clone)]
pub enum Source {
    Files(FileSource),
    Mongo(MongoSource),
}

impl Source {
    /// A live server's change stream positions before a snapshot, by
    /// collection (`None` for files, which have none); `Err` when the
    /// server gives none.
    pub async fn change_stream_positions(
        &self,
        collections: &[String],
    ) -> Option<Result<std::collections::BTreeMap<String, serde_json::Value>, String>> {
        match self {
            Source::Files(_) => None,
            Source::Mongo(m) => Some(m.change_stream_positions(collections).await),
        }
    }

    /// Whether documents arrive whole: files are read whole, while a live
    /// server sends only the fields the mappings read (a projection).
    pub fn whole_documents(&self) -> bool {
        matches!(self, Source::Files(_))
    }

    /// `mongodb://…` or `mongodb+srv://…` is a live server; anything else a path.
    pub async fn open(spec: &str, database: Option<&str>) -> Result<Source, SourceError> {
        if spec.starts_with("mongodb://") || spec.starts_with("mongodb+srv://") {
            Ok(Source::Mongo(MongoSource::connect(spec, database).await?))
        } else {
            Ok(Source::Files(FileSource::open(std::path::Path::new(spec))?))
        }
    }

    /// Starts, on a thread of its own, what `count` and `ranges` will ask of
    /// these mappings' files, so that it overlaps the run's connecting to
    /// the target (a live source is asked when needed).
    pub fn prepare(&self, mappings: &[&MappingPlan]) {
        if let Source::Files(f) = self {
            f.outline_in_background(mappings.iter().map(|m| m.source.clone()).collect());
        }
    }

    /// `prepare` for the names `--collection` gave that are collections,
    /// before the mappings that read them are known (a mapping or table
    /// name is outlined later, by `prepare`).
    pub fn prepare_named(&self, names: &[String]) {
        if let Source::Files(f) = self {
            f.outline_in_background(names.to_vec());
        }
    }

    pub fn has(&self, collection: &str) -> bool {
        match self {
            Source::Files(f) => f.collections.contains_key(collection),
            Source::Mongo(m) => m.collections.iter().any(|c| c == collection),
        }
    }

    /// About how many documents a mapping will read, for progress and
    /// sampling: a live collection's own estimate (its metadata, instant),
    /// not a count, which scans it as long as reading it does; files are
    /// counted exactly (their documents are framed, not parsed).
    pub async fn estimated_count(&self, m: &MappingPlan) -> Option<u64> {
        match self {
            Source::Files(_) => self.count(m).await,
            Source::Mongo(s) => s.estimated_count(&m.source).await.ok(),
        }
    }

    /// Documents a mapping will read (after a filter the server applies).
    pub async fn count(&self, m: &MappingPlan) -> Option<u64> {
        match self {
            Source::Files(f) => f.count(&m.source).and_then(Result::ok),
            Source::Mongo(s) => s.count(&m.source, &mongo::pushdown(m)).await.ok(),
        }
    }

    pub async fn collections(&self) -> Result<Vec<CollectionInfo>, SourceError> {
        match self {
            Source::Files(f) => Ok(f
                .collections
                .iter()
                .map(|(name, c)| CollectionInfo {
                    name: name.clone(),
                    documents: f.count(name).and_then(Result::ok),
                    kind: format!("{:?}", c.format).to_lowercase(),
                })
                .collect()),
            Source::Mongo(s) => {
                let mut out = Vec::new();
                for name in &s.collections {
                    let documents = s.count(name, &bson::Document::new()).await.ok();
                    out.push(CollectionInfo { name: name.clone(), documents, kind: "collection".into() });
                }
                Ok(out)
            }
        }
    }

    /// Opens a mapping's collection at a position. A live stream drives the
    /// driver through `rt`, so the stream can be read from a plain thread.
    pub fn stream(
        &self,
        m: &MappingPlan,
        from: Option<&Position>,
        batch: usize,
        rt: tokio::runtime::Handle,
    ) -> Result<Box<dyn DocStream>, SourceError> {
        self.stream_range(m, from, None, batch, rt)
    }

    /// Whether reading a range again gives the same documents in the same
    /// order: files do; a live server's may have changed since.
    pub fn rereads_exactly(&self) -> bool {
        matches!(self, Source::Files(_))
    }

    /// The same, reading only up to `end` (a range's end).
    pub fn stream_range(
        &self,
        m: &MappingPlan,
        from: Option<&Position>,
        end: Option<&Position>,
        batch: usize,
        rt: tokio::runtime::Handle,
    ) -> Result<Box<dyn DocStream>, SourceError> {
        match self {
            Source::Files(f) => {
                let (skip, line) = match from {
                    Some(Position::Offset { at, line }) => (*at, *line),
                    _ => (0, None),
                };
                let end = match end {
                    Some(Position::Offset { at, .. }) => Some(*at),
                    _ => None,
                };
                let Some(c) = f.collections.get(&m.source) else {
                    return Err(SourceError::NotFound {
                        path: f.root.clone(),
                        reason: format!("no collection `{}`", m.source),
                    });
                };
                Ok(Box::new(DocReader::open(c, skip, line, end)?))
            }
            Source::Mongo(s) => Ok(Box::new(MongoStream::open(s, m, from, end, batch, rt)?)),
        }
    }

    /// A mapping's collection in ranges of about `per_range` documents, in
    /// source order, for several readers at once. Files are cut at document
    /// boundaries by a scan of lengths or line ends (a JSON array is one
    /// range); a live collection between sampled `_id`s. One range when
    /// the collection is smaller, or when the source cannot be cut.
    pub async fn ranges(&self, m: &MappingPlan, per_range: u64, split: Split) -> Result<Vec<Range>, SourceError> {
        let per_range = per_range.max(1);
        if split == Split::Never {
            return Ok(vec![Range::whole()]);
        }
        match self {
            Source::Files(f) => {
                let Some(c) = f.collections.get(&m.source) else { return Ok(vec![Range::whole()]) };
                if c.format == FileFormat::JsonArray {
                    return Ok(vec![Range::whole()]);
                }
                let docs = f.count(&m.source).transpose()?.unwrap_or(0);
                let cuts = f.cuts(&m.source, docs.div_ceil(per_range)).transpose()?.unwrap_or_default();
                Ok(Range::between(cuts.into_iter().map(|(at, line)| Position::Offset { at, line }).collect()))
            }
            Source::Mongo(s) => s.ranges(&m.source, per_range, split == Split::Always).await,
        }
    }

    /// What identifies the collection's current content, stored with each
    /// checkpoint: a run continues only into the same content. A file:
    /// its size, modification time and a hash of its first and last 64 KiB
    /// (a re-export changes at least one). A live collection: its UUID,
    /// which a drop and re-import changes (its documents change all the
    /// time; continuing by `_id` is right for them). `None`: unknown.
    pub fn fingerprint(&self, collection: &str) -> Option<String> {
        match self {
            Source::Files(f) => files::fingerprint(&f.collections.get(collection)?.path).ok(),
            Source::Mongo(m) => m.uuid(collection),
        }
    }

    /// Whether the server applies the mapping's filter (documents it
    /// excludes are then never read).
    pub fn filters_on_server(&self) -> bool {
        matches!(self, Source::Mongo(_))
    }
}

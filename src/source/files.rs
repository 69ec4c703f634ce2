//! File sources: a mongodump directory (`*.bson`) or extended-JSON files
//! (`*.jsonl`/`*.json`: one document a line as mongoexport writes, or one
//! array as Compass exports; canonical, relaxed or legacy).
//!
//! Documents are read one at a time, never a whole collection into memory.
//! A malformed or truncated file is an error naming the file and the byte
//! offset or line.
//!
//! Knows files and BSON; nothing of mappings, plans or PostgreSQL.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use bson::RawDocumentBuf;

pub use super::SourceError;
use super::extjson::{JsonError, json_to_doc};
use super::walk::plausible_length;
use super::{BadDocument, SourceItem};

/// How a collection file is laid out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileFormat {
    /// mongodump: BSON documents back to back.
    Bson,
    /// Extended JSON, one document a line (mongoexport).
    JsonLines,
    /// Extended JSON, one array of documents (Compass export).
    JsonArray,
}

#[derive(Debug, Clone)]
pub struct CollectionFile {
    pub name: String,
    pub path: PathBuf,
    pub format: FileFormat,
}

/// A directory (or single file) of collection files; collection = file stem.
#[derive(Debug, Clone)]
pub struct FileSource {
    pub root: PathBuf,
    pub collections: BTreeMap<String, CollectionFile>,
    /// Each collection's outline, made once by whoever asks first (a run
    /// asks for progress and for ranges, and starts it in the background
    /// while it connects; each reads the whole file). `None`: the pass
    /// failed, and is made again to report why.
    outlines: Arc<BTreeMap<String, OnceLock<Option<Outline>>>>,
}

/// Where a document starts: its byte offset and, in JSON lines, its line.
pub type Start = (u64, Option<u64>);

/// What one pass over a collection file learns without decoding it: its
/// documents, and where some of them start, from which it is cut into
/// ranges.
#[derive(Debug, Default)]
struct Outline {
    /// The file's size when it was read.
    len: u64,
    docs: u64,
    /// The first document starting at or after each multiple of the step
    /// (`mark_step`), at most one per document: its byte offset and, in JSON
    /// lines, its line. Never offset 0 (a range there would be empty).
    marks: Vec<Start>,
}

/// Marks are this far apart at least: a cut lands within 1/8192 of the
/// file after where an even split would put it, and a file of any size
/// keeps at most 8,192 marks.
fn mark_step(len: u64) -> u64 {
    len.div_ceil(8192).max(1)
}

/// Which document starts are marks: the first at or after each multiple
/// of the step, at most one per document. The one rule for every format.
pub(super) struct MarkGrid {
    step: u64,
    next: u64,
}

impl MarkGrid {
    /// A grid for a walk from offset `from`: from the start of a file the
    /// first mark is a step in (never offset 0, a range there would be
    /// empty); from within, at the multiple at or before `from`, so the
    /// walk's first document is marked.
    pub(super) fn from(step: u64, from: u64) -> MarkGrid {
        MarkGrid { step, next: if from == 0 { step } else { from / step * step } }
    }

    /// Whether the document starting at `at` is a mark (and moves on if so).
    pub(super) fn mark(&mut self, at: u64) -> bool {
        let hit = at >= self.next;
        if hit {
            self.next = (at / self.step + 1) * self.step;
        }
        hit
    }
}

/// A JSON line (or what follows a JSON array) with nothing but whitespace:
/// no document.
fn blank(bytes: &[u8]) -> bool {
    bytes.iter().all(u8::is_ascii_whitespace)
}

/// One document and where it starts: a byte offset (BSON) or a line (JSON).
#[derive(Debug)]
pub struct SourceDoc {
    pub doc: SourceItem,
    pub position: u64,
}

impl FileSource {
    /// Opens a dump directory. A mongodump output root holding a single
    /// database directory (`dump/finlit/*.bson`) is accepted too.
    pub fn open(path: &Path) -> Result<FileSource, SourceError> {
        if !path.exists() {
            return Err(SourceError::NotFound {
                path: path.to_path_buf(),
                reason: "no such file or directory (a mongodump or extended-JSON directory, or mongodb://…)".into(),
            });
        }
        if path.is_file() {
            let file = classify(path)?.ok_or_else(|| SourceError::NotFound {
                path: path.to_path_buf(),
                reason: "not a .bson, .json or .jsonl file".into(),
            })?;
            let root = path.parent().unwrap_or(Path::new(".")).to_path_buf();
            return Ok(FileSource::new(root, BTreeMap::from([(file.name.clone(), file)])));
        }
        let mut collections = scan(path)?;
        if collections.is_empty() {
            // mongodump writes DIR/<database>/<collection>.bson.
            let subdirs: Vec<PathBuf> = read_dir(path)?.into_iter().filter(|p| p.is_dir()).collect();
            if let [only] = subdirs.as_slice() {
                collections = scan(only)?;
                if !collections.is_empty() {
                    return Ok(FileSource::new(only.clone(), collections));
                }
            }
            return Err(SourceError::NotFound {
                path: path.to_path_buf(),
                reason: "no collection files (*.bson, *.json, *.jsonl) found".into(),
            });
        }
        Ok(FileSource::new(path.to_path_buf(), collections))
    }

    /// Documents in the collection; `None` when the source does not have it.
    pub fn documents(&self, collection: &str, skip_to: u64) -> Option<Result<DocReader, SourceError>> {
        let f = self.collections.get(collection)?;
        Some(DocReader::open(f, skip_to, None, None))
    }

    fn new(root: PathBuf, collections: BTreeMap<String, CollectionFile>) -> FileSource {
        let outlines = Arc::new(collections.keys().map(|k| (k.clone(), OnceLock::new())).collect());
        FileSource { root, collections, outlines }
    }

    /// The collection's outline, made on first use; `None` when the source
    /// does not have it.
    fn outline(&self, collection: &str) -> Option<Result<&Outline, SourceError>> {
        let (f, cell) = (self.collections.get(collection)?, self.outlines.get(collection)?);
        Some(match cell.get_or_init(|| outline(f).ok()) {
            Some(o) => Ok(o),
            // Made again for its error.
            None => Err(outline(f).err().unwrap_or_else(|| changed_while_read(f))),
        })
    }

    /// Counts documents without decoding them (for progress and `list`),
    /// once per collection.
    pub fn count(&self, collection: &str) -> Option<Result<u64, SourceError>> {
        Some(self.outline(collection)?.map(|o| o.docs))
    }

    /// Where to cut a collection file into about `parts` ranges of equal
    /// size, each cut where a document starts: a byte offset, and in JSON
    /// lines its line. A JSON array is not cut. The file's pass stops at a
    /// header that cannot be right; the last range then ends where the
    /// reader will report it.
    pub fn cuts(&self, collection: &str, parts: u64) -> Option<Result<Vec<Start>, SourceError>> {
        Some(self.outline(collection)?.map(|o| cuts(o, parts)))
    }

    /// Makes the outlines of these collections on a thread of their own,
    /// so that a run's counting and cutting overlaps its connecting to the
    /// target. A JSON array is left to whoever asks (counting it parses it).
    pub fn outline_in_background(&self, collections: Vec<String>) {
        let outlines = Arc::clone(&self.outlines);
        let files: Vec<CollectionFile> = collections
            .iter()
            .filter_map(|c| self.collections.get(c))
            .filter(|f| f.format != FileFormat::JsonArray)
            .cloned()
            .collect();
        if files.is_empty() {
            return;
        }
        std::thread::spawn(move || {
            for f in files {
                if let Some(cell) = outlines.get(&f.name) {
                    cell.get_or_init(|| outline(&f).ok());
                }
            }
        });
    }
}

/// A pass that failed once and then succeeded: the file changed under the
/// run; reported as such rather than with numbers from two different files.
fn changed_while_read(f: &CollectionFile) -> SourceError {
    SourceError::Io {
        path: f.path.clone(),
        source: io::Error::other("the file changed while it was being read; run again"),
    }
}

fn read_dir(path: &Path) -> Result<Vec<PathBuf>, SourceError> {
    let io_err = |source| SourceError::Io { path: path.to_path_buf(), source };
    let mut out: Vec<PathBuf> =
        std::fs::read_dir(path).map_err(io_err)?.filter_map(|e| e.ok().map(|e| e.path())).collect();
    out.sort();
    Ok(out)
}

fn scan(dir: &Path) -> Result<BTreeMap<String, CollectionFile>, SourceError> {
    let mut out = BTreeMap::new();
    for p in read_dir(dir)? {
        if let Some(f) = classify(&p)? {
            if let Some(prev) = out.get(&f.name) {
                let prev: &CollectionFile = prev;
                return Err(SourceError::Unsupported {
                    path: p.clone(),
                    reason: format!(
                        "collection `{}` also comes from {}; keep one file per collection",
                        f.name,
                        prev.path.display()
                    ),
                });
            }
            out.insert(f.name.clone(), f);
        }
    }
    Ok(out)
}

fn classify(p: &Path) -> Result<Option<CollectionFile>, SourceError> {
    let name = p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    if name.ends_with(".gz") {
        return Err(SourceError::Unsupported {
            path: p.to_path_buf(),
            reason: "gzip-compressed dumps are not read directly; gunzip them or run mongodump without --gzip".into(),
        });
    }
    if name.ends_with(".metadata.json") || !p.is_file() {
        return Ok(None);
    }
    let (stem, format) = if let Some(s) = name.strip_suffix(".bson") {
        (s, FileFormat::Bson)
    } else if let Some(s) = name.strip_suffix(".jsonl").or_else(|| name.strip_suffix(".ndjson")) {
        (s, FileFormat::JsonLines)
    } else if let Some(s) = name.strip_suffix(".json") {
        (s, json_layout(p)?)
    } else {
        return Ok(None);
    };
    Ok(Some(CollectionFile { name: stem.to_string(), path: p.to_path_buf(), format }))
}

/// A `.json` file is an array when its first non-blank byte is `[`.
fn json_layout(p: &Path) -> Result<FileFormat, SourceError> {
    let mut f = File::open(p).map_err(|source| SourceError::Io { path: p.to_path_buf(), source })?;
    let mut buf = [0u8; 512];
    let n = f.read(&mut buf).map_err(|source| SourceError::Io { path: p.to_path_buf(), source })?;
    let first = buf[..n].iter().find(|b| !b.is_ascii_whitespace());
    Ok(if first == Some(&b'[') { FileFormat::JsonArray } else { FileFormat::JsonLines })
}

/// One pass over a collection file: its documents, counted by hopping
/// from length header to length header through a large buffer (BSON; small
/// documents are skipped without a system call), by non-blank lines (JSON
/// lines), or by parsing (a JSON array); and its marks.
fn outline(f: &CollectionFile) -> Result<Outline, SourceError> {
    let io_err = |source| SourceError::Io { path: f.path.clone(), source };
    let file = File::open(&f.path).map_err(io_err)?;
    let len = file.metadata().map_err(io_err)?.len();
    let mut out = Outline { len, ..Outline::default() };
    if f.format == FileFormat::JsonArray {
        // Not cut: counted by parsing, without marks.
        let mut r = DocReader::open(f, 0, None, None)?;
        while let Some(d) = r.next_raw_json()? {
            drop(d);
            out.docs += 1;
        }
        return Ok(out);
    }
    let step = mark_step(len);
    let mut grid = MarkGrid::from(step, 0);
    let mut mark = |out: &mut Outline, at: u64, line: Option<u64>| {
        if grid.mark(at) {
            out.marks.push((at, line));
        }
    };
    let mut r = BufReader::with_capacity(1 << 20, file);
    match f.format {
        FileFormat::Bson => {
            let walked = super::walk::walk(&f.path, len, step).map_err(io_err)?;
            out.docs = walked.docs;
            out.marks = walked.marks.into_iter().map(|at| (at, None)).collect();
        }
        FileFormat::JsonLines => {
            let (mut base, mut lines, mut content) = (0u64, 0u64, false);
            loop {
                let buf = r.fill_buf().map_err(io_err)?;
                if buf.is_empty() {
                    break;
                }
                let mut from = 0;
                for i in memchr::memchr_iter(b'\n', buf) {
                    if content || !blank(&buf[from..i]) {
                        out.docs += 1;
                    }
                    content = false;
                    lines += 1;
                    from = i + 1;
                    let start = base + from as u64;
                    if start < len {
                        mark(&mut out, start, Some(lines + 1));
                    }
                }
                content |= !blank(&buf[from..]);
                let n = buf.len();
                base += n as u64;
                r.consume(n);
            }
            if content {
                out.docs += 1;
            }
        }
        FileFormat::JsonArray => {}
    }
    Ok(out)
}

/// The cuts of a file into about `parts` ranges of equal size: for each
/// even split, the first mark at or after it.
fn cuts(o: &Outline, parts: u64) -> Vec<Start> {
    let len = o.len;
    let mut out: Vec<Start> = Vec::new();
    if parts < 2 || len == 0 {
        return out;
    }
    let mut marks = o.marks.iter().peekable();
    for i in 1..parts {
        let target = (u128::from(len) * u128::from(i) / u128::from(parts)) as u64;
        while marks.next_if(|m| m.0 < target).is_some() {}
        let Some(&&m) = marks.peek() else { break };
        if out.last().is_none_or(|l| l.0 < m.0) {
            out.push(m);
        }
    }
    out
}

/// Streams the documents of one collection file.
pub struct DocReader {
    path: PathBuf,
    format: FileFormat,
    reader: BufReader<File>,
    /// Byte offset (BSON) or 1-based line (JSON) of the next document.
    pos: u64,
    /// JSON lines: the byte offset of the next line (its resume position).
    byte: u64,
    /// Where to stop: the byte offset at which the next range begins.
    end: Option<u64>,
    file_len: u64,
    line_buf: Vec<u8>,
    array_started: bool,
    array_done: bool,
    /// Elements of a JSON array consumed so far (its resume position).
    elements: u64,
    /// Where the document last returned starts (byte offset or line).
    last_start: Option<u64>,
    /// The last document's buffer, once used, to read the next BSON document into.
    spare: Option<Vec<u8>>,
}

impl DocReader {
    /// Opens a file at `skip_to`, a `position()` a previous run reached
    /// (with its `line()` for JSON lines: a byte offset and the line there;
    /// without it, a line number as older checkpoints recorded), reading
    /// until the byte offset `end` (BSON and JSON lines) or the end of the file.
    pub fn open(
        f: &CollectionFile,
        skip_to: u64,
        line: Option<u64>,
        end: Option<u64>,
    ) -> Result<DocReader, SourceError> {
        let io_err = |source| SourceError::Io { path: f.path.clone(), source };
        let file = File::open(&f.path).map_err(io_err)?;
        let file_len = file.metadata().map_err(io_err)?.len();
        let mut r = DocReader {
            path: f.path.clone(),
            format: f.format,
            reader: BufReader::with_capacity(1 << 20, file),
            pos: if f.format == FileFormat::Bson { 0 } else { 1 },
            byte: 0,
            end: end.filter(|_| f.format != FileFormat::JsonArray),
            file_len,
            line_buf: Vec::new(),
            array_started: false,
            array_done: false,
            elements: 0,
            last_start: None,
            spare: None,
        };
        if skip_to > 0 {
            match (f.format, line) {
                (FileFormat::Bson, _) => {
                    r.reader.seek(SeekFrom::Start(skip_to)).map_err(io_err)?;
                    r.pos = skip_to;
                }
                (FileFormat::JsonLines, Some(line)) => {
                    r.reader.seek(SeekFrom::Start(skip_to)).map_err(io_err)?;
                    r.byte = skip_to;
                    r.pos = line;
                }
                (FileFormat::JsonLines, None) => {
                    while r.pos < skip_to {
                        r.line_buf.clear();
                        let n = r.reader.read_until(b'\n', &mut r.line_buf).map_err(io_err)?;
                        if n == 0 {
                            break;
                        }
                        r.byte += n as u64;
                        r.pos += 1;
                    }
                }
                (FileFormat::JsonArray, _) => {
                    for _ in 0..skip_to {
                        if r.next_raw_json()?.is_none() {
                            break;
                        }
                    }
                }
            }
        }
        Ok(r)
    }

    /// Where the next document starts, as `open` takes it back: a byte
    /// offset (BSON, JSON lines), or the number of elements consumed (JSON
    /// array). This is what a checkpoint records, with `line()`.
    pub fn position(&self) -> u64 {
        match self.format {
            FileFormat::Bson => self.pos,
            FileFormat::JsonLines => self.byte,
            FileFormat::JsonArray => self.elements,
        }
    }

    /// JSON lines: the line `position()` is at, for messages after a resume.
    pub fn line(&self) -> Option<u64> {
        (self.format == FileFormat::JsonLines).then_some(self.pos)
    }

    /// Whether the range this reader was opened for is read to its end.
    fn at_end(&self) -> bool {
        self.end.is_some_and(|end| self.position() >= end)
    }

    /// Where the document last returned starts, for a person to find it:
    /// `file.bson, byte offset 1052` or `file.jsonl:12`.
    pub fn location(&self) -> Option<String> {
        let at = self.last_start?;
        Some(match self.format {
            FileFormat::Bson => format!("{}, byte offset {at}", self.path.display()),
            _ => format!("{}:{at}", self.path.display()),
        })
    }

    fn io(&self, source: io::Error) -> SourceError {
        SourceError::Io { path: self.path.clone(), source }
    }

    fn next_bson(&mut self) -> Result<Option<SourceDoc>, SourceError> {
        let offset = self.pos;
        let mut header = [0u8; 4];
        let mut got = 0;
        while got < 4 {
            let n = self.reader.read(&mut header[got..]).map_err(|e| self.io(e))?;
            if n == 0 {
                break;
            }
            got += n;
        }
        if got == 0 {
            return Ok(None);
        }
        if got < 4 {
            return Err(SourceError::Truncated { path: self.path.clone(), offset, declared: 4, available: got as u64 });
        }
        let declared = u32::from_le_bytes(header);
        if !plausible_length(declared) {
            return Err(SourceError::Corrupt {
                path: self.path.clone(),
                offset,
                reason: format!("impossible document length {declared}"),
            });
        }
        let available = self.file_len.saturating_sub(offset);
        if u64::from(declared) > available {
            return Err(SourceError::Truncated { path: self.path.clone(), offset, declared, available });
        }
        // Read into spare capacity: zeroing the buffer first would touch
        // every byte twice.
        let mut bytes = self.spare.take().unwrap_or_default();
        bytes.clear();
        bytes.reserve(declared as usize);
        bytes.extend_from_slice(&header);
        let rest = u64::from(declared) - 4;
        // Most documents are whole in the reader's buffer: copied at once,
        // without `read_to_end`'s probing.
        let buffered = self.reader.buffer();
        let got = if buffered.len() as u64 >= rest {
            bytes.extend_from_slice(&buffered[..rest as usize]);
            self.reader.consume(rest as usize);
            rest as usize
        } else {
            (&mut self.reader).take(rest).read_to_end(&mut bytes).map_err(|e| self.io(e))?
        };
        if got as u64 != rest {
            return Err(SourceError::Truncated {
                path: self.path.clone(),
                offset,
                declared,
                available: 4 + got as u64,
            });
        }
        if bytes[bytes.len() - 1] != 0 {
            return Err(SourceError::Corrupt {
                path: self.path.clone(),
                offset,
                reason: "document does not end with a NUL byte".into(),
            });
        }
        self.pos += u64::from(declared);
        let doc = RawDocumentBuf::from_bytes(bytes).map_err(|e| SourceError::Corrupt {
            path: self.path.clone(),
            offset,
            reason: e.to_string(),
        })?;
        Ok(Some(SourceDoc { doc: SourceItem::from_bson(doc), position: offset }))
    }

    /// Keeps a used document's buffer to read the next BSON document
    /// into, unless a large document left it large.
    pub fn recycle(&mut self, bytes: Vec<u8>) {
        const LARGEST: usize = 64 * 1024;
        if self.format == FileFormat::Bson && bytes.capacity() <= LARGEST {
            self.spare = Some(bytes);
        }
    }

    fn next_json_line(&mut self) -> Result<Option<SourceDoc>, SourceError> {
        loop {
            // Blank lines are skipped here: the range may end after one.
            if self.at_end() {
                return Ok(None);
            }
            self.line_buf.clear();
            let n = self.reader.read_until(b'\n', &mut self.line_buf).map_err(|e| self.io(e))?;
            if n == 0 {
                return Ok(None);
            }
            let line = self.pos;
            self.pos += 1;
            self.byte += n as u64;
            if blank(&self.line_buf) {
                continue;
            }
            let doc = json_item(&self.line_buf, &self.path, line)?;
            return Ok(Some(SourceDoc { doc, position: line }));
        }
    }

    /// The bytes of the next element of a top-level JSON array, found by
    /// tracking strings and nesting, so the array is never held whole.
    fn next_raw_json(&mut self) -> Result<Option<Vec<u8>>, SourceError> {
        // Split the borrows: the reader's buffer is read while positions change.
        let DocReader { path, reader, pos, array_started, array_done, .. } = self;
        if *array_done {
            return Ok(None);
        }
        let bad =
            |line: u64, reason: &str| SourceError::BadJson { path: path.clone(), line, reason: reason.to_string() };
        let mut out = Vec::new();
        let mut depth = 0usize;
        let (mut in_str, mut escaped) = (false, false);
        loop {
            let buf = reader.fill_buf().map_err(|source| SourceError::Io { path: path.clone(), source })?;
            if buf.is_empty() {
                return Err(bad(*pos, "the JSON array ends early (truncated file?)"));
            }
            let mut used = 0;
            let mut finished = false;
            for &b in buf {
                used += 1;
                if b == b'\n' {
                    *pos += 1;
                }
                if !*array_started {
                    if b == b'[' {
                        *array_started = true;
                    } else if !b.is_ascii_whitespace() {
                        return Err(bad(*pos, "expected a JSON array"));
                    }
                    continue;
                }
                if in_str {
                    out.push(b);
                    if escaped {
                        escaped = false;
                    } else if b == b'\\' {
                        escaped = true;
                    } else if b == b'"' {
                        in_str = false;
                    }
                    continue;
                }
                match b {
                    b'"' => {
                        in_str = true;
                        out.push(b);
                    }
                    b'{' | b'[' => {
                        depth += 1;
                        out.push(b);
                    }
                    b'}' | b']' if depth > 0 => {
                        depth -= 1;
                        out.push(b);
                    }
                    b']' => {
                        *array_done = true;
                        finished = true;
                        break;
                    }
                    b',' if depth == 0 => {
                        finished = true;
                        break;
                    }
                    _ => out.push(b),
                }
            }
            reader.consume(used);
            if finished && *array_done {
                // Nothing but blanks may follow the array: text after it is
                // data nobody would load, or a second array concatenated.
                let at = *pos;
                let mut rest = Vec::new();
                reader.read_to_end(&mut rest).map_err(|source| SourceError::Io { path: path.clone(), source })?;
                if let Some(i) = rest.iter().position(|b| !b.is_ascii_whitespace()) {
                    let line = at + rest[..i].iter().filter(|&&b| b == b'\n').count() as u64;
                    return Err(bad(line, "text after the end of the JSON array"));
                }
            }
            if finished {
                return Ok(if blank(&out) && *array_done { None } else { Some(out) });
            }
        }
    }

    fn next_json_array(&mut self) -> Result<Option<SourceDoc>, SourceError> {
        let line = self.pos;
        let Some(bytes) = self.next_raw_json()? else {
            return Ok(None);
        };
        self.elements += 1;
        let doc = json_item(&bytes, &self.path, line)?;
        Ok(Some(SourceDoc { doc, position: line }))
    }
}

impl Iterator for DocReader {
    type Item = Result<SourceDoc, SourceError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.at_end() {
            return None;
        }
        let r = match self.format {
            FileFormat::Bson => self.next_bson(),
            FileFormat::JsonLines => self.next_json_line(),
            FileFormat::JsonArray => self.next_json_array(),
        };
        if let Ok(Some(d)) = &r {
            self.last_start = Some(d.position);
        }
        r.transpose()
    }
}

/// One JSON document: broken JSON stops the read (the line is named); a
/// well-formed document with an unreadable value becomes a bad document.
fn json_item(bytes: &[u8], path: &Path, line: u64) -> Result<SourceItem, SourceError> {
    match json_to_doc(bytes) {
        Ok(d) => Ok(SourceItem::from_json(d, String::from_utf8_lossy(bytes).trim().as_bytes())),
        Err(JsonError::Syntax(reason)) => Err(SourceError::BadJson { path: path.to_path_buf(), line, reason }),
        Err(JsonError::Value(reason)) => Ok(SourceItem::Bad(BadDocument {
            raw: String::from_utf8_lossy(bytes).trim().as_bytes().to_vec(),
            text: true,
            reason,
        })),
    }
}

/// Size, modification time and SHA-256 of the first and last 64 KiB.
pub fn fingerprint(path: &Path) -> std::io::Result<String> {
    use sha2::{Digest, Sha256};
    const EDGE: u64 = 64 * 1024;
    let mut f = File::open(path)?;
    let meta = f.metadata()?;
    let len = meta.len();
    let mtime =
        meta.modified().ok().and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok()).map_or(0, |d| d.as_nanos());
    let mut hash = Sha256::new();
    let mut buf = vec![0; EDGE.min(len) as usize];
    f.read_exact(&mut buf)?;
    hash.update(&buf);
    if len > EDGE {
        let start = (len - EDGE).max(EDGE);
        f.seek(SeekFrom::Start(start))?;
        buf.clear();
        f.take(EDGE).read_to_end(&mut buf)?;
        hash.update(&buf);
    }
    let digest: String = hash.finalize().iter().take(12).map(|b| format!("{b:02x}")).collect();
    Ok(format!("size {len}, modified {mtime}, sha256 {digest}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use bson::{doc, oid::ObjectId};
    use std::io::Write;

    fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
        let p = dir.join(name);
        File::create(&p).unwrap().write_all(bytes).unwrap();
        p
    }

    fn ids(src: &FileSource, coll: &str) -> Result<Vec<i32>, SourceError> {
        src.documents(coll, 0).unwrap()?.map(|d| d.map(|d| d.doc.unwrap_doc().get_i32("n").unwrap())).collect()
    }

    #[test]
    fn reads_bson_lines_and_arrays() {
        let dir = tempfile::tempdir().unwrap();
        let mut bson = Vec::new();
        for n in 0..3 {
            bson.extend(bson::serialize_to_vec(&doc! { "_id": ObjectId::new(), "n": n }).unwrap());
        }
        write(dir.path(), "a.bson", &bson);
        write(dir.path(), "a.metadata.json", b"{}");
        write(
            dir.path(),
            "b.jsonl",
            b"{\"n\": {\"$numberInt\": \"0\"}, \"d\": {\"$date\": \"1960-01-01T00:00:00Z\"}}\n\n{\"n\": 1, \"x\": \"a]b,c\"}\n",
        );
        write(dir.path(), "c.json", b" [ {\"n\": 0, \"s\": \"}]\\\"\"},\n {\"n\": 1, \"a\": [1,{\"b\":2}]} ]\n");
        let src = FileSource::open(dir.path()).unwrap();
        assert_eq!(src.collections.keys().collect::<Vec<_>>(), ["a", "b", "c"]);
        assert_eq!(ids(&src, "a").unwrap(), vec![0, 1, 2]);
        assert_eq!(ids(&src, "b").unwrap(), vec![0, 1]);
        assert_eq!(ids(&src, "c").unwrap(), vec![0, 1]);
        for c in ["a", "b", "c"] {
            let n = ids(&src, c).unwrap().len() as u64;
            assert_eq!(src.count(c).unwrap().unwrap(), n, "{c}");
        }
    }

    #[test]
    fn truncated_bson_names_file_and_offset() {
        let dir = tempfile::tempdir().unwrap();
        let one = bson::serialize_to_vec(&doc! { "n": 1 }).unwrap();
        let mut bytes = one.clone();
        bytes.extend(&one[..one.len() - 3]);
        write(dir.path(), "t.bson", &bytes);
        let src = FileSource::open(dir.path()).unwrap();
        let err = ids(&src, "t").unwrap_err().to_string();
        assert!(err.contains("t.bson") && err.contains(&format!("byte offset {}", one.len())), "{err}");
    }

    #[test]
    fn bad_json_names_file_and_line() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "j.jsonl", b"{\"n\": 1}\n{\"n\": 2\n");
        let src = FileSource::open(dir.path()).unwrap();
        let err = ids(&src, "j").unwrap_err().to_string();
        assert!(err.contains("j.jsonl:2:"), "{err}");
    }

    /// Reads every range of a file, resuming each after its first document
    /// as a checkpoint would: every document once, in order.
    fn read_ranges(src: &FileSource, c: &str, parts: u64) -> Vec<i32> {
        let f = &src.collections[c];
        let cuts = src.cuts(c, parts).unwrap().unwrap();
        let mut bounds: Vec<Start> = vec![(0, None)];
        bounds.extend(cuts.iter().copied());
        let mut out = Vec::new();
        for (i, &(at, line)) in bounds.iter().enumerate() {
            let end = bounds.get(i + 1).map(|b| b.0);
            let mut r = DocReader::open(f, at, line, end).unwrap();
            // One document, then continue from the position a checkpoint records.
            let Some(first) = r.next() else { continue };
            out.push(first.unwrap().doc.unwrap_doc().get_i32("n").unwrap());
            let (pos, line) = (r.position(), r.line());
            let r = DocReader::open(f, pos, line, end).unwrap();
            for d in r {
                out.push(d.unwrap().doc.unwrap_doc().get_i32("n").unwrap());
            }
        }
        out
    }

    proptest::proptest! {
        /// Ranges cut at document boundaries cover a file exactly: each
        /// document in one range, none twice, in order, whatever the sizes,
        /// blank lines and number of parts.
        #[test]
        fn ranges_cover_a_file_exactly(sizes in proptest::collection::vec(0usize..300, 0..60), parts in 1u64..9, blanks in proptest::collection::vec(proptest::bool::ANY, 60)) {
            let dir = tempfile::tempdir().unwrap();
            let mut bson = Vec::new();
            let mut jsonl = Vec::new();
            for (n, size) in sizes.iter().enumerate() {
                let d = doc! { "n": n as i32, "pad": "x".repeat(*size) };
                bson.extend(bson::serialize_to_vec(&d).unwrap());
                if blanks[n] {
                    jsonl.extend(b"\n  \n");
                }
                jsonl.extend(format!("{{\"n\": {n}, \"pad\": \"{}\"}}\n", "x".repeat(*size)).as_bytes());
            }
            write(dir.path(), "a.bson", &bson);
            write(dir.path(), "b.jsonl", &jsonl);
            let src = FileSource::open(dir.path()).unwrap();
            let all: Vec<i32> = (0..sizes.len() as i32).collect();
            for c in ["a", "b"] {
                proptest::prop_assert_eq!(read_ranges(&src, c, parts), all.clone(), "{} in {} parts", c, parts);
                proptest::prop_assert!(src.cuts(c, parts).unwrap().unwrap().len() < parts.max(1) as usize);
                proptest::prop_assert_eq!(src.count(c).unwrap().unwrap(), sizes.len() as u64);
            }
        }
    }

    /// A file of many documents keeps a bounded number of marks; each cut
    /// is a document's start (with its line, in JSON lines) within a step
    /// and a document after its even split; an outline made in the
    /// background is the one a count sees.
    #[test]
    fn marks_are_bounded_and_cuts_even() {
        let dir = tempfile::tempdir().unwrap();
        // Per file: its bytes, where each document (or line) starts, the longest.
        let (mut bson, mut jsonl) = ((Vec::new(), Vec::new(), 0u64), (Vec::new(), Vec::new(), 0u64));
        for n in 0..20_000 {
            let pad = "x".repeat(n as usize % 97);
            let d = bson::serialize_to_vec(&doc! { "n": n, "pad": &pad }).unwrap();
            bson.1.push((bson.0.len() as u64, None));
            bson.2 = bson.2.max(d.len() as u64);
            bson.0.extend(d);
            // A blank line now and then: a line's start, where a range may begin.
            let blank = if n % 10 == 0 { "\n" } else { "" };
            for line in [blank.to_string(), format!("{{\"n\": {n}, \"pad\": \"{pad}\"}}\n")] {
                if !line.is_empty() {
                    jsonl.1.push((jsonl.0.len() as u64, Some(jsonl.1.len() as u64 + 1)));
                    jsonl.2 = jsonl.2.max(line.len() as u64);
                    jsonl.0.extend(line.as_bytes());
                }
            }
        }
        write(dir.path(), "a.bson", &bson.0);
        write(dir.path(), "b.jsonl", &jsonl.0);
        let src = FileSource::open(dir.path()).unwrap();
        src.outline_in_background(vec!["a".into(), "b".into()]);
        for (c, (bytes, starts, longest)) in [("a", &bson), ("b", &jsonl)] {
            assert_eq!(src.count(c).unwrap().unwrap(), 20_000, "{c}");
            let len = bytes.len() as u64;
            assert!(src.outline(c).unwrap().unwrap().marks.len() <= 8192, "{c}");
            for parts in [2, 3, 7, 64] {
                let cuts = src.cuts(c, parts).unwrap().unwrap();
                assert_eq!(cuts.len() as u64, parts - 1, "{c} in {parts} parts");
                for (i, cut) in cuts.iter().enumerate() {
                    let even = len * (i as u64 + 1) / parts;
                    assert!(starts.binary_search(cut).is_ok(), "{c}: {cut:?} is not where a document or line starts");
                    assert!(cut.0 >= even && cut.0 - even < mark_step(len) + longest, "{c}: {cut:?} for {even}");
                }
            }
        }
    }

    /// A length header no document can have stops the count where the
    /// reader stops with its error: the documents before it, no cut after.
    #[test]
    fn a_count_stops_where_the_reader_does() {
        let dir = tempfile::tempdir().unwrap();
        let one = bson::serialize_to_vec(&doc! { "n": 1 }).unwrap();
        let mut bytes = [one.clone(), one.clone()].concat();
        bytes.extend(4u32.to_le_bytes());
        bytes.extend([0u8; 64]);
        bytes.extend(&one);
        write(dir.path(), "g.bson", &bytes);
        let src = FileSource::open(dir.path()).unwrap();
        assert_eq!(src.count("g").unwrap().unwrap(), 2);
        assert!(src.cuts("g", 4).unwrap().unwrap().iter().all(|c| c.0 <= 2 * one.len() as u64));
        let err = ids(&src, "g").unwrap_err().to_string();
        assert!(err.contains(&format!("byte offset {}", 2 * one.len())), "{err}");
    }

    /// A JSON lines range starting mid-file names lines as the whole file does.
    #[test]
    fn a_range_of_json_lines_knows_its_line_numbers() {
        let dir = tempfile::tempdir().unwrap();
        let mut text = String::new();
        for n in 0..10 {
            text.push_str(&format!("{{\"n\": {n}}}\n"));
        }
        text.push_str("{\"n\": 10\n");
        write(dir.path(), "j.jsonl", text.as_bytes());
        let src = FileSource::open(dir.path()).unwrap();
        let f = &src.collections["j"];
        let cut = *src.cuts("j", 2).unwrap().unwrap().first().unwrap();
        let err = DocReader::open(f, cut.0, cut.1, None).unwrap().find_map(Result::err).unwrap().to_string();
        assert!(err.contains("j.jsonl:11:"), "{err}");
    }

    #[test]
    fn resumes_at_a_position() {
        let dir = tempfile::tempdir().unwrap();
        let mut bson = Vec::new();
        for n in 0..4 {
            bson.extend(bson::serialize_to_vec(&doc! { "n": n }).unwrap());
        }
        write(dir.path(), "a.bson", &bson);
        write(dir.path(), "b.jsonl", b"{\"n\":0}\n{\"n\":1}\n{\"n\":2}\n");
        let src = FileSource::open(dir.path()).unwrap();
        let mut r = src.documents("a", 0).unwrap().unwrap();
        r.next();
        r.next();
        let pos = r.position();
        let rest: Vec<i32> = src
            .documents("a", pos)
            .unwrap()
            .unwrap()
            .map(|d| d.unwrap().doc.unwrap_doc().get_i32("n").unwrap())
            .collect();
        assert_eq!(rest, vec![2, 3]);
        // JSON lines: resume at line 2.
        let rest: Vec<i32> = src
            .documents("b", 2)
            .unwrap()
            .unwrap()
            .map(|d| d.unwrap().doc.unwrap_doc().get_i32("n").unwrap())
            .collect();
        assert_eq!(rest, vec![1, 2]);
    }
}

//! The reading side of a run: a thread of its own reads documents, maps
//! them to rows and encodes COPY chunks, which it hands to the loader
//! through a bounded channel; with each chunk, where to continue from.
//! A chunk keeps the documents its rejects need; from a source that reads
//! a range again exactly, the others are read again only for a row the
//! database refuses (`documents_again`).
//!
//! Knows the plan, the source, the row mapper and the COPY encodings;
//! nothing of connections or transactions.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use tokio::sync::mpsc;

use super::coverage::Inventory;
use super::report::DocCounts;
use crate::map::keep::Keep;
use crate::map::{ColumnStats, Rejection, RowEvent, RowMapper};
use crate::pg::sink::write_row;
use crate::plan::{MappingPlan, OnDuplicate, Plan};
use crate::schema::SqlType;
use crate::source::{Position, Source, SourceError, SourceItem};
use crate::value::cell::Cell;

/// Where a staged row came from.
pub(super) struct Origin {
    pub(super) doc: u32,
    pub(super) element: Option<u32>,
}

/// A batch of rows ready for COPY, with what is needed to report on them.
pub(super) struct Chunk {
    pub(super) copy: Vec<u8>,
    pub(super) rows: Vec<Origin>,
    pub(super) docs: Docs,
    /// Rows the mapper refused, by document index.
    pub(super) rejects: Vec<(usize, Rejection)>,
    /// Where rejected documents are in the source, by document index.
    pub(super) locations: BTreeMap<usize, String>,
    pub(super) documents: u64,
    pub(super) read: u64,
    pub(super) filtered: u64,
    /// Rows dropped for repeating a key (`on_duplicate = "first" | "last"`).
    pub(super) duplicates: u64,
    pub(super) outcomes: DocCounts,
    /// Where to continue once this chunk is committed.
    pub(super) position: Position,
    /// Where the chunk's documents began (`None`: where the stream began).
    pub(super) start: Option<Position>,
    /// The rows' keys, one list per key column, for the ledger, when
    /// copying straight into the table.
    pub(super) keys: Vec<Vec<Option<String>>>,
    /// Where the chunk's buffers go once it is dropped: back to its reader.
    home: Option<std::sync::mpsc::Sender<Spare>>,
}

impl Chunk {
    pub(super) fn new(capacity: usize) -> Chunk {
        Chunk::from_spare(Spare {
            copy: Vec::with_capacity(capacity * 256),
            rows: Vec::with_capacity(capacity),
            docs: Docs::with_capacity(capacity),
            keys: Vec::new(),
        })
    }

    /// A chunk on buffers already emptied (`Spare::empty`).
    fn from_spare(spare: Spare) -> Chunk {
        Chunk {
            copy: spare.copy,
            rows: spare.rows,
            docs: spare.docs,
            rejects: Vec::new(),
            locations: BTreeMap::new(),
            documents: 0,
            read: 0,
            filtered: 0,
            duplicates: 0,
            outcomes: DocCounts::default(),
            position: Position::Offset { at: 0, line: None },
            start: None,
            keys: spare.keys,
            home: None,
        }
    }
}

/// A chunk's documents, kept to write the rejects of its rows with them:
/// their bytes one after another in one buffer (a document is rarely read
/// back, only for a reject), the few unreadable ones as they came.
#[derive(Default)]
pub(super) struct Docs {
    bytes: Vec<u8>,
    held: Vec<Held>,
    /// How many documents a chunk is made for: `bytes` grows to fit them
    /// at once, rather than doubling (each doubling copies the bytes so far
    /// and faults in fresh pages).
    expect: usize,
}

/// The most `Docs` reserves ahead of what it holds.
const RESERVE_AHEAD: usize = 32 << 20;

enum Held {
    /// Where a readable document's bytes are in `bytes`.
    Doc(usize, usize),
    Bad(crate::source::BadDocument),
    /// Not kept: read again from the source when needed (`documents_again`).
    Elsewhere,
}

impl Docs {
    fn with_capacity(documents: usize) -> Docs {
        Docs { bytes: Vec::new(), held: Vec::with_capacity(documents), expect: documents }
    }

    /// Keeps a document (a readable one only if `keep`, its place either
    /// way); returns its bytes' buffer when it had one, for the stream to
    /// read the next document into.
    fn push(&mut self, item: SourceItem, keep: bool) -> Option<Vec<u8>> {
        match item {
            SourceItem::Doc(d) if !keep => {
                self.held.push(Held::Elsewhere);
                Some(d.into_bytes())
            }
            SourceItem::Doc(d) => {
                let start = self.bytes.len();
                let need = start + d.as_bytes().len();
                if need > self.bytes.capacity() {
                    // Room for the documents still expected, at the mean size so far.
                    let held = self.held.len() + 1;
                    let ahead = (need / held).saturating_mul(self.expect.saturating_sub(held)).min(RESERVE_AHEAD);
                    self.bytes.reserve(need - start + ahead + ahead / 8);
                }
                self.bytes.extend_from_slice(d.as_bytes());
                self.held.push(Held::Doc(start, self.bytes.len()));
                Some(d.into_bytes())
            }
            SourceItem::Bad(b) => {
                self.held.push(Held::Bad(b));
                None
            }
        }
    }

    pub(super) fn len(&self) -> usize {
        self.held.len()
    }

    /// The `i`th document, as it was read.
    pub(super) fn get(&self, i: usize) -> Option<SourceItem> {
        match self.held.get(i)? {
            Held::Doc(start, end) => {
                let bytes = self.bytes[*start..*end].to_vec();
                bson::RawDocumentBuf::from_bytes(bytes).ok().map(SourceItem::Doc)
            }
            Held::Bad(b) => Some(SourceItem::Bad(b.clone())),
            Held::Elsewhere => None,
        }
    }

    /// Whether the `i`th document was not kept (`documents_again` has it).
    pub(super) fn elsewhere(&self, i: usize) -> bool {
        matches!(self.held.get(i), Some(Held::Elsewhere))
    }

    /// `other`'s documents after these.
    pub(super) fn append(&mut self, other: &mut Docs) {
        let base = self.bytes.len();
        self.bytes.append(&mut other.bytes);
        self.held.extend(other.held.drain(..).map(|h| match h {
            Held::Doc(start, end) => Held::Doc(base + start, base + end),
            bad => bad,
        }));
    }

    fn clear(&mut self) {
        self.bytes.clear();
        self.held.clear();
    }
}

/// A loaded chunk's buffers on their way back to the reader that filled
/// them. Made anew for each chunk, these megabytes were faulted in page by
/// page and freed by the loading thread (`docs/PERFORMANCE.md`).
pub(super) struct Spare {
    copy: Vec<u8>,
    rows: Vec<Origin>,
    docs: Docs,
    keys: Vec<Vec<Option<String>>>,
}

impl Spare {
    /// Emptied on the reader's thread: key texts go to `texts`, to be
    /// filled again.
    fn empty(mut self, texts: &mut Vec<String>) -> Spare {
        self.copy.clear();
        self.rows.clear();
        self.docs.clear();
        for col in &mut self.keys {
            texts.extend(col.drain(..).flatten());
        }
        self
    }
}

impl Drop for Chunk {
    fn drop(&mut self) {
        if let Some(home) = self.home.take() {
            let spare = Spare {
                copy: std::mem::take(&mut self.copy),
                rows: std::mem::take(&mut self.rows),
                docs: std::mem::take(&mut self.docs),
                keys: std::mem::take(&mut self.keys),
            };
            // A reader that has finished takes nothing back.
            let _ = home.send(spare);
        }
    }
}

/// How the reader writes rows for the loader.
#[derive(Default)]
pub(super) struct Encoding {
    /// Set when copying straight into an empty table.
    pub(super) fast: Option<FastEncoding>,
    /// Column types for binary COPY; `None` for the text format.
    pub(super) binary: Option<Vec<SqlType>>,
    /// A dry run's unique column sets, the mapping's key first: it rejects
    /// repeated values itself, as a first load's server would (the first
    /// document wins).
    pub(super) dedupe: Vec<UniqueSet>,
    /// The sets in `dedupe` hold within one chunk only (a deferred load:
    /// its build judges repeats across chunks), so memory stays bounded.
    pub(super) dedupe_per_chunk: bool,
    /// Take the collection's field inventory (`run::coverage`) on the way:
    /// of every document (`Some(None)`) or of the first N.
    pub(super) inventory: Option<Option<u64>>,
    /// Keep every document's bytes in its chunk. Otherwise only those of
    /// documents with rejects are kept, and a row the database refuses has
    /// its document read again (`documents_again`): copying every document into its
    /// chunk cost a tenth of a load's CPU (`docs/PERFORMANCE.md`).
    pub(super) hold_docs: bool,
}

/// Columns (by index in the mapping) whose values together are unique.
pub(super) struct UniqueSet {
    pub(super) columns: Vec<usize>,
    /// The reason for a repeat; the mapping's key says what the run says.
    pub(super) reason: String,
}

/// The mapping's key, then every other UNIQUE constraint of its table whose
/// columns the mapping fills.
pub(super) fn unique_sets(plan: &Plan, m: &MappingPlan) -> Vec<UniqueSet> {
    let mut sets = Vec::new();
    // With `on_duplicate = "first" | "last"` repeats of the key are kept
    // out by the reader itself (`Keep`), not rejected.
    if !m.key.is_empty() && m.on_duplicate == OnDuplicate::Reject {
        sets.push(UniqueSet { columns: m.key.clone(), reason: crate::pg::sink::DUPLICATE_KEY.to_string() });
    }
    let Some(table) = plan.schema.table(&m.table) else { return sets };
    for cols in std::iter::once(&table.primary_key).chain(&table.uniques) {
        let idx: Option<Vec<usize>> = cols.iter().map(|c| m.columns.iter().position(|mc| &mc.name == c)).collect();
        let Some(mut idx) = idx.filter(|i| !i.is_empty()) else { continue };
        idx.sort_unstable();
        let mut key = m.key.clone();
        key.sort_unstable();
        if idx != key && !sets.iter().any(|s: &UniqueSet| s.columns == idx) {
            let reason = format!(
                "duplicate key value violates unique constraint: an earlier row has the same ({})",
                cols.join(", ")
            );
            sets.push(UniqueSet { columns: idx, reason });
        }
    }
    sets
}

/// How rows are written when a mapping copies straight into its table
/// (empty when the mapping began): the server-side defaults are filled in
/// here, since COPY cannot ask for them per row, and self-references are
/// left for the final pass.
pub(super) struct FastEncoding {
    pub(super) fill: Vec<Option<Cell<'static>>>,
    pub(super) null: Vec<bool>,
    pub(super) key: Vec<usize>,
}

impl FastEncoding {
    /// `None` when a default only the server can compute (a sequence, a
    /// function) might be needed: such mappings take the staging path.
    pub(super) fn for_mapping(m: &MappingPlan, now: chrono::DateTime<chrono::Utc>) -> Option<FastEncoding> {
        let fill = m.columns.iter().map(|c| c.default.client_value(&c.ty, &c.rules, now)).collect::<Option<_>>()?;
        let null = m.columns.iter().map(|c| c.references.as_deref() == Some(m.table.as_str())).collect();
        Some(FastEncoding { fill, null, key: m.key.clone() })
    }

    /// Self-references loaded as they are, not NULL until a second pass: a
    /// first load before keys, into a table no other mapping loads, has no
    /// foreign key to refuse a child before its parent; its build makes
    /// those pointing at no row NULL (`build::self_references`).
    pub(super) fn keeping_self_references(mut self) -> FastEncoding {
        self.null.fill(false);
        self
    }
}

pub(super) enum Produced {
    Chunk(Box<Chunk>),
    /// The mapper's per-column counts, sent last, and the field inventory
    /// when the reader took one.
    Done(Vec<ColumnStats>, Option<Inventory>),
}

pub(super) type Chunks = mpsc::Receiver<Result<Produced, SourceError>>;

/// Starts the reading side on a thread of its own, from `from` up to `end`.
pub(super) fn spawn_reader(
    source: &Source,
    m: &MappingPlan,
    from: Option<Position>,
    end: Option<Position>,
    batch: usize,
    encoding: Encoding,
) -> (Chunks, std::thread::JoinHandle<()>) {
    let (tx, rx) = mpsc::channel::<Result<Produced, SourceError>>(1);
    let m = Arc::new(m.clone());
    let source = source.clone();
    let rt = tokio::runtime::Handle::current();
    let batch = batch.max(1);
    let handle = std::thread::spawn(move || produce(&m, &source, (from, end), batch, rt, &encoding, &tx));
    (rx, handle)
}

/// The first chunk of a reader holds this part of a batch.
const FIRST_CHUNK_PART: usize = 8;

/// Loaded chunks a reader holds for its next chunk, at most: the one it
/// takes and one more (a pool without a bound was measured to hold no more).
const POOL: usize = 2;

/// The reading side: documents → rows → COPY text, chunk by chunk.
pub(super) fn produce(
    m: &MappingPlan,
    source: &Source,
    (from, end): (Option<Position>, Option<Position>),
    batch: usize,
    rt: tokio::runtime::Handle,
    encoding: &Encoding,
    tx: &mpsc::Sender<Result<Produced, SourceError>>,
) {
    let mut keep = Keep::new(m);
    if let Err(e) = first_pass(&mut keep, m, source, batch, &rt) {
        let _ = tx.blocking_send(Err(e));
        return;
    }
    let mut stream = match source.stream_range(m, from.as_ref(), end.as_ref(), batch, rt) {
        Ok(s) => s,
        Err(e) => {
            let _ = tx.blocking_send(Err(e));
            return;
        }
    };
    let mut mapper = RowMapper::new(m);
    let mut inventory = encoding.inventory.map(|limit| limit.map_or_else(Inventory::default, Inventory::first));
    let (home, spares) = std::sync::mpsc::channel::<Spare>();
    let mut texts: Vec<String> = Vec::new();
    // Every chunk is made here: on a loaded chunk's buffers when one came
    // back, and sent back to them once it is loaded. Up to `POOL` that came
    // back are kept, so a chunk is rarely made anew (and its megabytes
    // faulted in page by page) while memory stays bounded: two cost a few
    // MB of RSS against one and cut page faults by a third
    // (`docs/PERFORMANCE.md`).
    let mut pool: Vec<Spare> = Vec::new();
    let mut next_chunk = |start: Option<Position>, texts: &mut Vec<String>| {
        pool.extend(spares.try_iter());
        pool.truncate(POOL);
        let mut c = match pool.pop() {
            Some(spare) => Chunk::from_spare(spare.empty(texts)),
            None => Chunk::new(batch),
        };
        c.home = Some(home.clone());
        c.start = start;
        c
    };
    let mut chunk = next_chunk(from, &mut texts);
    // A chunk's repeated keys found by the key texts it keeps for the
    // ledger anyway, where those texts are the values' identities; they
    // then stand in for the unique sets (whose only one is the key).
    let mut by_text = KeyTexts::for_encoding(m, encoding);
    let sets: &[UniqueSet] = if by_text.is_some() { &[] } else { &encoding.dedupe };
    let mut seen: Vec<Seen> = sets.iter().map(|_| Seen::default()).collect();
    // The first chunk is small: its COPY starts while the reader fills the
    // next one, instead of after a whole batch read on an idle connection.
    let mut limit = (batch / FIRST_CHUNK_PART).max(1);
    while let Some(item) = stream.next_doc() {
        let item = match item {
            Ok(i) => i,
            Err(e) => {
                let _ = tx.blocking_send(Err(e));
                return;
            }
        };
        let doc_index = chunk.docs.len();
        chunk.documents += 1;
        let (mut rows, mut rejected, mut duplicates, mut no_elements) = (0u64, 0u64, 0u64, false);
        match &item {
            // Framed but unreadable: one rejected document, its bytes kept.
            SourceItem::Bad(b) => {
                rejected += 1;
                chunk.read += 1;
                let reason = format!("unreadable document: {}", b.reason);
                chunk.rejects.push((doc_index, Rejection { element: None, column: None, reason }));
            }
            SourceItem::Doc(doc) => {
                if let Some(inv) = &mut inventory {
                    inv.add(doc);
                }
                mapper.map(doc, |ev| match ev {
                    RowEvent::Row { element, mut cells } => {
                        chunk.read += 1;
                        if !keep.keeps(&cells) {
                            duplicates += 1;
                            chunk.duplicates += 1;
                            return;
                        }
                        rows += 1;
                        if let Some(reason) = repeated(sets, &mut seen, &cells) {
                            chunk.rejects.push((doc_index, Rejection { element, column: None, reason }));
                            return;
                        }
                        if let Some(f) = &encoding.fast {
                            // NULL never repeats a key (it is looked at before defaults fill it).
                            let null_key = f.key.iter().any(|&i| cells[i].is_null());
                            for (i, c) in cells.iter_mut().enumerate() {
                                if f.null[i] {
                                    *c = Cell::Null;
                                } else if c.is_null()
                                    && let Some(v) = &f.fill[i]
                                {
                                    *c = v.clone();
                                }
                            }
                            chunk.keys.resize_with(f.key.len(), Vec::new);
                            for (col, &i) in chunk.keys.iter_mut().zip(&f.key) {
                                col.push(key_text(&cells[i], &mut texts));
                            }
                            if let Some(k) = by_text.as_mut().filter(|_| !null_key)
                                && !k.last_is_first(&chunk.keys)
                            {
                                for col in &mut chunk.keys {
                                    texts.extend(col.pop().flatten());
                                }
                                let reason = crate::pg::sink::DUPLICATE_KEY.to_string();
                                chunk.rejects.push((doc_index, Rejection { element, column: None, reason }));
                                return;
                            }
                        }
                        match &encoding.binary {
                            Some(types) => crate::value::types::binary::write_row(&mut chunk.copy, &cells, types),
                            None => write_row(&mut chunk.copy, &cells),
                        }
                        chunk.rows.push(Origin { doc: doc_index as u32, element: element.map(|e| e as u32) });
                    }
                    RowEvent::Rejected(r) => {
                        rejected += 1;
                        chunk.read += 1;
                        chunk.rejects.push((doc_index, r));
                    }
                    RowEvent::Filtered(n) => {
                        chunk.read += n;
                        chunk.filtered += n;
                    }
                    RowEvent::NoElements => no_elements = true,
                })
            }
        }
        chunk.outcomes.record(rows, rejected, duplicates, no_elements);
        if rejected > 0
            && let Some(at) = stream.location()
        {
            chunk.locations.insert(doc_index, at);
        }
        let keep = encoding.hold_docs || chunk.rejects.last().is_some_and(|(d, _)| *d == doc_index);
        if let Some(buffer) = chunk.docs.push(item, keep) {
            stream.recycle(buffer);
        }
        if chunk.rows.len() >= limit || chunk.docs.len() >= limit * 4 {
            limit = batch;
            chunk.position = stream.position();
            let next = next_chunk(Some(chunk.position.clone()), &mut texts);
            if encoding.dedupe_per_chunk {
                seen.iter_mut().for_each(HashSet::clear);
                if let Some(k) = by_text.as_mut() {
                    k.clear();
                }
            }
            let full = std::mem::replace(&mut chunk, next);
            if tx.blocking_send(Ok(Produced::Chunk(Box::new(full)))).is_err() {
                return; // the loader stopped; its error is reported there
            }
        }
    }
    if chunk.documents > 0 {
        chunk.position = stream.position();
        let _ = tx.blocking_send(Ok(Produced::Chunk(Box::new(chunk))));
    }
    let _ = tx.blocking_send(Ok(Produced::Done(mapper.stats, inventory)));
}

/// A key's text for the ledger (`Cell::to_pg_text`), written into a string
/// a loaded chunk gave back.
fn key_text(cell: &Cell<'_>, texts: &mut Vec<String>) -> Option<String> {
    let mut t = texts.pop().unwrap_or_default();
    t.clear();
    if cell.write_pg_text(&mut t) {
        Some(t)
    } else {
        texts.push(t);
        None
    }
}

/// The documents at indexes `wanted` of the chunk that began at `start`
/// and ended at `end`, read again from a source that `rereads_exactly`
/// (the reader counted every item of the stream as one document).
pub(super) fn documents_again(
    source: &Source,
    m: &MappingPlan,
    (start, end): (Option<&Position>, &Position),
    wanted: &std::collections::BTreeSet<usize>,
    rt: tokio::runtime::Handle,
) -> Result<BTreeMap<usize, SourceItem>, SourceError> {
    let mut out = BTreeMap::new();
    let Some(&last) = wanted.last() else { return Ok(out) };
    let mut stream = source.stream_range(m, start, Some(end), 1, rt)?;
    let mut at = 0;
    while let Some(item) = stream.next_doc() {
        let item = item?;
        if wanted.contains(&at) {
            out.insert(at, item);
        }
        if at == last {
            break;
        }
        at += 1;
    }
    Ok(out)
}

/// Reads the source once before the run when `keep` needs it (`on_duplicate = "last"`).
pub(crate) fn first_pass(
    keep: &mut Keep,
    m: &MappingPlan,
    source: &Source,
    batch: usize,
    rt: &tokio::runtime::Handle,
) -> Result<(), SourceError> {
    if keep.needs_first_pass() {
        let mut stream = source.stream(m, None, batch, rt.clone())?;
        while let Some(item) = stream.next_doc() {
            if let SourceItem::Doc(doc) = item? {
                keep.first_pass(&doc);
            }
        }
    }
    Ok(())
}

/// The mapping keys of a chunk's rows, by the texts the chunk keeps of
/// them (`Chunk::keys`), for a deferred load whose only unique set is the
/// key and whose key types write each value as its one identity (text,
/// integers, UUIDs, booleans, dates and times): no second text per row.
pub(super) struct KeyTexts {
    rows: hashbrown::HashTable<u32>,
    hasher: foldhash::fast::RandomState,
}

impl KeyTexts {
    fn for_encoding(m: &MappingPlan, encoding: &Encoding) -> Option<KeyTexts> {
        use crate::schema::SqlType as T;
        let only_key = encoding.dedupe.len() == 1 && encoding.dedupe[0].columns == m.key;
        let plain = m.key.iter().all(|&i| {
            matches!(
                m.columns[i].ty,
                T::Text
                    | T::Varchar(_)
                    | T::SmallInt
                    | T::Integer
                    | T::BigInt
                    | T::Uuid
                    | T::Boolean
                    | T::Date
                    | T::Timestamp
                    | T::Timestamptz
            )
        });
        (encoding.dedupe_per_chunk && encoding.fast.is_some() && only_key && plain)
            .then(|| KeyTexts { rows: hashbrown::HashTable::new(), hasher: foldhash::fast::RandomState::default() })
    }

    /// Whether the last row of `keys` is the first of its value in the
    /// chunk (it is then noted; the caller takes it out otherwise).
    fn last_is_first(&mut self, keys: &[Vec<Option<String>>]) -> bool {
        let Some(row) = keys.first().and_then(|col| col.len().checked_sub(1)) else { return true };
        let hash = hash_row(&self.hasher, keys, row);
        let same = |&r: &u32| keys.iter().all(|col| col[r as usize] == col[row]);
        if self.rows.find(hash, same).is_some() {
            return false;
        }
        let hasher = &self.hasher;
        self.rows.insert_unique(hash, row as u32, |&r| hash_row(hasher, keys, r as usize));
        true
    }

    fn clear(&mut self) {
        self.rows.clear();
    }
}

/// One row's key texts hashed column by column, without gathering them.
fn hash_row(hasher: &foldhash::fast::RandomState, keys: &[Vec<Option<String>>], row: usize) -> u64 {
    use std::hash::{BuildHasher, Hash, Hasher};
    let mut h = hasher.build_hasher();
    for col in keys {
        col[row].hash(&mut h);
    }
    h.finish()
}

/// The values of one unique set seen so far, each as a 128-bit digest of
/// its identities: a dry run keeps every key of a collection, and 16 bytes
/// a key instead of its texts keeps that small (two million learners with
/// two unique sets: 542 MB as texts). A false repeat needs a SHA-1 collision
/// in 128 bits.
pub(super) type Seen = HashSet<[u8; 16], foldhash::fast::RandomState>;

/// The digest of one row's values of a unique set; `None` when one is NULL
/// (NULLs never collide). Each part is framed by its length, so ("ab", "c")
/// and ("a", "bc") differ.
fn identity_digest(set: &UniqueSet, cells: &[Cell<'_>]) -> Option<[u8; 16]> {
    use sha1::Digest;
    let mut h = sha1::Sha1::new();
    for &i in &set.columns {
        let part = cells[i].identity()?;
        h.update((part.len() as u64).to_le_bytes());
        h.update(part.as_bytes());
    }
    let full = h.finalize();
    let mut out = [0u8; 16];
    out.copy_from_slice(&full[..16]);
    Some(out)
}

/// A dry run's stand-in for the server's unique indexes: the reason when
/// the row repeats an earlier row's values of a unique set; otherwise the
/// row's values are recorded in every set. NULLs never collide.
pub(super) fn repeated(sets: &[UniqueSet], seen: &mut [Seen], cells: &[Cell<'_>]) -> Option<String> {
    let values: Vec<Option<[u8; 16]>> = sets.iter().map(|s| identity_digest(s, cells)).collect();
    for ((set, v), seen) in sets.iter().zip(&values).zip(seen.iter()) {
        if v.as_ref().is_some_and(|v| seen.contains(v)) {
            return Some(set.reason.clone());
        }
    }
    for (v, seen) in values.into_iter().zip(seen.iter_mut()) {
        if let Some(v) = v {
            seen.insert(v);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(s: &str) -> Cell<'static> {
        Cell::Text(s.to_string().into())
    }

    type Rows = Vec<Vec<Cell<'static>>>;

    /// A chunk's documents, readable and not, come back byte for byte by
    /// index, also after another chunk's are appended; the buffer of each
    /// readable one is handed back for the next read.
    #[test]
    fn docs_keep_each_document_as_read() {
        use crate::source::BadDocument;
        let doc = |n: i32| bson::rawdoc! { "_id": n, "s": "x".repeat(n as usize) };
        let bad = |r: &str| SourceItem::Bad(BadDocument { raw: r.as_bytes().to_vec(), text: true, reason: r.into() });
        let same = |got: Option<SourceItem>, want: &SourceItem| match (got, want) {
            (Some(SourceItem::Doc(g)), SourceItem::Doc(w)) => g.as_bytes() == w.as_bytes(),
            (Some(SourceItem::Bad(g)), SourceItem::Bad(w)) => g.raw == w.raw && g.reason == w.reason,
            _ => false,
        };
        let first = || [SourceItem::Doc(doc(0)), bad("{oops"), SourceItem::Doc(doc(3)), SourceItem::Doc(doc(40))];
        let second = || [bad("[1"), SourceItem::Doc(doc(7))];
        let (mut a, mut b) = (Docs::with_capacity(0), Docs::with_capacity(0));
        for item in first() {
            let readable = matches!(item, SourceItem::Doc(_));
            assert_eq!(a.push(item, true).is_some(), readable, "only a document's buffer comes back");
        }
        for item in second() {
            b.push(item, true);
        }
        let (first, second) = (first(), second());
        for (i, want) in first.iter().enumerate() {
            assert!(same(a.get(i), want), "document {i}");
        }
        assert!(a.get(first.len()).is_none());
        a.append(&mut b);
        assert_eq!(a.len(), first.len() + second.len());
        for (i, want) in first.iter().chain(&second).enumerate() {
            assert!(same(a.get(i), want), "document {i} after append");
        }
        a.clear();
        assert_eq!(a.len(), 0);
        assert!(a.get(0).is_none());
        // Not kept: a readable document's place only (its buffer still
        // comes back); an unreadable one is kept all the same.
        for (item, keep) in [(SourceItem::Doc(doc(1)), false), (bad("{x"), false), (SourceItem::Doc(doc(2)), true)] {
            let readable = matches!(item, SourceItem::Doc(_));
            assert_eq!(a.push(item, keep).is_some(), readable);
        }
        assert_eq!(a.len(), 3);
        assert!(a.elsewhere(0) && a.get(0).is_none());
        assert!(!a.elsewhere(1) && same(a.get(1), &bad("{x")));
        assert!(!a.elsewhere(2) && same(a.get(2), &SourceItem::Doc(doc(2))));
        assert!(!a.elsewhere(3));
    }

    /// Two-column key texts pushed row by row, as the reader does: which
    /// rows repeat an earlier one of the chunk (and are taken out again).
    #[test]
    fn key_texts_find_a_chunks_repeats() {
        let t = |s: &str| Some(s.to_string());
        let rows =
            [[t("a"), t("1")], [t("a"), t("2")], [t("a"), t("1")], [t("b"), None], [t("b"), None], [t("a"), t("2")]];
        let mut k = KeyTexts { rows: hashbrown::HashTable::new(), hasher: foldhash::fast::RandomState::default() };
        let mut keys: Vec<Vec<Option<String>>> = vec![Vec::new(), Vec::new()];
        let mut repeats = Vec::new();
        for (n, row) in rows.iter().enumerate() {
            for (col, text) in keys.iter_mut().zip(row) {
                col.push(text.clone());
            }
            if !k.last_is_first(&keys) {
                keys.iter_mut().for_each(|col| drop(col.pop()));
                repeats.push(n);
            }
        }
        assert_eq!(repeats, [2, 4, 5]);
        assert_eq!(keys[0].len(), 3, "the first of each stays");
    }

    /// Rows in order through one two-column unique set: which are repeats.
    #[test]
    fn repeats_follow_the_servers_equality() {
        let set = UniqueSet { columns: vec![0, 1], reason: "repeat".into() };
        let cases: Vec<(&str, Rows, Vec<bool>)> = vec![
            ("same texts", vec![vec![text("a"), text("b")], vec![text("a"), text("b")]], vec![false, true]),
            ("parts are framed", vec![vec![text("ab"), text("c")], vec![text("a"), text("bc")]], vec![false, false]),
            ("NULL never repeats", vec![vec![text("a"), Cell::Null], vec![text("a"), Cell::Null]], vec![false, false]),
            (
                "numeric by value",
                vec![vec![Cell::Numeric("1.50".into()), Cell::Int(1)], vec![Cell::Numeric("1.5".into()), Cell::Int(1)]],
                vec![false, true],
            ),
            (
                "zero's sign",
                vec![vec![Cell::Double(-0.0), Cell::Int(2)], vec![Cell::Double(0.0), Cell::Int(2)]],
                vec![false, true],
            ),
            (
                "third repeats the first",
                vec![
                    vec![Cell::Int(1), Cell::Int(1)],
                    vec![Cell::Int(1), Cell::Int(2)],
                    vec![Cell::Int(1), Cell::Int(1)],
                ],
                vec![false, false, true],
            ),
        ];
        for (name, rows, want) in cases {
            let mut seen = vec![Seen::default()];
            let got: Vec<bool> =
                rows.iter().map(|r| repeated(std::slice::from_ref(&set), &mut seen, r).is_some()).collect();
            assert_eq!(got, want, "{name}");
        }
    }
}

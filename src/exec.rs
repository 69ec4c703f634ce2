//! Executes a plan: for each stage, for each mapping, documents stream from
//! the source through the row mapper into the sink.
//!
//! Reading and transforming run on a thread of their own and hand COPY-ready
//! chunks to the loader through a bounded channel, so reading, transforming
//! and writing overlap and only a few chunks are in memory whatever the
//! collection's size. Each chunk commits together with its checkpoint (how
//! far the mapping got), so an interrupted run continues where it stopped and
//! ends with the same database as an uninterrupted one.
//!
//! Knows the plan, the source and the sink; nothing of TOML or of the command line.

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use sqlx::{Connection, PgConnection};
use thiserror::Error;
use tokio::sync::mpsc;

use crate::cell::Cell;
use crate::ledger::{self, Progress};
use crate::plan::{DefaultPlan, MappingPlan, Plan};
use crate::rejects::{RejectRecord, RejectsFile};
use crate::report::{ColumnReport, DocCounts, MappingReport, RunReport};
use crate::row::{ColumnStats, Rejection, RowEvent, RowMapper};
use crate::schema::{SchemaDefault, SqlType};
use crate::sink::{DbRejection, TableSink, quote, sql, write_row};
use crate::source::{Position, Source, SourceError, SourceItem};

#[derive(Debug, Error)]
pub enum ExecError {
    #[error(transparent)]
    Source(#[from] SourceError),
    #[error("mapping `{mapping}`: PostgreSQL: {source}")]
    Db { mapping: String, source: sqlx::Error },
    #[error("writing the rejects file {path}: {source}")]
    Rejects { path: String, source: std::io::Error },
    #[error("stopped: {count} rejects, more than --max-rejects {limit} (see {path})")]
    TooManyRejects { limit: u64, count: u64, path: String },
    #[error("no mapping or collection is named {0}")]
    UnknownSelection(String),
    #[error("the reading thread of mapping `{0}` stopped unexpectedly")]
    ReaderPanicked(String),
}

impl ExecError {
    /// Whether committed work survives and a re-run continues it.
    pub fn resumable(&self) -> bool {
        matches!(self, ExecError::Source(_) | ExecError::Db { .. } | ExecError::ReaderPanicked(_))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProgressMode {
    /// One progress bar per mapping (a terminal).
    Bars,
    /// A plain line every few seconds (logs, CI).
    Lines,
    Quiet,
}

#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Rows per COPY chunk (and per transaction).
    pub batch_size: usize,
    pub dry_run: bool,
    pub max_rejects: Option<u64>,
    /// Mapping or collection names; empty for all.
    pub only: Vec<String>,
    pub progress: ProgressMode,
    /// The ledger run that inserted keys and checkpoints are recorded under.
    pub run_id: i64,
    /// Mappings of one stage loaded at once (a dry run's parallelism; a
    /// real run's is the number of connections it is given).
    pub jobs: usize,
}

impl Default for RunOptions {
    fn default() -> Self {
        RunOptions {
            batch_size: 5000,
            dry_run: false,
            max_rejects: None,
            only: Vec::new(),
            progress: ProgressMode::Quiet,
            run_id: 0,
            jobs: 1,
        }
    }
}

/// Which mappings a run loads, in plan order.
pub fn select<'p>(plan: &'p Plan, only: &[String]) -> Result<Vec<&'p MappingPlan>, ExecError> {
    let hit = |m: &MappingPlan, n: &String| n == &m.name || n == &m.source || n == &m.table;
    for name in only {
        if !plan.mappings.iter().any(|m| hit(m, name)) {
            return Err(ExecError::UnknownSelection(name.clone()));
        }
    }
    Ok(plan.mappings.iter().filter(|m| only.is_empty() || only.iter().any(|n| hit(m, n))).collect())
}

/// The selected mappings whose collection the source does not have, as
/// `mapping (collection `name`)` for messages.
pub fn missing_collections(mappings: &[&MappingPlan], source: &Source) -> Vec<String> {
    mappings
        .iter()
        .filter(|m| !source.has(&m.source))
        .map(|m| format!("{} (collection `{}`)", m.name, m.source))
        .collect()
}

/// Where a staged row came from.
struct Origin {
    doc: u32,
    element: Option<u32>,
}

/// A batch of rows ready for COPY, with what is needed to report on them.
struct Chunk {
    copy: Vec<u8>,
    rows: Vec<Origin>,
    docs: Vec<SourceItem>,
    /// Rows the mapper refused, by document index.
    rejects: Vec<(usize, Rejection)>,
    /// Where rejected documents are in the source, by document index.
    locations: BTreeMap<usize, String>,
    documents: u64,
    read: u64,
    filtered: u64,
    outcomes: DocCounts,
    /// Where to continue once this chunk is committed.
    position: Position,
    /// The rows' keys, one list per key column, for the ledger, when
    /// copying straight into the table.
    keys: Vec<Vec<Option<String>>>,
}

impl Chunk {
    fn new(capacity: usize) -> Chunk {
        Chunk {
            copy: Vec::with_capacity(capacity * 256),
            rows: Vec::with_capacity(capacity),
            docs: Vec::with_capacity(capacity),
            rejects: Vec::new(),
            locations: BTreeMap::new(),
            documents: 0,
            read: 0,
            filtered: 0,
            outcomes: DocCounts::default(),
            position: Position::Offset { at: 0 },
            keys: Vec::new(),
        }
    }
}

/// How the reader writes rows for the loader.
#[derive(Default)]
struct Encoding {
    /// Set when copying straight into an empty table.
    fast: Option<FastEncoding>,
    /// Column types for binary COPY; `None` for the text format.
    binary: Option<Vec<SqlType>>,
    /// A dry run's unique column sets, the mapping's key first: it rejects
    /// repeated values itself, as a first load's server would (the first
    /// document wins).
    dedupe: Vec<UniqueSet>,
}

/// Columns (by index in the mapping) whose values together are unique.
struct UniqueSet {
    columns: Vec<usize>,
    /// The reason for a repeat; the mapping's key says what the run says.
    reason: String,
}

/// The mapping's key, then every other UNIQUE constraint of its table whose
/// columns the mapping fills.
fn unique_sets(plan: &Plan, m: &MappingPlan) -> Vec<UniqueSet> {
    let mut sets = Vec::new();
    if !m.key.is_empty() {
        sets.push(UniqueSet { columns: m.key.clone(), reason: crate::sink::DUPLICATE_KEY.to_string() });
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
struct FastEncoding {
    fill: Vec<Option<Cell<'static>>>,
    null: Vec<bool>,
    key: Vec<usize>,
}

impl FastEncoding {
    /// `None` when a default only the server can compute (a sequence, a
    /// function) might be needed: such mappings take the staging path.
    fn for_mapping(m: &MappingPlan, now: chrono::DateTime<chrono::Utc>) -> Option<FastEncoding> {
        let mut fill = Vec::with_capacity(m.columns.len());
        for c in &m.columns {
            let clock = || match c.ty {
                SqlType::Date => Some(Cell::Date(now.with_timezone(&c.rules.tz).date_naive())),
                SqlType::Timestamp => Some(Cell::Timestamp(now.with_timezone(&c.rules.tz).naive_local())),
                SqlType::Timestamptz => Some(Cell::Timestamptz(now)),
                _ => None,
            };
            fill.push(match &c.default {
                DefaultPlan::None | DefaultPlan::Value(_) => None,
                DefaultPlan::Now | DefaultPlan::Schema(SchemaDefault::Now) => Some(clock()?),
                DefaultPlan::Schema(SchemaDefault::Constant(text)) => {
                    Some(crate::coerce::sql_constant(text, &c.ty, &c.rules)?)
                }
                DefaultPlan::Schema(SchemaDefault::Expression(_)) => return None,
            });
        }
        let null = m.columns.iter().map(|c| c.references.as_deref() == Some(m.table.as_str())).collect();
        Some(FastEncoding { fill, null, key: m.key.clone() })
    }
}

enum Produced {
    Chunk(Box<Chunk>),
    /// The mapper's per-column counts, sent last.
    Done(Vec<ColumnStats>),
}

type Chunks = mpsc::Receiver<Result<Produced, SourceError>>;

/// Runs the selected mappings stage by stage; the mappings of a stage load
/// at once, one per connection in `conns` (empty for a dry run). `resume`
/// holds the progress of an interrupted run being continued.
pub async fn run(
    plan: &Plan,
    source: &Source,
    conns: &mut [PgConnection],
    opts: &RunOptions,
    rejects: &mut RejectsFile,
    resume: &BTreeMap<String, Progress>,
) -> Result<RunReport, ExecError> {
    let started = Instant::now();
    let selected = select(plan, &opts.only)?;
    let bars = MultiProgress::with_draw_target(match opts.progress {
        ProgressMode::Bars => ProgressDrawTarget::stderr(),
        _ => ProgressDrawTarget::hidden(),
    });
    let total_rejects = AtomicU64::new(0);
    let rejects = Mutex::new(&mut *rejects);
    let mut done: Vec<(usize, MappingReport)> = Vec::new();
    for stage in &plan.stages {
        let todo: Vec<usize> =
            stage.iter().copied().filter(|&i| selected.iter().any(|s| std::ptr::eq(*s, &plan.mappings[i]))).collect();
        let next = AtomicUsize::new(0);
        let results = Mutex::new(Vec::new());
        let workers: Vec<Option<&mut PgConnection>> = if conns.is_empty() {
            (0..opts.jobs.max(1)).map(|_| None).collect()
        } else {
            conns.iter_mut().map(Some).collect()
        };
        let work = workers.into_iter().map(|mut conn| {
            let (todo, next, results, rejects, bars, total_rejects) =
                (&todo, &next, &results, &rejects, &bars, &total_rejects);
            async move {
                loop {
                    let Some(&slot) = todo.get(next.fetch_add(1, Ordering::SeqCst)) else { return Ok::<(), ExecError>(()) };
                    let m = &plan.mappings[slot];
                    let r = if source.has(&m.source) {
                        let mut cx = MappingRun { plan, m, source, opts, rejects, bars, total_rejects };
                        cx.run(slot, conn.as_deref_mut(), resume.get(&m.name)).await?
                    } else {
                        tracing::warn!(mapping = %m.name, "the source has no collection `{}`: nothing to load", m.source);
                        MappingReport {
                            mapping: m.name.clone(),
                            source: m.source.clone(),
                            table: m.table.clone(),
                            ..Default::default()
                        }
                    };
                    lock(results).push((slot, r));
                }
            }
        });
        futures::future::try_join_all(work).await?;
        done.extend(results.into_inner().unwrap_or_else(|p| p.into_inner()));
    }
    done.sort_by_key(|(slot, _)| *slot);
    let rejects = rejects.into_inner().unwrap_or_else(|p| p.into_inner());
    rejects.flush().map_err(|source| ExecError::Rejects { path: rejects.path().display().to_string(), source })?;
    let mut report = RunReport { dry_run: opts.dry_run, ..Default::default() };
    report.mappings = done.into_iter().map(|(_, r)| r).collect();
    report.seconds = started.elapsed().as_secs_f64();
    if rejects.written > 0 {
        report.rejects_file = Some(rejects.path().display().to_string());
    }
    Ok(report)
}

/// A poisoned lock only means another mapping panicked; its data is still usable.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// One mapping's run and what it needs.
struct MappingRun<'a, 'r> {
    plan: &'a Plan,
    m: &'a MappingPlan,
    source: &'a Source,
    opts: &'a RunOptions,
    rejects: &'a Mutex<&'r mut RejectsFile>,
    bars: &'a MultiProgress,
    total_rejects: &'a AtomicU64,
}

impl MappingRun<'_, '_> {
    fn db(&self, source: sqlx::Error) -> ExecError {
        ExecError::Db { mapping: self.m.name.clone(), source }
    }

    fn rejects_err(&self, source: std::io::Error) -> ExecError {
        ExecError::Rejects { path: lock(self.rejects).path().display().to_string(), source }
    }

    async fn run(
        &mut self,
        slot: usize,
        mut conn: Option<&mut PgConnection>,
        prior: Option<&Progress>,
    ) -> Result<MappingReport, ExecError> {
        let m = self.m;
        if let Some(p) = prior.filter(|p| p.done) {
            tracing::info!(mapping = %m.name, "already loaded by the interrupted run; skipped");
            let mut r = p.report.clone();
            r.resumed = Some("loaded before the interruption".into());
            return Ok(r);
        }
        let started = Instant::now();
        let mut r = match prior {
            Some(p) => {
                let mut r = p.report.clone();
                r.resumed = Some(format!("continued after {} documents", r.documents));
                r
            }
            None => MappingReport {
                mapping: m.name.clone(),
                source: m.source.clone(),
                table: m.table.clone(),
                ..Default::default()
            },
        };
        let from = prior.and_then(|p| p.position.clone());
        let fingerprint = self.source.fingerprint(&m.source);
        let expected = self.source.count(m).await;
        let bar = progress_bar(self.bars, m, expected, self.opts.progress);
        bar.set_position(r.documents);
        tracing::info!(mapping = %m.name, source = %m.source, table = %m.table, documents = ?expected, resumed = from.is_some(), "mapping started");

        let mut sink = TableSink::new(self.plan, m, slot);
        sink.run_id = self.opts.run_id;
        if let Some(c) = conn.as_deref_mut() {
            sink.prepare(c, m).await.map_err(|e| self.db(e))?;
        }

        // A first load into an empty table copies straight into it.
        let mut fast = None;
        if let Some(c) = conn.as_deref_mut()
            && prior.is_none()
        {
            let stmt = format!("SELECT NOT EXISTS (SELECT 1 FROM {})", quote(&m.table));
            let empty: bool = sqlx::query_scalar(sql(stmt)).fetch_one(&mut *c).await.map_err(|e| self.db(e))?;
            if empty {
                fast = FastEncoding::for_mapping(m, chrono::Utc::now());
            }
        }
        tracing::debug!(mapping = %m.name, direct_copy = fast.is_some());
        let direct = fast.is_some();
        let dedupe = if conn.is_none() { unique_sets(self.plan, m) } else { Vec::new() };
        let encoding = Encoding { fast, binary: sink.binary.clone(), dedupe };
        let (mut rx, reader) = spawn_reader(self.source, m, from, self.opts.batch_size, encoding);
        let mut last_line = Instant::now();
        let mut stats = Vec::new();
        while let Some(item) = rx.recv().await {
            let chunk = match item? {
                Produced::Chunk(c) => c,
                Produced::Done(s) => {
                    stats = s;
                    break;
                }
            };
            r.documents += chunk.documents;
            r.read += chunk.read;
            r.filtered += chunk.filtered;
            r.document_outcomes.add(&chunk.outcomes);
            let mut db_rejects: Vec<DbRejection> = Vec::new();
            let tx = match conn.as_deref_mut() {
                Some(c) if !chunk.rows.is_empty() => {
                    let (res, tx) = sink
                        .load_chunk(
                            c,
                            &chunk.copy,
                            chunk.rows.len(),
                            direct.then_some(chunk.keys.as_slice()),
                            &mut db_rejects,
                        )
                        .await
                        .map_err(|e| self.db(e))?;
                    r.inserted += res.inserted;
                    r.updated += res.updated;
                    r.unchanged += res.unchanged;
                    r.loaded += res.inserted + res.updated + res.unchanged;
                    Some(tx)
                }
                Some(c) => Some(c.begin().await.map_err(|e| self.db(e))?),
                None => {
                    r.loaded += chunk.rows.len() as u64;
                    None
                }
            };
            let rejected = self.write_rejects(&chunk, &db_rejects)?;
            r.rejected += rejected;
            let total = self.total_rejects.fetch_add(rejected, Ordering::SeqCst) + rejected;
            // Rejects reach the disk before the chunk commits: a crash in
            // between repeats a reject on resume rather than losing it.
            let flushed = lock(self.rejects).flush();
            flushed.map_err(|e| self.rejects_err(e))?;
            if let Some(mut tx) = tx {
                ledger::save_progress(
                    &mut tx,
                    self.opts.run_id,
                    &r,
                    Some(&chunk.position),
                    fingerprint.as_deref(),
                    false,
                )
                .await
                .map_err(|e| self.db(e))?;
                tx.commit().await.map_err(|e| self.db(e))?;
            }
            if let Some(limit) = self.opts.max_rejects
                && total > limit
            {
                bar.abandon();
                let path = lock(self.rejects).path().display().to_string();
                return Err(ExecError::TooManyRejects { limit, count: total, path });
            }
            bar.inc(chunk.documents);
            if self.opts.progress == ProgressMode::Lines && last_line.elapsed() > Duration::from_secs(5) {
                last_line = Instant::now();
                let total = expected.map(|e| format!("/{e}")).unwrap_or_default();
                tracing::info!(
                    "{}: {}{} documents, {} rows loaded, {} rejected",
                    m.name,
                    r.documents,
                    total,
                    r.loaded,
                    r.rejected
                );
            }
        }
        if reader.join().is_err() {
            return Err(ExecError::ReaderPanicked(m.name.clone()));
        }

        if let Some(c) = conn {
            let mut tx = c.begin().await.map_err(|e| self.db(e))?;
            if sink.has_self_references() {
                r.dangling = self.self_references(&sink, &mut tx).await?;
            }
            r.seconds += started.elapsed().as_secs_f64();
            r.rows_per_second = if r.seconds > 0.0 { r.loaded as f64 / r.seconds } else { 0.0 };
            ledger::save_progress(&mut tx, self.opts.run_id, &r, None, fingerprint.as_deref(), true)
                .await
                .map_err(|e| self.db(e))?;
            ledger::record_mapping(&mut tx, self.opts.run_id, &r).await.map_err(|e| self.db(e))?;
            tx.commit().await.map_err(|e| self.db(e))?;
        } else {
            r.seconds += started.elapsed().as_secs_f64();
        }
        r.columns = m
            .columns
            .iter()
            .zip(stats)
            .map(|(c, s)| ColumnReport { column: c.name.clone(), nulls: s.nulls, defaults: s.defaults })
            .collect();
        r.rows_per_second = if r.seconds > 0.0 { r.loaded as f64 / r.seconds } else { 0.0 };
        bar.finish();
        tracing::info!(
            mapping = %m.name, read = r.read, loaded = r.loaded, inserted = r.inserted, updated = r.updated,
            rejected = r.rejected, filtered = r.filtered, seconds = r.seconds, "mapping finished"
        );
        Ok(r)
    }

    /// Writes a chunk's rejects; returns how many.
    fn write_rejects(&mut self, chunk: &Chunk, db_rejects: &[DbRejection]) -> Result<u64, ExecError> {
        let m = self.m;
        let mut file = lock(self.rejects);
        for (doc, rej) in &chunk.rejects {
            let rec = RejectRecord {
                mapping: &m.name,
                collection: &m.source,
                element: rej.element,
                column: rej.column.as_deref(),
                reason: &rej.reason,
                document: chunk.docs.get(*doc),
                location: chunk.locations.get(doc).map(String::as_str),
            };
            file.write(&rec)
                .map_err(|source| ExecError::Rejects { path: file.path().display().to_string(), source })?;
        }
        for rej in db_rejects {
            let origin = &chunk.rows[rej.ord];
            let rec = RejectRecord {
                mapping: &m.name,
                collection: &m.source,
                element: origin.element.map(|e| e as usize),
                column: rej.column.as_deref(),
                reason: &rej.reason,
                document: chunk.docs.get(origin.doc as usize),
                location: None,
            };
            file.write(&rec)
                .map_err(|source| ExecError::Rejects { path: file.path().display().to_string(), source })?;
        }
        Ok((chunk.rejects.len() + db_rejects.len()) as u64)
    }

    /// The second pass: the whole collection again into staging (one
    /// transaction), then every self-reference set from it. Returns how many
    /// point at rows that do not exist; those are reported as rejects.
    async fn self_references(&mut self, sink: &TableSink, tx: &mut PgConnection) -> Result<u64, ExecError> {
        let m = self.m;
        let encoding = Encoding { fast: None, binary: sink.binary.clone(), dedupe: Vec::new() };
        let (mut rx, reader) = spawn_reader(self.source, m, None, self.opts.batch_size, encoding);
        while let Some(item) = rx.recv().await {
            match item? {
                Produced::Chunk(c) if !c.rows.is_empty() => {
                    sink.copy_to_stage(tx, &c.copy).await.map_err(|e| self.db(e))?;
                }
                Produced::Chunk(_) => {}
                Produced::Done(_) => break,
            }
        }
        if reader.join().is_err() {
            return Err(ExecError::ReaderPanicked(m.name.clone()));
        }
        let dangling = sink.set_self_references(tx, m).await.map_err(|e| self.db(e))?;
        for d in &dangling {
            let reason = format!(
                "row ({}) keeps NULL in `{}`: it points at {}, which is not in `{}`",
                d.key, d.column, d.target, m.table
            );
            let rec = RejectRecord {
                mapping: &m.name,
                collection: &m.source,
                element: None,
                column: Some(&d.column),
                reason: &reason,
                document: None,
                location: None,
            };
            let written = lock(self.rejects).write(&rec);
            written.map_err(|e| self.rejects_err(e))?;
        }
        Ok(dangling.len() as u64)
    }
}

/// Starts the reading side on a thread of its own.
fn spawn_reader(
    source: &Source,
    m: &MappingPlan,
    from: Option<Position>,
    batch: usize,
    encoding: Encoding,
) -> (Chunks, std::thread::JoinHandle<()>) {
    let (tx, rx) = mpsc::channel::<Result<Produced, SourceError>>(2);
    let m = Arc::new(m.clone());
    let source = source.clone();
    let rt = tokio::runtime::Handle::current();
    let batch = batch.max(1);
    let handle = std::thread::spawn(move || produce(&m, &source, from, batch, rt, &encoding, &tx));
    (rx, handle)
}

/// The reading side: documents → rows → COPY text, chunk by chunk.
fn produce(
    m: &MappingPlan,
    source: &Source,
    from: Option<Position>,
    batch: usize,
    rt: tokio::runtime::Handle,
    encoding: &Encoding,
    tx: &mpsc::Sender<Result<Produced, SourceError>>,
) {
    let mut stream = match source.stream(m, from.as_ref(), batch, rt) {
        Ok(s) => s,
        Err(e) => {
            let _ = tx.blocking_send(Err(e));
            return;
        }
    };
    let mut mapper = RowMapper::new(m);
    let mut chunk = Chunk::new(batch);
    let mut seen: Vec<HashSet<Vec<Option<String>>>> = encoding.dedupe.iter().map(|_| HashSet::new()).collect();
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
        let (mut rows, mut rejected, mut no_elements) = (0u64, 0u64, false);
        match &item {
            // Framed but unreadable: one rejected document, its bytes kept.
            SourceItem::Bad(b) => {
                rejected += 1;
                chunk.read += 1;
                let reason = format!("unreadable document: {}", b.reason);
                chunk.rejects.push((doc_index, Rejection { element: None, column: None, reason }));
            }
            SourceItem::Doc(doc) => mapper.map(doc, |ev| match ev {
                RowEvent::Row { element, mut cells } => {
                    rows += 1;
                    chunk.read += 1;
                    if let Some(reason) = repeated(&encoding.dedupe, &mut seen, &cells) {
                        chunk.rejects.push((doc_index, Rejection { element, column: None, reason }));
                        return;
                    }
                    if let Some(f) = &encoding.fast {
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
                            col.push(cells[i].to_pg_text());
                        }
                    }
                    match &encoding.binary {
                        Some(types) => crate::cell::binary::write_row(&mut chunk.copy, &cells, types),
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
            }),
        }
        chunk.outcomes.record(rows, rejected, no_elements);
        if rejected > 0
            && let Some(at) = stream.location()
        {
            chunk.locations.insert(doc_index, at);
        }
        chunk.docs.push(item);
        if chunk.rows.len() >= batch || chunk.docs.len() >= batch * 4 {
            chunk.position = stream.position();
            let full = std::mem::replace(&mut chunk, Chunk::new(batch));
            if tx.blocking_send(Ok(Produced::Chunk(Box::new(full)))).is_err() {
                return; // the loader stopped; its error is reported there
            }
        }
    }
    if chunk.documents > 0 {
        chunk.position = stream.position();
        let _ = tx.blocking_send(Ok(Produced::Chunk(Box::new(chunk))));
    }
    let _ = tx.blocking_send(Ok(Produced::Done(mapper.stats)));
}

/// A dry run's stand-in for the server's unique indexes: the reason when
/// the row repeats an earlier row's values of a unique set; otherwise the
/// row's values are recorded in every set. NULLs never collide.
fn repeated(sets: &[UniqueSet], seen: &mut [HashSet<Vec<Option<String>>>], cells: &[Cell<'_>]) -> Option<String> {
    let values: Vec<Option<Vec<Option<String>>>> = sets
        .iter()
        .map(|s| {
            let v: Vec<Option<String>> = s.columns.iter().map(|&i| cells[i].identity()).collect();
            v.iter().all(Option::is_some).then_some(v)
        })
        .collect();
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

fn progress_bar(bars: &MultiProgress, m: &MappingPlan, len: Option<u64>, mode: ProgressMode) -> ProgressBar {
    if mode != ProgressMode::Bars {
        return ProgressBar::hidden();
    }
    let bar = bars.add(ProgressBar::new(len.unwrap_or(0)));
    let style = ProgressStyle::with_template("{prefix:24} [{bar:30}] {pos:>9}/{len:9} docs {rate:>10} eta {eta:>4}")
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .with_key("rate", |s: &indicatif::ProgressState, w: &mut dyn std::fmt::Write| {
            let _ = write!(w, "{:.0}/s", s.per_sec());
        })
        .progress_chars("=> ");
    bar.set_style(style);
    bar.set_prefix(m.name.clone());
    bar
}

//! Executes a plan: for each stage, for each mapping, documents stream from
//! the source through the row mapper into the sink.
//!
//! Reading and transforming run on a thread of their own and hand COPY-ready
//! chunks to the loader through a bounded channel, so reading, transforming
//! and writing overlap and at most a few chunks are in memory whatever the
//! collection's size. Knows the plan, the source and the sink; nothing of
//! TOML or of the command line.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bson::RawDocumentBuf;
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use sqlx::PgConnection;
use thiserror::Error;
use tokio::sync::mpsc;

use crate::plan::{MappingPlan, Plan};
use crate::rejects::{RejectRecord, RejectsFile};
use crate::report::{ColumnReport, MappingReport, RunReport};
use crate::row::{Rejection, RowEvent, RowMapper};
use crate::sink::{DbRejection, TableSink, write_row};
use crate::source::{FileSource, SourceError};

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
    /// The ledger run that inserted keys are recorded under.
    pub run_id: i64,
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
        }
    }
}

/// Which mappings a run loads, in plan order.
pub fn select<'p>(plan: &'p Plan, only: &[String]) -> Result<Vec<&'p MappingPlan>, ExecError> {
    for name in only {
        if !plan.mappings.iter().any(|m| &m.name == name || &m.source == name || &m.table == name) {
            return Err(ExecError::UnknownSelection(name.clone()));
        }
    }
    Ok(plan
        .mappings
        .iter()
        .filter(|m| only.is_empty() || only.iter().any(|n| n == &m.name || n == &m.source || n == &m.table))
        .collect())
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
    docs: Vec<RawDocumentBuf>,
    /// Rows the mapper refused, by document index.
    rejects: Vec<(usize, Rejection)>,
    documents: u64,
    read: u64,
    filtered: u64,
}

impl Chunk {
    fn new(capacity: usize) -> Chunk {
        Chunk {
            copy: Vec::with_capacity(capacity * 256),
            rows: Vec::with_capacity(capacity),
            docs: Vec::with_capacity(capacity),
            rejects: Vec::new(),
            documents: 0,
            read: 0,
            filtered: 0,
        }
    }
}

enum Produced {
    Chunk(Chunk),
    /// The mapper's per-column counts, sent last.
    Done(Vec<crate::row::ColumnStats>),
}

/// Runs the selected mappings stage by stage.
pub async fn run(
    plan: &Plan,
    source: &FileSource,
    mut conn: Option<&mut PgConnection>,
    opts: &RunOptions,
    rejects: &mut RejectsFile,
) -> Result<RunReport, ExecError> {
    let started = Instant::now();
    let selected = select(plan, &opts.only)?;
    let bars = MultiProgress::with_draw_target(match opts.progress {
        ProgressMode::Bars => ProgressDrawTarget::stderr(),
        _ => ProgressDrawTarget::hidden(),
    });
    let mut report = RunReport { dry_run: opts.dry_run, ..Default::default() };
    let mut total_rejects = 0u64;
    for (slot, m) in plan.mappings.iter().enumerate() {
        if !selected.iter().any(|s| std::ptr::eq(*s, m)) {
            continue;
        }
        if !source.collections.contains_key(&m.source) {
            tracing::warn!(mapping = %m.name, "the source has no collection `{}`: nothing to load", m.source);
            report.mappings.push(MappingReport {
                mapping: m.name.clone(),
                source: m.source.clone(),
                table: m.table.clone(),
                ..Default::default()
            });
            continue;
        }
        let r =
            run_mapping(plan, m, slot, source, conn.as_deref_mut(), opts, rejects, &bars, &mut total_rejects).await?;
        report.mappings.push(r);
    }
    rejects.flush().map_err(|source| ExecError::Rejects { path: rejects.path().display().to_string(), source })?;
    report.seconds = started.elapsed().as_secs_f64();
    if rejects.written > 0 {
        report.rejects_file = Some(rejects.path().display().to_string());
    }
    Ok(report)
}

#[allow(clippy::too_many_arguments)]
async fn run_mapping(
    plan: &Plan,
    m: &MappingPlan,
    slot: usize,
    source: &FileSource,
    mut conn: Option<&mut PgConnection>,
    opts: &RunOptions,
    rejects: &mut RejectsFile,
    bars: &MultiProgress,
    total_rejects: &mut u64,
) -> Result<MappingReport, ExecError> {
    let started = Instant::now();
    let db = |source| ExecError::Db { mapping: m.name.clone(), source };
    let expected = source.count(&m.source).and_then(Result::ok);
    let bar = progress_bar(bars, m, expected, opts.progress);
    tracing::info!(mapping = %m.name, source = %m.source, table = %m.table, documents = ?expected, "mapping started");

    let mut sink = TableSink::new(plan, m, slot);
    sink.run_id = opts.run_id;
    if let Some(c) = conn.as_deref_mut() {
        sink.prepare(c, m).await.map_err(db)?;
    }

    let (tx, mut rx) = mpsc::channel::<Result<Produced, SourceError>>(2);
    let reader = {
        let plan_m = Arc::new(m.clone());
        let source = source.clone();
        let batch = opts.batch_size.max(1);
        std::thread::spawn(move || produce(&plan_m, &source, batch, &tx))
    };

    let mut r = MappingReport {
        mapping: m.name.clone(),
        source: m.source.clone(),
        table: m.table.clone(),
        ..Default::default()
    };
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
        let mut db_rejects: Vec<DbRejection> = Vec::new();
        match conn.as_deref_mut() {
            Some(c) if !chunk.rows.is_empty() => {
                let (res, tx) = sink.load_chunk(c, &chunk.copy, chunk.rows.len(), &mut db_rejects).await.map_err(db)?;
                tx.commit().await.map_err(db)?;
                r.inserted += res.inserted;
                r.updated += res.updated;
                r.unchanged += res.unchanged;
                r.loaded += res.inserted + res.updated + res.unchanged;
            }
            Some(_) => {}
            None => r.loaded += chunk.rows.len() as u64,
        }
        let mut write = |rec: RejectRecord<'_>| {
            rejects
                .write(&rec)
                .map_err(|source| ExecError::Rejects { path: rejects.path().display().to_string(), source })
        };
        for (doc, rej) in &chunk.rejects {
            write(RejectRecord {
                mapping: &m.name,
                collection: &m.source,
                element: rej.element,
                column: rej.column.as_deref(),
                reason: &rej.reason,
                document: chunk.docs.get(*doc).map(|d| d.as_ref()),
            })?;
        }
        for rej in &db_rejects {
            let origin = &chunk.rows[rej.ord];
            write(RejectRecord {
                mapping: &m.name,
                collection: &m.source,
                element: origin.element.map(|e| e as usize),
                column: rej.column.as_deref(),
                reason: &rej.reason,
                document: chunk.docs.get(origin.doc as usize).map(|d| d.as_ref()),
            })?;
        }
        let rejected = (chunk.rejects.len() + db_rejects.len()) as u64;
        r.rejected += rejected;
        *total_rejects += rejected;
        if let Some(limit) = opts.max_rejects
            && *total_rejects > limit
        {
            bar.abandon();
            let _ = rejects.flush();
            return Err(ExecError::TooManyRejects {
                limit,
                count: *total_rejects,
                path: rejects.path().display().to_string(),
            });
        }
        bar.inc(chunk.documents);
        if opts.progress == ProgressMode::Lines && last_line.elapsed() > Duration::from_secs(5) {
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
    if let Some(c) = conn.as_deref_mut() {
        for d in sink.finish(c, m).await.map_err(db)? {
            r.dangling += 1;
            let reason = format!(
                "row ({}) keeps NULL in `{}`: it points at {}, which is not in `{}`",
                d.key, d.column, d.target, m.table
            );
            rejects
                .write(&RejectRecord {
                    mapping: &m.name,
                    collection: &m.source,
                    element: None,
                    column: Some(&d.column),
                    reason: &reason,
                    document: None,
                })
                .map_err(|source| ExecError::Rejects { path: rejects.path().display().to_string(), source })?;
        }
    }
    r.columns = m
        .columns
        .iter()
        .zip(stats)
        .map(|(c, s)| ColumnReport { column: c.name.clone(), nulls: s.nulls, defaults: s.defaults })
        .collect();
    r.seconds = started.elapsed().as_secs_f64();
    r.rows_per_second = if r.seconds > 0.0 { r.loaded as f64 / r.seconds } else { 0.0 };
    if let Some(c) = conn {
        crate::ledger::record_mapping(c, opts.run_id, &r).await.map_err(db)?;
    }
    bar.finish();
    tracing::info!(
        mapping = %m.name, read = r.read, loaded = r.loaded, inserted = r.inserted, updated = r.updated,
        rejected = r.rejected, filtered = r.filtered, seconds = r.seconds, "mapping finished"
    );
    Ok(r)
}

/// The reading side: documents → rows → COPY text, chunk by chunk.
fn produce(m: &MappingPlan, source: &FileSource, batch: usize, tx: &mpsc::Sender<Result<Produced, SourceError>>) {
    let mut reader = match source.documents(&m.source, 0) {
        Some(Ok(r)) => r,
        Some(Err(e)) => {
            let _ = tx.blocking_send(Err(e));
            return;
        }
        None => {
            let _ = tx.blocking_send(Ok(Produced::Done(Vec::new())));
            return;
        }
    };
    let mut mapper = RowMapper::new(m);
    let mut chunk = Chunk::new(batch);
    for item in reader.by_ref() {
        let doc = match item {
            Ok(d) => d.doc,
            Err(e) => {
                let _ = tx.blocking_send(Err(e));
                return;
            }
        };
        let doc_index = chunk.docs.len();
        chunk.documents += 1;
        mapper.map(&doc, |ev| match ev {
            RowEvent::Row { element, cells } => {
                chunk.read += 1;
                write_row(&mut chunk.copy, chunk.rows.len(), &cells);
                chunk.rows.push(Origin { doc: doc_index as u32, element: element.map(|e| e as u32) });
            }
            RowEvent::Rejected(r) => {
                chunk.read += 1;
                chunk.rejects.push((doc_index, r));
            }
            RowEvent::Filtered(n) => {
                chunk.read += n;
                chunk.filtered += n;
            }
        });
        chunk.docs.push(doc);
        if chunk.rows.len() >= batch || chunk.docs.len() >= batch * 4 {
            let full = std::mem::replace(&mut chunk, Chunk::new(batch));
            if tx.blocking_send(Ok(Produced::Chunk(full))).is_err() {
                return; // the loader stopped; its error is reported there
            }
        }
    }
    if chunk.documents > 0 {
        let _ = tx.blocking_send(Ok(Produced::Chunk(chunk)));
    }
    let _ = tx.blocking_send(Ok(Produced::Done(mapper.stats)));
}

fn progress_bar(bars: &MultiProgress, m: &MappingPlan, len: Option<u64>, mode: ProgressMode) -> ProgressBar {
    if mode != ProgressMode::Bars {
        return ProgressBar::hidden();
    }
    let bar = bars.add(ProgressBar::new(len.unwrap_or(0)));
    let style = ProgressStyle::with_template("{prefix:24} [{bar:30}] {pos:>9}/{len:9} docs {per_sec:>12} eta {eta:>4}")
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ");
    bar.set_style(style);
    bar.set_prefix(m.name.clone());
    bar
}

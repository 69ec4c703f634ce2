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

pub mod coverage;
pub mod reader;
pub mod rejects;
pub mod report;

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use sqlx::{Connection, PgConnection};
use thiserror::Error;

use crate::pg::ledger::{self, Progress};
use crate::pg::sink::{DbRejection, TableSink};
use crate::pg::sql::{quote, sql};
use crate::plan::{MappingPlan, OnDuplicate, Plan};
use crate::run::rejects::{RejectRecord, RejectsFile};
use crate::run::report::{ColumnReport, MappingReport, RunReport};
use crate::source::changes::id_text;
use crate::source::{Source, SourceError};
use coverage::Inventory;
use reader::{Chunk, Encoding, FastEncoding, Produced, spawn_reader, unique_sets};

#[derive(Debug, Error)]
pub enum ExecError {
    #[error(transparent)]
    Source(#[from] SourceError),
    #[error("mapping `{mapping}`: PostgreSQL: {}", crate::pg::sql::pg_text(.source))]
    Db { mapping: String, source: sqlx::Error },
    #[error("writing the rejects file {path}: {source}")]
    Rejects { path: String, source: std::io::Error },
    #[error("stopped: {count} rejects, more than --max-rejects {limit} (see {path})")]
    TooManyRejects { limit: u64, count: u64, path: String },
    #[error("no mapping, collection or table is named `{name}`{}; the names are: {}", .guess.as_ref().map(|g| format!(" (did you mean `{g}`?)")).unwrap_or_default(), .names.join(", "))]
    UnknownSelection { name: String, guess: Option<String>, names: Vec<String> },
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
            let mut names: Vec<String> =
                plan.mappings.iter().flat_map(|m| [m.name.clone(), m.source.clone(), m.table.clone()]).collect();
            names.sort();
            names.dedup();
            let guess = crate::lang::diag::did_you_mean(name, names.iter().map(String::as_str)).map(str::to_string);
            return Err(ExecError::UnknownSelection { name: name.clone(), guess, names });
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
    let overall = overall_bar(&bars, 0, opts.progress);
    // One field inventory per collection, taken by the first mapping that
    // reads it from the start (`run::coverage`).
    let inventories: Mutex<BTreeMap<String, Inventory>> = Mutex::new(BTreeMap::new());
    let mut inventory_by: BTreeMap<&str, &str> = BTreeMap::new();
    for m in &selected {
        if !resume.contains_key(&m.name) {
            inventory_by.entry(m.source.as_str()).or_insert(m.name.as_str());
        }
    }
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
            let (todo, next, results, rejects, bars, total_rejects, inventories, inventory_by, overall) =
                (&todo, &next, &results, &rejects, &bars, &total_rejects, &inventories, &inventory_by, &overall);
            async move {
                loop {
                    let Some(&slot) = todo.get(next.fetch_add(1, Ordering::SeqCst)) else { return Ok::<(), ExecError>(()) };
                    let m = &plan.mappings[slot];
                    let r = if source.has(&m.source) {
                        let inventory = inventory_by.get(m.source.as_str()) == Some(&m.name.as_str());
                        let mut cx = MappingRun {
                            plan,
                            m,
                            source,
                            opts,
                            rejects,
                            bars,
                            total_rejects,
                            inventories,
                            inventory,
                            overall,
                        };
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
    overall.finish();
    let mut report = RunReport { dry_run: opts.dry_run, ..Default::default() };
    report.mappings = done.into_iter().map(|(_, r)| r).collect();
    report.seconds = started.elapsed().as_secs_f64();
    if rejects.written > 0 {
        report.rejects_file = Some(rejects.path().display().to_string());
        report.reject_reasons = rejects.summary(10);
    }
    let inventories = inventories.into_inner().unwrap_or_else(|p| p.into_inner());
    if !inventories.is_empty() {
        // A live server sends each mapping only the fields it reads: an
        // inventory then says nothing of another mapping's paths, nor of
        // what they all leave behind.
        let whole = source.whole_documents();
        let judged =
            selected.iter().copied().filter(|m| whole || inventory_by.get(m.source.as_str()) == Some(&m.name.as_str()));
        let mut cov = coverage::coverage(judged, &inventories);
        if !whole {
            cov.left_behind.clear();
        }
        report.coverage = Some(cov);
    }
    Ok(report)
}

/// Documents of each collection a load (not a dry run) takes the field
/// inventory of, for the coverage lines of its summary.
const INVENTORY_IN_A_LOAD: u64 = 20_000;

/// A poisoned lock only means another mapping panicked; its data is still usable.
/// Where a chunk goes: the sink, whether it copies straight into the
/// table, and the source fingerprint its checkpoint records.
#[derive(Clone, Copy)]
struct Loaded<'a> {
    sink: &'a TableSink,
    direct: bool,
    fingerprint: Option<&'a str>,
}

/// A mapping's report as it starts: fresh, or continued from the
/// interrupted run's progress.
fn initial_report(m: &MappingPlan, prior: Option<&Progress>) -> MappingReport {
    match prior {
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
    }
}

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
    inventories: &'a Mutex<BTreeMap<String, Inventory>>,
    /// Whether this mapping takes its collection's field inventory.
    inventory: bool,
    /// The bar over all mappings.
    overall: &'a ProgressBar,
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
        // `on_duplicate = "first" | "last"` needs every earlier row's key:
        // an interrupted mapping of that kind reads its source again from
        // the start (rows loaded before come back unchanged).
        let prior = prior.filter(|_| m.on_duplicate == OnDuplicate::Reject);
        let mut r = initial_report(m, prior);
        let from = prior.and_then(|p| p.position.clone());
        let fingerprint = self.source.fingerprint(&m.source);
        // For progress only: an estimate, never a scan of a live collection.
        let expected = self.source.estimated_count(m).await;
        let bar = progress_bar(self.bars, m, expected, self.opts.progress);
        bar.set_position(r.documents);
        // Documents read before an interruption are no speed of this run.
        bar.reset_eta();
        if let Some(e) = expected {
            self.overall.inc_length(e);
            self.overall.inc(r.documents);
        }
        tracing::info!(mapping = %m.name, source = %m.source, table = %m.table, documents = %expected.map_or_else(|| "unknown".to_string(), |e| e.to_string()), resumed = from.is_some(), "mapping started");

        let (sink, encoding) = self.prepare(slot, conn.as_deref_mut(), prior.is_none()).await?;
        let direct = encoding.fast.is_some();
        let (mut rx, reader) = spawn_reader(self.source, m, from, self.opts.batch_size, encoding);
        let mut stats = Vec::new();
        // Off a terminal, a plain line at least every 10 s, chunks or not.
        let lines = self.opts.progress == ProgressMode::Lines;
        let mut tick =
            tokio::time::interval_at(tokio::time::Instant::now() + Duration::from_secs(10), Duration::from_secs(10));
        loop {
            let item = tokio::select! {
                item = rx.recv() => item,
                _ = tick.tick(), if lines => {
                    let total = expected.map(|e| format!("/{e}")).unwrap_or_default();
                    tracing::info!(
                        "{}: {}{} documents, {} rows read, {} loaded, {} rejected",
                        m.name, r.documents, total, r.read, r.loaded, r.rejected
                    );
                    continue;
                }
            };
            let Some(item) = item else { break };
            let chunk = match item? {
                Produced::Chunk(c) => c,
                Produced::Done(s, inventory) => {
                    stats = s;
                    if let Some(inv) = inventory {
                        lock(self.inventories).insert(m.source.clone(), inv);
                    }
                    break;
                }
            };
            let loaded = Loaded { sink: &sink, direct, fingerprint: fingerprint.as_deref() };
            if let Err(e) = self.load(&mut r, &chunk, conn.as_deref_mut(), loaded).await {
                bar.abandon();
                return Err(e);
            }
            bar.inc(chunk.documents);
            self.overall.inc(chunk.documents);
            if m.unwind.is_some() {
                bar.set_message(format!("· {} rows ", r.read));
            }
        }
        if reader.join().is_err() {
            return Err(ExecError::ReaderPanicked(m.name.clone()));
        }
        self.finish(&mut r, conn, &sink, fingerprint.as_deref(), started).await?;
        r.columns = m
            .columns
            .iter()
            .zip(stats)
            .map(|(c, s)| ColumnReport { column: c.name.clone(), nulls: s.nulls, defaults: s.defaults })
            .collect();
        bar.finish();
        tracing::info!(
            mapping = %m.name, read = r.read, loaded = r.loaded, inserted = r.inserted, updated = r.updated,
            rejected = r.rejected, filtered = r.filtered, seconds = r.seconds, "mapping finished"
        );
        Ok(r)
    }

    /// The sink on this connection (none for a dry run) and how the reader
    /// encodes rows for it: straight into an empty table on a first load,
    /// binary where every type allows, repeated keys rejected by a dry run.
    async fn prepare(
        &mut self,
        slot: usize,
        conn: Option<&mut PgConnection>,
        first: bool,
    ) -> Result<(TableSink, Encoding), ExecError> {
        let m = self.m;
        let mut sink = TableSink::new(self.plan, m, slot);
        sink.run_id = self.opts.run_id;
        let mut fast = None;
        let dry = conn.is_none();
        if let Some(c) = conn {
            sink.prepare(c, m).await.map_err(|e| self.db(e))?;
            if first {
                // Read from the start: what was rejected is decided again.
                ledger::forget_rejected(c, &m.name).await.map_err(|e| self.db(e))?;
            }
            // Straight into the table only where PostgreSQL itself refuses
            // orphans: a reference the schema does not constrain (a natural
            // key declared in the mapping) is checked on the staging path.
            let constrained = m
                .columns
                .iter()
                .filter(|c| c.references.is_some())
                .all(|c| self.plan.schema.table(&m.table).is_some_and(|t| t.foreign_key_on(&c.name).is_some()));
            if first && constrained {
                let stmt = format!("SELECT NOT EXISTS (SELECT 1 FROM {})", quote(&m.table));
                let empty: bool = sqlx::query_scalar(sql(stmt)).fetch_one(&mut *c).await.map_err(|e| self.db(e))?;
                if empty {
                    fast = FastEncoding::for_mapping(m, chrono::Utc::now());
                }
            }
        }
        tracing::debug!(mapping = %m.name, direct_copy = fast.is_some());
        let dedupe = if dry { unique_sets(self.plan, m) } else { Vec::new() };
        let binary = sink.binary.clone();
        // A dry run looks at every document; a load at the first ones, to
        // keep its cost bounded (the summary says how many).
        let inventory = self.inventory.then_some(if dry { None } else { Some(INVENTORY_IN_A_LOAD) });
        Ok((sink, Encoding { fast, binary, dedupe, inventory }))
    }

    /// One chunk: loaded (or counted, in a dry run), its rejects written
    /// and flushed, then committed together with its checkpoint.
    async fn load(
        &mut self,
        r: &mut MappingReport,
        chunk: &Chunk,
        conn: Option<&mut PgConnection>,
        to: Loaded<'_>,
    ) -> Result<(), ExecError> {
        r.documents += chunk.documents;
        r.read += chunk.read;
        r.filtered += chunk.filtered;
        r.duplicates += chunk.duplicates;
        r.document_outcomes.add(&chunk.outcomes);
        let mut db_rejects: Vec<DbRejection> = Vec::new();
        let tx = match conn {
            Some(c) if !chunk.rows.is_empty() => {
                let keys = to.direct.then_some(chunk.keys.as_slice());
                let (res, tx) = to
                    .sink
                    .load_chunk(c, &chunk.copy, chunk.rows.len(), keys, &mut db_rejects)
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
        let rejected = self.write_rejects(chunk, &db_rejects)?;
        r.nulled += db_rejects.iter().filter(|d| d.warning).count() as u64;
        r.rejected += rejected;
        let total = self.total_rejects.fetch_add(rejected, Ordering::SeqCst) + rejected;
        // Rejects reach the disk before the chunk commits: a crash in
        // between repeats a reject on resume rather than losing it.
        let flushed = lock(self.rejects).flush();
        flushed.map_err(|e| self.rejects_err(e))?;
        if let Some(mut tx) = tx {
            let refused = rejected_documents(self.plan, self.m, chunk, &db_rejects);
            ledger::set_rejected(&mut tx, &self.m.name, &[], &refused).await.map_err(|e| self.db(e))?;
            ledger::save_progress(&mut tx, self.opts.run_id, r, Some(&chunk.position), to.fingerprint, false)
                .await
                .map_err(|e| self.db(e))?;
            tx.commit().await.map_err(|e| self.db(e))?;
        }
        if let Some(limit) = self.opts.max_rejects
            && total > limit
        {
            let path = lock(self.rejects).path().display().to_string();
            return Err(ExecError::TooManyRejects { limit, count: total, path });
        }
        Ok(())
    }

    /// After the last chunk: the self-reference pass, then the mapping's
    /// final record, in one transaction.
    async fn finish(
        &mut self,
        r: &mut MappingReport,
        conn: Option<&mut PgConnection>,
        sink: &TableSink,
        fingerprint: Option<&str>,
        started: Instant,
    ) -> Result<(), ExecError> {
        if let Some(c) = conn {
            let mut tx = c.begin().await.map_err(|e| self.db(e))?;
            if sink.has_self_references() {
                r.dangling = self.self_references(sink, &mut tx).await?;
            }
            r.seconds += started.elapsed().as_secs_f64();
            r.rows_per_second = if r.seconds > 0.0 { r.loaded as f64 / r.seconds } else { 0.0 };
            ledger::save_progress(&mut tx, self.opts.run_id, r, None, fingerprint, true)
                .await
                .map_err(|e| self.db(e))?;
            ledger::record_mapping(&mut tx, self.opts.run_id, r).await.map_err(|e| self.db(e))?;
            tx.commit().await.map_err(|e| self.db(e))?;
        } else {
            r.seconds += started.elapsed().as_secs_f64();
        }
        r.rows_per_second = if r.seconds > 0.0 { r.loaded as f64 / r.seconds } else { 0.0 };
        Ok(())
    }

    /// Writes a chunk's rejects and warnings; returns how many rejects.
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
                warning: false,
                event: None,
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
                warning: rej.warning,
                event: None,
            };
            file.write(&rec)
                .map_err(|source| ExecError::Rejects { path: file.path().display().to_string(), source })?;
        }
        Ok((chunk.rejects.len() + db_rejects.iter().filter(|r| !r.warning).count()) as u64)
    }

    /// The second pass: the whole collection again, its keys and parents
    /// only (a live server sends just those fields), into a stage of its own
    /// (one transaction), then every self-reference set from it. Returns how
    /// many point at rows that do not exist; those are reported as rejects.
    async fn self_references(&mut self, sink: &TableSink, tx: &mut PgConnection) -> Result<u64, ExecError> {
        let m = self.m;
        let keep = TableSink::self_reference_columns(m);
        let reduced = m.with_columns(&keep);
        let (stage, binary) = sink.prepare_self_stage(tx, m, &keep).await.map_err(|e| self.db(e))?;
        let encoding = Encoding { fast: None, binary, dedupe: Vec::new(), inventory: None };
        let (mut rx, reader) = spawn_reader(self.source, &reduced, None, self.opts.batch_size, encoding);
        while let Some(item) = rx.recv().await {
            match item? {
                Produced::Chunk(c) if !c.rows.is_empty() => {
                    sink.copy_to_self_stage(tx, &stage, m, &keep, &c.copy).await.map_err(|e| self.db(e))?;
                }
                Produced::Chunk(_) => {}
                Produced::Done(..) => break,
            }
        }
        if reader.join().is_err() {
            return Err(ExecError::ReaderPanicked(m.name.clone()));
        }
        let dangling = sink.set_self_references(tx, m, &stage).await.map_err(|e| self.db(e))?;
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
                warning: true,
                event: None,
            };
            let written = lock(self.rejects).write(&rec);
            written.map_err(|e| self.rejects_err(e))?;
        }
        Ok(dangling.len() as u64)
    }
}

/// The chunk's documents with rejected rows, and how many each: what the
/// ledger keeps as rejected now (`validate` counts on it).
fn rejected_documents(
    plan: &Plan,
    m: &MappingPlan,
    chunk: &Chunk,
    db_rejects: &[DbRejection],
) -> Vec<ledger::RejectedDoc> {
    let mut by_doc: BTreeMap<usize, (i64, Option<ledger::Parent>)> = BTreeMap::new();
    for (doc, _) in &chunk.rejects {
        by_doc.entry(*doc).or_default().0 += 1;
    }
    for d in db_rejects.iter().filter(|d| !d.warning) {
        let e = by_doc.entry(chunk.rows[d.ord].doc as usize).or_default();
        e.0 += 1;
        // An orphan names what it waits for.
        let col = d.column.as_deref().and_then(|c| m.columns.iter().find(|mc| mc.name == c));
        if let (Some(col), Some(v), None) = (col, &d.points_at, &e.1)
            && let (Some(t), Some(rc)) = (&col.references, plan.referenced_column(m, col))
        {
            e.1 = Some((t.clone(), rc, v.clone()));
        }
    }
    by_doc
        .into_iter()
        .map(|(doc, (rows, parent))| {
            let id = match chunk.docs.get(doc) {
                Some(crate::source::SourceItem::Doc(d)) => {
                    d.get("_id").ok().flatten().and_then(|v| bson::Bson::try_from(v).ok()).map(|b| id_text(&b))
                }
                _ => None,
            };
            // A document without a readable `_id`: where it is in the source.
            let id = id.unwrap_or_else(|| match chunk.locations.get(&doc) {
                Some(at) => format!("at {at}"),
                None => format!("unreadable document {doc} of a chunk ending at {:?}", chunk.position),
            });
            ledger::RejectedDoc { doc_id: id, rows, parent }
        })
        .collect()
}

/// A mapping's bar: as wide as the terminal, documents read of the
/// collection's, rows (array elements for `unwind` mappings) as the
/// summary counts them, and a rate and ETA only once they mean something.
fn progress_bar(bars: &MultiProgress, m: &MappingPlan, len: Option<u64>, mode: ProgressMode) -> ProgressBar {
    if mode != ProgressMode::Bars {
        return ProgressBar::hidden();
    }
    let bar = bars.add(ProgressBar::new(len.unwrap_or(0)));
    let style = ProgressStyle::with_template("{prefix:.bold} {wide_bar} {pos}/{len} docs {msg}{rate}")
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .with_key("rate", |s: &indicatif::ProgressState, w: &mut dyn std::fmt::Write| {
            // Nothing until a second of work has been measured.
            if s.elapsed() >= Duration::from_secs(1) && s.per_sec() > 0.0 {
                let _ = write!(w, " {:.0}/s eta {}s", s.per_sec(), s.eta().as_secs());
            }
        })
        .progress_chars("=> ");
    bar.set_style(style);
    bar.set_prefix(m.name.clone());
    bar
}

/// The bar over all mappings: documents of every selected collection, and
/// the time since the run began.
fn overall_bar(bars: &MultiProgress, len: u64, mode: ProgressMode) -> ProgressBar {
    if mode != ProgressMode::Bars {
        return ProgressBar::hidden();
    }
    let bar = bars.add(ProgressBar::new(len));
    let style = ProgressStyle::with_template("{prefix:.bold} {wide_bar} {pos}/{len} docs, {elapsed} elapsed")
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("#- ");
    bar.set_style(style);
    bar.set_prefix("all mappings");
    bar
}

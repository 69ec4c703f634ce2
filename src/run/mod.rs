//! Executes a plan as tasks (`run::tasks`): workers, one per connection,
//! claim the next task, do it, and claim again until every task is done.
//! A load task streams one range of a mapping's collection through the row
//! mapper into the sink; a build task gives a table loaded before its keys
//! its keys, indexes and constraints (`run::build`).
//!
//! Reading and transforming run on a thread of their own and hand COPY-ready
//! chunks to the loader through a bounded channel, so reading, transforming
//! and writing overlap and only a few chunks are in memory whatever the
//! collection's size. Each chunk commits together with its task's
//! checkpoint (how far the range got), so an interrupted run continues
//! where it stopped and ends with the same database as an uninterrupted one.
//!
//! Knows the plan, the source and the sink; nothing of TOML or of the command line.

pub mod build;
pub mod coverage;
pub mod reader;
pub mod rejects;
pub mod report;
pub mod start;
pub mod tasks;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use sqlx::{Connection, PgConnection};
use thiserror::Error;

use crate::pg::claims;
use crate::pg::ledger;
use crate::pg::sink::{ChunkOrigin, DbRejection, TableSink};
use crate::pg::sql::{quote, sql};
use crate::plan::{MappingPlan, OnDuplicate, Plan};
use crate::run::rejects::{RejectRecord, RejectsFile};
use crate::run::report::{BuildReport, ColumnReport, Correction, MappingReport, RunReport};
use crate::source::changes::id_text;
use crate::source::{Source, SourceError, SourceItem};
use coverage::Inventory;
use reader::{Chunk, Encoding, FastEncoding, Produced, UniqueSet, spawn_reader, unique_sets};
use tasks::{Board, Claimed, Kind, Next};

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
    #[error(
        "{what}: another worker took this task over (this one held it past its lease of {lease:.0} s); nothing of it was committed after that"
    )]
    LostClaim { what: String, lease: f64 },
    #[error("{0}")]
    Plan(String),
}

impl ExecError {
    /// Whether committed work survives and a re-run continues it.
    pub fn resumable(&self) -> bool {
        matches!(
            self,
            ExecError::Source(_) | ExecError::Db { .. } | ExecError::ReaderPanicked(_) | ExecError::LostClaim { .. }
        )
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
    /// Workers of a dry run (a real run's are the connections it is given).
    pub jobs: usize,
    /// Documents per range when a collection is read by several workers.
    pub range_size: u64,
    /// Whether collections are cut into ranges.
    pub split: crate::source::Split,
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
            range_size: DEFAULT_RANGE_SIZE,
            split: crate::source::Split::Auto,
        }
    }
}

/// Documents per range of a collection read in parallel, by default: large
/// enough that a range's fixed costs (a reader, a stream, a claim) vanish,
/// small enough that the ranges of a large collection balance the workers.
pub const DEFAULT_RANGE_SIZE: u64 = 100_000;

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

/// What every worker of a run shares.
struct Shared<'a, 'r> {
    plan: &'a Plan,
    source: &'a Source,
    opts: &'a RunOptions,
    board: &'a Board,
    rejects: Mutex<&'r mut RejectsFile>,
    bars: MultiProgress,
    total_rejects: AtomicU64,
    /// One field inventory per collection, taken by the first range of the
    /// first mapping that reads it from the start (`run::coverage`).
    inventories: Mutex<BTreeMap<String, Inventory>>,
    inventory_by: BTreeMap<&'a str, &'a str>,
    /// The bar over all mappings.
    overall: ProgressBar,
    /// Each mapping's bar, shared by its ranges.
    mapping_bars: Mutex<BTreeMap<usize, ProgressBar>>,
    /// Documents each mapping had read before this process took its tasks
    /// on (an interrupted run's work).
    resumed: Mutex<BTreeMap<usize, u64>>,
    builds: Mutex<Vec<BuildReport>>,
    /// Told whenever a worker of this process finishes a task, so the
    /// others waiting for it look again at once.
    finished: tokio::sync::Notify,
}

/// Runs the selected mappings as the board's tasks: one worker per
/// connection in `conns` (a dry run, with none, has `opts.jobs` workers).
/// `heartbeat` is the target to keep this process's claims alive from.
pub async fn run(
    plan: &Plan,
    source: &Source,
    conns: &mut [PgConnection],
    opts: &RunOptions,
    rejects: &mut RejectsFile,
    board: &Board,
    heartbeat: Option<&str>,
) -> Result<RunReport, ExecError> {
    let started = Instant::now();
    let selected = select(plan, &opts.only)?;
    let bars = MultiProgress::with_draw_target(match opts.progress {
        ProgressMode::Bars => ProgressDrawTarget::stderr(),
        _ => ProgressDrawTarget::hidden(),
    });
    let db = |source| ExecError::Db { mapping: "(the run's tasks)".into(), source };
    let before = board.states(plan, conns.first_mut()).await.map_err(db)?;
    let mut inventory_by: BTreeMap<&str, &str> = BTreeMap::new();
    for m in &selected {
        let fresh = !before.iter().any(|s| {
            s.task.mapping.is_some_and(|i| std::ptr::eq(&plan.mappings[i], *m)) && (s.done || s.report.is_some())
        });
        if fresh {
            inventory_by.entry(m.source.as_str()).or_insert(m.name.as_str());
        }
    }
    let overall = overall_bar(&bars, 0, opts.progress);
    let shared = Shared {
        plan,
        source,
        opts,
        board,
        rejects: Mutex::new(&mut *rejects),
        bars,
        total_rejects: AtomicU64::new(0),
        inventories: Mutex::new(BTreeMap::new()),
        inventory_by,
        overall,
        mapping_bars: Mutex::new(BTreeMap::new()),
        resumed: Mutex::new(BTreeMap::new()),
        builds: Mutex::new(Vec::new()),
        finished: tokio::sync::Notify::new(),
    };
    let beat = match (board, heartbeat) {
        (Board::Ledger { run_id, worker, .. }, Some(url)) => {
            Some(tokio::spawn(heartbeat_loop(url.to_string(), *run_id, worker.name.clone(), worker.lease)))
        }
        _ => None,
    };
    let workers: Vec<Option<&mut PgConnection>> = if conns.is_empty() {
        (0..opts.jobs.max(1)).map(|_| None).collect()
    } else {
        conns.iter_mut().map(Some).collect()
    };
    let shared_ref = &shared;
    let work = workers.into_iter().map(|conn| worker(shared_ref, conn));
    let outcome = futures::future::try_join_all(work).await;
    if let Some(b) = beat {
        b.abort();
    }
    outcome?;
    let states = board.states(plan, conns.first_mut()).await.map_err(db)?;
    let Shared { rejects, overall, inventories, inventory_by, resumed, builds, .. } = shared;
    let rejects = rejects.into_inner().unwrap_or_else(|p| p.into_inner());
    rejects.flush().map_err(|source| ExecError::Rejects { path: rejects.path().display().to_string(), source })?;
    overall.finish();
    let mut report = RunReport { dry_run: opts.dry_run, ..Default::default() };
    let resumed = resumed.into_inner().unwrap_or_else(|p| p.into_inner());
    report.mappings = mapping_reports(plan, &selected, &before, &states, &resumed);
    report.builds = builds.into_inner().unwrap_or_else(|p| p.into_inner());
    report.builds.sort_by(|a, b| a.table.cmp(&b.table));
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

/// One worker: claims tasks and does them until the board has none left.
async fn worker(shared: &Shared<'_, '_>, mut conn: Option<&mut PgConnection>) -> Result<(), ExecError> {
    let mut idle = Duration::from_millis(20);
    loop {
        // Listening before asking: a task finished in between still wakes us.
        let finished = shared.finished.notified();
        tokio::pin!(finished);
        finished.as_mut().enable();
        let next = shared
            .board
            .next(shared.plan, conn.as_deref_mut())
            .await
            .map_err(|source| ExecError::Db { mapping: "(claiming a task)".into(), source })?;
        let claimed = match next {
            Next::Done => {
                shared.finished.notify_waiters();
                return Ok(());
            }
            Next::Wait => {
                // Another worker holds what is left, or what it waits for:
                // one of this process says so when it is done; another
                // process's workers are polled, less and less often.
                tokio::select! {
                    _ = finished => {}
                    _ = tokio::time::sleep(idle) => idle = (idle * 2).min(Duration::from_millis(500)),
                }
                continue;
            }
            Next::Task(c) => c,
        };
        idle = Duration::from_millis(20);
        let done = match claimed.task.kind {
            Kind::Load => {
                let Some(slot) = claimed.task.mapping else {
                    return Err(ExecError::Plan(format!(
                        "task {} names a mapping the mapping files no longer have",
                        claimed.task.id
                    )));
                };
                let m = &shared.plan.mappings[slot];
                let mut cx = MappingRun { shared, m, slot };
                cx.load_task(&claimed, conn.as_deref_mut()).await
            }
            Kind::Build => build::build_table(shared, &claimed, conn.as_deref_mut()).await,
        };
        shared.finished.notify_waiters();
        done?;
    }
}

/// Keeps this process's claims alive while it works: a task can take
/// longer between checkpoints than its lease (a big build, a slow source).
async fn heartbeat_loop(url: String, run_id: i64, worker: String, lease: f64) {
    let every = Duration::from_secs_f64((lease / 3.0).max(0.2));
    let mut conn = None;
    loop {
        tokio::time::sleep(every).await;
        if conn.is_none() {
            conn = crate::pg::target::connect(&url).await.ok();
        }
        if let Some(c) = conn.as_mut()
            && let Err(e) = claims::renew(c, run_id, &worker, lease).await
        {
            tracing::warn!("renewing this worker's claims: {e}");
            conn = None;
        }
    }
}

/// Each selected mapping's report: what its tasks did, the builds'
/// corrections included, and whether it continued an interrupted run.
fn mapping_reports(
    plan: &Plan,
    selected: &[&MappingPlan],
    before: &[tasks::State],
    states: &[tasks::State],
    resumed: &BTreeMap<usize, u64>,
) -> Vec<MappingReport> {
    let mut out = Vec::new();
    for m in selected {
        let slot = plan.mappings.iter().position(|x| std::ptr::eq(x, *m)).unwrap_or_default();
        let mut r = MappingReport {
            mapping: m.name.clone(),
            source: m.source.clone(),
            table: m.table.clone(),
            ..Default::default()
        };
        let mine =
            |s: &&tasks::State| s.task.mapping == Some(slot) || (s.task.kind == Kind::Build && s.task.table == m.table);
        for s in states.iter().filter(mine) {
            let Some(json) = &s.report else { continue };
            match s.task.kind {
                Kind::Load => {
                    if let Ok(p) = serde_json::from_value::<MappingReport>(json.clone()) {
                        r.absorb(&p);
                    }
                }
                Kind::Build => {
                    if let Some(c) =
                        json.get(&m.name).and_then(|v| serde_json::from_value::<Correction>(v.clone()).ok())
                    {
                        r.correct(&c);
                    }
                }
            }
        }
        let all_before = before.iter().filter(mine).count() > 0 && before.iter().filter(mine).all(|s| s.done);
        if all_before {
            r.resumed = Some("loaded before the interruption".into());
        } else if let Some(n) = resumed.get(&slot) {
            r.resumed = Some(format!("continued after {n} documents"));
        }
        r.rows_per_second = if r.seconds > 0.0 { r.loaded as f64 / r.seconds } else { 0.0 };
        out.push(r);
    }
    out
}

/// Documents of each collection a load (not a dry run) takes the field
/// inventory of, for the coverage lines of its summary.
const INVENTORY_IN_A_LOAD: u64 = 20_000;

/// Where a chunk goes: the sink, whether it copies straight into the
/// table, the source fingerprint its checkpoint records, and the task.
#[derive(Clone, Copy)]
struct Loaded<'a> {
    sink: &'a TableSink,
    direct: bool,
    fingerprint: Option<&'a str>,
    task: &'a Claimed,
}

/// A poisoned lock only means another worker panicked; its data is still usable.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// One mapping's part of a run: a range of its collection, or its rows in a build.
struct MappingRun<'a, 'b, 'r> {
    shared: &'a Shared<'b, 'r>,
    m: &'b MappingPlan,
    /// The mapping's index in the plan.
    slot: usize,
}

impl MappingRun<'_, '_, '_> {
    fn db(&self, source: sqlx::Error) -> ExecError {
        ExecError::Db { mapping: self.m.name.clone(), source }
    }

    fn rejects_err(&self, source: std::io::Error) -> ExecError {
        ExecError::Rejects { path: lock(&self.shared.rejects).path().display().to_string(), source }
    }

    /// The mapping's bar, made by its first range, and the overall bar's share.
    async fn bar(&self, already: u64) -> ProgressBar {
        let made = lock(&self.shared.mapping_bars).get(&self.slot).cloned();
        if let Some(b) = made {
            b.inc(already);
            self.shared.overall.inc(already);
            return b;
        }
        // For progress only: an estimate, never a scan of a live collection.
        let expected = self.shared.source.estimated_count(self.m).await;
        let mut bars = lock(&self.shared.mapping_bars);
        if let Some(b) = bars.get(&self.slot) {
            b.inc(already);
            self.shared.overall.inc(already);
            return b.clone();
        }
        let bar = progress_bar(&self.shared.bars, self.m, expected, self.shared.opts.progress);
        if let Some(e) = expected {
            self.shared.overall.inc_length(e);
        }
        bar.set_position(already);
        self.shared.overall.inc(already);
        // Documents read before an interruption are no speed of this run.
        bar.reset_eta();
        bars.insert(self.slot, bar.clone());
        bar
    }

    /// A load task: one range of the mapping's collection, from its
    /// checkpoint if it has one, chunk by chunk, each committed with the
    /// task's next checkpoint.
    async fn load_task(&mut self, task: &Claimed, mut conn: Option<&mut PgConnection>) -> Result<(), ExecError> {
        let m = self.m;
        let t = &task.task;
        let deferred = self.shared.board.deferred(&m.table);
        let fresh = || MappingReport {
            mapping: m.name.clone(),
            source: m.source.clone(),
            table: m.table.clone(),
            ..Default::default()
        };
        if !self.shared.source.has(&m.source) {
            if t.range_no == 0 {
                tracing::warn!(mapping = %m.name, "the source has no collection `{}`: nothing to load", m.source);
            }
            return self.complete(task, conn, &fresh(), None).await;
        }
        let started = Instant::now();
        // `on_duplicate = "first" | "last"` needs every earlier row's key:
        // an interrupted task of that kind reads its range again from the
        // start (rows loaded before come back unchanged).
        let prior: Option<MappingReport> = task
            .report
            .as_ref()
            .and_then(|r| serde_json::from_value(r.clone()).ok())
            .filter(|_| m.on_duplicate == OnDuplicate::Reject);
        let from = match &prior {
            Some(_) => task.position.clone(),
            None => t.range.start.clone(),
        };
        let mut r = prior.clone().unwrap_or_else(fresh);
        if prior.is_some() {
            *lock(&self.shared.resumed).entry(self.slot).or_default() += r.documents;
            // Kept with the task, for `status --history`.
            r.resumed = Some(format!("continued after {} documents", r.documents));
        }
        let fingerprint = self.shared.source.fingerprint(&m.source);
        let bar = self.bar(r.documents).await;
        tracing::info!(
            mapping = %m.name, source = %m.source, table = %m.table, range = format!("{}/{}", t.range_no + 1, t.ranges),
            resumed = prior.is_some(), deferred, "mapping started"
        );
        let inventory = t.range_no == 0
            && prior.is_none()
            && self.shared.inventory_by.get(m.source.as_str()) == Some(&m.name.as_str());
        let (mut sink, encoding) = self.prepare(conn.as_deref_mut(), prior.is_none(), deferred, inventory).await?;
        let direct = encoding.fast.is_some();
        let batch = self.shared.opts.batch_size;
        let (mut rx, reader) = spawn_reader(self.shared.source, m, from, t.range.end.clone(), batch, encoding);
        // The sink reads its key columns' types (and, off the direct path,
        // makes its staging table) while the reader fills its first chunk:
        // nothing it encodes depends on them.
        if let Some(c) = conn.as_deref_mut() {
            sink.prepare(c, m, !direct).await.map_err(|e| self.db(e))?;
        }
        let mut stats = Vec::new();
        // Off a terminal, a plain line at least every 10 s, chunks or not.
        let lines = self.shared.opts.progress == ProgressMode::Lines;
        let mut tick =
            tokio::time::interval_at(tokio::time::Instant::now() + Duration::from_secs(10), Duration::from_secs(10));
        let part = if t.ranges > 1 { format!(" (range {}/{})", t.range_no + 1, t.ranges) } else { String::new() };
        loop {
            let item = tokio::select! {
                item = rx.recv() => item,
                _ = tick.tick(), if lines => {
                    tracing::info!(
                        "{}{part}: {} documents, {} rows read, {} loaded, {} rejected",
                        m.name, r.documents, r.read, r.loaded, r.rejected
                    );
                    continue;
                }
            };
            let Some(item) = item else { break };
            let chunk = match item? {
                Produced::Chunk(c) => c,
                Produced::Done(s, inv) => {
                    stats = s;
                    if let Some(inv) = inv {
                        lock(&self.shared.inventories).insert(m.source.clone(), inv);
                    }
                    break;
                }
            };
            let loaded = Loaded { sink: &sink, direct, fingerprint: fingerprint.as_deref(), task };
            if let Err(e) = self.load(&mut r, &chunk, conn.as_deref_mut(), loaded).await {
                bar.abandon();
                return Err(e);
            }
            bar.inc(chunk.documents);
            self.shared.overall.inc(chunk.documents);
            if m.unwind.is_some() {
                bar.set_message(format!("· {} rows ", r.read));
            }
        }
        if reader.join().is_err() {
            return Err(ExecError::ReaderPanicked(m.name.clone()));
        }
        r.seconds += started.elapsed().as_secs_f64();
        r.columns = m
            .columns
            .iter()
            .zip(stats)
            .map(|(c, s)| ColumnReport { column: c.name.clone(), nulls: s.nulls, defaults: s.defaults })
            .collect();
        // Rows of a deferred table are final after its build, which records the mapping.
        let sink = if deferred { None } else { Some(&sink) };
        self.complete(task, conn, &r, sink).await?;
        if lock(&self.shared.mapping_bars)
            .get(&self.slot)
            .is_some_and(|b| b.length().is_some_and(|l| b.position() >= l))
        {
            bar.finish();
        }
        tracing::info!(
            mapping = %m.name, read = r.read, loaded = r.loaded, inserted = r.inserted, updated = r.updated,
            rejected = r.rejected, filtered = r.filtered, seconds = r.seconds, "mapping finished"
        );
        Ok(())
    }

    /// The sink (its temporary tables are made by the caller once the
    /// reader runs) and how the reader encodes rows for it: straight into
    /// an empty (or deferred) table on a first load, binary where every
    /// type allows, repeated keys rejected by a dry run (over the whole
    /// collection) and a deferred load (within each chunk; its build judges
    /// the rest).
    async fn prepare(
        &mut self,
        conn: Option<&mut PgConnection>,
        first: bool,
        deferred: bool,
        inventory: bool,
    ) -> Result<(TableSink, Encoding), ExecError> {
        let m = self.m;
        let plan = self.shared.plan;
        let mut sink = TableSink::new(plan, m, self.slot);
        sink.run_id = self.shared.opts.run_id;
        sink.deferred = deferred;
        let mut fast = None;
        let dry = conn.is_none();
        if let Some(c) = conn {
            if deferred {
                fast = FastEncoding::for_mapping(m, chrono::Utc::now());
                if build::self_references_in_the_load(plan, m) {
                    fast = fast.map(FastEncoding::keeping_self_references);
                }
            } else {
                if first {
                    // Read from the start: what was rejected is decided again.
                    ledger::forget_rejected(c, &m.name).await.map_err(|e| self.db(e))?;
                }
                // Straight into the table only where PostgreSQL itself refuses
                // orphans: a reference the schema does not constrain (a natural
                // key declared in the mapping) is checked on the staging path.
                if first && start::direct_copy_possible(plan, m) {
                    let stmt = format!("SELECT NOT EXISTS (SELECT 1 FROM {})", quote(&m.table));
                    let empty: bool = sqlx::query_scalar(sql(stmt)).fetch_one(&mut *c).await.map_err(|e| self.db(e))?;
                    if empty {
                        fast = FastEncoding::for_mapping(m, chrono::Utc::now());
                    }
                }
            }
        }
        tracing::debug!(mapping = %m.name, direct_copy = fast.is_some(), deferred);
        let dedupe = if dry {
            unique_sets(plan, m)
        } else if deferred && !m.key.is_empty() && m.on_duplicate == OnDuplicate::Reject {
            vec![UniqueSet { columns: m.key.clone(), reason: crate::pg::sink::DUPLICATE_KEY.to_string() }]
        } else {
            Vec::new()
        };
        let binary = sink.binary.clone();
        // A dry run looks at every document; a load at the first ones, to
        // keep its cost bounded (the summary says how many).
        let inventory = inventory.then_some(if dry { None } else { Some(INVENTORY_IN_A_LOAD) });
        let hold_docs = !self.shared.source.rereads_exactly();
        Ok((sink, Encoding { fast, binary, dedupe, dedupe_per_chunk: deferred, inventory, hold_docs }))
    }

    /// One chunk: loaded (or counted, in a dry run), its rejects written
    /// and flushed, then committed together with its task's checkpoint.
    async fn load(
        &mut self,
        r: &mut MappingReport,
        chunk: &Chunk,
        conn: Option<&mut PgConnection>,
        to: Loaded<'_>,
    ) -> Result<(), ExecError> {
        let origin = ChunkOrigin {
            order: [self.slot as i64, i64::from(to.task.task.range_no), r.documents as i64],
            first: chunk.start.as_ref().map(|p| serde_json::to_value(p).unwrap_or_default()),
            last: Some(serde_json::to_value(&chunk.position).unwrap_or_default()),
        };
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
                    .load_chunk(c, &chunk.copy, chunk.rows.len(), keys, Some(&origin), &mut db_rejects)
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
        let docs = ChunkDocs { chunk, again: self.reread_refused(chunk, &db_rejects).await? };
        let rejected = self.write_rejects(&docs, &db_rejects)?;
        r.nulled += db_rejects.iter().filter(|d| d.warning).count() as u64;
        r.rejected += rejected;
        let total = self.shared.total_rejects.fetch_add(rejected, Ordering::SeqCst) + rejected;
        // Rejects reach the disk before the chunk commits: a crash in
        // between repeats a reject on resume rather than losing it.
        let flushed = lock(&self.shared.rejects).flush();
        flushed.map_err(|e| self.rejects_err(e))?;
        if let Some(mut tx) = tx {
            let refused = rejected_documents(self.shared.plan, self.m, &docs, &db_rejects);
            ledger::set_rejected(&mut tx, &self.m.name, &[], &refused).await.map_err(|e| self.db(e))?;
            let position = serde_json::to_value(&chunk.position).unwrap_or_default();
            let report = serde_json::to_value(&*r).unwrap_or_default();
            let t = to.task;
            let held = claims::checkpoint(
                &mut tx,
                self.shared.opts.run_id,
                t.task.id,
                t.claim,
                Some(&position),
                &report,
                to.fingerprint,
                self.shared.board.lease(),
            )
            .await
            .map_err(|e| self.db(e))?;
            if !held {
                return Err(self.lost());
            }
            tx.commit().await.map_err(|e| self.db(e))?;
        }
        if let Some(limit) = self.shared.opts.max_rejects
            && total > limit
        {
            let path = lock(&self.shared.rejects).path().display().to_string();
            return Err(ExecError::TooManyRejects { limit, count: total, path });
        }
        Ok(())
    }

    fn lost(&self) -> ExecError {
        ExecError::LostClaim { what: format!("mapping `{}`", self.m.name), lease: self.shared.board.lease() }
    }

    /// After a task's last chunk: for a table with its keys, the
    /// self-reference pass and the mapping's final record; then the task
    /// is done, all in one transaction.
    async fn complete(
        &mut self,
        task: &Claimed,
        conn: Option<&mut PgConnection>,
        r: &MappingReport,
        sink: Option<&TableSink>,
    ) -> Result<(), ExecError> {
        let mut r = r.clone();
        let Some(c) = conn else {
            self.shared.board.done_in_memory(task.task.id, serde_json::to_value(&r).unwrap_or_default());
            return Ok(());
        };
        let mut tx = c.begin().await.map_err(|e| self.db(e))?;
        if let Some(sink) = sink {
            if sink.has_self_references() {
                r.dangling = self.self_references(sink, &mut tx).await?;
            }
            r.rows_per_second = if r.seconds > 0.0 { r.loaded as f64 / r.seconds } else { 0.0 };
            ledger::record_mapping(&mut tx, self.shared.opts.run_id, &r).await.map_err(|e| self.db(e))?;
        }
        let report = serde_json::to_value(&r).unwrap_or_default();
        let done = claims::complete(&mut tx, self.shared.opts.run_id, task.task.id, task.claim, &report)
            .await
            .map_err(|e| self.db(e))?;
        if !done {
            return Err(self.lost());
        }
        tx.commit().await.map_err(|e| self.db(e))
    }

    /// The documents of the rows the database refused that the chunk did
    /// not keep, read again from the source (`Encoding::hold_docs`).
    async fn reread_refused(
        &self,
        chunk: &Chunk,
        db_rejects: &[DbRejection],
    ) -> Result<BTreeMap<usize, SourceItem>, ExecError> {
        let wanted: BTreeSet<usize> =
            db_rejects.iter().map(|d| chunk.rows[d.ord].doc as usize).filter(|&i| chunk.docs.elsewhere(i)).collect();
        if wanted.is_empty() {
            return Ok(BTreeMap::new());
        }
        let (source, m) = (self.shared.source.clone(), self.m.clone());
        let (start, end) = (chunk.start.clone(), chunk.position.clone());
        let rt = tokio::runtime::Handle::current();
        let read = tokio::task::spawn_blocking(move || {
            let found = reader::documents_again(&source, &m, (start.as_ref(), &end), &wanted, rt)?;
            match wanted.iter().find(|i| !found.contains_key(i)) {
                None => Ok(found),
                Some(i) => Err(SourceError::NotFound {
                    path: m.source.clone().into(),
                    reason: format!(
                        "document {i} of a chunk ending at {end:?} was not there when read again \
                         (did the file change during the run?)"
                    ),
                }),
            }
        })
        .await;
        match read {
            Ok(found) => Ok(found?),
            Err(_) => Err(ExecError::ReaderPanicked(self.m.name.clone())),
        }
    }

    /// Writes a chunk's rejects and warnings; returns how many rejects.
    fn write_rejects(&self, docs: &ChunkDocs<'_>, db_rejects: &[DbRejection]) -> Result<u64, ExecError> {
        let m = self.m;
        let chunk = docs.chunk;
        let mut file = lock(&self.shared.rejects);
        for (doc, rej) in &chunk.rejects {
            let document = chunk.docs.get(*doc);
            let rec = RejectRecord {
                mapping: &m.name,
                collection: &m.source,
                element: rej.element,
                column: rej.column.as_deref(),
                reason: &rej.reason,
                document: document.as_ref(),
                location: chunk.locations.get(doc).map(String::as_str),
                warning: false,
                event: None,
            };
            file.write(&rec)
                .map_err(|source| ExecError::Rejects { path: file.path().display().to_string(), source })?;
        }
        for rej in db_rejects {
            let origin = &chunk.rows[rej.ord];
            let written = docs.with(origin.doc as usize, |document| {
                file.write(&RejectRecord {
                    mapping: &m.name,
                    collection: &m.source,
                    element: origin.element.map(|e| e as usize),
                    column: rej.column.as_deref(),
                    reason: &rej.reason,
                    document,
                    location: None,
                    warning: rej.warning,
                    event: None,
                })
            });
            written.map_err(|source| ExecError::Rejects { path: file.path().display().to_string(), source })?;
        }
        Ok((chunk.rejects.len() + db_rejects.iter().filter(|r| !r.warning).count()) as u64)
    }

    /// The second pass: the whole collection again, its keys and parents
    /// only (a live server sends just those fields), into a stage of its own
    /// (one transaction), then every self-reference set from it. Returns how
    /// many point at rows that do not exist; those are reported as rejects.
    async fn self_references(&self, sink: &TableSink, tx: &mut PgConnection) -> Result<u64, ExecError> {
        let m = self.m;
        let keep = TableSink::self_reference_columns(m);
        let reduced = m.with_columns(&keep);
        let (stage, binary) = sink.prepare_self_stage(tx, m, &keep).await.map_err(|e| self.db(e))?;
        let encoding = Encoding {
            fast: None,
            binary,
            dedupe: Vec::new(),
            dedupe_per_chunk: false,
            inventory: None,
            hold_docs: false,
        };
        let (mut rx, reader) =
            spawn_reader(self.shared.source, &reduced, None, None, self.shared.opts.batch_size, encoding);
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
        self.report_dangling(&dangling)
    }

    /// Rows whose self-reference points at no row (they keep NULL), as
    /// warnings in the rejects file. Returns how many.
    fn report_dangling(&self, dangling: &[crate::pg::sink::Dangling]) -> Result<u64, ExecError> {
        let m = self.m;
        for d in dangling {
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
            let written = lock(&self.shared.rejects).write(&rec);
            written.map_err(|e| self.rejects_err(e))?;
        }
        Ok(dangling.len() as u64)
    }
}

/// A chunk's documents: those it kept, and those read again for the rows
/// the database refused.
struct ChunkDocs<'c> {
    chunk: &'c Chunk,
    again: BTreeMap<usize, SourceItem>,
}

impl<'c> ChunkDocs<'c> {
    /// A chunk that kept every document it needs.
    fn kept(chunk: &'c Chunk) -> ChunkDocs<'c> {
        ChunkDocs { chunk, again: BTreeMap::new() }
    }

    /// `f` of the `i`th document (`None`: not known).
    fn with<R>(&self, i: usize, f: impl FnOnce(Option<&SourceItem>) -> R) -> R {
        match self.again.get(&i) {
            Some(d) => f(Some(d)),
            None => f(self.chunk.docs.get(i).as_ref()),
        }
    }
}

/// The chunk's documents with rejected rows, and how many each: what the
/// ledger keeps as rejected now (`validate` counts on it).
fn rejected_documents(
    plan: &Plan,
    m: &MappingPlan,
    docs: &ChunkDocs<'_>,
    db_rejects: &[DbRejection],
) -> Vec<ledger::RejectedDoc> {
    let chunk = docs.chunk;
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
            let id = docs.with(doc, |d| match d {
                Some(SourceItem::Doc(d)) => {
                    d.get("_id").ok().flatten().and_then(|v| bson::Bson::try_from(v).ok()).map(|b| id_text(&b))
                }
                _ => None,
            });
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

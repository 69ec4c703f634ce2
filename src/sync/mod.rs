//! `sync`: keeps the target following the live source after a snapshot,
//! through each collection's change stream, from the positions the
//! snapshot run recorded before it read anything.
//!
//! Events are applied in batches; each batch is one transaction together
//! with the stream positions it reached, so a crash (or `kill -9`, or a
//! lost connection) repeats nothing and loses nothing: the next `sync`
//! continues from the last committed positions. A change that cannot be
//! applied yet (its parent has not arrived, rows elsewhere still point at
//! what it deletes) waits in a queue in the ledger, tried with every batch,
//! and becomes a reject with its reason only once it has waited too long or
//! the sync is asked to stop when caught up.
//!
//! Knows the plan, change streams (`source::changes`), the sink and the
//! ledger; nothing of the command line.

pub mod apply;

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use bson::{Bson, RawDocumentBuf, doc};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use sqlx::{Connection, PgConnection};

use crate::pg::ledger::RejectedDoc;
use crate::pg::sync_state::{self, Pending};
use crate::plan::{OnDuplicate, Plan};
use crate::run::ProgressMode;
use crate::run::rejects::RejectsFile;
use crate::source::changes::{ChangeError, ChangeEvent, ChangeStreams, id_text};
use crate::source::mongo::MongoSource;
use apply::{Change, MappingCounts, Reference, Target, Wait};

#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error(transparent)]
    Changes(#[from] ChangeError),
    #[error("PostgreSQL: {}", crate::pg::sql::pg_text(.0))]
    Db(#[from] sqlx::Error),
    #[error("writing the rejects file {path}: {source}")]
    Rejects { path: String, source: std::io::Error },
    #[error("{0}")]
    NoStart(String),
}

impl SyncError {
    /// The target's connection went away (terminated, restarted, network):
    /// what was committed stays, and a new connection continues from it.
    pub fn connection_lost(&self) -> bool {
        match self {
            SyncError::Db(e) => match e {
                sqlx::Error::Io(_)
                | sqlx::Error::Protocol(_)
                | sqlx::Error::PoolClosed
                | sqlx::Error::WorkerCrashed => true,
                sqlx::Error::Database(d) => d.code().is_some_and(|c| c.starts_with("57P") || c.starts_with("08")),
                _ => false,
            },
            _ => false,
        }
    }
}

#[derive(Debug, Clone)]
pub struct SyncOptions {
    /// Most events per batch (and per transaction).
    pub batch_size: usize,
    /// Stop once no event is left to apply (the cut-over step).
    pub until_caught_up: bool,
    pub progress: ProgressMode,
    /// How long a change may wait for its parent before it is rejected.
    pub retry_for: Duration,
    /// The ledger run that inserted keys are recorded under.
    pub run_id: i64,
}

/// What a sync did.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct SyncReport {
    /// The snapshot run it follows.
    pub from_run: i64,
    pub events_read: u64,
    /// Events committed (with their positions).
    pub events_applied: u64,
    pub batches: u64,
    pub mappings: Vec<MappingCounts>,
    /// Changes waiting for a parent, now.
    pub waiting: u64,
    pub caught_up: bool,
    /// How far behind the source's latest event, in seconds, at the last batch.
    pub lag_seconds: f64,
    pub seconds: f64,
    pub events_per_second: f64,
    /// Connections to the target that were lost and replaced.
    pub reconnects: u64,
    pub rejects_file: Option<String>,
}

impl SyncReport {
    pub fn rejected(&self) -> u64 {
        self.mappings.iter().map(|m| m.rejected).sum()
    }

    /// The summary table (80 columns) and its totals.
    pub fn render_text(&self) -> String {
        use std::fmt::Write as _;
        let mut out = String::new();
        let _ = writeln!(
            out,
            "{:22} {:>6} {:>8} {:>8} {:>8} {:>8} {:>8} {:>7}",
            "mapping", "docs", "inserted", "updated", "deleted", "rejected", "filtered", "same"
        );
        for m in &self.mappings {
            let name: String = m.mapping.chars().take(22).collect();
            let _ = writeln!(
                out,
                "{name:22} {:>6} {:>8} {:>8} {:>8} {:>8} {:>8} {:>7}",
                m.documents, m.inserted, m.updated, m.deleted, m.rejected, m.filtered, m.unchanged
            );
        }
        let _ = writeln!(
            out,
            "{} events read, {} applied in {} batches, {:.1} s ({:.0} events/s); {} waiting for a parent",
            self.events_read, self.events_applied, self.batches, self.seconds, self.events_per_second, self.waiting
        );
        let _ = writeln!(
            out,
            "{}",
            if self.caught_up {
                "caught up: every change the source had is applied".to_string()
            } else {
                format!("lag at the last batch: {:.1} s", self.lag_seconds)
            }
        );
        out
    }
}

/// Mappings `sync` cannot follow exactly, each with why and what to do.
pub fn unsyncable(plan: &Plan) -> Vec<String> {
    let mut out = Vec::new();
    for m in &plan.mappings {
        if m.identity().is_empty() {
            out.push(format!(
                "mapping `{}`: no column is computed from `$._id` alone, so the rows of a deleted or changed document cannot be found; add one (e.g. `source_id = {{ id = \"$._id\" }}`)",
                m.name
            ));
        }
        if m.on_duplicate != OnDuplicate::Reject {
            out.push(format!(
                "mapping `{}`: `on_duplicate = \"{}\"` keeps one of several documents' rows, which a change to one document cannot decide",
                m.name,
                m.on_duplicate.name()
            ));
        }
    }
    out
}

/// Where the sync starts: the snapshot run it follows and each
/// collection's token (its own saved position, or the snapshot's).
pub async fn start(
    conn: &mut PgConnection,
    plan: &Plan,
    database: &str,
) -> Result<(i64, BTreeMap<String, Bson>), SyncError> {
    let Some(snap) = sync_state::start_point(conn).await? else {
        return Err(SyncError::NoStart(
            "no snapshot of a live server is recorded in this target: sync follows a snapshot.\n  First run `finlit-map run --source mongodb://…` (it records where each change stream stands before it reads)".into(),
        ));
    };
    if !crate::pg::ledger::is_finished(&snap.outcome) {
        return Err(SyncError::NoStart(format!(
            "the snapshot (run {}) has not finished (it is `{}`): run the same `finlit-map run` again to complete it, then sync",
            snap.run_id, snap.outcome
        )));
    }
    if snap.database != database {
        return Err(SyncError::NoStart(format!(
            "the snapshot (run {}) was of database `{}`, not `{database}`",
            snap.run_id, snap.database
        )));
    }
    let saved = sync_state::positions(conn).await?;
    if saved.iter().any(|p| p.from_run != snap.run_id) {
        // A newer snapshot: its positions replace the old sync's.
        sync_state::reset(conn).await?;
    }
    let saved: BTreeMap<String, serde_json::Value> =
        saved.into_iter().filter(|p| p.from_run == snap.run_id).map(|p| (p.collection, p.token)).collect();
    let mut tokens = BTreeMap::new();
    let mut collections: Vec<&str> = plan.mappings.iter().map(|m| m.source.as_str()).collect();
    collections.sort_unstable();
    collections.dedup();
    for c in collections {
        let json = saved.get(c).or_else(|| snap.tokens.get(c)).or(snap.database_token.as_ref());
        let Some(json) = json else {
            return Err(SyncError::NoStart(format!(
                "the snapshot (run {}, {}) recorded no change stream position for collection `{c}`: take a new snapshot with `finlit-map run`",
                snap.run_id, snap.taken_at
            )));
        };
        let token = Bson::try_from(json.clone())
            .map_err(|e| SyncError::NoStart(format!("the recorded position of `{c}` is unreadable: {e}")))?;
        tokens.insert(c.to_string(), token);
    }
    Ok((snap.run_id, tokens))
}

/// Follows the source until caught up (`until_caught_up`) or stopped.
/// `report` is kept current, so a stopped sync still says what it did.
pub async fn sync(
    plan: &Plan,
    source: &MongoSource,
    conn: &mut PgConnection,
    opts: &SyncOptions,
    rejects: &mut RejectsFile,
    report: &mut SyncReport,
) -> Result<(), SyncError> {
    let (from_run, tokens) = start(conn, plan, &source.database).await?;
    report.from_run = from_run;
    let mut targets = Vec::new();
    for slot in 0..plan.mappings.len() {
        targets.push(Target::prepare(plan, slot, opts.run_id, conn).await?);
    }
    if report.mappings.len() != plan.mappings.len() {
        report.mappings = plan
            .mappings
            .iter()
            .map(|m| MappingCounts { mapping: m.name.clone(), table: m.table.clone(), ..Default::default() })
            .collect();
    }
    report.waiting = sync_state::pending_count(conn).await? as u64;
    let mut streams = source.follow(&tokens, opts.batch_size).await?;
    tracing::info!(from_run, collections = tokens.len(), "sync started");
    let refs = Reference::all(plan, conn).await?;
    let session = Session { plan, refs: &refs, targets: &targets, source, from_run, opts };
    let result = session.follow(&mut streams, conn, rejects, report).await;
    streams.close().await;
    result
}

/// What every batch of one sync needs.
struct Session<'a, 'p> {
    plan: &'p Plan,
    targets: &'a [Target<'p>],
    /// Every reference between mappings' tables.
    refs: &'a [Reference],
    source: &'a MongoSource,
    from_run: i64,
    opts: &'a SyncOptions,
}

impl Session<'_, '_> {
    async fn follow(
        &self,
        streams: &mut ChangeStreams,
        conn: &mut PgConnection,
        rejects: &mut RejectsFile,
        report: &mut SyncReport,
    ) -> Result<(), SyncError> {
        let opts = self.opts;
        let started = Instant::now();
        let applied_before = report.events_applied;
        let bar = progress_bar(opts.progress);
        let (mut last_line, mut last_batch) = (Instant::now(), Instant::now());
        let mut revival_rounds = 0;
        loop {
            let events = streams.poll(opts.batch_size).await?;
            report.events_read += events.len() as u64;
            let idle = events.is_empty();
            let final_try = idle && opts.until_caught_up;
            // Idle: still save the positions (and retry what waits) now and then.
            let due = last_batch.elapsed() >= Duration::from_secs(2);
            if !idle || final_try || due {
                self.batch(streams, conn, &events, final_try, rejects, report).await?;
                last_batch = Instant::now();
            }
            report.caught_up = idle;
            if idle {
                report.lag_seconds = 0.0;
            }
            let secs = started.elapsed().as_secs_f64();
            let rate = if secs > 0.0 { (report.events_applied - applied_before) as f64 / secs } else { 0.0 };
            let line = format!(
                "{} events applied ({rate:.0}/s), lag {:.1} s, {} waiting",
                report.events_applied, report.lag_seconds, report.waiting
            );
            bar.set_message(line.clone());
            if opts.progress == ProgressMode::Lines && last_line.elapsed() >= Duration::from_secs(10) {
                tracing::info!("sync: {line}");
                last_line = Instant::now();
            }
            // Documents revived by the last batch are applied before stopping.
            if final_try && report.waiting > 0 && revival_rounds < 10 {
                revival_rounds += 1;
                continue;
            }
            if final_try {
                bar.finish_and_clear();
                tracing::info!(events = report.events_applied, "sync caught up");
                return Ok(());
            }
            if idle {
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
        }
    }

    /// One batch, in one transaction with the positions it reached.
    async fn batch(
        &self,
        streams: &ChangeStreams,
        conn: &mut PgConnection,
        events: &[ChangeEvent],
        final_try: bool,
        rejects: &mut RejectsFile,
        report: &mut SyncReport,
    ) -> Result<(), SyncError> {
        let (targets, opts) = (self.targets, self.opts);
        let mut tx = conn.begin().await?;
        let pending = sync_state::take_pending(&mut tx).await?;
        let mut changes = collapse(pending, events);
        current_versions(self.source, &mut changes).await?;
        let expire = if final_try { 0.0 } else { opts.retry_for.as_secs_f64() };
        let applied = apply::apply(self, &mut tx, &changes, expire, rejects, &mut report.mappings).await?;
        let (waits, mut refused) = (applied.waits, applied.refused);
        let mut queue: Vec<Pending> = Vec::new();
        let mut by_change: HashMap<usize, Vec<&Wait>> = HashMap::new();
        for w in &waits {
            by_change.entry(w.change).or_default().push(w);
        }
        let retry_for = opts.retry_for.as_secs_f64();
        for (ci, ws) in by_change {
            let ch = &changes[ci];
            if final_try || ch.waited >= retry_for {
                for w in ws {
                    let m = targets[w.mapping].m;
                    let reason = format!("{} (still so after waiting {:.0} s for it in sync)", w.reason, ch.waited);
                    let rec = apply::record(m, ch, w.element, w.column.as_deref(), &reason, w.warning);
                    apply::write(rejects, &rec)?;
                    if !w.warning {
                        report.mappings[w.mapping].rejected += 1;
                        refused.push((w.mapping, ci, w.points.clone()));
                    }
                }
                continue;
            }
            queue.push(pending_of(ch, &ws[0].reason));
        }
        sync_state::put_pending(&mut tx, &queue).await?;
        // What the ledger says is rejected now, for the documents just applied.
        for (ti, t) in targets.iter().enumerate() {
            let ids: Vec<String> =
                changes.iter().filter(|c| c.collection == t.m.source).map(|c| c.id_text.clone()).collect();
            let mut rows: BTreeMap<String, RejectedDoc> = BTreeMap::new();
            for (_, ci, points) in refused.iter().filter(|(m, _, _)| *m == ti) {
                let id = &changes[*ci].id_text;
                let r =
                    rows.entry(id.clone()).or_insert_with(|| RejectedDoc { doc_id: id.clone(), ..Default::default() });
                r.rows += 1;
                if r.parent.is_none() {
                    r.parent.clone_from(points);
                }
            }
            let rows: Vec<RejectedDoc> = rows.into_values().collect();
            crate::pg::ledger::set_rejected(&mut tx, &t.m.name, &ids, &rows).await?;
        }
        // Documents rejected earlier (by the snapshot, or here) for pointing at
        // a row that has arrived since: applied again with the next batch.
        let revived = self.revived(&mut tx, &queue).await?;
        let requeued = revived.len();
        sync_state::put_pending(&mut tx, &revived).await?;
        let mut applied: BTreeMap<String, u64> = BTreeMap::new();
        for e in events {
            *applied.entry(e.collection.clone()).or_default() += 1;
        }
        let last = events.iter().rev().find_map(|e| e.cluster_time.clone());
        let lag = last.as_ref().map_or(0.0, |t| (now_seconds() - t.seconds).max(0.0));
        sync_state::save_positions(
            &mut tx,
            self.from_run,
            &streams.tokens(),
            &applied,
            last.as_ref().map(|t| t.text.as_str()),
            lag,
        )
        .await?;
        // Rejects reach the disk before the batch commits: a crash in between
        // repeats a reject rather than losing it.
        rejects.flush().map_err(|source| SyncError::Rejects { path: rejects.path().display().to_string(), source })?;
        tx.commit().await?;
        report.events_applied += events.len() as u64;
        report.batches += 1;
        report.waiting = (queue.len() + requeued) as u64;
        report.lag_seconds = lag;
        Ok(())
    }
}

fn now_seconds() -> f64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64())
}

impl Session<'_, '_> {
    /// The rejected documents whose missing row is there now, as changes to
    /// try again (those already queued are not repeated).
    async fn revived(&self, tx: &mut PgConnection, queued: &[Pending]) -> Result<Vec<Pending>, SyncError> {
        let mut out: Vec<Pending> = Vec::new();
        let mut asked: Vec<(&str, &str)> = Vec::new();
        for r in self.refs {
            // Rejected documents are listed by what they point at, whichever mapping.
            if asked.contains(&(r.parent.as_str(), r.parent_column.as_str())) {
                continue;
            }
            asked.push((&r.parent, &r.parent_column));
            let matches = r.matches("t", "r.parent_value");
            for (mapping, doc_id) in crate::pg::ledger::revived(tx, &r.parent, &r.parent_column, &matches).await? {
                let Some(m) = self.plan.mapping(&mapping) else { continue };
                let json = serde_json::from_str::<serde_json::Value>(&doc_id).ok();
                let Some(id) = json.and_then(|j| Bson::try_from(j).ok()) else { continue };
                let seen = |p: &Pending| p.collection == m.source && p.doc_id == doc_id;
                if queued.iter().any(seen) || out.iter().any(seen) {
                    continue;
                }
                out.push(Pending {
                    collection: m.source.clone(),
                    doc_id,
                    id: bson::serialize_to_vec(&doc! { "_id": id }).unwrap_or_default(),
                    operation: "retry".into(),
                    document: None,
                    cluster_time: None,
                    attempts: 0,
                    waited: 0.0,
                    reason: format!("the row it points at in `{}` has arrived", r.parent),
                });
            }
        }
        Ok(out)
    }
}

/// Every changed document's current version, read by `_id`; one that is
/// gone since is a delete (its delete event follows anyway).
async fn current_versions(source: &MongoSource, changes: &mut [Change]) -> Result<(), SyncError> {
    let mut by_collection: BTreeMap<String, Vec<Bson>> = BTreeMap::new();
    for c in changes.iter().filter(|c| c.operation != "delete") {
        by_collection.entry(c.collection.clone()).or_default().push(c.id.clone());
    }
    for (collection, ids) in by_collection {
        let mut now = source.current_documents(&collection, &ids).await?;
        for c in changes.iter_mut().filter(|c| c.collection == collection && c.operation != "delete") {
            c.document = now.remove(&c.id_text);
        }
    }
    Ok(())
}

/// Each document's latest change: the waiting ones, then the batch's
/// events in order, a later one replacing an earlier one of the same document.
fn collapse(pending: Vec<Pending>, events: &[ChangeEvent]) -> Vec<Change> {
    let mut out: Vec<Change> = Vec::new();
    let mut at: HashMap<(String, String), usize> = HashMap::new();
    let mut put = |c: Change| match at.get(&(c.collection.clone(), c.id_text.clone())) {
        Some(&i) => out[i] = c,
        None => {
            at.insert((c.collection.clone(), c.id_text.clone()), out.len());
            out.push(c);
        }
    };
    for p in pending {
        let id = RawDocumentBuf::from_bytes(p.id)
            .ok()
            .and_then(|d| d.get("_id").ok().flatten().and_then(|v| Bson::try_from(v).ok()))
            .unwrap_or(Bson::Null);
        put(Change {
            collection: p.collection,
            id,
            id_text: p.doc_id,
            operation: p.operation,
            document: None,
            cluster_time: p.cluster_time,
            attempts: p.attempts + 1,
            waited: p.waited,
        });
    }
    for e in events {
        put(Change {
            collection: e.collection.clone(),
            id: e.id.clone(),
            id_text: id_text(&e.id),
            operation: e.operation.clone(),
            document: None,
            cluster_time: e.cluster_time.as_ref().map(|t| t.text.clone()),
            attempts: 0,
            waited: 0.0,
        });
    }
    out
}

fn pending_of(ch: &Change, reason: &str) -> Pending {
    let id = bson::serialize_to_vec(&doc! { "_id": ch.id.clone() }).unwrap_or_default();
    Pending {
        collection: ch.collection.clone(),
        doc_id: ch.id_text.clone(),
        id,
        operation: ch.operation.clone(),
        // Read again when it is tried again: it may have changed meanwhile.
        document: None,
        cluster_time: ch.cluster_time.clone(),
        attempts: ch.attempts,
        waited: ch.waited,
        reason: reason.to_string(),
    }
}

/// On a terminal, one line that changes in place; otherwise nothing here
/// (a plain line every 10 s is logged instead).
fn progress_bar(mode: ProgressMode) -> ProgressBar {
    if mode != ProgressMode::Bars {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
    bar.set_style(
        ProgressStyle::with_template("{spinner} sync {msg} ({elapsed})")
            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
    );
    bar.enable_steady_tick(Duration::from_millis(200));
    bar
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::changes::ClusterTime;

    fn event(collection: &str, id: i32, operation: &str) -> ChangeEvent {
        ChangeEvent {
            collection: collection.into(),
            operation: operation.into(),
            id: Bson::Int32(id),
            cluster_time: Some(ClusterTime { seconds: 1.0, text: format!("{operation}-{id}") }),
        }
    }

    /// One change per document, the latest winning, a waiting change
    /// replaced by a newer event of its document; collections kept apart.
    #[test]
    fn a_batch_keeps_each_documents_latest_change() {
        let waiting = Pending {
            collection: "a".into(),
            doc_id: id_text(&Bson::Int32(1)),
            id: bson::serialize_to_vec(&doc! { "_id": 1 }).unwrap(),
            operation: "insert".into(),
            document: None,
            cluster_time: None,
            attempts: 2,
            waited: 5.0,
            reason: "waits".into(),
        };
        let mut other = waiting.clone();
        other.doc_id = id_text(&Bson::Int32(9));
        other.id = bson::serialize_to_vec(&doc! { "_id": 9 }).unwrap();
        let events =
            [event("a", 1, "update"), event("b", 1, "insert"), event("a", 2, "insert"), event("a", 2, "delete")];
        let got: Vec<(String, Bson, String, i32)> = collapse(vec![waiting, other], &events)
            .into_iter()
            .map(|c| (c.collection, c.id, c.operation, c.attempts))
            .collect();
        let want = [
            ("a", Bson::Int32(1), "update", 0),
            ("a", Bson::Int32(9), "insert", 3),
            ("b", Bson::Int32(1), "insert", 0),
            ("a", Bson::Int32(2), "delete", 0),
        ];
        let want: Vec<(String, Bson, String, i32)> =
            want.into_iter().map(|(c, i, o, a)| (c.to_string(), i, o.to_string(), a)).collect();
        assert_eq!(got, want);
    }
}

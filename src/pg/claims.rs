//! The claims table: a run's work as tasks in the target database, which
//! workers claim one at a time. A worker is a connection of a run, or of
//! one of many `run --worker` processes on any machines: nothing but this
//! table coordinates them.
//!
//! A claim is a lease. The worker holding it renews it (with each chunk it
//! commits, and from a heartbeat); a worker that dies stops renewing, and
//! once the lease has expired any other worker claims the task again and
//! continues from its last checkpoint. Every claim bumps the task's claim
//! number, and a checkpoint commits only under the claim number it was
//! taken with: a worker that lost its claim (paused past its lease) can
//! never write over the one that took the task on.
//!
//! Knows SQL and the ledger; the task's range, checkpoint and report are
//! JSON it stores for the run, which gives them their meaning.

use sqlx::PgConnection;

/// A task as the run plans it.
#[derive(Debug, Clone)]
pub struct NewTask {
    pub task: i32,
    /// `load` (a range of a mapping's collection) or `build` (a table's
    /// keys, indexes and constraints after its first load).
    pub kind: &'static str,
    pub mapping: Option<String>,
    pub table: String,
    /// The plan stage the task belongs to.
    pub stage: i32,
    /// What it waits for: `nothing`, `earlier` (every task of an earlier
    /// stage), and a build also for every load into its table.
    pub waits: &'static str,
    pub range_no: i32,
    pub ranges: i32,
    pub range: serde_json::Value,
}

/// A task as the table has it.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct TaskRow {
    pub run_id: i64,
    pub task: i32,
    pub kind: String,
    pub mapping: Option<String>,
    pub table_name: String,
    pub stage: i32,
    pub range_no: i32,
    pub ranges: i32,
    pub range: Option<serde_json::Value>,
    pub state: String,
    pub worker: Option<String>,
    /// Bumped by every claim: the fencing token of the current holder.
    pub claim: i32,
    pub position: Option<serde_json::Value>,
    pub report: Option<serde_json::Value>,
    pub fingerprint: Option<String>,
}

pub(super) const DDL: &str = "
CREATE TABLE IF NOT EXISTS finlit_map.tasks (
    run_id      BIGINT NOT NULL REFERENCES finlit_map.runs (run_id),
    task        INTEGER NOT NULL,
    kind        TEXT NOT NULL,
    mapping     TEXT,
    table_name  TEXT NOT NULL,
    stage       INTEGER NOT NULL,
    waits       TEXT NOT NULL,
    range_no    INTEGER NOT NULL DEFAULT 0,
    ranges      INTEGER NOT NULL DEFAULT 1,
    range       JSONB,
    state       TEXT NOT NULL DEFAULT 'pending',
    worker      TEXT,
    claim       INTEGER NOT NULL DEFAULT 0,
    lease_until TIMESTAMPTZ,
    position    JSONB,
    report      JSONB,
    fingerprint TEXT,
    updated_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (run_id, task)
);
";

const COLUMNS: &str = "run_id, task, kind, mapping, table_name, stage, range_no, ranges, range, state, worker, claim, position, report, fingerprint";

/// Records a run's tasks (in the caller's transaction, with the rest of
/// its plan), in one statement: a round trip per task was most of a run's
/// start on a distant server.
pub async fn insert(conn: &mut PgConnection, run_id: i64, tasks: &[NewTask]) -> Result<(), sqlx::Error> {
    if tasks.is_empty() {
        return Ok(());
    }
    let ints = |f: fn(&NewTask) -> i32| tasks.iter().map(f).collect::<Vec<i32>>();
    sqlx::query(
        "INSERT INTO finlit_map.tasks (run_id, task, kind, mapping, table_name, stage, waits, range_no, ranges, range)
         SELECT $1, * FROM unnest($2::int[], $3::text[], $4::text[], $5::text[], $6::int[], $7::text[], $8::int[],
                                  $9::int[], $10::jsonb[])",
    )
    .bind(run_id)
    .bind(ints(|t| t.task))
    .bind(tasks.iter().map(|t| t.kind).collect::<Vec<&str>>())
    .bind(tasks.iter().map(|t| t.mapping.as_deref()).collect::<Vec<Option<&str>>>())
    .bind(tasks.iter().map(|t| t.table.as_str()).collect::<Vec<&str>>())
    .bind(ints(|t| t.stage))
    .bind(tasks.iter().map(|t| t.waits).collect::<Vec<&str>>())
    .bind(ints(|t| t.range_no))
    .bind(ints(|t| t.ranges))
    .bind(tasks.iter().map(|t| &t.range).collect::<Vec<&serde_json::Value>>())
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// The next task this worker may do, claimed for `lease` seconds: the
/// first in plan order that nobody holds (never claimed, or its lease
/// expired) and whose predecessors are done. Rows another worker has
/// locked are skipped, never waited for.
pub async fn claim(
    conn: &mut PgConnection,
    run_id: i64,
    worker: &str,
    lease: f64,
) -> Result<Option<TaskRow>, sqlx::Error> {
    let stmt = format!(
        "UPDATE finlit_map.tasks t SET state = 'running', worker = $2, claim = t.claim + 1,
                lease_until = now() + make_interval(secs => $3), updated_at = now()
         WHERE (t.run_id, t.task) = (
             SELECT c.run_id, c.task FROM finlit_map.tasks c
             WHERE c.run_id = $1 AND (c.state = 'pending' OR (c.state = 'running' AND c.lease_until < now()))
               AND NOT EXISTS (
                   SELECT 1 FROM finlit_map.tasks d
                   WHERE d.run_id = c.run_id AND d.state <> 'done'
                     AND ((c.waits <> 'nothing' AND d.stage < c.stage)
                          OR (c.kind = 'build' AND d.kind = 'load' AND d.table_name = c.table_name)))
             ORDER BY c.task LIMIT 1 FOR UPDATE SKIP LOCKED)
         RETURNING {}",
        COLUMNS.split(", ").map(|c| format!("t.{c}")).collect::<Vec<_>>().join(", ")
    );
    sqlx::query_as(super::sql::sql(stmt)).bind(run_id).bind(worker).bind(lease).fetch_optional(conn).await
}

/// How many of the run's tasks are not done yet.
pub async fn unfinished(conn: &mut PgConnection, run_id: i64) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar("SELECT count(*) FROM finlit_map.tasks WHERE run_id = $1 AND state <> 'done'")
        .bind(run_id)
        .fetch_one(conn)
        .await
}

/// Every task of a run, in plan order.
pub async fn all(conn: &mut PgConnection, run_id: i64) -> Result<Vec<TaskRow>, sqlx::Error> {
    sqlx::query_as(super::sql::sql(format!("SELECT {COLUMNS} FROM finlit_map.tasks WHERE run_id = $1 ORDER BY task")))
        .bind(run_id)
        .fetch_all(conn)
        .await
}

/// A checkpoint of a claimed task, in the transaction of the chunk it
/// follows, which also renews the lease. `false`: the claim is no longer
/// this worker's (its lease expired and another worker took the task);
/// the caller must roll the chunk back.
#[allow(clippy::too_many_arguments)]
pub async fn checkpoint(
    conn: &mut PgConnection,
    run_id: i64,
    task: i32,
    claim: i32,
    position: Option<&serde_json::Value>,
    report: &serde_json::Value,
    fingerprint: Option<&str>,
    lease: f64,
) -> Result<bool, sqlx::Error> {
    let n = sqlx::query(
        "UPDATE finlit_map.tasks SET position = $4, report = $5, fingerprint = $6,
                lease_until = now() + make_interval(secs => $7), updated_at = now()
         WHERE run_id = $1 AND task = $2 AND claim = $3 AND state = 'running'",
    )
    .bind(run_id)
    .bind(task)
    .bind(claim)
    .bind(position)
    .bind(report)
    .bind(fingerprint)
    .bind(lease)
    .execute(conn)
    .await?
    .rows_affected();
    Ok(n == 1)
}

/// Marks a claimed task done with its final report, in the caller's
/// transaction; `false` when the claim was lost (roll back).
pub async fn complete(
    conn: &mut PgConnection,
    run_id: i64,
    task: i32,
    claim: i32,
    report: &serde_json::Value,
) -> Result<bool, sqlx::Error> {
    let n = sqlx::query(
        "UPDATE finlit_map.tasks SET state = 'done', report = $4, lease_until = NULL, updated_at = now()
         WHERE run_id = $1 AND task = $2 AND claim = $3 AND state = 'running'",
    )
    .bind(run_id)
    .bind(task)
    .bind(claim)
    .bind(report)
    .execute(conn)
    .await?
    .rows_affected();
    Ok(n == 1)
}

/// The heartbeat: extends the leases of every task this worker holds.
/// Rows locked by a chunk being committed are skipped (that commit renews them).
pub async fn renew(conn: &mut PgConnection, run_id: i64, worker: &str, lease: f64) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE finlit_map.tasks t SET lease_until = now() + make_interval(secs => $3)
         WHERE (t.run_id, t.task) IN (
             SELECT run_id, task FROM finlit_map.tasks
             WHERE run_id = $1 AND worker = $2 AND state = 'running' FOR UPDATE SKIP LOCKED)",
    )
    .bind(run_id)
    .bind(worker)
    .bind(lease)
    .execute(conn)
    .await
    .map(|_| ())
}

/// A run continued by one process alone (not `--worker`): whoever held
/// its tasks is gone, so they are free again at once.
pub async fn release_all(conn: &mut PgConnection, run_id: i64) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE finlit_map.tasks SET state = 'pending', lease_until = NULL WHERE run_id = $1 AND state = 'running'",
    )
    .bind(run_id)
    .execute(conn)
    .await
    .map(|_| ())
}

/// Tasks of a mapping in an unfinished run (this one, or any) start over:
/// from the beginning of their ranges, with nothing counted (a rollback
/// removed their rows, or the source changed).
pub async fn restart_mappings(
    conn: &mut PgConnection,
    run_id: Option<i64>,
    mappings: &[String],
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE finlit_map.tasks SET state = 'pending', position = NULL, report = NULL, fingerprint = NULL, lease_until = NULL
         WHERE mapping = ANY($2) AND run_id IN (
             SELECT run_id FROM finlit_map.runs
             WHERE ($1::bigint IS NULL OR run_id = $1) AND outcome = ANY($3))",
    )
    .bind(run_id)
    .bind(mappings)
    .bind(&super::ledger::UNFINISHED[..])
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Removes the load tasks of these mappings from a run (their ranges are
/// planned again) and reopens the builds of `tables`.
pub async fn replace_loads(
    conn: &mut PgConnection,
    run_id: i64,
    mappings: &[String],
    tables: &[String],
) -> Result<i32, sqlx::Error> {
    sqlx::query("DELETE FROM finlit_map.tasks WHERE run_id = $1 AND kind = 'load' AND mapping = ANY($2)")
        .bind(run_id)
        .bind(mappings)
        .execute(&mut *conn)
        .await?;
    sqlx::query(
        "UPDATE finlit_map.tasks SET state = 'pending', report = NULL, lease_until = NULL
         WHERE run_id = $1 AND kind = 'build' AND table_name = ANY($2)",
    )
    .bind(run_id)
    .bind(tables)
    .execute(&mut *conn)
    .await?;
    let next: i32 = sqlx::query_scalar("SELECT coalesce(max(task), -1) + 1 FROM finlit_map.tasks WHERE run_id = $1")
        .bind(run_id)
        .fetch_one(&mut *conn)
        .await?;
    Ok(next)
}

//! The tool's own records in the target database, in a schema of its own
//! (`finlit_map`): every run and its outcome, what each mapping did, and the
//! keys of the rows a migration inserted (an array per chunk), so `rollback` removes those rows
//! and only those, and `status` can tell when each mapping last ran.
//!
//! Knows SQL; nothing of sources or TOML.

use std::collections::BTreeMap;

use sqlx::{PgConnection, Row};

use crate::run::report::MappingReport;

const DDL: &str = "
CREATE SCHEMA IF NOT EXISTS finlit_map;
CREATE TABLE IF NOT EXISTS finlit_map.runs (
    run_id      BIGSERIAL PRIMARY KEY,
    started_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    finished_at TIMESTAMPTZ,
    outcome     TEXT NOT NULL DEFAULT 'running',
    source      TEXT
);
-- Who runs it, for a second run to name (added later, hence ALTER).
ALTER TABLE finlit_map.runs ADD COLUMN IF NOT EXISTS host TEXT;
ALTER TABLE finlit_map.runs ADD COLUMN IF NOT EXISTS pid INTEGER;
-- Planned by `run --worker`: a worker that arrives once it is finished (a
-- replaced pod) reports it instead of loading everything again.
ALTER TABLE finlit_map.runs ADD COLUMN IF NOT EXISTS by_workers BOOLEAN NOT NULL DEFAULT false;
CREATE TABLE IF NOT EXISTS finlit_map.mapping_runs (
    run_id      BIGINT NOT NULL REFERENCES finlit_map.runs (run_id),
    mapping     TEXT NOT NULL,
    table_name  TEXT NOT NULL,
    documents   BIGINT NOT NULL,
    read        BIGINT NOT NULL,
    loaded      BIGINT NOT NULL,
    inserted    BIGINT NOT NULL,
    updated     BIGINT NOT NULL,
    rejected    BIGINT NOT NULL,
    filtered    BIGINT NOT NULL,
    seconds     DOUBLE PRECISION NOT NULL,
    finished_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (run_id, mapping)
);
-- The keys (as text) of the rows a migration inserted, one row per chunk.
CREATE TABLE IF NOT EXISTS finlit_map.loaded_chunks (
    table_name TEXT NOT NULL,
    mapping    TEXT NOT NULL,
    run_id     BIGINT NOT NULL,
    keys       TEXT[] NOT NULL
);
-- Where a live source's change stream stood before a run read it: the
-- point `sync` follows from (added later, hence IF NOT EXISTS).
CREATE TABLE IF NOT EXISTS finlit_map.stream_start (
    run_id   BIGINT PRIMARY KEY REFERENCES finlit_map.runs (run_id),
    database TEXT NOT NULL,
    token    JSONB NOT NULL,
    taken_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
-- Where `sync` stands in each collection's change stream, committed with
-- every batch it applies, and the snapshot run it follows.
CREATE TABLE IF NOT EXISTS finlit_map.sync_position (
    collection  TEXT PRIMARY KEY,
    token       JSONB NOT NULL,
    from_run    BIGINT NOT NULL,
    event_time  TEXT,
    lag_seconds DOUBLE PRECISION,
    applied     BIGINT NOT NULL DEFAULT 0,
    updated_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);
-- Changes `sync` applies again later: a row whose parent has not arrived
-- yet, a delete that rows elsewhere still point at.
CREATE TABLE IF NOT EXISTS finlit_map.sync_pending (
    collection   TEXT NOT NULL,
    doc_id       TEXT NOT NULL,
    id           BYTEA NOT NULL,
    operation    TEXT NOT NULL,
    document     BYTEA,
    cluster_time TEXT,
    attempts     INTEGER NOT NULL,
    first_seen   TIMESTAMPTZ NOT NULL,
    reason       TEXT NOT NULL,
    PRIMARY KEY (collection, doc_id)
);
-- The documents whose rows are rejected now, by mapping: written with each
-- chunk of a run and kept current by `sync`, so `validate` knows how many
-- rows the table lacks for a reason.
-- A row rejected for pointing at a row that was not there names it
-- (parent_*), so `sync` applies the document again once that row arrives.
CREATE TABLE IF NOT EXISTS finlit_map.rejected_docs (
    mapping       TEXT NOT NULL,
    doc_id        TEXT NOT NULL,
    rows          BIGINT NOT NULL,
    parent_table  TEXT,
    parent_column TEXT,
    parent_value  TEXT,
    PRIMARY KEY (mapping, doc_id)
);
CREATE INDEX IF NOT EXISTS rejected_docs_parent ON finlit_map.rejected_docs (parent_table, parent_column)
    WHERE parent_table IS NOT NULL;
-- Rows `sync` took out because the row they point at left (its document
-- was deleted or left a filter): back when that row returns.
CREATE TABLE IF NOT EXISTS finlit_map.sync_parked (
    table_name    TEXT NOT NULL,
    key           TEXT NOT NULL,
    row           JSONB NOT NULL,
    parent_table  TEXT NOT NULL,
    parent_column TEXT NOT NULL,
    parent_value  TEXT NOT NULL,
    PRIMARY KEY (table_name, key)
);
CREATE INDEX IF NOT EXISTS loaded_chunks_table ON finlit_map.loaded_chunks (table_name, mapping);
-- A first load before its table's keys exist: where each chunk stands in
-- the source's order (mapping, range, chunk, first row) and which
-- documents it read, so duplicates keep the first row in that order and a
-- row refused when the keys are built is reported with its document. The
-- chunk's rows share this row's xmin (they commit in one transaction).
ALTER TABLE finlit_map.loaded_chunks ADD COLUMN IF NOT EXISTS load_order BIGINT[];
ALTER TABLE finlit_map.loaded_chunks ADD COLUMN IF NOT EXISTS first_pos JSONB;
ALTER TABLE finlit_map.loaded_chunks ADD COLUMN IF NOT EXISTS last_pos JSONB;
-- The key arrays are stored as they are: keys made to be unique (UUIDs,
-- ObjectIds) hardly compress (lz4 kept 94% of them) and compressing them
-- cost more than writing them (docs/PERFORMANCE.md).
ALTER TABLE finlit_map.loaded_chunks ALTER COLUMN keys SET STORAGE EXTERNAL;
-- A chunk copied straight into its table whose key is one UUID column
-- records its keys as UUIDs (16 bytes each, not a 40-byte text), and
-- `keys` is then NULL; `keys_of` reads either.
ALTER TABLE finlit_map.loaded_chunks ADD COLUMN IF NOT EXISTS uuid_keys UUID[];
ALTER TABLE finlit_map.loaded_chunks ALTER COLUMN uuid_keys SET STORAGE EXTERNAL;
ALTER TABLE finlit_map.loaded_chunks ALTER COLUMN keys DROP NOT NULL;
-- Tables being loaded before their keys, indexes and constraints: what
-- they had, built again once the load is done (`pg::postdata`).
CREATE TABLE IF NOT EXISTS finlit_map.deferred (
    table_name TEXT PRIMARY KEY,
    run_id     BIGINT NOT NULL,
    objects    JSONB NOT NULL,
    started_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
";

/// The head of the statement that records inserted rows' keys; the caller
/// appends a `SELECT table_name, mapping, run_id, keys` of its own.
pub const RECORD_KEYS: &str = "INSERT INTO finlit_map.loaded_chunks (table_name, mapping, run_id, keys)";

/// The key texts of ledger row `alias` (of `finlit_map.loaded_chunks`),
/// whichever column holds them: UUIDs print as the key's text does.
pub fn keys_of(alias: &str) -> String {
    format!("coalesce({alias}.keys, {alias}.uuid_keys::text[])")
}

/// Where the key whose text is `key` stands in ledger row `alias`'s keys,
/// compared in the column's own type: printing every UUID of a chunk's
/// array for each row looked up would cost a chunk's worth per row.
pub fn position_of(alias: &str, key: &str) -> String {
    format!(
        "CASE WHEN {alias}.uuid_keys IS NULL THEN array_position({alias}.keys, {key}) \
         ELSE array_position({alias}.uuid_keys, ({key})::uuid) END"
    )
}

/// The assignments that take the keys bound as `text[]` at `$param` out of
/// ledger row `alias`'s keys (which are texts from then on).
pub fn without_keys(alias: &str, param: usize) -> String {
    format!(
        "keys = ARRAY(SELECT k FROM unnest({}) k WHERE k <> ALL(${param}::text[])), uuid_keys = NULL",
        keys_of(alias)
    )
}

/// A subquery of the key texts migrations inserted for one mapping.
pub fn migrated_keys(table: &str, mapping: &str) -> String {
    format!(
        "SELECT unnest({}) FROM finlit_map.loaded_chunks l WHERE l.table_name = {} AND l.mapping = {}",
        keys_of("l"),
        crate::pg::sql::literal(table),
        crate::pg::sql::literal(mapping),
    )
}

/// Whether the target has the ledger (any migration ran against it).
pub async fn exists(conn: &mut PgConnection) -> Result<bool, sqlx::Error> {
    has_table(conn, "loaded_chunks").await
}

/// Whether the ledger has this table (older ledgers lack the newer ones).
pub(super) async fn has_table(conn: &mut PgConnection, table: &str) -> Result<bool, sqlx::Error> {
    let r: Option<String> =
        sqlx::query_scalar("SELECT to_regclass('finlit_map.' || $1)::text").bind(table).fetch_one(&mut *conn).await?;
    Ok(r.is_some())
}

/// After a table's migrated rows were deleted (in the caller's
/// transaction): its recorded keys go, and so do the checkpoints of its
/// mappings, so the next run loads them again instead of skipping them as
/// complete.
pub async fn forget_table(conn: &mut PgConnection, table: &str, mappings: &[String]) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM finlit_map.loaded_chunks WHERE table_name = $1").bind(table).execute(&mut *conn).await?;
    super::claims::restart_mappings(conn, None, mappings).await?;
    sqlx::query(
        "UPDATE finlit_map.tasks SET state = 'pending', report = NULL WHERE kind = 'build' AND table_name = $1
           AND run_id IN (SELECT run_id FROM finlit_map.runs WHERE outcome = ANY($2))",
    )
    .bind(table)
    .bind(&UNFINISHED[..])
    .execute(&mut *conn)
    .await?;
    sqlx::query("DELETE FROM finlit_map.rejected_docs WHERE mapping = ANY($1)")
        .bind(mappings)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// What a row rejected as an orphan points at: (table, column, value).
pub type Parent = (String, String, String);

/// A document with rejected rows, as the ledger keeps it.
#[derive(Debug, Clone, Default)]
pub struct RejectedDoc {
    /// The `_id` as canonical extended JSON (or where an unreadable one is).
    pub doc_id: String,
    pub rows: i64,
    /// What a row of it points at that was not there: (table, column, value).
    pub parent: Option<Parent>,
}

/// Replaces what the ledger says is rejected of these documents of a
/// mapping (`doc_ids`) by `rejected`; in the caller's transaction.
pub async fn set_rejected(
    conn: &mut PgConnection,
    mapping: &str,
    doc_ids: &[String],
    rejected: &[RejectedDoc],
) -> Result<(), sqlx::Error> {
    if !doc_ids.is_empty() {
        sqlx::query("DELETE FROM finlit_map.rejected_docs WHERE mapping = $1 AND doc_id = ANY($2)")
            .bind(mapping)
            .bind(doc_ids)
            .execute(&mut *conn)
            .await?;
    }
    for r in rejected {
        let p = r.parent.clone().unwrap_or_default();
        let p = r.parent.as_ref().map(|_| p);
        sqlx::query(
            "INSERT INTO finlit_map.rejected_docs (mapping, doc_id, rows, parent_table, parent_column, parent_value)
             VALUES ($1, $2, $3, $4, $5, $6)
             ON CONFLICT (mapping, doc_id) DO UPDATE SET rows = rejected_docs.rows + EXCLUDED.rows,
                 parent_table = coalesce(rejected_docs.parent_table, EXCLUDED.parent_table),
                 parent_column = coalesce(rejected_docs.parent_column, EXCLUDED.parent_column),
                 parent_value = coalesce(rejected_docs.parent_value, EXCLUDED.parent_value)",
        )
        .bind(mapping)
        .bind(&r.doc_id)
        .bind(r.rows)
        .bind(p.as_ref().map(|p| p.0.clone()))
        .bind(p.as_ref().map(|p| p.1.clone()))
        .bind(p.as_ref().map(|p| p.2.clone()))
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

/// Documents rejected for pointing at a row of `table` that is there now
/// (`matches`: that row's condition on `r.parent_value`): taken off the
/// list (in the caller's transaction) to be applied again.
pub async fn revived(
    conn: &mut PgConnection,
    table: &str,
    column: &str,
    matches: &str,
) -> Result<Vec<(String, String)>, sqlx::Error> {
    let stmt = format!(
        "DELETE FROM finlit_map.rejected_docs r WHERE r.parent_table = $1 AND r.parent_column = $2
           AND EXISTS (SELECT 1 FROM {t} t WHERE {matches}) RETURNING mapping, doc_id",
        t = super::sql::quote(table),
    );
    sqlx::query_as(super::sql::sql(stmt)).bind(table).bind(column).fetch_all(conn).await
}

/// A mapping starts over: nothing of it is rejected until it says so.
pub async fn forget_rejected(conn: &mut PgConnection, mapping: &str) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM finlit_map.rejected_docs WHERE mapping = $1").bind(mapping).execute(conn).await.map(|_| ())
}

/// Rows rejected now, by mapping, and rows `sync` parked, by table;
/// `None` for a ledger older than these records.
pub async fn rejected_now(
    conn: &mut PgConnection,
) -> Result<Option<(BTreeMap<String, u64>, BTreeMap<String, u64>)>, sqlx::Error> {
    if !has_table(conn, "rejected_docs").await? || !has_table(conn, "sync_parked").await? {
        return Ok(None);
    }
    let by_mapping: Vec<(String, i64)> =
        sqlx::query_as("SELECT mapping, sum(rows)::bigint FROM finlit_map.rejected_docs GROUP BY mapping")
            .fetch_all(&mut *conn)
            .await?;
    let parked: Vec<(String, i64)> =
        sqlx::query_as("SELECT table_name, count(*) FROM finlit_map.sync_parked GROUP BY table_name")
            .fetch_all(&mut *conn)
            .await?;
    let conv = |v: Vec<(String, i64)>| v.into_iter().map(|(k, n)| (k, n as u64)).collect();
    Ok(Some((conv(by_mapping), conv(parked))))
}

/// An interrupted run with nothing left to continue is over.
pub async fn close_emptied_runs(conn: &mut PgConnection) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE finlit_map.runs r SET outcome = 'rolled back', finished_at = coalesce(finished_at, now())
         WHERE outcome = ANY($1)
           AND NOT EXISTS (SELECT 1 FROM finlit_map.tasks t WHERE t.run_id = r.run_id
                           AND (t.state = 'done' OR t.report IS NOT NULL OR t.position IS NOT NULL))",
    )
    .bind(&UNFINISHED[..])
    .execute(conn)
    .await
    .map(|_| ())
}

/// What the ledger's schema comment says once this build's DDL ran: a
/// digest of that DDL, so a ledger made by an older build (with fewer
/// tables or columns) is brought up to date and a current one is left
/// alone without running it again.
fn version() -> String {
    let ddl = [DDL, super::claims::DDL].concat();
    format!("finlit-map ledger {}", uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_OID, ddl.as_bytes()))
}

/// Creates the ledger, or brings an older one up to date. A current
/// ledger costs one query: the DDL (some 20 ms on a new target, a few on
/// an existing one) runs only when its digest differs.
pub async fn ensure(conn: &mut PgConnection) -> Result<(), sqlx::Error> {
    let version = version();
    let current: Option<String> =
        sqlx::query_scalar("SELECT obj_description(to_regnamespace('finlit_map'), 'pg_namespace')")
            .fetch_one(&mut *conn)
            .await?;
    if current.as_deref() == Some(version.as_str()) {
        return Ok(());
    }
    // Parallel first runs may race on CREATE ... IF NOT EXISTS; an advisory lock serializes them.
    sqlx::query("SELECT pg_advisory_lock(727274)").execute(&mut *conn).await?;
    let comment = format!("COMMENT ON SCHEMA finlit_map IS {}", crate::pg::sql::literal(&version));
    let r = match sqlx::raw_sql(DDL).execute(&mut *conn).await {
        Ok(_) => {
            sqlx::raw_sql(crate::pg::sql::sql([super::claims::DDL, &comment].join(";\n"))).execute(&mut *conn).await
        }
        Err(e) => Err(e),
    };
    sqlx::query("SELECT pg_advisory_unlock(727274)").execute(&mut *conn).await?;
    r.map(|_| ())
}

/// Outcomes of a run that did not finish: the next run continues it.
pub const UNFINISHED: [&str; 3] = ["running", "failed", "interrupted"];

/// Outcomes of a finished run or sync: with rejects or without.
pub const FINISHED: [&str; 2] = ["ok", "finished with rejects"];

/// The outcome a run or sync that finished records.
pub fn finished_outcome(rejected: u64) -> &'static str {
    FINISHED[usize::from(rejected > 0)]
}

pub fn is_finished(outcome: &str) -> bool {
    FINISHED.contains(&outcome)
}

pub async fn start_run(conn: &mut PgConnection, source: &str, by_workers: bool) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar(
        "INSERT INTO finlit_map.runs (source, host, pid, by_workers) VALUES ($1, $2, $3, $4) RETURNING run_id",
    )
    .bind(source)
    .bind(hostname())
    .bind(std::process::id() as i32)
    .bind(by_workers)
    .fetch_one(conn)
    .await
}

/// The advisory lock that makes runs (and rollbacks) of one target
/// database exclusive. Session-level: it goes with the connection, so a
/// killed run never leaves it behind.
const RUN_LOCK: i64 = 727_275;

/// Who holds a target: the newest run still marked running, if recorded.
#[derive(Debug, Clone)]
pub struct Holder {
    pub run_id: Option<i64>,
    pub host: Option<String>,
    pub pid: Option<i32>,
    pub started_at: Option<String>,
    /// The holder's PostgreSQL backend, always known.
    pub backend: i32,
}

impl std::fmt::Display for Holder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.run_id {
            Some(id) => write!(f, "run {id}")?,
            None => write!(f, "a finlit-map command")?,
        }
        if let Some(h) = &self.host {
            write!(f, " on {h}")?;
        }
        if let Some(p) = self.pid {
            write!(f, " (pid {p})")?;
        }
        if let Some(t) = &self.started_at {
            write!(f, ", started {t}")?;
        }
        write!(f, "; PostgreSQL backend {}", self.backend)
    }
}

/// Takes the target's run lock on this connection, or says who holds it.
/// With `wait`, tells `waiting` who holds it, then blocks until they are done.
pub async fn lock_target(
    conn: &mut PgConnection,
    wait: bool,
    waiting: &dyn Fn(&Holder),
) -> Result<Result<(), Holder>, sqlx::Error> {
    take_run_lock(conn, "", wait, waiting).await
}

/// `suffix` chooses the form: "" exclusive, "_shared" shared.
async fn take_run_lock(
    conn: &mut PgConnection,
    suffix: &str,
    wait: bool,
    waiting: &dyn Fn(&Holder),
) -> Result<Result<(), Holder>, sqlx::Error> {
    let try_lock = format!("SELECT pg_try_advisory_lock{suffix}($1)");
    // A command that just exited may hold it for a moment more: its server
    // session ends a little after the process. Try for a second first.
    for attempt in 0..10 {
        let got: bool = sqlx::query_scalar(super::sql::sql(&try_lock)).bind(RUN_LOCK).fetch_one(&mut *conn).await?;
        if got {
            return Ok(Ok(()));
        }
        if attempt < 9 {
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    }
    let holder = holder(conn).await?;
    if !wait {
        return Ok(Err(holder));
    }
    waiting(&holder);
    sqlx::query(super::sql::sql(format!("SELECT pg_advisory_lock{suffix}($1)")))
        .bind(RUN_LOCK)
        .execute(&mut *conn)
        .await?;
    Ok(Ok(()))
}

/// Gives the target back as soon as the command is done, not when its
/// session happens to end.
pub async fn unlock_target(conn: &mut PgConnection) {
    // Whichever form it holds (a worker's is shared), with the planning lock.
    let _ = sqlx::query("SELECT pg_advisory_unlock_all()").execute(&mut *conn).await;
}

/// The run lock shared with other workers of one run (`run --worker`):
/// they exclude a plain run or a rollback, not each other. Waits like
/// [`lock_target`] with `wait`.
pub async fn share_target(
    conn: &mut PgConnection,
    wait: bool,
    waiting: &dyn Fn(&Holder),
) -> Result<Result<(), Holder>, sqlx::Error> {
    take_run_lock(conn, "_shared", wait, waiting).await
}

/// Workers of one run plan it one at a time: the first plans, the others
/// find its tasks and join. Held from the schema's migrations to the tasks.
const PLAN_LOCK: i64 = 727_276;

pub async fn lock_planning(conn: &mut PgConnection) -> Result<(), sqlx::Error> {
    sqlx::query("SELECT pg_advisory_lock($1)").bind(PLAN_LOCK).execute(conn).await.map(|_| ())
}

pub async fn unlock_planning(conn: &mut PgConnection) {
    let _ = sqlx::query("SELECT pg_advisory_unlock($1)").bind(PLAN_LOCK).execute(conn).await;
}

async fn holder(conn: &mut PgConnection) -> Result<Holder, sqlx::Error> {
    let (lo, hi) = (RUN_LOCK & 0xffff_ffff, RUN_LOCK >> 32);
    let backend: Option<i32> = sqlx::query_scalar(
        "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted AND database = \
         (SELECT oid FROM pg_database WHERE datname = current_database()) AND classid = $1::bigint::oid AND objid = $2::bigint::oid LIMIT 1",
    )
    .bind(hi)
    .bind(lo)
    .fetch_optional(&mut *conn)
    .await?
    .flatten();
    // The ledger may not exist yet (the holder is still applying the schema).
    let run: Option<(i64, Option<String>, Option<i32>, String)> = sqlx::query_as(super::sql::sql(format!(
        "SELECT run_id, host, pid, {} FROM finlit_map.runs WHERE outcome = 'running' ORDER BY run_id DESC LIMIT 1",
        super::sql::utc_text("started_at")
    )))
    .fetch_optional(&mut *conn)
    .await
    .unwrap_or_default();
    Ok(Holder {
        run_id: run.as_ref().map(|r| r.0),
        host: run.as_ref().and_then(|r| r.1.clone()),
        pid: run.as_ref().and_then(|r| r.2),
        started_at: run.map(|r| r.3),
        backend: backend.unwrap_or_default(),
    })
}

/// This machine's name, for a second run to say where the first one is.
pub(crate) fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "an unknown host".into())
}

pub async fn record_mapping(conn: &mut PgConnection, run_id: i64, m: &MappingReport) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO finlit_map.mapping_runs
         (run_id, mapping, table_name, documents, read, loaded, inserted, updated, rejected, filtered, seconds)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
         ON CONFLICT (run_id, mapping) DO UPDATE SET loaded = EXCLUDED.loaded",
    )
    .bind(run_id)
    .bind(&m.mapping)
    .bind(&m.table)
    .bind(m.documents as i64)
    .bind(m.read as i64)
    .bind(m.loaded as i64)
    .bind(m.inserted as i64)
    .bind(m.updated as i64)
    .bind(m.rejected as i64)
    .bind(m.filtered as i64)
    .bind(m.seconds)
    .execute(conn)
    .await
    .map(|_| ())
}

///
/// Loading sessions commit with `synchronous_commit = off` (each chunk's
/// checkpoint commits with it, so a lost tail is simply reloaded). The
/// run's last record commits synchronously: once the command exits 0, the
/// WAL up to here, every chunk included, is on disk.
pub async fn finish_run(conn: &mut PgConnection, run_id: i64, outcome: &str) -> Result<(), sqlx::Error> {
    use sqlx::Connection;
    let mut tx = conn.begin().await?;
    sqlx::query("SET LOCAL synchronous_commit = on").execute(&mut *tx).await?;
    sqlx::query("UPDATE finlit_map.runs SET finished_at = now(), outcome = $2 WHERE run_id = $1")
        .bind(run_id)
        .bind(outcome)
        .execute(&mut *tx)
        .await?;
    tx.commit().await
}

/// The last recorded run of a mapping.
#[derive(Debug, Clone)]
pub struct LastRun {
    pub finished_at: String,
    pub outcome: String,
    pub read: i64,
    pub loaded: i64,
    pub rejected: i64,
    pub filtered: i64,
}

/// The last run of each mapping, if the ledger exists.
/// Records where a live source's change stream stood before this run read it.
pub async fn record_stream_start(
    conn: &mut PgConnection,
    run_id: i64,
    database: &str,
    token: &serde_json::Value,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO finlit_map.stream_start (run_id, database, token) VALUES ($1, $2, $3)
         ON CONFLICT (run_id) DO NOTHING",
    )
    .bind(run_id)
    .bind(database)
    .bind(token)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// One past run, as `status --history` lists it.
#[derive(Debug, Clone, serde::Serialize, sqlx::FromRow)]
pub struct PastRun {
    pub run_id: i64,
    pub started_at: String,
    pub finished_at: Option<String>,
    pub outcome: String,
    pub source: Option<String>,
    pub mappings: i64,
    pub loaded: i64,
    pub rejected: i64,
    /// Mappings that continued from an earlier run's checkpoints.
    pub resumed: i64,
}

/// Every run the target records, the newest first (`status --history`).
pub async fn history(conn: &mut PgConnection) -> Result<Vec<PastRun>, sqlx::Error> {
    if !has_table(conn, "runs").await? {
        return Ok(Vec::new());
    }
    sqlx::query_as(super::sql::sql(format!(
        "SELECT r.run_id, {} AS started_at, {} AS finished_at, r.outcome, r.source,
                count(m.mapping) AS mappings, coalesce(sum(m.loaded), 0)::bigint AS loaded,
                coalesce(sum(m.rejected), 0)::bigint AS rejected,
                (SELECT count(DISTINCT t.mapping) FROM finlit_map.tasks t WHERE t.run_id = r.run_id AND t.report ? 'resumed') AS resumed
         FROM finlit_map.runs r LEFT JOIN finlit_map.mapping_runs m USING (run_id)
         GROUP BY r.run_id ORDER BY r.run_id DESC",
        super::sql::utc_text("r.started_at"),
        super::sql::utc_text("r.finished_at")
    )))
    .fetch_all(&mut *conn)
    .await
}

pub async fn last_runs(conn: &mut PgConnection) -> Result<Vec<(String, LastRun)>, sqlx::Error> {
    if !has_table(conn, "mapping_runs").await? {
        return Ok(Vec::new());
    }
    let rows = sqlx::query(super::sql::sql(format!(
        "SELECT DISTINCT ON (m.mapping) m.mapping, {}, r.outcome, m.read, m.loaded, m.rejected, m.filtered
         FROM finlit_map.mapping_runs m JOIN finlit_map.runs r USING (run_id)
         ORDER BY m.mapping, m.run_id DESC",
        super::sql::utc_text("m.finished_at")
    )))
    .fetch_all(conn)
    .await?;
    rows.iter()
        .map(|r| {
            Ok((
                r.try_get(0)?,
                LastRun {
                    finished_at: r.try_get(1)?,
                    outcome: r.try_get(2)?,
                    read: r.try_get(3)?,
                    loaded: r.try_get(4)?,
                    rejected: r.try_get(5)?,
                    filtered: r.try_get(6)?,
                },
            ))
        })
        .collect()
}

/// The newest run from this source that did not finish (killed, failed,
/// interrupted, or still running under `--worker`): what `run` continues.
pub async fn unfinished_run(conn: &mut PgConnection, source: &str) -> Result<Option<i64>, sqlx::Error> {
    let run: Option<(i64, String)> =
        sqlx::query_as("SELECT run_id, outcome FROM finlit_map.runs WHERE source = $1 ORDER BY run_id DESC LIMIT 1")
            .bind(source)
            .fetch_optional(&mut *conn)
            .await?;
    Ok(run.filter(|(_, o)| UNFINISHED.contains(&o.as_str())).map(|(id, _)| id))
}

/// The newest run from `source`, when workers planned it and it finished
/// (with or without rejects): its id, outcome and when it finished.
pub async fn finished_worker_run(
    conn: &mut PgConnection,
    source: &str,
) -> Result<Option<(i64, String, String)>, sqlx::Error> {
    let run: Option<(i64, String, bool, Option<String>)> = sqlx::query_as(
        "SELECT run_id, outcome, by_workers, to_char(finished_at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS \"UTC\"')
         FROM finlit_map.runs WHERE source = $1 ORDER BY run_id DESC LIMIT 1",
    )
    .bind(source)
    .fetch_optional(&mut *conn)
    .await?;
    Ok(run
        .filter(|(_, outcome, by_workers, _)| *by_workers && is_finished(outcome))
        .map(|(id, outcome, _, at)| (id, outcome, at.unwrap_or_default())))
}

/// Marks an unfinished run as running again (it is being continued) or as
/// abandoned (`--restart`).
pub async fn set_outcome(conn: &mut PgConnection, run_id: i64, outcome: &str) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE finlit_map.runs SET outcome = $2 WHERE run_id = $1")
        .bind(run_id)
        .bind(outcome)
        .execute(conn)
        .await
        .map(|_| ())
}

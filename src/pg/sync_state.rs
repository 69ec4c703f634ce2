//! `sync`'s records in the ledger: where it starts (the snapshot run's
//! change stream positions), where it stands (a token per collection,
//! saved in each batch's transaction) and the changes waiting to be applied
//! again. The tables themselves are part of the ledger's DDL (`ledger`).
//!
//! Knows SQL; nothing of change streams or mappings.

use std::collections::BTreeMap;

use sqlx::{PgConnection, Row};

use super::ledger::has_table;
use super::sql::{sql, utc_text};

/// The snapshot a sync follows: the newest run that recorded change stream positions.
#[derive(Debug, Clone)]
pub struct StartPoint {
    pub run_id: i64,
    pub outcome: String,
    pub database: String,
    /// Each collection's token; `None` for every collection when the run
    /// recorded one database-wide token (older ledgers).
    pub tokens: BTreeMap<String, serde_json::Value>,
    pub database_token: Option<serde_json::Value>,
    pub taken_at: String,
}

pub async fn start_point(conn: &mut PgConnection) -> Result<Option<StartPoint>, sqlx::Error> {
    if !has_table(conn, "stream_start").await? {
        return Ok(None);
    }
    let row = sqlx::query(sql(format!(
        "SELECT s.run_id, r.outcome, s.database, s.token, {}
         FROM finlit_map.stream_start s JOIN finlit_map.runs r USING (run_id)
         ORDER BY s.run_id DESC LIMIT 1",
        utc_text("s.taken_at")
    )))
    .fetch_optional(&mut *conn)
    .await?;
    let Some(r) = row else { return Ok(None) };
    let token: serde_json::Value = r.try_get(3)?;
    let (tokens, database_token) = match token.get("collections").and_then(|c| c.as_object()) {
        Some(c) => (c.iter().map(|(k, v)| (k.clone(), v.clone())).collect(), None),
        None => (BTreeMap::new(), Some(token)),
    };
    Ok(Some(StartPoint {
        run_id: r.try_get(0)?,
        outcome: r.try_get(1)?,
        database: r.try_get(2)?,
        tokens,
        database_token,
        taken_at: r.try_get(4)?,
    }))
}

/// Where a sync stands in one collection's stream.
#[derive(Debug, Clone, serde::Serialize, sqlx::FromRow)]
pub struct StreamPosition {
    pub collection: String,
    pub token: serde_json::Value,
    pub from_run: i64,
    /// The last applied change's cluster time.
    pub event_time: Option<String>,
    /// How far behind the source the sync was when it saved this.
    pub lag_seconds: Option<f64>,
    pub applied: i64,
    pub updated_at: String,
}

pub async fn positions(conn: &mut PgConnection) -> Result<Vec<StreamPosition>, sqlx::Error> {
    if !has_table(conn, "sync_position").await? {
        return Ok(Vec::new());
    }
    sqlx::query_as(sql(format!(
        "SELECT collection, token, from_run, event_time, lag_seconds, applied, {} AS updated_at
         FROM finlit_map.sync_position ORDER BY collection",
        utc_text("updated_at")
    )))
    .fetch_all(&mut *conn)
    .await
}

/// A new snapshot replaced the one the recorded positions followed: they,
/// the waiting changes and the parked rows go.
pub async fn reset(conn: &mut PgConnection) -> Result<(), sqlx::Error> {
    clear(conn, &["sync_position", "sync_pending", "sync_parked"]).await
}

/// After a rollback: no snapshot is left for `sync` to follow, nor a
/// position in one.
pub async fn forget(conn: &mut PgConnection) -> Result<(), sqlx::Error> {
    clear(conn, &["stream_start", "sync_position", "sync_pending", "sync_parked"]).await
}

async fn clear(conn: &mut PgConnection, tables: &[&str]) -> Result<(), sqlx::Error> {
    for table in tables {
        if has_table(conn, table).await? {
            sqlx::query(crate::pg::sql::sql(format!("DELETE FROM finlit_map.{table}"))).execute(&mut *conn).await?;
        }
    }
    Ok(())
}

/// Saves every stream's token (in the batch's transaction).
pub async fn save_positions(
    conn: &mut PgConnection,
    from_run: i64,
    tokens: &BTreeMap<String, serde_json::Value>,
    applied: &BTreeMap<String, u64>,
    event_time: Option<&str>,
    lag_seconds: f64,
) -> Result<(), sqlx::Error> {
    for (collection, token) in tokens {
        let n = applied.get(collection).copied().unwrap_or(0) as i64;
        sqlx::query(
            "INSERT INTO finlit_map.sync_position (collection, token, from_run, event_time, lag_seconds, applied)
             VALUES ($1, $2, $3, $4, $5, $6)
             ON CONFLICT (collection) DO UPDATE SET token = EXCLUDED.token, from_run = EXCLUDED.from_run,
                 event_time = coalesce(EXCLUDED.event_time, sync_position.event_time),
                 lag_seconds = EXCLUDED.lag_seconds, applied = sync_position.applied + EXCLUDED.applied,
                 updated_at = now()",
        )
        .bind(collection)
        .bind(token)
        .bind(from_run)
        .bind(event_time)
        .bind(lag_seconds)
        .bind(n)
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

/// A change waiting to be applied again.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Pending {
    pub collection: String,
    pub doc_id: String,
    /// `{_id: …}` as BSON bytes: the `_id` exactly.
    pub id: Vec<u8>,
    pub operation: String,
    /// The document (BSON) for an upsert; `None` for a delete.
    pub document: Option<Vec<u8>>,
    pub cluster_time: Option<String>,
    pub attempts: i32,
    /// Seconds since it first had to wait.
    pub waited: f64,
    pub reason: String,
}

/// Takes every waiting change out of the queue (in the batch's
/// transaction; those still waiting are put back).
pub async fn take_pending(conn: &mut PgConnection) -> Result<Vec<Pending>, sqlx::Error> {
    sqlx::query_as(
        "DELETE FROM finlit_map.sync_pending RETURNING collection, doc_id, id, operation, document, cluster_time,
                attempts, extract(epoch FROM now() - first_seen)::float8 AS waited, reason",
    )
    .fetch_all(&mut *conn)
    .await
}

pub async fn put_pending(conn: &mut PgConnection, pending: &[Pending]) -> Result<(), sqlx::Error> {
    for p in pending {
        sqlx::query(
            "INSERT INTO finlit_map.sync_pending
                 (collection, doc_id, id, operation, document, cluster_time, attempts, first_seen, reason)
             VALUES ($1, $2, $3, $4, $5, $6, $7, now() - make_interval(secs => $8), $9)
             ON CONFLICT (collection, doc_id) DO NOTHING",
        )
        .bind(&p.collection)
        .bind(&p.doc_id)
        .bind(&p.id)
        .bind(&p.operation)
        .bind(&p.document)
        .bind(&p.cluster_time)
        .bind(p.attempts)
        .bind(p.waited)
        .bind(&p.reason)
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

/// How many changes are waiting.
pub async fn pending_count(conn: &mut PgConnection) -> Result<i64, sqlx::Error> {
    if !has_table(conn, "sync_pending").await? {
        return Ok(0);
    }
    sqlx::query_scalar("SELECT count(*) FROM finlit_map.sync_pending").fetch_one(conn).await
}

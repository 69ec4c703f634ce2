//! Undoing a migration: removes the rows migrations inserted (their keys are
//! in the ledger) and only those, dependants before what they reference,
//! all in one transaction. Rows the application wrote into the same tables
//! survive. When rows outside the rollback still point at rows it would
//! remove, it refuses and says which, unless asked to cascade to the
//! mappings those rows came from.
//!
//! Knows the plan's tables and keys and SQL; nothing of sources or TOML.

use std::collections::BTreeSet;

use sqlx::{Connection, PgConnection};

use crate::plan::{MappingPlan, Plan};
use crate::sink::{key_text, literal, quote, sql};

#[derive(Debug, thiserror::Error)]
pub enum RollbackError {
    #[error("PostgreSQL: {0}")]
    Db(#[from] sqlx::Error),
    #[error("this database has no record of a finlit-map migration (no finlit_map schema)")]
    NoLedger,
    #[error("{0}")]
    Referenced(String),
}

/// One table's part in a rollback.
#[derive(Debug, Clone)]
pub struct TableStep {
    pub table: String,
    /// Rows migrations inserted (what would go).
    pub migrated: u64,
    pub total: u64,
}

/// A table's rows split by who wrote them.
#[derive(Debug, Clone)]
pub struct TableCount {
    pub table: String,
    pub total: u64,
    pub migrated: u64,
}

/// Whether the target has the ledger (any migration ran against it).
pub async fn ledger_exists(conn: &mut PgConnection) -> Result<bool, sqlx::Error> {
    let r: Option<String> =
        sqlx::query_scalar("SELECT to_regclass('finlit_map.loaded_chunks')::text").fetch_one(&mut *conn).await?;
    Ok(r.is_some())
}

fn mappings_of<'p>(plan: &'p Plan, table: &str) -> Vec<&'p MappingPlan> {
    plan.mappings.iter().filter(|m| m.table == table).collect()
}

/// `t` rows a mapping inserted, as a condition on alias `t`.
fn migrated_condition(m: &MappingPlan, alias: &str) -> String {
    let cols: Vec<String> = m.key.iter().map(|&i| format!("{alias}.{}", quote(&m.columns[i].name))).collect();
    format!(
        "{} IN (SELECT unnest(l.keys) FROM finlit_map.loaded_chunks l WHERE l.table_name = {} AND l.mapping = {})",
        key_text(&cols),
        literal(&m.table),
        literal(&m.name),
    )
}

fn migrated_any(plan: &Plan, table: &str, alias: &str) -> String {
    let conds: Vec<String> = mappings_of(plan, table).iter().map(|m| migrated_condition(m, alias)).collect();
    if conds.is_empty() { "FALSE".into() } else { format!("({})", conds.join(" OR ")) }
}

async fn count(conn: &mut PgConnection, stmt: String) -> Result<u64, sqlx::Error> {
    Ok(sqlx::query_scalar::<_, i64>(sql(stmt)).fetch_one(&mut *conn).await? as u64)
}

/// Every mapped table's row count, split into migrated and other rows.
pub async fn counts(plan: &Plan, conn: &mut PgConnection) -> Result<Vec<TableCount>, RollbackError> {
    let has_ledger = ledger_exists(conn).await?;
    let mut out = Vec::new();
    let tables: BTreeSet<&str> = plan.mappings.iter().map(|m| m.table.as_str()).collect();
    for t in tables {
        let total = count(conn, format!("SELECT count(*) FROM {}", quote(t))).await?;
        let migrated = if has_ledger {
            count(conn, format!("SELECT count(*) FROM {} t WHERE {}", quote(t), migrated_any(plan, t, "t"))).await?
        } else {
            0
        };
        out.push(TableCount { table: t.to_string(), total, migrated });
    }
    Ok(out)
}

/// Works out what a rollback of `tables` removes, in delete order, or why it
/// cannot. With `cascade`, mapped tables whose migrated rows point at the
/// rows removed are rolled back too.
pub async fn plan_rollback(
    plan: &Plan,
    tables: &[String],
    cascade: bool,
    conn: &mut PgConnection,
) -> Result<Vec<TableStep>, RollbackError> {
    if !ledger_exists(conn).await? {
        return Err(RollbackError::NoLedger);
    }
    let mut set: BTreeSet<String> = tables.iter().cloned().collect();
    loop {
        let mut blockers = Vec::new();
        let mut added = false;
        for t in set.clone() {
            for (d, fk) in plan.schema.tables.values().flat_map(|d| d.foreign_keys.iter().map(move |fk| (d, fk))) {
                if fk.ref_table != t || fk.columns.len() != 1 || fk.ref_columns.len() != 1 {
                    continue;
                }
                let (c, rc) = (quote(&fk.columns[0]), quote(&fk.ref_columns[0]));
                // Rows of `d` pointing at migrated rows of `t` that this rollback would leave behind.
                let stays = if set.contains(&d.name) {
                    format!("NOT {}", migrated_any(plan, &d.name, "d"))
                } else {
                    "TRUE".into()
                };
                let n = count(
                    conn,
                    format!(
                        "SELECT count(*) FROM {} d WHERE d.{c} IS NOT NULL AND {stays} AND d.{c} IN \
                         (SELECT r.{rc} FROM {} r WHERE {})",
                        quote(&d.name),
                        quote(&t),
                        migrated_any(plan, &t, "r")
                    ),
                )
                .await?;
                if n == 0 {
                    continue;
                }
                let mapped = !mappings_of(plan, &d.name).is_empty();
                if cascade && mapped && !set.contains(&d.name) {
                    set.insert(d.name.clone());
                    added = true;
                } else {
                    blockers.push((
                        d.name.clone(),
                        fk.columns[0].clone(),
                        t.clone(),
                        n,
                        mapped && !set.contains(&d.name),
                    ));
                }
            }
        }
        if added {
            continue;
        }
        if !blockers.is_empty() {
            let lines: Vec<String> = blockers
                .iter()
                .map(|(d, c, t, n, can_cascade)| {
                    let hint = if *can_cascade {
                        format!(" (roll back `{d}` too, or add --cascade)")
                    } else {
                        " (rows the migration did not write: delete or re-point them first)".into()
                    };
                    format!("  {n} rows of {d}.{c} still point at migrated rows of {t}{hint}")
                })
                .collect();
            return Err(RollbackError::Referenced(format!(
                "refusing: rows outside this rollback still reference rows it would remove:\n{}",
                lines.join("\n")
            )));
        }
        break;
    }
    // Dependants first: the reverse of the load order.
    let mut order: Vec<&str> = Vec::new();
    for m in plan.mappings.iter().rev() {
        if set.contains(&m.table) && !order.contains(&m.table.as_str()) {
            order.push(&m.table);
        }
    }
    let mut steps = Vec::new();
    for t in order {
        let total = count(conn, format!("SELECT count(*) FROM {}", quote(t))).await?;
        let migrated =
            count(conn, format!("SELECT count(*) FROM {} t WHERE {}", quote(t), migrated_any(plan, t, "t"))).await?;
        steps.push(TableStep { table: t.to_string(), migrated, total });
    }
    Ok(steps)
}

/// Deletes the migrated rows of each step's table, in order, in one
/// transaction; returns the rows deleted per table.
pub async fn execute(
    plan: &Plan,
    steps: &[TableStep],
    conn: &mut PgConnection,
) -> Result<Vec<(String, u64)>, RollbackError> {
    let mut tx = conn.begin().await?;
    let mut done = Vec::new();
    for s in steps {
        // One statement per table: a tree's parents and children go together,
        // and foreign keys are checked when the statement ends.
        let deleted =
            sqlx::query(sql(format!("DELETE FROM {} t WHERE {}", quote(&s.table), migrated_any(plan, &s.table, "t"))))
                .execute(&mut *tx)
                .await?
                .rows_affected();
        sqlx::query("DELETE FROM finlit_map.loaded_chunks WHERE table_name = $1")
            .bind(&s.table)
            .execute(&mut *tx)
            .await?;
        // What was removed must load again: an interrupted run's checkpoints
        // for these mappings go too, so the next run starts them over
        // instead of skipping them as complete.
        let mappings: Vec<String> = mappings_of(plan, &s.table).iter().map(|m| m.name.clone()).collect();
        sqlx::query("DELETE FROM finlit_map.progress WHERE mapping = ANY($1)")
            .bind(&mappings)
            .execute(&mut *tx)
            .await?;
        done.push((s.table.clone(), deleted));
    }
    // An interrupted run with nothing left to continue is over.
    sqlx::query(
        "UPDATE finlit_map.runs r SET outcome = 'rolled back', finished_at = coalesce(finished_at, now())
         WHERE outcome IN ('running', 'failed', 'interrupted')
           AND NOT EXISTS (SELECT 1 FROM finlit_map.progress p WHERE p.run_id = r.run_id)",
    )
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(done)
}

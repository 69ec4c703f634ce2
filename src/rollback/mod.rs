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

use crate::pg::keys::key_text;
use crate::pg::ledger;
use crate::pg::postdata;
use crate::pg::sql::{quote, sql};
use crate::plan::{MappingPlan, Plan};

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

fn mappings_of<'p>(plan: &'p Plan, table: &str) -> Vec<&'p MappingPlan> {
    plan.mappings.iter().filter(|m| m.table == table).collect()
}

/// `t` rows a mapping inserted, as a condition on alias `t`.
fn migrated_condition(m: &MappingPlan, alias: &str) -> String {
    let cols: Vec<String> = m.key.iter().map(|&i| format!("{alias}.{}", quote(&m.columns[i].name))).collect();
    format!("{} IN ({})", key_text(&cols), ledger::migrated_keys(&m.table, &m.name))
}

fn migrated_any(plan: &Plan, table: &str, alias: &str) -> String {
    let conds: Vec<String> = mappings_of(plan, table).iter().map(|m| migrated_condition(m, alias)).collect();
    if conds.is_empty() { "FALSE".into() } else { format!("({})", conds.join(" OR ")) }
}

/// A foreign key, as the database has it, pointing at a table.
#[derive(Debug, Clone)]
struct Referencing {
    name: String,
    /// The referencing table's name, and as SQL (schema-qualified when needed).
    table: String,
    qualified: String,
    columns: Vec<String>,
    ref_columns: Vec<String>,
    /// What deleting a referenced row would do to the referencing rows,
    /// when it is not simply refused.
    on_delete: Option<&'static str>,
}

/// Every foreign key in the database that points at `table`, from
/// `pg_constraint`: those of tables `schema/` does not know included.
async fn referencing(conn: &mut PgConnection, table: &str) -> Result<Vec<Referencing>, sqlx::Error> {
    type Row = (String, String, String, Vec<String>, Vec<String>, i8);
    let rows: Vec<Row> = sqlx::query_as(
        "SELECT c.conname::text, cl.relname::text, c.conrelid::regclass::text,
                array_agg(a.attname::text ORDER BY k.n), array_agg(af.attname::text ORDER BY k.n),
                c.confdeltype
         FROM pg_constraint c
         JOIN pg_class cl ON cl.oid = c.conrelid
         CROSS JOIN LATERAL unnest(c.conkey, c.confkey) WITH ORDINALITY AS k(col, refcol, n)
         JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = k.col
         JOIN pg_attribute af ON af.attrelid = c.confrelid AND af.attnum = k.refcol
         WHERE c.contype = 'f' AND c.confrelid = $1::regclass
         GROUP BY c.oid, c.conname, cl.relname, c.conrelid, c.confdeltype
         ORDER BY 2, 1",
    )
    .bind(quote(table))
    .fetch_all(&mut *conn)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(name, table, qualified, columns, ref_columns, action)| Referencing {
            name,
            table,
            qualified,
            columns,
            ref_columns,
            on_delete: match action as u8 {
                b'c' => Some("CASCADE"),
                b'n' => Some("SET NULL"),
                b'd' => Some("SET DEFAULT"),
                _ => None,
            },
        })
        .collect())
}

async fn count(conn: &mut PgConnection, stmt: String) -> Result<u64, sqlx::Error> {
    Ok(sqlx::query_scalar::<_, i64>(sql(stmt)).fetch_one(&mut *conn).await? as u64)
}

/// Every mapped table's row count, split into migrated and other rows.
pub async fn counts(plan: &Plan, conn: &mut PgConnection) -> Result<Vec<TableCount>, RollbackError> {
    let has_ledger = ledger::exists(conn).await?;
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
    if !ledger::exists(conn).await? {
        return Err(RollbackError::NoLedger);
    }
    let mut set: BTreeSet<String> = tables.iter().cloned().collect();
    // A first load that did not finish is undone as a whole: its tables
    // lack their keys and foreign keys, and get them back empty.
    for d in postdata::pending(conn).await? {
        set.insert(d.table);
    }
    loop {
        let mut blockers = Vec::new();
        let mut added = false;
        for t in set.clone() {
            // Every foreign key in the database that points at `t`, the
            // application's own tables included, whatever its ON DELETE.
            for fk in referencing(conn, &t).await? {
                let pairs: Vec<(String, String)> =
                    fk.columns.iter().map(|c| quote(c)).zip(fk.ref_columns.iter().map(|c| quote(c))).collect();
                let not_null: Vec<String> = pairs.iter().map(|(c, _)| format!("d.{c} IS NOT NULL")).collect();
                let cols: Vec<String> = pairs.iter().map(|(c, _)| format!("d.{c}")).collect();
                let ref_cols: Vec<String> = pairs.iter().map(|(_, rc)| format!("r.{rc}")).collect();
                // Rows of the child pointing at migrated rows of `t` that this rollback would leave behind.
                let stays = if set.contains(&fk.table) {
                    format!("NOT {}", migrated_any(plan, &fk.table, "d"))
                } else {
                    "TRUE".into()
                };
                let n = count(
                    conn,
                    format!(
                        "SELECT count(*) FROM {} d WHERE {} AND {stays} AND ({}) IN (SELECT {} FROM {} r WHERE {})",
                        fk.qualified,
                        not_null.join(" AND "),
                        cols.join(", "),
                        ref_cols.join(", "),
                        quote(&t),
                        migrated_any(plan, &t, "r")
                    ),
                )
                .await?;
                if n == 0 {
                    continue;
                }
                let mapped = !mappings_of(plan, &fk.table).is_empty();
                if cascade && mapped && !set.contains(&fk.table) {
                    set.insert(fk.table.clone());
                    added = true;
                } else {
                    blockers.push((fk, t.clone(), n, mapped));
                }
            }
        }
        if added {
            continue;
        }
        if !blockers.is_empty() {
            let lines: Vec<String> = blockers
                .iter()
                .map(|(fk, t, n, mapped)| {
                    let hint = if *mapped && !set.contains(&fk.table) {
                        format!(" (roll back `{}` too, or add --cascade)", fk.table)
                    } else {
                        format!(
                            " (rows the migration did not write{}: delete or re-point them first)",
                            fk.on_delete.map(|a| format!("; its ON DELETE {a} would change them")).unwrap_or_default()
                        )
                    };
                    format!(
                        "  {n} rows of {}.{} still point at migrated rows of {t} (constraint {}){hint}",
                        fk.qualified,
                        fk.columns.join(", "),
                        fk.name
                    )
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
    ledger::ensure(conn).await?;
    let mut tx = conn.begin().await?;
    let mut done = Vec::new();
    // Tables of an unfinished first load hold nothing but its rows: emptied
    // at once, with their keys, indexes and constraints created again.
    let waiting = postdata::pending(&mut tx).await?;
    let mut emptied = BTreeSet::new();
    for d in &waiting {
        let n = count(&mut tx, format!("SELECT count(*) FROM {}", quote(&d.table))).await?;
        done.push((d.table.clone(), n));
        emptied.insert(d.table.clone());
    }
    postdata::abandon(&mut tx, &waiting).await?;
    let runs: Vec<i64> = waiting.iter().map(|d| d.run_id).collect();
    sqlx::query("UPDATE finlit_map.runs SET outcome = 'rolled back', finished_at = coalesce(finished_at, now()) WHERE run_id = ANY($1)")
        .bind(&runs)
        .execute(&mut *tx)
        .await?;
    for s in steps {
        // One statement per table: a tree's parents and children go together,
        // and foreign keys are checked when the statement ends.
        let deleted =
            sqlx::query(sql(format!("DELETE FROM {} t WHERE {}", quote(&s.table), migrated_any(plan, &s.table, "t"))))
                .execute(&mut *tx)
                .await?
                .rows_affected();
        let mappings: Vec<String> = mappings_of(plan, &s.table).iter().map(|m| m.name.clone()).collect();
        ledger::forget_table(&mut tx, &s.table, &mappings).await?;
        if !emptied.contains(&s.table) {
            done.push((s.table.clone(), deleted));
        }
    }
    ledger::close_emptied_runs(&mut tx).await?;
    if !steps.is_empty() {
        // What `sync` would follow no longer matches the tables: it needs a new snapshot.
        crate::pg::sync_state::forget(&mut tx).await?;
    }
    tx.commit().await?;
    Ok(done)
}

//! `run --prune`: a re-run from a newer dump converges to it. Rows a
//! migration loaded (their keys are in the ledger) whose key no document of
//! the source produces any more (the document was deleted, the array
//! element removed) are deleted, and so are their ledger entries. Rows the
//! application wrote survive, as in rollback. A mapping whose source now
//! has documents it cannot map is left alone: its old rows may still be
//! wanted. Dependants go first, all in one transaction; a row elsewhere
//! still pointing at a pruned row stops the prune with the reason.
//!
//! Knows the plan, the source (through `validate`'s scan) and SQL.

use sqlx::{Connection, PgConnection};

use super::{KEY_BATCH, SOURCE_KEYS, ScanError, scan_storing_keys};
use crate::pg::keys::key_text;
use crate::pg::ledger;
use crate::pg::sql::{quote, sql};
use crate::plan::{MappingPlan, Plan};
use crate::source::{Source, SourceError};

#[derive(Debug, thiserror::Error)]
pub enum PruneError {
    #[error(transparent)]
    Source(#[from] SourceError),
    #[error(transparent)]
    Scan(#[from] ScanError),
    #[error("prune: {}", crate::pg::sql::pg_text(.0))]
    Db(#[from] sqlx::Error),
}

/// What pruning did (or left alone) for one mapping.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Pruned {
    pub mapping: String,
    pub table: String,
    pub deleted: u64,
    /// Why the mapping was left alone, when it was.
    pub skipped: Option<String>,
}

/// Prunes the mappings `selected`, children first.
pub async fn prune(
    plan: &Plan,
    selected: &[&MappingPlan],
    source: &Source,
    conn: &mut PgConnection,
) -> Result<Vec<Pruned>, PruneError> {
    // Later stages point at earlier ones: prune them first.
    let order: Vec<&MappingPlan> = plan
        .stages
        .iter()
        .rev()
        .flat_map(|s| s.iter().map(|&i| &plan.mappings[i]))
        .filter(|m| selected.iter().any(|s| std::ptr::eq(*s, *m)))
        .collect();
    let mut work = Vec::new();
    super::prepare_source_keys(conn).await?;
    for m in order {
        if !source.has(&m.source) {
            work.push((m, Vec::new(), Some(format!("the source has no collection `{}`", m.source))));
            continue;
        }
        let (rows, _, produced) = scan_storing_keys(m, source, (0, 0), Some(&m.name), conn).await?;
        if rows > produced {
            let why = format!(
                "{} rows of the source cannot be mapped now; their old rows may still be wanted",
                rows - produced
            );
            work.push((m, Vec::new(), Some(why)));
            continue;
        }
        work.push((m, Vec::new(), None));
    }
    super::analyze_source_keys(conn).await?;
    for (m, gone, skipped) in &mut work {
        if skipped.is_none() {
            *gone = gone_keys(m, conn).await?;
        }
    }
    let mut tx = conn.begin().await?;
    let mut out = Vec::new();
    for (m, gone, skipped) in work {
        let cols: Vec<String> = m.key.iter().map(|&i| format!("t.{}", quote(&m.columns[i].name))).collect();
        let mut deleted = 0;
        for part in gone.chunks(KEY_BATCH) {
            let stmt = format!("DELETE FROM {} t WHERE {} = ANY($1::text[])", quote(&m.table), key_text(&cols));
            deleted += sqlx::query(sql(stmt)).bind(part).execute(&mut *tx).await?.rows_affected();
            let forget = format!(
                "UPDATE finlit_map.loaded_chunks l SET {} WHERE table_name = $1 AND mapping = $2 AND {} && $3::text[]",
                ledger::without_keys("l", 3),
                ledger::keys_of("l")
            );
            sqlx::query(sql(forget)).bind(&m.table).bind(&m.name).bind(part).execute(&mut *tx).await?;
        }
        out.push(Pruned { mapping: m.name.clone(), table: m.table.clone(), deleted, skipped });
    }
    tx.commit().await?;
    Ok(out)
}

/// The ledger's keys of a mapping that no source row produces now (the
/// scan stored those under the mapping's name); only these are held.
async fn gone_keys(m: &MappingPlan, conn: &mut PgConnection) -> Result<Vec<String>, sqlx::Error> {
    if !ledger::exists(conn).await? {
        return Ok(Vec::new());
    }
    let stmt = format!(
        "SELECT DISTINCT l.k FROM ({}) AS l(k) WHERE NOT EXISTS \
         (SELECT 1 FROM {SOURCE_KEYS} s WHERE s.table_name = $1 AND s.k = l.k)",
        ledger::migrated_keys(&m.table, &m.name)
    );
    sqlx::query_scalar(sql(stmt)).bind(&m.name).fetch_all(&mut *conn).await
}

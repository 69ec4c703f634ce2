//! Proves a migration: counts, content and integrity, through the same plan
//! that loaded it.
//!
//! Counts: what the source gives (after filters; array elements for
//! `unwind`) against the table and the last run's rejects. Content: sampled
//! source rows are transformed again and compared column by column with the
//! row found by key. Integrity: foreign keys that point at nothing, and rows
//! no source document produces.
//!
//! Knows the plan, the source and SQL; nothing of TOML or the command line.

pub mod prune;

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::Value;
use sqlx::PgConnection;

use crate::map::keep::Keep;
use crate::map::{RowEvent, RowMapper};
use crate::pg::keys::ServerKeys;
use crate::pg::sql::{column_types, equals_param, quote};
use crate::plan::{MappingPlan, OnMissing, Plan};
use crate::source::{Source, SourceError};
use crate::value::cell::Cell;

#[derive(Debug, thiserror::Error)]
pub enum ValidateError {
    #[error(transparent)]
    Source(#[from] SourceError),
    #[error("PostgreSQL: {0}")]
    Db(#[from] sqlx::Error),
}

#[derive(Debug, Clone, Serialize)]
pub struct Mismatch {
    pub table: String,
    pub key: String,
    pub column: String,
    pub expected: String,
    pub actual: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Orphans {
    pub column: String,
    pub references: String,
    pub rows: u64,
    pub examples: Vec<String>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct TableCheck {
    pub table: String,
    pub mappings: Vec<String>,
    /// Rows the source gives for this table (after filters).
    pub source_rows: u64,
    pub target_rows: u64,
    /// Rejects of each mapping's last run, when a run was recorded.
    pub rejected_last_run: Option<u64>,
    pub count_ok: bool,
    pub sampled: u64,
    pub sample_passed: u64,
    /// Sampled rows not in the table that the last run's recorded rejects
    /// explain (at most as many as it rejected): listed, not failed.
    pub sample_rejected: u64,
    /// The keys of those rows.
    pub explained: Vec<String>,
    pub mismatches: Vec<Mismatch>,
    pub orphans: Vec<Orphans>,
    /// Rows in the table whose key no source document produces.
    pub extra_rows: u64,
    pub extra_examples: Vec<String>,
    /// Keys the source produces that the table lacks (beyond the last run's rejects).
    pub missing_rows: u64,
    pub missing_examples: Vec<String>,
}

impl TableCheck {
    pub fn passed(&self, count_only: bool) -> bool {
        self.count_ok
            && (count_only
                || (self.sample_passed + self.sample_rejected == self.sampled
                    && self.extra_rows == 0
                    && self.orphans.is_empty()
                    && self.missing_rows <= self.rejected_last_run.unwrap_or(0)))
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct ValidationReport {
    pub count_only: bool,
    pub tables: Vec<TableCheck>,
    pub passed: bool,
}

/// A key as text: each key column's PostgreSQL text, joined.
fn key_string(parts: &[Option<String>]) -> String {
    parts.iter().map(|p| p.as_deref().unwrap_or("NULL")).collect::<Vec<_>>().join(", ")
}

pub(crate) struct Sample {
    key: Vec<Option<String>>,
    cells: Vec<Cell<'static>>,
}

/// Keys as the client wrote them, one list per key column.
pub(crate) type ClientKeys = Vec<Vec<Option<String>>>;

pub async fn validate(
    plan: &Plan,
    mappings: &[&MappingPlan],
    source: &Source,
    conn: &mut PgConnection,
    sample: usize,
    count_only: bool,
) -> Result<ValidationReport, ValidateError> {
    sqlx::query("SET TimeZone = 'UTC'").execute(&mut *conn).await?;
    let last = crate::pg::ledger::last_runs(conn).await?;
    let now = crate::pg::ledger::rejected_now(conn).await?;
    let mut tables: BTreeMap<String, TableCheck> = BTreeMap::new();
    prepare_source_keys(conn).await?;
    let mut server_keys: BTreeMap<String, ServerKeys> = BTreeMap::new();
    let mut samples: Vec<(&MappingPlan, Vec<Sample>)> = Vec::new();

    for m in mappings {
        let t = tables
            .entry(m.table.clone())
            .or_insert_with(|| TableCheck { table: m.table.clone(), ..Default::default() });
        t.mappings.push(m.name.clone());
        // What the ledger says is rejected now (a run's rejects, kept
        // current by `sync`); an older ledger has the last run's count only.
        match &now {
            Some((by_mapping, _)) if last.iter().any(|(name, _)| name == &m.name) => {
                *t.rejected_last_run.get_or_insert(0) += by_mapping.get(&m.name).copied().unwrap_or(0);
            }
            _ => {
                if let Some((_, l)) = last.iter().find(|(name, _)| name == &m.name) {
                    *t.rejected_last_run.get_or_insert(0) += l.rejected as u64;
                }
            }
        }
        // Only spaces the samples out: an estimate will do.
        let total = source.estimated_count(m).await.unwrap_or(0);
        let n = if count_only { 0 } else { sample };
        let label = (!count_only).then_some(m.table.as_str());
        let (rows, picked, _) = scan_storing_keys(m, source, (total, n), label, conn).await?;
        t.source_rows += rows;
        let names: Vec<String> = m.key.iter().map(|&i| m.columns[i].name.clone()).collect();
        server_keys.insert(m.name.clone(), ServerKeys::load(conn, &m.table, &names).await?);
        samples.push((m, picked));
    }

    for t in tables.values_mut() {
        // Rows `sync` parked (what they point at left) are rejected rows too.
        if let Some(n) = now.as_ref().and_then(|(_, parked)| parked.get(&t.table)) {
            *t.rejected_last_run.get_or_insert(0) += n;
        }
        t.target_rows =
            sqlx::query_scalar::<_, i64>(crate::pg::sql::sql(format!("SELECT count(*) FROM {}", quote(&t.table))))
                .fetch_one(&mut *conn)
                .await? as u64;
        t.count_ok = t.target_rows + t.rejected_last_run.unwrap_or(0) == t.source_rows;
    }
    if !count_only {
        analyze_source_keys(conn).await?;
        for (m, picked) in &samples {
            let t = tables.get_mut(&m.table).expect("table checked above");
            compare(plan, m, &server_keys[&m.name], picked, conn, t).await?;
        }
        for t in tables.values_mut() {
            integrity(plan, t, mappings, conn).await?;
        }
    }
    let tables: Vec<TableCheck> = tables.into_values().collect();
    let passed = tables.iter().all(|t| t.passed(count_only));
    Ok(ValidationReport { count_only, tables, passed })
}

/// The rows a mapping's collection gives (array elements for `unwind`,
/// after filters, rejected rows included): what its table should hold
/// beside the rejects. Reads the collection through the mapping when
/// documents and rows can differ, else counts documents.
pub async fn source_rows(m: &MappingPlan, source: &Source) -> Result<u64, SourceError> {
    if m.unwind.is_none() && m.filter.is_empty() && m.on_duplicate == crate::plan::OnDuplicate::Reject {
        return Ok(source.count(m).await.unwrap_or(0));
    }
    let rows = tokio::task::block_in_place(|| scan(m, source, 0, 0, &mut |_| Ok(())));
    rows.map(|(rows, _)| rows).map_err(|e| match e {
        ScanError::Source(s) => s,
        ScanError::Keys(_) => unreachable!("the keys of this scan go nowhere"),
    })
}

/// Keys converted to the server's text per round trip.
pub(crate) const KEY_BATCH: usize = 50_000;

/// Why a scan stopped: the source, or what was done with its keys.
#[derive(Debug, thiserror::Error)]
pub enum ScanError {
    #[error(transparent)]
    Source(#[from] SourceError),
    #[error(transparent)]
    Keys(#[from] sqlx::Error),
}

impl From<ScanError> for ValidateError {
    fn from(e: ScanError) -> Self {
        match e {
            ScanError::Source(s) => ValidateError::Source(s),
            ScanError::Keys(d) => ValidateError::Db(d),
        }
    }
}

/// Reads the whole collection through the mapping: how many rows it gives
/// and every n-th row for the content sample; their keys go to `on_keys`
/// [`KEY_BATCH`] at a time, so no scan holds a collection's keys.
pub(crate) fn scan(
    m: &MappingPlan,
    source: &Source,
    total: u64,
    sample: usize,
    on_keys: &mut dyn FnMut(ClientKeys) -> Result<(), sqlx::Error>,
) -> Result<(u64, Vec<Sample>), ScanError> {
    if !source.has(&m.source) {
        return Ok((0, Vec::new()));
    }
    let mut stream = source.stream(m, None, 1000, tokio::runtime::Handle::current())?;
    let stride = if sample == 0 { u64::MAX } else { (total.max(1) / sample as u64).max(1) };
    let mut mapper = RowMapper::new(m);
    // Rows a run does not load because their key repeats (`on_duplicate`)
    // are neither expected in the table nor sampled.
    let mut keep = Keep::new(m);
    crate::run::reader::first_pass(&mut keep, m, source, 1000, &tokio::runtime::Handle::current())?;
    let (mut rows, mut picked) = (0u64, Vec::new());
    let mut keys: ClientKeys = vec![Vec::new(); m.key.len()];
    let mut n = 0u64;
    while let Some(doc) = stream.next_doc() {
        let doc = match doc? {
            crate::source::SourceItem::Doc(d) => d,
            // An unreadable document is one rejected row, as in `run`.
            crate::source::SourceItem::Bad(_) => {
                rows += 1;
                continue;
            }
        };
        let take = sample > 0 && n % stride == 0 && picked.len() < sample;
        n += 1;
        if keys.first().is_some_and(|k| k.len() >= KEY_BATCH) {
            on_keys(std::mem::replace(&mut keys, vec![Vec::new(); m.key.len()]))?;
        }
        mapper.map(&doc, |ev| match ev {
            RowEvent::Row { cells, .. } if keep.keeps(&cells) => {
                rows += 1;
                let key: Vec<Option<String>> = m.key.iter().map(|&i| cells[i].to_pg_text()).collect();
                for (col, k) in keys.iter_mut().zip(&key) {
                    col.push(k.clone());
                }
                if take && picked.len() < sample {
                    picked.push(Sample { key, cells: cells.into_iter().map(Cell::into_owned).collect() });
                }
            }
            RowEvent::Rejected(_) => rows += 1,
            RowEvent::Row { .. } | RowEvent::Filtered(_) | RowEvent::NoElements => {}
        });
    }
    if keys.first().is_some_and(|k| !k.is_empty()) {
        on_keys(keys)?;
    }
    Ok((rows, picked))
}

/// The source's keys, as the server writes them, in a temporary table of
/// the target (by table), not in memory: what `validate` and `run --prune`
/// compare the table and the ledger with.
pub(crate) const SOURCE_KEYS: &str = "fm_source_keys";

/// An empty [`SOURCE_KEYS`] on this connection.
pub(crate) async fn prepare_source_keys(conn: &mut PgConnection) -> Result<(), sqlx::Error> {
    sqlx::query(crate::pg::sql::sql(format!(
        "CREATE TEMP TABLE IF NOT EXISTS {SOURCE_KEYS} (table_name TEXT NOT NULL, k TEXT NOT NULL)"
    )))
    .execute(&mut *conn)
    .await?;
    sqlx::query(crate::pg::sql::sql(format!("TRUNCATE {SOURCE_KEYS}"))).execute(&mut *conn).await.map(|_| ())
}

/// Statistics of [`SOURCE_KEYS`] once it is filled: without them (temporary
/// tables are never analysed on their own) the planner compares it with a
/// table row by row instead of by hash.
pub(crate) async fn analyze_source_keys(conn: &mut PgConnection) -> Result<(), sqlx::Error> {
    sqlx::query(crate::pg::sql::sql(format!("ANALYZE {SOURCE_KEYS}"))).execute(&mut *conn).await.map(|_| ())
}

/// Scans a mapping's collection with its keys stored in [`SOURCE_KEYS`]
/// under `label` (none with `keys = false`): rows, samples (as [`scan`])
/// and how many keys were stored.
pub(crate) async fn scan_storing_keys(
    m: &MappingPlan,
    source: &Source,
    (total, sample): (u64, usize),
    label: Option<&str>,
    conn: &mut PgConnection,
) -> Result<(u64, Vec<Sample>, u64), ScanError> {
    let names: Vec<String> = m.key.iter().map(|&i| m.columns[i].name.clone()).collect();
    let sk = ServerKeys::load(conn, &m.table, &names).await?;
    let (expr, from) = sk.sql(2);
    let stmt = format!("INSERT INTO {SOURCE_KEYS} (table_name, k) SELECT $1, {expr} FROM {from}");
    let rt = tokio::runtime::Handle::current();
    let mut stored = 0u64;
    // Reading drives the driver synchronously; keep it off the async workers.
    let (rows, picked) = tokio::task::block_in_place(|| {
        scan(m, source, total, sample, &mut |batch| {
            let Some(label) = label else { return Ok(()) };
            stored += batch.first().map_or(0, Vec::len) as u64;
            let mut q = sqlx::query(crate::pg::sql::sql(&stmt)).bind(label);
            for col in &batch {
                q = q.bind(col.as_slice());
            }
            rt.block_on(q.execute(&mut *conn)).map(|_| ())
        })
    })?;
    Ok((rows, picked, stored))
}

/// Compares sampled rows with the table, typed: each expected value is cast
/// by the server to the column's type and compared with `IS NOT DISTINCT
/// FROM`, so `1.50` and `1.5` in numeric, or jsonb written with other
/// spacing, are the same value, and a double differs in its last bit.
async fn compare(
    plan: &Plan,
    m: &MappingPlan,
    keys: &ServerKeys,
    picked: &[Sample],
    conn: &mut PgConnection,
    t: &mut TableCheck,
) -> Result<(), sqlx::Error> {
    let types = column_types(conn, &m.table).await?;
    let first = m.key.len() + 1;
    let eqs: Vec<String> = m
        .columns
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let ty = types.get(&c.name).map_or("text", String::as_str);
            equals_param(&format!("t.{}", quote(&c.name)), "IS NOT DISTINCT FROM", first + i, ty)
        })
        .collect();
    let stmt = format!(
        "SELECT ARRAY[{}]::bool[], to_jsonb(t.*) FROM {} t WHERE {}",
        eqs.join(", "),
        quote(&m.table),
        keys.matches(1)
    );
    let rejected_last_run = t.rejected_last_run.unwrap_or(0);
    for s in picked {
        t.sampled += 1;
        let mut q = sqlx::query_as::<_, (Vec<bool>, Value)>(crate::pg::sql::sql(&stmt));
        for k in &s.key {
            q = q.bind(k.clone());
        }
        for c in &s.cells {
            q = q.bind(c.to_pg_text());
        }
        let key = key_string(&s.key);
        let Some((equal, row)) = q.fetch_optional(&mut *conn).await? else {
            // The last run's recorded rejects explain up to that many absent rows.
            if t.sample_rejected < rejected_last_run {
                t.sample_rejected += 1;
                t.explained.push(key);
                continue;
            }
            t.mismatches.push(Mismatch {
                table: m.table.clone(),
                key,
                column: "(row)".into(),
                expected: "a row".into(),
                actual: "no row with this key".into(),
            });
            continue;
        };
        let mut ok = true;
        for ((c, cell), same) in m.columns.iter().zip(&s.cells).zip(equal) {
            // A server-side default fills a value the document did not have.
            if same || cell.is_null() && c.default.by_server() {
                continue;
            }
            // `on_missing = "null"`: NULL where the referenced row is not there.
            if c.on_missing == OnMissing::Null
                && row.get(&c.name).is_none_or(Value::is_null)
                && let (Some(target), Some(rc)) = (&c.references, plan.referenced_column(m, c))
            {
                let ty = types.get(&c.name).map_or("text", String::as_str);
                let stmt = format!(
                    "SELECT NOT EXISTS (SELECT 1 FROM {} r WHERE {})",
                    quote(target),
                    equals_param(&format!("r.{}", quote(&rc)), "=", 1, ty)
                );
                let gone: bool =
                    sqlx::query_scalar(crate::pg::sql::sql(stmt)).bind(cell.to_pg_text()).fetch_one(&mut *conn).await?;
                if gone {
                    continue;
                }
            }
            ok = false;
            t.mismatches.push(Mismatch {
                table: m.table.clone(),
                key: key.clone(),
                column: c.name.clone(),
                expected: cell.to_pg_text().map_or_else(|| "NULL".into(), |t| Value::String(t).to_string()),
                actual: row.get(&c.name).map_or_else(|| "NULL".into(), Value::to_string),
            });
        }
        if ok {
            t.sample_passed += 1;
        }
    }
    Ok(())
}

async fn integrity(
    plan: &Plan,
    t: &mut TableCheck,
    mappings: &[&MappingPlan],
    conn: &mut PgConnection,
) -> Result<(), sqlx::Error> {
    let Some(table) = plan.schema.table(&t.table) else { return Ok(()) };
    // The schema's single-column foreign keys, and the references mappings
    // declare without one (a natural key the schema does not constrain).
    let mut refs: Vec<(String, String, String)> = table
        .foreign_keys
        .iter()
        .filter(|fk| fk.columns.len() == 1 && fk.ref_columns.len() == 1)
        .map(|fk| (fk.columns[0].clone(), fk.ref_table.clone(), fk.ref_columns[0].clone()))
        .collect();
    for c in mappings.iter().filter(|m| m.table == t.table).flat_map(|m| &m.columns) {
        if let (Some(rt), Some(rc)) = (&c.references, &c.references_column)
            && !refs.iter().any(|(col, _, _)| *col == c.name)
        {
            refs.push((c.name.clone(), rt.clone(), rc.clone()));
        }
    }
    for (column, ref_table, ref_column) in refs {
        let (c, rt, rc) = (quote(&column), quote(&ref_table), quote(&ref_column));
        let stmt = format!(
            "SELECT x.{c}::text FROM {} x WHERE x.{c} IS NOT NULL AND NOT EXISTS (SELECT 1 FROM {rt} r WHERE r.{rc} = x.{c})",
            quote(&t.table)
        );
        let found: Vec<String> = sqlx::query_scalar(crate::pg::sql::sql(stmt)).fetch_all(&mut *conn).await?;
        if !found.is_empty() {
            t.orphans.push(Orphans {
                column,
                references: ref_table,
                rows: found.len() as u64,
                examples: found.into_iter().take(5).collect(),
            });
        }
    }
    // Rows no source document produces, and source rows the table lacks:
    // the table's keys against the scan's, both in the server.
    let Some(m) = mappings.iter().find(|m| m.table == t.table) else { return Ok(()) };
    let cols: Vec<String> = m.key.iter().map(|&i| format!("x.{}", quote(&m.columns[i].name))).collect();
    let key = crate::pg::keys::key_text(&cols);
    let table = quote(&t.table);
    let mine = format!("SELECT k FROM {SOURCE_KEYS} WHERE table_name = $1");
    let extra =
        format!("SELECT {key} AS k FROM {table} x WHERE NOT EXISTS (SELECT 1 FROM ({mine}) s WHERE s.k = {key})");
    let missing =
        format!("SELECT DISTINCT s.k FROM ({mine}) s WHERE NOT EXISTS (SELECT 1 FROM {table} x WHERE {key} = s.k)");
    let (extra_rows, extra_examples) = count_and_examples(conn, &extra, &t.table).await?;
    let (missing_rows, missing_examples) = count_and_examples(conn, &missing, &t.table).await?;
    (t.extra_rows, t.extra_examples) = (extra_rows, extra_examples);
    (t.missing_rows, t.missing_examples) = (missing_rows, missing_examples);
    Ok(())
}

/// How many rows a query of one text column `k` gives, and its first five in order.
async fn count_and_examples(
    conn: &mut PgConnection,
    query: &str,
    table: &str,
) -> Result<(u64, Vec<String>), sqlx::Error> {
    let stmt = format!("SELECT count(*) OVER (), q.k FROM ({query}) q ORDER BY q.k LIMIT 5");
    let rows: Vec<(i64, String)> = sqlx::query_as(crate::pg::sql::sql(stmt)).bind(table).fetch_all(&mut *conn).await?;
    Ok((rows.first().map_or(0, |r| r.0 as u64), rows.into_iter().map(|r| r.1).collect()))
}

impl ValidationReport {
    pub fn render_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_default()
    }

    /// One line per table, then every failure in detail; with `color`,
    /// marks as ✅/❌, else as OK/FAIL (for logs, pipes and `--color never`).
    pub fn render_text(&self, color: bool) -> String {
        use std::fmt::Write;
        let mark = |ok: bool| match (ok, color) {
            (true, true) => "✅",
            (false, true) => "❌",
            (true, false) => "OK  ",
            (false, false) => "FAIL",
        };
        let mut out = String::from("Count validation\n");
        for t in &self.tables {
            let rej = t.rejected_last_run.map(|r| r.to_string()).unwrap_or_else(|| "-".into());
            let diff = t.source_rows as i64 - t.target_rows as i64 - t.rejected_last_run.unwrap_or(0) as i64;
            let _ = writeln!(
                out,
                "{} {:24} | source: {:>8} | target: {:>8} | rejected last run: {:>6} | diff: {:>6}",
                mark(t.count_ok),
                t.table,
                t.source_rows,
                t.target_rows,
                rej,
                diff
            );
        }
        if !self.count_only {
            out.push_str("\nSample validation\n");
            for t in &self.tables {
                let pct = if t.sampled == 0 { 100.0 } else { 100.0 * t.sample_passed as f64 / t.sampled as f64 };
                let explained = if t.sample_rejected > 0 {
                    format!(" | {} rejected by the last run (see its rejects file)", t.sample_rejected)
                } else {
                    String::new()
                };
                let _ = writeln!(
                    out,
                    "{} {:24} | {:>4}/{:<4} passed | {:5.1}%{explained}",
                    mark(t.sample_passed + t.sample_rejected == t.sampled),
                    t.table,
                    t.sample_passed,
                    t.sampled,
                    pct
                );
            }
            out.push_str("\nIntegrity\n");
            for t in &self.tables {
                let orphans: u64 = t.orphans.iter().map(|o| o.rows).sum();
                let missing = t.missing_rows.saturating_sub(t.rejected_last_run.unwrap_or(0));
                let _ = writeln!(
                    out,
                    "{} {:24} | orphan references: {:>6} | missing rows: {:>6} | rows no source document produces: {:>6}",
                    mark(orphans == 0 && t.extra_rows == 0 && missing == 0),
                    t.table,
                    orphans,
                    missing,
                    t.extra_rows
                );
            }
        }
        let mut details = String::new();
        for t in &self.tables {
            if !t.count_ok {
                let _ = writeln!(
                    details,
                    "- {}: the source gives {} rows, the table holds {}, the last run rejected {}",
                    t.table,
                    t.source_rows,
                    t.target_rows,
                    t.rejected_last_run.map(|r| r.to_string()).unwrap_or_else(|| "(no run recorded)".into())
                );
            }
            for k in &t.explained {
                let _ = writeln!(
                    details,
                    "- warning: {} key ({}): no row, as the last run rejected it (its reason is in the rejects file)",
                    t.table, k
                );
            }
            for m in &t.mismatches {
                let _ = writeln!(
                    details,
                    "- {} key ({}) column {}: expected {}, found {}",
                    m.table, m.key, m.column, m.expected, m.actual
                );
            }
            for o in &t.orphans {
                let _ = writeln!(
                    details,
                    "- {}.{}: {} rows point at no row of {} (e.g. {})",
                    t.table,
                    o.column,
                    o.rows,
                    o.references,
                    o.examples.join(", ")
                );
            }
            if t.missing_rows > t.rejected_last_run.unwrap_or(0) {
                let _ = writeln!(
                    details,
                    "- {}: {} rows the source produces are not in the table (e.g. key {})",
                    t.table,
                    t.missing_rows,
                    t.missing_examples.join("; ")
                );
            }
            if t.extra_rows > 0 {
                let _ = writeln!(
                    details,
                    "- {}: {} rows that no source document produces (e.g. key {})",
                    t.table,
                    t.extra_rows,
                    t.extra_examples.join("; ")
                );
            }
        }
        if !details.is_empty() {
            out.push_str("\nProblems\n");
            out.push_str(&details);
        }
        let _ = writeln!(out, "\n{}", if self.passed { "validation passed" } else { "validation FAILED" });
        out
    }
}

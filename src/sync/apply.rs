//! One batch of changes into PostgreSQL, inside the caller's transaction,
//! through the same plan and the same sink as a run.
//!
//! Each document's latest version is mapped by every mapping that reads its
//! collection and staged. Then, children first, the rows its earlier version
//! produced and this one does not are deleted (found by the mapping's
//! identity columns: those computed from `_id` alone), which covers deleted
//! documents, removed array elements and documents that left a filter.
//! Then, parents first, the staged rows are merged by key. A row whose
//! parent is not there yet, or a delete that rows elsewhere still point
//! at, is returned as waiting: the caller queues it and tries again.
//!
//! Knows the plan, the row mapper and SQL; nothing of change streams.

use bson::{Bson, RawDocumentBuf, doc};
use sqlx::PgConnection;

use super::SyncError;
use crate::map::{RowEvent, RowMapper};
use crate::pg::keys::ServerKeys;
use crate::pg::ledger::Parent;
use crate::pg::sink::TableSink;
use crate::pg::sql::{quote, sql};
use crate::plan::{MappingPlan, Plan};
use crate::run::rejects::{EventOrigin, RejectRecord, RejectsFile};
use crate::source::SourceItem;

/// One document's latest change in a batch.
#[derive(Debug)]
pub(super) struct Change {
    pub collection: String,
    pub id: Bson,
    /// The `_id` as canonical extended JSON: one document, one text.
    pub id_text: String,
    pub operation: String,
    /// The document now; `None`: it is gone.
    pub document: Option<SourceItem>,
    pub cluster_time: Option<String>,
    /// Earlier tries (a change from the waiting queue).
    pub attempts: i32,
    /// Seconds it has waited so far.
    pub waited: f64,
}

impl Change {
    fn origin(&self) -> EventOrigin<'_> {
        EventOrigin { operation: &self.operation, cluster_time: self.cluster_time.as_deref(), id: Some(&self.id) }
    }
}

/// A row (or delete) that cannot be applied yet.
#[derive(Debug)]
pub(super) struct Wait {
    pub change: usize,
    pub mapping: usize,
    pub element: Option<usize>,
    pub column: Option<String>,
    pub reason: String,
    /// The row loaded anyway (a reference set to NULL): if it never
    /// resolves, a warning rather than a reject.
    pub warning: bool,
    /// What it points at that is not there: (table, column, value).
    pub points: Option<Parent>,
}

/// What a sync did to one mapping's table.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct MappingCounts {
    pub mapping: String,
    pub table: String,
    /// Changed documents of its collection it mapped.
    pub documents: u64,
    pub inserted: u64,
    pub updated: u64,
    pub unchanged: u64,
    pub deleted: u64,
    pub rejected: u64,
    pub filtered: u64,
}

/// A mapping as sync applies it, prepared on one connection.
pub(super) struct Target<'p> {
    pub m: &'p MappingPlan,
    sink: TableSink,
    /// The mapping reduced to its identity columns.
    id_plan: MappingPlan,
    id_cols: ServerKeys,
    key_cols: ServerKeys,
}

impl<'p> Target<'p> {
    pub async fn prepare(
        plan: &'p Plan,
        slot: usize,
        run_id: i64,
        conn: &mut PgConnection,
    ) -> Result<Target<'p>, sqlx::Error> {
        let m = &plan.mappings[slot];
        let mut sink = TableSink::new(plan, m, slot);
        sink.run_id = run_id;
        sink.prepare(conn, m, true).await?;
        let id_plan = m.identity_plan();
        let id_names: Vec<String> = id_plan.columns.iter().map(|c| c.name.clone()).collect();
        let id_cols = ServerKeys::load(conn, &m.table, &id_names).await?;
        let key_names: Vec<String> = m.key_names().into_iter().map(str::to_string).collect();
        let key_cols = ServerKeys::load(conn, &m.table, &key_names).await?;
        Ok(Target { m, sink, id_plan, id_cols, key_cols })
    }
}

/// A column of one mapping pointing at another table, as sync follows it.
pub(super) struct Reference {
    pub mapping: usize,
    /// The referencing column.
    pub column: String,
    /// The table and column it points at, and that column's type.
    pub parent: String,
    pub parent_column: String,
    pub ty: String,
}

impl Reference {
    /// Every reference of the plan to another table, typed from the catalog.
    pub async fn all(plan: &Plan, conn: &mut PgConnection) -> Result<Vec<Reference>, sqlx::Error> {
        let mut out = Vec::new();
        for (mi, d) in plan.mappings.iter().enumerate() {
            for c in d.columns.iter().filter(|c| c.references.as_deref().is_some_and(|t| t != d.table)) {
                let (Some(parent), Some(rc)) = (c.references.clone(), plan.referenced_column(d, c)) else { continue };
                let ty =
                    crate::pg::sql::column_types(conn, &parent).await?.remove(&rc).unwrap_or_else(|| "text".into());
                out.push(Reference { mapping: mi, column: c.name.clone(), parent, parent_column: rc, ty });
            }
        }
        Ok(out)
    }

    /// `alias`'s referenced column equals the text `value` (an expression),
    /// compared as the column's type so the parent's index serves it.
    pub fn matches(&self, alias: &str, value: &str) -> String {
        format!("{alias}.{} = ({value})::{}", quote(&self.parent_column), self.ty)
    }
}

/// One mapping's share of a batch, mapped and encoded.
#[derive(Default)]
struct Staged {
    copy: Vec<u8>,
    /// Per staged row: its change and array element.
    origins: Vec<(usize, Option<usize>)>,
    /// Per staged row: its key columns as client text.
    keys: Vec<Vec<Option<String>>>,
    /// Per identity column: the identity of every change whose rows are replaced.
    ids: Vec<Vec<Option<String>>>,
    /// Per identity column, by change: for deleting one document's rows alone.
    by_change: Vec<(usize, Vec<Option<String>>)>,
}

/// Applies `changes`; returns what must wait. A delete that rows of other
/// mappings still point at, once it has waited `expire` seconds, takes
/// those rows with it (they are orphans now, as a fresh snapshot would
/// reject them) and writes each as a reject.
pub(super) async fn apply(
    session: &super::Session<'_, '_>,
    tx: &mut PgConnection,
    changes: &[Change],
    expire: f64,
    rejects: &mut RejectsFile,
    counts: &mut [MappingCounts],
) -> Result<Applied, SyncError> {
    let (plan, refs, targets) = (session.plan, session.refs, session.targets);
    let mut waits = Vec::new();
    let mut refused = Vec::new();
    let mut staged = Vec::with_capacity(targets.len());
    for (ti, t) in targets.iter().enumerate() {
        staged.push(map_changes(t, ti, changes, rejects, &mut counts[ti], &mut refused)?);
        let s = &staged[ti];
        if !s.origins.is_empty() {
            t.sink.stage_rows(tx, &s.copy).await?;
        }
    }
    // Rows that are no longer produced, children first. (A child's rows are
    // parked, if at all, after its own turn: whether any are parked is
    // known from the start.)
    let parked = any_parked(tx).await?;
    for (ti, t) in targets.iter().enumerate().rev() {
        let s = &staged[ti];
        if s.by_change.is_empty() {
            continue;
        }
        // A document applied again decides its rows itself: none stays parked.
        let forget = format!(
            "DELETE FROM finlit_map.sync_parked p WHERE p.table_name = {table} AND p.key IN \
             (SELECT q.key FROM finlit_map.sync_parked q, jsonb_populate_record(NULL::{t}, q.row) t \
              WHERE q.table_name = {table} AND {})",
            t.id_cols.within("t", 1),
            table = crate::pg::sql::literal(&t.m.table),
            t = quote(&t.m.table),
        );
        if parked {
            let mut q = sqlx::query(sql(forget));
            for col in &s.ids {
                q = q.bind(col.as_slice());
            }
            q.execute(&mut *tx).await?;
        }
        let stmt = format!(
            "DELETE FROM {} t WHERE {} AND NOT EXISTS (SELECT 1 FROM {} s WHERE {})",
            quote(&t.m.table),
            t.id_cols.within("t", 1),
            t.sink.stage_name(),
            key_match(t.m),
        );
        sqlx::query("SAVEPOINT fm_sync").execute(&mut *tx).await?;
        let mut q = sqlx::query(sql(&stmt));
        for col in &s.ids {
            q = q.bind(col.as_slice());
        }
        match q.execute(&mut *tx).await {
            Ok(done) => {
                sqlx::query("RELEASE SAVEPOINT fm_sync").execute(&mut *tx).await?;
                counts[ti].deleted += done.rows_affected();
            }
            Err(e) if is_foreign_key(&e) => {
                // Some document's rows are still pointed at: find which, one by one.
                sqlx::query("ROLLBACK TO SAVEPOINT fm_sync").execute(&mut *tx).await?;
                for (ci, id) in &s.by_change {
                    let ch = &changes[ci.to_owned()];
                    let cascade = ch.waited >= expire;
                    match delete_one(session, ti, tx, &stmt, id, cascade.then_some(ch), rejects, counts).await? {
                        Ok(n) => counts[ti].deleted += n,
                        Err(reason) => waits.push(Wait {
                            change: *ci,
                            mapping: ti,
                            element: None,
                            column: None,
                            reason: format!("its old rows in `{}` cannot be deleted: {reason}", t.m.table),
                            warning: false,
                            points: None,
                        }),
                    }
                }
            }
            Err(e) => return Err(e.into()),
        }
    }
    // New and changed rows, parents first.
    for (ti, t) in targets.iter().enumerate() {
        let s = &staged[ti];
        if s.origins.is_empty() {
            continue;
        }
        let mut db_rejects = Vec::new();
        let r = t.sink.merge_staged(tx, s.origins.len(), false, &mut db_rejects).await?;
        let c = &mut counts[ti];
        (c.inserted, c.updated, c.unchanged) =
            (c.inserted + r.inserted, c.updated + r.updated, c.unchanged + r.unchanged);
        let mut refused_keys: Vec<Vec<Option<String>>> = vec![Vec::new(); t.m.key.len()];
        for d in db_rejects {
            let (ci, element) = s.origins[d.ord];
            if d.orphan {
                let col = d.column.as_deref().and_then(|c| t.m.columns.iter().find(|mc| mc.name == c));
                let points = match (col, &d.points_at) {
                    (Some(col), Some(v)) => col
                        .references
                        .clone()
                        .zip(plan.referenced_column(t.m, col))
                        .map(|(table, rc)| (table, rc, v.clone())),
                    _ => None,
                };
                let wait = Wait {
                    change: ci,
                    mapping: ti,
                    element,
                    column: d.column,
                    reason: d.reason,
                    warning: d.warning,
                    points,
                };
                waits.push(wait);
                continue;
            }
            // Refused now: an earlier version of the row must not stay either.
            for (col, v) in refused_keys.iter_mut().zip(&s.keys[d.ord]) {
                col.push(v.clone());
            }
            let ch = &changes[ci];
            let rec = record(t.m, ch, element, d.column.as_deref(), &d.reason, false);
            write(rejects, &rec)?;
            c.rejected += 1;
            refused.push((ti, ci, None));
        }
        if refused_keys.first().is_some_and(|k| !k.is_empty()) {
            let stmt = format!("DELETE FROM {} t WHERE {}", quote(&t.m.table), t.key_cols.within("t", 1));
            let mut q = sqlx::query(sql(stmt));
            for col in &refused_keys {
                q = q.bind(col.as_slice());
            }
            c.deleted += q.execute(&mut *tx).await?.rows_affected();
        }
        if t.sink.has_self_references() {
            for d in t.sink.set_self_references(tx, t.m, t.sink.stage_name()).await? {
                let Some(&(ci, element)) = s.origins.get(d.ord as usize) else { continue };
                let reason = format!(
                    "row ({}) keeps NULL in `{}`: it points at {}, which is not in `{}`",
                    d.key, d.column, d.target, t.m.table
                );
                let wait = Wait {
                    change: ci,
                    mapping: ti,
                    element,
                    column: Some(d.column),
                    reason,
                    warning: true,
                    points: None,
                };
                waits.push(wait);
            }
        }
    }
    restore_parked(plan, refs, tx, counts).await?;
    Ok(Applied { waits, refused })
}

/// What a batch left: rows that wait, and one (mapping, change, what it
/// points at that is missing) per row rejected.
pub(super) struct Applied {
    pub waits: Vec<Wait>,
    pub refused: Vec<Refused>,
}

pub(super) type Refused = (usize, usize, Option<Parent>);

/// Whether any row is parked (almost never): the parked-row statements are
/// skipped otherwise.
async fn any_parked(tx: &mut PgConnection) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM finlit_map.sync_parked)").fetch_one(&mut *tx).await
}

/// Rows parked because the row they point at left, back where that row is
/// there again (all of their references must hold; others wait on).
async fn restore_parked(
    plan: &Plan,
    refs: &[Reference],
    tx: &mut PgConnection,
    counts: &mut [MappingCounts],
) -> Result<(), SyncError> {
    if !any_parked(tx).await? {
        return Ok(());
    }
    for r in refs {
        let (di, d) = (r.mapping, &plan.mappings[r.mapping]);
        let stmt = format!(
            "WITH r AS (DELETE FROM finlit_map.sync_parked p WHERE p.table_name = {dt} AND p.parent_table = {pt} \
                   AND p.parent_column = {pc} AND EXISTS (SELECT 1 FROM {parent} t WHERE {matches}) \
                   RETURNING p.row) \
                 INSERT INTO {table} SELECT (jsonb_populate_record(NULL::{table}, r.row)).* FROM r ON CONFLICT DO NOTHING",
            dt = crate::pg::sql::literal(&d.table),
            pt = crate::pg::sql::literal(&r.parent),
            pc = crate::pg::sql::literal(&r.parent_column),
            parent = quote(&r.parent),
            matches = r.matches("t", "p.parent_value"),
            table = quote(&d.table),
        );
        sqlx::query("SAVEPOINT fm_restore").execute(&mut *tx).await?;
        match sqlx::query(sql(stmt)).execute(&mut *tx).await {
            Ok(done) => {
                sqlx::query("RELEASE SAVEPOINT fm_restore").execute(&mut *tx).await?;
                counts[di].inserted += done.rows_affected();
            }
            // Another reference of theirs does not hold yet: they stay parked.
            Err(e) if is_foreign_key(&e) => {
                sqlx::query("ROLLBACK TO SAVEPOINT fm_restore").execute(&mut *tx).await?;
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// Deletes one document's rows that are no longer produced (`stmt`, bound
/// to its identity). When rows elsewhere still point at them: with
/// `cascade`, those rows go first (each a reject, with the change that
/// orphaned them), else the server's reason is returned.
#[allow(clippy::too_many_arguments)]
async fn delete_one(
    session: &super::Session<'_, '_>,
    ti: usize,
    tx: &mut PgConnection,
    stmt: &str,
    id: &[Option<String>],
    cascade: Option<&Change>,
    rejects: &mut RejectsFile,
    counts: &mut [MappingCounts],
) -> Result<Result<u64, String>, SyncError> {
    let bind = |stmt: &str| {
        let mut q = sqlx::query(sql(stmt));
        for v in id {
            q = q.bind(vec![v.clone()]);
        }
        q
    };
    let (plan, targets) = (session.plan, session.targets);
    sqlx::query("SAVEPOINT fm_sync_one").execute(&mut *tx).await?;
    if let Some(ch) = cascade {
        // The rows this delete removes, as a query, for their dependants to name.
        let rows = stmt.replacen("DELETE FROM", "SELECT t.* FROM", 1);
        let mut gone = Vec::new();
        dependants(plan, session.refs, &targets[ti].m.table, &rows, 0, &mut gone);
        for dep in gone {
            let di = dep.mapping;
            let rows = match bind(&dep.delete).fetch_all(&mut *tx).await {
                Ok(r) => r,
                Err(e) if is_foreign_key(&e) => break,
                Err(e) => return Err(e.into()),
            };
            let d = &plan.mappings[di];
            for row in rows {
                use sqlx::Row;
                let (key, points, content): (String, String, serde_json::Value) =
                    (row.try_get(0)?, row.try_get(1)?, row.try_get(2)?);
                sqlx::query(
                    "INSERT INTO finlit_map.sync_parked (table_name, key, row, parent_table, parent_column, parent_value)
                     VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (table_name, key) DO UPDATE SET row = EXCLUDED.row,
                     parent_table = EXCLUDED.parent_table, parent_column = EXCLUDED.parent_column,
                     parent_value = EXCLUDED.parent_value",
                )
                .bind(&plan.mappings[di].table)
                .bind(&key)
                .bind(&content)
                .bind(&dep.parent.0)
                .bind(&dep.parent.1)
                .bind(&points)
                .execute(&mut *tx)
                .await?;
                let reason = format!(
                    "row ({key}) points at {points}, which a `{}` of its document removed from `{}`: removed with it (it comes back if that row does)",
                    ch.operation, targets[ti].m.table
                );
                let origin = EventOrigin { id: None, ..ch.origin() };
                let rec = RejectRecord {
                    mapping: &d.name,
                    collection: &d.source,
                    element: None,
                    column: None,
                    reason: &reason,
                    document: None,
                    location: None,
                    warning: false,
                    event: Some(origin),
                };
                write(rejects, &rec)?;
                if let Some(c) = counts.get_mut(di) {
                    c.deleted += 1;
                    c.rejected += 1;
                }
            }
        }
    }
    match bind(stmt).execute(&mut *tx).await {
        Ok(done) => {
            sqlx::query("RELEASE SAVEPOINT fm_sync_one").execute(&mut *tx).await?;
            Ok(Ok(done.rows_affected()))
        }
        Err(e) if is_foreign_key(&e) => {
            sqlx::query("ROLLBACK TO SAVEPOINT fm_sync_one").execute(&mut *tx).await?;
            Ok(Err(crate::pg::sql::pg_text(&e)))
        }
        Err(e) => Err(e.into()),
    }
}

/// A delete of the rows of mapping `mapping` that point at rows going away.
struct Dependant {
    mapping: usize,
    delete: String,
    /// The table and column they point at.
    parent: (String, String),
}

/// The deletes of every mapped row that points (directly or through
/// others) at the rows `rows` selects from `table`, deepest first, each
/// returning the deleted row's key and what it pointed at.
fn dependants(plan: &Plan, refs: &[Reference], table: &str, rows: &str, depth: usize, out: &mut Vec<Dependant>) {
    if depth > 8 {
        return;
    }
    for r in refs.iter().filter(|r| r.parent == table) {
        let d = &plan.mappings[r.mapping];
        let (dt, col, rc) = (quote(&d.table), quote(&r.column), quote(&r.parent_column));
        let hit = format!("{col} IN (SELECT x{depth}.{rc} FROM ({rows}) x{depth})");
        dependants(plan, refs, &d.table, &format!("SELECT * FROM {dt} WHERE {hit}"), depth + 1, out);
        let keys: Vec<String> = d.key_names().into_iter().map(quote).collect();
        let delete = format!(
            "DELETE FROM {dt} d WHERE {hit} RETURNING {}, d.{col}::text, to_jsonb(d.*)",
            crate::pg::keys::key_text(&keys)
        );
        if !out.iter().any(|o| o.delete == delete) {
            out.push(Dependant { mapping: r.mapping, delete, parent: (table.to_string(), r.parent_column.clone()) });
        }
    }
}

/// Maps every change of the target's collection: rows staged as COPY
/// data, refusals written to the rejects file, identities collected.
fn map_changes(
    t: &Target<'_>,
    ti: usize,
    changes: &[Change],
    rejects: &mut RejectsFile,
    counts: &mut MappingCounts,
    refused: &mut Vec<Refused>,
) -> Result<Staged, SyncError> {
    let m = t.m;
    let mut s = Staged { ids: vec![Vec::new(); t.id_plan.columns.len()], ..Default::default() };
    let mut mapper = RowMapper::new(m);
    let mut id_mapper = RowMapper::new(&t.id_plan);
    let mut refusals: Vec<(usize, Option<usize>, Option<String>, String)> = Vec::new();
    for (ci, ch) in changes.iter().enumerate().filter(|(_, c)| c.collection == m.source) {
        counts.documents += 1;
        // The identity of this document's rows, from its `_id` alone.
        let id_doc = RawDocumentBuf::try_from(&doc! { "_id": ch.id.clone() });
        let mut identity: Result<Vec<Option<String>>, String> = Err("its `_id` cannot be encoded".into());
        if let Ok(id_doc) = &id_doc {
            id_mapper.map(id_doc, |ev| match ev {
                RowEvent::Row { cells, .. } => identity = Ok(cells.iter().map(|c| c.to_pg_text()).collect()),
                RowEvent::Rejected(r) => identity = Err(r.reason),
                _ => {}
            });
        }
        match identity {
            Ok(id) if id.iter().all(Option::is_some) => {
                for (col, v) in s.ids.iter_mut().zip(&id) {
                    col.push(v.clone());
                }
                s.by_change.push((ci, id));
            }
            Ok(_) | Err(_) if ch.document.is_none() => {
                let why = match identity {
                    Err(e) => e,
                    Ok(_) => "a column computed from it is NULL".into(),
                };
                refusals.push((
                    ci,
                    None,
                    None,
                    format!("the rows of this document cannot be found from its `_id`: {why}"),
                ));
            }
            // A document whose `_id` gives no identity: its mapping rejects it below.
            _ => {}
        }
        match &ch.document {
            Some(SourceItem::Doc(d)) => mapper.map(d, |ev| match ev {
                RowEvent::Row { element, cells } => {
                    match &t.sink.binary {
                        Some(types) => crate::value::types::binary::write_row(&mut s.copy, &cells, types),
                        None => crate::pg::sink::write_row(&mut s.copy, &cells),
                    }
                    s.keys.push(m.key.iter().map(|&k| cells[k].to_pg_text()).collect());
                    s.origins.push((ci, element));
                }
                RowEvent::Rejected(r) => refusals.push((ci, r.element, r.column, r.reason)),
                RowEvent::Filtered(n) => counts.filtered += n,
                RowEvent::NoElements => {}
            }),
            Some(SourceItem::Bad(b)) => refusals.push((ci, None, None, format!("unreadable document: {}", b.reason))),
            None => {}
        }
    }
    for (ci, element, column, reason) in refusals {
        let rec = record(m, &changes[ci], element, column.as_deref(), &reason, false);
        write(rejects, &rec)?;
        counts.rejected += 1;
        refused.push((ti, ci, None));
    }
    Ok(s)
}

/// `s.k = t.k AND …` over the mapping's key.
fn key_match(m: &MappingPlan) -> String {
    let names: Vec<String> = m.key_names().into_iter().map(quote).collect();
    names.iter().map(|k| format!("s.{k} = t.{k}")).collect::<Vec<_>>().join(" AND ")
}

fn is_foreign_key(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(d) if d.code().as_deref() == Some("23503"))
}

/// A rejects line for a change.
pub(super) fn record<'a>(
    m: &'a MappingPlan,
    ch: &'a Change,
    element: Option<usize>,
    column: Option<&'a str>,
    reason: &'a str,
    warning: bool,
) -> RejectRecord<'a> {
    RejectRecord {
        mapping: &m.name,
        collection: &m.source,
        element,
        column,
        reason,
        document: ch.document.as_ref(),
        location: None,
        warning,
        event: Some(ch.origin()),
    }
}

pub(super) fn write(rejects: &mut RejectsFile, rec: &RejectRecord<'_>) -> Result<(), SyncError> {
    rejects.write(rec).map_err(|source| SyncError::Rejects { path: rejects.path().display().to_string(), source })
}

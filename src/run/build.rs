//! A table's build after a first load before its keys: its keys, indexes
//! and constraints created, the rows they refuse taken out and reported
//! with their documents, in one transaction with the task's completion, so
//! a run stopped anywhere in it builds again from the loaded rows.
//!
//! First everything is simply created: the usual case, where the rows are
//! clean, costs what building them costs. If the table refuses, that
//! attempt is undone and the exact one runs (`pg::postdata::Build`): rows
//! whose own values are refused (orphans, checks) are taken out, then the
//! repeats of each key (the first in the source's order stays), then the
//! objects are created and the server names each refused row's reason. The
//! rows taken out are found again in their chunk of the source (its
//! positions are in the ledger) and written to the rejects file with their
//! documents, exactly as a load into the indexed table rejects them.
//!
//! Knows the plan, the source and the rejects; SQL only through `pg`.

use std::collections::BTreeMap;
use std::time::Instant;

use sqlx::{Connection, PgConnection};

use super::reader::{Encoding, FastEncoding, Produced, UniqueSet, spawn_reader};
use super::rejects::RejectRecord;
use super::report::{BuildReport, Correction, MappingReport};
use super::tasks::Claimed;
use super::{ChunkDocs, ExecError, MappingRun, Shared, lock, rejected_documents};
use crate::pg::claims;
use crate::pg::keys::ServerKeys;
use crate::pg::ledger;
use crate::pg::postdata::{self, Build, Kind, Object, Outcome, Refused, RefusedChunk};
use crate::pg::sink::{DUPLICATE_KEY, DbRejection, TableSink, is_row_error, orphan_reason};
use crate::plan::{MappingPlan, OnDuplicate, OnMissing};
use crate::source::Position;

/// The build task of one table.
pub(super) async fn build_table(
    shared: &Shared<'_, '_>,
    task: &Claimed,
    conn: Option<&mut PgConnection>,
) -> Result<(), ExecError> {
    let table = task.task.table.as_str();
    let Some(conn) = conn else {
        shared.board.done_in_memory(task.task.id, serde_json::Value::Null);
        return Ok(());
    };
    let started = Instant::now();
    let what = format!("the build of `{table}`");
    let db = |source| ExecError::Db { mapping: what.clone(), source };
    let run_id = shared.opts.run_id;
    let plan = shared.plan;
    let mut tx = conn.begin().await.map_err(db)?;
    let rows = claims::all(&mut tx, run_id).await.map_err(db)?;
    // The mappings this run loaded into the table, in plan order.
    let mappings: Vec<(usize, &MappingPlan)> = plan
        .mappings
        .iter()
        .enumerate()
        .filter(|(_, m)| m.table == table && rows.iter().any(|r| r.mapping.as_deref() == Some(m.name.as_str())))
        .collect();
    let deferral = postdata::pending(&mut tx).await.map_err(db)?.into_iter().find(|d| d.table == table);
    let mut deltas: BTreeMap<String, Correction> = BTreeMap::new();
    let mut objects: Vec<Object> = deferral.map(|d| d.objects).unwrap_or_default();
    objects.sort_by_key(Object::build_rank);
    let mut refused_rows = 0;
    if let Some((_, first)) = mappings.first() {
        tracing::info!(table, objects = objects.len(), "building keys, indexes and constraints after the load");
        let key: Vec<String> = first.key_names().iter().map(|s| s.to_string()).collect();
        let mut build = Build::start(&mut tx, table, run_id, &key).await.map_err(db)?;
        sqlx::query("SAVEPOINT fm_build").execute(&mut *tx).await.map_err(db)?;
        let quick = create_all(shared, &mappings, &objects, &mut tx, &mut deltas).await;
        match quick {
            Ok(()) => {
                sqlx::query("RELEASE SAVEPOINT fm_build").execute(&mut *tx).await.map_err(db)?;
            }
            Err(ExecError::Db { source, .. }) if is_row_error(&source) => {
                tracing::info!(
                    table,
                    "the loaded rows are refused ({}); finding them",
                    crate::pg::sql::pg_text(&source)
                );
                sqlx::query("ROLLBACK TO SAVEPOINT fm_build").execute(&mut *tx).await.map_err(db)?;
                deltas.clear();
                build.prepare(&mut tx).await.map_err(db)?;
                exact(shared, &build, &mappings, &objects, &key, &mut tx, &mut deltas).await?;
                if build.any(&mut tx).await.map_err(db)? {
                    let chunks = build.outcomes(&mut tx).await.map_err(db)?;
                    refused_rows = report_refused(shared, table, &mappings, chunks, &mut tx, &mut deltas).await?;
                }
            }
            Err(e) => return Err(e),
        }
    }
    postdata::built(&mut tx, table).await.map_err(db)?;
    // Each mapping's final record: its ranges and this build's corrections.
    for (_, m) in &mappings {
        let mut r = MappingReport {
            mapping: m.name.clone(),
            source: m.source.clone(),
            table: m.table.clone(),
            ..Default::default()
        };
        for row in rows.iter().filter(|r| r.kind == "load" && r.mapping.as_deref() == Some(m.name.as_str())) {
            if let Some(part) = row.report.clone().and_then(|j| serde_json::from_value::<MappingReport>(j).ok()) {
                r.absorb(&part);
            }
        }
        let delta = deltas.entry(m.name.clone()).or_default();
        delta.seconds = r.seconds + started.elapsed().as_secs_f64();
        r.correct(delta);
        r.rows_per_second = if r.seconds > 0.0 { r.loaded as f64 / r.seconds } else { 0.0 };
        ledger::record_mapping(&mut tx, run_id, &r).await.map_err(db)?;
    }
    let report = serde_json::to_value(&deltas).unwrap_or_default();
    if !claims::complete(&mut tx, run_id, task.task.id, task.claim, &report).await.map_err(db)? {
        return Err(ExecError::LostClaim { what, lease: shared.board.lease() });
    }
    tx.commit().await.map_err(db)?;
    let seconds = started.elapsed().as_secs_f64();
    tracing::info!(table, seconds, refused = refused_rows, "built");
    lock(&shared.builds).push(BuildReport {
        table: table.to_string(),
        objects: objects.len() as u64,
        refused: refused_rows,
        seconds,
    });
    let total = shared.total_rejects.fetch_add(refused_rows, std::sync::atomic::Ordering::SeqCst) + refused_rows;
    if let Some(limit) = shared.opts.max_rejects
        && total > limit
    {
        let path = lock(&shared.rejects).path().display().to_string();
        return Err(ExecError::TooManyRejects { limit, count: total, path });
    }
    Ok(())
}

fn db_err(m: &MappingPlan) -> impl Fn(sqlx::Error) -> ExecError + '_ {
    move |source| ExecError::Db { mapping: m.name.clone(), source }
}

/// Everything created at once, self-references set before their foreign keys.
async fn create_all(
    shared: &Shared<'_, '_>,
    mappings: &[(usize, &MappingPlan)],
    objects: &[Object],
    tx: &mut PgConnection,
    deltas: &mut BTreeMap<String, Correction>,
) -> Result<(), ExecError> {
    let table = mappings.first().map(|(_, m)| m.table.clone()).unwrap_or_default();
    let db = |source| ExecError::Db { mapping: format!("the build of `{table}`"), source };
    for o in objects.iter().filter(|o| o.kind != Kind::ForeignKey) {
        postdata::create(tx, o).await.map_err(db)?;
    }
    self_references(shared, mappings, tx, deltas).await?;
    for o in objects.iter().filter(|o| o.kind == Kind::ForeignKey) {
        postdata::create(tx, o).await.map_err(db)?;
    }
    Ok(())
}

/// Whether a deferred load of `m` writes its self-references with the
/// rows (the table's only mapping: no other mapping's rows to tell apart);
/// otherwise they are NULL until the second pass.
pub(super) fn self_references_in_the_load(plan: &crate::plan::Plan, m: &MappingPlan) -> bool {
    plan.mappings.iter().filter(|o| o.table == m.table).count() == 1
}

/// The self-references of each mapping that has them, now that the key
/// exists: loaded with the rows, those pointing at no row become NULL (one
/// set query; what was taken out is already gone); else the second pass
/// reads the source again. Either way the dangling ones are reported.
async fn self_references(
    shared: &Shared<'_, '_>,
    mappings: &[(usize, &MappingPlan)],
    tx: &mut PgConnection,
    deltas: &mut BTreeMap<String, Correction>,
) -> Result<(), ExecError> {
    for &(slot, m) in mappings {
        let sink = TableSink::new(shared.plan, m, slot);
        if sink.has_self_references() {
            let cx = MappingRun { shared, m, slot };
            let dangling = if self_references_in_the_load(shared.plan, m) {
                let found = sink.null_dangling_self_references(tx).await.map_err(db_err(m))?;
                cx.report_dangling(&found)?
            } else {
                cx.self_references(&sink, tx).await?
            };
            deltas.entry(m.name.clone()).or_default().dangling = dangling;
        }
    }
    Ok(())
}

/// The exact build: refused rows out first, with their reasons, then
/// everything created on what is left.
async fn exact(
    shared: &Shared<'_, '_>,
    build: &Build,
    mappings: &[(usize, &MappingPlan)],
    objects: &[Object],
    key: &[String],
    tx: &mut PgConnection,
    deltas: &mut BTreeMap<String, Correction>,
) -> Result<(), ExecError> {
    let table = mappings.first().map(|(_, m)| m.table.clone()).unwrap_or_default();
    let db = |source| ExecError::Db { mapping: format!("the build of `{table}`"), source };
    let all: Vec<String> = mappings.iter().map(|(_, m)| m.name.clone()).collect();
    // Which mappings declare each foreign key as a reference, and what a
    // missing row then means to them.
    let declared = |fk: &Object, how: OnMissing| -> Vec<String> {
        mappings
            .iter()
            .filter(|(_, m)| {
                fk.columns.len() == 1
                    && m.columns.iter().any(|c| {
                        c.name == fk.columns[0]
                            && c.references.as_deref() == fk.ref_table.as_deref()
                            && c.on_missing == how
                    })
            })
            .map(|(_, m)| m.name.clone())
            .collect()
    };
    let outgoing: Vec<&Object> = objects
        .iter()
        .filter(|o| {
            o.kind == Kind::ForeignKey && o.on_relname == table && o.ref_table.as_deref() != Some(table.as_str())
        })
        .collect();
    let mut judged_later: Vec<String> = Vec::new();
    for fk in &outgoing {
        let reject = declared(fk, OnMissing::Reject);
        let null = declared(fk, OnMissing::Null);
        if !reject.is_empty() {
            build.take_out_orphans(tx, fk, &reject).await.map_err(db)?;
        }
        let others: Vec<String> = all.iter().filter(|n| !reject.contains(n) && !null.contains(n)).cloned().collect();
        if !others.is_empty() && build.take_out_violations(tx, fk, &others).await.map_err(db)? > 0 {
            judged_later.push(fk.name.clone());
        }
    }
    let mut judged_now: Vec<String> = Vec::new();
    for check in objects.iter().filter(|o| o.kind == Kind::Check && o.on_relname == table) {
        if build.take_out_check(tx, check).await.map_err(db)? > 0 {
            judged_now.push(check.name.clone());
        }
    }
    for set in objects
        .iter()
        .filter(|o| matches!(o.kind, Kind::PrimaryKey | Kind::Unique | Kind::UniqueIndex) && o.on_relname == table)
    {
        let is_key = postdata::is_key_set(set, key);
        if build.take_out_repeats(tx, set, is_key).await.map_err(db)? > 0 && !is_key {
            judged_now.push(set.name.clone());
        }
    }
    for o in objects.iter().filter(|o| o.kind != Kind::ForeignKey) {
        postdata::create(tx, o).await.map_err(db)?;
    }
    build.judge(tx, &judged_now).await.map_err(db)?;
    for fk in &outgoing {
        let null = declared(fk, OnMissing::Null);
        if !null.is_empty() {
            build.null_orphans(tx, fk, &null).await.map_err(db)?;
        }
    }
    self_references(shared, mappings, tx, deltas).await?;
    for o in objects.iter().filter(|o| o.kind == Kind::ForeignKey) {
        postdata::create(tx, o).await.map_err(db)?;
    }
    build.judge(tx, &judged_later).await.map_err(db)?;
    Ok(())
}

/// The rows a build took out (or set a reference of to NULL), written to
/// the rejects file with their documents, found again in their chunks;
/// the ledger's record of rejected documents and each mapping's counts
/// follow. Returns how many rows were refused.
async fn report_refused(
    shared: &Shared<'_, '_>,
    table: &str,
    mappings: &[(usize, &MappingPlan)],
    chunks: Vec<RefusedChunk>,
    tx: &mut PgConnection,
    deltas: &mut BTreeMap<String, Correction>,
) -> Result<u64, ExecError> {
    let mut refused = 0;
    for c in chunks {
        let (slot, m) = mappings
            .iter()
            .copied()
            .find(|(_, m)| m.name == c.mapping)
            .or_else(|| mappings.first().copied())
            .ok_or_else(|| ExecError::Plan(format!("`{table}` has no mapping in this run")))?;
        let cx = MappingRun { shared, m, slot };
        let gone = c.rows.iter().filter(|o| !o.nulled).count() as u64;
        refused += gone;
        let (rows, documents) = match reread(&cx, &c, tx).await? {
            Some((chunk, ords)) => {
                let mut db_rejects: Vec<DbRejection> =
                    c.rows.iter().zip(&ords).filter_map(|(o, ord)| ord.map(|ord| rejection(o, ord))).collect();
                // In the order a load into the indexed table writes them:
                // references column by column, repeated keys, then the server's refusals.
                let column = |d: &DbRejection| {
                    d.column.as_ref().and_then(|c| m.columns.iter().position(|mc| &mc.name == c)).unwrap_or(usize::MAX)
                };
                let rank = |d: &DbRejection| {
                    if d.orphan {
                        0
                    } else if d.reason == DUPLICATE_KEY {
                        1
                    } else {
                        2
                    }
                };
                db_rejects.sort_by_key(|d| (rank(d), if d.orphan { column(d) } else { 0 }, d.ord));
                // Rows not found again (the source changed): said without their document.
                for (o, _) in c.rows.iter().zip(&ords).filter(|(_, ord)| ord.is_none()) {
                    write_without_document(&cx, o)?;
                }
                let kept = ChunkDocs::kept(&chunk);
                cx.write_rejects(&kept, &db_rejects)?;
                let docs = rejected_documents(shared.plan, m, &kept, &db_rejects);
                ledger::set_rejected(tx, &m.name, &[], &docs).await.map_err(db_err(m))?;
                // A document all of whose rows are gone is now a rejected document.
                let mut per_doc: BTreeMap<u32, u64> = BTreeMap::new();
                for d in db_rejects.iter().filter(|d| !d.warning) {
                    *per_doc.entry(chunk.rows[d.ord].doc).or_default() += 1;
                }
                let emptied = per_doc
                    .iter()
                    .filter(|(doc, n)| chunk.rows.iter().filter(|r| r.doc == **doc).count() as u64 == **n)
                    .count() as u64;
                (gone, emptied)
            }
            None => {
                for o in &c.rows {
                    write_without_document(&cx, o)?;
                }
                (gone, 0)
            }
        };
        let d = deltas.entry(m.name.clone()).or_default();
        d.refused += rows;
        d.documents += documents;
        d.nulled += c.rows.iter().filter(|o| o.nulled).count() as u64;
    }
    let flushed = lock(&shared.rejects).flush();
    flushed
        .map_err(|source| ExecError::Rejects { path: lock(&shared.rejects).path().display().to_string(), source })?;
    Ok(refused)
}

/// A refused row as the load into the indexed table would have rejected it.
fn rejection(o: &Outcome, ord: usize) -> DbRejection {
    let (column, reason, orphan, points_at) = match &o.refused {
        Refused::Orphan { column, value } => {
            (Some(column.clone()), orphan_reason(value, o.nulled), true, Some(value.clone()))
        }
        Refused::DuplicateKey => (None, DUPLICATE_KEY.to_string(), false, None),
        Refused::Server { column, reason } => (column.clone(), reason.clone(), false, None),
    };
    DbRejection { ord, column, reason, warning: o.nulled, orphan, points_at }
}

fn write_without_document(cx: &MappingRun<'_, '_, '_>, o: &Outcome) -> Result<(), ExecError> {
    let r = rejection(o, 0);
    let reason = format!("{} (row {}; its document was not found again in the source)", r.reason, o.key);
    let rec = RejectRecord {
        mapping: &cx.m.name,
        collection: &cx.m.source,
        element: None,
        column: r.column.as_deref(),
        reason: &reason,
        document: None,
        location: None,
        warning: o.nulled,
        event: None,
    };
    let written = lock(&cx.shared.rejects).write(&rec);
    written.map_err(|source| ExecError::Rejects { path: lock(&cx.shared.rejects).path().display().to_string(), source })
}

/// Reads a chunk's documents again and maps them as the load did: the
/// chunk, and for each refused row its place among the chunk's rows
/// (matched by the key's text as the server writes it).
async fn reread(
    cx: &MappingRun<'_, '_, '_>,
    c: &RefusedChunk,
    tx: &mut PgConnection,
) -> Result<Option<(super::reader::Chunk, Vec<Option<usize>>)>, ExecError> {
    let m = cx.m;
    let Some(last) = c.last_pos.clone().and_then(|p| serde_json::from_value::<Position>(p).ok()) else {
        return Ok(None);
    };
    let first = c.first_pos.clone().and_then(|p| serde_json::from_value::<Position>(p).ok());
    let Some(fast) = FastEncoding::for_mapping(m, chrono::Utc::now()) else { return Ok(None) };
    let dedupe = if m.on_duplicate == OnDuplicate::Reject {
        vec![UniqueSet { columns: m.key.clone(), reason: DUPLICATE_KEY.to_string() }]
    } else {
        Vec::new()
    };
    // Its documents are what it is for: every one is kept.
    let encoding =
        Encoding { fast: Some(fast), binary: None, dedupe, dedupe_per_chunk: true, inventory: None, hold_docs: true };
    let (mut rx, reader) = spawn_reader(cx.shared.source, m, first, Some(last), cx.shared.opts.batch_size, encoding);
    let mut whole: Option<super::reader::Chunk> = None;
    while let Some(item) = rx.recv().await {
        match item? {
            Produced::Chunk(mut part) => match whole.as_mut() {
                None => whole = Some(*part),
                Some(w) => {
                    // A chunk cut again by the reader: the rows follow on.
                    let base = w.docs.len() as u32;
                    for r in &mut part.rows {
                        r.doc += base;
                    }
                    w.rows.append(&mut part.rows);
                    w.docs.append(&mut part.docs);
                    for (col, more) in w.keys.iter_mut().zip(std::mem::take(&mut part.keys)) {
                        col.extend(more);
                    }
                }
            },
            Produced::Done(..) => break,
        }
    }
    if reader.join().is_err() {
        return Err(super::ExecError::ReaderPanicked(m.name.clone()));
    }
    let Some(mut chunk) = whole else { return Ok(None) };
    // Mapper rejects were written when the chunk loaded.
    chunk.rejects.clear();
    chunk.locations.clear();
    let names: Vec<String> = m.key_names().iter().map(|s| s.to_string()).collect();
    let keys = ServerKeys::load(tx, &m.table, &names).await.map_err(db_err(m))?;
    let (expr, from) = keys.sql(1);
    let mut q = sqlx::query_scalar::<_, String>(crate::pg::sql::sql(format!("SELECT {expr} FROM {from} ORDER BY u.n")));
    for col in &chunk.keys {
        q = q.bind(col.as_slice());
    }
    let server: Vec<String> = q.fetch_all(&mut *tx).await.map_err(db_err(m))?;
    let ords = c.rows.iter().map(|o| server.iter().position(|k| *k == o.key)).collect();
    Ok(Some((chunk, ords)))
}

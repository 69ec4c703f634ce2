//! Starting a run in the target: a new run's tasks (which tables load
//! before their keys, which collections are read in ranges by several
//! workers), or an interrupted run's, taken up again.
//!
//! A table loads before its keys, indexes and constraints when the run may
//! change it (a database the run created, or `--fast-first-load`), it is
//! empty, every mapping into it can copy straight into it, and its foreign
//! keys follow the plan's order; `pg::postdata` records and drops what it
//! has, in the transaction that records the run's tasks. Such a table's
//! collection is read in ranges when its mapping keeps every row
//! (`on_duplicate = "reject"`) and nothing unique stays in place to see
//! the rows in another order than the source's.
//!
//! Knows the plan, the source's ranges and the ledger; SQL only through `pg`.

use std::collections::{BTreeMap, BTreeSet};

use sqlx::{Connection, PgConnection};

use super::tasks::{self, Board, Kind, Task, Worker};
use super::{ExecError, RunOptions, select};
use crate::pg::postdata::{self, Kind as ObjectKind, Object};
use crate::pg::{claims, ledger};
use crate::plan::{MappingPlan, OnDuplicate, Plan};
use crate::source::{Range, Source};

/// Whether PostgreSQL itself refuses this mapping's orphans: every
/// reference it declares is a foreign key of the schema. Only then may its
/// rows go straight into the table (a natural-key reference the schema does
/// not constrain is checked on the staging path).
pub fn direct_copy_possible(plan: &Plan, m: &MappingPlan) -> bool {
    m.columns
        .iter()
        .filter(|c| c.references.is_some())
        .all(|c| plan.schema.table(&m.table).is_some_and(|t| t.foreign_key_on(&c.name).is_some()))
}

fn db(what: &str) -> impl Fn(sqlx::Error) -> ExecError + '_ {
    move |source| ExecError::Db { mapping: what.to_string(), source }
}

/// The first and last plan stage loading each table in this run.
fn stages(plan: &Plan, selected: &[&MappingPlan]) -> BTreeMap<String, (usize, usize)> {
    let mut out: BTreeMap<String, (usize, usize)> = BTreeMap::new();
    for (n, stage) in plan.stages.iter().enumerate() {
        for &i in stage {
            let m = &plan.mappings[i];
            if selected.iter().any(|s| std::ptr::eq(*s, m)) {
                let e = out.entry(m.table.clone()).or_insert((n, n));
                e.0 = e.0.min(n);
                e.1 = e.1.max(n);
            }
        }
    }
    out
}

/// A new run's plan, recorded in the target in one transaction: tables
/// stripped for a first load before their keys (when `may_defer`), and the
/// tasks. Returns the board its workers claim from.
pub async fn new_run(
    plan: &Plan,
    source: &Source,
    conn: &mut PgConnection,
    run_id: i64,
    opts: &RunOptions,
    may_defer: bool,
    worker: Worker,
) -> Result<Board, ExecError> {
    let selected = select(plan, &opts.only)?;
    let mut tx = conn.begin().await.map_err(db("planning the run"))?;
    let mut deferred: BTreeSet<String> = BTreeSet::new();
    let mut captured: BTreeMap<String, Vec<Object>> = BTreeMap::new();
    if may_defer {
        let now = chrono::Utc::now();
        let tables: BTreeSet<&str> = selected.iter().map(|m| m.table.as_str()).collect();
        for t in tables {
            let into: Vec<&&MappingPlan> = selected.iter().filter(|m| m.table == t).collect();
            let copyable = into
                .iter()
                .all(|m| direct_copy_possible(plan, m) && super::reader::FastEncoding::for_mapping(m, now).is_some());
            if !copyable {
                tracing::info!(table = t, "loaded with its keys: a mapping into it takes the staging path");
                continue;
            }
            match postdata::why_not(&mut tx, t).await.map_err(db(t))? {
                Some(why) => tracing::info!(table = t, "loaded with its keys: {why}"),
                None => {
                    captured.insert(t.to_string(), postdata::capture(&mut tx, t).await.map_err(db(t))?);
                    deferred.insert(t.to_string());
                }
            }
        }
        // A foreign key between two tables of the run must point back in
        // the plan's order: the referencing table loads later, so it is
        // checked against a table already built.
        let order = stages(plan, &selected);
        loop {
            let bad: Vec<String> = deferred
                .iter()
                .filter(|t| {
                    captured[*t].iter().filter(|o| o.kind == ObjectKind::ForeignKey).any(|fk| {
                        let (child, parent) = (&fk.on_relname, fk.ref_table.as_deref().unwrap_or_default());
                        if child == parent {
                            return false;
                        }
                        match (order.get(child), order.get(parent)) {
                            (Some(c), Some(p)) => c.0 <= p.1,
                            _ => false,
                        }
                    })
                })
                .cloned()
                .collect();
            if bad.is_empty() {
                break;
            }
            for t in bad {
                tracing::info!(table = %t, "loaded with its keys: a foreign key runs against the plan's order");
                deferred.remove(&t);
                captured.remove(&t);
            }
        }
        // Each object is built by one table: a foreign key by the
        // referencing table when it is deferred too (it is built later),
        // else by the referenced one.
        let mut owned: BTreeMap<String, Vec<Object>> = BTreeMap::new();
        let mut seen: BTreeSet<(String, String)> = BTreeSet::new();
        for o in captured.values().flatten() {
            if !seen.insert((o.on_table.clone(), o.name.clone())) {
                continue;
            }
            let owner = match (o.kind, &o.ref_table) {
                (ObjectKind::ForeignKey, Some(parent)) if !deferred.contains(&o.on_relname) => parent.clone(),
                _ => o.on_relname.clone(),
            };
            owned.entry(owner).or_default().push(o.clone());
        }
        let all: Vec<Object> = owned.values().flatten().cloned().collect();
        postdata::strip(&mut tx, &all).await.map_err(db("dropping keys for the first load"))?;
        for t in &deferred {
            let objects = owned.remove(t).unwrap_or_default();
            postdata::record(&mut tx, run_id, t, &objects).await.map_err(db(t))?;
            tracing::info!(table = %t, objects = objects.len(), "loading before keys, indexes and constraints");
        }
    }
    let mut ranges: BTreeMap<String, Vec<Range>> = BTreeMap::new();
    for m in &selected {
        let parts = if deferred.contains(&m.table)
            && m.on_duplicate == OnDuplicate::Reject
            && source.has(&m.source)
            && !postdata::keeps_a_unique_index(&mut tx, &m.table).await.map_err(db(&m.table))?
        {
            source.ranges(m, opts.range_size, opts.split).await?
        } else {
            vec![Range::whole()]
        };
        ranges.insert(m.name.clone(), parts);
        // Read from the start: what was rejected is decided again.
        ledger::forget_rejected(&mut tx, &m.name).await.map_err(db(&m.name))?;
    }
    let list = tasks::plan_tasks(plan, &selected, &deferred, &|m| ranges[&m.name].clone(), 0);
    tasks::record(&mut tx, plan, run_id, &list).await.map_err(db("recording the run's tasks"))?;
    tx.commit().await.map_err(db("planning the run"))?;
    Ok(Board::Ledger { run_id, worker, deferred })
}

/// A task's mapping and the fingerprint of its source now, when that is
/// not the content its checkpoint read (nothing recorded: not changed).
pub fn source_changed<'p>(
    plan: &'p Plan,
    source: &Source,
    t: &claims::TaskRow,
) -> Option<(&'p MappingPlan, Option<String>)> {
    let m = t.mapping.as_deref().and_then(|n| plan.mapping(n))?;
    let now = source.fingerprint(&m.source);
    (t.fingerprint.is_some() && t.fingerprint != now).then_some((m, now))
}

/// How far an interrupted run got, by mapping.
#[derive(Debug, Default, Clone)]
pub struct Standing {
    pub complete: usize,
    pub partly: usize,
}

/// Takes an interrupted run up again. `alone`: this process is the only
/// worker (not `--worker`), so whoever held its tasks is gone. A mapping
/// whose source changed since its checkpoints starts over (with its table,
/// when that loads before its keys; a worker joining others refuses instead).
pub async fn continue_run(
    plan: &Plan,
    source: &Source,
    conn: &mut PgConnection,
    run_id: i64,
    opts: &RunOptions,
    alone: bool,
    worker: Worker,
) -> Result<(Board, Standing), ExecError> {
    let rows = claims::all(conn, run_id).await.map_err(db("reading the run's tasks"))?;
    let deferred: BTreeSet<String> = rows.iter().filter(|r| r.kind == "build").map(|r| r.table_name.clone()).collect();
    let mut tx = conn.begin().await.map_err(db("continuing the run"))?;
    if alone {
        claims::release_all(&mut tx, run_id).await.map_err(db("continuing the run"))?;
    }
    // Checkpoints into other data are never continued.
    let mut changed: BTreeSet<String> = BTreeSet::new();
    for r in rows.iter().filter(|r| r.kind == "load" && (r.report.is_some() || r.position.is_some())) {
        if let Some((m, now)) = source_changed(plan, source, r)
            && changed.insert(m.name.clone())
        {
            let was = r.fingerprint.as_deref().unwrap_or("not recorded");
            let now = now.as_deref().unwrap_or("unknown");
            if !alone {
                return Err(ExecError::Plan(format!(
                    "the source of `{}` ({}) changed since run {run_id} began (then: {was}; now: {now}); \
                     workers cannot start it over: run once without --worker to continue, or with --restart",
                    m.name, m.source
                )));
            }
            eprintln!(
                "the source of `{}` ({}) changed since run {run_id} stopped (then: {was}; now: {now}): `{}` starts over",
                m.name, m.source, m.name
            );
            tracing::warn!(mapping = %m.name, was, now, "source changed since the checkpoint; starting the mapping over");
        }
    }
    let mut restart_tables: BTreeSet<String> = BTreeSet::new();
    for name in &changed {
        let Some(m) = plan.mapping(name) else { continue };
        if deferred.contains(&m.table) {
            restart_tables.insert(m.table.clone());
        } else {
            claims::restart_mappings(&mut tx, Some(run_id), std::slice::from_ref(name)).await.map_err(db(name))?;
            ledger::forget_rejected(&mut tx, name).await.map_err(db(name))?;
        }
    }
    for t in &restart_tables {
        // The table holds only this run's rows: emptied, its ranges cut again.
        let names: Vec<String> = rows
            .iter()
            .filter(|r| r.kind == "load" && &r.table_name == t)
            .filter_map(|r| r.mapping.clone())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        eprintln!("`{t}` is emptied and loaded again from the start (it was loading before its keys)");
        sqlx::query(crate::pg::sql::sql(format!("TRUNCATE {}", crate::pg::sql::quote(t))))
            .execute(&mut *tx)
            .await
            .map_err(db(t))?;
        sqlx::query("DELETE FROM finlit_map.loaded_chunks WHERE table_name = $1 AND run_id = $2")
            .bind(t)
            .bind(run_id)
            .execute(&mut *tx)
            .await
            .map_err(db(t))?;
        let next = claims::replace_loads(&mut tx, run_id, &names, std::slice::from_ref(t)).await.map_err(db(t))?;
        let mappings: Vec<&MappingPlan> = names.iter().filter_map(|n| plan.mapping(n)).collect();
        let mut ranges: BTreeMap<String, Vec<Range>> = BTreeMap::new();
        for m in &mappings {
            ledger::forget_rejected(&mut tx, &m.name).await.map_err(db(&m.name))?;
            let parts = if m.on_duplicate == OnDuplicate::Reject && source.has(&m.source) {
                source.ranges(m, opts.range_size, opts.split).await?
            } else {
                vec![Range::whole()]
            };
            ranges.insert(m.name.clone(), parts);
        }
        let only: BTreeSet<String> = BTreeSet::from([t.clone()]);
        let list: Vec<Task> = tasks::plan_tasks(plan, &mappings, &only, &|m| ranges[&m.name].clone(), next)
            .into_iter()
            .filter(|t| t.kind == Kind::Load)
            .collect();
        tasks::record(&mut tx, plan, run_id, &list).await.map_err(db(t))?;
    }
    tx.commit().await.map_err(db("continuing the run"))?;
    let rows = claims::all(conn, run_id).await.map_err(db("reading the run's tasks"))?;
    let mut standing = Standing::default();
    let names: BTreeSet<&str> = rows.iter().filter_map(|r| r.mapping.as_deref()).collect();
    for name in names {
        let Some(m) = plan.mapping(name) else { continue };
        let mine: Vec<_> = rows
            .iter()
            .filter(|r| r.mapping.as_deref() == Some(name) || (r.kind == "build" && r.table_name == m.table))
            .collect();
        if mine.iter().all(|r| r.state == "done") {
            standing.complete += 1;
        } else if mine.iter().any(|r| r.state == "done" || r.report.is_some()) {
            standing.partly += 1;
        }
    }
    Ok((Board::Ledger { run_id, worker, deferred }, standing))
}

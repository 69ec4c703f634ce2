//! `finlit-map run`: prepare the target, continue or start a run, execute
//! the plan, print the summary.

use std::io::IsTerminal;

use crate::cli::{CheckFormat, Failure, Finished, Outcome, RunArgs};
use crate::pg::ledger;
use crate::pg::target::{self, redact};
use crate::run::rejects::RejectsFile;
use crate::run::tasks::Board;
use crate::run::{self as exec, ProgressMode, RunOptions};
use crate::source::{Range, Source};

pub async fn run(args: RunArgs) -> Finished {
    let bars = std::io::stderr().is_terminal() && args.format == CheckFormat::Text;
    // The source first, and the files `--collection` names outlined while
    // the mappings compile (its errors still come after theirs).
    let source = Source::open(&args.source.source, args.source.source_db.as_deref()).await;
    if let Ok(s) = &source {
        s.prepare_named(&args.collections);
    }
    let Some(plan) = super::load_plan(&args.mappings) else { return Err(Failure::shown()) };
    let source_label = redact(&args.source.source);
    let source = match source {
        Ok(s) => s,
        Err(e) => return super::fail(e),
    };
    // A mapping whose collection is not in the source would load nothing
    // and exit 0: refuse before anything is written, unless asked.
    match exec::select(&plan, &args.collections) {
        Ok(selected) => {
            source.prepare(&selected);
            let missing = exec::missing_collections(&selected, &source);
            if !missing.is_empty() {
                let list = missing.join(", ");
                if !args.allow_missing {
                    return super::fail(format!(
                        "the source {source_label} has no collection for {} mapping(s): {list}\n  check --source, or pass --allow-missing to load the rest",
                        missing.len()
                    ));
                }
                eprintln!("warning: nothing to load for {list}: not in the source (--allow-missing)");
            }
        }
        Err(e) => return super::selection_failed(e),
    }
    tracing::info!(
        source = %source_label,
        target = %args.target.as_deref().map(redact).unwrap_or_else(|| "(none)".into()),
        dry_run = args.dry_run,
        "run started"
    );

    let plan_ref = &plan;
    let jobs = args.jobs.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get())).max(1);
    let mut opts = RunOptions {
        batch_size: args.batch_size,
        dry_run: args.dry_run,
        max_rejects: args.max_rejects,
        only: args.collections.clone(),
        progress: if bars { ProgressMode::Bars } else { ProgressMode::Lines },
        run_id: 0,
        jobs,
        range_size: args.range_size,
        split: args.ranges,
    };
    let worker = crate::run::tasks::Worker { name: crate::run::tasks::worker_name(), lease: args.lease.max(1.0) };
    let mut conns = Vec::new();
    let mut continued = false;
    let board = if args.dry_run {
        let selected = exec::select(plan_ref, &args.collections).unwrap_or_default();
        let none = std::collections::BTreeSet::new();
        Board::memory(crate::run::tasks::plan_tasks(plan_ref, &selected, &none, &|_| vec![Range::whole()], 0))
    } else {
        let Some(url) = args.target.as_deref() else {
            return super::fail(
                "no target: pass --target postgres://…, or set DATABASE_URL in the environment or in a .env file here (or use --dry-run)",
            );
        };
        let (mut conn, fresh) = match prepare_target(url, &plan, &args).await {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(target: crate::cli::LOG_FILE_ONLY, "{e}");
                return super::fail(e);
            }
        };
        let may_defer = !args.no_fast_first_load && (fresh || args.fast_first_load);
        // The other workers' connections are opened while the run is planned.
        let others = futures::future::join_all((1..jobs).map(|_| target::connect_for_loading(url)));
        let (started, others) =
            tokio::join!(start(&mut conn, &plan, &source, &source_label, &args, &opts, may_defer, &worker), others);
        if args.worker {
            ledger::unlock_planning(&mut conn).await;
        }
        let (board, run_id, was_continued) = match started {
            Ok(Started::Run(board, id, continued)) => (board, id, continued),
            Ok(Started::Complete { run_id, outcome, finished_at }) => {
                ledger::unlock_target(&mut conn).await;
                eprintln!(
                    "run {run_id}, which this worker's fellows planned, finished at {finished_at} ({outcome}); nothing left to do\n  \
                     to load again, run once without --worker"
                );
                tracing::info!(run_id, outcome, "the run is already complete");
                if matches!(args.format, CheckFormat::Json) {
                    println!(
                        "{}",
                        serde_json::json!({ "run_id": run_id, "outcome": outcome, "already_complete": true })
                    );
                }
                return Ok(if outcome == ledger::finished_outcome(0) { Outcome::Ok } else { Outcome::Rejects });
            }
            Err(e) => {
                ledger::unlock_target(&mut conn).await;
                tracing::error!(target: crate::cli::LOG_FILE_ONLY, "{e}");
                return super::fail(e);
            }
        };
        opts.run_id = run_id;
        continued = was_continued;
        // One connection per worker; the first also keeps the run's records.
        conns.push(conn);
        for other in others {
            match other {
                Ok(c) => conns.push(c),
                Err(e) => {
                    finish(Some(url), conns.first_mut(), run_id, "failed", args.worker).await;
                    return super::fail(e);
                }
            }
        }
        board
    };
    let run_id = opts.run_id;
    let mut rejects = RejectsFile::new(&args.rejects, continued);
    let result = tokio::select! {
        r = exec::run(&plan, &source, &mut conns, &opts, &mut rejects, &board, args.target.as_deref()) => r,
        _ = tokio::signal::ctrl_c() => {
            let _ = rejects.flush();
            finish(args.target.as_deref(), conns.first_mut(), run_id, "interrupted", args.worker).await;
            eprintln!("interrupted: committed chunks stay loaded; run the same command again to continue");
            tracing::warn!("interrupted");
            return Ok(Outcome::Interrupted);
        }
    };
    let mut report = match result {
        Ok(r) => r,
        Err(e) => {
            finish(args.target.as_deref(), conns.first_mut(), run_id, "failed", args.worker).await;
            tracing::error!(target: crate::cli::LOG_FILE_ONLY, "{e}");
            eprintln!("error: {e}");
            if e.resumable() && !args.dry_run {
                eprintln!(
                    "the chunks committed before the failure stay loaded; once the cause is fixed, run the same command again to continue from there"
                );
            }
            return Err(Failure::shown());
        }
    };
    if args.prune
        && let Some(conn) = conns.first_mut()
    {
        let selected = exec::select(&plan, &args.collections).unwrap_or_default();
        match crate::validate::prune::prune(&plan, &selected, &source, conn).await {
            Ok(p) => report.pruned = p,
            Err(e) => {
                finish(args.target.as_deref(), conns.first_mut(), run_id, "failed", false).await;
                return super::fail(format!("{e}; the load stays, nothing was pruned"));
            }
        }
    }
    finish(args.target.as_deref(), conns.first_mut(), run_id, ledger::finished_outcome(report.rejected()), false).await;
    match args.format {
        CheckFormat::Json => println!("{}", report.render_json()),
        CheckFormat::Text => {
            print!("{}", report.render_text());
            if let Some(f) = &report.rejects_file {
                println!("{} rejected rows written to {f}", report.rejected());
            }
            if args.dry_run {
                println!("dry run: nothing was written");
            }
        }
    }
    tracing::info!(rejected = report.rejected(), seconds = report.seconds, "run finished");
    let unmatched = report.coverage.as_ref().map_or(0, |c| c.unmatched.len());
    if args.strict && unmatched > 0 {
        return Err(Failure::new(format!(
            "--strict: {unmatched} mapped path(s) matched no document (see the warnings above)"
        )));
    }
    if report.rejected() > 0 { Ok(Outcome::Rejects) } else { Ok(Outcome::Ok) }
}

/// What `start` found to do.
enum Started {
    /// The board, the run's id, and whether it continued one.
    Run(Board, i64, bool),
    /// A worker arrived after its fellows finished the run (a replaced
    /// pod, a late start): nothing is loaded again.
    Complete { run_id: i64, outcome: String, finished_at: String },
}

/// The run this command works on: the interrupted one from this source,
/// continued (or, with `--restart`, given up and a new one planned), or a
/// new one. A worker joins the run its fellow workers started, and reports
/// it when they have finished it: same mappings, same source content.
#[allow(clippy::too_many_arguments)]
async fn start(
    c: &mut sqlx::PgConnection,
    plan: &crate::plan::Plan,
    source: &Source,
    source_label: &str,
    args: &RunArgs,
    opts: &RunOptions,
    may_defer: bool,
    worker: &crate::run::tasks::Worker,
) -> Result<Started, String> {
    let sql_err = |e: sqlx::Error| format!("recording the run in the target: {}", crate::pg::sql::pg_text(&e));
    let unfinished = ledger::unfinished_run(c, source_label).await.map_err(sql_err)?;
    // A first load before its keys that another run left: nothing else may
    // load those tables until it is finished or rolled back.
    let waiting = crate::pg::postdata::pending(c).await.map_err(sql_err)?;
    if let Some(other) = waiting.iter().find(|d| Some(d.run_id) != unfinished) {
        let tables: Vec<&str> = waiting.iter().filter(|d| d.run_id == other.run_id).map(|d| d.table.as_str()).collect();
        return Err(format!(
            "run {} left a first load unfinished: {} still lack their keys, indexes and constraints\n  \
             run it again with its source to finish it, or `finlit-map rollback` to undo it",
            other.run_id,
            tables.join(", ")
        ));
    }
    if args.worker
        && unfinished.is_none()
        && let Some((run_id, outcome, finished_at)) =
            ledger::finished_worker_run(c, source_label).await.map_err(sql_err)?
        && same_work(c, plan, source, opts, run_id).await.map_err(sql_err)?
    {
        return Ok(Started::Complete { run_id, outcome, finished_at });
    }
    match unfinished {
        Some(id) if !args.restart => {
            ledger::set_outcome(c, id, "running").await.map_err(sql_err)?;
            let (board, standing) =
                crate::run::start::continue_run(plan, source, c, id, opts, !args.worker, worker.clone())
                    .await
                    .map_err(|e| e.to_string())?;
            if args.worker {
                eprintln!("joining run {id} as worker {}", worker.name);
            } else {
                eprintln!(
                    "continuing interrupted run {id}: {} mappings were complete, {} partly loaded (--restart starts over)",
                    standing.complete, standing.partly
                );
            }
            tracing::info!(run_id = id, "continuing an interrupted run");
            Ok(Started::Run(board, id, true))
        }
        other => {
            if let Some(id) = other {
                // Given up: its first load's tables are emptied and get their keys back.
                let mine: Vec<_> = waiting.into_iter().filter(|d| d.run_id == id).collect();
                let mut tx = sqlx::Connection::begin(&mut *c).await.map_err(sql_err)?;
                crate::pg::postdata::abandon(&mut tx, &mine).await.map_err(sql_err)?;
                ledger::set_outcome(&mut tx, id, "abandoned").await.map_err(sql_err)?;
                tx.commit().await.map_err(sql_err)?;
                if !mine.is_empty() {
                    eprintln!("run {id} is given up (--restart): its first load's tables were emptied");
                }
            }
            let id = ledger::start_run(c, source_label, args.worker).await.map_err(sql_err)?;
            record_stream_start(c, plan, source, id).await?;
            let board = crate::run::start::new_run(plan, source, c, id, opts, may_defer, worker.clone())
                .await
                .map_err(|e| e.to_string())?;
            if args.worker {
                eprintln!("planned run {id}; working on it as worker {}", worker.name);
            }
            Ok(Started::Run(board, id, false))
        }
    }
}

/// Whether a finished run did what this command would: the same mappings,
/// from source content with the same fingerprints as its checkpoints.
async fn same_work(
    c: &mut sqlx::PgConnection,
    plan: &crate::plan::Plan,
    source: &Source,
    opts: &RunOptions,
    run_id: i64,
) -> Result<bool, sqlx::Error> {
    let tasks = crate::pg::claims::all(c, run_id).await?;
    let loads: Vec<_> = tasks.iter().filter(|t| t.kind == "load").collect();
    let done: std::collections::BTreeSet<&str> = loads.iter().filter_map(|t| t.mapping.as_deref()).collect();
    let wanted: std::collections::BTreeSet<&str> =
        exec::select(plan, &opts.only).unwrap_or_default().iter().map(|m| m.name.as_str()).collect();
    if done != wanted {
        return Ok(false);
    }
    Ok(!loads.iter().any(|t| crate::run::start::source_changed(plan, source, t).is_some()))
}

/// A live source: where each collection's change stream stands, before
/// any reading, so every write during or after this snapshot can be
/// followed (`sync`).
async fn record_stream_start(
    c: &mut sqlx::PgConnection,
    plan: &crate::plan::Plan,
    source: &Source,
    run_id: i64,
) -> Result<(), String> {
    let mut collections: Vec<String> = plan.mappings.iter().map(|m| m.source.clone()).collect();
    collections.sort();
    collections.dedup();
    match source.change_stream_positions(&collections).await {
        Some(Ok(tokens)) => {
            let db = match source {
                Source::Mongo(m) => m.database.clone(),
                Source::Files(_) => String::new(),
            };
            let token = serde_json::json!({ "collections": tokens });
            ledger::record_stream_start(c, run_id, &db, &token)
                .await
                .map_err(|e| format!("recording the change stream position: {e}"))?;
            tracing::info!(run_id, "change stream positions recorded before reading");
        }
        Some(Err(why)) => tracing::warn!(
            "the source gave no change stream position ({why}): writes made during this snapshot cannot be followed later"
        ),
        None => {}
    }
    Ok(())
}

/// Records the run's outcome on every exit path. The loading connection
/// may be the reason the run failed (terminated, or left mid-COPY by a
/// stopped mapping), so a fresh one is tried next; only when both fail is
/// the run left `running` (the next run continues it), and that is said.
pub(super) async fn finish(
    url: Option<&str>,
    conn: Option<&mut sqlx::PgConnection>,
    run_id: i64,
    outcome: &str,
    worker: bool,
) {
    let Some(c) = conn else { return };
    // A worker that stops leaves the run to the others: its tasks' leases
    // expire and they continue them.
    if worker && !ledger::is_finished(outcome) {
        ledger::unlock_target(c).await;
        return;
    }
    let recorded = ledger::finish_run(c, run_id, outcome).await;
    ledger::unlock_target(c).await;
    let Err(first) = recorded else { return };
    let retried = match url {
        Some(url) => match target::connect(url).await {
            Ok(mut fresh) => ledger::finish_run(&mut fresh, run_id, outcome).await.map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        },
        None => Err(first.to_string()),
    };
    if let Err(e) = retried {
        eprintln!("warning: could not record the run's outcome ({outcome}): {e}");
        tracing::warn!("could not record the run's outcome ({outcome}): {first}; then {e}");
    }
}

/// The target made ready: the database created if missing, the run lock
/// taken (shared among `--worker` processes, which then plan one at a
/// time), the schema applied, the tables checked, the ledger present.
/// Also says whether the run may change the tables freely: it created the
/// database, or applied its whole schema to one without a ledger.
async fn prepare_target(
    url: &str,
    plan: &crate::plan::Plan,
    args: &RunArgs,
) -> Result<(sqlx::PgConnection, bool), String> {
    let mut fresh = false;
    if !args.no_schema && target::ensure_database(url).await.map_err(|e| e.to_string())? {
        // Said once on stderr (as a plain line), and in the log.
        eprintln!("created database {}", redact(url));
        tracing::info!(target: crate::cli::LOG_FILE_ONLY, "created database {}", redact(url));
        fresh = true;
    }
    // One run per target at a time, from before its schema is applied: a
    // second run would continue the first's checkpoints while it still
    // writes them. Workers of one run share it, and plan in turn.
    let mut conn = if args.worker {
        let mut conn = target::connect_for_loading(url).await.map_err(|e| e.to_string())?;
        match ledger::share_target(&mut conn, args.wait, &|h| eprintln!("waiting for {h} to finish (--wait)")).await {
            Ok(Ok(())) => {}
            Ok(Err(holder)) => {
                return Err(format!(
                    "another finlit-map command is using this target: {holder}\n  wait for it to finish, or pass --wait"
                ));
            }
            Err(e) => return Err(format!("locking the target: {e}")),
        }
        ledger::lock_planning(&mut conn).await.map_err(|e| format!("locking the target: {e}"))?;
        conn
    } else {
        holding_target(url, args.wait).await?
    };
    let had_ledger = ledger::exists(&mut conn).await.unwrap_or(false);
    let whole = prepare_locked(&mut conn, plan, args.no_schema).await.map_err(|e| e.to_string())?;
    Ok((conn, fresh || (whole && !had_ledger)))
}

/// A loading connection holding the target's lock (`run` and `sync` write
/// one at a time), or who holds it; with `wait`, after they are done.
pub(super) async fn holding_target(url: &str, wait: bool) -> Result<sqlx::PgConnection, String> {
    let mut conn = target::connect_for_loading(url).await.map_err(|e| e.to_string())?;
    match ledger::lock_target(&mut conn, wait, &|h| eprintln!("waiting for {h} to finish (--wait)")).await {
        Ok(Ok(())) => Ok(conn),
        Ok(Err(holder)) => Err(format!(
            "another finlit-map command is using this target: {holder}\n  wait for it to finish, or pass --wait"
        )),
        Err(e) => Err(format!("locking the target: {e}")),
    }
}

/// Applies the schema and checks the tables; says whether every migration
/// was applied just now (the tables are all new).
async fn prepare_locked(
    conn: &mut sqlx::PgConnection,
    plan: &crate::plan::Plan,
    no_schema: bool,
) -> Result<bool, target::TargetError> {
    let mut whole = false;
    if !no_schema {
        let applied = target::apply_schema(conn, &plan.schema_dir).await?;
        for m in &applied {
            eprintln!("applied schema migration {} {}", m.version, m.description);
            tracing::info!(target: crate::cli::LOG_FILE_ONLY, version = m.version, "applied schema migration {}", m.description);
        }
        let all = target::local_migrations(&plan.schema_dir).await?.len();
        whole = !applied.is_empty() && applied.len() == all;
    }
    target::check_tables(conn, plan).await?;
    ledger::ensure(conn).await?;
    Ok(whole)
}

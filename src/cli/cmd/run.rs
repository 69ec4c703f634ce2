//! `finlit-map run`: prepare the target, continue or start a run, execute
//! the plan, print the summary.

use std::collections::BTreeMap;
use std::io::IsTerminal;

use crate::cli::{CheckFormat, Failure, Finished, Outcome, RunArgs};
use crate::pg::ledger;
use crate::pg::target::{self, redact};
use crate::run::rejects::RejectsFile;
use crate::run::{self as exec, ProgressMode, RunOptions};
use crate::source::Source;

pub async fn run(args: RunArgs) -> Finished {
    let bars = std::io::stderr().is_terminal() && args.format == CheckFormat::Text;
    let Some(plan) = super::load_plan(&args.mappings) else { return Err(Failure::shown()) };
    let source_label = redact(&args.source.source);
    let source = match Source::open(&args.source.source, args.source.source_db.as_deref()).await {
        Ok(s) => s,
        Err(e) => return super::fail(e),
    };
    // A mapping whose collection is not in the source would load nothing
    // and exit 0: refuse before anything is written, unless asked.
    match exec::select(&plan, &args.collections) {
        Ok(selected) => {
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

    let mut conn = None;
    if !args.dry_run {
        let Some(url) = args.target.as_deref() else {
            return super::fail(
                "no target: pass --target postgres://…, or set DATABASE_URL in the environment or in a .env file here (or use --dry-run)",
            );
        };
        match prepare_target(url, &plan, args.no_schema, args.wait).await {
            Ok(c) => conn = Some(c),
            Err(e) => {
                tracing::error!(target: crate::cli::LOG_FILE_ONLY, "{e}");
                return super::fail(e);
            }
        }
    }

    // Continue the last run from this source if it did not finish.
    let mut run_id = 0;
    let mut resume = BTreeMap::new();
    if let Some(c) = conn.as_mut() {
        let started = async {
            match ledger::unfinished_run(c, &source_label).await? {
                Some((id, progress)) if !args.restart => {
                    ledger::set_outcome(c, id, "running").await?;
                    let progress = same_source(&plan, &source, id, progress);
                    let done = progress.iter().filter(|(_, p)| p.done).count();
                    eprintln!(
                        "continuing interrupted run {id}: {done} mappings were complete, {} partly loaded (--restart starts over)",
                        progress.len() - done
                    );
                    tracing::info!(run_id = id, "continuing an interrupted run");
                    resume = progress.into_iter().collect();
                    Ok::<i64, sqlx::Error>(id)
                }
                Some((id, _)) => {
                    ledger::set_outcome(c, id, "abandoned").await?;
                    ledger::start_run(c, &source_label).await
                }
                None => ledger::start_run(c, &source_label).await,
            }
        };
        match started.await {
            Ok(id) => run_id = id,
            Err(e) => return super::fail(format!("recording the run in the target: {e}")),
        }
        // A live source: where each collection's change stream stands,
        // before any reading, so every write during or after this snapshot
        // can be followed (`sync`).
        let mut collections: Vec<String> = plan.mappings.iter().map(|m| m.source.clone()).collect();
        collections.sort();
        collections.dedup();
        if let (Some(position), Some(c)) = (source.change_stream_positions(&collections).await, conn.as_mut()) {
            match position {
                Ok(tokens) => {
                    let db = match &source {
                        Source::Mongo(m) => m.database.clone(),
                        Source::Files(_) => String::new(),
                    };
                    let token = serde_json::json!({ "collections": tokens });
                    if let Err(e) = ledger::record_stream_start(c, run_id, &db, &token).await {
                        return super::fail(format!("recording the change stream position: {e}"));
                    }
                    tracing::info!(run_id, "change stream positions recorded before reading");
                }
                Err(why) => tracing::warn!(
                    "the source gave no change stream position ({why}): writes made during this snapshot cannot be followed later"
                ),
            }
        }
    }
    let jobs = args.jobs.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get())).max(1);
    // One connection per job; the first also keeps the run's records.
    let mut conns = Vec::new();
    if let Some(c) = conn.take() {
        conns.push(c);
        let url = args.target.as_deref().unwrap_or_default();
        for _ in 1..jobs {
            match target::connect_for_loading(url).await {
                Ok(c) => conns.push(c),
                Err(e) => {
                    finish(Some(url), conns.first_mut(), run_id, "failed").await;
                    return super::fail(e);
                }
            }
        }
    }
    let opts = RunOptions {
        batch_size: args.batch_size,
        dry_run: args.dry_run,
        max_rejects: args.max_rejects,
        only: args.collections.clone(),
        progress: if bars { ProgressMode::Bars } else { ProgressMode::Lines },
        run_id,
        jobs,
    };
    let mut rejects = RejectsFile::new(&args.rejects, !resume.is_empty());
    let result = tokio::select! {
        r = exec::run(&plan, &source, &mut conns, &opts, &mut rejects, &resume) => r,
        _ = tokio::signal::ctrl_c() => {
            let _ = rejects.flush();
            finish(args.target.as_deref(), conns.first_mut(), run_id, "interrupted").await;
            eprintln!("interrupted: committed chunks stay loaded; run the same command again to continue");
            tracing::warn!("interrupted");
            return Ok(Outcome::Interrupted);
        }
    };
    let mut report = match result {
        Ok(r) => r,
        Err(e) => {
            finish(args.target.as_deref(), conns.first_mut(), run_id, "failed").await;
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
                finish(args.target.as_deref(), conns.first_mut(), run_id, "failed").await;
                return super::fail(format!("{e}; the load stays, nothing was pruned"));
            }
        }
    }
    finish(
        args.target.as_deref(),
        conns.first_mut(),
        run_id,
        if report.rejected() > 0 { "finished with rejects" } else { "ok" },
    )
    .await;
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

/// The checkpoints that still describe the source: a mapping whose
/// collection changed since the interrupted run took its checkpoint (a
/// re-export, a replaced file, a re-created collection) starts over, which
/// is safe because rows are matched by key. Never continue into other data.
fn same_source(
    plan: &crate::plan::Plan,
    source: &Source,
    run_id: i64,
    progress: Vec<(String, ledger::Progress)>,
) -> Vec<(String, ledger::Progress)> {
    progress
        .into_iter()
        .filter(|(name, p)| {
            let Some(m) = plan.mappings.iter().find(|m| &m.name == name) else { return true };
            let now = source.fingerprint(&m.source);
            if p.fingerprint == now {
                return true;
            }
            let was = p.fingerprint.as_deref().unwrap_or("not recorded");
            let now = now.as_deref().unwrap_or("unknown");
            eprintln!(
                "the source of `{name}` ({}) changed since run {run_id} stopped (then: {was}; now: {now}): `{name}` starts over",
                m.source
            );
            tracing::warn!(mapping = %name, was, now, "source changed since the checkpoint; starting the mapping over");
            false
        })
        .collect()
}

/// Records the run's outcome on every exit path. The loading connection
/// may be the reason the run failed (terminated, or left mid-COPY by a
/// stopped mapping), so a fresh one is tried next; only when both fail is
/// the run left `running` (the next run continues it), and that is said.
pub(super) async fn finish(url: Option<&str>, conn: Option<&mut sqlx::PgConnection>, run_id: i64, outcome: &str) {
    let Some(c) = conn else { return };
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

async fn prepare_target(
    url: &str,
    plan: &crate::plan::Plan,
    no_schema: bool,
    wait: bool,
) -> Result<sqlx::PgConnection, String> {
    if !no_schema && target::ensure_database(url).await.map_err(|e| e.to_string())? {
        // Said once on stderr (as a plain line), and in the log.
        eprintln!("created database {}", redact(url));
        tracing::info!(target: crate::cli::LOG_FILE_ONLY, "created database {}", redact(url));
    }
    // One run per target at a time, from before its schema is applied: a
    // second run would continue the first's checkpoints while it still
    // writes them.
    let mut conn = holding_target(url, wait).await?;
    prepare_locked(&mut conn, plan, no_schema).await.map_err(|e| e.to_string())?;
    Ok(conn)
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

async fn prepare_locked(
    conn: &mut sqlx::PgConnection,
    plan: &crate::plan::Plan,
    no_schema: bool,
) -> Result<(), target::TargetError> {
    if !no_schema {
        let applied = target::apply_schema(conn, &plan.schema_dir).await?;
        for m in &applied {
            eprintln!("applied schema migration {} {}", m.version, m.description);
            tracing::info!(target: crate::cli::LOG_FILE_ONLY, version = m.version, "applied schema migration {}", m.description);
        }
    }
    target::check_tables(conn, plan).await?;
    ledger::ensure(conn).await?;
    Ok(())
}

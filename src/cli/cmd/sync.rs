//! `finlit-map sync`: follow the live source's change streams into the
//! target until caught up or stopped, reconnecting to the target when its
//! connection is lost; print what it did.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use crate::cli::{CheckFormat, Failure, Finished, Outcome, SyncArgs};
use crate::pg::ledger;
use crate::pg::target::{self, redact};
use crate::run::ProgressMode;
use crate::run::rejects::RejectsFile;
use crate::source::Source;
use crate::sync::{self as engine, SyncOptions, SyncReport};

/// Lost target connections replaced in a row before giving up.
const RECONNECTS: u32 = 10;

pub async fn run(args: SyncArgs) -> Finished {
    let bars = std::io::stderr().is_terminal() && args.format == CheckFormat::Text;
    let Some(plan) = super::load_plan(&args.mappings) else { return Err(Failure::shown()) };
    let problems = engine::unsyncable(&plan);
    if !problems.is_empty() {
        return super::fail(format!(
            "sync cannot follow every mapping exactly ({} problem(s)):\n  {}",
            problems.len(),
            problems.join("\n  ")
        ));
    }
    let label = redact(&args.source);
    let mongo = match Source::open(&args.source, args.source_db.as_deref()).await {
        Ok(Source::Mongo(m)) => m,
        Ok(Source::Files(_)) => {
            return super::fail(format!(
                "sync follows a live server's change streams: --source must be a mongodb:// URI, not {label}"
            ));
        }
        Err(e) => return super::fail(e),
    };
    let Some(url) = args.target.as_deref() else {
        return super::fail(
            "no target: pass --target postgres://…, or set DATABASE_URL in the environment or in a .env file here",
        );
    };
    let mut conn = match connect(url, &plan, args.wait).await {
        Ok(c) => c,
        Err(e) => return super::fail(e),
    };
    let run_id = match ledger::start_run(&mut conn, &format!("sync from {label}"), false).await {
        Ok(id) => id,
        Err(e) => return super::fail(format!("recording the sync in the target: {e}")),
    };
    tracing::info!(source = %label, target = %redact(url), run_id, "sync started");
    let opts = SyncOptions {
        batch_size: args.batch_size.max(1),
        until_caught_up: args.until_caught_up,
        progress: if bars { ProgressMode::Bars } else { ProgressMode::Lines },
        retry_for: Duration::from_secs(args.retry_for),
        run_id,
    };
    let mut rejects = RejectsFile::new(&args.rejects, true);
    let mut report = SyncReport::default();
    let started = Instant::now();
    let mut lost = 0;
    let result = loop {
        let r = tokio::select! {
            r = engine::sync(&plan, &mongo, &mut conn, &opts, &mut rejects, &mut report) => Some(r),
            _ = tokio::signal::ctrl_c() => None,
        };
        match r {
            Some(Err(e)) if e.connection_lost() && lost < RECONNECTS => {
                lost += 1;
                report.reconnects += 1;
                eprintln!(
                    "the connection to the target was lost ({e}); reconnecting to continue from the last committed batch"
                );
                tracing::warn!("target connection lost: {e}; reconnecting");
                // If the old session is still alive somehow, it lets go of the target.
                ledger::unlock_target(&mut conn).await;
                tokio::time::sleep(Duration::from_secs(1)).await;
                match connect(url, &plan, true).await {
                    Ok(c) => conn = c,
                    Err(e) => break Some(Err(e)),
                }
            }
            Some(Ok(())) => break Some(Ok(())),
            Some(Err(e)) => break Some(Err(e.to_string())),
            None => break None,
        }
    };
    let _ = rejects.flush();
    report.seconds = started.elapsed().as_secs_f64();
    report.events_per_second = if report.seconds > 0.0 { report.events_applied as f64 / report.seconds } else { 0.0 };
    if rejects.written > 0 {
        report.rejects_file = Some(rejects.path().display().to_string());
    }
    let outcome = match &result {
        Some(Ok(())) => ledger::finished_outcome(report.rejected()),
        Some(Err(_)) => "failed",
        None => "interrupted",
    };
    super::run::finish(Some(url), Some(&mut conn), run_id, outcome, false).await;
    match args.format {
        CheckFormat::Json => println!("{}", serde_json::to_string_pretty(&report).unwrap_or_default()),
        CheckFormat::Text => {
            print!("{}", report.render_text());
            if let Some(f) = &report.rejects_file {
                println!("{} rejected rows written to {f}", report.rejected());
            }
        }
    }
    tracing::info!(events = report.events_applied, rejected = report.rejected(), outcome, "sync finished");
    match result {
        None => {
            eprintln!("interrupted: every committed batch stays, with its position; run the same command to continue");
            Ok(Outcome::Interrupted)
        }
        Some(Err(e)) => {
            tracing::error!(target: crate::cli::LOG_FILE_ONLY, "{e}");
            Err(Failure::new(format!(
                "{e}\n  every committed batch stays, with its position; once the cause is fixed, run the same command to continue"
            )))
        }
        Some(Ok(())) if report.rejected() > 0 => Ok(Outcome::Rejects),
        Some(Ok(())) => Ok(Outcome::Ok),
    }
}

/// A loading connection holding the target's lock, the ledger present and
/// every table of the plan there.
async fn connect(url: &str, plan: &crate::plan::Plan, wait: bool) -> Result<sqlx::PgConnection, String> {
    let mut conn = super::run::holding_target(url, wait).await?;
    target::check_tables(&mut conn, plan).await.map_err(|e| e.to_string())?;
    ledger::ensure(&mut conn).await.map_err(|e| e.to_string())?;
    if let Some(why) = super::unfinished_first_load(&mut conn).await {
        ledger::unlock_target(&mut conn).await;
        return Err(why);
    }
    Ok(conn)
}

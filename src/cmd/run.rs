//! `finlit-map run`: prepare the target, execute the plan, print the summary.

use std::io::IsTerminal;

use crate::cli::{CheckFormat, RunArgs, exit, init_logging};
use crate::exec::{self, ProgressMode, RunOptions};
use crate::rejects::RejectsFile;
use crate::source::FileSource;
use crate::target::{self, redact};

pub async fn run(args: RunArgs) -> u8 {
    let bars = std::io::stderr().is_terminal() && args.format == CheckFormat::Text;
    if let Err(e) = init_logging(Some(&args.log_file), bars) {
        eprintln!("error: {e}");
        return exit::FAILED;
    }
    let Some(plan) = super::load_plan(&args.mappings) else {
        return exit::FAILED;
    };
    if args.source.source.starts_with("mongodb://") || args.source.source.starts_with("mongodb+srv://") {
        eprintln!(
            "error: live MongoDB sources are not supported yet; export with `mongodump` and pass the dump directory"
        );
        return exit::FAILED;
    }
    let source = match FileSource::open(std::path::Path::new(&args.source.source)) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return exit::FAILED;
        }
    };
    tracing::info!(
        source = %redact(&args.source.source),
        target = %args.target.as_deref().map(redact).unwrap_or_else(|| "(none)".into()),
        dry_run = args.dry_run,
        "run started"
    );

    let mut conn = None;
    if !args.dry_run {
        let Some(url) = args.target.as_deref() else {
            eprintln!("error: no target: pass --target postgres://… or set DATABASE_URL (or use --dry-run)");
            return exit::FAILED;
        };
        match prepare_target(url, &plan, args.no_schema).await {
            Ok(c) => conn = Some(c),
            Err(e) => {
                eprintln!("error: {e}");
                tracing::error!("{e}");
                return exit::FAILED;
            }
        }
    }

    let mut run_id = 0;
    if let Some(c) = conn.as_mut() {
        match crate::ledger::start_run(c, &redact(&args.source.source)).await {
            Ok(id) => run_id = id,
            Err(e) => {
                eprintln!("error: recording the run in the target: {e}");
                return exit::FAILED;
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
    };
    let mut rejects = RejectsFile::new(&args.rejects);
    let result = tokio::select! {
        r = exec::run(&plan, &source, conn.as_mut(), &opts, &mut rejects) => r,
        _ = tokio::signal::ctrl_c() => {
            let _ = rejects.flush();
            finish(conn.as_mut(), run_id, "interrupted").await;
            eprintln!("interrupted: committed chunks stay loaded; run the same command again to finish");
            tracing::warn!("interrupted");
            return 130;
        }
    };
    let report = match result {
        Ok(r) => r,
        Err(e) => {
            finish(conn.as_mut(), run_id, "failed").await;
            eprintln!("error: {e}");
            tracing::error!("{e}");
            return exit::FAILED;
        }
    };
    finish(conn.as_mut(), run_id, if report.rejected() > 0 { "finished with rejects" } else { "ok" }).await;
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
    if report.rejected() > 0 { exit::REJECTS } else { exit::OK }
}

/// Records the run's outcome; a failure to do so is logged, not fatal.
async fn finish(conn: Option<&mut sqlx::PgConnection>, run_id: i64, outcome: &str) {
    if let Some(c) = conn
        && let Err(e) = crate::ledger::finish_run(c, run_id, outcome).await
    {
        tracing::warn!("could not record the run's outcome: {e}");
    }
}

async fn prepare_target(
    url: &str,
    plan: &crate::plan::Plan,
    no_schema: bool,
) -> Result<sqlx::PgConnection, target::TargetError> {
    if !no_schema && target::ensure_database(url).await? {
        eprintln!("created database {}", redact(url));
        tracing::info!("created database {}", redact(url));
    }
    let mut conn = target::connect(url).await?;
    if !no_schema {
        let applied = target::apply_schema(&mut conn, &plan.schema_dir).await?;
        for m in &applied {
            eprintln!("applied schema migration {} {}", m.version, m.description);
            tracing::info!(version = m.version, "applied schema migration {}", m.description);
        }
    }
    let tables: Vec<&str> = plan.mappings.iter().map(|m| m.table.as_str()).collect();
    target::check_tables(&mut conn, &tables).await?;
    crate::ledger::ensure(&mut conn).await?;
    Ok(conn)
}

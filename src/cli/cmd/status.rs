//! `finlit-map status`: per mapping, source and target counts and the last run.

use crate::cli::{CheckFormat, Failure, Finished, Outcome, StatusArgs};
use crate::pg::target;
use crate::source::Source;

pub async fn run(args: StatusArgs) -> Finished {
    if args.history {
        return history(&args).await;
    }
    let Some(plan) = super::load_plan(&args.mappings) else { return Err(Failure::shown()) };
    let source = match args.source.as_deref() {
        Some(s) => match Source::open(s, args.source_db.as_deref()).await {
            Ok(s) => Some(s),
            Err(e) => return super::fail(e),
        },
        None => None,
    };
    let mut conn = match target::connect(&args.target.target).await {
        Ok(c) => c,
        Err(e) => return super::fail(e),
    };
    if let Some(why) = super::unfinished_first_load(&mut conn).await {
        eprintln!("note: {why}");
    }
    let last = match crate::pg::ledger::last_runs(&mut conn).await {
        Ok(l) => l,
        Err(e) => return super::fail(e),
    };
    let text = args.format == CheckFormat::Text;
    if text {
        println!(
            "{:24} {:>11} {:>10}  {:23} {:22} {:>8} {:>8}",
            "mapping", "source rows", "table rows", "last run", "outcome", "loaded", "rejected"
        );
    }
    let mut json = Vec::new();
    for m in &plan.mappings {
        let src = match &source {
            // Rows, not documents: an unwind mapping's rows are array elements.
            Some(s) => match crate::validate::source_rows(m, s).await {
                Ok(n) => n.to_string(),
                Err(e) => return super::fail(e),
            },
            None => "-".into(),
        };
        let stmt = format!("SELECT count(*) FROM {}", crate::pg::sql::quote(&m.table));
        let rows = match sqlx::query_scalar::<_, i64>(crate::pg::sql::sql(stmt)).fetch_one(&mut conn).await {
            Ok(n) => n.to_string(),
            Err(_) => "(no table)".into(),
        };
        let run = last.iter().find(|(name, _)| name == &m.name).map(|(_, l)| l);
        if !text {
            let number = |s: &str| s.parse::<u64>().ok();
            json.push(serde_json::json!({
                "mapping": m.name,
                "table": m.table,
                "source_rows": number(&src),
                "table_rows": number(&rows),
                "last_run": run.map(|l| serde_json::json!({
                    "finished_at": l.finished_at, "outcome": l.outcome, "loaded": l.loaded, "rejected": l.rejected,
                })),
            }));
            continue;
        }
        match run {
            Some(l) => println!(
                "{:24} {:>11} {:>10}  {:23} {:22} {:>8} {:>8}",
                m.name, src, rows, l.finished_at, l.outcome, l.loaded, l.rejected
            ),
            None => println!("{:24} {:>11} {:>10}  {:23}", m.name, src, rows, "never"),
        }
    }
    if !text {
        println!("{}", serde_json::to_string_pretty(&json).unwrap_or_default());
        return Ok(Outcome::Ok);
    }
    // Where `sync` starts from (the latest snapshot of a live server) and
    // where it stands.
    let start = crate::pg::sync_state::start_point(&mut conn).await.ok().flatten();
    let positions = crate::pg::sync_state::positions(&mut conn).await.unwrap_or_default();
    let waiting = crate::pg::sync_state::pending_count(&mut conn).await.unwrap_or(0);
    if let Some(s) = &start {
        println!(
            "sync start point: change stream positions of database {} recorded before run {} read it, {}",
            s.database, s.run_id, s.taken_at
        );
    }
    if !positions.is_empty() {
        println!("{:24} {:>9}  {:24} {:>8}  {:23}", "sync: collection", "applied", "last change", "lag (s)", "saved");
        for p in &positions {
            println!(
                "{:24} {:>9}  {:24} {:>8}  {:23}",
                p.collection,
                p.applied,
                p.event_time.as_deref().unwrap_or("-"),
                p.lag_seconds.map_or_else(|| "-".to_string(), |l| format!("{l:.1}")),
                p.updated_at
            );
        }
        println!("{waiting} change(s) waiting for the row they point at");
    }
    Ok(Outcome::Ok)
}

/// `status --history`: every run the target records.
async fn history(args: &StatusArgs) -> Finished {
    let mut conn = match target::connect(&args.target.target).await {
        Ok(c) => c,
        Err(e) => return super::fail(e),
    };
    let runs = match crate::pg::ledger::history(&mut conn).await {
        Ok(r) => r,
        Err(e) => return super::fail(e),
    };
    if args.format == CheckFormat::Json {
        println!("{}", serde_json::to_string_pretty(&runs).unwrap_or_default());
        return Ok(Outcome::Ok);
    }
    if runs.is_empty() {
        println!("no run recorded in this target");
        return Ok(Outcome::Ok);
    }
    println!(
        "{:>5}  {:23} {:23} {:22} {:>8} {:>9} {:>9} {:>7}  source",
        "run", "started", "finished", "outcome", "mappings", "loaded", "rejected", "resumed"
    );
    for r in runs {
        println!(
            "{:>5}  {:23} {:23} {:22} {:>8} {:>9} {:>9} {:>7}  {}",
            r.run_id,
            r.started_at,
            r.finished_at.as_deref().unwrap_or("-"),
            r.outcome,
            r.mappings,
            r.loaded,
            r.rejected,
            r.resumed,
            r.source.as_deref().unwrap_or("")
        );
    }
    Ok(Outcome::Ok)
}

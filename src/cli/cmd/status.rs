//! `finlit-map status`: per mapping, source and target counts and the last run.

use crate::cli::{Failure, Finished, Outcome, StatusArgs};
use crate::pg::target;
use crate::source::Source;

pub async fn run(args: StatusArgs) -> Finished {
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
    let last = match crate::pg::ledger::last_runs(&mut conn).await {
        Ok(l) => l,
        Err(e) => return super::fail(e),
    };
    println!(
        "{:24} {:>11} {:>10}  {:23} {:22} {:>8} {:>8}",
        "mapping", "source rows", "table rows", "last run", "outcome", "loaded", "rejected"
    );
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
        match last.iter().find(|(name, _)| name == &m.name) {
            Some((_, l)) => println!(
                "{:24} {:>11} {:>10}  {:23} {:22} {:>8} {:>8}",
                m.name, src, rows, l.finished_at, l.outcome, l.loaded, l.rejected
            ),
            None => println!("{:24} {:>11} {:>10}  {:23}", m.name, src, rows, "never"),
        }
    }
    Ok(Outcome::Ok)
}

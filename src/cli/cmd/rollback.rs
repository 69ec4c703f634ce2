//! `finlit-map rollback`: remove what migrations loaded, with dry run and confirmation.

use crate::cli::{CheckFormat, Failure, Finished, Outcome, RollbackArgs};
use crate::pg::target::{self, redact};
use crate::rollback::{counts, execute, plan_rollback};

pub async fn run(args: RollbackArgs) -> Finished {
    let Some(plan) = super::load_plan(&args.mappings) else { return Err(Failure::shown()) };
    let url = &args.target.target;
    let mut conn = match target::connect(url).await {
        Ok(c) => c,
        Err(e) => return super::fail(e),
    };
    if args.counts {
        return match counts(&plan, &mut conn).await {
            Ok(rows) if args.format == CheckFormat::Json => {
                let list: Vec<_> = rows
                    .iter()
                    .map(|r| serde_json::json!({ "table": r.table, "rows": r.total, "migrated": r.migrated, "other": r.total - r.migrated }))
                    .collect();
                println!("{}", serde_json::to_string_pretty(&list).unwrap_or_default());
                Ok(Outcome::Ok)
            }
            Ok(rows) => {
                println!("{:28} {:>10} {:>10} {:>10}", "table", "rows", "migrated", "other");
                for r in rows {
                    println!("{:28} {:>10} {:>10} {:>10}", r.table, r.total, r.migrated, r.total - r.migrated);
                }
                Ok(Outcome::Ok)
            }
            Err(e) => super::fail(e),
        };
    }
    let tables: Vec<String> = if args.all {
        let mut t: Vec<String> = plan.mappings.iter().map(|m| m.table.clone()).collect();
        t.dedup();
        t
    } else if args.collections.is_empty() {
        return super::fail("say what to roll back: --collection NAME (repeatable) or --all");
    } else {
        match crate::run::select(&plan, &args.collections) {
            Ok(ms) => ms.iter().map(|m| m.table.clone()).collect(),
            Err(e) => return super::selection_failed(e),
        }
    };
    if !args.dry_run && args.confirm.is_none() {
        return super::fail("nothing deleted: add --dry-run to see what would go, or --confirm to delete");
    }
    // Not while a run loads: its chunks would land after the rollback.
    if !args.dry_run && crate::pg::ledger::exists(&mut conn).await.unwrap_or(false) {
        match crate::pg::ledger::lock_target(&mut conn, false, &|_| {}).await {
            Ok(Ok(())) => {}
            Ok(Err(holder)) => {
                return super::fail(format!("nothing deleted: a finlit-map command is using this target: {holder}"));
            }
            Err(e) => return super::fail(format!("locking the target: {e}")),
        }
    }
    let steps = match plan_rollback(&plan, &tables, args.cascade, &mut conn).await {
        Ok(s) => s,
        Err(e) => return super::fail(e),
    };
    let total: u64 = steps.iter().map(|s| s.migrated).sum();
    let json = args.format == CheckFormat::Json;
    let verb = if args.dry_run { "would delete" } else { "will delete" };
    for s in steps.iter().filter(|_| !json) {
        println!("{:28} {verb} {:>8} migrated rows ({} other rows stay)", s.table, s.migrated, s.total - s.migrated);
    }
    let as_json = |done: bool| {
        let tables: Vec<_> = steps
            .iter()
            .map(|s| serde_json::json!({ "table": s.table, "migrated": s.migrated, "other": s.total - s.migrated }))
            .collect();
        serde_json::json!({ "dry_run": args.dry_run, "deleted": done, "rows": total, "tables": tables })
    };
    if args.dry_run && json {
        println!("{}", serde_json::to_string_pretty(&as_json(false)).unwrap_or_default());
        return Ok(Outcome::Ok);
    }
    if args.dry_run {
        println!("dry run: {total} rows in {} tables would be deleted; nothing was", steps.len());
        return Ok(Outcome::Ok);
    }
    if args.all {
        let db = super::database_name(url);
        let given = args.confirm.clone().unwrap_or_default();
        if given != db {
            if given.is_empty()
                && let Some(typed) = super::ask(&format!(
                    "This deletes {total} rows from {} tables of {}.\nType the database name to confirm: ",
                    steps.len(),
                    redact(url)
                ))
            {
                if typed != db {
                    return super::fail("not confirmed; nothing deleted");
                }
            } else {
                return super::fail(format!(
                    "--all needs the database name as a second confirmation: --confirm {db}; nothing deleted"
                ));
            }
        }
    }
    match execute(&plan, &steps, &mut conn).await {
        Ok(done) => {
            let n: u64 = done.iter().map(|(_, d)| d).sum();
            if json {
                println!("{}", serde_json::to_string_pretty(&as_json(true)).unwrap_or_default());
            } else {
                println!("rolled back: {n} rows deleted from {} tables", done.len());
            }
            Ok(Outcome::Ok)
        }
        Err(e) => super::fail(format!("{e}; nothing was deleted")),
    }
}

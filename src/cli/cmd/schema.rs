//! `finlit-map schema apply|status|revert`: schema/ as versioned migrations.

use crate::cli::{Finished, Outcome, SchemaAction, SchemaArgs};
use crate::pg::target::{self, redact};

pub async fn run(args: SchemaArgs) -> Finished {
    match args.action {
        SchemaAction::Apply(o) => {
            let url = &o.target.target;
            match target::ensure_database(url).await {
                Ok(true) => eprintln!("created database {}", redact(url)),
                Ok(false) => {}
                Err(e) => return super::fail(e),
            }
            let mut conn = match target::connect(url).await {
                Ok(c) => c,
                Err(e) => return super::fail(e),
            };
            match target::apply_schema(&mut conn, &o.schema).await {
                Ok(applied) if applied.is_empty() => println!("schema is up to date"),
                Ok(applied) => {
                    for m in applied {
                        println!("applied {} {}", m.version, m.description);
                    }
                }
                Err(e) => return super::fail(e),
            }
            Ok(Outcome::Ok)
        }
        SchemaAction::Status(o) => {
            let mut conn = match target::connect(&o.target.target).await {
                Ok(c) => c,
                Err(e) => return super::fail(e),
            };
            match target::migration_states(&mut conn, &o.schema).await {
                Ok(states) => {
                    for s in states {
                        let state = match (s.applied, s.changed) {
                            (true, false) => "applied",
                            (true, true) => "applied, but the file changed since",
                            (false, _) => "pending",
                        };
                        println!("{:>6}  {:32} {state}", s.version, s.description);
                    }
                    Ok(Outcome::Ok)
                }
                Err(e) => super::fail(e),
            }
        }
        SchemaAction::Revert(r) => {
            let url = &r.opts.target.target;
            let mut conn = match target::connect(url).await {
                Ok(c) => c,
                Err(e) => return super::fail(e),
            };
            let states = match target::migration_states(&mut conn, &r.opts.schema).await {
                Ok(s) => s,
                Err(e) => return super::fail(e),
            };
            let applied: Vec<i64> = states.iter().filter(|s| s.applied).map(|s| s.version).collect();
            let Some(&last) = applied.last() else {
                println!("nothing to revert: no migration is applied");
                return Ok(Outcome::Ok);
            };
            let to = r.to.unwrap_or_else(|| applied.iter().rev().nth(1).copied().unwrap_or(0));
            let going: Vec<String> = states
                .iter()
                .filter(|s| s.applied && s.version > to)
                .map(|s| format!("{} {}", s.version, s.description))
                .collect();
            if !r.confirm {
                let question =
                    format!("Revert {} (dropping their tables and data) in {}? [y/N] ", going.join(", "), redact(url));
                let ok = super::ask(&question).is_some_and(|a| a.eq_ignore_ascii_case("y"));
                if !ok {
                    return super::fail(format!("not reverted: add --confirm to revert {}", going.join(", ")));
                }
            }
            match target::revert_schema(&mut conn, &r.opts.schema, to).await {
                Ok(()) => {
                    println!("reverted to version {to} (was {last}): {}", going.join(", "));
                    Ok(Outcome::Ok)
                }
                Err(e) => super::fail(e),
            }
        }
    }
}

//! `finlit-map schema apply|status|revert`: schema/ as versioned migrations.

use std::path::Path;

use crate::cli::{CheckFormat, Failure, Finished, InitArgs, NewMigrationArgs, Outcome, SchemaAction, SchemaArgs};
use crate::pg::target::{self, redact};

pub async fn run(args: SchemaArgs) -> Finished {
    match args.action {
        SchemaAction::New(a) => new_migration(&a),
        SchemaAction::Apply(o) if o.dry_run => {
            warn_missing_downs(&o.dir.resolve());
            // The database may not exist yet: then every migration is pending.
            let states = match target::connect(&o.target.target).await {
                Ok(mut conn) => match target::migration_states(&mut conn, &o.dir.resolve()).await {
                    Ok(s) => s,
                    Err(e) => return super::fail(e),
                },
                Err(_) => match target::local_migrations(&o.dir.resolve()).await {
                    Ok(s) => s,
                    Err(e) => return super::fail(e),
                },
            };
            let pending: Vec<String> =
                states.iter().filter(|s| !s.applied).map(|s| format!("{} {}", s.version, s.description)).collect();
            if pending.is_empty() {
                println!("schema is up to date: nothing would be applied");
            } else {
                println!("would apply: {}", pending.join(", "));
            }
            Ok(Outcome::Ok)
        }
        SchemaAction::Apply(o) => {
            warn_missing_downs(&o.dir.resolve());
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
            let applied = target::apply_schema(&mut conn, &o.dir.resolve()).await;
            // The tool's own ledger too: a run later, in a maintenance
            // window, finds it ready instead of creating it.
            let applied = match applied {
                Ok(a) => crate::pg::ledger::ensure(&mut conn).await.map(|()| a).map_err(target::TargetError::from),
                Err(e) => Err(e),
            };
            match applied {
                Ok(applied) if o.format == CheckFormat::Json => {
                    let list: Vec<_> = applied
                        .iter()
                        .map(|m| serde_json::json!({ "version": m.version, "description": m.description }))
                        .collect();
                    println!("{}", serde_json::json!({ "applied": list }));
                }
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
            match target::migration_states(&mut conn, &o.dir.resolve()).await {
                Ok(states) => {
                    let mut json = Vec::new();
                    for s in states {
                        let state = match (s.applied, s.changed) {
                            (true, false) => "applied",
                            (true, true) => "applied, but the file changed since",
                            (false, _) => "pending",
                        };
                        if o.format == CheckFormat::Json {
                            json.push(serde_json::json!({
                                "version": s.version, "description": s.description,
                                "applied": s.applied, "changed": s.changed, "state": state,
                            }));
                        } else {
                            println!("{:>6}  {:32} {state}", s.version, s.description);
                        }
                    }
                    if o.format == CheckFormat::Json {
                        println!("{}", serde_json::to_string_pretty(&json).unwrap_or_default());
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
            let states = match target::migration_states(&mut conn, &r.opts.dir.resolve()).await {
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
            if r.opts.dry_run {
                println!("would revert to version {to} (now {last}): {}", going.join(", "));
                return Ok(Outcome::Ok);
            }
            if !r.confirm {
                let question =
                    format!("Revert {} (dropping their tables and data) in {}? [y/N] ", going.join(", "), redact(url));
                let ok = super::ask(&question).is_some_and(|a| a.eq_ignore_ascii_case("y"));
                if !ok {
                    return super::fail(format!("not reverted: add --confirm to revert {}", going.join(", ")));
                }
            }
            match target::revert_schema(&mut conn, &r.opts.dir.resolve(), to).await {
                Ok(()) => {
                    println!("reverted to version {to} (was {last}): {}", going.join(", "));
                    Ok(Outcome::Ok)
                }
                Err(e) => super::fail(e),
            }
        }
    }
}

/// `schema new NAME`: the next `NNNN_name.up.sql` / `.down.sql` pair.
fn new_migration(args: &NewMigrationArgs) -> Finished {
    let words = args.name.join(" ").to_lowercase();
    let name: String =
        words.split(|c: char| !c.is_ascii_alphanumeric()).filter(|w| !w.is_empty()).collect::<Vec<_>>().join("_");
    if name.is_empty() {
        return Err(Failure::usage("a migration name needs a letter or a digit"));
    }
    let dir = &args.dir.resolve();
    std::fs::create_dir_all(dir).map_err(|e| Failure::new(format!("cannot create {}: {e}", dir.display())))?;
    let stem = format!("{:04}_{name}", super::next_migration(dir)?);
    let up = dir.join(format!("{stem}.up.sql"));
    let down = dir.join(format!("{stem}.down.sql"));
    super::write_new(
        &up,
        &format!("-- {words}\n-- Applied by `finlit-map schema apply` (and by `run`), in version order.\n\n"),
    )?;
    super::write_new(&down, &format!("-- Undoes {stem}.up.sql (`finlit-map schema revert`).\n\n"))?;
    println!("created {}\ncreated {}", up.display(), down.display());
    Ok(Outcome::Ok)
}

/// The project file `init` writes: every setting, commented.
const PROJECT_TEMPLATE: &str = r#"# Settings shared by every mapping in this directory (finlit-map.toml).
# Every other *.toml here is a mapping: one collection into one table.

# UUIDv5 namespace of every id derived with `id = "$.path"`. Fix it before
# the first migration and never change it: it decides each row's UUID.
# namespace = "00000000-0000-0000-0000-000000000000"

# The schema migrations (NNNN_name.up.sql / .down.sql), relative to here.
schema = "../schema"

# BSON dates are UTC instants; DATE and TIMESTAMP columns get their
# wall-clock value in this zone. TIMESTAMPTZ columns keep the instant.
time_zone = "UTC"

# Inside json/jsonb columns: ObjectIds as "hex", "uuid" (the ids' UUIDs) or
# "extended"; dates as "iso", "millis" or "extended".
json = { object_ids = "hex", dates = "iso" }
"#;

const ENV_TEMPLATE: &str = "# Copy to .env: finlit-map reads it when flags and the environment are silent.\n\
MONGO_URI=mongodb://localhost:27017/yourdb\n\
DATABASE_URL=postgres://postgres@127.0.0.1:5432/yourdb\n";

/// `init [DIR]`: a project to start from.
pub fn init(args: &InitArgs) -> Finished {
    let dir = &args.dir;
    let mappings = dir.join("mappings");
    let schema = dir.join("schema");
    for d in [&mappings, &schema] {
        std::fs::create_dir_all(d).map_err(|e| Failure::new(format!("cannot create {}: {e}", d.display())))?;
    }
    let mut made = Vec::new();
    for (path, text) in [(mappings.join("finlit-map.toml"), PROJECT_TEMPLATE), (dir.join(".env.example"), ENV_TEMPLATE)]
    {
        if path.exists() {
            eprintln!("kept {} (it exists)", path.display());
            continue;
        }
        super::write_new(&path, text)?;
        made.push(path.display().to_string());
    }
    for m in &made {
        println!("created {m}");
    }
    println!(
        "next: `finlit-map schema new create tables` for the DDL, a mapping per collection in {}, then `finlit-map check`",
        mappings.display()
    );
    Ok(Outcome::Ok)
}

/// A migration without its `.down.sql` cannot be reverted: said, not fatal.
fn warn_missing_downs(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    let names: Vec<String> = entries.filter_map(|e| e.ok()?.file_name().into_string().ok()).collect();
    for up in names.iter().filter(|n| n.ends_with(".up.sql")) {
        let down = up.replace(".up.sql", ".down.sql");
        if !names.contains(&down) {
            eprintln!("warning: {} has no {down}: `schema revert` cannot undo it", dir.join(up).display());
        }
    }
}

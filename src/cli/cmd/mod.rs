//! One module per command. Each takes its parsed arguments and returns how
//! it ended ([`Finished`]); `main` alone prints a failure and picks the exit
//! code. None parses TOML or SQL itself (that is `compile`'s job).

pub mod check;
pub mod list;
pub mod plan;
pub mod rollback;
pub mod run;
pub mod scaffold;
pub mod schema;
pub mod status;
pub mod sync;
pub mod validate;

use crate::cli::{Failure, Finished};
use crate::compile::compile_dir;
use crate::plan::Plan;

/// Compiles the mapping directory, or prints why not.
pub fn load_plan(args: &crate::cli::MappingDirArgs) -> Option<Plan> {
    let compiled = compile_dir(&args.dir, args.schema.as_deref());
    if compiled.plan.is_none() {
        eprint!("{}", compiled.diagnostics.render_text(false));
        eprintln!("the mappings have errors: fix them first (`finlit-map check` shows them too)");
    }
    compiled.plan
}

/// A failure with its message (shown once, by `main`).
pub fn fail(e: impl std::fmt::Display) -> Finished {
    Err(Failure::new(e))
}

/// Writes a new file; never overwrites one (`init`, `schema new`, `scaffold`).
pub fn write_new(path: &std::path::Path, text: &str) -> Result<(), Failure> {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .map_err(|e| Failure::new(format!("cannot create {}: {e}", path.display())))?;
    f.write_all(text.as_bytes()).map_err(|e| Failure::new(format!("cannot write {}: {e}", path.display())))
}

/// The version the next migration in `dir` takes: one above the highest
/// `NNNN_` there (`schema new`, `scaffold`).
pub fn next_migration(dir: &std::path::Path) -> Result<u32, Failure> {
    let highest = std::fs::read_dir(dir)
        .map_err(|e| Failure::new(format!("cannot read {}: {e}", dir.display())))?
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().to_str().and_then(|n| n.split('_').next()?.parse::<u32>().ok()))
        .max()
        .unwrap_or(0);
    Ok(highest + 1)
}

/// A `--collection` that names nothing is bad usage (exit 2); anything
/// else the selection fails on is a failure.
pub fn selection_failed(e: crate::run::ExecError) -> Finished {
    match e {
        crate::run::ExecError::UnknownSelection { .. } => Err(Failure::usage(e)),
        e => fail(e),
    }
}

/// Asks on a terminal and reads one line; `None` without a terminal (a
/// script must say `--confirm` instead of being asked).
pub fn ask(question: &str) -> Option<String> {
    use std::io::{BufRead, IsTerminal, Write};
    if !std::io::stdin().is_terminal() {
        return None;
    }
    eprint!("{question}");
    let _ = std::io::stderr().flush();
    let mut line = String::new();
    let _ = std::io::stdin().lock().read_line(&mut line);
    Some(line.trim().to_string())
}

/// The database name of a connection string (what `--confirm` must repeat).
pub fn database_name(url: &str) -> String {
    let after_scheme = url.split_once("://").map_or(url, |(_, r)| r);
    let path = after_scheme.split_once('/').map_or("", |(_, p)| p);
    path.split(['?', '#']).next().unwrap_or("").to_string()
}

/// What a command that needs finished tables says when a first load
/// before keys has not finished (`None`: nothing is unfinished).
pub async fn unfinished_first_load(conn: &mut sqlx::PgConnection) -> Option<String> {
    let waiting = crate::pg::postdata::pending(conn).await.ok()?;
    let first = waiting.first()?;
    let tables: Vec<&str> = waiting.iter().map(|d| d.table.as_str()).collect();
    Some(format!(
        "run {} has not finished its first load: {} still lack their keys, indexes and constraints\n  \
         run `finlit-map run` again with its source to finish it (or `finlit-map rollback --all` to undo it)",
        first.run_id,
        tables.join(", ")
    ))
}

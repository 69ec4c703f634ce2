//! Integration tests driving the real binary, and what they share.

use std::path::{Path, PathBuf};

mod binary;
mod check;
mod db;
mod exact;
mod firstload;
mod keys;
mod language;
mod live;
mod manage;
mod mongo;
mod run;
mod sync;
mod workers;

/// The real binary, to run in `cwd`, with no connection strings from the
/// environment (a test says where its databases are).
pub fn binary(cwd: &Path) -> std::process::Command {
    let mut cmd = std::process::Command::new(assert_cmd::cargo::cargo_bin("finlit-map"));
    cmd.current_dir(cwd).env_remove("DATABASE_URL").env_remove("MONGO_URI");
    cmd
}

/// Runs the real binary in `cwd` with no connection strings from the
/// environment; returns (exit code, stdout, stderr).
pub fn finlit_map(cwd: &Path, args: &[&str]) -> (i32, String, String) {
    let out = binary(cwd).args(args).output().unwrap();
    let text = |b: &[u8]| String::from_utf8_lossy(b).to_string();
    (out.status.code().unwrap_or(-1), text(&out.stdout), text(&out.stderr))
}

/// A mapping project with its own schema (one migration) and mapping files.
pub fn project_with(dir: &Path, up: &str, down: &str, mappings: &[(&str, &str)]) -> PathBuf {
    std::fs::create_dir_all(dir.join("schema")).unwrap();
    std::fs::write(dir.join("schema/0001_schema.up.sql"), up).unwrap();
    std::fs::write(dir.join("schema/0001_schema.down.sql"), down).unwrap();
    let m = dir.join("mappings");
    std::fs::create_dir_all(&m).unwrap();
    for (name, text) in mappings {
        std::fs::write(m.join(format!("{name}.toml")), text).unwrap();
    }
    m
}

/// Runs the binary; returns exit code, JSON report (when asked) and stderr.
pub fn cli(cwd: &Path, args: &[&str]) -> (i32, serde_json::Value, String) {
    let (code, stdout, stderr) = finlit_map(cwd, args);
    (code, serde_json::from_str(&stdout).unwrap_or(serde_json::Value::Null), format!("{stdout}{stderr}"))
}

/// A source directory `src` beside the project holding one collection file.
pub fn source(work: &Path, file: &str, lines: &[&str]) -> PathBuf {
    let src = work.join("src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join(file), lines.join("\n")).unwrap();
    src
}

/// Every line of the rejects file a run wrote in `dir`.
pub fn read_rejects(dir: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(dir.join("rejects.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// The repository, where `mappings/` and `schema/` are.
pub fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The committed example dataset.
pub fn dump() -> PathBuf {
    root().join("examples/finlit-dump")
}

/// The FinLit tables.
pub const TABLES: [&str; 13] = [
    "learners",
    "knowledge_components",
    "learning_items",
    "item_kc_mappings",
    "learner_skill_states",
    "interactions",
    "achievements",
    "learner_achievements",
    "daily_progress",
    "question_templates",
    "cultural_contexts",
    "kc_prerequisites",
    "learning_item_variants",
];

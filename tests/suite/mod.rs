//! Integration tests driving the real binary, and what they share.

use std::path::{Path, PathBuf};

mod binary;
mod check;
mod db;
mod exact;
mod live;
mod manage;
mod mongo;
mod run;

/// Runs the real binary in `cwd` with no connection strings from the
/// environment; returns (exit code, stdout, stderr).
pub fn finlit_map(cwd: &Path, args: &[&str]) -> (i32, String, String) {
    let out = assert_cmd::Command::cargo_bin("finlit-map")
        .unwrap()
        .current_dir(cwd)
        .env_remove("DATABASE_URL")
        .env_remove("MONGO_URI")
        .args(args)
        .output()
        .unwrap();
    let text = |b: &[u8]| String::from_utf8_lossy(b).to_string();
    (out.status.code().unwrap_or(-1), text(&out.stdout), text(&out.stderr))
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

/// The twelve FinLit tables.
pub const TABLES: [&str; 12] = [
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
];

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

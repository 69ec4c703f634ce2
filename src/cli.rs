//! Command-line types (clap) and dispatch. Each command's work lives in
//! `cmd`; this module only parses, sets up logging and maps results to exit
//! codes.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::cmd;

/// Exit codes, documented in the README.
pub mod exit {
    /// Everything worked.
    pub const OK: u8 = 0;
    /// The command failed (a `check` error, a connection lost, a bad file).
    pub const FAILED: u8 = 1;
    /// Bad usage (clap's own code).
    pub const USAGE: u8 = 2;
    /// A run finished, but some documents were rejected (see the rejects file).
    pub const REJECTS: u8 = 3;
}

#[derive(Parser, Debug)]
#[command(
    name = "finlit-map",
    version,
    about = "Migrate MongoDB collections into PostgreSQL tables, driven by TOML mapping files",
    long_about = "Migrate MongoDB collections into PostgreSQL tables, driven by TOML mapping files.\n\n\
        Every collection's flattening, renaming, coercion and id derivation is declared in \
        mappings/*.toml and checked against the DDL in schema/. Start with `finlit-map check`, \
        look at `finlit-map plan`, then `finlit-map run`.",
    after_help = "Connection strings come from flags, then MONGO_URI / DATABASE_URL, then a .env file."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Lint every mapping against the language and the schema; report every problem.
    ///
    /// Works offline: no database is needed. Exit code 0 when there are no
    /// errors (warnings allowed), 1 otherwise.
    Check(CheckArgs),
    /// Show the compiled plan: load order in stages, and for every column its
    /// source path, coercion, SQL type and default.
    Plan(PlanArgs),
}

#[derive(Args, Debug, Clone)]
pub struct MappingDirArgs {
    /// Directory of mapping files (`*.toml`, plus an optional `finlit-map.toml`).
    #[arg(default_value = "mappings")]
    pub dir: PathBuf,
    /// Directory of schema migrations (`NNNN_name.up.sql`). Default: the
    /// project file's `schema`, else `../schema` beside DIR, else `./schema`.
    #[arg(long, value_name = "DIR")]
    pub schema: Option<PathBuf>,
}

#[derive(Args, Debug)]
pub struct CheckArgs {
    #[command(flatten)]
    pub mappings: MappingDirArgs,
    /// `text` draws each problem with its source; `json` is for editors and CI.
    #[arg(long, value_enum, default_value_t = CheckFormat::Text)]
    pub format: CheckFormat,
}

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckFormat {
    Text,
    Json,
}

#[derive(Args, Debug)]
pub struct PlanArgs {
    #[command(flatten)]
    pub mappings: MappingDirArgs,
    /// `dot` renders the reference graph for Graphviz (`| dot -Tsvg > plan.svg`).
    #[arg(long, value_enum, default_value_t = PlanFormat::Text)]
    pub format: PlanFormat,
}

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum PlanFormat {
    Text,
    Json,
    Dot,
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let code = match cli.command {
        Command::Check(a) => cmd::check::run(&a),
        Command::Plan(a) => cmd::plan::run(&a),
    };
    ExitCode::from(code)
}

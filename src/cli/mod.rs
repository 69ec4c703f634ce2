//! Command-line types (clap) and dispatch. Each command's work lives in
//! `cmd`; this module only parses, sets up logging and maps results to exit
//! codes.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand, ValueEnum};

pub mod cmd;

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
    /// Interrupted (Ctrl-C), as shells count it: 128 + SIGINT.
    pub const INTERRUPTED: u8 = 130;
}

#[derive(Parser, Debug)]
#[command(
    name = "finlit-map",
    version = concat!(env!("CARGO_PKG_VERSION"), " (commit ", env!("FINLIT_MAP_COMMIT"), ")"),
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
    #[command(flatten)]
    pub output: OutputArgs,
}

/// How much goes to stderr, and in color or not; for every command.
#[derive(Args, Debug, Clone, Copy)]
pub struct OutputArgs {
    /// Only warnings and errors on stderr (the log file keeps everything).
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    pub quiet: bool,
    /// More detail on stderr and in the log: -v the tool's debug events,
    /// -vv also its libraries' (sqlx, the MongoDB driver). RUST_LOG, when
    /// set, decides instead (an EnvFilter: `RUST_LOG=finlit_map=debug,sqlx=info`).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// Colors and marks (✅/❌): `auto` on a terminal unless NO_COLOR is set.
    #[arg(long, global = true, value_enum, default_value_t = ColorMode::Auto, value_name = "WHEN")]
    pub color: ColorMode,
}

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColorMode {
    Auto,
    Always,
    Never,
}

static COLOR: std::sync::OnceLock<ColorMode> = std::sync::OnceLock::new();

/// Set when the command was asked for `--format json`: a failure is then
/// also a JSON object on stdout, so a script reading stdout sees it.
static JSON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();

impl Command {
    fn wants_json(&self) -> bool {
        let json = |f: &CheckFormat| *f == CheckFormat::Json;
        match self {
            Command::Check(a) => json(&a.format),
            Command::Plan(a) => a.format == PlanFormat::Json,
            Command::Run(a) => json(&a.format),
            Command::Sync(a) => json(&a.format),
            Command::List(a) => json(&a.format),
            Command::Validate(a) => json(&a.format),
            Command::Status(a) => json(&a.format),
            Command::Rollback(a) => json(&a.format),
            Command::Schema(SchemaArgs { action: SchemaAction::Apply(o) | SchemaAction::Status(o) }) => json(&o.format),
            _ => false,
        }
    }
}

fn colored(is_terminal: bool) -> bool {
    match COLOR.get().copied().unwrap_or(ColorMode::Auto) {
        ColorMode::Always => true,
        ColorMode::Never => false,
        ColorMode::Auto => is_terminal && std::env::var_os("NO_COLOR").is_none(),
    }
}

/// Whether what goes to stderr is colored (`--color`, NO_COLOR, a terminal).
pub fn color_stderr() -> bool {
    use std::io::IsTerminal;
    colored(std::io::stderr().is_terminal())
}

/// Whether what goes to stdout is colored.
pub fn color_stdout() -> bool {
    use std::io::IsTerminal;
    colored(std::io::stdout().is_terminal())
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
    /// Migrate: read the source, transform every document through the plan, load PostgreSQL.
    ///
    /// Creates the target database if it is missing and applies pending
    /// migrations from schema/ (say --no-schema to skip). Re-running is safe:
    /// rows are matched by each mapping's key, unchanged rows are left alone,
    /// changed documents update their rows. Documents that cannot be mapped go
    /// to the rejects file and the run goes on.
    ///
    /// Exit codes: 0 all loaded, 3 finished with rejects, 1 failed, 130 interrupted.
    Run(RunArgs),
    /// Keep the target following a live MongoDB after a snapshot, through
    /// its change streams: the zero-downtime cut-over.
    ///
    /// Starts where the last `run` from the live server recorded the change
    /// streams before it read anything, then applies every insert, update,
    /// replace and delete through the same mappings: rows upserted by key,
    /// rows a document no longer produces deleted (children first). Each
    /// batch commits with the stream positions it reached, so Ctrl-C, kill -9
    /// or a lost connection lose nothing and repeat nothing: run it again.
    /// A row whose parent has not arrived waits (--retry-for) before it is
    /// rejected. With --until-caught-up it exits 0 once every change is
    /// applied: stop the application's writes, run that, `validate`, switch.
    ///
    /// Exit codes: 0 caught up or stopped, 3 with rejects, 1 failed, 130 interrupted.
    Sync(SyncArgs),
    /// List the source's collections, their document counts and the mappings that read them.
    List(ListArgs),
    /// Prove a migration: counts, sampled content column by column, and integrity.
    ///
    /// Counts compare what the source gives (after filters; array elements
    /// for unwind mappings) with the table and the last run's rejects.
    /// Sampled documents are transformed again through the same plan and
    /// compared with their rows, found by key. Integrity finds foreign keys
    /// that point at nothing and rows that no source document produces.
    /// Exit 0 when everything passes, 1 otherwise.
    Validate(ValidateArgs),
    /// Remove what migrations loaded, and only that: rows the application
    /// wrote into the same tables stay.
    ///
    /// Dependants go before what they reference, in one transaction.
    /// Nothing is deleted without --confirm; --dry-run shows what would go.
    /// --all asks for the database name as a second confirmation (typed on a
    /// terminal, or given as `--confirm DBNAME` without one).
    Rollback(RollbackArgs),
    /// For each mapping: source count, target count, and the last run's time and outcome.
    Status(StatusArgs),
    /// The schema in schema/ as versioned migrations: apply, status, revert.
    Schema(SchemaArgs),
    /// Draft mappings and a schema migration from sampled documents.
    ///
    /// Samples each collection (a reservoir over all of it), infers every
    /// field's types and shape, and writes a mapping per table into --out
    /// and a migration pair into the schema directory, with types that fit
    /// every sampled value; then checks the draft. Read it, then edit.
    Scaffold(ScaffoldArgs),
    /// Start a project: `mappings/finlit-map.toml` (commented), an empty
    /// `schema/`, and `.env.example`; nothing existing is overwritten.
    Init(InitArgs),
    /// Print the JSON Schema of mapping files (or, with --project, of the
    /// project file) for editors: `docs/mapping.schema.json` is this output.
    JsonSchema {
        /// The project file's schema (`finlit-map.toml`) instead.
        #[arg(long)]
        project: bool,
    },
    /// Print a shell completion script: `finlit-map completions bash > /etc/bash_completion.d/finlit-map`.
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the manual page (roff): `finlit-map man > finlit-map.1 && man ./finlit-map.1`.
    Man,
}

#[derive(Args, Debug, Clone)]
pub struct TargetArgs {
    /// PostgreSQL connection string.
    #[arg(long, env = "DATABASE_URL", value_name = "POSTGRES_URL", hide_env_values = true)]
    pub target: String,
}

#[derive(Args, Debug)]
pub struct ValidateArgs {
    #[command(flatten)]
    pub mappings: MappingDirArgs,
    #[command(flatten)]
    pub source: SourceArgs,
    #[command(flatten)]
    pub target: TargetArgs,
    /// Validate only these mappings (by mapping, collection or table name); repeatable.
    #[arg(long = "collection", value_name = "NAME")]
    pub collections: Vec<String>,
    /// Documents per mapping compared column by column.
    #[arg(long, default_value_t = 100, value_name = "N")]
    pub sample: usize,
    /// Only compare counts (skip content and integrity).
    #[arg(long)]
    pub count_only: bool,
    /// Validate the rest when some mappings' collections are not in the
    /// source (by default that is an error: 0 = 0 proves nothing).
    #[arg(long)]
    pub allow_missing: bool,
    #[arg(long, value_enum, default_value_t = CheckFormat::Text)]
    pub format: CheckFormat,
}

#[derive(Args, Debug)]
pub struct RollbackArgs {
    #[command(flatten)]
    pub mappings: MappingDirArgs,
    #[command(flatten)]
    pub target: TargetArgs,
    /// Roll back these mappings' tables (by mapping, collection or table name); repeatable.
    #[arg(long = "collection", value_name = "NAME", conflicts_with = "all")]
    pub collections: Vec<String>,
    /// Roll back every table the mappings load.
    #[arg(long)]
    pub all: bool,
    /// Show what would be deleted, table by table; delete nothing.
    #[arg(long, conflicts_with = "confirm")]
    pub dry_run: bool,
    /// Really delete. With --all, give the database name: `--confirm finlit`.
    #[arg(long, num_args = 0..=1, default_missing_value = "", value_name = "DBNAME")]
    pub confirm: Option<String>,
    /// Also roll back mapped tables whose migrated rows point at the rows removed.
    #[arg(long)]
    pub cascade: bool,
    /// Show every table's row count (migrated and other rows) and stop.
    #[arg(long)]
    pub counts: bool,
    /// `json` prints the counts, or what is (or would be) deleted, on stdout.
    #[arg(long, value_enum, default_value_t = CheckFormat::Text)]
    pub format: CheckFormat,
}

#[derive(Args, Debug)]
pub struct StatusArgs {
    #[command(flatten)]
    pub mappings: MappingDirArgs,
    #[command(flatten)]
    pub target: TargetArgs,
    /// Also count the source's documents (a path or a mongodb:// URI).
    #[arg(long, env = "MONGO_URI", value_name = "PATH_OR_URI", hide_env_values = true)]
    pub source: Option<String>,
    /// The database of a live source, when the URI does not name one.
    #[arg(long, value_name = "NAME")]
    pub source_db: Option<String>,
    /// List every past run instead (started, finished, outcome, counts,
    /// resumed mappings), the newest first, like `flask db history`.
    #[arg(long)]
    pub history: bool,
    /// `json` prints one object per mapping (or per run), on stdout.
    #[arg(long, value_enum, default_value_t = CheckFormat::Text)]
    pub format: CheckFormat,
}

#[derive(Args, Debug)]
pub struct SchemaArgs {
    #[command(subcommand)]
    pub action: SchemaAction,
}

#[derive(Subcommand, Debug)]
pub enum SchemaAction {
    /// Create the database if needed and apply pending migrations (like `flask db upgrade`),
    /// and create finlit-map's own ledger (schema `finlit_map`) for the runs to come.
    Apply(SchemaOpts),
    /// List migrations: applied, pending, or changed since applied (like `flask db current`).
    Status(SchemaOpts),
    /// Revert applied migrations down to a version (like `flask db downgrade`).
    Revert(RevertArgs),
    /// Add the next migration pair, `NNNN_NAME.up.sql` and `.down.sql`
    /// (like `sqlx migrate add -r`); offline.
    New(NewMigrationArgs),
}

#[derive(Args, Debug)]
pub struct NewMigrationArgs {
    /// What the migration does, in a few words (`add referral codes`).
    #[arg(value_name = "NAME", num_args = 1.., required = true)]
    pub name: Vec<String>,
    #[command(flatten)]
    pub dir: SchemaDirArgs,
}

/// Where the migrations are, found as every command finds them.
#[derive(Args, Debug, Clone)]
pub struct SchemaDirArgs {
    /// Directory of migrations (`NNNN_name.up.sql` and `.down.sql`).
    /// Default: the project file's `schema`, else `../schema` beside the
    /// mapping directory, else `./schema`.
    #[arg(long, value_name = "DIR")]
    pub schema: Option<PathBuf>,
    /// The mapping directory whose project file names the schema directory.
    #[arg(long, default_value = "mappings", value_name = "DIR")]
    pub mappings: PathBuf,
}

impl SchemaDirArgs {
    pub fn resolve(&self) -> PathBuf {
        match &self.schema {
            Some(s) => s.clone(),
            None => crate::compile::schema_dir_of(&self.mappings),
        }
    }
}

#[derive(Args, Debug)]
pub struct ScaffoldArgs {
    #[command(flatten)]
    pub source: SourceArgs,
    /// The collections to draft (repeatable).
    #[arg(long = "collection", value_name = "NAME", required_unless_present = "all")]
    pub collections: Vec<String>,
    /// Every collection that no mapping in --out reads yet.
    #[arg(long, conflicts_with = "collections")]
    pub all: bool,
    /// Documents sampled per collection (chosen evenly over all of it).
    #[arg(long, default_value_t = 1000, value_name = "N")]
    pub sample: usize,
    /// Where the mappings go.
    #[arg(long, default_value = "mappings", value_name = "DIR")]
    pub out: PathBuf,
    /// Where the migration goes. Default: `schema/` beside --out.
    #[arg(long, value_name = "DIR")]
    pub schema: Option<PathBuf>,
}

#[derive(Args, Debug)]
pub struct InitArgs {
    /// The project directory (created if missing).
    #[arg(default_value = ".")]
    pub dir: PathBuf,
}

#[derive(Args, Debug)]
pub struct SchemaOpts {
    #[command(flatten)]
    pub target: TargetArgs,
    #[command(flatten)]
    pub dir: SchemaDirArgs,
    /// `json` prints the migrations (or what was applied) on stdout.
    #[arg(long, value_enum, default_value_t = CheckFormat::Text)]
    pub format: CheckFormat,
    /// Say what `apply` or `revert` would do, and do nothing.
    #[arg(long)]
    pub dry_run: bool,
}

#[derive(Args, Debug)]
pub struct RevertArgs {
    #[command(flatten)]
    pub opts: SchemaOpts,
    /// Keep migrations up to this version; revert the later ones. Default: revert the last one.
    #[arg(long, value_name = "VERSION")]
    pub to: Option<i64>,
    /// Really revert (it drops tables and their data).
    #[arg(long)]
    pub confirm: bool,
}

#[derive(Args, Debug, Clone)]
pub struct SourceArgs {
    /// A live server (`mongodb://host/finlit`), a mongodump directory (*.bson)
    /// or a directory of extended-JSON files (*.json, *.jsonl); a collection is
    /// a file, named by its stem.
    #[arg(long, env = "MONGO_URI", value_name = "PATH_OR_URI", hide_env_values = true)]
    pub source: String,
    /// The database of a live source, when the URI does not name one.
    #[arg(long, value_name = "NAME")]
    pub source_db: Option<String>,
}

#[derive(Args, Debug)]
pub struct RunArgs {
    #[command(flatten)]
    pub mappings: MappingDirArgs,
    #[command(flatten)]
    pub source: SourceArgs,
    /// PostgreSQL connection string. Not needed with --dry-run.
    #[arg(long, env = "DATABASE_URL", value_name = "POSTGRES_URL", hide_env_values = true)]
    pub target: Option<String>,
    /// Load only these mappings (by mapping, collection or table name); repeatable.
    #[arg(long = "collection", value_name = "NAME")]
    pub collections: Vec<String>,
    /// Read and transform everything and check every value against the
    /// schema's types, without touching any database.
    #[arg(long)]
    pub dry_run: bool,
    /// Rows per COPY chunk; each chunk is one transaction. A reader's first
    /// chunk holds an eighth of it, so loading starts sooner.
    #[arg(long, default_value_t = 10000, value_name = "N")]
    pub batch_size: usize,
    /// Where rejected documents go (JSON lines), created only when there are some.
    #[arg(long, default_value = "rejects.jsonl", value_name = "FILE")]
    pub rejects: PathBuf,
    /// Stop (exit 1) once more than N documents have been rejected.
    #[arg(long, value_name = "N")]
    pub max_rejects: Option<u64>,
    /// Log file, appended to.
    #[arg(long, default_value = "migration.log", value_name = "FILE")]
    pub log_file: PathBuf,
    /// Do not create the database or apply schema/ migrations.
    #[arg(long)]
    pub no_schema: bool,
    /// Start over instead of continuing an interrupted run from its checkpoints.
    #[arg(long)]
    pub restart: bool,
    /// When another run (or rollback) holds the target, wait for it to
    /// finish instead of exiting 1.
    #[arg(long)]
    pub wait: bool,
    /// Workers of this process, each on its own connection: they load
    /// mappings of a stage, ranges of one large collection and tables'
    /// builds at once. Default: the number of CPU cores.
    #[arg(long, value_name = "N")]
    pub jobs: Option<usize>,
    /// Documents per range when a large collection is read by several
    /// workers at once (on a first load before the table's keys).
    #[arg(long, default_value_t = crate::run::DEFAULT_RANGE_SIZE, value_name = "N")]
    pub range_size: u64,
    /// When to read a collection in ranges: `auto` cuts files, and a live
    /// collection whose server finds an `_id` range by its index (its
    /// `explain` says so); `always` cuts a live collection anyway; `never`
    /// reads every collection with one reader.
    #[arg(long, value_enum, default_value_t = crate::source::Split::Auto, value_name = "WHEN")]
    pub ranges: crate::source::Split,
    /// Load empty tables before their keys, indexes and constraints, then
    /// build them (rows they refuse are rejected as a load into the indexed
    /// table would), also in a database this run did not create. By default
    /// only a database the run created, or whose whole schema it applied.
    #[arg(long, conflicts_with = "no_fast_first_load")]
    pub fast_first_load: bool,
    /// Always load into tables with their keys, indexes and constraints in place.
    #[arg(long)]
    pub no_fast_first_load: bool,
    /// Share the migration with other `run --worker` processes, on this
    /// machine or others: the first plans it, every one claims tasks from
    /// the target's claims table until all are done, and each prints the
    /// whole run's summary. Start any number, with the same arguments; one
    /// that arrives after the others finished says so and loads nothing.
    #[arg(long, conflicts_with_all = ["dry_run", "prune", "restart"])]
    pub worker: bool,
    /// Seconds a worker's claim on a task lasts without news from it (it
    /// renews it with every chunk and from a heartbeat); after that, the
    /// task is another worker's to continue from its last checkpoint.
    #[arg(long, default_value_t = 30.0, value_name = "SECONDS")]
    pub lease: f64,
    /// Load what the source has when some mappings' collections are not in
    /// it (by default a missing collection is an error, before anything loads).
    #[arg(long)]
    pub allow_missing: bool,
    /// Exit 1 when a mapped path matched no document (most likely a typo
    /// that loads NULLs); without it, that is a warning in the summary.
    #[arg(long)]
    pub strict: bool,
    /// After loading, delete the rows earlier runs loaded that the source no
    /// longer produces (documents deleted, array elements removed), so a
    /// re-run from a newer dump converges to it. Rows the application wrote stay.
    #[arg(long, conflicts_with = "dry_run")]
    pub prune: bool,
    /// `json` prints the summary as JSON on stdout.
    #[arg(long, value_enum, default_value_t = CheckFormat::Text)]
    pub format: CheckFormat,
}

#[derive(Args, Debug)]
pub struct SyncArgs {
    #[command(flatten)]
    pub mappings: MappingDirArgs,
    /// The live server the snapshot was taken from (`mongodb://host/finlit`).
    #[arg(long, env = "MONGO_URI", value_name = "URI", hide_env_values = true)]
    pub source: String,
    /// The database of the source, when the URI does not name one.
    #[arg(long, value_name = "NAME")]
    pub source_db: Option<String>,
    /// PostgreSQL connection string.
    #[arg(long, env = "DATABASE_URL", value_name = "POSTGRES_URL", hide_env_values = true)]
    pub target: Option<String>,
    /// Exit 0 once every change the source has is applied (the lag is
    /// zero), instead of following it until Ctrl-C.
    #[arg(long)]
    pub until_caught_up: bool,
    /// Most change events per batch; each batch is one transaction.
    #[arg(long, default_value_t = 1000, value_name = "N")]
    pub batch_size: usize,
    /// Seconds a change may wait for the row it points at (its parent may
    /// arrive in a later event) before it is rejected.
    #[arg(long, default_value_t = 60, value_name = "SECONDS")]
    pub retry_for: u64,
    /// Where rejected changes go (JSON lines, appended), with their
    /// operation and cluster time.
    #[arg(long, default_value = "rejects.jsonl", value_name = "FILE")]
    pub rejects: PathBuf,
    /// Log file, appended to.
    #[arg(long, default_value = "migration.log", value_name = "FILE")]
    pub log_file: PathBuf,
    /// When another command holds the target, wait for it instead of exiting 1.
    #[arg(long)]
    pub wait: bool,
    /// `json` prints the summary as JSON on stdout.
    #[arg(long, value_enum, default_value_t = CheckFormat::Text)]
    pub format: CheckFormat,
}

#[derive(Args, Debug)]
pub struct ListArgs {
    #[command(flatten)]
    pub mappings: MappingDirArgs,
    #[command(flatten)]
    pub source: SourceArgs,
    /// `json` prints the collections and the mappings reading each, on stdout.
    #[arg(long, value_enum, default_value_t = CheckFormat::Text)]
    pub format: CheckFormat,
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
    /// Also read this source (a live server, a mongodump or extended-JSON
    /// directory): mapped paths that no document has are warnings (errors
    /// with --strict), and fields no mapping reads are listed.
    #[arg(long, value_name = "PATH_OR_URI")]
    pub source: Option<String>,
    /// The database of a live source, when the URI does not name one.
    #[arg(long, value_name = "NAME", requires = "source")]
    pub source_db: Option<String>,
    /// With --source: a mapped path that matches no document is an error.
    #[arg(long, requires = "source")]
    pub strict: bool,
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
    // Flags first, then the environment, then a .env file.
    let _ = dotenvy::dotenv();
    let cli = Cli::parse();
    let _ = COLOR.set(cli.output.color);
    let _ = JSON.set(cli.command.wants_json());
    // Every command logs to stderr; a run also appends to its log file.
    // Progress bars own stderr while they draw: then only warnings.
    let (log_file, bars) = match &cli.command {
        Command::Run(a) => {
            use std::io::IsTerminal;
            (Some(a.log_file.clone()), std::io::stderr().is_terminal() && a.format == CheckFormat::Text)
        }
        Command::Sync(a) => {
            use std::io::IsTerminal;
            (Some(a.log_file.clone()), std::io::stderr().is_terminal() && a.format == CheckFormat::Text)
        }
        _ => (None, false),
    };
    if let Err(e) = init_logging(log_file.as_deref(), &cli.output, bars) {
        return ExitCode::from(exit_code(Err(Failure::new(e))));
    }
    let finished = match cli.command {
        Command::Check(a) if a.source.is_some() => with_runtime(cmd::check::with_source(a)),
        Command::Check(a) => cmd::check::run(&a),
        Command::Plan(a) => cmd::plan::run(&a),
        Command::Run(a) => with_runtime(cmd::run::run(a)),
        Command::Sync(a) => with_runtime(cmd::sync::run(a)),
        Command::List(a) => with_runtime(cmd::list::run(a)),
        Command::Validate(a) => with_runtime(cmd::validate::run(a)),
        Command::Rollback(a) => with_runtime(cmd::rollback::run(a)),
        Command::Status(a) => with_runtime(cmd::status::run(a)),
        Command::Schema(a) => with_runtime(cmd::schema::run(a)),
        Command::Init(a) => cmd::schema::init(&a),
        Command::Scaffold(a) => with_runtime(cmd::scaffold::run(a)),
        Command::Completions { shell } => {
            let mut cmd = <Cli as clap::CommandFactory>::command();
            clap_complete::generate(shell, &mut cmd, "finlit-map", &mut std::io::stdout());
            Ok(Outcome::Ok)
        }
        Command::JsonSchema { project } => {
            let s = if project {
                crate::compile::json_schema::project_schema()
            } else {
                crate::compile::json_schema::mapping_schema()
            };
            println!("{}", serde_json::to_string_pretty(&s).unwrap_or_default());
            Ok(Outcome::Ok)
        }
        Command::Man => {
            let man = clap_mangen::Man::new(<Cli as clap::CommandFactory>::command());
            man.render(&mut std::io::stdout()).map(|()| Outcome::Ok).map_err(Failure::new)
        }
    };
    ExitCode::from(exit_code(finished))
}

/// How a command ended, when it did its work.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Everything worked.
    Ok,
    /// A run finished with rejects.
    Rejects,
    /// Ctrl-C; committed work stays.
    Interrupted,
}

/// Why a command failed. `None`: the command already showed why (the
/// diagnostics of `check`, a failed validation report). `usage`: the
/// command line asked for something that does not exist (exit 2, as clap's
/// own usage errors).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure(pub Option<String>, pub bool);

impl Failure {
    pub fn new(e: impl std::fmt::Display) -> Failure {
        Failure(Some(e.to_string()), false)
    }

    /// A failure the command has already reported in its own output.
    pub fn shown() -> Failure {
        Failure(None, false)
    }

    /// Bad usage: a name on the command line that nothing has.
    pub fn usage(e: impl std::fmt::Display) -> Failure {
        Failure(Some(e.to_string()), true)
    }
}

/// What every command returns; `main` alone turns it into output and an exit code.
pub type Finished = Result<Outcome, Failure>;

/// The one mapping from how a command ended to its exit code (and the
/// `error:` line of a failure).
pub fn exit_code(f: Finished) -> u8 {
    match f {
        Ok(Outcome::Ok) => exit::OK,
        Ok(Outcome::Rejects) => exit::REJECTS,
        Ok(Outcome::Interrupted) => exit::INTERRUPTED,
        Err(Failure(message, usage)) => {
            if let Some(m) = &message {
                eprintln!("error: {m}");
                // The log keeps why a run stopped, too.
                tracing::error!(target: LOG_FILE_ONLY, "{m}");
            }
            // A failure the command reported itself (its JSON report says
            // it) needs no second document on stdout.
            if let Some(error) = message.as_deref().filter(|_| JSON.get().copied().unwrap_or(false)) {
                let code = if usage { exit::USAGE } else { exit::FAILED };
                println!("{}", serde_json::json!({ "error": error, "exit_code": code }));
            }
            if usage { exit::USAGE } else { exit::FAILED }
        }
    }
}

fn with_runtime(f: impl std::future::Future<Output = Finished>) -> Finished {
    match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt.block_on(f),
        Err(e) => Err(Failure::new(format!("cannot start the async runtime: {e}"))),
    }
}

/// The tracing target of events that go to the log file but not to stderr.
pub const LOG_FILE_ONLY: &str = "finlit_map::log_file_only";

/// Logs go to stderr and, when given, appended to a file.
///
/// One global filter (`RUST_LOG` when set; else the tool's own events at
/// INFO, or DEBUG/TRACE with -v/-vv, and libraries' from WARN, INFO with
/// -vv) and writers that pick their events: per-layer filters lose an event
/// whenever a library asked `enabled` for one of its own on the same
/// thread (most "mapping finished" lines of a load never reached the log).
pub fn init_logging(
    log_file: Option<&std::path::Path>,
    output: &OutputArgs,
    quiet_for_bars: bool,
) -> Result<(), String> {
    use tracing::Level;
    use tracing_subscriber::filter::{EnvFilter, LevelFilter, Targets};
    use tracing_subscriber::fmt::writer::MakeWriterExt;
    use tracing_subscriber::prelude::*;
    let (ours, theirs) = match output.verbose {
        0 => (LevelFilter::INFO, LevelFilter::WARN),
        1 => (LevelFilter::DEBUG, LevelFilter::WARN),
        _ => (LevelFilter::TRACE, LevelFilter::INFO),
    };
    let global: Box<dyn tracing_subscriber::Layer<_> + Send + Sync> = match std::env::var("RUST_LOG") {
        Ok(spec) if !spec.trim().is_empty() => {
            Box::new(EnvFilter::try_new(&spec).map_err(|e| format!("RUST_LOG={spec}: {e}"))?)
        }
        _ => Box::new(Targets::new().with_target("finlit_map", ours).with_default(theirs)),
    };
    // Stderr: not the events meant for the log file only (errors already
    // printed as one plain line); only warnings when quiet or under bars.
    let quiet = output.quiet || quiet_for_bars;
    let to_stderr = std::io::stderr.with_filter(move |meta: &tracing::Metadata<'_>| {
        meta.target() != LOG_FILE_ONLY && (!quiet || *meta.level() <= Level::WARN)
    });
    let stderr = tracing_subscriber::fmt::layer()
        .with_writer(to_stderr)
        .with_ansi(color_stderr())
        .with_target(output.verbose > 0)
        .without_time();
    let file = match log_file {
        Some(p) => {
            let f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(p)
                .map_err(|e| format!("cannot open log file {}: {e}", p.display()))?;
            Some(
                tracing_subscriber::fmt::layer()
                    .with_writer(std::sync::Mutex::new(f))
                    .with_ansi(false)
                    .with_target(output.verbose > 0),
            )
        }
        None => None,
    };
    let _ = tracing_subscriber::registry().with(global).with(stderr).with(file).try_init();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(dir: &str) -> Finished {
        let root = env!("CARGO_MANIFEST_DIR");
        let fixtures = format!("{root}/tests/fixtures/check");
        let args = ["finlit-map", "check", &format!("{fixtures}/{dir}"), "--schema", &format!("{fixtures}/schema")];
        match Cli::try_parse_from(args).map(|c| c.command) {
            Ok(Command::Check(a)) => cmd::check::run(&a),
            other => panic!("{other:?}"),
        }
    }

    /// Commands report how they ended as values, testable in-process; the
    /// exit code is decided in one place.
    #[test]
    fn outcomes_and_exit_codes() {
        assert_eq!(check("ok"), Ok(Outcome::Ok));
        assert_eq!(check("type-mismatch"), Err(Failure::shown()));
        assert_eq!(exit_code(Ok(Outcome::Ok)), exit::OK);
        assert_eq!(exit_code(Ok(Outcome::Rejects)), exit::REJECTS);
        assert_eq!(exit_code(Ok(Outcome::Interrupted)), 130);
        assert_eq!(exit_code(Err(Failure::new("x"))), exit::FAILED);
    }
}

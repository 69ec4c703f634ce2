//! finlit-map: a declarative MongoDB → PostgreSQL migration engine.
//!
//! # Layout
//!
//! Folders follow the pipeline: mapping files are read ([`lang`]) and checked
//! against the DDL ([`schema`]) into a plan ([`compile`] → [`plan`]); a run
//! reads documents ([`source`]), maps them to rows ([`map`], on [`value`]),
//! and loads them ([`run`] → [`pg`]); [`validate`] and [`rollback`] work
//! from the same plan.
//!
//! - [`cli`]: command-line types (clap), dispatch, exit codes.
//!   - [`cli::cmd`]: one module per command.
//!   - [`cli::cmd::check`], [`cli::cmd::list`], [`cli::cmd::plan`], [`cli::cmd::rollback`],
//!     [`cli::cmd::run`], [`cli::cmd::scaffold`], [`cli::cmd::schema`], [`cli::cmd::status`],
//!     [`cli::cmd::sync`], [`cli::cmd::validate`].
//! - [`lang`]: the mapping language as written.
//!   - [`lang::spec`]: mapping files (TOML with spans); shape checks only.
//!   - [`lang::syntax`]: the syntax tree of mapping files, every value with its span.
//!   - [`lang::expr`]: value expressions behind one trait, one file each:
//!     [`lang::expr::from`], [`lang::expr::id`], [`lang::expr::coalesce`], [`lang::expr::format`],
//!     [`lang::expr::regex`], [`lang::expr::position`], [`lang::expr::key`], [`lang::expr::default`].
//!   - [`lang::transform`]: the closed set of value transforms, by family:
//!     [`lang::transform::text`], [`lang::transform::date`], [`lang::transform::number`],
//!     and the array shaping options [`lang::transform::shape`].
//!   - [`lang::diag`]: diagnostics and their rendering.
//! - [`scaffold`]: draft mappings and DDL from sampled documents.
//! - [`schema`]: the target schema read from `schema/*.sql` with sqlparser.
//! - [`compile`]: specs + schema → [`plan::Plan`], every diagnostic collected.
//!   - [`compile::mapping`]: one mapping file against the schema.
//!   - [`compile::unwind`]: a mapping's `unwind`: arrays, entries, shapes, nested levels.
//!   - [`compile::options`]: a column's options beside its value, checked against its type.
//!   - [`compile::references`]: a column's reference, to an id or a natural key.
//!   - [`compile::graph`]: passes over all mappings: overlaps, load order.
//!   - [`compile::json_schema`]: the JSON Schema of mapping and project files, for editors.
//! - [`plan`]: the compiled plan and its text/JSON/Graphviz renderings.
//! - [`value`]: pure BSON → typed PostgreSQL values.
//!   - [`value::path`]: compiled source paths, their one evaluator.
//!   - [`value::fields`]: the one-pass field extractor for plain paths.
//!   - [`value::coerce`]: one BSON value → one PostgreSQL type, exact or refused.
//!   - [`value::ids`]: deterministic UUIDv5 ids.
//!   - [`value::json`]: BSON as JSON text in a declared form.
//!   - [`value::datetime`]: the one ISO-8601 date-time parser.
//!   - [`value::cell`]: typed values and their text encodings.
//!   - [`value::types`]: one file per PostgreSQL type family (accepted values, binary COPY, OID):
//!     [`value::types::text`], [`value::types::integer`], [`value::types::numeric`],
//!     [`value::types::float`], [`value::types::boolean`], [`value::types::temporal`],
//!     [`value::types::uuid`], [`value::types::json`], [`value::types::bytea`], [`value::types::geo`],
//!     [`value::types::array`].
//!   - [`value::text`]: shared text of values (kinds, decimals, dates); a leaf.
//!   - [`value::equal`]: exact equality of BSON values, numbers across types.
//! - [`map`]: one document through one mapping: filter, unwind, rows.
//!   - [`map::filter`]: what a filter condition means for a value.
//!   - [`map::keep`]: which row of a repeated key is kept (`on_duplicate`).
//!   - [`map::unwind`]: shaped and nested unwinds, and where a row stands in them.
//!   - [`map::value`]: one column's value for one row, from its expression to its cell.
//! - [`source`]: where documents come from.
//!   - [`source::files`]: mongodump and extended-JSON files.
//!   - [`source::walk`]: the length-only pass over a BSON file, in two halves at once.
//!   - [`source::extjson`]: extended JSON → BSON, exactly.
//!   - [`source::strict`]: what a readable BSON document is.
//!   - [`source::mongo`]: a live MongoDB server.
//!   - [`source::changes`]: its change streams, per collection, from a token.
//! - [`pg`]: everything that speaks SQL to the target.
//!   - [`pg::target`]: connections, schema migrations, drift checks.
//!   - [`pg::sink`]: chunks into tables by COPY.
//!   - [`pg::postdata`]: a first load before a table's keys, and building them after, exactly.
//!   - [`pg::ledger`]: the tool's own records (`finlit_map` schema).
//!   - [`pg::claims`]: the claims table: a run's tasks, leased to workers.
//!   - [`pg::sync_state`]: `sync`'s start point, positions and waiting changes.
//!   - [`pg::keys`]: a row key's one text.
//!   - [`pg::sql`]: quoting, literals, catalog types.
//! - [`run`]: orchestration: workers, the loader, checkpoints.
//!   - [`run::tasks`]: a run as tasks (ranges to load, tables to build) and the board they are claimed from.
//!   - [`run::start`]: a new run's plan (which tables load before their keys, which collections in ranges), or an interrupted one's.
//!   - [`run::build`]: a table's keys, indexes and constraints after its load, refused rows rejected with their documents.
//!   - [`run::coverage`]: mapped paths no document has, fields no mapping reads.
//!   - [`run::reader`]: the reading thread: documents → COPY chunks.
//!   - [`run::rejects`]: the rejects file.
//!   - [`run::report`]: what a run did, and its rendering.
//! - [`validate`]: proves a migration through the same plan.
//!   - [`validate::prune`]: rows the source no longer produces, deleted (`run --prune`).
//! - [`sync`]: follows the live source's change streams after a snapshot.
//!   - [`sync::apply`]: one batch of changes through the plan, in one transaction.
//! - [`rollback`]: removes what migrations loaded, and only that.

pub mod cli;
pub mod compile;
pub mod lang;
pub mod map;
pub mod pg;
pub mod plan;
pub mod rollback;
pub mod run;
pub mod scaffold;
pub mod schema;
pub mod source;
pub mod sync;
pub mod validate;
pub mod value;

#[cfg(test)]
mod tests {
    use std::path::Path;

    /// Every module under `src/`, as a path (`value::cell`).
    fn modules(dir: &Path, prefix: &str, out: &mut Vec<String>) {
        let mut entries: Vec<_> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).collect();
        entries.sort();
        for p in entries {
            let name = p.file_stem().unwrap().to_string_lossy().to_string();
            let path = if prefix.is_empty() { name.clone() } else { format!("{prefix}::{name}") };
            if p.is_dir() {
                out.push(path.clone());
                modules(&p, &path, out);
            } else if p.extension().is_some_and(|e| e == "rs") && !["mod", "lib", "main"].contains(&name.as_str()) {
                out.push(path);
            }
        }
    }

    /// The `# Layout` above names every module, and only modules that exist.
    #[test]
    fn the_layout_lists_every_module() {
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut found = Vec::new();
        modules(&src, "", &mut found);
        let lib = std::fs::read_to_string(src.join("lib.rs")).unwrap();
        let layout = &lib[lib.find("# Layout").unwrap()..lib.find("pub mod").unwrap()];
        let mut named: Vec<String> =
            layout.split("[`").skip(1).filter_map(|s| s.split_once("`]")).map(|(m, _)| m.to_string()).collect();
        named.retain(|m| m != "plan::Plan");
        named.sort();
        named.dedup();
        found.sort();
        assert_eq!(named, found, "src/lib.rs `# Layout` and the modules under src/ differ");
    }
}

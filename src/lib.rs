//! finlit-map: a declarative MongoDB → PostgreSQL migration engine.
//!
//! # Layout
//!
//! - [`spec`]: mapping files as written (TOML with spans); shape checks only.
//! - [`schema`]: the target schema read from `schema/*.sql` with sqlparser.
//! - [`compile`]: specs + schema → [`plan::Plan`], every diagnostic collected.
//! - [`plan`]: the compiled plan and its text/JSON/Graphviz renderings.
//! - [`path`]: compiled source paths (fast dotted walk or JSONPath).
//! - [`coerce`]: one BSON value → one PostgreSQL type, exact or refused.
//! - [`transform`]: the closed set of value transforms.
//! - [`datetime`]: the one ISO-8601 date-time parser (`$date` strings and string values).
//! - [`cell`]: typed values and their COPY text encoding.
//! - [`json`]: BSON as JSON text in a declared form.
//! - [`ids`]: deterministic UUIDv5 ids.
//! - [`diag`]: diagnostics and their rendering.
//! - [`cli`], [`cmd`]: the command line.

pub mod cell;
pub mod cli;
pub mod cmd;
pub mod coerce;
pub mod compile;
pub mod datetime;
pub mod diag;
pub mod exec;
pub mod fields;
pub mod ids;
pub mod json;
pub mod ledger;
pub mod path;
pub mod plan;
pub mod rejects;
pub mod report;
pub mod rollback;
pub mod row;
pub mod schema;
pub mod sink;
pub mod source;
pub mod spec;
pub mod target;
pub mod transform;
pub mod validate;

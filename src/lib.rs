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

pub mod cli;
pub mod compile;
pub mod lang;
pub mod map;
pub mod pg;
pub mod plan;
pub mod rollback;
pub mod run;
pub mod schema;
pub mod source;
pub mod validate;
pub mod value;

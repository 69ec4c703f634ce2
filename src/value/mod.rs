//! Pure values: one BSON value → one typed PostgreSQL value, exact or
//! refused. Source paths and their one evaluator ([`path`], with the
//! one-pass field extractor [`fields`]), coercion ([`coerce`], dispatching to one file per column type in
//! [`types`], which also owns each type's binary COPY encoding),
//! deterministic ids ([`ids`]), JSON forms ([`json`]), the ISO-8601 parser
//! ([`datetime`]), the typed cell with its text encoding ([`cell`]) and
//! the shared text of values ([`text`], a leaf).
//!
//! Knows BSON and PostgreSQL's value formats; nothing of mappings as
//! written, of connections, files or servers.

pub mod cell;
pub mod coerce;
pub mod datetime;
pub mod equal;
pub mod fields;
pub mod ids;
pub mod json;
pub mod path;
pub mod text;
pub mod types;

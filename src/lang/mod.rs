//! The mapping language as written: TOML mapping files with their spans
//! ([`spec`]), the closed set of value transforms ([`transform`]), and the
//! diagnostics every stage reports in ([`diag`]).
//!
//! Knows TOML and the language's names; nothing of BSON values, SQL or
//! PostgreSQL connections.

pub mod diag;
pub mod spec;
pub mod transform;

//! Everything that speaks SQL to the target: the connection and its
//! schema migrations ([`target`]), loading chunks by COPY ([`sink`]), and
//! the tool's own records in the `finlit_map` schema ([`ledger`]).
//!
//! Knows sqlx and PostgreSQL; nothing of TOML, BSON sources or the
//! command line.

pub mod ledger;
pub mod sink;
pub mod target;

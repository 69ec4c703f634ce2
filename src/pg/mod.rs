//! Everything that speaks SQL to the target: the connection and its
//! schema migrations ([`target`]), loading chunks by COPY ([`sink`]), the
//! tool's own records in the `finlit_map` schema ([`ledger`], and `sync`'s
//! in [`sync_state`]), a row key's one text ([`keys`]) and the SQL text
//! toolbox ([`sql`]).
//!
//! Knows sqlx and PostgreSQL; nothing of TOML, BSON sources or the
//! command line.

pub mod claims;
pub mod keys;
pub mod ledger;
pub mod postdata;
pub mod sink;
pub mod sql;
pub mod sync_state;
pub mod target;

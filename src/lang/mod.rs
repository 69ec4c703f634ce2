//! The mapping language: TOML mapping files read ([`spec`]) into a syntax
//! tree with spans ([`syntax`]),
//! the value expressions a column is filled by ([`expr`], one file each),
//! the closed set of value transforms ([`transform`]), and the diagnostics
//! every stage reports in ([`diag`]).
//!
//! Knows TOML, the language's names and what each expression and transform
//! does to a value; nothing of files, sources, SQL or connections.

pub mod diag;
pub mod expr;
pub mod spec;
pub mod syntax;
pub mod transform;

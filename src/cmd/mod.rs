//! One module per command. Each takes its parsed arguments and returns an
//! exit code; none parses TOML or SQL itself (that is `compile`'s job).

pub mod check;
pub mod plan;

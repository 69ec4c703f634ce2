//! The single definition of a row's key as text: the text PostgreSQL gives
//! it, whatever the key's types. The ledger records it, rollback matches it,
//! validate compares it.
//!
//! Knows SQL and the catalog; nothing of plans or sources.

use sqlx::PgConnection;

use super::sql::{column_types, equals_param, quote};

/// A row's key as one text value, the same for the ledger and for rollback.
pub fn key_text(cols: &[String]) -> String {
    match cols {
        [one] => format!("{one}::text"),
        many => format!("ROW({})::text", many.join(", ")),
    }
}

/// Keys that the client knows as each column's text, turned into the one
/// text PostgreSQL gives them (`key_text`): `1e+20` for a double the client
/// wrote `100000000000000000000`, `1.50` for `1.5` in `numeric(4,2)`, jsonb
/// with its own spacing. The ledger, rollback and validate all compare this
/// server text, so a key has one text wherever it is compared.
#[derive(Debug, Clone)]
pub struct ServerKeys {
    /// Each key column's quoted name and its type as the catalog writes it.
    cols: Vec<(String, String)>,
}

impl ServerKeys {
    /// Reads the key columns' types from the catalog.
    pub async fn load(conn: &mut PgConnection, table: &str, key_cols: &[String]) -> Result<ServerKeys, sqlx::Error> {
        let types = column_types(conn, table).await?;
        let cols =
            key_cols.iter().map(|c| (quote(c), types.get(c).cloned().unwrap_or_else(|| "text".into()))).collect();
        Ok(ServerKeys { cols })
    }

    /// `(key expression, FROM clause)` for keys bound as one `text[]` per
    /// key column from parameter `$first` on, in their order (`u.n`).
    pub fn sql(&self, first: usize) -> (String, String) {
        let casts: Vec<String> = match self.cols.as_slice() {
            // A text, integer, UUID or boolean key as the client writes it
            // is already the server's text: no round trip through the type
            // (it costs the server a parse and a print per row of every chunk).
            [(_, ty)] if canonical_text(ty) => vec!["u.k0".to_string()],
            cols => cols.iter().enumerate().map(|(i, (_, ty))| format!("u.k{i}::{ty}")).collect(),
        };
        let params: Vec<String> = (0..self.cols.len()).map(|i| format!("${}::text[]", first + i)).collect();
        let names: Vec<String> = (0..self.cols.len()).map(|i| format!("k{i}")).collect();
        (key_text(&casts), format!("unnest({}) WITH ORDINALITY AS u({}, n)", params.join(", "), names.join(", ")))
    }

    /// Whether the client's texts of a key are the server's already (one
    /// column of a type `canonical_text` lists): they can be stored as bound.
    pub fn as_bound(&self) -> bool {
        matches!(self.cols.as_slice(), [(_, ty)] if canonical_text(ty))
    }

    /// A condition matching table alias `t`'s key to keys bound from `$first` (one value each).
    pub fn matches(&self, first: usize) -> String {
        let conds: Vec<String> = self
            .cols
            .iter()
            .enumerate()
            .map(|(i, (name, ty))| equals_param(&format!("t.{name}"), "=", first + i, ty))
            .collect();
        conds.join(" AND ")
    }

    /// Whether alias `alias`'s columns are among values bound column by
    /// column as client text from `$first` on: typed, so an index serves it.
    pub fn within(&self, alias: &str, first: usize) -> String {
        let cols: Vec<String> = self.cols.iter().map(|(name, _)| format!("{alias}.{name}")).collect();
        let casts: Vec<String> = self.cols.iter().enumerate().map(|(i, (_, ty))| format!("u.k{i}::{ty}")).collect();
        let params: Vec<String> = (0..self.cols.len()).map(|i| format!("${}::text[]", first + i)).collect();
        let names: Vec<String> = (0..self.cols.len()).map(|i| format!("k{i}")).collect();
        format!(
            "({}) IN (SELECT {} FROM unnest({}) AS u({}))",
            cols.join(", "),
            casts.join(", "),
            params.join(", "),
            names.join(", ")
        )
    }
}

/// Types whose values the client writes exactly as PostgreSQL prints them
/// (`value::cell::Cell::to_pg_text`): decimal integers, lowercase
/// hyphenated UUIDs, `t`/`f`, and text itself. Dates, times and numbers
/// with a scale depend on the session or the type's modifier, and go
/// through the server.
fn canonical_text(ty: &str) -> bool {
    matches!(ty, "text" | "smallint" | "integer" | "bigint" | "uuid" | "boolean") || ty.starts_with("character varying")
}

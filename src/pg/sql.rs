//! The SQL text toolbox every part that talks to PostgreSQL shares:
//! statements marked safe, identifiers and literals quoted, the catalog's
//! column types, typed comparison with a bound parameter.
//!
//! Knows SQL text and the catalog; nothing of plans, sources or values.

use std::collections::BTreeMap;

use sqlx::{AssertSqlSafe, PgConnection};

/// Statements here are built from quoted identifiers of the schema and the
/// plan, never from data, so they are safe to send as they are.
pub fn sql(s: impl AsRef<str>) -> AssertSqlSafe<String> {
    AssertSqlSafe(s.as_ref().to_string())
}

/// A timestamp column as the ledger shows it to people: UTC, to the second,
/// `2026-11-22 08:19:09 UTC`.
pub fn utc_text(expr: &str) -> String {
    format!("to_char({expr} AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS') || ' UTC'")
}

/// An error from PostgreSQL in words: the server's message and detail,
/// without sqlx's "at line 948" (a line of the server's own C source).
pub fn pg_text(e: &sqlx::Error) -> String {
    match e {
        sqlx::Error::Database(db) => {
            let detail = db.try_downcast_ref::<sqlx::postgres::PgDatabaseError>().and_then(|p| p.detail());
            match detail {
                Some(d) => format!("{} ({d})", db.message()),
                None => db.message().to_string(),
            }
        }
        other => other.to_string(),
    }
}

pub fn quote(ident: &str) -> String {
    format!("\"{}\"", ident.replace('"', "\"\""))
}

/// A SQL string literal.
pub fn literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// Each column of a table and its type as the catalog writes it
/// (`numeric(6,2)`, `timestamp with time zone`), by column name.
pub async fn column_types(conn: &mut PgConnection, table: &str) -> Result<BTreeMap<String, String>, sqlx::Error> {
    let mut all = tables_column_types(conn, &[table]).await?;
    Ok(all.pop().flatten().unwrap_or_default())
}

/// `column_types` of several tables in one round trip, in their order;
/// `None` for a table the target does not have.
pub async fn tables_column_types(
    conn: &mut PgConnection,
    tables: &[&str],
) -> Result<Vec<Option<BTreeMap<String, String>>>, sqlx::Error> {
    let names: Vec<String> = tables.iter().map(|t| quote(t)).collect();
    let rows: Vec<(i64, bool, Option<String>, Option<String>)> = sqlx::query_as(
        "SELECT t.ord, c.oid IS NOT NULL, a.attname::text, format_type(a.atttypid, a.atttypmod) \
         FROM unnest($1::text[]) WITH ORDINALITY AS t(name, ord) \
         LEFT JOIN pg_class c ON c.oid = to_regclass(t.name) \
         LEFT JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped",
    )
    .bind(&names)
    .fetch_all(&mut *conn)
    .await?;
    let mut out: Vec<Option<BTreeMap<String, String>>> = vec![None; tables.len()];
    for (ord, exists, name, ty) in rows {
        let Some(slot) = usize::try_from(ord - 1).ok().and_then(|i| out.get_mut(i)) else { continue };
        if exists {
            let cols = slot.get_or_insert_with(BTreeMap::new);
            if let (Some(n), Some(t)) = (name, ty) {
                cols.insert(n, t);
            }
        }
    }
    Ok(out)
}

/// `expr` as PostgreSQL can compare it: `json` has no equality operator,
/// so its text (which is what was loaded) stands for it.
pub fn comparable(expr: &str, ty: &str) -> String {
    if ty == "json" { format!("({expr})::text") } else { expr.to_string() }
}

/// `expr <op> $n`, the parameter (a value's PostgreSQL text) cast by the
/// server to the column's type `ty`, so values compare as values.
pub fn equals_param(expr: &str, op: &str, n: usize, ty: &str) -> String {
    let param = if ty == "json" { format!("${n}") } else { format!("${n}::{ty}") };
    format!("{} {op} {param}", comparable(expr, ty))
}

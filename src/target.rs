//! The target database as a whole: connecting, creating it when missing,
//! applying the versioned migrations of `schema/`, and printing its address
//! without the password.
//!
//! Knows connections and migrations; nothing of mappings or rows.

use std::path::Path;

use sqlx::migrate::{Migrate, MigrateDatabase, Migrator};
use sqlx::{Connection, PgConnection, Postgres};
use thiserror::Error;

#[derive(Debug, Error)]
pub enum TargetError {
    #[error("cannot connect to {url}: {source}")]
    Connect { url: String, source: sqlx::Error },
    #[error("cannot create database {url}: {source}")]
    Create { url: String, source: sqlx::Error },
    #[error("schema migrations in {dir}: {source}")]
    Migrate { dir: String, source: sqlx::migrate::MigrateError },
    #[error("{0}")]
    Sql(#[from] sqlx::Error),
    #[error("table `{0}` does not exist in the target; run `finlit-map schema apply` or drop --no-schema")]
    MissingTable(String),
}

/// A connection string with its password replaced by `***`. Done on the
/// text, not by URL parsing: multi-host MongoDB URIs are not valid URLs.
pub fn redact(url: &str) -> String {
    if let Some(scheme_end) = url.find("://") {
        let rest = &url[scheme_end + 3..];
        let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
        if let Some(at) = rest[..authority_end].rfind('@') {
            let userinfo = &rest[..at];
            if let Some(colon) = userinfo.find(':') {
                return format!("{}{}:***{}", &url[..scheme_end + 3], &userinfo[..colon], &rest[at..]);
            }
        }
        return url.to_string();
    }
    // A key=value connection string: hide any password= field.
    url.split_whitespace()
        .map(|p| if p.starts_with("password=") { "password=***" } else { p })
        .collect::<Vec<_>>()
        .join(" ")
}

pub async fn connect(url: &str) -> Result<PgConnection, TargetError> {
    PgConnection::connect(url).await.map_err(|source| TargetError::Connect { url: redact(url), source })
}

/// A connection for loading. Commits do not wait for the WAL to reach disk:
/// each chunk commits together with its checkpoint, so if the server loses
/// the last commits in a crash it loses their checkpoints too, and the next
/// run loads those chunks again. Nothing is lost; a chunk is not slowed by a
/// disk flush.
pub async fn connect_for_loading(url: &str) -> Result<PgConnection, TargetError> {
    let mut c = connect(url).await?;
    sqlx::query("SET synchronous_commit = off").execute(&mut c).await?;
    Ok(c)
}

/// Creates the database named in `url` if it does not exist; says whether it did.
pub async fn ensure_database(url: &str) -> Result<bool, TargetError> {
    let exists =
        Postgres::database_exists(url).await.map_err(|source| TargetError::Connect { url: redact(url), source })?;
    if exists {
        return Ok(false);
    }
    match Postgres::create_database(url).await {
        Ok(()) => Ok(true),
        // Another run created it between the check and here: that is fine.
        Err(_) if Postgres::database_exists(url).await.unwrap_or(false) => Ok(false),
        Err(source) => Err(TargetError::Create { url: redact(url), source }),
    }
}

/// A migration of `schema/` and whether the target has it.
#[derive(Debug, Clone)]
pub struct MigrationState {
    pub version: i64,
    pub description: String,
    pub applied: bool,
    /// Applied, but the file changed since.
    pub changed: bool,
}

pub async fn migrator(dir: &Path) -> Result<Migrator, TargetError> {
    Migrator::new(dir.to_path_buf())
        .await
        .map_err(|source| TargetError::Migrate { dir: dir.display().to_string(), source })
}

pub async fn migration_states(conn: &mut PgConnection, dir: &Path) -> Result<Vec<MigrationState>, TargetError> {
    let m = migrator(dir).await?;
    let err = |source| TargetError::Migrate { dir: dir.display().to_string(), source };
    conn.ensure_migrations_table("_sqlx_migrations").await.map_err(err)?;
    let applied = conn.list_applied_migrations("_sqlx_migrations").await.map_err(err)?;
    Ok(m.iter()
        .filter(|mig| mig.migration_type.is_up_migration())
        .map(|mig| {
            let a = applied.iter().find(|a| a.version == mig.version);
            MigrationState {
                version: mig.version,
                description: mig.description.to_string(),
                applied: a.is_some(),
                changed: a.is_some_and(|a| a.checksum != mig.checksum),
            }
        })
        .collect())
}

/// Applies pending migrations; returns the ones applied.
pub async fn apply_schema(conn: &mut PgConnection, dir: &Path) -> Result<Vec<MigrationState>, TargetError> {
    let pending: Vec<MigrationState> = migration_states(conn, dir).await?.into_iter().filter(|m| !m.applied).collect();
    if !pending.is_empty() {
        let m = migrator(dir).await?;
        m.run(&mut *conn).await.map_err(|source| TargetError::Migrate { dir: dir.display().to_string(), source })?;
    }
    Ok(pending)
}

/// Reverts applied migrations with versions above `to`, newest first.
pub async fn revert_schema(conn: &mut PgConnection, dir: &Path, to: i64) -> Result<(), TargetError> {
    let m = migrator(dir).await?;
    m.undo(&mut *conn, to).await.map_err(|source| TargetError::Migrate { dir: dir.display().to_string(), source })
}

/// Fails with a clear message when a table the plan loads is missing.
pub async fn check_tables(conn: &mut PgConnection, tables: &[&str]) -> Result<(), TargetError> {
    for t in tables {
        let found: Option<String> = sqlx::query_scalar("SELECT to_regclass($1)::text")
            .bind(crate::sink::quote(t))
            .fetch_one(&mut *conn)
            .await?;
        if found.is_none() {
            return Err(TargetError::MissingTable(t.to_string()));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::redact;

    #[test]
    fn passwords_never_show() {
        assert_eq!(redact("postgres://u:secret@h:5432/db"), "postgres://u:***@h:5432/db");
        assert_eq!(redact("postgres://h/db"), "postgres://h/db");
        assert_eq!(redact("host=h password=secret dbname=x"), "host=h password=*** dbname=x");
        assert_eq!(
            redact("mongodb://app:pw@m1,m2/finlit?replicaSet=rs"),
            "mongodb://app:***@m1,m2/finlit?replicaSet=rs"
        );
    }
}

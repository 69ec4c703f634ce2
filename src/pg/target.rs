//! The target database as a whole: connecting, creating it when missing,
//! applying the versioned migrations of `schema/`, and printing its address
//! without the password.
//!
//! Knows connections and migrations; nothing of mappings or rows.

use std::path::Path;

use crate::schema::SqlType;

use sqlx::migrate::{Migrate, MigrateDatabase, Migrator};
use sqlx::{Connection, PgConnection, Postgres};
use thiserror::Error;

#[derive(Debug, Error)]
pub enum TargetError {
    #[error("cannot connect to {url}: {}", crate::pg::sql::pg_text(.source))]
    Connect { url: String, source: sqlx::Error },
    #[error("cannot create database {url}: {}", crate::pg::sql::pg_text(.source))]
    Create { url: String, source: sqlx::Error },
    #[error("schema migrations in {dir}: {source}")]
    Migrate { dir: String, source: sqlx::migrate::MigrateError },
    #[error("{}", crate::pg::sql::pg_text(.0))]
    Sql(#[from] sqlx::Error),
    #[error("table `{0}` does not exist in the target; run `finlit-map schema apply` or drop --no-schema")]
    MissingTable(String),
    #[error(
        "the target's tables differ from the schema the mappings were checked against; loading would change values or fail:\n{}\n  make them agree (apply or fix the schema migrations) before loading",
        .0.join("\n")
    )]
    Drift(Vec<String>),
}

/// A connection string with every secret replaced by `***`: the password
/// of the userinfo (`scheme://user:secret@host`), any parameter whose name
/// says password, secret or token (`?password=…`, `sslpassword`,
/// `tlsCertificateKeyFilePassword`, percent-encoded names too), MongoDB's
/// `AWS_SESSION_TOKEN` mechanism property, and the same keywords in a
/// libpq `key=value` string, quoted or not. Done on the text, not by URL
/// parsing: multi-host MongoDB URIs are not valid URLs.
pub fn redact(url: &str) -> String {
    match url.find("://") {
        Some(scheme_end) => redact_uri(&url[..scheme_end + 3], &url[scheme_end + 3..]),
        None => redact_keywords(url),
    }
}

fn is_secret(name: &str) -> bool {
    let n = percent_decode(name).to_ascii_lowercase();
    ["password", "secret", "token"].iter().any(|w| n.contains(w))
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| (c as char).to_digit(16);
        if b[i] == b'%'
            && i + 2 < b.len()
            && let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2]))
        {
            out.push((h * 16 + l) as u8);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn redact_uri(scheme: &str, rest: &str) -> String {
    let (before_query, query) = match rest.find('?') {
        Some(q) => (&rest[..q], Some(&rest[q + 1..])),
        None => (rest, None),
    };
    let mut out = scheme.to_string();
    // The userinfo ends at the last `@` before the query: a raw `@` in a
    // password still stays inside it.
    match before_query.rfind('@') {
        Some(at) => {
            let userinfo = &before_query[..at];
            match userinfo.find(':') {
                Some(colon) => {
                    out.push_str(&userinfo[..colon]);
                    out.push_str(":***");
                }
                None => out.push_str(userinfo),
            }
            out.push_str(&before_query[at..]);
        }
        None => out.push_str(before_query),
    }
    if let Some(query) = query {
        out.push('?');
        let params: Vec<String> = query
            .split('&')
            .map(|p| match p.split_once('=') {
                Some((k, _)) if is_secret(k) => format!("{k}=***"),
                Some((k, v)) if percent_decode(k).eq_ignore_ascii_case("authMechanismProperties") => {
                    format!("{k}={}", redact_properties(v))
                }
                _ => p.to_string(),
            })
            .collect();
        out.push_str(&params.join("&"));
    }
    out
}

/// `AWS_SESSION_TOKEN:…` (and any property named like a secret) in a
/// comma-separated `name:value` list, itself maybe percent-encoded.
fn redact_properties(v: &str) -> String {
    let decoded = percent_decode(v);
    let props: Vec<String> = decoded
        .split(',')
        .map(|p| match p.split_once(':') {
            Some((k, _)) if is_secret(k) => format!("{k}:***"),
            _ => p.to_string(),
        })
        .collect();
    props.join(",")
}

/// libpq's `keyword = value` form: values bare or single-quoted with `\'`
/// and `\\` escapes, spaces allowed around `=`.
fn redact_keywords(s: &str) -> String {
    let b: Vec<char> = s.chars().collect();
    let mut out = String::new();
    let mut i = 0;
    while i < b.len() {
        if b[i].is_whitespace() {
            out.push(b[i]);
            i += 1;
            continue;
        }
        let start = i;
        while i < b.len() && !b[i].is_whitespace() && b[i] != '=' {
            i += 1;
        }
        let key: String = b[start..i].iter().collect();
        let mut j = i;
        while j < b.len() && b[j].is_whitespace() {
            j += 1;
        }
        if j >= b.len() || b[j] != '=' {
            out.push_str(&key);
            continue;
        }
        j += 1;
        while j < b.len() && b[j].is_whitespace() {
            j += 1;
        }
        let value_start = j;
        if j < b.len() && b[j] == '\'' {
            j += 1;
            while j < b.len() && b[j] != '\'' {
                j += if b[j] == '\\' { 2 } else { 1 };
            }
            j = (j + 1).min(b.len());
        } else {
            while j < b.len() && !b[j].is_whitespace() {
                j += 1;
            }
        }
        out.push_str(&key);
        out.push('=');
        if is_secret(&key) {
            out.push_str("***");
        } else {
            out.extend(&b[value_start..j.min(b.len())]);
        }
        i = j;
    }
    out
}

pub async fn connect(url: &str) -> Result<PgConnection, TargetError> {
    let mut conn =
        PgConnection::connect(url).await.map_err(|source| TargetError::Connect { url: redact(url), source })?;
    no_delay(&mut conn).await;
    Ok(conn)
}

/// sqlx 0.9.0 leaves Nagle's algorithm on for TCP (sqlx#4335, fixed after
/// that release): a COPY's closing message then waits for the server's
/// delayed ACK, 40 ms on Linux, every chunk and every sync batch. libpq
/// (psql) turns it off; so does this, on the connection's own socket: the
/// one whose local port the server reports for this session.
async fn no_delay(conn: &mut PgConnection) {
    #[cfg(unix)]
    {
        let port: Option<i32> =
            sqlx::query_scalar("SELECT inet_client_port()").fetch_one(&mut *conn).await.ok().flatten();
        // A Unix-domain socket has no port and no Nagle.
        if let Some(port) = port.and_then(|p| u16::try_from(p).ok()) {
            set_no_delay_on_local_port(port);
        }
    }
}

#[cfg(unix)]
fn set_no_delay_on_local_port(port: u16) {
    let Ok(dir) = std::fs::read_dir("/proc/self/fd").or_else(|_| std::fs::read_dir("/dev/fd")) else { return };
    for fd in dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<libc::c_int>().ok()) {
        // SAFETY: all-zero bytes are a valid (empty) sockaddr_storage.
        let mut addr: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
        let mut len = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
        // SAFETY: getsockname writes at most `len` bytes into `addr`; an fd
        // that is not a socket (or was closed meanwhile) only makes it fail.
        if unsafe { libc::getsockname(fd, (&raw mut addr).cast(), &mut len) } != 0 {
            continue;
        }
        let local = match libc::c_int::from(addr.ss_family) {
            // SAFETY: the family says which sockaddr the storage holds.
            libc::AF_INET => u16::from_be(unsafe { (*(&raw const addr).cast::<libc::sockaddr_in>()).sin_port }),
            libc::AF_INET6 => u16::from_be(unsafe { (*(&raw const addr).cast::<libc::sockaddr_in6>()).sin6_port }),
            _ => continue,
        };
        if local == port {
            let on: libc::c_int = 1;
            // SAFETY: a plain integer option, its size given.
            unsafe {
                libc::setsockopt(
                    fd,
                    libc::IPPROTO_TCP,
                    libc::TCP_NODELAY,
                    (&raw const on).cast(),
                    std::mem::size_of::<libc::c_int>() as libc::socklen_t,
                );
            }
        }
    }
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

/// The migrations of `schema/`, all pending: for a database that does not exist yet.
pub async fn local_migrations(dir: &Path) -> Result<Vec<MigrationState>, TargetError> {
    let m = migrator(dir).await?;
    Ok(m.iter()
        .filter(|mig| mig.migration_type.is_up_migration())
        .map(|mig| MigrationState {
            version: mig.version,
            description: mig.description.to_string(),
            applied: false,
            changed: false,
        })
        .collect())
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
/// Every mapped table exists in the target, and every column a mapping
/// writes has there the type the plan was compiled for. A column altered
/// behind the schema's back (`numeric(5,1)` where the plan says
/// `numeric(6,2)`) would round values or make binary COPY fail, so every
/// difference is listed and nothing loads.
pub async fn check_tables(conn: &mut PgConnection, plan: &crate::plan::Plan) -> Result<(), TargetError> {
    let mut drift = Vec::new();
    let mut seen = std::collections::BTreeSet::new();
    let tables: Vec<&str> = plan.mappings.iter().map(|m| m.table.as_str()).filter(|t| seen.insert(*t)).collect();
    let found = crate::pg::sql::tables_column_types(conn, &tables).await?;
    for (table, actual) in tables.iter().zip(found) {
        let Some(actual) = actual else {
            return Err(TargetError::MissingTable(table.to_string()));
        };
        for c in plan.mappings.iter().filter(|x| x.table == *table).flat_map(|x| &x.columns) {
            let line = match actual.get(&c.name) {
                None => format!("  {table}.{}: the target has no such column", c.name),
                Some(text) if SqlType::parse(text).ok().as_ref() == Some(&c.ty) => continue,
                Some(text) => format!("  {table}.{}: the schema says {}, the target has {text}", c.name, c.ty),
            };
            if !drift.contains(&line) {
                drift.push(line);
            }
        }
    }
    if drift.is_empty() { Ok(()) } else { Err(TargetError::Drift(drift)) }
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

    /// Issue 10, item 12: every form libpq and the MongoDB driver accept.
    #[test]
    fn every_password_form_is_redacted() {
        let cases = [
            ("postgres://u@h/db?password=s3cr3t", "postgres://u@h/db?password=***"),
            (
                "postgresql://u@h/db?sslmode=disable&password=s3cr3t&x=1",
                "postgresql://u@h/db?sslmode=disable&password=***&x=1",
            ),
            ("postgres://u@h/db?pass%77ord=s3cr3t", "postgres://u@h/db?pass%77ord=***"),
            ("postgres://u@h/db?PASSWORD=s3cr3t", "postgres://u@h/db?PASSWORD=***"),
            ("postgres://u@h/db?sslpassword=s3cr3t", "postgres://u@h/db?sslpassword=***"),
            ("postgres://u:p%40ss@h/db", "postgres://u:***@h/db"),
            ("postgres://u:p@ss@h/db", "postgres://u:***@h/db"),
            ("postgres://u:s3cr3t@[::1]:5432/db", "postgres://u:***@[::1]:5432/db"),
            ("mongodb+srv://u:s3cr3t@cluster.example.net/finlit", "mongodb+srv://u:***@cluster.example.net/finlit"),
            (
                "mongodb://h/?tlsCertificateKeyFilePassword=s3cr3t&tls=true",
                "mongodb://h/?tlsCertificateKeyFilePassword=***&tls=true",
            ),
            (
                "mongodb://h/?authMechanism=MONGODB-AWS&authMechanismProperties=AWS_SESSION_TOKEN:s3cr3t",
                "mongodb://h/?authMechanism=MONGODB-AWS&authMechanismProperties=AWS_SESSION_TOKEN:***",
            ),
            ("host=h password=s3cr3t dbname=x", "host=h password=*** dbname=x"),
            ("host=h password = s3cr3t dbname=x", "host=h password=*** dbname=x"),
            ("host=h password='s3 cr3t' dbname=x", "host=h password=*** dbname=x"),
            (r"host=h password='it\'s s3cr3t' dbname=x", "host=h password=*** dbname=x"),
            ("password=s3cr3t", "password=***"),
            ("host=h dbname=x", "host=h dbname=x"),
        ];
        for (given, shown) in cases {
            let r = redact(given);
            assert_eq!(r, shown, "{given}");
            assert!(!r.contains("s3cr3t") && !r.contains("cr3t"), "{given} → {r}");
        }
    }
}

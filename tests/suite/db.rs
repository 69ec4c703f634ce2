//! A throw-away PostgreSQL database per test: unique name, dropped on drop,
//! so tests run in parallel and leave nothing behind.

use std::sync::atomic::{AtomicU32, Ordering};

use sqlx::{Connection, PgConnection};

/// The server the tests use; `FINLIT_TEST_PG` overrides it.
pub fn server() -> String {
    std::env::var("FINLIT_TEST_PG").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".to_string())
}

pub struct TestDb {
    pub name: String,
    pub url: String,
    rt: tokio::runtime::Runtime,
}

static COUNTER: AtomicU32 = AtomicU32::new(0);

impl TestDb {
    /// A fresh name; the database itself is created by `finlit-map run` or `schema apply`.
    pub fn new(tag: &str) -> TestDb {
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos();
        let name = format!("fm_test_{tag}_{}_{}_{nanos}", std::process::id(), COUNTER.fetch_add(1, Ordering::SeqCst));
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        TestDb { url: format!("{}/{name}", server()), name, rt }
    }

    /// Creates the database now (for a test's own use, not the tool's).
    pub fn create(&self) {
        let url = format!("{}/postgres", server());
        let sql = format!("CREATE DATABASE \"{}\"", self.name);
        self.rt.block_on(async move {
            let mut c = PgConnection::connect(&url).await.unwrap();
            sqlx::raw_sql(sqlx::AssertSqlSafe(sql)).execute(&mut c).await.unwrap();
        });
    }

    pub fn exists(&self) -> bool {
        let url = format!("{}/postgres", server());
        let name = self.name.clone();
        self.rt.block_on(async move {
            let mut c = PgConnection::connect(&url).await.unwrap();
            sqlx::query_scalar::<_, bool>("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
                .bind(name)
                .fetch_one(&mut c)
                .await
                .unwrap()
        })
    }

    /// Runs a query and returns every row as text columns.
    pub fn rows(&self, sql: &str) -> Vec<Vec<Option<String>>> {
        let url = self.url.clone();
        let sql = sql.to_string();
        self.rt.block_on(async move {
            use sqlx::Row;
            let mut c = PgConnection::connect(&url).await.unwrap();
            let rows = sqlx::query(sqlx::AssertSqlSafe(sql)).fetch_all(&mut c).await.unwrap();
            rows.iter().map(|r| (0..r.len()).map(|i| r.try_get::<Option<String>, _>(i).unwrap()).collect()).collect()
        })
    }

    /// Like `one`, but `None` when the database, the table or the row is not there yet.
    pub fn try_one(&self, sql: &str) -> Option<String> {
        let url = self.url.clone();
        let sql = sql.to_string();
        self.rt.block_on(async move {
            let mut c = PgConnection::connect(&url).await.ok()?;
            sqlx::query_scalar::<_, Option<String>>(sqlx::AssertSqlSafe(sql)).fetch_one(&mut c).await.ok()?
        })
    }

    pub fn one(&self, sql: &str) -> String {
        self.rows(sql)[0][0].clone().unwrap_or_default()
    }

    pub fn exec(&self, sql: &str) {
        let url = self.url.clone();
        let sql = sql.to_string();
        self.rt.block_on(async move {
            let mut c = PgConnection::connect(&url).await.unwrap();
            sqlx::raw_sql(sqlx::AssertSqlSafe(sql)).execute(&mut c).await.unwrap();
        });
    }

    /// A digest of a table's whole content, to compare runs.
    pub fn digest(&self, table: &str) -> String {
        self.one(&format!("SELECT md5(coalesce(string_agg(t::text, '|' ORDER BY t::text), '')) FROM \"{table}\" t"))
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let url = format!("{}/postgres", server());
        let name = self.name.clone();
        self.rt.block_on(async move {
            if let Ok(mut c) = PgConnection::connect(&url).await {
                let sql = format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)");
                let _ = sqlx::raw_sql(sqlx::AssertSqlSafe(sql)).execute(&mut c).await;
            }
        });
    }
}

/// Every connection the tool opens to PostgreSQL over TCP has Nagle's
/// algorithm off, as libpq's do: without it each COPY waited 40 ms for the
/// server's delayed ACK (sqlx 0.9.0 leaves it on).
#[cfg(unix)]
#[test]
fn the_tools_connections_send_without_delay() {
    let db = TestDb::new("nodelay");
    db.create();
    db.rt.block_on(async {
        let mut conn = finlit_map::pg::target::connect(&db.url).await.unwrap();
        let port: i32 = sqlx::query_scalar("SELECT inet_client_port()").fetch_one(&mut conn).await.unwrap();
        let mut found = None;
        for entry in std::fs::read_dir("/proc/self/fd").unwrap() {
            let Ok(fd) = entry.unwrap().file_name().to_str().unwrap().parse::<libc::c_int>() else { continue };
            let mut addr: libc::sockaddr_in = unsafe { std::mem::zeroed() };
            let mut len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
            let ok = unsafe { libc::getsockname(fd, (&raw mut addr).cast(), &mut len) } == 0;
            if !ok || i32::from(addr.sin_family) != libc::AF_INET || i32::from(u16::from_be(addr.sin_port)) != port {
                continue;
            }
            let mut on: libc::c_int = 0;
            let mut size = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
            let got =
                unsafe { libc::getsockopt(fd, libc::IPPROTO_TCP, libc::TCP_NODELAY, (&raw mut on).cast(), &mut size) };
            assert_eq!(got, 0);
            found = Some(on);
        }
        assert_eq!(found, Some(1), "the connection's socket (local port {port}) has TCP_NODELAY");
    });
}

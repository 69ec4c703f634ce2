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

//! A first load the way `pg_restore` does it: rows first, into a table
//! without its keys, unique constraints, checks, foreign keys and indexes,
//! which are built afterwards in one pass each instead of row by row.
//!
//! Before anything is dropped its definition is recorded in the ledger
//! (`finlit_map.deferred`, in the transaction that drops it), so a run that
//! stops anywhere leaves a state the next run finishes. Building stays
//! exact: rows the constraints would have refused are found first and taken
//! out, each with the reason a load into the indexed table gives. Orphans
//! and checks first (a row's own faults), then repeated keys, where the
//! first row in the source's order stays; the order of every row is the
//! order of the chunk it came in (`loaded_chunks.load_order`), which shares
//! the row's `xmin`, and within a chunk its place in the chunk's keys.
//! Where the server's own message is the reason (a check, a unique
//! constraint other than the key, a foreign key the mapping does not
//! declare), each such row is offered to the built table again and the
//! server's refusal is the reason.
//!
//! Kept in place, and so checked while loading: NOT NULL, defaults,
//! triggers, exclusion constraints, and unique indexes on expressions, with
//! a predicate or with NULLS NOT DISTINCT.
//!
//! Knows SQL and the catalog; nothing of sources, plans or the rejects file.

use serde::{Deserialize, Serialize};
use sqlx::{PgConnection, Row};

use super::sql::{literal, quote, sql};

/// What a table has that a first load builds afterwards.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    PrimaryKey,
    Unique,
    UniqueIndex,
    Check,
    ForeignKey,
    Index,
}

/// One constraint or index, as the catalog defined it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Object {
    /// The constraint's name, or the index's (schema-qualified when needed).
    pub name: String,
    pub kind: Kind,
    /// The table it is on: as SQL (`conrelid::regclass`), and its name.
    pub on_table: String,
    pub on_relname: String,
    /// `pg_get_constraintdef` or `pg_get_indexdef`.
    pub definition: String,
    /// Key, unique or referencing columns, in order.
    pub columns: Vec<String>,
    /// A foreign key's referenced table (its name) and columns.
    pub ref_table: Option<String>,
    pub ref_columns: Vec<String>,
    /// A check's expression.
    pub check: Option<String>,
    pub clustered: bool,
    pub comment: Option<String>,
}

impl Object {
    fn is_key(&self) -> bool {
        matches!(self.kind, Kind::PrimaryKey | Kind::Unique | Kind::UniqueIndex)
    }

    /// The order objects are built in: keys before what needs them, foreign keys last.
    pub fn build_rank(&self) -> u8 {
        match self.kind {
            Kind::PrimaryKey => 0,
            Kind::Unique | Kind::UniqueIndex => 1,
            Kind::Check => 2,
            Kind::Index => 3,
            Kind::ForeignKey => 4,
        }
    }

    fn drop_sql(&self) -> String {
        match self.kind {
            Kind::Index | Kind::UniqueIndex => format!("DROP INDEX {}", self.name),
            _ => format!("ALTER TABLE {} DROP CONSTRAINT {}", self.on_table, quote(&self.name)),
        }
    }

    fn create_sql(&self) -> Vec<String> {
        let mut out = match self.kind {
            Kind::Index | Kind::UniqueIndex => vec![self.definition.clone()],
            _ => {
                vec![format!("ALTER TABLE {} ADD CONSTRAINT {} {}", self.on_table, quote(&self.name), self.definition)]
            }
        };
        let index = match self.kind {
            Kind::Index | Kind::UniqueIndex => self.name.clone(),
            // A key's index has the constraint's name.
            Kind::PrimaryKey | Kind::Unique => quote(&self.name),
            _ => String::new(),
        };
        if self.clustered && !index.is_empty() {
            let bare = index.rsplit('.').next().unwrap_or(&index).to_string();
            out.push(format!("ALTER TABLE {} CLUSTER ON {bare}", self.on_table));
        }
        if let Some(c) = &self.comment {
            out.push(match self.kind {
                Kind::Index | Kind::UniqueIndex => format!("COMMENT ON INDEX {} IS {}", self.name, literal(c)),
                _ => format!("COMMENT ON CONSTRAINT {} ON {} IS {}", quote(&self.name), self.on_table, literal(c)),
            });
        }
        out
    }
}

/// Why a table cannot be loaded before its keys (`None`: it can): it has
/// rows, is partitioned or inherited, or has something this module does
/// not know how to build again exactly.
pub async fn why_not(conn: &mut PgConnection, table: &str) -> Result<Option<String>, sqlx::Error> {
    let row = sqlx::query(
        "SELECT c.relkind::text, c.relispartition, c.relreplident::text,
                EXISTS (SELECT 1 FROM pg_inherits i WHERE i.inhrelid = c.oid OR i.inhparent = c.oid),
                EXISTS (SELECT 1 FROM pg_constraint k WHERE k.conrelid = c.oid AND k.contype = 't')
         FROM pg_class c WHERE c.oid = $1::regclass",
    )
    .bind(quote(table))
    .fetch_one(&mut *conn)
    .await?;
    let (kind, partition, identity, inherits, triggers): (String, bool, String, bool, bool) =
        (row.try_get(0)?, row.try_get(1)?, row.try_get(2)?, row.try_get(3)?, row.try_get(4)?);
    let why = if kind != "r" || partition {
        Some("it is partitioned or a partition")
    } else if inherits {
        Some("it inherits or is inherited")
    } else if identity == "i" {
        Some("its replica identity is an index")
    } else if triggers {
        Some("it has constraint triggers")
    } else {
        None
    };
    if let Some(w) = why {
        return Ok(Some(w.to_string()));
    }
    let stmt = format!("SELECT EXISTS (SELECT 1 FROM {})", quote(table));
    let has_rows: bool = sqlx::query_scalar(sql(stmt)).fetch_one(&mut *conn).await?;
    Ok(has_rows.then(|| "it has rows".to_string()))
}

/// Whether the table keeps a unique index in place while it loads (one on
/// expressions, with a predicate, or NULLS NOT DISTINCT): such a table is
/// loaded by one reader, so that index sees the rows in the source's order.
pub async fn keeps_a_unique_index(conn: &mut PgConnection, table: &str) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = $1::regclass AND i.indisunique
             AND (i.indexprs IS NOT NULL OR i.indpred IS NOT NULL OR i.indnullsnotdistinct))
         OR EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conrelid = $1::regclass AND c.contype = 'x')",
    )
    .bind(quote(table))
    .fetch_one(conn)
    .await
}

/// The constraints and indexes a first load of `table` builds afterwards:
/// its own (except what stays in place), and the foreign keys of any
/// table that point at it (they need its key to exist).
pub async fn capture(conn: &mut PgConnection, table: &str) -> Result<Vec<Object>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT c.conname::text, c.contype::text, c.conrelid::regclass::text, cl.relname::text,
                pg_get_constraintdef(c.oid),
                ARRAY(SELECT a.attname::text FROM unnest(c.conkey) WITH ORDINALITY k(n, i)
                      JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = k.n ORDER BY k.i),
                rc.relname::text,
                ARRAY(SELECT a.attname::text FROM unnest(c.confkey) WITH ORDINALITY k(n, i)
                      JOIN pg_attribute a ON a.attrelid = c.confrelid AND a.attnum = k.n ORDER BY k.i),
                CASE WHEN c.contype = 'c' THEN pg_get_expr(c.conbin, c.conrelid) END,
                coalesce(ix.indisclustered, false),
                obj_description(c.oid, 'pg_constraint')
         FROM pg_constraint c
         JOIN pg_class cl ON cl.oid = c.conrelid
         LEFT JOIN pg_class rc ON rc.oid = c.confrelid
         LEFT JOIN pg_index ix ON ix.indexrelid = c.conindid AND c.contype IN ('p', 'u')
         WHERE ((c.conrelid = $1::regclass AND c.contype IN ('p', 'u', 'c', 'f'))
                OR (c.confrelid = $1::regclass AND c.contype = 'f' AND c.conrelid <> $1::regclass))
           AND NOT (c.contype = 'u' AND coalesce(ix.indnullsnotdistinct, false))
         ORDER BY c.conrelid, c.conname",
    )
    .bind(quote(table))
    .fetch_all(&mut *conn)
    .await?;
    let mut out = Vec::new();
    for r in rows {
        let kind = match r.try_get::<String, _>(1)?.as_str() {
            "p" => Kind::PrimaryKey,
            "u" => Kind::Unique,
            "c" => Kind::Check,
            _ => Kind::ForeignKey,
        };
        out.push(Object {
            name: r.try_get(0)?,
            kind,
            on_table: r.try_get(2)?,
            on_relname: r.try_get(3)?,
            definition: r.try_get(4)?,
            columns: r.try_get(5)?,
            ref_table: r.try_get(6)?,
            ref_columns: r.try_get(7)?,
            check: r.try_get(8)?,
            clustered: r.try_get(9)?,
            comment: r.try_get(10)?,
        });
    }
    // Indexes that back no constraint; unique ones only on plain columns.
    let rows = sqlx::query(
        "SELECT i.indexrelid::regclass::text, pg_get_indexdef(i.indexrelid), i.indisunique,
                ARRAY(SELECT a.attname::text FROM unnest(i.indkey::int2[]) WITH ORDINALITY k(n, o)
                      JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.n ORDER BY k.o),
                i.indisclustered, obj_description(i.indexrelid, 'pg_class'), c.relname::text
         FROM pg_index i JOIN pg_class c ON c.oid = i.indrelid
         WHERE i.indrelid = $1::regclass
           AND NOT EXISTS (SELECT 1 FROM pg_constraint k WHERE k.conindid = i.indexrelid AND k.contype IN ('p', 'u', 'x'))
           AND NOT (i.indisunique AND (i.indexprs IS NOT NULL OR i.indpred IS NOT NULL OR i.indnullsnotdistinct))
         ORDER BY 1",
    )
    .bind(quote(table))
    .fetch_all(&mut *conn)
    .await?;
    for r in rows {
        let unique: bool = r.try_get(2)?;
        out.push(Object {
            name: r.try_get(0)?,
            kind: if unique { Kind::UniqueIndex } else { Kind::Index },
            on_table: quote(table),
            on_relname: r.try_get(6)?,
            definition: r.try_get(1)?,
            columns: r.try_get(3)?,
            ref_table: None,
            ref_columns: Vec::new(),
            check: None,
            clustered: r.try_get(4)?,
            comment: r.try_get(5)?,
        });
    }
    Ok(out)
}

/// Drops the objects, foreign keys first (they need the keys they point at).
pub async fn strip(conn: &mut PgConnection, objects: &[Object]) -> Result<(), sqlx::Error> {
    let mut order: Vec<&Object> = objects.iter().collect();
    order.sort_by_key(|o| std::cmp::Reverse(o.build_rank()));
    // One round trip for all: the statements are names quoted from the catalog.
    let statements: Vec<String> = order.iter().map(|o| o.drop_sql()).collect();
    if !statements.is_empty() {
        sqlx::raw_sql(sql(statements.join(";\n"))).execute(&mut *conn).await?;
    }
    Ok(())
}

/// Records what `owner`'s build creates (in the transaction that strips it).
pub async fn record(conn: &mut PgConnection, run_id: i64, owner: &str, objects: &[Object]) -> Result<(), sqlx::Error> {
    let json = serde_json::to_value(objects).unwrap_or_default();
    sqlx::query("INSERT INTO finlit_map.deferred (table_name, run_id, objects) VALUES ($1, $2, $3)")
        .bind(owner)
        .bind(run_id)
        .bind(json)
        .execute(conn)
        .await
        .map(|_| ())
}

/// A table whose build has not happened yet, with what it builds.
#[derive(Debug, Clone)]
pub struct Deferral {
    pub table: String,
    pub run_id: i64,
    pub objects: Vec<Object>,
}

/// Every table still waiting for its build; empty for an older ledger.
pub async fn pending(conn: &mut PgConnection) -> Result<Vec<Deferral>, sqlx::Error> {
    if !super::ledger::has_table(conn, "deferred").await? {
        return Ok(Vec::new());
    }
    let rows: Vec<(String, i64, serde_json::Value)> =
        sqlx::query_as("SELECT table_name, run_id, objects FROM finlit_map.deferred ORDER BY table_name")
            .fetch_all(conn)
            .await?;
    Ok(rows
        .into_iter()
        .map(|(table, run_id, objects)| Deferral {
            table,
            run_id,
            objects: serde_json::from_value(objects).unwrap_or_default(),
        })
        .collect())
}

/// The table's build is done (in the build's transaction).
pub async fn built(conn: &mut PgConnection, table: &str) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM finlit_map.deferred WHERE table_name = $1").bind(table).execute(conn).await.map(|_| ())
}

/// Creates one object.
pub async fn create(conn: &mut PgConnection, o: &Object) -> Result<(), sqlx::Error> {
    for stmt in o.create_sql() {
        sqlx::query(sql(stmt)).execute(&mut *conn).await?;
    }
    Ok(())
}

/// Gives up first loads that did not finish: their tables are emptied
/// (they held nothing but the unfinished load's rows), their ledger keys
/// forgotten, and everything they had is created again on the empty
/// tables. In the caller's transaction.
pub async fn abandon(conn: &mut PgConnection, deferrals: &[Deferral]) -> Result<(), sqlx::Error> {
    if deferrals.is_empty() {
        return Ok(());
    }
    let tables: Vec<String> = deferrals.iter().map(|d| quote(&d.table)).collect();
    sqlx::query(sql(format!("TRUNCATE {}", tables.join(", ")))).execute(&mut *conn).await?;
    let names: Vec<String> = deferrals.iter().map(|d| d.table.clone()).collect();
    sqlx::query("DELETE FROM finlit_map.loaded_chunks WHERE table_name = ANY($1)")
        .bind(&names)
        .execute(&mut *conn)
        .await?;
    let mut all: Vec<&Object> = deferrals.iter().flat_map(|d| &d.objects).collect();
    all.sort_by_key(|o| o.build_rank());
    for o in all {
        create(conn, o).await?;
    }
    sqlx::query("DELETE FROM finlit_map.deferred WHERE table_name = ANY($1)").bind(&names).execute(&mut *conn).await?;
    Ok(())
}

/// Statements of one table's build, after its load: rows that would be
/// refused are taken out into `fm_out` (ON COMMIT DROP) with what refused
/// them, rows whose reference is set to NULL are noted in `fm_nulled`.
pub struct Build {
    table: String,
    run_id: i64,
    /// The mapping key columns, quoted: a row's key text (the ledger's).
    key: Vec<String>,
    /// The table's columns (`prepare`), for rows written back to it.
    columns: Vec<String>,
}

/// What refused a row taken out of the table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refused {
    /// It points at a row that is not there (a mapping's reference).
    Orphan { column: String, value: String },
    /// Its mapping key repeats an earlier row's.
    DuplicateKey,
    /// What the server says when the row is offered to the built table.
    Server { column: Option<String>, reason: String },
}

/// A row a build took out or changed, and the chunk it came in.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub key: String,
    pub refused: Refused,
    /// A reference set to NULL (`on_missing = "null"`): the row stays.
    pub nulled: bool,
}

/// A chunk with rows a build took out or changed.
#[derive(Debug, Clone)]
pub struct RefusedChunk {
    pub mapping: String,
    pub first_pos: Option<serde_json::Value>,
    pub last_pos: Option<serde_json::Value>,
    /// The ledger row of the chunk (its `ctid`, as text).
    pub ledger_row: Option<String>,
    pub rows: Vec<Outcome>,
}

impl Build {
    /// The build of `table` (fed by mappings keyed on `key`); takes the
    /// table for itself until the transaction ends.
    pub async fn start(
        conn: &mut PgConnection,
        table: &str,
        run_id: i64,
        key: &[String],
    ) -> Result<Build, sqlx::Error> {
        let t = quote(table);
        sqlx::query(sql(format!("LOCK TABLE {t} IN ACCESS EXCLUSIVE MODE"))).execute(&mut *conn).await?;
        let key = key.iter().map(|k| quote(k)).collect();
        Ok(Build { table: table.to_string(), run_id, key, columns: Vec::new() })
    }

    fn key_text(&self, alias: &str) -> String {
        let cols: Vec<String> = self.key.iter().map(|k| format!("{alias}.{k}")).collect();
        super::keys::key_text(&cols)
    }

    /// The table's rows joined to their chunk's ledger row by `xmin`.
    fn chunk_join(&self, alias: &str) -> String {
        format!(
            "LEFT JOIN finlit_map.loaded_chunks lc ON lc.xmin = {alias}.xmin AND lc.table_name = {} AND lc.run_id = {}",
            literal(&self.table),
            self.run_id
        )
    }

    /// The tables the refused rows go to, and the table's columns they are
    /// written back with: only a build the table refused needs either.
    pub async fn prepare(&mut self, conn: &mut PgConnection) -> Result<(), sqlx::Error> {
        // Columns in their order, generated ones aside (they cannot be written).
        self.columns = sqlx::query_scalar(
            "SELECT attname::text FROM pg_attribute WHERE attrelid = $1::regclass AND attnum > 0
               AND NOT attisdropped AND attgenerated = '' ORDER BY attnum",
        )
        .bind(quote(&self.table))
        .fetch_all(&mut *conn)
        .await?;
        let t = quote(&self.table);
        for stmt in [
            "DROP TABLE IF EXISTS fm_out".to_string(),
            "DROP TABLE IF EXISTS fm_nulled".to_string(),
            format!(
                "CREATE TEMP TABLE fm_out ON COMMIT DROP AS SELECT t.*, t.xmin AS fm__xmin, ''::text AS fm__kind, \
                 ''::text AS fm__col, ''::text AS fm__value FROM {t} t WITH NO DATA"
            ),
            "CREATE TEMP TABLE fm_nulled (fm__xmin xid, key text, col text, value text) ON COMMIT DROP".to_string(),
        ] {
            sqlx::query(sql(stmt)).execute(&mut *conn).await?;
        }
        Ok(())
    }

    /// Takes out the rows `cond` (on alias `t`, with `lc` the chunk's ledger
    /// row) selects, noting them as `kind`; returns how many.
    async fn take_out(
        &self,
        conn: &mut PgConnection,
        cond: &str,
        kind: &str,
        col: &str,
        value: &str,
    ) -> Result<u64, sqlx::Error> {
        let t = quote(&self.table);
        let cols: Vec<String> = self.columns.iter().map(|c| format!("d.{}", quote(c))).collect();
        let stmt = format!(
            "WITH d AS (DELETE FROM {t} t USING (SELECT t.ctid AS r, {value} AS v FROM {t} t {} WHERE {cond}) x \
             WHERE t.ctid = x.r RETURNING t.*, t.xmin AS fm__x, x.v AS fm__v) \
             INSERT INTO fm_out ({}, fm__xmin, fm__kind, fm__col, fm__value) SELECT {}, d.fm__x, {}, {}, d.fm__v FROM d",
            self.chunk_join("t"),
            self.columns.iter().map(|c| quote(c)).collect::<Vec<_>>().join(", "),
            cols.join(", "),
            literal(kind),
            literal(col),
        );
        Ok(sqlx::query(sql(stmt)).execute(&mut *conn).await?.rows_affected())
    }

    /// Rows of `mappings` whose `column` points at no row of the referenced
    /// table (NULL points at nothing, and is fine): taken out as orphans.
    pub async fn take_out_orphans(
        &self,
        conn: &mut PgConnection,
        fk: &Object,
        mappings: &[String],
    ) -> Result<u64, sqlx::Error> {
        let cond = self.orphan_condition(fk, mappings);
        let col = fk.columns.first().cloned().unwrap_or_default();
        self.take_out(conn, &cond, "orphan", &col, &format!("t.{}::text", quote(&col))).await
    }

    /// Rows a foreign key the mappings do not declare would refuse; the
    /// server says why once the key exists.
    pub async fn take_out_violations(
        &self,
        conn: &mut PgConnection,
        fk: &Object,
        mappings: &[String],
    ) -> Result<u64, sqlx::Error> {
        let cond = self.orphan_condition(fk, mappings);
        self.take_out(conn, &cond, "server", &fk.name, "NULL::text").await
    }

    fn orphan_condition(&self, fk: &Object, mappings: &[String]) -> String {
        let present: Vec<String> = fk.columns.iter().map(|c| format!("t.{} IS NOT NULL", quote(c))).collect();
        let matches: Vec<String> =
            fk.columns.iter().zip(&fk.ref_columns).map(|(c, rc)| format!("r.{} = t.{}", quote(rc), quote(c))).collect();
        let parent = fk.ref_table.as_deref().map(quote).unwrap_or_default();
        let mut cond = format!(
            "{} AND NOT EXISTS (SELECT 1 FROM {parent} r WHERE {})",
            present.join(" AND "),
            matches.join(" AND ")
        );
        if !mappings.is_empty() {
            let list: Vec<String> = mappings.iter().map(|m| literal(m)).collect();
            cond.push_str(&format!(" AND lc.mapping IN ({})", list.join(", ")));
        }
        cond
    }

    /// Rows a check refuses: out, the server to say why.
    pub async fn take_out_check(&self, conn: &mut PgConnection, check: &Object) -> Result<u64, sqlx::Error> {
        let Some(expr) = &check.check else { return Ok(0) };
        self.take_out(conn, &format!("NOT ({expr})"), "server", &check.name, "NULL::text").await
    }

    /// Rows repeating an earlier row's values of a key or unique set: all
    /// but the first in the source's order (its chunk's place, then its
    /// place in the chunk) are taken out. `is_key`: the set is the mapping
    /// key (the reason is then the load's own); otherwise the server says.
    pub async fn take_out_repeats(
        &self,
        conn: &mut PgConnection,
        set: &Object,
        is_key: bool,
    ) -> Result<u64, sqlx::Error> {
        let t = quote(&self.table);
        let cols: Vec<String> = set.columns.iter().map(|c| format!("t.{}", quote(c))).collect();
        let plain: Vec<String> = set.columns.iter().map(|c| quote(c)).collect();
        let present: Vec<String> = plain.iter().map(|c| format!("{c} IS NOT NULL")).collect();
        let cond = format!(
            "t.ctid IN (SELECT r FROM (SELECT t.ctid AS r, row_number() OVER (PARTITION BY {cols} \
                 ORDER BY lc.load_order NULLS LAST, {position}) AS n \
               FROM {t} t {join} WHERE ({cols}) IN \
                 (SELECT {plain} FROM {t} WHERE {present} GROUP BY {plain} HAVING count(*) > 1)) ranked WHERE n > 1)",
            cols = cols.join(", "),
            position = super::ledger::position_of("lc", &self.key_text("t")),
            join = self.chunk_join("t"),
            plain = plain.join(", "),
            present = present.join(" AND "),
        );
        let kind = if is_key { "duplicate" } else { "server" };
        self.take_out(conn, &cond, kind, &set.name, "NULL::text").await
    }

    /// Offers each row taken out for the server to judge to the table again,
    /// now that `objects` exist: a refusal is its reason (noted), a row
    /// accepted after all (what refused it is gone) stays in the table.
    pub async fn judge(&self, conn: &mut PgConnection, names: &[String]) -> Result<(), sqlx::Error> {
        let rows: Vec<String> = sqlx::query_scalar(
            "SELECT ctid::text FROM fm_out WHERE fm__kind = 'server' AND fm__col = ANY($1) ORDER BY ctid",
        )
        .bind(names)
        .fetch_all(&mut *conn)
        .await?;
        let t = quote(&self.table);
        let cols: Vec<String> = self.columns.iter().map(|c| quote(c)).collect();
        let insert = format!(
            "INSERT INTO {t} ({}) OVERRIDING SYSTEM VALUE SELECT {} FROM fm_out WHERE ctid = $1::tid",
            cols.join(", "),
            cols.join(", ")
        );
        for ctid in rows {
            sqlx::query("SAVEPOINT fm_judge").execute(&mut *conn).await?;
            match sqlx::query(sql(&insert)).bind(&ctid).execute(&mut *conn).await {
                Ok(_) => {
                    sqlx::query("RELEASE SAVEPOINT fm_judge").execute(&mut *conn).await?;
                    sqlx::query("DELETE FROM fm_out WHERE ctid = $1::tid").bind(&ctid).execute(&mut *conn).await?;
                }
                Err(e) => {
                    let Some((column, reason)) = super::sink::refusal(&e) else { return Err(e) };
                    sqlx::query("ROLLBACK TO SAVEPOINT fm_judge").execute(&mut *conn).await?;
                    sqlx::query(
                        "UPDATE fm_out SET fm__kind = 'judged', fm__col = coalesce($2, ''), fm__value = $3 WHERE ctid = $1::tid",
                    )
                    .bind(&ctid)
                    .bind(column)
                    .bind(reason)
                    .execute(&mut *conn)
                    .await?;
                }
            }
        }
        Ok(())
    }

    /// Rows of `mappings` whose `column` points at no row: the reference
    /// becomes NULL (`on_missing = "null"`) and the row stays, noted.
    pub async fn null_orphans(
        &self,
        conn: &mut PgConnection,
        fk: &Object,
        mappings: &[String],
    ) -> Result<u64, sqlx::Error> {
        let t = quote(&self.table);
        let col = quote(fk.columns.first().map(String::as_str).unwrap_or_default());
        let stmt = format!(
            "WITH o AS (SELECT t.ctid AS r, t.xmin AS x, {key} AS k, t.{col}::text AS v FROM {t} t {join} WHERE {cond}), \
             u AS (UPDATE {t} t SET {col} = NULL FROM o WHERE t.ctid = o.r) \
             INSERT INTO fm_nulled SELECT o.x, o.k, {name}, o.v FROM o",
            key = self.key_text("t"),
            join = self.chunk_join("t"),
            cond = self.orphan_condition(fk, mappings),
            name = literal(fk.columns.first().map(String::as_str).unwrap_or_default()),
        );
        Ok(sqlx::query(sql(stmt)).execute(&mut *conn).await?.rows_affected())
    }

    /// Whether any row was taken out or changed.
    pub async fn any(&self, conn: &mut PgConnection) -> Result<bool, sqlx::Error> {
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM fm_out) OR EXISTS (SELECT 1 FROM fm_nulled)")
            .fetch_one(conn)
            .await
    }

    /// What was taken out or changed, by chunk in the source's order, with
    /// the reasons; the chunks' ledger keys lose the rows taken out.
    pub async fn outcomes(&self, conn: &mut PgConnection) -> Result<Vec<RefusedChunk>, sqlx::Error> {
        let key = self.key_text("o");
        let join_o = format!(
            "LEFT JOIN finlit_map.loaded_chunks lc ON lc.xmin = o.fm__xmin AND lc.table_name = {} AND lc.run_id = {}",
            literal(&self.table),
            self.run_id
        );
        let stmt = format!(
            "SELECT lc.mapping, lc.first_pos, lc.last_pos, lc.ctid::text, {key}, o.fm__kind, o.fm__col, o.fm__value, false, lc.load_order \
             FROM fm_out o {join_o} \
             UNION ALL \
             SELECT lc.mapping, lc.first_pos, lc.last_pos, lc.ctid::text, n.key, 'nulled', n.col, n.value, true, lc.load_order \
             FROM fm_nulled n LEFT JOIN finlit_map.loaded_chunks lc ON lc.xmin = n.fm__xmin AND lc.table_name = {tn} AND lc.run_id = {run} \
             ORDER BY 10, 4",
            tn = literal(&self.table),
            run = self.run_id,
        );
        let rows = sqlx::query(sql(stmt)).fetch_all(&mut *conn).await?;
        let mut out: Vec<RefusedChunk> = Vec::new();
        for r in rows {
            let ledger_row: Option<String> = r.try_get(3)?;
            let (kind, col, value): (String, String, Option<String>) = (r.try_get(5)?, r.try_get(6)?, r.try_get(7)?);
            let refused = match kind.as_str() {
                "orphan" | "nulled" => Refused::Orphan { column: col, value: value.unwrap_or_default() },
                "duplicate" => Refused::DuplicateKey,
                _ => Refused::Server { column: Some(col).filter(|c| !c.is_empty()), reason: value.unwrap_or_default() },
            };
            let outcome = Outcome { key: r.try_get(4)?, refused, nulled: r.try_get(8)? };
            match out.last_mut() {
                Some(c) if c.ledger_row == ledger_row && ledger_row.is_some() => c.rows.push(outcome),
                _ => out.push(RefusedChunk {
                    mapping: r.try_get::<Option<String>, _>(0)?.unwrap_or_default(),
                    first_pos: r.try_get(1)?,
                    last_pos: r.try_get(2)?,
                    ledger_row,
                    rows: vec![outcome],
                }),
            }
        }
        for c in &out {
            let gone: Vec<&str> = c.rows.iter().filter(|o| !o.nulled).map(|o| o.key.as_str()).collect();
            if let (Some(row), false) = (&c.ledger_row, gone.is_empty()) {
                sqlx::query(sql(format!(
                    "UPDATE finlit_map.loaded_chunks l SET {} WHERE ctid = $1::tid",
                    super::ledger::without_keys("l", 2)
                )))
                .bind(row)
                .bind(&gone)
                .execute(&mut *conn)
                .await?;
            }
        }
        Ok(out)
    }
}

/// Whether `objects` hold a unique set over exactly these columns.
pub fn is_key_set(o: &Object, key: &[String]) -> bool {
    o.is_key() && o.columns == key
}

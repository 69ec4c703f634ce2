//! PostgreSQL as the target: rows arrive as COPY text, land in a temporary
//! staging table, and move into the target table by key.
//!
//! Per chunk, in one transaction: COPY into staging; reject rows whose key
//! repeats later in the chunk, and rows whose foreign keys point at rows that
//! do not exist; UPDATE the rows whose values changed; INSERT the new ones.
//! Re-running a migration therefore changes nothing, and a changed document
//! updates its row. A constraint the staging checks cannot foresee (a UNIQUE
//! email, a CHECK) sends the chunk through a slow path that halves it until
//! it finds the offending rows, rejects only them, and loads the others. Self-references are set after the whole mapping has
//! loaded, so a child may come before its parent.
//!
//! Knows SQL and the plan's column list; nothing of sources or TOML.

use std::sync::atomic::{AtomicBool, Ordering};

use sqlx::{Connection, PgConnection, Row};

use super::keys::{ServerKeys, key_text};
use super::sql::{comparable, literal, quote, sql};

use crate::plan::{ColumnPlan, MappingPlan, OnMissing, Plan};
use crate::schema::SqlType;

/// A row the database refused, by its position in the chunk.
#[derive(Debug, Clone)]
pub struct DbRejection {
    pub ord: usize,
    pub column: Option<String>,
    pub reason: String,
    /// The row loaded anyway (a reference set to NULL, `on_missing = "null"`):
    /// a warning line, not a reject.
    pub warning: bool,
    /// It points at a row that is not there (yet): `sync` waits for it.
    pub orphan: bool,
    /// For an orphan: the value it points at, as text.
    pub points_at: Option<String>,
}

impl DbRejection {
    fn reject(ord: usize, column: Option<String>, reason: String) -> DbRejection {
        DbRejection { ord, column, reason, warning: false, orphan: false, points_at: None }
    }
}

/// What one chunk did to the table.
#[derive(Debug, Default, Clone, Copy)]
pub struct ChunkResult {
    pub inserted: u64,
    pub updated: u64,
    pub unchanged: u64,
}

/// A rows-with-no-parent report from the self-reference pass.
#[derive(Debug, Clone)]
pub struct Dangling {
    /// The staged row's position in its chunk.
    pub ord: i32,
    pub key: String,
    pub column: String,
    pub target: String,
}

/// The SQL for one mapping, built once.
pub struct TableSink {
    table: String,
    stage: String,
    seq: String,
    /// Removes staged rows whose key is already in the table (first loads).
    already_loaded: String,
    copy: String,
    copy_target: String,
    table_name: String,
    mapping: String,
    dedupe: String,
    /// Per referencing column: the statement that finds its orphans, and
    /// whether it sets them to NULL (`on_missing = "null"`) or removes them.
    orphans: Vec<(String, String, bool)>,
    update: Option<String>,
    insert: String,
    /// A first load before the table's keys exist (`pg::postdata`): rows
    /// are only inserted, each chunk recorded with its place in the
    /// source's order ($2..$4), repeats and orphans left to the build.
    insert_deferred: String,
    /// Set for such a load.
    pub deferred: bool,
    /// (self-referencing column, the column of the same table it points at).
    self_targets: Vec<(String, String)>,
    /// The key columns of a staged row joined as text, for messages.
    key_display: String,
    /// The ledger's run this sink records inserted keys under.
    pub run_id: i64,
    /// Column types for binary COPY; `None` means COPY's text format.
    pub binary: Option<Vec<SqlType>>,
    /// The key columns as the catalog types them (set by `prepare`).
    server_keys: Option<ServerKeys>,
    key_names: Vec<String>,
    /// The statements that make the staging table (set by `prepare`).
    stage_ddl: String,
    /// Whether this connection has the staging table as `stage_ddl` makes
    /// it: a chunk copied straight into the table needs it only when the
    /// table refuses the chunk.
    stage_ready: AtomicBool,
}

impl TableSink {
    /// Builds the statements for `m`; `slot` keeps temp-table names apart.
    pub fn new(plan: &Plan, m: &MappingPlan, slot: usize) -> TableSink {
        let table = quote(&m.table);
        let stage = format!("fm_stage_{slot}");
        let cols: Vec<&ColumnPlan> = m.columns.iter().collect();
        let names: Vec<String> = cols.iter().map(|c| quote(&c.name)).collect();
        let key: Vec<String> = m.key.iter().map(|&i| quote(&m.columns[i].name)).collect();
        let self_cols: Vec<&str> = m.self_references().map(|(_, c)| c.name.as_str()).collect();
        let is_self = |c: &ColumnPlan| self_cols.contains(&c.name.as_str());
        let key_match =
            |a: &str, b: &str| key.iter().map(|k| format!("{a}.{k} = {b}.{k}")).collect::<Vec<_>>().join(" AND ");

        // Staging numbers rows by a sequence (reset per chunk), so one COPY
        // buffer serves both the staging table and the target itself.
        let seq = format!("fm_seq_{slot}");
        // Binary COPY when every column's schema type is one the encoder
        // writes (and the mapping checks values as that type): PostgreSQL
        // then parses no text at all.
        let schema_types: Option<Vec<SqlType>> = cols
            .iter()
            .map(|c| {
                let ty = plan.schema.table(&m.table)?.column(&c.name)?.ty.clone();
                (ty == c.ty && crate::value::types::is_supported(&ty)).then_some(ty)
            })
            .collect();
        let format = if schema_types.is_some() { " (FORMAT binary)" } else { "" };
        let copy = format!("COPY {stage} ({}) FROM STDIN{format}", names.join(", "));
        let copy_target = format!("COPY {table} ({}) FROM STDIN{format}", names.join(", "));
        let key_list = key.iter().map(|k| format!("a.{k}")).collect::<Vec<_>>().join(", ");
        // Two rows of a chunk with one key: the first document wins, later ones are rejected.
        let dedupe = format!(
            "DELETE FROM {stage} a USING {stage} b WHERE {} AND a.__ord > b.__ord RETURNING a.__ord",
            key_match("a", "b")
        );
        let already_loaded = format!(
            "DELETE FROM {stage} s WHERE EXISTS (SELECT 1 FROM {table} t WHERE {}) RETURNING s.__ord",
            key_match("t", "s")
        );
        let key_display = format!("concat_ws(', ', {})", key_list.replace("a.", "s."));

        // Foreign keys to other tables: a row pointing at nothing is rejected
        // here rather than failing the whole chunk.
        let mut orphans = Vec::new();
        for c in &cols {
            let Some(target) = &c.references else {
                continue;
            };
            if is_self(c) {
                continue;
            }
            let ref_col = plan.referenced_column(m, c).unwrap_or_default();
            let (col, t, rc) = (quote(&c.name), quote(target), quote(&ref_col));
            let missing = format!("s.{col} IS NOT NULL AND NOT EXISTS (SELECT 1 FROM {t} r WHERE r.{rc} = s.{col})");
            let stmt = match c.on_missing {
                OnMissing::Reject => format!("DELETE FROM {stage} s WHERE {missing} RETURNING s.__ord, s.{col}::text"),
                // The value it had, then NULL: the row loads.
                OnMissing::Null => format!(
                    "WITH o AS (SELECT s.__ord, s.{col}::text AS v FROM {stage} s WHERE {missing}) \
                     UPDATE {stage} s SET {col} = NULL FROM o WHERE s.__ord = o.__ord RETURNING o.__ord, o.v"
                ),
            };
            orphans.push((c.name.clone(), stmt, c.on_missing == OnMissing::Null));
        }

        let updatable: Vec<&&ColumnPlan> =
            cols.iter().filter(|c| !m.key.iter().any(|&k| m.columns[k].name == c.name) && !is_self(c)).collect();
        let update = (!updatable.is_empty()).then(|| {
            let sets: Vec<String> =
                updatable.iter().map(|c| format!("{} = {}", quote(&c.name), update_value(c))).collect();
            let old: Vec<String> =
                updatable.iter().map(|c| comparable(&format!("t.{}", quote(&c.name)), &c.ty.to_string())).collect();
            let new: Vec<String> = updatable.iter().map(|c| comparable(&update_value(c), &c.ty.to_string())).collect();
            format!(
                "UPDATE {table} t SET {} FROM {stage} s WHERE {} AND ({}) IS DISTINCT FROM ({}){{ORD}}",
                sets.join(", "),
                key_match("t", "s"),
                old.join(", "),
                new.join(", ")
            )
        });
        let values: Vec<String> =
            cols.iter().map(|c| if is_self(c) { "NULL".to_string() } else { insert_value(c) }).collect();
        // Inserted keys go to the ledger in the same statement, so rollback
        // knows exactly which rows a migration produced. `{ORD}` narrows the
        // statement to a range of staged rows on the slow path.
        let ins_keys = key.iter().map(|k| format!("ins.{k}")).collect::<Vec<_>>();
        let insert = format!(
            "WITH ins AS (INSERT INTO {table} ({}) SELECT {} FROM {stage} s \
             WHERE NOT EXISTS (SELECT 1 FROM {table} t WHERE {}){{ORD}} RETURNING {}), \
             rec AS ({} SELECT {}, {}, $1, array_agg({}) FROM ins HAVING count(*) > 0) \
             SELECT count(*) FROM ins",
            names.join(", "),
            values.join(", "),
            key_match("t", "s"),
            key.join(", "),
            super::ledger::RECORD_KEYS,
            literal(&m.table),
            literal(&m.name),
            key_text(&ins_keys),
        );
        let insert_deferred = format!(
            "WITH ins AS (INSERT INTO {table} ({}) SELECT {} FROM {stage} s WHERE TRUE{{ORD}} RETURNING {}), \
             rec AS (INSERT INTO finlit_map.loaded_chunks (table_name, mapping, run_id, keys, load_order, first_pos, last_pos) \
                     SELECT {}, {}, $1, array_agg({}), $2::bigint[] || {{FIRST}}::bigint, $3, $4 FROM ins HAVING count(*) > 0) \
             SELECT count(*) FROM ins",
            names.join(", "),
            values.join(", "),
            key.join(", "),
            literal(&m.table),
            literal(&m.name),
            key_text(&ins_keys),
        );
        let self_targets = m
            .self_references()
            .map(|(_, c)| (c.name.clone(), plan.referenced_column(m, c).unwrap_or_default()))
            .collect();
        TableSink {
            table,
            stage,
            seq,
            already_loaded,
            copy,
            copy_target,
            table_name: m.table.clone(),
            mapping: m.name.clone(),
            dedupe,
            orphans,
            update,
            insert,
            insert_deferred,
            deferred: false,
            self_targets,
            key_display,
            run_id: 0,
            binary: schema_types,
            server_keys: None,
            key_names: m.key.iter().map(|&i| m.columns[i].name.clone()).collect(),
            stage_ddl: String::new(),
            stage_ready: AtomicBool::new(false),
        }
    }

    /// Reads the key columns' types and creates the staging table on this
    /// connection, now or (`stage_now` false: chunks go straight into the
    /// table) when a chunk first needs it, which spares a first load's
    /// start the DDL.
    pub async fn prepare(
        &mut self,
        conn: &mut PgConnection,
        m: &MappingPlan,
        stage_now: bool,
    ) -> Result<(), sqlx::Error> {
        self.server_keys = Some(ServerKeys::load(conn, &self.table_name, &self.key_names).await?);
        let cols: Vec<String> = m.columns.iter().map(|c| quote(&c.name)).collect();
        // Same column types as the target, none of its constraints; the
        // statements in one round trip.
        let statements = [
            format!("DROP TABLE IF EXISTS {}", self.stage),
            format!("DROP SEQUENCE IF EXISTS {}", self.seq),
            format!(
                "CREATE TEMP TABLE {} ON COMMIT DELETE ROWS AS SELECT {} FROM {} WITH NO DATA",
                self.stage,
                cols.join(", "),
                self.table
            ),
            format!("CREATE TEMP SEQUENCE {} MINVALUE 0 START 0", self.seq),
            format!("ALTER TABLE {} ADD COLUMN __ord integer NOT NULL DEFAULT nextval('{}')", self.stage, self.seq),
        ];
        self.stage_ddl = statements.join(";\n");
        self.stage_ready.store(false, Ordering::Relaxed);
        if stage_now {
            self.ensure_stage(conn).await?;
        }
        Ok(())
    }

    async fn ensure_stage(&self, conn: &mut PgConnection) -> Result<(), sqlx::Error> {
        if !self.stage_ready.load(Ordering::Relaxed) {
            sqlx::raw_sql(sql(&self.stage_ddl)).execute(&mut *conn).await?;
            self.stage_ready.store(true, Ordering::Relaxed);
        }
        Ok(())
    }

    /// Loads one chunk of COPY text rows in one transaction, which it
    /// returns open so the caller can commit a checkpoint with it. With
    /// `fast_keys` (the chunk's keys; the table was empty when the mapping
    /// began) the rows are copied straight into the table.
    pub async fn load_chunk<'c>(
        &self,
        conn: &'c mut PgConnection,
        copy_data: &[u8],
        rows: usize,
        fast_keys: Option<&[Vec<Option<String>>]>,
        origin: Option<&ChunkOrigin>,
        rejected: &mut Vec<DbRejection>,
    ) -> Result<(ChunkResult, sqlx::Transaction<'c, sqlx::Postgres>), sqlx::Error> {
        // Straight into the table (`fast_keys`): PostgreSQL still enforces
        // every key, foreign key and check; a chunk it refuses goes the
        // staging way, back from the savepoint, taken with the BEGIN in
        // one round trip.
        let mut tx = match fast_keys {
            Some(_) => conn.begin_with("BEGIN; SAVEPOINT fm_fast").await?,
            None => conn.begin().await?,
        };
        let mut first_load = false;
        let none = ChunkOrigin::default();
        let origin = origin.filter(|_| self.deferred).unwrap_or(&none);
        if let Some(keys) = fast_keys {
            match self.copy_into(&mut tx, &self.copy_target, copy_data).await {
                Ok(()) => {
                    // The keys as the server writes them, never the client's text.
                    let server_keys = self
                        .server_keys
                        .as_ref()
                        .ok_or_else(|| sqlx::Error::Protocol("the sink was not prepared before loading".into()))?;
                    let (expr, from) = server_keys.sql(7);
                    let mut uuids = Vec::new();
                    // A UUID key as 16 bytes, not 40 of text: less for the
                    // server to take apart, store and log (`docs/PERFORMANCE.md`).
                    let as_uuids = server_keys.client_uuids(keys, &mut uuids);
                    let stmt = if as_uuids {
                        "INSERT INTO finlit_map.loaded_chunks (table_name, mapping, run_id, uuid_keys, load_order, first_pos, last_pos) \
                         VALUES ($1, $2, $3, $7::uuid[], $4, $5, $6)"
                            .to_string()
                    } else if server_keys.as_bound() {
                        "INSERT INTO finlit_map.loaded_chunks (table_name, mapping, run_id, keys, load_order, first_pos, last_pos) \
                         VALUES ($1, $2, $3, $7::text[], $4, $5, $6)"
                            .to_string()
                    } else {
                        format!(
                            "INSERT INTO finlit_map.loaded_chunks (table_name, mapping, run_id, keys, load_order, first_pos, last_pos) \
                             SELECT $1, $2, $3, array_agg({expr} ORDER BY u.n), $4, $5, $6 FROM {from}"
                        )
                    };
                    let order = self.deferred.then(|| origin.order_of(0));
                    let mut q = sqlx::query(sql(stmt))
                        .bind(&self.table_name)
                        .bind(&self.mapping)
                        .bind(self.run_id)
                        .bind(order)
                        .bind(self.deferred.then_some(&origin.first))
                        .bind(self.deferred.then_some(&origin.last));
                    if as_uuids {
                        q = q.bind(&uuids);
                    } else if server_keys.as_bound() {
                        q = q.bind(server_keys.client_texts(keys));
                    } else {
                        for col in keys {
                            q = q.bind(col.as_slice());
                        }
                    }
                    q.execute(&mut *tx).await?;
                    // Not released: the commit ends it, a round trip fewer
                    // per chunk. Rows and ledger row share its `xmin`.
                    return Ok((ChunkResult { inserted: rows as u64, updated: 0, unchanged: 0 }, tx));
                }
                Err(e) if is_row_error(&e) => {
                    sqlx::query("ROLLBACK TO SAVEPOINT fm_fast").execute(&mut *tx).await?;
                    first_load = true;
                }
                Err(e) => return Err(e),
            }
        }
        let staged = async {
            self.stage_rows(&mut tx, copy_data).await?;
            if self.deferred {
                // The reader already rejected repeats within the chunk; the
                // build judges the rest against the whole table.
                self.bisect(&mut tx, origin, rejected).await
            } else {
                self.merge_staged(&mut tx, rows, first_load, rejected).await
            }
        }
        .await;
        match staged {
            Ok(result) => Ok((result, tx)),
            Err(e) => {
                // Its transaction rolls back, and with it a staging table
                // made in it: made again on the next use.
                self.stage_ready.store(false, Ordering::Relaxed);
                Err(e)
            }
        }
    }

    /// Stages a chunk's rows, numbered from 0; staging is empty at the
    /// start of each transaction (`ON COMMIT DELETE ROWS`) and takes one
    /// chunk per transaction.
    pub async fn stage_rows(&self, tx: &mut PgConnection, copy_data: &[u8]) -> Result<(), sqlx::Error> {
        self.ensure_stage(tx).await?;
        sqlx::query(sql(format!("SELECT setval('{}', 0, false)", self.seq))).execute(&mut *tx).await?;
        self.copy_into(tx, &self.copy, copy_data).await
    }

    /// The staging table's name (for statements over a staged chunk).
    pub fn stage_name(&self) -> &str {
        &self.stage
    }

    /// Staged rows into the table: repeated keys and orphans rejected,
    /// changed rows updated, new ones inserted (and recorded in the ledger).
    /// `first_load`: every row already in the table came from this run.
    pub async fn merge_staged(
        &self,
        tx: &mut PgConnection,
        rows: usize,
        first_load: bool,
        rejected: &mut Vec<DbRejection>,
    ) -> Result<ChunkResult, sqlx::Error> {
        reject_duplicates(tx, &self.dedupe, rejected).await?;
        for (col, stmt, nulls) in &self.orphans {
            for row in sqlx::query(sql(stmt)).fetch_all(&mut *tx).await? {
                let (ord, value): (i32, String) = (row.try_get(0)?, row.try_get(1)?);
                rejected.push(DbRejection {
                    ord: ord as usize,
                    column: Some(col.clone()),
                    reason: orphan_reason(&value, *nulls),
                    warning: *nulls,
                    orphan: true,
                    points_at: Some(value),
                });
            }
        }
        // On a first load every row already in the table came from this run:
        // a staged row with the same key repeats an earlier document.
        if first_load {
            reject_duplicates(tx, &self.already_loaded, rejected).await?;
        }
        let remaining = rows - rejected.iter().filter(|r| !r.warning).count();
        sqlx::query("SAVEPOINT fm_chunk").execute(&mut *tx).await?;
        let result = match self.apply(tx, None, None).await {
            Ok((updated, inserted)) => {
                sqlx::query("RELEASE SAVEPOINT fm_chunk").execute(&mut *tx).await?;
                ChunkResult { inserted, updated, unchanged: (remaining as u64).saturating_sub(inserted + updated) }
            }
            Err(e) if is_row_error(&e) => {
                sqlx::query("ROLLBACK TO SAVEPOINT fm_chunk").execute(&mut *tx).await?;
                self.bisect(tx, &ChunkOrigin::default(), rejected).await?
            }
            Err(e) => return Err(e),
        };
        Ok(result)
    }

    /// UPDATE then INSERT from staging, for every row or for the `__ord`s
    /// from first to last; a deferred load only inserts, recording the rows
    /// under `origin` (in the statement's own subtransaction, so the ledger
    /// row shares the rows' `xmin`).
    async fn apply(
        &self,
        tx: &mut PgConnection,
        ords: Option<(i32, i32)>,
        origin: Option<&ChunkOrigin>,
    ) -> Result<(u64, u64), sqlx::Error> {
        let only = |stmt: &str| match ords {
            Some((first, last)) => stmt
                .replace("{ORD}", &format!(" AND s.__ord BETWEEN {first} AND {last}"))
                .replace("{FIRST}", &first.to_string()),
            None => stmt.replace("{ORD}", "").replace("{FIRST}", "0"),
        };
        if let (true, Some(o)) = (self.deferred, origin) {
            let inserted: i64 = sqlx::query_scalar(sql(only(&self.insert_deferred)))
                .bind(self.run_id)
                .bind(o.order.to_vec())
                .bind(&o.first)
                .bind(&o.last)
                .fetch_one(&mut *tx)
                .await?;
            return Ok((0, inserted as u64));
        }
        let updated = match &self.update {
            Some(u) => sqlx::query(sql(only(u))).execute(&mut *tx).await?.rows_affected(),
            None => 0,
        };
        let inserted: i64 = sqlx::query_scalar(sql(only(&self.insert))).bind(self.run_id).fetch_one(&mut *tx).await?;
        Ok((updated, inserted as u64))
    }

    /// The slow path, after the whole chunk was refused: halves of the
    /// staged rows, each in its own savepoint, halved again where refused,
    /// down to single rows, which are rejected with the server's reason; the
    /// others load. One bad row among n costs about 2·log2(n) statements
    /// rather than n. Earlier rows go first, as row by row would.
    async fn bisect(
        &self,
        tx: &mut PgConnection,
        origin: &ChunkOrigin,
        rejected: &mut Vec<DbRejection>,
    ) -> Result<ChunkResult, sqlx::Error> {
        let ords: Vec<i32> = sqlx::query_scalar(sql(format!("SELECT __ord FROM {} ORDER BY __ord", self.stage)))
            .fetch_all(&mut *tx)
            .await?;
        let mut r = ChunkResult::default();
        // A stack of parts, the earliest on top. The whole was refused
        // already, except by a deferred load (its COPY was, not this insert).
        let mid = ords.len() / 2;
        let mut parts: Vec<&[i32]> = if self.deferred { vec![&ords] } else { vec![&ords[mid..], &ords[..mid]] };
        while let Some(part) = parts.pop() {
            let (Some(&first), Some(&last)) = (part.first(), part.last()) else { continue };
            sqlx::query("SAVEPOINT fm_row").execute(&mut *tx).await?;
            match self.apply(tx, Some((first, last)), Some(origin)).await {
                Ok((u, i)) => {
                    sqlx::query("RELEASE SAVEPOINT fm_row").execute(&mut *tx).await?;
                    r.updated += u;
                    r.inserted += i;
                    r.unchanged += (part.len() as u64).saturating_sub(u + i);
                }
                Err(e) if is_row_error(&e) && part.len() > 1 => {
                    sqlx::query("ROLLBACK TO SAVEPOINT fm_row").execute(&mut *tx).await?;
                    let mid = part.len() / 2;
                    parts.push(&part[mid..]);
                    parts.push(&part[..mid]);
                }
                Err(e) if refusal(&e).is_some() => {
                    sqlx::query("ROLLBACK TO SAVEPOINT fm_row").execute(&mut *tx).await?;
                    let (column, reason) = refusal(&e).unwrap_or_default();
                    rejected.push(DbRejection {
                        ord: first as usize,
                        warning: false,
                        orphan: false,
                        points_at: None,
                        column,
                        reason,
                    });
                    // The row must not be counted as loaded: drop it from staging.
                    sqlx::query(sql(format!("DELETE FROM {} WHERE __ord = {first}", self.stage)))
                        .execute(&mut *tx)
                        .await?;
                }
                Err(e) => return Err(e),
            }
        }
        Ok(r)
    }

    /// Whether this mapping needs the self-reference pass.
    pub fn has_self_references(&self) -> bool {
        !self.self_targets.is_empty()
    }

    /// The columns the self-reference pass reads (indices into the
    /// mapping's): its key and its self-referencing columns, nothing else.
    pub fn self_reference_columns(m: &MappingPlan) -> Vec<usize> {
        let mut keep = m.key.clone();
        for (i, _) in m.self_references() {
            if !keep.contains(&i) {
                keep.push(i);
            }
        }
        keep
    }

    /// A temporary table for the self-reference pass, dropped when its
    /// transaction ends: the columns `keep` only. Returns its name and the
    /// column types its rows are encoded with (`None`: COPY text).
    pub async fn prepare_self_stage(
        &self,
        tx: &mut PgConnection,
        m: &MappingPlan,
        keep: &[usize],
    ) -> Result<(String, Option<Vec<SqlType>>), sqlx::Error> {
        let name = format!("{}_self", self.stage);
        let cols: Vec<String> = keep.iter().map(|&i| quote(&m.columns[i].name)).collect();
        sqlx::query(sql(format!(
            "CREATE TEMP TABLE {name} ON COMMIT DROP AS SELECT {} FROM {} WITH NO DATA",
            cols.join(", "),
            self.table
        )))
        .execute(&mut *tx)
        .await?;
        // No position in a chunk here: `Dangling::ord` is 0.
        sqlx::query(sql(format!("ALTER TABLE {name} ADD COLUMN __ord integer NOT NULL DEFAULT 0")))
            .execute(&mut *tx)
            .await?;
        let types = self.binary.as_ref().map(|t| keep.iter().map(|&i| t[i].clone()).collect());
        Ok((name, types))
    }

    /// Appends rows of the columns `keep` to the self-reference stage `name`.
    pub async fn copy_to_self_stage(
        &self,
        tx: &mut PgConnection,
        name: &str,
        m: &MappingPlan,
        keep: &[usize],
        data: &[u8],
    ) -> Result<(), sqlx::Error> {
        let cols: Vec<String> = keep.iter().map(|&i| quote(&m.columns[i].name)).collect();
        let format = if self.binary.is_some() { " (FORMAT binary)" } else { "" };
        self.copy_into(tx, &format!("COPY {name} ({}) FROM STDIN{format}", cols.join(", ")), data).await
    }

    async fn copy_into(&self, tx: &mut PgConnection, statement: &str, data: &[u8]) -> Result<(), sqlx::Error> {
        let mut copy = tx.copy_in_raw(statement).await?;
        let sent = async {
            if self.binary.is_some() {
                copy.send(crate::value::types::binary::HEADER).await?;
            }
            // In messages of COPY_MESSAGE bytes: the server reads each whole
            // message into a buffer of its own, which for one chunk-sized
            // message it grows (copying) and maps anew on every COPY.
            for piece in data.chunks(COPY_MESSAGE) {
                copy.send(piece).await?;
            }
            if self.binary.is_some() {
                copy.send(crate::value::types::binary::TRAILER).await?;
            }
            Ok::<(), sqlx::Error>(())
        }
        .await;
        if let Err(e) = sent {
            // The server refused mid-stream; ending the COPY gives its reason.
            return Err(copy.finish().await.err().unwrap_or(e));
        }
        copy.finish().await.map(|_| ())
    }

    /// The second pass for self-references, once staging holds every row
    /// of the collection: sets each parent that exists and reports those
    /// that do not (their rows keep NULL). Derived from the source alone, so
    /// a run continued after a crash sets every reference too.
    pub async fn set_self_references(
        &self,
        tx: &mut PgConnection,
        m: &MappingPlan,
        stage: &str,
    ) -> Result<Vec<Dangling>, sqlx::Error> {
        let mut dangling = Vec::new();
        let key_match: Vec<String> =
            m.key.iter().map(|&i| format!("t.{k} = s.{k}", k = quote(&m.columns[i].name))).collect();
        let key_match = key_match.join(" AND ");
        for (name, target) in &self.self_targets {
            let (col, rc, t) = (quote(name), quote(target), &self.table);
            let missing = format!(
                "SELECT s.__ord, {}, s.{col}::text FROM {stage} s WHERE s.{col} IS NOT NULL \
                 AND EXISTS (SELECT 1 FROM {t} t WHERE {key_match}) \
                 AND NOT EXISTS (SELECT 1 FROM {t} p WHERE p.{rc} = s.{col})",
                self.key_display,
            );
            for row in sqlx::query(sql(&missing)).fetch_all(&mut *tx).await? {
                dangling.push(Dangling {
                    ord: row.try_get(0)?,
                    key: row.try_get(1)?,
                    column: name.clone(),
                    target: row.try_get(2)?,
                });
            }
            let update = format!(
                "UPDATE {t} t SET {col} = s.{col} FROM {stage} s WHERE {key_match} AND t.{col} IS DISTINCT FROM s.{col} \
                 AND (s.{col} IS NULL OR EXISTS (SELECT 1 FROM {t} p WHERE p.{rc} = s.{col}))",
            );
            sqlx::query(sql(&update)).execute(&mut *tx).await?;
        }
        Ok(dangling)
    }

    /// A first load that wrote its self-references with the rows: each that
    /// points at no row of the table becomes NULL and is returned, as the
    /// second pass would leave and report it. One anti-join per column.
    pub async fn null_dangling_self_references(&self, tx: &mut PgConnection) -> Result<Vec<Dangling>, sqlx::Error> {
        let mut dangling = Vec::new();
        for (name, target) in &self.self_targets {
            let (col, rc, t) = (quote(name), quote(target), &self.table);
            let stmt = format!(
                "WITH d AS (SELECT s.ctid AS r, {key} AS k, s.{col}::text AS v FROM {t} s WHERE s.{col} IS NOT NULL \
                 AND NOT EXISTS (SELECT 1 FROM {t} p WHERE p.{rc} = s.{col})), \
                 u AS (UPDATE {t} t SET {col} = NULL FROM d WHERE t.ctid = d.r) \
                 SELECT k, v FROM d ORDER BY k",
                key = self.key_display,
            );
            for (i, row) in sqlx::query(sql(&stmt)).fetch_all(&mut *tx).await?.iter().enumerate() {
                dangling.push(Dangling {
                    ord: i32::try_from(i).unwrap_or(i32::MAX),
                    key: row.try_get(0)?,
                    column: name.clone(),
                    target: row.try_get(1)?,
                });
            }
        }
        Ok(dangling)
    }
}

/// Why a row pointing at a row that is not there is rejected (or, with
/// `on_missing = "null"`, loaded with NULL).
pub fn orphan_reason(value: &str, nulled: bool) -> String {
    let why =
        format!("points at {value}, which is not in the referenced table (its document is missing or was rejected)");
    if nulled { format!("{why}; loaded with NULL (on_missing = \"null\")") } else { why }
}

/// Where a chunk of a deferred load stands in the source's order, and
/// which documents it read: what the build needs to keep the first of
/// repeated keys and to find a refused row's document.
#[derive(Debug, Clone, Default)]
pub struct ChunkOrigin {
    /// (mapping, range, documents before the chunk in its range).
    pub order: [i64; 3],
    /// The positions before and after the chunk's documents.
    pub first: Option<serde_json::Value>,
    pub last: Option<serde_json::Value>,
}

impl ChunkOrigin {
    fn order_of(&self, first_row: i64) -> Vec<i64> {
        let mut v = self.order.to_vec();
        v.push(first_row);
        v
    }
}

/// The most bytes of rows in one COPY message (`copy_into`).
const COPY_MESSAGE: usize = 64 * 1024;

/// Why a row whose key an earlier document already gave is rejected.
pub const DUPLICATE_KEY: &str = "duplicate key: an earlier document of the source gives the same key";

/// Runs a statement that removes staged rows repeating an earlier
/// document's key (it returns their `__ord`) and rejects those rows.
async fn reject_duplicates(
    tx: &mut PgConnection,
    stmt: &str,
    rejected: &mut Vec<DbRejection>,
) -> Result<(), sqlx::Error> {
    for row in sqlx::query(sql(stmt)).fetch_all(&mut *tx).await? {
        let ord: i32 = row.try_get(0)?;
        rejected.push(DbRejection::reject(ord as usize, None, DUPLICATE_KEY.into()));
    }
    Ok(())
}

/// Data exceptions (class 22) and integrity violations (class 23) are the
/// row's fault and become rejects; anything else is the run's problem.
pub(crate) fn is_row_error(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Database(d) => d.code().is_some_and(|c| c.starts_with("22") || c.starts_with("23")),
        _ => false,
    }
}

/// A row's refusal as a reject says it: the column the server names, and
/// its message with the detail (`duplicate key value violates unique
/// constraint "learners_email_key" (Key (email)=(a@x) already exists.)`);
/// `None` when the error is not the row's fault.
pub(crate) fn refusal(e: &sqlx::Error) -> Option<(Option<String>, String)> {
    let sqlx::Error::Database(d) = e else { return None };
    if !is_row_error(e) {
        return None;
    }
    let pg = d.try_downcast_ref::<sqlx::postgres::PgDatabaseError>();
    let reason = match pg.and_then(|p| p.detail()) {
        Some(detail) => format!("{} ({detail})", d.message()),
        None => d.message().to_string(),
    };
    Some((pg.and_then(|p| p.column().map(str::to_string)), reason))
}

/// What a column becomes for a new row: the staged value, or the server's default.
fn insert_value(c: &ColumnPlan) -> String {
    let q = quote(&c.name);
    match c.default.server_sql() {
        Some(d) => format!("COALESCE(s.{q}, {d})"),
        None => format!("s.{q}"),
    }
}

/// What a column becomes for an existing row. Clock and generated defaults
/// keep the stored value, so a re-run does not rewrite `created_at`.
fn update_value(c: &ColumnPlan) -> String {
    let q = quote(&c.name);
    if c.default.keeps_stored() {
        return format!("COALESCE(s.{q}, t.{q})");
    }
    match c.default.server_sql() {
        Some(v) => format!("COALESCE(s.{q}, {v})"),
        None => format!("s.{q}"),
    }
}

/// Appends one row in COPY text format.
pub fn write_row(out: &mut Vec<u8>, cells: &[crate::value::cell::Cell<'_>]) {
    for (i, c) in cells.iter().enumerate() {
        if i > 0 {
            out.push(b'\t');
        }
        c.write_copy_text(out);
    }
    out.push(b'\n');
}

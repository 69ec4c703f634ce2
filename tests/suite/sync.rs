//! `sync` against a live server (nx-27017) while a writer inserts, updates,
//! replaces and deletes documents: after `sync --until-caught-up` every
//! table equals a fresh snapshot of MongoDB's final state, whatever stopped
//! the sync on the way (Ctrl-C, `kill -9`, a terminated connection).
//!
//! The project is `tests/fixtures/sync`: accounts (a filter on `status`),
//! their addresses (an array unwound into a child table) and orders (a
//! second collection pointing at accounts).

use std::process::{Child, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bson::oid::ObjectId;
use bson::{Bson, Document, doc};

use super::db::TestDb;
use super::mongo::MongoServer;
use super::{finlit_map, root};

const TABLES: [&str; 3] = ["accounts", "addresses", "orders"];

fn project() -> String {
    root().join("tests/fixtures/sync/mappings").display().to_string()
}

/// A small deterministic generator (no dependency for it).
struct Lcg(u64);

impl Lcg {
    fn next(&mut self, n: usize) -> usize {
        self.0 = self.0.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
        ((self.0 >> 33) % n as u64) as usize
    }
}

fn addresses(r: &mut Lcg, n: usize) -> Vec<Bson> {
    let kinds = ["home", "work", "billing", "shipping"];
    (0..n.min(kinds.len()))
        .map(|i| Bson::Document(doc! { "kind": kinds[i], "city": format!("city-{}", r.next(1000)) }))
        .collect()
}

fn account(r: &mut Lcg, i: usize) -> Document {
    let n = r.next(4);
    let tier = ["gold", "silver", "bronze"][r.next(3)];
    let tags = ["a", "b", "c"][..r.next(3)].to_vec();
    doc! {
        "_id": ObjectId::new(), "name": format!("account {i}"), "status": "open",
        "tier": tier, "tags": tags, "addresses": addresses(r, n),
    }
}

fn order(r: &mut Lcg, account: &ObjectId) -> Document {
    doc! {
        "_id": ObjectId::new(), "account_id": *account, "total": (r.next(100_000) as f64) / 100.0,
        "placed_at": bson::DateTime::from_millis(1_700_000_000_000 + r.next(1_000_000) as i64 * 1000),
    }
}

/// The source's collections, and what the writer knows of them.
struct World {
    rt: tokio::runtime::Runtime,
    accounts: mongodb::Collection<Document>,
    orders: mongodb::Collection<Document>,
    /// Account ids, each with its orders' ids and whether it is closed.
    live: Vec<(ObjectId, Vec<ObjectId>, bool)>,
    r: Lcg,
    n: usize,
}

impl World {
    fn new(server: &MongoServer, seed: u64) -> World {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let client = rt.block_on(mongodb::Client::with_uri_str(server.uri())).unwrap();
        let db = client.database("finlit");
        World {
            rt,
            accounts: db.collection("accounts"),
            orders: db.collection("orders"),
            live: Vec::new(),
            r: Lcg(seed),
            n: 0,
        }
    }

    fn seed(&mut self, accounts: usize) {
        let mut docs = Vec::new();
        let mut orders = Vec::new();
        for _ in 0..accounts {
            self.n += 1;
            let a = account(&mut self.r, self.n);
            let id = a.get_object_id("_id").unwrap();
            let mine: Vec<Document> = (0..self.r.next(3)).map(|_| order(&mut self.r, &id)).collect();
            self.live.push((id, mine.iter().map(|o| o.get_object_id("_id").unwrap()).collect(), false));
            docs.push(a);
            orders.extend(mine);
        }
        self.rt.block_on(async { self.accounts.insert_many(docs).await }).unwrap();
        self.rt.block_on(async { self.orders.insert_many(orders).await }).unwrap();
    }

    /// One random write: every kind of change the sync must follow.
    fn step(&mut self) {
        let pick = self.r.next(self.live.len().max(1));
        let (accounts, orders) = (self.accounts.clone(), self.orders.clone());
        let rt = &self.rt;
        match self.r.next(10) {
            // A new account with an order (parent and child in two collections).
            0 | 1 => {
                self.n += 1;
                let a = account(&mut self.r, self.n);
                let id = a.get_object_id("_id").unwrap();
                let o = order(&mut self.r, &id);
                rt.block_on(async { accounts.insert_one(a).await }).unwrap();
                rt.block_on(async { orders.insert_one(o.clone()).await }).unwrap();
                self.live.push((id, vec![o.get_object_id("_id").unwrap()], false));
            }
            // Array elements added or removed.
            2 | 3 if !self.live.is_empty() => {
                let n = self.r.next(5);
                let list = addresses(&mut self.r, n);
                let id = self.live[pick].0;
                rt.block_on(async {
                    accounts.update_one(doc! { "_id": id }, doc! { "$set": { "addresses": list } }).await
                })
                .unwrap();
            }
            // Out of the filter, or back in.
            4 if !self.live.is_empty() => {
                let (id, _, closed) = &mut self.live[pick];
                *closed = !*closed;
                let status = if *closed { "closed" } else { "open" };
                let id = *id;
                rt.block_on(async {
                    accounts.update_one(doc! { "_id": id }, doc! { "$set": { "status": status } }).await
                })
                .unwrap();
            }
            // A whole new version.
            5 if !self.live.is_empty() => {
                self.n += 1;
                let mut a = account(&mut self.r, self.n);
                a.remove("_id");
                let (id, _, closed) = &mut self.live[pick];
                *closed = false;
                let id = *id;
                rt.block_on(async { accounts.replace_one(doc! { "_id": id }, a).await }).unwrap();
            }
            // An account and its orders deleted, the orders first.
            6 if !self.live.is_empty() => {
                let (id, mine, _) = self.live.remove(pick);
                for o in mine {
                    rt.block_on(async { orders.delete_one(doc! { "_id": o }).await }).unwrap();
                }
                rt.block_on(async { accounts.delete_one(doc! { "_id": id }).await }).unwrap();
            }
            // An order changed, added or deleted.
            7 if !self.live.is_empty() => {
                let id = self.live[pick].0;
                let o = order(&mut self.r, &id);
                rt.block_on(async { orders.insert_one(o.clone()).await }).unwrap();
                self.live[pick].1.push(o.get_object_id("_id").unwrap());
            }
            8 if self.live.get(pick).is_some_and(|l| !l.1.is_empty()) => {
                let o = self.live[pick].1.remove(0);
                rt.block_on(async { orders.delete_one(doc! { "_id": o }).await }).unwrap();
            }
            _ => {
                let Some(&o) = self.live.get(pick).and_then(|l| l.1.first()) else { return };
                let total = self.r.next(100_000) as f64 / 100.0;
                rt.block_on(async { orders.update_one(doc! { "_id": o }, doc! { "$set": { "total": total } }).await })
                    .unwrap();
            }
        }
    }

    /// Every closed account opened again, so the final state has no order
    /// pointing at an account its mapping leaves out.
    fn reopen_all(&mut self) {
        for (id, _, closed) in self.live.iter_mut().filter(|l| l.2) {
            let id = *id;
            self.rt
                .block_on(async {
                    self.accounts.update_one(doc! { "_id": id }, doc! { "$set": { "status": "open" } }).await
                })
                .unwrap();
            *closed = false;
        }
    }
}

/// A writer thread: random writes until told to stop, then every account reopened.
struct Writer {
    stop: Arc<AtomicBool>,
    writes: Arc<AtomicU64>,
    handle: std::thread::JoinHandle<()>,
}

impl Writer {
    fn start(mut world: World) -> Writer {
        let stop = Arc::new(AtomicBool::new(false));
        let writes = Arc::new(AtomicU64::new(0));
        let (s, w) = (stop.clone(), writes.clone());
        let handle = std::thread::spawn(move || {
            while !s.load(Ordering::SeqCst) {
                world.step();
                w.fetch_add(1, Ordering::SeqCst);
                std::thread::sleep(Duration::from_millis(2));
            }
            world.reopen_all();
        });
        Writer { stop, writes, handle }
    }

    /// Waits until `n` more writes happened.
    fn wait_for(&self, n: u64) {
        let until = self.writes.load(Ordering::SeqCst) + n;
        let deadline = Instant::now() + Duration::from_secs(60);
        while self.writes.load(Ordering::SeqCst) < until {
            assert!(Instant::now() < deadline, "the writer stalled");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn finish(self) -> u64 {
        self.stop.store(true, Ordering::SeqCst);
        self.handle.join().unwrap();
        self.writes.load(Ordering::SeqCst)
    }
}

fn spawn(args: &[&str]) -> Child {
    super::binary(root()).args(args).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap()
}

fn sync_args(uri: &str, db: &TestDb, rejects: &str, extra: &[&str]) -> Vec<String> {
    let mut a: Vec<String> = ["sync", &project(), "--source", uri, "--target", &db.url, "--rejects", rejects]
        .iter()
        .map(|s| s.to_string())
        .collect();
    a.extend(["--log-file".to_string(), "/dev/null".to_string()]);
    a.extend(extra.iter().map(|s| s.to_string()));
    a
}

fn strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

/// Events the target has committed so far.
fn applied(db: &TestDb) -> u64 {
    db.try_one("SELECT coalesce(sum(applied), 0)::text FROM finlit_map.sync_position")
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

fn wait_applied(db: &TestDb, child: &mut Child, at_least: u64) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while applied(db) < at_least {
        assert!(child.try_wait().unwrap().is_none(), "sync stopped early: {:?}", output(child));
        assert!(Instant::now() < deadline, "sync applied nothing new");
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn output(child: &mut Child) -> String {
    use std::io::Read;
    let mut s = String::new();
    if let Some(e) = child.stderr.as_mut() {
        let _ = e.read_to_string(&mut s);
    }
    s
}

fn interrupt(child: Child) -> (i32, String) {
    // Ctrl-C, as a terminal sends it.
    // SAFETY: a signal to a child process this test started and has not reaped.
    unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGINT) };
    let out = child.wait_with_output().unwrap();
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stderr).to_string())
}

fn digests(db: &TestDb) -> Vec<(String, String)> {
    TABLES.iter().map(|t| (db.one(&format!("SELECT count(*)::text FROM {t}")), db.digest(t))).collect()
}

/// Syncs until caught up, then compares every table with a fresh snapshot
/// of the source's final state, and validates.
fn caught_up_equals_a_fresh_snapshot(uri: &str, db: &TestDb, rejects: &str, code_wanted: i32) -> serde_json::Value {
    let (code, out, err) =
        finlit_map(root(), &strs(&sync_args(uri, db, rejects, &["--until-caught-up", "--format", "json"])));
    assert_eq!(code, code_wanted, "{out}{err}");
    let report: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(report["caught_up"], true, "{out}");
    assert_eq!(report["waiting"], 0, "{out}");

    let fresh = TestDb::new("syncfresh");
    let work = tempfile::tempdir().unwrap();
    let rej = work.path().join("r.jsonl");
    let (code, _, err) = finlit_map(
        root(),
        &["run", &project(), "--source", uri, "--target", &fresh.url, "--rejects", rej.to_str().unwrap(), "-q"],
    );
    assert_eq!(code, code_wanted, "a fresh snapshot rejects what sync rejects: {err}");
    if digests(db) != digests(&fresh) {
        let missing = |a: &TestDb, b: &TestDb, t: &str| {
            let key = format!("SELECT string_agg(x::text, ' ') FROM {t} x");
            let (ka, kb) = (a.one(&key), b.one(&key));
            let kb: std::collections::HashSet<&str> = kb.split(' ').collect();
            ka.split(' ').filter(|k| !kb.contains(k)).map(str::to_string).collect::<Vec<_>>()
        };
        let rej = std::fs::read_to_string(rejects).unwrap_or_default();
        panic!(
            "the synced target differs from a fresh snapshot: only synced {:?}, only fresh {:?}\nsync rejects:\n{rej}",
            TABLES.iter().map(|t| missing(db, &fresh, t)).collect::<Vec<_>>(),
            TABLES.iter().map(|t| missing(&fresh, db, t)).collect::<Vec<_>>()
        );
    }
    assert!(db.one("SELECT count(*)::text FROM orders").parse::<u64>().unwrap() > 0);

    let (code, out, err) = finlit_map(root(), &["validate", &project(), "--source", uri, "--target", &db.url]);
    assert!(code == 0 && out.contains("validation passed"), "{out}{err}");
    report
}

#[test]
fn sync_follows_writes_during_and_after_the_snapshot() {
    let Some(server) = MongoServer::start() else { return };
    let mut world = World::new(&server, 7);
    world.seed(300);
    let db = TestDb::new("sync");
    let work = tempfile::tempdir().unwrap();
    let rejects = work.path().join("sync-rejects.jsonl");
    let rejects = rejects.to_str().unwrap();
    let uri = server.uri();

    // Sync without a snapshot: refused, with what to do.
    let (code, _, err) = finlit_map(root(), &["schema", "apply", "--mappings", &project(), "--target", &db.url]);
    assert_eq!(code, 0, "{err}");
    let (code, _, err) = finlit_map(root(), &strs(&sync_args(&uri, &db, rejects, &["--until-caught-up"])));
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("no snapshot of a live server") && err.contains("finlit-map run"), "{err}");

    // The snapshot is taken while the writer writes.
    let writer = Writer::start(world);
    let run = spawn(&["run", &project(), "--source", &uri, "--target", &db.url, "--batch-size", "20", "-q"]);
    let out = run.wait_with_output().unwrap();
    // Orders written between reading accounts and reading orders point at
    // accounts the snapshot lacks: rejected now, applied by sync later.
    assert!(matches!(out.status.code(), Some(0 | 3)), "{}", String::from_utf8_lossy(&out.stderr));
    writer.wait_for(50);

    // Sync follows, still under writes, and is stopped with Ctrl-C.
    let mut sync = spawn(&strs(&sync_args(&uri, &db, rejects, &["--batch-size", "25"])));
    wait_applied(&db, &mut sync, 1);
    writer.wait_for(100);
    let (code, err) = interrupt(sync);
    assert_eq!(code, 130, "{err}");
    assert!(err.contains("run the same command to continue"), "{err}");
    let writes = writer.finish();
    assert!(writes >= 150, "{writes} writes");

    // The cut-over: writes stopped, sync until caught up, then compare.
    let report = caught_up_equals_a_fresh_snapshot(&uri, &db, rejects, 0);
    let mappings = report["mappings"].as_array().unwrap();
    assert_eq!(mappings.len(), 3);
    let deleted: u64 = mappings.iter().map(|m| m["deleted"].as_u64().unwrap()).sum();
    assert!(report["events_applied"].as_u64().unwrap() > 0, "{report}");
    assert!(deleted > 0 || applied(&db) > 0, "{report}");

    // An order whose account never arrives: after --retry-for (or when
    // caught up) a reject, with the change's operation and cluster time.
    let world = World::new(&server, 99);
    let stray = doc! { "_id": ObjectId::new(), "account_id": ObjectId::new(), "total": 1.5 };
    let stray_id = stray.get_object_id("_id").unwrap().to_hex();
    world.rt.block_on(async { world.orders.insert_one(stray).await }).unwrap();
    let report = caught_up_equals_a_fresh_snapshot(&uri, &db, rejects, 3);
    assert_eq!(report["mappings"][2]["rejected"], 1, "{report}");
    let lines: Vec<serde_json::Value> =
        std::fs::read_to_string(rejects).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let line = lines.iter().find(|l| l["_id"]["$oid"] == stray_id.as_str()).expect("the stray order is rejected");
    assert_eq!(line["operation"], "insert", "{line}");
    assert!(line["cluster_time"].as_str().is_some_and(|t| t.ends_with('Z')), "{line}");
    assert!(line["reason"].as_str().unwrap().contains("is not in the referenced table"), "{line}");
    assert_eq!(line["mapping"], "orders");

    // `status` shows where the sync stands.
    let (code, out, _) = finlit_map(root(), &["status", &project(), "--target", &db.url]);
    assert_eq!(code, 0);
    assert!(out.contains("sync start point") && out.contains("accounts") && out.contains("lag"), "{out}");
}

#[test]
fn sync_killed_and_disconnected_continues_to_the_same_state() {
    let Some(server) = MongoServer::start() else { return };
    let mut world = World::new(&server, 11);
    world.seed(200);
    let db = TestDb::new("synckill");
    let work = tempfile::tempdir().unwrap();
    let rejects = work.path().join("sync-rejects.jsonl");
    let rejects = rejects.to_str().unwrap();
    let uri = server.uri();
    let (code, _, err) = finlit_map(root(), &["run", &project(), "--source", &uri, "--target", &db.url, "-q"]);
    assert_eq!(code, 0, "{err}");

    let writer = Writer::start(world);
    // kill -9 at several points, each after some batches committed.
    for round in 0..3u64 {
        writer.wait_for(40);
        let before = applied(&db);
        let mut sync = spawn(&strs(&sync_args(&uri, &db, rejects, &["--batch-size", "5"])));
        wait_applied(&db, &mut sync, before + 5 + round * 3);
        sync.kill().unwrap();
        sync.wait().unwrap();
    }
    // The target's connection terminated under a running sync: it reconnects and goes on.
    writer.wait_for(40);
    let mut sync = spawn(&strs(&sync_args(&uri, &db, rejects, &["--batch-size", "5"])));
    wait_applied(&db, &mut sync, applied(&db) + 3);
    let killed = db.one(&format!(
        "SELECT count(pg_terminate_backend(pid))::text FROM pg_stat_activity WHERE datname = '{}' AND pid <> pg_backend_pid()",
        db.name
    ));
    assert!(killed.parse::<u32>().unwrap() >= 1, "the sync's connection was there to terminate");
    writer.wait_for(40);
    let after = applied(&db);
    wait_applied(&db, &mut sync, after + 3);
    let (code, err) = interrupt(sync);
    assert_eq!(code, 130, "{err}");
    assert!(err.contains("connection to the target was lost"), "{err}");
    writer.finish();

    caught_up_equals_a_fresh_snapshot(&uri, &db, rejects, 0);
    let runs = db.one("SELECT count(*)::text FROM finlit_map.runs WHERE source LIKE 'sync from%'");
    assert!(runs.parse::<u32>().unwrap() >= 5, "{runs} syncs recorded");
}

/// A mapping whose rows cannot be found from a document's `_id` alone, or
/// that keeps one of several documents' rows, is refused before anything
/// connects, each with what to do.
#[test]
fn sync_refuses_mappings_it_cannot_follow_exactly() {
    let work = tempfile::tempdir().unwrap();
    let m = super::project_with(
        work.path(),
        "CREATE TABLE days (learner TEXT NOT NULL, day DATE NOT NULL, n INTEGER, PRIMARY KEY (learner, day));
         CREATE TABLE tags (tag TEXT PRIMARY KEY);",
        "DROP TABLE tags; DROP TABLE days;",
        &[
            (
                "days",
                "source = \"days\"\ntable = \"days\"\nkey = [\"learner\", \"day\"]\n[columns]\nlearner = \"$.learner\"\nday = \"$.day\"\nn = \"$.n\"\n",
            ),
            (
                "tags",
                "source = \"posts\"\ntable = \"tags\"\nunwind = \"$.tags[*]\"\nkey = \"tag\"\non_duplicate = \"first\"\n[columns]\ntag = \"@\"\n",
            ),
        ],
    );
    let (code, _, err) = finlit_map(
        work.path(),
        &[
            "sync",
            m.to_str().unwrap(),
            "--source",
            "mongodb://127.0.0.1:1/x",
            "--target",
            "postgres://nobody@127.0.0.1:1/x",
        ],
    );
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("sync cannot follow every mapping exactly (3 problem(s))"), "{err}");
    assert!(err.contains("mapping `days`: no column is computed from `$._id` alone"), "{err}");
    assert!(err.contains("source_id = { id = \"$._id\" }"), "{err}");
    assert!(err.contains("mapping `tags`: `on_duplicate = \"first\"`"), "{err}");
}

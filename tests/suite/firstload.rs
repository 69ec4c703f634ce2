//! A first load before the tables' keys (`pg::postdata`), against a load
//! into the indexed tables: the same rows, the same rejects with the same
//! reasons, the same constraints and indexes after, whatever the chunk
//! size, the number of ranges and workers, and the source's format. The
//! rows expected are also derived here from the documents by the rules of
//! exactness (a row's own faults first, then the first of repeated keys in
//! the source's order), not from the tool's output.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use super::db::TestDb;
use super::{cli, project_with, read_rejects};

const UP: &str = "
CREATE TABLE teams (
    id     INTEGER PRIMARY KEY,
    code   TEXT NOT NULL UNIQUE,
    rating INTEGER CHECK (rating BETWEEN 0 AND 10)
);
CREATE INDEX teams_rating ON teams (rating);
COMMENT ON INDEX teams_rating IS 'by rating';
CREATE TABLE players (
    id        INTEGER PRIMARY KEY,
    team_id   INTEGER NOT NULL REFERENCES teams (id),
    coach_id  INTEGER REFERENCES teams (id),
    mentor_id INTEGER REFERENCES players (id),
    goals     INTEGER NOT NULL CONSTRAINT goals_not_negative CHECK (goals >= 0)
);
CREATE INDEX players_team ON players (team_id, goals DESC);
";

const TEAMS: &str = r#"source = "teams"
table = "teams"
key = "id"
[columns]
id = "$._id"
code = "$.code"
rating = "$.rating"
"#;

const PLAYERS: &str = r#"source = "players"
table = "players"
key = "id"
[columns]
id = "$._id"
team_id = { from = "$.team", references = "teams" }
coach_id = { from = "$.coach", references = "teams", on_missing = "null" }
mentor_id = { from = "$.mentor", references = "players" }
goals = "$.goals"
"#;

/// Teams and players with every kind of fault planted, each kind several
/// times, spread so that some repeats share a chunk and others do not.
fn documents() -> (Vec<Value>, Vec<Value>) {
    let mut teams = Vec::new();
    for i in 1..=60 {
        let mut t = json!({ "_id": i, "code": format!("T{i}"), "rating": i % 11 });
        match i % 12 {
            // A repeated id later on (the first stays).
            3 => teams.push(json!({ "_id": i + 1000, "code": format!("X{i}"), "rating": 1 })),
            // A repeated code (the unique constraint other than the key).
            5 => t["code"] = json!(format!("T{}", i - 1)),
            // Out of the check's range.
            7 => t["rating"] = json!(11 + i),
            _ => {}
        }
        teams.push(t);
        if i % 9 == 0 {
            teams.push(json!({ "_id": i, "code": format!("again{i}"), "rating": 2 }));
        }
    }
    // A code whose first holder fails the check: the next holder keeps it.
    teams.push(json!({ "_id": 200, "code": "shared", "rating": 99 }));
    teams.push(json!({ "_id": 201, "code": "shared", "rating": 3 }));
    teams.push(json!({ "_id": 1003, "code": "late", "rating": 1 }));
    let mut players = Vec::new();
    for i in 1..=90 {
        let mut p = json!({ "_id": i, "team": 1 + i % 60, "goals": i % 7 });
        match i % 10 {
            1 => p["team"] = json!(5000 + i),   // an orphan: rejected
            2 => p["coach"] = json!(7000 + i),  // a missing coach: NULL, a warning
            4 => p["mentor"] = json!(i + 3),    // a mentor who comes later
            5 => p["mentor"] = json!(9000 + i), // a mentor who never comes: dangling
            6 => p["goals"] = json!(-i),        // fails the check
            8 => p["team"] = json!(7),          // a team the check refused: an orphan
            3 => p["team"] = json!(1),
            // A mentor whose own row fails the check: dangling too.
            9 => p["mentor"] = json!(i - 3),
            _ => p["coach"] = json!(1 + (i * 7) % 60),
        }
        players.push(p);
        // Repeated ids of rows that load (a repeat of a refused row would
        // stay or not depending on whether they share a chunk, in a load
        // into indexed tables too: the repeat is judged first there).
        if i % 20 == 3 {
            players.push(json!({ "_id": i, "team": 2, "goals": 1 }));
        }
    }
    (teams, players)
}

/// The rows exactness allows, derived from the documents: per table, the
/// rows `id|…` in id order, and the `_id`s whose rows are rejected.
fn expected(teams: &[Value], players: &[Value]) -> (Vec<String>, Vec<String>, usize, usize) {
    let in_range = |r: i64| (0..=10).contains(&r);
    // Teams: the check first, then the first of each id, then of each code.
    let mut by_id: BTreeMap<i64, &Value> = BTreeMap::new();
    let mut rejected = 0;
    for t in teams.iter() {
        if !in_range(t["rating"].as_i64().unwrap()) || by_id.contains_key(&t["_id"].as_i64().unwrap()) {
            rejected += 1;
            continue;
        }
        by_id.insert(t["_id"].as_i64().unwrap(), t);
    }
    let mut kept: Vec<&Value> =
        teams.iter().filter(|t| by_id.get(&t["_id"].as_i64().unwrap()).is_some_and(|k| std::ptr::eq(*k, *t))).collect();
    let mut codes = std::collections::BTreeSet::new();
    kept.retain(|t| {
        let fresh = codes.insert(t["code"].as_str().unwrap().to_string());
        rejected += usize::from(!fresh);
        fresh
    });
    let team_ids: std::collections::BTreeSet<i64> = kept.iter().map(|t| t["_id"].as_i64().unwrap()).collect();
    let mut team_rows: Vec<(i64, String)> = kept
        .iter()
        .map(|t| (t["_id"].as_i64().unwrap(), format!("{}|{}|{}", t["_id"], t["code"].as_str().unwrap(), t["rating"])))
        .collect();
    team_rows.sort();
    // Players: orphans and the check first, then the first of each id;
    // a missing coach is NULL; mentors are set once all are loaded.
    let mut pick: BTreeMap<i64, &Value> = BTreeMap::new();
    let mut player_rejects = 0;
    for p in players {
        let id = p["_id"].as_i64().unwrap();
        let orphan = !team_ids.contains(&p["team"].as_i64().unwrap());
        if orphan || p["goals"].as_i64().unwrap() < 0 || pick.contains_key(&id) {
            player_rejects += 1;
            continue;
        }
        pick.insert(id, p);
    }
    let player_rows = pick
        .iter()
        .map(|(id, p)| {
            let coach = p["coach"].as_i64().filter(|c| team_ids.contains(c)).map_or("NULL".into(), |c| c.to_string());
            let mentor = p["mentor"].as_i64().filter(|m| pick.contains_key(m)).map_or("NULL".into(), |m| m.to_string());
            format!("{id}|{}|{coach}|{mentor}|{}", p["team"], p["goals"])
        })
        .collect();
    (team_rows.into_iter().map(|(_, r)| r).collect(), player_rows, rejected, player_rejects)
}

/// The project and its source in one format: `jsonl` (mongoexport) or
/// `bson` (mongodump).
fn project(work: &Path, format: &str) -> (PathBuf, PathBuf) {
    let mappings =
        project_with(work, UP, "DROP TABLE players; DROP TABLE teams;", &[("teams", TEAMS), ("players", PLAYERS)]);
    let src = work.join("src");
    std::fs::create_dir_all(&src).unwrap();
    let (teams, players) = documents();
    for (name, docs) in [("teams", &teams), ("players", &players)] {
        match format {
            "bson" => {
                let mut bytes = Vec::new();
                for d in docs {
                    let b = bson::Bson::try_from(d.clone()).unwrap();
                    bytes.extend(bson::serialize_to_vec(b.as_document().unwrap()).unwrap());
                }
                std::fs::write(src.join(format!("{name}.bson")), bytes).unwrap();
            }
            _ => {
                let lines: Vec<String> = docs.iter().map(|d| d.to_string()).collect();
                std::fs::write(src.join(format!("{name}.jsonl")), lines.join("\n")).unwrap();
            }
        }
    }
    (mappings, src)
}

fn rows(db: &TestDb) -> (Vec<String>, Vec<String>) {
    let text = |sql: &str| db.rows(sql).into_iter().map(|r| r[0].clone().unwrap()).collect::<Vec<_>>();
    (
        text("SELECT concat_ws('|', id, code, rating) FROM teams ORDER BY id"),
        text(
            "SELECT concat_ws('|', id, team_id, coalesce(coach_id::text, 'NULL'), coalesce(mentor_id::text, 'NULL'), goals) \
             FROM players ORDER BY id",
        ),
    )
}

/// Every constraint and index of the two tables, as the catalog defines them.
fn definitions(db: &TestDb) -> Vec<String> {
    let mut d: Vec<String> = db
        .rows(
            "SELECT conrelid::regclass || ' ' || conname || ' ' || pg_get_constraintdef(oid) FROM pg_constraint
               WHERE conrelid IN ('teams'::regclass, 'players'::regclass)
             UNION ALL SELECT indexdef || coalesce(' -- ' || obj_description(i.indexrelid, 'pg_class'), '')
               FROM pg_indexes x JOIN pg_index i ON i.indexrelid = (x.schemaname || '.' || x.indexname)::regclass
               WHERE tablename IN ('teams', 'players')",
        )
        .into_iter()
        .map(|r| r[0].clone().unwrap())
        .collect();
    d.sort();
    d
}

/// The rejects file as a multiset of (mapping, _id, column, reason, severity).
fn rejects(work: &Path) -> Vec<String> {
    let mut out: Vec<String> = read_rejects(work)
        .iter()
        .map(|r| format!("{} {} {} {} {}", r["mapping"], r["_id"], r["column"], r["reason"], r["severity"]))
        .collect();
    out.sort();
    out
}

struct Loaded {
    rows: (Vec<String>, Vec<String>),
    definitions: Vec<String>,
    rejects: Vec<String>,
    counts: Vec<(u64, u64, u64)>,
    validated: Vec<String>,
    stderr: String,
}

/// One run into a new database: `fast` lets the run create it (a first
/// load before keys); otherwise the schema is applied first and the run
/// loads into the indexed tables.
fn load(format: &str, fast: bool, args: &[&str]) -> (Loaded, TestDb, tempfile::TempDir) {
    let work = tempfile::tempdir().unwrap();
    let (mappings, src) = project(work.path(), format);
    let db = TestDb::new(if fast { "fast" } else { "indexed" });
    let (m, s) = (mappings.to_str().unwrap(), src.to_str().unwrap());
    if !fast {
        let (code, _, out) = cli(
            work.path(),
            &["schema", "apply", "--target", &db.url, "--schema", work.path().join("schema").to_str().unwrap()],
        );
        assert_eq!(code, 0, "{out}");
    }
    let mut all = vec!["run", m, "--source", s, "--target", &db.url, "--format", "json"];
    all.extend(args);
    let (code, report, stderr) = cli(work.path(), &all);
    assert_eq!(code, 3, "rejects are planted: {stderr}");
    let loaded_before_keys = report["builds"].as_array().map_or(0, Vec::len);
    assert_eq!(loaded_before_keys, if fast { 2 } else { 0 }, "{stderr}");
    let counts = report["mappings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| (m["loaded"].as_u64().unwrap(), m["rejected"].as_u64().unwrap(), m["nulled"].as_u64().unwrap()))
        .collect();
    for m in report["mappings"].as_array().unwrap() {
        assert_eq!(
            m["read"].as_u64(),
            Some(m["loaded"].as_u64().unwrap() + m["rejected"].as_u64().unwrap()),
            "read = loaded + rejected: {m}"
        );
    }
    // Every reject carries its document, whether the reader or the
    // database refused it (a refused row's document is read again); the
    // self-reference pass's warnings name the row instead.
    for r in read_rejects(work.path()) {
        if r["reason"].as_str().is_some_and(|t| t.contains(") keeps NULL in `")) {
            continue;
        }
        assert!(r["document"].is_object() && !r["_id"].is_null(), "a reject without its document: {r}");
    }
    // What validate makes of it (the planted repeats and dangling
    // references show as warnings and mismatches), every document sampled.
    let (code, _, out) = cli(work.path(), &["validate", m, "--source", s, "--target", &db.url, "--sample", "1000"]);
    let mut validated: Vec<String> = out.lines().map(str::to_string).collect();
    validated.sort();
    validated.insert(0, code.to_string());
    let loaded = Loaded {
        rows: rows(&db),
        definitions: definitions(&db),
        rejects: rejects(work.path()),
        counts,
        validated,
        stderr,
    };
    (loaded, db, work)
}

#[test]
fn a_first_load_before_keys_gives_what_a_load_into_indexed_tables_gives() {
    let (teams, players) = documents();
    let (team_rows, player_rows, team_rejects, player_rejects) = expected(&teams, &players);
    let mut reference: Option<Loaded> = None;
    for batch in ["1000", "7", "1"] {
        let (indexed, _db, _w) = load("jsonl", false, &["--batch-size", batch]);
        assert_eq!(indexed.rows, (team_rows.clone(), player_rows.clone()), "indexed, batch {batch}");
        assert_eq!(indexed.counts[0].1 as usize, team_rejects, "{}", indexed.stderr);
        assert_eq!(indexed.counts[1].1 as usize, player_rejects, "{}", indexed.stderr);
        match &reference {
            None => reference = Some(indexed),
            Some(r) => {
                assert_eq!(indexed.rejects, r.rejects, "indexed loads agree across chunk sizes");
            }
        }
    }
    let reference = reference.unwrap();
    // Before keys: every chunk size, ranges read by several workers, both formats.
    let cases: &[(&str, &[&str])] = &[
        ("jsonl", &["--batch-size", "1000"]),
        ("jsonl", &["--batch-size", "7"]),
        ("jsonl", &["--batch-size", "1"]),
        ("jsonl", &["--batch-size", "5", "--range-size", "9", "--jobs", "3"]),
        ("bson", &["--batch-size", "4", "--range-size", "13", "--jobs", "2"]),
        ("bson", &["--batch-size", "1000"]),
    ];
    for (format, args) in cases {
        let (fast, db, work) = load(format, true, args);
        let what = format!("{format} {args:?}");
        assert_eq!(fast.rows, reference.rows, "{what}");
        assert_eq!(fast.counts, reference.counts, "{what}: {}", fast.stderr);
        assert_eq!(fast.rejects, reference.rejects, "{what}");
        assert_eq!(fast.definitions, reference.definitions, "{what}");
        if args.contains(&"--range-size") {
            assert!(fast.stderr.contains("range=\"2/"), "several ranges were read: {}", fast.stderr);
        }
        assert_eq!(fast.validated, reference.validated, "{what}: validate says the same");
        // Nothing is left waiting; a re-run changes nothing.
        assert_eq!(db.one("SELECT count(*)::text FROM finlit_map.deferred"), "0");
        let (m, s) = (work.path().join("mappings"), work.path().join("src"));
        let (m, s) = (m.to_str().unwrap(), s.to_str().unwrap());
        let (code, report, out) = cli(work.path(), &["run", m, "--source", s, "--target", &db.url, "--format", "json"]);
        assert_eq!(code, 3, "{out}");
        for r in report["mappings"].as_array().unwrap() {
            assert_eq!((r["inserted"].as_u64(), r["updated"].as_u64()), (Some(0), Some(0)), "{what}: {out}");
        }
        assert!(report["builds"].as_array().is_none_or(Vec::is_empty), "a re-run loads into the built tables");
    }
}

/// A run killed while it builds a table's keys and constraints: the next
/// run finds the table loaded and the build not done (the ledger says so),
/// builds it, and ends with what a load into the indexed table gives.
#[test]
fn a_run_killed_while_building_finishes_on_the_next_run() {
    // The check is slow on purpose (2 ms a row), so the build lasts seconds.
    let up = "CREATE FUNCTION slow_positive(v integer) RETURNS boolean LANGUAGE sql
                  AS $$ SELECT pg_sleep(0.002) IS NOT NULL AND v >= 0 $$;
              CREATE TABLE items (id INTEGER PRIMARY KEY, v INTEGER NOT NULL CHECK (slow_positive(v)));
              CREATE INDEX items_v ON items (v);";
    let mapping = "source = \"items\"\ntable = \"items\"\nkey = \"id\"\n[columns]\nid = \"$._id\"\nv = \"$.v\"\n";
    let docs: Vec<String> = (0..1500)
        .map(|i| {
            let v = if i % 250 == 7 { -i } else { i };
            format!("{{\"_id\": {}, \"v\": {v}}}", if i % 300 == 11 { i - 1 } else { i })
        })
        .collect();
    let load = |fast: bool| {
        let work = tempfile::tempdir().unwrap();
        let m = project_with(work.path(), up, "DROP TABLE items; DROP FUNCTION slow_positive;", &[("items", mapping)]);
        let src = super::source(work.path(), "items.jsonl", &docs.iter().map(String::as_str).collect::<Vec<_>>());
        let db = TestDb::new(if fast { "buildkill" } else { "buildref" });
        if !fast {
            let schema = work.path().join("schema");
            let (code, _, out) =
                cli(work.path(), &["schema", "apply", "--target", &db.url, "--schema", schema.to_str().unwrap()]);
            assert_eq!(code, 0, "{out}");
        }
        (work, m, src, db)
    };
    let (rw, rm, rs, reference) = load(false);
    let (code, _, out) =
        cli(rw.path(), &["run", rm.to_str().unwrap(), "--source", rs.to_str().unwrap(), "--target", &reference.url]);
    assert_eq!(code, 3, "{out}");

    let (work, m, src, db) = load(true);
    let args = ["run", m.to_str().unwrap(), "--source", src.to_str().unwrap(), "--target", &db.url, "--format", "json"];
    let mut child = super::binary(work.path())
        .args(args)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let building = format!(
        "SELECT count(*)::text FROM pg_stat_activity WHERE datname = '{}' AND query LIKE 'ALTER TABLE%ADD CONSTRAINT%CHECK%'",
        db.name
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    while db.try_one(&building).is_none_or(|n| n == "0") {
        assert!(child.try_wait().unwrap().is_none(), "the run ended before its build");
        assert!(std::time::Instant::now() < deadline, "no build seen");
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    child.kill().unwrap();
    let _ = child.wait();
    // The ledger knows: loaded, not built.
    assert_eq!(db.one("SELECT count(*)::text FROM finlit_map.deferred"), "1");
    assert_ne!(db.one("SELECT state FROM finlit_map.tasks WHERE kind = 'build'"), "done");
    let (code, report, out) = cli(work.path(), &args);
    assert_eq!(code, 3, "{out}");
    assert!(out.contains("continuing interrupted run"), "{out}");
    assert_eq!(report["builds"].as_array().map(Vec::len), Some(1), "{out}");
    assert_eq!(db.digest("items"), reference.digest("items"));
    assert_eq!(db.one("SELECT count(*)::text FROM finlit_map.deferred"), "0");
    let defs = |d: &TestDb| {
        d.rows("SELECT pg_get_constraintdef(oid) FROM pg_constraint WHERE conrelid = 'items'::regclass ORDER BY 1")
            .into_iter()
            .chain(d.rows("SELECT indexdef FROM pg_indexes WHERE tablename = 'items' ORDER BY 1"))
            .collect::<Vec<_>>()
    };
    assert_eq!(defs(&db), defs(&reference));
    // Exactly the indexed load's rejects (reasons included), each once,
    // though the killed run's first attempt had begun to judge them.
    let (mut a, mut b) = (rejects(work.path()), rejects(rw.path()));
    a.dedup();
    b.sort();
    assert_eq!(a, b);
}

/// A UUID key loaded before its keys is recorded in the ledger as UUIDs
/// (`uuid_keys`), and means the same as text keys everywhere: a repeat
/// written in another form of the same UUID (upper case, extended JSON's
/// `$uuid`) keeps the first row in the source's order, the ledger holds
/// each loaded key once and no refused one, and rollback removes exactly
/// the loaded rows. Expected rows derived from the documents here.
#[test]
fn a_uuid_key_loaded_before_its_keys_is_recorded_as_uuids_and_means_the_same() {
    let up = "CREATE TABLE things (id UUID PRIMARY KEY, n INTEGER NOT NULL);";
    let mapping = "source = \"things\"\ntable = \"things\"\nkey = \"id\"\n[columns]\nid = \"$._id\"\nn = \"$.n\"\n";
    let uuid = |i: usize| format!("{i:08x}-0000-4000-8000-{:012x}", i * 7919);
    // Repeats of earlier ids, in a later chunk and range, written otherwise.
    let repeats: BTreeMap<usize, String> = [
        (31, format!("\"{}\"", uuid(3).to_uppercase())),
        (35, format!("{{\"$uuid\": \"{}\"}}", uuid(10))),
        (38, format!("\"{}\"", uuid(37))),
    ]
    .into();
    let docs: Vec<String> = (0..40)
        .map(|n| {
            let id = repeats.get(&n).cloned().unwrap_or_else(|| format!("\"{}\"", uuid(n)));
            format!("{{\"_id\": {id}, \"n\": {n}}}")
        })
        .collect();
    let mut expected: BTreeMap<String, usize> = BTreeMap::new();
    for n in 0..40 {
        let id = match n {
            31 => uuid(3),
            35 => uuid(10),
            38 => uuid(37),
            n => uuid(n),
        };
        expected.entry(id).or_insert(n);
    }
    let work = tempfile::tempdir().unwrap();
    let m = project_with(work.path(), up, "DROP TABLE things;", &[("things", mapping)]);
    let src = super::source(work.path(), "things.jsonl", &docs.iter().map(String::as_str).collect::<Vec<_>>());
    let db = TestDb::new("uuidkeys");
    let (m, s) = (m.to_str().unwrap(), src.to_str().unwrap());
    let args = ["--batch-size", "4", "--range-size", "13", "--jobs", "2", "--format", "json"];
    let (code, report, out) = cli(work.path(), &[&["run", m, "--source", s, "--target", &db.url][..], &args].concat());
    assert_eq!(code, 3, "three repeats are rejected: {out}");
    assert_eq!(report["builds"].as_array().map(Vec::len), Some(1), "loaded before its keys: {out}");
    let r = &report["mappings"][0];
    assert_eq!((r["read"].as_u64(), r["loaded"].as_u64(), r["rejected"].as_u64()), (Some(40), Some(37), Some(3)));
    let rows: Vec<(String, usize)> = db
        .rows("SELECT id::text, n::text FROM things ORDER BY id")
        .into_iter()
        .map(|r| (r[0].clone().unwrap(), r[1].as_deref().unwrap().parse().unwrap()))
        .collect();
    assert_eq!(rows, expected.clone().into_iter().collect::<Vec<_>>());
    // Recorded as UUIDs, each loaded key once, whichever column holds it.
    assert_ne!(db.one("SELECT count(*)::text FROM finlit_map.loaded_chunks WHERE uuid_keys IS NOT NULL"), "0");
    let ledger: Vec<String> = db
        .rows("SELECT k FROM finlit_map.loaded_chunks l, unnest(coalesce(l.keys, l.uuid_keys::text[])) k ORDER BY k")
        .into_iter()
        .map(|r| r[0].clone().unwrap())
        .collect();
    assert_eq!(ledger, expected.keys().cloned().collect::<Vec<_>>());
    let (code, _, out) = cli(work.path(), &["validate", m, "--source", s, "--target", &db.url]);
    assert!(out.contains("missing rows:      0"), "{code} {out}");
    let (code, _, out) = cli(work.path(), &["rollback", m, "--target", &db.url, "--all", "--confirm", &db.name]);
    assert_eq!(code, 0, "{out}");
    assert_eq!(db.one("SELECT count(*)::text FROM things"), "0");
}

/// A UNIQUE column repeated within one chunk of a UUID-keyed table loaded
/// before its keys: the build orders the repeats by their place in the
/// chunk, found among the ledger's UUIDs, and keeps the first in the
/// source's order. Expected rows derived from the documents here.
#[test]
fn a_unique_value_repeated_within_a_chunk_of_uuid_keys_keeps_the_first() {
    let up = "CREATE TABLE tagged (id UUID PRIMARY KEY, tag TEXT UNIQUE, n INTEGER NOT NULL);";
    let mapping = "source = \"tagged\"\ntable = \"tagged\"\nkey = \"id\"\n[columns]\nid = \"$._id\"\ntag = \"$.tag\"\nn = \"$.n\"\n";
    let uuid = |i: usize| format!("{:08x}-1111-4000-8000-{i:012x}", 0xffff_ffff - i);
    let tag = |n: usize| match n {
        6 => "t5".to_string(),
        9 => "t2".to_string(),
        n => format!("t{n}"),
    };
    let docs: Vec<String> =
        (0..12).map(|n| format!("{{\"_id\": \"{}\", \"tag\": \"{}\", \"n\": {n}}}", uuid(n), tag(n))).collect();
    let mut first: BTreeMap<String, usize> = BTreeMap::new();
    for n in 0..12 {
        first.entry(tag(n)).or_insert(n);
    }
    let mut expected: Vec<(String, String)> = first.iter().map(|(t, &n)| (uuid(n), t.clone())).collect();
    expected.sort();
    let work = tempfile::tempdir().unwrap();
    let m = project_with(work.path(), up, "DROP TABLE tagged;", &[("tagged", mapping)]);
    let src = super::source(work.path(), "tagged.jsonl", &docs.iter().map(String::as_str).collect::<Vec<_>>());
    let db = TestDb::new("uuidtags");
    let (m, s) = (m.to_str().unwrap(), src.to_str().unwrap());
    // Chunks of 1, 8 and 3 documents: 5 and 6 share one, 2 and 9 do not; the
    // first chunk keeps its UUIDs (the build rewrites only chunks it refused rows of).
    let (code, report, out) =
        cli(work.path(), &["run", m, "--source", s, "--target", &db.url, "--batch-size", "8", "--format", "json"]);
    assert_eq!(code, 3, "two repeats are rejected: {out}");
    assert_eq!(report["builds"].as_array().map(Vec::len), Some(1), "loaded before its keys: {out}");
    assert_ne!(db.one("SELECT count(*)::text FROM finlit_map.loaded_chunks WHERE uuid_keys IS NOT NULL"), "0");
    let rows: Vec<(String, String)> = db
        .rows("SELECT id::text, tag FROM tagged ORDER BY id")
        .into_iter()
        .map(|r| (r[0].clone().unwrap(), r[1].clone().unwrap()))
        .collect();
    assert_eq!(rows, expected);
    let ledger: Vec<String> = db
        .rows("SELECT k FROM finlit_map.loaded_chunks l, unnest(coalesce(l.keys, l.uuid_keys::text[])) k ORDER BY k")
        .into_iter()
        .map(|r| r[0].clone().unwrap())
        .collect();
    assert_eq!(ledger, expected.iter().map(|(id, _)| id.clone()).collect::<Vec<_>>());
    let rejected: Vec<String> = read_rejects(work.path()).iter().map(|r| r["_id"].to_string()).collect();
    assert_eq!(rejected.len(), 2, "{rejected:?}");
    for n in [6, 9] {
        assert!(rejected.iter().any(|id| id.contains(&uuid(n))), "{n} is rejected: {rejected:?}");
    }
}

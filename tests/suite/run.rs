//! `finlit-map run` against a real PostgreSQL, one throw-away database per test.

use std::collections::BTreeMap;
use std::path::Path;

use bson::Document;
use serde_json::Value;

use super::db::TestDb;
use super::mongo::read_bson;
use super::{TABLES, dump, finlit_map, read_rejects, root};

/// Runs `finlit-map run` in `cwd` (where rejects.jsonl and migration.log land).
pub fn run(cwd: &Path, source: &Path, target: &str, extra: &[&str]) -> (i32, Value, String) {
    let mappings = root().join("mappings");
    let args = ["run", path(&mappings), "--source", path(source), "--target", target, "--format", "json"];
    let (code, stdout, stderr) = finlit_map(cwd, &[&args[..], extra].concat());
    (code, serde_json::from_str(&stdout).unwrap_or(Value::Null), stderr)
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn mapping<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["mappings"].as_array().unwrap().iter().find(|m| m["mapping"] == name).unwrap()
}

#[test]
fn the_example_dump_loads_completely_and_a_rerun_changes_nothing() {
    let db = TestDb::new("full");
    let work = tempfile::tempdir().unwrap();
    let (code, report, stderr) = run(work.path(), &dump(), &db.url, &[]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stderr.contains("created database") && stderr.contains("applied schema migration 5"), "{stderr}");
    assert_eq!(stderr.matches("created database").count(), 1, "said once: {stderr}");

    // Every table holds what the source implies, counted here from the BSON itself.
    let docs: BTreeMap<&str, Vec<Document>> = TABLES
        .iter()
        .filter(|t| !matches!(**t, "item_kc_mappings" | "kc_prerequisites" | "learning_item_variants"))
        .map(|t| (*t, read_bson(&dump().join(format!("{t}.bson")))))
        .collect();
    let array_len = |coll: &str, field: &str| -> usize {
        docs[coll].iter().map(|d| d.get_array(field).map(|a| a.len()).unwrap_or(0)).sum()
    };
    let mut expected: BTreeMap<&str, usize> = docs.iter().map(|(t, d)| (*t, d.len())).collect();
    expected.insert("item_kc_mappings", array_len("learning_items", "kc_mappings"));
    expected.insert("kc_prerequisites", array_len("knowledge_components", "prerequisites"));
    let entries: usize =
        docs["learning_items"].iter().map(|d| d.get_document("cultural_variants").map_or(0, |v| v.len())).sum();
    expected.insert("learning_item_variants", entries);
    for t in TABLES {
        let n: usize = db.one(&format!("SELECT count(*)::text FROM {t}")).parse().unwrap();
        assert_eq!(n, expected[t], "{t}");
        assert!(n > 0, "{t} is empty");
    }
    for m in report["mappings"].as_array().unwrap() {
        let sum = m["loaded"].as_u64().unwrap() + m["rejected"].as_u64().unwrap() + m["filtered"].as_u64().unwrap();
        assert_eq!(m["read"].as_u64().unwrap(), sum, "{m}");
    }

    // Self-references: every child found its parent although children come first.
    let with_parent = docs["knowledge_components"].iter().filter(|d| d.get_object_id("parent_id").is_ok()).count();
    assert_eq!(db.one("SELECT count(parent_kc_id)::text FROM knowledge_components"), with_parent.to_string());

    // No orphan foreign keys anywhere (every FK of the schema, checked generically).
    let fks = db.rows(
        "SELECT conrelid::regclass::text, a.attname::text, confrelid::regclass::text, af.attname::text
         FROM pg_constraint c
         JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = c.conkey[1]
         JOIN pg_attribute af ON af.attrelid = c.confrelid AND af.attnum = c.confkey[1]
         WHERE c.contype = 'f'",
    );
    assert!(fks.len() >= 14, "{fks:?}");
    for fk in fks {
        let [t, c, rt, rc] = [0, 1, 2, 3].map(|i| fk[i].clone().unwrap());
        let orphans = db.one(&format!(
            "SELECT count(*)::text FROM {t} x WHERE x.{c} IS NOT NULL AND NOT EXISTS (SELECT 1 FROM {rt} r WHERE r.{rc} = x.{c})"
        ));
        assert_eq!(orphans, "0", "{t}.{c} -> {rt}");
    }

    // A second run changes nothing.
    let before: Vec<String> = TABLES.iter().map(|t| db.digest(t)).collect();
    let (code, report2, stderr) = run(work.path(), &dump(), &db.url, &[]);
    assert_eq!(code, 0, "{stderr}");
    for m in report2["mappings"].as_array().unwrap() {
        assert_eq!((m["inserted"].as_u64(), m["updated"].as_u64()), (Some(0), Some(0)), "{m}");
    }
    let after: Vec<String> = TABLES.iter().map(|t| db.digest(t)).collect();
    assert_eq!(before, after);
    // Every event reached the log: each mapping's end, each migration; and
    // stderr said each thing once.
    let log = std::fs::read_to_string(work.path().join("migration.log")).unwrap();
    let mappings = report["mappings"].as_array().unwrap().len();
    assert_eq!(log.matches("mapping finished").count(), 2 * mappings, "two runs:\n{log}");
    let migrations = std::fs::read_dir(root().join("schema"))
        .unwrap()
        .filter(|f| f.as_ref().unwrap().file_name().to_string_lossy().ends_with(".up.sql"))
        .count();
    assert_eq!(log.matches("applied schema migration").count(), migrations, "{log}");
    assert_eq!(stderr.matches("created database").count(), 0, "the second run creates nothing");
    assert!(!work.path().join("rejects.jsonl").exists(), "a clean run writes no rejects file");
}

#[test]
fn a_learner_row_equals_its_document_column_by_column() {
    let db = TestDb::new("learner");
    let work = tempfile::tempdir().unwrap();
    let (code, _, stderr) = run(work.path(), &dump(), &db.url, &["--collection", "learners"]);
    assert_eq!(code, 0, "{stderr}");
    let ns = uuid::Uuid::parse_str("3d5c1a4e-8f2b-5c7d-9e1f-6a4b2c8d0e7f").unwrap();
    let learners = read_bson(&dump().join("learners.bson"));
    // One learner with every optional field, one relying on defaults and transforms.
    let full = learners
        .iter()
        .find(|d| d.get_document("profile").unwrap().contains_key("english_proficiency") && d.contains_key("timezone"))
        .unwrap();
    let sparse = learners
        .iter()
        .find(|d| {
            !d.get_document("profile").unwrap().contains_key("english_proficiency") && !d.contains_key("timezone")
        })
        .unwrap();
    for d in [full, sparse] {
        let id = uuid::Uuid::new_v5(&ns, d.get_object_id("_id").unwrap().to_hex().as_bytes());
        let p = d.get_document("profile").unwrap();
        let g = d.get_document("gamification").unwrap();
        let ts = |v: &bson::Bson| v.as_datetime().unwrap().to_chrono().format("%Y-%m-%d %H:%M:%S%.3f").to_string();
        let level = d.get_str("financial_experience_level").unwrap();
        let goals: Vec<String> =
            p.get_array("financial_goals").unwrap().iter().map(|v| format!("\"{}\"", v.as_str().unwrap())).collect();
        let expected: Vec<(&str, String)> = vec![
            ("learner_id", id.to_string()),
            ("email", d.get_str("email").unwrap().trim().to_lowercase()),
            ("display_name", d.get_str("display_name").unwrap().to_string()),
            ("native_language", p.get_str("native_language").unwrap().to_string()),
            ("english_proficiency", p.get_str("english_proficiency").unwrap_or("intermediate").to_string()),
            ("immigration_status", p.get_str("immigration_status").unwrap().to_string()),
            ("financial_experience_level", if level == "beginner" { "novice".into() } else { level.to_string() }),
            ("daily_goal_minutes", g.get_i32("daily_goal_minutes").unwrap().to_string()),
            ("timezone", d.get_str("timezone").unwrap_or("America/New_York").to_string()),
            ("streak_count", g.get_i32("streak_count").unwrap().to_string()),
            // The day of that moment in the learner's zone, as PostgreSQL computes it.
            (
                "streak_last_date",
                db.one(&format!(
                    "SELECT (to_timestamp({} / 1000.0) AT TIME ZONE '{}')::date::text",
                    g.get_datetime("streak_last_date").unwrap().timestamp_millis(),
                    d.get_str("timezone").unwrap_or("America/New_York")
                )),
            ),
            ("total_xp", g.get_i32("total_xp").unwrap().to_string()),
            ("country_of_origin", p.get_str("country_of_origin").unwrap().to_string()),
            ("visa_type", p.get_str("visa_type").unwrap().to_string()),
            ("has_ssn", p.get_bool("has_ssn").unwrap().to_string()),
            ("sends_remittances", p.get_bool("sends_remittances").unwrap().to_string()),
            ("financial_goals", format!("[{}]", goals.join(","))),
            ("created_at", ts(d.get("created_at").unwrap())),
            ("last_active_at", ts(d.get("last_active_at").unwrap())),
        ];
        let cols: Vec<String> = expected
            .iter()
            .map(|(c, _)| match *c {
                "has_ssn" | "sends_remittances" => format!("{c}::text"),
                "created_at" | "last_active_at" => {
                    format!("to_char({c}, 'YYYY-MM-DD HH24:MI:SS.MS')")
                }
                _ => format!("{c}::text"),
            })
            .collect();
        let row = &db.rows(&format!("SELECT {} FROM learners WHERE learner_id = '{id}'", cols.join(", ")))[0];
        for ((col, want), got) in expected.iter().zip(row) {
            assert_eq!(got.as_deref(), Some(want.as_str()), "learner {id} column {col}");
        }
    }
}

/// Writes extended-JSON collections into a temp dir.
fn json_source(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (name, text) in files {
        std::fs::write(dir.path().join(format!("{name}.jsonl")), text).unwrap();
    }
    dir
}

const LEARNER: &str = r#"{"_id":{"$oid":"65a000000000000000000001"},"email":"ana@example.com","display_name":"Ana","profile":{"native_language":"Spanish"},"gamification":{"total_xp":10,"streak_count":1,"daily_goal_minutes":15},"created_at":{"$date":"2025-01-01T00:00:00Z"}}"#;

#[test]
fn an_edited_document_updates_its_row() {
    let db = TestDb::new("edit");
    let work = tempfile::tempdir().unwrap();
    let src = json_source(&[("learners", LEARNER)]);
    let (code, _, stderr) = run(work.path(), src.path(), &db.url, &["--collection", "learners"]);
    assert_eq!(code, 0, "{stderr}");
    let created = db.one("SELECT created_at::text FROM learners");
    std::fs::write(
        src.path().join("learners.jsonl"),
        LEARNER.replace("\"Ana\"", "\"Ana María\"").replace(":10,", ":25,"),
    )
    .unwrap();
    let (code, report, stderr) = run(work.path(), src.path(), &db.url, &["--collection", "learners"]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(mapping(&report, "learners")["updated"], 1);
    assert_eq!(db.one("SELECT display_name || ' ' || total_xp FROM learners"), "Ana María 25");
    assert_eq!(db.one("SELECT created_at::text FROM learners"), created);
    assert_eq!(db.one("SELECT count(*)::text FROM learners"), "1");
}

#[test]
fn bad_documents_go_to_the_rejects_file_and_the_rest_loads() {
    let db = TestDb::new("bad");
    let work = tempfile::tempdir().unwrap();
    let good2 = LEARNER.replace("01\"}", "02\"}").replace("ana@", "bo@");
    let learners = [
        LEARNER.to_string(),
        good2,
        // wrong type: a string where an integer belongs
        LEARNER.replace("01\"}", "03\"}").replace("ana@", "c@").replace("\"total_xp\":10", "\"total_xp\":\"lots\""),
        // missing required field
        LEARNER.replace("01\"}", "04\"}").replace("\"email\":\"ana@example.com\",", ""),
        // out of range for INTEGER
        LEARNER
            .replace("01\"}", "05\"}")
            .replace("ana@", "e@")
            .replace("\"streak_count\":1", "\"streak_count\":{\"$numberLong\":\"3000000000\"}"),
        // over VARCHAR(255)
        LEARNER.replace("01\"}", "06\"}").replace("ana@", "f@").replace("\"Ana\"", &format!("\"{}\"", "x".repeat(256))),
        // the same email as the first: the UNIQUE constraint rejects it in the database
        LEARNER.replace("01\"}", "07\"}"),
    ];
    let interactions = [
        r#"{"_id":{"$oid":"65b000000000000000000001"},"learner_id":{"$oid":"65a000000000000000000001"},"item_id":{"$oid":"65c000000000000000000001"},"created_at":{"$date":"2025-01-02T00:00:00Z"}}"#,
    ];
    let items = r#"{"_id":{"$oid":"65c000000000000000000001"},"type":"video","title":"T","content":{}}"#;
    let orphan = interactions[0]
        .replace("b000000000000000000001", "b000000000000000000002")
        .replace("a000000000000000000001", "a0000000000000000000ff");
    let src = json_source(&[
        ("learners", &learners.join("\n")),
        ("learning_items", items),
        ("interactions", &format!("{}\n{orphan}", interactions[0])),
    ]);
    let (code, report, stderr) = run(
        work.path(),
        src.path(),
        &db.url,
        &["--collection", "learners", "--collection", "learning_items", "--collection", "interactions"],
    );
    assert_eq!(code, 3, "exit code 3 = finished with rejects\n{stderr}");
    let l = mapping(&report, "learners");
    assert_eq!((l["read"].as_u64(), l["loaded"].as_u64(), l["rejected"].as_u64()), (Some(7), Some(2), Some(5)), "{l}");
    assert_eq!(mapping(&report, "interactions")["rejected"], 1);
    assert_eq!(db.one("SELECT count(*)::text FROM learners"), "2");
    assert_eq!(db.one("SELECT count(*)::text FROM interactions"), "1");

    let rejects = read_rejects(work.path());
    let by_id = |oid: &str| {
        rejects.iter().find(|r| r["_id"]["$oid"] == oid).unwrap_or_else(|| panic!("{oid} not rejected: {rejects:?}"))
    };
    let expect = [
        ("65a000000000000000000003", "total_xp", "string \"lots\" is not a number"),
        ("65a000000000000000000004", "email", "required value is missing or null"),
        ("65a000000000000000000005", "streak_count", "int64 3000000000 is out of range for integer"),
        ("65a000000000000000000006", "display_name", "string of 256 characters is longer than varchar(255)"),
        ("65a000000000000000000007", "", "duplicate key value violates unique constraint"),
        ("65b000000000000000000002", "learner_id", "which is not in the referenced table"),
    ];
    for (oid, column, reason) in expect {
        let r = by_id(oid);
        assert!(r["reason"].as_str().unwrap().contains(reason), "{r}");
        if !column.is_empty() {
            assert_eq!(r["column"], column, "{r}");
        }
        assert_eq!(r["document"]["_id"]["$oid"], oid, "the document itself is kept");
    }
}

#[test]
fn a_dry_run_writes_nothing() {
    let db = TestDb::new("dry");
    let work = tempfile::tempdir().unwrap();
    let (code, report, stderr) = run(work.path(), &dump(), &db.url, &["--dry-run"]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(report["dry_run"], true);
    assert_eq!(mapping(&report, "learners")["loaded"], 250);
    let cols = mapping(&report, "learners")["columns"].as_array().unwrap();
    let tz = cols.iter().find(|c| c["column"] == "timezone").unwrap();
    assert!(tz["defaults"].as_u64().unwrap() > 0, "{tz}");
    assert!(!db.exists(), "a dry run must not even create the database");
}

#[test]
fn a_truncated_bson_file_fails_with_a_clear_message() {
    let db = TestDb::new("trunc");
    let work = tempfile::tempdir().unwrap();
    let src = tempfile::tempdir().unwrap();
    let bytes = std::fs::read(dump().join("achievements.bson")).unwrap();
    std::fs::write(src.path().join("achievements.bson"), &bytes[..bytes.len() - 40]).unwrap();
    let (code, _, stderr) = run(work.path(), src.path(), &db.url, &["--collection", "achievements"]);
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("achievements.bson: truncated document at byte offset"), "{stderr}");
    // Nothing half-loaded: the chunk holding the broken document is never committed.
    assert_eq!(db.one("SELECT count(*)::text FROM achievements"), "0");
}

/// Issue 10, item 12: a password given as a parameter (here from `.env`;
/// the server trusts local connections, so it is ignored) appears nowhere,
/// on success or on failure.
#[test]
fn passwords_in_parameters_never_show() {
    let db = TestDb::new("secret");
    let work = tempfile::tempdir().unwrap();
    let src = json_source(&[("learners", LEARNER)]);
    let url = format!("{}?password=s3cr3t-value", db.url);
    std::fs::write(work.path().join(".env"), format!("DATABASE_URL={url}\n")).unwrap();
    let mappings = root().join("mappings");
    let args = ["run", path(&mappings), "--collection", "learners", "--source", path(src.path())];
    let (code, stdout, stderr) = finlit_map(work.path(), &args);
    assert_eq!(code, 0, "{stderr}");
    // A failure names the target too: a database on a port nobody listens on.
    let bad = "postgres://u@127.0.0.1:1/x?sslmode=disable&password=s3cr3t-value";
    let (code, stdout2, stderr2) = finlit_map(work.path(), &[&args[..], &["--target", bad]].concat());
    assert_eq!(code, 1, "{stderr2}");
    assert!(stderr2.contains("password=***"), "{stderr2}");
    let log = std::fs::read_to_string(work.path().join("migration.log")).unwrap();
    for text in [&stdout, &stderr, &stdout2, &stderr2, &log] {
        assert!(!text.contains("s3cr3t"), "a password leaked: {text}");
    }
}

#[test]
fn connection_strings_come_from_a_dotenv_file() {
    let db = TestDb::new("dotenv");
    let work = tempfile::tempdir().unwrap();
    let src = json_source(&[("learners", LEARNER)]);
    std::fs::write(work.path().join(".env"), format!("DATABASE_URL={}\nMONGO_URI={}\n", db.url, src.path().display()))
        .unwrap();
    let (code, _, stderr) =
        finlit_map(work.path(), &["run", path(&root().join("mappings")), "--collection", "learners"]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(db.one("SELECT count(*)::text FROM learners"), "1");
}

#[test]
fn max_rejects_stops_the_run() {
    let db = TestDb::new("maxrej");
    let work = tempfile::tempdir().unwrap();
    let bad: Vec<String> = (1..=5)
        .map(|i| LEARNER.replace("01\"}", &format!("1{i}\"}}")).replace("\"email\":\"ana@example.com\",", ""))
        .collect();
    let src = json_source(&[("learners", &bad.join("\n"))]);
    let (code, _, stderr) = run(work.path(), src.path(), &db.url, &["--collection", "learners", "--max-rejects", "2"]);
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("stopped: 5 rejects, more than --max-rejects 2"), "{stderr}");
    let lines = std::fs::read_to_string(work.path().join("rejects.jsonl")).unwrap().lines().count();
    assert_eq!(lines, 5, "every reject found so far is in the file");
}

#[test]
fn on_a_first_load_the_first_of_duplicate_keys_wins_and_later_ones_are_rejected() {
    let other = LEARNER.replace("01\"}", "02\"}").replace("ana@", "bo@");
    // The same _id again, with other values (and a free email).
    let again = LEARNER.replace("\"Ana\"", "\"Ana again\"").replace("ana@", "ana2@");
    let src = json_source(&[("learners", &[LEARNER.to_string(), other, again].join("\n"))]);
    // Within one chunk, and across chunks (one row per chunk).
    for batch in ["5000", "1"] {
        let db = TestDb::new("dup");
        let work = tempfile::tempdir().unwrap();
        let (code, report, stderr) =
            run(work.path(), src.path(), &db.url, &["--collection", "learners", "--batch-size", batch]);
        assert_eq!(code, 3, "batch {batch}: {stderr}");
        let l = mapping(&report, "learners");
        assert_eq!((l["loaded"].as_u64(), l["rejected"].as_u64()), (Some(2), Some(1)), "batch {batch}: {l}");
        assert_eq!(db.one("SELECT string_agg(display_name, ',' ORDER BY display_name) FROM learners"), "Ana,Ana");
        let rejects = std::fs::read_to_string(work.path().join("rejects.jsonl")).unwrap();
        assert!(rejects.contains("duplicate key: an earlier document") && rejects.contains("Ana again"), "{rejects}");
    }
}

/// A `--collection` that names nothing is bad usage: exit 2, the names
/// listed and the likely one suggested.
#[test]
fn an_unknown_collection_is_bad_usage_with_a_suggestion() {
    let dump = dump();
    let (code, _, stderr) = finlit_map(
        root(),
        &["run", "mappings", "--source", dump.to_str().unwrap(), "--dry-run", "--collection", "lerners"],
    );
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("no mapping, collection or table is named `lerners` (did you mean `learners`?)"),
        "{stderr}"
    );
    assert!(stderr.contains("the names are: achievements,"), "{stderr}");
}

/// Run from the wrong directory, or with a source path that is not there:
/// the message says what is missing and what to do.
#[test]
fn a_missing_mapping_directory_or_source_says_so() {
    let elsewhere = tempfile::tempdir().unwrap();
    let (code, _, stderr) = finlit_map(elsewhere.path(), &["check"]);
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("no mapping directory mappings here"), "{stderr}");
    assert!(stderr.contains("run from the project root"), "{stderr}");
    let (code, _, stderr) = finlit_map(root(), &["run", "mappings", "--source", "/no/such/dump", "--dry-run"]);
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("source /no/such/dump: no such file or directory"), "{stderr}");
}

/// `-q`, `-v`, `RUST_LOG` and `--color` on what goes to stderr.
#[test]
fn verbosity_and_color_flags() {
    let dump = dump();
    let run = |flags: &[&str], rust_log: Option<&str>| {
        let work = tempfile::tempdir().unwrap();
        let mut cmd = assert_cmd::Command::cargo_bin("finlit-map").unwrap();
        cmd.current_dir(root()).env_remove("RUST_LOG").env_remove("NO_COLOR");
        if let Some(l) = rust_log {
            cmd.env("RUST_LOG", l);
        }
        let log = work.path().join("m.log");
        let out = cmd
            .args(["run", "mappings", "--source", dump.to_str().unwrap(), "--dry-run", "--collection", "learners"])
            .args(["--log-file", log.to_str().unwrap(), "--rejects", work.path().join("r.jsonl").to_str().unwrap()])
            .args(flags)
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        String::from_utf8_lossy(&out.stderr).to_string()
    };
    let plain = run(&[], None);
    assert!(plain.contains("run started") && !plain.contains('\u{1b}'), "{plain}");
    assert!(!plain.contains("direct_copy"), "debug events need -v: {plain}");
    assert!(!run(&["-q"], None).contains("run started"));
    assert!(run(&["-v"], None).contains("direct_copy"));
    assert!(!run(&[], Some("finlit_map=warn")).contains("run started"));
    assert!(run(&["--color", "always"], None).contains('\u{1b}'));
}

/// A MongoDB that is not there: one sentence with the host and the cause,
/// on stderr and in the log, within seconds.
#[test]
fn an_unreachable_mongodb_is_one_clear_sentence_also_in_the_log() {
    let work = tempfile::tempdir().unwrap();
    let log = work.path().join("m.log");
    let started = std::time::Instant::now();
    let (code, _, stderr) = finlit_map(
        root(),
        &[
            "run",
            "mappings",
            "--source",
            "mongodb://127.0.0.1:1/finlit",
            "--dry-run",
            "--log-file",
            log.to_str().unwrap(),
        ],
    );
    assert_eq!(code, 1, "{stderr}");
    assert!(started.elapsed().as_secs() < 30);
    assert!(stderr.contains("cannot reach MongoDB at 127.0.0.1:1: connection refused"), "{stderr}");
    assert!(!stderr.contains("Topology"), "no driver dump: {stderr}");
    let logged = std::fs::read_to_string(&log).unwrap();
    assert!(logged.contains("cannot reach MongoDB at 127.0.0.1:1"), "{logged}");
}

/// The summary table fits 80 columns with the shipped mappings.
#[test]
fn the_summary_fits_80_columns() {
    let dump = dump();
    let work = tempfile::tempdir().unwrap();
    let log = work.path().join("m.log");
    let (code, stdout, _) = finlit_map(
        root(),
        &[
            "run",
            "mappings",
            "--source",
            dump.to_str().unwrap(),
            "--dry-run",
            "--log-file",
            log.to_str().unwrap(),
            "--rejects",
            work.path().join("r").to_str().unwrap(),
        ],
    );
    assert_eq!(code, 0);
    let table: Vec<&str> = stdout.lines().take_while(|l| !l.starts_with("total")).collect();
    assert!(table.len() > 10, "{stdout}");
    for l in table {
        assert!(l.chars().count() <= 80, "{} columns: {l}", l.chars().count());
    }
}

//! Exact or refused: every value path checked against an oracle that shares
//! no code with finlit-map (PostgreSQL's own parsers, `float8send` bits,
//! integer microseconds), and one test per item of the exactness issue that
//! needs a database.

use std::fmt::Write as _;
use std::path::Path;
use std::str::FromStr;

use bson::{Bson, Decimal128, Document, doc};
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};
use serde_json::Value;

use super::db::TestDb;
use super::{cli, project_with, read_rejects, source};

const SCHEMA: &str = "CREATE TABLE vals (
    id INTEGER PRIMARY KEY,
    d DOUBLE PRECISION,
    dec NUMERIC,
    t TIMESTAMPTZ,
    i BIGINT,
    s TEXT
);
CREATE TABLE keyed (
    k DOUBLE PRECISION PRIMARY KEY,
    n NUMERIC(6,2) UNIQUE,
    j JSONB
);
";

const MAPPING: &str = r#"source = "vals"
table = "vals"
key = "id"
[columns]
id = "$._id"
d = "$.d"
dec = "$.dec"
t = "$.t"
i = "$.i"
s = "$.s"
"#;

/// A mapping project in `dir`: the schema above and the given mapping files.
fn project(dir: &Path, mappings: &[(&str, &str)]) -> std::path::PathBuf {
    project_with(dir, SCHEMA, "DROP TABLE keyed; DROP TABLE vals;", mappings)
}

/// One generated document and what PostgreSQL must hold for it.
#[derive(Debug, Clone)]
struct Case {
    d: f64,
    dec: String,
    ms: i64,
    i: i64,
    s: String,
}

fn cases(n: usize) -> Vec<Case> {
    let double = prop_oneof![
        any::<f64>().prop_filter("finite", |d| d.is_finite()),
        (proptest::num::f64::SUBNORMAL | proptest::num::f64::NORMAL | proptest::num::f64::NEGATIVE),
        (0u64..1 << 53, -30i32..30).prop_map(|(m, e)| m as f64 * 10f64.powi(e)),
        Just(98.357_232_094_183_43),
        Just(4.547_610_905_104_160_3e18),
        Just(0.1),
        Just(-0.0),
    ];
    let decimal = (0u64..u64::MAX, -30i32..30, 0usize..4, any::<bool>()).prop_map(|(m, e, zeros, neg)| {
        let sign = if neg { "-" } else { "" };
        format!("{sign}{m}{}E{e}", "0".repeat(zeros))
    });
    // 1800-01-01 .. 2200-01-01, millisecond precision, before 1970 included.
    let ms = -5_364_662_400_000i64..7_258_118_400_000;
    let text = proptest::collection::vec(any::<char>().prop_filter("no NUL", |c| *c != '\0'), 0..12)
        .prop_map(|cs| cs.into_iter().collect::<String>());
    let strategy = (double, decimal, ms, any::<i64>(), text).prop_map(|(d, dec, ms, i, s)| Case { d, dec, ms, i, s });
    // A fixed seed: the same cases every run, so a failure is reproducible.
    let mut runner = TestRunner::new_with_rng(Config::default(), TestRng::from_seed(RngAlgorithm::ChaCha, &[7; 32]));
    (0..n).map(|_| strategy.new_tree(&mut runner).unwrap().current()).collect()
}

fn document(id: i32, c: &Case) -> Document {
    doc! {
        "_id": id,
        "d": c.d,
        "dec": Decimal128::from_str(&c.dec).unwrap(),
        "t": bson::DateTime::from_millis(c.ms),
        "i": c.i,
        "s": c.s.clone(),
    }
}

/// Legacy extended JSON as older mongoexport wrote it: plain numbers,
/// `$date` as an ISO string with a `-0700` offset.
fn legacy_line(id: i32, c: &Case) -> String {
    let local = chrono::DateTime::from_timestamp_millis(c.ms)
        .unwrap()
        .with_timezone(&chrono::FixedOffset::west_opt(7 * 3600).unwrap());
    let d = if c.d == 0.0 && c.d.is_sign_negative() { "-0.0".to_string() } else { format!("{:e}", c.d) };
    format!(
        r#"{{"_id": {id}, "d": {d}, "dec": {{"$numberDecimal": "{}"}}, "t": {{"$date": "{}"}}, "i": {}, "s": {}}}"#,
        c.dec,
        local.format("%Y-%m-%dT%H:%M:%S%.3f%z"),
        c.i,
        serde_json::to_string(&c.s).unwrap()
    )
}

/// Writes the same documents as BSON, canonical, relaxed and legacy JSON.
fn write_sources(dir: &Path, cases: &[Case]) -> Vec<std::path::PathBuf> {
    let names = ["bson", "canonical", "relaxed", "legacy"];
    let dirs: Vec<_> = names.iter().map(|n| dir.join(n)).collect();
    for d in &dirs {
        std::fs::create_dir_all(d).unwrap();
    }
    let (mut bson, mut canonical, mut relaxed, mut legacy) = (Vec::new(), String::new(), String::new(), String::new());
    for (i, c) in cases.iter().enumerate() {
        let doc = document(i as i32, c);
        bson.extend(bson::serialize_to_vec(&doc).unwrap());
        let _ = writeln!(canonical, "{}", Bson::Document(doc.clone()).into_canonical_extjson());
        let _ = writeln!(relaxed, "{}", Bson::Document(doc).into_relaxed_extjson());
        let _ = writeln!(legacy, "{}", legacy_line(i as i32, c));
    }
    std::fs::write(dirs[0].join("vals.bson"), bson).unwrap();
    std::fs::write(dirs[1].join("vals.jsonl"), canonical).unwrap();
    // Compass writes one array; relaxed goes that way to cover it.
    let array = format!("[{}]", relaxed.lines().collect::<Vec<_>>().join(",\n"));
    std::fs::write(dirs[2].join("vals.json"), array).unwrap();
    std::fs::write(dirs[3].join("vals.jsonl"), legacy).unwrap();
    dirs
}

fn hex(s: &str) -> String {
    s.bytes().map(|b| format!("{b:02x}")).collect()
}

/// The differential test: random values of every kind, four source dialects,
/// each cell compared with what PostgreSQL itself makes of the original value.
#[test]
fn every_dialect_loads_every_value_exactly() {
    let work = tempfile::tempdir().unwrap();
    let mappings = project(work.path(), &[("vals", MAPPING)]);
    let cases = cases(300);
    let sources = write_sources(work.path(), &cases);
    // The oracle: expected values as PostgreSQL parses the originals.
    let mut expected =
        String::from("CREATE TABLE expected (id int, dbits text, dec text, ms bigint, i bigint, s text);\n");
    for (id, c) in cases.iter().enumerate() {
        let _ = writeln!(
            expected,
            "INSERT INTO expected VALUES ({id}, '{:016x}', '{}', {}, {}, convert_from(decode('{}', 'hex'), 'UTF8'));",
            c.d.to_bits(),
            c.dec,
            c.ms,
            c.i,
            hex(&c.s)
        );
    }
    let mut digests = Vec::new();
    for src in &sources {
        let db = TestDb::new("exact");
        let (code, report, out) = cli(
            work.path(),
            &[
                "run",
                mappings.to_str().unwrap(),
                "--source",
                src.to_str().unwrap(),
                "--target",
                &db.url,
                "--format",
                "json",
            ],
        );
        assert_eq!(code, 0, "{}: {out}", src.display());
        assert_eq!(report["mappings"][0]["loaded"], cases.len(), "{}", src.display());
        db.exec(&expected);
        let wrong = db.rows(
            "SELECT e.id::text, v::text FROM expected e LEFT JOIN vals v USING (id)
             WHERE v.id IS NULL
                OR encode(float8send(v.d), 'hex') <> e.dbits
                OR v.dec <> e.dec::numeric
                OR extract(epoch FROM v.t) * 1000 <> e.ms
                OR v.i <> e.i
                OR v.s <> e.s
             ORDER BY e.id LIMIT 5",
        );
        assert!(wrong.is_empty(), "{}: rows differ from the oracle: {wrong:?}", src.display());
        digests.push(db.digest("vals"));
    }
    assert!(digests.windows(2).all(|w| w[0] == w[1]), "the four sources gave different tables: {digests:?}");
}

/// Items 2, 6 and 9: a bad `$date` rejects one document (its text kept, its
/// line named), unwind over non-arrays is accounted for, and
/// `documents = with rows + filtered + rejected`.
#[test]
fn nothing_vanishes_and_bad_values_are_rejects_not_stops() {
    let work = tempfile::tempdir().unwrap();
    let unwind = r#"source = "vals"
table = "keyed"
unwind = "$.items[*]"
key = "k"
[columns]
k = "@"
"#;
    let mappings = project(work.path(), &[("vals", MAPPING), ("items", unwind)]);
    let lines = [
        r#"{"_id": 1, "t": {"$date": "2009-04-01T00:00:00.000-0700"}, "items": [1.5, 2.5]}"#,
        r#"{"_id": 2, "t": {"$date": "not a date"}, "items": [3.5]}"#,
        r#"{"_id": 3, "items": "phone"}"#,
        r#"{"_id": 4, "items": {"a": 1}}"#,
        r#"{"_id": 5}"#,
        r#"{"_id": 6, "items": []}"#,
    ];
    let src = source(work.path(), "vals.jsonl", &lines);
    let db = TestDb::new("vanish");
    let (code, report, out) = cli(
        work.path(),
        &[
            "run",
            mappings.to_str().unwrap(),
            "--source",
            src.to_str().unwrap(),
            "--target",
            &db.url,
            "--format",
            "json",
        ],
    );
    assert_eq!(code, 3, "{out}");
    let m = |name: &str| report["mappings"].as_array().unwrap().iter().find(|m| m["mapping"] == name).unwrap().clone();
    let vals = m("vals");
    assert_eq!(
        (vals["documents"].as_u64(), vals["loaded"].as_u64(), vals["rejected"].as_u64()),
        (Some(6), Some(5), Some(1))
    );
    let items = m("items");
    // Documents: 1 with rows; 2 unreadable; 3 and 4 not arrays; 5 and 6 without elements.
    let o = &items["document_outcomes"];
    assert_eq!(items["documents"], 6);
    assert_eq!((o["with_rows"].as_u64(), o["rejected"].as_u64(), o["filtered"].as_u64()), (Some(1), Some(3), Some(2)));
    assert_eq!(o["without_elements"], 2);
    assert_eq!(
        (items["read"].as_u64(), items["loaded"].as_u64(), items["rejected"].as_u64()),
        (Some(5), Some(2), Some(3))
    );
    assert_eq!(db.one("SELECT (extract(epoch FROM t) * 1000)::bigint::text FROM vals WHERE id = 1"), "1238569200000");
    let rejects = read_rejects(work.path());
    let bad = rejects.iter().find(|r| r["mapping"] == "vals").unwrap();
    assert!(bad["reason"].as_str().unwrap().contains("not a date"), "{bad}");
    assert_eq!(bad["raw"], lines[1]);
    assert!(bad["location"].as_str().unwrap().ends_with("vals.jsonl:2"), "{bad}");
    let phone = rejects.iter().find(|r| r["mapping"] == "items" && r["_id"] == 3).unwrap();
    assert!(phone["reason"].as_str().unwrap().contains("expects an array"), "{phone}");
}

/// Item 8: a mapping whose collection is not in the source stops the run
/// before anything loads, unless `--allow-missing`; `list` says so too.
#[test]
fn missing_collections_are_errors() {
    let work = tempfile::tempdir().unwrap();
    let other = r#"source = "nowhere"
table = "keyed"
key = "k"
[columns]
k = "$.k"
"#;
    let mappings = project(work.path(), &[("vals", MAPPING), ("other", other)]);
    let src = source(work.path(), "vals.jsonl", &[r#"{"_id": 1}"#]);
    let db = TestDb::new("missing");
    let base = ["run", mappings.to_str().unwrap(), "--source", src.to_str().unwrap(), "--target", &db.url];
    let (code, _, out) = cli(work.path(), &base);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("other (collection `nowhere`)") && out.contains("--allow-missing"), "{out}");
    assert!(!db.exists(), "nothing may be created before the check");
    let (code, _, out) = cli(work.path(), &[&base[..], &["--allow-missing"]].concat());
    assert_eq!(code, 0, "{out}");
    assert_eq!(db.one("SELECT count(*)::text FROM vals"), "1");
    let (code, _, out) = cli(work.path(), &["list", mappings.to_str().unwrap(), "--source", src.to_str().unwrap()]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("collection missing from the source"), "{out}");
    // Run from the wrong directory: the mappings do not load, and list says so.
    let (code, _, out) = cli(&src, &["list", "--source", src.to_str().unwrap()]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("do not load"), "{out}");
}

/// Items 12 and 13: keys whose client text differs from PostgreSQL's
/// (`1e+20`, `1.50`, jsonb spacing) are seen by validate and removed by
/// rollback; a corrupted cell of each type is reported; a recorded reject
/// is explained, not a failure.
#[test]
fn validate_and_rollback_see_keys_of_every_type() {
    let work = tempfile::tempdir().unwrap();
    let keyed = r#"source = "keyed"
table = "keyed"
key = "k"
[columns]
k = "$.k"
n = "$.n"
j = "$.j"
"#;
    let mappings = project(work.path(), &[("keyed", keyed)]);
    let lines = [
        r#"{"_id": 1, "k": 1e20, "n": {"$numberDecimal": "1.5"}, "j": {"$schema": "x"}}"#,
        r#"{"_id": 2, "k": 0.1, "n": {"$numberDecimal": "2.50"}, "j": [1, {"b": 2}]}"#,
        r#"{"_id": 3, "k": 98.35723209418343, "n": 3, "j": "s"}"#,
        r#"{"_id": 4, "k": 2.0, "n": {"$numberDecimal": "1.555"}, "j": null}"#,
        // 1.50 is 1.5: PostgreSQL's UNIQUE refuses it, after the mapper passed it.
        r#"{"_id": 5, "k": 5.0, "n": {"$numberDecimal": "1.50"}}"#,
    ];
    let src = source(work.path(), "keyed.jsonl", &lines);
    let db = TestDb::new("keys");
    let m = mappings.to_str().unwrap();
    let s = src.to_str().unwrap();
    let (code, _, out) = cli(work.path(), &["run", m, "--source", s, "--target", &db.url]);
    assert_eq!(code, 3, "{out}"); // 1.555 does not fit numeric(6,2); 1.50 repeats 1.5
    assert_eq!(db.one("SELECT count(*)::text FROM keyed"), "3");
    let validate =
        |extra: &[&str]| cli(work.path(), &[&["validate", m, "--source", s, "--target", &db.url], extra].concat());
    let (code, _, out) = validate(&[]);
    assert_eq!(code, 0, "a recorded reject is explained, not a failure: {out}");
    assert!(out.contains("rejected by the last run"), "{out}");
    // Corrupt one cell of each type: validate names each.
    db.exec("UPDATE keyed SET n = 2.51 WHERE k = 0.1");
    db.exec("UPDATE keyed SET j = '{\"$schema\": \"y\"}' WHERE k = 1e20");
    db.exec("UPDATE keyed SET k = 98.35723209418344 WHERE k = 98.35723209418343");
    let (code, _, out) = validate(&["--sample", "10"]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("column n") && out.contains("column j"), "{out}");
    assert!(out.contains("rows no source document produces:      1"), "{out}");
    db.exec("UPDATE keyed SET n = 2.50 WHERE k = 0.1");
    db.exec("UPDATE keyed SET j = '{\"$schema\": \"x\"}' WHERE k = 1e20");
    db.exec("UPDATE keyed SET k = 98.35723209418343 WHERE k = 98.35723209418344");
    let (code, _, out) = validate(&[]);
    assert_eq!(code, 0, "{out}");
    // Rollback removes every migrated row, whatever its key's type.
    let (code, _, out) = cli(work.path(), &["rollback", m, "--target", &db.url, "--all", "--confirm", &db.name]);
    assert_eq!(code, 0, "{out}");
    assert_eq!(db.one("SELECT count(*)::text FROM keyed"), "0", "{out}");

    // A clean first load copies straight into the table and records keys
    // on that path: rollback must still find every one.
    source(work.path(), "keyed.jsonl", &lines[..3]);
    let db = TestDb::new("keys_direct");
    let (code, _, out) = cli(work.path(), &["run", m, "--source", s, "--target", &db.url]);
    assert_eq!(code, 0, "{out}");
    let (code, _, out) = cli(work.path(), &["rollback", m, "--target", &db.url, "--all", "--confirm", &db.name]);
    assert_eq!(code, 0, "{out}");
    assert_eq!(db.one("SELECT count(*)::text FROM keyed"), "0", "{out}");
}

/// Item 14: a dry run rejects exactly the rows a first load rejects for
/// repeating a key or another UNIQUE column, by PostgreSQL's equality
/// (`1`, `1.0` and decimal `1.00` are one double; `-0` is `0`; numeric
/// `1.50` is `1.5`), the first document winning.
#[test]
fn a_dry_run_rejects_the_duplicates_the_run_rejects() {
    let work = tempfile::tempdir().unwrap();
    let keyed =
        "source = \"keyed\"\ntable = \"keyed\"\nkey = \"k\"\n[columns]\nk = \"$.k\"\nn = \"$.n\"\nj = \"$.j\"\n";
    let mappings = project(work.path(), &[("keyed", keyed)]);
    let lines = [
        r#"{"_id": 1, "k": 1e20, "n": {"$numberDecimal": "1.5"}}"#,
        r#"{"_id": 2, "k": 1, "n": 2.5}"#,
        r#"{"_id": 3, "k": 1.0, "n": 3}"#,
        r#"{"_id": 4, "k": {"$numberDecimal": "1.00"}, "n": 4}"#,
        r#"{"_id": 5, "k": {"$numberDouble": "-0.0"}, "n": 5}"#,
        r#"{"_id": 6, "k": 0, "n": 6}"#,
        r#"{"_id": 7, "k": 7, "n": {"$numberDecimal": "1.50"}}"#,
        r#"{"_id": 8, "k": 8, "j": {"b": 1, "a": 2}}"#,
        r#"{"_id": 9, "k": 9}"#,
    ];
    let src = source(work.path(), "keyed.jsonl", &lines);
    let (m, s) = (mappings.to_str().unwrap(), src.to_str().unwrap());
    // The expectation, from the values above: 3 and 4 repeat 2's key, 6
    // repeats 5's, 7 repeats 1's n; 8 and 9 have NULL n, which never collide.
    let expected_rejects: Vec<i64> = vec![3, 4, 6, 7];
    let outcome = |args: &[&str]| {
        let out = work.path().join("out");
        let _ = std::fs::remove_dir_all(&out);
        std::fs::create_dir_all(&out).unwrap();
        let rejects = out.join("rejects.jsonl");
        let base = ["run", m, "--source", s, "--rejects", rejects.to_str().unwrap(), "--format", "json"];
        let (code, report, text) = cli(work.path(), &[&base[..], args].concat());
        let mut ids: Vec<i64> = read_rejects(&out)
            .iter()
            .map(|r| {
                assert!(r["reason"].as_str().unwrap().starts_with("duplicate key"), "{r}");
                r["document"]["_id"].as_i64().unwrap()
            })
            .collect();
        ids.sort_unstable();
        let mapping = &report["mappings"][0];
        (code, mapping["loaded"].as_u64(), mapping["rejected"].as_u64(), ids, text)
    };
    let dry = outcome(&["--dry-run"]);
    assert_eq!(dry.3, expected_rejects, "{}", dry.4);
    assert_eq!((dry.0, dry.1, dry.2), (3, Some(5), Some(4)), "{}", dry.4);
    for batch in ["5000", "1"] {
        let db = TestDb::new("dupdry");
        let run = outcome(&["--target", &db.url, "--batch-size", batch]);
        assert_eq!((run.0, run.1, run.2, &run.3), (dry.0, dry.1, dry.2, &dry.3), "batch {batch}: {}", run.4);
        assert_eq!(db.one("SELECT count(*)::text FROM keyed"), "5");
    }
}

/// Issue 10, item 2: a source file replaced after an interrupted run (a
/// re-export) is read from its start, never from the old checkpoint.
#[test]
fn resume_notices_that_the_source_changed() {
    let work = tempfile::tempdir().unwrap();
    let mappings = project(work.path(), &[("vals", MAPPING)]);
    let doc = |id: i32, i: &str| format!(r#"{{"_id": {id}, "i": {i}, "s": "v{id}"}}"#);
    // Document 10 holds a value an integer column refuses: the run stops there.
    let first: Vec<String> = (1..=20).map(|id| doc(id, if id == 10 { "\"x\"" } else { "1" })).collect();
    let src = source(work.path(), "vals.jsonl", &first.iter().map(String::as_str).collect::<Vec<_>>());
    let db = TestDb::new("fingerprint");
    let (m, s) = (mappings.to_str().unwrap(), src.to_str().unwrap());
    let args = ["run", m, "--source", s, "--target", &db.url, "--batch-size", "1"];
    let (code, _, out) = cli(work.path(), &[&args[..], &["--max-rejects", "0"]].concat());
    assert_eq!(code, 1, "{out}");
    // The re-export: fixed, and ten new documents at its head.
    let mut second: Vec<String> = (21..=30).map(|id| doc(id, "2")).collect();
    second.extend((1..=20).map(|id| doc(id, "1")));
    source(work.path(), "vals.jsonl", &second.iter().map(String::as_str).collect::<Vec<_>>());
    let (code, _, out) = cli(work.path(), &args);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("changed since run 1 stopped") && out.contains("`vals` starts over"), "{out}");
    let ids = db.one("SELECT string_agg(id::text, ',' ORDER BY id) FROM vals WHERE i IS NOT NULL");
    let expected: Vec<String> = (1..=30).map(|i| i.to_string()).collect();
    assert_eq!(ids, expected.join(","));
}

/// Issue 10, items 9 and 10: `from = "$"` is the whole document, and a
/// Decimal128 that JSON cannot hold (±Infinity, NaN) anywhere in a json
/// value is that row's reject, not the end of the mapping.
#[test]
fn the_whole_document_into_jsonb_and_non_finite_decimals_are_rejects() {
    let work = tempfile::tempdir().unwrap();
    let whole = "source = \"keyed\"\ntable = \"keyed\"\nkey = \"k\"\n[columns]\nk = \"$._id\"\nj = \"$\"\n";
    let mappings = project(work.path(), &[("keyed", whole)]);
    let lines = [
        r#"{"_id": 1, "a": "x", "b": [1, {"c": {"$numberDecimal": "2.50"}}]}"#,
        r#"{"_id": 2, "v": {"$numberDecimal": "-Infinity"}}"#,
        r#"{"_id": 3, "v": [{"$numberDecimal": "Infinity"}]}"#,
        r#"{"_id": 4, "v": {"$numberDecimal": "NaN"}}"#,
    ];
    let src = source(work.path(), "keyed.jsonl", &lines);
    let db = TestDb::new("wholedoc");
    let (m, s) = (mappings.to_str().unwrap(), src.to_str().unwrap());
    let (code, _, out) = cli(work.path(), &["run", m, "--source", s, "--target", &db.url]);
    assert_eq!(code, 3, "{out}");
    assert_eq!(
        db.one(r#"SELECT (j = '{"_id": 1, "a": "x", "b": [1, {"c": 2.50}]}'::jsonb)::text FROM keyed WHERE k = 1"#),
        "true"
    );
    assert_eq!(db.one("SELECT count(*)::text FROM keyed"), "1");
    let rejects = read_rejects(work.path());
    let ids: Vec<i64> = rejects.iter().map(|r| r["_id"].as_i64().unwrap()).collect();
    assert_eq!(ids, [2, 3, 4]);
    assert!(rejects.iter().all(|r| r["reason"].as_str().unwrap().contains("has no JSON form")), "{rejects:?}");
}

/// Issue 10, item 11: a target altered behind the schema's back stops the
/// run before anything loads, listing every difference.
#[test]
fn schema_drift_in_the_target_stops_the_run_before_loading() {
    let work = tempfile::tempdir().unwrap();
    let keyed =
        "source = \"keyed\"\ntable = \"keyed\"\nkey = \"k\"\n[columns]\nk = \"$.k\"\nn = \"$.n\"\nj = \"$.j\"\n";
    let mappings = project(work.path(), &[("keyed", keyed)]);
    let src = source(work.path(), "keyed.jsonl", &[r#"{"_id": 1, "k": 1, "n": 1.25, "j": {"a": 1}}"#]);
    let db = TestDb::new("drift");
    let (m, s) = (mappings.to_str().unwrap(), src.to_str().unwrap());
    let (code, _, out) = cli(work.path(), &["run", m, "--source", s, "--target", &db.url]);
    assert_eq!(code, 0, "{out}");
    db.exec("DELETE FROM keyed; ALTER TABLE keyed ALTER n TYPE numeric(5,1); ALTER TABLE keyed ALTER j TYPE text");
    let (code, _, out) = cli(work.path(), &["run", m, "--source", s, "--target", &db.url, "--restart"]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("keyed.n: the schema says numeric(6,2), the target has numeric(5,1)"), "{out}");
    assert!(out.contains("keyed.j: the schema says jsonb, the target has text"), "{out}");
    assert_eq!(db.one("SELECT count(*)::text FROM keyed"), "0", "nothing may load");
    // A column gone, then the whole table: each said as such.
    db.exec("ALTER TABLE keyed DROP COLUMN j");
    let (code, _, out) = cli(work.path(), &["run", m, "--source", s, "--target", &db.url, "--restart"]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("keyed.j: the target has no such column"), "{out}");
    assert!(out.contains("keyed.n: the schema says numeric(6,2), the target has numeric(5,1)"), "{out}");
    db.exec("DROP TABLE keyed");
    let (code, _, out) = cli(work.path(), &["run", m, "--source", s, "--target", &db.url, "--restart"]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("table `keyed` does not exist in the target"), "{out}");
}

/// `{"a": {"a": … {"_id": 0} …}}`, `depth` levels, as BSON bytes (built
/// without recursion, so the test itself cannot overflow).
fn deep_bson(id: i32, depth: usize) -> Vec<u8> {
    let mut inner = bson::serialize_to_vec(&bson::doc! { "leaf": 1 }).unwrap();
    for _ in 1..depth {
        let mut v = Vec::with_capacity(inner.len() + 8);
        v.extend(((inner.len() + 8) as i32).to_le_bytes());
        v.extend([0x03, b'a', 0]);
        v.extend(&inner);
        v.push(0);
        inner = v;
    }
    // {_id: id, s: "deep", deep: inner}
    let head = bson::serialize_to_vec(&bson::doc! { "_id": id, "s": "deep" }).unwrap();
    let mut body = head[4..head.len() - 1].to_vec();
    body.extend([0x03, b'd', b'e', b'e', b'p', 0]);
    body.extend(&inner);
    let mut out = ((body.len() + 5) as i32).to_le_bytes().to_vec();
    out.extend(body);
    out.push(0);
    out
}

/// Issue 10, items 6 and 8: BSON a strict decoder refuses (a shrunken
/// string length, a key that is not UTF-8, a boolean byte of 7) and
/// documents nested thousands of levels deep are each one reject with its
/// bytes and offset, in the run and in the dry run; the rest loads, and
/// nothing crashes.
#[test]
fn corrupt_bson_and_deep_nesting_are_rejects_not_values_or_crashes() {
    let work = tempfile::tempdir().unwrap();
    let mappings = project(work.path(), &[("vals", MAPPING)]);
    let doc = |d: bson::Document| bson::serialize_to_vec(&d).unwrap();
    let find = |v: &[u8], needle: &[u8]| v.windows(needle.len()).position(|w| w == needle).unwrap();
    let mut shrunk = doc(bson::doc! { "_id": 1, "s": "https://x" });
    let at = find(&shrunk, b"s\0") + 2;
    shrunk[at] -= 4; // "https" with the rest of the bytes left behind
    let mut bad_key = doc(bson::doc! { "_id": 3, "s": "v" });
    let at = find(&bad_key, b"\x02s\0") + 1;
    bad_key[at] = 0xff;
    let mut bad_bool = doc(bson::doc! { "_id": 4, "s": "b", "flag": true });
    let at = find(&bad_bool, b"flag\0") + 5;
    bad_bool[at] = 7;
    let docs = [shrunk, doc(bson::doc! { "_id": 2, "s": "fine" }), bad_key, bad_bool, deep_bson(5, 5_000)];
    let src = work.path().join("bsrc");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("vals.bson"), docs.concat()).unwrap();
    let offsets: Vec<usize> = docs
        .iter()
        .scan(0, |at, d| {
            let o = *at;
            *at += d.len();
            Some(o)
        })
        .collect();
    let db = TestDb::new("strict");
    let (m, s) = (mappings.to_str().unwrap(), src.to_str().unwrap());
    for extra in [&["--dry-run"][..], &["--target", &db.url][..]] {
        let _ = std::fs::remove_file(work.path().join("rejects.jsonl"));
        let (code, report, out) =
            cli(work.path(), &[&["run", m, "--source", s, "--format", "json"][..], extra].concat());
        assert_eq!(code, 3, "{extra:?}: {out}");
        assert_eq!(report["mappings"][0]["loaded"], 1, "{out}");
        let rejects = read_rejects(work.path());
        let locations: Vec<String> = rejects.iter().map(|r| r["location"].as_str().unwrap().to_string()).collect();
        let expected: Vec<String> = [0, 2, 3, 4]
            .iter()
            .map(|&i| format!("{}, byte offset {}", src.join("vals.bson").display(), offsets[i]))
            .collect();
        assert_eq!(locations, expected);
        for (r, i) in rejects.iter().zip([0, 2, 3, 4]) {
            assert!(r["reason"].as_str().unwrap().starts_with("unreadable document:"), "{}", r["reason"]);
            let raw =
                base64::Engine::decode(&base64::engine::general_purpose::STANDARD, r["raw_base64"].as_str().unwrap());
            assert_eq!(raw.unwrap(), docs[i], "the bytes are kept as read");
        }
        assert!(rejects[3]["reason"].as_str().unwrap().contains("deeper than 100"), "{}", rejects[3]["reason"]);
    }
    assert_eq!(db.one("SELECT string_agg(id || '=' || s, ',') FROM vals"), "2=fine");

    // Extended JSON nested 10,000 levels: the line is a reject, the run goes on.
    let deep = format!("{{\"_id\": 7, \"s\": {}1{}}}", "{\"a\":".repeat(10_000), "}".repeat(10_000));
    let jsrc = source(work.path(), "vals.jsonl", &[&deep, r#"{"_id": 8, "s": "fine"}"#]);
    let _ = std::fs::remove_file(work.path().join("rejects.jsonl"));
    let (code, _, out) = cli(work.path(), &["run", m, "--source", jsrc.to_str().unwrap(), "--dry-run"]);
    assert_eq!(code, 3, "{out}");
    let rejects = read_rejects(work.path());
    assert_eq!(rejects.len(), 1);
    assert!(rejects[0]["reason"].as_str().unwrap().contains("deeper than 100"), "{}", rejects[0]["reason"]);
    assert!(rejects[0]["location"].as_str().unwrap().ends_with("vals.jsonl:1"), "{}", rejects[0]["location"]);
}

/// Issue 10, item 7: extended JSON that the specification refuses, or that
/// would change a value (an integer beyond int64, a repeated key), is a
/// reject; text after a JSON array stops the run at its line.
#[test]
fn lenient_extended_json_is_refused() {
    let work = tempfile::tempdir().unwrap();
    let mappings = project(work.path(), &[("vals", MAPPING)]);
    let lines = [
        r#"{"_id": 1, "s": "kept"}"#,
        r#"{"_id": 2, "dec": {"$numberDecimal": "-+32.4"}}"#,
        r#"{"_id": 3, "s": 123456789012345678901234567890}"#,
        r#"{"_id": 4, "s": "first", "s": "second"}"#,
    ];
    let src = source(work.path(), "vals.jsonl", &lines);
    let m = mappings.to_str().unwrap();
    let (code, _, out) = cli(work.path(), &["run", m, "--source", src.to_str().unwrap(), "--dry-run"]);
    assert_eq!(code, 3, "{out}");
    let reasons: Vec<String> =
        read_rejects(work.path()).iter().map(|r| r["reason"].as_str().unwrap().to_string()).collect();
    assert_eq!(reasons.len(), 3, "{reasons:?}");
    assert!(reasons[0].contains("\"-+32.4\" is not a decimal number"), "{reasons:?}");
    assert!(reasons[1].contains("123456789012345678901234567890 does not fit"), "{reasons:?}");
    assert!(reasons[2].contains("\"s\" appears twice"), "{reasons:?}");

    let arr = work.path().join("arr");
    std::fs::create_dir_all(&arr).unwrap();
    std::fs::write(arr.join("vals.json"), "[{\"_id\": 1},\n {\"_id\": 2}]\n{\"_id\": 3}\n").unwrap();
    let (code, _, out) = cli(work.path(), &["run", m, "--source", arr.to_str().unwrap(), "--dry-run"]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("vals.json:3: text after the end of the JSON array"), "{out}");
}

/// `coalesce` end to end: check, plan, dry run, run, validate, an unchanged
/// re-run and rollback, each value checked against the rule applied here.
#[test]
fn coalesce_takes_the_first_present_value_end_to_end() {
    let work = tempfile::tempdir().unwrap();
    let mapping = "source = \"vals\"\ntable = \"vals\"\nkey = \"id\"\n[columns]\nid = \"$._id\"\n\
                   s = { coalesce = [\"$.fullplot\", \"$.plot\", \"$.title\"] }\n";
    let mappings = project(work.path(), &[("vals", mapping)]);
    let docs = [
        r#"{"_id": 1, "fullplot": "F1", "plot": "P1"}"#,
        r#"{"_id": 2, "plot": "P2"}"#,
        r#"{"_id": 3, "fullplot": null, "plot": "P3"}"#,
        r#"{"_id": 4, "fullplot": "", "plot": "P4"}"#,
        r#"{"_id": 5, "title": "T5"}"#,
        r#"{"_id": 6}"#,
    ];
    // The rule, applied to the JSON itself: the first field present and not null.
    let expected: Vec<String> = docs
        .iter()
        .map(|d| {
            let v: Value = serde_json::from_str(d).unwrap();
            let first = ["fullplot", "plot", "title"].iter().find_map(|k| v.get(*k).and_then(Value::as_str));
            format!("{}={}", v["_id"], first.unwrap_or("NULL"))
        })
        .collect();
    let src = source(work.path(), "vals.jsonl", &docs);
    let db = TestDb::new("coalesce");
    let (m, s) = (mappings.to_str().unwrap(), src.to_str().unwrap());
    let (code, _, out) = cli(work.path(), &["check", m]);
    assert_eq!(code, 0, "{out}");
    let (_, _, plan) = cli(work.path(), &["plan", m]);
    assert!(plan.contains("coalesce($.fullplot, $.plot, $.title)"), "{plan}");
    let (code, report, out) = cli(work.path(), &["run", m, "--source", s, "--dry-run", "--format", "json"]);
    assert_eq!((code, report["mappings"][0]["loaded"].as_u64()), (0, Some(6)), "{out}");
    let (code, _, out) = cli(work.path(), &["run", m, "--source", s, "--target", &db.url]);
    assert_eq!(code, 0, "{out}");
    let got = db.one("SELECT string_agg(id || '=' || coalesce(s, 'NULL'), ',' ORDER BY id) FROM vals");
    assert_eq!(got, expected.join(","));
    let (code, _, out) = cli(work.path(), &["validate", m, "--source", s, "--target", &db.url]);
    assert_eq!(code, 0, "{out}");
    let (code, report, out) = cli(work.path(), &["run", m, "--source", s, "--target", &db.url, "--format", "json"]);
    assert_eq!((code, report["mappings"][0]["unchanged"].as_u64()), (0, Some(6)), "{out}");
    let (code, _, out) = cli(work.path(), &["rollback", m, "--target", &db.url, "--all", "--confirm", &db.name]);
    assert_eq!(code, 0, "{out}");
    assert_eq!(db.one("SELECT count(*)::text FROM vals"), "0");
}

/// `null_if` and `map_null` end to end: sentinels of any type become null
/// (by value: `0`, `0.0` and decimal `0.00` are one sentinel), before
/// `required` and `default`; check, plan, dry run, run, validate, an
/// unchanged re-run and rollback.
#[test]
fn sentinels_become_null_end_to_end() {
    let work = tempfile::tempdir().unwrap();
    let mapping = "source = \"vals\"\ntable = \"vals\"\nkey = \"id\"\n[columns]\nid = \"$._id\"\n\
                   s = { from = \"$.s\", null_if = [\"\", \"N/A\"], map = { x = \"ex\" }, map_null = [\"unknown\"] }\n\
                   i = { from = \"$.i\", null_if = [0, -1], default = 7 }\n\
                   d = { from = \"$.d\", null_if = 0 }\n";
    let mappings = project(work.path(), &[("vals", mapping)]);
    let docs = [
        r#"{"_id": 1, "s": "", "i": 0, "d": 0.0}"#,
        r#"{"_id": 2, "s": "N/A", "i": -1, "d": {"$numberDecimal": "0.00"}}"#,
        r#"{"_id": 3, "s": "unknown", "i": 5, "d": 1.5}"#,
        r#"{"_id": 4, "s": "x", "i": {"$numberLong": "0"}, "d": -0.0}"#,
        r#"{"_id": 5, "s": "n/a", "i": 2, "d": 2}"#,
    ];
    let src = source(work.path(), "vals.jsonl", &docs);
    let db = TestDb::new("sentinels");
    let (m, s) = (mappings.to_str().unwrap(), src.to_str().unwrap());
    let (code, _, out) = cli(work.path(), &["check", m]);
    assert_eq!(code, 0, "{out}");
    let (_, _, plan) = cli(work.path(), &["plan", m]);
    assert!(plan.contains("null_if[2] > map[1] > map_null[1] > text"), "{plan}");
    let (code, report, out) = cli(work.path(), &["run", m, "--source", s, "--dry-run", "--format", "json"]);
    assert_eq!((code, report["mappings"][0]["loaded"].as_u64()), (0, Some(5)), "{out}");
    let (code, _, out) = cli(work.path(), &["run", m, "--source", s, "--target", &db.url]);
    assert_eq!(code, 0, "{out}");
    // Sentinels are null (then `i` takes its default 7); "n/a" is not "N/A".
    let got = db.one(
        "SELECT string_agg(concat_ws('|', id, coalesce(s, 'NULL'), i, coalesce(d::text, 'NULL')), ',' ORDER BY id) FROM vals",
    );
    assert_eq!(got, "1|NULL|7|NULL,2|NULL|7|NULL,3|NULL|5|1.5,4|ex|7|NULL,5|n/a|2|2");
    let (code, _, out) = cli(work.path(), &["validate", m, "--source", s, "--target", &db.url]);
    assert_eq!(code, 0, "{out}");
    let (code, report, out) = cli(work.path(), &["run", m, "--source", s, "--target", &db.url, "--format", "json"]);
    assert_eq!((code, report["mappings"][0]["unchanged"].as_u64()), (0, Some(5)), "{out}");
    let (code, _, out) = cli(work.path(), &["rollback", m, "--target", &db.url, "--all", "--confirm", &db.name]);
    assert_eq!(code, 0, "{out}");
    assert_eq!(db.one("SELECT count(*)::text FROM vals"), "0");

    // `required` sees a sentinel as null, and says so.
    let required = mapping.replace("null_if = [0, -1], default = 7", "null_if = [0, -1], required = true");
    let mappings = project(work.path(), &[("vals", &required)]);
    let (code, _, out) =
        cli(work.path(), &["run", mappings.to_str().unwrap(), "--source", s, "--dry-run", "--rejects", "r.jsonl"]);
    assert_eq!(code, 3, "{out}");
    let rejects = std::fs::read_to_string(work.path().join("r.jsonl")).unwrap();
    assert_eq!(rejects.lines().count(), 3, "{rejects}");
    assert!(rejects.contains("is a value that means null"), "{rejects}");
}

/// `position = { index = "@" }` end to end: array order kept, and usable in
/// the key (a repeated value is still its own row).
#[test]
fn array_positions_end_to_end() {
    let work = tempfile::tempdir().unwrap();
    project_with(
        work.path(),
        "CREATE TABLE tags (doc_id INTEGER, pos INTEGER, tag TEXT NOT NULL, PRIMARY KEY (doc_id, pos));",
        "DROP TABLE tags;",
        &[(
            "tags",
            "source = \"vals\"\ntable = \"tags\"\nunwind = \"$.tags[*]\"\nkey = [\"doc_id\", \"pos\"]\n[columns]\n\
         doc_id = \"$._id\"\npos = { position = { index = \"@\" } }\ntag = \"@\"\n",
        )],
    );
    let docs = [r#"{"_id": 1, "tags": ["a", "b", "a"]}"#, r#"{"_id": 2, "tags": ["z"]}"#, r#"{"_id": 3, "tags": []}"#];
    // Expected rows, from the JSON: each element with its index.
    let mut expected = Vec::new();
    for d in &docs {
        let v: Value = serde_json::from_str(d).unwrap();
        for (i, t) in v["tags"].as_array().unwrap().iter().enumerate() {
            expected.push(format!("{}/{i}/{}", v["_id"], t.as_str().unwrap()));
        }
    }
    let src = source(work.path(), "vals.jsonl", &docs);
    let db = TestDb::new("positions");
    let (m, s) = ("mappings", src.to_str().unwrap());
    let (code, _, out) = cli(work.path(), &["check", m]);
    assert_eq!(code, 0, "{out}");
    let (_, _, plan) = cli(work.path(), &["plan", m]);
    assert!(plan.contains("position(@)"), "{plan}");
    let (code, _, out) = cli(work.path(), &["run", m, "--source", s, "--target", &db.url]);
    assert_eq!(code, 0, "{out}");
    let got = db.one("SELECT string_agg(doc_id || '/' || pos || '/' || tag, ',' ORDER BY doc_id, pos) FROM tags");
    assert_eq!(got, expected.join(","));
    let (code, _, out) = cli(work.path(), &["validate", m, "--source", s, "--target", &db.url]);
    assert_eq!(code, 0, "{out}");
    let (code, report, out) = cli(work.path(), &["run", m, "--source", s, "--target", &db.url, "--format", "json"]);
    assert_eq!((code, report["mappings"][0]["unchanged"].as_u64()), (0, Some(4)), "{out}");
    let (code, _, out) = cli(work.path(), &["rollback", m, "--target", &db.url, "--all", "--confirm", &db.name]);
    assert_eq!(code, 0, "{out}");
    assert_eq!(db.one("SELECT count(*)::text FROM tags"), "0");
}

/// `unwind = "$.obj.*"` with `key = "@"` end to end: an object keyed by
/// country becomes rows that keep the key; an empty or missing object gives
/// no rows (counted), a scalar is a reject.
#[test]
fn object_entries_as_rows_end_to_end() {
    let work = tempfile::tempdir().unwrap();
    project_with(
        work.path(),
        "CREATE TABLE variants (item_id INTEGER, country TEXT, title TEXT, PRIMARY KEY (item_id, country));",
        "DROP TABLE variants;",
        &[(
            "variants",
            "source = \"items\"\ntable = \"variants\"\nunwind = \"$.variants.*\"\nkey = [\"item_id\", \"country\"]\n\
         [columns]\nitem_id = \"$._id\"\ncountry = { key = \"@\" }\ntitle = \"@.title\"\n",
        )],
    );
    let docs = [
        r#"{"_id": 1, "variants": {"fr": {"title": "Bonjour"}, "de": {"title": "Hallo"}}}"#,
        r#"{"_id": 2, "variants": {}}"#,
        r#"{"_id": 3, "variants": "none"}"#,
        r#"{"_id": 4}"#,
    ];
    let src = source(work.path(), "items.jsonl", &docs);
    let db = TestDb::new("entries");
    let (m, s) = ("mappings", src.to_str().unwrap());
    let (code, _, out) = cli(work.path(), &["check", m]);
    assert_eq!(code, 0, "{out}");
    let (_, _, plan) = cli(work.path(), &["plan", m]);
    assert!(plan.contains("key(@)"), "{plan}");
    let (code, report, out) = cli(work.path(), &["run", m, "--source", s, "--target", &db.url, "--format", "json"]);
    assert_eq!(code, 3, "{out}");
    let r = &report["mappings"][0];
    let o = &r["document_outcomes"];
    assert_eq!((r["documents"].as_u64(), r["loaded"].as_u64(), r["rejected"].as_u64()), (Some(4), Some(2), Some(1)));
    assert_eq!(
        (o["with_rows"].as_u64(), o["without_elements"].as_u64(), o["rejected"].as_u64()),
        (Some(1), Some(2), Some(1))
    );
    assert_eq!(
        db.one(
            "SELECT string_agg(item_id || '/' || country || '/' || title, ',' ORDER BY item_id, country) FROM variants"
        ),
        "1/de/Hallo,1/fr/Bonjour"
    );
    let (code, _, out) = cli(work.path(), &["validate", m, "--source", s, "--target", &db.url]);
    assert_eq!(code, 0, "{out}");
    let (code, report, out) = cli(work.path(), &["run", m, "--source", s, "--target", &db.url, "--format", "json"]);
    assert_eq!((code, report["mappings"][0]["unchanged"].as_u64()), (3, Some(2)), "{out}");
    let (code, _, out) = cli(work.path(), &["rollback", m, "--target", &db.url, "--all", "--confirm", &db.name]);
    assert_eq!(code, 0, "{out}");
    assert_eq!(db.one("SELECT count(*)::text FROM variants"), "0");
}

/// References to natural keys end to end: `from` with `references =
/// "accounts.account_id"` (with and without a schema foreign key) orders
/// the load, rejects orphans, and validate checks them; rollback removes
/// children before parents.
#[test]
fn references_to_natural_keys_end_to_end() {
    let work = tempfile::tempdir().unwrap();
    let files = [
        (
            "accounts",
            "source = \"accounts\"\ntable = \"accounts\"\nkey = \"id\"\n[columns]\nid = { id = \"$._id\" }\naccount_id = \"$.account_id\"\nname = \"$.name\"\n",
        ),
        (
            "transactions",
            "source = \"transactions\"\ntable = \"transactions\"\nkey = \"id\"\n[columns]\nid = { id = \"$._id\" }\naccount_id = { from = \"$.account_id\", references = \"accounts.account_id\" }\namount = \"$.amount\"\n",
        ),
        (
            "transfers",
            "source = \"transfers\"\ntable = \"transfers\"\nkey = \"id\"\n[columns]\nid = { id = \"$._id\" }\nto_account = { from = \"$.to\", references = \"accounts.account_id\" }\n",
        ),
    ];
    project_with(work.path(), "CREATE TABLE accounts (id UUID PRIMARY KEY, account_id INTEGER NOT NULL UNIQUE, name TEXT);
         CREATE TABLE transactions (id UUID PRIMARY KEY, account_id INTEGER REFERENCES accounts (account_id), amount NUMERIC);
         CREATE TABLE transfers (id UUID PRIMARY KEY, to_account INTEGER);", "DROP TABLE transfers, transactions, accounts;", &files);
    let src = work.path().join("src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(
        src.join("accounts.jsonl"),
        "{\"_id\": 1, \"account_id\": 371138, \"name\": \"A\"}\n{\"_id\": 2, \"account_id\": 557378}\n",
    )
    .unwrap();
    std::fs::write(
        src.join("transactions.jsonl"),
        "{\"_id\": 10, \"account_id\": 371138, \"amount\": 5}\n{\"_id\": 11, \"account_id\": 999}\n",
    )
    .unwrap();
    std::fs::write(src.join("transfers.jsonl"), "{\"_id\": 20, \"to\": 557378}\n{\"_id\": 21, \"to\": 1}\n").unwrap();
    let db = TestDb::new("natural");
    let (mp, s) = ("mappings", src.to_str().unwrap());
    let (code, _, out) = cli(work.path(), &["check", mp]);
    assert_eq!(code, 0, "{out}");
    let (_, plan, _) = cli(work.path(), &["plan", mp, "--format", "json"]);
    let stages = plan["stages"].as_array().unwrap();
    assert_eq!(stages[0], serde_json::json!(["accounts"]), "{plan}");
    let (code, _, out) = cli(work.path(), &["run", mp, "--source", s, "--target", &db.url]);
    assert_eq!(code, 3, "{out}");
    let reasons: Vec<String> =
        read_rejects(work.path()).iter().map(|r| r["reason"].as_str().unwrap().to_string()).collect();
    assert_eq!(reasons.len(), 2, "{reasons:?}");
    assert!(
        reasons.iter().any(|r| r.contains("points at 999")) && reasons.iter().any(|r| r.contains("points at 1,")),
        "{reasons:?}"
    );
    assert_eq!(db.one("SELECT string_agg(account_id::text, ',') FROM transactions"), "371138");
    assert_eq!(db.one("SELECT string_agg(to_account::text, ',') FROM transfers"), "557378");
    let (code, _, out) = cli(work.path(), &["validate", mp, "--source", s, "--target", &db.url]);
    assert_eq!(code, 0, "{out}");
    // A row pointing at nothing, where no schema constraint stops it: validate sees it.
    db.exec("INSERT INTO transfers VALUES ('00000000-0000-0000-0000-000000000001', 424242)");
    let (code, _, out) = cli(work.path(), &["validate", mp, "--source", s, "--target", &db.url]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("to_account") && out.contains("424242"), "{out}");
    db.exec("DELETE FROM transfers WHERE to_account = 424242");
    let (code, _, out) = cli(work.path(), &["rollback", mp, "--target", &db.url, "--all", "--confirm", &db.name]);
    assert_eq!(code, 0, "{out}");
    assert_eq!(db.one("SELECT ((SELECT count(*) FROM accounts) + (SELECT count(*) FROM transactions) + (SELECT count(*) FROM transfers))::text"), "0");
}

/// Filters on unwind elements (`@` paths) and BSON type tests, end to end:
/// dropped elements and documents are counted as filtered, and both
/// accounting equations hold.
#[test]
fn element_filters_and_type_tests_end_to_end() {
    let work = tempfile::tempdir().unwrap();
    project_with(
        work.path(),
        "CREATE TABLE tags (doc_id INTEGER, pos INTEGER, tag TEXT NOT NULL, PRIMARY KEY (doc_id, pos));",
        "DROP TABLE tags;",
        &[(
            "tags",
            "source = \"vals\"\ntable = \"tags\"\nunwind = \"$.tags[*]\"\nkey = [\"doc_id\", \"pos\"]\n\
         filter = [{ path = \"$.kind\", type = \"string\" }, { path = \"@\", type = \"string\" }, { path = \"@\", not_equals = \"\" }]\n\
         [columns]\ndoc_id = \"$._id\"\npos = { position = { index = \"@\" } }\ntag = \"@\"\n",
        )],
    );
    let docs = [
        r#"{"_id": 1, "kind": "k", "tags": ["a", "", 5, "b"]}"#,
        r#"{"_id": 2, "kind": "k", "tags": [""]}"#,
        r#"{"_id": 3, "kind": "k", "tags": []}"#,
        r#"{"_id": 4, "kind": 7, "tags": ["x"]}"#,
    ];
    let src = source(work.path(), "vals.jsonl", &docs);
    let db = TestDb::new("elemfilter");
    let (m, s) = ("mappings", src.to_str().unwrap());
    let (code, _, out) = cli(work.path(), &["check", m]);
    assert_eq!(code, 0, "{out}");
    for extra in [&["--dry-run"][..], &["--target", &db.url][..]] {
        let (code, report, out) =
            cli(work.path(), &[&["run", m, "--source", s, "--format", "json"][..], extra].concat());
        assert_eq!(code, 0, "{out}");
        let r = &report["mappings"][0];
        let n = |k: &str| r[k].as_u64().unwrap();
        // Elements: 4 + 1 + 0 + 1 = 6 read; "a", "b" loaded; "", 5, "" and doc 4's "x" filtered.
        assert_eq!((n("read"), n("loaded"), n("filtered"), n("rejected")), (6, 2, 4, 0), "{r}");
        let o = &r["document_outcomes"];
        assert_eq!(
            (o["with_rows"].as_u64(), o["filtered"].as_u64(), o["without_elements"].as_u64()),
            (Some(1), Some(3), Some(1)),
            "{r}"
        );
    }
    assert_eq!(
        db.one("SELECT string_agg(doc_id || '/' || pos || '/' || tag, ',' ORDER BY doc_id, pos) FROM tags"),
        "1/0/a,1/3/b"
    );
    let (code, _, out) = cli(work.path(), &["validate", m, "--source", s, "--target", &db.url]);
    assert_eq!(code, 0, "{out}");
    let (code, report, out) = cli(work.path(), &["run", m, "--source", s, "--target", &db.url, "--format", "json"]);
    assert_eq!((code, report["mappings"][0]["unchanged"].as_u64()), (0, Some(2)), "{out}");
    let (code, _, out) = cli(work.path(), &["rollback", m, "--target", &db.url, "--all", "--confirm", &db.name]);
    assert_eq!(code, 0, "{out}");
}

/// `format` end to end: a template over paths; a missing part leaves the
/// value missing (then `default`), a document part rejects the row.
#[test]
fn format_builds_strings_end_to_end() {
    let work = tempfile::tempdir().unwrap();
    let mapping = "source = \"vals\"\ntable = \"vals\"\nkey = \"id\"\n[columns]\nid = \"$._id\"\n\
                   s = { format = \"{$.first} {$.last} ({$.n}) {{x}}\", default = \"anonymous\" }\n";
    let mappings = project(work.path(), &[("vals", mapping)]);
    let docs = [
        r#"{"_id": 1, "first": "Ada", "last": "Lovelace", "n": 1815}"#,
        r#"{"_id": 2, "first": "Alan", "last": "Turing", "n": 0.5}"#,
        r#"{"_id": 3, "first": "Grace"}"#,
        r#"{"_id": 4, "first": "X", "last": {"a": 1}, "n": 1}"#,
    ];
    let src = source(work.path(), "vals.jsonl", &docs);
    let db = TestDb::new("format");
    let (m, s) = (mappings.to_str().unwrap(), src.to_str().unwrap());
    let (code, _, out) = cli(work.path(), &["check", m]);
    assert_eq!(code, 0, "{out}");
    let (code, _, out) = cli(work.path(), &["run", m, "--source", s, "--target", &db.url]);
    assert_eq!(code, 3, "{out}");
    assert_eq!(
        db.one("SELECT string_agg(id || '=' || s, ',' ORDER BY id) FROM vals"),
        "1=Ada Lovelace (1815) {x},2=Alan Turing (0.5) {x},3=anonymous"
    );
    let rejects = read_rejects(work.path());
    assert_eq!(rejects.len(), 1);
    assert!(rejects[0]["reason"].as_str().unwrap().contains("cannot put a document in a string"), "{}", rejects[0]);
    let (code, _, out) = cli(work.path(), &["validate", m, "--source", s, "--target", &db.url]);
    assert_eq!(code, 0, "{out}");
    let (code, report, out) = cli(work.path(), &["run", m, "--source", s, "--target", &db.url, "--format", "json"]);
    assert_eq!((code, report["mappings"][0]["unchanged"].as_u64()), (3, Some(3)), "{out}");
    let (code, _, out) = cli(work.path(), &["rollback", m, "--target", &db.url, "--all", "--confirm", &db.name]);
    assert_eq!(code, 0, "{out}");
}

/// A chunk the table refuses (here a CHECK the mapping cannot see) is
/// halved until the refused rows are found: exactly those are rejected,
/// with the server's reason, wherever they are in the chunk, and every
/// other row loads, on a first load and on a re-run that updates.
#[test]
fn a_refused_chunk_rejects_exactly_its_bad_rows() {
    let work = tempfile::tempdir().unwrap();
    let mapping =
        "source = \"scores\"\ntable = \"scores\"\nkey = \"id\"\n[columns]\nid = \"$._id\"\nscore = \"$.score\"\n";
    project_with(
        work.path(),
        "CREATE TABLE scores (id INTEGER PRIMARY KEY, score INTEGER NOT NULL CHECK (score BETWEEN 0 AND 100));",
        "DROP TABLE scores;",
        &[("scores", mapping)],
    );
    // 1000 documents; the bad ones are first, last, neighbours and scattered.
    let bad: Vec<i64> = vec![0, 1, 2, 499, 500, 733, 998, 999];
    let lines: Vec<String> = (0..1000i64)
        .map(|i| format!("{{\"_id\": {i}, \"score\": {}}}", if bad.contains(&i) { 101 + i } else { i % 101 }))
        .collect();
    let src = work.path().join("src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("scores.jsonl"), lines.join("\n")).unwrap();
    let db = TestDb::new("bisect");
    let s = src.to_str().unwrap();
    for pass in 0..2 {
        let (code, report, out) = cli(
            work.path(),
            &["run", "mappings", "--source", s, "--target", &db.url, "--batch-size", "1000", "--format", "json"],
        );
        assert_eq!(code, 3, "{out}");
        let m = &report["mappings"][0];
        assert_eq!(m["rejected"], bad.len() as u64, "{m}");
        assert_eq!(m["loaded"], 1000 - bad.len() as u64, "{m}");
        let mut rejected: Vec<i64> = read_rejects(work.path()).iter().map(|r| r["_id"].as_i64().unwrap()).collect();
        rejected.sort_unstable();
        assert_eq!(rejected, bad, "pass {pass}");
        assert!(read_rejects(work.path()).iter().all(|r| r["reason"].as_str().unwrap().contains("scores_score_check")));
        let expected: i64 = (0..1000i64).filter(|i| !bad.contains(i)).map(|i| i % 101).sum();
        assert_eq!(
            db.one("SELECT count(*)::text || ' ' || sum(score)::text FROM scores"),
            format!("{} {expected}", 1000 - bad.len())
        );
        // The re-run finds every good row changed: they update, the bad ones are refused again.
        if pass == 0 {
            db.exec("UPDATE scores SET score = 0");
        }
    }
}

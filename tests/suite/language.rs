//! The mapping language's computed values and array shapes, end to end
//! against PostgreSQL: check, plan, dry run, run, validate, an unchanged
//! re-run and rollback. Expected values come from rules applied here to
//! the source JSON (or from PostgreSQL's own functions), not from the tool.

use serde_json::Value;

use super::db::TestDb;
use super::{cli, project_with, read_rejects, source};

/// The whole life of one project: check and plan succeed (the plan shows
/// `plan_shows`), the dry run and the run load `loaded` rows with exit code
/// `code`, validate passes, a re-run leaves every row unchanged, and
/// rollback empties `table`.
struct Life<'a> {
    work: &'a std::path::Path,
    mappings: &'a str,
    source: &'a str,
    db: &'a TestDb,
}

impl Life<'_> {
    fn check_and_plan(&self, plan_shows: &[&str]) {
        let (code, _, out) = cli(self.work, &["check", self.mappings]);
        assert_eq!(code, 0, "{out}");
        let (code, _, plan) = cli(self.work, &["plan", self.mappings]);
        assert_eq!(code, 0, "{plan}");
        for s in plan_shows {
            assert!(plan.contains(s), "plan lacks {s:?}:\n{plan}");
        }
    }

    /// Dry run, then run: each mapping's loaded count, the same in both.
    fn load(&self, code: i32, loaded: &[u64]) {
        for target in [None, Some(self.db.url.as_str())] {
            let mut args = vec!["run", self.mappings, "--source", self.source, "--format", "json"];
            match target {
                Some(url) => args.extend(["--target", url]),
                None => args.push("--dry-run"),
            }
            let (got, report, out) = cli(self.work, &args);
            assert_eq!(got, code, "{out}");
            let counts: Vec<u64> =
                report["mappings"].as_array().unwrap().iter().map(|m| m["loaded"].as_u64().unwrap()).collect();
            let rejects = std::fs::read_to_string(self.work.join("rejects.jsonl")).unwrap_or_default();
            assert_eq!(counts, loaded, "{target:?}: {out}\n{rejects}");
        }
    }

    /// Validate, an unchanged re-run, rollback: `tables` are empty after.
    fn validate_rerun_rollback(&self, code: i32, tables: &[&str]) {
        let (got, _, out) =
            cli(self.work, &["validate", self.mappings, "--source", self.source, "--target", &self.db.url]);
        assert_eq!(got, 0, "{out}");
        let (got, report, out) = cli(
            self.work,
            &["run", self.mappings, "--source", self.source, "--target", &self.db.url, "--format", "json"],
        );
        assert_eq!(got, code, "{out}");
        for m in report["mappings"].as_array().unwrap() {
            assert_eq!(m["inserted"].as_u64(), Some(0), "{out}");
            assert_eq!(m["updated"].as_u64(), Some(0), "{out}");
        }
        let (got, _, out) =
            cli(self.work, &["rollback", self.mappings, "--target", &self.db.url, "--all", "--confirm", &self.db.name]);
        assert_eq!(got, 0, "{out}");
        for t in tables {
            assert_eq!(self.db.one(&format!("SELECT count(*)::text FROM {t}")), "0", "{t}");
        }
    }
}

/// `regex`, `to_number`, `to_date` with `date_format`, `split` and
/// `wrap_scalar` on columns: movie-catalogue shapes (a year inside the
/// title, prices as strings, US dates, comma-separated genres, a tag that
/// is sometimes one string and sometimes a list).
#[test]
fn computed_values_and_array_columns_end_to_end() {
    let work = tempfile::tempdir().unwrap();
    let up = "CREATE TABLE movies (
        id INTEGER PRIMARY KEY,
        title TEXT NOT NULL,
        year INTEGER,
        price NUMERIC(8,2),
        released DATE,
        genres TEXT[],
        tags TEXT[]
    );";
    let mapping = r#"source = "movies"
table = "movies"
key = "id"
[columns]
id = "$._id"
title = { regex = { from = "$.title", pattern = '^(.*?)(?: \((\d{4})\))?$', group = 1 }, required = true }
year = { regex = { from = "$.title", pattern = '\((?<year>\d{4})\)$', group = "year" } }
price = { from = "$.price", transform = "to_number" }
released = { from = "$.released", transform = "to_date", date_format = "%m/%d/%Y" }
genres = { from = "$.genres", split = ", " }
tags = { from = "$.tags", wrap_scalar = true }
"#;
    let mappings = project_with(work.path(), up, "DROP TABLE movies;", &[("movies", mapping)]);
    let docs = [
        r#"{"_id": 1, "title": "Heat (1995)", "price": "12.50", "released": "12/15/1995", "genres": "Crime, Drama", "tags": "heist"}"#,
        r#"{"_id": 2, "title": "Alien", "price": 9, "released": "05/25/1979", "genres": ["Horror"], "tags": ["space", "crew"]}"#,
        r#"{"_id": 3, "title": "Up (2009)", "price": {"$numberDecimal": "4.5"}, "genres": ""}"#,
        r#"{"_id": 4, "title": "Bad price (2001)", "price": "12,50"}"#,
        r#"{"_id": 5, "title": "Bad date (2002)", "released": "2002-01-01"}"#,
        r#"{"_id": 6, "title": "Too fine (2003)", "price": "1.005"}"#,
    ];
    // The rules, applied to the JSON here.
    let expected: Vec<String> = docs[..3]
        .iter()
        .map(|d| {
            let v: Value = serde_json::from_str(d).unwrap();
            let t = v["title"].as_str().unwrap();
            let (title, year) = match t.strip_suffix(')').and_then(|x| x.rsplit_once(" (")) {
                Some((title, year)) => (title.to_string(), year.to_string()),
                None => (t.to_string(), "NULL".to_string()),
            };
            let price = match &v["price"] {
                Value::String(s) => format!("{:.2}", s.parse::<f64>().unwrap()),
                Value::Number(n) => format!("{:.2}", n.as_f64().unwrap()),
                Value::Object(o) => format!("{:.2}", o["$numberDecimal"].as_str().unwrap().parse::<f64>().unwrap()),
                _ => "NULL".into(),
            };
            let released = v["released"].as_str().map_or("NULL".to_string(), |r| {
                let (m, rest) = r.split_once('/').unwrap();
                let (d, y) = rest.split_once('/').unwrap();
                format!("{y}-{m}-{d}")
            });
            let list = |x: &Value, sep: &str| match x {
                Value::String(s) if s.is_empty() => "{}".to_string(),
                Value::String(s) => format!("{{{}}}", s.split(sep).collect::<Vec<_>>().join(",")),
                Value::Array(a) => {
                    format!("{{{}}}", a.iter().map(|i| i.as_str().unwrap()).collect::<Vec<_>>().join(","))
                }
                _ => "NULL".into(),
            };
            format!(
                "{}|{title}|{year}|{price}|{released}|{}|{}",
                v["_id"],
                list(&v["genres"], ", "),
                list(&v["tags"], "\u{0}")
            )
        })
        .collect();
    let src = source(work.path(), "movies.jsonl", &docs);
    let db = TestDb::new("computed");
    let (m, s) = (mappings.to_str().unwrap(), src.to_str().unwrap());
    let life = Life { work: work.path(), mappings: m, source: s, db: &db };
    life.check_and_plan(&[
        r#"regex($.title, /\((?<year>\d{4})\)$/, group "year")"#,
        "to_number",
        r#"to_date("%m/%d/%Y")"#,
        r#"split(", ")"#,
        "wrap_scalar",
    ]);
    life.load(3, &[3]);
    let got = db.rows(
        "SELECT concat_ws('|', id, title, coalesce(year::text, 'NULL'), coalesce(price::text, 'NULL'), \
         coalesce(released::text, 'NULL'), coalesce(genres::text, 'NULL'), coalesce(tags::text, 'NULL')) FROM movies ORDER BY id",
    );
    let got: Vec<String> = got.into_iter().map(|r| r[0].clone().unwrap()).collect();
    assert_eq!(got, expected);
    let reasons: Vec<String> =
        read_rejects(work.path()).iter().map(|r| format!("{} {}", r["_id"], r["reason"].as_str().unwrap())).collect();
    assert_eq!(reasons.len(), 3, "{reasons:?}");
    assert!(reasons[0].starts_with("4 ") && reasons[0].contains("string \"12,50\" is not a number"), "{reasons:?}");
    assert!(
        reasons[1].starts_with("5 ") && reasons[1].contains("does not match date_format \"%m/%d/%Y\""),
        "{reasons:?}"
    );
    assert!(reasons[2].starts_with("6 ") && reasons[2].contains("1.005 has 3 decimal places"), "{reasons:?}");
    life.validate_rerun_rollback(3, &["movies"]);
}

/// `id = ["$.zip", "$.state"]` and a reference with it; an unwind with
/// `split` and `wrap_scalar` (a list, a comma-separated string, a single
/// value, nothing). The ids are checked against PostgreSQL's own
/// `uuid_generate_v5` over the documented name encoding.
#[test]
fn ids_from_several_fields_and_shaped_unwinds_end_to_end() {
    let work = tempfile::tempdir().unwrap();
    let up = "CREATE TABLE zips (id UUID PRIMARY KEY, zip TEXT NOT NULL, state TEXT NOT NULL);
        CREATE TABLE stores (id INTEGER PRIMARY KEY, zip_id UUID NOT NULL REFERENCES zips(id));
        CREATE TABLE store_kinds (store_id INTEGER NOT NULL REFERENCES stores(id), kind TEXT NOT NULL,
            PRIMARY KEY (store_id, kind));";
    let zips = r#"source = "zips"
table = "zips"
key = "id"
[columns]
id = { id = ["$.zip", "$.state"] }
zip = "$.zip"
state = "$.state"
"#;
    let stores = r#"source = "stores"
table = "stores"
key = "id"
[columns]
id = "$._id"
zip_id = { id = ["$.address.zip", "$.address.state"], references = "zips" }
"#;
    let kinds = r#"source = "stores"
table = "store_kinds"
unwind = { path = "$.kinds", split = ",", wrap_scalar = true }
key = ["store_id", "kind"]
[columns]
store_id = { from = "$._id", references = "stores" }
kind = "@"
"#;
    let mappings = project_with(
        work.path(),
        up,
        "DROP TABLE store_kinds; DROP TABLE stores; DROP TABLE zips;",
        &[("zips", zips), ("stores", stores), ("store_kinds", kinds)],
    );
    let src = source(
        work.path(),
        "zips.jsonl",
        &[r#"{"_id": 1, "zip": "10001", "state": "NY"}"#, r#"{"_id": 2, "zip": "1000", "state": "1NY"}"#],
    );
    let stores_docs = [
        r#"{"_id": 1, "address": {"zip": "10001", "state": "NY"}, "kinds": ["cafe", "books"]}"#,
        r#"{"_id": 2, "address": {"zip": "1000", "state": "1NY"}, "kinds": "cafe,bar"}"#,
        r#"{"_id": 3, "address": {"zip": "10001", "state": "NY"}, "kinds": 7}"#,
        r#"{"_id": 4, "address": {"zip": "10001", "state": "NY"}}"#,
        r#"{"_id": 5, "address": {"zip": "99999", "state": "ZZ"}, "kinds": "x"}"#,
        r#"{"_id": 6, "address": {"zip": "10001"}}"#,
    ];
    std::fs::write(src.join("stores.jsonl"), stores_docs.join("\n")).unwrap();
    let db = TestDb::new("multi_ids");
    let (m, s) = (mappings.to_str().unwrap(), src.to_str().unwrap());
    let life = Life { work: work.path(), mappings: m, source: s, db: &db };
    life.check_and_plan(&["id($.zip, $.state)", "a string split at \",\"; a single value as one element"]);
    // zips: 2. stores: 1–4 load; 5 points at no zip (a reject at the run,
    // loaded by the dry run, which does not see the target); 6 lacks a part.
    let (code, report, out) = cli(work.path(), &["run", m, "--source", s, "--dry-run", "--format", "json"]);
    assert_eq!(code, 3, "{out}");
    let loaded: Vec<u64> =
        report["mappings"].as_array().unwrap().iter().map(|x| x["loaded"].as_u64().unwrap()).collect();
    assert_eq!(loaded, [2, 5, 6], "{out}");
    let (code, report, out) = cli(work.path(), &["run", m, "--source", s, "--target", &db.url, "--format", "json"]);
    assert_eq!(code, 3, "{out}");
    let loaded: Vec<u64> =
        report["mappings"].as_array().unwrap().iter().map(|x| x["loaded"].as_u64().unwrap()).collect();
    assert_eq!(loaded, [2, 4, 5], "{out}");

    let oracle = TestDb::new("multi_ids_oracle");
    oracle.create();
    oracle.exec("CREATE EXTENSION \"uuid-ossp\"");
    let ns = "'8a2f3c1e-5b7d-5e4a-9c6f-0d1e2f3a4b5c'::uuid";
    let want = oracle.one(&format!(
        "SELECT uuid_generate_v5({ns}, 's5:10001s2:NY')::text || ',' || uuid_generate_v5({ns}, 's4:1000s3:1NY')::text"
    ));
    assert_eq!(db.one("SELECT string_agg(id::text, ',' ORDER BY zip DESC) FROM zips"), want);
    assert_eq!(
        db.one(
            "SELECT string_agg(s.id || '=' || z.zip || '/' || z.state, ',' ORDER BY s.id) \
             FROM stores s JOIN zips z ON z.id = s.zip_id"
        ),
        "1=10001/NY,2=1000/1NY,3=10001/NY,4=10001/NY"
    );
    assert_eq!(
        db.one("SELECT string_agg(store_id || '=' || kind, ',' ORDER BY store_id, kind) FROM store_kinds"),
        "1=books,1=cafe,2=bar,2=cafe,3=7"
    );
    let reasons: Vec<String> = read_rejects(work.path())
        .iter()
        .map(|r| format!("{} {} {}", r["mapping"], r["_id"], r["reason"].as_str().unwrap()))
        .collect();
    assert_eq!(reasons.len(), 3, "{reasons:?}");
    life.validate_rerun_rollback(3, &["store_kinds", "stores", "zips"]);
}

/// `on_duplicate = "first" | "last"`: lookup tables from repeated values
/// (the genres of every movie). The kept row is the first (or last) by
/// source order across chunk boundaries, the others count as
/// `duplicates` (not rejects), and `read = loaded + rejected + filtered +
/// duplicates` holds.
#[test]
fn duplicate_keys_by_design_end_to_end() {
    let work = tempfile::tempdir().unwrap();
    let up = "CREATE TABLE genres_first (name TEXT PRIMARY KEY, movie INTEGER NOT NULL);
        CREATE TABLE genres_last (name TEXT PRIMARY KEY, movie INTEGER NOT NULL);";
    let mapping = |table: &str, keep: &str| {
        format!(
            "source = \"movies\"\ntable = \"{table}\"\nunwind = \"$.genres[*]\"\nkey = \"name\"\non_duplicate = \"{keep}\"\n\
             [columns]\nname = \"@\"\nmovie = \"$._id\"\n"
        )
    };
    let (first, last) = (mapping("genres_first", "first"), mapping("genres_last", "last"));
    let mappings = project_with(
        work.path(),
        up,
        "DROP TABLE genres_first; DROP TABLE genres_last;",
        &[("genres_first", &first), ("genres_last", &last)],
    );
    let docs = [
        r#"{"_id": 1, "genres": ["Drama", "Crime"]}"#,
        r#"{"_id": 2, "genres": ["Drama"]}"#,
        r#"{"_id": 3, "genres": ["Comedy", "Drama"]}"#,
        r#"{"_id": 4, "genres": []}"#,
        r#"{"_id": 5, "genres": ["Drama", "Drama", "Crime"]}"#,
        r#"{"_id": 6, "genres": ["Western"]}"#,
    ];
    // The rule, applied here: per genre, the first and the last movie.
    let (mut firsts, mut lasts, mut rows) = (std::collections::BTreeMap::new(), std::collections::BTreeMap::new(), 0);
    for d in &docs {
        let v: Value = serde_json::from_str(d).unwrap();
        for g in v["genres"].as_array().unwrap() {
            rows += 1;
            firsts.entry(g.as_str().unwrap().to_string()).or_insert(v["_id"].as_i64().unwrap());
            lasts.insert(g.as_str().unwrap().to_string(), v["_id"].as_i64().unwrap());
        }
    }
    let show = |m: &std::collections::BTreeMap<String, i64>| {
        m.iter().map(|(g, id)| format!("{g}={id}")).collect::<Vec<_>>().join(",")
    };
    let duplicates = (rows - firsts.len()) as u64;
    let src = source(work.path(), "movies.jsonl", &docs);
    let db = TestDb::new("on_duplicate");
    let (m, s) = (mappings.to_str().unwrap(), src.to_str().unwrap());
    let life = Life { work: work.path(), mappings: m, source: s, db: &db };
    life.check_and_plan(&["key (name); a repeated key keeps the first row", "keeps the last row"]);
    for target in [None, Some(db.url.as_str())] {
        // Two rows a chunk: repeats cross chunk boundaries.
        let mut args = vec!["run", m, "--source", s, "--format", "json", "--batch-size", "2"];
        match target {
            Some(url) => args.extend(["--target", url]),
            None => args.push("--dry-run"),
        }
        let (code, report, out) = cli(work.path(), &args);
        assert_eq!(code, 0, "{out}");
        for r in report["mappings"].as_array().unwrap() {
            let n = |k: &str| r[k].as_u64().unwrap();
            assert_eq!(
                (n("read"), n("loaded"), n("duplicates"), n("rejected")),
                (rows as u64, firsts.len() as u64, duplicates, 0),
                "{out}"
            );
            assert_eq!(n("read"), n("loaded") + n("rejected") + n("filtered") + n("duplicates"));
        }
    }
    let (_, _, text) = cli(work.path(), &["run", m, "--source", s, "--dry-run"]);
    assert!(text.contains(&format!("genres_first: {duplicates} rows repeated a key and were not loaded")), "{text}");
    assert_eq!(db.one("SELECT string_agg(name || '=' || movie, ',' ORDER BY name) FROM genres_first"), show(&firsts));
    assert_eq!(db.one("SELECT string_agg(name || '=' || movie, ',' ORDER BY name) FROM genres_last"), show(&lasts));
    assert!(!work.path().join("rejects.jsonl").exists(), "duplicates are not rejects");
    life.validate_rerun_rollback(0, &["genres_first", "genres_last"]);
}

/// `on_missing = "null"`: a reference whose row is not there loads as NULL,
/// counted as `nulled` and written to the rejects file as a warning line;
/// the default still rejects. Validate accepts the NULL (the row is not
/// there) and a re-run changes nothing.
#[test]
fn missing_references_become_null_when_asked_end_to_end() {
    let work = tempfile::tempdir().unwrap();
    let up = "CREATE TABLE authors (id INTEGER PRIMARY KEY);
        CREATE TABLE books (id INTEGER PRIMARY KEY, author_id INTEGER REFERENCES authors(id),
            editor_id INTEGER REFERENCES authors(id));";
    let authors = "source = \"authors\"\ntable = \"authors\"\nkey = \"id\"\n[columns]\nid = \"$._id\"\n";
    let books = r#"source = "books"
table = "books"
key = "id"
[columns]
id = "$._id"
author_id = { from = "$.author", references = "authors", on_missing = "null" }
editor_id = { from = "$.editor", references = "authors" }
"#;
    let mappings = project_with(
        work.path(),
        up,
        "DROP TABLE books; DROP TABLE authors;",
        &[("authors", authors), ("books", books)],
    );
    let src = source(work.path(), "authors.jsonl", &[r#"{"_id": 1}"#, r#"{"_id": 2}"#]);
    let docs = [
        r#"{"_id": 10, "author": 1, "editor": 2}"#,
        r#"{"_id": 11, "author": 99}"#,
        r#"{"_id": 12, "author": 2, "editor": 98}"#,
        r#"{"_id": 13}"#,
        r#"{"_id": 14, "author": 97, "editor": 1}"#,
    ];
    std::fs::write(src.join("books.jsonl"), docs.join("\n")).unwrap();
    // The rule, applied here: authors 1 and 2 exist; a missing author is
    // NULL, a missing editor rejects the book.
    let exists = |v: &Value| v.as_i64().is_some_and(|i| i == 1 || i == 2);
    let (mut expected, mut nulled, mut rejected) = (Vec::new(), 0u64, 0u64);
    for d in &docs {
        let v: Value = serde_json::from_str(d).unwrap();
        if !v["editor"].is_null() && !exists(&v["editor"]) {
            rejected += 1;
            continue;
        }
        let author = if exists(&v["author"]) { v["author"].to_string() } else { "NULL".into() };
        nulled += u64::from(!v["author"].is_null() && !exists(&v["author"]));
        let editor = if v["editor"].is_null() { "NULL".to_string() } else { v["editor"].to_string() };
        expected.push(format!("{}|{author}|{editor}", v["_id"]));
    }
    let db = TestDb::new("on_missing");
    let (m, s) = (mappings.to_str().unwrap(), src.to_str().unwrap());
    let life = Life { work: work.path(), mappings: m, source: s, db: &db };
    life.check_and_plan(&[]);
    let (code, report, out) = cli(work.path(), &["run", m, "--source", s, "--target", &db.url, "--format", "json"]);
    assert_eq!(code, 3, "{out}");
    let b = &report["mappings"][1];
    assert_eq!((b["nulled"].as_u64(), b["rejected"].as_u64()), (Some(nulled), Some(rejected)), "{out}");
    assert_eq!(b["loaded"].as_u64(), Some(expected.len() as u64), "{out}");
    let got: Vec<String> = db
        .rows("SELECT concat_ws('|', id, coalesce(author_id::text, 'NULL'), coalesce(editor_id::text, 'NULL')) FROM books ORDER BY id")
        .into_iter()
        .map(|r| r[0].clone().unwrap())
        .collect();
    assert_eq!(got, expected);
    let lines = read_rejects(work.path());
    let severities: Vec<(String, String)> =
        lines.iter().map(|r| (r["_id"].to_string(), r["severity"].as_str().unwrap().to_string())).collect();
    assert_eq!(
        severities,
        [("11", "warning"), ("14", "warning"), ("12", "error")].map(|(a, b)| (a.to_string(), b.to_string()))
    );
    assert!(lines[0]["reason"].as_str().unwrap().contains("loaded with NULL (on_missing = \"null\")"), "{}", lines[0]);
    let (_, _, text) = cli(work.path(), &["run", m, "--source", s, "--target", &db.url]);
    assert!(text.contains("rows loaded with NULL for a reference whose row is not there"), "{text}");
    life.validate_rerun_rollback(3, &["books", "authors"]);
}

/// `bytea` from BSON binary of any subtype and from base64/hex strings
/// (`encoding`); BSON vectors (binary subtype 9: float32, int8, packed
/// bits) and number arrays into `real[]`, `double precision[]` and
/// `boolean[]` with a `dimensions` check. Written as canonical and legacy
/// extended JSON; values compared by PostgreSQL's own parsers.
#[test]
fn bytes_and_vectors_end_to_end() {
    use base64::Engine as _;
    let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
    let work = tempfile::tempdir().unwrap();
    let up = "CREATE TABLE files (id INTEGER PRIMARY KEY, blob BYTEA, b64 BYTEA, hx BYTEA,
        emb REAL[], emb8 DOUBLE PRECISION[], bits BOOLEAN[]);";
    let mapping = r#"source = "files"
table = "files"
key = "id"
[columns]
id = "$._id"
blob = "$.blob"
b64 = { from = "$.b64", encoding = "base64" }
hx = { from = "$.hx", encoding = "hex" }
emb = { from = "$.emb", dimensions = 3 }
emb8 = "$.emb8"
bits = "$.bits"
"#;
    let mappings = project_with(work.path(), up, "DROP TABLE files;", &[("files", mapping)]);
    let float32 = |xs: &[f32]| {
        let mut v = vec![0x27u8, 0];
        for x in xs {
            v.extend_from_slice(&x.to_le_bytes());
        }
        b64(&v)
    };
    let canonical = |data: &str, sub: &str| format!(r#"{{"$binary": {{"base64": "{data}", "subType": "{sub}"}}}}"#);
    let legacy = |data: &str, sub: &str| format!(r#"{{"$binary": "{data}", "$type": "{sub}"}}"#);
    let docs = [
        format!(
            r#"{{"_id": 1, "blob": {}, "b64": "AAH/", "hx": "0001FF", "emb": {}, "emb8": {}, "bits": {}}}"#,
            canonical(&b64(&[0, 1, 255]), "00"),
            canonical(&float32(&[1.5, -2.0, 0.1]), "09"),
            legacy(&b64(&[0x03, 0, 1, 0xfe, 127]), "09"),
            canonical(&b64(&[0x10, 4, 0b1010_0000]), "09"),
        ),
        format!(r#"{{"_id": 2, "blob": {}, "emb": [0.5, 2, -1]}}"#, legacy(&b64(b"\x80custom"), "80")),
        format!(r#"{{"_id": 3, "emb": {}}}"#, canonical(&float32(&[1.0, 2.0]), "09")),
        format!(r#"{{"_id": 4, "bits": {}}}"#, canonical(&b64(&[0x10, 4, 0b1010_0001]), "09")),
        r#"{"_id": 5, "blob": "AAH/"}"#.to_string(),
        r#"{"_id": 6, "hx": "0g"}"#.to_string(),
    ];
    let lines: Vec<&str> = docs.iter().map(String::as_str).collect();
    let src = source(work.path(), "files.jsonl", &lines);
    let db = TestDb::new("bytes");
    let (m, s) = (mappings.to_str().unwrap(), src.to_str().unwrap());
    let life = Life { work: work.path(), mappings: m, source: s, db: &db };
    life.check_and_plan(&[]);
    life.load(3, &[2]);
    // PostgreSQL's own parsers say what each value must be.
    let same = db.one(
        "SELECT string_agg((id, \
           blob IS NOT DISTINCT FROM CASE id WHEN 1 THEN '\\x0001ff'::bytea ELSE '\\x80637573746f6d'::bytea END, \
           b64 IS NOT DISTINCT FROM CASE id WHEN 1 THEN decode('AAH/', 'base64') END, \
           hx IS NOT DISTINCT FROM CASE id WHEN 1 THEN decode('0001ff', 'hex') END, \
           emb = CASE id WHEN 1 THEN '{1.5,-2,0.1}'::real[] ELSE '{0.5,2,-1}'::real[] END, \
           emb8 IS NOT DISTINCT FROM CASE id WHEN 1 THEN '{1,-2,127}'::float8[] END, \
           bits IS NOT DISTINCT FROM CASE id WHEN 1 THEN '{t,f,t,f}'::boolean[] END)::text, ',' ORDER BY id) FROM files",
    );
    assert_eq!(same, "(1,t,t,t,t,t,t),(2,t,t,t,t,t,t)");
    let reasons: Vec<String> =
        read_rejects(work.path()).iter().map(|r| format!("{} {}", r["_id"], r["reason"].as_str().unwrap())).collect();
    assert_eq!(reasons.len(), 4, "{reasons:?}");
    assert!(
        reasons[0].starts_with("3 ")
            && reasons[0].contains("an array of 2 elements, but the column takes `dimensions = 3`"),
        "{reasons:?}"
    );
    assert!(reasons[1].starts_with("4 ") && reasons[1].contains("malformed BSON vector"), "{reasons:?}");
    assert!(
        reasons[2].starts_with("5 ") && reasons[2].contains("cannot go into bytea; say how it holds bytes"),
        "{reasons:?}"
    );
    assert!(reasons[3].starts_with("6 ") && reasons[3].contains("is not hex"), "{reasons:?}");
    life.validate_rerun_rollback(3, &["files"]);
}

/// Nested unwinds: `unwind = ["$.tiers.*", "@.benefits[*]"]` gives one row
/// per benefit of each tier; `key = "@1"` is the tier, `@1.fee` reads the
/// tier, `position` keeps each level's order. Every innermost element is
/// a row, a filtered element or a reject; validate, re-run and rollback.
#[test]
fn nested_unwinds_end_to_end() {
    let work = tempfile::tempdir().unwrap();
    let up = "CREATE TABLE benefits (card INTEGER NOT NULL, tier TEXT NOT NULL, pos INTEGER NOT NULL,
        benefit TEXT NOT NULL, fee INTEGER, PRIMARY KEY (card, tier, pos));";
    let mapping = r#"source = "cards"
table = "benefits"
unwind = ["$.tiers.*", "@.benefits[*]"]
key = ["card", "tier", "pos"]
filter = { path = "@", type = "string" }
[columns]
card = "$._id"
tier = { key = "@1" }
pos = { position = { index = "@" } }
benefit = "@"
fee = "@1.fee"
"#;
    let mappings = project_with(work.path(), up, "DROP TABLE benefits;", &[("benefits", mapping)]);
    let docs = [
        r#"{"_id": 1, "tiers": {"gold": {"fee": 10, "benefits": ["lounge", "miles"]}, "basic": {"fee": 0, "benefits": []}}}"#,
        r#"{"_id": 2, "tiers": {"silver": {"fee": 5, "benefits": ["miles", 7, "cashback"]}}}"#,
        r#"{"_id": 3, "tiers": {}}"#,
        r#"{"_id": 4, "tiers": {"odd": {"benefits": "x"}, "gold": {"fee": 12, "benefits": ["concierge"]}}}"#,
    ];
    // The rule, applied here: per tier in order, per benefit in order.
    let (mut expected, mut filtered, mut rejected) = (Vec::new(), 0u64, 0u64);
    for d in &docs {
        let v: Value = serde_json::from_str(d).unwrap();
        for (tier, t) in v["tiers"].as_object().unwrap() {
            match &t["benefits"] {
                Value::Array(bs) => {
                    for (pos, b) in bs.iter().enumerate() {
                        match b.as_str() {
                            Some(b) => expected.push(format!("{}|{tier}|{pos}|{b}|{}", v["_id"], t["fee"])),
                            None => filtered += 1,
                        }
                    }
                }
                _ => rejected += 1,
            }
        }
    }
    expected.sort();
    let src = source(work.path(), "cards.jsonl", &docs);
    let db = TestDb::new("nested");
    let (m, s) = (mappings.to_str().unwrap(), src.to_str().unwrap());
    let life = Life { work: work.path(), mappings: m, source: s, db: &db };
    life.check_and_plan(&["one row per $.tiers.*, then per @.benefits[*]", "key(@1)"]);
    life.load(3, &[expected.len() as u64]);
    let (_, report, _) = cli(work.path(), &["run", m, "--source", s, "--dry-run", "--format", "json"]);
    let r = &report["mappings"][0];
    assert_eq!((r["filtered"].as_u64(), r["rejected"].as_u64()), (Some(filtered), Some(rejected)));
    let got: Vec<String> = db
        .rows("SELECT concat_ws('|', card, tier, pos, benefit, coalesce(fee::text, 'null')) FROM benefits ORDER BY 1")
        .into_iter()
        .map(|r| r[0].clone().unwrap())
        .collect();
    assert_eq!(got, expected);
    life.validate_rerun_rollback(3, &["benefits"]);
}

/// Whether the server has PostGIS; without it the test fails in CI and says
/// it skipped elsewhere.
fn postgis_available(test: &str) -> bool {
    let probe = TestDb::new("postgis_probe");
    probe.create();
    let found = probe.one("SELECT count(*)::text FROM pg_available_extensions WHERE name = 'postgis'") == "1";
    if !found {
        assert!(std::env::var("CI").is_err(), "{test}: PostGIS is not installed (package postgresql-15-postgis-3)");
        eprintln!("SKIPPED {test}: PostGIS is not installed (package postgresql-15-postgis-3)");
    }
    found
}

/// GeoJSON (and `[lon, lat]` pairs with `point = true`) into PostGIS
/// `geometry`/`geography` columns, the declared geometry type checked,
/// invalid geometry a reject with the reason; values read back through
/// PostGIS's own `ST_AsText`.
#[test]
fn geojson_into_postgis_end_to_end() {
    if !postgis_available("geojson_into_postgis_end_to_end") {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let up = "CREATE EXTENSION IF NOT EXISTS postgis;
        CREATE TABLE places (id INTEGER PRIMARY KEY, loc geometry(Point, 4326), coord geometry(Point, 4326),
            area geography(Polygon, 4326), route geometry);";
    let mapping = r#"source = "places"
table = "places"
key = "id"
[columns]
id = "$._id"
loc = "$.location"
coord = { from = "$.address.coord", point = true }
area = "$.area"
route = "$.route"
"#;
    let mappings = project_with(work.path(), up, "DROP TABLE places;", &[("places", mapping)]);
    let docs = [
        r#"{"_id": 1, "location": {"type": "Point", "coordinates": [-73.97, 40.77]}, "address": {"coord": [-73.856077, 40.848447]},
            "area": {"type": "Polygon", "coordinates": [[[0, 0], [1, 0], [1, 1], [0, 0]]]},
            "route": {"type": "LineString", "coordinates": [[0, 0], [1, 1.5], [2.25, 3]]}}"#,
        r#"{"_id": 2, "location": {"type": "LineString", "coordinates": [[0, 0], [1, 1]]}}"#,
        r#"{"_id": 3, "address": {"coord": [200, 10]}}"#,
        r#"{"_id": 4, "area": {"type": "Polygon", "coordinates": [[[0, 0], [1, 0], [1, 1], [0, 1]]]}}"#,
        r#"{"_id": 5}"#,
    ];
    let lines: Vec<String> = docs.iter().map(|d| d.replace('\n', " ")).collect();
    let lines: Vec<&str> = lines.iter().map(String::as_str).collect();
    let src = source(work.path(), "places.jsonl", &lines);
    let db = TestDb::new("postgis");
    let (m, s) = (mappings.to_str().unwrap(), src.to_str().unwrap());
    let life = Life { work: work.path(), mappings: m, source: s, db: &db };
    life.check_and_plan(&["-> geometry(Point,4326)", "-> geography(Polygon,4326)"]);
    life.load(3, &[2]);
    assert_eq!(
        db.one(
            "SELECT string_agg(concat_ws('|', id, ST_AsText(loc), ST_SRID(loc), ST_AsText(coord), ST_AsText(area::geometry), \
             ST_AsText(route)), ',' ORDER BY id) FROM places"
        ),
        // concat_ws skips NULLs: document 5 had no geometry at all.
        "1|POINT(-73.97 40.77)|4326|POINT(-73.856077 40.848447)|POLYGON((0 0,1 0,1 1,0 0))|LINESTRING(0 0,1 1.5,2.25 3),5"
    );
    let reasons: Vec<String> =
        read_rejects(work.path()).iter().map(|r| format!("{} {}", r["_id"], r["reason"].as_str().unwrap())).collect();
    assert_eq!(reasons.len(), 3, "{reasons:?}");
    assert!(
        reasons[0].starts_with("2 ") && reasons[0].contains("a LineString cannot go into geometry(Point,4326)"),
        "{reasons:?}"
    );
    assert!(reasons[1].starts_with("3 ") && reasons[1].contains("position [200, 10] is outside"), "{reasons:?}");
    assert!(reasons[2].starts_with("4 ") && reasons[2].contains("ring is not closed"), "{reasons:?}");
    life.validate_rerun_rollback(3, &["places"]);
}

/// The end of a run names its rejects by kind, most frequent first, with
/// a count and an example `_id` each; counts come from the data here.
#[test]
fn rejects_are_summarised_by_reason() {
    let work = tempfile::tempdir().unwrap();
    let up = "CREATE TABLE t (id INTEGER PRIMARY KEY, n SMALLINT, s VARCHAR(3));";
    let mapping = "source = \"t\"\ntable = \"t\"\nkey = \"id\"\n[columns]\nid = \"$._id\"\nn = \"$.n\"\ns = \"$.s\"\n";
    let mappings = project_with(work.path(), up, "DROP TABLE t;", &[("t", mapping)]);
    let mut docs = Vec::new();
    let (mut too_big, mut too_long) = (0, 0);
    for i in 0..20 {
        let n = if i % 3 == 0 { 40_000 + i } else { i };
        let s = if i % 4 == 1 { "long" } else { "ok" };
        // A row has one reject reason: the first column that fails.
        if n > 32_767 {
            too_big += 1;
        } else if s.len() > 3 {
            too_long += 1;
        }
        docs.push(format!(r#"{{"_id": {i}, "n": {n}, "s": "{s}"}}"#));
    }
    let lines: Vec<&str> = docs.iter().map(String::as_str).collect();
    let src = source(work.path(), "t.jsonl", &lines);
    let (m, s) = (mappings.to_str().unwrap(), src.to_str().unwrap());
    let (code, _, out) = cli(work.path(), &["run", m, "--source", s, "--dry-run"]);
    assert_eq!(code, 3, "{out}");
    assert!(out.contains("rejects by reason"), "{out}");
    assert!(
        out.contains(&format!("{too_big} × t: n: int32 ")) && out.contains("is out of range for smallint  e.g. _id 0"),
        "{out}"
    );
    assert!(
        out.contains(&format!("{too_long} × t: s: string of 4 characters is longer than varchar(3)  e.g. _id 1")),
        "{out}"
    );
    let (_, report, _) = cli(work.path(), &["run", m, "--source", s, "--dry-run", "--format", "json"]);
    let counts: Vec<u64> =
        report["reject_reasons"].as_array().unwrap().iter().map(|r| r["count"].as_u64().unwrap()).collect();
    assert_eq!(counts, [too_big.max(too_long), too_big.min(too_long)]);
}

/// Coverage: a mapped path no document has (a typo) is a warning with a
/// "did you mean" and the count of the field it likely meant, an error
/// under `--strict`; fields no mapping reads are listed as left behind.
/// Counts come from the documents here.
#[test]
fn coverage_names_typos_and_what_is_left_behind() {
    let work = tempfile::tempdir().unwrap();
    let up = "CREATE TABLE people (id INTEGER PRIMARY KEY, lang TEXT, city TEXT);";
    let mapping = "source = \"people\"\ntable = \"people\"\nkey = \"id\"\n[columns]\nid = \"$._id\"\n\
                   lang = \"$.profile.native_langauge\"\ncity = \"$.address.city\"\n";
    let mappings = project_with(work.path(), up, "DROP TABLE people;", &[("people", mapping)]);
    let mut docs = Vec::new();
    let mut with_referral = 0;
    for i in 0..30 {
        let referral = if i % 3 == 0 {
            with_referral += 1;
            r#", "referral": "x""#
        } else {
            ""
        };
        docs.push(format!(
            r#"{{"_id": {i}, "profile": {{"native_language": "es"}}, "address": {{"city": "Lima", "zip": "15001"}}{referral}}}"#
        ));
    }
    let lines: Vec<&str> = docs.iter().map(String::as_str).collect();
    let src = source(work.path(), "people.jsonl", &lines);
    let (m, s) = (mappings.to_str().unwrap(), src.to_str().unwrap());
    let (code, _, out) = cli(work.path(), &["run", m, "--source", s, "--dry-run"]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains(&format!(
            "warning: `$.profile.native_langauge` (people, column lang) matched 0 of {} documents; did you mean `$.profile.native_language` ({})?",
            docs.len(),
            docs.len()
        )),
        "{out}"
    );
    assert!(out.contains(&format!("referral ({with_referral}/{})", docs.len())), "{out}");
    assert!(out.contains(&format!("address.zip ({}/{})", docs.len(), docs.len())), "{out}");
    assert!(!out.contains("address.city ("), "a read field is not left behind: {out}");
    let (_, report, _) = cli(work.path(), &["run", m, "--source", s, "--dry-run", "--format", "json"]);
    let cov = &report["coverage"];
    assert_eq!(cov["unmatched"][0]["did_you_mean"][0], "$.profile.native_language");
    let left: Vec<&str> = cov["left_behind"].as_array().unwrap().iter().map(|l| l["field"].as_str().unwrap()).collect();
    assert_eq!(left, ["address.zip", "profile.native_language", "referral"]);
    let (code, _, out) = cli(work.path(), &["run", m, "--source", s, "--dry-run", "--strict"]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("--strict: 1 mapped path(s) matched no document"), "{out}");
    // `check --source` says the same before anything runs.
    let (code, _, out) = cli(work.path(), &["check", m, "--source", s]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("did you mean `$.profile.native_language`") && out.contains("left behind in people"), "{out}");
    let (code, _, out) = cli(work.path(), &["check", m, "--source", s, "--strict"]);
    assert_eq!(code, 1, "{out}");
    let (_, both, _) = cli(work.path(), &["check", m, "--source", s, "--format", "json"]);
    assert_eq!(both["coverage"]["unmatched"][0]["path"], "$.profile.native_langauge");
    assert!(both["diagnostics"].is_object() || both["diagnostics"].is_array(), "{both}");
}

/// `run --prune`: after a re-run from a newer export, the tables hold what
/// the export gives (a deleted document's rows and a removed array
/// element's row go), while a row the application wrote stays. Expected
/// rows are derived from the second export here.
#[test]
fn prune_converges_to_the_newer_source() {
    let work = tempfile::tempdir().unwrap();
    let up = "CREATE TABLE orders (id INTEGER PRIMARY KEY, total INTEGER);
        CREATE TABLE order_items (order_id INTEGER NOT NULL REFERENCES orders(id), pos INTEGER NOT NULL,
            sku TEXT NOT NULL, PRIMARY KEY (order_id, pos));";
    let orders =
        "source = \"orders\"\ntable = \"orders\"\nkey = \"id\"\n[columns]\nid = \"$._id\"\ntotal = \"$.total\"\n";
    let items = r#"source = "orders"
table = "order_items"
unwind = "$.items[*]"
key = ["order_id", "pos"]
[columns]
order_id = { from = "$._id", references = "orders" }
pos = { position = { index = "@" } }
sku = "@"
"#;
    let mappings = project_with(
        work.path(),
        up,
        "DROP TABLE order_items; DROP TABLE orders;",
        &[("orders", orders), ("order_items", items)],
    );
    let v1 = [
        r#"{"_id": 1, "total": 10, "items": ["a", "b"]}"#,
        r#"{"_id": 2, "total": 20, "items": ["c"]}"#,
        r#"{"_id": 3, "total": 30, "items": ["d", "e"]}"#,
    ];
    let v2 = [
        r#"{"_id": 1, "total": 10, "items": ["a", "b"]}"#,
        r#"{"_id": 3, "total": 31, "items": ["d"]}"#,
        r#"{"_id": 4, "total": 40, "items": ["f"]}"#,
    ];
    let src = source(work.path(), "orders.jsonl", &v1);
    let db = TestDb::new("prune");
    let (m, s) = (mappings.to_str().unwrap(), src.to_str().unwrap());
    let (code, _, out) = cli(work.path(), &["run", m, "--source", s, "--target", &db.url]);
    assert_eq!(code, 0, "{out}");
    db.exec("INSERT INTO orders VALUES (99, 0)");
    std::fs::write(src.join("orders.jsonl"), v2.join("\n")).unwrap();
    let (code, report, out) =
        cli(work.path(), &["run", m, "--source", s, "--target", &db.url, "--prune", "--format", "json"]);
    assert_eq!(code, 0, "{out}");
    // What the second export gives, derived here, plus the application's row.
    let mut want_orders = vec!["99=0".to_string()];
    let mut want_items = Vec::new();
    for d in &v2 {
        let v: Value = serde_json::from_str(d).unwrap();
        want_orders.push(format!("{}={}", v["_id"], v["total"]));
        for (pos, sku) in v["items"].as_array().unwrap().iter().enumerate() {
            want_items.push(format!("{}/{pos}={}", v["_id"], sku.as_str().unwrap()));
        }
    }
    want_orders.sort();
    want_items.sort();
    let got = |q: &str| -> Vec<String> {
        let mut r: Vec<String> = db.rows(q).into_iter().map(|r| r[0].clone().unwrap()).collect();
        r.sort();
        r
    };
    assert_eq!(got("SELECT id || '=' || total FROM orders"), want_orders);
    assert_eq!(got("SELECT order_id || '/' || pos || '=' || sku FROM order_items"), want_items);
    let pruned: Vec<(String, u64)> = report["pruned"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["mapping"].as_str().unwrap().to_string(), p["deleted"].as_u64().unwrap()))
        .collect();
    assert_eq!(pruned, [("order_items".to_string(), 2), ("orders".to_string(), 1)]);
    // A second prune finds nothing, and validate agrees with the source.
    let (code, report, out) =
        cli(work.path(), &["run", m, "--source", s, "--target", &db.url, "--prune", "--format", "json"]);
    assert_eq!(code, 0, "{out}");
    assert!(report["pruned"].as_array().unwrap().iter().all(|p| p["deleted"] == 0), "{out}");
}

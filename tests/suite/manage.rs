//! `validate`, `rollback`, `status` and `schema` against a real PostgreSQL.

use super::db::TestDb;
use super::run::run;
use super::{dump, finlit_map, root};

/// Runs a finlit-map command with the shipped mappings; returns (exit code, stdout + stderr).
fn tool(args: &[&str]) -> (i32, String) {
    let (code, stdout, stderr) = finlit_map(root(), args);
    (code, format!("{stdout}{stderr}"))
}

fn migrated(tag: &str) -> (TestDb, tempfile::TempDir) {
    let db = TestDb::new(tag);
    let work = tempfile::tempdir().unwrap();
    let (code, _, stderr) = run(work.path(), &dump(), &db.url, &[]);
    assert_eq!(code, 0, "{stderr}");
    (db, work)
}

fn validate(db: &TestDb, extra: &[&str]) -> (i32, String) {
    let d = dump();
    let mut args = vec!["validate", "mappings", "--source", d.to_str().unwrap(), "--target", &db.url];
    args.extend_from_slice(extra);
    tool(&args)
}

#[test]
fn validate_passes_after_a_migration_and_names_every_tampering() {
    let (db, _work) = migrated("validate");
    let (code, out) = validate(&db, &["--sample", "1000"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("validation passed") && !out.contains("❌") && !out.contains("FAIL"), "{out}");

    // An altered value: named by table, key, column and both values.
    let (id, name) = {
        let r = &db.rows("SELECT learner_id::text, display_name FROM learners ORDER BY learner_id LIMIT 1")[0];
        (r[0].clone().unwrap(), r[1].clone().unwrap())
    };
    db.exec(&format!("UPDATE learners SET display_name = 'Tampered' WHERE learner_id = '{id}'"));
    let (code, out) = validate(&db, &["--sample", "1000", "--collection", "learners"]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains(&format!("learners key ({id}) column display_name: expected \"{name}\", found \"Tampered\"")),
        "{out}"
    );
    // --count-only does not look at content.
    let (code, out) = validate(&db, &["--count-only", "--collection", "learners"]);
    assert_eq!(code, 0, "{out}");
    assert!(!out.contains("Sample validation"), "{out}");

    // A deleted row: the count and the missing key.
    let gone = db.one("SELECT interaction_id::text FROM interactions ORDER BY interaction_id LIMIT 1");
    db.exec(&format!("DELETE FROM interactions WHERE interaction_id = '{gone}'"));
    let (code, out) = validate(&db, &["--collection", "interactions"]);
    assert_eq!(code, 1, "{out}");
    // Not a terminal: marks as words; `--color always`: as ✅/❌.
    assert!(out.contains("FAIL interactions") && out.contains("diff:      1"), "{out}");
    let (_, out) = validate(&db, &["--collection", "interactions", "--color", "always"]);
    assert!(out.contains("❌ interactions"), "{out}");
    assert!(out.contains(&format!("are not in the table (e.g. key {gone})")), "{out}");

    // An orphan foreign key (inserted with the constraint's triggers off).
    db.exec(
        "SET session_replication_role = replica;
         INSERT INTO learner_skill_states (learner_id, kc_id) VALUES ('00000000-0000-0000-0000-0000000000aa', (SELECT kc_id FROM knowledge_components LIMIT 1));",
    );
    let (code, out) = validate(&db, &["--collection", "learner_skill_states"]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("learner_skill_states.learner_id: 1 rows point at no row of learners (e.g. 00000000-0000-0000-0000-0000000000aa)"),
        "{out}"
    );
    assert!(out.contains("rows that no source document produces"), "{out}");

    // JSON for CI.
    let (_, out) = validate(&db, &["--format", "json", "--sample", "1000", "--collection", "learners"]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["passed"], false);
    assert_eq!(v["tables"][0]["mismatches"][0]["column"], "display_name");
}

#[test]
fn rollback_dry_run_deletes_nothing_and_refuses_to_orphan() {
    let (db, _work) = migrated("rbdry");
    let before = db.digest("learners");
    let (code, out) = tool(&["rollback", "mappings", "--target", &db.url, "--all", "--dry-run"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("learners") && out.contains("would delete      250 migrated rows"), "{out}");
    assert_eq!(db.digest("learners"), before);
    assert_eq!(db.one("SELECT count(*)::text FROM interactions"), "2000");

    // Nothing is deleted without --confirm.
    let (code, out) = tool(&["rollback", "mappings", "--target", &db.url, "--collection", "learners"]);
    assert_eq!(code, 1, "{out}");
    // Learners are still referenced by other mappings' rows: refuse and say which.
    let (code, out) = tool(&["rollback", "mappings", "--target", &db.url, "--collection", "learners", "--confirm"]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("2000 rows of interactions.learner_id still point at migrated rows of learners"), "{out}");
    assert_eq!(db.one("SELECT count(*)::text FROM learners"), "250");
    // With --cascade, the dependants go too.
    let (code, out) =
        tool(&["rollback", "mappings", "--target", &db.url, "--collection", "learners", "--confirm", "--cascade"]);
    assert_eq!(code, 0, "{out}");
    for t in ["learners", "interactions", "daily_progress", "learner_skill_states", "learner_achievements"] {
        assert_eq!(db.one(&format!("SELECT count(*)::text FROM {t}")), "0", "{t}");
    }
    assert_eq!(db.one("SELECT count(*)::text FROM knowledge_components"), "37");
}

/// Issue 10, item 3: the application's own tables (not in `schema/`)
/// whose foreign keys would cascade or set null block a rollback by name,
/// with counts, in the dry run too; nothing of theirs changes.
#[test]
fn rollback_refuses_to_reach_application_tables_through_their_foreign_keys() {
    let (db, _work) = migrated("rbapp");
    db.exec(
        "CREATE TABLE app_notes (id serial PRIMARY KEY, learner_id uuid REFERENCES learners ON DELETE CASCADE);
         CREATE TABLE app_flags (id serial PRIMARY KEY, learner_id uuid REFERENCES learners ON DELETE SET NULL);
         INSERT INTO app_notes (learner_id) SELECT learner_id FROM learners ORDER BY learner_id LIMIT 3;
         INSERT INTO app_flags (learner_id) SELECT learner_id FROM learners ORDER BY learner_id LIMIT 2;",
    );
    let base = ["rollback", "mappings", "--target", &db.url, "--all"];
    for mode in [&["--dry-run"][..], &["--confirm", &db.name][..]] {
        let (code, out) = tool(&[&base[..], mode].concat());
        assert_eq!(code, 1, "{mode:?}: {out}");
        assert!(out.contains("3 rows of app_notes.learner_id still point at migrated rows of learners"), "{out}");
        assert!(out.contains("ON DELETE CASCADE would change them"), "{out}");
        assert!(out.contains("2 rows of app_flags.learner_id still point at migrated rows of learners"), "{out}");
        assert!(out.contains("ON DELETE SET NULL would change them"), "{out}");
    }
    assert_eq!(db.one("SELECT count(*)::text FROM app_notes"), "3");
    assert_eq!(db.one("SELECT count(learner_id)::text FROM app_flags"), "2");
    assert_eq!(db.one("SELECT count(*)::text FROM learners"), "250");
}

#[test]
fn rollback_all_keeps_application_rows_and_a_rerun_restores_everything() {
    let (db, work) = migrated("rball");
    let tables =
        ["learners", "knowledge_components", "learning_items", "item_kc_mappings", "interactions", "kc_prerequisites"];
    let before: Vec<String> = tables.iter().map(|t| db.digest(t)).collect();
    db.exec("INSERT INTO learners (learner_id, email) VALUES ('11111111-1111-1111-1111-111111111111', 'app-user@example.com')");

    // --all without a terminal needs the database name.
    let (code, out) = tool(&["rollback", "mappings", "--target", &db.url, "--all", "--confirm"]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains(&format!("--confirm {}", db.name)), "{out}");
    let (code, out) = tool(&["rollback", "mappings", "--target", &db.url, "--all", "--confirm", &db.name]);
    assert_eq!(code, 0, "{out}");
    assert_eq!(db.one("SELECT string_agg(email, ',') FROM learners"), "app-user@example.com");
    assert_eq!(db.one("SELECT count(*)::text FROM interactions"), "0");
    let (_, counts) = tool(&["rollback", "mappings", "--target", &db.url, "--counts"]);
    assert!(
        counts
            .lines()
            .any(|l| l.starts_with("learners")
                && l.split_whitespace().collect::<Vec<_>>() == ["learners", "1", "0", "1"]),
        "{counts}"
    );

    // Rolling back and running again gives the same database.
    db.exec("DELETE FROM learners WHERE email = 'app-user@example.com'");
    let (code, _, stderr) = run(work.path(), &dump(), &db.url, &[]);
    assert_eq!(code, 0, "{stderr}");
    let after: Vec<String> = tables.iter().map(|t| db.digest(t)).collect();
    assert_eq!(before, after);
}

#[test]
fn status_shows_counts_and_the_last_run() {
    let (db, _work) = migrated("status");
    let d = dump();
    let (code, out) = tool(&["status", "mappings", "--target", &db.url, "--source", d.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}");
    let line = out.lines().find(|l| l.starts_with("learners ")).unwrap();
    let cols: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(&cols[1..3], ["250", "250"], "{line}");
    assert!(line.contains("UTC ok") && line.ends_with("250        0"), "{line}");
}

#[test]
fn schema_apply_status_and_revert() {
    let db = TestDb::new("schema");
    let schema = tempfile::tempdir().unwrap();
    for f in std::fs::read_dir(root().join("schema")).unwrap() {
        let f = f.unwrap().path();
        std::fs::copy(&f, schema.path().join(f.file_name().unwrap())).unwrap();
    }
    let s = schema.path().to_str().unwrap();
    // --dry-run says what would happen, and does nothing.
    let (code, out) = tool(&["schema", "apply", "--target", &db.url, "--schema", s, "--dry-run"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("would apply: 1 learners and content, 2 learning activity"), "{out}");
    assert!(!db.exists(), "a dry run creates no database");
    let (code, out) = tool(&["schema", "apply", "--target", &db.url, "--schema", s]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("created database") && out.contains("applied 4 cultural context"), "{out}");

    // A new migration appears: status lists it as pending.
    std::fs::write(schema.path().join("0007_notes.up.sql"), "CREATE TABLE notes (id UUID PRIMARY KEY);").unwrap();
    std::fs::write(schema.path().join("0007_notes.down.sql"), "DROP TABLE notes;").unwrap();
    let (code, out) = tool(&["schema", "status", "--target", &db.url, "--schema", s]);
    assert_eq!(code, 0, "{out}");
    assert!(out.lines().any(|l| l.contains("1  learners and content") && l.ends_with("applied")), "{out}");
    assert!(out.lines().any(|l| l.contains("7  notes") && l.ends_with("pending")), "{out}");

    let (code, out) = tool(&["schema", "apply", "--target", &db.url, "--schema", s]);
    assert_eq!(code, 0, "{out}");
    assert_eq!(db.one("SELECT to_regclass('notes')::text"), "notes");

    let (code, out) = tool(&["schema", "revert", "--target", &db.url, "--schema", s, "--dry-run"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("would revert to version 6 (now 7): 7 notes"), "{out}");
    assert_eq!(db.one("SELECT to_regclass('notes')::text"), "notes", "a dry run reverts nothing");
    // Revert needs --confirm without a terminal; then the last migration is undone.
    let (code, _) = tool(&["schema", "revert", "--target", &db.url, "--schema", s]);
    assert_eq!(code, 1);
    let (code, out) = tool(&["schema", "revert", "--target", &db.url, "--schema", s, "--confirm"]);
    assert_eq!(code, 0, "{out}");
    assert!(db.rows("SELECT to_regclass('notes')::text")[0][0].is_none());
    let (_, out) = tool(&["schema", "status", "--target", &db.url, "--schema", s]);
    assert!(out.lines().any(|l| l.contains("7  notes") && l.ends_with("pending")), "{out}");
    assert!(out.lines().any(|l| l.contains("6  source ids") && l.ends_with("applied")), "{out}");
    // An up migration without its down: a warning, not an error.
    std::fs::remove_file(schema.path().join("0007_notes.down.sql")).unwrap();
    let (code, out) = tool(&["schema", "apply", "--target", &db.url, "--schema", s, "--dry-run"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("0007_notes.up.sql has no 0007_notes.down.sql"), "{out}");
}

/// `init`, `schema new`, `completions` and `man`: a project from nothing,
/// offline.
#[test]
fn init_schema_new_completions_and_man() {
    let work = tempfile::tempdir().unwrap();
    let dir = work.path().join("proj");
    let (code, out, err) = finlit_map(work.path(), &["init", dir.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(dir.join("mappings/finlit-map.toml").exists() && dir.join(".env.example").exists());
    assert!(dir.join("schema").is_dir());
    // Nothing existing is overwritten.
    std::fs::write(dir.join(".env.example"), "mine").unwrap();
    let (code, _, err) = finlit_map(work.path(), &["init", dir.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(std::fs::read_to_string(dir.join(".env.example")).unwrap(), "mine");

    let (code, out, err) = finlit_map(&dir, &["schema", "new", "Create", "tables!"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        dir.join("schema/0001_create_tables.up.sql").exists()
            && dir.join("schema/0001_create_tables.down.sql").exists()
    );
    let (code, out, _) = finlit_map(&dir, &["schema", "new", "add", "referral codes"]);
    assert_eq!(code, 0);
    assert!(out.contains("0002_add_referral_codes.up.sql"), "{out}");
    // From elsewhere, the schema directory is found as every command finds it.
    let m = dir.join("mappings");
    let (code, _, err) = finlit_map(work.path(), &["schema", "new", "third", "--mappings", m.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    assert!(dir.join("schema/0003_third.up.sql").exists());
    std::fs::write(dir.join("schema/0001_create_tables.up.sql"), "CREATE TABLE t (id INTEGER PRIMARY KEY);").unwrap();
    let (code, _, err) = finlit_map(&dir, &["check"]);
    assert_eq!(code, 0, "a new project checks: {err}");

    let (code, out, _) = finlit_map(work.path(), &["--version"]);
    assert_eq!(code, 0);
    assert!(out.starts_with(&format!("finlit-map {} (commit ", env!("CARGO_PKG_VERSION"))), "{out}");
    let (code, out, _) = finlit_map(work.path(), &["completions", "bash"]);
    assert_eq!(code, 0);
    assert!(out.contains("finlit-map") && out.contains("rollback"), "{out}");
    let (code, out, _) = finlit_map(work.path(), &["man"]);
    assert_eq!(code, 0);
    assert!(out.starts_with(".ie") || out.contains(".TH"), "{}", &out[..out.len().min(200)]);
}

/// `--format json` on list, status and schema status: one JSON document on
/// stdout; and a failure under `--format json` is a JSON error object there.
#[test]
fn every_report_has_a_json_form() {
    let (db, _work) = migrated("json_forms");
    let dump = dump();
    let parse = |out: &str| serde_json::from_str::<serde_json::Value>(out).unwrap_or_else(|e| panic!("{e}: {out}"));
    let (code, out, err) = finlit_map(root(), &["list", "--source", dump.to_str().unwrap(), "--format", "json"]);
    assert_eq!(code, 0, "{err}");
    let list = parse(&out);
    let learners = list["collections"].as_array().unwrap().iter().find(|c| c["collection"] == "learners").unwrap();
    assert_eq!(learners["mappings"][0], "learners");
    let (code, out, err) = finlit_map(root(), &["status", "--target", &db.url, "--format", "json"]);
    assert_eq!(code, 0, "{err}");
    let status = parse(&out);
    let row = status.as_array().unwrap().iter().find(|m| m["mapping"] == "learners").unwrap();
    assert_eq!(row["table_rows"], row["last_run"]["loaded"]);
    let (code, out, err) = finlit_map(root(), &["schema", "status", "--target", &db.url, "--format", "json"]);
    assert_eq!(code, 0, "{err}");
    assert!(parse(&out).as_array().unwrap().iter().all(|m| m["state"] == "applied"), "{out}");
    // The history: one run, its mappings' loaded rows summed.
    let (code, out, err) = finlit_map(root(), &["status", "--history", "--target", &db.url, "--format", "json"]);
    assert_eq!(code, 0, "{err}");
    let runs = parse(&out);
    let loaded: i64 = status.as_array().unwrap().iter().map(|m| m["last_run"]["loaded"].as_i64().unwrap()).sum();
    assert_eq!(runs.as_array().unwrap().len(), 1, "{out}");
    assert_eq!((runs[0]["outcome"].as_str(), runs[0]["loaded"].as_i64()), (Some("ok"), Some(loaded)), "{out}");
    let (code, out, _) = finlit_map(root(), &["status", "--history", "--target", &db.url]);
    assert_eq!(code, 0);
    assert!(out.contains("outcome") && out.lines().count() == 2, "{out}");
    // Rollback's counts and dry run.
    let (code, out, err) = finlit_map(root(), &["rollback", "--target", &db.url, "--counts", "--format", "json"]);
    assert_eq!(code, 0, "{err}");
    let counts = parse(&out);
    let migrated: u64 = counts.as_array().unwrap().iter().map(|t| t["migrated"].as_u64().unwrap()).sum();
    let (code, out, err) =
        finlit_map(root(), &["rollback", "--target", &db.url, "--all", "--dry-run", "--format", "json"]);
    assert_eq!(code, 0, "{err}");
    let dry = parse(&out);
    assert_eq!((dry["rows"].as_u64(), dry["deleted"].as_bool()), (Some(migrated), Some(false)), "{out}");
    let (code, out, _) = finlit_map(root(), &["run", "--source", "/no/such/dump", "--dry-run", "--format", "json"]);
    assert_eq!(code, 1);
    let e = parse(&out);
    assert!(e["error"].as_str().unwrap().contains("no such file or directory") && e["exit_code"] == 1, "{out}");
}

/// `scaffold --all` on the example dump, with no mapping yet: the draft
/// checks, and a run of the whole dump through it loads every document
/// (the sample covers every document here) with no reject; child tables
/// hold every array element. A second scaffold overwrites nothing.
#[test]
fn scaffold_drafts_mappings_that_check_and_load_their_data() {
    let work = tempfile::tempdir().unwrap();
    let dump = dump();
    let out = work.path().join("proj/mappings");
    let (code, stdout, stderr) = finlit_map(
        work.path(),
        &["scaffold", "--source", dump.to_str().unwrap(), "--all", "--sample", "5000", "--out", out.to_str().unwrap()],
    );
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(stdout.contains("the draft checks"), "{stdout}");
    assert!(work.path().join("proj/schema/0001_scaffold.up.sql").exists());
    let (code, _, stderr) = finlit_map(work.path(), &["check", out.to_str().unwrap()]);
    assert_eq!(code, 0, "{stderr}");

    let db = TestDb::new("scaffold");
    let (code, stdout, stderr) = finlit_map(
        work.path(),
        &["run", out.to_str().unwrap(), "--source", dump.to_str().unwrap(), "--target", &db.url, "--format", "json"],
    );
    assert_eq!(code, 0, "{stderr}");
    let report: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    for m in report["mappings"].as_array().unwrap() {
        assert_eq!(m["rejected"], 0, "{m}");
        let n = |k: &str| m[k].as_u64().unwrap();
        assert_eq!(n("read"), n("loaded") + n("filtered"), "{m}");
    }
    // Counted from the BSON here: every learner, every kc_mappings element.
    let learners = super::mongo::read_bson(&dump.join("learners.bson"));
    assert_eq!(db.one("SELECT count(*)::text FROM learners"), learners.len().to_string());
    let items = super::mongo::read_bson(&dump.join("learning_items.bson"));
    let elements: usize = items.iter().map(|d| d.get_array("kc_mappings").map_or(0, |a| a.len())).sum();
    assert_eq!(db.one("SELECT count(*)::text FROM learning_items_kc_mappings"), elements.to_string());

    let (code, _, stderr) = finlit_map(
        work.path(),
        &["scaffold", "--source", dump.to_str().unwrap(), "--collection", "learners", "--out", out.to_str().unwrap()],
    );
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("scaffold never overwrites"), "{stderr}");
}

/// PostgreSQL's errors read as PostgreSQL says them, without sqlx's
/// "at line 948" (a line of the server's C source).
#[test]
fn postgres_errors_read_plainly() {
    let db = TestDb::new("absent");
    let (code, _, stderr) = finlit_map(root(), &["status", "--target", &db.url]);
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains(&format!("database \"{}\" does not exist", db.name)), "{stderr}");
    assert!(!stderr.contains("at line"), "{stderr}");
}

//! `finlit-map check` and `plan` against fixture directories: every kind of
//! problem, rendered and snapshotted, and the shipped mappings passing.

use std::path::Path;

use assert_cmd::Command;

fn fixtures() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/check"))
}

/// Runs `check` from the fixture root so paths in the output are short and stable.
fn check(dir: &str, schema: &str, extra: &[&str]) -> (i32, String, String) {
    let out = Command::cargo_bin("finlit-map")
        .unwrap()
        .current_dir(fixtures())
        .env("NO_COLOR", "1")
        .args(["check", dir, "--schema", schema])
        .args(extra)
        .output()
        .unwrap();
    (out.status.code().unwrap_or(-1), String::from_utf8(out.stdout).unwrap(), String::from_utf8(out.stderr).unwrap())
}

/// Each problem `check` must catch: a fixture directory and a snapshot of
/// what the user sees.
#[test]
fn every_problem_is_rendered_with_location_and_code() {
    let cases = [
        ("toml-syntax", "toml-syntax"),
        ("unknown-key", "unknown-key"),
        ("invalid-jsonpath", "invalid-jsonpath"),
        ("unknown-table", "unknown-table"),
        ("unknown-column", "unknown-column"),
        ("unmapped-not-null", "unmapped-not-null"),
        ("type-mismatch", "type-mismatch"),
        ("reference-not-loaded", "reference-not-loaded"),
        ("foreign-key-without-id", "foreign-key-without-id"),
        ("dependency-cycle", "dependency-cycle"),
        ("overlapping-keys", "overlapping-keys"),
        ("unwind-not-array", "unwind-not-array"),
        ("expression-misuse", "invalid-value"),
        ("sentinel-misuse", "invalid-value"),
        ("position-misuse", "invalid-value"),
        ("key-misuse", "invalid-value"),
        ("natural-key-misuse", "reference-mismatch"),
        ("filter-type-misuse", "invalid-value"),
        ("format-misuse", "invalid-value"),
        ("shaping-misuse", "invalid-value"),
        ("nested-unwind-misuse", "unwind-not-array"),
        ("geo-misuse", "unsupported-type"),
    ];
    for (dir, code) in cases {
        let (status, _, stderr) = check(dir, "schema", &[]);
        assert_eq!(status, 1, "{dir}: exit code\n{stderr}");
        assert!(stderr.contains(code), "{dir}: no `{code}` in\n{stderr}");
        assert!(
            stderr.contains(&format!("{dir}/")) && stderr.contains(".toml:"),
            "{dir}: no file:line:col in\n{stderr}"
        );
        insta::assert_snapshot!(dir, stderr);
    }
}

#[test]
fn sql_syntax_error_points_into_the_sql() {
    let (status, _, stderr) = check("sql-syntax/mappings", "sql-syntax/schema", &[]);
    assert_eq!(status, 1);
    assert!(stderr.contains("sql-syntax/schema/0001_bad.up.sql:3:31"), "{stderr}");
    insta::assert_snapshot!("sql-syntax", stderr);
}

#[test]
fn a_broken_directory_reports_everything_in_one_run() {
    let (status, stdout, _) = check("broken", "schema", &["--format", "json"]);
    assert_eq!(status, 1);
    let v: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let mut codes: Vec<&str> =
        v["diagnostics"].as_array().unwrap().iter().map(|d| d["code"].as_str().unwrap()).collect();
    codes.sort();
    codes.dedup();
    for want in [
        "unknown-key",
        "toml-syntax",
        "unwind-not-array",
        "foreign-key-without-id",
        "unknown-column",
        "invalid-jsonpath",
        "reference-mismatch",
        "key-not-unique",
        "unmapped-not-null",
        "invalid-value",
    ] {
        assert!(codes.contains(&want), "missing {want} in {codes:?}");
    }
    // Every diagnostic has a file, a line and a column.
    for d in v["diagnostics"].as_array().unwrap() {
        let loc = &d["location"];
        assert!(loc["file"].is_string() && loc["line"].as_u64().unwrap() >= 1, "{d}");
    }
}

#[test]
fn disjoint_filters_may_share_a_table() {
    let (status, _, stderr) = check("overlapping-keys-disjoint", "schema", &[]);
    assert_eq!(status, 0, "{stderr}");
}

#[test]
fn shipped_mappings_pass() {
    let root = env!("CARGO_MANIFEST_DIR");
    let out =
        Command::cargo_bin("finlit-map").unwrap().current_dir(root).args(["check", "mappings/"]).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("ok: 13 mappings"), "{stderr}");
}

#[test]
fn plan_shows_order_types_and_graph() {
    let root = env!("CARGO_MANIFEST_DIR");
    let run = |format: &str| {
        let out = Command::cargo_bin("finlit-map")
            .unwrap()
            .current_dir(root)
            .args(["plan", "mappings/", "--format", format])
            .output()
            .unwrap();
        assert!(out.status.success());
        String::from_utf8(out.stdout).unwrap()
    };
    let text = run("text");
    assert!(text.contains("stage 1:") && text.contains("stage 2:"), "{text}");
    assert!(text.contains("self-reference: parent_kc_id"), "{text}");
    let json: serde_json::Value = serde_json::from_str(&run("json")).unwrap();
    let stages = json["stages"].as_array().unwrap();
    let stage_of = |name: &str| stages.iter().position(|s| s.as_array().unwrap().iter().any(|m| m == name)).unwrap();
    assert!(stage_of("learners") < stage_of("interactions"));
    assert!(stage_of("learning_items") < stage_of("item_kc_mappings"));
    let dot = run("dot");
    assert!(dot.starts_with("digraph") && dot.contains("\"learners\" -> \"interactions\""), "{dot}");
    assert!(dot.contains("subgraph cluster_stage_1") && dot.contains("subgraph cluster_stage_2"), "{dot}");
}

/// The shipped JSON Schemas are what `json-schema` prints (so they cannot
/// drift from the reader), and every shipped mapping and project file
/// validates against them, `#:schema` line included.
#[test]
fn the_json_schemas_are_current_and_the_shipped_files_validate() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let print = |args: &[&str]| {
        let out = Command::cargo_bin("finlit-map").unwrap().args(args).output().unwrap();
        assert!(out.status.success());
        String::from_utf8(out.stdout).unwrap()
    };
    let mapping = print(&["json-schema"]);
    let project = print(&["json-schema", "--project"]);
    assert_eq!(
        std::fs::read_to_string(root.join("docs/mapping.schema.json")).unwrap(),
        mapping,
        "regenerate docs/mapping.schema.json"
    );
    assert_eq!(
        std::fs::read_to_string(root.join("docs/project.schema.json")).unwrap(),
        project,
        "regenerate docs/project.schema.json"
    );
    let compile = |s: &str| jsonschema::validator_for(&serde_json::from_str(s).unwrap()).unwrap();
    let (mapping, project) = (compile(&mapping), compile(&project));
    let mut checked = 0;
    for f in std::fs::read_dir(root.join("mappings")).unwrap() {
        let path = f.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.starts_with("#:schema ../docs/"), "{}: no #:schema line", path.display());
        let value: serde_json::Value = toml::from_str(&text).unwrap();
        let v = if path.ends_with("finlit-map.toml") { &project } else { &mapping };
        let errors: Vec<String> = v.iter_errors(&value).map(|e| e.to_string()).collect();
        assert!(errors.is_empty(), "{}: {errors:?}", path.display());
        checked += 1;
    }
    assert!(checked >= 13);
    // A typo is caught by the editor too.
    let typo: serde_json::Value =
        toml::from_str("source = \"a\"\ntabel = \"t\"\nkey = \"id\"\n[columns]\nid = { form = \"$.x\" }").unwrap();
    assert!(!mapping.is_valid(&typo));
}

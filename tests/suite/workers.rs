//! `run --worker`: processes sharing one migration through the claims
//! table. Whatever happens to one of them, the others finish it, and the
//! database is the one a single process gives.

use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use super::db::TestDb;
use super::run::run;
use super::{TABLES, dump, root};

fn digests(db: &TestDb) -> Vec<String> {
    TABLES.iter().map(|t| db.digest(t)).collect()
}

fn worker(cwd: &Path, target: &str, extra: &[&str]) -> Child {
    super::binary(cwd)
        .arg("run")
        .arg(root().join("mappings"))
        .args(["--source", dump().to_str().unwrap(), "--target", target, "--worker", "--jobs", "1"])
        .args(["--range-size", "60", "--batch-size", "10", "--lease", "2", "--format", "json"])
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Sends a signal to a process (`kill -STOP`, `kill -CONT`).
fn signal(name: &str, pid: u32) {
    let ok = std::process::Command::new("kill").args([&format!("-{name}"), &pid.to_string()]).status().unwrap();
    assert!(ok.success(), "kill -{name} {pid}");
}

/// A worker holding a load task it has checkpointed but not finished: its
/// process id and the task.
fn mid_range(db: &TestDb) -> Option<(u32, String)> {
    let rows = db.rows(
        "SELECT worker, task::text FROM finlit_map.tasks
         WHERE kind = 'load' AND state = 'running' AND position IS NOT NULL ORDER BY task LIMIT 1",
    );
    let row = rows.first()?;
    let pid = row[0].as_ref()?.rsplit('/').next()?.parse().ok()?;
    Some((pid, row[1].clone()?))
}

#[test]
fn three_workers_one_killed_mid_range_give_the_single_process_database() {
    let reference = TestDb::new("wref");
    let w = tempfile::tempdir().unwrap();
    let (code, _, stderr) = run(w.path(), &dump(), &reference.url, &[]);
    assert_eq!(code, 0, "{stderr}");
    let expected = digests(&reference);

    let db = TestDb::new("workers");
    let dirs: Vec<tempfile::TempDir> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let mut children: Vec<Option<Child>> = dirs.iter().map(|d| Some(worker(d.path(), &db.url, &[]))).collect();
    // Kill -9 whichever worker is first seen in the middle of a range.
    let deadline = Instant::now() + Duration::from_secs(120);
    let killed = loop {
        let found =
            db.try_one("SELECT count(*)::text FROM finlit_map.tasks").is_some().then(|| mid_range(&db)).flatten();
        if let Some((pid, task)) = found
            && let Some(slot) = children.iter().position(|c| c.as_ref().is_some_and(|c| c.id() == pid))
        {
            // Frozen first, so that it cannot finish the task between the
            // look and the kill; killed only if still in the middle of it.
            signal("STOP", pid);
            std::thread::sleep(Duration::from_millis(50)); // what it had sent lands
            let held = db.one(&format!(
                "SELECT count(*)::text FROM finlit_map.tasks
                 WHERE task = {task} AND state = 'running' AND worker LIKE '%/{pid}'"
            ));
            if held == "1" {
                let mut child = children[slot].take().unwrap();
                child.kill().unwrap(); // SIGKILL: no cleanup of any kind
                let _ = child.wait();
                break task;
            }
            signal("CONT", pid);
        }
        assert!(Instant::now() < deadline, "no worker was seen in the middle of a range");
        assert!(children.iter().flatten().count() == 3, "a worker ended before one could be killed");
        std::thread::sleep(Duration::from_millis(2));
    };
    // The two others finish the run, the killed worker's task included.
    let mut summaries = Vec::new();
    for child in children.into_iter().flatten() {
        let out = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr).to_string();
        assert!(out.status.success(), "{stderr}");
        assert!(stderr.contains("as worker"), "{stderr}");
        summaries.push(serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap());
    }
    assert_eq!(digests(&db), expected, "three workers, one killed, against one process");
    let claims = db.one(&format!("SELECT claim::text FROM finlit_map.tasks WHERE task = {killed}"));
    assert!(claims.parse::<i32>().unwrap() >= 2, "the killed worker's task was claimed again ({claims})");
    assert_eq!(db.one("SELECT count(*)::text FROM finlit_map.tasks WHERE state <> 'done'"), "0");
    assert_eq!(db.one("SELECT outcome FROM finlit_map.runs"), "ok");
    assert!(db.one("SELECT count(DISTINCT worker)::text FROM finlit_map.tasks").parse::<i32>().unwrap() >= 2);
    // Each survivor prints the whole run's summary: every row counted once.
    let loaded = |r: &serde_json::Value| -> u64 {
        r["mappings"].as_array().unwrap().iter().map(|m| m["loaded"].as_u64().unwrap()).sum()
    };
    let rows: u64 =
        TABLES.iter().map(|t| db.one(&format!("SELECT count(*)::text FROM {t}")).parse::<u64>().unwrap()).sum();
    for s in &summaries {
        assert_eq!(loaded(s), rows, "{s}");
    }
    let out = super::binary(root())
        .args(["validate", "mappings", "--source", dump().to_str().unwrap(), "--target", &db.url])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
    // A worker arriving after the run finished (a replaced pod) reports it
    // and loads nothing again.
    let late = tempfile::tempdir().unwrap();
    let out = worker(late.path(), &db.url, &[]).wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("nothing left to do"), "{stderr}");
    let said: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(said["already_complete"], serde_json::json!(true), "{said}");
    assert_eq!(db.one("SELECT count(*)::text FROM finlit_map.runs"), "1");
    assert_eq!(digests(&db), expected);
}

/// A plain run excludes workers and workers exclude a plain run; after a
/// plain run, workers plan a run of their own.
#[test]
fn workers_and_a_plain_run_exclude_each_other() {
    let db = TestDb::new("wexcl");
    let work = tempfile::tempdir().unwrap();
    let a = worker(work.path(), &db.url, &[]);
    let deadline = Instant::now() + Duration::from_secs(60);
    while db.try_one("SELECT count(*)::text FROM finlit_map.tasks WHERE state = 'done'").is_none_or(|n| n == "0") {
        assert!(Instant::now() < deadline, "the worker did not start");
        std::thread::sleep(Duration::from_millis(5));
    }
    let other = tempfile::tempdir().unwrap();
    let (code, _, stderr) = run(other.path(), &dump(), &db.url, &[]);
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("another finlit-map command is using this target"), "{stderr}");
    let out = a.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // The run is over: a new plain run loads into the built tables.
    let (code, report, stderr) = run(other.path(), &dump(), &db.url, &[]);
    assert_eq!(code, 0, "{stderr}");
    for m in report["mappings"].as_array().unwrap() {
        assert_eq!(m["inserted"].as_u64(), Some(0), "{stderr}");
    }
    let out = worker(work.path(), &db.url, &[]).wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("planned run 3"), "{stderr}");
}

//! Publishing under faults: a run's tables become visible together or not at all.
use std::path::Path;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use crate::common::{Project, stderr, stdout};

/// Three stages, three published tables; `n` goes into every row so runs can be told apart.
const THREE: &str = r#"
name: three
params: { n: { type: int, default: 1 } }
stages:
  - { id: a, kind: sql, outputs: [ta], config: { sql: "SELECT {{ n }} AS n, 'a' AS t" } }
  - { id: b, kind: sql, inputs: { ta: ta }, outputs: [tb], config: { file: sql/b.sql } }
  - { id: c, kind: sql, outputs: [tc], config: { sql: "SELECT {{ n }} AS n, 'c' AS t" } }
"#;

fn three() -> Project {
    let p = Project::empty();
    p.write("p.yaml", THREE);
    p.write("sql/b.sql", "SELECT {{ n }} AS n, 'b' AS t FROM ta\n");
    p
}

/// What `restock query` (the manifest-consistent view) shows of each table's `n`.
fn visible(p: &Project) -> Vec<String> {
    p.query("SELECT (SELECT MAX(n) FROM ta) || '/' || (SELECT MAX(n) FROM tb) || '/' || (SELECT MAX(n) FROM tc)")
}

fn delta_log(p: &Project, table: &str, version: u32) -> std::path::PathBuf {
    p.file(&format!("lake/tables/{table}/_delta_log/{version:020}.json"))
}

fn spawn(p: &Project, args: &[&str], faults: &str) -> Child {
    let mut c: Command = p.std_cmd(args);
    c.env("RESTOCK_FAULTS", faults).stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped());
    c.spawn().expect("spawn restock")
}

fn wait_for(path: &Path, child: &mut Child) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !path.exists() {
        assert!(child.try_wait().unwrap().is_none(), "restock ended before {} appeared", path.display());
        assert!(Instant::now() < deadline, "{} never appeared", path.display());
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn manifest_of(p: &Project) -> std::path::PathBuf {
    let dir = p.file("lake/_restock/commits");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        // The manifest itself, not the temporary file the local store writes before renaming it.
        let found =
            std::fs::read_dir(&dir).ok().and_then(|d| d.flatten().map(|e| e.path()).find(|p| p.extension().is_some_and(|x| x == "json")));
        if let Some(path) = found {
            return path;
        }
        assert!(Instant::now() < deadline, "no run manifest appeared");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_publish_that_fails_part_way_is_incomplete_invisible_and_resumable() {
    let p = three();
    p.ok(&["run", "p.yaml"]);
    assert_eq!(visible(&p), vec!["1/1/1"]);
    // The third table's data cannot be written: ta and tb get committed, tc does not.
    let out = p.cmd(&["run", "p.yaml", "--param", "n=2"]).env("RESTOCK_FAULTS", "put@tables/tc:1+:denied").output().unwrap();
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("publish_incomplete") && err.contains("past its commit point") && err.contains("restock resume"), "{err}");
    assert!(!err.contains("panicked"), "no panic output:\n{err}");
    let run_id = p.last_run_id();
    assert!(delta_log(&p, "ta", 1).exists() && delta_log(&p, "tb", 1).exists() && !delta_log(&p, "tc", 1).exists());
    // Readers through restock see the previous run's tables, all of them.
    assert_eq!(visible(&p), vec!["1/1/1"]);
    let show = p.ok(&["show", &run_id]);
    assert!(show.contains("status publish_incomplete"), "{show}");
    assert!(show.contains("committed so far, not visible until the publish completes"), "{show}");
    assert!(!show.contains("published:"), "{show}");
    // gc keeps the staging a pending publish needs.
    p.ok(&["gc", "--older-than", "0s"]);
    assert!(p.file(&format!("lake/_staging/{run_id}/tc")).exists(), "staging of a pending publish survives gc");
    // Once the cause is gone, resume finishes the publish without re-running stages.
    let out = p.cmd(&["resume", &run_id]).env_remove("RESTOCK_FAULTS").output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(visible(&p), vec!["2/2/2"]);
    assert!(delta_log(&p, "ta", 1).exists() && !delta_log(&p, "ta", 2).exists(), "ta is not committed twice");
    let show = p.ok(&["show", &run_id]);
    assert!(show.contains("status succeeded") && show.contains("published: ta v1, tb v1, tc v1"), "{show}");
    assert!(!p.file(&format!("lake/_staging/{run_id}")).exists(), "staging is removed once published");
}

#[test]
fn sigkill_between_table_commits_is_rolled_forward_by_the_next_run() {
    let p = three();
    p.ok(&["run", "p.yaml"]);
    // The write of tc's data hangs for a while: kill the process then, after ta is committed.
    let mut child = spawn(&p, &["run", "p.yaml", "--param", "n=2"], "put@tables/tc:1:delay=20000");
    wait_for(&delta_log(&p, "tb", 1), &mut child);
    child.kill().unwrap();
    child.wait().unwrap();
    let killed = p.last_run_id();
    assert!(!delta_log(&p, "tc", 1).exists());
    assert_eq!(visible(&p), vec!["1/1/1"], "a half-published run is invisible to restock's readers");
    // The next run on the lake finishes the dead run's publish first, then runs itself.
    let out = p.cmd(&["run", "p.yaml", "--param", "n=3"]).env_remove("RESTOCK_FAULTS").output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(visible(&p), vec!["3/3/3"]);
    assert!(delta_log(&p, "tc", 2).exists(), "tc v1 (the killed run's) then v2");
    let show = p.ok(&["show", &killed]);
    assert!(show.contains("status succeeded") && show.contains("published: ta v1, tb v1, tc v1"), "{show}");
}

#[test]
fn sigterm_after_the_commit_point_finishes_the_publish_with_its_true_exit_code() {
    let p = three();
    let mut child = spawn(&p, &["run", "p.yaml"], "put@tables/tb:1:delay=1500");
    wait_for(&manifest_of(&p), &mut child);
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let out = child.wait_with_output().unwrap();
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(err.contains("after the run's commit point: finishing the publish"), "{err}");
    assert!(!err.contains("nothing will be published"), "{err}");
    assert_eq!(visible(&p), vec!["1/1/1"]);
}

#[test]
fn resuming_an_older_run_never_replaces_a_newer_runs_tables() {
    let p = three();
    // Fails at run time (ta.t is 'a'), not at validation.
    p.write("sql/b.sql", "SELECT CAST(t || '{{ n }}' AS INT) AS n, 'b' AS t FROM ta\n");
    p.fails(&["run", "p.yaml"], 1);
    let old = p.last_run_id();
    std::thread::sleep(Duration::from_millis(1100)); // run ids carry the start second
    p.write("sql/b.sql", "SELECT {{ n }} AS n, 'b' AS t FROM ta\n");
    p.ok(&["run", "p.yaml", "--param", "n=5"]);
    let newer = p.last_run_id();
    let err = p.fails(&["resume", &old], 1);
    assert!(err.contains(&format!("the newer run {newer} already published ta, tb, tc")), "{err}");
    assert_eq!(visible(&p), vec!["5/5/5"]);
}

#[test]
fn one_run_of_a_pipeline_at_a_time_and_gc_spares_a_live_run() {
    let p = three();
    let mut first = spawn(&p, &["run", "p.yaml"], "put@_staging:1:delay=4000");
    let lease_dir = p.file("lake/_restock/leases/three");
    wait_for(&lease_dir, &mut first);
    std::thread::sleep(Duration::from_millis(300));
    let err = p.fails(&["run", "p.yaml", "--param", "n=2"], 1);
    assert!(err.contains("pipeline `three` is already running on lake") && err.contains("pid "), "{err}");
    // Another state database knows nothing of the live run: gc must still leave its staging.
    let staging = p.file("lake/_staging");
    p.ok(&["--state", "sqlite://other.db", "gc", "--older-than", "0s", "--lake", "file://./lake"]);
    let out = first.wait_with_output().unwrap();
    assert!(out.status.success(), "the first run was not disturbed: {}", stderr(&out));
    assert!(!staging.exists() || std::fs::read_dir(&staging).unwrap().next().is_none());
    assert_eq!(visible(&p), vec!["1/1/1"]);
    // Waiting instead of refusing.
    p.ok(&["run", "p.yaml", "--param", "n=2", "--wait", "30s"]);
    assert_eq!(visible(&p), vec!["2/2/2"]);
    assert!(stdout(&p.run(&["runs"])).contains("succeeded"));
}

#[test]
fn two_pipelines_racing_for_one_table_get_one_clear_line() {
    let p = three();
    p.write("other.yaml", "name: other\nstages:\n  - { id: x, kind: sql, outputs: [tc], config: { sql: \"SELECT 9 AS n, 'x' AS t\" } }\n");
    // `three` starts first but is slow; `other` starts later and publishes tc first.
    let mut slow = spawn(&p, &["run", "p.yaml"], "put@_staging:1:delay=2500");
    wait_for(&p.file("lake/_restock/leases/three"), &mut slow);
    std::thread::sleep(Duration::from_millis(1100));
    p.ok(&["run", "other.yaml"]);
    let out = slow.wait_with_output().unwrap();
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("already published tc") && err.contains("nothing was published"), "{err}");
    assert!(!err.contains("deltalake") && !err.contains("WARN") && !err.contains("ERROR"), "no library log lines:\n{err}");
}

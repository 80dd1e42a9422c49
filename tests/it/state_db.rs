//! Run history on a database this user may not write: read-only commands still work, writing
//! ones fail with the file at fault named. Runs the CLI as an unprivileged user when the tests
//! run as root (root may write any file), so the permissions are real.
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use crate::common::{Project, stderr, stdout};

/// `restock ARGS` in the project, as `nobody` when we are root.
fn restock_unprivileged(p: &Project, args: &[&str]) -> std::process::Output {
    let bin = assert_cmd::cargo::cargo_bin("restock");
    let mut c = if unsafe { libc::geteuid() } == 0 {
        let mut c = Command::new("setpriv");
        c.args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"]).arg(bin);
        c
    } else {
        Command::new(bin)
    };
    c.current_dir(p.path()).arg("--quiet").args(args).env_remove("RESTOCK_STATE").env_remove("RESTOCK_LAKE");
    c.output().expect("run restock")
}

fn chmod(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

#[test]
fn a_read_only_state_database_is_still_readable_and_named_when_written() {
    let p = Project::empty();
    p.write("p.yaml", "name: ro\nstages:\n  - { id: a, kind: sql, outputs: [t], config: { sql: \"SELECT 1 AS n\" } }\n");
    p.ok(&["run", "p.yaml"]);
    let run_id = p.last_run_id();
    chmod(p.path(), 0o755);
    let db = p.file(".restock/state.db");
    chmod(&db, 0o444);
    chmod(&p.file(".restock"), 0o555);

    let runs = restock_unprivileged(&p, &["runs"]);
    assert!(runs.status.success() && stdout(&runs).contains(&run_id), "{}\n{}", stdout(&runs), stderr(&runs));
    let show = restock_unprivileged(&p, &["show", &run_id]);
    assert!(show.status.success() && stdout(&show).contains("succeeded"), "{}", stderr(&show));
    let run = restock_unprivileged(&p, &["run", "p.yaml"]);
    assert_eq!(run.status.code(), Some(1));
    assert!(stderr(&run).contains("state.db is read-only"), "{}", stderr(&run));

    // A read-only `-shm` left behind by another user: reading still works, writing names it.
    chmod(&p.file(".restock"), 0o755);
    std::fs::write(p.file(".restock/state.db-shm"), vec![0u8; 32768]).unwrap();
    chmod(&p.file(".restock/state.db-shm"), 0o444);
    chmod(&db, 0o666);
    let runs = restock_unprivileged(&p, &["runs"]);
    assert!(runs.status.success() && stdout(&runs).contains(&run_id), "{}", stderr(&runs));
    let run = restock_unprivileged(&p, &["run", "p.yaml"]);
    assert_eq!(run.status.code(), Some(1));
    assert!(stderr(&run).contains("state.db-shm is read-only"), "{}", stderr(&run));
}

#[test]
fn a_schema_1_database_is_read_as_is_and_upgraded_on_first_write() {
    let p = Project::empty();
    std::fs::create_dir_all(p.file(".restock")).unwrap();
    let db = rusqlite::Connection::open(p.file(".restock/state.db")).unwrap();
    db.execute_batch(
        "CREATE TABLE runs (run_id TEXT PRIMARY KEY, pipeline TEXT NOT NULL, pipeline_path TEXT NOT NULL, spec_text TEXT NOT NULL,
            spec_hash TEXT NOT NULL, params TEXT NOT NULL, run_date TEXT NOT NULL, interval_start TEXT NOT NULL,
            interval_end TEXT NOT NULL, lake TEXT NOT NULL, status TEXT NOT NULL, error TEXT, started_at TEXT NOT NULL, finished_at TEXT);
         INSERT INTO runs VALUES ('20260101-000000-0000', 'daily', 'd.yaml', '', '', '{}', '2026-01-01', '2026-01-01 00:00:00',
            '2026-01-02 00:00:00', 'file:///lake/', 'succeeded', NULL, '2026-01-01T00:00:00+00:00', '2026-01-01T00:01:00+00:00');
         PRAGMA user_version = 1;",
    )
    .unwrap();
    drop(db);
    p.write("d.yaml", "name: daily\nschedule: { cron: \"0 2 * * *\" }\nstages:\n  - { id: a, kind: noop }\n");
    // Read-only commands read it as it is.
    assert!(p.ok(&["runs"]).contains("20260101-000000-0000"));
    let dry = p.ok(&["backfill", "d.yaml", "--from", "2026-01-01", "--to", "2026-01-01", "--dry-run"]);
    assert!(dry.contains("1 to run"), "{dry}");
    // The first write upgrades it in place, keeping the old run.
    p.ok(&["run", "d.yaml"]);
    let runs = p.ok(&["runs"]);
    assert!(runs.contains("20260101-000000-0000") && runs.contains("manual"), "{runs}");
}

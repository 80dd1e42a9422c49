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

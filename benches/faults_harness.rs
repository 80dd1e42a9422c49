//! The fault harness: seeded trials that kill `restock run` (SIGKILL) at random instants or
//! inject object-store faults into it, recover with `restock resume` (or a new run), and have an
//! independent reader (`benches/check_lake.py`: the `deltalake` and `polars` packages) check
//! the lake after each step. Shared by `benches/faults.rs` (the full run, recorded in
//! RELIABILITY.md) and `tests/it/faults.rs` (a short seeded subset in the test suite).
//!
//! What a trial checks (a violation is any of these failing):
//! * after the fault: every table readable, none older than before the trial;
//! * after recovery: recovery succeeded; every table readable and at least as new as before;
//!   all tables' latest versions come from one run (no run's tables partly visible); and their
//!   rows and column checksums equal those of an uninterrupted run of the same pipeline.
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::Value;

/// When, in an uninterrupted run, its commit point comes and it ends.
#[derive(Debug, Clone, Copy)]
pub struct Timeline {
    pub commit_at: Duration,
    pub end: Duration,
}

pub struct Harness {
    /// The restock binary.
    pub bin: PathBuf,
    /// A project folder with `pipelines/`, `sql/` and a demo lake under `lake/`.
    pub dir: PathBuf,
    /// A Python with `deltalake` and `polars`.
    pub python: String,
    /// The independent reader script.
    pub checker: PathBuf,
    pub pipeline: String,
    pub date: String,
}

#[derive(Debug, Clone)]
pub enum Fault {
    Kill {
        after: Duration,
    },
    Store(String),
    /// The table's folder on a tmpfs with too little room for its next version.
    DiskFull {
        table: String,
    },
    /// The table's folder read-only (a read-only bind mount: even root cannot write it).
    ReadOnly {
        table: String,
    },
}

impl std::fmt::Display for Fault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Fault::Kill { after } => write!(f, "SIGKILL at {:.2}s", after.as_secs_f64()),
            Fault::Store(rule) => write!(f, "{rule}"),
            Fault::DiskFull { table } => write!(f, "disk full under tables/{table}"),
            Fault::ReadOnly { table } => write!(f, "read-only tables/{table}"),
        }
    }
}

#[derive(Debug)]
pub struct Trial {
    pub n: usize,
    pub fault: Fault,
    /// Exit code of the faulted run (`None`: killed).
    pub exit: Option<i32>,
    /// Where the fault left the run: "not started", a run status, or "pending publish".
    pub left: String,
    pub recovery: String,
    pub violations: Vec<String>,
}

/// A lake as the independent reader sees it.
type Snapshot = BTreeMap<String, Value>;

impl Harness {
    fn restock(&self, args: &[&str]) -> Command {
        let mut c = Command::new(&self.bin);
        c.current_dir(&self.dir)
            .arg("--quiet")
            .args(args)
            .env_remove("RESTOCK_LAKE")
            .env_remove("RESTOCK_STATE")
            .env_remove("RESTOCK_FAULTS");
        c.stdout(Stdio::piped()).stderr(Stdio::piped());
        c
    }

    fn run_args(&self) -> Vec<String> {
        // --force: every trial recomputes and publishes (unchanged stages would otherwise be
        // served from the cache and nothing would reach the faults).
        vec!["run".into(), self.pipeline.clone(), "--date".into(), self.date.clone(), "--force".into()]
    }

    /// The independent reader's view: tables by name, plus read errors.
    fn snapshot(&self) -> Result<(Snapshot, Vec<String>), String> {
        let out = Command::new(&self.python)
            .arg(&self.checker)
            .arg(self.dir.join("lake"))
            .output()
            .map_err(|e| format!("cannot start {}: {e}", self.python))?;
        if !out.status.success() {
            return Err(format!("checker failed: {}", String::from_utf8_lossy(&out.stderr)));
        }
        let v: Value = serde_json::from_slice(&out.stdout).map_err(|e| format!("checker output: {e}"))?;
        let tables = v["tables"].as_object().cloned().unwrap_or_default().into_iter().collect();
        let errors = v["errors"].as_array().cloned().unwrap_or_default().iter().map(|e| e.to_string()).collect();
        Ok((tables, errors))
    }

    /// The latest run in history: (id, status).
    fn last_run(&self) -> Option<(String, String)> {
        let out = self.restock(&["runs", "--limit", "1"]).output().ok()?;
        let text = String::from_utf8_lossy(&out.stdout);
        let cells = |l: &str| -> Vec<String> { l.trim_matches('│').split('┆').map(|c| c.trim().to_string()).collect() };
        let header = text.lines().find(|l| l.starts_with("│ run id")).map(cells)?;
        let status = header.iter().position(|h| h == "status")?;
        let row = text.lines().find(|l| l.starts_with("│ ") && l.chars().nth(2).is_some_and(|c| c.is_ascii_digit())).map(cells)?;
        Some((row.first()?.clone(), row.get(status)?.clone()))
    }

    /// Pending manifests (past the commit point, publish not finished) in the lake.
    fn pending_publishes(&self) -> usize {
        let ids = |folder: &str| -> Vec<String> {
            std::fs::read_dir(self.dir.join("lake/_restock").join(folder))
                .map(|d| d.filter_map(|e| e.ok()?.file_name().into_string().ok()).collect())
                .unwrap_or_default()
        };
        let complete = ids("complete");
        ids("commits").iter().filter(|c| !complete.contains(c)).count()
    }

    /// One uninterrupted run: the reference outputs, and when in a run the commit point comes
    /// and the run ends.
    pub fn reference(&self) -> Result<(Snapshot, Timeline), String> {
        let commits = self.dir.join("lake/_restock/commits");
        let before = std::fs::read_dir(&commits).map(|d| d.count()).unwrap_or(0);
        let started = Instant::now();
        let mut child = self.restock(&self.run_args().iter().map(String::as_str).collect::<Vec<_>>()).spawn().map_err(|e| e.to_string())?;
        let mut commit_at = None;
        while child.try_wait().map_err(|e| e.to_string())?.is_none() {
            if commit_at.is_none() && std::fs::read_dir(&commits).map(|d| d.count()).unwrap_or(0) > before {
                commit_at = Some(started.elapsed());
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        let out = child.wait_with_output().map_err(|e| e.to_string())?;
        if !out.status.success() {
            return Err(format!("reference run failed: {}", String::from_utf8_lossy(&out.stderr)));
        }
        let end = started.elapsed();
        let (snap, errors) = self.snapshot()?;
        if !errors.is_empty() || snap.is_empty() {
            return Err(format!("reference lake unreadable: {errors:?}"));
        }
        Ok((snap, Timeline { commit_at: commit_at.unwrap_or(end), end }))
    }

    pub fn trial(&self, n: usize, fault: Fault, reference: &Snapshot) -> Result<Trial, String> {
        let (before, _) = self.snapshot()?;
        let previous = self.last_run().map(|r| r.0);
        let args = self.run_args();
        let mut cmd = self.restock(&args.iter().map(String::as_str).collect::<Vec<_>>());
        if let Fault::Store(rule) = &fault {
            cmd.env("RESTOCK_FAULTS", rule);
        }
        let tables = self.dir.join("lake/tables");
        match &fault {
            Fault::DiskFull { table } => fill_disk(&tables.join(table))?,
            Fault::ReadOnly { table } => {
                sh(&format!("mount --bind {0} {0} && mount -o remount,ro,bind {0}", tables.join(table).display()))?
            }
            _ => {}
        }
        let mut child = cmd.spawn().map_err(|e| e.to_string())?;
        let exit = match &fault {
            Fault::Kill { after } => {
                let deadline = Instant::now() + *after;
                while Instant::now() < deadline && child.try_wait().map_err(|e| e.to_string())?.is_none() {
                    std::thread::sleep(Duration::from_millis(5));
                }
                let _ = child.kill();
                child.wait().map_err(|e| e.to_string())?.code()
            }
            Fault::Store(_) | Fault::DiskFull { .. } | Fault::ReadOnly { .. } => child.wait().map_err(|e| e.to_string())?.code(),
        };
        match &fault {
            Fault::DiskFull { table } => free_disk(&tables.join(table))?,
            Fault::ReadOnly { table } => sh(&format!("umount {}", tables.join(table).display()))?,
            _ => {}
        }
        let mut violations = vec![];
        let (after_fault, errors) = self.snapshot()?;
        violations.extend(errors.into_iter().map(|e| format!("after the fault: unreadable table {e}")));
        violations.extend(older_than(&before, &after_fault, "after the fault"));
        let pending = self.pending_publishes();
        let faulted = self.last_run().filter(|(id, _)| Some(id) != previous.as_ref());
        let left = match (&faulted, pending) {
            (_, p) if p > 0 => "pending publish".to_string(),
            (Some((_, status)), _) => status.clone(),
            (None, _) => "not started".to_string(),
        };

        // Recovery: resume the faulted run if it was recorded and did not succeed, else run anew.
        let mut new_run = args.clone();
        new_run.extend(["--wait".to_string(), "60s".to_string()]);
        let (recovery, cmd) = match &faulted {
            Some((id, status)) if status != "succeeded" => {
                ("resume", Some(vec!["resume".to_string(), id.clone(), "--wait".into(), "60s".into()]))
            }
            Some(_) => ("none", None),
            None => ("new run", Some(new_run)),
        };
        if let Some(cmd) = cmd {
            let out = self.restock(&cmd.iter().map(String::as_str).collect::<Vec<_>>()).output().map_err(|e| e.to_string())?;
            if !out.status.success() {
                violations.push(format!("{recovery} failed ({:?}): {}", out.status.code(), String::from_utf8_lossy(&out.stderr).trim()));
            }
        }
        let (after, errors) = self.snapshot()?;
        violations.extend(errors.into_iter().map(|e| format!("after recovery: unreadable table {e}")));
        violations.extend(older_than(&before, &after, "after recovery"));
        let runs: std::collections::BTreeSet<String> = after.values().map(|t| t["run_id"].to_string()).collect();
        if runs.len() > 1 {
            violations.push(format!("after recovery the tables come from {} runs: {runs:?}", runs.len()));
        }
        for (name, want) in reference {
            match after.get(name) {
                None => violations.push(format!("after recovery: table {name} is missing")),
                Some(got) if got["rows"] != want["rows"] || got["checksum"] != want["checksum"] => violations.push(format!(
                    "after recovery: table {name} differs from an uninterrupted run ({} rows vs {})",
                    got["rows"], want["rows"]
                )),
                Some(_) => {}
            }
        }
        if self.pending_publishes() > 0 {
            violations.push("after recovery a publish is still pending".into());
        }
        Ok(Trial { n, fault, exit, left, recovery: recovery.into(), violations })
    }
}

/// Whether this machine lets us mount (a tmpfs, a read-only bind mount): root, or a user
/// namespace that allows it.
pub fn can_mount() -> bool {
    let probe = std::env::temp_dir().join(format!("restock-mount-probe-{}", std::process::id()));
    let _ = std::fs::create_dir_all(&probe);
    let script = format!("mount -t tmpfs -o size=64k tmpfs {0} && umount {0} && mount --bind {0} {0} && umount {0}", probe.display());
    let ok = sh(&script).is_ok();
    let _ = std::fs::remove_dir(&probe);
    ok
}

fn sh(script: &str) -> Result<(), String> {
    let out = Command::new("sh").args(["-c", script]).output().map_err(|e| e.to_string())?;
    if out.status.success() { Ok(()) } else { Err(format!("`{script}`: {}", String::from_utf8_lossy(&out.stderr).trim())) }
}

/// Put a table's folder on a tmpfs holding what it has now plus 8 KiB: its next version cannot
/// be written (ENOSPC), its log and data stay readable.
fn fill_disk(table: &Path) -> Result<(), String> {
    let aside = table.with_extension("aside");
    let used: u64 = walk_size(table);
    let size_kb = used / 1024 + 4; // one page of room: less than any new data file
    sh(&format!(
        "mv {t} {a} && mkdir {t} && mount -t tmpfs -o size={size_kb}k tmpfs {t} && cp -a {a}/. {t}/ && rm -rf {a}",
        t = table.display(),
        a = aside.display()
    ))
}

/// Give the table its disk back (the tmpfs's content moves to the real folder).
fn free_disk(table: &Path) -> Result<(), String> {
    let aside = table.with_extension("aside");
    sh(&format!("mkdir -p {a} && cp -a {t}/. {a}/ && umount {t} && rmdir {t} && mv {a} {t}", t = table.display(), a = aside.display()))
}

fn walk_size(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| match e.metadata() {
                    Ok(m) if m.is_dir() => walk_size(&e.path()),
                    Ok(m) => m.len().div_ceil(4096) * 4096,
                    Err(_) => 0,
                })
                .sum()
        })
        .unwrap_or(0)
}

/// Tables whose version went backwards (or that vanished) between two snapshots.
fn older_than(before: &Snapshot, after: &Snapshot, when: &str) -> Vec<String> {
    before
        .iter()
        .filter_map(|(name, b)| match after.get(name) {
            None => Some(format!("{when}: table {name} vanished")),
            Some(a) if a["version"].as_i64() < b["version"].as_i64() => {
                Some(format!("{when}: table {name} went back from v{} to v{}", b["version"], a["version"]))
            }
            Some(_) => None,
        })
        .collect()
}

/// Store faults the trials draw from: every kind of call, early and late in a run.
fn store_fault(rng: &mut ChaCha8Rng) -> String {
    let k = rng.random_range(1..=6);
    let rules = [
        format!("put@tables/:{k}:503"),
        format!("put@tables/:{k}+:denied"),
        format!("put@tables/:{k}:drop"),
        "cput@_delta_log/:1:fail".to_string(),
        format!("cput@_delta_log/:{k}:503"),
        "cput@_restock/commits/:1:503".to_string(),
        "cput@_restock/complete/:1:fail".to_string(),
        "cput@_restock/leases/:1:drop".to_string(),
        format!("put@_staging/:{k}:fail"),
        format!("get@_staging/:{k}:drop"),
        format!("get:{}:503", k * 7),
        format!("list:{k}:503"),
        format!("delete@_staging/:{k}:fail"),
        format!("put@tables/:{k}:delay=400"),
    ];
    rules[rng.random_range(0..rules.len())].clone()
}

/// Draw `n` faults: two in three are kills (half of them uniform over the whole run, half over
/// its publish: from just before the commit point to the end), the rest injected store faults,
/// and (where `mounts`) one in ten a full disk or a read-only folder under a published table.
pub fn draw_faults(n: usize, seed: u64, run: Timeline, mounts: bool) -> Vec<Fault> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    (0..n)
        .map(|_| {
            if mounts && rng.random_range(0..10) == 0 {
                let table = ["forecasts", "demand_daily", "sales_clean"][rng.random_range(0..3)].to_string();
                return if rng.random_bool(0.5) { Fault::DiskFull { table } } else { Fault::ReadOnly { table } };
            }
            if rng.random_range(0..3) < 2 {
                let from = if rng.random_bool(0.5) { Duration::ZERO } else { run.commit_at.mul_f64(0.97) };
                let to = run.end.mul_f64(1.05);
                Fault::Kill { after: from + (to - from).mul_f64(rng.random_range(0.0..1.0)) }
            } else {
                Fault::Store(store_fault(&mut rng))
            }
        })
        .collect()
}

pub fn print_trials(trials: &[Trial]) {
    println!("{:>3}  {:<34} {:>6}  {:<18} {:<8} {}", "#", "fault", "exit", "left", "recovery", "violations");
    for t in trials {
        let exit = t.exit.map_or("killed".into(), |c| c.to_string());
        let v = if t.violations.is_empty() { "0".to_string() } else { t.violations.join("; ") };
        println!("{:>3}  {:<34} {:>6}  {:<18} {:<8} {v}", t.n, t.fault.to_string(), exit, t.left, t.recovery);
    }
    let kills = trials.iter().filter(|t| matches!(t.fault, Fault::Kill { .. })).count();
    let disks = trials.iter().filter(|t| matches!(t.fault, Fault::DiskFull { .. } | Fault::ReadOnly { .. })).count();
    let violations: usize = trials.iter().map(|t| t.violations.len()).sum();
    let mut left: BTreeMap<&str, usize> = BTreeMap::new();
    let mut kills_left: BTreeMap<&str, usize> = BTreeMap::new();
    for t in trials {
        *left.entry(t.left.as_str()).or_default() += 1;
        if matches!(t.fault, Fault::Kill { .. }) {
            *kills_left.entry(t.left.as_str()).or_default() += 1;
        }
    }
    println!("the SIGKILLs left runs: {kills_left:?} (running: killed in stage work; pending publish: past the commit point)");
    println!(
        "{} trials: {kills} SIGKILLs, {} store faults, {disks} full disks or read-only folders; left as {left:?}; {violations} violations",
        trials.len(),
        trials.len() - kills - disks
    );
}

/// The Python for the independent reader: `RESTOCK_PYTHON`, else the project's venv, else `python3`
/// (with `PYTHONPATH` as `scripts/env.sh` sets it).
pub fn python(repo: &Path) -> String {
    let venv = repo.join(".venv/bin/python3");
    std::env::var("RESTOCK_PYTHON").unwrap_or_else(|_| if venv.exists() { venv.display().to_string() } else { "python3".into() })
}

/// Copy the repo's pipelines/ and sql/ into `dir` (the demo lake is generated there by the caller).
pub fn copy_project(repo: &Path, dir: &Path) -> std::io::Result<()> {
    for folder in ["pipelines", "sql"] {
        std::fs::create_dir_all(dir.join(folder))?;
        for entry in std::fs::read_dir(repo.join(folder))? {
            let entry = entry?;
            std::fs::copy(entry.path(), dir.join(folder).join(entry.file_name()))?;
        }
    }
    Ok(())
}

//! The full fault-harness run recorded in RELIABILITY.md: `cargo bench --bench faults -- [TRIALS] [SEED]`
//! (defaults: 60 trials, seed 9). Kills `restock run` with SIGKILL at random instants over stage
//! work and publish and injects object-store faults, recovers, and checks the lake with an
//! independent reader (deltalake + polars from PyPI; `scripts/test` installs them into .venv).
#[path = "faults_harness.rs"]
mod harness;

use std::path::Path;
use std::process::Command;

fn main() {
    let mut args = std::env::args().skip(1).filter(|a| !a.starts_with("--"));
    let trials: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(60);
    let seed: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(9);
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = tempfile::Builder::new().prefix("restock-faults-").tempdir().expect("temp dir");
    harness::copy_project(repo, dir.path()).expect("copy pipelines and sql");
    let bin = Path::new(env!("CARGO_BIN_EXE_restock")).to_path_buf();
    let demo = Command::new(&bin)
        .current_dir(dir.path())
        .args(["--quiet", "demo", "--no-run", "--skus", "200", "--locations", "5", "--days", "365", "--start", "2025-10-29"])
        .status()
        .expect("restock demo");
    assert!(demo.success(), "demo lake");
    let python = harness::python(repo);
    let h = harness::Harness {
        bin,
        dir: dir.path().to_path_buf(),
        python,
        checker: repo.join("benches/check_lake.py"),
        pipeline: "pipelines/nightly.yaml".into(),
        date: "2026-10-28".into(),
    };
    let started = std::time::Instant::now();
    let (reference, timeline) = h.reference().expect("reference run");
    println!(
        "reference run: commit point at {:.2}s, done at {:.2}s, {} tables; {trials} trials, seed {seed}",
        timeline.commit_at.as_secs_f64(),
        timeline.end.as_secs_f64(),
        reference.len()
    );
    let mut done = vec![];
    for (n, fault) in harness::draw_faults(trials, seed, timeline, harness::can_mount()).into_iter().enumerate() {
        let t = h.trial(n + 1, fault, &reference).expect("trial ran");
        eprintln!("trial {:>3}: {} -> {} ({} violations)", t.n, t.fault, t.left, t.violations.len());
        done.push(t);
    }
    harness::print_trials(&done);
    println!("wall time {:.0}s", started.elapsed().as_secs_f64());
    if done.iter().any(|t| !t.violations.is_empty()) {
        std::process::exit(1);
    }
}

//! Orchestration overhead: 1,000 no-op stages as a chain and as a wide fan-out, through the real
//! planner, executor and SQLite run history. Prints numbers; asserts nothing.
//!
//!   cargo bench --profile dev --bench orchestration
//!
//! Per-stage overhead in the chain = time from one stage's start to the next one's start (each
//! waits for the previous), so it includes scheduling, two history writes and session setup.
//! The peer is the floor: spawning and awaiting the same number of empty tokio tasks in sequence.
use std::sync::Arc;
use std::time::Instant;

use restock::plan::{self, PlanOptions};
use restock::run::{self, RunOptions};
use restock::stage::Registry;
use restock::state::{SqliteStore, StateStore};
use tokio_util::sync::CancellationToken;

const N: usize = 1000;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn pct(v: &[f64], p: f64) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    v[((v.len() - 1) as f64 * p) as usize]
}

async fn bench(shape: &str, yaml: String, max_parallel: usize) {
    let dir = tempfile::tempdir().expect("tmp");
    let state: Arc<dyn StateStore> = Arc::new(SqliteStore::open(&dir.path().join("state.db")).expect("state"));
    let spec = restock::spec::parse(&dir.path().join("p.yaml"), yaml).expect("parse");
    let t0 = Instant::now();
    let opts = PlanOptions {
        run_id: plan::new_run_id(),
        run_date: chrono::NaiveDate::from_ymd_opt(2026, 11, 30).unwrap(),
        interval: None,
        params: vec![],
        lake_override: Some("file://./lake".into()),
        base_dir: dir.path().to_path_buf(),
    };
    let plan = plan::build(&spec, &opts, &Registry::builtin()).unwrap_or_else(|d| panic!("{d}"));
    let planned = t0.elapsed();
    let t1 = Instant::now();
    let outcome = run::start(
        Arc::new(plan),
        state.clone(),
        RunOptions {
            max_parallel,
            cancel: CancellationToken::new(),
            quiet: true,
            reuse: Default::default(),
            commit: Default::default(),
            cache: None,
            gpus: 1,
        },
    )
    .await
    .expect("run");
    let ran = t1.elapsed();
    assert_eq!(outcome.status, restock::state::RunStatus::Succeeded);
    let mut attempts = state.attempts(&outcome.run_id).expect("attempts");
    attempts.sort_by_key(|a| a.started_at);
    let starts: Vec<f64> = attempts.iter().map(|a| a.started_at.timestamp_nanos_opt().unwrap() as f64 / 1e6).collect();
    let gaps: Vec<f64> = starts.windows(2).map(|w| w[1] - w[0]).collect();
    let durations: Vec<f64> =
        attempts.iter().map(|a| (a.finished_at.unwrap() - a.started_at).num_microseconds().unwrap() as f64 / 1e3).collect();
    println!(
        "{shape:<8} stages={N} plan={:.1}ms run={:.1}ms per-stage(wall/N)={:.3}ms start-to-start median={:.3}ms p95={:.3}ms attempt median={:.3}ms",
        planned.as_secs_f64() * 1e3,
        ran.as_secs_f64() * 1e3,
        ran.as_secs_f64() * 1e3 / N as f64,
        median(gaps.clone()),
        pct(&gaps, 0.95),
        median(durations),
    );
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let mut chain = String::from("name: chain\nstages:\n  - { id: s0, kind: noop }\n");
        for i in 1..N {
            chain.push_str(&format!("  - {{ id: s{i}, kind: noop, needs: [s{}] }}\n", i - 1));
        }
        let mut fan = String::from("name: fanout\nstages:\n  - { id: root, kind: noop }\n");
        for i in 1..N {
            fan.push_str(&format!("  - {{ id: s{i}, kind: noop, needs: [root] }}\n"));
        }
        bench("chain", chain, 4).await;
        bench("fan-out", fan, 16).await;

        let t = Instant::now();
        for _ in 0..N {
            tokio::spawn(async {}).await.unwrap();
        }
        let floor = t.elapsed().as_secs_f64() * 1e3 / N as f64;
        println!("peer     tokio spawn+await of an empty task, sequential: {floor:.4}ms per task");
    });
}

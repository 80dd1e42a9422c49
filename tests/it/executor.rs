//! Executor behaviour through the library API, with test-only stage kinds plugged into the
//! registry (the same extension point later model / policy kinds use).
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use datafusion::arrow::datatypes::SchemaRef;
use restock::diag::Diagnostics;
use restock::plan::{self, PlanOptions};
use restock::run::{self, RunOptions, RunOutcome};
use restock::stage::{Registry, StageCx, StageDecl, StageKind, StageReport, StageTask};
use restock::state::{AttemptStatus, RunStatus, SqliteStore, StateStore};
use serde::Deserialize;
use tokio_util::sync::CancellationToken;

/// Shared counters of one test's kinds.
#[derive(Default)]
struct Probe {
    running: AtomicU32,
    max_running: AtomicU32,
    calls: AtomicU32,
}

/// `sleep {ms}`: sleeps (cancellable), tracking concurrency. `fail_first {n}` fails n calls first.
struct TestKind {
    probe: Arc<Probe>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TestConfig {
    #[serde(default)]
    ms: u64,
    #[serde(default)]
    fail_first: u32,
    #[serde(default)]
    always_fail: bool,
    #[serde(default)]
    panic: bool,
}

#[derive(Debug)]
struct TestTask {
    probe: Arc<ProbeRef>,
    ms: u64,
    fail_first: u32,
    always_fail: bool,
    panic: bool,
}

struct ProbeRef(Arc<Probe>);
impl std::fmt::Debug for ProbeRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("probe")
    }
}

impl StageKind for TestKind {
    fn name(&self) -> &'static str {
        "test"
    }
    fn prepare(&self, decl: &StageDecl<'_>) -> Result<Arc<dyn StageTask>, Diagnostics> {
        let c: TestConfig = decl.config.parse().map_err(|d| d.stage(decl.id))?;
        Ok(Arc::new(TestTask {
            probe: Arc::new(ProbeRef(self.probe.clone())),
            ms: c.ms,
            fail_first: c.fail_first,
            always_fail: c.always_fail,
            panic: c.panic,
        }))
    }
}

#[async_trait]
impl StageTask for TestTask {
    async fn plan(&self, _: &BTreeMap<String, SchemaRef>) -> Result<Vec<SchemaRef>, Diagnostics> {
        Ok(vec![])
    }
    async fn run(&self, cx: &StageCx) -> anyhow::Result<StageReport> {
        let p = &self.probe.0;
        let call = p.calls.fetch_add(1, Ordering::SeqCst);
        let now = p.running.fetch_add(1, Ordering::SeqCst) + 1;
        p.max_running.fetch_max(now, Ordering::SeqCst);
        struct Dec<'a>(&'a AtomicU32);
        impl Drop for Dec<'_> {
            fn drop(&mut self) {
                self.0.fetch_sub(1, Ordering::SeqCst);
            }
        }
        let _dec = Dec(&p.running);
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(self.ms)) => {}
            _ = cx.cancel.cancelled() => anyhow::bail!("cancelled"),
        }
        if self.panic {
            panic!("C++ exception: shape mismatch");
        }
        if self.always_fail || call < self.fail_first {
            anyhow::bail!("planned failure (call {call})");
        }
        Ok(StageReport::default())
    }
}

struct Env {
    _dir: tempfile::TempDir,
    state: Arc<dyn StateStore>,
    probe: Arc<Probe>,
    base: std::path::PathBuf,
}

fn env() -> Env {
    let dir = tempfile::tempdir().expect("tmp");
    let state: Arc<dyn StateStore> = Arc::new(SqliteStore::open(&dir.path().join("state.db")).expect("state"));
    let base = dir.path().to_path_buf();
    Env { _dir: dir, state, probe: Arc::new(Probe::default()), base }
}

async fn run_yaml(env: &Env, yaml: &str, max_parallel: usize, cancel: CancellationToken) -> RunOutcome {
    let spec = restock::spec::parse(&env.base.join("p.yaml"), yaml.to_string()).expect("parses");
    let mut registry = Registry::builtin();
    registry.register(Arc::new(TestKind { probe: env.probe.clone() }));
    let opts = PlanOptions {
        run_id: plan::new_run_id(),
        run_date: chrono::NaiveDate::from_ymd_opt(2026, 11, 29).unwrap(),
        interval: None,
        params: vec![],
        lake_override: Some("file://./lake".into()),
        base_dir: env.base.clone(),
    };
    let plan = plan::build(&spec, &opts, &registry).unwrap_or_else(|d| panic!("{d}"));
    run::start(
        Arc::new(plan),
        env.state.clone(),
        RunOptions { max_parallel, cancel, quiet: true, reuse: Default::default(), commit: Default::default(), cache: None, gpus: 1 },
    )
    .await
    .expect("state store works")
}

fn stage<'a>(o: &'a RunOutcome, id: &str) -> &'a run::StageOutcome {
    o.stages.iter().find(|s| s.id == id).expect("stage present")
}

#[tokio::test]
async fn failure_skips_dependents_and_independent_stages_finish() {
    let env = env();
    let o = run_yaml(
        &env,
        r#"
name: p
stages:
  - { id: bad, kind: test, config: { always_fail: true } }
  - { id: after_bad, kind: noop, needs: [bad] }
  - { id: after_after, kind: noop, needs: [after_bad] }
  - { id: independent, kind: test, config: { ms: 200 } }
"#,
        4,
        CancellationToken::new(),
    )
    .await;
    assert_eq!(o.status, RunStatus::Failed);
    assert_eq!(stage(&o, "bad").status, AttemptStatus::Failed);
    assert_eq!(stage(&o, "after_bad").status, AttemptStatus::Skipped);
    assert_eq!(stage(&o, "after_after").status, AttemptStatus::Skipped);
    assert_eq!(stage(&o, "independent").status, AttemptStatus::Succeeded);
    let run = env.state.get_run(&o.run_id).unwrap();
    assert_eq!(run.status, RunStatus::Failed);
    let attempts = env.state.attempts(&o.run_id).unwrap();
    assert!(
        attempts
            .iter()
            .any(|a| a.stage_id == "after_bad" && a.status == AttemptStatus::Skipped && a.error.as_deref().unwrap().contains("bad"))
    );
}

#[tokio::test]
async fn retries_with_backoff_until_success_and_records_each_attempt() {
    let env = env();
    let started = Instant::now();
    let o = run_yaml(
        &env,
        r#"
name: p
stages:
  - id: flaky
    kind: test
    retries: { max: 3, backoff: 50ms, max_backoff: 200ms }
    config: { fail_first: 2 }
"#,
        1,
        CancellationToken::new(),
    )
    .await;
    assert_eq!(o.status, RunStatus::Succeeded, "{:?}", o.error);
    assert_eq!(stage(&o, "flaky").attempts, 3);
    let statuses: Vec<AttemptStatus> = env.state.attempts(&o.run_id).unwrap().iter().map(|a| a.status).collect();
    assert_eq!(statuses, vec![AttemptStatus::Failed, AttemptStatus::Failed, AttemptStatus::Succeeded]);
    // Jittered backoff never exceeds its cap: 2 delays of at most 50ms and 100ms.
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[tokio::test]
async fn retries_exhausted_fail_the_stage() {
    let env = env();
    let o = run_yaml(
        &env,
        r#"
name: p
stages:
  - { id: flaky, kind: test, retries: { max: 1, backoff: 10ms }, config: { fail_first: 5 } }
"#,
        1,
        CancellationToken::new(),
    )
    .await;
    assert_eq!(o.status, RunStatus::Failed);
    assert_eq!(stage(&o, "flaky").attempts, 2);
    assert!(stage(&o, "flaky").error.as_deref().unwrap().contains("planned failure"));
}

#[tokio::test]
async fn timeout_stops_a_stage() {
    let env = env();
    let started = Instant::now();
    let o = run_yaml(
        &env,
        r#"
name: p
stages:
  - { id: slow, kind: test, timeout: 200ms, config: { ms: 30000 } }
"#,
        1,
        CancellationToken::new(),
    )
    .await;
    assert_eq!(stage(&o, "slow").status, AttemptStatus::TimedOut);
    assert!(stage(&o, "slow").error.as_deref().unwrap().contains("timed out after 200ms"));
    assert!(started.elapsed() < Duration::from_secs(5), "took {:?}", started.elapsed());
}

#[tokio::test]
async fn max_parallel_bounds_concurrency_and_independent_stages_overlap() {
    let env = env();
    let mut yaml = String::from("name: p\nstages:\n");
    for i in 0..8 {
        yaml.push_str(&format!("  - {{ id: s{i}, kind: test, config: {{ ms: 150 }} }}\n"));
    }
    let o = run_yaml(&env, &yaml, 3, CancellationToken::new()).await;
    assert_eq!(o.status, RunStatus::Succeeded);
    assert_eq!(env.probe.max_running.load(Ordering::SeqCst), 3);
}

/// `resources: { gpu: 1 }` stages never run more at once than there are GPUs (1 here), while
/// the other stages still fill `--max-parallel`.
#[tokio::test]
async fn gpu_stages_never_outnumber_the_gpus() {
    let mut yaml = String::from("name: p\nstages:\n");
    for i in 0..4 {
        yaml.push_str(&format!("  - {{ id: g{i}, kind: test, resources: {{ gpu: 1 }}, config: {{ ms: 120 }} }}\n"));
    }
    let gpu_only = env();
    let o = run_yaml(&gpu_only, &yaml, 4, CancellationToken::new()).await;
    assert_eq!(o.status, RunStatus::Succeeded);
    assert_eq!(gpu_only.probe.max_running.load(Ordering::SeqCst), 1, "one GPU: one GPU stage at a time");
    yaml.push_str("  - { id: cpu, kind: test, config: { ms: 120 } }\n");
    let mixed = env();
    let o = run_yaml(&mixed, &yaml, 4, CancellationToken::new()).await;
    assert_eq!(o.status, RunStatus::Succeeded);
    assert_eq!(mixed.probe.max_running.load(Ordering::SeqCst), 2, "a CPU stage runs beside the GPU one");
}

#[tokio::test]
async fn dependencies_run_strictly_in_order() {
    let env = env();
    let o = run_yaml(
        &env,
        r#"
name: p
stages:
  - { id: c, kind: test, needs: [b], config: { ms: 10 } }
  - { id: a, kind: test, config: { ms: 100 } }
  - { id: b, kind: test, needs: [a], config: { ms: 10 } }
"#,
        8,
        CancellationToken::new(),
    )
    .await;
    assert_eq!(o.status, RunStatus::Succeeded);
    // Never more than one at a time: each waits for the previous.
    assert_eq!(env.probe.max_running.load(Ordering::SeqCst), 1);
    let attempts = env.state.attempts(&o.run_id).unwrap();
    let start = |id: &str| attempts.iter().find(|a| a.stage_id == id).unwrap().started_at;
    let end = |id: &str| attempts.iter().find(|a| a.stage_id == id).unwrap().finished_at.unwrap();
    assert!(end("a") <= start("b") && end("b") <= start("c"));
}

#[tokio::test]
async fn cancel_aborts_in_flight_stages_and_publishes_nothing() {
    let env = env();
    let cancel = CancellationToken::new();
    let c2 = cancel.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(400)).await;
        c2.cancel();
    });
    let started = Instant::now();
    let o = run_yaml(
        &env,
        r#"
name: p
stages:
  - { id: produce, kind: sql, outputs: [numbers], config: { sql: "SELECT 1 AS n" } }
  - { id: slow, kind: test, config: { ms: 60000 } }
  - { id: later, kind: noop, needs: [slow] }
"#,
        4,
        cancel,
    )
    .await;
    assert_eq!(o.status, RunStatus::Cancelled);
    assert!(started.elapsed() < Duration::from_secs(10));
    assert_eq!(stage(&o, "slow").status, AttemptStatus::Cancelled);
    assert_eq!(stage(&o, "later").status, AttemptStatus::Cancelled);
    assert!(o.published.is_empty());
    let lake = restock::storage::Lake::open("file://./lake", &env.base).unwrap();
    assert!(restock::storage::delta::list_tables(&lake).await.unwrap().is_empty(), "nothing published");
    assert_eq!(env.state.get_run(&o.run_id).unwrap().status, RunStatus::Cancelled);
}

#[tokio::test]
async fn memory_lake_runs_sql_and_publishes_delta() {
    let env = env();
    let spec = restock::spec::parse(
        &env.base.join("p.yaml"),
        r#"
name: mem
lake: memory://restock-it/
stages:
  - { id: a, kind: sql, outputs: [nums], config: { sql: "SELECT * FROM (VALUES (1), (2), (3)) AS t(n)" } }
  - { id: b, kind: sql, inputs: { nums: nums }, outputs: [total], config: { sql: "SELECT CAST(SUM(n) AS BIGINT) AS s FROM nums" } }
"#
        .to_string(),
    )
    .unwrap();
    let opts = PlanOptions {
        run_id: plan::new_run_id(),
        run_date: chrono::NaiveDate::from_ymd_opt(2026, 11, 29).unwrap(),
        interval: None,
        params: vec![],
        lake_override: None,
        base_dir: env.base.clone(),
    };
    let plan = plan::build(&spec, &opts, &Registry::builtin()).unwrap_or_else(|d| panic!("{d}"));
    let lake = plan.lake.clone();
    let o = run::start(
        Arc::new(plan),
        env.state.clone(),
        RunOptions {
            max_parallel: 2,
            cancel: CancellationToken::new(),
            quiet: true,
            reuse: Default::default(),
            commit: Default::default(),
            cache: None,
            gpus: 1,
        },
    )
    .await
    .unwrap();
    assert_eq!(o.status, RunStatus::Succeeded, "{:?}", o.error);
    let batches = restock::query::run_sql(&lake, "SELECT s FROM total").await.unwrap();
    let s = datafusion::arrow::util::display::array_value_to_string(batches[0].column(0), 0).unwrap();
    assert_eq!(s, "6");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readers_see_the_old_or_the_new_version_never_a_mix() {
    let env = env();
    let yaml = |n: u64| {
        format!(
            r#"
name: p
stages:
  - {{ id: a, kind: sql, outputs: [numbers], config: {{ sql: "SELECT value AS n, value * 2 AS twice FROM generate_series(1, {n})" }} }}
"#
        )
    };
    assert_eq!(run_yaml(&env, &yaml(1000), 1, CancellationToken::new()).await.status, RunStatus::Succeeded);
    let lake = restock::storage::Lake::open("file://./lake", &env.base).unwrap();
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let reader = {
        let (lake, done) = (lake.clone(), done.clone());
        tokio::spawn(async move {
            let mut seen = vec![];
            loop {
                let finished = done.load(Ordering::SeqCst);
                let b = restock::query::run_sql(&lake, "SELECT COUNT(*) FROM numbers").await.unwrap();
                seen.push(datafusion::arrow::util::display::array_value_to_string(b[0].column(0), 0).unwrap());
                if finished {
                    return seen;
                }
            }
        })
    };
    let o = run_yaml(&env, &yaml(3_000_000), 1, CancellationToken::new()).await;
    assert_eq!(o.status, RunStatus::Succeeded);
    done.store(true, Ordering::SeqCst);
    let seen = reader.await.unwrap();
    assert!(seen.len() >= 2, "the reader polled during the run: {seen:?}");
    assert!(seen.iter().all(|c| c == "1000" || c == "3000000"), "a reader saw a partial table: {seen:?}");
    assert_eq!(seen.last().unwrap(), "3000000");
}

/// A stage that panics (as libtorch errors reach Rust through tch) is a failed attempt with the
/// panic's message; its dependents are skipped, independent stages finish, and the run ends
/// `failed` instead of staying `running`.
#[tokio::test]
async fn a_panicking_stage_fails_its_attempt_and_the_run_still_ends() {
    let env = env();
    let o = run_yaml(
        &env,
        r#"
name: p
stages:
  - { id: boom, kind: test, config: { panic: true } }
  - { id: after, kind: noop, needs: [boom] }
  - { id: other, kind: test, config: { ms: 50 } }
"#,
        4,
        CancellationToken::new(),
    )
    .await;
    assert_eq!(o.status, RunStatus::Failed);
    let boom = stage(&o, "boom");
    assert_eq!(boom.status, AttemptStatus::Failed);
    assert!(boom.error.as_deref().unwrap_or_default().contains("stage panicked: C++ exception: shape mismatch"), "{boom:?}");
    assert_eq!(stage(&o, "after").status, AttemptStatus::Skipped);
    assert_eq!(stage(&o, "other").status, AttemptStatus::Succeeded);
    assert_eq!(env.state.get_run(&o.run_id).unwrap().status, RunStatus::Failed);
    let attempts = env.state.attempts(&o.run_id).unwrap();
    assert!(attempts.iter().all(|a| a.status != AttemptStatus::Running), "{attempts:?}");
}

/// A stage that computes without yielding (here `noop` with `busy:`, as a training loop would)
/// is still stopped by its `timeout:` and by Ctrl-C: the work runs on a blocking thread and
/// checks the stage's cancellation token between steps. The runtime is dropped inside the
/// timing, and dropping it waits for blocking threads, so a thread that kept spinning would
/// show up as a 60 s test.
#[test]
fn a_spinning_stage_is_stopped_by_timeout_and_by_ctrl_c() {
    for by_signal in [false, true] {
        let env = env();
        let started = Instant::now();
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let cancel = CancellationToken::new();
        if by_signal {
            let c2 = cancel.clone();
            rt.spawn(async move {
                tokio::time::sleep(Duration::from_millis(300)).await;
                c2.cancel();
            });
        }
        let timeout = if by_signal { "" } else { "timeout: 300ms, " };
        let yaml = format!("name: p\nstages:\n  - {{ id: spin, kind: noop, {timeout}config: {{ busy: 60s }} }}\n");
        let o = rt.block_on(run_yaml(&env, &yaml, 1, cancel));
        drop(rt);
        let want = if by_signal { AttemptStatus::Cancelled } else { AttemptStatus::TimedOut };
        assert_eq!(stage(&o, "spin").status, want);
        assert!(started.elapsed() < Duration::from_secs(5), "{want:?} took {:?}", started.elapsed());
    }
}

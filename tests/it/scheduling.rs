//! `restock serve`, `backfill` and crash recovery, end to end with the real binary. Cron
//! expressions with seconds keep each test to seconds; the scheduler's decisions themselves are
//! unit-tested with an injected clock (`src/daemon/core.rs`).
use std::io::{BufRead, Read, Write};
use std::net::TcpListener;
use std::process::{Child, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use crate::common::{Project, stdout};

/// A daemon whose stderr is collected as it comes.
struct Daemon {
    child: Child,
    log: Arc<Mutex<String>>,
}

impl Daemon {
    fn start(p: &Project, extra: &[&str]) -> Self {
        let mut args = vec!["serve", "--pipelines", "pipelines", "--rescan", "1s", "--grace", "10s"];
        args.extend_from_slice(extra);
        let mut child = p
            .std_cmd(&args)
            .env("RESTOCK_NOTIFY_BACKOFF", "50ms")
            .env("RESTOCK_HEARTBEAT", "500ms")
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn restock serve");
        let log = Arc::new(Mutex::new(String::new()));
        let (err, sink) = (child.stderr.take().expect("stderr"), log.clone());
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(err).lines().map_while(Result::ok) {
                let mut l = sink.lock().unwrap();
                l.push_str(&line);
                l.push('\n');
            }
        });
        Self { child, log }
    }

    fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// Wait until the log contains `needle`.
    fn wait_for(&self, needle: &str, within: Duration) {
        eventually(within, || self.log().contains(needle), || format!("`{needle}` never appeared in the daemon's log:\n{}", self.log()));
    }

    fn http_get(&self, path: &str) -> String {
        self.wait_for("/healthz on http://", Duration::from_secs(30));
        let log = self.log();
        let addr = log.split("on http://").nth(1).and_then(|r| r.split_whitespace().next()).expect("address").to_string();
        let mut s = std::net::TcpStream::connect(&addr).expect("connect");
        write!(s, "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").unwrap();
        let mut body = String::new();
        s.read_to_string(&mut body).unwrap();
        body
    }

    fn terminate(mut self) -> (Option<i32>, String) {
        assert!(std::process::Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status().unwrap().success());
        let (child, log) = (&mut self.child, &self.log);
        let mut status = None;
        let why = || format!("serve did not stop after SIGTERM:\n{}", log.lock().unwrap());
        eventually(
            Duration::from_secs(30),
            || {
                status = child.try_wait().unwrap();
                status.is_some()
            },
            why,
        );
        std::thread::sleep(Duration::from_millis(100));
        (status.and_then(|s| s.code()), self.log())
    }
}

/// A webhook receiver on 127.0.0.1 that refuses its first request (HTTP 500) to exercise the
/// retry, then accepts; bodies of accepted requests come out of the channel.
fn webhook_receiver() -> (String, mpsc::Receiver<String>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for (n, stream) in listener.incoming().enumerate() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = std::io::BufReader::new(stream.try_clone().unwrap());
            let mut length = 0;
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    length = v.trim().parse().unwrap_or(0);
                }
            }
            let mut body = vec![0; length];
            let _ = reader.read_exact(&mut body);
            let status = if n == 0 { "500 Internal Server Error" } else { "200 OK" };
            let _ = write!(stream, "HTTP/1.1 {status}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
            if n > 0 {
                let _ = tx.send(String::from_utf8_lossy(&body).into_owned());
            }
        }
    });
    (url, rx)
}

/// Poll `done` until it holds; fail with `why` once `within` has passed.
fn eventually(within: Duration, mut done: impl FnMut() -> bool, why: impl Fn() -> String) {
    let deadline = Instant::now() + within;
    while !done() {
        assert!(Instant::now() < deadline, "{}", why());
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn count_runs(p: &Project, pipeline: &str, status: &str) -> usize {
    stdout(&p.run(&["runs", "--limit", "1000", "--pipeline", pipeline])).lines().filter(|l| l.contains(status)).count()
}

#[test]
fn serve_fires_notifies_reloads_and_drains() {
    let p = Project::empty();
    let (hook, bodies) = webhook_receiver();
    let tick = format!(
        "name: tick\nschedule:\n  cron: \"*/2 * * * * *\"\nnotify:\n  - url: {hook}\n    on: [success]\nstages:\n  - {{ id: a, kind: noop }}\n"
    );
    p.write("pipelines/tick.yaml", &tick);
    let d = Daemon::start(&p, &["--listen", "127.0.0.1:0"]);

    // A run fires, succeeds, and the webhook gets its summary (after one refused attempt).
    let body = bodies.recv_timeout(Duration::from_secs(60)).unwrap_or_else(|_| panic!("no webhook:\n{}", d.log()));
    let summary: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(summary["event"], "success");
    assert_eq!(summary["pipeline"], "tick");
    assert_eq!(summary["status"], "succeeded");
    assert_eq!(summary["stages"][0]["id"], "a");
    let run_id = summary["run_id"].as_str().unwrap().to_string();
    let show = p.ok(&["show", &run_id]);
    assert!(show.contains("trigger scheduled"), "{show}");
    // Intervals are two seconds, end on an even second, and the run covers exactly one.
    let start = summary["interval_start"].as_str().unwrap();
    let end = summary["interval_end"].as_str().unwrap();
    let secs = |t: &str| chrono::DateTime::parse_from_rfc3339(t).unwrap().timestamp();
    assert_eq!(secs(end) - secs(start), 2);
    assert_eq!(secs(end) % 2, 0);

    let metrics = d.http_get("/metrics");
    assert!(metrics.contains("restock_runs_total{pipeline=\"tick\",status=\"succeeded\"}"), "{metrics}");
    assert!(metrics.contains("restock_stage_duration_seconds_count{pipeline=\"tick\",stage=\"a\"}"), "{metrics}");
    let health = d.http_get("/healthz");
    assert!(health.starts_with("HTTP/1.1 200") && health.contains("\"next_fire\""), "{health}");

    // A broken edit is reported with file:line:column; the last good version keeps firing.
    p.write("pipelines/tick.yaml", &tick.replace("  cron:", "  cronn:"));
    d.wait_for("tick.yaml:3:3", Duration::from_secs(30));
    let before = count_runs(&p, "tick", "succeeded");
    eventually(
        Duration::from_secs(30),
        || count_runs(&p, "tick", "succeeded") > before,
        || format!("the last good version stopped firing:\n{}", d.log()),
    );
    assert!(d.http_get("/healthz").contains("unknown key `cronn`"));
    // A valid edit is reloaded: the error is gone and the new schedule is in force.
    p.write("pipelines/tick.yaml", &tick.replace("*/2 * * * * *", "*/3 * * * * *"));
    d.wait_for("reloaded pipelines/tick.yaml (pipeline `tick`, `*/3 * * * * *` in UTC)", Duration::from_secs(30));
    let health = d.http_get("/healthz");
    assert!(health.contains("\"error\": null"), "{health}");

    let (code, log) = d.terminate();
    assert_eq!(code, Some(0), "{log}");
    assert!(log.contains("shutting down: no new runs"), "{log}");
    assert_eq!(count_runs(&p, "tick", "running"), 0, "no run is left `running`");
}

#[test]
fn a_killed_run_is_marked_interrupted_and_resume_finishes_it() {
    let p = Project::empty();
    // Busy long enough that the run is still going when it is killed, even on a loaded machine
    // where `restock runs` itself takes seconds to answer (resume runs it once more).
    p.write("slow.yaml", "name: slow\nstages:\n  - { id: a, kind: noop, outputs: [], config: { busy: 8s } }\n");
    let mut child = p.std_cmd(&["run", "slow.yaml"]).env("RESTOCK_HEARTBEAT", "200ms").spawn().unwrap();
    eventually(Duration::from_secs(60), || stdout(&p.run(&["runs"])).contains("running"), || "the run never started".into());
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let id = p.last_run_id();
    assert!(p.ok(&["runs"]).contains("interrupted (process gone)"));
    assert!(p.ok(&["show", &id]).contains("interrupted: its process"), "{}", p.ok(&["show", &id]));
    // The next run on this state database records it as interrupted.
    p.write("other.yaml", "name: other\nstages:\n  - { id: a, kind: noop }\n");
    let (_, out) = p.loud(&["run", "other.yaml"]);
    assert!(out.contains(&format!("run {id} of pipeline `slow` was interrupted")), "{out}");
    assert!(p.ok(&["show", &id]).contains("status interrupted"));
    p.ok(&["resume", &id]);
    assert!(p.ok(&["show", &id]).contains("status succeeded"));
}

#[test]
fn serve_resumes_a_scheduled_run_its_killed_predecessor_left() {
    let p = Project::empty();
    p.write(
        "pipelines/slow.yaml",
        "name: slow\nschedule:\n  cron: \"*/2 * * * * *\"\nstages:\n  - { id: a, kind: noop, config: { busy: 3s } }\n",
    );
    let mut first = Daemon::start(&p, &[]);
    first.wait_for("started for", Duration::from_secs(60));
    // Its stage is running (the run is recorded before its stages start).
    eventually(Duration::from_secs(60), || count_runs(&p, "slow", "running") > 0, || format!("no run was recorded:\n{}", first.log()));
    first.child.kill().unwrap(); // SIGKILL: the run in progress dies with it
    first.child.wait().unwrap();
    let killed = p.last_run_id();
    let second = Daemon::start(&p, &[]);
    second.wait_for(&format!("resuming interrupted run {killed}"), Duration::from_secs(60));
    eventually(
        Duration::from_secs(60),
        || p.ok(&["show", &killed]).contains("status succeeded"),
        || format!("the resumed run never finished:\n{}", second.log()),
    );
    let (code, log) = second.terminate();
    assert_eq!(code, Some(0), "{log}");
    // Whatever the shutdown cut off is recorded as interrupted, for the next start to resume.
    assert_eq!(count_runs(&p, "slow", "running"), 0, "{}", p.ok(&["runs"]));
}

#[test]
fn backfill_runs_each_interval_once_across_a_dst_change_and_continues() {
    let p = Project::empty();
    p.write(
        "pipelines/daily.yaml",
        r#"name: daily
schedule: { cron: "0 2 * * *", timezone: Europe/Berlin }
stages:
  - id: mark
    kind: sql
    outputs: [marks]
    config: { sql: "SELECT '{{ run_date }}' AS run_date, '{{ interval_start }}' AS s, '{{ interval_end }}' AS e" }
"#,
    );
    let dry = p.ok(&["backfill", "daily", "--from", "2026-03-27", "--to", "2026-03-29", "--dry-run"]);
    assert!(dry.contains("3 interval(s)") && dry.contains("3 to run"), "{dry}");
    // The spring-forward day: 02:00 does not exist, so that interval ends at 03:00 (23 hours).
    assert!(dry.contains("[2026-03-28 02:00, 2026-03-29 03:00)"), "{dry}");
    assert_eq!(count_runs(&p, "daily", "backfill"), 0, "a dry run runs nothing");

    p.ok(&["backfill", "daily", "--from", "2026-03-27", "--to", "2026-03-28"]);
    assert_eq!(count_runs(&p, "daily", "succeeded"), 2);
    // Started again over a wider range, it runs only what is missing.
    let again = p.ok(&["backfill", "daily", "--from", "2026-03-27", "--to", "2026-03-29"]);
    assert!(again.contains("1 to run"), "{again}");
    assert_eq!(count_runs(&p, "daily", "succeeded"), 3);
    assert_eq!(p.query("SELECT run_date, s, e FROM marks"), vec!["2026-03-29,2026-03-29T03:00:00,2026-03-30T02:00:00"]);
    let all = p.ok(&["backfill", "daily", "--from", "2026-03-27", "--to", "2026-03-29", "--reprocess", "all", "--dry-run"]);
    assert!(all.contains("3 to run") && all.contains("succeeded in run"), "{all}");

    let reversed = p.fails(&["backfill", "daily", "--from", "2026-03-29", "--to", "2026-03-27"], 1);
    assert!(reversed.contains("--from 2026-03-29 is after --to 2026-03-27"), "{reversed}");
    let future = p.fails(&["backfill", "daily", "--from", "2099-01-01", "--to", "2099-01-02"], 1);
    assert!(future.contains("is in the future"), "{future}");
    p.write("pipelines/plain.yaml", "name: plain\nstages:\n  - { id: a, kind: noop }\n");
    let unscheduled = p.fails(&["backfill", "plain", "--from", "2026-03-27", "--to", "2026-03-28"], 1);
    assert!(unscheduled.contains("has no schedule"), "{unscheduled}");
}

#[test]
fn bad_schedules_are_reported_with_line_and_column() {
    let p = Project::empty();
    p.write("cron.yaml", "name: c\nschedule:\n  cron: \"61 * * * *\"\nstages: []\n");
    let err = p.fails(&["validate", "cron.yaml"], 2);
    assert!(err.contains("cron.yaml:3:") && err.contains("invalid cron expression"), "{err}");
    p.write("tz.yaml", "name: t\nschedule:\n  cron: \"0 2 * * *\"\n  timezone: Europe/Berln\nstages: []\n");
    let err = p.fails(&["validate", "tz.yaml"], 2);
    assert!(err.contains("tz.yaml:4:") && err.contains("unknown IANA time zone") && err.contains("Europe/Berlin"), "{err}");
    p.write("runs.yaml", "name: r\nschedule:\n  cron: \"0 2 * * *\"\n  max_active_runs: 0\nstages: []\n");
    let err = p.fails(&["validate", "runs.yaml"], 2);
    assert!(err.contains("runs.yaml:4:") && err.contains("at least 1"), "{err}");
    p.write("hook.yaml", "name: h\nnotify:\n  - url: ftp://example.com/x\nstages: []\n");
    let err = p.fails(&["validate", "hook.yaml"], 2);
    assert!(err.contains("hook.yaml:3:") && err.contains("only http and https"), "{err}");
}

#[test]
fn wait_for_waits_without_a_slot_and_times_out_naming_what_is_missing() {
    let p = Project::empty();
    p.write(
        "sensor.yaml",
        r#"name: sensor
stages:
  - id: landed
    kind: wait_for
    config: { path: "raw/sales/date={{ run_date }}/", poke: 100ms, timeout: 60s }
  - { id: other, kind: noop, config: { busy: 500ms } }
  - { id: after, kind: noop, needs: [landed] }
"#,
    );
    let child = p.std_cmd(&["run", "sensor.yaml", "--date", "2026-12-01", "--max-parallel", "1"]).spawn().unwrap();
    // With one slot, `other` still runs while the sensor waits.
    let other_ran = || {
        let Some(id) = p.try_last_run_id() else { return false };
        let show = stdout(&p.run(&["show", &id]));
        let ran = crate::common::stage_rows(&show, "other").iter().any(|l| l.contains("succeeded"));
        if ran {
            assert!(crate::common::stage_rows(&show, "landed").iter().any(|l| l.contains("running")), "{show}");
        }
        ran
    };
    eventually(Duration::from_secs(60), other_ran, || "`other` never ran while the sensor waited".into());
    p.write("lake/raw/sales/date=2026-12-01/part-0.parquet", "not read");
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    p.write(
        "late.yaml",
        "name: late\nstages:\n  - { id: landed, kind: wait_for, config: { path: raw/never/, poke: 100ms, timeout: 300ms } }\n",
    );
    p.fails(&["run", "late.yaml"], 1);
    let show = p.ok(&["show", &p.last_run_id()]);
    assert!(show.contains("waited 300ms for 1 object(s) under `raw/never/`"), "{show}");
}

#[test]
fn sla_misses_are_notified_and_a_deleted_file_leaves_the_others_scheduled() {
    let p = Project::empty();
    let (hook, bodies) = webhook_receiver();
    p.write(
        "pipelines/slow.yaml",
        &format!(
            "name: slow\nschedule:\n  cron: \"*/2 * * * * *\"\n  sla: 1s\nnotify:\n  - url: {hook}\nstages:\n  - {{ id: a, kind: noop, config: {{ busy: 3s }} }}\n"
        ),
    );
    p.write("pipelines/quick.yaml", "name: quick\nschedule:\n  cron: \"*/2 * * * * *\"\nstages:\n  - { id: a, kind: noop }\n");
    let d = Daemon::start(&p, &[]);
    // The default events are failure and sla_miss: the slow run is still going 1 s after its interval.
    let body = bodies.recv_timeout(Duration::from_secs(60)).unwrap_or_else(|_| panic!("no SLA miss:\n{}", d.log()));
    let miss: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(miss["event"], "sla_miss", "{body}");
    assert_eq!(miss["pipeline"], "slow");

    std::fs::remove_file(p.file("pipelines/slow.yaml")).unwrap();
    d.wait_for("slow.yaml was deleted", Duration::from_secs(30));
    let before = count_runs(&p, "quick", "succeeded");
    eventually(
        Duration::from_secs(30),
        || count_runs(&p, "quick", "succeeded") > before,
        || format!("the other pipeline stopped firing:\n{}", d.log()),
    );
    let (code, log) = d.terminate();
    assert_eq!(code, Some(0), "{log}");
}

/// The status column of `stage` in `restock show` output.
fn stage_status(show: &str, stage: &str) -> String {
    let rows = crate::common::stage_rows(show, stage);
    let row = rows.last().unwrap_or_else(|| panic!("no row for {stage}:\n{show}"));
    row.split('┆').nth(2).unwrap_or_default().trim().to_string()
}

#[test]
fn unchanged_stages_reuse_their_last_outputs_and_changed_inputs_rerun() {
    let p = Project::with_demo();
    p.ok(&["run", "pipelines/nightly.yaml", "--date", "2026-10-27"]);
    let first = p.last_run_id();
    let versions = |table: &str| std::fs::read_dir(p.file(&format!("lake/tables/{table}/_delta_log"))).unwrap().count();
    let forecasts_before = versions("forecasts");

    // Same raw data, same pipeline: every stage is served from the first run, nothing republished.
    p.ok(&["run", "pipelines/nightly.yaml", "--date", "2026-10-27"]);
    let show = p.ok(&["show", &p.last_run_id()]);
    for stage in ["clean_sales", "demand_daily", "product_text", "forecast_baseline"] {
        assert_eq!(stage_status(&show, stage), "unchanged", "{show}");
    }
    assert!(show.contains(&format!("skipped: inputs unchanged since run {first}")), "{show}");
    assert_eq!(versions("forecasts"), forecasts_before, "an identical table is not published again");
    let rows = p.query("SELECT COUNT(*) FROM forecasts");

    // New reviews change product_text (and what reads it), not the sales cleaning.
    let reviews = std::fs::read_dir(p.file("lake/raw/reviews")).unwrap().next().unwrap().unwrap().path();
    let copy = reviews.with_file_name("extra-copy.parquet");
    if reviews.is_dir() {
        panic!("expected a file under raw/reviews: {}", reviews.display());
    }
    std::fs::copy(&reviews, &copy).unwrap();
    p.ok(&["run", "pipelines/nightly.yaml", "--date", "2026-10-27"]);
    let show = p.ok(&["show", &p.last_run_id()]);
    assert_eq!(stage_status(&show, "product_text"), "succeeded", "{show}");
    assert_eq!(stage_status(&show, "clean_sales"), "unchanged", "{show}");
    assert_eq!(stage_status(&show, "demand_daily"), "unchanged", "{show}");
    assert_eq!(p.query("SELECT COUNT(*) FROM forecasts"), rows);

    // --force runs everything.
    p.ok(&["run", "pipelines/nightly.yaml", "--date", "2026-10-27", "--force"]);
    let show = p.ok(&["show", &p.last_run_id()]);
    assert!(!show.contains("unchanged"), "{show}");
}

#[test]
fn a_state_database_locked_by_another_process_is_reported_and_serving_goes_on() {
    let p = Project::empty();
    p.write("pipelines/tick.yaml", "name: tick\nschedule:\n  cron: \"*/2 * * * * *\"\nstages:\n  - { id: a, kind: noop }\n");
    let d = Daemon::start(&p, &[]);
    eventually(Duration::from_secs(60), || count_runs(&p, "tick", "succeeded") > 0, || format!("no first run:\n{}", d.log()));
    // Another process takes the write lock for longer than SQLite's 10 s busy wait.
    let db = rusqlite::Connection::open(p.file(".restock/state.db")).unwrap();
    db.execute_batch("BEGIN EXCLUSIVE").unwrap();
    d.wait_for("another process held the state database locked", Duration::from_secs(40));
    db.execute_batch("COMMIT").unwrap();
    drop(db);
    let before = count_runs(&p, "tick", "succeeded");
    eventually(
        Duration::from_secs(40),
        || count_runs(&p, "tick", "succeeded") > before,
        || format!("serving did not go on after the lock:\n{}", d.log()),
    );
    let (code, log) = d.terminate();
    assert_eq!(code, Some(0), "{log}");
    assert_eq!(count_runs(&p, "tick", "running"), 0, "no run is left `running`:\n{}", p.ok(&["runs"]));
}

#[test]
fn an_interrupted_backfill_started_again_continues_where_it_stopped() {
    let p = Project::empty();
    p.write(
        "pipelines/daily.yaml",
        // Long enough that the poll below sees the second interval running on a loaded machine.
        "name: daily\nschedule: { cron: \"0 2 * * *\" }\nstages:\n  - { id: a, kind: noop, config: { busy: 5s } }\n",
    );
    // --force: the stage is the same every day, so the cache would otherwise serve days 2 to 4.
    let args = ["backfill", "daily", "--from", "2026-03-01", "--to", "2026-03-04", "--force"];
    let child = p.std_cmd(&args).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    // Stop it once the first interval has succeeded and the second is running.
    eventually(
        Duration::from_secs(60),
        || count_runs(&p, "daily", "succeeded") >= 1 && count_runs(&p, "daily", "running") >= 1,
        || format!("the backfill never got going:\n{}", p.ok(&["runs"])),
    );
    assert!(std::process::Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap().success());
    let out = child.wait_with_output().unwrap();
    assert!(!out.status.success(), "an interrupted backfill does not report success");
    assert_eq!(count_runs(&p, "daily", "succeeded"), 1, "{}", p.ok(&["runs"]));
    assert_eq!(count_runs(&p, "daily", "cancelled"), 1, "{}", p.ok(&["runs"]));

    let dry = p.ok(&[&args[..], &["--dry-run"]].concat());
    assert!(dry.contains("3 to run") && dry.contains("did not finish (cancelled)"), "{dry}");
    p.ok(&args);
    assert_eq!(count_runs(&p, "daily", "succeeded"), 4, "the first interval is not run twice:\n{}", p.ok(&["runs"]));
}

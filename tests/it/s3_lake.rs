//! A lake on S3: the demo feed is written there, the nightly pipeline reads it and publishes its
//! Delta tables there, and `restock query` reads them back. The S3 server is moto (a local S3
//! implementation, installed into the venv by scripts/test), spoken to over HTTP exactly as
//! object_store speaks to AWS.
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::{Project, stderr};

struct S3Server {
    child: Child,
    port: u16,
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl S3Server {
    fn start() -> Self {
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let child = Command::new("python3")
            .args(["-m", "moto.server", "-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("python3 on PATH");
        let mut server = Self { child, port };
        let deadline = Instant::now() + Duration::from_secs(60);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Ok(Some(status)) = server.child.try_wait() {
                panic!("moto server exited ({status}): install it with `pip install 'moto[server]'` (scripts/test does)");
            }
            assert!(Instant::now() < deadline, "moto server did not start on port {port}");
            std::thread::sleep(Duration::from_millis(200));
        }
        server.create_bucket("restock");
        server
    }

    /// Buckets are made by the cloud's own tooling, not by restock: one raw S3 call here.
    fn create_bucket(&mut self, bucket: &str) {
        let mut s = TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        write!(s, "PUT /{bucket} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n", self.port).unwrap();
        let mut reply = String::new();
        s.read_to_string(&mut reply).unwrap();
        assert!(reply.starts_with("HTTP/1.1 200"), "create bucket: {reply}");
    }

    fn env(&self, cmd: &mut assert_cmd::Command) {
        cmd.env("AWS_ENDPOINT", format!("http://127.0.0.1:{}", self.port))
            .env("AWS_ALLOW_HTTP", "true")
            .env("AWS_ACCESS_KEY_ID", "restock-test")
            .env("AWS_SECRET_ACCESS_KEY", "restock-test")
            .env("AWS_REGION", "us-east-1");
    }
}

#[test]
fn nightly_pipeline_on_an_s3_lake_publishes_delta_tables_there() {
    let s3 = S3Server::start();
    let p = Project::with_pipelines();
    let lake = "s3://restock/demo/";
    let run = |args: &[&str]| {
        let mut cmd = p.cmd(args);
        s3.env(&mut cmd);
        let out = cmd.output().unwrap();
        assert!(out.status.success(), "restock {args:?}:\n{}", stderr(&out));
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let demo = ["demo", "--skus", "8", "--locations", "2", "--days", "90", "--start", "2026-07-01", "--lake", lake];
    run(&demo);
    let count = run(&["query", "--lake", lake, "--format", "csv", "SELECT COUNT(*) AS n, COUNT(DISTINCT sku_id) AS skus FROM forecasts"]);
    assert_eq!(count.lines().nth(1), Some("448,8"), "8 SKUs x 2 locations x 28 days:\n{count}");

    let demand = run(&["query", "--lake", lake, "--format", "csv", "SELECT COUNT(*) FROM demand_daily"]);
    assert_eq!(demand.lines().nth(1), Some("1440"), "8 SKUs x 2 locations x 90 days:\n{demand}");

    // The weekly plan ran after the nightly pipeline, on its forecasts, in the bucket.
    let plan = run(&["query", "--lake", lake, "--format", "csv", "SELECT COUNT(*) FROM policies"]);
    assert_eq!(plan.lines().nth(1), Some("16"), "8 SKUs x 2 locations:\n{plan}");

    // A second demo on the same raw data reuses every stage's outputs from the bucket's stage
    // cache and publishes nothing new; with --force it commits version 1 next to version 0 (the
    // last run is the weekly plan's).
    run(&demo);
    let show = run(&["show", &p.last_run_id()]);
    assert!(show.contains("skipped: inputs unchanged since run") && !show.contains("policies v1"), "{show}");
    run(&[&demo[..], &["--force"]].concat());
    let show = run(&["show", &p.last_run_id()]);
    assert!(show.contains("policies v1") && show.contains("allocation_summary v1"), "{show}");
}

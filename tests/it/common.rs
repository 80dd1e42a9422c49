//! Helpers: a throw-away project directory with its own lake and state, and the CLI binary.
use std::path::{Path, PathBuf};
use std::process::Output;

use assert_cmd::Command;
use tempfile::TempDir;

pub const REPO: &str = env!("CARGO_MANIFEST_DIR");

pub struct Project {
    pub dir: TempDir,
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for entry in std::fs::read_dir(from).expect("read repo folder") {
        let entry = entry.expect("entry");
        if entry.file_type().expect("file type").is_dir() {
            copy_dir(&entry.path(), &to.join(entry.file_name()));
        } else {
            std::fs::copy(entry.path(), to.join(entry.file_name())).expect("copy");
        }
    }
}

impl Project {
    /// An empty project directory.
    pub fn empty() -> Self {
        Self { dir: tempfile::Builder::new().prefix("restock-it-").tempdir().expect("temp dir") }
    }

    /// A project with the repo's pipelines/ and sql/ and a small generated demo lake.
    pub fn with_demo() -> Self {
        let p = Self::with_pipelines();
        p.ok(&["demo", "--no-run", "--skus", "12", "--locations", "2", "--days", "120", "--start", "2026-07-01"]);
        p
    }

    /// A project with the repo's pipelines/, sql/ and models/ (the shipped checkpoint the
    /// nightly fine-tunes), and no lake yet.
    pub fn with_pipelines() -> Self {
        let p = Self::empty();
        for folder in ["pipelines", "sql", "models"] {
            copy_dir(&Path::new(REPO).join(folder), &p.path().join(folder));
        }
        p
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn file(&self, rel: &str) -> PathBuf {
        self.path().join(rel)
    }

    pub fn write(&self, rel: &str, text: &str) -> PathBuf {
        let p = self.file(rel);
        std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        std::fs::write(&p, text).expect("write");
        p
    }

    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::cargo_bin("restock").expect("binary built");
        c.current_dir(self.path()).args(["--quiet"]).args(args).env_remove("RESTOCK_LAKE").env_remove("RESTOCK_STATE");
        c
    }

    /// The same command as [`Project::cmd`], as a std `Command` (to spawn and signal it).
    pub fn std_cmd(&self, args: &[&str]) -> std::process::Command {
        let mut c = std::process::Command::new(assert_cmd::cargo::cargo_bin("restock"));
        c.current_dir(self.path()).args(["--quiet"]).args(args).env_remove("RESTOCK_LAKE").env_remove("RESTOCK_STATE");
        c
    }

    /// Run without `--quiet`: stdout and stderr together, as a user sees them (stage warnings).
    pub fn loud(&self, args: &[&str]) -> (bool, String) {
        let mut c = Command::cargo_bin("restock").expect("binary built");
        let out = c.current_dir(self.path()).args(args).env_remove("RESTOCK_LAKE").env_remove("RESTOCK_STATE").output().expect("run");
        (out.status.success(), format!("{}{}", stdout(&out), stderr(&out)))
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.cmd(args).output().expect("run restock")
    }

    /// Run and require success; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(out.status.success(), "restock {args:?} failed ({:?}):\n{}\n{}", out.status.code(), stdout(&out), stderr(&out));
        stdout(&out)
    }

    /// Run and require exit code `code`; returns stderr.
    pub fn fails(&self, args: &[&str], code: i32) -> String {
        let out = self.run(args);
        assert_eq!(out.status.code(), Some(code), "restock {args:?}: stdout:\n{}\nstderr:\n{}", stdout(&out), stderr(&out));
        stderr(&out)
    }

    /// Write `yaml` to `file` and require `restock validate` to refuse it (exit 2) with a
    /// diagnostic at `file:` containing `expected`.
    pub fn invalid(&self, file: &str, yaml: &str, expected: &str) {
        self.write(file, yaml);
        let err = self.fails(&["validate", file], 2);
        assert!(err.contains(&format!("{file}:")) && err.contains(expected), "{expected}: {err}");
    }

    /// `restock query` as CSV rows (header dropped).
    pub fn query(&self, sql: &str) -> Vec<String> {
        let out = self.ok(&["query", "--format", "csv", sql]);
        out.lines().skip(1).map(str::to_string).collect()
    }

    /// Id of the most recent run, if there is one.
    pub fn try_last_run_id(&self) -> Option<String> {
        // Run ids look like 20261130-020021-b56c.
        let is_id =
            |w: &str| w.len() == 20 && w.as_bytes()[8] == b'-' && w.as_bytes()[15] == b'-' && w[..8].bytes().all(|b| b.is_ascii_digit());
        stdout(&self.run(&["runs", "--limit", "1"])).split_whitespace().find(|w| is_id(w)).map(str::to_string)
    }

    /// Id of the most recent run.
    pub fn last_run_id(&self) -> String {
        self.try_last_run_id().unwrap_or_else(|| panic!("no run recorded:\n{}", self.ok(&["runs"])))
    }
}

/// Write one batch as a Parquet file at `rel` inside the project.
pub fn write_parquet(p: &Project, rel: &str, batch: datafusion::arrow::array::RecordBatch) {
    let path = p.file(rel);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let mut w = parquet::arrow::ArrowWriter::try_new(std::fs::File::create(path).unwrap(), batch.schema(), None).unwrap();
    w.write(&batch).unwrap();
    w.close().unwrap();
}

/// The attempt rows of `stage` in `restock show` output.
pub fn stage_rows<'a>(show: &'a str, stage: &str) -> Vec<&'a str> {
    let prefix = format!("│ {stage} ");
    show.lines().filter(|l| l.starts_with(&prefix)).collect()
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

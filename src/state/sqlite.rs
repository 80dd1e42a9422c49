//! SQLite run history (`.restock/state.db` by default). WAL mode so `restock runs` can read
//! while a run writes.
use std::path::Path;
use std::sync::Mutex;

use anyhow::{Context, Result, bail};
use chrono::{DateTime, Utc};
use rusqlite::{Connection, OptionalExtension, params};

use super::*;

pub struct SqliteStore {
    conn: Mutex<Connection>,
    /// For messages.
    path: std::path::PathBuf,
}

const SCHEMA_VERSION: i64 = 2;

const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS runs (
    run_id         TEXT PRIMARY KEY,
    pipeline       TEXT NOT NULL,
    pipeline_path  TEXT NOT NULL,
    spec_text      TEXT NOT NULL,
    spec_hash      TEXT NOT NULL,
    params         TEXT NOT NULL,
    run_date       TEXT NOT NULL,
    interval_start TEXT NOT NULL,
    interval_end   TEXT NOT NULL,
    lake           TEXT NOT NULL,
    status         TEXT NOT NULL,
    error          TEXT,
    started_at     TEXT NOT NULL,
    finished_at    TEXT
);
CREATE INDEX IF NOT EXISTS runs_by_pipeline ON runs (pipeline, started_at);
CREATE TABLE IF NOT EXISTS stage_attempts (
    run_id      TEXT NOT NULL REFERENCES runs (run_id),
    stage_id    TEXT NOT NULL,
    attempt     INTEGER NOT NULL,
    status      TEXT NOT NULL,
    error       TEXT,
    rows_in     INTEGER,
    rows_out    INTEGER,
    bytes_in    INTEGER,
    bytes_out   INTEGER,
    details     TEXT,
    started_at  TEXT NOT NULL,
    finished_at TEXT,
    PRIMARY KEY (run_id, stage_id, attempt)
);
CREATE TABLE IF NOT EXISTS publications (
    run_id       TEXT NOT NULL REFERENCES runs (run_id),
    table_name   TEXT NOT NULL,
    version      INTEGER NOT NULL,
    published_at TEXT NOT NULL,
    PRIMARY KEY (run_id, table_name)
);
"#;

/// Columns added since schema 1 (added in place to an older database).
const ADDED_RUN_COLUMNS: [(&str, &str); 7] = [
    ("interval_start_utc", "TEXT"),
    ("interval_end_utc", "TEXT"),
    ("trigger", "TEXT NOT NULL DEFAULT 'manual'"),
    ("holder_host", "TEXT"),
    ("holder_pid", "INTEGER"),
    ("holder_start", "INTEGER"),
    ("heartbeat_at", "TEXT"),
];

fn migrate(conn: &Connection) -> Result<()> {
    let have: Vec<String> =
        conn.prepare("SELECT name FROM pragma_table_info('runs')")?.query_map([], |r| r.get(0))?.collect::<rusqlite::Result<_>>()?;
    for (name, ty) in ADDED_RUN_COLUMNS {
        if !have.iter().any(|h| h == name) {
            conn.execute_batch(&format!("ALTER TABLE runs ADD COLUMN {name} {ty}"))?;
        }
    }
    conn.execute_batch("CREATE INDEX IF NOT EXISTS runs_by_interval ON runs (pipeline, interval_end_utc)")?;
    Ok(())
}

fn now() -> String {
    Utc::now().to_rfc3339()
}

/// UTC instants as fixed-width RFC 3339 text, so they sort as strings.
fn utc_text(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

fn ts(s: Option<String>) -> Option<DateTime<Utc>> {
    s.and_then(|s| DateTime::parse_from_rfc3339(&s).ok()).map(|d| d.with_timezone(&Utc))
}

impl SqliteStore {
    pub fn open(path: &Path) -> Result<Self> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        }
        Self::open_rw(path).map_err(|e| explain_open_error(path, e))
    }

    fn open_rw(path: &Path) -> Result<Self> {
        let conn = Connection::open(path)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        // WAL + NORMAL: a commit survives a crash of restock (not of the OS) without an fsync per
        // write, which would otherwise dominate the per-stage overhead.
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        conn.busy_timeout(std::time::Duration::from_secs(10))?;
        check_schema_version(&conn, path)?;
        conn.execute_batch(SCHEMA)?;
        migrate(&conn)?;
        conn.pragma_update(None, "user_version", SCHEMA_VERSION)?;
        Ok(Self { conn: Mutex::new(conn), path: path.to_path_buf() })
    }

    /// For commands that only read history. A database that does not exist yet reads as empty;
    /// one that is not writable (or whose `-wal`/`-shm` files are not) is still readable.
    pub fn open_read_only(path: &Path) -> Result<Self> {
        use rusqlite::OpenFlags;
        if !path.exists() {
            let conn = Connection::open_in_memory()?;
            conn.execute_batch(SCHEMA)?;
            migrate(&conn)?;
            return Ok(Self { conn: Mutex::new(conn), path: path.to_path_buf() });
        }
        let open = |flags: OpenFlags| -> Result<Connection> {
            let conn = Connection::open_with_flags(path, flags | OpenFlags::SQLITE_OPEN_URI | OpenFlags::SQLITE_OPEN_NO_MUTEX)?;
            conn.busy_timeout(std::time::Duration::from_secs(10))?;
            check_schema_version(&conn, path)?;
            conn.query_row("SELECT COUNT(*) FROM runs", [], |_| Ok(()))?;
            Ok(conn)
        };
        let conn = open(OpenFlags::SQLITE_OPEN_READ_ONLY).or_else(|first| {
            // A WAL database needs a writable `-shm` to read; where it is not, read the file as an
            // immutable snapshot instead (what a crashed writer left in `-wal` is not seen).
            let folder_unwritable = path.parent().is_some_and(unwritable);
            if unwritable(&wal_file(path, "-shm")) || unwritable(path) || folder_unwritable {
                let uri = format!("file:{}?immutable=1", path.display());
                let conn = Connection::open_with_flags(uri, OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_URI)?;
                conn.query_row("SELECT COUNT(*) FROM runs", [], |_| Ok(()))?;
                return Ok(conn);
            }
            Err(first)
        });
        let conn = conn.map_err(|e| explain_open_error(path, e))?;
        Ok(Self { conn: Mutex::new(conn), path: path.to_path_buf() })
    }

    /// An error of `what` that names the database, and says so when another process holds it.
    fn failed(&self, what: String) -> impl FnOnce(rusqlite::Error) -> anyhow::Error + '_ {
        move |e| {
            let locked = matches!(e.sqlite_error_code(), Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked));
            let hint = if locked { " (another process held the state database locked for over 10 s)" } else { "" };
            anyhow::anyhow!("state database {}: {what}: {e}{hint}", self.path.display())
        }
    }

    fn conn(&self) -> std::sync::MutexGuard<'_, Connection> {
        // A panic while holding the lock cannot leave SQLite inconsistent (statements are atomic).
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn check_schema_version(conn: &Connection, path: &Path) -> Result<()> {
    let version: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    if version > SCHEMA_VERSION {
        bail!("state database {} was written by a newer restock (schema {version} > {SCHEMA_VERSION})", path.display());
    }
    Ok(())
}

fn wal_file(db: &Path, suffix: &str) -> std::path::PathBuf {
    let mut s = db.as_os_str().to_owned();
    s.push(suffix);
    s.into()
}

/// Whether a file exists and this process may not write it.
fn unwritable(p: &Path) -> bool {
    use std::os::unix::ffi::OsStrExt;
    let Ok(c) = std::ffi::CString::new(p.as_os_str().as_bytes()) else { return false };
    p.exists() && unsafe { libc::access(c.as_ptr(), libc::W_OK) } != 0
}

/// A state-database error that names the file at fault: the database, its `-wal` or `-shm`
/// file, or the folder (SQLite creates the latter two beside the database).
fn explain_open_error(path: &Path, e: anyhow::Error) -> anyhow::Error {
    let mut culprits: Vec<String> = [path.to_path_buf(), wal_file(path, "-wal"), wal_file(path, "-shm")]
        .iter()
        .filter(|f| unwritable(f))
        .map(|f| format!("{} is read-only", f.display()))
        .collect();
    if let Some(dir) = path.parent().filter(|d| unwritable(d)) {
        culprits.push(format!("its folder {} is read-only", dir.display()));
    }
    if culprits.is_empty() {
        return e.context(format!("cannot use state database {}", path.display()));
    }
    anyhow::anyhow!(
        "cannot use state database {}: {} ({e:#}). Fix the permissions, or pass --state sqlite://OTHER.db",
        path.display(),
        culprits.join(", ")
    )
}

fn run_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<(RunRecord, String)> {
    let status: String = r.get("status")?;
    Ok((
        RunRecord {
            info: RunInfo {
                run_id: r.get("run_id")?,
                pipeline: r.get("pipeline")?,
                pipeline_path: r.get("pipeline_path")?,
                spec_text: r.get("spec_text")?,
                spec_hash: r.get("spec_hash")?,
                params_json: r.get("params")?,
                run_date: r.get("run_date")?,
                interval_start: r.get("interval_start")?,
                interval_end: r.get("interval_end")?,
                interval: optional_column(r, "interval_start_utc")?
                    .zip(optional_column(r, "interval_end_utc")?)
                    .and_then(|(s, e)| Some(crate::schedule::Interval { start: ts(Some(s))?, end: ts(Some(e))? })),
                trigger: Trigger::Manual,
                lake: r.get("lake")?,
            },
            status: RunStatus::Running,
            error: r.get("error")?,
            started_at: ts(r.get("started_at")?).unwrap_or_default(),
            finished_at: ts(r.get("finished_at")?),
            heartbeat: heartbeat_from_row(r)?,
        },
        format!("{status}/{}", optional_column(r, "trigger")?.unwrap_or_else(|| "manual".into())),
    ))
}

/// A column that a read-only view of a schema-1 database does not have reads as NULL.
fn optional_column(r: &rusqlite::Row<'_>, name: &str) -> rusqlite::Result<Option<String>> {
    match r.get(name) {
        Err(rusqlite::Error::InvalidColumnName(_)) => Ok(None),
        other => other,
    }
}

fn heartbeat_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Option<Heartbeat>> {
    let Some(host) = optional_column(r, "holder_host")? else { return Ok(None) };
    let at = ts(optional_column(r, "heartbeat_at")?);
    let pid: Option<i64> = r.get("holder_pid")?;
    let start: Option<i64> = r.get("holder_start")?;
    Ok(at
        .zip(pid)
        .map(|(at, pid)| Heartbeat { holder: crate::process::Holder { host, pid: pid as u32, start: start.map(|s| s as u64) }, at }))
}

fn with_status((mut run, status): (RunRecord, String)) -> Result<RunRecord> {
    let (status, trigger) = status.split_once('/').unwrap_or((&status, "manual"));
    run.status = RunStatus::parse(status)?;
    run.info.trigger = Trigger::parse(trigger)?;
    Ok(run)
}

impl StateStore for SqliteStore {
    fn create_run(&self, run: &RunInfo) -> Result<()> {
        // The creating process runs it: its first heartbeat is the run's start.
        let me = crate::process::Holder::current();
        self.conn()
            .execute(
                "INSERT INTO runs (run_id, pipeline, pipeline_path, spec_text, spec_hash, params, run_date,
                               interval_start, interval_end, lake, status, started_at,
                               interval_start_utc, interval_end_utc, trigger,
                               holder_host, holder_pid, holder_start, heartbeat_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, 'running', ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?11)",
                params![
                    run.run_id,
                    run.pipeline,
                    run.pipeline_path,
                    run.spec_text,
                    run.spec_hash,
                    run.params_json,
                    run.run_date,
                    run.interval_start,
                    run.interval_end,
                    run.lake,
                    now(),
                    run.interval.map(|i| utc_text(i.start)),
                    run.interval.map(|i| utc_text(i.end)),
                    run.trigger.as_str(),
                    me.host,
                    me.pid,
                    me.start.map(|s| s as i64)
                ],
            )
            .map_err(self.failed(format!("cannot record run {}", run.run_id)))?;
        Ok(())
    }

    fn set_run_status(&self, run_id: &str, status: RunStatus, error: Option<&str>) -> Result<()> {
        let finished = (status != RunStatus::Running).then(now);
        self.conn()
            .execute(
                "UPDATE runs SET status = ?2, error = ?3, finished_at = ?4 WHERE run_id = ?1",
                params![run_id, status.as_str(), error, finished],
            )
            .map_err(self.failed(format!("cannot record run {run_id} as {status}")))?;
        Ok(())
    }

    fn heartbeat(&self, run_id: &str, holder: &crate::process::Holder) -> Result<()> {
        self.conn()
            .execute(
                "UPDATE runs SET holder_host = ?2, holder_pid = ?3, holder_start = ?4, heartbeat_at = ?5 WHERE run_id = ?1",
                params![run_id, holder.host, holder.pid, holder.start.map(|s| s as i64), now()],
            )
            .map_err(self.failed(format!("cannot record the heartbeat of run {run_id}")))?;
        Ok(())
    }

    fn runs_with_status(&self, status: RunStatus) -> Result<Vec<RunRecord>> {
        let conn = self.conn();
        let read = || -> rusqlite::Result<Vec<(RunRecord, String)>> {
            let mut stmt = conn.prepare("SELECT * FROM runs WHERE status = ?1 ORDER BY started_at, run_id")?;
            stmt.query_map([status.as_str()], run_from_row)?.collect()
        };
        read().map_err(self.failed(format!("cannot read the {status} runs")))?.into_iter().map(with_status).collect()
    }

    fn interval_runs(&self, pipeline: &str) -> Result<Vec<RunRecord>> {
        let conn = self.conn();
        let read = || -> rusqlite::Result<Vec<(RunRecord, String)>> {
            // A schema-1 database opened read-only (not upgraded) has no run with a UTC interval.
            let upgraded: bool =
                conn.query_row("SELECT COUNT(*) > 0 FROM pragma_table_info('runs') WHERE name = 'interval_end_utc'", [], |r| r.get(0))?;
            if !upgraded {
                return Ok(vec![]);
            }
            let mut stmt = conn.prepare(
                "SELECT * FROM runs WHERE pipeline = ?1 AND interval_end_utc IS NOT NULL ORDER BY interval_end_utc, started_at, run_id",
            )?;
            stmt.query_map([pipeline], run_from_row)?.collect()
        };
        read().map_err(self.failed(format!("cannot read the runs of pipeline `{pipeline}`")))?.into_iter().map(with_status).collect()
    }

    fn start_attempt(&self, run_id: &str, stage_id: &str) -> Result<u32> {
        let conn = self.conn();
        let next: u32 = conn.query_row(
            "SELECT COALESCE(MAX(attempt), 0) + 1 FROM stage_attempts WHERE run_id = ?1 AND stage_id = ?2",
            params![run_id, stage_id],
            |r| r.get(0),
        )?;
        conn.execute(
            "INSERT INTO stage_attempts (run_id, stage_id, attempt, status, started_at) VALUES (?1, ?2, ?3, 'running', ?4)",
            params![run_id, stage_id, next, now()],
        )?;
        Ok(next)
    }

    fn finish_attempt(
        &self,
        run_id: &str,
        stage_id: &str,
        attempt: u32,
        status: AttemptStatus,
        error: Option<&str>,
        m: &AttemptMetrics,
    ) -> Result<()> {
        let as_i64 = |v: Option<u64>| v.map(|v| v as i64);
        self.conn().execute(
            "UPDATE stage_attempts SET status = ?4, error = ?5, rows_in = ?6, rows_out = ?7, bytes_in = ?8,
                    bytes_out = ?9, details = ?10, finished_at = ?11
             WHERE run_id = ?1 AND stage_id = ?2 AND attempt = ?3",
            params![
                run_id,
                stage_id,
                attempt,
                status.as_str(),
                error,
                as_i64(m.rows_in),
                as_i64(m.rows_out),
                as_i64(m.bytes_in),
                as_i64(m.bytes_out),
                m.details,
                now()
            ],
        )?;
        Ok(())
    }

    fn record_skip(&self, run_id: &str, stage_id: &str, reason: &str) -> Result<()> {
        let attempt = self.start_attempt(run_id, stage_id)?;
        self.finish_attempt(run_id, stage_id, attempt, AttemptStatus::Skipped, Some(reason), &AttemptMetrics::default())
    }

    fn record_publication(&self, run_id: &str, table: &str, version: i64) -> Result<()> {
        self.conn().execute(
            "INSERT OR REPLACE INTO publications (run_id, table_name, version, published_at) VALUES (?1, ?2, ?3, ?4)",
            params![run_id, table, version, now()],
        )?;
        Ok(())
    }

    fn list_runs(&self, limit: usize, pipeline: Option<&str>) -> Result<Vec<RunRecord>> {
        let conn = self.conn();
        let mut stmt =
            conn.prepare("SELECT * FROM runs WHERE (?1 IS NULL OR pipeline = ?1) ORDER BY started_at DESC, run_id DESC LIMIT ?2")?;
        let rows = stmt.query_map(params![pipeline, limit as i64], run_from_row)?;
        rows.map(|r| with_status(r?)).collect()
    }

    fn get_run(&self, id: &str) -> Result<RunRecord> {
        let conn = self.conn();
        if let Some(run) = conn.query_row("SELECT * FROM runs WHERE run_id = ?1", [id], run_from_row).optional()? {
            return with_status(run);
        }
        let mut stmt = conn.prepare("SELECT * FROM runs WHERE run_id LIKE ?1 || '%' ORDER BY run_id LIMIT 3")?;
        let matches: Vec<_> = stmt.query_map([id], run_from_row)?.collect::<rusqlite::Result<_>>()?;
        match matches.len() {
            0 => bail!("no run with id `{id}` (see `restock runs`)"),
            1 => with_status(matches.into_iter().next().expect("one")),
            _ => bail!("run id prefix `{id}` is ambiguous; give more characters"),
        }
    }

    fn attempts(&self, run_id: &str) -> Result<Vec<AttemptRecord>> {
        let conn = self.conn();
        let mut stmt = conn.prepare(
            "SELECT run_id, stage_id, attempt, status, error, rows_in, rows_out, bytes_in, bytes_out, details, started_at, finished_at
             FROM stage_attempts WHERE run_id = ?1 ORDER BY started_at, stage_id, attempt",
        )?;
        let rows = stmt.query_map([run_id], |r| {
            let as_u64 = |v: Option<i64>| v.map(|v| v as u64);
            Ok((
                AttemptRecord {
                    run_id: r.get(0)?,
                    stage_id: r.get(1)?,
                    attempt: r.get(2)?,
                    status: AttemptStatus::Running,
                    error: r.get(4)?,
                    metrics: AttemptMetrics {
                        rows_in: as_u64(r.get(5)?),
                        rows_out: as_u64(r.get(6)?),
                        bytes_in: as_u64(r.get(7)?),
                        bytes_out: as_u64(r.get(8)?),
                        details: r.get(9)?,
                    },
                    started_at: ts(r.get(10)?).unwrap_or_default(),
                    finished_at: ts(r.get(11)?),
                },
                r.get::<_, String>(3)?,
            ))
        })?;
        rows.map(|r| {
            let (mut a, status) = r?;
            a.status = AttemptStatus::parse(&status)?;
            Ok(a)
        })
        .collect()
    }

    fn publications(&self, run_id: &str) -> Result<Vec<Publication>> {
        let conn = self.conn();
        let mut stmt =
            conn.prepare("SELECT run_id, table_name, version, published_at FROM publications WHERE run_id = ?1 ORDER BY table_name")?;
        let rows = stmt.query_map([run_id], |r| {
            Ok(Publication { run_id: r.get(0)?, table: r.get(1)?, version: r.get(2)?, published_at: ts(r.get(3)?).unwrap_or_default() })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }
}

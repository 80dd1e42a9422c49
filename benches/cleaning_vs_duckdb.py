#!/usr/bin/env python3
"""Cleaning SQL at scale: restock (DataFusion) against DuckDB on the same Parquet, same SQL files.

    scripts/bench-cleaning [--skus 1430]      # ~10 M raw sales rows

Generates the demo lake at the requested size (once), then
  1. `restock run benches/cleaning.yaml` (validation, footers, 3 SQL stages to staged Parquet,
     Delta publish) and reads the per-stage times from run history;
  2. DuckDB running the same three SQL files (templates rendered the same way) into Parquet.
Each side runs in its own child process so peak RSS is that process's. Prints numbers only.
"""
import argparse, datetime, json, os, re, sqlite3, subprocess, sys, tempfile, time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STAGES = ["clean_sales", "demand_daily", "product_text"]


def run_child(cmd, env=None):
    """Run a command; return (seconds, peak RSS of that process in MB, stdout)."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        t = time.perf_counter()
        p = subprocess.Popen(cmd, stdout=out, stderr=err, env=env, cwd=ROOT)
        _, status, usage = os.wait4(p.pid, 0)
        secs = time.perf_counter() - t
        out.seek(0), err.seek(0)
        if os.waitstatus_to_exitcode(status) != 0:
            sys.exit(f"{cmd} failed:\n{err.read().decode()}")
        return secs, usage.ru_maxrss / 1024, out.read().decode()


def duckdb_side(lake, outdir, threads, interval_end):
    import duckdb
    con = duckdb.connect()
    con.execute(f"SET threads = {threads}")
    def view(name, path, hive=False):
        opt = ", hive_partitioning = true" if hive else ""
        con.execute(f"CREATE VIEW {name} AS SELECT * FROM read_parquet('{lake}/{path}/**/*.parquet'{opt})")
    view("sales", "raw/sales", hive=True)
    view("corrections", "raw/sales_corrections")
    view("returns", "raw/returns")
    view("catalog", "raw/catalog")
    view("inventory", "raw/inventory", hive=True)
    view("reviews", "raw/reviews")
    times = {}
    for stage in STAGES:
        sql = open(os.path.join(ROOT, "sql", f"{stage}.sql")).read()
        sql = re.sub(r"\{\{\s*interval_end\s*\|\s*date\s*\}\}", interval_end, sql)
        sql = "\n".join(l for l in sql.splitlines() if not l.strip().startswith("--"))
        t = time.perf_counter()
        con.execute(f"COPY ({sql}) TO '{outdir}/{stage}.parquet' (FORMAT parquet)")
        times[stage] = time.perf_counter() - t
        con.execute(f"CREATE VIEW {stage if stage != 'clean_sales' else 'sales_clean'} AS SELECT * FROM read_parquet('{outdir}/{stage}.parquet')")
    rows = con.execute(f"SELECT COUNT(*) FROM read_parquet('{outdir}/demand_daily.parquet')").fetchall()[0][0]
    print(json.dumps({"times": times, "demand_rows": rows}))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--skus", type=int, default=1430)
    ap.add_argument("--lake", default=os.path.join(ROOT, "target", "bench-lake"))
    ap.add_argument("--restock", default=os.path.join(ROOT, "target", "debug", "restock"))
    ap.add_argument("--memory-limit", default="1GiB", help="second restock run's --memory-limit")
    ap.add_argument("--duckdb-side", nargs=3, metavar=("LAKE", "OUT", "END"), help=argparse.SUPPRESS)
    a = ap.parse_args()
    threads = os.cpu_count()
    if a.duckdb_side:
        return duckdb_side(a.duckdb_side[0], a.duckdb_side[1], threads, a.duckdb_side[2])

    lake_url = "file://" + a.lake
    subprocess.run([a.restock, "--quiet", "demo", "--no-run", "--skus", str(a.skus), "--lake", lake_url], check=True, cwd=ROOT)
    raw_rows = int(subprocess.run([sys.executable, "-c", f"import duckdb;print(duckdb.sql(\"SELECT COUNT(*) FROM read_parquet('{a.lake}/raw/sales/**/*.parquet')\").fetchall()[0][0])"],
                                  check=True, capture_output=True, text=True).stdout)
    interval_end = (datetime.date.today() + datetime.timedelta(days=1)).isoformat()

    def restock_side(extra):
        state = tempfile.mkdtemp(prefix="restock-bench-")
        env = dict(os.environ, RESTOCK_STATE=f"sqlite://{state}/state.db")
        wall, rss, _ = run_child([a.restock, "--quiet", *extra, "run", "benches/cleaning.yaml", "--lake", lake_url, "--force"], env=env)
        db = sqlite3.connect(f"{state}/state.db")
        times = {}
        for stage, start, end in db.execute("SELECT stage_id, started_at, finished_at FROM stage_attempts WHERE status = 'succeeded'"):
            times[stage] = (datetime.datetime.fromisoformat(end) - datetime.datetime.fromisoformat(start)).total_seconds()
        return wall, rss, times

    runs = [("restock", restock_side([])), (f"restock --memory-limit {a.memory_limit}", restock_side(["--memory-limit", a.memory_limit]))]

    out = tempfile.mkdtemp(prefix="duckdb-bench-")
    duck_wall, duck_rss, stdout = run_child([sys.executable, __file__, "--duckdb-side", a.lake, out, interval_end])
    d = json.loads(stdout)

    _, idle_rss, _ = run_child([a.restock, "--version"])
    print(f"raw sales rows: {raw_rows:,}   threads: {threads}   restock build: {a.restock}")
    print(f"restock process at rest (--version): peak RSS {idle_rss:.0f} MB")
    d_sum = sum(d["times"][st] for st in STAGES)
    for name, (wall, rss, rs) in runs:
        print(f"\n{name} vs duckdb {duckdb_version()}")
        print(f"{'stage':<14}{'restock s':>11}{'duckdb s':>10}{'ratio':>8}")
        for st in STAGES:
            print(f"{st:<14}{rs[st]:>11.2f}{d['times'][st]:>10.2f}{rs[st] / d['times'][st]:>8.2f}")
        r_sum = sum(rs[st] for st in STAGES)
        print(f"{'SQL total':<14}{r_sum:>11.2f}{d_sum:>10.2f}{r_sum / d_sum:>8.2f}")
        print(f"{'whole command':<14}{wall:>11.2f}{duck_wall:>10.2f}{wall / duck_wall:>8.2f}   (restock adds validation, footer checks, Delta publish)")
        print(f"{'peak RSS MB':<14}{rss:>11.0f}{duck_rss:>10.0f}")


def duckdb_version():
    import duckdb
    return duckdb.__version__


if __name__ == "__main__":
    main()

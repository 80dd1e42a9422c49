#!/usr/bin/env python3
"""Scheduling benchmark (issue 8, point 7), in one run on the same machine.

1. Latency: `restock serve` with N pipelines loaded (default 100), pipeline i firing once a
   minute at second i mod 60 (a cron with seconds), each a one-stage no-op. Latency is the
   time from the cron instant (the interval's end) to the first stage's start, read back from
   run history. Prints median, p90, p99 and max.
2. A 40-stage no-op chain, end to end: `restock run chain.yaml` against Apache Airflow 3's
   `airflow dags test` of the same chain (40 @task no-ops), wall time of each and the ratio.
   Airflow is looked for at --airflow (a venv's `airflow` script); skipped when absent:
       python3 -m venv .airflow-venv && .airflow-venv/bin/pip install 'apache-airflow==3.1.*'

    python3 benches/scheduling.py [--restock target/release/restock] [--pipelines 100]
                                  [--seconds 75] [--airflow .airflow-venv/bin/airflow]
"""
import argparse, glob, os, shutil, signal, sqlite3, statistics, subprocess, sys, tempfile, time
from datetime import datetime


def torch_lib():
    libs = glob.glob(os.path.join(os.path.dirname(__file__), "..", ".venv/lib/python3*/site-packages/torch/lib"))
    return os.path.abspath(libs[0]) if libs else ""


def env():
    e = dict(os.environ)
    e["LD_LIBRARY_PATH"] = torch_lib() + ":" + e.get("LD_LIBRARY_PATH", "")
    e.pop("RESTOCK_LAKE", None)
    e.pop("RESTOCK_STATE", None)
    return e


def ts(s):
    return datetime.fromisoformat(s.replace("Z", "+00:00")).timestamp()


def latency(restock, n, seconds):
    d = tempfile.mkdtemp(prefix="restock-sched-")
    os.makedirs(f"{d}/pipelines")
    for i in range(n):
        with open(f"{d}/pipelines/p{i:03}.yaml", "w") as f:
            f.write(f'name: p{i:03}\nschedule:\n  cron: "{i % 60} * * * * *"\nstages:\n  - {{ id: a, kind: noop }}\n')
    proc = subprocess.Popen([restock, "--quiet", "serve", "--pipelines", "pipelines", "--rescan", "5s"], cwd=d, env=env(),
                            stderr=subprocess.DEVNULL)
    time.sleep(seconds)
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=120)
    db = sqlite3.connect(f"{d}/.restock/state.db")
    rows = db.execute("""SELECT r.interval_end_utc, MIN(a.started_at) FROM runs r JOIN stage_attempts a USING (run_id)
                         WHERE r.trigger = 'scheduled' AND r.status = 'succeeded' GROUP BY r.run_id""").fetchall()
    shutil.rmtree(d, ignore_errors=True)
    lat = sorted((ts(first) - ts(end)) * 1000 for end, first in rows)
    if not lat:
        sys.exit("no scheduled run finished")
    q = lambda p: lat[min(len(lat) - 1, int(p * len(lat)))]
    print(f"latency, cron instant -> first stage start, {n} pipelines loaded, {len(lat)} runs:")
    print(f"  median {statistics.median(lat):.1f} ms   p90 {q(0.90):.1f} ms   p99 {q(0.99):.1f} ms   max {lat[-1]:.1f} ms"
          f"   (goal: median under 50 ms)")


CHAIN_DAG = '''
from datetime import datetime
from airflow.sdk import dag, task

@dag(dag_id="chain", start_date=datetime(2026, 1, 1), schedule=None, catchup=False)
def chain():
    @task
    def noop():
        return None
    prev = None
    for i in range({n}):
        t = noop.override(task_id=f"s{{i:02}}")()
        if prev is not None:
            prev >> t
        prev = t

chain()
'''


def chain(restock, airflow, n=40):
    d = tempfile.mkdtemp(prefix="restock-chain-")
    with open(f"{d}/chain.yaml", "w") as f:
        f.write("name: chain\nstages:\n")
        for i in range(n):
            needs = f", needs: [s{i - 1:02}]" if i else ""
            f.write(f"  - {{ id: s{i:02}, kind: noop{needs} }}\n")
    subprocess.run([restock, "--quiet", "run", "chain.yaml"], cwd=d, env=env(), check=True)  # warm the page cache
    t0 = time.perf_counter()
    # --force: the 40 stages really run (an unchanged stage is otherwise served from the cache).
    subprocess.run([restock, "--quiet", "run", "chain.yaml", "--force"], cwd=d, env=env(), check=True)
    ours = time.perf_counter() - t0
    print(f"{n}-stage no-op chain: restock run {ours:.3f} s")
    if not airflow or not os.path.exists(airflow):
        print("  Airflow not installed (see --airflow); no comparison")
        return
    home = f"{d}/airflow"
    os.makedirs(f"{home}/dags")
    with open(f"{home}/dags/chain.py", "w") as f:
        f.write(CHAIN_DAG.format(n=n))
    aenv = dict(os.environ, AIRFLOW_HOME=home, AIRFLOW__CORE__LOAD_EXAMPLES="False", AIRFLOW__CORE__DAGS_FOLDER=f"{home}/dags")
    subprocess.run([airflow, "db", "migrate"], env=aenv, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    t0 = time.perf_counter()
    r = subprocess.run([airflow, "dags", "test", "chain", "2026-01-01"], env=aenv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    theirs = time.perf_counter() - t0
    if r.returncode != 0:
        print("  airflow dags test failed:\n" + r.stderr.decode()[-2000:])
        return
    print(f"  airflow dags test {theirs:.3f} s   -> restock is {theirs / ours:.1f}x faster")
    shutil.rmtree(d, ignore_errors=True)


def main():
    a = argparse.ArgumentParser()
    a.add_argument("--restock", default="target/debug/restock")
    a.add_argument("--pipelines", type=int, default=100)
    a.add_argument("--seconds", type=int, default=75)
    a.add_argument("--airflow", default=".airflow-venv/bin/airflow")
    a.add_argument("--skip-latency", action="store_true")
    args = a.parse_args()
    restock = os.path.abspath(args.restock)
    airflow = os.path.abspath(args.airflow) if args.airflow else None
    if not args.skip_latency:
        latency(restock, args.pipelines, args.seconds)
    chain(restock, airflow)


if __name__ == "__main__":
    main()

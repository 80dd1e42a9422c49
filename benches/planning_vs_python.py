#!/usr/bin/env python3
"""Weekly planning against Python peers on the same 2 cores, in one run (issue 7, point 5).

1. Policies: restock's `policy` maths (benches/planning.rs) against the same computation in
   vectorised NumPy: 100 paths x 28 days per SKU-location, 4 lead-time draws per path, demand
   over R + L summed along each path, the fill-rate order-up-to level solved on the sample.
2. Allocation: restock's MIP (HiGHS through the `highs` crate, with its per-SKU warm start)
   against the same model built with highspy (HiGHS 1.15 from PyPI, no warm start), on the
   very same instance (the Rust bench writes it as JSON).

    python3 benches/planning_vs_python.py [--skus 2000] [--locations 50000] [--bench PATH]
"""
import argparse, json, re, subprocess, sys, tempfile, time

import numpy as np


def numpy_policies(locations, paths=100, horizon=28, draws=4, review=7.0, beta=0.98, chunk=2000):
    rng = np.random.default_rng(7)
    week = np.array([1.0, 0.9, 0.9, 1.0, 1.1, 1.4, 1.3])
    t0 = time.perf_counter()
    total = 0.0
    for start in range(0, locations, chunk):
        n = min(chunk, locations - start)
        level = rng.uniform(0.5, 50.0, size=(n, 1, 1))
        pattern = np.tile(week, horizon // 7 + 1)[:horizon]
        p = np.maximum(level * pattern * (1 + 0.4 * rng.uniform(-1, 1, size=(n, paths, horizon))), 0.0)
        prefix = np.concatenate([np.zeros((n, paths, 1)), np.cumsum(p, axis=2)], axis=2)
        lead = np.maximum(5.0 + (np.arange(start, start + n) % 10)[:, None, None] + 2.0 * rng.standard_normal((n, paths, draws)), 0.0)
        days = np.minimum(review + lead, horizon - 1e-9)
        whole = np.floor(days).astype(int)
        frac = days - whole
        base = np.take_along_axis(prefix, whole, axis=2)
        step = np.take_along_axis(p, np.minimum(whole, horizon - 1), axis=2)
        d = np.sort((base + frac * step).reshape(n, -1), axis=1)
        cycle = prefix[:, :, 7].mean(axis=1)
        # Fill rate: smallest S with mean((d - S)+) <= (1 - beta) * cycle, on the sorted sample.
        m = d.shape[1]
        suffix = np.cumsum(d[:, ::-1], axis=1)[:, ::-1]
        k = np.arange(m)
        short_at = (suffix - d * (m - k)) / m  # E[(D - d_k)+]
        allowed = ((1 - beta) * cycle)[:, None]
        idx = np.argmax(short_at <= allowed, axis=1)
        s = np.take_along_axis(d, idx[:, None], axis=1)[:, 0]
        total += np.maximum(s - 20.0, 0).sum()
    return time.perf_counter() - t0, total


def highspy_allocation(instance):
    import highspy
    h = highspy.Highs()
    h.setOptionValue("output_flag", False)
    h.setOptionValue("mip_rel_gap", 0.005)
    h.setOptionValue("time_limit", 600.0)
    h.setOptionValue("threads", 2)
    inf = highspy.kHighsInf
    spend = []
    t0 = time.perf_counter()
    for need in instance["needs"]:
        cover = []
        for o in need["offers"]:
            extra = need["shortage_cost"] * (1 - o["reliability"])
            tiers = [(0.0, o["unit_cost"])] + sorted((b[0], b[1]) for b in o["breaks"])
            cols = []
            for i, (mq, c) in enumerate(tiers):
                lo = max(mq, o["moq"], 1.0)
                hi = min(tiers[i + 1][0], o["capacity"]) if i + 1 < len(tiers) else o["capacity"]
                if lo > hi:
                    continue
                h.addVar(lo, hi)
                j = h.getNumCol() - 1
                h.changeColCost(j, c + extra)
                h.changeColIntegrality(j, highspy.HighsVarType.kSemiInteger)
                cols.append(j)
                spend.append((j, c))
            if cols:
                h.addRow(-inf, o["capacity"], len(cols), np.array(cols, dtype=np.int32), np.ones(len(cols)))
            cover += cols
        h.addRow(need["quantity"], inf, len(cover), np.array(cover, dtype=np.int32), np.ones(len(cover)))
    if instance["budget"] is not None:
        idx, val = zip(*spend)
        h.addRow(-inf, instance["budget"], len(idx), np.array(idx, dtype=np.int32), np.array(val))
    built = time.perf_counter() - t0
    h.run()
    info = h.getInfo()
    return time.perf_counter() - t0, built, h.getModelStatus(), info.objective_function_value, info.mip_gap


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--skus", type=int, default=2000)
    ap.add_argument("--locations", type=int, default=50000)
    ap.add_argument("--bench", help="the built planning bench binary (default: cargo bench --profile dev)")
    a = ap.parse_args()
    with tempfile.NamedTemporaryFile(suffix=".json") as f:
        args = ["--skus", str(a.skus), "--locations", str(a.locations), "--dump", f.name]
        cmd = [a.bench] + args if a.bench else ["cargo", "bench", "--quiet", "--profile", "dev", "--bench", "planning", "--"] + args
        out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
        print(out, end="")
        instance = json.load(open(f.name))
    rust_policy = float(re.search(r"policies from paths: .*?: ([0-9.]+) s", out).group(1))
    rust_alloc = float(re.search(r"allocation: .*?: ([0-9.]+) s", out).group(1))
    rust_obj = float(re.search(r"objective ([0-9.]+)", out).group(1))
    secs, _ = numpy_policies(a.locations)
    print(f"numpy policies: {a.locations} SKU-locations: {secs:.2f} s -> restock is {secs / rust_policy:.1f}x faster")
    secs, built, status, obj, gap = highspy_allocation(instance)
    print(f"highspy allocation (same instance, no warm start): {secs:.2f} s (model built in {built:.2f} s), {status}, "
          f"objective {obj:.0f}, gap {100 * gap:.3f} % -> restock is {secs / rust_alloc:.1f}x faster, objective x{rust_obj / obj:.5f}")


if __name__ == "__main__":
    sys.exit(main())

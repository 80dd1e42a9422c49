"""Where a method loses MASE, series by series: reads LONG (series_id, ts, value) and the
`--forecasts` file `restock evaluate` wrote for it (one window, horizon H), and prints each
method's mean and median per-series MASE (of the q0.5 forecast, against the in-sample
seasonal-naive MAE, as `restock evaluate` computes it), then the series where method A's MASE
exceeds method B's most, and least.
Needs pyarrow (`.venv/bin/pip install pyarrow`).
Usage: .venv/bin/python benches/per_series_mase.py LONG.parquet FORECASTS.parquet [H=12] [M=12] [A=lm] [B=seasonal_naive]
"""
import collections
import math
import sys

import pyarrow.parquet as pq


def main():
    data, forecasts = sys.argv[1], sys.argv[2]
    h, m = (int(sys.argv[i]) if len(sys.argv) > i else 12 for i in (3, 4))
    a, b = (sys.argv[5] if len(sys.argv) > 5 else "lm"), (sys.argv[6] if len(sys.argv) > 6 else "seasonal_naive")
    d = pq.read_table(data).to_pydict()
    series = collections.defaultdict(list)
    for s, t, v in zip(d["series_id"], d["ts"], d["value"]):
        series[s].append((t, v))
    f = pq.read_table(forecasts).to_pydict()
    median = collections.defaultdict(dict)
    for method, s, step, q in zip(f["method"], f["series_id"], f["step"], f["q0.5"]):
        median[method].setdefault(s, {})[step] = q
    mase = collections.defaultdict(dict)
    for s, rows in series.items():
        values = [v for _, v in sorted(rows)]
        hist, actual = values[:-h], values[-h:]
        diffs = [abs(hist[i] - hist[i - m]) for i in range(m, len(hist)) if hist[i] is not None and hist[i - m] is not None]
        scale = sum(diffs) / len(diffs) if diffs else 0.0
        if scale <= 0 or any(v is None for v in actual):
            continue
        for method, by_series in median.items():
            q = by_series.get(s)
            if q:
                mase[method][s] = sum(abs(y - q[k]) for y, k in zip(actual, sorted(q))) / h / scale
    for method, per in sorted(mase.items()):
        v = sorted(x for x in per.values() if math.isfinite(x))
        print(f"{method:16s} mean MASE {sum(v) / len(v):8.4f}  median {v[len(v) // 2]:.4f}  ({len(v)} series)")
    gap = sorted((mase[a][s] - mase[b][s], s) for s in mase[a] if s in mase[b])
    print(f"\nseries where {a} loses most to {b} (MASE {a}, {b}):")
    for g, s in gap[::-1][:12]:
        print(f"  {g:+8.3f}  {s}  ({mase[a][s]:.3f}, {mase[b][s]:.3f})")
    print(f"series where {a} wins most:")
    for g, s in gap[:6]:
        print(f"  {g:+8.3f}  {s}  ({mase[a][s]:.3f}, {mase[b][s]:.3f})")
    print(f"mean difference {sum(g for g, _ in gap) / len(gap):+.4f}")


if __name__ == "__main__":
    main()

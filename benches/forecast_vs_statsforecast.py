"""restock's statistical forecasters side by side with statsforecast on the same data and cores.

Usage: benches/forecast_vs_statsforecast.py RESTOCK_BIN DATA_DIR HORIZON SEASON FREQ
(DATA_DIR from `restock datasets fetch`; FREQ is the pandas frequency, MS for monthly).
Both sides write quantiles 0.1..0.9; every metric is computed here by one function, so the
numbers compare like with like. Prints WQL, MASE (of the median), 80 % coverage, wall time,
and restock/statsforecast ratios.
"""
import os, subprocess, sys, tempfile, time

import numpy as np
import pandas as pd

bin_, data, h, m, freq = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
cores = os.cpu_count()
levels = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9]
long = pd.read_parquet(f"{data}/long.parquet")
long["ts"] = pd.to_datetime(long["ts"])
long = long.sort_values(["series_id", "ts"])
train = long.groupby("series_id", group_keys=False).apply(lambda g: g.iloc[:-h])
test = long.groupby("series_id", group_keys=False).apply(lambda g: g.iloc[-h:])
train = train[train.groupby("series_id")["value"].transform("size") >= 3]


def metrics(fc):
    """fc: series_id, ts, q0.1..q0.9 → (WQL, mean MASE of the median, coverage of [q0.1, q0.9])."""
    j = test.merge(fc, on=["series_id", "ts"])
    y = j["value"].to_numpy()
    loss = sum(2 * np.maximum(q * (y - j[f"q{q}"]), (q - 1) * (y - j[f"q{q}"])) for q in levels) / len(levels)
    wql = loss.sum() / np.abs(y).sum()
    mases = []
    for sid, g in j.groupby("series_id"):
        hist = train.loc[train.series_id == sid, "value"].to_numpy()
        if len(hist) <= m:
            continue
        scale = np.abs(hist[m:] - hist[:-m]).mean()
        if scale > 0:
            mases.append(np.abs(g["value"] - g["q0.5"]).mean() / scale)
    cov = ((y >= j["q0.1"]) & (y <= j["q0.9"])).mean()
    return wql, float(np.mean(mases)), cov


def restock(methods):
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        for meth in methods:
            path = f"{tmp}/{meth}.parquet"
            t = time.perf_counter()
            subprocess.run([bin_, "evaluate", "--data", f"{data}/long.parquet", "--horizon", str(h), "--season", str(m),
                            "--methods", meth, "--forecasts", path], check=True, stdout=subprocess.DEVNULL)
            secs = time.perf_counter() - t
            fc = pd.read_parquet(path)
            fc["ts"] = pd.to_datetime(fc["ts"])
            out[meth] = (metrics(fc), secs)
    return out


def statsforecast(models):
    from statsforecast import StatsForecast
    df = train.rename(columns={"series_id": "unique_id", "ts": "ds", "value": "y"})
    out = {}
    for name, model in models.items():
        t = time.perf_counter()
        sf = StatsForecast(models=[model], freq=freq, n_jobs=cores)
        fc = sf.forecast(df=df, h=h, level=[20, 40, 60, 80])
        secs = time.perf_counter() - t
        col = [c for c in fc.columns if c not in ("unique_id", "ds") and "-lo-" not in c and "-hi-" not in c][0]
        res = pd.DataFrame({"series_id": fc["unique_id"], "ts": fc["ds"]})
        for q in levels:
            if q == 0.5:
                res["q0.5"] = fc[col].to_numpy()
            else:
                lv = int(round(abs(1 - 2 * q) * 100))
                res[f"q{q}"] = fc[f"{col}-{'lo' if q < 0.5 else 'hi'}-{lv}"].to_numpy()
        out[name] = (metrics(res), secs)
    return out


from statsforecast.models import AutoETS, AutoTheta, SeasonalNaive  # noqa: E402

ours = restock(["seasonal_naive", "ets", "theta", "ensemble"])
theirs = statsforecast({"seasonal_naive": SeasonalNaive(season_length=m), "ets": AutoETS(season_length=m),
                        "theta": AutoTheta(season_length=m)})
print(f"{data}: {train.series_id.nunique()} series, h={h}, m={m}, {cores} cores")
print(f"{'method':16}{'restock WQL':>12}{'sf WQL':>9}{'WQL ratio':>10}{'restock MASE':>13}{'sf MASE':>9}"
      f"{'cov80':>7}{'sf cov80':>9}{'restock s':>10}{'sf s':>8}{'speedup':>9}")
for meth, ((wql, mase, cov), secs) in ours.items():
    if meth in theirs:
        (swql, smase, scov), ssecs = theirs[meth]
        print(f"{meth:16}{wql:12.4f}{swql:9.4f}{wql / swql:10.3f}{mase:13.3f}{smase:9.3f}{cov:7.1%}{scov:9.1%}"
              f"{secs:10.2f}{ssecs:8.2f}{ssecs / secs:8.1f}x")
    else:
        print(f"{meth:16}{wql:12.4f}{'':9}{'':10}{mase:13.3f}{'':9}{cov:7.1%}{'':9}{secs:10.2f}")

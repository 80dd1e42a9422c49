"""How wide should the LM's intervals be? Each quantile of a `restock evaluate --forecasts` file
is moved towards the forecast's centre (q0.5, or the mean with CENTRE=mean) by a factor k, then
scored by WQL against the held-out values: a best k below 1 means the intervals are too wide.

Usage: python3 benches/lm_interval_scale.py FORECASTS.parquet LONG.parquet [FORECASTS LONG ...]
(needs polars; one method's forecasts, as `restock evaluate --methods lm --forecasts F` writes them)
"""
import os
import sys

import polars as pl

CENTRE = "mean" if os.environ.get("CENTRE") == "mean" else "q0.5"
LEVELS = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9]
FACTORS = [0.6, 0.7, 0.8, 0.9, 1.0, 1.1]


def as_time(df):
    return df if df["ts"].dtype == pl.Int64 else df.with_columns(pl.col("ts").cast(pl.Datetime("us")))


def scaled_wql(forecasts, long):
    f, d = as_time(pl.read_parquet(forecasts)), as_time(pl.read_parquet(long))
    j = f.join(d.select(["series_id", "ts", "value"]), on=["series_id", "ts"]).filter(pl.col("value").is_not_nan())
    y, centre = j["value"], j[CENTRE]
    for k in FACTORS:
        loss = 0.0
        for q in LEVELS:
            e = y - (centre + k * (j[f"q{q}"] - centre))
            loss += 2 * ((q * e).clip(0) + ((q - 1) * e).clip(0)).sum()
        yield k, loss / len(LEVELS) / y.abs().sum()


args = sys.argv[1:]
if not args or len(args) % 2:
    sys.exit(__doc__)
for forecasts, long in zip(args[::2], args[1::2]):
    print(forecasts, " ".join(f"k={k}: {w:.4f}" for k, w in scaled_wql(forecasts, long)))

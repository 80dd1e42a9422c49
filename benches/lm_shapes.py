"""Long tables of the shapes public benchmarks have, none of them the data restock is tuned on:
hourly sinusoids (timestamps), weekly unit counts with gaps (integers and nulls), quarterly
series around zero (negative values), short yearly growth series, clean linear trends of
10 to 100 points, and steady levels under 1 % noise. Written as Parquet under OUT (seeded: the
same tables every run).

Usage: python3 benches/lm_shapes.py OUT   (needs polars; benches/lm_shapes.sh runs it)
"""
import datetime as dt
import math
import random
import sys
from pathlib import Path

import polars as pl


def write(out: Path, name: str, rows: list[tuple]) -> None:
    ids, ts, vs = zip(*rows)
    pl.DataFrame({"series_id": list(ids), "ts": list(ts), "value": list(vs)}).write_parquet(out / f"{name}.parquet")


def poisson(rng: random.Random, lam: float) -> int:
    # Knuth's method for small rates, a rounded normal for large ones.
    if lam > 30:
        return max(0, round(rng.gauss(lam, math.sqrt(lam))))
    k, p, limit = 0, 1.0, math.exp(-lam)
    while True:
        p *= rng.random()
        if p <= limit:
            return k
        k += 1


def hourly(rng):
    start = dt.datetime(2024, 1, 1)
    for i in range(30):
        level, amp, phase = rng.uniform(10, 500), rng.uniform(0.2, 0.8), rng.uniform(0, 24)
        for h in range(24 * 21):
            x = level * (1 + amp * math.sin(2 * math.pi * (h + phase) / 24)) * (1 + rng.gauss(0, 0.03))
            yield f"h{i}", start + dt.timedelta(hours=h), x


def weekly(rng):
    start = dt.date(2021, 1, 4)
    for i in range(20):
        rate, amp = rng.uniform(0.5, 40), rng.uniform(0, 0.6)
        for w in range(156):
            x = None if w % 8 == i % 8 else float(poisson(rng, rate * (1 + amp * math.sin(2 * math.pi * w / 52))))
            yield f"w{i}", start + dt.timedelta(weeks=w), x


def quarterly(rng):
    for i in range(20):
        level, slope, season = rng.uniform(-50, 50), rng.uniform(-2, 2), [rng.uniform(-30, 30) for _ in range(4)]
        for q in range(48):
            yield f"q{i}", dt.date(2010 + q // 4, 1 + 3 * (q % 4), 1), level + slope * q + season[q % 4] + rng.gauss(0, 8)


def yearly(rng):
    for i in range(20):
        n, level, growth = rng.randint(15, 40), rng.uniform(100, 10_000), rng.uniform(0.02, 0.08)
        for y in range(n):
            yield f"y{i}", dt.date(2025 - n + y, 1, 1), level * (1 + growth) ** y * (1 + rng.gauss(0, 0.03))


def trends(rng, n):
    for i in range(20):
        level, slope = rng.uniform(10, 1000), rng.uniform(0.01, 0.05)
        for t in range(n + 6):
            yield f"t{i}", t, level * (1 + slope * t) * (1 + rng.gauss(0, 0.01))


def levels(rng):
    # A steady level under 1 % noise: nothing to forecast but the level, at a fine scale.
    for i in range(20):
        level = rng.uniform(10, 1000)
        for t in range(106):
            yield f"l{i}", t, level * (1 + rng.gauss(0, 0.01))


def main() -> None:
    out = Path(sys.argv[1])
    out.mkdir(parents=True, exist_ok=True)
    rng = random.Random(0)
    write(out, "hourly", list(hourly(rng)))
    write(out, "weekly", list(weekly(rng)))
    write(out, "quarterly", list(quarterly(rng)))
    write(out, "yearly", list(yearly(rng)))
    for n in (10, 20, 40, 100):
        write(out, f"trend{n}", list(trends(rng, n)))
    write(out, "level", list(levels(rng)))


if __name__ == "__main__":
    main()

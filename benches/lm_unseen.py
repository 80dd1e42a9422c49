"""Long tables that no default of restock was chosen on: a check of how the methods generalise,
written after every default was fixed (benches/lm_shapes.py's sets were used to choose some).
Shapes of the public benchmarks restock is judged on but does not have: sparse daily unit counts
(M5, car parts), random walks (exchange rates), daily series with a weekly and a yearly season
(NN5 cash withdrawals), quarter-hourly loads (ETTm, electricity), monthly series with a trend and
a season that grows with the level (tourism, M4 monthly), the same at a million times and a
ten-thousandth of the scale (a forecast must not depend on the unit), monthly series with
outliers, and daily series whose level shifts late. Seeded: the same tables every run.

Usage: python3 benches/lm_unseen.py OUT   (needs polars; benches/lm_unseen.sh runs it)
"""
import datetime as dt
import math
import random
import sys
from pathlib import Path

from lm_shapes import poisson, write  # the same writer and count draw as the other shape sets


def weekly_profile(rng, amp):
    raw = [math.exp(rng.gauss(0, amp)) for _ in range(7)]
    mean = sum(raw) / 7
    return [r / mean for r in raw]


def intermittent(rng):
    start = dt.date(2022, 1, 1)
    for i in range(100):
        rate, shape = math.exp(rng.uniform(math.log(0.05), math.log(2.0))), rng.uniform(0.5, 5)
        week = weekly_profile(rng, 0.3)
        for d in range(730):
            lam = rate * week[d % 7] * rng.gammavariate(shape, 1 / shape)
            yield f"i{i}", start + dt.timedelta(days=d), float(poisson(rng, lam))


def random_walks(rng):
    start = dt.date(2020, 1, 1)
    for i in range(50):
        x, vol, drift = rng.uniform(0.5, 200), rng.uniform(0.003, 0.02), rng.gauss(0, 0.0005)
        for d in range(500):
            x *= math.exp(drift + rng.gauss(0, vol))
            yield f"r{i}", start + dt.timedelta(days=d), x


def nn5(rng):
    start = dt.date(1996, 3, 18)
    for i in range(60):
        level, week, yamp = rng.uniform(10, 40), weekly_profile(rng, 0.4), rng.uniform(0, 0.3)
        yphase, noise = rng.uniform(0, 2 * math.pi), rng.uniform(0.1, 0.3)
        for d in range(735):
            season = 1 + yamp * math.sin(2 * math.pi * d / 365.25 + yphase)
            x = level * week[d % 7] * season * math.exp(rng.gauss(0, noise))
            yield f"n{i}", start + dt.timedelta(days=d), None if rng.random() < 0.02 else x


def quarter_hourly(rng):
    start = dt.datetime(2016, 7, 1)
    for i in range(20):
        base, peak1, peak2 = rng.uniform(5, 50), rng.uniform(0.2, 1.0), rng.uniform(0.2, 1.0)
        weekend, noise = rng.uniform(0.6, 1.1), rng.uniform(0.02, 0.08)
        for k in range(96 * 14):
            hour, day = (k % 96) / 4, (k // 96) % 7
            shape = 1 + peak1 * math.exp(-((hour - 8) ** 2) / 4) + peak2 * math.exp(-((hour - 19) ** 2) / 6)
            scale = weekend if day >= 5 else 1.0
            yield f"e{i}", start + dt.timedelta(minutes=15 * k), base * shape * scale * (1 + rng.gauss(0, noise))


def monthly_series(rng):
    """(id, start index, values) of monthly series with a trend and a multiplicative season."""
    for i in range(60):
        n = rng.randint(60, 240)
        level, growth = rng.uniform(100, 5000), rng.gauss(0.004, 0.006)
        season = [math.exp(rng.gauss(0, 0.25)) for _ in range(12)]
        noise = rng.uniform(0.02, 0.12)
        values = [level * math.exp(growth * t) * season[t % 12] * math.exp(rng.gauss(0, noise)) for t in range(n)]
        yield f"m{i}", 300 - n, values


def month(index: int) -> dt.date:
    return dt.date(2000 + index // 12, 1 + index % 12, 1)


def monthly(series, factor=1.0):
    for sid, first, values in series:
        for t, v in enumerate(values):
            yield sid, month(first + t), v * factor


def outliers(rng):
    for sid, first, values in monthly_series(rng):
        for t, v in enumerate(values):
            spike = rng.uniform(3, 10) if rng.random() < 0.04 else 1.0
            yield "o" + sid, month(first + t), v * spike


def level_shifts(rng):
    start = dt.date(2023, 1, 1)
    for i in range(50):
        level, week, at = rng.uniform(20, 500), weekly_profile(rng, 0.2), rng.randint(250, 340)
        shift = math.exp(rng.choice([-1, 1]) * rng.uniform(0.3, 1.2))
        for d in range(365):
            lvl = level * (shift if d >= at else 1.0)
            yield f"s{i}", start + dt.timedelta(days=d), lvl * week[d % 7] * math.exp(rng.gauss(0, 0.1))


def main() -> None:
    out = Path(sys.argv[1])
    out.mkdir(parents=True, exist_ok=True)
    rng = random.Random(20261207)
    write(out, "intermittent", list(intermittent(rng)))
    write(out, "randomwalk", list(random_walks(rng)))
    write(out, "nn5", list(nn5(rng)))
    write(out, "quarterhour", list(quarter_hourly(rng)))
    series = list(monthly_series(rng))
    write(out, "monthly", list(monthly(series)))
    write(out, "monthly_big", list(monthly(series, 1e6)))
    write(out, "monthly_tiny", list(monthly(series, 1e-4)))
    write(out, "outliers", list(outliers(rng)))
    write(out, "shifts", list(level_shifts(rng)))


if __name__ == "__main__":
    main()

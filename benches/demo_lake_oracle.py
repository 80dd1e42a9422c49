"""The ceiling on the demo lake itself: WQL (quantiles 0.1…0.9, as `restock evaluate`) of
forecasts that know the generator's truth (`restock demo --truth` writes it to raw/truth/), on
the lake's last H days, scored against its cleaned `demand_daily.units`.

  truth:            the true distribution of each day (gamma-Poisson with shape 2 around the
                    true rate, plus the slow movers' extra zeros);
  level from N days: the true form (season × weekday × trend × promotion effect, known) with
                    each series' level estimated from its last N uncensored days before the
                    held-out ones — what a perfect model reading N days of context could reach.

Each on all held-out days, and on the days without a stockout only (a censored day's units are
a lower bound, not the demand). Reads the CSV `benches/demo_lake_oracle.sh` exports:
series_id, day, units, censored, level, rate, extra_zeros (one row per series and day, in order).
Usage: .venv/bin/python benches/demo_lake_oracle.py DAYS.csv [H=28]
"""
import csv
import sys

import torch

LEVELS = torch.arange(1, 10) / 10
FACTORS = ["season", "weekday", "trend", "promo_effect"]


def load(path):
    series = {}
    with open(path) as f:
        for r in csv.DictReader(f):
            s = series.setdefault(r["series_id"], [])
            s.append([float(r["units"]), r["censored"] == "true", float(r["level"]), float(r["rate"]), float(r["extra_zeros"])]
                     + [float(r[f]) for f in FACTORS])
    ids = sorted(series)
    rows = torch.tensor([series[i] for i in ids], dtype=torch.float64)  # [S, T, 5]
    return rows[..., 0], rows[..., 1].bool(), rows[..., 2], rows[..., 3], rows[..., 4], rows[..., 5:]


def quantiles(lam, zeros):
    """Quantiles 0.1…0.9 of the generator's distribution: [9, *lam.shape]."""
    k = torch.arange(0, 4000.0, dtype=torch.float64)
    out = torch.empty(len(LEVELS), *lam.shape, dtype=torch.float64)
    flat_l, flat_z, flat_o = lam.reshape(-1), zeros.reshape(-1), out.view(len(LEVELS), -1)
    for s in range(0, flat_l.numel(), 2000):
        l = flat_l[s:s + 2000, None].clamp_min(1e-9)
        cdf = torch.distributions.NegativeBinomial(2.0, probs=l / (l + 2.0)).log_prob(k).exp().cumsum(-1)
        z = flat_z[s:s + 2000, None]
        cdf = z + (1 - z) * cdf
        for i, q in enumerate(LEVELS):
            flat_o[i, s:s + 2000] = (cdf < q).sum(-1).double()
    return out


def wql(y, q, keep):
    loss = sum(2 * torch.maximum(p * (y - f), (p - 1) * (y - f))[keep].sum() for p, f in zip(LEVELS, q))
    return float(loss / len(LEVELS) / y[keep].abs().sum())


def coverage(y, q, keep):
    """Share of the kept days inside the 80 % interval [q0.1, q0.9], ends included (as `restock
    evaluate` counts it). For counts, even the true distribution's interval holds more than 80 %
    of the days: P(q0.1 <= Y <= q0.9) >= 0.8, and small counts tie often."""
    inside = (y >= q[0]) & (y <= q[-1])
    return float(inside[keep].double().mean())


def from_context(units, censored, zeros, shape, h, n):
    """Quantiles with the form `shape` [S, T] known and each series' level estimated from its
    last n uncensored days before the held-out h."""
    past = slice(-h - n, -h)
    seen = ~censored[:, past]
    expected = (shape[:, past] * (1 - zeros[:, past]) * seen).sum(1)
    estimate = ((units[:, past] * seen).sum(1) + 0.5) / (expected + 1.0)
    return quantiles(estimate[:, None] * shape[:, -h:], zeros[:, -h:])


def main():
    units, censored, level, rate, zeros, factors = load(sys.argv[1])
    h = int(sys.argv[2]) if len(sys.argv) > 2 else 28
    y, cens = units[:, -h:], censored[:, -h:]
    print(f"{units.shape[0]} series, last {h} days held out; {float(cens.float().mean()) * 100:.1f} % of them censored")
    print(f"{'forecast':40s} {'WQL all days':>12s} {'WQL uncensored':>15s} {'80 % coverage':>14s}")
    rows = [("truth", quantiles(rate[:, -h:], zeros[:, -h:]))]
    shape = factors.prod(-1)
    rows += [(f"form known, level from {n} days", from_context(units, censored, zeros, shape, h, n)) for n in (112, 365)]
    for i, name in enumerate(FACTORS):
        # Not knowing a factor: it stays at its mean over the 112 context days, past and future.
        f = factors.clone()
        f[..., i] = f[:, -h - 112:-h, i].mean(1, keepdim=True)
        rows.append((f"form known but {name}, from 112", from_context(units, censored, zeros, f.prod(-1), h, 112)))
    flat = torch.ones_like(shape)
    rows.append(("flat: level only, from 112 days", from_context(units, censored, zeros, flat, h, 112)))
    for name, q in rows:
        all_days = torch.ones_like(cens)
        print(f"{name:40s} {wql(y, q, all_days):12.4f} {wql(y, q, ~cens):15.4f} {coverage(y, q, all_days) * 100:13.1f}%")


if __name__ == "__main__":
    main()

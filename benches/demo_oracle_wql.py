"""How good a demo-lake forecast could be: WQL (quantiles 0.1…0.9, as `restock evaluate`) of
forecasters that know the demo generator's structure, on simulated series drawn like
`restock demo`'s (src/demo/mod.rs: level ~ LogNormal(-0.6, 1.1) × location LogNormal(0, 0.45),
weekday factors, a seasonal factor, gamma-Poisson with shape 2, 35 % extra zeros for slow items).
It leaves out stockouts (8.6 % of the demo's last-month days are censored), promotions and
trends, so its numbers are optimistic bounds, not targets.

Prints the WQL over 28 days of: the true distribution's quantiles; quantiles of 20 and 100
paths sampled from the truth (what sampling costs); the true form with the level estimated from
112 and 365 days of history (what a perfect model reading that context could reach).
Usage: .venv/bin/python benches/demo_oracle_wql.py [SERIES=5000]
"""
import sys
import torch

torch.manual_seed(0)
S, H = (int(sys.argv[1]) if len(sys.argv) > 1 else 5000), 28
LEVELS = torch.arange(1, 10) / 10
WEEKDAY = torch.tensor([0.95, 0.95, 0.95, 0.95, 1.05, 1.3, 1.3])
level = torch.distributions.LogNormal(-0.6, 1.1).sample((S,)) * torch.distributions.LogNormal(0.0, 0.45).sample((S,))
season = 1 + torch.rand(S) * 0.9
slow = level < 0.3


def rate(lvl, days):
    return lvl[:, None] * WEEKDAY[torch.arange(days) % 7][None, :] * season[:, None]


def draw(lam, extra=()):
    y = torch.poisson(torch.distributions.Gamma(2.0, 2.0 / lam.expand(*extra, *lam.shape)).sample())
    y[slow[:, None].expand_as(y) & (torch.rand_like(y) < 0.35)] = 0
    return y


def wql(y, quantile):
    """`quantile(q)` gives the forecast's q-quantile per series and day."""
    loss = 0.0
    for q in LEVELS:
        f = quantile(q)
        loss += 2 * torch.maximum(q * (y - f), (q - 1) * (y - f)).sum()
    return float(loss / len(LEVELS) / y.abs().sum())


def nb_quantiles(lam):
    """Quantile function of the generator's distribution at rate lam (extra zeros included)."""
    k = torch.arange(0, 4000.0)
    table = torch.empty(len(LEVELS), *lam.shape)
    for s in range(0, lam.shape[0], 1000):
        l = lam[s:s + 1000, :, None]
        cdf = torch.distributions.NegativeBinomial(2.0, probs=l / (l + 2.0)).log_prob(k).exp().cumsum(-1)
        cdf = torch.where(slow[s:s + 1000, None, None], 0.35 + 0.65 * cdf, cdf)
        for i, q in enumerate(LEVELS):
            table[i, s:s + 1000] = (cdf < q).sum(-1).float()
    return lambda q: table[int(round(float(q) * 10)) - 1]


lam = rate(level, H)
y = draw(lam)
print(f"{S} series x {H} days, mean {float(y.mean()):.2f} units a day")
print(f"true distribution:                 WQL {wql(y, nb_quantiles(lam)):.4f}")
for paths in (20, 100):
    sampled = draw(lam, (paths,))
    print(f"{paths:3d} paths of the truth:             WQL {wql(y, lambda q: torch.quantile(sampled, float(q), dim=0)):.4f}")
for days in (112, 365):
    past = draw(rate(level, days))
    thin = torch.where(slow, 0.65, 1.0)
    estimate = (past.sum(1) + 0.5) / (days + 1.0) / (WEEKDAY.mean() * season) / thin
    print(f"level estimated from {days:3d} days:     WQL {wql(y, nb_quantiles(rate(estimate, H))):.4f}")

"""Ensemble rules tried offline on `restock evaluate --windows K --forecasts OUT` of the members:
each rule chooses on window w - 1 (the held-out tails a run at window w's origin sees) and is
scored on window w. Rules: each member alone, the median, the current rule (the best member alone
where it beats the median by 2 standard errors of the per-series differences), weights
proportional to 1/loss^p, and the median or mean of the members not clearly worse than the best.
Usage: python3 benches/ensemble_rules.py FORECASTS.parquet LONG.parquet   (needs polars, numpy)
"""
import sys, polars as pl, numpy as np
LV = [0.1,0.2,0.3,0.4,0.5,0.6,0.7,0.8,0.9]
QC = [f"q{l}" for l in LV]
def load(fc, data):
    f = pl.read_parquet(fc); d = pl.read_parquet(data)
    j = f.join(d.select('series_id','ts','value'), on=['series_id','ts'])
    return j
def pin(y, q):  # y [n], q [n, 9]
    lv = np.array(LV)
    e = y[:,None] - q
    return np.where(e >= 0, lv*e, (lv-1)*e).sum(1)
def main(fc, data):
    j = load(fc, data)
    methods = sorted(j['method'].unique().to_list())
    wins = sorted(j['window'].unique().to_list())
    # arrays per window: series order, steps
    out = {}
    for w in wins:
        jw = j.filter(pl.col('window')==w).sort('method','series_id','step')
        per = {}
        for m in methods:
            x = jw.filter(pl.col('method')==m)
            per[m] = (x['series_id'].to_numpy(), x['value'].to_numpy(), x.select(QC).to_numpy())
        out[w] = per
    res = {}
    for wi in range(1, len(wins)):
        prev, cur = out[wins[wi-1]], out[wins[wi]]
        # per-series held-out losses on prev
        def series_loss(per, q):
            sid, y, _ = per[methods[0]]
            ok = np.isfinite(y)
            l = np.where(ok, pin(np.nan_to_num(y), q), 0.0)
            u, inv = np.unique(sid, return_inverse=True)
            return np.bincount(inv, l), np.abs(np.nan_to_num(y)).sum()
        Q = {m: prev[m][2] for m in methods}
        L = {m: series_loss(prev, Q[m])[0] for m in methods}
        med = np.median(np.stack([Q[m] for m in methods]), 0)
        Lmed = series_loss(prev, med)[0]
        def t(a, b):
            d = a - b; n = len(d); se = d.std(ddof=1)/np.sqrt(n); return d.mean()/se if se>0 else 0
        tot = {m: L[m].sum() for m in methods}
        best = min(methods, key=lambda m: tot[m])
        Qc = {m: cur[m][2] for m in methods}
        sid, y, _ = cur[methods[0]]
        ok = np.isfinite(y); ya = np.nan_to_num(y)
        def wql(q): return 2*np.where(ok, pin(ya, q), 0).sum()/len(LV)/np.abs(ya[ok]).sum()
        medc = np.median(np.stack([Qc[m] for m in methods]), 0)
        rules = {}
        for m in methods: rules[m] = wql(Qc[m])
        rules['median'] = wql(medc)
        rules['current'] = wql(Qc[best]) if t(Lmed, L[best]) >= 2 else wql(medc)
        for p in [1, 2, 4]:
            wts = np.array([1/tot[m]**p for m in methods]); wts /= wts.sum()
            rules[f'inv^{p}'] = wql(sum(wt*Qc[m] for wt, m in zip(wts, methods)))
        keep = [m for m in methods if m == best or t(L[m], L[best]) < 2]
        rules['med_notclearlyworse'] = wql(np.median(np.stack([Qc[m] for m in keep]), 0))
        rules['mean_notclearlyworse'] = wql(np.mean(np.stack([Qc[m] for m in keep]), 0))
        res[wins[wi]] = (rules, keep, {m: round(float(t(L[m], L[best])), 1) for m in methods})
    for w, (r, keep, ts) in res.items():
        print(f"window {w}: kept-not-clearly-worse {keep} t-vs-best {ts}")
        print("   " + "  ".join(f"{k} {v:.4f}" for k, v in r.items()))
main(sys.argv[1], sys.argv[2])

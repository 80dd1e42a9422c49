"""One decoding step of `small` at the nightly's batch, op by op, in PyTorch eager on the CPU
(the same libtorch kernels restock calls through tch): where a step's time goes.

204 series × 20 paths = 4,080 rows, a 145-token prefix (32 text tokens + SEP + 112 values)
shared by each series' paths, 14 generated tokens cached per row, d 128, 4 heads, d_ff 384,
4,096 value ids. `attention, broadcast prefix` is how `shared_attention` computed it before
2026-12-02 (the prefix keys broadcast against [series, paths, ...] queries); `attention, paths
as query rows` is how it does now.

Usage: .venv/bin/python benches/lm_decode_step_profile.py [THREADS=2]
"""
import sys
import time

import torch

torch.set_num_threads(int(sys.argv[1]) if len(sys.argv) > 1 else 2)
torch.manual_seed(0)
S, P, H, HD, D, FF, V, TP, T = 204, 20, 4, 32, 128, 384, 4096, 145, 14
N = S * P


def ms(f, n=5):
    f()
    t = time.perf_counter()
    for _ in range(n):
        f()
    return (time.perf_counter() - t) / n * 1000


x = torch.randn(N, 1, D)
w_qkv, w_out = torch.randn(3 * D, D) * 0.05, torch.randn(D, D) * 0.05
w_gu, w_down = torch.randn(2 * FF, D) * 0.05, torch.randn(D, FF) * 0.05
embed = torch.randn(V, D) * 0.05
pk, pv = torch.randn(S, H, TP, HD), torch.randn(S, H, TP, HD)
bias = torch.zeros(S, 1, 1, TP)
k, v, q = torch.randn(N, H, T, HD), torch.randn(N, H, T, HD), torch.randn(N, H, 1, HD)
logits = torch.randn(N, V)
scale = HD ** -0.5


def attention_broadcast():
    a = q.view(S, P, H, 1, HD) @ pk.unsqueeze(1).transpose(-1, -2) * scale + bias.view(S, 1, 1, 1, TP)
    b = (q @ k.transpose(-1, -2)).view(S, P, H, 1, T) * scale
    w = torch.cat([a, b], -1).softmax(-1)
    return (w[..., :TP] @ pv.unsqueeze(1) + w[..., TP:] @ v.view(S, P, H, T, HD)).reshape(N, H, 1, HD)


def attention_rows():
    qs = q.view(S, P, H, HD).transpose(1, 2)
    a = qs @ pk.transpose(-1, -2) * scale + bias
    b = (q @ k.transpose(-1, -2)).view(S, P, H, T).transpose(1, 2) * scale
    w = torch.cat([a, b], -1).softmax(-1)
    own = w[..., TP:].transpose(1, 2).reshape(N, H, 1, T) @ v
    return (w[..., :TP] @ pv).transpose(1, 2).reshape(N, H, 1, HD) + own


def grow_cache():
    return torch.cat([k, torch.randn(N, H, 1, HD)], 2), torch.cat([v, torch.randn(N, H, 1, HD)], 2)


def linears():
    _ = torch.nn.functional.linear(x, w_qkv)
    _ = torch.nn.functional.linear(x, w_out)
    g = torch.nn.functional.linear(x, w_gu).chunk(2, -1)
    return torch.nn.functional.linear(g[0] * g[1], w_down)


def head():
    return x.view(N, D) @ embed.t()


def draw():
    lg = logits.clone()
    lg[:, :2] = -float("inf")
    cdf = lg.softmax(1).cumsum(1)
    return torch.searchsorted(cdf, torch.rand(N, 1) * cdf[:, -1:], right=True)


diff = (attention_broadcast() - attention_rows()).abs().max().item()
print(f"rows {N}, prefix {TP}, threads {torch.get_num_threads()}; the two attentions differ by {diff:.1e}")
for name, f, per_step in [
    ("attention, broadcast prefix", attention_broadcast, 4),
    ("attention, paths as query rows", attention_rows, 4),
    ("growing the KV caches", grow_cache, 4),
    ("qkv, out, SwiGLU linears", linears, 4),
    ("output head (4,096 ids)", head, 1),
    ("draw (softmax, cumsum, search)", draw, 1),
]:
    t = ms(f)
    print(f"{name:32s} {t:8.1f} ms × {per_step} per step = {t * per_step:7.1f} ms")

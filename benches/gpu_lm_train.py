"""The forecasting LM's architecture (src/lm/model.rs: RMSNorm, rotary positions, SwiGLU, causal
SDPA, the seasonal-lag input, an untied 4,096-wide value head) in PyTorch, trained on random
value tokens in eager mode and under torch.compile, bf16 autocast on CUDA: the peers `restock
pretrain` is measured against on a GPU (BENCHMARKS.md, "GPU"). Prints tokens/s, achieved
TFLOP/s and MFU against the device's dense bf16 peak for each, from the same FLOP count
restock's line uses (6 × parameters per token + the attention's 12 × layers × d_model × T).

Usage: python3 benches/gpu_lm_train.py [CONFIG=models/base.yaml] [STEPS=30] [BATCH=16] [SEQ=1024] [PEAK_TFLOPS=989]
(989: an H100/H200's dense bf16 peak. On a CPU it runs f32 for a smoke test: try models/tiny.yaml 3 2 64.
STEPS=0 prints the parameters and FLOP per token only.)
"""
import math
import sys
import time

import torch
import torch.nn.functional as F

N_VALUE_IDS = 4096


def read_config(path):
    """The scalar keys of a models/*.yaml (no YAML library needed on the device)."""
    c = {}
    for line in open(path):
        line = line.split("#")[0].strip()
        if ":" in line:
            k, v = (s.strip() for s in line.split(":", 1))
            if v:
                c[k] = {"true": True, "false": False}.get(v, v)
    return {k: (int(v) if isinstance(v, str) and v.lstrip("-").isdigit() else v) for k, v in c.items()}


class RmsNorm(torch.nn.Module):
    def __init__(self, d):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.ones(d))

    def forward(self, x):
        norm = torch.rsqrt(x.float().pow(2).mean(-1, keepdim=True) + 1e-6)
        return (x * norm).to(x.dtype) * self.weight


def rope(x, cos, sin):
    half = x.shape[-1] // 2
    x1, x2 = x[..., :half], x[..., half:]
    return torch.cat([x1 * cos - x2 * sin, x1 * sin + x2 * cos], -1)


class Block(torch.nn.Module):
    def __init__(self, d, heads, d_ff):
        super().__init__()
        self.heads = heads
        self.norm1, self.norm2 = RmsNorm(d), RmsNorm(d)
        self.qkv = torch.nn.Linear(d, 3 * d, bias=False)
        self.out = torch.nn.Linear(d, d, bias=False)
        self.gate_up = torch.nn.Linear(d, 2 * d_ff, bias=False)
        self.down = torch.nn.Linear(d_ff, d, bias=False)

    def forward(self, x, cos, sin):
        b, t, d = x.shape
        qkv = self.qkv(self.norm1(x)).view(b, t, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        q, k, v = rope(qkv[0], cos, sin), rope(qkv[1], cos, sin), qkv[2]
        att = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        x = x + self.out(att.transpose(1, 2).reshape(b, t, d))
        gate, up = self.gate_up(self.norm2(x)).chunk(2, -1)
        return x + self.down(F.silu(gate) * up)


class Model(torch.nn.Module):
    def __init__(self, c):
        super().__init__()
        d = c["d_model"]
        self.heads = c["n_heads"]
        self.embed = torch.nn.Embedding(N_VALUE_IDS + 1 + c.get("text_vocab", 0), d)
        self.lag = torch.nn.Linear(d, d, bias=False) if c.get("season_lag") else None
        self.blocks = torch.nn.ModuleList(Block(d, c["n_heads"], c["d_ff"]) for _ in range(c["n_layers"]))
        self.norm = RmsNorm(d)
        self.head = torch.nn.Linear(d, N_VALUE_IDS, bias=False)

    def forward(self, ids, lag):
        x = self.embed(ids)
        if self.lag is not None:
            x = x + self.lag(self.embed(lag))
        t, hd = ids.shape[1], x.shape[-1] // self.heads
        inv = torch.exp(torch.arange(0, hd, 2, device=ids.device) / hd * -math.log(10_000.0))
        ang = torch.arange(t, device=ids.device)[:, None] * inv[None, :]
        cos, sin = ang.cos().to(x.dtype)[None, None], ang.sin().to(x.dtype)[None, None]
        for block in self.blocks:
            x = block(x, cos, sin)
        return self.head(self.norm(x))


def flops_per_token(model, c, seq):
    params = sum(p.numel() for p in model.parameters()) - model.embed.weight.numel()
    return 6 * params + 12 * c["n_layers"] * c["d_model"] * seq


def run(name, model, c, steps, batch, seq, device, peak):
    opt = torch.optim.AdamW(model.parameters(), lr=3e-4, weight_decay=0.1, fused=device.type == "cuda")
    amp = torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else torch.autocast("cpu", enabled=False)

    def step():
        ids = torch.randint(2, N_VALUE_IDS, (batch, seq + 1), device=device)
        lag = torch.randint(2, N_VALUE_IDS, (batch, seq), device=device)
        with amp:
            logits = model(ids[:, :-1], lag)
            loss = F.cross_entropy(logits.float().view(-1, N_VALUE_IDS), ids[:, 1:].reshape(-1))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        return loss

    for _ in range(3):  # warm-up (and, compiled, the compilation)
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(steps):
        loss = step()
    loss = float(loss.detach())
    if device.type == "cuda":
        torch.cuda.synchronize()
    secs = time.perf_counter() - start
    tps = steps * batch * seq / secs
    tflops = tps * flops_per_token(model, c, seq) / 1e12
    print(f"{name:16s} {tps:12,.0f} tokens/s  {tflops:7.1f} TFLOP/s  MFU {100 * tflops / peak:5.1f} %  (loss {loss:.2f}, {steps} steps in {secs:.1f} s)")


def main():
    args = sys.argv[1:]
    config = args[0] if args else "models/base.yaml"
    steps, batch, seq = (int(args[i]) if len(args) > i else d for i, d in ((1, 30), (2, 16), (3, 1024)))
    peak = float(args[4]) if len(args) > 4 else 989.0
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    torch.manual_seed(0)
    c = read_config(config)
    print(f"{config}: d {c['d_model']}, {c['n_layers']} layers, batch {batch} x {seq} tokens, {device}"
          f" ({torch.cuda.get_device_name() if device.type == 'cuda' else 'f32, a smoke test'}), peak {peak:.0f} TFLOP/s")
    model = Model(c).to(device)
    print(f"parameters {sum(p.numel() for p in model.parameters()) / 1e6:.1f} M, {flops_per_token(model, c, seq) / 1e6:.0f} MFLOP per token")
    if steps == 0:  # the FLOP count only (gpu_check.sh turns restock's tokens/s into TFLOP/s with it)
        return
    run("PyTorch eager", model, c, steps, batch, seq, device, peak)
    run("torch.compile", torch.compile(model), c, steps, batch, seq, device, peak)


if __name__ == "__main__":
    main()

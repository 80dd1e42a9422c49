#!/usr/bin/env bash
# One-shot device check, every GPU figure in one run, on a 16-core GPU host that has torch (with
# numpy and pyarrow) but no cargo: CUDA linkage through tch, `base` training throughput and MFU
# beside PyTorch eager and torch.compile running the same architecture (benches/gpu_lm_train.py),
# `small` zero-shot on aus_retail, 30,000 series of LM forecasts, and the demo's three pipelines.
# Prepare here (the release binary, built with scripts/env.sh sourced):
#   mkdir -p .device/aus_retail && cp target/release/restock .device/ && strip .device/restock && xz -T2 -f .device/restock
#   restock datasets fetch aus_retail && cp .data/aus_retail/*.parquet .device/aus_retail/
# then, on the device, `bash benches/gpu_check.sh` with .device carried (it is git-ignored).
# Every section has its own time limit, most important first; the log is also kept in $OUT.
set -uo pipefail
LOG=${OUT:-/tmp}/gpu_check.log
exec > >(tee "$LOG") 2>&1
python3 -c "import lzma,shutil;shutil.copyfileobj(lzma.open('.device/restock.xz'),open('.device/restock','wb'))"
chmod +x .device/restock
TORCH_LIB=$(python3 -c 'import torch,os;print(os.path.dirname(torch.__file__))')/lib
export LD_LIBRARY_PATH=$TORCH_LIB
R=./.device/restock
echo "== host"; nproc; free -g | head -2; nvidia-smi --query-gpu=name,memory.total,clocks.max.sm --format=csv,noheader
echo "== doctor (libtorch_cuda.so is opened on first use: expect 'cuda available: true')"
timeout 60 $R doctor | tee /tmp/doctor.txt
if ! grep -qiE 'cuda available: *(true|yes)' /tmp/doctor.txt; then
    echo "!! CUDA not available through dlopen: retrying with LD_PRELOAD=libtorch_cuda.so (the link-line fallback)"
    export LD_PRELOAD=$TORCH_LIB/libtorch_cuda.so
    timeout 60 $R doctor
fi

echo "== LM: base training, PyTorch eager and torch.compile (bf16 autocast), the same architecture, batch 16 x 1024"
timeout 200 python3 benches/gpu_lm_train.py models/base.yaml 30 16 1024 | tee /tmp/flops.txt
mflop=$(grep -o '[0-9]* MFLOP per token' /tmp/flops.txt | cut -d' ' -f1)
echo "== LM: restock pretrain --config models/base.yaml (synthetic corpus drawn on the CPU each step, bf16 on the GPU)"
# Two runs: the difference between them is the steady rate, without CUDA's start-up.
for steps in 40 240; do
    timeout 150 $R pretrain -q --config models/base.yaml --out /tmp/lm-base-$steps --steps $steps --batch 16 --window 1024 --checkpoint-every 100000 2>&1 | tail -1 | tee /tmp/train-$steps.txt
done
read -r t1 s1 < <(grep -oE '[0-9]+ tokens in [0-9.]+ s' /tmp/train-40.txt | awk '{print $1, $4}')
read -r t2 s2 < <(grep -oE '[0-9]+ tokens in [0-9.]+ s' /tmp/train-240.txt | awk '{print $1, $4}')
awk -v t1="${t1:-0}" -v s1="${s1:-0}" -v t2="${t2:-0}" -v s2="${s2:-1}" -v f="${mflop:-0}" 'BEGIN {
    tps = (s2 > s1) ? (t2 - t1) / (s2 - s1) : 0
    printf "restock (steady, 200 steps) %12.0f tokens/s  %7.1f TFLOP/s  MFU %5.1f %% (of 989)\n", tps, tps * f / 1e6, 100 * tps * f / 1e6 / 989 }'

echo "== LM: 30,000 series x 28 steps x 20 paths, small, its 512-token window (484 values + 28 steps; target: under 4 s)"
timeout 60 python3 - <<'EOF'
import numpy as np, pyarrow as pa, pyarrow.parquet as pq, datetime as dt
n, t = 30000, 540
rng = np.random.default_rng(0)
days = np.arange(t)
level = rng.gamma(2.0, 4.0, n)[:, None] * (1 + 0.4 * np.sin(days * 2 * np.pi / 7))[None, :]
value = rng.poisson(level).astype(np.float64).ravel()
ids = np.repeat(np.array([f"s{i}" for i in range(n)], dtype=object), t)
ts = pa.array(np.tile(days, n) + (dt.date(2024, 1, 1) - dt.date(1970, 1, 1)).days, pa.int32()).cast(pa.date32())
pq.write_table(pa.table({"series_id": ids, "ts": ts, "value": value}), "/tmp/s30k.parquet")
print("wrote /tmp/s30k.parquet:", n, "series x", t, "days")
EOF
for n in 1 2; do
    echo "-- --contexts $n (seconds = the LM's wall time, model load included; the batch sized for the GPU)"
    timeout 90 $R evaluate -q --data /tmp/s30k.parquet --horizon 28 --season 7 --methods lm --model models/small --paths 20 --context 512 --contexts $n 2>&1 | tail -3
done
echo "-- --contexts 1 --lm-batch 64 (the CPU's batch size, for comparison)"
timeout 90 $R evaluate -q --data /tmp/s30k.parquet --horizon 28 --season 7 --methods lm --model models/small --paths 20 --context 512 --contexts 1 --lm-batch 64 2>&1 | tail -2

echo "== LM: small zero-shot on aus_retail (20 paths per series, 152 series x 12 steps)"
timeout 60 $R evaluate -q --data .device/aus_retail/long.parquet --horizon 12 --season 12 --methods seasonal_naive,lm --model models/small --paths 20 2>&1 | tail -6

echo "== demo (default size: nightly, lm_nightly with its fine-tune on the GPU, weekly_plan)"
TIMED=(); [ -x /usr/bin/time ] && TIMED=(/usr/bin/time -f "demo wall %e s, peak RSS %M KB")
SECONDS=0
timeout 170 "${TIMED[@]}" $R demo 2>&1 | grep -vE '^\s*$' | tail -40
echo "demo: ${SECONDS} s"
echo "== done"

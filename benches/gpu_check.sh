#!/usr/bin/env bash
# One-shot device check: CUDA linkage through tch, the main job / cleaning benchmark, the LM's
# training throughput and MFU beside PyTorch eager and torch.compile (benches/gpu_lm_train.py),
# and 30,000 series of LM forecasts, on a 16-core GPU host that has torch but no cargo. Prepare here:
#   mkdir -p .device && cp target/release/restock .device/ && strip .device/restock && xz -T2 .device/restock
#   pip download --no-deps --only-binary=:all: --python-version 3.12 --platform manylinux_2_28_x86_64 -d .device duckdb==2.0.1
#   cp benches/gpu_check.sh .device/
#   mkdir -p .device/aus_retail && cp .data/aus_retail/*.parquet .device/aus_retail/   (restock datasets fetch aus_retail)
# then run `bash .device/gpu_check.sh` on the device with .device carried (it is git-ignored).
set -uo pipefail
python3 -c "import lzma,shutil;shutil.copyfileobj(lzma.open('.device/restock.xz'),open('.device/restock','wb'))"
chmod +x .device/restock
export LD_LIBRARY_PATH=$(python3 -c 'import torch,os;print(os.path.dirname(torch.__file__))')/lib
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .device/duckdb-*.whl && export PYTHONPATH=/tmp/site
echo "== host"; nproc; free -g | head -2; nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
echo "== doctor (libtorch_cuda.so is opened on first use: expect 'cuda available: true')"; ./.device/restock doctor
echo "== demo (default size)"; /usr/bin/time -f "demo wall %e s, peak RSS %M KB" ./.device/restock demo 2>&1 | grep -vE '^\s*$' | tail -30
echo "== cleaning bench"; python3 benches/cleaning_vs_duckdb.py --skus 1430 --restock .device/restock 2>&1 | tail -10
echo "== orchestration"; echo "(bench binary not carried)"
echo "== LM: base training, restock (tch) beside PyTorch eager and torch.compile (bf16 autocast), the same architecture"
python3 benches/gpu_lm_train.py models/base.yaml 0 16 1024 | tee /tmp/flops.txt
mflop=$(grep -o '[0-9]* MFLOP per token' /tmp/flops.txt | cut -d' ' -f1)
./.device/restock pretrain --config models/base.yaml --out /tmp/lm-base --steps 40 --batch 16 --window 1024 --checkpoint-every 100000 2>&1 | tail -1 | tee /tmp/restock-train.txt
tps=$(grep -o '[0-9]* tok/s' /tmp/restock-train.txt | cut -d' ' -f1)
awk -v t="${tps:-0}" -v f="${mflop:-0}" 'BEGIN { printf "restock          %12.0f tokens/s  %7.1f TFLOP/s  MFU %5.1f %% (of 989)\n", t, t * f / 1e6, 100 * t * f / 1e6 / 989 }'
python3 benches/gpu_lm_train.py models/base.yaml 30 16 1024
echo "== LM: small zero-shot on aus_retail (20 paths per series, 152 series x 12 steps)"; ./.device/restock evaluate --data .device/aus_retail/long.parquet --horizon 12 --season 12 --methods seasonal_naive,lm --model models/small --paths 20 2>&1 | tail -6
echo "== LM: 30,000 series x 28 steps x 20 paths, small, its 512-token window (484 values + 28 steps; target: under 4 s)"
python3 -c "import duckdb; duckdb.sql(\"COPY (SELECT 's' || i AS series_id, DATE '2024-01-01' + CAST(t AS INTEGER) AS ts, CAST(floor(random() * 8 * (1 + 0.4 * sin(t * 2 * pi() / 7))) AS DOUBLE) AS value FROM range(30000) r(i), range(540) s(t)) TO '/tmp/s30k.parquet' (FORMAT parquet)\")"
for n in 1 2; do
    echo "-- --contexts $n (seconds = the LM's wall time, model load included)"
    ./.device/restock evaluate -q --data /tmp/s30k.parquet --horizon 28 --season 7 --methods lm --model models/small --paths 20 --context 512 --contexts $n 2>&1 | tail -3
done

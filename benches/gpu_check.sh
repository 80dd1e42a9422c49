#!/usr/bin/env bash
# One-shot device check: CUDA linkage through tch, and the main job / cleaning benchmark on a
# 16-core GPU host that has torch but no cargo. Prepare here:
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
echo "== LM: base pretraining throughput on the GPU (tokens/s)"; /usr/bin/time -f "wall %e s" ./.device/restock pretrain --config models/base.yaml --out /tmp/lm-base --steps 40 --batch 16 --window 1024 --checkpoint-every 100000 2>&1 | tail -2
echo "== LM: small zero-shot on aus_retail (20 paths per series, 152 series x 12 steps)"; ./.device/restock evaluate --data .device/aus_retail/long.parquet --horizon 12 --season 12 --methods seasonal_naive,lm --model models/small --paths 20 2>&1 | tail -6

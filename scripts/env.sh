# Sourced by scripts/*: a project-local Python venv with torch (libtorch for the `tch` crate),
# installed on first use. tch 0.24.0 requires exactly torch 2.11.0.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
TORCH_VERSION=2.11.0
VENV="$ROOT/.venv"
if [ ! -f "$VENV/.torch-$TORCH_VERSION" ]; then
    echo "setting up $VENV with torch==$TORCH_VERSION (one time, ~5 GB)…" >&2
    python3 -m venv "$VENV"
    "$VENV/bin/python3" -m pip install --quiet --disable-pip-version-check "torch==$TORCH_VERSION"
    touch "$VENV/.torch-$TORCH_VERSION"
fi
export PATH="$VENV/bin:$PATH"
export LIBTORCH_USE_PYTORCH=1
# Dev-profile builds are optimised (see Cargo.toml); keep incremental state out of the way of CI caches.
export CARGO_TERM_PROGRESS_WHEN=${CARGO_TERM_PROGRESS_WHEN:-auto}

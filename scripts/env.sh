# Sourced by scripts/*: libtorch for the `tch` crate comes from the torch 2.11.0 PyPI wheel,
# installed once into a project-local .venv (tch 0.24.0 requires exactly torch 2.11.0).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
TORCH_VERSION=2.11.0
VENV="$ROOT/.venv"

# Where `python3 -m venv` is unavailable (Debian without python3-venv), packages go to
# .venv/site with `pip --target` and are put on PYTHONPATH instead.
use_env() {
    if [ -x "$VENV/bin/python3" ]; then
        export PATH="$VENV/bin:$PATH"
    else
        export PYTHONPATH="$VENV/site${PYTHONPATH:+:$PYTHONPATH}"
    fi
}

pip_install() {
    if [ -x "$VENV/bin/python3" ]; then
        "$VENV/bin/python3" -m pip install --quiet --disable-pip-version-check "$@"
    else
        PIP_BREAK_SYSTEM_PACKAGES=1 python3 -m pip install --quiet --disable-pip-version-check --target "$VENV/site" "$@"
    fi
}

if [ ! -f "$VENV/.torch-$TORCH_VERSION" ]; then
    echo "setting up $VENV with torch==$TORCH_VERSION (one time, ~5 GB)…" >&2
    if ! python3 -m venv "$VENV" 2>/dev/null; then
        echo "python3 -m venv is unavailable; installing into $VENV/site with pip --target" >&2
        rm -rf "$VENV" && mkdir -p "$VENV/site"
    fi
    pip_install "torch==$TORCH_VERSION"
    touch "$VENV/.torch-$TORCH_VERSION"
fi
use_env
export LIBTORCH_USE_PYTORCH=1

# HiGHS (the `highs` crate, for the allocate stage) builds from source: it needs cmake and
# libclang (bindgen). Installed with apt-get where missing and we may (root, as in CI).
if ! command -v cmake >/dev/null 2>&1 || ! ls /usr/lib/llvm-*/lib/libclang.so >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        echo "installing cmake and libclang-dev for the HiGHS build (one time)…" >&2
        (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends cmake libclang-dev) >&2
    else
        echo "warning: building HiGHS needs cmake and libclang-dev; install them (e.g. sudo apt-get install cmake libclang-dev)" >&2
    fi
fi

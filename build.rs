//! Link-time set-up for libtorch (through `tch`/`torch-sys`).
//!
//! * An rpath to the torch library folder lets `restock` run without `LD_LIBRARY_PATH`, and lets
//!   `device::load_cuda` find `libtorch_cuda.so` there.
//! * `libtorch_cuda.so` is deliberately NOT linked (no `--no-as-needed -ltorch_cuda`): mapping it
//!   costs every process ~350 MB resident, SQL-only runs included. `device::load_cuda` opens it
//!   on first use of a model device instead, which registers the CUDA backend just the same.
use std::path::PathBuf;
use std::process::Command;

fn torch_lib_dir() -> Option<PathBuf> {
    if let Ok(dir) = std::env::var("LIBTORCH") {
        return Some(PathBuf::from(dir).join("lib"));
    }
    let python = std::env::var("PYTHON_SYS_EXECUTABLE").unwrap_or_else(|_| "python3".into());
    let out =
        Command::new(python).args(["-c", "import torch, os; print(os.path.join(os.path.dirname(torch.__file__), 'lib'))"]).output().ok()?;
    if !out.status.success() {
        return None;
    }
    let dir = PathBuf::from(String::from_utf8(out.stdout).ok()?.trim());
    dir.is_dir().then_some(dir)
}

fn main() {
    println!("cargo:rerun-if-env-changed=LIBTORCH");
    println!("cargo:rerun-if-env-changed=LIBTORCH_USE_PYTORCH");
    println!("cargo:rerun-if-changed=build.rs");
    // The torch location comes from whichever python3 is first on PATH (the project's venv).
    println!("cargo:rerun-if-env-changed=PATH");
    println!("cargo:rerun-if-env-changed=PYTHONPATH");
    println!("cargo:rerun-if-env-changed=PYTHON_SYS_EXECUTABLE");
    let Some(lib) = torch_lib_dir() else {
        println!("cargo:warning=torch library folder not found; relying on LD_LIBRARY_PATH at run time");
        return;
    };
    // If that folder moves or disappears, the baked-in rpath is stale: build again.
    println!("cargo:rerun-if-changed={}", lib.display());
    println!("cargo:rustc-link-search=native={}", lib.display());
    println!("cargo:rustc-link-arg=-Wl,-rpath,{}", lib.display());
    // For `restock doctor` and the tests: where this build's libtorch lives.
    println!("cargo:rustc-env=RESTOCK_TORCH_LIB={}", lib.display());
}

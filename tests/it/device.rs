//! libtorch from the binary: the CUDA backend is loaded on demand, and kernels run.
use std::path::Path;

use crate::common::Project;

#[test]
fn doctor_loads_the_cuda_backend_on_demand_and_runs_a_kernel() {
    let out = Project::empty().ok(&["doctor"]);
    let err: f64 = out
        .lines()
        .find_map(|l| l.strip_prefix("matmul self-test max abs error vs CPU: "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no self-test line:\n{out}"));
    assert!(err < 1e-3, "{out}");
    // The binary does not link libtorch_cuda (see build.rs); the PyPI torch wheel is a CUDA
    // build, so its CUDA backend must still load, GPU or not.
    let lib = option_env!("RESTOCK_TORCH_LIB").expect("build.rs found the torch library folder");
    let cuda_build = Path::new(lib).join("libtorch_cuda.so").exists();
    assert_eq!(out.contains("libtorch CUDA backend: loaded"), cuda_build, "{out}");
}

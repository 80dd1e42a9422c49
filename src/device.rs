//! libtorch device selection and a self-test, shared by `restock doctor` and (later) the model
//! stages. GPU when CUDA is usable, CPU otherwise.
//!
//! Invariant: every path into libtorch goes through [`best`] (or [`load_cuda`]) first. libtorch
//! decides once, at its first CUDA query, whether CUDA exists; that must come after
//! `libtorch_cuda.so` is loaded, or CUDA stays off for the life of the process.
use std::ffi::{CStr, CString};
use std::sync::OnceLock;

use tch::{Device, Kind, Tensor};

/// The library that holds libtorch's CUDA kernels and registers its CUDA backend.
const TORCH_CUDA_LIB: &str = "libtorch_cuda.so";

/// Load libtorch's CUDA backend into the process, once. Returns why not where it cannot.
///
/// The binary links only libtorch's CPU part. `libtorch_cuda.so` (with cuDNN, cuBLAS, NCCL) adds
/// ~350 MB to the resident size of every process that maps it, because its static initialisers
/// touch most of its pages: that is a third of the SQL stages' memory budget, spent by runs that
/// never touch a GPU. So it is opened here, on first use, with `RTLD_GLOBAL` so its kernels and
/// CUDA hooks register with the already-loaded CPU library exactly as at start-up. The search
/// uses the binary's rpath (the torch folder it was built against) and `LD_LIBRARY_PATH`.
pub fn load_cuda() -> Result<(), String> {
    static LOADED: OnceLock<Result<(), String>> = OnceLock::new();
    LOADED
        .get_or_init(|| {
            let name = CString::new(TORCH_CUDA_LIB).expect("no NUL in the name");
            // SAFETY: dlopen/dlerror are thread-safe in glibc; the handle is never closed, so the
            // library stays loaded for the life of the process, as a linked library would.
            unsafe {
                let handle = libc::dlopen(name.as_ptr(), libc::RTLD_NOW | libc::RTLD_GLOBAL);
                if handle.is_null() {
                    let err = libc::dlerror();
                    let why = if err.is_null() { "unknown error".into() } else { CStr::from_ptr(err).to_string_lossy().into_owned() };
                    return Err(format!("{TORCH_CUDA_LIB} not loaded ({why}); model stages use the CPU"));
                }
            }
            Ok(())
        })
        .clone()
}

/// Whether libtorch's CUDA backend is in the process (true even on a machine without a GPU).
pub fn cuda_backend_loaded() -> bool {
    let _ = load_cuda();
    tch::utils::has_cudart()
}

/// CUDA devices usable here (0 without a GPU): how many `resources: { gpu: 1 }` stages may run
/// at once.
pub fn gpu_count() -> usize {
    let _ = load_cuda();
    if tch::Cuda::is_available() { tch::Cuda::device_count().max(0) as usize } else { 0 }
}

pub fn best() -> Device {
    let _ = load_cuda();
    Device::cuda_if_available()
}

#[derive(Debug)]
pub struct DeviceReport {
    /// `Ok` when libtorch's CUDA backend is loaded, else why not.
    pub cuda_backend: Result<(), String>,
    pub cuda_available: bool,
    pub cuda_devices: i64,
    pub cudnn: bool,
    pub device: String,
    /// Max abs error of a small matmul against the CPU result: proves kernels actually run.
    pub matmul_check: f64,
}

pub fn report() -> DeviceReport {
    let device = best();
    let a = Tensor::randn([64, 64], (Kind::Float, Device::Cpu));
    let b = Tensor::randn([64, 64], (Kind::Float, Device::Cpu));
    let cpu = a.matmul(&b);
    let on = a.to_device(device).matmul(&b.to_device(device)).to_device(Device::Cpu);
    let err = (cpu - on).abs().max().double_value(&[]);
    DeviceReport {
        cuda_backend: load_cuda().and_then(|()| {
            if cuda_backend_loaded() { Ok(()) } else { Err(format!("{TORCH_CUDA_LIB} loaded but registered no CUDA backend")) }
        }),
        cuda_available: tch::Cuda::is_available(),
        cuda_devices: tch::Cuda::device_count(),
        cudnn: tch::Cuda::cudnn_is_available(),
        device: format!("{device:?}"),
        matmul_check: err,
    }
}

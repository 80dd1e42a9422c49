//! libtorch device selection and a self-test, shared by `restock doctor` and (later) the model
//! stages. GPU when CUDA is usable, CPU otherwise.
use tch::{Device, Kind, Tensor};

pub fn best() -> Device {
    Device::cuda_if_available()
}

#[derive(Debug)]
pub struct DeviceReport {
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
        cuda_available: tch::Cuda::is_available(),
        cuda_devices: tch::Cuda::device_count(),
        cudnn: tch::Cuda::cudnn_is_available(),
        device: format!("{device:?}"),
        matmul_check: err,
    }
}

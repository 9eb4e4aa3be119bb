//! Choosing the compute device and the training precision. The CPU (`flex`) backend is always
//! built; GPU backends sit behind cargo features.
use burn::prelude::*;
use burn::tensor::FloatDType;

/// Which backend to run on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
#[serde(rename_all = "lowercase")]
pub enum DeviceKind {
    /// burn's flex CPU backend (the default).
    #[default]
    Cpu,
    /// Vulkan GPU backend (build with `--features vulkan`).
    Vulkan,
    /// NVIDIA GPU through CUDA (build with `--features cuda`; needs the NVIDIA driver, NVRTC
    /// and the CUDA headers at run time).
    Cuda,
}

/// The device for `kind`, or an error when that backend was not compiled in or cannot start.
pub fn device(kind: DeviceKind) -> crate::Result<Device> {
    match kind {
        DeviceKind::Cpu => Ok(Device::flex()),
        #[cfg(feature = "vulkan")]
        DeviceKind::Vulkan => Ok(Device::vulkan(burn::tensor::DeviceKind::DiscreteGpu(0))),
        #[cfg(not(feature = "vulkan"))]
        DeviceKind::Vulkan => Err(not_built("vulkan")),
        #[cfg(feature = "cuda")]
        DeviceKind::Cuda => cuda::open(),
        #[cfg(not(feature = "cuda"))]
        DeviceKind::Cuda => Err(not_built("cuda")),
    }
}

#[allow(dead_code)] // unused when every GPU feature is on
fn not_built(feature: &str) -> crate::Error {
    crate::Error::invalid(
        "device",
        format!(
            "this binary was built without the `{feature}` feature; rebuild with \
             `cargo build --release --features {feature}`"
        ),
    )
}

#[cfg(feature = "cuda")]
mod cuda {
    use super::*;

    /// What a machine needs for `--device cuda`, for error messages.
    const NEEDS: &str = "the CUDA device needs the NVIDIA driver (libcuda.so.1), NVRTC \
        (libnvrtc.so from the CUDA toolkit 12.x/13.x, on the library path) and the CUDA headers \
        (found through CUDA_PATH, /usr/local/cuda, /opt/cuda or nvcc in /usr/bin)";

    /// `Device::cuda(0)`, after proving that it works: cubecl loads libcuda lazily and panics
    /// when it is missing, and NVRTC (and the headers it includes) are first needed when the
    /// first kernel compiles. One small computation read back to the host goes through all of
    /// it, so a missing piece is reported here as an error rather than as a panic mid-run.
    pub(super) fn open() -> crate::Result<Device> {
        // SAFETY: each call only tries to dlopen the library's candidate names.
        if !unsafe { cudarc::driver::sys::is_culib_present() } {
            return Err(fail("the NVIDIA driver library libcuda.so was not found"));
        }
        // SAFETY: as above.
        if !unsafe { cudarc::nvrtc::sys::is_culib_present() } {
            return Err(fail(
                "NVRTC (libnvrtc.so) was not found; add the CUDA toolkit's lib64 folder to \
                 LD_LIBRARY_PATH",
            ));
        }
        let probe = || -> std::result::Result<Vec<f32>, String> {
            let dev = Device::cuda(0);
            let x: Tensor<1> = Tensor::from_data(TensorData::new(vec![1f32, 2.0], [2]), &dev);
            (x * 2.0 + 1.0)
                .into_data()
                .try_to_vec::<f32>()
                .map_err(|e| format!("{e:?}"))
        };
        // The panic message becomes the error; the default hook would print it as a crash.
        let hook = std::panic::take_hook();
        std::panic::set_hook(Box::new(|_| {}));
        let got = std::panic::catch_unwind(probe);
        std::panic::set_hook(hook);
        let detail = match got {
            Ok(Ok(v)) if v == [3.0, 5.0] => return Ok(Device::cuda(0)),
            Ok(Ok(v)) => format!("a test computation returned {v:?} instead of [3, 5]"),
            Ok(Err(e)) => e,
            Err(panic) => panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "unknown failure".into()),
        };
        Err(fail(&detail))
    }

    fn fail(detail: &str) -> crate::Error {
        crate::Error::invalid(
            "device",
            format!(
                "could not start CUDA device 0: {}. {NEEDS}",
                detail.trim().replace('\n', " ")
            ),
        )
    }
}

/// Floating-point precision of the network's arithmetic in training.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    /// Everything in f32. (On a GPU, burn's autotuned f32 matrix kernels may use TF32 tensor
    /// cores where the chip has them, as PyTorch's convolutions do by default.)
    #[default]
    F32,
    /// Mixed precision: f32 master weights, optimizer state, loss and EMA; the network's
    /// forward and backward in bf16 (the weights are cast to bf16 inside the autodiff graph,
    /// so their gradients come back to the f32 weights in f32).
    Bf16,
}

impl Precision {
    /// The default for a device: bf16 where it is the fast path (NVIDIA tensor cores), f32 on
    /// the CPU (flex's bf16 kernels convert to f32 and back, so they only cost time).
    pub fn default_for(kind: DeviceKind) -> Self {
        match kind {
            DeviceKind::Cuda => Precision::Bf16,
            DeviceKind::Cpu | DeviceKind::Vulkan => Precision::F32,
        }
    }

    /// The float type the network computes in.
    pub fn dtype(self) -> FloatDType {
        match self {
            Precision::F32 => FloatDType::F32,
            Precision::Bf16 => FloatDType::BF16,
        }
    }

    /// Errors when `device` cannot compute in this precision.
    pub fn check(self, device: &Device) -> crate::Result<()> {
        if device.supports_dtype(self.dtype()) {
            Ok(())
        } else {
            Err(crate::Error::invalid(
                "train.precision",
                format!("{self:?} is not supported by this device; train in f32"),
            ))
        }
    }
}

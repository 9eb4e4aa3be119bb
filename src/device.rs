//! Choosing the compute device. The CPU (`flex`) backend is always built; GPU backends sit
//! behind cargo features.
use burn::prelude::*;

/// Which backend to run on.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Default,
    serde::Serialize,
    serde::Deserialize,
    clap::ValueEnum,
)]
#[serde(rename_all = "lowercase")]
pub enum DeviceKind {
    /// burn's flex CPU backend (the default).
    #[default]
    Cpu,
    /// Vulkan GPU backend (build with `--features vulkan`).
    Vulkan,
}

/// The device for `kind`, or an error when that backend was not compiled in.
pub fn device(kind: DeviceKind) -> crate::Result<Device> {
    match kind {
        DeviceKind::Cpu => Ok(Device::flex()),
        #[cfg(feature = "vulkan")]
        DeviceKind::Vulkan => Ok(Device::vulkan(burn::tensor::DeviceKind::DiscreteGpu(0))),
        #[cfg(not(feature = "vulkan"))]
        DeviceKind::Vulkan => Err(crate::Error::invalid(
            "--device",
            "this binary was built without the `vulkan` feature; rebuild with `cargo build --release --features vulkan`",
        )),
    }
}

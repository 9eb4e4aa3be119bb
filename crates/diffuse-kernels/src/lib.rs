//! The CPU kernels of `diffuse`: fused operations that burn composes from many small ones, each
//! as kernel + forward + backward with the reference it is tested against beside it, and the
//! runtime choice of their SIMD width, and (feature `cube`) their GPU versions in CubeCL.
//!
//! - [`group_norm`]: GroupNorm → SiLU (→ dropout) in one pass, forward and backward (the UNet).
//! - [`softmax`]: the last-axis softmax of the UNet's training attention.
//! - [`time_mlp`]: the 2D workflow's time-gated MLP (SimpleNet): training step (forward,
//!   backward, Adam) and sampling forward on host buffers.
//! - [`embedding`]: the sinusoidal timestep embedding from a table.
//! - [`simd`]: the vectorisable building blocks and the per-CPU dispatch ([`SimdLevel`]).
//! - [`options`]: the switches, as one typed [`KernelOptions`] (environment variables are
//!   documented overrides).
//!
//! The fused kernels run on f32 tensors of burn's flex (CPU) backend; every other device and
//! dtype runs the reference (burn's composed operations), which computes the same function.
//! Sums run in f64 or in a fixed order, so results depend neither on the thread count nor on
//! the SIMD width. The convolution kernels live in the vendored burn-flex
//! (`vendor/burn-flex/PATCHES.md`); their switches are part of [`KernelOptions`].
#[cfg(all(
    feature = "cube",
    not(any(feature = "wgpu", feature = "vulkan", feature = "cuda"))
))]
compile_error!("diffuse-kernels: `cube` needs a CubeCL runtime; enable `wgpu`, `vulkan` or `cuda`");
pub mod adam;
#[cfg(feature = "cube")]
pub mod cube;
pub mod embedding;
mod flex;
pub mod group_norm;
pub mod options;
pub mod simd;
pub mod softmax;
pub mod time_mlp;

#[cfg(feature = "cube")]
pub use cube::is_cube_f32;
pub use flex::is_flex_f32;
pub use options::{effective_simd, options, set_options, KernelOptions};
pub use simd::{with_max_simd, SimdLevel};

/// A kernel was called with buffers that do not fit each other.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct KernelError(pub String);

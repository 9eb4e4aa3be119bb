//! Shared helpers of the CubeCL kernels (feature `cube`): how the kernels reach the tensors of
//! burn's CubeCL backend. The kernels themselves live beside their CPU versions
//! (`group_norm/cube.rs`, …).
use burn::prelude::*;
use burn::tensor::DType;

/// Whether `x` is an f32 tensor on a CubeCL device (CUDA, wgpu, Vulkan, …), with or without
/// autodiff: what the CubeCL kernels accept.
pub fn is_cube_f32<const D: usize>(x: &Tensor<D>) -> bool {
    x.dtype() == DType::F32
        && matches!(
            x.device().inner().as_dispatch(),
            burn::backend::DispatchDevice::Cube(_)
        )
}

//! Softmax over the last axis as one CPU kernel, forward and backward, for the UNet's
//! attention during training.
//!
//! Under autodiff burn runs attention as its composed fallback, whose NaN-safe softmax makes
//! about ten passes over the B·HW·HW score matrix (64 MB per 32×32 attention block at batch 16)
//! forward and more backward. Here one pass per row computes max, exp and sum in cache, and
//! the backward is dx = y ⊙ (dy − Σ dy·y) (the softmax Jacobian applied row by row), reading
//! the saved output once.
//!
//! Rows are independent and each is computed by one thread with fixed-order sums, so results
//! do not depend on the thread count; every SIMD width gives the same bits (see [`crate::simd`]).
//!
//! Files: [`kernel`] (the host kernel), `forward` / `backward` (burn backend extension and
//! autodiff node); the reference is burn's own `softmax`, which every other device runs
//! (`tests/softmax.rs` compares the two).
use burn::backend::Dispatch;
use burn::prelude::*;

mod backward;
mod forward;
pub mod kernel;

pub use backward::SoftmaxKernels;
pub use forward::SoftmaxBackend;

/// Whether the fused kernel applies: an f32 tensor on the CPU backend, and
/// [`KernelOptions::fused_softmax`](crate::KernelOptions::fused_softmax) on.
pub fn fused_applies<const D: usize>(x: &Tensor<D>) -> bool {
    crate::flex::is_flex_f32(x) && crate::options().fused_softmax
}

/// softmax over the last axis through the fused kernel; needs an f32 tensor on the flex
/// backend (see [`fused_applies`]).
pub fn softmax_last_fused<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    Tensor::from_dispatch(<Dispatch as SoftmaxBackend>::softmax_last(
        x.into_dispatch(),
    ))
}

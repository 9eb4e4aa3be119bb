//! GroupNorm followed by SiLU (and, in training, dropout) as one CPU kernel, forward and
//! backward.
//!
//! burn composes GroupNorm from seven tensor operations (mean, subtract, square, mean, add,
//! sqrt, divide) plus the affine multiply and add, and SiLU from three more; autodiff then runs a
//! backward kernel for each, so one `GN → SiLU` over a b16·128·64² activation reads or writes
//! that 33 MB tensor about thirty times per training step. Here the forward reads x once for the
//! statistics and once to write y, and the backward reads x and dy once each and writes dx once,
//! with one (batch, group) block (a few tens of KB) in cache at a time.
//!
//! Math (Wu & He 2018, eq. 1–2, with the SiLU of Elfwing et al. 2018): for group g of sample b,
//! μ, σ² = mean and (biased) variance over the group's channels and positions, x̂ = (x−μ)/√(σ²+ε),
//! z = γ_c x̂ + β_c, y = z·sigmoid(z). Backward: dz = dy·s(1 + z(1−s)) with s = sigmoid(z) (or
//! dz = dy without the SiLU); dβ_c = Σ dz, dγ_c = Σ dz·x̂ over batch and positions; with
//! d = γ_c dz, dx = (d − mean_g(d) − x̂·mean_g(d·x̂)) / √(σ²+ε).
//!
//! Statistics and the reductions of the backward accumulate in f64, so the result does not
//! depend on the thread count or the CPU's SIMD width; every block is computed by one thread and
//! the per-sample parameter gradients are summed in batch order.
//!
//! f32 tensors on the flex (CPU) backend take the host kernel, and with the `cube` feature f32
//! tensors on a CubeCL device (CUDA, wgpu, Vulkan) take the CubeCL kernels of [`cube`] (one
//! launch forward, two backward, where burn runs ~10 forward and more backward); anything else
//! (bf16, other backends) runs burn's composed operations, which compute the same function.
//!
//! Files: [`kernel`] (the host kernel), [`cube`] (the CubeCL kernels), `forward` / `backward`
//! (burn backend extension and autodiff node), [`reference`] (burn's composed operations, the
//! behaviour to match).
use burn::backend::Dispatch;
use burn::nn::{Dropout, GroupNorm};
use burn::prelude::*;
use burn::tensor::Distribution;

mod backward;
#[cfg(feature = "cube")]
pub mod cube;
mod forward;
pub mod kernel;
pub mod reference;

pub use backward::GroupNormSiluKernels;
pub use forward::GroupNormSiluBackend;
pub use kernel::{keep_mask, Epilogue, GroupNormSpec};
pub use reference::group_norm_act_composed;

use crate::flex::is_flex_f32;

/// Whether a fused kernel applies: f32 on the CPU backend (or, with the `cube` feature, on a
/// CubeCL device), an affine GroupNorm, and
/// [`KernelOptions::fused_group_norm`](crate::KernelOptions::fused_group_norm) on (one switch
/// for both).
fn fused_applies(norm: &GroupNorm, x: &Tensor<4>) -> bool {
    norm.affine && on_fused_device(x) && crate::options().fused_group_norm
}

/// f32 on a device with a fused kernel.
fn on_fused_device(x: &Tensor<4>) -> bool {
    #[cfg(feature = "cube")]
    if crate::cube::is_cube_f32(x) {
        return true;
    }
    is_flex_f32(x)
}

/// GroupNorm(x), followed by SiLU when `act`; the fused kernel where it applies, burn's
/// composed operations otherwise.
pub fn group_norm_act(norm: &GroupNorm, x: Tensor<4>, act: bool) -> Tensor<4> {
    if fused_applies(norm, &x) {
        let ep = Epilogue {
            silu: act,
            dropout: 0.0,
            seed: 0,
        };
        group_norm_act_fused(norm, x, ep)
    } else {
        group_norm_act_composed(norm, x, act)
    }
}

/// Dropout(SiLU(GroupNorm(x))), dropout active only under autodiff (training), as burn's
/// `Dropout`. The fused kernel draws its mask from a seed taken from the backend's random
/// stream (so `Device::seed` makes it reproducible); the composed path uses burn's `Dropout`.
pub fn group_norm_silu_dropout(norm: &GroupNorm, x: Tensor<4>, dropout: &Dropout) -> Tensor<4> {
    if !fused_applies(norm, &x) {
        return dropout.forward(group_norm_act_composed(norm, x, true));
    }
    let device = x.device();
    let active = device.is_autodiff() && dropout.prob > 0.0;
    let seed = if active {
        // 4 × 16 random bits from the backend's stream.
        let u = Tensor::<1>::random([4], Distribution::Uniform(0.0, 65536.0), &device.inner());
        let u: Vec<f32> = u.into_data().try_to_vec().unwrap_or_default();
        u.iter().fold(0u64, |s, &v| (s << 16) | (v as u64 & 0xffff))
    } else {
        0
    };
    let ep = Epilogue {
        silu: true,
        dropout: if active { dropout.prob } else { 0.0 },
        seed,
    };
    group_norm_act_fused(norm, x, ep)
}

/// The fused kernel. Needs an affine GroupNorm and an f32 tensor on the flex backend or (feature
/// `cube`) a CubeCL device, with or without autodiff; see [`group_norm_act`] for the
/// dispatching version.
pub fn group_norm_act_fused(norm: &GroupNorm, x: Tensor<4>, ep: Epilogue) -> Tensor<4> {
    let gamma = norm.gamma.as_ref().expect("affine GroupNorm").val();
    let beta = norm.beta.as_ref().expect("affine GroupNorm").val();
    let spec = GroupNormSpec {
        groups: norm.num_groups,
        eps: norm.epsilon,
        epilogue: ep,
    };
    let y = <Dispatch as GroupNormSiluBackend>::group_norm_silu(
        x.into_dispatch(),
        gamma.into_dispatch(),
        beta.into_dispatch(),
        spec,
    );
    Tensor::from_dispatch(y)
}

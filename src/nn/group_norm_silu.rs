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
//! Only f32 tensors on the flex (CPU) backend take this path; anything else (bf16, a GPU) runs
//! burn's composed operations, which compute the same function.
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::autodiff::NodeId;
use burn::backend::tensor::FloatTensor;
use burn::backend::{backend_extension, Autodiff, AutodiffBackend, Backend, Dispatch, Flex};
use burn::nn::{Dropout, GroupNorm};
use burn::prelude::*;
use burn::tensor::activation::silu;
use burn::tensor::Distribution;
use burn_flex::FlexTensor;
use rayon::prelude::*;

use super::cpu_simd::{f32s, is_flex_f32, multiversion, sigmoid, sum_f64, tensor_like};

/// A backend that can run the fused GroupNorm (+ SiLU, + dropout).
#[backend_extension(Flex, Autodiff)]
pub trait GroupNormSiluBackend: Backend {
    /// y = Dropout(SiLU(GroupNorm(x; γ, β))) for x: [B, C, …], γ, β: [C], with SiLU and
    /// dropout as `ep` says.
    fn group_norm_silu(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        groups: usize,
        eps: f64,
        ep: Epilogue,
    ) -> FloatTensor<Self>;
}

/// The kernels of a concrete (non-autodiff) backend.
pub trait GroupNormSiluKernels: Backend {
    /// (dx, dγ, dβ) for the output gradient `dy`.
    #[allow(clippy::too_many_arguments)]
    fn group_norm_silu_backward(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        dy: FloatTensor<Self>,
        groups: usize,
        eps: f64,
        ep: Epilogue,
    ) -> [FloatTensor<Self>; 3];
}

/// Shape of one call: B samples of C channels × `hw` positions, in `groups` groups.
#[derive(Debug, Clone, Copy)]
struct Dims {
    b: usize,
    c: usize,
    hw: usize,
    groups: usize,
}

impl Dims {
    fn of(x: &FlexTensor, groups: usize) -> Self {
        let shape = x.layout().shape();
        let (b, c) = (shape[0], shape[1]);
        let hw = shape.iter().skip(2).product();
        Self { b, c, hw, groups }
    }

    fn per_group(&self) -> usize {
        self.c / self.groups
    }
}

/// What follows the normalisation: SiLU or nothing, then dropout or nothing.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Epilogue {
    /// Apply SiLU.
    pub silu: bool,
    /// Dropout probability (0: none).
    pub dropout: f64,
    /// Seed of the dropout mask (see [`keep_mask`]).
    pub seed: u64,
}

impl Epilogue {
    /// Keep threshold on 24 random bits, and the scale 1/(1−p) of kept values.
    #[inline(always)]
    fn dropout_params(&self) -> (u32, f32) {
        let keep = 1.0 - self.dropout;
        (
            (keep * (1u32 << 24) as f64).round() as u32,
            (1.0 / keep) as f32,
        )
    }
}

/// Integer hash of Wellons' "lowbias32" (a full-avalanche 32-bit mixer).
#[inline(always)]
fn mix32(mut x: u32) -> u32 {
    x ^= x >> 16;
    x = x.wrapping_mul(0x7feb_352d);
    x ^= x >> 15;
    x = x.wrapping_mul(0x846c_a68b);
    x ^ (x >> 16)
}

/// The dropout factor of element `i`: `scale` where kept (24 hashed bits of (seed, i) below
/// `threshold`), 0 where dropped. A counter-based mask: the backward regenerates it from the
/// seed instead of storing it, and any split of the work over threads gives the same mask.
#[inline(always)]
pub fn keep_mask(seed: u64, i: usize, threshold: u32, scale: f32) -> f32 {
    let h = mix32(mix32(i as u32 ^ seed as u32).wrapping_add((seed >> 32) as u32));
    if h >> 8 < threshold {
        scale
    } else {
        0.0
    }
}

/// (μ, 1/√(σ²+ε)) of one (sample, group) block, two-pass in f64.
#[inline(always)]
fn block_stats(block: &[f32], eps: f64) -> (f64, f64) {
    let n = block.len() as f64;
    let mean = sum_f64(block.len(), |i| block[i] as f64) / n;
    let var = sum_f64(block.len(), |i| {
        let d = block[i] as f64 - mean;
        d * d
    }) / n;
    (mean, 1.0 / (var + eps).sqrt())
}

/// One (sample, group) block of the forward; `gamma`, `beta` are the group's channels and
/// `base` the index of the block's first element in the whole tensor (for the dropout mask).
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn forward_block(
    yb: &mut [f32],
    xb: &[f32],
    gamma: &[f32],
    beta: &[f32],
    hw: usize,
    eps: f64,
    ep: Epilogue,
    base: usize,
) {
    let (mean, rstd) = block_stats(xb, eps);
    let (threshold, scale) = ep.dropout_params();
    for (k, (yc, xc)) in yb.chunks_mut(hw).zip(xb.chunks(hw)).enumerate() {
        // z = x·a + s with a = γ/σ, s = β − μ·γ/σ.
        let a = (gamma[k] as f64 * rstd) as f32;
        let s = (beta[k] as f64 - mean * gamma[k] as f64 * rstd) as f32;
        if ep.silu {
            for (o, &v) in yc.iter_mut().zip(xc) {
                let z = v * a + s;
                *o = z * sigmoid(z);
            }
        } else {
            for (o, &v) in yc.iter_mut().zip(xc) {
                *o = v * a + s;
            }
        }
        if ep.dropout > 0.0 {
            let start = base + k * hw;
            for (j, o) in yc.iter_mut().enumerate() {
                *o *= keep_mask(ep.seed, start + j, threshold, scale);
            }
        }
    }
}

/// One (sample, group) block of the backward: writes dx and each channel's (Σdz·x̂, Σdz).
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn backward_block(
    dxb: &mut [f32],
    xb: &[f32],
    dyb: &[f32],
    gamma: &[f32],
    beta: &[f32],
    sums: (&mut [f64], &mut [f64]),
    hw: usize,
    eps: f64,
    ep: Epilogue,
    base: usize,
) {
    let (mean, rstd) = block_stats(xb, eps);
    let (threshold, scale) = ep.dropout_params();
    let (mean32, rstd32) = (mean as f32, rstd as f32);
    let (dgb, dbb) = sums;
    let (mut sum_d, mut sum_dxhat) = (0f64, 0f64);
    // First pass: dz into dx's storage, and the per-channel sums.
    for k in 0..gamma.len() {
        let range = k * hw..(k + 1) * hw;
        let (gc, bc) = (gamma[k], beta[k]);
        let (dzc, xc) = (&mut dxb[range.clone()], &xb[range.clone()]);
        dzc.copy_from_slice(&dyb[range]);
        if ep.dropout > 0.0 {
            let start = base + k * hw;
            for (j, o) in dzc.iter_mut().enumerate() {
                *o *= keep_mask(ep.seed, start + j, threshold, scale);
            }
        }
        if ep.silu {
            for (o, &v) in dzc.iter_mut().zip(xc) {
                let z = (v - mean32) * rstd32 * gc + bc;
                let s = sigmoid(z);
                *o *= s * (1.0 + z * (1.0 - s));
            }
        }
        let s_dz = sum_f64(hw, |i| dzc[i] as f64);
        let s_dz_xhat = sum_f64(hw, |i| (dzc[i] * ((xc[i] - mean32) * rstd32)) as f64);
        dgb[k] = s_dz_xhat;
        dbb[k] = s_dz;
        sum_d += gc as f64 * s_dz;
        sum_dxhat += gc as f64 * s_dz_xhat;
    }
    let n = xb.len() as f64;
    let (m1, m2) = ((sum_d / n) as f32, (sum_dxhat / n) as f32);
    // Second pass: dx = (γ·dz − mean(γ·dz) − x̂·mean(γ·dz·x̂)) / σ.
    for k in 0..gamma.len() {
        let gc = gamma[k];
        let range = k * hw..(k + 1) * hw;
        for (o, &v) in dxb[range.clone()].iter_mut().zip(&xb[range]) {
            let xhat = (v - mean32) * rstd32;
            *o = (gc * *o - m1 - xhat * m2) * rstd32;
        }
    }
}

multiversion!(forward_block_mv(yb: &mut [f32], xb: &[f32], gamma: &[f32], beta: &[f32], hw: usize, eps: f64, ep: Epilogue, base: usize) {
    forward_block(yb, xb, gamma, beta, hw, eps, ep, base)
});

multiversion!(backward_block_mv(dxb: &mut [f32], xb: &[f32], dyb: &[f32], gamma: &[f32], beta: &[f32], dgb: &mut [f64], dbb: &mut [f64], hw: usize, eps: f64, ep: Epilogue, base: usize) {
    backward_block(dxb, xb, dyb, gamma, beta, (dgb, dbb), hw, eps, ep, base)
});

fn forward_kernel(
    x: &[f32],
    gamma: &[f32],
    beta: &[f32],
    d: Dims,
    eps: f64,
    ep: Epilogue,
) -> Vec<f32> {
    let cg = d.per_group();
    let mut y = vec![0f32; x.len()];
    y.par_chunks_mut(cg * d.hw)
        .zip(x.par_chunks(cg * d.hw))
        .enumerate()
        .for_each(|(i, (yb, xb))| {
            let ch = (i % d.groups) * cg..(i % d.groups + 1) * cg;
            forward_block_mv(
                yb,
                xb,
                &gamma[ch.clone()],
                &beta[ch],
                d.hw,
                eps,
                ep,
                i * cg * d.hw,
            );
        });
    y
}

/// (dx, per-(sample, channel) Σdz·x̂, per-(sample, channel) Σdz).
#[allow(clippy::too_many_arguments)]
fn backward_kernel(
    x: &[f32],
    gamma: &[f32],
    beta: &[f32],
    dy: &[f32],
    d: Dims,
    eps: f64,
    ep: Epilogue,
) -> (Vec<f32>, Vec<f64>, Vec<f64>) {
    let cg = d.per_group();
    let block = cg * d.hw;
    let mut dx = vec![0f32; x.len()];
    let mut dgamma = vec![0f64; d.b * d.c];
    let mut dbeta = vec![0f64; d.b * d.c];
    dx.par_chunks_mut(block)
        .zip(x.par_chunks(block))
        .zip(dy.par_chunks(block))
        .zip(dgamma.par_chunks_mut(cg).zip(dbeta.par_chunks_mut(cg)))
        .enumerate()
        .for_each(|(i, (((dxb, xb), dyb), (dgb, dbb)))| {
            let ch = (i % d.groups) * cg..(i % d.groups + 1) * cg;
            backward_block_mv(
                dxb,
                xb,
                dyb,
                &gamma[ch.clone()],
                &beta[ch],
                dgb,
                dbb,
                d.hw,
                eps,
                ep,
                i * block,
            );
        });
    (dx, dgamma, dbeta)
}

/// Σ over the batch of per-(sample, channel) sums, in batch order.
fn sum_over_batch(v: &[f64], b: usize, c: usize) -> Vec<f32> {
    (0..c)
        .map(|ch| (0..b).map(|s| v[s * c + ch]).sum::<f64>() as f32)
        .collect()
}

impl GroupNormSiluBackend for Flex {
    fn group_norm_silu(
        x: FlexTensor,
        gamma: FlexTensor,
        beta: FlexTensor,
        groups: usize,
        eps: f64,
        ep: Epilogue,
    ) -> FlexTensor {
        let d = Dims::of(&x, groups);
        let y = forward_kernel(&f32s(&x), &f32s(&gamma), &f32s(&beta), d, eps, ep);
        tensor_like(&x, y)
    }
}

impl GroupNormSiluKernels for Flex {
    fn group_norm_silu_backward(
        x: FlexTensor,
        gamma: FlexTensor,
        beta: FlexTensor,
        dy: FlexTensor,
        groups: usize,
        eps: f64,
        ep: Epilogue,
    ) -> [FlexTensor; 3] {
        let d = Dims::of(&x, groups);
        let (dx, dg, db) = backward_kernel(
            &f32s(&x),
            &f32s(&gamma),
            &f32s(&beta),
            &f32s(&dy),
            d,
            eps,
            ep,
        );
        [
            tensor_like(&x, dx),
            tensor_like(&gamma, sum_over_batch(&dg, d.b, d.c)),
            tensor_like(&beta, sum_over_batch(&db, d.b, d.c)),
        ]
    }
}

#[derive(Debug)]
struct GroupNormSiluBackward;

impl<B: Backend + GroupNormSiluKernels> Backward<B, 3> for GroupNormSiluBackward {
    type State = (NodeId, NodeId, NodeId, usize, f64, Epilogue);

    fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, ckpt: &mut Checkpointer) {
        let [node_x, node_gamma, node_beta] = ops.parents;
        let dy = grads.consume::<B>(&ops.node);
        let (x, gamma, beta, groups, eps, ep) = ops.state;
        let x = ckpt.retrieve_node_output::<B::FloatTensorPrimitive>(x);
        let gamma = ckpt.retrieve_node_output::<B::FloatTensorPrimitive>(gamma);
        let beta = ckpt.retrieve_node_output::<B::FloatTensorPrimitive>(beta);
        let [dx, dgamma, dbeta] = B::group_norm_silu_backward(x, gamma, beta, dy, groups, eps, ep);
        for (node, grad) in [(node_x, dx), (node_gamma, dgamma), (node_beta, dbeta)] {
            if let Some(node) = node {
                grads.register::<B>(node.id, grad);
            }
        }
    }
}

impl<B, C> GroupNormSiluBackend for Autodiff<B, C>
where
    B: Backend + GroupNormSiluBackend + GroupNormSiluKernels,
    C: CheckpointStrategy,
{
    fn group_norm_silu(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        groups: usize,
        eps: f64,
        ep: Epilogue,
    ) -> FloatTensor<Self> {
        let prep = GroupNormSiluBackward
            .prepare::<C>([x.node(), gamma.node(), beta.node()])
            .compute_bound()
            .stateful();
        match prep {
            OpsKind::Tracked(mut prep) => {
                let state = (
                    prep.checkpoint(&x),
                    prep.checkpoint(&gamma),
                    prep.checkpoint(&beta),
                    groups,
                    eps,
                    ep,
                );
                let y = B::group_norm_silu(
                    Self::inner(x),
                    Self::inner(gamma),
                    Self::inner(beta),
                    groups,
                    eps,
                    ep,
                );
                prep.finish(state, y)
            }
            OpsKind::UnTracked(prep) => prep.finish(B::group_norm_silu(
                Self::inner(x),
                Self::inner(gamma),
                Self::inner(beta),
                groups,
                eps,
                ep,
            )),
        }
    }
}

/// Whether the fused kernel applies: f32 on the CPU backend, an affine GroupNorm, and not
/// switched off with `DIFFUSE_FUSED_GROUP_NORM=0` (kept for side-by-side measurements).
fn fused_applies(norm: &GroupNorm, x: &Tensor<4>) -> bool {
    norm.affine && is_flex_f32(x) && std::env::var("DIFFUSE_FUSED_GROUP_NORM").as_deref() != Ok("0")
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

/// burn's GroupNorm module, then SiLU when `act`.
pub fn group_norm_act_composed(norm: &GroupNorm, x: Tensor<4>, act: bool) -> Tensor<4> {
    let y = norm.forward(x);
    if act {
        silu(y)
    } else {
        y
    }
}

/// The fused kernel. Needs an affine GroupNorm and an f32 tensor on the flex backend (with or
/// without autodiff); see [`group_norm_act`] for the dispatching version.
pub fn group_norm_act_fused(norm: &GroupNorm, x: Tensor<4>, ep: Epilogue) -> Tensor<4> {
    let gamma = norm.gamma.as_ref().expect("affine GroupNorm").val();
    let beta = norm.beta.as_ref().expect("affine GroupNorm").val();
    let y = <Dispatch as GroupNormSiluBackend>::group_norm_silu(
        x.into_dispatch(),
        gamma.into_dispatch(),
        beta.into_dispatch(),
        norm.num_groups,
        norm.epsilon,
        ep,
    );
    Tensor::from_dispatch(y)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The widest SIMD version this CPU runs gives bit-identical results to the baseline build
    /// (same operations, same order), so outputs do not depend on the CPU's vector width.
    #[test]
    fn simd_versions_match_the_baseline_bit_for_bit() {
        let (cg, hw) = (4, 37);
        let x: Vec<f32> = (0..cg * hw)
            .map(|i| (i as f32 * 0.71).sin() * 3.0 + 0.5)
            .collect();
        let dy: Vec<f32> = (0..cg * hw).map(|i| (i as f32 * 1.3).cos()).collect();
        let gamma = [1.1f32, 0.9, -0.7, 1.3];
        let beta = [0.1f32, -0.2, 0.3, 0.0];
        for ep in [
            Epilogue {
                silu: true,
                dropout: 0.0,
                seed: 0,
            },
            Epilogue {
                silu: false,
                dropout: 0.0,
                seed: 0,
            },
            Epilogue {
                silu: true,
                dropout: 0.3,
                seed: 0x1234_5678_9abc,
            },
        ] {
            let (mut y0, mut y1) = (vec![0f32; x.len()], vec![0f32; x.len()]);
            forward_block(&mut y0, &x, &gamma, &beta, hw, 1e-5, ep, 7);
            forward_block_mv(&mut y1, &x, &gamma, &beta, hw, 1e-5, ep, 7);
            assert_eq!(y0, y1);
            let (mut d0, mut d1) = (vec![0f32; x.len()], vec![0f32; x.len()]);
            let (mut g0, mut b0, mut g1, mut b1) = ([0f64; 4], [0f64; 4], [0f64; 4], [0f64; 4]);
            backward_block(
                &mut d0,
                &x,
                &dy,
                &gamma,
                &beta,
                (&mut g0, &mut b0),
                hw,
                1e-5,
                ep,
                7,
            );
            backward_block_mv(
                &mut d1, &x, &dy, &gamma, &beta, &mut g1, &mut b1, hw, 1e-5, ep, 7,
            );
            assert_eq!((d0, g0, b0), (d1, g1, b1));
        }
    }

    /// The counter-based mask keeps the requested fraction, scales kept values by 1/(1−p),
    /// and differs between seeds.
    #[test]
    fn keep_mask_keeps_the_requested_fraction() {
        let ep = Epilogue {
            silu: true,
            dropout: 0.1,
            seed: 42,
        };
        let (threshold, scale) = ep.dropout_params();
        let n = 200_000;
        let kept: Vec<f32> = (0..n).map(|i| keep_mask(42, i, threshold, scale)).collect();
        let frac = kept.iter().filter(|&&m| m > 0.0).count() as f64 / n as f64;
        // Binomial standard deviation √(0.09/n) ≈ 6.7e-4: allow 5σ.
        assert!((frac - 0.9).abs() < 3.4e-3, "kept fraction {frac}");
        assert!(kept.iter().all(|&m| m == 0.0 || m == (1.0f64 / 0.9) as f32));
        let other: Vec<f32> = (0..n).map(|i| keep_mask(43, i, threshold, scale)).collect();
        let same = kept.iter().zip(&other).filter(|(a, b)| a == b).count() as f64 / n as f64;
        // Independent masks agree on 0.9² + 0.1² = 82 % of the elements.
        assert!(
            (same - 0.82).abs() < 0.01,
            "masks of two seeds agree on {same}"
        );
    }
}

//! The GPU kernels (CubeCL): the same function as [`kernel`](super::kernel), written once for
//! every CubeCL runtime (CUDA on the target machines; WGSL through wgpu, which CI runs on
//! Mesa's lavapipe).
//!
//! One cube (workgroup) of [`THREADS`] units per (sample, group) block, as the CPU kernel gives
//! one thread per block; the block's `C/G · H·W` elements are contiguous in `[B, C, H, W]`.
//!
//! - Forward (1 launch): μ and σ² of the block, two-pass in f32 (mean, then the mean of the
//!   squared deviations: the one-pass E[x²] − μ² loses the variance to cancellation when
//!   |μ| ≫ σ, and Welford's per-element division costs more than re-reading a block that sits
//!   in cache), then the epilogue y = Dropout(SiLU(γ_c x̂ + β_c)) (Wu & He 2018, eq. 1–2).
//! - Backward (2 launches): per block, the same statistics, each channel's Σdz and Σdz·x̂
//!   (written per (sample, channel) for dγ, dβ), and dx = (γ dz − mean(γ dz) − x̂·mean(γ dz x̂))/σ
//!   (`group_norm/mod.rs`); then a second kernel sums the per-sample dγ, dβ over the batch, in
//!   batch order.
//!
//! Every sum is a fixed tree over the cube's units (each unit first adds its strided share in
//! index order), so results do not depend on scheduling: the same inputs give the same bytes.
//! Accumulation is in f32 (f64 is missing from WGSL and slow on most GPUs): a sum of n terms
//! carries a relative error of about (n/THREADS + log2 THREADS)·2⁻²⁴ of the sum of magnitudes,
//! which `tests/group_norm_cube.rs` states against the CPU kernel's f64 statistics.
//!
//! The dropout mask is [`keep_mask`](super::keep_mask), bit for bit: the same lowbias32 hash of
//! (seed, element index), so a GPU and the CPU given the same seed drop the same elements.
use burn::tensor::{DType, Shape};
use burn_cubecl::kernel::into_contiguous;
use burn_cubecl::ops::numeric::empty_device_contiguous_dtype;
use burn_cubecl::tensor::CubeTensor;
use burn_cubecl::CubeBackend;
use cubecl::prelude::*;

use super::backward::GroupNormSiluKernels;
use super::forward::GroupNormSiluBackend;
use super::kernel::{Dims, GroupNormSpec};

/// Units per cube: a power of two (the tree sums halve it), at most what every runtime allows
/// (WebGPU guarantees 256 invocations per workgroup).
pub const THREADS: u32 = 256;

/// Wellons' lowbias32, as `kernel::mix32`; u32 arithmetic wraps on every CubeCL target.
#[cube]
fn mix32(x: u32) -> u32 {
    let a = (x ^ (x >> 16u32)) * 0x7feb_352du32;
    let b = (a ^ (a >> 15u32)) * 0x846c_a68bu32;
    b ^ (b >> 16u32)
}

/// `keep_mask(seed, i, threshold, scale)` of `kernel.rs`, with the seed split in 32-bit halves.
#[cube]
fn keep_factor(seed_lo: u32, seed_hi: u32, i: u32, threshold: u32, scale: f32) -> f32 {
    let h = mix32(mix32(i ^ seed_lo) + seed_hi);
    let mut f = 0.0f32;
    if (h >> 8u32) < threshold {
        f = scale;
    }
    f
}

/// sigmoid(z) as `simd::sigmoid`.
#[cube]
fn sigmoid(z: f32) -> f32 {
    1.0f32 / (1.0f32 + f32::exp(-z))
}

/// The sum of every unit's `v` over the cube (`CUBE_DIM_X` units, a power of two): a fixed
/// binary tree in shared memory. Every unit gets the result; `shared` may be reused after.
#[cube]
fn cube_sum(shared: &mut Shared<[f32]>, v: f32) -> f32 {
    let u = UNIT_POS_X as usize;
    shared[u] = v;
    sync_cube();
    // The halving stride must be a runtime variable: `threads` is a comptime value, and a
    // `let mut` of a comptime value stays a Rust constant, whose `/=` in a runtime loop
    // expands to a store into a constant (CubeCL's IR verifier: "expected operand type
    // cube.ptr, but found cube.index"). `CUBE_DIM_X` is `threads` at run time.
    let mut stride = CUBE_DIM_X / 2u32;
    while stride > 0u32 {
        if UNIT_POS_X < stride {
            shared[u] += shared[(UNIT_POS_X + stride) as usize];
        }
        sync_cube();
        stride /= 2u32;
    }
    let total = shared[0usize];
    // Nobody overwrites slot 0 (the next call's first write) before everyone has read it.
    sync_cube();
    total
}

/// (μ, 1/√(σ²+ε)) of the `n` elements of `x` from `base`, two-pass.
#[cube]
fn block_stats(
    x: &Tensor<f32>,
    shared: &mut Shared<[f32]>,
    base: usize,
    n: usize,
    eps: f32,
    #[comptime] threads: u32,
) -> (f32, f32) {
    let step = threads as usize;
    let mut acc = 0.0f32;
    let mut i = UNIT_POS_X as usize;
    while i < n {
        acc += x[base + i];
        i += step;
    }
    let mean = cube_sum(shared, acc) / f32::cast_from(n as u32);
    let mut acc2 = 0.0f32;
    let mut j = UNIT_POS_X as usize;
    while j < n {
        let d = x[base + j] - mean;
        acc2 += d * d;
        j += step;
    }
    let var = cube_sum(shared, acc2) / f32::cast_from(n as u32);
    (mean, 1.0f32 / f32::sqrt(var + eps))
}

/// y = Dropout(SiLU(γ x̂ + β)); cube `CUBE_POS_X` = block (sample · groups + group).
#[cube(launch)]
#[allow(clippy::too_many_arguments)]
fn forward_kernel(
    x: &Tensor<f32>,
    gamma: &Tensor<f32>,
    beta: &Tensor<f32>,
    y: &mut Tensor<f32>,
    groups: u32,
    channels_per_group: u32,
    hw: u32,
    eps: f32,
    threshold: u32,
    scale: f32,
    seed_lo: u32,
    seed_hi: u32,
    #[comptime] silu: bool,
    #[comptime] dropout: bool,
    #[comptime] threads: u32,
) {
    let block = CUBE_POS_X as usize;
    let cg = channels_per_group as usize;
    let hw = hw as usize;
    let n = cg * hw;
    let base = block * n;
    let c0 = (block % groups as usize) * cg;
    let mut shared = Shared::<[f32]>::new_slice(threads as usize);
    let (mean, rstd) = block_stats(x, &mut shared, base, n, eps, threads);
    let mut i = UNIT_POS_X as usize;
    while i < n {
        let c = c0 + i / hw;
        // z = x·a + s with a = γ/σ, s = β − μ·γ/σ, as the CPU kernel.
        let a = gamma[c] * rstd;
        let s = beta[c] - mean * a;
        let mut v = x[base + i] * a + s;
        if silu {
            v *= sigmoid(v);
        }
        if dropout {
            v *= keep_factor(seed_lo, seed_hi, (base + i) as u32, threshold, scale);
        }
        y[base + i] = v;
        i += threads as usize;
    }
}

/// dz of one element (dropout mask, then SiLU's derivative at z = γ x̂ + β).
#[cube]
#[allow(clippy::too_many_arguments)]
fn dz_of(
    dy: f32,
    xhat: f32,
    g: f32,
    b: f32,
    index: u32,
    mask: (u32, f32, u32, u32),
    #[comptime] silu: bool,
    #[comptime] dropout: bool,
) -> f32 {
    let mut d = dy;
    if dropout {
        let (threshold, scale, seed_lo, seed_hi) = mask;
        d *= keep_factor(seed_lo, seed_hi, index, threshold, scale);
    }
    if silu {
        let z = xhat * g + b;
        let s = sigmoid(z);
        d *= s * (1.0f32 + z * (1.0f32 - s));
    }
    d
}

/// dx of one block, and its channels' (Σdz·x̂, Σdz) into `dgamma_b`, `dbeta_b` ([B, C]).
#[cube(launch)]
#[allow(clippy::too_many_arguments)]
fn backward_kernel(
    x: &Tensor<f32>,
    dy: &Tensor<f32>,
    gamma: &Tensor<f32>,
    beta: &Tensor<f32>,
    dx: &mut Tensor<f32>,
    dgamma_b: &mut Tensor<f32>,
    dbeta_b: &mut Tensor<f32>,
    groups: u32,
    channels_per_group: u32,
    hw: u32,
    eps: f32,
    threshold: u32,
    scale: f32,
    seed_lo: u32,
    seed_hi: u32,
    #[comptime] silu: bool,
    #[comptime] dropout: bool,
    #[comptime] threads: u32,
) {
    let block = CUBE_POS_X as usize;
    let cg = channels_per_group as usize;
    let hw = hw as usize;
    let n = cg * hw;
    let base = block * n;
    let group = block % groups as usize;
    let sample = block / groups as usize;
    let channels = groups as usize * cg;
    let c0 = group * cg;
    let step = threads as usize;
    let mask = (threshold, scale, seed_lo, seed_hi);
    let mut shared = Shared::<[f32]>::new_slice(threads as usize);
    let (mean, rstd) = block_stats(x, &mut shared, base, n, eps, threads);

    // Per channel: Σdz and Σdz·x̂, and their γ-weighted sums over the group.
    let mut sum_d = 0.0f32;
    let mut sum_dxhat = 0.0f32;
    let mut k = 0usize;
    while k < cg {
        let c = c0 + k;
        let g = gamma[c];
        let b = beta[c];
        let start = base + k * hw;
        let mut a_dz = 0.0f32;
        let mut a_dzx = 0.0f32;
        let mut j = UNIT_POS_X as usize;
        while j < hw {
            let xhat = (x[start + j] - mean) * rstd;
            let dz = dz_of(
                dy[start + j],
                xhat,
                g,
                b,
                (start + j) as u32,
                mask,
                silu,
                dropout,
            );
            a_dz += dz;
            a_dzx += dz * xhat;
            j += step;
        }
        let s_dz = cube_sum(&mut shared, a_dz);
        let s_dzx = cube_sum(&mut shared, a_dzx);
        if UNIT_POS_X == 0u32 {
            dgamma_b[sample * channels + c] = s_dzx;
            dbeta_b[sample * channels + c] = s_dz;
        }
        sum_d += g * s_dz;
        sum_dxhat += g * s_dzx;
        k += 1usize;
    }
    let m1 = sum_d / f32::cast_from(n as u32);
    let m2 = sum_dxhat / f32::cast_from(n as u32);

    // dx = (γ·dz − mean(γ·dz) − x̂·mean(γ·dz·x̂)) / σ, dz recomputed (no scratch buffer).
    let mut i = UNIT_POS_X as usize;
    while i < n {
        let c = c0 + i / hw;
        let g = gamma[c];
        let b = beta[c];
        let xhat = (x[base + i] - mean) * rstd;
        let dz = dz_of(
            dy[base + i],
            xhat,
            g,
            b,
            (base + i) as u32,
            mask,
            silu,
            dropout,
        );
        dx[base + i] = (g * dz - m1 - xhat * m2) * rstd;
        i += step;
    }
}

/// dγ_c, dβ_c = Σ over the batch (in batch order) of the per-sample sums; one unit per channel.
#[cube(launch)]
fn sum_over_batch_kernel(
    dgamma_b: &Tensor<f32>,
    dbeta_b: &Tensor<f32>,
    dgamma: &mut Tensor<f32>,
    dbeta: &mut Tensor<f32>,
    batch: u32,
    channels: u32,
) {
    let c = ABSOLUTE_POS_X as usize;
    let channels = channels as usize;
    if c >= channels {
        terminate!();
    }
    let mut g = 0.0f32;
    let mut b = 0.0f32;
    let mut s = 0usize;
    while s < batch as usize {
        g += dgamma_b[s * channels + c];
        b += dbeta_b[s * channels + c];
        s += 1usize;
    }
    dgamma[c] = g;
    dbeta[c] = b;
}

/// The dropout mask's scalars: threshold on 24 hashed bits, the kept values' scale, the
/// seed's low and high halves.
fn dropout_args(spec: &GroupNormSpec) -> (u32, f32, u32, u32) {
    let (threshold, scale) = spec.epilogue.dropout_params();
    let seed = spec.epilogue.seed;
    (threshold, scale, seed as u32, (seed >> 32) as u32)
}

/// The checks every launch needs: f32, a [B, C, …] shape whose channels the groups divide, and
/// a block index that fits the launch grid and the u32 element index of the dropout mask.
fn dims_of(x: &CubeTensor, spec: &GroupNormSpec) -> Dims {
    assert_eq!(
        x.dtype,
        DType::F32,
        "the CubeCL GroupNorm kernel takes f32 (got {:?})",
        x.dtype
    );
    let shape = x.meta.shape();
    let d = Dims::of(shape, spec.groups);
    assert!(
        d.groups > 0 && d.c.is_multiple_of(d.groups),
        "GroupNorm: {} channels in {} groups",
        d.c,
        d.groups
    );
    assert!(
        shape.num_elements() <= u32::MAX as usize,
        "the CubeCL GroupNorm kernel indexes elements with u32 ({} elements)",
        shape.num_elements()
    );
    d
}

fn f32_like(x: &CubeTensor, shape: Shape) -> CubeTensor {
    empty_device_contiguous_dtype(x.client.clone(), x.device.clone(), shape, DType::F32)
}

/// The forward on a CubeCL device: one launch.
pub fn forward(
    x: CubeTensor,
    gamma: CubeTensor,
    beta: CubeTensor,
    spec: GroupNormSpec,
) -> CubeTensor {
    let (x, gamma, beta) = (
        into_contiguous(x),
        into_contiguous(gamma),
        into_contiguous(beta),
    );
    let d = dims_of(&x, &spec);
    let y = f32_like(&x, x.meta.shape().clone());
    if d.b * d.c * d.hw == 0 {
        return y;
    }
    let ep = spec.epilogue;
    let (threshold, scale, seed_lo, seed_hi) = dropout_args(&spec);
    forward_kernel::launch(
        &x.client.clone(),
        CubeCount::Static((d.b * d.groups) as u32, 1, 1),
        CubeDim::new_1d(THREADS),
        x.into_tensor_arg(),
        gamma.into_tensor_arg(),
        beta.into_tensor_arg(),
        y.clone().into_tensor_arg(),
        d.groups as u32,
        (d.c / d.groups) as u32,
        d.hw as u32,
        spec.eps as f32,
        threshold,
        scale,
        seed_lo,
        seed_hi,
        ep.silu,
        ep.dropout > 0.0,
        THREADS,
    );
    y
}

/// The backward on a CubeCL device: two launches.
pub fn backward(
    x: CubeTensor,
    gamma: CubeTensor,
    beta: CubeTensor,
    dy: CubeTensor,
    spec: GroupNormSpec,
) -> (CubeTensor, CubeTensor, CubeTensor) {
    let (x, dy) = (into_contiguous(x), into_contiguous(dy));
    let (gamma, beta) = (into_contiguous(gamma), into_contiguous(beta));
    let d = dims_of(&x, &spec);
    let dx = f32_like(&x, x.meta.shape().clone());
    let dgamma = f32_like(&x, Shape::new([d.c]));
    let dbeta = f32_like(&x, Shape::new([d.c]));
    if d.b * d.c * d.hw == 0 {
        // No element: dx is empty, and the parameter gradients are sums over nothing.
        return (dx, zeros(dgamma), zeros(dbeta));
    }
    let dgamma_b = f32_like(&x, Shape::new([d.b, d.c]));
    let dbeta_b = f32_like(&x, Shape::new([d.b, d.c]));
    let client = x.client.clone();
    let ep = spec.epilogue;
    let (threshold, scale, seed_lo, seed_hi) = dropout_args(&spec);
    backward_kernel::launch(
        &client,
        CubeCount::Static((d.b * d.groups) as u32, 1, 1),
        CubeDim::new_1d(THREADS),
        x.into_tensor_arg(),
        dy.into_tensor_arg(),
        gamma.into_tensor_arg(),
        beta.into_tensor_arg(),
        dx.clone().into_tensor_arg(),
        dgamma_b.clone().into_tensor_arg(),
        dbeta_b.clone().into_tensor_arg(),
        d.groups as u32,
        (d.c / d.groups) as u32,
        d.hw as u32,
        spec.eps as f32,
        threshold,
        scale,
        seed_lo,
        seed_hi,
        ep.silu,
        ep.dropout > 0.0,
        THREADS,
    );
    let per_cube = 64u32;
    sum_over_batch_kernel::launch(
        &client,
        CubeCount::Static((d.c as u32).div_ceil(per_cube), 1, 1),
        CubeDim::new_1d(per_cube),
        dgamma_b.into_tensor_arg(),
        dbeta_b.into_tensor_arg(),
        dgamma.clone().into_tensor_arg(),
        dbeta.clone().into_tensor_arg(),
        d.b as u32,
        d.c as u32,
    );
    (dx, dgamma, dbeta)
}

fn zeros(t: CubeTensor) -> CubeTensor {
    let shape = t.meta.shape().clone();
    let device = t.device.clone();
    <CubeBackend as burn::backend::ops::FloatTensorOps<CubeBackend>>::float_zeros(
        shape,
        &device,
        burn::tensor::FloatDType::F32,
    )
}

impl GroupNormSiluBackend for CubeBackend {
    fn group_norm_silu(
        x: CubeTensor,
        gamma: CubeTensor,
        beta: CubeTensor,
        spec: GroupNormSpec,
    ) -> CubeTensor {
        forward(x, gamma, beta, spec)
    }
}

impl GroupNormSiluKernels for CubeBackend {
    fn group_norm_silu_backward(
        x: CubeTensor,
        gamma: CubeTensor,
        beta: CubeTensor,
        dy: CubeTensor,
        spec: GroupNormSpec,
    ) -> (CubeTensor, CubeTensor, CubeTensor) {
        backward(x, gamma, beta, dy, spec)
    }
}

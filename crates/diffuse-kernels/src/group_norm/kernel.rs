//! The host kernel: one (sample, group) block at a time, forward and backward, with the
//! statistics and reductions in f64 (fixed order, so the result depends neither on the thread
//! count nor on the SIMD width).
use rayon::prelude::*;

use crate::simd::{multiversion, sigmoid, sum_f64};

/// Shape of one call: B samples of C channels × `hw` positions, in `groups` groups.
#[derive(Debug, Clone, Copy)]
pub(super) struct Dims {
    pub b: usize,
    pub c: usize,
    pub hw: usize,
    pub groups: usize,
}

impl Dims {
    /// The dims of an input of `shape` [B, C, …] in `groups` groups.
    pub fn of(shape: &[usize], groups: usize) -> Self {
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
    pub(crate) fn dropout_params(&self) -> (u32, f32) {
        let keep = 1.0 - self.dropout;
        (
            (keep * (1u32 << 24) as f64).round() as u32,
            (1.0 / keep) as f32,
        )
    }
}

/// Everything one fused call computes besides x, γ and β.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GroupNormSpec {
    /// Number of groups (divides the channels).
    pub groups: usize,
    /// ε added to the variance.
    pub eps: f64,
    /// What follows the normalisation.
    pub epilogue: Epilogue,
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

/// The parameters of one (sample, group) block: the group's channels of γ and β, positions
/// per channel, ε, the epilogue, and `base`, the index of the block's first element in the
/// whole tensor (for the dropout mask).
#[derive(Clone, Copy)]
pub(super) struct Block<'a> {
    pub gamma: &'a [f32],
    pub beta: &'a [f32],
    pub hw: usize,
    pub eps: f64,
    pub ep: Epilogue,
    pub base: usize,
}

/// One block of the forward: y = Dropout(SiLU(γ x̂ + β)).
#[inline(always)]
pub(super) fn forward_block(yb: &mut [f32], xb: &[f32], p: &Block) {
    let (hw, ep) = (p.hw, p.ep);
    let (mean, rstd) = block_stats(xb, p.eps);
    let (threshold, scale) = ep.dropout_params();
    for (k, (yc, xc)) in yb.chunks_mut(hw).zip(xb.chunks(hw)).enumerate() {
        // z = x·a + s with a = γ/σ, s = β − μ·γ/σ.
        let a = (p.gamma[k] as f64 * rstd) as f32;
        let s = (p.beta[k] as f64 - mean * p.gamma[k] as f64 * rstd) as f32;
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
            let start = p.base + k * hw;
            for (j, o) in yc.iter_mut().enumerate() {
                *o *= keep_mask(ep.seed, start + j, threshold, scale);
            }
        }
    }
}

/// One block of the backward: writes dx and each channel's (Σdz·x̂, Σdz) into `sums`.
#[inline(always)]
pub(super) fn backward_block(
    dxb: &mut [f32],
    xb: &[f32],
    dyb: &[f32],
    sums: (&mut [f64], &mut [f64]),
    p: &Block,
) {
    let (gamma, beta, hw, ep) = (p.gamma, p.beta, p.hw, p.ep);
    let (mean, rstd) = block_stats(xb, p.eps);
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
            let start = p.base + k * hw;
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
    for (k, &gc) in gamma.iter().enumerate() {
        let range = k * hw..(k + 1) * hw;
        for (o, &v) in dxb[range.clone()].iter_mut().zip(&xb[range]) {
            let xhat = (v - mean32) * rstd32;
            *o = (gc * *o - m1 - xhat * m2) * rstd32;
        }
    }
}

multiversion!(forward_block_mv(yb: &mut [f32], xb: &[f32], p: &Block) {
    forward_block(yb, xb, p)
});

multiversion!(backward_block_mv(dxb: &mut [f32], xb: &[f32], dyb: &[f32], dgb: &mut [f64], dbb: &mut [f64], p: &Block) {
    backward_block(dxb, xb, dyb, (dgb, dbb), p)
});

/// The parameters of block `i` (sample i / groups, group i % groups).
fn block<'a>(i: usize, gamma: &'a [f32], beta: &'a [f32], d: Dims, s: &GroupNormSpec) -> Block<'a> {
    let cg = d.per_group();
    let ch = (i % d.groups) * cg..(i % d.groups + 1) * cg;
    Block {
        gamma: &gamma[ch.clone()],
        beta: &beta[ch],
        hw: d.hw,
        eps: s.eps,
        ep: s.epilogue,
        base: i * cg * d.hw,
    }
}

/// y for x of `d`'s shape; blocks in parallel, each on one thread.
pub(super) fn forward(
    x: &[f32],
    gamma: &[f32],
    beta: &[f32],
    d: Dims,
    s: &GroupNormSpec,
) -> Vec<f32> {
    let size = d.per_group() * d.hw;
    let mut y = vec![0f32; x.len()];
    y.par_chunks_mut(size)
        .zip(x.par_chunks(size))
        .enumerate()
        .for_each(|(i, (yb, xb))| forward_block_mv(yb, xb, &block(i, gamma, beta, d, s)));
    y
}

/// The gradients of a call.
pub(super) struct Grads {
    pub dx: Vec<f32>,
    /// Σ dz·x̂ per (sample, channel).
    pub dgamma: Vec<f64>,
    /// Σ dz per (sample, channel).
    pub dbeta: Vec<f64>,
}

/// (dx, per-(sample, channel) Σdz·x̂, per-(sample, channel) Σdz) for the output gradient `dy`.
pub(super) fn backward(
    x: &[f32],
    dy: &[f32],
    (gamma, beta): (&[f32], &[f32]),
    d: Dims,
    s: &GroupNormSpec,
) -> Grads {
    let cg = d.per_group();
    let size = cg * d.hw;
    let mut g = Grads {
        dx: vec![0f32; x.len()],
        dgamma: vec![0f64; d.b * d.c],
        dbeta: vec![0f64; d.b * d.c],
    };
    g.dx.par_chunks_mut(size)
        .zip(x.par_chunks(size))
        .zip(dy.par_chunks(size))
        .zip(g.dgamma.par_chunks_mut(cg).zip(g.dbeta.par_chunks_mut(cg)))
        .enumerate()
        .for_each(|(i, (((dxb, xb), dyb), (dgb, dbb)))| {
            backward_block_mv(dxb, xb, dyb, dgb, dbb, &block(i, gamma, beta, d, s))
        });
    g
}

/// Σ over the batch of per-(sample, channel) sums, in batch order.
pub(super) fn sum_over_batch(v: &[f64], b: usize, c: usize) -> Vec<f32> {
    (0..c)
        .map(|ch| (0..b).map(|s| v[s * c + ch]).sum::<f64>() as f32)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::simd::SimdLevel;

    /// Every SIMD version this CPU runs gives bit-identical results to the baseline build
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
        let eps = [
            (true, 0.0, 0),
            (false, 0.0, 0),
            (true, 0.3, 0x1234_5678_9abc),
        ];
        for (silu, dropout, seed) in eps {
            let p = Block {
                gamma: &gamma,
                beta: &beta,
                hw,
                eps: 1e-5,
                ep: Epilogue {
                    silu,
                    dropout,
                    seed,
                },
                base: 7,
            };
            let mut y0 = vec![0f32; x.len()];
            forward_block(&mut y0, &x, &p);
            let mut d0 = vec![0f32; x.len()];
            let (mut g0, mut b0) = ([0f64; 4], [0f64; 4]);
            backward_block(&mut d0, &x, &dy, (&mut g0, &mut b0), &p);
            for level in [SimdLevel::Baseline, SimdLevel::Avx2, SimdLevel::Avx512] {
                let got = crate::simd::with_max_simd(level, || {
                    let mut y1 = vec![0f32; x.len()];
                    forward_block_mv(&mut y1, &x, &p);
                    let mut d1 = vec![0f32; x.len()];
                    let (mut g1, mut b1) = ([0f64; 4], [0f64; 4]);
                    backward_block_mv(&mut d1, &x, &dy, &mut g1, &mut b1, &p);
                    (y1, d1, g1, b1)
                });
                assert_eq!(got, (y0.clone(), d0.clone(), g0, b0), "{level:?}");
            }
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

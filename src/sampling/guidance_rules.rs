//! The guidance formulas as small pure functions of the two predictions, on rows of a
//! `[B, N]` tensor (one row per image, all its pixels): each method is a few lines that can be
//! tested on hand-made numbers. The [`Denoiser`](super::Denoiser) wrappers in
//! [`guidance`](super::guidance) do the network calls, reshape to rows and convert between ε
//! and x̂₀ = (x_t − √(1−ᾱ_t) ε)/√ᾱ_t where a method is defined on x̂₀.
use burn::prelude::*;

use crate::{Error, Result};

/// Classifier-free guidance (Ho & Salimans 2022, eq. 6) in the reference convention:
/// (1 + w) p_c − w p_u. Linear, so it reads the same on ε or x̂₀. With the weaker model's
/// conditional prediction as p_u it is autoguidance (Karras et al. 2024, eq. 1:
/// D_w = w' D₁ + (1 − w') D₀ with w' = 1 + w).
pub fn cfg(p_cond: Tensor<2>, p_other: Tensor<2>, w: f64) -> Tensor<2> {
    p_cond * (1.0 + w) - p_other * w
}

/// The EDM noise level σ_t = √((1 − ᾱ_t)/ᾱ_t) of a VP timestep (x_t/√ᾱ_t = x₀ + σ_t ε), the
/// scale in which guidance intervals are stated.
pub fn edm_sigma(alpha_bar: f64) -> f64 {
    ((1.0 - alpha_bar) / alpha_bar).sqrt()
}

/// Guidance in a limited interval (Kynkäänniemi et al. 2024, eq. 7): guidance is applied only
/// while σ_lo < σ_t ≤ σ_hi; outside it the sampler gets the plain conditional prediction.
pub fn in_interval(sigma: f64, (lo, hi): (f64, f64)) -> bool {
    sigma > lo && sigma <= hi
}

/// Per-row standard deviation `[B, 1]` (population form; only ratios of these are used, so the
/// N vs N − 1 normaliser cancels).
fn row_std(x: Tensor<2>) -> Tensor<2> {
    let mean = x.clone().mean_dim(1);
    (x - mean).powf_scalar(2.0).mean_dim(1).sqrt()
}

/// Per-row Euclidean norm `[B, 1]`.
fn row_norm(x: Tensor<2>) -> Tensor<2> {
    x.powf_scalar(2.0).sum_dim(1).sqrt()
}

/// The smallest positive normal f32: a floor for divisors of per-row norms, so an all-zero row
/// divides to 0 instead of NaN.
const TINY: f64 = f32::MIN_POSITIVE as f64;

/// CFG rescale (Lin et al. 2024, "Common Diffusion Noise Schedules and Sample Steps Are
/// Flawed", §3.4, eqs. 15–17) on x̂₀ predictions: the guided prediction is rescaled to the
/// conditional prediction's standard deviation, then mixed back with weight φ:
/// x_rescaled = x_cfg · std(x_c)/std(x_cfg); x = φ x_rescaled + (1 − φ) x_cfg.
/// (diffusers' `rescale_noise_cfg` applies the same formula to ε.)
pub fn cfg_rescale(x0_cond: Tensor<2>, x0_cfg: Tensor<2>, phi: f64) -> Tensor<2> {
    let ratio = row_std(x0_cond) / row_std(x0_cfg.clone()).clamp_min(TINY);
    let factor = ratio * phi + (1.0 - phi);
    x0_cfg * factor
}

/// Adaptive projected guidance settings (Sadat et al. 2025, "Eliminating Oversaturation and
/// Artifacts of High Guidance Scales in Diffusion Models", Algorithm 1).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ApgConfig {
    /// η: weight of the update's component parallel to the conditional prediction (the
    /// paper's default 0 drops it: the parallel part is what oversaturates).
    pub eta: f64,
    /// β of the momentum Δ_t ← Δ_t + β Δ_{t+1} (the paper recommends a negative β, −0.5).
    pub momentum: f64,
    /// r: the update's per-image L2 norm (of x̂₀ differences, pixels in [−1, 1]) is clipped to
    /// r (0 = no clipping). The norm grows with √(pixels): the default 0.15 was chosen on the
    /// 8×8 digits (64 pixels; BENCHMARKS.md, guidance sweep), about 0.02 per pixel RMS.
    pub norm_threshold: f64,
}

impl Default for ApgConfig {
    fn default() -> Self {
        Self {
            eta: 0.0,
            momentum: -0.5,
            norm_threshold: 0.15,
        }
    }
}

impl ApgConfig {
    pub fn validate(&self) -> Result<()> {
        for (flag, v) in [
            ("--apg-eta", self.eta),
            ("--apg-momentum", self.momentum),
            ("--apg-norm", self.norm_threshold),
        ] {
            if !v.is_finite() {
                return Err(Error::invalid(flag, format!("must be finite, got {v}")));
            }
        }
        if self.norm_threshold < 0.0 {
            return Err(Error::invalid(
                "--apg-norm",
                format!("must be ≥ 0 (0 = no clipping), got {}", self.norm_threshold),
            ));
        }
        Ok(())
    }
}

/// One APG step on x̂₀ predictions (Sadat et al. 2025, Algorithm 1): Δ = x_c − x_u, plus β
/// times the previous step's Δ (`running`, returned updated); Δ scaled by min(1, r/‖Δ‖); split
/// into Δ∥ (along x_c) and Δ⊥; x = x_c + w (Δ⊥ + η Δ∥). Returns (guided x̂₀, new running Δ).
pub fn apg(
    x0_cond: Tensor<2>,
    x0_uncond: Tensor<2>,
    w: f64,
    cfg: &ApgConfig,
    running: Option<Tensor<2>>,
) -> (Tensor<2>, Tensor<2>) {
    let mut diff = x0_cond.clone() - x0_uncond;
    if let Some(prev) = running {
        diff = diff + prev * cfg.momentum;
    }
    let running = diff.clone();
    if cfg.norm_threshold > 0.0 {
        let scale =
            (row_norm(diff.clone()).clamp_min(TINY).recip() * cfg.norm_threshold).clamp_max(1.0);
        diff = diff * scale;
    }
    let unit = x0_cond.clone() / row_norm(x0_cond.clone()).clamp_min(TINY);
    let parallel = unit.clone() * (diff.clone() * unit).sum_dim(1);
    let orthogonal = diff - parallel.clone();
    (x0_cond + (orthogonal + parallel * cfg.eta) * w, running)
}

/// Dynamic thresholding of x̂₀ (Saharia et al. 2022, "Imagen", §2.3): s = the `p`-quantile of
/// |x̂₀| over each image (linear interpolation, like `np.percentile`), s ← max(s, 1), and
/// x̂₀ ← clip(x̂₀, −s, s)/s. Pixels pushed past ±1 by strong guidance are pulled inwards
/// instead of saturating; images already inside [−1, 1] are unchanged.
pub fn dynamic_threshold(x0: Tensor<2>, p: f64) -> Tensor<2> {
    let [_, n] = x0.dims();
    let sorted = x0.clone().abs().sort(1);
    let pos = p.clamp(0.0, 1.0) * (n - 1) as f64;
    let (lo, frac) = (pos.floor() as usize, pos - pos.floor());
    let hi = (lo + 1).min(n - 1);
    let q = sorted.clone().narrow(1, lo, 1) * (1.0 - frac) + sorted.narrow(1, hi, 1) * frac;
    let s = q.clamp_min(1.0).repeat_dim(1, n);
    x0.max_pair(s.clone().neg()).min_pair(s.clone()) / s
}

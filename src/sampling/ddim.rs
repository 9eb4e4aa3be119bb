//! DDIM sampling (Song et al. 2021, eq. 12 with σ from eq. 16).
use burn::prelude::*;
use rand::Rng;

use super::{timesteps, Denoiser, Level, Progress, Spacing};
use crate::rng::normal_tensor;
use crate::schedule::NoiseSchedule;
use crate::Result;

/// DDIM sampler settings. `Default` is the reference: 50 steps, η = 0, leading spacing.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DdimConfig {
    /// Number of sampling steps N (1 ≤ N ≤ T).
    pub steps: usize,
    /// η: 0 is deterministic DDIM, 1 matches DDPM's posterior variance.
    pub eta: f64,
    /// How the N timesteps are chosen.
    pub spacing: Spacing,
    /// Clip the predicted x̂₀ to [−1, 1] (images only).
    pub clip_x0: bool,
}

impl Default for DdimConfig {
    fn default() -> Self {
        Self {
            steps: 50,
            eta: 0.0,
            spacing: Spacing::Leading,
            clip_x0: false,
        }
    }
}

impl DdimConfig {
    pub fn validate(&self, num_train: usize) -> Result<Vec<usize>> {
        if !(self.eta >= 0.0) || !self.eta.is_finite() {
            return Err(crate::Error::invalid(
                "--eta",
                format!("must be a finite number ≥ 0, got {}", self.eta),
            ));
        }
        timesteps(self.spacing, num_train, self.steps)
    }
}

/// σ of eq. 16: η √((1−ᾱ_prev)/(1−ᾱ_t)) √(1 − ᾱ_t/ᾱ_prev).
pub fn ddim_sigma(ab: f64, ab_prev: f64, eta: f64) -> f64 {
    eta * ((1.0 - ab_prev) / (1.0 - ab)).sqrt() * (1.0 - ab / ab_prev).max(0.0).sqrt()
}

/// One DDIM step from t to `t_prev` (`None` after t = 0, where ᾱ_prev = 1 so the output is x̂₀).
/// `z` is required only when σ > 0.
#[allow(clippy::too_many_arguments)]
pub fn ddim_step<const D: usize>(
    s: &NoiseSchedule,
    x: Tensor<D>,
    t: usize,
    t_prev: Option<usize>,
    eps: Tensor<D>,
    eta: f64,
    clip_x0: bool,
    z: Option<Tensor<D>>,
) -> Tensor<D> {
    let prev = t_prev.map(|tp| s.alpha_bar(tp));
    ddim_update(x, s.alpha_bar(t), prev, eps, eta, clip_x0, z)
}

/// The DDIM update from ᾱ = `ab` to `ab_prev` (`None`: the final step to ᾱ = 1, returning x̂₀).
fn ddim_update<const D: usize>(
    x: Tensor<D>,
    ab: f64,
    ab_prev: Option<f64>,
    eps: Tensor<D>,
    eta: f64,
    clip_x0: bool,
    z: Option<Tensor<D>>,
) -> Tensor<D> {
    // x̂₀ = (x_t − √(1−ᾱ_t) ε)/√ᾱ_t
    let mut x0 = (x - eps.clone() * (1.0 - ab).sqrt()) / ab.sqrt();
    if clip_x0 {
        x0 = x0.clamp(-1.0, 1.0);
    }
    let Some(ab_prev) = ab_prev else {
        return x0;
    };
    let sigma = ddim_sigma(ab, ab_prev, eta);
    let dir = (1.0 - ab_prev - sigma * sigma).max(0.0).sqrt();
    let out = x0 * ab_prev.sqrt() + eps * dir;
    match z {
        Some(z) if sigma > 0.0 => out + z * sigma,
        _ => out,
    }
}

/// DDIM's settings other than its timesteps.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct DdimOptions {
    /// η: 0 is deterministic DDIM, 1 matches DDPM's posterior variance.
    pub eta: f64,
    /// Clip the predicted x̂₀ to [−1, 1] (images only).
    pub clip_x0: bool,
}

/// Runs DDIM from `x` (x_T ~ N(0, I)) over `levels` (descending). The previous level of each
/// step is the next entry of the array (never t − stride arithmetic); the last step goes to
/// ᾱ = 1. `rng` draws the fresh noise when η > 0.
pub fn ddim_sample<const D: usize, M: Denoiser<D> + ?Sized>(
    model: &M,
    levels: &[Level],
    mut x: Tensor<D>,
    labels: Option<&[usize]>,
    opts: DdimOptions,
    rng: &mut impl Rng,
    progress: Progress,
) -> Tensor<D> {
    let device = x.device();
    for (i, l) in levels.iter().enumerate() {
        let prev = levels.get(i + 1).map(|p| p.alpha_bar);
        let eps = model.eps(x.clone(), l.t, labels);
        let sigma = ddim_sigma(l.alpha_bar, prev.unwrap_or(1.0), opts.eta);
        let z = (sigma > 0.0 && prev.is_some()).then(|| normal_tensor(rng, x.dims(), &device));
        x = ddim_update(x, l.alpha_bar, prev, eps, opts.eta, opts.clip_x0, z);
        progress(i + 1, levels.len());
    }
    x
}

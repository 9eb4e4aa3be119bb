//! DDIM sampling (Song et al. 2021, eq. 12 with σ from eq. 16).
use burn::prelude::*;

use super::{Denoiser, Extra, Level};
use crate::rng::NoiseSource;

/// DDIM's settings other than its timesteps.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct DdimOptions {
    /// η: 0 is deterministic DDIM, 1 matches DDPM's posterior variance.
    pub eta: f64,
    /// Clip the predicted x̂₀ to [−1, 1] (images only).
    pub clip_x0: bool,
}

/// One DDIM step: from ᾱ = `alpha_bar` to `alpha_bar_prev` (`None`: the step after t = 0, to
/// ᾱ = 1, which returns x̂₀), with the sampler's options.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DdimStep {
    pub alpha_bar: f64,
    pub alpha_bar_prev: Option<f64>,
    pub opts: DdimOptions,
}

impl DdimStep {
    /// σ of eq. 16 for this step (0 on the last).
    pub fn sigma(&self) -> f64 {
        ddim_sigma(
            self.alpha_bar,
            self.alpha_bar_prev.unwrap_or(1.0),
            self.opts.eta,
        )
    }
}

/// σ of eq. 16: η √((1−ᾱ_prev)/(1−ᾱ_t)) √(1 − ᾱ_t/ᾱ_prev).
pub fn ddim_sigma(ab: f64, ab_prev: f64, eta: f64) -> f64 {
    eta * ((1.0 - ab_prev) / (1.0 - ab)).sqrt() * (1.0 - ab / ab_prev).max(0.0).sqrt()
}

/// One DDIM step given ε = ε_θ(x_t, t) (eq. 12): x̂₀ = (x_t − √(1−ᾱ_t) ε)/√ᾱ_t, then
/// x_prev = √ᾱ_prev x̂₀ + √(1 − ᾱ_prev − σ²) ε + σ z. `z` is required only when σ > 0.
pub fn ddim_step<const D: usize>(
    x: Tensor<D>,
    eps: Tensor<D>,
    step: &DdimStep,
    z: Option<Tensor<D>>,
) -> Tensor<D> {
    let ab = step.alpha_bar;
    let mut x0 = (x - eps.clone() * (1.0 - ab).sqrt()) / ab.sqrt();
    if step.opts.clip_x0 {
        x0 = x0.clamp(-1.0, 1.0);
    }
    let Some(ab_prev) = step.alpha_bar_prev else {
        return x0;
    };
    let sigma = step.sigma();
    let dir = (1.0 - ab_prev - sigma * sigma).max(0.0).sqrt();
    let out = x0 * ab_prev.sqrt() + eps * dir;
    match z {
        Some(z) if sigma > 0.0 => out + z * sigma,
        _ => out,
    }
}

/// Runs DDIM from `x` (x_T ~ N(0, I)) over `levels` (descending). The previous level of each
/// step is the next entry of the array (never t − stride arithmetic); the last step goes to
/// ᾱ = 1. The fresh noise of η > 0 comes from `extra.rng`.
pub fn ddim_sample<const D: usize, M: Denoiser<D> + ?Sized, R: NoiseSource>(
    model: &M,
    mut x: Tensor<D>,
    levels: &[Level],
    opts: &DdimOptions,
    extra: &mut Extra<R>,
) -> Tensor<D> {
    let device = x.device();
    for (i, l) in levels.iter().enumerate() {
        let step = DdimStep {
            alpha_bar: l.alpha_bar,
            alpha_bar_prev: levels.get(i + 1).map(|p| p.alpha_bar),
            opts: *opts,
        };
        let eps = model.eps(x.clone(), l.t, extra.labels);
        let noisy = step.sigma() > 0.0 && step.alpha_bar_prev.is_some();
        let z = noisy.then(|| extra.rng.normal(x.dims(), &device));
        x = ddim_step(x, eps, &step, z);
        (extra.progress)(i + 1, levels.len());
    }
    x
}

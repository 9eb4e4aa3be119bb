//! DDPM ancestral sampling (Ho et al. 2020, Algorithm 2).
use burn::prelude::*;
use rand::Rng;

use super::{Denoiser, Progress};
use crate::rng::normal_tensor;
use crate::schedule::{NoiseSchedule, SigmaKind};

/// DDPM sampler settings.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct DdpmConfig {
    /// σ_t choice: posterior ("small", reference default) or √β_t ("large").
    pub sigma: SigmaKind,
    /// Clip the predicted x̂₀ to [−1, 1] (for images; off by default: 2D data spans ±4).
    pub clip_x0: bool,
}

/// One ancestral step x_t → x_{t−1} given ε = ε_θ(x_t, t) and fresh noise z:
/// x_{t−1} = (x_t − (1−α_t)/√(1−ᾱ_t) · ε)/√α_t + σ_t z, z ignored at t = 0.
/// With `clip_x0` the posterior mean is taken from the clipped x̂₀ instead (eq. 7).
pub fn ddpm_step<const D: usize>(
    s: &NoiseSchedule,
    cfg: &DdpmConfig,
    x: Tensor<D>,
    t: usize,
    eps: Tensor<D>,
    z: Option<Tensor<D>>,
) -> Tensor<D> {
    let (alpha, ab) = (s.alphas[t], s.alpha_bar(t));
    let mean = if cfg.clip_x0 {
        let ab_prev = s.alpha_bar_at(t.checked_sub(1));
        let x0 = (x.clone() - eps * (1.0 - ab).sqrt()) / ab.sqrt();
        let x0 = x0.clamp(-1.0, 1.0);
        // μ̃_t = √ᾱ_{t−1} β_t/(1−ᾱ_t) x₀ + √α_t (1−ᾱ_{t−1})/(1−ᾱ_t) x_t
        let c0 = ab_prev.sqrt() * s.betas[t] / (1.0 - ab);
        let ct = alpha.sqrt() * (1.0 - ab_prev) / (1.0 - ab);
        x0 * c0 + x * ct
    } else {
        (x - eps * ((1.0 - alpha) / (1.0 - ab).sqrt())) / alpha.sqrt()
    };
    match z {
        Some(z) if t > 0 => mean + z * s.sigma(t, cfg.sigma),
        _ => mean,
    }
}

/// Runs the reverse chain from `x_t` (x_T ~ N(0, I)) over t = T−1 … 0.
pub fn ddpm_sample<const D: usize, M: Denoiser<D> + ?Sized>(
    model: &M,
    s: &NoiseSchedule,
    cfg: &DdpmConfig,
    mut x: Tensor<D>,
    labels: Option<&[usize]>,
    rng: &mut impl Rng,
    progress: Progress,
) -> Tensor<D> {
    let total = s.num_steps();
    let device = x.device();
    for (i, t) in (0..total).rev().enumerate() {
        let eps = model.eps(x.clone(), t, labels);
        let z = (t > 0).then(|| normal_tensor(rng, x.dims(), &device));
        x = ddpm_step(s, cfg, x, t, eps, z);
        progress(i + 1, total);
    }
    x
}

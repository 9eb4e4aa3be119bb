//! DDPM ancestral sampling (Ho et al. 2020, Algorithm 2).
use burn::prelude::*;

use super::{Denoiser, Extra, Level};
use crate::rng::NoiseSource;
use crate::schedule::SigmaKind;

/// DDPM's settings.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct DdpmOptions {
    /// σ_t: the posterior's ("small", the reference default) or √β_t ("large").
    pub sigma: SigmaKind,
    /// Clip the predicted x̂₀ to [−1, 1] (for images; off by default: 2D data spans ±4).
    pub clip_x0: bool,
}

/// One ancestral step: the level it starts from, ᾱ of the next one (1 after t = 0), and the
/// options.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DdpmStep {
    pub level: Level,
    /// ᾱ_{t−1} (1 after t = 0).
    pub alpha_bar_prev: f64,
    pub opts: DdpmOptions,
}

impl DdpmStep {
    /// σ_t: √(β_t (1−ᾱ_{t−1})/(1−ᾱ_t)) ("small", Ho et al. §3.2, the posterior's, 0 at t = 0)
    /// or √β_t ("large").
    pub fn sigma(&self) -> f64 {
        let (beta, ab) = (self.level.beta, self.level.alpha_bar);
        match self.opts.sigma {
            SigmaKind::Large => beta.sqrt(),
            SigmaKind::Small => (beta * (1.0 - self.alpha_bar_prev) / (1.0 - ab)).sqrt(),
        }
    }
}

/// One ancestral step x_t → x_{t−1} given ε = ε_θ(x_t, t) and fresh noise z (Algorithm 2,
/// line 4): x_{t−1} = (x_t − (1−α_t)/√(1−ᾱ_t) · ε)/√α_t + σ_t z, z ignored at t = 0. With
/// `clip_x0` the posterior mean μ̃_t (eq. 7) is taken from the clipped x̂₀ instead.
pub fn ddpm_step<const D: usize>(
    x: Tensor<D>,
    eps: Tensor<D>,
    step: &DdpmStep,
    z: Option<Tensor<D>>,
) -> Tensor<D> {
    let (t, ab, ab_prev) = (step.level.t, step.level.alpha_bar, step.alpha_bar_prev);
    let beta = step.level.beta;
    let alpha = 1.0 - beta;
    let mean = if step.opts.clip_x0 {
        let x0 = (x.clone() - eps * (1.0 - ab).sqrt()) / ab.sqrt();
        let x0 = x0.clamp(-1.0, 1.0);
        // μ̃_t = √ᾱ_{t−1} β_t/(1−ᾱ_t) x₀ + √α_t (1−ᾱ_{t−1})/(1−ᾱ_t) x_t
        let c0 = ab_prev.sqrt() * beta / (1.0 - ab);
        let ct = alpha.sqrt() * (1.0 - ab_prev) / (1.0 - ab);
        x0 * c0 + x * ct
    } else {
        (x - eps * ((1.0 - alpha) / (1.0 - ab).sqrt())) / alpha.sqrt()
    };
    match z {
        Some(z) if t > 0 => mean + z * step.sigma(),
        _ => mean,
    }
}

/// Runs the reverse chain from `x` (x_T ~ N(0, I)) over `levels`, which must be every
/// timestep T−1 … 0 of the schedule ([`super::all_levels`]): each step uses the schedule's
/// one-step β_t.
pub fn ddpm_sample<const D: usize, M: Denoiser<D> + ?Sized, R: NoiseSource>(
    model: &M,
    mut x: Tensor<D>,
    levels: &[Level],
    opts: &DdpmOptions,
    extra: &mut Extra<R>,
) -> Tensor<D> {
    let device = x.device();
    for (i, &level) in levels.iter().enumerate() {
        debug_assert!(level.t + i + 1 == levels.len(), "DDPM walks T−1 … 0");
        let step = DdpmStep {
            level,
            alpha_bar_prev: levels.get(i + 1).map_or(1.0, |p| p.alpha_bar),
            opts: *opts,
        };
        let eps = model.eps(x.clone(), level.t, extra.labels);
        let z = (level.t > 0).then(|| extra.rng.normal(x.dims(), &device));
        x = ddpm_step(x, eps, &step, z);
        (extra.progress)(i + 1, levels.len());
    }
    x
}

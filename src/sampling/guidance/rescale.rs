//! CFG rescale (Lin et al. 2024, "Common Diffusion Noise Schedules and Sample Steps Are
//! Flawed", §3.4).
use burn::prelude::*;

use super::{cfg, GuideStep, Guider};

/// Per-row standard deviation `[B, 1]` (population form; only ratios of these are used, so the
/// N vs N − 1 normaliser cancels).
fn row_std(x: Tensor<2>) -> Tensor<2> {
    let mean = x.clone().mean_dim(1);
    (x - mean).powf_scalar(2.0).mean_dim(1).sqrt()
}

/// The smallest positive normal f32: a floor for divisors of per-row norms, so an all-zero row
/// divides to 0 instead of NaN.
pub(super) const TINY: f64 = f32::MIN_POSITIVE as f64;

/// CFG rescale (eqs. 15–17) on x̂₀ predictions: the guided prediction is rescaled to the
/// conditional prediction's standard deviation, then mixed back with weight φ:
/// x_rescaled = x_cfg · std(x_c)/std(x_cfg); x = φ x_rescaled + (1 − φ) x_cfg.
/// (diffusers' `rescale_noise_cfg` applies the same formula to ε.)
pub fn cfg_rescale(x0_cond: Tensor<2>, x0_cfg: Tensor<2>, phi: f64) -> Tensor<2> {
    let ratio = row_std(x0_cond) / row_std(x0_cfg.clone()).clamp_min(TINY);
    let factor = ratio * phi + (1.0 - phi);
    x0_cfg * factor
}

/// CFG on x̂₀, rescaled by [`cfg_rescale`] with weight φ.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rescale {
    pub w: f64,
    pub phi: f64,
}

impl Guider for Rescale {
    fn w(&self) -> f64 {
        self.w
    }

    fn combine(&self, step: &GuideStep, eps_cond: Tensor<2>, eps_uncond: Tensor<2>) -> Tensor<2> {
        let guided = cfg(step.to_x0(eps_cond.clone()), step.to_x0(eps_uncond), self.w);
        step.to_eps(cfg_rescale(step.to_x0(eps_cond), guided, self.phi))
    }
}

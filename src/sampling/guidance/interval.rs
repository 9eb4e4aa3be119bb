//! Guidance in a limited interval of noise levels (Kynkäänniemi et al. 2024).
use burn::prelude::*;

use super::{cfg, GuideStep, Guider};

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

/// CFG while σ_t ∈ (σ_lo, σ_hi], the conditional model elsewhere.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Interval {
    pub w: f64,
    /// (σ_lo, σ_hi].
    pub sigmas: (f64, f64),
}

impl Guider for Interval {
    fn w(&self) -> f64 {
        self.w
    }

    fn active(&self, _t: usize, alpha_bar: f64) -> bool {
        in_interval(edm_sigma(alpha_bar), self.sigmas)
    }

    fn combine(&self, _: &GuideStep, eps_cond: Tensor<2>, eps_uncond: Tensor<2>) -> Tensor<2> {
        cfg(eps_cond, eps_uncond, self.w)
    }
}

//! Dynamic thresholding of x̂₀ after CFG (Saharia et al. 2022, "Imagen", §2.3).
use burn::prelude::*;

use super::{cfg, GuideStep, Guider};

/// Dynamic thresholding of x̂₀: s = the `p`-quantile of |x̂₀| over each image (linear
/// interpolation, like `np.percentile`), s ← max(s, 1), and x̂₀ ← clip(x̂₀, −s, s)/s. Pixels
/// pushed past ±1 by strong guidance are pulled inwards instead of saturating; images already
/// inside [−1, 1] are unchanged.
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

/// CFG, then [`dynamic_threshold`] of the guided x̂₀ at quantile `percentile`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Threshold {
    pub w: f64,
    pub percentile: f64,
}

impl Guider for Threshold {
    fn w(&self) -> f64 {
        self.w
    }

    fn combine(&self, step: &GuideStep, eps_cond: Tensor<2>, eps_uncond: Tensor<2>) -> Tensor<2> {
        let x0 = step.to_x0(cfg(eps_cond, eps_uncond, self.w));
        step.to_eps(dynamic_threshold(x0, self.percentile))
    }
}

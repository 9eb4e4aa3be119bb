//! Classifier-free guidance (Ho & Salimans 2022).
use burn::prelude::*;

use super::{GuideStep, Guider};

/// Classifier-free guidance (Ho & Salimans 2022, eq. 6) in the reference convention:
/// (1 + w) p_c − w p_u. Linear, so it reads the same on ε or x̂₀. With the weaker model's
/// conditional prediction as p_u it is autoguidance (Karras et al. 2024, eq. 1:
/// D_w = w' D₁ + (1 − w') D₀ with w' = 1 + w).
pub fn cfg(p_cond: Tensor<2>, p_other: Tensor<2>, w: f64) -> Tensor<2> {
    p_cond * (1.0 + w) - p_other * w
}

/// Plain CFG on ε: the reference's sampler, bit for bit.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Cfg {
    pub w: f64,
}

impl Guider for Cfg {
    fn w(&self) -> f64 {
        self.w
    }

    fn combine(&self, _: &GuideStep, eps_cond: Tensor<2>, eps_uncond: Tensor<2>) -> Tensor<2> {
        cfg(eps_cond, eps_uncond, self.w)
    }
}

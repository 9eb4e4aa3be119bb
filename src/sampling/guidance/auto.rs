//! Autoguidance (Karras et al. 2024, "Guiding a Diffusion Model with a Bad Version of Itself").
use burn::prelude::*;

use super::{cfg, GuideStep, Guider};

/// CFG's formula with the weaker guide model's conditional prediction in place of the null
/// label's (eq. 1 with w' = 1 + w): both models see the requested labels.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Auto {
    pub w: f64,
}

impl Guider for Auto {
    fn w(&self) -> f64 {
        self.w
    }

    fn uses_guide_model(&self) -> bool {
        true
    }

    fn combine(&self, _: &GuideStep, eps_cond: Tensor<2>, eps_guide: Tensor<2>) -> Tensor<2> {
        cfg(eps_cond, eps_guide, self.w)
    }
}

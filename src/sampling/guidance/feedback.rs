//! A per-image guidance scale from the model's own running estimate of how clearly x_t already
//! shows its class: feedback guidance (Koulischer et al. 2025, "Feedback Guidance of Diffusion
//! Models").
//!
//! The assumption (theirs): the learned conditional is the true one corrupted by the
//! unconditional, p_θ(x|c) = (1 − π) p(x|c) + π p(x). Solving for p(x|c) and taking scores,
//! with R = p_θ(x|c)/p(x) = p_θ(c|x)/p(c),
//!
//!   ∇ log p(x|c) = ∇ log p(x) + R/(R − π) (∇ log p_θ(x|c) − ∇ log p(x)),
//!
//! i.e. CFG with the per-image weight w = R/(R − π) − 1 = π/(R − π) in the reference
//! convention: an image whose class is already clear (R large) gets almost none, one drifting
//! towards another class (R → π) all that is allowed. Fixed-w guidance instead pushes every
//! image, which is what narrows the guided distribution.
//!
//! R is tracked along the sampling run by Bayes' rule over the reverse chain: from x_t to the
//! x_{t'} the sampler produced, log p(c|x_{t'}) = log p(c|x_t) + log q_c(x_{t'}|x_t) −
//! log q_u(x_{t'}|x_t), with q_c and q_u the model's Gaussian transitions under the
//! conditional and the null label (the unconditional one stands in for Σ_c p(c|x_t) q_c), and
//! R = 1 where sampling starts (x_T carries no class). The transitions are DDPM's posterior
//! between the two visited levels (DDIM with η = 1, Song et al. 2021 eqs. 12, 16), whichever
//! sampler made the step: for η = 1 DDIM and DDPM that is their own kernel; for deterministic
//! samplers a stand-in that still reads how far the step went towards the conditional
//! prediction rather than the unconditional one.
//!
//! Each update is tempered by τ ≤ 1 (a tempered likelihood): the kernels' σ at small t
//! is far below the network's own error there, so the raw ratios overstate the evidence — on
//! the digits log R reached 14 where p_θ(c|x) ≤ 1 bounds it by ln 10 ≈ 2.3, and a run that sure
//! of itself no longer notices a sample drifting late. τ = 0.25 was chosen on the digits'
//! development seeds (BENCHMARKS.md, feedback guidance).
use burn::prelude::*;
use serde::{Deserialize, Serialize};

use super::{GuideStep, StepChain};
use crate::sampling::ddim::ddim_sigma;
use crate::{Error, Result};

/// Feedback guidance's settings.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Feedback {
    /// π ∈ (0, 1): the weight of the unconditional distribution in the learned conditional
    /// (the module docs); larger π guides more at every R.
    pub pi: f64,
    /// τ ∈ (0, 1]: the weight of each step's evidence in the running log R (1: Bayes' rule as
    /// derived).
    pub temperature: f64,
}

impl Default for Feedback {
    /// π = 0.9, τ = 0.25: the digits' development choice (with APG's bound r = 0.01).
    fn default() -> Self {
        Self {
            pi: 0.9,
            temperature: 0.25,
        }
    }
}

impl Feedback {
    pub fn validate(&self) -> Result<()> {
        if !(self.pi > 0.0 && self.pi < 1.0) {
            return Err(Error::invalid(
                "guidance.apg.feedback",
                format!("π is a mixture weight in (0, 1), got {}", self.pi),
            ));
        }
        if !(self.temperature > 0.0 && self.temperature <= 1.0) {
            return Err(Error::invalid(
                "guidance.apg.feedback_temperature",
                format!("τ must be in (0, 1], got {}", self.temperature),
            ));
        }
        Ok(())
    }
}

/// What the tracker keeps of one call: the level, x_t and the two x̂₀ predictions.
struct Snapshot {
    alpha_bar: f64,
    x: Tensor<2>,
    x0_cond: Tensor<2>,
    x0_uncond: Tensor<2>,
}

/// log q_c(x'|x) − log q_u(x'|x) per row `[B, 1]` for the step from `s` to x' at ᾱ' (see the
/// module docs). Both kernels share the variance σ², so the ratio is
/// (μ_c − μ_u)·(x' − (μ_c + μ_u)/2)/σ²; 0 when the step adds no noise (no information).
fn log_ratio(s: &Snapshot, x_next: Tensor<2>, ab_next: f64) -> Tensor<2> {
    let ab = s.alpha_bar;
    let sigma = ddim_sigma(ab, ab_next, 1.0);
    let var = sigma * sigma;
    if var <= 0.0 {
        return x_next.zeros_like().narrow(1, 0, 1);
    }
    // μ = √ᾱ' x̂₀ + √(1 − ᾱ' − σ²) ε̂, with ε̂ = (x − √ᾱ x̂₀)/√(1 − ᾱ) (eq. 12).
    let dir = (1.0 - ab_next - var).max(0.0).sqrt() / (1.0 - ab).sqrt();
    let mean = |x0: Tensor<2>| x0.clone() * ab_next.sqrt() + (s.x.clone() - x0 * ab.sqrt()) * dir;
    let mu_c = mean(s.x0_cond.clone());
    let mu_u = mean(s.x0_uncond.clone());
    let d = mu_c.clone() - mu_u.clone();
    let mid = (mu_c + mu_u) * 0.5;
    (d * (x_next - mid)).sum_dim(1) / var
}

/// The running log R = log p_θ(c|x_t)/p(c) of each image of one sampling run, updated at every
/// call from the step the sampler made since the previous one (each update weighted by the
/// temperature τ). The run is followed like APG's momentum ([`StepChain`]): a repeated
/// timestep recomputes the update from the earlier one instead of adding to it.
pub struct PosteriorTracker {
    /// τ.
    temperature: f64,
    /// The last call and log R there.
    chain: Option<StepChain<(Snapshot, Tensor<2>)>>,
}

impl PosteriorTracker {
    /// A tracker whose updates are weighted by `temperature` (τ).
    pub fn new(temperature: f64) -> Self {
        Self {
            temperature,
            chain: None,
        }
    }

    /// Records this call's predictions and returns log R `[B, 1]` at x_t.
    pub fn observe(
        &mut self,
        step: &GuideStep,
        x0_cond: Tensor<2>,
        x0_uncond: Tensor<2>,
    ) -> Tensor<2> {
        let dims = step.x.dims();
        let before = StepChain::start(&mut self.chain, step.t, dims);
        let log_r = match &before {
            Some((s, log_r)) => {
                log_r.clone() + log_ratio(s, step.x.clone(), step.alpha_bar) * self.temperature
            }
            None => step.x.zeros_like().narrow(1, 0, 1),
        };
        let snapshot = Snapshot {
            alpha_bar: step.alpha_bar,
            x: step.x.clone(),
            x0_cond,
            x0_uncond,
        };
        StepChain::record(
            &mut self.chain,
            step.t,
            dims,
            before,
            (snapshot, log_r.clone()),
        );
        log_r
    }
}

/// The per-image weight π/(R − π) in the reference convention, capped at `w_max` (and
/// `w_max` where R ≤ π, where the formula has no finite value), from log R `[B, 1]`.
pub fn feedback_weight(log_r: Tensor<2>, pi: f64, w_max: f64) -> Tensor<2> {
    // R − π ≤ π/w_max ⇔ the weight would exceed the cap; the clamp keeps the division finite.
    let floor = pi / w_max;
    (log_r.exp() - pi).clamp_min(floor).recip() * pi
}

//! Adaptive projected guidance (Sadat et al. 2025, "Eliminating Oversaturation and Artifacts of
//! High Guidance Scales in Diffusion Models", Algorithm 1).
use std::cell::RefCell;

use burn::prelude::*;

use super::rescale::TINY;
use super::{GuideStep, Guider};
use crate::{Error, Result};

/// APG's settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ApgConfig {
    /// η: weight of the update's component parallel to the conditional prediction (the
    /// paper's default 0 drops it: the parallel part is what oversaturates).
    pub eta: f64,
    /// β of the momentum Δ_t ← Δ_t + β Δ_{t+1} (the paper recommends a negative β, −0.5).
    pub momentum: f64,
    /// r: the update's per-image L2 norm (of x̂₀ differences, pixels in [−1, 1]) is clipped to
    /// r (0 = no clipping). The norm grows with √(pixels): the default 0.15 was chosen on the
    /// 8×8 digits (64 pixels; BENCHMARKS.md, guidance sweep), about 0.02 per pixel RMS.
    pub norm_threshold: f64,
}

impl Default for ApgConfig {
    fn default() -> Self {
        Self {
            eta: 0.0,
            momentum: -0.5,
            norm_threshold: 0.15,
        }
    }
}

impl ApgConfig {
    pub fn validate(&self) -> Result<()> {
        for (field, v) in [
            ("guidance.apg.eta", self.eta),
            ("guidance.apg.momentum", self.momentum),
            ("guidance.apg.norm_threshold", self.norm_threshold),
        ] {
            if !v.is_finite() {
                return Err(Error::invalid(field, format!("must be finite, got {v}")));
            }
        }
        if self.norm_threshold < 0.0 {
            return Err(Error::invalid(
                "guidance.apg.norm_threshold",
                format!("must be ≥ 0 (0 = no clipping), got {}", self.norm_threshold),
            ));
        }
        Ok(())
    }
}

/// Per-row Euclidean norm `[B, 1]`.
fn row_norm(x: Tensor<2>) -> Tensor<2> {
    x.powf_scalar(2.0).sum_dim(1).sqrt()
}

/// One APG step on x̂₀ predictions (Algorithm 1): Δ = x_c − x_u, plus β times the previous
/// step's Δ (`running`, returned updated); Δ scaled by min(1, r/‖Δ‖); split into Δ∥ (along
/// x_c) and Δ⊥; x = x_c + w (Δ⊥ + η Δ∥). Returns (guided x̂₀, new running Δ).
pub fn apg(
    x0_cond: Tensor<2>,
    x0_uncond: Tensor<2>,
    w: f64,
    cfg: &ApgConfig,
    running: Option<Tensor<2>>,
) -> (Tensor<2>, Tensor<2>) {
    let mut diff = x0_cond.clone() - x0_uncond;
    if let Some(prev) = running {
        diff = diff + prev * cfg.momentum;
    }
    let running = diff.clone();
    if cfg.norm_threshold > 0.0 {
        let scale =
            (row_norm(diff.clone()).clamp_min(TINY).recip() * cfg.norm_threshold).clamp_max(1.0);
        diff = diff * scale;
    }
    let unit = x0_cond.clone() / row_norm(x0_cond.clone()).clamp_min(TINY);
    let parallel = unit.clone() * (diff.clone() * unit).sum_dim(1);
    let orthogonal = diff - parallel.clone();
    (x0_cond + (orthogonal + parallel * cfg.eta) * w, running)
}

/// APG on x̂₀. Its momentum spans the calls of one sampling run: timesteps must not increase
/// between calls; a call at a larger t, or with another batch size, starts a new run.
pub struct Apg {
    w: f64,
    cfg: ApgConfig,
    /// (t of the last call, the running Δ as [B, N] rows).
    running: RefCell<Option<(usize, Tensor<2>)>>,
}

impl Apg {
    pub fn new(w: f64, cfg: ApgConfig) -> Self {
        Self {
            w,
            cfg,
            running: RefCell::new(None),
        }
    }
}

impl Guider for Apg {
    fn w(&self) -> f64 {
        self.w
    }

    fn combine(&self, step: &GuideStep, eps_cond: Tensor<2>, eps_uncond: Tensor<2>) -> Tensor<2> {
        let mut state = self.running.borrow_mut();
        let prev = match state.take() {
            Some((t_last, r)) if step.t <= t_last && r.dims() == eps_cond.dims() => Some(r),
            _ => None,
        };
        let (x0, running) = apg(
            step.to_x0(eps_cond),
            step.to_x0(eps_uncond),
            self.w,
            &self.cfg,
            prev,
        );
        *state = Some((step.t, running));
        step.to_eps(x0)
    }
}

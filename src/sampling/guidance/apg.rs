//! Adaptive projected guidance (Sadat et al. 2025, "Eliminating Oversaturation and Artifacts of
//! High Guidance Scales in Diffusion Models", Algorithm 1).
use std::cell::RefCell;

use burn::prelude::*;

use super::feedback::{feedback_weight, Feedback, PosteriorTracker};
use super::rescale::TINY;
use super::{edm_sigma, in_interval, GuideStep, Guider, StepChain};
use crate::{Error, Result};

/// APG's settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ApgConfig {
    /// η: weight of the update's component parallel to the conditional prediction (the
    /// paper's default 0 drops it: the parallel part is what oversaturates).
    pub eta: f64,
    /// β of the momentum Δ_t ← Δ_t + β Δ_{t+1} (the paper recommends a negative β, −0.5).
    pub momentum: f64,
    /// r: the update's per-image RMS (its L2 norm over √(values per image), of x̂₀
    /// differences, pixels in [−1, 1]) is clipped to r (0 = no clipping). Per value, so one r
    /// means the same at every resolution; the paper's bound is the plain L2 norm, i.e. our
    /// r × √(values). The default 0.01875 is the L2 bound 0.15 chosen on the 8×8 digits
    /// (64 values; BENCHMARKS.md, guidance sweep) divided by √64, so the digits behave as before.
    pub norm_threshold: f64,
    /// Guide only while the EDM noise level σ_t ∈ (σ_lo, σ_hi], the conditional prediction
    /// elsewhere (Kynkäänniemi et al. 2024's interval, applied to APG; diffusers' guiders have
    /// the same window as start/stop fractions). None: every step (the paper's APG).
    pub interval: Option<(f64, f64)>,
    /// Feedback guidance (Koulischer et al. 2025; [`super::feedback`]): each image gets the
    /// weight min(w, π/(R − π)) from the model's running estimate R = p_θ(c|x_t)/p(c) instead
    /// of w, so images whose class is already clear are left nearly unguided. None: w for
    /// every image (the paper's APG).
    pub feedback: Option<Feedback>,
}

impl Default for ApgConfig {
    fn default() -> Self {
        Self {
            eta: 0.0,
            momentum: -0.5,
            norm_threshold: 0.15 / 8.0,
            interval: None,
            feedback: None,
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
        if let Some((lo, hi)) = self.interval {
            if !(lo >= 0.0 && hi > lo) {
                return Err(Error::invalid(
                    "guidance.apg.interval",
                    format!("needs 0 ≤ σ_lo < σ_hi, got ({lo}, {hi}]"),
                ));
            }
        }
        if let Some(f) = self.feedback {
            f.validate()?;
            if self.interval.is_some() {
                // The estimate follows the run step by step; outside a window no
                // unconditional prediction is made, so the steps there could not be read.
                return Err(Error::invalid(
                    "guidance.apg.feedback",
                    "feedback reads every step of the run and cannot be limited to a window (`guidance.apg.interval`): use one or the other",
                ));
            }
        }
        Ok(())
    }
}

/// Per-row Euclidean norm `[B, 1]`.
fn row_norm(x: Tensor<2>) -> Tensor<2> {
    x.powf_scalar(2.0).sum_dim(1).sqrt()
}

/// One APG step on x̂₀ predictions (Algorithm 1): Δ = x_c − x_u, plus β times the previous
/// step's Δ (`running`, returned updated); Δ scaled by min(1, r/RMS(Δ)) = min(1, r √N/‖Δ‖)
/// for N values per image; split into Δ∥ (along x_c) and Δ⊥; x = x_c + w (Δ⊥ + η Δ∥).
/// Returns (guided x̂₀, new running Δ).
pub fn apg(
    x0_cond: Tensor<2>,
    x0_uncond: Tensor<2>,
    w: f64,
    cfg: &ApgConfig,
    running: Option<Tensor<2>>,
) -> (Tensor<2>, Tensor<2>) {
    let (update, running) = apg_update(x0_cond.clone(), x0_uncond, cfg, running);
    (x0_cond + update * w, running)
}

/// APG's update direction Δ⊥ + η Δ∥ (before the weight w) and the new running Δ; see [`apg`].
pub fn apg_update(
    x0_cond: Tensor<2>,
    x0_uncond: Tensor<2>,
    cfg: &ApgConfig,
    running: Option<Tensor<2>>,
) -> (Tensor<2>, Tensor<2>) {
    let mut diff = x0_cond.clone() - x0_uncond;
    if let Some(prev) = running {
        diff = diff + prev * cfg.momentum;
    }
    let running = diff.clone();
    if cfg.norm_threshold > 0.0 {
        let bound = cfg.norm_threshold * (diff.dims()[1] as f64).sqrt();
        let scale = (row_norm(diff.clone()).clamp_min(TINY).recip() * bound).clamp_max(1.0);
        diff = diff * scale;
    }
    let unit = x0_cond.clone() / row_norm(x0_cond).clamp_min(TINY);
    let parallel = unit.clone() * (diff.clone() * unit).sum_dim(1);
    let orthogonal = diff - parallel.clone();
    (orthogonal + parallel * cfg.eta, running)
}

/// APG on x̂₀. Its momentum spans the calls of one sampling run ([`StepChain`]): it advances
/// once per timestep, i.e. once per sampler step; a call at a larger t, or with another batch
/// size, starts a new run.
pub struct Apg {
    w: f64,
    cfg: ApgConfig,
    /// The running Δ, as [B, N] rows.
    running: RefCell<Option<StepChain<Tensor<2>>>>,
    /// Feedback's running estimate of p_θ(c|x_t) (used only with `cfg.feedback`).
    posterior: RefCell<PosteriorTracker>,
}

impl Apg {
    pub fn new(w: f64, cfg: ApgConfig) -> Self {
        Self {
            w,
            cfg,
            running: RefCell::new(None),
            posterior: RefCell::new(PosteriorTracker::new(
                cfg.feedback.map_or(1.0, |f| f.temperature),
            )),
        }
    }
}

impl Guider for Apg {
    fn w(&self) -> f64 {
        self.w
    }

    fn active(&self, _t: usize, alpha_bar: f64) -> bool {
        self.cfg
            .interval
            .is_none_or(|i| in_interval(edm_sigma(alpha_bar), i))
    }

    fn combine(&self, step: &GuideStep, eps_cond: Tensor<2>, eps_uncond: Tensor<2>) -> Tensor<2> {
        let mut state = self.running.borrow_mut();
        let dims = eps_cond.dims();
        let prev = StepChain::start(&mut state, step.t, dims);
        let (x0_cond, x0_uncond) = (step.to_x0(eps_cond), step.to_x0(eps_uncond));
        let (update, running) =
            apg_update(x0_cond.clone(), x0_uncond.clone(), &self.cfg, prev.clone());
        let x0 = match self.cfg.feedback {
            Some(f) => {
                let log_r = self
                    .posterior
                    .borrow_mut()
                    .observe(step, x0_cond.clone(), x0_uncond);
                x0_cond + update * feedback_weight(log_r, f.pi, self.w)
            }
            None => x0_cond + update * self.w,
        };
        StepChain::record(&mut state, step.t, dims, prev, running);
        step.to_eps(x0)
    }
}

//! Guidance as a [`Denoiser`] wrapper with one type per method behind the [`Guider`] trait
//! (the shape of diffusers' guiders): the wrapper [`Guided`] makes the network calls, the
//! conditional and the null-label batch in one call per step, and hands the two predictions
//! to the guider, which combines them.
//!
//! Every method reads its scale as the reference's w (ε̃ = (1 + w) ε_c − w ε_u, guidance on
//! when w > 0, w = 0 the plain conditional model); [`GuidanceConvention::Diffusers`] reads a
//! scale s = w + 1 instead (ε̃ = ε_u + s (ε_c − ε_u)). The methods:
//! - [`Cfg`]: classifier-free guidance (Ho & Salimans 2022);
//! - [`Interval`]: CFG only in a range of noise levels (Kynkäänniemi et al. 2024);
//! - [`Rescale`]: CFG with x̂₀ rescaled to the conditional prediction's std (Lin et al. 2024);
//! - [`Apg`]: adaptive projected guidance (Sadat et al. 2025), optionally with a per-image
//!   weight from feedback guidance's running estimate of p(c|x_t) (Koulischer et al. 2025,
//!   [`Feedback`]);
//! - [`Auto`]: autoguidance with a weaker model (Karras et al. 2024);
//! - [`Threshold`]: CFG, then dynamic thresholding of x̂₀ (Saharia et al. 2022).
//!
//! Methods defined on x̂₀ convert with the step's ᾱ_t: x̂₀ = (x_t − √(1−ᾱ_t) ε)/√ᾱ_t and back
//! ([`GuideStep`]).
use burn::prelude::*;
use serde::{Deserialize, Serialize};

mod apg;
mod auto;
mod cfg;
mod feedback;
mod interval;
mod rescale;
mod threshold;

pub use apg::{apg, apg_update, Apg, ApgConfig};
pub use auto::Auto;
pub use cfg::{cfg, Cfg};
pub use feedback::{feedback_weight, Feedback, PosteriorTracker};
pub use interval::{edm_sigma, in_interval, Interval};
pub use rescale::{cfg_rescale, Rescale};
pub use threshold::{dynamic_threshold, Threshold};

use super::Denoiser;
use crate::schedule::NoiseSchedule;
use crate::{Error, Result};

/// How a guidance scale is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
#[serde(rename_all = "lowercase")]
pub enum GuidanceConvention {
    /// ε̃ = (1 + w) ε_c − w ε_u (reference; guidance on when w > 0, w = 0 is plain conditional).
    #[default]
    Reference,
    /// ε̃ = ε_u + s (ε_c − ε_u) (diffusers; s = w + 1, s = 1 is plain conditional).
    Diffusers,
}

/// A guidance scale, stored as the reference w.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Guidance {
    w: f64,
}

impl Guidance {
    /// Reads `scale` in `convention`; rejects scales that mean w < 0.
    pub fn new(scale: f64, convention: GuidanceConvention) -> Result<Self> {
        let w = match convention {
            GuidanceConvention::Reference => scale,
            GuidanceConvention::Diffusers => scale - 1.0,
        };
        if !w.is_finite() || w < 0.0 {
            let need = match convention {
                GuidanceConvention::Reference => "≥ 0",
                GuidanceConvention::Diffusers => "≥ 1",
            };
            return Err(Error::invalid(
                "guidance.scale",
                format!("must be {need} in the {convention:?} convention, got {scale}"),
            ));
        }
        Ok(Self { w })
    }

    /// No guidance: the plain conditional model.
    pub const NONE: Guidance = Guidance { w: 0.0 };

    /// The reference-convention weight w.
    pub fn w(&self) -> f64 {
        self.w
    }
}

/// One step of a guided sampling run as a guider sees it: the timestep, its ᾱ_t and x_t as
/// `[B, N]` rows (one row per image).
pub struct GuideStep<'a> {
    pub t: usize,
    pub alpha_bar: f64,
    pub x: &'a Tensor<2>,
}

impl GuideStep<'_> {
    /// x̂₀ = (x_t − √(1−ᾱ_t) ε)/√ᾱ_t (DDPM eq. 15 rearranged).
    pub fn to_x0(&self, eps: Tensor<2>) -> Tensor<2> {
        let ab = self.alpha_bar;
        (self.x.clone() - eps * (1.0 - ab).sqrt()) / ab.sqrt()
    }

    /// ε = (x_t − √ᾱ_t x̂₀)/√(1−ᾱ_t), the inverse of [`Self::to_x0`].
    pub fn to_eps(&self, x0: Tensor<2>) -> Tensor<2> {
        let ab = self.alpha_bar;
        (self.x.clone() - x0 * ab.sqrt()) / (1.0 - ab).sqrt()
    }
}

/// State a guider carries from one timestep of a sampling run to the next (APG's momentum,
/// feedback's running estimate). Calls must come at non-increasing timesteps; a call at a
/// larger t or with another batch shape starts a new run. A second call at the timestep of the
/// last one (Heun's corrector evaluates at t_next, where the next step's predictor then
/// evaluates again) starts from the same earlier state as the first and replaces its result.
pub(super) struct StepChain<S> {
    /// t of the last call.
    t: usize,
    /// The `[B, N]` shape of that call's rows.
    dims: [usize; 2],
    /// The state that call started from (None at the run's first timestep).
    from: Option<S>,
    /// The state after it.
    at: S,
}

impl<S> StepChain<S> {
    /// The state a call at `t` on rows of `dims` starts from, taken out of `chain`.
    pub(super) fn start(chain: &mut Option<Self>, t: usize, dims: [usize; 2]) -> Option<S> {
        match chain.take() {
            Some(c) if c.dims != dims => None,
            // Again at the same timestep: the same step, so the same starting point.
            Some(c) if t == c.t => c.from,
            Some(c) if t < c.t => Some(c.at),
            _ => None,
        }
    }

    /// Records the call at `t` on rows of `dims`: it started from `from` and ended at `at`.
    pub(super) fn record(
        chain: &mut Option<Self>,
        t: usize,
        dims: [usize; 2],
        from: Option<S>,
        at: S,
    ) {
        *chain = Some(Self { t, dims, from, at });
    }
}

/// One guidance method: how the conditional prediction ε_c and a second prediction ε_u (the
/// null label's on the same network, or autoguidance's weaker model's) combine into the ε the
/// sampler gets. Predictions arrive as `[B, N]` rows, one per image.
pub trait Guider {
    /// The scale as the reference w; at w = 0 the wrapper returns the conditional prediction
    /// without asking the guider.
    fn w(&self) -> f64;

    /// Whether the second prediction comes from the guide model (autoguidance) instead of the
    /// null label.
    fn uses_guide_model(&self) -> bool {
        false
    }

    /// Whether guidance applies at this step; when it does not, the sampler gets ε_c from one
    /// conditional call.
    fn active(&self, _t: usize, _alpha_bar: f64) -> bool {
        true
    }

    /// ε̃ from (ε_c, ε_u) at `step`.
    fn combine(&self, step: &GuideStep, eps_cond: Tensor<2>, eps_other: Tensor<2>) -> Tensor<2>;
}

/// Which guidance method steers a conditional model (all read the scale as the reference w).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
#[serde(rename_all = "lowercase")]
pub enum GuidanceMethod {
    /// Classifier-free guidance (1 + w) ε_c − w ε_u (Ho & Salimans 2022).
    #[default]
    Cfg,
    /// CFG only while σ_lo < σ_t ≤ σ_hi, plain conditional elsewhere (Kynkäänniemi et al. 2024).
    Interval,
    /// CFG with x̂₀ rescaled to the conditional prediction's std, mixed by φ (Lin et al. 2024).
    Rescale,
    /// Adaptive projected guidance: orthogonal update, momentum, norm bound (Sadat et al. 2025).
    Apg,
    /// Autoguidance: guide with a weaker model of the same task, `--guide-ckpt` (Karras et al.
    /// 2024).
    Auto,
    /// CFG, then dynamic thresholding of x̂₀ (Saharia et al. 2022).
    Threshold,
}

impl GuidanceMethod {
    /// The name users type (`cfg`, `interval`, …).
    pub fn name(self) -> &'static str {
        match self {
            Self::Cfg => "cfg",
            Self::Interval => "interval",
            Self::Rescale => "rescale",
            Self::Apg => "apg",
            Self::Auto => "auto",
            Self::Threshold => "threshold",
        }
    }
}

/// A guidance method, its scale and the settings of every method: what a user describes.
/// `Default` holds the one set of defaults the CLI shows (CFG at w = 0).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GuidanceConfig {
    pub method: GuidanceMethod,
    /// The scale (stored as the reference w).
    pub scale: Guidance,
    /// Interval guidance: (σ_lo, σ_hi] in EDM noise levels σ_t = √((1−ᾱ_t)/ᾱ_t); the default
    /// is the paper's EDM2-S setting (0.28, 5.42].
    pub interval: (f64, f64),
    /// CFG rescale φ (the paper uses 0.7).
    pub rescale_phi: f64,
    /// APG settings.
    pub apg: ApgConfig,
    /// Dynamic thresholding: the quantile p of |x̂₀| per image (Imagen uses 0.995).
    pub threshold_percentile: f64,
}

impl Default for GuidanceConfig {
    fn default() -> Self {
        Self {
            method: GuidanceMethod::Cfg,
            scale: Guidance::NONE,
            interval: (0.28, 5.42),
            rescale_phi: 0.7,
            apg: ApgConfig::default(),
            threshold_percentile: 0.995,
        }
    }
}

impl From<Guidance> for GuidanceConfig {
    /// Plain CFG at `scale`.
    fn from(scale: Guidance) -> Self {
        Self {
            scale,
            ..Self::default()
        }
    }
}

impl GuidanceConfig {
    /// Checks the settings of the chosen method.
    pub fn validate(&self) -> Result<()> {
        match self.method {
            GuidanceMethod::Interval => {
                let (lo, hi) = self.interval;
                if !(lo >= 0.0 && hi > lo && hi.is_finite()) {
                    return Err(Error::invalid(
                        "guidance.interval",
                        format!("need 0 ≤ σ_lo < σ_hi < ∞, got ({lo}, {hi}]"),
                    ));
                }
            }
            GuidanceMethod::Rescale => {
                if !(0.0..=1.0).contains(&self.rescale_phi) {
                    return Err(Error::invalid(
                        "guidance.rescale_phi",
                        format!("must be in [0, 1], got {}", self.rescale_phi),
                    ));
                }
            }
            GuidanceMethod::Apg => self.apg.validate()?,
            GuidanceMethod::Threshold => {
                if !(0.0..=1.0).contains(&self.threshold_percentile) {
                    return Err(Error::invalid(
                        "guidance.threshold_percentile",
                        format!("is a quantile in [0, 1], got {}", self.threshold_percentile),
                    ));
                }
            }
            GuidanceMethod::Cfg | GuidanceMethod::Auto => {}
        }
        Ok(())
    }

    /// The method's name, `apg+feedback` for APG with feedback's per-image weight.
    pub fn name(&self) -> String {
        match (self.method, self.apg.feedback) {
            (GuidanceMethod::Apg, Some(_)) => "apg+feedback".into(),
            (m, _) => m.name().into(),
        }
    }

    /// A short label such as `apg w=7.5` (with feedback, w is each image's cap).
    pub fn label(&self) -> String {
        format!("{} w={}", self.name(), self.scale.w())
    }

    /// The guider of this method (fresh state: APG's momentum starts empty).
    pub fn guider(&self) -> Result<Box<dyn Guider>> {
        self.validate()?;
        let w = self.scale.w();
        Ok(match self.method {
            GuidanceMethod::Cfg => Box::new(Cfg { w }),
            GuidanceMethod::Interval => Box::new(Interval {
                w,
                sigmas: self.interval,
            }),
            GuidanceMethod::Rescale => Box::new(Rescale {
                w,
                phi: self.rescale_phi,
            }),
            GuidanceMethod::Apg => Box::new(Apg::new(w, self.apg)),
            GuidanceMethod::Auto => Box::new(Auto { w }),
            GuidanceMethod::Threshold => Box::new(Threshold {
                w,
                percentile: self.threshold_percentile,
            }),
        })
    }
}

/// A conditional denoiser steered by a [`Guider`]: the conditional and the null-label batch
/// go through the network in one call per step (or the model and the guide model once each,
/// for autoguidance).
pub struct Guided<'a, M: ?Sized> {
    model: &'a M,
    guide: Option<&'a M>,
    schedule: &'a NoiseSchedule,
    guider: Box<dyn Guider>,
}

impl<'a, M: ?Sized> Guided<'a, M> {
    /// `model` steered by the method of `cfg`; `guide` is the weaker model of autoguidance
    /// (required by `auto`, refused otherwise).
    pub fn new(
        model: &'a M,
        guide: Option<&'a M>,
        schedule: &'a NoiseSchedule,
        cfg: &GuidanceConfig,
    ) -> Result<Self> {
        let guider = cfg.guider()?;
        match (cfg.method, guide.is_some()) {
            (GuidanceMethod::Auto, false) => {
                return Err(Error::invalid(
                    "guidance.guide",
                    "autoguidance needs the weaker guide model",
                ))
            }
            (m, true) if m != GuidanceMethod::Auto => {
                return Err(Error::invalid(
                    "guidance.guide",
                    format!("only autoguidance uses a guide model, not `{}`", m.name()),
                ))
            }
            _ => {}
        }
        Ok(Self {
            model,
            guide,
            schedule,
            guider,
        })
    }

    /// The plain conditional model (no guidance), through the same wrapper.
    pub fn unguided(model: &'a M, schedule: &'a NoiseSchedule) -> Self {
        Self {
            model,
            guide: None,
            schedule,
            guider: Box::new(Cfg { w: 0.0 }),
        }
    }
}

/// [B, …] → [B, N] rows.
fn rows<const D: usize>(x: Tensor<D>) -> Tensor<2> {
    let b = x.dims()[0];
    let n = x.shape().num_elements() / b.max(1);
    x.reshape([b, n])
}

/// (ε_c, ε_u): the batch [x; x] with labels [0 … 0; c] in one network call.
fn cond_and_null<const D: usize, M: Denoiser<D> + ?Sized>(
    model: &M,
    x: Tensor<D>,
    t: usize,
    labels: &[usize],
) -> (Tensor<D>, Tensor<D>) {
    let b = x.dims()[0];
    let both: Vec<usize> = std::iter::repeat_n(0, b)
        .chain(labels.iter().copied())
        .collect();
    let out = model.eps(Tensor::cat(vec![x.clone(), x], 0), t, Some(&both));
    let eps_u = out.clone().narrow(0, 0, b);
    let eps_c = out.narrow(0, b, b);
    (eps_c, eps_u)
}

impl<const D: usize, M: Denoiser<D> + ?Sized> Denoiser<D> for Guided<'_, M> {
    fn eps(&self, x: Tensor<D>, t: usize, labels: Option<&[usize]>) -> Tensor<D> {
        let g = &self.guider;
        let labels = match labels {
            Some(l) if g.w() > 0.0 => l,
            // w = 0 (or an unconditional call): the plain conditional prediction, one batch.
            _ => return self.model.eps(x, t, labels),
        };
        let ab = self.schedule.alpha_bar(t);
        if !g.active(t, ab) {
            return self.model.eps(x, t, Some(labels));
        }
        let dims = x.dims();
        let (e_c, e_o) = match self.guide.filter(|_| g.uses_guide_model()) {
            Some(guide) => (
                self.model.eps(x.clone(), t, Some(labels)),
                guide.eps(x.clone(), t, Some(labels)),
            ),
            None => cond_and_null(self.model, x.clone(), t, labels),
        };
        let xr = rows(x);
        let step = GuideStep {
            t,
            alpha_bar: ab,
            x: &xr,
        };
        g.combine(&step, rows(e_c), rows(e_o)).reshape(dims)
    }
}

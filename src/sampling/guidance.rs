//! Guidance as [`Denoiser`] wrappers (k-diffusion style): [`Guided`] is plain classifier-free
//! guidance (Ho & Salimans 2022); [`GuidedBy`] adds the methods of [`GuidanceMethod`], each a
//! small formula of (ε_c, ε_u, x_t, t) from [`guidance_rules`](super::guidance_rules) or, for
//! autoguidance, of two models. The conditional and the null-label batch go through the
//! network in one call per step.
use std::cell::RefCell;

use burn::prelude::*;
use serde::{Deserialize, Serialize};

use super::guidance_rules::{self as rules, ApgConfig};
use super::Denoiser;
use crate::schedule::NoiseSchedule;
use crate::{Error, Result};

/// How the guidance scale is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum GuidanceConvention {
    /// ε̃ = (1 + w) ε_c − w ε_u (reference; guidance on when w > 0, w = 0 is plain conditional).
    #[default]
    Reference,
    /// ε̃ = ε_u + s (ε_c − ε_u) (diffusers; s = w + 1, s = 1 is plain conditional).
    Diffusers,
}

/// A guidance setting, stored internally as the reference w.
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
                "--cfg-scale",
                format!("must be {need} in the {convention:?} convention, got {scale}"),
            ));
        }
        Ok(Self { w })
    }

    /// The reference-convention weight w.
    pub fn w(&self) -> f64 {
        self.w
    }

    /// Combines the two predictions: (1 + w) ε_c − w ε_u.
    pub fn combine<const D: usize>(&self, eps_cond: Tensor<D>, eps_uncond: Tensor<D>) -> Tensor<D> {
        eps_cond * (1.0 + self.w) - eps_uncond * self.w
    }
}

/// A conditional denoiser steered by classifier-free guidance.
pub struct Guided<'a, M: ?Sized> {
    pub model: &'a M,
    pub guidance: Guidance,
}

impl<const D: usize, M: Denoiser<D> + ?Sized> Denoiser<D> for Guided<'_, M> {
    fn eps(&self, x: Tensor<D>, t: usize, labels: Option<&[usize]>) -> Tensor<D> {
        let labels = match labels {
            Some(l) if self.guidance.w > 0.0 => l,
            // w = 0 (or an unconditional call): the plain conditional prediction, one batch.
            _ => return self.model.eps(x, t, labels),
        };
        let (eps_c, eps_u) = cond_and_null(self.model, x, t, labels);
        self.guidance.combine(eps_c, eps_u)
    }
}

/// (ε_c, ε_u): the batch [x; x] with labels [0 … 0; c] in one network call.
fn cond_and_null<const D: usize, M: Denoiser<D> + ?Sized>(
    model: &M,
    x: Tensor<D>,
    t: usize,
    labels: &[usize],
) -> (Tensor<D>, Tensor<D>) {
    let b = x.dims()[0];
    let both: Vec<usize> = std::iter::repeat(0)
        .take(b)
        .chain(labels.iter().copied())
        .collect();
    let out = model.eps(Tensor::cat(vec![x.clone(), x], 0), t, Some(&both));
    let eps_u = out.clone().narrow(0, 0, b);
    let eps_c = out.narrow(0, b, b);
    (eps_c, eps_u)
}

/// Which guidance method steers a conditional model (all read the scale as the reference w).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
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
    /// The CLI name (`cfg`, `interval`, …).
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

/// A guidance method, its scale and the settings of every method. `Default` holds the one set
/// of defaults the CLI shows.
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
            scale: Guidance { w: 0.0 },
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
                        "--interval-lo/--interval-hi",
                        format!("need 0 ≤ σ_lo < σ_hi < ∞, got ({lo}, {hi}]"),
                    ));
                }
            }
            GuidanceMethod::Rescale => {
                if !(0.0..=1.0).contains(&self.rescale_phi) {
                    return Err(Error::invalid(
                        "--rescale-phi",
                        format!("must be in [0, 1], got {}", self.rescale_phi),
                    ));
                }
            }
            GuidanceMethod::Apg => self.apg.validate()?,
            GuidanceMethod::Threshold => {
                if !(0.0..=1.0).contains(&self.threshold_percentile) {
                    return Err(Error::invalid(
                        "--threshold-percentile",
                        format!("is a quantile in [0, 1], got {}", self.threshold_percentile),
                    ));
                }
            }
            GuidanceMethod::Cfg | GuidanceMethod::Auto => {}
        }
        Ok(())
    }

    /// A short label such as `apg w=7.5`.
    pub fn label(&self) -> String {
        format!("{} w={}", self.method.name(), self.scale.w())
    }
}

/// A conditional denoiser steered by any [`GuidanceMethod`]. Methods defined on x̂₀ convert
/// with the schedule's ᾱ_t: x̂₀ = (x_t − √(1−ᾱ_t) ε)/√ᾱ_t and back. APG keeps its momentum
/// across the calls of one sampling run (timesteps must not increase between calls; a call
/// at a larger t, or with another batch size, starts a new run).
pub struct GuidedBy<'a, M: ?Sized> {
    model: &'a M,
    guide: Option<&'a M>,
    schedule: &'a NoiseSchedule,
    cfg: GuidanceConfig,
    /// APG: (t of the last call, the running Δ as [B, N] rows).
    running: RefCell<Option<(usize, Tensor<2>)>>,
}

impl<'a, M: ?Sized> GuidedBy<'a, M> {
    /// `guide` is the weaker model of autoguidance (required by `auto`, refused otherwise).
    pub fn new(
        model: &'a M,
        guide: Option<&'a M>,
        schedule: &'a NoiseSchedule,
        cfg: GuidanceConfig,
    ) -> Result<Self> {
        cfg.validate()?;
        match (cfg.method, guide.is_some()) {
            (GuidanceMethod::Auto, false) => {
                return Err(Error::invalid(
                    "--guide-ckpt",
                    "autoguidance needs the weaker guide model (--guide-ckpt)",
                ))
            }
            (m, true) if m != GuidanceMethod::Auto => {
                return Err(Error::invalid(
                    "--guide-ckpt",
                    format!(
                        "only `--guidance auto` uses a guide model, not `{}`",
                        m.name()
                    ),
                ))
            }
            _ => {}
        }
        Ok(Self {
            model,
            guide,
            schedule,
            cfg,
            running: RefCell::new(None),
        })
    }
}

/// [B, …] → [B, N] rows.
fn rows<const D: usize>(x: Tensor<D>) -> Tensor<2> {
    let b = x.dims()[0];
    let n = x.shape().num_elements() / b.max(1);
    x.reshape([b, n])
}

impl<const D: usize, M: Denoiser<D> + ?Sized> Denoiser<D> for GuidedBy<'_, M> {
    fn eps(&self, x: Tensor<D>, t: usize, labels: Option<&[usize]>) -> Tensor<D> {
        let w = self.cfg.scale.w();
        let labels = match labels {
            Some(l) if w > 0.0 => l,
            _ => return self.model.eps(x, t, labels),
        };
        let dims = x.dims();
        let ab = self.schedule.alpha_bar(t);
        let (a, s) = (ab.sqrt(), (1.0 - ab).sqrt());
        let xr = rows(x.clone());
        // x̂₀ = (x − s ε)/a and ε = (x − a x̂₀)/s (DDPM eq. 15 rearranged).
        let to_x0 = |e: Tensor<2>| (xr.clone() - e * s) / a;
        let to_eps = |x0: Tensor<2>| (xr.clone() - x0 * a) / s;
        let eps: Tensor<2> = match self.cfg.method {
            GuidanceMethod::Interval
                if !rules::in_interval(rules::edm_sigma(ab), self.cfg.interval) =>
            {
                return self.model.eps(x, t, Some(labels));
            }
            GuidanceMethod::Auto => {
                let guide = self.guide.expect("checked in GuidedBy::new");
                let e_c = rows(self.model.eps(x.clone(), t, Some(labels)));
                let e_g = rows(guide.eps(x, t, Some(labels)));
                rules::cfg(e_c, e_g, w)
            }
            method => {
                let (e_c, e_u) = cond_and_null(self.model, x, t, labels);
                let (e_c, e_u) = (rows(e_c), rows(e_u));
                match method {
                    GuidanceMethod::Rescale => {
                        let guided = rules::cfg(to_x0(e_c.clone()), to_x0(e_u), w);
                        to_eps(rules::cfg_rescale(to_x0(e_c), guided, self.cfg.rescale_phi))
                    }
                    GuidanceMethod::Apg => {
                        let mut state = self.running.borrow_mut();
                        let prev = match state.take() {
                            Some((t_last, r)) if t <= t_last && r.dims() == e_c.dims() => Some(r),
                            _ => None,
                        };
                        let (x0, running) =
                            rules::apg(to_x0(e_c), to_x0(e_u), w, &self.cfg.apg, prev);
                        *state = Some((t, running));
                        to_eps(x0)
                    }
                    GuidanceMethod::Threshold => {
                        let x0 = to_x0(rules::cfg(e_c, e_u, w));
                        to_eps(rules::dynamic_threshold(x0, self.cfg.threshold_percentile))
                    }
                    _ => rules::cfg(e_c, e_u, w),
                }
            }
        };
        eps.reshape(dims)
    }
}

//! Samplers over a [`Denoiser`]: anything that maps (x_t, t, labels) to ε.
//!
//! Every sampler has the one shape of k-diffusion's samplers:
//! `sampler(model, x_T, levels, &options, &mut extra) -> x_0`, where
//! - `levels` ([`Level`]: timestep, ᾱ_t, β_t) says which noise levels to visit, built outside
//!   the sampler ([`timesteps`], [`levels`], [`SamplerSpec::levels`]);
//! - `options` is the sampler's own settings struct ([`DdpmOptions`], [`DdimOptions`],
//!   [`DpmSolverOptions`], [`EulerOptions`], [`HeunOptions`]);
//! - `extra` ([`Extra`]) carries the labels, the generator of fresh noise and the progress
//!   callback.
//!
//! Guidance and x̂₀ rules that act on the prediction wrap the denoiser instead of adding flags
//! to samplers ([`guidance`]); [`selective`] chooses, after sampling, which images to sample
//! again with stronger guidance. [`SamplerSpec`] is the description a user gives (sampler kind,
//! steps, spacing, options); [`sample`] runs it.
use crate::rng::NoiseSource;
use burn::prelude::*;

pub mod ddim;
pub mod ddpm;
pub mod dpm_solver;
pub mod euler;
pub mod guidance;
pub mod heun;
pub mod inversion;
pub mod selective;
pub mod timesteps;

pub use ddim::{ddim_sample, ddim_step, DdimOptions, DdimStep};
pub use ddpm::{ddpm_sample, ddpm_step, DdpmOptions, DdpmStep};
pub use dpm_solver::{dpm_solver_2m_sample, DpmSolverOptions};
pub use euler::{euler_sample, EulerOptions};
pub use guidance::{
    ApgConfig, Feedback, Guidance, GuidanceConfig, GuidanceConvention, GuidanceMethod, Guided,
    Guider,
};
pub use heun::{heun_sample, HeunOptions};
pub use inversion::{ddim_invert, slerp};
pub use selective::Selective;
pub use timesteps::{all_levels, levels, timesteps, Level, Spacing};

/// A noise predictor ε_θ(x_t, t, labels) for a batch that shares one timestep `t`.
/// `labels` holds one class index per batch row (0 = the null class) for conditional models.
pub trait Denoiser<const D: usize> {
    fn eps(&self, x: Tensor<D>, t: usize, labels: Option<&[usize]>) -> Tensor<D>;
}

impl<const D: usize, F> Denoiser<D> for F
where
    F: Fn(Tensor<D>, usize, Option<&[usize]>) -> Tensor<D>,
{
    fn eps(&self, x: Tensor<D>, t: usize, labels: Option<&[usize]>) -> Tensor<D> {
        self(x, t, labels)
    }
}

/// What every sampler receives besides the denoiser, x_T, the levels and its options
/// (k-diffusion's `extra_args` and `callback`, and the generator of fresh noise).
pub struct Extra<'a, R> {
    /// One class index per batch row (0 = the null class) for conditional models.
    pub labels: Option<&'a [usize]>,
    /// Draws the fresh noise of stochastic steps (DDPM, DDIM with η > 0); deterministic
    /// samplers never touch it. A generator, a `&mut` to one, or one generator per batch row
    /// ([`crate::rng::RowNoise`]).
    pub rng: R,
    /// Called after each step with (steps done, steps in total).
    pub progress: Box<dyn FnMut(usize, usize) + 'a>,
}

impl<'a, R: NoiseSource> Extra<'a, R> {
    /// `labels` and `rng`, with no progress callback.
    pub fn new(labels: Option<&'a [usize]>, rng: R) -> Self {
        Self {
            labels,
            rng,
            progress: Box::new(|_, _| {}),
        }
    }

    /// The same with `progress` called after each step.
    pub fn with_progress(self, progress: impl FnMut(usize, usize) + 'a) -> Self {
        Self {
            progress: Box::new(progress),
            ..self
        }
    }
}

/// Which sampler to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
#[serde(rename_all = "kebab-case")]
pub enum SamplerKind {
    /// DDPM ancestral sampling over all T steps.
    Ddpm,
    /// DDIM over N steps (η = 0: deterministic).
    #[default]
    Ddim,
    /// DPM-Solver++(2M): second order, one network evaluation per step.
    #[cfg_attr(feature = "cli", value(name = "dpm++2m"))]
    #[serde(rename = "dpm++2m")]
    DpmSolver2m,
    /// Euler on the probability-flow ODE (identical to DDIM with η = 0).
    Euler,
    /// Heun on the probability-flow ODE: two network evaluations per step.
    Heun,
}

impl SamplerKind {
    /// The name users type (`ddpm`, `ddim`, `dpm++2m`, `euler`, `heun`).
    pub fn name(self) -> &'static str {
        match self {
            SamplerKind::Ddpm => "ddpm",
            SamplerKind::Ddim => "ddim",
            SamplerKind::DpmSolver2m => "dpm++2m",
            SamplerKind::Euler => "euler",
            SamplerKind::Heun => "heun",
        }
    }
}

/// A sampler and its settings as a user describes them. `Default` is the reference DDIM:
/// 50 steps, η = 0, leading spacing, no x̂₀ clipping.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SamplerSpec {
    /// Which sampler.
    pub kind: SamplerKind,
    /// Steps of the few-step samplers (DDPM always walks all T).
    pub steps: usize,
    /// DDIM's η (0: deterministic; 1: DDPM's posterior variance).
    pub eta: f64,
    /// How the few-step samplers' timesteps are chosen.
    pub spacing: Spacing,
    /// DDPM's σ_t.
    pub sigma: crate::schedule::SigmaKind,
    /// Clip x̂₀ to [−1, 1] at every step (images; off by default: 2D data spans ±4).
    pub clip_x0: bool,
}

impl Default for SamplerSpec {
    fn default() -> Self {
        Self {
            kind: SamplerKind::Ddim,
            steps: 50,
            eta: 0.0,
            spacing: Spacing::Leading,
            sigma: Default::default(),
            clip_x0: false,
        }
    }
}

impl SamplerSpec {
    /// Checks the settings against a schedule of `num_train` steps.
    /// DDPM walks every timestep and takes neither steps nor η.
    pub fn validate(&self, num_train: usize) -> crate::Result<()> {
        if self.kind == SamplerKind::Ddpm {
            return Ok(());
        }
        if !(self.eta.is_finite() && self.eta >= 0.0) {
            return Err(crate::Error::invalid(
                "sampler.eta",
                format!("must be a finite number ≥ 0, got {}", self.eta),
            ));
        }
        timesteps(self.spacing, num_train, self.steps).map(|_| ())
    }

    /// The levels this sampler visits under `schedule`: every timestep for DDPM, `steps` of
    /// them spaced by `spacing` otherwise.
    pub fn levels(&self, schedule: &crate::schedule::NoiseSchedule) -> crate::Result<Vec<Level>> {
        self.validate(schedule.num_steps())?;
        Ok(match self.kind {
            SamplerKind::Ddpm => all_levels(schedule),
            _ => levels(
                schedule,
                &timesteps(self.spacing, schedule.num_steps(), self.steps)?,
            ),
        })
    }

    /// Number of network evaluations (per batch) the sampler makes.
    pub fn nfe(&self, num_train: usize) -> usize {
        match self.kind {
            SamplerKind::Ddpm => num_train,
            SamplerKind::Heun => 2 * self.steps - 1,
            _ => self.steps,
        }
    }

    /// A short name such as `ddim-50` (`ddim-50 η=1` when DDIM draws fresh noise).
    pub fn label(&self, num_train: usize) -> String {
        match self.kind {
            SamplerKind::Ddpm => format!("ddpm-{num_train}"),
            SamplerKind::Ddim if self.eta != 0.0 => format!("ddim-{} η={}", self.steps, self.eta),
            k => format!("{}-{}", k.name(), self.steps),
        }
    }
}

/// Runs the sampler of `spec` from x_T over the levels it visits under `schedule`.
pub fn sample<const D: usize, M: Denoiser<D> + ?Sized, R: NoiseSource>(
    model: &M,
    schedule: &crate::schedule::NoiseSchedule,
    spec: &SamplerSpec,
    x_t: Tensor<D>,
    extra: &mut Extra<R>,
) -> crate::Result<Tensor<D>> {
    let lv = spec.levels(schedule)?;
    let clip_x0 = spec.clip_x0;
    Ok(match spec.kind {
        SamplerKind::Ddpm => {
            let opts = DdpmOptions {
                sigma: spec.sigma,
                clip_x0,
            };
            ddpm_sample(model, x_t, &lv, &opts, extra)
        }
        SamplerKind::Ddim => {
            let opts = DdimOptions {
                eta: spec.eta,
                clip_x0,
            };
            ddim_sample(model, x_t, &lv, &opts, extra)
        }
        SamplerKind::DpmSolver2m => {
            dpm_solver_2m_sample(model, x_t, &lv, &DpmSolverOptions { clip_x0 }, extra)
        }
        SamplerKind::Euler => euler_sample(model, x_t, &lv, &EulerOptions, extra),
        SamplerKind::Heun => heun_sample(model, x_t, &lv, &HeunOptions, extra),
    })
}

/// The lines of a quality-against-steps plot: one per few-step sampler of `samplers` through
/// its (steps, value) points, and DDPM (all T steps, when among `points`) as a flat reference
/// line across `steps`' range.
pub fn steps_series(
    points: &[(SamplerSpec, f64)],
    samplers: &[SamplerKind],
    steps: &[usize],
    num_train: usize,
) -> Vec<(String, Vec<(f64, f64)>)> {
    let mut series: Vec<(String, Vec<(f64, f64)>)> = samplers
        .iter()
        .filter(|&&k| k != SamplerKind::Ddpm)
        .map(|&kind| {
            let pts = points
                .iter()
                .filter(|(s, _)| s.kind == kind)
                .map(|(s, v)| (s.steps as f64, *v))
                .collect();
            (kind.name().to_string(), pts)
        })
        .collect();
    let ddpm = points.iter().find(|(s, _)| s.kind == SamplerKind::Ddpm);
    if let (Some((_, v)), Some(lo), Some(hi)) = (ddpm, steps.iter().min(), steps.iter().max()) {
        series.push((
            format!("ddpm-{num_train} (reference)"),
            vec![(*lo as f64, *v), (*hi as f64, *v)],
        ));
    }
    series
}

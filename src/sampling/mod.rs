//! Samplers as plain functions over a [`Denoiser`]: anything that maps (x_t, t, labels) to ε.
//! DDPM, DDIM and guidance compose through this one interface. In k-diffusion's shape, a
//! sampler is a function of (denoiser, levels, x, labels, callback) plus its own options: the
//! timesteps and their ᾱ ([`Level`]) are chosen outside it ([`timesteps`], [`levels`]).
use burn::prelude::*;

pub mod ddim;
pub mod ddpm;
pub mod dpm_solver;
pub mod euler;
pub mod guidance;
pub mod guidance_rules;
pub mod inversion;
pub mod timesteps;

pub use ddim::{ddim_sample, ddim_step, DdimConfig, DdimOptions};
pub use ddpm::{ddpm_sample, ddpm_step, DdpmConfig};
pub use guidance::{
    Guidance, GuidanceConfig, GuidanceConvention, GuidanceMethod, Guided, GuidedBy,
};
pub use guidance_rules::ApgConfig;
pub use timesteps::{levels, timesteps, Level, Spacing};

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

/// Called after each sampler step with (steps done, steps in total).
pub type Progress<'a> = &'a mut dyn FnMut(usize, usize);

/// A progress callback that does nothing.
pub fn no_progress(_: usize, _: usize) {}

/// Which sampler to run.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Default,
    serde::Serialize,
    serde::Deserialize,
    clap::ValueEnum,
)]
#[serde(rename_all = "kebab-case")]
pub enum SamplerKind {
    /// DDPM ancestral sampling over all T steps.
    Ddpm,
    /// DDIM over N steps (η = 0: deterministic).
    #[default]
    Ddim,
    /// DPM-Solver++(2M): second order, one network evaluation per step.
    #[value(name = "dpm++2m")]
    #[serde(rename = "dpm++2m")]
    DpmSolver2m,
    /// Euler on the probability-flow ODE (identical to DDIM with η = 0).
    Euler,
    /// Heun on the probability-flow ODE: two network evaluations per step.
    Heun,
}

/// A sampler and its settings, as the CLI describes it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SamplerSpec {
    pub kind: SamplerKind,
    /// Steps for few-step samplers (ignored by DDPM, which always runs T steps).
    pub steps: usize,
    /// DDIM η.
    pub eta: f64,
    pub spacing: Spacing,
    /// DDPM σ_t choice.
    pub sigma: crate::schedule::SigmaKind,
    pub clip_x0: bool,
}

impl Default for SamplerSpec {
    fn default() -> Self {
        let d = DdimConfig::default();
        Self {
            kind: SamplerKind::Ddim,
            steps: d.steps,
            eta: d.eta,
            spacing: d.spacing,
            sigma: Default::default(),
            clip_x0: false,
        }
    }
}

impl SamplerSpec {
    /// Checks the settings against a schedule of `num_train` steps.
    pub fn validate(&self, num_train: usize) -> crate::Result<()> {
        match self.kind {
            SamplerKind::Ddpm => Ok(()),
            _ => self.ddim().validate(num_train).map(|_| ()),
        }
    }

    fn ddim(&self) -> DdimConfig {
        DdimConfig {
            steps: self.steps,
            eta: self.eta,
            spacing: self.spacing,
            clip_x0: self.clip_x0,
        }
    }

    /// Number of network evaluations (per batch) the sampler makes.
    pub fn nfe(&self, num_train: usize) -> usize {
        match self.kind {
            SamplerKind::Ddpm => num_train,
            SamplerKind::Heun => 2 * self.steps - 1,
            _ => self.steps,
        }
    }

    /// A short name such as `ddim-50`.
    pub fn label(&self, num_train: usize) -> String {
        let name = match self.kind {
            SamplerKind::Ddpm => return format!("ddpm-{num_train}"),
            SamplerKind::Ddim => "ddim",
            SamplerKind::DpmSolver2m => "dpm++2m",
            SamplerKind::Euler => "euler",
            SamplerKind::Heun => "heun",
        };
        format!("{name}-{}", self.steps)
    }
}

/// Runs the sampler of `spec` from x_T.
pub fn sample<const D: usize, M: Denoiser<D> + ?Sized>(
    model: &M,
    schedule: &crate::schedule::NoiseSchedule,
    spec: &SamplerSpec,
    x_t: Tensor<D>,
    labels: Option<&[usize]>,
    rng: &mut impl rand::Rng,
    progress: Progress,
) -> crate::Result<Tensor<D>> {
    spec.validate(schedule.num_steps())?;
    let lv = || -> crate::Result<Vec<Level>> {
        Ok(levels(
            schedule,
            &timesteps(spec.spacing, schedule.num_steps(), spec.steps)?,
        ))
    };
    Ok(match spec.kind {
        SamplerKind::Ddpm => {
            let cfg = DdpmConfig {
                sigma: spec.sigma,
                clip_x0: spec.clip_x0,
            };
            ddpm_sample(model, schedule, &cfg, x_t, labels, rng, progress)
        }
        SamplerKind::Ddim => {
            let opts = DdimOptions {
                eta: spec.eta,
                clip_x0: spec.clip_x0,
            };
            ddim_sample(model, &lv()?, x_t, labels, opts, rng, progress)
        }
        SamplerKind::DpmSolver2m => {
            dpm_solver::dpm_solver_2m_sample(model, &lv()?, x_t, labels, spec.clip_x0, progress)
        }
        SamplerKind::Euler | SamplerKind::Heun => {
            let heun = spec.kind == SamplerKind::Heun;
            euler::euler_sample(model, &lv()?, x_t, labels, heun, progress)
        }
    })
}

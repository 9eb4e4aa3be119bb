//! Everything that defines a 2D training run, and the named recipes.
use serde::{Deserialize, Serialize};

use super::stream;
use crate::data::toy::{generate, ToyDataset};
use crate::nn::simplenet::SimpleNetConfig;
use crate::rng::seeded;
use crate::schedule::{NoiseSchedule, ScheduleConfig};
use crate::train::OptimConfig;
pub use crate::train::Recipe;
use crate::{Error, Result};

/// Everything that defines a 2D training run. `Default` is the reference protocol:
/// swiss roll, 1,000,000 points read in order, batch 128, 5000 Adam steps at lr 1e-3.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToyConfig {
    /// The data distribution.
    pub dataset: ToyDataset,
    /// Size of the fresh training set drawn for the run.
    pub num_points: usize,
    /// Points per training step.
    pub batch_size: usize,
    /// Optimisation steps.
    pub steps: usize,
    /// Optimizer and learning-rate schedule.
    pub optim: OptimConfig,
    /// EMA decay of the weights (None: off, the reference).
    pub ema_decay: Option<f64>,
    /// Use the EMA warm-up min(decay, (1+k)/(10+k)).
    pub ema_warmup: bool,
    /// Draw t stratified over the batch (one t per stratum of T/B) instead of i.i.d. uniform.
    pub stratified_t: bool,
    /// Distinct timesteps per batch (None: one per point, the reference). With K groups the
    /// batch is K runs of B/K consecutive points sharing a timestep, and the network's
    /// timestep-embedding MLPs run on K rows instead of B (see `SimpleNet::forward_grouped`).
    #[serde(default)]
    pub t_groups: Option<usize>,
    /// t = ⌊T·u^p⌋ for u uniform (or stratified) in [0, 1): p > 1 puts more of the training on
    /// small t, where the last sampling steps decide how close points land to the data
    /// (1: uniform, the reference).
    #[serde(default = "one")]
    pub t_power: f64,
    /// Network shape.
    pub net: SimpleNetConfig,
    /// Variance schedule.
    pub schedule: ScheduleConfig,
    /// Seed for data, initialisation and training noise.
    pub seed: u64,
}

impl Default for ToyConfig {
    fn default() -> Self {
        Self {
            dataset: ToyDataset::SwissRoll,
            num_points: 1_000_000,
            batch_size: 128,
            steps: 5000,
            optim: OptimConfig {
                lr: 1e-3,
                ..OptimConfig::default()
            },
            ema_decay: None,
            ema_warmup: true,
            stratified_t: false,
            t_groups: None,
            t_power: 1.0,
            net: SimpleNetConfig::default(),
            schedule: ScheduleConfig::default(),
            seed: 0,
        }
    }
}

fn one() -> f64 {
    1.0
}

impl ToyConfig {
    pub fn validate(&self) -> Result<()> {
        if self.steps == 0 {
            return Err(Error::invalid("train.steps", "must be at least 1"));
        }
        if self.batch_size == 0 {
            return Err(Error::invalid("train.batch_size", "must be at least 1"));
        }
        if self.num_points < self.batch_size {
            return Err(Error::invalid(
                "train.num_points",
                format!("must be at least the batch size {}", self.batch_size),
            ));
        }
        if let Some(d) = self.ema_decay {
            if !(0.0..1.0).contains(&d) {
                return Err(Error::invalid(
                    "train.ema_decay",
                    format!("decay must be in [0, 1), got {d}"),
                ));
            }
        }
        if let Some(k) = self.t_groups {
            if k == 0 || !self.batch_size.is_multiple_of(k) {
                return Err(Error::invalid(
                    "train.t_groups",
                    format!(
                        "must divide the batch size {} (and be at least 1), got {k}",
                        self.batch_size
                    ),
                ));
            }
        }
        if !(self.t_power > 0.0 && self.t_power.is_finite()) {
            return Err(Error::invalid(
                "train.t_power",
                format!("must be a positive number, got {}", self.t_power),
            ));
        }
        if self.net.dims.first() != Some(&2) || self.net.dims.last() != Some(&2) {
            return Err(Error::invalid(
                "dims",
                "a 2D model needs input and output width 2",
            ));
        }
        self.net.validate()?;
        self.optim.validate()?;
        NoiseSchedule::new(&self.schedule).map(|_| ())
    }

    /// The first `n` points of this run's training set (the Chamfer reference), drawn from a
    /// set of at least `n` points.
    pub fn training_points(&self, n: usize) -> Result<Vec<f32>> {
        if n == 0 {
            return Err(Error::invalid("points.n", "must be at least 1"));
        }
        let cfg = ToyConfig {
            num_points: self.num_points.max(n),
            ..self.clone()
        };
        Ok(cfg.data()[..2 * n].to_vec())
    }

    /// The training set of this run (also the Chamfer reference: its first points).
    pub fn data(&self) -> Vec<f32> {
        generate(
            self.dataset,
            self.num_points,
            &mut seeded(self.seed, stream::DATA),
        )
    }
}

/// The 2D side of [`Recipe`].
impl Recipe {
    /// The recipe's configuration (seed 0).
    pub fn config(&self) -> ToyConfig {
        match self {
            Recipe::Reference => ToyConfig::default(),
            // Measured change by change in BENCHMARKS.md ("a 2D recipe that holds on every
            // seed"). A step of 512 points in 32 timestep groups costs about one reference step
            // (the embedding MLPs run on 32 rows instead of 128), so 4000 of them train in less
            // time than the reference's 5000 while seeing 3.2× the points.
            Recipe::Best => ToyConfig {
                batch_size: 512,
                steps: 4000,
                t_groups: Some(32),
                t_power: 1.5,
                optim: OptimConfig {
                    lr: 3e-3,
                    warmup_steps: 200,
                    schedule: crate::train::LrSchedule::Cosine,
                    ..ToyConfig::default().optim
                },
                ema_decay: Some(0.999),
                stratified_t: true,
                ..ToyConfig::default()
            },
        }
    }

    /// Timestep spacing of the few-step samplers `toy run` evaluates with this recipe.
    pub fn few_step_spacing(&self) -> crate::sampling::Spacing {
        match self {
            Recipe::Reference => crate::sampling::Spacing::Leading,
            Recipe::Best => crate::sampling::Spacing::Quadratic,
        }
    }
}

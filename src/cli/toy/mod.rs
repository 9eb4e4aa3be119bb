//! `diffuse toy …`: the 2D workflow, one file per subcommand.
use anyhow::Result;
use clap::{Args, Subcommand};
use diffuse::data::toy::ToyDataset;
use diffuse::toy::{Recipe, ToyConfig};

use super::args::{CommonArgs, OptimArgs};

mod eval;
mod invert;
mod run;
mod sample;
mod study;
mod sweep;
mod train;

#[derive(Subcommand)]
pub enum ToyCommand {
    /// Train a SimpleNet and save a checkpoint (safetensors + JSON config).
    Train(train::TrainCmd),
    /// Sample points from a checkpoint and write them as CSV (`x,y`).
    Sample(sample::SampleArgs),
    /// Chamfer distance of a sample CSV against a checkpoint's training data (first N points)
    /// or against another CSV.
    Eval(eval::EvalArgs),
    /// DDIM inversion: encode training points to x_T and decode them back, for several step
    /// counts (mean round-trip error), plus an interpolation picture between two encoded points.
    Invert(invert::InvertArgs),
    /// Chamfer distance against the number of sampling steps, for every sampler: a table
    /// (sweep.csv) and a plot (sweep.png).
    Sweep(sweep::SweepArgs),
    /// Train, sample with DDPM-1000 and DDIM-50, evaluate, plot: the whole workflow.
    Run(run::RunArgs),
    /// Train and score one model per seed and recipe: Chamfer of DDPM-1000, DDIM-50 (leading
    /// and quadratic spacing) and DPM-Solver++(2M)-20 (quadratic), training seconds; median,
    /// min and max per recipe. The recipes of a seed train back to back, so their times are
    /// measured under the same machine load. Training flags override every recipe listed.
    /// Writes study.csv, summary.csv and the models.
    Study(study::StudyArgs),
}

pub fn run(cmd: ToyCommand) -> Result<()> {
    match cmd {
        ToyCommand::Train(a) => train::run(&a),
        ToyCommand::Sample(a) => sample::run(&a),
        ToyCommand::Eval(a) => eval::run(&a),
        ToyCommand::Invert(a) => invert::run(&a),
        ToyCommand::Sweep(a) => sweep::run(&a),
        ToyCommand::Run(a) => run::run(&a),
        ToyCommand::Study(a) => study::run(&a),
    }
}

/// Training flags: a recipe, a seed and overrides.
#[derive(Args, Clone)]
pub struct TrainArgs {
    /// Preset: `reference` (the course protocol) or `best` (the improved recipe).
    #[arg(long, value_enum, default_value_t = Recipe::Reference)]
    pub recipe: Recipe,
    /// Seed of data, initialisation and training noise.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    #[command(flatten)]
    pub over: TrainOverrides,
}

impl TrainArgs {
    pub fn config(&self) -> ToyConfig {
        self.over.config(self.recipe, self.seed)
    }
}

/// Flags that override a recipe. Unset flags take the value of the recipe (reference by
/// default), so the defaults live in one place: `ToyConfig::default()` and `Recipe`.
#[derive(Args, Clone)]
pub struct TrainOverrides {
    /// Data set.
    #[arg(long, value_enum)]
    dataset: Option<ToyDataset>,
    /// Training steps [reference: 5000].
    #[arg(long)]
    steps: Option<usize>,
    /// Batch size [reference: 128].
    #[arg(long)]
    batch_size: Option<usize>,
    /// Size of the training set [reference: 1,000,000].
    #[arg(long)]
    num_points: Option<usize>,
    /// Stratified timestep sampling [reference: off].
    #[arg(long)]
    stratified_t: Option<bool>,
    /// Distinct timesteps per batch, 0 = one per point [reference: 0].
    #[arg(long)]
    t_groups: Option<usize>,
    /// Timestep skew: t = ⌊T·u^p⌋ [reference: 1, uniform].
    #[arg(long)]
    t_power: Option<f64>,
    /// Hidden widths of SimpleNet, comma-separated [reference: 128,128,128].
    #[arg(long, value_delimiter = ',')]
    hidden: Option<Vec<usize>>,
    #[command(flatten)]
    optim: OptimArgs,
    #[command(flatten)]
    pub common: CommonArgs,
}

impl TrainOverrides {
    /// The config of `recipe` at `seed` with the given flags applied.
    pub fn config(&self, recipe: Recipe, seed: u64) -> ToyConfig {
        let mut c = recipe.config();
        c.seed = seed;
        self.optim.apply(&mut c.optim, &mut c.ema_decay);
        if let Some(v) = self.dataset {
            c.dataset = v;
        }
        if let Some(v) = self.steps {
            c.steps = v;
        }
        if let Some(v) = self.batch_size {
            c.batch_size = v;
        }
        if let Some(v) = self.num_points {
            c.num_points = v;
        }
        if let Some(v) = self.stratified_t {
            c.stratified_t = v;
        }
        if let Some(v) = self.t_groups {
            c.t_groups = (v != 0).then_some(v);
        }
        if let Some(v) = self.t_power {
            c.t_power = v;
        }
        if let Some(h) = &self.hidden {
            c.net.dims = std::iter::once(2)
                .chain(h.iter().copied())
                .chain(std::iter::once(2))
                .collect();
        }
        c
    }
}

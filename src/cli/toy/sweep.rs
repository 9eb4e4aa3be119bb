//! `diffuse toy sweep`: Chamfer distance against sampling steps (`diffuse::toy::sweep`).
use std::path::PathBuf;

use anyhow::Result;
use clap::Args;
use diffuse::files::ensure_dir;
use diffuse::sampling::{SamplerKind, Spacing};
use diffuse::schedule::NoiseSchedule;
use diffuse::toy::sweep::{SweepOptions, SweepRow};

use crate::cli::args::CommonArgs;

#[derive(Args)]
pub struct SweepArgs {
    /// Checkpoint.
    #[arg(long)]
    ckpt: PathBuf,
    /// Samplers (comma-separated).
    #[arg(long, value_enum, value_delimiter = ',', default_values_t = vec![SamplerKind::Ddim, SamplerKind::DpmSolver2m, SamplerKind::Heun])]
    samplers: Vec<SamplerKind>,
    /// Step counts (comma-separated).
    #[arg(long, value_delimiter = ',', default_values_t = vec![5, 10, 20, 50, 100, 200])]
    steps: Vec<usize>,
    /// Timestep spacing.
    #[arg(long, value_enum, default_value_t = Spacing::Leading)]
    spacing: Spacing,
    /// Seeds averaged per point (comma-separated).
    #[arg(long, value_delimiter = ',', default_values_t = vec![0])]
    seeds: Vec<u64>,
    /// Also run DDPM-1000 as the reference line.
    #[arg(long)]
    ddpm: bool,
    /// Points per sample.
    #[arg(short = 'n', long = "num", default_value_t = 2048)]
    n: usize,
    /// Use the raw weights even when EMA weights are saved.
    #[arg(long)]
    raw: bool,
    /// Output folder.
    #[arg(long, default_value = "out/toy-sweep")]
    out: PathBuf,
    #[command(flatten)]
    common: CommonArgs,
}

pub fn run(a: &SweepArgs) -> Result<()> {
    let dev = a.common.device()?;
    let opts = SweepOptions {
        samplers: a.samplers.clone(),
        steps: a.steps.clone(),
        spacing: a.spacing,
        seeds: a.seeds.clone(),
        ddpm: a.ddpm,
        n: a.n,
    };
    let (model, meta) = diffuse::checkpoint::toy::load(&a.ckpt, a.raw, &dev)?;
    let schedule = NoiseSchedule::new(&meta.config.schedule)?;
    opts.validate(schedule.num_steps())?;
    let reference = meta.config.training_points(a.n)?;
    ensure_dir(&a.out)?;
    let rows =
        diffuse::toy::sweep::run(&model, &schedule, &reference, &opts, &mut |r: &SweepRow| {
            println!(
                "{:>14}  NFE {:>4}  Chamfer {:8.3}  ({:.2} s)",
                r.label, r.nfe, r.mean, r.seconds
            )
        })?;
    diffuse::toy::sweep::write(&a.out, &rows, &opts, schedule.num_steps())?;
    println!("table and plot in {}", a.out.display());
    Ok(())
}

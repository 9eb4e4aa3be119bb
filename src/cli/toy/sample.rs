//! `diffuse toy sample`.
use std::path::PathBuf;

use anyhow::Result;
use clap::Args;
use diffuse::schedule::NoiseSchedule;

use crate::cli::args::{CommonArgs, SamplerArgs};

#[derive(Args)]
pub struct SampleArgs {
    /// Checkpoint (`.safetensors` with its `.json`, or a PyTorch state dict).
    #[arg(long)]
    ckpt: PathBuf,
    #[command(flatten)]
    sampler: SamplerArgs,
    /// Number of points.
    #[arg(short = 'n', long = "num", default_value_t = 2048)]
    n: usize,
    /// Seed of the initial noise (and of DDPM/DDIM-η noise).
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Use the raw weights even when EMA weights are saved.
    #[arg(long)]
    raw: bool,
    /// Output CSV file.
    #[arg(long)]
    out: PathBuf,
    #[command(flatten)]
    common: CommonArgs,
}

pub fn run(a: &SampleArgs) -> Result<()> {
    let dev = a.common.device()?;
    let spec = a.sampler.spec();
    let (model, meta) = diffuse::checkpoint::toy::load(&a.ckpt, a.raw, &dev)?;
    let schedule = NoiseSchedule::new(&meta.config.schedule)?;
    spec.validate(schedule.num_steps())?;
    diffuse::files::ensure_parent(&a.out)?;
    let show = !a.common.quiet;
    let pts = diffuse::toy::sample_points(&model, &schedule, &spec, a.n, a.seed, show)?;
    diffuse::toy::write_csv(&a.out, &pts)?;
    println!(
        "wrote {} points ({}) to {}",
        a.n,
        spec.label(schedule.num_steps()),
        a.out.display()
    );
    Ok(())
}

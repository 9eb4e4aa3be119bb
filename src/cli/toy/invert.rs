//! `diffuse toy invert`: DDIM inversion round trips (`diffuse::toy::invert`).
use std::path::PathBuf;

use anyhow::Result;
use clap::Args;
use diffuse::sampling::Spacing;
use diffuse::schedule::NoiseSchedule;
use diffuse::toy::invert::InversionRow;

use crate::cli::args::CommonArgs;

#[derive(Args)]
pub struct InvertArgs {
    /// Checkpoint.
    #[arg(long)]
    ckpt: PathBuf,
    /// Step counts to try (comma-separated).
    #[arg(long, value_delimiter = ',', default_values_t = vec![10, 20, 50, 100, 200])]
    steps: Vec<usize>,
    /// Timestep spacing.
    #[arg(long, value_enum, default_value_t = Spacing::Leading)]
    spacing: Spacing,
    /// Training points encoded (the first N of the checkpoint's run).
    #[arg(short = 'n', long = "num", default_value_t = 2048)]
    n: usize,
    /// Output folder (inversion.json, interpolation.png).
    #[arg(long, default_value = "out/toy-invert")]
    out: PathBuf,
    #[command(flatten)]
    common: CommonArgs,
}

pub fn run(a: &InvertArgs) -> Result<()> {
    let dev = a.common.device()?;
    let (model, meta) = diffuse::checkpoint::toy::load(&a.ckpt, false, &dev)?;
    let schedule = NoiseSchedule::new(&meta.config.schedule)?;
    let points = meta.config.training_points(a.n)?;
    println!("steps  mean round-trip error");
    diffuse::toy::invert::run(
        &model,
        &schedule,
        &points,
        (&a.steps, a.spacing),
        &a.out,
        &mut |r: &InversionRow| println!("{:>5}  {:.5}", r.steps, r.mean_error),
    )?;
    println!(
        "interpolation picture and inversion.json in {}",
        a.out.display()
    );
    Ok(())
}

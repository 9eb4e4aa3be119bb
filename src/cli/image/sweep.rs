//! `diffuse image sweep`: digits accuracy and Fréchet distance against sampling steps
//! (`diffuse::image::sweep`).
use std::path::PathBuf;

use anyhow::Result;
use clap::Args;
use diffuse::image::judge::DigitsRun;
use diffuse::image::sweep::{SweepOptions, SweepRow};
use diffuse::sampling::{Guidance, GuidanceConvention, SamplerKind, Spacing};

use crate::cli::args::CommonArgs;

#[derive(Args)]
pub struct SweepArgs {
    /// Run folder (a digits run).
    #[arg(long)]
    ckpt: PathBuf,
    /// Samplers (comma-separated).
    #[arg(long, value_enum, value_delimiter = ',', default_values_t = vec![SamplerKind::Ddim, SamplerKind::DpmSolver2m])]
    samplers: Vec<SamplerKind>,
    /// Step counts (comma-separated).
    #[arg(long, value_delimiter = ',', default_values_t = vec![5, 10, 20, 50])]
    steps: Vec<usize>,
    /// Timestep spacing.
    #[arg(long, value_enum, default_value_t = Spacing::Leading)]
    spacing: Spacing,
    /// Guidance scale (reference convention).
    #[arg(long, default_value_t = 0.5, allow_negative_numbers = true)]
    cfg_scale: f64,
    /// Samples per point.
    #[arg(short = 'n', long = "num", default_value_t = 200)]
    n: usize,
    /// Also run DDPM-1000 as the reference line (slow).
    #[arg(long)]
    ddpm: bool,
    /// Seed of labels and noise.
    #[arg(long, default_value_t = 63)]
    seed: u64,
    /// Output folder.
    #[arg(long, default_value = "out/image-sweep")]
    out: PathBuf,
    #[command(flatten)]
    common: CommonArgs,
}

pub fn run(a: &SweepArgs) -> Result<()> {
    let opts = SweepOptions {
        samplers: a.samplers.clone(),
        steps: a.steps.clone(),
        spacing: a.spacing,
        guidance: Guidance::new(a.cfg_scale, GuidanceConvention::Reference)?,
        n: a.n,
        ddpm: a.ddpm,
        seed: a.seed,
    };
    opts.validate()?;
    let dev = a.common.device()?;
    let digits = DigitsRun::load(&a.ckpt, &dev)?;
    diffuse::files::ensure_dir(&a.out)?;
    let floor = digits.judge.real_floor(a.n, 0)?;
    println!(
        "Fréchet real-vs-real floor: {:.2} ({} real digits), {:.2} (halves)",
        floor.at_n, floor.n, floor.halves
    );
    let rows = diffuse::image::sweep::run(&digits, &opts, &mut |r: &SweepRow| {
        println!(
            "{:>14}  NFE {:>4}  accuracy {:5.1}%  Fréchet {:8.2}  ({:.1} s)",
            r.label,
            r.nfe,
            100.0 * r.accuracy,
            r.frechet,
            r.seconds
        )
    })?;
    let t = diffuse::schedule::NoiseSchedule::new(&digits.meta.config.schedule)?.num_steps();
    diffuse::image::sweep::write(&a.out, &rows, &opts, t)?;
    println!("table and plot in {}", a.out.display());
    Ok(())
}

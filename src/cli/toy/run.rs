//! `diffuse toy run`: the whole 2D workflow (`diffuse::toy::run`).
use std::path::PathBuf;

use anyhow::Result;
use clap::Args;
use diffuse::sampling::{SamplerSpec, Spacing};
use diffuse::toy::run::RunOptions;

use super::TrainArgs;

#[derive(Args)]
pub struct RunArgs {
    #[command(flatten)]
    train: TrainArgs,
    /// Output folder.
    #[arg(long, default_value = "out/toy")]
    out: PathBuf,
    /// Points sampled and compared (against the first N training points).
    #[arg(long, default_value_t = 2048)]
    eval_points: usize,
    /// DDIM steps of the few-step evaluation.
    #[arg(long, default_value_t = 50)]
    ddim_steps: usize,
    /// Timestep spacing of the DDIM evaluation [reference: leading; best: quadratic].
    #[arg(long, value_enum)]
    ddim_spacing: Option<Spacing>,
}

pub fn run(a: &RunArgs) -> Result<()> {
    let common = &a.train.over.common;
    let dev = common.device()?;
    let cfg = a.train.config();
    let opts = RunOptions {
        eval_points: a.eval_points,
        ddim: SamplerSpec {
            steps: a.ddim_steps,
            spacing: a.ddim_spacing.unwrap_or(a.train.recipe.few_step_spacing()),
            ..SamplerSpec::default()
        },
        show: !common.quiet,
    };
    let r = diffuse::toy::run::run(&cfg, &opts, &a.out, &dev)?;
    let t = diffuse::schedule::NoiseSchedule::new(&cfg.schedule)?.num_steps();
    println!(
        "{}: trained {} steps in {:.1} s (final loss {:.4}); Chamfer DDPM-{t} {:.2}, DDIM-{} {:.2}; total {:.1} s; results in {}",
        cfg.dataset.name(),
        r.trained.losses.len(),
        r.trained.seconds,
        r.trained.final_loss(),
        r.cd_ddpm,
        a.ddim_steps,
        r.cd_ddim,
        r.total_seconds,
        a.out.display()
    );
    let report = diffuse::report::write_after_run(&a.out, "toy run")?;
    println!("report: {}", report.display());
    Ok(())
}

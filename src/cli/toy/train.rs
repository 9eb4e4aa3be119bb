//! `diffuse toy train`.
use std::path::PathBuf;

use anyhow::Result;
use clap::Args;

use super::TrainArgs;

#[derive(Args)]
pub struct TrainCmd {
    #[command(flatten)]
    train: TrainArgs,
    /// Checkpoint file to write (`.safetensors`; the config goes to `.json` beside it).
    #[arg(long, default_value = "out/toy/model.safetensors")]
    out: PathBuf,
}

pub fn run(a: &TrainCmd) -> Result<()> {
    let common = &a.train.over.common;
    let dev = common.device()?.autodiff();
    let cfg = a.train.config();
    cfg.validate()?;
    diffuse::files::ensure_parent(&a.out)?;
    let trained = diffuse::toy::train(&cfg, &dev, !common.quiet)?;
    diffuse::checkpoint::toy::save(&trained, &cfg, &a.out)?;
    println!(
        "trained {} steps in {:.1} s, final loss {:.4}; saved {}",
        trained.losses.len(),
        trained.seconds,
        trained.final_loss(),
        a.out.display()
    );
    Ok(())
}

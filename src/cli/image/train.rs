//! `diffuse image train`.
use anyhow::Result;
use clap::Args;

use super::ImageTrainArgs;

#[derive(Args)]
pub struct TrainCmd {
    #[command(flatten)]
    train: ImageTrainArgs,
}

pub fn run(a: &TrainCmd) -> Result<()> {
    if a.train.dry_run {
        let (f, _) = a.train.prepare()?;
        println!("{}", f.to_json());
        return Ok(());
    }
    let (outcome, _, _) = a.train.train()?;
    println!(
        "trained to step {} in {:.1} s ({:.2} s of it stalled on checkpoints); run folder {}",
        outcome.step,
        outcome.seconds,
        outcome.checkpoint_seconds,
        a.train.out.display()
    );
    Ok(())
}

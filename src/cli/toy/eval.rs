//! `diffuse toy eval`.
use std::path::PathBuf;

use anyhow::Result;
use clap::Args;
use diffuse::checkpoint::{config_path, toy::ToyCheckpointMeta};
use diffuse::metrics::chamfer::chamfer_distance;
use diffuse::toy::read_csv;

#[derive(Args)]
pub struct EvalArgs {
    /// Generated points (CSV `x,y`).
    samples: PathBuf,
    /// Checkpoint whose training set is the reference.
    #[arg(long, conflicts_with = "reference")]
    ckpt: Option<PathBuf>,
    /// Reference points (CSV `x,y`).
    #[arg(long)]
    reference: Option<PathBuf>,
    /// Reference points taken from the checkpoint's training set.
    #[arg(short = 'n', long = "num", default_value_t = 2048)]
    n: usize,
}

pub fn run(a: &EvalArgs) -> Result<()> {
    let gen = read_csv(&a.samples)?;
    let reference = match (&a.ckpt, &a.reference) {
        (_, Some(r)) => read_csv(r)?,
        (Some(c), None) => {
            let meta: ToyCheckpointMeta = diffuse::files::read_json(&config_path(c))?;
            meta.config.training_points(a.n)?
        }
        (None, None) => anyhow::bail!(
            "give the reference: --ckpt FILE (its training data) or --reference FILE.csv"
        ),
    };
    let cd = chamfer_distance(&gen, &reference, 2)?;
    println!("chamfer: {cd:.4}");
    Ok(())
}

//! `diffuse image judge DIR`: the digits judge on a samples folder.
use std::path::PathBuf;

use anyhow::Result;
use clap::Args;

#[derive(Args)]
pub struct JudgeArgs {
    /// Samples folder with labels.csv.
    samples: PathBuf,
}

pub fn run(a: &JudgeArgs) -> Result<()> {
    let dev = diffuse::device::device(Default::default())?;
    let r = diffuse::image::judge::judge_folder(&a.samples, &dev)?;
    let (j, floor) = (&r.judgement, &r.floor);
    println!(
        "accuracy: {:.1}% of {} samples recognised as their label",
        100.0 * j.accuracy,
        r.n
    );
    println!(
        "frechet: {:.3} to the real digits in the classifier's feature space (real-vs-real floor: {:.3} for {} real digits, {:.3} between halves)",
        j.frechet, floor.at_n, floor.n, floor.halves
    );
    Ok(())
}

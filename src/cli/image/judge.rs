//! `diffuse image judge DIR`: the digits judge on a samples folder.
use std::path::PathBuf;

use anyhow::Result;
use clap::Args;

#[derive(Args)]
pub struct JudgeArgs {
    /// Samples folder with labels.csv.
    samples: PathBuf,
    /// Also write CSV: one row per sample, `file,class,predicted,recognised` (the digit the
    /// classifier sees; 1 where it is the label), to look at the samples it does not recognise.
    #[arg(long, value_name = "CSV")]
    per_image: Option<PathBuf>,
}

pub fn run(a: &JudgeArgs) -> Result<()> {
    if let Some(path) = a.per_image.as_ref().filter(|p| p.is_dir()) {
        anyhow::bail!(
            "--per-image {}: is a folder; expected the path of a CSV file to write",
            path.display()
        );
    }
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
    if let Some(path) = &a.per_image {
        diffuse::files::write_atomic(path, &r.per_image_csv())?;
        println!("per-image predictions: {}", path.display());
    }
    Ok(())
}

//! `diffuse fid`: FID (and KID) between two image folders or statistics files.
use std::path::PathBuf;

use anyhow::Result;
use clap::Args;
use diffuse::metrics::fid_pipeline::{describe_input, fid_between, FidMode, FidOptions};

#[derive(Args)]
pub struct FidArgs {
    /// Ground-truth images (folder, searched recursively) or a statistics file: one from
    /// --save-stats, or a NumPy .npz with arrays `mu` and `sigma` (pytorch-fid's, EDM's).
    pub gt: PathBuf,
    /// Generated images (folder) or a statistics file (as for GT).
    pub generated: PathBuf,
    /// Inception weights: the course's `afhq_inception_v3.ckpt`, pytorch-fid's
    /// `pt_inception-2015-12-05-*.pth`, or a safetensors file from `classifier train`.
    #[arg(long)]
    pub weights: PathBuf,
    /// `reference`: the course's Inception wrapper at 256 px in [−1, 1]; `standard`: pytorch-fid.
    #[arg(long, value_enum, default_value_t = FidMode::Reference)]
    pub mode: FidMode,
    /// Images per network batch.
    #[arg(long, default_value_t = 32)]
    pub batch: usize,
    /// Input size override (default 256 reference, 299 standard).
    #[arg(long)]
    pub image_size: Option<u32>,
    /// Save the ground-truth statistics here, to pass instead of GT next time: a NumPy .npz
    /// that pytorch-fid and EDM read (`mu`, `sigma`) when the name ends in .npz, else diffuse's
    /// own format.
    #[arg(long)]
    pub save_stats: Option<PathBuf>,
    /// Also report KID (mean ± std over subsets).
    #[arg(long)]
    pub kid: bool,
    /// Fail on the first unreadable image instead of skipping it with a warning.
    #[arg(long)]
    pub strict: bool,
    #[command(flatten)]
    pub common: super::args::CommonArgs,
}

pub fn run(a: &FidArgs) -> Result<()> {
    super::args::set_threads(a.common.threads)?;
    if a.batch == 0 {
        anyhow::bail!("invalid value for --batch: must be at least 1");
    }
    let opts = FidOptions {
        weights: a.weights.clone(),
        mode: a.mode,
        batch_size: a.batch,
        image_size: a.image_size,
        save_stats: a.save_stats.clone(),
        kid: a.kid,
        progress: !a.common.quiet,
        device: a.common.device,
        strict: a.strict,
        ..FidOptions::default()
    };
    // Say what is read, so a stray file (a grid, a figure) in a folder shows up in the count.
    for (name, p) in [("ground truth", &a.gt), ("generated", &a.generated)] {
        eprintln!("{name}: {}: {}", p.display(), describe_input(p)?);
    }
    let r = fid_between(&a.gt, &a.generated, &opts)?;
    for s in &r.skipped {
        eprintln!("warning: skipping {}: {}", s.path.display(), s.reason);
    }
    // 0: a statistics file from another tool, which does not record its sample count.
    let count = |n: usize| match n {
        0 => "?".to_string(),
        n => n.to_string(),
    };
    eprintln!(
        "{} ground-truth and {} generated images ({} unreadable skipped{}), {:?} mode at {} px, {:.1} images/s",
        count(r.n_gt),
        count(r.n_gen),
        r.skipped.len(),
        if r.skipped.is_empty() { "" } else { "; --strict makes them an error" },
        r.mode,
        r.image_size,
        r.images_per_second
    );
    if let Some(k) = &r.kid {
        println!("kid: {:.6} ± {:.6}", k.mean, k.std);
    }
    println!("fid: {:.6}", r.fid);
    Ok(())
}

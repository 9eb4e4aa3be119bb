//! `diffuse fid` and `diffuse classifier train`.
use std::path::{Path, PathBuf};

use anyhow::Result;
use clap::{Args, Subcommand};
use diffuse::metrics::fid_pipeline::{describe_input, fid_between, FidMode, FidOptions};
use diffuse::nn::inception_train::{train_classifier, ClassifierTrainConfig};

#[derive(Args)]
pub struct FidArgs {
    /// Ground-truth images (folder, searched recursively) or a statistics file from --save-stats.
    pub gt: PathBuf,
    /// Generated images (folder) or a statistics file.
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
    /// Save the ground-truth statistics here, to pass instead of GT_DIR next time.
    #[arg(long)]
    pub save_stats: Option<PathBuf>,
    /// Also report KID (mean ± std over subsets).
    #[arg(long)]
    pub kid: bool,
    #[command(flatten)]
    pub common: super::toy::CommonArgs,
}

pub fn fid(a: &FidArgs) -> Result<()> {
    super::set_threads(a.common.threads)?;
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
        ..FidOptions::default()
    };
    // Say what is read, so a stray file (a grid, a figure) in a folder shows up in the count.
    for (name, p) in [("ground truth", &a.gt), ("generated", &a.generated)] {
        eprintln!("{name}: {}: {}", p.display(), describe_input(p)?);
    }
    let r = fid_between(&a.gt, &a.generated, &opts)?;
    eprintln!(
        "{} ground-truth and {} generated images, {:?} mode at {} px, {:.1} images/s",
        r.n_gt, r.n_gen, r.mode, r.image_size, r.images_per_second
    );
    if let Some(k) = &r.kid {
        println!("kid: {:.6} ± {:.6}", k.mean, k.std);
    }
    println!("fid: {:.6}", r.fid);
    Ok(())
}

#[derive(Subcommand)]
pub enum ClassifierCommand {
    /// Train the FID feature network (Inception-v3 + a K-way head) from scratch on a
    /// folder-per-class data set, as the course did for its checkpoint.
    Train {
        /// Data root: `ROOT/train/<class>/…` or `ROOT/<class>/…`.
        root: PathBuf,
        /// Output weights (safetensors, loadable by `diffuse fid --weights`).
        #[arg(long, default_value = "out/inception.safetensors")]
        out: PathBuf,
        /// Epochs [reference: 10].
        #[arg(long, default_value_t = 10)]
        epochs: usize,
        /// Batch size [reference: 32].
        #[arg(long, default_value_t = 32)]
        batch: usize,
        /// Adam learning rate [reference: 1e-3].
        #[arg(long, default_value_t = 1e-3)]
        lr: f64,
        /// Input size [reference: 256].
        #[arg(long, default_value_t = 256)]
        image_size: u32,
        /// Seed.
        #[arg(long, default_value_t = 0)]
        seed: u64,
        #[command(flatten)]
        common: super::toy::CommonArgs,
    },
}

pub fn classifier(cmd: ClassifierCommand) -> Result<()> {
    match cmd {
        ClassifierCommand::Train {
            root,
            out,
            epochs,
            batch,
            lr,
            image_size,
            seed,
            common,
        } => {
            super::set_threads(common.threads)?;
            let cfg = ClassifierTrainConfig {
                epochs,
                batch_size: batch,
                lr,
                image_size,
                seed,
                max_steps: None,
                progress: !common.quiet,
            };
            let r = train_classifier(&root, &out, &cfg)?;
            println!(
                "trained {} steps on classes {:?} ({:?} images); last loss {:.4}; saved {}",
                r.steps,
                r.classes,
                r.counts,
                r.last_loss,
                display(&out)
            );
            Ok(())
        }
    }
}

fn display(p: &Path) -> String {
    p.display().to_string()
}

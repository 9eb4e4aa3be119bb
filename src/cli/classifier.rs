//! `diffuse classifier train`: the FID feature network from scratch.
use std::path::PathBuf;

use anyhow::Result;
use clap::Subcommand;
use diffuse::nn::inception_train::{train_classifier, ClassifierTrainConfig};

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
        common: super::args::CommonArgs,
    },
}

pub fn run(cmd: ClassifierCommand) -> Result<()> {
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
            super::args::set_threads(common.threads)?;
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
                out.display()
            );
            Ok(())
        }
    }
}

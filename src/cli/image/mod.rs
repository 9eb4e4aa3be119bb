//! `diffuse image …`: class-conditional image diffusion, one file per subcommand.
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, Result};
use clap::{Args, Subcommand};
use diffuse::data::digits::load_digits;
use diffuse::data::image_folder::{load_image_folder_report, ImageFolderConfig};
use diffuse::data::image_set::ImageSet;
use diffuse::device::Precision;
use diffuse::image::{ImageCheckpointMeta, ImageTrainConfig, Preset, TrainOutcome};
use diffuse::nn::unet::UNet;
use diffuse::sampling::GuidanceMethod;

use super::args::{CommonArgs, GuidanceParams, OptimArgs};

mod cfg_sweep;
mod invert;
mod judge;
mod run;
mod sample;
mod sweep;
mod train;

#[derive(Subcommand)]
pub enum ImageCommand {
    /// Train a class-conditional UNet with classifier-free guidance.
    Train(train::TrainCmd),
    /// Sample images from a trained run: DIR/{i}.png and DIR/labels.csv only; the preview grid
    /// goes beside the folder, to DIR.grid.png.
    Sample(sample::SampleCmd),
    /// Classifier accuracy and Fréchet distance against sampling steps for every sampler, on a
    /// digits run: a table (sweep.csv) and a plot (sweep.png).
    Sweep(sweep::SweepArgs),
    /// DDIM inversion of real images: encode digits to x_T with their labels, decode them back
    /// (mean round-trip error per step count), and a grid interpolating between two codes.
    Invert(invert::InvertArgs),
    /// Guidance methods × scales: accuracy and Fréchet distance on a digits run (or FID against
    /// a folder with --fid-gt), as cfg-sweep.csv and the trade-off plot cfg-sweep.png.
    CfgSweep(cfg_sweep::CfgSweepArgs),
    /// Judge digit samples (a folder written by `image sample` on a digits run): how often the
    /// evaluation classifier recognises each image as its label in labels.csv, and the Fréchet
    /// distance to the real digits in the classifier's feature space (with its real-vs-real
    /// floor at the same sample size).
    Judge(judge::JudgeArgs),
    /// The digits demo: train, sample at w = 0 and a guided scale, judge the samples with a
    /// classifier trained on the real digits (accuracy and Fréchet distance).
    Run(run::RunArgs),
}

pub fn run(cmd: ImageCommand) -> Result<()> {
    match cmd {
        ImageCommand::Train(a) => train::run(&a),
        ImageCommand::Sample(a) => sample::run(&a),
        ImageCommand::Sweep(a) => sweep::run(&a),
        ImageCommand::Invert(a) => invert::run(&a),
        ImageCommand::CfgSweep(a) => cfg_sweep::run(&a),
        ImageCommand::Judge(a) => judge::run(&a),
        ImageCommand::Run(a) => run::run(&a),
    }
}

/// Where the training images come from.
#[derive(Args, Clone)]
pub struct DataArgs {
    /// `digits` (bundled) or a folder-per-class root `ROOT/{train,val}/<class>/*.png|jpg`.
    #[arg(long, default_value = "digits")]
    pub data: String,
    /// Keep the first N images of each class (sorted by file name); 0 = all [reference: 3000].
    #[arg(long, default_value_t = 3000)]
    pub max_per_class: usize,
    /// Fail on an unreadable image instead of skipping it with a warning.
    #[arg(long)]
    pub strict: bool,
}

impl DataArgs {
    /// Loads the `split` images named by `--data` at `size`×`size`.
    pub fn load(&self, size: usize, split: &str) -> Result<ImageSet> {
        if self.data == "digits" {
            return Ok(load_digits(size)?);
        }
        let root = Path::new(&self.data);
        if !root.is_dir() {
            bail!(
                "invalid value for --data: `{}` is neither `digits` nor a folder",
                self.data
            );
        }
        let cfg = ImageFolderConfig {
            split: split.into(),
            size,
            max_per_class: self.max_per_class,
            strict: self.strict,
        };
        let (set, skipped) = load_image_folder_report(root, &cfg)?;
        for s in &skipped {
            eprintln!("warning: skipped {}: {}", s.path.display(), s.reason);
        }
        Ok(set)
    }
}

/// The training flags of `image train` and `image run`.
#[derive(Args, Clone)]
pub struct ImageTrainArgs {
    #[command(flatten)]
    pub data: DataArgs,
    /// Preset [default: digits for `--data digits`, afhq otherwise].
    #[arg(long, value_enum)]
    preset: Option<Preset>,
    /// Training steps.
    #[arg(long)]
    steps: Option<usize>,
    /// Batch size.
    #[arg(long)]
    batch_size: Option<usize>,
    /// Probability of dropping a label to the null class in training.
    #[arg(long, allow_negative_numbers = true)]
    p_uncond: Option<f64>,
    /// Checkpoint every N steps.
    #[arg(long)]
    checkpoint_every: Option<usize>,
    /// Preview grid every N steps (0 = never).
    #[arg(long)]
    preview_every: Option<usize>,
    /// Base channels of the UNet.
    #[arg(long)]
    channels: Option<usize>,
    /// Seed [preset: 63].
    #[arg(long)]
    seed: Option<u64>,
    /// Network arithmetic in training: f32, or bf16 mixed precision with f32 master weights
    /// [default: bf16 with --device cuda, f32 otherwise].
    #[arg(long, value_enum)]
    precision: Option<Precision>,
    /// Continue the run in --out from its last checkpoint.
    #[arg(long, conflicts_with = "overwrite")]
    pub resume: bool,
    /// Start a new run in --out even if it holds another run: that run is moved aside to
    /// OUT.old-N (never deleted).
    #[arg(long)]
    pub overwrite: bool,
    /// Keep the newest N checkpoints in --out/checkpoints [default: 2].
    #[arg(long)]
    keep_checkpoints: Option<usize>,
    /// Run folder.
    #[arg(long, default_value = "out/image")]
    pub out: PathBuf,
    #[command(flatten)]
    optim: OptimArgs,
    #[command(flatten)]
    pub common: CommonArgs,
}

impl ImageTrainArgs {
    fn preset(&self) -> Preset {
        self.preset
            .unwrap_or_else(|| Preset::for_data(&self.data.data))
    }

    /// The preset with the given flags applied; the data decide the image shape and classes.
    fn config(&self, data: &ImageSet) -> ImageTrainConfig {
        let mut c = self.preset().config();
        c.unet.image_size = data.height;
        c.unet.in_channels = data.channels;
        c.unet.num_classes = data.num_classes();
        self.optim.apply(&mut c.optim, &mut c.ema_decay);
        let set = |dst: &mut usize, v: Option<usize>| *dst = v.unwrap_or(*dst);
        set(&mut c.steps, self.steps);
        set(&mut c.batch_size, self.batch_size);
        set(&mut c.keep_checkpoints, self.keep_checkpoints);
        set(&mut c.checkpoint_every, self.checkpoint_every);
        set(&mut c.preview_every, self.preview_every);
        set(&mut c.unet.channels, self.channels);
        c.p_uncond = self.p_uncond.unwrap_or(c.p_uncond);
        c.seed = self.seed.unwrap_or(c.seed);
        c.precision = self
            .precision
            .unwrap_or_else(|| Precision::default_for(self.common.device.kind));
        c
    }

    /// Loads the data, trains (or resumes) into `--out`; an interrupted run is an error that
    /// says how to continue.
    pub fn train(&self) -> Result<(TrainOutcome, ImageTrainConfig, Arc<ImageSet>)> {
        let dev = self.common.device()?;
        let data = Arc::new(self.data.load(self.preset().image_size(), "train")?);
        let cfg = self.config(&data);
        cfg.validate()?;
        let outcome = diffuse::image::train(
            &cfg,
            Arc::clone(&data),
            &self.out,
            if self.resume {
                diffuse::image::Start::Resume
            } else if self.overwrite {
                diffuse::image::Start::Overwrite
            } else {
                diffuse::image::Start::Fresh
            },
            &dev.autodiff(),
            !self.common.quiet,
        )?;
        if outcome.interrupted {
            bail!(
                "interrupted at step {}; the run is saved in {} (continue with --resume)",
                outcome.step,
                self.out.display()
            );
        }
        Ok((outcome, cfg, data))
    }
}

/// Loads the guide model when one of `methods` is `auto` (which then requires it), and checks
/// that it generates the same images as the main run.
pub fn load_guide(
    params: &GuidanceParams,
    methods: &[GuidanceMethod],
    meta: &ImageCheckpointMeta,
    raw: bool,
    dev: &burn::prelude::Device,
) -> Result<Option<UNet>> {
    let wants = methods.contains(&GuidanceMethod::Auto);
    match (&params.guide_ckpt, wants) {
        (None, true) => {
            bail!("--guidance auto needs the weaker guide model: give --guide-ckpt DIR")
        }
        (Some(_), false) => bail!("--guide-ckpt is only used by --guidance auto"),
        (None, false) => Ok(None),
        (Some(p), true) => {
            let (g, gm) = diffuse::image::load(p, raw, dev)?;
            let (a, b) = (&meta.config.unet, &gm.config.unet);
            if (a.in_channels, a.image_size, a.num_classes)
                != (b.in_channels, b.image_size, b.num_classes)
                || meta.config.schedule != gm.config.schedule
            {
                bail!(
                    "{}: the guide must be trained on the same images, classes and noise schedule as the model",
                    p.display()
                );
            }
            Ok(Some(g))
        }
    }
}

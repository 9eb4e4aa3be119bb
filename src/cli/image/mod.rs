//! `diffuse image …`: class-conditional image diffusion, one file per subcommand.
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, Result};
use clap::{Args, Subcommand};
use diffuse::data::digits::load_digits;
use diffuse::data::image_folder::Resize;
use diffuse::data::image_set::ImageSet;
use diffuse::data::layouts::{self, DataOptions, Layout};
use diffuse::device::Precision;
use diffuse::image::train_eval::{DigitFrechetDuringTraining, FidDuringTraining};
use diffuse::image::{
    DataSpec, EvalSpec, Evaluate, ImageCheckpointMeta, ImageTrainConfig, Preset, Recipe, RunFile,
    TrainOptions, TrainOutcome,
};
use diffuse::nn::unet::UNet;
use diffuse::objective::{LossWeighting, TimestepSampling};
use diffuse::sampling::{GuidanceMethod, SamplerKind};
use diffuse::schedule::BetaSchedule;

use super::args::{CommonArgs, GuidanceParams, OptimArgs};

mod cfg_sweep;
mod export;
mod invert;
mod judge;
mod run;
mod sample;
mod study;
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
    Run(Box<run::RunArgs>),
    /// Export a run's network for the course's PyTorch code (unet.safetensors + unet.json) or
    /// as plain weights; the course's own checkpoints load in every --ckpt.
    Export(export::ExportArgs),
    /// One digits model per seed and recipe, judged at w = 0 and APG w = 7.5: accuracy,
    /// Fréchet distance and its real-vs-real floor, training CPU time (study.csv, summary.csv).
    Study(study::StudyArgs),
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
        ImageCommand::Export(a) => export::run(&a),
        ImageCommand::Study(a) => study::run(&a),
    }
}

/// Where the training images come from.
#[derive(Args, Clone)]
pub struct DataArgs {
    /// `digits` (bundled), or a data set: a folder per class (with or without a train/val
    /// level), a flat folder of images (unconditional), or EDM's layout (a .zip or a folder
    /// with dataset.json) [default: digits].
    #[arg(long)]
    pub data: Option<String>,
    /// The layout of --data [default: detected].
    #[arg(long, value_enum)]
    layout: Option<Layout>,
    /// Keep the first N images of each class (sorted by file name); 0 = all [default: 3000,
    /// the reference, for ROOT/{train,val}/<class>; all otherwise].
    #[arg(long)]
    max_per_class: Option<usize>,
    /// Fail on an unreadable image instead of skipping it with a warning.
    #[arg(long)]
    pub strict: bool,
    /// Images that are not square: squash (resize the whole image, the reference protocol's
    /// Resize((64, 64))) or center-crop (the largest centred square, then resize) [default:
    /// squash].
    #[arg(long, value_enum)]
    resize: Option<Resize>,
    /// Also train on left–right mirrored copies (EDM's --xflip; seeded with the run).
    #[arg(long)]
    xflip: bool,
}

impl DataArgs {
    /// The data spec with the given flags laid over `base`.
    fn apply(&self, d: &mut DataSpec) {
        if let Some(v) = &self.data {
            d.path = v.clone();
        }
        if self.layout.is_some() {
            d.layout = self.layout;
        }
        if self.max_per_class.is_some() {
            d.max_per_class = self.max_per_class;
        }
        d.strict |= self.strict;
        if let Some(r) = self.resize {
            d.resize = r;
        }
    }
}

/// Loads the `split` images of `spec` at `size`×`size`; skipped files are reported.
pub fn load_data(spec: &DataSpec, size: usize, split: &str, show: bool) -> Result<ImageSet> {
    if spec.path == "digits" {
        return Ok(load_digits(size)?);
    }
    let root = Path::new(&spec.path);
    if !root.exists() {
        bail!(
            "invalid value for --data: `{}` is neither `digits` nor a folder or .zip archive",
            spec.path
        );
    }
    let opts = DataOptions {
        layout: spec.layout,
        split: split.into(),
        size,
        max_per_class: spec.max_per_class,
        strict: spec.strict,
        resize: spec.resize,
    };
    let loaded = layouts::load(root, &opts)?;
    for s in &loaded.skipped {
        eprintln!("warning: skipped {}: {}", s.path.display(), s.reason);
    }
    if show {
        let set = &loaded.set;
        eprintln!(
            "data: {} ({:?} layout): {} images{}{}",
            root.display(),
            loaded.layout,
            set.len(),
            if set.num_classes() == 0 {
                ", no classes (unconditional)".to_string()
            } else {
                format!(", {} classes", set.num_classes())
            },
            if loaded.skipped.is_empty() {
                String::new()
            } else {
                format!(", {} unreadable skipped", loaded.skipped.len())
            }
        );
    }
    Ok(loaded.set)
}

/// What `--keep-best` keeps.
#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum KeepBest {
    /// The checkpoint with the lowest FID (digits: Fréchet distance) so far, in RUN/best/.
    Fid,
}

/// The training flags of `image train` and `image run`. Unset flags take their value from
/// `--config FILE`, then from the preset.
#[derive(Args, Clone)]
pub struct ImageTrainArgs {
    #[command(flatten)]
    pub data: DataArgs,
    /// Settings from a TOML or JSON file with the keys of RUN/config.json (`--dry-run` prints
    /// them); flags given beside it override it, an unknown key is an error.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Print the fully resolved configuration (the --config format) and exit without training.
    #[arg(long)]
    pub dry_run: bool,
    /// Preset [default: digits for `--data digits`, afhq otherwise].
    #[arg(long, value_enum)]
    preset: Option<Preset>,
    /// Recipe laid over the preset: `reference` (the preset as it is) or `best` (the levers
    /// below as measured on the digits, README "Image recipes") [default: reference for
    /// `image train`, best for `image run`].
    #[arg(long, value_enum)]
    pub recipe: Option<Recipe>,
    /// Noise schedule (β curve).
    #[arg(long, value_enum)]
    schedule: Option<BetaSchedule>,
    /// Training timestep sampling: uniform (reference) or log-normal in σ (EDM).
    #[arg(long, value_enum)]
    timesteps: Option<TimestepKind>,
    /// Mean of ln σ of `--timesteps log-normal` [default: −1.2, EDM's P_mean].
    #[arg(long, allow_negative_numbers = true, requires = "timesteps")]
    timestep_mean: Option<f64>,
    /// Standard deviation of ln σ of `--timesteps log-normal` [default: 1.2, EDM's P_std].
    #[arg(long, requires = "timesteps")]
    timestep_std: Option<f64>,
    /// Min-SNR-γ loss weighting (Hang et al. 2023) with this γ; 0 = off (L_simple, reference).
    #[arg(long)]
    min_snr_gamma: Option<f64>,
    /// Dropout of the UNet's residual blocks.
    #[arg(long)]
    dropout: Option<f64>,
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
    /// Steps between two lines of RUN/metrics.jsonl and, when stderr is not a terminal, of the
    /// progress lines [default: steps/100, at most 100].
    #[arg(long)]
    log_every: Option<usize>,
    /// Evaluate FID every N steps during training (digits: the Fréchet distance in the judge's
    /// features), logged to metrics.jsonl [default: 0 = never].
    #[arg(long)]
    fid_every: Option<usize>,
    /// Samples per FID evaluation [default: 1000].
    #[arg(long)]
    fid_n: Option<usize>,
    /// FID reference: an image folder (its statistics computed once and cached in the run
    /// folder) or a statistics file.
    #[arg(long)]
    fid_ref: Option<PathBuf>,
    /// Inception weights for FID during training (the course's afhq_inception_v3.ckpt).
    #[arg(long)]
    weights: Option<PathBuf>,
    /// Sampler of the FID samples [default: ddim].
    #[arg(long, value_enum)]
    fid_sampler: Option<SamplerKind>,
    /// Steps of the FID sampler [default: 50].
    #[arg(long)]
    fid_steps: Option<usize>,
    /// Guidance scale of the FID samples (reference convention) [default: 0].
    #[arg(long, allow_negative_numbers = true)]
    fid_cfg_scale: Option<f64>,
    /// Guidance method of the FID samples [default: cfg].
    #[arg(long, value_enum)]
    fid_guidance: Option<GuidanceMethod>,
    /// Keep the best checkpoint by this metric in RUN/best/ (sample it with --ckpt RUN/best).
    #[arg(long, value_enum)]
    keep_best: Option<KeepBest>,
    /// Run folder.
    #[arg(long, default_value = "out/image")]
    pub out: PathBuf,
    #[command(flatten)]
    optim: OptimArgs,
    #[command(flatten)]
    pub common: CommonArgs,
}

/// The training timestep samplings `--timesteps` names.
#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum TimestepKind {
    Uniform,
    LogNormal,
}

/// Keys of the run config that the data decide.
const FROM_DATA: [&str; 2] = ["train.unet.in_channels", "train.unet.num_classes"];

impl ImageTrainArgs {
    /// The preset: the flag, or the one for the data.
    fn preset(&self, data: &str) -> Preset {
        self.preset.unwrap_or_else(|| Preset::for_data(data))
    }

    /// The run config before the data are read: the preset, then `--config`, then the flags.
    fn resolve(&self) -> Result<RunFile> {
        // The data path decides the preset, so it is read first (flag, else the file).
        let peek = match &self.config {
            Some(f) => {
                RunFile {
                    data: DataSpec::default(),
                    train: ImageTrainConfig::digits(),
                    log_every: 0,
                    eval: EvalSpec::default(),
                }
                .overlay_file(f)?
                .data
                .path
            }
            None => "digits".into(),
        };
        let data_path = self.data.data.clone().unwrap_or(peek);
        let preset = self.preset(&data_path);
        let base = RunFile {
            data: DataSpec {
                path: data_path,
                ..DataSpec::default()
            },
            train: preset.with_recipe(self.recipe.unwrap_or_default()),
            // 0: derived from the steps below unless the file or a flag sets it.
            log_every: 0,
            eval: EvalSpec::default(),
        };
        let mut f = match &self.config {
            Some(file) => base.overlay_file(file)?,
            None => base,
        };
        self.data.apply(&mut f.data);
        let c = &mut f.train;
        self.optim.apply(&mut c.optim, &mut c.ema_decay);
        let set = |dst: &mut usize, v: Option<usize>| *dst = v.unwrap_or(*dst);
        set(&mut c.steps, self.steps);
        set(&mut c.batch_size, self.batch_size);
        set(&mut c.keep_checkpoints, self.keep_checkpoints);
        set(&mut c.checkpoint_every, self.checkpoint_every);
        set(&mut c.preview_every, self.preview_every);
        set(&mut c.unet.channels, self.channels);
        c.unet.dropout = self.dropout.unwrap_or(c.unet.dropout);
        c.schedule.kind = self.schedule.unwrap_or(c.schedule.kind);
        match self.timesteps {
            Some(TimestepKind::Uniform) => c.objective.timesteps = TimestepSampling::Uniform,
            Some(TimestepKind::LogNormal) => {
                let (mean, std) = match c.objective.timesteps {
                    TimestepSampling::LogNormal { mean, std } => (mean, std),
                    TimestepSampling::Uniform => TimestepSampling::EDM,
                };
                c.objective.timesteps = TimestepSampling::LogNormal {
                    mean: self.timestep_mean.unwrap_or(mean),
                    std: self.timestep_std.unwrap_or(std),
                };
            }
            None => {}
        }
        if self.timesteps == Some(TimestepKind::Uniform)
            && (self.timestep_mean.is_some() || self.timestep_std.is_some())
        {
            bail!("--timestep-mean and --timestep-std set `--timesteps log-normal`; they do nothing with uniform timesteps");
        }
        match self.min_snr_gamma {
            Some(0.0) => c.objective.weighting = LossWeighting::Uniform,
            Some(gamma) => c.objective.weighting = LossWeighting::MinSnr { gamma },
            None => {}
        }
        c.p_uncond = self.p_uncond.unwrap_or(c.p_uncond);
        c.seed = self.seed.unwrap_or(c.seed);
        c.xflip |= self.data.xflip;
        let file_sets = |key: &str| {
            self.config
                .as_ref()
                .is_some_and(|p| RunFile::file_sets(p, key))
        };
        c.precision = match self.precision {
            Some(p) => p,
            None if file_sets("train.precision") => c.precision,
            None => Precision::default_for(self.common.device.kind),
        };
        set(&mut f.log_every, self.log_every);
        if f.log_every == 0 {
            f.log_every = RunFile::default_log_every(f.train.steps);
        }
        let e = &mut f.eval;
        set(&mut e.every, self.fid_every);
        set(&mut e.n, self.fid_n);
        set(&mut e.steps, self.fid_steps);
        if self.fid_ref.is_some() {
            e.reference = self.fid_ref.clone();
        }
        if self.weights.is_some() {
            e.weights = self.weights.clone();
        }
        e.sampler = self.fid_sampler.unwrap_or(e.sampler);
        e.cfg_scale = self.fid_cfg_scale.unwrap_or(e.cfg_scale);
        e.guidance = self.fid_guidance.unwrap_or(e.guidance);
        e.keep_best |= self.keep_best == Some(KeepBest::Fid);
        if e.keep_best && e.every == 0 {
            bail!("--keep-best fid needs --fid-every N (an evaluation to rank checkpoints by)");
        }
        if e.every == 0 && (self.fid_ref.is_some() || self.weights.is_some()) {
            bail!("--fid-ref and --weights are used by FID during training: give --fid-every N");
        }
        Ok(f)
    }

    /// The run config with what the data decide (channels, classes) filled in: an explicit
    /// different value in `--config` is an error.
    fn with_data(&self, mut f: RunFile, data: &ImageSet) -> Result<RunFile> {
        let u = &mut f.train.unet;
        let from_data = [data.channels, data.num_classes()];
        for (key, (slot, want)) in FROM_DATA.iter().zip(
            [&mut u.in_channels, &mut u.num_classes]
                .into_iter()
                .zip(from_data),
        ) {
            if *slot != want
                && self
                    .config
                    .as_ref()
                    .is_some_and(|p| RunFile::file_sets(p, key))
            {
                bail!(
                    "{}: `{key}` is {} but the data have {want}",
                    self.config.as_ref().expect("checked").display(),
                    slot
                );
            }
            *slot = want;
        }
        Ok(f)
    }

    /// Loads the data and resolves the run config (`--dry-run` stops here).
    pub fn prepare(&self) -> Result<(RunFile, Arc<ImageSet>)> {
        let f = self.resolve()?;
        let data = Arc::new(load_data(
            &f.data,
            f.train.unet.image_size,
            "train",
            !self.common.quiet,
        )?);
        let f = self.with_data(f, &data)?;
        f.train.validate()?;
        Ok((f, data))
    }

    /// Loads the data, trains (or resumes) into `--out`; an interrupted run is an error that
    /// says how to continue.
    pub fn train(&self) -> Result<(TrainOutcome, ImageTrainConfig, Arc<ImageSet>)> {
        let dev = self.common.device()?;
        let (f, data) = self.prepare()?;
        let cfg = f.train.clone();
        diffuse::files::ensure_dir(&self.out)?;
        diffuse::files::write_atomic(&self.out.join("config.json"), f.to_json().as_bytes())?;
        let mut evaluator: Option<Box<dyn Evaluate>> = match f.eval.every {
            0 => None,
            _ if f.data.path == "digits" => Some(Box::new(DigitFrechetDuringTraining::new(
                &f.eval, &cfg, &dev,
            )?)),
            _ => Some(Box::new(FidDuringTraining::new(
                &f.eval,
                &cfg,
                &data.class_names,
                &self.out,
                self.common.device,
            )?)),
        };
        let start = if self.resume {
            diffuse::image::Start::Resume
        } else if self.overwrite {
            diffuse::image::Start::Overwrite
        } else {
            diffuse::image::Start::Fresh
        };
        let opts = TrainOptions {
            start,
            show: !self.common.quiet,
            log_every: f.log_every,
            // Coerced here: the field's trait object lives as long as the borrow, not 'static.
            evaluator: evaluator.as_deref_mut().map(|e| e as &mut dyn Evaluate),
            keep_best: f.eval.keep_best,
        };
        let outcome =
            diffuse::image::train_with(&cfg, Arc::clone(&data), &self.out, &dev.autodiff(), opts)?;
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

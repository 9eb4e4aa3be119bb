//! `diffuse image …` and `diffuse prepare-eval`: class-conditional image diffusion.
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, Result};
use clap::{Args, Subcommand, ValueEnum};
use diffuse::checkpoint::write_json;
use diffuse::data::digits::load_digits;
use diffuse::data::image_folder::{load_image_folder_report, ImageFolderConfig};
use diffuse::data::image_set::ImageSet;
use diffuse::device::{device, Precision};
use diffuse::image::{self as img, ImageTrainConfig};
use diffuse::metrics::digit_frechet::{DigitJudge, Judgement};
use diffuse::sampling::{
    ApgConfig, Guidance, GuidanceConfig, GuidanceConvention, GuidanceMethod, SamplerKind,
};
use diffuse::schedule::NoiseSchedule;

use super::toy::CommonArgs;

/// Training presets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Preset {
    /// The reference AFHQ protocol (58.8 M-parameter UNet, batch 16, 100k steps).
    Afhq,
    /// A small UNet on the bundled digits (8×8) that trains on a CPU in minutes.
    Digits,
}

#[derive(Subcommand)]
pub enum ImageCommand {
    /// Train a class-conditional UNet with classifier-free guidance.
    Train {
        #[command(flatten)]
        train: ImageTrainArgs,
    },
    /// Sample images from a trained run: DIR/{i}.png and DIR/labels.csv only; the preview grid
    /// goes beside the folder, to DIR.grid.png.
    Sample {
        #[command(flatten)]
        sample: ImageSampleArgs,
        /// Output folder.
        #[arg(long)]
        out: PathBuf,
    },
    /// Classifier accuracy and Fréchet distance against sampling steps for every sampler, on a
    /// digits run: a table (sweep.csv) and a plot (sweep.png).
    Sweep {
        /// Run folder (a digits run).
        #[arg(long)]
        ckpt: PathBuf,
        /// Samplers (comma-separated).
        #[arg(long, value_enum, value_delimiter = ',', default_values_t = vec![SamplerKind::Ddim, SamplerKind::DpmSolver2m])]
        samplers: Vec<SamplerKind>,
        /// Step counts (comma-separated).
        #[arg(long, value_delimiter = ',', default_values_t = vec![5, 10, 20, 50])]
        steps: Vec<usize>,
        /// Timestep spacing.
        #[arg(long, value_enum, default_value_t = diffuse::sampling::Spacing::Leading)]
        spacing: diffuse::sampling::Spacing,
        /// Guidance scale (reference convention).
        #[arg(long, default_value_t = 0.5, allow_negative_numbers = true)]
        cfg_scale: f64,
        /// Samples per point.
        #[arg(short = 'n', long = "num", default_value_t = 200)]
        n: usize,
        /// Also run DDPM-1000 as the reference line (slow).
        #[arg(long)]
        ddpm: bool,
        /// Seed of labels and noise.
        #[arg(long, default_value_t = 63)]
        seed: u64,
        /// Output folder.
        #[arg(long, default_value = "out/image-sweep")]
        out: PathBuf,
        #[command(flatten)]
        common: CommonArgs,
    },
    /// DDIM inversion of real images: encode digits to x_T with their labels, decode them back
    /// (mean round-trip error per step count), and a grid interpolating between two codes.
    Invert {
        /// Run folder (a digits run).
        #[arg(long)]
        ckpt: PathBuf,
        /// Step counts (comma-separated).
        #[arg(long, value_delimiter = ',', default_values_t = vec![10, 20, 50, 100])]
        steps: Vec<usize>,
        /// Images encoded (the first N digits).
        #[arg(short = 'n', long = "num", default_value_t = 100)]
        n: usize,
        /// Output folder.
        #[arg(long, default_value = "out/image-invert")]
        out: PathBuf,
        #[command(flatten)]
        common: CommonArgs,
    },
    /// Guidance methods × scales: accuracy and Fréchet distance on a digits run (or FID against
    /// a folder with --fid-gt), as cfg-sweep.csv and the trade-off plot cfg-sweep.png.
    CfgSweep(CfgSweepArgs),
    /// Judge digit samples (a folder written by `image sample` on a digits run): how often the
    /// evaluation classifier recognises each image as its label in labels.csv, and the Fréchet
    /// distance to the real digits in the classifier's feature space (with its real-vs-real
    /// floor at the same sample size).
    Judge {
        /// Samples folder with labels.csv.
        samples: PathBuf,
    },
    /// The digits demo: train, sample at w = 0 and a guided scale, judge the samples with a
    /// classifier trained on the real digits (accuracy and Fréchet distance).
    Run {
        #[command(flatten)]
        train: ImageTrainArgs,
        /// Samples per guidance scale.
        #[arg(short = 'n', long = "num", default_value_t = 500)]
        n: usize,
        /// Guided scale compared with w = 0 (reference convention; the reference default 7.5).
        #[arg(long, default_value_t = 7.5, allow_negative_numbers = true)]
        cfg_scale: f64,
        /// Guidance method of the guided samples. APG keeps the digits' distribution at
        /// w = 7.5 where plain CFG collapses it (BENCHMARKS.md, guidance sweep).
        #[arg(long, value_enum, default_value_t = GuidanceMethod::Apg)]
        guidance: GuidanceMethod,
        #[command(flatten)]
        params: GuidanceParams,
        /// Sampler.
        #[arg(long, value_enum, default_value_t = SamplerKind::Ddim)]
        sampler: SamplerKind,
        /// Sampling steps (DDIM).
        #[arg(long, default_value_t = 50)]
        sample_steps: usize,
    },
}

/// Settings of the guidance methods (each used only by its method); defaults from
/// [`GuidanceConfig::default`].
#[derive(Args, Clone)]
pub struct GuidanceParams {
    /// interval: guidance only for EDM noise levels σ = √((1−ᾱ)/ᾱ) above this…
    #[arg(long, default_value_t = GuidanceConfig::default().interval.0)]
    interval_lo: f64,
    /// interval: …and at most this (Kynkäänniemi et al. 2024, EDM2-S: (0.28, 5.42]).
    #[arg(long, default_value_t = GuidanceConfig::default().interval.1)]
    interval_hi: f64,
    /// rescale: φ, the weight of the std-rescaled prediction (Lin et al. 2024: 0.7).
    #[arg(long, default_value_t = GuidanceConfig::default().rescale_phi)]
    rescale_phi: f64,
    /// apg: η, weight of the update's component parallel to the conditional x̂₀.
    #[arg(long, default_value_t = ApgConfig::default().eta, allow_negative_numbers = true)]
    apg_eta: f64,
    /// apg: momentum β (Sadat et al. 2025 recommend a negative value).
    #[arg(long, default_value_t = ApgConfig::default().momentum, allow_negative_numbers = true)]
    apg_momentum: f64,
    /// apg: bound r on the per-image L2 norm of the x̂₀ update (0 = none).
    #[arg(long, default_value_t = ApgConfig::default().norm_threshold)]
    apg_norm: f64,
    /// threshold: quantile p of |x̂₀| per image (Saharia et al. 2022: 0.995).
    #[arg(long, default_value_t = GuidanceConfig::default().threshold_percentile)]
    threshold_percentile: f64,
    /// auto: the weaker guide model (a run folder or its model.safetensors), e.g. an early or
    /// smaller run of the same data (Karras et al. 2024).
    #[arg(long)]
    guide_ckpt: Option<PathBuf>,
}

impl GuidanceParams {
    /// The configuration of `method` at `scale`.
    fn config(&self, method: GuidanceMethod, scale: Guidance) -> Result<GuidanceConfig> {
        let c = GuidanceConfig {
            method,
            scale,
            interval: (self.interval_lo, self.interval_hi),
            rescale_phi: self.rescale_phi,
            apg: ApgConfig {
                eta: self.apg_eta,
                momentum: self.apg_momentum,
                norm_threshold: self.apg_norm,
            },
            threshold_percentile: self.threshold_percentile,
        };
        c.validate()?;
        Ok(c)
    }

    /// Loads the guide model when one of `methods` is `auto` (which then requires it), and
    /// checks that it generates the same images as the main run.
    fn load_guide(
        &self,
        methods: &[GuidanceMethod],
        meta: &img::ImageCheckpointMeta,
        raw: bool,
        dev: &burn::prelude::Device,
    ) -> Result<Option<diffuse::nn::unet::UNet>> {
        let wants = methods.contains(&GuidanceMethod::Auto);
        match (&self.guide_ckpt, wants) {
            (None, true) => {
                bail!("--guidance auto needs the weaker guide model: give --guide-ckpt DIR")
            }
            (Some(_), false) => bail!("--guide-ckpt is only used by --guidance auto"),
            (None, false) => Ok(None),
            (Some(p), true) => {
                let (g, gm) = img::load(p, raw, dev)?;
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
}

/// `diffuse image cfg-sweep`.
#[derive(Args)]
pub struct CfgSweepArgs {
    /// Run folder (a digits run, or any run with --fid-gt).
    #[arg(long)]
    ckpt: PathBuf,
    /// Guidance methods (comma-separated).
    #[arg(long, value_enum, value_delimiter = ',', default_values_t = vec![GuidanceMethod::Cfg, GuidanceMethod::Interval, GuidanceMethod::Rescale, GuidanceMethod::Apg, GuidanceMethod::Threshold])]
    guidance: Vec<GuidanceMethod>,
    /// Guidance scales (comma-separated), read in --convention.
    #[arg(long, value_delimiter = ',', default_values_t = vec![0.0, 0.5, 1.0, 2.0, 4.0, 7.5])]
    scales: Vec<f64>,
    /// How --scales are read: reference (1+w)ε_c − wε_u, or diffusers ε_u + s(ε_c − ε_u).
    #[arg(long, value_enum, default_value_t = GuidanceConvention::Reference)]
    convention: GuidanceConvention,
    #[command(flatten)]
    params: GuidanceParams,
    /// Sampler.
    #[arg(long, value_enum, default_value_t = SamplerKind::Ddim)]
    sampler: SamplerKind,
    /// Steps of few-step samplers.
    #[arg(long, default_value_t = 50)]
    steps: usize,
    /// Samples per (method, scale).
    #[arg(short = 'n', long = "num", default_value_t = 200)]
    n: usize,
    /// Images per network batch.
    #[arg(long, default_value_t = 250)]
    batch: usize,
    /// Seed of labels and noise (the same for every point).
    #[arg(long, default_value_t = 63)]
    seed: u64,
    /// FID instead of the digits metrics: the ground-truth folder (e.g. ROOT/eval). Samples of
    /// each point are written under OUT/samples/ and compared with the existing FID pipeline.
    #[arg(long)]
    fid_gt: Option<PathBuf>,
    /// FID: Inception weights (as `diffuse fid --weights`).
    #[arg(long)]
    weights: Option<PathBuf>,
    /// FID: reference (course) or standard (pytorch-fid) preprocessing.
    #[arg(long, value_enum, default_value_t = diffuse::metrics::fid_pipeline::FidMode::Reference)]
    fid_mode: diffuse::metrics::fid_pipeline::FidMode,
    /// Output folder.
    #[arg(long, default_value = "out/cfg-sweep")]
    out: PathBuf,
    #[command(flatten)]
    common: CommonArgs,
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

#[derive(Args, Clone)]
pub struct ImageTrainArgs {
    #[command(flatten)]
    data: DataArgs,
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
    #[arg(long)]
    resume: bool,
    /// Keep the newest N checkpoints in --out/checkpoints [default: 2].
    #[arg(long)]
    keep_checkpoints: Option<usize>,
    /// Run folder.
    #[arg(long, default_value = "out/image")]
    out: PathBuf,
    #[command(flatten)]
    optim: super::OptimArgs,
    #[command(flatten)]
    common: CommonArgs,
}

impl ImageTrainArgs {
    fn config(&self, data: &ImageSet) -> ImageTrainConfig {
        let preset = self.preset.unwrap_or(if self.data.data == "digits" {
            Preset::Digits
        } else {
            Preset::Afhq
        });
        let mut c = match preset {
            Preset::Afhq => ImageTrainConfig::reference(),
            Preset::Digits => ImageTrainConfig::digits(),
        };
        // The data decide the image shape and the class count.
        c.unet.image_size = data.height;
        c.unet.in_channels = data.channels;
        c.unet.num_classes = data.num_classes();
        self.optim.apply(&mut c.optim, &mut c.ema_decay);
        if let Some(v) = self.steps {
            c.steps = v;
        }
        if let Some(v) = self.batch_size {
            c.batch_size = v;
        }
        if let Some(v) = self.p_uncond {
            c.p_uncond = v;
        }
        if let Some(v) = self.keep_checkpoints {
            c.keep_checkpoints = v;
        }
        if let Some(v) = self.checkpoint_every {
            c.checkpoint_every = v;
        }
        if let Some(v) = self.preview_every {
            c.preview_every = v;
        }
        if let Some(v) = self.channels {
            c.unet.channels = v;
        }
        if let Some(v) = self.seed {
            c.seed = v;
        }
        c.precision = self
            .precision
            .unwrap_or_else(|| Precision::default_for(self.common.device));
        c
    }

    fn preset_size(&self) -> usize {
        match self.preset.unwrap_or(if self.data.data == "digits" {
            Preset::Digits
        } else {
            Preset::Afhq
        }) {
            Preset::Digits => 8,
            Preset::Afhq => 64,
        }
    }
}

/// Loads the training set named by `--data`.
fn load_data(args: &DataArgs, size: usize, split: &str) -> Result<ImageSet> {
    if args.data == "digits" {
        return Ok(load_digits(size)?);
    }
    let root = Path::new(&args.data);
    if !root.is_dir() {
        bail!(
            "invalid value for --data: `{}` is neither `digits` nor a folder",
            args.data
        );
    }
    let cfg = ImageFolderConfig {
        split: split.into(),
        size,
        max_per_class: args.max_per_class,
        strict: args.strict,
    };
    let (set, skipped) = load_image_folder_report(root, &cfg)?;
    for s in &skipped {
        eprintln!("warning: skipped {}: {}", s.path.display(), s.reason);
    }
    Ok(set)
}

#[derive(Args, Clone)]
pub struct ImageSampleArgs {
    /// Run folder or its `model.safetensors`.
    #[arg(long)]
    ckpt: PathBuf,
    /// Number of images.
    #[arg(short = 'n', long = "num", default_value_t = 500)]
    n: usize,
    /// Guidance scale (reference convention: 0 = conditional, no guidance).
    #[arg(long, default_value_t = 0.0, allow_negative_numbers = true)]
    cfg_scale: f64,
    /// How --cfg-scale is read: reference (1+w)ε_c − wε_u, or diffusers ε_u + s(ε_c − ε_u).
    #[arg(long, value_enum, default_value_t = GuidanceConvention::Reference)]
    convention: GuidanceConvention,
    /// Guidance method.
    #[arg(long, value_enum, default_value_t = GuidanceMethod::Cfg)]
    guidance: GuidanceMethod,
    #[command(flatten)]
    params: GuidanceParams,
    /// Sampler (the reference samples images with 1000-step DDPM).
    #[arg(long, value_enum, default_value_t = SamplerKind::Ddpm)]
    sampler: SamplerKind,
    /// Steps of few-step samplers.
    #[arg(long, default_value_t = 50)]
    steps: usize,
    /// DDIM η.
    #[arg(long, default_value_t = 0.0, allow_negative_numbers = true)]
    eta: f64,
    /// Clip x̂₀ to [−1, 1] at every step.
    #[arg(long)]
    clip_x0: bool,
    /// Sample only this class (its folder name, e.g. `cat` or `7`).
    #[arg(long)]
    class: Option<String>,
    /// Images per network batch.
    #[arg(long, default_value_t = 64)]
    batch: usize,
    /// Seed of labels and noise.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Use raw weights even when EMA weights exist.
    #[arg(long)]
    raw: bool,
    #[command(flatten)]
    common: CommonArgs,
}

pub fn run(cmd: ImageCommand) -> Result<()> {
    match cmd {
        ImageCommand::Train { train } => {
            super::set_threads(train.common.threads)?;
            let outcome = train_cmd(&train)?;
            println!(
                "trained to step {} in {:.1} s ({:.2} s of it writing checkpoints); run folder {}",
                outcome.0.step,
                outcome.0.seconds,
                outcome.0.checkpoint_seconds,
                train.out.display()
            );
            Ok(())
        }
        ImageCommand::Sample { sample, out } => {
            super::set_threads(sample.common.threads)?;
            let n = sample_cmd(&sample, &out)?;
            println!(
                "wrote {n} images and labels.csv to {}; grid in {}",
                out.display(),
                grid_path(&out).display()
            );
            Ok(())
        }
        ImageCommand::Run {
            train,
            n,
            cfg_scale,
            guidance,
            params,
            sampler,
            sample_steps,
        } => demo(
            &train,
            n,
            cfg_scale,
            guidance,
            &params,
            sampler,
            sample_steps,
        ),
        ImageCommand::CfgSweep(a) => cfg_sweep(&a),
        ImageCommand::Judge { samples } => judge(&samples),
        ImageCommand::Sweep {
            ckpt,
            samplers,
            steps,
            spacing,
            cfg_scale,
            n,
            ddpm,
            seed,
            out,
            common,
        } => sweep(
            &ckpt, &samplers, &steps, spacing, cfg_scale, n, ddpm, seed, &out, &common,
        ),
        ImageCommand::Invert {
            ckpt,
            steps,
            n,
            out,
            common,
        } => invert(&ckpt, &steps, n, &out, &common),
    }
}

fn train_cmd(
    train: &ImageTrainArgs,
) -> Result<(img::TrainOutcome, ImageTrainConfig, Arc<ImageSet>)> {
    let data = Arc::new(load_data(&train.data, train.preset_size(), "train")?);
    let cfg = train.config(&data);
    cfg.validate()?;
    let dev = device(train.common.device)?;
    let outcome = img::train(
        &cfg,
        Arc::clone(&data),
        &train.out,
        train.resume,
        &dev.autodiff(),
        !train.common.quiet,
    )?;
    if outcome.interrupted {
        bail!(
            "interrupted at step {}; the run is saved in {} (continue with --resume)",
            outcome.step,
            train.out.display()
        );
    }
    Ok((outcome, cfg, data))
}

fn sample_cmd(a: &ImageSampleArgs, out: &Path) -> Result<usize> {
    if a.n == 0 {
        bail!("invalid value for -n: must be at least 1");
    }
    let guidance = a
        .params
        .config(a.guidance, Guidance::new(a.cfg_scale, a.convention)?)?;
    let dev = device(a.common.device)?;
    let (model, meta) = img::load(&a.ckpt, a.raw, &dev)?;
    let guide = a.params.load_guide(&[a.guidance], &meta, a.raw, &dev)?;
    let schedule = NoiseSchedule::new(&meta.config.schedule)?;
    let spec = img::image_spec(a.sampler, a.steps, a.eta, a.clip_x0);
    spec.validate(schedule.num_steps())?;
    if !(a.eta >= 0.0) {
        bail!("invalid value for --eta: must be ≥ 0");
    }
    let class = a
        .class
        .as_deref()
        .map(|c| img::class_index(c, &meta.class_names))
        .transpose()?;
    diffuse::checkpoint::ensure_dir(out)?;
    let labels = img::draw_labels(a.n, meta.class_names.len(), class, a.seed);
    let shape = img::model_shape(&meta.config.unet);
    let pb = if a.common.quiet {
        indicatif::ProgressBar::hidden()
    } else {
        diffuse::train::progress_bar(a.n as u64, "sample")
    };
    let images = img::Generator {
        model: &model,
        guide: guide.as_ref(),
        shape,
        schedule: &schedule,
        spec,
        guidance,
    }
    .generate(&labels, a.seed, a.batch, Some(&pb))?;
    pb.finish_and_clear();
    img::write_samples(out, &images, &labels, &meta.class_names, shape)?;
    write_class_grid(
        &grid_path(out),
        &images,
        &labels,
        meta.class_names.len(),
        shape,
    )?;
    Ok(a.n)
}

/// Where `image sample --out DIR` puts its grid: beside the folder, `DIR.grid.png`, so that the
/// folder holds only samples (FID scripts collect every image under it).
fn grid_path(out: &Path) -> PathBuf {
    // `.` or `dir/..` have no file name: name the grid after the folder's real name.
    let abs = match out.file_name() {
        Some(_) => out.to_path_buf(),
        None => std::fs::canonicalize(out).unwrap_or_else(|_| out.to_path_buf()),
    };
    match (abs.parent(), abs.file_name()) {
        (Some(p), Some(n)) => p.join(format!("{}.grid.png", n.to_string_lossy())),
        _ => PathBuf::from("samples.grid.png"),
    }
}

/// A grid with one row per class (up to 8 samples each), in class order.
fn write_class_grid(
    path: &Path,
    images: &[f32],
    labels: &[usize],
    k: usize,
    shape: (usize, usize, usize),
) -> Result<()> {
    let per = shape.0 * shape.1 * shape.2;
    let mut rows = Vec::new();
    for c in 1..=k {
        let idx: Vec<usize> = labels
            .iter()
            .enumerate()
            .filter(|(_, &l)| l == c)
            .map(|(i, _)| i)
            .take(8)
            .collect();
        for j in 0..8 {
            match idx.get(j) {
                Some(&i) => rows.extend_from_slice(&images[i * per..(i + 1) * per]),
                None => rows.extend(std::iter::repeat(1.0).take(per)),
            }
        }
    }
    Ok(img::save_grid(path, &rows, shape, 8)?)
}

fn demo(
    train: &ImageTrainArgs,
    n: usize,
    cfg_scale: f64,
    method: GuidanceMethod,
    params: &GuidanceParams,
    sampler: SamplerKind,
    sample_steps: usize,
) -> Result<()> {
    super::set_threads(train.common.threads)?;
    if train.data.data != "digits" {
        bail!("`image run` is the digits demo (its accuracy needs the digits classifier); use `image train` and `image sample` for other data");
    }
    if method == GuidanceMethod::Auto {
        bail!("`image run` trains one model; autoguidance needs a second, weaker one: train it with `image train` and use `image sample --guidance auto --guide-ckpt`");
    }
    let guided = params.config(
        method,
        Guidance::new(cfg_scale, GuidanceConvention::Reference)?,
    )?;
    let spec = img::image_spec(sampler, sample_steps, 0.0, true);
    spec.validate(1000)?;
    if n < 2 {
        bail!("invalid value for -n: must be at least 2 (the Fréchet distance needs a covariance)");
    }
    let dev = device(train.common.device)?;
    let t0 = std::time::Instant::now();
    // The judge: a classifier trained on the real 8×8 digits (10 % held out).
    let judge = DigitJudge::standard(&dev)?;
    let floor = judge.real_floor(n, 0)?;
    println!(
        "evaluation classifier: {:.1}% accuracy on held-out real digits; Fréchet real-vs-real floor {:.2} (halves), {:.2} ({} real digits)",
        100.0 * judge.holdout_accuracy,
        floor.halves,
        floor.at_n,
        floor.n
    );
    let (outcome, cfg, data) = train_cmd(train)?;
    let model = outcome.sampling_model();
    let schedule = NoiseSchedule::new(&cfg.schedule)?;
    let shape = img::model_shape(&cfg.unet);
    let labels = img::draw_labels(n, data.num_classes(), None, cfg.seed);
    let mut report = serde_json::Map::new();
    report.insert(
        "classifier_holdout_accuracy".into(),
        judge.holdout_accuracy.into(),
    );
    report.insert("frechet_floor".into(), serde_json::to_value(floor)?);
    report.insert("train_seconds".into(), outcome.seconds.into());
    report.insert("sampler".into(), spec.label(schedule.num_steps()).into());
    report.insert("guidance".into(), guided.method.name().into());
    let mut summary = Vec::new();
    for (name, g) in [("w0", GuidanceConfig::default()), ("guided", guided)] {
        let dir = train.out.join(format!("samples_{name}"));
        let pb = if train.common.quiet {
            indicatif::ProgressBar::hidden()
        } else {
            diffuse::train::progress_bar(n as u64, &format!("sample {name}"))
        };
        let t = std::time::Instant::now();
        let images = img::generate(
            &model,
            shape,
            &schedule,
            &spec,
            g,
            &labels,
            cfg.seed,
            250,
            Some(&pb),
        )?;
        pb.finish_and_clear();
        let secs = t.elapsed().as_secs_f64();
        img::write_samples(&dir, &images, &labels, &data.class_names, shape)?;
        write_class_grid(
            &train.out.join(format!("grid_{name}.png")),
            &images,
            &labels,
            data.num_classes(),
            shape,
        )?;
        let j = judge.judge(
            &diffuse::nn::digit_classifier::to_8x8(&images, shape.1)?,
            &labels,
        )?;
        let per_class: serde_json::Map<String, serde_json::Value> = data
            .class_names
            .iter()
            .zip(&j.per_class)
            .map(|(c, &a)| (c.clone(), a.into()))
            .collect();
        let w = g.scale.w();
        report.insert(format!("accuracy_{name}"), j.accuracy.into());
        report.insert(format!("frechet_{name}"), j.frechet.into());
        report.insert(format!("per_class_{name}"), per_class.into());
        report.insert(format!("w_{name}"), w.into());
        report.insert(format!("sample_seconds_{name}"), secs.into());
        summary.push(format!(
            "{}: {:.1}% recognised, Fréchet {:.2}",
            g.label(),
            100.0 * j.accuracy,
            j.frechet
        ));
    }
    report.insert("total_seconds".into(), t0.elapsed().as_secs_f64().into());
    write_json(&train.out.join("metrics.json"), &report)?;
    println!(
        "digits: trained {} steps in {:.0} s; {} samples each ({}): {}; grids and metrics in {}",
        cfg.steps,
        outcome.seconds,
        n,
        spec.label(schedule.num_steps()),
        summary.join("; "),
        train.out.display()
    );
    Ok(())
}

/// `diffuse prepare-eval ROOT`: ROOT/eval from every validation image.
pub fn prepare_eval(
    root: &Path,
    cfg: &diffuse::data::image_folder::PrepareEvalConfig,
) -> Result<()> {
    let report = diffuse::data::image_folder::prepare_eval(root, cfg)?;
    let what = match cfg.format {
        diffuse::data::image_folder::EvalFormat::Jpeg => "bicubic, JPEG q75: the course's folder",
        diffuse::data::image_folder::EvalFormat::Png => "bilinear, lossless PNG",
    };
    println!(
        "wrote {} images ({s}×{s}, {what}) to {}",
        report.written,
        report.out_dir.display(),
        s = cfg.size
    );
    Ok(())
}

fn judge(dir: &Path) -> Result<()> {
    let csv_path = dir.join("labels.csv");
    let rows = diffuse::data::labels::read_labels(&csv_path)?;
    let mut images = Vec::new();
    let mut labels = Vec::new();
    for row in &rows {
        let digit = row.class.parse::<usize>().ok().filter(|d| *d <= 9);
        let Some(digit) = digit else {
            bail!(
                "{}: line {}: class `{}` is not a digit 0-9",
                csv_path.display(),
                row.line,
                diffuse::error::clip(&row.class, 40)
            )
        };
        let path = dir.join(&row.file);
        let img = diffuse::data::image_io::load_image(&path)?.to_luma8();
        if img.dimensions() != (8, 8) {
            bail!(
                "{}: expected an 8×8 digit, got {:?}",
                path.display(),
                img.dimensions()
            );
        }
        images.extend(img.pixels().map(|p| p.0[0] as f32 / 255.0 * 2.0 - 1.0));
        labels.push(digit + 1);
    }
    if labels.len() < 2 {
        bail!(
            "{}: {} sample(s) listed; the Fréchet distance needs at least 2",
            csv_path.display(),
            labels.len()
        );
    }
    let dev = device(Default::default())?;
    let judge = DigitJudge::standard(&dev)?;
    let j = judge.judge(&images, &labels)?;
    let floor = judge.real_floor(labels.len(), 0)?;
    println!(
        "accuracy: {:.1}% of {} samples recognised as their label",
        100.0 * j.accuracy,
        labels.len()
    );
    println!(
        "frechet: {:.3} to the real digits in the classifier's feature space (real-vs-real floor: {:.3} for {} real digits, {:.3} between halves)",
        j.frechet, floor.at_n, floor.n, floor.halves
    );
    Ok(())
}

/// Whether a run generates the bundled digits (1×8×8, 10 classes).
fn is_digits(meta: &img::ImageCheckpointMeta) -> bool {
    let u = &meta.config.unet;
    (u.in_channels, u.image_size, u.num_classes) == (1, 8, 10)
}

/// Loads a digits run and the judge.
fn digits_run(
    ckpt: &Path,
    common: &CommonArgs,
) -> Result<(
    diffuse::nn::unet::UNet,
    img::ImageCheckpointMeta,
    DigitJudge,
    burn::prelude::Device,
)> {
    super::set_threads(common.threads)?;
    let dev = device(common.device)?;
    let (model, meta) = img::load(ckpt, false, &dev)?;
    if !is_digits(&meta) {
        bail!(
            "{}: not a digits run (expected 1×8×8 images and 10 classes)",
            ckpt.display()
        );
    }
    let judge = DigitJudge::standard(&dev)?;
    Ok((model, meta, judge, dev))
}

#[allow(clippy::too_many_arguments)]
fn sweep(
    ckpt: &Path,
    samplers: &[SamplerKind],
    steps: &[usize],
    spacing: diffuse::sampling::Spacing,
    cfg_scale: f64,
    n: usize,
    ddpm: bool,
    seed: u64,
    out: &Path,
    common: &CommonArgs,
) -> Result<()> {
    let guidance = Guidance::new(cfg_scale, GuidanceConvention::Reference)?;
    if n == 0 || steps.is_empty() {
        bail!("give at least one step count and -n ≥ 1");
    }
    if n < 2 {
        bail!("invalid value for -n: must be at least 2 (the Fréchet distance needs a covariance)");
    }
    let (model, meta, judge, _dev) = digits_run(ckpt, common)?;
    let schedule = NoiseSchedule::new(&meta.config.schedule)?;
    let shape = img::model_shape(&meta.config.unet);
    let labels = img::draw_labels(n, 10, None, seed);
    diffuse::checkpoint::ensure_dir(out)?;
    let floor = judge.real_floor(n, 0)?;
    println!(
        "Fréchet real-vs-real floor: {:.2} ({} real digits), {:.2} (halves)",
        floor.at_n, floor.n, floor.halves
    );
    let mut csv = String::from("sampler,steps,nfe,accuracy,frechet,seconds\n");
    let mut series: Vec<(String, Vec<(f64, f64)>)> = Vec::new();
    let eval = |spec: diffuse::sampling::SamplerSpec, csv: &mut String| -> Result<f64> {
        spec.validate(schedule.num_steps())?;
        let t = std::time::Instant::now();
        let images = img::generate(
            &model, shape, &schedule, &spec, guidance, &labels, seed, 250, None,
        )?;
        let secs = t.elapsed().as_secs_f64();
        let j = judge.judge(&images, &labels)?;
        let acc = j.accuracy;
        let label = spec.label(schedule.num_steps());
        csv.push_str(&format!(
            "{},{},{},{acc:.4},{:.3},{secs:.2}\n",
            label.rsplit_once('-').map_or(label.as_str(), |p| p.0),
            spec.steps,
            spec.nfe(schedule.num_steps()),
            j.frechet
        ));
        println!(
            "{label:>14}  NFE {:>4}  accuracy {:5.1}%  Fréchet {:8.2}  ({secs:.1} s)",
            spec.nfe(schedule.num_steps()),
            100.0 * acc,
            j.frechet
        );
        Ok(acc)
    };
    for &kind in samplers.iter().filter(|&&k| k != SamplerKind::Ddpm) {
        let mut pts = Vec::new();
        for &s in steps {
            let spec = diffuse::sampling::SamplerSpec {
                kind,
                steps: s,
                spacing,
                clip_x0: true,
                ..Default::default()
            };
            pts.push((s as f64, 100.0 * eval(spec, &mut csv)?));
        }
        series.push((
            kind.to_possible_value()
                .map_or("?".into(), |v| v.get_name().to_string()),
            pts,
        ));
    }
    if ddpm {
        let spec = img::image_spec(SamplerKind::Ddpm, 0, 0.0, true);
        let acc = 100.0 * eval(spec, &mut csv)?;
        let (lo, hi) = (
            *steps.iter().min().unwrap() as f64,
            *steps.iter().max().unwrap() as f64,
        );
        series.push((
            format!("ddpm-{} (reference)", schedule.num_steps()),
            vec![(lo, acc), (hi, acc)],
        ));
    }
    diffuse::checkpoint::write_atomic(&out.join("sweep.csv"), csv.as_bytes())?;
    diffuse::plot::lines(
        &out.join("sweep.png"),
        &format!("digits recognised at w = {cfg_scale} vs sampling steps"),
        "steps",
        "accuracy (%)",
        false,
        &series,
    )?;
    println!("table and plot in {}", out.display());
    Ok(())
}

/// How `cfg-sweep` scores a set of samples.
enum SweepMetric {
    /// Digits: accuracy and Fréchet distance in the classifier's feature space.
    Digits(DigitJudge),
    /// A folder data set: FID against precomputed ground-truth statistics.
    Fid {
        gt_stats: PathBuf,
        opts: diffuse::metrics::fid_pipeline::FidOptions,
    },
}

/// One (method, scale) point of `cfg-sweep`.
#[derive(serde::Serialize)]
struct SweepPoint {
    method: &'static str,
    w: f64,
    /// Digits only.
    accuracy: Option<f64>,
    /// Fréchet distance (digits feature space) or FID.
    distance: f64,
    seconds: f64,
}

fn cfg_sweep(a: &CfgSweepArgs) -> Result<()> {
    use diffuse::metrics::fid_pipeline::{fid_between, folder_stats, FidOptions};
    super::set_threads(a.common.threads)?;
    if a.guidance.is_empty() || a.scales.is_empty() {
        bail!("give at least one --guidance method and one --scales value");
    }
    if a.n < 2 {
        bail!("invalid value for -n: must be at least 2 (a Fréchet distance needs a covariance)");
    }
    let scales = a
        .scales
        .iter()
        .map(|&s| Guidance::new(s, a.convention))
        .collect::<diffuse::Result<Vec<_>>>()?;
    let configs = a
        .guidance
        .iter()
        .map(|&m| {
            Ok((
                m,
                scales
                    .iter()
                    .map(|&g| a.params.config(m, g))
                    .collect::<Result<Vec<_>>>()?,
            ))
        })
        .collect::<Result<Vec<_>>>()?;
    let dev = device(a.common.device)?;
    let (model, meta) = img::load(&a.ckpt, false, &dev)?;
    let guide = a.params.load_guide(&a.guidance, &meta, false, &dev)?;
    let schedule = NoiseSchedule::new(&meta.config.schedule)?;
    let shape = img::model_shape(&meta.config.unet);
    let spec = img::image_spec(a.sampler, a.steps, 0.0, true);
    spec.validate(schedule.num_steps())?;
    diffuse::checkpoint::ensure_dir(&a.out)?;
    let metric = match (&a.fid_gt, &a.weights) {
        (Some(gt), Some(weights)) => {
            let gt_stats = a.out.join("gt.fidstats");
            let opts = FidOptions {
                weights: weights.clone(),
                mode: a.fid_mode,
                progress: !a.common.quiet,
                device: a.common.device,
                save_stats: Some(gt_stats.clone()),
                ..FidOptions::default()
            };
            eprintln!(
                "FID ground truth {}: {}",
                gt.display(),
                diffuse::metrics::fid_pipeline::describe_input(gt)?
            );
            folder_stats(gt, &opts)?;
            SweepMetric::Fid {
                gt_stats,
                opts: FidOptions {
                    save_stats: None,
                    progress: false,
                    ..opts
                },
            }
        }
        (Some(_), None) => {
            bail!("--fid-gt needs --weights (the Inception weights, as for `diffuse fid`)")
        }
        (None, Some(_)) => bail!("--weights is only used with --fid-gt"),
        (None, None) => {
            if !is_digits(&meta) {
                bail!(
                    "{}: not a digits run; sweep another data set with FID: --fid-gt DIR --weights FILE",
                    a.ckpt.display()
                );
            }
            SweepMetric::Digits(DigitJudge::standard(&dev)?)
        }
    };
    let floor = match &metric {
        SweepMetric::Digits(j) => {
            let f = j.real_floor(a.n, 0)?;
            println!(
                "Fréchet real-vs-real floor: {:.2} ({} real digits against the other half), {:.2} (halves)",
                f.at_n, f.n, f.halves
            );
            Some(f)
        }
        SweepMetric::Fid { .. } => None,
    };
    let labels = img::draw_labels(a.n, meta.class_names.len(), None, a.seed);
    let label = spec.label(schedule.num_steps());
    println!("{} samples per point, {label}, seed {}", a.n, a.seed);
    let mut points: Vec<SweepPoint> = Vec::new();
    // At w = 0 every method is the plain conditional model: sampled once, shared.
    let mut at_zero: Option<(Option<f64>, f64, f64)> = None;
    for (method, cfgs) in &configs {
        for g in cfgs {
            let w = g.scale.w();
            let (accuracy, distance, seconds) = match at_zero {
                Some(r) if w == 0.0 => r,
                _ => {
                    let t = std::time::Instant::now();
                    let images = img::Generator {
                        model: &model,
                        guide: guide.as_ref().filter(|_| *method == GuidanceMethod::Auto),
                        shape,
                        schedule: &schedule,
                        spec,
                        guidance: *g,
                    }
                    .generate(&labels, a.seed, a.batch, None)?;
                    let secs = t.elapsed().as_secs_f64();
                    let r = match &metric {
                        SweepMetric::Digits(judge) => {
                            let j: Judgement = judge.judge(&images, &labels)?;
                            (Some(j.accuracy), j.frechet, secs)
                        }
                        SweepMetric::Fid { gt_stats, opts } => {
                            let dir = a
                                .out
                                .join("samples")
                                .join(format!("{}-w{w}", method.name()));
                            img::write_samples(&dir, &images, &labels, &meta.class_names, shape)?;
                            (None, fid_between(gt_stats, &dir, opts)?.fid, secs)
                        }
                    };
                    if w == 0.0 {
                        at_zero = Some(r);
                    }
                    r
                }
            };
            println!(
                "{:>10}  w {:>5}  {}{} {:9.3}  ({seconds:.1} s)",
                method.name(),
                w,
                accuracy.map_or(String::new(), |acc| format!(
                    "accuracy {:5.1}%  ",
                    100.0 * acc
                )),
                if floor.is_some() { "Fréchet" } else { "FID" },
                distance
            );
            points.push(SweepPoint {
                method: method.name(),
                w,
                accuracy,
                distance,
                seconds,
            });
        }
    }
    let dist_name = if floor.is_some() { "frechet" } else { "fid" };
    let mut csv = format!("method,w,accuracy,{dist_name},seconds\n");
    for p in &points {
        csv.push_str(&format!(
            "{},{},{},{:.4},{:.2}\n",
            p.method,
            p.w,
            p.accuracy.map_or(String::new(), |v| format!("{v:.4}")),
            p.distance,
            p.seconds
        ));
    }
    diffuse::checkpoint::write_atomic(&a.out.join("cfg-sweep.csv"), csv.as_bytes())?;
    write_json(
        &a.out.join("cfg-sweep.json"),
        &serde_json::json!({
            "ckpt": a.ckpt,
            "sampler": label,
            "n": a.n,
            "seed": a.seed,
            "frechet_floor": floor,
            "points": points,
        }),
    )?;
    let mut series: Vec<(String, Vec<(f64, f64)>)> = configs
        .iter()
        .map(|(m, _)| {
            let pts = points
                .iter()
                .filter(|p| p.method == m.name())
                .map(|p| match p.accuracy {
                    Some(acc) => (100.0 * acc, p.distance),
                    None => (p.w, p.distance),
                })
                .collect();
            (m.name().to_string(), pts)
        })
        .collect();
    if let Some(f) = floor {
        let xs = points.iter().filter_map(|p| p.accuracy.map(|v| 100.0 * v));
        let (lo, hi) = xs.fold((f64::MAX, f64::MIN), |(l, h), x| (l.min(x), h.max(x)));
        series.push((
            format!("real-vs-real floor (n = {})", f.n),
            vec![(lo, f.at_n), (hi, f.at_n)],
        ));
    }
    let plot = a.out.join("cfg-sweep.png");
    match floor {
        Some(_) => diffuse::plot::lines(
            &plot,
            &format!(
                "digits: fidelity vs distribution, w = {:?} ({label}, n = {})",
                a.scales, a.n
            ),
            "accuracy (%) — fidelity",
            "Fréchet distance (classifier features) — lower is better",
            true,
            &series,
        )?,
        None => diffuse::plot::lines(
            &plot,
            &format!("FID vs guidance scale ({label}, n = {})", a.n),
            "w (reference convention)",
            "FID",
            true,
            &series,
        )?,
    }
    println!(
        "cfg-sweep.csv, cfg-sweep.json and cfg-sweep.png in {}",
        a.out.display()
    );
    Ok(())
}

fn invert(ckpt: &Path, steps: &[usize], n: usize, out: &Path, common: &CommonArgs) -> Result<()> {
    use burn::prelude::{Tensor, TensorData};
    let (model, meta, _judge, dev) = digits_run(ckpt, common)?;
    let schedule = NoiseSchedule::new(&meta.config.schedule)?;
    let data = load_digits(8)?;
    let n = n.clamp(2, data.len());
    let idx: Vec<usize> = (0..n).collect();
    let batch = data.gather(&idx);
    let labels = batch.labels.clone();
    let x0: Tensor<4> = batch.to_tensor(&dev);
    let cond = diffuse::sampling::Guided {
        model: &model,
        guidance: Guidance::new(0.0, GuidanceConvention::Reference)?,
    };
    diffuse::checkpoint::ensure_dir(out)?;
    let mut none = diffuse::sampling::no_progress;
    let mut rows = Vec::new();
    let mut last_code = None;
    println!("steps  mean |x − decode(encode(x))|");
    for &s in steps {
        let lv = diffuse::sampling::levels(
            &schedule,
            &diffuse::sampling::timesteps(Default::default(), schedule.num_steps(), s)?,
        );
        let code = diffuse::sampling::inversion::ddim_invert(
            &cond,
            &lv,
            x0.clone(),
            Some(&labels),
            &mut none,
        );
        let spec = diffuse::sampling::SamplerSpec {
            steps: s,
            ..Default::default()
        };
        let back = diffuse::sampling::sample(
            &cond,
            &schedule,
            &spec,
            code.clone(),
            Some(&labels),
            &mut diffuse::rng::seeded(0, 0),
            &mut none,
        )?;
        let err = (back - x0.clone()).abs().mean().into_scalar::<f32>() as f64;
        println!("{s:>5}  {err:.5}");
        rows.push(serde_json::json!({"steps": s, "mean_abs_error": err}));
        last_code = Some((code, s));
    }
    // Interpolate between the codes of the first two digits (slerp), decoding with the first label.
    if let Some((code, s)) = last_code {
        let c: Vec<f32> = code
            .into_data()
            .try_to_vec::<f32>()
            .map_err(|e| anyhow::anyhow!("{e:?}"))?;
        let (a, b) = (&c[0..64], &c[64..128]);
        let path: Vec<f32> = (0..8)
            .flat_map(|k| diffuse::toy::slerp(a, b, k as f64 / 7.0))
            .collect();
        let z: Tensor<4> = Tensor::from_data(TensorData::new(path, [8, 1, 8, 8]), &dev);
        let spec = diffuse::sampling::SamplerSpec {
            steps: s,
            ..Default::default()
        };
        let lab = vec![labels[0]; 8];
        let dec = diffuse::sampling::sample(
            &cond,
            &schedule,
            &spec,
            z,
            Some(&lab),
            &mut diffuse::rng::seeded(0, 0),
            &mut none,
        )?;
        let dec: Vec<f32> = dec
            .into_data()
            .try_to_vec::<f32>()
            .map_err(|e| anyhow::anyhow!("{e:?}"))?;
        img::save_grid(&out.join("interpolation.png"), &dec, (1, 8, 8), 8)?;
    }
    write_json(
        &out.join("inversion.json"),
        &serde_json::json!({"images": n, "results": rows}),
    )?;
    println!("inversion.json and interpolation.png in {}", out.display());
    Ok(())
}

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
use diffuse::nn::digit_classifier;
use diffuse::sampling::{Guidance, GuidanceConvention, SamplerKind};
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
    /// Sample images from a trained run: DIR/{i}.png, DIR/labels.csv, DIR/grid.png.
    Sample {
        #[command(flatten)]
        sample: ImageSampleArgs,
        /// Output folder.
        #[arg(long)]
        out: PathBuf,
    },
    /// Classifier accuracy against sampling steps for every sampler, on a digits run: a table
    /// (sweep.csv) and a plot (sweep.png).
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
    /// Judge digit samples (a folder written by `image sample` on a digits run): how often the
    /// evaluation classifier recognises each image as its label in labels.csv.
    Judge {
        /// Samples folder with labels.csv.
        samples: PathBuf,
    },
    /// The digits demo: train, sample at w = 0 and a guided scale, judge the samples with a
    /// classifier trained on the real digits.
    Run {
        #[command(flatten)]
        train: ImageTrainArgs,
        /// Samples per guidance scale.
        #[arg(short = 'n', long = "num", default_value_t = 500)]
        n: usize,
        /// Guided scale compared with w = 0 (reference convention).
        #[arg(long, default_value_t = 0.5, allow_negative_numbers = true)]
        cfg_scale: f64,
        /// Sampler.
        #[arg(long, value_enum, default_value_t = SamplerKind::Ddim)]
        sampler: SamplerKind,
        /// Sampling steps (DDIM).
        #[arg(long, default_value_t = 50)]
        sample_steps: usize,
    },
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
                "trained to step {} in {:.1} s; run folder {}",
                outcome.0.step,
                outcome.0.seconds,
                train.out.display()
            );
            Ok(())
        }
        ImageCommand::Sample { sample, out } => {
            super::set_threads(sample.common.threads)?;
            let n = sample_cmd(&sample, &out)?;
            println!(
                "wrote {n} images, labels.csv and grid.png to {}",
                out.display()
            );
            Ok(())
        }
        ImageCommand::Run {
            train,
            n,
            cfg_scale,
            sampler,
            sample_steps,
        } => demo(&train, n, cfg_scale, sampler, sample_steps),
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
    let guidance = Guidance::new(a.cfg_scale, a.convention)?;
    let dev = device(a.common.device)?;
    let (model, meta) = img::load(&a.ckpt, a.raw, &dev)?;
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
    let images = img::generate(
        &model,
        shape,
        &schedule,
        &spec,
        guidance,
        &labels,
        a.seed,
        a.batch,
        Some(&pb),
    )?;
    pb.finish_and_clear();
    img::write_samples(out, &images, &labels, &meta.class_names, shape)?;
    write_class_grid(
        &out.join("grid.png"),
        &images,
        &labels,
        meta.class_names.len(),
        shape,
    )?;
    Ok(a.n)
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
    sampler: SamplerKind,
    sample_steps: usize,
) -> Result<()> {
    super::set_threads(train.common.threads)?;
    if train.data.data != "digits" {
        bail!("`image run` is the digits demo (its accuracy needs the digits classifier); use `image train` and `image sample` for other data");
    }
    let guided = Guidance::new(cfg_scale, GuidanceConvention::Reference)?;
    let spec = img::image_spec(sampler, sample_steps, 0.0, true);
    spec.validate(1000)?;
    if n == 0 {
        bail!("invalid value for -n: must be at least 1");
    }
    let dev = device(train.common.device)?;
    let t0 = std::time::Instant::now();
    // The judge: a classifier trained on the real 8×8 digits (10 % held out).
    let real8 = load_digits(8)?;
    let (clf, clf_acc) = digit_classifier::train(&real8, 0.1, 0, &dev)?;
    println!(
        "evaluation classifier: {:.1}% accuracy on held-out real digits",
        100.0 * clf_acc
    );
    let (outcome, cfg, data) = train_cmd(train)?;
    let model = outcome.sampling_model();
    let schedule = NoiseSchedule::new(&cfg.schedule)?;
    let shape = img::model_shape(&cfg.unet);
    let labels = img::draw_labels(n, data.num_classes(), None, cfg.seed);
    let mut report = serde_json::Map::new();
    report.insert("classifier_holdout_accuracy".into(), clf_acc.into());
    report.insert("train_seconds".into(), outcome.seconds.into());
    report.insert("sampler".into(), spec.label(schedule.num_steps()).into());
    let mut summary = Vec::new();
    for (name, g) in [
        ("w0", Guidance::new(0.0, GuidanceConvention::Reference)?),
        ("guided", guided),
    ] {
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
        let pred = clf.predict(&digit_classifier::to_8x8(&images, shape.1)?, &dev)?;
        let acc = pred.iter().zip(&labels).filter(|(p, l)| p == l).count() as f64 / n as f64;
        let mut per_class = serde_json::Map::new();
        for c in 1..=data.num_classes() {
            let (hit, tot) = pred
                .iter()
                .zip(&labels)
                .filter(|(_, &l)| l == c)
                .fold((0, 0), |(h, t), (p, l)| (h + (p == l) as usize, t + 1));
            per_class.insert(
                data.class_names[c - 1].clone(),
                (hit as f64 / tot.max(1) as f64).into(),
            );
        }
        let w = g.w();
        report.insert(format!("accuracy_{name}"), acc.into());
        report.insert(format!("per_class_{name}"), per_class.into());
        report.insert(format!("w_{name}"), w.into());
        report.insert(format!("sample_seconds_{name}"), secs.into());
        summary.push(format!("w = {w}: {:.1}% recognised", 100.0 * acc));
    }
    report.insert("total_seconds".into(), t0.elapsed().as_secs_f64().into());
    write_json(&train.out.join("metrics.json"), &report)?;
    println!(
        "digits: trained {} steps in {:.0} s; {} samples each ({}): {}; grids and metrics in {}",
        cfg.steps,
        outcome.seconds,
        n,
        spec.label(schedule.num_steps()),
        summary.join(", "),
        train.out.display()
    );
    Ok(())
}

/// `diffuse prepare-eval ROOT`: ROOT/eval from every validation image.
pub fn prepare_eval(root: &Path, size: usize) -> Result<()> {
    let report = diffuse::data::image_folder::prepare_eval(root, size)?;
    for s in &report.skipped {
        eprintln!("warning: skipped {}: {}", s.path.display(), s.reason);
    }
    println!(
        "wrote {} images ({size}×{size}) to {}",
        report.written,
        root.join("eval").display()
    );
    Ok(())
}

fn judge(dir: &Path) -> Result<()> {
    let csv_path = dir.join("labels.csv");
    let text = std::fs::read_to_string(&csv_path)
        .map_err(|e| anyhow::anyhow!("{}: {e}", csv_path.display()))?;
    let mut images = Vec::new();
    let mut labels = Vec::new();
    for (i, line) in text.lines().enumerate().skip(1) {
        let Some((file, class)) = line.split_once(',') else {
            bail!(
                "{}: line {}: expected `file,class`",
                csv_path.display(),
                i + 1
            )
        };
        let digit: usize = class.trim().parse().map_err(|_| {
            anyhow::anyhow!(
                "{}: line {}: class `{class}` is not a digit",
                csv_path.display(),
                i + 1
            )
        })?;
        let path = dir.join(file.trim());
        let img = image::open(&path)
            .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?
            .to_luma8();
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
    if labels.is_empty() {
        bail!("{}: no samples listed", csv_path.display());
    }
    let dev = device(Default::default())?;
    let (clf, _) = digit_classifier::train(&load_digits(8)?, 0.1, 0, &dev)?;
    let pred = clf.predict(&images, &dev)?;
    let acc = pred.iter().zip(&labels).filter(|(p, l)| p == l).count() as f64 / labels.len() as f64;
    println!(
        "accuracy: {:.1}% of {} samples recognised as their label",
        100.0 * acc,
        labels.len()
    );
    Ok(())
}

/// Loads a digits run and the judge classifier.
fn digits_run(
    ckpt: &Path,
    common: &CommonArgs,
) -> Result<(
    diffuse::nn::unet::UNet,
    img::ImageCheckpointMeta,
    digit_classifier::DigitClassifier,
    burn::prelude::Device,
)> {
    super::set_threads(common.threads)?;
    let dev = device(common.device)?;
    let (model, meta) = img::load(ckpt, false, &dev)?;
    let u = &meta.config.unet;
    if (u.in_channels, u.image_size, u.num_classes) != (1, 8, 10) {
        bail!(
            "{}: not a digits run (expected 1×8×8 images and 10 classes)",
            ckpt.display()
        );
    }
    let (clf, _) = digit_classifier::train(&load_digits(8)?, 0.1, 0, &dev)?;
    Ok((model, meta, clf, dev))
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
    let (model, meta, clf, dev) = digits_run(ckpt, common)?;
    let schedule = NoiseSchedule::new(&meta.config.schedule)?;
    let shape = img::model_shape(&meta.config.unet);
    let labels = img::draw_labels(n, 10, None, seed);
    diffuse::checkpoint::ensure_dir(out)?;
    let mut csv = String::from("sampler,steps,nfe,accuracy,seconds\n");
    let mut series: Vec<(String, Vec<(f64, f64)>)> = Vec::new();
    let eval = |spec: diffuse::sampling::SamplerSpec, csv: &mut String| -> Result<f64> {
        spec.validate(schedule.num_steps())?;
        let t = std::time::Instant::now();
        let images = img::generate(
            &model, shape, &schedule, &spec, guidance, &labels, seed, 250, None,
        )?;
        let secs = t.elapsed().as_secs_f64();
        let pred = clf.predict(&images, &dev)?;
        let acc = pred.iter().zip(&labels).filter(|(p, l)| p == l).count() as f64 / n as f64;
        let label = spec.label(schedule.num_steps());
        csv.push_str(&format!(
            "{},{},{},{acc:.4},{secs:.2}\n",
            label.rsplit_once('-').map_or(label.as_str(), |p| p.0),
            spec.steps,
            spec.nfe(schedule.num_steps())
        ));
        println!(
            "{label:>14}  NFE {:>4}  accuracy {:5.1}%  ({secs:.1} s)",
            spec.nfe(schedule.num_steps()),
            100.0 * acc
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

fn invert(ckpt: &Path, steps: &[usize], n: usize, out: &Path, common: &CommonArgs) -> Result<()> {
    use burn::prelude::{Tensor, TensorData};
    let (model, meta, _clf, dev) = digits_run(ckpt, common)?;
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
        let code = diffuse::sampling::inversion::ddim_invert(
            &cond,
            &schedule,
            s,
            Default::default(),
            x0.clone(),
            Some(&labels),
            &mut none,
        )?;
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

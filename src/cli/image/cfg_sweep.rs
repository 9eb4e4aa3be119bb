//! `diffuse image cfg-sweep`: guidance methods × scales (`diffuse::image::cfg_sweep`).
use std::path::PathBuf;

use anyhow::{bail, Result};
use clap::Args;
use diffuse::image::cfg_sweep::{CfgSweep, Metric, SweepPoint, SweepRecord};
use diffuse::image::{self as img, Generator};
use diffuse::metrics::fid_pipeline::{describe_input, FidMode, FidOptions};
use diffuse::sampling::{Guidance, GuidanceConvention, GuidanceMethod, SamplerKind};
use diffuse::schedule::NoiseSchedule;

use super::load_guide;
use crate::cli::args::{to_flags, CommonArgs, GuidanceParams};

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
    #[arg(long, value_enum, default_value_t = FidMode::Reference)]
    fid_mode: FidMode,
    /// Output folder.
    #[arg(long, default_value = "out/cfg-sweep")]
    out: PathBuf,
    #[command(flatten)]
    common: CommonArgs,
}

pub fn run(a: &CfgSweepArgs) -> Result<()> {
    sweep(a).map_err(|e| to_flags(e, &[("guidance.scale", "--scales")]))
}

fn sweep(a: &CfgSweepArgs) -> Result<()> {
    let dev = a.common.device()?;
    if a.guidance.is_empty() || a.scales.is_empty() {
        bail!("give at least one --guidance method and one --scales value");
    }
    if a.n < 2 {
        bail!("invalid value for -n: must be at least 2 (a Fréchet distance needs a covariance)");
    }
    let points = points(a)?;
    let (model, meta) = img::load(&a.ckpt, false, &dev)?;
    if meta.class_names.is_empty() {
        bail!(
            "{} is unconditional (trained without classes): a guidance sweep needs a class-conditional model",
            a.ckpt.display()
        );
    }
    let guide = load_guide(&a.params, &a.guidance, &meta, false, &dev)?;
    let schedule = NoiseSchedule::new(&meta.config.schedule)?;
    let spec = img::image_spec(a.sampler, a.steps, 0.0, true);
    spec.validate(schedule.num_steps())?;
    diffuse::files::ensure_dir(&a.out)?;
    let metric = metric(a, &meta, &dev)?;
    let floor = metric.floor(a.n)?;
    if let Some(f) = floor {
        println!(
            "Fréchet real-vs-real floor: {:.2} ({} real digits against the other half), {:.2} (halves)",
            f.at_n, f.n, f.halves
        );
    }
    let sampler = spec.label(schedule.num_steps());
    println!("{} samples per point, {sampler}, seed {}", a.n, a.seed);
    let generator = Generator::new(&model, img::model_shape(&meta.config.unet), &schedule, spec)
        .guided(Default::default(), guide.as_ref());
    let sweep = CfgSweep {
        generator,
        points,
        labels: img::draw_labels(a.n, meta.class_names.len(), None, a.seed),
        seed: a.seed,
        batch: a.batch,
        class_names: meta.class_names.clone(),
        out: a.out.clone(),
    };
    let name = metric.distance_name();
    let results = sweep.run(&metric, &mut |p: &SweepPoint| {
        let acc = p.accuracy.map_or(String::new(), |acc| {
            format!("accuracy {:5.1}%  ", 100.0 * acc)
        });
        println!(
            "{:>10}  w {:>5}  {acc}{name} {:9.3}  ({:.1} s)",
            p.method, p.w, p.distance, p.seconds
        );
    })?;
    let record = SweepRecord {
        ckpt: &a.ckpt,
        sampler,
        n: a.n,
        seed: a.seed,
        scales: &a.scales,
        floor,
    };
    diffuse::image::cfg_sweep::write(&a.out, &a.guidance, &results, &record)?;
    println!(
        "cfg-sweep.csv, cfg-sweep.json and cfg-sweep.png in {}",
        a.out.display()
    );
    Ok(())
}

/// Every (method, scale) setting, checked.
fn points(
    a: &CfgSweepArgs,
) -> Result<Vec<(GuidanceMethod, Vec<diffuse::sampling::GuidanceConfig>)>> {
    let scales = a
        .scales
        .iter()
        .map(|&s| Guidance::new(s, a.convention))
        .collect::<diffuse::Result<Vec<_>>>()?;
    a.guidance
        .iter()
        .map(|&m| {
            let cfgs = scales
                .iter()
                .map(|&g| a.params.config(m, g))
                .collect::<Result<Vec<_>>>()?;
            Ok((m, cfgs))
        })
        .collect()
}

/// The digits judge, or FID when `--fid-gt` and `--weights` are given.
fn metric(
    a: &CfgSweepArgs,
    meta: &img::ImageCheckpointMeta,
    dev: &burn::prelude::Device,
) -> Result<Metric> {
    match (&a.fid_gt, &a.weights) {
        (Some(gt), Some(weights)) => {
            eprintln!("FID ground truth {}: {}", gt.display(), describe_input(gt)?);
            let opts = FidOptions {
                weights: weights.clone(),
                mode: a.fid_mode,
                progress: !a.common.quiet,
                device: a.common.device,
                ..FidOptions::default()
            };
            Ok(Metric::fid(gt, &a.out, opts)?)
        }
        (Some(_), None) => {
            bail!("--fid-gt needs --weights (the Inception weights, as for `diffuse fid`)")
        }
        (None, Some(_)) => bail!("--weights is only used with --fid-gt"),
        (None, None) => {
            if !diffuse::image::judge::is_digits(meta) {
                bail!(
                    "{}: not a digits run; sweep another data set with FID: --fid-gt DIR --weights FILE",
                    a.ckpt.display()
                );
            }
            Ok(Metric::digits(dev)?)
        }
    }
}

//! `diffuse image sample`: `OUT/{i}.png`, `OUT/labels.csv` and the grid `OUT.grid.png`.
use std::path::PathBuf;

use anyhow::{bail, Result};
use clap::Args;
use diffuse::image::{self as img, Generator};
use diffuse::sampling::{Guidance, GuidanceConvention, GuidanceMethod, SamplerKind};
use diffuse::schedule::NoiseSchedule;

use super::load_guide;
use crate::cli::args::{CommonArgs, GuidanceParams, SelectiveParams};

#[derive(Args)]
pub struct SampleCmd {
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
    #[command(flatten)]
    selective: SelectiveParams,
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
    /// Output folder.
    #[arg(long)]
    out: PathBuf,
    #[command(flatten)]
    common: CommonArgs,
}

pub fn run(a: &SampleCmd) -> Result<()> {
    if a.n == 0 {
        bail!("invalid value for -n: must be at least 1");
    }
    let dev = a.common.device()?;
    let guidance = a
        .params
        .config(a.guidance, Guidance::new(a.cfg_scale, a.convention)?)?;
    let selective = a.selective.config(None)?;
    let (model, meta) = img::load(&a.ckpt, a.raw, &dev)?;
    if meta.class_names.is_empty() {
        // An unconditional model has no classes to ask for and no conditional prediction to
        // steer towards.
        if a.class.is_some() {
            bail!(
                "invalid value for --class: {} is unconditional (trained without classes)",
                a.ckpt.display()
            );
        }
        if a.cfg_scale != 0.0
            || a.guidance != GuidanceMethod::Cfg
            || a.params.guide_ckpt.is_some()
            || selective.is_some()
        {
            bail!(
                "{} is unconditional (trained without classes): guidance (--cfg-scale, --guidance, --guide-ckpt, --guide-share) needs a class-conditional model",
                a.ckpt.display()
            );
        }
    }
    let guide = load_guide(&a.params, &[a.guidance], &meta, a.raw, &dev)?;
    let schedule = NoiseSchedule::new(&meta.config.schedule)?;
    let spec = img::image_spec(a.sampler, a.steps, a.eta, a.clip_x0);
    spec.validate(schedule.num_steps())?;
    if a.eta.is_nan() || a.eta < 0.0 {
        bail!("invalid value for --eta: must be ≥ 0");
    }
    let class = a
        .class
        .as_deref()
        .map(|c| img::class_index(c, &meta.class_names))
        .transpose()?;
    diffuse::files::ensure_dir(&a.out)?;
    let labels = img::draw_labels(a.n, meta.class_names.len(), class, a.seed);
    let shape = img::model_shape(&meta.config.unet);
    let pb = if a.common.quiet {
        indicatif::ProgressBar::hidden()
    } else {
        diffuse::train::progress_bar(a.n as u64, "sample")
    };
    let (images, resampled) = Generator::new(&model, shape, &schedule, spec)
        .guided(guidance, guide.as_ref())
        .selective(selective)
        .generate_selected(&labels, a.seed, a.batch, Some(&pb))?;
    pb.finish_and_clear();
    img::write_samples(&a.out, &images, &labels, &meta.class_names, shape)?;
    let grid = img::grid_path(&a.out);
    img::write_class_grid(&grid, &images, &labels, meta.class_names.len(), shape)?;
    println!(
        "wrote {} images{}{} to {}; grid in {}",
        a.n,
        if meta.class_names.is_empty() {
            ""
        } else {
            " and labels.csv"
        },
        match selective {
            Some(_) => format!(
                " ({} the model was least sure of sampled again at the guided setting)",
                resampled.len()
            ),
            None => String::new(),
        },
        a.out.display(),
        grid.display()
    );
    Ok(())
}

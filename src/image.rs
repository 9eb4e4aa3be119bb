//! The image workflow: class-conditional UNet training with classifier-free guidance, guided
//! sampling to PNG files, grids. `ImageTrainConfig::reference()` is the course's AFHQ protocol.
//!
//! A run folder holds its checkpoints (see [`checkpoint`]: each step's weights, config and
//! resume state as one unit), `loss.png` and `preview/`.
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use burn::module::Module;
use burn::prelude::*;
use serde::{Deserialize, Serialize};

use crate::checkpoint::{config_path, ensure_dir, read_json};
use crate::data::image_set::ImageSet;
use crate::device::Precision;
use crate::nn::unet::{drop_labels, labels_tensor, UNet, UNetConfig};
use crate::rng::{normal_vec, seeded, uniform_ints};
use crate::sampling::{
    sample, Denoiser, Guidance, GuidanceConfig, GuidanceMethod, Guided, GuidedBy, SamplerKind,
    SamplerSpec,
};
use crate::schedule::{eps_mse, NoiseSchedule, ScheduleConfig};
use crate::train::{
    autocast, clip_grads, interrupted, param_ids, progress_bar, set_param_ids, Ema, LossReader,
    OptimConfig,
};
use crate::{run_checkpoint, Error, Result};

mod checkpoint;
pub use checkpoint::weights_file;
use checkpoint::{restore, save_checkpoint};

/// Training steps between two reads of the losses back to the host (each read waits for the
/// device to finish the steps queued so far).
const LOSS_READ_EVERY: usize = 20;

/// Everything that defines an image training run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImageTrainConfig {
    /// Network sizes.
    pub unet: UNetConfig,
    /// Variance schedule.
    pub schedule: ScheduleConfig,
    /// Adam settings and learning-rate schedule.
    pub optim: OptimConfig,
    /// Images per step.
    pub batch_size: usize,
    /// Optimisation steps.
    pub steps: usize,
    /// Probability of replacing a label by the null class 0 during training (CFG).
    pub p_uncond: f64,
    /// EMA decay of the weights (None: off, the reference).
    pub ema_decay: Option<f64>,
    /// Checkpoint (and resume state) every this many steps.
    pub checkpoint_every: usize,
    /// Preview grid every this many steps (0: never).
    pub preview_every: usize,
    /// Steps of the DDIM sampler used for previews.
    pub preview_steps: usize,
    /// Seed of initialisation, batches, timesteps, noise and dropout.
    pub seed: u64,
    /// How many of the newest checkpoints to keep in the run folder (at least 1).
    #[serde(default = "default_keep_checkpoints")]
    pub keep_checkpoints: usize,
    /// Arithmetic of the network in training (bf16: mixed precision with f32 master weights).
    /// Absent from runs saved before it existed, which trained in f32.
    #[serde(default)]
    pub precision: Precision,
}

fn default_keep_checkpoints() -> usize {
    2
}

impl ImageTrainConfig {
    /// The reference AFHQ protocol: batch 16, Adam 2e-4 with 200 warm-up steps, 100,000 steps,
    /// p_uncond 0.1, seed 63, checkpoint every 200 steps. (The reference previews with
    /// 1000-step DDPM; previews here use DDIM-50, which does not change training.)
    pub fn reference() -> Self {
        Self {
            unet: UNetConfig::default(),
            schedule: ScheduleConfig::default(),
            optim: OptimConfig {
                lr: 2e-4,
                warmup_steps: 200,
                ..OptimConfig::default()
            },
            batch_size: 16,
            steps: 100_000,
            p_uncond: 0.1,
            ema_decay: None,
            checkpoint_every: 200,
            preview_every: 200,
            preview_steps: 50,
            seed: 63,
            keep_checkpoints: default_keep_checkpoints(),
            precision: Precision::F32,
        }
    }

    /// A small run on the bundled digits (native 8×8) that trains on a 2-core CPU in minutes.
    pub fn digits() -> Self {
        Self {
            unet: UNetConfig::digits(),
            optim: OptimConfig {
                lr: 1e-3,
                warmup_steps: 100,
                schedule: crate::train::LrSchedule::Cosine,
                min_lr_frac: 0.05,
                grad_clip: Some(1.0),
                ..OptimConfig::default()
            },
            batch_size: 64,
            steps: 1500,
            ema_decay: Some(0.995),
            checkpoint_every: 500,
            preview_every: 500,
            preview_steps: 25,
            seed: 63,
            ..Self::reference()
        }
    }

    pub fn validate(&self) -> Result<()> {
        self.unet.validate()?;
        self.optim.validate()?;
        NoiseSchedule::new(&self.schedule)?;
        if self.steps == 0 {
            return Err(Error::invalid("--steps", "must be at least 1"));
        }
        if self.batch_size == 0 {
            return Err(Error::invalid("--batch-size", "must be at least 1"));
        }
        if !(0.0..=1.0).contains(&self.p_uncond) {
            return Err(Error::invalid(
                "--p-uncond",
                format!("must be in [0, 1], got {}", self.p_uncond),
            ));
        }
        if let Some(d) = self.ema_decay {
            if !(0.0..1.0).contains(&d) {
                return Err(Error::invalid(
                    "--ema",
                    format!("decay must be in [0, 1), got {d}"),
                ));
            }
        }
        if self.checkpoint_every == 0 {
            return Err(Error::invalid("--checkpoint-every", "must be at least 1"));
        }
        if self.keep_checkpoints == 0 {
            return Err(Error::invalid("--keep-checkpoints", "must be at least 1"));
        }
        Ok(())
    }
}

/// What `model.json` holds.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ImageCheckpointMeta {
    /// Always "image".
    pub kind: String,
    pub config: ImageTrainConfig,
    /// Class names; label l is `class_names[l − 1]`.
    pub class_names: Vec<String>,
    /// Steps trained.
    pub step: usize,
    pub has_ema: bool,
}

/// Result of a training call.
pub struct TrainOutcome {
    pub model: UNet,
    pub ema: Option<Ema>,
    pub step: usize,
    pub losses: Vec<(usize, f64)>,
    pub seconds: f64,
    /// Of `seconds`, the time spent writing checkpoints.
    pub checkpoint_seconds: f64,
    pub interrupted: bool,
}

impl TrainOutcome {
    /// The weights sampling uses: EMA when trained with it.
    pub fn sampling_model(&self) -> UNet {
        crate::train::sampling_weights(&self.model, self.ema.as_ref())
    }
}

/// Trains (or resumes, when `out` holds a resume state and `resume` is set) on `data`.
/// Checkpoints, previews and the loss curve go to `out`.
pub fn train(
    cfg: &ImageTrainConfig,
    data: Arc<ImageSet>,
    out: &Path,
    resume: bool,
    device: &Device,
    show: bool,
) -> Result<TrainOutcome> {
    cfg.validate()?;
    ensure_dir(out)?;
    let u = &cfg.unet;
    if data.channels != u.in_channels || data.height != u.image_size || data.width != u.image_size {
        return Err(Error::invalid(
            "data",
            format!(
                "images are {}×{}×{} but the network expects {}×{}×{}",
                data.channels, data.height, data.width, u.in_channels, u.image_size, u.image_size
            ),
        ));
    }
    if data.num_classes() != u.num_classes {
        return Err(Error::invalid(
            "data",
            format!(
                "{} classes in the data, {} in the network config",
                data.num_classes(),
                u.num_classes
            ),
        ));
    }
    if cfg.batch_size > data.len() {
        return Err(Error::invalid(
            "--batch-size",
            format!(
                "{} is larger than the data set ({} images)",
                cfg.batch_size,
                data.len()
            ),
        ));
    }
    let schedule = NoiseSchedule::new(&cfg.schedule)?;
    cfg.precision.check(device)?;
    let mut model = u.init(device, &mut seeded(cfg.seed, 2))?;
    let mut optim = cfg.optim.adam();
    let mut ema = cfg.ema_decay.map(|d| Ema::new(&model, d, true));
    // Parameter ids key the optimizer state: make them a function of the layout alone, so two
    // identical runs write identical checkpoint files.
    let n_params = param_ids(&model).len() as u64;
    model = set_param_ids(model, &(1..=n_params).collect::<Vec<_>>())?;
    for p in run_checkpoint::clean_orphans(out)? {
        if show {
            eprintln!("removed {} (left by a process that died)", p.display());
        }
    }
    let (mut start, mut losses) = (0, Vec::new());
    if resume {
        match restore(out, cfg, model.clone(), optim.clone(), ema.clone())? {
            Some(r) => {
                (model, optim, ema, start, losses) = (r.model, r.optim, r.ema, r.step, r.losses);
                if show {
                    eprintln!("resuming {} at step {start}", out.display());
                }
            }
            // Stopped before its first checkpoint: nothing was lost but the steps since the
            // start, so the run starts again (the same run, as it is seeded).
            None => eprintln!(
                "{} holds no checkpoint yet; starting the run from step 0",
                out.display()
            ),
        }
    }
    if show {
        eprintln!("UNet: {} parameters", model.num_params());
    }
    // Batches are gathered on a helper thread, ahead of the network.
    let mut batches = data.batches(cfg.batch_size, cfg.seed, 2, start)?;
    let pb = if show {
        progress_bar((cfg.steps) as u64, "train")
    } else {
        indicatif::ProgressBar::hidden()
    };
    pb.set_position(start as u64);
    let t0 = Instant::now();
    let mut checkpoint_seconds = 0.0;
    let mut step = start;
    let mut was_interrupted = false;
    let mut loss_reader = LossReader::new(LOSS_READ_EVERY);
    while step < cfg.steps {
        let batch = batches
            .next()
            .ok_or_else(|| Error::invalid("data", "the batch producer stopped"))?;
        let b = batch.labels.len();
        let mut rng = seeded(cfg.seed, 0x5eed_0000_0000 + step as u64);
        device.seed(cfg.seed.wrapping_mul(1_000_003).wrapping_add(step as u64));
        let labels = drop_labels(&batch.labels, cfg.p_uncond, &mut rng);
        let (x0, _) = batch.into_tensor(device);
        let t = uniform_ints(&mut rng, b, schedule.num_steps());
        let noise = Tensor::from_data(
            TensorData::new(normal_vec(&mut rng, x0.shape().num_elements()), x0.dims()),
            device,
        );
        let x_t = schedule.q_sample(x0, &t, noise.clone());
        let t_f = Tensor::from_data(
            TensorData::new(t.iter().map(|&v| v as f32).collect::<Vec<_>>(), [b]),
            device,
        );
        let labels = Some(labels_tensor(&labels, device));
        let pred = match cfg.precision {
            Precision::F32 => model.forward(x_t, t_f, labels),
            // The loss and everything outside the network stay in f32.
            p => autocast(model.clone(), p.dtype())
                .forward(x_t.cast(p.dtype()), t_f, labels)
                .cast(burn::tensor::FloatDType::F32),
        };
        let loss = eps_mse(noise, pred);
        loss_reader.push(step, loss.clone());
        let grads = clip_grads(loss.backward(), &model, cfg.optim.grad_clip);
        model = optim.step(cfg.optim.lr_at(step, cfg.steps), model, grads);
        if let Some(e) = ema.as_mut() {
            e.update(&model);
        }
        step += 1;
        pb.set_position(step as u64);
        let stop = interrupted();
        // The losses come back to the host together (one wait for the device) every few
        // steps, and always before anything is saved or previewed.
        if loss_reader.due()
            || stop
            || step == cfg.steps
            || step % cfg.checkpoint_every == 0
            || (cfg.preview_every > 0 && step % cfg.preview_every == 0)
        {
            if let Some(lv) = loss_reader.flush(&mut losses)? {
                pb.set_message(format!("loss {lv:.4}"));
            }
        }
        if step % cfg.checkpoint_every == 0 || step == cfg.steps || stop {
            let t = Instant::now();
            save_checkpoint(
                out,
                cfg,
                &data.class_names,
                &model,
                &ema,
                &optim,
                step,
                &losses,
            )?;
            checkpoint_seconds += t.elapsed().as_secs_f64();
            plot_losses(out, &losses)?;
        }
        if cfg.preview_every > 0 && (step % cfg.preview_every == 0 || step == cfg.steps) && !stop {
            let m = crate::train::sampling_weights(&model, ema.as_ref());
            preview(
                &m,
                &schedule,
                cfg,
                &data.class_names,
                &out.join("preview").join(format!("step-{step:06}.png")),
            )?;
        }
        if stop {
            was_interrupted = true;
            pb.abandon_with_message(format!(
                "interrupted at step {step}; saved, continue with --resume"
            ));
            break;
        }
    }
    pb.finish_and_clear();
    drop(batches);
    Ok(TrainOutcome {
        model,
        ema,
        step,
        losses,
        seconds: t0.elapsed().as_secs_f64(),
        checkpoint_seconds,
        interrupted: was_interrupted,
    })
}

fn plot_losses(out: &Path, losses: &[(usize, f64)]) -> Result<()> {
    let pts: Vec<(f64, f64)> = losses.iter().map(|&(s, l)| (s as f64, l)).collect();
    crate::plot::lines(
        &out.join("loss.png"),
        "training loss",
        "step",
        "ε-MSE",
        true,
        &[("loss".into(), pts)],
    )
}

/// A small grid (one row per class, 4 columns) with DDIM at w = 0, for watching training.
fn preview(
    model: &UNet,
    schedule: &NoiseSchedule,
    cfg: &ImageTrainConfig,
    class_names: &[String],
    path: &Path,
) -> Result<()> {
    let k = class_names.len().min(10);
    let labels: Vec<usize> = (1..=k).flat_map(|c| std::iter::repeat(c).take(4)).collect();
    let spec = SamplerSpec {
        steps: cfg.preview_steps.min(schedule.num_steps()),
        clip_x0: true,
        ..SamplerSpec::default()
    };
    let shape = model_shape(&cfg.unet);
    let imgs = generate(
        model,
        shape,
        schedule,
        &spec,
        Guidance::new(0.0, Default::default())?,
        &labels,
        cfg.seed,
        labels.len(),
        None,
    )?;
    save_grid(path, &imgs, shape, 4)
}

/// (channels, height, width) of a network's images.
pub fn model_shape(cfg: &UNetConfig) -> (usize, usize, usize) {
    (cfg.in_channels, cfg.image_size, cfg.image_size)
}

/// Generates one image per label (values in [−1, 1], [N, C, H, W] row-major), in batches of
/// `batch`, with the sampler of `spec` and classifier-free guidance `guidance` (or any
/// [`GuidanceConfig`] whose method needs no guide model; see [`Generator`] for autoguidance).
/// Image i's noise depends only on (seed, i), so results do not depend on the batch size.
#[allow(clippy::too_many_arguments)]
pub fn generate(
    model: &UNet,
    shape: (usize, usize, usize),
    schedule: &NoiseSchedule,
    spec: &SamplerSpec,
    guidance: impl Into<GuidanceConfig>,
    labels: &[usize],
    seed: u64,
    batch: usize,
    progress: Option<&indicatif::ProgressBar>,
) -> Result<Vec<f32>> {
    Generator {
        model,
        guide: None,
        shape,
        schedule,
        spec: *spec,
        guidance: guidance.into(),
    }
    .generate(labels, seed, batch, progress)
}

/// Everything that turns labels into images: the model (and autoguidance's weaker guide), the
/// image shape, the schedule, the sampler and the guidance.
#[derive(Clone, Copy)]
pub struct Generator<'a> {
    pub model: &'a UNet,
    /// The weaker model of `--guidance auto` (None otherwise).
    pub guide: Option<&'a UNet>,
    /// (channels, height, width).
    pub shape: (usize, usize, usize),
    pub schedule: &'a NoiseSchedule,
    pub spec: SamplerSpec,
    pub guidance: GuidanceConfig,
}

impl Generator<'_> {
    /// One image per label, as [`generate`] describes. Each batch gets a fresh guidance wrapper
    /// (APG's momentum never crosses batches).
    pub fn generate(
        &self,
        labels: &[usize],
        seed: u64,
        batch: usize,
        progress: Option<&indicatif::ProgressBar>,
    ) -> Result<Vec<f32>> {
        let (model, schedule, spec) = (self.model, self.schedule, &self.spec);
        spec.validate(schedule.num_steps())?;
        model.check_labels(labels)?;
        if let Some(g) = self.guide {
            let io = |m: &UNet| (m.num_classes(), m.head.weight.dims()[1]);
            if io(g) != io(model) {
                return Err(Error::invalid(
                    "--guide-ckpt",
                    "the guide model must have the same classes and channels as the model",
                ));
            }
        }
        // A bad guidance setting fails here, before any batch (each batch builds its own).
        GuidedBy::new(model, self.guide, schedule, self.guidance)?;
        let (c, h, w) = self.shape;
        let device = model.head.weight.val().device();
        let mut out = Vec::with_capacity(labels.len() * c * h * w);
        for (bi, chunk) in labels.chunks(batch.max(1)).enumerate() {
            let first = bi * batch.max(1);
            // x_T per image from its own stream; the sampler's own noise from the batch's stream.
            let mut x = Vec::with_capacity(chunk.len() * c * h * w);
            for i in 0..chunk.len() {
                x.extend(normal_vec(
                    &mut seeded(seed, 0x1000_0000 + (first + i) as u64),
                    c * h * w,
                ));
            }
            let x_t = Tensor::from_data(TensorData::new(x, [chunk.len(), c, h, w]), &device);
            let mut rng = seeded(seed, 0x2000_0000 + first as u64);
            let mut tick = |_: usize, _: usize| {};
            // Plain CFG through its own wrapper (no x̂₀ conversion: the reference's numbers).
            let (cfg_only, by);
            let guided: &dyn Denoiser<4> = if self.guidance.method == GuidanceMethod::Cfg {
                cfg_only = Guided {
                    model,
                    guidance: self.guidance.scale,
                };
                &cfg_only
            } else {
                by = GuidedBy::new(model, self.guide, schedule, self.guidance)?;
                &by
            };
            let x0 = sample(
                guided,
                schedule,
                spec,
                x_t,
                Some(chunk),
                &mut rng,
                &mut tick,
            )?;
            out.extend(
                x0.into_data()
                    .try_to_vec::<f32>()
                    .map_err(|e| Error::invalid("sampling", format!("{e:?}")))?,
            );
            if let Some(pb) = progress {
                pb.inc(chunk.len() as u64);
            }
        }
        Ok(out)
    }
}

/// x ∈ [−1, 1] → round(clamp(x/2 + 1/2, 0, 1)·255), the reference's `tensor_to_pil_image`.
pub fn to_u8(v: f32) -> u8 {
    ((v * 0.5 + 0.5).clamp(0.0, 1.0) * 255.0).round() as u8
}

/// One [C, H, W] image as an 8-bit PNG-ready image (gray for C = 1).
pub fn to_image(pixels: &[f32], (c, h, w): (usize, usize, usize)) -> image::DynamicImage {
    if c == 1 {
        image::DynamicImage::ImageLuma8(image::GrayImage::from_fn(w as u32, h as u32, |x, y| {
            image::Luma([to_u8(pixels[y as usize * w + x as usize])])
        }))
    } else {
        image::DynamicImage::ImageRgb8(image::RgbImage::from_fn(w as u32, h as u32, |x, y| {
            let at = |ch: usize| to_u8(pixels[ch * h * w + y as usize * w + x as usize]);
            image::Rgb([at(0), at(1), at(2.min(c - 1))])
        }))
    }
}

/// Saves images side by side, `cols` per row (row = class in our grids), with 2-px gaps.
pub fn save_grid(
    path: &Path,
    images: &[f32],
    shape: (usize, usize, usize),
    cols: usize,
) -> Result<()> {
    let (c, h, w) = shape;
    let n = images.len() / (c * h * w);
    let rows = n.div_ceil(cols.max(1));
    let (gw, gh) = ((cols * (w + 2)) as u32, (rows * (h + 2)) as u32);
    let mut grid = image::RgbImage::from_pixel(gw, gh, image::Rgb([255, 255, 255]));
    for i in 0..n {
        let img = to_image(&images[i * c * h * w..(i + 1) * c * h * w], shape).to_rgb8();
        let (x0, y0) = ((i % cols) * (w + 2) + 1, (i / cols) * (h + 2) + 1);
        image::imageops::replace(&mut grid, &img, x0 as i64, y0 as i64);
    }
    // Small images are hard to see: enlarge the grid by an integer factor up to ~512 px.
    let scale = (512 / gw.max(gh)).max(1);
    let grid = image::imageops::resize(
        &grid,
        gw * scale,
        gh * scale,
        image::imageops::FilterType::Nearest,
    );
    crate::checkpoint::ensure_parent(path)?;
    grid.save(path)
        .map_err(|e| Error::bad_file(path, format!("could not write PNG: {e}")))
}

/// Loads a run's model (EMA weights when present, unless `raw`) and its metadata.
pub fn load(ckpt: &Path, raw: bool, device: &Device) -> Result<(UNet, ImageCheckpointMeta)> {
    let ckpt = checkpoint::weights_file(ckpt)?;
    let meta_path = config_path(&ckpt);
    if !meta_path.is_file() {
        return Err(Error::Checkpoint {
            path: ckpt.clone(),
            msg: format!("its config {} is missing", meta_path.display()),
        });
    }
    let meta: ImageCheckpointMeta = read_json(&meta_path)?;
    if meta.kind != "image" {
        return Err(Error::Checkpoint {
            path: ckpt,
            msg: format!("is a `{}` checkpoint, not an image one", meta.kind),
        });
    }
    let model = meta.config.unet.init(device, &mut seeded(0, 2))?;
    let ema_file = ckpt.with_file_name(checkpoint::EMA);
    let file = if meta.has_ema && !raw && ema_file.is_file() {
        ema_file
    } else {
        ckpt.clone()
    };
    Ok((crate::checkpoint::load_weights(model, &file)?, meta))
}

/// Uniform labels over 1…K for `n` images, from `seed` (or all `class` when given).
pub fn draw_labels(n: usize, num_classes: usize, class: Option<usize>, seed: u64) -> Vec<usize> {
    match class {
        Some(c) => vec![c; n],
        None => uniform_ints(&mut seeded(seed, 0x3000_0000), n, num_classes)
            .into_iter()
            .map(|l| l + 1)
            .collect(),
    }
}

/// Writes `DIR/{i}.png` for every image and `DIR/labels.csv` (`file,class`).
pub fn write_samples(
    dir: &Path,
    images: &[f32],
    labels: &[usize],
    class_names: &[String],
    shape: (usize, usize, usize),
) -> Result<()> {
    ensure_dir(dir)?;
    let (c, h, w) = shape;
    let mut csv = String::from("file,class\n");
    for (i, &l) in labels.iter().enumerate() {
        let name = format!("{i}.png");
        let path = dir.join(&name);
        to_image(&images[i * c * h * w..(i + 1) * c * h * w], shape)
            .save(&path)
            .map_err(|e| Error::bad_file(&path, format!("could not write PNG: {e}")))?;
        csv.push_str(&format!("{name},{}\n", class_names[l - 1]));
    }
    crate::checkpoint::write_atomic(&dir.join("labels.csv"), csv.as_bytes())
}

/// The class index (1…K) of `name`, or an error listing the valid names.
pub fn class_index(name: &str, class_names: &[String]) -> Result<usize> {
    class_names
        .iter()
        .position(|c| c == name)
        .map(|i| i + 1)
        .ok_or_else(|| {
            Error::invalid(
                "--class",
                format!(
                    "unknown class `{name}`; the classes are {}",
                    class_names.join(", ")
                ),
            )
        })
}

/// A sampler spec for images: DDPM or DDIM with x̂₀ clipping as asked.
pub fn image_spec(kind: SamplerKind, steps: usize, eta: f64, clip_x0: bool) -> SamplerSpec {
    SamplerSpec {
        kind,
        steps,
        eta,
        clip_x0,
        ..SamplerSpec::default()
    }
}

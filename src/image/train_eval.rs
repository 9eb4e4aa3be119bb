//! Evaluations run during training ([`super::train::Evaluate`]), configured by
//! [`EvalSpec`](super::EvalSpec):
//!
//! - [`FidDuringTraining`]: FID of `n` samples against a reference folder or statistics file,
//!   computed exactly as `image sample` + `diffuse fid` would (the samples are written as PNGs
//!   to `RUN/fid-samples/` and read back through the FID pipeline). A reference folder's
//!   statistics are computed at the first evaluation and cached in `RUN/fid-ref.stats`; later
//!   evaluations (and a resumed run) read the cache, which records the reference's path and
//!   file count and is recomputed when they change.
//! - [`DigitFrechetDuringTraining`]: on the bundled digits, the Fréchet distance of `n` samples
//!   to the real digits in the judge classifier's features (the metric of `image run`); the
//!   judge and the real digits' statistics are built at the first evaluation and kept.
//!
//! Samples come from the weights sampling would use (EMA when trained with it), with labels and
//! noise from a fixed seed, so evaluations differ only by the weights.
use std::path::{Path, PathBuf};

use burn::prelude::Device;

use super::generate::{draw_labels, model_shape, Generator};
use super::output::write_samples;
use super::train::{Evaluate, Evaluation};
use super::EvalSpec;
use super::ImageTrainConfig;
use crate::device::DeviceSpec;
use crate::metrics::digit_frechet::DigitJudge;
use crate::metrics::fid::{load_stats, save_stats};
use crate::metrics::fid_pipeline::{fid_between, folder_stats, FidOptions};
use crate::nn::unet::UNet;
use crate::sampling::{Guidance, GuidanceConfig, GuidanceConvention, SamplerSpec};
use crate::schedule::NoiseSchedule;
use crate::{Error, Result};

/// Labels and noise of the evaluation samples (fixed: evaluations differ only by the weights).
const EVAL_SEED: u64 = 0x00e7_a100;

/// How both evaluations draw their samples: `spec`'s sampler and guidance over the run's
/// schedule, checked once.
struct EvalSampler {
    spec: EvalSpec,
    schedule: NoiseSchedule,
    shape: (usize, usize, usize),
    sampler: SamplerSpec,
    guidance: GuidanceConfig,
}

impl EvalSampler {
    fn new(spec: &EvalSpec, cfg: &ImageTrainConfig, num_classes: usize) -> Result<Self> {
        let schedule = NoiseSchedule::new(&cfg.schedule)?;
        if spec.n < 2 {
            return Err(Error::invalid(
                "eval.n",
                "must be at least 2 (the Fréchet distance needs a covariance)",
            ));
        }
        if num_classes == 0 && (spec.cfg_scale != 0.0 || spec.guidance != Default::default()) {
            return Err(Error::invalid(
                "eval.cfg_scale",
                "the model is unconditional (no classes): guidance needs a class-conditional model",
            ));
        }
        let sampler = super::image_spec(spec.sampler, spec.steps, 0.0, true);
        sampler.validate(schedule.num_steps())?;
        let guidance = GuidanceConfig {
            method: spec.guidance,
            scale: Guidance::new(spec.cfg_scale, GuidanceConvention::Reference)?,
            ..GuidanceConfig::default()
        };
        guidance.validate()?;
        Ok(Self {
            spec: spec.clone(),
            schedule,
            shape: model_shape(&cfg.unet),
            sampler,
            guidance,
        })
    }

    /// `spec.n` samples of `model` (values in [−1, 1]) and their labels.
    fn draw(&self, model: &UNet) -> Result<(Vec<f32>, Vec<usize>)> {
        let labels = draw_labels(self.spec.n, model.num_classes(), None, EVAL_SEED);
        let imgs = Generator::new(model, self.shape, &self.schedule, self.sampler)
            .guided(self.guidance, None)
            .generate(&labels, EVAL_SEED, self.spec.batch.max(1), None)?;
        Ok((imgs, labels))
    }
}

/// FID during training against a folder or statistics file (see the module docs).
pub struct FidDuringTraining {
    sampling: EvalSampler,
    /// The reference: a folder or a statistics file.
    reference: PathBuf,
    class_names: Vec<String>,
    opts: FidOptions,
    run: PathBuf,
}

/// The cache of the reference statistics in a run folder.
pub const FID_REF_CACHE: &str = "fid-ref.stats";
/// Where the evaluation samples are written (replaced at each evaluation).
pub const FID_SAMPLES: &str = "fid-samples";

impl FidDuringTraining {
    pub fn new(
        spec: &EvalSpec,
        cfg: &ImageTrainConfig,
        class_names: &[String],
        run: &Path,
        device: DeviceSpec,
    ) -> Result<Self> {
        let reference = spec.reference.clone().ok_or_else(|| {
            Error::invalid(
                "eval.reference",
                "FID during training needs the reference images (a folder or a statistics file)",
            )
        })?;
        if !reference.exists() {
            return Err(Error::bad_file(
                &reference,
                "no such folder or statistics file",
            ));
        }
        let weights = spec.weights.clone().ok_or_else(|| {
            Error::invalid(
                "eval.weights",
                "FID during training needs the Inception weights (the course's afhq_inception_v3.ckpt)",
            )
        })?;
        if !weights.is_file() {
            return Err(Error::bad_file(&weights, "no such weights file"));
        }
        let sampling = EvalSampler::new(spec, cfg, class_names.len())?;
        let opts = FidOptions {
            weights,
            progress: false,
            device,
            ..FidOptions::default()
        };
        Ok(Self {
            sampling,
            reference,
            class_names: class_names.to_vec(),
            opts,
            run: run.to_path_buf(),
        })
    }

    /// The reference as a statistics file: the file itself, or the run's cache of the folder's
    /// statistics (computed now if missing or stale).
    fn reference_stats(&self) -> Result<PathBuf> {
        let reference = &self.reference;
        if reference.is_file() {
            return Ok(reference.clone());
        }
        let cache = self.run.join(FID_REF_CACHE);
        let count = crate::data::image_io::list_images(reference)?.len();
        let key = serde_json::json!({
            "reference": reference.canonicalize().unwrap_or(reference.clone()),
            "files": count,
        });
        if cache.is_file() {
            if let Ok((_, meta)) = load_stats(&cache) {
                if meta.get("reference") == key.get("reference")
                    && meta.get("files") == key.get("files")
                {
                    return Ok(cache);
                }
            }
        }
        let stats = folder_stats(reference, &self.opts)?;
        let mut meta = self.opts.meta(self.opts.resolved_image_size()?);
        if let (Some(m), Some(k)) = (meta.as_object_mut(), key.as_object()) {
            for (a, b) in k {
                m.insert(a.clone(), b.clone());
            }
        }
        save_stats(&cache, &stats, &meta)?;
        Ok(cache)
    }
}

impl Evaluate for FidDuringTraining {
    fn name(&self) -> &str {
        "fid"
    }
    fn every(&self) -> usize {
        self.sampling.spec.every
    }
    fn evaluate(&mut self, model: &UNet, _step: usize) -> Result<Evaluation> {
        let t = std::time::Instant::now();
        let reference = self.reference_stats()?;
        let reference_seconds = t.elapsed().as_secs_f64();
        let (imgs, labels) = self.sampling.draw(model)?;
        let dir = self.run.join(FID_SAMPLES);
        if dir.exists() {
            std::fs::remove_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
        }
        write_samples(&dir, &imgs, &labels, &self.class_names, self.sampling.shape)?;
        Ok(Evaluation {
            value: fid_between(&reference, &dir, &self.opts)?.fid,
            reference_seconds,
        })
    }
}

/// The digits' Fréchet distance during training (see the module docs).
pub struct DigitFrechetDuringTraining {
    sampling: EvalSampler,
    device: Device,
    judge: Option<DigitJudge>,
}

impl DigitFrechetDuringTraining {
    pub fn new(spec: &EvalSpec, cfg: &ImageTrainConfig, device: &Device) -> Result<Self> {
        if (cfg.unet.in_channels, cfg.unet.image_size) != (1, 8) {
            return Err(Error::invalid(
                "eval",
                "the digits' Fréchet distance needs the digits at 8×8 (the judge's input)",
            ));
        }
        if spec.reference.is_some() || spec.weights.is_some() {
            return Err(Error::invalid(
                "eval.reference",
                "on the digits the reference is the real digits and the features the judge \
                 classifier's: leave out the reference and the weights",
            ));
        }
        Ok(Self {
            sampling: EvalSampler::new(spec, cfg, 10)?,
            device: device.clone(),
            judge: None,
        })
    }
}

impl Evaluate for DigitFrechetDuringTraining {
    fn name(&self) -> &str {
        "digit_fd"
    }
    fn every(&self) -> usize {
        self.sampling.spec.every
    }
    fn evaluate(&mut self, model: &UNet, _step: usize) -> Result<Evaluation> {
        let t = std::time::Instant::now();
        if self.judge.is_none() {
            self.judge = Some(DigitJudge::standard(&self.device)?);
        }
        let reference_seconds = t.elapsed().as_secs_f64();
        let (imgs, _) = self.sampling.draw(model)?;
        Ok(Evaluation {
            value: self.judge.as_ref().expect("built above").frechet(&imgs)?,
            reference_seconds,
        })
    }
}

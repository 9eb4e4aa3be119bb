//! Turning labels into images: the sampler over the guided UNet, in batches, with noise that
//! depends only on (seed, image index).
use burn::prelude::*;

use crate::nn::unet::{UNet, UNetConfig};
use crate::rng::{normal_vec, seeded, uniform_ints, RowNoise};
use crate::sampling::selective::{
    class_errors, classifier_timesteps, label_margin, least_sure, CLASSIFIER_DRAWS,
};
use crate::sampling::{sample, Extra, GuidanceConfig, Guided, SamplerKind, SamplerSpec, Selective};
use crate::schedule::NoiseSchedule;
use crate::{Error, Result};

/// (channels, height, width) of a network's images.
pub fn model_shape(cfg: &UNetConfig) -> (usize, usize, usize) {
    (cfg.in_channels, cfg.image_size, cfg.image_size)
}

/// The generator streams of one seed: image i's x_T, image i's sampler noise, the labels, and
/// image i's noise for the selective classifier.
const STREAM_X_T: u64 = 0x1000_0000;
const STREAM_SAMPLER: u64 = 0x2000_0000;
const STREAM_LABELS: u64 = 0x3000_0000;
const STREAM_CLASSIFIER: u64 = 0x5000_0000;

/// Everything that turns labels into images: the model (and autoguidance's weaker guide), the
/// image shape, the schedule, the sampler and the guidance.
#[derive(Clone, Copy)]
pub struct Generator<'a> {
    pub model: &'a UNet,
    /// The weaker model of autoguidance (None otherwise).
    pub guide: Option<&'a UNet>,
    /// (channels, height, width).
    pub shape: (usize, usize, usize),
    pub schedule: &'a NoiseSchedule,
    pub spec: SamplerSpec,
    pub guidance: GuidanceConfig,
    /// Selective guidance ([`crate::sampling::selective`]): `guidance` only for the share of
    /// images the model itself is least sure of, the base weight for the rest (None: `guidance`
    /// for every image).
    pub selective: Option<Selective>,
}

impl<'a> Generator<'a> {
    /// `model`'s images of `shape` with the sampler `spec`, unguided (w = 0).
    pub fn new(
        model: &'a UNet,
        shape: (usize, usize, usize),
        schedule: &'a NoiseSchedule,
        spec: SamplerSpec,
    ) -> Self {
        Self {
            model,
            guide: None,
            shape,
            schedule,
            spec,
            guidance: GuidanceConfig::default(),
            selective: None,
        }
    }

    /// The same with `guidance` (and the weaker `guide` model that autoguidance needs).
    pub fn guided(self, guidance: GuidanceConfig, guide: Option<&'a UNet>) -> Self {
        Self {
            guidance,
            guide,
            ..self
        }
    }

    /// The same with `guidance` applied selectively.
    pub fn selective(self, selective: Option<Selective>) -> Self {
        Self { selective, ..self }
    }

    /// One image per label (values in [−1, 1], [N, C, H, W] row-major), in batches of `batch`.
    /// Image i's noise (x_T and the fresh noise of stochastic samplers) depends only on
    /// (seed, i), so results do not depend on the batch size. Each batch gets a fresh guidance
    /// wrapper (APG's momentum never crosses batches).
    ///
    /// With selective guidance, two passes: every image at the base weight, then the
    /// ⌈share · N⌉ images with the largest margins ([`crate::sampling::selective`]) again with
    /// `guidance` along the same noise (x_T and every step's), so each keeps what it can of its
    /// first version; which images those are depends on all N. `progress` counts both passes
    /// and the classification between them.
    pub fn generate(
        &self,
        labels: &[usize],
        seed: u64,
        batch: usize,
        progress: Option<&indicatif::ProgressBar>,
    ) -> Result<Vec<f32>> {
        Ok(self.generate_selected(labels, seed, batch, progress)?.0)
    }

    /// [`Self::generate`], also returning the indices sampled again by selective guidance
    /// (ascending; empty without it).
    pub fn generate_selected(
        &self,
        labels: &[usize],
        seed: u64,
        batch: usize,
        progress: Option<&indicatif::ProgressBar>,
    ) -> Result<(Vec<f32>, Vec<usize>)> {
        let (model, schedule, spec) = (self.model, self.schedule, &self.spec);
        spec.validate(schedule.num_steps())?;
        model.check_labels(labels)?;
        if let Some(g) = self.guide {
            let io = |m: &UNet| (m.num_classes(), m.head.weight.dims()[1]);
            if io(g) != io(model) {
                return Err(Error::invalid(
                    "guidance.guide",
                    "the guide model must have the same classes and channels as the model",
                ));
            }
        }
        // A bad guidance setting fails here, before any batch (each batch builds its own).
        Guided::new(model, self.guide, schedule, &self.guidance)?;
        let all: Vec<usize> = (0..labels.len()).collect();
        let Some(sel) = self.selective else {
            let images = self.sample_rows(&all, labels, &self.guidance, seed, batch, progress)?;
            return Ok((images, Vec::new()));
        };
        sel.validate()?;
        if model.num_classes() < 2 {
            return Err(Error::invalid(
                "guidance.selective",
                "needs a class-conditional model with at least two classes (the model classifies its own samples)",
            ));
        }
        let base = sel.base(&self.guidance)?;
        let count = sel.count(labels.len());
        if let Some(pb) = progress {
            pb.inc_length((labels.len() + count) as u64);
        }
        let mut images = self.sample_rows(&all, labels, &base, seed, batch, progress)?;
        let margins = self.margins(&images, labels, seed, batch, progress)?;
        let flagged = least_sure(&margins, count);
        let again = self.sample_rows(&flagged, labels, &self.guidance, seed, batch, progress)?;
        let v = self.values_per_image();
        for (j, &i) in flagged.iter().enumerate() {
            images[i * v..(i + 1) * v].copy_from_slice(&again[j * v..(j + 1) * v]);
        }
        Ok((images, flagged))
    }

    fn values_per_image(&self) -> usize {
        let (c, h, w) = self.shape;
        c * h * w
    }

    /// `values` (whole images, row-major) as a `[rows, C, H, W]` tensor on the model's device.
    fn images_tensor(&self, values: Vec<f32>) -> Tensor<4> {
        let (c, h, w) = self.shape;
        let rows = values.len() / self.values_per_image();
        let device = self.model.head.weight.val().device();
        Tensor::from_data(TensorData::new(values, [rows, c, h, w]), &device)
    }

    /// The images `rows` (indices into `labels`) sampled with `guidance`, in batches of `batch`.
    fn sample_rows(
        &self,
        rows: &[usize],
        labels: &[usize],
        guidance: &GuidanceConfig,
        seed: u64,
        batch: usize,
        progress: Option<&indicatif::ProgressBar>,
    ) -> Result<Vec<f32>> {
        let v = self.values_per_image();
        let mut out = Vec::with_capacity(rows.len() * v);
        for chunk in rows.chunks(batch.max(1)) {
            // x_T and the sampler's noise per image, each from its own stream.
            let mut x = Vec::with_capacity(chunk.len() * v);
            for &i in chunk {
                x.extend(normal_vec(&mut seeded(seed, STREAM_X_T + i as u64), v));
            }
            let x_t = self.images_tensor(x);
            let rng = RowNoise(
                chunk
                    .iter()
                    .map(|&i| seeded(seed, STREAM_SAMPLER + i as u64))
                    .collect(),
            );
            let guided = Guided::new(self.model, self.guide, self.schedule, guidance)?;
            let chunk_labels: Vec<usize> = chunk.iter().map(|&i| labels[i]).collect();
            let mut extra = Extra::new(Some(&chunk_labels), rng);
            let x0 = sample(&guided, self.schedule, &self.spec, x_t, &mut extra)?;
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

    /// Each image's margin under the model as a classifier of its own samples
    /// ([`crate::sampling::selective`]; `images` as [`Self::generate`] returns them), with image
    /// i's noise from its own stream (so margins do not depend on the batch size).
    pub fn margins(
        &self,
        images: &[f32],
        labels: &[usize],
        seed: u64,
        batch: usize,
        progress: Option<&indicatif::ProgressBar>,
    ) -> Result<Vec<f64>> {
        let v = self.values_per_image();
        let ts = classifier_timesteps(self.schedule);
        let evals = ts.len() * CLASSIFIER_DRAWS;
        let mut margins = Vec::with_capacity(labels.len());
        for lo in (0..labels.len()).step_by(batch.max(1)) {
            let chunk = lo..(lo + batch.max(1)).min(labels.len());
            let x0 = self.images_tensor(images[chunk.start * v..chunk.end * v].to_vec());
            let noise: Vec<Vec<f32>> = chunk
                .clone()
                .map(|i| normal_vec(&mut seeded(seed, STREAM_CLASSIFIER + i as u64), evals * v))
                .collect();
            // Evaluation e of every image in the chunk: one ε tensor per (level, draw).
            let pairs: Vec<(usize, Tensor<4>)> = (0..evals)
                .map(|e| {
                    let rows: Vec<f32> = noise
                        .iter()
                        .flat_map(|n| n[e * v..(e + 1) * v].iter().copied())
                        .collect();
                    (ts[e / CLASSIFIER_DRAWS], self.images_tensor(rows))
                })
                .collect();
            let errors = class_errors(
                self.model,
                self.schedule,
                &x0,
                self.model.num_classes(),
                &pairs,
            )?;
            margins.extend(
                chunk
                    .clone()
                    .zip(&errors)
                    .map(|(i, e)| label_margin(e, labels[i])),
            );
            if let Some(pb) = progress {
                pb.inc(chunk.len() as u64);
            }
        }
        Ok(margins)
    }
}

/// Uniform labels over 1…K for `n` images, from `seed` (or all `class` when given); all 0 (no
/// class) for an unconditional model (K = 0).
pub fn draw_labels(n: usize, num_classes: usize, class: Option<usize>, seed: u64) -> Vec<usize> {
    match class {
        Some(c) => vec![c; n],
        None if num_classes == 0 => vec![0; n],
        None => uniform_ints(&mut seeded(seed, STREAM_LABELS), n, num_classes)
            .into_iter()
            .map(|l| l + 1)
            .collect(),
    }
}

/// The class index (1…K) of `name`, or an error listing the valid names.
pub fn class_index(name: &str, class_names: &[String]) -> Result<usize> {
    class_names
        .iter()
        .position(|c| c == name)
        .map(|i| i + 1)
        .ok_or_else(|| {
            Error::invalid(
                "sample.class",
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

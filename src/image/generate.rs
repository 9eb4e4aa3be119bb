//! Turning labels into images: the sampler over the guided UNet, in batches, with noise that
//! depends only on (seed, image index).
use burn::prelude::*;

use crate::nn::unet::{UNet, UNetConfig};
use crate::rng::{normal_vec, seeded, uniform_ints};
use crate::sampling::{sample, Extra, GuidanceConfig, Guided, SamplerKind, SamplerSpec};
use crate::schedule::NoiseSchedule;
use crate::{Error, Result};

/// (channels, height, width) of a network's images.
pub fn model_shape(cfg: &UNetConfig) -> (usize, usize, usize) {
    (cfg.in_channels, cfg.image_size, cfg.image_size)
}

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

    /// One image per label (values in [−1, 1], [N, C, H, W] row-major), in batches of `batch`.
    /// Image i's noise depends only on (seed, i), so results do not depend on the batch size.
    /// Each batch gets a fresh guidance wrapper (APG's momentum never crosses batches).
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
                    "guidance.guide",
                    "the guide model must have the same classes and channels as the model",
                ));
            }
        }
        // A bad guidance setting fails here, before any batch (each batch builds its own).
        Guided::new(model, self.guide, schedule, &self.guidance)?;
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
            let rng = seeded(seed, 0x2000_0000 + first as u64);
            let guided = Guided::new(model, self.guide, schedule, &self.guidance)?;
            let mut extra = Extra::new(Some(chunk), rng);
            let x0 = sample(&guided, schedule, spec, x_t, &mut extra)?;
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

/// Uniform labels over 1…K for `n` images, from `seed` (or all `class` when given); all 0 (no
/// class) for an unconditional model (K = 0).
pub fn draw_labels(n: usize, num_classes: usize, class: Option<usize>, seed: u64) -> Vec<usize> {
    match class {
        Some(c) => vec![c; n],
        None if num_classes == 0 => vec![0; n],
        None => uniform_ints(&mut seeded(seed, 0x3000_0000), n, num_classes)
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

//! `image invert`: DDIM inversion of real digits (encode to x_T with their labels, decode back)
//! for several step counts, and a grid decoding the slerp between two codes.
use std::path::Path;

use burn::prelude::*;

use super::{save_grid, ImageCheckpointMeta};
use crate::data::digits::load_digits;
use crate::files::{ensure_dir, write_json};
use crate::nn::unet::UNet;
use crate::rng::seeded;
use crate::sampling::{ddim_invert, sample, slerp, Extra, Guided, SamplerSpec};
use crate::schedule::NoiseSchedule;
use crate::{Error, Result};

/// The round trip at one step count.
#[derive(Debug, Clone, Copy)]
pub struct InversionRow {
    pub steps: usize,
    /// Mean |x − decode(encode(x))| over every pixel.
    pub mean_abs_error: f64,
}

/// Encodes the first `n` digits (at least 2) with DDIM-`s` for every `s` of `steps` and decodes
/// them back, conditionally and unguided; writes `inversion.json` and, for the last step count,
/// `interpolation.png` (8 decodings along the slerp between the first two codes, with the
/// first digit's label) to `out`. `on_row` sees each step count's result.
pub fn run(
    model: &UNet,
    meta: &ImageCheckpointMeta,
    steps: &[usize],
    n: usize,
    out: &Path,
    on_row: &mut dyn FnMut(&InversionRow),
) -> Result<Vec<InversionRow>> {
    let dev = model.head.weight.val().device();
    let schedule = NoiseSchedule::new(&meta.config.schedule)?;
    let data = load_digits(8)?;
    let n = n.clamp(2, data.len());
    let idx: Vec<usize> = (0..n).collect();
    let batch = data.gather(&idx);
    let labels = batch.labels.clone();
    let x0: Tensor<4> = batch.to_tensor(&dev);
    let cond = Guided::unguided(model, &schedule);
    ensure_dir(out)?;
    // Deterministic encoder and decoder: the generator is never drawn from.
    let mut extra = Extra::new(Some(&labels), seeded(0, 0));
    let mut rows = Vec::new();
    let mut last_code = None;
    for &s in steps {
        let spec = SamplerSpec {
            steps: s,
            ..Default::default()
        };
        let code = ddim_invert(&cond, x0.clone(), &spec.levels(&schedule)?, &mut extra);
        let back = sample(&cond, &schedule, &spec, code.clone(), &mut extra)?;
        let err = (back - x0.clone()).abs().mean().into_scalar::<f32>() as f64;
        let row = InversionRow {
            steps: s,
            mean_abs_error: err,
        };
        on_row(&row);
        rows.push(row);
        last_code = Some((code, spec));
    }
    if let Some((code, spec)) = last_code {
        let c = to_vec(code)?;
        let (a, b) = (&c[0..64], &c[64..128]);
        let path: Vec<f32> = (0..8).flat_map(|k| slerp(a, b, k as f64 / 7.0)).collect();
        let z: Tensor<4> = Tensor::from_data(TensorData::new(path, [8, 1, 8, 8]), &dev);
        let lab = vec![labels[0]; 8];
        let mut extra = Extra::new(Some(&lab), seeded(0, 0));
        let dec = to_vec(sample(&cond, &schedule, &spec, z, &mut extra)?)?;
        save_grid(&out.join("interpolation.png"), &dec, (1, 8, 8), 8)?;
    }
    let results: Vec<serde_json::Value> = rows
        .iter()
        .map(|r| serde_json::json!({"steps": r.steps, "mean_abs_error": r.mean_abs_error}))
        .collect();
    write_json(
        &out.join("inversion.json"),
        &serde_json::json!({"images": n, "results": results}),
    )?;
    Ok(rows)
}

fn to_vec(t: Tensor<4>) -> Result<Vec<f32>> {
    t.into_data()
        .try_to_vec::<f32>()
        .map_err(|e| Error::invalid("inversion", format!("{e:?}")))
}

//! `toy invert`: DDIM inversion of training points for several step counts (the mean
//! round-trip error), and a picture of the slerp between two far-apart codes, decoded.
use std::path::Path;

use burn::prelude::*;

use super::invert_round_trip;
use crate::files::{ensure_dir, write_json};
use crate::nn::simplenet::SimpleNet;
use crate::rng::seeded;
use crate::sampling::{sample, slerp, Extra, SamplerSpec, Spacing};
use crate::schedule::NoiseSchedule;
use crate::{Error, Result};

/// The round trip at one step count.
#[derive(Debug, Clone, Copy)]
pub struct InversionRow {
    pub steps: usize,
    /// Mean Euclidean distance between a point and its decoded code.
    pub mean_error: f64,
}

/// Inverts `points` (n × 2) with every step count of `steps`, writes `inversion.json` and
/// `interpolation.png` (33 decodings along the slerp between the codes of the first point and
/// of the middle one, at the largest step count) to `out`. `on_row` sees each result.
pub fn run(
    model: &SimpleNet,
    schedule: &NoiseSchedule,
    points: &[f32],
    (steps, spacing): (&[usize], Spacing),
    out: &Path,
    on_row: &mut dyn FnMut(&InversionRow),
) -> Result<Vec<InversionRow>> {
    ensure_dir(out)?;
    let n = points.len() / 2;
    let mut rows = Vec::new();
    for &s in steps {
        let (_, _, err) = invert_round_trip(model, schedule, points, s, spacing)?;
        let row = InversionRow {
            steps: s,
            mean_error: err,
        };
        on_row(&row);
        rows.push(row);
    }
    let s = *steps.iter().max().unwrap_or(&50);
    let (a, b) = (&points[0..2], &points[2 * (n / 2)..2 * (n / 2) + 2]);
    let (codes, _, _) = invert_round_trip(model, schedule, &[a, b].concat(), s, spacing)?;
    let path: Vec<f32> = (0..=32)
        .flat_map(|k| slerp(&codes[0..2], &codes[2..4], k as f64 / 32.0))
        .collect();
    let spec = SamplerSpec {
        steps: s,
        spacing,
        ..SamplerSpec::default()
    };
    let device = model.layers[0].fc.weight.val().device();
    let base = Tensor::<2>::from_data(TensorData::new(path, [33, 2]), &device);
    let decoded = sample(
        model,
        schedule,
        &spec,
        base,
        &mut Extra::new(None, seeded(0, 0)),
    )?;
    let decoded: Vec<f32> = decoded
        .into_data()
        .try_to_vec::<f32>()
        .map_err(|e| Error::invalid("inversion", format!("{e:?}")))?;
    crate::plot::scatter(
        &out.join("interpolation.png"),
        &format!("slerp between two DDIM-{s} codes, decoded"),
        points,
        &decoded,
    )?;
    let results: Vec<serde_json::Value> = rows
        .iter()
        .map(|r| serde_json::json!({"steps": r.steps, "mean_error": r.mean_error}))
        .collect();
    write_json(
        &out.join("inversion.json"),
        &serde_json::json!({"points": n, "spacing": spacing, "results": results}),
    )?;
    Ok(rows)
}

//! Sampling a trained 2D model: points from x_T ~ N(0, I), the q(x_t) strip, DDIM inversion.
use burn::prelude::*;

use super::stream;
use crate::nn::simplenet::SimpleNet;
use crate::rng::{normal_tensor, seeded};
use crate::sampling::{ddim_invert, sample, Extra, SamplerSpec, Spacing};
use crate::schedule::NoiseSchedule;
use crate::train::progress_bar;
use crate::{Error, Result};

/// Draws `n` points with the sampler of `spec`, starting from x_T ~ N(0, I) drawn from `seed`.
pub fn sample_points(
    model: &SimpleNet,
    schedule: &NoiseSchedule,
    spec: &SamplerSpec,
    n: usize,
    seed: u64,
    show_progress: bool,
) -> Result<Vec<f32>> {
    if n == 0 {
        return Err(Error::invalid("sample.n", "must be at least 1"));
    }
    let device = model.layers[0].fc.weight.val().device();
    let mut rng = seeded(seed, stream::SAMPLE);
    let x_t = normal_tensor(&mut rng, [n, 2], &device);
    let total = spec.nfe(schedule.num_steps()) as u64;
    let pb = if show_progress {
        progress_bar(total, &spec.label(schedule.num_steps()))
    } else {
        indicatif::ProgressBar::hidden()
    };
    let mut extra = Extra::new(None, &mut rng).with_progress(|i, _| {
        if i % 10 == 0 {
            pb.set_position(i as u64)
        }
    });
    // On the CPU the fused forward (no per-op dispatch) does the same arithmetic.
    let x = if device == Device::flex() {
        let fused = crate::nn::simplenet::fused::FusedDenoiser::new(model)?;
        sample(&fused, schedule, spec, x_t, &mut extra)?
    } else {
        sample(model, schedule, spec, x_t, &mut extra)?
    };
    pb.finish_and_clear();
    x.into_data()
        .try_to_vec::<f32>()
        .map_err(|e| Error::invalid("sampling", format!("{e:?}")))
}

/// q(x_t) for t = 0, 50, …, 450 on the first `n` training points, as plot panels.
pub fn q_strip(
    data: &[f32],
    schedule: &NoiseSchedule,
    n: usize,
    seed: u64,
    device: &Device,
) -> Vec<(String, Vec<f32>)> {
    let n = n.min(data.len() / 2);
    let x0: Tensor<2> = Tensor::from_data(TensorData::new(data[..2 * n].to_vec(), [n, 2]), device);
    let mut rng = seeded(seed, stream::PLOT);
    (0..10)
        .map(|k| k * 50)
        .filter(|&t| t < schedule.num_steps())
        .map(|t| {
            let noise = normal_tensor(&mut rng, [n, 2], device);
            let x = schedule.q_sample(x0.clone(), &vec![t; n], noise);
            (
                format!("t = {t}"),
                x.into_data().try_to_vec::<f32>().unwrap_or_default(),
            )
        })
        .collect()
}

/// DDIM inversion round trip of `points`: encode to x_T with `steps` steps, decode with DDIM
/// over the same timesteps. Returns (codes, reconstruction, mean Euclidean error per point).
pub fn invert_round_trip(
    model: &SimpleNet,
    schedule: &NoiseSchedule,
    points: &[f32],
    steps: usize,
    spacing: Spacing,
) -> Result<(Vec<f32>, Vec<f32>, f64)> {
    let device = model.layers[0].fc.weight.val().device();
    let n = points.len() / 2;
    let x0: Tensor<2> = Tensor::from_data(TensorData::new(points.to_vec(), [n, 2]), &device);
    let spec = SamplerSpec {
        steps,
        spacing,
        ..SamplerSpec::default()
    };
    // Deterministic encoder and decoder: the generator is never drawn from.
    let mut extra = Extra::new(None, seeded(0, 0));
    let code = ddim_invert(model, x0, &spec.levels(schedule)?, &mut extra);
    let rec = sample(model, schedule, &spec, code.clone(), &mut extra)?;
    let to_vec = |t: Tensor<2>| {
        t.into_data()
            .try_to_vec::<f32>()
            .map_err(|e| Error::invalid("inversion", format!("{e:?}")))
    };
    let (code, rec) = (to_vec(code)?, to_vec(rec)?);
    let err = points
        .chunks(2)
        .zip(rec.chunks(2))
        .map(|(a, b)| (((a[0] - b[0]) as f64).powi(2) + ((a[1] - b[1]) as f64).powi(2)).sqrt())
        .sum::<f64>()
        / n as f64;
    Ok((code, rec, err))
}

//! Euler and Heun (Karras et al. 2022, Algorithms 1–2) on the probability-flow ODE of the VP
//! process, written in the scaled variable x̃ = x/√ᾱ with σ = √((1−ᾱ)/ᾱ), where the ODE is
//! dx̃/dσ = ε_θ. Euler in these variables is exactly deterministic DDIM; Heun adds a corrector
//! (two network evaluations per step, one on the last step to σ = 0).
use burn::prelude::*;

use super::{timesteps, Denoiser, Progress, Spacing};
use crate::schedule::NoiseSchedule;
use crate::Result;

fn sigma(ab: f64) -> f64 {
    ((1.0 - ab) / ab).sqrt()
}

/// Runs Euler (`heun = false`) or Heun from x_T over `steps` timesteps of `spacing`.
pub fn euler_sample<const D: usize, M: Denoiser<D> + ?Sized>(
    model: &M,
    s: &NoiseSchedule,
    steps: usize,
    spacing: Spacing,
    heun: bool,
    mut x: Tensor<D>,
    labels: Option<&[usize]>,
    progress: Progress,
) -> Result<Tensor<D>> {
    let ts = timesteps(spacing, s.num_steps(), steps)?;
    for (i, &t) in ts.iter().enumerate() {
        let ab = s.alpha_bar(t);
        let t_next = ts.get(i + 1).copied();
        let ab_n = s.alpha_bar_at(t_next);
        let (sg, sg_n) = (sigma(ab), if t_next.is_some() { sigma(ab_n) } else { 0.0 });
        let xs = x.clone() / ab.sqrt();
        let d = model.eps(x, t, labels);
        let mut xs_n = xs.clone() + d.clone() * (sg_n - sg);
        if heun {
            if let Some(tn) = t_next {
                let d2 = model.eps(xs_n.clone() * ab_n.sqrt(), tn, labels);
                xs_n = xs + (d + d2) * (0.5 * (sg_n - sg));
            }
        }
        x = xs_n * ab_n.sqrt();
        progress(i + 1, ts.len());
    }
    Ok(x)
}

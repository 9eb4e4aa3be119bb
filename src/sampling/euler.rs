//! Euler and Heun (Karras et al. 2022, Algorithms 1–2) on the probability-flow ODE of the VP
//! process, written in the scaled variable x̃ = x/√ᾱ with σ = √((1−ᾱ)/ᾱ), where the ODE is
//! dx̃/dσ = ε_θ. Euler in these variables is exactly deterministic DDIM; Heun adds a corrector
//! (two network evaluations per step, one on the last step to σ = 0).
use burn::prelude::*;

use super::{Denoiser, Level, Progress};

fn sigma(ab: f64) -> f64 {
    ((1.0 - ab) / ab).sqrt()
}

/// Runs Euler (`heun = false`) or Heun from x_T over `levels` (descending; the last step goes
/// to σ = 0).
pub fn euler_sample<const D: usize, M: Denoiser<D> + ?Sized>(
    model: &M,
    levels: &[Level],
    mut x: Tensor<D>,
    labels: Option<&[usize]>,
    heun: bool,
    progress: Progress,
) -> Tensor<D> {
    for (i, l) in levels.iter().enumerate() {
        let ab = l.alpha_bar;
        let next = levels.get(i + 1);
        let ab_n = next.map_or(1.0, |n| n.alpha_bar);
        let (sg, sg_n) = (sigma(ab), if next.is_some() { sigma(ab_n) } else { 0.0 });
        let xs = x.clone() / ab.sqrt();
        let d = model.eps(x, l.t, labels);
        let mut xs_n = xs.clone() + d.clone() * (sg_n - sg);
        if heun {
            if let Some(n) = next {
                let d2 = model.eps(xs_n.clone() * ab_n.sqrt(), n.t, labels);
                xs_n = xs + (d + d2) * (0.5 * (sg_n - sg));
            }
        }
        x = xs_n * ab_n.sqrt();
        progress(i + 1, levels.len());
    }
    x
}

//! Euler (Karras et al. 2022, Algorithm 1 without churn) on the probability-flow ODE of the VP
//! process, written in the scaled variable x̃ = x/√ᾱ with σ = √((1−ᾱ)/ᾱ), where the ODE is
//! dx̃/dσ = ε_θ. Euler in these variables is exactly deterministic DDIM.
use crate::rng::NoiseSource;
use burn::prelude::*;

use super::{Denoiser, Extra, Level};

/// Euler has no settings of its own; the struct keeps the one sampler signature.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct EulerOptions;

/// σ = √((1−ᾱ)/ᾱ), the EDM noise level of a VP level.
pub(super) fn edm_sigma(ab: f64) -> f64 {
    ((1.0 - ab) / ab).sqrt()
}

/// (ᾱ, σ) of the level after `i`: ᾱ = 1 and σ = 0 after the last.
pub(super) fn next_level(levels: &[Level], i: usize) -> (Option<&Level>, f64, f64) {
    let next = levels.get(i + 1);
    let ab_n = next.map_or(1.0, |n| n.alpha_bar);
    let sg_n = if next.is_some() { edm_sigma(ab_n) } else { 0.0 };
    (next, ab_n, sg_n)
}

/// Runs Euler from x_T over `levels` (descending; the last step goes to σ = 0).
/// Deterministic: `extra.rng` is not used.
pub fn euler_sample<const D: usize, M: Denoiser<D> + ?Sized, R: NoiseSource>(
    model: &M,
    mut x: Tensor<D>,
    levels: &[Level],
    _opts: &EulerOptions,
    extra: &mut Extra<R>,
) -> Tensor<D> {
    for (i, l) in levels.iter().enumerate() {
        let ab = l.alpha_bar;
        let (_, ab_n, sg_n) = next_level(levels, i);
        let sg = edm_sigma(ab);
        let xs = x.clone() / ab.sqrt();
        let d = model.eps(x, l.t, extra.labels);
        let xs_n = xs + d * (sg_n - sg);
        x = xs_n * ab_n.sqrt();
        (extra.progress)(i + 1, levels.len());
    }
    x
}

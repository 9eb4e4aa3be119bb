//! Heun (Karras et al. 2022, Algorithm 1 without churn, second order) on the probability-flow
//! ODE in the variables of [`super::euler`]: an Euler predictor, then the trapezoidal
//! corrector with ε at the predicted point. Two network evaluations per step, one on the last
//! step to σ = 0 (where the corrector is skipped, as in the paper).
use crate::rng::NoiseSource;
use burn::prelude::*;

use super::euler::{edm_sigma, next_level};
use super::{Denoiser, Extra, Level};

/// Heun has no settings of its own; the struct keeps the one sampler signature.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct HeunOptions;

/// Runs Heun from x_T over `levels` (descending; the last step goes to σ = 0).
/// Deterministic: `extra.rng` is not used.
pub fn heun_sample<const D: usize, M: Denoiser<D> + ?Sized, R: NoiseSource>(
    model: &M,
    mut x: Tensor<D>,
    levels: &[Level],
    _opts: &HeunOptions,
    extra: &mut Extra<R>,
) -> Tensor<D> {
    for (i, l) in levels.iter().enumerate() {
        let ab = l.alpha_bar;
        let (next, ab_n, sg_n) = next_level(levels, i);
        let sg = edm_sigma(ab);
        let xs = x.clone() / ab.sqrt();
        let d = model.eps(x, l.t, extra.labels);
        let mut xs_n = xs.clone() + d.clone() * (sg_n - sg);
        if let Some(n) = next {
            let d2 = model.eps(xs_n.clone() * ab_n.sqrt(), n.t, extra.labels);
            xs_n = xs + (d + d2) * (0.5 * (sg_n - sg));
        }
        x = xs_n * ab_n.sqrt();
        (extra.progress)(i + 1, levels.len());
    }
    x
}

//! DDIM inversion (Song et al. 2021 §4.3; Mokady et al. 2023): the deterministic encoder
//! x₀ → x_T that runs the η = 0 DDIM update upwards over the same timestep array, so that DDIM
//! sampling from the code returns (approximately) the input. Each step from level t to the next
//! level t' uses ε_θ(x_t, t): x_t' = √ᾱ_t' x̂₀ + √(1−ᾱ_t') ε. The first step starts from the
//! data (ᾱ = 1) and evaluates the network at the first timestep. [`slerp`] interpolates
//! between two codes.
use crate::rng::NoiseSource;
use burn::prelude::*;

use super::{Denoiser, Extra, Level};

/// Encodes data `x0` to x_T over `levels` given in sampling order (descending, as DDIM would
/// decode them); the encoder walks them upwards. The samplers' signature; deterministic.
pub fn ddim_invert<const D: usize, M: Denoiser<D> + ?Sized, R: NoiseSource>(
    model: &M,
    x0: Tensor<D>,
    levels: &[Level],
    extra: &mut Extra<R>,
) -> Tensor<D> {
    let up: Vec<Level> = levels.iter().rev().copied().collect();
    let mut x = x0;
    let mut cur: Option<Level> = None;
    for (i, next) in up.iter().enumerate() {
        let t_eval = cur.map_or(up[0].t, |c| c.t);
        let ab = cur.map_or(1.0, |c| c.alpha_bar);
        let ab_n = next.alpha_bar;
        let eps = model.eps(x.clone(), t_eval, extra.labels);
        let x0_hat = (x - eps.clone() * (1.0 - ab).sqrt()) / ab.sqrt();
        x = x0_hat * ab_n.sqrt() + eps * (1.0 - ab_n).sqrt();
        cur = Some(*next);
        (extra.progress)(i + 1, up.len());
    }
    x
}
/// Spherical interpolation between two codes (the right path for Gaussian latents, which
/// concentrate near a sphere: a straight line between two would pass through unlikely,
/// low-norm codes).
pub fn slerp(a: &[f32], b: &[f32], u: f64) -> Vec<f32> {
    let dot: f64 = a.iter().zip(b).map(|(x, y)| *x as f64 * *y as f64).sum();
    let na = a.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
    let nb = b.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
    let omega = (dot / (na * nb)).clamp(-1.0, 1.0).acos();
    if omega.abs() < 1e-6 {
        return a
            .iter()
            .zip(b)
            .map(|(x, y)| ((1.0 - u) * *x as f64 + u * *y as f64) as f32)
            .collect();
    }
    let (ca, cb) = (
        ((1.0 - u) * omega).sin() / omega.sin(),
        (u * omega).sin() / omega.sin(),
    );
    a.iter()
        .zip(b)
        .map(|(x, y)| (ca * *x as f64 + cb * *y as f64) as f32)
        .collect()
}

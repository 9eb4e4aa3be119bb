//! DDIM inversion (Song et al. 2021 §4.3; Mokady et al. 2023): the deterministic encoder
//! x₀ → x_T that runs the η = 0 DDIM update upwards over the same timestep array, so that DDIM
//! sampling from the code returns (approximately) the input. Each step from level t to the next
//! level t' uses ε_θ(x_t, t): x_t' = √ᾱ_t' x̂₀ + √(1−ᾱ_t') ε. The first step starts from the
//! data (ᾱ = 1) and evaluates the network at the first timestep.
use burn::prelude::*;

use super::{timesteps, Denoiser, Progress, Spacing};
use crate::schedule::NoiseSchedule;
use crate::Result;

/// Encodes data `x0` to x_T with `steps` DDIM steps of `spacing`.
pub fn ddim_invert<const D: usize, M: Denoiser<D> + ?Sized>(
    model: &M,
    s: &NoiseSchedule,
    steps: usize,
    spacing: Spacing,
    x0: Tensor<D>,
    labels: Option<&[usize]>,
    progress: Progress,
) -> Result<Tensor<D>> {
    let mut ts = timesteps(spacing, s.num_steps(), steps)?;
    ts.reverse();
    let mut x = x0;
    let mut cur: Option<usize> = None;
    for (i, &t_next) in ts.iter().enumerate() {
        let t_eval = cur.unwrap_or(ts[0]);
        let ab = s.alpha_bar_at(cur);
        let ab_n = s.alpha_bar(t_next);
        let eps = model.eps(x.clone(), t_eval, labels);
        let x0_hat = (x - eps.clone() * (1.0 - ab).sqrt()) / ab.sqrt();
        x = x0_hat * ab_n.sqrt() + eps * (1.0 - ab_n).sqrt();
        cur = Some(t_next);
        progress(i + 1, ts.len());
    }
    Ok(x)
}

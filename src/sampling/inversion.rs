//! DDIM inversion (Song et al. 2021 §4.3; Mokady et al. 2023): the deterministic encoder
//! x₀ → x_T that runs the η = 0 DDIM update upwards over the same timestep array, so that DDIM
//! sampling from the code returns (approximately) the input. Each step from level t to the next
//! level t' uses ε_θ(x_t, t): x_t' = √ᾱ_t' x̂₀ + √(1−ᾱ_t') ε. The first step starts from the
//! data (ᾱ = 1) and evaluates the network at the first timestep.
use burn::prelude::*;

use super::{Denoiser, Level, Progress};

/// Encodes data `x0` to x_T over `levels` given in sampling order (descending, as DDIM would
/// decode them); the encoder walks them upwards.
pub fn ddim_invert<const D: usize, M: Denoiser<D> + ?Sized>(
    model: &M,
    levels: &[Level],
    x0: Tensor<D>,
    labels: Option<&[usize]>,
    progress: Progress,
) -> Tensor<D> {
    let up: Vec<Level> = levels.iter().rev().copied().collect();
    let mut x = x0;
    let mut cur: Option<Level> = None;
    for (i, next) in up.iter().enumerate() {
        let t_eval = cur.map_or(up[0].t, |c| c.t);
        let ab = cur.map_or(1.0, |c| c.alpha_bar);
        let ab_n = next.alpha_bar;
        let eps = model.eps(x.clone(), t_eval, labels);
        let x0_hat = (x - eps.clone() * (1.0 - ab).sqrt()) / ab.sqrt();
        x = x0_hat * ab_n.sqrt() + eps * (1.0 - ab_n).sqrt();
        cur = Some(*next);
        progress(i + 1, up.len());
    }
    x
}

//! DPM-Solver++(2M) (Lu et al. 2022, "DPM-Solver++", Algorithm 2): a second-order multistep
//! solver of the diffusion ODE in data-prediction form, one network evaluation per step.
//!
//! With α_t = √ᾱ_t, σ_t = √(1−ᾱ_t), λ_t = log(α_t/σ_t) and h = λ_next − λ_t:
//! x_next = (σ_next/σ_t) x_t − α_next (e^{−h} − 1) D, where D = x̂₀ on the first step and
//! D = (1 + 1/(2r)) x̂₀ − 1/(2r) x̂₀_prev afterwards (r = h_prev/h). The final step to ᾱ = 1
//! returns x̂₀ (first order, "lower_order_final").
use crate::rng::NoiseSource;
use burn::prelude::*;

use super::{Denoiser, Extra, Level};

/// DPM-Solver++(2M)'s settings.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct DpmSolverOptions {
    /// Clip each x̂₀ to [−1, 1] (images only).
    pub clip_x0: bool,
}

fn lambda(ab: f64) -> f64 {
    0.5 * (ab / (1.0 - ab)).ln()
}

/// Runs DPM-Solver++(2M) from x_T over `levels` (descending); the last step returns x̂₀.
/// Deterministic: `extra.rng` is not used.
pub fn dpm_solver_2m_sample<const D: usize, M: Denoiser<D> + ?Sized, R: NoiseSource>(
    model: &M,
    mut x: Tensor<D>,
    levels: &[Level],
    opts: &DpmSolverOptions,
    extra: &mut Extra<R>,
) -> Tensor<D> {
    let mut prev: Option<(Tensor<D>, f64)> = None; // (x̂₀ of the previous step, its h)
    for (i, l) in levels.iter().enumerate() {
        let ab = l.alpha_bar;
        let (a_t, s_t) = (ab.sqrt(), (1.0 - ab).sqrt());
        let eps = model.eps(x.clone(), l.t, extra.labels);
        let mut x0 = (x.clone() - eps * s_t) / a_t;
        if opts.clip_x0 {
            x0 = x0.clamp(-1.0, 1.0);
        }
        let Some(next) = levels.get(i + 1) else {
            (extra.progress)(i + 1, levels.len());
            return x0;
        };
        let ab_n = next.alpha_bar;
        let (a_n, s_n) = (ab_n.sqrt(), (1.0 - ab_n).sqrt());
        let h = lambda(ab_n) - lambda(ab);
        let d = match &prev {
            None => x0.clone(),
            Some((x0_prev, h_prev)) => {
                let r = h_prev / h;
                x0.clone() * (1.0 + 0.5 / r) - x0_prev.clone() * (0.5 / r)
            }
        };
        x = x * (s_n / s_t) - d * (a_n * ((-h).exp() - 1.0));
        prev = Some((x0, h));
        (extra.progress)(i + 1, levels.len());
    }
    x
}

//! Which noise levels a sampler visits: timestep subsequences (the three spacings of Lin et
//! al. 2023, Table 2, and a quadratic one) and their levels under a schedule. Samplers never
//! look the schedule up themselves (k-diffusion builds its σ array outside the samplers too).
use serde::{Deserialize, Serialize};

use crate::schedule::NoiseSchedule;
use crate::{Error, Result};

/// One sampling timestep with its schedule values: what the samplers iterate over, the
/// analogue of k-diffusion's array of σ.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Level {
    /// The network's timestep.
    pub t: usize,
    /// ᾱ_t.
    pub alpha_bar: f64,
    /// The schedule's one-step β_t (α_t = 1 − β_t), used by DDPM's ancestral chain, which
    /// walks every timestep.
    pub beta: f64,
}

/// The levels of the timesteps `ts` (in the order given) under `schedule`.
pub fn levels(schedule: &NoiseSchedule, ts: &[usize]) -> Vec<Level> {
    ts.iter()
        .map(|&t| Level {
            t,
            alpha_bar: schedule.alpha_bar(t),
            beta: schedule.betas[t],
        })
        .collect()
}

/// Every timestep T−1 … 0: the levels of DDPM's ancestral chain.
pub fn all_levels(schedule: &NoiseSchedule) -> Vec<Level> {
    let ts: Vec<usize> = (0..schedule.num_steps()).rev().collect();
    levels(schedule, &ts)
}

/// How N sampling timesteps are chosen out of T.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
#[serde(rename_all = "lowercase")]
pub enum Spacing {
    /// k·(T//N) for k = N−1 … 0 (the reference: 980, 960, …, 0 for N = 50); never visits T−1.
    #[default]
    Leading,
    /// round(T − k·T/N) − 1 for k = 0 … N−1: starts at T−1.
    Trailing,
    /// round(linspace(0, T−1, N)), descending.
    Linspace,
    /// round((k/(N−1))² (T−1)), kept strictly increasing: dense near t = 0, where few-step
    /// samplers make most of their error (the "quadratic" selection of Song et al. 2021, §D.2).
    Quadratic,
}

/// The N timesteps of `spacing`, in the descending order a sampler visits them.
/// Errors when N is 0 or larger than T.
pub fn timesteps(spacing: Spacing, num_train: usize, n: usize) -> Result<Vec<usize>> {
    if n == 0 || n > num_train {
        return Err(Error::invalid(
            "sampler.steps",
            format!("must be between 1 and T = {num_train}, got {n}"),
        ));
    }
    let ts: Vec<usize> = match spacing {
        Spacing::Leading => {
            let ratio = num_train / n;
            (0..n).rev().map(|k| k * ratio).collect()
        }
        Spacing::Trailing => {
            let ratio = num_train as f64 / n as f64;
            (0..n)
                .map(|k| (num_train as f64 - k as f64 * ratio).round_ties_even() as usize - 1)
                .collect()
        }
        Spacing::Linspace => {
            let last = (num_train - 1) as f64;
            let step = if n > 1 { last / (n - 1) as f64 } else { 0.0 };
            (0..n)
                .rev()
                .map(|k| (k as f64 * step).round_ties_even() as usize)
                .collect()
        }
        Spacing::Quadratic => {
            let last = (num_train - 1) as f64;
            let mut asc: Vec<usize> = Vec::with_capacity(n);
            for k in 0..n {
                let u = if n > 1 {
                    k as f64 / (n - 1) as f64
                } else {
                    0.0
                };
                let t = (u * u * last).round() as usize;
                asc.push(match asc.last() {
                    Some(&p) if t <= p => p + 1,
                    _ => t,
                });
            }
            // Pushing duplicates up can overshoot T−1 only when N is close to T: pull back down.
            for k in (0..n).rev() {
                let cap = num_train - (n - k);
                if asc[k] > cap {
                    asc[k] = cap;
                }
            }
            asc.into_iter().rev().collect()
        }
    };
    Ok(ts)
}

//! Variance schedules and the forward process (Ho et al. 2020, §2), kept in f64 tables.
//!
//! Index convention: timesteps are 0-based, t ∈ {0 … T−1}; `alpha_bar(t)` is ᾱ_t = ∏_{s≤t} α_s.
use burn::prelude::*;
use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// How β grows over the T steps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
#[serde(rename_all = "lowercase")]
pub enum BetaSchedule {
    /// β_t = linspace(β₁, β_T, T) (the reference default).
    #[default]
    Linear,
    /// β_t = linspace(√β₁, √β_T, T)².
    Quad,
    /// ᾱ(τ) = cos²((τ + s)/(1 + s) · π/2), s = 0.008, β_t = min(1 − ᾱ((t+1)/T)/ᾱ(t/T), 0.999)
    /// (Nichol & Dhariwal 2021, eq. 17; diffusers' `squaredcos_cap_v2`). β₁ and β_T are not
    /// used. The linear schedule reaches pure noise early and spends its last steps there;
    /// this one spends them at the higher signal-to-noise ratios small images need.
    Cosine,
}

/// Schedule settings; `Default` is the reference protocol (T = 1000, linear 1e-4 … 0.02).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScheduleConfig {
    /// Number of diffusion steps T.
    pub num_steps: usize,
    /// β at the first step.
    pub beta_start: f64,
    /// β at the last step.
    pub beta_end: f64,
    /// Shape of the β curve.
    pub kind: BetaSchedule,
}

impl Default for ScheduleConfig {
    fn default() -> Self {
        Self {
            num_steps: 1000,
            beta_start: 1e-4,
            beta_end: 0.02,
            kind: BetaSchedule::Linear,
        }
    }
}

/// Which σ_t the DDPM ancestral step uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
#[serde(rename_all = "lowercase")]
pub enum SigmaKind {
    /// σ_t² = β̃_t = β_t (1−ᾱ_{t−1})/(1−ᾱ_t), the posterior variance (reference default).
    #[default]
    Small,
    /// σ_t² = β_t.
    Large,
}

/// Precomputed f64 tables of a schedule.
#[derive(Debug, Clone)]
pub struct NoiseSchedule {
    pub betas: Vec<f64>,
    pub alphas: Vec<f64>,
    pub alphas_cumprod: Vec<f64>,
}

/// numpy-style linspace: `n` points, first = a, last = b exactly.
fn linspace(a: f64, b: f64, n: usize) -> Vec<f64> {
    if n == 1 {
        return vec![a];
    }
    let step = (b - a) / (n - 1) as f64;
    (0..n)
        .map(|i| if i == n - 1 { b } else { a + step * i as f64 })
        .collect()
}

impl NoiseSchedule {
    pub fn new(cfg: &ScheduleConfig) -> Result<Self> {
        if cfg.num_steps < 2 {
            return Err(Error::invalid(
                "num_steps",
                format!("need at least 2 diffusion steps, got {}", cfg.num_steps),
            ));
        }
        let ok = |b: f64| b > 0.0 && b < 1.0;
        if !ok(cfg.beta_start) || !ok(cfg.beta_end) || cfg.beta_start > cfg.beta_end {
            return Err(Error::invalid(
                "beta",
                format!(
                    "need 0 < beta_start ≤ beta_end < 1, got {} and {}",
                    cfg.beta_start, cfg.beta_end
                ),
            ));
        }
        let betas = match cfg.kind {
            BetaSchedule::Linear => linspace(cfg.beta_start, cfg.beta_end, cfg.num_steps),
            BetaSchedule::Quad => {
                linspace(cfg.beta_start.sqrt(), cfg.beta_end.sqrt(), cfg.num_steps)
                    .into_iter()
                    .map(|b| b * b)
                    .collect()
            }
            BetaSchedule::Cosine => {
                let f = |tau: f64| {
                    ((tau + 0.008) / 1.008 * std::f64::consts::FRAC_PI_2)
                        .cos()
                        .powi(2)
                };
                let n = cfg.num_steps as f64;
                (0..cfg.num_steps)
                    .map(|i| (1.0 - f((i + 1) as f64 / n) / f(i as f64 / n)).min(0.999))
                    .collect()
            }
        };
        let alphas: Vec<f64> = betas.iter().map(|b| 1.0 - b).collect();
        let mut alphas_cumprod = Vec::with_capacity(alphas.len());
        let mut acc = 1.0;
        for a in &alphas {
            acc *= a;
            alphas_cumprod.push(acc);
        }
        Ok(Self {
            betas,
            alphas,
            alphas_cumprod,
        })
    }

    /// T, the number of diffusion steps.
    pub fn num_steps(&self) -> usize {
        self.betas.len()
    }

    /// ᾱ_t.
    pub fn alpha_bar(&self, t: usize) -> f64 {
        self.alphas_cumprod[t]
    }

    /// ᾱ at an optional previous timestep; `None` (before t = 0) is ᾱ = 1.
    pub fn alpha_bar_at(&self, t: Option<usize>) -> f64 {
        t.map_or(1.0, |t| self.alphas_cumprod[t])
    }

    /// σ_t of the DDPM ancestral step (σ_0 = 0 for "small" because ᾱ_{−1} = 1).
    pub fn sigma(&self, t: usize, kind: SigmaKind) -> f64 {
        match kind {
            SigmaKind::Large => self.betas[t].sqrt(),
            SigmaKind::Small => {
                let ab_prev = self.alpha_bar_at(t.checked_sub(1));
                (self.betas[t] * (1.0 - ab_prev) / (1.0 - self.alphas_cumprod[t])).sqrt()
            }
        }
    }

    /// Checks that `t` is a valid timestep.
    pub fn check_t(&self, t: usize) -> Result<()> {
        if t >= self.num_steps() {
            return Err(Error::invalid(
                "t",
                format!("timestep {t} out of range 0..{}", self.num_steps()),
            ));
        }
        Ok(())
    }

    /// q(x_t | x_0) sample (Ho et al. eq. 4): √ᾱ_t x₀ + √(1−ᾱ_t) ε, with one t per batch row.
    pub fn q_sample<const D: usize>(
        &self,
        x0: Tensor<D>,
        t: &[usize],
        noise: Tensor<D>,
    ) -> Tensor<D> {
        let device = x0.device();
        let a: Vec<f32> = t.iter().map(|&t| self.alpha_bar(t).sqrt() as f32).collect();
        let s: Vec<f32> = t
            .iter()
            .map(|&t| (1.0 - self.alpha_bar(t)).sqrt() as f32)
            .collect();
        x0 * row_scale::<D>(a, &device) + noise * row_scale::<D>(s, &device)
    }
}

/// A [B, 1, …, 1] tensor holding one value per batch row, for broadcasting.
pub fn row_scale<const D: usize>(values: Vec<f32>, device: &Device) -> Tensor<D> {
    let mut shape = [1usize; D];
    shape[0] = values.len();
    Tensor::from_data(TensorData::new(values, shape), device)
}

/// The ε-prediction loss L_simple (Ho et al. eq. 14): mean over all elements of (ε − ε_θ)².
pub fn eps_mse<const D: usize>(eps: Tensor<D>, eps_pred: Tensor<D>) -> Tensor<1> {
    (eps_pred - eps).square().mean()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cosine_schedule_is_diffusers_squaredcos_cap_v2() {
        // diffusers 0.42.1: DDPMScheduler(num_train_timesteps=1000,
        // beta_schedule="squaredcos_cap_v2"); its tables are float32.
        let s = NoiseSchedule::new(&ScheduleConfig {
            kind: BetaSchedule::Cosine,
            ..ScheduleConfig::default()
        })
        .unwrap();
        let golden = [
            (0, 4.128422369831242e-05, 0.9999586939811707),
            (1, 4.614175122696906e-05, 0.9999125599861145),
            (500, 0.003155691549181938, 0.4922850430011749),
            (998, 0.7499994039535522, 2.428766265438753e-06),
            (999, 0.9990000128746033, 2.4287349909002387e-09),
        ];
        for (t, beta, alpha_bar) in golden {
            let rel = |a: f64, b: f64| (a - b).abs() / b;
            // f32 rounding of each factor, accumulated over up to 1000 products.
            assert!(
                rel(s.betas[t], beta) < 1e-6,
                "β_{t} {} vs {beta}",
                s.betas[t]
            );
            assert!(
                rel(s.alpha_bar(t), alpha_bar) < 1e-4,
                "ᾱ_{t} {} vs {alpha_bar}",
                s.alpha_bar(t)
            );
        }
    }
}

//! The training objective of the ε-prediction network: which timesteps a batch trains on and
//! how much each one's error counts. `Default` is the reference (Ho et al. 2020, Algorithm 1:
//! t uniform, every error weighted 1, L_simple); the other choices are levers of the image
//! recipe study (`image study`, BENCHMARKS.md).
use burn::prelude::*;
use rand::Rng;
use serde::{Deserialize, Serialize};

use crate::rng::{normal_vec, uniform_ints};
use crate::schedule::{row_scale, NoiseSchedule};
use crate::{Error, Result};

/// How the training timesteps are drawn.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
pub enum TimestepSampling {
    /// t uniform on {0 … T−1} (the reference).
    #[default]
    Uniform,
    /// ln σ ~ N(mean, std²) with σ_t = √((1−ᾱ_t)/ᾱ_t), each draw taken to the timestep whose
    /// ln σ_t is nearest (Karras et al. 2022, EDM, Table 1: P_mean = −1.2, P_std = 1.2).
    /// Concentrates training on the middle noise levels, where the loss can still fall. EDM
    /// pairs it with a preconditioned network whose output at high σ is mostly a skip
    /// connection; an ε-prediction UNet must learn those levels, and with EDM's values it
    /// hardly sees them: on the digits its samples fail (BENCHMARKS.md, image recipe).
    LogNormal { mean: f64, std: f64 },
}

impl TimestepSampling {
    /// EDM's (P_mean, P_std), the defaults of `--timesteps log-normal`.
    pub const EDM: (f64, f64) = (-1.2, 1.2);
}

/// How each image's squared error is weighted.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
pub enum LossWeighting {
    /// Every error weighted 1 (L_simple, the reference).
    #[default]
    Uniform,
    /// Min-SNR-γ (Hang et al. 2023, eq. 8 for ε-prediction): w_t = min(SNR_t, γ) / SNR_t with
    /// SNR_t = ᾱ_t/(1−ᾱ_t). Lowers the weight of the nearly clean timesteps, whose gradients
    /// conflict with the noisier ones; the paper's γ = 5.
    MinSnr { gamma: f64 },
}

/// The training objective: timestep sampling and loss weighting.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Objective {
    pub timesteps: TimestepSampling,
    pub weighting: LossWeighting,
}

impl Objective {
    /// Whether this is the reference objective (left out of saved configs, so the configs and
    /// hashes of runs saved before the field existed are unchanged).
    pub fn is_reference(&self) -> bool {
        *self == Self::default()
    }

    pub fn validate(&self) -> Result<()> {
        if let TimestepSampling::LogNormal { mean, std } = self.timesteps {
            if !(mean.is_finite() && std.is_finite() && std > 0.0) {
                return Err(Error::invalid(
                    "train.objective.timesteps",
                    format!("log-normal needs a finite mean and std > 0, got {mean} and {std}"),
                ));
            }
        }
        if let LossWeighting::MinSnr { gamma } = self.weighting {
            if !(gamma.is_finite() && gamma > 0.0) {
                return Err(Error::invalid(
                    "train.objective.weighting",
                    format!("min-snr needs γ > 0, got {gamma}"),
                ));
            }
        }
        Ok(())
    }

    /// `b` training timesteps from `rng`. The uniform draw is the one the reference runs always
    /// made, so their batches are unchanged.
    pub fn draw_timesteps(
        &self,
        rng: &mut impl Rng,
        b: usize,
        schedule: &NoiseSchedule,
    ) -> Vec<usize> {
        match self.timesteps {
            TimestepSampling::Uniform => uniform_ints(rng, b, schedule.num_steps()),
            TimestepSampling::LogNormal { mean, std } => {
                let ln_sigma: Vec<f64> = (0..schedule.num_steps())
                    .map(|t| log_sigma(schedule.alpha_bar(t)))
                    .collect();
                normal_vec(rng, b)
                    .into_iter()
                    .map(|z| nearest(&ln_sigma, mean + std * z as f64))
                    .collect()
            }
        }
    }

    /// The weight of each timestep's error; None when all are 1.
    pub fn weights(&self, schedule: &NoiseSchedule, t: &[usize]) -> Option<Vec<f32>> {
        match self.weighting {
            LossWeighting::Uniform => None,
            LossWeighting::MinSnr { gamma } => Some(
                t.iter()
                    .map(|&t| {
                        let ab = schedule.alpha_bar(t);
                        let snr = ab / (1.0 - ab);
                        (snr.min(gamma) / snr) as f32
                    })
                    .collect(),
            ),
        }
    }

    /// The loss: the mean over images of weight × mean squared error of the image (with
    /// weights 1: L_simple, Ho et al. eq. 14, the mean over all elements).
    pub fn loss<const D: usize>(
        &self,
        schedule: &NoiseSchedule,
        t: &[usize],
        eps: Tensor<D>,
        eps_pred: Tensor<D>,
    ) -> Tensor<1> {
        let sq = (eps_pred - eps).square();
        match self.weights(schedule, t) {
            None => sq.mean(),
            Some(w) => {
                let device = sq.device();
                (sq * row_scale::<D>(w, &device)).mean()
            }
        }
    }
}

/// ln σ for ᾱ: σ = √((1−ᾱ)/ᾱ), the noise level of the variance-exploding view of x_t/√ᾱ.
fn log_sigma(alpha_bar: f64) -> f64 {
    0.5 * ((1.0 - alpha_bar) / alpha_bar).ln()
}

/// The index of the value of the increasing `table` nearest to `v` (ties to the lower one).
fn nearest(table: &[f64], v: f64) -> usize {
    let i = table.partition_point(|&x| x < v);
    if i == 0 {
        0
    } else if i == table.len() {
        table.len() - 1
    } else if v - table[i - 1] <= table[i] - v {
        i - 1
    } else {
        i
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::seeded;
    use crate::schedule::ScheduleConfig;

    fn linear() -> NoiseSchedule {
        NoiseSchedule::new(&ScheduleConfig::default()).unwrap()
    }

    #[test]
    fn the_reference_objective_draws_what_the_reference_drew() {
        let s = linear();
        let a = Objective::default().draw_timesteps(&mut seeded(5, 1), 64, &s);
        let b = uniform_ints(&mut seeded(5, 1), 64, 1000);
        assert_eq!(a, b);
        assert!(Objective::default().weights(&s, &a).is_none());
    }

    #[test]
    fn min_snr_weights_are_the_papers() {
        let s = linear();
        let o = Objective {
            weighting: LossWeighting::MinSnr { gamma: 5.0 },
            ..Objective::default()
        };
        let w = o.weights(&s, &[0, 999]).unwrap();
        // t = 0: SNR = (1−β₀)/β₀ = 9999 ≫ 5, so w = 5/9999; t = T−1: SNR ≪ 5, w = 1.
        assert!((w[0] as f64 - 5.0 / 9999.0).abs() < 1e-9, "{}", w[0]);
        assert_eq!(w[1], 1.0);
        // The weight crosses from < 1 to 1 where SNR = γ.
        let t_star = (0..1000).find(|&t| {
            let ab = s.alpha_bar(t);
            ab / (1.0 - ab) <= 5.0
        });
        let t_star = t_star.unwrap();
        assert!(o.weights(&s, &[t_star - 1]).unwrap()[0] < 1.0);
        assert_eq!(o.weights(&s, &[t_star]).unwrap()[0], 1.0);
    }

    #[test]
    fn log_normal_timesteps_have_the_asked_median_noise_level() {
        let s = linear();
        let o = Objective {
            timesteps: TimestepSampling::LogNormal {
                mean: -1.2,
                std: 1.2,
            },
            ..Objective::default()
        };
        let mut t = o.draw_timesteps(&mut seeded(1, 2), 20_001, &s);
        t.sort_unstable();
        let median = log_sigma(s.alpha_bar(t[10_000]));
        // The median of ln σ is the mean (−1.2) up to the sampling error and the grid spacing.
        assert!((median + 1.2).abs() < 0.05, "median ln σ {median}");
        // Draws below the smallest σ land on t = 0, above the largest on T−1.
        assert_eq!(nearest(&[0.0, 1.0, 2.0], -5.0), 0);
        assert_eq!(nearest(&[0.0, 1.0, 2.0], 9.0), 2);
        assert_eq!(nearest(&[0.0, 1.0, 2.0], 1.4), 1);
        assert_eq!(nearest(&[0.0, 1.0, 2.0], 1.6), 2);
    }

    #[test]
    fn weighted_loss_is_the_mean_of_weighted_per_image_errors() {
        let device = Default::default();
        let s = linear();
        let o = Objective {
            weighting: LossWeighting::MinSnr { gamma: 5.0 },
            ..Objective::default()
        };
        let t = [10usize, 900];
        let eps = Tensor::<2>::from_data(TensorData::new(vec![0f32; 4], [2, 2]), &device);
        let pred = Tensor::<2>::from_data(TensorData::new(vec![1f32, 3., 2., 2.], [2, 2]), &device);
        let w = o.weights(&s, &t).unwrap();
        let want = (w[0] as f64 * 5.0 + w[1] as f64 * 4.0) / 2.0;
        let got = o
            .loss(&s, &t, eps.clone(), pred.clone())
            .into_scalar::<f32>() as f64;
        assert!((got - want).abs() < 1e-6 * want, "{got} vs {want}");
        let plain = Objective::default()
            .loss(&s, &t, eps, pred)
            .into_scalar::<f32>() as f64;
        assert!((plain - 4.5).abs() < 1e-6);
    }

    #[test]
    fn bad_settings_are_rejected() {
        let bad = Objective {
            weighting: LossWeighting::MinSnr { gamma: 0.0 },
            ..Objective::default()
        };
        assert!(bad.validate().is_err());
        let bad = Objective {
            timesteps: TimestepSampling::LogNormal {
                mean: 0.0,
                std: -1.0,
            },
            ..Objective::default()
        };
        assert!(bad.validate().is_err());
    }
}

//! Selective guidance: guide at full strength only the images that need it, chosen by the
//! model itself acting as a classifier of its own finished samples.
//!
//! A fixed weight pushes every image towards its class, which narrows the guided distribution;
//! mild guidance for every image keeps it wide but leaves some images unrecognisable. On the
//! digits most of the images that need a strong weight can be found after sampling: a
//! class-conditional diffusion model is a zero-shot classifier (Li et al. 2023, "Your Diffusion
//! Model is Secretly a Zero-Shot Classifier"; Clark & Jaini 2023). Noise a finished sample x₀ to
//! a few levels t, x_t = √ᾱ_t x₀ + √(1−ᾱ_t) ε (DDPM eq. 4), predict ε under every label c and
//! average the squared error,
//!
//!   E_c(x₀) = mean over (t, ε) of ‖ε_θ(x_t, t, c) − ε‖² / N,
//!
//! the ELBO's noise-prediction term with uniform weights over t (Li et al., eq. 4 and §3.2;
//! they rank classes by it). The requested label's error minus the best other label's is the
//! **margin**: negative when the model reads the sample as its label, near zero or positive
//! when it reads another one. Sampling is then two passes ([`crate::image::Generator`]): every
//! image at the mild base weight, then the `share` with the largest margins again at the full
//! guided setting along the same noise (x_T and every step's).
//!
//! The levels (t = 0.35 T … 0.75 T, five of them, two noise draws each) were chosen on the
//! digits' development seeds: lower levels say little about the class (t ≤ 0.2 T ranked the
//! evaluation classifier's rejects with a ROC AUC of 0.64, these 0.96), and BENCHMARKS.md has
//! the measurements behind the share and the two weights.
use burn::prelude::*;
use serde::{Deserialize, Serialize};

use super::{Denoiser, GuidanceConfig};
use crate::schedule::NoiseSchedule;
use crate::{Error, Result};

/// The classifier's noise levels as fractions of the schedule's T.
pub const CLASSIFIER_LEVELS: [f64; 5] = [0.35, 0.45, 0.55, 0.65, 0.75];

/// Noise draws per level.
pub const CLASSIFIER_DRAWS: usize = 2;

/// Selective guidance's settings: which share of the images gets the full guided setting, and
/// the weight every image gets in the first pass.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Selective {
    /// Share of the images, in (0, 1], sampled again at the full guided setting: those with the
    /// largest margins (rounded up, so at least one image).
    pub share: f64,
    /// The first pass's weight w (reference convention), with the guided setting's method.
    pub base_w: f64,
    /// The first pass's APG bound r (APG only; the second pass keeps the guided setting's).
    pub base_apg_norm: f64,
}

impl Default for Selective {
    /// 5 % re-sampled after a first pass at APG w = 0.5, r = 0.01: the digits' development
    /// choice (with the second pass at APG w = 7.5, r = 0.005).
    fn default() -> Self {
        Self {
            share: 0.05,
            base_w: 0.5,
            base_apg_norm: 0.01,
        }
    }
}

impl Selective {
    pub fn validate(&self) -> Result<()> {
        if !(self.share > 0.0 && self.share <= 1.0) {
            return Err(Error::invalid(
                "guidance.selective.share",
                format!("must be in (0, 1], got {}", self.share),
            ));
        }
        if !(self.base_w.is_finite() && self.base_w >= 0.0) {
            return Err(Error::invalid(
                "guidance.selective.base_w",
                format!("must be a finite w ≥ 0, got {}", self.base_w),
            ));
        }
        if !(self.base_apg_norm.is_finite() && self.base_apg_norm >= 0.0) {
            return Err(Error::invalid(
                "guidance.selective.base_apg_norm",
                format!("must be a finite r ≥ 0, got {}", self.base_apg_norm),
            ));
        }
        Ok(())
    }

    /// The first pass's setting: `guided` at w = `base_w` with APG's bound `base_apg_norm`.
    pub fn base(&self, guided: &GuidanceConfig) -> Result<GuidanceConfig> {
        let mut base = *guided;
        base.scale = super::Guidance::new(self.base_w, super::GuidanceConvention::Reference)?;
        base.apg.norm_threshold = self.base_apg_norm;
        base.validate()?;
        Ok(base)
    }

    /// How many of `n` images the second pass samples again: ⌈share · n⌉.
    pub fn count(&self, n: usize) -> usize {
        // The small slack keeps 0.05 · 2000 at 100 despite 0.05's binary rounding.
        ((self.share * n as f64 - 1e-9).ceil().max(1.0) as usize).min(n)
    }
}

/// The classifier's timesteps under `schedule`: [`CLASSIFIER_LEVELS`] of its T.
pub fn classifier_timesteps(schedule: &NoiseSchedule) -> Vec<usize> {
    let t_max = schedule.num_steps();
    CLASSIFIER_LEVELS
        .iter()
        .map(|f| ((f * t_max as f64).round() as usize).min(t_max - 1))
        .collect()
}

/// E_c(x₀) of the module docs for each image of `x0` (`[B, …]`) and each class 1…`num_classes`:
/// `[B][num_classes]`, the mean over `evals` — pairs (t, ε), ε shaped like `x0` — of the
/// per-value squared error of the prediction under that label.
pub fn class_errors<const D: usize, M: Denoiser<D> + ?Sized>(
    model: &M,
    schedule: &NoiseSchedule,
    x0: &Tensor<D>,
    num_classes: usize,
    evals: &[(usize, Tensor<D>)],
) -> Result<Vec<Vec<f64>>> {
    let b = x0.dims()[0];
    let mut errors = vec![vec![0.0f64; num_classes]; b];
    for (t, eps) in evals {
        schedule.check_t(*t)?;
        let x_t = schedule.q_sample(x0.clone(), &vec![*t; b], eps.clone());
        for c in 1..=num_classes {
            let pred = model.eps(x_t.clone(), *t, Some(&vec![c; b]));
            let err: Vec<f32> = (pred - eps.clone())
                .square()
                .flatten::<2>(1, D - 1)
                .mean_dim(1)
                .into_data()
                .try_to_vec::<f32>()
                .map_err(|e| Error::invalid("selective guidance", format!("{e:?}")))?;
            for (row, e) in errors.iter_mut().zip(err) {
                row[c - 1] += e as f64 / evals.len() as f64;
            }
        }
    }
    Ok(errors)
}

/// The requested label's error minus the best other label's (`label` in 1…K, K ≥ 2):
/// negative when the model reads the image as its label.
pub fn label_margin(errors: &[f64], label: usize) -> f64 {
    let own = errors[label - 1];
    let other = errors
        .iter()
        .enumerate()
        .filter(|&(c, _)| c != label - 1)
        .map(|(_, &e)| e)
        .fold(f64::INFINITY, f64::min);
    own - other
}

/// The indices of the `count` largest margins, ascending (ties: the lower index first).
pub fn least_sure(margins: &[f64], count: usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..margins.len()).collect();
    order.sort_by(|&a, &b| margins[b].total_cmp(&margins[a]).then(a.cmp(&b)));
    order.truncate(count);
    order.sort_unstable();
    order
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schedule::ScheduleConfig;

    /// The ideal denoiser of data whose class c is the single image m_c: under label c it
    /// predicts ε̂ = (x_t − √ᾱ_t m_c)/√(1−ᾱ_t). Then ε̂ − ε = √ᾱ_t (x₀ − m_c)/√(1−ᾱ_t) whatever
    /// the noise, so E_c(x₀) = mean over levels of ᾱ_t/(1−ᾱ_t) · ‖x₀ − m_c‖²/N exactly: the
    /// classifier picks the nearest prototype.
    #[test]
    fn class_errors_match_the_ideal_prototype_denoiser_in_f64() {
        let dev = Device::flex();
        let s = NoiseSchedule::new(&ScheduleConfig::default()).unwrap();
        let protos: Vec<[f32; 4]> = vec![
            [0.5, -0.5, 0.25, 0.0],
            [-0.75, 0.5, 0.0, 0.5],
            [0.0, 0.0, -0.5, -0.25],
        ];
        let (p2, s2) = (protos.clone(), s.clone());
        let model = move |x: Tensor<2>, t: usize, labels: Option<&[usize]>| {
            let ab = s2.alpha_bar(t);
            let rows: Vec<f32> = labels.unwrap().iter().flat_map(|&c| p2[c - 1]).collect();
            let m = Tensor::<2>::from_data(TensorData::new(rows, [x.dims()[0], 4]), &x.device());
            (x - m * ab.sqrt()) / (1.0 - ab).sqrt()
        };
        let images: Vec<f32> = vec![
            0.4, -0.5, 0.25, 0.1, // near class 1
            -0.5, 0.25, 0.0, 0.5, // near class 2
            0.1, 0.0, -0.25, -0.25, // near class 3
        ];
        let x0 = Tensor::<2>::from_data(TensorData::new(images.clone(), [3, 4]), &dev);
        let ts = classifier_timesteps(&s);
        assert_eq!(ts, vec![350, 450, 550, 650, 750]);
        let mut rng = crate::rng::seeded(5, 0);
        let evals: Vec<(usize, Tensor<2>)> = ts
            .iter()
            .flat_map(|&t| [t, t])
            .map(|t| (t, crate::rng::normal_tensor(&mut rng, [3, 4], &dev)))
            .collect();
        let got = class_errors(&model, &s, &x0, 3, &evals).unwrap();
        let weight: f64 = evals
            .iter()
            .map(|&(t, _)| s.alpha_bar(t) / (1.0 - s.alpha_bar(t)))
            .sum::<f64>()
            / evals.len() as f64;
        for i in 0..3 {
            for c in 0..3 {
                let d2: f64 = (0..4)
                    .map(|k| (images[i * 4 + k] as f64 - protos[c][k] as f64).powi(2))
                    .sum::<f64>()
                    / 4.0;
                let want = weight * d2;
                assert!(
                    (got[i][c] - want).abs() <= 1e-4 * want.max(1e-3),
                    "image {i} class {c}: {} vs {want}",
                    got[i][c]
                );
            }
        }
        // Each image is read as the class it was drawn near; asked for another, its margin is
        // positive and is the distance gap.
        for (i, row) in got.iter().enumerate() {
            assert!(label_margin(row, i + 1) < 0.0);
            let other = (i + 1) % 3 + 1;
            let m = label_margin(row, other);
            assert!(m > 0.0);
            assert!((m - (row[other - 1] - row[i])).abs() < 1e-12);
        }
    }

    #[test]
    fn the_least_sure_share_is_the_largest_margins_rounded_up() {
        let sel = Selective {
            share: 0.05,
            base_w: 0.5,
            base_apg_norm: 0.01,
        };
        assert_eq!(sel.count(2000), 100);
        assert_eq!(sel.count(500), 25);
        assert_eq!(sel.count(30), 2);
        assert_eq!(sel.count(1), 1);
        let full = Selective { share: 1.0, ..sel };
        assert_eq!(full.count(7), 7);
        let margins = [-3.0, 0.5, -1.0, 0.5, 2.0, -0.25];
        assert_eq!(least_sure(&margins, 3), vec![1, 3, 4]);
        assert_eq!(least_sure(&margins, 2), vec![1, 4]);
        assert_eq!(least_sure(&margins, 0), Vec::<usize>::new());
        for bad in [0.0, -0.1, 1.5, f64::NAN] {
            let e = Selective { share: bad, ..sel }.validate().unwrap_err();
            assert!(e.to_string().contains("guidance.selective.share"), "{e}");
        }
        let e = Selective {
            base_w: -1.0,
            ..sel
        }
        .validate()
        .unwrap_err();
        assert!(e.to_string().contains("base_w"), "{e}");
    }
}

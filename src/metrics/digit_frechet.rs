//! The digits' distribution metric: the Fréchet distance between generated and real digits in
//! the feature space of the evaluation classifier's penultimate layer (256 ReLU features of
//! [`DigitClassifier`]), computed exactly like FID ([`frechet_distance`], Heusel et al. 2017,
//! eq. 6) with the classifier in Inception's place. Accuracy says whether each sample is the
//! digit it was asked for; this distance says whether the samples, taken together, look like
//! the real digits (it grows when guidance collapses them to a few saturated strokes).
//!
//! The reference set is all 1,797 real digits. Its real-vs-real floor (two disjoint halves, and
//! n real digits against the other half) is what a perfect generator would score with the same
//! number of images: Fréchet estimates are biased upwards at small n.
use burn::prelude::*;
use rand::seq::SliceRandom;
use serde::Serialize;

use super::fid::{frechet_distance, FeatureStats};
use crate::data::digits::load_digits;
use crate::data::image_set::ImageSet;
use crate::nn::digit_classifier::{self, DigitClassifier, FEATURE_DIM};
use crate::{Error, Result};

/// The classifier, the real digits' features and their statistics.
pub struct DigitJudge {
    pub classifier: DigitClassifier,
    /// The classifier's accuracy on its held-out real digits (NaN when none were held out).
    pub holdout_accuracy: f64,
    real_features: Vec<f32>,
    real_stats: FeatureStats,
    device: Device,
}

/// What the judge measured on one set of samples.
#[derive(Debug, Clone, Serialize)]
pub struct Judgement {
    /// Number of samples.
    pub n: usize,
    /// Fraction recognised as their requested label.
    pub accuracy: f64,
    /// Fréchet distance to the real digits in classifier feature space.
    pub frechet: f64,
    /// Accuracy per label 1…10 (NaN for a label with no sample).
    pub per_class: Vec<f64>,
    /// The label 1…10 the classifier gives each sample, in order (`image judge --per-image`).
    #[serde(skip)]
    pub predicted: Vec<usize>,
}

/// Real-vs-real Fréchet distances: the floor a perfect generator reaches.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct RealFloor {
    /// Two disjoint random halves of the real digits (898 vs 899).
    pub halves: f64,
    /// `n` real digits from one half against the other half (the floor at a sample size n).
    pub at_n: f64,
    pub n: usize,
}

impl DigitJudge {
    /// The project's judge: the classifier trained on the real 8×8 digits with 10 % held out
    /// (seed 0), as `image run`, `image judge` and the sweeps use it.
    pub fn standard(device: &Device) -> Result<Self> {
        let real = load_digits(8)?;
        let (clf, acc) = digit_classifier::train(&real, 0.1, 0, device)?;
        Self::new(clf, acc, &real, device)
    }

    /// A judge from any classifier, with `real` (8×8 digits) as the reference set.
    pub fn new(
        classifier: DigitClassifier,
        holdout_accuracy: f64,
        real: &ImageSet,
        device: &Device,
    ) -> Result<Self> {
        if (real.channels, real.height, real.width) != (1, 8, 8) {
            return Err(Error::invalid(
                "digits",
                "the judge needs the digits at 8×8",
            ));
        }
        let real_features = classifier.features_of(&real.images, device)?;
        let real_stats = FeatureStats::from_features(&real_features, FEATURE_DIM)?;
        Ok(Self {
            classifier,
            holdout_accuracy,
            real_features,
            real_stats,
            device: device.clone(),
        })
    }

    /// Fréchet distance between 8×8 images [N·64] and the real digits.
    pub fn frechet(&self, images: &[f32]) -> Result<f64> {
        let f = self.classifier.features_of(images, &self.device)?;
        frechet_distance(
            &FeatureStats::from_features(&f, FEATURE_DIM)?,
            &self.real_stats,
        )
    }

    /// Accuracy (per label too) and Fréchet distance of 8×8 samples [N·64] requested with
    /// `labels` (1…10).
    pub fn judge(&self, images: &[f32], labels: &[usize]) -> Result<Judgement> {
        if images.len() != labels.len() * 64 {
            return Err(Error::invalid(
                "samples",
                format!(
                    "{} labels but {} values ({} 8×8 images)",
                    labels.len(),
                    images.len(),
                    images.len() as f64 / 64.0
                ),
            ));
        }
        let pred = self.classifier.predict(images, &self.device)?;
        let mut hit = [0usize; 10];
        let mut tot = [0usize; 10];
        for (&p, &l) in pred.iter().zip(labels) {
            if !(1..=10).contains(&l) {
                return Err(Error::invalid(
                    "labels",
                    format!("digit labels are 1…10, got {l}"),
                ));
            }
            tot[l - 1] += 1;
            hit[l - 1] += (p == l) as usize;
        }
        Ok(Judgement {
            n: labels.len(),
            accuracy: hit.iter().sum::<usize>() as f64 / labels.len() as f64,
            frechet: self.frechet(images)?,
            per_class: (0..10)
                .map(|c| {
                    if tot[c] == 0 {
                        f64::NAN
                    } else {
                        hit[c] as f64 / tot[c] as f64
                    }
                })
                .collect(),
            predicted: pred,
        })
    }

    /// The real-vs-real floor: the real digits split into two random halves (`seed`); the
    /// distance between the halves, and between `n` digits of the first half and the second.
    pub fn real_floor(&self, n: usize, seed: u64) -> Result<RealFloor> {
        let total = self.real_stats.n;
        let mut order: Vec<usize> = (0..total).collect();
        order.shuffle(&mut crate::rng::seeded(seed, 0xf100));
        let (a, b) = order.split_at(total / 2);
        let n = n.clamp(2, a.len());
        let rows = |idx: &[usize]| -> Vec<f32> {
            idx.iter()
                .flat_map(|&i| &self.real_features[i * FEATURE_DIM..(i + 1) * FEATURE_DIM])
                .copied()
                .collect()
        };
        let stats = |idx: &[usize]| FeatureStats::from_features(&rows(idx), FEATURE_DIM);
        let sb = stats(b)?;
        Ok(RealFloor {
            halves: frechet_distance(&stats(a)?, &sb)?,
            at_n: frechet_distance(&stats(&a[..n])?, &sb)?,
            n,
        })
    }
}

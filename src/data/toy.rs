//! The 2D toy distributions of the reference (scikit-learn's generators, noise 0), drawn from a
//! seeded generator, and the reference normalisation.
use std::f64::consts::PI;

use rand::seq::SliceRandom;
use rand::Rng;
use rand_distr::StandardNormal;
use serde::{Deserialize, Serialize};

/// A 2D data set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
#[serde(rename_all = "snake_case")]
pub enum ToyDataset {
    /// 3D swiss roll with a hole, columns x and z, normalised (the reference default).
    #[default]
    SwissRoll,
    /// Two interleaved half circles, normalised.
    Moons,
    /// Two concentric circles (factor 0.5), ×4, not normalised.
    Circles,
    /// The S curve, columns x and z, normalised.
    SCurve,
    /// A checkerboard of sin-sign cells on [−2π, 2π]², normalised.
    Checkerboard,
    /// N(0, I).
    GaussianCentered,
    /// N(0, I) + 1.5.
    GaussianShift,
}

impl ToyDataset {
    pub fn name(&self) -> &'static str {
        match self {
            Self::SwissRoll => "swiss_roll",
            Self::Moons => "moons",
            Self::Circles => "circles",
            Self::SCurve => "s_curve",
            Self::Checkerboard => "checkerboard",
            Self::GaussianCentered => "gaussian_centered",
            Self::GaussianShift => "gaussian_shift",
        }
    }
}

/// (x − mean)/std × `scale` with one global mean and population std over every coordinate.
pub fn normalize(points: &mut [f64], scale: f64) {
    let n = points.len() as f64;
    let mean = points.iter().sum::<f64>() / n;
    let var = points.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n;
    let std = var.sqrt();
    for v in points.iter_mut() {
        *v = (*v - mean) / std * scale;
    }
}

/// sklearn's make_swiss_roll(hole=True): a corner (π(1.5+i), 7j) of the 3×3 grid minus its centre,
/// then t = corner_t + πU, height = corner_h + 7U (unused in 2D); x = t cos t, z = t sin t.
fn swiss_roll(n: usize, rng: &mut impl Rng) -> Vec<f64> {
    let corners: Vec<(f64, f64)> = (0..3)
        .flat_map(|i| (0..3).map(move |j| (PI * (1.5 + i as f64), 7.0 * j as f64)))
        .enumerate()
        .filter(|(k, _)| *k != 4)
        .map(|(_, c)| c)
        .collect();
    let mut out = Vec::with_capacity(2 * n);
    for _ in 0..n {
        let (ct, _ch) = corners[rng.gen_range(0..corners.len())];
        let t = ct + PI * rng.gen::<f64>();
        let _height = rng.gen::<f64>();
        out.push(t * t.cos());
        out.push(t * t.sin());
    }
    out
}

/// numpy linspace with or without the end point.
fn lin(a: f64, b: f64, n: usize, endpoint: bool) -> impl Iterator<Item = f64> {
    let div = if endpoint {
        n.saturating_sub(1).max(1)
    } else {
        n.max(1)
    } as f64;
    (0..n).map(move |i| a + (b - a) * i as f64 / div)
}

/// Shuffles the rows of a [N, 2] array (sklearn shuffles moons and circles).
fn shuffle_rows(points: Vec<f64>, rng: &mut impl Rng) -> Vec<f64> {
    let mut rows: Vec<[f64; 2]> = points.chunks(2).map(|c| [c[0], c[1]]).collect();
    rows.shuffle(rng);
    rows.into_iter().flatten().collect()
}

fn moons(n: usize, rng: &mut impl Rng) -> Vec<f64> {
    let n_out = n / 2;
    let n_in = n - n_out;
    let mut p = Vec::with_capacity(2 * n);
    for a in lin(0.0, PI, n_out, true) {
        p.extend([a.cos(), a.sin()]);
    }
    for a in lin(0.0, PI, n_in, true) {
        p.extend([1.0 - a.cos(), 1.0 - a.sin() - 0.5]);
    }
    shuffle_rows(p, rng)
}

fn circles(n: usize, rng: &mut impl Rng) -> Vec<f64> {
    let n_out = n / 2;
    let n_in = n - n_out;
    let mut p = Vec::with_capacity(2 * n);
    for a in lin(0.0, 2.0 * PI, n_out, false) {
        p.extend([a.cos(), a.sin()]);
    }
    for a in lin(0.0, 2.0 * PI, n_in, false) {
        p.extend([0.5 * a.cos(), 0.5 * a.sin()]);
    }
    shuffle_rows(p, rng)
}

fn s_curve(n: usize, rng: &mut impl Rng) -> Vec<f64> {
    let mut p = Vec::with_capacity(2 * n);
    for _ in 0..n {
        let t = 3.0 * PI * (rng.gen::<f64>() - 0.5);
        let _y = 2.0 * rng.gen::<f64>();
        p.extend([t.sin(), t.signum() * (t.cos() - 1.0)]);
    }
    p
}

fn checkerboard(n: usize, rng: &mut impl Rng) -> Vec<f64> {
    let mut p = Vec::with_capacity(2 * n);
    while p.len() < 2 * n {
        let x = rng.gen_range(-2.0 * PI..2.0 * PI);
        let y = rng.gen_range(-2.0 * PI..2.0 * PI);
        if (x.sin() > 0.0) == (y.sin() > 0.0) {
            p.extend([x, y]);
        }
    }
    p
}

/// `n` points of `kind` as a row-major [n, 2] f32 array.
pub fn generate(kind: ToyDataset, n: usize, rng: &mut impl Rng) -> Vec<f32> {
    let mut p = match kind {
        ToyDataset::SwissRoll => swiss_roll(n, rng),
        ToyDataset::Moons => moons(n, rng),
        ToyDataset::Circles => circles(n, rng),
        ToyDataset::SCurve => s_curve(n, rng),
        ToyDataset::Checkerboard => checkerboard(n, rng),
        ToyDataset::GaussianCentered | ToyDataset::GaussianShift => (0..2 * n)
            .map(|_| rng.sample::<f64, _>(StandardNormal))
            .collect(),
    };
    match kind {
        ToyDataset::SwissRoll
        | ToyDataset::Moons
        | ToyDataset::SCurve
        | ToyDataset::Checkerboard => normalize(&mut p, 2.0),
        ToyDataset::Circles => p.iter_mut().for_each(|v| *v *= 4.0),
        ToyDataset::GaussianShift => p.iter_mut().for_each(|v| *v += 1.5),
        ToyDataset::GaussianCentered => {}
    }
    p.into_iter().map(|v| v as f32).collect()
}

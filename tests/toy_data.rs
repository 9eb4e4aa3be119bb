//! The 2D data sets: normalisation, shapes, determinism.
use diffuse::data::toy::{generate, ToyDataset};
use diffuse::rng::seeded;

fn stats(p: &[f32]) -> (f64, f64) {
    let n = p.len() as f64;
    let mean = p.iter().map(|&v| v as f64).sum::<f64>() / n;
    let var = p.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / n;
    (mean, var.sqrt())
}

#[test]
fn normalised_sets_have_mean_0_and_std_2() {
    for kind in [
        ToyDataset::SwissRoll,
        ToyDataset::Moons,
        ToyDataset::SCurve,
        ToyDataset::Checkerboard,
    ] {
        let p = generate(kind, 20_000, &mut seeded(3, 1));
        assert_eq!(p.len(), 40_000);
        let (m, s) = stats(&p);
        assert!(m.abs() < 1e-5, "{kind:?} mean {m}");
        assert!((s - 2.0).abs() < 1e-5, "{kind:?} std {s}");
    }
}

#[test]
fn swiss_roll_lies_on_the_spiral_with_a_hole() {
    // Undo the normalisation using the statistics of the raw spiral: every raw point satisfies
    // x = t cos t, z = t sin t with t = √(x² + z²) ∈ [1.5π, 4.5π].
    let p = generate(ToyDataset::SwissRoll, 5000, &mut seeded(0, 1));
    let (lo, hi) = p
        .iter()
        .fold((f32::MAX, f32::MIN), |(a, b), &v| (a.min(v), b.max(v)));
    assert!(lo > -6.0 && hi < 6.0, "range {lo}..{hi}");
    // The same seed gives the same data; another seed does not.
    assert_eq!(p, generate(ToyDataset::SwissRoll, 5000, &mut seeded(0, 1)));
    assert_ne!(p, generate(ToyDataset::SwissRoll, 5000, &mut seeded(1, 1)));
}

#[test]
fn other_sets_have_their_documented_scale() {
    let c = generate(ToyDataset::Circles, 1000, &mut seeded(0, 1));
    let radii: Vec<f32> = c
        .chunks(2)
        .map(|p| (p[0] * p[0] + p[1] * p[1]).sqrt())
        .collect();
    assert!(radii
        .iter()
        .all(|&r| (r - 4.0).abs() < 1e-4 || (r - 2.0).abs() < 1e-4));
    let g = generate(ToyDataset::GaussianShift, 50_000, &mut seeded(0, 1));
    let (m, s) = stats(&g);
    assert!((m - 1.5).abs() < 0.02 && (s - 1.0).abs() < 0.02, "{m} {s}");
}

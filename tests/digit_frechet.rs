//! The digits' Fréchet distance in the evaluation classifier's feature space: zero for the real
//! set itself, a small real-vs-real floor, large for collapsed samples, bad input rejected.
use burn::prelude::*;
use diffuse::data::digits::load_digits;
use diffuse::metrics::digit_frechet::DigitJudge;
use diffuse::metrics::fid::{frechet_distance, FeatureStats};
use diffuse::nn::digit_classifier::FEATURE_DIM;

#[test]
fn real_digits_score_near_zero_and_collapsed_ones_far() {
    let dev = Device::flex();
    let real = load_digits(8).unwrap();
    let judge = DigitJudge::standard(&dev).unwrap();
    assert!(judge.holdout_accuracy > 0.9, "{}", judge.holdout_accuracy);

    // The real set against itself: the same statistics, so 0 up to the eigen-solver's rounding
    // (relative to the total variance Tr Σ, which sets the scale of every term).
    let f = judge.classifier.features_of(&real.images, &dev).unwrap();
    assert_eq!(f.len(), real.len() * FEATURE_DIM);
    let st = FeatureStats::from_features(&f, FEATURE_DIM).unwrap();
    let self_fd = judge.judge(&real.images, &real.labels).unwrap();
    assert!(
        self_fd.frechet <= 1e-6 * st.sigma.trace(),
        "{} vs Tr Σ {}",
        self_fd.frechet,
        st.sigma.trace()
    );
    assert!(self_fd.accuracy > 0.95, "{}", self_fd.accuracy);
    assert!(self_fd.per_class.iter().all(|a| *a > 0.8));

    // The floor: two halves are close but not identical; 200 digits against a half score
    // higher (the estimate's small-sample bias).
    let floor = judge.real_floor(200, 0).unwrap();
    eprintln!("{floor:?}");
    assert!(floor.halves > 0.0 && floor.at_n > floor.halves, "{floor:?}");

    // Collapsed samples: every image of a label replaced by that label's first real digit.
    let mut collapsed = Vec::new();
    for &l in &real.labels[..200] {
        let first = real.labels.iter().position(|&m| m == l).unwrap();
        collapsed.extend_from_slice(real.image(first));
    }
    let j = judge.judge(&collapsed, &real.labels[..200]).unwrap();
    // One prediction per image, the accuracy's own: identical images (all of a label are one
    // digit here) get one prediction.
    assert_eq!(j.predicted.len(), 200);
    let hits = j.predicted.iter().zip(&real.labels).filter(|(p, l)| p == l);
    assert_eq!(hits.count() as f64 / 200.0, j.accuracy);
    for (i, &l) in real.labels[..200].iter().enumerate() {
        let first = real.labels.iter().position(|&m| m == l).unwrap();
        assert_eq!(j.predicted[i], j.predicted[first], "image {i}");
    }
    assert!(
        j.frechet > 3.0 * floor.at_n,
        "collapsed {} vs floor {}",
        j.frechet,
        floor.at_n
    );
    // The same 200 real digits, not collapsed, score at the floor (they are drawn from the
    // reference set itself, so a little below the disjoint floor).
    let honest = judge
        .judge(&real.images[..200 * 64], &real.labels[..200])
        .unwrap();
    eprintln!("collapsed {} honest {}", j.frechet, honest.frechet);
    assert!(
        honest.frechet < 1.5 * floor.at_n,
        "{} vs {}",
        honest.frechet,
        floor.at_n
    );
    // judge() computes the same distance as the FID code on the same features.
    let fc = judge.classifier.features_of(&collapsed, &dev).unwrap();
    let direct =
        frechet_distance(&FeatureStats::from_features(&fc, FEATURE_DIM).unwrap(), &st).unwrap();
    assert!((direct - j.frechet).abs() <= 1e-9 * direct.max(1.0));

    // Bad input: a label count that does not match the images, an out-of-range label.
    assert!(judge.judge(&real.images[..640], &real.labels[..9]).is_err());
    assert!(judge.judge(&real.images[..128], &[1, 11]).is_err());
    assert!(judge.classifier.features_of(&[0.0; 63], &dev).is_err());
}

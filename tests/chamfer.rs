//! Chamfer distance against a brute-force double loop.
use diffuse::metrics::chamfer::chamfer_distance;
use diffuse::rng::{normal_vec, seeded};

fn brute(a: &[f32], b: &[f32]) -> f64 {
    let d = |p: &[f32], q: &[f32]| {
        (p[0] as f64 - q[0] as f64).powi(2) + (p[1] as f64 - q[1] as f64).powi(2)
    };
    let mut s = 0.0;
    for p in a.chunks(2) {
        s += b.chunks(2).map(|q| d(p, q)).fold(f64::MAX, f64::min);
    }
    for q in b.chunks(2) {
        s += a.chunks(2).map(|p| d(p, q)).fold(f64::MAX, f64::min);
    }
    s
}

#[test]
fn equals_brute_force() {
    let mut rng = seeded(1, 0);
    for (n, m) in [(1, 1), (5, 7), (300, 200), (2048, 2048)] {
        let a = normal_vec(&mut rng, 2 * n);
        let b = normal_vec(&mut rng, 2 * m);
        let cd = chamfer_distance(&a, &b, 2).unwrap();
        let want = brute(&a, &b);
        assert!(
            (cd - want).abs() <= 1e-9 * want.max(1.0),
            "{n}×{m}: {cd} vs {want}"
        );
    }
}

#[test]
fn hand_computed_value_sum_of_squares_both_ways() {
    // A = {(0,0)}, B = {(1,0), (3,0)}: A→B 1, B→A 1 + 9.
    assert_eq!(
        chamfer_distance(&[0.0, 0.0], &[1.0, 0.0, 3.0, 0.0], 2).unwrap(),
        11.0
    );
    assert_eq!(chamfer_distance(&[1.0, 2.0], &[1.0, 2.0], 2).unwrap(), 0.0);
}

#[test]
fn bad_inputs_are_rejected() {
    assert!(chamfer_distance(&[], &[1.0, 2.0], 2).is_err());
    assert!(chamfer_distance(&[1.0, 2.0, 3.0], &[1.0, 2.0], 2).is_err());
    assert!(chamfer_distance(&[f32::NAN, 0.0], &[1.0, 2.0], 2).is_err());
}

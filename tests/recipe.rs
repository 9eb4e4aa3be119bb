//! Recipe ingredients do what they claim: the learning-rate schedule, the timestep draw, the
//! best preset; the seed lists and summaries of `toy study`.
use diffuse::sampling::Spacing;
use diffuse::stats::{median_min_max, parse_seeds};
use diffuse::toy::{draw_t, Recipe, ToyConfig};
use diffuse::train::{LrSchedule, OptimConfig};

#[test]
fn warmup_then_constant_is_the_reference_lambda() {
    let o = OptimConfig {
        lr: 2e-4,
        warmup_steps: 200,
        ..OptimConfig::default()
    };
    assert!((o.lr_at(0, 1000) - 2e-4 / 200.0).abs() < 1e-15);
    assert!((o.lr_at(99, 1000) - 1e-4).abs() < 1e-15);
    assert_eq!(o.lr_at(199, 1000), 2e-4);
    assert_eq!(o.lr_at(999, 1000), 2e-4);
}

#[test]
fn cosine_decays_from_peak_to_floor() {
    let o = OptimConfig {
        lr: 1.0,
        warmup_steps: 10,
        schedule: LrSchedule::Cosine,
        min_lr_frac: 0.1,
        ..OptimConfig::default()
    };
    assert_eq!(o.lr_at(10, 110), 1.0);
    assert!(
        (o.lr_at(60, 110) - 0.55).abs() < 1e-12,
        "halfway: {}",
        o.lr_at(60, 110)
    );
    assert!((o.lr_at(110, 110) - 0.1).abs() < 1e-12);
    let lrs: Vec<f64> = (10..110).map(|s| o.lr_at(s, 110)).collect();
    assert!(lrs.windows(2).all(|w| w[1] <= w[0]));
}

#[test]
fn reference_recipe_is_the_course_protocol_and_best_changes_it() {
    let r = Recipe::Reference.config();
    assert_eq!(r, ToyConfig::default());
    assert_eq!(
        (r.steps, r.batch_size, r.num_points, r.optim.lr, r.optim.eps),
        (5000, 128, 1_000_000, 1e-3, 1e-8)
    );
    assert_eq!(
        (
            r.ema_decay,
            r.optim.grad_clip,
            r.stratified_t,
            r.optim.schedule
        ),
        (None, None, false, LrSchedule::Constant)
    );
    assert_eq!((r.t_groups, r.t_power), (None, 1.0));
    assert_eq!(r.net.dims, vec![2, 128, 128, 128, 2]);
    assert_eq!(Recipe::Reference.few_step_spacing(), Spacing::Leading);
    let b = Recipe::Best.config();
    b.validate().unwrap();
    assert!(b.ema_decay.is_some() && b.stratified_t);
    assert_eq!(b.optim.schedule, LrSchedule::Cosine);
    // Fewer steps, and per step no more rows through the timestep-embedding MLPs than the
    // reference (the cost that dominates its step): the training time is measured in
    // BENCHMARKS.md, this pins the shape that makes it cheap.
    let k = b.t_groups.expect("best groups timesteps");
    assert!(b.steps <= r.steps && k <= r.batch_size && b.batch_size > r.batch_size);
    assert_eq!(Recipe::Best.few_step_spacing(), Spacing::Quadratic);
}

#[test]
fn checkpoints_written_before_the_new_fields_load_as_the_reference() {
    // A config JSON without t_groups / t_power (older checkpoints) means the reference draw.
    let mut v = serde_json::to_value(ToyConfig::default()).unwrap();
    let m = v.as_object_mut().unwrap();
    m.remove("t_groups");
    m.remove("t_power");
    let c: ToyConfig = serde_json::from_value(v).unwrap();
    assert_eq!(c, ToyConfig::default());
}

#[test]
fn stratified_draw_puts_one_timestep_in_each_stratum() {
    use rand::SeedableRng;
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
    // p = 1: one draw in each of the 100 strata of 10 timesteps.
    let mut t = draw_t(&mut rng, 100, 1000, true, 1.0);
    t.sort();
    for (i, &v) in t.iter().enumerate() {
        assert!((10 * i..10 * (i + 1)).contains(&v), "stratum {i}: {v}");
    }
    // p = 2: stratum i of u maps to [⌊T(i/B)²⌋, ⌊T((i+1)/B)²⌋].
    let mut t = draw_t(&mut rng, 100, 1000, true, 2.0);
    t.sort();
    for (i, &v) in t.iter().enumerate() {
        let (lo, hi) = ((i * i) / 10, ((i + 1) * (i + 1)) / 10);
        assert!(
            v >= lo && v <= hi.min(999),
            "stratum {i}: {v} not in [{lo}, {hi}]"
        );
    }
    // Half the draws of p = 2 fall below T/4 (u² < 1/4 ⇔ u < 1/2).
    assert_eq!(t.iter().filter(|&&v| v < 250).count(), 50);
    // i.i.d. draws stay in range.
    let t = draw_t(&mut rng, 4096, 1000, false, 3.0);
    assert!(t.iter().all(|&v| v < 1000));
}

#[test]
fn seed_lists_parse_ranges_and_lists() {
    assert_eq!(parse_seeds("0-9").unwrap(), (0..10).collect::<Vec<u64>>());
    assert_eq!(parse_seeds("7").unwrap(), vec![7]);
    assert_eq!(
        parse_seeds("0, 3,100-102").unwrap(),
        vec![0, 3, 100, 101, 102]
    );
    assert_eq!(parse_seeds("5-5").unwrap(), vec![5]);
}

#[test]
fn bad_seed_lists_are_rejected_with_the_reason() {
    for (input, needle) in [
        ("", "empty item"),
        ("1,,2", "empty item"),
        ("1,", "empty item"),
        ("a", "`a` is not a seed"),
        ("-3", "`-3` is not a seed"),
        ("1-2-3", "`1-2-3` is not a seed"),
        ("1.5", "`1.5` is not a seed"),
        ("9-0", "reversed"),
        ("1,1", "seed 1 is listed twice"),
        ("0-4,3-6", "seed 3 is listed twice"),
        ("0-18446744073709551615", "more than 10000 seeds"),
    ] {
        let err = parse_seeds(input).unwrap_err().to_string();
        assert!(err.contains("study.seeds"), "{input}: {err}");
        assert!(
            err.contains(needle),
            "{input}: expected `{needle}` in {err}"
        );
    }
}

#[test]
fn median_min_max_of_known_lists() {
    assert_eq!(median_min_max(&[3.0, 1.0, 2.0]), (2.0, 1.0, 3.0));
    assert_eq!(median_min_max(&[4.0, 1.0, 2.0, 10.0]), (3.0, 1.0, 10.0));
    assert_eq!(median_min_max(&[5.0]), (5.0, 5.0, 5.0));
    assert!(median_min_max(&[]).0.is_nan());
}

#[test]
fn timestep_groups_must_divide_the_batch() {
    let c = ToyConfig {
        t_groups: Some(3),
        ..ToyConfig::default()
    };
    let err = c.validate().unwrap_err().to_string();
    assert!(
        err.contains("train.t_groups") && err.contains("128"),
        "{err}"
    );
    let c = ToyConfig {
        t_groups: Some(0),
        ..ToyConfig::default()
    };
    assert!(c.validate().is_err());
    let c = ToyConfig {
        t_power: 0.0,
        ..ToyConfig::default()
    };
    assert!(c
        .validate()
        .unwrap_err()
        .to_string()
        .contains("train.t_power"));
}

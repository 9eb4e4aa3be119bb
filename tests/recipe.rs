//! Recipe ingredients do what they claim: the learning-rate schedule and the best preset.
use diffuse::toy::{Recipe, ToyConfig};
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
    let b = Recipe::Best.config();
    assert!(b.ema_decay.is_some() && b.optim.grad_clip.is_some() && b.stratified_t);
    assert_eq!(b.optim.schedule, LrSchedule::Cosine);
    assert_eq!(
        (b.steps, b.batch_size),
        (r.steps, r.batch_size),
        "same training cost"
    );
}

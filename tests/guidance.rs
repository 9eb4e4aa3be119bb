//! Classifier-free guidance: the formula, both conventions, one batched call, w = 0.
use std::cell::Cell;

use burn::prelude::*;
use diffuse::sampling::{Denoiser, Guidance, GuidanceConvention, Guided};
use diffuse::schedule::{NoiseSchedule, ScheduleConfig};

/// The reference schedule, shared by the tests.
fn schedule_ref() -> &'static NoiseSchedule {
    static S: std::sync::OnceLock<NoiseSchedule> = std::sync::OnceLock::new();
    S.get_or_init(|| NoiseSchedule::new(&ScheduleConfig::default()).unwrap())
}

/// Plain CFG at `scale`, read in `convention`.
fn cfg_at<M: Denoiser<2>>(m: &M, scale: f64, convention: GuidanceConvention) -> Guided<'_, M> {
    let g = Guidance::new(scale, convention).unwrap();
    Guided::new(m, None, schedule_ref(), &g.into()).unwrap()
}

/// A fake conditional model: ε = x · (label + 1), counting its calls.
struct Fake {
    calls: Cell<usize>,
}

impl Denoiser<2> for Fake {
    fn eps(&self, x: Tensor<2>, _t: usize, labels: Option<&[usize]>) -> Tensor<2> {
        self.calls.set(self.calls.get() + 1);
        let labels = labels.expect("labels");
        assert_eq!(labels.len(), x.dims()[0]);
        let scale: Vec<f32> = labels.iter().map(|&l| l as f32 + 1.0).collect();
        let n = scale.len();
        x * Tensor::<2>::from_data(TensorData::new(scale, [n, 1]), &Device::flex())
    }
}

fn x() -> Tensor<2> {
    Tensor::from_data(
        TensorData::new(vec![1.0f32, 2.0, -1.0, 0.5], [2, 2]),
        &Device::flex(),
    )
}

#[test]
fn reference_formula_in_one_call() {
    let m = Fake {
        calls: Cell::new(0),
    };
    let g = cfg_at(&m, 7.5, GuidanceConvention::Reference);
    let out: Vec<f32> = g
        .eps(x(), 10, Some(&[2, 3]))
        .into_data()
        .try_to_vec()
        .unwrap();
    assert_eq!(
        m.calls.get(),
        1,
        "conditional and null batch must share one network call"
    );
    // ε_u = x·1, ε_c = x·(c+1): (1+w)(c+1)x − w x.
    let want = [
        (8.5 * 3.0 - 7.5) * 1.0,
        (8.5 * 3.0 - 7.5) * 2.0,
        -(8.5 * 4.0 - 7.5),
        (8.5 * 4.0 - 7.5) * 0.5,
    ];
    for (a, b) in out.iter().zip(want) {
        assert!((a - b).abs() < 1e-5, "{out:?} vs {want:?}");
    }
}

#[test]
fn diffusers_convention_is_w_plus_one() {
    let m = Fake {
        calls: Cell::new(0),
    };
    let a = cfg_at(&m, 3.0, GuidanceConvention::Reference);
    let b = cfg_at(&m, 4.0, GuidanceConvention::Diffusers);
    let ea: Vec<f32> = a
        .eps(x(), 5, Some(&[1, 2]))
        .into_data()
        .try_to_vec()
        .unwrap();
    let eb: Vec<f32> = b
        .eps(x(), 5, Some(&[1, 2]))
        .into_data()
        .try_to_vec()
        .unwrap();
    assert_eq!(ea, eb);
}

#[test]
fn zero_scale_is_the_plain_conditional_prediction() {
    let m = Fake {
        calls: Cell::new(0),
    };
    let g = cfg_at(&m, 0.0, GuidanceConvention::Reference);
    let out: Vec<f32> = g
        .eps(x(), 5, Some(&[1, 2]))
        .into_data()
        .try_to_vec()
        .unwrap();
    let plain: Vec<f32> = m
        .eps(x(), 5, Some(&[1, 2]))
        .into_data()
        .try_to_vec()
        .unwrap();
    assert_eq!(out, plain);
    assert_eq!(m.calls.get(), 2, "w = 0 needs no null-label batch");
}

#[test]
fn negative_scales_are_rejected() {
    assert!(Guidance::new(-0.5, GuidanceConvention::Reference).is_err());
    assert!(Guidance::new(0.5, GuidanceConvention::Diffusers).is_err());
    assert!(Guidance::new(f64::NAN, GuidanceConvention::Reference).is_err());
}

// ---- The guidance methods (src/sampling/guidance/, one file per method). Values below are
// small hand-made numbers of size ≈ 1–30 computed in f32; 1e-5 relative (a few ulps of
// f32 over a handful of operations) is the tolerance.

use diffuse::sampling::guidance::{self as rules, ApgConfig};
use diffuse::sampling::{GuidanceConfig, GuidanceMethod};

fn rows(v: &[f32], cols: usize) -> Tensor<2> {
    Tensor::from_data(
        TensorData::new(v.to_vec(), [v.len() / cols, cols]),
        &Device::flex(),
    )
}

fn vec2(t: Tensor<2>) -> Vec<f32> {
    t.into_data().try_to_vec().unwrap()
}

fn assert_close(got: &[f32], want: &[f32]) {
    assert_eq!(got.len(), want.len(), "{got:?} vs {want:?}");
    for (a, b) in got.iter().zip(want) {
        assert!(
            (a - b).abs() <= 1e-5 * b.abs().max(1.0),
            "{got:?} vs {want:?}"
        );
    }
}

#[test]
fn cfg_rescale_matches_lin_et_al() {
    // x_c has std 1, x_cfg std 3 (rows ±1 and ±3): φ = 1 rescales x_cfg to std 1, φ = 0 keeps
    // it, φ = 0.5 multiplies by 0.5·(1/3) + 0.5 = 2/3.
    let xc = [1.0, -1.0, 1.0, -1.0];
    let xg = [3.0, -3.0, 3.0, -3.0];
    for (phi, k) in [(1.0, 1.0 / 3.0), (0.0, 1.0), (0.5, 2.0 / 3.0)] {
        let out = vec2(rules::cfg_rescale(rows(&xc, 4), rows(&xg, 4), phi));
        let want: Vec<f32> = xg.iter().map(|v| v * k as f32).collect();
        assert_close(&out, &want);
    }
    // Per image: the second row (std 2 vs 4) gets its own factor 1/2.
    let out = vec2(rules::cfg_rescale(
        rows(&[1.0, -1.0, 2.0, -2.0], 2),
        rows(&[3.0, -3.0, 4.0, -4.0], 2),
        1.0,
    ));
    assert_close(&out, &[1.0, -1.0, 2.0, -2.0]);
}

#[test]
fn apg_projects_clips_and_carries_momentum() {
    // x_c = (1, 0), x_u = (0, 1): Δ = (1, −1), Δ∥ = (1, 0), Δ⊥ = (0, −1).
    let (xc, xu) = (rows(&[1.0, 0.0], 2), rows(&[0.0, 1.0], 2));
    let w = 2.0;
    let cfg = |eta, norm_threshold| ApgConfig {
        eta,
        momentum: -0.5,
        norm_threshold,
        interval: None,
        feedback: None,
    };
    // η = 0: x_c + w Δ⊥ = (1, −2).
    let (out, running) = rules::apg(xc.clone(), xu.clone(), w, &cfg(0.0, 0.0), None);
    assert_close(&vec2(out), &[1.0, -2.0]);
    assert_close(&vec2(running), &[1.0, -1.0]);
    // η = 1 without clipping is plain CFG: x_c + w (x_c − x_u) = (3, −2).
    let (out, _) = rules::apg(xc.clone(), xu.clone(), w, &cfg(1.0, 0.0), None);
    assert_close(&vec2(out), &[3.0, -2.0]);
    // r bounds the RMS: RMS(Δ) = 1, so r = 0.5 halves Δ: x_c + w (0.5, −0.5) with η = 1 = (2, −1).
    let (out, _) = rules::apg(xc.clone(), xu.clone(), w, &cfg(1.0, 0.5), None);
    assert_close(&vec2(out), &[2.0, -1.0]);
    // Momentum: Δ = (1, −1) + β (2, 0) = (0, −1), all orthogonal: x_c + w (0, −1) = (1, −2);
    // the running Δ is the unclipped sum.
    let (out, running) = rules::apg(xc, xu, w, &cfg(0.0, 0.0), Some(rows(&[2.0, 0.0], 2)));
    assert_close(&vec2(out), &[1.0, -2.0]);
    assert_close(&vec2(running), &[0.0, -1.0]);
}

/// The bound is per value (RMS): Δ with the same per-pixel statistics is clipped by the same
/// factor at 8×8 (digits) and at 3×64×64 (AFHQ), so one default guides both with the same
/// relative strength. (The former absolute L2 bound would clip the large image 48× harder.)
/// At 8×8 the default is the former L2 bound 0.15: the digits behave as before.
#[test]
fn apg_bound_is_per_value_so_strength_does_not_depend_on_resolution() {
    use diffuse::sampling::guidance::ApgConfig as Apg;
    let cfg = Apg {
        eta: 1.0,
        momentum: 0.0,
        ..Apg::default()
    };
    let w = 3.0;
    // Relative strength: RMS of the applied update over w RMS(Δ) (η = 1: the update is the
    // clipped Δ, whatever its direction).
    let strength = |n: usize| {
        let xc: Vec<f32> = (0..n)
            .map(|i| ((i * 7919) % 201) as f32 / 100.0 - 1.0)
            .collect();
        // Δ = ±0.1 per value: RMS 0.1 at every size.
        let xu: Vec<f32> = xc
            .iter()
            .enumerate()
            .map(|(i, v)| v - if i % 3 == 0 { 0.1 } else { -0.1 })
            .collect();
        let (out, _) = rules::apg(rows(&xc, n), rows(&xu, n), w, &cfg, None);
        let out = vec2(out);
        let rms = |v: &[f32]| {
            (v.iter().map(|x| (*x as f64).powi(2)).sum::<f64>() / v.len() as f64).sqrt()
        };
        let upd: Vec<f32> = out.iter().zip(&xc).map(|(o, c)| o - c).collect();
        rms(&upd) / (w * 0.1)
    };
    let (small, large) = (strength(64), strength(3 * 64 * 64));
    // r / RMS(Δ) = 0.01875 / 0.1.
    assert!((small - 0.1875).abs() < 1e-4, "8×8: {small}");
    assert!(
        (large - small).abs() < 1e-4,
        "3×64×64: {large} vs 8×8: {small}"
    );
    // 8×8 as before: the former rule min(1, 0.15/‖Δ‖), ‖Δ‖ = 0.1 √64 = 0.8.
    assert!((small - 0.15 / 0.8).abs() < 1e-4);
    assert_eq!(Apg::default().norm_threshold * 8.0, 0.15);
}

/// Heun evaluates twice per step, its corrector at the next timestep, where the next step's
/// predictor evaluates again: APG's momentum must advance once per step, so the predictor
/// calls see what a one-call-per-step sampler's calls see.
#[test]
fn apg_momentum_advances_once_per_step_under_heun() {
    let s = schedule();
    let cfg = GuidanceConfig {
        apg: ApgConfig {
            eta: 0.0,
            momentum: -0.5,
            norm_threshold: 0.0,
            interval: None,
            feedback: None,
        },
        ..config(GuidanceMethod::Apg, 2.0)
    };
    // x depends on the call, so the corrector's Δ differs from the predictor's at the same t.
    let at = |g: &Guided<'_, Shifted>, t: usize, k: f32| {
        let x = Tensor::<2>::from_data(
            TensorData::new(vec![0.1 * k, -0.2, 0.3, 0.05 * k], [2, 2]),
            &Device::flex(),
        );
        g.eps(x, t, Some(&[1, 2])).into_data().try_to_vec().unwrap()
    };
    let one = Guided::new(&Shifted, None, &s, &cfg).unwrap();
    let two = Guided::new(&Shifted, None, &s, &cfg).unwrap();
    let mut pairs = Vec::new();
    for (t, t_next) in [(600, 400), (400, 200), (200, 100)] {
        pairs.push((at(&one, t, 1.0), at(&two, t, 1.0)));
        // Heun's corrector at t_next (another x: the predicted point).
        at(&two, t_next, 5.0);
    }
    for (i, (a, b)) in pairs.iter().enumerate() {
        assert!(max_diff(a, b) < 1e-6, "step {i}: {a:?} vs {b:?}");
    }
    // The check can fail: without momentum the second step differs from the first's run.
    let fresh = Guided::new(&Shifted, None, &s, &cfg).unwrap();
    assert!(max_diff(&at(&fresh, 400, 1.0), &pairs[1].0) > 1e-4);
}

#[test]
fn dynamic_threshold_matches_imagen() {
    // |x| sorted (0.5, 1, 2, 3). p = 1: s = 3, divide by 3.
    let x = [0.5, -2.0, 3.0, 1.0];
    let out = vec2(rules::dynamic_threshold(rows(&x, 4), 1.0));
    assert_close(&out, &[0.5 / 3.0, -2.0 / 3.0, 1.0, 1.0 / 3.0]);
    // p = 0.5: position 1.5 between 1 and 2, s = 1.5: clip to ±1.5, divide by 1.5.
    let out = vec2(rules::dynamic_threshold(rows(&x, 4), 0.5));
    assert_close(&out, &[0.5 / 1.5, -1.0, 1.0, 1.0 / 1.5]);
    // Inside [−1, 1] s = max(q, 1) = 1: unchanged (second row), per image.
    let out = vec2(rules::dynamic_threshold(
        rows(&[4.0, 0.0, 0.0, 0.0, 0.5, -0.25, 1.0, 0.0], 4),
        1.0,
    ));
    assert_close(&out, &[1.0, 0.0, 0.0, 0.0, 0.5, -0.25, 1.0, 0.0]);
}

#[test]
fn interval_bounds_are_half_open() {
    assert!(!rules::in_interval(0.28, (0.28, 5.42)));
    assert!(rules::in_interval(5.42, (0.28, 5.42)));
    assert!(rules::in_interval(1.0, (0.28, 5.42)));
    assert!(!rules::in_interval(6.0, (0.28, 5.42)));
    // σ = √((1−ᾱ)/ᾱ): ᾱ = 0.5 is σ = 1; ᾱ = 0.2 is σ = 2.
    assert!((rules::edm_sigma(0.5) - 1.0).abs() < 1e-15);
    assert!((rules::edm_sigma(0.2) - 2.0).abs() < 1e-15);
}

fn schedule() -> NoiseSchedule {
    schedule_ref().clone()
}

fn config(method: GuidanceMethod, w: f64) -> GuidanceConfig {
    GuidanceConfig {
        method,
        scale: Guidance::new(w, GuidanceConvention::Reference).unwrap(),
        ..GuidanceConfig::default()
    }
}

fn eps_of<M: Denoiser<2>>(m: &M, t: usize, labels: &[usize]) -> Vec<f32> {
    m.eps(x(), t, Some(labels))
        .into_data()
        .try_to_vec()
        .unwrap()
}

#[test]
fn interval_guides_only_inside_its_noise_levels() {
    let s = schedule();
    let m = Fake {
        calls: Cell::new(0),
    };
    let g = Guided::new(&m, None, &s, &config(GuidanceMethod::Interval, 3.0)).unwrap();
    let plain = cfg_at(&m, 3.0, GuidanceConvention::Reference);
    let sigma = |t: usize| rules::edm_sigma(s.alpha_bar(t));
    // Linear schedule: σ(999) ≈ 157 (outside), a mid timestep inside (0.28, 5.42], t = 0 below.
    let mid = (0..1000).find(|&t| sigma(t) > 1.0).unwrap();
    assert!(sigma(999) > 5.42 && sigma(0) < 0.28);
    assert_eq!(eps_of(&g, mid, &[1, 2]), eps_of(&plain, mid, &[1, 2]));
    for t in [0, 999] {
        m.calls.set(0);
        assert_eq!(eps_of(&g, t, &[1, 2]), eps_of(&m, t, &[1, 2]));
        assert_eq!(m.calls.get(), 2, "outside the interval: one plain call");
    }
}

#[test]
fn apg_with_an_interval_guides_only_inside_it() {
    let s = schedule();
    let m = Fake {
        calls: Cell::new(0),
    };
    let mut c = config(GuidanceMethod::Apg, 3.0);
    let everywhere = Guided::new(&m, None, &s, &c).unwrap();
    c.apg.interval = Some((0.28, 5.42));
    let g = Guided::new(&m, None, &s, &c).unwrap();
    let sigma = |t: usize| rules::edm_sigma(s.alpha_bar(t));
    let mid = (0..1000).find(|&t| sigma(t) > 1.0).unwrap();
    // Inside: APG as without a window (fresh momentum in both: one call each).
    assert_eq!(eps_of(&g, mid, &[1, 2]), eps_of(&everywhere, mid, &[1, 2]));
    assert_ne!(eps_of(&g, mid, &[1, 2]), eps_of(&m, mid, &[1, 2]));
    // Outside: the conditional prediction from one plain call.
    for t in [0, 999] {
        m.calls.set(0);
        assert_eq!(eps_of(&g, t, &[1, 2]), eps_of(&m, t, &[1, 2]));
        assert_eq!(m.calls.get(), 2, "outside the interval: one plain call");
    }
    c.apg.interval = Some((2.0, 1.0));
    assert!(Guided::new(&m, None, &s, &c)
        .err()
        .unwrap()
        .to_string()
        .contains("guidance.apg.interval"));
}

/// ε = k · x · (label + 1), recording the labels it was called with.
struct Scaled {
    k: f32,
    labels: std::cell::RefCell<Vec<usize>>,
}

impl Denoiser<2> for Scaled {
    fn eps(&self, x: Tensor<2>, _t: usize, labels: Option<&[usize]>) -> Tensor<2> {
        let labels = labels.expect("labels");
        self.labels.borrow_mut().extend_from_slice(labels);
        let scale: Vec<f32> = labels.iter().map(|&l| self.k * (l as f32 + 1.0)).collect();
        let n = scale.len();
        x * Tensor::<2>::from_data(TensorData::new(scale, [n, 1]), &Device::flex())
    }
}

#[test]
fn autoguidance_extrapolates_away_from_the_weaker_model() {
    let s = schedule();
    let scaled = |k| Scaled {
        k,
        labels: Default::default(),
    };
    let (main, weak) = (scaled(1.0), scaled(0.25));
    // Karras et al. 2024, eq. 1 with w' = 1 + w: (1 + w) ε_main − w ε_weak = (3 − 0.5) ε_main/1.
    let g = Guided::new(&main, Some(&weak), &s, &config(GuidanceMethod::Auto, 2.0)).unwrap();
    let out = eps_of(&g, 500, &[3, 4]);
    let want: Vec<f32> = eps_of(&scaled(1.0), 500, &[3, 4])
        .iter()
        .map(|v| (3.0 - 2.0 * 0.25) * v)
        .collect();
    assert_close(&out, &want);
    // Both are evaluated with the requested labels (never the null class), once each.
    assert_eq!(*weak.labels.borrow(), vec![3, 4]);
    assert_eq!(*main.labels.borrow(), vec![3, 4]);
}

#[test]
fn x0_methods_go_through_the_schedule() {
    // Rescale, APG and thresholding act on x̂₀ = (x − √(1−ᾱ) ε)/√ᾱ: recompute by hand.
    let s = schedule();
    let m = Fake {
        calls: Cell::new(0),
    };
    let t = 300;
    let ab = s.alpha_bar(t);
    let (a, sq) = (ab.sqrt() as f32, (1.0 - ab).sqrt() as f32);
    let xv: Vec<f32> = vec2(x());
    let labels = [1usize, 2];
    let eps_c: Vec<f32> = eps_of(&m, t, &labels);
    let eps_u: Vec<f32> = eps_of(&m, t, &[0, 0]);
    let x0 = |e: &[f32]| -> Vec<f32> { xv.iter().zip(e).map(|(x, e)| (x - sq * e) / a).collect() };
    let to_eps =
        |x0: Vec<f32>| -> Vec<f32> { xv.iter().zip(&x0).map(|(x, z)| (x - a * z) / sq).collect() };
    let w = 4.0;
    let (x0c, x0u) = (rows(&x0(&eps_c), 2), rows(&x0(&eps_u), 2));
    let x0cfg = rules::cfg(x0c.clone(), x0u.clone(), w);
    let d = GuidanceConfig::default();
    let cases = [
        (
            GuidanceMethod::Rescale,
            vec2(rules::cfg_rescale(
                x0c.clone(),
                x0cfg.clone(),
                d.rescale_phi,
            )),
        ),
        (
            GuidanceMethod::Apg,
            vec2(rules::apg(x0c.clone(), x0u.clone(), w, &d.apg, None).0),
        ),
        (
            GuidanceMethod::Threshold,
            vec2(rules::dynamic_threshold(x0cfg, d.threshold_percentile)),
        ),
    ];
    for (method, want_x0) in cases {
        let g = Guided::new(&m, None, &s, &config(method, w)).unwrap();
        // ε of size ≈ 1–10 divided by √(1−ᾱ) ≈ 0.6: 1e-4 relative covers f32 rounding of
        // the round trip x̂₀ → ε.
        let got = eps_of(&g, t, &labels);
        let want = to_eps(want_x0);
        for (p, q) in got.iter().zip(&want) {
            assert!(
                (p - q).abs() <= 1e-4 * q.abs().max(1.0),
                "{method:?}: {got:?} vs {want:?}"
            );
        }
    }
}

/// ε = x + label · (0.3, −0.7): the guidance direction is not parallel to x̂₀, so APG's
/// orthogonal update (and its momentum) is not zero.
struct Shifted;

impl Denoiser<2> for Shifted {
    fn eps(&self, x: Tensor<2>, _t: usize, labels: Option<&[usize]>) -> Tensor<2> {
        let labels = labels.expect("labels");
        let v: Vec<f32> = labels
            .iter()
            .flat_map(|&l| [0.3 * l as f32, -0.7 * l as f32])
            .collect();
        let n = labels.len();
        x + Tensor::<2>::from_data(TensorData::new(v, [n, 2]), &Device::flex())
    }
}

#[test]
fn apg_momentum_spans_one_sampling_run() {
    let s = schedule();
    let cfg = GuidanceConfig {
        apg: ApgConfig {
            eta: 0.0,
            momentum: -0.5,
            norm_threshold: 0.0,
            interval: None,
            feedback: None,
        },
        ..config(GuidanceMethod::Apg, 2.0)
    };
    let fresh = |t| eps_of(&Guided::new(&Shifted, None, &s, &cfg).unwrap(), t, &[1, 2]);
    let g = Guided::new(&Shifted, None, &s, &cfg).unwrap();
    let first = eps_of(&g, 600, &[1, 2]);
    assert_eq!(first, fresh(600));
    // The next (lower) timestep adds β times the running Δ: not the fresh result.
    let second = eps_of(&g, 400, &[1, 2]);
    let d = max_diff(&second, &fresh(400));
    assert!(d > 1e-3, "momentum changed nothing ({d})");
    // A larger t starts a new run: the fresh result again.
    assert_eq!(eps_of(&g, 600, &[1, 2]), first);
}

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

#[test]
fn every_method_is_the_conditional_model_at_zero_scale() {
    let s = schedule();
    let m = Fake {
        calls: Cell::new(0),
    };
    for method in [
        GuidanceMethod::Cfg,
        GuidanceMethod::Interval,
        GuidanceMethod::Rescale,
        GuidanceMethod::Apg,
        GuidanceMethod::Threshold,
    ] {
        let g = Guided::new(&m, None, &s, &config(method, 0.0)).unwrap();
        assert_eq!(
            eps_of(&g, 500, &[1, 2]),
            eps_of(&m, 500, &[1, 2]),
            "{method:?}"
        );
    }
}

#[test]
fn bad_guidance_settings_are_rejected() {
    let s = schedule();
    let m = Fake {
        calls: Cell::new(0),
    };
    let err = |c: GuidanceConfig, guide: Option<&Fake>| {
        Guided::new(&m, guide, &s, &c)
            .err()
            .expect("must fail")
            .to_string()
    };
    assert!(err(config(GuidanceMethod::Auto, 1.0), None).contains("guidance.guide"));
    let other = Fake {
        calls: Cell::new(0),
    };
    assert!(err(config(GuidanceMethod::Cfg, 1.0), Some(&other)).contains("guidance.guide"));
    let mut c = config(GuidanceMethod::Rescale, 1.0);
    c.rescale_phi = 1.5;
    assert!(err(c, None).contains("guidance.rescale_phi"));
    let mut c = config(GuidanceMethod::Interval, 1.0);
    c.interval = (2.0, 1.0);
    assert!(err(c, None).contains("guidance.interval"));
    let mut c = config(GuidanceMethod::Apg, 1.0);
    c.apg.norm_threshold = -1.0;
    assert!(err(c, None).contains("guidance.apg.norm_threshold"));
    let mut c = config(GuidanceMethod::Threshold, 1.0);
    c.threshold_percentile = 2.0;
    assert!(err(c, None).contains("guidance.threshold_percentile"));
}

// ---- Feedback guidance (src/sampling/guidance/feedback.rs): the per-image weight and the
// running estimate of log R = log p(c|x_t)/p(c), checked against the formulas in f64.

use diffuse::sampling::guidance::{Feedback, GuideStep, PosteriorTracker};

#[test]
fn feedback_weight_is_pi_over_r_minus_pi_capped_at_w() {
    let (pi, w) = (0.5, 7.5);
    let log_r = [2f64.ln(), 0.5f64.ln(), 0.0, 0.1f64.ln(), 10.0];
    let got = vec2(rules::feedback_weight(
        rows(&log_r.map(|v| v as f32), 1),
        pi,
        w,
    ));
    // R = 2: 0.5/1.5; R = π and R < π: the cap; R = 1 (x_T): π/(1 − π) = 1; R = e¹⁰: ≈ 0.
    let want = [1.0 / 3.0, 7.5, 1.0, 7.5, 0.5 / (10f64.exp() - 0.5)];
    assert_close(&got, &want.map(|v| v as f32));
}

/// log N(x'; μ_c, σ²) − log N(x'; μ_u, σ²) per image in f64: DDPM's posterior from (x at ᾱ)
/// to ᾱ' with x̂₀ = `x0c` or `x0u` (DDIM eq. 12 with σ of eq. 16 at η = 1).
fn kernel_log_ratio(
    x: &[f64],
    x0c: &[f64],
    x0u: &[f64],
    next: &[f64],
    ab: f64,
    ab2: f64,
) -> Vec<f64> {
    let var = (1.0 - ab2) / (1.0 - ab) * (1.0 - ab / ab2);
    let dir = (1.0 - ab2 - var).sqrt();
    let log_n = |x0: &[f64], i: usize| {
        let mu = ab2.sqrt() * x0[i] + dir * (x[i] - ab.sqrt() * x0[i]) / (1.0 - ab).sqrt();
        -(next[i] - mu).powi(2) / (2.0 * var)
    };
    let n = 3;
    (0..x.len() / n)
        .map(|r| {
            (r * n..(r + 1) * n)
                .map(|i| log_n(x0c, i) - log_n(x0u, i))
                .sum()
        })
        .collect()
}

#[test]
fn feedback_tracks_log_r_by_bayes_rule_over_the_posterior_kernels() {
    let f = |v: &[f64]| rows(&v.iter().map(|&a| a as f32).collect::<Vec<_>>(), 3);
    let tau = 0.25;
    let mut tr = PosteriorTracker::new(tau);
    // Two images of three values.
    let x = [0.3, -1.2, 0.8, 1.1, 0.0, -0.4];
    let (x0c, x0u) = (
        [0.5, -0.9, 0.2, 0.7, 0.3, -0.8],
        [-0.1, -0.3, 0.6, 0.9, -0.5, 0.1],
    );
    let (ab, ab2, ab3) = (0.3, 0.5, 0.8);
    let mut observe = |t, alpha_bar, xs: &[f64], c: &[f64], u: &[f64]| {
        let xt = f(xs);
        let step = GuideStep {
            t,
            alpha_bar,
            x: &xt,
        };
        vec2(tr.observe(&step, f(c), f(u)))
    };
    // x_T carries no class: R = 1.
    assert_eq!(observe(700, ab, &x, &x0c, &x0u), [0.0, 0.0]);
    // One step on: τ times the log ratio of the two kernels at the x' the sampler produced.
    let next = [0.6, -1.0, 0.1, 0.5, 0.4, -0.9];
    let (c2, u2) = (
        [0.4, -0.8, 0.1, 0.6, 0.2, -0.7],
        [0.0, -0.2, 0.5, 0.8, -0.4, 0.0],
    );
    let want = kernel_log_ratio(&x, &x0c, &x0u, &next, ab, ab2);
    assert!(want[0].abs() > 0.1 && want[1].abs() > 0.1, "{want:?}");
    let close = |got: Vec<f32>, want: Vec<f64>| {
        for (g, w) in got.iter().zip(&want) {
            assert!(
                (*g as f64 - w).abs() <= 1e-4 * w.abs().max(1.0),
                "{got:?} vs {want:?}"
            );
        }
    };
    close(
        observe(500, ab2, &next, &c2, &u2),
        want.iter().map(|v| tau * v).collect(),
    );
    // Again at t = 500 (Heun's predictor after its corrector): recomputed from t = 700 at this
    // x, not added to the first.
    let again = [0.2, -0.5, 0.3, 0.9, 0.1, -0.2];
    let r500 = kernel_log_ratio(&x, &x0c, &x0u, &again, ab, ab2);
    close(
        observe(500, ab2, &again, &c2, &u2),
        r500.iter().map(|v| tau * v).collect(),
    );
    // The next step adds to it, from the last call at t = 500.
    let third = [0.3, -0.6, 0.2, 0.7, 0.2, -0.5];
    let r300 = kernel_log_ratio(&again, &c2, &u2, &third, ab2, ab3);
    let want: Vec<f64> = r500.iter().zip(&r300).map(|(a, b)| tau * (a + b)).collect();
    close(observe(300, ab3, &third, &c2, &u2), want);
    // A larger t, or another batch size, starts a new run.
    assert_eq!(observe(800, ab, &x, &x0c, &x0u), [0.0, 0.0]);
    assert_eq!(observe(600, ab2, &next[..3], &c2[..3], &u2[..3]), [0.0]);
}

#[test]
fn apg_with_feedback_weights_each_image_by_its_running_estimate() {
    let s = schedule();
    let mut c = config(GuidanceMethod::Apg, 7.5);
    c.apg.norm_threshold = 0.0;
    let plain_at = |c: GuidanceConfig, w: f64| GuidanceConfig {
        scale: Guidance::new(w, GuidanceConvention::Reference).unwrap(),
        apg: ApgConfig {
            feedback: None,
            ..c.apg
        },
        ..c
    };
    // At the first step R = 1 for every image: the weight is min(w, π/(1 − π)).
    const PI: f64 = 0.5;
    for (pi, w_first) in [(0.9, 7.5), (PI, 1.0)] {
        c.apg.feedback = Some(Feedback {
            pi,
            temperature: 0.25,
        });
        let g = Guided::new(&Shifted, None, &s, &c).unwrap();
        let plain = Guided::new(&Shifted, None, &s, &plain_at(c, w_first)).unwrap();
        assert_close(&eps_of(&g, 600, &[1, 2]), &eps_of(&plain, 600, &[1, 2]));
    }
    // The next step: each image's weight from its own log R (the tracker's), on APG's update
    // with the momentum of the first step.
    let g = Guided::new(&Shifted, None, &s, &c).unwrap();
    let (t1, t2) = (600, 400);
    eps_of(&g, t1, &[1, 2]);
    let x2 = rows(&[0.7, 1.5, -0.6, 0.2], 2);
    let got = vec2(g.eps(x2.clone(), t2, Some(&[1, 2])));
    let x0 = |t: usize, x: &Tensor<2>, labels: &[usize]| {
        let step = GuideStep {
            t,
            alpha_bar: s.alpha_bar(t),
            x,
        };
        step.to_x0(Shifted.eps(x.clone(), t, Some(labels)))
    };
    let mut tr = PosteriorTracker::new(0.25);
    let x1 = x();
    let mut running = None;
    let mut want = Vec::new();
    for (t, xt) in [(t1, &x1), (t2, &x2)] {
        let (xc, xu) = (x0(t, xt, &[1, 2]), x0(t, xt, &[0, 0]));
        let step = GuideStep {
            t,
            alpha_bar: s.alpha_bar(t),
            x: xt,
        };
        let log_r = tr.observe(&step, xc.clone(), xu.clone());
        let (update, r) = rules::apg_update(xc.clone(), xu, &c.apg, running.take());
        running = Some(r);
        let weights = rules::feedback_weight(log_r.clone(), PI, 7.5);
        if t == t2 {
            // One image's estimate fell below π (the cap), the other's did not: the weights
            // differ per image, and neither is the first step's 1.
            let (w, lr) = (vec2(weights.clone()), vec2(log_r));
            assert!(
                lr[1] < PI.ln() as f32 && (w[1] - 7.5).abs() < 1e-5,
                "{w:?} {lr:?}"
            );
            assert!(
                lr[0] > PI.ln() as f32 && w[0] > 1.1 && w[0] < 7.0,
                "{w:?} {lr:?}"
            );
        }
        want = vec2(step.to_eps(xc + update * weights));
    }
    assert_close(&got, &want);
}

#[test]
fn feedback_settings_are_checked() {
    let s = schedule();
    let mut c = config(GuidanceMethod::Apg, 7.5);
    let err = |c: &GuidanceConfig| {
        Guided::new(&Shifted, None, &s, c)
            .err()
            .unwrap()
            .to_string()
    };
    for (pi, temperature, field) in [
        (1.0, 0.25, "guidance.apg.feedback"),
        (0.0, 0.25, "guidance.apg.feedback"),
        (0.9, 0.0, "guidance.apg.feedback_temperature"),
        (0.9, 1.5, "guidance.apg.feedback_temperature"),
    ] {
        c.apg.feedback = Some(Feedback { pi, temperature });
        let e = err(&c);
        assert!(e.contains(field), "{e}");
    }
    // The estimate needs every step: no window.
    c.apg.feedback = Some(Feedback::default());
    c.apg.interval = Some((0.28, 5.42));
    let e = err(&c);
    assert!(
        e.contains("guidance.apg.feedback") && e.contains("window"),
        "{e}"
    );
}

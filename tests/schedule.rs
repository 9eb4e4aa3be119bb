//! Schedules, timestep arrays and single sampler steps against known values and PyTorch goldens.
mod common;

use burn::prelude::*;
use common::*;
use diffuse::sampling::{
    ddim_step, ddpm_step, levels, DdimOptions, DdimStep, DdpmOptions, DdpmStep,
};
use diffuse::sampling::{timesteps, Spacing};
use diffuse::schedule::{BetaSchedule, NoiseSchedule, ScheduleConfig, SigmaKind};

fn sched() -> NoiseSchedule {
    NoiseSchedule::new(&ScheduleConfig::default()).unwrap()
}

#[test]
fn linear_alpha_bar_matches_known_values() {
    let s = sched();
    let g = golden("toy.json");
    for (t, v) in g["alpha_bar"].as_object().unwrap() {
        let t: usize = t.parse().unwrap();
        let want = v.as_f64().unwrap();
        assert!(
            (s.alpha_bar(t) - want).abs() < 1e-14,
            "ᾱ_{t}: {} vs {want}",
            s.alpha_bar(t)
        );
    }
    // Hand-checkable values: ᾱ_0 = 1 − 1e-4, β_T = 0.02 exactly.
    assert_eq!(s.alpha_bar(0), 1.0 - 1e-4);
    assert_eq!(s.betas[999], 0.02);
    assert!((s.alpha_bar(999) - 4.035e-5).abs() < 1e-7);
    let q = NoiseSchedule::new(&ScheduleConfig {
        kind: BetaSchedule::Quad,
        ..Default::default()
    })
    .unwrap();
    for (t, v) in g["quad_alpha_bar"].as_object().unwrap() {
        let t: usize = t.parse().unwrap();
        assert!((q.alpha_bar(t) - v.as_f64().unwrap()).abs() < 1e-14);
    }
}

#[test]
fn small_sigma_is_zero_at_t0_and_large_is_sqrt_beta() {
    let s = sched();
    assert_eq!(s.sigma(0, SigmaKind::Small), 0.0);
    assert_eq!(s.sigma(500, SigmaKind::Large), s.betas[500].sqrt());
    assert!(s.sigma(500, SigmaKind::Small) < s.sigma(500, SigmaKind::Large));
}

#[test]
fn bad_schedules_are_rejected() {
    assert!(NoiseSchedule::new(&ScheduleConfig {
        num_steps: 1,
        ..Default::default()
    })
    .is_err());
    assert!(NoiseSchedule::new(&ScheduleConfig {
        beta_end: 1.5,
        ..Default::default()
    })
    .is_err());
    assert!(NoiseSchedule::new(&ScheduleConfig {
        beta_start: 0.1,
        beta_end: 0.01,
        ..Default::default()
    })
    .is_err());
}

#[test]
fn leading_timesteps_are_the_reference_array() {
    let ts = timesteps(Spacing::Leading, 1000, 50).unwrap();
    let want: Vec<usize> = (0..50).rev().map(|k| k * 20).collect();
    assert_eq!(ts, want);
    assert_eq!(ts[0], 980);
    assert_eq!(*ts.last().unwrap(), 0);
    assert_eq!(
        timesteps(Spacing::Leading, 1000, 3).unwrap(),
        vec![666, 333, 0]
    );
    assert_eq!(
        timesteps(Spacing::Leading, 1000, 1000).unwrap(),
        (0..1000).rev().collect::<Vec<_>>()
    );
}

#[test]
fn trailing_and_linspace_timesteps_match_diffusers() {
    // diffusers: trailing = round(arange(T, 0, −T/N)) − 1; linspace = round(linspace(0, T−1, N))[::-1]
    assert_eq!(
        timesteps(Spacing::Trailing, 1000, 10).unwrap(),
        vec![999, 899, 799, 699, 599, 499, 399, 299, 199, 99]
    );
    assert_eq!(
        timesteps(Spacing::Trailing, 1000, 3).unwrap(),
        vec![999, 666, 332]
    );
    assert_eq!(
        timesteps(Spacing::Linspace, 1000, 10).unwrap(),
        vec![999, 888, 777, 666, 555, 444, 333, 222, 111, 0]
    );
    assert_eq!(
        timesteps(Spacing::Linspace, 1000, 4).unwrap(),
        vec![999, 666, 333, 0]
    );
}

#[test]
fn step_counts_out_of_range_are_rejected() {
    for sp in [Spacing::Leading, Spacing::Trailing, Spacing::Linspace] {
        assert!(timesteps(sp, 1000, 0).is_err());
        assert!(timesteps(sp, 1000, 1001).is_err());
    }
}

fn inputs(device: &Device) -> (Tensor<2>, Tensor<2>, Tensor<2>) {
    let g = golden("toy.json");
    let i = &g["inputs"];
    (
        tensor2(f32s(&i["x"]), 2, device),
        tensor2(f32s(&i["eps"]), 2, device),
        tensor2(f32s(&i["z"]), 2, device),
    )
}

#[test]
fn ddpm_steps_match_pytorch() {
    let dev = Device::flex();
    let s = sched();
    let (x, eps, z) = inputs(&dev);
    for case in golden("toy.json")["ddpm_steps"].as_array().unwrap() {
        let t = case["t"].as_u64().unwrap() as usize;
        let sigma = if case["sigma"] == "small" {
            SigmaKind::Small
        } else {
            SigmaKind::Large
        };
        let step = DdpmStep {
            level: levels(&s, &[t])[0],
            alpha_bar_prev: s.alpha_bar_at(t.checked_sub(1)),
            opts: DdpmOptions {
                sigma,
                clip_x0: false,
            },
        };
        let out = to_vec(ddpm_step(x.clone(), eps.clone(), &step, Some(z.clone())));
        // Element-wise f32 arithmetic on f64 tables: no accumulation, a few roundings (and
        // FMA or not, depending on the CPU's kernels).
        assert_close(
            &out,
            &f32s(&case["out"]),
            f32_rtol(1, 8),
            &format!("DDPM t={t} {sigma:?}"),
        );
    }
}

#[test]
fn ddim_steps_match_pytorch() {
    let dev = Device::flex();
    let s = sched();
    let (x, eps, z) = inputs(&dev);
    for case in golden("toy.json")["ddim_steps"].as_array().unwrap() {
        let t = case["t"].as_u64().unwrap() as usize;
        let tp = case["t_prev"].as_i64().unwrap();
        let t_prev = (tp >= 0).then_some(tp as usize);
        let eta = case["eta"].as_f64().unwrap();
        let step = DdimStep {
            alpha_bar: s.alpha_bar(t),
            alpha_bar_prev: t_prev.map(|tp| s.alpha_bar(tp)),
            opts: DdimOptions {
                eta,
                clip_x0: false,
            },
        };
        let out = to_vec(ddim_step(x.clone(), eps.clone(), &step, Some(z.clone())));
        assert_close(
            &out,
            &f32s(&case["out"]),
            f32_rtol(1, 8),
            &format!("DDIM {t}->{tp} η={eta}"),
        );
    }
}

#[test]
fn last_ddim_step_returns_x0_exactly() {
    let dev = Device::flex();
    let s = sched();
    let (x, eps, z) = inputs(&dev);
    let ab = s.alpha_bar(0);
    let x0 = to_vec((x.clone() - eps.clone() * (1.0 - ab).sqrt()) / ab.sqrt());
    for eta in [0.0, 1.0] {
        let step = DdimStep {
            alpha_bar: ab,
            alpha_bar_prev: None,
            opts: DdimOptions {
                eta,
                clip_x0: false,
            },
        };
        let out = to_vec(ddim_step(x.clone(), eps.clone(), &step, Some(z.clone())));
        assert_eq!(
            out, x0,
            "η = {eta}: the step after t = 0 must return x̂₀ with no noise"
        );
    }
}

#[test]
fn q_sample_uses_one_t_per_row() {
    let dev = Device::flex();
    let s = sched();
    let x0 = tensor2(vec![1.0, 1.0, 1.0, 1.0], 2, &dev);
    let noise = tensor2(vec![0.0, 0.0, 1.0, 1.0], 2, &dev);
    let out = to_vec(s.q_sample(x0, &[0, 999], noise));
    assert!((out[0] as f64 - s.alpha_bar(0).sqrt()).abs() < 1e-6);
    let want = s.alpha_bar(999).sqrt() + (1.0 - s.alpha_bar(999)).sqrt();
    assert!((out[2] as f64 - want).abs() < 1e-6);
}

#[test]
fn quadratic_timesteps_are_dense_near_zero_and_strictly_decreasing() {
    assert_eq!(
        timesteps(Spacing::Quadratic, 1000, 5).unwrap(),
        vec![999, 562, 250, 62, 0]
    );
    for n in [2, 20, 50, 500, 999, 1000] {
        let ts = timesteps(Spacing::Quadratic, 1000, n).unwrap();
        assert_eq!(ts.len(), n);
        assert_eq!((ts[0], ts[n - 1]), (999, 0), "N = {n}");
        assert!(ts.windows(2).all(|w| w[0] > w[1]), "N = {n}: {ts:?}");
    }
}

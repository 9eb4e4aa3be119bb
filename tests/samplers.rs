//! Multi-step samplers on an analytic denoiser against PyTorch goldens, NFE counts, and the
//! DDIM inversion round trip.
mod common;

use std::cell::Cell;

use burn::prelude::*;
use common::*;
use diffuse::sampling::{
    ddim_invert, levels, sample, timesteps, Denoiser, Extra, SamplerKind, SamplerSpec,
};
use diffuse::schedule::{NoiseSchedule, ScheduleConfig};

/// ε(x, t) = x · t/2000 + 0.01 cos(t/100), the same function as bench/torch/toy_torch.py's `dummy`.
struct Dummy {
    calls: Cell<usize>,
}

impl Denoiser<2> for Dummy {
    fn eps(&self, x: Tensor<2>, t: usize, _labels: Option<&[usize]>) -> Tensor<2> {
        self.calls.set(self.calls.get() + 1);
        x * (0.5 * t as f64 / 1000.0) + 0.01 * (t as f64 / 100.0).cos()
    }
}

fn setup() -> (NoiseSchedule, Tensor<2>, serde_json::Value) {
    let g = golden("toy.json")["samplers"].clone();
    let x = tensor2(f32s(&g["x"]), 2, &Device::flex());
    (
        NoiseSchedule::new(&ScheduleConfig::default()).unwrap(),
        x,
        g,
    )
}

fn run(kind: SamplerKind, steps: usize) -> (Vec<f32>, usize) {
    let (s, x, _) = setup();
    let m = Dummy {
        calls: Cell::new(0),
    };
    let spec = SamplerSpec {
        kind,
        steps,
        ..SamplerSpec::default()
    };
    let out = sample(&m, &s, &spec, x, &mut extra()).unwrap();
    (to_vec(out), m.calls.get())
}

/// No labels, a generator that only DDPM draws from.
fn extra() -> Extra<'static, diffuse::rng::SeededRng> {
    Extra::new(None, diffuse::rng::seeded(0, 0))
}

fn rel_err(a: &[f32], b: &[f32]) -> f32 {
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs() / y.abs().max(1.0))
        .fold(0.0, f32::max)
}

#[test]
fn samplers_match_pytorch() {
    let (_, _, g) = setup();
    for (kind, key) in [
        (SamplerKind::Ddim, "ddim"),
        (SamplerKind::DpmSolver2m, "dpm++2m"),
        (SamplerKind::Euler, "euler"),
        (SamplerKind::Heun, "heun"),
    ] {
        let (out, _) = run(kind, 5);
        let err = rel_err(&out, &f32s(&g[key]));
        assert!(err < 1e-4, "{key}: relative error {err}");
    }
}

#[test]
fn evaluation_counts() {
    assert_eq!(
        run(SamplerKind::DpmSolver2m, 7).1,
        7,
        "DPM-Solver++(2M) makes one evaluation per step"
    );
    assert_eq!(run(SamplerKind::Ddim, 7).1, 7);
    assert_eq!(
        run(SamplerKind::Heun, 7).1,
        13,
        "Heun: two per step, one on the last"
    );
    assert_eq!(run(SamplerKind::Ddpm, 0).1, 1000);
}

#[test]
fn euler_is_deterministic_ddim() {
    let (a, _) = run(SamplerKind::Euler, 12);
    let (b, _) = run(SamplerKind::Ddim, 12);
    assert!(max_abs_diff(&a, &b) < 1e-4);
}

#[test]
fn inversion_matches_pytorch_and_round_trip_improves_with_steps() {
    let (s, x, g) = setup();
    let m = Dummy {
        calls: Cell::new(0),
    };
    let lv = |steps| levels(&s, &timesteps(Default::default(), 1000, steps).unwrap());
    let code = ddim_invert(&m, x.clone(), &lv(5), &mut extra());
    let err = rel_err(&to_vec(code), &f32s(&g["invert"]));
    assert!(err < 1e-4, "inversion: relative error {err}");
    // Encode then decode: the error shrinks as the step count grows.
    let x0 = x.clone() * 0.25;
    let mut errors = Vec::new();
    for steps in [5, 20, 100] {
        let code = ddim_invert(&m, x0.clone(), &lv(steps), &mut extra());
        let spec = SamplerSpec {
            steps,
            ..SamplerSpec::default()
        };
        let back = sample(&m, &s, &spec, code, &mut extra()).unwrap();
        errors.push(max_abs_diff(&to_vec(back), &to_vec(x0.clone())));
    }
    assert!(errors[0] > errors[1] && errors[1] > errors[2], "{errors:?}");
}

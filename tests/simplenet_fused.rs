//! The fused CPU training step and sampling forward of SimpleNet
//! (`diffuse::nn::simplenet::fused` on `diffuse_kernels::time_mlp`) against burn's autodiff on the same weights and inputs.
mod common;

use burn::module::{Module, ModuleVisitor, Param};
use burn::optim::GradientsParams;
use burn::prelude::*;
use common::{assert_close, f32_rtol, to_vec};
use diffuse::nn::simplenet::fused::{self, flat_net, FusedDenoiser};
use diffuse::nn::simplenet::{SimpleNet, SimpleNetConfig};
use diffuse::rng::{normal_vec, seeded, uniform_ints};
use diffuse::schedule::eps_mse;
use diffuse::toy::{train_fused, ToyConfig};
use diffuse::train::OptimConfig;

/// The gradients of `model`'s parameters in visiting order (the fused layout), flattened.
fn grads_in_order(model: &SimpleNet, grads: &GradientsParams) -> Vec<Vec<f32>> {
    struct Get<'a>(&'a GradientsParams, Vec<Vec<f32>>);
    impl ModuleVisitor for Get<'_> {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            let g = self
                .0
                .get::<D>(param.id)
                .expect("every parameter has a gradient");
            self.1.push(to_vec(g));
        }
    }
    let mut v = Get(grads, Vec::new());
    model.visit(&mut v);
    v.1
}

/// Splits a flat vector in the fused layout into per-parameter pieces shaped like `like`.
fn split_like(flat: &[f32], like: &[Vec<f32>]) -> Vec<Vec<f32>> {
    let mut off = 0;
    like.iter()
        .map(|p| {
            let v = flat[off..off + p.len()].to_vec();
            off += p.len();
            v
        })
        .collect()
}

fn params_in_order(model: &SimpleNet) -> Vec<Vec<f32>> {
    diffuse::train::flat_params(model)
        .into_iter()
        .map(to_vec)
        .collect()
}

/// A batch: x_t, ε (b × 2) and `k` group timesteps.
fn batch(b: usize, k: usize, seed: u64) -> (Vec<f32>, Vec<f32>, Vec<usize>) {
    let mut rng = seeded(seed, 9);
    let x: Vec<f32> = normal_vec(&mut rng, 2 * b);
    let e = normal_vec(&mut rng, 2 * b);
    let t = uniform_ints(&mut rng, k, 1000);
    (x, e, t)
}

/// burn's loss and gradients for the same batch (per-row timesteps expanded from the groups).
fn burn_loss_grads(model: &SimpleNet, x: &[f32], e: &[f32], t: &[usize]) -> (f32, Vec<Vec<f32>>) {
    let device = Device::flex().autodiff();
    let b = x.len() / 2;
    let xt = Tensor::<2>::from_data(TensorData::new(x.to_vec(), [b, 2]), &device);
    let eps = Tensor::<2>::from_data(TensorData::new(e.to_vec(), [b, 2]), &device);
    let pred = if t.len() == b {
        model.forward_steps(xt, t)
    } else {
        model
            .forward_grouped(xt, t)
            .expect("groups divide the batch")
    };
    let loss = eps_mse(eps, pred);
    let l = loss.clone().into_scalar::<f32>();
    let grads = GradientsParams::from_grads(loss.backward(), model);
    (l, grads_in_order(model, &grads))
}

fn check_step(dims: Vec<usize>, b: usize, k: usize) {
    let device = Device::flex().autodiff();
    let cfg = SimpleNetConfig { dims };
    let model = cfg.init(&mut seeded(3, 2), &device).unwrap();
    let (x, e, t) = batch(b, k, 5);
    let (want_loss, want) = burn_loss_grads(&model, &x, &e, &t);
    let mut tr = fused::trainer(&model, &OptimConfig::default()).unwrap();
    let loss = tr.loss_and_grad(&x, &e, &t).unwrap();
    // Every value passes through ~2·layers GEMMs of inner length ≤ max(256, b) (the sinusoid
    // width, or the batch for weight gradients), summed in a different order by each kernel.
    let rtol = f32_rtol(256.max(b), 2 * cfg.dims.len());
    assert!(
        (loss - want_loss as f64).abs() <= rtol * want_loss as f64,
        "loss {loss} vs burn {want_loss}"
    );
    let got = split_like(&tr.grad, &want);
    let names = ["fc.w", "fc.b", "mlp0.w", "mlp0.b", "mlp2.w", "mlp2.b"];
    for (i, (g, w)) in got.iter().zip(&want).enumerate() {
        let what = format!("{:?} b{b} k{k} layer {} {}", cfg.dims, i / 6, names[i % 6]);
        assert_close(g, w, rtol, &what);
    }
}

#[test]
fn fused_gradients_equal_autodiff_reference_dims() {
    check_step(SimpleNetConfig::default().dims, 128, 128);
}

#[test]
fn fused_gradients_equal_autodiff_grouped_and_odd_dims() {
    // Timestep groups (the `best` recipe's batch layout) and widths that are no multiple of
    // any SIMD width.
    check_step(vec![2, 24, 13, 2], 96, 8);
    check_step(SimpleNetConfig::default().dims, 512, 32);
}

#[test]
fn fused_adam_with_clipping_equals_burn_adam() {
    // The same gradients fed to both optimizers for four steps at changing learning rates,
    // with the global-norm clip active: the update formulas must agree to f32 rounding.
    let device = Device::flex().autodiff();
    let optim = OptimConfig {
        lr: 3e-3,
        grad_clip: Some(0.05),
        warmup_steps: 3,
        ..OptimConfig::default()
    };
    let mut model = SimpleNetConfig {
        dims: vec![2, 32, 32, 2],
    }
    .init(&mut seeded(1, 2), &device)
    .unwrap();
    let mut tr = fused::trainer(&model, &optim).unwrap();
    let mut adam = optim.adam();
    let mut clipped = false;
    for step in 0..4 {
        let (x, e, t) = batch(64, 64, 10 + step as u64);
        let xt = Tensor::<2>::from_data(TensorData::new(x, [64, 2]), &device);
        let eps = Tensor::<2>::from_data(TensorData::new(e, [64, 2]), &device);
        let loss = eps_mse(eps, model.forward_steps(xt, &t));
        let grads = loss.backward();
        let raw = GradientsParams::from_grads(grads, &model);
        let flat: Vec<f32> = grads_in_order(&model, &raw).concat();
        let norm = flat.iter().map(|g| (*g as f64).powi(2)).sum::<f64>().sqrt();
        clipped |= norm > 0.05;
        tr.grad.copy_from_slice(&flat);
        let lr = optim.lr_at(step, 10);
        tr.adam_step(lr);
        let g = diffuse::train::clip_params(raw, &model, optim.grad_clip);
        model = adam.step(lr, model, g);
        let want = params_in_order(&model);
        let got = split_like(&tr.net.params, &want);
        for (i, (a, b)) in got.iter().zip(&want).enumerate() {
            // Both compute the same f32 expressions element-wise; the clip scale's norm is
            // summed in a different order (relative error ~√n·u on a factor ≤ 1). Per element:
            // a few ulps of |θ| plus 1e-4 of one step's largest move (lr·√(1−β₂ᵗ)/(1−β₁ᵗ)·|m|/√v ≤ ~3·lr).
            for (p, q) in a.iter().zip(b) {
                let tol = 8.0 * f32::EPSILON * q.abs() + 1e-4 * 3.0 * lr as f32;
                assert!(
                    (p - q).abs() <= tol,
                    "step {step} param {i}: fused {p} vs burn {q} (tol {tol:e})"
                );
            }
        }
    }
    assert!(clipped, "the test must exercise the clip");
}

#[test]
fn fused_sampling_forward_equals_burn_forward() {
    let device = Device::flex();
    let model = SimpleNetConfig::default()
        .init(&mut seeded(4, 2), &device)
        .unwrap();
    let fused = FusedDenoiser::new(&model).unwrap();
    let x = normal_vec(&mut seeded(6, 1), 2 * 2048);
    let xt = Tensor::<2>::from_data(TensorData::new(x.clone(), [2048, 2]), &device);
    for t in [0usize, 17, 999] {
        let want = to_vec(model.forward_steps(xt.clone(), &[t]));
        let got = fused.eps_host(&x, t);
        assert_close(&got, &want, f32_rtol(256, 8), &format!("eps at t={t}"));
    }
}

#[test]
fn flat_weights_round_trip_into_the_model() {
    let device = Device::flex();
    let model = SimpleNetConfig::default()
        .init(&mut seeded(8, 2), &device)
        .unwrap();
    let flat = flat_net(&model).unwrap();
    assert_eq!(flat.params.len(), model.num_params());
    let doubled: Vec<f32> = flat.params.iter().map(|v| 2.0 * v).collect();
    let m2 = fused::write_into(&flat, &doubled, model);
    assert_eq!(flat_net(&m2).unwrap().params, doubled);
}

#[test]
fn fused_training_is_reproducible() {
    // Same seed, same threads → the same losses and weights, bit for bit.
    let cfg = ToyConfig {
        num_points: 4096,
        steps: 30,
        ema_decay: Some(0.99),
        ..ToyConfig::default()
    };
    let run = || train_fused(&cfg, &Device::flex(), false).unwrap();
    let (a, b) = (run(), run());
    assert_eq!(a.losses, b.losses);
    let pa = flat_net(&a.sampling_model()).unwrap().params;
    let pb = flat_net(&b.sampling_model()).unwrap().params;
    assert_eq!(pa, pb);
    // Training moved the weights, and the EMA differs from the raw weights.
    let raw = flat_net(&a.model.valid()).unwrap().params;
    assert_ne!(raw, pa);
    assert!(a.losses.iter().all(|(_, l)| l.is_finite()));
}

#[test]
fn fused_and_autodiff_training_see_the_same_first_batch() {
    // Same initialisation, data order, timesteps and noise: the loss of step 0 (before any
    // update) agrees, for the reference layout and for the `best` recipe's timestep groups.
    use diffuse::toy::{train_autodiff, Recipe};
    for cfg in [ToyConfig::default(), Recipe::Best.config()] {
        let cfg = ToyConfig {
            num_points: 4096,
            steps: 1,
            ..cfg
        };
        let a = train_fused(&cfg, &Device::flex(), false).unwrap();
        let b = train_autodiff(&cfg, &Device::flex().autodiff(), false).unwrap();
        let (la, lb) = (a.losses[0].1, b.losses[0].1);
        // One forward pass: inner lengths ≤ 256, 8 GEMMs deep.
        let rtol = f32_rtol(256, 8);
        assert!(
            (la - lb).abs() <= rtol * lb,
            "t_groups {:?}: fused loss {la} vs autodiff {lb}",
            cfg.t_groups
        );
    }
}

/// EMA weights after `steps` steps of a run with EMA 0.999 and warm-up.
fn ema_run(
    train: fn(&ToyConfig, &Device, bool) -> diffuse::Result<diffuse::toy::TrainedToy>,
    device: &Device,
    steps: usize,
) -> (Vec<f32>, Vec<f32>) {
    let cfg = ToyConfig {
        num_points: 4096,
        steps,
        ema_decay: Some(0.999),
        ema_warmup: true,
        ..ToyConfig::default()
    };
    let t = train(&cfg, device, false).unwrap();
    (
        flat_net(&t.model.valid()).unwrap().params,
        flat_net(&t.sampling_model()).unwrap().params,
    )
}

#[test]
fn ema_follows_the_warm_up_formula_on_both_paths() {
    // With warm-up the decay of update k is min(0.999, (1+k)/(10+k)): 0.1, then 2/11. So after
    // two steps the EMA is d₁·(0.1·θ₀ + 0.9·θ₁) + (1−d₁)·θ₂, where θ₀ is the initialisation
    // and θ₁ the weights after one step (a one-step run: the constant lr does not depend on
    // the step count). Checked per element to a few f32 roundings of the weights' size.
    use diffuse::toy::train_autodiff;
    let cfg = ToyConfig::default();
    let theta0 = flat_net(
        &cfg.net
            .init(
                &mut seeded(cfg.seed, diffuse::toy::stream::INIT),
                &Device::flex(),
            )
            .unwrap(),
    )
    .unwrap()
    .params;
    for (name, train, device) in [
        (
            "fused",
            train_fused as fn(&_, &_, bool) -> _,
            Device::flex(),
        ),
        (
            "autodiff",
            train_autodiff as fn(&_, &_, bool) -> _,
            Device::flex().autodiff(),
        ),
    ] {
        let (theta1, _) = ema_run(train, &device, 1);
        let (theta2, ema2) = ema_run(train, &device, 2);
        let d1 = 2.0f32 / 11.0;
        for i in 0..theta0.len() {
            let want = d1 * (0.1 * theta0[i] + 0.9 * theta1[i]) + (1.0 - d1) * theta2[i];
            let scale = theta0[i].abs().max(theta1[i].abs()).max(theta2[i].abs());
            assert!(
                (ema2[i] - want).abs() <= 4.0 * f32::EPSILON * scale,
                "{name}: EMA element {i} = {}, want {want}",
                ema2[i]
            );
        }
    }
}

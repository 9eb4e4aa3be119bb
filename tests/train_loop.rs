//! The training loop's device-side pieces: EMA, global-norm clipping, the batched loss read and
//! mixed precision, each against a brute-force host computation.
mod common;

use burn::module::Module;
use burn::nn::{Linear, LinearConfig};
use burn::prelude::*;
use burn::tensor::FloatDType;
use diffuse::train::{autocast, clip_grads, Ema, LossReader};

/// A two-layer MLP with deterministic weights (bench/torch/common.py's formula).
#[derive(Module, Debug)]
struct Mlp {
    a: Linear,
    b: Linear,
}

fn mlp(dev: &Device, seed: u64) -> Mlp {
    let mut a = LinearConfig::new(6, 5).init(dev);
    let mut b = LinearConfig::new(5, 3).init(dev);
    common::det_linear(&mut a, seed, dev);
    common::det_linear(&mut b, seed + 10, dev);
    Mlp { a, b }
}

impl Mlp {
    fn forward(&self, x: Tensor<2>) -> Tensor<2> {
        self.b
            .forward(burn::tensor::activation::silu(self.a.forward(x)))
    }
    /// Every float parameter, flattened in visiting order.
    fn flat(&self) -> Vec<Vec<f32>> {
        let m = self.valid();
        let mut v = vec![common::to_vec(m.a.weight.val())];
        v.push(common::to_vec(m.a.bias.as_ref().unwrap().val()));
        v.push(common::to_vec(m.b.weight.val()));
        v.push(common::to_vec(m.b.bias.as_ref().unwrap().val()));
        v
    }
}

fn loss(m: &Mlp, dev: &Device) -> Tensor<1> {
    let x = common::tensor2(common::det(4 * 6, 7, 1.5), 6, dev);
    let y = common::tensor2(common::det(4 * 3, 8, 1.0), 3, dev);
    (m.forward(x) - y).square().mean()
}

/// Gradients of [`loss`] as host vectors, via `clip_grads(…, max_norm)`.
fn grads(m: &Mlp, dev: &Device, max_norm: Option<f64>) -> Vec<Vec<f32>> {
    let g = clip_grads(loss(m, dev).backward(), m, max_norm);
    let get = |p: &burn::module::Param<Tensor<2>>| common::to_vec(g.get::<2>(p.id).unwrap());
    let get1 = |p: &burn::module::Param<Tensor<1>>| common::to_vec(g.get::<1>(p.id).unwrap());
    vec![
        get(&m.a.weight),
        get1(m.a.bias.as_ref().unwrap()),
        get(&m.b.weight),
        get1(m.b.bias.as_ref().unwrap()),
    ]
}

fn norm(v: &[Vec<f32>]) -> f64 {
    v.iter()
        .flatten()
        .map(|&x| (x as f64).powi(2))
        .sum::<f64>()
        .sqrt()
}

#[test]
fn ema_on_the_device_matches_the_host_formula() {
    let dev = Device::flex().autodiff();
    let m0 = mlp(&dev, 1);
    let mut ema = Ema::new(&m0, 0.9, true);
    let mut host = m0.flat();
    for (k, seed) in [2u64, 3, 4].into_iter().enumerate() {
        let m = mlp(&dev, seed);
        // The warm-up decay min(0.9, (1+k)/(10+k)), rounded to f32 as the update does.
        let d = 0.9f64.min((1.0 + k as f64) / (10.0 + k as f64)) as f32;
        assert_eq!(ema.current_decay() as f32, d);
        ema.update(&m);
        for (s, p) in host.iter_mut().zip(m.flat()) {
            for (a, b) in s.iter_mut().zip(p) {
                *a = d * *a + (1.0 - d) * b;
            }
        }
    }
    assert_eq!(ema.updates, 3);
    let got = ema.apply(m0.valid()).flat();
    // Three element-wise f32 updates of values of size ~1: a few ulps whichever way the
    // backend rounds (fused multiply-add or not).
    for (g, h) in got.iter().zip(&host) {
        for (a, b) in g.iter().zip(h) {
            assert!((a - b).abs() <= 1e-6 * (1.0 + b.abs()), "{a} vs {b}");
        }
    }
    // And the averaged weights differ from both the first and the last model.
    assert!(common::max_abs_diff(&got[0], &m0.flat()[0]) > 1e-3);
}

#[test]
fn clipping_rescales_to_the_global_norm_like_pytorch() {
    let dev = Device::flex().autodiff();
    let m = mlp(&dev, 1);
    let raw = grads(&m, &dev, None);
    let n = norm(&raw);
    assert!(n > 0.1, "test needs a non-trivial gradient, got norm {n}");
    // Below the threshold nothing changes (PyTorch multiplies by min(1, ·) = 1).
    let same = grads(&m, &dev, Some(2.0 * n));
    for (a, b) in same.iter().zip(&raw) {
        assert_eq!(a, b);
    }
    // Above it every gradient is scaled by max/(‖g‖ + 1e-6): the norm becomes ~max.
    let max = n / 4.0;
    let clipped = grads(&m, &dev, Some(max));
    let scale = max / (n + 1e-6);
    for (a, b) in clipped.iter().flatten().zip(raw.iter().flatten()) {
        // f32 sums of ~60 squares on the device against an f64 sum here.
        assert!(
            ((*a as f64) - scale * (*b as f64)).abs() <= 1e-5 * (b.abs() as f64 * scale + 1e-6),
            "{a} vs {}",
            scale * *b as f64
        );
    }
    assert!((norm(&clipped) - max).abs() < 1e-5 * max);
}

#[test]
fn losses_are_read_in_batches_and_a_non_finite_one_names_its_step() {
    let dev = Device::flex().autodiff();
    let mut r = LossReader::new(3);
    let mut out = Vec::new();
    for (step, v) in [(0usize, 0.5f32), (1, 0.25)] {
        r.push(step, Tensor::from_data(TensorData::new(vec![v], [1]), &dev));
        assert!(!r.due());
    }
    r.push(2, loss(&mlp(&dev, 1), &dev));
    assert!(r.due());
    let last = r.flush(&mut out).unwrap().unwrap();
    assert_eq!(out.len(), 3);
    assert_eq!(out[..2], [(0, 0.5), (1, 0.25)]);
    assert_eq!((out[2].0, out[2].1), (2, last));
    assert!(!r.due() && r.flush(&mut out).unwrap().is_none());
    r.push(
        3,
        Tensor::from_data(TensorData::new(vec![1.0f32], [1]), &dev),
    );
    r.push(
        4,
        Tensor::from_data(TensorData::new(vec![f32::NAN], [1]), &dev),
    );
    let err = r.flush(&mut out).unwrap_err().to_string();
    assert!(err.contains("step 4") && err.contains("NaN"), "{err}");
}

#[test]
fn mixed_precision_trains_the_f32_master_weights() {
    let dev = Device::flex().autodiff();
    let m = mlp(&dev, 1);
    let half = autocast(m.clone(), FloatDType::BF16);
    assert_eq!(half.a.weight.val().dtype(), burn::tensor::DType::BF16);
    assert_eq!(m.a.weight.val().dtype(), burn::tensor::DType::F32);
    let x = common::tensor2(common::det(4 * 6, 7, 1.5), 6, &dev);
    let y = common::tensor2(common::det(4 * 3, 8, 1.0), 3, &dev);
    let out = half.forward(x.cast(FloatDType::BF16)).cast(FloatDType::F32);
    let l = (out - y).square().mean();
    let g = burn::optim::GradientsParams::from_grads(l.backward(), &m);
    let gw = g
        .get::<2>(m.a.weight.id)
        .expect("gradient of the f32 master weight");
    assert_eq!(gw.dtype(), burn::tensor::DType::F32);
    // bf16 keeps 8 bits of mantissa: the gradient agrees with the f32 one to ~1e-2 of its
    // size (a few roundings of ~2^-9 each through two layers), and is not the same numbers.
    let bf = common::to_vec(gw);
    let f32g = grads(&m, &dev, None).swap_remove(0);
    let scale = f32g.iter().fold(0f32, |a, b| a.max(b.abs()));
    let diff = common::max_abs_diff(&bf, &f32g);
    assert!(
        diff <= 3e-2 * scale,
        "bf16 gradient off by {diff} (scale {scale})"
    );
    assert!(diff > 0.0, "the forward did not run in bf16");
}

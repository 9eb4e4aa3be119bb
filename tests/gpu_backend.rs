//! The GPU code path, tested without a GPU: everything a GPU run goes through in burn and
//! CubeCL — kernel generation and compilation, fusion, autotune, autodiff on a cube backend,
//! device memory and read-back — runs here on burn's wgpu backend, on whatever adapter
//! `DIFFUSE_TEST_DEVICE` names (default `wgpu:cpu`: Mesa's lavapipe, a software Vulkan driver
//! that CI installs from Debian's `mesa-vulkan-drivers`). Each test computes the same thing on
//! the flex CPU backend (the reference every other test pins down) and compares.
//!
//! Tolerances: both sides compute in f32 but sum in different orders (a GPU reduction is a
//! tree, flex's GEMM blocks by cache size), so agreement is to a few units of f32 rounding
//! times the square root of the accumulation length, relative to the values' size: ~1e-5 for
//! one forward pass of the small UNet; the tolerances below leave a factor of ~10 above what
//! was measured (each test prints its figure).
//!
//! Built only with `--features wgpu`: `cargo test --release --features wgpu --test gpu_backend`.
#![cfg(feature = "wgpu")]
mod common;

use std::sync::Arc;

use burn::module::{Module, ModuleVisitor, Param};
use burn::prelude::*;
use burn::tensor::{DType, FloatDType};
use diffuse::data::digits::load_digits;
use diffuse::device::{DeviceSpec, Precision};
use diffuse::image::{self as img, ImageTrainConfig};
use diffuse::nn::unet::{labels_tensor, UNet, UNetConfig};
use diffuse::rng::{normal_vec, seeded};
use diffuse::sampling::{Guidance, GuidanceConfig, GuidanceConvention, SamplerKind, SamplerSpec};
use diffuse::schedule::NoiseSchedule;

/// The device under test (`DIFFUSE_TEST_DEVICE`, default `wgpu:cpu`).
fn gpu() -> Device {
    let name = std::env::var("DIFFUSE_TEST_DEVICE").unwrap_or_else(|_| "wgpu:cpu".into());
    let spec: DeviceSpec = name.parse().expect("DIFFUSE_TEST_DEVICE names a device");
    diffuse::device::open(&spec).unwrap_or_else(|e| {
        panic!(
            "{e}\n(these tests need a wgpu adapter; CI installs Mesa's lavapipe: \
             apt-get install mesa-vulkan-drivers)"
        )
    })
}

/// The digits UNet (32 channels, attention at 4×4) without dropout: each backend draws dropout
/// masks from its own generator, so with dropout on the two runs would differ by design.
fn net_config() -> UNetConfig {
    UNetConfig {
        dropout: 0.0,
        ..UNetConfig::digits()
    }
}

fn host(t: Tensor<4>) -> Vec<f32> {
    t.into_data().convert::<f32>().try_to_vec().unwrap()
}

/// max |a − b| / max |b|: the error relative to the values' scale.
fn rel_err(a: &[f32], b: &[f32]) -> f64 {
    assert_eq!(a.len(), b.len());
    let scale = b.iter().fold(0f64, |m, v| m.max(v.abs() as f64)).max(1e-30);
    let diff = a
        .iter()
        .zip(b)
        .fold(0f64, |m, (x, y)| m.max((*x as f64 - *y as f64).abs()));
    diff / scale
}

/// ‖a − b‖₂ / ‖b‖₂ over all values.
fn rel_l2(a: &[f32], b: &[f32]) -> f64 {
    assert_eq!(a.len(), b.len());
    let (mut d, mut n) = (0f64, 0f64);
    for (x, y) in a.iter().zip(b) {
        d += (*x as f64 - *y as f64).powi(2);
        n += (*y as f64).powi(2);
    }
    (d / n.max(1e-300)).sqrt()
}

/// Every float parameter of a module, flattened in visiting order, on the host.
fn params(m: &UNet) -> Vec<f32> {
    diffuse::train::flat_params(m)
        .into_iter()
        .flat_map(|t| t.into_data().convert::<f32>().try_to_vec::<f32>().unwrap())
        .collect()
}

/// Every parameter gradient, flattened in visiting order (zeros where a parameter has none).
fn grads(m: &UNet, g: &burn::tensor::Gradients) -> Vec<f32> {
    struct Collect<'a>(&'a burn::tensor::Gradients, Vec<f32>);
    impl ModuleVisitor for Collect<'_> {
        fn visit_float<const D: usize>(&mut self, p: &Param<Tensor<D>>) {
            let v = p.val();
            match v.grad(self.0) {
                Some(g) => self
                    .1
                    .extend(g.into_data().convert::<f32>().try_to_vec::<f32>().unwrap()),
                None => self.1.extend(vec![0.0; v.shape().num_elements()]),
            }
        }
    }
    let mut c = Collect(g, Vec::new());
    m.visit(&mut c);
    c.1
}

/// A fixed batch of the digits shape: x_t, t, labels (one null-class label, as CFG training
/// drops some), and the ε target.
struct Batch {
    x: Vec<f32>,
    t: Vec<f32>,
    labels: Vec<usize>,
    eps: Vec<f32>,
}

fn batch() -> Batch {
    let mut rng = seeded(11, 0);
    let n = 4 * 8 * 8;
    Batch {
        x: normal_vec(&mut rng, n),
        t: vec![0.0, 17.0, 500.0, 999.0],
        labels: vec![1, 0, 7, 10],
        eps: normal_vec(&mut rng, n),
    }
}

/// The network at a seeded initialisation on `dev` (the values come from a host generator, so
/// both backends start from the same weights).
fn net(dev: &Device) -> UNet {
    net_config().init(dev, &mut seeded(3, 0)).unwrap()
}

/// (network output, loss, parameter gradients) for the fixed batch, in `precision`.
fn forward_backward(dev: &Device, precision: Precision) -> (Vec<f32>, f64, Vec<f32>) {
    let dev = dev.clone().autodiff();
    let b = batch();
    let model = net(&dev);
    let x = Tensor::<4>::from_data(TensorData::new(b.x, [4, 1, 8, 8]), &dev);
    let t = Tensor::<1>::from_data(TensorData::new(b.t, [4]), &dev);
    let eps = Tensor::<4>::from_data(TensorData::new(b.eps, [4, 1, 8, 8]), &dev);
    let labels = Some(labels_tensor(&b.labels, &dev));
    let out = match precision {
        Precision::F32 => model.forward(x, t, labels),
        p => diffuse::train::autocast(model.clone(), p.dtype())
            .forward(x.cast(p.dtype()), t, labels)
            .cast(FloatDType::F32),
    };
    let loss = (out.clone() - eps).square().mean();
    let g = loss.backward();
    let loss_v = loss.into_scalar::<f32>() as f64;
    let gr = grads(&model, &g);
    (host(out.inner()), loss_v, gr)
}

#[test]
fn forward_loss_and_gradients_match_the_cpu_in_f32() {
    let (out_c, loss_c, g_c) = forward_backward(&Device::flex(), Precision::F32);
    let (out_g, loss_g, g_g) = forward_backward(&gpu(), Precision::F32);
    let (e_out, e_loss, e_grad) = (
        rel_err(&out_g, &out_c),
        ((loss_g - loss_c) / loss_c).abs(),
        rel_l2(&g_g, &g_c),
    );
    eprintln!(
        "f32: output {e_out:.2e}, loss {loss_c} vs {loss_g} ({e_loss:.2e}), grads {e_grad:.2e}"
    );
    assert!(e_out < 1e-4, "output differs by {e_out:.2e} of its scale");
    assert!(e_loss < 1e-5, "loss {loss_g} vs {loss_c}");
    assert!(
        e_grad < 1e-4,
        "gradients differ by {e_grad:.2e} (relative L2)"
    );
    // The comparison can fail: another initialisation is far off.
    let other = net_config()
        .init(&Device::flex(), &mut seeded(4, 0))
        .unwrap();
    assert!(rel_l2(&params(&other), &params(&net(&Device::flex()))) > 0.5);
}

#[test]
fn mixed_precision_matches_the_cpu_or_is_refused_clearly() {
    let dev = gpu();
    if !dev.supports_dtype(DType::BF16) {
        // WGSL has no bf16 type: the wgpu backend cannot compute in it. The trainer must say
        // so, naming the flag, instead of failing inside a kernel.
        let e = Precision::Bf16.check(&dev).unwrap_err().to_string();
        assert!(e.contains("precision") && e.contains("f32"), "{e}");
        eprintln!("bf16 is not supported by this adapter: {e}");
        return;
    }
    let (out_c, loss_c, g_c) = forward_backward(&Device::flex(), Precision::Bf16);
    let (out_g, loss_g, g_g) = forward_backward(&dev, Precision::Bf16);
    let (e_out, e_loss, e_grad) = (
        rel_err(&out_g, &out_c),
        ((loss_g - loss_c) / loss_c).abs(),
        rel_l2(&g_g, &g_c),
    );
    eprintln!("bf16: output {e_out:.2e}, loss {e_loss:.2e}, grads {e_grad:.2e}");
    // bf16 keeps 8 significant bits (relative rounding 2⁻⁹ ≈ 2e-3 per operation).
    assert!(e_out < 5e-2 && e_loss < 1e-2 && e_grad < 1e-1);
}

/// A few real training steps (the trainer users run: batches, timesteps, noise, CFG label
/// dropping, loss, backward, Adam, EMA) on the digits.
fn train(dev: &Device, dir: &std::path::Path) -> img::TrainOutcome {
    train_steps(dev, dir, 3).unwrap()
}

/// `steps` of that training, checkpointing at step 3 and at the end.
fn train_steps(
    dev: &Device,
    dir: &std::path::Path,
    steps: usize,
) -> diffuse::Result<img::TrainOutcome> {
    let mut cfg = ImageTrainConfig::digits();
    cfg.unet = net_config();
    cfg.batch_size = 8;
    cfg.steps = steps;
    cfg.preview_every = 0;
    cfg.checkpoint_every = 3;
    cfg.ema_decay = Some(0.9);
    let data = Arc::new(load_digits(8).unwrap());
    img::train(&cfg, data, dir, false, &dev.clone().autodiff(), false)
}

#[test]
fn training_steps_adam_and_ema_match_the_cpu() {
    let cpu = train(&Device::flex(), &common::temp_dir("gpu-train-cpu"));
    let gpu = train(&gpu(), &common::temp_dir("gpu-train-gpu"));
    assert_eq!(cpu.losses.len(), 3);
    for ((s, lc), (_, lg)) in cpu.losses.iter().zip(&gpu.losses) {
        let e = ((lg - lc) / lc).abs();
        eprintln!("step {s}: loss {lc} (cpu) vs {lg} (gpu), {e:.2e}");
        assert!(e < 1e-4, "step {s}: loss {lg} vs {lc}");
    }
    // Adam moves every weight by about lr per step whatever the gradient's size, so a weight
    // whose gradient is ~0 can move either way on the two backends: compare the updates as a
    // whole (relative L2 of the difference of the weights, to the size of the update).
    // The trainer initialises from (seed, 2).
    let init = params(
        &net_config()
            .init(
                &Device::flex(),
                &mut seeded(ImageTrainConfig::digits().seed, 2),
            )
            .unwrap(),
    );
    let (wc, wg) = (params(&cpu.model.valid()), params(&gpu.model.valid()));
    let (ec, eg) = (params(&cpu.sampling_model()), params(&gpu.sampling_model()));
    let update: Vec<f32> = wc.iter().zip(&init).map(|(a, b)| a - b).collect();
    let upd_norm = update
        .iter()
        .map(|v| (*v as f64).powi(2))
        .sum::<f64>()
        .sqrt();
    let diff = |a: &[f32], b: &[f32]| {
        a.iter()
            .zip(b)
            .map(|(x, y)| (*x as f64 - *y as f64).powi(2))
            .sum::<f64>()
            .sqrt()
    };
    let (dw, de) = (diff(&wg, &wc) / upd_norm, diff(&eg, &ec) / upd_norm);
    eprintln!("weights differ by {dw:.2e} of the update, EMA by {de:.2e}");
    assert!(upd_norm > 0.0);
    assert!(
        dw < 1e-2,
        "weights after 3 steps differ by {dw:.2e} of the update"
    );
    assert!(de < 1e-2, "EMA weights differ by {de:.2e} of the update");
}

#[test]
fn a_guided_ddim_run_matches_the_cpu() {
    // A few DDIM steps with classifier-free guidance at the course's w = 7.5 (two network
    // calls per step, combined), from the same noise, on both backends.
    let schedule = NoiseSchedule::new(&Default::default()).unwrap();
    let spec = SamplerSpec {
        kind: SamplerKind::Ddim,
        steps: 4,
        ..Default::default()
    };
    let guidance = GuidanceConfig {
        scale: Guidance::new(7.5, GuidanceConvention::Reference).unwrap(),
        ..Default::default()
    };
    let images = |dev: &Device| {
        let model = net(dev);
        img::Generator::new(&model, (1, 8, 8), &schedule, spec)
            .guided(guidance, None)
            .generate(&[1, 2, 3, 9], 5, 4, None)
            .unwrap()
    };
    let (c, g) = (images(&Device::flex()), images(&gpu()));
    let e = rel_err(&g, &c);
    eprintln!("guided DDIM images differ by {e:.2e} of their scale");
    assert!(e < 1e-3, "guided DDIM images differ by {e:.2e}");
}

/// mean((conv(x) − ε)²) with the convolution's output handed over (its last reference moved
/// into the subtraction), as the trainer's loss does with the network's output. burn-cubecl
/// convolves in NHWC and returns an NCHW view; with one output channel that view is
/// `[B, 1, H, W]` with strides `[HW, 1, W, 1]`, and upstream fusion wrote the fused result
/// into that buffer in place and got it wrong (here 42.219 for 0.97794; the step-0 training loss
/// of the one-channel digits UNet was 0.584 for 0.994). Fixed in vendor/burn-cubecl-fusion.
#[test]
fn a_one_channel_convolution_feeds_a_fused_block_correctly() {
    use burn::tensor::module::conv2d;
    use burn::tensor::ops::ConvOptions;
    let loss = |dev: &Device, c_out: usize| {
        let mut rng = seeded(6, 0);
        let mut t = |shape: [usize; 4]| -> Tensor<4> {
            let n = shape.iter().product();
            Tensor::from_data(TensorData::new(normal_vec(&mut rng, n), shape), dev)
        };
        let (x, w) = (t([4, 32, 8, 8]), t([c_out, 32, 3, 3]));
        let eps = t([4, c_out, 8, 8]);
        let options = ConvOptions::new([1, 1], [1, 1], [1, 1], 1);
        let out = conv2d(x, w * 0.01, None, options);
        (out - eps).square().mean().into_scalar::<f32>() as f64
    };
    for c_out in [1, 3] {
        let (c, g) = (loss(&Device::flex(), c_out), loss(&gpu(), c_out));
        eprintln!("{c_out} output channel(s): {c} (cpu) vs {g} (gpu)");
        // One mean of 256·c_out squares of O(1) values: f32 rounding, far below 1e-5.
        assert!(((g - c) / c).abs() < 1e-5, "{c_out} channels: {g} vs {c}");
    }
}

/// Kernel launches per training step of the digits UNet on this backend, with diffuse's
/// CubeCL kernels (fused GroupNorm+SiLU, multi-tensor Adam + EMA) and with burn's composed
/// operations (`KernelOptions::fused_group_norm` off, `DIFFUSE_FUSED_ADAM=0`). A step is the
/// difference between a 3-step and a 1-step run (same set-up and final checkpoint), halved;
/// each configuration runs once first so that no autotune benchmark is counted.
#[test]
fn our_kernels_cut_the_launches_per_training_step() {
    let dev = gpu();
    let saved = diffuse_kernels::options();
    let per_step = |ours: bool| {
        let mut o = diffuse_kernels::options();
        o.fused_group_norm = ours;
        diffuse_kernels::set_options(o);
        // Read by `FusedAdam::for_model` when a run is set up; the tests of this file run one
        // at a time in CI (`--test-threads=1`).
        std::env::set_var("DIFFUSE_FUSED_ADAM", if ours { "1" } else { "0" });
        let run = |steps: usize| {
            let dir = common::temp_dir("gpu-launches");
            diffuse::device::count_launches(|| train_steps(&dev, &dir, steps))
        };
        run(3).0.unwrap();
        let (one, three) = (run(1).1, run(3).1);
        let mut step = std::collections::BTreeMap::new();
        for (k, n) in &three.0 {
            let d = *n as i64 - *one.0.get(k).unwrap_or(&0) as i64;
            if d != 0 {
                step.insert(k.clone(), d as f64 / 2.0);
            }
        }
        let total = (three.total() as f64 - one.total() as f64) / 2.0;
        (total, step)
    };
    let (burns, burns_kinds) = per_step(false);
    let (ours, ours_kinds) = per_step(true);
    std::env::remove_var("DIFFUSE_FUSED_ADAM");
    diffuse_kernels::set_options(saved);
    eprintln!("launches per training step: burn's operations {burns}, with our kernels {ours}");
    eprintln!("burn's: {burns_kinds:?}");
    eprintln!("ours:   {ours_kinds:?}");
    let n = |m: &std::collections::BTreeMap<String, f64>, name: &str| {
        m.iter()
            .filter(|(k, _)| k.contains(name))
            .map(|(_, v)| v)
            .sum::<f64>()
    };
    // Our kernels run (GroupNorm+SiLU: forward 1, backward 2 launches, the second summing over
    // the batch; Adam + EMA) only when asked, and the step launches fewer kernels.
    assert!(n(&ours_kinds, "SumOverBatch") > 0.0 && n(&ours_kinds, "AdamEma") > 0.0);
    assert!(n(&burns_kinds, "SumOverBatch") == 0.0 && n(&burns_kinds, "AdamEma") == 0.0);
    assert!(
        ours < burns,
        "{ours} launches per step with our kernels, {burns} without"
    );
}

#[test]
fn a_missing_adapter_is_an_error_that_lists_what_there_is() {
    let spec: DeviceSpec = "wgpu:discrete:7".parse().unwrap();
    let e = diffuse::device::open(&spec).unwrap_err().to_string();
    assert!(e.contains("could not start wgpu:discrete:7"), "{e}");
    assert!(
        e.contains("adapters found") || e.contains("no adapter"),
        "{e}"
    );
}

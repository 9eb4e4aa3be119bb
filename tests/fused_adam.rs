//! `train::FusedAdam`, the multi-tensor Adam + EMA update the image trainer runs on CubeCL
//! devices, against burn's Adam (`OptimConfig::adam`) followed by `train::Ema::update`, and its
//! state's round trip through burn's optimizer record (what `optim.bin` and `--resume` hold).
//!
//! On the CPU (every build) FusedAdam runs burn's composed operations: it must give the very
//! values burn's optimizer gives, and its state must convert to the same `optim.bin` bytes.
//! With `--features wgpu` it runs the fused kernel on wgpu's CPU adapter (Mesa's lavapipe, or
//! `DIFFUSE_TEST_DEVICE`) and is compared with burn's Adam on flex: within 8·k ulps of each
//! tensor's scale after k steps (GPU compilers may contract a·b + c into an FMA, and WGSL's
//! sqrt and division are not correctly rounded; `crates/diffuse-kernels/tests/adam_cube.rs`).
use burn::module::{Module, ModuleVisitor, Param};
use burn::optim::{GradientsParams, ModuleOptimizer};
use burn::prelude::*;
use diffuse::checkpoint::optimizer::{optimizer_bytes, param_ids, set_param_ids};
use diffuse::nn::unet::{UNet, UNetConfig};
use diffuse::rng::{normal_vec, seeded};
use diffuse::train::{clip_params, flat_params, Ema, FusedAdam, OptimConfig};

/// A small UNet (the digits one, without dropout), parameter ids 1..=n as the trainer sets
/// them, on `device` with autodiff.
fn model(device: &Device) -> UNet {
    // Loaded optimizer states go to the CPU, as in the program (a GPU build's default device
    // may be absent here).
    diffuse::device::load_states_on_the_cpu();
    let cfg = UNetConfig {
        dropout: 0.0,
        ..UNetConfig::digits()
    };
    let m = cfg
        .init(&device.clone().autodiff(), &mut seeded(7, 2))
        .unwrap();
    let n = param_ids(&m).len() as u64;
    set_param_ids(m, &(1..=n).collect::<Vec<_>>()).unwrap()
}

/// Seeded gradients for every parameter of `m` (the same values on every device), scaled so
/// that the global-norm clipping at 1.0 is active.
fn grads_for<M: Module>(m: &M, step: u64, device: &Device) -> GradientsParams {
    struct Make<'a>(GradientsParams, u64, u64, &'a Device);
    impl ModuleVisitor for Make<'_> {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            let dims: [usize; D] = param.val().dims();
            let n = dims.iter().product();
            self.2 += 1;
            let mut v = normal_vec(&mut seeded(1000 * self.1 + self.2, 9), n);
            v.iter_mut().for_each(|x| *x *= 0.05);
            let t = Tensor::<D>::from_data(TensorData::new(v, dims), self.3);
            self.0.register(param.id, t);
        }
    }
    let mut make = Make(GradientsParams::new(), step, 0, device);
    m.visit(&mut make);
    make.0
}

fn cfg() -> OptimConfig {
    OptimConfig {
        lr: 1e-3,
        grad_clip: Some(1.0),
        ..OptimConfig::default()
    }
}

fn host_params(m: &UNet) -> Vec<Vec<f32>> {
    flat_params(m)
        .into_iter()
        .map(|t| t.into_data().convert::<f32>().try_to_vec::<f32>().unwrap())
        .collect()
}

/// `steps` steps of burn's Adam + Ema::update on `device`: (model, optimizer, EMA).
fn composed(device: &Device, steps: u64) -> (UNet, ModuleOptimizer, Ema) {
    let cfg = cfg();
    let mut m = model(device);
    let mut opt = cfg.adam();
    let mut ema = Ema::new(&m, 0.995, true);
    for k in 0..steps {
        let g = clip_params(grads_for(&m, k, device), &m, cfg.grad_clip);
        m = opt.step(cfg.lr_at(k as usize, 10), m, g);
        ema.update(&m);
    }
    (m, opt, ema)
}

/// The same with FusedAdam, continuing from `start` (a fresh model when None).
fn fused(
    device: &Device,
    from: u64,
    to: u64,
    start: Option<(UNet, FusedAdam, Ema)>,
) -> (UNet, FusedAdam, Ema) {
    let cfg = cfg();
    let (mut m, mut opt, mut ema) = start.unwrap_or_else(|| {
        let m = model(device);
        let n = param_ids(&m).len();
        let ema = Ema::new(&m, 0.995, true);
        (m, FusedAdam::new(&cfg, n), ema)
    });
    for k in from..to {
        let g = clip_params(grads_for(&m, k, device), &m, cfg.grad_clip);
        m = opt
            .step(cfg.lr_at(k as usize, 10), m, g, Some(&mut ema))
            .unwrap();
    }
    (m, opt, ema)
}

#[test]
fn fused_adam_on_the_cpu_is_burns_adam_and_ema() {
    let dev = Device::flex();
    let (m_ref, opt_ref, ema_ref) = composed(&dev, 3);
    let (m, opt, ema) = fused(&dev, 0, 3, None);
    assert_eq!(host_params(&m), host_params(&m_ref));
    let (e, e_ref) = (ema.apply(m.valid()), ema_ref.apply(m_ref.valid()));
    assert_eq!(host_params(&e), host_params(&e_ref));
    assert_eq!(ema.updates, 3);
    // The state saves as the same optim.bin burn's optimizer writes.
    let p = std::path::Path::new("optim.bin");
    let a = optimizer_bytes(&opt_ref, p).unwrap();
    let b = optimizer_bytes(&opt.to_optimizer(&cfg(), &m).unwrap(), p).unwrap();
    assert!(
        a == b,
        "optim.bin differs ({} vs {} bytes)",
        a.len(),
        b.len()
    );
    // And so it does written from the moments directly (what a training run's checkpoints do).
    let c = diffuse::checkpoint::optimizer::moments_bytes(opt.moments(&m).unwrap(), p).unwrap();
    assert!(a == c, "optim.bin from the moments differs");
    // The parameters still train: autodiff and require_grad kept on every one.
    struct Grad(usize, usize);
    impl ModuleVisitor for Grad {
        fn visit_float<const D: usize>(&mut self, p: &Param<Tensor<D>>) {
            self.0 += 1;
            self.1 += usize::from(p.val().is_require_grad());
        }
    }
    let mut g = Grad(0, 0);
    m.visit(&mut g);
    assert!(
        g.0 > 0 && g.0 == g.1,
        "{} of {} parameters require grad",
        g.1,
        g.0
    );
}

#[test]
fn optimizer_state_round_trips_through_burns_record() {
    let dev = Device::flex();
    let (m, opt, _) = composed(&dev, 2);
    let p = std::path::Path::new("optim.bin");
    let a = optimizer_bytes(&opt, p).unwrap();
    let f = FusedAdam::from_optimizer(&cfg(), &opt, &m).unwrap();
    let b = optimizer_bytes(&f.to_optimizer(&cfg(), &m).unwrap(), p).unwrap();
    assert!(a == b, "round trip changed optim.bin");
    // A state for another model is refused with an error, not a panic.
    let other = set_param_ids(
        model(&dev),
        &(1000..2000).take(param_ids(&m).len()).collect::<Vec<_>>(),
    )
    .unwrap();
    let e = FusedAdam::from_optimizer(&cfg(), &opt, &other).unwrap_err();
    assert!(e.to_string().contains("not in the model"), "{e}");
}

/// A run saved after 2 steps and resumed for a third ends where the uninterrupted run does.
fn resume_is_exact_on(dev: &Device) {
    let (m3, _, e3) = fused(dev, 0, 3, None);
    let (m2, f2, e2) = fused(dev, 0, 2, None);
    // Save: burn's record bytes; resume: a fresh FusedAdam from them, on a reloaded model.
    let p = std::path::Path::new("optim.bin");
    let bytes = optimizer_bytes(&f2.to_optimizer(&cfg(), &m2).unwrap(), p).unwrap();
    let loaded = cfg()
        .adam()
        .from_bytes(burn::tensor::Bytes::from_bytes_vec(bytes))
        .unwrap();
    let f2b = FusedAdam::from_optimizer(&cfg(), &loaded, &m2).unwrap();
    let (m3b, _, e3b) = fused(dev, 2, 3, Some((m2, f2b, e2)));
    assert_eq!(host_params(&m3b), host_params(&m3));
    assert_eq!(
        host_params(&e3b.apply(m3b.valid())),
        host_params(&e3.apply(m3.valid()))
    );
}

#[test]
fn resume_is_exact_on_the_cpu() {
    resume_is_exact_on(&Device::flex());
}

#[cfg(feature = "wgpu")]
mod gpu {
    use std::collections::HashMap;
    use std::sync::{Arc, Mutex, OnceLock};

    use burn::cubecl::logging::{LaunchObservation, LaunchObserver};

    use super::*;

    static SERIAL: Mutex<()> = Mutex::new(());

    fn serial() -> std::sync::MutexGuard<'static, ()> {
        SERIAL.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn gpu() -> Device {
        static DEVICE: OnceLock<Device> = OnceLock::new();
        DEVICE
            .get_or_init(|| {
                let name =
                    std::env::var("DIFFUSE_TEST_DEVICE").unwrap_or_else(|_| "wgpu:cpu".into());
                let spec: diffuse::device::DeviceSpec = name.parse().unwrap();
                diffuse::device::open(&spec).unwrap_or_else(|e| panic!("{e}"))
            })
            .clone()
    }

    /// max over tensors of max|a − b| / (ε·max|b|).
    fn ulps(a: &[Vec<f32>], b: &[Vec<f32>]) -> f64 {
        a.iter().zip(b).fold(0f64, |w, (x, y)| {
            let scale = y.iter().fold(0f64, |m, v| m.max(v.abs() as f64)).max(1e-30);
            let d = x
                .iter()
                .zip(y)
                .fold(0f64, |m, (p, q)| m.max((*p as f64 - *q as f64).abs()));
            w.max(d / (scale * f32::EPSILON as f64))
        })
    }

    #[test]
    fn fused_adam_on_wgpu_matches_burns_adam_on_the_cpu() {
        let _s = serial();
        let (m_ref, opt_ref, ema_ref) = composed(&Device::flex(), 3);
        let (m, opt, ema) = fused(&gpu(), 0, 3, None);
        let u = ulps(&host_params(&m), &host_params(&m_ref));
        let ue = ulps(
            &host_params(&ema.apply(m.valid())),
            &host_params(&ema_ref.apply(m_ref.valid())),
        );
        // The moments, through the optimizer record.
        let moments = |o: &ModuleOptimizer| -> Vec<Vec<f32>> {
            diffuse::checkpoint::optimizer::adam_moments(o)
                .unwrap()
                .into_iter()
                .flat_map(|s| {
                    [
                        s.m.try_to_vec::<f32>().unwrap(),
                        s.v.try_to_vec::<f32>().unwrap(),
                    ]
                })
                .collect()
        };
        let um = ulps(
            &moments(&opt.to_optimizer(&cfg(), &m).unwrap()),
            &moments(&opt_ref),
        );
        eprintln!("3 steps: θ {u:.2}, EMA {ue:.2}, moments {um:.2} ulps of the tensors' scale");
        for (what, x) in [("θ", u), ("EMA", ue), ("moments", um)] {
            assert!(x <= 24.0, "{what}: {x:.2} ulps");
        }
    }

    #[test]
    fn resume_is_exact_on_wgpu() {
        let _s = serial();
        resume_is_exact_on(&gpu());
    }

    #[derive(Default)]
    struct Count(Mutex<HashMap<&'static str, usize>>);

    impl LaunchObserver for Count {
        fn launched(&self, kernel: &'static str) {
            *self.0.lock().unwrap().entry(kernel).or_default() += 1;
        }
    }

    /// Kernel launches of one optimizer + EMA step (gradient clipping included) of the UNet
    /// `ucfg`: (parameter tensors, composed: burn's Adam then Ema::update, fused: FusedAdam),
    /// each counted on its second step (the first compiles and autotunes).
    fn launches(ucfg: &UNetConfig) -> (usize, usize, usize) {
        let dev = gpu();
        let cfg = cfg();
        let init = || {
            let m = ucfg
                .init(&dev.clone().autodiff(), &mut seeded(7, 2))
                .unwrap();
            let n = param_ids(&m).len() as u64;
            set_param_ids(m, &(1..=n).collect::<Vec<_>>()).unwrap()
        };
        let count = |f: &mut dyn FnMut()| -> usize {
            let c = Arc::new(Count::default());
            let watch = LaunchObservation::new(c.clone());
            f();
            dev.sync().unwrap();
            drop(watch);
            let names = c.0.lock().unwrap().clone();
            let total = names.values().sum();
            eprintln!("{total} launches: {names:?}");
            total
        };
        let mut m = init();
        let n_tensors = param_ids(&m).len();
        let mut opt = cfg.adam();
        let mut ema = Ema::new(&m, 0.995, true);
        let mut composed = 0;
        for k in 0..2u64 {
            let mut g = Some(grads_for(&m, k, &dev));
            dev.sync().unwrap();
            composed = count(&mut || {
                let g = clip_params(g.take().unwrap(), &m, cfg.grad_clip);
                let m2 = opt.step(1e-3, m.clone(), g);
                ema.update(&m2);
                m = m2;
            });
        }
        drop((m, opt, ema));
        let mut m = init();
        let mut f = FusedAdam::new(&cfg, n_tensors);
        let mut ema = Ema::new(&m, 0.995, true);
        let mut fused = 0;
        for k in 0..2u64 {
            let mut g = Some(grads_for(&m, k, &dev));
            dev.sync().unwrap();
            fused = count(&mut || {
                let g = clip_params(g.take().unwrap(), &m, cfg.grad_clip);
                m = f.step(1e-3, m.clone(), g, Some(&mut ema)).unwrap();
            });
        }
        (n_tensors, composed, fused)
    }

    #[test]
    fn fused_update_launches_fewer_kernels_digits_unet() {
        let _s = serial();
        let (n, composed, fused) = launches(&UNetConfig::digits());
        eprintln!(
            "digits UNet ({n} parameter tensors): optimizer + EMA step = {composed} launches \
             composed, {fused} fused"
        );
        // Fewer, not far fewer, here: a launch takes as many tensors as the device's buffer
        // bindings allow (9 each), and wgpu gives lavapipe 15 (one tensor per launch; CUDA
        // takes 32). The rest of the step is the gradient clipping's, the same both ways.
        if diffuse_kernels::adam::CUBE_KERNEL {
            assert!(fused < composed, "fused {fused}, composed {composed}");
        }
    }

    /// The AFHQ-size UNet (~545 parameter tensors): minutes on lavapipe, so run by hand:
    /// `cargo test --release --features wgpu --test fused_adam -- --ignored --nocapture`.
    #[test]
    #[ignore]
    fn fused_update_launches_fewer_kernels_afhq_unet() {
        let _s = serial();
        let (n, composed, fused) = launches(&UNetConfig::default());
        eprintln!(
            "AFHQ UNet ({n} parameter tensors): optimizer + EMA step = {composed} launches \
             composed, {fused} fused"
        );
        assert!(fused < composed, "fused {fused}, composed {composed}");
    }
}

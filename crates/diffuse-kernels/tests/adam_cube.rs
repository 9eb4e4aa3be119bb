//! The multi-tensor Adam + EMA kernel (`diffuse_kernels::adam`) on a CubeCL device, against
//! burn's composed operations (`adam_ema_composed`, the arithmetic of burn's Adam and of
//! `diffuse::train::Ema::update`) on the flex CPU backend and on the same device.
//!
//! The device is wgpu's CPU-type adapter (Mesa's lavapipe, which CI installs), or the adapter
//! `DIFFUSE_TEST_WGPU` names (`best`: wgpu's own pick). Built only with the `wgpu` feature:
//! `cargo test --release -p diffuse-kernels --features wgpu --test adam_cube`.
//!
//! Tolerance: the kernel does burn's f32 operations in burn's order, but a GPU compiler may
//! contract a·b + c into one fused multiply-add and WGSL's sqrt and division are accurate to a
//! few ulps, not correctly rounded. So after k steps each value is within 8·k ulps of the
//! tensor's scale (max |value| of that tensor in the reference): |a − b| ≤ 8·k·ε·max|b|,
//! ε = 2⁻²³. The figures measured are printed.
#![cfg(feature = "wgpu")]

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use burn::prelude::*;
use burn::tensor::wgpu::WgpuBackend;
use cubecl::logging::{LaunchObservation, LaunchObserver};
use diffuse_kernels::adam::{
    adam_ema, adam_ema_composed, adam_ema_fused, fused_applies, AdamEmaScalars, AdamEmaTensors,
    AdamHyper, MAX_TENSORS_PER_LAUNCH,
};

/// The device under test, opened once per process (wgpu initialises an adapter once).
fn gpu() -> Device {
    static DEVICE: OnceLock<Device> = OnceLock::new();
    DEVICE
        .get_or_init(|| {
            let kind = match std::env::var("DIFFUSE_TEST_WGPU").as_deref() {
                Ok("best") => burn::tensor::DeviceKind::DefaultDevice,
                _ => burn::tensor::DeviceKind::Cpu,
            };
            Device::wgpu_options()
                .device_kind(kind)
                .graphics_api(WgpuBackend::Auto)
                .init()
                .expect(
                    "a wgpu adapter (CI installs Mesa's lavapipe: apt-get install \
                     mesa-vulkan-drivers)",
                )
        })
        .clone()
}

/// Held by every test: the launch counter watches the whole process, so no other test may
/// launch kernels while it counts.
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// The reference device: burn's flex CPU backend.
fn cpu() -> Device {
    Device::flex()
}

/// A deterministic pseudo-random stream (SplitMix64) of values in [-scale, scale).
fn values(seed: u64, n: usize, scale: f32) -> Vec<f32> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15).wrapping_add(1);
    (0..n)
        .map(|_| {
            s = s.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = s;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^= z >> 31;
            ((z >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0) * scale
        })
        .collect()
}

fn tensor(v: &[f32], device: &Device) -> Tensor<1> {
    Tensor::from_data(TensorData::new(v.to_vec(), [v.len()]), device)
}

fn host(t: &Tensor<1>) -> Vec<f32> {
    t.clone()
        .into_data()
        .convert::<f32>()
        .try_to_vec::<f32>()
        .unwrap()
}

const HYPER: AdamHyper = AdamHyper {
    beta1: 0.9,
    beta2: 0.999,
    eps: 1e-8,
};

/// Host copies of the state: params, m, v, shadow (per tensor).
#[derive(Clone, Debug)]
struct HostState {
    params: Vec<Vec<f32>>,
    m: Vec<Vec<f32>>,
    v: Vec<Vec<f32>>,
    shadow: Vec<Vec<f32>>,
}

fn initial(sizes: &[usize], ema: bool) -> HostState {
    let params: Vec<Vec<f32>> = sizes
        .iter()
        .enumerate()
        .map(|(i, &n)| values(100 + i as u64, n, 0.5))
        .collect();
    HostState {
        m: sizes.iter().map(|&n| vec![0.0; n]).collect(),
        v: sizes.iter().map(|&n| vec![0.0; n]).collect(),
        shadow: if ema { params.clone() } else { Vec::new() },
        params,
    }
}

/// The gradients of step `step` (varying scales per tensor, a few exact zeros).
fn grads(sizes: &[usize], step: usize) -> Vec<Vec<f32>> {
    sizes
        .iter()
        .enumerate()
        .map(|(i, &n)| {
            let scale = 10f32.powi((i % 5) as i32 - 3);
            let mut g = values(1000 * step as u64 + i as u64, n, scale);
            if n > 3 {
                g[n / 2] = 0.0;
            }
            g
        })
        .collect()
}

/// The scalars of 1-based step `time`: a warm-up-like learning rate and the EMA's warm-up
/// decay, so both change every step.
fn scalars(time: usize, ema: bool) -> AdamEmaScalars {
    let lr = 1e-3 * (time as f64 / 4.0).min(1.0);
    let k = (time - 1) as f64;
    let decay = ema.then_some(0.995f64.min((1.0 + k) / (10.0 + k)) as f32);
    AdamEmaScalars::new(HYPER, time, lr, decay)
}

/// `steps` updates on `device`, fused or composed, from `initial`; the states after each step.
fn run(sizes: &[usize], ema: bool, steps: usize, device: &Device, fused: bool) -> Vec<HostState> {
    let init = initial(sizes, ema);
    let up = |list: &[Vec<f32>]| list.iter().map(|v| tensor(v, device)).collect::<Vec<_>>();
    let mut t = AdamEmaTensors {
        params: up(&init.params),
        grads: Vec::new(),
        m: up(&init.m),
        v: up(&init.v),
        shadow: up(&init.shadow),
    };
    let mut out = Vec::new();
    for step in 1..=steps {
        t.grads = up(&grads(sizes, step));
        let s = scalars(step, ema);
        t = if fused {
            assert!(fused_applies(&t), "the fused kernel applies on {device:?}");
            adam_ema_fused(t, &s).unwrap()
        } else {
            adam_ema_composed(t, &s)
        };
        let down = |l: &[Tensor<1>]| l.iter().map(host).collect::<Vec<_>>();
        out.push(HostState {
            params: down(&t.params),
            m: down(&t.m),
            v: down(&t.v),
            shadow: down(&t.shadow),
        });
    }
    out
}

/// The largest |a − b| over a tensor, in units of ε·max|b| (f32 ulps of the tensor's scale).
fn ulps(a: &[f32], b: &[f32]) -> f64 {
    assert_eq!(a.len(), b.len());
    let scale = b.iter().fold(0f64, |m, x| m.max(x.abs() as f64));
    if scale == 0.0 {
        return if a.iter().all(|x| *x == 0.0) {
            0.0
        } else {
            f64::INFINITY
        };
    }
    let d = a
        .iter()
        .zip(b)
        .fold(0f64, |m, (x, y)| m.max((*x as f64 - *y as f64).abs()));
    d / (scale * f32::EPSILON as f64)
}

/// Compares every step's state; returns the worst figure in ulps.
fn compare(what: &str, got: &[HostState], want: &[HostState]) -> f64 {
    let mut worst = 0f64;
    for (k, (g, w)) in got.iter().zip(want).enumerate() {
        let bound = 8.0 * (k + 1) as f64;
        let lists = [
            ("θ", &g.params, &w.params),
            ("m", &g.m, &w.m),
            ("v", &g.v, &w.v),
            ("s", &g.shadow, &w.shadow),
        ];
        for (name, a, b) in lists {
            assert_eq!(a.len(), b.len(), "{what}: {name} lists");
            for (i, (x, y)) in a.iter().zip(b.iter()).enumerate() {
                let u = ulps(x, y);
                worst = worst.max(u);
                assert!(
                    u <= bound,
                    "{what}: step {} {name}[{i}] (len {}) off by {u:.2} ulps of its scale (bound {bound})",
                    k + 1,
                    x.len()
                );
            }
        }
    }
    eprintln!("{what}: worst {worst:.2} ulps of the tensor's scale");
    worst
}

/// Odd sizes, a size-1 tensor, and more tensors than one launch takes.
fn many_sizes() -> Vec<usize> {
    let mut s = vec![1, 7, 33, 1000, 3 * 5 * 7, 4096 + 3];
    s.extend((0..MAX_TENSORS_PER_LAUNCH + 5).map(|i| 1 + 13 * i));
    s
}

#[test]
fn fused_matches_composed_on_cpu_and_gpu_with_ema() {
    let _serial = serial();
    let sizes = many_sizes();
    let gpu = gpu();
    let fused = run(&sizes, true, 5, &gpu, true);
    let cpu_ref = run(&sizes, true, 5, &cpu(), false);
    let gpu_ref = run(&sizes, true, 5, &gpu, false);
    compare("fused (wgpu) vs composed (flex)", &fused, &cpu_ref);
    compare("fused (wgpu) vs composed (wgpu)", &fused, &gpu_ref);
    // The update moved every parameter that had a non-zero gradient: a kernel that wrote
    // nothing (or only the first tensor of a launch) would fail here.
    let init = initial(&sizes, true);
    for (i, (after, before)) in fused[4].params.iter().zip(&init.params).enumerate() {
        let moved = after.iter().zip(before).filter(|(a, b)| a != b).count();
        assert!(
            moved + 1 >= after.len(),
            "tensor {i}: only {moved} of {} moved",
            after.len()
        );
    }
}

#[test]
fn fused_matches_composed_without_ema() {
    let _serial = serial();
    let sizes = [5, 1, 257, 64 * 3 * 3 * 3];
    let gpu = gpu();
    let fused = run(&sizes, false, 4, &gpu, true);
    let cpu_ref = run(&sizes, false, 4, &cpu(), false);
    assert!(fused.iter().all(|s| s.shadow.is_empty()));
    compare(
        "fused without EMA (wgpu) vs composed (flex)",
        &fused,
        &cpu_ref,
    );
}

#[test]
fn the_dispatching_update_runs_the_composed_one_on_the_cpu() {
    let _serial = serial();
    // Not a cube device: `adam_ema` is the composed path, bit for bit.
    let sizes = [9, 40];
    let dev = cpu();
    let init = initial(&sizes, true);
    let up = |list: &[Vec<f32>]| list.iter().map(|v| tensor(v, &dev)).collect::<Vec<_>>();
    let t = AdamEmaTensors {
        params: up(&init.params),
        grads: up(&grads(&sizes, 1)),
        m: up(&init.m),
        v: up(&init.v),
        shadow: up(&init.shadow),
    };
    assert!(!fused_applies(&t));
    assert!(adam_ema_fused(t.clone(), &scalars(1, true)).is_err());
    let a = adam_ema(t.clone(), &scalars(1, true)).unwrap();
    let b = adam_ema_composed(t, &scalars(1, true));
    for (x, y) in a.params.iter().zip(&b.params) {
        assert_eq!(host(x), host(y));
    }
}

#[test]
fn mismatched_lists_are_an_error() {
    let _serial = serial();
    let dev = gpu();
    let t = AdamEmaTensors {
        params: vec![tensor(&[1.0, 2.0], &dev)],
        grads: vec![tensor(&[1.0], &dev)],
        m: vec![tensor(&[0.0, 0.0], &dev)],
        v: vec![tensor(&[0.0, 0.0], &dev)],
        shadow: Vec::new(),
    };
    let e = adam_ema(t, &scalars(1, false)).unwrap_err();
    assert!(e.0.contains("tensor 0"), "{e}");
}

/// Counts kernel launches by name while installed.
#[derive(Default)]
struct Count(Mutex<HashMap<&'static str, usize>>);

impl LaunchObserver for Count {
    fn launched(&self, kernel: &'static str) {
        *self.0.lock().unwrap().entry(kernel).or_default() += 1;
    }
}

impl Count {
    fn total(&self) -> usize {
        self.0.lock().unwrap().values().sum()
    }
}

/// Launches of one update (after a warm-up update, so that compilation and autotuning are
/// out of the way), fused or composed.
fn launches(sizes: &[usize], fused: bool, device: &Device) -> usize {
    let init = initial(sizes, true);
    let up = |list: &[Vec<f32>]| list.iter().map(|v| tensor(v, device)).collect::<Vec<_>>();
    let mut t = AdamEmaTensors {
        params: up(&init.params),
        grads: up(&grads(sizes, 1)),
        m: up(&init.m),
        v: up(&init.v),
        shadow: up(&init.shadow),
    };
    let step = |t: AdamEmaTensors, k: usize| {
        if fused {
            adam_ema_fused(t, &scalars(k, true)).unwrap()
        } else {
            adam_ema_composed(t, &scalars(k, true))
        }
    };
    let g2 = up(&grads(sizes, 2));
    t = step(t, 1);
    device.sync().unwrap();
    t.grads = g2;
    let count = Arc::new(Count::default());
    let watching = LaunchObservation::new(count.clone());
    let t = step(t, 2);
    device.sync().unwrap();
    drop(watching);
    drop(t);
    let names = count.0.lock().unwrap().clone();
    eprintln!(
        "{} launches: {names:?}",
        if fused { "fused" } else { "composed" }
    );
    count.total()
}

#[test]
fn fused_update_launches_a_few_kernels_for_many_tensors() {
    let _serial = serial();
    let device = gpu();
    // 100 tensors: burn's composed chains need at least one kernel per tensor.
    let sizes: Vec<usize> = (0..100).map(|i| 3 + 7 * i).collect();
    let fused = launches(&sizes, true, &device);
    let composed = launches(&sizes, false, &device);
    eprintln!("100 tensors: fused {fused} launches, composed {composed}");
    // One launch per group of at most MAX_TENSORS_PER_LAUNCH tensors.
    assert!(
        fused >= sizes.len().div_ceil(MAX_TENSORS_PER_LAUNCH),
        "{fused}"
    );
    // At most one per tensor: a device with few buffer bindings per kernel takes one tensor
    // per launch (lavapipe through wgpu: 15 bindings, 9 per tensor); CUDA takes 32.
    assert!(
        fused <= sizes.len() && fused < composed,
        "fused: {fused} launches for {} tensors, composed {composed}",
        sizes.len()
    );
    assert!(composed >= sizes.len(), "composed: {composed}");
}

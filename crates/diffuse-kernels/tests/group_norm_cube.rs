//! The CubeCL GroupNorm (+ SiLU, + dropout) kernels (`src/group_norm/cube.rs`) on wgpu with a
//! CPU-type adapter (Mesa's lavapipe: the GPU code path without a GPU), against the CPU fused
//! kernel on the same inputs, whose statistics and sums run in f64 (and which
//! `tests/group_norm.rs` checks against burn's composed operations): the output and the
//! gradients of x, γ and β, at a UNet size and at odd sizes, with and without SiLU, with
//! dropout (the same mask bit for bit), through a non-contiguous view, without autodiff, and
//! repeatably. Also counts the kernel launches of one GroupNorm+SiLU forward+backward, burn's
//! composed operations against the fused kernels.
//!
//! Tolerances: the GPU sums in f32 — each unit adds its strided share of a (sample, group)
//! block in order, then a 256-wide tree — so its statistics carry ~√(n)·2⁻²⁴ relative error
//! for a block of n elements where the CPU's f64 sums carry none; [`f32_rtol`] (16·2⁻²⁴·
//! √(k·depth), norm-wise) with k = the block (statistics, dx) or the batch × positions (dγ,
//! dβ) and the depth of chained steps is the bound for two correct f32 implementations, as in
//! `tests/group_norm.rs`. A wrong channel, group or formula moves values by percents.
#![cfg(feature = "wgpu")]

use std::sync::Mutex;

use burn::module::Param;
use burn::nn::{GroupNorm, GroupNormConfig};
use burn::prelude::*;
use burn::tensor::DeviceKind;
use diffuse_kernels::group_norm::{
    group_norm_act, group_norm_act_composed, group_norm_act_fused, keep_mask, Epilogue,
};
use diffuse_testkit::{assert_close, f32_rtol, Normals};

/// One test at a time: the launch count watches the whole process.
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

fn gpu() -> Device {
    Device::wgpu(DeviceKind::Cpu)
}

#[derive(Clone, Copy, Debug)]
struct Case {
    b: usize,
    c: usize,
    h: usize,
    w: usize,
    groups: usize,
}

impl Case {
    fn n(&self) -> usize {
        self.b * self.c * self.h * self.w
    }
    fn shape(&self) -> [usize; 4] {
        [self.b, self.c, self.h, self.w]
    }
    fn block(&self) -> usize {
        self.c / self.groups * self.h * self.w
    }
}

/// A UNet layer (128 channels, 32 groups, 16×16): four channels, 1024 elements per block.
const REAL: Case = Case {
    b: 2,
    c: 128,
    h: 16,
    w: 16,
    groups: 32,
};
/// Odd sizes: blocks of 30 and 315 elements (fewer, and not a multiple of, the cube's 256
/// units), H·W of 15 and 63, a batch of one and of three, channel counts 6 and 40.
const ODD: [Case; 2] = [
    Case {
        b: 3,
        c: 6,
        h: 5,
        w: 3,
        groups: 3,
    },
    Case {
        b: 1,
        c: 40,
        h: 7,
        w: 9,
        groups: 8,
    },
];

/// The inputs of a case: x with per-channel offsets and scales (so the statistics matter), the
/// weights r of the loss L = Σ y·r, and γ around 1, β around 0.
struct Inputs {
    x: Vec<f32>,
    r: Vec<f32>,
    gamma: Vec<f32>,
    beta: Vec<f32>,
}

fn inputs(c: &Case, seed: u64) -> Inputs {
    let mut r = Normals::new(seed, 0);
    let x = r
        .vec(c.n())
        .iter()
        .enumerate()
        .map(|(i, v)| {
            let ch = (i / (c.h * c.w)) % c.c;
            3.0 * v * (1.0 + ch as f32 * 0.1) + ch as f32 * 0.5 - 2.0
        })
        .collect();
    let rv = r.vec(c.n());
    let mut p = Normals::new(seed, 1);
    let gamma = p.vec(c.c).iter().map(|v| 1.0 + 0.3 * v).collect();
    let beta = p.vec(c.c).iter().map(|v| 0.5 * v).collect();
    Inputs {
        x,
        r: rv,
        gamma,
        beta,
    }
}

fn norm(c: &Case, inp: &Inputs, dev: &Device) -> GroupNorm {
    let mut n = GroupNormConfig::new(c.groups, c.c).init(dev);
    n.gamma = Some(Param::from_tensor(Tensor::from_data(
        TensorData::new(inp.gamma.clone(), [c.c]),
        dev,
    )));
    n.beta = Some(Param::from_tensor(Tensor::from_data(
        TensorData::new(inp.beta.clone(), [c.c]),
        dev,
    )));
    n
}

fn to_vec<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data().convert::<f32>().try_to_vec::<f32>().unwrap()
}

#[derive(Clone, Copy, PartialEq)]
enum Path {
    Fused,
    Composed,
}

/// (y, dL/dx, dL/dγ, dL/dβ) on `dev` (autodiff), through a transposed view of x when asked.
fn run(
    c: &Case,
    inp: &Inputs,
    dev: &Device,
    path: Path,
    ep: Epilogue,
    transposed: bool,
) -> [Vec<f32>; 4] {
    let dev = dev.clone().autodiff();
    let leaf: Tensor<4> = if transposed {
        // The same values stored with H and W swapped, read through a swapped view.
        let mut xt = vec![0f32; c.n()];
        for bc in 0..c.b * c.c {
            for i in 0..c.h {
                for j in 0..c.w {
                    xt[bc * c.h * c.w + j * c.h + i] = inp.x[bc * c.h * c.w + i * c.w + j];
                }
            }
        }
        Tensor::from_data(TensorData::new(xt, [c.b, c.c, c.w, c.h]), &dev).require_grad()
    } else {
        Tensor::from_data(TensorData::new(inp.x.clone(), c.shape()), &dev).require_grad()
    };
    let x = if transposed {
        leaf.clone().swap_dims(2, 3)
    } else {
        leaf.clone()
    };
    let r: Tensor<4> = Tensor::from_data(TensorData::new(inp.r.clone(), c.shape()), &dev);
    let gn = norm(c, inp, &dev);
    let y = match path {
        Path::Fused => group_norm_act_fused(&gn, x, ep),
        Path::Composed => group_norm_act_composed(&gn, x, ep.silu),
    };
    let grads = (y.clone() * r).sum().backward();
    let gx = leaf.grad(&grads).expect("x grad");
    let gx = if transposed { gx.swap_dims(2, 3) } else { gx };
    let gg = gn.gamma.as_ref().unwrap().grad(&grads).expect("gamma grad");
    let gb = gn.beta.as_ref().unwrap().grad(&grads).expect("beta grad");
    [to_vec(y), to_vec(gx), to_vec(gg), to_vec(gb)]
}

fn ep(silu: bool) -> Epilogue {
    Epilogue {
        silu,
        dropout: 0.0,
        seed: 0,
    }
}

/// The GPU's fused result against the CPU's fused result (f64 statistics).
fn check(c: &Case, silu: bool, transposed: bool, seed: u64) {
    let inp = inputs(c, seed);
    let got = run(c, &inp, &gpu(), Path::Fused, ep(silu), transposed);
    let want = run(c, &inp, &Device::flex(), Path::Fused, ep(silu), transposed);
    compare(
        c,
        &got,
        &want,
        &format!("{c:?} silu={silu} transposed={transposed}"),
    );
}

fn compare(c: &Case, got: &[Vec<f32>; 4], want: &[Vec<f32>; 4], what: &str) {
    let per_channel = c.b * c.h * c.w;
    // y: the two statistics (a block-long sum each), then normalise, affine and SiLU.
    assert_close(
        &got[0],
        &want[0],
        f32_rtol(c.block(), 4),
        &format!("{what}: y"),
    );
    // dx: the statistics and two more block-long sums (mean(γ dz), mean(γ dz x̂)).
    assert_close(
        &got[1],
        &want[1],
        f32_rtol(c.block(), 8),
        &format!("{what}: dx"),
    );
    // dγ, dβ: sums over the batch and the positions of a channel.
    assert_close(
        &got[2],
        &want[2],
        f32_rtol(per_channel, 6),
        &format!("{what}: dgamma"),
    );
    assert_close(
        &got[3],
        &want[3],
        f32_rtol(per_channel, 6),
        &format!("{what}: dbeta"),
    );
}

#[test]
fn cube_group_norm_silu_matches_the_cpu_kernel() {
    let _g = serial();
    check(&REAL, true, false, 10);
    for (i, c) in ODD.iter().enumerate() {
        check(c, true, false, 11 + i as u64);
    }
}

#[test]
fn cube_group_norm_without_silu_matches_the_cpu_kernel() {
    let _g = serial();
    check(&REAL, false, false, 20);
    for (i, c) in ODD.iter().enumerate() {
        check(c, false, false, 21 + i as u64);
    }
}

#[test]
fn cube_group_norm_reads_a_non_contiguous_input() {
    let _g = serial();
    check(&ODD[1], true, true, 30);
}

/// Burn's composed operations on the same GPU compute the same function (a check of the
/// reference on this backend, and of the dispatch: `group_norm_act` takes the fused kernel).
#[test]
fn cube_fused_matches_composed_on_the_gpu() {
    let _g = serial();
    let c = &REAL;
    let inp = inputs(c, 35);
    let fused = run(c, &inp, &gpu(), Path::Fused, ep(true), false);
    let composed = run(c, &inp, &gpu(), Path::Composed, ep(true), false);
    compare(c, &fused, &composed, "gpu fused vs composed");
}

/// With dropout, the GPU drops exactly the elements the CPU drops for the same seed (the
/// counter-based mask of `keep_mask`), in the output and in every gradient.
#[test]
fn cube_dropout_mask_is_the_cpu_mask() {
    let _g = serial();
    let c = &REAL;
    let inp = inputs(c, 40);
    let ep = Epilogue {
        silu: true,
        dropout: 0.25,
        seed: 0xfeed_beef_1234_5678,
    };
    let got = run(c, &inp, &gpu(), Path::Fused, ep, false);
    let want = run(c, &inp, &Device::flex(), Path::Fused, ep, false);
    let (threshold, scale) = (
        (0.75f64 * (1u32 << 24) as f64).round() as u32,
        (1.0 / 0.75f64) as f32,
    );
    let dropped: Vec<bool> = (0..c.n())
        .map(|i| keep_mask(ep.seed, i, threshold, scale) == 0.0)
        .collect();
    let frac = dropped.iter().filter(|&&d| d).count() as f64 / c.n() as f64;
    assert!((frac - 0.25).abs() < 0.02, "dropped fraction {frac}");
    for (i, &d) in dropped.iter().enumerate() {
        // Dropped elements are exactly zero in y and dx... unless dx is nonzero through the
        // block-wide terms (dx depends on every element of the block), so only y is checked
        // element by element; dx and the parameter gradients are compared in value below.
        assert_eq!(
            got[0][i] == 0.0,
            d,
            "element {i}: dropped {d}, y {}",
            got[0][i]
        );
    }
    compare(c, &got, &want, "dropout 0.25");
}

/// Without autodiff (sampling), the forward alone.
#[test]
fn cube_inference_forward_matches_the_cpu_kernel() {
    let _g = serial();
    let c = &ODD[1];
    let inp = inputs(c, 50);
    let fwd = |dev: &Device| {
        let x: Tensor<4> = Tensor::from_data(TensorData::new(inp.x.clone(), c.shape()), dev);
        to_vec(group_norm_act_fused(&norm(c, &inp, dev), x, ep(true)))
    };
    assert_close(
        &fwd(&gpu()),
        &fwd(&Device::flex()),
        f32_rtol(c.block(), 4),
        "inference",
    );
}

/// The same inputs give the same bytes (fixed reduction trees, no atomics).
#[test]
fn cube_group_norm_is_deterministic() {
    let _g = serial();
    let c = &REAL;
    let inp = inputs(c, 60);
    let a = run(c, &inp, &gpu(), Path::Fused, ep(true), false);
    let b = run(c, &inp, &gpu(), Path::Fused, ep(true), false);
    assert!(a == b, "two runs differ");
}

/// Kernel launches of one GroupNorm+SiLU forward and backward (with the loss and the gradient
/// read-back around it, which both paths share), counted by CubeCL's launch observer: the
/// fused path must launch fewer kernels than burn's composed operations, and the difference
/// must be at least the composed GroupNorm's own ops minus the fused kernel's three. Printed
/// for BENCHMARKS.md (run with `--nocapture`).
#[test]
fn cube_fused_launches_fewer_kernels() {
    let _g = serial();
    let c = &REAL;
    let inp = inputs(c, 70);
    let dev = gpu();
    let count = |path: Path| {
        // A first run compiles (and autotunes) everything; the second is counted.
        run(c, &inp, &dev, path, ep(true), false);
        let (_, n) = launches(|| run(c, &inp, &dev, path, ep(true), false));
        n
    };
    let composed = count(Path::Composed);
    let fused = count(Path::Fused);
    println!("launches per GN+SiLU forward+backward (+ shared loss and read-back): composed {}, fused {}", composed.0, fused.0);
    println!("composed: {:?}", composed.1);
    println!("fused:    {:?}", fused.1);
    assert!(
        fused.0 + 4 <= composed.0,
        "fused {} vs composed {} launches",
        fused.0,
        composed.0
    );
    // And the dispatching entry point takes the fused kernel on this device.
    let x: Tensor<4> = Tensor::from_data(TensorData::new(inp.x.clone(), c.shape()), &dev);
    let gn = norm(c, &inp, &dev);
    group_norm_act(&gn, x.clone(), true).into_data();
    let (_, via_dispatch) = launches(|| to_vec(group_norm_act(&gn, x.clone(), true)));
    let (_, direct) = launches(|| to_vec(group_norm_act_fused(&gn, x, ep(true))));
    assert_eq!(
        via_dispatch.0, direct.0,
        "group_norm_act: {:?} vs {:?}",
        via_dispatch.1, direct.1
    );
}

/// Runs `f` and counts the kernels launched meanwhile (total, and per kernel name).
fn launches<T>(f: impl FnOnce() -> T) -> (T, (usize, std::collections::BTreeMap<String, usize>)) {
    use cubecl::logging::{LaunchObservation, LaunchObserver};
    use std::sync::Arc;

    #[derive(Default)]
    struct Count(Mutex<std::collections::BTreeMap<&'static str, usize>>);
    impl LaunchObserver for Count {
        fn launched(&self, kernel: &'static str) {
            *self
                .0
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .entry(kernel)
                .or_default() += 1;
        }
    }
    let count = Arc::new(Count::default());
    let watching = LaunchObservation::new(count.clone());
    let out = f();
    drop(watching);
    let m = count.0.lock().unwrap_or_else(|e| e.into_inner());
    let mut named = std::collections::BTreeMap::new();
    for (k, n) in m.iter() {
        let short = cubecl::config::type_name_format(k, cubecl::config::TypeNameFormatLevel::Short);
        *named.entry(short).or_default() += n;
    }
    (out, (named.values().sum(), named))
}

//! One 3×3 convolution layer of the AFHQ UNet (b16, 128 channels, 64×64): forward, and its
//! weight gradient computed (a) through autodiff (burn-flex as patched in vendor/burn-flex) and
//! (b) by burn-backend's default formulation (a convolution of the input by the output
//! gradient, batch and channel axes swapped), so the patch can be measured in isolation.
//!
//! `RAYON_NUM_THREADS=2 cargo run --release --example conv_bench -- [ITERS] [C] [HW] [BATCH]`
//! (`CONV_BENCH_FORWARD_ONLY=1`: the forward alone, for profiling it)
use std::time::Instant;

use burn::prelude::*;
use burn::tensor::module::conv2d;
use burn::tensor::ops::ConvOptions;
use diffuse::rng;

fn time(name: &str, iters: usize, mut f: impl FnMut()) {
    f();
    let t0 = Instant::now();
    for _ in 0..iters {
        f();
    }
    println!(
        "{name}: {:.1} ms",
        t0.elapsed().as_secs_f64() * 1e3 / iters as f64
    );
}

fn main() {
    let a: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|s| s.parse().ok())
        .collect();
    let iters = a.first().copied().unwrap_or(3);
    let c = a.get(1).copied().unwrap_or(128);
    let hw = a.get(2).copied().unwrap_or(64);
    let b = a.get(3).copied().unwrap_or(16);
    let mut r = rng::seeded(0, 0);
    let dev = Device::flex();
    let x = rng::normal_tensor(&mut r, [b, c, hw, hw], &dev);
    let w = rng::normal_tensor(&mut r, [c, c, 3, 3], &dev);
    let dy = rng::normal_tensor(&mut r, [b, c, hw, hw], &dev);
    let opts = || ConvOptions::new([1, 1], [1, 1], [1, 1], 1);
    println!("conv3x3 {c}->{c} @{hw}x{hw} b{b}");
    time("forward", iters, || {
        let _ = conv2d(x.clone(), w.clone(), None, opts()).into_data();
    });
    if std::env::var_os("CONV_BENCH_FORWARD_ONLY").is_some() {
        return;
    }
    time(
        "weight grad, burn-backend default formulation",
        iters,
        || {
            let g = conv2d(
                x.clone().swap_dims(0, 1),
                dy.clone().swap_dims(0, 1),
                None,
                opts(),
            );
            let _ = g.swap_dims(0, 1).into_data();
        },
    );
    let ad = dev.clone().autodiff();
    let xa = Tensor::from_data(x.to_data(), &ad);
    let wa = Tensor::from_data(w.to_data(), &ad).require_grad();
    let dya = Tensor::from_data(dy.to_data(), &ad);
    time(
        "forward + weight grad through autodiff (patched)",
        iters,
        || {
            let y = conv2d(xa.clone(), wa.clone(), None, opts());
            let g = (y * dya.clone()).sum().backward();
            let _ = wa.grad(&g).unwrap().into_data();
        },
    );
    let xg = Tensor::from_data(x.to_data(), &ad).require_grad();
    let wc = Tensor::from_data(w.to_data(), &ad);
    time("forward + input grad through autodiff", iters, || {
        let y = conv2d(xg.clone(), wc.clone(), None, opts());
        let g = (y * dya.clone()).sum().backward();
        let _ = xg.grad(&g).unwrap().into_data();
    });
}

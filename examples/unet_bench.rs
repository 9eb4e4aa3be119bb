//! UNet timing at the reference AFHQ configuration (compare with `bench/torch/unet_torch.py bench`):
//! a training step (forward + MSE + backward + Adam) at batch 16, 64×64, and a forward pass at
//! batch 32 without autodiff (one CFG network call of DDIM sampling a batch of 16).
//!
//! `RAYON_NUM_THREADS=2 cargo run --release --example unet_bench -- [ITERS] [train|fwd|all] [WARMUP]`
//! (`ops` times the UNet's building blocks one by one.) Environment:
//! - `DIFFUSE_DEVICE=cuda|vulkan|cpu`: the device (GPU ones need a binary built with
//!   `--features cuda` or `--features vulkan`);
//! - `UNET_BENCH_PRECISION=f32|bf16`: bf16 runs the network as `diffuse image train
//!   --precision bf16` does (f32 master weights and Adam, bf16 forward/backward), and the
//!   forward pass with bf16 weights;
//! - `UNET_BENCH_BATCH=N`: the training batch (default 16);
//! - `UNET_BENCH_TINY=1`: a 32-channel network on 16×16 images, to dry-run the plumbing.
use std::time::Instant;

use burn::nn::loss::{MseLoss, Reduction};
use burn::optim::{AdamConfig, GradientsParams, ModuleOptimizer};
use burn::prelude::*;
use burn::tensor::FloatDType;
use diffuse::device::{DeviceKind, Precision};
use diffuse::nn::unet::{labels_tensor, UNetConfig};
use diffuse::rng;
use diffuse::train::autocast;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

fn timed(name: &str, warm: usize, iters: usize, mut f: impl FnMut()) -> f64 {
    for _ in 0..warm {
        f();
    }
    let ts: Vec<f64> = (0..iters)
        .map(|_| {
            let t0 = Instant::now();
            f();
            t0.elapsed().as_secs_f64()
        })
        .collect();
    let min = ts.iter().cloned().fold(f64::INFINITY, f64::min);
    let m = median(ts);
    println!(
        "BENCH burn {name}: median {:.1} ms  min {:.1} ms  (n={iters})",
        m * 1e3,
        min * 1e3
    );
    m
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let iters: usize = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(3);
    let which = args.get(2).cloned().unwrap_or_else(|| "all".into());
    let warm: usize = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(1);
    println!(
        "RAYON_NUM_THREADS={:?}",
        std::env::var("RAYON_NUM_THREADS").ok()
    );
    let tiny = std::env::var("UNET_BENCH_TINY").as_deref() == Ok("1");
    let cfg = if tiny {
        UNetConfig {
            channels: 32,
            image_size: 16,
            ..UNetConfig::default()
        }
    } else {
        UNetConfig::default()
    };
    let hw = cfg.image_size;
    let mut r = rng::seeded(0, 0);
    let kind = match std::env::var("DIFFUSE_DEVICE").as_deref() {
        Ok("vulkan") => DeviceKind::Vulkan,
        Ok("cuda") => DeviceKind::Cuda,
        _ => DeviceKind::Cpu,
    };
    let precision = match std::env::var("UNET_BENCH_PRECISION").as_deref() {
        Ok("bf16") => Precision::Bf16,
        _ => Precision::F32,
    };
    let base = match diffuse::device::device(kind) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(2);
        }
    };
    if let Err(e) = precision.check(&base) {
        eprintln!("error: {e}");
        std::process::exit(2);
    }
    println!(
        "device {kind:?}, precision {precision:?}, network {} channels at {hw}x{hw}",
        cfg.channels
    );
    let dtype = precision.dtype();

    if which == "all" || which == "train" {
        let dev = base.clone().autodiff();
        let mut net = Some(cfg.init(&dev, &mut r).unwrap());
        let mut opt: ModuleOptimizer = AdamConfig::new().with_epsilon(1e-8).init();
        // UNET_BENCH_BATCH overrides the batch (for profiling at a smaller size).
        let b: usize = std::env::var("UNET_BENCH_BATCH")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(16);
        let x = rng::normal_tensor(&mut r, [b, 3, hw, hw], &dev);
        let eps = rng::normal_tensor(&mut r, [b, 3, hw, hw], &dev);
        let t: Vec<f32> = rng::uniform_ints(&mut r, b, 1000)
            .into_iter()
            .map(|v| v as f32)
            .collect();
        let t: Tensor<1> = Tensor::from_data(TensorData::new(t, [b]), &dev);
        let labels: Vec<usize> = rng::uniform_ints(&mut r, b, 3)
            .into_iter()
            .map(|v| v + 1)
            .collect();
        let step = || {
            let n = net.take().unwrap();
            let t0 = Instant::now();
            let labels = Some(labels_tensor(&labels, &dev));
            let out = match precision {
                Precision::F32 => n.forward(x.clone(), t.clone(), labels),
                p => autocast(n.clone(), p.dtype())
                    .forward(x.clone().cast(p.dtype()), t.clone(), labels)
                    .cast(FloatDType::F32),
            };
            let loss = MseLoss::new().forward(out, eps.clone(), Reduction::Mean);
            let _ = loss.clone().into_scalar::<f32>();
            let t1 = Instant::now();
            let grads = loss.backward();
            let t2 = Instant::now();
            let g = GradientsParams::from_grads(grads, &n);
            net = Some(opt.step(2e-4, n, g));
            dev.sync().unwrap();
            let t3 = Instant::now();
            println!(
                "  fwd {:.0} ms, bwd {:.0} ms, adam {:.0} ms",
                (t1 - t0).as_secs_f64() * 1e3,
                (t2 - t1).as_secs_f64() * 1e3,
                (t3 - t2).as_secs_f64() * 1e3
            );
        };
        timed("unet_train_step(b16,64x64)", warm, iters, step);
        memory(&base, "training");
    }
    if which == "ops" {
        ops(&base, warm, iters);
    }
    if which == "all" || which == "fwd" {
        // Sampling runs the weights in the training precision (bf16: the EMA cast once).
        let net = autocast(cfg.init(&base, &mut r).unwrap(), dtype);
        let x = rng::normal_tensor(&mut r, [32, 3, hw, hw], &base).cast(dtype);
        let labels: Vec<usize> = rng::uniform_ints(&mut r, 32, 4);
        let m = timed("unet_forward(b32)", warm, iters, || {
            let t: Tensor<1> = Tensor::from_data(TensorData::new(vec![500f32], [1]), &base);
            let y = net.forward(x.clone(), t, Some(labels_tensor(&labels, &base)));
            base.sync().unwrap();
            drop(y);
        });
        println!(
            "BENCH burn ddim50_cfg_per_image (50 x forward(b32) / 16, network only): {:.1} ms",
            m * 50.0 / 16.0 * 1e3
        );
        memory(&base, "forward");
    }
}

/// The device memory burn's pools hold (GPU backends; pages are kept for reuse, so after a
/// phase this is close to its peak).
fn memory(dev: &Device, phase: &str) {
    if let Some(u) = dev.memory_pool_usage() {
        println!(
            "burn GPU memory after {phase}: {:.2} GiB reserved, {:.2} GiB in use",
            u.bytes_reserved as f64 / (1u64 << 30) as f64,
            u.bytes_in_use as f64 / (1u64 << 30) as f64
        );
    }
}

/// The forward pass's building blocks at their AFHQ sizes (batch 32: one CFG call), one by one,
/// to find a slow kernel on a backend.
fn ops(dev: &Device, warm: usize, iters: usize) {
    use burn::nn::{conv::Conv2dConfig, GroupNormConfig, LinearConfig, PaddingConfig2d};
    use burn::tensor::activation::silu;
    use burn::tensor::module::attention;
    use burn::tensor::ops::AttentionModuleOptions;
    let mut r = rng::seeded(1, 0);
    for (c, hw) in [(128usize, 64usize), (256, 32), (256, 16)] {
        let x = rng::normal_tensor(&mut r, [32, c, hw, hw], dev);
        let conv = Conv2dConfig::new([c, c], [3, 3])
            .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
            .init(dev);
        timed(
            &format!("conv3x3 {c}->{c} @{hw}x{hw} b32"),
            warm,
            iters,
            || {
                let y = conv.forward(x.clone());
                dev.sync().unwrap();
                drop(y);
            },
        );
        let gn = GroupNormConfig::new(32, c).init(dev);
        timed(
            &format!("groupnorm {c} @{hw}x{hw} b32"),
            warm,
            iters,
            || {
                let y = gn.forward(x.clone());
                dev.sync().unwrap();
                drop(y);
            },
        );
        timed(&format!("silu {c} @{hw}x{hw} b32"), warm, iters, || {
            let y = silu(x.clone());
            dev.sync().unwrap();
            drop(y);
        });
    }
    // Attention at the 32×32 level: 1024 tokens of 256 channels, one head.
    let q = rng::normal_tensor(&mut r, [32, 1, 1024, 256], dev);
    timed("attention 1024 tokens x 256 b32", warm, iters, || {
        let y = attention(
            q.clone(),
            q.clone(),
            q.clone(),
            None,
            None,
            AttentionModuleOptions::default(),
        );
        dev.sync().unwrap();
        drop(y);
    });
    let a = rng::normal_tensor(&mut r, [32 * 1024, 256], dev);
    let lin = LinearConfig::new(256, 768).init(dev);
    timed("linear 256->768 on 32768 rows", warm, iters, || {
        let y = lin.forward(a.clone());
        dev.sync().unwrap();
        drop(y);
    });
    let m = rng::normal_tensor(&mut r, [4096, 4096], dev);
    timed("matmul 4096^3", warm, iters, || {
        let y = m.clone().matmul(m.clone());
        dev.sync().unwrap();
        drop(y);
    });
}

//! `diffuse doctor`: what a bug report needs — the build (version, profile, features), the
//! backend, the CPU and the SIMD paths its kernels take, the thread count — and a short
//! self-check of the numerics (a few seconds): products, convolutions and a convolution
//! gradient against brute force in f64, the kernels the dispatch picks for the real networks
//! (Winograd at ≥ 32 channels with both gradients, fused GroupNorm+SiLU, softmax) against f64, the noise schedule against its closed form, a short
//! training run twice (finite, falling, bit-identical), an image encode/decode round trip.
use std::fmt::Write as _;
use std::time::Instant;

use burn::prelude::*;
use burn::tensor::module::conv2d;
use burn::tensor::ops::ConvOptions;

use crate::rng::{normal_vec, seeded};
use crate::schedule::{NoiseSchedule, ScheduleConfig};

/// One line of the environment report: (label, value).
pub type Fact = (&'static str, String);

/// Every cargo feature this binary was built with, and what the absent GPU ones would add.
pub fn compiled_features() -> String {
    let all = [
        ("cli", cfg!(feature = "cli")),
        ("wgpu", cfg!(feature = "wgpu")),
        ("vulkan", cfg!(feature = "vulkan")),
        ("cuda", cfg!(feature = "cuda")),
    ];
    let on: Vec<&str> = all.iter().filter(|(_, on)| *on).map(|(f, _)| *f).collect();
    let gpu = ["wgpu", "vulkan", "cuda"];
    if on.iter().any(|f| gpu.contains(f)) {
        on.join(", ")
    } else {
        format!(
            "{} (CPU only; `--features wgpu`, `vulkan` or `cuda` add a GPU backend)",
            if on.is_empty() {
                "none".to_string()
            } else {
                on.join(", ")
            }
        )
    }
}

/// The build, backend, CPU, threads and OS, as labelled lines.
pub fn facts() -> Vec<Fact> {
    let mut out: Vec<Fact> = Vec::new();
    let profile = if cfg!(debug_assertions) {
        "debug (slow: build with --release)"
    } else {
        "release"
    };
    out.push((
        "build",
        format!(
            "diffuse {} ({profile}), {}-{}",
            env!("CARGO_PKG_VERSION"),
            std::env::consts::ARCH,
            std::env::consts::OS
        ),
    ));
    out.push(("features", compiled_features()));
    let gpu: Vec<&str> = [
        ("wgpu", cfg!(feature = "wgpu")),
        ("vulkan", cfg!(feature = "vulkan")),
        ("cuda", cfg!(feature = "cuda")),
    ]
    .iter()
    .filter(|(_, on)| *on)
    .map(|(f, _)| *f)
    .collect();
    out.push((
        "backend",
        format!(
            "burn 0.22.1, flex CPU backend (vendored, patched conv weight gradient){}",
            if gpu.is_empty() {
                String::new()
            } else {
                format!("; GPU: --device {}", gpu.join(" | --device "))
            }
        ),
    ));
    #[cfg(any(feature = "wgpu", feature = "vulkan"))]
    {
        let found = crate::device::adapters();
        out.push((
            "wgpu adapters",
            if found.is_empty() {
                "none found (a GPU needs its Vulkan driver; Mesa's lavapipe runs on the CPU)".into()
            } else {
                found.join("; ")
            },
        ));
    }
    #[cfg(any(feature = "wgpu", feature = "vulkan", feature = "cuda"))]
    out.push((
        "gpu caches",
        match crate::device::cache_dir() {
            Some(d) => format!(
                "{} (DIFFUSE_CACHE_DIR overrides, off disables)",
                d.display()
            ),
            None => "off (DIFFUSE_CACHE_DIR)".into(),
        },
    ));
    out.push(("cpu", cpu_model()));
    out.push(("cpu features", cpu_features()));
    out.push(("kernels", kernel_paths()));
    let env = std::env::var("RAYON_NUM_THREADS").unwrap_or_else(|_| "unset".into());
    out.push((
        "threads",
        format!(
            "{} worker threads (RAYON_NUM_THREADS {env}; --threads overrides), {} logical CPUs",
            rayon::current_num_threads(),
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1)
        ),
    ));
    if let Some(m) = memory() {
        out.push(("memory", m));
    }
    if let Ok(k) = std::fs::read_to_string("/proc/sys/kernel/osrelease") {
        out.push(("kernel", k.trim().to_string()));
    }
    out
}

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_string())
        })
        .unwrap_or_else(|| "unknown".into())
}

/// The x86 features that decide which kernels run, detected at run time.
#[cfg(target_arch = "x86_64")]
fn x86_features() -> Vec<(&'static str, bool)> {
    macro_rules! f {
        ($($name:tt),*) => { vec![$(($name, std::arch::is_x86_feature_detected!($name))),*] };
    }
    f!(
        "sse4.2",
        "avx",
        "avx2",
        "fma",
        "f16c",
        "avx512f",
        "avx512bw",
        "avx512cd",
        "avx512dq",
        "avx512vl",
        "avx512vnni",
        "avx512bf16",
        "avx512fp16"
    )
}

/// AMX tiles, which the standard library cannot detect on stable Rust yet: the kernel's flags.
#[cfg(target_arch = "x86_64")]
fn amx_flags() -> Vec<(&'static str, bool)> {
    let flags = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("flags"))
                .map(|l| l.to_string())
        })
        .unwrap_or_default();
    let words: Vec<&str> = flags.split_whitespace().collect();
    [
        ("amx-tile", "amx_tile"),
        ("amx-bf16", "amx_bf16"),
        ("amx-int8", "amx_int8"),
    ]
    .into_iter()
    .map(|(name, flag)| (name, words.contains(&flag)))
    .collect()
}

fn cpu_features() -> String {
    #[cfg(target_arch = "x86_64")]
    {
        let mut all = x86_features();
        all.extend(amx_flags());
        let on: Vec<&str> = all.iter().filter(|f| f.1).map(|f| f.0).collect();
        let off: Vec<&str> = all.iter().filter(|f| !f.1).map(|f| f.0).collect();
        let mut s = on.join(" ");
        if !off.is_empty() {
            s.push_str(&format!(" (not: {})", off.join(" ")));
        }
        s
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        format!("{} (not detected here)", std::env::consts::ARCH)
    }
}

/// Which code paths the CPU kernels take on this machine: burn-flex's element-wise and
/// reduction kernels dispatch on the x86-64 level (macerator: v4 = AVX-512 F/BW/CD/DQ/VL,
/// v3 = AVX2 + FMA), matrix products on gemm's own choice (FMA kernels or scalar; its AVX-512
/// kernels, enabled through gemm's `x86-v4` feature, run where the CPU has the v4 set), and the
/// switches of `diffuse_kernels::KernelOptions` (the fused GroupNorm/softmax kernels run at
/// AVX-512, AVX2 or baseline width, which give the same bits). Different GEMM paths round
/// differently, which is why golden tests compare with tolerances.
fn kernel_paths() -> String {
    format!("{}; {}", cpu_paths(), switches())
}

/// The kernel switches in force (`KernelOptions`, with its environment overrides).
fn switches() -> String {
    let o = diffuse_kernels::options();
    let on = |b: bool| if b { "on" } else { "off" };
    format!(
        "fused GroupNorm {}, fused softmax {} (at {}); Winograd {:?}",
        on(o.fused_group_norm),
        on(o.fused_softmax),
        diffuse_kernels::effective_simd(&o).name(),
        o.winograd.variant
    )
}

/// The element-wise and matrix-product paths this CPU takes.
fn cpu_paths() -> String {
    #[cfg(target_arch = "x86_64")]
    {
        let has = |n: &str| x86_features().iter().any(|f| f.0 == n && f.1);
        let level = if ["avx512f", "avx512bw", "avx512cd", "avx512dq", "avx512vl"]
            .iter()
            .all(|f| has(f))
        {
            "v4 (AVX-512)"
        } else if has("avx2") && has("fma") {
            "v3 (AVX2+FMA)"
        } else if has("sse4.2") {
            "v2 (SSE4.2)"
        } else {
            "scalar"
        };
        let v4 = level.starts_with("v4");
        let gemm = if v4 {
            "AVX-512 kernels"
        } else if has("fma") {
            "FMA kernels"
        } else {
            "scalar kernels"
        };
        format!("element-wise {level}; matrix products: gemm {gemm}")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        "portable".into()
    }
}

fn memory() -> Option<String> {
    let s = std::fs::read_to_string("/proc/meminfo").ok()?;
    let kb = |key: &str| -> Option<f64> {
        let line = s.lines().find(|l| l.starts_with(key))?;
        line.split_whitespace().nth(1)?.parse::<f64>().ok()
    };
    let gib = |v: f64| v / (1024.0 * 1024.0);
    Some(format!(
        "{:.1} GiB total, {:.1} GiB available",
        gib(kb("MemTotal:")?),
        gib(kb("MemAvailable:").unwrap_or(0.0))
    ))
}

/// Outcome of one self-check.
#[derive(Debug, Clone)]
pub struct Check {
    pub name: &'static str,
    pub passed: bool,
    /// What was measured, e.g. "max error 0.03 of the bound".
    pub detail: String,
    pub seconds: f64,
}

/// Largest ratio |got − want| / bound over the elements (≤ 1 passes); NaN counts as failing.
pub fn worst_ratio(got: &[f32], want: &[f64], bound: &[f64]) -> f64 {
    if got.len() != want.len() {
        return f64::INFINITY;
    }
    got.iter()
        .zip(want)
        .zip(bound)
        .map(|((&g, &w), &b)| {
            let r = (g as f64 - w).abs() / b;
            if r.is_nan() {
                f64::INFINITY
            } else {
                r
            }
        })
        .fold(0.0, f64::max)
}

/// f32 rounding bound of a sum of `k` products: each partial sum may round by one unit
/// (2⁻²⁴ relative), so |error| ≤ k · 2⁻²⁴ · Σ|a·b| (Higham, Accuracy and Stability, §3.1,
/// to first order), plus the rounding of the inputs to f32. Factor 2 for FMA-vs-not slack.
fn dot_bound(k: usize, abs_sum: f64) -> f64 {
    2.0 * (k as f64 + 2.0) * f32::EPSILON as f64 / 2.0 * abs_sum + 1e-30
}

fn to_vec<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data().try_to_vec::<f32>().unwrap_or_default()
}

fn ratio_check(ratio: f64, extra: &str) -> (bool, String) {
    (
        ratio <= 1.0,
        format!("max error {ratio:.3} of the f32 rounding bound{extra}"),
    )
}

/// A [m×k]·[k×n] product on `dev` against f64 brute force.
fn check_matmul(dev: &Device, m: usize, k: usize, n: usize, seed: u64) -> (bool, String) {
    let mut r = seeded(seed, 0);
    let a = normal_vec(&mut r, m * k);
    let b = normal_vec(&mut r, k * n);
    let ta: Tensor<2> = Tensor::from_data(TensorData::new(a.clone(), [m, k]), dev);
    let tb: Tensor<2> = Tensor::from_data(TensorData::new(b.clone(), [k, n]), dev);
    let got = to_vec(ta.clone().matmul(tb.clone()));
    let again = to_vec(ta.matmul(tb));
    let mut want = vec![0f64; m * n];
    let mut bound = vec![0f64; m * n];
    for i in 0..m {
        for j in 0..n {
            let (mut s, mut sa) = (0f64, 0f64);
            for p in 0..k {
                let v = a[i * k + p] as f64 * b[p * n + j] as f64;
                s += v;
                sa += v.abs();
            }
            want[i * n + j] = s;
            bound[i * n + j] = dot_bound(k, sa);
        }
    }
    let ratio = worst_ratio(&got, &want, &bound);
    let same = got
        .iter()
        .zip(&again)
        .all(|(x, y)| x.to_bits() == y.to_bits());
    let (ok, d) = ratio_check(ratio, if same { "; repeat identical" } else { "" });
    (
        ok && same,
        if same {
            d
        } else {
            format!("{d}; REPEAT DIFFERS (non-deterministic)")
        },
    )
}

/// A padded 3×3 convolution with bias against f64 brute force.
fn check_conv(dev: &Device) -> (bool, String) {
    let (n, ci, co, h, w) = (2usize, 3usize, 5usize, 9usize, 7usize);
    let mut r = seeded(11, 0);
    let x = normal_vec(&mut r, n * ci * h * w);
    let k = normal_vec(&mut r, co * ci * 9);
    let bias = normal_vec(&mut r, co);
    let tx: Tensor<4> = Tensor::from_data(TensorData::new(x.clone(), [n, ci, h, w]), dev);
    let tk: Tensor<4> = Tensor::from_data(TensorData::new(k.clone(), [co, ci, 3, 3]), dev);
    let tb: Tensor<1> = Tensor::from_data(TensorData::new(bias.clone(), [co]), dev);
    let got = to_vec(conv2d(
        tx,
        tk,
        Some(tb),
        ConvOptions::new([1, 1], [1, 1], [1, 1], 1),
    ));
    let mut want = Vec::with_capacity(n * co * h * w);
    let mut bound = Vec::with_capacity(n * co * h * w);
    for b in 0..n {
        for o in 0..co {
            for y in 0..h {
                for xx in 0..w {
                    let (mut s, mut sa) = (bias[o] as f64, (bias[o] as f64).abs());
                    for c in 0..ci {
                        for dy in 0..3 {
                            for dx in 0..3 {
                                let (iy, ix) = (y as isize + dy - 1, xx as isize + dx - 1);
                                if iy < 0 || ix < 0 || iy >= h as isize || ix >= w as isize {
                                    continue;
                                }
                                let v = x[((b * ci + c) * h + iy as usize) * w + ix as usize]
                                    as f64
                                    * k[((o * ci + c) * 3 + dy as usize) * 3 + dx as usize] as f64;
                                s += v;
                                sa += v.abs();
                            }
                        }
                    }
                    want.push(s);
                    bound.push(dot_bound(ci * 9 + 1, sa));
                }
            }
        }
    }
    ratio_check(worst_ratio(&got, &want, &bound), "")
}

/// The convolution weight gradient (burn-flex's patched im2col + GEMM kernel, the one this
/// project vendors) against f64 brute force: dL/dw for L = Σ conv(x, w) · r.
fn check_conv_grad() -> (bool, String) {
    let (n, ci, co, h, w) = (3usize, 4usize, 6usize, 8usize, 8usize);
    let mut rng = seeded(12, 0);
    let x = normal_vec(&mut rng, n * ci * h * w);
    let k = normal_vec(&mut rng, co * ci * 9);
    let r = normal_vec(&mut rng, n * co * h * w);
    let dev = Device::flex().autodiff();
    let tx: Tensor<4> = Tensor::from_data(TensorData::new(x.clone(), [n, ci, h, w]), &dev);
    let tk: Tensor<4> = Tensor::from_data(TensorData::new(k, [co, ci, 3, 3]), &dev).require_grad();
    let tr: Tensor<4> = Tensor::from_data(TensorData::new(r.clone(), [n, co, h, w]), &dev);
    let y = conv2d(
        tx,
        tk.clone(),
        None,
        ConvOptions::new([1, 1], [1, 1], [1, 1], 1),
    );
    let grads = (y * tr).sum().backward();
    let Some(g) = tk.grad(&grads) else {
        return (false, "no gradient".into());
    };
    let got: Vec<f32> = g.into_data().try_to_vec::<f32>().unwrap_or_default();
    let mut want = Vec::with_capacity(co * ci * 9);
    let mut bound = Vec::with_capacity(co * ci * 9);
    for o in 0..co {
        for c in 0..ci {
            for dy in 0..3 {
                for dx in 0..3 {
                    let (mut s, mut sa) = (0f64, 0f64);
                    for b in 0..n {
                        for yy in 0..h {
                            for xx in 0..w {
                                let (iy, ix) = (yy + dy, xx + dx);
                                if iy < 1 || ix < 1 || iy > h || ix > w {
                                    continue;
                                }
                                let v = r[((b * co + o) * h + yy) * w + xx] as f64
                                    * x[((b * ci + c) * h + iy - 1) * w + ix - 1] as f64;
                                s += v;
                                sa += v.abs();
                            }
                        }
                    }
                    want.push(s);
                    bound.push(dot_bound(n * h * w, sa));
                }
            }
        }
    }
    ratio_check(worst_ratio(&got, &want, &bound), "")
}

/// The 3×3 convolution at the channel counts of the real networks (≥ 32 in and out, where
/// burn-flex dispatches to Winograd, F(4×4, 3×3) by default), through autodiff so that the
/// input gradient (a forward convolution of the transposed filters, Winograd too) and the
/// weight gradient (Winograd's adjoint) run as in training, each against f64 brute force.
/// Bound per output: c·ε·n·S as in vendor/burn-flex/tests/conv_winograd.rs (n the accumulation
/// length, S the largest Σ|a·b| of the tensor, c = 4 for F(4×4)'s larger transform entries).
fn check_conv_winograd() -> (bool, String) {
    let (n, c, h, w) = (1usize, 32usize, 8usize, 8usize);
    let mut rng = seeded(13, 0);
    let x = normal_vec(&mut rng, n * c * h * w);
    let k = normal_vec(&mut rng, c * c * 9);
    let bias = normal_vec(&mut rng, c);
    let r = normal_vec(&mut rng, n * c * h * w);
    let dev = Device::flex().autodiff();
    let t4 =
        |v: &[f32], s: [usize; 4]| Tensor::<4>::from_data(TensorData::new(v.to_vec(), s), &dev);
    let tx = t4(&x, [n, c, h, w]).require_grad();
    let tk = t4(&k, [c, c, 3, 3]).require_grad();
    let tb: Tensor<1> = Tensor::from_data(TensorData::new(bias.clone(), [c]), &dev);
    let y = conv2d(
        tx.clone(),
        tk.clone(),
        Some(tb),
        ConvOptions::new([1, 1], [1, 1], [1, 1], 1),
    );
    let got_y = to_vec(y.clone());
    let grads = (y * t4(&r, [n, c, h, w])).sum().backward();
    let (Some(gx), Some(gk)) = (tx.grad(&grads), tk.grad(&grads)) else {
        return (false, "no gradient".into());
    };
    let (got_dx, got_dw) = (to_vec(gx), to_vec(gk));
    // One pass over every (output, input channel, tap) product gives all three in f64, with the
    // magnitudes Σ|a·b| of each sum.
    let size = n * c * h * w;
    let (mut y64, mut my) = (vec![0f64; size], vec![0f64; size]);
    let (mut dx64, mut mdx) = (vec![0f64; size], vec![0f64; size]);
    let (mut dw64, mut mdw) = (vec![0f64; c * c * 9], vec![0f64; c * c * 9]);
    for b in 0..n {
        for (o, &bo) in bias.iter().enumerate() {
            for yy in 0..h {
                for xx in 0..w {
                    let oi = ((b * c + o) * h + yy) * w + xx;
                    y64[oi] += bo as f64;
                    my[oi] += (bo as f64).abs();
                    let rv = r[oi] as f64;
                    for ci in 0..c {
                        for dy in 0..3 {
                            for dx in 0..3 {
                                let (iy, ix) = (yy + dy, xx + dx);
                                if iy < 1 || ix < 1 || iy > h || ix > w {
                                    continue;
                                }
                                let ii = ((b * c + ci) * h + iy - 1) * w + ix - 1;
                                let ki = ((o * c + ci) * 3 + dy) * 3 + dx;
                                let (xv, kv) = (x[ii] as f64, k[ki] as f64);
                                y64[oi] += xv * kv;
                                my[oi] += (xv * kv).abs();
                                dx64[ii] += rv * kv;
                                mdx[ii] += (rv * kv).abs();
                                dw64[ki] += rv * xv;
                                mdw[ki] += (rv * xv).abs();
                            }
                        }
                    }
                }
            }
        }
    }
    let variant = burn_flex::tuning::winograd_options().variant;
    let cfac = match variant {
        burn_flex::tuning::WinogradVariant::F4 => 4.0,
        _ => 1.0,
    };
    let ratio = |got: &[f32], want: &[f64], mag: &[f64], len: usize| {
        let s = mag.iter().cloned().fold(0.0, f64::max);
        let tol = cfac * f32::EPSILON as f64 / 2.0 * len as f64 * s + 1e-30;
        worst_ratio(got, want, &vec![tol; want.len()])
    };
    let ry = ratio(&got_y, &y64, &my, 9 * c + 1);
    let rdx = ratio(&got_dx, &dx64, &mdx, 9 * c);
    let rdw = ratio(&got_dw, &dw64, &mdw, n * h * w);
    let worst = ry.max(rdx).max(rdw);
    (
        worst <= 1.0,
        format!(
            "Winograd {variant:?}: forward {ry:.3}, input gradient {rdx:.3}, weight gradient {rdw:.3} of the bound"
        ),
    )
}

/// GroupNorm → SiLU as the networks call it (the fused kernel when `KernelOptions` has it on,
/// which is the default), 64 channels in 32 groups, random affine parameters, against f64.
/// Bound per element: (m + 8)·ε·(|γ x̂| + |β| + 1), m the group's size: the mean and variance
/// are sums of m terms, each rounding by at most ε relative.
fn check_group_norm_silu() -> (bool, String) {
    use burn::module::Param;
    let (n, c, g, h, w) = (2usize, 64usize, 32usize, 8usize, 8usize);
    let dev = Device::flex();
    let mut rng = seeded(14, 0);
    // An offset mean, as activations have: the variance is then a difference of large terms.
    let x: Vec<f32> = normal_vec(&mut rng, n * c * h * w)
        .into_iter()
        .map(|v| 1.5 * v + 0.5)
        .collect();
    let gamma = normal_vec(&mut rng, c);
    let beta = normal_vec(&mut rng, c);
    let mut norm = burn::nn::GroupNormConfig::new(g, c).init(&dev);
    let p1 = |v: &[f32]| {
        Param::from_tensor(Tensor::<1>::from_data(
            TensorData::new(v.to_vec(), [c]),
            &dev,
        ))
    };
    norm.gamma = Some(p1(&gamma));
    norm.beta = Some(p1(&beta));
    let eps = norm.epsilon;
    let tx: Tensor<4> = Tensor::from_data(TensorData::new(x.clone(), [n, c, h, w]), &dev);
    let got = to_vec(diffuse_kernels::group_norm::group_norm_act(&norm, tx, true));
    let (cg, hw) = (c / g, h * w);
    let m = cg * hw;
    let mut want = vec![0f64; x.len()];
    let mut bound = vec![0f64; x.len()];
    for b in 0..n {
        for gi in 0..g {
            let base = (b * c + gi * cg) * hw;
            let vals = &x[base..base + m];
            let mean = vals.iter().map(|&v| v as f64).sum::<f64>() / m as f64;
            let var = vals.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / m as f64;
            let inv = 1.0 / (var + eps).sqrt();
            for (j, &v) in vals.iter().enumerate() {
                let ch = gi * cg + j / hw;
                let xh = (v as f64 - mean) * inv;
                let pre = gamma[ch] as f64 * xh + beta[ch] as f64;
                want[base + j] = pre / (1.0 + (-pre).exp());
                bound[base + j] = (m as f64 + 8.0)
                    * f32::EPSILON as f64
                    * ((gamma[ch] as f64 * xh).abs() + (beta[ch] as f64).abs() + 1.0);
            }
        }
    }
    let path = if diffuse_kernels::options().fused_group_norm {
        "fused kernel"
    } else {
        "composed ops (fused kernel switched off)"
    };
    ratio_check(worst_ratio(&got, &want, &bound), &format!(" ({path})"))
}

/// Softmax over the last axis as attention calls it (the fused kernel when it applies), on
/// rows of 64 logits of spread ±6, against f64. Bound per element: (L + 8)·ε·p, L the row
/// length: the normaliser is a sum of L positive terms, each exponential correct to a few ε.
fn check_softmax() -> (bool, String) {
    let (rows, len) = (16usize, 64usize);
    let dev = Device::flex();
    let mut rng = seeded(15, 0);
    let x: Vec<f32> = normal_vec(&mut rng, rows * len)
        .into_iter()
        .map(|v| 2.0 * v)
        .collect();
    let t: Tensor<2> = Tensor::from_data(TensorData::new(x.clone(), [rows, len]), &dev);
    let fused = diffuse_kernels::softmax::fused_applies(&t);
    let got = to_vec(if fused {
        diffuse_kernels::softmax::softmax_last_fused(t)
    } else {
        burn::tensor::activation::softmax(t, 1)
    });
    let mut want = Vec::with_capacity(x.len());
    let mut bound = Vec::with_capacity(x.len());
    for row in x.chunks(len) {
        let mx = row.iter().fold(f32::MIN, |a, &b| a.max(b)) as f64;
        let e: Vec<f64> = row.iter().map(|&v| (v as f64 - mx).exp()).collect();
        let s: f64 = e.iter().sum();
        for v in e {
            want.push(v / s);
            bound.push((len as f64 + 8.0) * f32::EPSILON as f64 * (v / s) + 1e-30);
        }
    }
    let path = if fused {
        "fused kernel"
    } else {
        "burn's softmax"
    };
    ratio_check(worst_ratio(&got, &want, &bound), &format!(" ({path})"))
}

/// ᾱ_t of the default (DDPM linear) schedule against exp(Σ ln(1 − β_s)) and the published
/// ᾱ_999 = 4.0358e-5 (Ho et al. 2020's schedule, as tabulated by diffusers).
fn check_schedule() -> (bool, String) {
    let s = match NoiseSchedule::new(&ScheduleConfig::default()) {
        Ok(s) => s,
        Err(e) => return (false, e.to_string()),
    };
    let mut log = 0f64;
    let mut worst = 0f64;
    for t in 0..s.num_steps() {
        log += (1.0 - s.betas[t]).ln();
        // Both are f64 over ≤ 1000 terms: 1e-12 relative is ~10⁴ ulps of room.
        worst = worst.max((s.alpha_bar(t) - log.exp()).abs() / log.exp());
    }
    let last = s.alpha_bar(s.num_steps() - 1);
    let ok = worst < 1e-12 && ((last - 4.0358e-5) / 4.0358e-5).abs() < 1e-3;
    (
        ok,
        format!("ᾱ_999 = {last:.4e}, max relative deviation {worst:.1e}"),
    )
}

/// 300 toy training steps (the reference network and optimizer), twice: the loss must be
/// finite, fall (the mean of the last 50 steps under 90 % of the first 50: on the reference
/// setup it falls from about 0.85 to about 0.5), and both runs must be bit-identical.
fn check_train() -> (bool, String) {
    let cfg = crate::toy::ToyConfig {
        num_points: 16384,
        steps: 300,
        ..Default::default()
    };
    let dev = Device::flex().autodiff();
    let run = || crate::toy::train(&cfg, &dev, false).map(|t| t.losses);
    match (run(), run()) {
        (Ok(a), Ok(b)) => {
            let finite = a.iter().all(|(_, l)| l.is_finite());
            let same = a.len() == b.len()
                && a.iter()
                    .zip(&b)
                    .all(|(x, y)| x.1.to_bits() == y.1.to_bits());
            let mean = |v: &[(usize, f64)]| v.iter().map(|p| p.1).sum::<f64>() / v.len() as f64;
            let k = a.len().min(50);
            let (first, last) = (mean(&a[..k]), mean(&a[a.len() - k..]));
            let falls = last < 0.9 * first;
            (
                finite && same && falls,
                format!(
                    "mean loss {first:.3} → {last:.3} over {} steps; {}",
                    a.len(),
                    if same {
                        "two runs bit-identical"
                    } else {
                        "TWO RUNS DIFFER"
                    }
                ),
            )
        }
        (Err(e), _) | (_, Err(e)) => (false, e.to_string()),
    }
}

/// A PNG written in memory and read back through the project's decoder.
fn check_image_io() -> (bool, String) {
    let img = image::RgbImage::from_fn(13, 7, |x, y| {
        image::Rgb([(x * 19) as u8, (y * 37) as u8, (x * y) as u8])
    });
    let mut png = Vec::new();
    if let Err(e) = img.write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png) {
        return (false, e.to_string());
    }
    match crate::data::image_io::decode_rgb(std::path::Path::new("self-check.png"), png) {
        Ok(back) if back == img => (true, "13×7 PNG round trip exact".into()),
        Ok(_) => (false, "PNG round trip changed pixels".into()),
        Err(e) => (false, e.to_string()),
    }
}

/// One self-check: (passed, what was measured).
type CheckFn = Box<dyn Fn() -> (bool, String)>;

/// Runs every self-check (a few seconds on a 2-core CPU).
pub fn self_check() -> Vec<Check> {
    let dev = Device::flex();
    let checks: Vec<(&'static str, CheckFn)> = vec![
        (
            "matmul 33×47·47×29 vs f64",
            Box::new(|| check_matmul(&Device::flex(), 33, 47, 29, 1)),
        ),
        (
            "matmul 256×512·512×192 vs f64 (threaded)",
            Box::new(move || check_matmul(&dev, 256, 512, 192, 2)),
        ),
        (
            "conv2d 3×3 pad 1 vs f64",
            Box::new(|| check_conv(&Device::flex())),
        ),
        ("conv2d weight gradient vs f64", Box::new(check_conv_grad)),
        (
            "conv2d 32 ch (Winograd) fwd/dx/dw vs f64",
            Box::new(check_conv_winograd),
        ),
        (
            "GroupNorm+SiLU 64 ch / 32 groups vs f64",
            Box::new(check_group_norm_silu),
        ),
        ("softmax 16×64 vs f64", Box::new(check_softmax)),
        ("noise schedule ᾱ_t", Box::new(check_schedule)),
        ("toy training, 300 steps ×2", Box::new(check_train)),
        ("PNG encode/decode", Box::new(check_image_io)),
    ];
    checks
        .into_iter()
        .map(|(name, f)| {
            let start = Instant::now();
            // A panic inside a kernel is a failed check, not a crashed report.
            let (passed, detail) = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f))
                .unwrap_or_else(|_| (false, "panicked".into()));
            Check {
                name,
                passed,
                detail,
                seconds: start.elapsed().as_secs_f64(),
            }
        })
        .collect()
}

/// The whole report as printed by `diffuse doctor`.
pub fn report(facts: &[Fact], checks: &[Check]) -> String {
    let mut s = String::new();
    for (k, v) in facts {
        let _ = writeln!(s, "{:<13} {v}", format!("{k}:"));
    }
    let _ = writeln!(s, "self-check:");
    for c in checks {
        let _ = writeln!(
            s,
            "  {} {:<42} {} ({:.2} s)",
            if c.passed { "ok  " } else { "FAIL" },
            c.name,
            c.detail,
            c.seconds
        );
    }
    let failed = checks.iter().filter(|c| !c.passed).count();
    let total: f64 = checks.iter().map(|c| c.seconds).sum();
    if failed == 0 {
        let _ = writeln!(s, "all {} checks passed in {total:.1} s", checks.len());
    } else {
        let _ = writeln!(
            s,
            "{failed} of {} checks FAILED: please include this whole output in a bug report",
            checks.len()
        );
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ratio_flags_errors_and_nan() {
        assert!(worst_ratio(&[1.0, 2.0], &[1.0, 2.0], &[1e-6, 1e-6]) <= 1.0);
        assert!(worst_ratio(&[1.0, 2.1], &[1.0, 2.0], &[1e-6, 1e-6]) > 1.0);
        assert!(worst_ratio(&[f32::NAN], &[0.0], &[1.0]).is_infinite());
        assert!(worst_ratio(&[1.0], &[1.0, 2.0], &[1.0, 1.0]).is_infinite());
    }
}

//! The Winograd 3×3 convolution, the input gradient computed as a forward convolution and the
//! Winograd weight gradient (patches in vendor/burn-flex, see PATCHES.md) against a direct
//! convolution in f64.
//!
//! Error bound. A float sum of n products, in any order and blocking (so on any GEMM kernel:
//! AVX2, AVX-512, AMX; any thread count), is within n·ε·Σ|a·b| of the exact value (Higham,
//! "Accuracy and Stability of Numerical Algorithms", §3.1), ε = 2⁻²⁴. Winograd computes the
//! same sums after linear transforms whose coefficients amplify the rounding of intermediate
//! values: entries up to 1 in F(2×2, 3×3), up to 5 (Bᵀ) and 8 (Aᵀ) in F(4×4, 3×3) (Lavin &
//! Gray 2016). An output also mixes, through the transforms, the products of its whole tile, so
//! the magnitude used is S = max over outputs of Σ|x·w| + |b|. Each output is then checked
//! against
//!
//!   |got − want| ≤ c · ε · n · S,   n = 9·C (the accumulation length),
//!
//! with c = 1 for the direct path and F(2×2, 3×3), c = 4 for F(4×4, 3×3). Measured on random
//! normal data (AVX-512 Xeon, 1 and 2 threads): largest errors 1.1 % of the bound for the
//! direct path, 0.5 % for F(2×2) and 0.096·n·ε·S for F(4×4) (~20× F(2×2)'s error, as its
//! larger transform coefficients predict), leaving a 40× margin for other CPUs' rounding. A
//! single wrong or missing product (size ~|x·w| ≈ 0.6 ≈ S/n) exceeds the bounds: with C ≤ 48,
//! 4·n·ε·S stays below 0.03.
//!
//! The weight gradient sums n = N·Ho·Wo products r·x per filter tap and is held to the same c
//! per variant (through Winograd too: the adjoint transforms have the same coefficients).
//! Measured worst: 0.18·n·ε·S direct, 0.22 F(2×2), 0.27 F(4×4), all on the 2×1 map where
//! n = 6 is shortest; ≤ 0.05·n·ε·S on the larger maps.
use burn::prelude::*;
use burn::tensor::module::conv2d;
use burn::tensor::ops::ConvOptions;
use burn_flex::tuning::{
    WinogradOptions, WinogradSimd, WinogradVariant, set_winograd_options, winograd_options,
};
use diffuse_testkit::Normals;
use std::sync::Mutex;

/// The variant and the transforms' vector width are process-wide switches
/// (`burn_flex::tuning`): tests that set them or depend on them hold this lock.
static VARIANT: Mutex<()> = Mutex::new(());

/// `v` is a variant ("off", "f2", "f4"), optionally prefixed with the transforms' vector width:
/// "scalar:f4" forces one lane, "avx:f4" at most AVX's 8, "vector:f4" keeps the CPU's widest.
fn with_variant<R>(v: &str, f: impl FnOnce() -> R) -> R {
    let _g = VARIANT.lock().unwrap_or_else(|e| e.into_inner());
    let (width, variant) = v.split_once(':').unwrap_or(("vector", v));
    let variant = match variant {
        "off" => WinogradVariant::Off,
        "f2" => WinogradVariant::F2,
        "f4" => WinogradVariant::F4,
        other => panic!("unknown variant {other}"),
    };
    let simd = match width {
        "vector" => WinogradSimd::Widest,
        "avx" => WinogradSimd::Avx,
        "scalar" => WinogradSimd::Scalar,
        other => panic!("unknown width {other}"),
    };
    let before = winograd_options();
    set_winograd_options(WinogradOptions {
        variant,
        simd,
        chunk: None,
    });
    let r = f();
    set_winograd_options(before);
    r
}

const EPS: f64 = f32::EPSILON as f64 / 2.0;

#[derive(Clone, Copy, Debug)]
struct Case {
    n: usize,
    ci: usize,
    co: usize,
    h: usize,
    w: usize,
    pad: usize,
}

/// Direct convolution in f64 (3×3, stride 1): outputs and Σ|x·w| + |b| per output.
fn direct(c: &Case, x: &[f32], w: &[f32], b: &[f32]) -> (Vec<f64>, Vec<f64>, [usize; 2]) {
    let (ho, wo) = (c.h + 2 * c.pad - 2, c.w + 2 * c.pad - 2);
    let mut y = vec![0f64; c.n * c.co * ho * wo];
    let mut mag = vec![0f64; y.len()];
    for n in 0..c.n {
        for o in 0..c.co {
            for oh in 0..ho {
                for ow in 0..wo {
                    let i = ((n * c.co + o) * ho + oh) * wo + ow;
                    let (mut s, mut m) = (b[o] as f64, b[o].abs() as f64);
                    for ci in 0..c.ci {
                        for a in 0..3 {
                            let ih = (oh + a) as isize - c.pad as isize;
                            if ih < 0 || ih >= c.h as isize {
                                continue;
                            }
                            for bb in 0..3 {
                                let iw = (ow + bb) as isize - c.pad as isize;
                                if iw < 0 || iw >= c.w as isize {
                                    continue;
                                }
                                let xv = x
                                    [((n * c.ci + ci) * c.h + ih as usize) * c.w + iw as usize]
                                    as f64;
                                let wv = w[((o * c.ci + ci) * 3 + a) * 3 + bb] as f64;
                                s += xv * wv;
                                m += (xv * wv).abs();
                            }
                        }
                    }
                    y[i] = s;
                    mag[i] = m;
                }
            }
        }
    }
    (y, mag, [ho, wo])
}

/// Asserts |got − want| ≤ c·ε·n·S per element (see the module comment); returns the largest
/// error as a fraction of the bound, so the caller can see how much room is left.
fn assert_close(what: &str, got: &[f32], want: &[f64], mag: &[f64], n: usize, c: f64) -> f64 {
    assert_eq!(got.len(), want.len(), "{what}: length");
    let s = mag.iter().cloned().fold(0.0, f64::max);
    let tol = c * EPS * n as f64 * s;
    let mut worst = 0f64;
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        let e = (g as f64 - w).abs();
        assert!(
            e <= tol,
            "{what}: element {i}: got {g}, want {w}, error {e:e} > bound {tol:e}"
        );
        worst = worst.max(e / tol);
    }
    worst
}

const CASES: [Case; 6] = [
    // Odd sizes with partial tiles on both edges, padding 1.
    Case {
        n: 1,
        ci: 32,
        co: 33,
        h: 7,
        w: 9,
        pad: 1,
    },
    // Batch 3, no padding, output not a multiple of the tile.
    Case {
        n: 3,
        ci: 40,
        co: 32,
        h: 13,
        w: 6,
        pad: 0,
    },
    // Channel counts not multiples of anything; more tiles than one chunk of 16 lanes.
    Case {
        n: 3,
        ci: 35,
        co: 47,
        h: 11,
        w: 11,
        pad: 1,
    },
    // A single output pixel per map.
    Case {
        n: 1,
        ci: 48,
        co: 32,
        h: 3,
        w: 3,
        pad: 0,
    },
    // Maps smaller than the kernel, padded.
    Case {
        n: 3,
        ci: 32,
        co: 36,
        h: 2,
        w: 1,
        pad: 1,
    },
    // Enough tiles for several chunks.
    Case {
        n: 1,
        ci: 33,
        co: 40,
        h: 32,
        w: 17,
        pad: 1,
    },
];

fn forward(c: &Case, seed: u64, variant: &str) -> (Vec<f32>, Vec<f64>, Vec<f64>) {
    let mut r = Normals::new(seed, 0);
    let x = r.vec(c.n * c.ci * c.h * c.w);
    let w = r.vec(c.co * c.ci * 9);
    let b = r.vec(c.co);
    let (want, mag, [ho, wo]) = direct(c, &x, &w, &b);
    let dev = Device::flex();
    let got = with_variant(variant, || {
        let y = conv2d(
            Tensor::<4>::from_data(TensorData::new(x, [c.n, c.ci, c.h, c.w]), &dev),
            Tensor::from_data(TensorData::new(w, [c.co, c.ci, 3, 3]), &dev),
            Some(Tensor::from_data(TensorData::new(b, [c.co]), &dev)),
            ConvOptions::new([1, 1], [c.pad, c.pad], [1, 1], 1),
        );
        assert_eq!(y.dims(), [c.n, c.co, ho, wo], "{c:?}");
        y.into_data().try_to_vec::<f32>().unwrap()
    });
    (got, want, mag)
}

#[test]
fn winograd_forward_matches_direct_f64() {
    for (variant, c_bound) in [("off", 1.0), ("f2", 1.0), ("f4", 4.0)] {
        let mut worst = 0f64;
        for (i, c) in CASES.iter().enumerate() {
            let (got, want, mag) = forward(c, 10 + i as u64, variant);
            let what = format!("{variant} {c:?}");
            worst = worst.max(assert_close(&what, &got, &want, &mag, 9 * c.ci, c_bound));
        }
        eprintln!("{variant}: largest error {worst:.3} of the bound");
    }
}

/// The kernel must be used (not silently fall back): F(4×4) and F(2×2) round differently
/// from each other and from im2col + GEMM.
#[test]
fn winograd_variants_are_distinct_paths() {
    let c = CASES[2];
    let outs: Vec<Vec<f32>> = ["off", "f2", "f4"]
        .iter()
        .map(|v| forward(&c, 3, v).0)
        .collect();
    assert_ne!(outs[0], outs[1]);
    assert_ne!(outs[0], outs[2]);
    assert_ne!(outs[1], outs[2]);
}

/// The transforms compiled for the CPU's widest vectors (AVX-512 or AVX on x86), for AVX and for
/// one lane give the same bits, forward and both gradients: every lane takes the same
/// operations in the same order, and channel counts here (32–48) leave partial vectors for the
/// one-lane tail as well. (On a CPU without AVX-512, "vector" and "avx" are the same path.)
#[test]
fn winograd_simd_widths_give_the_same_bits() {
    for c in CASES {
        for v in ["f2", "f4"] {
            let wide = forward(&c, 5, &format!("vector:{v}")).0;
            let wide_grads = gradients(&c, 6, &format!("vector:{v}")).3;
            for width in ["avx", "scalar"] {
                let out = forward(&c, 5, &format!("{width}:{v}")).0;
                assert!(
                    wide == out,
                    "{v} {c:?}: widest and {width} transforms differ"
                );
                let grads = gradients(&c, 6, &format!("{width}:{v}")).3;
                assert!(
                    wide_grads == grads,
                    "{v} {c:?}: gradients differ at {width}"
                );
            }
        }
    }
}

/// An input that is a permuted view (channels-last memory, as after a `permute`) goes through
/// the same kernel as its contiguous copy: the same bits.
#[test]
fn winograd_reads_permuted_inputs() {
    let c = CASES[2];
    let mut r = Normals::new(8, 0);
    let x = r.vec(c.n * c.ci * c.h * c.w);
    let w = r.vec(c.co * c.ci * 9);
    let dev = Device::flex();
    let run = |x: Tensor<4>| {
        with_variant("f4", || {
            conv2d(
                x,
                Tensor::from_data(TensorData::new(w.clone(), [c.co, c.ci, 3, 3]), &dev),
                None,
                ConvOptions::new([1, 1], [c.pad, c.pad], [1, 1], 1),
            )
            .into_data()
            .try_to_vec::<f32>()
            .unwrap()
        })
    };
    let nhwc = Tensor::<4>::from_data(TensorData::new(x, [c.n, c.h, c.w, c.ci]), &dev);
    let view = nhwc.clone().permute([0, 3, 1, 2]);
    let copy = Tensor::<4>::from_data(view.clone().into_data(), &dev);
    assert!(
        run(view) == run(copy),
        "permuted view and contiguous copy differ"
    );
}

/// Same inputs, same thread count: bit-identical outputs.
#[test]
fn winograd_is_deterministic() {
    let c = CASES[5];
    assert_eq!(forward(&c, 4, "f4").0, forward(&c, 4, "f4").0);
    assert_eq!(gradients(&c, 4, "f4").3, gradients(&c, 4, "f4").3);
}

/// x, w, r and (dL/dx, dL/dw) through autodiff for L = Σ conv(x, w) · r, random normal data.
#[allow(clippy::type_complexity)]
fn gradients(
    c: &Case,
    seed: u64,
    variant: &str,
) -> (Vec<f32>, Vec<f32>, Vec<f32>, (Vec<f32>, Vec<f32>)) {
    let mut r = Normals::new(seed, 0);
    let (ho, wo) = (c.h + 2 * c.pad - 2, c.w + 2 * c.pad - 2);
    let xv = r.vec(c.n * c.ci * c.h * c.w);
    let wv = r.vec(c.co * c.ci * 9);
    let rv = r.vec(c.n * c.co * ho * wo);
    let dev = Device::flex().autodiff();
    let grads = with_variant(variant, || {
        let x: Tensor<4> =
            Tensor::from_data(TensorData::new(xv.clone(), [c.n, c.ci, c.h, c.w]), &dev)
                .require_grad();
        let w: Tensor<4> =
            Tensor::from_data(TensorData::new(wv.clone(), [c.co, c.ci, 3, 3]), &dev).require_grad();
        let rt: Tensor<4> =
            Tensor::from_data(TensorData::new(rv.clone(), [c.n, c.co, ho, wo]), &dev);
        let y = conv2d(
            x.clone(),
            w.clone(),
            None,
            ConvOptions::new([1, 1], [c.pad, c.pad], [1, 1], 1),
        );
        let g = (y * rt).sum().backward();
        let gx: Vec<f32> = x.grad(&g).unwrap().into_data().try_to_vec().unwrap();
        let gw: Vec<f32> = w.grad(&g).unwrap().into_data().try_to_vec().unwrap();
        (gx, gw)
    });
    (xv, wv, rv, grads)
}

/// Loss = Σ conv(x, w) · r through autodiff: dL/dx (a forward convolution of r with the
/// flipped, transposed weight, so Winograd for these channel counts) and dL/dw against brute
/// force. dL/dx[n, c, i, j] sums 9·Co products r·w; dL/dw sums N·Ho·Wo products r·x.
#[test]
fn input_gradient_through_forward_conv_matches_brute_force() {
    for (variant, c_bound) in [("off", 1.0), ("f2", 1.0), ("f4", 4.0)] {
        for (ci, c) in [CASES[0], CASES[1], CASES[4], CASES[5]].iter().enumerate() {
            let (xv, wv, rv, (gx, gw)) = gradients(c, 50 + ci as u64, variant);
            let (ho, wo) = (c.h + 2 * c.pad - 2, c.w + 2 * c.pad - 2);
            let mut ex = vec![0f64; gx.len()];
            let mut mx = vec![0f64; gx.len()];
            let mut ew = vec![0f64; gw.len()];
            let mut mw = vec![0f64; gw.len()];
            for n in 0..c.n {
                for o in 0..c.co {
                    for oh in 0..ho {
                        for ow in 0..wo {
                            let rr = rv[((n * c.co + o) * ho + oh) * wo + ow] as f64;
                            for ch in 0..c.ci {
                                for a in 0..3 {
                                    let ih = (oh + a) as isize - c.pad as isize;
                                    for b in 0..3 {
                                        let iw = (ow + b) as isize - c.pad as isize;
                                        if ih < 0
                                            || iw < 0
                                            || ih >= c.h as isize
                                            || iw >= c.w as isize
                                        {
                                            continue;
                                        }
                                        let xi = ((n * c.ci + ch) * c.h + ih as usize) * c.w
                                            + iw as usize;
                                        let wi = ((o * c.ci + ch) * 3 + a) * 3 + b;
                                        ex[xi] += rr * wv[wi] as f64;
                                        mx[xi] += (rr * wv[wi] as f64).abs();
                                        ew[wi] += rr * xv[xi] as f64;
                                        mw[wi] += (rr * xv[xi] as f64).abs();
                                    }
                                }
                            }
                        }
                    }
                }
            }
            let what = format!("{variant} {c:?}");
            assert_close(&format!("dx {what}"), &gx, &ex, &mx, 9 * c.co, c_bound);
            let dw = assert_close(&format!("dw {what}"), &gw, &ew, &mw, c.n * ho * wo, c_bound);
            eprintln!("{what}: dw largest error {dw:.4} of the bound");
        }
    }
}

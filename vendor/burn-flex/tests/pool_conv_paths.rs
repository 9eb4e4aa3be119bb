//! The f32 pooling fast path and the reworked im2col convolution (patches in this crate,
//! see PATCHES.md), against plain reference loops.
//!
//! Pooling is checked bit for bit: max is exact, and the average adds the window's values in
//! row-major order starting from zero and divides by the same count as upstream burn-flex (and
//! PyTorch), so there is no rounding to allow for on any CPU.
//!
//! Convolutions are checked against a direct convolution in f64 with the bound of
//! tests/conv_winograd.rs: a float sum of n products in any order is within n·ε·Σ|x·w| of the
//! exact value (Higham §3.1), whatever GEMM kernel or thread split the CPU gets.
use burn::prelude::*;
use burn::tensor::module::{avg_pool2d, conv2d, max_pool2d};
use burn::tensor::ops::{AvgPoolOptions, ConvOptions, MaxPoolOptions};
use diffuse_testkit::det_values;

fn values(t: Tensor<4>) -> Vec<f32> {
    t.into_data().try_to_vec::<f32>().unwrap()
}

#[derive(Clone, Copy, Debug)]
struct Pool {
    kernel: [usize; 2],
    stride: [usize; 2],
    pad: [usize; 2],
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Kind {
    Max,
    Avg { include_pad: bool },
}

/// Reference pooling over `[planes, h, w]`, written as PyTorch documents it: visit the
/// window's valid positions row by row; the max takes the first value and then any larger one
/// or any NaN; the average sums from zero and divides by the window size (padding included)
/// or by the number of valid positions.
fn pool_ref(x: &[f32], planes: usize, hw: [usize; 2], p: Pool, kind: Kind) -> Vec<f32> {
    let [h, w] = hw;
    let oh = (h + 2 * p.pad[0] - p.kernel[0]) / p.stride[0] + 1;
    let ow = (w + 2 * p.pad[1] - p.kernel[1]) / p.stride[1] + 1;
    let mut out = Vec::with_capacity(planes * oh * ow);
    for plane in x.chunks(h * w).take(planes) {
        for i in 0..oh {
            for j in 0..ow {
                let (mut acc, mut count, mut first) = (0.0f32, 0usize, true);
                for a in 0..p.kernel[0] {
                    for b in 0..p.kernel[1] {
                        let r = (i * p.stride[0] + a) as isize - p.pad[0] as isize;
                        let c = (j * p.stride[1] + b) as isize - p.pad[1] as isize;
                        if r < 0 || c < 0 || r >= h as isize || c >= w as isize {
                            continue;
                        }
                        let v = plane[r as usize * w + c as usize];
                        count += 1;
                        match kind {
                            Kind::Max => {
                                if first || v > acc || v.is_nan() {
                                    acc = v;
                                }
                            }
                            Kind::Avg { .. } => acc += v,
                        }
                        first = false;
                    }
                }
                out.push(match kind {
                    Kind::Max => acc,
                    Kind::Avg { include_pad: true } => acc / (p.kernel[0] * p.kernel[1]) as f32,
                    Kind::Avg { include_pad: false } => acc / count as f32,
                });
            }
        }
    }
    out
}

fn pool_burn(x: Tensor<4>, p: Pool, kind: Kind) -> Tensor<4> {
    let padding = [(p.pad[0], p.pad[0]), (p.pad[1], p.pad[1])];
    match kind {
        Kind::Max => {
            let mut o = MaxPoolOptions::new(p.kernel);
            o.stride = p.stride;
            o.padding = padding;
            max_pool2d(x, o)
        }
        Kind::Avg { include_pad } => {
            let mut o = AvgPoolOptions::new(p.kernel);
            o.stride = p.stride;
            o.padding = padding;
            o.count_include_pad = include_pad;
            avg_pool2d(x, o)
        }
    }
}

fn assert_bits(what: &str, got: &[f32], want: &[f32]) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(
            g.to_bits() == w.to_bits() || (g.is_nan() && w.is_nan()),
            "{what}: element {i}: got {g:e}, want {w:e}"
        );
    }
}

const POOLS: [Pool; 7] = [
    // Inception's pool branch: 3×3, stride 1, padding 1.
    Pool {
        kernel: [3, 3],
        stride: [1, 1],
        pad: [1, 1],
    },
    // Inception's grid reduction: 3×3, stride 2, no padding (odd and even sizes below).
    Pool {
        kernel: [3, 3],
        stride: [2, 2],
        pad: [0, 0],
    },
    Pool {
        kernel: [3, 3],
        stride: [2, 2],
        pad: [1, 1],
    },
    Pool {
        kernel: [2, 2],
        stride: [2, 2],
        pad: [0, 0],
    },
    Pool {
        kernel: [5, 3],
        stride: [3, 2],
        pad: [2, 1],
    },
    Pool {
        kernel: [1, 4],
        stride: [1, 3],
        pad: [0, 2],
    },
    // Window as large as the input.
    Pool {
        kernel: [5, 6],
        stride: [1, 1],
        pad: [0, 0],
    },
];

#[test]
fn pooling_matches_reference_bit_for_bit() {
    let dev = Device::flex();
    for (n, c, h, w) in [(2, 3, 7, 9), (1, 5, 6, 6), (3, 2, 11, 8), (1, 1, 5, 6)] {
        let mut x = det_values(n * c * h * w, 11, 3.0);
        // Specials: a NaN, infinities and signed zeros must come out as the reference's.
        x[3] = f32::NAN;
        x[5] = f32::NEG_INFINITY;
        x[7] = f32::INFINITY;
        x[8] = -0.0;
        if x.len() > 40 {
            x[40] = f32::NAN;
        }
        let t = Tensor::<4>::from_data(TensorData::new(x.clone(), [n, c, h, w]), &dev);
        for p in POOLS {
            if p.kernel[0] > h + 2 * p.pad[0] || p.kernel[1] > w + 2 * p.pad[1] {
                continue;
            }
            for kind in [
                Kind::Max,
                Kind::Avg { include_pad: true },
                Kind::Avg { include_pad: false },
            ] {
                let got = values(pool_burn(t.clone(), p, kind));
                let want = pool_ref(&x, n * c, [h, w], p, kind);
                assert_bits(&format!("{kind:?} {p:?} on {n}×{c}×{h}×{w}"), &got, &want);
            }
        }
    }
}

#[test]
fn pooling_a_strided_view_reads_the_view() {
    // A transposed (non-contiguous) input must be pooled as the tensor it represents.
    let dev = Device::flex();
    let (n, c, h, w) = (2, 3, 8, 7);
    let x = det_values(n * c * h * w, 5, 1.0);
    let t = Tensor::<4>::from_data(TensorData::new(x, [n, c, w, h]), &dev).swap_dims(2, 3);
    let contiguous: Vec<f32> = values(t.clone());
    let p = POOLS[0];
    for kind in [Kind::Max, Kind::Avg { include_pad: true }] {
        let got = values(pool_burn(t.clone(), p, kind));
        let want = pool_ref(&contiguous, n * c, [h, w], p, kind);
        assert_bits(&format!("{kind:?} on a view"), &got, &want);
    }
}

#[derive(Clone, Copy, Debug)]
struct Conv {
    n: usize,
    ci: usize,
    co: usize,
    hw: [usize; 2],
    kernel: [usize; 2],
    stride: [usize; 2],
    pad: [usize; 2],
    groups: usize,
}

/// Direct convolution in f64: outputs and Σ|x·w| + |b| per output.
fn conv_ref(c: &Conv, x: &[f32], w: &[f32], b: &[f32]) -> (Vec<f64>, Vec<f64>) {
    let [h, wd] = c.hw;
    let [kh, kw] = c.kernel;
    let oh = (h + 2 * c.pad[0] - kh) / c.stride[0] + 1;
    let ow = (wd + 2 * c.pad[1] - kw) / c.stride[1] + 1;
    let (cig, cog) = (c.ci / c.groups, c.co / c.groups);
    let mut y = Vec::new();
    let mut mag = Vec::new();
    for n in 0..c.n {
        // o indexes the weight, the bias and the output alike.
        #[allow(clippy::needless_range_loop)]
        for o in 0..c.co {
            let g = o / cog;
            for i in 0..oh {
                for j in 0..ow {
                    let (mut s, mut m) = (b[o] as f64, b[o].abs() as f64);
                    for ci in 0..cig {
                        for a in 0..kh {
                            for bb in 0..kw {
                                let r = (i * c.stride[0] + a) as isize - c.pad[0] as isize;
                                let q = (j * c.stride[1] + bb) as isize - c.pad[1] as isize;
                                if r < 0 || q < 0 || r >= h as isize || q >= wd as isize {
                                    continue;
                                }
                                let xi =
                                    ((n * c.ci + g * cig + ci) * h + r as usize) * wd + q as usize;
                                let wi = ((o * cig + ci) * kh + a) * kw + bb;
                                let p = x[xi] as f64 * w[wi] as f64;
                                s += p;
                                m += p.abs();
                            }
                        }
                    }
                    y.push(s);
                    mag.push(m);
                }
            }
        }
    }
    (y, mag)
}

#[test]
fn im2col_convolutions_match_direct_f64() {
    let dev = Device::flex();
    let eps = f32::EPSILON as f64 / 2.0;
    let cases = [
        // Inception's factorised 1×7 and 7×1 convolutions.
        Conv {
            n: 2,
            ci: 12,
            co: 10,
            hw: [9, 8],
            kernel: [1, 7],
            stride: [1, 1],
            pad: [0, 3],
            groups: 1,
        },
        Conv {
            n: 2,
            ci: 12,
            co: 10,
            hw: [9, 8],
            kernel: [7, 1],
            stride: [1, 1],
            pad: [3, 0],
            groups: 1,
        },
        // Stride-2 3×3 (grid reductions, the UNet's downsampling), with and without padding.
        Conv {
            n: 3,
            ci: 40,
            co: 33,
            hw: [13, 10],
            kernel: [3, 3],
            stride: [2, 2],
            pad: [0, 0],
            groups: 1,
        },
        Conv {
            n: 1,
            ci: 36,
            co: 20,
            hw: [12, 12],
            kernel: [3, 3],
            stride: [2, 2],
            pad: [1, 1],
            groups: 1,
        },
        // 5×5 with padding 2; more output positions than one 512-wide tile.
        Conv {
            n: 2,
            ci: 9,
            co: 16,
            hw: [30, 25],
            kernel: [5, 5],
            stride: [1, 1],
            pad: [2, 2],
            groups: 1,
        },
        // Grouped.
        Conv {
            n: 2,
            ci: 16,
            co: 12,
            hw: [7, 7],
            kernel: [3, 2],
            stride: [1, 2],
            pad: [1, 1],
            groups: 2,
        },
    ];
    for c in cases {
        let [h, w] = c.hw;
        let x = det_values(c.n * c.ci * h * w, 21, 2.0);
        let wt = det_values(
            c.co * (c.ci / c.groups) * c.kernel[0] * c.kernel[1],
            22,
            0.5,
        );
        let b = det_values(c.co, 23, 0.5);
        let got = conv2d(
            Tensor::<4>::from_data(TensorData::new(x.clone(), [c.n, c.ci, h, w]), &dev),
            Tensor::<4>::from_data(
                TensorData::new(
                    wt.clone(),
                    [c.co, c.ci / c.groups, c.kernel[0], c.kernel[1]],
                ),
                &dev,
            ),
            Some(Tensor::<1>::from_data(
                TensorData::new(b.clone(), [c.co]),
                &dev,
            )),
            ConvOptions::new(c.stride, c.pad, [1, 1], c.groups),
        );
        let got = values(got);
        let (want, mag) = conv_ref(&c, &x, &wt, &b);
        assert_eq!(got.len(), want.len(), "{c:?}: output size");
        let n = (c.ci / c.groups) * c.kernel[0] * c.kernel[1] + 1;
        let tol = eps * n as f64 * mag.iter().cloned().fold(0.0, f64::max);
        for (i, (&g, &wv)) in got.iter().zip(&want).enumerate() {
            let e = (g as f64 - wv).abs();
            assert!(
                e <= tol,
                "{c:?}: element {i}: got {g}, want {wv}, error {e:e} > {tol:e}"
            );
        }
    }
}

//! Convolution output and gradients against brute force in f64. The weight gradient runs
//! through the patched burn-flex (`src/ops/conv_weight_grad.rs`: im2col + GEMM
//! over batch chunks), so the cases cover strides, padding, dilation, groups, bias, 1×1 kernels
//! and batches that split into uneven chunks or one item per GEMM.
use burn::prelude::*;
use burn::tensor::module::conv2d;
use burn::tensor::ops::ConvOptions;
use diffuse_testkit::{Normals, f32_rtol};

struct Case {
    n: usize,
    ci: usize,
    co: usize,
    hw: [usize; 2],
    k: [usize; 2],
    stride: [usize; 2],
    pad: [usize; 2],
    dilation: [usize; 2],
    groups: usize,
}

fn out_size(i: usize, k: usize, s: usize, p: usize, d: usize) -> usize {
    (i + 2 * p - d * (k - 1) - 1) / s + 1
}

/// Loss = Σ conv(x, w) · r, so dL/dw and dL/dx are sums of products of r with x and w.
fn check(c: &Case, seed: u64) {
    let mut r = Normals::new(seed, 0);
    let cig = c.ci / c.groups;
    let cog = c.co / c.groups;
    let [h, w] = c.hw;
    let ho = out_size(h, c.k[0], c.stride[0], c.pad[0], c.dilation[0]);
    let wo = out_size(w, c.k[1], c.stride[1], c.pad[1], c.dilation[1]);
    let xv = r.vec(c.n * c.ci * h * w);
    let wv = r.vec(c.co * cig * c.k[0] * c.k[1]);
    let rv = r.vec(c.n * c.co * ho * wo);
    let bv = r.vec(c.co);

    let dev = Device::flex().autodiff();
    let x: Tensor<4> =
        Tensor::from_data(TensorData::new(xv.clone(), [c.n, c.ci, h, w]), &dev).require_grad();
    let wt: Tensor<4> = Tensor::from_data(
        TensorData::new(wv.clone(), [c.co, cig, c.k[0], c.k[1]]),
        &dev,
    )
    .require_grad();
    let rt: Tensor<4> = Tensor::from_data(TensorData::new(rv.clone(), [c.n, c.co, ho, wo]), &dev);
    let bt: Tensor<1> = Tensor::from_data(TensorData::new(bv.clone(), [c.co]), &dev);
    let y = conv2d(
        x.clone(),
        wt.clone(),
        Some(bt),
        ConvOptions::new(c.stride, c.pad, c.dilation, c.groups),
    );
    assert_eq!(y.dims(), [c.n, c.co, ho, wo]);
    let yv: Vec<f32> = y.clone().into_data().try_to_vec().unwrap();
    let grads = (y * rt).sum().backward();
    let gw: Vec<f32> = wt.grad(&grads).unwrap().into_data().try_to_vec().unwrap();
    let gx: Vec<f32> = x.grad(&grads).unwrap().into_data().try_to_vec().unwrap();

    let mut ey: Vec<f64> = (0..yv.len())
        .map(|i| bv[(i / (ho * wo)) % c.co] as f64)
        .collect();
    let mut ew = vec![0f64; gw.len()];
    let mut ex = vec![0f64; gx.len()];
    for n in 0..c.n {
        for o in 0..c.co {
            let g = o / cog;
            for oh in 0..ho {
                for ow in 0..wo {
                    let yi = ((n * c.co + o) * ho + oh) * wo + ow;
                    let rr = rv[yi] as f64;
                    for cl in 0..cig {
                        let ci = g * cig + cl;
                        for ki in 0..c.k[0] {
                            let ih = (oh * c.stride[0] + ki * c.dilation[0]) as isize
                                - c.pad[0] as isize;
                            if ih < 0 || ih >= h as isize {
                                continue;
                            }
                            for kj in 0..c.k[1] {
                                let iw = (ow * c.stride[1] + kj * c.dilation[1]) as isize
                                    - c.pad[1] as isize;
                                if iw < 0 || iw >= w as isize {
                                    continue;
                                }
                                let xi = ((n * c.ci + ci) * h + ih as usize) * w + iw as usize;
                                let wi = ((o * cig + cl) * c.k[0] + ki) * c.k[1] + kj;
                                ey[yi] += wv[wi] as f64 * xv[xi] as f64;
                                ew[wi] += rr * xv[xi] as f64;
                                ex[xi] += rr * wv[wi] as f64;
                            }
                        }
                    }
                }
            }
        }
    }
    let max_err = |got: &[f32], want: &[f64]| {
        let scale = want.iter().fold(1.0f64, |m, v| m.max(v.abs()));
        got.iter()
            .zip(want)
            .map(|(a, b)| (*a as f64 - b).abs() / scale)
            .fold(0.0, f64::max)
    };
    let (ery, erw, erx) = (max_err(&yv, &ey), max_err(&gw, &ew), max_err(&gx, &ex));
    // Each result is one f32 sum (see diffuse_testkit::f32_rtol): an output sums cig·kh·kw products, a
    // weight-gradient entry n·ho·wo, an input-gradient entry at most cog·kh·kw.
    let kk = c.k[0] * c.k[1];
    let (ty, tw, tx) = (
        f32_rtol(cig * kk, 1),
        f32_rtol(c.n * ho * wo, 1),
        f32_rtol(cog * kk, 1),
    );
    eprintln!(
        "relative errors: output {ery:.1e} (allowed {ty:.1e}), weight gradient {erw:.1e} ({tw:.1e}), input gradient {erx:.1e} ({tx:.1e})"
    );
    assert!(
        ery <= ty,
        "output off by {ery:e} (relative to max; allowed {ty:e})"
    );
    assert!(
        erw <= tw,
        "weight gradient off by {erw:e} (relative to max; allowed {tw:e})"
    );
    assert!(
        erx <= tx,
        "input gradient off by {erx:e} (relative to max; allowed {tx:e})"
    );
}

#[test]
fn conv3x3_same_padding() {
    // 30×30 outputs: 4 batch items per GEMM, so 5 items split 4 + 1.
    check(
        &Case {
            n: 5,
            ci: 6,
            co: 7,
            hw: [30, 30],
            k: [3, 3],
            stride: [1, 1],
            pad: [1, 1],
            dilation: [1, 1],
            groups: 1,
        },
        1,
    );
}

#[test]
fn conv3x3_stride2_downsample() {
    check(
        &Case {
            n: 3,
            ci: 4,
            co: 5,
            hw: [9, 8],
            k: [3, 3],
            stride: [2, 2],
            pad: [1, 1],
            dilation: [1, 1],
            groups: 1,
        },
        2,
    );
}

#[test]
fn conv_rectangular_dilated_unpadded() {
    check(
        &Case {
            n: 2,
            ci: 3,
            co: 4,
            hw: [11, 13],
            k: [2, 3],
            stride: [1, 2],
            pad: [0, 2],
            dilation: [2, 1],
            groups: 1,
        },
        3,
    );
}

#[test]
fn conv_grouped_and_1x1() {
    check(
        &Case {
            n: 3,
            ci: 6,
            co: 4,
            hw: [7, 7],
            k: [3, 3],
            stride: [1, 1],
            pad: [1, 1],
            dilation: [1, 1],
            groups: 2,
        },
        4,
    );
    check(
        &Case {
            n: 2,
            ci: 8,
            co: 3,
            hw: [5, 6],
            k: [1, 1],
            stride: [1, 1],
            pad: [0, 0],
            dilation: [1, 1],
            groups: 1,
        },
        5,
    );
}

#[test]
fn conv_one_item_per_gemm() {
    // ≥ 2049 output pixels: each batch item is its own GEMM.
    check(
        &Case {
            n: 2,
            ci: 2,
            co: 3,
            hw: [50, 50],
            k: [3, 3],
            stride: [1, 1],
            pad: [1, 1],
            dilation: [1, 1],
            groups: 1,
        },
        6,
    );
    check(
        &Case {
            n: 2,
            ci: 4,
            co: 6,
            hw: [48, 48],
            k: [1, 1],
            stride: [1, 1],
            pad: [0, 0],
            dilation: [1, 1],
            groups: 2,
        },
        7,
    );
}

//! The fused GroupNorm (+ SiLU) kernel (`src/group_norm/`) against burn's composed
//! GroupNorm module and SiLU: outputs and the gradients of x, γ and β, on shapes whose groups
//! hold one or several channels, odd spatial sizes, a batch of one, and a non-contiguous input.
use burn::module::Param;
use burn::nn::{GroupNorm, GroupNormConfig};
use burn::prelude::*;
use diffuse_kernels::group_norm::{group_norm_act_composed, group_norm_act_fused, Epilogue};

use diffuse_testkit::{assert_close, f32_rtol, Normals};

struct Case {
    b: usize,
    c: usize,
    h: usize,
    w: usize,
    groups: usize,
}

fn norm(c: &Case, seed: u64, dev: &Device) -> GroupNorm {
    let mut r = Normals::new(seed, 1);
    let mut n = GroupNormConfig::new(c.groups, c.c).init(dev);
    // γ around 1 and β around 0, as after training; both non-trivial so that a swapped or
    // ignored parameter shows.
    let g: Vec<f32> = r.vec(c.c).iter().map(|v| 1.0 + 0.3 * v).collect();
    let b: Vec<f32> = r.vec(c.c).iter().map(|v| 0.5 * v).collect();
    n.gamma = Some(Param::from_tensor(Tensor::from_data(
        TensorData::new(g, [c.c]),
        dev,
    )));
    n.beta = Some(Param::from_tensor(Tensor::from_data(
        TensorData::new(b, [c.c]),
        dev,
    )));
    n
}

/// (y, dL/dx, dL/dγ, dL/dβ) for L = Σ y·r.
fn run(c: &Case, act: bool, fused: bool, transposed: bool, seed: u64) -> [Vec<f32>; 4] {
    let dev = Device::flex().autodiff();
    let mut r = Normals::new(seed, 0);
    let n = c.b * c.c * c.h * c.w;
    // Per-channel offsets and scales, so the statistics matter.
    let xv: Vec<f32> = r
        .vec(n)
        .iter()
        .enumerate()
        .map(|(i, v)| {
            let ch = (i / (c.h * c.w)) % c.c;
            3.0 * v * (1.0 + ch as f32 * 0.1) + ch as f32 - 2.0
        })
        .collect();
    let rv = r.vec(n);
    // With `transposed`, the same values stored with H and W swapped and read through a
    // transposed view: the kernel must see the logical order.
    let leaf: Tensor<4> = if transposed {
        let mut xt = vec![0f32; n];
        for bc in 0..c.b * c.c {
            for i in 0..c.h {
                for j in 0..c.w {
                    xt[bc * c.h * c.w + j * c.h + i] = xv[bc * c.h * c.w + i * c.w + j];
                }
            }
        }
        Tensor::from_data(TensorData::new(xt, [c.b, c.c, c.w, c.h]), &dev).require_grad()
    } else {
        Tensor::from_data(TensorData::new(xv, [c.b, c.c, c.h, c.w]), &dev).require_grad()
    };
    let x = if transposed {
        leaf.clone().swap_dims(2, 3)
    } else {
        leaf.clone()
    };
    let rt: Tensor<4> = Tensor::from_data(TensorData::new(rv, [c.b, c.c, c.h, c.w]), &dev);
    let gn = norm(c, seed, &dev);
    let y = if fused {
        group_norm_act_fused(
            &gn,
            x,
            Epilogue {
                silu: act,
                dropout: 0.0,
                seed: 0,
            },
        )
    } else {
        group_norm_act_composed(&gn, x, act)
    };
    let grads = (y.clone() * rt).sum().backward();
    let gx = leaf.grad(&grads).expect("x grad");
    let gx = if transposed { gx.swap_dims(2, 3) } else { gx };
    let gg = gn.gamma.as_ref().unwrap().grad(&grads).expect("gamma grad");
    let gb = gn.beta.as_ref().unwrap().grad(&grads).expect("beta grad");
    [to_vec(y), to_vec(gx), to_vec(gg), to_vec(gb)]
}

fn check(c: &Case, act: bool, transposed: bool, seed: u64) {
    let got = run(c, act, true, transposed, seed);
    let want = run(c, act, false, transposed, seed);
    let group = c.c / c.groups * c.h * c.w;
    let per_channel = c.b * c.h * c.w;
    let what = format!(
        "b{} c{} {}x{} g{} silu={act} transposed={transposed}",
        c.b, c.c, c.h, c.w, c.groups
    );
    // The statistics sum a group (burn in f32, the kernel in f64); the output chains norm,
    // affine and SiLU; the x gradient adds two group-wide sums; γ and β sum over the batch and
    // positions.
    assert_close(&got[0], &want[0], f32_rtol(group, 4), &format!("{what}: y"));
    assert_close(
        &got[1],
        &want[1],
        f32_rtol(group, 8),
        &format!("{what}: dx"),
    );
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

const CASES: [Case; 4] = [
    Case {
        b: 2,
        c: 8,
        h: 5,
        w: 3,
        groups: 4,
    },
    Case {
        b: 3,
        c: 6,
        h: 4,
        w: 4,
        groups: 3,
    },
    Case {
        b: 1,
        c: 32,
        h: 8,
        w: 8,
        groups: 32,
    },
    Case {
        b: 2,
        c: 64,
        h: 16,
        w: 16,
        groups: 32,
    },
];

#[test]
fn fused_group_norm_silu_matches_composed() {
    for (i, c) in CASES.iter().enumerate() {
        check(c, true, false, 10 + i as u64);
    }
}

#[test]
fn fused_group_norm_without_silu_matches_composed() {
    for (i, c) in CASES.iter().enumerate() {
        check(c, false, false, 20 + i as u64);
    }
}

#[test]
fn fused_group_norm_reads_non_contiguous_input() {
    check(&CASES[0], true, true, 30);
    check(&CASES[3], false, true, 31);
}

#[test]
fn fused_group_norm_is_deterministic() {
    let a = run(&CASES[3], true, true, false, 40);
    let b = run(&CASES[3], true, true, false, 40);
    assert_eq!(a, b);
}

#[test]
fn fused_group_norm_without_autodiff_matches() {
    let c = &CASES[1];
    let dev = Device::flex();
    let mut r = Normals::new(50, 0);
    let x: Tensor<4> = Tensor::from_data(
        TensorData::new(r.vec(c.b * c.c * c.h * c.w), [c.b, c.c, c.h, c.w]),
        &dev,
    );
    let gn = norm(c, 50, &dev);
    let got = to_vec(group_norm_act_fused(
        &gn,
        x.clone(),
        Epilogue {
            silu: true,
            dropout: 0.0,
            seed: 0,
        },
    ));
    let want = to_vec(group_norm_act_composed(&gn, x, true));
    assert_close(
        &got,
        &want,
        f32_rtol(c.c / c.groups * c.h * c.w, 4),
        "inference",
    );
}

/// With dropout: the fused kernel equals burn's GroupNorm → SiLU times the mask that
/// `keep_mask` defines for its seed, in value and in every gradient.
#[test]
fn fused_dropout_matches_composed_times_its_mask() {
    use diffuse_kernels::group_norm::keep_mask;
    let c = &CASES[3];
    let dev = Device::flex().autodiff();
    let n = c.b * c.c * c.h * c.w;
    let mut r = Normals::new(60, 0);
    let xv = r.vec(n);
    let rv: Tensor<4> = Tensor::from_data(TensorData::new(r.vec(n), [c.b, c.c, c.h, c.w]), &dev);
    let ep = Epilogue {
        silu: true,
        dropout: 0.25,
        seed: 0xfeed_beef_1234,
    };
    let threshold = (0.75f64 * (1u32 << 24) as f64).round() as u32;
    let mask: Vec<f32> = (0..n)
        .map(|i| keep_mask(ep.seed, i, threshold, 1.0 / 0.75))
        .collect();
    let kept = mask.iter().filter(|&&m| m > 0.0).count() as f64 / n as f64;
    assert!((kept - 0.75).abs() < 0.02, "kept {kept}");
    let mask_t: Tensor<4> = Tensor::from_data(TensorData::new(mask, [c.b, c.c, c.h, c.w]), &dev);
    let run = |fused: bool| {
        let x: Tensor<4> =
            Tensor::from_data(TensorData::new(xv.clone(), [c.b, c.c, c.h, c.w]), &dev)
                .require_grad();
        let gn = norm(c, 60, &dev);
        let y = if fused {
            group_norm_act_fused(&gn, x.clone(), ep)
        } else {
            group_norm_act_composed(&gn, x.clone(), true) * mask_t.clone()
        };
        let grads = (y.clone() * rv.clone()).sum().backward();
        [
            to_vec(y),
            to_vec(x.grad(&grads).unwrap()),
            to_vec(gn.gamma.as_ref().unwrap().grad(&grads).unwrap()),
            to_vec(gn.beta.as_ref().unwrap().grad(&grads).unwrap()),
        ]
    };
    let (got, want) = (run(true), run(false));
    let group = c.c / c.groups * c.h * c.w;
    let per_channel = c.b * c.h * c.w;
    assert_close(&got[0], &want[0], f32_rtol(group, 4), "dropout: y");
    assert_close(&got[1], &want[1], f32_rtol(group, 8), "dropout: dx");
    assert_close(
        &got[2],
        &want[2],
        f32_rtol(per_channel, 6),
        "dropout: dgamma",
    );
    assert_close(
        &got[3],
        &want[3],
        f32_rtol(per_channel, 6),
        "dropout: dbeta",
    );
}

fn to_vec<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data().try_to_vec::<f32>().expect("f32 tensor")
}

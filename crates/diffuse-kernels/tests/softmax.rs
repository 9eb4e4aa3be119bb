//! The fused last-axis softmax (`src/softmax/`) against burn's softmax, forward and backward
//! (the UNet's attention block on it is tested in the main crate's tests/unet.rs).
use burn::prelude::*;
use burn::tensor::activation::softmax;
use diffuse_kernels::softmax::softmax_last_fused;

use diffuse_testkit::{assert_close, f32_rtol, Normals};

/// (y, dL/dx) for L = Σ y·r, through the fused kernel or burn's softmax.
fn run(shape: [usize; 3], offset: f32, transposed: bool, fused: bool, seed: u64) -> [Vec<f32>; 2] {
    let dev = Device::flex().autodiff();
    let mut r = Normals::new(seed, 0);
    let n: usize = shape.iter().product();
    let xv: Vec<f32> = r.vec(n).iter().map(|v| 4.0 * v + offset).collect();
    let rv = r.vec(n);
    // With `transposed`, the leaf is stored with the last two axes swapped and read through a
    // transposed view.
    let leaf_shape = if transposed {
        [shape[0], shape[2], shape[1]]
    } else {
        shape
    };
    let leaf: Tensor<3> = Tensor::from_data(TensorData::new(xv, leaf_shape), &dev).require_grad();
    let x = if transposed {
        leaf.clone().swap_dims(1, 2)
    } else {
        leaf.clone()
    };
    let y = if fused {
        softmax_last_fused(x)
    } else {
        softmax(x, 2)
    };
    let rt: Tensor<3> = Tensor::from_data(TensorData::new(rv, shape), &dev);
    let grads = (y.clone() * rt).sum().backward();
    let gx = leaf.grad(&grads).expect("x grad");
    let gx = if transposed { gx.swap_dims(1, 2) } else { gx };
    [to_vec(y), to_vec(gx)]
}

#[test]
fn fused_softmax_matches_burn() {
    let cases: [([usize; 3], f32, bool); 5] = [
        ([3, 5, 7], 0.0, false),
        ([2, 4, 1], 0.0, false),
        ([2, 3, 1024], 0.0, false),
        // Large logits: the max shift must keep exp finite.
        ([2, 3, 100], 300.0, false),
        ([2, 6, 9], -50.0, true),
    ];
    for (i, (shape, offset, transposed)) in cases.into_iter().enumerate() {
        let got = run(shape, offset, transposed, true, i as u64);
        let want = run(shape, offset, transposed, false, i as u64);
        let what = format!("{shape:?} offset {offset} transposed {transposed}");
        // One row-wide sum in the forward, one more in the backward; both kernels' exp are
        // within a few ulp.
        assert_close(
            &got[0],
            &want[0],
            f32_rtol(shape[2], 4),
            &format!("{what}: y"),
        );
        assert_close(
            &got[1],
            &want[1],
            f32_rtol(shape[2], 8),
            &format!("{what}: dx"),
        );
        let rows = got[0].chunks(shape[2]);
        assert!(rows
            .into_iter()
            .all(|r| (r.iter().sum::<f32>() - 1.0).abs() < 1e-5));
    }
}

#[test]
fn fused_softmax_is_deterministic() {
    assert_eq!(
        run([4, 8, 333], 1.0, false, true, 9),
        run([4, 8, 333], 1.0, false, true, 9)
    );
}

fn to_vec<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data().try_to_vec::<f32>().expect("f32 tensor")
}

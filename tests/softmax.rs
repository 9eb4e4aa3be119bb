//! The fused last-axis softmax (`src/nn/softmax.rs`) against burn's softmax, forward and
//! backward, and the UNet attention block that uses it during training against the same block
//! through burn's `attention`.
use burn::prelude::*;
use burn::tensor::activation::softmax;
use diffuse::nn::softmax::softmax_last_fused;
use diffuse::nn::unet::{Block, UNetConfig};
use diffuse::rng;

mod common;
use common::{assert_close, f32_rtol, to_vec};

/// (y, dL/dx) for L = Σ y·r, through the fused kernel or burn's softmax.
fn run(shape: [usize; 3], offset: f32, transposed: bool, fused: bool, seed: u64) -> [Vec<f32>; 2] {
    let dev = Device::flex().autodiff();
    let mut r = rng::seeded(seed, 0);
    let n: usize = shape.iter().product();
    let xv: Vec<f32> = rng::normal_vec(&mut r, n)
        .iter()
        .map(|v| 4.0 * v + offset)
        .collect();
    let rv = rng::normal_vec(&mut r, n);
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

/// The attention block's training path (fused softmax) against burn's attention: output and
/// the gradients of the input and of the query projection.
#[test]
fn attention_block_training_path_matches_burn_attention() {
    let dev = Device::flex().autodiff();
    let cfg = UNetConfig {
        image_size: 8,
        channels: 16,
        channel_mult: vec![1, 2],
        num_res_blocks: 1,
        attn_levels: vec![1],
        num_groups: 8,
        ..UNetConfig::default()
    };
    let net = cfg.init(&dev, &mut rng::seeded(3, 0)).expect("UNet");
    let attn = net
        .downblocks
        .iter()
        .find_map(|b| match b {
            Block::Res(r) => r.attn.as_ref(),
            _ => None,
        })
        .expect("a block with attention");
    let c = attn.proj_q.weight.dims()[0];
    let mut r = rng::seeded(4, 0);
    let shape = [3, c, 4, 5];
    let n: usize = shape.iter().product();
    let xv = rng::normal_vec(&mut r, n);
    let rv: Tensor<4> = Tensor::from_data(TensorData::new(rng::normal_vec(&mut r, n), shape), &dev);
    let run = |fused: bool| {
        let x: Tensor<4> =
            Tensor::from_data(TensorData::new(xv.clone(), shape), &dev).require_grad();
        let y = attn.forward_with(x.clone(), fused);
        let grads = (y.clone() * rv.clone()).sum().backward();
        let gx = to_vec(x.grad(&grads).expect("x grad"));
        let gq = to_vec(attn.proj_q.weight.grad(&grads).expect("proj_q grad"));
        [to_vec(y), gx, gq]
    };
    let (got, want) = (run(true), run(false));
    // Reductions over C (projections) and HW (attention), through ~6 chained operations.
    let k = c.max(20);
    assert_close(&got[0], &want[0], f32_rtol(k, 6), "attention output");
    assert_close(&got[1], &want[1], f32_rtol(k, 12), "attention dx");
    assert_close(
        &got[2],
        &want[2],
        f32_rtol(3 * 20, 12),
        "attention d proj_q",
    );
}

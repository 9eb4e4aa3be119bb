//! SimpleNet against PyTorch goldens: deterministic weights, and a PyTorch state dict import.
mod common;

use burn::prelude::*;
use common::*;
use diffuse::nn::simplenet::{SimpleNet, SimpleNetConfig};
use diffuse::rng::seeded;

fn det_net(dims: Vec<usize>, device: &Device) -> SimpleNet {
    let mut net = SimpleNetConfig { dims }
        .init(&mut seeded(0, 0), device)
        .unwrap();
    for (k, l) in net.layers.iter_mut().enumerate() {
        let k = k as u64;
        det_linear(&mut l.fc, 100 * k + 1, device);
        det_linear(&mut l.time_embedding.mlp0, 100 * k + 3, device);
        det_linear(&mut l.time_embedding.mlp2, 100 * k + 5, device);
    }
    net
}

/// SimpleNet's reductions are 128-long (the hidden width; the time embedding's MLP too) and its
/// longest path 8 layers (4 blocks of a Linear fed by a 2-layer time MLP).
fn rtol() -> f64 {
    f32_rtol(128, 8)
}

/// Runs `net` on a golden case and compares with PyTorch's output.
fn check(net: &SimpleNet, case: &serde_json::Value, device: &Device, what: &str) {
    let x = tensor2(f32s(&case["x"]), 2, device);
    let t: Vec<f32> = usizes(&case["t"]).into_iter().map(|v| v as f32).collect();
    let n = t.len();
    let out = to_vec(net.forward(x, Tensor::from_data(TensorData::new(t, [n]), device)));
    assert_close(&out, &f32s(&case["eps"]), rtol(), what);
}

#[test]
fn forward_matches_pytorch_on_fixed_weights() {
    let dev = Device::flex();
    let net = det_net(vec![2, 128, 128, 128, 2], &dev);
    check(&net, &golden("toy.json")["simplenet"], &dev, "SimpleNet");
}

#[test]
fn reference_parameter_count() {
    let net = SimpleNetConfig::default()
        .init(&mut seeded(0, 0), &Device::flex())
        .unwrap();
    assert_eq!(net.num_params(), 182_410);
}

#[test]
fn pytorch_state_dict_imports() {
    let dev = Device::flex();
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/simplenet_small.pth");
    let net = SimpleNetConfig {
        dims: vec![2, 16, 2],
    }
    .init(&mut seeded(0, 0), &dev)
    .unwrap();
    let net = diffuse::nn::simplenet::load_pytorch(net, &path).unwrap();
    check(
        &net,
        &golden("toy.json")["simplenet_small"],
        &dev,
        "imported SimpleNet",
    );
}

#[test]
fn mismatched_state_dict_is_rejected_with_tensor_name() {
    let dev = Device::flex();
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/simplenet_small.pth");
    let net = SimpleNetConfig {
        dims: vec![2, 32, 2],
    }
    .init(&mut seeded(0, 0), &dev)
    .unwrap();
    let msg = diffuse::nn::simplenet::load_pytorch(net, &path)
        .expect_err("must fail")
        .to_string();
    assert!(
        msg.contains("layers.0.fc.weight") || msg.contains("layers.0.fc"),
        "{msg}"
    );
}

#[test]
fn table_sinusoid_matches_the_tensor_sinusoid() {
    let dev = Device::flex();
    let net = det_net(vec![2, 128, 128, 128, 2], &dev);
    let case = &golden("toy.json")["simplenet"];
    let x = tensor2(f32s(&case["x"]), 2, &dev);
    let t = usizes(&case["t"]);
    let tf: Vec<f32> = t.iter().map(|&v| v as f32).collect();
    let a = to_vec(net.forward(
        x.clone(),
        Tensor::from_data(TensorData::new(tf, [t.len()]), &dev),
    ));
    let b = to_vec(net.forward_steps(x, &t));
    assert_close(&b, &a, rtol(), "table path vs tensor path");
    assert_close(&b, &f32s(&case["eps"]), rtol(), "table path vs PyTorch");
}

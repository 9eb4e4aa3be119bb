//! Inception-v3 against PyTorch goldens (bench/torch/fid_torch.py goldens) and the loader's errors.
mod common;

use std::path::{Path, PathBuf};

use common::assert_close;

use burn::prelude::*;
use diffuse::nn::inception::{InceptionKind, InceptionV3};
use diffuse::nn::inception_load::{load_inception, save_inception_safetensors};
use diffuse_testkit::det_values as det;

fn golden(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(name)
}

fn read_f32(name: &str) -> Vec<f32> {
    std::fs::read(golden(name))
        .unwrap()
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
        .collect()
}

fn input(side: usize, seed: u64, dev: &Device) -> Tensor<4> {
    Tensor::from_data(
        TensorData::new(det(2 * 3 * side * side, seed, 2.0), [2, 3, side, side]),
        dev,
    )
}

/// Inception-v3's longest reduction is a 3×3 convolution over 448 channels (k = 4032) and its
/// longest path about 48 layers (stem, 11 mixed blocks of up to 4 convolutions, pooling, fc).
fn rtol() -> f64 {
    common::f32_rtol(4032, 48)
}

fn to_vec(t: Tensor<2>) -> Vec<f32> {
    t.into_data().try_to_vec::<f32>().unwrap()
}

#[test]
fn reference_features_match_torchvision() {
    let dev = Device::flex();
    let net = load_inception(
        &golden("inception_ref_tiny.ckpt"),
        InceptionKind::Torchvision,
        &dev,
    )
    .unwrap();
    assert_eq!(net.num_classes(), 3);
    let f = net.features(input(96, 7, &dev));
    assert_close(
        &to_vec(f.clone()),
        &read_f32("inception_ref_features.bin"),
        rtol(),
        "features",
    );
    assert_close(
        &to_vec(net.final_fc.forward(f)),
        &read_f32("inception_ref_logits.bin"),
        rtol(),
        "logits",
    );
}

#[test]
fn pytorch_fid_layout_nested_pth_matches() {
    let dev = Device::flex();
    let net = load_inception(
        &golden("inception_std_tiny.pth"),
        InceptionKind::PytorchFid,
        &dev,
    )
    .unwrap();
    assert_eq!(net.num_classes(), 1008);
    let f = net.features(input(80, 8, &dev));
    assert_close(
        &to_vec(f),
        &read_f32("inception_std_features.bin"),
        rtol(),
        "pytorch-fid features",
    );
}

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("diffuse_inception_{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d.join(name)
}

/// Rewrites a safetensors file's JSON header with `edit` (tensor data untouched).
fn edit_safetensors(
    src: &Path,
    dst: &Path,
    edit: impl FnOnce(&mut serde_json::Map<String, serde_json::Value>),
) {
    let bytes = std::fs::read(src).unwrap();
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let mut header: serde_json::Map<String, serde_json::Value> =
        serde_json::from_slice(&bytes[8..8 + n]).unwrap();
    edit(&mut header);
    let mut h = serde_json::to_vec(&header).unwrap();
    while !h.len().is_multiple_of(8) {
        h.push(b' ');
    }
    let mut out = (h.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(&h);
    out.extend_from_slice(&bytes[8 + n..]);
    std::fs::write(dst, out).unwrap();
}

#[test]
fn safetensors_roundtrip_and_bad_checkpoints() {
    let dev = Device::flex();
    let net = load_inception(
        &golden("inception_ref_tiny.ckpt"),
        InceptionKind::Torchvision,
        &dev,
    )
    .unwrap();
    let st = tmp("ref.safetensors");
    save_inception_safetensors(&net, &st).unwrap();
    let back = load_inception(&st, InceptionKind::Torchvision, &dev).unwrap();
    let x = input(80, 3, &dev);
    assert_close(
        &to_vec(back.features(x.clone())),
        &to_vec(net.features(x)),
        0.0,
        "roundtrip",
    );

    // A renamed tensor is reported as missing (and the new name as unexpected).
    let bad = tmp("missing.safetensors");
    edit_safetensors(&st, &bad, |h| {
        let v = h.remove("block2.1.bn.running_var").unwrap();
        h.insert("block2.1.bn.running_varX".into(), v);
    });
    let err = load_inception(&bad, InceptionKind::Torchvision, &dev)
        .unwrap_err()
        .to_string();
    eprintln!("{err}");
    assert!(
        err.contains("missing") && err.contains("block2.1.bn.running_var"),
        "{err}"
    );
    assert!(err.contains("block2.1.bn.running_varX"), "{err}");
    assert!(err.contains("missing.safetensors"), "{err}");

    // A tensor with the same size but another shape is reported as mis-shaped.
    let bad = tmp("shape.safetensors");
    edit_safetensors(&st, &bad, |h| {
        h.get_mut("block3.0.branch5x5_2.conv.weight").unwrap()["shape"] =
            serde_json::json!([64, 48, 25, 1]);
    });
    let err = load_inception(&bad, InceptionKind::Torchvision, &dev)
        .unwrap_err()
        .to_string();
    eprintln!("{err}");
    assert!(err.contains("block3.0.branch5x5_2.conv.weight"), "{err}");

    // Garbage and unrelated files give errors naming the file.
    let junk = tmp("junk.pth");
    std::fs::write(&junk, b"this is not a checkpoint at all").unwrap();
    let err = load_inception(&junk, InceptionKind::Torchvision, &dev)
        .unwrap_err()
        .to_string();
    eprintln!("{err}");
    assert!(
        err.contains("junk.pth") && err.contains("checkpoint"),
        "{err}"
    );
    let err = load_inception(&tmp("absent.ckpt"), InceptionKind::Torchvision, &dev)
        .unwrap_err()
        .to_string();
    eprintln!("{err}");
    assert!(err.contains("absent.ckpt"), "{err}");
    let _ = std::fs::remove_dir_all(st.parent().unwrap());
}

#[test]
fn fresh_network_shapes() {
    let dev = Device::flex();
    let net = InceptionV3::new(InceptionKind::Torchvision, 5, &dev);
    let f = net.logits(input(75, 1, &dev));
    assert_eq!(f.dims(), [2, 5]);
}

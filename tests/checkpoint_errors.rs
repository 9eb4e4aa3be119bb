//! Checkpoint errors a person can read: a file that does not fit names itself, gives the
//! counts and the first few missing / mis-shaped tensors, says what network the file looks like
//! instead, and fits on one screen — through every loader (generic `load_weights`, the UNet's
//! and Inception's own) and through the CLI.
mod common;

use std::path::{Path, PathBuf};

use burn::prelude::*;
use diffuse::error::MAX_MESSAGE_CHARS;
use diffuse::nn::inception::InceptionKind;
use diffuse::nn::inception_load::load_inception;
use diffuse::nn::simplenet::SimpleNetConfig;
use diffuse::nn::unet::{load_pytorch, UNetConfig};

fn golden(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(name)
}

/// A readable message: names the file, is at most a screen, carries no programmer hints.
fn readable(err: &str, file: &str) {
    eprintln!("{err}\n");
    assert!(err.contains(file), "does not name {file}: {err}");
    assert!(
        err.chars().count() <= MAX_MESSAGE_CHARS,
        "{} characters: {err}",
        err.chars().count()
    );
    assert!(err.lines().count() <= 24, "{err}");
    assert!(
        !err.contains("allow_partial") && !err.contains("Hint:"),
        "{err}"
    );
}

fn unet_config() -> UNetConfig {
    let g: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(golden("unet_small.json")).unwrap()).unwrap();
    serde_json::from_value(g["config"].clone()).unwrap()
}

/// The report's case: a UNet checkpoint given as the FID network's weights.
#[test]
fn unet_file_as_inception_weights() {
    let err = load_inception(
        &golden("unet_small.pth"),
        InceptionKind::Torchvision,
        &Device::flex(),
    )
    .expect_err("must fail")
    .to_string();
    readable(&err, "unet_small.pth");
    assert!(
        err.contains("looks like a checkpoint of a diffusion UNet"),
        "{err}"
    );
    assert!(err.contains("Inception-v3"), "{err}");
}

/// The other way round: an Inception checkpoint given to the UNet loader.
#[test]
fn inception_file_as_unet_weights() {
    let err = load_pytorch(
        golden("inception_ref_tiny.ckpt"),
        &unet_config(),
        &Device::flex(),
    )
    .expect_err("must fail")
    .to_string();
    readable(&err, "inception_ref_tiny.ckpt");
    assert!(
        err.contains("looks like a checkpoint of Inception-v3"),
        "{err}"
    );
}

/// An Inception file that has the anchor tensor and nothing else: hundreds of tensors missing,
/// shown as a count and the first five, not as a 25 KB line.
#[test]
fn hundreds_of_missing_tensors_are_counted_not_listed() {
    let dir = common::TempDir::new("ckpt-errors");
    let path = dir.0.join("only_first_conv.safetensors");
    let header = serde_json::json!({
        "block1.0.conv.weight": {"dtype": "F32", "shape": [32, 3, 3, 3], "data_offsets": [0, 3456]}
    })
    .to_string();
    let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
    bytes.extend_from_slice(header.as_bytes());
    bytes.extend(std::iter::repeat_n(0u8, 3456));
    std::fs::write(&path, bytes).unwrap();
    let err = load_inception(&path, InceptionKind::Torchvision, &Device::flex())
        .expect_err("must fail")
        .to_string();
    readable(&err, "only_first_conv.safetensors");
    let missing: usize = err
        .split("missing tensors (")
        .nth(1)
        .and_then(|s| s.split(')').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no count of missing tensors: {err}"));
    assert!(missing > 400, "{err}");
    assert!(err.contains(&format!("and {} more", missing - 5)), "{err}");
}

/// Generic `load_weights`: a UNet state dict into the toy network is refused before any of
/// its (larger) tensors is read, and the message says what the file is.
#[test]
fn unet_file_into_the_toy_network() {
    let net = SimpleNetConfig {
        dims: vec![2, 16, 2],
    }
    .init(&mut diffuse::rng::seeded(0, 0), &Device::flex())
    .unwrap();
    let err = diffuse::checkpoint::load_weights(net, &golden("unet_small.pth"))
        .expect_err("must fail")
        .to_string();
    readable(&err, "unet_small.pth");
    assert!(err.contains("a diffusion UNet"), "{err}");
    assert!(err.contains("the toy SimpleNet"), "{err}");
}

/// Same network, other size: the message says so instead of guessing another network.
#[test]
fn same_network_other_configuration() {
    let net = SimpleNetConfig {
        dims: vec![2, 32, 2],
    }
    .init(&mut diffuse::rng::seeded(0, 0), &Device::flex())
    .unwrap();
    let err = diffuse::nn::simplenet::load_pytorch(net, &golden("simplenet_small.pth"))
        .expect_err("must fail")
        .to_string();
    readable(&err, "simplenet_small.pth");
    assert!(err.contains("mis-shaped tensors ("), "{err}");
    assert!(err.contains("another configuration"), "{err}");
    assert!(!err.contains("looks like"), "{err}");
}

/// End to end: `diffuse fid … --weights UNET.pth` exits non-zero with a short message.
#[test]
fn cli_fid_with_unet_weights() {
    let dir = common::TempDir::new("ckpt-errors-cli");
    for sub in ["a", "b"] {
        std::fs::create_dir_all(dir.0.join(sub)).unwrap();
        for i in 0..2u8 {
            image::RgbImage::from_pixel(8, 8, image::Rgb([i * 90, 30, 200]))
                .save(dir.0.join(sub).join(format!("{i}.png")))
                .unwrap();
        }
    }
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_diffuse"))
        .arg("fid")
        .arg(dir.0.join("a"))
        .arg(dir.0.join("b"))
        .arg("--weights")
        .arg(golden("unet_small.pth"))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    readable(&err, "unet_small.pth");
    assert!(err.contains("diffusion UNet"), "{err}");
}

//! Test helpers shared by the integration tests.
#![allow(dead_code)]
use burn::module::Param;
use burn::nn::Linear;
use burn::prelude::*;

/// The deterministic weight formula of bench/torch/common.py.
#[allow(unused_imports)]
pub use diffuse_testkit::det_values as det;
#[allow(unused_imports)]
pub use diffuse_testkit::{
    assert_close, f32_rtol, max_abs_diff, pattern, temp_dir, TempDir, F32_U,
};

/// Sets a Linear to bench/torch/common.py's `det_linear(lin, seed)` (PyTorch layout [out, in],
/// transposed into burn's [in, out]).
pub fn det_linear(l: &mut Linear, seed: u64, device: &Device) {
    let [d_in, d_out] = l.weight.val().dims();
    let s = 2.0 / (d_in as f32).sqrt();
    let w = det(d_in * d_out, seed, s);
    let mut wt = vec![0f32; d_in * d_out];
    for o in 0..d_out {
        for i in 0..d_in {
            wt[i * d_out + o] = w[o * d_in + i];
        }
    }
    l.weight = Param::from_tensor(Tensor::from_data(
        TensorData::new(wt, [d_in, d_out]),
        device,
    ));
    l.bias = Some(Param::from_tensor(Tensor::from_data(
        TensorData::new(det(d_out, seed + 1, s), [d_out]),
        device,
    )));
}

pub fn golden(name: &str) -> serde_json::Value {
    let path = format!("{}/tests/golden/{name}", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_str(&std::fs::read_to_string(&path).expect("golden file"))
        .expect("golden JSON")
}

pub fn f32s(v: &serde_json::Value) -> Vec<f32> {
    v.as_array()
        .expect("array")
        .iter()
        .map(|x| x.as_f64().expect("number") as f32)
        .collect()
}

pub fn usizes(v: &serde_json::Value) -> Vec<usize> {
    v.as_array()
        .expect("array")
        .iter()
        .map(|x| x.as_u64().expect("int") as usize)
        .collect()
}

pub fn tensor2(v: Vec<f32>, cols: usize, device: &Device) -> Tensor<2> {
    let rows = v.len() / cols;
    Tensor::from_data(TensorData::new(v, [rows, cols]), device)
}

pub fn to_vec<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data().try_to_vec::<f32>().expect("f32 tensor")
}

/// Runs the `diffuse` binary: (exit code, stdout, stderr).
pub fn diffuse(args: &[&str]) -> (i32, String, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_diffuse"))
        .args(args)
        .output()
        .expect("run diffuse");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

/// Runs the binary, asserts success and returns its stdout.
pub fn ok(args: &[&str]) -> String {
    let (code, out, err) = diffuse(args);
    assert_eq!(code, 0, "{args:?}: {err}");
    out
}

/// Asserts that the binary fails, without a panic, with `needle` (any case) in its stderr.
pub fn fails_with(args: &[&str], needle: &str) {
    let (code, _, err) = diffuse(args);
    assert_ne!(code, 0, "{args:?} should fail");
    assert!(!err.contains("panicked"), "{args:?} panicked: {err}");
    assert!(
        err.to_lowercase().contains(&needle.to_lowercase()),
        "{args:?}: expected `{needle}` in: {err}"
    );
}

/// A digits training configuration with a tiny UNet (8 channels), batch 8, for `steps` steps.
pub fn tiny_image_config(steps: usize) -> diffuse::image::ImageTrainConfig {
    let mut c = diffuse::image::ImageTrainConfig::digits();
    c.unet = diffuse::nn::unet::UNetConfig {
        channels: 8,
        num_groups: 4,
        ..diffuse::nn::unet::UNetConfig::digits()
    };
    c.batch_size = 8;
    c.steps = steps;
    c.preview_every = 0;
    c
}

/// Every file of a folder (name, bytes), sorted by name.
pub fn folder_files(dir: &std::path::Path) -> Vec<(String, Vec<u8>)> {
    let mut v: Vec<_> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| {
            let e = e.unwrap();
            (
                e.file_name().to_string_lossy().into_owned(),
                std::fs::read(e.path()).unwrap(),
            )
        })
        .collect();
    v.sort();
    v
}

/// A small folder-per-class data set: `dir/{a,b}/{0..3}.png`, 8×8 RGB gradients that differ by
/// class and index.
pub fn two_class_folder(dir: &std::path::Path) {
    for (c, class) in ["a", "b"].iter().enumerate() {
        for i in 0..4u8 {
            let path = dir.join(class).join(format!("{i}.png"));
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            image::RgbImage::from_fn(8, 8, |x, y| {
                image::Rgb([(x * 30) as u8, (y * 30) as u8, 90 * c as u8 + 9 * i])
            })
            .save(&path)
            .unwrap();
        }
    }
}

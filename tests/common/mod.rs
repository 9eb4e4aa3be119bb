//! Test helpers shared by the integration tests.
#![allow(dead_code)]
use burn::module::Param;
use burn::nn::Linear;
use burn::prelude::*;

/// The deterministic weight formula of bench/common.py.
pub use diffuse::rng::det_values as det;

/// Sets a Linear to bench/common.py's `det_linear(lin, seed)` (PyTorch layout [out, in],
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

pub fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len(), "length mismatch");
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

/// An RGB test image with smooth gradients, wrap-around edges and hashed noise: the formula
/// of `pattern` in bench/golden_image_io.py, which writes the PIL goldens computed from it.
pub fn pattern(w: u32, h: u32) -> image::RgbImage {
    image::RgbImage::from_fn(w, h, |x, y| {
        let mut p = [0u8; 3];
        for c in 0..3u64 {
            let (x, y) = (x as u64, y as u64);
            let hsh = (x * 73856093) ^ (y * 19349663) ^ (c * 83492791);
            p[c as usize] = ((x * 7 + y * 13 + c * 50 + hsh % 64) % 256) as u8;
        }
        image::Rgb(p)
    })
}

/// A fresh temporary folder under the target dir.
pub fn temp_dir(name: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("diffuse-test-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// A fresh scratch folder (as [`temp_dir`]) removed on drop.
pub struct TempDir(pub std::path::PathBuf);
impl TempDir {
    pub fn new(name: &str) -> Self {
        TempDir(temp_dir(name))
    }
}
impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Unit roundoff of f32 (2⁻²⁴).
pub const F32_U: f64 = 5.960_464_477_539_063e-8;

/// Tolerance for an f32 result computed through `depth` chained layers whose longest reduction
/// sums `k` products, relative to the result's largest magnitude (see [`assert_close`]).
///
/// Why this bound: the rounding error of a length-k f32 sum behaves like a random walk, ~√k·u
/// (Higham, *Accuracy and Stability of Numerical Algorithms*, §4.2), and independent errors of
/// `depth` layers add in quadrature, so √(k·depth)·u is the expected size of the difference
/// between two correct implementations that sum in different orders. The GEMM kernels are chosen
/// at run time (AVX2, AVX-512, AMX; blocking and thread splits differ with the thread count) and
/// only change that order. The factor 16 covers unlucky inputs and the amplification of errors by
/// the weights of later layers; a real defect (a wrong layer, a transposed weight, an off-by-one
/// timestep) moves outputs by percents, orders of magnitude above it.
pub fn f32_rtol(k: usize, depth: usize) -> f64 {
    16.0 * F32_U * ((k * depth) as f64).sqrt()
}

/// Asserts |got − want| ≤ rtol · max|want| for every element: a norm-wise relative bound.
/// Outputs near zero come from cancelling terms as large as the largest output, so their
/// absolute error scales with that magnitude, not with their own.
pub fn assert_close(got: &[f32], want: &[f32], rtol: f64, what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    let scale = want.iter().fold(0f64, |m, v| m.max(v.abs() as f64));
    let bound = rtol * scale.max(f64::MIN_POSITIVE);
    let (i, d) = got
        .iter()
        .zip(want)
        .map(|(a, b)| (*a as f64 - *b as f64).abs())
        .enumerate()
        .fold(
            (0, 0f64),
            |acc, (i, d)| if d > acc.1 { (i, d) } else { acc },
        );
    eprintln!(
        "{what}: max |diff| {d:.3e} = {:.2e} of max |want| {scale:.3e} (allowed {rtol:.1e})",
        d / scale
    );
    assert!(
        d <= bound,
        "{what}: max |diff| {d:e} at {i} (got {}, want {}) exceeds {rtol:e} × max |want| {scale}",
        got[i],
        want[i]
    );
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

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

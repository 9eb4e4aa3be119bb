//! Test support shared by every crate of the workspace and by the tests of the vendored
//! burn-flex kernels (a dev-dependency only; nothing here is part of `diffuse`):
//!
//! - [`f32_rtol`] and [`assert_close`]: how far two correct f32 computations that sum in
//!   different orders may differ, and the norm-wise comparison that uses it;
//! - [`det_values`] (the weight formula the PyTorch scripts under `bench/` share) and
//!   [`Normals`]: deterministic inputs;
//! - [`pattern`]: the RGB test image of the Pillow goldens;
//! - [`TempDir`]: a scratch folder removed on drop.
use rand::{Rng, SeedableRng};

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

/// The largest |a − b| over two equally long slices.
pub fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len(), "length mismatch");
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

/// `n` values in [−scale/2, scale/2) from an integer hash of (index, seed): the formula that
/// the PyTorch scripts under `bench/` also implement (`det` in bench/torch/common.py), so goldens and
/// benchmarks use identical weights on both sides without shipping weight files.
pub fn det_values(n: usize, seed: u64, scale: f32) -> Vec<f32> {
    (0..n as u64)
        .map(|i| {
            let m = 1u64 << 32;
            let h0 = (i * 2654435761 + seed * 40503) % m;
            let h1 = h0 ^ (h0 >> 15);
            let h2 = (h1 * (2246822519 + 2 * seed)) % m;
            let h3 = h2 ^ (h2 >> 13);
            (h3 as f64 / 4294967296.0 - 0.5) as f32 * scale
        })
        .collect()
}

/// A seeded normal generator: the same numbers as `diffuse::rng::seeded(seed, stream)` with
/// `diffuse::rng::normal_vec` (ChaCha8 on stream `stream`).
pub struct Normals(rand_chacha::ChaCha8Rng);

impl Normals {
    pub fn new(seed: u64, stream: u64) -> Self {
        let mut r = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        r.set_stream(stream);
        Self(r)
    }

    /// The next `n` standard-normal values.
    pub fn vec(&mut self, n: usize) -> Vec<f32> {
        (0..n)
            .map(|_| self.0.sample::<f32, _>(rand_distr::StandardNormal))
            .collect()
    }
}

/// An RGB test image with smooth gradients, wrap-around edges and hashed noise: the formula
/// of `pattern` in bench/goldens/image_io.py and bench/goldens/prepare_eval.py, which write
/// Pillow's goldens computed from it.
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

/// A fresh folder `diffuse-test-{name}-{pid}` in the temp dir (emptied if it exists).
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

//! Seeded host-side randomness. All noise is drawn here (not by the backend) so that the same
//! seed gives the same numbers on every backend and thread count.
use burn::prelude::*;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::StandardNormal;

pub type SeededRng = ChaCha8Rng;

/// A generator for `seed`; `stream` separates independent uses of one seed (data, noise, …).
pub fn seeded(seed: u64, stream: u64) -> SeededRng {
    let mut r = ChaCha8Rng::seed_from_u64(seed);
    r.set_stream(stream);
    r
}

/// `n` standard-normal f32 values.
pub fn normal_vec(rng: &mut impl Rng, n: usize) -> Vec<f32> {
    (0..n)
        .map(|_| rng.sample::<f32, _>(StandardNormal))
        .collect()
}

/// A standard-normal tensor of the given shape on `device`.
pub fn normal_tensor<const D: usize>(
    rng: &mut impl Rng,
    shape: [usize; D],
    device: &Device,
) -> Tensor<D> {
    let n = shape.iter().product();
    Tensor::from_data(TensorData::new(normal_vec(rng, n), shape), device)
}

/// Where samplers get the fresh noise of their stochastic steps.
pub trait NoiseSource {
    /// A standard-normal tensor of `shape` on `device`.
    fn normal<const D: usize>(&mut self, shape: [usize; D], device: &Device) -> Tensor<D>;
}

/// One generator for the whole batch, drawn in row-major order.
impl<R: Rng> NoiseSource for R {
    fn normal<const D: usize>(&mut self, shape: [usize; D], device: &Device) -> Tensor<D> {
        normal_tensor(self, shape, device)
    }
}

/// One generator per batch row (the first dimension): a row's noise does not depend on the
/// rows beside it, so an image can be sampled again alone along the same path.
pub struct RowNoise(pub Vec<SeededRng>);

impl NoiseSource for RowNoise {
    fn normal<const D: usize>(&mut self, shape: [usize; D], device: &Device) -> Tensor<D> {
        assert_eq!(shape[0], self.0.len(), "one generator per batch row");
        let per_row: usize = shape[1..].iter().product();
        let values: Vec<f32> = self
            .0
            .iter_mut()
            .flat_map(|r| normal_vec(r, per_row))
            .collect();
        Tensor::from_data(TensorData::new(values, shape), device)
    }
}

/// `n` uniform integers in `0..high`.
pub fn uniform_ints(rng: &mut impl Rng, n: usize, high: usize) -> Vec<usize> {
    (0..n).map(|_| rng.gen_range(0..high)).collect()
}

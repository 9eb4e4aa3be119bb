//! Seeded host-side parameter initialisation, so the same seed gives the same network on every
//! backend and thread count.
use burn::module::Param;
use burn::nn::{Linear, LinearConfig};
use burn::prelude::*;
use rand::Rng;

/// `n` draws from U(−bound, bound).
pub fn uniform_vec(rng: &mut impl Rng, n: usize, bound: f64) -> Vec<f32> {
    (0..n)
        .map(|_| rng.gen_range(-bound..bound) as f32)
        .collect()
}

/// A Linear(d_in → d_out) with PyTorch's default init: weight and bias ~ U(±1/√d_in).
/// burn stores the weight as [d_in, d_out].
pub fn linear(rng: &mut impl Rng, d_in: usize, d_out: usize, device: &Device) -> Linear {
    let bound = 1.0 / (d_in as f64).sqrt();
    let mut l = LinearConfig::new(d_in, d_out).init(device);
    let w = uniform_vec(rng, d_in * d_out, bound);
    let b = uniform_vec(rng, d_out, bound);
    l.weight = Param::from_tensor(Tensor::from_data(TensorData::new(w, [d_in, d_out]), device));
    l.bias = Some(Param::from_tensor(Tensor::from_data(
        TensorData::new(b, [d_out]),
        device,
    )));
    l
}

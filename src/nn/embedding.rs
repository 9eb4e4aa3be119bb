//! Sinusoidal timestep embedding shared by every network.
use burn::prelude::*;

/// The `dim`-wide sinusoid of raw timesteps `t` (shape [B]) → [B, dim]:
/// cosine half first, then sine, frequencies f_k = exp(−ln(10⁴)·k/(dim/2)), k = 0…dim/2−1
/// (the reference's `TimeEmbedding`, after the Transformer positional code).
pub fn timestep_embedding(t: Tensor<1>, dim: usize) -> Tensor<2> {
    let half = dim / 2;
    let device = t.device();
    let freqs: Vec<f32> = (0..half)
        .map(|k| (-(10000f64.ln()) * k as f64 / half as f64).exp() as f32)
        .collect();
    let freqs: Tensor<2> = Tensor::from_data(TensorData::new(freqs, [1, half]), &device);
    let args = t.unsqueeze_dim::<2>(1).mul(freqs);
    Tensor::cat(vec![args.clone().cos(), args.sin()], 1)
}

/// Rows of the same sinusoid for integer timesteps, from the host table of
/// [`diffuse_kernels::embedding::sinusoid_rows`] (the argument is formed in f32 like the tensor
/// version; cos/sin are then exact to f32 rounding). Training and sampling look timesteps up
/// here instead of evaluating 2·dim transcendental functions per row per step.
pub fn timestep_embedding_rows(t: &[usize], dim: usize, device: &Device) -> Tensor<2> {
    let mut data = vec![0f32; t.len() * 2 * (dim / 2)];
    diffuse_kernels::embedding::sinusoid_rows(t, dim, &mut data);
    Tensor::from_data(TensorData::new(data, [t.len(), 2 * (dim / 2)]), device)
}

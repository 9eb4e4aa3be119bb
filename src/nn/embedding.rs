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

/// Rows of the same sinusoid for integer timesteps, from a table built once per width (the
/// argument is formed in f32 like the tensor version; cos/sin are then exact to f32 rounding).
/// Training and sampling look timesteps up here instead of evaluating 2·dim transcendental
/// functions per row per step.
pub fn timestep_embedding_rows(t: &[usize], dim: usize, device: &Device) -> Tensor<2> {
    let mut data = vec![0f32; t.len() * 2 * (dim / 2)];
    timestep_embedding_host(t, dim, &mut data);
    Tensor::from_data(TensorData::new(data, [t.len(), 2 * (dim / 2)]), device)
}

/// [`timestep_embedding_rows`] written into a host buffer of `t.len()` rows of width
/// 2·(dim/2).
pub fn timestep_embedding_host(t: &[usize], dim: usize, out: &mut [f32]) {
    use std::collections::HashMap;
    use std::sync::{Mutex, OnceLock};
    const ROWS: usize = 4096;
    static TABLES: OnceLock<Mutex<HashMap<usize, std::sync::Arc<Vec<f32>>>>> = OnceLock::new();
    let half = dim / 2;
    let row = |t: usize, out: &mut Vec<f32>| {
        let args: Vec<f32> = (0..half)
            .map(|k| t as f32 * (-(10000f64.ln()) * k as f64 / half as f64).exp() as f32)
            .collect();
        out.extend(args.iter().map(|&a| (a as f64).cos() as f32));
        out.extend(args.iter().map(|&a| (a as f64).sin() as f32));
    };
    let table = {
        let mut map = TABLES
            .get_or_init(|| Mutex::new(HashMap::new()))
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        map.entry(dim)
            .or_insert_with(|| {
                let mut v = Vec::with_capacity(ROWS * 2 * half);
                (0..ROWS).for_each(|t| row(t, &mut v));
                std::sync::Arc::new(v)
            })
            .clone()
    };
    assert_eq!(out.len(), t.len() * 2 * half, "sinusoid buffer size");
    for (&ti, o) in t.iter().zip(out.chunks_exact_mut(2 * half)) {
        if ti < ROWS {
            o.copy_from_slice(&table[ti * 2 * half..(ti + 1) * 2 * half]);
        } else {
            let mut v = Vec::with_capacity(2 * half);
            row(ti, &mut v);
            o.copy_from_slice(&v);
        }
    }
}

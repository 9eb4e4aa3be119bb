//! The sinusoidal timestep embedding on the host, from a table built once per width.
use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

/// Rows of the `dim`-wide sinusoid of integer timesteps `t` written into `out` (`t.len()` rows
/// of width 2·(dim/2)): cosine half first, then sine, frequencies f_k = exp(−ln(10⁴)·k/(dim/2))
/// (the reference's `TimeEmbedding`, after the Transformer positional code). The argument t·f_k
/// is formed in f32 like the tensor version; cos/sin are then exact to f32 rounding. Timesteps
/// below 4096 come from a table built once per width instead of 2·dim transcendental functions
/// per row per step.
pub fn sinusoid_rows(t: &[usize], dim: usize, out: &mut [f32]) {
    const ROWS: usize = 4096;
    static TABLES: OnceLock<Mutex<HashMap<usize, Arc<Vec<f32>>>>> = OnceLock::new();
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
                Arc::new(v)
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

//! The host kernel: one row at a time, each on one thread, with fixed-order sums.
use rayon::prelude::*;

use crate::simd::{exp_f32, multiversion, sum_f64};

/// y = exp(x − max x) / Σ exp(x − max x) for one row.
#[inline(always)]
fn forward_row(y: &mut [f32], x: &[f32]) {
    let max = x.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v));
    for (o, &v) in y.iter_mut().zip(x) {
        *o = exp_f32(v - max);
    }
    let inv = (1.0 / sum_f64(y.len(), |i| y[i] as f64)) as f32;
    for o in y.iter_mut() {
        *o *= inv;
    }
}

/// dx = y ⊙ (dy − Σ dy·y) for one row.
#[inline(always)]
fn backward_row(dx: &mut [f32], y: &[f32], dy: &[f32]) {
    let dot = sum_f64(y.len(), |i| (dy[i] * y[i]) as f64) as f32;
    for ((o, &yv), &g) in dx.iter_mut().zip(y).zip(dy) {
        *o = yv * (g - dot);
    }
}

multiversion!(forward_rows(y: &mut [f32], x: &[f32], n: usize) {
    for (yr, xr) in y.chunks_mut(n).zip(x.chunks(n)) {
        forward_row(yr, xr);
    }
});

multiversion!(backward_rows(dx: &mut [f32], y: &[f32], dy: &[f32], n: usize) {
    for ((dr, yr), gr) in dx.chunks_mut(n).zip(y.chunks(n)).zip(dy.chunks(n)) {
        backward_row(dr, yr, gr);
    }
});

/// Rows handed to one rayon task: enough work to amortise the task, fixed so that the split
/// does not depend on the thread count.
const ROWS_PER_TASK: usize = 16;

/// softmax over rows of `n` values.
pub(super) fn forward(x: &[f32], n: usize) -> Vec<f32> {
    let mut y = vec![0f32; x.len()];
    y.par_chunks_mut(n * ROWS_PER_TASK)
        .zip(x.par_chunks(n * ROWS_PER_TASK))
        .for_each(|(yb, xb)| forward_rows(yb, xb, n));
    y
}

/// dx for rows of `n` values, from the output `y` and its gradient `dy`.
pub(super) fn backward(y: &[f32], dy: &[f32], n: usize) -> Vec<f32> {
    let mut dx = vec![0f32; y.len()];
    dx.par_chunks_mut(n * ROWS_PER_TASK)
        .zip(y.par_chunks(n * ROWS_PER_TASK))
        .zip(dy.par_chunks(n * ROWS_PER_TASK))
        .for_each(|((db, yb), gb)| backward_rows(db, yb, gb, n));
    dx
}

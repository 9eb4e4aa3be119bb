//! Chamfer distance between point sets, as the reference defines it:
//! CD(A, B) = Σ_{x∈A} min_{y∈B} ‖x−y‖² + Σ_{y∈B} min_{x∈A} ‖x−y‖²
//! (squared distances, summed — not averaged — in both directions).
use rayon::prelude::*;

use crate::{Error, Result};

/// Σ_{x∈a} min_{y∈b} ‖x−y‖² for row-major point sets of dimension `dim`, accumulated in f64.
fn one_way(a: &[f32], b: &[f32], dim: usize) -> f64 {
    a.par_chunks(dim)
        .map(|x| {
            b.chunks(dim)
                .map(|y| {
                    x.iter()
                        .zip(y)
                        .map(|(p, q)| (*p as f64 - *q as f64).powi(2))
                        .sum::<f64>()
                })
                .fold(f64::INFINITY, f64::min)
        })
        .sum()
}

/// Chamfer distance between `a` and `b`, each a row-major [N, dim] array.
pub fn chamfer_distance(a: &[f32], b: &[f32], dim: usize) -> Result<f64> {
    if dim == 0 || !a.len().is_multiple_of(dim) || !b.len().is_multiple_of(dim) {
        return Err(Error::invalid(
            "points",
            format!(
                "arrays of length {} and {} are not sets of {dim}-D points",
                a.len(),
                b.len()
            ),
        ));
    }
    if a.is_empty() || b.is_empty() {
        return Err(Error::invalid(
            "points",
            "Chamfer distance needs two non-empty point sets",
        ));
    }
    if a.iter().chain(b).any(|v| !v.is_finite()) {
        return Err(Error::invalid(
            "points",
            "point sets contain NaN or infinite values (the sampler diverged)",
        ));
    }
    Ok(one_way(a, b, dim) + one_way(b, a, dim))
}

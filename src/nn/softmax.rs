//! Softmax over the last axis as one CPU kernel, forward and backward, for the UNet's
//! attention during training.
//!
//! Under autodiff burn runs attention as its composed fallback, whose NaN-safe softmax makes
//! about ten passes over the B·HW·HW score matrix (64 MB per 32×32 attention block at batch 16)
//! forward and more backward. Here one pass per row computes max, exp and sum in cache, and
//! the backward is dx = y ⊙ (dy − Σ dy·y) (the softmax Jacobian applied row by row), reading
//! the saved output once.
//!
//! Rows are independent and each is computed by one thread with fixed-order sums, so results
//! do not depend on the thread count; every SIMD width gives the same bits (see `cpu_simd`).
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::tensor::FloatTensor;
use burn::backend::{backend_extension, Autodiff, AutodiffBackend, Backend, Dispatch, Flex};
use burn::prelude::*;
use burn_flex::FlexTensor;
use rayon::prelude::*;

use super::cpu_simd::{exp_f32, f32s, is_flex_f32, multiversion, sum_f64, tensor_like};

/// A backend that can run the fused last-axis softmax.
#[backend_extension(Flex, Autodiff)]
pub trait SoftmaxBackend: Backend {
    /// softmax(x) over the last axis.
    fn softmax_last(x: FloatTensor<Self>) -> FloatTensor<Self>;
}

/// The backward kernel of a concrete (non-autodiff) backend.
pub trait SoftmaxKernels: Backend {
    /// dx for the output `y` and its gradient `dy`.
    fn softmax_last_backward(y: FloatTensor<Self>, dy: FloatTensor<Self>) -> FloatTensor<Self>;
}

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

fn last_dim(x: &FlexTensor) -> usize {
    *x.layout().shape().last().expect("a tensor of rank ≥ 1")
}

impl SoftmaxBackend for Flex {
    fn softmax_last(x: FlexTensor) -> FlexTensor {
        let n = last_dim(&x);
        let xs = f32s(&x);
        let mut y = vec![0f32; xs.len()];
        y.par_chunks_mut(n * ROWS_PER_TASK)
            .zip(xs.par_chunks(n * ROWS_PER_TASK))
            .for_each(|(yb, xb)| forward_rows(yb, xb, n));
        tensor_like(&x, y)
    }
}

impl SoftmaxKernels for Flex {
    fn softmax_last_backward(y: FlexTensor, dy: FlexTensor) -> FlexTensor {
        let n = last_dim(&y);
        let (ys, dys) = (f32s(&y), f32s(&dy));
        let mut dx = vec![0f32; ys.len()];
        dx.par_chunks_mut(n * ROWS_PER_TASK)
            .zip(ys.par_chunks(n * ROWS_PER_TASK))
            .zip(dys.par_chunks(n * ROWS_PER_TASK))
            .for_each(|((db, yb), gb)| backward_rows(db, yb, gb, n));
        tensor_like(&y, dx)
    }
}

#[derive(Debug)]
struct SoftmaxBackward;

impl<B: Backend + SoftmaxKernels> Backward<B, 1> for SoftmaxBackward {
    type State = FloatTensor<B>;

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [node] = ops.parents;
        let dy = grads.consume::<B>(&ops.node);
        if let Some(node) = node {
            grads.register::<B>(node.id, B::softmax_last_backward(ops.state, dy));
        }
    }
}

impl<B, C> SoftmaxBackend for Autodiff<B, C>
where
    B: Backend + SoftmaxBackend + SoftmaxKernels,
    C: CheckpointStrategy,
{
    fn softmax_last(x: FloatTensor<Self>) -> FloatTensor<Self> {
        let prep = SoftmaxBackward
            .prepare::<C>([x.node()])
            .compute_bound()
            .stateful();
        match prep {
            OpsKind::Tracked(prep) => {
                let y = B::softmax_last(Self::inner(x));
                prep.finish(y.clone(), y)
            }
            OpsKind::UnTracked(prep) => prep.finish(B::softmax_last(Self::inner(x))),
        }
    }
}

/// Whether the fused kernel applies: an f32 tensor on the CPU backend.
pub fn fused_applies<const D: usize>(x: &Tensor<D>) -> bool {
    is_flex_f32(x)
}

/// softmax over the last axis through the fused kernel; needs [`fused_applies`].
pub fn softmax_last_fused<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    Tensor::from_dispatch(<Dispatch as SoftmaxBackend>::softmax_last(
        x.into_dispatch(),
    ))
}

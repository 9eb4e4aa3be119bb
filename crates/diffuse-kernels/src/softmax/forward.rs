//! The forward as a burn backend extension: the flex backend runs the host kernel; the
//! autodiff backend runs its inner backend's forward and records [`SoftmaxBackward`] with the
//! output, which is all the backward needs.
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::ops::{Backward, OpsKind};
use burn::backend::tensor::FloatTensor;
use burn::backend::{backend_extension, Autodiff, AutodiffBackend, Backend, Flex};
use burn_flex::FlexTensor;

use super::backward::{SoftmaxBackward, SoftmaxKernels};
use super::kernel;
use crate::flex::{f32s, shape, tensor_like};

/// A backend that can run the fused last-axis softmax.
#[backend_extension(Flex, Autodiff)]
pub trait SoftmaxBackend: Backend {
    /// softmax(x) over the last axis.
    fn softmax_last(x: FloatTensor<Self>) -> FloatTensor<Self>;
}

/// The length of the last axis.
pub(super) fn last_dim(x: &FlexTensor) -> usize {
    *shape(x).last().expect("a tensor of rank ≥ 1")
}

impl SoftmaxBackend for Flex {
    fn softmax_last(x: FlexTensor) -> FlexTensor {
        let y = kernel::forward(&f32s(&x), last_dim(&x));
        tensor_like(&x, y)
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

//! The backward: the host kernel for the flex backend, and the autodiff node that calls it.
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops};
use burn::backend::tensor::FloatTensor;
use burn::backend::{Backend, Flex};
use burn_flex::FlexTensor;

use super::forward::last_dim;
use super::kernel;
use crate::flex::{f32s, tensor_like};

/// The backward kernel of a concrete (non-autodiff) backend.
pub trait SoftmaxKernels: Backend {
    /// dx for the output `y` and its gradient `dy`.
    fn softmax_last_backward(y: FloatTensor<Self>, dy: FloatTensor<Self>) -> FloatTensor<Self>;
}

impl SoftmaxKernels for Flex {
    fn softmax_last_backward(y: FlexTensor, dy: FlexTensor) -> FlexTensor {
        let dx = kernel::backward(&f32s(&y), &f32s(&dy), last_dim(&y));
        tensor_like(&y, dx)
    }
}

/// The autodiff node of one fused call: it keeps the output y.
#[derive(Debug)]
pub(super) struct SoftmaxBackward;

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

//! The backward: the host kernel for the flex backend, and the autodiff node that calls it.
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops};
use burn::backend::autodiff::NodeId;
use burn::backend::tensor::FloatTensor;
use burn::backend::{backend_extension, Backend, Flex};
use burn_flex::FlexTensor;

use super::kernel::{self, Dims, GroupNormSpec};
use crate::flex::{f32s, shape, tensor_like};

/// The backward kernel of a concrete (non-autodiff) backend: the flex host kernel, or on
/// CubeCL devices (feature `cube`) the kernels of `cube.rs`, recorded by burn's fusion as one
/// opaque operation. Called only from the autodiff node below.
#[backend_extension(Flex, Cube: cfg(feature = "cube"), Fusion: cfg(feature = "cube"))]
pub trait GroupNormSiluKernels: Backend {
    /// (dx, dγ, dβ) for the output gradient `dy`.
    #[fusion(meta = |x, gamma, beta, _dy, _spec| (x.clone(), gamma.clone(), beta.clone()))]
    fn group_norm_silu_backward(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        dy: FloatTensor<Self>,
        spec: GroupNormSpec,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>);
}

impl GroupNormSiluKernels for Flex {
    fn group_norm_silu_backward(
        x: FlexTensor,
        gamma: FlexTensor,
        beta: FlexTensor,
        dy: FlexTensor,
        spec: GroupNormSpec,
    ) -> (FlexTensor, FlexTensor, FlexTensor) {
        let d = Dims::of(shape(&x), spec.groups);
        let g = kernel::backward(
            &f32s(&x),
            &f32s(&dy),
            (&f32s(&gamma), &f32s(&beta)),
            d,
            &spec,
        );
        (
            tensor_like(&x, g.dx),
            tensor_like(&gamma, kernel::sum_over_batch(&g.dgamma, d.b, d.c)),
            tensor_like(&beta, kernel::sum_over_batch(&g.dbeta, d.b, d.c)),
        )
    }
}

/// The autodiff node of one fused call: it keeps x, γ and β (checkpointed) and the spec.
#[derive(Debug)]
pub(super) struct GroupNormSiluBackward;

impl<B: Backend + GroupNormSiluKernels> Backward<B, 3> for GroupNormSiluBackward {
    type State = (NodeId, NodeId, NodeId, GroupNormSpec);

    fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, ckpt: &mut Checkpointer) {
        let [node_x, node_gamma, node_beta] = ops.parents;
        let dy = grads.consume::<B>(&ops.node);
        let (x, gamma, beta, spec) = ops.state;
        let x = ckpt.retrieve_node_output::<B::FloatTensorPrimitive>(x);
        let gamma = ckpt.retrieve_node_output::<B::FloatTensorPrimitive>(gamma);
        let beta = ckpt.retrieve_node_output::<B::FloatTensorPrimitive>(beta);
        let (dx, dgamma, dbeta) = B::group_norm_silu_backward(x, gamma, beta, dy, spec);
        for (node, grad) in [(node_x, dx), (node_gamma, dgamma), (node_beta, dbeta)] {
            if let Some(node) = node {
                grads.register::<B>(node.id, grad);
            }
        }
    }
}

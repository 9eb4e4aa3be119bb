//! The forward as a burn backend extension: the flex backend runs the host kernel, CubeCL
//! devices (feature `cube`) the kernel of `cube.rs` — behind burn's fusion, which records it
//! as one opaque operation —, and the autodiff backend runs its inner backend's forward and
//! records [`GroupNormSiluBackward`].
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::ops::{Backward, OpsKind};
use burn::backend::tensor::FloatTensor;
use burn::backend::{backend_extension, Autodiff, AutodiffBackend, Backend, Flex};
use burn_flex::FlexTensor;

use super::backward::{GroupNormSiluBackward, GroupNormSiluKernels};
use super::kernel::{self, Dims, GroupNormSpec};
use crate::flex::{f32s, shape, tensor_like};

/// A backend that can run the fused GroupNorm (+ SiLU, + dropout).
#[backend_extension(
    Flex,
    Cube: cfg(feature = "cube"),
    Fusion: cfg(feature = "cube"),
    Autodiff
)]
pub trait GroupNormSiluBackend: Backend {
    /// y = Dropout(SiLU(GroupNorm(x; γ, β))) for x: [B, C, …], γ, β: [C], as `spec` says.
    #[fusion(dtype = x, shape = x)]
    fn group_norm_silu(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        spec: GroupNormSpec,
    ) -> FloatTensor<Self>;
}

impl GroupNormSiluBackend for Flex {
    fn group_norm_silu(
        x: FlexTensor,
        gamma: FlexTensor,
        beta: FlexTensor,
        spec: GroupNormSpec,
    ) -> FlexTensor {
        let d = Dims::of(shape(&x), spec.groups);
        let y = kernel::forward(&f32s(&x), &f32s(&gamma), &f32s(&beta), d, &spec);
        tensor_like(&x, y)
    }
}

impl<B, C> GroupNormSiluBackend for Autodiff<B, C>
where
    B: Backend + GroupNormSiluBackend + GroupNormSiluKernels,
    C: CheckpointStrategy,
{
    fn group_norm_silu(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        spec: GroupNormSpec,
    ) -> FloatTensor<Self> {
        let prep = GroupNormSiluBackward
            .prepare::<C>([x.node(), gamma.node(), beta.node()])
            .compute_bound()
            .stateful();
        match prep {
            OpsKind::Tracked(mut prep) => {
                let state = (
                    prep.checkpoint(&x),
                    prep.checkpoint(&gamma),
                    prep.checkpoint(&beta),
                    spec,
                );
                let y =
                    B::group_norm_silu(Self::inner(x), Self::inner(gamma), Self::inner(beta), spec);
                prep.finish(state, y)
            }
            OpsKind::UnTracked(prep) => prep.finish(B::group_norm_silu(
                Self::inner(x),
                Self::inner(gamma),
                Self::inner(beta),
                spec,
            )),
        }
    }
}

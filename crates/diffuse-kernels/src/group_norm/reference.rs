//! The reference: burn's composed operations, which every device runs and which the fused
//! kernel is tested against (`tests/group_norm.rs`).
use burn::nn::GroupNorm;
use burn::prelude::*;
use burn::tensor::activation::silu;

/// burn's GroupNorm module, then SiLU when `act`.
pub fn group_norm_act_composed(norm: &GroupNorm, x: Tensor<4>, act: bool) -> Tensor<4> {
    let y = norm.forward(x);
    if act {
        silu(y)
    } else {
        y
    }
}

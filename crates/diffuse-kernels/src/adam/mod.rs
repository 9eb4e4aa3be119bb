//! One Adam + EMA update for many parameter tensors at once.
//!
//! burn's Adam (burn-optim `adam.rs`, as `diffuse`'s `OptimConfig::adam` configures it) updates
//! each parameter tensor with its own chain of tensor operations, and the EMA of the weights
//! adds two more per tensor: on a GPU, with the UNet's ~545 parameter tensors, that is thousands
//! of tiny kernels per training step, each mostly launch overhead. Here the same arithmetic runs
//! for up to [`MAX_TENSORS_PER_LAUNCH`] tensors per kernel launch (CubeCL; feature `cube` and a
//! runtime): a 545-tensor update is a few tens of launches instead of a few thousand.
//!
//! Math (Kingma & Ba 2015, Algorithm 1, in PyTorch's form, which is burn's): at step t ≥ 1, for
//! every element with gradient g,
//!
//! - m ← β₁·m + (1−β₁)·g,  v ← β₂·v + (1−β₂)·g²
//! - c₂ = √(1−β₂ᵗ),  k = c₂ / (1−β₁ᵗ)   (host, f32, as burn computes them)
//! - θ ← θ − lr · (k·m) / (√v + ε·c₂)     (= lr·m̂/(√v̂ + ε) with m̂, v̂ bias-corrected)
//!
//! and the EMA of the weights (Polyak averaging; `diffuse::train::Ema`): s ← d·s + (1−d)·θ with
//! the updated θ. Every operation rounds to f32 in the order burn's composed operations do, and
//! the scalars reach the kernel as launch arguments (the learning rate changes every step under
//! a schedule, the kernel compiles once). The fused kernel and burn's Adam then agree within f32
//! rounding: GPU compilers may contract a·b + c into one fused multiply-add and WGSL's sqrt and
//! division are not correctly rounded, so a few ulps per element per step (`tests/adam_cube.rs`
//! states the bound it checks).
//!
//! The first step (no moments yet) is burn's m = (1−β₁)·g, which equals β₁·0 + (1−β₁)·g
//! exactly, so the moments start as zeros.
//!
//! Files: [`reference`] (burn's composed operations, what every non-cube device runs and the
//! behaviour to match); with a CubeCL runtime, `kernel` (the CubeCL kernel and its launch on
//! burn's cube backend) and `forward` (the backend extension: dispatch, fusion).
use burn::prelude::*;

pub mod reference;
pub use reference::adam_ema_composed;

#[cfg(any(feature = "wgpu", feature = "vulkan", feature = "cuda"))]
mod forward;
#[cfg(any(feature = "wgpu", feature = "vulkan", feature = "cuda"))]
mod kernel;
#[cfg(any(feature = "wgpu", feature = "vulkan", feature = "cuda"))]
pub use forward::AdamEmaBackend;

/// Whether this build has the CubeCL kernel (a CubeCL runtime feature: wgpu, vulkan, cuda);
/// without it every device runs [`adam_ema_composed`].
pub const CUBE_KERNEL: bool = cfg!(any(feature = "wgpu", feature = "vulkan", feature = "cuda"));

/// The most parameter tensors one launch updates. Each tensor takes 9 buffer bindings (θ, g,
/// m, v, s in; θ, m, v, s out); a device with fewer bindings gets fewer per launch.
pub const MAX_TENSORS_PER_LAUNCH: usize = 32;

/// The scalars of one update, computed on the host in f32 exactly as burn's Adam computes them.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdamEmaScalars {
    /// β₁ and 1−β₁.
    pub beta1: f32,
    pub one_minus_beta1: f32,
    /// β₂ and 1−β₂.
    pub beta2: f32,
    pub one_minus_beta2: f32,
    /// k = √(1−β₂ᵗ) / (1−β₁ᵗ).
    pub step_factor: f32,
    /// ε·√(1−β₂ᵗ).
    pub eps_corrected: f32,
    /// The learning rate (f32, as burn's `mul_scalar` rounds it).
    pub lr: f32,
    /// EMA: s ← ema_keep·s + ema_take·θ (d and 1−d); unused without an EMA.
    pub ema_keep: f32,
    pub ema_take: f32,
}

/// Adam's hyper-parameters (burn's `AdamConfig` fields as `OptimConfig::adam` sets them).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdamHyper {
    pub beta1: f32,
    pub beta2: f32,
    pub eps: f32,
}

impl AdamEmaScalars {
    /// The scalars of step `time` (1-based: the value burn's state holds after the update) at
    /// learning rate `lr`, with the EMA decay `ema_decay` (f32, as `Ema::update` rounds it).
    pub fn new(h: AdamHyper, time: usize, lr: f64, ema_decay: Option<f32>) -> Self {
        // burn-optim adam.rs, AdaptiveMomentum::transform: all in f32.
        let t = time as i32;
        let c2 = (1.0 - h.beta2.powi(t)).sqrt();
        let k = c2 / (1.0 - h.beta1.powi(t));
        let d = ema_decay.unwrap_or(1.0);
        Self {
            beta1: h.beta1,
            one_minus_beta1: 1.0 - h.beta1,
            beta2: h.beta2,
            one_minus_beta2: 1.0 - h.beta2,
            step_factor: k,
            eps_corrected: h.eps * c2,
            lr: lr as f32,
            ema_keep: d,
            ema_take: 1.0 - d,
        }
    }
}

/// The tensors of one update, one entry per parameter tensor (each flattened to 1-D, f32, off
/// the autodiff graph): parameters, their gradients, Adam's moments, and the EMA shadows (empty
/// without an EMA). The update returns the same structure without gradients.
#[derive(Debug, Clone, Default)]
pub struct AdamEmaTensors {
    pub params: Vec<Tensor<1>>,
    pub grads: Vec<Tensor<1>>,
    pub m: Vec<Tensor<1>>,
    pub v: Vec<Tensor<1>>,
    pub shadow: Vec<Tensor<1>>,
}

impl AdamEmaTensors {
    /// Checks that the lists fit each other: as many gradients and moments as parameters, the
    /// same length per entry, shadows for every parameter or none.
    pub fn check(&self) -> Result<(), crate::KernelError> {
        let n = self.params.len();
        let lists = [("grads", &self.grads), ("m", &self.m), ("v", &self.v)];
        for (name, list) in lists {
            if list.len() != n {
                return Err(crate::KernelError(format!(
                    "adam_ema: {} {name} tensors for {n} parameters",
                    list.len()
                )));
            }
        }
        if !self.shadow.is_empty() && self.shadow.len() != n {
            return Err(crate::KernelError(format!(
                "adam_ema: {} EMA shadows for {n} parameters",
                self.shadow.len()
            )));
        }
        for (i, p) in self.params.iter().enumerate() {
            let len = p.dims()[0];
            let mut others = vec![&self.grads[i], &self.m[i], &self.v[i]];
            if !self.shadow.is_empty() {
                others.push(&self.shadow[i]);
            }
            if others.iter().any(|t| t.dims()[0] != len) {
                return Err(crate::KernelError(format!(
                    "adam_ema: tensor {i} has {len} parameters but a gradient, moment or shadow \
                     of another length"
                )));
            }
        }
        Ok(())
    }
}

/// Whether the fused update runs for these tensors: f32 on a CubeCL device (built with a
/// CubeCL runtime). Everything else runs [`adam_ema_composed`].
pub fn fused_applies(t: &AdamEmaTensors) -> bool {
    #[cfg(any(feature = "wgpu", feature = "vulkan", feature = "cuda"))]
    {
        let all = t
            .params
            .iter()
            .chain(&t.grads)
            .chain(&t.m)
            .chain(&t.v)
            .chain(&t.shadow);
        !t.params.is_empty()
            && all
                .into_iter()
                .all(|x| !x.is_autodiff() && crate::is_cube_f32(x))
    }
    #[cfg(not(any(feature = "wgpu", feature = "vulkan", feature = "cuda")))]
    {
        let _ = t;
        false
    }
}

/// One Adam (+ EMA) update of every tensor in `t` with scalars `s`: the fused kernel where
/// [`fused_applies`], burn's composed operations ([`adam_ema_composed`]) otherwise.
pub fn adam_ema(
    t: AdamEmaTensors,
    s: &AdamEmaScalars,
) -> Result<AdamEmaTensors, crate::KernelError> {
    t.check()?;
    if fused_applies(&t) {
        adam_ema_fused(t, s)
    } else {
        Ok(adam_ema_composed(t, s))
    }
}

/// The fused update (CubeCL devices only; see [`fused_applies`]).
pub fn adam_ema_fused(
    t: AdamEmaTensors,
    s: &AdamEmaScalars,
) -> Result<AdamEmaTensors, crate::KernelError> {
    t.check()?;
    #[cfg(any(feature = "wgpu", feature = "vulkan", feature = "cuda"))]
    {
        if !fused_applies(&t) {
            return Err(crate::KernelError(
                "adam_ema_fused: needs f32 tensors on a CubeCL device, off the autodiff graph"
                    .into(),
            ));
        }
        forward::adam_ema_dispatch(t, s)
    }
    #[cfg(not(any(feature = "wgpu", feature = "vulkan", feature = "cuda")))]
    {
        let _ = s;
        Err(crate::KernelError(
            "adam_ema_fused: built without a CubeCL runtime (features wgpu, vulkan, cuda)".into(),
        ))
    }
}

//! The kernel switches as one typed value, for the whole process: which fused kernels run, the
//! widest SIMD level they use, and burn-flex's Winograd convolution. Every setting gives the
//! same function (the fused kernels are tested against burn's composed operations, every SIMD
//! level gives the same bits); they exist for side-by-side measurements and tests.
//!
//! Environment overrides, read once at first use (documented in the README):
//! `DIFFUSE_FUSED_GROUP_NORM=0`, `DIFFUSE_FUSED_SOFTMAX=0`,
//! `DIFFUSE_KERNEL_SIMD=baseline|avx2|avx512`, and burn-flex's `BURN_FLEX_WINOGRAD*`
//! (see `burn_flex::tuning`). [`set_options`] takes precedence from the moment it is called.
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Once;

pub use burn_flex::tuning::{WinogradOptions, WinogradSimd, WinogradVariant};

use crate::simd::{SimdLevel, MAX_SIMD};

/// Which CPU kernels run. `Default` is what `diffuse` uses: everything fused, the widest SIMD
/// level the CPU has, Winograd F(4×4, 3×3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KernelOptions {
    /// GroupNorm (+ SiLU, + dropout) as one fused kernel on f32 CPU tensors; off: burn's
    /// composed operations.
    pub fused_group_norm: bool,
    /// The attention softmax of training as one fused kernel on f32 CPU tensors; off: burn's
    /// attention.
    pub fused_softmax: bool,
    /// The widest SIMD level the fused kernels may use (capped by what the CPU has).
    pub max_simd: SimdLevel,
    /// burn-flex's Winograd convolution (3×3, stride 1, ≥ 32 channels).
    pub winograd: WinogradOptions,
}

impl Default for KernelOptions {
    fn default() -> Self {
        Self {
            fused_group_norm: true,
            fused_softmax: true,
            max_simd: SimdLevel::Avx512,
            winograd: WinogradOptions::default(),
        }
    }
}

static FUSED_GROUP_NORM: AtomicBool = AtomicBool::new(true);
static FUSED_SOFTMAX: AtomicBool = AtomicBool::new(true);
static ENV: Once = Once::new();

/// Applies the environment's overrides once (before the first read or write of an option).
pub(crate) fn init_from_env() {
    ENV.call_once(|| {
        let off = |name: &str| std::env::var(name).as_deref() == Ok("0");
        if off("DIFFUSE_FUSED_GROUP_NORM") {
            FUSED_GROUP_NORM.store(false, Ordering::Relaxed);
        }
        if off("DIFFUSE_FUSED_SOFTMAX") {
            FUSED_SOFTMAX.store(false, Ordering::Relaxed);
        }
        if let Some(level) = std::env::var("DIFFUSE_KERNEL_SIMD")
            .ok()
            .and_then(|v| SimdLevel::from_name(&v))
        {
            MAX_SIMD.store(level as u8, Ordering::Relaxed);
        }
    });
}

/// The switches in force.
pub fn options() -> KernelOptions {
    init_from_env();
    KernelOptions {
        fused_group_norm: FUSED_GROUP_NORM.load(Ordering::Relaxed),
        fused_softmax: FUSED_SOFTMAX.load(Ordering::Relaxed),
        max_simd: match MAX_SIMD.load(Ordering::Relaxed) {
            0 => SimdLevel::Baseline,
            1 => SimdLevel::Avx2,
            _ => SimdLevel::Avx512,
        },
        winograd: burn_flex::tuning::winograd_options(),
    }
}

/// Sets every switch for the whole process.
pub fn set_options(o: KernelOptions) {
    init_from_env();
    FUSED_GROUP_NORM.store(o.fused_group_norm, Ordering::Relaxed);
    FUSED_SOFTMAX.store(o.fused_softmax, Ordering::Relaxed);
    MAX_SIMD.store(o.max_simd as u8, Ordering::Relaxed);
    burn_flex::tuning::set_winograd_options(o.winograd);
}

/// The SIMD level the fused kernels run at on this CPU under `o`.
pub fn effective_simd(o: &KernelOptions) -> SimdLevel {
    SimdLevel::detected().min(o.max_simd)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_round_trip() {
        let before = options();
        let changed = KernelOptions {
            fused_group_norm: !before.fused_group_norm,
            fused_softmax: !before.fused_softmax,
            max_simd: SimdLevel::Baseline,
            winograd: WinogradOptions {
                variant: WinogradVariant::F2,
                simd: WinogradSimd::Scalar,
                chunk: Some(16),
            },
        };
        set_options(changed);
        assert_eq!(options(), changed);
        set_options(before);
        assert_eq!(options(), before);
    }
}

//! Small building blocks of the CPU kernels in `nn` (fused GroupNorm, softmax): flex tensor
//! access, a vectorisable exp, fixed-order sums, and runtime selection of the SIMD width.
use burn::prelude::*;
use burn::tensor::{DType, TensorData};
use burn_flex::FlexTensor;

/// Whether `x` is an f32 tensor on the flex (CPU) backend, with or without autodiff: what the
/// fused kernels of `nn` accept.
pub(crate) fn is_flex_f32<const D: usize>(x: &Tensor<D>) -> bool {
    x.dtype() == DType::F32
        && matches!(
            x.device().inner().as_dispatch(),
            burn::backend::DispatchDevice::Flex(_)
        )
}

/// The values of an f32 flex tensor in logical (row-major) order, copied only when the tensor
/// is a strided view.
pub(crate) fn f32s(t: &FlexTensor) -> std::borrow::Cow<'_, [f32]> {
    match t.as_slice::<f32>() {
        Some(s) => std::borrow::Cow::Borrowed(s),
        None => std::borrow::Cow::Owned(
            t.to_contiguous()
                .as_slice::<f32>()
                .expect("a contiguous f32 tensor")
                .to_vec(),
        ),
    }
}

/// A contiguous f32 tensor of `x`'s shape holding `values`.
pub(crate) fn tensor_like(x: &FlexTensor, values: Vec<f32>) -> FlexTensor {
    let shape = x.layout().shape().clone();
    FlexTensor::from_data(TensorData::new(values, shape))
}

/// Sums `f(0) + … + f(n−1)` in f64 over eight interleaved accumulators: the same order on every
/// CPU (so results do not depend on the SIMD width), and vectorisable.
#[inline(always)]
pub(crate) fn sum_f64(n: usize, f: impl Fn(usize) -> f64) -> f64 {
    const L: usize = 8;
    let mut acc = [0f64; L];
    let full = n / L * L;
    let mut i = 0;
    while i < full {
        for (l, a) in acc.iter_mut().enumerate() {
            *a += f(i + l);
        }
        i += L;
    }
    let tail: f64 = (full..n).map(&f).sum();
    acc.iter().sum::<f64>() + tail
}

/// eˣ for x in f32, branch-free so that loops over it vectorise: Cody–Waite reduction
/// x = n·ln2 + r, |r| ≤ ln2/2, then Cephes' degree-6 polynomial for eʳ (relative error ≈ 1 ulp,
/// like libm's expf), scaled by 2ⁿ through the exponent bits. Inputs are clamped to ±87.3, where
/// sigmoid and SiLU are saturated to f32 precision anyway.
#[inline(always)]
pub(crate) fn exp_f32(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    // Adding and subtracting 1.5·2²³ rounds to the nearest integer without a rounding instruction.
    const ROUND: f32 = 12_582_912.0;
    let x = x.clamp(-87.3, 87.3);
    let n = (x * LOG2E + ROUND) - ROUND;
    let r = x - n * LN2_HI - n * LN2_LO;
    let p = 1.987_569_1e-4;
    let p = p * r + 1.398_2e-3;
    let p = p * r + 8.333_452e-3;
    let p = p * r + 4.166_579_6e-2;
    let p = p * r + 0.166_666_65;
    let p = p * r + 0.5;
    let er = p * r * r + r + 1.0;
    er * f32::from_bits(((n as i32 + 127) as u32) << 23)
}

#[inline(always)]
pub(crate) fn sigmoid(z: f32) -> f32 {
    1.0 / (1.0 + exp_f32(-z))
}

/// Compiles `$body` (a call of an `#[inline(always)]` block function) for AVX-512, AVX2 and
/// the baseline, and runs the widest the CPU has. Every path performs the same f32 operations
/// in the same order (no FMA contraction, fixed reduction order), so the results are identical.
macro_rules! multiversion_impl {
    ($name:ident ($($arg:ident : $ty:ty),*) $body:block) => {
        #[allow(clippy::too_many_arguments)]
        fn $name($($arg: $ty),*) {
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx512f")]
                #[allow(clippy::too_many_arguments)]
                unsafe fn wide($($arg: $ty),*) $body
                #[target_feature(enable = "avx2")]
                #[allow(clippy::too_many_arguments)]
                unsafe fn mid($($arg: $ty),*) $body
                if std::arch::is_x86_feature_detected!("avx512f") {
                    // SAFETY: the CPU has AVX-512F (checked just above).
                    return unsafe { wide($($arg),*) };
                }
                if std::arch::is_x86_feature_detected!("avx2") {
                    // SAFETY: the CPU has AVX2 (checked just above).
                    return unsafe { mid($($arg),*) };
                }
            }
            $body
        }
    };
}

pub(crate) use multiversion_impl as multiversion;

#[cfg(test)]
mod tests {
    use super::*;

    /// The polynomial exp against f64's over the range the kernels use, in units of f32's
    /// machine epsilon relative to the true value (libm's expf is within 1 ulp; Cephes'
    /// polynomial with a two-constant reduction is within about 2).
    #[test]
    fn exp_f32_is_accurate_to_a_few_ulp() {
        let mut worst = 0f64;
        let mut x = -87.0f32;
        while x <= 87.0 {
            let want = (x as f64).exp();
            let rel = ((exp_f32(x) as f64 - want) / want).abs() / f32::EPSILON as f64;
            worst = worst.max(rel);
            x += 0.000_731;
        }
        assert!(worst <= 3.0, "worst relative error {worst} ulp");
        assert_eq!(exp_f32(0.0), 1.0);
        // Clamped far out: finite, and sigmoid saturates.
        assert!(exp_f32(1e4).is_finite() && exp_f32(-1e4) >= 0.0);
        assert_eq!(sigmoid(200.0), 1.0);
        assert!(sigmoid(-200.0) < 1e-37);
    }

    #[test]
    fn sum_f64_matches_a_plain_sum() {
        for n in [0, 1, 7, 8, 9, 100] {
            let v: Vec<f64> = (0..n).map(|i| (i as f64 * 0.37).sin()).collect();
            let plain: f64 = v.iter().sum();
            assert!((sum_f64(n, |i| v[i]) - plain).abs() <= 1e-12 * n.max(1) as f64);
        }
    }
}

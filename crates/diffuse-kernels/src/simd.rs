//! The building blocks of the fused kernels: a vectorisable exp, fixed-order sums, and the
//! runtime choice of the SIMD width ([`multiversion`]), capped by
//! [`KernelOptions::max_simd`](crate::KernelOptions::max_simd).
use std::sync::atomic::{AtomicU8, Ordering};

/// The SIMD widths the fused kernels are compiled for. Every width performs the same f32
/// operations in the same order (no FMA contraction, fixed reduction order), so all give the
/// same bits; the cap exists to test that and to compare speeds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub enum SimdLevel {
    /// The build's baseline (SSE2 on x86-64; the only level elsewhere).
    Baseline,
    /// AVX2 (8 lanes).
    Avx2,
    /// AVX-512F (16 lanes).
    #[default]
    Avx512,
}

impl SimdLevel {
    /// The name used by `DIFFUSE_KERNEL_SIMD` and `diffuse doctor`.
    pub fn name(self) -> &'static str {
        match self {
            SimdLevel::Baseline => "baseline",
            SimdLevel::Avx2 => "avx2",
            SimdLevel::Avx512 => "avx512",
        }
    }

    /// Parses [`Self::name`].
    pub fn from_name(s: &str) -> Option<Self> {
        [SimdLevel::Baseline, SimdLevel::Avx2, SimdLevel::Avx512]
            .into_iter()
            .find(|l| l.name() == s)
    }

    /// The widest level this CPU runs.
    pub fn detected() -> Self {
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx512f") {
                return SimdLevel::Avx512;
            }
            if std::arch::is_x86_feature_detected!("avx2") {
                return SimdLevel::Avx2;
            }
        }
        SimdLevel::Baseline
    }
}

/// The cap set through [`crate::set_options`] (a `SimdLevel` as u8).
pub(crate) static MAX_SIMD: AtomicU8 = AtomicU8::new(SimdLevel::Avx512 as u8);

/// Runs `f` with the fused kernels capped at `level` (then restores the cap): for tests and
/// side-by-side timings of the SIMD widths. Callers are serialised, since the cap is
/// process-wide.
pub fn with_max_simd<R>(level: SimdLevel, f: impl FnOnce() -> R) -> R {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _guard = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let before = MAX_SIMD.swap(level as u8, Ordering::Relaxed);
    let r = f();
    MAX_SIMD.store(before, Ordering::Relaxed);
    r
}

/// Whether the kernels may use `level`: the cap allows it (the CPU check is the caller's).
/// Only the x86-64 dispatch asks; other targets take the scalar path.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
pub(crate) fn allowed(level: SimdLevel) -> bool {
    crate::options::init_from_env();
    MAX_SIMD.load(Ordering::Relaxed) >= level as u8
}

/// Sums `f(0) + … + f(n−1)` in f64 over eight interleaved accumulators: the same order on every
/// CPU (so results do not depend on the SIMD width), and vectorisable.
#[inline(always)]
pub fn sum_f64(n: usize, f: impl Fn(usize) -> f64) -> f64 {
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
pub fn exp_f32(x: f32) -> f32 {
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
pub fn sigmoid(z: f32) -> f32 {
    1.0 / (1.0 + exp_f32(-z))
}

/// Compiles `$body` (a call of an `#[inline(always)]` block function) for AVX-512, AVX2 and
/// the baseline, and runs the widest the CPU has within the cap of
/// [`KernelOptions::max_simd`](crate::KernelOptions::max_simd). Every path performs the same
/// f32 operations in the same order (no FMA contraction, fixed reduction order), so the
/// results are identical.
macro_rules! multiversion_impl {
    ($name:ident ($($arg:ident : $ty:ty),*) $body:block) => {
        fn $name($($arg: $ty),*) {
            #[cfg(target_arch = "x86_64")]
            {
                use $crate::simd::{allowed, SimdLevel};
                #[target_feature(enable = "avx512f")]
                unsafe fn wide($($arg: $ty),*) $body
                #[target_feature(enable = "avx2")]
                unsafe fn mid($($arg: $ty),*) $body
                if allowed(SimdLevel::Avx512) && std::arch::is_x86_feature_detected!("avx512f") {
                    // SAFETY: the CPU has AVX-512F (checked just above).
                    return unsafe { wide($($arg),*) };
                }
                if allowed(SimdLevel::Avx2) && std::arch::is_x86_feature_detected!("avx2") {
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

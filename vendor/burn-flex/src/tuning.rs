//! Process-wide switches of the kernels patched into this crate (see PATCHES.md), as typed
//! options. The environment variables `BURN_FLEX_WINOGRAD=off|f2|f4`,
//! `BURN_FLEX_WINOGRAD_SIMD=avx|scalar` and `BURN_FLEX_WINOGRAD_CHUNK=N` are documented
//! overrides of the defaults, read once at the first convolution (for A/B runs of a whole
//! program); [`set_winograd_options`] takes precedence from the moment it is called.
use core::sync::atomic::{AtomicU8, AtomicUsize, Ordering};

/// Which Winograd convolution runs the 3×3 stride-1 convolutions it takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum WinogradVariant {
    /// None: upstream's im2col path.
    Off,
    /// F(2×2, 3×3): 4×4 tiles, 16 GEMMs, smaller rounding error.
    F2,
    /// F(4×4, 3×3): 6×6 tiles, 36 GEMMs, the fastest (the default).
    #[default]
    F4,
}

/// The widest vector width the Winograd tile transforms may use (all give the same bits).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum WinogradSimd {
    /// The widest the CPU has (AVX-512, else AVX, else scalar).
    #[default]
    Widest,
    /// At most AVX's 8 lanes.
    Avx,
    /// One lane.
    Scalar,
}

/// The Winograd switches.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct WinogradOptions {
    /// Which variant runs.
    pub variant: WinogradVariant,
    /// The transforms' widest vector width.
    pub simd: WinogradSimd,
    /// Tiles per chunk; `None` chooses by the tile count and threads (tuning only).
    pub chunk: Option<usize>,
}

const UNSET: u8 = u8::MAX;
static VARIANT: AtomicU8 = AtomicU8::new(UNSET);
static SIMD: AtomicU8 = AtomicU8::new(UNSET);
/// 0: `None`; `usize::MAX`: not read yet.
static CHUNK: AtomicUsize = AtomicUsize::new(usize::MAX);

impl WinogradOptions {
    /// The defaults with the environment's overrides.
    fn from_env() -> Self {
        #[allow(unused_mut)]
        let mut o = Self::default();
        #[cfg(feature = "std")]
        {
            extern crate std;
            match std::env::var("BURN_FLEX_WINOGRAD").as_deref() {
                Ok("off") => o.variant = WinogradVariant::Off,
                Ok("f2") => o.variant = WinogradVariant::F2,
                Ok("f4") => o.variant = WinogradVariant::F4,
                _ => {}
            }
            match std::env::var("BURN_FLEX_WINOGRAD_SIMD").as_deref() {
                Ok("avx") => o.simd = WinogradSimd::Avx,
                Ok("scalar") => o.simd = WinogradSimd::Scalar,
                _ => {}
            }
            o.chunk = std::env::var("BURN_FLEX_WINOGRAD_CHUNK")
                .ok()
                .and_then(|v| v.parse::<usize>().ok())
                .map(|v| v.max(1));
        }
        o
    }
}

/// The current Winograd switches.
pub fn winograd_options() -> WinogradOptions {
    if VARIANT.load(Ordering::Relaxed) == UNSET {
        // First use: the defaults with the environment's overrides. Only fills what no call of
        // `set_winograd_options` has set meanwhile.
        let env = WinogradOptions::from_env();
        let _ = VARIANT.compare_exchange(
            UNSET,
            env.variant as u8,
            Ordering::Relaxed,
            Ordering::Relaxed,
        );
        let _ = SIMD.compare_exchange(UNSET, env.simd as u8, Ordering::Relaxed, Ordering::Relaxed);
        let _ = CHUNK.compare_exchange(
            usize::MAX,
            env.chunk.unwrap_or(0),
            Ordering::Relaxed,
            Ordering::Relaxed,
        );
    }
    let variant = match VARIANT.load(Ordering::Relaxed) {
        0 => WinogradVariant::Off,
        1 => WinogradVariant::F2,
        _ => WinogradVariant::F4,
    };
    let simd = match SIMD.load(Ordering::Relaxed) {
        1 => WinogradSimd::Avx,
        2 => WinogradSimd::Scalar,
        _ => WinogradSimd::Widest,
    };
    let chunk = match CHUNK.load(Ordering::Relaxed) {
        0 | usize::MAX => None,
        n => Some(n),
    };
    WinogradOptions {
        variant,
        simd,
        chunk,
    }
}

/// Sets the Winograd switches for the whole process (tests, benchmarks, `diffuse`'s kernel
/// options); the environment's overrides no longer apply afterwards.
pub fn set_winograd_options(o: WinogradOptions) {
    SIMD.store(o.simd as u8, Ordering::Relaxed);
    CHUNK.store(o.chunk.map_or(0, |c| c.max(1)), Ordering::Relaxed);
    VARIANT.store(o.variant as u8, Ordering::Relaxed);
}

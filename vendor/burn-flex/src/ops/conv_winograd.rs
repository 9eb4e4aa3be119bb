//! diffuse patch (not in upstream burn-flex 0.22.1): Winograd convolution for 3×3, stride-1,
//! dilation-1, single-group 2D convolutions in f32 (Lavin & Gray 2016, "Fast Algorithms for
//! Convolutional Neural Networks", eq. 8):
//!
//!   Y = Aᵀ [ (G g Gᵀ) ⊙ (Bᵀ d B) ] A
//!
//! for every (m+2)×(m+2) input tile d and 3×3 filter g, giving an m×m output tile. Summed over
//! input channels, the element-wise product becomes, for each of the (m+2)² transform
//! positions ξ, one GEMM  M_ξ[K, tiles] = U_ξ[K, C] · V_ξ[C, tiles]  (U the transformed
//! filters, V the transformed input tiles), so the multiply count per output falls from 9·C to
//! (m+2)²/m²·C: 2.25× fewer for F(4×4, 3×3), 1.78× for F(2×2, 3×3).
//!
//! The input is read in NHWC order so that the transforms run with channels in the vector
//! lanes: a tile's pixel is then one contiguous load per register of channels, where NCHW
//! would need a scalar gather per tile (that gather and its store-forwarding stalls made the
//! transforms cost twice the GEMMs). V and M are stored tile-major (column-major), gemm's
//! native orientation. The transforms are compiled per x86 vector width (AVX-512, AVX, one
//! lane) and chosen at run time; each lane takes the same IEEE operations in the same order,
//! so every width gives the same bits.
//!
//! Tiles are processed in chunks whose transformed input (V, (m+2)²·C·chunk floats) stays in
//! L2; chunks run in parallel with rayon, each with single-threaded GEMMs, and each output
//! element is written by exactly one chunk, so the result depends only on the chunk size,
//! which depends on the problem and the thread count.
//!
//! The weight gradient of the same convolutions takes the adjoint of eq. 8 (see
//! [`conv2d_weight_backward`]): one GEMM per transform position summed over the tiles.
//!
//! Error: the transforms of F(4×4, 3×3) have entries up to 8 (Aᵀ) and 5 (Bᵀ), so rounding
//! errors are amplified more than with F(2×2, 3×3) (entries ≤ 1); tests/conv_winograd.rs bounds
//! both against a direct convolution in f64.

use alloc::vec;
use alloc::vec::Vec;
use burn_backend::DType;
use burn_backend::ops::ConvOptions;
use burn_std::{Bytes, Shape};

use crate::{FlexTensor, Layout};

/// Tiles per chunk (see [`chunk_size`]).
const CHUNK: usize = 64;

/// Which Winograd variant a convolution uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Variant {
    /// F(2×2, 3×3): 4×4 tiles, 16 GEMMs.
    F2,
    /// F(4×4, 3×3): 6×6 tiles, 36 GEMMs.
    F4,
}

/// Minimum input and output channels for Winograd: with few channels the transforms cost more
/// than the GEMM flops they save. Not tuned: speed measured at 128–512 channels only.
const MIN_CHANNELS: usize = 32;

/// The variant of [`crate::tuning::winograd_options`] (F(4×4) unless switched).
fn chosen_variant() -> Option<Variant> {
    match crate::tuning::winograd_options().variant {
        crate::tuning::WinogradVariant::Off => None,
        crate::tuning::WinogradVariant::F2 => Some(Variant::F2),
        crate::tuning::WinogradVariant::F4 => Some(Variant::F4),
    }
}

/// The convolutions Winograd takes: f32 input, a 3×3 filter with at least [`MIN_CHANNELS`]
/// input and output channels matching the input's, stride 1, dilation 1, one group, and a
/// padded input at least 3×3.
fn takes(x: &FlexTensor, weight_shape: &Shape, options: &ConvOptions<2>) -> bool {
    let (xs, ws) = (x.layout().shape(), weight_shape);
    let [(pt, pb), (pl, pr)] = options.padding;
    x.dtype() == DType::F32
        && ws.num_dims() == 4
        && ws[2] == 3
        && ws[3] == 3
        && options.stride == [1, 1]
        && options.dilation == [1, 1]
        && options.groups == 1
        && ws[0] >= MIN_CHANNELS
        && ws[1] >= MIN_CHANNELS
        && xs[1] == ws[1]
        && xs[2] + pt + pb >= 3
        && xs[3] + pl + pr >= 3
}

/// Whether a conv2d with these shapes runs through Winograd (f32 only).
pub fn applies(x: &FlexTensor, weight: &FlexTensor, options: &ConvOptions<2>) -> Option<Variant> {
    if weight.dtype() != DType::F32 || !takes(x, weight.layout().shape(), options) {
        return None;
    }
    chosen_variant()
}

/// conv2d through Winograd; the caller checked [`applies`]. `x`: [N, C, H, W];
/// `weight`: [K, C, 3, 3]; `bias`: [K].
pub fn conv2d(
    x: FlexTensor,
    weight: FlexTensor,
    bias: Option<FlexTensor>,
    options: &ConvOptions<2>,
    variant: Variant,
) -> FlexTensor {
    match variant {
        Variant::F2 => run::<2, 4, F2>(x, weight, bias, options),
        Variant::F4 => run::<4, 6, F4>(x, weight, bias, options),
    }
}

/// Whether the weight gradient of a conv2d with these shapes runs through Winograd (the same
/// convolutions as [`applies`]). `x`: [N, C, H, W]; `output_grad`: [N, K, Ho, Wo];
/// `weight_shape`: [K, C, 3, 3].
pub fn applies_weight_grad(
    x: &FlexTensor,
    output_grad: &FlexTensor,
    weight_shape: &Shape,
    options: &ConvOptions<2>,
) -> Option<Variant> {
    let (xs, ys) = (x.layout().shape(), output_grad.layout().shape());
    let [(pt, pb), (pl, pr)] = options.padding;
    if output_grad.dtype() != DType::F32
        || !takes(x, weight_shape, options)
        || ys.num_dims() != 4
        || ys[0] != xs[0]
        || ys[1] != weight_shape[0]
        || ys[2] != xs[2] + pt + pb - 2
        || ys[3] != xs[3] + pl + pr - 2
    {
        return None;
    }
    chosen_variant()
}

/// dL/dW of a conv2d through Winograd; the caller checked [`applies_weight_grad`]. Returns
/// [K, C, 3, 3].
pub fn conv2d_weight_backward(
    x: FlexTensor,
    output_grad: FlexTensor,
    options: &ConvOptions<2>,
    variant: Variant,
) -> FlexTensor {
    match variant {
        Variant::F2 => weight_grad::<2, 4, F2>(x, output_grad, options),
        Variant::F4 => weight_grad::<4, 6, F4>(x, output_grad, options),
    }
}

/// Vector arithmetic over one register of f32 lanes, the only operations the transforms use.
/// Each lane is computed with the same IEEE operations in the same order at every width (no
/// fused multiply-adds), so every SIMD level gives the same bits.
trait Simd {
    const LANES: usize;
    type R: Copy;
    /// # Safety
    /// `p .. p + LANES` readable (and the level's CPU features present).
    unsafe fn load(p: *const f32) -> Self::R;
    /// # Safety
    /// `p .. p + LANES` writable (and the level's CPU features present).
    unsafe fn store(p: *mut f32, v: Self::R);
    fn add(a: Self::R, b: Self::R) -> Self::R;
    fn sub(a: Self::R, b: Self::R) -> Self::R;
    fn mul(a: Self::R, b: Self::R) -> Self::R;
    fn splat(v: f32) -> Self::R;
}

/// One lane: the fallback, and the channels left over after the last full register.
struct Scalar;
impl Simd for Scalar {
    const LANES: usize = 1;
    type R = f32;
    #[inline(always)]
    unsafe fn load(p: *const f32) -> f32 {
        unsafe { *p }
    }
    #[inline(always)]
    unsafe fn store(p: *mut f32, v: f32) {
        unsafe { *p = v }
    }
    #[inline(always)]
    fn add(a: f32, b: f32) -> f32 {
        a + b
    }
    #[inline(always)]
    fn sub(a: f32, b: f32) -> f32 {
        a - b
    }
    #[inline(always)]
    fn mul(a: f32, b: f32) -> f32 {
        a * b
    }
    #[inline(always)]
    fn splat(v: f32) -> f32 {
        v
    }
}

/// Implements [`Simd`] for one x86 register width from its intrinsics. They are only reached
/// from functions compiled with the matching `target_feature` (see [`run_chunk`]).
#[cfg(target_arch = "x86_64")]
macro_rules! x86_simd {
    ($name:ident, $reg:ty, $lanes:expr, $load:ident, $store:ident, $add:ident, $sub:ident,
     $mul:ident, $set1:ident) => {
        struct $name;
        impl Simd for $name {
            const LANES: usize = $lanes;
            type R = $reg;
            #[inline(always)]
            unsafe fn load(p: *const f32) -> $reg {
                unsafe { core::arch::x86_64::$load(p) }
            }
            #[inline(always)]
            unsafe fn store(p: *mut f32, v: $reg) {
                unsafe { core::arch::x86_64::$store(p, v) }
            }
            #[inline(always)]
            fn add(a: $reg, b: $reg) -> $reg {
                unsafe { core::arch::x86_64::$add(a, b) }
            }
            #[inline(always)]
            fn sub(a: $reg, b: $reg) -> $reg {
                unsafe { core::arch::x86_64::$sub(a, b) }
            }
            #[inline(always)]
            fn mul(a: $reg, b: $reg) -> $reg {
                unsafe { core::arch::x86_64::$mul(a, b) }
            }
            #[inline(always)]
            fn splat(v: f32) -> $reg {
                unsafe { core::arch::x86_64::$set1(v) }
            }
        }
    };
}
#[cfg(target_arch = "x86_64")]
x86_simd!(
    Avx512,
    core::arch::x86_64::__m512,
    16,
    _mm512_loadu_ps,
    _mm512_storeu_ps,
    _mm512_add_ps,
    _mm512_sub_ps,
    _mm512_mul_ps,
    _mm512_set1_ps
);
#[cfg(target_arch = "x86_64")]
x86_simd!(
    Avx,
    core::arch::x86_64::__m256,
    8,
    _mm256_loadu_ps,
    _mm256_storeu_ps,
    _mm256_add_ps,
    _mm256_sub_ps,
    _mm256_mul_ps,
    _mm256_set1_ps
);

/// A Winograd variant F(m×m, 3×3) with tile side A = m + 2: its 1-D input transform z = Bᵀ d,
/// output transform y = Aᵀ m (applied down the columns, then along the rows, they give
/// Bᵀ d B and Aᵀ M A of Lavin & Gray's eq. 8), and its filter matrix G.
trait Tile<const M: usize, const A: usize> {
    /// G, applied in f64 by [`filter_transform`].
    const G: [[f64; 3]; A];
    fn input<S: Simd>(d: [S::R; A]) -> [S::R; A];
    fn output<S: Simd>(m: [S::R; A]) -> [S::R; M];
    /// z = A y, the adjoint of [`Tile::output`]: transforms an output-gradient tile for the
    /// weight gradient (see [`weight_grad`]).
    fn grad_output<S: Simd>(y: [S::R; M]) -> [S::R; A];
}

/// F(2×2, 3×3), interpolation points 0, ±1, ∞ (Lavin & Gray, section 4.1):
/// Bᵀ = [1 0 −1 0; 0 1 1 0; 0 −1 1 0; 0 1 0 −1], Aᵀ = [1 1 1 0; 0 1 −1 −1].
struct F2;
impl Tile<2, 4> for F2 {
    const G: [[f64; 3]; 4] = [
        [1.0, 0.0, 0.0],
        [0.5, 0.5, 0.5],
        [0.5, -0.5, 0.5],
        [0.0, 0.0, 1.0],
    ];
    #[inline(always)]
    fn input<S: Simd>(d: [S::R; 4]) -> [S::R; 4] {
        [
            S::sub(d[0], d[2]),
            S::add(d[1], d[2]),
            S::sub(d[2], d[1]),
            S::sub(d[1], d[3]),
        ]
    }
    #[inline(always)]
    fn output<S: Simd>(m: [S::R; 4]) -> [S::R; 2] {
        [
            S::add(S::add(m[0], m[1]), m[2]),
            S::sub(S::sub(m[1], m[2]), m[3]),
        ]
    }
    #[inline(always)]
    fn grad_output<S: Simd>(y: [S::R; 2]) -> [S::R; 4] {
        [
            y[0],
            S::add(y[0], y[1]),
            S::sub(y[0], y[1]),
            S::sub(S::splat(0.0), y[1]),
        ]
    }
}

/// F(4×4, 3×3), points 0, ±1, ±2, ∞ (Lavin & Gray, section 4.2):
/// Bᵀ = [4 0 −5 0 1 0; 0 −4 −4 1 1 0; 0 4 −4 −1 1 0; 0 −2 −1 2 1 0; 0 2 −1 −2 1 0;
///       0 4 0 −5 0 1],
/// Aᵀ = [1 1 1 1 1 0; 0 1 −1 2 −2 0; 0 1 1 4 4 0; 0 1 −1 8 −8 1],
/// evaluated with the usual shared terms (rows 1–2 and 3–4 of Bᵀ, and the sums and differences
/// of m₁, m₂ and m₃, m₄ in Aᵀ).
struct F4;
impl Tile<4, 6> for F4 {
    const G: [[f64; 3]; 6] = [
        [1.0 / 4.0, 0.0, 0.0],
        [-1.0 / 6.0, -1.0 / 6.0, -1.0 / 6.0],
        [-1.0 / 6.0, 1.0 / 6.0, -1.0 / 6.0],
        [1.0 / 24.0, 1.0 / 12.0, 1.0 / 6.0],
        [1.0 / 24.0, -1.0 / 12.0, 1.0 / 6.0],
        [0.0, 0.0, 1.0],
    ];
    #[inline(always)]
    fn input<S: Simd>(d: [S::R; 6]) -> [S::R; 6] {
        let (c2, c4, c5) = (S::splat(2.0), S::splat(4.0), S::splat(5.0));
        let a = S::sub(d[4], S::mul(c4, d[2]));
        let b = S::sub(d[3], S::mul(c4, d[1]));
        let c = S::sub(d[4], d[2]);
        let e = S::mul(c2, S::sub(d[3], d[1]));
        [
            S::add(S::sub(S::mul(c4, d[0]), S::mul(c5, d[2])), d[4]),
            S::add(a, b),
            S::sub(a, b),
            S::add(c, e),
            S::sub(c, e),
            S::add(S::sub(S::mul(c4, d[1]), S::mul(c5, d[3])), d[5]),
        ]
    }
    #[inline(always)]
    fn output<S: Simd>(m: [S::R; 6]) -> [S::R; 4] {
        let (c2, c4, c8) = (S::splat(2.0), S::splat(4.0), S::splat(8.0));
        let s12 = S::add(m[1], m[2]);
        let d12 = S::sub(m[1], m[2]);
        let s34 = S::add(m[3], m[4]);
        let d34 = S::sub(m[3], m[4]);
        [
            S::add(S::add(m[0], s12), s34),
            S::add(d12, S::mul(c2, d34)),
            S::add(s12, S::mul(c4, s34)),
            S::add(S::add(d12, S::mul(c8, d34)), m[5]),
        ]
    }
    /// A = Aᵀᵀ: z = (y₀, y₀+y₁+y₂+y₃, y₀−y₁+y₂−y₃, y₀+2y₁+4y₂+8y₃, y₀−2y₁+4y₂−8y₃, y₃), with
    /// the even and odd parts shared.
    #[inline(always)]
    fn grad_output<S: Simd>(y: [S::R; 4]) -> [S::R; 6] {
        let (c2, c4, c8) = (S::splat(2.0), S::splat(4.0), S::splat(8.0));
        let e1 = S::add(y[0], y[2]);
        let o1 = S::add(y[1], y[3]);
        let e2 = S::add(y[0], S::mul(c4, y[2]));
        let o2 = S::add(S::mul(c2, y[1]), S::mul(c8, y[3]));
        [
            y[0],
            S::add(e1, o1),
            S::sub(e1, o1),
            S::add(e2, o2),
            S::sub(e2, o2),
            y[3],
        ]
    }
}

/// Bᵀ d B for the `S::LANES` channels of one tile starting at `c0`; `src[i][j]` points at
/// channel 0 of the tile's pixel (i, j) (an all-zero row outside the image). Writes
/// V_ξ[c, t] at `v + (ξ·chunk + t)·C + c`.
///
/// # Safety
/// Every `src[i][j] + c0 .. + S::LANES` readable, and `v` as described writable.
#[inline(always)]
unsafe fn input_tile<S: Simd, const M: usize, const A: usize, T: Tile<M, A>>(
    src: &[[*const f32; A]; A],
    c0: usize,
    v: *mut f32,
    col_stride: usize,
) {
    let mut tmp = [[S::splat(0.0); A]; A];
    for j in 0..A {
        let z = T::input::<S>(core::array::from_fn(|i| unsafe {
            S::load(src[i][j].add(c0))
        }));
        for (r, zr) in z.into_iter().enumerate() {
            tmp[r][j] = zr;
        }
    }
    for (r, row) in tmp.into_iter().enumerate() {
        for (q, zq) in T::input::<S>(row).into_iter().enumerate() {
            unsafe { S::store(v.add((r * A + q) * col_stride + c0), zq) };
        }
    }
}

/// Aᵀ M A (+ bias) for the `S::LANES` output channels of one tile starting at `k0`, read from
/// `mbuf + (ξ·chunk + t)·K + k`, stored pixel-major in `y` (`y[(i·M + j)·S::LANES + lane]`).
///
/// # Safety
/// The `mbuf` range as described readable, `bias + k0 .. + S::LANES` readable when given.
#[inline(always)]
unsafe fn output_tile<S: Simd, const M: usize, const A: usize, T: Tile<M, A>>(
    m: *const f32,
    col_stride: usize,
    bias: Option<*const f32>,
    y: &mut [f32; 256],
) {
    let mut tmp = [[S::splat(0.0); A]; M];
    // q is a column of both the transform input (in `m`) and `tmp`.
    #[allow(clippy::needless_range_loop)]
    for q in 0..A {
        let z = T::output::<S>(core::array::from_fn(|r| unsafe {
            S::load(m.add((r * A + q) * col_stride))
        }));
        for (i, zi) in z.into_iter().enumerate() {
            tmp[i][q] = zi;
        }
    }
    let bv = bias.map(|b| unsafe { S::load(b) });
    for (i, row) in tmp.into_iter().enumerate() {
        for (j, mut yv) in T::output::<S>(row).into_iter().enumerate() {
            if let Some(bv) = bv {
                yv = S::add(yv, bv);
            }
            debug_assert!((i * M + j + 1) * S::LANES <= y.len());
            unsafe { S::store(y.as_mut_ptr().add((i * M + j) * S::LANES), yv) };
        }
    }
}

/// A dY Aᵀ for the `S::LANES` output channels of one tile starting at `k0`; `src[i][j]` points
/// at channel 0 of the tile's output-gradient pixel (i, j) (zeros beyond the output). Writes
/// Ŷ_ξ[k, t] at `dst + ξ·col_stride + k`.
///
/// # Safety
/// Every `src[i][j] + k0 .. + S::LANES` readable, and `dst` as described writable.
#[inline(always)]
unsafe fn grad_output_tile<S: Simd, const M: usize, const A: usize, T: Tile<M, A>>(
    src: &[[*const f32; M]; M],
    k0: usize,
    dst: *mut f32,
    col_stride: usize,
) {
    let mut tmp = [[S::splat(0.0); M]; A];
    for j in 0..M {
        let z = T::grad_output::<S>(core::array::from_fn(|i| unsafe {
            S::load(src[i][j].add(k0))
        }));
        for (r, zr) in z.into_iter().enumerate() {
            tmp[r][j] = zr;
        }
    }
    for (r, row) in tmp.into_iter().enumerate() {
        for (q, zq) in T::grad_output::<S>(row).into_iter().enumerate() {
            unsafe { S::store(dst.add((r * A + q) * col_stride + k0), zq) };
        }
    }
}

/// V_ξ[c, t] = (Bᵀ d B)_ξ for tiles `t0 .. t0 + nt`, channels in the vector lanes (contiguous
/// in NHWC), stored at `v[(ξ·chunk + t)·C + c]`. Pixels outside the image read `zeros`.
///
/// # Safety
/// `S`'s CPU features present.
#[inline(always)]
unsafe fn input_tiles<S: Simd, const M: usize, const A: usize, T: Tile<M, A>>(
    g: &Geo,
    x_nhwc: &[f32],
    zeros: &[f32],
    t0: usize,
    nt: usize,
    chunk: usize,
    v: &mut [f32],
) {
    let c = g.c;
    assert!(v.len() >= A * A * chunk * c && nt <= chunk);
    assert!(x_nhwc.len() >= (t0 + nt).div_ceil(g.th * g.tw) * g.h * g.w * c);
    assert!(zeros.len() >= c);
    let v = v.as_mut_ptr();
    for ti in 0..nt {
        let (b, ty, tx) = g.tile(t0 + ti);
        let src: [[*const f32; A]; A] = core::array::from_fn(|i| {
            core::array::from_fn(|j| {
                let ih = (ty * M + i).wrapping_sub(g.pad_t);
                let iw = (tx * M + j).wrapping_sub(g.pad_l);
                if ih < g.h && iw < g.w {
                    // Safety: in bounds by the assert above.
                    unsafe { x_nhwc.as_ptr().add(((b * g.h + ih) * g.w + iw) * c) }
                } else {
                    zeros.as_ptr()
                }
            })
        });
        let vt = unsafe { v.add(ti * c) };
        let mut c0 = 0;
        while c0 + S::LANES <= c {
            unsafe { input_tile::<S, M, A, T>(&src, c0, vt, chunk * c) };
            c0 += S::LANES;
        }
        for cr in c0..c {
            unsafe { input_tile::<Scalar, M, A, T>(&src, cr, vt, chunk * c) };
        }
    }
}

/// Output and tiling geometry.
struct Geo {
    c: usize,
    k: usize,
    h: usize,
    w: usize,
    ho: usize,
    wo: usize,
    pad_t: usize,
    pad_l: usize,
    /// Tiles per row and per column of one output map.
    tw: usize,
    th: usize,
}

impl Geo {
    /// (batch item, first output row, first output column) of tile `t`.
    fn tile(&self, t: usize) -> (usize, usize, usize) {
        let per = self.th * self.tw;
        let (b, r) = (t / per, t % per);
        (b, r / self.tw, r % self.tw)
    }
}

/// The forward convolution: everything one chunk of tiles reads, shared by the workers.
struct Forward<'a, const M: usize, const A: usize, T> {
    geo: Geo,
    /// The input in NHWC order, and C zeros standing for pixels outside the image.
    x_nhwc: &'a [f32],
    zeros: &'a [f32],
    /// U_ξ[K, C], column-major, ξ-major.
    u: &'a [f32],
    bias: Option<&'a [f32]>,
    out: OutPtr,
    chunk: usize,
    tiles: usize,
    gemm_par: gemm::Parallelism,
    variant: core::marker::PhantomData<fn() -> T>,
}

/// One worker's buffers: V (ξ, tile, channel) and M (ξ, tile, output channel).
struct Buffers {
    v: Vec<f32>,
    m: Vec<f32>,
}

impl<const M: usize, const A: usize, T: Tile<M, A>> ChunkWork for Forward<'_, M, A, T> {
    type Buffers = Buffers;

    /// Input transform, the (m+2)² GEMMs and the output transform for chunk `ci`.
    #[inline(always)]
    unsafe fn run<S: Simd>(&self, ci: usize, bufs: &mut Buffers) {
        unsafe { forward_chunk::<S, M, A, T>(self, ci, bufs) }
    }
}

/// # Safety
/// `S`'s CPU features present; `bufs` sized for `job.chunk`; chunk `ci` not run by anyone else.
#[inline(always)]
unsafe fn forward_chunk<S: Simd, const M: usize, const A: usize, T: Tile<M, A>>(
    job: &Forward<M, A, T>,
    ci: usize,
    bufs: &mut Buffers,
) {
    let g = &job.geo;
    let (c, k, chunk) = (g.c, g.k, job.chunk);
    let t0 = ci * chunk;
    let nt = chunk.min(job.tiles - t0);
    assert!(bufs.m.len() >= A * A * chunk * k);
    // V_ξ[c, t] = (Bᵀ d B)_ξ.
    unsafe { input_tiles::<S, M, A, T>(g, job.x_nhwc, job.zeros, t0, nt, chunk, &mut bufs.v) };

    for xi in 0..A * A {
        // M_ξ[K, nt] = U_ξ[K, C] · V_ξ[C, nt], all three column-major, gemm's native
        // orientation. gemm(m, n, k, dst, dst_cs, dst_rs, read_dst, lhs, lhs_cs,
        // lhs_rs, rhs, rhs_cs, rhs_rs, alpha, beta, ...).
        unsafe {
            gemm::gemm(
                k,
                nt,
                c,
                bufs.m.as_mut_ptr().add(xi * chunk * k),
                k as isize,
                1,
                false,
                job.u.as_ptr().add(xi * k * c),
                k as isize,
                1,
                bufs.v.as_ptr().add(xi * chunk * c),
                c as isize,
                1,
                0.0,
                1.0,
                false,
                false,
                false,
                job.gemm_par,
            );
        }
    }

    // y = Aᵀ M A (+ bias), scattered into the NCHW output and clipped at the right and bottom
    // edges. Output-channel blocks outermost, so one block's planes stay in cache.
    let plane = g.ho * g.wo;
    let m = bufs.m.as_ptr();
    let mut y = [0f32; 256];
    let mut k0 = 0;
    while k0 < k {
        let lanes = if k0 + S::LANES <= k { S::LANES } else { 1 };
        for ti in 0..nt {
            let (bi, ty, tx) = g.tile(t0 + ti);
            let mt = unsafe { m.add(ti * k + k0) };
            let bias = job.bias.map(|b| b[k0..k0 + lanes].as_ptr());
            unsafe {
                if lanes == S::LANES {
                    output_tile::<S, M, A, T>(mt, chunk * k, bias, &mut y);
                } else {
                    output_tile::<Scalar, M, A, T>(mt, chunk * k, bias, &mut y);
                }
            }
            let o = (bi * k + k0) * plane + ty * M * g.wo + tx * M;
            let rows = M.min(g.ho - ty * M);
            let cols = M.min(g.wo - tx * M);
            for l in 0..lanes {
                for i in 0..rows {
                    for j in 0..cols {
                        // Safety: tile (bi, ty, tx) belongs to this chunk alone and the
                        // offset is inside the [N, K, Ho, Wo] output.
                        unsafe {
                            job.out
                                .write(o + l * plane + i * g.wo + j, y[(i * M + j) * lanes + l])
                        };
                    }
                }
            }
        }
        k0 += lanes;
    }
}

/// The vector width the transforms run at: the widest this CPU has, or a narrower one set by
/// [`crate::tuning::WinogradOptions::simd`] (so tests can compare the widths, which give the
/// same bits, on whatever CPU runs them).
#[derive(Clone, Copy)]
enum Level {
    Scalar,
    #[cfg(target_arch = "x86_64")]
    Avx,
    #[cfg(target_arch = "x86_64")]
    Avx512,
}

fn level() -> Level {
    #[cfg(all(feature = "std", target_arch = "x86_64"))]
    {
        extern crate std;
        use crate::tuning::WinogradSimd;
        let cap = crate::tuning::winograd_options().simd;
        if cap == WinogradSimd::Scalar {
            return Level::Scalar;
        }
        if cap != WinogradSimd::Avx && std::is_x86_feature_detected!("avx512f") {
            return Level::Avx512;
        }
        if std::is_x86_feature_detected!("avx") {
            return Level::Avx;
        }
    }
    Level::Scalar
}

/// Work on one chunk of tiles, compiled once per vector width: [`run_chunk`] calls it from a
/// function built with that width's `target_feature`, into which it is inlined.
trait ChunkWork: Sync {
    type Buffers;
    /// # Safety
    /// `S`'s CPU features present; `bufs` sized for the job; chunk `ci` run by one worker.
    unsafe fn run<S: Simd>(&self, ci: usize, bufs: &mut Self::Buffers);
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn run_avx512<J: ChunkWork>(job: &J, ci: usize, bufs: &mut J::Buffers) {
    unsafe { job.run::<Avx512>(ci, bufs) }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx")]
unsafe fn run_avx<J: ChunkWork>(job: &J, ci: usize, bufs: &mut J::Buffers) {
    unsafe { job.run::<Avx>(ci, bufs) }
}

/// Runs chunk `ci` of `job` compiled for `level`, which [`level`] found on this CPU.
fn run_chunk<J: ChunkWork>(level: Level, job: &J, ci: usize, bufs: &mut J::Buffers) {
    // Safety: the level's features were detected at run time; each caller hands a chunk to
    // one worker.
    unsafe {
        match level {
            #[cfg(target_arch = "x86_64")]
            Level::Avx512 => run_avx512(job, ci, bufs),
            #[cfg(target_arch = "x86_64")]
            Level::Avx => run_avx(job, ci, bufs),
            Level::Scalar => job.run::<Scalar>(ci, bufs),
        }
    }
}

fn run<const M: usize, const A: usize, T: Tile<M, A>>(
    x: FlexTensor,
    weight: FlexTensor,
    bias: Option<FlexTensor>,
    options: &ConvOptions<2>,
) -> FlexTensor {
    // `to_nhwc` below reads x in any layout: no contiguous copy first.
    let weight = weight.to_contiguous();
    let xs = x.layout().shape().clone();
    let ws = weight.layout().shape().clone();
    let [(pt, pb), (pl, pr)] = options.padding;
    let (n, c, h, w) = (xs[0], xs[1], xs[2], xs[3]);
    let k = ws[0];
    let (ho, wo) = (h + pt + pb - 2, w + pl + pr - 2);
    let geo = Geo {
        c,
        k,
        h,
        w,
        ho,
        wo,
        pad_t: pt,
        pad_l: pl,
        th: ho.div_ceil(M),
        tw: wo.div_ceil(M),
    };
    let x_nhwc = super::conv::to_nhwc(&x);
    let zeros = vec![0f32; c];
    let bias = bias.map(|b| b.to_contiguous());
    let u = filter_transform::<A>(weight.storage(), k, c, &T::G);

    let tiles = n * geo.th * geo.tw;
    let threads = num_threads();
    let chunk = chunk_size(tiles, threads);
    let n_chunks = tiles.div_ceil(chunk);
    // Too few chunks to keep every thread busy (small maps): one chunk at a time, the GEMMs
    // split across threads instead (by output columns, so still deterministic).
    let gemm_par = if n_chunks < threads {
        gemm_parallelism(threads)
    } else {
        gemm::Parallelism::None
    };

    // Every output element is written by exactly one tile, so the buffer starts uninitialised
    // and its length is set once all chunks are done.
    let len = n * k * ho * wo;
    let mut out: Vec<f32> = Vec::with_capacity(len);
    let job = Forward::<M, A, T> {
        geo,
        x_nhwc: x_nhwc.storage(),
        zeros: &zeros,
        u: &u,
        bias: bias.as_ref().map(|b| b.storage()),
        out: OutPtr(out.as_mut_ptr()),
        chunk,
        tiles,
        gemm_par,
        variant: core::marker::PhantomData,
    };
    let level = level();
    let work = |ci: usize, bufs: &mut Buffers| run_chunk(level, &job, ci, bufs);
    let init = || Buffers {
        v: vec![0f32; A * A * c * chunk],
        m: vec![0f32; A * A * k * chunk],
    };
    #[cfg(feature = "rayon")]
    if n_chunks >= threads && threads > 1 {
        // One worker per thread, each with its own buffers, taking the next chunk from a shared
        // counter. Which worker runs a chunk does not change its result.
        use core::sync::atomic::{AtomicUsize, Ordering};
        let next = AtomicUsize::new(0);
        rayon::broadcast(|_| {
            let mut bufs = init();
            loop {
                let ci = next.fetch_add(1, Ordering::Relaxed);
                if ci >= n_chunks {
                    break;
                }
                work(ci, &mut bufs);
            }
        });
    } else {
        let mut bufs = init();
        for ci in 0..n_chunks {
            work(ci, &mut bufs);
        }
    }
    #[cfg(not(feature = "rayon"))]
    {
        let mut bufs = init();
        for ci in 0..n_chunks {
            work(ci, &mut bufs);
        }
    }
    // Safety: the chunks covered every tile, and the tiles every output element.
    unsafe { out.set_len(len) };
    let shape = Shape::from(vec![n, k, ho, wo]);
    FlexTensor::new(
        Bytes::from_elems(out),
        Layout::contiguous(shape),
        DType::F32,
    )
}

/// The weight gradient (Lavin & Gray's eq. 8 differentiated with respect to g): every output
/// tile of the forward is Y_t = Aᵀ [U ⊙ V_t] A with U = G g Gᵀ, so
///
///   dL/dg = Gᵀ [ Σ_t (A dY_t Aᵀ) ⊙ V_t ] G,
///
/// and the sum over tiles, for each transform position ξ, is one GEMM
/// dU_ξ[K, C] = Ŷ_ξ[K, tiles] · V_ξ[C, tiles]ᵀ with Ŷ the transformed output-gradient tiles
/// (zero beyond the output's edge). That is (m+2)²/m² = 2.25 products per output-gradient
/// element and input channel for F(4×4, 3×3) against 9 for im2col + GEMM.
struct WeightGrad<'a, const M: usize, const A: usize, T> {
    geo: Geo,
    x_nhwc: &'a [f32],
    /// The output gradient in NHWC order.
    dy_nhwc: &'a [f32],
    /// max(C, K) zeros, for pixels outside the image or the output.
    zeros: &'a [f32],
    chunk: usize,
    tiles: usize,
    gemm_par: gemm::Parallelism,
    variant: core::marker::PhantomData<fn() -> T>,
}

/// One worker's buffers: V (ξ, tile, channel), Ŷ (ξ, tile, output channel), and its running
/// sum dU (ξ, then K×C column-major).
struct GradBuffers {
    v: Vec<f32>,
    y: Vec<f32>,
    acc: Vec<f32>,
}

impl<const M: usize, const A: usize, T: Tile<M, A>> ChunkWork for WeightGrad<'_, M, A, T> {
    type Buffers = GradBuffers;

    /// Both transforms of chunk `ci`, and its (m+2)² GEMMs added into the worker's dU.
    #[inline(always)]
    unsafe fn run<S: Simd>(&self, ci: usize, bufs: &mut GradBuffers) {
        let g = &self.geo;
        let (c, k, chunk) = (g.c, g.k, self.chunk);
        let t0 = ci * chunk;
        let nt = chunk.min(self.tiles - t0);
        unsafe {
            input_tiles::<S, M, A, T>(g, self.x_nhwc, self.zeros, t0, nt, chunk, &mut bufs.v)
        };

        // Ŷ_ξ[k, t] = (A dY_t Aᵀ)_ξ, output channels in the vector lanes.
        assert!(bufs.y.len() >= A * A * chunk * k && bufs.acc.len() >= A * A * k * c);
        assert!(self.dy_nhwc.len() >= (t0 + nt).div_ceil(g.th * g.tw) * g.ho * g.wo * k);
        assert!(self.zeros.len() >= k);
        let y = bufs.y.as_mut_ptr();
        for ti in 0..nt {
            let (b, ty, tx) = g.tile(t0 + ti);
            let src: [[*const f32; M]; M] = core::array::from_fn(|i| {
                core::array::from_fn(|j| {
                    let (oh, ow) = (ty * M + i, tx * M + j);
                    if oh < g.ho && ow < g.wo {
                        // Safety: in bounds by the assert above.
                        unsafe { self.dy_nhwc.as_ptr().add(((b * g.ho + oh) * g.wo + ow) * k) }
                    } else {
                        self.zeros.as_ptr()
                    }
                })
            });
            let yt = unsafe { y.add(ti * k) };
            let mut k0 = 0;
            while k0 + S::LANES <= k {
                unsafe { grad_output_tile::<S, M, A, T>(&src, k0, yt, chunk * k) };
                k0 += S::LANES;
            }
            for kr in k0..k {
                unsafe { grad_output_tile::<Scalar, M, A, T>(&src, kr, yt, chunk * k) };
            }
        }

        for xi in 0..A * A {
            // dU_ξ[K, C] += Ŷ_ξ[K, nt] · V_ξ[C, nt]ᵀ; Ŷ_ξ and dU_ξ column-major, V_ξᵀ
            // row-major. gemm(m, n, k, dst, dst_cs, dst_rs, read_dst, lhs, lhs_cs, lhs_rs,
            // rhs, rhs_cs, rhs_rs, alpha, beta, ...): dst = alpha·dst + beta·lhs·rhs.
            unsafe {
                gemm::gemm(
                    k,
                    c,
                    nt,
                    bufs.acc.as_mut_ptr().add(xi * k * c),
                    k as isize,
                    1,
                    true,
                    bufs.y.as_ptr().add(xi * chunk * k),
                    k as isize,
                    1,
                    bufs.v.as_ptr().add(xi * chunk * c),
                    1,
                    c as isize,
                    1.0,
                    1.0,
                    false,
                    false,
                    false,
                    self.gemm_par,
                );
            }
        }
    }
}

fn weight_grad<const M: usize, const A: usize, T: Tile<M, A>>(
    x: FlexTensor,
    output_grad: FlexTensor,
    options: &ConvOptions<2>,
) -> FlexTensor {
    // `to_nhwc` below reads x and dY in any layout: no contiguous copies first.
    let xs = x.layout().shape().clone();
    let ys = output_grad.layout().shape().clone();
    let [(pt, _), (pl, _)] = options.padding;
    let (n, c, h, w) = (xs[0], xs[1], xs[2], xs[3]);
    let (k, ho, wo) = (ys[1], ys[2], ys[3]);
    let geo = Geo {
        c,
        k,
        h,
        w,
        ho,
        wo,
        pad_t: pt,
        pad_l: pl,
        th: ho.div_ceil(M),
        tw: wo.div_ceil(M),
    };
    let x_nhwc = super::conv::to_nhwc(&x);
    let dy_nhwc = super::conv::to_nhwc(&output_grad);
    let zeros = vec![0f32; c.max(k)];
    let tiles = n * geo.th * geo.tw;
    let threads = num_threads();
    let chunk = chunk_size(tiles, threads);
    let n_chunks = tiles.div_ceil(chunk);
    // One worker per thread, each summing a fixed run of chunks; with fewer chunks than
    // threads, one worker whose GEMMs are split across the threads instead.
    let (workers, gemm_par) = if n_chunks < threads {
        (1, gemm_parallelism(threads))
    } else {
        (threads, gemm::Parallelism::None)
    };
    let job = WeightGrad::<M, A, T> {
        geo,
        x_nhwc: x_nhwc.storage(),
        dy_nhwc: dy_nhwc.storage(),
        zeros: &zeros,
        chunk,
        tiles,
        gemm_par,
        variant: core::marker::PhantomData,
    };
    let level = level();
    // Worker `wi` sums chunks [wi·n/W, (wi+1)·n/W) in order: the split, and so every
    // partial sum, depends only on the problem and the thread count.
    let partial = |wi: usize| {
        let mut bufs = GradBuffers {
            v: vec![0f32; A * A * c * chunk],
            y: vec![0f32; A * A * k * chunk],
            acc: vec![0f32; A * A * k * c],
        };
        for ci in wi * n_chunks / workers..(wi + 1) * n_chunks / workers {
            run_chunk(level, &job, ci, &mut bufs);
        }
        bufs.acc
    };
    #[cfg(feature = "rayon")]
    let parts: Vec<Vec<f32>> = {
        use rayon::prelude::*;
        (0..workers).into_par_iter().map(partial).collect()
    };
    #[cfg(not(feature = "rayon"))]
    let parts: Vec<Vec<f32>> = (0..workers).map(partial).collect();
    let grad = filter_grad::<A>(&parts, k, c, &T::G);
    FlexTensor::new(
        Bytes::from_elems(grad),
        Layout::contiguous(Shape::from(vec![k, c, 3, 3])),
        DType::F32,
    )
}

/// dg = Gᵀ (Σ_w dU_w) G for every filter, with the workers' partial sums added in worker
/// order; all in f64, like [`filter_transform`]. Returns [K, C, 3, 3].
fn filter_grad<const A: usize>(
    parts: &[Vec<f32>],
    k: usize,
    c: usize,
    gm: &[[f64; 3]; A],
) -> Vec<f32> {
    let mut out = vec![0f32; k * c * 9];
    let one = |(ko, filters): (usize, &mut [f32])| {
        for (ci, dg_out) in filters.chunks_mut(9).enumerate() {
            let mut du = [[0f64; A]; A];
            for (r, row) in du.iter_mut().enumerate() {
                for (q, d) in row.iter_mut().enumerate() {
                    let at = (r * A + q) * k * c + ci * k + ko;
                    *d = parts.iter().map(|p| p[at] as f64).sum();
                }
            }
            // tmp = Gᵀ dU (3×A), then dg = tmp G (3×3).
            let mut tmp = [[0f64; A]; 3];
            for (s, row) in tmp.iter_mut().enumerate() {
                for (q, t) in row.iter_mut().enumerate() {
                    *t = (0..A).map(|r| gm[r][s] * du[r][q]).sum();
                }
            }
            for s in 0..3 {
                for j in 0..3 {
                    dg_out[s * 3 + j] = (0..A).map(|q| tmp[s][q] * gm[q][j]).sum::<f64>() as f32;
                }
            }
        }
    };
    #[cfg(feature = "rayon")]
    {
        use rayon::prelude::*;
        out.par_chunks_mut(c * 9).enumerate().for_each(one);
    }
    #[cfg(not(feature = "rayon"))]
    out.chunks_mut(c * 9).enumerate().for_each(one);
    out
}

/// Tiles per chunk: 64, and fewer when there are not 64 tiles per thread. The chunk's
/// transformed input and GEMM output ((m+2)²·(C + K)·64 floats, 2.4 MB at 128 channels with
/// F(4×4)) then stay near the L2: measured on a Xeon (2 MiB L2) at 128 channels over 64² maps,
/// b16, 2 threads: 16 tiles 250 ms, 64 tiles 96 ms, 128 tiles 102 ms, 256 tiles 400 ms; at 256
/// channels over 32², 64 tiles was also the fastest. [`crate::tuning::WinogradOptions::chunk`]
/// overrides it (for tuning).
fn chunk_size(tiles: usize, threads: usize) -> usize {
    if let Some(v) = crate::tuning::winograd_options().chunk {
        return v.max(1);
    }
    CHUNK.min(tiles.div_ceil(threads)).max(1)
}

fn gemm_parallelism(threads: usize) -> gemm::Parallelism {
    #[cfg(feature = "rayon")]
    if threads > 1 {
        return gemm::Parallelism::Rayon(threads);
    }
    let _ = threads;
    gemm::Parallelism::None
}

fn num_threads() -> usize {
    #[cfg(feature = "rayon")]
    return rayon::current_num_threads().max(1);
    #[cfg(not(feature = "rayon"))]
    1
}

/// The output buffer shared by the chunks; each writes only its own tiles' pixels.
struct OutPtr(*mut f32);
unsafe impl Send for OutPtr {}
unsafe impl Sync for OutPtr {}

impl OutPtr {
    /// # Safety
    /// `i` in bounds, and no other thread writes element `i`.
    unsafe fn write(&self, i: usize, v: f32) {
        unsafe { self.0.add(i).write(v) }
    }
}

/// U_ξ[K, C] = (G g Gᵀ)_ξ for every filter, stored column-major (output channels contiguous:
/// gemm reads its left operand that way without repacking), computed in f64 (it is computed
/// once per call and its rounding would otherwise add to the GEMM's).
fn filter_transform<const A: usize>(w: &[f32], k: usize, c: usize, gm: &[[f64; 3]; A]) -> Vec<f32> {
    let mut u = vec![0f32; A * A * k * c];
    let u_ptr = OutPtr(u.as_mut_ptr());
    // One input channel per task: its entries of U_ξ are the contiguous runs ci·K .. (ci+1)·K,
    // so no two threads write the same cache line (a task per output channel did, K floats
    // apart, and that sharing cost more than the arithmetic).
    let one = |ci: usize| {
        for ko in 0..k {
            let kc = ko * c + ci;
            let g = &w[kc * 9..kc * 9 + 9];
            let mut tmp = [[0f64; 3]; A];
            for (r, row) in tmp.iter_mut().enumerate() {
                for (j, t) in row.iter_mut().enumerate() {
                    *t = (0..3).map(|s| gm[r][s] * g[s * 3 + j] as f64).sum();
                }
            }
            // (r, q) is the position in the transformed filter U = G g Gᵀ.
            #[allow(clippy::needless_range_loop)]
            for r in 0..A {
                for q in 0..A {
                    let v: f64 = (0..3).map(|s| tmp[r][s] * gm[q][s]).sum();
                    // Safety: channel ci's entries are written by this call alone, in bounds.
                    unsafe { u_ptr.write((r * A + q) * k * c + ci * k + ko, v as f32) };
                }
            }
        }
    };
    #[cfg(feature = "rayon")]
    {
        use rayon::prelude::*;
        (0..c).into_par_iter().for_each(one);
    }
    #[cfg(not(feature = "rayon"))]
    (0..c).for_each(one);
    u
}

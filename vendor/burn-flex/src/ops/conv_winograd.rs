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
//! Tiles are processed in chunks whose transformed input (V, (m+2)²·C·chunk floats) stays in
//! L2; chunks run in parallel with rayon, each with single-threaded GEMMs, and each output
//! element is written by exactly one chunk, so the result depends only on the chunk size,
//! which depends on the problem and the thread count.
//!
//! Error: the transforms of F(4×4, 3×3) have entries up to 8 (Aᵀ) and 5 (Bᵀ), so rounding
//! errors are amplified more than with F(2×2, 3×3) (entries ≤ 1); tests/conv_winograd.rs bounds
//! both against a direct convolution in f64.

use alloc::vec;
use alloc::vec::Vec;
use burn_backend::ops::ConvOptions;
use burn_backend::DType;
use burn_std::{Bytes, Shape};

use crate::{FlexTensor, Layout};

/// Tiles transformed together (SIMD lanes of the transforms).
const LANES: usize = 16;
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

/// The variant used when none is forced (`BURN_FLEX_WINOGRAD=off|f2|f4` overrides it, for
/// benchmarks and tests).
fn chosen_variant() -> Option<Variant> {
    #[cfg(feature = "std")]
    {
        extern crate std;
        match std::env::var("BURN_FLEX_WINOGRAD").as_deref() {
            Ok("off") => return None,
            Ok("f2") => return Some(Variant::F2),
            Ok("f4") => return Some(Variant::F4),
            _ => {}
        }
    }
    Some(Variant::F4)
}

/// Whether a conv2d with these shapes runs through Winograd (f32 only).
pub fn applies(x: &FlexTensor, weight: &FlexTensor, options: &ConvOptions<2>) -> Option<Variant> {
    let ws = weight.layout().shape();
    let xs = x.layout().shape();
    if x.dtype() != DType::F32
        || weight.dtype() != DType::F32
        || ws[2] != 3
        || ws[3] != 3
        || options.stride != [1, 1]
        || options.dilation != [1, 1]
        || options.groups != 1
        || ws[0] < MIN_CHANNELS
        || ws[1] < MIN_CHANNELS
        || xs[1] != ws[1]
    {
        return None;
    }
    let [(pt, pb), (pl, pr)] = options.padding;
    if xs[2] + pt + pb < 3 || xs[3] + pl + pr < 3 {
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
        Variant::F2 => run::<2, 4>(x, weight, bias, options, &F2_BT, &F2_G, &F2_AT),
        Variant::F4 => run::<4, 6>(x, weight, bias, options, &F4_BT, &F4_G, &F4_AT),
    }
}

// F(2×2, 3×3), interpolation points 0, ±1, ∞ (Lavin & Gray, section 4.1).
const F2_BT: [[f32; 4]; 4] = [
    [1.0, 0.0, -1.0, 0.0],
    [0.0, 1.0, 1.0, 0.0],
    [0.0, -1.0, 1.0, 0.0],
    [0.0, 1.0, 0.0, -1.0],
];
const F2_G: [[f64; 3]; 4] = [
    [1.0, 0.0, 0.0],
    [0.5, 0.5, 0.5],
    [0.5, -0.5, 0.5],
    [0.0, 0.0, 1.0],
];
const F2_AT: [[f32; 4]; 2] = [[1.0, 1.0, 1.0, 0.0], [0.0, 1.0, -1.0, -1.0]];

// F(4×4, 3×3), points 0, ±1, ±2, ∞ (Lavin & Gray, section 4.2).
const F4_BT: [[f32; 6]; 6] = [
    [4.0, 0.0, -5.0, 0.0, 1.0, 0.0],
    [0.0, -4.0, -4.0, 1.0, 1.0, 0.0],
    [0.0, 4.0, -4.0, -1.0, 1.0, 0.0],
    [0.0, -2.0, -1.0, 2.0, 1.0, 0.0],
    [0.0, 2.0, -1.0, -2.0, 1.0, 0.0],
    [0.0, 4.0, 0.0, -5.0, 0.0, 1.0],
];
const F4_G: [[f64; 3]; 6] = [
    [1.0 / 4.0, 0.0, 0.0],
    [-1.0 / 6.0, -1.0 / 6.0, -1.0 / 6.0],
    [-1.0 / 6.0, 1.0 / 6.0, -1.0 / 6.0],
    [1.0 / 24.0, 1.0 / 12.0, 1.0 / 6.0],
    [1.0 / 24.0, -1.0 / 12.0, 1.0 / 6.0],
    [0.0, 0.0, 1.0],
];
const F4_AT: [[f32; 6]; 4] = [
    [1.0, 1.0, 1.0, 1.0, 1.0, 0.0],
    [0.0, 1.0, -1.0, 2.0, -2.0, 0.0],
    [0.0, 1.0, 1.0, 4.0, 4.0, 0.0],
    [0.0, 1.0, -1.0, 8.0, -8.0, 1.0],
];

/// out = mat · inp · matᵀ (mat R×S) for LANES tiles at once, the lane index innermost so the
/// products vectorise; zero coefficients (about half of each matrix) are skipped.
#[inline(always)]
fn sandwich<const R: usize, const S: usize>(
    mat: &[[f32; S]; R],
    inp: &[[[f32; LANES]; S]; S],
) -> [[[f32; LANES]; R]; R] {
    let mut tmp = [[[0f32; LANES]; S]; R];
    for r in 0..R {
        for s in 0..S {
            let c = mat[r][s];
            if c == 0.0 {
                continue;
            }
            for j in 0..S {
                for l in 0..LANES {
                    tmp[r][j][l] += c * inp[s][j][l];
                }
            }
        }
    }
    let mut out = [[[0f32; LANES]; R]; R];
    for r in 0..R {
        for q in 0..R {
            for s in 0..S {
                let c = mat[q][s];
                if c == 0.0 {
                    continue;
                }
                for l in 0..LANES {
                    out[r][q][l] += c * tmp[r][s][l];
                }
            }
        }
    }
    out
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

#[allow(clippy::too_many_arguments)]
fn run<const M: usize, const A: usize>(
    x: FlexTensor,
    weight: FlexTensor,
    bias: Option<FlexTensor>,
    options: &ConvOptions<2>,
    bt: &[[f32; A]; A],
    gm: &[[f64; 3]; A],
    at: &[[f32; A]; M],
) -> FlexTensor {
    let x = x.to_contiguous();
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
    let x_data: &[f32] = x.storage();
    let w_data: &[f32] = weight.storage();
    let bias = bias.map(|b| b.to_contiguous());
    let bias_data: Option<&[f32]> = bias.as_ref().map(|b| b.storage());

    let u = filter_transform::<A>(w_data, k, c, gm);

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

    let mut out = vec![0f32; n * k * ho * wo];
    let out_ptr = OutPtr(out.as_mut_ptr());
    let work = |ci: usize, bufs: &mut (Vec<f32>, Vec<f32>)| {
        let t0 = ci * chunk;
        let nt = chunk.min(tiles - t0);
        let (v, mbuf) = bufs;
        input_transform::<A>(v, x_data, &geo, t0, nt, chunk, M, bt);
        for xi in 0..A * A {
            // M_ξ[K, nt] = U_ξ[K, C] · V_ξ[C, nt]; gemm(m, n, k, dst, dst_cs, dst_rs,
            // read_dst, lhs, lhs_cs, lhs_rs, rhs, rhs_cs, rhs_rs, alpha, beta, ...).
            unsafe {
                gemm::gemm(
                    k,
                    nt,
                    c,
                    mbuf[xi * k * chunk..].as_mut_ptr(),
                    1,
                    chunk as isize,
                    false,
                    u[xi * k * c..].as_ptr(),
                    1,
                    c as isize,
                    v[xi * c * chunk..].as_ptr(),
                    1,
                    chunk as isize,
                    0.0,
                    1.0,
                    false,
                    false,
                    false,
                    gemm_par,
                );
            }
        }
        output_transform::<M, A>(mbuf, &out_ptr, bias_data, &geo, t0, nt, chunk, at);
    };
    let init = || (vec![0f32; A * A * c * chunk], vec![0f32; A * A * k * chunk]);
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
    let shape = Shape::from(vec![n, k, ho, wo]);
    FlexTensor::new(
        Bytes::from_elems(out),
        Layout::contiguous(shape),
        DType::F32,
    )
}

/// Tiles per chunk: 64, the row count of gemm's AVX-512 micro-kernel (which runs over the
/// tiles), and small enough that the chunk's transformed input and GEMM output
/// ((m+2)²·(C + K)·64 floats, 2.4 MB at 128 channels with F(4×4)) stay near the L2: measured on
/// a Xeon (2 MiB L2) at 128 channels over 64² maps, b16, 2 threads: 16 tiles 250 ms, 64 tiles
/// 96 ms, 128 tiles 102 ms, 256 tiles 400 ms; at 256 channels over 32², 64 tiles was also the
/// fastest. Fewer when there are not 64 tiles per thread. `BURN_FLEX_WINOGRAD_CHUNK` overrides
/// it (for tuning).
fn chunk_size(tiles: usize, threads: usize) -> usize {
    #[cfg(feature = "std")]
    {
        extern crate std;
        if let Some(v) = std::env::var("BURN_FLEX_WINOGRAD_CHUNK")
            .ok()
            .and_then(|v| v.parse::<usize>().ok())
        {
            return v.div_ceil(LANES).max(1) * LANES;
        }
    }
    let by_threads = tiles.div_ceil(threads).div_ceil(LANES) * LANES;
    CHUNK.min(by_threads).max(LANES)
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

/// U_ξ[K, C] = (G g Gᵀ)_ξ for every filter, computed in f64 (it is computed once per call and
/// its rounding would otherwise add to the GEMM's).
fn filter_transform<const A: usize>(w: &[f32], k: usize, c: usize, gm: &[[f64; 3]; A]) -> Vec<f32> {
    let mut u = vec![0f32; A * A * k * c];
    let u_ptr = OutPtr(u.as_mut_ptr());
    let one = |ko: usize| {
        for kc in ko * c..(ko + 1) * c {
            let g = &w[kc * 9..kc * 9 + 9];
            let mut tmp = [[0f64; 3]; A];
            for (r, row) in tmp.iter_mut().enumerate() {
                for (j, t) in row.iter_mut().enumerate() {
                    *t = (0..3).map(|s| gm[r][s] * g[s * 3 + j] as f64).sum();
                }
            }
            for r in 0..A {
                for q in 0..A {
                    let v: f64 = (0..3).map(|s| tmp[r][s] * gm[q][s]).sum();
                    // Safety: filter ko's entries are written by this call alone, in bounds.
                    unsafe { u_ptr.write((r * A + q) * k * c + kc, v as f32) };
                }
            }
        }
    };
    #[cfg(feature = "rayon")]
    {
        use rayon::prelude::*;
        (0..k).into_par_iter().for_each(one);
    }
    #[cfg(not(feature = "rayon"))]
    (0..k).for_each(one);
    u
}

/// V_ξ[c, t] = (Bᵀ d B)_ξ for tiles `t0 .. t0 + nt` (stored at columns 0 .. nt, row stride
/// `chunk`). Input pixels outside the image (padding, or beyond the last partial tile) are 0.
#[allow(clippy::too_many_arguments)]
fn input_transform<const A: usize>(
    v: &mut [f32],
    x: &[f32],
    g: &Geo,
    t0: usize,
    nt: usize,
    chunk: usize,
    m: usize,
    bt: &[[f32; A]; A],
) {
    let plane = g.h * g.w;
    for l0 in (0..nt).step_by(LANES) {
        let lanes = LANES.min(nt - l0);
        let pos: [(usize, usize, usize); LANES] =
            core::array::from_fn(|l| g.tile(t0 + l0 + l.min(lanes - 1)));
        for ch in 0..g.c {
            let mut d = [[[0f32; LANES]; A]; A];
            for (l, &(b, ty, tx)) in pos.iter().enumerate().take(lanes) {
                let base = &x[(b * g.c + ch) * plane..][..plane];
                for (i, drow) in d.iter_mut().enumerate() {
                    let ih = (ty * m + i) as isize - g.pad_t as isize;
                    if ih < 0 || ih >= g.h as isize {
                        continue;
                    }
                    let row = &base[ih as usize * g.w..][..g.w];
                    let iw0 = (tx * m) as isize - g.pad_l as isize;
                    for (j, dv) in drow.iter_mut().enumerate() {
                        let iw = iw0 + j as isize;
                        if iw >= 0 && iw < g.w as isize {
                            dv[l] = row[iw as usize];
                        }
                    }
                }
            }
            let t = sandwich::<A, A>(bt, &d);
            for r in 0..A {
                for q in 0..A {
                    let dst = &mut v[((r * A + q) * g.c + ch) * chunk + l0..][..lanes];
                    dst.copy_from_slice(&t[r][q][..lanes]);
                }
            }
        }
    }
}

/// y = Aᵀ M A (+ bias) for tiles `t0 .. t0 + nt`, written into the output, clipped at the
/// right and bottom edges.
#[allow(clippy::too_many_arguments)]
fn output_transform<const M: usize, const A: usize>(
    mbuf: &[f32],
    out: &OutPtr,
    bias: Option<&[f32]>,
    g: &Geo,
    t0: usize,
    nt: usize,
    chunk: usize,
    at: &[[f32; A]; M],
) {
    let plane = g.ho * g.wo;
    for l0 in (0..nt).step_by(LANES) {
        let lanes = LANES.min(nt - l0);
        for ko in 0..g.k {
            let mut mm = [[[0f32; LANES]; A]; A];
            for r in 0..A {
                for q in 0..A {
                    mm[r][q][..lanes]
                        .copy_from_slice(&mbuf[((r * A + q) * g.k + ko) * chunk + l0..][..lanes]);
                }
            }
            let y = sandwich::<M, A>(at, &mm);
            let b = bias.map_or(0.0, |b| b[ko]);
            for l in 0..lanes {
                let (bi, ty, tx) = g.tile(t0 + l0 + l);
                let base = (bi * g.k + ko) * plane;
                let rows = M.min(g.ho - ty * M);
                let cols = M.min(g.wo - tx * M);
                for (i, yrow) in y.iter().enumerate().take(rows) {
                    let o = base + (ty * M + i) * g.wo + tx * M;
                    for (j, yv) in yrow.iter().enumerate().take(cols) {
                        // Safety: tile (bi, ty, tx) belongs to this chunk alone and the
                        // offset is inside the [N, K, Ho, Wo] output.
                        unsafe { out.write(o + j, yv[l] + b) };
                    }
                }
            }
        }
    }
}

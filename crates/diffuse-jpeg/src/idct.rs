//! Dequantisation and the accurate integer inverse DCT of libjpeg-turbo (`jpeg_idct_islow` in
//! `jidctint.c`, the Loeffler–Ligtenberg–Moschytz algorithm with 13-bit constants), which is
//! what Pillow's decoder uses by default (`JDCT_ISLOW`).

pub(super) const CONST_BITS: u32 = 13;
/// Extra precision kept between the column and the row pass.
pub(super) const PASS1_BITS: u32 = 2;

// FIX(x) = round(x · 2^13), the values listed in jidctint.c (and jfdctint.c, for the encoder).
pub(super) const FIX_0_298631336: i32 = 2446;
pub(super) const FIX_0_390180644: i32 = 3196;
pub(super) const FIX_0_541196100: i32 = 4433;
pub(super) const FIX_0_765366865: i32 = 6270;
pub(super) const FIX_0_899976223: i32 = 7373;
pub(super) const FIX_1_175875602: i32 = 9633;
pub(super) const FIX_1_501321110: i32 = 12299;
pub(super) const FIX_1_847759065: i32 = 15137;
pub(super) const FIX_1_961570560: i32 = 16069;
pub(super) const FIX_2_053119869: i32 = 16819;
pub(super) const FIX_2_562915447: i32 = 20995;
pub(super) const FIX_3_072711026: i32 = 25172;

/// The final range limit. libjpeg-turbo's C code indexes a wrap-around table with the low 10
/// bits, its x86/ARM SIMD code (used by Pillow's wheels) saturates; both give
/// `clamp(x + 128, 0, 255)` for |x| < 512, which covers every value valid data produces, and
/// saturating is what the SIMD path does beyond.
#[inline(always)]
fn range_limit(x: i32) -> u8 {
    (x + 128).clamp(0, 255) as u8
}

/// Dequantises `coefs` (natural order) with `q` and writes the 8×8 samples to `out`
/// (row r at `out[r * stride..]`).
///
/// The arithmetic is `jpeg_idct_islow`'s: columns first, results kept with PASS1_BITS extra
/// bits; then rows, descaled by CONST_BITS + PASS1_BITS + 3. The all-zero-AC shortcuts of the
/// C code are reproduced as written even though they are exact; they are the speed path.
/// Sums use wrapping arithmetic so that absurd coefficients from a corrupt file cannot panic.
pub fn idct_islow(coefs: &[i16], q: &[u16; 64], out: &mut [u8], stride: usize) {
    let coefs: &[i16; 64] = coefs[..64].try_into().expect("64 coefficients");
    let mut ws = [0i32; 64];
    for col in 0..8 {
        let mut s = [0i32; 8];
        let mut ac = 0i16;
        for r in 0..8 {
            let v = coefs[r * 8 + col];
            if r > 0 {
                ac |= v;
            }
            s[r] = (v as i32).wrapping_mul(q[r * 8 + col] as i32);
        }
        if ac == 0 {
            let dc = s[0].wrapping_shl(PASS1_BITS);
            for r in 0..8 {
                ws[r * 8 + col] = dc;
            }
            continue;
        }
        let o = idct_1d(s);
        for r in 0..8 {
            ws[r * 8 + col] = descale_w(o[r], CONST_BITS - PASS1_BITS);
        }
    }
    for (row, w) in ws.chunks_exact(8).enumerate() {
        let dst = &mut out[row * stride..row * stride + 8];
        let w: [i32; 8] = w.try_into().expect("8 values");
        if w[1..].iter().fold(0, |acc, &v| acc | v) == 0 {
            dst.fill(range_limit(descale_w(w[0], PASS1_BITS + 3)));
            continue;
        }
        let o = idct_1d(w);
        for (d, v) in dst.iter_mut().zip(o) {
            *d = range_limit(descale_w(v, CONST_BITS + PASS1_BITS + 3));
        }
    }
}

/// libjpeg's `DESCALE`: right shift by `n` with rounding (add half, arithmetic shift).
/// Wrapping so that absurd coefficients from a corrupt file cannot panic in debug builds.
#[inline(always)]
fn descale_w(x: i32, n: u32) -> i32 {
    x.wrapping_add(1 << (n - 1)) >> n
}

/// One 8-point 1-D inverse DCT, the butterfly shared by both passes of `jpeg_idct_islow`:
/// even part (rotation by sqrt(2)·c6 on inputs 2 and 6), odd part (inputs 7, 5, 3, 1, figure 8
/// of the LL&M paper). Outputs are scaled by 2^CONST_BITS, not yet descaled. Wrapping
/// arithmetic gives the C results whenever nothing overflows, which holds for every
/// coefficient an 8-bit encoder can produce.
#[inline(always)]
fn idct_1d(s: [i32; 8]) -> [i32; 8] {
    use std::num::Wrapping as W;
    let s = s.map(W);
    let k = |x: i32| W(x);
    let z1 = (s[2] + s[6]) * k(FIX_0_541196100);
    let tmp2 = z1 + s[6] * k(-FIX_1_847759065);
    let tmp3 = z1 + s[2] * k(FIX_0_765366865);
    let tmp0 = (s[0] + s[4]) << CONST_BITS as usize;
    let tmp1 = (s[0] - s[4]) << CONST_BITS as usize;
    let tmp10 = tmp0 + tmp3;
    let tmp13 = tmp0 - tmp3;
    let tmp11 = tmp1 + tmp2;
    let tmp12 = tmp1 - tmp2;
    let (t0, t1, t2, t3) = (s[7], s[5], s[3], s[1]);
    let z1 = t0 + t3;
    let z2 = t1 + t2;
    let z3 = t0 + t2;
    let z4 = t1 + t3;
    let z5 = (z3 + z4) * k(FIX_1_175875602);
    let t0 = t0 * k(FIX_0_298631336);
    let t1 = t1 * k(FIX_2_053119869);
    let t2 = t2 * k(FIX_3_072711026);
    let t3 = t3 * k(FIX_1_501321110);
    let z1 = z1 * k(-FIX_0_899976223);
    let z2 = z2 * k(-FIX_2_562915447);
    let z3 = z3 * k(-FIX_1_961570560) + z5;
    let z4 = z4 * k(-FIX_0_390180644) + z5;
    let t0 = t0 + z1 + z3;
    let t1 = t1 + z2 + z4;
    let t2 = t2 + z2 + z3;
    let t3 = t3 + z1 + z4;
    [
        tmp10 + t3,
        tmp11 + t2,
        tmp12 + t1,
        tmp13 + t0,
        tmp13 - t0,
        tmp12 - t1,
        tmp11 - t2,
        tmp10 - t3,
    ]
    .map(|v| v.0)
}

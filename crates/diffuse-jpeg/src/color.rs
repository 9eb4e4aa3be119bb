//! Colour conversion to interleaved RGB, as libjpeg-turbo's `jdcolor.c` produces it followed by
//! Pillow's conversion to "RGB" where Pillow asks libjpeg-turbo for something else (grayscale
//! → "L", four components → "CMYK").
use super::upsample::Plane;

/// Fixed-point precision of the YCbCr tables (`SCALEBITS` in jdcolor.c).
const SCALEBITS: u32 = 16;
const ONE_HALF: i32 = 1 << (SCALEBITS - 1);

// FIX(x) = round(x · 2^16) of the T.871 coefficients.
const FIX_1_40200: i32 = 91881;
const FIX_1_77200: i32 = 116130;
const FIX_0_71414: i32 = 46802;
const FIX_0_34414: i32 = 22554;

/// R, G, B of one YCbCr sample before range limiting: `ycc_rgb_convert` with the entries of
/// `build_ycc_rgb_table` computed inline (each table entry is exactly its formula; written out,
/// the loop vectorises). Cb and Cr are centred on 128 (T.871).
#[inline(always)]
fn ycc(y: u8, cb: u8, cr: u8) -> [i32; 3] {
    let (y, cb, cr) = (y as i32, cb as i32 - 128, cr as i32 - 128);
    [
        y + ((FIX_1_40200 * cr + ONE_HALF) >> SCALEBITS),
        // The table for Cb→G carries the rounding half, the one for Cr→G does not.
        y + ((-FIX_0_34414 * cb + ONE_HALF - FIX_0_71414 * cr) >> SCALEBITS),
        y + ((FIX_1_77200 * cb + ONE_HALF) >> SCALEBITS),
    ]
}

#[inline(always)]
fn clamp8(v: i32) -> u8 {
    v.clamp(0, 255) as u8
}

/// YCbCr → RGB (JFIF files, and three-component files without markers whose ids are not
/// 'R','G','B').
pub fn ycc_to_rgb(p: &[Plane], width: usize, height: usize, out: &mut [u8]) {
    for (yy, o) in out.chunks_exact_mut(width * 3).enumerate().take(height) {
        let (a, b, c) = (
            &p[0].row(yy)[..width],
            &p[1].row(yy)[..width],
            &p[2].row(yy)[..width],
        );
        for (((px, &y), &cb), &cr) in o.chunks_exact_mut(3).zip(a).zip(b).zip(c) {
            let [r, g, bl] = ycc(y, cb, cr);
            px[0] = clamp8(r);
            px[1] = clamp8(g);
            px[2] = clamp8(bl);
        }
    }
}

/// Components already in RGB order (Adobe transform 0, or ids 'R','G','B'): copied.
pub fn rgb_to_rgb(p: &[Plane], width: usize, height: usize, out: &mut [u8]) {
    for (yy, o) in out.chunks_exact_mut(width * 3).enumerate().take(height) {
        for c in 0..3 {
            let a = p[c].row(yy);
            for x in 0..width {
                o[3 * x + c] = a[x];
            }
        }
    }
}

/// Grayscale: Pillow decodes to "L" and `convert("RGB")` copies the value to R, G and B.
pub fn gray_to_rgb(p: &Plane, width: usize, height: usize, out: &mut [u8]) {
    for (yy, o) in out.chunks_exact_mut(width * 3).enumerate().take(height) {
        let a = p.row(yy);
        for x in 0..width {
            o[3 * x..3 * x + 3].fill(a[x]);
        }
    }
}

/// Pillow's `MULDIV255`: a·b/255 rounded, without a division.
#[inline(always)]
fn muldiv255(a: i32, b: i32) -> i32 {
    let t = a * b + 128;
    ((t >> 8) + t) >> 8
}

/// Four components. libjpeg-turbo outputs CMYK (YCCK is first turned into CMYK by
/// `ycck_cmyk_convert`: C, M, Y = 255 − R, G, B, range-limited, K unchanged); Pillow reads
/// that as "CMYK;I" (every byte inverted, the Adobe convention) and `convert("RGB")` applies
/// its `cmyk2rgb`: R = nk − nk·C/255 with nk = 255 − K.
pub fn cmyk_to_rgb(p: &[Plane], ycck: bool, width: usize, height: usize, out: &mut [u8]) {
    for (yy, o) in out.chunks_exact_mut(width * 3).enumerate().take(height) {
        let rows = [p[0].row(yy), p[1].row(yy), p[2].row(yy), p[3].row(yy)];
        for x in 0..width {
            let cmy: [i32; 3] = if ycck {
                ycc(rows[0][x], rows[1][x], rows[2][x]).map(|v| clamp8(255 - v) as i32)
            } else {
                [rows[0][x] as i32, rows[1][x] as i32, rows[2][x] as i32]
            };
            // Pillow's inverted values: C' = 255 − C, K' = 255 − K, so nk = 255 − K' = K.
            let nk = rows[3][x] as i32;
            for c in 0..3 {
                o[3 * x + c] = clamp8(nk - muldiv255(255 - cmy[c], nk));
            }
        }
    }
}

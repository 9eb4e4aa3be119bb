//! A baseline JPEG encoder whose files are byte for byte what Pillow writes for
//! `Image.save(path)` on an RGB image with its defaults: libjpeg-turbo's `jpeg_set_defaults`
//! (quality 75, YCbCr with 4:2:0 chroma subsampling, accurate integer DCT `JDCT_ISLOW`, the
//! example Huffman tables of ITU T.81 Annex K, no restart markers, a JFIF 1.01 APP0 without
//! density) plus the image's JPEG comment, which Pillow carries over from the file it opened.
//!
//! Every stage follows libjpeg-turbo's C code, whose SIMD versions give the same numbers:
//! `jccolor.c` (RGB → YCbCr in 16-bit fixed point), `jcsample.c` (2×2 box downsampling with an
//! alternating rounding bias), `jcprepct.c`/`jccoefct.c` (edge replication and the dummy blocks
//! that pad the last MCUs), `jfdctint.c` (LL&M integer forward DCT), `jcdctmgr.c`
//! (quantisation by reciprocal multiplication), `jchuff.c` (sequential Huffman coding) and
//! `jcmarker.c` (marker segments).
use super::idct::{
    CONST_BITS, FIX_0_298631336, FIX_0_390180644, FIX_0_541196100, FIX_0_765366865,
    FIX_0_899976223, FIX_1_175875602, FIX_1_501321110, FIX_1_847759065, FIX_1_961570560,
    FIX_2_053119869, FIX_2_562915447, FIX_3_072711026, PASS1_BITS,
};
use super::markers::ZIGZAG;
use super::std_tables;
use super::JpegError;

/// What [`encode_rgb`] writes besides the pixels.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncodeOptions {
    /// libjpeg quality 1–100 (`jpeg_set_quality(q, force_baseline = TRUE)`); Pillow's default
    /// is 75.
    pub quality: u8,
    /// Contents of a COM marker written after the JFIF header, as Pillow does with the
    /// `comment` of the image it saves (empty: no marker).
    pub comment: Vec<u8>,
}

impl Default for EncodeOptions {
    fn default() -> Self {
        Self {
            quality: 75,
            comment: Vec::new(),
        }
    }
}

/// libjpeg's `std_luminance_quant_tbl` / `std_chrominance_quant_tbl` (T.81 Tables K.1, K.2),
/// natural order.
const STD_LUMA_QUANT: [u16; 64] = [
    16, 11, 10, 16, 24, 40, 51, 61, 12, 12, 14, 19, 26, 58, 60, 55, 14, 13, 16, 24, 40, 57, 69, 56,
    14, 17, 22, 29, 51, 87, 80, 62, 18, 22, 37, 56, 68, 109, 103, 77, 24, 35, 55, 64, 81, 104, 113,
    92, 49, 64, 78, 87, 103, 121, 120, 101, 72, 92, 95, 98, 112, 100, 103, 99,
];
const STD_CHROMA_QUANT: [u16; 64] = [
    17, 18, 24, 47, 99, 99, 99, 99, 18, 21, 26, 66, 99, 99, 99, 99, 24, 26, 56, 99, 99, 99, 99, 99,
    47, 66, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99,
    99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99,
];

/// `jpeg_quality_scaling` + `jpeg_add_quant_table(.., force_baseline = TRUE)`: the table for
/// quality `q`, natural order, entries clamped to 1..=255.
fn quant_table(basic: &[u16; 64], quality: u8) -> [u16; 64] {
    let q = quality.clamp(1, 100) as i64;
    let scale = if q < 50 { 5000 / q } else { 200 - 2 * q };
    basic.map(|b| ((b as i64 * scale + 50) / 100).clamp(1, 255) as u16)
}

/// One entry of libjpeg-turbo's divisor table for the islow DCT (`compute_reciprocal` with the
/// 16-bit `DCTELEM` of SIMD builds, which is what Pillow's wheels ship): the DCT output is
/// scaled by 8, so the divisor is 8·q; x/d is computed as ((x + corr)·recip) >> (16 + shift).
#[derive(Clone, Copy)]
struct Divisor {
    recip: u32,
    corr: u32,
    shift: u32,
}

fn compute_reciprocal(divisor: u32) -> Divisor {
    if divisor <= 1 {
        return Divisor {
            recip: 1,
            corr: 0,
            shift: 0,
        };
    }
    // flss(divisor) − 1: index of the highest set bit.
    let b = 31 - divisor.leading_zeros();
    let mut r = 16 + b;
    let mut fq = (1u64 << r) / divisor as u64;
    let fr = (1u64 << r) % divisor as u64;
    let mut c = divisor / 2;
    if fr == 0 {
        // A power of two: fq would need 17 bits.
        fq >>= 1;
        r -= 1;
    } else if fr <= (divisor / 2) as u64 {
        c += 1;
    } else {
        fq += 1;
    }
    Divisor {
        recip: fq as u32,
        corr: c,
        shift: r,
    }
}

/// `quantize()` of jcdctmgr.c: round half up in magnitude, sign restored.
#[inline]
fn quantize(x: i32, d: Divisor) -> i16 {
    let q = |a: u32| (((a + d.corr) as u64 * d.recip as u64) >> d.shift) as i32;
    if x < 0 {
        -q((-x) as u32) as i16
    } else {
        q(x as u32) as i16
    }
}

#[inline(always)]
fn descale(x: i32, n: u32) -> i32 {
    (x + (1 << (n - 1))) >> n
}

/// One 1-D pass of `jpeg_fdct_islow` (Loeffler–Ligtenberg–Moschytz) over 8 values `d[k·step]`.
/// Pass 1 (rows) scales up by 2^PASS1_BITS; pass 2 (columns) removes it and leaves the
/// overall factor 8 that the quantiser divides out. 32-bit sums, as libjpeg's `JLONG` may be:
/// for 8-bit samples the largest term is about 2^30.
#[inline(always)]
fn fdct_1d(d: &mut [i32; 64], base: usize, step: usize, pass1: bool) {
    let g = |k: usize| d[base + k * step];
    let tmp0 = g(0) + g(7);
    let tmp7 = g(0) - g(7);
    let tmp1 = g(1) + g(6);
    let tmp6 = g(1) - g(6);
    let tmp2 = g(2) + g(5);
    let tmp5 = g(2) - g(5);
    let tmp3 = g(3) + g(4);
    let tmp4 = g(3) - g(4);
    // Even part.
    let tmp10 = tmp0 + tmp3;
    let tmp13 = tmp0 - tmp3;
    let tmp11 = tmp1 + tmp2;
    let tmp12 = tmp1 - tmp2;
    // Descaling of the rotated outputs.
    let n = if pass1 {
        CONST_BITS - PASS1_BITS
    } else {
        CONST_BITS + PASS1_BITS
    };
    let mut out = [0i32; 8];
    if pass1 {
        out[0] = (tmp10 + tmp11) << PASS1_BITS;
        out[4] = (tmp10 - tmp11) << PASS1_BITS;
    } else {
        out[0] = descale(tmp10 + tmp11, PASS1_BITS);
        out[4] = descale(tmp10 - tmp11, PASS1_BITS);
    }
    let z1 = (tmp12 + tmp13) * FIX_0_541196100;
    out[2] = descale(z1 + tmp13 * FIX_0_765366865, n);
    out[6] = descale(z1 - tmp12 * FIX_1_847759065, n);
    // Odd part.
    let z1 = tmp4 + tmp7;
    let z2 = tmp5 + tmp6;
    let z3 = tmp4 + tmp6;
    let z4 = tmp5 + tmp7;
    let z5 = (z3 + z4) * FIX_1_175875602;
    let tmp4 = tmp4 * FIX_0_298631336;
    let tmp5 = tmp5 * FIX_2_053119869;
    let tmp6 = tmp6 * FIX_3_072711026;
    let tmp7 = tmp7 * FIX_1_501321110;
    let z1 = -z1 * FIX_0_899976223;
    let z2 = -z2 * FIX_2_562915447;
    let z3 = -z3 * FIX_1_961570560 + z5;
    let z4 = -z4 * FIX_0_390180644 + z5;
    out[7] = descale(tmp4 + z1 + z3, n);
    out[5] = descale(tmp5 + z2 + z4, n);
    out[3] = descale(tmp6 + z2 + z3, n);
    out[1] = descale(tmp7 + z1 + z4, n);
    for (k, v) in out.into_iter().enumerate() {
        // libjpeg-turbo stores each pass in 16-bit DCTELEMs; 8-bit input never overflows them.
        d[base + k * step] = v as i16 as i32;
    }
}

/// `forward_DCT` of jcdctmgr.c for one 8×8 block of samples (`stride` apart): level shift,
/// islow DCT, quantisation. Output in natural order.
fn fdct_quantize(samples: &[u8], stride: usize, div: &[Divisor; 64]) -> [i16; 64] {
    let mut d = [0i32; 64];
    for y in 0..8 {
        for x in 0..8 {
            d[y * 8 + x] = samples[y * stride + x] as i32 - 128;
        }
    }
    for row in 0..8 {
        fdct_1d(&mut d, row * 8, 1, true);
    }
    for col in 0..8 {
        fdct_1d(&mut d, col, 8, false);
    }
    let mut out = [0i16; 64];
    for i in 0..64 {
        out[i] = quantize(d[i], div[i]);
    }
    out
}

/// `rgb_ycc_convert` of jccolor.c: FIX(x) = round(x·2^16); Cb and Cr use a rounding constant
/// of ½ − ε so that 255 cannot round up to 256.
#[inline]
fn rgb_to_ycc(r: i32, g: i32, b: i32) -> [u8; 3] {
    const HALF: i32 = 1 << 15;
    const CBCR_OFFSET: i32 = 128 << 16;
    let y = (19595 * r + 38470 * g + 7471 * b + HALF) >> 16;
    let cb = (-11059 * r - 21709 * g + 32768 * b + CBCR_OFFSET + HALF - 1) >> 16;
    let cr = (32768 * r - 27439 * g - 5329 * b + CBCR_OFFSET + HALF - 1) >> 16;
    [y as u8, cb as u8, cr as u8]
}

/// A component's samples, padded as libjpeg-turbo pads them (edge replication) to whole
/// blocks: `blocks_w·8` columns × `blocks_h·8` rows.
struct Plane {
    data: Vec<u8>,
    stride: usize,
}

/// The Y, Cb, Cr planes. Y: full size, columns beyond the image repeat the last column and
/// rows the last row. Cb, Cr: `h2v2_downsample`, each sample the mean of a 2×2 cell plus a
/// bias alternating 1, 2, 1, 2 along the row, over the image widened to the chroma blocks by
/// repeating the last column and heightened to even rows by repeating the last row; chroma
/// rows below the image's ⌈H/2⌉ repeat the last computed row (`jcprepct.c` pads after
/// downsampling).
fn planes(
    width: usize,
    height: usize,
    rgb: &[u8],
    luma_blocks: (usize, usize),
    chroma_blocks: (usize, usize),
) -> [Plane; 3] {
    let mut ycc = vec![[0u8; 3]; width * height];
    for (i, p) in rgb.chunks_exact(3).enumerate() {
        ycc[i] = rgb_to_ycc(p[0] as i32, p[1] as i32, p[2] as i32);
    }
    let at = |x: usize, y: usize| ycc[y.min(height - 1) * width + x.min(width - 1)];

    let (lw, lh) = (luma_blocks.0 * 8, luma_blocks.1 * 8);
    let mut luma = vec![0u8; lw * lh];
    for y in 0..lh {
        for x in 0..lw {
            luma[y * lw + x] = at(x, y)[0];
        }
    }

    let (cw, ch) = (chroma_blocks.0 * 8, chroma_blocks.1 * 8);
    let real_rows = height.div_ceil(2);
    let mut cb = vec![0u8; cw * ch];
    let mut cr = vec![0u8; cw * ch];
    for y in 0..ch {
        let sy = y.min(real_rows - 1);
        for x in 0..cw {
            let bias = if x % 2 == 0 { 1 } else { 2 };
            let cell = [
                at(2 * x, 2 * sy),
                at(2 * x + 1, 2 * sy),
                at(2 * x, 2 * sy + 1),
                at(2 * x + 1, 2 * sy + 1),
            ];
            let mean =
                |c: usize| ((cell.iter().map(|p| p[c] as u32).sum::<u32>() + bias) >> 2) as u8;
            cb[y * cw + x] = mean(1);
            cr[y * cw + x] = mean(2);
        }
    }
    [
        Plane {
            data: luma,
            stride: lw,
        },
        Plane {
            data: cb,
            stride: cw,
        },
        Plane {
            data: cr,
            stride: cw,
        },
    ]
}

/// Huffman code and length per symbol (`jpeg_make_c_derived_tbl`, T.81 Annex C).
struct HuffCodes {
    code: [u16; 256],
    size: [u8; 256],
}

impl HuffCodes {
    fn new(counts: &[u8; 16], values: &[u8]) -> Self {
        let mut code = [0u16; 256];
        let mut size = [0u8; 256];
        let mut next = 0u32;
        let mut k = 0;
        for (len, &n) in counts.iter().enumerate() {
            for _ in 0..n {
                code[values[k] as usize] = next as u16;
                size[values[k] as usize] = len as u8 + 1;
                next += 1;
                k += 1;
            }
            next <<= 1;
        }
        Self { code, size }
    }
}

/// The entropy-coded segment: bits packed MSB first, a 0x00 stuffed after every 0xFF.
struct BitWriter {
    out: Vec<u8>,
    acc: u64,
    nbits: u32,
}

impl BitWriter {
    #[inline]
    fn put(&mut self, bits: u32, n: u32) {
        debug_assert!(n <= 24);
        self.acc = (self.acc << n) | (bits as u64 & ((1u64 << n) - 1));
        self.nbits += n;
        while self.nbits >= 8 {
            self.nbits -= 8;
            let byte = (self.acc >> self.nbits) as u8;
            self.out.push(byte);
            if byte == 0xFF {
                self.out.push(0);
            }
        }
    }

    /// `flush_bits`: the last partial byte is filled with 1 bits.
    fn flush(&mut self) {
        if self.nbits > 0 {
            let pad = 8 - self.nbits;
            self.put((1 << pad) - 1, pad);
        }
    }
}

/// Number of bits of |v| (the magnitude category SSSS of T.81 F.1.2.1).
#[inline]
fn category(v: i32) -> u32 {
    32 - v.unsigned_abs().leading_zeros()
}

/// `encode_one_block` of jchuff.c: the DC difference, then run/size pairs for the AC
/// coefficients in zig-zag order, ZRL for runs of 16 zeros, EOB after the last non-zero one.
fn encode_block(
    w: &mut BitWriter,
    blk: &[i16; 64],
    last_dc: &mut i32,
    dc: &HuffCodes,
    ac: &HuffCodes,
) {
    let emit = |w: &mut BitWriter, t: &HuffCodes, sym: u8| {
        w.put(t.code[sym as usize] as u32, t.size[sym as usize] as u32)
    };
    // Negative values are sent as the low `nbits` bits of v − 1 (one's complement).
    let extra = |w: &mut BitWriter, v: i32, nbits: u32| {
        if nbits > 0 {
            w.put((if v < 0 { v - 1 } else { v }) as u32, nbits);
        }
    };
    let diff = blk[0] as i32 - *last_dc;
    *last_dc = blk[0] as i32;
    let n = category(diff);
    emit(w, dc, n as u8);
    extra(w, diff, n);
    let mut run = 0u32;
    for &nat in &ZIGZAG[1..] {
        let v = blk[nat] as i32;
        if v == 0 {
            run += 1;
            continue;
        }
        while run > 15 {
            emit(w, ac, 0xF0);
            run -= 16;
        }
        let n = category(v);
        emit(w, ac, ((run << 4) | n) as u8);
        extra(w, v, n);
        run = 0;
    }
    if run > 0 {
        emit(w, ac, 0x00);
    }
}

fn push_u16(out: &mut Vec<u8>, v: usize) {
    out.extend_from_slice(&(v as u16).to_be_bytes());
}

/// A marker segment: FF `marker`, its length (payload + 2), the payload.
fn segment(out: &mut Vec<u8>, marker: u8, payload: &[u8]) {
    out.extend_from_slice(&[0xFF, marker]);
    push_u16(out, payload.len() + 2);
    out.extend_from_slice(payload);
}

/// Encodes `width × height` RGB pixels (interleaved, rows top to bottom) as Pillow's
/// `Image.save(path)` writes a `.jpg` on its defaults (module docs): byte-identical output.
///
/// Errors for a size outside 1..=65535, a buffer whose length is not `3·width·height`, a
/// quality outside 1..=100 or a comment longer than one marker segment holds.
pub fn encode_rgb(
    width: usize,
    height: usize,
    rgb: &[u8],
    opts: &EncodeOptions,
) -> Result<Vec<u8>, JpegError> {
    if !(1..=65535).contains(&width) || !(1..=65535).contains(&height) {
        return Err(JpegError::Unsupported(format!(
            "image size {width}×{height}: baseline JPEG needs 1..=65535 per side"
        )));
    }
    if rgb.len() != width * height * 3 {
        return Err(JpegError::corrupt(format!(
            "{} bytes of pixels for a {width}×{height} RGB image (expected {})",
            rgb.len(),
            width * height * 3
        )));
    }
    if !(1..=100).contains(&opts.quality) {
        return Err(JpegError::Unsupported(format!(
            "quality {}: expected 1..=100",
            opts.quality
        )));
    }
    if opts.comment.len() > 65533 {
        return Err(JpegError::Unsupported(format!(
            "comment of {} bytes: a COM marker holds at most 65533",
            opts.comment.len()
        )));
    }
    let qt = [
        quant_table(&STD_LUMA_QUANT, opts.quality),
        quant_table(&STD_CHROMA_QUANT, opts.quality),
    ];
    let divisors = qt.map(|t| t.map(|q| compute_reciprocal(q as u32 * 8)));

    // Geometry (jdiv_round_up in jcmaster.c): MCUs of 16×16 pixels; Y has 2×2 blocks per
    // MCU, Cb and Cr one each.
    let (mcux, mcuy) = (width.div_ceil(16), height.div_ceil(16));
    let luma_blocks = (width.div_ceil(8), height.div_ceil(8));
    let chroma_blocks = (mcux, mcuy);
    let planes = planes(width, height, rgb, luma_blocks, chroma_blocks);

    let mut out = Vec::with_capacity(1024 + width * height / 2);
    out.extend_from_slice(&[0xFF, 0xD8]);
    // JFIF APP0: version 1.01, no density unit, 1:1 aspect, no thumbnail.
    segment(
        &mut out,
        0xE0,
        b"JFIF\0\x01\x01\x00\x00\x01\x00\x01\x00\x00",
    );
    if !opts.comment.is_empty() {
        segment(&mut out, 0xFE, &opts.comment);
    }
    for (i, t) in qt.iter().enumerate() {
        let mut p = vec![i as u8];
        p.extend(ZIGZAG.iter().map(|&nat| t[nat] as u8));
        segment(&mut out, 0xDB, &p);
    }
    let mut sof = vec![8u8];
    sof.extend_from_slice(&(height as u16).to_be_bytes());
    sof.extend_from_slice(&(width as u16).to_be_bytes());
    sof.extend_from_slice(&[3, 1, 0x22, 0, 2, 0x11, 1, 3, 0x11, 1]);
    segment(&mut out, 0xC0, &sof);
    let tables = std_tables::ENCODER_TABLES;
    for (class_index, counts, values) in tables {
        let mut p = vec![class_index];
        p.extend_from_slice(counts);
        p.extend_from_slice(values);
        segment(&mut out, 0xC4, &p);
    }
    segment(&mut out, 0xDA, &[3, 1, 0x00, 2, 0x11, 3, 0x11, 0, 63, 0]);

    let [(_, dcl_c, dcl_v), (_, acl_c, acl_v), (_, dcc_c, dcc_v), (_, acc_c, acc_v)] = tables;
    let dc = [HuffCodes::new(dcl_c, dcl_v), HuffCodes::new(dcc_c, dcc_v)];
    let ac = [HuffCodes::new(acl_c, acl_v), HuffCodes::new(acc_c, acc_v)];
    let mut w = BitWriter {
        out,
        acc: 0,
        nbits: 0,
    };
    let mut last_dc = [0i32; 3];
    let block = |ci: usize, bx: usize, by: usize| {
        let p = &planes[ci];
        let t = if ci == 0 { 0 } else { 1 };
        fdct_quantize(
            &p.data[by * 8 * p.stride + bx * 8..],
            p.stride,
            &divisors[t],
        )
    };
    for my in 0..mcuy {
        for mx in 0..mcux {
            // Y: four blocks in raster order. Blocks past the image's last block column or
            // row are jccoefct.c's dummy blocks: zero AC, the DC of the block coded before.
            let mut prev_dc = 0i16;
            for dy in 0..2 {
                for dx in 0..2 {
                    let (bx, by) = (2 * mx + dx, 2 * my + dy);
                    let blk = if by >= luma_blocks.1 || bx >= luma_blocks.0 {
                        let mut z = [0i16; 64];
                        z[0] = prev_dc;
                        z
                    } else {
                        block(0, bx, by)
                    };
                    prev_dc = blk[0];
                    encode_block(&mut w, &blk, &mut last_dc[0], &dc[0], &ac[0]);
                }
            }
            for (ci, last) in last_dc.iter_mut().enumerate().skip(1) {
                let blk = block(ci, mx, my);
                encode_block(&mut w, &blk, last, &dc[1], &ac[1]);
            }
        }
    }
    w.flush();
    let mut out = w.out;
    out.extend_from_slice(&[0xFF, 0xD9]);
    Ok(out)
}

/// The comment Pillow would carry into a re-saved file: the contents of the last COM marker
/// before the first scan (`JpegImageFile.info["comment"]`), or empty.
pub fn comment(data: &[u8]) -> Vec<u8> {
    let mut found = Vec::new();
    let mut pos = 2;
    while let Some((marker, after)) = super::huffman::next_marker(data, pos) {
        if matches!(marker, 0xD9 | 0xDA) {
            break;
        }
        if matches!(marker, 0xD0..=0xD8 | 0x01) {
            pos = after;
            continue;
        }
        let Ok((seg, next)) = super::markers::segment(data, after) else {
            break;
        };
        if marker == 0xFE {
            found = seg.to_vec();
        }
        pos = next;
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quality_75_tables_are_libjpegs() {
        // jpeg_quality_scaling(75) = 50: (16·50 + 50)/100 = 8, (99·50 + 50)/100 = 50.
        let l = quant_table(&STD_LUMA_QUANT, 75);
        assert_eq!(&l[..4], &[8, 6, 5, 8]);
        assert_eq!(quant_table(&STD_CHROMA_QUANT, 75)[63], 50);
        assert!(quant_table(&STD_LUMA_QUANT, 1).iter().all(|&q| q == 255));
        assert!(quant_table(&STD_LUMA_QUANT, 100).iter().all(|&q| q == 1));
    }

    #[test]
    fn reciprocal_quantisation_rounds_like_division() {
        // jcdctmgr.c's reciprocal trick must equal round-half-up of |x|/d for every DCT value.
        for q in [1u32, 2, 3, 5, 7, 8, 50, 99, 255] {
            let d = compute_reciprocal(q * 8);
            for x in -8192i32..=8192 {
                let want = (x.abs() + (q * 8 / 2) as i32) / (q * 8) as i32 * x.signum();
                assert_eq!(quantize(x, d) as i32, want, "x {x} q {q}");
            }
        }
    }

    #[test]
    fn gray_has_neutral_chroma_and_exact_luma() {
        // The three luma weights sum to 2^16 and the chroma weights to 0.
        for v in 0..=255 {
            assert_eq!(rgb_to_ycc(v, v, v), [v as u8, 128, 128]);
        }
        assert_eq!(rgb_to_ycc(255, 0, 0), [76, 85, 255]);
    }

    #[test]
    fn bad_input_is_rejected() {
        let o = EncodeOptions::default();
        assert!(encode_rgb(0, 4, &[], &o).is_err());
        assert!(encode_rgb(2, 2, &[0; 11], &o).is_err());
        let q0 = EncodeOptions {
            quality: 0,
            ..o.clone()
        };
        assert!(encode_rgb(1, 1, &[0; 3], &q0).is_err());
    }
}

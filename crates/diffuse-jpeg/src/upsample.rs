//! Chroma upsampling as libjpeg-turbo's `jdsample.c` does it with its defaults
//! (`do_fancy_upsampling` on): triangle ("fancy") filters for 2:1 horizontal, 2:1 vertical
//! and 2:1 both ways, sample replication otherwise.
//!
//! Edges: libjpeg-turbo's main controller (`jdmainct.c`, `make_funny_pointers` and
//! `set_bottom_pointers`) gives the vertical filters copies of the first and last real sample
//! rows as context above and below; at the right edge its SIMD upsamplers (what Pillow's
//! wheels run) copy the last real sample one column further (`expand_right_edge`), which the C
//! code's special last-column formulas reproduce. Both amount to clamping the neighbour index
//! to the component's real samples, which is what this module does.

/// A plane of 8-bit samples: `rows` rows of at least the needed width, `stride` apart.
pub struct Plane {
    pub data: Vec<u8>,
    pub stride: usize,
}

impl Plane {
    #[inline(always)]
    pub fn row(&self, y: usize) -> &[u8] {
        &self.data[y * self.stride..(y + 1) * self.stride]
    }
}

/// How one component reaches full resolution (the method choice of `jinit_upsampler`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Method {
    Full,
    /// `h2v1_fancy_upsample`: 3/4 nearer + 1/4 further sample, horizontally.
    H2V1Fancy,
    /// `h1v2_fancy_upsample`: the same vertically.
    H1V2Fancy,
    /// `h2v2_fancy_upsample`: both ways, 9/16, 3/16, 3/16, 1/16.
    H2V2Fancy,
    /// Replication by integral factors (`h2v1_upsample`, `h2v2_upsample`, `int_upsample`).
    Replicate(usize, usize),
}

/// Picks the method for a component with sampling factors (h, v) in a frame with maxima
/// (hmax, vmax), `width` real samples per row. `None` when the ratio is not integral
/// (libjpeg-turbo refuses those too: `JERR_FRACT_SAMPLE_NOTIMPL`).
pub fn method(h: usize, v: usize, hmax: usize, vmax: usize, width: usize) -> Option<Method> {
    // libjpeg-turbo uses the fancy 2:1 horizontal filters only when the component has more
    // than two samples per row; narrower ones are replicated.
    let fancy_h = width > 2;
    Some(if h == hmax && v == vmax {
        Method::Full
    } else if h * 2 == hmax && v == vmax {
        if fancy_h {
            Method::H2V1Fancy
        } else {
            Method::Replicate(2, 1)
        }
    } else if h == hmax && v * 2 == vmax {
        Method::H1V2Fancy
    } else if h * 2 == hmax && v * 2 == vmax {
        if fancy_h {
            Method::H2V2Fancy
        } else {
            Method::Replicate(2, 2)
        }
    } else if hmax.is_multiple_of(h) && vmax.is_multiple_of(v) {
        Method::Replicate(hmax / h, vmax / v)
    } else {
        return None;
    })
}

/// Brings the component plane `src` (`width`×`height` real samples) to `out_h` full-resolution
/// rows of at least `out_w` samples.
pub fn upsample(
    src: Plane,
    width: usize,
    height: usize,
    m: Method,
    out_w: usize,
    out_h: usize,
) -> Plane {
    match m {
        Method::Full => src,
        Method::H2V1Fancy => h2v1_fancy(&src, width, out_h),
        Method::H1V2Fancy => h1v2_fancy(&src, width, height, out_h),
        Method::H2V2Fancy => h2v2_fancy(&src, width, height, out_h),
        Method::Replicate(hx, vx) => replicate(&src, hx, vx, out_w, out_h),
    }
}

/// Row index of the vertical neighbour used for output row `y` of a 2:1 vertical filter: the
/// row above for even rows, below for odd rows, clamped to the real rows.
#[inline(always)]
fn neighbour_row(y: usize, height: usize) -> usize {
    let iy = y / 2;
    if y.is_multiple_of(2) {
        iy.saturating_sub(1)
    } else {
        (iy + 1).min(height - 1)
    }
}

/// One row of the horizontal triangle filter on `v` (width ≥ 2): output 2i is
/// (3·v[i] + v[i−1] + b0) >> shift, output 2i+1 is (3·v[i] + v[i+1] + b1) >> shift, the
/// neighbours clamped at both ends.
#[inline(always)]
fn triangle_row(v: &[u32], o: &mut [u8], b0: u32, b1: u32, shift: u32) {
    let n = v.len();
    o[0] = ((4 * v[0] + b0) >> shift) as u8;
    o[2 * n - 1] = ((4 * v[n - 1] + b1) >> shift) as u8;
    for (w, pair) in v.windows(2).zip(o[1..2 * n - 1].chunks_exact_mut(2)) {
        // pair[0] = odd output of sample w[0], pair[1] = even output of sample w[1].
        pair[0] = ((3 * w[0] + w[1] + b1) >> shift) as u8;
        pair[1] = ((3 * w[1] + w[0] + b0) >> shift) as u8;
    }
}

fn h2v1_fancy(src: &Plane, width: usize, out_h: usize) -> Plane {
    let stride = 2 * width;
    let mut data = vec![0u8; stride * out_h];
    let mut v = vec![0u32; width];
    for (y, o) in data.chunks_exact_mut(stride).enumerate() {
        for (d, &s) in v.iter_mut().zip(&src.row(y)[..width]) {
            *d = s as u32;
        }
        // Biases 1 and 2 alternate so that rounding does not drift (jdsample.c).
        triangle_row(&v, o, 1, 2, 2);
    }
    Plane { data, stride }
}

fn h1v2_fancy(src: &Plane, width: usize, height: usize, out_h: usize) -> Plane {
    let stride = width;
    let mut data = vec![0u8; stride * out_h];
    for (y, o) in data.chunks_exact_mut(stride).enumerate() {
        let a = &src.row(y / 2)[..width];
        let b = &src.row(neighbour_row(y, height))[..width];
        let bias = if y % 2 == 0 { 1 } else { 2 };
        for ((d, &x), &z) in o.iter_mut().zip(a).zip(b) {
            *d = ((3 * x as u32 + z as u32 + bias) >> 2) as u8;
        }
    }
    Plane { data, stride }
}

fn h2v2_fancy(src: &Plane, width: usize, height: usize, out_h: usize) -> Plane {
    let stride = 2 * width;
    let mut data = vec![0u8; stride * out_h];
    let mut colsum = vec![0u32; width];
    for (y, o) in data.chunks_exact_mut(stride).enumerate() {
        let a = &src.row(y / 2)[..width];
        let b = &src.row(neighbour_row(y, height))[..width];
        for ((d, &x), &z) in colsum.iter_mut().zip(a).zip(b) {
            *d = 3 * x as u32 + z as u32;
        }
        // Column sums carry weight 4, so the horizontal step divides by 16 (biases 8 and 7).
        triangle_row(&colsum, o, 8, 7, 4);
    }
    Plane { data, stride }
}

fn replicate(src: &Plane, hx: usize, vx: usize, out_w: usize, out_h: usize) -> Plane {
    let stride = out_w;
    let mut data = vec![0u8; stride * out_h];
    for (y, o) in data.chunks_exact_mut(stride).enumerate() {
        let a = src.row(y / vx);
        for (x, v) in o.iter_mut().enumerate() {
            *v = a[x / hx];
        }
    }
    Plane { data, stride }
}

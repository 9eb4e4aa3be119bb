//! Patched (issue 13): f32 2D max and average pooling forward without per-output bounds logic.
//!
//! Upstream computes every output element through a closure that derives the window's valid
//! range and walks it with scalar loads (and max pooling always builds an i64 index tensor,
//! even when the caller drops it). Here each (image, channel) plane is first copied into a
//! buffer with its padding materialised (zeros for the average, −∞ for the max), and the window
//! is then swept as `kh·kw` passes over a whole output row, which the compiler vectorises.
//!
//! The results are bit-identical to upstream: the average still adds the window's values in
//! row-major order starting from zero (a padded 0 adds nothing), divided by the same count;
//! the max takes the same maximum, with NaN winning as upstream (and PyTorch) does.
//!
//! Only the non-dilated, floor-mode case is handled; [`applies`] says when.

use alloc::vec;
use alloc::vec::Vec;

/// Window geometry of one 2D pooling call.
#[derive(Clone, Copy)]
pub(crate) struct Pool2d {
    pub kernel: [usize; 2],
    pub stride: [usize; 2],
    pub padding: [usize; 2],
    pub input: [usize; 2],
}

/// What to compute.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum PoolKind {
    Max,
    /// Average; `true` counts padded positions in the divisor (PyTorch's `count_include_pad`).
    Avg(bool),
}

impl Pool2d {
    /// Output height and width (floor mode).
    pub(crate) fn out(&self) -> [usize; 2] {
        [0, 1].map(|i| (self.input[i] + 2 * self.padding[i] - self.kernel[i]) / self.stride[i] + 1)
    }
}

/// Whether the fast path covers this call: no dilation, floor mode, padding at most half the
/// window (as PyTorch requires), a window that fits the padded input, and a positive stride.
pub(crate) fn applies(p: &Pool2d, dilation: [usize; 2], ceil_mode: bool) -> bool {
    !ceil_mode
        && dilation == [1, 1]
        && (0..2).all(|i| {
            p.stride[i] > 0
                && p.kernel[i] > 0
                && p.padding[i] <= p.kernel[i] / 2
                && p.input[i] + 2 * p.padding[i] >= p.kernel[i]
        })
}

/// Pools `planes` contiguous `H × W` planes of `x`; returns the `planes × OH × OW` output.
pub(crate) fn pool2d_f32(x: &[f32], planes: usize, p: Pool2d, kind: PoolKind) -> Vec<f32> {
    let [in_h, in_w] = p.input;
    let [out_h, out_w] = p.out();
    let [pad_h, pad_w] = p.padding;
    let (ph, pw) = (in_h + 2 * pad_h, in_w + 2 * pad_w);
    let plane_in = in_h * in_w;
    let plane_out = out_h * out_w;
    let mut output = vec![0.0f32; planes * plane_out];
    if plane_out == 0 {
        return output;
    }
    let fill = match kind {
        PoolKind::Max => f32::NEG_INFINITY,
        PoolKind::Avg(_) => 0.0,
    };
    // Divisor of each output position (average only): the window size, or its valid part.
    let valid = |o: usize, i: usize| {
        let start = o * p.stride[i];
        let lo = start.max(p.padding[i]);
        let hi = (start + p.kernel[i]).min(p.padding[i] + p.input[i]);
        hi.saturating_sub(lo).max(1)
    };
    let divisor: Vec<f32> = match kind {
        PoolKind::Avg(false) => (0..plane_out)
            .map(|o| (valid(o / out_w, 0) * valid(o % out_w, 1)) as f32)
            .collect(),
        _ => vec![(p.kernel[0] * p.kernel[1]) as f32; plane_out],
    };
    // Each plane is copied into a buffer with its padding materialised and, for a horizontal
    // stride s > 1, each row split into its s phases (columns r, r + s, r + 2s, … side by
    // side), so that every window tap reads a contiguous run. Only a stride-1 plane without
    // padding is read in place.
    let s_w = p.stride[1];
    let phase_len = pw.div_ceil(s_w);
    let row_stride = s_w * phase_len;
    let direct = pad_h == 0 && pad_w == 0 && s_w == 1;
    let geometry = PlaneGeometry {
        p,
        out_w,
        out_h,
        phase_len,
        row_stride,
        direct,
        kind,
    };

    let one_plane = |buf: &mut Vec<f32>, src: &[f32], dst: &mut [f32]| {
        pool_plane(&geometry, src, buf, dst, &divisor)
    };
    // The padded frame is written once per buffer; each plane only overwrites the interior.
    let new_buf = || vec![fill; if direct { 0 } else { ph * row_stride }];

    #[cfg(feature = "rayon")]
    {
        use rayon::prelude::*;
        // At least ~16 K output elements per task, so small late-stage planes are batched.
        let min_len = (16 * 1024 / plane_out).max(1);
        x.par_chunks(plane_in)
            .zip(output.par_chunks_mut(plane_out))
            .with_min_len(min_len)
            .for_each_init(new_buf, |buf, (src, dst)| one_plane(buf, src, dst));
    }
    #[cfg(not(feature = "rayon"))]
    {
        let mut buf = new_buf();
        for (src, dst) in x.chunks(plane_in).zip(output.chunks_mut(plane_out)) {
            one_plane(&mut buf, src, dst);
        }
    }
    output
}

/// Layout of one plane's pooling (see [`pool2d_f32`]).
struct PlaneGeometry {
    p: Pool2d,
    out_h: usize,
    out_w: usize,
    /// Length of one stride phase of a buffered row.
    phase_len: usize,
    /// Distance between buffered rows (`stride · phase_len`).
    row_stride: usize,
    /// Read the input plane in place (stride 1, no padding).
    direct: bool,
    kind: PoolKind,
}

/// Pools one plane. Compiled for each SIMD level (runtime dispatch) so the sweeps vectorise at
/// the machine's width; every operation is element-wise, so all levels give the same bits.
#[allow(clippy::extra_unused_type_parameters)]
#[cfg_attr(feature = "simd", macerator::with_simd)]
fn pool_plane<#[cfg(feature = "simd")] S: macerator::Simd>(
    g: &PlaneGeometry,
    src: &[f32],
    buf: &mut [f32],
    dst: &mut [f32],
    divisor: &[f32],
) {
    let p = &g.p;
    let [in_h, in_w] = p.input;
    let [pad_h, pad_w] = p.padding;
    let s_w = p.stride[1];
    let (plane, row_stride): (&[f32], usize) = if g.direct {
        (src, in_w)
    } else {
        for r in 0..in_h {
            let row = &mut buf[(r + pad_h) * g.row_stride..(r + pad_h + 1) * g.row_stride];
            let src_row = &src[r * in_w..(r + 1) * in_w];
            if s_w == 1 {
                row[pad_w..pad_w + in_w].copy_from_slice(src_row);
            } else {
                // Padded column pc = c + pad_w goes to phase pc % s, slot pc / s; the two
                // counters avoid a division per element.
                let (mut phase, mut slot) = (pad_w % s_w, pad_w / s_w);
                for &v in src_row {
                    row[phase * g.phase_len + slot] = v;
                    phase += 1;
                    if phase == s_w {
                        phase = 0;
                        slot += 1;
                    }
                }
            }
        }
        (&buf[..], g.row_stride)
    };
    let out_w = g.out_w;
    for oh in 0..g.out_h {
        let acc = &mut dst[oh * out_w..(oh + 1) * out_w];
        for kh in 0..p.kernel[0] {
            let row = &plane[(oh * p.stride[0] + kh) * row_stride..];
            for kw in 0..p.kernel[1] {
                let start = (kw % s_w) * g.phase_len + kw / s_w;
                let taps = &row[start..start + out_w];
                let first = kh == 0 && kw == 0;
                match g.kind {
                    // NaN wins, as upstream's `val > max || val.is_nan()`.
                    PoolKind::Max if first => acc.copy_from_slice(taps),
                    PoolKind::Max => {
                        for (a, &v) in acc.iter_mut().zip(taps) {
                            *a = if v > *a || v.is_nan() { v } else { *a };
                        }
                    }
                    // 0 + v = v: the sum starts from zero like upstream's.
                    PoolKind::Avg(_) if first => {
                        for (a, &v) in acc.iter_mut().zip(taps) {
                            *a = 0.0 + v;
                        }
                    }
                    PoolKind::Avg(_) => {
                        for (a, &v) in acc.iter_mut().zip(taps) {
                            *a += v;
                        }
                    }
                }
            }
        }
        if let PoolKind::Avg(_) = g.kind {
            let div = &divisor[oh * out_w..(oh + 1) * out_w];
            for (a, d) in acc.iter_mut().zip(div) {
                *a /= *d;
            }
        }
    }
}

//! diffuse patch (not in upstream burn-flex 0.22.1): the weight gradient of a 2D convolution as
//! large GEMMs over an im2col matrix laid out [Ci·Kh·Kw rows, batch·Ho·Wo columns].
//!
//! burn-backend's default `conv2d_weight_backward` runs a convolution of the input (batch and
//! channel axes swapped) with the output gradient as its kernel: for a 3×3 conv over 64×64 maps
//! that is a 64×64 "kernel" producing 3×3 outputs, i.e. one GEMM per input channel with only 9
//! columns, which re-packs the whole output gradient for every input channel. Here instead
//!
//!   dW[co, (ci, kh, kw)] = Σ_(n, oh, ow) dY[n, co, oh, ow] · x[n, ci, oh·s + kh·d − p, ow·s + kw·d − p]
//!
//! i.e. dW = dY_mat · colsᵀ, accumulated over chunks of the batch so that each GEMM has an
//! inner dimension of a few thousand.
//!
//! The patch matrix is stored position-major, [batch·Ho·Wo rows, Kh·Kw·Ci columns], gathered
//! from an NHWC copy of the input (Ci-long contiguous runs), and dW is computed in (Kh, Kw, Ci)
//! column order, then permuted to burn's [Co, Ci, Kh, Kw]. With that layout the GEMM's right
//! operand is row-major, which the `gemm` crate multiplies ~1.75× faster than the
//! column-major patch matrix of the first version (measured on [128 × 4096] · [4096 × 1152],
//! 2 threads, AVX-512: 5.5 against 9.6 ms).

use alloc::vec;
use burn_backend::ops::ConvOptions;
use burn_backend::{DType, Element};
use burn_std::{Bytes, Shape, f16};

use crate::{FlexTensor, Layout};

/// Inner-dimension length (batch items × output pixels) each accumulated GEMM aims for.
const TARGET_INNER: usize = 4096;

/// `dL/dW` of a 2D convolution. `x`: [N, Ci, H, W]; `output_grad`: [N, Co, Ho, Wo];
/// `weight_shape`: [Co, Ci/groups, Kh, Kw]. Padding may be asymmetric: only its leading side
/// matters once the output size is known. f32, f64 and f16 run natively; bf16 through f32.
pub fn conv2d_weight_backward(
    x: FlexTensor,
    output_grad: FlexTensor,
    weight_shape: Shape,
    options: &ConvOptions<2>,
) -> FlexTensor {
    match x.dtype() {
        DType::F32 => weight_grad::<f32>(x, output_grad, weight_shape, options, 0.0, 1.0),
        DType::F64 => weight_grad::<f64>(x, output_grad, weight_shape, options, 0.0, 1.0),
        DType::F16 => weight_grad::<f16>(
            x,
            output_grad,
            weight_shape,
            options,
            f16::from_f32(0.0),
            f16::from_f32(1.0),
        ),
        DType::BF16 => {
            use crate::ops::conv_common::{convert_bf16_to_f32, convert_f32_to_bf16};
            let grad = weight_grad::<f32>(
                convert_bf16_to_f32(&x),
                convert_bf16_to_f32(&output_grad),
                weight_shape,
                options,
                0.0,
                1.0,
            );
            convert_f32_to_bf16(&grad)
        }
        dtype => panic!("conv2d_weight_backward: unsupported dtype {:?}", dtype),
    }
}

fn weight_grad<T: Element + bytemuck::Pod + Send + Sync + 'static>(
    x: FlexTensor,
    output_grad: FlexTensor,
    weight_shape: Shape,
    options: &ConvOptions<2>,
    zero: T,
    one: T,
) -> FlexTensor {
    let x = x.to_contiguous();
    let dy = output_grad.to_contiguous();
    let xs = x.layout().shape().clone();
    let ys = dy.layout().shape().clone();
    let (n, ci, h, w) = (xs[0], xs[1], xs[2], xs[3]);
    let (co, ho, wo) = (ys[1], ys[2], ys[3]);
    let (kh, kw) = (weight_shape[2], weight_shape[3]);
    let groups = options.groups;
    let (ci_g, co_g) = (ci / groups, co / groups);
    let dy_data: &[T] = dy.storage();

    let k_len = ci_g * kh * kw;
    let p = ho * wo;
    let chunk = (TARGET_INNER / p.max(1)).clamp(1, n.max(1));
    let x_nhwc = super::conv::to_nhwc(&x);
    let x_nhwc: &[T] = x_nhwc.storage();
    let mut geo = Geometry {
        ci,
        c0: 0,
        ci_g,
        h,
        w,
        kh,
        kw,
        ho,
        wo,
        stride: options.stride,
        dilation: options.dilation,
        pad: options.padding_begin(),
    };

    // One [Co/groups, (Kh, Kw, Ci/groups)] block per group, stacked.
    let mut dw_t = vec![zero; co * k_len];
    let mut cols = vec![zero; chunk * p * k_len];
    let mut dy_chunk = if chunk > 1 {
        vec![zero; co_g * chunk * p]
    } else {
        vec![]
    };
    for g in 0..groups {
        geo.c0 = g * ci_g;
        let dw_g = &mut dw_t[g * co_g * k_len..(g + 1) * co_g * k_len];
        let mut start = 0;
        while start < n {
            let m = chunk.min(n - start);
            let inner = m * p;
            im2col_rows(&mut cols[..inner * k_len], x_nhwc, start, &geo, zero);
            // The GEMM's left operand: dY of this group's output channels for these batch
            // items as one [Co/groups, m·P] matrix. For one item those rows are contiguous in
            // dY; for several they are gathered (a copy of P-long runs).
            let lhs: &[T] = if m == 1 {
                &dy_data[(start * co + g * co_g) * p..][..co_g * p]
            } else {
                for c in 0..co_g {
                    for j in 0..m {
                        let src = ((start + j) * co + g * co_g + c) * p;
                        let dst = c * inner + j * p;
                        dy_chunk[dst..dst + p].copy_from_slice(&dy_data[src..src + p]);
                    }
                }
                &dy_chunk[..co_g * inner]
            };
            // dWᵀ-order block (+)= dY[Co/g, inner] · cols[inner, K]. gemm's arguments: dst :=
            // alpha·dst + beta·lhs·rhs, with column and row strides for each operand.
            unsafe {
                gemm::gemm(
                    co_g,
                    k_len,
                    inner,
                    dw_g.as_mut_ptr(),
                    1,
                    k_len as isize,
                    start > 0,
                    lhs.as_ptr(),
                    1,
                    inner as isize,
                    cols.as_ptr(),
                    1,
                    k_len as isize,
                    one,
                    one,
                    false,
                    false,
                    false,
                    parallelism(co_g * k_len * inner),
                );
            }
            start += m;
        }
    }
    // [Co, (Kh, Kw, Ci/g)] → [Co, Ci/g, Kh, Kw].
    let taps = kh * kw;
    let mut dw = vec![zero; co * k_len];
    for (src, dst) in dw_t.chunks(k_len).zip(dw.chunks_mut(k_len)) {
        for t in 0..taps {
            for c in 0..ci_g {
                dst[c * taps + t] = src[t * ci_g + c];
            }
        }
    }
    let bytes = Bytes::from_elems(dw);
    FlexTensor::new(bytes, Layout::contiguous(weight_shape), T::dtype())
}

fn parallelism(work: usize) -> gemm::Parallelism {
    #[cfg(feature = "rayon")]
    if work >= 192 * 192 * 192 {
        return gemm::Parallelism::Rayon(0);
    }
    let _ = work;
    gemm::Parallelism::None
}

/// The convolution's shape parameters, as im2col needs them.
struct Geometry {
    ci: usize,
    /// First input channel of the group being processed.
    c0: usize,
    /// Input channels per group.
    ci_g: usize,
    h: usize,
    w: usize,
    kh: usize,
    kw: usize,
    ho: usize,
    wo: usize,
    stride: [usize; 2],
    dilation: [usize; 2],
    pad: [usize; 2],
}

/// Fills `cols` ([m·Ho·Wo rows, Kh·Kw·Ci/g columns], m = its length / row length) with the
/// input patches of batch items `start ..` from the NHWC input; positions in the padding are
/// zero. Rows are independent, so they are filled in parallel.
fn im2col_rows<T: Copy + Send + Sync>(
    cols: &mut [T],
    x_nhwc: &[T],
    start: usize,
    g: &Geometry,
    zero: T,
) {
    let k_len = g.kh * g.kw * g.ci_g;
    let p = g.ho * g.wo;
    let fill_row = |t: usize, row: &mut [T]| {
        let (j, pos) = (t / p, t % p);
        let (oh, ow) = (pos / g.wo, pos % g.wo);
        let image = &x_nhwc[(start + j) * g.h * g.w * g.ci..][..g.h * g.w * g.ci];
        for a in 0..g.kh {
            let ih = (oh * g.stride[0] + a * g.dilation[0]) as isize - g.pad[0] as isize;
            for b in 0..g.kw {
                let dst = &mut row[(a * g.kw + b) * g.ci_g..][..g.ci_g];
                let iw = (ow * g.stride[1] + b * g.dilation[1]) as isize - g.pad[1] as isize;
                if ih < 0 || iw < 0 || ih >= g.h as isize || iw >= g.w as isize {
                    dst.fill(zero);
                } else {
                    let at = (ih as usize * g.w + iw as usize) * g.ci + g.c0;
                    dst.copy_from_slice(&image[at..at + g.ci_g]);
                }
            }
        }
    };
    #[cfg(feature = "rayon")]
    {
        use rayon::prelude::*;
        cols.par_chunks_mut(k_len)
            .enumerate()
            .with_min_len(64)
            .for_each(|(t, row)| fill_row(t, row));
    }
    #[cfg(not(feature = "rayon"))]
    for (t, row) in cols.chunks_mut(k_len).enumerate() {
        fill_row(t, row);
    }
}

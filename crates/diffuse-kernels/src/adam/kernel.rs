//! The CubeCL kernel: Adam + EMA for a group of parameter tensors per launch, each tensor its
//! own buffers (no gathering into one flat buffer, no copies back).
//!
//! A launch covers the tensors of one group back to back: unit `pos` of the launch belongs to
//! the tensor whose running range [base, base + len) holds it, so there are as many units as
//! elements in the group and none idles on a short tensor. The group size is a compile-time
//! constant of the kernel (a CubeCL `Sequence` of buffers), bounded by the device's buffer
//! bindings, so one program serves every full group and one more the last, partial group.
use burn::tensor::DType;
use burn_cubecl::kernel::into_contiguous;
use burn_cubecl::ops::numeric::empty_device_dtype;
use burn_cubecl::tensor::CubeTensor;
use cubecl::calculate_cube_count_elemwise;
use cubecl::prelude::*;

use super::{AdamEmaScalars, MAX_TENSORS_PER_LAUNCH};

/// Buffer bindings a tensor takes: θ, g, m, v, s read; θ, m, v, s written.
const BINDINGS_PER_TENSOR: u32 = 9;
/// Bindings kept for what the runtime adds (lengths, scalars).
const BINDINGS_RESERVED: u32 = 4;

#[allow(clippy::too_many_arguments)]
#[cube(launch_unchecked)]
fn adam_ema_kernel(
    params: &Sequence<OwnedTensor<f32>>,
    grads: &Sequence<OwnedTensor<f32>>,
    m_in: &Sequence<OwnedTensor<f32>>,
    v_in: &Sequence<OwnedTensor<f32>>,
    s_in: &Sequence<OwnedTensor<f32>>,
    params_out: &mut Sequence<OwnedTensor<f32>>,
    m_out: &mut Sequence<OwnedTensor<f32>>,
    v_out: &mut Sequence<OwnedTensor<f32>>,
    s_out: &mut Sequence<OwnedTensor<f32>>,
    beta1: f32,
    one_minus_beta1: f32,
    beta2: f32,
    one_minus_beta2: f32,
    step_factor: f32,
    eps_corrected: f32,
    lr: f32,
    ema_keep: f32,
    ema_take: f32,
    #[comptime] ema: bool,
) {
    let pos = ABSOLUTE_POS;
    let count = comptime![params.len()];
    let mut base = 0usize;
    #[unroll]
    for i in 0..count {
        let n = params.index(i).len();
        if pos >= base && pos < base + n {
            let k = pos - base;
            let g = grads.index(i)[k];
            // burn's order of operations: each product and sum rounds to f32.
            let m = m_in.index(i)[k] * beta1 + g * one_minus_beta1;
            let v = v_in.index(i)[k] * beta2 + (g * g) * one_minus_beta2;
            let u = (m * step_factor) / (f32::sqrt(v) + eps_corrected);
            let p = params.index(i)[k] - u * lr;
            params_out.index_mut(i)[k] = p;
            m_out.index_mut(i)[k] = m;
            v_out.index_mut(i)[k] = v;
            if ema {
                s_out.index_mut(i)[k] = s_in.index(i)[k] * ema_keep + p * ema_take;
            }
        }
        base += n;
    }
}

/// How many tensors one launch takes on the device of `client`.
pub(crate) fn tensors_per_launch(client: &cubecl::client::Client) -> usize {
    let bindings = client.properties().hardware.max_bindings;
    let fit = bindings.saturating_sub(BINDINGS_RESERVED) / BINDINGS_PER_TENSOR;
    (fit as usize).clamp(1, MAX_TENSORS_PER_LAUNCH)
}

/// A contiguous 1-D f32 tensor of `t`'s elements (a copy only when `t` is a strided view).
fn flat(t: CubeTensor) -> CubeTensor {
    into_contiguous(t)
}

/// The update on burn's cube backend: returns θ, m, v (and s when `shadow` is not empty), each
/// list in the input's order, as new tensors.
pub(crate) fn adam_ema_cube(
    params: Vec<CubeTensor>,
    grads: Vec<CubeTensor>,
    m: Vec<CubeTensor>,
    v: Vec<CubeTensor>,
    shadow: Vec<CubeTensor>,
    s: &AdamEmaScalars,
) -> Vec<CubeTensor> {
    let n = params.len();
    let ema = !shadow.is_empty();
    if n == 0 {
        return Vec::new();
    }
    let client = params[0].client.clone();
    let device = params[0].device.clone();
    let per = tensors_per_launch(&client);
    let new_like = |t: &CubeTensor| {
        empty_device_dtype(
            client.clone(),
            device.clone(),
            t.meta.shape().clone(),
            DType::F32,
        )
    };
    let params: Vec<_> = params.into_iter().map(flat).collect();
    let grads: Vec<_> = grads.into_iter().map(flat).collect();
    let m: Vec<_> = m.into_iter().map(flat).collect();
    let v: Vec<_> = v.into_iter().map(flat).collect();
    let shadow: Vec<_> = shadow.into_iter().map(flat).collect();
    let params_out: Vec<_> = params.iter().map(new_like).collect();
    let m_out: Vec<_> = m.iter().map(new_like).collect();
    let v_out: Vec<_> = v.iter().map(new_like).collect();
    let s_out: Vec<_> = shadow.iter().map(new_like).collect();

    let seq = |list: &[CubeTensor], range: std::ops::Range<usize>| {
        let mut arg = SequenceArg::<OwnedTensor<f32>>::new();
        for t in &list[range] {
            arg.push(t.clone().into_tensor_arg());
        }
        arg
    };
    let mut start = 0;
    while start < n {
        let end = (start + per).min(n);
        let units: usize = params[start..end]
            .iter()
            .map(|t| t.meta.shape().num_elements())
            .sum();
        if units > 0 {
            let cube_dim = CubeDim::new(&client, units);
            let cube_count = calculate_cube_count_elemwise(&client, units, cube_dim);
            let shadows = if ema { start..end } else { 0..0 };
            // SAFETY: every unit writes only index k < len of its own tensor's buffers, which
            // all hold len elements (checked by `AdamEmaTensors::check`, allocated above).
            unsafe {
                adam_ema_kernel::launch_unchecked(
                    &client,
                    cube_count,
                    cube_dim,
                    seq(&params, start..end),
                    seq(&grads, start..end),
                    seq(&m, start..end),
                    seq(&v, start..end),
                    seq(&shadow, shadows.clone()),
                    seq(&params_out, start..end),
                    seq(&m_out, start..end),
                    seq(&v_out, start..end),
                    seq(&s_out, shadows),
                    s.beta1,
                    s.one_minus_beta1,
                    s.beta2,
                    s.one_minus_beta2,
                    s.step_factor,
                    s.eps_corrected,
                    s.lr,
                    s.ema_keep,
                    s.ema_take,
                    ema,
                );
            }
        }
        start = end;
    }
    params_out
        .into_iter()
        .chain(m_out)
        .chain(v_out)
        .chain(s_out)
        .collect()
}

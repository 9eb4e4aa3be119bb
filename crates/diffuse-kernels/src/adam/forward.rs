//! The update as a backend operation: burn's cube backend launches the kernel; under burn's
//! fusion (every GPU build of diffuse) the whole update is one opaque operation of the fusion
//! stream, registered once per step. Written out rather than with `#[backend_extension]`: the
//! macro passes `Vec`s of tensors through undispatched, and its lazy Fusion path takes single
//! tensors only.
use burn::backend::fusion::custom::{self as fc, FusionValueAdapter};
use burn::backend::fusion::{Fusion, FusionBackend, FusionRuntime, FusionTensor};
use burn::backend::tensor::FloatTensor;
use burn::backend::{
    Backend, BackendTensor, Cube, DispatchAutodiffContext, DispatchTensor, DispatchTensorKind,
};
use burn::prelude::*;
use burn_cubecl::CubeBackend;

use super::{kernel, AdamEmaScalars, AdamEmaTensors};

/// A backend that runs the multi-tensor Adam + EMA update.
pub trait AdamEmaBackend: Backend {
    /// θ, m, v (and s when `shadow` is not empty) after one update, as one list in that order.
    fn adam_ema(
        params: Vec<FloatTensor<Self>>,
        grads: Vec<FloatTensor<Self>>,
        m: Vec<FloatTensor<Self>>,
        v: Vec<FloatTensor<Self>>,
        shadow: Vec<FloatTensor<Self>>,
        scalars: AdamEmaScalars,
    ) -> Vec<FloatTensor<Self>>;
}

impl AdamEmaBackend for CubeBackend {
    fn adam_ema(
        params: Vec<FloatTensor<Self>>,
        grads: Vec<FloatTensor<Self>>,
        m: Vec<FloatTensor<Self>>,
        v: Vec<FloatTensor<Self>>,
        shadow: Vec<FloatTensor<Self>>,
        scalars: AdamEmaScalars,
    ) -> Vec<FloatTensor<Self>> {
        kernel::adam_ema_cube(params, grads, m, v, shadow, &scalars)
    }
}

/// Under fusion: one custom operation over all the tensors (the macro's lazy Fusion
/// implementation takes single tensors only, so this one is written out: the same steps for a
/// list). Pending element-wise work on the inputs (the gradient clipping's scale) runs first.
impl<B: FusionBackend + AdamEmaBackend> AdamEmaBackend for Fusion<B> {
    fn adam_ema(
        params: Vec<FloatTensor<Self>>,
        grads: Vec<FloatTensor<Self>>,
        m: Vec<FloatTensor<Self>>,
        v: Vec<FloatTensor<Self>>,
        shadow: Vec<FloatTensor<Self>>,
        scalars: AdamEmaScalars,
    ) -> Vec<FloatTensor<Self>> {
        type F = fc::Float;
        let Some(first) = params.first() else {
            return Vec::new();
        };
        let client = first.client.clone();
        let counts = [params.len(), grads.len(), m.len(), v.len(), shadow.len()];
        // Outputs: θ, m, v, s, shaped as the inputs they replace.
        let specs: Vec<fc::TensorSpec> = params
            .iter()
            .chain(&m)
            .chain(&v)
            .chain(&shadow)
            .map(<F as FusionValueAdapter<B>>::to_metadata)
            .collect();
        let mut inputs = Vec::with_capacity(counts.iter().sum());
        let input_irs: Vec<fc::TensorIr> = params
            .into_iter()
            .chain(grads)
            .chain(m)
            .chain(v)
            .chain(shadow)
            .map(|t: FusionTensor<B::FusionRuntime>| {
                <F as FusionValueAdapter<B>>::append_input_ir(t, &mut inputs)
            })
            .collect();
        let mut outputs = Vec::with_capacity(specs.len());
        let out_states: Vec<fc::OutputTensor> = specs
            .iter()
            .map(|spec| {
                <F as FusionValueAdapter<B>>::append_output_ir(spec, &mut outputs, &mut || {
                    client.create_empty_handle()
                })
            })
            .collect();
        let desc = fc::CustomOpIr {
            id: "diffuse_adam_ema".into(),
            inputs,
            outputs,
            scalars: Vec::new(),
        };
        let op = fc::OperationFn(
            move |handles: &mut fc::HandleContainer<
                <B::FusionRuntime as FusionRuntime>::FusionHandle,
            >| {
                let mut resolved = input_irs
                    .iter()
                    .map(|ir| <F as FusionValueAdapter<B>>::resolve_inputs(ir, handles))
                    .collect::<Vec<_>>()
                    .into_iter();
                let mut take = |n: usize| resolved.by_ref().take(n).collect::<Vec<_>>();
                let (p, g, m, v, s) = (
                    take(counts[0]),
                    take(counts[1]),
                    take(counts[2]),
                    take(counts[3]),
                    take(counts[4]),
                );
                let out = B::adam_ema(p, g, m, v, s, scalars);
                for (value, state) in out.iter().zip(&out_states) {
                    <F as FusionValueAdapter<B>>::validate_outputs(value, state, None)?;
                }
                for (value, state) in out.into_iter().zip(&out_states) {
                    <F as FusionValueAdapter<B>>::register_output_handles(value, state, handles);
                }
                Ok(())
            },
        );
        client.register(fc::StreamId::current(), fc::OperationIr::Custom(desc), op)
    }
}

/// [`AdamEmaBackend::adam_ema`] on burn's cube backend, for tensors the caller checked are f32
/// on a CubeCL device and off the autodiff graph ([`super::fused_applies`]).
pub(super) fn adam_ema_dispatch(
    t: AdamEmaTensors,
    s: &AdamEmaScalars,
) -> Result<AdamEmaTensors, crate::KernelError> {
    let n = t.params.len();
    let ema = !t.shadow.is_empty();
    let cube = |list: Vec<Tensor<1>>| -> Result<Vec<FloatTensor<Cube>>, crate::KernelError> {
        list.into_iter()
            .map(|x| match x.into_dispatch().kind {
                DispatchTensorKind::Cube(BackendTensor::Float(f)) => Ok(f),
                _ => Err(crate::KernelError(
                    "adam_ema: a tensor is not a float tensor of the CubeCL backend".into(),
                )),
            })
            .collect()
    };
    let out = <Cube as AdamEmaBackend>::adam_ema(
        cube(t.params)?,
        cube(t.grads)?,
        cube(t.m)?,
        cube(t.v)?,
        cube(t.shadow)?,
        *s,
    );
    let mut out = out.into_iter().map(|f| {
        Tensor::<1>::from_dispatch(DispatchTensor {
            kind: DispatchTensorKind::Cube(BackendTensor::Float(f)),
            autodiff: DispatchAutodiffContext::Disabled,
        })
    });
    let mut take = |k: usize| out.by_ref().take(k).collect::<Vec<_>>();
    let params = take(n);
    let m = take(n);
    let v = take(n);
    let shadow = if ema { take(n) } else { Vec::new() };
    Ok(AdamEmaTensors {
        params,
        grads: Vec::new(),
        m,
        v,
        shadow,
    })
}

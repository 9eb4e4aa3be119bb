//! Access to the flex (CPU) backend's tensors: what the fused kernels accept and how they read
//! and write host buffers.
use burn::prelude::*;
use burn::tensor::{DType, TensorData};
use burn_flex::FlexTensor;

/// Whether `x` is an f32 tensor on the flex (CPU) backend, with or without autodiff: what the
/// fused kernels accept.
pub fn is_flex_f32<const D: usize>(x: &Tensor<D>) -> bool {
    x.dtype() == DType::F32
        && matches!(
            x.device().inner().as_dispatch(),
            burn::backend::DispatchDevice::Flex(_)
        )
}

/// The values of an f32 flex tensor in logical (row-major) order, copied only when the tensor
/// is a strided view.
pub(crate) fn f32s(t: &FlexTensor) -> std::borrow::Cow<'_, [f32]> {
    match t.as_slice::<f32>() {
        Some(s) => std::borrow::Cow::Borrowed(s),
        None => std::borrow::Cow::Owned(
            t.to_contiguous()
                .as_slice::<f32>()
                .expect("a contiguous f32 tensor")
                .to_vec(),
        ),
    }
}

/// A contiguous f32 tensor of `x`'s shape holding `values`.
pub(crate) fn tensor_like(x: &FlexTensor, values: Vec<f32>) -> FlexTensor {
    let shape = x.layout().shape().clone();
    FlexTensor::from_data(TensorData::new(values, shape))
}

/// The shape of a flex tensor.
pub(crate) fn shape(x: &FlexTensor) -> &[usize] {
    x.layout().shape()
}

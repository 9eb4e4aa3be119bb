//! Samplers as plain functions over a [`Denoiser`]: anything that maps (x_t, t, labels) to ε.
//! DDPM, DDIM and guidance compose through this one interface.
use burn::prelude::*;

/// A noise predictor ε_θ(x_t, t, labels) for a batch that shares one timestep `t`.
/// `labels` holds one class index per batch row (0 = the null class) for conditional models.
pub trait Denoiser<const D: usize> {
    fn eps(&self, x: Tensor<D>, t: usize, labels: Option<&[usize]>) -> Tensor<D>;
}

impl<const D: usize, F> Denoiser<D> for F
where
    F: Fn(Tensor<D>, usize, Option<&[usize]>) -> Tensor<D>,
{
    fn eps(&self, x: Tensor<D>, t: usize, labels: Option<&[usize]>) -> Tensor<D> {
        self(x, t, labels)
    }
}

//! SimpleNet on the fused CPU kernels of `diffuse_kernels::time_mlp`: its weights moved into
//! and out of their flat host layout, the fused training step built from an [`OptimConfig`],
//! and the fused sampling forward as a [`Denoiser`].
use burn::prelude::*;
pub use diffuse_kernels::time_mlp::FlatNet;
use diffuse_kernels::time_mlp::{AdamSettings, FusedForward, FusedTrainer};

use super::{SimpleNet, FREQ_DIM};
use crate::sampling::Denoiser;
use crate::train::{flat_params, with_flat_params, OptimConfig};
use crate::{Error, Result};

/// The weights of `model` (on any device) copied to the host in the flat layout.
pub fn flat_net(model: &SimpleNet) -> Result<FlatNet> {
    let mut dims = vec![model.layers[0].fc.weight.dims()[0]];
    dims.extend(model.layers.iter().map(|l| l.fc.weight.dims()[1]));
    let mut params = Vec::new();
    for t in flat_params(model) {
        let v = t
            .into_data()
            .convert::<f32>()
            .try_into_vec::<f32>()
            .map_err(|e| Error::invalid("model", format!("cannot read weights: {e:?}")))?;
        params.extend(v);
    }
    FlatNet::new(dims, FREQ_DIM, params).map_err(|e| Error::invalid("model", e.0))
}

/// `params` (a vector of `net`'s layout, e.g. the EMA's) split into one flat tensor per
/// parameter, in visiting order.
pub fn param_tensors(net: &FlatNet, params: &[f32], device: &Device) -> Vec<Tensor<1>> {
    assert_eq!(params.len(), net.params.len(), "parameter vector length");
    let mut off = 0;
    net.param_sizes()
        .into_iter()
        .map(|n| {
            let v = params[off..off + n].to_vec();
            off += n;
            Tensor::<1>::from_data(TensorData::new(v, [n]), device)
        })
        .collect()
}

/// `model` with its weights replaced by `params` (a vector of `net`'s layout).
pub fn write_into(net: &FlatNet, params: &[f32], model: SimpleNet) -> SimpleNet {
    let device = model.layers[0].fc.weight.val().device();
    with_flat_params(model, &param_tensors(net, params, &device))
}

/// The fused training step starting from `model`'s weights, with `optim`'s Adam settings and
/// gradient clipping (its learning rate is given per step).
pub fn trainer(model: &SimpleNet, optim: &OptimConfig) -> Result<FusedTrainer> {
    let adam = AdamSettings {
        beta1: optim.beta1,
        beta2: optim.beta2,
        eps: optim.eps,
        grad_clip: optim.grad_clip,
    };
    Ok(FusedTrainer::new(flat_net(model)?, adam))
}

/// A trained SimpleNet as a [`Denoiser`] running the fused forward: the same arithmetic as the
/// module's, without the per-op dispatch.
pub struct FusedDenoiser {
    forward: FusedForward,
    device: Device,
}

impl FusedDenoiser {
    pub fn new(model: &SimpleNet) -> Result<Self> {
        Ok(Self {
            forward: FusedForward::new(flat_net(model)?),
            device: model.layers[0].fc.weight.val().device(),
        })
    }

    /// ε_θ(x, t) for `x` (n × 2, row-major), one timestep shared by all rows.
    pub fn eps_host(&self, x: &[f32], t: usize) -> Vec<f32> {
        self.forward.eps_host(x, t)
    }
}

impl Denoiser<2> for FusedDenoiser {
    fn eps(&self, x: Tensor<2>, t: usize, _labels: Option<&[usize]>) -> Tensor<2> {
        let [n, _] = x.dims();
        let v = x
            .into_data()
            .convert::<f32>()
            .try_into_vec::<f32>()
            .expect("f32 data");
        let e = self.forward.eps_host(&v, t);
        Tensor::from_data(
            TensorData::new(e, [n, self.forward.out_dim()]),
            &self.device,
        )
    }
}

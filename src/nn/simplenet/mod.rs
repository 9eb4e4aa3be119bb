//! The reference's 2D noise predictor: a chain of time-gated linear layers.
//!
//! Each `TimeLinear` computes fc(x) ⊙ MLP(sinusoid(t)): the timestep gates every feature
//! multiplicatively, with a separate embedding MLP per layer.
use burn::nn::Linear;
use burn::prelude::*;
use burn::tensor::activation::{relu, silu};
use rand::Rng;
use serde::{Deserialize, Serialize};

use super::embedding::{timestep_embedding, timestep_embedding_rows};
use super::init::linear;
use crate::sampling::Denoiser;
use crate::{Error, Result};

/// Width of the sinusoidal timestep features.
pub const FREQ_DIM: usize = 256;

pub mod fused;

/// SimpleNet shape. `Default` is the reference: 2 → 128 → 128 → 128 → 2.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SimpleNetConfig {
    /// Widths of every layer boundary, input first, output last.
    pub dims: Vec<usize>,
}

impl Default for SimpleNetConfig {
    fn default() -> Self {
        Self {
            dims: vec![2, 128, 128, 128, 2],
        }
    }
}

impl SimpleNetConfig {
    pub fn validate(&self) -> Result<()> {
        if self.dims.len() < 2 || self.dims.contains(&0) {
            return Err(Error::invalid(
                "dims",
                format!("need at least two non-zero widths, got {:?}", self.dims),
            ));
        }
        Ok(())
    }

    /// A network with PyTorch-default initialisation drawn from `rng`.
    pub fn init(&self, rng: &mut impl Rng, device: &Device) -> Result<SimpleNet> {
        self.validate()?;
        let layers = self
            .dims
            .windows(2)
            .map(|w| TimeLinear {
                fc: linear(rng, w[0], w[1], device),
                time_embedding: TimeEmbedding {
                    mlp0: linear(rng, FREQ_DIM, w[1], device),
                    mlp2: linear(rng, w[1], w[1], device),
                },
            })
            .collect();
        Ok(SimpleNet { layers })
    }
}

/// sinusoid(t) → Linear → SiLU → Linear (PyTorch names: `mlp.0`, `mlp.2`).
#[derive(Module, Debug)]
pub struct TimeEmbedding {
    pub mlp0: Linear,
    pub mlp2: Linear,
}

impl TimeEmbedding {
    pub fn forward(&self, freqs: Tensor<2>) -> Tensor<2> {
        self.mlp2.forward(silu(self.mlp0.forward(freqs)))
    }
}

/// y = fc(x) ⊙ time_embedding(t).
#[derive(Module, Debug)]
pub struct TimeLinear {
    pub fc: Linear,
    pub time_embedding: TimeEmbedding,
}

#[derive(Module, Debug)]
pub struct SimpleNet {
    pub layers: Vec<TimeLinear>,
}

impl SimpleNet {
    /// ε_θ(x, t) for x: [B, d] and raw timesteps t: [B] (or [1], broadcast over the batch).
    pub fn forward(&self, x: Tensor<2>, t: Tensor<1>) -> Tensor<2> {
        self.forward_freqs(x, timestep_embedding(t, FREQ_DIM))
    }

    /// ε_θ for integer timesteps (one per row, or one shared), with the sinusoid from a table.
    pub fn forward_steps(&self, x: Tensor<2>, t: &[usize]) -> Tensor<2> {
        let device = x.device();
        self.forward_freqs(x, timestep_embedding_rows(t, FREQ_DIM, &device))
    }

    fn forward_freqs(&self, x: Tensor<2>, freqs: Tensor<2>) -> Tensor<2> {
        let n = self.layers.len();
        let mut h = x;
        for (i, layer) in self.layers.iter().enumerate() {
            h = layer.fc.forward(h) * layer.time_embedding.forward(freqs.clone());
            if i + 1 < n {
                h = relu(h);
            }
        }
        h
    }

    /// ε_θ for a batch made of `t.len()` equal groups of consecutive rows, group k at integer
    /// timestep `t[k]`. The same function as [`Self::forward_steps`] with each timestep repeated
    /// over its group, but the embedding MLPs (three quarters of the reference layer's
    /// multiply-adds) run on K rows instead of B, so a training batch can grow at little cost.
    pub fn forward_grouped(&self, x: Tensor<2>, t: &[usize]) -> Result<Tensor<2>> {
        let [b, _] = x.dims();
        let k = t.len();
        if k == 0 || !b.is_multiple_of(k) {
            return Err(Error::invalid(
                "t_groups",
                format!("{k} timestep groups do not divide a batch of {b} rows"),
            ));
        }
        let freqs = timestep_embedding_rows(t, FREQ_DIM, &x.device());
        let n = self.layers.len();
        let mut h = x;
        for (i, layer) in self.layers.iter().enumerate() {
            let y = layer.fc.forward(h);
            let w = y.dims()[1];
            let gate = layer
                .time_embedding
                .forward(freqs.clone())
                .unsqueeze_dim::<3>(1);
            h = (y.reshape([k, b / k, w]) * gate).reshape([b, w]);
            if i + 1 < n {
                h = relu(h);
            }
        }
        Ok(h)
    }

    /// Number of scalar parameters.
    pub fn num_params(&self) -> usize {
        burn::module::Module::num_params(self)
    }
}

/// Loads weights: a safetensors file, or a PyTorch state dict of the reference layout (`layers.{i}.fc.*`,
/// `layers.{i}.time_embedding.mlp.{0,2}.*`) into `net`, whose shape must match.
pub fn load_pytorch(net: SimpleNet, path: &std::path::Path) -> Result<SimpleNet> {
    crate::checkpoint::load_weights_remapped(
        net,
        path,
        &[(r"\.mlp\.0\.", ".mlp0."), (r"\.mlp\.2\.", ".mlp2.")],
    )
}

impl Denoiser<2> for SimpleNet {
    fn eps(&self, x: Tensor<2>, t: usize, _labels: Option<&[usize]>) -> Tensor<2> {
        self.forward_steps(x, &[t])
    }
}

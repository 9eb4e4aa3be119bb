//! Classifier-free guidance (Ho & Salimans 2022) as a [`Denoiser`] wrapper: the conditional and
//! the null-label batch go through the network in one call per step.
use burn::prelude::*;
use serde::{Deserialize, Serialize};

use super::Denoiser;
use crate::{Error, Result};

/// How the guidance scale is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum GuidanceConvention {
    /// ε̃ = (1 + w) ε_c − w ε_u (reference; guidance on when w > 0, w = 0 is plain conditional).
    #[default]
    Reference,
    /// ε̃ = ε_u + s (ε_c − ε_u) (diffusers; s = w + 1, s = 1 is plain conditional).
    Diffusers,
}

/// A guidance setting, stored internally as the reference w.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Guidance {
    w: f64,
}

impl Guidance {
    /// Reads `scale` in `convention`; rejects scales that mean w < 0.
    pub fn new(scale: f64, convention: GuidanceConvention) -> Result<Self> {
        let w = match convention {
            GuidanceConvention::Reference => scale,
            GuidanceConvention::Diffusers => scale - 1.0,
        };
        if !w.is_finite() || w < 0.0 {
            let need = match convention {
                GuidanceConvention::Reference => "≥ 0",
                GuidanceConvention::Diffusers => "≥ 1",
            };
            return Err(Error::invalid(
                "--cfg-scale",
                format!("must be {need} in the {convention:?} convention, got {scale}"),
            ));
        }
        Ok(Self { w })
    }

    /// The reference-convention weight w.
    pub fn w(&self) -> f64 {
        self.w
    }

    /// Combines the two predictions: (1 + w) ε_c − w ε_u.
    pub fn combine<const D: usize>(&self, eps_cond: Tensor<D>, eps_uncond: Tensor<D>) -> Tensor<D> {
        eps_cond * (1.0 + self.w) - eps_uncond * self.w
    }
}

/// A conditional denoiser steered by classifier-free guidance.
pub struct Guided<'a, M: ?Sized> {
    pub model: &'a M,
    pub guidance: Guidance,
}

impl<const D: usize, M: Denoiser<D> + ?Sized> Denoiser<D> for Guided<'_, M> {
    fn eps(&self, x: Tensor<D>, t: usize, labels: Option<&[usize]>) -> Tensor<D> {
        let labels = match labels {
            Some(l) if self.guidance.w > 0.0 => l,
            // w = 0 (or an unconditional call): the plain conditional prediction, one batch.
            _ => return self.model.eps(x, t, labels),
        };
        let b = x.dims()[0];
        // [x; x] with labels [0 … 0; c] in one network call.
        let both: Vec<usize> = std::iter::repeat(0)
            .take(b)
            .chain(labels.iter().copied())
            .collect();
        let out = self
            .model
            .eps(Tensor::cat(vec![x.clone(), x], 0), t, Some(&both));
        let eps_u = out.clone().narrow(0, 0, b);
        let eps_c = out.narrow(0, b, b);
        self.guidance.combine(eps_c, eps_u)
    }
}

//! The evaluation classifier of the digits demo: an MLP (64 → 256 → 256 → 10) on 8×8 digits
//! in [−1, 1], trained on the real data. It judges whether a generated digit is the class it
//! was asked for.
use burn::nn::loss::CrossEntropyLossConfig;
use burn::nn::Linear;
use burn::prelude::*;
use burn::tensor::activation::relu;
use rand::seq::SliceRandom;

use super::init::linear;
use crate::data::image_set::ImageSet;
use crate::rng::seeded;
use crate::{Error, Result};

#[derive(Module, Debug)]
pub struct DigitClassifier {
    l1: Linear,
    l2: Linear,
    l3: Linear,
}

impl DigitClassifier {
    /// Logits [B, 10] for images [B, 64].
    pub fn forward(&self, x: Tensor<2>) -> Tensor<2> {
        self.l3.forward(self.features(x))
    }

    /// The penultimate layer [B, 256] (after the second ReLU) for images [B, 64]: the feature
    /// space of the digits' Fréchet distance (the role Inception's pool layer plays in FID).
    pub fn features(&self, x: Tensor<2>) -> Tensor<2> {
        relu(self.l2.forward(relu(self.l1.forward(x))))
    }

    /// Penultimate-layer features ([N·256] row-major) of 8×8 images [N·64].
    pub fn features_of(&self, images: &[f32], device: &Device) -> Result<Vec<f32>> {
        let x = images_tensor(images, device)?;
        self.features(x)
            .into_data()
            .try_to_vec::<f32>()
            .map_err(|e| Error::invalid("classifier", format!("{e:?}")))
    }

    /// Predicted digit labels (1…10, the data set's labels) of 8×8 images [N·64].
    pub fn predict(&self, images: &[f32], device: &Device) -> Result<Vec<usize>> {
        let x = images_tensor(images, device)?;
        let pred = self.forward(x).argmax(1).into_data();
        let v: Vec<i64> = pred
            .convert::<i64>()
            .try_to_vec()
            .map_err(|e| Error::invalid("classifier", format!("{e:?}")))?;
        Ok(v.into_iter().map(|c| c as usize + 1).collect())
    }
}

/// Number of penultimate-layer features.
pub const FEATURE_DIM: usize = 256;

/// 8×8 images [N·64] as a [N, 64] tensor; errors when the length is not a multiple of 64.
fn images_tensor(images: &[f32], device: &Device) -> Result<Tensor<2>> {
    if images.is_empty() || !images.len().is_multiple_of(64) {
        return Err(Error::invalid(
            "classifier",
            format!(
                "expected 8×8 images (a multiple of 64 values), got {} values",
                images.len()
            ),
        ));
    }
    let n = images.len() / 64;
    Ok(Tensor::from_data(
        TensorData::new(images.to_vec(), [n, 64]),
        device,
    ))
}

/// 2×2 (k×k) block averages: a [N, 1, 8k, 8k] image set back to 8×8. Exact inverse of the
/// digits' nearest-neighbour enlargement.
pub fn to_8x8(images: &[f32], side: usize) -> Result<Vec<f32>> {
    if !side.is_multiple_of(8) || !images.len().is_multiple_of(side * side) {
        return Err(Error::invalid(
            "images",
            format!("expected 1-channel images of side 8·k, got side {side}"),
        ));
    }
    let k = side / 8;
    let n = images.len() / (side * side);
    let mut out = Vec::with_capacity(n * 64);
    for img in images.chunks(side * side) {
        for y in 0..8 {
            for x in 0..8 {
                let mut s = 0.0;
                for dy in 0..k {
                    for dx in 0..k {
                        s += img[(y * k + dy) * side + x * k + dx];
                    }
                }
                out.push(s / (k * k) as f32);
            }
        }
    }
    Ok(out)
}

/// Trains the classifier on 8×8 digits (labels 1…10). Holds out `holdout` of the images and
/// returns the accuracy on them with the classifier.
pub fn train(
    set: &ImageSet,
    holdout: f64,
    seed: u64,
    device: &Device,
) -> Result<(DigitClassifier, f64)> {
    if set.height != 8 || set.width != 8 || set.channels != 1 {
        return Err(Error::invalid("classifier", "needs the digits at 8×8"));
    }
    let ad = device.clone().autodiff();
    let mut rng = seeded(seed, 77);
    let mut model = DigitClassifier {
        l1: linear(&mut rng, 64, 256, &ad),
        l2: linear(&mut rng, 256, 256, &ad),
        l3: linear(&mut rng, 256, 10, &ad),
    };
    let mut order: Vec<usize> = (0..set.len()).collect();
    order.shuffle(&mut rng);
    let n_test = ((set.len() as f64) * holdout) as usize;
    let (test, train) = order.split_at(n_test);
    let mut train = train.to_vec();
    let mut optim = crate::train::OptimConfig::default().adam();
    let loss_fn = CrossEntropyLossConfig::new().init(&ad);
    for _epoch in 0..40 {
        train.shuffle(&mut rng);
        for chunk in train.chunks(64) {
            let b = set.gather(chunk);
            let x = Tensor::from_data(TensorData::new(b.images, [chunk.len(), 64]), &ad);
            let y: Vec<i64> = b.labels.iter().map(|&l| l as i64 - 1).collect();
            let y = Tensor::from_data(TensorData::new(y, [chunk.len()]), &ad);
            let loss = loss_fn.forward(model.forward(x), y);
            let grads = burn::optim::GradientsParams::from_grads(loss.backward(), &model);
            model = optim.step(1e-3, model, grads);
        }
    }
    let model = model.valid();
    let acc = if test.is_empty() {
        f64::NAN
    } else {
        let b = set.gather(test);
        let pred = model.predict(&b.images, device)?;
        pred.iter().zip(&b.labels).filter(|(p, l)| p == l).count() as f64 / test.len() as f64
    };
    Ok((model, acc))
}

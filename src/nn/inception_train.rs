//! Training the FID classifier from scratch, like the course's `train_classifier.py`: the
//! Inception-v3 wrapper with a K-way `final_fc`, on a folder-per-class data set, 256×256
//! PIL-bilinear inputs in [−1, 1], cross-entropy, Adam (lr 1e-3, PyTorch's betas and ε), batch 32,
//! 10 epochs; BatchNorm in training mode (batch statistics, running averages with momentum 0.1).
//! The result is saved as safetensors with PyTorch names, which [`super::inception_load`] reads
//! for FID.
use std::path::{Path, PathBuf};

use burn::nn::loss::CrossEntropyLossConfig;
use burn::optim::{AdamConfig, GradientsParams};
use burn::prelude::*;
use rand::seq::SliceRandom;
use rayon::prelude::*;

use super::inception::{InceptionKind, InceptionV3};
use super::inception_load::save_inception_safetensors;
use crate::data::image_io::{list_images, load_rgb, resize_bilinear_pil, to_chw_pm1};
use crate::{Error, Result};

/// Settings of [`train_classifier`]; the defaults are the reference protocol.
#[derive(Debug, Clone)]
pub struct ClassifierTrainConfig {
    /// Passes over the training images.
    pub epochs: usize,
    /// Images per step.
    pub batch_size: usize,
    /// Adam learning rate.
    pub lr: f64,
    /// Input side length (≥ 75).
    pub image_size: u32,
    /// Seed of the per-epoch shuffles.
    pub seed: u64,
    /// Stop after this many steps (for smoke tests); `None` runs all epochs.
    pub max_steps: Option<usize>,
    /// Show a progress bar on stderr.
    pub progress: bool,
}

impl Default for ClassifierTrainConfig {
    fn default() -> Self {
        Self {
            epochs: 10,
            batch_size: 32,
            lr: 1e-3,
            image_size: 256,
            seed: 0,
            max_steps: None,
            progress: true,
        }
    }
}

/// What a training run did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ClassifierReport {
    /// Class names in label order (label i = `classes[i]`).
    pub classes: Vec<String>,
    /// Images per class.
    pub counts: Vec<usize>,
    /// Optimisation steps taken.
    pub steps: usize,
    /// Mean cross-entropy of the last epoch (or of the steps taken).
    pub last_loss: f64,
    /// Training accuracy over the same steps.
    pub last_accuracy: f64,
}

/// The classes of a folder-per-class data set: `ROOT/train/<class>/…` when `ROOT/train` exists,
/// else `ROOT/<class>/…`; class names are the sorted sub-folder names and labels are 0 … K−1;
/// images are found recursively in each. Folders without images are skipped.
pub fn class_folders(root: &Path) -> Result<Vec<(String, Vec<PathBuf>)>> {
    let base = if root.join("train").is_dir() {
        root.join("train")
    } else {
        root.to_path_buf()
    };
    let rd = std::fs::read_dir(&base).map_err(|e| Error::io(&base, e))?;
    let mut dirs: Vec<PathBuf> = rd
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    let mut out = Vec::new();
    for d in dirs {
        let files = list_images(&d)?;
        if !files.is_empty() {
            let name = d
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            out.push((name, files));
        }
    }
    if out.len() < 2 {
        return Err(Error::bad_file(
            &base,
            format!(
                "expected at least 2 class folders with images, found {}",
                out.len()
            ),
        ));
    }
    Ok(out)
}

/// Trains the Inception-v3 classifier on `root` (see [`class_folders`]) and saves it to `out`
/// (safetensors). Any unreadable image is an error naming it.
pub fn train_classifier(
    root: &Path,
    out: &Path,
    cfg: &ClassifierTrainConfig,
) -> Result<ClassifierReport> {
    if cfg.image_size < 75 {
        return Err(Error::invalid(
            "classifier.image_size",
            "Inception-v3 needs at least 75 px",
        ));
    }
    if cfg.batch_size == 0 || cfg.epochs == 0 {
        return Err(Error::invalid(
            "classifier",
            "batch size and epochs must be at least 1",
        ));
    }
    let classes = class_folders(root)?;
    let samples: Vec<(PathBuf, i64)> = classes
        .iter()
        .enumerate()
        .flat_map(|(k, (_, files))| files.iter().map(move |f| (f.clone(), k as i64)))
        .collect();
    let dev = Device::flex().autodiff();
    // The initial weights come from the backend's generator: seed it, so that the same seed
    // and data train the same classifier (it was seeded from the clock before).
    dev.seed(cfg.seed);
    let mut model = InceptionV3::new(InceptionKind::Torchvision, classes.len(), &dev);
    let mut opt = AdamConfig::new()
        .with_beta_1(0.9)
        .with_beta_2(0.999)
        .with_epsilon(1e-8)
        .init();
    let loss_fn = CrossEntropyLossConfig::new().init(&dev);
    let s = cfg.image_size;
    let steps_per_epoch = samples.len().div_ceil(cfg.batch_size);
    let total = cfg
        .max_steps
        .unwrap_or(usize::MAX)
        .min(steps_per_epoch * cfg.epochs);
    let bar = cfg.progress.then(|| {
        let b = indicatif::ProgressBar::new(total as u64);
        b.set_style(
            indicatif::ProgressStyle::with_template("{msg} [{bar:40}] {pos}/{len} steps eta {eta}")
                .expect("valid template"),
        );
        b
    });
    let mut rng = crate::rng::seeded(cfg.seed, 11);
    let mut order: Vec<usize> = (0..samples.len()).collect();
    let (mut step, mut loss_sum, mut correct, mut seen, mut n_loss) =
        (0usize, 0f64, 0usize, 0usize, 0usize);
    'outer: for epoch in 0..cfg.epochs {
        if step >= total {
            break;
        }
        order.shuffle(&mut rng);
        (loss_sum, correct, seen, n_loss) = (0.0, 0, 0, 0);
        for chunk in order.chunks(cfg.batch_size) {
            if step >= total {
                break 'outer;
            }
            let imgs: Result<Vec<Vec<f32>>> = chunk
                .par_iter()
                .map(|&i| {
                    Ok(to_chw_pm1(&resize_bilinear_pil(
                        &load_rgb(&samples[i].0)?,
                        s,
                        s,
                    )))
                })
                .collect();
            let b = chunk.len();
            let x = Tensor::<4>::from_data(
                TensorData::new(imgs?.concat(), [b, 3, s as usize, s as usize]),
                &dev,
            );
            let labels: Vec<i64> = chunk.iter().map(|&i| samples[i].1).collect();
            let y = Tensor::<1, Int>::from_data(TensorData::new(labels.clone(), [b]), &dev);
            let logits = model.logits(x);
            let pred: Vec<i64> = logits.clone().argmax(1).into_data().iter::<i64>().collect();
            correct += pred.iter().zip(&labels).filter(|(p, l)| p == l).count();
            seen += b;
            let loss = loss_fn.forward(logits, y);
            let lv: f64 = loss.clone().into_scalar::<f32>() as f64;
            loss_sum += lv;
            n_loss += 1;
            let grads = GradientsParams::from_grads(loss.backward(), &model);
            model = opt.step(cfg.lr, model, grads);
            step += 1;
            if let Some(bar) = &bar {
                bar.set_message(format!("epoch {} loss {lv:.4}", epoch + 1));
                bar.inc(1);
            }
        }
    }
    if let Some(bar) = bar {
        bar.finish();
    }
    save_inception_safetensors(&model, out)?;
    Ok(ClassifierReport {
        counts: classes.iter().map(|(_, f)| f.len()).collect(),
        classes: classes.into_iter().map(|(n, _)| n).collect(),
        steps: step,
        last_loss: if n_loss > 0 {
            loss_sum / n_loss as f64
        } else {
            f64::NAN
        },
        last_accuracy: if seen > 0 {
            correct as f64 / seen as f64
        } else {
            0.0
        },
    })
}

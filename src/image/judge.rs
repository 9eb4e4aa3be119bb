//! Judging digit samples with the evaluation classifier trained on the real digits: a samples
//! folder (`image judge`), and the digits runs that the sweeps and the inversion study load.
use std::path::Path;

use burn::prelude::*;

use super::ImageCheckpointMeta;
use crate::data::labels::{read_labels, LabelRow};
use crate::metrics::digit_frechet::{DigitJudge, Judgement, RealFloor};
use crate::nn::unet::UNet;
use crate::{Error, Result};

/// Whether a run generates the bundled digits (1×8×8, 10 classes).
pub fn is_digits(meta: &ImageCheckpointMeta) -> bool {
    let u = &meta.config.unet;
    (u.in_channels, u.image_size, u.num_classes) == (1, 8, 10)
}

/// A trained digits run and the judge that scores its samples.
pub struct DigitsRun {
    pub model: UNet,
    pub meta: ImageCheckpointMeta,
    pub judge: DigitJudge,
}

/// Loads the run at `ckpt` (its EMA weights when present); refuses a run of other images.
pub fn load_digits_run(ckpt: &Path, device: &Device) -> Result<(UNet, ImageCheckpointMeta)> {
    let (model, meta) = super::load(ckpt, false, device)?;
    if !is_digits(&meta) {
        return Err(Error::bad_file(
            ckpt,
            "not a digits run (expected 1×8×8 images and 10 classes)",
        ));
    }
    Ok((model, meta))
}

impl DigitsRun {
    /// The run at `ckpt` ([`load_digits_run`]) and the standard judge.
    pub fn load(ckpt: &Path, device: &Device) -> Result<Self> {
        let (model, meta) = load_digits_run(ckpt, device)?;
        let judge = DigitJudge::standard(device)?;
        Ok(Self { model, meta, judge })
    }
}

/// What `image judge` finds in a samples folder.
pub struct FolderJudgement {
    /// Samples listed in `labels.csv`.
    pub n: usize,
    pub judgement: Judgement,
    /// The real-vs-real Fréchet floor at the same sample count.
    pub floor: RealFloor,
    /// `labels.csv`'s rows, in the judgement's order.
    pub rows: Vec<LabelRow>,
}

impl FolderJudgement {
    /// One CSV row per sample, `file,class,predicted,recognised`: the digit the classifier sees
    /// in each image, so the samples it does not recognise can be looked at.
    pub fn per_image_csv(&self) -> Vec<u8> {
        let rows = self
            .rows
            .iter()
            .zip(&self.judgement.predicted)
            .map(|(row, &p)| {
                let predicted = p - 1;
                let recognised = row.class.parse::<usize>().ok() == Some(predicted);
                vec![
                    row.file.clone(),
                    row.class.clone(),
                    predicted.to_string(),
                    (recognised as u8).to_string(),
                ]
            });
        crate::files::csv_bytes(&["file", "class", "predicted", "recognised"], rows)
    }
}

/// Judges a samples folder written by `image sample` on a digits run: every image listed in
/// `DIR/labels.csv` must be an 8×8 digit labelled 0–9.
pub fn judge_folder(dir: &Path, device: &Device) -> Result<FolderJudgement> {
    let csv_path = dir.join("labels.csv");
    let rows = read_labels(&csv_path)?;
    let mut images = Vec::new();
    let mut labels = Vec::new();
    for row in &rows {
        let Some(digit) = row.class.parse::<usize>().ok().filter(|d| *d <= 9) else {
            return Err(Error::bad_file(
                &csv_path,
                format!(
                    "line {}: class `{}` is not a digit 0-9",
                    row.line,
                    crate::error::clip(&row.class, 40)
                ),
            ));
        };
        let path = dir.join(&row.file);
        let img = crate::data::image_io::load_image(&path)?.to_luma8();
        if img.dimensions() != (8, 8) {
            return Err(Error::bad_file(
                &path,
                format!("expected an 8×8 digit, got {:?}", img.dimensions()),
            ));
        }
        images.extend(img.pixels().map(|p| p.0[0] as f32 / 255.0 * 2.0 - 1.0));
        labels.push(digit + 1);
    }
    if labels.len() < 2 {
        return Err(Error::bad_file(
            &csv_path,
            format!(
                "{} sample(s) listed; the Fréchet distance needs at least 2",
                labels.len()
            ),
        ));
    }
    let judge = DigitJudge::standard(device)?;
    Ok(FolderJudgement {
        n: labels.len(),
        judgement: judge.judge(&images, &labels)?,
        floor: judge.real_floor(labels.len(), 0)?,
        rows,
    })
}

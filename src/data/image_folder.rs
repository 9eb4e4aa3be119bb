//! Folder-per-class image data sets (`ROOT/{split}/<class>/*.{png,jpg,jpeg}`), as AFHQ ships.
//!
//! Classes are the sorted sub-folder names of `ROOT/{split}` and get labels 1 … K (0 is the
//! null class of classifier-free guidance). Within a class the image files (found recursively,
//! extension case-insensitive, other files ignored) are sorted by path and the first
//! `max_per_class` kept — the reference's `AFHQDataset`. Each image is decoded to RGB
//! (grayscale replicated, alpha dropped, like PIL's `convert("RGB")`), resized with the
//! PIL-exact bilinear filter of [`image_io`](super::image_io) and scaled to [−1, 1].
//!
//! Unlike the reference (`os.listdir`), plain files directly in `ROOT/{split}` are not classes.
//! A file that cannot be decoded is skipped with a warning naming it, or is an error with
//! `strict`; it is not replaced by the next file, so a class can end up below the cap.
use std::path::{Path, PathBuf};

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use super::image_io::{list_images, load_rgb, resize_bilinear_pil, to_chw_pm1};
use super::image_set::ImageSet;
use crate::{Error, Result};

/// How to read an image folder.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ImageFolderConfig {
    /// Sub-folder of the root to read (`train`, `val`, …).
    pub split: String,
    /// Images are resized to `size`×`size` (the training resolution).
    pub size: usize,
    /// Keep the first `max_per_class` files of each class (sorted by path); 0 keeps all.
    pub max_per_class: usize,
    /// Fail on the first unreadable image instead of skipping it with a warning.
    pub strict: bool,
}

impl Default for ImageFolderConfig {
    fn default() -> Self {
        Self {
            split: "train".into(),
            size: 64,
            max_per_class: 3000,
            strict: false,
        }
    }
}

/// A file that was skipped, and why.
#[derive(Debug, Clone)]
pub struct Skipped {
    pub path: PathBuf,
    pub reason: String,
}

/// The class folders of `dir`, sorted by name: (name, path).
pub fn class_folders(dir: &Path) -> Result<Vec<(String, PathBuf)>> {
    let meta = std::fs::metadata(dir).map_err(|e| Error::io(dir, e))?;
    if !meta.is_dir() {
        return Err(Error::bad_file(
            dir,
            "expected a directory with one sub-folder per class",
        ));
    }
    let mut classes = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))? {
        let entry = entry.map_err(|e| Error::io(dir, e))?;
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with('.')
            || !std::fs::metadata(&path)
                .map(|m| m.is_dir())
                .unwrap_or(false)
        {
            continue;
        }
        classes.push((name, path));
    }
    classes.sort();
    if classes.is_empty() {
        return Err(Error::bad_file(
            dir,
            "no class sub-folders found (expected ROOT/<split>/<class>/*.png|jpg)",
        ));
    }
    Ok(classes)
}

/// Reads `root/{split}` (see the module docs); warnings for skipped files go to stderr.
pub fn load_image_folder(root: &Path, cfg: &ImageFolderConfig) -> Result<ImageSet> {
    let (set, skipped) = load_image_folder_report(root, cfg)?;
    for s in &skipped {
        eprintln!("warning: skipping {}: {}", s.path.display(), s.reason);
    }
    Ok(set)
}

/// Like [`load_image_folder`], returning the skipped files instead of printing them.
pub fn load_image_folder_report(
    root: &Path,
    cfg: &ImageFolderConfig,
) -> Result<(ImageSet, Vec<Skipped>)> {
    if cfg.size == 0 {
        return Err(Error::invalid("image size", "must be positive"));
    }
    let classes = class_folders(&root.join(&cfg.split))?;
    let mut files: Vec<(PathBuf, usize)> = Vec::new();
    for (i, (name, dir)) in classes.iter().enumerate() {
        let mut list = list_images(dir)?;
        if list.is_empty() {
            return Err(Error::bad_file(
                dir,
                format!("class folder '{name}' contains no png/jpg/jpeg images"),
            ));
        }
        if cfg.max_per_class > 0 {
            list.truncate(cfg.max_per_class);
        }
        files.extend(list.into_iter().map(|p| (p, i + 1)));
    }
    let size = cfg.size as u32;
    // Decode in parallel; `collect` keeps the (class, file) order whatever the scheduling.
    let decoded: Vec<(PathBuf, usize, Result<Vec<f32>>)> = files
        .into_par_iter()
        .map(|(path, label)| {
            let r = load_rgb(&path).map(|img| to_chw_pm1(&resize_bilinear_pil(&img, size, size)));
            (path, label, r)
        })
        .collect();
    let per = 3 * cfg.size * cfg.size;
    let mut images = Vec::with_capacity(decoded.len() * per);
    let mut labels = Vec::with_capacity(decoded.len());
    let mut skipped = Vec::new();
    for (path, label, r) in decoded {
        match r {
            Ok(px) => {
                images.extend_from_slice(&px);
                labels.push(label);
            }
            Err(e) if cfg.strict => return Err(e),
            Err(e) => skipped.push(Skipped {
                path,
                reason: e.to_string(),
            }),
        }
    }
    if labels.is_empty() {
        return Err(Error::bad_file(root.join(&cfg.split), "no readable images"));
    }
    let set = ImageSet {
        images,
        labels,
        class_names: classes.into_iter().map(|(n, _)| n).collect(),
        channels: 3,
        height: cfg.size,
        width: cfg.size,
    };
    Ok((set, skipped))
}

/// What [`prepare_eval`] did.
#[derive(Debug, Clone, Default)]
pub struct EvalReport {
    /// Images written to `ROOT/eval/`.
    pub written: usize,
    pub skipped: Vec<Skipped>,
}

/// Builds `ROOT/eval/` (flat) from every image of every class of `ROOT/val/`, resized to
/// `size`×`size`, for FID against generated samples.
///
/// Differences from the reference's `dataset.py` (which copied each file, resized it with
/// PIL's default BICUBIC filter and re-saved it as JPEG quality 75 under the same name):
/// we resize with the same PIL-exact *bilinear* filter as the training data and write
/// lossless PNG (`<class>_<stem>.png`, de-duplicated with a numeric suffix), so the eval set
/// carries no JPEG re-compression artefacts and matches what the model was trained on.
/// FID values are therefore close to, but not bit-comparable with, the reference's.
/// Existing files in `ROOT/eval/` with the same names are overwritten; others are kept.
pub fn prepare_eval(root: &Path, size: usize) -> Result<EvalReport> {
    if size == 0 {
        return Err(Error::invalid("image size", "must be positive"));
    }
    let classes = class_folders(&root.join("val"))?;
    let out_dir = root.join("eval");
    std::fs::create_dir_all(&out_dir).map_err(|e| Error::io(&out_dir, e))?;
    let mut jobs: Vec<(PathBuf, PathBuf)> = Vec::new();
    let mut used = std::collections::HashSet::new();
    for (name, dir) in &classes {
        for path in list_images(dir)? {
            let stem = path
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default();
            let mut file = format!("{name}_{stem}.png");
            let mut k = 1;
            while !used.insert(file.clone()) {
                file = format!("{name}_{stem}_{k}.png");
                k += 1;
            }
            jobs.push((path, out_dir.join(file)));
        }
    }
    let s = size as u32;
    // An unreadable source image is skipped; failing to write is an error.
    let results: Vec<Option<Skipped>> = jobs
        .into_par_iter()
        .map(|(src, dst)| -> Result<Option<Skipped>> {
            let img = match load_rgb(&src) {
                Ok(img) => img,
                Err(e) => {
                    return Ok(Some(Skipped {
                        path: src,
                        reason: e.to_string(),
                    }))
                }
            };
            resize_bilinear_pil(&img, s, s)
                .save_with_format(&dst, image::ImageFormat::Png)
                .map_err(|e| Error::bad_file(&dst, format!("cannot write PNG: {e}")))?;
            Ok(None)
        })
        .collect::<Result<_>>()?;
    let mut report = EvalReport::default();
    for r in results {
        match r {
            None => report.written += 1,
            Some(s) => {
                eprintln!("warning: skipping {}: {}", s.path.display(), s.reason);
                report.skipped.push(s);
            }
        }
    }
    Ok(report)
}

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
//!
//! [`prepare_eval`] builds the flat FID folder `ROOT/eval/` from `ROOT/val/`, by default exactly
//! as the course's `dataset.py` does (bicubic resize, Pillow's JPEG bytes).
use std::path::{Path, PathBuf};

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use super::image_io::{
    decode_rgb, list_images, load_rgb, resize_bicubic_pil, resize_bilinear_pil, to_chw_pm1,
};
use super::image_set::ImageSet;
use crate::{Error, Result};
use diffuse_jpeg::encode::{comment as jpeg_comment, encode_rgb, EncodeOptions};

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
#[derive(Debug, Clone, Serialize)]
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
    // The split layout of `super::layouts`, with the cap as given.
    let opts = super::layouts::DataOptions {
        layout: Some(super::layouts::Layout::Split),
        split: cfg.split.clone(),
        size: cfg.size,
        max_per_class: Some(cfg.max_per_class),
        strict: cfg.strict,
        resize: Resize::Squash,
    };
    let loaded = super::layouts::load(root, &opts)?;
    Ok((loaded.set, loaded.skipped))
}

/// Where an image's bytes come from: a file, or bytes already read (a zip archive's entry, named
/// by its path inside the archive for messages).
#[derive(Debug, Clone)]
pub enum ImageSource {
    File(PathBuf),
    Bytes { name: PathBuf, bytes: Vec<u8> },
}

impl ImageSource {
    /// The path (or archive entry name) that messages name.
    pub fn name(&self) -> &Path {
        match self {
            ImageSource::File(p) => p,
            ImageSource::Bytes { name, .. } => name,
        }
    }

    fn decode(self) -> Result<image::RgbImage> {
        match self {
            ImageSource::File(p) => load_rgb(&p),
            ImageSource::Bytes { name, bytes } => decode_rgb(&name, bytes),
        }
    }
}

/// How an image whose shape differs from the training resolution is brought to `size`×`size`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
#[serde(rename_all = "kebab-case")]
pub enum Resize {
    /// Resize the whole image to `size`×`size`, changing its aspect ratio if it is not square:
    /// the reference protocol's `transforms.Resize((64, 64))` (PIL bilinear).
    #[default]
    Squash,
    /// Crop the largest centred square first (offsets rounded down, as EDM's `dataset_tool.py
    /// --transform=center-crop`), then resize it (PIL bilinear; EDM uses Lanczos).
    CenterCrop,
}

/// `img` at `size`×`size` under `policy`, with the PIL-exact bilinear filter.
pub fn fit(img: &image::RgbImage, size: u32, policy: Resize) -> image::RgbImage {
    match policy {
        Resize::Squash => resize_bilinear_pil(img, size, size),
        Resize::CenterCrop => {
            let (w, h) = img.dimensions();
            let c = w.min(h);
            let square = image::imageops::crop_imm(img, (w - c) / 2, (h - c) / 2, c, c).to_image();
            resize_bilinear_pil(&square, size, size)
        }
    }
}

/// Decodes `items` (source, label) in parallel into CHW pixels in [−1, 1] at `size`×`size`,
/// keeping their order: (pixels, labels, skipped). An undecodable image is skipped (reported)
/// or, with `strict`, the error.
pub fn decode_labelled(
    items: Vec<(ImageSource, usize)>,
    size: usize,
    resize: Resize,
    strict: bool,
) -> Result<(Vec<f32>, Vec<usize>, Vec<Skipped>)> {
    let s = size as u32;
    // `collect` keeps the input order whatever the scheduling.
    let decoded: Vec<(PathBuf, usize, Result<Vec<f32>>)> = items
        .into_par_iter()
        .map(|(src, label)| {
            let name = src.name().to_path_buf();
            let r = src.decode().map(|img| to_chw_pm1(&fit(&img, s, resize)));
            (name, label, r)
        })
        .collect();
    let per = 3 * size * size;
    let mut images = Vec::with_capacity(decoded.len() * per);
    let mut labels = Vec::with_capacity(decoded.len());
    let mut skipped = Vec::new();
    for (path, label, r) in decoded {
        match r {
            Ok(px) => {
                images.extend_from_slice(&px);
                labels.push(label);
            }
            Err(e) if strict => return Err(e),
            Err(e) => skipped.push(Skipped {
                path,
                reason: e.to_string(),
            }),
        }
    }
    Ok((images, labels, skipped))
}

/// File format of the evaluation folder that [`prepare_eval`] builds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
#[serde(rename_all = "lowercase")]
pub enum EvalFormat {
    /// The course's folder (`python dataset.py`): each file under its own name, resized with
    /// Pillow's default filter (bicubic) and re-saved by extension, so `.jpg` files become
    /// JPEG at Pillow's default quality 75, byte for byte what Pillow writes.
    #[default]
    Jpeg,
    /// Lossless PNGs (`<class>_<stem>.png`) resized with the PIL-exact bilinear filter of the
    /// training data: no re-compression artefacts, but FID against it is not the course's.
    Png,
}

/// How [`prepare_eval`] builds `ROOT/eval/`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PrepareEvalConfig {
    /// Images are resized to `size`×`size` (the course: 64).
    pub size: usize,
    /// The course's JPEG folder or a lossless PNG one.
    pub format: EvalFormat,
    /// Fail on the first unreadable source image instead of skipping it (the policy of
    /// [`ImageFolderConfig::strict`], the same `--strict` flag).
    pub strict: bool,
}

impl Default for PrepareEvalConfig {
    fn default() -> Self {
        Self {
            size: 64,
            format: EvalFormat::default(),
            strict: false,
        }
    }
}

/// What [`prepare_eval`] did.
#[derive(Debug, Clone, Default)]
pub struct EvalReport {
    /// Images written to `ROOT/eval/`.
    pub written: usize,
    /// The folder they were written to.
    pub out_dir: PathBuf,
    /// Source images that could not be decoded and were skipped (empty with `strict`).
    pub skipped: Vec<Skipped>,
}

/// Is `path` named like a JPEG (`.jpg`/`.jpeg`, any case)? Pillow's `save` picks the format
/// from the extension.
fn jpeg_named(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| e.eq_ignore_ascii_case("jpg") || e.eq_ignore_ascii_case("jpeg"))
}

/// The course's step for one file: Pillow's `img.resize((size, size))` (bicubic) and
/// `img.save(path)` with the format the name says: JPEG on Pillow's defaults (quality 75,
/// 4:2:0, the source's JPEG comment carried over), or PNG (lossless, so only the pixels matter).
fn write_course_image(src: &Path, img: &image::RgbImage, dst: &Path, size: u32) -> Result<()> {
    let small = resize_bicubic_pil(img, size, size);
    if jpeg_named(dst) {
        let bytes = std::fs::read(src).map_err(|e| Error::io(src, e))?;
        let opts = EncodeOptions {
            comment: if bytes.starts_with(&[0xFF, 0xD8]) {
                jpeg_comment(&bytes)
            } else {
                Vec::new()
            },
            ..EncodeOptions::default()
        };
        let jpg = encode_rgb(size as usize, size as usize, small.as_raw(), &opts)
            .map_err(|e| Error::bad_file(dst, format!("cannot encode JPEG: {e}")))?;
        std::fs::write(dst, jpg).map_err(|e| Error::io(dst, e))
    } else {
        small
            .save_with_format(dst, image::ImageFormat::Png)
            .map_err(|e| Error::bad_file(dst, format!("cannot write PNG: {e}")))
    }
}

/// Builds `ROOT/eval/` (flat) from every image of every class of `ROOT/val/` (class folders
/// searched recursively), for FID against generated samples.
///
/// [`EvalFormat::Jpeg`] (the default) reproduces the course's `dataset.py`: every file keeps
/// its own name, is resized to `size`×`size` with Pillow's default bicubic filter and saved in
/// the format of its extension (`.jpg` → JPEG quality 75 through [`encode_rgb`], identical
/// bytes to Pillow's), so FID against this folder is the course's FID. Two files with the same
/// name in different classes are an error (the course would silently keep one). Sources are
/// decoded to RGB first; Pillow would resize grayscale or CMYK JPEGs in their own mode, which
/// for grayscale gives the same decoded pixels in a different file.
///
/// [`EvalFormat::Png`] writes lossless `<class>_<stem>.png` (numbered on collision) resized
/// with the bilinear filter of the training data.
///
/// An image that cannot be decoded is skipped (returned in [`EvalReport::skipped`]), or with
/// `strict` is an error naming it, as training treats its folders; a file that cannot be
/// written is always an error. Existing files that this run writes are
/// replaced; other images already in `ROOT/eval/` are an error, since FID would count them.
pub fn prepare_eval(root: &Path, cfg: &PrepareEvalConfig) -> Result<EvalReport> {
    if cfg.size == 0 || cfg.size > 65535 {
        return Err(Error::invalid("eval.size", "must be between 1 and 65535"));
    }
    if !root.join("val").is_dir() {
        return Err(Error::bad_file(
            root,
            "no val/ folder: prepare-eval reads ROOT/val/<class>/*.jpg|png",
        ));
    }
    let classes = class_folders(&root.join("val"))?;
    let out_dir = root.join("eval");
    let mut jobs: Vec<(PathBuf, PathBuf)> = Vec::new();
    let mut used: std::collections::HashMap<String, PathBuf> = Default::default();
    for (name, dir) in &classes {
        for path in list_images(dir)? {
            let file = match cfg.format {
                EvalFormat::Jpeg => {
                    let file = path
                        .file_name()
                        .map(|s| s.to_string_lossy().into_owned())
                        .unwrap_or_default();
                    if let Some(first) = used.get(&file) {
                        return Err(Error::bad_file(
                            &path,
                            format!(
                                "has the same file name as {}; the course's flat eval folder \
                                 keeps one name per image (rename one, or use --format png)",
                                first.display()
                            ),
                        ));
                    }
                    file
                }
                EvalFormat::Png => {
                    let stem = path
                        .file_stem()
                        .map(|s| s.to_string_lossy().into_owned())
                        .unwrap_or_default();
                    let mut file = format!("{name}_{stem}.png");
                    let mut k = 1;
                    while used.contains_key(&file) {
                        file = format!("{name}_{stem}_{k}.png");
                        k += 1;
                    }
                    file
                }
            };
            used.insert(file.clone(), path.clone());
            jobs.push((path, out_dir.join(file)));
        }
    }
    if out_dir.exists() {
        let foreign: Vec<PathBuf> = list_images(&out_dir)?
            .into_iter()
            .filter(|p| {
                p.parent() != Some(out_dir.as_path())
                    || !p
                        .file_name()
                        .is_some_and(|f| used.contains_key(&*f.to_string_lossy()))
            })
            .collect();
        if let Some(first) = foreign.first() {
            return Err(Error::bad_file(
                &out_dir,
                format!(
                    "already holds {} image(s) this run would not write (e.g. {}), which FID \
                     would count; remove them or the folder first",
                    foreign.len(),
                    first.display()
                ),
            ));
        }
    }
    std::fs::create_dir_all(&out_dir).map_err(|e| Error::io(&out_dir, e))?;
    let s = cfg.size as u32;
    let skipped: Vec<Skipped> = jobs
        .into_par_iter()
        .map(|(src, dst)| {
            let img = match load_rgb(&src) {
                Ok(img) => img,
                Err(e) if cfg.strict => return Err(e),
                Err(e) => {
                    return Ok(Some(Skipped {
                        reason: e.to_string(),
                        path: src,
                    }))
                }
            };
            match cfg.format {
                EvalFormat::Jpeg => write_course_image(&src, &img, &dst, s),
                EvalFormat::Png => resize_bilinear_pil(&img, s, s)
                    .save_with_format(&dst, image::ImageFormat::Png)
                    .map_err(|e| Error::bad_file(&dst, format!("cannot write PNG: {e}"))),
            }?;
            Ok(None)
        })
        .collect::<Result<Vec<Option<Skipped>>>>()?
        .into_iter()
        .flatten()
        .collect();
    Ok(EvalReport {
        written: used.len() - skipped.len(),
        out_dir,
        skipped,
    })
}

//! From image folders to FID: decoding and resizing on worker threads while the Inception
//! network runs, statistics, optional KID, and saving/loading statistics.
//!
//! Reference mode reproduces the course's `measure_fid.py`: every png/jpg/jpeg found
//! recursively → RGB → PIL-bilinear resize to 256×256 → [−1, 1] → torchvision Inception-v3
//! (StarGAN-v2 wrapper, e.g. `afhq_inception_v3.ckpt`) → 2048 pooled features.
//! Standard mode reproduces pytorch-fid: RGB → [0, 1] → torch bilinear resize to 299×299
//! (`align_corners=False`, no antialias) → 2x − 1 → pytorch-fid's Inception (its
//! `pt_inception-2015-12-05-*.pth` weights).
use std::path::{Path, PathBuf};
use std::sync::mpsc::sync_channel;
use std::time::Instant;

use burn::prelude::*;
use rayon::prelude::*;

use super::fid::{frechet_distance, kid, load_stats, save_stats, FeatureStats, Kid};
use crate::data::image_folder::Skipped;
use crate::data::image_io::{list_images, load_rgb, resize_bilinear_pil, to_chw_pm1};
use crate::nn::inception::{InceptionKind, InceptionV3, FEATURE_DIM};
use crate::nn::inception_load::load_inception;
use crate::{Error, Result};

/// Which FID convention to follow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
#[serde(rename_all = "lowercase")]
pub enum FidMode {
    /// The course's FID: torchvision Inception-v3 wrapper, PIL bilinear 256×256, [−1, 1].
    #[default]
    Reference,
    /// pytorch-fid's FID: its patched Inception, torch bilinear 299×299, 2x − 1.
    Standard,
}

impl FidMode {
    /// The input side length this mode uses by default (256 reference, 299 standard).
    pub fn default_image_size(self) -> u32 {
        match self {
            FidMode::Reference => 256,
            FidMode::Standard => 299,
        }
    }

    fn kind(self) -> InceptionKind {
        match self {
            FidMode::Reference => InceptionKind::Torchvision,
            FidMode::Standard => InceptionKind::PytorchFid,
        }
    }

    fn name(self) -> &'static str {
        match self {
            FidMode::Reference => "reference",
            FidMode::Standard => "standard",
        }
    }
}

/// Options of [`fid_between`].
#[derive(Debug, Clone)]
pub struct FidOptions {
    /// Inception weights: a PyTorch checkpoint (.pt/.pth/.ckpt) or safetensors file.
    pub weights: PathBuf,
    /// Reference (course) or standard (pytorch-fid) convention.
    pub mode: FidMode,
    /// Images per network batch (memory grows linearly with it).
    pub batch_size: usize,
    /// Input side length; `None` uses the mode's default (256 reference, 299 standard).
    /// Must be at least 75 (Inception-v3's smallest valid input).
    pub image_size: Option<u32>,
    /// Where to save the first (ground-truth) set's statistics, for reuse as `gt`.
    pub save_stats: Option<PathBuf>,
    /// Also compute KID (needs features of both sets, so not with statistics files).
    pub kid: bool,
    /// KID: number of random subsets.
    pub kid_subsets: usize,
    /// KID: rows per subset (capped by the smaller set).
    pub kid_subset_size: usize,
    /// Seed of the KID subset draws.
    pub seed: u64,
    /// Show a progress bar on stderr.
    pub progress: bool,
    /// Device the network runs on.
    pub device: crate::device::DeviceSpec,
    /// Fail on the first unreadable image of a folder instead of skipping it (the policy of
    /// training's and `prepare-eval`'s folders, the same `--strict` flag).
    pub strict: bool,
}

impl Default for FidOptions {
    fn default() -> Self {
        Self {
            weights: PathBuf::from("afhq_inception_v3.ckpt"),
            mode: FidMode::Reference,
            batch_size: 32,
            image_size: None,
            save_stats: None,
            kid: false,
            kid_subsets: 100,
            kid_subset_size: 1000,
            seed: 0,
            progress: true,
            device: crate::device::DeviceSpec::default(),
            strict: false,
        }
    }
}

impl FidOptions {
    /// The effective input size, validated.
    pub fn resolved_image_size(&self) -> Result<u32> {
        let s = self.image_size.unwrap_or(self.mode.default_image_size());
        if s < 75 {
            return Err(Error::invalid(
                "fid.image_size",
                format!("{s} is below Inception-v3's minimum input of 75 px"),
            ));
        }
        Ok(s)
    }

    /// The metadata saved with statistics computed under these options.
    pub fn meta(&self, size: u32) -> serde_json::Value {
        serde_json::json!({
            "mode": self.mode.name(),
            "image_size": size,
            "weights": self.weights.file_name().map(|f| f.to_string_lossy().into_owned()),
        })
    }
}

/// What [`fid_between`] measured.
#[derive(Debug, Clone, serde::Serialize)]
pub struct FidReport {
    /// The Fréchet distance.
    pub fid: f64,
    /// KID mean and standard deviation over subsets, when requested.
    pub kid: Option<Kid>,
    /// Images (or samples behind a statistics file; 0 when the file does not say) in the first set.
    pub n_gt: usize,
    /// Images (or samples behind a statistics file) in the second set.
    pub n_gen: usize,
    pub mode: FidMode,
    pub image_size: u32,
    /// Wall-clock seconds for feature extraction (both sets).
    pub feature_seconds: f64,
    /// Images per second of feature extraction (decode + resize + network).
    pub images_per_second: f64,
    /// Images of the folders that could not be decoded and were skipped (not counted in
    /// `n_gt`/`n_gen`; empty with `strict`).
    pub skipped: Vec<crate::data::image_folder::Skipped>,
}

/// How images become network input.
#[derive(Debug, Clone, Copy)]
pub struct Preprocess {
    pub mode: FidMode,
    pub size: u32,
}

impl Preprocess {
    /// Decodes and converts one image to a `[3, size, size]` buffer.
    pub fn load(&self, path: &Path) -> Result<Vec<f32>> {
        let img = load_rgb(path)?;
        Ok(match self.mode {
            FidMode::Reference => to_chw_pm1(&resize_bilinear_pil(&img, self.size, self.size)),
            FidMode::Standard => {
                let (w, h) = (img.width() as usize, img.height() as usize);
                let raw = img.as_raw();
                let s = self.size as usize;
                let mut out = Vec::with_capacity(3 * s * s);
                for c in 0..3 {
                    let plane: Vec<f32> =
                        (0..h * w).map(|i| raw[i * 3 + c] as f32 / 255.0).collect();
                    out.extend(
                        resize_bilinear_torch(&plane, w, h, s, s)
                            .into_iter()
                            .map(|x| 2.0 * x - 1.0),
                    );
                }
                out
            }
        })
    }
}

/// `torch.nn.functional.interpolate(mode="bilinear", align_corners=False)` without antialias
/// on one `h×w` plane: source coordinate (dst + 0.5)·in/out − 0.5 clamped at 0, linear weights
/// between the two neighbouring pixels (the second clamped to the edge).
pub fn resize_bilinear_torch(src: &[f32], w: usize, h: usize, ow: usize, oh: usize) -> Vec<f32> {
    let taps = |n_in: usize, n_out: usize| -> Vec<(usize, usize, f32)> {
        let scale = n_in as f32 / n_out as f32;
        (0..n_out)
            .map(|o| {
                let real = (scale * (o as f32 + 0.5) - 0.5).max(0.0);
                let i0 = (real as usize).min(n_in - 1);
                let i1 = if i0 < n_in - 1 { i0 + 1 } else { i0 };
                (i0, i1, real - i0 as f32)
            })
            .collect()
    };
    let (tx, ty) = (taps(w, ow), taps(h, oh));
    let mut out = Vec::with_capacity(ow * oh);
    for &(y0, y1, ly) in &ty {
        for &(x0, x1, lx) in &tx {
            let p = |y: usize, x: usize| src[y * w + x];
            let top = (1.0 - lx) * p(y0, x0) + lx * p(y0, x1);
            let bot = (1.0 - lx) * p(y1, x0) + lx * p(y1, x1);
            out.push((1.0 - ly) * top + ly * bot);
        }
    }
    out
}

/// What an FID input holds, for the log line `diffuse fid` prints: a folder's image count per
/// extension and the number of folders they sit in, e.g. `12 files (12 .png) in 1 folder`.
pub fn describe_input(path: &Path) -> Result<String> {
    if path.is_file() {
        let (stats, m) = load_stats(path)?;
        let kind = match m["format"].as_str() {
            Some("npz") => "NumPy .npz statistics",
            _ => "diffuse statistics",
        };
        let n = match stats.n {
            0 => "sample count not recorded".to_string(),
            n => format!("{n} samples"),
        };
        let how = match (m["mode"].as_str(), m["image_size"].as_u64()) {
            (Some(mode), Some(size)) => format!("{mode} mode at {size} px"),
            // pytorch-fid's and EDM's files say nothing about how they were computed.
            _ => "no mode or image size recorded (written by another tool): \
                  assumed computed like this run"
                .to_string(),
        };
        return Ok(format!("{kind}, {}-d, {n}, {how}", stats.dim()));
    }
    let files = list_images(path)?;
    let mut by_ext = std::collections::BTreeMap::<String, usize>::new();
    let mut dirs = std::collections::BTreeSet::new();
    for f in &files {
        let ext = f
            .extension()
            .map_or(String::new(), |e| e.to_string_lossy().to_lowercase());
        *by_ext.entry(ext).or_default() += 1;
        dirs.insert(f.parent().map(Path::to_path_buf));
    }
    let exts: Vec<String> = by_ext.iter().map(|(e, n)| format!("{n} .{e}")).collect();
    Ok(format!(
        "{} files ({}) in {} folder{} (searched recursively)",
        files.len(),
        if exts.is_empty() {
            "none".into()
        } else {
            exts.join(", ")
        },
        dirs.len(),
        if dirs.len() == 1 { "" } else { "s" }
    ))
}

/// The images of `dir`, or an error when there are fewer than two.
fn images_of(dir: &Path) -> Result<Vec<PathBuf>> {
    let files = list_images(dir)?;
    match files.len() {
        0 => Err(Error::bad_file(
            dir,
            "no .png/.jpg/.jpeg images found (searched recursively)",
        )),
        1 => Err(Error::bad_file(
            dir,
            "only 1 image found; FID needs at least 2 per set",
        )),
        _ => Ok(files),
    }
}

/// 2048-d features (`[n, 2048]` row-major) of `files`. A producer thread decodes and resizes
/// each batch with rayon while the network runs on the previous one (bounded channel of 2).
/// An image that cannot be decoded is skipped and returned (the second value), or with
/// `strict` stops the run with an error naming it.
pub fn extract_features(
    net: &InceptionV3,
    files: &[PathBuf],
    prep: Preprocess,
    batch_size: usize,
    strict: bool,
    dev: &Device,
    bar: Option<&indicatif::ProgressBar>,
) -> Result<(Vec<f32>, Vec<Skipped>)> {
    let batch_size = batch_size.max(1);
    let s = prep.size as usize;
    type Batch = (Vec<f32>, Vec<Skipped>);
    let (tx, rx) = sync_channel::<Result<Batch>>(2);
    std::thread::scope(|scope| {
        scope.spawn(move || {
            for chunk in files.chunks(batch_size) {
                let loaded: Vec<(PathBuf, Result<Vec<f32>>)> = chunk
                    .par_iter()
                    .map(|p| (p.clone(), prep.load(p)))
                    .collect();
                let mut data = Vec::new();
                let mut skipped = Vec::new();
                let mut err = None;
                for (path, r) in loaded {
                    match r {
                        Ok(v) => data.extend(v),
                        Err(e) if strict => {
                            err = Some(e);
                            break;
                        }
                        Err(e) => skipped.push(Skipped {
                            path,
                            reason: e.to_string(),
                        }),
                    }
                }
                let msg = match err {
                    Some(e) => Err(e),
                    None => Ok((data, skipped)),
                };
                let stop = msg.is_err();
                if tx.send(msg).is_err() || stop {
                    return;
                }
            }
        });
        let mut feats = Vec::with_capacity(files.len() * FEATURE_DIM);
        let mut all_skipped = Vec::new();
        for msg in rx.iter() {
            let (data, skipped) = msg?;
            if let Some(bar) = bar {
                bar.inc(skipped.len() as u64);
            }
            all_skipped.extend(skipped);
            let b = data.len() / (3 * s * s);
            if b == 0 {
                continue;
            }
            let x = Tensor::<4>::from_data(TensorData::new(data, [b, 3, s, s]), dev);
            let f = net.features(x).into_data();
            let f = f.try_to_vec::<f32>().map_err(|e| {
                Error::invalid("features", format!("cannot read network output: {e:?}"))
            })?;
            feats.extend_from_slice(&f);
            if let Some(bar) = bar {
                bar.inc(b as u64);
            }
        }
        Ok((feats, all_skipped))
    })
}

fn progress_bar(n: u64, label: &str, show: bool) -> Option<indicatif::ProgressBar> {
    if !show {
        return None;
    }
    let bar = indicatif::ProgressBar::new(n);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{msg:>8} [{bar:40}] {pos}/{len} images {per_sec} eta {eta}",
        )
        .expect("valid template")
        .progress_chars("=> "),
    );
    bar.set_message(label.to_string());
    Some(bar)
}

/// One side of the comparison: features from a folder, or statistics from a file.
enum Side {
    Features(Vec<f32>),
    Stats(FeatureStats),
}

/// FID (and optionally KID) between two image folders, `gt` and `gen`.
///
/// Either argument may instead be a statistics file ([`super::stats_file::load_stats`]): one
/// written by `opts.save_stats`, whose mode and image size must match `opts`, or a NumPy `.npz`
/// from pytorch-fid or EDM, which records neither and is taken as matching. KID is then not
/// available for that pair. `opts.save_stats` writes `.npz` when its extension is `.npz`.
pub fn fid_between(gt: &Path, gen: &Path, opts: &FidOptions) -> Result<FidReport> {
    let size = opts.resolved_image_size()?;
    if opts.batch_size == 0 {
        return Err(Error::invalid("fid.batch_size", "must be at least 1"));
    }
    let meta = opts.meta(size);
    // Validate inputs before loading the network.
    let mut plan = Vec::new();
    for p in [gt, gen] {
        if p.is_file() {
            let (stats, m) = load_stats(p)?;
            // A file from another tool (pytorch-fid, EDM) records no mode or size: it is taken
            // as computed like this run (`describe_input` says so). diffuse's own files must
            // match, so that reference and standard statistics are never compared.
            let foreign = m.get("mode").is_none();
            if !foreign && (m["mode"] != meta["mode"] || m["image_size"] != meta["image_size"]) {
                return Err(Error::bad_file(
                    p,
                    format!(
                        "statistics were computed with mode {} at {} px, but this run uses mode {} at {} px",
                        m["mode"], m["image_size"], meta["mode"], meta["image_size"]
                    ),
                ));
            }
            if stats.dim() != FEATURE_DIM {
                return Err(Error::bad_file(
                    p,
                    format!(
                        "holds {}-dimensional statistics, but FID compares {FEATURE_DIM}-d \
                         Inception-v3 features",
                        stats.dim()
                    ),
                ));
            }
            plan.push(Err(stats));
        } else {
            plan.push(Ok(images_of(p)?));
        }
    }
    let dev = crate::device::open(&opts.device)?;
    let needs_net = plan.iter().any(|p| p.is_ok());
    let net = if needs_net {
        Some(load_inception(&opts.weights, opts.mode.kind(), &dev)?)
    } else {
        None
    };
    let prep = Preprocess {
        mode: opts.mode,
        size,
    };
    let t0 = Instant::now();
    let mut n_images = 0usize;
    let mut sides = Vec::new();
    let mut all_skipped = Vec::new();
    for (item, label) in plan.into_iter().zip(["gt", "gen"]) {
        sides.push(match item {
            Err(stats) => Side::Stats(stats),
            Ok(files) => {
                let bar = progress_bar(files.len() as u64, label, opts.progress);
                let net = net.as_ref().expect("network loaded when a folder is given");
                let (f, skipped) = extract_features(
                    net,
                    &files,
                    prep,
                    opts.batch_size,
                    opts.strict,
                    &dev,
                    bar.as_ref(),
                )?;
                if let Some(b) = bar {
                    b.finish();
                }
                n_images += files.len() - skipped.len();
                all_skipped.extend(skipped);
                Side::Features(f)
            }
        });
    }
    let secs = t0.elapsed().as_secs_f64();
    let stats: Vec<FeatureStats> = sides
        .iter()
        .map(|s| match s {
            Side::Features(f) => FeatureStats::from_features(f, FEATURE_DIM),
            Side::Stats(st) => Ok(st.clone()),
        })
        .collect::<Result<_>>()?;
    if let Some(path) = &opts.save_stats {
        save_stats(path, &stats[0], &meta)?;
    }
    let fid = frechet_distance(&stats[0], &stats[1])?;
    let kid = match (opts.kid, &sides[0], &sides[1]) {
        (true, Side::Features(a), Side::Features(b)) => Some(kid(
            a,
            b,
            FEATURE_DIM,
            opts.kid_subsets,
            opts.kid_subset_size,
            opts.seed,
        )?),
        _ => None,
    };
    Ok(FidReport {
        fid,
        kid,
        n_gt: stats[0].n,
        n_gen: stats[1].n,
        skipped: all_skipped,
        mode: opts.mode,
        image_size: size,
        feature_seconds: secs,
        images_per_second: if secs > 0.0 {
            n_images as f64 / secs
        } else {
            0.0
        },
    })
}

/// Statistics of one folder (for `--save-stats` without a comparison).
pub fn folder_stats(dir: &Path, opts: &FidOptions) -> Result<FeatureStats> {
    let size = opts.resolved_image_size()?;
    let files = images_of(dir)?;
    let dev = crate::device::open(&opts.device)?;
    let net = load_inception(&opts.weights, opts.mode.kind(), &dev)?;
    let bar = progress_bar(files.len() as u64, "images", opts.progress);
    let (f, skipped) = extract_features(
        &net,
        &files,
        Preprocess {
            mode: opts.mode,
            size,
        },
        opts.batch_size,
        opts.strict,
        &dev,
        bar.as_ref(),
    )?;
    for s in &skipped {
        eprintln!("warning: skipping {}: {}", s.path.display(), s.reason);
    }
    let stats = FeatureStats::from_features(&f, FEATURE_DIM)?;
    if let Some(path) = &opts.save_stats {
        save_stats(path, &stats, &opts.meta(size))?;
    }
    Ok(stats)
}

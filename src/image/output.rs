//! What the image commands write: sample folders (`DIR/{i}.png` + `labels.csv`) and grids.
use std::path::{Path, PathBuf};

use crate::files::{ensure_dir, ensure_parent};
use crate::{Error, Result};

/// x ∈ [−1, 1] → round(clamp(x/2 + 1/2, 0, 1)·255), the reference's `tensor_to_pil_image`.
pub fn to_u8(v: f32) -> u8 {
    ((v * 0.5 + 0.5).clamp(0.0, 1.0) * 255.0).round() as u8
}

/// One [C, H, W] image as an 8-bit PNG-ready image (gray for C = 1).
pub fn to_image(pixels: &[f32], (c, h, w): (usize, usize, usize)) -> image::DynamicImage {
    if c == 1 {
        image::DynamicImage::ImageLuma8(image::GrayImage::from_fn(w as u32, h as u32, |x, y| {
            image::Luma([to_u8(pixels[y as usize * w + x as usize])])
        }))
    } else {
        image::DynamicImage::ImageRgb8(image::RgbImage::from_fn(w as u32, h as u32, |x, y| {
            let at = |ch: usize| to_u8(pixels[ch * h * w + y as usize * w + x as usize]);
            image::Rgb([at(0), at(1), at(2.min(c - 1))])
        }))
    }
}

/// Saves images side by side, `cols` per row (row = class in our grids), with 2-px gaps.
pub fn save_grid(
    path: &Path,
    images: &[f32],
    shape: (usize, usize, usize),
    cols: usize,
) -> Result<()> {
    let (c, h, w) = shape;
    let n = images.len() / (c * h * w);
    let rows = n.div_ceil(cols.max(1));
    let (gw, gh) = ((cols * (w + 2)) as u32, (rows * (h + 2)) as u32);
    let mut grid = image::RgbImage::from_pixel(gw, gh, image::Rgb([255, 255, 255]));
    for i in 0..n {
        let img = to_image(&images[i * c * h * w..(i + 1) * c * h * w], shape).to_rgb8();
        let (x0, y0) = ((i % cols) * (w + 2) + 1, (i / cols) * (h + 2) + 1);
        image::imageops::replace(&mut grid, &img, x0 as i64, y0 as i64);
    }
    // Small images are hard to see: enlarge the grid by an integer factor up to ~512 px.
    let scale = (512 / gw.max(gh)).max(1);
    let grid = image::imageops::resize(
        &grid,
        gw * scale,
        gh * scale,
        image::imageops::FilterType::Nearest,
    );
    ensure_parent(path)?;
    grid.save(path)
        .map_err(|e| Error::bad_file(path, format!("could not write PNG: {e}")))
}

/// Writes `DIR/{i}.png` for every image and `DIR/labels.csv` (`file,class`).
pub fn write_samples(
    dir: &Path,
    images: &[f32],
    labels: &[usize],
    class_names: &[String],
    shape: (usize, usize, usize),
) -> Result<()> {
    ensure_dir(dir)?;
    let (c, h, w) = shape;
    let mut rows = Vec::with_capacity(labels.len());
    for (i, &l) in labels.iter().enumerate() {
        let name = format!("{i}.png");
        let path = dir.join(&name);
        to_image(&images[i * c * h * w..(i + 1) * c * h * w], shape)
            .save(&path)
            .map_err(|e| Error::bad_file(&path, format!("could not write PNG: {e}")))?;
        if let Some(class) = l.checked_sub(1).and_then(|k| class_names.get(k)) {
            rows.push(vec![name, class.clone()]);
        }
    }
    // An unconditional model's samples have no classes, so no labels.csv.
    if class_names.is_empty() {
        return Ok(());
    }
    // Class names come from folder names: quoted where they hold a comma, quote or newline.
    crate::files::write_csv_table(&dir.join("labels.csv"), &["file", "class"], rows)
}

/// Where `image sample --out DIR` puts its grid: beside the folder, `DIR.grid.png`, so that the
/// folder holds only samples (FID scripts collect every image under it).
pub fn grid_path(out: &Path) -> PathBuf {
    // `.` or `dir/..` have no file name: name the grid after the folder's real name.
    let abs = match out.file_name() {
        Some(_) => out.to_path_buf(),
        None => std::fs::canonicalize(out).unwrap_or_else(|_| out.to_path_buf()),
    };
    match (abs.parent(), abs.file_name()) {
        (Some(p), Some(n)) => p.join(format!("{}.grid.png", n.to_string_lossy())),
        _ => PathBuf::from("samples.grid.png"),
    }
}

/// A grid with one row per class 1…`k` (up to 8 samples each, white where a class has fewer),
/// in class order.
pub fn write_class_grid(
    path: &Path,
    images: &[f32],
    labels: &[usize],
    k: usize,
    shape: (usize, usize, usize),
) -> Result<()> {
    let per = shape.0 * shape.1 * shape.2;
    if k == 0 {
        // Unconditional: the first 64 images, 8 per row.
        let n = labels.len().min(64);
        return save_grid(path, &images[..n * per], shape, 8);
    }
    let mut rows = Vec::new();
    for c in 1..=k {
        let idx: Vec<usize> = labels
            .iter()
            .enumerate()
            .filter(|(_, &l)| l == c)
            .map(|(i, _)| i)
            .take(8)
            .collect();
        for j in 0..8 {
            match idx.get(j) {
                Some(&i) => rows.extend_from_slice(&images[i * per..(i + 1) * per]),
                None => rows.extend(std::iter::repeat_n(1.0, per)),
            }
        }
    }
    save_grid(path, &rows, shape, 8)
}

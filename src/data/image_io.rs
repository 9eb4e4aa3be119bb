//! Image files for FID and image data sets: finding them, decoding them to RGB8, resizing them
//! exactly like PIL, and turning them into network input.
//!
//! The reference FID pipeline is `PIL.Image.open(f).convert("RGB")` →
//! `torchvision.transforms.Resize((256, 256))` (which calls PIL's `Image.resize(.., BILINEAR)` on
//! PIL images) → `ToTensor()` → `Normalize(0.5, 0.5)`. FID is sensitive to the resize filter
//! (clean-fid), so [`resize_bilinear_pil`] re-implements Pillow's `libImaging/Resample.c`
//! bit for bit instead of using a generic bilinear interpolation, and JPEGs are decoded by
//! [`super::jpeg`], which reproduces Pillow's libjpeg-turbo output bit for bit.
use std::path::{Path, PathBuf};

use crate::{Error, Result};

/// File extensions (lower case) treated as images.
const IMAGE_EXTENSIONS: [&str; 3] = ["png", "jpg", "jpeg"];

fn is_image_file(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .map(|e| IMAGE_EXTENSIONS.iter().any(|x| e.eq_ignore_ascii_case(x)))
        .unwrap_or(false)
}

/// Every `.png`, `.jpg` and `.jpeg` file (extension matched case-insensitively) under `dir`,
/// searched recursively, sorted by path so that runs are reproducible.
///
/// Errors when `dir` does not exist, is not a directory, or cannot be read.
pub fn list_images(dir: &Path) -> Result<Vec<PathBuf>> {
    let meta = std::fs::metadata(dir).map_err(|e| Error::io(dir, e))?;
    if !meta.is_dir() {
        return Err(Error::bad_file(dir, "expected a directory of images"));
    }
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let entries = std::fs::read_dir(&d).map_err(|e| Error::io(&d, e))?;
        for entry in entries {
            let entry = entry.map_err(|e| Error::io(&d, e))?;
            let path = entry.path();
            // Follow symlinks like Python's rglob does for files.
            let ft = std::fs::metadata(&path).map(|m| m.file_type());
            match ft {
                Ok(ft) if ft.is_dir() => stack.push(path),
                Ok(ft) if ft.is_file() && is_image_file(&path) => out.push(path),
                _ => {}
            }
        }
    }
    out.sort();
    Ok(out)
}

/// Decodes a PNG or JPEG file to 8-bit RGB, like PIL's `Image.open(path).convert("RGB")`:
/// grayscale is replicated to three channels and alpha is dropped (not composited).
/// 16-bit images are reduced to 8 bits by the `image` crate's rounding conversion.
///
/// A missing, unreadable or corrupt file is an error naming the path.
pub fn load_rgb(path: &Path) -> Result<image::RgbImage> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let reader = image::ImageReader::new(std::io::Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| Error::io(path, e))?;
    if reader.format().is_none() {
        return Err(Error::bad_file(path, "not a PNG or JPEG image"));
    }
    if reader.format() == Some(image::ImageFormat::Jpeg) {
        return load_jpeg(path, reader.into_inner().into_inner());
    }
    let img = reader
        .decode()
        .map_err(|e| Error::bad_file(path, format!("cannot decode image: {e}")))?;
    Ok(img.to_rgb8())
}

/// JPEG through [`super::jpeg`], which reproduces Pillow's libjpeg-turbo decode bit for bit.
/// Variants it does not implement (arithmetic coding, lossless, 12-bit, …) go to
/// `jpeg-decoder` instead, whose output is close to but not exactly Pillow's.
fn load_jpeg(path: &Path, bytes: Vec<u8>) -> Result<image::RgbImage> {
    match super::jpeg::decode_rgb(&bytes) {
        Ok(px) => image::RgbImage::from_raw(px.width as u32, px.height as u32, px.data)
            .ok_or_else(|| Error::bad_file(path, "JPEG size does not match its pixels")),
        Err(super::jpeg::JpegError::Unsupported(_)) => load_jpeg_fallback(path, bytes),
        Err(e) => Err(Error::bad_file(path, format!("cannot decode JPEG: {e}"))),
    }
}

/// JPEG through `jpeg-decoder`, for the variants [`super::jpeg`] leaves out.
fn load_jpeg_fallback(path: &Path, bytes: Vec<u8>) -> Result<image::RgbImage> {
    let mut dec = jpeg_decoder::Decoder::new(std::io::Cursor::new(bytes));
    let pixels = dec
        .decode()
        .map_err(|e| Error::bad_file(path, format!("cannot decode JPEG: {e}")))?;
    let info = dec
        .info()
        .ok_or_else(|| Error::bad_file(path, "JPEG without a header"))?;
    let (w, h) = (info.width as u32, info.height as u32);
    let rgb: Vec<u8> = match info.pixel_format {
        jpeg_decoder::PixelFormat::RGB24 => pixels,
        jpeg_decoder::PixelFormat::L8 => pixels.iter().flat_map(|&v| [v, v, v]).collect(),
        jpeg_decoder::PixelFormat::L16 => {
            pixels.chunks(2).flat_map(|c| [c[0], c[0], c[0]]).collect()
        }
        jpeg_decoder::PixelFormat::CMYK32 => pixels
            .chunks(4)
            .flat_map(|c| {
                let k = c[3] as u32;
                [c[0], c[1], c[2]].map(|v| (v as u32 * k / 255) as u8)
            })
            .collect(),
    };
    image::RgbImage::from_raw(w, h, rgb)
        .ok_or_else(|| Error::bad_file(path, "JPEG size does not match its pixels"))
}

/// Fixed-point precision of Pillow's 8-bit resampling coefficients: 32 bits minus 8 for the
/// pixel value minus 2 for overflow headroom (`PRECISION_BITS` in Resample.c).
const PRECISION_BITS: u32 = 32 - 8 - 2;

/// The resampling filters of Pillow's `Image.resize` that this module reproduces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PilFilter {
    /// `Image.BILINEAR`: the triangle filter, support 1 (torchvision's `Resize` on PIL images).
    Bilinear,
    /// `Image.BICUBIC`: Keys' cubic convolution with a = −0.5, support 2 (the default filter
    /// of `Image.resize` for RGB images since Pillow 7).
    Bicubic,
}

impl PilFilter {
    /// Half-width of the filter kernel before scaling (`filterp->support` in Resample.c).
    fn support(self) -> f64 {
        match self {
            PilFilter::Bilinear => 1.0,
            PilFilter::Bicubic => 2.0,
        }
    }

    /// Kernel value at `x` (`bilinear_filter` / `bicubic_filter` in Resample.c).
    fn weight(self, x: f64) -> f64 {
        let x = x.abs();
        match self {
            PilFilter::Bilinear => {
                if x < 1.0 {
                    1.0 - x
                } else {
                    0.0
                }
            }
            PilFilter::Bicubic => {
                // Keys (1981) cubic convolution, a = −0.5, written as Pillow evaluates it.
                const A: f64 = -0.5;
                if x < 1.0 {
                    ((A + 2.0) * x - (A + 3.0)) * x * x + 1.0
                } else if x < 2.0 {
                    (((x - 5.0) * x + 8.0) * x - 4.0) * A
                } else {
                    0.0
                }
            }
        }
    }
}

/// One output position's source window and fixed-point weights.
struct Taps {
    /// First source index.
    start: usize,
    /// Weights, scaled by 2^PRECISION_BITS and rounded half away from zero.
    weights: Vec<i32>,
}

/// Pillow's `precompute_coeffs` + `normalize_coeffs_8bpc` for the whole source range
/// (box `[0, in_size]`). When downscaling, the filter support is widened by the scale factor
/// (this is the antialiasing); the window of output `xx` is centred at `(xx + 0.5)·scale`,
/// weights are `filter((x − center + 0.5)/filterscale)` normalised to sum 1, then rounded to
/// fixed point.
fn precompute_taps(in_size: usize, out_size: usize, filter: PilFilter) -> Vec<Taps> {
    let scale = in_size as f64 / out_size as f64;
    let filterscale = scale.max(1.0);
    let support = filter.support() * filterscale;
    let inv_filterscale = 1.0 / filterscale;
    (0..out_size)
        .map(|xx| {
            let center = (xx as f64 + 0.5) * scale;
            // C's `(int)` truncates toward zero; the values here can be slightly negative.
            let xmin = ((center - support + 0.5) as i64).max(0) as usize;
            let xmax = ((center + support + 0.5) as i64).min(in_size as i64) as usize;
            let n = xmax.saturating_sub(xmin);
            let mut w: Vec<f64> = (0..n)
                .map(|x| filter.weight((x as f64 + xmin as f64 - center + 0.5) * inv_filterscale))
                .collect();
            let ww: f64 = w.iter().sum();
            if ww != 0.0 {
                for v in w.iter_mut() {
                    *v /= ww;
                }
            }
            let one = (1u32 << PRECISION_BITS) as f64;
            let weights = w
                .into_iter()
                .map(|k| {
                    if k < 0.0 {
                        (-0.5 + k * one) as i32
                    } else {
                        (0.5 + k * one) as i32
                    }
                })
                .collect();
            Taps {
                start: xmin,
                weights,
            }
        })
        .collect()
}

/// Pillow's `clip8`: drop the fixed-point fraction (arithmetic shift) and clamp to 0..=255
/// (bicubic weights are partly negative, so sums can leave the range on both sides).
#[inline]
fn clip8(ss: i32) -> u8 {
    (ss >> PRECISION_BITS).clamp(0, 255) as u8
}

/// Resizes like PIL's `img.resize((width, height), Image.BILINEAR)` on an RGB image, bit for bit.
pub fn resize_bilinear_pil(img: &image::RgbImage, width: u32, height: u32) -> image::RgbImage {
    resize_pil(img, width, height, PilFilter::Bilinear)
}

/// Resizes like PIL's `img.resize((width, height), Image.BICUBIC)` on an RGB image, bit for bit;
/// `img.resize(size)` without a filter is this for RGB images (Pillow ≥ 7).
pub fn resize_bicubic_pil(img: &image::RgbImage, width: u32, height: u32) -> image::RgbImage {
    resize_pil(img, width, height, PilFilter::Bicubic)
}

/// Resizes like PIL's `img.resize((width, height), filter)` on an RGB image, bit for bit.
///
/// Pillow's separable resampler (`ImagingResampleInner`): a horizontal pass over the source rows
/// that the vertical pass will read, then a vertical pass; each pass accumulates
/// `2^(P−1) + Σ pixel·weight` in 32-bit integers and rounds/clips to u8 (P = 22). A pass is
/// skipped when its dimension does not change; when neither changes the image is copied.
/// A zero target size gives an empty image.
pub fn resize_pil(
    img: &image::RgbImage,
    width: u32,
    height: u32,
    filter: PilFilter,
) -> image::RgbImage {
    let (in_w, in_h) = (img.width() as usize, img.height() as usize);
    let (out_w, out_h) = (width as usize, height as usize);
    if out_w == 0 || out_h == 0 || in_w == 0 || in_h == 0 {
        return image::RgbImage::new(width, height);
    }
    let need_h = out_w != in_w;
    let need_v = out_h != in_h;
    let src = img.as_raw();
    let half = 1i32 << (PRECISION_BITS - 1);

    let vtaps = precompute_taps(in_h, out_h, filter);
    // Rows of the source the vertical pass reads.
    let (row_first, row_last) = if need_v {
        let last = vtaps
            .last()
            .map(|t| t.start + t.weights.len())
            .unwrap_or(in_h);
        (vtaps[0].start, last)
    } else {
        (0, in_h)
    };

    // Horizontal pass: rows row_first..row_last, width out_w.
    let (mid, mid_w, mid_rows) = if need_h {
        let htaps = precompute_taps(in_w, out_w, filter);
        let rows = row_last - row_first;
        let mut mid = vec![0u8; rows * out_w * 3];
        for r in 0..rows {
            let line = &src[(r + row_first) * in_w * 3..(r + row_first + 1) * in_w * 3];
            let out = &mut mid[r * out_w * 3..(r + 1) * out_w * 3];
            for (xx, t) in htaps.iter().enumerate() {
                let mut ss = [half; 3];
                for (j, &k) in t.weights.iter().enumerate() {
                    let p = &line[(t.start + j) * 3..(t.start + j) * 3 + 3];
                    for c in 0..3 {
                        ss[c] = ss[c].wrapping_add((p[c] as i32).wrapping_mul(k));
                    }
                }
                for c in 0..3 {
                    out[xx * 3 + c] = clip8(ss[c]);
                }
            }
        }
        (mid, out_w, rows)
    } else {
        (
            src[row_first * in_w * 3..row_last * in_w * 3].to_vec(),
            in_w,
            row_last - row_first,
        )
    };

    if !need_v {
        debug_assert_eq!(mid_rows, out_h);
        return image::RgbImage::from_raw(width, height, mid).expect("buffer size matches");
    }

    // Vertical pass over the intermediate rows (indices shifted by row_first).
    let mut out = vec![0u8; out_h * mid_w * 3];
    for (yy, t) in vtaps.iter().enumerate() {
        let orow = &mut out[yy * mid_w * 3..(yy + 1) * mid_w * 3];
        for i in 0..mid_w * 3 {
            let mut ss = half;
            for (j, &k) in t.weights.iter().enumerate() {
                let r = t.start + j - row_first;
                ss = ss.wrapping_add((mid[r * mid_w * 3 + i] as i32).wrapping_mul(k));
            }
            orow[i] = clip8(ss);
        }
    }
    image::RgbImage::from_raw(width, height, out).expect("buffer size matches")
}

/// `ToTensor()` followed by `Normalize(0.5, 0.5)`: a `[3, H, W]` row-major buffer with
/// `v = (x/255 − 0.5)/0.5`, evaluated in f32 in that order so that it matches torchvision.
pub fn to_chw_pm1(img: &image::RgbImage) -> Vec<f32> {
    let (w, h) = (img.width() as usize, img.height() as usize);
    let raw = img.as_raw();
    let mut out = vec![0f32; 3 * h * w];
    for i in 0..h * w {
        for c in 0..3 {
            let x = raw[i * 3 + c] as f32 / 255.0f32;
            out[c * h * w + i] = (x - 0.5f32) / 0.5f32;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_size_is_copy() {
        let img =
            image::RgbImage::from_fn(5, 4, |x, y| image::Rgb([x as u8 * 40, y as u8 * 50, 7]));
        assert_eq!(resize_bilinear_pil(&img, 5, 4), img);
    }

    #[test]
    fn constant_image_stays_constant() {
        let img = image::RgbImage::from_pixel(13, 9, image::Rgb([200, 3, 255]));
        for (w, h) in [(40, 40), (5, 3), (13, 30), (2, 9)] {
            let r = resize_bilinear_pil(&img, w, h);
            assert!(r.pixels().all(|p| p.0 == [200, 3, 255]), "{w}x{h}");
        }
    }

    #[test]
    fn pm1_range() {
        let img = image::RgbImage::from_raw(2, 1, vec![0, 255, 128, 1, 2, 3]).unwrap();
        let v = to_chw_pm1(&img);
        assert_eq!(v[0], -1.0);
        assert_eq!(v[2], 1.0);
        assert_eq!(v.len(), 6);
    }
}

//! Image files for FID and image data sets: finding them, decoding them to RGB8, resizing them
//! exactly like PIL, and turning them into network input.
//!
//! The reference FID pipeline is `PIL.Image.open(f).convert("RGB")` →
//! `torchvision.transforms.Resize((256, 256))` (which calls PIL's `Image.resize(.., BILINEAR)` on
//! PIL images) → `ToTensor()` → `Normalize(0.5, 0.5)`. FID is sensitive to the resize filter
//! (clean-fid), so [`resize_bilinear_pil`] re-implements Pillow's `libImaging/Resample.c`
//! bit for bit instead of using a generic bilinear interpolation, and JPEGs are decoded by
//! [`diffuse_jpeg`], which reproduces Pillow's libjpeg-turbo output bit for bit.
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

/// Largest decoded image accepted, in pixels: twice Pillow's `MAX_IMAGE_PIXELS`, the size at
/// which Pillow raises `DecompressionBombError`. The header is checked before any pixel buffer
/// is allocated, so a small file claiming a huge image costs nothing.
pub const MAX_IMAGE_PIXELS: u64 = diffuse_jpeg::MAX_IMAGE_PIXELS;

/// Cap on what the PNG decoder may allocate (the `image` crate's own default, stated here):
/// an RGBA16 image at [`MAX_IMAGE_PIXELS`] would need more, and is refused before decoding.
const MAX_DECODE_BYTES: u64 = 512 * 1024 * 1024;

/// Most decoded bytes a PNG can produce per byte of file: deflate expands at most 1032-fold
/// (RFC 1951: a 258-byte match in under 2 bits), and a 1-bit palette pixel decodes to 4 bytes
/// of RGBA (32×). A header claiming more pixels than that is refused before allocating them.
const PNG_MAX_EXPANSION: u64 = 1032 * 32;

fn check_pixels(path: &Path, width: u64, height: u64) -> Result<()> {
    if width == 0 || height == 0 {
        return Err(Error::bad_file(
            path,
            format!("image has no pixels ({width}x{height})"),
        ));
    }
    if width * height > MAX_IMAGE_PIXELS {
        return Err(Error::bad_file(
            path,
            format!(
                "image too large: {width}x{height} pixels, the limit is {MAX_IMAGE_PIXELS} \
                 (a decompression bomb, or a corrupt header)"
            ),
        ));
    }
    Ok(())
}

/// Decodes a PNG or JPEG file to 8-bit RGB, like PIL's `Image.open(path).convert("RGB")`:
/// grayscale is replicated to three channels and alpha is dropped (not composited).
/// 16-bit images are reduced to 8 bits by the `image` crate's rounding conversion.
///
/// A missing, unreadable or corrupt file is an error naming the path, and so is an image over
/// [`MAX_IMAGE_PIXELS`].
pub fn load_rgb(path: &Path) -> Result<image::RgbImage> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    decode_rgb(path, bytes)
}

/// [`load_rgb`] on the bytes of a file already read; `path` is only used in messages.
pub fn decode_rgb(path: &Path, bytes: Vec<u8>) -> Result<image::RgbImage> {
    if image::guess_format(&bytes).ok() == Some(image::ImageFormat::Jpeg) {
        return load_jpeg(path, bytes);
    }
    Ok(decode_other(path, bytes)?.to_rgb8())
}

/// Decodes a PNG or JPEG file as it is stored (gray, RGB, RGBA, 8 or 16 bits), with the same
/// size limit as [`load_rgb`]. JPEGs go through `jpeg-decoder` here, not the Pillow-exact
/// decoder.
pub fn load_image(path: &Path) -> Result<image::DynamicImage> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    if image::guess_format(&bytes).ok() == Some(image::ImageFormat::Jpeg) {
        return load_jpeg_fallback(path, bytes).map(image::DynamicImage::ImageRgb8);
    }
    decode_other(path, bytes)
}

/// Every format but JPEG (in practice PNG), through the `image` crate with its header checked
/// against [`MAX_IMAGE_PIXELS`] before the pixels are decoded.
fn decode_other(path: &Path, bytes: Vec<u8>) -> Result<image::DynamicImage> {
    use image::ImageDecoder;
    let file_len = bytes.len();
    let mut reader = image::ImageReader::new(std::io::Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| Error::io(path, e))?;
    if !matches!(reader.format(), Some(image::ImageFormat::Png)) {
        return Err(Error::bad_file(path, "not a PNG or JPEG image"));
    }
    let mut limits = image::Limits::default();
    limits.max_alloc = Some(MAX_DECODE_BYTES);
    reader.limits(limits);
    let bad = |e: image::ImageError| Error::bad_file(path, format!("cannot decode image: {e}"));
    let decoder = reader.into_decoder().map_err(bad)?;
    let (w, h) = decoder.dimensions();
    check_pixels(path, w as u64, h as u64)?;
    if decoder.total_bytes() > PNG_MAX_EXPANSION * file_len as u64 {
        return Err(Error::bad_file(
            path,
            format!(
                "header claims {w}x{h} pixels, more than a {file_len}-byte PNG can hold \
                 (a decompression bomb, or a truncated file)"
            ),
        ));
    }
    image::DynamicImage::from_decoder(decoder).map_err(bad)
}

/// JPEG through [`diffuse_jpeg`], which reproduces Pillow's libjpeg-turbo decode bit for bit.
/// Variants it does not implement (arithmetic coding, lossless, 12-bit, …) go to
/// `jpeg-decoder` instead, whose output is close to but not exactly Pillow's.
fn load_jpeg(path: &Path, bytes: Vec<u8>) -> Result<image::RgbImage> {
    match diffuse_jpeg::decode_rgb(&bytes) {
        Ok(px) => image::RgbImage::from_raw(px.width as u32, px.height as u32, px.data)
            .ok_or_else(|| Error::bad_file(path, "JPEG size does not match its pixels")),
        Err(diffuse_jpeg::JpegError::Unsupported(_)) => load_jpeg_fallback(path, bytes),
        Err(e) => Err(Error::bad_file(path, format!("cannot decode JPEG: {e}"))),
    }
}

/// JPEG through `jpeg-decoder`, for the variants [`diffuse_jpeg`] leaves out. The header is
/// read first and checked against [`MAX_IMAGE_PIXELS`] and the file size (see
/// [`diffuse_jpeg::check_size`]) before any pixel is decoded.
fn load_jpeg_fallback(path: &Path, bytes: Vec<u8>) -> Result<image::RgbImage> {
    let len = bytes.len();
    let mut dec = jpeg_decoder::Decoder::new(std::io::Cursor::new(bytes));
    let bad = |e: jpeg_decoder::Error| Error::bad_file(path, format!("cannot decode JPEG: {e}"));
    dec.read_info().map_err(bad)?;
    let info = dec
        .info()
        .ok_or_else(|| Error::bad_file(path, "JPEG without a header"))?;
    let (w, h) = (info.width as usize, info.height as usize);
    check_pixels(path, w as u64, h as u64)?;
    diffuse_jpeg::check_size(w, h, len)
        .map_err(|e| Error::bad_file(path, format!("cannot decode JPEG: {e}")))?;
    // The decoded buffer: at most 4 components of 2 bytes (16-bit lossless) per pixel.
    dec.set_max_decoding_buffer_size(w * h * 8);
    let pixels = dec.decode().map_err(bad)?;
    let short = || Error::bad_file(path, "JPEG size does not match its pixels");
    let rgb: Vec<u8> = match info.pixel_format {
        jpeg_decoder::PixelFormat::RGB24 => pixels,
        jpeg_decoder::PixelFormat::L8 => pixels.iter().flat_map(|&v| [v, v, v]).collect(),
        jpeg_decoder::PixelFormat::L16 => {
            pixels.chunks(2).flat_map(|c| [c[0], c[0], c[0]]).collect()
        }
        jpeg_decoder::PixelFormat::CMYK32 => {
            if pixels.len() % 4 != 0 {
                return Err(short());
            }
            pixels
                .chunks(4)
                .flat_map(|c| {
                    let k = c[3] as u32;
                    [c[0], c[1], c[2]].map(|v| (v as u32 * k / 255) as u8)
                })
                .collect()
        }
    };
    image::RgbImage::from_raw(w as u32, h as u32, rgb).ok_or_else(short)
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

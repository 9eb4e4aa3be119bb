//! A JPEG decoder whose RGB output is bit-for-bit what Pillow gives for
//! `Image.open(path).convert("RGB")`: Pillow decodes with libjpeg-turbo on its defaults
//! (accurate integer IDCT `JDCT_ISLOW`, fancy upsampling, colour space guessed from the
//! JFIF/Adobe markers), and FID is sensitive to the last bit of every pixel.
//!
//! Covered: baseline/extended sequential and progressive Huffman JPEGs, 8-bit, with 1, 3 or 4
//! components, any integral sampling factors, restart intervals. Arithmetic coding, lossless,
//! hierarchical and 12-bit files are [`JpegError::Unsupported`] (the caller can fall back to
//! another decoder); anything malformed is [`JpegError::Corrupt`]. EXIF orientation is not
//! applied, as Pillow's `open().convert()` does not apply it either.
//!
//! [`encode`] writes baseline JPEGs byte for byte as Pillow's `Image.save` does on its defaults.
mod color;
pub mod encode;
mod huffman;
mod idct;
mod markers;
mod scan;
mod smooth;
mod std_tables;
mod upsample;

use huffman::{next_marker, HuffTable};

/// Largest image decoded, in pixels: twice Pillow's `Image.MAX_IMAGE_PIXELS` (89,478,485), the
/// size at which Pillow refuses a file as a decompression bomb.
pub const MAX_IMAGE_PIXELS: u64 = 2 * 89_478_485;
use markers::Frame;
use upsample::Plane;

/// Why a JPEG could not be decoded here.
#[derive(Debug, thiserror::Error)]
pub enum JpegError {
    /// A valid file using a JPEG feature this decoder does not implement.
    #[error("unsupported JPEG variant: {0}")]
    Unsupported(String),
    /// The file is malformed or truncated.
    #[error("corrupt JPEG: {0}")]
    Corrupt(String),
}

impl JpegError {
    fn corrupt(msg: impl Into<String>) -> Self {
        JpegError::Corrupt(msg.into())
    }
}

/// A decoded image: `width × height` pixels, RGB interleaved, rows top to bottom.
pub struct RgbPixels {
    pub width: usize,
    pub height: usize,
    pub data: Vec<u8>,
}

/// How the components map to RGB (libjpeg-turbo's `default_decompress_parms`).
#[derive(Debug, Clone, Copy, PartialEq)]
enum ColorSpace {
    Gray,
    YCbCr,
    Rgb,
    Cmyk,
    Ycck,
}

/// Refuses a frame header that claims more than the file can hold, before anything is
/// allocated for it: over [`MAX_IMAGE_PIXELS`], or
/// more 8×8 blocks than 8 per byte of file. Every block of the full-resolution component
/// carries its DC difference as a Huffman code of at least one bit (T.81 F.1.2.1, sequential
/// or progressive DC-first scan), so a real file always passes; a tiny file claiming a huge
/// image (a decompression bomb) does not. Decoding thus allocates at most about
/// 512 pixels × (3 bytes of RGB + 2 bytes of coefficients per component) per byte of file.
pub fn check_size(width: usize, height: usize, file_len: usize) -> Result<(), JpegError> {
    let (w, h) = (width as u64, height as u64);
    if w * h > MAX_IMAGE_PIXELS {
        return Err(JpegError::corrupt(format!(
            "image too large ({width}x{height})"
        )));
    }
    let blocks = w.div_ceil(8) * h.div_ceil(8);
    if blocks > 8 * file_len as u64 {
        return Err(JpegError::corrupt(format!(
            "header claims {width}x{height} pixels ({blocks} blocks) but the file has only \
             {file_len} bytes (a decompression bomb, or a truncated file)"
        )));
    }
    Ok(())
}

/// Decodes a whole JPEG file to RGB.
pub fn decode_rgb(data: &[u8]) -> Result<RgbPixels, JpegError> {
    if !data.starts_with(&[0xFF, 0xD8]) {
        return Err(JpegError::corrupt("no start-of-image marker"));
    }
    let mut qtables: [Option<[u16; 64]>; 4] = [None; 4];
    let mut dc: [Option<HuffTable>; 4] = Default::default();
    let mut ac: [Option<HuffTable>; 4] = Default::default();
    let mut restart_interval = 0usize;
    let mut saw_jfif = false;
    let mut adobe: Option<u8> = None;
    let mut frame: Option<Frame> = None;
    let mut scans = 0usize;
    let mut pos = 2;
    let mut saw_eoi = false;
    while let Some((marker, after)) = next_marker(data, pos) {
        pos = after;
        match marker {
            0xD9 => {
                saw_eoi = true;
                break;
            }
            // Markers without a length field (T.81 B.1.1.3).
            0xD0..=0xD7 | 0x01 => continue,
            0xD8 => return Err(JpegError::corrupt("second start-of-image marker")),
            _ => {}
        }
        let (seg, next) = markers::segment(data, pos)?;
        pos = next;
        match marker {
            0xC0..=0xC2 => {
                if frame.is_some() {
                    return Err(JpegError::corrupt("more than one frame header"));
                }
                frame = Some(markers::parse_sof(seg, marker == 0xC2, data.len())?);
            }
            0xC3 | 0xC5..=0xC7 => {
                return Err(JpegError::Unsupported(
                    "lossless or hierarchical JPEG".into(),
                ))
            }
            0xC9..=0xCF => return Err(JpegError::Unsupported("arithmetic coding".into())),
            0xC4 => markers::parse_dht(seg, &mut dc, &mut ac)?,
            0xDB => markers::parse_dqt(seg, &mut qtables)?,
            0xDD => {
                let b = seg
                    .get(..2)
                    .ok_or_else(|| JpegError::corrupt("short restart interval segment"))?;
                restart_interval = ((b[0] as usize) << 8) | b[1] as usize;
            }
            // libjpeg-turbo settles the colour space when the header is complete, i.e. at the
            // first scan, so only APP markers before it count.
            0xE0 if scans == 0 => saw_jfif |= markers::is_jfif(seg),
            0xEE if scans == 0 => {
                if let Some(t) = markers::adobe_transform(seg) {
                    adobe = Some(t);
                }
            }
            0xDA => {
                let f = frame
                    .as_mut()
                    .ok_or_else(|| JpegError::corrupt("scan before the frame header"))?;
                if scans == 0 && !f.progressive {
                    std_tables::fill_missing(&mut dc, &mut ac);
                }
                let sh = markers::parse_sos(seg, f)?;
                for &(ci, ..) in &sh.comps {
                    let c = &mut f.comps[ci];
                    if c.qtable.is_none() {
                        c.qtable = Some(qtables[c.tq].ok_or_else(|| {
                            JpegError::corrupt("component uses an undefined quantisation table")
                        })?);
                    }
                }
                pos = scan::decode_scan(f, &sh, &dc, &ac, restart_interval, data, pos)?;
                scans += 1;
            }
            _ => {}
        }
    }
    let frame = frame.ok_or_else(|| JpegError::corrupt("no frame header"))?;
    if scans == 0 {
        return Err(JpegError::corrupt("no image data"));
    }
    if let Some(c) = frame.comps.iter().find(|c| c.qtable.is_none()) {
        return Err(JpegError::corrupt(format!(
            "component {} has no scan (truncated file?)",
            c.id
        )));
    }
    // libjpeg-turbo reads a multi-scan file to its end before producing output; a file that
    // stops before EOI is truncated (Pillow: "image file is truncated"). A single sequential
    // scan is output as it is decoded, so a missing EOI after complete data is tolerated.
    if !saw_eoi && (frame.progressive || scans > 1) {
        return Err(JpegError::corrupt(
            "no end-of-image marker (truncated file?)",
        ));
    }
    let cs = color_space(&frame, saw_jfif, adobe);
    render(frame, cs)
}

fn color_space(frame: &Frame, saw_jfif: bool, adobe: Option<u8>) -> ColorSpace {
    match frame.comps.len() {
        1 => ColorSpace::Gray,
        3 => {
            if saw_jfif {
                ColorSpace::YCbCr
            } else if let Some(t) = adobe {
                if t == 0 {
                    ColorSpace::Rgb
                } else {
                    ColorSpace::YCbCr
                }
            } else {
                let ids: Vec<u8> = frame.comps.iter().map(|c| c.id).collect();
                if ids == [b'R', b'G', b'B'] {
                    ColorSpace::Rgb
                } else {
                    ColorSpace::YCbCr
                }
            }
        }
        _ => match adobe {
            Some(0) | None => ColorSpace::Cmyk,
            Some(_) => ColorSpace::Ycck,
        },
    }
}

/// IDCT, upsampling and colour conversion of the decoded coefficients.
fn render(frame: Frame, cs: ColorSpace) -> Result<RgbPixels, JpegError> {
    let (w, h) = (frame.width, frame.height);
    let smoothing = frame.progressive && smooth::wanted(&frame);
    let mut planes = Vec::with_capacity(frame.comps.len());
    for ci in 0..frame.comps.len() {
        let comp = &frame.comps[ci];
        let m = upsample::method(comp.h, comp.v, frame.hmax, frame.vmax, comp.width)
            .ok_or_else(|| JpegError::Unsupported("non-integral sampling ratio".into()))?;
        let plane = if smoothing {
            smooth::component_plane(&frame, ci)
        } else {
            component_plane(&frame, ci)
        };
        let comp = &frame.comps[ci];
        planes.push(upsample::upsample(plane, comp.width, comp.height, m, w, h));
    }
    let mut data = vec![0u8; w * h * 3];
    match cs {
        ColorSpace::Gray => color::gray_to_rgb(&planes[0], w, h, &mut data),
        ColorSpace::YCbCr => color::ycc_to_rgb(&planes, w, h, &mut data),
        ColorSpace::Rgb => color::rgb_to_rgb(&planes, w, h, &mut data),
        ColorSpace::Cmyk => color::cmyk_to_rgb(&planes, false, w, h, &mut data),
        ColorSpace::Ycck => color::cmyk_to_rgb(&planes, true, w, h, &mut data),
    }
    Ok(RgbPixels {
        width: w,
        height: h,
        data,
    })
}

/// The component's samples: every block holding real samples through the islow IDCT.
fn component_plane(frame: &Frame, ci: usize) -> Plane {
    let comp = &frame.comps[ci];
    let q = comp.qtable.unwrap_or([0; 64]);
    let stride = comp.blocks_w * 8;
    let mut data = vec![0u8; stride * comp.blocks_h * 8];
    for by in 0..comp.blocks_h {
        for bx in 0..comp.blocks_w {
            let blk = comp.block(bx, by);
            let out = &mut data[by * 8 * stride + bx * 8..];
            idct::idct_islow(blk, &q, out, stride);
        }
    }
    Plane { data, stride }
}

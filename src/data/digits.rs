//! The bundled 8×8 handwritten digits (scikit-learn's copy of the UCI "optical recognition of
//! handwritten digits" test set; CC BY 4.0, see `data/README.md`): 1,797 images, 10 classes.
//!
//! Pixels 0…16 map linearly to [−1, 1]; digit d gets label d + 1 (0 stays the null class) and
//! class name "d". A UNet with two or more levels needs more than 8×8 of room, so the images
//! can be enlarged by an integer factor with **nearest-neighbour pixel replication** (each
//! pixel becomes a k×k block): it adds no invented detail, keeps the value set exactly
//! {−1 + 2v/16}, and is trivially reproducible elsewhere (`np.kron(img, ones((k, k)))`).
use std::io::Read;

use super::image_set::ImageSet;
use crate::{Error, Result};

/// The compressed CSV, embedded so the demo needs no download.
static DIGITS_CSV_GZ: &[u8] = include_bytes!("../../data/digits.csv.gz");

/// Number of images in the set.
pub const NUM_DIGITS: usize = 1797;
const SIDE: usize = 8;

/// Digits at `size`×`size` (8 = native; 16, 24, … = nearest replication), 1 channel.
pub fn load_digits(size: usize) -> Result<ImageSet> {
    if size == 0 || !size.is_multiple_of(SIDE) {
        return Err(Error::invalid(
            "digits size",
            format!("must be a positive multiple of 8, got {size}"),
        ));
    }
    let k = size / SIDE;
    let bad = |msg: String| Error::bad_file("<embedded data/digits.csv.gz>", msg);
    let mut text = String::new();
    flate2::read::GzDecoder::new(DIGITS_CSV_GZ)
        .read_to_string(&mut text)
        .map_err(|e| bad(format!("cannot decompress: {e}")))?;
    let mut images = Vec::with_capacity(NUM_DIGITS * size * size);
    let mut labels = Vec::with_capacity(NUM_DIGITS);
    for (row, line) in text.lines().filter(|l| !l.trim().is_empty()).enumerate() {
        let vals: Vec<u8> = line
            .split(',')
            .map(|v| v.trim().parse::<u8>())
            .collect::<std::result::Result<_, _>>()
            .map_err(|e| bad(format!("row {}: {e}", row + 1)))?;
        if vals.len() != SIDE * SIDE + 1 || vals[..64].iter().any(|&v| v > 16) || vals[64] > 9 {
            return Err(bad(format!(
                "row {}: expected 64 pixels in 0..=16 and a digit 0..=9",
                row + 1
            )));
        }
        for y in 0..size {
            for x in 0..size {
                let v = vals[(y / k) * SIDE + x / k] as f32;
                images.push(v / 8.0 - 1.0);
            }
        }
        labels.push(vals[64] as usize + 1);
    }
    if labels.len() != NUM_DIGITS {
        return Err(bad(format!(
            "expected {NUM_DIGITS} rows, found {}",
            labels.len()
        )));
    }
    Ok(ImageSet {
        images,
        labels,
        class_names: (0..10).map(|d| d.to_string()).collect(),
        channels: 1,
        height: size,
        width: size,
    })
}

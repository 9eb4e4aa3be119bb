//! One function per parser of user files, each taking arbitrary bytes: the fuzz targets.
//! Shared by the cargo-fuzz binaries (`fuzz/fuzz_targets/*.rs`, nightly + libFuzzer) and the
//! bounded run in the test suite (`tests/fuzz_parsers.rs`, stable, part of `cargo test`).
//!
//! A target returns `Ok(())` or the error message; it must never panic, abort, hang or
//! allocate beyond what the input can justify. Parsers that read from a path get the bytes
//! written to a scratch file first.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use burn::prelude::*;
use diffuse::nn::simplenet::{SimpleNet, SimpleNetConfig};

pub type Outcome = Result<(), String>;

/// A named target and its function.
pub type Target = (&'static str, fn(&[u8]) -> Outcome);

/// Every target.
pub const TARGETS: &[Target] = &[
    ("png", png),
    ("jpeg", jpeg),
    ("safetensors", safetensors),
    ("pytorch", pytorch),
    ("pickle", pickle),
    ("json", json),
    ("labels_csv", labels_csv),
    ("points_csv", points_csv),
    ("fid_stats", fid_stats),
];

/// A scratch folder of this process (targets that need a file write into it).
pub fn scratch() -> PathBuf {
    let d = std::env::temp_dir().join(format!("diffuse-fuzz-{}", std::process::id()));
    let _ = std::fs::create_dir_all(&d);
    d
}

fn write_scratch(name: &str, data: &[u8]) -> PathBuf {
    let p = scratch().join(name);
    std::fs::write(&p, data).expect("scratch file");
    p
}

fn err<E: std::fmt::Display>(r: Result<impl Sized, E>) -> Outcome {
    r.map(|_| ()).map_err(|e| e.to_string())
}

/// PNG (and anything else that is not a JPEG) through the decoder every image command uses.
pub fn png(data: &[u8]) -> Outcome {
    err(diffuse::data::image_io::decode_rgb(
        Path::new("fuzz.png"),
        data.to_vec(),
    ))
}

/// JPEG: the Pillow-exact decoder on its own, then the full path with its fallback decoder.
pub fn jpeg(data: &[u8]) -> Outcome {
    let _ = diffuse_jpeg::decode_rgb(data);
    err(diffuse::data::image_io::decode_rgb(
        Path::new("fuzz.jpg"),
        data.to_vec(),
    ))
}

/// The network weights are loaded into: the toy SimpleNet of `tests/golden/simplenet_small.pth`.
pub fn small_net() -> SimpleNet {
    SimpleNetConfig {
        dims: vec![2, 16, 2],
    }
    .init(&mut diffuse::rng::seeded(0, 0), &Device::flex())
    .expect("valid config")
}

/// A safetensors weights file into the small SimpleNet.
pub fn safetensors(data: &[u8]) -> Outcome {
    let p = write_scratch("fuzz.safetensors", data);
    err(diffuse::checkpoint::load_weights(small_net(), &p))
}

/// A PyTorch checkpoint file (zip, legacy or plain pickle) into the small SimpleNet.
pub fn pytorch(data: &[u8]) -> Outcome {
    let p = write_scratch("fuzz.pt", data);
    err(diffuse::nn::simplenet::load_pytorch(small_net(), &p))
}

/// The golden PyTorch checkpoint whose storages the `pickle` target reuses.
pub const SIMPLENET_PTH: &[u8] = include_bytes!("../tests/golden/simplenet_small.pth");

/// A `data.pkl`: packed into a zip checkpoint with the storages of [`SIMPLENET_PTH`], so that
/// mutations reach the pickle machine and tensor rebuilding rather than the zip layer.
pub fn pickle(data: &[u8]) -> Outcome {
    let mut entries = zip_entries(SIMPLENET_PTH).expect("golden zip");
    for (name, body) in entries.iter_mut() {
        if name.ends_with("/data.pkl") {
            *body = data.to_vec();
        }
    }
    pytorch(&zip_stored(&entries))
}

/// The `data.pkl` of [`SIMPLENET_PTH`], the seed of the `pickle` target.
pub fn simplenet_pickle() -> Vec<u8> {
    zip_entries(SIMPLENET_PTH)
        .expect("golden zip")
        .into_iter()
        .find(|(n, _)| n.ends_with("/data.pkl"))
        .map(|(_, b)| b)
        .expect("data.pkl")
}

/// The run configs (`model.json` of toy and image runs), as `read_json` parses them.
pub fn json(data: &[u8]) -> Outcome {
    let p = Path::new("fuzz.json");
    let _ = diffuse::files::parse_json::<diffuse::checkpoint::image::ImageCheckpointMeta>(p, data);
    let _ = diffuse::files::parse_json::<serde_json::Value>(p, data);
    err(diffuse::files::parse_json::<
        diffuse::checkpoint::toy::ToyCheckpointMeta,
    >(p, data))
}

/// `labels.csv` of a samples folder.
pub fn labels_csv(data: &[u8]) -> Outcome {
    err(diffuse::data::labels::parse_labels(
        Path::new("labels.csv"),
        data,
    ))
}

/// A CSV of 2D points (`toy eval`, `--reference`).
pub fn points_csv(data: &[u8]) -> Outcome {
    err(diffuse::toy::parse_csv(Path::new("points.csv"), data))
}

/// A FID statistics file (`fid --save-stats`, read back as GT or GEN).
pub fn fid_stats(data: &[u8]) -> Outcome {
    let p = write_scratch("fuzz.stats", data);
    err(diffuse::metrics::fid::load_stats(&p))
}

// ---------------------------------------------------------------------------------------------
// A minimal zip (stored entries only), enough to take a torch.save archive apart and put it
// back together.
// ---------------------------------------------------------------------------------------------

fn u16_at(b: &[u8], p: usize) -> Option<usize> {
    Some(u16::from_le_bytes(b.get(p..p + 2)?.try_into().ok()?) as usize)
}

fn u32_at(b: &[u8], p: usize) -> Option<usize> {
    Some(u32::from_le_bytes(b.get(p..p + 4)?.try_into().ok()?) as usize)
}

/// (name, bytes) of every entry, read through the central directory.
pub fn zip_entries(zip: &[u8]) -> Option<Vec<(String, Vec<u8>)>> {
    let eocd = (0..zip.len().saturating_sub(21))
        .rev()
        .find(|&i| zip[i..].starts_with(b"PK\x05\x06"))?;
    let count = u16_at(zip, eocd + 10)?;
    let mut p = u32_at(zip, eocd + 16)?;
    let mut out = Vec::with_capacity(count);
    for _ in 0..count {
        if !zip.get(p..)?.starts_with(b"PK\x01\x02") {
            return None;
        }
        let size = u32_at(zip, p + 20)?;
        let (n, m, k) = (
            u16_at(zip, p + 28)?,
            u16_at(zip, p + 30)?,
            u16_at(zip, p + 32)?,
        );
        let name = String::from_utf8(zip.get(p + 46..p + 46 + n)?.to_vec()).ok()?;
        let local = u32_at(zip, p + 42)?;
        let data_at = local + 30 + u16_at(zip, local + 26)? + u16_at(zip, local + 28)?;
        out.push((name, zip.get(data_at..data_at + size)?.to_vec()));
        p += 46 + n + m + k;
    }
    Some(out)
}

/// A zip of stored (uncompressed) entries, each entry's data aligned to 64 bytes like
/// `torch.save` does (padding in a local extra field).
pub fn zip_stored(entries: &[(String, Vec<u8>)]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut central = Vec::new();
    for (name, body) in entries {
        let mut crc = flate2::Crc::new();
        crc.update(body);
        let crc = crc.sum();
        let offset = out.len();
        let pad = (64 - (offset + 30 + name.len() + 4) % 64) % 64;
        let common = |v: &mut Vec<u8>, extra: usize| {
            v.extend_from_slice(&0u16.to_le_bytes()); // flags
            v.extend_from_slice(&0u16.to_le_bytes()); // stored
            v.extend_from_slice(&0u32.to_le_bytes()); // time, date
            v.extend_from_slice(&crc.to_le_bytes());
            v.extend_from_slice(&(body.len() as u32).to_le_bytes());
            v.extend_from_slice(&(body.len() as u32).to_le_bytes());
            v.extend_from_slice(&(name.len() as u16).to_le_bytes());
            v.extend_from_slice(&(extra as u16).to_le_bytes());
        };
        out.extend_from_slice(b"PK\x03\x04\x14\x00");
        common(&mut out, 4 + pad);
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b"FB");
        out.extend_from_slice(&(pad as u16).to_le_bytes());
        out.resize(out.len() + pad, b'Z');
        out.extend_from_slice(body);
        central.extend_from_slice(b"PK\x01\x02\x14\x00\x14\x00");
        common(&mut central, 0);
        central.extend_from_slice(&[0u8; 6]); // comment length, disk, internal attributes
        central.extend_from_slice(&0u32.to_le_bytes()); // external attributes
        central.extend_from_slice(&(offset as u32).to_le_bytes());
        central.extend_from_slice(name.as_bytes());
    }
    let cd_offset = out.len() as u32;
    out.extend_from_slice(&central);
    out.extend_from_slice(b"PK\x05\x06\0\0\0\0");
    out.extend_from_slice(&(entries.len() as u16).to_le_bytes());
    out.extend_from_slice(&(entries.len() as u16).to_le_bytes());
    out.extend_from_slice(&(central.len() as u32).to_le_bytes());
    out.extend_from_slice(&cd_offset.to_le_bytes());
    out.extend_from_slice(&0u16.to_le_bytes());
    out
}

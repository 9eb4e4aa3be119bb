//! FID statistics files: μ and Σ of a feature set, saved once and compared many times.
//!
//! Two formats, told apart by their first bytes (never by the file name):
//! - **NumPy `.npz`**, the format other tools exchange: a zip archive with `mu.npy` (float64,
//!   shape `[d]`) and `sigma.npy` (float64, `[d, d]`). pytorch-fid writes it with
//!   `np.savez_compressed(path, mu=…, sigma=…)` (`--save-stats`), EDM's `fid.py ref` with
//!   `np.savez(…)`; both read it with `np.load(path)['mu']`/`['sigma']`. diffuse writes the same
//!   two arrays plus `diffuse_meta.npy`, a uint8 array holding the JSON metadata (`n`, `dim`,
//!   `mode`, `image_size`, `weights`), which the other tools ignore. float32 arrays (written
//!   by some tools) are accepted and widened; any other dtype is refused.
//! - **diffuse's own binary format** (`DFIDSTAT`, [`save_stats`] on any other extension), kept
//!   so that files written by earlier versions still load.
//!
//! [`load_stats`] is the one entry point for reading either.
use std::io::{Cursor, Read, Write};
use std::path::Path;

use nalgebra::{DMatrix, DVector};

use super::fid::FeatureStats;
use crate::{Error, Result};

/// Magic bytes of diffuse's own statistics format.
const STATS_MAGIC: &[u8; 8] = b"DFIDSTAT";
/// First bytes of a zip archive (a local file header), hence of every `.npz`.
const ZIP_MAGIC: &[u8; 4] = b"PK\x03\x04";
/// The largest feature dimension accepted from a file: Σ alone is then 2 GiB of f64. FID
/// features are 2048-d (Inception-v3); other extractors (DINOv2, CLIP) use 768–1024.
const MAX_DIM: u64 = 1 << 14;
/// deflate expands at most 1032× (README "Untrusted files"): an `.npy` member claiming more
/// data than that is refused before anything is allocated for it.
const MAX_DEFLATE_RATIO: u64 = 1032;

/// Reads FID statistics from `path`, a NumPy `.npz` (pytorch-fid's and EDM's reference files,
/// or diffuse's `--save-stats X.npz`) or a file in diffuse's own format.
///
/// Returns the statistics (`factor` is `None`; `n` is 0 when the file does not record how many
/// samples produced it, as pytorch-fid's and EDM's files do not) and a JSON object of metadata:
/// always `"format"` (`"npz"` or `"diffuse"`) and `"dim"`; `"n"`, `"mode"`, `"image_size"` and
/// `"weights"` when diffuse wrote the file. A file from another tool has no `"mode"`: callers
/// that compare statistics decide what to assume. Errors name the file and what was expected.
pub fn load_stats(path: &Path) -> Result<(FeatureStats, serde_json::Value)> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    if bytes.starts_with(ZIP_MAGIC) {
        load_npz(path, bytes)
    } else if bytes.starts_with(STATS_MAGIC) {
        load_diffuse(path, &bytes)
    } else {
        Err(Error::bad_file(
            path,
            "not a statistics file: expected a NumPy .npz (a zip archive with arrays `mu` and \
             `sigma`, as pytorch-fid and EDM write) or a diffuse statistics file (DFIDSTAT header)",
        ))
    }
}

/// Saves statistics to `path`: a NumPy `.npz` when the extension is `.npz` (case-insensitive),
/// diffuse's own format otherwise. `meta` (an object) records what produced the features
/// (mode, image size, weights) so that incompatible statistics are not compared; `n` and
/// `dim` are added. The same inputs give the same bytes.
pub fn save_stats(path: &Path, stats: &FeatureStats, meta: &serde_json::Value) -> Result<()> {
    let d = stats.dim();
    let mut header = serde_json::json!({ "n": stats.n, "dim": d });
    if let (Some(h), Some(m)) = (header.as_object_mut(), meta.as_object()) {
        for (k, v) in m {
            h.insert(k.clone(), v.clone());
        }
    }
    let header = serde_json::to_vec(&header).expect("JSON of plain values");
    let is_npz = path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("npz"));
    let bytes = if is_npz {
        npz_bytes(stats, &header).map_err(|e| Error::io(path, e))?
    } else {
        diffuse_bytes(stats, &header)
    };
    // Atomic and flushed: a run's cached reference statistics are reused on resume.
    crate::files::write_atomic(path, &bytes)
}

/// `DFIDSTAT`, a u32 little-endian length and that many bytes of JSON metadata, then μ (d f64)
/// and Σ (d×d f64, row-major), all little-endian.
fn diffuse_bytes(stats: &FeatureStats, header: &[u8]) -> Vec<u8> {
    let d = stats.dim();
    let mut out = Vec::with_capacity(12 + header.len() + 8 * (d + d * d));
    out.extend_from_slice(STATS_MAGIC);
    out.extend_from_slice(&(header.len() as u32).to_le_bytes());
    out.extend_from_slice(header);
    for v in stats.mu.iter() {
        out.extend_from_slice(&v.to_le_bytes());
    }
    for r in 0..d {
        for c in 0..d {
            out.extend_from_slice(&stats.sigma[(r, c)].to_le_bytes());
        }
    }
    out
}

/// The `.npz` as `np.savez` writes it: stored (uncompressed) members `mu.npy`, `sigma.npy`
/// (C order, little-endian f64) and `diffuse_meta.npy` (the JSON as uint8). The members' time
/// stamps are fixed (1980-01-01, zip's epoch) so that the file depends only on its contents.
fn npz_bytes(stats: &FeatureStats, header: &[u8]) -> std::io::Result<Vec<u8>> {
    use npyz::WriterBuilder;
    let d = stats.dim() as u64;
    let opts = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Stored)
        .last_modified_time(zip::DateTime::default());
    let mut zip = zip::ZipWriter::new(Cursor::new(Vec::new()));
    let sigma_rows = (0..stats.dim()).flat_map(|r| (0..stats.dim()).map(move |c| (r, c)));
    let arrays: [(&str, Vec<u64>); 2] = [("mu", vec![d]), ("sigma", vec![d, d])];
    for (name, shape) in arrays {
        zip.start_file(format!("{name}.npy"), opts)?;
        let mut w = npyz::WriteOptions::<f64>::new()
            .default_dtype()
            .shape(&shape)
            .writer(&mut zip)
            .begin_nd()?;
        if name == "mu" {
            w.extend(stats.mu.iter().copied())?;
        } else {
            w.extend(sigma_rows.clone().map(|rc| stats.sigma[rc]))?;
        }
        w.finish()?;
    }
    zip.start_file("diffuse_meta.npy", opts)?;
    let mut w = npyz::WriteOptions::<u8>::new()
        .default_dtype()
        .shape(&[header.len() as u64])
        .writer(&mut zip)
        .begin_nd()?;
    w.extend(header.iter().copied())?;
    w.finish()?;
    zip.flush()?;
    Ok(zip.finish()?.into_inner())
}

fn load_diffuse(path: &Path, bytes: &[u8]) -> Result<(FeatureStats, serde_json::Value)> {
    let bad =
        |msg: &str| Error::bad_file(path, format!("not a diffuse FID statistics file: {msg}"));
    if bytes.len() < 12 || &bytes[..8] != STATS_MAGIC {
        return Err(bad("missing DFIDSTAT header"));
    }
    let hl = u32::from_le_bytes(bytes[8..12].try_into().unwrap()) as usize;
    let header_bytes = 12usize
        .checked_add(hl)
        .and_then(|end| bytes.get(12..end))
        .ok_or_else(|| bad("truncated header"))?;
    let mut header: serde_json::Value =
        serde_json::from_slice(header_bytes).map_err(|_| bad("bad JSON header"))?;
    let d = header["dim"].as_u64().ok_or_else(|| bad("no dim"))? as usize;
    let n = header["n"].as_u64().ok_or_else(|| bad("no n"))? as usize;
    let body = &bytes[12 + hl..];
    // Checked: a header claiming a huge `dim` must not wrap around to the body's length
    // (and then allocate d + d² values).
    let want = d
        .checked_mul(d)
        .and_then(|dd| dd.checked_add(d))
        .and_then(|v| v.checked_mul(8));
    if want != Some(body.len()) {
        return Err(bad("wrong data length"));
    }
    let values: Vec<f64> = body
        .chunks_exact(8)
        .map(|c| f64::from_le_bytes(c.try_into().unwrap()))
        .collect();
    if values.iter().any(|v| !v.is_finite()) {
        return Err(bad("non-finite values"));
    }
    header["format"] = "diffuse".into();
    let mu = DVector::from_column_slice(&values[..d]);
    let sigma = DMatrix::from_row_slice(d, d, &values[d..]);
    Ok((
        FeatureStats {
            mu,
            sigma,
            n,
            factor: None,
        },
        header,
    ))
}

fn load_npz(path: &Path, bytes: Vec<u8>) -> Result<(FeatureStats, serde_json::Value)> {
    let bad =
        |msg: String| Error::bad_file(path, format!("not a usable FID statistics .npz: {msg}"));
    let file_len = bytes.len() as u64;
    let mut zip = zip::ZipArchive::new(Cursor::new(bytes))
        .map_err(|e| bad(format!("not a readable zip archive ({e})")))?;
    let (mu_shape, mu) = read_array(&mut zip, "mu", file_len).map_err(&bad)?;
    if mu_shape.first().is_some_and(|&d| d > MAX_DIM) {
        return Err(bad(format!(
            "`mu` has shape {mu_shape:?}, more than the {MAX_DIM} features accepted"
        )));
    }
    let (sigma_shape, sigma) = read_array(&mut zip, "sigma", file_len).map_err(&bad)?;
    let d = match (mu_shape.as_slice(), sigma_shape.as_slice()) {
        (&[d], &[r, c]) if d > 0 && r == d && c == d => d as usize,
        _ => {
            return Err(bad(format!(
                "expected `mu` of shape [d] and `sigma` of shape [d, d] with the same d > 0, \
                 got {mu_shape:?} and {sigma_shape:?}"
            )))
        }
    };
    if mu.iter().chain(&sigma).any(|v| !v.is_finite()) {
        return Err(bad("`mu` or `sigma` holds non-finite values".into()));
    }
    let mut meta = match zip.by_name("diffuse_meta.npy") {
        Ok(entry) => {
            let size = entry.size();
            let npy = open_npy(entry)
                .map_err(|e| bad(format!("array `diffuse_meta` is not a valid .npy ({e})")))?;
            // Checked before reading: the header's shape must not claim more than the member.
            if npy.len() > size {
                return Err(bad(
                    "array `diffuse_meta` claims more data than it holds".into()
                ));
            }
            let json = npy
                .into_vec::<u8>()
                .map_err(|e| bad(format!("array `diffuse_meta` is not uint8 ({e})")))?;
            let v: serde_json::Value = serde_json::from_slice(&json)
                .map_err(|e| bad(format!("array `diffuse_meta` is not JSON ({e})")))?;
            if !v.is_object() {
                return Err(bad("array `diffuse_meta` is not a JSON object".into()));
            }
            v
        }
        Err(_) => serde_json::json!({}),
    };
    meta["format"] = "npz".into();
    meta["dim"] = d.into();
    let n = meta["n"].as_u64().unwrap_or(0) as usize;
    Ok((
        FeatureStats {
            mu: DVector::from_vec(mu),
            sigma: DMatrix::from_row_slice(d, d, &sigma),
            n,
            factor: None,
        },
        meta,
    ))
}

/// Array `name` of the archive (member `name.npy`) as f64 in C (row-major) order, with its
/// shape. Only float64 and float32 (widened) are accepted; the claimed size is checked against
/// the member's and the file's sizes before the data is read.
fn read_array<R: Read + std::io::Seek>(
    zip: &mut zip::ZipArchive<R>,
    name: &str,
    file_len: u64,
) -> std::result::Result<(Vec<u64>, Vec<f64>), String> {
    let member = format!("{name}.npy");
    let names: Vec<String> = zip
        .file_names()
        .filter_map(|n| n.ok().map(|n| n.into_owned()))
        .collect();
    let entry = match zip.by_name(&member) {
        Ok(e) => e,
        Err(_) => {
            let mut found: Vec<&str> = names
                .iter()
                .map(|n| n.strip_suffix(".npy").unwrap_or(n))
                .collect();
            found.sort_unstable();
            return Err(format!(
                "no array `{name}` ({member}); it holds [{}], while pytorch-fid's and EDM's \
                 statistics hold `mu` and `sigma`",
                found.join(", ")
            ));
        }
    };
    let unpacked = entry.size();
    if unpacked > entry.compressed_size().saturating_mul(MAX_DEFLATE_RATIO)
        || unpacked > file_len.saturating_mul(MAX_DEFLATE_RATIO)
    {
        return Err(format!(
            "member {member} claims {unpacked} bytes, more than its compressed size allows"
        ));
    }
    let npy = open_npy(entry).map_err(|e| format!("array `{name}` is not a valid .npy ({e})"))?;
    let shape = npy.shape().to_vec();
    let count = shape.iter().try_fold(1u64, |a, &s| a.checked_mul(s));
    let fortran = matches!(npy.order(), npyz::Order::Fortran);
    let npyz::DType::Plain(ts) = npy.dtype() else {
        return Err(format!(
            "array `{name}` has dtype {}, expected float64",
            npy.dtype().descr()
        ));
    };
    let item = match (ts.type_char(), ts.size_field()) {
        (npyz::TypeChar::Float, 8) => 8,
        (npyz::TypeChar::Float, 4) => 4,
        _ => {
            return Err(format!(
                "array `{name}` has dtype {ts}, expected float64 (or float32)"
            ))
        }
    };
    if shape.len() > 2 || count.is_none_or(|c| c.saturating_mul(item) > unpacked) {
        return Err(format!(
            "array `{name}` has shape {shape:?}, expected [d] or [d, d] and no more data than \
             the member holds"
        ));
    }
    let read = |e: std::io::Error| format!("array `{name}` cannot be read ({e})");
    let mut values: Vec<f64> = if item == 8 {
        npy.into_vec::<f64>().map_err(read)?
    } else {
        npy.into_vec::<f32>()
            .map_err(read)?
            .into_iter()
            .map(f64::from)
            .collect()
    };
    if fortran && shape.len() == 2 {
        // Column-major on disk: transpose into row-major.
        let (r, c) = (shape[0] as usize, shape[1] as usize);
        values = (0..r * c).map(|i| values[(i % c) * r + i / c]).collect();
    }
    Ok((shape, values))
}

/// numpy's own limit on the `.npy` header's length (`_MAX_HEADER_SIZE`).
const MAX_NPY_HEADER: usize = 10_000;

/// The `.npy` reader of a member, after checking the header length it declares (npyz would
/// allocate whatever the 2- or 4-byte length field says, up to 4 GiB, before reading it) and
/// that its shape's element count fits in 64 bits.
fn open_npy<R: Read>(mut member: R) -> std::io::Result<npyz::NpyFile<impl Read>> {
    let invalid = |msg: String| std::io::Error::new(std::io::ErrorKind::InvalidData, msg);
    // Magic (6 bytes), version (2), then the header length: u16 in version 1, u32 after.
    let mut pre = [0u8; 12];
    member.read_exact(&mut pre[..10])?;
    if &pre[..6] != b"\x93NUMPY" {
        return Err(invalid("no \\x93NUMPY magic".into()));
    }
    let (len, pre_len) = match pre[6] {
        1 => (u16::from_le_bytes([pre[8], pre[9]]) as usize, 10),
        2 | 3 => {
            member.read_exact(&mut pre[10..])?;
            (
                u32::from_le_bytes(pre[8..12].try_into().unwrap()) as usize,
                12,
            )
        }
        v => return Err(invalid(format!("unknown .npy version {v}"))),
    };
    if len > MAX_NPY_HEADER {
        return Err(invalid(format!(
            "header of {len} bytes, numpy's limit is {MAX_NPY_HEADER}"
        )));
    }
    let mut head = pre[..pre_len].to_vec();
    head.resize(pre_len + len, 0);
    member.read_exact(&mut head[pre_len..])?;
    // npyz multiplies the shape's numbers unchecked, which panics in builds with overflow
    // checks: refuse a shape whose element count does not fit in 64 bits first.
    let text = String::from_utf8_lossy(&head[pre_len..]);
    if let Some(tuple) = text
        .split_once("'shape'")
        .and_then(|(_, rest)| rest.split_once('(')?.1.split_once(')'))
        .map(|(inside, _)| inside)
    {
        let dims = tuple.split(',').map(str::trim).filter(|t| !t.is_empty());
        let count = dims
            .map(|t| t.trim_end_matches('L').parse::<u64>().ok())
            .try_fold(1u64, |acc, d| acc.checked_mul(d?));
        if count.is_none() {
            return Err(invalid(format!("shape ({tuple}) is not a countable size")));
        }
    }
    npyz::NpyFile::new(Cursor::new(head).chain(member))
}

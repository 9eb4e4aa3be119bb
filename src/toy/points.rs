//! Point sets as CSV files with the header `x,y`.
use std::path::Path;

use crate::{Error, Result};

/// Writes points as CSV with the header `x,y`.
pub fn write_csv(path: &Path, points: &[f32]) -> Result<()> {
    let mut s = String::from("x,y\n");
    for p in points.chunks(2) {
        s.push_str(&format!("{},{}\n", p[0], p[1]));
    }
    crate::files::write_atomic(path, s.as_bytes())
}

/// Reads a CSV of 2D points (header `x,y`), naming the file and line of any error.
pub fn read_csv(path: &Path) -> Result<Vec<f32>> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    parse_csv(path, &bytes)
}

/// [`read_csv`] on the bytes of a file already read; `path` is only used in messages.
/// Values must be finite: a NaN or infinite point would poison the Chamfer distance silently.
pub fn parse_csv(path: &Path, bytes: &[u8]) -> Result<Vec<f32>> {
    let text = crate::error::utf8(path, bytes)?;
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || (i == 0 && line.chars().any(|c| c.is_ascii_alphabetic())) {
            continue;
        }
        let vals: Vec<&str> = line.split(',').collect();
        let parsed: Option<Vec<f32>> = vals
            .iter()
            .map(|v| v.trim().parse::<f32>().ok().filter(|x| x.is_finite()))
            .collect();
        match parsed {
            Some(v) if v.len() == 2 => out.extend(v),
            _ => {
                return Err(Error::bad_file(
                    path,
                    format!(
                        "line {}: expected two finite numbers `x,y`, got `{}`",
                        i + 1,
                        crate::error::clip(line, 80)
                    ),
                ))
            }
        }
    }
    if out.is_empty() {
        return Err(Error::bad_file(path, "no points"));
    }
    Ok(out)
}

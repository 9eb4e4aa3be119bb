//! `labels.csv` of a samples folder: a header `file,class`, then one `NAME.png,CLASS` line per
//! image (what `diffuse image sample` writes, read back by `diffuse image judge`).
use std::path::Path;

use crate::error::{clip, utf8};
use crate::{Error, Result};

/// One line of `labels.csv`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabelRow {
    /// Image file name, relative to the folder holding `labels.csv`.
    pub file: String,
    /// Class name as written (for digits, the digit itself).
    pub class: String,
    /// 1-based line number, for messages.
    pub line: usize,
}

const HEADER: &str = "file,class";

/// Reads `labels.csv`, naming the file and line of any error.
pub fn read_labels(path: &Path) -> Result<Vec<LabelRow>> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    parse_labels(path, &bytes)
}

/// [`read_labels`] on the bytes of a file already read; `path` is only used in messages.
/// Errors: not UTF-8, a first line other than `file,class`, a line without exactly two
/// non-empty fields, or no rows at all.
pub fn parse_labels(path: &Path, bytes: &[u8]) -> Result<Vec<LabelRow>> {
    let text = utf8(path, bytes)?;
    let mut lines = text.lines().enumerate();
    match lines.next() {
        Some((_, first)) if first.trim().eq_ignore_ascii_case(HEADER) => {}
        Some((_, first)) => {
            return Err(Error::bad_file(
                path,
                format!(
                    "line 1: expected the header `{HEADER}`, got `{}`",
                    clip(first, 80)
                ),
            ))
        }
        None => return Err(Error::bad_file(path, "empty file")),
    }
    let mut rows = Vec::new();
    for (i, line) in lines {
        if line.trim().is_empty() {
            continue;
        }
        let fields: Vec<&str> = line.split(',').map(str::trim).collect();
        match fields.as_slice() {
            [file, class] if !file.is_empty() && !class.is_empty() => rows.push(LabelRow {
                file: file.to_string(),
                class: class.to_string(),
                line: i + 1,
            }),
            _ => {
                return Err(Error::bad_file(
                    path,
                    format!(
                        "line {}: expected `file,class`, got `{}`",
                        i + 1,
                        clip(line, 80)
                    ),
                ))
            }
        }
    }
    if rows.is_empty() {
        return Err(Error::bad_file(path, "no samples listed"));
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_what_sample_writes() {
        let p = Path::new("labels.csv");
        let rows = parse_labels(p, b"file,class\n0.png,3\n\n1.png, 7 \n").unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(
            (rows[1].file.as_str(), rows[1].class.as_str()),
            ("1.png", "7")
        );
        assert_eq!(rows[1].line, 4);
    }

    #[test]
    fn bad_lines_name_file_and_line() {
        let p = Path::new("x/labels.csv");
        for (bytes, want) in [
            (&b"0.png,3\n"[..], "line 1"),
            (b"file,class\n0.png,3\n1.png\n", "line 3"),
            (b"file,class\n0.png,3,4\n", "line 2"),
            (b"file,class\n,3\n", "line 2"),
            (b"file,class\n", "no samples"),
            (b"", "empty"),
            (b"file,class\n\xff\n", "UTF-8"),
        ] {
            let e = parse_labels(p, bytes).unwrap_err().to_string();
            assert!(e.contains("x/labels.csv") && e.contains(want), "{e}");
        }
    }
}

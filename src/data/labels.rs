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
/// CSV as RFC 4180 (the `csv` crate): a quoted field may hold commas, quotes (doubled) and line
/// breaks. Errors: not UTF-8, a first record other than `file,class`, a record without exactly
/// two non-empty fields, an unterminated quote, or no rows at all.
pub fn parse_labels(path: &Path, bytes: &[u8]) -> Result<Vec<LabelRow>> {
    let text = utf8(path, bytes)?;
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .trim(csv::Trim::All)
        .from_reader(text.as_bytes());
    // The line a record starts on, from its byte offset (the csv crate's own line count skips
    // blank lines, and its offset points at the blank lines before the record).
    let line_at = |pos: Option<&csv::Position>| {
        let bytes = text.as_bytes();
        let mut byte = pos.map_or(0, |p| p.byte() as usize).min(bytes.len());
        while byte < bytes.len() && matches!(bytes[byte], b'\n' | b'\r') {
            byte += 1;
        }
        bytes[..byte].iter().filter(|&&b| b == b'\n').count() + 1
    };
    let mut rows = Vec::new();
    let mut header_seen = false;
    for rec in reader.records() {
        let rec = rec.map_err(|e| {
            let line = line_at(e.position());
            Error::bad_file(path, format!("line {line}: not valid CSV: {e}"))
        })?;
        let line = line_at(rec.position());
        let fields: Vec<&str> = rec.iter().collect();
        // A blank line is a record of one empty field: skipped, as before.
        if fields.iter().all(|f| f.is_empty()) {
            continue;
        }
        if !header_seen {
            header_seen = true;
            if fields.join(",").eq_ignore_ascii_case(HEADER) {
                continue;
            }
            return Err(Error::bad_file(
                path,
                format!(
                    "line {line}: expected the header `{HEADER}`, got `{}`",
                    clip(&fields.join(","), 80)
                ),
            ));
        }
        match fields.as_slice() {
            [file, class] if !file.is_empty() && !class.is_empty() => rows.push(LabelRow {
                file: file.to_string(),
                class: class.to_string(),
                line,
            }),
            _ => {
                return Err(Error::bad_file(
                    path,
                    format!(
                        "line {line}: expected `file,class`, got `{}`",
                        clip(&fields.join(","), 80)
                    ),
                ))
            }
        }
    }
    if !header_seen {
        return Err(Error::bad_file(path, "empty file"));
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

    /// Names with a comma, a quote and a line break are quoted when written and read back as
    /// they were; plain names are written unquoted (the file is what it was before).
    #[test]
    fn quoted_names_round_trip() {
        let p = Path::new("labels.csv");
        let rows = vec![
            vec!["0.png".to_string(), "plain".to_string()],
            vec!["1,a.png".to_string(), "say \"hi\"".to_string()],
            vec!["2.png".to_string(), "two\nlines".to_string()],
            vec!["3.png".to_string(), "a,b".to_string()],
        ];
        let bytes = crate::files::csv_bytes(&["file", "class"], rows.clone());
        let text = String::from_utf8(bytes.clone()).unwrap();
        assert!(
            text.starts_with("file,class\n0.png,plain\n\"1,a.png\",\"say \"\"hi\"\"\"\n"),
            "{text}"
        );
        let back = parse_labels(p, &bytes).unwrap();
        let got: Vec<Vec<String>> = back
            .iter()
            .map(|r| vec![r.file.clone(), r.class.clone()])
            .collect();
        assert_eq!(got, rows);
        // Line numbers count physical lines: the row after a two-line name is on line 6.
        assert_eq!(back[3].line, 6);
        let e = parse_labels(p, b"file,class\n\"0.png,3\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("labels.csv") && e.contains("line"), "{e}");
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

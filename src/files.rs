//! File helpers every module uses: create folders (checking they are writable), write
//! atomically (a temporary file renamed into place, so a crash never leaves a half-written
//! file), and JSON in and out with errors that name the file.
use std::fs;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::{Error, Result};

/// Creates the parent folder of `path` (if any) and checks it is writable.
pub fn ensure_parent(path: &Path) -> Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        ensure_dir(dir)?;
    }
    Ok(())
}

/// Creates `dir` (and parents) and checks that a file can be written in it.
pub fn ensure_dir(dir: &Path) -> Result<()> {
    fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let probe = dir.join(format!(".diffuse-write-test-{}", std::process::id()));
    fs::write(&probe, b"").map_err(|e| Error::io(dir, e))?;
    let _ = fs::remove_file(&probe);
    Ok(())
}

/// `NAME.tmpPID` beside `path`: where [`write_atomic`] stages a file.
pub(crate) fn tmp_path(path: &Path) -> PathBuf {
    let mut name = path
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_default();
    name.push(format!(".tmp{}", std::process::id()));
    path.with_file_name(name)
}

/// Writes `bytes` to `path` atomically (temporary file + rename).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    ensure_parent(path)?;
    let tmp = tmp_path(path);
    fs::write(&tmp, bytes).map_err(|e| Error::io(&tmp, e))?;
    fs::rename(&tmp, path).map_err(|e| Error::io(path, e))
}

/// Serialises `value` as pretty JSON to `path`, atomically.
pub fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<()> {
    let text = serde_json::to_string_pretty(value).expect("config types serialise");
    write_atomic(path, text.as_bytes())
}

/// Reads a JSON file into `T`, naming the file in any error.
pub fn read_json<T: DeserializeOwned>(path: &Path) -> Result<T> {
    let bytes = fs::read(path).map_err(|e| Error::io(path, e))?;
    parse_json(path, &bytes)
}

/// [`read_json`] on the bytes of a file already read; `path` is only used in messages, which
/// stay short whatever the file holds (serde quotes the offending value).
pub fn parse_json<T: DeserializeOwned>(path: &Path, bytes: &[u8]) -> Result<T> {
    serde_json::from_slice(bytes).map_err(|e| {
        Error::bad_file(
            path,
            format!(
                "not a valid config: {}",
                crate::error::clip(&e.to_string(), 300)
            ),
        )
    })
}

//! Checkpoint I/O: safetensors weights with the run's config as JSON beside them
//! (`NAME.safetensors` + `NAME.json`). Every write goes to a temporary file that is renamed
//! into place, so a crash never leaves a half-written checkpoint.
use std::fs;
use std::path::{Path, PathBuf};

use burn::module::Module;
use burn::store::{ModuleSnapshot, PytorchStore, SafetensorsStore};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::{Error, Result};

/// The JSON config path that belongs to a weights file: `X.safetensors` → `X.json`.
pub fn config_path(weights: &Path) -> PathBuf {
    weights.with_extension("json")
}

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

fn tmp_path(path: &Path) -> PathBuf {
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
    let text = fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    serde_json::from_str(&text)
        .map_err(|e| Error::bad_file(path, format!("not a valid config: {e}")))
}

/// Saves `model`'s tensors to a safetensors file, atomically.
pub fn save_weights<M: Module>(model: &M, path: &Path) -> Result<()> {
    ensure_parent(path)?;
    let tmp = tmp_path(path);
    // burn's default metadata is a hash map whose order changes from process to process; one
    // entry keeps the file a function of the weights alone.
    let mut store = SafetensorsStore::from_file(&tmp)
        .clear_metadata()
        .metadata("format", "pt");
    model.save_into(&mut store).map_err(|e| Error::Checkpoint {
        path: path.into(),
        msg: format!("could not write weights: {e}"),
    })?;
    fs::rename(&tmp, path).map_err(|e| Error::io(path, e))
}

/// Loads weights into `model` from a safetensors file, or from a PyTorch state dict
/// (`.pt`, `.pth`, `.ckpt`, optionally nested under `state_dict`). Every tensor of the model
/// must be present with the right shape; the error names the ones that are not.
pub fn load_weights<M: Module>(model: M, path: &Path) -> Result<M> {
    load_weights_remapped(model, path, &[])
}

/// [`load_weights`] with PyTorch key renames (regex, replacement) applied to state dicts.
pub fn load_weights_remapped<M: Module>(
    mut model: M,
    path: &Path,
    remaps: &[(&str, &str)],
) -> Result<M> {
    if !path.is_file() {
        return Err(Error::Checkpoint {
            path: path.into(),
            msg: "no such file".into(),
        });
    }
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or("")
        .to_ascii_lowercase();
    let fail = |msg: String| Error::Checkpoint {
        path: path.into(),
        msg,
    };
    match ext.as_str() {
        "pt" | "pth" | "ckpt" | "bin" => {
            let store = |nested: bool| {
                let mut s = PytorchStore::from_file(path);
                if nested {
                    s = s.with_top_level_key("state_dict");
                }
                remaps
                    .iter()
                    .fold(s, |s, (from, to)| s.with_key_remapping(*from, *to))
            };
            if let Err(e) = model.load_from(&mut store(false)) {
                // Lightning and the reference's own format nest the weights under `state_dict`.
                model.load_from(&mut store(true)).map_err(|_| {
                    fail(format!(
                        "not a PyTorch state dict that fits this model: {e}"
                    ))
                })?;
            }
        }
        _ => {
            let mut store = SafetensorsStore::from_file(path);
            model
                .load_from(&mut store)
                .map_err(|e| fail(format!("does not fit this model: {e}")))?;
        }
    }
    Ok(model)
}

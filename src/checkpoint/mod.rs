//! Checkpoints: weights and the metadata beside them, for every workflow.
//!
//! - this module: safetensors weights with the run's config as JSON beside them
//!   (`NAME.safetensors` + `NAME.json`), written atomically; loading from safetensors or a
//!   PyTorch state dict, with a clear report when a file does not fit the network;
//! - [`report`]: that report (what is missing or mis-shaped, what the file looks like instead);
//! - [`run`]: a training run's checkpoint as one unit (staged, flushed, committed by one
//!   rename, described by a manifest);
//! - [`background`]: the thread that writes a run's checkpoints while training goes on;
//! - [`optimizer`]: the optimizer state and the parameter ids that key it;
//! - [`toy`], [`image`]: what the 2D and the image workflows save and load;
//! - [`export`]: an image run for the course's PyTorch code, and the course's files read back.
use std::path::{Path, PathBuf};

use burn::module::Module;
use burn::store::{IdentityAdapter, ModuleSnapshot, ModuleStore, PytorchStore, SafetensorsStore};

use crate::files::{ensure_parent, tmp_path};
use crate::{Error, Result};

pub mod background;
pub mod export;
pub mod image;
pub mod optimizer;
pub mod report;
pub mod run;
pub mod toy;

/// The JSON config path that belongs to a weights file: `X.safetensors` → `X.json`.
pub fn config_path(weights: &Path) -> PathBuf {
    weights.with_extension("json")
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
    crate::files::rename_durable(&tmp, path)
}

/// A module's tensors read back to the host: what [`save_weights`] writes, held in memory so
/// that the file can be written on another thread while the module trains on. The data is a
/// copy, so later (in-place) updates of the module do not reach it.
pub struct WeightsSnapshot {
    tensors: Vec<HostTensor>,
}

/// One tensor of a [`WeightsSnapshot`].
struct HostTensor {
    name: String,
    dtype: safetensors::Dtype,
    shape: Vec<usize>,
    bytes: burn::tensor::Bytes,
}

impl safetensors::View for &HostTensor {
    fn dtype(&self) -> safetensors::Dtype {
        self.dtype
    }
    fn shape(&self) -> &[usize] {
        &self.shape
    }
    fn data(&self) -> std::borrow::Cow<'_, [u8]> {
        std::borrow::Cow::Borrowed(&self.bytes[..])
    }
    fn data_len(&self) -> usize {
        self.bytes.len()
    }
}

impl WeightsSnapshot {
    /// Reads `model`'s tensors back, named and ordered as [`save_weights`] names them (burn's
    /// collector with the identity adapter, the one `SafetensorsStore` uses by default).
    /// `path` only names the file in errors.
    pub fn take<M: Module>(model: &M, path: &Path) -> Result<Self> {
        use burn::tensor::DType;
        let fail = |msg: String| Error::Checkpoint {
            path: path.into(),
            msg,
        };
        let collected = model.collect(None, Some(Box::new(IdentityAdapter)), false);
        let mut tensors = Vec::with_capacity(collected.len());
        for t in collected {
            let (name, dtype, shape, _, bytes) = t
                .into_parts()
                .map_err(|e| fail(format!("could not read the weights back: {e}")))?;
            // The dtypes a network's parameters come in; burn-store maps them the same way.
            let dtype = match dtype {
                DType::F64 => safetensors::Dtype::F64,
                DType::F32 | DType::Flex32 => safetensors::Dtype::F32,
                DType::F16 => safetensors::Dtype::F16,
                DType::BF16 => safetensors::Dtype::BF16,
                DType::I64 => safetensors::Dtype::I64,
                DType::I32 => safetensors::Dtype::I32,
                other => {
                    return Err(fail(format!(
                        "tensor {name}: cannot store {other:?} in a safetensors checkpoint"
                    )))
                }
            };
            tensors.push(HostTensor {
                name,
                dtype,
                shape: shape.to_vec(),
                bytes,
            });
        }
        Ok(Self { tensors })
    }

    /// Bytes of tensor data held.
    pub fn bytes(&self) -> usize {
        self.tensors.iter().map(|t| t.bytes.len()).sum()
    }

    /// Writes the snapshot to `path` as [`save_weights`] would have written the module: the
    /// same container, tensor order and metadata, so the file is identical byte for byte.
    /// Not atomic by itself (the checkpoint's staging folder is).
    pub fn write(&self, path: &Path) -> Result<()> {
        let metadata: std::collections::HashMap<String, String> =
            [("format".to_string(), "pt".to_string())].into();
        safetensors::serialize_to_file(
            self.tensors.iter().map(|t| (t.name.as_str(), t)),
            Some(metadata),
            path,
        )
        .map_err(|e| Error::Checkpoint {
            path: path.into(),
            msg: format!("could not write weights: {e}"),
        })
    }
}

/// Loads weights into `model` from a safetensors file, or from a PyTorch state dict
/// (`.pt`, `.pth`, `.ckpt`, optionally nested under `state_dict`). Every tensor of the model
/// must be present with the right shape; otherwise the error (at most a screen long) gives the
/// counts, the first few missing / mis-shaped tensors and, when the names say so, what network
/// the file belongs to instead. Tensors of the file that the model lacks are ignored.
///
/// Nothing is allocated beyond what the model itself needs: shapes declared by the file are
/// checked against the model's largest tensor before any data is read (see
/// [`report::guard_sizes`]); safetensors headers are checked against the file
/// size by the `safetensors` crate and PyTorch containers by `pytorch-reader`. A pickle is
/// never executed: code-execution payloads (`__reduce__` → `os.system`) are inert data.
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
            msg: if path.exists() {
                "expected a weights file, found a directory".into()
            } else {
                "no such file".into()
            },
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
    let params = report::model_tensors(&model);
    let model_name = report::model_name::<M>(&params);
    let largest = report::largest(&params);
    let listing = |m: &std::collections::BTreeMap<String, burn::store::burn_pack::Tensor>| {
        m.values()
            .map(|t| (t.name.clone(), t.shape.to_vec()))
            .collect::<Vec<_>>()
    };
    let (file, report) = match ext.as_str() {
        "pt" | "pth" | "ckpt" | "bin" => {
            let store = |nested: bool| {
                let mut s = PytorchStore::from_file(path)
                    .allow_partial(true)
                    .validate(false);
                if nested {
                    s = s.with_top_level_key("state_dict");
                }
                remaps
                    .iter()
                    .fold(s, |s, (from, to)| s.with_key_remapping(*from, *to))
            };
            let unreadable = |e: burn::store::PytorchStoreError| {
                fail(format!(
                    "not a readable PyTorch checkpoint: {}",
                    report::tidy_store_error(&e.to_string())
                ))
            };
            let mut s = store(false);
            let mut file = listing(s.get_all_tensors().map_err(unreadable)?);
            // Lightning and the reference's own format nest the weights under `state_dict`.
            if file.iter().any(|(n, _)| n.starts_with("state_dict.")) {
                s = store(true);
                file = listing(s.get_all_tensors().map_err(unreadable)?);
            }
            report::guard_sizes(&file, largest, &model_name).map_err(fail)?;
            let report = model.load_from(&mut s).map_err(unreadable)?;
            (file, report)
        }
        _ => {
            let unreadable = |e: burn::store::SafetensorsStoreError| {
                fail(format!(
                    "not a readable safetensors file: {}",
                    report::tidy_store_error(&e.to_string())
                ))
            };
            let mut s = SafetensorsStore::from_file(path)
                .allow_partial(true)
                .validate(false);
            let file = listing(s.get_all_tensors().map_err(unreadable)?);
            report::guard_sizes(&file, largest, &model_name).map_err(fail)?;
            let report = model.load_from(&mut s).map_err(unreadable)?;
            (file, report)
        }
    };
    let misfit = report::Misfit::from_apply(&report, str::to_string);
    if !misfit.loads() {
        let names: Vec<String> = file.into_iter().map(|(n, _)| n).collect();
        return Err(fail(misfit.message(&model_name, params.len(), &names)));
    }
    Ok(model)
}

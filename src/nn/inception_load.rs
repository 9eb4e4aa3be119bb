//! Loading and saving [`InceptionV3`] weights.
//!
//! Accepted files:
//! - PyTorch `torch.save` checkpoints (`.pt`, `.pth`, `.ckpt`, any zip/legacy pickle), holding a
//!   state dict directly or nested under a key such as `state_dict` (the nesting prefix is found
//!   from the keys themselves, as are `module.`/`model.` prefixes);
//! - safetensors files with PyTorch names (what [`save_inception_safetensors`] writes).
//!
//! Two key layouts are understood: the reference wrapper's (`block1.0.conv.weight`, …,
//! `final_fc.weight`) and torchvision's / pytorch-fid's (`Conv2d_1a_3x3.conv.weight`, …,
//! `Mixed_7c.*`, `fc.weight`), which is renamed to the former. Loading is strict: any missing,
//! unexpected or mis-shaped tensor fails with an error that names them all. BatchNorm's
//! `num_batches_tracked` and torchvision's `AuxLogits.*` are ignored, and a missing classifier
//! head is allowed (FID does not use it).
use std::path::Path;

use burn::prelude::*;
use burn::store::{
    ApplyResult, BurnToPyTorchAdapter, ModuleSnapshot, ModuleStore, PyTorchToBurnAdapter,
    PytorchStore, SafetensorsStore,
};

use super::inception::{InceptionKind, InceptionV3, FEATURE_DIM};
use crate::checkpoint::report as checkpoint_report;
use crate::{Error, Result};

/// torchvision top-level module names → the wrapper's block paths.
const TORCHVISION_TO_WRAPPER: [(&str, &str); 17] = [
    ("Conv2d_1a_3x3", "block1.0"),
    ("Conv2d_2a_3x3", "block1.1"),
    ("Conv2d_2b_3x3", "block1.2"),
    ("Conv2d_3b_1x1", "block2.0"),
    ("Conv2d_4a_3x3", "block2.1"),
    ("Mixed_5b", "block3.0"),
    ("Mixed_5c", "block3.1"),
    ("Mixed_5d", "block3.2"),
    ("Mixed_6a", "block3.3"),
    ("Mixed_6b", "block3.4"),
    ("Mixed_6c", "block3.5"),
    ("Mixed_6d", "block3.6"),
    ("Mixed_6e", "block3.7"),
    ("Mixed_7a", "block4.0"),
    ("Mixed_7b", "block4.1"),
    ("Mixed_7c", "block4.2"),
    ("fc", "final_fc"),
];

const WRAPPER_ANCHOR: &str = "block1.0.conv.weight";
const TORCHVISION_ANCHOR: &str = "Conv2d_1a_3x3.conv.weight";

/// Escapes a literal for use in a regex (prefixes are made of word characters and dots).
fn regex_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 2);
    for c in s.chars() {
        if !(c.is_ascii_alphanumeric() || c == '_') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Either store, so that the remaining logic is written once.
enum AnyStore {
    Torch(PytorchStore),
    Safetensors(SafetensorsStore),
}

impl AnyStore {
    fn open(path: &Path, safetensors: bool, remap: &[(String, String)]) -> Self {
        if safetensors {
            let mut s = SafetensorsStore::from_file(path)
                .with_from_adapter(PyTorchToBurnAdapter)
                .skip_enum_variants(true)
                .allow_partial(true)
                .validate(false);
            for (from, to) in remap {
                s = s.with_key_remapping(from, to);
            }
            AnyStore::Safetensors(s)
        } else {
            let mut s = PytorchStore::from_file(path)
                .map_indices_contiguous(false)
                .allow_partial(true)
                .validate(false);
            for (from, to) in remap {
                s = s.with_key_remapping(from, to);
            }
            AnyStore::Torch(s)
        }
    }

    /// Names and shapes of every tensor in the file (after remapping).
    fn tensors(&mut self) -> std::result::Result<Vec<(String, Vec<usize>)>, String> {
        let list = |m: Vec<(String, Vec<usize>)>| m;
        match self {
            AnyStore::Torch(s) => s
                .get_all_tensors()
                .map(|m| {
                    list(
                        m.values()
                            .map(|t| (t.name.clone(), t.shape.to_vec()))
                            .collect(),
                    )
                })
                .map_err(|e| e.to_string()),
            AnyStore::Safetensors(s) => s
                .get_all_tensors()
                .map(|m| {
                    list(
                        m.values()
                            .map(|t| (t.name.clone(), t.shape.to_vec()))
                            .collect(),
                    )
                })
                .map_err(|e| e.to_string()),
        }
    }

    fn load_into(&mut self, model: &mut InceptionV3) -> std::result::Result<ApplyResult, String> {
        match self {
            AnyStore::Torch(s) => model.load_from(s).map_err(|e| e.to_string()),
            AnyStore::Safetensors(s) => model.load_from(s).map_err(|e| e.to_string()),
        }
    }
}

fn is_safetensors_file(path: &Path) -> bool {
    // safetensors: 8-byte little-endian header length, then a JSON object.
    use std::io::Read;
    let mut buf = [0u8; 9];
    std::fs::File::open(path)
        .and_then(|mut f| f.read_exact(&mut buf))
        .map(|_| buf[8] == b'{')
        .unwrap_or(false)
}

/// Drops an enum variant segment (`block3.0.A.branch1x1…` → `block3.0.branch1x1…`) so that
/// messages use the PyTorch names.
fn pytorch_name(path: &str) -> String {
    path.split('.')
        .filter(|s| !matches!(*s, "A" | "B" | "C" | "D" | "E"))
        .collect::<Vec<_>>()
        .join(".")
        .replace(".gamma", ".weight")
        .replace(".beta", ".bias")
}

/// Loads Inception-v3 weights for `kind` from `path` (see the module docs for formats and key
/// layouts). The classifier size is taken from the file's `final_fc.weight` / `fc.weight`.
pub fn load_inception(path: &Path, kind: InceptionKind, dev: &Device) -> Result<InceptionV3> {
    let meta = std::fs::metadata(path).map_err(|e| Error::io(path, e))?;
    if !meta.is_file() {
        return Err(Error::bad_file(
            path,
            "expected a checkpoint file, found a directory",
        ));
    }
    let ckpt_err = |msg: String| Error::Checkpoint {
        path: path.to_path_buf(),
        msg,
    };
    let safetensors = is_safetensors_file(path);

    // 1. List the tensors to find the layout and any nesting prefix.
    let mut probe = AnyStore::open(path, safetensors, &[]);
    let tensors = probe.tensors().map_err(|e| {
        ckpt_err(format!(
            "not a readable PyTorch (.pt/.pth/.ckpt) or safetensors checkpoint ({})",
            checkpoint_report::tidy_store_error(&e)
        ))
    })?;
    drop(probe);
    if tensors.is_empty() {
        return Err(ckpt_err("the checkpoint holds no tensors".into()));
    }
    let find = |anchor: &str| {
        tensors
            .iter()
            .find(|(n, _)| n == anchor || n.ends_with(&format!(".{anchor}")))
            .map(|(n, _)| n[..n.len() - anchor.len()].to_string())
    };
    let (prefix, torchvision_layout) = match (find(WRAPPER_ANCHOR), find(TORCHVISION_ANCHOR)) {
        (Some(p), _) => (p, false),
        (None, Some(p)) => (p, true),
        (None, None) => {
            let sample: Vec<_> = tensors
                .iter()
                .take(5)
                .map(|(n, _)| crate::error::clip(n, 60))
                .collect();
            return Err(ckpt_err(format!(
                "no Inception-v3 weights found: expected a key `{WRAPPER_ANCHOR}` or \
                 `{TORCHVISION_ANCHOR}`; the file has {} tensors, e.g. {}{}",
                tensors.len(),
                sample.join(", "),
                checkpoint_report::looks_like(
                    tensors.iter().map(|(n, _)| n.as_str()),
                    checkpoint_report::INCEPTION
                )
            )));
        }
    };

    // 2. Key remapping: strip the prefix, then rename torchvision's modules.
    let mut remap = Vec::new();
    if !prefix.is_empty() {
        remap.push((format!("^{}", regex_escape(&prefix)), String::new()));
    }
    if torchvision_layout {
        for (from, to) in TORCHVISION_TO_WRAPPER {
            remap.push((format!(r"^{from}\."), format!("{to}.")));
        }
    }

    // 3. Classifier size from the head, if present.
    let head = if torchvision_layout {
        "fc.weight"
    } else {
        "final_fc.weight"
    };
    let head_shape = tensors
        .iter()
        .find(|(n, _)| *n == format!("{prefix}{head}"))
        .map(|(_, s)| s.clone());
    let num_classes = match &head_shape {
        Some(s) if s.len() == 2 && s[1] == FEATURE_DIM && s[0] > 0 => s[0],
        Some(s) => {
            return Err(ckpt_err(format!(
                "mis-shaped tensor `{prefix}{head}`: expected [num_classes, {FEATURE_DIM}], found {s:?}"
            )))
        }
        None => 1,
    };

    // 4. Load and check the report.
    let mut model = InceptionV3::new(kind, num_classes, dev);
    let mut store = AnyStore::open(path, safetensors, &remap);
    let params = checkpoint_report::model_tensors(&model);
    checkpoint_report::guard_sizes(
        &tensors,
        checkpoint_report::largest(&params),
        checkpoint_report::INCEPTION,
    )
    .map_err(ckpt_err)?;
    let report = store
        .load_into(&mut model)
        .map_err(|e| ckpt_err(checkpoint_report::tidy_store_error(&e)))?;
    let names: Vec<String> = tensors.into_iter().map(|(n, _)| n).collect();
    check_report(&report, head_shape.is_some(), params.len(), &names).map_err(ckpt_err)?;
    Ok(model)
}

/// Turns burn-store's report into an error (see [`checkpoint_report::Misfit::message`]) naming
/// the first few missing, unexpected and mis-shaped tensors by PyTorch name, or Ok when the
/// load was complete. `params` is the network's tensor count, `file` the file's tensor names.
fn check_report(
    report: &ApplyResult,
    has_head: bool,
    params: usize,
    file: &[String],
) -> std::result::Result<(), String> {
    let mut misfit = checkpoint_report::Misfit::from_apply(report, pytorch_name);
    misfit
        .missing
        .retain(|p| has_head || !p.starts_with("final_fc."));
    misfit
        .unexpected
        .retain(|p| !p.ends_with("num_batches_tracked") && !p.starts_with("AuxLogits."));
    if misfit.is_empty() {
        return Ok(());
    }
    Err(misfit.message(checkpoint_report::INCEPTION, params, file))
}

/// Saves `model` as safetensors with PyTorch names and layouts (`block1.0.conv.weight`,
/// `…bn.weight/bias/running_mean/running_var`, `final_fc.weight` as [K, 2048]), the format
/// [`load_inception`] reads and that PyTorch can load into the reference wrapper.
pub fn save_inception_safetensors(model: &InceptionV3, path: &Path) -> Result<()> {
    // burn's default metadata is a hash map whose order changes between calls: one fixed
    // entry keeps the file a function of the weights alone.
    let mut store = SafetensorsStore::from_file(path)
        .clear_metadata()
        .metadata("format", "pt")
        .with_to_adapter(BurnToPyTorchAdapter)
        .skip_enum_variants(true)
        .overwrite(true);
    model.save_into(&mut store).map_err(|e| Error::Checkpoint {
        path: path.to_path_buf(),
        msg: format!("cannot save: {e}"),
    })
}

//! The optimizer state of a run, for `--resume`: its bytes in a canonical order, and the
//! parameter ids that key it (made a function of the network's layout, so identical runs
//! write identical files).
use std::path::Path;

use burn::module::{Module, ModuleMapper, ModuleVisitor, Param, ParamId};
use burn::optim::{ModuleOptimizer, OptimizerRecord};
use burn::prelude::*;

use crate::{Error, Result};

/// Parameter identities in visiting order (optimizer state is keyed by them).
pub fn param_ids<M: Module>(m: &M) -> Vec<u64> {
    struct Ids(Vec<u64>);
    impl ModuleVisitor for Ids {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            self.0.push(param.id.val());
        }
    }
    let mut v = Ids(Vec::new());
    m.visit(&mut v);
    v.0
}

/// Gives `m`'s parameters the identities `ids` (in visiting order), so a saved optimizer state
/// applies to a freshly loaded model.
pub fn set_param_ids<M: Module>(m: M, ids: &[u64]) -> Result<M> {
    let n = param_ids(&m).len();
    if n != ids.len() {
        return Err(Error::invalid(
            "resume",
            format!("saved state has {} parameters, the model {n}", ids.len()),
        ));
    }
    struct SetIds<'a>(&'a [u64], usize);
    impl ModuleMapper for SetIds<'_> {
        fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
            let (_, value, mapper) = param.consume();
            let id = ParamId::from(self.0[self.1]);
            self.1 += 1;
            Param::from_mapped_value(id, value, mapper)
        }
    }
    Ok(m.map(&mut SetIds(ids, 0)))
}

/// The optimizer state (moments and step counts) as bytes, in a canonical order: burn keeps the
/// per-parameter states in a hash map, so its own serialisation lists them in a different order
/// in every process; sorting them by name makes identical runs write identical files.
/// `path` only names the file in errors.
pub fn optimizer_bytes(opt: &ModuleOptimizer, path: &Path) -> Result<Vec<u8>> {
    record_bytes(opt.to_record(), path)
}

/// [`optimizer_bytes`] of a state already read back to the host ([`ModuleOptimizer::to_record`]
/// reads every moment back), so that it can be serialised on another thread.
pub fn record_bytes(record: OptimizerRecord, path: &Path) -> Result<Vec<u8>> {
    let bytes = record
        .into_bytes()
        .map_err(|e| serialise_error(path, format!("{e:?}")))?;
    canonical(bytes, path)
}

/// The bytes burn's Adam holding `states` would save ([`record_bytes`]), written from the
/// moments directly: no optimizer is rebuilt (its tensors would go to burn's default device,
/// which need not be the training device).
pub fn moments_bytes(states: Vec<AdamMoments>, path: &Path) -> Result<Vec<u8>> {
    let bytes = moments_pack(states).map_err(|e| serialise_error(path, e))?;
    canonical(bytes, path)
}

fn serialise_error(path: &Path, e: String) -> Error {
    Error::Checkpoint {
        path: path.into(),
        msg: format!("could not serialise the optimizer state: {e}"),
    }
}

/// A burn-pack record with its tensors sorted by name (scalars and metadata are kept as read).
fn canonical(bytes: burn::tensor::Bytes, path: &Path) -> Result<Vec<u8>> {
    let fail = |e: String| serialise_error(path, e);
    let reader = burn_pack::Reader::from_bytes(bytes).map_err(|e| fail(e.to_string()))?;
    let scalars = reader.scalars().clone();
    let metadata = reader.metadata().clone();
    let mut tensors = reader.into_tensors().map_err(|e| fail(e.to_string()))?;
    tensors.sort_by(|a, b| a.name.cmp(&b.name));
    let mut w = burn_pack::Writer::new(tensors);
    for (k, v) in &scalars {
        w = w.with_scalar(k, *v);
    }
    for (k, v) in &metadata {
        w = w.with_metadata(k, v);
    }
    Ok(w.into_bytes().map_err(|e| fail(e.to_string()))?.to_vec())
}

/// Restores an optimizer state written from [`optimizer_bytes`].
pub fn load_optimizer(opt: ModuleOptimizer, path: &Path) -> Result<ModuleOptimizer> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    opt.from_bytes(burn::tensor::Bytes::from_bytes_vec(bytes))
        .map_err(|e| Error::Checkpoint {
            path: path.into(),
            msg: format!("not a valid optimizer state: {e:?}"),
        })
}

/// One parameter's Adam state as burn's Adam keeps it (burn-optim `adam.rs`: `AdamState {
/// momentum: AdaptiveMomentumState { time, moment_1, moment_2, max_moment_2 } }`), read out of
/// or written into a [`ModuleOptimizer`], so that an optimizer kept elsewhere (the fused
/// update of [`crate::train::FusedAdam`]) saves and resumes through the same `optim.bin`.
#[derive(Debug, Clone, PartialEq)]
pub struct AdamMoments {
    /// The parameter's id.
    pub id: u64,
    /// The parameter's module path, as burn records it (`down.0.conv.weight`).
    pub path: Option<String>,
    /// Updates done (burn's `time`).
    pub time: usize,
    /// First and second moments, shaped as the parameter.
    pub m: TensorData,
    pub v: TensorData,
}

/// The record names of `id`'s state: burn's `RecordState` joins the field path with dots under
/// the parameter id, and `ModuleOptimizer::to_record` adds the rank under `__rank`.
fn adam_names(id: u64) -> [String; 4] {
    [
        format!("{id}.momentum.moment_1"),
        format!("{id}.momentum.moment_2"),
        format!("{id}.momentum.time"),
        format!("{id}.__rank"),
    ]
}

/// The Adam states held by `opt`, sorted by parameter id. An error names what is not plain
/// Adam (AMSGrad's extra moment, a missing field).
pub fn adam_moments(opt: &ModuleOptimizer) -> Result<Vec<AdamMoments>> {
    let fail = |e: String| Error::invalid("optimizer state", e);
    let bytes = opt.into_bytes().map_err(|e| fail(format!("{e:?}")))?;
    let reader = burn_pack::Reader::from_bytes(bytes).map_err(|e| fail(e.to_string()))?;
    let scalars = reader.scalars().clone();
    let paths = reader.metadata().clone();
    let mut tensors = std::collections::BTreeMap::new();
    for t in reader.into_tensors().map_err(|e| fail(e.to_string()))? {
        let (name, dtype, shape, _, bytes) = t.into_parts().map_err(|e| fail(e.to_string()))?;
        if name.ends_with(".max_moment_2") {
            return Err(fail(format!("{name}: AMSGrad state is not supported")));
        }
        tensors.insert(name, TensorData::from_bytes(bytes, shape, dtype));
    }
    let mut ids: Vec<u64> = scalars
        .keys()
        .filter_map(|k| k.strip_suffix(".__rank")?.parse().ok())
        .collect();
    ids.sort_unstable();
    let mut out = Vec::with_capacity(ids.len());
    for id in ids {
        let [m1, m2, time, _] = adam_names(id);
        let mut take = |name: &str| {
            tensors
                .remove(name)
                .ok_or_else(|| fail(format!("{name} is missing")))
        };
        let (m, v) = (take(&m1)?, take(&m2)?);
        let time = scalars
            .get(&time)
            .and_then(|s| usize::try_from(*s).ok())
            .ok_or_else(|| fail(format!("{time} is missing")))?;
        out.push(AdamMoments {
            id,
            path: paths.get(&id.to_string()).cloned(),
            time,
            m,
            v,
        });
    }
    if let Some(name) = tensors.keys().next() {
        return Err(fail(format!("{name} is not an Adam state")));
    }
    Ok(out)
}

/// `opt` (a fresh Adam, as `OptimConfig::adam` builds it) holding `states`: the inverse of
/// [`adam_moments`], through burn's own record format, so what it saves is what burn's Adam
/// would have saved.
pub fn optimizer_from_moments(
    opt: ModuleOptimizer,
    states: Vec<AdamMoments>,
) -> Result<ModuleOptimizer> {
    let fail = |e: String| Error::invalid("optimizer state", e);
    let bytes = moments_pack(states).map_err(fail)?;
    opt.from_bytes(bytes).map_err(|e| fail(format!("{e:?}")))
}

/// `states` in burn's record format for Adam (burn-pack: per parameter its two moments, its
/// rank and step count, its module path).
fn moments_pack(states: Vec<AdamMoments>) -> std::result::Result<burn::tensor::Bytes, String> {
    let mut tensors = Vec::with_capacity(2 * states.len());
    let mut w_scalars = Vec::with_capacity(2 * states.len());
    let mut w_paths = Vec::new();
    for s in states {
        let [m1, m2, time, rank] = adam_names(s.id);
        w_scalars.push((rank, burn_pack::Scalar::from(s.m.shape().len())));
        w_scalars.push((time, burn_pack::Scalar::from(s.time)));
        if let Some(p) = s.path {
            w_paths.push((s.id.to_string(), p));
        }
        for (name, data) in [(m1, s.m), (m2, s.v)] {
            let (bytes, shape, dtype) = data.into_parts();
            tensors.push(burn_pack::Tensor::new(
                name,
                dtype,
                shape,
                Some(s.id),
                bytes,
            ));
        }
    }
    let mut w = burn_pack::Writer::new(tensors);
    for (k, v) in &w_scalars {
        w = w.with_scalar(k, *v);
    }
    for (k, v) in &w_paths {
        w = w.with_metadata(k, v);
    }
    w.into_bytes().map_err(|e| e.to_string())
}

//! The optimizer state of a run, for `--resume`: its bytes in a canonical order, and the
//! parameter ids that key it (made a function of the network's layout, so identical runs
//! write identical files).
use std::path::Path;

use burn::module::{Module, ModuleMapper, ModuleVisitor, Param, ParamId};
use burn::optim::ModuleOptimizer;
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
    let fail = |e: String| Error::Checkpoint {
        path: path.into(),
        msg: format!("could not serialise the optimizer state: {e}"),
    };
    let bytes = opt.into_bytes().map_err(|e| fail(format!("{e:?}")))?;
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

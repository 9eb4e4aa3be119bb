//! Why a checkpoint does not fit a network, said in a few lines a person can read: the counts,
//! the first few missing / mis-shaped / unexpected tensors, and what the file looks like
//! instead ("a checkpoint of a diffusion UNet, not of Inception-v3"), guessed from its tensor
//! names. Also the guard that keeps a hostile header from making the loader allocate: a
//! tensor larger than any parameter of the network is refused before its data is read.
use burn::module::{Module, ModuleVisitor, Param};
use burn::prelude::{Bool, Int, Tensor};
use burn::store::{ApplyError, ApplyResult};

use crate::error::{clip, MAX_MESSAGE_CHARS};

/// Names shown per list; the rest are counted.
const SHOWN: usize = 5;
/// Longest tensor name shown.
const NAME_CHARS: usize = 60;

/// The FID feature network, as [`guess_kind`] names it.
pub const INCEPTION: &str = "Inception-v3 (the FID feature network)";
/// The image denoiser, as [`guess_kind`] names it.
pub const UNET: &str = "a diffusion UNet";

/// A test on a file's tensor names.
type NameTest = fn(&[&str]) -> bool;

/// Known tensor layouts: (what the file is, test on its tensor names). The first match wins,
/// so more specific layouts come first.
const KINDS: &[(&str, NameTest)] = &[
    ("a Stable Diffusion model", |n| {
        any(n, |s| s.contains("model.diffusion_model."))
    }),
    ("a diffusers UNet", |n| {
        any(n, |s| s.starts_with("down_blocks.")) && any(n, |s| s.starts_with("up_blocks."))
    }),
    (INCEPTION, |n| {
        any(n, |s| {
            s.contains("Mixed_5b.")
                || s.contains("Conv2d_1a_3x3.")
                || (s.starts_with("block3.") && s.contains(".branch"))
        })
    }),
    (UNET, |n| {
        any(n, |s| s.contains("downblocks.")) && any(n, |s| s.contains("upblocks."))
    }),
    ("the toy SimpleNet", |n| {
        any(n, |s| s.contains("layers.0.fc.")) && any(n, |s| s.contains("time_embedding"))
    }),
    ("the digits classifier", |n| {
        any(n, |s| s.starts_with("l1.")) && any(n, |s| s.starts_with("l3."))
    }),
    ("a ResNet", |n| any(n, |s| s.contains("layer1.0.conv1."))),
];

fn any(names: &[&str], f: impl Fn(&str) -> bool) -> bool {
    names.iter().any(|s| f(s))
}

/// What network a set of tensor names belongs to, when it is one this project knows.
pub fn guess_kind<'a>(names: impl IntoIterator<Item = &'a str>) -> Option<&'static str> {
    let names: Vec<&str> = names.into_iter().collect();
    KINDS.iter().find(|(_, test)| test(&names)).map(|(k, _)| *k)
}

/// Names and shapes of every parameter of `model`, by its own (burn) paths. Read from the
/// parameters' declared shapes, so a lazily initialised network is not initialised here
/// (burn's `collect` would, which costs 5 % of a UNet load).
pub fn model_tensors<M: Module>(model: &M) -> Vec<(String, Vec<usize>)> {
    #[derive(Default)]
    struct Shapes {
        path: Vec<String>,
        out: Vec<(String, Vec<usize>)>,
    }
    impl ModuleVisitor for Shapes {
        fn enter_module(&mut self, name: &str, _container: &str) {
            self.path.push(name.to_string());
        }
        fn exit_module(&mut self, _name: &str, _container: &str) {
            self.path.pop();
        }
        fn visit_float<const D: usize>(&mut self, p: &Param<Tensor<D>>) {
            self.out
                .push((self.path.join("."), p.lazy_shape().to_vec()));
        }
        fn visit_int<const D: usize>(&mut self, p: &Param<Tensor<D, Int>>) {
            self.out
                .push((self.path.join("."), p.lazy_shape().to_vec()));
        }
        fn visit_bool<const D: usize>(&mut self, p: &Param<Tensor<D, Bool>>) {
            self.out
                .push((self.path.join("."), p.lazy_shape().to_vec()));
        }
    }
    let mut v = Shapes::default();
    model.visit(&mut v);
    v.out
}

/// Elements of the largest of `params` (what [`guard_sizes`] allows).
pub fn largest(params: &[(String, Vec<usize>)]) -> usize {
    params
        .iter()
        .map(|(_, s)| s.iter().product::<usize>())
        .max()
        .unwrap_or(0)
}

/// The network's name for messages: the known kind of its parameters, else its type name.
pub fn model_name<M>(params: &[(String, Vec<usize>)]) -> String {
    if let Some(k) = guess_kind(params.iter().map(|(n, _)| n.as_str())) {
        return k.to_string();
    }
    let full = std::any::type_name::<M>();
    let base = full.split('<').next().unwrap_or(full);
    base.rsplit("::").next().unwrap_or(base).to_string()
}

/// Refuses a file whose header declares a tensor with more elements than the largest
/// parameter of the network (`largest`), before any tensor data is read. Such a tensor cannot
/// be loaded into the network anyway, and burn reads a tensor's data before comparing shapes,
/// so without this check a small file declaring a huge (or stride-0 expanded) tensor under a
/// parameter's name would make the loader allocate up to pytorch-reader's 10 GiB limit.
/// With it, a load allocates at most the network's own size per tensor.
pub fn guard_sizes(
    file: &[(String, Vec<usize>)],
    largest: usize,
    model: &str,
) -> std::result::Result<(), String> {
    for (name, shape) in file {
        let numel = shape
            .iter()
            .try_fold(1usize, |a, &d| a.checked_mul(d))
            .unwrap_or(usize::MAX);
        if numel > largest {
            let names = || file.iter().map(|(n, _)| n.as_str());
            let why = if guess_kind(names()) == Some(model) {
                "the file was made with a larger configuration than the one given".to_string()
            } else {
                format!(
                    "not a checkpoint of this network{}",
                    looks_like(names(), model)
                )
            };
            return Err(format!(
                "tensor `{}` has shape {}, more elements than any tensor of {model} \
                 (at most {largest}): {why}; nothing was loaded",
                clip(name, NAME_CHARS),
                clip(&format!("{shape:?}"), NAME_CHARS),
            ));
        }
    }
    Ok(())
}

/// "; this looks like a checkpoint of …, not of `model`" when the file's tensor names match
/// a known network other than `model`, else "".
pub fn looks_like<'a>(names: impl IntoIterator<Item = &'a str>, model: &str) -> String {
    match guess_kind(names) {
        Some(kind) if kind != model => {
            format!("; this looks like a checkpoint of {kind}, not of {model}")
        }
        _ => String::new(),
    }
}

/// What did not fit, by the names the user knows (PyTorch keys where the file is PyTorch's).
#[derive(Debug, Default, Clone)]
pub struct Misfit {
    /// Parameters of the network that the file does not hold.
    pub missing: Vec<String>,
    /// (name, shape in the file, shape the network expects).
    pub misshaped: Vec<(String, Vec<usize>, Vec<usize>)>,
    /// Tensors of the file that the network does not have.
    pub unexpected: Vec<String>,
    /// Tensors that could not be read or converted, with the reason.
    pub unreadable: Vec<String>,
}

impl Misfit {
    /// The parts of burn-store's report; `rename` maps burn paths to the names to show.
    pub fn from_apply(report: &ApplyResult, rename: impl Fn(&str) -> String) -> Self {
        let mut m = Misfit {
            missing: report.missing.iter().map(|(p, _)| rename(p)).collect(),
            unexpected: report.unused.clone(),
            ..Default::default()
        };
        for e in &report.errors {
            match e {
                ApplyError::ShapeMismatch {
                    path,
                    expected,
                    found,
                } => m
                    .misshaped
                    .push((rename(path), found.to_vec(), expected.to_vec())),
                ApplyError::DTypeMismatch {
                    path,
                    expected,
                    found,
                } => m.unreadable.push(format!(
                    "{}: element type {found:?}, expected {expected:?}",
                    rename(path)
                )),
                ApplyError::AdapterError { path, message }
                | ApplyError::LoadError { path, message } => {
                    m.unreadable
                        .push(format!("{}: {}", rename(path), first_line(message)))
                }
            }
        }
        m
    }

    /// True when nothing is missing, mis-shaped or unreadable (unexpected tensors allowed).
    pub fn loads(&self) -> bool {
        self.missing.is_empty() && self.misshaped.is_empty() && self.unreadable.is_empty()
    }

    /// True when there is nothing to report at all.
    pub fn is_empty(&self) -> bool {
        self.loads() && self.unexpected.is_empty()
    }

    /// A message of at most [`MAX_MESSAGE_CHARS`]: the counts, what the file looks like when
    /// that differs from `model`, then up to five names per list.
    ///
    /// `model` is the network's name, `params` how many tensors it has, `file` the file's
    /// tensor names.
    pub fn message(&self, model: &str, params: usize, file: &[String]) -> String {
        let mut head = format!(
            "does not fit {model}: {} of its {} missing, {} mis-shaped",
            self.missing.len(),
            count(params, "tensor"),
            self.misshaped.len()
        );
        if !self.unreadable.is_empty() {
            head.push_str(&format!(", {} unreadable", self.unreadable.len()));
        }
        head.push_str(&format!(
            "; the file has {}, {} of them unexpected",
            count(file.len(), "tensor"),
            self.unexpected.len()
        ));
        let kind = guess_kind(file.iter().map(String::as_str));
        match kind {
            Some(k) if k != model => {
                head.push_str(&format!(
                    ".\n  This looks like a checkpoint of {k}, not of {model}."
                ));
            }
            Some(_) if self.missing.is_empty() && !self.misshaped.is_empty() => head.push_str(
                ".\n  Same network, other sizes: the file was trained with another \
                 configuration (channels, depth, classes) than the one given.",
            ),
            None if file.is_empty() => head.push_str(
                ".\n  The file holds no tensors (a pickle of something else than a state \
                 dict; nothing in it was run).",
            ),
            _ => head.push('.'),
        }
        let mut msg = head;
        let misshaped: Vec<String> = self
            .misshaped
            .iter()
            .map(|(n, f, e)| {
                format!(
                    "{} is {f:?} in the file, {e:?} in the network",
                    clip(n, NAME_CHARS)
                )
            })
            .collect();
        section(&mut msg, "mis-shaped tensors", &misshaped);
        section(&mut msg, "unreadable tensors", &self.unreadable);
        section(&mut msg, "missing tensors", &self.missing);
        section(&mut msg, "unexpected tensors", &self.unexpected);
        // Every part above is bounded; this is the guarantee whatever the names hold.
        clip(&msg, MAX_MESSAGE_CHARS - 1)
    }
}

/// "1 tensor", "2 tensors".
fn count(n: usize, what: &str) -> String {
    format!("{n} {what}{}", if n == 1 { "" } else { "s" })
}

/// "\n  TITLE (N): a, b, c, d, e, and N−5 more".
fn section(msg: &mut String, title: &str, items: &[String]) {
    if items.is_empty() {
        return;
    }
    let shown: Vec<String> = items
        .iter()
        .take(SHOWN)
        .map(|s| clip(s, 2 * NAME_CHARS))
        .collect();
    msg.push_str(&format!(
        "\n  {title} ({}): {}",
        items.len(),
        shown.join(", ")
    ));
    if items.len() > SHOWN {
        msg.push_str(&format!(", and {} more", items.len() - SHOWN));
    }
}

fn first_line(s: &str) -> String {
    clip(s.trim().lines().next().unwrap_or(""), 2 * NAME_CHARS)
}

/// A burn-store error as one short line: its first non-empty line, without the API hints
/// meant for programmers ("Use `.allow_partial(true)` on the store…").
pub fn tidy_store_error(e: &str) -> String {
    let line = e
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty() && !l.starts_with("Hint:"))
        .unwrap_or("unknown error");
    clip(line, 200)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_from_names() {
        assert_eq!(
            guess_kind(["Mixed_5b.branch1x1.conv.weight", "fc.weight"]),
            Some("Inception-v3 (the FID feature network)")
        );
        assert_eq!(
            guess_kind([
                "head.weight",
                "downblocks.0.block1.0.weight",
                "upblocks.1.x"
            ]),
            Some("a diffusion UNet")
        );
        assert_eq!(
            guess_kind(["layers.0.fc.weight", "layers.0.time_embedding.mlp.0.weight"]),
            Some("the toy SimpleNet")
        );
        assert_eq!(guess_kind(["a.weight", "b.bias"]), None);
    }

    #[test]
    fn long_lists_are_cut_and_counted() {
        let m = Misfit {
            missing: (0..469).map(|i| format!("block{i}.conv.weight")).collect(),
            unexpected: (0..300).map(|i| format!("downblocks.{i}.w")).collect(),
            ..Default::default()
        };
        let mut file: Vec<String> = m.unexpected.clone();
        file.push("upblocks.0.w".into());
        let msg = m.message("Inception-v3 (the FID feature network)", 477, &file);
        assert!(msg.len() < MAX_MESSAGE_CHARS, "{msg}");
        assert!(msg.contains("469 of its 477 tensors missing"), "{msg}");
        assert!(msg.contains("and 464 more"), "{msg}");
        assert!(
            msg.contains("looks like a checkpoint of a diffusion UNet"),
            "{msg}"
        );
        assert!(!msg.contains("allow_partial"));
    }

    #[test]
    fn store_hint_is_dropped() {
        let e = "\nMissing: a, b\n\nHint: Use `.allow_partial(true)` on the store";
        assert_eq!(tidy_store_error(e), "Missing: a, b");
    }
}

//! Choosing the compute device and the training precision. The CPU (`flex`) backend is always
//! built; GPU backends sit behind cargo features.
//!
//! A device is named as `BACKEND[:ADAPTER]` ([`DeviceSpec`]): `cpu`; `wgpu` (WGSL through wgpu
//! on whichever graphics API it finds), `vulkan` (pinned to Vulkan, CubeCL's SPIR-V compiler),
//! each with an adapter `best` (the default: wgpu's high-performance pick, a discrete GPU where
//! there is one), `cpu` (a CPU-type adapter such as Mesa's lavapipe), `discrete[:N]`,
//! `integrated[:N]` or `virtual[:N]`; `cuda[:N]`. Every GPU device is proven with one small
//! computation read back to the host before it is returned, so a missing driver or adapter is
//! an error naming what is missing, never a panic in the middle of a run.
use std::fmt;
use std::str::FromStr;

use burn::prelude::*;
use burn::tensor::FloatDType;

/// Which backend to run on.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Default, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum DeviceKind {
    /// burn's flex CPU backend (the default).
    #[default]
    Cpu,
    /// wgpu with WGSL on any adapter it finds (build with `--features wgpu`).
    Wgpu,
    /// wgpu pinned to Vulkan with CubeCL's SPIR-V compiler (build with `--features vulkan`).
    Vulkan,
    /// NVIDIA GPU through CUDA (build with `--features cuda`; needs the NVIDIA driver, NVRTC
    /// and the CUDA headers at run time).
    Cuda,
}

impl DeviceKind {
    /// The name used on the command line and in configs.
    pub fn name(self) -> &'static str {
        match self {
            DeviceKind::Cpu => "cpu",
            DeviceKind::Wgpu => "wgpu",
            DeviceKind::Vulkan => "vulkan",
            DeviceKind::Cuda => "cuda",
        }
    }

    /// Whether this backend runs CubeCL kernels (fusion, autotune, compiled kernels).
    pub fn is_cube(self) -> bool {
        !matches!(self, DeviceKind::Cpu)
    }
}

/// Which adapter of a wgpu backend, or which CUDA device, to open.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Adapter {
    /// wgpu's own choice (high-performance preference: a discrete GPU where there is one, else
    /// an integrated one, else a CPU-type adapter); CUDA device 0.
    #[default]
    Best,
    /// A CPU-type adapter (software rendering, e.g. Mesa's lavapipe).
    Cpu,
    /// The N-th discrete GPU (for CUDA: device N).
    Discrete(usize),
    /// The N-th integrated GPU.
    Integrated(usize),
    /// The N-th virtual GPU.
    Virtual(usize),
}

/// A device as named on the command line: a backend and an adapter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct DeviceSpec {
    pub kind: DeviceKind,
    pub adapter: Adapter,
}

impl From<DeviceKind> for DeviceSpec {
    fn from(kind: DeviceKind) -> Self {
        DeviceSpec {
            kind,
            adapter: Adapter::Best,
        }
    }
}

/// The accepted spellings, for error messages and `--help`.
pub const DEVICE_FORMS: &str = "cpu, wgpu[:ADAPTER], vulkan[:ADAPTER] or cuda[:N], where ADAPTER \
    is best, cpu, discrete[:N], integrated[:N] or virtual[:N]";

impl FromStr for DeviceSpec {
    type Err = crate::Error;

    fn from_str(s: &str) -> crate::Result<Self> {
        let bad = |why: &str| {
            crate::Error::invalid(
                "device",
                format!("'{s}' is not a device ({why}); expected {DEVICE_FORMS}"),
            )
        };
        let lower = s.trim().to_ascii_lowercase();
        let mut parts = lower.split(':');
        let kind = match parts.next().unwrap_or("") {
            "cpu" | "flex" => DeviceKind::Cpu,
            "wgpu" => DeviceKind::Wgpu,
            "vulkan" => DeviceKind::Vulkan,
            "cuda" => DeviceKind::Cuda,
            other => return Err(bad(&format!("unknown backend '{other}'"))),
        };
        let rest: Vec<&str> = parts.collect();
        let index = |i: usize| -> crate::Result<usize> {
            match rest.get(i) {
                None => Ok(0),
                Some(n) => n
                    .parse()
                    .map_err(|_| bad(&format!("'{n}' is not an index"))),
            }
        };
        let adapter = match kind {
            DeviceKind::Cpu if rest.is_empty() => Adapter::Best,
            DeviceKind::Cpu => return Err(bad("the CPU backend takes no adapter")),
            DeviceKind::Cuda => match rest.len() {
                0 => Adapter::Best,
                1 => Adapter::Discrete(index(0)?),
                _ => return Err(bad("cuda takes at most a device index")),
            },
            DeviceKind::Wgpu | DeviceKind::Vulkan => {
                let extra = |n: usize| rest.len() > n;
                let adapter = match rest.first().copied() {
                    None | Some("best") | Some("default") => Adapter::Best,
                    Some("cpu") => Adapter::Cpu,
                    Some("discrete") | Some("gpu") => Adapter::Discrete(index(1)?),
                    Some("integrated") => Adapter::Integrated(index(1)?),
                    Some("virtual") => Adapter::Virtual(index(1)?),
                    Some(other) => return Err(bad(&format!("unknown adapter '{other}'"))),
                };
                let takes_index = matches!(
                    adapter,
                    Adapter::Discrete(_) | Adapter::Integrated(_) | Adapter::Virtual(_)
                );
                if extra(if takes_index { 2 } else { 1 }) {
                    return Err(bad("too many ':' parts"));
                }
                adapter
            }
        };
        Ok(DeviceSpec { kind, adapter })
    }
}

impl fmt::Display for DeviceSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.kind.name())?;
        match (self.kind, self.adapter) {
            (_, Adapter::Best) => Ok(()),
            (DeviceKind::Cuda, Adapter::Discrete(n)) => write!(f, ":{n}"),
            (_, Adapter::Cpu) => f.write_str(":cpu"),
            (_, Adapter::Discrete(n)) => write!(f, ":discrete:{n}"),
            (_, Adapter::Integrated(n)) => write!(f, ":integrated:{n}"),
            (_, Adapter::Virtual(n)) => write!(f, ":virtual:{n}"),
        }
    }
}

/// The device for `kind` with its default adapter; see [`open`].
pub fn device(kind: DeviceKind) -> crate::Result<Device> {
    open(&DeviceSpec::from(kind))
}

/// The device `spec` names, or an error when that backend was not compiled in, or its driver
/// or adapter is missing, or a first computation on it fails.
pub fn open(spec: &DeviceSpec) -> crate::Result<Device> {
    match spec.kind {
        DeviceKind::Cpu => Ok(Device::flex()),
        #[cfg(any(feature = "wgpu", feature = "vulkan", feature = "cuda"))]
        _ => gpu::open(spec),
        #[cfg(not(any(feature = "wgpu", feature = "vulkan", feature = "cuda")))]
        _ => Err(not_built(spec.kind.name())),
    }
}

#[allow(dead_code)] // unused when every GPU feature is on
fn not_built(feature: &str) -> crate::Error {
    crate::Error::invalid(
        "device",
        format!(
            "this binary was built without the `{feature}` feature; rebuild with \
             `cargo build --release --features {feature}`"
        ),
    )
}

/// The folder of the persistent GPU caches (autotune results and compiled kernels):
/// `DIFFUSE_CACHE_DIR` when set, else `diffuse/cubecl` under the user's cache directory
/// (`$XDG_CACHE_HOME`, `~/.cache`, `%LOCALAPPDATA%`, `~/Library/Caches`). `None` when
/// `DIFFUSE_CACHE_DIR` is `off` (or `0`, or empty): every process then compiles and tunes from
/// cold, as burn does by default.
pub fn cache_dir() -> Option<std::path::PathBuf> {
    use std::path::PathBuf;
    if let Some(v) = std::env::var_os("DIFFUSE_CACHE_DIR") {
        let s = v.to_string_lossy();
        if s.is_empty() || s == "off" || s == "0" {
            return None;
        }
        return Some(PathBuf::from(v));
    }
    let env = |k: &str| {
        std::env::var_os(k)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    let base = if cfg!(windows) {
        env("LOCALAPPDATA")
    } else if cfg!(target_os = "macos") {
        env("HOME").map(|h| h.join("Library/Caches"))
    } else {
        env("XDG_CACHE_HOME").or_else(|| env("HOME").map(|h| h.join(".cache")))
    };
    Some(
        base.unwrap_or_else(std::env::temp_dir)
            .join("diffuse")
            .join("cubecl"),
    )
}

#[cfg(any(feature = "wgpu", feature = "vulkan", feature = "cuda"))]
mod gpu {
    use std::collections::HashMap;
    use std::sync::{Mutex, Once};

    use burn::cubecl::config::{CubeClRuntimeConfig, RuntimeConfig};

    use super::*;

    /// Points CubeCL's persistent store (autotune results, compiled kernels) at
    /// [`cache_dir`], once per process and before the first device opens. burn ships with the
    /// compilation cache off and the store under the build's `target/`, which a binary carried
    /// to another machine does not have: every process then compiled and autotuned every kernel
    /// from cold (minutes on a GPU). A `cubecl.toml` the user keeps in the working directory
    /// and CubeCL's own environment variables are read first and win, except for the folder.
    pub fn configure_caches() {
        static ONCE: Once = Once::new();
        ONCE.call_once(|| {
            let mut cfg = CubeClRuntimeConfig::from_current_dir().override_from_env();
            match cache_dir() {
                Some(dir) => {
                    cfg.environment.path = burn::cubecl::config::cache::CacheConfig::Directory(dir);
                    cfg.compilation.cache = true;
                }
                None => {
                    cfg.compilation.cache = false;
                    cfg.autotune.disable_cache = true;
                }
            }
            // Loses only to a configuration the program already set or read.
            let _ = CubeClRuntimeConfig::try_set(cfg);
        });
    }

    /// Devices opened so far: wgpu refuses to initialise the same adapter twice in a process.
    static OPENED: Mutex<Option<HashMap<DeviceSpec, Device>>> = Mutex::new(None);

    pub(super) fn open(spec: &DeviceSpec) -> crate::Result<Device> {
        let mut opened = OPENED.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(d) = opened.get_or_insert_with(HashMap::new).get(spec) {
            return Ok(d.clone());
        }
        configure_caches();
        let dev = match spec.kind {
            DeviceKind::Cpu => unreachable!("the CPU device is not a GPU"),
            DeviceKind::Wgpu | DeviceKind::Vulkan => wgpu::open(spec)?,
            DeviceKind::Cuda => cuda::open(spec)?,
        };
        prove(spec, &dev)?;
        opened
            .get_or_insert_with(HashMap::new)
            .insert(*spec, dev.clone());
        Ok(dev)
    }

    /// One small computation read back to the host: a device that cannot compile, launch or
    /// read back fails here with an error instead of panicking later, mid-run.
    fn prove(spec: &DeviceSpec, dev: &Device) -> crate::Result<()> {
        let dev = dev.clone();
        let got = quietly(move || {
            let x: Tensor<1> = Tensor::from_data(TensorData::new(vec![1f32, 2.0], [2]), &dev);
            (x * 2.0 + 1.0)
                .into_data()
                .try_to_vec::<f32>()
                .map_err(|e| format!("{e:?}"))
        });
        match got {
            Ok(Ok(v)) if v == [3.0, 5.0] => Ok(()),
            Ok(Ok(v)) => Err(fail(
                spec,
                &format!("a test computation returned {v:?} instead of [3, 5]"),
            )),
            Ok(Err(e)) | Err(e) => Err(fail(spec, &e)),
        }
    }

    /// Runs `f`, turning a panic into its message; the default hook would print it as a crash.
    pub(super) fn quietly<T>(f: impl FnOnce() -> T) -> std::result::Result<T, String> {
        let hook = std::panic::take_hook();
        std::panic::set_hook(Box::new(|_| {}));
        let got = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
        std::panic::set_hook(hook);
        got.map_err(|panic| {
            panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "unknown failure".into())
        })
    }

    pub(super) fn fail(spec: &DeviceSpec, detail: &str) -> crate::Error {
        let needs = match spec.kind {
            DeviceKind::Cuda => cuda::NEEDS.to_string(),
            _ => wgpu::needs(),
        };
        crate::Error::invalid(
            "device",
            format!(
                "could not start {spec}: {}. {needs}",
                detail.trim().trim_end_matches('.').replace('\n', " ")
            ),
        )
    }

    #[cfg(any(feature = "wgpu", feature = "vulkan"))]
    pub mod wgpu {
        use burn::tensor::wgpu::{wgpu as w, WgpuBackend};
        use burn::tensor::DeviceKind as Kind;

        use super::*;

        /// The adapters wgpu sees on this machine, as "name (type, api)" lines.
        pub fn adapters() -> Vec<String> {
            let listed = quietly(|| {
                let instance =
                    w::Instance::new(w::InstanceDescriptor::new_without_display_handle());
                burn::cubecl::future::block_on(instance.enumerate_adapters(w::Backends::all()))
                    .into_iter()
                    .map(|a| {
                        let i = a.get_info();
                        format!("{} ({:?}, {:?})", i.name, i.device_type, i.backend)
                    })
                    .collect::<Vec<_>>()
            });
            listed.unwrap_or_default()
        }

        pub(super) fn needs() -> String {
            let found = adapters();
            let found = if found.is_empty() {
                "wgpu found no adapter at all".to_string()
            } else {
                format!("adapters found: {}", found.join("; "))
            };
            format!(
                "{found}. A GPU needs its Vulkan (or Metal/DX12) driver; on a machine without \
                 one, Mesa's software driver (Debian: mesa-vulkan-drivers) runs everything on \
                 the CPU with --device wgpu:cpu"
            )
        }

        pub(in super::super) fn open(spec: &DeviceSpec) -> crate::Result<Device> {
            let api = match spec.kind {
                #[cfg(feature = "vulkan")]
                DeviceKind::Vulkan => WgpuBackend::Vulkan,
                #[cfg(not(feature = "vulkan"))]
                DeviceKind::Vulkan => return Err(not_built("vulkan")),
                #[cfg(feature = "wgpu")]
                _ => WgpuBackend::Auto,
                #[cfg(not(feature = "wgpu"))]
                _ => return Err(not_built("wgpu")),
            };
            let kind = match spec.adapter {
                Adapter::Best => Kind::DefaultDevice,
                Adapter::Cpu => Kind::Cpu,
                Adapter::Discrete(n) => Kind::DiscreteGpu(n),
                Adapter::Integrated(n) => Kind::IntegratedGpu(n),
                Adapter::Virtual(n) => Kind::VirtualGpu(n),
            };
            let options = burn::prelude::Device::wgpu_options()
                .device_kind(kind)
                .graphics_api(api);
            match quietly(move || options.init()) {
                Ok(Ok(dev)) => Ok(dev),
                Ok(Err(e)) => Err(fail(spec, &e.to_string())),
                Err(panic) => Err(fail(spec, &panic)),
            }
        }
    }

    #[cfg(not(any(feature = "wgpu", feature = "vulkan")))]
    pub mod wgpu {
        use super::*;

        pub(super) fn needs() -> String {
            String::new()
        }

        pub(in super::super) fn open(spec: &DeviceSpec) -> crate::Result<Device> {
            Err(not_built(spec.kind.name()))
        }
    }

    #[cfg(feature = "cuda")]
    pub mod cuda {
        use super::*;

        /// What a machine needs for `--device cuda`, for error messages.
        pub(super) const NEEDS: &str = "the CUDA device needs the NVIDIA driver (libcuda.so.1), \
            NVRTC (libnvrtc.so from the CUDA toolkit 12.x/13.x, on the library path) and the \
            CUDA headers (found through CUDA_PATH, /usr/local/cuda, /opt/cuda or nvcc in \
            /usr/bin)";

        /// `Device::cuda(N)` after checking that the driver and NVRTC libraries load: cubecl
        /// loads libcuda lazily and panics when it is missing, and NVRTC (and the headers it
        /// includes) are first needed when the first kernel compiles ([`prove`] covers that).
        pub(in super::super) fn open(spec: &DeviceSpec) -> crate::Result<Device> {
            // SAFETY: each call only tries to dlopen the library's candidate names.
            if !unsafe { cudarc::driver::sys::is_culib_present() } {
                return Err(fail(
                    spec,
                    "the NVIDIA driver library libcuda.so was not found",
                ));
            }
            // SAFETY: as above.
            if !unsafe { cudarc::nvrtc::sys::is_culib_present() } {
                return Err(fail(
                    spec,
                    "NVRTC (libnvrtc.so) was not found; add the CUDA toolkit's lib64 folder to \
                     LD_LIBRARY_PATH",
                ));
            }
            let index = match spec.adapter {
                Adapter::Discrete(n) => n,
                _ => 0,
            };
            quietly(move || Device::cuda(index)).map_err(|e| fail(spec, &e))
        }
    }

    #[cfg(not(feature = "cuda"))]
    pub mod cuda {
        use super::*;

        pub(super) const NEEDS: &str = "";

        pub(in super::super) fn open(_spec: &DeviceSpec) -> crate::Result<Device> {
            Err(not_built("cuda"))
        }
    }
}

#[cfg(any(feature = "wgpu", feature = "vulkan", feature = "cuda"))]
pub use gpu::configure_caches;

/// Makes burn's default device the CPU backend unless `BURN_DEVICE` names another. burn loads
/// an optimizer state (`ModuleOptimizer::load_record`, what `--resume` reads) onto its default
/// device, and moves each parameter's state to that parameter's device at the next step; the
/// default is CUDA in any build with the `cuda` feature (also on a machine without CUDA, where
/// the load would abort) and otherwise the first compiled GPU runtime (a second adapter). The
/// CPU is there on every machine. It sets an environment variable: call it before other
/// threads start (the program does, first thing).
pub fn load_states_on_the_cpu() {
    if std::env::var_os("BURN_DEVICE").is_none() {
        std::env::set_var("BURN_DEVICE", "flex");
    }
}

/// Kernel launches on CubeCL devices, counted per kernel name.
#[cfg(any(feature = "wgpu", feature = "vulkan", feature = "cuda"))]
#[derive(Debug, Default, Clone)]
pub struct Launches(pub std::collections::BTreeMap<String, usize>);

#[cfg(any(feature = "wgpu", feature = "vulkan", feature = "cuda"))]
impl Launches {
    /// All launches.
    pub fn total(&self) -> usize {
        self.0.values().sum()
    }
}

/// Runs `f` and counts the kernels launched on every CubeCL device meanwhile (CubeCL's launch
/// observer, called on the issuing thread before each launch). With fusion, kernels launch when
/// a queue is flushed, so `f` should end by reading a result back. Not reentrant: one count at a
/// time per process.
#[cfg(any(feature = "wgpu", feature = "vulkan", feature = "cuda"))]
pub fn count_launches<T>(f: impl FnOnce() -> T) -> (T, Launches) {
    use burn::cubecl::logging::{LaunchObservation, LaunchObserver};
    use std::sync::{Arc, Mutex};

    #[derive(Default)]
    struct Count(Mutex<std::collections::BTreeMap<&'static str, usize>>);
    impl LaunchObserver for Count {
        fn launched(&self, kernel: &'static str) {
            let mut m = self.0.lock().unwrap_or_else(|e| e.into_inner());
            *m.entry(kernel).or_default() += 1;
        }
    }
    let count = Arc::new(Count::default());
    let watching = LaunchObservation::new(count.clone());
    let out = f();
    drop(watching);
    let m = count.0.lock().unwrap_or_else(|e| e.into_inner());
    let short = |k: &str| {
        burn::cubecl::config::type_name_format(k, burn::cubecl::config::TypeNameFormatLevel::Short)
    };
    let mut named = std::collections::BTreeMap::new();
    for (k, n) in m.iter() {
        *named.entry(short(k)).or_default() += n;
    }
    (out, Launches(named))
}

#[cfg(any(feature = "wgpu", feature = "vulkan"))]
pub use gpu::wgpu::adapters;

/// Floating-point precision of the network's arithmetic in training.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    /// Everything in f32. (On a GPU, burn's autotuned f32 matrix kernels may use TF32 tensor
    /// cores where the chip has them, as PyTorch's convolutions do by default.)
    #[default]
    F32,
    /// Mixed precision: f32 master weights, optimizer state, loss and EMA; the network's
    /// forward and backward in bf16 (the weights are cast to bf16 inside the autodiff graph,
    /// so their gradients come back to the f32 weights in f32).
    ///
    /// The policy is PyTorch's autocast: convolutions, linear layers and matrix products run
    /// in bf16; GroupNorm (+SiLU), the attention softmax and the loss run in f32 (their
    /// inputs are cast to f32, with f32 GroupNorm γ, β, and the results cast back to bf16 for
    /// the next product). See `train::autocast` and `nn::unet::norm_act`.
    Bf16,
}

impl Precision {
    /// The default for a device: bf16 where it is the fast path (NVIDIA tensor cores), f32 on
    /// the CPU (flex's bf16 kernels convert to f32 and back, so they only cost time).
    pub fn default_for(kind: DeviceKind) -> Self {
        match kind {
            DeviceKind::Cuda => Precision::Bf16,
            DeviceKind::Cpu | DeviceKind::Wgpu | DeviceKind::Vulkan => Precision::F32,
        }
    }

    /// The float type the network computes in.
    pub fn dtype(self) -> FloatDType {
        match self {
            Precision::F32 => FloatDType::F32,
            Precision::Bf16 => FloatDType::BF16,
        }
    }

    /// Errors when `device` cannot compute in this precision.
    pub fn check(self, device: &Device) -> crate::Result<()> {
        if device.supports_dtype(self.dtype()) {
            Ok(())
        } else {
            Err(crate::Error::invalid(
                "train.precision",
                format!("{self:?} is not supported by this device; train in f32"),
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_names_parse_and_print_back() {
        for (text, kind, adapter) in [
            ("cpu", DeviceKind::Cpu, Adapter::Best),
            ("wgpu", DeviceKind::Wgpu, Adapter::Best),
            ("wgpu:cpu", DeviceKind::Wgpu, Adapter::Cpu),
            ("vulkan:cpu", DeviceKind::Vulkan, Adapter::Cpu),
            (
                "vulkan:discrete:1",
                DeviceKind::Vulkan,
                Adapter::Discrete(1),
            ),
            (
                "wgpu:integrated:0",
                DeviceKind::Wgpu,
                Adapter::Integrated(0),
            ),
            ("wgpu:virtual:2", DeviceKind::Wgpu, Adapter::Virtual(2)),
            ("cuda", DeviceKind::Cuda, Adapter::Best),
            ("cuda:3", DeviceKind::Cuda, Adapter::Discrete(3)),
        ] {
            let spec: DeviceSpec = text.parse().unwrap();
            assert_eq!(spec, DeviceSpec { kind, adapter }, "{text}");
            assert_eq!(spec.to_string(), text);
        }
        // Other spellings of the same devices.
        let same = |a: &str, b: &str| {
            assert_eq!(
                a.parse::<DeviceSpec>().unwrap(),
                b.parse().unwrap(),
                "{a} vs {b}"
            )
        };
        same("WGPU:best", "wgpu");
        same("vulkan:gpu", "vulkan:discrete:0");
        same("wgpu:discrete", "wgpu:discrete:0");
        same("flex", "cpu");
    }

    #[test]
    fn bad_device_names_are_refused_with_the_forms() {
        for bad in [
            "",
            "gpu",
            "cpu:0",
            "wgpu:fast",
            "wgpu:discrete:x",
            "cuda:0:1",
            "wgpu:cpu:1",
            "vulkan:discrete:0:0",
        ] {
            let e = bad.parse::<DeviceSpec>().unwrap_err().to_string();
            assert!(
                e.contains("device") && e.contains(DEVICE_FORMS),
                "{bad}: {e}"
            );
        }
    }

    #[cfg(not(any(feature = "wgpu", feature = "vulkan", feature = "cuda")))]
    #[test]
    fn a_gpu_backend_that_was_not_built_is_an_error() {
        for name in ["wgpu", "vulkan:cpu", "cuda"] {
            let e = open(&name.parse().unwrap()).unwrap_err().to_string();
            assert!(e.contains("without the") && e.contains("--features"), "{e}");
        }
    }

    #[test]
    fn the_cache_folder_follows_the_environment_variable() {
        // One test touches DIFFUSE_CACHE_DIR, so no other test races it.
        std::env::set_var("DIFFUSE_CACHE_DIR", "/some/where");
        assert_eq!(cache_dir(), Some(std::path::PathBuf::from("/some/where")));
        for off in ["off", "0", ""] {
            std::env::set_var("DIFFUSE_CACHE_DIR", off);
            assert_eq!(cache_dir(), None, "{off:?}");
        }
        std::env::remove_var("DIFFUSE_CACHE_DIR");
        let d = cache_dir().unwrap();
        assert!(d.ends_with("diffuse/cubecl"), "{}", d.display());
    }
}

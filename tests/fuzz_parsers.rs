//! Bounded fuzzing of every parser of user files, on stable Rust, as part of `cargo test`:
//! each target of `fuzz/targets.rs` gets its committed corpus (`tests/fuzz_corpus/<target>/`,
//! the JPEG one in `crates/diffuse-jpeg/tests/fuzz_corpus/`, plus the goldens that are valid
//! inputs) and a fixed number of deterministic mutations of
//! every valid seed (bit flips, byte overwrites, truncations, splices, inserted and deleted
//! chunks, huge length fields, odd numbers in text). Every input must give `Ok` or an error
//! that names the file and fits on a screen: no panic, no abort, no hang, and no allocation
//! beyond [`ALLOC_LIMIT`] (measured by a counting allocator). Files named `bomb_*` or `evil_*`
//! must be rejected. The same targets run unbounded under cargo-fuzz (`fuzz/README.md`).
//!
//! `DIFFUSE_FUZZ_MUTATIONS=N` sets the mutations per seed (default 600; about 15 s on 2 cores);
//! a crashing input is written to the temp folder and its path printed.
use std::alloc::{GlobalAlloc, Layout, System};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::Mutex;
use std::time::{Duration, Instant};

#[path = "../fuzz/targets.rs"]
mod targets;

use diffuse::error::MAX_MESSAGE_CHARS;

// ---------------------------------------------------------------------------------------------
// Allocation accounting
// ---------------------------------------------------------------------------------------------

/// Most memory one input may take on top of what was live before it. Every seed is under
/// 250 KB and the networks are tiny, so anything near this is a file making the parser
/// allocate what it claims rather than what it holds.
const ALLOC_LIMIT: usize = 64 << 20;

/// Slowest an input may be before it counts as a hang: far above the milliseconds a real
/// input takes, so a loaded machine never trips it. `DIFFUSE_FUZZ_TIME_LIMIT_S` overrides it
/// (the watchdog's own test uses 1 s).
const TIME_LIMIT: Duration = Duration::from_secs(20);

fn time_limit() -> Duration {
    std::env::var("DIFFUSE_FUZZ_TIME_LIMIT_S")
        .ok()
        .and_then(|v| v.parse().ok())
        .map(Duration::from_secs)
        .unwrap_or(TIME_LIMIT)
}

// ---------------------------------------------------------------------------------------------
// Hang watchdog
// ---------------------------------------------------------------------------------------------

/// The input being parsed: (target, input name, its bytes, when it started).
type Running = (&'static str, String, Vec<u8>, Instant);
static RUNNING: Mutex<Option<Running>> = Mutex::new(None);

/// Starts (once) the thread that watches [`RUNNING`]: an input still running past the time
/// limit is a hang. A test thread cannot be stopped from outside, and a hung one would hang
/// the suite, so the watchdog saves the input, names it on stderr and ends the test process
/// with a failure status (cargo then reports the test binary as failed, with that message).
fn start_watchdog() {
    static STARTED: std::sync::Once = std::sync::Once::new();
    STARTED.call_once(|| {
        let limit = time_limit();
        std::thread::spawn(move || loop {
            std::thread::sleep(Duration::from_millis(100));
            let guard = RUNNING.lock().unwrap_or_else(|e| e.into_inner());
            if let Some((target, input, data, since)) = guard.as_ref() {
                let took = since.elapsed();
                if took > limit {
                    let p = save_crash(target, data);
                    eprintln!(
                        "fuzz watchdog: {target}: {input} (saved as {}) still running after {took:.1?} (limit {limit:?}): a hang; failing the test",
                        p.display()
                    );
                    std::process::exit(101);
                }
            }
        });
    });
}

struct Counting;
static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        let p = System.alloc(l);
        if !p.is_null() {
            PEAK.fetch_max(LIVE.fetch_add(l.size(), Relaxed) + l.size(), Relaxed);
        }
        p
    }
    unsafe fn alloc_zeroed(&self, l: Layout) -> *mut u8 {
        let p = System.alloc_zeroed(l);
        if !p.is_null() {
            PEAK.fetch_max(LIVE.fetch_add(l.size(), Relaxed) + l.size(), Relaxed);
        }
        p
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        System.dealloc(p, l);
        LIVE.fetch_sub(l.size(), Relaxed);
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
        let q = System.realloc(p, l, new);
        if !q.is_null() {
            if new >= l.size() {
                let grow = new - l.size();
                PEAK.fetch_max(LIVE.fetch_add(grow, Relaxed) + grow, Relaxed);
            } else {
                LIVE.fetch_sub(l.size() - new, Relaxed);
            }
        }
        q
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

/// The tests of this file measure allocations, so they run one at a time.
static SERIAL: Mutex<()> = Mutex::new(());

// ---------------------------------------------------------------------------------------------
// Running one input
// ---------------------------------------------------------------------------------------------

/// What went wrong with one input.
struct Crash {
    target: &'static str,
    input: String,
    what: String,
}

/// Runs `f` on `data` and checks everything the module docs promise; `Err` says what broke.
fn run_one(
    target: &'static str,
    input: &str,
    f: fn(&[u8]) -> targets::Outcome,
    data: &[u8],
) -> Result<targets::Outcome, String> {
    start_watchdog();
    // The copy for the watchdog is made before the allocation baseline is taken.
    *RUNNING.lock().unwrap_or_else(|e| e.into_inner()) =
        Some((target, input.to_string(), data.to_vec(), Instant::now()));
    let base = LIVE.load(Relaxed);
    PEAK.store(base, Relaxed);
    let start = Instant::now();
    let r = std::panic::catch_unwind(|| f(data));
    let took = start.elapsed();
    let extra = PEAK.load(Relaxed).saturating_sub(base);
    RUNNING.lock().unwrap_or_else(|e| e.into_inner()).take();
    let outcome = r.map_err(|p| {
        let msg = p
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| p.downcast_ref::<String>().cloned())
            .unwrap_or_default();
        format!("panicked: {msg}")
    })?;
    if extra > ALLOC_LIMIT {
        return Err(format!(
            "allocated {} MiB (limit {})",
            extra >> 20,
            ALLOC_LIMIT >> 20
        ));
    }
    // The watchdog stops an input that never returns; one that returns late fails here.
    if took > time_limit() {
        return Err(format!("took {took:?}"));
    }
    if let Err(msg) = &outcome {
        if msg.chars().count() > MAX_MESSAGE_CHARS {
            return Err(format!(
                "error message of {} characters: {}…",
                msg.len(),
                &msg[..200]
            ));
        }
        let named = ["fuzz.", "labels.csv", "points.csv"]
            .iter()
            .any(|n| msg.contains(n));
        if !named {
            return Err(format!("error does not name the file: {msg}"));
        }
    }
    let _ = target;
    Ok(outcome)
}

fn save_crash(target: &str, data: &[u8]) -> PathBuf {
    let dir = std::env::temp_dir().join("diffuse-fuzz-crashes");
    let _ = std::fs::create_dir_all(&dir);
    let mut crc = flate2::Crc::new();
    crc.update(data);
    let p = dir.join(format!("{target}-{:08x}.bin", crc.sum()));
    let _ = std::fs::write(&p, data);
    p
}

// ---------------------------------------------------------------------------------------------
// Seeds and mutations
// ---------------------------------------------------------------------------------------------

fn repo(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

fn files_in(dir: &Path, ext: &[&str]) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|rd| rd.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    v.retain(|p| {
        p.extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| ext.is_empty() || ext.contains(&e))
    });
    v.sort();
    v
}

/// A committed file; `hostile` when its name says it must be refused.
struct Seed {
    name: String,
    data: Vec<u8>,
    hostile: bool,
}

fn seed_files(paths: Vec<PathBuf>) -> Vec<Seed> {
    paths
        .into_iter()
        .map(|p| {
            let name = p.file_name().unwrap().to_string_lossy().to_string();
            Seed {
                hostile: name.starts_with("bomb_") || name.starts_with("evil_"),
                data: std::fs::read(&p).unwrap(),
                name,
            }
        })
        .collect()
}

fn generated(name: &str, data: Vec<u8>) -> Seed {
    Seed {
        name: name.into(),
        data,
        hostile: false,
    }
}

/// The committed corpus folder of `target`: `tests/fuzz_corpus/<target>/`, except the JPEG
/// one, which lives with the codec crate.
fn corpus_dir(target: &str) -> PathBuf {
    match target {
        "jpeg" => repo("crates/diffuse-jpeg/tests/fuzz_corpus"),
        _ => repo(&format!("tests/fuzz_corpus/{target}")),
    }
}

/// The corpus of `target`: its folder (see [`corpus_dir`]), goldens that are valid inputs,
/// and seeds written here by the project's own writers.
fn corpus(target: &str) -> Vec<Seed> {
    let mut seeds = seed_files(files_in(&corpus_dir(target), &[]));
    match target {
        "png" => seeds.extend(seed_files(files_in(&repo("tests/golden"), &["png"]))),
        "jpeg" => {
            let goldens = repo("crates/diffuse-jpeg/tests/golden/jpeg");
            seeds.extend(seed_files(files_in(&goldens, &["jpg"])));
            seeds.extend(seed_files(vec![repo("tests/golden/pattern.jpg")]));
        }
        "pytorch" => seeds.extend(seed_files(vec![repo("tests/golden/simplenet_small.pth")])),
        "pickle" => seeds.push(generated(
            "simplenet_small/data.pkl",
            targets::simplenet_pickle(),
        )),
        "safetensors" => {
            let p = targets::scratch().join("seed.safetensors");
            diffuse::checkpoint::save_weights(&targets::small_net(), &p).unwrap();
            seeds.push(generated(
                "simplenet_2_16_2.safetensors",
                std::fs::read(&p).unwrap(),
            ));
        }
        "json" => {
            let toy = diffuse::checkpoint::toy::ToyCheckpointMeta {
                kind: "toy".into(),
                config: Default::default(),
                step: 5000,
                final_loss: 0.37,
                has_ema: true,
            };
            let img = diffuse::image::ImageCheckpointMeta {
                kind: "image".into(),
                config: diffuse::image::ImageTrainConfig::digits(),
                class_names: (0..10).map(|i| i.to_string()).collect(),
                step: 7,
                has_ema: false,
            };
            seeds.push(generated(
                "toy_model.json",
                serde_json::to_vec_pretty(&toy).unwrap(),
            ));
            seeds.push(generated(
                "image_model.json",
                serde_json::to_vec(&img).unwrap(),
            ));
        }
        "fid_stats" => {
            let f: Vec<f32> = (0..12).map(|i| (i * i % 7) as f32).collect();
            let s = diffuse::metrics::fid::FeatureStats::from_features(&f, 3).unwrap();
            let p = targets::scratch().join("seed.stats");
            diffuse::metrics::fid::save_stats(&p, &s, &serde_json::json!({"mode": "reference"}))
                .unwrap();
            seeds.push(generated("d3.stats", std::fs::read(&p).unwrap()));
            // The same statistics as NumPy .npz (stored members), and numpy's own files
            // (deflate as pytorch-fid writes them, Fortran order, float32) from the goldens.
            let p = targets::scratch().join("seed.npz");
            diffuse::metrics::fid::save_stats(&p, &s, &serde_json::json!({"mode": "reference"}))
                .unwrap();
            seeds.push(generated("d3.npz", std::fs::read(&p).unwrap()));
            for name in ["pytorch_fid.npz", "edm.npz", "fortran.npz", "float32.npz"] {
                let p = Path::new(env!("CARGO_MANIFEST_DIR"))
                    .join("tests/golden/fid_npz")
                    .join(name);
                seeds.push(generated(name, std::fs::read(p).unwrap()));
            }
        }
        _ => {}
    }
    seeds
}

/// xorshift64*: a fixed sequence per (target, seed), so every run tries the same inputs.
struct Rng(u64);

impl Rng {
    fn new(a: &str, b: &str) -> Self {
        let mut h = 0xcbf2_9ce4_8422_2325u64;
        for byte in a.bytes().chain([0]).chain(b.bytes()) {
            h = (h ^ byte as u64).wrapping_mul(0x0100_0000_01b3);
        }
        Rng(h | 1)
    }
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// Values that break length and size fields.
const HUGE: [u64; 7] = [
    u64::MAX,
    u32::MAX as u64,
    i32::MAX as u64,
    1 << 31,
    1 << 40,
    0,
    65535,
];

/// Replacements for a number in a text file.
const ODD_NUMBERS: [&str; 8] = [
    "99999999999999999999999",
    "-1",
    "1e999",
    "NaN",
    "-0",
    "18446744073709551616",
    "0.0000000000000000000000000000000000000000000001",
    "",
];

/// One mutation of `data` (1-3 edits), `other` a second seed for splices.
fn mutate(data: &[u8], other: &[u8], rng: &mut Rng) -> Vec<u8> {
    let mut d = data.to_vec();
    for _ in 0..1 + rng.below(3) {
        if d.is_empty() {
            d.push(rng.next() as u8);
        }
        let len = d.len();
        let at = rng.below(len);
        match rng.below(8) {
            0 => {
                for _ in 0..1 + rng.below(4) {
                    let i = rng.below(len);
                    d[i] ^= 1 << rng.below(8);
                }
            }
            1 => d[at] = [0, 1, 0x7F, 0x80, 0xFF, rng.next() as u8][rng.below(6)],
            2 => d.truncate(at),
            3 => {
                let j = rng.below(other.len().max(1));
                d.truncate(at);
                d.extend_from_slice(other.get(j..).unwrap_or(&[]));
            }
            4 => {
                let n = 1 + rng.below(64.min(len));
                let from = rng.below(len + 1 - n);
                let chunk = d[from..from + n].to_vec();
                d.splice(at..at, chunk);
            }
            5 => {
                let n = 1 + rng.below(64.min(len - at));
                d.drain(at..at + n);
            }
            6 => {
                let v = HUGE[rng.below(HUGE.len())];
                let width = [2usize, 4, 8][rng.below(3)];
                let bytes = if rng.below(2) == 0 {
                    v.to_le_bytes()
                } else {
                    v.to_be_bytes()
                };
                let src = if bytes[0] == 0 {
                    &bytes[8 - width..]
                } else {
                    &bytes[..width]
                };
                for (k, b) in src.iter().enumerate() {
                    if let Some(x) = d.get_mut(at + k) {
                        *x = *b;
                    }
                }
            }
            _ => {
                // The run of ASCII digits nearest after `at`, replaced by an odd number.
                if let Some(s) = (at..len).find(|&i| d[i].is_ascii_digit()) {
                    let e = (s..len).find(|&i| !d[i].is_ascii_digit()).unwrap_or(len);
                    let rep = ODD_NUMBERS[rng.below(ODD_NUMBERS.len())]
                        .as_bytes()
                        .to_vec();
                    d.splice(s..e, rep);
                } else {
                    d[at] ^= 0x20;
                }
            }
        }
    }
    d
}

fn mutations_per_seed() -> usize {
    std::env::var("DIFFUSE_FUZZ_MUTATIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(600)
}

/// Per target: (inputs tried, of which rejected with an error).
fn fuzz_target(
    name: &'static str,
    f: fn(&[u8]) -> targets::Outcome,
    crashes: &mut Vec<Crash>,
) -> (usize, usize) {
    let seeds = corpus(name);
    assert!(!seeds.is_empty(), "{name}: empty corpus");
    let (mut tried, mut rejected) = (0usize, 0usize);
    let mut record = |input: String, data: &[u8], crashes: &mut Vec<Crash>| -> Option<bool> {
        tried += 1;
        match run_one(name, &input, f, data) {
            Ok(outcome) => {
                rejected += outcome.is_err() as usize;
                Some(outcome.is_err())
            }
            Err(what) => {
                let p = save_crash(name, data);
                crashes.push(Crash {
                    target: name,
                    input: format!("{input} (saved as {})", p.display()),
                    what,
                });
                None
            }
        }
    };
    for s in &seeds {
        let refused = record(s.name.clone(), &s.data, crashes);
        if s.hostile && refused == Some(false) {
            crashes.push(Crash {
                target: name,
                input: s.name.clone(),
                what: "hostile file was accepted".into(),
            });
        }
    }
    let valid: Vec<&Seed> = seeds.iter().filter(|s| !s.hostile).collect();
    for (k, s) in valid.iter().enumerate() {
        let mut rng = Rng::new(name, &s.name);
        let other = &valid[(k + 1) % valid.len()].data;
        for i in 0..mutations_per_seed() {
            let m = mutate(&s.data, other, &mut rng);
            record(format!("{} mutation {i}", s.name), &m, crashes);
        }
    }
    (tried, rejected)
}

#[test]
fn every_parser_survives_its_corpus_and_mutations() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    // Panics are caught and reported below; the default hook would print each one.
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let start = Instant::now();
    let mut crashes = Vec::new();
    for &(name, f) in targets::TARGETS {
        let t = Instant::now();
        let (tried, rejected) = fuzz_target(name, f, &mut crashes);
        eprintln!(
            "fuzz {name:<12} {tried:>5} inputs, {rejected:>5} rejected with an error, {:.1} s",
            t.elapsed().as_secs_f64()
        );
    }
    std::panic::set_hook(hook);
    eprintln!("fuzz total {:.1} s", start.elapsed().as_secs_f64());
    let _ = std::fs::remove_dir_all(targets::scratch());
    let report: Vec<String> = crashes
        .iter()
        .take(20)
        .map(|c| format!("{}: {}: {}", c.target, c.input, c.what))
        .collect();
    assert!(
        crashes.is_empty(),
        "{} failing inputs:\n{}",
        crashes.len(),
        report.join("\n")
    );
}

/// A parser that never returns (test-only, below) fails the test within the time limit, naming
/// the input: the test runs itself as a child process with a 1 s limit, since the watchdog
/// ends the process it runs in.
#[test]
fn a_hanging_parser_is_stopped_by_the_watchdog() {
    const NAME: &str = "a_hanging_parser_is_stopped_by_the_watchdog";
    fn hangs(_: &[u8]) -> targets::Outcome {
        loop {
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    if std::env::var_os("DIFFUSE_FUZZ_HANG_CHILD").is_some() {
        let _ = run_one("hang", "deliberately hanging input", hangs, b"x");
        panic!("the hanging parser returned");
    }
    let t = Instant::now();
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args([NAME, "--exact", "--nocapture", "--test-threads=1"])
        .env("DIFFUSE_FUZZ_HANG_CHILD", "1")
        .env("DIFFUSE_FUZZ_TIME_LIMIT_S", "1")
        .output()
        .unwrap();
    let took = t.elapsed();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "a hang must fail the test: {err}");
    assert!(
        err.contains("fuzz watchdog: hang: deliberately hanging input") && err.contains("a hang"),
        "the failure names the input: {err}"
    );
    // 1 s limit, checked every 0.1 s; the rest is process start-up.
    assert!(took < Duration::from_secs(15), "stopped after {took:?}");
}

/// A checkpoint whose pickle calls `os.system` is refused, and the command never runs.
#[test]
fn pickle_code_execution_payload_is_refused_without_running() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    // The payload is `touch diffuse_pwned_marker`, relative to the working directory.
    let cwd = std::env::current_dir().unwrap();
    let marker = cwd.join("diffuse_pwned_marker");
    let _ = std::fs::remove_file(&marker);
    for name in ["evil_os_system.pt", "evil_os_system_plain.pt"] {
        let path = repo(&format!("tests/fuzz_corpus/pytorch/{name}"));
        let bytes = std::fs::read(&path).unwrap();
        assert!(
            bytes.windows(6).any(|w| w == b"system"),
            "{name}: the payload must really be in the file"
        );
        let err = diffuse::nn::simplenet::load_pytorch(targets::small_net(), &path)
            .err()
            .unwrap_or_else(|| panic!("{name} was accepted"))
            .to_string();
        eprintln!("{name}: {err}");
        assert!(err.contains(name), "{err}");
        assert!(err.chars().count() <= MAX_MESSAGE_CHARS, "{err}");
        assert!(!marker.exists(), "{name}: the payload ran");
    }
}

/// Decompression bombs: a tiny file claiming a huge image or tensor is refused before the
/// allocation it asks for, with a message saying why.
#[test]
fn bombs_are_refused_with_a_reason() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    // (corpus file, target, what the error must say)
    type Case = (&'static str, fn(&[u8]) -> targets::Outcome, &'static str);
    let cases: [Case; 6] = [
        (
            "jpeg/bomb_13000x13000.jpg",
            targets::jpeg,
            "decompression bomb",
        ),
        ("jpeg/bomb_65535x65535.jpg", targets::jpeg, "too large"),
        (
            "jpeg/bomb_lossless_13000x13000.jpg",
            targets::jpeg,
            "decompression bomb",
        ),
        (
            "png/bomb_zeros_12000x12000.png",
            targets::png,
            "decompression bomb",
        ),
        (
            "pytorch/bomb_expand_view.pt",
            targets::pytorch,
            "more elements than any tensor",
        ),
        (
            "safetensors/bomb_shape_2e40.safetensors",
            targets::safetensors,
            "fuzz.safetensors",
        ),
    ];
    for (file, f, why) in cases {
        let (target, name) = file.split_once('/').expect("target/file");
        let data = std::fs::read(corpus_dir(target).join(name)).unwrap();
        let outcome = run_one("bomb", file, f, &data).unwrap_or_else(|e| panic!("{file}: {e}"));
        let err = outcome.expect_err(file);
        eprintln!("{file}: {err}");
        assert!(err.contains(why), "{file}: {err}");
    }
}

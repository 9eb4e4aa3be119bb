//! `RUN/report.html`: one self-contained page per run folder — what the course asks students to
//! hand in (config, loss curve, samples, the metrics, timings, the machine) in one file that can
//! be mailed or archived. Images are inlined as `data:image/png;base64` URIs and the CSS is
//! inline, so the page needs no network, no other file and no JavaScript.
//!
//! The page is built only from the files the workflows leave in the folder (`toy run`,
//! `image run`, `image train`, a `cfg-sweep` written into the run folder or its `cfg-sweep/`),
//! so `diffuse report RUN` can rebuild it at any time. Every section is optional: a missing
//! file omits its section, and a file that cannot be read is named in a note at the end instead
//! of leaving a broken image or table. Every value taken from a file is HTML-escaped.
use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::files::write_atomic;
use crate::{Error, Result};

/// The report's file name inside the run folder.
pub const REPORT_FILE: &str = "report.html";
/// Where a workflow records the machine it ran on, so that a report rebuilt later elsewhere
/// still names the machine that produced the numbers.
pub const MACHINE_FILE: &str = "machine.json";
/// Images larger than this are left out (with a note): the page stays small enough to open.
const MAX_IMAGE_BYTES: u64 = 16 << 20;
/// The preview strip shows at most this many grids (evenly spaced, always the last).
const MAX_PREVIEWS: usize = 8;
/// Rows of the FID-during-training table, at most (evenly spaced, always the last).
const MAX_EVAL_ROWS: usize = 30;

/// Files whose presence makes a folder a run folder.
const RUN_MARKERS: [&str; 5] = [
    "metrics.json",
    "config.json",
    "metrics.jsonl",
    "model.json",
    "checkpoints",
];

/// Writes `RUN/report.html` and returns its path. The machine section shows the machine the
/// run recorded (`RUN/machine.json`), or else this one, saying so.
pub fn write(run: &Path) -> Result<PathBuf> {
    let html = render(run)?;
    let path = run.join(REPORT_FILE);
    write_atomic(&path, html.as_bytes())?;
    Ok(path)
}

/// What a workflow calls when it has written its last file: records this machine in
/// `RUN/machine.json` (with `command`, e.g. `toy run`) and writes the report.
pub fn write_after_run(run: &Path, command: &str) -> Result<PathBuf> {
    let facts: Vec<Value> = machine_facts()
        .into_iter()
        .map(|(k, v)| Value::from(vec![k, v]))
        .collect();
    let record = serde_json::json!({ "command": command, "facts": facts });
    crate::files::write_json(&run.join(MACHINE_FILE), &record)?;
    write(run)
}

/// This machine as labelled lines: the OS, then `diffuse doctor`'s facts (build, CPU, SIMD
/// paths, threads, memory, kernel).
pub fn machine_facts() -> Vec<(String, String)> {
    let mut out = vec![("os".to_string(), os_name())];
    out.extend(
        crate::doctor::facts()
            .into_iter()
            .map(|(k, v)| (k.to_string(), v)),
    );
    out
}

fn os_name() -> String {
    fs::read_to_string("/etc/os-release")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("PRETTY_NAME="))
                .map(|v| v.trim().trim_matches('"').to_string())
        })
        .unwrap_or_else(|| std::env::consts::OS.to_string())
}

/// Which workflow wrote the folder, from what it holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunKind {
    /// `toy run`: Chamfer distances of DDPM and DDIM samples.
    Toy,
    /// `image run`: the digits demo, judged by accuracy and Fréchet distance.
    Digits,
    /// `image train` (or an image run without the demo's metrics).
    ImageTraining,
}

impl RunKind {
    fn title(self) -> &'static str {
        match self {
            RunKind::Toy => "2D toy run (toy run)",
            RunKind::Digits => "digits run (image run)",
            RunKind::ImageTraining => "image training run (image train)",
        }
    }
}

/// The report of `run` as HTML, or an error naming the folder when it is not a run folder.
pub fn render(run: &Path) -> Result<String> {
    let meta = fs::metadata(run).map_err(|e| Error::io(run, e))?;
    if !meta.is_dir() {
        return Err(Error::bad_file(
            run,
            "is a file, not a run folder (give the --out folder of `toy run`, `image run` or `image train`)",
        ));
    }
    if !RUN_MARKERS.iter().any(|m| run.join(m).exists()) {
        return Err(Error::bad_file(
            run,
            format!(
                "not a run folder: it holds none of {} (give the --out folder of `toy run`, `image run` or `image train`)",
                RUN_MARKERS.join(", ")
            ),
        ));
    }
    let mut page = Page {
        run,
        notes: Vec::new(),
        body: String::new(),
    };
    let metrics = page.json("metrics.json");
    let config = page.json("config.json");
    let log = page.jsonl("metrics.jsonl");
    let kind = if metrics.as_ref().is_some_and(|m| m.get("cd_ddpm").is_some())
        || run.join("samples_ddpm.png").exists()
    {
        RunKind::Toy
    } else if metrics
        .as_ref()
        .is_some_and(|m| m.get("accuracy_w0").is_some())
    {
        RunKind::Digits
    } else {
        RunKind::ImageTraining
    };
    let m = metrics.clone().unwrap_or(Value::Null);
    match kind {
        RunKind::Toy => page.toy_results(&m),
        RunKind::Digits => page.digits_results(&m),
        RunKind::ImageTraining => {}
    }
    page.grids(&m);
    page.eval_during_training(&log);
    page.cfg_sweep();
    page.training(&log);
    page.timings(&m, &log);
    // The toy run keeps its config inside metrics.json; image runs write config.json.
    let cfg = config.or_else(|| m.get("config").cloned());
    page.config(cfg.as_ref());
    page.machine();
    Ok(page.finish(kind))
}

/// The page being built: its body, and notes about files that could not be used.
struct Page<'a> {
    run: &'a Path,
    notes: Vec<String>,
    body: String,
}

impl Page<'_> {
    /// `RUN/name` parsed, `None` when absent; unreadable files become a note.
    fn json(&mut self, name: &str) -> Option<Value> {
        let path = self.run.join(name);
        let bytes = fs::read(&path).ok()?;
        match serde_json::from_slice::<Value>(&bytes) {
            Ok(v) => Some(v),
            Err(e) => {
                self.note(format!(
                    "{name} is not valid JSON ({e}); its values are left out"
                ));
                None
            }
        }
    }

    /// The JSON objects of `RUN/name`, one per line; bad lines are skipped and counted.
    fn jsonl(&mut self, name: &str) -> Vec<Value> {
        let Ok(text) = fs::read_to_string(self.run.join(name)) else {
            return Vec::new();
        };
        let mut bad = 0;
        let rows: Vec<Value> = text
            .lines()
            .filter(|l| !l.trim().is_empty())
            .filter_map(|l| match serde_json::from_str::<Value>(l) {
                Ok(v) if v.is_object() => Some(v),
                _ => {
                    bad += 1;
                    None
                }
            })
            .collect();
        if bad > 0 {
            self.note(format!(
                "{name}: {bad} line(s) are not JSON objects and were skipped"
            ));
        }
        rows
    }

    fn note(&mut self, text: String) {
        self.notes.push(text);
    }

    /// `<img>` of `RUN/rel` as a data URI, or `None` (with a note when the file exists but is
    /// not a readable PNG, so the page never shows a broken image).
    fn img(&mut self, rel: &str, alt: &str) -> Option<String> {
        let path = self.run.join(rel);
        let size = fs::metadata(&path).ok()?.len();
        if size > MAX_IMAGE_BYTES {
            self.note(format!(
                "{rel} is left out: {size} bytes, over the {} MiB limit for inlined images",
                MAX_IMAGE_BYTES >> 20
            ));
            return None;
        }
        let bytes = match fs::read(&path) {
            Ok(b) => b,
            Err(e) => {
                self.note(format!("{rel} could not be read: {e}"));
                return None;
            }
        };
        // Decoded once here, so that a truncated or corrupt file is reported instead of being
        // shown by the browser as a broken image.
        let (w, h) = match image::load_from_memory_with_format(&bytes, image::ImageFormat::Png) {
            Ok(im) => (im.width(), im.height()),
            Err(e) => {
                self.note(format!("{rel} is left out: not a readable PNG ({e})"));
                return None;
            }
        };
        Some(format!(
            "<img src=\"data:image/png;base64,{}\" width=\"{w}\" height=\"{h}\" alt=\"{}\">",
            base64(&bytes),
            esc(alt)
        ))
    }

    /// A figure (image and caption), or nothing when the image is not there.
    fn figure(&mut self, rel: &str, caption: &str) -> Option<String> {
        let img = self.img(rel, caption)?;
        Some(format!(
            "<figure>{img}<figcaption>{}</figcaption></figure>",
            esc(caption)
        ))
    }

    fn section(&mut self, id: &str, title: &str, content: &str) {
        let _ = writeln!(
            self.body,
            "<section id=\"{id}\"><h2>{}</h2>{content}</section>",
            esc(title)
        );
    }

    fn toy_results(&mut self, m: &Value) {
        let samplers = m.get("samplers");
        let label = |k: &str, default: &str| {
            samplers
                .and_then(|s| s.get(k))
                .and_then(Value::as_str)
                .unwrap_or(default)
                .to_string()
        };
        let mut rows = Vec::new();
        for (k, default) in [("ddpm", "DDPM"), ("ddim", "DDIM")] {
            if let Some(cd) = m.get(format!("cd_{k}")) {
                let secs = m.get("sample_seconds").and_then(|s| s.get(k));
                rows.push(vec![
                    label(k, default),
                    num(cd),
                    secs.map_or(dash(), secs_of),
                ]);
            }
        }
        let mut html = String::new();
        if !rows.is_empty() {
            html.push_str(
                "<p>Chamfer distance: Σ<sub>x∈A</sub> min<sub>y</sub> ‖x−y‖² + Σ<sub>y∈B</sub> \
                 min<sub>x</sub> ‖x−y‖² between the samples and as many training points \
                 (lower is better).</p>",
            );
            html.push_str(&table(&["sampler", "Chamfer distance", "sampling"], &rows));
        }
        let mut figs = String::new();
        for k in ["ddpm", "ddim"] {
            let cap = format!("{} samples over the training points", label(k, k));
            if let Some(f) = self.figure(&format!("samples_{k}.png"), &cap) {
                figs.push_str(&f);
            }
        }
        if !figs.is_empty() {
            let _ = write!(html, "<div class=\"row\">{figs}</div>");
        }
        if let Some(f) = self.figure(
            "q_xt.png",
            "q(x_t): the forward process on the training data at increasing t",
        ) {
            html.push_str(&f);
        }
        if !html.is_empty() {
            self.section("results", "Chamfer distance (2D)", &html);
        }
    }

    fn digits_results(&mut self, m: &Value) {
        let mut html = String::new();
        let mut sampler = m
            .get("sampler")
            .and_then(Value::as_str)
            .unwrap_or("?")
            .to_string();
        if let Some(r) = m.get("recipe").and_then(Value::as_str) {
            let _ = write!(sampler, "; recipe {r}");
        }
        let _ = write!(
            html,
            "<p>{} samples per setting ({}), judged by a classifier trained on the real digits: \
             how often it recognises the requested digit (fidelity) and the Fréchet distance of \
             the samples to the real digits in its features (distribution; lower is better).</p>",
            esc(&count_samples(self.run)),
            esc(&sampler)
        );
        let mut rows = Vec::new();
        for s in settings(m) {
            let get = |k: &str| m.get(format!("{k}_{s}"));
            rows.push(vec![
                setting_label(m, &s),
                get("accuracy").map_or(dash(), pct),
                get("frechet").map_or(dash(), num),
                get("sample_seconds").map_or(dash(), secs_of),
            ]);
        }
        html.push_str(&table(
            &["setting", "accuracy", "Fréchet distance", "sampling"],
            &rows,
        ));
        let mut facts = Vec::new();
        if let Some(f) = m.get("frechet_floor") {
            facts.push(vec![
                format!(
                    "real-vs-real Fréchet floor (n = {})",
                    f.get("n").map_or(dash(), num)
                ),
                format!(
                    "{} ({} half against half)",
                    f.get("at_n").map_or(dash(), num),
                    f.get("halves").map_or(dash(), num)
                ),
            ]);
        }
        if let Some(a) = m.get("classifier_holdout_accuracy") {
            facts.push(vec![
                "judge's accuracy on held-out real digits".into(),
                pct(a),
            ]);
        }
        if !facts.is_empty() {
            html.push_str(&table(&["", ""], &facts));
        }
        // Per-class accuracy: a column per setting, a row per class.
        let settings = settings(m);
        let per: Vec<Option<&serde_json::Map<String, Value>>> = settings
            .iter()
            .map(|s| m.get(format!("per_class_{s}")).and_then(Value::as_object))
            .collect();
        if let Some(classes) = per.iter().flatten().next() {
            let mut head = vec!["class".to_string()];
            head.extend(settings.iter().map(|s| setting_label(m, s)));
            let rows: Vec<Vec<String>> = classes
                .keys()
                .map(|c| {
                    let mut row = vec![c.clone()];
                    row.extend(
                        per.iter()
                            .map(|p| p.and_then(|p| p.get(c)).map_or(dash(), pct)),
                    );
                    row
                })
                .collect();
            let head: Vec<&str> = head.iter().map(String::as_str).collect();
            let _ = write!(
                html,
                "<details open><summary>accuracy per class</summary>{}</details>",
                table(&head, &rows)
            );
        }
        self.section("results", "Accuracy and Fréchet distance (digits)", &html);
    }

    /// The final sample grids (`grid_*.png`, a row per class), w = 0 first.
    fn grids(&mut self, m: &Value) {
        let mut names: Vec<String> = list(self.run)
            .into_iter()
            .filter(|n| n.starts_with("grid_") && n.ends_with(".png"))
            .collect();
        names.sort_by_key(|n| (n != "grid_w0.png", n.clone()));
        let mut figs = String::new();
        for n in names {
            let s = &n["grid_".len()..n.len() - ".png".len()];
            let cap = format!("{} (a row per class)", setting_label(m, s));
            if let Some(f) = self.figure(&n, &cap) {
                figs.push_str(&f);
            }
        }
        if !figs.is_empty() {
            self.section(
                "grids",
                "Final samples per guidance scale",
                &format!("<div class=\"row\">{figs}</div>"),
            );
        }
    }

    /// FID (or the digits' Fréchet distance) logged during training (`--fid-every`).
    fn eval_during_training(&mut self, log: &[Value]) {
        let keys = ["fid", "digit_fd"];
        let rows: Vec<&Value> = log
            .iter()
            .filter(|r| keys.iter().any(|k| r.get(k).is_some_and(Value::is_number)))
            .collect();
        if rows.is_empty() {
            return;
        }
        let key = keys
            .iter()
            .find(|k| rows[0].get(**k).is_some())
            .copied()
            .unwrap_or("fid");
        let best = rows
            .iter()
            .filter_map(|r| Some((r.get(key)?.as_f64()?, r.get("step").map_or(dash(), num))))
            .min_by(|a, b| a.0.total_cmp(&b.0));
        let shown: Vec<Vec<String>> = spaced(rows.len(), MAX_EVAL_ROWS)
            .into_iter()
            .map(|i| {
                let r = rows[i];
                vec![
                    r.get("step").map_or(dash(), num),
                    r.get(key).map_or(dash(), num),
                    r.get("fid_seconds").map_or(dash(), secs_of),
                ]
            })
            .collect();
        let mut html = String::new();
        if let Some((v, step)) = best {
            let _ = write!(
                html,
                "<p>Best {}: {} at step {}.</p>",
                esc(key),
                esc(&fmt_f64(v)),
                esc(&step)
            );
        }
        html.push_str(&table(&["step", key, "evaluation time"], &shown));
        self.section("eval", "Evaluation during training", &html);
    }

    /// `image cfg-sweep --out RUN` or `--out RUN/cfg-sweep`: its points and trade-off plot.
    fn cfg_sweep(&mut self) {
        let dir = ["", "cfg-sweep/"].into_iter().find(|d| {
            self.run.join(format!("{d}cfg-sweep.json")).exists()
                || self.run.join(format!("{d}cfg-sweep.png")).exists()
        });
        let Some(dir) = dir else { return };
        let mut html = String::new();
        if let Some(j) = self.json(&format!("{dir}cfg-sweep.json")) {
            let digits = j.get("frechet_floor").is_some_and(|f| !f.is_null());
            let dist = if digits { "Fréchet distance" } else { "FID" };
            let _ = write!(
                html,
                "<p>{} {} samples per point{}.</p>",
                esc(&j.get("n").map_or(dash(), num)),
                esc(j.get("sampler").and_then(Value::as_str).unwrap_or("")),
                if digits {
                    "; accuracy is fidelity, the Fréchet distance the distribution (lower is better)"
                } else {
                    ""
                }
            );
            let rows: Vec<Vec<String>> = j
                .get("points")
                .and_then(Value::as_array)
                .map(|ps| {
                    ps.iter()
                        .map(|p| {
                            vec![
                                str_of(p.get("method")),
                                p.get("w").map_or(dash(), num),
                                p.get("accuracy")
                                    .filter(|a| !a.is_null())
                                    .map_or(dash(), pct),
                                p.get("distance").map_or(dash(), num),
                                p.get("seconds").map_or(dash(), secs_of),
                            ]
                        })
                        .collect()
                })
                .unwrap_or_default();
            html.push_str(&table(&["guidance", "w", "accuracy", dist, "time"], &rows));
        }
        if let Some(f) = self.figure(
            &format!("{dir}cfg-sweep.png"),
            "guidance sweep: the fidelity/diversity trade-off",
        ) {
            html.push_str(&f);
        }
        if !html.is_empty() {
            self.section("cfg-sweep", "Guidance sweep (cfg-sweep)", &html);
        }
    }

    /// The loss curve, a summary of `metrics.jsonl` and the preview strip.
    fn training(&mut self, log: &[Value]) {
        let mut html = String::new();
        if let Some(last) = log.last() {
            let mut rows = vec![
                vec!["logged steps".into(), log.len().to_string()],
                vec!["last step".into(), last.get("step").map_or(dash(), num)],
                vec![
                    "loss at the last step".into(),
                    last.get("loss").map_or(dash(), num),
                ],
                vec!["learning rate".into(), last.get("lr").map_or(dash(), num)],
            ];
            if let Some(g) = last.get("grad_norm") {
                rows.push(vec!["gradient norm (before clipping)".into(), num(g)]);
            }
            html.push_str(&table(&["metrics.jsonl", ""], &rows));
        }
        if let Some(f) = self.figure("loss.png", "training loss") {
            html.push_str(&f);
        }
        let mut previews: Vec<String> = list(&self.run.join("preview"))
            .into_iter()
            .filter(|n| n.ends_with(".png"))
            .collect();
        previews.sort();
        let mut strip = String::new();
        for i in spaced(previews.len(), MAX_PREVIEWS) {
            let n = &previews[i];
            let step = n
                .trim_end_matches(".png")
                .trim_start_matches("step-")
                .trim_start_matches('0');
            let cap = format!("step {}", if step.is_empty() { "0" } else { step });
            if let Some(f) = self.figure(&format!("preview/{n}"), &cap) {
                strip.push_str(&f);
            }
        }
        if !strip.is_empty() {
            let _ = write!(
                html,
                "<h3>Previews during training</h3><div class=\"strip\">{strip}</div>"
            );
        }
        if !html.is_empty() {
            self.section("training", "Training", &html);
        }
    }

    fn timings(&mut self, m: &Value, log: &[Value]) {
        let mut rows = Vec::new();
        if let Some(v) = m.get("train_seconds") {
            rows.push(vec!["training".into(), secs_of(v)]);
        }
        if let Some(p) = m.get("train_path") {
            rows.push(vec!["training path".into(), str_of(Some(p))]);
        }
        // The toy run keeps sampling times in an object, the digits demo one key per setting.
        if let Some(s) = m.get("sample_seconds").and_then(Value::as_object) {
            for (k, v) in s {
                rows.push(vec![format!("sampling ({k})"), secs_of(v)]);
            }
        }
        for s in settings(m) {
            if let Some(v) = m.get(format!("sample_seconds_{s}")) {
                rows.push(vec![
                    format!("sampling ({})", setting_label(m, &s)),
                    secs_of(v),
                ]);
            }
        }
        if let Some(v) = m.get("total_seconds") {
            rows.push(vec!["total".into(), secs_of(v)]);
        }
        let speed: Vec<f64> = log
            .iter()
            .filter_map(|r| r.get("sec_per_step")?.as_f64())
            .collect();
        if !speed.is_empty() {
            let mean = speed.iter().sum::<f64>() / speed.len() as f64;
            rows.push(vec![
                "mean time per step (metrics.jsonl)".into(),
                format!("{} s", fmt_f64(mean)),
            ]);
        }
        if let Some(v) = log.last().and_then(|r| r.get("images_per_sec")) {
            rows.push(vec!["images per second (last logged)".into(), num(v)]);
        }
        if !rows.is_empty() {
            let t = table(&["", ""], &rows);
            self.section("timings", "Timings", &t);
        }
    }

    fn config(&mut self, cfg: Option<&Value>) {
        let Some(cfg) = cfg else { return };
        let mut rows = Vec::new();
        flatten("", cfg, &mut rows);
        if !rows.is_empty() {
            let rows: Vec<Vec<String>> = rows.into_iter().map(|(k, v)| vec![k, v]).collect();
            let t = table(&["setting", "value"], &rows);
            self.section("config", "Configuration", &t);
        }
    }

    fn machine(&mut self) {
        let recorded = self.json(MACHINE_FILE).and_then(|m| {
            let facts: Vec<Vec<String>> = m
                .get("facts")?
                .as_array()?
                .iter()
                .filter_map(|f| {
                    let f = f.as_array()?;
                    Some(vec![str_of(f.first()), str_of(f.get(1))])
                })
                .collect();
            let cmd = m.get("command").and_then(Value::as_str).unwrap_or("?");
            Some((
                facts,
                format!("recorded by diffuse {cmd} when the run finished"),
            ))
        });
        let (facts, origin) = recorded.unwrap_or_else(|| {
            (
                machine_facts().into_iter().map(|(k, v)| vec![k, v]).collect(),
                format!("the machine that wrote this report (the run did not record its own in {MACHINE_FILE})"),
            )
        });
        let html = format!("<p>{}</p>{}", esc(&origin), table(&["", ""], &facts));
        self.section("machine", "Machine", &html);
    }

    fn finish(mut self, kind: RunKind) -> String {
        if !self.notes.is_empty() {
            let items: String = self
                .notes
                .iter()
                .map(|n| format!("<li>{}</li>", esc(n)))
                .collect();
            let html = format!("<ul>{items}</ul>");
            self.section("notes", "Notes", &html);
        }
        let name = self
            .run
            .canonicalize()
            .unwrap_or_else(|_| self.run.to_path_buf());
        let short = name.file_name().map_or_else(
            || name.display().to_string(),
            |n| n.to_string_lossy().into_owned(),
        );
        format!(
            "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
             <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
             <title>diffuse report: {title}</title><style>{CSS}</style></head>\n<body>\
             <header><h1>diffuse report: {title}</h1><p>{kind} · <code>{path}</code></p></header>\n\
             {body}<footer>Written by diffuse {version} from the files in this folder \
             (<code>diffuse report</code> rebuilds it). Self-contained: images inlined, no \
             scripts, no network.</footer></body></html>\n",
            title = esc(&short),
            kind = esc(kind.title()),
            path = esc(&name.display().to_string()),
            body = self.body,
            version = env!("CARGO_PKG_VERSION"),
        )
    }
}

const CSS: &str = "\
body{font:15px/1.45 system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;color:#1d1d1f;\
background:#fafafa;max-width:1180px;margin:0 auto;padding:24px}\
header{border-bottom:2px solid #d0d0d0;margin-bottom:8px}h1{font-size:26px;margin:0 0 4px}\
h2{font-size:20px;margin:28px 0 10px;border-bottom:1px solid #e2e2e2;padding-bottom:4px}\
h3{font-size:16px;margin:18px 0 8px}code{font-size:13px;background:#eee;padding:1px 4px;\
border-radius:3px;word-break:break-all}\
table{border-collapse:collapse;margin:8px 0 14px;background:#fff}\
th,td{border:1px solid #ddd;padding:4px 10px;text-align:left;vertical-align:top}\
th{background:#f0f0f0;font-weight:600}td{font-variant-numeric:tabular-nums}\
figure{margin:8px 16px 16px 0;display:inline-block;vertical-align:top;max-width:100%}\
figure img{max-width:100%;height:auto;border:1px solid #ddd;background:#fff;\
image-rendering:pixelated}figcaption{font-size:13px;color:#555;margin-top:4px}\
.row{display:flex;flex-wrap:wrap}.row figure{flex:0 1 auto;max-width:560px}\
.strip{display:flex;overflow-x:auto;gap:8px}.strip figure{flex:0 0 auto;margin:0}\
.strip img{height:200px;width:auto}\
details summary{cursor:pointer;margin:4px 0}footer{margin-top:32px;font-size:12px;color:#777}";

/// The settings of a digits run (`w0`, `guided`, …) from its `accuracy_*` keys, w = 0 first.
fn settings(m: &Value) -> Vec<String> {
    let mut s: Vec<String> = m
        .as_object()
        .map(|o| {
            o.keys()
                .filter_map(|k| k.strip_prefix("accuracy_"))
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default();
    s.sort_by_key(|n| (n != "w0", n.clone()));
    s
}

/// `cfg w = 0` or `apg w = 7.5` for a setting, from the run's metrics when they say.
fn setting_label(m: &Value, s: &str) -> String {
    let w = m.get(format!("w_{s}")).map(num);
    let method = if s == "w0" {
        Some("cfg".to_string())
    } else {
        m.get("guidance")
            .and_then(Value::as_str)
            .map(str::to_string)
    };
    match (method, w) {
        (Some(g), Some(w)) => format!("{g} w = {w}"),
        (None, Some(w)) => format!("w = {w}"),
        _ if s == "w0" => "w = 0".into(),
        _ => s.to_string(),
    }
}

/// "100 samples" from `samples_w0/labels.csv`, or "the" when it is not there.
fn count_samples(run: &Path) -> String {
    fs::read_to_string(run.join("samples_w0/labels.csv"))
        .ok()
        .map(|t| t.lines().skip(1).filter(|l| !l.is_empty()).count())
        .map_or("The".into(), |n| n.to_string())
}

/// The file names in `dir` (empty when it is not readable).
fn list(dir: &Path) -> Vec<String> {
    fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .filter_map(|e| e.file_name().into_string().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// At most `max` indices of `0..n`, evenly spaced, always including the last.
fn spaced(n: usize, max: usize) -> Vec<usize> {
    if n <= max {
        return (0..n).collect();
    }
    let mut out: Vec<usize> = (0..max).map(|k| k * (n - 1) / (max - 1)).collect();
    out.dedup();
    out
}

/// `a.b.c = value` rows of a JSON object; arrays of plain values stay on one line.
fn flatten(prefix: &str, v: &Value, out: &mut Vec<(String, String)>) {
    match v {
        Value::Object(o) => {
            for (k, v) in o {
                let key = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                flatten(&key, v, out);
            }
        }
        Value::Array(a) if a.iter().any(|x| x.is_object()) => {
            for (i, v) in a.iter().enumerate() {
                flatten(&format!("{prefix}[{i}]"), v, out);
            }
        }
        other => out.push((prefix.to_string(), str_of(Some(other)))),
    }
}

/// A JSON value as plain text (strings unquoted, null as "none").
fn str_of(v: Option<&Value>) -> String {
    match v {
        None => dash(),
        Some(Value::Null) => "none".into(),
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(_)) => num(v.unwrap()),
        Some(other) => other.to_string(),
    }
}

fn dash() -> String {
    "—".into()
}

/// A number for people: integers as they are, others to 4 significant digits or so.
fn num(v: &Value) -> String {
    match v {
        Value::Number(n) if n.is_i64() || n.is_u64() => n.to_string(),
        Value::Number(n) => n.as_f64().map_or(dash(), fmt_f64),
        other => str_of(Some(other)),
    }
}

fn fmt_f64(x: f64) -> String {
    let a = x.abs();
    if x == 0.0 {
        "0".into()
    } else if !x.is_finite() {
        x.to_string()
    } else if !(1e-3..1e6).contains(&a) {
        format!("{x:.3e}")
    } else {
        let decimals = if a >= 100.0 {
            2
        } else if a >= 1.0 {
            3
        } else {
            4
        };
        let s = format!("{x:.decimals$}");
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    }
}

/// A fraction as a percentage; null (e.g. the accuracy of a class no sample asked for, NaN in
/// the run) as a dash.
fn pct(v: &Value) -> String {
    if v.is_null() {
        return dash();
    }
    v.as_f64()
        .map_or_else(|| str_of(Some(v)), |a| format!("{:.1}%", 100.0 * a))
}

fn secs_of(v: &Value) -> String {
    v.as_f64()
        .map_or_else(|| str_of(Some(v)), |s| format!("{} s", fmt_f64(s)))
}

/// An HTML table; every cell is escaped here, so callers pass plain text.
fn table(head: &[&str], rows: &[Vec<String>]) -> String {
    let mut s = String::from("<table>");
    if head.iter().any(|h| !h.is_empty()) {
        s.push_str("<tr>");
        for h in head {
            let _ = write!(s, "<th>{}</th>", esc(h));
        }
        s.push_str("</tr>");
    }
    for r in rows {
        s.push_str("<tr>");
        for c in r {
            let _ = write!(s, "<td>{}</td>", esc(c));
        }
        s.push_str("</tr>");
    }
    s.push_str("</table>");
    s
}

/// `text` safe inside HTML text and double- or single-quoted attributes.
pub fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Standard base64 with padding (RFC 4648 §4), as data URIs need; a few lines here rather
/// than another dependency.
pub fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (b[0] as u32) << 16 | (b[1] as u32) << 8 | b[2] as u32;
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i)) as usize & 63] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_rfc4648_vectors() {
        for (plain, want) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64(plain.as_bytes()), want, "{plain:?}");
        }
        assert_eq!(base64(&[0xff, 0xfe, 0xfd]), "//79");
    }

    #[test]
    fn escapes_markup_and_quotes() {
        assert_eq!(
            esc(r#"<img src=x onerror='a'>&"#),
            "&lt;img src=x onerror=&#39;a&#39;&gt;&amp;"
        );
        assert_eq!(esc("\"q\""), "&quot;q&quot;");
    }

    #[test]
    fn spaced_keeps_first_and_last() {
        assert_eq!(spaced(3, 8), vec![0, 1, 2]);
        let s = spaced(100, 8);
        assert_eq!((s.len(), s[0], s[7]), (8, 0, 99));
    }

    #[test]
    fn numbers_read_well() {
        assert_eq!(fmt_f64(150.180562131788), "150.18");
        assert_eq!(fmt_f64(0.3864073321223259), "0.3864");
        assert_eq!(fmt_f64(2e-5), "2.000e-5");
        assert_eq!(fmt_f64(7.5), "7.5");
        assert_eq!(num(&Value::from(1000)), "1000");
    }
}

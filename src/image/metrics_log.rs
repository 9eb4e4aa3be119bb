//! `RUN/metrics.jsonl`: one JSON object per logged step, appended as training goes, so a run
//! can be followed (`tail -f`, pandas' `read_json(lines=True)`) without opening its binary
//! state — EDM's `stats.jsonl`, k-diffusion's metrics CSV.
//!
//! A resumed run continues the log from its checkpoint: lines after the checkpoint's step
//! (written by the process that was killed, whose later steps are redone) are dropped when the
//! log is opened, so every logged step appears exactly once. A fresh run starts an empty log.
use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::files::write_atomic;
use crate::{Error, Result};

/// The log's file name in a run folder.
pub const METRICS: &str = "metrics.jsonl";

/// One line of the log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    /// Steps done when the line was written.
    pub step: usize,
    /// Mean training loss over the steps since the previous line.
    pub loss: f64,
    /// Learning rate of the last step.
    pub lr: f64,
    /// Global L2 norm of the last step's gradients, before clipping.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub grad_norm: Option<f64>,
    /// Wall-clock seconds per step since the previous line (checkpoints and evaluations
    /// included).
    pub sec_per_step: f64,
    pub images_per_sec: f64,
    /// Evaluations run at this step (e.g. `fid`), and their cost (`fid_seconds`).
    #[serde(flatten)]
    pub eval: BTreeMap<String, f64>,
}

/// The open log of a run.
pub struct MetricsLog {
    path: PathBuf,
    file: File,
    records: Vec<Record>,
}

impl MetricsLog {
    /// Opens `run`'s log: with `resume_step` the lines up to that step are kept (later ones
    /// dropped), otherwise the log starts empty. A line that does not parse (a write cut short
    /// by a crash) ends what is kept.
    pub fn open(run: &Path, resume_step: Option<usize>) -> Result<Self> {
        let path = run.join(METRICS);
        let mut records = Vec::new();
        if let Some(last) = resume_step {
            if path.is_file() {
                let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
                for line in text.lines() {
                    match serde_json::from_str::<Record>(line) {
                        Ok(r) if r.step <= last => records.push(r),
                        _ => break,
                    }
                }
            }
        }
        let mut kept = String::new();
        for r in &records {
            kept.push_str(&serde_json::to_string(r).expect("records serialise"));
            kept.push('\n');
        }
        write_atomic(&path, kept.as_bytes())?;
        let file = OpenOptions::new()
            .append(true)
            .open(&path)
            .map_err(|e| Error::io(&path, e))?;
        Ok(Self {
            path,
            file,
            records,
        })
    }

    /// Appends `r` as one line (a single write, so a reader never sees half a line unless the
    /// process dies inside it).
    pub fn append(&mut self, r: Record) -> Result<()> {
        let mut line = serde_json::to_string(&r).expect("records serialise");
        line.push('\n');
        self.file
            .write_all(line.as_bytes())
            .and_then(|_| self.file.flush())
            .map_err(|e| Error::io(&self.path, e))?;
        self.records.push(r);
        Ok(())
    }

    /// Every line so far (those kept from before a resume included).
    pub fn records(&self) -> &[Record] {
        &self.records
    }

    /// The step of the last line.
    pub fn last_step(&self) -> Option<usize> {
        self.records.last().map(|r| r.step)
    }

    /// The best (lowest) value of evaluation `key` so far: (step, value).
    pub fn best(&self, key: &str) -> Option<(usize, f64)> {
        self.records
            .iter()
            .filter_map(|r| r.eval.get(key).map(|&v| (r.step, v)))
            .filter(|(_, v)| v.is_finite())
            .min_by(|a, b| a.1.total_cmp(&b.1))
    }
}

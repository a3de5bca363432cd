//! Result rows: the plain records every evaluation produces and the runner
//! and leaderboard consume.

use serde::{Deserialize, Serialize};

use crate::{Result, SuiteError};

/// One number from one evaluation, with everything needed to trace it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResultRow {
    /// Model name as given (`default`, a path, `org/name`).
    pub model: String,
    /// Registered method name.
    pub method: String,
    /// `steered` (the method), `random` (a random vector of the method's norm),
    /// `unsteered`, or `choice` (the chosen configuration itself).
    pub variant: String,
    /// Suite name.
    pub suite: String,
    /// Task name.
    pub task: String,
    /// `validation` or `test`.
    pub split: String,
    /// Steered layer (empty when the steering has no single layer).
    pub layer: Option<usize>,
    /// Multiplier (empty for summaries over multipliers).
    pub multiplier: Option<f32>,
    /// Metric name (see the task README).
    pub metric: String,
    /// The value (a mean over items where the metric is per item).
    pub value: f64,
    /// Lower end of the 95 % bootstrap interval (empty where none applies).
    pub ci_low: Option<f64>,
    /// Upper end of the 95 % bootstrap interval.
    pub ci_high: Option<f64>,
    /// Items behind the value.
    pub n: usize,
    /// Seed of fitting, splits and bootstrap.
    pub seed: u64,
    /// Task version.
    pub task_version: u32,
    /// sha256 of the model file (GGUF or safetensors).
    pub model_sha256: String,
    /// sha256 of the task's data files, joined by `+` (train, test).
    pub data_sha256: String,
}

/// The rows as CSV with a header line.
pub fn to_csv(rows: &[ResultRow]) -> Result<Vec<u8>> {
    let mut w = csv::Writer::from_writer(Vec::new());
    for r in rows {
        w.serialize(r)
            .map_err(|e| SuiteError::BadRequest(format!("cannot write a result row: {e}")))?;
    }
    w.into_inner()
        .map_err(|e| SuiteError::BadRequest(format!("cannot write result rows: {e}")))
}

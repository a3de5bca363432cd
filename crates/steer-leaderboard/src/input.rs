//! Reading the runs: result rows, per-item files and the folder walk.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::{Error, Result};

/// Columns of a result file, in order.
pub const ROW_COLUMNS: [&str; 17] = [
    "model",
    "method",
    "variant",
    "suite",
    "task",
    "split",
    "layer",
    "multiplier",
    "metric",
    "value",
    "ci_low",
    "ci_high",
    "n",
    "seed",
    "task_version",
    "model_sha256",
    "data_sha256",
];

/// Columns of a per-item file, in order.
pub const ITEM_COLUMNS: [&str; 5] = ["item", "variant", "metric", "multiplier", "value"];

/// Columns of a per-item file written by protocol 1 (slopes only).
pub const ITEM_COLUMNS_V1: [&str; 4] = ["item", "variant", "multiplier", "value"];

/// One result row as the runner writes it (empty cells stand for `None`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Row {
    /// Model name.
    pub model: String,
    /// Method name.
    pub method: String,
    /// `steered`, `random`, `unsteered`, `choice` or a task-specific variant.
    pub variant: String,
    /// Suite name.
    pub suite: String,
    /// Task name.
    pub task: String,
    /// `training`, `validation` or `test`.
    pub split: String,
    /// Steered layer, if the steering has one.
    pub layer: Option<u64>,
    /// Multiplier (empty for summaries over multipliers).
    pub multiplier: Option<f64>,
    /// Metric name.
    pub metric: String,
    /// The value.
    pub value: f64,
    /// Lower end of the 95 % interval.
    pub ci_low: Option<f64>,
    /// Upper end of the 95 % interval.
    pub ci_high: Option<f64>,
    /// Items behind the value.
    pub n: u64,
    /// Seed of the evaluation.
    pub seed: u64,
    /// Task version.
    pub task_version: u64,
    /// sha256 of the model file.
    pub model_sha256: String,
    /// sha256 of the task's data files.
    pub data_sha256: String,
}

/// One per-item value: a test value at a multiplier, or a per-item slope.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct ItemValue {
    /// Item index within the task's test split.
    pub item: u64,
    /// `unsteered`, `steered`, `random`, `unconstrained` or a task-specific variant.
    pub variant: String,
    /// Metric name (`slope` for per-item steerability).
    pub metric: String,
    /// Multiplier (empty for slopes).
    pub multiplier: Option<f64>,
    /// The value.
    pub value: f64,
}

/// A per-item line of a protocol-1 file.
#[derive(Deserialize)]
struct ItemValueV1 {
    item: u64,
    variant: String,
    multiplier: Option<f64>,
    value: f64,
}

/// One evaluation of one method on one task: a result file and its optional per-item file.
#[derive(Debug, Clone)]
pub struct Run {
    /// The result file.
    pub path: PathBuf,
    /// Its rows, in file order.
    pub rows: Vec<Row>,
    /// The per-item file beside it, if there is one.
    pub items_path: Option<PathBuf>,
}

impl Run {
    /// The per-item values, read on demand (empty when the run has no per-item
    /// file). A protocol-1 file (slopes only, variants `steered_slope` and
    /// `random_slope`) reads as metric `slope` of variants `steered` and
    /// `random`. A file that does not end with a newline is taken as
    /// truncated and is an error naming its last line.
    pub fn items(&self) -> Result<Vec<ItemValue>> {
        let Some(path) = &self.items_path else {
            return Ok(Vec::new());
        };
        let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        if !bytes.is_empty() && !bytes.ends_with(b"\n") {
            let line = bytes.iter().filter(|b| **b == b'\n').count() as u64 + 1;
            return Err(Error::input(
                path,
                Some(line),
                "the line does not end with a newline: the file is truncated".into(),
            ));
        }
        let header = bytes.split(|b| *b == b'\n').next().unwrap_or_default();
        if header == ITEM_COLUMNS_V1.join(",").as_bytes() {
            let old: Vec<ItemValueV1> = read_csv(path, &ITEM_COLUMNS_V1)?;
            return Ok(old
                .into_iter()
                .map(|v| {
                    let (variant, metric) = match v.variant.strip_suffix("_slope") {
                        Some(variant) => (variant.to_string(), "slope".to_string()),
                        None => (v.variant, String::new()),
                    };
                    ItemValue {
                        item: v.item,
                        variant,
                        metric,
                        multiplier: v.multiplier,
                        value: v.value,
                    }
                })
                .collect());
        }
        let values: Vec<ItemValue> = read_csv(path, &ITEM_COLUMNS)?;
        if let Some((i, v)) = values.iter().enumerate().find(|(_, v)| !v.value.is_finite()) {
            return Err(Error::input(
                path,
                Some(i as u64 + 2),
                format!(
                    "column `value` is {}: a per-item value must be a finite number",
                    v.value
                ),
            ));
        }
        Ok(values)
    }
}

/// Every run under `runs_dir` (`<model>/<method>/<suite>/<task>.csv`, at any
/// depth), in path order. A missing folder holds no runs. Files other than
/// result and per-item CSV files (provenance JSON and the like) are skipped.
pub fn read_runs(runs_dir: &Path) -> Result<Vec<Run>> {
    let mut files = Vec::new();
    if runs_dir.exists() {
        walk(runs_dir, &mut files)?;
    }
    files.sort();
    let mut runs = Vec::new();
    for path in &files {
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default();
        if !name.ends_with(".csv") || name.ends_with(".items.csv") {
            continue;
        }
        let items = path.with_file_name(format!("{}.items.csv", name.trim_end_matches(".csv")));
        let rows: Vec<Row> = read_csv(path, &ROW_COLUMNS)?;
        for (i, r) in rows.iter().enumerate() {
            for (column, v) in [("value", Some(r.value)), ("ci_low", r.ci_low), ("ci_high", r.ci_high)] {
                if v.is_some_and(|v| !v.is_finite()) {
                    return Err(Error::input(
                        path,
                        Some(i as u64 + 2),
                        format!(
                            "column `{column}` is {}: a result must be a finite number",
                            v.unwrap_or_default()
                        ),
                    ));
                }
            }
        }
        runs.push(Run {
            path: path.clone(),
            rows,
            items_path: items.is_file().then_some(items),
        });
    }
    Ok(runs)
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    let entries = std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))?;
    for entry in entries {
        let entry = entry.map_err(|e| Error::io(dir, e))?;
        let path = entry.path();
        let kind = entry.file_type().map_err(|e| Error::io(&path, e))?;
        if kind.is_dir() {
            walk(&path, out)?;
        } else if kind.is_file() {
            out.push(path);
        }
    }
    Ok(())
}

/// Reads a CSV file whose header must be exactly `columns`.
fn read_csv<T: serde::de::DeserializeOwned>(path: &Path, columns: &[&str]) -> Result<Vec<T>> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .from_reader(bytes.as_slice());
    let header = reader
        .headers()
        .map_err(|e| Error::input(path, line_of(&e).or(Some(1)), e.to_string()))?
        .clone();
    if header.iter().ne(columns.iter().copied()) {
        return Err(Error::input(
            path,
            Some(1),
            format!(
                "the header is `{}`, expected `{}`",
                header.iter().collect::<Vec<_>>().join(","),
                columns.join(",")
            ),
        ));
    }
    let mut out = Vec::new();
    for record in reader.deserialize::<T>() {
        match record {
            Ok(r) => out.push(r),
            Err(e) => return Err(Error::input(path, line_of(&e), describe(&e, columns))),
        }
    }
    Ok(out)
}

fn line_of(e: &csv::Error) -> Option<u64> {
    match e.kind() {
        csv::ErrorKind::Deserialize { pos: Some(p), .. } => Some(p.line()),
        csv::ErrorKind::UnequalLengths { pos: Some(p), .. } => Some(p.line()),
        csv::ErrorKind::Utf8 { pos: Some(p), .. } => Some(p.line()),
        _ => e.position().map(|p| p.line()),
    }
}

fn describe(e: &csv::Error, columns: &[&str]) -> String {
    match e.kind() {
        csv::ErrorKind::Deserialize { err, .. } => match err.field().and_then(|i| columns.get(i as usize)) {
            Some(column) => format!("column `{column}`: {}", err.kind()),
            None => err.kind().to_string(),
        },
        csv::ErrorKind::UnequalLengths { expected_len, len, .. } => {
            format!("{len} fields where the header has {expected_len}")
        }
        _ => e.to_string(),
    }
}

//! steer-leaderboard: the leaderboard of steerbench.
//!
//! Every run writes its result rows to
//! `results/runs/<model>/<method>/<suite>/<task>.csv`, optionally with
//! per-item values beside it (`<task>.items.csv`). [`build`] reads them all,
//! reduces each run to one row (chosen configuration, effect over the
//! unsteered model, over a random vector and over prompting, steerability,
//! damage) and writes `results/leaderboard.csv`, `results/LEADERBOARD.md`,
//! the browsable page `results/index.html` ([`page`]) and SVG plots under
//! `results/plots/`. [`check`] says whether those files are
//! what [`build`] would write now. The output is byte-for-byte deterministic.
#![warn(missing_docs)]

pub mod input;
pub mod page;
pub mod paired;
mod plots;
mod render;
pub mod table;

use std::path::{Path, PathBuf};

pub use input::{ItemValue, Row, Run};
pub use table::{Board, Cell, CurvePoint, Tables};

/// Errors of building the leaderboard.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An input file is unusable; the message names the file, the line where known, and the problem.
    #[error("{}{}: {message}", path.display(), line.map(|l| format!(":{l}")).unwrap_or_default())]
    Input {
        /// The file.
        path: PathBuf,
        /// 1-based line, when the problem has one.
        line: Option<u64>,
        /// What is wrong.
        message: String,
    },
    /// Reading or writing a file failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The aggregation failed.
    #[error("aggregating the results: {0}")]
    Frame(#[from] polars::prelude::PolarsError),
    /// Drawing a plot failed.
    #[error("drawing {name}: {message}")]
    Plot {
        /// The plot's file name.
        name: String,
        /// What went wrong.
        message: String,
    },
}

impl Error {
    pub(crate) fn input(path: &Path, line: Option<u64>, message: String) -> Error {
        Error::Input {
            path: path.to_path_buf(),
            line,
            message,
        }
    }

    pub(crate) fn io(path: &Path, source: std::io::Error) -> Error {
        Error::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}

/// Result of this crate.
pub type Result<T> = std::result::Result<T, Error>;

/// Where runs live, relative to the results folder.
pub const RUNS_DIR: &str = "runs";
/// The leaderboard table, relative to the results folder.
pub const CSV_FILE: &str = "leaderboard.csv";
/// The leaderboard page, relative to the results folder.
pub const MARKDOWN_FILE: &str = "LEADERBOARD.md";
/// The plots folder, relative to the results folder.
pub const PLOTS_DIR: &str = "plots";

/// The generated files, in memory.
#[derive(Debug, Clone, PartialEq)]
pub struct Rendered {
    /// Runs read.
    pub runs: usize,
    /// Leaderboard rows.
    pub rows: usize,
    /// Each file's path relative to the results folder, and its bytes, in path order.
    pub files: Vec<(PathBuf, Vec<u8>)>,
}

/// What [`build`] did.
#[derive(Debug, Clone, PartialEq)]
pub struct Summary {
    /// Runs read.
    pub runs: usize,
    /// Leaderboard rows.
    pub rows: usize,
    /// Files written (under the results folder), in path order.
    pub written: Vec<PathBuf>,
    /// Stale plots removed.
    pub removed: Vec<PathBuf>,
}

/// Reads every run under `results_dir/runs` and renders the leaderboard files without writing them.
pub fn render(results_dir: &Path) -> Result<Rendered> {
    let runs = input::read_runs(&results_dir.join(RUNS_DIR))?;
    let tables = table::aggregate(&runs)?;
    let mut files = vec![
        (PathBuf::from(CSV_FILE), render::csv(&tables.board)),
        (
            PathBuf::from(MARKDOWN_FILE),
            render::markdown(&tables.board).into_bytes(),
        ),
    ];
    let plots = plots::all(&tables, &runs)?;
    let page = page::html(results_dir, &tables, &runs, &plots)?;
    files.push((PathBuf::from(page::HTML_FILE), page.into_bytes()));
    for (name, svg) in plots {
        files.push((Path::new(PLOTS_DIR).join(name), svg.into_bytes()));
    }
    files.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(Rendered {
        runs: runs.len(),
        rows: tables.board.rows.len(),
        files,
    })
}

/// Builds the leaderboard: reads every run under `results_dir/runs`, writes
/// `leaderboard.csv`, `LEADERBOARD.md`, `index.html` and `plots/*.svg` (each atomically)
/// and removes plots no run produces any more.
pub fn build(results_dir: &Path) -> Result<Summary> {
    let rendered = render(results_dir)?;
    let mut written = Vec::new();
    for (rel, bytes) in &rendered.files {
        let path = results_dir.join(rel);
        write_atomic(&path, bytes)?;
        written.push(path);
    }
    let removed = stale_plots(results_dir, &rendered)?;
    for path in &removed {
        std::fs::remove_file(path).map_err(|e| Error::io(path, e))?;
    }
    Ok(Summary {
        runs: rendered.runs,
        rows: rendered.rows,
        written,
        removed,
    })
}

/// Whether the leaderboard files under `results_dir` are exactly what [`build`] would write now.
pub fn check(results_dir: &Path) -> Result<bool> {
    let rendered = render(results_dir)?;
    for (rel, bytes) in &rendered.files {
        let path = results_dir.join(rel);
        match std::fs::read(&path) {
            Ok(on_disk) if on_disk == *bytes => {}
            Ok(_) => return Ok(false),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(Error::io(&path, e)),
        }
    }
    Ok(stale_plots(results_dir, &rendered)?.is_empty())
}

/// SVG files in the plots folder that `rendered` does not hold.
fn stale_plots(results_dir: &Path, rendered: &Rendered) -> Result<Vec<PathBuf>> {
    let dir = results_dir.join(PLOTS_DIR);
    if !dir.is_dir() {
        return Ok(Vec::new());
    }
    let mut stale = Vec::new();
    for entry in std::fs::read_dir(&dir).map_err(|e| Error::io(&dir, e))? {
        let path = entry.map_err(|e| Error::io(&dir, e))?.path();
        let Some(name) = path.file_name() else { continue };
        let rel = Path::new(PLOTS_DIR).join(name);
        if path.extension().is_some_and(|e| e == "svg") && !rendered.files.iter().any(|(r, _)| *r == rel) {
            stale.push(path);
        }
    }
    stale.sort();
    Ok(stale)
}

/// Writes `bytes` to `path` through a temporary file in the same folder and a rename.
fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("output");
    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    std::fs::write(&tmp, bytes).map_err(|e| Error::io(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        Error::io(path, e)
    })
}

//! steer-suites: the tasks steerbench evaluates on and the protocol it
//! evaluates with.
//!
//! A task is a folder `suites/<suite>/<task>/` with a `task.toml` spec
//! ([`spec::TaskSpec`]), its data and a README. [`spec::Catalog`] finds tasks
//! and expands `all` and tags. Each suite has a module that reads its data
//! and scores items; [`protocol`] fits a method on the training split, picks
//! layer and multiplier on the validation split and reports the test split
//! with baselines, confidence intervals and per-item steerability, as plain
//! [`rows::ResultRow`]s.
#![warn(missing_docs)]

pub mod ab;
pub mod fluency;
pub mod generation;
pub mod icl;
pub mod jsonl;
pub mod open_ended;
pub mod perplexity;
pub mod protocol;
pub mod rows;
pub mod scoring;
pub mod sentiment;
pub mod spec;
pub mod split;
pub mod stats;
pub mod strength;
pub mod tinybench;
pub mod unsteered;
pub mod vader;

/// Seeded tiny models and hand-made steerings for unit tests.
#[cfg(test)]
pub(crate) mod test_support {
    use std::collections::BTreeMap;

    use steer_methods::{Steering, SteeringKind};
    use steer_model::{Architecture, Backend, Llama, ModelConfig, Positions, WeightSource};

    /// A tiny model of `arch` with seeded random weights, on the CPU.
    pub(crate) fn tiny_model(arch: Architecture, seed: u64) -> Llama {
        let cfg = ModelConfig::tiny(arch);
        Llama::load(&cfg, &WeightSource::random(&cfg, seed), &Backend::Cpu.device().unwrap()).unwrap()
    }

    /// A steering of `kind` at `positions`, with no hyperparameters or metadata.
    pub(crate) fn steering(kind: SteeringKind, positions: Positions) -> Steering {
        Steering {
            method: "test".into(),
            kind,
            positions,
            params: BTreeMap::new(),
            metadata: BTreeMap::new(),
        }
    }
}

use std::path::{Path, PathBuf};

/// Errors of reading tasks and evaluating on them.
#[derive(Debug, thiserror::Error)]
pub enum SuiteError {
    /// A data or spec file is unusable; the message names the place and the problem.
    #[error("{}:{line}: {message}", path.display())]
    Data {
        /// The file.
        path: PathBuf,
        /// 1-based line (0 when the problem is the whole file).
        line: usize,
        /// What is wrong.
        message: String,
    },
    /// A file could not be read.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// An unknown suite, task or tag, or options that cannot be used.
    #[error("{0}")]
    BadRequest(String),
    /// Fitting a method failed.
    #[error(transparent)]
    Method(#[from] steer_methods::MethodError),
    /// The model failed.
    #[error(transparent)]
    Model(#[from] steer_model::ModelError),
}

/// Shorthand for results of this crate.
pub type Result<T, E = SuiteError> = std::result::Result<T, E>;

impl SuiteError {
    /// A problem at `line` of `path`.
    pub fn data(path: &Path, line: usize, message: impl Into<String>) -> Self {
        SuiteError::Data {
            path: path.to_path_buf(),
            line,
            message: message.into(),
        }
    }
}

/// Reads a whole file, naming it in the error.
pub fn read_text(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).map_err(|source| SuiteError::Io {
        path: path.to_path_buf(),
        source,
    })
}

/// Hex sha256 of a file's bytes.
pub fn sha256_file(path: &Path) -> Result<String> {
    use sha2::Digest;
    let bytes = std::fs::read(path).map_err(|source| SuiteError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    Ok(format!("{:x}", sha2::Sha256::digest(&bytes)))
}
